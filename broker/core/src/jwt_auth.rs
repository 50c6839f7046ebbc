//! The JWT auth method's mounts (Vault API: auth/jwt): configuration and roles, logins that
//! exchange a JWT for a broker token, and bearer mode (our extension: a request carries
//! `Authorization: Bearer <jwt>` itself and gets the bearer role's policies, no login).
//!
//! A mount's configuration and roles live in the mount's `config` JSON, so every node of a
//! cluster sees a change through the mount table it already follows. Each mount has one
//! [`Verifier`] (key material, JWKS cache), rebuilt when its configuration changes. Token
//! validation itself is [`crate::jwt`].

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    sync::{Arc, RwLock},
    time::Duration,
};

use moka::sync::Cache;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    clock::Clock,
    error::{Error, Result},
    jwt::{JwtConfig, JwtConfigInput, JwtRole, JwtRoleInput, VerifiedJwt, Verifier},
    mounts::Mounts,
    store::{MountRecord, TokenRecord},
    tokens::{Caller, IssuedToken, TokenRequest, Tokens, DEFAULT_POLICY},
    MountId, TenantId,
};

/// The auth method type (`bao auth enable jwt`).
pub const AUTH_TYPE: &str = "jwt";

/// The answer to every failed login, whatever the reason (the reason is logged at debug).
pub const LOGIN_FAILED: &str = "invalid role or JWT";

/// Longest accepted `Authorization` value for bearer mode, checked before any decoding.
pub const MAX_BEARER_LEN: usize = 8 * 1024;

/// What a jwt mount keeps in its `config`.
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
    /// The state stored in a mount's config (`{}` for a new mount).
    pub fn of(mount: &MountRecord) -> Result<Self> {
        if mount.config.as_object().is_some_and(|o| o.is_empty()) {
            return Ok(Self::default());
        }
        Self::deserialize(&mount.config)
            .map_err(|e| Error::internal_from("stored jwt mount configuration", e))
    }

    fn to_value(&self) -> Result<serde_json::Value> {
        serde_json::to_value(self).map_err(|e| Error::internal_from("jwt mount configuration", e))
    }
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

/// The tenant's jwt mount (other than `except`) that serves bearer tokens of `issuer`, with
/// its configuration.
fn bearer_mount(
    table: &crate::mounts::MountTable,
    issuer: &str,
    except: Option<MountId>,
) -> Option<(Arc<MountRecord>, JwtConfig)> {
    table
        .iter()
        .filter(|m| m.kind == AUTH_TYPE && Some(m.id) != except)
        .find_map(|mount| {
            let config = JwtMountState::of(mount).ok()?.config?;
            (config.bearer_role.is_some() && issuer_of(&config).as_deref() == Some(issuer))
                .then(|| (mount.clone(), config))
        })
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
/// three dot-separated segments and no `kbs.` prefix (the rule).
pub fn looks_like_jwt(value: &str) -> bool {
    !value.starts_with(crate::tokens::TOKEN_PREFIX) && value.split('.').count() == 3
}

/// JWT mounts of every tenant: verifiers and the bearer-mode cache.
pub struct JwtAuth {
    clock: Arc<dyn Clock>,
    verifiers: RwLock<HashMap<MountId, (JwtConfig, Arc<Verifier>)>>,
    /// Bearer JWTs already verified, by SHA-256 of (tenant, JWT), until their `exp`.
    bearer: Cache<[u8; 32], Arc<TokenRecord>>,
}

impl std::fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtAuth(..)")
    }
}

impl JwtAuth {
    /// The service; verifiers are built on first use of each mount.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            verifiers: RwLock::new(HashMap::new()),
            bearer: Cache::builder()
                .max_capacity(100_000)
                // Entries are also checked against their token's expiry at every use.
                .time_to_live(Duration::from_secs(3600))
                .build(),
        }
    }

    /// The verifier of a mount's current configuration, built if the configuration changed.
    async fn verifier(&self, mount: &MountRecord, config: &JwtConfig) -> Result<Arc<Verifier>> {
        let cached = self.verifiers.read().ok().and_then(|v| {
            v.get(&mount.id)
                .filter(|(built_for, _)| built_for == config)
                .map(|(_, verifier)| verifier.clone())
        });
        if let Some(verifier) = cached {
            return Ok(verifier);
        }
        // The configuration was accepted when written: failing to build its verifier now
        // (discovery, first JWKS fetch) means the identity provider is unreachable.
        let verifier = Verifier::new(config).await.map_err(|error| {
            tracing::warn!(mount = %mount.path, %error, "jwt keys cannot be fetched");
            Error::Unavailable("the identity provider's keys cannot be fetched".into())
        })?;
        Ok(self.remember(mount.id, config, verifier))
    }

    fn remember(&self, mount: MountId, config: &JwtConfig, verifier: Verifier) -> Arc<Verifier> {
        let verifier = Arc::new(verifier);
        if let Ok(mut verifiers) = self.verifiers.write() {
            verifiers.insert(mount, (config.clone(), verifier.clone()));
        }
        verifier
    }

    /// Writes `auth/<mount>/config`: checked, its keys fetched (a configuration whose keys
    /// cannot be had is refused), and at most one bearer mount per (tenant, issuer).
    pub async fn write_config(
        &self,
        mounts: &Mounts,
        mount: &MountRecord,
        input: JwtConfigInput,
    ) -> Result<()> {
        let config = JwtConfig::from_input(input)?;
        if config.bearer_role.is_some() {
            let issuer = issuer_of(&config).ok_or_else(|| {
                Error::invalid("bearer_role needs bound_issuer or oidc_discovery_url")
            })?;
            let table = mounts.table(mount.tenant).await?;
            if let Some((other, _)) = bearer_mount(&table, &issuer, Some(mount.id)) {
                return Err(Error::invalid(format!(
                    "auth/{} already serves bearer tokens of issuer {issuer}",
                    other.path.trim_start_matches("auth/")
                )));
            }
        }
        let verifier = Verifier::new(&config).await?;
        let mut state = JwtMountState::of(mount)?;
        state.config = Some(config.clone());
        mounts.set_config(mount, state.to_value()?).await?;
        self.remember(mount.id, &config, verifier);
        self.bearer.invalidate_all();
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
        let name = crate::approle::validate_role_name(name)?;
        let mut state = JwtMountState::of(mount)?;
        let role = JwtRole::apply(state.roles.get(&name).cloned(), input)?;
        crate::cidr::parse_list(&role.token_bound_cidrs)?;
        state.roles.insert(name, role);
        mounts.set_config(mount, state.to_value()?).await?;
        self.bearer.invalidate_all();
        Ok(())
    }

    /// Deletes a role (unknown names succeed, as in Vault).
    pub async fn delete_role(
        &self,
        mounts: &Mounts,
        mount: &MountRecord,
        name: &str,
    ) -> Result<()> {
        let name = name.to_ascii_lowercase();
        let mut state = JwtMountState::of(mount)?;
        if state.roles.remove(&name).is_some() {
            mounts.set_config(mount, state.to_value()?).await?;
        }
        self.bearer.invalidate_all();
        Ok(())
    }

    /// Checks a JWT against a role of a mount; every failure is the same
    /// [`LOGIN_FAILED`] (the precise reason goes to the debug log).
    async fn verify(
        &self,
        mount: &MountRecord,
        role_name: Option<&str>,
        jwt: &str,
    ) -> Result<(String, JwtRole, VerifiedJwt)> {
        let failed = || Error::invalid(LOGIN_FAILED);
        let state = JwtMountState::of(mount)?;
        let config = state.config.as_ref().ok_or_else(failed)?;
        let role_name = role_name
            .filter(|r| !r.is_empty())
            .map(str::to_ascii_lowercase)
            .or_else(|| config.default_role.clone())
            .ok_or_else(|| Error::invalid("missing role"))?;
        let role = state.roles.get(&role_name).cloned().ok_or_else(failed)?;
        if jwt.is_empty() || jwt.len() > MAX_BEARER_LEN {
            return Err(failed());
        }
        let verifier = self.verifier(mount, config).await?;
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
        tokens: &Tokens,
        mount: &MountRecord,
        role_name: Option<&str>,
        jwt: &str,
        client: Option<IpAddr>,
    ) -> Result<IssuedToken> {
        let (role_name, role, verified) = self.verify(mount, role_name, jwt).await?;
        if !from_bound(&role.token_bound_cidrs, client) {
            return Err(Error::invalid(LOGIN_FAILED));
        }
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
            display_name: Some(format!("{}-{}", AUTH_TYPE, verified.user)),
            renewable: Some(true),
            no_default_policy: role.token_no_default_policy,
            bound_cidrs: role.token_bound_cidrs.clone(),
            period: (role.token_period > 0).then_some(role.token_period),
            auth_mount: Some(mount.id),
        };
        tokens.create(mount.tenant, None, request).await
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
        let (mount, config) = bearer_mount(&table, &issuer, None).ok_or_else(denied)?;
        let (role_name, role, verified) = self
            .verify(&mount, config.bearer_role.as_deref(), jwt)
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
        if policies.iter().any(|p| p == crate::tokens::ROOT_POLICY) {
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
            display_name: format!("{}-{}", AUTH_TYPE, verified.user),
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

    /// Drops cached bearer identities and verifiers (a mount or role changed elsewhere).
    pub fn forget_all(&self) {
        self.bearer.invalidate_all();
        if let Ok(mut verifiers) = self.verifiers.write() {
            verifiers.clear();
        }
    }
}
