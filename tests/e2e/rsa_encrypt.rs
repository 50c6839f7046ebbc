//! RSA keys encrypt and decrypt (issue 19, Vault's RSA-OAEP): the broker encrypts with the
//! version's public key (OAEP with SHA-256 by default, PKCS #1 v1.5 with
//! `padding_scheme=pkcs1v15`), and the backend that holds the private key decrypts. Driven
//! with the real `bao` CLI on the local KEK, an HSM (SoftHSM2) and the Azure Key Vault
//! fake; AWS KMS, whose RSA keys only sign, is refused at encryption, naming the instance
//! and the type; and the answers are compared with a real OpenBao's.

use base64::{engine::general_purpose::STANDARD, Engine as _};
use serde_json::{json, Value};

use crate::{
    aws::{Kms, Timeouts},
    azure,
    hsm::Hsm,
    support::{openbao::OpenBao, Broker, Options},
};

/// The payload of a `vault:vN:` ciphertext.
fn payload(ciphertext: &str) -> Vec<u8> {
    STANDARD
        .decode(ciphertext.rsplit(':').next().unwrap())
        .unwrap()
}

fn json_of(out: &str) -> Value {
    serde_json::from_str(out).unwrap()
}

/// The first error of a refused request.
fn error_of(body: &Value) -> String {
    body["errors"][0].as_str().unwrap_or_default().to_owned()
}

/// What an RSA key of `backend` does with the `bao` CLI: its read says it encrypts and
/// decrypts; encrypt and decrypt with OAEP (the default) and PKCS #1 v1.5, single and in a
/// batch with a padding per item; a ciphertext only opens with its own padding; refusals
/// of an unknown padding, of associated data, of a plaintext too long for the key and of a
/// corrupted ciphertext; rotation, with the old version still decrypting, rewrap and a
/// data key; and `padding_scheme` refused on a symmetric key.
fn check_rsa_encryption(broker: &Broker, backend: &str, paddings: &[&str]) {
    let key = format!("{backend}-rsa");
    broker.bao_ok(&[
        "write",
        &format!("transit/keys/{key}"),
        "type=rsa-2048",
        &format!("backend={backend}"),
    ]);
    let read = json_of(&broker.bao_ok(&["read", "-format=json", &format!("transit/keys/{key}")]));
    for field in [
        "supports_encryption",
        "supports_decryption",
        "supports_signing",
    ] {
        assert_eq!(read["data"][field], true, "{field}: {read}");
    }

    let secret = STANDARD.encode(b"the quick brown fox");
    let encrypt = |padding: Option<&str>| -> String {
        let mut args = vec![
            "write".to_owned(),
            "-format=json".to_owned(),
            format!("transit/encrypt/{key}"),
            format!("plaintext={secret}"),
        ];
        if let Some(padding) = padding {
            args.push(format!("padding_scheme={padding}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = json_of(&broker.bao_ok(&args));
        let ciphertext = out["data"]["ciphertext"].as_str().unwrap().to_owned();
        let version = out["data"]["key_version"].as_u64().unwrap();
        assert!(
            ciphertext.starts_with(&format!("vault:v{version}:")),
            "{out}"
        );
        ciphertext
    };
    let decrypt = |ciphertext: &str, padding: Option<&str>| -> (u16, Value) {
        let mut body = json!({ "ciphertext": ciphertext });
        if let Some(padding) = padding {
            body["padding_scheme"] = json!(padding);
        }
        broker.request("POST", &format!("transit/decrypt/{key}"), Some(&body))
    };

    for padding in paddings {
        let explicit = encrypt(Some(padding));
        assert!(explicit.starts_with("vault:v1:"), "{explicit}");
        assert_eq!(payload(&explicit).len(), 256, "{padding}: {explicit}");
        let out = json_of(&broker.bao_ok(&[
            "write",
            "-format=json",
            &format!("transit/decrypt/{key}"),
            &format!("ciphertext={explicit}"),
            &format!("padding_scheme={padding}"),
        ]));
        assert_eq!(out["data"]["plaintext"], secret.as_str(), "{padding}");
    }
    if paddings.contains(&"oaep") {
        // OAEP is the default both ways; a ciphertext does not open under the other padding.
        let default = encrypt(None);
        assert_eq!(broker.decrypt(&key, &default), b"the quick brown fox");
        if paddings.contains(&"pkcs1v15") {
            let pkcs1 = encrypt(Some("pkcs1v15"));
            let (status, body) = decrypt(&pkcs1, None);
            assert_eq!(
                status, 400,
                "a PKCS #1 v1.5 ciphertext opened as OAEP: {body}"
            );
        }
    }
    let usual = paddings[0];

    // An unknown padding, on encrypt and decrypt.
    for operation in ["encrypt", "decrypt"] {
        let (status, body) = broker.request(
            "POST",
            &format!("transit/{operation}/{key}"),
            Some(&json!({
                "plaintext": secret,
                "ciphertext": "vault:v1:AAAA",
                "padding_scheme": "bogus",
            })),
        );
        assert_eq!(status, 400, "{operation}: {body}");
        assert_eq!(
            error_of(&body),
            "padding_scheme argument invalid: unknown padding scheme: bogus",
            "{operation}"
        );
    }
    // Associated data: Vault's message.
    let (status, body) = broker.request(
        "POST",
        &format!("transit/encrypt/{key}"),
        Some(&json!({ "plaintext": secret, "associated_data": "YWQ=", "padding_scheme": usual })),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        error_of(&body),
        "'[0].associated_data' provided for non-AEAD cipher suite rsa-2048"
    );
    // Too long for a 2048-bit key with OAEP-SHA256 (190 bytes at most).
    let (status, body) = broker.request(
        "POST",
        &format!("transit/encrypt/{key}"),
        Some(&json!({ "plaintext": STANDARD.encode([7u8; 300]), "padding_scheme": usual })),
    );
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).contains("too long"), "{body}");
    // A corrupted ciphertext: a flipped byte under OAEP (whose check a random block passes
    // with probability 2^-256); under PKCS #1 v1.5, which a random block passes once in
    // about 65,536 tries, a byte short, which never decrypts.
    let good = encrypt(Some(usual));
    let mut bytes = payload(&good);
    if usual == "oaep" {
        bytes[100] ^= 0x55;
    } else {
        bytes.pop();
    }
    let (status, body) = decrypt(
        &format!("vault:v1:{}", STANDARD.encode(&bytes)),
        Some(usual),
    );
    assert_eq!(status, 400, "corrupted: {body}");

    // A batch, with a padding per item and one bad item.
    let mut items = vec![json!({ "plaintext": secret, "reference": "first" })];
    for padding in paddings {
        items.push(json!({ "plaintext": STANDARD.encode(padding), "padding_scheme": padding }));
    }
    items.push(json!({ "plaintext": secret, "padding_scheme": "pss" }));
    let encrypt_items: Vec<Value> = if paddings.contains(&"oaep") {
        items
    } else {
        items
            .into_iter()
            .map(|mut item| {
                if item.get("padding_scheme").is_none() {
                    item["padding_scheme"] = json!(usual);
                }
                item
            })
            .collect()
    };
    let (status, body) = broker.request(
        "POST",
        &format!("transit/encrypt/{key}"),
        Some(&json!({ "batch_input": encrypt_items })),
    );
    assert_eq!(status, 400, "a batch with a failed item: {body}");
    let results = body["data"]["batch_results"].as_array().unwrap().clone();
    assert_eq!(results.len(), paddings.len() + 2, "{body}");
    assert_eq!(results[0]["reference"], "first");
    assert!(results.last().unwrap()["error"]
        .as_str()
        .unwrap()
        .contains("unknown padding scheme: pss"));
    let decrypt_items: Vec<Value> = encrypt_items
        .iter()
        .zip(&results)
        .take(paddings.len() + 1)
        .map(|(item, result)| {
            let mut decrypt = json!({ "ciphertext": result["ciphertext"] });
            if let Some(padding) = item.get("padding_scheme") {
                decrypt["padding_scheme"] = padding.clone();
            }
            decrypt
        })
        .collect();
    let (status, body) = broker.request(
        "POST",
        &format!("transit/decrypt/{key}"),
        Some(&json!({ "batch_input": decrypt_items })),
    );
    assert_eq!(status, 200, "{body}");
    let opened = body["data"]["batch_results"].as_array().unwrap();
    assert_eq!(opened[0]["plaintext"], secret.as_str(), "{body}");
    for (i, padding) in paddings.iter().enumerate() {
        assert_eq!(
            opened[i + 1]["plaintext"],
            STANDARD.encode(padding).as_str(),
            "{body}"
        );
    }

    // Rotation: v2 encrypts, v1 still decrypts, rewrap moves v1 to v2 (default padding).
    broker.bao_ok(&["write", "-f", &format!("transit/keys/{key}/rotate")]);
    if paddings.contains(&"oaep") {
        let v1 = encrypt(None);
        let (status, body) = broker.request(
            "POST",
            &format!("transit/encrypt/{key}"),
            Some(&json!({ "plaintext": secret })),
        );
        assert_eq!(status, 200, "{body}");
        let v2 = body["data"]["ciphertext"].as_str().unwrap();
        assert!(v2.starts_with("vault:v2:"), "{v2}");
        assert_eq!(broker.decrypt(&key, v2), b"the quick brown fox");
        assert_eq!(broker.decrypt(&key, &v1), b"the quick brown fox");
        let rewrapped = json_of(&broker.bao_ok(&[
            "write",
            "-format=json",
            &format!("transit/rewrap/{key}"),
            &format!("ciphertext={v1}"),
        ]));
        let rewrapped = rewrapped["data"]["ciphertext"].as_str().unwrap();
        assert!(rewrapped.starts_with("vault:v2:"), "{rewrapped}");
        assert_eq!(broker.decrypt(&key, rewrapped), b"the quick brown fox");
        let data_key = json_of(&broker.bao_ok(&[
            "write",
            "-format=json",
            "-f",
            &format!("transit/datakey/plaintext/{key}"),
        ]));
        let plaintext = STANDARD
            .decode(data_key["data"]["plaintext"].as_str().unwrap())
            .unwrap();
        assert_eq!(plaintext.len(), 32);
        assert_eq!(
            broker.decrypt(&key, data_key["data"]["ciphertext"].as_str().unwrap()),
            plaintext
        );
    }

    // `padding_scheme` on a symmetric key: Vault's refusal.
    broker.bao_ok(&["write", "-f", &format!("transit/keys/{backend}-aes")]);
    let (status, body) = broker.request(
        "POST",
        &format!("transit/encrypt/{backend}-aes"),
        Some(&json!({ "plaintext": secret, "padding_scheme": "oaep" })),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        error_of(&body),
        "padding_scheme argument invalid: unsupported key type aes256-gcm96 for padding scheme"
    );
}

/// An RSA key on an instance that cannot decrypt with it: made and signing as before, but
/// encrypting is refused with a 400 naming the instance and the type (nothing is made that
/// could not be decrypted), and so is decrypting.
fn check_refused(broker: &Broker, backend: &str) {
    let key = format!("{backend}-rsa-refused");
    let (status, body) = broker.request(
        "POST",
        &format!("transit/keys/{key}"),
        Some(&json!({ "type": "rsa-2048", "backend": backend })),
    );
    assert_eq!(status, 200, "creating an RSA key on {backend}: {body}");
    let (status, body) = broker.request(
        "POST",
        &format!("transit/sign/{key}"),
        Some(&json!({ "input": "aGk=" })),
    );
    assert_eq!(status, 200, "signing on {backend}: {body}");
    for (operation, body) in [
        ("encrypt", json!({ "plaintext": "aGk=" })),
        (
            "decrypt",
            json!({ "ciphertext": format!("vault:v1:{}", STANDARD.encode([1u8; 256])) }),
        ),
    ] {
        let (status, answer) =
            broker.request("POST", &format!("transit/{operation}/{key}"), Some(&body));
        assert_eq!(status, 400, "{operation} on {backend}: {answer}");
        let message = error_of(&answer);
        assert!(
            message.contains(&format!("backend instance \"{backend}\""))
                && message.contains("rsa-2048"),
            "{operation} on {backend}: {message}"
        );
    }
}

#[test]
fn bao_cli_encrypts_and_decrypts_with_rsa_on_the_local_kek() {
    let broker = Broker::dev();
    check_rsa_encryption(&broker, "local", &["oaep", "pkcs1v15"]);
}

#[test]
fn aws_kms_rsa_keys_only_sign_and_encryption_is_refused_naming_the_instance() {
    let kms = Kms::new();
    kms.dropin("aws", Timeouts::Generous, "", "");
    let broker = Broker::start(Options {
        plugin_dir: Some(kms.plugins.path().to_owned()),
        env: Kms::env(),
        ..Options::default()
    });
    check_refused(&broker, "aws");
}

/// The same requests to keybroker and to a real OpenBao: an RSA key's read, encryption
/// (single, batch, empty and longest plaintexts, `context`, which both ignore), the
/// refusal of associated data, and decryption of what each side made, on that side; the
/// statuses agree, the reads say the same of encryption, and ciphertexts have the same
/// layout and length (a 2048-bit RSA ciphertext: 256 bytes).
#[test]
fn rsa_encryption_answers_as_openbao_does() {
    let broker = Broker::dev();
    let bao = OpenBao::with_transit();
    let plaintext = STANDARD.encode(b"known answer");
    let longest = STANDARD.encode([9u8; 190]);
    let requests: Vec<(&str, String, Value)> = vec![
        (
            "POST",
            "transit/keys/r".into(),
            json!({ "type": "rsa-2048" }),
        ),
        ("GET", "transit/keys/r".into(), json!({})),
        (
            "POST",
            "transit/encrypt/r".into(),
            json!({ "plaintext": plaintext }),
        ),
        (
            "POST",
            "transit/encrypt/r".into(),
            json!({ "plaintext": "" }),
        ),
        (
            "POST",
            "transit/encrypt/r".into(),
            json!({ "plaintext": longest }),
        ),
        (
            "POST",
            "transit/encrypt/r".into(),
            json!({ "plaintext": plaintext, "context": "Y3R4" }),
        ),
        (
            "POST",
            "transit/encrypt/r".into(),
            json!({ "batch_input": [{ "plaintext": plaintext }, { "plaintext": longest }] }),
        ),
        (
            "POST",
            "transit/encrypt/r".into(),
            json!({ "plaintext": plaintext, "associated_data": "YWQ=" }),
        ),
        (
            "POST",
            "transit/decrypt/r".into(),
            json!({ "ciphertext": "vault:v2:AAAA" }),
        ),
        ("POST", "transit/keys/r/rotate".into(), json!({})),
        ("GET", "transit/keys/r".into(), json!({})),
    ];
    let theirs = bao.batch(&requests);
    let ours: Vec<(u16, Value)> = requests
        .iter()
        .map(|(method, path, body)| broker.request(method, path, Some(body)))
        .collect();
    for (((method, path, body), (their_status, their_body)), (status, our_body)) in
        requests.iter().zip(&theirs).zip(&ours)
    {
        let what = format!(
            "{method} {path} {body}: OpenBao {their_status} {their_body}, keybroker {status} {our_body}"
        );
        assert_eq!(status, their_status, "{what}");
        if *status != 200 {
            // RSA's own refusal says what OpenBao says (a version past the latest is worded
            // by the decrypt path every type shares).
            if body.get("associated_data").is_some() {
                assert_eq!(error_of(our_body), error_of(their_body), "{what}");
            }
            assert!(!error_of(our_body).is_empty(), "{what}");
            continue;
        }
        if *method == "GET" {
            let (data, their_data) = (&our_body["data"], &their_body["data"]);
            for field in [
                "type",
                "supports_encryption",
                "supports_decryption",
                "supports_signing",
                "supports_derivation",
                "latest_version",
            ] {
                assert_eq!(data[field], their_data[field], "{field}: {what}");
            }
        }
        if path.starts_with("transit/encrypt/") {
            let shapes = |value: &Value| -> Vec<(String, usize, Value)> {
                let data = &value["data"];
                let items: Vec<Value> = match data["batch_results"].as_array() {
                    Some(items) => items.clone(),
                    None => vec![data.clone()],
                };
                items
                    .iter()
                    .map(|item| {
                        let c = item["ciphertext"].as_str().unwrap();
                        (
                            c.split(':').take(2).collect::<Vec<_>>().join(":"),
                            payload(c).len(),
                            item["key_version"].clone(),
                        )
                    })
                    .collect()
            };
            assert_eq!(shapes(our_body), shapes(their_body), "{what}");
        }
    }
    // What each side encrypted decrypts there, to the plaintext given; v1 after rotation.
    for (answers, on_bao) in [(&theirs, true), (&ours, false)] {
        for (index, expected) in [(2, &plaintext), (3, &String::new()), (4, &longest)] {
            let ciphertext = answers[index].1["data"]["ciphertext"].clone();
            let request = json!({ "ciphertext": ciphertext });
            let (status, body) = if on_bao {
                bao.batch(&[("POST", "transit/decrypt/r".into(), request)])
                    .remove(0)
            } else {
                broker.request("POST", "transit/decrypt/r", Some(&request))
            };
            assert_eq!(status, 200, "on_bao {on_bao}: {body}");
            assert_eq!(
                body["data"]["plaintext"],
                expected.as_str(),
                "on_bao {on_bao}"
            );
        }
    }
}

/// SoftHSM2 before 2.7 decrypts RSA-OAEP only with SHA-1: there the default padding is
/// refused at encryption, naming the instance, the type and the token's reason, and PKCS #1
/// v1.5 works; a token that takes OAEP with SHA-256 does both.
#[test]
fn bao_cli_encrypts_and_decrypts_with_rsa_on_an_hsm() {
    let hsm = Hsm::new();
    hsm.standard_dropin("");
    let broker = hsm.broker();
    broker.bao_ok(&[
        "write",
        "transit/keys/probe",
        "type=rsa-2048",
        "backend=hsm",
    ]);
    let (status, body) = broker.request(
        "POST",
        "transit/encrypt/probe",
        Some(&json!({ "plaintext": "aGk=" })),
    );
    let paddings: &[&str] = match status {
        200 => &["oaep", "pkcs1v15"],
        _ => {
            assert_eq!(status, 400, "{body}");
            let message = error_of(&body);
            assert!(
                message.starts_with(
                    "backend instance \"hsm\" cannot decrypt with key type rsa-2048 and \
                     padding_scheme oaep"
                ) && message.contains("CKR_"),
                "{message}"
            );
            &["pkcs1v15"]
        }
    };
    eprintln!("RSA paddings the HSM decrypts: {paddings:?} (encrypting with the default: {body})");
    check_rsa_encryption(&broker, "hsm", paddings);
}

#[test]
fn bao_cli_encrypts_and_decrypts_with_rsa_on_azure_key_vault() {
    let vault = azure::Vault::new();
    vault.dropin("azure", Timeouts::Generous, "", azure::SECRET);
    let broker = Broker::start(Options {
        plugin_dir: Some(vault.plugins.path().to_owned()),
        ..Options::default()
    });
    check_rsa_encryption(&broker, "azure", &["oaep", "pkcs1v15"]);
}
