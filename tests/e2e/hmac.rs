//! HMAC (issue 19): `transit/hmac/:name(/:algorithm)` and `verify` with `hmac=`, for every
//! envelope key (the symmetric types and the `hmac` type, `key_size`), on the local KEK and
//! on an HSM; keys whose material stays in their backend (mode=direct, asymmetric) refused
//! with the reason. Driven with the real `bao` CLI, and compared with a real OpenBao.

use base64::{engine::general_purpose::STANDARD, Engine as _};
use serde_json::{json, Value};

use crate::{
    hsm::Hsm,
    support::{openbao::OpenBao, Broker},
};

fn json_of(out: &str) -> Value {
    serde_json::from_str(out).unwrap()
}

/// The bytes of a `vault:vN:` HMAC.
fn bytes_of(hmac: &str) -> Vec<u8> {
    STANDARD.decode(hmac.rsplit(':').next().unwrap()).unwrap()
}

/// HMACs with `bao` on `backend`: each envelope type, both algorithm spellings, rotation,
/// verification (good, tampered, too old), a batch with references; and the refusals.
fn check_hmac(broker: &Broker, backend: &str) {
    let input = STANDARD.encode(b"the quick brown fox");
    for (key_type, extra) in [
        ("aes256-gcm96", None),
        ("chacha20-poly1305", None),
        ("hmac", Some("key_size=64")),
    ] {
        let key = format!("{backend}-{key_type}");
        let mut create = vec![
            "write".to_owned(),
            format!("transit/keys/{key}"),
            format!("type={key_type}"),
            format!("backend={backend}"),
        ];
        create.extend(extra.map(str::to_owned));
        broker.bao_ok(&create.iter().map(String::as_str).collect::<Vec<_>>());
        let read =
            json_of(&broker.bao_ok(&["read", "-format=json", &format!("transit/keys/{key}")]));
        if key_type == "hmac" {
            assert_eq!(read["data"]["key_size"], 64, "{read}");
            assert_eq!(read["data"]["supports_encryption"], false, "{read}");
            // An hmac key does not encrypt.
            let (status, body) = broker.request(
                "POST",
                &format!("transit/encrypt/{key}"),
                Some(&json!({ "plaintext": input })),
            );
            assert_eq!(status, 400, "{body}");
        }

        let hmac_of = |path: &str, extra: &[&str]| -> String {
            let mut args = vec!["write", "-format=json", path];
            let input_arg = format!("input={input}");
            args.push(&input_arg);
            args.extend_from_slice(extra);
            json_of(&broker.bao_ok(&args))["data"]["hmac"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let v1 = hmac_of(&format!("transit/hmac/{key}"), &[]);
        assert!(v1.starts_with("vault:v1:"), "{v1}");
        assert_eq!(bytes_of(&v1).len(), 32, "sha2-256 by default: {v1}");
        // The same input and key: the same HMAC; the path's algorithm and the body's agree.
        assert_eq!(hmac_of(&format!("transit/hmac/{key}"), &[]), v1);
        let sha3 = hmac_of(&format!("transit/hmac/{key}/sha3-512"), &[]);
        assert_eq!(bytes_of(&sha3).len(), 64);
        assert_eq!(
            hmac_of(&format!("transit/hmac/{key}"), &["algorithm=sha3-512"]),
            sha3
        );

        let verify = |hmac: &str, path: &str| -> (u16, Value) {
            broker.request("POST", path, Some(&json!({ "input": input, "hmac": hmac })))
        };
        let verify_path = format!("transit/verify/{key}");
        let (status, body) = verify(&v1, &verify_path);
        assert_eq!(
            (status, &body["data"]["valid"]),
            (200, &json!(true)),
            "{body}"
        );
        let (_, body) = verify(&sha3, &format!("{verify_path}/sha3-512"));
        assert_eq!(body["data"]["valid"], true, "{body}");
        // Tampered, or checked with another algorithm: not valid.
        let mut tampered = bytes_of(&v1);
        tampered[0] ^= 1;
        let (status, body) = verify(
            &format!("vault:v1:{}", STANDARD.encode(&tampered)),
            &verify_path,
        );
        assert_eq!(
            (status, &body["data"]["valid"]),
            (200, &json!(false)),
            "{body}"
        );
        let (_, body) = verify(&v1, &format!("{verify_path}/sha2-512"));
        assert_eq!(body["data"]["valid"], false, "{body}");
        let verified = json_of(&broker.bao_ok(&[
            "write",
            "-format=json",
            &verify_path,
            &format!("input={input}"),
            &format!("hmac={v1}"),
        ]));
        assert_eq!(verified["data"]["valid"], true, "{verified}");

        // Each version has its own HMAC key; old versions verify until policy forbids them.
        broker.bao_ok(&["write", "-f", &format!("transit/keys/{key}/rotate")]);
        let v2 = hmac_of(&format!("transit/hmac/{key}"), &[]);
        assert!(v2.starts_with("vault:v2:"), "{v2}");
        assert_ne!(bytes_of(&v2), bytes_of(&v1));
        assert_eq!(
            hmac_of(&format!("transit/hmac/{key}"), &["key_version=1"]),
            v1
        );
        assert_eq!(verify(&v1, &verify_path).1["data"]["valid"], true);
        broker.bao_ok(&[
            "write",
            &format!("transit/keys/{key}/config"),
            "min_decryption_version=2",
        ]);
        let (status, body) = verify(&v1, &verify_path);
        assert_eq!(status, 400, "{body}");
        assert_eq!(
            body["errors"][0],
            "cannot verify HMAC: version is too old (disallowed by policy)"
        );

        // A batch keeps order and references; a bad item fails alone, with 200.
        let (status, body) = broker.request(
            "POST",
            &format!("transit/hmac/{key}"),
            Some(&json!({ "batch_input": [
                { "input": input, "reference": "a" },
                { "input": "not base64!", "reference": "b" },
                { "input": "", "reference": "c" },
            ] })),
        );
        assert_eq!(status, 200, "{body}");
        let results = body["data"]["batch_results"].as_array().unwrap();
        assert_eq!(results[0]["hmac"], v2.as_str(), "{body}");
        assert_eq!(results[0]["reference"], "a");
        assert!(results[1]["error"]
            .as_str()
            .unwrap()
            .starts_with("unable to decode input as base64"));
        assert_eq!(results[1]["reference"], "b");
        assert!(results[2]["hmac"]
            .as_str()
            .unwrap()
            .starts_with("vault:v2:"));
        let (status, body) = broker.request(
            "POST",
            &verify_path,
            Some(&json!({ "batch_input": [
                { "input": input, "hmac": v2, "reference": "ok" },
                { "input": input, "hmac": v1, "reference": "old" },
                { "input": input, "hmac": format!("vault:v2:{}", STANDARD.encode(&tampered)) },
            ] })),
        );
        assert_eq!(status, 200, "{body}");
        let results = body["data"]["batch_results"].as_array().unwrap();
        assert_eq!(results[0]["valid"], true, "{body}");
        assert_eq!(results[0]["reference"], "ok");
        assert!(
            results[1]["error"].as_str().unwrap().contains("too old"),
            "{body}"
        );
        assert!(
            results[2].get("valid").is_none(),
            "false is omitted, as in Vault: {body}"
        );
    }

    // Keys whose material never leaves their backend have no HMAC key: 400, with why.
    let mut refused = vec![("ed25519", "direct")];
    if backend == "local" || backend == "hsm" {
        refused.push(("aes256-gcm96", "direct"));
    }
    for (key_type, mode) in refused {
        let key = format!("{backend}-{key_type}-{mode}");
        broker.bao_ok(&[
            "write",
            &format!("transit/keys/{key}"),
            &format!("type={key_type}"),
            &format!("backend={backend}"),
            &format!("mode={mode}"),
        ]);
        let (status, body) = broker.request(
            "POST",
            &format!("transit/hmac/{key}"),
            Some(&json!({ "input": input })),
        );
        assert_eq!(status, 400, "{key_type}: {body}");
        let message = body["errors"][0].as_str().unwrap();
        assert!(
            message.contains(&format!("\"{backend}\"")) && message.contains("HMAC"),
            "{message}"
        );
    }
    // mode=direct cannot hold an hmac key.
    let (status, body) = broker.request(
        "POST",
        &format!("transit/keys/{backend}-hmac-direct"),
        Some(&json!({ "type": "hmac", "backend": backend, "mode": "direct" })),
    );
    assert_eq!(status, 400, "{body}");
}

#[test]
fn bao_cli_hmacs_with_envelope_keys_on_the_local_kek() {
    let broker = Broker::dev();
    check_hmac(&broker, "local");
}

#[test]
fn bao_cli_hmacs_with_envelope_keys_on_an_hsm() {
    let hsm = Hsm::new();
    hsm.standard_dropin("");
    let broker = hsm.broker();
    check_hmac(&broker, "hsm");
}

/// The same requests to keybroker and to a real OpenBao: HMACs and their verification with
/// an `aes256-gcm96` and an `hmac` key, every algorithm, batches, and every refusal. The
/// statuses agree, the answers have the same fields, the HMACs the same version and
/// length, and the refusals Vault's messages (but for the unsupported algorithm, where
/// OpenBao prints a zero byte instead of the name).
#[test]
fn hmac_answers_as_openbao_does() {
    let broker = Broker::dev();
    let bao = OpenBao::with_transit();
    let input = STANDARD.encode(b"known answer");
    let mut requests: Vec<(&str, String, Value)> = vec![
        ("POST", "transit/keys/sym".into(), json!({})),
        (
            "POST",
            "transit/keys/mac".into(),
            json!({ "type": "hmac", "key_size": 48 }),
        ),
        ("GET", "transit/keys/mac".into(), json!({})),
        (
            "POST",
            "transit/keys/bad-size".into(),
            json!({ "type": "hmac", "key_size": 16 }),
        ),
        (
            "POST",
            "transit/keys/not-mac".into(),
            json!({ "key_size": 64 }),
        ),
    ];
    for key in ["sym", "mac"] {
        for algorithm in [
            "sha2-224", "sha2-256", "sha2-384", "sha2-512", "sha3-224", "sha3-256", "sha3-384",
            "sha3-512",
        ] {
            requests.push((
                "POST",
                format!("transit/hmac/{key}/{algorithm}"),
                json!({ "input": input }),
            ));
        }
        requests.push((
            "POST",
            format!("transit/hmac/{key}"),
            json!({ "input": input }),
        ));
        requests.push((
            "POST",
            format!("transit/hmac/{key}"),
            json!({ "batch_input": [{ "input": input, "reference": "r" }, { "input": "%%" }, {}] }),
        ));
        requests.push(("POST", format!("transit/hmac/{key}"), json!({})));
        requests.push((
            "POST",
            format!("transit/hmac/{key}"),
            json!({ "batch_input": [] }),
        ));
        requests.push((
            "POST",
            format!("transit/hmac/{key}"),
            json!({ "input": "%%" }),
        ));
        requests.push((
            "POST",
            format!("transit/hmac/{key}"),
            json!({ "input": input, "key_version": 2 }),
        ));
        requests.push((
            "POST",
            format!("transit/hmac/{key}/sha1024"),
            json!({ "input": input }),
        ));
        for hmac in [
            "v1:AAAA",
            "vault:v1",
            "vault:vx:AAAA",
            "vault:v9:AAAA",
            "vault:v1:%%",
        ] {
            requests.push((
                "POST",
                format!("transit/verify/{key}"),
                json!({ "input": input, "hmac": hmac }),
            ));
        }
        requests.push((
            "POST",
            format!("transit/verify/{key}"),
            json!({ "input": input }),
        ));
        requests.push((
            "POST",
            format!("transit/verify/{key}"),
            json!({ "input": input, "hmac": "vault:v1:AAAA", "signature": "vault:v1:AAAA" }),
        ));
        requests.push((
            "POST",
            format!("transit/verify/{key}"),
            json!({ "batch_input": [{ "input": input, "hmac": "vault:v1:AAAA" }, { "hmac": "vault:v1:AAAA" }, { "input": input, "signature": "vault:v1:AAAA" }] }),
        ));
        requests.push((
            "POST",
            format!("transit/verify/{key}"),
            json!({ "batch_input": [{ "input": input, "hmac": "vault:v1:AAAA" }, { "input": input }] }),
        ));
        requests.push((
            "POST",
            format!("transit/verify/{key}"),
            json!({ "batch_input": [{ "input": input, "hmac": "vault:v1:AAAA", "reference": "x" }, { "hmac": "vault:v1:AAAA" }] }),
        ));
    }
    requests.push((
        "POST",
        "transit/hmac/missing".into(),
        json!({ "input": input }),
    ));
    let theirs = bao.batch(&requests);
    let ours: Vec<(u16, Value)> = requests
        .iter()
        .map(|(method, path, body)| broker.request(method, path, Some(body)))
        .collect();
    let mut hmacs = Vec::new();
    for (((method, path, body), (their_status, their_body)), (status, our_body)) in
        requests.iter().zip(&theirs).zip(&ours)
    {
        let what = format!(
            "{method} {path} {body}: OpenBao {their_status} {their_body}, keybroker {status} {our_body}"
        );
        assert_eq!(status, their_status, "{what}");
        if *status != 200 && *status != 204 {
            if !path.ends_with("/sha1024") && !path.starts_with("transit/keys/") {
                assert_eq!(our_body["errors"], their_body["errors"], "{what}");
            }
            assert!(our_body["errors"][0].is_string(), "{what}");
            continue;
        }
        if path.starts_with("transit/keys/") && *method == "POST" {
            continue;
        }
        if *method == "GET" {
            for field in their_body["data"].as_object().unwrap().keys() {
                assert!(
                    our_body["data"].get(field).is_some(),
                    "field {field} missing: {what}"
                );
            }
            assert_eq!(
                our_body["data"]["key_size"], their_body["data"]["key_size"],
                "{what}"
            );
            continue;
        }
        let shape = |value: &Value| -> Vec<(String, Option<String>, Option<usize>)> {
            let data = &value["data"];
            let items: Vec<Value> = match data["batch_results"].as_array() {
                Some(items) => items.clone(),
                None => vec![data.clone()],
            };
            items
                .iter()
                .map(|item| {
                    let mut keys: Vec<&String> = item.as_object().unwrap().keys().collect();
                    keys.sort();
                    let hmac = item["hmac"].as_str();
                    (
                        format!("{keys:?}"),
                        item["error"].as_str().map(str::to_owned),
                        hmac.map(|h| bytes_of(h).len()),
                    )
                })
                .collect()
        };
        assert_eq!(shape(our_body), shape(their_body), "{what}");
        if let Some(hmac) = our_body["data"]["hmac"].as_str() {
            hmacs.push((path.clone(), hmac.to_owned()));
        }
    }
    // What each side made verifies there, and not on the other (other key material).
    for (path, hmac) in &hmacs {
        let verify_path = path.replacen("transit/hmac/", "transit/verify/", 1);
        let (status, body) = broker.request(
            "POST",
            &verify_path,
            Some(&json!({ "input": input, "hmac": hmac })),
        );
        assert_eq!(
            (status, &body["data"]["valid"]),
            (200, &json!(true)),
            "{verify_path}: {body}"
        );
        let theirs = bao.batch(&[(
            "POST",
            verify_path.clone(),
            json!({ "input": input, "hmac": hmac }),
        )]);
        assert_eq!(
            theirs[0].1["data"]["valid"], false,
            "{verify_path}: {theirs:?}"
        );
    }
}
