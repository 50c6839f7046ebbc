//! The transit API through the real binary, with the unmodified `bao` CLI and curl.

use std::time::Duration;

use base64::{engine::general_purpose::STANDARD, Engine as _};
use serde_json::{json, Value};

use crate::support::{eventually, openbao::OpenBao, Broker, Options};

fn b64(data: &[u8]) -> String {
    STANDARD.encode(data)
}

fn field(out: &str, name: &str) -> String {
    out.lines()
        .find_map(|l| {
            let mut parts = l.split_whitespace();
            (parts.next() == Some(name)).then(|| parts.next().unwrap_or_default().to_owned())
        })
        .unwrap_or_else(|| panic!("no {name} in:\n{out}"))
}

#[test]
fn bao_cli_drives_the_transit_lifecycle() {
    let broker = Broker::dev();
    broker.bao_ok(&["write", "-f", "transit/keys/k"]);
    let plaintext = b64(b"hi\n");
    let out = broker.bao_ok(&[
        "write",
        "transit/encrypt/k",
        &format!("plaintext={plaintext}"),
    ]);
    let v1 = field(&out, "ciphertext");
    assert!(v1.starts_with("vault:v1:"), "{v1}");
    let out = broker.bao_ok(&["write", "transit/decrypt/k", &format!("ciphertext={v1}")]);
    assert_eq!(field(&out, "plaintext"), plaintext);

    broker.bao_ok(&["write", "-f", "transit/keys/k/rotate"]);
    let out = broker.bao_ok(&["read", "-format=json", "transit/keys/k"]);
    let key: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(key["data"]["latest_version"], 2);
    assert_eq!(key["data"]["type"], "aes256-gcm96");
    assert_eq!(key["data"]["backend"], "local");
    assert_eq!(key["data"]["mode"], "envelope");
    assert!(key["data"]["keys"]["2"].is_number());

    let out = broker.bao_ok(&[
        "write",
        "transit/encrypt/k",
        &format!("plaintext={plaintext}"),
    ]);
    let v2 = field(&out, "ciphertext");
    assert!(v2.starts_with("vault:v2:"), "{v2}");

    let out = broker.bao_ok(&["list", "transit/keys"]);
    assert!(out.lines().any(|l| l.trim() == "k"), "{out}");

    broker.bao_ok(&["write", "transit/keys/k/config", "min_decryption_version=2"]);
    let refused = broker.bao(&["write", "transit/decrypt/k", &format!("ciphertext={v1}")]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("disallowed by policy"));
    let out = broker.bao_ok(&["write", "transit/decrypt/k", &format!("ciphertext={v2}")]);
    assert_eq!(field(&out, "plaintext"), plaintext);

    broker.bao_ok(&["secrets", "enable", "-path=transit2", "transit"]);
    let again = broker.bao(&["secrets", "enable", "-path=transit2", "transit"]);
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("Code: 400") && stderr.contains("path is already in use"),
        "{stderr}"
    );
    let out = broker.bao_ok(&["secrets", "list"]);
    assert!(
        out.contains("transit2/") && out.contains("transit/"),
        "{out}"
    );

    // The second mount has its own keys.
    broker.bao_ok(&["write", "-f", "transit2/keys/other"]);
    let out = broker.bao_ok(&["list", "transit2/keys"]);
    assert!(
        out.contains("other") && !out.lines().any(|l| l.trim() == "k"),
        "{out}"
    );
    broker.bao_ok(&["secrets", "disable", "transit2"]);
    let (status, _) = broker.request("GET", "transit2/keys/other", None);
    assert_eq!(status, 404);
}

#[test]
fn listing_works_every_way_clients_do_it() {
    let broker = Broker::dev();
    broker.bao_ok(&["write", "-f", "transit/keys/a"]);
    broker.bao_ok(&["write", "-f", "transit/keys/b"]);
    for (method, path) in [
        ("LIST", "transit/keys"),
        ("LIST", "transit/keys/"),
        ("GET", "transit/keys?list=true"),
        ("GET", "transit/keys/?list=true"),
    ] {
        let (status, body) = broker.request(method, path, None);
        assert_eq!(status, 200, "{method} {path}: {body}");
        assert_eq!(body["data"]["keys"], json!(["a", "b"]), "{method} {path}");
    }
    // An empty list is a 404, as in Vault (bao prints "No value found").
    let (status, _) = broker.request("LIST", "transit2/keys", None);
    assert_eq!(status, 404);
    broker.bao_ok(&["secrets", "enable", "-path=empty", "transit"]);
    let (status, body) = broker.request("LIST", "empty/keys", None);
    assert_eq!((status, body["errors"].clone()), (404, json!([])));
}

#[test]
fn data_operations_follow_vault_semantics() {
    let broker = Broker::dev();
    // Upsert: encrypting with a missing key creates it.
    let ct = broker.encrypt("auto", b"payload");
    assert_eq!(broker.decrypt("auto", &ct), b"payload");

    // associated_data is authenticated.
    let body = json!({ "plaintext": b64(b"x"), "associated_data": b64(b"ctx-1") });
    let (_, value) = broker.request("POST", "transit/encrypt/auto", Some(&body));
    let ct = value["data"]["ciphertext"].as_str().unwrap().to_owned();
    let (status, _) = broker.request(
        "POST",
        "transit/decrypt/auto",
        Some(&json!({ "ciphertext": ct, "associated_data": b64(b"ctx-2") })),
    );
    assert_eq!(status, 400);
    let (status, value) = broker.request(
        "POST",
        "transit/decrypt/auto",
        Some(&json!({ "ciphertext": ct, "associated_data": b64(b"ctx-1") })),
    );
    assert_eq!(
        (status, value["data"]["plaintext"].clone()),
        (200, json!(b64(b"x")))
    );

    // Batch with a partial failure: 400 by default, or partial_failure_response_code.
    let batch = json!({ "batch_input": [
        { "plaintext": b64(b"one"), "reference": "r1" },
        { "plaintext": "%%%not-base64", "reference": "r2" },
    ]});
    let (status, value) = broker.request("POST", "transit/encrypt/auto", Some(&batch));
    assert_eq!(status, 400, "{value}");
    let results = value["data"]["batch_results"].as_array().unwrap();
    assert_eq!(results[0]["reference"], "r1");
    assert!(results[0]["ciphertext"]
        .as_str()
        .unwrap()
        .starts_with("vault:v1:"));
    assert!(results[1]["error"].as_str().unwrap().contains("base64"));
    let mut partial = batch.clone();
    partial["partial_failure_response_code"] = json!(207);
    let (status, _) = broker.request("POST", "transit/encrypt/auto", Some(&partial));
    assert_eq!(status, 207);
    let good_ct = results[0]["ciphertext"].as_str().unwrap().to_owned();
    let (status, value) = broker.request(
        "POST",
        "transit/decrypt/auto",
        Some(&json!({ "batch_input": [{ "ciphertext": good_ct }, { "ciphertext": good_ct }] })),
    );
    assert_eq!(status, 200);
    assert_eq!(value["data"]["batch_results"][1]["plaintext"], b64(b"one"));

    // Rewrap moves a ciphertext to the latest version.
    let (status, _) = broker.request("POST", "transit/keys/auto/rotate", None);
    assert_eq!(status, 200);
    let (status, value) = broker.request(
        "POST",
        "transit/rewrap/auto",
        Some(&json!({ "ciphertext": good_ct })),
    );
    assert_eq!(status, 200, "{value}");
    let rewrapped = value["data"]["ciphertext"].as_str().unwrap().to_owned();
    assert!(rewrapped.starts_with("vault:v2:"));
    assert_eq!(broker.decrypt("auto", &rewrapped), b"one");

    // key_version picks an older version for encryption.
    let (_, value) = broker.request(
        "POST",
        "transit/encrypt/auto",
        Some(&json!({ "plaintext": b64(b"o"), "key_version": "1" })),
    );
    assert!(value["data"]["ciphertext"]
        .as_str()
        .unwrap()
        .starts_with("vault:v1:"));

    // Data keys.
    for bits in [128, 256, 512] {
        let (status, value) = broker.request(
            "POST",
            "transit/datakey/plaintext/auto",
            Some(&json!({ "bits": bits })),
        );
        assert_eq!(status, 200, "{value}");
        let plaintext = STANDARD
            .decode(value["data"]["plaintext"].as_str().unwrap())
            .unwrap();
        assert_eq!(plaintext.len() * 8, bits);
        assert_eq!(
            broker.decrypt("auto", value["data"]["ciphertext"].as_str().unwrap()),
            plaintext
        );
    }
    let (status, value) = broker.request("POST", "transit/datakey/wrapped/auto", None);
    assert_eq!(status, 200);
    assert!(value["data"].get("plaintext").is_none());
    let (status, _) = broker.request(
        "POST",
        "transit/datakey/plaintext/auto",
        Some(&json!({ "bits": 100 })),
    );
    assert_eq!(status, 400);

    // Random bytes.
    let (status, value) = broker.request(
        "POST",
        "transit/random/16",
        Some(&json!({ "format": "hex" })),
    );
    assert_eq!(status, 200);
    assert_eq!(value["data"]["random_bytes"].as_str().unwrap().len(), 32);
    let (_, value) = broker.request("POST", "transit/random", None);
    assert_eq!(
        STANDARD
            .decode(value["data"]["random_bytes"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );

    // Deletion needs deletion_allowed.
    let (status, value) = broker.request("DELETE", "transit/keys/auto", None);
    assert_eq!(status, 400);
    assert!(value["errors"][0]
        .as_str()
        .unwrap()
        .contains("deletion is not allowed"));
    let (status, _) = broker.request(
        "POST",
        "transit/keys/auto/config",
        Some(&json!({ "deletion_allowed": true })),
    );
    assert_eq!(status, 200);
    let (status, _) = broker.request("DELETE", "transit/keys/auto", None);
    assert_eq!(status, 204);
    let (status, _) = broker.request("GET", "transit/keys/auto", None);
    assert_eq!(status, 404);
    let (status, value) = broker.request(
        "POST",
        "transit/decrypt/auto",
        Some(&json!({ "ciphertext": good_ct })),
    );
    assert_eq!(status, 400);
    assert!(value["errors"][0]
        .as_str()
        .unwrap()
        .contains("encryption key not found"));

    // disable_upsert.
    let (status, _) = broker.request(
        "POST",
        "transit/config/keys",
        Some(&json!({ "disable_upsert": true })),
    );
    assert_eq!(status, 200);
    let (_, value) = broker.request("GET", "transit/config/keys", None);
    assert_eq!(value["data"]["disable_upsert"], true);
    let (status, _) = broker.request(
        "POST",
        "transit/encrypt/fresh",
        Some(&json!({ "plaintext": b64(b"x") })),
    );
    assert_eq!(status, 400);
}

#[test]
fn direct_mode_round_trips_through_the_backend() {
    let broker = Broker::dev();
    let (status, value) =
        broker.request("POST", "transit/keys/d", Some(&json!({ "mode": "direct" })));
    assert_eq!(status, 200, "{value}");
    assert_eq!(value["data"]["mode"], "direct");
    let ct = broker.encrypt("d", b"direct data");
    assert_eq!(broker.decrypt("d", &ct), b"direct data");
    broker.request("POST", "transit/keys/d/rotate", None);
    let ct2 = broker.encrypt("d", b"second");
    assert!(ct2.starts_with("vault:v2:"));
    assert_eq!(broker.decrypt("d", &ct), b"direct data");
    assert_eq!(broker.decrypt("d", &ct2), b"second");
    // Tampering is caught by the backend: a 400, not a 500.
    let mut payload = STANDARD.decode(ct.trim_start_matches("vault:v1:")).unwrap();
    let last = payload.len() - 1;
    payload[last] ^= 1;
    let tampered = format!("vault:v1:{}", b64(&payload));
    let (status, _) = broker.request(
        "POST",
        "transit/decrypt/d",
        Some(&json!({ "ciphertext": tampered })),
    );
    assert_eq!(status, 400);
}

/// `transit/hash` through the `bao` CLI: the algorithm in the path or in the body, both
/// formats, and a refusal (FIPS 202's digest of "abc").
#[test]
fn bao_cli_hashes_data() {
    const SHA3_256_ABC: &str = "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532";
    const SHA2_512_ABC: &str = "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
                                2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f";
    let broker = Broker::dev();
    let input = format!("input={}", b64(b"abc"));
    let sum = |args: &[&str]| -> String {
        let out = broker.bao_ok(&[&["write", "-format=json"], args].concat());
        let value: Value = serde_json::from_str(&out).unwrap();
        value["data"]["sum"].as_str().unwrap().to_owned()
    };
    assert_eq!(sum(&["transit/hash/sha3-256", &input]), SHA3_256_ABC);
    assert_eq!(
        sum(&["transit/hash/sha3-256", &input, "format=base64"]),
        b64(&hex::decode(SHA3_256_ABC).unwrap())
    );
    assert_eq!(
        sum(&["transit/hash", &input, "algorithm=sha2-512"]),
        SHA2_512_ABC
    );
    // The path wins over the body.
    assert_eq!(
        sum(&["transit/hash/sha3-256", &input, "algorithm=sha2-512"]),
        SHA3_256_ABC
    );
    // The default is sha2-256, in hex.
    assert_eq!(
        sum(&["transit/hash", &input]),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );

    let refused = broker.bao(&["write", "transit/hash/md5", &input]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("Code: 400") && stderr.contains("unsupported algorithm md5"),
        "{stderr}"
    );
}

/// `transit/hash` against a real OpenBao: every algorithm × format, in the path and in the
/// body, and every refusal, give the same status and the same `data` (the sum byte for
/// byte) or the same `errors`.
#[test]
fn hash_answers_as_openbao_does() {
    let broker = Broker::dev();
    let bao = OpenBao::with_transit();

    let long: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
    let inputs = [b64(b"abc"), b64(&long), String::new()];
    let algorithms = [
        "sha2-224", "sha2-256", "sha2-384", "sha2-512", "sha3-224", "sha3-256", "sha3-384",
        "sha3-512",
    ];
    let mut cases: Vec<(&str, String, Value)> = Vec::new();
    for algorithm in algorithms {
        for input in &inputs {
            for format in [None, Some("hex"), Some("base64")] {
                let mut body = json!({ "input": input });
                if let Some(format) = format {
                    body["format"] = json!(format);
                }
                cases.push(("POST", format!("transit/hash/{algorithm}"), body.clone()));
                body["algorithm"] = json!(algorithm);
                cases.push(("POST", "transit/hash".into(), body));
            }
        }
    }
    let abc = b64(b"abc");
    let more: Vec<(&str, Value)> = vec![
        // Defaults: sha2-256, hex.
        ("transit/hash", json!({ "input": abc })),
        // The API page's sample payload (unused low bits in its last character).
        ("transit/hash/sha2-512", json!({ "input": "adba32==" })),
        // Go's decoder skips newlines.
        ("transit/hash", json!({ "input": "YW\nJj\r\n" })),
        // The path wins over the body.
        (
            "transit/hash/sha3-512",
            json!({ "input": abc, "algorithm": "sha2-224" }),
        ),
        (
            "transit/hash/sha2-256",
            json!({ "input": abc, "algorithm": "md5" }),
        ),
        // Unknown fields are ignored.
        ("transit/hash", json!({ "input": abc, "other": 1 })),
        // Refusals: algorithm, format, base64, input, and the order they are checked in.
        ("transit/hash/md5", json!({ "input": abc })),
        ("transit/hash", json!({ "input": abc, "algorithm": "md5" })),
        (
            "transit/hash",
            json!({ "input": abc, "algorithm": "SHA2-256" }),
        ),
        ("transit/hash", json!({ "input": abc, "algorithm": "" })),
        ("transit/hash", json!({ "input": abc, "format": "raw" })),
        ("transit/hash", json!({ "input": abc, "format": "" })),
        ("transit/hash", json!({ "input": abc, "format": "HEX" })),
        ("transit/hash", json!({ "input": "not base64!" })),
        ("transit/hash", json!({ "input": "YQ" })),
        ("transit/hash", json!({ "input": "YWJjYQ" })),
        ("transit/hash", json!({ "input": "YQ=x" })),
        ("transit/hash", json!({ "input": "YQ==YQ==" })),
        ("transit/hash", json!({ "input": " YWJj" })),
        ("transit/hash", json!({ "input": "YWJj-_" })),
        ("transit/hash", json!({})),
        ("transit/hash/md5", json!({ "format": "raw" })),
        ("transit/hash/md5", json!({ "input": "!", "format": "raw" })),
        ("transit/hash/md5", json!({ "input": abc, "format": "raw" })),
    ];
    cases.extend(
        more.into_iter()
            .map(|(path, body)| ("POST", path.into(), body)),
    );

    let theirs = bao.batch(&cases);
    let mut refused = 0;
    for ((method, path, body), (their_status, their_body)) in cases.iter().zip(&theirs) {
        let (status, ours) = broker.request(method, path, Some(body));
        let what = format!("{method} {path} {body}: OpenBao {their_status} {their_body}, keybroker {status} {ours}");
        assert_eq!(status, *their_status, "{what}");
        if status == 200 {
            assert!(their_body["data"]["sum"].is_string(), "{what}");
            assert_eq!(ours["data"], their_body["data"], "{what}");
        } else {
            assert_eq!(status, 400, "{what}");
            assert_eq!(ours["errors"], their_body["errors"], "{what}");
            refused += 1;
        }
    }
    assert_eq!(refused, 18);
}

/// Every malformed input gets a 4xx with a message, never a 500.
#[test]
fn bad_input_gets_clear_client_errors() {
    let broker = Broker::dev();
    let good = broker.encrypt("k", b"secret");
    broker.encrypt("other", b"x");
    let other_ct = broker.encrypt("other", b"secret");
    let payload = STANDARD
        .decode(good.trim_start_matches("vault:v1:"))
        .unwrap();
    let mut flipped = payload.clone();
    flipped[14] ^= 0x80;
    let token = broker.token.clone();
    let headers = [("X-Vault-Token", token.as_str())];

    let cases: Vec<(&str, String, Option<String>, u16, &str)> = vec![
        (
            "POST",
            "transit/encrypt/k".into(),
            Some("{\"plaintext\":".into()),
            400,
            "failed to parse JSON",
        ),
        (
            "POST",
            "transit/encrypt/k".into(),
            Some("[1,2]".into()),
            400,
            "failed to parse JSON",
        ),
        (
            "POST",
            "transit/encrypt/k".into(),
            Some(json!({ "plaintext": "***" }).to_string()),
            400,
            "base64",
        ),
        (
            "POST",
            "transit/encrypt/k".into(),
            Some(json!({}).to_string()),
            400,
            "missing plaintext",
        ),
        (
            "POST",
            "transit/encrypt/k".into(),
            Some(json!({ "plaintext": "aGk=", "key_version": 9 }).to_string()),
            400,
            "higher than the latest",
        ),
        (
            "POST",
            "transit/encrypt/k".into(),
            Some(json!({ "plaintext": "aGk=", "key_version": "x" }).to_string()),
            400,
            "key_version: expected an integer",
        ),
        (
            "POST",
            "transit/decrypt/nope".into(),
            Some(json!({ "ciphertext": good }).to_string()),
            400,
            "encryption key not found",
        ),
        (
            "POST",
            "transit/decrypt/k".into(),
            Some(json!({ "ciphertext": "vault:v7:AAAA" }).to_string()),
            400,
            "higher than the latest",
        ),
        (
            "POST",
            "transit/decrypt/k".into(),
            Some(json!({ "ciphertext": "garbage" }).to_string()),
            400,
            "invalid ciphertext",
        ),
        (
            "POST",
            "transit/decrypt/k".into(),
            Some(json!({ "ciphertext": "vault:v1:@@@" }).to_string()),
            400,
            "base64",
        ),
        (
            "POST",
            "transit/decrypt/k".into(),
            Some(json!({ "ciphertext": format!("vault:v1:{}", b64(&flipped)) }).to_string()),
            400,
            "authentication failed",
        ),
        (
            "POST",
            "transit/decrypt/k".into(),
            Some(
                json!({ "ciphertext": format!("vault:v1:{}", b64(&payload[..payload.len() - 1])) })
                    .to_string(),
            ),
            400,
            "authentication failed",
        ),
        (
            "POST",
            "transit/decrypt/k".into(),
            Some(json!({ "ciphertext": format!("vault:v1:{}", b64(&payload[..5])) }).to_string()),
            400,
            "too short",
        ),
        (
            "POST",
            "transit/decrypt/k".into(),
            Some(json!({ "ciphertext": other_ct }).to_string()),
            400,
            "authentication failed",
        ),
        (
            "POST",
            "transit/keys/x".into(),
            Some(json!({ "backend": "no-such-instance" }).to_string()),
            400,
            "not available to this tenant",
        ),
        (
            "POST",
            "transit/keys/x".into(),
            Some(json!({ "mode": "sideways" }).to_string()),
            400,
            "invalid mode",
        ),
        (
            "POST",
            "transit/keys/x".into(),
            Some(json!({ "type": "rsa-9" }).to_string()),
            400,
            "unknown key type",
        ),
        (
            "POST",
            "transit/keys/k/config".into(),
            Some(json!({ "min_decryption_version": 5 }).to_string()),
            400,
            "greater than latest",
        ),
        (
            "POST",
            "transit/keys/..".into(),
            None,
            400,
            "invalid key name",
        ),
        (
            "POST",
            "transit/keys/a..b".into(),
            None,
            400,
            "invalid key name",
        ),
        (
            "POST",
            "transit/keys/a%00b".into(),
            None,
            400,
            "invalid key name",
        ),
        (
            "POST",
            "transit/keys/%C3%A9".into(),
            None,
            400,
            "invalid key name",
        ),
        (
            "POST",
            "transit/encrypt/a%2Fb".into(),
            Some(json!({ "plaintext": "aGk=" }).to_string()),
            400,
            "invalid key name",
        ),
        (
            "POST",
            "transit/keys/a/b".into(),
            None,
            404,
            "unsupported path",
        ),
        (
            "POST",
            "transit/bogus".into(),
            None,
            404,
            "unsupported path",
        ),
        (
            "PATCH",
            "transit/keys/k".into(),
            None,
            405,
            "unsupported operation",
        ),
        (
            "POST",
            "sys/mounts/sys".into(),
            Some(json!({ "type": "transit" }).to_string()),
            400,
            "reserved",
        ),
        (
            "POST",
            "sys/mounts/x".into(),
            Some(json!({ "type": "database" }).to_string()),
            400,
            "plugin not found",
        ),
        ("GET", "sys/metrics".into(), None, 400, "format=prometheus"),
    ];
    for (method, path, body, expected, message) in cases {
        let (status, text) = broker.raw(method, &path, body.as_deref(), &headers);
        assert_eq!(status, expected, "{method} {path} {body:?}: {text}");
        let value: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text}"));
        let error = value["errors"][0].as_str().unwrap_or_default();
        assert!(
            error.contains(message),
            "{method} {path}: expected {message:?} in {text}"
        );
    }

    // A body over the limit: 413.
    let big = format!("{{\"plaintext\":\"{}\"}}", "A".repeat(33 * 1024 * 1024));
    let (status, text) = broker.raw("POST", "transit/encrypt/k", Some(&big), &headers);
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("larger than"));

    // No token, a wrong token: the same 403.
    let (status, text) = broker.raw("POST", "transit/encrypt/k", Some("{}"), &[]);
    let (status2, text2) = broker.raw(
        "POST",
        "transit/encrypt/k",
        Some("{}"),
        &[("X-Vault-Token", "kbs.wrong")],
    );
    assert_eq!((status, status2), (403, 403));
    assert_eq!(text, text2);
    // Bearer works as in Vault.
    let bearer = format!("Bearer {}", broker.token);
    let (status, _) = broker.raw(
        "POST",
        "transit/encrypt/k",
        Some(&json!({ "plaintext": "aGk=" }).to_string()),
        &[("Authorization", &bearer)],
    );
    assert_eq!(status, 200);

    // Still serving, and no 500 in the log.
    assert_eq!(broker.decrypt("k", &good), b"secret");
    assert!(!broker.log().contains("internal error"), "{}", broker.log());
}

#[test]
fn health_and_seal_status_answer_without_a_token() {
    let broker = Broker::dev();
    let (status, value) = broker.request_with("GET", "sys/health", None, &[]);
    assert_eq!(status, 200);
    assert_eq!(
        (value["initialized"].clone(), value["sealed"].clone()),
        (json!(true), json!(false))
    );
    let out = broker.bao_ok(&["status"]);
    assert!(out.contains("Sealed") && out.contains("false"), "{out}");
}

fn config_text(extra: &str) -> String {
    format!("state_dir = \"{{state}}\"\n{extra}\n[listener]\naddress = \"127.0.0.1:{{port}}\"\n")
}

#[test]
fn config_mode_initialises_once_and_keeps_data() {
    let state = crate::support::private_dir();
    let options = Options {
        config: Some(config_text("")),
        state_dir: Some(state.path().to_owned()),
        ..Options::default()
    };
    let mut first = Broker::start(options.clone());
    let token = first
        .printed_root_token()
        .expect("first start prints a root token");
    assert!(token.starts_with("kbs."), "{token}");
    let ct = first.encrypt("keep", b"durable");
    first.kill9();

    let second = Broker::start(options);
    assert!(
        second.printed_root_token().is_none(),
        "a second start must not initialise again"
    );
    let mut second = second;
    second.token = token;
    assert_eq!(second.decrypt("keep", &ct), b"durable");
    // The root key file was generated private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(state.path().join("root.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    drop(second);

    // A wrong root key leaves the broker sealed (503), not crashed.
    std::fs::write(state.path().join("root.key"), b64(&[9u8; 32])).unwrap();
    let sealed = Broker::start(Options {
        config: Some(config_text("")),
        state_dir: Some(state.path().to_owned()),
        ..Options::default()
    });
    let (status, value) = sealed.request_with("GET", "sys/health", None, &[]);
    assert_eq!(status, 503);
    assert_eq!(value["sealed"], true);
    let (status, _) = sealed.request(
        "POST",
        "transit/encrypt/keep",
        Some(&json!({ "plaintext": "aGk=" })),
    );
    assert_eq!(status, 503);
}

#[test]
fn config_mode_can_write_the_root_token_to_a_file() {
    let state = crate::support::private_dir();
    let token_file = state.path().join("root-token");
    let broker = Broker::start(Options {
        config: Some(config_text(&format!(
            "init_root_token_file = \"{}\"",
            token_file.display()
        ))),
        state_dir: Some(state.path().to_owned()),
        ..Options::default()
    });
    assert!(broker.printed_root_token().is_none());
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_owned();
    let mut broker = broker;
    broker.token = token;
    broker.bao_ok(&["write", "-f", "transit/keys/k"]);
}

#[test]
fn tls_listener_serves_bao_and_plain_http_on_public_addresses_is_refused() {
    let state = crate::support::private_dir();
    let cert = state.path().join("cert.pem");
    let key = state.path().join("key.pem");
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let port = crate::support::free_port();
    let text = format!(
        "state_dir = \"{}\"\n[listener]\naddress = \"127.0.0.1:{port}\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
        state.path().display(),
        cert.display(),
        key.display()
    );
    let config = state.path().join("kb.toml");
    std::fs::write(&config, text).unwrap();
    let mut child = std::process::Command::new(crate::support::keybroker_bin())
        .args(["server", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("https://127.0.0.1:{port}");
    let ready = eventually(Duration::from_secs(15), || {
        let out = crate::support::curl(&[
            "-s",
            "--cacert",
            cert.to_str().unwrap(),
            &format!("{url}/v1/sys/health"),
        ]);
        String::from_utf8_lossy(&out.stdout).contains("\"sealed\":false")
    });
    let mut stdout = String::new();
    use std::io::Read;
    let mut pipe = child.stdout.take().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    pipe.read_to_string(&mut stdout).unwrap();
    assert!(ready, "TLS listener did not answer");
    assert!(stdout.contains("Root Token: kbs."));

    // Plain HTTP on a non-loopback address is refused at start-up.
    let text = format!(
        "state_dir = \"{}\"\n[listener]\naddress = \"0.0.0.0:{port}\"\n",
        state.path().display()
    );
    std::fs::write(&config, text).unwrap();
    let out = std::process::Command::new(crate::support::keybroker_bin())
        .args(["server", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("listener.address"));
}

#[test]
fn automatic_rotation_follows_the_period() {
    let broker = Broker::start(Options {
        config: Some(config_text(
            "[timing]\nmin_auto_rotate_period = \"1s\"\nauto_rotate_check_interval = \"200ms\"",
        )),
        ..Options::default()
    });
    let (status, value) = broker.request(
        "POST",
        "transit/keys/r",
        Some(&json!({ "auto_rotate_period": "1s" })),
    );
    assert_eq!(status, 200, "{value}");
    assert!(eventually(Duration::from_secs(6), || {
        let (_, value) = broker.request("GET", "transit/keys/r", None);
        value["data"]["latest_version"].as_u64().unwrap_or(0) >= 3
    }));
    // Below the configured minimum is refused.
    let (status, _) = broker.request(
        "POST",
        "transit/keys/r/config",
        Some(&json!({ "auto_rotate_period": "500ms" })),
    );
    assert_eq!(status, 400);
}

/// The `bao` CLI's `key=value` list: a JSON list sent as a string, as `batch_input=…`.
fn batch_arg(items: &Value) -> String {
    format!("batch_input={items}")
}

/// Each batch item of encrypt and rewrap names its own `key_version` (Vault's
/// `BatchRequestItem`), checked against the key with Vault's messages; the top-level one
/// is only for a single item, through the `bao` CLI.
#[test]
fn bao_cli_batch_items_name_their_own_key_version() {
    let broker = Broker::dev();
    broker.bao_ok(&["write", "-f", "transit/keys/v"]);
    broker.bao_ok(&["write", "-f", "transit/keys/v/rotate"]);
    broker.bao_ok(&["write", "-f", "transit/keys/v/rotate"]);
    broker.bao_ok(&["write", "transit/keys/v/config", "min_encryption_version=2"]);
    let p = b64(b"per item");
    let items = json!([
        { "plaintext": p, "key_version": 2, "reference": "two" },
        { "plaintext": p, "reference": "latest" },
        { "plaintext": p, "key_version": 1, "reference": "too old" },
        { "plaintext": p, "key_version": 4, "reference": "too new" },
        { "plaintext": p, "key_version": "3", "reference": "three" },
        { "plaintext": p, "key_version": 0, "reference": "zero" },
    ]);
    // The top-level key_version does not apply to batch items, as in Vault.
    let out = broker.bao(&[
        "write",
        "-format=json",
        "transit/encrypt/v",
        &batch_arg(&items),
        "key_version=2",
        "partial_failure_response_code=207",
    ]);
    assert!(out.status.success(), "{out:?}");
    let value: Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = value["data"]["batch_results"].as_array().unwrap().clone();
    let versions: Vec<(Value, Value, Value)> = results
        .iter()
        .map(|r| {
            (
                r["reference"].clone(),
                r["key_version"].clone(),
                r["error"].clone(),
            )
        })
        .collect();
    assert_eq!(
        versions,
        vec![
            (json!("two"), json!(2), Value::Null),
            (json!("latest"), json!(3), Value::Null),
            (
                json!("too old"),
                Value::Null,
                json!("requested version for encryption is less than the minimum encryption key version")
            ),
            (
                json!("too new"),
                Value::Null,
                json!("requested version for encryption is higher than the latest key version")
            ),
            (json!("three"), json!(3), Value::Null),
            (json!("zero"), json!(3), Value::Null),
        ]
    );
    for result in results.iter().filter(|r| r["error"].is_null()) {
        let ciphertext = result["ciphertext"].as_str().unwrap();
        let version = result["key_version"].as_u64().unwrap();
        assert!(
            ciphertext.starts_with(&format!("vault:v{version}:")),
            "{result}"
        );
        assert_eq!(broker.decrypt("v", ciphertext), b"per item");
    }

    // Rewrap: each item to the version it names (a batch answers 200, as in Vault).
    let two = results[0]["ciphertext"].as_str().unwrap();
    let rewrap = json!([
        { "ciphertext": two, "reference": "latest" },
        { "ciphertext": two, "key_version": 2, "reference": "same" },
        { "ciphertext": two, "key_version": 1, "reference": "too old" },
    ]);
    let out = broker.bao(&[
        "write",
        "-format=json",
        "transit/rewrap/v",
        &batch_arg(&rewrap),
    ]);
    assert!(out.status.success(), "{out:?}");
    let value: Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = &value["data"]["batch_results"];
    assert_eq!(results[0]["key_version"], 3, "{value}");
    assert_eq!(results[1]["key_version"], 2, "{value}");
    assert_eq!(
        results[2]["error"],
        "requested version for encryption is less than the minimum encryption key version"
    );
    for result in results.as_array().unwrap().iter().take(2) {
        let ciphertext = result["ciphertext"].as_str().unwrap();
        assert_eq!(broker.decrypt("v", ciphertext), b"per item");
    }

    // A single item: the top-level key_version, refused with Vault's message.
    let refused = broker.bao(&[
        "write",
        "transit/encrypt/v",
        &format!("plaintext={p}"),
        "key_version=1",
    ]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("Code: 400")
            && stderr.contains(
                "requested version for encryption is less than the minimum encryption key version"
            ),
        "{stderr}"
    );
    let out = broker.bao_ok(&[
        "write",
        "transit/encrypt/v",
        &format!("plaintext={p}"),
        "key_version=2",
    ]);
    assert!(field(&out, "ciphertext").starts_with("vault:v2:"), "{out}");
}

/// Encrypt and rewrap batches against a real OpenBao: each item's `key_version`, the
/// top-level one ignored in a batch, every refusal, give the same status, the same errors
/// per item and the same versions.
#[test]
fn batch_key_versions_answer_as_openbao_does() {
    let broker = Broker::dev();
    let bao = OpenBao::start();
    let p = b64(b"kat");
    let setup: Vec<(&str, String, Value)> = vec![
        (
            "POST",
            "sys/mounts/transit".into(),
            json!({ "type": "transit" }),
        ),
        ("POST", "transit/keys/b".into(), json!({})),
        ("POST", "transit/keys/b/rotate".into(), json!({})),
        ("POST", "transit/keys/b/rotate".into(), json!({})),
        (
            "POST",
            "transit/keys/b/config".into(),
            json!({ "min_encryption_version": 2 }),
        ),
    ];
    let theirs = bao.batch(&setup);
    for ((method, path, body), (status, _)) in setup.iter().zip(&theirs).skip(1) {
        assert!(*status < 300, "OpenBao {method} {path}: {status}");
        let (ours, value) = broker.request(method, path, Some(body));
        assert!(ours < 300, "{method} {path}: {ours} {value}");
    }
    let item = |version: Option<Value>, reference: &str| {
        let mut item = json!({ "plaintext": p, "reference": reference });
        if let Some(version) = version {
            item["key_version"] = version;
        }
        item
    };
    let bodies = [
        json!({ "batch_input": [
            item(Some(json!(2)), "a"), item(None, "b"), item(Some(json!(3)), "c"),
            item(Some(json!(0)), "d"),
        ]}),
        // (A numeric string as an item's key_version is a 500 in OpenBao, which the
        // keybroker reads as the number: not compared.)
        // Refusals fail their item alone: 400, or the partial failure code.
        json!({ "batch_input": [item(Some(json!(1)), "old"), item(Some(json!(2)), "ok"), item(Some(json!(9)), "new")] }),
        json!({ "batch_input": [item(Some(json!(1)), "old"), item(Some(json!(2)), "ok")], "partial_failure_response_code": 207 }),
        json!({ "batch_input": [item(Some(json!(1)), "old"), item(Some(json!(4)), "new")] }),
        // The top-level key_version is ignored in a batch.
        json!({ "key_version": 1, "batch_input": [item(None, "top")] }),
        json!({ "key_version": 9, "batch_input": [item(Some(json!(2)), "top")] }),
        // A single item: the top-level one.
        json!({ "plaintext": p, "key_version": 2 }),
        json!({ "plaintext": p, "key_version": 1 }),
        json!({ "plaintext": p, "key_version": 4 }),
        json!({ "plaintext": p, "key_version": -1 }),
        json!({ "batch_input": [item(Some(json!(-1)), "negative"), item(Some(json!(2)), "ok")] }),
        json!({ "plaintext": p }),
    ];
    let cases: Vec<(&str, String, Value)> = bodies
        .iter()
        .map(|body| ("POST", "transit/encrypt/b".to_owned(), body.clone()))
        .collect();
    let theirs = bao.batch(&cases);
    // What an answer shows apart from its random ciphertexts: each result's version,
    // error and reference, and that a ciphertext names its version.
    let shape = |value: &Value| -> Value {
        let one = |r: &Value| {
            if let Some(ciphertext) = r["ciphertext"].as_str() {
                let prefix = format!("vault:v{}:", r["key_version"]);
                assert!(ciphertext.starts_with(&prefix), "{r}");
            }
            json!({ "key_version": r["key_version"], "error": r["error"], "reference": r["reference"] })
        };
        match value["data"]["batch_results"].as_array() {
            Some(results) => json!(results.iter().map(one).collect::<Vec<_>>()),
            None if value["data"].is_object() => one(&value["data"]),
            None => json!({ "errors": value["errors"] }),
        }
    };
    let mut refused = 0;
    let mut own_ciphertexts = Vec::new();
    for ((method, path, body), (their_status, their_body)) in cases.iter().zip(&theirs) {
        let (status, ours) = broker.request(method, path, Some(body));
        let what = format!("{method} {path} {body}: OpenBao {their_status} {their_body}, keybroker {status} {ours}");
        assert_eq!(status, *their_status, "{what}");
        assert_eq!(shape(&ours), shape(their_body), "{what}");
        if status != 200 {
            refused += 1;
        }
        if let Some(first) = ours["data"]["batch_results"][0]["ciphertext"].as_str() {
            own_ciphertexts.push((
                first.to_owned(),
                their_body["data"]["batch_results"][0]["ciphertext"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            ));
        }
    }
    assert_eq!(refused, 7);

    // Rewrap, each side with its own ciphertexts (of version 2).
    let (ours_v2, theirs_v2) = own_ciphertexts[0].clone();
    let rewrap = |ciphertext: &str| -> Vec<Value> {
        let item = |version: Option<i64>, reference: &str| {
            let mut item = json!({ "ciphertext": ciphertext, "reference": reference });
            if let Some(version) = version {
                item["key_version"] = json!(version);
            }
            item
        };
        vec![
            json!({ "batch_input": [item(None, "a"), item(Some(2), "b"), item(Some(3), "c")] }),
            json!({ "batch_input": [item(Some(1), "old"), item(Some(2), "ok"), item(Some(7), "new"), item(Some(-1), "negative")] }),
            json!({ "key_version": 2, "batch_input": [item(None, "top")] }),
            json!({ "ciphertext": ciphertext, "key_version": 2 }),
            json!({ "ciphertext": ciphertext, "key_version": 1 }),
        ]
    };
    let their_cases: Vec<(&str, String, Value)> = rewrap(&theirs_v2)
        .into_iter()
        .map(|body| ("POST", "transit/rewrap/b".to_owned(), body))
        .collect();
    let theirs = bao.batch(&their_cases);
    for (body, (their_status, their_body)) in rewrap(&ours_v2).iter().zip(&theirs) {
        let (status, ours) = broker.request("POST", "transit/rewrap/b", Some(body));
        let what = format!(
            "rewrap {body}: OpenBao {their_status} {their_body}, keybroker {status} {ours}"
        );
        assert_eq!(status, *their_status, "{what}");
        assert_eq!(shape(&ours), shape(their_body), "{what}");
    }
}

/// `transit/keys/:name/trim` through the `bao` CLI: versions below `min_available_version`
/// go for good (the key read says so, their ciphertexts no longer decrypt, and
/// `min_decryption_version` cannot go back below it), also after a restart.
#[test]
fn bao_cli_trims_key_versions_for_good() {
    let state = crate::support::private_dir();
    let options = Options {
        config: Some(config_text("")),
        state_dir: Some(state.path().to_owned()),
        ..Options::default()
    };
    let mut broker = Broker::start(options);
    broker.token = broker.printed_root_token().expect("a root token");
    broker.bao_ok(&["write", "-f", "transit/keys/t"]);
    let v1 = broker.encrypt("t", b"one");
    broker.bao_ok(&["write", "-f", "transit/keys/t/rotate"]);
    let v2 = broker.encrypt("t", b"two");
    broker.bao_ok(&["write", "-f", "transit/keys/t/rotate"]);
    let v3 = broker.encrypt("t", b"three");

    // Vault's preconditions: min encryption and decryption versions set, and not below.
    let refused = broker.bao(&["write", "transit/keys/t/trim", "min_available_version=2"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("Code: 400")
            && stderr.contains(
                "minimum available version cannot be set when minimum encryption version is not set"
            ),
        "{stderr}"
    );
    broker.bao_ok(&[
        "write",
        "transit/keys/t/config",
        "min_decryption_version=2",
        "min_encryption_version=2",
    ]);
    let out = broker.bao_ok(&[
        "write",
        "-format=json",
        "transit/keys/t/trim",
        "min_available_version=2",
    ]);
    let trimmed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(trimmed["data"]["min_available_version"], 2, "{trimmed}");

    let check = |broker: &Broker| {
        let out = broker.bao_ok(&["read", "-format=json", "transit/keys/t"]);
        let key: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(key["data"]["min_available_version"], 2, "{key}");
        assert_eq!(key["data"]["latest_version"], 3, "{key}");
        assert!(key["data"]["keys"].get("1").is_none(), "{key}");
        assert_eq!(broker.decrypt("t", &v2), b"two");
        assert_eq!(broker.decrypt("t", &v3), b"three");
        let refused = broker.bao(&["write", "transit/decrypt/t", &format!("ciphertext={v1}")]);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr.contains("Code: 400")
                && stderr
                    .contains("ciphertext or signature version is disallowed by policy (too old)"),
            "{stderr}"
        );
        let refused = broker.bao(&["write", "transit/keys/t/config", "min_decryption_version=1"]);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr.contains("Code: 400")
                && stderr.contains(
                    "min decryption version should not be less then min available version"
                ),
            "{stderr}"
        );
        let refused = broker.bao(&["write", "transit/keys/t/trim", "min_available_version=1"]);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr.contains("Code: 400")
                && stderr.contains("minimum available version cannot be decremented"),
            "{stderr}"
        );
        // Encryption with a trimmed version is refused as Vault refuses it.
        let (status, value) = broker.request(
            "POST",
            "transit/encrypt/t",
            Some(&json!({ "plaintext": b64(b"x"), "key_version": 1 })),
        );
        assert_eq!(status, 400, "{value}");
    };
    check(&broker);
    // The trim is durable: a restarted broker, with nothing cached, agrees.
    broker.restart();
    check(&broker);
}

/// Trimming a direct-mode key destroys the backend key each trimmed version had, and
/// only those; trimming an envelope key destroys none (its one backend key wraps every
/// version's data key).
#[test]
fn a_trim_destroys_the_backend_keys_of_trimmed_direct_versions_only() {
    let broker = Broker::dev();
    let deletes = || crate::support::backend_calls(&broker, "local", "delete_key");
    for (name, mode) in [("d", "direct"), ("e", "envelope")] {
        let (status, value) = broker.request(
            "POST",
            &format!("transit/keys/{name}"),
            Some(&json!({ "mode": mode })),
        );
        assert_eq!(status, 200, "{value}");
        for _ in 0..3 {
            broker.request("POST", &format!("transit/keys/{name}/rotate"), None);
        }
        broker.request(
            "POST",
            &format!("transit/keys/{name}/config"),
            Some(&json!({ "min_decryption_version": 4, "min_encryption_version": 4 })),
        );
    }
    let latest = broker.encrypt("d", b"kept");
    let before = deletes();
    let (status, value) = broker.request(
        "POST",
        "transit/keys/d/trim",
        Some(&json!({ "min_available_version": 3 })),
    );
    assert_eq!(status, 200, "{value}");
    assert_eq!(
        deletes() - before,
        2.0,
        "versions 1 and 2 each had a backend key"
    );
    let (status, value) = broker.request(
        "POST",
        "transit/keys/e/trim",
        Some(&json!({ "min_available_version": 4 })),
    );
    assert_eq!(status, 200, "{value}");
    assert_eq!(
        deletes() - before,
        2.0,
        "an envelope key keeps its backend key"
    );
    assert_eq!(broker.decrypt("d", &latest), b"kept");
    let kept = broker.encrypt("e", b"envelope");
    assert_eq!(broker.decrypt("e", &kept), b"envelope");
}

/// `transit/keys/:name/trim` against a real OpenBao: every precondition in Vault's order,
/// the trim itself, the key read after it, and the refusals it causes (decrypting a
/// trimmed version, lowering the min versions below it), with the same status and the same
/// `errors` or fields.
#[test]
fn trim_answers_as_openbao_does() {
    let broker = Broker::dev();
    let bao = OpenBao::with_transit();
    // Each side encrypts under version 1 first, for the decryption refused after the trim.
    let encrypt = (
        "POST",
        "transit/encrypt/t".to_owned(),
        json!({ "plaintext": b64(b"one") }),
    );
    let their_v1 = bao.batch(&[encrypt])[0].1["data"]["ciphertext"]
        .as_str()
        .unwrap()
        .to_owned();
    let our_v1 = broker.encrypt("t", b"one");

    let trim = |body: Value| ("POST", "transit/keys/t/trim".to_owned(), body);
    let config = |body: Value| ("POST", "transit/keys/t/config".to_owned(), body);
    let cases = |v1: &str| -> Vec<(&'static str, String, Value)> {
        vec![
            ("POST", "transit/keys/t/rotate".into(), json!({})),
            ("POST", "transit/keys/t/rotate".into(), json!({})),
            ("POST", "transit/keys/t/rotate".into(), json!({})),
            (
                "POST",
                "transit/keys/missing/trim".into(),
                json!({ "min_available_version": 1 }),
            ),
            trim(json!({})),
            trim(json!({ "min_available_version": 1 })),
            config(json!({ "min_encryption_version": 2 })),
            trim(json!({ "min_available_version": 3 })),
            trim(json!({ "min_available_version": 2 })),
            config(json!({ "min_decryption_version": 3, "min_encryption_version": 3 })),
            trim(json!({ "min_available_version": 0 })),
            trim(json!({ "min_available_version": -1 })),
            trim(json!({ "min_available_version": 4 })),
            trim(json!({ "min_available_version": 2 })),
            ("GET", "transit/keys/t".into(), Value::Null),
            trim(json!({ "min_available_version": 1 })),
            trim(json!({ "min_available_version": "3" })),
            ("GET", "transit/keys/t".into(), Value::Null),
            config(json!({ "min_decryption_version": 2 })),
            config(json!({ "min_encryption_version": 0 })),
            config(json!({ "min_decryption_version": 4, "min_encryption_version": 4 })),
            (
                "POST",
                "transit/decrypt/t".into(),
                json!({ "ciphertext": v1 }),
            ),
            (
                "POST",
                "transit/encrypt/t".into(),
                json!({ "plaintext": b64(b"x"), "key_version": 2 }),
            ),
            (
                "POST",
                "transit/encrypt/t".into(),
                json!({ "plaintext": b64(b"x"), "key_version": 3 }),
            ),
            trim(json!({ "min_available_version": 4 })),
            ("GET", "transit/keys/t".into(), Value::Null),
        ]
    };
    let theirs_cases = cases(&their_v1);
    let theirs = bao.batch(&theirs_cases);
    // The fields of a key both answer, and what an encryption answers apart from its
    // random ciphertext.
    let fields = |value: &Value| -> Value {
        let data = &value["data"];
        json!({
            "name": data["name"],
            "type": data["type"],
            "latest_version": data["latest_version"],
            "min_available_version": data["min_available_version"],
            "min_decryption_version": data["min_decryption_version"],
            "min_encryption_version": data["min_encryption_version"],
            "deletion_allowed": data["deletion_allowed"],
            "key_version": data["key_version"],
        })
    };
    let mut refused = 0;
    for ((method, path, body), (their_status, their_body)) in cases(&our_v1).iter().zip(&theirs) {
        let body = (!body.is_null()).then_some(body);
        let (status, ours) = broker.request(method, path, body);
        let what = format!("{method} {path} {body:?}: OpenBao {their_status} {their_body}, keybroker {status} {ours}");
        assert_eq!(status, *their_status, "{what}");
        if status == 200 {
            assert_eq!(fields(&ours), fields(their_body), "{what}");
        } else {
            assert_eq!(ours["errors"], their_body["errors"], "{what}");
            refused += 1;
        }
    }
    assert_eq!(refused, 14);
}

/// `transit/cache-config` through the `bao` CLI: 0 until written, Vault's refusal of a
/// size between 1 and 9, and the size kept across a restart.
#[test]
fn bao_cli_configures_the_cache_size() {
    let state = crate::support::private_dir();
    let options = Options {
        config: Some(config_text("")),
        state_dir: Some(state.path().to_owned()),
        ..Options::default()
    };
    let mut broker = Broker::start(options);
    broker.token = broker.printed_root_token().expect("a root token");
    let size = |broker: &Broker| -> Value {
        let out = broker.bao_ok(&["read", "-format=json", "transit/cache-config"]);
        serde_json::from_str::<Value>(&out).unwrap()["data"].clone()
    };
    assert_eq!(size(&broker), json!({ "size": 0 }));
    let out = broker.bao_ok(&["write", "-format=json", "transit/cache-config", "size=25"]);
    let written: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(written["data"], json!({ "size": 25 }));
    assert_eq!(size(&broker), json!({ "size": 25 }));
    for bad in ["size=5", "size=-1"] {
        let refused = broker.bao(&["write", "transit/cache-config", bad]);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr.contains("Code: 400")
                && stderr.contains("size must be 0 or a value greater or equal to 10"),
            "{bad}: {stderr}"
        );
    }
    let refused = broker.bao(&["write", "transit/cache-config", "size=many"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("Code: 400"), "{stderr}");
    assert_eq!(size(&broker), json!({ "size": 25 }));
    broker.restart();
    assert_eq!(size(&broker), json!({ "size": 25 }));
    // Encryption is unaffected.
    let ct = broker.encrypt("c", b"cached");
    assert_eq!(broker.decrypt("c", &ct), b"cached");
}

/// `transit/cache-config` against a real OpenBao: reads, writes, defaults and refusals,
/// with the same status and the same `data` or `errors`.
#[test]
fn cache_config_answers_as_openbao_does() {
    let broker = Broker::dev();
    let bao = OpenBao::with_transit();
    let read = ("GET", "transit/cache-config".to_owned(), Value::Null);
    let write = |body: Value| ("POST", "transit/cache-config".to_owned(), body);
    let cases = vec![
        read.clone(),
        write(json!({ "size": 10 })),
        read.clone(),
        write(json!({ "size": 5 })),
        write(json!({ "size": 9 })),
        write(json!({ "size": 1 })),
        write(json!({ "size": -1 })),
        read.clone(),
        write(json!({ "size": "30" })),
        read.clone(),
        write(json!({ "size": 1000 })),
        write(json!({})),
        read.clone(),
        write(json!({ "size": 0 })),
        read,
    ];
    let theirs = bao.batch(&cases);
    let mut refused = 0;
    for ((method, path, body), (their_status, their_body)) in cases.iter().zip(&theirs) {
        let body = (!body.is_null()).then_some(body);
        let (status, ours) = broker.request(method, path, body);
        let what = format!("{method} {path} {body:?}: OpenBao {their_status} {their_body}, keybroker {status} {ours}");
        assert_eq!(status, *their_status, "{what}");
        if status == 200 {
            assert_eq!(ours["data"], their_body["data"], "{what}");
        } else {
            assert_eq!(ours["errors"], their_body["errors"], "{what}");
            refused += 1;
        }
    }
    assert_eq!(refused, 4);
}
