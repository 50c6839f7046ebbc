//! Tokens: random, `kbs.`-prefixed, stored only as HMAC-SHA256 under the server key
//! (Vault's token model): TTL and a hard maximum that renewals never pass, use counts
//! consumed atomically in the store, accessors, metadata, and parent/child trees (revoking
//! a parent revokes its children). Resolved records are cached in memory; revocation drops
//! them from the cache at once.

use std::{
    net::IpAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use hmac::{Hmac, Mac};
use moka::sync::Cache;
use rand::{distributions::Alphanumeric, Rng};
use sha2::Sha256;
use zeroize::Zeroizing;

use tokio::sync::{mpsc, oneshot};

use super::token_role::TokenRole;
use crate::{
    clock::Clock,
    error::{Error, Result},
    store::{Store, TokenRecord},
    TenantId,
};

/// Most new tokens written in one commit.
const MAX_GROUP: usize = 256;

/// A new token waiting for its commit, and who to tell when it is durable.
struct PendingToken {
    record: TokenRecord,
    done: oneshot::Sender<Result<()>>,
}

/// Group commit of new tokens: concurrent logins share one durable store commit instead of
/// paying one each. The writer task runs while the [`Tokens`] that spawned it lives; a
/// commit already started finishes even if the request that asked for it goes away.
fn spawn_token_writer(store: Arc<dyn Store>) -> mpsc::Sender<PendingToken> {
    let (sender, mut receiver) = mpsc::channel::<PendingToken>(4 * MAX_GROUP);
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(MAX_GROUP);
        while receiver.recv_many(&mut batch, MAX_GROUP).await > 0 {
            let (records, waiters): (Vec<_>, Vec<_>) =
                batch.drain(..).map(|p| (p.record, p.done)).unzip();
            match store.put_tokens(&records).await {
                Ok(()) => waiters.into_iter().for_each(|done| {
                    let _ = done.send(Ok(()));
                }),
                // One bad record must not fail its neighbours: each is retried alone.
                Err(_) if records.len() > 1 => {
                    for (record, done) in records.into_iter().zip(waiters) {
                        let result = store.put_tokens(std::slice::from_ref(&record)).await;
                        let _ = done.send(result.map_err(Error::from));
                    }
                }
                Err(error) => {
                    if let Some(done) = waiters.into_iter().next() {
                        let _ = done.send(Err(error.into()));
                    }
                }
            }
        }
    });
    sender
}

/// Prefix of every token the broker issues.
pub const TOKEN_PREFIX: &str = "kbs.";

/// The policy name that grants everything.
pub const ROOT_POLICY: &str = "root";

/// The policy every token gets unless asked otherwise.
pub const DEFAULT_POLICY: &str = "default";

/// Refuses `root` among the policies an auth method's role would issue: as in Vault, auth
/// methods never issue root tokens, so whoever may write a role cannot mint root with it.
/// `policies` are normalised (trimmed, lowercase).
pub fn refuse_root_for_auth_method(field: &str, policies: &[String]) -> Result<()> {
    if policies.iter().any(|p| p == ROOT_POLICY) {
        return Err(Error::invalid(format!(
            "{field} cannot contain \"root\": auth methods never issue root tokens"
        )));
    }
    Ok(())
}

/// Lifetimes of tokens.
#[derive(Clone, Debug)]
pub struct TokenSettings {
    /// TTL of a token created without one, seconds.
    pub default_ttl: u64,
    /// Longest lifetime of any token (before and after renewals), seconds.
    pub max_ttl: u64,
}

impl Default for TokenSettings {
    fn default() -> Self {
        // Vault's defaults: 32 days.
        Self {
            default_ttl: 768 * 3600,
            max_ttl: 768 * 3600,
        }
    }
}

/// What a new token should be (Vault API: auth/token/create).
#[derive(Clone, Debug, Default)]
pub struct TokenRequest {
    /// Policies; empty means the parent's.
    pub policies: Vec<String>,
    /// Lifetime in seconds (default from settings).
    pub ttl: Option<u64>,
    /// Hard limit in seconds, below the system maximum.
    pub explicit_max_ttl: Option<u64>,
    /// Uses allowed (0 = unlimited).
    pub num_uses: u64,
    /// Metadata.
    pub meta: std::collections::BTreeMap<String, String>,
    /// Display name.
    pub display_name: Option<String>,
    /// Whether the token can be renewed (default true).
    pub renewable: Option<bool>,
    /// Leave out the `default` policy.
    pub no_default_policy: bool,
    /// CIDR blocks the token may be used from (empty = anywhere); each must parse
    /// ([`crate::cidr::parse_list`]).
    pub bound_cidrs: Vec<String>,
    /// Makes the token periodic, in seconds: its TTL is the period, every renewal gives the
    /// period again, and it has no maximum lifetime unless `explicit_max_ttl` sets one.
    pub period: Option<u64>,
    /// The auth mount whose login issues the token.
    pub auth_mount: Option<crate::MountId>,
}

/// A token just issued: its text (shown once) and its record.
#[derive(Debug)]
pub struct IssuedToken {
    /// The token itself.
    pub token: Zeroizing<String>,
    /// What was stored.
    pub record: TokenRecord,
}

/// A token's identity after a successful lookup.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The token's record.
    pub token: Arc<TokenRecord>,
}

impl Caller {
    /// Whether the token carries the root policy.
    pub fn is_root(&self) -> bool {
        self.token.policies.iter().any(|p| p == ROOT_POLICY)
    }
    /// The token's tenant.
    pub fn tenant(&self) -> TenantId {
        self.token.tenant
    }
}

/// Issues and resolves tokens.
pub struct Tokens {
    mac: Hmac<Sha256>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    cache: Cache<[u8; 32], Arc<TokenRecord>>,
    /// Bumped before every invalidation: a record read from the store while one happened
    /// may be stale and is not kept in the cache.
    invalidations: AtomicU64,
    settings: TokenSettings,
    writer: mpsc::Sender<PendingToken>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens(..)")
    }
}

impl Tokens {
    /// Token service keyed by the server HMAC key.
    pub fn new(
        server_key: &[u8],
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        settings: TokenSettings,
    ) -> Result<Self> {
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(server_key)
            .map_err(|_| Error::internal("server key length"))?;
        Ok(Self {
            mac,
            store: store.clone(),
            clock,
            cache: Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(600))
                .support_invalidation_closures()
                .build(),
            invalidations: AtomicU64::new(0),
            settings,
            writer: spawn_token_writer(store),
        })
    }

    /// The keyed hash under which a token is stored.
    pub fn hash(&self, token: &str) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(token.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Creates a root token in a tenant. `chosen` lets dev mode pick the token's text.
    pub async fn create_root(
        &self,
        tenant: TenantId,
        chosen: Option<&str>,
    ) -> Result<Zeroizing<String>> {
        let token = match chosen {
            Some(text) => {
                if text.is_empty()
                    || text.len() > 256
                    || !text.bytes().all(|b| b.is_ascii_graphic())
                {
                    return Err(Error::invalid(
                        "root token id must be 1-256 printable ASCII characters",
                    ));
                }
                Zeroizing::new(text.to_owned())
            }
            None => Zeroizing::new(format!("{TOKEN_PREFIX}{}", random_text(32))),
        };
        let record = TokenRecord {
            hash: self.hash(&token).to_vec(),
            accessor: random_text(24),
            tenant,
            policies: vec![ROOT_POLICY.to_owned()],
            display_name: "root".to_owned(),
            created_at: self.clock.now_unix(),
            expires_at: None,
            period: 0,
            ttl: 0,
            max_expires_at: None,
            uses_remaining: None,
            parent_accessor: None,
            meta: Default::default(),
            renewable: false,
            bound_cidrs: Vec::new(),
            auth_mount: None,
        };
        self.store.put_tokens(std::slice::from_ref(&record)).await?;
        Ok(token)
    }

    /// Drops every cached token of a tenant (the tenant was deleted).
    pub fn forget_tenant(&self, tenant: TenantId) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        // Only fails if closures were not enabled at build time, which `new` does.
        let _ = self
            .cache
            .invalidate_entries_if(move |_, record| record.tenant == tenant);
    }

    /// Resolves a token presented in `tenant` from `client` (the caller's address, `None`
    /// when unknown), and counts a use of it; every failure is the same `PermissionDenied`.
    /// A token acts in its own tenant, and a root-namespace token in any. A token bound to
    /// CIDR blocks is refused from any other address, and from an unknown one. Nothing
    /// refused costs the token a use.
    pub async fn authenticate(
        &self,
        token: &str,
        client: Option<IpAddr>,
        tenant: TenantId,
    ) -> Result<Caller> {
        let record = self.resolve(token, client).await?;
        if record.tenant != TenantId::ROOT && record.tenant != tenant {
            return Err(Error::PermissionDenied);
        }
        if record.uses_remaining.is_some() {
            // The store is the authority on uses: atomic, exact under concurrency.
            if self.store.use_token(&record.hash).await?.is_none() {
                self.forget_hash(&record.hash);
                return Err(Error::PermissionDenied);
            }
        }
        Ok(Caller { token: record })
    }

    /// Resolves a token someone else presents (`sys/capabilities` with `token`) without
    /// counting a use of it; refused as [`Tokens::authenticate`] refuses it, and a token
    /// bound to CIDR blocks always (its user's address is unknown here).
    pub async fn inspect(&self, token: &str) -> Result<Caller> {
        let record = self.resolve(token, None).await?;
        Ok(Caller { token: record })
    }

    /// The live record of a presented token used from `client`.
    async fn resolve(&self, token: &str, client: Option<IpAddr>) -> Result<Arc<TokenRecord>> {
        let record = self.live(token).await?;
        if !record.bound_cidrs.is_empty()
            && !client
                .is_some_and(|address| crate::cidr::contains_any(&record.bound_cidrs, address))
        {
            return Err(Error::PermissionDenied);
        }
        Ok(record)
    }

    /// A token of `tenant` someone names in a request body (`auth/token/lookup`, `renew`,
    /// `revoke`), without counting a use of it. Unknown, expired and other tenants' tokens
    /// are the same `PermissionDenied`.
    pub async fn find(&self, tenant: TenantId, token: &str) -> Result<Arc<TokenRecord>> {
        let record = self.live(token).await?;
        if record.tenant != tenant {
            return Err(Error::PermissionDenied);
        }
        Ok(record)
    }

    /// The record of an unexpired token, from the cache or the store.
    async fn live(&self, token: &str) -> Result<Arc<TokenRecord>> {
        if token.is_empty() || token.len() > 512 {
            return Err(Error::PermissionDenied);
        }
        let hash = self.hash(token);
        let record = match self.cache.get(&hash) {
            Some(record) => record,
            None => {
                let before = self.invalidations.load(Ordering::SeqCst);
                let record = self
                    .store
                    .get_token(&hash)
                    .await?
                    .ok_or(Error::PermissionDenied)?;
                let record = Arc::new(record);
                self.cache.insert(hash, record.clone());
                // An invalidation during the read (a revocation on this or another node) may
                // have come before the insert: then the insert does not stay.
                if self.invalidations.load(Ordering::SeqCst) != before {
                    self.cache.invalidate(&hash);
                }
                record
            }
        };
        if record
            .expires_at
            .is_some_and(|at| at <= self.clock.now_unix())
        {
            self.cache.invalidate(&hash);
            return Err(Error::PermissionDenied);
        }
        Ok(record)
    }

    /// Issues a token in `tenant`. A child of a non-root parent gets a subset of the
    /// parent's policies and never outlives it.
    pub async fn create(
        &self,
        tenant: TenantId,
        parent: Option<&TokenRecord>,
        request: TokenRequest,
    ) -> Result<IssuedToken> {
        let parent_is_root = parent.is_some_and(|p| p.policies.iter().any(|x| x == ROOT_POLICY));
        let mut policies: Vec<String> = if request.policies.is_empty() {
            parent.map(|p| p.policies.clone()).unwrap_or_default()
        } else {
            request
                .policies
                .iter()
                .map(|p| p.trim().to_ascii_lowercase())
                .collect()
        };
        policies.retain(|p| !p.is_empty());
        if !request.no_default_policy && !policies.iter().any(|p| p == ROOT_POLICY) {
            policies.push(DEFAULT_POLICY.to_owned());
        }
        policies.sort();
        policies.dedup();
        // A login never issues root, even from a role stored before roles refused it.
        if request.auth_mount.is_some() && policies.iter().any(|p| p == ROOT_POLICY) {
            return Err(Error::invalid("auth methods cannot create root tokens"));
        }
        if let Some(parent) = parent.filter(|_| !parent_is_root) {
            let allowed = |p: &String| p == DEFAULT_POLICY || parent.policies.contains(p);
            if !policies.iter().all(allowed) {
                return Err(Error::invalid("child policies must be subset of parent"));
            }
        }
        self.issue(tenant, parent, request, policies).await
    }

    /// Issues a token in `tenant` against `role`, created by `creator` (its parent unless
    /// the role makes orphans): the role decides the policies
    /// ([`TokenRole::token_policies`]) and caps the period, the explicit maximum TTL, the
    /// uses and renewability. The role must be of `tenant`.
    pub async fn create_with_role(
        &self,
        tenant: TenantId,
        creator: &TokenRecord,
        role: &TokenRole,
        mut request: TokenRequest,
    ) -> Result<IssuedToken> {
        let policies = role.token_policies(
            &request.policies,
            request.no_default_policy,
            &creator.policies,
        )?;
        request.period = role.period(request.period);
        request.explicit_max_ttl = role.explicit_max_ttl(request.explicit_max_ttl);
        request.num_uses = role.num_uses(request.num_uses);
        request.renewable = Some(role.renewable && request.renewable.unwrap_or(true));
        let parent = (!role.orphan).then_some(creator);
        self.issue(tenant, parent, request, policies).await
    }

    /// Issues a token with `policies`, decided by the caller; its lifetimes from `request`,
    /// never past `parent`'s.
    async fn issue(
        &self,
        tenant: TenantId,
        parent: Option<&TokenRecord>,
        request: TokenRequest,
        policies: Vec<String>,
    ) -> Result<IssuedToken> {
        let now = self.clock.now_unix();
        let secs = |s: u64| i64::try_from(s).unwrap_or(i64::MAX);
        let explicit_max_ttl = request.explicit_max_ttl.filter(|t| *t > 0);
        // A periodic token's TTL is its period (no longer than the system maximum, nor its
        // own explicit maximum), and only an explicit maximum ends it; any other token lives
        // at most the system maximum.
        let period = request
            .period
            .filter(|p| *p > 0)
            .map_or(0, |p| p.min(self.settings.max_ttl));
        let (ttl, mut max_expires_at) = if period > 0 {
            let ttl = explicit_max_ttl.map_or(period, |max| period.min(max));
            (
                ttl,
                explicit_max_ttl.map(|max| now.saturating_add(secs(max))),
            )
        } else {
            let max_ttl =
                explicit_max_ttl.map_or(self.settings.max_ttl, |t| t.min(self.settings.max_ttl));
            let ttl = request
                .ttl
                .filter(|t| *t > 0)
                .unwrap_or(self.settings.default_ttl)
                .min(max_ttl);
            (ttl, Some(now.saturating_add(secs(max_ttl))))
        };
        if let Some(parent_max) = parent.and_then(|p| p.expires_at) {
            max_expires_at = Some(max_expires_at.map_or(parent_max, |m| m.min(parent_max)));
        }
        let expires_at = now
            .saturating_add(secs(ttl))
            .min(max_expires_at.unwrap_or(i64::MAX));
        if expires_at <= now {
            return Err(Error::invalid(
                "the parent token expires too soon to create a child",
            ));
        }
        crate::cidr::parse_list(&request.bound_cidrs)?;
        let token = Zeroizing::new(format!("{TOKEN_PREFIX}{}", random_text(32)));
        let record = TokenRecord {
            hash: self.hash(&token).to_vec(),
            accessor: random_text(24),
            tenant,
            policies,
            display_name: request.display_name.unwrap_or_else(|| "token".to_owned()),
            created_at: now,
            expires_at: Some(expires_at),
            period,
            ttl,
            max_expires_at,
            uses_remaining: (request.num_uses > 0).then_some(request.num_uses),
            parent_accessor: parent.map(|p| p.accessor.clone()),
            meta: request.meta,
            renewable: request.renewable.unwrap_or(true),
            bound_cidrs: request.bound_cidrs,
            auth_mount: request.auth_mount,
        };
        self.write(record.clone()).await?;
        Ok(IssuedToken { token, record })
    }

    /// Stores a new token through the group commit; returns once it is durable.
    async fn write(&self, record: TokenRecord) -> Result<()> {
        let stopped = || Error::Unavailable("token store writer stopped".into());
        let (done, committed) = oneshot::channel();
        self.writer
            .send(PendingToken { record, done })
            .await
            .map_err(|_| stopped())?;
        committed.await.map_err(|_| stopped())?
    }

    /// Extends a token's life by `increment` seconds (default: its TTL; a periodic token
    /// always by its period), never past its maximum; returns the updated record.
    pub async fn renew(&self, record: &TokenRecord, increment: Option<u64>) -> Result<TokenRecord> {
        if record.expires_at.is_none() {
            // Root tokens without a TTL have nothing to renew.
            return Ok(record.clone());
        }
        if !record.renewable {
            return Err(Error::invalid("lease is not renewable"));
        }
        let now = self.clock.now_unix();
        let increment = if record.period > 0 {
            record.period
        } else {
            increment.filter(|i| *i > 0).unwrap_or(record.ttl)
        };
        let expires_at = now
            .saturating_add(i64::try_from(increment).unwrap_or(i64::MAX))
            .min(record.max_expires_at.unwrap_or(i64::MAX));
        self.store
            .set_token_expiry(&record.hash, expires_at)
            .await?;
        self.forget_hash(&record.hash);
        Ok(TokenRecord {
            expires_at: Some(expires_at),
            ..record.clone()
        })
    }

    /// A token of `tenant` by accessor; unknown and other tenants' accessors look the same.
    pub async fn lookup_accessor(&self, tenant: TenantId, accessor: &str) -> Result<TokenRecord> {
        let now = self.clock.now_unix();
        self.store
            .get_token_by_accessor(tenant, accessor)
            .await?
            .filter(|t| t.expires_at.is_none_or(|at| at > now))
            .ok_or_else(|| Error::invalid("invalid accessor"))
    }

    /// Revokes a token of `tenant` and its children, effective on the next request.
    pub async fn revoke_accessor(&self, tenant: TenantId, accessor: &str) -> Result<()> {
        let hashes = self.store.revoke_token_tree(tenant, accessor).await?;
        if hashes.is_empty() {
            return Err(Error::invalid("invalid accessor"));
        }
        self.forget(hashes);
        Ok(())
    }

    /// Revokes a token of `tenant` alone; its children become orphans (Vault's
    /// `revoke-orphan`). Effective on the next request.
    pub async fn revoke_orphan(&self, tenant: TenantId, accessor: &str) -> Result<()> {
        let hashes = self.store.revoke_token_orphan(tenant, accessor).await?;
        if hashes.is_empty() {
            return Err(Error::invalid("token to revoke not found"));
        }
        // The children's records changed too (no parent now): dropped from the cache.
        self.forget(hashes);
        Ok(())
    }

    /// The accessors of a tenant's tokens, sorted.
    pub async fn accessors(&self, tenant: TenantId) -> Result<Vec<String>> {
        Ok(self.store.list_token_accessors(tenant).await?)
    }

    /// Creates or replaces a token role of `tenant`, once it is valid
    /// ([`TokenRole::validate`]). Who may write it is the caller's to check
    /// ([`TokenRole::grants_beyond`]).
    pub async fn write_role(&self, tenant: TenantId, role: &TokenRole) -> Result<()> {
        role.validate()?;
        let value = serde_json::to_value(role)
            .map_err(|e| Error::internal_from("encoding a token role", e))?;
        Ok(self
            .store
            .put_token_role(tenant, &role.name, &value)
            .await?)
    }

    /// A token role of `tenant`.
    pub async fn read_role(&self, tenant: TenantId, name: &str) -> Result<Option<TokenRole>> {
        crate::auth::token_role::check_name(name)?;
        match self.store.get_token_role(tenant, name).await? {
            None => Ok(None),
            Some(value) => serde_json::from_value(value)
                .map(Some)
                .map_err(|e| Error::internal_from("stored token role", e)),
        }
    }

    /// Deletes a token role of `tenant` (nothing if there is none, as in Vault).
    pub async fn delete_role(&self, tenant: TenantId, name: &str) -> Result<()> {
        crate::auth::token_role::check_name(name)?;
        self.store.delete_token_role(tenant, name).await?;
        Ok(())
    }

    /// The names of `tenant`'s token roles, sorted.
    pub async fn roles(&self, tenant: TenantId) -> Result<Vec<String>> {
        Ok(self.store.list_token_roles(tenant).await?)
    }

    /// Revokes every token an auth mount issued, with their children (the mount is being
    /// disabled); effective on the next request.
    pub async fn revoke_mount(&self, tenant: TenantId, mount: crate::MountId) -> Result<()> {
        let hashes = self.store.revoke_mount_tokens(tenant, mount).await?;
        self.forget(hashes);
        Ok(())
    }

    /// Deletes expired tokens from the store; returns how many.
    pub async fn tidy(&self) -> Result<usize> {
        let hashes = self.store.tidy_tokens(self.clock.now_unix()).await?;
        let count = hashes.len();
        self.forget(hashes);
        Ok(count)
    }

    /// Drops a token from the cache (another node changed it); the next use reads the store.
    pub fn forget_hash(&self, hash: &[u8]) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        if let Ok(hash) = <[u8; 32]>::try_from(hash) {
            self.cache.invalidate(&hash);
        }
    }

    /// Drops every cached token (changes may have been missed).
    pub fn forget_all(&self) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        self.cache.invalidate_all();
    }

    fn forget(&self, hashes: Vec<Vec<u8>>) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        for hash in hashes {
            if let Ok(hash) = <[u8; 32]>::try_from(hash.as_slice()) {
                self.cache.invalidate(&hash);
            }
        }
    }
}

/// Random alphanumeric text from the OS RNG.
pub fn random_text(len: usize) -> String {
    rand::rngs::OsRng
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}
