//! A loaded backend instance: the plugin trait object behind a bulkhead (a semaphore of
//! `concurrency` permits, each held by the blocking thread running a call) and a deadline on
//! every call. A hung plugin holds at most its own permits; other instances are unaffected.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    future::Future,
    sync::{Arc, Mutex, PoisonError, RwLock},
    time::{Duration, Instant},
};

use abi_stable::std_types::{RResult, RSlice, RStr, RString, RVec};
use async_trait::async_trait;
use keybroker_core::{
    backend::{
        BackendDecrypt, BackendEncrypt, BackendInstance, BackendSign, BackendVerify, OnUnavailable,
    },
    dek_cache::DekCache,
    Error, Tenant, TenantId,
};
use keybroker_plugin_abi::{
    capability, BackendBox, BackendInfo, BatchDone, BatchDoneBox, BatchDone_TO, BatchItem,
    BindKeyRequest, CreateKeyRequest, DecryptRequest, EncryptRequest, ErrorKind,
    GenerateDataKeyRequest, HostServices, LogLevel, PluginError, SignRequest, VerifyRequest,
};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use zeroize::{Zeroize, Zeroizing};

use crate::metrics::BackendMetrics;

/// Length of the broker's data keys (AES-256).
const DATA_KEY_LEN: u32 = 32;

/// Availability as reported by the plugin or seen by health checks.
#[derive(Debug, Default)]
pub struct Availability {
    /// The plugin said the whole instance is down, with its reason.
    reported_down: RwLock<Option<String>>,
    /// The last health check failed, with its reason.
    health_error: RwLock<Option<String>>,
    /// Key references the plugin reported unavailable, with its reason.
    keys_down: RwLock<HashMap<String, String>>,
}

impl Availability {
    /// Why the instance is unavailable, if it is.
    pub fn reason(&self) -> Option<String> {
        if let Some(reason) = self.reported_reason() {
            return Some(reason);
        }
        self.health_error.read().ok().and_then(|r| r.clone())
    }

    /// The plugin's own reason, if it reported the whole instance unavailable. Plugin
    /// reasons are safe to show callers; health check errors may carry operator details.
    fn reported_reason(&self) -> Option<String> {
        self.reported_down.read().ok().and_then(|r| r.clone())
    }

    /// Why the plugin reported this key unavailable, if it did.
    fn key_down(&self, reference: &str) -> Option<String> {
        match self.keys_down.read() {
            Ok(keys) => keys.get(reference).cloned(),
            Err(_) => Some(String::new()),
        }
    }
}

/// The host side of [`HostServices`], one per instance.
#[derive(Clone)]
pub struct HostHandle {
    instance: Arc<str>,
    availability: Arc<Availability>,
    cache: Arc<DekCache>,
    on_unavailable: OnUnavailable,
}

impl HostHandle {
    fn evict(&self) -> bool {
        self.on_unavailable == OnUnavailable::Evict
    }
}

impl HostServices for HostHandle {
    fn set_instance_available(&self, available: bool, reason: RStr<'_>) {
        if let Ok(mut down) = self.availability.reported_down.write() {
            *down = if available {
                None
            } else {
                Some(if reason.is_empty() {
                    "reported unavailable by the plugin".to_owned()
                } else {
                    reason.to_string()
                })
            };
        }
        if available {
            // The plugin knows best: a failed health check from while it was down is stale.
            if let Ok(mut health) = self.availability.health_error.write() {
                *health = None;
            }
            tracing::info!(instance = %self.instance, "backend instance reports available");
        } else {
            tracing::warn!(instance = %self.instance, reason = %reason, "backend instance reports unavailable");
            if self.evict() {
                self.cache.purge_all();
            }
        }
    }

    fn set_keys_available(
        &self,
        key_references: RSlice<'_, RString>,
        available: bool,
        reason: RStr<'_>,
    ) {
        let references: Vec<String> = key_references.iter().map(|r| r.to_string()).collect();
        if let Ok(mut keys) = self.availability.keys_down.write() {
            for reference in &references {
                if available {
                    keys.remove(reference);
                } else {
                    keys.insert(reference.clone(), reason.to_string());
                }
            }
        }
        tracing::info!(instance = %self.instance, keys = references.len(), available, reason = %reason,
            "backend instance reports key availability");
        if !available && self.evict() {
            self.cache.purge_references(references);
        }
    }

    fn log(&self, level: LogLevel, message: RStr<'_>) {
        let instance = &*self.instance;
        match level {
            LogLevel::ERROR => tracing::error!(instance, plugin_message = %message),
            LogLevel::WARN => tracing::warn!(instance, plugin_message = %message),
            LogLevel::DEBUG => tracing::debug!(instance, plugin_message = %message),
            _ => tracing::info!(instance, plugin_message = %message),
        }
    }
}

/// Settings of an instance that come from its drop-in.
#[derive(Debug, Clone)]
pub struct InstanceSettings {
    /// Instance name.
    pub name: String,
    /// Allowed tenants (`*` = all).
    pub tenants: Vec<String>,
    /// Per-call deadline.
    pub timeout: Duration,
    /// Deadline of key creation and binding (an RSA-4096 key pair takes seconds to make).
    pub create_timeout: Duration,
    /// Bulkhead size.
    pub concurrency: usize,
    /// Cache policy when unavailable.
    pub on_unavailable: OnUnavailable,
    /// Glob patterns of backend keys each tenant (by name) may bind.
    pub bind: BTreeMap<String, Vec<String>>,
}

/// A backend instance: loaded, or failed with a reason.
pub struct Instance {
    settings: InstanceSettings,
    backend: Option<Arc<BackendBox>>,
    info: Option<BackendInfo>,
    load_error: Option<String>,
    availability: Arc<Availability>,
    cache: Arc<DekCache>,
    permits: Arc<Semaphore>,
    metrics: Arc<BackendMetrics>,
    /// Tenants whose canonical name the plugin has been told (`BackendPlugin::name_tenant`).
    named_tenants: Arc<RwLock<HashSet<TenantId>>>,
}

/// A tenant whose name the plugin has not been told yet: told on the blocking thread, just
/// before the call that carries its id, then remembered. Two first calls racing may both
/// tell it; names never change for an id, so telling twice is harmless.
struct Naming {
    id: TenantId,
    id_text: RString,
    name: RString,
    named_tenants: Arc<RwLock<HashSet<TenantId>>>,
}

impl Naming {
    fn tell(self, backend: &BackendBox) {
        backend.name_tenant(self.id_text, self.name);
        if let Ok(mut named) = self.named_tenants.write() {
            named.insert(self.id);
        }
    }
}

/// The host's side of a batch started on a [`capability::NONBLOCKING`] plugin: hands the
/// results to the waiting call, and holds the call's bulkhead permit until the plugin
/// completes or drops it, however long after the caller gave up.
struct Completion {
    sender: Mutex<Option<oneshot::Sender<RVec<BatchItem>>>>,
    _permit: OwnedSemaphorePermit,
}

impl BatchDone for Completion {
    fn complete(&self, results: RVec<BatchItem>) {
        let sender = self
            .sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let unwanted = match sender {
            Some(sender) => sender.send(results).err(),
            None => Some(results),
        };
        // Late (the call timed out) or a second completion: decrypted plaintexts go nowhere.
        if let Some(mut unwanted) = unwanted {
            zeroize_results(&mut unwanted);
        }
    }
}

/// Zeroizes the bytes of a batch answer that will not be used (they may be plaintexts).
fn zeroize_results(results: &mut RVec<BatchItem>) {
    for item in results.iter_mut() {
        if let RResult::ROk(bytes) = item {
            bytes.as_mut_slice().zeroize();
        }
    }
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("settings", &self.settings)
            .field("load_error", &self.load_error)
            .finish_non_exhaustive()
    }
}

impl Instance {
    /// Pieces a plugin constructor needs before the instance exists.
    pub fn prepare(
        settings: &InstanceSettings,
        cache_ttl: Duration,
        cache_capacity: u64,
    ) -> (HostHandle, Arc<DekCache>, Arc<Availability>) {
        let cache = Arc::new(DekCache::new(cache_ttl, cache_capacity));
        let availability = Arc::new(Availability::default());
        let handle = HostHandle {
            instance: Arc::from(settings.name.as_str()),
            availability: availability.clone(),
            cache: cache.clone(),
            on_unavailable: settings.on_unavailable,
        };
        (handle, cache, availability)
    }

    /// A loaded instance.
    pub fn loaded(
        settings: InstanceSettings,
        backend: BackendBox,
        info: BackendInfo,
        cache: Arc<DekCache>,
        availability: Arc<Availability>,
        metrics: Arc<BackendMetrics>,
    ) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(settings.concurrency)),
            settings,
            backend: Some(Arc::new(backend)),
            info: Some(info),
            load_error: None,
            availability,
            cache,
            metrics,
            named_tenants: Arc::default(),
        }
    }

    /// An instance that could not be loaded; every call answers 503.
    pub fn failed(
        settings: InstanceSettings,
        reason: String,
        metrics: Arc<BackendMetrics>,
        cache_ttl: Duration,
    ) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(1)),
            settings,
            backend: None,
            info: None,
            load_error: Some(reason),
            availability: Arc::new(Availability::default()),
            cache: Arc::new(DekCache::new(cache_ttl, 1)),
            metrics,
            named_tenants: Arc::default(),
        }
    }

    /// Drop-in settings.
    pub fn settings(&self) -> &InstanceSettings {
        &self.settings
    }

    /// What the plugin said about itself, if loaded.
    pub fn info(&self) -> Option<&BackendInfo> {
        self.info.as_ref()
    }

    /// Why the instance is unavailable, if it is.
    pub fn unavailable_reason(&self) -> Option<String> {
        self.load_error
            .clone()
            .or_else(|| self.availability.reason())
    }

    fn has_capability(&self, bit: u64) -> bool {
        self.info
            .as_ref()
            .is_some_and(|i| i.capabilities & bit != 0)
    }

    /// Whether encryptions and decryptions are started on the async threads.
    fn nonblocking(&self) -> bool {
        self.has_capability(capability::NONBLOCKING)
    }

    /// A plugin answering a batch with another number of results than it was given is
    /// broken: nothing of its answer is used (plaintexts are zeroized).
    fn check_batch_len(
        &self,
        operation: &'static str,
        expected: usize,
        results: &mut RVec<BatchItem>,
    ) -> Result<(), Error> {
        if results.len() == expected {
            return Ok(());
        }
        zeroize_results(results);
        self.metrics
            .count_failed_call(&self.settings.name, operation);
        Err(Error::internal(format!(
            "backend instance \"{}\" answered {operation} with {} results for {expected} requests",
            self.settings.name,
            results.len()
        )))
    }

    /// Runs the plugin's health check (under the same bulkhead and deadline) and records it.
    pub async fn check_health(&self) {
        if self.backend.is_none() {
            return;
        }
        let result = self.call("health", None, |backend| backend.health()).await;
        let reason = result.err().map(|e| e.to_string());
        if let Some(reason) = &reason {
            tracing::warn!(instance = %self.settings.name, %reason, "backend health check failed");
            if self.settings.on_unavailable == OnUnavailable::Evict {
                self.cache.purge_all();
            }
        }
        if let Ok(mut health) = self.availability.health_error.write() {
            *health = reason;
        }
    }

    /// The plugin's live state for operators (`BackendPlugin::status`), under the same
    /// bulkhead and deadline as other calls: `None` when the plugin keeps none (it answers
    /// "not supported"), is not loaded, or answers something other than a JSON object (an
    /// error, logged).
    pub async fn status(&self) -> Result<Option<serde_json::Value>, Error> {
        if self.backend.is_none() {
            return Ok(None);
        }
        // The plugin's error is inspected here, before it is mapped: only its own "not
        // supported" (INVALID_REQUEST) means that there is no status.
        let answer = self
            .call("status", None, |backend| RResult::ROk(backend.status()))
            .await?;
        let text = match answer {
            RResult::ROk(text) => text,
            RResult::RErr(error) if error.kind == ErrorKind::INVALID_REQUEST => return Ok(None),
            RResult::RErr(error) => {
                self.metrics
                    .count_failed_call(&self.settings.name, "status");
                return Err(map_plugin_error(&self.settings.name, "status", error));
            }
        };
        match serde_json::from_str::<serde_json::Value>(text.as_str()) {
            Ok(value @ serde_json::Value::Object(_)) => Ok(Some(value)),
            Ok(_) => {
                tracing::error!(instance = %self.settings.name, "backend status is not a JSON object; ignored");
                Ok(None)
            }
            Err(error) => {
                tracing::error!(instance = %self.settings.name, %error, "backend status is not JSON; ignored");
                Ok(None)
            }
        }
    }

    fn unavailable(&self) -> Error {
        Error::Unavailable(format!(
            "backend instance \"{}\" is unavailable",
            self.settings.name
        ))
    }

    /// The name of `tenant` to tell the plugin before a call carrying its id, unless told
    /// already. The common case (told) takes a read lock and allocates nothing.
    fn naming(&self, tenant: &Tenant) -> Option<Naming> {
        let named = self
            .named_tenants
            .read()
            .is_ok_and(|named| named.contains(&tenant.id));
        (!named).then(|| Naming {
            id: tenant.id,
            id_text: RString::from(tenant.id.to_string()),
            name: RString::from(&*tenant.name),
            named_tenants: self.named_tenants.clone(),
        })
    }

    /// Calls the plugin on a blocking thread, within the bulkhead and the deadline. With a
    /// tenant, the plugin first learns its name if it has not yet.
    async fn call<T, F>(
        &self,
        operation: &'static str,
        tenant: Option<&Tenant>,
        f: F,
    ) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&BackendBox) -> RResult<T, PluginError> + Send + 'static,
    {
        self.call_within(operation, self.settings.timeout, tenant, f)
            .await
    }

    /// [`Instance::call`] with another deadline.
    async fn call_within<T, F>(
        &self,
        operation: &'static str,
        timeout: Duration,
        tenant: Option<&Tenant>,
        f: F,
    ) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&BackendBox) -> RResult<T, PluginError> + Send + 'static,
    {
        self.dispatch(
            operation,
            timeout,
            tenant,
            move |backend, naming, permit| {
                let task = tokio::task::spawn_blocking(move || {
                    // The permit is released only when the plugin returns, however long it hangs.
                    let _permit = permit;
                    if let Some(naming) = naming {
                        naming.tell(&backend);
                    }
                    f(&backend)
                });
                async move { task.await.map_err(|join| join.to_string()) }
            },
        )
        .await
    }

    /// Starts a batch on a [`capability::NONBLOCKING`] plugin from this async thread (no
    /// blocking thread per call) and waits for its completion, within the bulkhead and the
    /// deadline, as [`Instance::call`].
    async fn start_batch<F>(
        &self,
        operation: &'static str,
        tenant: &Tenant,
        start: F,
    ) -> Result<RVec<BatchItem>, Error>
    where
        F: FnOnce(&BackendBox, BatchDoneBox),
    {
        self.dispatch(
            operation,
            self.settings.timeout,
            Some(tenant),
            move |backend, naming, permit| {
                let (sender, receiver) = oneshot::channel();
                let done = BatchDone_TO::from_value(
                    Completion {
                        sender: Mutex::new(Some(sender)),
                        _permit: permit,
                    },
                    abi_stable::sabi_trait::TD_Opaque,
                );
                if let Some(naming) = naming {
                    naming.tell(&backend);
                }
                start(&backend, done);
                async move {
                    receiver
                        .await
                        .map(RResult::ROk)
                        .map_err(|_| "the plugin dropped the call without completing it".to_owned())
                }
            },
        )
        .await
    }

    /// One encryption or decryption: started as a one-request batch on a
    /// [`capability::NONBLOCKING`] plugin, a blocking call on others.
    async fn single<R: Send + 'static>(
        &self,
        operation: &'static str,
        tenant: &Tenant,
        request: R,
        start: fn(&BackendBox, RVec<R>, BatchDoneBox),
        blocking: fn(&BackendBox, R) -> RResult<RVec<u8>, PluginError>,
    ) -> Result<RVec<u8>, Error> {
        if !self.nonblocking() {
            return self
                .call(operation, Some(tenant), move |b| blocking(b, request))
                .await;
        }
        let mut results = self
            .start_batch(operation, tenant, move |b, done| {
                start(b, RVec::from(vec![request]), done)
            })
            .await?;
        self.check_batch_len(operation, 1, &mut results)?;
        match results.pop() {
            Some(RResult::ROk(bytes)) => Ok(bytes),
            Some(RResult::RErr(error)) => {
                self.metrics
                    .count_failed_call(&self.settings.name, operation);
                Err(map_plugin_error(&self.settings.name, operation, error))
            }
            None => Err(self.unavailable()),
        }
    }

    /// A batch of encryptions or decryptions, started on a [`capability::NONBLOCKING`]
    /// plugin, a blocking call on others; one result per request or an error.
    async fn batch<R: Send + 'static>(
        &self,
        operation: &'static str,
        tenant: &Tenant,
        batch: RVec<R>,
        start: fn(&BackendBox, RVec<R>, BatchDoneBox),
        blocking: fn(&BackendBox, RVec<R>) -> RVec<BatchItem>,
    ) -> Result<RVec<BatchItem>, Error> {
        let expected = batch.len();
        let mut results = if self.nonblocking() {
            self.start_batch(operation, tenant, move |b, done| start(b, batch, done))
                .await?
        } else {
            self.call(operation, Some(tenant), move |b| {
                RResult::ROk(blocking(b, batch))
            })
            .await?
        };
        self.check_batch_len(operation, expected, &mut results)?;
        Ok(results)
    }

    /// The bulkhead, the deadline, error mapping and metrics around one plugin call: `run`
    /// gets the backend, the tenant naming still due and the permit, and returns what the
    /// plugin answered (`Err` when the call itself failed: a panic, a dropped completion).
    async fn dispatch<T, R, Fut>(
        &self,
        operation: &'static str,
        timeout: Duration,
        tenant: Option<&Tenant>,
        run: R,
    ) -> Result<T, Error>
    where
        R: FnOnce(Arc<BackendBox>, Option<Naming>, OwnedSemaphorePermit) -> Fut,
        Fut: Future<Output = Result<RResult<T, PluginError>, String>>,
    {
        let backend = self.backend.clone().ok_or_else(|| self.unavailable())?;
        let naming = tenant.and_then(|tenant| self.naming(tenant));
        let name = &self.settings.name;
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + timeout;
        let outcome = async {
            let permit = tokio::time::timeout_at(deadline, self.permits.clone().acquire_owned())
                .await
                .map_err(|_| {
                    Error::Unavailable(format!(
                        "backend instance \"{name}\" is saturated: no free slot within {timeout:?}"
                    ))
                })?
                .map_err(|_| self.unavailable())?;
            match tokio::time::timeout_at(deadline, run(backend, naming, permit)).await {
                Err(_) => Err(Error::Unavailable(format!(
                    "backend instance \"{name}\" did not answer within {timeout:?}"
                ))),
                Ok(Err(failure)) => Err(Error::internal(format!(
                    "backend instance \"{name}\" call failed: {failure}"
                ))),
                Ok(Ok(RResult::ROk(value))) => Ok(value),
                Ok(Ok(RResult::RErr(error))) => Err(map_plugin_error(name, operation, error)),
            }
        }
        .await;
        self.metrics
            .observe(name, operation, started.elapsed(), outcome.is_ok());
        outcome
    }
}

/// Maps a plugin error to the broker's error kinds.
pub fn map_plugin_error(instance: &str, operation: &str, error: PluginError) -> Error {
    let message = error.message.to_string();
    match error.kind {
        ErrorKind::INVALID_REQUEST
        | ErrorKind::KEY_NOT_FOUND
        | ErrorKind::INVALID_CIPHERTEXT
        | ErrorKind::PAYLOAD_TOO_LARGE
        | ErrorKind::INVALID_CONFIG => Error::InvalidRequest(message),
        ErrorKind::ACCESS_DENIED => Error::BackendDenied(message),
        ErrorKind::UNAVAILABLE => Error::Unavailable(format!(
            "backend instance \"{instance}\" is unavailable: {message}"
        )),
        _ => Error::internal(format!(
            "backend instance \"{instance}\" failed in {operation}: {message}"
        )),
    }
}

fn encrypt_request(tenant: &Tenant, request: &BackendEncrypt<'_>) -> EncryptRequest {
    EncryptRequest {
        tenant_id: RString::from(tenant.id.to_string()),
        key_reference: RString::from(request.reference),
        plaintext: RVec::from(request.plaintext),
        aad: RVec::from(request.aad),
        iv: RVec::from(&request.iv[..]),
    }
}

fn decrypt_request(tenant: &Tenant, request: &BackendDecrypt<'_>) -> DecryptRequest {
    DecryptRequest {
        tenant_id: RString::from(tenant.id.to_string()),
        key_reference: RString::from(request.reference),
        ciphertext: RVec::from(request.ciphertext),
        aad: RVec::from(request.aad),
    }
}

fn sign_request(tenant: &Tenant, request: &BackendSign<'_>) -> SignRequest {
    SignRequest {
        tenant_id: RString::from(tenant.id.to_string()),
        key_reference: RString::from(request.reference),
        digest: RVec::from(request.digest),
        hash_algorithm: RString::from(request.hash_algorithm),
        signature_algorithm: RString::from(request.signature_algorithm),
    }
}

/// A verification request carrying a sign request's fields (the signature is set apart).
fn verify_fields(sign: SignRequest) -> VerifyRequest {
    VerifyRequest {
        tenant_id: sign.tenant_id,
        key_reference: sign.key_reference,
        digest: sign.digest,
        hash_algorithm: sign.hash_algorithm,
        signature_algorithm: sign.signature_algorithm,
        signature: RVec::new(),
    }
}

/// Takes a plaintext out of an `RVec`, zeroizing the plugin-allocated buffer.
fn take_secret(mut value: RVec<u8>) -> Zeroizing<Vec<u8>> {
    let out = Zeroizing::new(value.as_slice().to_vec());
    value.as_mut_slice().zeroize();
    out
}

#[async_trait]
impl BackendInstance for Instance {
    fn name(&self) -> &str {
        &self.settings.name
    }

    fn allows_tenant(&self, tenant_name: &str) -> bool {
        self.settings
            .tenants
            .iter()
            .any(|t| t == "*" || t == tenant_name)
    }

    fn cache(&self) -> &DekCache {
        &self.cache
    }

    fn on_unavailable(&self) -> OnUnavailable {
        self.settings.on_unavailable
    }

    fn check_available(&self, reference: &str) -> Result<(), Error> {
        if self.load_error.is_some() {
            return Err(self.unavailable());
        }
        // The plugin's reason is shown; a failed health check's stays in the log.
        if let Some(reason) = self.availability.reported_reason() {
            return Err(Error::Unavailable(format!(
                "backend instance \"{}\" is unavailable: {reason}",
                self.settings.name
            )));
        }
        if self.availability.reason().is_some() {
            return Err(self.unavailable());
        }
        if let Some(reason) = (!reference.is_empty())
            .then(|| self.availability.key_down(reference))
            .flatten()
        {
            let mut message = format!(
                "a key of backend instance \"{}\" is unavailable",
                self.settings.name
            );
            if !reason.is_empty() {
                message.push_str(": ");
                message.push_str(&reason);
            }
            return Err(Error::Unavailable(message));
        }
        Ok(())
    }

    fn supports_direct(&self) -> bool {
        self.has_capability(capability::DIRECT)
    }

    fn supports_sign(&self) -> bool {
        self.has_capability(capability::SIGN)
    }

    fn supports_bind(&self) -> bool {
        self.has_capability(capability::BIND_EXISTING)
    }

    fn supports_generate_data_key(&self) -> bool {
        self.has_capability(capability::GENERATE_DATA_KEY)
    }

    fn may_bind(&self, tenant_name: &str, backend_key: &str) -> bool {
        self.settings.bind.get(tenant_name).is_some_and(|patterns| {
            patterns
                .iter()
                .any(|pattern| keybroker_core::auth::jwt::glob_match(pattern, backend_key))
        })
    }

    async fn bind_key(
        &self,
        tenant: &Tenant,
        key_id: &str,
        key_type: &str,
        backend_key: &str,
    ) -> Result<String, Error> {
        let request = BindKeyRequest {
            tenant_id: RString::from(tenant.id.to_string()),
            key_id: RString::from(key_id),
            key_type: RString::from(key_type),
            backend_key: RString::from(backend_key),
        };
        let handle = self
            .call_within(
                "bind_key",
                self.settings.create_timeout,
                Some(tenant),
                move |b| b.bind_key(request),
            )
            .await?;
        Ok(handle.reference.into_string())
    }

    async fn sign(&self, tenant: &Tenant, request: BackendSign<'_>) -> Result<Vec<u8>, Error> {
        let request = sign_request(tenant, &request);
        let signature = self
            .call("sign", Some(tenant), move |b| b.sign(request))
            .await?;
        Ok(signature.into_vec())
    }

    async fn verify(&self, tenant: &Tenant, request: BackendVerify<'_>) -> Result<bool, Error> {
        let request = VerifyRequest {
            signature: RVec::from(request.signature),
            ..verify_fields(sign_request(tenant, &request.sign))
        };
        self.call("verify", Some(tenant), move |b| b.verify(request))
            .await
    }

    async fn public_key(&self, tenant: &Tenant, reference: &str) -> Result<String, Error> {
        let tenant_id = RString::from(tenant.id.to_string());
        let reference = RString::from(reference);
        let pem = self
            .call("public_key", Some(tenant), move |b| {
                b.public_key(tenant_id, reference)
            })
            .await?;
        Ok(pem.into_string())
    }

    async fn generate_data_key(
        &self,
        tenant: &Tenant,
        reference: &str,
        aad: &[u8],
    ) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), Error> {
        let request = GenerateDataKeyRequest {
            tenant_id: RString::from(tenant.id.to_string()),
            key_reference: RString::from(reference),
            aad: RVec::from(aad),
            length: DATA_KEY_LEN,
        };
        let key = self
            .call("generate_data_key", Some(tenant), move |b| {
                b.generate_data_key(request)
            })
            .await?;
        let plaintext = take_secret(key.plaintext);
        if plaintext.len() != DATA_KEY_LEN as usize {
            return Err(Error::internal(format!(
                "backend instance \"{}\" made a data key of {} bytes, not {DATA_KEY_LEN}",
                self.settings.name,
                plaintext.len()
            )));
        }
        Ok((plaintext, key.wrapped.into_vec()))
    }

    async fn create_key(
        &self,
        tenant: &Tenant,
        key_id: &str,
        key_type: &str,
    ) -> Result<String, Error> {
        let request = CreateKeyRequest {
            tenant_id: RString::from(tenant.id.to_string()),
            key_id: RString::from(key_id),
            key_type: RString::from(key_type),
        };
        let handle = self
            .call_within(
                "create_key",
                self.settings.create_timeout,
                Some(tenant),
                move |b| b.create_key(request),
            )
            .await?;
        Ok(handle.reference.into_string())
    }

    async fn delete_key(&self, tenant: &Tenant, reference: &str) -> Result<(), Error> {
        let tenant_id = RString::from(tenant.id.to_string());
        let reference = RString::from(reference);
        self.call("delete_key", Some(tenant), move |b| {
            b.delete_key(tenant_id, reference)
        })
        .await
    }

    async fn encrypt(
        &self,
        tenant: &Tenant,
        request: BackendEncrypt<'_>,
    ) -> Result<Vec<u8>, Error> {
        // Ownership of the plaintext copy passes to the plugin, which zeroizes it.
        let request = encrypt_request(tenant, &request);
        let result = self
            .single(
                "encrypt",
                tenant,
                request,
                |b, batch, done| b.encrypt_batch_start(batch, done),
                |b, request| b.encrypt(request),
            )
            .await?;
        Ok(result.into_vec())
    }

    async fn decrypt(
        &self,
        tenant: &Tenant,
        request: BackendDecrypt<'_>,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let request = decrypt_request(tenant, &request);
        let result = self
            .single(
                "decrypt",
                tenant,
                request,
                |b, batch, done| b.decrypt_batch_start(batch, done),
                |b, request| b.decrypt(request),
            )
            .await?;
        Ok(take_secret(result))
    }

    async fn encrypt_batch(
        &self,
        tenant: &Tenant,
        requests: Vec<BackendEncrypt<'_>>,
    ) -> Result<Vec<Result<Vec<u8>, Error>>, Error> {
        let batch: RVec<EncryptRequest> = requests
            .iter()
            .map(|r| encrypt_request(tenant, r))
            .collect();
        let name = self.settings.name.clone();
        let results = self
            .batch(
                "encrypt_batch",
                tenant,
                batch,
                |b, batch, done| b.encrypt_batch_start(batch, done),
                |b, batch| b.encrypt_batch(batch),
            )
            .await?;
        let results: Vec<_> = results
            .into_iter()
            .map(|r| {
                r.into_result()
                    .map(RVec::into_vec)
                    .map_err(|e| map_plugin_error(&name, "encrypt", e))
            })
            .collect();
        if results.iter().any(Result::is_err) {
            self.metrics.count_failed_call(&name, "encrypt_batch");
        }
        Ok(results)
    }

    async fn decrypt_batch(
        &self,
        tenant: &Tenant,
        requests: Vec<BackendDecrypt<'_>>,
    ) -> Result<Vec<Result<Zeroizing<Vec<u8>>, Error>>, Error> {
        let batch: RVec<DecryptRequest> = requests
            .iter()
            .map(|r| decrypt_request(tenant, r))
            .collect();
        let name = self.settings.name.clone();
        let results = self
            .batch(
                "decrypt_batch",
                tenant,
                batch,
                |b, batch, done| b.decrypt_batch_start(batch, done),
                |b, batch| b.decrypt_batch(batch),
            )
            .await?;
        let results: Vec<_> = results
            .into_iter()
            .map(|r| {
                r.into_result()
                    .map(take_secret)
                    .map_err(|e| map_plugin_error(&name, "decrypt", e))
            })
            .collect();
        if results.iter().any(Result::is_err) {
            self.metrics.count_failed_call(&name, "decrypt_batch");
        }
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use keybroker_plugin_abi::{
        into_ffi, not_supported, Backend, BatchCompletion, HostServices_TO, KeyHandle,
    };

    use super::*;

    /// What the host told the plugin, in order: `name <id> <name>` and `<operation> <id>`.
    type Journal = Arc<Mutex<Vec<String>>>;

    /// A plugin recording the calls it gets; `status` answers `status` as given.
    struct Recording {
        journal: Journal,
        status: Result<String, PluginError>,
    }

    impl Recording {
        fn record(&self, entry: String) {
            self.journal.lock().unwrap().push(entry);
        }
    }

    impl Backend for Recording {
        fn info(&self) -> BackendInfo {
            BackendInfo {
                name: "recording".into(),
                version: "1".into(),
                capabilities: capability::ENVELOPE,
                max_payload: 1024,
            }
        }
        fn create_key(&self, request: CreateKeyRequest) -> Result<KeyHandle, PluginError> {
            self.record(format!("create_key {}", request.tenant_id));
            Ok(KeyHandle {
                reference: "ref".into(),
            })
        }
        fn encrypt(&self, request: EncryptRequest) -> Result<Vec<u8>, PluginError> {
            self.record(format!("encrypt {}", request.tenant_id));
            Ok(request.plaintext.into_vec())
        }
        fn decrypt(&self, request: DecryptRequest) -> Result<Vec<u8>, PluginError> {
            self.record(format!("decrypt {}", request.tenant_id));
            Ok(request.ciphertext.into_vec())
        }
        fn health(&self) -> Result<(), PluginError> {
            Ok(())
        }
        fn status(&self) -> Result<String, PluginError> {
            self.status.clone()
        }
        fn name_tenant(&self, tenant_id: &str, tenant_name: &str) {
            self.record(format!("name {tenant_id} {tenant_name}"));
        }
    }

    fn settings() -> InstanceSettings {
        InstanceSettings {
            name: "acme-agent".to_owned(),
            tenants: vec!["*".to_owned()],
            timeout: Duration::from_secs(5),
            create_timeout: Duration::from_secs(5),
            concurrency: 4,
            on_unavailable: OnUnavailable::Evict,
            bind: BTreeMap::new(),
        }
    }

    /// A loaded instance of `Recording`, its journal and its host handle.
    fn instance(status: Result<String, PluginError>) -> (Instance, Journal, HostHandle) {
        let settings = settings();
        let (handle, cache, availability) =
            Instance::prepare(&settings, Duration::from_secs(60), 16);
        let journal = Journal::default();
        let backend = into_ffi(Recording {
            journal: journal.clone(),
            status,
        });
        let info = backend.info().unwrap();
        let instance = Instance::loaded(
            settings,
            backend,
            info,
            cache,
            availability,
            Arc::new(BackendMetrics::default()),
        );
        (instance, journal, handle)
    }

    fn tenant(name: &str) -> Tenant {
        Tenant {
            id: TenantId::random(),
            name: Arc::from(name),
        }
    }

    fn encrypt(reference: &str) -> BackendEncrypt<'_> {
        BackendEncrypt {
            reference,
            plaintext: b"data",
            aad: b"",
            iv: [0; 12],
        }
    }

    #[tokio::test]
    async fn the_plugin_learns_each_tenants_name_once_before_its_first_call() {
        let (instance, journal, _) = instance(Err(not_supported("status")));
        let acme = tenant("acme");
        let globex = tenant("globex");
        let reference = instance
            .create_key(&acme, "k", "aes256-gcm96")
            .await
            .unwrap();
        instance.encrypt(&acme, encrypt(&reference)).await.unwrap();
        instance
            .decrypt_batch(
                &globex,
                vec![BackendDecrypt {
                    reference: &reference,
                    ciphertext: b"x",
                    aad: b"",
                }],
            )
            .await
            .unwrap();
        instance
            .encrypt(&Tenant::root(), encrypt(&reference))
            .await
            .unwrap();
        instance
            .encrypt(&globex, encrypt(&reference))
            .await
            .unwrap();
        let (acme, globex, root) = (acme.id, globex.id, TenantId::ROOT);
        assert_eq!(
            *journal.lock().unwrap(),
            vec![
                format!("name {acme} acme"),
                format!("create_key {acme}"),
                format!("encrypt {acme}"),
                format!("name {globex} globex"),
                format!("decrypt {globex}"),
                format!("name {root} root"),
                format!("encrypt {root}"),
                format!("encrypt {globex}"),
            ]
        );
    }

    #[tokio::test]
    async fn status_is_the_plugins_json_object_or_none() {
        let (reporting, _, _) = instance(Ok(r#"{"agents":[{"id":"dc1"}]}"#.to_owned()));
        assert_eq!(
            reporting.status().await.unwrap(),
            Some(serde_json::json!({"agents": [{"id": "dc1"}]}))
        );
        let (silent, _, _) = instance(Err(not_supported("status")));
        assert_eq!(silent.status().await.unwrap(), None);
        let (garbled, _, _) = instance(Ok("agents: none".to_owned()));
        assert_eq!(garbled.status().await.unwrap(), None, "not JSON");
        let (listed, _, _) = instance(Ok("[]".to_owned()));
        assert_eq!(listed.status().await.unwrap(), None, "not an object");
        let (failing, _, _) = instance(Err(PluginError::unavailable("no agent")));
        assert!(matches!(
            failing.status().await,
            Err(Error::Unavailable(message)) if message.contains("no agent")
        ));
    }

    #[tokio::test]
    async fn unavailable_answers_carry_the_plugins_reason_but_not_a_health_checks() {
        let (instance, _, handle) = instance(Err(not_supported("status")));
        let host = HostServices_TO::from_value(handle, abi_stable::sabi_trait::TD_Opaque);
        host.set_instance_available(
            false,
            "customer key unavailable (no agent connected)".into(),
        );
        assert_eq!(
            unavailable_message(&instance),
            "backend instance \"acme-agent\" is unavailable: customer key unavailable (no agent \
             connected)"
        );
        host.set_instance_available(true, "".into());
        assert!(instance.check_available("").is_ok());

        // A failed health check's reason (it may name hosts or credentials) stays in the log.
        if let Ok(mut health) = instance.availability.health_error.write() {
            *health = Some("cannot reach kms.internal:443 as role ops-admin".to_owned());
        }
        assert_eq!(
            unavailable_message(&instance),
            "backend instance \"acme-agent\" is unavailable"
        );
    }

    /// Batches a [`Deferred`] plugin has started and not completed: the requests' plaintexts
    /// (or ciphertexts) and the completion.
    type Held = Arc<Mutex<Vec<(Vec<Vec<u8>>, BatchCompletion)>>>;

    /// A `NONBLOCKING` plugin that holds every batch it is given until the test completes
    /// it, recording the thread each start ran on.
    struct Deferred {
        held: Held,
        threads: Arc<Mutex<Vec<std::thread::ThreadId>>>,
    }

    impl Deferred {
        fn hold(&self, items: Vec<Vec<u8>>, done: BatchCompletion) {
            self.threads
                .lock()
                .unwrap()
                .push(std::thread::current().id());
            self.held.lock().unwrap().push((items, done));
        }
    }

    impl Backend for Deferred {
        fn info(&self) -> BackendInfo {
            BackendInfo {
                name: "deferred".into(),
                version: "1".into(),
                capabilities: capability::DIRECT | capability::NONBLOCKING,
                max_payload: 1024,
            }
        }
        fn create_key(&self, _: CreateKeyRequest) -> Result<KeyHandle, PluginError> {
            Err(not_supported("keys"))
        }
        fn encrypt(&self, _: EncryptRequest) -> Result<Vec<u8>, PluginError> {
            Err(PluginError::internal("the host must start batches instead"))
        }
        fn decrypt(&self, _: DecryptRequest) -> Result<Vec<u8>, PluginError> {
            Err(PluginError::internal("the host must start batches instead"))
        }
        fn health(&self) -> Result<(), PluginError> {
            Ok(())
        }
        fn encrypt_batch_start(&self, requests: Vec<EncryptRequest>, done: BatchCompletion) {
            let items = requests.into_iter().map(|r| r.plaintext.into_vec());
            self.hold(items.collect(), done);
        }
        fn decrypt_batch_start(&self, requests: Vec<DecryptRequest>, done: BatchCompletion) {
            let items = requests.into_iter().map(|r| r.ciphertext.into_vec());
            self.hold(items.collect(), done);
        }
    }

    /// A deadline no call of these tests reaches unless the test means it to: the plugin
    /// completes from the test, which a loaded machine may delay by whole seconds.
    const PATIENT: Duration = Duration::from_secs(60);

    /// A loaded `Deferred` instance with this deadline and 2 permits.
    fn deferred(
        timeout: Duration,
    ) -> (Arc<Instance>, Held, Arc<Mutex<Vec<std::thread::ThreadId>>>) {
        let settings = InstanceSettings {
            timeout,
            concurrency: 2,
            ..settings()
        };
        let (_, cache, availability) = Instance::prepare(&settings, Duration::from_secs(60), 16);
        let held = Held::default();
        let threads = Arc::default();
        let backend = into_ffi(Deferred {
            held: held.clone(),
            threads: Arc::clone(&threads),
        });
        let info = backend.info().unwrap();
        let instance = Instance::loaded(
            settings,
            backend,
            info,
            cache,
            availability,
            Arc::new(BackendMetrics::default()),
        );
        (Arc::new(instance), held, threads)
    }

    /// Waits until the plugin holds `count` batches, then takes them.
    async fn take_held(held: &Held, count: usize) -> Vec<(Vec<Vec<u8>>, BatchCompletion)> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if held.lock().unwrap().len() >= count {
                return held.lock().unwrap().drain(..).collect();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!(
            "the plugin was given {} batches in 30 s, not {count}",
            held.lock().unwrap().len()
        );
    }

    #[tokio::test]
    async fn a_nonblocking_plugin_is_started_on_the_async_thread_and_completes_from_its_own() {
        let (instance, held, threads) = deferred(PATIENT);
        let acme = tenant("acme");
        let call = tokio::spawn({
            let instance = instance.clone();
            let acme = acme.clone();
            async move {
                let requests = vec![encrypt("ref"), encrypt("ref")];
                instance.encrypt_batch(&acme, requests).await
            }
        });
        let mut batches = take_held(&held, 1).await;
        let (items, done) = batches.pop().unwrap();
        assert_eq!(items, vec![b"data".to_vec(), b"data".to_vec()]);
        // Completed from a thread of the plugin's own, as a gateway's reader would.
        std::thread::spawn(move || {
            done.complete(vec![
                Ok(b"one".to_vec()),
                Err(PluginError::invalid_ciphertext("bad")),
            ])
        })
        .join()
        .unwrap();
        let results = call.await.unwrap().unwrap();
        assert_eq!(results[0].as_ref().unwrap(), b"one");
        assert!(matches!(&results[1], Err(Error::InvalidRequest(m)) if m == "bad"));
        // The single-request form goes through the same entry; no blocking thread ran it.
        let single = tokio::spawn({
            let instance = instance.clone();
            async move { instance.encrypt(&acme, encrypt("ref")).await }
        });
        let (_, done) = take_held(&held, 1).await.pop().unwrap();
        done.complete(vec![Err(PluginError::unavailable("no agent"))]);
        assert!(matches!(
            single.await.unwrap(),
            Err(Error::Unavailable(m)) if m.ends_with("is unavailable: no agent")
        ));
        let test_thread = std::thread::current().id();
        assert!(threads.lock().unwrap().iter().all(|t| *t == test_thread));
    }

    #[tokio::test]
    async fn a_started_call_holds_its_permit_until_the_plugin_completes_or_drops_it() {
        // The deadline is the fault under test here: the plugin never answers these calls.
        let (instance, held, _) = deferred(Duration::from_millis(300));
        let acme = tenant("acme");
        let decrypt = |instance: Arc<Instance>, acme: Tenant| async move {
            let request = BackendDecrypt {
                reference: "ref",
                ciphertext: b"sealed",
                aad: b"",
            };
            instance.decrypt(&acme, request).await
        };
        // Two calls the plugin never answers: each gives up at the deadline...
        let (first, second) = tokio::join!(
            decrypt(instance.clone(), acme.clone()),
            decrypt(instance.clone(), acme.clone())
        );
        for result in [first, second] {
            assert!(
                matches!(&result, Err(Error::Unavailable(m)) if m.contains("did not answer")),
                "{result:?}"
            );
        }
        // ...but their permits stay taken while the plugin holds them: the bulkhead is full.
        let saturated = decrypt(instance.clone(), acme.clone()).await;
        assert!(
            matches!(&saturated, Err(Error::Unavailable(m)) if m.contains("saturated")),
            "{saturated:?}"
        );
        // A late completion goes nowhere (its plaintext is zeroized) and frees its permit; a
        // dropped one frees the other.
        let mut late = take_held(&held, 2).await;
        late.pop()
            .unwrap()
            .1
            .complete(vec![Ok(b"plaintext".to_vec())]);
        drop(late);
        // Both permits are free again: the next call reaches the plugin (however it ends).
        let call = tokio::spawn(decrypt(instance.clone(), acme.clone()));
        drop(take_held(&held, 1).await);
        let _ = call.await.unwrap();
        // The plugin completes the next calls from the test: an instance whose deadline the
        // test cannot reach, however slowly it runs.
        let (instance, held, _) = deferred(PATIENT);
        let call = tokio::spawn(decrypt(instance.clone(), acme.clone()));
        let (_, done) = take_held(&held, 1).await.pop().unwrap();
        drop(done);
        assert!(matches!(
            call.await.unwrap(),
            Err(Error::Internal { context: m, .. }) if m.contains("dropped the call")
        ));
        // A completion with the wrong number of results is refused whole.
        let call = tokio::spawn(decrypt(instance.clone(), acme.clone()));
        let (_, done) = take_held(&held, 1).await.pop().unwrap();
        done.complete(vec![Ok(b"a".to_vec()), Ok(b"b".to_vec())]);
        assert!(matches!(
            call.await.unwrap(),
            Err(Error::Internal { context: m, .. }) if m.contains("2 results for 1 requests")
        ));
    }

    fn unavailable_message(instance: &Instance) -> String {
        match instance.check_available("") {
            Err(Error::Unavailable(message)) => message,
            other => panic!("expected unavailable, got {other:?}"),
        }
    }
}
