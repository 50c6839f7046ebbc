//! The plugin against the in-repo Key Vault fake (`tests/azure-fake`), with the real SDK,
//! through the ABI trait object the broker uses.

use std::time::{Duration, Instant};

use keybroker_azure_fake::{AzureFake, KeySpec, Operation};
use keybroker_plugin_abi::{capability, BackendBox, CreateKeyRequest, ErrorKind};
use keybroker_plugin_conformance::{
    calls::{
        assert_error, assert_key_not_found, assert_round_trip, bind_for_test_tenant, create,
        create_with_id, decrypt, delete, encrypt, instance, instance_with, public_key, rstring,
        signature_schemes, until_available, OTHER_TENANT, TENANT,
    },
    outage::Outage,
    RecordingHost,
};
use serde_json::json;
use sha2::Digest as _;

use crate::backend::new_backend;

const AZURE_TENANT: &str = "kb-azure-tenant";
const CLIENT_ID: &str = "kb-client";
const CLIENT_SECRET: &str = "kb-client-secret-value";
const SECRET_ENV: &str = "KEYBROKER_TEST_AZURE_CLIENT_SECRET";
/// Operation and creation timeout of every instance whose calls are not meant to time out:
/// generous, because the fake makes RSA keys (RSA-4096 ones take seconds) in a debug build,
/// beside the other tests of this binary, on machines with as few as 2 cores. A test must
/// never race that.
const TIMEOUT_MS: u64 = 60_000;
/// Operation timeout of the instances that tests fault on purpose (throttling, a vault that
/// does not answer) to see them give up: the plugin's default. Only the faulty calls go
/// through them.
const SHORT_TIMEOUT_MS: u64 = 1_500;
/// Latency of a vault that does not answer: it outlasts any call of the test.
const HANG: Duration = Duration::from_secs(600);
/// Upper bound on a call that a fault made time out. It is not a measure of the machine's
/// speed: it is far below the fault's own length (a [`HANG`]; throttling of 1000 requests
/// each told to wait 1 s), so it only shows that the operation timeout, not the end of the
/// fault, stopped the call.
const GAVE_UP_WITHIN: Duration = Duration::from_secs(60);

fn fake() -> AzureFake {
    AzureFake::start(AZURE_TENANT, CLIENT_ID, CLIENT_SECRET)
}

fn config(fake: &AzureFake, operation_timeout_ms: u64) -> serde_json::Value {
    std::env::set_var(SECRET_ENV, CLIENT_SECRET);
    json!({
        "vault_url": fake.vault_url(),
        "tenant_id": AZURE_TENANT,
        "client_id": CLIENT_ID,
        "client_secret_env": SECRET_ENV,
        "authority_host": fake.authority_host(),
        "ca_file": fake.ca_pem_path(),
        "operation_timeout_ms": operation_timeout_ms,
        "create_timeout_ms": TIMEOUT_MS,
        // The fake's vault is 127.0.0.1, not *.vault.azure.net.
        "verify_challenge_resource": false,
    })
}

fn backend(fake: &AzureFake) -> BackendBox {
    instance_with(new_backend, &config(fake, TIMEOUT_MS))
}

/// The Key Vault key name of a reference.
fn key_name(reference: &str) -> String {
    reference.split('/').nth(2).unwrap().to_owned()
}

/// Requests of every kind the fake received.
fn all_requests(fake: &AzureFake) -> u64 {
    Operation::ALL
        .iter()
        .map(|operation| fake.request_count(*operation))
        .sum()
}

#[test]
fn wraps_and_unwraps_data_keys_with_created_keys() {
    let fake = fake();
    let backend = backend(&fake);
    let info = backend.info().into_result().unwrap();
    assert_eq!(info.name.as_str(), "azure-keyvault");
    assert_eq!(info.max_payload, 190);
    assert_eq!(
        info.capabilities,
        capability::ENVELOPE
            | capability::BIND_EXISTING
            | capability::SIGN
            | capability::ASYMMETRIC_DECRYPT
    );
    backend.health().into_result().unwrap();

    let key = create(&backend, TENANT, "aes256-gcm96");
    let name = key_name(&key);
    assert_eq!(key, format!("c/{TENANT}/{name}"));
    assert_eq!(name, crate::created_key_name(TENANT, "key-aes256-gcm96"));
    let bundle = fake.state().get_key(&name, None).unwrap();
    assert_eq!(bundle["tags"]["keybroker-tenant"], TENANT);
    assert_eq!(bundle["tags"]["keybroker-key"], "key-aes256-gcm96");
    assert_eq!(bundle["key"]["kty"], "RSA");
    assert_eq!(bundle["key"]["key_ops"], json!(["wrapKey", "unwrapKey"]));

    let dek = [7u8; 32];
    let wrapped = encrypt(&backend, TENANT, &key, &dek, b"binding").unwrap();
    assert_eq!(wrapped[0], crate::FORMAT_WRAPPED);
    assert!(!wrapped.windows(dek.len()).any(|window| window == dek));
    assert_eq!(
        decrypt(&backend, TENANT, &key, &wrapped, b"binding").unwrap(),
        dek
    );
    // RSA-OAEP has no AAD: the broker's HKDF binding covers it (ARCHITECTURE.md §3).
    assert_eq!(
        decrypt(&backend, TENANT, &key, &wrapped, b"other").unwrap(),
        dek
    );
    let empty = encrypt(&backend, TENANT, &key, b"", b"").unwrap();
    assert_eq!(decrypt(&backend, TENANT, &key, &empty, b"").unwrap(), b"");
    let mut forged = empty.clone();
    forged[0] = crate::FORMAT_WRAPPED;
    assert_eq!(decrypt(&backend, TENANT, &key, &forged, b"").unwrap(), [0]);
    let mut corrupted = wrapped.clone();
    let last = corrupted.len() - 1;
    corrupted[last] ^= 1;
    assert_error(
        decrypt(&backend, TENANT, &key, &corrupted, b""),
        ErrorKind::INVALID_CIPHERTEXT,
        "",
    );

    // Another tenant, or a plaintext too large: refused before any request.
    fake.reset_counts();
    let error = assert_error(
        encrypt(&backend, OTHER_TENANT, &key, &dek, b""),
        ErrorKind::KEY_NOT_FOUND,
        "not found",
    );
    assert!(!error.message.contains(TENANT));
    assert_key_not_found(decrypt(&backend, OTHER_TENANT, &key, &wrapped, b""));
    assert_error(
        encrypt(&backend, TENANT, &key, &[1; 191], b""),
        ErrorKind::PAYLOAD_TOO_LARGE,
        "191",
    );
    assert_eq!(all_requests(&fake), 0);
    let largest = [9u8; 190];
    assert_round_trip(&backend, TENANT, &key, &largest);

    // A fresh instance reads the key (and checks its tag) once, then one call per operation.
    let fresh = self::backend(&fake);
    decrypt(&fresh, TENANT, &key, &wrapped, b"").unwrap();
    fake.reset_counts();
    decrypt(&fresh, TENANT, &key, &wrapped, b"").unwrap();
    assert_eq!(fake.request_count(Operation::Get), 0);
    assert_eq!(fake.request_count(Operation::UnwrapKey), 1);
    assert_eq!(all_requests(&fake), 1);
    // A reference naming the other tenant with this tenant's key fails the tag check.
    let forged_reference = format!("c/{OTHER_TENANT}/{name}");
    let error = assert_key_not_found(decrypt(
        &fresh,
        OTHER_TENANT,
        &forged_reference,
        &wrapped,
        b"",
    ));
    assert!(!error.message.contains(TENANT));

    // A new version of the key (created again): older wrapped keys still unwrap with the
    // version that wrapped them, new ones use the new version.
    let again = create_with_id(&backend, TENANT, "key-aes256-gcm96", "aes256-gcm96");
    assert_eq!(again, key);
    let newer = encrypt(&fresh, TENANT, &key, &dek, b"").unwrap();
    assert_ne!(newer[2..34], wrapped[2..34], "the version changed");
    for blob in [&wrapped, &newer] {
        assert_eq!(decrypt(&fresh, TENANT, &key, blob, b"").unwrap(), dek);
    }
    // A data key of another key is not this key's.
    let other = create_with_id(&backend, TENANT, "other", "aes256-gcm96");
    assert_error(
        decrypt(&backend, TENANT, &other, &wrapped, b""),
        ErrorKind::INVALID_CIPHERTEXT,
        "",
    );
}

#[test]
fn binds_existing_keys_by_name_and_version_and_never_deletes_them() {
    let fake = fake();
    let backend = backend(&fake);
    let kid = fake.create_key("ops-wrap", KeySpec::Rsa(2048)).unwrap();
    let version = kid.rsplit('/').next().unwrap().to_owned();
    fake.create_key("ops-ec", KeySpec::P256).unwrap();
    fake.state()
        .create_key(
            "ops-sign-only",
            "RSA",
            KeySpec::Rsa(2048),
            Some(vec!["sign".to_owned(), "verify".to_owned()]),
            Default::default(),
            Default::default(),
        )
        .unwrap();

    let latest = bind_for_test_tenant(&backend, "ops-wrap", "aes256-gcm96").unwrap();
    assert_eq!(latest, format!("b/{TENANT}/ops-wrap"));
    let pinned =
        bind_for_test_tenant(&backend, &format!("ops-wrap/{version}"), "aes256-gcm96").unwrap();
    assert_eq!(pinned, format!("b/{TENANT}/ops-wrap/{version}"));
    for reference in [&latest, &pinned] {
        let wrapped = encrypt(&backend, TENANT, reference, b"bound", b"").unwrap();
        assert_eq!(
            decrypt(&backend, TENANT, reference, &wrapped, b"").unwrap(),
            b"bound"
        );
        assert_key_not_found(decrypt(&backend, OTHER_TENANT, reference, &wrapped, b""));
        // Deleting a bound key leaves it alone.
        fake.reset_counts();
        delete(&backend, TENANT, reference).unwrap();
        assert_eq!(all_requests(&fake), 0);
        fake.state().get_key("ops-wrap", None).unwrap();
    }
    // The same key may also sign: RSA-2048 whose key_ops allow sign.
    bind_for_test_tenant(&backend, "ops-wrap", "rsa-2048").unwrap();
    bind_for_test_tenant(&backend, "ops-ec", "ecdsa-p256").unwrap();

    // Wrong kinds are refused, saying why.
    assert_error(
        bind_for_test_tenant(&backend, "ops-ec", "ecdsa-p384"),
        ErrorKind::INVALID_REQUEST,
        "P-256",
    );
    assert_error(
        bind_for_test_tenant(&backend, "ops-ec", "aes256-gcm96"),
        ErrorKind::INVALID_REQUEST,
        "wrapKey",
    );
    assert_error(
        bind_for_test_tenant(&backend, "ops-wrap", "rsa-3072"),
        ErrorKind::INVALID_REQUEST,
        "RSA-2048",
    );
    assert_error(
        bind_for_test_tenant(&backend, "ops-sign-only", "aes256-gcm96"),
        ErrorKind::INVALID_REQUEST,
        "wrapKey",
    );
    assert_error(
        bind_for_test_tenant(&backend, "ops-missing", "aes256-gcm96"),
        ErrorKind::KEY_NOT_FOUND,
        "ops-missing",
    );
    assert_key_not_found(bind_for_test_tenant(
        &backend,
        "ops-wrap/0123456789abcdef0123456789abcdef",
        "aes256-gcm96",
    ));
    for bad in ["", "bad_name", "ops-wrap/ver-sion", "a/b/c"] {
        assert_error(
            bind_for_test_tenant(&backend, bad, "aes256-gcm96"),
            ErrorKind::INVALID_REQUEST,
            "backend_key",
        );
    }
    assert_error(
        bind_for_test_tenant(&backend, "ops-wrap", "aes128-gcm96"),
        ErrorKind::INVALID_REQUEST,
        "not supported",
    );

    // Keys the broker made are never bindable, not even by their own tenant.
    let made = create(&backend, TENANT, "aes256-gcm96");
    assert_error(
        bind_for_test_tenant(&backend, &key_name(&made), "aes256-gcm96"),
        ErrorKind::ACCESS_DENIED,
        "keybroker-tenant",
    );
    // A disabled key cannot be bound; the state is named.
    fake.set_key_enabled("ops-ec", false).unwrap();
    assert_error(
        bind_for_test_tenant(&backend, "ops-ec", "ecdsa-p256"),
        ErrorKind::INVALID_REQUEST,
        "disabled",
    );
}

/// The digest of `message` under a Vault hash name.
fn digest(hash: &str, message: &[u8]) -> Vec<u8> {
    match hash {
        "sha2-224" => sha2::Sha224::digest(message).to_vec(),
        "sha2-256" => sha2::Sha256::digest(message).to_vec(),
        "sha2-384" => sha2::Sha384::digest(message).to_vec(),
        _ => sha2::Sha512::digest(message).to_vec(),
    }
}

/// Verifies a signature with the `rsa`, `p256`, `p384` and `p521` crates, not the plugin.
fn independently_valid(
    pem: &str,
    key_type: &str,
    hash: &str,
    scheme: &str,
    digest: &[u8],
    signature: &[u8],
) -> bool {
    use p256::pkcs8::DecodePublicKey as _;
    use rsa::{Pkcs1v15Sign, Pss};
    match key_type {
        "ecdsa-p256" => {
            use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
            let public = p256::ecdsa::VerifyingKey::from_public_key_pem(pem).unwrap();
            let signature = p256::ecdsa::Signature::from_slice(signature).unwrap();
            public.verify_prehash(digest, &signature).is_ok()
        }
        "ecdsa-p384" => {
            use p384::ecdsa::signature::hazmat::PrehashVerifier as _;
            let public = p384::ecdsa::VerifyingKey::from_public_key_pem(pem).unwrap();
            let signature = p384::ecdsa::Signature::from_slice(signature).unwrap();
            public.verify_prehash(digest, &signature).is_ok()
        }
        "ecdsa-p521" => {
            use p521::ecdsa::signature::hazmat::PrehashVerifier as _;
            let public = p521::PublicKey::from_public_key_pem(pem).unwrap();
            let public = p521::ecdsa::VerifyingKey::from_affine(*public.as_affine()).unwrap();
            let signature = p521::ecdsa::Signature::from_slice(signature).unwrap();
            public.verify_prehash(digest, &signature).is_ok()
        }
        _ => {
            let public = rsa::RsaPublicKey::from_public_key_pem(pem).unwrap();
            let result = match (hash, scheme) {
                ("sha2-256", "pss") => public.verify(Pss::new::<sha2::Sha256>(), digest, signature),
                ("sha2-384", "pss") => public.verify(Pss::new::<sha2::Sha384>(), digest, signature),
                ("sha2-512", "pss") => public.verify(Pss::new::<sha2::Sha512>(), digest, signature),
                ("sha2-256", _) => {
                    public.verify(Pkcs1v15Sign::new::<sha2::Sha256>(), digest, signature)
                }
                ("sha2-384", _) => {
                    public.verify(Pkcs1v15Sign::new::<sha2::Sha384>(), digest, signature)
                }
                _ => public.verify(Pkcs1v15Sign::new::<sha2::Sha512>(), digest, signature),
            };
            result.is_ok()
        }
    }
}

#[test]
fn signs_and_verifies_with_every_asymmetric_type() {
    let fake = fake();
    let backend = backend(&fake);
    let message = b"keybroker: message to sign";
    // Ed25519 is refused (`check_refuses_key_type` in the conformance test).
    for key_type in keybroker_plugin_abi::key_type::ASYMMETRIC
        .into_iter()
        .filter(|key_type| *key_type != "ed25519")
    {
        let key = create(&backend, TENANT, key_type);
        let pem = public_key(&backend, TENANT, &key).unwrap();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
        let rsa = key_type.starts_with("rsa");
        let schemes = signature_schemes(key_type);
        let hashes: &[&str] = match key_type {
            "ecdsa-p256" => &["sha2-256"],
            "ecdsa-p384" => &["sha2-384"],
            "ecdsa-p521" => &["sha2-512"],
            _ => &["sha2-256", "sha2-384", "sha2-512"],
        };
        let sign = |hash: &str, scheme: &str, digest: &[u8]| {
            keybroker_plugin_conformance::calls::sign(&backend, TENANT, &key, hash, scheme, digest)
        };
        let verify = |hash: &str, scheme: &str, digest: &[u8], signature: &[u8]| {
            keybroker_plugin_conformance::calls::verify(
                &backend, TENANT, &key, hash, scheme, digest, signature,
            )
        };
        for hash in hashes {
            let digest = digest(hash, message);
            for scheme in schemes {
                let what = format!("{key_type} {hash} {scheme:?}");
                let signature =
                    sign(hash, scheme, &digest).unwrap_or_else(|e| panic!("{what}: {e}"));
                if !rsa {
                    let expected = match key_type {
                        "ecdsa-p256" => 64,
                        "ecdsa-p384" => 96,
                        _ => 132,
                    };
                    assert_eq!(signature.len(), expected);
                }
                assert!(verify(hash, scheme, &digest, &signature).unwrap(), "{what}");
                assert!(
                    independently_valid(&pem, key_type, hash, scheme, &digest, &signature),
                    "{what}: independent verification"
                );
                // Bad signatures are false, never errors.
                let mut flipped = signature.clone();
                flipped[signature.len() / 2] ^= 0x10;
                let other = self::digest(hash, b"another message");
                for (bad_digest, bad_signature) in [
                    (&digest, &flipped[..]),
                    (&digest, &signature[..signature.len() - 1]),
                    (&digest, &[][..]),
                    (&digest, &vec![0u8; signature.len()][..]),
                    (&other, &signature[..]),
                ] {
                    assert!(
                        !verify(hash, scheme, bad_digest, bad_signature).unwrap(),
                        "{what}: a bad signature verified"
                    );
                }
            }
        }
        // Key Vault has no SHA-224; curves pair with their own hash.
        assert_error(
            sign("sha2-224", schemes[0], &digest("sha2-224", message)),
            ErrorKind::INVALID_REQUEST,
            hashes[0],
        );
        if !rsa {
            let other_hash = if key_type == "ecdsa-p521" {
                "sha2-256"
            } else {
                "sha2-512"
            };
            assert_error(
                sign(other_hash, "", &digest(other_hash, message)),
                ErrorKind::INVALID_REQUEST,
                "only over",
            );
        }
        assert_key_not_found(public_key(&backend, OTHER_TENANT, &key));
        assert_error(
            encrypt(&backend, TENANT, &key, b"x", b""),
            ErrorKind::INVALID_REQUEST,
            "aes256-gcm96",
        );
    }
    let wrapping = create(&backend, TENANT, "aes256-gcm96");
    assert_error(
        public_key(&backend, TENANT, &wrapping),
        ErrorKind::INVALID_REQUEST,
        "rsa-* or ecdsa-*",
    );
}

#[test]
fn disabled_and_denied_keys_are_reported() {
    let fake = fake();
    let backend = backend(&fake);
    let key = create(&backend, TENANT, "aes256-gcm96");
    let name = key_name(&key);
    let wrapped = encrypt(&backend, TENANT, &key, b"data", b"").unwrap();
    fake.set_key_enabled(&name, false).unwrap();
    assert_error(
        encrypt(&backend, TENANT, &key, b"data", b""),
        ErrorKind::INVALID_REQUEST,
        "key is disabled",
    );
    assert_error(
        decrypt(&backend, TENANT, &key, &wrapped, b""),
        ErrorKind::INVALID_REQUEST,
        "key is disabled",
    );
    fake.set_key_enabled(&name, true).unwrap();
    fake.deny_for_key(Operation::UnwrapKey, &name);
    assert_error(
        decrypt(&backend, TENANT, &key, &wrapped, b""),
        ErrorKind::ACCESS_DENIED,
        "does not have keys unwrapKey permission",
    );
    fake.allow(Operation::UnwrapKey);
    assert_eq!(
        decrypt(&backend, TENANT, &key, &wrapped, b"").unwrap(),
        b"data"
    );
    // A fresh instance that may not read keys cannot use them, and says why.
    fake.deny(Operation::Get);
    assert_error(
        decrypt(&self::backend(&fake), TENANT, &key, &wrapped, b""),
        ErrorKind::ACCESS_DENIED,
        "does not have keys get permission",
    );
}

#[test]
fn throttling_is_retried_by_the_sdk_then_unavailable_within_the_timeout() {
    let fake = fake();
    let patient = backend(&fake);
    let key = create(&patient, TENANT, "aes256-gcm96");
    fake.reset_counts();
    // Two 429s with Retry-After: 1, then success: the SDK waits and retries.
    fake.throttle(2, Duration::from_secs(1));
    let wrapped = encrypt(&patient, TENANT, &key, b"data", b"").unwrap();
    assert_eq!(fake.request_count(Operation::WrapKey), 3);
    assert_eq!(fake.state().throttle_remaining(), 0);

    // Throttled for longer than the operation timeout: UNAVAILABLE at the deadline, on an
    // instance with a short timeout. Key references carry all an instance needs, so it
    // uses the key made above; its first use (token, key read) comes before the fault.
    let hurried = instance_with(new_backend, &config(&fake, SHORT_TIMEOUT_MS));
    let warm = until_available("first use", || {
        decrypt(&hurried, TENANT, &key, &wrapped, b"")
    });
    assert_eq!(warm, b"data");
    fake.throttle(1000, Duration::from_secs(1));
    let started = Instant::now();
    let result = decrypt(&hurried, TENANT, &key, &wrapped, b"");
    let elapsed = started.elapsed();
    assert_error(result, ErrorKind::UNAVAILABLE, "");
    assert!(elapsed < GAVE_UP_WITHIN, "{elapsed:?}");
    assert_error(hurried.health().into_result(), ErrorKind::UNAVAILABLE, "");
    fake.clear_faults();
    let recovered = until_available("after the throttling", || {
        decrypt(&hurried, TENANT, &key, &wrapped, b"")
    });
    assert_eq!(recovered, b"data");
}

#[test]
fn an_outage_is_unavailable_within_the_timeout_and_recovery_is_reported() {
    let fake = fake();
    let host = RecordingHost::default();
    let backend = instance(new_backend(
        &config(&fake, TIMEOUT_MS).to_string(),
        host.clone().into_box(),
    ));
    let key = create(&backend, TENANT, "aes256-gcm96");
    let wrapped = encrypt(&backend, TENANT, &key, b"data", b"").unwrap();

    // An outage answers 503 at once: the SDK's few retries end the call, whatever the
    // (generous) timeout.
    Outage {
        backend: &backend,
        host: &host,
        tenant: TENANT,
        key: &key,
        ciphertext: &wrapped,
        plaintext: b"data",
        fault_message: "503",
        gave_up_within: GAVE_UP_WITHIN,
        decrypts_once_healthy: true,
    }
    .run(|| fake.set_outage(true), || fake.set_outage(false));

    // A vault that does not answer at all: only a timeout ends the call, so this goes
    // through an instance with a short one, whose first use comes before the fault.
    let host = RecordingHost::default();
    let hurried = instance(new_backend(
        &config(&fake, SHORT_TIMEOUT_MS).to_string(),
        host.clone().into_box(),
    ));
    Outage {
        backend: &hurried,
        host: &host,
        tenant: TENANT,
        key: &key,
        ciphertext: &wrapped,
        plaintext: b"data",
        fault_message: "no answer within the timeout",
        gave_up_within: GAVE_UP_WITHIN,
        decrypts_once_healthy: false,
    }
    .run(
        || fake.set_latency(HANG),
        || fake.set_latency(Duration::ZERO),
    );
}

#[test]
fn wrong_credentials_and_unreachable_endpoints_are_unavailable_with_a_reason() {
    let fake = fake();
    let secret_file = std::env::temp_dir().join(format!(
        "keybroker-azure-wrong-secret-{}",
        std::process::id()
    ));
    std::fs::write(&secret_file, "wrong-secret-not-to-show\n").unwrap();
    let mut wrong = config(&fake, TIMEOUT_MS);
    wrong["client_secret_env"] = serde_json::Value::Null;
    wrong.as_object_mut().unwrap().remove("client_secret_env");
    wrong["client_secret_file"] = json!(secret_file);
    let host = RecordingHost::default();
    let backend = keybroker_plugin_abi::into_ffi(
        new_backend(&wrong.to_string(), host.clone().into_box()).unwrap(),
    );
    let result = backend.health().into_result();
    std::fs::remove_file(&secret_file).unwrap();
    let error = assert_error(result, ErrorKind::UNAVAILABLE, "AADSTS7000215");
    assert!(
        !error.message.contains("wrong-secret-not-to-show"),
        "{error}"
    );
    let lines = host.lines();
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with("instance available=false")
                && line.contains("AADSTS7000215")),
        "{lines:?}"
    );
    assert!(!lines
        .iter()
        .any(|line| line.contains("wrong-secret-not-to-show")));
    assert_error(
        backend
            .create_key(CreateKeyRequest {
                tenant_id: rstring(TENANT),
                key_id: rstring("k"),
                key_type: rstring("aes256-gcm96"),
            })
            .into_result(),
        ErrorKind::UNAVAILABLE,
        "Invalid client secret provided",
    );

    // Nothing listening: the vault, then the token endpoint.
    let mut unreachable = config(&fake, TIMEOUT_MS);
    unreachable["vault_url"] = json!("https://127.0.0.1:9/");
    assert_error(
        instance_with(new_backend, &unreachable)
            .health()
            .into_result(),
        ErrorKind::UNAVAILABLE,
        "",
    );
    let mut no_authority = config(&fake, TIMEOUT_MS);
    no_authority["authority_host"] = json!("https://127.0.0.1:9");
    assert_error(
        instance_with(new_backend, &no_authority)
            .health()
            .into_result(),
        ErrorKind::UNAVAILABLE,
        "access token",
    );
}

#[test]
fn an_inline_client_secret_is_refused_and_config_errors_are_named() {
    let fake = fake();
    let mut inline = config(&fake, TIMEOUT_MS);
    inline.as_object_mut().unwrap().remove("client_secret_env");
    inline["client_secret"] = json!("inline-secret-not-to-show");
    let error = new_backend(&inline.to_string(), RecordingHost::boxed()).unwrap_err();
    assert_eq!(error.kind, ErrorKind::INVALID_CONFIG);
    assert!(error.message.contains("client_secret_file"), "{error}");
    assert!(
        !error.message.contains("inline-secret-not-to-show"),
        "{error}"
    );
    let mut unknown = config(&fake, TIMEOUT_MS);
    unknown["region"] = json!("westeurope");
    let error = new_backend(&unknown.to_string(), RecordingHost::boxed()).unwrap_err();
    assert_eq!(error.kind, ErrorKind::INVALID_CONFIG);
    assert!(error.message.contains("region"), "{error}");
    let mut missing_ca = config(&fake, TIMEOUT_MS);
    missing_ca["ca_file"] = json!("/nonexistent/keybroker-ca.pem");
    let error = new_backend(&missing_ca.to_string(), RecordingHost::boxed()).unwrap_err();
    assert_eq!(error.kind, ErrorKind::INVALID_CONFIG);
    assert!(
        error.message.contains("/nonexistent/keybroker-ca.pem"),
        "{error}"
    );
    // Without the fake's CA, its certificate is not trusted: no request succeeds.
    let mut untrusted = config(&fake, TIMEOUT_MS);
    untrusted.as_object_mut().unwrap().remove("ca_file");
    assert_error(
        instance_with(new_backend, &untrusted)
            .health()
            .into_result(),
        ErrorKind::UNAVAILABLE,
        "",
    );
}

#[test]
fn deleting_a_created_key_deletes_it_and_a_bound_key_is_kept() {
    let fake = fake();
    let backend = backend(&fake);
    let key = create(&backend, TENANT, "ecdsa-p256");
    let name = key_name(&key);
    assert_key_not_found(delete(&backend, OTHER_TENANT, &key));
    delete(&backend, TENANT, &key).unwrap();
    assert_eq!(fake.request_count(Operation::Delete), 1);
    assert!(fake.state().get_key(&name, None).is_err());
    fake.state().get_deleted_key(&name).unwrap();
    assert_key_not_found(public_key(&backend, TENANT, &key));
    // Deleting again (a retry after a lost answer) succeeds without another deletion.
    delete(&backend, TENANT, &key).unwrap();
    assert_eq!(fake.request_count(Operation::Delete), 1);

    fake.create_key("operator-key", KeySpec::P384).unwrap();
    let bound = bind_for_test_tenant(&backend, "operator-key", "ecdsa-p384").unwrap();
    delete(&backend, TENANT, &bound).unwrap();
    assert_eq!(fake.request_count(Operation::Delete), 1);
    fake.state().get_key("operator-key", None).unwrap();
}

#[test]
fn an_instance_can_be_dropped_from_async_code() {
    // The host may drop an instance (on reload) from a Tokio task.
    let fake = fake();
    let backend = backend(&fake);
    backend.health().into_result().unwrap();
    let host_runtime = tokio::runtime::Runtime::new().unwrap();
    host_runtime.block_on(async move { drop(backend) });
}

#[test]
fn passes_the_conformance_suite() {
    use keybroker_plugin_conformance::{BindableKey, Options};
    let fake = fake();
    let backend = backend(&fake);
    fake.create_key("conformance-wrap", KeySpec::Rsa(2048))
        .unwrap();
    fake.create_key("conformance-ec", KeySpec::P256).unwrap();
    let kid = fake
        .create_key("conformance-rsa", KeySpec::Rsa(2048))
        .unwrap();
    let version = kid.rsplit('/').next().unwrap();
    let bindable = |backend_key: &str, key_type: &str| BindableKey {
        backend_key: backend_key.to_owned(),
        key_type: key_type.to_owned(),
    };
    let options = Options {
        // RSA-OAEP has no AAD; the broker's binding makes up for it (ARCHITECTURE.md §3).
        authenticates_aad: false,
        bindable_keys: vec![
            bindable("conformance-wrap", "aes256-gcm96"),
            bindable("conformance-ec", "ecdsa-p256"),
            bindable(&format!("conformance-rsa/{version}"), "rsa-2048"),
        ],
        // Ed25519 is refused (checked below).
        asymmetric_key_types: keybroker_plugin_abi::key_type::ASYMMETRIC
            .into_iter()
            .filter(|key_type| *key_type != "ed25519")
            .map(str::to_owned)
            .collect(),
        // Key Vault pairs each curve with its own hash and has no SHA-224.
        signing_hashes: |key_type| match key_type {
            "ecdsa-p256" => vec!["sha2-256"],
            "ecdsa-p384" => vec!["sha2-384"],
            "ecdsa-p521" => vec!["sha2-512"],
            _ => vec!["sha2-256", "sha2-384", "sha2-512"],
        },
        ..Options::default()
    };
    keybroker_plugin_conformance::run(&backend, &options);
    keybroker_plugin_conformance::check_refuses_key_type(&backend, &options, "ed25519");
    // Keys stay in Key Vault: no private key leaves or enters through the plugin.
    keybroker_plugin_conformance::check_no_private_key_transfer(&backend, &options);
}
