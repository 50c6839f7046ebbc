//! The testing backend. Shared verbatim by `keybroker-plugin-testing` and
//! `keybroker-plugin-testing-alt` (which includes this file with `#[path]`); the crate root
//! passes its flavor, the version `info()` reports.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use aes_gcm::{
    aead::{Aead, KeyInit, Payload},
    Aes256Gcm,
};
use keybroker_plugin_abi::{
    capability, host_log, Backend, BackendInfo, CreateKeyRequest, DataKey, DecryptRequest,
    EncryptRequest, ErrorKind, GenerateDataKeyRequest, HostBox, KeyHandle, LogLevel, PluginError,
};
use rand::{rngs::OsRng, RngCore};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use crate::control::{self, State};

/// Plugin name reported by `info()`.
pub const NAME: &str = "testing";
/// Seed used when the configuration gives none.
pub const DEFAULT_SEED: &str = "keybroker-testing";
/// Largest plaintext `encrypt` accepts.
pub const MAX_PAYLOAD: u64 = 1 << 20;
const NONCE_LEN: usize = 12;

/// A backend method, as named in `panic_on` and `hang_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// `info`
    Info,
    /// `create_key`
    CreateKey,
    /// `delete_key`
    DeleteKey,
    /// `encrypt`
    Encrypt,
    /// `decrypt`
    Decrypt,
    /// `health`
    Health,
}

/// The configuration (JSON); every field is optional.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Keys are SHA-256(seed ‖ reference): the same seed decrypts across restarts.
    #[serde(default)]
    seed: Option<String>,
    /// Methods that panic.
    #[serde(default)]
    panic_on: Vec<Method>,
    /// Milliseconds to sleep before answering, per method.
    #[serde(default)]
    hang_ms: BTreeMap<Method, u64>,
    /// File polled for availability commands (see the `control` module).
    #[serde(default)]
    control_file: Option<PathBuf>,
    /// The constructor returns an error.
    #[serde(default)]
    fail_new: bool,
    /// The constructor panics.
    #[serde(default)]
    panic_new: bool,
    /// Makes envelope data keys itself (`generate_data_key`), as AWS KMS does.
    #[serde(default)]
    generate_data_keys: bool,
    /// Answers `status` with these agents (and the tenant names the host gave); without it,
    /// `status` is not supported, as for most plugins.
    #[serde(default)]
    status_agents: Option<Vec<serde_json::Value>>,
}

/// A testing backend instance.
pub struct TestingBackend {
    version: &'static str,
    seed: Zeroizing<String>,
    panic_on: Vec<Method>,
    hang: BTreeMap<Method, Duration>,
    generate_data_keys: bool,
    status_agents: Option<Vec<serde_json::Value>>,
    /// Tenant names by id, as the host told them (`name_tenant`).
    tenant_names: Mutex<BTreeMap<String, String>>,
    /// The only strong owner: dropping the backend stops the control-file thread.
    state: Arc<State>,
}

impl std::fmt::Debug for TestingBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestingBackend")
            .field("version", &self.version)
            .field("panic_on", &self.panic_on)
            .field("hang", &self.hang)
            .finish_non_exhaustive()
    }
}

/// Builds an instance reporting `version` from its configuration (JSON; empty means `{}`).
pub fn new_backend_with_version(
    config: &str,
    host: HostBox,
    version: &'static str,
) -> Result<TestingBackend, PluginError> {
    let config: Config = if config.trim().is_empty() {
        Config::default()
    } else {
        serde_json::from_str(config)
            .map_err(|error| PluginError::invalid_config(format!("invalid config: {error}")))?
    };
    if config.panic_new {
        deliberate_panic("panic_new is set");
    }
    if config.fail_new {
        return Err(PluginError::invalid_config("fail_new is set"));
    }
    let state = Arc::new(State::new(host));
    if let Some(path) = config.control_file {
        // Read once before returning, so a test sees the file's state from the first call.
        let mut last = None;
        control::poll_once(&path, &mut last, &state);
        control::spawn_watcher(path, last, Arc::downgrade(&state)).map_err(|error| {
            PluginError::internal(format!("cannot start the control-file thread: {error}"))
        })?;
    }
    host_log(
        state.host(),
        LogLevel::INFO,
        &format!("{NAME} plugin {version} ready"),
    );
    Ok(TestingBackend {
        version,
        seed: Zeroizing::new(config.seed.unwrap_or_else(|| DEFAULT_SEED.to_owned())),
        panic_on: config.panic_on,
        hang: config
            .hang_ms
            .into_iter()
            .map(|(method, ms)| (method, Duration::from_millis(ms)))
            .collect(),
        generate_data_keys: config.generate_data_keys,
        status_agents: config.status_agents,
        tenant_names: Mutex::default(),
        state,
    })
}

// Deliberate: these panics prove that the host's `catch_unwind` guard holds.
#[allow(clippy::panic)]
fn deliberate_panic(what: &str) -> ! {
    panic!("testing plugin: deliberate panic: {what}")
}

impl TestingBackend {
    /// Hangs and panics as configured for `method`.
    fn enter(&self, method: Method) {
        if let Some(delay) = self.hang.get(&method) {
            std::thread::sleep(*delay);
        }
        if self.panic_on.contains(&method) {
            deliberate_panic(&format!("panic_on includes {method:?}"));
        }
    }

    fn check_instance_up(&self) -> Result<(), PluginError> {
        match self.state.instance_down_reason() {
            Some(reason) => Err(PluginError::unavailable(format!("instance down: {reason}"))),
            None => Ok(()),
        }
    }

    fn check_key_up(&self, tenant_id: &str, reference: &str) -> Result<(), PluginError> {
        self.check_instance_up()?;
        check_owner(tenant_id, reference)?;
        if self.state.is_key_down(reference) {
            return Err(PluginError::unavailable("key unavailable"));
        }
        Ok(())
    }

    fn cipher(&self, reference: &str) -> Aes256Gcm {
        let mut key = Zeroizing::new([0u8; 32]);
        let digest = Sha256::new()
            .chain_update(self.seed.as_bytes())
            .chain_update(reference.as_bytes())
            .finalize();
        key.copy_from_slice(&digest);
        Aes256Gcm::new((&*key).into())
    }
}

impl Drop for TestingBackend {
    fn drop(&mut self) {
        host_log(
            self.state.host(),
            LogLevel::DEBUG,
            &format!("{NAME} plugin {} dropped", self.version),
        );
    }
}

impl Backend for TestingBackend {
    fn info(&self) -> BackendInfo {
        self.enter(Method::Info);
        BackendInfo {
            name: NAME.into(),
            version: self.version.into(),
            capabilities: capability::ENVELOPE
                | capability::DIRECT
                | if self.generate_data_keys {
                    capability::GENERATE_DATA_KEY
                } else {
                    0
                },
            max_payload: MAX_PAYLOAD,
        }
    }

    fn create_key(&self, request: CreateKeyRequest) -> Result<KeyHandle, PluginError> {
        self.enter(Method::CreateKey);
        self.check_instance_up()?;
        let tenant_id = request.tenant_id.as_str();
        if tenant_id.is_empty() || tenant_id.contains('/') {
            return Err(PluginError::invalid_request(
                "tenant_id must be non-empty and must not contain '/'",
            ));
        }
        let mut random = [0u8; 16];
        OsRng
            .try_fill_bytes(&mut random)
            .map_err(|_| PluginError::internal("the system random number generator failed"))?;
        let hex: String = random.iter().map(|byte| format!("{byte:02x}")).collect();
        Ok(KeyHandle {
            reference: format!("t/{tenant_id}/{hex}").into(),
        })
    }

    fn delete_key(&self, tenant_id: &str, key_reference: &str) -> Result<(), PluginError> {
        self.enter(Method::DeleteKey);
        self.check_instance_up()?;
        check_owner(tenant_id, key_reference)
    }

    fn encrypt(&self, mut request: EncryptRequest) -> Result<Vec<u8>, PluginError> {
        self.enter(Method::Encrypt);
        let result = self.encrypt_with(&request);
        request.plaintext.as_mut_slice().zeroize();
        result
    }

    fn decrypt(&self, request: DecryptRequest) -> Result<Vec<u8>, PluginError> {
        self.enter(Method::Decrypt);
        self.check_key_up(&request.tenant_id, &request.key_reference)?;
        let (nonce, sealed) = request
            .ciphertext
            .split_first_chunk::<NONCE_LEN>()
            .ok_or_else(|| PluginError::invalid_ciphertext("ciphertext shorter than a nonce"))?;
        self.cipher(&request.key_reference)
            .decrypt(
                nonce.into(),
                Payload {
                    msg: sealed,
                    aad: &request.aad,
                },
            )
            .map_err(|_| PluginError::invalid_ciphertext("message authentication failed"))
    }

    fn health(&self) -> Result<(), PluginError> {
        self.enter(Method::Health);
        self.check_instance_up()
    }

    fn generate_data_key(&self, request: GenerateDataKeyRequest) -> Result<DataKey, PluginError> {
        if !self.generate_data_keys {
            return Err(keybroker_plugin_abi::not_supported("generating data keys"));
        }
        let mut plaintext = Zeroizing::new(vec![0u8; request.length as usize]);
        OsRng
            .try_fill_bytes(&mut plaintext)
            .map_err(|_| PluginError::internal("the system random number generator failed"))?;
        let wrapped = self.encrypt_with(&EncryptRequest {
            tenant_id: request.tenant_id,
            key_reference: request.key_reference,
            plaintext: plaintext.as_slice().into(),
            aad: request.aad,
            iv: Default::default(),
        })?;
        Ok(DataKey {
            plaintext: plaintext.as_slice().into(),
            wrapped: wrapped.into(),
        })
    }

    fn status(&self) -> Result<String, PluginError> {
        let Some(agents) = &self.status_agents else {
            return Err(keybroker_plugin_abi::not_supported("status"));
        };
        let tenant_names = self
            .tenant_names
            .lock()
            .map_err(|_| PluginError::internal("tenant names poisoned"))?
            .clone();
        Ok(serde_json::json!({ "agents": agents, "tenant_names": tenant_names }).to_string())
    }

    fn name_tenant(&self, tenant_id: &str, tenant_name: &str) {
        if let Ok(mut names) = self.tenant_names.lock() {
            names.insert(tenant_id.to_owned(), tenant_name.to_owned());
        }
    }
}

impl TestingBackend {
    fn encrypt_with(&self, request: &EncryptRequest) -> Result<Vec<u8>, PluginError> {
        self.check_key_up(&request.tenant_id, &request.key_reference)?;
        if request.plaintext.len() as u64 > MAX_PAYLOAD {
            return Err(PluginError::new(
                ErrorKind::PAYLOAD_TOO_LARGE,
                format!("plaintext larger than {MAX_PAYLOAD} bytes"),
            ));
        }
        let nonce = match <[u8; NONCE_LEN]>::try_from(request.iv.as_slice()) {
            Ok(iv) => iv,
            Err(_) if request.iv.is_empty() => {
                let mut nonce = [0u8; NONCE_LEN];
                OsRng.try_fill_bytes(&mut nonce).map_err(|_| {
                    PluginError::internal("the system random number generator failed")
                })?;
                nonce
            }
            Err(_) => {
                return Err(PluginError::invalid_request(format!(
                    "iv must be {NONCE_LEN} bytes or empty"
                )))
            }
        };
        let sealed = self
            .cipher(&request.key_reference)
            .encrypt(
                (&nonce).into(),
                Payload {
                    msg: &request.plaintext,
                    aad: &request.aad,
                },
            )
            .map_err(|_| PluginError::internal("encryption failed"))?;
        let mut blob = Vec::with_capacity(NONCE_LEN + sealed.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        Ok(blob)
    }
}

/// `t/<tenant_id>/<hex>` owned by `tenant_id`; the message never names the owner.
fn check_owner(tenant_id: &str, reference: &str) -> Result<(), PluginError> {
    let owner = reference
        .strip_prefix("t/")
        .and_then(|rest| rest.split_once('/'))
        .filter(|(owner, random)| {
            !owner.is_empty() && !random.is_empty() && random.bytes().all(|b| b.is_ascii_hexdigit())
        })
        .map(|(owner, _)| owner)
        .ok_or_else(|| {
            PluginError::new(
                ErrorKind::KEY_NOT_FOUND,
                "key not found: malformed key reference",
            )
        })?;
    if owner != tenant_id {
        return Err(PluginError::new(
            ErrorKind::KEY_NOT_FOUND,
            "key not found for this tenant",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_host::RecordingHost;
    use abi_stable::std_types::RVec;
    use keybroker_plugin_abi::into_ffi;

    fn backend(config: &str) -> TestingBackend {
        new_backend_with_version(config, RecordingHost::default().into_box(), "testing-x").unwrap()
    }

    fn create(backend: &TestingBackend, tenant: &str) -> String {
        backend
            .create_key(CreateKeyRequest {
                tenant_id: tenant.into(),
                key_id: "k".into(),
                key_type: "aes256-gcm96".into(),
            })
            .unwrap()
            .reference
            .into_string()
    }

    fn encrypt(
        backend: &TestingBackend,
        tenant: &str,
        reference: &str,
        plaintext: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, PluginError> {
        backend.encrypt(EncryptRequest {
            tenant_id: tenant.into(),
            key_reference: reference.into(),
            plaintext: RVec::from(plaintext),
            aad: RVec::from(aad),
            iv: RVec::new(),
        })
    }

    fn decrypt(
        backend: &TestingBackend,
        tenant: &str,
        reference: &str,
        ciphertext: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, PluginError> {
        backend.decrypt(DecryptRequest {
            tenant_id: tenant.into(),
            key_reference: reference.into(),
            ciphertext: RVec::from(ciphertext),
            aad: RVec::from(aad),
        })
    }

    #[test]
    fn round_trip_is_deterministic_per_seed() {
        let first = backend(r#"{"seed": "s1"}"#);
        let reference = create(&first, "acme");
        let blob = encrypt(&first, "acme", &reference, b"hello", b"aad").unwrap();
        assert_eq!(blob.len(), NONCE_LEN + 5 + 16);
        assert_eq!(
            decrypt(&first, "acme", &reference, &blob, b"aad").unwrap(),
            b"hello"
        );

        // A "restart" with the same seed reads old blobs; another seed does not.
        let restarted = backend(r#"{"seed": "s1"}"#);
        assert_eq!(
            decrypt(&restarted, "acme", &reference, &blob, b"aad").unwrap(),
            b"hello"
        );
        let other_seed = backend(r#"{"seed": "s2"}"#);
        let error = decrypt(&other_seed, "acme", &reference, &blob, b"aad").unwrap_err();
        assert_eq!(error.kind, ErrorKind::INVALID_CIPHERTEXT);

        let error = decrypt(&first, "acme", &reference, &blob, b"other").unwrap_err();
        assert_eq!(error.kind, ErrorKind::INVALID_CIPHERTEXT);
        let error = decrypt(&first, "acme", &reference, &blob[..10], b"aad").unwrap_err();
        assert_eq!(error.kind, ErrorKind::INVALID_CIPHERTEXT);
    }

    #[test]
    fn tenants_are_isolated() {
        let backend = backend("");
        let reference = create(&backend, "acme");
        let blob = encrypt(&backend, "acme", &reference, b"hello", b"").unwrap();
        let error = decrypt(&backend, "globex", &reference, &blob, b"").unwrap_err();
        assert_eq!(error.kind, ErrorKind::KEY_NOT_FOUND);
        assert!(!error.message.contains("acme"));
        let error = encrypt(&backend, "globex", &reference, b"x", b"").unwrap_err();
        assert_eq!(error.kind, ErrorKind::KEY_NOT_FOUND);
    }

    #[test]
    fn config_flags() {
        let host = || RecordingHost::default().into_box();
        let error = new_backend_with_version(r#"{"fail_new": true}"#, host(), "v").unwrap_err();
        assert_eq!(error, PluginError::invalid_config("fail_new is set"));
        let error = new_backend_with_version(r#"{"sede": "x"}"#, host(), "v").unwrap_err();
        assert_eq!(error.kind, ErrorKind::INVALID_CONFIG);
        let error =
            new_backend_with_version(r#"{"panic_on": ["reboot"]}"#, host(), "v").unwrap_err();
        assert_eq!(error.kind, ErrorKind::INVALID_CONFIG);

        let result = std::panic::catch_unwind(|| {
            new_backend_with_version(r#"{"panic_new": true}"#, host(), "v")
        });
        assert!(result.is_err(), "panic_new panics");
        // Through the ABI's guard, the same panic becomes an error.
        let guarded = keybroker_plugin_abi::construct(
            r#"{"panic_new": true}"#.into(),
            host(),
            |config, host| new_backend_with_version(config, host, "v"),
        );
        let error = guarded.into_result().err().unwrap();
        assert_eq!(error.kind, ErrorKind::INTERNAL);
    }

    #[test]
    fn panic_on_and_hang_ms() {
        let backend = backend(r#"{"panic_on": ["encrypt", "info"], "hang_ms": {"health": 120}}"#);
        let reference = create(&backend, "acme");
        let ffi = into_ffi(backend);
        let error = ffi
            .encrypt(EncryptRequest {
                tenant_id: "acme".into(),
                key_reference: reference.as_str().into(),
                plaintext: RVec::from(&b"x"[..]),
                aad: RVec::new(),
                iv: RVec::new(),
            })
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::INTERNAL);
        assert_eq!(ffi.info().unwrap_err().kind, ErrorKind::INTERNAL);

        let started = std::time::Instant::now();
        ffi.health().unwrap();
        assert!(started.elapsed() >= Duration::from_millis(120));
    }

    #[test]
    fn control_file_drives_health_and_operations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control");
        std::fs::write(&path, "instance down agent unplugged\n").unwrap();
        let host = RecordingHost::default();
        let config = serde_json::json!({"control_file": path}).to_string();
        let backend = new_backend_with_version(&config, host.clone().into_box(), "v").unwrap();

        // Applied before the constructor returned.
        let error = backend.health().unwrap_err();
        assert_eq!(error.kind, ErrorKind::UNAVAILABLE);
        assert!(error.message.contains("agent unplugged"), "{error}");
        assert!(host
            .events()
            .contains(&"instance false agent unplugged".to_owned()));

        std::fs::write(&path, "instance up\n").unwrap();
        wait_until("health to answer ok after `instance up`", || {
            backend.health().is_ok()
        });
        let reference = create(&backend, "acme");
        let blob = encrypt(&backend, "acme", &reference, b"x", b"").unwrap();

        std::fs::write(&path, format!("keys down {reference}\n")).unwrap();
        wait_until("decrypt to fail after `keys down`", || {
            decrypt(&backend, "acme", &reference, &blob, b"").is_err()
        });
        let error = decrypt(&backend, "acme", &reference, &blob, b"").unwrap_err();
        assert_eq!(error.kind, ErrorKind::UNAVAILABLE);
        backend.health().unwrap();

        std::fs::write(&path, format!("keys up {reference}\n")).unwrap();
        wait_until("decrypt to succeed after `keys up`", || {
            decrypt(&backend, "acme", &reference, &blob, b"").is_ok()
        });
        assert!(host
            .events()
            .contains(&format!("keys [{reference:?}] true ")));
    }

    #[test]
    fn dropping_the_backend_stops_the_watcher() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control");
        let host = RecordingHost::default();
        let config = serde_json::json!({"control_file": path}).to_string();
        let backend = new_backend_with_version(&config, host.clone().into_box(), "v").unwrap();
        let state = Arc::downgrade(&backend.state);
        drop(backend);
        // The watcher may be in the middle of a poll, holding the state, when the backend
        // drops: wait until nothing holds it (a sleep raced a watcher delayed by a loaded
        // machine). From then on the watcher cannot apply anything.
        wait_until(
            "the watcher to let go of the dropped backend's state",
            || state.strong_count() == 0,
        );
        let before = host.events().len();
        std::fs::write(&path, "instance down after drop\n").unwrap();
        std::thread::sleep(control::POLL_INTERVAL * 4);
        assert_eq!(host.events().len(), before, "{:?}", host.events());
    }

    /// Polls `condition` until it holds. The watcher ticks every 50 ms, but on a loaded
    /// machine its thread may not run for seconds: the deadline is generous, and only
    /// reached when the watcher is broken.
    fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
        const PATIENCE: Duration = Duration::from_secs(30);
        let deadline = std::time::Instant::now() + PATIENCE;
        while !condition() {
            assert!(
                std::time::Instant::now() < deadline,
                "waited {PATIENCE:?} for {what}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
