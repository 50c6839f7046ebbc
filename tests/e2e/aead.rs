//! The symmetric key types beyond `aes256-gcm96` (issue 19): `aes128-gcm96`,
//! `chacha20-poly1305` and OpenBao's `xchacha20-poly1305`. In envelope mode the broker seals
//! with the type's AEAD under a data key the backend wraps, so every backend holds every
//! type; direct mode asks the backend for AES-256-GCM, and refuses the others with a 400
//! naming the backend and the type. Driven with the real `bao` CLI, and compared with a real
//! OpenBao.

use base64::{engine::general_purpose::STANDARD, Engine as _};
use serde_json::{json, Value};

use crate::{
    hsm::Hsm,
    support::{openbao::OpenBao, Broker},
};

/// Each type with its nonce length (the payload is `nonce ‖ ciphertext ‖ tag(16)`).
const TYPES: [(&str, usize); 4] = [
    ("aes128-gcm96", 12),
    ("aes256-gcm96", 12),
    ("chacha20-poly1305", 12),
    ("xchacha20-poly1305", 24),
];

/// The payload of a `vault:vN:` ciphertext.
fn payload(ciphertext: &str) -> Vec<u8> {
    STANDARD
        .decode(ciphertext.rsplit(':').next().unwrap())
        .unwrap()
}

fn json_of(out: &str) -> Value {
    serde_json::from_str(out).unwrap()
}

/// Every symmetric type, made on `backend` in envelope mode with the `bao` CLI: read,
/// encrypt and decrypt (with associated data), rotate, rewrap, a data key, and the old
/// version still decrypting; then direct mode refused for all but `aes256-gcm96`, naming
/// the backend and the type.
fn check_every_symmetric_type(broker: &Broker, backend: &str) {
    let secret = STANDARD.encode(b"the quick brown fox");
    for (key_type, nonce_len) in TYPES {
        let key = format!("{backend}-{key_type}");
        broker.bao_ok(&[
            "write",
            &format!("transit/keys/{key}"),
            &format!("type={key_type}"),
            &format!("backend={backend}"),
        ]);
        let read =
            json_of(&broker.bao_ok(&["read", "-format=json", &format!("transit/keys/{key}")]));
        assert_eq!(read["data"]["type"], key_type, "{read}");
        assert_eq!(read["data"]["supports_encryption"], true, "{read}");
        assert_eq!(read["data"]["supports_signing"], false, "{read}");
        assert_eq!(read["data"]["backend"], backend, "{read}");

        let encrypted = json_of(&broker.bao_ok(&[
            "write",
            "-format=json",
            &format!("transit/encrypt/{key}"),
            &format!("plaintext={secret}"),
            "associated_data=YWQ=",
        ]));
        let v1 = encrypted["data"]["ciphertext"].as_str().unwrap().to_owned();
        assert!(v1.starts_with("vault:v1:"), "{v1}");
        assert_eq!(payload(&v1).len(), nonce_len + 19 + 16, "{key_type}: {v1}");
        let decrypted = json_of(&broker.bao_ok(&[
            "write",
            "-format=json",
            &format!("transit/decrypt/{key}"),
            &format!("ciphertext={v1}"),
            "associated_data=YWQ=",
        ]));
        assert_eq!(decrypted["data"]["plaintext"], secret.as_str());
        // Other associated data does not open it.
        let (status, body) = broker.request(
            "POST",
            &format!("transit/decrypt/{key}"),
            Some(&json!({ "ciphertext": v1, "associated_data": "b3RoZXI=" })),
        );
        assert_eq!(status, 400, "{key_type}: {body}");

        broker.bao_ok(&["write", "-f", &format!("transit/keys/{key}/rotate")]);
        let rewrapped = json_of(&broker.bao_ok(&[
            "write",
            "-format=json",
            &format!("transit/rewrap/{key}"),
            &format!("ciphertext={v1}"),
            "associated_data=YWQ=",
        ]));
        let v2 = rewrapped["data"]["ciphertext"].as_str().unwrap();
        assert!(v2.starts_with("vault:v2:"), "{v2}");
        assert_eq!(payload(v2).len(), nonce_len + 19 + 16, "{key_type}: {v2}");
        for ciphertext in [v1.as_str(), v2] {
            let (status, body) = broker.request(
                "POST",
                &format!("transit/decrypt/{key}"),
                Some(&json!({ "ciphertext": ciphertext, "associated_data": "YWQ=" })),
            );
            assert_eq!(status, 200, "{key_type}: {body}");
            assert_eq!(body["data"]["plaintext"], secret.as_str());
        }

        let data_key = json_of(&broker.bao_ok(&[
            "write",
            "-format=json",
            "-f",
            &format!("transit/datakey/plaintext/{key}"),
        ]));
        let plaintext = data_key["data"]["plaintext"].as_str().unwrap();
        assert_eq!(STANDARD.decode(plaintext).unwrap().len(), 32);
        assert_eq!(
            broker.decrypt(&key, data_key["data"]["ciphertext"].as_str().unwrap()),
            STANDARD.decode(plaintext).unwrap()
        );

        let direct = broker.request(
            "POST",
            &format!("transit/keys/{key}-direct"),
            Some(&json!({ "type": key_type, "backend": backend, "mode": "direct" })),
        );
        if key_type == "aes256-gcm96" {
            assert_eq!(direct.0, 200, "{direct:?}");
        } else {
            assert_eq!(direct.0, 400, "{direct:?}");
            let message = direct.1["errors"][0].as_str().unwrap();
            assert!(
                message.contains(&format!("\"{backend}\"")) && message.contains(key_type),
                "{message}"
            );
        }
    }
}

#[test]
fn bao_cli_drives_every_symmetric_type_on_the_local_kek() {
    let broker = Broker::dev();
    check_every_symmetric_type(&broker, "local");
}

#[test]
fn bao_cli_drives_every_symmetric_type_on_an_hsm() {
    let hsm = Hsm::new();
    hsm.standard_dropin("");
    let broker = hsm.broker();
    check_every_symmetric_type(&broker, "hsm");
}

/// Vault's upsert: encrypting under a missing key makes it, of the body's `type`.
#[test]
fn upsert_on_encrypt_honours_type() {
    let broker = Broker::dev();
    let plaintext = STANDARD.encode(b"hello");
    for (key_type, nonce_len) in TYPES {
        let key = format!("upserted-{key_type}");
        let out = json_of(&broker.bao_ok(&[
            "write",
            "-format=json",
            &format!("transit/encrypt/{key}"),
            &format!("type={key_type}"),
            &format!("plaintext={plaintext}"),
        ]));
        let ciphertext = out["data"]["ciphertext"].as_str().unwrap();
        assert_eq!(payload(ciphertext).len(), nonce_len + 5 + 16);
        let (status, read) = broker.request("GET", &format!("transit/keys/{key}"), None);
        assert_eq!(status, 200, "{read}");
        assert_eq!(read["data"]["type"], key_type, "{read}");
        assert_eq!(broker.decrypt(&key, ciphertext), b"hello");
    }
    // No type: Vault's default.
    broker.encrypt("upserted-default", b"x");
    let (_, read) = broker.request("GET", "transit/keys/upserted-default", None);
    assert_eq!(read["data"]["type"], "aes256-gcm96", "{read}");
    // A type that cannot encrypt, or that does not exist, is refused and makes nothing.
    for key_type in ["ecdsa-p256", "aes192-gcm96"] {
        let (status, body) = broker.request(
            "POST",
            "transit/encrypt/refused",
            Some(&json!({ "type": key_type, "plaintext": plaintext })),
        );
        assert_eq!(status, 400, "{key_type}: {body}");
        assert!(body["errors"][0].is_string(), "{body}");
    }
    let (status, listed) = broker.request("LIST", "transit/keys", None);
    assert_eq!(status, 200);
    let names = listed["data"]["keys"].as_array().unwrap();
    assert!(!names.iter().any(|n| n == "refused"), "{listed}");
}

/// The same requests to keybroker and to a real OpenBao: create each type, read it,
/// encrypt (single and batch, with associated data), decrypt, rotate, rewrap, and the
/// refusals (an unknown type, a signing key asked to encrypt, a ciphertext under the wrong
/// associated data). Statuses agree, the key reads carry the same fields with the same
/// `type` and `supports_*`, and ciphertexts have the same layout and length.
#[test]
fn symmetric_types_answer_as_openbao_does() {
    let broker = Broker::dev();
    let bao = OpenBao::with_transit();

    let plaintext = STANDARD.encode(b"known answer");
    let mut first: Vec<(&str, String, Value)> = Vec::new();
    for (key_type, _) in TYPES {
        first.push((
            "POST",
            format!("transit/keys/{key_type}"),
            json!({ "type": key_type }),
        ));
        first.push(("GET", format!("transit/keys/{key_type}"), json!({})));
        first.push((
            "POST",
            format!("transit/encrypt/{key_type}"),
            json!({ "plaintext": plaintext, "associated_data": "YWQ=" }),
        ));
        first.push((
            "POST",
            format!("transit/encrypt/{key_type}"),
            json!({ "batch_input": [{ "plaintext": plaintext }, { "plaintext": "" }] }),
        ));
    }
    first.push((
        "POST",
        "transit/keys/bad".into(),
        json!({ "type": "aes192-gcm96" }),
    ));
    // Upsert of a type that cannot encrypt, or does not exist.
    for key_type in ["ecdsa-p256", "aes192-gcm96"] {
        first.push((
            "POST",
            format!("transit/encrypt/upsert-{key_type}"),
            json!({ "type": key_type, "plaintext": plaintext }),
        ));
        first.push(("GET", format!("transit/keys/upsert-{key_type}"), json!({})));
    }
    first.push((
        "POST",
        "transit/keys/signer".into(),
        json!({ "type": "ecdsa-p256" }),
    ));
    first.push((
        "POST",
        "transit/encrypt/signer".into(),
        json!({ "plaintext": plaintext }),
    ));
    let theirs = bao.batch(&first);
    let ours: Vec<(u16, Value)> = first
        .iter()
        .map(|(method, path, body)| broker.request(method, path, Some(body)))
        .collect();

    for (((method, path, body), (their_status, their_body)), (status, our_body)) in
        first.iter().zip(&theirs).zip(&ours)
    {
        let what = format!(
            "{method} {path} {body}: OpenBao {their_status} {their_body}, keybroker {status} {our_body}"
        );
        assert_eq!(status, their_status, "{what}");
        if *status != 200 {
            // A refusal says why; a key that was never made is a 404 on both.
            assert!(matches!(status, 400 | 404), "{what}");
            assert!(
                *status == 404 || our_body["errors"][0].is_string(),
                "{what}"
            );
            continue;
        }
        if *method == "GET" {
            let (data, their_data) = (&our_body["data"], &their_body["data"]);
            for field in their_data.as_object().unwrap().keys() {
                assert!(data.get(field).is_some(), "field {field} missing: {what}");
            }
            for field in [
                "type",
                "supports_encryption",
                "supports_decryption",
                "supports_signing",
                "latest_version",
                "min_decryption_version",
                "min_encryption_version",
            ] {
                assert_eq!(data[field], their_data[field], "{field}: {what}");
            }
        }
        if path.starts_with("transit/encrypt/") {
            let lengths = |value: &Value| -> Vec<(String, usize)> {
                let data = &value["data"];
                let ciphertexts: Vec<&str> = match data["batch_results"].as_array() {
                    Some(items) => items
                        .iter()
                        .map(|i| i["ciphertext"].as_str().unwrap())
                        .collect(),
                    None => vec![data["ciphertext"].as_str().unwrap()],
                };
                ciphertexts
                    .into_iter()
                    .map(|c| {
                        (
                            c.split(':').take(2).collect::<Vec<_>>().join(":"),
                            payload(c).len(),
                        )
                    })
                    .collect()
            };
            assert_eq!(lengths(our_body), lengths(their_body), "{what}");
        }
    }

    // Decrypt what each side encrypted (at index 2 + 4i), on that side; rotate, rewrap,
    // and the wrong associated data.
    let ciphertext_at = |answers: &[(u16, Value)], i: usize| {
        answers[2 + 4 * i].1["data"]["ciphertext"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let second = |answers: &[(u16, Value)]| -> Vec<(&'static str, String, Value)> {
        let mut requests = Vec::new();
        for (i, (key_type, _)) in TYPES.iter().enumerate() {
            let ciphertext = ciphertext_at(answers, i);
            requests.push((
                "POST",
                format!("transit/decrypt/{key_type}"),
                json!({ "ciphertext": ciphertext, "associated_data": "YWQ=" }),
            ));
            requests.push((
                "POST",
                format!("transit/decrypt/{key_type}"),
                json!({ "ciphertext": ciphertext, "associated_data": "eHg=" }),
            ));
            requests.push(("POST", format!("transit/keys/{key_type}/rotate"), json!({})));
            requests.push((
                "POST",
                format!("transit/rewrap/{key_type}"),
                // OpenBao's rewrap takes no associated_data: the batch's first item, which
                // has none.
                json!({ "ciphertext": answers[3 + 4 * i].1["data"]["batch_results"][0]["ciphertext"] }),
            ));
        }
        requests
    };
    let their_second = bao.batch(&second(&theirs));
    let our_requests = second(&ours);
    for ((method, path, body), (their_status, their_body)) in our_requests.iter().zip(&their_second)
    {
        let (status, our_body) = broker.request(method, path, Some(body));
        let what = format!(
            "{method} {path} {body}: OpenBao {their_status} {their_body}, keybroker {status} {our_body}"
        );
        assert_eq!(status, *their_status, "{what}");
        if path.starts_with("transit/decrypt/") && status == 200 {
            assert_eq!(our_body["data"]["plaintext"], plaintext.as_str(), "{what}");
            assert_eq!(
                their_body["data"]["plaintext"],
                plaintext.as_str(),
                "{what}"
            );
        }
        if path.starts_with("transit/rewrap/") {
            for body in [&our_body, their_body] {
                let rewrapped = body["data"]["ciphertext"].as_str().unwrap();
                assert!(rewrapped.starts_with("vault:v2:"), "{what}");
            }
            assert_eq!(
                payload(our_body["data"]["ciphertext"].as_str().unwrap()).len(),
                payload(their_body["data"]["ciphertext"].as_str().unwrap()).len(),
                "{what}"
            );
        }
    }
}
