//! The mount table of each tenant: path prefixes bound to secrets engines and auth methods.
//! Auth methods live under `auth/<path>/` (a prefix no secrets engine may take), so the two
//! never collide; `auth/token/` is built in and never in the table.
//!
//! Held in memory (one `Arc` snapshot per tenant, replaced on change) so that routing a
//! request costs a few string comparisons; the store is the source of truth.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, RwLock,
    },
};

use crate::{
    clock::Clock,
    error::{Error, Result},
    mount_storage::MountStorage,
    store::{MountRecord, Store, StoreError},
    MountId, TenantId,
};

/// The types of mount the table accepts, as the server's registry of mount kinds tells it:
/// the mount table knows kinds by name only.
#[derive(Clone, Debug, Default)]
pub struct MountKinds {
    engines: Vec<String>,
    auth: Vec<String>,
}

impl MountKinds {
    /// Secrets engine types (`sys/mounts`) and auth method types (`sys/auth`).
    pub fn new(engines: Vec<String>, auth: Vec<String>) -> Self {
        Self { engines, auth }
    }

    /// Whether `kind` is a secrets engine type.
    pub fn is_engine(&self, kind: &str) -> bool {
        self.engines.iter().any(|k| k == kind)
    }

    /// Whether `kind` is an auth method type.
    pub fn is_auth(&self, kind: &str) -> bool {
        self.auth.iter().any(|k| k == kind)
    }
}

/// The path prefix of every auth method mount.
pub const AUTH_PREFIX: &str = "auth/";

/// Top-level path segments that are never mount paths (routes of the broker itself).
pub const RESERVED_PREFIXES: &[&str] = &["sys", "auth", "identity", "cubbyhole", "root"];

/// Whether a mount is an auth method.
pub fn is_auth(mount: &MountRecord) -> bool {
    mount.path.starts_with(AUTH_PREFIX)
}

/// Normalises an auth method's path (`approle`, as `bao auth enable -path=…` names it) to its
/// mount path (`auth/approle/`).
pub fn normalize_auth_path(path: &str) -> Result<String> {
    let inner = normalize_path(path)?;
    if inner.split('/').next() == Some("token") {
        return Err(Error::invalid("path is already in use at auth/token/"));
    }
    Ok(format!("{AUTH_PREFIX}{inner}"))
}

/// The system's lease TTLs, which a mount's tuning of `0` stands for (Vault's 32 days).
pub const SYSTEM_LEASE_TTL_SECS: u64 = 32 * 24 * 3600;

/// The key of a mount's configuration under which its tuning is kept (beside the engine's
/// own settings, such as transit's `disable_upsert`).
const TUNE_KEY: &str = "tune";

/// Who may see a mount in `sys/internal/ui/mounts` (Vault's `listing_visibility`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListingVisibility {
    /// Those whose policies reach the mount (Vault's `""`).
    #[default]
    #[serde(rename = "")]
    Default,
    /// Also anonymous callers.
    Unauth,
    /// Hidden from the listing (Vault's `hidden`, for UIs).
    Hidden,
}

impl ListingVisibility {
    /// Vault's value (`""`, `unauth`, `hidden`).
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "" => Ok(Self::Default),
            "unauth" => Ok(Self::Unauth),
            "hidden" => Ok(Self::Hidden),
            other => Err(Error::invalid(format!(
                "invalid listing_visibility {other}"
            ))),
        }
    }

    /// Vault's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Default => "",
            Self::Unauth => "unauth",
            Self::Hidden => "hidden",
        }
    }
}

/// What `sys/mounts/:path/tune` and `sys/auth/:path/tune` keep of a mount (Vault API:
/// sys/mounts, tune). Only settings that change nothing the broker enforces are kept:
/// the server refuses the others.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Tuning {
    /// Replaces the description given at enable time.
    pub description: Option<String>,
    /// Seconds, `0` for the system's.
    pub default_lease_ttl: u64,
    /// Seconds, `0` for the system's.
    pub max_lease_ttl: u64,
    /// Who sees the mount in the UI listing.
    pub listing_visibility: ListingVisibility,
    /// Request keys the audit log would leave unhashed (kept empty: refused otherwise).
    pub audit_non_hmac_request_keys: Vec<String>,
    /// Response keys the audit log would leave unhashed (kept empty: refused otherwise).
    pub audit_non_hmac_response_keys: Vec<String>,
    /// Request headers handed to the engine (none of ours reads one).
    pub passthrough_request_headers: Vec<String>,
    /// Response headers the engine may set (none of ours sets one).
    pub allowed_response_headers: Vec<String>,
    /// The engine's options (none of ours reads one), reported as given.
    pub options: Option<std::collections::BTreeMap<String, String>>,
}

impl Tuning {
    /// The tuning kept in a mount's configuration (none: all defaults).
    pub fn of(mount: &MountRecord) -> Tuning {
        mount
            .config
            .get(TUNE_KEY)
            .and_then(|value| serde_json::from_value(value.clone()).ok())
            .unwrap_or_default()
    }

    /// The description the mount reports.
    pub fn description<'m>(&'m self, mount: &'m MountRecord) -> &'m str {
        self.description.as_deref().unwrap_or(&mount.description)
    }

    /// The default lease TTL in force, in seconds.
    pub fn effective_default_ttl(&self) -> u64 {
        match self.default_lease_ttl {
            0 => self.effective_max_ttl().min(SYSTEM_LEASE_TTL_SECS),
            ttl => ttl,
        }
    }

    /// The maximum lease TTL in force, in seconds.
    pub fn effective_max_ttl(&self) -> u64 {
        match self.max_lease_ttl {
            0 => SYSTEM_LEASE_TTL_SECS,
            ttl => ttl,
        }
    }

    /// Refuses TTLs that contradict each other, in Vault's words.
    pub fn check(&self) -> Result<()> {
        let (default, max) = (self.default_lease_ttl, self.effective_max_ttl());
        if default > max {
            return Err(Error::invalid(format!(
                "backend max lease TTL of {max} would be less than backend default lease TTL of {default}"
            )));
        }
        Ok(())
    }
}

/// A tenant's mounts, longest path first.
pub type MountTable = Arc<Vec<Arc<MountRecord>>>;

/// Mount tables of every tenant.
pub struct Mounts {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    kinds: MountKinds,
    tables: RwLock<HashMap<TenantId, MountTable>>,
    /// Bumped by every invalidation (see [`Mounts::reload`]).
    generation: AtomicU64,
}

impl std::fmt::Debug for Mounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mounts(..)")
    }
}

/// Normalises a mount path to `a/b/` form and checks it.
pub fn normalize_path(path: &str) -> Result<String> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return Err(Error::invalid("mount path must not be empty"));
    }
    if trimmed.len() > 128 {
        return Err(Error::invalid("mount path is longer than 128 characters"));
    }
    for segment in trimmed.split('/') {
        let valid = !segment.is_empty()
            && segment != "."
            && segment != ".."
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !valid {
            return Err(Error::invalid(format!(
                "invalid mount path {path:?}: use letters, digits, '-', '_' and '.' between slashes"
            )));
        }
    }
    let first = trimmed.split('/').next().unwrap_or_default();
    if RESERVED_PREFIXES.contains(&first) {
        return Err(Error::invalid(format!(
            "cannot mount at reserved path \"{first}/\""
        )));
    }
    Ok(format!("{trimmed}/"))
}

impl Mounts {
    /// Mount tables backed by `store`, accepting mounts of `kinds`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, kinds: MountKinds) -> Self {
        Self {
            store,
            clock,
            kinds,
            tables: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
        }
    }

    /// A tenant's mount table, loaded on first use.
    pub async fn table(&self, tenant: TenantId) -> Result<MountTable> {
        if let Some(table) = self.read_cached(tenant) {
            return Ok(table);
        }
        self.load(tenant).await
    }

    fn read_cached(&self, tenant: TenantId) -> Option<MountTable> {
        self.tables.read().ok()?.get(&tenant).cloned()
    }

    /// Re-reads a tenant's mounts from the store (they changed).
    pub async fn reload(&self, tenant: TenantId) -> Result<MountTable> {
        if let Ok(mut tables) = self.tables.write() {
            self.generation.fetch_add(1, Ordering::SeqCst);
            tables.remove(&tenant);
        }
        self.load(tenant).await
    }

    /// Reads a tenant's mounts; the table is cached unless a change came meanwhile (a
    /// table read before a change must not replace one read after it).
    async fn load(&self, tenant: TenantId) -> Result<MountTable> {
        let before = self.generation.load(Ordering::SeqCst);
        let mut mounts: Vec<Arc<MountRecord>> = self
            .store
            .list_mounts(tenant)
            .await?
            .into_iter()
            .map(Arc::new)
            .collect();
        mounts.sort_by(|a, b| b.path.len().cmp(&a.path.len()).then(a.path.cmp(&b.path)));
        let table: MountTable = Arc::new(mounts);
        if let Ok(mut tables) = self.tables.write() {
            if self.generation.load(Ordering::SeqCst) == before {
                tables.insert(tenant, table.clone());
            }
        }
        Ok(table)
    }

    /// The mount serving `path` (relative to `/v1/`), and the rest of the path.
    pub async fn resolve<'p>(
        &self,
        tenant: TenantId,
        path: &'p str,
    ) -> Result<Option<(Arc<MountRecord>, &'p str)>> {
        let table = self.table(tenant).await?;
        for mount in table.iter() {
            if let Some(rest) = path.strip_prefix(mount.path.as_str()) {
                return Ok(Some((mount.clone(), rest)));
            }
            if path == mount.path.trim_end_matches('/') {
                return Ok(Some((mount.clone(), "")));
            }
        }
        Ok(None)
    }

    /// Mounts an engine. As in Vault, a path that is taken, or that nests with a mounted
    /// path, is refused with "path is already in use".
    pub async fn enable(
        &self,
        tenant: TenantId,
        path: &str,
        kind: &str,
        description: &str,
    ) -> Result<Arc<MountRecord>> {
        let path = normalize_path(path)?;
        if !self.kinds.is_engine(kind) {
            return Err(Error::invalid(format!(
                "plugin not found in the catalog: {kind}"
            )));
        }
        self.insert(tenant, path, kind, description).await
    }

    /// Mounts an auth method at `auth/<path>/` (Vault API: sys/auth/:path).
    pub async fn enable_auth(
        &self,
        tenant: TenantId,
        path: &str,
        kind: &str,
        description: &str,
    ) -> Result<Arc<MountRecord>> {
        let path = normalize_auth_path(path)?;
        if !self.kinds.is_auth(kind) {
            return Err(Error::invalid(format!(
                "plugin not found in the catalog: {kind}"
            )));
        }
        self.insert(tenant, path, kind, description).await
    }

    async fn insert(
        &self,
        tenant: TenantId,
        path: String,
        kind: &str,
        description: &str,
    ) -> Result<Arc<MountRecord>> {
        let table = self.reload(tenant).await?;
        if let Some(existing) = table
            .iter()
            .find(|m| m.path.starts_with(&path) || path.starts_with(&m.path))
        {
            return Err(Error::invalid(format!(
                "path is already in use at {}",
                existing.path
            )));
        }
        let record = MountRecord {
            id: MountId::random(),
            tenant,
            path: path.clone(),
            kind: kind.to_owned(),
            description: description.to_owned(),
            config: serde_json::json!({}),
            created_at: self.clock.now_unix(),
        };
        match self.store.create_mount(&record).await {
            Ok(()) => {}
            Err(StoreError::Conflict) => {
                return Err(Error::invalid(format!("path is already in use at {path}")))
            }
            Err(other) => return Err(other.into()),
        }
        self.reload(tenant).await?;
        Ok(Arc::new(record))
    }

    /// Unmounts an engine and deletes its keys. Unknown paths succeed, as in Vault.
    pub async fn disable(&self, tenant: TenantId, path: &str) -> Result<Option<MountId>> {
        let path = normalize_path(path)?;
        self.remove(tenant, path).await
    }

    /// The auth method mounted at `path` (`approle` for `auth/approle/`), if any.
    pub async fn find_auth(
        &self,
        tenant: TenantId,
        path: &str,
    ) -> Result<Option<Arc<MountRecord>>> {
        let path = normalize_auth_path(path)?;
        let table = self.table(tenant).await?;
        Ok(table.iter().find(|m| m.path == path).cloned())
    }

    /// Unmounts an auth method (`approle` for `auth/approle/`) and deletes its roles and
    /// credentials. Unknown paths succeed, as in Vault.
    pub async fn disable_auth(&self, tenant: TenantId, path: &str) -> Result<Option<MountId>> {
        let path = normalize_auth_path(path)?;
        self.remove(tenant, path).await
    }

    async fn remove(&self, tenant: TenantId, path: String) -> Result<Option<MountId>> {
        let table = self.reload(tenant).await?;
        let Some(mount) = table.iter().find(|m| m.path == path) else {
            return Ok(None);
        };
        self.store.delete_mount(tenant, mount.id).await?;
        self.reload(tenant).await?;
        Ok(Some(mount.id))
    }

    /// Drops every cached table (changes may have been missed).
    pub fn forget_all(&self) {
        if let Ok(mut tables) = self.tables.write() {
            self.generation.fetch_add(1, Ordering::SeqCst);
            tables.clear();
        }
    }

    /// Drops a deleted tenant's table.
    pub fn forget_tenant(&self, tenant: TenantId) {
        if let Ok(mut tables) = self.tables.write() {
            self.generation.fetch_add(1, Ordering::SeqCst);
            tables.remove(&tenant);
        }
    }

    /// A mount's own key/value storage ([`MountStorage`]): where an engine or auth method
    /// keeps its state.
    pub fn storage(&self, mount: &MountRecord) -> MountStorage {
        MountStorage::new(self.store.clone(), mount.tenant, mount.id)
    }

    /// Replaces a mount's tuning (`path` as the mount table holds it: `transit/`,
    /// `auth/approle/`), keeping the engine's own configuration; the mount as tuned.
    pub async fn tune(
        &self,
        tenant: TenantId,
        path: &str,
        tuning: &Tuning,
    ) -> Result<Arc<MountRecord>> {
        tuning.check()?;
        let table = self.reload(tenant).await?;
        let mount = table
            .iter()
            .find(|m| m.path == path)
            .cloned()
            .ok_or_else(|| Error::invalid(format!("no mount at {path}")))?;
        let mut config = match &mount.config {
            serde_json::Value::Object(map) => map.clone(),
            _ => serde_json::Map::new(),
        };
        let value = serde_json::to_value(tuning)
            .map_err(|_| Error::internal("mount tuning encoding failed"))?;
        config.insert(TUNE_KEY.to_owned(), value);
        self.write_config(&mount, &serde_json::Value::Object(config))
            .await?;
        let table = self.table(tenant).await?;
        table
            .iter()
            .find(|m| m.id == mount.id)
            .cloned()
            .ok_or_else(|| Error::invalid(format!("no mount at {path}")))
    }

    /// Replaces a mount's engine configuration. Its tuning is the one stored now, whatever
    /// `config` (built from a copy of the mount that may predate a tune, on this node or
    /// another) says of it.
    pub async fn set_config(
        &self,
        mount: &MountRecord,
        mut config: serde_json::Value,
    ) -> Result<()> {
        let table = self.reload(mount.tenant).await?;
        let stored = table
            .iter()
            .find(|m| m.id == mount.id)
            .and_then(|m| m.config.get(TUNE_KEY).cloned());
        if let Some(map) = config.as_object_mut() {
            match stored {
                Some(tune) => map.insert(TUNE_KEY.to_owned(), tune),
                None => map.remove(TUNE_KEY),
            };
        }
        self.write_config(mount, &config).await
    }

    async fn write_config(&self, mount: &MountRecord, config: &serde_json::Value) -> Result<()> {
        self.store
            .update_mount_config(mount.tenant, mount.id, config)
            .await?;
        self.reload(mount.tenant).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_and_checked() {
        assert_eq!(normalize_path("transit").unwrap(), "transit/");
        assert_eq!(normalize_path("/a/b/").unwrap(), "a/b/");
        for bad in [
            "", "/", "sys", "sys/x", "auth/jwt", "a//b", "a/../b", "a b", "é", "a\0b",
        ] {
            assert!(normalize_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tuning_is_kept_beside_the_engine_config_and_checked() {
        let mut mount = MountRecord {
            id: MountId::random(),
            tenant: TenantId::ROOT,
            path: "transit/".to_owned(),
            kind: "transit".to_owned(),
            description: "at enable".to_owned(),
            config: serde_json::json!({"disable_upsert": true}),
            created_at: 0,
        };
        let untuned = Tuning::of(&mount);
        assert_eq!(untuned, Tuning::default());
        assert_eq!(untuned.description(&mount), "at enable");
        assert_eq!(untuned.effective_default_ttl(), SYSTEM_LEASE_TTL_SECS);
        let tuned = Tuning {
            description: Some("tuned".to_owned()),
            default_lease_ttl: 3600,
            max_lease_ttl: 7200,
            listing_visibility: ListingVisibility::Unauth,
            ..Tuning::default()
        };
        mount.config["tune"] = serde_json::to_value(&tuned).unwrap();
        assert_eq!(Tuning::of(&mount), tuned);
        assert_eq!(Tuning::of(&mount).description(&mount), "tuned");
        assert_eq!(mount.config["tune"]["listing_visibility"], "unauth");
        assert!(tuned.check().is_ok());
        let inverted = Tuning {
            default_lease_ttl: 10800,
            ..tuned
        };
        assert!(inverted.check().is_err());
        assert!(ListingVisibility::parse("bogus").is_err());
        assert_eq!(
            ListingVisibility::parse("").unwrap(),
            ListingVisibility::Default
        );
    }

    #[test]
    fn auth_paths_live_under_auth() {
        assert_eq!(normalize_auth_path("approle").unwrap(), "auth/approle/");
        assert_eq!(normalize_auth_path("/apps/x/").unwrap(), "auth/apps/x/");
        for bad in ["", "token", "token/x", "sys", "a/../b", "a b"] {
            assert!(normalize_auth_path(bad).is_err(), "{bad:?}");
        }
    }
}
