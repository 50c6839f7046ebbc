//! The AppRole auth method (Vault's `approle`): roles, secret_ids and the checks of a login.
//!
//! - A **role** names the policies and lifetimes of the tokens its logins get, and the
//!   constraints of a login: a secret_id (`bind_secret_id`), client CIDR blocks.
//! - A **secret_id** is random (or chosen: `custom-secret-id`), shown once and stored only as
//!   HMAC-SHA256 under a key sealed by the root key; it may be limited in uses, lifetime and
//!   client CIDR blocks, never more widely than its role allows. Uses are consumed by one
//!   atomic statement in the store, so N concurrent logins with a secret_id of one use yield
//!   one token.
//! - A **login** ([`AppRoles::verify_login`]) fails with one message, [`LOGIN_FAILED`],
//!   whatever the reason, after the same store reads for an unknown role_id as for a known
//!   one. Repeated failures for a (role_id, client address) pair lock that pair out for a
//!   while ([`Lockout`]); other addresses are not affected, so knowing a role_id does not
//!   let anyone lock its service out.
//!
//! The broker turns a verified login into a token ([`crate::Broker::approle_login`]).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::IpAddr,
    sync::{Arc, Mutex},
};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::{
    cidr,
    clock::Clock,
    error::{Error, Result},
    store::{AppRoleRecord, MountRecord, SecretIdRecord, Store, StoreError},
    MountId, TenantId,
};

/// The auth method's type name (`bao auth enable approle`).
pub const AUTH_TYPE: &str = "approle";

/// The one answer to every failed login (Vault's message).
pub const LOGIN_FAILED: &str = "invalid role or secret ID";

/// Name under which the secret_id HMAC key is sealed in the store.
pub const SECRET_ID_KEY_NAME: &str = "approle-secret-id-key";

/// Longest role name, role_id or secret_id accepted.
const MAX_IDENTIFIER_LEN: usize = 512;

/// Expired secret_ids deleted per store statement by a tidy.
const TIDY_BATCH: u32 = 500;

/// Limits of the AppRole method.
#[derive(Clone, Debug)]
pub struct AppRoleSettings {
    /// Failed logins of a (role_id, client address) pair that lock the pair out.
    pub lockout_threshold: u32,
    /// Seconds over which failures are counted, and for which a locked pair stays locked.
    pub lockout_duration: u64,
}

impl Default for AppRoleSettings {
    fn default() -> Self {
        // Vault's user lockout defaults: 5 failures, 15 minutes.
        Self {
            lockout_threshold: 5,
            lockout_duration: 15 * 60,
        }
    }
}

/// A role write (Vault API: auth/approle/role/:role_name). `None` keeps the current value,
/// or takes Vault's default when the role is created.
#[derive(Clone, Debug, Default)]
pub struct RoleUpdate {
    /// A chosen role_id (default: a random UUID on creation).
    pub role_id: Option<String>,
    /// Whether logins need a secret_id (default true).
    pub bind_secret_id: Option<bool>,
    /// Uses of each secret_id (0 = unlimited).
    pub secret_id_num_uses: Option<u64>,
    /// Lifetime of each secret_id, seconds (0 = unlimited).
    pub secret_id_ttl: Option<u64>,
    /// CIDR blocks logins must come from.
    pub secret_id_bound_cidrs: Option<Vec<String>>,
    /// CIDR blocks issued tokens may be used from.
    pub token_bound_cidrs: Option<Vec<String>>,
    /// Policies of issued tokens.
    pub token_policies: Option<Vec<String>>,
    /// TTL of issued tokens, seconds.
    pub token_ttl: Option<u64>,
    /// Maximum lifetime of issued tokens, seconds.
    pub token_max_ttl: Option<u64>,
    /// Hard limit on issued tokens' lifetime, seconds.
    pub token_explicit_max_ttl: Option<u64>,
    /// Uses of each issued token (0 = unlimited).
    pub token_num_uses: Option<u64>,
    /// Leave `default` out of issued tokens' policies.
    pub token_no_default_policy: Option<bool>,
    /// Period of the issued tokens in seconds (0 = not periodic).
    pub token_period: Option<u64>,
}

/// A secret_id to issue (Vault API: auth/approle/role/:role_name/secret-id and
/// custom-secret-id).
#[derive(Default)]
pub struct SecretIdRequest {
    /// The secret_id itself for `custom-secret-id`; a random one otherwise.
    pub custom: Option<Zeroizing<String>>,
    /// Copied into the metadata of tokens it logs in.
    pub metadata: BTreeMap<String, String>,
    /// CIDR blocks its logins must come from, within the role's.
    pub cidr_list: Vec<String>,
    /// CIDR blocks its tokens may be used from, within the role's.
    pub token_bound_cidrs: Vec<String>,
    /// Lifetime in seconds, at most the role's `secret_id_ttl` (default: the role's).
    pub ttl: Option<u64>,
    /// Uses, at most the role's `secret_id_num_uses` (default: the role's).
    pub num_uses: Option<u64>,
}

impl std::fmt::Debug for SecretIdRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretIdRequest")
            .field("custom", &self.custom.as_ref().map(|_| "<redacted>"))
            .field("cidr_list", &self.cidr_list)
            .field("ttl", &self.ttl)
            .field("num_uses", &self.num_uses)
            .finish_non_exhaustive()
    }
}

/// A secret_id just issued: its text (shown once) and what was stored.
pub struct IssuedSecretId {
    /// The secret_id.
    pub secret_id: Zeroizing<String>,
    /// The stored record (keyed hash only).
    pub record: SecretIdRecord,
}

impl std::fmt::Debug for IssuedSecretId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedSecretId")
            .field("accessor", &self.record.accessor)
            .finish_non_exhaustive()
    }
}

/// What a login attempt revealed about who tried, for the audit log, whatever the outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoginIdentity {
    /// The role whose role_id was presented, if it exists.
    pub role_name: Option<String>,
    /// The accessor of the presented secret_id, if it was found.
    pub secret_id_accessor: Option<String>,
}

/// A login whose credentials passed every check (and whose secret_id use was consumed).
#[derive(Clone, Debug)]
pub struct VerifiedLogin {
    /// The role.
    pub role: AppRoleRecord,
    /// The secret_id, when the role binds one.
    pub secret_id: Option<SecretIdRecord>,
}

/// The roles and secret_ids of every approle mount.
pub struct AppRoles {
    mac: Hmac<Sha256>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    lockout: Lockout,
    tidying: Mutex<HashSet<MountId>>,
}

impl std::fmt::Debug for AppRoles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppRoles(..)")
    }
}

fn failed() -> Error {
    Error::invalid(LOGIN_FAILED)
}

/// Checks a role name (Vault's `\w([\w.-]*\w)?`) and returns it in lowercase, as Vault
/// stores role names.
pub fn validate_role_name(name: &str) -> Result<String> {
    let bytes = name.as_bytes();
    let word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    let valid = !bytes.is_empty()
        && bytes.len() <= 128
        && bytes.first().is_some_and(word)
        && bytes.last().is_some_and(word)
        && bytes.iter().all(|b| word(b) || matches!(b, b'-' | b'.'));
    if !valid {
        return Err(Error::invalid(format!(
            "invalid role name {name:?}: use letters, digits, '_', '-' and '.', starting and ending with a letter, digit or '_'"
        )));
    }
    Ok(name.to_ascii_lowercase())
}

/// Checks a chosen role_id or secret_id: 1 to 512 printable ASCII characters.
fn validate_identifier(what: &str, text: &str) -> Result<()> {
    if text.is_empty()
        || text.len() > MAX_IDENTIFIER_LEN
        || !text.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(Error::invalid(format!(
            "invalid {what}: use 1-{MAX_IDENTIFIER_LEN} printable ASCII characters without spaces"
        )));
    }
    Ok(())
}

fn normalize_policies(policies: &[String]) -> Vec<String> {
    let mut out: Vec<String> = policies
        .iter()
        .map(|p| p.trim().to_ascii_lowercase())
        .filter(|p| !p.is_empty())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Applies an update to a role (or to a new role's defaults) and checks the result.
fn apply_update(mut role: AppRoleRecord, update: RoleUpdate) -> Result<AppRoleRecord> {
    if let Some(role_id) = update.role_id {
        validate_identifier("role_id", &role_id)?;
        role.role_id = role_id;
    }
    if let Some(bind) = update.bind_secret_id {
        role.bind_secret_id = bind;
    }
    if let Some(uses) = update.secret_id_num_uses {
        role.secret_id_num_uses = uses;
    }
    if let Some(ttl) = update.secret_id_ttl {
        role.secret_id_ttl = ttl;
    }
    if let Some(cidrs) = update.secret_id_bound_cidrs {
        role.secret_id_bound_cidrs = cidr::canonical_list(&cidrs)?;
    }
    if let Some(cidrs) = update.token_bound_cidrs {
        role.token_bound_cidrs = cidr::canonical_list(&cidrs)?;
    }
    if let Some(policies) = update.token_policies {
        let policies = normalize_policies(&policies);
        crate::auth::token::refuse_root_for_auth_method("token_policies", &policies)?;
        role.token_policies = policies;
    }
    if let Some(ttl) = update.token_ttl {
        role.token_ttl = ttl;
    }
    if let Some(ttl) = update.token_max_ttl {
        role.token_max_ttl = ttl;
    }
    if let Some(ttl) = update.token_explicit_max_ttl {
        role.token_explicit_max_ttl = ttl;
    }
    if let Some(uses) = update.token_num_uses {
        role.token_num_uses = uses;
    }
    if let Some(no_default) = update.token_no_default_policy {
        role.token_no_default_policy = no_default;
    }
    if let Some(period) = update.token_period {
        role.token_period = period;
    }
    if role.token_max_ttl > 0 && role.token_ttl > role.token_max_ttl {
        return Err(Error::invalid(
            "token_ttl should not be greater than token_max_ttl",
        ));
    }
    if !role.bind_secret_id
        && role.secret_id_bound_cidrs.is_empty()
        && role.token_bound_cidrs.is_empty()
    {
        return Err(Error::invalid(
            "at least one constraint should be enabled on the role",
        ));
    }
    Ok(role)
}

/// Narrows a secret_id request to its role: limits may be lower than the role's, never
/// higher, and never unlimited where the role limits (Vault's rule).
fn narrow(role: &AppRoleRecord, request: &SecretIdRequest) -> Result<(u64, u64)> {
    let num_uses = match request.num_uses {
        None => role.secret_id_num_uses,
        Some(uses)
            if role.secret_id_num_uses > 0 && (uses == 0 || uses > role.secret_id_num_uses) =>
        {
            return Err(Error::invalid(
                "num_uses cannot be higher than the role's secret_id_num_uses",
            ))
        }
        Some(uses) => uses,
    };
    let ttl = match request.ttl {
        None => role.secret_id_ttl,
        Some(ttl) if role.secret_id_ttl > 0 && (ttl == 0 || ttl > role.secret_id_ttl) => {
            return Err(Error::invalid(
                "ttl cannot be longer than the role's secret_id_ttl",
            ))
        }
        Some(ttl) => ttl,
    };
    Ok((num_uses, ttl))
}

fn seconds(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl AppRoles {
    /// The AppRole service; `key` is the secret_id HMAC key (sealed under the root key).
    pub fn new(
        key: &[u8],
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        settings: AppRoleSettings,
    ) -> Result<Self> {
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
            .map_err(|_| Error::internal("approle key length"))?;
        Ok(Self {
            mac,
            store,
            lockout: Lockout::new(
                settings.lockout_threshold,
                seconds(settings.lockout_duration),
            ),
            clock,
            tidying: Mutex::new(HashSet::new()),
        })
    }

    /// The keyed hash under which a secret_id is stored.
    fn hash(&self, secret_id: &str) -> Vec<u8> {
        let mut mac = self.mac.clone();
        mac.update(secret_id.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// Creates a role or updates it.
    pub async fn write_role(
        &self,
        mount: &MountRecord,
        name: &str,
        update: RoleUpdate,
    ) -> Result<AppRoleRecord> {
        let name = validate_role_name(name)?;
        let current = match self
            .store
            .get_approle_role(mount.tenant, mount.id, &name)
            .await?
        {
            Some(role) => role,
            None => AppRoleRecord::new(
                mount.tenant,
                mount.id,
                &name,
                &uuid::Uuid::new_v4().to_string(),
                self.clock.now_unix(),
            ),
        };
        let role = apply_update(current, update)?;
        self.put_role(&role).await?;
        Ok(role)
    }

    async fn put_role(&self, role: &AppRoleRecord) -> Result<()> {
        match self.store.put_approle_role(role).await {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict) => Err(Error::invalid("role_id already in use")),
            Err(other) => Err(other.into()),
        }
    }

    /// A role, if it exists.
    pub async fn read_role(
        &self,
        mount: &MountRecord,
        name: &str,
    ) -> Result<Option<AppRoleRecord>> {
        let name = name.to_ascii_lowercase();
        Ok(self
            .store
            .get_approle_role(mount.tenant, mount.id, &name)
            .await?)
    }

    /// A role that must exist (secret_id operations).
    async fn role(&self, mount: &MountRecord, name: &str) -> Result<AppRoleRecord> {
        self.read_role(mount, name).await?.ok_or_else(|| {
            Error::invalid(format!(
                "role \"{}\" does not exist",
                name.to_ascii_lowercase()
            ))
        })
    }

    /// Names of a mount's roles.
    pub async fn list_roles(&self, mount: &MountRecord) -> Result<Vec<String>> {
        Ok(self
            .store
            .list_approle_roles(mount.tenant, mount.id)
            .await?)
    }

    /// Deletes a role and its secret_ids. Unknown roles succeed, as in Vault.
    pub async fn delete_role(&self, mount: &MountRecord, name: &str) -> Result<()> {
        let name = name.to_ascii_lowercase();
        self.store
            .delete_approle_role(mount.tenant, mount.id, &name)
            .await?;
        Ok(())
    }

    /// Replaces a role's role_id (its secret_ids stay valid).
    pub async fn set_role_id(&self, mount: &MountRecord, name: &str, role_id: &str) -> Result<()> {
        let mut role = self.role(mount, name).await?;
        validate_identifier("role_id", role_id)?;
        role.role_id = role_id.to_owned();
        self.put_role(&role).await
    }

    /// Issues a secret_id for a role, within the role's limits.
    pub async fn issue_secret_id(
        &self,
        mount: &MountRecord,
        name: &str,
        request: SecretIdRequest,
    ) -> Result<IssuedSecretId> {
        let role = self.role(mount, name).await?;
        if !role.bind_secret_id {
            return Err(Error::invalid("bind_secret_id is not set on the role"));
        }
        let (num_uses, ttl) = narrow(&role, &request)?;
        let cidr_list = cidr::canonical_list(&request.cidr_list)?;
        if !cidr::is_subset(&cidr_list, &role.secret_id_bound_cidrs)? {
            return Err(Error::invalid(
                "failed to verify the CIDR restrictions set on the secret ID: cidr_list must lie within the role's secret_id_bound_cidrs",
            ));
        }
        let token_bound_cidrs = cidr::canonical_list(&request.token_bound_cidrs)?;
        if !cidr::is_subset(&token_bound_cidrs, &role.token_bound_cidrs)? {
            return Err(Error::invalid(
                "failed to verify the CIDR restrictions set on the secret ID: token_bound_cidrs must lie within the role's token_bound_cidrs",
            ));
        }
        let secret_id = match request.custom {
            Some(custom) => {
                validate_identifier("secret_id", &custom)?;
                custom
            }
            None => Zeroizing::new(uuid::Uuid::new_v4().to_string()),
        };
        let now = self.clock.now_unix();
        let record = SecretIdRecord {
            hash: self.hash(&secret_id),
            accessor: uuid::Uuid::new_v4().to_string(),
            tenant: mount.tenant,
            mount: mount.id,
            role_name: role.name,
            metadata: request.metadata,
            cidr_list,
            token_bound_cidrs,
            uses_remaining: (num_uses > 0).then_some(num_uses),
            num_uses,
            ttl,
            created_at: now,
            expires_at: (ttl > 0).then(|| now.saturating_add(seconds(ttl))),
        };
        match self.store.put_approle_secret_id(&record).await {
            Ok(()) => Ok(IssuedSecretId { secret_id, record }),
            Err(StoreError::Conflict) => Err(Error::invalid("SecretID is already registered")),
            Err(other) => Err(other.into()),
        }
    }

    fn live(&self, record: Option<SecretIdRecord>) -> Option<SecretIdRecord> {
        let now = self.clock.now_unix();
        record.filter(|r| r.expires_at.is_none_or(|at| at > now))
    }

    /// A role's live secret_id by its value.
    pub async fn lookup_secret_id(
        &self,
        mount: &MountRecord,
        name: &str,
        secret_id: &str,
    ) -> Result<Option<SecretIdRecord>> {
        let role = self.role(mount, name).await?;
        let found = self
            .store
            .get_approle_secret_id(mount.tenant, mount.id, &role.name, &self.hash(secret_id))
            .await?;
        Ok(self.live(found))
    }

    /// A role's live secret_id by accessor.
    pub async fn lookup_secret_id_accessor(
        &self,
        mount: &MountRecord,
        name: &str,
        accessor: &str,
    ) -> Result<Option<SecretIdRecord>> {
        let role = self.role(mount, name).await?;
        let found = self
            .store
            .get_approle_secret_id_by_accessor(mount.tenant, mount.id, &role.name, accessor)
            .await?;
        Ok(self.live(found))
    }

    /// Destroys a role's secret_id by its value; unknown ones succeed, as in Vault.
    pub async fn destroy_secret_id(
        &self,
        mount: &MountRecord,
        name: &str,
        secret_id: &str,
    ) -> Result<()> {
        let role = self.role(mount, name).await?;
        self.store
            .delete_approle_secret_id(mount.tenant, mount.id, &role.name, &self.hash(secret_id))
            .await?;
        Ok(())
    }

    /// Destroys a role's secret_id by accessor; returns whether it existed.
    pub async fn destroy_secret_id_accessor(
        &self,
        mount: &MountRecord,
        name: &str,
        accessor: &str,
    ) -> Result<bool> {
        let role = self.role(mount, name).await?;
        let Some(found) = self
            .store
            .get_approle_secret_id_by_accessor(mount.tenant, mount.id, &role.name, accessor)
            .await?
        else {
            return Ok(false);
        };
        Ok(self
            .store
            .delete_approle_secret_id(mount.tenant, mount.id, &role.name, &found.hash)
            .await?)
    }

    /// Accessors of a role's secret_ids.
    pub async fn list_secret_id_accessors(
        &self,
        mount: &MountRecord,
        name: &str,
    ) -> Result<Vec<String>> {
        let role = self.role(mount, name).await?;
        Ok(self
            .store
            .list_approle_secret_id_accessors(mount.tenant, mount.id, &role.name)
            .await?)
    }

    /// Checks a login's credentials from `client` and consumes a use of its secret_id.
    /// Every refusal is [`LOGIN_FAILED`], reached through the same store reads whether or
    /// not the role_id exists; the [`LoginIdentity`] says what was found, for the audit log.
    pub async fn verify_login(
        &self,
        mount: &MountRecord,
        role_id: &str,
        secret_id: &str,
        client: Option<IpAddr>,
    ) -> (LoginIdentity, Result<VerifiedLogin>) {
        let mut identity = LoginIdentity::default();
        let result = self
            .check_login(mount, role_id, secret_id, client, &mut identity)
            .await;
        (identity, result)
    }

    async fn check_login(
        &self,
        mount: &MountRecord,
        role_id: &str,
        secret_id: &str,
        client: Option<IpAddr>,
        identity: &mut LoginIdentity,
    ) -> Result<VerifiedLogin> {
        let role_id = role_id.trim();
        let secret_id = secret_id.trim();
        let client = client.map(cidr::canonical_address);
        let pair = LockKey {
            tenant: mount.tenant,
            mount: mount.id,
            role_id: Sha256::digest(role_id.as_bytes()).into(),
            client,
        };
        // The same reads whatever the outcome: a role lookup, one HMAC, a secret_id lookup
        // (under a name no role can have when the role_id is unknown).
        let role = self
            .store
            .get_approle_role_by_role_id(mount.tenant, mount.id, role_id)
            .await?;
        let hash = self.hash(secret_id);
        let lookup_name = role.as_ref().map_or("\0", |r| r.name.as_str());
        let stored = self
            .store
            .get_approle_secret_id(mount.tenant, mount.id, lookup_name, &hash)
            .await?;
        let now = self.clock.now_unix();
        if let Some(role) = &role {
            identity.role_name = Some(role.name.clone());
            if role.bind_secret_id {
                identity.secret_id_accessor = stored.as_ref().map(|s| s.accessor.clone());
            }
        }
        if self.lockout.is_locked(&pair, now) {
            return Err(failed());
        }
        let verified = role.and_then(|role| {
            let from = |blocks: &[String]| {
                blocks.is_empty() || client.is_some_and(|c| cidr::contains_any(blocks, c))
            };
            let secret = if role.bind_secret_id {
                let secret = stored.filter(|s| {
                    !secret_id.is_empty()
                        && s.expires_at.is_none_or(|at| at > now)
                        && from(&s.cidr_list)
                })?;
                Some(secret)
            } else {
                None
            };
            from(&role.secret_id_bound_cidrs).then_some(VerifiedLogin {
                role,
                secret_id: secret,
            })
        });
        let Some(verified) = verified else {
            self.lockout.record_failure(pair, now);
            return Err(failed());
        };
        // Consumed last, so a refused login never spends a use.
        if let Some(secret) = verified
            .secret_id
            .as_ref()
            .filter(|s| s.uses_remaining.is_some())
        {
            let left = self
                .store
                .use_approle_secret_id(mount.tenant, mount.id, &secret.role_name, &secret.hash)
                .await?;
            if left.is_none() {
                self.lockout.record_failure(pair, now);
                return Err(failed());
            }
        }
        self.lockout.clear(&pair);
        Ok(verified)
    }

    /// Deletes a mount's expired secret_ids in small batches, yielding between them so
    /// logins never wait on it. Returns how many were deleted, or `None` if a tidy of the
    /// mount is already running.
    pub async fn tidy(&self, mount: &MountRecord) -> Result<Option<u64>> {
        let Some(_running) = TidyGuard::start(&self.tidying, mount.id) else {
            return Ok(None);
        };
        let mut total = 0;
        loop {
            let deleted = self
                .store
                .tidy_approle_secret_ids(mount.tenant, mount.id, self.clock.now_unix(), TIDY_BATCH)
                .await?;
            total += deleted;
            if deleted < u64::from(TIDY_BATCH) {
                return Ok(Some(total));
            }
            tokio::task::yield_now().await;
        }
    }
}

/// Marks a mount's tidy as running until dropped.
struct TidyGuard<'a> {
    running: &'a Mutex<HashSet<MountId>>,
    mount: MountId,
}

impl<'a> TidyGuard<'a> {
    fn start(running: &'a Mutex<HashSet<MountId>>, mount: MountId) -> Option<Self> {
        let mut set = running.lock().ok()?;
        set.insert(mount).then_some(Self { running, mount })
    }
}

impl Drop for TidyGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut set) = self.running.lock() {
            set.remove(&self.mount);
        }
    }
}

/// What a lockout is keyed by: the pair (role_id, client address) within a mount. The
/// role_id is kept only as a digest, so memory does not grow with what callers send.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LockKey {
    tenant: TenantId,
    mount: MountId,
    role_id: [u8; 32],
    client: Option<IpAddr>,
}

impl LockKey {
    /// What the overflow sketch counts for this pair: the client (an IPv6 client by its
    /// /64, what one host usually holds) within the mount, without the role_id. An attacker
    /// who makes fresh pairs by sending made-up role_ids then adds to the cells of their own
    /// address only, so the flood locks that address out and not, by collisions, others.
    fn overflow_key(&self) -> (TenantId, MountId, Option<IpAddr>) {
        let client = self.client.map(|address| match address {
            IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
            v4 => v4,
        });
        (self.tenant, self.mount, client)
    }
}

#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    window_start: i64,
    locked_until: Option<i64>,
}

impl Failures {
    fn is_locked(&self, now: i64) -> bool {
        self.locked_until.is_some_and(|until| until > now)
    }

    /// Whether the entry still says something at `now`: locked, or counting failures whose
    /// window is open. Anything else would be reset by the pair's next failure anyway.
    fn is_live(&self, now: i64, window: i64) -> bool {
        self.is_locked(now) || (self.locked_until.is_none() && now - self.window_start < window)
    }
}

/// Most (role_id, client address) pairs whose failures are counted exactly, by default.
pub const DEFAULT_LOCKOUT_CAPACITY: usize = 100_000;

/// Failed logins per (role_id, client address), in memory: `threshold` failures within
/// `window` seconds lock the pair for `window` seconds from the last of them.
///
/// # Bounded, and still locking once full
///
/// Pairs are made by callers (any role_id, from any address), so the exact table holds at
/// most `capacity` of them. What happens when it is full decides whether the lockout holds:
/// an attacker who can fill it must gain nothing against the pair they attack.
///
/// - **A live entry is never evicted.** Evicting (LRU, or moka's TinyLFU) would let a flood
///   of fresh pairs reset the count, or lift the lock, of the pair under attack. Only stale
///   entries go (no failure within the window and not locked: the pair's next failure would
///   reset them anyway), swept when the table is full, at most once per clock second so a
///   flood cannot make every failed login scan the table.
/// - **No failure goes uncounted.** A failure that finds the table full of live entries is
///   counted in a fixed-size count-min sketch (conservative update, keyed by a per-process
///   random hash so no one can aim collisions) of the pair's client address within the
///   mount ([`LockKey::overflow_key`]). A sketch never underestimates: `threshold` failures
///   of a pair lock it, from any address. Collisions only overestimate, so under a flood far
///   beyond the table the sketch fails closed: some innocent clients without an entry of
///   their own may be refused until the flood's failures age out, never an attacker let
///   through. Leaving the role_id out keeps a flood's cells to the attacker's addresses.
/// - The sketch counts a failure for 3 epochs of `window` seconds, so any `threshold`
///   failures within `window` seconds (2 consecutive epochs at most) are all still counted
///   for at least `window` seconds after the last: a lock found there lasts at least as long
///   as one in the table, and at most 3 windows. A pair entering the table starts from what
///   the sketch already counted for it, so its count is not split. A successful login
///   clears the table entry; the sketch cannot forget one pair and keeps its count.
///
/// The alternative of refusing every pair without an entry once the table is full would
/// also be safe, but would let anyone lock out every client on every mount with one
/// table's worth of failures.
///
/// Failed logins look the same whichever structure counted them ([`LOGIN_FAILED`]).
pub struct Lockout {
    threshold: u32,
    window: i64,
    capacity: usize,
    state: Mutex<LockoutState>,
}

impl std::fmt::Debug for Lockout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lockout")
            .field("threshold", &self.threshold)
            .field("window", &self.window)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct LockoutState {
    pairs: HashMap<LockKey, Failures>,
    /// The clock second of the last sweep of a full table.
    swept_at: Option<i64>,
    /// Failures that found the table full; allocated at the first.
    overflow: Option<Box<OverflowSketch>>,
}

impl Lockout {
    /// A lockout of `threshold` failures (at least 1) over `window` seconds, counting
    /// [`DEFAULT_LOCKOUT_CAPACITY`] pairs exactly.
    pub fn new(threshold: u32, window: i64) -> Self {
        Self::with_capacity(threshold, window, DEFAULT_LOCKOUT_CAPACITY)
    }

    /// A lockout counting at most `capacity` pairs (at least 1) exactly, the rest in its
    /// overflow sketch.
    pub fn with_capacity(threshold: u32, window: i64, capacity: usize) -> Self {
        Self {
            threshold: threshold.max(1),
            window: window.max(1),
            capacity: capacity.max(1),
            state: Mutex::new(LockoutState::default()),
        }
    }

    /// Whether the pair is locked out at `now`.
    pub fn is_locked(&self, key: &LockKey, now: i64) -> bool {
        let Ok(state) = self.state.lock() else {
            // A poisoned lock means a panic elsewhere: refuse rather than guess.
            return true;
        };
        state.pairs.get(key).is_some_and(|f| f.is_locked(now))
            || state
                .overflow
                .as_ref()
                .is_some_and(|sketch| sketch.estimate(key, now, self.window) >= self.threshold)
    }

    /// Counts a failed login of the pair.
    pub fn record_failure(&self, key: LockKey, now: i64) {
        let Ok(mut guard) = self.state.lock() else {
            return;
        };
        let state = &mut *guard;
        let known = state.pairs.contains_key(&key);
        if !known && state.pairs.len() >= self.capacity && state.swept_at != Some(now) {
            state.swept_at = Some(now);
            let window = self.window;
            state.pairs.retain(|_, f| f.is_live(now, window));
        }
        if !known && state.pairs.len() >= self.capacity {
            state
                .overflow
                .get_or_insert_with(|| Box::new(OverflowSketch::new()))
                .record(&key, now, self.window, self.threshold);
            return;
        }
        let overflow = &state.overflow;
        let window = self.window;
        let entry = state.pairs.entry(key).or_insert_with_key(|key| Failures {
            count: overflow
                .as_ref()
                .map_or(0, |sketch| sketch.estimate(key, now, window)),
            window_start: now,
            locked_until: None,
        });
        if entry.is_locked(now) {
            return;
        }
        if entry.locked_until.is_some() || now - entry.window_start >= self.window {
            *entry = Failures {
                count: 0,
                window_start: now,
                locked_until: None,
            };
        }
        entry.count = entry.count.saturating_add(1);
        if entry.count >= self.threshold {
            entry.locked_until = Some(now.saturating_add(self.window));
        }
    }

    /// Forgets the pair's failures (a successful login).
    pub fn clear(&self, key: &LockKey) {
        if let Ok(mut state) = self.state.lock() {
            state.pairs.remove(key);
        }
    }

    /// Pairs counted exactly right now (for tests and metrics).
    pub fn tracked_pairs(&self) -> usize {
        self.state.lock().map_or(0, |state| state.pairs.len())
    }
}

/// Rows of the overflow sketch (independent hashes).
const SKETCH_ROWS: usize = 4;
/// Counters per row and epoch.
const SKETCH_COLUMNS: usize = 1 << 16;
/// Epochs of `window` seconds during which a failure stays counted (see [`Lockout`]).
const SKETCH_EPOCHS: usize = 3;

/// A count-min sketch of failures per [`LockKey::overflow_key`], in [`SKETCH_EPOCHS`]
/// rotating epochs: 1.5 MiB, whatever the flood.
struct OverflowSketch {
    hasher: std::collections::hash_map::RandomState,
    /// The epoch each bucket counts (a bucket is cleared when reused for a later one).
    epochs: [i64; SKETCH_EPOCHS],
    /// `SKETCH_EPOCHS` buckets of `SKETCH_ROWS` rows of `SKETCH_COLUMNS` counters.
    counters: Vec<u16>,
}

impl OverflowSketch {
    fn new() -> Self {
        Self {
            hasher: std::collections::hash_map::RandomState::new(),
            epochs: [i64::MIN; SKETCH_EPOCHS],
            counters: vec![0; SKETCH_EPOCHS * SKETCH_ROWS * SKETCH_COLUMNS],
        }
    }

    /// The counter index of each row for `key` within a bucket.
    fn columns(&self, key: &LockKey) -> [usize; SKETCH_ROWS] {
        use std::hash::BuildHasher;
        let counted = key.overflow_key();
        std::array::from_fn(|row| {
            let hash = self.hasher.hash_one((row, &counted));
            // Lossless: the modulus is below usize::MAX.
            (hash % SKETCH_COLUMNS as u64) as usize + row * SKETCH_COLUMNS
        })
    }

    fn bucket_of(epoch: i64) -> usize {
        // Lossless: the remainder is below SKETCH_EPOCHS.
        epoch.rem_euclid(SKETCH_EPOCHS as i64) as usize
    }

    /// Whether a bucket's epoch is still counted at `epoch`. Later epochs (a clock that went
    /// back) are counted too: keeping failures longer only fails closed.
    fn is_counted(bucket_epoch: i64, epoch: i64) -> bool {
        bucket_epoch != i64::MIN && bucket_epoch > epoch - SKETCH_EPOCHS as i64
    }

    /// At least the failures of `key`'s client counted in the last [`SKETCH_EPOCHS`] epochs.
    fn estimate(&self, key: &LockKey, now: i64, window: i64) -> u32 {
        let epoch = now.div_euclid(window);
        let columns = self.columns(key);
        (0..SKETCH_EPOCHS)
            .filter(|bucket| Self::is_counted(self.epochs[*bucket], epoch))
            .map(|bucket| {
                let base = bucket * SKETCH_ROWS * SKETCH_COLUMNS;
                columns
                    .iter()
                    .map(|column| u32::from(self.counters[base + column]))
                    .min()
                    .unwrap_or(0)
            })
            .sum()
    }

    /// Counts a failure of `key` at `now`, unless its client is already locked out here
    /// (adding more would only raise collisions for others).
    fn record(&mut self, key: &LockKey, now: i64, window: i64, threshold: u32) {
        if self.estimate(key, now, window) >= threshold {
            return;
        }
        let epoch = now.div_euclid(window);
        let bucket = Self::bucket_of(epoch);
        let base = bucket * SKETCH_ROWS * SKETCH_COLUMNS;
        if self.epochs[bucket] < epoch {
            self.epochs[bucket] = epoch;
            self.counters[base..base + SKETCH_ROWS * SKETCH_COLUMNS].fill(0);
        }
        // Conservative update within the bucket: raise each row's counter only to one more
        // than the bucket's smallest, which still bounds the key's own count from above.
        let columns = self.columns(key);
        let least = columns
            .iter()
            .map(|column| self.counters[base + column])
            .min()
            .unwrap_or(0);
        let raised = least.saturating_add(1);
        for column in columns {
            let counter = &mut self.counters[base + column];
            *counter = (*counter).max(raised);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role() -> AppRoleRecord {
        AppRoleRecord::new(TenantId::ROOT, MountId::random(), "billing", "r", 0)
    }

    fn key(client: &str) -> LockKey {
        LockKey {
            tenant: TenantId::ROOT,
            mount: MountId::random(),
            role_id: [7; 32],
            client: Some(client.parse().unwrap()),
        }
    }

    #[test]
    fn role_names() {
        assert_eq!(validate_role_name("Billing.v2").unwrap(), "billing.v2");
        for bad in ["", "-a", "a-", "a b", "a/b", ".", "é", &"a".repeat(129)] {
            assert!(validate_role_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_role_never_names_root_in_any_spelling() {
        for policies in [vec!["root"], vec!["default", " ROOT "], vec!["Root"]] {
            let update = RoleUpdate {
                token_policies: Some(policies.iter().map(|p| (*p).to_owned()).collect()),
                ..RoleUpdate::default()
            };
            match apply_update(role(), update) {
                Err(Error::InvalidRequest(message)) => assert!(message.contains("root")),
                other => panic!("{policies:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn role_updates_are_checked() {
        let updated = apply_update(
            role(),
            RoleUpdate {
                token_policies: Some(vec!["App-Enc ".into(), "app-enc".into(), String::new()]),
                secret_id_bound_cidrs: Some(vec!["10.1.2.3".into()]),
                ..RoleUpdate::default()
            },
        )
        .unwrap();
        assert_eq!(updated.token_policies, vec!["app-enc"]);
        assert_eq!(updated.secret_id_bound_cidrs, vec!["10.1.2.3/32"]);
        for bad in [
            RoleUpdate {
                bind_secret_id: Some(false),
                ..RoleUpdate::default()
            },
            RoleUpdate {
                token_ttl: Some(7200),
                token_max_ttl: Some(3600),
                ..RoleUpdate::default()
            },
            RoleUpdate {
                token_bound_cidrs: Some(vec!["nope".into()]),
                ..RoleUpdate::default()
            },
            RoleUpdate {
                role_id: Some("with space".into()),
                ..RoleUpdate::default()
            },
        ] {
            assert!(apply_update(role(), bad.clone()).is_err(), "{bad:?}");
        }
        let periodic = apply_update(
            role(),
            RoleUpdate {
                token_period: Some(60),
                ..RoleUpdate::default()
            },
        )
        .unwrap();
        assert_eq!(periodic.token_period, 60);
    }

    #[test]
    fn secret_ids_are_never_wider_than_their_role() {
        let limited = AppRoleRecord {
            secret_id_num_uses: 3,
            secret_id_ttl: 600,
            ..role()
        };
        let request = |ttl, num_uses| SecretIdRequest {
            ttl,
            num_uses,
            ..SecretIdRequest::default()
        };
        assert_eq!(narrow(&limited, &request(None, None)).unwrap(), (3, 600));
        assert_eq!(
            narrow(&limited, &request(Some(60), Some(1))).unwrap(),
            (1, 60)
        );
        for (ttl, uses) in [
            (Some(601), None),
            (Some(0), None),
            (None, Some(4)),
            (None, Some(0)),
        ] {
            assert!(
                narrow(&limited, &request(ttl, uses)).is_err(),
                "{ttl:?} {uses:?}"
            );
        }
        // An unlimited role allows any limit, or none.
        assert_eq!(narrow(&role(), &request(Some(0), Some(0))).unwrap(), (0, 0));
        assert_eq!(narrow(&role(), &request(Some(9), Some(9))).unwrap(), (9, 9));
    }

    fn pair(mount: MountId, role_id: u32, client: &str) -> LockKey {
        let mut digest = [0; 32];
        digest[..4].copy_from_slice(&role_id.to_be_bytes());
        LockKey {
            tenant: TenantId::ROOT,
            mount,
            role_id: digest,
            client: Some(client.parse().unwrap()),
        }
    }

    /// A different address for each `i` (10.x.y.z), none of them in 192.0.2.0/24.
    fn elsewhere(i: u32) -> String {
        let [_, b, c, d] = i.to_be_bytes();
        format!("10.{b}.{c}.{d}")
    }

    const REAL_ROLE: u32 = u32::MAX;

    #[test]
    fn a_full_table_never_evicts_or_resets_the_pair_under_attack() {
        let lockout = Lockout::with_capacity(3, 60, 8);
        let mount = MountId::random();
        let target = pair(mount, REAL_ROLE, "192.0.2.1");
        lockout.record_failure(target.clone(), 100);
        lockout.record_failure(target.clone(), 101);
        assert!(!lockout.is_locked(&target, 101));
        // A flood of fresh pairs, from many other addresses, fills the table many times over.
        for i in 0..1_000 {
            lockout.record_failure(pair(mount, i, &elsewhere(i)), 102);
            assert!(lockout.tracked_pairs() <= 8);
        }
        assert!(!lockout.is_locked(&target, 102));
        // The pair under attack kept its count: its third failure locks it, for the window.
        lockout.record_failure(target.clone(), 103);
        assert!(lockout.is_locked(&target, 103));
        assert!(lockout.is_locked(&target, 162));
        assert!(!lockout.is_locked(&target, 163));
        assert!(lockout.tracked_pairs() <= 8);
    }

    #[test]
    fn failures_that_find_the_table_full_of_locked_pairs_still_lock() {
        let lockout = Lockout::with_capacity(3, 60, 8);
        let mount = MountId::random();
        for i in 0..8 {
            for _ in 0..3 {
                lockout.record_failure(pair(mount, i, &elsewhere(i)), 0);
            }
            assert!(lockout.is_locked(&pair(mount, i, &elsewhere(i)), 0));
        }
        let target = pair(mount, REAL_ROLE, "192.0.2.1");
        lockout.record_failure(target.clone(), 1);
        lockout.record_failure(target.clone(), 2);
        assert!(!lockout.is_locked(&target, 2));
        lockout.record_failure(target.clone(), 3);
        assert_eq!(lockout.tracked_pairs(), 8, "the target is not in the table");
        assert!(
            lockout.is_locked(&target, 3),
            "its failures were counted all the same"
        );
        // Locked at least for the window after its last failure, at most three windows.
        assert!(lockout.is_locked(&target, 63));
        assert!(!lockout.is_locked(&target, 180));
        let service = pair(mount, REAL_ROLE, "192.0.2.2");
        assert!(
            !lockout.is_locked(&service, 3),
            "another address is not locked out"
        );
    }

    #[test]
    fn a_flood_of_made_up_role_ids_locks_the_flooding_address_only() {
        let lockout = Lockout::with_capacity(3, 60, 8);
        let mount = MountId::random();
        for i in 0..1_000 {
            lockout.record_failure(pair(mount, i, "192.0.2.1"), 0);
        }
        assert_eq!(lockout.tracked_pairs(), 8);
        // The real role_id from the flooding address was never tried, and is locked out.
        assert!(lockout.is_locked(&pair(mount, REAL_ROLE, "192.0.2.1"), 1));
        // The service using the real role_id from its own address is not.
        assert!(!lockout.is_locked(&pair(mount, REAL_ROLE, "192.0.2.2"), 1));

        // An IPv6 client is counted by its /64.
        for i in 0..1_000 {
            lockout.record_failure(pair(mount, i, &format!("2001:db8::{i:x}")), 0);
        }
        assert!(lockout.is_locked(&pair(mount, REAL_ROLE, "2001:db8::ffff"), 1));
        assert!(!lockout.is_locked(&pair(mount, REAL_ROLE, "2001:db8:0:1::1"), 1));
        assert!(lockout.tracked_pairs() <= 8);
    }

    #[test]
    fn stale_pairs_make_room_and_a_pair_entering_the_table_keeps_its_count() {
        let lockout = Lockout::with_capacity(3, 60, 8);
        let mount = MountId::random();
        for i in 0..8 {
            lockout.record_failure(pair(mount, i, &elsewhere(i)), 0);
        }
        // Two failures while the table is full: counted in the sketch.
        let target = pair(mount, REAL_ROLE, "192.0.2.1");
        lockout.record_failure(target.clone(), 10);
        lockout.record_failure(target.clone(), 11);
        assert_eq!(lockout.tracked_pairs(), 8);
        // The window of the table's pairs has passed: they are swept, and the target enters
        // the table with the two failures already counted, so its third locks it.
        lockout.record_failure(target.clone(), 61);
        assert_eq!(lockout.tracked_pairs(), 1);
        assert!(lockout.is_locked(&target, 61));

        // A pair counted exactly in the room made behaves exactly.
        let fresh = pair(mount, 1, "192.0.2.9");
        lockout.record_failure(fresh.clone(), 62);
        assert_eq!(lockout.tracked_pairs(), 2);
        lockout.clear(&fresh);
        lockout.record_failure(fresh.clone(), 63);
        assert!(!lockout.is_locked(&fresh, 63));
    }

    #[test]
    fn lockout_counts_per_pair_and_clears_after_the_window() {
        let lockout = Lockout::new(3, 60);
        let attacker = key("192.0.2.1");
        let service = LockKey {
            client: Some("192.0.2.2".parse().unwrap()),
            ..attacker.clone()
        };
        for i in 0..2 {
            lockout.record_failure(attacker.clone(), 100 + i);
            assert!(!lockout.is_locked(&attacker, 100 + i));
        }
        lockout.record_failure(attacker.clone(), 102);
        assert!(lockout.is_locked(&attacker, 102));
        assert!(lockout.is_locked(&attacker, 161));
        assert!(
            !lockout.is_locked(&service, 102),
            "another address is not locked out"
        );
        // Failures while locked do not extend the lock.
        lockout.record_failure(attacker.clone(), 150);
        assert!(!lockout.is_locked(&attacker, 162));
        // Failures spread wider than the window never lock.
        let slow = key("192.0.2.3");
        for at in [0, 70, 140, 210] {
            lockout.record_failure(slow.clone(), at);
            assert!(!lockout.is_locked(&slow, at));
        }
        // A success forgets the count.
        let once = key("192.0.2.4");
        lockout.record_failure(once.clone(), 0);
        lockout.record_failure(once.clone(), 1);
        lockout.clear(&once);
        lockout.record_failure(once.clone(), 2);
        assert!(!lockout.is_locked(&once, 2));
    }
}
