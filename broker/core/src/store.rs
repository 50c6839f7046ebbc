//! The storage contract. Adapters (SQLite now, Postgres later) live in `keybroker-store`;
//! the core never sees SQL. Every tenant-owned row carries its tenant id.
//!
//! Besides the tables of the built-in engines, every mount has a key/value store of its own
//! (mount storage: JSON documents with a version to compare and set), so an engine or auth
//! method that needs no SQL-level guarantee adds no method here and no migration; it uses
//! it through [`crate::mount_storage::MountStorage`].

use async_trait::async_trait;

use crate::{
    changes::{Change, JobGuard},
    KeyId, MountId, TenantId,
};

/// Storage failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The row to create already exists (unique constraint).
    #[error("already exists")]
    Conflict,
    /// A row the write refers to no longer exists (it was deleted meanwhile).
    #[error("a referenced row no longer exists")]
    Gone,
    /// The database cannot be reached.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A mount entry was not as the write expected ([`Expect`]): nothing was changed.
    #[error("the entry is not as expected")]
    ExpectationFailed,
    /// A row could not be decoded: a bug or a corrupted database.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// Any other database failure.
    #[error("storage error")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A wrapped response (Vault's response wrapping) as stored: the response only sealed, the
/// wrapping token only as its HMAC.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedResponseRecord {
    /// HMAC-SHA256 of the wrapping token under the server key.
    pub hash: Vec<u8>,
    /// Random id, stable across rewraps, that the sealed response's AAD names.
    pub id: String,
    /// The tenant the response was wrapped in; it unwraps only there.
    pub tenant: TenantId,
    /// The wrapping token's accessor.
    pub accessor: String,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
    /// The TTL it was wrapped with, seconds.
    pub ttl: u64,
    /// The path whose response was wrapped (tenant-relative).
    pub creation_path: String,
    /// The accessor of the token or secret_id wrapped, or empty.
    pub wrapped_accessor: String,
    /// The response, sealed.
    pub sealed: Vec<u8>,
}

impl std::fmt::Debug for WrappedResponseRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WrappedResponseRecord")
            .field("tenant", &self.tenant)
            .field("accessor", &self.accessor)
            .field("expires_at", &self.expires_at)
            .field("creation_path", &self.creation_path)
            .finish_non_exhaustive()
    }
}

/// What a rewrap changes in a wrapped response: its token, accessor and lifetime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedResponseRenewal {
    /// HMAC of the new wrapping token.
    pub hash: Vec<u8>,
    /// The new token's accessor.
    pub accessor: String,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
}

/// A tenant (namespace).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantRecord {
    /// Immutable id.
    pub id: TenantId,
    /// Canonical name.
    pub name: String,
    /// Creation time, Unix seconds.
    pub created_at: i64,
}

/// A mounted secrets engine or auth method.
#[derive(Clone, Debug, PartialEq)]
pub struct MountRecord {
    /// Immutable id.
    pub id: MountId,
    /// Owning tenant.
    pub tenant: TenantId,
    /// Path with a trailing slash, e.g. `transit/`.
    pub path: String,
    /// Engine type, e.g. `transit`.
    pub kind: String,
    /// Free text.
    pub description: String,
    /// Engine configuration (transit: `{"disable_upsert": bool}`).
    pub config: serde_json::Value,
    /// Creation time, Unix seconds.
    pub created_at: i64,
}

/// A token as stored: only its keyed hash, never the token.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenRecord {
    /// HMAC-SHA256 of the token under the server key.
    pub hash: Vec<u8>,
    /// Public handle for lookup and revocation without the token.
    pub accessor: String,
    /// Owning tenant.
    pub tenant: TenantId,
    /// Policy names.
    pub policies: Vec<String>,
    /// Display name.
    pub display_name: String,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Expiry, Unix seconds; `None` only for root tokens.
    pub expires_at: Option<i64>,
    /// Period in seconds of a periodic token (0 = not periodic): each renewal sets the
    /// expiry to now + period.
    pub period: u64,
    /// TTL given at creation, seconds (a renewal extends by this much by default).
    pub ttl: u64,
    /// Hard limit: renewals never extend past it. `None` only for root tokens and for
    /// periodic tokens without an explicit maximum.
    pub max_expires_at: Option<i64>,
    /// Uses left; `None` = unlimited.
    pub uses_remaining: Option<u64>,
    /// Accessor of the parent token; revoking the parent revokes this token.
    pub parent_accessor: Option<String>,
    /// Metadata given at creation (auth methods put mapped claims here).
    pub meta: std::collections::BTreeMap<String, String>,
    /// Whether `renew-self` may extend it.
    pub renewable: bool,
    /// CIDR blocks the token may be used from (empty = anywhere); checked at every use.
    pub bound_cidrs: Vec<String>,
    /// The auth mount whose login issued the token (`None` for the token store); disabling
    /// the mount revokes the token and its children.
    pub auth_mount: Option<MountId>,
}

/// An AppRole role (Vault API: auth/approle/role/:role_name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppRoleRecord {
    /// Owning tenant.
    pub tenant: TenantId,
    /// The approle auth mount the role lives in.
    pub mount: MountId,
    /// Role name (lowercase).
    pub name: String,
    /// The role's identifier, the public half of a login; unique within the mount.
    pub role_id: String,
    /// Whether a login must present a secret_id.
    pub bind_secret_id: bool,
    /// Uses of each secret_id issued for the role (0 = unlimited).
    pub secret_id_num_uses: u64,
    /// Lifetime of each secret_id in seconds (0 = unlimited).
    pub secret_id_ttl: u64,
    /// CIDR blocks logins must come from (empty = anywhere).
    pub secret_id_bound_cidrs: Vec<String>,
    /// CIDR blocks the issued tokens may be used from (empty = anywhere).
    pub token_bound_cidrs: Vec<String>,
    /// Policies of the issued tokens.
    pub token_policies: Vec<String>,
    /// TTL of the issued tokens in seconds (0 = the system default).
    pub token_ttl: u64,
    /// Maximum lifetime of the issued tokens in seconds (0 = the system maximum).
    pub token_max_ttl: u64,
    /// Hard limit on the issued tokens' lifetime in seconds (0 = none beyond `token_max_ttl`).
    pub token_explicit_max_ttl: u64,
    /// Period of the issued tokens in seconds (0 = not periodic).
    pub token_period: u64,
    /// Uses of each issued token (0 = unlimited).
    pub token_num_uses: u64,
    /// Leave the `default` policy out of issued tokens.
    pub token_no_default_policy: bool,
    /// Creation time, Unix seconds.
    pub created_at: i64,
}

impl AppRoleRecord {
    /// A role with Vault's defaults: bound to secret ids, no limits, no policies.
    pub fn new(
        tenant: TenantId,
        mount: MountId,
        name: &str,
        role_id: &str,
        created_at: i64,
    ) -> Self {
        Self {
            tenant,
            mount,
            name: name.to_owned(),
            role_id: role_id.to_owned(),
            bind_secret_id: true,
            secret_id_num_uses: 0,
            secret_id_ttl: 0,
            secret_id_bound_cidrs: Vec::new(),
            token_bound_cidrs: Vec::new(),
            token_policies: Vec::new(),
            token_ttl: 0,
            token_max_ttl: 0,
            token_explicit_max_ttl: 0,
            token_period: 0,
            token_num_uses: 0,
            token_no_default_policy: false,
            created_at,
        }
    }
}

/// An AppRole secret_id as stored: only its keyed hash, never the secret_id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretIdRecord {
    /// HMAC-SHA256 of the secret_id under the AppRole key.
    pub hash: Vec<u8>,
    /// Public handle for lookup and destruction without the secret_id.
    pub accessor: String,
    /// Owning tenant.
    pub tenant: TenantId,
    /// The approle auth mount.
    pub mount: MountId,
    /// The role the secret_id was issued for.
    pub role_name: String,
    /// Metadata given at issue; copied into the metadata of tokens it logs in.
    pub metadata: std::collections::BTreeMap<String, String>,
    /// CIDR blocks logins with it must come from (empty = anywhere).
    pub cidr_list: Vec<String>,
    /// CIDR blocks the tokens it logs in may be used from (empty = the role's).
    pub token_bound_cidrs: Vec<String>,
    /// Logins left; `None` = unlimited.
    pub uses_remaining: Option<u64>,
    /// Uses given at issue (0 = unlimited).
    pub num_uses: u64,
    /// Lifetime given at issue, seconds (0 = unlimited).
    pub ttl: u64,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Expiry, Unix seconds; `None` = never.
    pub expires_at: Option<i64>,
}

/// What a write or delete of a mount entry expects to find: a compare-and-set when not
/// [`Expect::Any`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Whatever is there, or nothing.
    Any,
    /// No entry under the key.
    Absent,
    /// The entry at exactly this version.
    Version(u64),
}

/// A document in a mount's storage, with its version: 1 when created, one more at every
/// write. A deleted entry leaves nothing behind; written again, it starts at 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    /// The document.
    pub value: serde_json::Value,
    /// Its version.
    pub version: u64,
}

/// How a key uses its backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyMode {
    /// Broker-generated DEK per version, wrapped by the backend.
    Envelope,
    /// Every encrypt/decrypt runs in the backend.
    Direct,
}

impl KeyMode {
    /// Wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Envelope => "envelope",
            Self::Direct => "direct",
        }
    }
    /// From the wire or storage name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "envelope" => Some(Self::Envelope),
            "direct" => Some(Self::Direct),
            _ => None,
        }
    }
}

/// A transit key's metadata and configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyRecord {
    /// Immutable id (part of every binding).
    pub id: KeyId,
    /// Owning tenant.
    pub tenant: TenantId,
    /// The transit mount the key lives in.
    pub mount: MountId,
    /// Name within the mount.
    pub name: String,
    /// Key type, e.g. `aes256-gcm96`.
    pub key_type: String,
    /// Backend instance name.
    pub backend: String,
    /// Envelope or direct.
    pub mode: KeyMode,
    /// In envelope mode, the backend key that wraps every version's DEK.
    pub backend_reference: Option<String>,
    /// Oldest version kept: every version below it was trimmed for good (0: never trimmed,
    /// as Vault reports it).
    pub min_available_version: u32,
    /// Oldest version that may decrypt.
    pub min_decryption_version: u32,
    /// Oldest version that may encrypt (0 = latest).
    pub min_encryption_version: u32,
    /// Whether the key may be deleted.
    pub deletion_allowed: bool,
    /// Whether the backend key existed before and was bound (never destroyed by the broker).
    pub bound: bool,
    /// Automatic rotation period in seconds (0 = off).
    pub auto_rotate_period: u64,
    /// Highest version.
    pub latest_version: u32,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Time of the latest rotation (or creation), Unix seconds.
    pub rotated_at: i64,
    /// Vault's options of the key beyond its versions.
    pub options: KeyOptions,
}

impl KeyRecord {
    /// A new key's record as it is first stored, made `now`: its one version is 1, nothing
    /// is rotated, trimmed or bound, deletion is not allowed (Vault's defaults), and it is
    /// an envelope key with default options of no type and no backend until the caller
    /// names them.
    pub fn new_key(id: KeyId, tenant: TenantId, mount: MountId, name: &str, now: i64) -> Self {
        Self {
            id,
            tenant,
            mount,
            name: name.to_owned(),
            key_type: String::new(),
            backend: String::new(),
            mode: KeyMode::Envelope,
            backend_reference: None,
            min_available_version: 0,
            min_decryption_version: 1,
            min_encryption_version: 0,
            deletion_allowed: false,
            bound: false,
            auto_rotate_period: 0,
            latest_version: 1,
            created_at: now,
            rotated_at: now,
            options: KeyOptions::default(),
        }
    }
}

/// A transit key's options as Vault names them (`derived`, `convergent_encryption`,
/// `exportable`, `allow_plaintext_backup`, `imported_key`, an `hmac` key's `key_size`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyOptions {
    /// Each encryption derives its key from the version's key and a `context`.
    pub derived: bool,
    /// Encryption is deterministic per (context, plaintext) (Vault's convergent version 3).
    pub convergent_encryption: bool,
    /// The key's material may be exported (one-way to true).
    pub exportable: bool,
    /// The key may be backed up in plaintext (one-way to true).
    pub allow_plaintext_backup: bool,
    /// The key's material came from outside (BYOK import or a restored backup).
    pub imported: bool,
    /// An imported key may rotate (Vault's `allow_rotation`, read as
    /// `imported_key_allow_rotation`).
    pub imported_key_allow_rotation: bool,
    /// An `hmac` key's size in bytes (0 for other types).
    pub key_size: u32,
}

/// One version of a key.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyVersionRecord {
    /// Owning key.
    pub key: KeyId,
    /// Version number, from 1.
    pub version: u32,
    /// Backend key reference used by this version (direct mode: its own key).
    pub backend_reference: String,
    /// The DEK wrapped by the backend (envelope mode).
    pub wrapped_dek: Option<Vec<u8>>,
    /// Payload format code (see `crypto::PayloadFormat`).
    pub payload_format: u8,
    /// The PEM public key of an asymmetric key version.
    pub public_key: Option<String>,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Encryption count reserved so far (durable upper bound of encryptions done).
    pub counter_reserved: u64,
}

/// The storage contract.
///
/// A store shared by several nodes (Postgres) announces every write that makes cached state
/// stale ([`Change`]) in the write's own transaction, and feeds other nodes' announcements
/// to [`Store::subscribe`]rs; a store only this process uses (SQLite) keeps the defaults.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Changes announced by every node sharing the store (this one included), or `None` when
    /// no other node can write to it. A lagging receiver must treat the gap as
    /// [`Change::Resync`].
    fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<Change>> {
        None
    }

    /// When this node last confirmed that its change feed works end to end (a heartbeat
    /// announced through the store came back); `None` when there is no feed to trust.
    fn last_in_sync(&self) -> Option<std::time::Instant> {
        None
    }

    /// Announces a change that is not a store write (a plugin reload) to every node.
    async fn announce(&self, change: &Change) -> Result<(), StoreError> {
        let _ = change;
        Ok(())
    }

    /// Takes the cluster-wide lock of a periodic job (`"auto-rotate"`, `"tidy"`); `None` if
    /// another node holds it. Released when the guard is dropped.
    async fn try_lock_job(&self, job: &str) -> Result<Option<JobGuard>, StoreError> {
        let _ = job;
        Ok(Some(JobGuard::local()))
    }

    /// Reads a broker-wide value (sealed secrets, init state).
    async fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Writes a broker-wide value if absent; returns whether it was written.
    async fn put_meta_if_absent(&self, name: &str, value: &[u8]) -> Result<bool, StoreError>;

    /// Creates a tenant; `Conflict` if the name is taken.
    async fn create_tenant(&self, tenant: &TenantRecord) -> Result<(), StoreError>;
    /// Every tenant except the root namespace, sorted by name.
    async fn list_tenants(&self) -> Result<Vec<TenantRecord>, StoreError>;
    /// Deletes a tenant with its tokens, mounts, keys and mount-storage entries; returns
    /// whether it existed.
    async fn delete_tenant(&self, tenant: TenantId) -> Result<bool, StoreError>;

    /// Creates or replaces a policy's text.
    async fn put_policy(
        &self,
        tenant: TenantId,
        name: &str,
        text: &str,
        now: i64,
    ) -> Result<(), StoreError>;
    /// A policy's text.
    async fn get_policy(&self, tenant: TenantId, name: &str) -> Result<Option<String>, StoreError>;
    /// Names of a tenant's stored policies, sorted.
    async fn list_policies(&self, tenant: TenantId) -> Result<Vec<String>, StoreError>;
    /// Deletes a policy; returns whether it existed.
    async fn delete_policy(&self, tenant: TenantId, name: &str) -> Result<bool, StoreError>;

    /// Every mount of a tenant.
    async fn list_mounts(&self, tenant: TenantId) -> Result<Vec<MountRecord>, StoreError>;
    /// Creates a mount; `Conflict` if the path is taken.
    async fn create_mount(&self, mount: &MountRecord) -> Result<(), StoreError>;
    /// Replaces a mount's configuration.
    async fn update_mount_config(
        &self,
        tenant: TenantId,
        mount: MountId,
        config: &serde_json::Value,
    ) -> Result<(), StoreError>;
    /// Deletes a mount with every key and mount-storage entry in it; returns whether it
    /// existed.
    async fn delete_mount(&self, tenant: TenantId, mount: MountId) -> Result<bool, StoreError>;

    /// Mount storage: the entry under `key` in a tenant's mount.
    async fn get_entry(
        &self,
        tenant: TenantId,
        mount: MountId,
        key: &str,
    ) -> Result<Option<MountEntry>, StoreError>;
    /// Mount storage: writes the entry under `key` if it is as `expect`ed, in one atomic
    /// statement (two writers expecting the same version: exactly one succeeds); returns its
    /// new version. `ExpectationFailed` otherwise, `Gone` if the mount is not the tenant's
    /// (or no longer exists). Announced as [`Change::MountEntry`].
    async fn put_entry(
        &self,
        tenant: TenantId,
        mount: MountId,
        key: &str,
        value: &serde_json::Value,
        expect: Expect,
    ) -> Result<u64, StoreError>;
    /// Mount storage: deletes the entry under `key` if it is as `expect`ed; returns whether
    /// there was one (`ExpectationFailed` otherwise, having deleted nothing). Announced as
    /// [`Change::MountEntry`] when something was deleted.
    async fn delete_entry(
        &self,
        tenant: TenantId,
        mount: MountId,
        key: &str,
        expect: Expect,
    ) -> Result<bool, StoreError>;
    /// Mount storage: the keys starting with `prefix` (all for `""`), whole, in byte order.
    async fn list_entries(
        &self,
        tenant: TenantId,
        mount: MountId,
        prefix: &str,
    ) -> Result<Vec<String>, StoreError>;

    /// Stores new tokens in one durable commit, all or none (logins arriving together
    /// share one commit).
    async fn put_tokens(&self, tokens: &[TokenRecord]) -> Result<(), StoreError>;
    /// Finds a token by its keyed hash.
    async fn get_token(&self, hash: &[u8]) -> Result<Option<TokenRecord>, StoreError>;
    /// Finds a token of a tenant by accessor.
    async fn get_token_by_accessor(
        &self,
        tenant: TenantId,
        accessor: &str,
    ) -> Result<Option<TokenRecord>, StoreError>;
    /// Revokes a token of `tenant` and, recursively, its children in any tenant (a
    /// root-namespace token may create tokens inside tenants); returns the hashes revoked.
    async fn revoke_token_tree(
        &self,
        tenant: TenantId,
        accessor: &str,
    ) -> Result<Vec<Vec<u8>>, StoreError>;
    /// Revokes every token an auth mount issued and, recursively, their children in any
    /// tenant; returns the hashes revoked.
    async fn revoke_mount_tokens(
        &self,
        tenant: TenantId,
        mount: MountId,
    ) -> Result<Vec<Vec<u8>>, StoreError>;
    /// Sets a token's expiry (renewal).
    async fn set_token_expiry(&self, hash: &[u8], expires_at: i64) -> Result<(), StoreError>;
    /// Consumes one use of a use-limited token atomically; returns the uses left after this
    /// one, or `None` if none was left (the token is then deleted).
    async fn use_token(&self, hash: &[u8]) -> Result<Option<u64>, StoreError>;
    /// Deletes tokens expired at `now`; returns their hashes.
    async fn tidy_tokens(&self, now: i64) -> Result<Vec<Vec<u8>>, StoreError>;
    /// Revokes a token of `tenant` alone: its children (in any tenant) become orphans, in
    /// the same transaction. Returns the hashes of the revoked token and of the orphaned
    /// children (their records changed); empty if `tenant` has no such token.
    async fn revoke_token_orphan(
        &self,
        tenant: TenantId,
        accessor: &str,
    ) -> Result<Vec<Vec<u8>>, StoreError>;
    /// The accessors of a tenant's tokens, sorted.
    async fn list_token_accessors(&self, tenant: TenantId) -> Result<Vec<String>, StoreError>;

    /// Creates or replaces a token role (Vault's `auth/token/roles/:name`) of a tenant, a
    /// JSON document the core defines.
    async fn put_token_role(
        &self,
        tenant: TenantId,
        name: &str,
        role: &serde_json::Value,
    ) -> Result<(), StoreError>;
    /// A token role of a tenant.
    async fn get_token_role(
        &self,
        tenant: TenantId,
        name: &str,
    ) -> Result<Option<serde_json::Value>, StoreError>;
    /// Deletes a token role of a tenant; returns whether there was one.
    async fn delete_token_role(&self, tenant: TenantId, name: &str) -> Result<bool, StoreError>;
    /// The names of a tenant's token roles, sorted.
    async fn list_token_roles(&self, tenant: TenantId) -> Result<Vec<String>, StoreError>;

    /// Stores a wrapped response (Vault's response wrapping); `Conflict` if its hash is
    /// taken. No node caches wrapped responses: nothing is announced.
    async fn put_wrapped_response(&self, record: &WrappedResponseRecord) -> Result<(), StoreError>;
    /// The wrapped response of a tenant under `hash`, if it has not expired at `now`.
    async fn get_wrapped_response(
        &self,
        tenant: TenantId,
        hash: &[u8],
        now: i64,
    ) -> Result<Option<WrappedResponseRecord>, StoreError>;
    /// Deletes and returns, in one statement, the wrapped response of a tenant under `hash`
    /// if it has not expired at `now`: of two callers racing, on any nodes, one gets it.
    async fn take_wrapped_response(
        &self,
        tenant: TenantId,
        hash: &[u8],
        now: i64,
    ) -> Result<Option<WrappedResponseRecord>, StoreError>;
    /// Moves, in one statement, the live wrapped response of a tenant under `old_hash` to
    /// `new_hash` with a new accessor and lifetime (Vault's rewrap): the old token stops
    /// working as the new one starts. Returns the record as it is now, `None` if there was
    /// no live response under `old_hash`.
    async fn rewrap_wrapped_response(
        &self,
        tenant: TenantId,
        old_hash: &[u8],
        now: i64,
        renewed: &WrappedResponseRenewal,
    ) -> Result<Option<WrappedResponseRecord>, StoreError>;
    /// Deletes every wrapped response expired at `now`; how many.
    async fn tidy_wrapped_responses(&self, now: i64) -> Result<u64, StoreError>;

    /// Creates or replaces an AppRole role (keyed by tenant, mount and name); its secret_ids
    /// are kept. `Conflict` if another role of the mount has the same `role_id`.
    async fn put_approle_role(&self, role: &AppRoleRecord) -> Result<(), StoreError>;
    /// An AppRole role by name.
    async fn get_approle_role(
        &self,
        tenant: TenantId,
        mount: MountId,
        name: &str,
    ) -> Result<Option<AppRoleRecord>, StoreError>;
    /// An AppRole role by its `role_id` (logins).
    async fn get_approle_role_by_role_id(
        &self,
        tenant: TenantId,
        mount: MountId,
        role_id: &str,
    ) -> Result<Option<AppRoleRecord>, StoreError>;
    /// Names of a mount's roles, sorted.
    async fn list_approle_roles(
        &self,
        tenant: TenantId,
        mount: MountId,
    ) -> Result<Vec<String>, StoreError>;
    /// Deletes a role and every secret_id issued for it; returns whether it existed.
    async fn delete_approle_role(
        &self,
        tenant: TenantId,
        mount: MountId,
        name: &str,
    ) -> Result<bool, StoreError>;
    /// Stores a secret_id of an existing role; `Conflict` if the role already has a
    /// secret_id with this hash (a repeated custom secret_id) or the accessor is taken.
    async fn put_approle_secret_id(&self, secret_id: &SecretIdRecord) -> Result<(), StoreError>;
    /// A role's secret_id by its keyed hash, expired or not.
    async fn get_approle_secret_id(
        &self,
        tenant: TenantId,
        mount: MountId,
        role_name: &str,
        hash: &[u8],
    ) -> Result<Option<SecretIdRecord>, StoreError>;
    /// A role's secret_id by accessor, expired or not.
    async fn get_approle_secret_id_by_accessor(
        &self,
        tenant: TenantId,
        mount: MountId,
        role_name: &str,
        accessor: &str,
    ) -> Result<Option<SecretIdRecord>, StoreError>;
    /// Accessors of a role's secret_ids, sorted.
    async fn list_approle_secret_id_accessors(
        &self,
        tenant: TenantId,
        mount: MountId,
        role_name: &str,
    ) -> Result<Vec<String>, StoreError>;
    /// Deletes a role's secret_id by keyed hash; returns whether it existed.
    async fn delete_approle_secret_id(
        &self,
        tenant: TenantId,
        mount: MountId,
        role_name: &str,
        hash: &[u8],
    ) -> Result<bool, StoreError>;
    /// Consumes one login of a use-limited secret_id atomically (one statement, exact under
    /// any concurrency); returns the uses left after this one, or `None` if none was left or
    /// the secret_id is gone. The secret_id is deleted with its last use.
    async fn use_approle_secret_id(
        &self,
        tenant: TenantId,
        mount: MountId,
        role_name: &str,
        hash: &[u8],
    ) -> Result<Option<u64>, StoreError>;
    /// Deletes at most `limit` secret_ids of a mount expired at `now`; returns how many. Small
    /// batches keep each write short, so logins are never held up by a tidy.
    async fn tidy_approle_secret_ids(
        &self,
        tenant: TenantId,
        mount: MountId,
        now: i64,
        limit: u32,
    ) -> Result<u64, StoreError>;

    /// Creates a key with its first version; `Conflict` if the name is taken.
    async fn create_key(&self, key: &KeyRecord, first: &KeyVersionRecord)
        -> Result<(), StoreError>;
    /// Finds a key by name.
    async fn get_key(
        &self,
        tenant: TenantId,
        mount: MountId,
        name: &str,
    ) -> Result<Option<KeyRecord>, StoreError>;
    /// Every version of a key, ascending.
    async fn get_key_versions(
        &self,
        tenant: TenantId,
        key: KeyId,
    ) -> Result<Vec<KeyVersionRecord>, StoreError>;
    /// Names of the keys in a mount, sorted.
    async fn list_keys(&self, tenant: TenantId, mount: MountId) -> Result<Vec<String>, StoreError>;
    /// Keys with automatic rotation enabled, across tenants (for the rotation job).
    async fn list_auto_rotating_keys(&self) -> Result<Vec<KeyRecord>, StoreError>;
    /// Replaces a key's configuration fields (min versions, deletion, auto-rotate period),
    /// unless a trim raised its `min_available_version` above either min version meanwhile.
    async fn update_key_config(&self, key: &KeyRecord) -> Result<(), StoreError>;
    /// Trims a key: sets its `min_available_version` and deletes its versions below it for
    /// good, in one transaction, if the key still allows it (the value is not lowered, and
    /// is at most both min versions); returns the deleted versions (their backend keys are
    /// the caller's to destroy). `ExpectationFailed` if the key changed meanwhile or is gone.
    async fn trim_key_versions(
        &self,
        tenant: TenantId,
        key: KeyId,
        min_available_version: u32,
    ) -> Result<Vec<KeyVersionRecord>, StoreError>;
    /// Adds a version if the latest is still `expected_latest` (so a rotation happens once
    /// however many callers race); returns whether it was added.
    async fn add_key_version(
        &self,
        tenant: TenantId,
        expected_latest: u32,
        version: &KeyVersionRecord,
    ) -> Result<bool, StoreError>;
    /// Restores a key from a backup with every version it keeps, in one transaction: creates
    /// it, or with `replace` first deletes the key of that (tenant, mount, name) with its
    /// versions; returns the id of the key replaced, if any. A version restored over itself
    /// (same key id and version) keeps the higher `counter_reserved`, so a count never goes
    /// backwards. `Conflict` if the name is taken without `replace`, or the key id is another
    /// key's. Announced as [`Change::Key`] (the restored and the replaced id).
    async fn restore_key(
        &self,
        key: &KeyRecord,
        versions: &[KeyVersionRecord],
        replace: bool,
    ) -> Result<Option<KeyId>, StoreError>;
    /// Deletes a key and its versions.
    async fn delete_key(&self, tenant: TenantId, key: KeyId) -> Result<(), StoreError>;
    /// Atomically raises a version's reserved encryption count by at most `block`, never
    /// past `limit`; returns the count reserved before and after.
    async fn reserve_counter(
        &self,
        tenant: TenantId,
        key: KeyId,
        version: u32,
        block: u64,
        limit: u64,
    ) -> Result<(u64, u64), StoreError>;

    /// Records an audit sink's chain head at `sequence`. The highest sequence per sink is
    /// kept; a checkpoint at or below it is ignored, so a forked chain cannot overwrite the
    /// head already recorded.
    async fn put_audit_checkpoint(
        &self,
        sink: &str,
        sequence: u64,
        head: &[u8],
    ) -> Result<(), StoreError>;
    /// The highest (sequence, chain head) recorded for an audit sink.
    async fn latest_audit_checkpoint(
        &self,
        sink: &str,
    ) -> Result<Option<(u64, Vec<u8>)>, StoreError>;
}
