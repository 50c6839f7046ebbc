//! Asymmetric keys whose material the broker holds (issue 19): `signing-key` export in each
//! of Vault's formats, BYOK import and `import_version` of private keys, and plaintext
//! backup and restore, on the local KEK. Driven with the real `bao` CLI (`bao transit
//! import` wraps the PKCS #8 itself) and compared with a real OpenBao: a private key moves
//! both ways, each side then exports it byte for byte as the other does, and each verifies
//! the other's signatures. Instances that keep keys elsewhere (SoftHSM over PKCS #11)
//! refuse, with the reason.

use std::process::Output;

use base64::{engine::general_purpose::STANDARD, Engine as _};
use serde_json::{json, Value};

use crate::{
    hsm::Hsm,
    support::{openbao::OpenBao, Broker},
};

/// The asymmetric types, each a key both servers make quickly in a debug build.
const TYPES: [&str; 5] = [
    "ed25519",
    "ecdsa-p256",
    "ecdsa-p384",
    "ecdsa-p521",
    "rsa-2048",
];

/// Vault's export formats: the default, then the others.
const FORMATS: [&str; 4] = ["", "raw", "der", "pem"];

fn message(body: &Value) -> String {
    body["errors"][0].as_str().unwrap_or_default().to_owned()
}

/// Version 1 of an export from `answer`, or the status and message of a refusal.
fn version_1(answer: &(u16, Value)) -> Result<String, (u16, String)> {
    match answer {
        (200, body) => Ok(body["data"]["keys"]["1"].as_str().unwrap().to_owned()),
        (status, body) => Err((*status, message(body))),
    }
}

/// A new exportable key of `key_type` made by OpenBao: its private key, as PKCS #8 DER in
/// base64 (`format=der`, what `bao transit import` takes).
fn openbao_private_key(openbao: &OpenBao, name: &str, key_type: &str) -> String {
    let (status, body) = openbao.request(
        "POST",
        &format!("transit/keys/{name}"),
        json!({ "type": key_type, "exportable": true }),
    );
    assert!(status == 200 || status == 204, "{body}");
    let path = format!("transit/export/signing-key/{name}?format=der");
    version_1(&openbao.request("GET", &path, json!({}))).unwrap()
}

/// Both servers' exports of `kind` of their key, in every format, are the same bytes; where
/// OpenBao refuses a format with a server error, keybroker refuses it with a 400 and the
/// same message.
fn assert_exports_agree(broker: &Broker, openbao: &OpenBao, kind: &str, ours: &str, theirs: &str) {
    for format in FORMATS {
        let path = |name: &str| format!("transit/export/{kind}/{name}?format={format}");
        let expected = version_1(&openbao.request("GET", &path(theirs), json!({})));
        let actual = version_1(&broker.request("GET", &path(ours), None));
        match (&expected, &actual) {
            (Ok(expected), Ok(actual)) => assert_eq!(
                actual, expected,
                "{kind} format={format:?} of {ours} differs from OpenBao's"
            ),
            // OpenBao's 500 wraps the message ("1 error occurred: * …").
            (Err((500, expected)), Err((400, actual))) => assert!(
                !actual.is_empty() && expected.contains(actual.as_str()),
                "{kind} format={format:?}: {actual:?}, OpenBao {expected:?}"
            ),
            _ => panic!("{kind} format={format:?} of {ours}: {actual:?}, OpenBao {expected:?}"),
        }
    }
}

/// Signs `input` with `name` on one side and verifies the signature on the other, both ways.
fn assert_signatures_cross(broker: &Broker, openbao: &OpenBao, ours: &str, theirs: &str) {
    let input = STANDARD.encode(b"signed on one side, verified on the other");
    let (status, body) = broker.request(
        "POST",
        &format!("transit/sign/{ours}"),
        Some(&json!({ "input": input })),
    );
    assert_eq!(status, 200, "{body}");
    let signature = body["data"]["signature"].as_str().unwrap().to_owned();
    let (status, body) = openbao.request(
        "POST",
        &format!("transit/verify/{theirs}"),
        json!({ "input": input, "signature": signature }),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["valid"], true, "{ours}: ours on OpenBao");

    let (status, body) = openbao.request(
        "POST",
        &format!("transit/sign/{theirs}"),
        json!({ "input": input }),
    );
    assert_eq!(status, 200, "{body}");
    let signature = body["data"]["signature"].as_str().unwrap().to_owned();
    let (status, body) = broker.request(
        "POST",
        &format!("transit/verify/{ours}"),
        Some(&json!({ "input": input, "signature": signature })),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["valid"], true, "{ours}: OpenBao's on ours");
}

/// A private key made by OpenBao, exported (PKCS #8, `format=der`) and imported into
/// keybroker with `bao transit import`; and one made by keybroker, imported into OpenBao.
/// Either way both export the same private and public keys, in every format, and verify
/// each other's signatures.
#[test]
fn private_keys_move_between_openbao_and_keybroker_and_export_alike() {
    let broker = Broker::dev();
    let openbao = OpenBao::with_transit();
    for key_type in TYPES {
        // OpenBao → keybroker.
        let name = format!("from-bao-{key_type}");
        let pkcs8 = openbao_private_key(&openbao, &name, key_type);
        broker.bao_ok(&[
            "transit",
            "import",
            &format!("transit/keys/{name}"),
            &pkcs8,
            &format!("type={key_type}"),
            "exportable=true",
        ]);
        let read = broker
            .request("GET", &format!("transit/keys/{name}"), None)
            .1;
        assert_eq!(read["data"]["imported_key"], true, "{read}");
        assert_eq!(read["data"]["exportable"], true, "{read}");
        assert_eq!(read["data"]["type"], key_type, "{read}");
        for kind in ["signing-key", "public-key"] {
            assert_exports_agree(&broker, &openbao, kind, &name, &name);
        }
        if key_type == "rsa-2048" {
            // RSA keys encrypt too: Vault's encryption-key of one is its private key.
            assert_exports_agree(&broker, &openbao, "encryption-key", &name, &name);
        }
        assert_signatures_cross(&broker, &openbao, &name, &name);

        // keybroker → OpenBao.
        let name = format!("from-kb-{key_type}");
        broker.bao_ok(&[
            "write",
            &format!("transit/keys/{name}"),
            &format!("type={key_type}"),
            "exportable=true",
        ]);
        let pkcs8 = version_1(&broker.request(
            "GET",
            &format!("transit/export/signing-key/{name}?format=der"),
            None,
        ))
        .unwrap();
        openbao.bao_ok(&[
            "transit",
            "import",
            &format!("transit/keys/{name}"),
            &pkcs8,
            &format!("type={key_type}"),
            "exportable=true",
        ]);
        for kind in ["signing-key", "public-key"] {
            assert_exports_agree(&broker, &openbao, kind, &name, &name);
        }
        assert_signatures_cross(&broker, &openbao, &name, &name);
    }
}

/// What keybroker and OpenBao both refuse, with the same status class and message: a key
/// that is not exportable, a private key of the wrong type, a symmetric key's signing-key.
#[test]
fn private_key_refusals_answer_as_openbao_does() {
    let broker = Broker::dev();
    let openbao = OpenBao::with_transit();
    for (key_type, options) in [("ecdsa-p256", json!({})), ("ed25519", json!({}))] {
        let mut body = options.clone();
        body["type"] = json!(key_type);
        let name = format!("kept-{key_type}");
        let ours = broker.request("POST", &format!("transit/keys/{name}"), Some(&body));
        let theirs = openbao.request("POST", &format!("transit/keys/{name}"), body);
        assert_eq!(ours.0 / 100, 2, "{ours:?}");
        assert_eq!(theirs.0 / 100, 2, "{theirs:?}");
        let path = format!("transit/export/signing-key/{name}");
        let ours = broker.request("GET", &path, None);
        let theirs = openbao.request("GET", &path, json!({}));
        assert_eq!((ours.0, message(&ours.1)), (400, message(&theirs.1)));
        assert!(message(&ours.1).starts_with("private key material is not exportable"));
    }
    // An unknown format, before anything else.
    let path = "transit/export/signing-key/kept-ed25519?format=jwk";
    let ours = broker.request("GET", path, None);
    let theirs = openbao.request("GET", path, json!({}));
    assert_eq!(ours.0, theirs.0, "{ours:?} {theirs:?}");
    assert_eq!(message(&ours.1), message(&theirs.1));
    assert_eq!(message(&ours.1), "invalid format: jwk");
}

/// Backup and restore of an exportable asymmetric key that allows plaintext backup, with
/// the bao CLI: the restored key keeps every version's private key (its signatures verify,
/// its exports are the same), and it restores only into its own namespace.
#[test]
fn asymmetric_keys_back_up_and_restore_with_their_private_keys() {
    let broker = Broker::dev();
    for key_type in ["ecdsa-p256", "ed25519", "rsa-2048"] {
        let name = format!("signer-{key_type}");
        broker.bao_ok(&[
            "write",
            &format!("transit/keys/{name}"),
            &format!("type={key_type}"),
            "exportable=true",
            "allow_plaintext_backup=true",
        ]);
        broker.bao_ok(&["write", "-f", &format!("transit/keys/{name}/rotate")]);
        let input = STANDARD.encode(b"kept across a restore");
        let signature = |version: u32| {
            let (status, body) = broker.request(
                "POST",
                &format!("transit/sign/{name}"),
                Some(&json!({ "input": input, "key_version": version })),
            );
            assert_eq!(status, 200, "{body}");
            body["data"]["signature"].as_str().unwrap().to_owned()
        };
        let signatures = [signature(1), signature(2)];
        let exported = broker
            .request("GET", &format!("transit/export/signing-key/{name}"), None)
            .1["data"]["keys"]
            .clone();
        assert_eq!(exported.as_object().unwrap().len(), 2, "{exported}");
        let backup: Value = serde_json::from_str(&broker.bao_ok(&[
            "read",
            "-format=json",
            &format!("transit/backup/{name}"),
        ]))
        .unwrap();
        let backup = backup["data"]["backup"].as_str().unwrap().to_owned();

        broker.bao_ok(&[
            "write",
            &format!("transit/keys/{name}/config"),
            "deletion_allowed=true",
        ]);
        broker.bao_ok(&["delete", &format!("transit/keys/{name}")]);
        broker.bao_ok(&[
            "write",
            &format!("transit/restore/{name}-restored"),
            &format!("backup={backup}"),
        ]);
        let restored = format!("{name}-restored");
        for (version, signature) in signatures.iter().enumerate() {
            let (status, body) = broker.request(
                "POST",
                &format!("transit/verify/{restored}"),
                Some(&json!({ "input": input, "signature": signature })),
            );
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["data"]["valid"], true, "{key_type} v{}", version + 1);
        }
        let (status, body) = broker.request(
            "GET",
            &format!("transit/export/signing-key/{restored}"),
            None,
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["keys"], exported, "{key_type}");
        // A new signature from the restored key.
        let (status, body) = broker.request(
            "POST",
            &format!("transit/sign/{restored}"),
            Some(&json!({ "input": input })),
        );
        assert_eq!(status, 200, "{body}");
        assert!(body["data"]["signature"]
            .as_str()
            .unwrap()
            .starts_with("vault:v2:"));
    }
}

/// `bao transit import-version` adds a private key as a new version of an imported key;
/// the refusals name their reason: a lone public key, a key of another type, an instance
/// that never takes private keys in, `exportable` there.
#[test]
fn private_keys_import_versions_and_refusals_name_the_reason() {
    let hsm = Hsm::new();
    hsm.standard_dropin("");
    let broker = hsm.broker();
    let openbao = OpenBao::with_transit();
    let key = |name: &str, key_type: &str| openbao_private_key(&openbao, name, key_type);
    let first = key("first", "ecdsa-p256");
    let second = key("second", "ecdsa-p256");
    broker.bao_ok(&[
        "transit",
        "import",
        "transit/keys/imported",
        &first,
        "type=ecdsa-p256",
    ]);
    broker.bao_ok(&[
        "transit",
        "import-version",
        "transit/keys/imported",
        &second,
    ]);
    let read = broker.request("GET", "transit/keys/imported", None).1;
    assert_eq!(read["data"]["latest_version"], 2, "{read}");
    let theirs = openbao.request("GET", "transit/keys/second", json!({})).1;
    assert_eq!(
        read["data"]["keys"]["2"]["public_key"], theirs["data"]["keys"]["1"]["public_key"],
        "version 2 is the second key"
    );
    // Not exportable: imported without it.
    let (status, body) = broker.request("GET", "transit/export/signing-key/imported", None);
    assert_eq!(status, 400, "{body}");

    let refused = |out: Output, expected: &str| {
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(expected),
            "expected {expected:?} in {stderr}"
        );
    };
    // A P-256 key is not an RSA or P-384 key.
    refused(
        broker.bao(&[
            "transit",
            "import",
            "transit/keys/wrong",
            &first,
            "type=ecdsa-p384",
        ]),
        "the private key is not a PKCS #8 ecdsa-p384 private key",
    );
    refused(
        broker.bao(&[
            "transit",
            "import",
            "transit/keys/wrong",
            &first,
            "type=rsa-2048",
        ]),
        "the private key is not a PKCS #8 rsa-2048 private key",
    );
    // A public key alone.
    let public = openbao
        .request("GET", "transit/export/public-key/first", json!({}))
        .1["data"]["keys"]["1"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = broker.request(
        "POST",
        "transit/keys/public-only/import",
        Some(&json!({ "type": "ecdsa-p256", "public_key": public })),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        message(&body).contains("does not import a public key alone"),
        "{body}"
    );
    // The HSM instance neither takes private keys in nor hands them out.
    refused(
        broker.bao(&[
            "transit",
            "import",
            "transit/keys/in-hsm",
            &first,
            "type=ecdsa-p256",
            "backend=hsm",
        ]),
        "backend instance \"hsm\" does not take in private keys",
    );
    let (status, body) = broker.request(
        "POST",
        "transit/keys/hsm-signer",
        Some(&json!({ "type": "ecdsa-p256", "backend": "hsm", "exportable": true })),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        message(&body).contains("backend instance \"hsm\""),
        "{body}"
    );
    assert!(message(&body).contains("never exportable"), "{body}");
    // Nothing was left behind by the refusals.
    let (_, list) = broker.request("LIST", "transit/keys", None);
    assert_eq!(list["data"]["keys"], json!(["imported"]), "{list}");
}
