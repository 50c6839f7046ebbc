//! One-line calls through the ABI for a plugin's own tests (each panics or returns the
//! plugin's error as the test needs), so every plugin's tests speak the same way.

use std::{
    sync::{
        mpsc::{sync_channel, SyncSender},
        Mutex,
    },
    time::{Duration, Instant},
};

use keybroker_plugin_abi::{
    abi_stable::{
        sabi_trait::TD_Opaque,
        std_types::{RString, RVec},
    },
    Backend, BackendBox, BatchDone, BatchDone_TO, BatchItem, BindKeyRequest, CreateKeyRequest,
    DecryptRequest, EncryptRequest, ErrorKind, HostBox, PluginError, SignRequest, VerifyRequest,
};

/// How long [`until_available`] keeps trying: a loaded 2-core machine can keep a service
/// (moto, the Azure fake) from answering a short timeout for whole seconds.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Runs `call` until it succeeds, for up to [`PATIENCE`]: on an instance with a short
/// timeout, any call may be UNAVAILABLE on a loaded machine (and after a fault, until the
/// service answers again). Any other error fails the test at once.
pub fn until_available<T>(what: &str, mut call: impl FnMut() -> Result<T, PluginError>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match call() {
            Ok(value) => return value,
            Err(error) if error.kind == ErrorKind::UNAVAILABLE && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(error) => panic!("{what}: {error}"),
        }
    }
}

/// The tenant the plugins' own tests make their keys for.
pub const TENANT: &str = "3f6c1b0e-8a2d-4c59-9e71-5b0d2a4c8e13";
/// Another tenant, which must never reach [`TENANT`]'s keys.
pub const OTHER_TENANT: &str = "c81e9d47-2b6a-4f03-a5d8-7e9c0b1f2a64";

/// A plugin instance as the ABI trait object the broker uses; panics if the plugin's
/// constructor refused (`new_backend(config, host)`'s result).
#[track_caller]
pub fn instance<B: Backend>(built: Result<B, PluginError>) -> BackendBox {
    let backend = built.unwrap_or_else(|error| panic!("new_backend: {error}"));
    keybroker_plugin_abi::into_ffi(backend)
}

/// An ABI string.
pub fn rstring(text: &str) -> RString {
    RString::from(text)
}

/// Creates a key with the broker's key id `key_id`; panics if the plugin refuses.
pub fn create_with_id(backend: &BackendBox, tenant: &str, key_id: &str, key_type: &str) -> String {
    backend
        .create_key(CreateKeyRequest {
            tenant_id: rstring(tenant),
            key_id: rstring(key_id),
            key_type: rstring(key_type),
        })
        .into_result()
        .unwrap_or_else(|error| panic!("create_key {key_type}: {error}"))
        .reference
        .into_string()
}

/// Creates a key with key id `key-<key_type>`; panics if the plugin refuses.
pub fn create(backend: &BackendBox, tenant: &str, key_type: &str) -> String {
    create_with_id(backend, tenant, &format!("key-{key_type}"), key_type)
}

/// An encryption request (a zero IV: the plugins that take the broker's IV get a valid one
/// from the conformance suite; these tests only need the call).
pub fn encrypt_request(
    tenant: &str,
    reference: &str,
    plaintext: &[u8],
    aad: &[u8],
) -> EncryptRequest {
    EncryptRequest {
        tenant_id: rstring(tenant),
        key_reference: rstring(reference),
        plaintext: RVec::from(plaintext),
        aad: RVec::from(aad),
        iv: RVec::from(vec![0u8; 12]),
    }
}

/// Encrypts (wraps).
pub fn encrypt(
    backend: &BackendBox,
    tenant: &str,
    reference: &str,
    plaintext: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, PluginError> {
    backend
        .encrypt(encrypt_request(tenant, reference, plaintext, aad))
        .into_result()
        .map(RVec::into_vec)
}

/// Decrypts (unwraps).
pub fn decrypt(
    backend: &BackendBox,
    tenant: &str,
    reference: &str,
    ciphertext: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, PluginError> {
    backend
        .decrypt(DecryptRequest {
            tenant_id: rstring(tenant),
            key_reference: rstring(reference),
            ciphertext: RVec::from(ciphertext),
            aad: RVec::from(aad),
        })
        .into_result()
        .map(RVec::into_vec)
}

/// The PEM public key of `reference`.
pub fn public_key(
    backend: &BackendBox,
    tenant: &str,
    reference: &str,
) -> Result<String, PluginError> {
    backend
        .public_key(rstring(tenant), rstring(reference))
        .into_result()
        .map(RString::into_string)
}

/// Signs `digest` (of `hash`, e.g. `sha2-256`) with `reference` and `scheme` (`pss`,
/// `pkcs1v15`, or "" for ECDSA).
pub fn sign(
    backend: &BackendBox,
    tenant: &str,
    reference: &str,
    hash: &str,
    scheme: &str,
    digest: &[u8],
) -> Result<Vec<u8>, PluginError> {
    backend
        .sign(SignRequest {
            tenant_id: rstring(tenant),
            key_reference: rstring(reference),
            digest: RVec::from(digest),
            hash_algorithm: rstring(hash),
            signature_algorithm: rstring(scheme),
        })
        .into_result()
        .map(RVec::into_vec)
}

/// Verifies `signature` over `digest` (see [`sign`]).
pub fn verify(
    backend: &BackendBox,
    tenant: &str,
    reference: &str,
    hash: &str,
    scheme: &str,
    digest: &[u8],
    signature: &[u8],
) -> Result<bool, PluginError> {
    backend
        .verify(VerifyRequest {
            tenant_id: rstring(tenant),
            key_reference: rstring(reference),
            digest: RVec::from(digest),
            hash_algorithm: rstring(hash),
            signature_algorithm: rstring(scheme),
            signature: RVec::from(signature),
        })
        .into_result()
}

/// Binds `backend_key` for `tenant` as key id `bound`; returns the reference.
pub fn bind(
    backend: &BackendBox,
    tenant: &str,
    backend_key: &str,
    key_type: &str,
) -> Result<String, PluginError> {
    backend
        .bind_key(BindKeyRequest {
            tenant_id: rstring(tenant),
            key_id: rstring("bound"),
            key_type: rstring(key_type),
            backend_key: rstring(backend_key),
        })
        .into_result()
        .map(|handle| handle.reference.into_string())
}

/// Binds `backend_key` for [`TENANT`] as key id `bound`; returns the reference.
pub fn bind_for_test_tenant(
    backend: &BackendBox,
    backend_key: &str,
    key_type: &str,
) -> Result<String, PluginError> {
    bind(backend, TENANT, backend_key, key_type)
}

/// Deletes `reference` as `tenant`.
pub fn delete(backend: &BackendBox, tenant: &str, reference: &str) -> Result<(), PluginError> {
    backend
        .delete_key(rstring(tenant), rstring(reference))
        .into_result()
}

/// Encrypts `plaintext` under `reference` without AAD, and asserts it decrypts back.
#[track_caller]
pub fn assert_round_trip(backend: &BackendBox, tenant: &str, reference: &str, plaintext: &[u8]) {
    let sealed = encrypt(backend, tenant, reference, plaintext, b"")
        .unwrap_or_else(|error| panic!("encrypt: {error}"));
    let opened = decrypt(backend, tenant, reference, &sealed, b"")
        .unwrap_or_else(|error| panic!("decrypt: {error}"));
    assert_eq!(opened, plaintext);
}

/// The signature schemes of a key type: `pss` and `pkcs1v15` for RSA, "" for ECDSA.
pub fn signature_schemes(key_type: &str) -> &'static [&'static str] {
    if key_type.starts_with("rsa") {
        &["pss", "pkcs1v15"]
    } else {
        &[""]
    }
}

/// The message of the `INVALID_CONFIG` error a plugin gave for the config `text`; panics if
/// it accepted the config or gave another kind of error.
#[track_caller]
pub fn invalid_config_message<T>(text: &str, result: Result<T, PluginError>) -> String {
    let error = result.err().unwrap_or_else(|| panic!("{text} accepted"));
    assert_eq!(error.kind, ErrorKind::INVALID_CONFIG, "{error}");
    error.message.into_string()
}

/// Asserts `KEY_NOT_FOUND` whose message does not name `owner` (another tenant's key is
/// never said to be someone's).
#[track_caller]
pub fn assert_hides_owner<T: std::fmt::Debug>(result: Result<T, PluginError>, owner: &str) {
    let error = assert_error(result, ErrorKind::KEY_NOT_FOUND, "");
    assert!(!error.message.contains(owner), "{error}");
}

/// Asserts `KEY_NOT_FOUND`, whatever the message; returns the error.
#[track_caller]
pub fn assert_key_not_found<T: std::fmt::Debug>(result: Result<T, PluginError>) -> PluginError {
    assert_error(result, ErrorKind::KEY_NOT_FOUND, "")
}

/// A plugin instance built by `new_backend` from `config` (its JSON text) with a
/// [`RecordingHost`](crate::RecordingHost) whose lines nobody reads, as the ABI trait
/// object; panics if the plugin refuses.
#[track_caller]
pub fn instance_with<B: Backend>(
    new_backend: impl FnOnce(&str, HostBox) -> Result<B, PluginError>,
    config: &impl std::fmt::Display,
) -> BackendBox {
    instance(new_backend(
        &config.to_string(),
        crate::RecordingHost::boxed(),
    ))
}

/// Asserts an error of `kind` whose message contains `contains`; returns it.
#[track_caller]
pub fn assert_error<T: std::fmt::Debug>(
    result: Result<T, PluginError>,
    kind: ErrorKind,
    contains: &str,
) -> PluginError {
    let error = result.expect_err("expected an error");
    assert_eq!(error.kind, kind, "{error}");
    assert!(
        error.message.contains(contains),
        "{error:?} should contain {contains:?}"
    );
    error
}

/// How a batch reaches the plugin: its blocking entries, or the `*_batch_start` entries with a
/// completion (the host's way for `NONBLOCKING` plugins; for others the ABI's default bodies
/// complete before returning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchEntry {
    /// `encrypt_batch` / `decrypt_batch`.
    Blocking,
    /// `encrypt_batch_start` / `decrypt_batch_start`, waiting up to 10 s for the completion.
    Started,
}

impl BatchEntry {
    /// Both entries.
    pub const ALL: [Self; 2] = [Self::Blocking, Self::Started];

    /// Encrypts a batch through this entry.
    pub fn encrypt(self, backend: &BackendBox, requests: Vec<EncryptRequest>) -> RVec<BatchItem> {
        match self {
            Self::Blocking => backend.encrypt_batch(RVec::from(requests)),
            Self::Started => {
                completed(|done| backend.encrypt_batch_start(RVec::from(requests), done))
            }
        }
    }

    /// Decrypts a batch through this entry.
    pub fn decrypt(self, backend: &BackendBox, requests: Vec<DecryptRequest>) -> RVec<BatchItem> {
        match self {
            Self::Blocking => backend.decrypt_batch(RVec::from(requests)),
            Self::Started => {
                completed(|done| backend.decrypt_batch_start(RVec::from(requests), done))
            }
        }
    }
}

/// A completion handing the results to a channel, as the host's hands them to its caller.
struct ChannelDone(Mutex<Option<SyncSender<RVec<BatchItem>>>>);

impl BatchDone for ChannelDone {
    fn complete(&self, results: RVec<BatchItem>) {
        let sender = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        assert!(sender.is_some(), "the plugin completed a batch twice");
        if let Some(sender) = sender {
            let _ = sender.send(results);
        }
    }
}

/// How long a started batch may take to complete before the suite calls it lost. Only a
/// guard against a plugin that never completes: generous, since a batch goes through the
/// plugin's real backend (an agent, an HSM, moto…), which may be slow beside other tests on
/// a loaded machine with as few as 2 cores.
const BATCH_COMPLETION_LIMIT: Duration = Duration::from_secs(120);

/// Starts a batch with `start` and waits for its completion; panics if the plugin drops the
/// completion or takes over [`BATCH_COMPLETION_LIMIT`].
fn completed(start: impl FnOnce(keybroker_plugin_abi::BatchDoneBox)) -> RVec<BatchItem> {
    let (sender, receiver) = sync_channel(1);
    start(BatchDone_TO::from_value(
        ChannelDone(Mutex::new(Some(sender))),
        TD_Opaque,
    ));
    receiver
        .recv_timeout(BATCH_COMPLETION_LIMIT)
        .unwrap_or_else(|error| panic!("the plugin did not complete a started batch: {error}"))
}
