//! Transit sign and verify with asymmetric keys on the built-in local-KEK backend (software
//! keys, available to every tenant), through the unmodified `bao` CLI; every signature is
//! also checked by OpenSSL (or, for Ed25519 and P-521, the `ed25519-dalek` and `p521`
//! crates) against the public key the broker publishes, and the Ed25519 and P-521 answers
//! are compared with a real OpenBao's.

use std::{path::Path, process::Command};

use base64::{
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
    Engine as _,
};
use serde_json::{json, Value};

use crate::support::{ns, openbao::OpenBao, Broker};

fn bao_json(broker: &Broker, args: &[&str]) -> Value {
    let mut full = vec![args[0], "-format=json"];
    full.extend_from_slice(&args[1..]);
    serde_json::from_str(&broker.bao_ok(&full)).unwrap()
}

/// The signature bytes of `vault:v<N>:<base64>`.
fn signature_bytes(signature: &str) -> Vec<u8> {
    let encoded = signature.splitn(3, ':').nth(2).unwrap();
    STANDARD.decode(encoded).unwrap()
}

/// Verifies a signature with OpenSSL, independently of the broker.
pub(crate) fn openssl_verifies(
    dir: &Path,
    public_key: &str,
    data: &[u8],
    signature: &[u8],
    opts: &[&str],
) -> bool {
    let key = dir.join("public.pem");
    let data_file = dir.join("data.bin");
    let sig_file = dir.join("sig.bin");
    std::fs::write(&key, public_key).unwrap();
    std::fs::write(&data_file, data).unwrap();
    std::fs::write(&sig_file, signature).unwrap();
    let mut command = Command::new("openssl");
    command.args(["dgst", "-sha256", "-verify"]).arg(&key);
    for opt in opts {
        command.args(["-sigopt", opt]);
    }
    let out = command
        .arg("-signature")
        .arg(&sig_file)
        .arg(&data_file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    out.status.success() && stdout.contains("Verified OK")
}

/// The OpenSSL options for a key type and Vault signature algorithm.
pub(crate) fn openssl_options(key_type: &str, signature_algorithm: &str) -> Vec<&'static str> {
    if key_type.starts_with("rsa") && signature_algorithm == "pss" {
        vec!["rsa_padding_mode:pss", "rsa_pss_saltlen:digest"]
    } else {
        Vec::new()
    }
}

#[test]
fn every_asymmetric_type_signs_and_verifies_and_openssl_agrees() {
    let broker = Broker::dev();
    let dir = tempfile::tempdir().unwrap();
    let data = b"the quick brown fox";
    let input = STANDARD.encode(data);
    // RSA-4096 is left to the plugins' own tests and the conformance suite: making one in
    // the debug broker takes a core for seconds, which starves the other e2e tests.
    for key_type in ["ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-3072"] {
        let name = format!("sig-{key_type}");
        broker.bao_ok(&[
            "write",
            &format!("transit/keys/{name}"),
            &format!("type={key_type}"),
        ]);
        let key = bao_json(&broker, &["read", &format!("transit/keys/{name}")]);
        let key = &key["data"];
        assert_eq!(key["type"], key_type);
        assert_eq!(key["supports_signing"], true, "{key}");
        // RSA keys also encrypt (rsa_encrypt.rs), as in Vault.
        let rsa = key_type.starts_with("rsa");
        assert_eq!(key["supports_encryption"], rsa, "{key}");
        let public_key = key["keys"]["1"]["public_key"].as_str().unwrap().to_owned();
        assert!(
            public_key.starts_with("-----BEGIN PUBLIC KEY-----"),
            "{key}"
        );

        let algorithms: &[&str] = if key_type.starts_with("rsa") {
            &["pss", "pkcs1v15"]
        } else {
            &["pss"] // ignored for ECDSA, as in Vault
        };
        for algorithm in algorithms {
            let signed = bao_json(
                &broker,
                &[
                    "write",
                    &format!("transit/sign/{name}"),
                    &format!("input={input}"),
                    &format!("signature_algorithm={algorithm}"),
                ],
            );
            let signature = signed["data"]["signature"].as_str().unwrap().to_owned();
            assert!(signature.starts_with("vault:v1:"), "{signed}");
            assert_eq!(signed["data"]["key_version"], 1);
            assert!(
                openssl_verifies(
                    dir.path(),
                    &public_key,
                    data,
                    &signature_bytes(&signature),
                    &openssl_options(key_type, algorithm)
                ),
                "OpenSSL does not verify the {key_type} {algorithm} signature"
            );
            let verified = bao_json(
                &broker,
                &[
                    "write",
                    &format!("transit/verify/{name}"),
                    &format!("input={input}"),
                    &format!("signature={signature}"),
                    &format!("signature_algorithm={algorithm}"),
                ],
            );
            assert_eq!(verified["data"]["valid"], true, "{key_type} {algorithm}");
            let forged = bao_json(
                &broker,
                &[
                    "write",
                    &format!("transit/verify/{name}"),
                    &format!("input={}", STANDARD.encode(b"another text")),
                    &format!("signature={signature}"),
                    &format!("signature_algorithm={algorithm}"),
                ],
            );
            assert_eq!(forged["data"]["valid"], false, "{key_type} {algorithm}");
        }
        // Data operations are refused on an ECDSA key.
        if rsa {
            continue;
        }
        let (status, body) = broker.request(
            "POST",
            &format!("transit/encrypt/{name}"),
            Some(&json!({"plaintext": input})),
        );
        assert_eq!(status, 400, "{body}");
        assert!(
            body.to_string().contains("does not support encryption"),
            "{body}"
        );
    }
}

#[test]
fn marshaling_hashes_batches_and_versions_follow_vault() {
    let broker = Broker::dev();
    broker.bao_ok(&["write", "transit/keys/ec", "type=ecdsa-p256"]);
    let input = STANDARD.encode(b"payload");

    // jws marshaling: raw r||s in base64url, 64 bytes for P-256.
    let (status, body) = broker.request(
        "POST",
        "transit/sign/ec",
        Some(&json!({"input": input, "marshaling_algorithm": "jws"})),
    );
    assert_eq!(status, 200, "{body}");
    let jws = body["data"]["signature"].as_str().unwrap().to_owned();
    let raw = URL_SAFE_NO_PAD
        .decode(jws.splitn(3, ':').nth(2).unwrap())
        .unwrap();
    assert_eq!(raw.len(), 64);
    let (_, body) = broker.request(
        "POST",
        "transit/verify/ec",
        Some(&json!({"input": input, "signature": jws, "marshaling_algorithm": "jws"})),
    );
    assert_eq!(body["data"]["valid"], true, "{body}");
    // Read with the wrong marshaling it is a clear 400, not a crash.
    let (status, body) = broker.request(
        "POST",
        "transit/verify/ec",
        Some(&json!({"input": input, "signature": jws})),
    );
    assert_eq!(status, 400, "{body}");

    // The hash in the path, and prehashed input.
    let (status, body) = broker.request(
        "POST",
        "transit/sign/ec/sha2-384",
        Some(&json!({"input": input})),
    );
    assert_eq!(status, 200, "{body}");
    let sha384 = body["data"]["signature"].as_str().unwrap().to_owned();
    let (_, body) = broker.request(
        "POST",
        "transit/verify/ec",
        Some(&json!({"input": input, "signature": sha384, "hash_algorithm": "sha2-384"})),
    );
    assert_eq!(body["data"]["valid"], true, "{body}");
    let (_, body) = broker.request(
        "POST",
        "transit/verify/ec",
        Some(&json!({"input": input, "signature": sha384})),
    );
    assert_eq!(
        body["data"]["valid"], false,
        "a SHA-384 signature is not a SHA-256 one"
    );
    for (request, message) in [
        (
            json!({"input": input, "prehashed": true}),
            "prehashed input must be",
        ),
        (
            json!({"input": input, "hash_algorithm": "md5"}),
            "unsupported hash algorithm",
        ),
        (
            json!({"input": input, "marshaling_algorithm": "pem"}),
            "unsupported marshaling",
        ),
        (json!({"input": input, "salt_length": 20}), "salt_length"),
    ] {
        let (status, body) = broker.request("POST", "transit/sign/ec", Some(&request));
        assert_eq!(status, 400, "{request}: {body}");
        assert!(body.to_string().contains(message), "{request}: {body}");
    }

    // Batches: one result per item, in order; a bad item fails alone.
    let (status, body) = broker.request(
        "POST",
        "transit/sign/ec",
        Some(&json!({"batch_input": [
            {"input": input, "reference": "a"},
            {"input": "not base64!", "reference": "b"},
            {"input": STANDARD.encode(b"other"), "reference": "c"},
        ]})),
    );
    assert_eq!(
        status, 400,
        "partial failure answers 400 as in Vault: {body}"
    );
    let results = body["data"]["batch_results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 3);
    assert_eq!(results[1]["reference"], "b");
    assert!(results[1]["error"].is_string());
    let (a, c) = (
        results[0]["signature"].as_str().unwrap(),
        results[2]["signature"].as_str().unwrap(),
    );
    let (status, body) = broker.request(
        "POST",
        "transit/verify/ec",
        Some(&json!({"batch_input": [
            {"input": input, "signature": a},
            {"input": input, "signature": c},
        ]})),
    );
    assert_eq!(status, 200, "{body}");
    let valid: Vec<&Value> = body["data"]["batch_results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["valid"])
        .collect();
    assert_eq!(valid, [&json!(true), &json!(false)]);

    // Rotation: new signatures use v2, v1 signatures verify until min_decryption_version.
    broker.bao_ok(&["write", "-f", "transit/keys/ec/rotate"]);
    let key = bao_json(&broker, &["read", "transit/keys/ec"]);
    assert_ne!(
        key["data"]["keys"]["1"]["public_key"], key["data"]["keys"]["2"]["public_key"],
        "each version has its own key pair"
    );
    let (_, body) = broker.request("POST", "transit/sign/ec", Some(&json!({"input": input})));
    assert!(body["data"]["signature"]
        .as_str()
        .unwrap()
        .starts_with("vault:v2:"));
    let (_, body) = broker.request(
        "POST",
        "transit/verify/ec",
        Some(&json!({"input": input, "signature": a})),
    );
    assert_eq!(body["data"]["valid"], true, "{body}");
    broker.bao_ok(&[
        "write",
        "transit/keys/ec/config",
        "min_decryption_version=2",
    ]);
    let (status, body) = broker.request(
        "POST",
        "transit/verify/ec",
        Some(&json!({"input": input, "signature": a})),
    );
    assert_eq!(status, 400, "{body}");
}

#[test]
fn bad_key_requests_are_clear_errors() {
    let broker = Broker::dev();
    broker.bao_ok(&["write", "-f", "transit/keys/aes"]);
    for (body, message) in [
        (json!({"type": "rsa-1024"}), "unknown key type"),
        (json!({"type": "ed448"}), "unknown key type"),
        (
            json!({"type": "rsa-2048", "mode": "envelope"}),
            "mode=envelope does not apply",
        ),
        // The built-in local KEK has no keys of its own to bind.
        (
            json!({"backend_key": "label:x"}),
            "cannot bind existing keys",
        ),
    ] {
        let (status, answer) = broker.request("POST", "transit/keys/bad", Some(&body));
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(answer.to_string().contains(message), "{body}: {answer}");
    }
    let (status, body) = broker.request(
        "POST",
        "transit/sign/aes",
        Some(&json!({"input": STANDARD.encode(b"x")})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string().contains("does not support signing"),
        "{body}"
    );
    let (status, body) = broker.request(
        "POST",
        "transit/sign/missing",
        Some(&json!({"input": STANDARD.encode(b"x")})),
    );
    assert_eq!(status, 400, "{body}");
}

#[test]
fn tenants_sign_with_their_own_keys_only() {
    let broker = Broker::dev();
    for tenant in ["acme", "globex"] {
        broker.bao_ok(&["namespace", "create", tenant]);
        broker.bao_ok(&["secrets", "enable", &ns(tenant), "transit"]);
        broker.bao_ok(&[
            "write",
            &ns(tenant),
            "transit/keys/signer",
            "type=ecdsa-p256",
        ]);
    }
    let input = STANDARD.encode(b"invoice 42");
    let signed = bao_json(
        &broker,
        &[
            "write",
            &ns("acme"),
            "transit/sign/signer",
            &format!("input={input}"),
        ],
    );
    let signature = signed["data"]["signature"].as_str().unwrap();
    // The same key name in another tenant is another key: acme's signature is not globex's.
    let verified = bao_json(
        &broker,
        &[
            "write",
            &ns("globex"),
            "transit/verify/signer",
            &format!("input={input}"),
            &format!("signature={signature}"),
        ],
    );
    assert_eq!(verified["data"]["valid"], false);
}

/// An Ed25519 public key as Vault's key read shows it (base64 of the 32 raw bytes), checked
/// to be one.
pub(crate) fn ed25519_key(shown: &Value) -> ed25519_dalek::VerifyingKey {
    let raw = STANDARD.decode(shown.as_str().unwrap()).unwrap();
    ed25519_dalek::VerifyingKey::from_bytes(&raw.try_into().unwrap()).unwrap()
}

/// Whether `signature` (`vault:v<N>:…`, marshaled as `jws` or not) is a pure Ed25519
/// signature of `data` under `key`.
pub(crate) fn ed25519_verifies(
    key: &ed25519_dalek::VerifyingKey,
    data: &[u8],
    signature: &str,
) -> bool {
    use ed25519_dalek::Verifier as _;
    let encoded = signature.splitn(3, ':').nth(2).unwrap();
    let bytes = STANDARD
        .decode(encoded)
        .or_else(|_| URL_SAFE_NO_PAD.decode(encoded))
        .unwrap();
    bytes.len() == 64
        && key
            .verify(data, &ed25519_dalek::Signature::from_slice(&bytes).unwrap())
            .is_ok()
}

/// Whether `signature` (`vault:v<N>:…`, ASN.1 DER, or `r ‖ s` under `jws`) is an ECDSA
/// P-521 signature of `data` hashed with `hash` under the PEM public key `pem`.
fn p521_verifies(pem: &str, hash: &str, data: &[u8], signature: &str, jws: bool) -> bool {
    use p521::{ecdsa::signature::hazmat::PrehashVerifier as _, pkcs8::DecodePublicKey as _};
    use sha2::Digest as _;
    let public = p521::PublicKey::from_public_key_pem(pem).unwrap();
    let key = p521::ecdsa::VerifyingKey::from_affine(*public.as_affine()).unwrap();
    let encoded = signature.splitn(3, ':').nth(2).unwrap();
    let signature = if jws {
        p521::ecdsa::Signature::from_slice(&URL_SAFE_NO_PAD.decode(encoded).unwrap())
    } else {
        p521::ecdsa::Signature::from_der(&STANDARD.decode(encoded).unwrap())
    };
    let digest = match hash {
        "sha2-256" => sha2::Sha256::digest(data).to_vec(),
        "sha2-384" => sha2::Sha384::digest(data).to_vec(),
        _ => sha2::Sha512::digest(data).to_vec(),
    };
    // The reference crate refuses a prehash shorter than 33 bytes: the same integer,
    // zero-padded to P-521's 66 bytes, as ECDSA signs a digest shorter than the order.
    let mut padded = vec![0u8; 66 - digest.len()];
    padded.extend_from_slice(&digest);
    signature.is_ok_and(|signature| key.verify_prehash(&padded, &signature).is_ok())
}

/// Ed25519 through the `bao` CLI: the key read shows the raw public key in base64, the
/// signature is pure Ed25519 over the input (any hash ignored, `jws` writing base64url),
/// it verifies with ed25519-dalek and through the broker, and `prehashed` and `sha2-512`
/// are refused as Vault CE refuses them.
#[test]
fn ed25519_signs_the_input_itself_and_refuses_prehashing() {
    let broker = Broker::dev();
    let data = b"pure Ed25519 signs the message itself";
    let input = STANDARD.encode(data);
    broker.bao_ok(&["write", "transit/keys/ed", "type=ed25519"]);
    let key = bao_json(&broker, &["read", "transit/keys/ed"]);
    let key = &key["data"];
    assert_eq!(key["type"], "ed25519", "{key}");
    assert_eq!(key["supports_signing"], true, "{key}");
    assert_eq!(key["supports_encryption"], false, "{key}");
    assert_eq!(key["keys"]["1"]["name"], "ed25519", "{key}");
    let shown = &key["keys"]["1"]["public_key"];
    assert_eq!(shown.as_str().unwrap().len(), 44, "{key}");
    let public = ed25519_key(shown);

    let signed = bao_json(
        &broker,
        &["write", "transit/sign/ed", &format!("input={input}")],
    );
    let signature = signed["data"]["signature"].as_str().unwrap().to_owned();
    assert!(signature.starts_with("vault:v1:"), "{signed}");
    assert_eq!(signature_bytes(&signature).len(), 64);
    assert_eq!(signed["data"]["key_version"], 1);
    assert!(ed25519_verifies(&public, data, &signature), "{signature}");
    // Deterministic, and the hash is ignored (in the body or the path).
    for args in [
        vec!["write", "transit/sign/ed", "hash_algorithm=sha2-384"],
        vec!["write", "transit/sign/ed/sha2-224"],
        vec!["write", "transit/sign/ed/sha3-512"],
        vec!["write", "transit/sign/ed", "signature_algorithm=pkcs1v15"],
    ] {
        let mut args = args.clone();
        let input_arg = format!("input={input}");
        args.push(&input_arg);
        let again = bao_json(&broker, &args);
        assert_eq!(again["data"]["signature"], signature.as_str(), "{args:?}");
    }
    let verified = bao_json(
        &broker,
        &[
            "write",
            "transit/verify/ed",
            &format!("input={input}"),
            &format!("signature={signature}"),
        ],
    );
    assert_eq!(verified["data"]["valid"], true, "{verified}");
    let forged = bao_json(
        &broker,
        &[
            "write",
            "transit/verify/ed",
            &format!("input={}", STANDARD.encode(b"another message")),
            &format!("signature={signature}"),
        ],
    );
    assert_eq!(forged["data"]["valid"], false, "{forged}");
    // A signature of the wrong length is not valid, and not an error.
    let short = format!("vault:v1:{}", STANDARD.encode([7u8; 63]));
    let (status, body) = broker.request(
        "POST",
        "transit/verify/ed",
        Some(&json!({"input": input, "signature": short})),
    );
    assert_eq!(
        (status, &body["data"]["valid"]),
        (200, &json!(false)),
        "{body}"
    );

    // jws: the same 64 bytes in base64url.
    let (status, body) = broker.request(
        "POST",
        "transit/sign/ed",
        Some(&json!({"input": input, "marshaling_algorithm": "jws"})),
    );
    assert_eq!(status, 200, "{body}");
    let jws = body["data"]["signature"].as_str().unwrap();
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(jws.splitn(3, ':').nth(2).unwrap())
            .unwrap(),
        signature_bytes(&signature)
    );
    let (_, body) = broker.request(
        "POST",
        "transit/verify/ed",
        Some(&json!({"input": input, "signature": jws, "marshaling_algorithm": "jws"})),
    );
    assert_eq!(body["data"]["valid"], true, "{body}");

    // Batches sign each input.
    let (status, body) = broker.request(
        "POST",
        "transit/sign/ed",
        Some(&json!({"batch_input": [{"input": input}, {"input": STANDARD.encode(b"")}]})),
    );
    assert_eq!(status, 200, "{body}");
    let results = body["data"]["batch_results"].as_array().unwrap();
    assert_eq!(results[0]["signature"], signature.as_str(), "{body}");
    assert!(
        ed25519_verifies(&public, b"", results[1]["signature"].as_str().unwrap()),
        "{body}"
    );

    // Vault CE's refusals of Ed25519ph, through the CLI and the API.
    let out = broker.bao(&[
        "write",
        "transit/sign/ed",
        &format!("input={input}"),
        "prehashed=true",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Code: 400")
            && stderr.contains(
                "failed to parse batch item: only Pure Ed25519 signatures supported, \
                 prehashed must be false"
            ),
        "{stderr}"
    );
    for (path, body, message) in [
        (
            "transit/sign/ed/sha2-512",
            json!({"input": input}),
            "failed to parse batch item: only Pure Ed25519 signatures supported, \
             hash_alogithm should not be set",
        ),
        (
            "transit/sign/ed",
            json!({"input": input, "hash_algorithm": "sha2-512"}),
            "failed to parse batch item: only Pure Ed25519 signatures supported, \
             hash_alogithm should not be set",
        ),
        (
            "transit/verify/ed",
            json!({"input": input, "signature": signature, "prehashed": true}),
            "failed to parse item: failed to parse batch item: only Pure Ed25519 signatures \
             supported, prehashed must be false",
        ),
    ] {
        let (status, answer) = broker.request("POST", path, Some(&body));
        assert_eq!(status, 400, "{path} {body}: {answer}");
        assert_eq!(answer["errors"], json!([message]), "{path} {body}");
    }
    // A signing key encrypts nothing.
    let (status, body) = broker.request(
        "POST",
        "transit/encrypt/ed",
        Some(&json!({"plaintext": input})),
    );
    assert_eq!(status, 400, "{body}");
}

/// ECDSA on P-521 through the `bao` CLI: the key read shows a P-521 PEM, signatures are ASN.1
/// DER by default and 132-byte `r ‖ s` under `jws`, over every SHA-2 digest, and each
/// verifies with the `p521` crate, with OpenSSL, and through the broker.
#[test]
fn ecdsa_p521_signs_with_both_marshalings() {
    let broker = Broker::dev();
    let dir = tempfile::tempdir().unwrap();
    let data = b"the quick brown fox";
    let input = STANDARD.encode(data);
    broker.bao_ok(&["write", "transit/keys/p5", "type=ecdsa-p521"]);
    let key = bao_json(&broker, &["read", "transit/keys/p5"]);
    let key = &key["data"];
    assert_eq!(key["type"], "ecdsa-p521", "{key}");
    assert_eq!(key["keys"]["1"]["name"], "P-521", "{key}");
    let pem = key["keys"]["1"]["public_key"].as_str().unwrap().to_owned();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{key}");

    let signed = bao_json(
        &broker,
        &["write", "transit/sign/p5", &format!("input={input}")],
    );
    let signature = signed["data"]["signature"].as_str().unwrap().to_owned();
    assert!(
        p521_verifies(&pem, "sha2-256", data, &signature, false),
        "{signature}"
    );
    assert!(
        openssl_verifies(dir.path(), &pem, data, &signature_bytes(&signature), &[]),
        "OpenSSL does not verify the P-521 signature"
    );
    for hash in ["sha2-256", "sha2-384", "sha2-512"] {
        for jws in [false, true] {
            let mut body = json!({"input": input, "hash_algorithm": hash});
            if jws {
                body["marshaling_algorithm"] = json!("jws");
            }
            let (status, answer) = broker.request("POST", "transit/sign/p5", Some(&body));
            assert_eq!(status, 200, "{body}: {answer}");
            let signature = answer["data"]["signature"].as_str().unwrap().to_owned();
            assert!(
                p521_verifies(&pem, hash, data, &signature, jws),
                "{body}: {signature}"
            );
            if jws {
                let raw = URL_SAFE_NO_PAD
                    .decode(signature.splitn(3, ':').nth(2).unwrap())
                    .unwrap();
                assert_eq!(raw.len(), 132);
            }
            body["signature"] = json!(signature);
            let (_, verified) = broker.request("POST", "transit/verify/p5", Some(&body));
            assert_eq!(verified["data"]["valid"], true, "{body}: {verified}");
            body["input"] = json!(STANDARD.encode(b"another text"));
            let (_, forged) = broker.request("POST", "transit/verify/p5", Some(&body));
            assert_eq!(forged["data"]["valid"], false, "{body}: {forged}");
        }
    }
    let verified = bao_json(
        &broker,
        &[
            "write",
            "transit/verify/p5",
            &format!("input={input}"),
            &format!("signature={signature}"),
        ],
    );
    assert_eq!(verified["data"]["valid"], true, "{verified}");
    // prehashed: a SHA-512 digest signed as is.
    use sha2::Digest as _;
    let digest = STANDARD.encode(sha2::Sha512::digest(data));
    let (status, body) = broker.request(
        "POST",
        "transit/sign/p5/sha2-512",
        Some(&json!({"input": digest, "prehashed": true})),
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        p521_verifies(
            &pem,
            "sha2-512",
            data,
            body["data"]["signature"].as_str().unwrap(),
            false
        ),
        "{body}"
    );
}

/// The same ed25519 and ecdsa-p521 requests to a real OpenBao and to keybroker: the same
/// statuses and response shapes; each side's signatures verify, with the public key its
/// own key read shows, with the reference crates (no key leaves either side); the same
/// requests are refused. Where OpenBao 2.7 and Vault CE differ — OpenBao signs a prehashed
/// or sha2-512 Ed25519 request as pure Ed25519 over the input, Vault CE refuses it because
/// its Enterprise edition would make an Ed25519ph signature — keybroker follows Vault, and
/// the test says so.
#[test]
fn ed25519_and_p521_answer_as_openbao_does() {
    let broker = Broker::dev();
    let bao = OpenBao::with_transit();

    let data = b"known-answer input";
    let input = STANDARD.encode(data);
    let keys: Vec<(&str, String, Value)> = vec![
        ("POST", "transit/keys/ed".into(), json!({"type": "ed25519"})),
        (
            "POST",
            "transit/keys/p5".into(),
            json!({"type": "ecdsa-p521"}),
        ),
        ("GET", "transit/keys/ed".into(), Value::Null),
        ("GET", "transit/keys/p5".into(), Value::Null),
    ];
    let theirs = bao.batch(&keys);
    let mut public: Vec<(String, String)> = Vec::new();
    for ((method, path, body), (their_status, their_body)) in keys.iter().zip(&theirs) {
        let (status, ours) = broker.request(method, path, body.is_object().then_some(body));
        let what = format!(
            "{method} {path}: OpenBao {their_status} {their_body}, keybroker {status} {ours}"
        );
        assert_eq!(status, *their_status, "{what}");
        if *method == "POST" && status == 204 {
            continue;
        }
        // Every field OpenBao answers, keybroker answers too (it adds its own).
        let their_data = their_body["data"].as_object().unwrap();
        for (field, value) in their_data {
            assert!(ours["data"].get(field).is_some(), "{what}: no {field}");
            if [
                "name",
                "type",
                "supports_signing",
                "supports_encryption",
                "latest_version",
            ]
            .contains(&field.as_str())
            {
                assert_eq!(&ours["data"][field], value, "{what}: {field}");
            }
        }
        let (theirs_1, ours_1) = (&their_body["data"]["keys"]["1"], &ours["data"]["keys"]["1"]);
        let mut their_fields: Vec<_> = theirs_1.as_object().unwrap().keys().collect();
        let mut our_fields: Vec<_> = ours_1.as_object().unwrap().keys().collect();
        their_fields.sort();
        our_fields.sort();
        assert_eq!(our_fields, their_fields, "{what}");
        assert_eq!(ours_1["name"], theirs_1["name"], "{what}");
        public.push((
            theirs_1["public_key"].as_str().unwrap().to_owned(),
            ours_1["public_key"].as_str().unwrap().to_owned(),
        ));
    }
    // The reads' public keys (the last two): Ed25519 as raw base64, P-521 as PEM, on both.
    let (their_ed, our_ed) = (
        ed25519_key(&json!(public[2].0)),
        ed25519_key(&json!(public[2].1)),
    );
    let (their_p5, our_p5) = (public[3].0.clone(), public[3].1.clone());

    // What each side signs, and how it refuses.
    let other = STANDARD.encode(b"another input");
    let mut cases: Vec<(&str, String, Value)> = Vec::new();
    for key in ["ed", "p5"] {
        let sign =
            |suffix: &str, body: Value| ("POST", format!("transit/sign/{key}{suffix}"), body);
        cases.extend([
            sign("", json!({"input": input})),
            sign("", json!({"input": input, "hash_algorithm": "sha2-384"})),
            sign("/sha2-256", json!({"input": input})),
            sign("", json!({"input": input, "marshaling_algorithm": "jws"})),
            sign(
                "",
                json!({"input": input, "signature_algorithm": "pkcs1v15"}),
            ),
            sign("", json!({"input": input, "key_version": 1})),
            sign(
                "",
                json!({"batch_input": [{"input": input, "reference": "a"}, {"input": other}]}),
            ),
            // Refused alike.
            sign("", json!({"input": input, "hash_algorithm": "md5"})),
            sign("", json!({"input": input, "marshaling_algorithm": "der"})),
            sign("", json!({"input": "not base64!"})),
            // (A version past the latest is a 500 in OpenBao, whose error is not a user
            // error there; keybroker answers 400.)
        ]);
    }
    cases.push((
        "POST",
        "transit/sign/p5/sha2-512".into(),
        json!({"input": input}),
    ));
    // Ed25519 ignores the hashes keybroker does not sign with, as OpenBao does.
    cases.push((
        "POST",
        "transit/sign/ed/sha3-256".into(),
        json!({"input": input}),
    ));
    cases.push((
        "POST",
        "transit/sign/ed".into(),
        json!({"input": input, "hash_algorithm": "sha1"}),
    ));
    cases.push((
        "POST",
        "transit/sign/missing".into(),
        json!({"input": input}),
    ));
    let theirs = bao.batch(&cases);
    let mut signatures: Vec<(String, Value, String, String)> = Vec::new();
    for ((method, path, body), (their_status, their_body)) in cases.iter().zip(&theirs) {
        let (status, ours) = broker.request(method, path, Some(body));
        let what = format!("{method} {path} {body}: OpenBao {their_status} {their_body}, keybroker {status} {ours}");
        assert_eq!(status, *their_status, "{what}");
        if status != 200 {
            assert_eq!(status, 400, "{what}");
            assert!(ours["errors"][0].is_string(), "{what}");
            continue;
        }
        let batch = body.get("batch_input").is_some();
        let pairs: Vec<(&Value, &Value)> = if batch {
            let (t, o) = (
                their_body["data"]["batch_results"].as_array().unwrap(),
                ours["data"]["batch_results"].as_array().unwrap(),
            );
            assert_eq!(t.len(), o.len(), "{what}");
            t.iter().zip(o).collect()
        } else {
            vec![(&their_body["data"], &ours["data"])]
        };
        let items = body["batch_input"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| vec![body.clone()]);
        for ((t, o), item) in pairs.into_iter().zip(items) {
            let mut their_fields: Vec<_> = t.as_object().unwrap().keys().collect();
            let mut our_fields: Vec<_> = o.as_object().unwrap().keys().collect();
            their_fields.sort();
            our_fields.sort();
            assert_eq!(our_fields, their_fields, "{what}");
            assert_eq!(o["key_version"], t["key_version"], "{what}");
            assert_eq!(o.get("reference"), t.get("reference"), "{what}");
            assert!(item["input"].is_string(), "{what}");
            signatures.push((
                path.clone(),
                body.clone(),
                t["signature"].as_str().unwrap().to_owned(),
                o["signature"].as_str().unwrap().to_owned(),
            ));
        }
    }
    // Each side's signature verifies with its own published key, by the same code.
    for (path, body, theirs, ours) in &signatures {
        let jws = body["marshaling_algorithm"] == "jws";
        if path.starts_with("transit/sign/ed") {
            for (key, signature, side) in
                [(&their_ed, theirs, "OpenBao"), (&our_ed, ours, "keybroker")]
            {
                let verified = ed25519_verifies(key, data, signature)
                    || ed25519_verifies(key, b"another input", signature);
                assert!(verified, "{side}'s {path} {body}: {signature}");
            }
        } else {
            let hash = if path.ends_with("sha2-512") {
                "sha2-512"
            } else if path.ends_with("sha2-256") {
                "sha2-256"
            } else {
                body["hash_algorithm"].as_str().unwrap_or("sha2-256")
            };
            for (pem, signature, side) in
                [(&their_p5, theirs, "OpenBao"), (&our_p5, ours, "keybroker")]
            {
                let verified = p521_verifies(pem, hash, data, signature, jws)
                    || p521_verifies(pem, hash, b"another input", signature, jws);
                assert!(verified, "{side}'s {path} {body}: {signature}");
            }
        }
    }
    assert!(signatures.len() >= 16, "{}", signatures.len());

    // Verification: each side accepts its own signature and refuses a forgery alike.
    let own = |signatures: &[(String, Value, String, String)], key: &str, ours: bool| {
        signatures
            .iter()
            .find(|(path, body, _, _)| {
                path == &format!("transit/sign/{key}") && body == &json!({"input": input})
            })
            .map(|(_, _, theirs, our)| if ours { our.clone() } else { theirs.clone() })
            .unwrap()
    };
    for key in ["ed", "p5"] {
        let their_signature = own(&signatures, key, false);
        let our_signature = own(&signatures, key, true);
        let truncated = |signature: &str| {
            let bytes = signature_bytes(signature);
            format!("vault:v1:{}", STANDARD.encode(&bytes[..bytes.len() - 1]))
        };
        let verify_cases = |signature: &str| -> Vec<(&str, String, Value)> {
            let verify = |body: Value| ("POST", format!("transit/verify/{key}"), body);
            vec![
                verify(json!({"input": input, "signature": signature})),
                verify(json!({"input": other, "signature": signature})),
                verify(json!({"batch_input": [
                    {"input": input, "signature": signature},
                    {"input": other, "signature": signature},
                ]})),
                verify(json!({"input": input, "signature": truncated(signature)})),
                verify(json!({"input": input, "signature": "vault:v1:!!"})),
                verify(json!({"input": input, "signature": "vault:v9:AAAA"})),
                verify(json!({"input": input})),
            ]
        };
        let their_cases = verify_cases(&their_signature);
        let theirs = bao.batch(&their_cases);
        for ((method, path, body), (their_status, their_body)) in
            verify_cases(&our_signature).iter().zip(&theirs)
        {
            let (status, ours) = broker.request(method, path, Some(body));
            let what = format!("{method} {path} {body}: OpenBao {their_status} {their_body}, keybroker {status} {ours}");
            assert_eq!(status, *their_status, "{what}");
            if status == 200 {
                let strip = |v: &Value| {
                    let mut v = v.clone();
                    if let Some(results) = v["batch_results"].as_array_mut() {
                        for result in results {
                            result.as_object_mut().unwrap().remove("reference");
                        }
                    }
                    v
                };
                assert_eq!(strip(&ours["data"]), strip(&their_body["data"]), "{what}");
            }
        }
    }

    // Where OpenBao 2.7 and Vault CE part: OpenBao signs as pure Ed25519, ignoring the
    // request's prehashed/sha2-512; keybroker refuses as Vault CE does.
    let vault_ce: Vec<(&str, String, Value)> = vec![
        (
            "POST",
            "transit/sign/ed".into(),
            json!({"input": input, "prehashed": true}),
        ),
        (
            "POST",
            "transit/sign/ed/sha2-512".into(),
            json!({"input": input}),
        ),
    ];
    let theirs = bao.batch(&vault_ce);
    for ((method, path, body), (their_status, their_body)) in vault_ce.iter().zip(&theirs) {
        assert_eq!(*their_status, 200, "OpenBao {path} {body}: {their_body}");
        assert!(
            ed25519_verifies(
                &their_ed,
                data,
                their_body["data"]["signature"].as_str().unwrap()
            ),
            "OpenBao {path} {body}: {their_body}"
        );
        let (status, ours) = broker.request(method, path, Some(body));
        assert_eq!(status, 400, "keybroker {path} {body}: {ours}");
        assert!(
            ours["errors"][0]
                .as_str()
                .unwrap()
                .starts_with("failed to parse batch item: only Pure Ed25519 signatures supported"),
            "{ours}"
        );
    }
}
