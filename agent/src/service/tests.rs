#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use keybroker_agent_protocol::xks::*;
use keybroker_agent_protocol::{decode, encode, Frame, Operation, Reply, Request, SecretBytes};
use zeroize::Zeroizing;

use super::*;
use crate::clock::ManualClock;
use crate::keys::{AgentKey, KeyStore};
use crate::policy::{Allowlist, RateLimit};

const PLAINTEXT: &[u8] = b"TOP-SECRET-PLAINTEXT-do-not-log";
const AAD: &[u8] = b"tenant=acme,key=data";

struct Harness {
    clock: Arc<ManualClock>,
    service: Service,
    next_id: std::cell::Cell<u64>,
}

fn harness_with(rate_limit: RateLimit) -> Harness {
    let mut keys = KeyStore::new();
    for (name, byte) in [("data", 1u8), ("logs", 2), ("billing", 3)] {
        keys.insert(name, AgentKey::new(Zeroizing::new([byte; 32])))
            .unwrap();
    }
    let mut allowlist = Allowlist::new();
    allowlist
        .allow("acme", &["data".to_owned(), "logs".to_owned()])
        .unwrap();
    allowlist.allow("acme-ops", &["*".to_owned()]).unwrap();
    let clock = Arc::new(ManualClock::new());
    let service = Service::new("acme-dc1", keys, allowlist, rate_limit, clock.clone());
    Harness {
        clock,
        service,
        next_id: std::cell::Cell::new(1),
    }
}

fn harness() -> Harness {
    harness_with(RateLimit {
        per_second: 1000,
        burst: 1000,
    })
}

fn metadata(tenant: &str) -> RequestMetadata {
    RequestMetadata::keybroker("entity:42", "transit/encrypt", "kms-req-7", tenant)
}

fn encrypt_body(tenant: &str, plaintext: &[u8], aad: Option<&[u8]>) -> Operation {
    Operation::Encrypt(EncryptRequest {
        request_metadata: metadata(tenant),
        plaintext: SecretBytes::new(plaintext.to_vec()),
        encryption_algorithm: EncryptionAlgorithm::AesGcm,
        additional_authenticated_data: aad.map(<[u8]>::to_vec),
        ciphertext_data_integrity_value_algorithm: None,
    })
}

fn decrypt_body(tenant: &str, encrypted: &EncryptResponse, aad: Option<&[u8]>) -> DecryptRequest {
    DecryptRequest {
        request_metadata: metadata(tenant),
        encryption_algorithm: EncryptionAlgorithm::AesGcm,
        ciphertext: encrypted.ciphertext.clone(),
        initialization_vector: encrypted.initialization_vector.clone(),
        authentication_tag: encrypted.authentication_tag.clone(),
        additional_authenticated_data: aad.map(<[u8]>::to_vec),
        ciphertext_metadata: None,
    }
}

fn metadata_body(tenant: &str) -> Operation {
    Operation::GetKeyMetadata(GetKeyMetadataRequest {
        request_metadata: metadata(tenant),
    })
}

fn health_body() -> Operation {
    Operation::Health(HealthRequest {
        request_metadata: HealthRequestMetadata {
            kms_request_id: "health-1".into(),
            kms_operation: "KmsHealthCheck".into(),
            keybroker_tenant_id: None,
        },
    })
}

impl Harness {
    /// Sends `operation` as the broker would: encoded as a request frame, decoded on the agent
    /// side, handled, and the response frame encoded and decoded again.
    fn call(&self, tenant: &str, key_id: &str, operation: Operation) -> Reply {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let text = encode(&Frame::Request(Request {
            id,
            tenant: tenant.into(),
            key_id: key_id.into(),
            deadline_ms: 250,
            operation,
        }))
        .unwrap();
        let Frame::Request(request) = decode(&text).unwrap() else {
            panic!("not a request frame");
        };
        let response = self.service.handle(&request, self.clock.now());
        let Frame::Response(response) =
            decode(&encode(&Frame::Response(response)).unwrap()).unwrap()
        else {
            panic!("not a response frame");
        };
        assert_eq!(response.id, id);
        response.result
    }

    fn encrypt(
        &self,
        tenant: &str,
        key_id: &str,
        plaintext: &[u8],
        aad: Option<&[u8]>,
    ) -> EncryptResponse {
        match self.call(tenant, key_id, encrypt_body(tenant, plaintext, aad)) {
            Reply::Encrypt(response) => response,
            other => panic!("encrypt failed: {other:?}"),
        }
    }

    fn decrypt(&self, tenant: &str, key_id: &str, request: DecryptRequest) -> Reply {
        self.call(tenant, key_id, Operation::Decrypt(request))
    }
}

fn error_of(reply: Reply) -> XksError {
    match reply {
        Reply::Error(error) => error,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn error_name(reply: Reply) -> XksErrorName {
    error_of(reply).error_name
}

fn plaintext_of(reply: Reply) -> Vec<u8> {
    match reply {
        Reply::Decrypt(response) => response.plaintext.expose().to_vec(),
        other => panic!("expected a plaintext, got {other:?}"),
    }
}

#[test]
fn encrypt_then_decrypt_round_trips_through_the_wire_frames() {
    let harness = harness();
    for aad in [Some(AAD), None] {
        let encrypted = harness.encrypt("acme", "data", PLAINTEXT, aad);
        assert_eq!(encrypted.ciphertext.len(), PLAINTEXT.len());
        assert_ne!(encrypted.ciphertext, PLAINTEXT);
        assert_eq!(encrypted.initialization_vector.len(), IV_BYTES);
        assert_eq!(encrypted.authentication_tag.len(), TAG_BYTES);
        assert_eq!(encrypted.ciphertext_metadata, None);
        assert_eq!(encrypted.ciphertext_data_integrity_value, None);
        let reply = harness.decrypt("acme", "data", decrypt_body("acme", &encrypted, aad));
        assert_eq!(plaintext_of(reply), PLAINTEXT);
    }
    // An empty plaintext works too.
    let encrypted = harness.encrypt("acme", "logs", b"", Some(AAD));
    let reply = harness.decrypt("acme", "logs", decrypt_body("acme", &encrypted, Some(AAD)));
    assert!(plaintext_of(reply).is_empty());
}

#[test]
fn a_ciphertext_decrypts_only_under_the_key_that_made_it() {
    let harness = harness();
    let encrypted = harness.encrypt("acme", "data", PLAINTEXT, Some(AAD));
    let reply = harness.decrypt("acme", "logs", decrypt_body("acme", &encrypted, Some(AAD)));
    assert_eq!(error_name(reply), XksErrorName::InvalidCiphertextException);
}

#[test]
fn same_plaintext_encrypts_differently_each_time() {
    let harness = harness();
    let first = harness.encrypt("acme", "data", PLAINTEXT, Some(AAD));
    let second = harness.encrypt("acme", "data", PLAINTEXT, Some(AAD));
    assert_ne!(first.initialization_vector, second.initialization_vector);
    assert_ne!(first.ciphertext, second.ciphertext);
    assert_ne!(first.authentication_tag, second.authentication_tag);
}

#[test]
fn aad_mismatch_is_invalid_ciphertext() {
    let harness = harness();
    let encrypted = harness.encrypt("acme", "data", PLAINTEXT, Some(AAD));
    for aad in [Some(&b"tenant=acme,key=logs"[..]), None, Some(&b""[..])] {
        let reply = harness.decrypt("acme", "data", decrypt_body("acme", &encrypted, aad));
        let error = error_of(reply);
        assert_eq!(error.error_name, XksErrorName::InvalidCiphertextException);
        assert_eq!(
            error.error_message.as_deref(),
            Some(INVALID_CIPHERTEXT_MESSAGE)
        );
    }
    // Encrypted without AAD, decrypted with some: refused as well.
    let encrypted = harness.encrypt("acme", "data", PLAINTEXT, None);
    let reply = harness.decrypt("acme", "data", decrypt_body("acme", &encrypted, Some(AAD)));
    assert_eq!(error_name(reply), XksErrorName::InvalidCiphertextException);
}

#[test]
fn tampered_ciphertext_tag_or_iv_is_invalid_ciphertext() {
    let harness = harness();
    let encrypted = harness.encrypt("acme", "data", PLAINTEXT, Some(AAD));
    let tamperings: [fn(&mut DecryptRequest); 5] = [
        |request| request.ciphertext[0] ^= 0x01,
        |request| request.ciphertext.truncate(request.ciphertext.len() - 1),
        |request| request.authentication_tag[15] ^= 0x80,
        |request| request.initialization_vector[0] ^= 0x01,
        |request| request.ciphertext_metadata = Some(b"v=2".to_vec()),
    ];
    for (index, tamper) in tamperings.into_iter().enumerate() {
        let mut request = decrypt_body("acme", &encrypted, Some(AAD));
        tamper(&mut request);
        let reply = harness.decrypt("acme", "data", request);
        assert_eq!(
            error_name(reply),
            XksErrorName::InvalidCiphertextException,
            "tampering {index}"
        );
    }
    // Untampered still decrypts (the harness did not break the ciphertext itself).
    let reply = harness.decrypt("acme", "data", decrypt_body("acme", &encrypted, Some(AAD)));
    assert_eq!(plaintext_of(reply), PLAINTEXT);
}

#[test]
fn malformed_iv_tag_or_sizes_are_validation_errors() {
    let harness = harness();
    let encrypted = harness.encrypt("acme", "data", PLAINTEXT, Some(AAD));
    let malformations: [fn(&mut DecryptRequest); 6] = [
        |request| request.initialization_vector.push(0),
        |request| request.initialization_vector = vec![0; 16],
        |request| request.initialization_vector.clear(),
        |request| request.authentication_tag.truncate(12),
        |request| request.ciphertext = vec![0; MAX_PLAINTEXT_BYTES + 1],
        |request| request.additional_authenticated_data = Some(vec![0; MAX_AAD_BYTES + 1]),
    ];
    for (index, malform) in malformations.into_iter().enumerate() {
        let mut request = decrypt_body("acme", &encrypted, Some(AAD));
        malform(&mut request);
        let reply = harness.decrypt("acme", "data", request);
        assert_eq!(
            error_name(reply),
            XksErrorName::ValidationException,
            "malformation {index}"
        );
    }
}

#[test]
fn unsupported_algorithm_on_the_wire_is_answered_with_a_validation_error() {
    // The protocol's types cannot hold another algorithm, so such a frame fails to decode;
    // the service still answers it by id.
    let harness = harness();
    let text = encode(&Frame::Request(Request {
        id: 77,
        tenant: "acme".into(),
        key_id: "data".into(),
        deadline_ms: 250,
        operation: encrypt_body("acme", PLAINTEXT, None),
    }))
    .unwrap()
    .replace("\"AES_GCM\"", "\"AES_CBC\"");
    assert!(decode(&text).is_err());
    let response = harness.service.handle_undecodable(&text).unwrap();
    assert_eq!(response.id, 77);
    assert_eq!(
        error_name(response.result),
        XksErrorName::ValidationException
    );
    // Not a request, or no id: left to the transport.
    assert!(harness
        .service
        .handle_undecodable("{\"type\":\"heartbeat\",\"id\":1}")
        .is_none());
    assert!(harness
        .service
        .handle_undecodable("{\"type\":\"request\"}")
        .is_none());
    assert!(harness.service.handle_undecodable("not json").is_none());
    assert_eq!(harness.service.stats().refused.invalid_request, 1);
}

#[test]
fn data_integrity_value_is_present_when_asked_and_matches_the_protocol_helper() {
    let harness = harness();
    for aad in [Some(AAD), None] {
        let Operation::Encrypt(mut body) = encrypt_body("acme", PLAINTEXT, aad) else {
            unreachable!()
        };
        body.ciphertext_data_integrity_value_algorithm = Some(DataIntegrityAlgorithm::Sha256);
        let Reply::Encrypt(response) = harness.call("acme", "data", Operation::Encrypt(body))
        else {
            panic!("encrypt failed")
        };
        let value = response.ciphertext_data_integrity_value.clone().unwrap();
        assert_eq!(value.len(), 32);
        assert_eq!(
            value,
            ciphertext_data_integrity_value(
                aad,
                None,
                &response.initialization_vector,
                &response.ciphertext,
                &response.authentication_tag
            )
        );
        assert!(response.data_integrity_value_matches(aad));
    }
}

#[test]
fn plaintext_or_aad_over_the_xks_limit_is_a_validation_error() {
    let harness = harness();
    let largest = vec![0x5a; MAX_PLAINTEXT_BYTES];
    let largest_aad = vec![0x33; MAX_AAD_BYTES];
    let encrypted = harness.encrypt("acme", "data", &largest, Some(&largest_aad));
    let reply = harness.decrypt(
        "acme",
        "data",
        decrypt_body("acme", &encrypted, Some(&largest_aad)),
    );
    assert_eq!(plaintext_of(reply), largest);

    let reply = harness.call(
        "acme",
        "data",
        encrypt_body("acme", &[0; MAX_PLAINTEXT_BYTES + 1], None),
    );
    let error = error_of(reply);
    assert_eq!(error.error_name, XksErrorName::ValidationException);
    assert!(error.error_message.unwrap().contains("4300"));
    let reply = harness.call(
        "acme",
        "data",
        encrypt_body("acme", PLAINTEXT, Some(&[0; MAX_AAD_BYTES + 1])),
    );
    assert_eq!(error_name(reply), XksErrorName::ValidationException);
}

#[test]
fn key_metadata_reports_an_enabled_aes_256_key() {
    let harness = harness();
    let Reply::GetKeyMetadata(response) = harness.call("acme", "data", metadata_body("acme"))
    else {
        panic!("metadata failed")
    };
    assert_eq!(response.key_spec, KeySpec::Aes256);
    assert_eq!(response.key_usage, [KeyUsage::Encrypt, KeyUsage::Decrypt]);
    assert_eq!(response.key_status, KeyStatus::Enabled);
}

#[test]
fn health_names_the_agent_for_any_tenant() {
    let harness = harness();
    let Reply::Health(response) = harness.call("", "", health_body()) else {
        panic!("health failed")
    };
    assert_eq!(response.xks_proxy_vendor, "keybroker");
    assert_eq!(
        response.xks_proxy_model,
        format!("keybroker-agent {}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(response.ekm_fleet_details.len(), 1);
    assert_eq!(response.ekm_fleet_details[0].id, "acme-dc1");
    assert_eq!(
        response.ekm_fleet_details[0].health_status,
        HealthStatus::Active
    );
}

#[test]
fn unknown_key_is_key_not_found_for_a_tenant_allowed_every_key() {
    let harness = harness();
    let error = error_of(harness.call(
        "acme-ops",
        "nope",
        encrypt_body("acme-ops", PLAINTEXT, None),
    ));
    assert_eq!(error.error_name, XksErrorName::KeyNotFoundException);
    assert_eq!(error.error_message.as_deref(), Some(KEY_NOT_FOUND_MESSAGE));
    // The same tenant reaches the existing keys, including one no other tenant may use.
    harness.encrypt("acme-ops", "billing", PLAINTEXT, None);
}

#[test]
fn disallowed_tenant_is_access_denied_alike_whether_or_not_the_key_exists() {
    let harness = harness();
    let cases = [
        // A key that exists, but is not granted to this tenant.
        ("acme", "billing"),
        // A key that does not exist at all.
        ("acme", "no-such-key"),
        // A tenant the agent does not know, for an existing and a missing key.
        ("globex", "data"),
        ("globex", "no-such-key"),
    ];
    let errors: Vec<XksError> = cases
        .iter()
        .flat_map(|(tenant, key)| {
            [
                error_of(harness.call(tenant, key, encrypt_body(tenant, PLAINTEXT, None))),
                error_of(harness.call(tenant, key, metadata_body(tenant))),
            ]
        })
        .collect();
    for error in &errors {
        assert_eq!(error, &errors[0]);
    }
    assert_eq!(errors[0].error_name, XksErrorName::AccessDeniedException);
    assert_eq!(
        errors[0].error_message.as_deref(),
        Some(ACCESS_DENIED_MESSAGE)
    );
    let stats = harness.service.stats();
    assert_eq!(stats.refused.access_denied, 8);
    assert_eq!(stats.refused.key_not_found, 0);
}

#[test]
fn metadata_tenant_differing_from_the_request_tenant_is_refused() {
    let harness = harness();
    let reply = harness.call("acme", "data", encrypt_body("acme-ops", PLAINTEXT, None));
    assert_eq!(error_name(reply), XksErrorName::ValidationException);
    // No tenant in the metadata is fine.
    let Operation::Encrypt(mut body) = encrypt_body("acme", PLAINTEXT, None) else {
        unreachable!()
    };
    body.request_metadata.keybroker_tenant_id = None;
    assert!(matches!(
        harness.call("acme", "data", Operation::Encrypt(body)),
        Reply::Encrypt(_)
    ));
}

#[test]
fn rate_cap_throttles_after_the_burst_and_recovers_after_time_passes() {
    let harness = harness_with(RateLimit {
        per_second: 2,
        burst: 3,
    });
    for _ in 0..3 {
        harness.encrypt("acme", "data", PLAINTEXT, None);
    }
    let error = error_of(harness.call("acme", "data", encrypt_body("acme", PLAINTEXT, None)));
    assert_eq!(error.error_name, XksErrorName::ThrottlingException);
    assert_eq!(error.error_message.as_deref(), Some(THROTTLED_MESSAGE));
    assert_eq!(
        error_name(harness.call("acme", "data", metadata_body("acme"))),
        XksErrorName::ThrottlingException
    );
    // Health is never throttled; refused tenants take no token and still hear "denied".
    assert!(matches!(
        harness.call("", "", health_body()),
        Reply::Health(_)
    ));
    assert_eq!(
        error_name(harness.call("globex", "data", metadata_body("globex"))),
        XksErrorName::AccessDeniedException
    );
    // Half a second at 2/s is one token.
    harness.clock.advance(Duration::from_millis(500));
    harness.encrypt("acme", "data", PLAINTEXT, None);
    assert_eq!(
        error_name(harness.call("acme", "data", encrypt_body("acme", PLAINTEXT, None))),
        XksErrorName::ThrottlingException
    );
    // A long pause refills the whole burst.
    harness.clock.advance(Duration::from_secs(10));
    for _ in 0..3 {
        harness.encrypt("acme", "data", PLAINTEXT, None);
    }
    assert_eq!(harness.service.stats().refused.throttled, 3);
}

#[test]
fn expired_deadline_is_answered_with_dependency_timeout() {
    let harness = harness();
    let request = Request {
        id: 9,
        tenant: "acme".into(),
        key_id: "data".into(),
        deadline_ms: 250,
        operation: encrypt_body("acme", PLAINTEXT, None),
    };
    // A software key is answered inline (only HSM keys may block).
    assert!(!harness.service.may_block(&request));
    let received = harness.clock.now();
    harness.clock.advance(Duration::from_millis(249));
    assert!(matches!(
        harness.service.handle(&request, received).result,
        Reply::Encrypt(_)
    ));
    harness.clock.advance(Duration::from_millis(1));
    let response = harness.service.handle(&request, received);
    assert_eq!(response.id, 9);
    let error = error_of(response.result);
    assert_eq!(error.error_name, XksErrorName::DependencyTimeoutException);
    assert_eq!(error.error_message.as_deref(), Some(DEADLINE_MESSAGE));
    let stats = harness.service.stats();
    assert_eq!(stats.refused.deadline_expired, 1);
    assert_eq!(stats.served.encrypt, 1);
}

#[test]
fn stats_count_served_operations_and_refusals_by_reason() {
    let harness = harness_with(RateLimit {
        per_second: 1,
        burst: 6,
    });
    let encrypted = harness.encrypt("acme", "data", PLAINTEXT, None);
    harness.encrypt("acme", "logs", PLAINTEXT, None);
    assert!(matches!(
        harness.decrypt("acme", "data", decrypt_body("acme", &encrypted, None)),
        Reply::Decrypt(_)
    ));
    harness.decrypt("acme", "data", decrypt_body("acme", &encrypted, Some(AAD)));
    let mut short_iv = decrypt_body("acme", &encrypted, None);
    short_iv.initialization_vector.pop();
    harness.decrypt("acme", "data", short_iv);
    harness.call("acme", "data", metadata_body("acme"));
    harness.call("", "", health_body());
    harness.call("globex", "data", metadata_body("globex"));
    harness.call("acme-ops", "gone", metadata_body("acme-ops"));
    // Six tokens used (two encrypts, three decrypts, one metadata; the key-not-found took
    // none): this one is throttled.
    harness.call("acme", "data", metadata_body("acme"));

    let stats = harness.service.stats();
    assert_eq!(
        stats.served,
        crate::stats::OperationCounts {
            get_key_metadata: 1,
            encrypt: 2,
            decrypt: 1,
            health: 1,
        }
    );
    assert_eq!(
        stats.refused,
        crate::stats::RefusalCounts {
            access_denied: 1,
            key_not_found: 1,
            throttled: 1,
            invalid_request: 1,
            invalid_ciphertext: 1,
            ..Default::default()
        }
    );
    assert_eq!(stats.served.total(), 5);
    assert_eq!(stats.refused.total(), 5);
}

thread_local! {
    /// The log lines written by this thread.
    static THREAD_LOG: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Writes formatted log output into the writing thread's [`THREAD_LOG`].
struct ThreadLogWriter;

impl std::io::Write for ThreadLogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        THREAD_LOG.with(|log| log.borrow_mut().extend_from_slice(bytes));
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs, once per test binary, a global subscriber writing each thread's events to that
/// thread's [`THREAD_LOG`]. (A subscriber scoped with `with_default` is unreliable here:
/// tests running in parallel without one can leave the call sites cached as disabled.)
fn capture_logs() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(|| ThreadLogWriter)
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
    });
    THREAD_LOG.with(|log| log.borrow_mut().clear());
}

#[test]
fn every_operation_is_logged_without_plaintext_ciphertext_or_key() {
    capture_logs();
    let harness = harness();
    let encrypted = harness.encrypt("acme", "data", PLAINTEXT, Some(AAD));
    harness.decrypt("acme", "data", decrypt_body("acme", &encrypted, Some(AAD)));
    harness.call(
        "globex",
        "data",
        encrypt_body("globex", PLAINTEXT, Some(AAD)),
    );
    let log = THREAD_LOG.with(|log| String::from_utf8(log.borrow().clone()).unwrap());
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 3, "{log}");
    for (line, (operation, outcome, tenant)) in lines.iter().zip([
        ("encrypt", "served", "acme"),
        ("decrypt", "served", "acme"),
        ("encrypt", "access_denied", "globex"),
    ]) {
        for expected in [
            "agent_id=acme-dc1".to_owned(),
            format!("operation={operation}"),
            format!("outcome=\"{outcome}\""),
            format!("tenant=\"{tenant}\""),
            "key=\"data\"".to_owned(),
            "request_id=".to_owned(),
            "kms_request_id=\"kms-req-7\"".to_owned(),
        ] {
            assert!(line.contains(&expected), "{expected} missing in {line}");
        }
    }
    use base64::Engine as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    for secret in [
        String::from_utf8_lossy(PLAINTEXT).into_owned(),
        "TOP-SECRET".to_owned(),
        b64(PLAINTEXT),
        String::from_utf8_lossy(AAD).into_owned(),
        b64(&encrypted.ciphertext),
        b64(&encrypted.authentication_tag),
        format!("{:?}", &encrypted.ciphertext[..4]),
    ] {
        assert!(!log.contains(&secret), "{secret} in {log}");
    }
}

#[test]
fn debug_of_the_service_shows_key_names_only() {
    let harness = harness();
    let shown = format!("{:?}", harness.service);
    assert!(
        shown.contains("data") && shown.contains("acme-dc1"),
        "{shown}"
    );
    assert!(
        !shown.contains("[1, 1") && !shown.contains("AQEB"),
        "{shown}"
    );
}
