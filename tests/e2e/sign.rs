//! Transit sign and verify with asymmetric keys on the built-in local-KEK backend (software
//! keys, available to every tenant), through the unmodified `bao` CLI; every signature is
//! also checked by OpenSSL against the public key the broker publishes.

use std::{path::Path, process::Command};

use base64::{
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
    Engine as _,
};
use serde_json::{json, Value};

use crate::support::{ns, Broker};

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
        assert_eq!(key["supports_encryption"], false, "{key}");
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
        // Data operations are refused on a signing key.
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
