//! The plugin against moto behind the fault proxy (`tests/moto`), through the ABI trait
//! object the broker uses.

use std::time::{Duration, Instant};

use aws_sdk_kms::types::{KeySpec, KeyState, KeyUsageType};
use keybroker_moto_harness::{FaultProxy, MotoServer};
use keybroker_plugin_abi::{
    abi_stable::std_types::RVec, capability, BackendBox, ErrorKind, GenerateDataKeyRequest,
};
use keybroker_plugin_conformance::{
    calls::{
        assert_error, assert_key_not_found, assert_round_trip, bind_for_test_tenant, create,
        decrypt, delete, encrypt, instance, instance_with, public_key, rstring, sign,
        signature_schemes, until_available, verify, OTHER_TENANT, TENANT,
    },
    outage::Outage,
    RecordingHost,
};
use serde_json::json;
use sha2::Digest as _;

use crate::backend::new_backend;

const ACCESS_KEY_ENV: &str = "KEYBROKER_TEST_AWS_ACCESS_KEY_ID";
const SECRET_KEY_ENV: &str = "KEYBROKER_TEST_AWS_SECRET_ACCESS_KEY";

/// Operation timeout of every instance whose calls are not meant to time out: generous,
/// because moto generates keys (RSA-4096 ones take seconds) in Python, beside the other
/// tests of this binary, on machines with as few as 2 cores. A test must never race that.
const GENEROUS_TIMEOUT_MS: u64 = 60_000;
/// Operation timeout of the instances that tests fault on purpose (throttling, a paused
/// moto) to see them give up: the plugin's default. Only the faulty calls go through them.
const SHORT_TIMEOUT_MS: u64 = 1_500;
/// Throttling that outlasts any call of the test: it ends when the test stops it.
const LONG_THROTTLE: Duration = Duration::from_secs(600);
/// Upper bound on a call that a fault made time out. It is not a measure of the machine's
/// speed: it is far below the fault's own length (throttling for [`LONG_THROTTLE`]; a
/// paused moto never answers), so it only shows that the operation timeout, not the end of
/// the fault, stopped the call.
const GAVE_UP_WITHIN: Duration = Duration::from_secs(60);

/// moto and the fault proxy in front of it, for one test.
struct Kms {
    moto: MotoServer,
    proxy: FaultProxy,
}

fn kms() -> Kms {
    let moto = MotoServer::start();
    let proxy = FaultProxy::in_front_of(&moto);
    Kms { moto, proxy }
}

fn config(endpoint: &str, operation_timeout_ms: u64) -> serde_json::Value {
    // moto accepts any credentials; these come from the environment as in production.
    std::env::set_var(ACCESS_KEY_ENV, "AKIAKEYBROKERTEST");
    std::env::set_var(SECRET_KEY_ENV, "keybroker-test-secret");
    json!({
        "region": "us-east-1",
        "endpoint": endpoint,
        "credentials": {
            "access_key_id_env": ACCESS_KEY_ENV,
            "secret_access_key_env": SECRET_KEY_ENV,
        },
        "operation_timeout_ms": operation_timeout_ms,
    })
}

fn backend(kms: &Kms) -> BackendBox {
    instance_with(
        new_backend,
        &config(&kms.proxy.endpoint(), GENEROUS_TIMEOUT_MS),
    )
}

/// An SDK client straight to moto, to arrange and inspect what the plugin should see.
fn sdk(kms: &Kms) -> (tokio::runtime::Runtime, aws_sdk_kms::Client) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let config = crate::config::Config::parse(
        &config(&kms.moto.endpoint(), GENEROUS_TIMEOUT_MS).to_string(),
    )
    .unwrap();
    let credentials = config.credential_source().unwrap();
    let client = runtime.block_on(crate::backend::client(&config, credentials));
    (runtime, client)
}

/// The KMS key id of a `c/` reference.
fn kms_key_id(reference: &str) -> String {
    reference.rsplit('/').next().unwrap().to_owned()
}

#[test]
fn encrypts_decrypts_and_makes_data_keys() {
    let kms = kms();
    let backend = backend(&kms);
    let info = backend.info().into_result().unwrap();
    assert_eq!(info.name.as_str(), "aws-kms");
    assert_eq!(info.max_payload, 4096);
    let all = capability::ENVELOPE
        | capability::DIRECT
        | capability::BIND_EXISTING
        | capability::SIGN
        | capability::GENERATE_DATA_KEY;
    assert_eq!(info.capabilities, all);
    backend.health().into_result().unwrap();

    let key = create(&backend, TENANT, "aes256-gcm96");
    assert!(key.starts_with(&format!("c/{TENANT}/")), "{key}");
    let ciphertext = encrypt(&backend, TENANT, &key, b"a secret", b"binding").unwrap();
    assert_eq!(
        decrypt(&backend, TENANT, &key, &ciphertext, b"binding").unwrap(),
        b"a secret"
    );
    assert_error(
        decrypt(&backend, TENANT, &key, &ciphertext, b"other"),
        ErrorKind::INVALID_CIPHERTEXT,
        "",
    );
    let empty = encrypt(&backend, TENANT, &key, b"", b"binding").unwrap();
    assert_eq!(
        decrypt(&backend, TENANT, &key, &empty, b"binding").unwrap(),
        b""
    );

    // Envelope mode: KMS makes the data key; decrypt with the same AAD unwraps it.
    let data_key = backend
        .generate_data_key(GenerateDataKeyRequest {
            tenant_id: rstring(TENANT),
            key_reference: rstring(&key),
            aad: RVec::from(&b"dek binding"[..]),
            length: 32,
        })
        .into_result()
        .unwrap();
    assert_eq!(data_key.plaintext.len(), 32);
    let unwrapped = decrypt(&backend, TENANT, &key, &data_key.wrapped, b"dek binding").unwrap();
    assert_eq!(unwrapped, data_key.plaintext.as_slice());
    assert_error(
        decrypt(&backend, TENANT, &key, &data_key.wrapped, b""),
        ErrorKind::INVALID_CIPHERTEXT,
        "",
    );

    // Another tenant: not found, without naming the owner, and without asking KMS.
    kms.proxy.reset_counts();
    let error = assert_error(
        encrypt(&backend, OTHER_TENANT, &key, b"x", b""),
        ErrorKind::KEY_NOT_FOUND,
        "not found",
    );
    assert!(!error.message.contains(TENANT));
    assert_key_not_found(decrypt(
        &backend,
        OTHER_TENANT,
        &key,
        &ciphertext,
        b"binding",
    ));
    // Too large: refused before any call, naming both sizes.
    assert_error(
        encrypt(&backend, TENANT, &key, &[7; 4097], b""),
        ErrorKind::PAYLOAD_TOO_LARGE,
        "4097",
    );
    assert_error(
        encrypt(&backend, TENANT, &key, &[7; 4097], b""),
        ErrorKind::PAYLOAD_TOO_LARGE,
        "4096",
    );
    assert_eq!(kms.proxy.counts().forwarded.values().sum::<u64>(), 0);
    let largest = vec![5u8; 4096];
    assert_round_trip(&backend, TENANT, &key, &largest);

    // A fresh instance checks the key's tags once, then costs one call per operation.
    let fresh = self::backend(&kms);
    kms.proxy.reset_counts();
    decrypt(&fresh, TENANT, &key, &ciphertext, b"binding").unwrap();
    decrypt(&fresh, TENANT, &key, &ciphertext, b"binding").unwrap();
    let counts = kms.proxy.counts();
    assert_eq!(counts.forwarded("ListResourceTags"), 1, "{counts:?}");
    assert_eq!(counts.forwarded("Decrypt"), 2, "{counts:?}");
    // A reference naming the other tenant with this tenant's key fails the tag check.
    let forged = format!("c/{OTHER_TENANT}/{}", kms_key_id(&key));
    let error = assert_key_not_found(decrypt(
        &fresh,
        OTHER_TENANT,
        &forged,
        &ciphertext,
        b"binding",
    ));
    assert!(!error.message.contains(TENANT));

    // Tags say who owns the key.
    let (runtime, client) = sdk(&kms);
    let tags = runtime
        .block_on(client.list_resource_tags().key_id(kms_key_id(&key)).send())
        .unwrap();
    let tag = |name: &str| {
        tags.tags()
            .iter()
            .find(|tag| tag.tag_key() == name)
            .map(|tag| tag.tag_value().to_owned())
    };
    assert_eq!(tag("keybroker:tenant").as_deref(), Some(TENANT));
    assert_eq!(tag("keybroker:key").as_deref(), Some("key-aes256-gcm96"));
}

/// RSASSA-PSS with the salt length AWS KMS uses (the digest's length) or the one moto uses
/// (the largest possible): moto deviates from AWS there.
fn pss_verifies<D: sha2::Digest + sha2::digest::DynDigest + Clone + Send + Sync + 'static>(
    public: &rsa::RsaPublicKey,
    digest: &[u8],
    signature: &[u8],
) -> Result<(), rsa::Error> {
    use rsa::traits::PublicKeyParts as _;
    let hash_len = <D as sha2::Digest>::output_size();
    let largest_salt = public.size() - hash_len - 2;
    public
        .verify(rsa::Pss::new::<D>(), digest, signature)
        .or_else(|_| {
            public.verify(
                rsa::Pss::new_with_salt::<D>(largest_salt),
                digest,
                signature,
            )
        })
}

#[test]
fn signs_and_verifies_with_every_asymmetric_type() {
    use rsa::{pkcs8::DecodePublicKey as _, Pkcs1v15Sign};
    let kms = kms();
    let backend = backend(&kms);
    // Ed25519 is refused (`check_refuses_key_type` in the conformance test).
    for key_type in keybroker_plugin_abi::key_type::ASYMMETRIC
        .into_iter()
        .filter(|key_type| *key_type != "ed25519")
    {
        let key = create(&backend, TENANT, key_type);
        let pem = public_key(&backend, TENANT, &key).unwrap();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
        let schemes = signature_schemes(key_type);
        let message = b"keybroker: message to sign";
        for (hash, digest) in [
            ("sha2-256", sha2::Sha256::digest(message).to_vec()),
            ("sha2-384", sha2::Sha384::digest(message).to_vec()),
            ("sha2-512", sha2::Sha512::digest(message).to_vec()),
        ] {
            let curve_hash = match key_type {
                "ecdsa-p256" => Some("sha2-256"),
                "ecdsa-p384" => Some("sha2-384"),
                "ecdsa-p521" => Some("sha2-512"),
                _ => None,
            };
            if curve_hash.is_some_and(|curve_hash| curve_hash != hash) {
                // KMS signs with a curve's own hash only.
                assert_error(
                    sign(&backend, TENANT, &key, hash, "", &digest),
                    ErrorKind::INVALID_REQUEST,
                    "only over",
                );
                continue;
            }
            for scheme in schemes {
                let what = format!("{key_type} {hash} {scheme:?}");
                let signature = sign(&backend, TENANT, &key, hash, scheme, &digest)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                let verify = |digest: &[u8], signature: &[u8]| {
                    verify(&backend, TENANT, &key, hash, scheme, digest, signature)
                        .unwrap_or_else(|e| panic!("{what}: verify: {e}"))
                };
                assert!(verify(&digest, &signature), "{what}");
                let mut other = digest.clone();
                other[0] ^= 1;
                assert!(!verify(&other, &signature), "{what}: another digest");
                let mut corrupted = signature.clone();
                let middle = corrupted.len() / 2;
                corrupted[middle] ^= 4;
                assert!(!verify(&digest, &corrupted), "{what}: corrupted");
                assert!(!verify(&digest, &signature[1..]), "{what}: truncated");
                assert!(!verify(&digest, &[]), "{what}: empty");

                // Checked independently against the PEM public key. moto does not implement
                // MessageType DIGEST (it hashes the digest again, see its KMS `sign` docs), so
                // a signature over the digest (AWS) or over its hash (moto) is accepted.
                let independently = |digest: &[u8]| match key_type {
                    "ecdsa-p256" => {
                        use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
                        let public = p256::ecdsa::VerifyingKey::from_public_key_pem(&pem).unwrap();
                        let signature = p256::ecdsa::Signature::from_slice(&signature).unwrap();
                        public.verify_prehash(digest, &signature).is_ok()
                    }
                    "ecdsa-p384" => {
                        use p384::ecdsa::signature::hazmat::PrehashVerifier as _;
                        let public = p384::ecdsa::VerifyingKey::from_public_key_pem(&pem).unwrap();
                        let signature = p384::ecdsa::Signature::from_slice(&signature).unwrap();
                        public.verify_prehash(digest, &signature).is_ok()
                    }
                    "ecdsa-p521" => {
                        use p521::ecdsa::signature::hazmat::PrehashVerifier as _;
                        let public = p521::PublicKey::from_public_key_pem(&pem).unwrap();
                        let public =
                            p521::ecdsa::VerifyingKey::from_affine(*public.as_affine()).unwrap();
                        let signature = p521::ecdsa::Signature::from_slice(&signature).unwrap();
                        public.verify_prehash(digest, &signature).is_ok()
                    }
                    _ => {
                        let public = rsa::RsaPublicKey::from_public_key_pem(&pem).unwrap();
                        let result = match (hash, *scheme) {
                            ("sha2-256", "pss") => {
                                pss_verifies::<sha2::Sha256>(&public, digest, &signature)
                            }
                            ("sha2-384", "pss") => {
                                pss_verifies::<sha2::Sha384>(&public, digest, &signature)
                            }
                            ("sha2-512", "pss") => {
                                pss_verifies::<sha2::Sha512>(&public, digest, &signature)
                            }
                            ("sha2-256", _) => public.verify(
                                Pkcs1v15Sign::new::<sha2::Sha256>(),
                                digest,
                                &signature,
                            ),
                            ("sha2-384", _) => public.verify(
                                Pkcs1v15Sign::new::<sha2::Sha384>(),
                                digest,
                                &signature,
                            ),
                            _ => public.verify(
                                Pkcs1v15Sign::new::<sha2::Sha512>(),
                                digest,
                                &signature,
                            ),
                        };
                        result.is_ok()
                    }
                };
                let rehashed = match hash {
                    "sha2-256" => sha2::Sha256::digest(&digest).to_vec(),
                    "sha2-384" => sha2::Sha384::digest(&digest).to_vec(),
                    _ => sha2::Sha512::digest(&digest).to_vec(),
                };
                let valid = independently(&digest) || independently(&rehashed);
                assert!(valid, "{what}: independent verification");
            }
        }
        // KMS has no SHA-224.
        let sha224 = sha2::Sha224::digest(message);
        assert_error(
            sign(&backend, TENANT, &key, "sha2-224", schemes[0], &sha224),
            ErrorKind::INVALID_REQUEST,
            "SHA-224",
        );
        assert_key_not_found(public_key(&backend, OTHER_TENANT, &key));
        assert_error(
            encrypt(&backend, TENANT, &key, b"x", b""),
            ErrorKind::INVALID_REQUEST,
            "aes256-gcm96",
        );
    }
}

#[test]
fn binds_existing_keys_and_never_deletes_them() {
    let kms = kms();
    let backend = backend(&kms);
    let (runtime, client) = sdk(&kms);
    let make = |spec: KeySpec, usage: KeyUsageType| {
        let created = runtime
            .block_on(client.create_key().key_spec(spec).key_usage(usage).send())
            .unwrap();
        let metadata = created.key_metadata().unwrap();
        (
            metadata.key_id().to_owned(),
            metadata.arn().unwrap().to_owned(),
        )
    };
    let (aes_id, aes_arn) = make(KeySpec::SymmetricDefault, KeyUsageType::EncryptDecrypt);
    runtime
        .block_on(
            client
                .create_alias()
                .alias_name("alias/keybroker-test")
                .target_key_id(&aes_id)
                .send(),
        )
        .unwrap();
    for name in [aes_id.as_str(), aes_arn.as_str(), "alias/keybroker-test"] {
        let reference = bind_for_test_tenant(&backend, name, "aes256-gcm96")
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(reference, format!("b/{TENANT}/{aes_arn}"));
        let ciphertext = encrypt(&backend, TENANT, &reference, b"bound", b"aad").unwrap();
        assert_eq!(
            decrypt(&backend, TENANT, &reference, &ciphertext, b"aad").unwrap(),
            b"bound"
        );
        assert_key_not_found(decrypt(
            &backend,
            OTHER_TENANT,
            &reference,
            &ciphertext,
            b"aad",
        ));
        // Deleting a bound key leaves it alone.
        kms.proxy.reset_counts();
        delete(&backend, TENANT, &reference).unwrap();
        assert_eq!(kms.proxy.counts().forwarded("ScheduleKeyDeletion"), 0);
    }
    let (ec_id, _) = make(KeySpec::EccNistP256, KeyUsageType::SignVerify);
    bind_for_test_tenant(&backend, &ec_id, "ecdsa-p256").unwrap();
    assert_error(
        bind_for_test_tenant(&backend, &ec_id, "ecdsa-p384"),
        ErrorKind::INVALID_REQUEST,
        "ECC_NIST_P256",
    );
    assert_error(
        bind_for_test_tenant(&backend, &aes_id, "rsa-2048"),
        ErrorKind::INVALID_REQUEST,
        "SYMMETRIC_DEFAULT",
    );
    assert_key_not_found(bind_for_test_tenant(
        &backend,
        "alias/keybroker-missing",
        "aes256-gcm96",
    ));
    assert_error(
        bind_for_test_tenant(&backend, "", "aes256-gcm96"),
        ErrorKind::INVALID_REQUEST,
        "backend_key",
    );

    // Keys the broker made are never bindable, not even by their own tenant.
    let made = create(&backend, TENANT, "aes256-gcm96");
    assert_error(
        bind_for_test_tenant(&backend, &kms_key_id(&made), "aes256-gcm96"),
        ErrorKind::ACCESS_DENIED,
        "keybroker:tenant",
    );

    // A disabled or pending-deletion key cannot be bound; the state is named.
    let (other_id, _) = make(KeySpec::SymmetricDefault, KeyUsageType::EncryptDecrypt);
    kms.proxy.disable_key(&other_id);
    assert_error(
        bind_for_test_tenant(&backend, &other_id, "aes256-gcm96"),
        ErrorKind::INVALID_REQUEST,
        "disabled",
    );
    kms.proxy.schedule_key_deletion(&other_id);
    assert_error(
        bind_for_test_tenant(&backend, &other_id, "aes256-gcm96"),
        ErrorKind::INVALID_REQUEST,
        "pending deletion",
    );
    kms.proxy.deny_access(&other_id);
    assert_error(
        bind_for_test_tenant(&backend, &other_id, "aes256-gcm96"),
        ErrorKind::ACCESS_DENIED,
        "not authorized",
    );
}

#[test]
fn key_states_and_access_are_reported_and_deletion_is_scheduled() {
    let kms = kms();
    let backend = backend(&kms);
    let key = create(&backend, TENANT, "aes256-gcm96");
    let id = kms_key_id(&key);
    let ciphertext = encrypt(&backend, TENANT, &key, b"data", b"").unwrap();
    kms.proxy.disable_key(&id);
    assert_error(
        encrypt(&backend, TENANT, &key, b"data", b""),
        ErrorKind::INVALID_REQUEST,
        "key is disabled",
    );
    assert_error(
        decrypt(&backend, TENANT, &key, &ciphertext, b""),
        ErrorKind::INVALID_REQUEST,
        "key is disabled",
    );
    kms.proxy.schedule_key_deletion(&id);
    assert_error(
        encrypt(&backend, TENANT, &key, b"data", b""),
        ErrorKind::INVALID_REQUEST,
        "key is pending deletion",
    );
    kms.proxy.deny_access(&id);
    assert_error(
        decrypt(&backend, TENANT, &key, &ciphertext, b""),
        ErrorKind::ACCESS_DENIED,
        "not authorized",
    );
    kms.proxy.clear_key_fault(&id);
    assert_eq!(
        decrypt(&backend, TENANT, &key, &ciphertext, b"").unwrap(),
        b"data"
    );

    delete(&backend, TENANT, &key).unwrap();
    assert_eq!(kms.proxy.forwarded("ScheduleKeyDeletion"), 1);
    let (runtime, client) = sdk(&kms);
    let described = runtime
        .block_on(client.describe_key().key_id(&id).send())
        .unwrap();
    assert_eq!(
        described.key_metadata().unwrap().key_state(),
        Some(&KeyState::PendingDeletion)
    );
    assert_key_not_found(delete(&backend, OTHER_TENANT, &key));
}

#[test]
fn throttling_is_retried_by_the_sdk_then_unavailable_within_the_timeout() {
    let kms = kms();
    let backend = backend(&kms);
    let key = create(&backend, TENANT, "aes256-gcm96");
    kms.proxy.throttle_next(2);
    let ciphertext = encrypt(&backend, TENANT, &key, b"data", b"").unwrap();
    assert_eq!(kms.proxy.throttled("Encrypt"), 2);

    // Throttled for longer than the SDK retries: its 3 attempts are throttled, then AWS's
    // throttling error is UNAVAILABLE (the generous timeout plays no part).
    kms.proxy.throttle_for(LONG_THROTTLE);
    assert_error(
        decrypt(&backend, TENANT, &key, &ciphertext, b""),
        ErrorKind::UNAVAILABLE,
        "ThrottlingException",
    );
    assert_eq!(kms.proxy.throttled("Decrypt"), 3);
    assert_error(backend.health().into_result(), ErrorKind::UNAVAILABLE, "");

    // An instance with a short timeout, and attempts enough that only the timeout can end a
    // throttled call. Key references carry all an instance needs, so it uses the key made
    // above; its first use (which checks the key's tags) comes before the fault.
    kms.proxy.stop_throttling();
    let mut short = config(&kms.proxy.endpoint(), SHORT_TIMEOUT_MS);
    short["max_attempts"] = json!(50);
    let hurried = instance_with(new_backend, &short);
    let warm = until_available("first use", || {
        decrypt(&hurried, TENANT, &key, &ciphertext, b"")
    });
    assert_eq!(warm, b"data");
    kms.proxy.throttle_for(LONG_THROTTLE);
    let started = Instant::now();
    assert_error(
        decrypt(&hurried, TENANT, &key, &ciphertext, b""),
        ErrorKind::UNAVAILABLE,
        "no answer within the operation timeout",
    );
    let elapsed = started.elapsed();
    assert!(elapsed < GAVE_UP_WITHIN, "{elapsed:?}");
    assert!(kms.proxy.throttled("Decrypt") > 3);
    assert_error(hurried.health().into_result(), ErrorKind::UNAVAILABLE, "");

    kms.proxy.stop_throttling();
    let recovered = until_available("after the throttling", || {
        decrypt(&hurried, TENANT, &key, &ciphertext, b"")
    });
    assert_eq!(recovered, b"data");
    assert_eq!(
        decrypt(&backend, TENANT, &key, &ciphertext, b"").unwrap(),
        b"data"
    );
}

#[test]
fn an_unanswering_kms_is_unavailable_within_the_timeout_and_recovers() {
    let kms = kms();
    // The key and ciphertext through an instance with a generous timeout; the outage
    // through one with a short timeout, whose host is recorded.
    let backend = backend(&kms);
    let key = create(&backend, TENANT, "aes256-gcm96");
    let ciphertext = encrypt(&backend, TENANT, &key, b"data", b"").unwrap();
    let host = RecordingHost::default();
    let hurried = instance(new_backend(
        &config(&kms.proxy.endpoint(), SHORT_TIMEOUT_MS).to_string(),
        host.clone().into_box(),
    ));
    // Its first use of the key (which checks the key's tags) comes before the outage.
    // Recovered once moto answers again, however long it takes to catch up.
    Outage {
        backend: &hurried,
        host: &host,
        tenant: TENANT,
        key: &key,
        ciphertext: &ciphertext,
        plaintext: b"data",
        fault_message: "",
        gave_up_within: GAVE_UP_WITHIN,
        decrypts_once_healthy: false,
    }
    .run(|| kms.moto.pause(), || kms.moto.resume());
}

#[test]
fn missing_credential_variables_are_named_not_their_values() {
    std::env::set_var("KEYBROKER_TEST_AWS_PRESENT", "AKIA-VALUE-NOT-TO-SHOW");
    let config = json!({
        "region": "us-east-1",
        "credentials": {
            "access_key_id_env": "KEYBROKER_TEST_AWS_PRESENT",
            "secret_access_key_env": "KEYBROKER_TEST_AWS_ABSENT",
        },
    });
    let error = new_backend(&config.to_string(), RecordingHost::boxed()).unwrap_err();
    assert_eq!(error.kind, ErrorKind::INVALID_CONFIG);
    assert!(
        error.message.contains("KEYBROKER_TEST_AWS_ABSENT"),
        "{error}"
    );
    assert!(!error.message.contains("AKIA-VALUE-NOT-TO-SHOW"), "{error}");
    let error = new_backend(
        r#"{"region":"us-east-1","timeout":3}"#,
        RecordingHost::boxed(),
    )
    .unwrap_err();
    assert_eq!(error.kind, ErrorKind::INVALID_CONFIG);
    assert!(error.message.contains("timeout"), "{error}");
}

#[test]
fn passes_the_conformance_suite() {
    use keybroker_plugin_conformance::{BindableKey, Options};
    let kms = kms();
    let backend = backend(&kms);
    let (runtime, client) = sdk(&kms);
    let make = |spec: KeySpec, usage: KeyUsageType| {
        let created = runtime
            .block_on(client.create_key().key_spec(spec).key_usage(usage).send())
            .unwrap();
        let metadata = created.key_metadata().unwrap();
        (
            metadata.key_id().to_owned(),
            metadata.arn().unwrap().to_owned(),
        )
    };
    let (_, aes_arn) = make(KeySpec::SymmetricDefault, KeyUsageType::EncryptDecrypt);
    let (ec_id, _) = make(KeySpec::EccNistP256, KeyUsageType::SignVerify);
    runtime
        .block_on(
            client
                .create_alias()
                .alias_name("alias/conformance-ec")
                .target_key_id(&ec_id)
                .send(),
        )
        .unwrap();
    let (rsa_id, _) = make(KeySpec::Rsa2048, KeyUsageType::SignVerify);
    let bindable = |backend_key: &str, key_type: &str| BindableKey {
        backend_key: backend_key.to_owned(),
        key_type: key_type.to_owned(),
    };
    let options = Options {
        bindable_keys: vec![
            bindable(&aes_arn, "aes256-gcm96"),
            bindable("alias/conformance-ec", "ecdsa-p256"),
            bindable(&rsa_id, "rsa-2048"),
        ],
        // Ed25519 is refused (checked below).
        asymmetric_key_types: keybroker_plugin_abi::key_type::ASYMMETRIC
            .into_iter()
            .filter(|key_type| *key_type != "ed25519")
            .map(str::to_owned)
            .collect(),
        // KMS pairs each curve with its own hash and has no SHA-224.
        signing_hashes: |key_type| match key_type {
            "ecdsa-p256" => vec!["sha2-256"],
            "ecdsa-p384" => vec!["sha2-384"],
            "ecdsa-p521" => vec!["sha2-512"],
            _ => vec!["sha2-256", "sha2-384", "sha2-512"],
        },
        moto_signatures: true,
        ..Options::default()
    };
    keybroker_plugin_conformance::run(&backend, &options);
    keybroker_plugin_conformance::check_refuses_key_type(&backend, &options, "ed25519");
    // Keys stay in KMS: no private key leaves or enters through the plugin.
    keybroker_plugin_conformance::check_no_private_key_transfer(&backend, &options);
}

#[test]
fn credentials_come_from_a_shared_credentials_file() {
    let kms = kms();
    let file = std::env::temp_dir().join(format!(
        "keybroker-aws-kms-credentials-{}",
        std::process::id()
    ));
    std::fs::write(
        &file,
        "[keybroker]\naws_access_key_id = AKIAFROMFILE\naws_secret_access_key = from-file\n",
    )
    .unwrap();
    let config = |profile: &str| {
        json!({
            "region": "us-east-1",
            "endpoint": kms.proxy.endpoint(),
            "credentials": { "file": file, "profile": profile },
            "operation_timeout_ms": GENEROUS_TIMEOUT_MS,
        })
    };
    instance_with(new_backend, &config("keybroker"))
        .health()
        .into_result()
        .unwrap();
    // A profile the file lacks: no credentials, no request sent.
    let result = instance_with(new_backend, &config("absent"))
        .health()
        .into_result();
    std::fs::remove_file(&file).unwrap();
    assert_error(
        result,
        ErrorKind::UNAVAILABLE,
        "profile `absent` was not defined",
    );
}

#[test]
fn an_instance_can_be_dropped_from_async_code() {
    // The host may drop an instance (on reload) from a Tokio task.
    let backend = instance_with(new_backend, &config("http://127.0.0.1:9", 500));
    let host_runtime = tokio::runtime::Runtime::new().unwrap();
    host_runtime.block_on(async move { drop(backend) });
}
