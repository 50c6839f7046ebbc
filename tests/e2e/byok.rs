//! BYOK (issue 19): export, the mount's wrapping key, import and import_version, and
//! `exportable` in key config. Driven with the real `bao` CLI (`bao transit import` and
//! `import-version` fetch the wrapping key and wrap the key themselves), compared with a
//! real OpenBao: keys move both ways between the two and still open each other's
//! ciphertexts, and the same mistakes get the same answers.

use base64::{engine::general_purpose::STANDARD, Engine as _};
use rand::RngCore;
use serde_json::{json, Value};

use crate::{
    aws::{self, Kms, Timeouts},
    hsm::Hsm,
    support::{openbao::OpenBao, Broker, Options},
};

fn json_of(out: &str) -> Value {
    serde_json::from_str(out).unwrap()
}

fn random_key(len: usize) -> Vec<u8> {
    let mut key = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut key);
    key
}

/// The first error message of an answer.
fn message(body: &Value) -> &str {
    body["errors"][0].as_str().unwrap_or_default()
}

/// Exports `kind` of `key` (all versions, or `version`); (status, body).
fn export(broker: &Broker, kind: &str, key: &str, version: Option<&str>) -> (u16, Value) {
    let path = match version {
        Some(version) => format!("transit/export/{kind}/{key}/{version}"),
        None => format!("transit/export/{kind}/{key}"),
    };
    broker.request("GET", &path, None)
}

/// The one exported key of version `version`, decoded.
fn exported(broker: &Broker, kind: &str, key: &str, version: &str) -> Vec<u8> {
    let (status, body) = export(broker, kind, key, Some(version));
    assert_eq!(status, 200, "{body}");
    let keys = body["data"]["keys"].as_object().unwrap();
    assert_eq!(keys.len(), 1, "{body}");
    STANDARD
        .decode(keys.values().next().unwrap().as_str().unwrap())
        .unwrap()
}

fn assert_refused(answer: (u16, Value), expected: &str) {
    assert_eq!(answer.0, 400, "{answer:?}");
    assert!(
        message(&answer.1).contains(expected),
        "expected {expected:?} in {answer:?}"
    );
}

/// Export of each type on the local KEK, with Vault's answers' shape and its refusals.
#[test]
fn export_answers_each_type_as_vault_and_refuses_what_never_leaves() {
    let broker = Broker::dev();
    broker.bao_ok(&["write", "transit/keys/exp", "exportable=true"]);
    let ciphertext = broker.encrypt("exp", b"exported");
    for kind in ["encryption-key", "hmac-key"] {
        let (status, body) = export(&broker, kind, "exp", None);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["name"], "exp");
        assert_eq!(body["data"]["type"], "aes256-gcm96");
        let keys = body["data"]["keys"].as_object().unwrap();
        assert_eq!(keys.len(), 1, "{body}");
        assert_eq!(
            STANDARD.decode(keys["1"].as_str().unwrap()).unwrap().len(),
            32
        );
        for version in ["1", "v1", "latest"] {
            assert_eq!(
                exported(&broker, kind, "exp", version),
                STANDARD.decode(keys["1"].as_str().unwrap()).unwrap()
            );
        }
    }
    // The key and the HMAC key are two keys.
    assert_ne!(
        exported(&broker, "encryption-key", "exp", "1"),
        exported(&broker, "hmac-key", "exp", "1")
    );
    assert_refused(
        export(&broker, "encryption-key", "exp", Some("2")),
        "version does not exist or cannot be found",
    );
    assert_refused(
        export(&broker, "encryption-key", "exp", Some("x")),
        "invalid key version",
    );
    assert_refused(
        export(&broker, "private-key", "exp", None),
        "invalid export type: private-key",
    );
    assert_refused(
        export(&broker, "signing-key", "exp", None),
        "signing not supported for the key",
    );
    // The bao CLI reads it too.
    let read = json_of(&broker.bao_ok(&[
        "read",
        "-format=json",
        "transit/export/encryption-key/exp/1",
    ]));
    assert!(read["data"]["keys"]["1"].is_string(), "{read}");
    assert_eq!(broker.decrypt("exp", &ciphertext), b"exported");

    // An hmac key's hmac-key is its key, of its key_size.
    broker.bao_ok(&[
        "write",
        "transit/keys/mac",
        "type=hmac",
        "key_size=48",
        "exportable=true",
    ]);
    assert_eq!(exported(&broker, "hmac-key", "mac", "latest").len(), 48);
    assert_refused(
        export(&broker, "encryption-key", "mac", None),
        "encryption not supported for the key",
    );

    // Not exportable, missing.
    broker.bao_ok(&["write", "-f", "transit/keys/kept"]);
    for kind in ["encryption-key", "hmac-key"] {
        assert_refused(
            export(&broker, kind, "kept", None),
            "private key material is not exportable",
        );
    }
    let (status, body) = export(&broker, "encryption-key", "missing", None);
    assert_eq!(status, 404, "{body}");
    assert_refused(
        export(&broker, "public-key", "kept", None),
        "unknown key type aes256-gcm96 for export type public-key",
    );

    // Signing keys: their public keys are exported (as key read shows them); their private
    // keys only once they are exportable (`private_keys.rs` checks the formats).
    for key_type in ["ed25519", "ecdsa-p256"] {
        let name = format!("signer-{key_type}");
        broker.bao_ok(&[
            "write",
            &format!("transit/keys/{name}"),
            &format!("type={key_type}"),
        ]);
        let (status, body) = export(&broker, "public-key", &name, None);
        assert_eq!(status, 200, "{body}");
        let (_, read) = broker.request("GET", &format!("transit/keys/{name}"), None);
        assert_eq!(
            body["data"]["keys"]["1"].as_str().unwrap(),
            read["data"]["keys"]["1"]["public_key"]
                .as_str()
                .unwrap()
                .trim()
        );
        assert_refused(
            export(&broker, "signing-key", &name, Some("1")),
            "private key material is not exportable",
        );
        assert_refused(
            export(&broker, "hmac-key", &name, Some("1")),
            "private key material is not exportable",
        );
        broker.bao_ok(&[
            "write",
            &format!("transit/keys/{name}/config"),
            "exportable=true",
        ]);
        let (status, body) = export(&broker, "signing-key", &name, Some("1"));
        assert_eq!(status, 200, "{body}");
        assert!(body["data"]["keys"]["1"].is_string(), "{body}");
        assert_refused(
            export(&broker, "hmac-key", &name, Some("1")),
            "keeps no HMAC key in keybroker",
        );
    }
    // Direct mode: the backend holds the key.
    assert_refused(
        broker.request(
            "POST",
            "transit/keys/direct",
            Some(&json!({ "mode": "direct", "exportable": true })),
        ),
        "never leaves it",
    );
}

/// A key made exportable by config: one way, like Vault; versions made before in
/// keybroker's envelope cannot be exported, and are named; those made since can.
#[test]
fn config_makes_a_key_exportable_from_its_next_version_on() {
    let broker = Broker::dev();
    broker.bao_ok(&["write", "-f", "transit/keys/late"]);
    let v1 = broker.encrypt("late", b"before");
    broker.bao_ok(&["write", "transit/keys/late/config", "exportable=true"]);
    let (_, read) = broker.request("GET", "transit/keys/late", None);
    assert_eq!(read["data"]["exportable"], true, "{read}");
    assert_refused(
        export(&broker, "encryption-key", "late", None),
        "version(s) 1 were made in keybroker's envelope layout",
    );
    broker.bao_ok(&["write", "-f", "transit/keys/late/rotate"]);
    assert_eq!(exported(&broker, "encryption-key", "late", "2").len(), 32);
    assert_refused(
        export(&broker, "encryption-key", "late", Some("1")),
        "version(s) 1 were made",
    );
    // Both versions still decrypt.
    let v2 = broker.encrypt("late", b"after");
    assert_eq!(broker.decrypt("late", &v1), b"before");
    assert_eq!(broker.decrypt("late", &v2), b"after");
    // Vault never unsets it: false is ignored.
    broker.bao_ok(&[
        "write",
        "transit/keys/late/config",
        "exportable=false",
        "allow_plaintext_backup=true",
    ]);
    let (_, read) = broker.request("GET", "transit/keys/late", None);
    assert_eq!(read["data"]["exportable"], true, "{read}");
    assert_eq!(read["data"]["allow_plaintext_backup"], true, "{read}");
}

/// `bao transit import` and `import-version` against keybroker: the imported key is the
/// one exported back, encrypts and decrypts, rotates only with `allow_rotation`; and the
/// refusals.
#[test]
fn bao_cli_imports_keys_and_versions() {
    let broker = Broker::dev();
    // The wrapping key: made once, the same at every read.
    let (status, first) = broker.request("GET", "transit/wrapping_key", None);
    assert_eq!(status, 200, "{first}");
    let pem = first["data"]["public_key"].as_str().unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
    // RSA-4096: a 550-byte SubjectPublicKeyInfo.
    let der: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    assert_eq!(STANDARD.decode(der).unwrap().len(), 550, "{pem}");
    let (_, second) = broker.request("GET", "transit/wrapping_key", None);
    assert_eq!(first["data"], second["data"]);

    let key = random_key(32);
    broker.bao_ok(&[
        "transit",
        "import",
        "transit/keys/imported",
        &STANDARD.encode(&key),
        "exportable=true",
    ]);
    let (_, read) = broker.request("GET", "transit/keys/imported", None);
    assert_eq!(read["data"]["imported_key"], true, "{read}");
    assert_eq!(read["data"]["imported_key_allow_rotation"], false, "{read}");
    assert_eq!(read["data"]["exportable"], true, "{read}");
    assert_eq!(exported(&broker, "encryption-key", "imported", "1"), key);
    let ciphertext = broker.encrypt("imported", b"byok");
    assert_eq!(broker.decrypt("imported", &ciphertext), b"byok");
    assert_refused(
        broker.request("POST", "transit/keys/imported/rotate", Some(&json!({}))),
        "imported key imported does not allow rotation within Vault",
    );
    // As OpenBao, config takes a period for it all the same (its rotations then fail).
    let (status, body) = broker.request(
        "POST",
        "transit/keys/imported/config",
        Some(&json!({ "auto_rotate_period": "24h" })),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = broker.request(
        "POST",
        "transit/keys/imported/config",
        Some(&json!({ "auto_rotate_period": 0 })),
    );
    assert_eq!(status, 200, "{body}");
    // A new version, imported.
    let second_key = random_key(32);
    broker.bao_ok(&[
        "transit",
        "import-version",
        "transit/keys/imported",
        &STANDARD.encode(&second_key),
    ]);
    let (_, read) = broker.request("GET", "transit/keys/imported", None);
    assert_eq!(read["data"]["latest_version"], 2, "{read}");
    assert_eq!(
        exported(&broker, "encryption-key", "imported", "2"),
        second_key
    );
    assert_eq!(exported(&broker, "encryption-key", "imported", "1"), key);
    assert_eq!(broker.decrypt("imported", &ciphertext), b"byok");
    let v2 = broker.encrypt("imported", b"second");
    assert!(v2.starts_with("vault:v2:"), "{v2}");

    // With allow_rotation, it rotates to a key of keybroker's making.
    broker.bao_ok(&[
        "transit",
        "import",
        "transit/keys/rotating",
        &STANDARD.encode(&key),
        "type=aes256-gcm96",
        "allow_rotation=true",
        "exportable=true",
    ]);
    broker.bao_ok(&["write", "-f", "transit/keys/rotating/rotate"]);
    let rotated = exported(&broker, "encryption-key", "rotating", "2");
    assert_eq!(rotated.len(), 32);
    assert_ne!(rotated, key);

    // Other types: the key's length is the type's.
    broker.bao_ok(&[
        "transit",
        "import",
        "transit/keys/imported-128",
        &STANDARD.encode(random_key(16)),
        "type=aes128-gcm96",
    ]);
    let ciphertext = broker.encrypt("imported-128", b"short key");
    assert_eq!(broker.decrypt("imported-128", &ciphertext), b"short key");
    let out = broker.bao(&[
        "transit",
        "import",
        "transit/keys/imported-bad-size",
        &STANDARD.encode(random_key(32)),
        "type=aes128-gcm96",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("invalid key size 32 bytes for key type aes128-gcm96"),
        "{out:?}"
    );

    // Refusals.
    let out = broker.bao(&[
        "transit",
        "import",
        "transit/keys/imported",
        &STANDARD.encode(&key),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("the import path cannot be used with an existing key"),
        "{out:?}"
    );
    // A ciphertext that does not open: one message, whatever the cause.
    let long_garbage = STANDARD.encode(random_key(600));
    let mut flipped = STANDARD.decode(&long_garbage).unwrap();
    flipped[599] ^= 1;
    let mut messages = Vec::new();
    for ciphertext in [
        long_garbage.clone(),
        STANDARD.encode(&flipped),
        "%%%".to_owned(),
    ] {
        let (status, body) = broker.request(
            "POST",
            "transit/keys/garbage/import",
            Some(&json!({ "ciphertext": ciphertext })),
        );
        assert_eq!(status, 400, "{body}");
        messages.push(message(&body).to_owned());
    }
    assert!(messages.iter().all(|m| m == &messages[0]), "{messages:?}");
    assert!(
        messages[0].starts_with("failed to decrypt the imported key"),
        "{messages:?}"
    );
    assert_refused(
        broker.request(
            "POST",
            "transit/keys/garbage/import",
            Some(&json!({ "ciphertext": STANDARD.encode([0u8; 100]) })),
        ),
        "provided ciphertext is too short",
    );
    // An asymmetric import's ciphertext opens the same way (`private_keys.rs` imports some).
    assert_refused(
        broker.request(
            "POST",
            "transit/keys/signer/import",
            Some(&json!({ "ciphertext": long_garbage, "type": "ed25519" })),
        ),
        &messages[0],
    );
    assert_refused(
        broker.request(
            "POST",
            "transit/keys/garbage/import",
            Some(&json!({ "ciphertext": long_garbage, "hash_function": "MD5" })),
        ),
        "unknown hash function: MD5",
    );
    broker.bao_ok(&["write", "-f", "transit/keys/native"]);
    assert_refused(
        broker.request(
            "POST",
            "transit/keys/native/import_version",
            Some(&json!({ "ciphertext": long_garbage })),
        ),
        "the import_version endpoint can only be used with an imported key",
    );
    let (status, listed) = broker.request("LIST", "transit/keys", None);
    assert_eq!(status, 200);
    assert!(
        !listed["data"]["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "garbage" || n == "signer" || n == "imported-bad-size"),
        "{listed}"
    );
}

/// On an HSM, keys can be imported (the HSM's key wraps them) but never made exportable.
#[test]
fn hsm_held_keys_import_but_never_export() {
    let hsm = Hsm::new();
    hsm.standard_dropin("");
    let broker = hsm.broker();
    let key = random_key(32);
    broker.bao_ok(&[
        "transit",
        "import",
        "transit/keys/on-hsm",
        &STANDARD.encode(&key),
        "backend=hsm",
    ]);
    let (_, read) = broker.request("GET", "transit/keys/on-hsm", None);
    assert_eq!(read["data"]["backend"], "hsm", "{read}");
    assert_eq!(read["data"]["imported_key"], true, "{read}");
    let ciphertext = broker.encrypt("on-hsm", b"hsm-wrapped");
    assert_eq!(broker.decrypt("on-hsm", &ciphertext), b"hsm-wrapped");
    assert_refused(
        export(&broker, "encryption-key", "on-hsm", None),
        "private key material is not exportable: backend instance \"hsm\" keeps its keys' \
         material outside the broker",
    );
    // Direct mode on the HSM: the HSM holds the key itself.
    broker.bao_ok(&[
        "write",
        "transit/keys/hsm-direct",
        "backend=hsm",
        "mode=direct",
    ]);
    assert_refused(
        export(&broker, "encryption-key", "hsm-direct", None),
        "private key material is not exportable: key type aes256-gcm96 in mode=direct is \
         held by its backend",
    );
    // A signing key in the HSM: its public key is exported, as key read shows it.
    broker.bao_ok(&[
        "write",
        "transit/keys/hsm-signer",
        "backend=hsm",
        "type=ecdsa-p256",
    ]);
    let (status, body) = export(&broker, "public-key", "hsm-signer", Some("latest"));
    assert_eq!(status, 200, "{body}");
    let (_, read) = broker.request("GET", "transit/keys/hsm-signer", None);
    assert_eq!(
        body["data"]["keys"]["1"].as_str().unwrap(),
        read["data"]["keys"]["1"]["public_key"]
            .as_str()
            .unwrap()
            .trim()
    );
    assert!(
        body["data"]["keys"]["1"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----"),
        "{body}"
    );
    for answer in [
        broker.request(
            "POST",
            "transit/keys/on-hsm/config",
            Some(&json!({ "exportable": true })),
        ),
        broker.request(
            "POST",
            "transit/keys/hsm-exportable",
            Some(&json!({ "backend": "hsm", "exportable": true })),
        ),
    ] {
        assert_refused(
            answer,
            "backend instance \"hsm\" keeps its keys' material outside",
        );
    }
    let out = broker.bao(&[
        "transit",
        "import",
        "transit/keys/hsm-import-exportable",
        &STANDARD.encode(&key),
        "backend=hsm",
        "exportable=true",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("backend instance \"hsm\" keeps its keys' material outside"),
        "{out:?}"
    );
}

/// On AWS KMS (moto), as on the HSM: an imported key is wrapped by the KMS key and
/// serves; nothing there is ever exportable.
#[test]
fn kms_held_keys_import_but_never_export() {
    let kms = Kms::new();
    let broker = Broker::start(Options {
        plugin_dir: Some(kms.plugins.path().to_owned()),
        env: Kms::env(),
        ..Options::default()
    });
    kms.dropin("aws", Timeouts::Generous, "", "");
    aws::reload(&broker);
    broker.bao_ok(&[
        "transit",
        "import",
        "transit/keys/on-kms",
        &STANDARD.encode(random_key(32)),
        "backend=aws",
    ]);
    let ciphertext = broker.encrypt("on-kms", b"kms-wrapped");
    assert_eq!(broker.decrypt("on-kms", &ciphertext), b"kms-wrapped");
    assert_refused(
        export(&broker, "encryption-key", "on-kms", None),
        "private key material is not exportable: backend instance \"aws\" keeps its keys' \
         material outside the broker",
    );
    assert_refused(
        broker.request(
            "POST",
            "transit/keys/kms-exportable",
            Some(&json!({ "backend": "aws", "exportable": true })),
        ),
        "backend instance \"aws\" keeps its keys' material outside",
    );
}

/// Known answers, both ways: a key exported from OpenBao and imported into keybroker opens
/// OpenBao's ciphertexts (with and without associated data), and a keybroker key exported
/// and imported into OpenBao opens keybroker's.
#[test]
fn keys_move_between_openbao_and_keybroker_and_open_each_others_ciphertexts() {
    let broker = Broker::dev();
    let openbao = OpenBao::with_transit();
    let plaintext = STANDARD.encode(b"known answer");
    for key_type in ["aes256-gcm96", "aes128-gcm96", "chacha20-poly1305"] {
        // (a) OpenBao → keybroker.
        let name = format!("from-bao-{key_type}");
        let answers = openbao.batch(&[
            (
                "POST",
                format!("transit/keys/{name}"),
                json!({ "type": key_type, "exportable": true }),
            ),
            (
                "POST",
                format!("transit/encrypt/{name}"),
                json!({ "plaintext": plaintext }),
            ),
            (
                "POST",
                format!("transit/encrypt/{name}"),
                json!({ "plaintext": plaintext, "associated_data": "YWQ=" }),
            ),
            (
                "GET",
                format!("transit/export/encryption-key/{name}/1"),
                json!({}),
            ),
        ]);
        for (status, body) in &answers {
            assert!(*status == 200 || *status == 204, "{answers:?}");
            assert!(body.is_object() || body.is_null());
        }
        let bare = answers[1].1["data"]["ciphertext"].as_str().unwrap();
        let with_ad = answers[2].1["data"]["ciphertext"].as_str().unwrap();
        let key = answers[3].1["data"]["keys"]["1"].as_str().unwrap();
        broker.bao_ok(&[
            "transit",
            "import",
            &format!("transit/keys/{name}"),
            key,
            &format!("type={key_type}"),
        ]);
        let (status, body) = broker.request(
            "POST",
            &format!("transit/decrypt/{name}"),
            Some(&json!({ "ciphertext": bare })),
        );
        assert_eq!(status, 200, "{key_type}: {body}");
        assert_eq!(body["data"]["plaintext"], plaintext.as_str());
        let (status, body) = broker.request(
            "POST",
            &format!("transit/decrypt/{name}"),
            Some(&json!({ "ciphertext": with_ad, "associated_data": "YWQ=" })),
        );
        assert_eq!(status, 200, "{key_type}: {body}");
        assert_eq!(body["data"]["plaintext"], plaintext.as_str());
        // Without its associated data it does not open.
        let (status, _) = broker.request(
            "POST",
            &format!("transit/decrypt/{name}"),
            Some(&json!({ "ciphertext": with_ad })),
        );
        assert_eq!(status, 400, "{key_type}");

        // (b) keybroker → OpenBao.
        let name = format!("from-kb-{key_type}");
        broker.bao_ok(&[
            "write",
            &format!("transit/keys/{name}"),
            &format!("type={key_type}"),
            "exportable=true",
        ]);
        let bare = broker.encrypt(&name, b"known answer");
        let (status, body) = broker.request(
            "POST",
            &format!("transit/encrypt/{name}"),
            Some(&json!({ "plaintext": plaintext, "associated_data": "YWQ=" })),
        );
        assert_eq!(status, 200, "{body}");
        let with_ad = body["data"]["ciphertext"].as_str().unwrap().to_owned();
        let key = STANDARD.encode(exported(&broker, "encryption-key", &name, "1"));
        openbao.bao_ok(&[
            "transit",
            "import",
            &format!("transit/keys/{name}"),
            &key,
            &format!("type={key_type}"),
        ]);
        let answers = openbao.batch(&[
            (
                "POST",
                format!("transit/decrypt/{name}"),
                json!({ "ciphertext": bare }),
            ),
            (
                "POST",
                format!("transit/decrypt/{name}"),
                json!({ "ciphertext": with_ad, "associated_data": "YWQ=" }),
            ),
        ]);
        for (status, body) in &answers {
            assert_eq!(*status, 200, "{key_type}: {answers:?}");
            assert_eq!(body["data"]["plaintext"], plaintext.as_str());
        }
    }
}

/// An `hmac` key of the same material, imported into both: the same HMAC key exported
/// back from each.
#[test]
fn hmac_keys_imported_into_both_export_the_same_key() {
    let broker = Broker::dev();
    let openbao = OpenBao::with_transit();
    let key = STANDARD.encode(random_key(40));
    let args = [
        "transit",
        "import",
        "transit/keys/mac",
        key.as_str(),
        "type=hmac",
        "exportable=true",
    ];
    broker.bao_ok(&args);
    openbao.bao_ok(&args);
    let (status, ours) = export(&broker, "hmac-key", "mac", None);
    assert_eq!(status, 200, "{ours}");
    let (status, theirs) = openbao.request("GET", "transit/export/hmac-key/mac", json!({}));
    assert_eq!(status, 200, "{theirs}");
    assert_eq!(ours["data"], theirs["data"]);
    assert_eq!(ours["data"]["keys"]["1"], key.as_str());
    let (_, read) = broker.request("GET", "transit/keys/mac", None);
    assert_eq!(read["data"]["key_size"], 40, "{read}");
}

/// An `hmac` key of the same material, imported into both: `transit/hmac/<name>` answers
/// byte for byte alike.
#[test]
fn hmac_keys_imported_into_both_answer_the_same_hmacs() {
    let broker = Broker::dev();
    let openbao = OpenBao::with_transit();
    let key = STANDARD.encode(random_key(32));
    let args = [
        "transit",
        "import",
        "transit/keys/mac",
        key.as_str(),
        "type=hmac",
    ];
    broker.bao_ok(&args);
    openbao.bao_ok(&args);
    let input = STANDARD.encode(b"the same input");
    for algorithm in ["", "/sha2-512"] {
        let path = format!("transit/hmac/mac{algorithm}");
        let body = json!({ "input": input });
        let (status, ours) = broker.request("POST", &path, Some(&body));
        assert_eq!(status, 200, "{ours}");
        let (status, theirs) = openbao.request("POST", &path, body);
        assert_eq!(status, 200, "{theirs}");
        assert_eq!(ours["data"]["hmac"], theirs["data"]["hmac"], "{path}");
    }
}

/// The same mistakes on export and import, to keybroker and to OpenBao: the same
/// statuses and messages. Where OpenBao answers a caller's mistake with a 500, keybroker
/// answers 400 with OpenBao's message (user errors are 4xx).
#[test]
fn export_and_import_refusals_answer_as_openbao_does() {
    let broker = Broker::dev();
    let openbao = OpenBao::with_transit();
    let garbage = STANDARD.encode(random_key(600));
    let setup: Vec<(&str, String, Value)> = vec![
        ("POST", "transit/keys/plain".into(), json!({})),
        (
            "POST",
            "transit/keys/exp".into(),
            json!({ "exportable": true }),
        ),
        (
            "POST",
            "transit/keys/mac".into(),
            json!({ "type": "hmac", "key_size": 32, "exportable": true }),
        ),
    ];
    for (method, path, body) in &setup {
        let (status, answer) = broker.request(method, path, Some(body));
        assert_eq!(status, 200, "{path}: {answer}");
    }
    for answer in openbao.batch(&setup) {
        assert!(answer.0 < 300, "{answer:?}");
    }
    let key = STANDARD.encode(random_key(32));
    for target in [None, Some(&openbao)] {
        let args = ["transit", "import", "transit/keys/imported", key.as_str()];
        match target {
            None => drop(broker.bao_ok(&args)),
            Some(openbao) => drop(openbao.bao_ok(&args)),
        }
    }
    let requests: Vec<(&str, String, Value)> = vec![
        (
            "GET",
            "transit/export/encryption-key/plain".into(),
            json!({}),
        ),
        ("GET", "transit/export/hmac-key/plain/1".into(), json!({})),
        ("GET", "transit/export/signing-key/exp".into(), json!({})),
        ("GET", "transit/export/private-key/exp".into(), json!({})),
        (
            "GET",
            "transit/export/encryption-key/exp/7".into(),
            json!({}),
        ),
        (
            "GET",
            "transit/export/encryption-key/exp/x".into(),
            json!({}),
        ),
        ("GET", "transit/export/encryption-key/mac".into(), json!({})),
        (
            "GET",
            "transit/export/encryption-key/missing".into(),
            json!({}),
        ),
        (
            "POST",
            "transit/keys/new/import".into(),
            json!({ "ciphertext": garbage, "type": "aes192-gcm96" }),
        ),
        (
            "POST",
            "transit/keys/new/import".into(),
            json!({ "ciphertext": garbage, "convergent_encryption": true }),
        ),
        (
            "POST",
            "transit/keys/new/import".into(),
            json!({ "ciphertext": garbage, "auto_rotate_period": "2h" }),
        ),
        (
            "POST",
            "transit/keys/new/import".into(),
            json!({ "ciphertext": garbage, "hash_function": "MD5" }),
        ),
        (
            "POST",
            "transit/keys/new/import".into(),
            json!({ "ciphertext": STANDARD.encode([1u8; 64]) }),
        ),
        ("POST", "transit/keys/new/import".into(), json!({})),
        (
            "POST",
            "transit/keys/plain/import".into(),
            json!({ "ciphertext": garbage }),
        ),
        (
            "POST",
            "transit/keys/plain/import_version".into(),
            json!({ "ciphertext": garbage }),
        ),
        (
            "POST",
            "transit/keys/missing/import_version".into(),
            json!({ "ciphertext": garbage }),
        ),
        ("POST", "transit/keys/imported/rotate".into(), json!({})),
    ];
    let theirs = openbao.batch(&requests);
    for ((method, path, body), (their_status, their_body)) in requests.iter().zip(theirs) {
        let (our_status, our_body) = broker.request(method, path, Some(body));
        let context = format!(
            "{method} {path} {body}: keybroker {our_status} {our_body}, OpenBao \
             {their_status} {their_body}"
        );
        if their_status >= 500 {
            assert_eq!(our_status, 400, "{context}");
            assert!(!message(&our_body).is_empty(), "{context}");
            assert!(
                message(&their_body).contains(message(&our_body)),
                "{context}"
            );
        } else {
            assert_eq!(our_status, their_status, "{context}");
            assert_eq!(our_body, their_body, "{context}");
        }
    }
    let (status, ours) = broker.request("GET", "transit/wrapping_key", None);
    assert_eq!(status, 200);
    let (status, theirs) = openbao.request("GET", "transit/wrapping_key", json!({}));
    assert_eq!(status, 200);
    let keys = |v: &Value| {
        v["data"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&ours), keys(&theirs));
}
