//! Keys in an HSM: the agent's `Service` over a real SoftHSM2 token (through the workspace's
//! PKCS#11 backend), answering XKS requests as it does for software keys; and the binary
//! refusing to start when an HSM key cannot be bound.
//!
//! Every test of this binary uses the one SoftHSM store of the process
//! ([`SoftHsm::shared`]: the module reads `SOFTHSM2_CONF` once per process), each with a
//! token of its own. Needs `softhsm2` and `opensc`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keybroker_agent::{Config, ConfigError, ManualClock, Service};
use keybroker_agent_protocol::xks::{
    DataIntegrityAlgorithm, DecryptRequest, EncryptRequest, EncryptResponse, EncryptionAlgorithm,
    GetKeyMetadataRequest, KeySpec, KeyStatus, KeyUsage, RequestMetadata, XksErrorName,
};
use keybroker_agent_protocol::{Operation, Reply, Request, SecretBytes};
use keybroker_softhsm_harness::{unique_label, SoftHsm};

const PIN: &str = "agent-hsm-pin-1234";
const PLAINTEXT: &[u8] = b"TOP-SECRET-PLAINTEXT-do-not-log";
const AAD: &[u8] = b"tenant=acme,key=data";

/// A token with an AES-256 key `acme-kek` (id `a1b2`) and an AES-128 key `short`, and an
/// agent config over it (`data` in the HSM, named by `backend_key`; `acme` may use it).
struct Token {
    label: String,
    pin_file: PathBuf,
    dir: tempfile::TempDir,
}

impl Token {
    fn new() -> Self {
        let softhsm = SoftHsm::shared();
        let label = unique_label("agent");
        let pin_file = softhsm.add_token(&label, PIN);
        softhsm.create_aes_key(&label, "acme-kek", "a1b2");
        softhsm.create_aes128_key(&label, "short", "c3d4");
        Self {
            label,
            pin_file,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn config_text(&self, backend_key: &str, pin_file: &Path) -> String {
        let softhsm = SoftHsm::shared();
        format!(
            r#"
agent_id = "acme-dc1"
broker = "wss://broker.example:8201"
broker_ca = "ca.pem"
secret_file = "secret"

[[keys]]
name = "data"
hsm = "{backend_key}"

[[allow]]
tenant = "acme"
keys = ["data"]

[hsm]
module = "{}"
module_sha256 = "{}"
token_label = "{}"
pin_file = "{}"
"#,
            softhsm.module_path().display(),
            softhsm.module_sha256(),
            self.label,
            pin_file.display()
        )
    }

    fn config(&self, backend_key: &str) -> Config {
        Config::parse(
            &self.config_text(backend_key, &self.pin_file),
            &self.dir.path().join("agent.toml"),
        )
        .unwrap()
    }

    fn service(&self, backend_key: &str) -> Result<Service, ConfigError> {
        self.config(backend_key)
            .service(&|_| None, Arc::new(ManualClock::new()))
    }
}

fn metadata() -> RequestMetadata {
    RequestMetadata::keybroker("entity:42", "transit/encrypt", "kms-req-7", "acme")
}

fn call(service: &Service, operation: Operation) -> Reply {
    let request = Request {
        id: 1,
        tenant: "acme".into(),
        key_id: "data".into(),
        deadline_ms: 5_000,
        operation,
    };
    service.handle(&request, Instant::now()).result
}

fn encrypt(service: &Service, plaintext: &[u8], aad: Option<&[u8]>) -> EncryptResponse {
    let reply = call(
        service,
        Operation::Encrypt(EncryptRequest {
            request_metadata: metadata(),
            plaintext: SecretBytes::new(plaintext.to_vec()),
            encryption_algorithm: EncryptionAlgorithm::AesGcm,
            additional_authenticated_data: aad.map(<[u8]>::to_vec),
            ciphertext_data_integrity_value_algorithm: Some(DataIntegrityAlgorithm::Sha256),
        }),
    );
    match reply {
        Reply::Encrypt(response) => response,
        other => panic!("encrypt failed: {other:?}"),
    }
}

fn decrypt(service: &Service, encrypted: &EncryptResponse, aad: Option<&[u8]>) -> Reply {
    call(
        service,
        Operation::Decrypt(DecryptRequest {
            request_metadata: metadata(),
            encryption_algorithm: EncryptionAlgorithm::AesGcm,
            ciphertext: encrypted.ciphertext.clone(),
            initialization_vector: encrypted.initialization_vector.clone(),
            authentication_tag: encrypted.authentication_tag.clone(),
            additional_authenticated_data: aad.map(<[u8]>::to_vec),
            ciphertext_metadata: None,
        }),
    )
}

fn plaintext_of(reply: Reply) -> Vec<u8> {
    match reply {
        Reply::Decrypt(response) => response.plaintext.expose().to_vec(),
        other => panic!("decrypt failed: {other:?}"),
    }
}

fn error_of(reply: Reply) -> (XksErrorName, String) {
    match reply {
        Reply::Error(error) => (error.error_name, error.error_message.unwrap_or_default()),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn an_hsm_key_serves_xks_encrypt_and_decrypt_like_a_software_key() {
    let token = Token::new();
    for backend_key in ["label:acme-kek", "id:a1b2"] {
        let service = token.service(backend_key).unwrap();
        // Its requests are answered off the connection's thread (a token may be slow).
        let request = |key_id: &str| Request {
            id: 1,
            tenant: "acme".into(),
            key_id: key_id.into(),
            deadline_ms: 5_000,
            operation: Operation::GetKeyMetadata(GetKeyMetadataRequest {
                request_metadata: metadata(),
            }),
        };
        assert!(service.may_block(&request("data")));
        assert!(!service.may_block(&request("unknown")));

        let encrypted = encrypt(&service, PLAINTEXT, Some(AAD));
        assert_eq!(encrypted.initialization_vector.len(), 12);
        assert_eq!(encrypted.authentication_tag.len(), 16);
        assert_eq!(encrypted.ciphertext.len(), PLAINTEXT.len());
        assert_ne!(encrypted.ciphertext, PLAINTEXT);
        assert_eq!(
            encrypted.ciphertext_data_integrity_value.as_deref(),
            Some(&encrypted.compute_data_integrity_value(Some(AAD))[..])
        );
        assert_eq!(
            plaintext_of(decrypt(&service, &encrypted, Some(AAD))),
            PLAINTEXT
        );

        // A fresh IV every time: the same plaintext twice gives two different ciphertexts.
        let again = encrypt(&service, PLAINTEXT, Some(AAD));
        assert_ne!(again.initialization_vector, encrypted.initialization_vector);
        assert_ne!(again.ciphertext, encrypted.ciphertext);

        // No AAD, and an empty plaintext, round trip too.
        let bare = encrypt(&service, b"", None);
        assert_eq!(plaintext_of(decrypt(&service, &bare, None)), b"");

        // A tampered tag, ciphertext or IV, a wrong or missing AAD: InvalidCiphertext.
        let mut tampered = encrypted.clone();
        tampered.authentication_tag[0] ^= 1;
        let mut flipped = encrypted.clone();
        flipped.ciphertext[0] ^= 1;
        let mut moved = encrypted.clone();
        moved.initialization_vector[11] ^= 1;
        for (case, reply) in [
            ("tag", decrypt(&service, &tampered, Some(AAD))),
            ("ciphertext", decrypt(&service, &flipped, Some(AAD))),
            ("iv", decrypt(&service, &moved, Some(AAD))),
            ("aad", decrypt(&service, &encrypted, Some(b"tenant=beta"))),
            ("no aad", decrypt(&service, &encrypted, None)),
        ] {
            let (name, _) = error_of(reply);
            assert_eq!(name, XksErrorName::InvalidCiphertextException, "{case}");
        }

        // The XKS limits apply as for software keys.
        let too_long = call(
            &service,
            Operation::Encrypt(EncryptRequest {
                request_metadata: metadata(),
                plaintext: SecretBytes::new(vec![0; 4301]),
                encryption_algorithm: EncryptionAlgorithm::AesGcm,
                additional_authenticated_data: None,
                ciphertext_data_integrity_value_algorithm: None,
            }),
        );
        assert_eq!(error_of(too_long).0, XksErrorName::ValidationException);

        match call(
            &service,
            Operation::GetKeyMetadata(GetKeyMetadataRequest {
                request_metadata: metadata(),
            }),
        ) {
            Reply::GetKeyMetadata(metadata) => {
                assert_eq!(metadata.key_spec, KeySpec::Aes256);
                assert_eq!(metadata.key_usage, [KeyUsage::Encrypt, KeyUsage::Decrypt]);
                assert_eq!(metadata.key_status, KeyStatus::Enabled);
            }
            other => panic!("metadata failed: {other:?}"),
        }
        let stats = service.stats();
        assert_eq!(stats.served.encrypt, 3);
        assert_eq!(stats.refused.invalid_ciphertext, 5);
    }
}

#[test]
fn a_ciphertext_of_one_binding_decrypts_under_another_of_the_same_object() {
    // The agent restarting (a new binding, a new session) still decrypts what it encrypted.
    let token = Token::new();
    let first = token.service("label:acme-kek").unwrap();
    let encrypted = encrypt(&first, PLAINTEXT, Some(AAD));
    drop(first);
    let second = token.service("id:a1b2").unwrap();
    assert_eq!(
        plaintext_of(decrypt(&second, &encrypted, Some(AAD))),
        PLAINTEXT
    );
}

#[test]
fn a_missing_or_wrong_hsm_object_stops_the_start_naming_the_key() {
    let token = Token::new();
    for (backend_key, expected) in [
        ("label:nope", "key not found"),
        ("id:ffff", "key not found"),
        ("label:short", "aes256-gcm96"),
    ] {
        let error = token.service(backend_key).unwrap_err();
        assert!(matches!(error, ConfigError::Key { .. }), "{error:?}");
        let message = error.to_string();
        assert!(
            message.contains(&format!("key \"data\": HSM object {backend_key}")),
            "{message}"
        );
        assert!(message.contains(expected), "{message}");
    }
}

#[test]
fn a_wrong_pin_or_token_stops_the_start_without_showing_the_pin() {
    let token = Token::new();
    let wrong_pin = token.dir.path().join("wrong.pin");
    std::fs::write(&wrong_pin, "not-the-pin-9876\n").unwrap();
    std::fs::set_permissions(
        &wrong_pin,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let config = Config::parse(
        &token.config_text("label:acme-kek", &wrong_pin),
        &token.dir.path().join("agent.toml"),
    )
    .unwrap();
    let error = config.key_store(&|_| None).unwrap_err();
    assert!(matches!(error, ConfigError::Hsm { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("CKR_PIN_INCORRECT"), "{message}");
    assert!(
        !message.contains("not-the-pin") && !message.contains(PIN),
        "{message}"
    );

    let text = token
        .config_text("label:acme-kek", &token.pin_file)
        .replace(
            &format!("token_label = \"{}\"", token.label),
            "token_label = \"no-such-token\"",
        );
    let config = Config::parse(&text, &token.dir.path().join("agent.toml")).unwrap();
    let message = config.key_store(&|_| None).unwrap_err().to_string();
    assert!(
        message.contains("hsm: token \"no-such-token\""),
        "{message}"
    );
}

#[test]
fn a_vanished_token_is_a_dependency_failure_and_service_resumes_when_it_returns() {
    let token = Token::new();
    let service = token.service("label:acme-kek").unwrap();
    let encrypted = encrypt(&service, PLAINTEXT, Some(AAD));

    SoftHsm::shared().hide_token(&token.label);
    let reply = call(
        &service,
        Operation::Encrypt(EncryptRequest {
            request_metadata: metadata(),
            plaintext: SecretBytes::new(PLAINTEXT.to_vec()),
            encryption_algorithm: EncryptionAlgorithm::AesGcm,
            additional_authenticated_data: Some(AAD.to_vec()),
            ciphertext_data_integrity_value_algorithm: None,
        }),
    );
    let (name, message) = error_of(reply);
    assert_eq!(name, XksErrorName::DependencyTimeoutException, "{message}");
    assert!(message.contains("HSM is unavailable"), "{message}");
    assert!(!message.contains(PIN), "{message}");
    let (name, _) = error_of(decrypt(&service, &encrypted, Some(AAD)));
    assert_eq!(name, XksErrorName::DependencyTimeoutException);
    assert_eq!(service.stats().refused.key_unavailable, 2);

    SoftHsm::shared().restore_token(&token.label);
    // The backend re-initialises the module on a later call, at most every 500 ms and only
    // when no call is in flight on the module, which the other tests of this binary share
    // and call at the same time: how soon that comes is the machine's load, not this
    // token's. Poll until it serves again, with a generous deadline (it was 50 tries).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let reply = decrypt(&service, &encrypted, Some(AAD));
        if matches!(reply, Reply::Decrypt(_)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the HSM key did not come back within 60 s; the last reply: {reply:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        plaintext_of(decrypt(&service, &encrypted, Some(AAD))),
        PLAINTEXT
    );
}

#[test]
fn the_binary_exits_2_when_an_hsm_key_cannot_be_bound() {
    let token = Token::new();
    let dir = token.dir.path();
    let secret = dir.join("secret");
    let genkey = Command::new(env!("CARGO_BIN_EXE_keybroker-agent"))
        .args(["genkey", "--secret"])
        .arg(&secret)
        .output()
        .unwrap();
    assert!(genkey.status.success());
    std::fs::write(dir.join("ca.pem"), "not a certificate").unwrap();
    let softhsm = SoftHsm::shared();
    let (conf_variable, conf) = softhsm.env();
    let output = Command::new(env!("CARGO_BIN_EXE_keybroker-agent"))
        .args(["--broker", "wss://127.0.0.1:9", "--agent-id", "acme-dc1"])
        .arg("--broker-ca")
        .arg(dir.join("ca.pem"))
        .arg("--secret-file")
        .arg(&secret)
        .args([
            "--key-hsm",
            "data=label:missing-kek",
            "--allow",
            "acme=data",
        ])
        .arg("--hsm-module")
        .arg(softhsm.module_path())
        .args(["--hsm-module-sha256", &softhsm.module_sha256()])
        .args(["--hsm-token", &token.label])
        .arg("--hsm-pin-file")
        .arg(&token.pin_file)
        .env(conf_variable, conf)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("key \"data\": HSM object label:missing-kek"),
        "{stderr}"
    );
    assert!(!stderr.contains(PIN), "{stderr}");
}
