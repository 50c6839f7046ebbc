//! [`LocalKek`]: the backend itself.

use std::{fmt, sync::Arc, time::Duration};

use keybroker_plugin_abi::{
    capability, host_log, Backend, BackendInfo, CreateKeyRequest, DecryptRequest, EncryptRequest,
    ErrorKind, HostBox, ImportKeyRequest, KeyHandle, LogLevel, PluginError, SignRequest,
    VerifyRequest,
};
use keybroker_plugin_sdk::entry::{backend_info, encrypt_then_wipe};
use zeroize::{Zeroize as _, Zeroizing};

use crate::asymmetric::{KeyType, PrivateKey};
use crate::config::{self, LoadedKek};
use crate::reference::{self, Reference};
use crate::sealing::{self, Kek};

mod signing;

/// Plugin name reported by `info()`.
pub const NAME: &str = "local-kek";
/// The symmetric key type `create_key` accepts (the asymmetric ones are those of
/// [`keybroker_plugin_abi::key_type::ASYMMETRIC`]).
pub const KEY_TYPE: &str = "aes256-gcm96";
/// Default largest plaintext `encrypt` accepts: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD: u64 = 1 << 20;
/// Parsed private keys kept in memory, so signing does not decrypt and parse PKCS #8 (slow
/// for RSA) every time.
const SIGNING_KEY_CACHE_ENTRIES: u64 = 1024;
/// A cached private key unused for this long is dropped (and wiped).
const SIGNING_KEY_CACHE_IDLE: Duration = Duration::from_secs(10 * 60);

/// A local-KEK backend instance: a ring of AES-256 KEKs, one of them active.
///
/// Built by [`new_backend`] from the plugin configuration, or by [`with_keks`] from keys the
/// broker already holds. `Debug` shows KEK ids only.
pub struct LocalKek {
    keks: Vec<Kek>,
    /// Index of the active KEK in `keks`.
    active: usize,
    max_payload: u64,
    /// Parsed private keys by reference; only filled after the reference's tenant was
    /// checked and its sealed key opened. Entries wipe themselves when evicted.
    signing_keys: moka::sync::Cache<String, Arc<PrivateKey>>,
}

impl fmt::Debug for LocalKek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalKek")
            .field(
                "kek_ids",
                &self
                    .keks
                    .iter()
                    .map(|kek| kek.id.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("active", &self.active_kek().map(|kek| kek.id.as_str()))
            .field("max_payload", &self.max_payload)
            .field("signing_keys_cached", &self.signing_keys.entry_count())
            .finish()
    }
}

/// Builds an instance from the plugin configuration (JSON text, see the crate docs).
///
/// Every error is [`ErrorKind::INVALID_CONFIG`] and names the field or KEK id at fault.
pub fn new_backend(config: &str, host: HostBox) -> Result<LocalKek, PluginError> {
    let loaded = config::load(config)?;
    for warning in &loaded.warnings {
        host_log(&host, LogLevel::WARN, &format!("{NAME}: {warning}"));
    }
    let max_payload = loaded.max_payload.unwrap_or(DEFAULT_MAX_PAYLOAD);
    build(
        loaded.keks,
        loaded.active.as_deref(),
        max_payload,
        Some(&host),
    )
}

/// Builds an instance from KEKs the caller already holds (the broker's generated dev KEK),
/// with the same validation as [`new_backend`] and the default `max_payload`.
pub fn with_keks(
    keks: Vec<(String, Zeroizing<[u8; 32]>)>,
    active: &str,
    host: Option<HostBox>,
) -> Result<LocalKek, PluginError> {
    build(keks, Some(active), DEFAULT_MAX_PAYLOAD, host.as_ref())
}

fn build(
    keks: Vec<LoadedKek>,
    active: Option<&str>,
    max_payload: u64,
    host: Option<&HostBox>,
) -> Result<LocalKek, PluginError> {
    if keks.is_empty() {
        return Err(PluginError::invalid_config(
            "keks: at least one KEK is required",
        ));
    }
    if max_payload == 0 {
        return Err(PluginError::invalid_config(
            "max_payload: must be at least 1 byte",
        ));
    }
    let mut ring: Vec<Kek> = Vec::with_capacity(keks.len());
    for (id, key) in keks {
        config::check_kek_id(&id)?;
        if ring.iter().any(|kek| kek.id == id) {
            return Err(PluginError::invalid_config(format!(
                "keks: KEK id {id:?} appears more than once"
            )));
        }
        ring.push(Kek { id, key });
    }
    let active = match active {
        Some(name) => ring.iter().position(|kek| kek.id == name).ok_or_else(|| {
            PluginError::invalid_config(format!(
                "active: {name:?} is not the id of a configured KEK"
            ))
        })?,
        None if ring.len() == 1 => 0,
        None => {
            return Err(PluginError::invalid_config(
                "active: required when more than one KEK is configured",
            ))
        }
    };
    let backend = LocalKek {
        keks: ring,
        active,
        max_payload,
        signing_keys: moka::sync::Cache::builder()
            .max_capacity(SIGNING_KEY_CACHE_ENTRIES)
            .time_to_idle(SIGNING_KEY_CACHE_IDLE)
            .build(),
    };
    if let Some(host) = host {
        host_log(
            host,
            LogLevel::INFO,
            &format!("{NAME}: ready with {backend:?}"),
        );
    }
    Ok(backend)
}

impl LocalKek {
    fn active_kek(&self) -> Result<&Kek, PluginError> {
        self.keks
            .get(self.active)
            .ok_or_else(|| PluginError::internal("no active KEK"))
    }

    fn encrypt_with(&self, request: &EncryptRequest) -> Result<Vec<u8>, PluginError> {
        check_symmetric(&request.tenant_id, &request.key_reference)?;
        let plaintext = request.plaintext.as_slice();
        if u64::try_from(plaintext.len()).map_or(true, |len| len > self.max_payload) {
            return Err(PluginError::new(
                ErrorKind::PAYLOAD_TOO_LARGE,
                format!(
                    "plaintext of {} bytes is larger than max_payload ({} bytes)",
                    plaintext.len(),
                    self.max_payload
                ),
            ));
        }
        let nonce = sealing::choose_nonce(&request.iv)?;
        sealing::seal(
            self.active_kek()?,
            &request.key_reference,
            &nonce,
            &request.aad,
            plaintext,
        )
    }

    fn decrypt_with(&self, request: &DecryptRequest) -> Result<Vec<u8>, PluginError> {
        if let Reference::Asymmetric(key) =
            reference::parse(&request.tenant_id, &request.key_reference)?
        {
            let mut plaintext = self.decrypt_asymmetric(request, &key)?;
            return Ok(std::mem::take(&mut *plaintext));
        }
        let mut plaintext = sealing::open(
            &self.keks,
            &request.key_reference,
            &request.aad,
            &request.ciphertext,
        )?;
        Ok(std::mem::take(&mut *plaintext))
    }
}

/// Checks the owner of a reference used for encryption, and that it is a symmetric key.
fn check_symmetric(tenant_id: &str, key_reference: &str) -> Result<(), PluginError> {
    match reference::parse(tenant_id, key_reference)? {
        Reference::Symmetric => Ok(()),
        Reference::Asymmetric(key) => Err(PluginError::invalid_request(format!(
            "key type {:?} does not support encryption",
            key.key_type.name()
        ))),
    }
}

impl Backend for LocalKek {
    fn info(&self) -> BackendInfo {
        backend_info(
            NAME,
            env!("CARGO_PKG_VERSION"),
            capability::ENVELOPE
                | capability::DIRECT
                | capability::SIGN
                | capability::BROKER_HELD
                | capability::ASYMMETRIC_DECRYPT
                | capability::PRIVATE_KEY_TRANSFER,
            self.max_payload,
        )
    }

    fn create_key(&self, request: CreateKeyRequest) -> Result<KeyHandle, PluginError> {
        let key_type = request.key_type.as_str();
        let reference = if key_type == KEY_TYPE {
            reference::new_reference(&request.tenant_id)?
        } else if let Some(key_type) = KeyType::parse(key_type) {
            self.create_signing_key(&request.tenant_id, key_type)?
        } else {
            return Err(PluginError::invalid_request(format!(
                "key type {key_type:?} is not supported by {NAME}; use {KEY_TYPE}, {}",
                keybroker_plugin_abi::key_type::ASYMMETRIC.join(", ")
            )));
        };
        Ok(KeyHandle {
            reference: reference.into(),
        })
    }

    fn encrypt(&self, request: EncryptRequest) -> Result<Vec<u8>, PluginError> {
        encrypt_then_wipe(request, |request| self.encrypt_with(request))
    }

    fn decrypt(&self, request: DecryptRequest) -> Result<Vec<u8>, PluginError> {
        self.decrypt_with(&request)
    }

    fn health(&self) -> Result<(), PluginError> {
        Ok(())
    }

    fn sign(&self, request: SignRequest) -> Result<Vec<u8>, PluginError> {
        self.sign_digest(&request)
    }

    fn verify(&self, request: VerifyRequest) -> Result<bool, PluginError> {
        self.verify_digest(&request)
    }

    fn public_key(&self, tenant_id: &str, key_reference: &str) -> Result<String, PluginError> {
        self.public_key_pem(tenant_id, key_reference)
    }

    fn export_private_key(
        &self,
        tenant_id: &str,
        key_reference: &str,
    ) -> Result<Zeroizing<Vec<u8>>, PluginError> {
        self.export_signing_key(tenant_id, key_reference)
    }

    fn import_private_key(&self, mut request: ImportKeyRequest) -> Result<KeyHandle, PluginError> {
        let pkcs8 = Zeroizing::new(request.pkcs8.as_slice().to_vec());
        request.pkcs8.as_mut_slice().zeroize();
        let requested = request.key_type.as_str();
        let Some(key_type) = KeyType::parse(requested) else {
            return Err(PluginError::invalid_request(format!(
                "key type {requested:?} cannot be imported into {NAME} as a private key; use \
                 one of {}",
                keybroker_plugin_abi::key_type::ASYMMETRIC.join(", ")
            )));
        };
        let reference = self.import_signing_key(&request.tenant_id, key_type, &pkcs8)?;
        Ok(KeyHandle {
            reference: reference.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::{self, NONCE_LEN};
    use crate::config::KEK_LEN;
    use abi_stable::std_types::RString;
    use keybroker_plugin_conformance::{
        direct::{self, decrypt, encrypt},
        RecordingHost,
    };
    use std::io::Write as _;

    fn kek(id: &str, byte: u8) -> LoadedKek {
        (id.to_owned(), Zeroizing::new([byte; KEK_LEN]))
    }

    fn ring(active: &str) -> LocalKek {
        with_keks(vec![kek("k1", 1), kek("k2", 2)], active, None).unwrap()
    }

    fn create(backend: &LocalKek, tenant: &str) -> String {
        direct::create(backend, tenant, KEY_TYPE)
    }

    #[test]
    fn round_trip_with_and_without_aad() {
        let backend = ring("k1");
        let reference = create(&backend, "acme");
        for aad in [&b""[..], b"binding"] {
            let blob = encrypt(&backend, "acme", &reference, b"data key", aad, &[]).unwrap();
            assert_eq!(blob[0], 0x01);
            assert_eq!(&blob[1..4], b"\x02k1");
            assert_eq!(blob.len(), blob::sealed_len("k1", 8));
            let plain = decrypt(&backend, "acme", &reference, &blob, aad).unwrap();
            assert_eq!(plain, b"data key");
        }
        let empty = encrypt(&backend, "acme", &reference, b"", b"", &[]).unwrap();
        assert!(decrypt(&backend, "acme", &reference, &empty, b"")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn random_nonces_differ() {
        let backend = ring("k1");
        let reference = create(&backend, "acme");
        let a = encrypt(&backend, "acme", &reference, b"x", b"", &[]).unwrap();
        let b = encrypt(&backend, "acme", &reference, b"x", b"", &[]).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn aad_mismatch_fails() {
        let backend = ring("k1");
        let reference = create(&backend, "acme");
        let blob = encrypt(&backend, "acme", &reference, b"secret", b"aad-1", &[]).unwrap();
        let error = decrypt(&backend, "acme", &reference, &blob, b"aad-2").unwrap_err();
        assert_eq!(error.kind, ErrorKind::INVALID_CIPHERTEXT);
        assert_eq!(error.message.as_str(), "message authentication failed");
        assert!(decrypt(&backend, "acme", &reference, &blob, b"").is_err());
    }

    #[test]
    fn other_tenant_fails_without_naming_the_owner() {
        let backend = ring("k1");
        let reference = create(&backend, "acme");
        let blob = encrypt(&backend, "acme", &reference, b"secret", b"", &[]).unwrap();
        for error in [
            decrypt(&backend, "globex", &reference, &blob, b"").unwrap_err(),
            encrypt(&backend, "globex", &reference, b"x", b"", &[]).unwrap_err(),
        ] {
            assert_eq!(error.kind, ErrorKind::KEY_NOT_FOUND);
            assert_eq!(error.message.as_str(), "key not found for this tenant");
        }
    }

    #[test]
    fn other_reference_fails() {
        let backend = ring("k1");
        let first = create(&backend, "acme");
        let second = create(&backend, "acme");
        let blob = encrypt(&backend, "acme", &first, b"secret", b"", &[]).unwrap();
        let error = decrypt(&backend, "acme", &second, &blob, b"").unwrap_err();
        assert_eq!(error.kind, ErrorKind::INVALID_CIPHERTEXT);
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_fails_cleanly() {
        let backend = ring("k1");
        let reference = create(&backend, "acme");
        let blob = encrypt(&backend, "acme", &reference, b"some secret", b"aad", &[]).unwrap();
        for len in 0..blob.len() {
            let error = decrypt(&backend, "acme", &reference, &blob[..len], b"aad").unwrap_err();
            assert_eq!(error.kind, ErrorKind::INVALID_CIPHERTEXT, "length {len}");
            assert!(!error.message.is_empty());
        }
        for index in 0..blob.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut tampered = blob.clone();
                tampered[index] ^= flip;
                let error = decrypt(&backend, "acme", &reference, &tampered, b"aad").unwrap_err();
                assert_eq!(error.kind, ErrorKind::INVALID_CIPHERTEXT, "byte {index}");
            }
        }
        let mut extended = blob.clone();
        extended.push(0);
        assert!(decrypt(&backend, "acme", &reference, &extended, b"aad").is_err());
    }

    #[test]
    fn rotation_keeps_old_blobs_readable() {
        let before = ring("k1");
        let reference = create(&before, "acme");
        let old_blob = encrypt(&before, "acme", &reference, b"old", b"", &[]).unwrap();
        assert_eq!(&old_blob[1..4], b"\x02k1");

        let after = ring("k2");
        assert_eq!(
            decrypt(&after, "acme", &reference, &old_blob, b"").unwrap(),
            b"old"
        );
        let new_blob = encrypt(&after, "acme", &reference, b"new", b"", &[]).unwrap();
        assert_eq!(&new_blob[1..4], b"\x02k2");
        assert_eq!(
            decrypt(&after, "acme", &reference, &new_blob, b"").unwrap(),
            b"new"
        );

        // Once k1 is gone, its blobs name an unknown KEK.
        let k2_only = with_keks(vec![kek("k2", 2)], "k2", None).unwrap();
        let error = decrypt(&k2_only, "acme", &reference, &old_blob, b"").unwrap_err();
        assert_eq!(error.kind, ErrorKind::INVALID_CIPHERTEXT);
        assert!(error.message.contains("unknown KEK id"), "{error}");
        // A KEK with the same id but other bytes fails authentication.
        let impostor = with_keks(vec![kek("k1", 9)], "k1", None).unwrap();
        let error = decrypt(&impostor, "acme", &reference, &old_blob, b"").unwrap_err();
        assert_eq!(error.message.as_str(), "message authentication failed");
    }

    #[test]
    fn iv_is_honoured_and_checked() {
        let backend = ring("k1");
        let reference = create(&backend, "acme");
        let iv = [0x5a; NONCE_LEN];
        let a = encrypt(&backend, "acme", &reference, b"x", b"", &iv).unwrap();
        let b = encrypt(&backend, "acme", &reference, b"x", b"", &iv).unwrap();
        assert_eq!(&a[4..4 + NONCE_LEN], &iv);
        assert_eq!(a, b, "same key, IV and input give the same blob");
        assert_eq!(
            decrypt(&backend, "acme", &reference, &a, b"").unwrap(),
            b"x"
        );
        for bad in [&[1u8; 8][..], &[1u8; 16][..]] {
            let error = encrypt(&backend, "acme", &reference, b"x", b"", bad).unwrap_err();
            assert_eq!(error.kind, ErrorKind::INVALID_REQUEST);
        }
    }

    #[test]
    fn payload_limit_and_key_type() {
        let file = {
            let mut file = tempfile::NamedTempFile::new().unwrap();
            file.write_all(b"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=")
                .unwrap();
            file
        };
        let config =
            serde_json::json!({"max_payload": 4, "keks": [{"id": "k1", "file": file.path()}]});
        let backend = new_backend(&config.to_string(), RecordingHost::boxed()).unwrap();
        assert_eq!(backend.info().max_payload, 4);
        let reference = create(&backend, "acme");
        encrypt(&backend, "acme", &reference, b"1234", b"", &[]).unwrap();
        let error = encrypt(&backend, "acme", &reference, b"12345", b"", &[]).unwrap_err();
        assert_eq!(error.kind, ErrorKind::PAYLOAD_TOO_LARGE);

        let error = backend
            .create_key(CreateKeyRequest {
                tenant_id: "acme".into(),
                key_id: "key-1".into(),
                key_type: "chacha20-poly1305".into(),
            })
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::INVALID_REQUEST);
        assert!(error.message.contains("ecdsa-p256"), "{error}");
        let error = backend
            .create_key(CreateKeyRequest {
                tenant_id: RString::new(),
                key_id: "key-1".into(),
                key_type: KEY_TYPE.into(),
            })
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::INVALID_REQUEST);
    }

    #[test]
    fn ring_validation() {
        let error = with_keks(vec![kek("k1", 1)], "k9", None).unwrap_err();
        assert_eq!(error.kind, ErrorKind::INVALID_CONFIG);
        assert!(error.message.contains("\"k9\""), "{error}");
        let error = with_keks(vec![kek("k1", 1), kek("k1", 2)], "k1", None).unwrap_err();
        assert!(error.message.contains("more than once"), "{error}");
        let error = with_keks(vec![], "k1", None).unwrap_err();
        assert!(error.message.contains("at least one"), "{error}");
        let error = with_keks(vec![kek("bad/id", 1)], "bad/id", None).unwrap_err();
        assert_eq!(error.kind, ErrorKind::INVALID_CONFIG);
        let error = with_keks(vec![kek(&"x".repeat(65), 1)], &"x".repeat(65), None).unwrap_err();
        assert_eq!(error.kind, ErrorKind::INVALID_CONFIG);
        with_keks(vec![kek(&"x".repeat(64), 1)], &"x".repeat(64), None).unwrap();
    }

    #[test]
    fn config_active_rules() {
        std::env::set_var(
            "KB_TEST_LOCAL_KEK_RING",
            "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
        );
        let single = r#"{"keks": [{"id": "only", "env": "KB_TEST_LOCAL_KEK_RING"}]}"#;
        let backend = new_backend(single, RecordingHost::boxed()).unwrap();
        assert_eq!(backend.info().max_payload, DEFAULT_MAX_PAYLOAD);

        let two = r#"{"keks": [{"id": "a", "env": "KB_TEST_LOCAL_KEK_RING"},
                              {"id": "b", "env": "KB_TEST_LOCAL_KEK_RING"}]}"#;
        let error = new_backend(two, RecordingHost::boxed()).unwrap_err();
        assert!(error.message.contains("active"), "{error}");

        let unknown = r#"{"active": "c", "keks": [{"id": "a", "env": "KB_TEST_LOCAL_KEK_RING"}]}"#;
        let error = new_backend(unknown, RecordingHost::boxed()).unwrap_err();
        assert_eq!(error.kind, ErrorKind::INVALID_CONFIG);
        assert!(error.message.contains("\"c\""), "{error}");
        assert!(!error.message.contains("AQEB"), "{error}");

        let zero = r#"{"max_payload": 0, "keks": [{"id": "a", "env": "KB_TEST_LOCAL_KEK_RING"}]}"#;
        assert!(new_backend(zero, RecordingHost::boxed()).is_err());
    }

    #[test]
    fn info_and_debug_reveal_no_key() {
        let backend = with_keks(vec![kek("k1", 0x41)], "k1", None).unwrap();
        let info = backend.info();
        assert_eq!(info.name.as_str(), "local-kek");
        assert_eq!(info.version.as_str(), env!("CARGO_PKG_VERSION"));
        assert_eq!(
            info.capabilities,
            capability::ENVELOPE
                | capability::DIRECT
                | capability::SIGN
                | capability::BROKER_HELD
                | capability::ASYMMETRIC_DECRYPT
                | capability::PRIVATE_KEY_TRANSFER
        );
        backend.health().unwrap();
        let debug = format!("{backend:?}");
        assert!(debug.contains("k1"));
        assert!(!debug.contains("65"), "{debug}");
        assert!(!debug.contains("AAAA"), "{debug}");
    }

    #[test]
    fn construction_is_logged_through_the_host() {
        let host = RecordingHost::default();
        std::env::set_var(
            "KB_TEST_LOCAL_KEK_LOG",
            "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
        );
        let config = r#"{"keks": [{"id": "logged", "env": "KB_TEST_LOCAL_KEK_LOG"}]}"#;
        new_backend(config, host.clone().into_box()).unwrap();
        let lines = host.lines();
        assert!(
            lines.iter().any(|line| line.contains("logged")),
            "{lines:?}"
        );
        assert!(lines.iter().all(|line| !line.contains("AQEB")), "{lines:?}");
    }

    #[test]
    fn works_through_the_ffi_wrapper() {
        let backend = keybroker_plugin_abi::into_ffi(ring("k2"));
        let info = backend.info().unwrap();
        assert_eq!(info.name.as_str(), NAME);
    }
}
