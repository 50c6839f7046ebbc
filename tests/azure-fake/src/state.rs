//! The fake's in-memory vault, issued tokens, fault controls and request counters.
//!
//! All of it sits behind one `Arc<FakeState>` shared by the handlers and the test's
//! [`crate::AzureFake`] handle; every method takes `&self` and is safe to call from any
//! thread while requests are served.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::http::HeaderMap;
use serde_json::{json, Value};

use crate::{
    crypto::{KeyMaterial, KeySpec},
    error::KeyVaultError,
    Operation,
};

/// The resource Key Vault's challenge names; clients ask for `<resource>/.default`.
pub const KEY_VAULT_RESOURCE: &str = "https://vault.azure.net";

/// The registered application and where the fake is reachable.
#[derive(Clone)]
pub struct FakeConfig {
    /// Directory (tenant) id.
    pub tenant: String,
    /// Application (client) id.
    pub client_id: String,
    /// The client secret the token endpoint accepts.
    pub client_secret: String,
    /// `https://127.0.0.1:PORT`, no trailing slash: both the vault and the authority host.
    pub base_url: String,
}

/// One version of a key.
pub struct KeyVersion {
    /// 32 lowercase hex digits, as Key Vault names versions.
    pub version: String,
    /// `RSA`, `RSA-HSM`, `EC` or `EC-HSM`, as created.
    pub kty: String,
    /// The private key.
    pub material: Arc<KeyMaterial>,
    /// Allowed operations (`wrapKey`, `sign`, …).
    pub key_ops: Vec<String>,
    /// `attributes.enabled`.
    pub enabled: bool,
    /// `attributes.nbf`, Unix seconds.
    pub not_before: Option<i64>,
    /// `attributes.exp`, Unix seconds.
    pub expires: Option<i64>,
    /// `attributes.created`, Unix seconds.
    pub created: i64,
    /// `attributes.updated`, Unix seconds.
    pub updated: i64,
    /// `tags`.
    pub tags: BTreeMap<String, String>,
}

/// The shared state of one running fake.
pub struct FakeState {
    config: FakeConfig,
    /// Versions by key name, oldest first: the last one is the current version.
    keys: Mutex<BTreeMap<String, Vec<KeyVersion>>>,
    /// Deleted keys (soft delete) by name: their versions and the deletion time.
    deleted: Mutex<BTreeMap<String, (Vec<KeyVersion>, i64)>>,
    tokens: Mutex<HashSet<String>>,
    throttle_remaining: AtomicU64,
    retry_after_seconds: AtomicU64,
    latency_millis: AtomicU64,
    outage: AtomicBool,
    /// Denied operations: on every key (`None`) or on one key.
    denied: Mutex<HashSet<(Operation, Option<String>)>>,
    counters: [AtomicU64; Operation::ALL.len()],
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Unix seconds now: Key Vault's attribute timestamps.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl FakeState {
    /// An empty vault for this registered client.
    pub fn new(config: FakeConfig) -> FakeState {
        FakeState {
            config,
            keys: Mutex::new(BTreeMap::new()),
            deleted: Mutex::new(BTreeMap::new()),
            tokens: Mutex::new(HashSet::new()),
            throttle_remaining: AtomicU64::new(0),
            retry_after_seconds: AtomicU64::new(1),
            latency_millis: AtomicU64::new(0),
            outage: AtomicBool::new(false),
            denied: Mutex::new(HashSet::new()),
            counters: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// The registered client and base URL.
    pub fn config(&self) -> &FakeConfig {
        &self.config
    }

    /// The `WWW-Authenticate` value of a 401: the authorization server is this fake's
    /// authority (the Python SDK takes the tenant from its path), the resource Key Vault's.
    pub fn challenge(&self) -> String {
        format!(
            "Bearer authorization=\"{}/{}\", resource=\"{KEY_VAULT_RESOURCE}\"",
            self.config.base_url, self.config.tenant
        )
    }

    // ---- fault controls and counters ----

    /// Answers the next `count` authenticated Key Vault requests with 429 and
    /// `Retry-After: <retry_after, whole seconds>`.
    pub fn throttle(&self, count: u64, retry_after: Duration) {
        self.retry_after_seconds
            .store(retry_after.as_secs(), Ordering::SeqCst);
        self.throttle_remaining.store(count, Ordering::SeqCst);
    }

    /// Delays every request (Key Vault and token endpoint) by `latency` before answering;
    /// a long latency makes the fake hang.
    pub fn set_latency(&self, latency: Duration) {
        let millis = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        self.latency_millis.store(millis, Ordering::SeqCst);
    }

    /// Refuses `operation` with 403 `Forbidden`/`AccessDenied` until [`FakeState::allow`],
    /// as Key Vault does for a client whose access policy lacks the permission.
    pub fn deny(&self, operation: Operation) {
        lock(&self.denied).insert((operation, None));
    }

    /// Refuses `operation` on one key only (a role assignment scoped to other keys).
    pub fn deny_for_key(&self, operation: Operation, key_name: &str) {
        lock(&self.denied).insert((operation, Some(key_name.to_owned())));
    }

    /// Lifts [`FakeState::deny`] and every [`FakeState::deny_for_key`] of `operation`.
    pub fn allow(&self, operation: Operation) {
        lock(&self.denied).retain(|(denied, _)| *denied != operation);
    }

    /// While on, every request (Key Vault and token endpoint) gets 503
    /// `ServiceUnavailable`, as during a regional outage.
    pub fn set_outage(&self, on: bool) {
        self.outage.store(on, Ordering::SeqCst);
    }

    /// Whether [`FakeState::set_outage`] is on.
    pub fn in_outage(&self) -> bool {
        self.outage.load(Ordering::SeqCst)
    }

    /// Clears throttling, latency, outage and denials.
    pub fn clear_faults(&self) {
        self.throttle_remaining.store(0, Ordering::SeqCst);
        self.outage.store(false, Ordering::SeqCst);
        self.latency_millis.store(0, Ordering::SeqCst);
        lock(&self.denied).clear();
    }

    /// Forgets every issued token: the next Key Vault request of each client gets 401 and
    /// the client must fetch a new token.
    pub fn revoke_tokens(&self) {
        lock(&self.tokens).clear();
    }

    /// Requests received for `operation` (all of them: challenged, throttled and refused
    /// ones included).
    pub fn request_count(&self, operation: Operation) -> u64 {
        self.counters[operation.index()].load(Ordering::SeqCst)
    }

    /// Throttled requests still to come.
    pub fn throttle_remaining(&self) -> u64 {
        self.throttle_remaining.load(Ordering::SeqCst)
    }

    /// Sets every counter to zero.
    pub fn reset_counts(&self) {
        for counter in &self.counters {
            counter.store(0, Ordering::SeqCst);
        }
    }

    /// Counts a request and waits out the configured latency.
    pub async fn arrive(&self, operation: Operation) {
        self.counters[operation.index()].fetch_add(1, Ordering::SeqCst);
        let latency = self.latency_millis.load(Ordering::SeqCst);
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
    }

    /// What every Key Vault request goes through before its operation: counting, latency,
    /// the bearer token (401 challenge), throttling (429), denial (403) and `api-version`.
    pub async fn admit(
        &self,
        operation: Operation,
        key_name: &str,
        headers: &HeaderMap,
        api_version: Option<&str>,
    ) -> Result<(), KeyVaultError> {
        self.arrive(operation).await;
        if self.in_outage() {
            return Err(KeyVaultError::ServiceUnavailable);
        }
        let bearer = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match bearer {
            None => {
                return Err(KeyVaultError::MissingToken {
                    challenge: self.challenge(),
                })
            }
            Some(token) if !lock(&self.tokens).contains(token.trim()) => {
                return Err(KeyVaultError::InvalidToken {
                    challenge: self.challenge(),
                })
            }
            Some(_) => {}
        }
        let throttled = self
            .throttle_remaining
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if throttled {
            return Err(KeyVaultError::Throttled {
                retry_after_seconds: self.retry_after_seconds.load(Ordering::SeqCst),
            });
        }
        let denied = {
            let denied = lock(&self.denied);
            denied.contains(&(operation, None))
                || denied.contains(&(operation, Some(key_name.to_owned())))
        };
        if denied {
            return Err(KeyVaultError::AccessDenied {
                operation,
                client_id: self.config.client_id.clone(),
            });
        }
        match api_version {
            Some(v) if !v.is_empty() => Ok(()),
            _ => Err(KeyVaultError::BadParameter(
                "The 'api-version' query parameter is missing.".to_owned(),
            )),
        }
    }

    /// Issues a new bearer token.
    pub fn issue_token(&self) -> String {
        let token = format!("kbfake.{}", uuid::Uuid::new_v4().simple());
        lock(&self.tokens).insert(token.clone());
        token
    }

    // ---- keys ----

    /// `https://127.0.0.1:PORT/keys/<name>/<version>`.
    pub fn key_id(&self, name: &str, version: &str) -> String {
        format!("{}/keys/{name}/{version}", self.config.base_url)
    }

    /// Creates a new version of `name` (the key too if it is new) and returns its bundle.
    pub fn create_key(
        &self,
        name: &str,
        kty: &str,
        spec: KeySpec,
        key_ops: Option<Vec<String>>,
        attributes: KeyAttributesUpdate,
        tags: BTreeMap<String, String>,
    ) -> Result<Value, KeyVaultError> {
        let material =
            KeyMaterial::generate(spec).map_err(|e| KeyVaultError::BadParameter(e.to_string()))?;
        let key_ops = key_ops.unwrap_or_else(|| default_key_ops(&material));
        let now = unix_now();
        let version = KeyVersion {
            version: uuid::Uuid::new_v4().simple().to_string(),
            kty: kty.to_owned(),
            material: Arc::new(material),
            key_ops,
            enabled: attributes.enabled.unwrap_or(true),
            not_before: attributes.not_before,
            expires: attributes.expires,
            created: now,
            updated: now,
            tags,
        };
        if lock(&self.deleted).contains_key(name) {
            return Err(KeyVaultError::DeletedKeyConflict {
                name: name.to_owned(),
            });
        }
        let bundle = self.bundle(name, &version);
        lock(&self.keys)
            .entry(name.to_owned())
            .or_default()
            .push(version);
        Ok(bundle)
    }

    /// The bundle of a version (`None`: the current one).
    pub fn get_key(&self, name: &str, version: Option<&str>) -> Result<Value, KeyVaultError> {
        let keys = lock(&self.keys);
        let found = find(&keys, name, version)?;
        Ok(self.bundle(name, found))
    }

    /// Applies an update (PATCH) to a version and returns its bundle.
    pub fn update_key(
        &self,
        name: &str,
        version: Option<&str>,
        key_ops: Option<Vec<String>>,
        attributes: KeyAttributesUpdate,
        tags: Option<BTreeMap<String, String>>,
    ) -> Result<Value, KeyVaultError> {
        let mut keys = lock(&self.keys);
        let found = find_mut(&mut keys, name, version)?;
        if let Some(ops) = key_ops {
            found.key_ops = ops;
        }
        if let Some(enabled) = attributes.enabled {
            found.enabled = enabled;
        }
        if attributes.not_before.is_some() {
            found.not_before = attributes.not_before;
        }
        if attributes.expires.is_some() {
            found.expires = attributes.expires;
        }
        if let Some(tags) = tags {
            found.tags = tags;
        }
        found.updated = unix_now();
        Ok(self.bundle(name, found))
    }

    /// The key material and `kid` of a version that may perform `operation` (Key Vault's
    /// name: `wrapKey`, `sign`, …): enabled, allowed by `key_ops`, within `nbf`/`exp`.
    pub fn usable_key(
        &self,
        name: &str,
        version: Option<&str>,
        operation: &'static str,
    ) -> Result<(Arc<KeyMaterial>, String), KeyVaultError> {
        let keys = lock(&self.keys);
        let found = find(&keys, name, version)?;
        if !found.enabled {
            return Err(KeyVaultError::KeyDisabled { operation });
        }
        let now = unix_now();
        if found.not_before.is_some_and(|nbf| now < nbf)
            || found.expires.is_some_and(|exp| now >= exp)
        {
            return Err(KeyVaultError::OperationNotPermitted { operation });
        }
        if !found.key_ops.iter().any(|op| op == operation) {
            return Err(KeyVaultError::OperationNotPermitted { operation });
        }
        Ok((found.material.clone(), self.key_id(name, &found.version)))
    }

    /// Deletes a key, all its versions (Key Vault's soft delete: it becomes a deleted key,
    /// recoverable until purged) and returns its `DeletedKeyBundle`.
    pub fn delete_key(&self, name: &str) -> Result<Value, KeyVaultError> {
        let versions = lock(&self.keys)
            .remove(name)
            .ok_or_else(|| not_found(name, None))?;
        let now = unix_now();
        let bundle = match versions.last() {
            Some(current) => self.deleted_bundle(name, current, now),
            None => return Err(not_found(name, None)),
        };
        lock(&self.deleted).insert(name.to_owned(), (versions, now));
        Ok(bundle)
    }

    /// The `DeletedKeyBundle` of a deleted key.
    pub fn get_deleted_key(&self, name: &str) -> Result<Value, KeyVaultError> {
        let deleted = lock(&self.deleted);
        let (versions, deleted_at) =
            deleted
                .get(name)
                .ok_or_else(|| KeyVaultError::KeyNotFound {
                    id: name.to_owned(),
                })?;
        let current = versions.last().ok_or_else(|| not_found(name, None))?;
        Ok(self.deleted_bundle(name, current, *deleted_at))
    }

    fn deleted_bundle(&self, name: &str, current: &KeyVersion, deleted_at: i64) -> Value {
        let mut bundle = self.bundle(name, current);
        bundle["recoveryId"] = json!(format!("{}/deletedkeys/{name}", self.config.base_url));
        bundle["deletedDate"] = json!(deleted_at);
        bundle["scheduledPurgeDate"] = json!(deleted_at + 90 * 24 * 3600);
        bundle
    }

    /// One page of the key list (`KeyListResult`): the keys' `KeyItem`s (versionless `kid`,
    /// attributes and tags of the current version) from `skip`, at most `max` of them, and
    /// whether more follow.
    pub fn list_keys(&self, skip: usize, max: usize) -> (Vec<Value>, bool) {
        let keys = lock(&self.keys);
        let items: Vec<Value> = keys
            .iter()
            .skip(skip)
            .take(max)
            .filter_map(|(name, versions)| {
                let current = versions.last()?;
                let bundle = self.bundle(name, current);
                let mut item = json!({
                    "kid": format!("{}/keys/{name}", self.config.base_url),
                    "attributes": bundle["attributes"],
                });
                if let Some(tags) = bundle.get("tags") {
                    item["tags"] = tags.clone();
                }
                Some(item)
            })
            .collect();
        let more = keys.len() > skip.saturating_add(max);
        (items, more)
    }

    /// Key Vault's key bundle: `{"key": JWK, "attributes": {…}, "tags": {…}}`.
    fn bundle(&self, name: &str, version: &KeyVersion) -> Value {
        let mut key = serde_json::Map::new();
        key.insert("kid".to_owned(), json!(self.key_id(name, &version.version)));
        key.insert("kty".to_owned(), json!(version.kty));
        key.insert("key_ops".to_owned(), json!(version.key_ops));
        key.extend(version.material.public_jwk_members());
        let mut attributes = json!({
            "enabled": version.enabled,
            "created": version.created,
            "updated": version.updated,
            "recoveryLevel": "Recoverable+Purgeable",
            "recoverableDays": 90,
            "exportable": false,
        });
        if let Some(nbf) = version.not_before {
            attributes["nbf"] = json!(nbf);
        }
        if let Some(exp) = version.expires {
            attributes["exp"] = json!(exp);
        }
        let mut bundle = json!({ "key": key, "attributes": attributes });
        if !version.tags.is_empty() {
            bundle["tags"] = json!(version.tags);
        }
        bundle
    }
}

/// The attributes a create or update request may set.
#[derive(Default, Clone, Copy)]
pub struct KeyAttributesUpdate {
    /// `enabled`.
    pub enabled: Option<bool>,
    /// `nbf`.
    pub not_before: Option<i64>,
    /// `exp`.
    pub expires: Option<i64>,
}

/// What Key Vault allows by default: all six operations on RSA keys, sign/verify on EC.
fn default_key_ops(material: &KeyMaterial) -> Vec<String> {
    let ops: &[&str] = if material.is_rsa() {
        &[
            "encrypt",
            "decrypt",
            "sign",
            "verify",
            "wrapKey",
            "unwrapKey",
        ]
    } else {
        &["sign", "verify"]
    };
    ops.iter().map(|s| (*s).to_owned()).collect()
}

fn not_found(name: &str, version: Option<&str>) -> KeyVaultError {
    KeyVaultError::KeyNotFound {
        id: match version {
            Some(v) => format!("{name}/{v}"),
            None => name.to_owned(),
        },
    }
}

fn find<'a>(
    keys: &'a BTreeMap<String, Vec<KeyVersion>>,
    name: &str,
    version: Option<&str>,
) -> Result<&'a KeyVersion, KeyVaultError> {
    let versions = keys.get(name).ok_or_else(|| not_found(name, version))?;
    match version {
        None => versions.last(),
        Some(v) => versions.iter().find(|k| k.version == v),
    }
    .ok_or_else(|| not_found(name, version))
}

fn find_mut<'a>(
    keys: &'a mut BTreeMap<String, Vec<KeyVersion>>,
    name: &str,
    version: Option<&str>,
) -> Result<&'a mut KeyVersion, KeyVaultError> {
    let versions = keys.get_mut(name).ok_or_else(|| not_found(name, version))?;
    match version {
        None => versions.last_mut(),
        Some(v) => versions.iter_mut().find(|k| k.version == v),
    }
    .ok_or_else(|| not_found(name, version))
}
