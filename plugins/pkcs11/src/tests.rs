//! The plugin against a real SoftHSM2, in-process.
//!
//! Every test uses the process-wide store ([`SoftHsm::shared`]: SoftHSM reads its
//! configuration once per process) and a token of its own. Tests that hide tokens or
//! finalise the module behind the plugin's back live in `tests/recovery.rs`, their own
//! process.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use keybroker_plugin_abi::{
    capability, Backend, BindKeyRequest, CreateKeyRequest, ErrorKind, PluginError,
};
use keybroker_softhsm_harness::{unique_label, SoftHsm};
use serde_json::json;
use sha2::Digest as _;

use keybroker_plugin_conformance::{
    direct::{create, decrypt, encrypt, sign, verify},
    RecordingHost,
};

use crate::{
    backend::{new_backend, Pkcs11Backend},
    module::Reinit,
};

const PIN: &str = "4711-pin";

/// A token of the shared store, with its PIN file.
struct Token {
    label: String,
    pin_file: std::path::PathBuf,
}

fn hsm() -> &'static SoftHsm {
    SoftHsm::shared()
}

fn token(prefix: &str) -> Token {
    let label = unique_label(prefix);
    let pin_file = hsm().add_token(&label, PIN);
    Token { label, pin_file }
}

/// A `session_wait` no call of these tests reaches unless the test means it to. Other tests
/// share the module: a constructor may have to wait for a moment without calls in flight to
/// re-initialise it (see `connect`), a call waits while another test re-initialises it, and
/// `sessions_never_exceed_max_sessions` has 8 threads queue for 2 sessions; a loaded machine
/// stretches each of those waits by seconds.
const PATIENT_SESSION_WAIT: Duration = Duration::from_secs(60);

/// A configuration for `token`, with the patient `session_wait`.
fn config(token: &Token) -> serde_json::Value {
    json!({
        "module": hsm().module_path(),
        "module_sha256": hsm().module_sha256(),
        "token_label": token.label,
        "pin_file": token.pin_file,
        "session_wait": PATIENT_SESSION_WAIT.as_millis() as u64,
    })
}

fn build(config: &serde_json::Value) -> Result<Pkcs11Backend, PluginError> {
    new_backend(&config.to_string(), RecordingHost::boxed())
}

fn backend(token: &Token) -> Pkcs11Backend {
    build(&config(token)).unwrap()
}

fn bind(
    backend: &Pkcs11Backend,
    tenant: &str,
    key_type: &str,
    backend_key: &str,
) -> Result<String, PluginError> {
    backend
        .bind_key(BindKeyRequest {
            tenant_id: tenant.into(),
            key_id: "bound-1".into(),
            key_type: key_type.into(),
            backend_key: backend_key.into(),
        })
        .map(|handle| handle.reference.into_string())
}

/// The hex CKA_ID at the end of a reference.
fn id_of(reference: &str) -> &str {
    reference.rsplit('/').next().unwrap()
}

fn assert_round_trip(backend: &Pkcs11Backend, tenant: &str, reference: &str) {
    let blob = encrypt(backend, tenant, reference, b"data key", b"aad", &[]).unwrap();
    assert_eq!(
        decrypt(backend, tenant, reference, &blob, b"aad").unwrap(),
        b"data key"
    );
}

#[test]
fn aes_round_trip_carries_the_broker_iv() {
    let token = token("aes");
    let backend = backend(&token);
    let reference = create(&backend, "acme", "aes256-gcm96");
    assert!(reference.starts_with("c/acme/"), "{reference}");
    assert_eq!(id_of(&reference).len(), 32);

    let iv = [0x5a; 12];
    for (plaintext, aad) in [
        (&b"a data key of 32 bytes, exactly!"[..], &b"binding"[..]),
        (b"", b""),
        (b"no aad", b""),
    ] {
        let blob = encrypt(&backend, "acme", &reference, plaintext, aad, &iv).unwrap();
        assert_eq!(blob[0], 0x01);
        assert_eq!(&blob[1..13], &iv, "the blob carries the broker's IV");
        assert_eq!(blob.len(), 1 + 12 + plaintext.len() + 16);
        assert_eq!(
            decrypt(&backend, "acme", &reference, &blob, aad).unwrap(),
            plaintext
        );
    }
    // Same key, IV, input: same blob. No IV from the broker: a random one.
    let a = encrypt(&backend, "acme", &reference, b"x", b"", &iv).unwrap();
    let b = encrypt(&backend, "acme", &reference, b"x", b"", &iv).unwrap();
    assert_eq!(a, b);
    let c = encrypt(&backend, "acme", &reference, b"x", b"", &[]).unwrap();
    let d = encrypt(&backend, "acme", &reference, b"x", b"", &[]).unwrap();
    assert_ne!(c[1..13], d[1..13]);
    assert_eq!(
        decrypt(&backend, "acme", &reference, &c, b"").unwrap(),
        b"x"
    );
    let error = encrypt(&backend, "acme", &reference, b"x", b"", &[1; 16]).unwrap_err();
    assert_eq!(error.kind, ErrorKind::INVALID_REQUEST);

    // The key is what the issue asks for: sensitive, never extractable, private.
    let objects = hsm().objects_with_id(&token.label, id_of(&reference));
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert!(objects[0]
        .kind
        .starts_with("Secret Key Object; AES length 32"));
    assert_eq!(objects[0].label.as_deref(), Some("keybroker:acme:key-1"));
    let listing = hsm().pkcs11_tool_on(&token.label, &["--list-objects", "--type", "secrkey"]);
    assert!(listing.contains("sensitive"), "{listing}");
    assert!(listing.contains("never extractable"), "{listing}");
}

#[test]
fn wrong_aad_and_tampering_are_invalid_ciphertext() {
    let token = token("tamper");
    let backend = backend(&token);
    let reference = create(&backend, "acme", "aes256-gcm96");
    let other = create(&backend, "acme", "aes256-gcm96");
    let blob = encrypt(&backend, "acme", &reference, b"secret", b"aad-1", &[]).unwrap();
    let invalid = |ciphertext: &[u8], aad: &[u8], reference: &str| {
        let error = decrypt(&backend, "acme", reference, ciphertext, aad).unwrap_err();
        assert_eq!(error.kind, ErrorKind::INVALID_CIPHERTEXT, "{error}");
    };
    invalid(&blob, b"aad-2", &reference);
    invalid(&blob, b"", &reference);
    invalid(&blob, b"aad-1", &other);
    for index in [0, 1, 12, 13, blob.len() - 17, blob.len() - 1] {
        let mut tampered = blob.clone();
        tampered[index] ^= 0x01;
        invalid(&tampered, b"aad-1", &reference);
    }
    for len in [0, 1, 12, 13, 28, blob.len() - 1] {
        invalid(&blob[..len], b"aad-1", &reference);
    }
    let mut longer = blob.clone();
    longer.push(0);
    invalid(&longer, b"aad-1", &reference);
    // And the session pool survived all that.
    assert_eq!(
        decrypt(&backend, "acme", &reference, &blob, b"aad-1").unwrap(),
        b"secret"
    );
}

#[test]
fn payload_limit() {
    let token = token("payload");
    let mut config = config(&token);
    config["max_payload"] = json!(16);
    let backend = build(&config).unwrap();
    assert_eq!(backend.info().max_payload, 16);
    let reference = create(&backend, "acme", "aes256-gcm96");
    encrypt(&backend, "acme", &reference, &[7; 16], b"", &[]).unwrap();
    let error = encrypt(&backend, "acme", &reference, &[7; 17], b"", &[]).unwrap_err();
    assert_eq!(error.kind, ErrorKind::PAYLOAD_TOO_LARGE);
    assert!(error.message.contains("17 bytes"), "{error}");
    assert!(error.message.contains("16 bytes"), "{error}");
}

#[test]
fn other_tenants_and_malformed_references_find_nothing() {
    let token = token("tenants");
    let backend = backend(&token);
    let acme_aes = create(&backend, "acme", "aes256-gcm96");
    let acme_ec = create(&backend, "acme", "ecdsa-p256");
    let blob = encrypt(&backend, "acme", &acme_aes, b"secret", b"", &[]).unwrap();
    let digest = sha2::Sha256::digest(b"message");

    let not_found = |error: PluginError| {
        assert_eq!(error.kind, ErrorKind::KEY_NOT_FOUND, "{error}");
        assert!(!error.message.contains("acme"), "{error}");
    };
    // globex presenting acme's references…
    not_found(encrypt(&backend, "globex", &acme_aes, b"x", b"", &[]).unwrap_err());
    not_found(decrypt(&backend, "globex", &acme_aes, &blob, b"").unwrap_err());
    not_found(sign(&backend, "globex", &acme_ec, &digest, "sha2-256", "").unwrap_err());
    not_found(backend.public_key("globex", &acme_ec).unwrap_err());
    not_found(backend.delete_key("globex", &acme_aes).unwrap_err());
    // …or re-tagged as its own: the object's label still says acme.
    let forged = acme_aes.replacen("c/acme/", "c/globex/", 1);
    not_found(encrypt(&backend, "globex", &forged, b"x", b"", &[]).unwrap_err());
    not_found(decrypt(&backend, "globex", &forged, &blob, b"").unwrap_err());
    let forged_ec = acme_ec.replacen("c/acme/", "c/globex/", 1);
    not_found(sign(&backend, "globex", &forged_ec, &digest, "sha2-256", "").unwrap_err());
    // …or as a bound key.
    let forged = acme_aes.replacen("c/acme/", "b/globex/", 1);
    not_found(encrypt(&backend, "globex", &forged, b"x", b"", &[]).unwrap_err());
    // A reference to nothing, and malformed ones.
    let nothing = format!("c/acme/{}", "00".repeat(16));
    not_found(encrypt(&backend, "acme", &nothing, b"x", b"", &[]).unwrap_err());
    for malformed in ["", "c/acme", "c/acme/xyz", "t/acme/00", "c/acme/ABCD"] {
        let error = encrypt(&backend, "acme", malformed, b"x", b"", &[]).unwrap_err();
        assert_eq!(error.kind, ErrorKind::KEY_NOT_FOUND, "{malformed:?}");
    }
    // Nothing above destroyed anything.
    assert_eq!(
        hsm().objects_with_id(&token.label, id_of(&acme_aes)).len(),
        1
    );
    assert_round_trip(&backend, "acme", &acme_aes);
}

#[test]
fn iv_source_module_refuses_a_module_that_does_not_generate_ivs() {
    let token = token("ivmodule");
    let broker_iv = backend(&token);
    let mut config = config(&token);
    config["iv_source"] = json!("module");
    let module_iv = build(&config).unwrap();
    let reference = create(&module_iv, "acme", "aes256-gcm96");
    // SoftHSM uses the zeroed IV buffer it is given and leaves it zeroed: refused, not
    // encrypted under a fixed IV.
    let error = encrypt(&module_iv, "acme", &reference, b"x", b"", &[3; 12]).unwrap_err();
    assert_eq!(error.kind, ErrorKind::INTERNAL);
    assert!(error.message.contains("did not generate an IV"), "{error}");
    // Decryption reads the IV from the blob, whoever chose it.
    let blob = encrypt(&broker_iv, "acme", &reference, b"y", b"a", &[]).unwrap();
    assert_eq!(
        decrypt(&module_iv, "acme", &reference, &blob, b"a").unwrap(),
        b"y"
    );
}

/// Checks a signature with the `rsa`, `p256` or `p384` crate against the PEM public key.
fn independently_valid(
    key_type: &str,
    pem: &str,
    hash: &str,
    algorithm: &str,
    digest: &[u8],
    signature: &[u8],
) -> bool {
    use rsa::pkcs8::DecodePublicKey as _;
    use signature_check::{ecdsa_p256, ecdsa_p384};
    if key_type.starts_with("rsa") {
        let key = rsa::RsaPublicKey::from_public_key_pem(pem).unwrap();
        let scheme_result = match (algorithm, hash) {
            ("pkcs1v15", "sha2-224") => {
                key.verify(rsa::Pkcs1v15Sign::new::<sha2::Sha224>(), digest, signature)
            }
            ("pkcs1v15", "sha2-256") => {
                key.verify(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), digest, signature)
            }
            ("pkcs1v15", "sha2-384") => {
                key.verify(rsa::Pkcs1v15Sign::new::<sha2::Sha384>(), digest, signature)
            }
            ("pkcs1v15", "sha2-512") => {
                key.verify(rsa::Pkcs1v15Sign::new::<sha2::Sha512>(), digest, signature)
            }
            ("pss", "sha2-224") => key.verify(rsa::Pss::new::<sha2::Sha224>(), digest, signature),
            ("pss", "sha2-256") => key.verify(rsa::Pss::new::<sha2::Sha256>(), digest, signature),
            ("pss", "sha2-384") => key.verify(rsa::Pss::new::<sha2::Sha384>(), digest, signature),
            ("pss", "sha2-512") => key.verify(rsa::Pss::new::<sha2::Sha512>(), digest, signature),
            other => panic!("no independent check for {other:?}"),
        };
        scheme_result.is_ok()
    } else if key_type == "ecdsa-p256" {
        ecdsa_p256(pem, digest, signature)
    } else {
        ecdsa_p384(pem, digest, signature)
    }
}

mod signature_check {
    use p256::pkcs8::DecodePublicKey as _;

    pub(super) fn ecdsa_p256(pem: &str, digest: &[u8], signature: &[u8]) -> bool {
        use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
        let key = p256::ecdsa::VerifyingKey::from_public_key_pem(pem).unwrap();
        let Ok(signature) = p256::ecdsa::Signature::from_slice(signature) else {
            return false;
        };
        key.verify_prehash(digest, &signature).is_ok()
    }

    pub(super) fn ecdsa_p384(pem: &str, digest: &[u8], signature: &[u8]) -> bool {
        use p384::ecdsa::signature::hazmat::PrehashVerifier as _;
        let key = p384::ecdsa::VerifyingKey::from_public_key_pem(pem).unwrap();
        let Ok(signature) = p384::ecdsa::Signature::from_slice(signature) else {
            return false;
        };
        key.verify_prehash(digest, &signature).is_ok()
    }
}

fn digest_for(hash: &str, message: &[u8]) -> Vec<u8> {
    match hash {
        "sha2-224" => sha2::Sha224::digest(message).to_vec(),
        "sha2-256" => sha2::Sha256::digest(message).to_vec(),
        "sha2-384" => sha2::Sha384::digest(message).to_vec(),
        "sha2-512" => sha2::Sha512::digest(message).to_vec(),
        other => panic!("unknown hash {other}"),
    }
}

/// Sign, verify, tamper, and check against the exported public key independently.
fn check_signing(
    backend: &Pkcs11Backend,
    tenant: &str,
    reference: &str,
    key_type: &str,
    cases: &[(&str, &str)],
) {
    let pem = backend.public_key(tenant, reference).unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
    for &(hash, algorithm) in cases {
        let what = format!("{key_type} {hash} {algorithm:?}");
        let digest = digest_for(hash, b"the message");
        let signature = sign(backend, tenant, reference, &digest, hash, algorithm).unwrap();
        if key_type == "ecdsa-p256" {
            assert_eq!(signature.len(), 64, "{what}: r ‖ s");
        } else if key_type == "ecdsa-p384" {
            assert_eq!(signature.len(), 96, "{what}: r ‖ s");
        }
        assert!(
            verify(backend, tenant, reference, &digest, hash, algorithm, &signature).unwrap(),
            "{what}"
        );
        assert!(
            independently_valid(key_type, &pem, hash, algorithm, &digest, &signature),
            "{what}: independent check"
        );
        let other_digest = digest_for(hash, b"another message");
        assert!(
            !verify(
                backend,
                tenant,
                reference,
                &other_digest,
                hash,
                algorithm,
                &signature
            )
            .unwrap(),
            "{what}: wrong digest"
        );
        let mut tampered = signature.clone();
        tampered[signature.len() / 2] ^= 0x10;
        assert!(
            !verify(backend, tenant, reference, &digest, hash, algorithm, &tampered).unwrap(),
            "{what}: tampered signature"
        );
        assert!(
            !verify(
                backend,
                tenant,
                reference,
                &digest,
                hash,
                algorithm,
                &signature[1..]
            )
            .unwrap(),
            "{what}: truncated signature"
        );
        assert!(!independently_valid(
            key_type,
            &pem,
            hash,
            algorithm,
            &other_digest,
            &signature
        ));
        // The digest must fit the hash.
        let error = sign(backend, tenant, reference, &digest[1..], hash, algorithm).unwrap_err();
        assert_eq!(error.kind, ErrorKind::INVALID_REQUEST, "{what}");
    }
}

const RSA_CASES: &[(&str, &str)] = &[
    ("sha2-256", "pss"),
    ("sha2-256", "pkcs1v15"),
    ("sha2-384", "pss"),
    ("sha2-512", "pkcs1v15"),
    ("sha2-224", "pss"),
];
const EC_CASES: &[(&str, &str)] = &[("sha2-256", ""), ("sha2-384", ""), ("sha2-512", "")];

#[test]
fn every_asymmetric_type_signs_and_verifies() {
    let token = token("sign");
    let backend = backend(&token);
    for key_type in [
        "rsa-2048",
        "rsa-3072",
        "rsa-4096",
        "ecdsa-p256",
        "ecdsa-p384",
    ] {
        let reference = create(&backend, "acme", key_type);
        let cases = if key_type.starts_with("rsa") {
            RSA_CASES
        } else {
            EC_CASES
        };
        check_signing(&backend, "acme", &reference, key_type, cases);
        // Two objects: the private and the public key, both labelled for the tenant.
        let objects = hsm().objects_with_id(&token.label, id_of(&reference));
        assert_eq!(objects.len(), 2, "{key_type}: {objects:?}");
        assert!(objects
            .iter()
            .all(|object| object.label.as_deref() == Some("keybroker:acme:key-1")));
    }
    let listing = hsm().pkcs11_tool_on(&token.label, &["--list-objects", "--type", "privkey"]);
    assert_eq!(listing.matches("never extractable").count(), 5, "{listing}");
}

#[test]
fn signing_requests_must_fit_the_key() {
    let token = token("signreq");
    let backend = backend(&token);
    let rsa = create(&backend, "acme", "rsa-2048");
    let ec = create(&backend, "acme", "ecdsa-p256");
    let aes = create(&backend, "acme", "aes256-gcm96");
    let digest = sha2::Sha256::digest(b"m").to_vec();
    for (reference, hash, algorithm) in [
        (&rsa, "sha2-256", ""),
        (&rsa, "sha2-256", "oaep"),
        (&ec, "sha2-256", "pss"),
        (&ec, "sha1", ""),
        (&aes, "sha2-256", ""),
    ] {
        let error = sign(&backend, "acme", reference, &digest, hash, algorithm).unwrap_err();
        assert_eq!(
            error.kind,
            ErrorKind::INVALID_REQUEST,
            "{hash} {algorithm:?}"
        );
    }
    let error = backend.public_key("acme", &aes).unwrap_err();
    assert_eq!(error.kind, ErrorKind::INVALID_REQUEST, "{error}");
    let error = encrypt(&backend, "acme", &ec, b"x", b"", &[]).unwrap_err();
    assert_eq!(error.kind, ErrorKind::INVALID_REQUEST, "{error}");
    for key_type in ["aes128-gcm96", "ed448", "rsa-1024", ""] {
        let error = backend
            .create_key(CreateKeyRequest {
                tenant_id: "acme".into(),
                key_id: "k".into(),
                key_type: key_type.into(),
            })
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::INVALID_REQUEST, "{key_type}");
    }
    for tenant in ["", "a/b", "a:b"] {
        let error = backend
            .create_key(CreateKeyRequest {
                tenant_id: tenant.into(),
                key_id: "k".into(),
                key_type: "aes256-gcm96".into(),
            })
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::INVALID_REQUEST, "{tenant:?}");
    }
}

#[test]
fn existing_keys_bind_by_label_and_by_id() {
    let token = token("bind");
    let hsm = hsm();
    hsm.create_aes_key(&token.label, "payments-kek", "a1b2");
    hsm.create_ec_p256_key_pair(&token.label, "release-signing", "e1");
    hsm.create_rsa_key_pair(&token.label, 2048, "legacy-rsa", "0102");
    let backend = backend(&token);

    let by_label = bind(&backend, "acme", "aes256-gcm96", "label:payments-kek").unwrap();
    assert_eq!(by_label, "b/acme/a1b2");
    assert_eq!(
        bind(&backend, "acme", "aes256-gcm96", "payments-kek").unwrap(),
        by_label
    );
    assert_eq!(
        bind(&backend, "acme", "aes256-gcm96", "id:A1B2").unwrap(),
        by_label
    );
    assert_round_trip(&backend, "acme", &by_label);

    let ec = bind(&backend, "acme", "ecdsa-p256", "label:release-signing").unwrap();
    assert_eq!(ec, "b/acme/e1");
    check_signing(&backend, "acme", &ec, "ecdsa-p256", &EC_CASES[..1]);
    let rsa = bind(&backend, "acme", "rsa-2048", "id:0102").unwrap();
    check_signing(&backend, "acme", &rsa, "rsa-2048", &RSA_CASES[..2]);

    // Another tenant cannot use acme's binding.
    let error = encrypt(&backend, "globex", &by_label, b"x", b"", &[]).unwrap_err();
    assert_eq!(error.kind, ErrorKind::KEY_NOT_FOUND);

    // Deleting a bound key never destroys it.
    backend.delete_key("acme", &by_label).unwrap();
    backend.delete_key("acme", &ec).unwrap();
    assert_eq!(hsm.objects_with_id(&token.label, "a1b2").len(), 1);
    assert_eq!(hsm.objects_with_id(&token.label, "e1").len(), 2);
    assert_round_trip(&backend, "acme", &by_label);
}

#[test]
fn binding_refuses_broker_keys_wrong_types_and_ambiguity() {
    let token = token("bindno");
    let hsm = hsm();
    hsm.create_aes_key(&token.label, "kek", "aa01");
    hsm.create_aes128_key(&token.label, "short-kek", "aa02");
    hsm.create_ec_p256_key_pair(&token.label, "ec", "ec01");
    hsm.create_rsa_key_pair(&token.label, 2048, "rsa", "1234");
    hsm.create_aes_key(&token.label, "twin", "bb01");
    hsm.create_aes_key(&token.label, "twin", "bb02");
    let backend = backend(&token);

    // Keys the broker made, for this tenant or another, by label or by id.
    let created = create(&backend, "globex", "aes256-gcm96");
    for backend_key in [
        "label:keybroker:globex:key-1".to_owned(),
        format!("id:{}", id_of(&created)),
    ] {
        for tenant in ["acme", "globex"] {
            let error = bind(&backend, tenant, "aes256-gcm96", &backend_key).unwrap_err();
            assert_eq!(error.kind, ErrorKind::ACCESS_DENIED, "{backend_key}");
            assert_eq!(
                error.message.as_str(),
                "keys created by the broker cannot be bound"
            );
        }
    }

    let refused = |key_type: &str, backend_key: &str, expected: &str| {
        let error = bind(&backend, "acme", key_type, backend_key).unwrap_err();
        assert_eq!(
            error.kind,
            ErrorKind::INVALID_REQUEST,
            "{key_type} {backend_key}: {error}"
        );
        assert!(
            error.message.contains(expected),
            "{key_type} {backend_key}: {error}"
        );
    };
    refused("aes256-gcm96", "short-kek", "AES-128");
    refused("aes256-gcm96", "ec", "EC P-256 private key");
    refused("ecdsa-p256", "kek", "AES-256 secret key");
    refused("ecdsa-p384", "ec", "EC P-256");
    refused("rsa-3072", "rsa", "RSA-2048");
    refused("aes256-gcm96", "twin", "2 secret keys");
    refused("aes128-gcm96", "kek", "not supported");

    let error = bind(&backend, "acme", "aes256-gcm96", "label:nothing-here").unwrap_err();
    assert_eq!(error.kind, ErrorKind::KEY_NOT_FOUND, "{error}");
    assert!(error.message.contains("nothing-here"), "{error}");
    let error = bind(&backend, "acme", "aes256-gcm96", "id:ffff").unwrap_err();
    assert_eq!(error.kind, ErrorKind::KEY_NOT_FOUND, "{error}");
    let error = bind(&backend, "acme", "aes256-gcm96", "id:zz").unwrap_err();
    assert_eq!(error.kind, ErrorKind::INVALID_REQUEST, "{error}");
    // Each twin alone, by id, is fine.
    bind(&backend, "acme", "aes256-gcm96", "id:bb01").unwrap();
}

#[test]
fn delete_destroys_created_objects_only() {
    let token = token("delete");
    let backend = backend(&token);
    let aes = create(&backend, "acme", "aes256-gcm96");
    let ec = create(&backend, "acme", "ecdsa-p384");
    let keep = create(&backend, "acme", "aes256-gcm96");
    let blob = encrypt(&backend, "acme", &aes, b"x", b"", &[]).unwrap();
    assert_eq!(hsm().objects_with_id(&token.label, id_of(&ec)).len(), 2);

    // Another tenant's delete is refused and destroys nothing.
    let error = backend.delete_key("globex", &aes).unwrap_err();
    assert_eq!(error.kind, ErrorKind::KEY_NOT_FOUND);
    let forged = aes.replacen("c/acme/", "c/globex/", 1);
    // A forged reference finds no object labelled for globex: "already gone", nothing destroyed.
    backend.delete_key("globex", &forged).unwrap();
    assert_eq!(hsm().objects_with_id(&token.label, id_of(&aes)).len(), 1);

    backend.delete_key("acme", &aes).unwrap();
    backend.delete_key("acme", &ec).unwrap();
    assert!(hsm().objects_with_id(&token.label, id_of(&aes)).is_empty());
    assert!(hsm().objects_with_id(&token.label, id_of(&ec)).is_empty());
    let error = decrypt(&backend, "acme", &aes, &blob, b"").unwrap_err();
    assert_eq!(error.kind, ErrorKind::KEY_NOT_FOUND);
    let error = backend.public_key("acme", &ec).unwrap_err();
    assert_eq!(error.kind, ErrorKind::KEY_NOT_FOUND);
    // Gone already: still fine.
    backend.delete_key("acme", &aes).unwrap();
    assert_round_trip(&backend, "acme", &keep);
}

#[test]
fn a_wrong_pin_fails_the_constructor_without_showing_it() {
    let token = token("pin");
    std::env::set_var("KB_TEST_PKCS11_WRONG_PIN", "wrong-98765");
    let mut config = config(&token);
    config.as_object_mut().unwrap().remove("pin_file");
    config["pin_env"] = json!("KB_TEST_PKCS11_WRONG_PIN");
    let check = |error: PluginError| {
        assert!(
            matches!(
                error.kind,
                ErrorKind::INVALID_CONFIG | ErrorKind::UNAVAILABLE
            ),
            "{error:?}"
        );
        assert!(
            error.message.starts_with(&format!(
                "login to token \"{}\" failed: CKR_PIN_INCORRECT",
                token.label
            )),
            "{error}"
        );
        assert!(!error.message.contains("98765"), "{error}");
        assert!(!error.message.contains(PIN), "{error}");
    };
    check(build(&config).unwrap_err());
    // While a right PIN holds the token logged in (for the whole process), a wrong one is
    // still refused.
    let right = backend(&token);
    check(build(&config).unwrap_err());
    assert_eq!(right.health(), Ok(()));
    // An inline PIN is refused before anything else.
    let mut inline = config.clone();
    inline["pin"] = json!(PIN);
    let error = build(&inline).unwrap_err();
    assert_eq!(error.kind, ErrorKind::INVALID_CONFIG);
    assert!(!error.message.contains(PIN), "{error}");
}

#[test]
fn a_module_hash_mismatch_fails_the_constructor() {
    let token = token("hash");
    let mut config = config(&token);
    let pinned = "ab".repeat(32);
    config["module_sha256"] = json!(pinned);
    let error = build(&config).unwrap_err();
    assert_eq!(error.kind, ErrorKind::INVALID_CONFIG);
    let module = hsm().module_path().display().to_string();
    assert!(error.message.contains(&module), "{error}");
    assert!(error.message.contains(&pinned), "{error}");
    assert!(error.message.contains(&hsm().module_sha256()), "{error}");
}

#[test]
fn an_unknown_token_is_unavailable() {
    let mut config = config(&token("known"));
    config["token_label"] = json!(unique_label("never-made"));
    let error = build(&config).unwrap_err();
    assert_eq!(error.kind, ErrorKind::UNAVAILABLE);
    assert!(error.message.contains("is not reachable"), "{error}");
}

#[test]
fn instances_share_one_module_context() {
    let token = token("shared");
    let first = backend(&token);
    let second = backend(&token);
    assert!(Arc::ptr_eq(&first.module, &second.module));
    let other_token = backend(&self::token("shared-other"));
    assert!(Arc::ptr_eq(&first.module, &other_token.module));

    let reference = create(&first, "acme", "aes256-gcm96");
    let blob = encrypt(&first, "acme", &reference, b"shared", b"", &[]).unwrap();
    assert_eq!(
        decrypt(&second, "acme", &reference, &blob, b"").unwrap(),
        b"shared"
    );
    drop(first);
    // The module is still initialised, the token still logged in for the other instance.
    assert_eq!(second.health(), Ok(()));
    assert_eq!(
        decrypt(&second, "acme", &reference, &blob, b"").unwrap(),
        b"shared"
    );
    assert_round_trip(
        &other_token,
        "acme",
        &create(&other_token, "acme", "aes256-gcm96"),
    );
}

#[test]
fn sessions_never_exceed_max_sessions() {
    let token = token("pool");
    let mut config = config(&token);
    config["max_sessions"] = json!(2);
    let backend = build(&config).unwrap();
    let reference = create(&backend, "acme", "aes256-gcm96");
    std::thread::scope(|scope| {
        for thread in 0..8u8 {
            let (backend, reference) = (&backend, &reference);
            scope.spawn(move || {
                for round in 0..25u8 {
                    let plaintext = [thread, round];
                    let blob = encrypt(backend, "acme", reference, &plaintext, b"", &[]).unwrap();
                    assert_eq!(
                        decrypt(backend, "acme", reference, &blob, b"").unwrap(),
                        plaintext
                    );
                }
            });
        }
    });
    let stats = backend.session_stats();
    assert!(stats.peak <= 2, "{stats:?}");
    assert!(stats.peak >= 1, "{stats:?}");
    assert!(stats.open <= 2 && stats.idle == stats.open, "{stats:?}");
}

#[test]
fn a_call_waits_for_a_session_at_most_session_wait() {
    let token = token("wait");
    let mut config = config(&token);
    config["max_sessions"] = json!(1);
    let backend = build(&config).unwrap();
    let reference = create(&backend, "acme", "aes256-gcm96");
    // Built and prepared with the patient wait, which a constructor or a call racing another
    // test's re-initialisation may need; only the call under test gets 200 ms.
    let mut impatient = build(&config).unwrap();
    let reference_for_impatient = create(&impatient, "acme", "aes256-gcm96");

    // Hold the impatient instance's only session, as a long call would.
    let held = {
        let module = impatient.module.read(Duration::from_secs(10)).unwrap();
        let slot = impatient.slot(module.generation).unwrap();
        impatient
            .lease(
                module.generation,
                slot,
                Instant::now() + Duration::from_secs(10),
            )
            .map_err(|failure| failure.error)
            .unwrap()
    };
    impatient.config.session_wait = Duration::from_millis(200);
    let started = Instant::now();
    let error = encrypt(&impatient, "acme", &reference_for_impatient, b"x", b"", &[]).unwrap_err();
    let waited = started.elapsed();
    assert_eq!(error.kind, ErrorKind::UNAVAILABLE, "{error}");
    assert!(error.message.contains("HSM token"), "{error}");
    // The session stays held, so only the 200 ms wait can end the call. The bound, loose
    // because a loaded machine answers late, tells that from a call left waiting for the
    // session (the patient wait would take 60 s).
    assert!(waited < Duration::from_secs(20), "waited {waited:?}");
    assert!(impatient.session_stats().peak <= 1);
    impatient.config.session_wait = PATIENT_SESSION_WAIT;
    impatient.pool.put(held);
    assert_round_trip(&impatient, "acme", &reference_for_impatient);
    assert_round_trip(&backend, "acme", &reference);
}

#[test]
fn calls_recover_after_the_module_was_reinitialised() {
    let token = token("reinit");
    let first = backend(&token);
    let second = backend(&self::token("reinit-2"));
    let aes = create(&first, "acme", "aes256-gcm96");
    let ec = create(&second, "acme", "ecdsa-p256");
    // Warm the handle caches and the pools.
    assert_round_trip(&first, "acme", &aes);
    let pem = second.public_key("acme", &ec).unwrap();

    // Re-initialise as recovery does (retrying while other tests' calls are in flight).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let generation = first
            .module
            .read(Duration::from_secs(10))
            .unwrap()
            .generation;
        match first.module.reinitialize(generation) {
            Reinit::Done | Reinit::AlreadyDone => break,
            Reinit::Busy if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            other => panic!("re-initialisation: {other:?}"),
        }
    }
    // Old sessions, slots and handles are of a past generation: both instances carry on.
    assert_round_trip(&first, "acme", &aes);
    assert_eq!(second.public_key("acme", &ec).unwrap(), pem);
    let digest = sha2::Sha256::digest(b"after");
    let signature = sign(&second, "acme", &ec, &digest, "sha2-256", "").unwrap();
    assert!(verify(&second, "acme", &ec, &digest, "sha2-256", "", &signature).unwrap());
    assert_eq!(first.health(), Ok(()));
    assert!(first.session_stats().open <= crate::DEFAULT_MAX_SESSIONS);
}

#[test]
fn info_debug_and_logs_reveal_no_pin() {
    let token = token("info");
    let host = RecordingHost::default();
    let backend = new_backend(&config(&token).to_string(), host.clone().into_box()).unwrap();
    let info = backend.info();
    assert_eq!(info.name.as_str(), "pkcs11");
    assert_eq!(
        info.capabilities,
        capability::ENVELOPE
            | capability::DIRECT
            | capability::BIND_EXISTING
            | capability::SIGN
            | capability::ASYMMETRIC_DECRYPT
    );
    assert_eq!(info.max_payload, crate::DEFAULT_MAX_PAYLOAD);
    let debug = format!("{backend:?}");
    assert!(debug.contains(&token.label), "{debug}");
    assert!(!debug.contains(PIN), "{debug}");
    let lines = host.lines();
    assert!(lines.iter().any(|line| line.contains("ready")), "{lines:?}");
    assert!(lines.iter().all(|line| !line.contains(PIN)), "{lines:?}");
}

#[test]
fn works_through_the_ffi_wrapper() {
    let token = token("ffi");
    let ffi = keybroker_plugin_abi::into_ffi(backend(&token));
    assert_eq!(ffi.info().unwrap().name.as_str(), "pkcs11");
    assert!(ffi.health().is_ok());
}

#[test]
fn passes_the_conformance_suite() {
    use keybroker_plugin_conformance::{BindableKey, Options};
    let token = token("conformance");
    let hsm = hsm();
    hsm.create_aes_key(&token.label, "conformance-aes", "c0a1");
    hsm.create_ec_p256_key_pair(&token.label, "conformance-ec", "c0e1");
    hsm.create_rsa_key_pair(&token.label, 2048, "conformance-rsa", "c0f1");
    let backend = keybroker_plugin_abi::into_ffi(backend(&token));
    let bindable = |backend_key: &str, key_type: &str| BindableKey {
        backend_key: backend_key.to_owned(),
        key_type: key_type.to_owned(),
    };
    let options = Options {
        bindable_keys: vec![
            bindable("label:conformance-aes", "aes256-gcm96"),
            bindable("id:c0e1", "ecdsa-p256"),
            bindable("conformance-rsa", "rsa-2048"),
        ],
        ..Options::default()
    };
    keybroker_plugin_conformance::run(&backend, &options);
    // Keys stay in the HSM: no private key leaves or enters through the plugin.
    keybroker_plugin_conformance::check_no_private_key_transfer(&backend, &options);
}
