//! The JWT auth method's mounts (Vault API: auth/jwt): configuration and roles, logins that
//! exchange a JWT for a broker token, and bearer mode (our extension: a request carries
//! `Authorization: Bearer <jwt>` itself and gets the bearer role's policies, no login).
//!
//! A mount's configuration and roles live in its mount storage ([`crate::mount_storage`]):
//! the configuration under [`CONFIG_KEY`], each role under [`ROLE_PREFIX`]`<name>`, so a
//! role write touches that role alone and two nodes writing one role never lose a write
//! (compare-and-set, retried on the entry just read). Logins and bearer requests read them
//! through a per-node cache that every write, here or on another node
//! ([`crate::changes::Change::MountEntry`]), drops. Mounts written by earlier versions kept
//! everything in the mount's `config` JSON; it is moved on first use (`JwtAuth::storage`
//! says how). Each mount has one [`Verifier`] (key material, JWKS cache), rebuilt when its
//! configuration changes; at most [`DEFAULT_VERIFIER_CACHE_CAPACITY`] mounts' verifiers are
//! kept, and concurrent first logins on a mount build its verifier once. Token validation
//! itself is [`crate::auth::jwt`].

use std::{
    collections::BTreeMap,
    future::Future,
    net::IpAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use moka::sync::Cache;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use crate::{
    auth::jwt::{
        IdentityProviders, JwtConfig, JwtConfigInput, JwtRole, JwtRoleInput, VerifiedJwt, Verifier,
    },
    auth::token::{Caller, IssuedToken, TokenRequest, Tokens, DEFAULT_POLICY},
    clock::Clock,
    error::{Error, Result},
    mount_storage::{EntryCache, MountStorage, DEFAULT_ENTRY_CACHE_CAPACITY},
    mounts::Mounts,
    store::{Expect, MountRecord, TokenRecord},
    MountId, TenantId,
};

mod oidc;

pub use oidc::{AuthUrl, CALLBACK_FAILED, NOT_OIDC, STATE_TTL};

/// The auth method type (`bao auth enable jwt`; `oidc` is the same method).
pub const AUTH_TYPE: &str = "jwt";

/// The name of the 32-byte secret (sealed under the root key) that seals pending OIDC
/// logins and the mounts' client secrets.
pub const SEALER_NAME: &str = "jwt-oidc-sealer";

/// The answer to every failed login, whatever the reason (the reason is logged at debug).
pub const LOGIN_FAILED: &str = "invalid role or JWT";

/// Longest accepted `Authorization` value for bearer mode, checked before any decoding.
pub const MAX_BEARER_LEN: usize = 8 * 1024;

/// Mounts whose verifiers (key material, JWKS cache) are kept by default. An evicted one is
/// rebuilt on its mount's next use (discovery and a JWKS fetch).
pub const DEFAULT_VERIFIER_CACHE_CAPACITY: u64 = 1_000;

/// Verified bearer JWTs kept by default (each also expires with its JWT).
pub const DEFAULT_BEARER_CACHE_CAPACITY: u64 = 100_000;

/// The key of `auth/<mount>/config` in the mount's storage.
pub const CONFIG_KEY: &str = "config";

/// The prefix of each role's key in the mount's storage (`role/<lowercase name>`).
pub const ROLE_PREFIX: &str = "role/";

/// Compare-and-set attempts of one role write before it gives up with a conflict: each
/// attempt lost means another write of the role succeeded meanwhile.
const ROLE_WRITE_ATTEMPTS: usize = 16;

fn role_key(name: &str) -> String {
    format!("{ROLE_PREFIX}{name}")
}

/// What a jwt mount kept in its `config` before mount storage (versions up to 0.1): moved
/// into mount storage on the mount's first use.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct JwtMountState {
    /// `auth/jwt/config`, once written.
    #[serde(default)]
    pub config: Option<JwtConfig>,
    /// Roles by (lowercase) name.
    #[serde(default)]
    pub roles: BTreeMap<String, JwtRole>,
}

impl JwtMountState {
    /// The state an earlier version stored in a mount's config (`{}`: none).
    pub fn of(mount: &MountRecord) -> Result<Self> {
        if !has_legacy_state(mount) {
            return Ok(Self::default());
        }
        Self::deserialize(&mount.config)
            .map_err(|e| Error::internal_from("stored jwt mount configuration", e))
    }
}

/// Whether an earlier version left the mount's state in its `config` (this version keeps
/// it `{}`).
fn has_legacy_state(mount: &MountRecord) -> bool {
    !mount.config.as_object().is_some_and(|o| o.is_empty())
}

/// The issuer a configuration's tokens come from, for bearer mode: the discovery URL's
/// issuer or `bound_issuer`.
fn issuer_of(config: &JwtConfig) -> Option<String> {
    config
        .bound_issuer
        .clone()
        .or_else(|| config.oidc_discovery_url.clone())
        .map(|issuer| issuer.trim_end_matches('/').to_owned())
}

/// The token of a login (a JWT, or an OIDC login's ID token) that passed `role`: its
/// policies and limits, the mapped claims and the role name as metadata.
async fn issue(
    tokens: &Tokens,
    mount: &MountRecord,
    role_name: String,
    role: &JwtRole,
    verified: &VerifiedJwt,
) -> Result<IssuedToken> {
    let mut meta = verified.metadata.clone();
    meta.insert("role".to_owned(), role_name);
    let explicit_max_ttl = [role.token_max_ttl, role.token_explicit_max_ttl]
        .into_iter()
        .filter(|t| *t > 0)
        .min();
    let request = TokenRequest {
        policies: role.token_policies.clone(),
        ttl: (role.token_ttl > 0).then_some(role.token_ttl),
        explicit_max_ttl,
        num_uses: role.token_num_uses,
        meta,
        display_name: Some(display_name(mount, &verified.user)),
        renewable: Some(true),
        no_default_policy: role.token_no_default_policy,
        bound_cidrs: role.token_bound_cidrs.clone(),
        period: (role.token_period > 0).then_some(role.token_period),
        auth_mount: Some(mount.id),
    };
    tokens.create(mount.tenant, None, request).await
}

/// A login's display name as Vault makes it: the mount's path below `auth/`, slashes as
/// dashes, then the user (`jwt-svc-a` on `auth/jwt/`, `oidc-alice@example.com` on
/// `auth/oidc/`).
fn display_name(mount: &MountRecord, user: &str) -> String {
    let source = mount
        .path
        .strip_prefix("auth/")
        .unwrap_or(&mount.path)
        .replace('/', "-");
    format!("{source}{user}").trim_end_matches('-').to_owned()
}

/// Whether `client` may use something bound to `cidrs` (empty = anywhere; an unknown
/// address only when unbound).
fn from_bound(cidrs: &[String], client: Option<IpAddr>) -> bool {
    cidrs.is_empty() || client.is_some_and(|c| crate::cidr::contains_any(cidrs, c))
}

/// The `iss` of a JWT, read without verifying it: only to choose which mount verifies it.
/// Public for the fuzz targets (`fuzz/`): bearer mode reads it before any authentication.
#[doc(hidden)]
pub fn unverified_issuer(token: &str) -> Option<String> {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
    let payload = token.split('.').nth(1)?;
    if payload.len() > MAX_BEARER_LEN {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims
        .get("iss")?
        .as_str()
        .map(|iss| iss.trim_end_matches('/').to_owned())
}

/// Whether a presented credential is a JWT for bearer mode rather than a broker token:
/// three dot-separated segments and no `kbs.` prefix (the issue's rule).
pub fn looks_like_jwt(value: &str) -> bool {
    !value.starts_with(crate::auth::token::TOKEN_PREFIX) && value.split('.').count() == 3
}

/// The verifier of one mount for one configuration. Like the ACL cache's slots, it enters
/// the cache before the verifier is built, so concurrent first logins on a mount run one
/// discovery and one JWKS fetch, and a configuration change replaces the slot itself.
struct VerifierSlot<V> {
    tenant: TenantId,
    config: JwtConfig,
    /// Empty until built; a failed build (identity provider unreachable) leaves it empty
    /// and the next login tries again.
    verifier: OnceCell<Arc<V>>,
}

/// Verifiers by mount, at most `capacity` of them; generic so tests count builds.
struct VerifierCache<V = Verifier> {
    slots: Cache<MountId, Arc<VerifierSlot<V>>>,
    /// Verifiers built (not found in the cache), for metrics and tests.
    builds: AtomicU64,
}

impl<V: Send + Sync + 'static> VerifierCache<V> {
    fn new(capacity: u64) -> Self {
        Self {
            slots: Cache::builder()
                .max_capacity(capacity)
                .support_invalidation_closures()
                .build(),
            builds: AtomicU64::new(0),
        }
    }

    /// The verifier of `mount` for `config`, built by `build` unless cached for this very
    /// configuration or being built by another caller.
    async fn get_or_build<F, Fut>(
        &self,
        mount: &MountRecord,
        config: &JwtConfig,
        build: F,
    ) -> Result<Arc<V>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V>>,
    {
        let slot = self
            .slots
            .entry(mount.id)
            .or_insert_with_if(
                || Arc::new(self.slot(mount.tenant, config, None)),
                |slot| slot.config != *config,
            )
            .into_value();
        // Another caller may have installed a slot for a newer configuration between our
        // read of the mount and this lookup: build ours without caching it.
        if slot.config != *config {
            self.builds.fetch_add(1, Ordering::Relaxed);
            return build().await.map(Arc::new);
        }
        slot.verifier
            .get_or_try_init(|| async {
                self.builds.fetch_add(1, Ordering::Relaxed);
                build().await.map(Arc::new)
            })
            .await
            .cloned()
    }

    fn slot(&self, tenant: TenantId, config: &JwtConfig, built: Option<Arc<V>>) -> VerifierSlot<V> {
        VerifierSlot {
            tenant,
            config: config.clone(),
            verifier: OnceCell::new_with(built),
        }
    }

    /// Keeps a verifier just built for a configuration being written.
    fn remember(&self, mount: &MountRecord, config: &JwtConfig, verifier: V) {
        let slot = self.slot(mount.tenant, config, Some(Arc::new(verifier)));
        self.slots.insert(mount.id, Arc::new(slot));
    }

    fn forget_mount(&self, mount: MountId) {
        self.slots.invalidate(&mount);
    }

    fn forget_tenant(&self, tenant: TenantId) {
        if self
            .slots
            .invalidate_entries_if(move |_, slot| slot.tenant == tenant)
            .is_err()
        {
            self.slots.invalidate_all();
        }
    }

    fn forget_all(&self) {
        self.slots.invalidate_all();
    }
}

/// JWT mounts of every tenant: verifiers and the bearer-mode cache.
pub struct JwtAuth {
    clock: Arc<dyn Clock>,
    /// Configurations and roles as last read from the mounts' storage.
    state: EntryCache,
    /// Where discovery and JWKS fetches go (the server's HTTPS client).
    providers: Arc<dyn IdentityProviders>,
    verifiers: VerifierCache,
    /// Bearer JWTs already verified, by SHA-256 of (tenant, JWT), until their `exp`.
    bearer: Cache<[u8; 32], Arc<TokenRecord>>,
    /// Seals pending OIDC logins (`state`) and client secrets.
    sealer: crate::seal::RootKey,
}

impl std::fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtAuth(..)")
    }
}

impl JwtAuth {
    /// The service with the default bounds; verifiers are built on first use of each mount,
    /// their keys had through `providers`.
    pub fn new(
        clock: Arc<dyn Clock>,
        providers: Arc<dyn IdentityProviders>,
        sealer_key: zeroize::Zeroizing<[u8; 32]>,
    ) -> Self {
        Self::with_capacity(
            clock,
            providers,
            sealer_key,
            DEFAULT_VERIFIER_CACHE_CAPACITY,
            DEFAULT_BEARER_CACHE_CAPACITY,
        )
    }

    /// The service keeping at most `verifiers` mounts' verifiers and `bearer_jwts` verified
    /// bearer JWTs.
    pub fn with_capacity(
        clock: Arc<dyn Clock>,
        providers: Arc<dyn IdentityProviders>,
        sealer_key: zeroize::Zeroizing<[u8; 32]>,
        verifiers: u64,
        bearer_jwts: u64,
    ) -> Self {
        Self {
            sealer: crate::seal::RootKey::new(sealer_key),
            clock,
            state: EntryCache::new(DEFAULT_ENTRY_CACHE_CAPACITY),
            providers,
            verifiers: VerifierCache::new(verifiers),
            bearer: Cache::builder()
                .max_capacity(bearer_jwts)
                // Entries are also checked against their token's expiry at every use.
                .time_to_live(Duration::from_secs(3600))
                // A change in one tenant drops only that tenant's bearer identities.
                .support_invalidation_closures()
                .build(),
        }
    }

    /// How many verifiers were built rather than found in the cache (for metrics).
    pub fn verifier_builds(&self) -> u64 {
        self.verifiers.builds.load(Ordering::Relaxed)
    }

    /// The verifier of a mount's current configuration, built if the configuration changed.
    async fn verifier(&self, mount: &MountRecord, config: &JwtConfig) -> Result<Arc<Verifier>> {
        self.verifiers
            .get_or_build(mount, config, || async move {
                // The configuration was accepted when written: failing to build its
                // verifier now (discovery, first JWKS fetch) means the identity provider is
                // unreachable.
                Verifier::new(config, self.providers.as_ref())
                    .await
                    .map_err(|error| {
                        tracing::warn!(mount = %mount.path, %error, "jwt keys cannot be fetched");
                        Error::Unavailable("the identity provider's keys cannot be fetched".into())
                    })
            })
            .await
    }

    /// Drops the bearer identities verified for `tenant`.
    fn forget_bearer(&self, tenant: TenantId) {
        if self
            .bearer
            .invalidate_entries_if(move |_, record| record.tenant == tenant)
            .is_err()
        {
            self.bearer.invalidate_all();
        }
    }

    /// Writes `auth/<mount>/config`: checked, its keys fetched (a configuration whose keys
    /// cannot be had is refused), and at most one bearer mount per (tenant, issuer).
    pub async fn write_config(
        &self,
        mounts: &Mounts,
        mount: &MountRecord,
        input: JwtConfigInput,
    ) -> Result<()> {
        // `from_input` checks that a secret comes with a client.
        let secret = input
            .oidc_client_secret
            .clone()
            .filter(|secret| !secret.trim().is_empty());
        let config = JwtConfig::from_input(input)?;
        if let Some(source) = &config.oidc_client_secret_source {
            if secret.is_some() {
                return Err(Error::invalid(
                    "give oidc_client_secret or oidc_client_secret_source, not both",
                ));
            }
            if mount.tenant != TenantId::ROOT {
                return Err(Error::invalid(
                    "oidc_client_secret_source is for the root namespace's mounts only: a tenant gives oidc_client_secret",
                ));
            }
            let issuer = config.oidc_discovery_url.as_deref().unwrap_or_default();
            if let Err(error) = self.providers.named_client_secret(source, issuer) {
                tracing::warn!(mount = %mount.path, %error, "OIDC client secret source refused");
                return Err(Error::invalid(
                    "oidc_client_secret_source: the server's configuration has no such source for this oidc_discovery_url, or it cannot be read (the broker's log has the cause)",
                ));
            }
        }
        if config.bearer_role.is_some() {
            let issuer = issuer_of(&config).ok_or_else(|| {
                Error::invalid("bearer_role needs bound_issuer or oidc_discovery_url")
            })?;
            let table = mounts.table(mount.tenant).await?;
            if let Some((other, _)) = self
                .bearer_mount(mounts, &table, &issuer, Some(mount.id))
                .await?
            {
                return Err(Error::invalid(format!(
                    "auth/{} already serves bearer tokens of issuer {issuer}",
                    other.path.trim_start_matches("auth/")
                )));
            }
        }
        let verifier = Verifier::new(&config, self.providers.as_ref()).await?;
        // A write replaces the whole configuration, as in Vault: nothing to compare.
        let storage = self.storage(mounts, mount).await?;
        // The secret first: a configuration never names a client whose secret is missing.
        self.store_client_secret(&storage, mount, secret.as_deref().map(String::as_str))
            .await?;
        storage.put(CONFIG_KEY, &config, Expect::Any).await?;
        self.state.forget(mount.tenant, mount.id, CONFIG_KEY);
        self.verifiers.remember(mount, &config, verifier);
        self.forget_bearer(mount.tenant);
        Ok(())
    }

    /// Creates or updates a role.
    pub async fn write_role(
        &self,
        mounts: &Mounts,
        mount: &MountRecord,
        name: &str,
        input: JwtRoleInput,
    ) -> Result<()> {
        let name = crate::auth::approle::validate_role_name(name)?;
        let key = role_key(&name);
        let storage = self.storage(mounts, mount).await?;
        // An update applies the input to the role as stored; if another write of the role
        // (on any node) lands between the read and the write, read it again and re-apply.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let stored = storage.get::<JwtRole>(&key).await?;
            let expect = stored.as_ref().map_or(Expect::Absent, |s| s.unchanged());
            let role = JwtRole::apply(stored.map(|s| s.value), input.clone())?;
            crate::cidr::parse_list(&role.token_bound_cidrs)?;
            match storage.put(&key, &role, expect).await {
                Ok(_) => break,
                Err(Error::Conflict(_)) if attempts < ROLE_WRITE_ATTEMPTS => {}
                Err(error) => return Err(error),
            }
        }
        self.state.forget(mount.tenant, mount.id, &key);
        self.forget_bearer(mount.tenant);
        Ok(())
    }

    /// Deletes a role (unknown names succeed, as in Vault).
    pub async fn delete_role(
        &self,
        mounts: &Mounts,
        mount: &MountRecord,
        name: &str,
    ) -> Result<()> {
        let storage = self.storage(mounts, mount).await?;
        // A name no role can have names no role.
        if let Ok(name) = crate::auth::approle::validate_role_name(name) {
            let key = role_key(&name);
            storage.delete(&key, Expect::Any).await?;
            self.state.forget(mount.tenant, mount.id, &key);
        }
        self.forget_bearer(mount.tenant);
        Ok(())
    }

    /// `auth/<mount>/config` as stored, if written.
    pub async fn read_config(
        &self,
        mounts: &Mounts,
        mount: &MountRecord,
    ) -> Result<Option<JwtConfig>> {
        let storage = self.storage(mounts, mount).await?;
        Ok(storage.get(CONFIG_KEY).await?.map(|c| c.value))
    }

    /// Names of the mount's roles, sorted.
    pub async fn list_roles(&self, mounts: &Mounts, mount: &MountRecord) -> Result<Vec<String>> {
        let storage = self.storage(mounts, mount).await?;
        let keys = storage.list(ROLE_PREFIX).await?;
        Ok(keys
            .into_iter()
            .filter_map(|key| key.strip_prefix(ROLE_PREFIX).map(str::to_owned))
            .collect())
    }

    /// A role by name, in any case (`None` for a name no role can have).
    pub async fn read_role(
        &self,
        mounts: &Mounts,
        mount: &MountRecord,
        name: &str,
    ) -> Result<Option<JwtRole>> {
        let Ok(name) = crate::auth::approle::validate_role_name(name) else {
            return Ok(None);
        };
        let storage = self.storage(mounts, mount).await?;
        Ok(storage.get(&role_key(&name)).await?.map(|r| r.value))
    }

    /// The mount's storage, once the state an earlier version kept in the mount's `config`
    /// is in it.
    ///
    /// Moved rather than read through: afterwards the mount's `config` is empty and every
    /// read and write goes to one place (reading through would need tombstones so that a
    /// role deleted from storage does not come back from the old document). The move reads
    /// the mount again (another node may have moved it already: its stale copy must not
    /// bring back roles deleted since), creates each entry only where none is
    /// ([`Expect::Absent`]: nodes moving at once write the same values, and anything written
    /// since wins), then empties the `config`. Only a role deleted while another node is in
    /// the middle of the very same move could come back.
    async fn storage(&self, mounts: &Mounts, mount: &MountRecord) -> Result<MountStorage> {
        let storage = mounts.storage(mount);
        if !has_legacy_state(mount) {
            return Ok(storage);
        }
        let table = mounts.reload(mount.tenant).await?;
        let Some(current) = table.iter().find(|m| m.id == mount.id) else {
            // Unmounted meanwhile: its storage is gone too, and the store refuses writes.
            return Ok(storage);
        };
        if !has_legacy_state(current) {
            return Ok(storage);
        }
        let legacy = JwtMountState::of(current)?;
        let entries = legacy
            .config
            .map(|config| (CONFIG_KEY.to_owned(), serde_json::to_value(config)))
            .into_iter()
            .chain(
                legacy
                    .roles
                    .into_iter()
                    .map(|(name, role)| (role_key(&name), serde_json::to_value(role))),
            );
        for (key, value) in entries {
            let value =
                value.map_err(|e| Error::internal_from("moving jwt mount configuration", e))?;
            match storage.put(&key, &value, Expect::Absent).await {
                Ok(_) | Err(Error::Conflict(_)) => {}
                Err(error) => return Err(error),
            }
        }
        mounts.set_config(current, serde_json::json!({})).await?;
        tracing::info!(mount = %mount.path, tenant = %mount.tenant, "jwt mount state moved into mount storage");
        self.state.forget_mount(mount.tenant, mount.id);
        self.forget_bearer(mount.tenant);
        Ok(storage)
    }

    /// The configuration of a mount, through the cache.
    async fn cached_config(
        &self,
        mounts: &Mounts,
        mount: &MountRecord,
    ) -> Result<Option<JwtConfig>> {
        let storage = self.storage(mounts, mount).await?;
        self.state.get(&storage, CONFIG_KEY).await
    }

    /// The tenant's jwt mount (other than `except`) that serves bearer tokens of `issuer`,
    /// with its configuration.
    async fn bearer_mount(
        &self,
        mounts: &Mounts,
        table: &crate::mounts::MountTable,
        issuer: &str,
        except: Option<MountId>,
    ) -> Result<Option<(Arc<MountRecord>, JwtConfig)>> {
        for mount in table
            .iter()
            .filter(|m| m.kind == AUTH_TYPE && Some(m.id) != except)
        {
            let Some(config) = self.cached_config(mounts, mount).await? else {
                continue;
            };
            if config.bearer_role.is_some() && issuer_of(&config).as_deref() == Some(issuer) {
                return Ok(Some((mount.clone(), config)));
            }
        }
        Ok(None)
    }

    /// Checks a JWT against a role of a mount; every failure is the same
    /// [`LOGIN_FAILED`] (the precise reason goes to the debug log).
    async fn verify(
        &self,
        mounts: &Mounts,
        mount: &MountRecord,
        role_name: Option<&str>,
        jwt: &str,
    ) -> Result<(String, JwtRole, VerifiedJwt)> {
        let failed = || Error::invalid(LOGIN_FAILED);
        let storage = self.storage(mounts, mount).await?;
        let config: JwtConfig = self
            .state
            .get(&storage, CONFIG_KEY)
            .await?
            .ok_or_else(failed)?;
        let role_name = role_name
            .filter(|r| !r.is_empty())
            .map(str::to_ascii_lowercase)
            .or_else(|| config.default_role.clone())
            .ok_or_else(|| Error::invalid("missing role"))?;
        // A name no role can have is an unknown role.
        let role: JwtRole = match crate::auth::approle::validate_role_name(&role_name) {
            Ok(name) => self.state.get(&storage, &role_key(&name)).await?,
            Err(_) => None,
        }
        .ok_or_else(failed)?;
        if jwt.is_empty() || jwt.len() > MAX_BEARER_LEN {
            return Err(failed());
        }
        let verifier = self.verifier(mount, &config).await?;
        match verifier.verify(jwt, &role, self.clock.now_unix()).await {
            Ok(verified) => Ok((role_name, role, verified)),
            Err(Error::InvalidRequest(reason)) => {
                tracing::debug!(%reason, mount = %mount.path, "jwt refused");
                Err(failed())
            }
            Err(other) => Err(other),
        }
    }

    /// `auth/<mount>/login`: a broker token with the role's policies and limits, whose
    /// metadata is the mapped claims and the role name.
    pub async fn login(
        &self,
        mounts: &Mounts,
        tokens: &Tokens,
        mount: &MountRecord,
        role_name: Option<&str>,
        jwt: &str,
        client: Option<IpAddr>,
    ) -> Result<IssuedToken> {
        let (role_name, role, verified) = self.verify(mounts, mount, role_name, jwt).await?;
        if !from_bound(&role.token_bound_cidrs, client) {
            return Err(Error::invalid(LOGIN_FAILED));
        }
        issue(tokens, mount, role_name, &role, &verified).await
    }

    /// Bearer mode: the caller a JWT stands for in `tenant`, through the tenant's jwt mount
    /// that has a `bearer_role` for the JWT's issuer. Verified once per tenant, then cached
    /// until the JWT's `exp` (CIDR bindings are checked at every use). Every refusal is
    /// `PermissionDenied`.
    pub async fn bearer(
        &self,
        mounts: &Mounts,
        tenant: TenantId,
        jwt: &str,
        client: Option<IpAddr>,
    ) -> Result<Caller> {
        let denied = || Error::PermissionDenied;
        if jwt.len() > MAX_BEARER_LEN {
            return Err(denied());
        }
        // Keyed by tenant and JWT: one JWT may serve several tenants' bearer mounts.
        let hash: [u8; 32] = Sha256::new()
            .chain_update(tenant.as_bytes())
            .chain_update(jwt.as_bytes())
            .finalize()
            .into();
        let now = self.clock.now_unix();
        if let Some(record) = self.bearer.get(&hash) {
            if !from_bound(&record.bound_cidrs, client) {
                return Err(denied());
            }
            if record.expires_at.is_some_and(|at| at > now) {
                return Ok(Caller { token: record });
            }
            self.bearer.invalidate(&hash);
        }
        let issuer = unverified_issuer(jwt).ok_or_else(denied)?;
        let table = mounts.table(tenant).await?;
        let (mount, config) = self
            .bearer_mount(mounts, &table, &issuer, None)
            .await?
            .ok_or_else(denied)?;
        let (role_name, role, verified) = self
            .verify(mounts, &mount, config.bearer_role.as_deref(), jwt)
            .await
            .map_err(|error| match error {
                Error::InvalidRequest(_) => denied(),
                other => other,
            })?;
        if !from_bound(&role.token_bound_cidrs, client) {
            return Err(denied());
        }
        let mut policies = role.token_policies.clone();
        // Bearer mode issues no token, but the same rule holds: never root from a role.
        if policies
            .iter()
            .any(|p| p == crate::auth::token::ROOT_POLICY)
        {
            return Err(denied());
        }
        if !role.token_no_default_policy {
            policies.push(DEFAULT_POLICY.to_owned());
        }
        policies.sort();
        policies.dedup();
        let mut meta = verified.metadata.clone();
        meta.insert("role".to_owned(), role_name);
        let record = Arc::new(TokenRecord {
            hash: hash.to_vec(),
            accessor: String::new(),
            tenant,
            policies,
            display_name: display_name(&mount, &verified.user),
            created_at: now,
            expires_at: Some(verified.expires_at),
            period: 0,
            ttl: 0,
            max_expires_at: Some(verified.expires_at),
            uses_remaining: None,
            parent_accessor: None,
            meta,
            renewable: false,
            bound_cidrs: role.token_bound_cidrs.clone(),
            auth_mount: Some(mount.id),
        });
        self.bearer.insert(hash, record.clone());
        Ok(Caller { token: record })
    }

    /// Drops one tenant's cached bearer identities and verifiers (its mounts or roles
    /// changed elsewhere, or it was deleted); other tenants' stay.
    pub fn forget_tenant(&self, tenant: TenantId) {
        self.forget_bearer(tenant);
        self.state.forget_tenant(tenant);
        self.verifiers.forget_tenant(tenant);
    }

    /// Drops what a write of a jwt mount's storage entry (on another node) makes stale: the
    /// entry, the tenant's bearer identities, and the mount's verifier if its configuration
    /// changed.
    pub fn forget_entry(&self, tenant: TenantId, mount: MountId, key: &str) {
        // A spent OIDC state changes no identity: bearer identities stay.
        if oidc::is_spent_marker(key) {
            return;
        }
        self.state.forget(tenant, mount, key);
        self.forget_bearer(tenant);
        if key == CONFIG_KEY {
            self.verifiers.forget_mount(mount);
        }
    }

    /// Drops every cached bearer identity, configuration, role and verifier (changes may
    /// have been missed).
    pub fn forget_all(&self) {
        self.bearer.invalidate_all();
        self.state.forget_all();
        self.verifiers.forget_all();
    }
}

#[cfg(test)]
mod tests {
    use std::{future::poll_fn, sync::atomic::AtomicUsize, task::Poll};

    use tokio::sync::Notify;

    use super::*;

    fn tenant(n: u8) -> TenantId {
        TenantId::parse(&format!("00000000-0000-4000-8000-0000000000{n:02x}")).unwrap()
    }

    fn mount(tenant: TenantId) -> MountRecord {
        MountRecord {
            id: MountId::random(),
            tenant,
            path: "auth/jwt/".to_owned(),
            kind: AUTH_TYPE.to_owned(),
            description: String::new(),
            config: serde_json::json!({}),
            created_at: 0,
        }
    }

    fn config(issuer: &str) -> JwtConfig {
        JwtConfig {
            bound_issuer: Some(issuer.to_owned()),
            ..JwtConfig::default()
        }
    }

    /// Polls `future` once, as an executor would, and says whether it finished.
    async fn poll_once<F: Future>(future: std::pin::Pin<&mut F>) -> bool {
        let mut future = future;
        poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx).is_ready())).await
    }

    #[tokio::test]
    async fn concurrent_first_logins_on_a_mount_build_its_verifier_once() {
        let cache = VerifierCache::<String>::new(100);
        let mount = mount(tenant(1));
        let config = config("https://idp.example");
        let (started, release) = (&AtomicUsize::new(0), &Notify::new());
        let build = || async move {
            started.fetch_add(1, Ordering::SeqCst);
            release.notified().await;
            Ok("keys of idp.example".to_owned())
        };
        let mut logins: Vec<_> = (0..32)
            .map(|_| Box::pin(cache.get_or_build(&mount, &config, build)))
            .collect();
        for login in &mut logins {
            assert!(!poll_once(login.as_mut()).await);
        }
        assert_eq!(
            started.load(Ordering::SeqCst),
            1,
            "one discovery, one fetch"
        );
        release.notify_one();
        for login in logins {
            assert_eq!(*login.await.unwrap(), "keys of idp.example");
        }
        assert_eq!(cache.builds.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_verifier_is_kept_per_configuration_and_a_failure_is_retried() {
        let cache = VerifierCache::<String>::new(100);
        let mount = mount(tenant(1));
        let (old, new) = (config("https://old.example"), config("https://new.example"));
        let built = |text: &str| {
            let text = text.to_owned();
            || async move { Ok(text) }
        };
        assert_eq!(
            *cache
                .get_or_build(&mount, &old, built("old"))
                .await
                .unwrap(),
            "old"
        );
        assert_eq!(
            *cache.get_or_build(&mount, &old, built("x")).await.unwrap(),
            "old"
        );
        assert_eq!(cache.builds.load(Ordering::SeqCst), 1);
        // A new configuration replaces the mount's verifier.
        assert_eq!(
            *cache
                .get_or_build(&mount, &new, built("new"))
                .await
                .unwrap(),
            "new"
        );
        assert_eq!(cache.builds.load(Ordering::SeqCst), 2);
        // An identity provider that cannot be reached is tried again at the next login.
        let other = self::mount(tenant(1));
        let unreachable = || async { Err(Error::Unavailable("down".into())) };
        assert!(cache.get_or_build(&other, &new, unreachable).await.is_err());
        assert_eq!(
            *cache.get_or_build(&other, &new, built("up")).await.unwrap(),
            "up"
        );
        assert_eq!(cache.builds.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn the_verifier_cache_stays_bounded_past_its_capacity() {
        const CAPACITY: u64 = 8;
        let cache = VerifierCache::<String>::new(CAPACITY);
        let config = config("https://idp.example");
        let mounts: Vec<MountRecord> = (0..500).map(|_| mount(tenant(1))).collect();
        for (i, mount) in mounts.iter().enumerate() {
            let verifier = cache
                .get_or_build(mount, &config, || async move { Ok(format!("mount {i}")) })
                .await
                .unwrap();
            assert_eq!(*verifier, format!("mount {i}"));
        }
        cache.slots.run_pending_tasks();
        assert!(cache.slots.entry_count() <= CAPACITY);
        // An evicted mount's verifier is rebuilt for that mount, never another's.
        for i in [0, 250, 499] {
            let verifier = cache
                .get_or_build(
                    &mounts[i],
                    &config,
                    || async move { Ok(format!("mount {i}")) },
                )
                .await
                .unwrap();
            assert_eq!(*verifier, format!("mount {i}"));
        }
    }

    #[tokio::test]
    async fn forgetting_a_tenant_keeps_other_tenants_verifiers_and_bearer_identities() {
        let auth = JwtAuth::new(
            Arc::new(crate::clock::SystemClock),
            Arc::new(crate::auth::jwt::test_support::StubProviders::default()),
            zeroize::Zeroizing::new([7; 32]),
        );
        let (acme, globex) = (tenant(1), tenant(2));
        let config = config("https://idp.example");
        let (acme_mount, globex_mount) = (mount(acme), mount(globex));
        // Slots whose verifiers are not built yet are enough to see what is dropped.
        for mount in [&acme_mount, &globex_mount] {
            let slot = auth.verifiers.slot(mount.tenant, &config, None);
            auth.verifiers.slots.insert(mount.id, Arc::new(slot));
        }
        let record = |tenant: TenantId| {
            Arc::new(TokenRecord {
                hash: Vec::new(),
                accessor: String::new(),
                tenant,
                policies: Vec::new(),
                display_name: String::new(),
                created_at: 0,
                expires_at: None,
                period: 0,
                ttl: 0,
                max_expires_at: None,
                uses_remaining: None,
                parent_accessor: None,
                meta: BTreeMap::new(),
                renewable: false,
                bound_cidrs: Vec::new(),
                auth_mount: None,
            })
        };
        auth.bearer.insert([1; 32], record(acme));
        auth.bearer.insert([2; 32], record(globex));

        auth.forget_tenant(acme);
        assert!(auth.bearer.get(&[1; 32]).is_none());
        assert!(auth.bearer.get(&[2; 32]).is_some());
        assert!(auth.verifiers.slots.get(&acme_mount.id).is_none());
        assert!(auth.verifiers.slots.get(&globex_mount.id).is_some());
    }
}
