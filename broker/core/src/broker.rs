//! The broker facade: opens (or initialises) a store under a root key and wires tokens,
//! mounts, auth methods and the transit engine together.

use std::{net::IpAddr, sync::Arc};

use zeroize::Zeroizing;

use crate::{
    auth::approle::{AppRoleSettings, AppRoles, LoginIdentity},
    auth::jwt::IdentityProviders,
    auth::token::{IssuedToken, TokenRequest, TokenSettings, Tokens},
    backend::Backends,
    changes::Change,
    clock::Clock,
    engines::transit::{Transit, TransitSettings},
    error::{Error, Result},
    mounts::Mounts,
    policy::store::Policies,
    seal::RootKey,
    store::MountRecord,
    store::Store,
    tenants::Tenants,
    Tenant, TenantId,
};

const META_SERVER_KEY: &str = "server-hmac-key";
const META_INITIALIZED: &str = "initialized";
const MANAGED_PREFIX: &str = "managed-secret/";
/// The key that seals the transit engine's own secrets (each mount's wrapping key).
const META_TRANSIT_SEALER: &str = "transit-secret-sealer";

/// Settings of the core.
#[derive(Clone, Debug, Default)]
pub struct BrokerSettings {
    /// Transit engine limits and defaults.
    pub transit: TransitSettings,
    /// Token lifetimes.
    pub tokens: TokenSettings,
    /// AppRole lockout.
    pub approle: AppRoleSettings,
    /// The types of mount that may be enabled (the server's registry of mount kinds).
    pub mount_kinds: crate::mounts::MountKinds,
}

/// Reads a 32-byte secret sealed under the root key, generating and storing it on first
/// use. Concurrent first uses (several nodes) agree on one value.
pub async fn sealed_secret(
    store: &dyn Store,
    root_key: &RootKey,
    name: &str,
) -> Result<Zeroizing<[u8; 32]>> {
    if store.get_meta(name).await?.is_none() {
        let fresh = crate::crypto::generate_dek();
        let sealed = root_key.seal(name, fresh.as_ref())?;
        store.put_meta_if_absent(name, &sealed).await?;
    }
    let sealed = store
        .get_meta(name)
        .await?
        .ok_or_else(|| Error::internal("sealed secret vanished"))?;
    let secret = root_key.unseal(name, &sealed)?;
    let mut out = Zeroizing::new([0u8; 32]);
    if secret.len() != out.len() {
        return Err(Error::internal("sealed secret has the wrong length"));
    }
    out.copy_from_slice(&secret);
    Ok(out)
}

/// A secret the broker generates for a built-in backend instance (e.g. the dev KEK of
/// `local`), stored only sealed under the root key.
pub async fn managed_secret(
    store: &dyn Store,
    root_key: &RootKey,
    instance: &str,
) -> Result<Zeroizing<[u8; 32]>> {
    sealed_secret(store, root_key, &format!("{MANAGED_PREFIX}{instance}")).await
}

/// The broker.
pub struct Broker {
    /// Storage.
    pub store: Arc<dyn Store>,
    /// Token service.
    pub tokens: Tokens,
    /// Mount tables.
    pub mounts: Mounts,
    /// The transit engine.
    pub transit: Transit,
    /// Tenants (namespaces).
    pub tenants: Tenants,
    /// ACL policies.
    pub policies: Policies,
    /// The AppRole auth method.
    pub approle: AppRoles,
    /// The JWT auth method (logins and bearer mode).
    pub jwt: crate::auth::jwt::method::JwtAuth,
    /// Response wrapping.
    pub wrapping: crate::wrapping::Wrapping,
    /// The KV secrets engine.
    pub kv: crate::engines::kv::Kv,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("transit", &self.transit)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// Opens the broker on a store. Fails with `Sealed` if `root_key` is not the store's.
    /// `identity_providers` is how the JWT auth method reaches issuers (discovery, JWKS).
    pub async fn open(
        store: Arc<dyn Store>,
        backends: Arc<dyn Backends>,
        identity_providers: Arc<dyn IdentityProviders>,
        clock: Arc<dyn Clock>,
        root_key: &RootKey,
        settings: BrokerSettings,
    ) -> Result<Self> {
        let server_key = sealed_secret(store.as_ref(), root_key, META_SERVER_KEY).await?;
        let approle_key = sealed_secret(
            store.as_ref(),
            root_key,
            crate::auth::approle::SECRET_ID_KEY_NAME,
        )
        .await?;
        Ok(Self {
            approle: AppRoles::new(
                approle_key.as_ref(),
                store.clone(),
                clock.clone(),
                settings.approle,
            )?,
            tenants: Tenants::load(store.clone(), clock.clone()).await?,
            policies: Policies::new(store.clone(), clock.clone()),
            tokens: Tokens::new(
                server_key.as_ref(),
                store.clone(),
                clock.clone(),
                settings.tokens,
            )?,
            mounts: Mounts::new(store.clone(), clock.clone(), settings.mount_kinds.clone()),
            wrapping: crate::wrapping::Wrapping::new(
                store.clone(),
                clock.clone(),
                sealed_secret(store.as_ref(), root_key, crate::wrapping::HMAC_KEY_NAME).await?,
                sealed_secret(store.as_ref(), root_key, crate::wrapping::SEALER_NAME).await?,
            ),
            jwt: crate::auth::jwt::method::JwtAuth::new(
                clock.clone(),
                identity_providers,
                sealed_secret(
                    store.as_ref(),
                    root_key,
                    crate::auth::jwt::method::SEALER_NAME,
                )
                .await?,
            ),
            kv: crate::engines::kv::Kv::new(
                store.clone(),
                clock.clone(),
                sealed_secret(store.as_ref(), root_key, crate::engines::kv::SEALER_NAME).await?,
                sealed_secret(store.as_ref(), root_key, crate::engines::kv::PATH_KEY_NAME).await?,
            ),
            transit: Transit::new(store.clone(), backends, clock, settings.transit)
                .with_secret_sealer(crate::engines::transit::SecretSealer::new(
                    sealed_secret(store.as_ref(), root_key, META_TRANSIT_SEALER).await?,
                )),
            store,
        })
    }

    /// Initialises a fresh store: a root token and the `transit/` mount. Returns the root
    /// token if this call initialised the store, `None` if it already was.
    pub async fn initialize(
        &self,
        chosen_root_token: Option<&str>,
    ) -> Result<Option<Zeroizing<String>>> {
        if !self
            .store
            .put_meta_if_absent(META_INITIALIZED, b"1")
            .await?
        {
            return Ok(None);
        }
        let token = self
            .tokens
            .create_root(TenantId::ROOT, chosen_root_token)
            .await?;
        self.mounts
            .enable(
                TenantId::ROOT,
                "transit",
                "transit",
                "key broker transit engine",
            )
            .await?;
        Ok(Some(token))
    }

    /// Mounts KV version 2 at `secret/` in the root namespace, as Vault's dev server does
    /// (`server --dev`, on a fresh store), its key on the default backend instance.
    pub async fn enable_dev_kv(&self) -> Result<()> {
        let root = self
            .tenants
            .by_id(TenantId::ROOT)
            .ok_or_else(|| Error::internal("no root namespace"))?;
        let mount = self
            .mounts
            .enable(TenantId::ROOT, "secret", "kv", "key/value secret storage")
            .await?;
        let options = crate::engines::kv::KvOptions {
            version: 2,
            ..Default::default()
        };
        self.kv
            .enable(&self.transit, &root, &mount, &options)
            .await?;
        let tuning = crate::mounts::Tuning {
            options: Some([("version".to_owned(), "2".to_owned())].into()),
            ..Default::default()
        };
        self.mounts
            .tune(TenantId::ROOT, &mount.path, &tuning)
            .await?;
        Ok(())
    }

    /// Mounts an engine in a tenant. In the root namespace a path may not start with a
    /// tenant's name (`/v1/<tenant>/…` routes to the tenant).
    pub async fn enable_mount(
        &self,
        tenant: &Tenant,
        path: &str,
        kind: &str,
        description: &str,
    ) -> Result<Arc<MountRecord>> {
        if tenant.id == TenantId::ROOT {
            let normalized = crate::mounts::normalize_path(path)?;
            let first = normalized.split('/').next().unwrap_or_default();
            if self
                .tenants
                .resolve(first)
                .is_some_and(|t| t.id != TenantId::ROOT)
            {
                return Err(Error::invalid(format!(
                    "path is already in use by namespace \"{first}\""
                )));
            }
        }
        self.mounts.enable(tenant.id, path, kind, description).await
    }

    /// Mounts an auth method in a tenant at `auth/<path>/` (`bao auth enable`).
    pub async fn enable_auth(
        &self,
        tenant: &Tenant,
        path: &str,
        kind: &str,
        description: &str,
    ) -> Result<Arc<MountRecord>> {
        self.mounts
            .enable_auth(tenant.id, path, kind, description)
            .await
    }

    /// Unmounts an auth method with its roles and credentials (`bao auth disable`) and
    /// revokes every token it issued, with their children, as Vault does. A token issued by
    /// a login racing the unmount is deleted with the mount (the store cascades), and a
    /// login committing after it fails.
    pub async fn disable_auth(&self, tenant: &Tenant, path: &str) -> Result<()> {
        if let Some(mount) = self.mounts.find_auth(tenant.id, path).await? {
            self.tokens.revoke_mount(tenant.id, mount.id).await?;
        }
        self.mounts.disable_auth(tenant.id, path).await?;
        self.jwt.forget_tenant(tenant.id);
        Ok(())
    }

    /// An AppRole login from `client` on an approle mount: checks the credentials (see
    /// [`AppRoles::verify_login`]) and issues a token with the role's policies and limits,
    /// whose metadata is the secret_id's with `role_name` added. The identity says what was
    /// found, for the audit log, whatever the outcome.
    pub async fn approle_login(
        &self,
        mount: &MountRecord,
        role_id: &str,
        secret_id: &str,
        client: Option<IpAddr>,
    ) -> (LoginIdentity, Result<IssuedToken>) {
        let (identity, verified) = self
            .approle
            .verify_login(mount, role_id, secret_id, client)
            .await;
        let verified = match verified {
            Ok(verified) => verified,
            Err(error) => return (identity, Err(error)),
        };
        let role = verified.role;
        let (mut meta, secret_bound) = verified
            .secret_id
            .map(|s| (s.metadata, s.token_bound_cidrs))
            .unwrap_or_default();
        meta.insert("role_name".to_owned(), role.name.clone());
        // A periodic token is ended only by an explicit maximum; any other by the smaller
        // of the role's maximums.
        let explicit_max_ttl = if role.token_period > 0 {
            (role.token_explicit_max_ttl > 0).then_some(role.token_explicit_max_ttl)
        } else {
            [role.token_max_ttl, role.token_explicit_max_ttl]
                .into_iter()
                .filter(|t| *t > 0)
                .min()
        };
        let request = TokenRequest {
            policies: role.token_policies,
            ttl: (role.token_ttl > 0).then_some(role.token_ttl),
            explicit_max_ttl,
            num_uses: role.token_num_uses,
            meta,
            display_name: Some(crate::auth::approle::AUTH_TYPE.to_owned()),
            renewable: Some(true),
            no_default_policy: role.token_no_default_policy,
            bound_cidrs: if secret_bound.is_empty() {
                role.token_bound_cidrs
            } else {
                secret_bound
            },
            period: (role.token_period > 0).then_some(role.token_period),
            auth_mount: Some(mount.id),
        };
        let issued = self.tokens.create(mount.tenant, None, request).await;
        (identity, issued)
    }

    /// Creates a tenant (namespace).
    pub async fn create_tenant(&self, name: &str) -> Result<Tenant> {
        let root_mounts: Vec<String> = self
            .mounts
            .table(TenantId::ROOT)
            .await?
            .iter()
            .filter_map(|m| m.path.split('/').next().map(str::to_owned))
            .collect();
        self.tenants.create(name, &root_mounts).await
    }

    /// Drops what a change made on another node (or announced by this one) makes stale in
    /// the core's own caches: tokens, tenants, mount tables, policies. The caches of each kind
    /// of mount are that kind's to drop, after this (the server's registry tells each);
    /// [`Change::Plugins`] is the plugin host's business.
    pub async fn apply_change(&self, change: &Change) -> Result<()> {
        match change {
            Change::Token(hash) => self.tokens.forget_hash(hash),
            Change::Tenants => self.tenants.reload().await?,
            Change::TenantDeleted(tenant) => {
                self.tokens.forget_tenant(*tenant);
                self.policies.forget_tenant(*tenant);
                self.mounts.forget_tenant(*tenant);
                self.tenants.reload().await?;
            }
            Change::Mounts(tenant) => {
                self.mounts.reload(*tenant).await?;
            }
            Change::Policies(tenant) => self.policies.forget_tenant(*tenant),
            Change::Key(..) | Change::MountEntry(..) | Change::Plugins => {}
            Change::Resync => {
                self.tokens.forget_all();
                self.policies.forget_all();
                self.mounts.forget_all();
                self.tenants.reload().await?;
            }
        }
        Ok(())
    }

    /// Deletes a tenant: its tokens stop working at once, its keys become unusable and its
    /// cached data keys are dropped.
    pub async fn delete_tenant(&self, name: &str) -> Result<Option<Tenant>> {
        let Some(tenant) = self.tenants.delete(name).await? else {
            return Ok(None);
        };
        self.tokens.forget_tenant(tenant.id);
        self.policies.forget_tenant(tenant.id);
        self.transit.forget_tenant(tenant.id);
        self.mounts.forget_tenant(tenant.id);
        self.jwt.forget_tenant(tenant.id);
        Ok(Some(tenant))
    }
}
