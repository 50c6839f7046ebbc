//! Recovery against a real SoftHSM2: tokens that vanish and come back, a module finalised
//! behind the plugin's back. Its own test binary (its own process), because these tests
//! re-initialise the process-wide module and hide the token directory; they run one at a
//! time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    sync::{Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use abi_stable::std_types::RVec;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use keybroker_plugin_abi::{
    Backend, CreateKeyRequest, DecryptRequest, EncryptRequest, ErrorKind, PluginError,
};
use keybroker_plugin_conformance::RecordingHost;
use keybroker_plugin_pkcs11::{new_backend, Pkcs11Backend};
use keybroker_softhsm_harness::{unique_label, SoftHsm};

const PIN: &str = "recovery-pin";
/// An unreachable token must be reported within this. The token stays hidden while the call
/// runs, so only the plugin's own detection can end it; the bound is loose, since a loaded
/// machine stretches the module's re-initialisation and slot lookups by seconds, and only
/// tells a call that fails on detection from one left waiting for the token to return.
const FAIL_FAST: Duration = Duration::from_secs(20);
/// How long a restored token may take to be usable again (recovery is rate-limited).
const RECOVERY: Duration = Duration::from_secs(15);

/// One test at a time: they all disturb the shared module.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Instance {
    label: String,
    backend: Pkcs11Backend,
    host: RecordingHost,
    reference: String,
}

fn instance(prefix: &str) -> Instance {
    let hsm = SoftHsm::shared();
    let label = unique_label(prefix);
    let pin_file = hsm.add_token(&label, PIN);
    let config = serde_json::json!({
        "module": hsm.module_path(),
        "module_sha256": hsm.module_sha256(),
        "token_label": label,
        "pin_file": pin_file,
        "session_wait": 1000,
    });
    let host = RecordingHost::default();
    let backend = new_backend(&config.to_string(), host.clone().into_box()).unwrap();
    let reference = backend
        .create_key(CreateKeyRequest {
            tenant_id: "acme".into(),
            key_id: "k".into(),
            key_type: "aes256-gcm96".into(),
        })
        .unwrap()
        .reference
        .into_string();
    Instance {
        label,
        backend,
        host,
        reference,
    }
}

impl Instance {
    fn encrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>, PluginError> {
        self.backend.encrypt(EncryptRequest {
            tenant_id: "acme".into(),
            key_reference: self.reference.as_str().into(),
            plaintext: RVec::from(plaintext),
            aad: RVec::from(&b"aad"[..]),
            iv: RVec::new(),
        })
    }

    fn decrypt(&self, blob: &[u8]) -> Result<Vec<u8>, PluginError> {
        self.backend.decrypt(DecryptRequest {
            tenant_id: "acme".into(),
            key_reference: self.reference.as_str().into(),
            ciphertext: RVec::from(blob),
            aad: RVec::from(&b"aad"[..]),
        })
    }

    fn round_trip(&self) -> Result<(), PluginError> {
        let blob = self.encrypt(b"payload")?;
        assert_eq!(self.decrypt(&blob)?, b"payload");
        Ok(())
    }

    /// Asserts that the token is reported unreachable, quickly.
    fn assert_unreachable(&self) {
        let started = Instant::now();
        let error = self.encrypt(b"x").unwrap_err();
        let took = started.elapsed();
        assert_eq!(error.kind, ErrorKind::UNAVAILABLE, "{error}");
        let expected = format!("HSM token {:?} is not reachable: ", self.label);
        assert!(error.message.starts_with(&expected), "{error}");
        assert!(took < FAIL_FAST, "took {took:?}");
        let started = Instant::now();
        let error = self.backend.health().unwrap_err();
        assert_eq!(error.kind, ErrorKind::UNAVAILABLE, "{error}");
        assert!(error.message.starts_with(&expected), "{error}");
        let took = started.elapsed();
        assert!(took < FAIL_FAST, "health took {took:?}");
    }

    /// Polls `health()` until it is fine; the same instance, never rebuilt.
    fn await_recovery(&self) {
        let deadline = Instant::now() + RECOVERY;
        loop {
            match self.backend.health() {
                Ok(()) => return,
                Err(error) if Instant::now() < deadline => {
                    assert_eq!(error.kind, ErrorKind::UNAVAILABLE, "{error}");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(error) => panic!("not recovered after {RECOVERY:?}: {error}"),
            }
        }
    }
}

#[test]
fn a_hidden_token_fails_fast_and_the_same_instance_recovers() {
    let _serial = serial();
    let hsm = SoftHsm::shared();
    let steady = instance("steady");
    let flaky = instance("flaky");
    let blob = flaky.encrypt(b"before").unwrap();
    steady.round_trip().unwrap();

    hsm.hide_token(&flaky.label);
    flaky.assert_unreachable();
    // The other token, on the same module, is not disturbed (the module may have been
    // re-initialised under it meanwhile).
    steady.round_trip().unwrap();
    let lines = flaky.host.lines();
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with("instance available=false")),
        "{lines:?}"
    );

    hsm.restore_token(&flaky.label);
    flaky.await_recovery();
    assert_eq!(flaky.decrypt(&blob).unwrap(), b"before");
    flaky.round_trip().unwrap();
    steady.round_trip().unwrap();
    let lines = flaky.host.lines();
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with("instance available=true")),
        "{lines:?}"
    );
    assert!(lines.iter().all(|line| !line.contains(PIN)), "{lines:?}");
}

#[test]
fn the_whole_token_directory_vanishes_and_comes_back() {
    let _serial = serial();
    let hsm = SoftHsm::shared();
    let first = instance("dir-a");
    let second = instance("dir-b");
    let blob = first.encrypt(b"kept").unwrap();

    hsm.hide_tokens();
    first.assert_unreachable();
    // SoftHSM cannot even be initialised without its token directory: every token of the
    // module is unreachable now.
    let error = second.encrypt(b"x").unwrap_err();
    assert_eq!(error.kind, ErrorKind::UNAVAILABLE, "{error}");

    hsm.restore_tokens();
    first.await_recovery();
    second.await_recovery();
    assert_eq!(first.decrypt(&blob).unwrap(), b"kept");
    second.round_trip().unwrap();
}

/// The verified copy the plugin loaded (`dlopen` of the same path gives the same library).
fn loaded_module() -> Pkcs11 {
    let hsm = SoftHsm::shared();
    let copy = std::env::temp_dir()
        .join(format!(
            "keybroker-pkcs11-{}",
            rustix::process::geteuid().as_raw()
        ))
        .join(format!("{}.so", hsm.module_sha256()));
    Pkcs11::new(copy).unwrap()
}

#[test]
fn sessions_recover_after_the_module_was_reset_behind_the_plugins_back() {
    let _serial = serial();
    let first = instance("reset-a");
    let second = instance("reset-b");
    first.round_trip().unwrap();
    second.round_trip().unwrap();
    let library = loaded_module();

    // Finalise and initialise again: every session and object handle is gone, the module
    // works. The next call replaces its session (CKR_SESSION_HANDLE_INVALID), logs in and
    // looks the key up again, within the call.
    library.clone().finalize().unwrap();
    library
        .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .unwrap();
    first.round_trip().unwrap();
    second.round_trip().unwrap();
    assert!(first.backend.session_stats().open <= 4);

    // Finalise only: CKR_CRYPTOKI_NOT_INITIALIZED makes the plugin initialise it again.
    library.finalize().unwrap();
    first.await_recovery();
    first.round_trip().unwrap();
    second.round_trip().unwrap();
}
