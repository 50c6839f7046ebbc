//! Derived keys and convergent encryption (issue 19): Vault's `derived`, `context` and
//! `convergent_encryption` (convergent version 3) on envelope keys of every backend,
//! driven with the real `bao` CLI on the local KEK, an HSM (SoftHSM2), AWS KMS (moto) and
//! the customer's agent; direct mode refused with the reason; the same requests answered as
//! a real OpenBao answers them; and a known answer from OpenBao itself: the ciphertext
//! OpenBao makes under an exported convergent key, made again byte for byte by
//! `transit::derive`.

use base64::{engine::general_purpose::STANDARD, Engine as _};
use keybroker_core::{
    crypto::{Aead, Binding, DataKey},
    engines::transit::derive::{context_key, MISSING_CONTEXT},
    KeyId, TenantId,
};
use serde_json::{json, Value};

use crate::{
    agent::{self, Setup},
    aws::{self, Kms, Timeouts},
    hsm::Hsm,
    support::{openbao::OpenBao, Broker, Options},
};

const AUTH_FAILED: &str = "cipher: message authentication failed";
const MIXED_CONTEXTS: &str = "context should be set either in all the request blocks or in none";

fn b64(data: &[u8]) -> String {
    STANDARD.encode(data)
}

/// The payload of a `vault:vN:` ciphertext.
fn payload(ciphertext: &str) -> Vec<u8> {
    STANDARD
        .decode(ciphertext.rsplit(':').next().unwrap())
        .unwrap()
}

/// A broker and the namespace the keys live in (`None`: root).
struct Target<'a> {
    broker: &'a Broker,
    namespace: Option<&'a str>,
}

impl Target<'_> {
    /// `bao <command> [-namespace=…] <args…>`, asserting success; the JSON it printed.
    fn bao(&self, command: &str, args: &[&str]) -> Value {
        let namespace = self.namespace.map(crate::support::ns);
        let mut all = vec![command, "-format=json"];
        all.extend(namespace.as_deref());
        all.extend(args);
        let out = self.broker.bao_ok(&all);
        if out.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&out).unwrap()
        }
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let mut headers = vec![("X-Vault-Token", self.broker.token.as_str())];
        if let Some(namespace) = self.namespace {
            headers.push(("X-Vault-Namespace", namespace));
        }
        self.broker.request_with("POST", path, Some(body), &headers)
    }

    /// A request that must fail alone with status 400 and Vault's `message`.
    fn refused(&self, path: &str, body: &Value, message: &str) {
        let (status, answer) = self.post(path, body);
        assert_eq!(status, 400, "{path} {body}: {answer}");
        assert_eq!(answer["errors"], json!([message]), "{path} {body}");
    }
}

/// Everything a derived key does on `backend`, with the `bao` CLI where it can say it:
/// create, read, encrypt and decrypt with `context=`, the wrong or a missing context, batches
/// with a context per item, rotate and rewrap, a data key; then a convergent key
/// (deterministic per context and plaintext), and direct mode refused with the reason.
fn check_derived_keys(target: &Target, backend: &str) {
    let key = format!("{backend}-derived");
    let secret = b64(b"the customer's record");
    let (ctx1, ctx2) = (b64(b"tenant-1"), b64(b"tenant-2"));
    target.bao(
        "write",
        &[
            &format!("transit/keys/{key}"),
            "derived=true",
            &format!("backend={backend}"),
        ],
    );
    let read = target.bao("read", &[&format!("transit/keys/{key}")]);
    assert_eq!(read["data"]["derived"], true, "{read}");
    assert_eq!(read["data"]["kdf"], "hkdf_sha256", "{read}");
    assert_eq!(read["data"]["convergent_encryption"], false, "{read}");
    assert_eq!(read["data"]["backend"], backend, "{read}");

    let encrypted = target.bao(
        "write",
        &[
            &format!("transit/encrypt/{key}"),
            &format!("plaintext={secret}"),
            &format!("context={ctx1}"),
        ],
    );
    let v1 = encrypted["data"]["ciphertext"].as_str().unwrap().to_owned();
    assert!(v1.starts_with("vault:v1:"), "{v1}");
    assert_eq!(payload(&v1).len(), 12 + 21 + 16, "{v1}");
    let decrypted = target.bao(
        "write",
        &[
            &format!("transit/decrypt/{key}"),
            &format!("ciphertext={v1}"),
            &format!("context={ctx1}"),
        ],
    );
    assert_eq!(decrypted["data"]["plaintext"], secret.as_str());
    // Two encryptions under one context differ (random nonces).
    let again = target.post(
        &format!("transit/encrypt/{key}"),
        &json!({ "plaintext": secret, "context": ctx1 }),
    );
    assert_eq!(again.0, 200, "{again:?}");
    assert_ne!(again.1["data"]["ciphertext"], v1.as_str());

    // The wrong context does not open it; a missing one is refused with Vault's message.
    let decrypt = format!("transit/decrypt/{key}");
    target.refused(
        &decrypt,
        &json!({ "ciphertext": v1, "context": ctx2 }),
        AUTH_FAILED,
    );
    target.refused(&decrypt, &json!({ "ciphertext": v1 }), MISSING_CONTEXT);
    target.refused(
        &format!("transit/encrypt/{key}"),
        &json!({ "plaintext": secret }),
        MISSING_CONTEXT,
    );
    target.refused(
        &format!("transit/encrypt/{key}"),
        &json!({ "plaintext": secret, "context": "" }),
        MISSING_CONTEXT,
    );

    // A batch: each item with its own context.
    let (status, batch) = target.post(
        &format!("transit/encrypt/{key}"),
        &json!({ "batch_input": [
            { "plaintext": b64(b"one"), "context": ctx1, "reference": "a" },
            { "plaintext": b64(b"two"), "context": ctx2, "reference": "b" },
        ] }),
    );
    assert_eq!(status, 200, "{batch}");
    let results = batch["data"]["batch_results"].as_array().unwrap();
    let (one, two) = (
        results[0]["ciphertext"].as_str().unwrap(),
        results[1]["ciphertext"].as_str().unwrap(),
    );
    // Decrypted with the right contexts, and with them swapped: each item alone.
    let (status, opened) = target.post(
        &decrypt,
        &json!({ "batch_input": [
            { "ciphertext": one, "context": ctx1 },
            { "ciphertext": two, "context": ctx2 },
            { "ciphertext": one, "context": ctx2 },
        ] }),
    );
    assert_eq!(status, 400, "{opened}");
    let opened = opened["data"]["batch_results"].as_array().unwrap().clone();
    assert_eq!(opened[0]["plaintext"], b64(b"one"));
    assert_eq!(opened[1]["plaintext"], b64(b"two"));
    assert_eq!(opened[2]["error"], AUTH_FAILED);
    // Some items with a context and some without: the request is refused.
    target.refused(
        &decrypt,
        &json!({ "batch_input": [{ "ciphertext": one, "context": ctx1 }, { "ciphertext": two }] }),
        MIXED_CONTEXTS,
    );

    // Rotate; rewrap with the context moves it to v2, which decrypts with that context.
    target.bao("write", &["-f", &format!("transit/keys/{key}/rotate")]);
    let rewrapped = target.bao(
        "write",
        &[
            &format!("transit/rewrap/{key}"),
            &format!("ciphertext={v1}"),
            &format!("context={ctx1}"),
        ],
    );
    let v2 = rewrapped["data"]["ciphertext"].as_str().unwrap().to_owned();
    assert!(v2.starts_with("vault:v2:"), "{v2}");
    for ciphertext in [&v1, &v2] {
        let (status, body) = target.post(
            &decrypt,
            &json!({ "ciphertext": ciphertext, "context": ctx1 }),
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["plaintext"], secret.as_str());
    }
    target.refused(
        &decrypt,
        &json!({ "ciphertext": v2, "context": ctx2 }),
        AUTH_FAILED,
    );
    target.refused(
        &format!("transit/rewrap/{key}"),
        &json!({ "ciphertext": v1 }),
        MISSING_CONTEXT,
    );

    // A data key under a context.
    let data_key = target.bao(
        "write",
        &[
            &format!("transit/datakey/plaintext/{key}"),
            &format!("context={ctx2}"),
        ],
    );
    let plaintext = data_key["data"]["plaintext"].as_str().unwrap();
    let (status, body) = target.post(
        &decrypt,
        &json!({ "ciphertext": data_key["data"]["ciphertext"], "context": ctx2 }),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["plaintext"], plaintext);
    target.refused(
        &format!("transit/datakey/wrapped/{key}"),
        &json!({}),
        MISSING_CONTEXT,
    );

    // Convergent: the same context and plaintext give the same ciphertext.
    let convergent = format!("{backend}-convergent");
    target.bao(
        "write",
        &[
            &format!("transit/keys/{convergent}"),
            "derived=true",
            "convergent_encryption=true",
            &format!("backend={backend}"),
        ],
    );
    let read = target.bao("read", &[&format!("transit/keys/{convergent}")]);
    assert_eq!(read["data"]["convergent_encryption"], true, "{read}");
    let encrypt = |plaintext: &str, context: &str| -> String {
        let out = target.bao(
            "write",
            &[
                &format!("transit/encrypt/{convergent}"),
                &format!("plaintext={plaintext}"),
                &format!("context={context}"),
            ],
        );
        out["data"]["ciphertext"].as_str().unwrap().to_owned()
    };
    let first = encrypt(&secret, &ctx1);
    assert_eq!(encrypt(&secret, &ctx1), first);
    assert_ne!(encrypt(&secret, &ctx2), first);
    assert_ne!(encrypt(&b64(b"another record"), &ctx1), first);
    let (status, batch) = target.post(
        &format!("transit/encrypt/{convergent}"),
        &json!({ "batch_input": [
            { "plaintext": secret, "context": ctx1 },
            { "plaintext": secret, "context": ctx2 },
        ] }),
    );
    assert_eq!(status, 200, "{batch}");
    assert_eq!(
        batch["data"]["batch_results"][0]["ciphertext"],
        first.as_str()
    );
    assert_ne!(
        batch["data"]["batch_results"][1]["ciphertext"],
        first.as_str()
    );
    let (status, body) = target.post(
        &format!("transit/decrypt/{convergent}"),
        &json!({ "ciphertext": first, "context": ctx1 }),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["plaintext"], secret.as_str());
    // Rotation gives a new version, and so a new ciphertext.
    target.bao(
        "write",
        &["-f", &format!("transit/keys/{convergent}/rotate")],
    );
    let rotated = encrypt(&secret, &ctx1);
    assert!(rotated.starts_with("vault:v2:"), "{rotated}");
    assert_eq!(encrypt(&secret, &ctx1), rotated);

    // Direct mode cannot derive: refused at creation, with the reason.
    let (status, body) = target.post(
        &format!("transit/keys/{backend}-direct-derived"),
        &json!({ "derived": true, "backend": backend, "mode": "direct" }),
    );
    assert_eq!(status, 400, "{body}");
    let message = body["errors"][0].as_str().unwrap();
    assert!(
        message.contains("derivation") && message.contains("mode=direct"),
        "{message}"
    );
}

#[test]
fn derived_keys_on_the_local_kek() {
    let broker = Broker::dev();
    let target = Target {
        broker: &broker,
        namespace: None,
    };
    check_derived_keys(&target, "local");

    // An exportable key keeps Vault's layout (its material is the key itself): derived and
    // convergent there too.
    target.bao(
        "write",
        &[
            "transit/keys/exportable",
            "exportable=true",
            "derived=true",
            "convergent_encryption=true",
        ],
    );
    let secret = b64(b"exported one day");
    let encrypt = |context: &str| {
        let (status, body) = target.post(
            "transit/encrypt/exportable",
            &json!({ "plaintext": secret, "context": context }),
        );
        assert_eq!(status, 200, "{body}");
        body["data"]["ciphertext"].as_str().unwrap().to_owned()
    };
    let first = encrypt(&b64(b"one"));
    assert_eq!(encrypt(&b64(b"one")), first);
    assert_ne!(encrypt(&b64(b"two")), first);
    let (status, body) = target.post(
        "transit/decrypt/exportable",
        &json!({ "ciphertext": first, "context": b64(b"one") }),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["plaintext"], secret.as_str());
    target.refused(
        "transit/decrypt/exportable",
        &json!({ "ciphertext": first, "context": b64(b"two") }),
        AUTH_FAILED,
    );
}

#[test]
fn derived_keys_on_an_hsm() {
    let hsm = Hsm::new();
    hsm.standard_dropin("");
    let broker = hsm.broker();
    check_derived_keys(
        &Target {
            broker: &broker,
            namespace: None,
        },
        "hsm",
    );
}

#[test]
fn derived_keys_on_aws_kms() {
    let kms = Kms::new();
    kms.dropin("aws", Timeouts::Generous, "", "");
    let broker = Broker::start(Options {
        plugin_dir: Some(kms.plugins.path().to_owned()),
        env: Kms::env(),
        ..Options::default()
    });
    aws::reload(&broker);
    assert_eq!(broker.backend("aws")["status"], "available");
    check_derived_keys(
        &Target {
            broker: &broker,
            namespace: None,
        },
        "aws",
    );
}

#[test]
fn derived_keys_through_the_customers_agent() {
    let setup = Setup::new(&[("acme-dc1", &["acme"])]);
    let broker = setup.broker();
    let agent = setup.agent("acme-dc1");
    agent::wait_agents(&broker, &["acme-dc1"], &|| agent.log());
    check_derived_keys(
        &Target {
            broker: &broker,
            namespace: Some("acme"),
        },
        agent::INSTANCE,
    );
}

/// The same requests to keybroker and to a real OpenBao, on derived, convergent and plain
/// keys: the statuses agree, and so do the error messages (a missing context, a context that
/// is not base64, a batch mixing items with and without one, the wrong context, a convergent
/// upsert without one), the batch items' errors, and what a key read says of derivation.
#[test]
fn derived_keys_answer_as_openbao_does() {
    let broker = Broker::dev();
    let bao = OpenBao::with_transit();
    let secret = b64(b"known answer");
    let (ctx1, ctx2) = (b64(b"tenant-1"), b64(b"tenant-2"));

    let first: Vec<(&str, String, Value)> = vec![
        ("POST", "transit/keys/d".into(), json!({ "derived": true })),
        (
            "POST",
            "transit/keys/c".into(),
            json!({ "derived": true, "convergent_encryption": true }),
        ),
        ("POST", "transit/keys/plain".into(), json!({})),
        ("GET", "transit/keys/d".into(), json!({})),
        ("GET", "transit/keys/c".into(), json!({})),
        // 5: encrypt with a context.
        (
            "POST",
            "transit/encrypt/d".into(),
            json!({ "plaintext": secret, "context": ctx1 }),
        ),
        (
            "POST",
            "transit/encrypt/d".into(),
            json!({ "plaintext": secret }),
        ),
        (
            "POST",
            "transit/encrypt/d".into(),
            json!({ "plaintext": secret, "context": "!!" }),
        ),
        (
            "POST",
            "transit/encrypt/d".into(),
            json!({ "batch_input": [{ "plaintext": secret, "context": ctx1 }, { "plaintext": secret }] }),
        ),
        (
            "POST",
            "transit/encrypt/d".into(),
            json!({ "batch_input": [{ "plaintext": secret }, { "plaintext": secret }] }),
        ),
        // A batch ignores the top-level context.
        (
            "POST",
            "transit/encrypt/d".into(),
            json!({ "context": ctx1, "batch_input": [{ "plaintext": secret }] }),
        ),
        (
            "POST",
            "transit/encrypt/d".into(),
            json!({ "batch_input": [
                { "plaintext": secret, "context": "!!" },
                { "plaintext": secret, "context": ctx2 },
            ] }),
        ),
        // 12, 13: convergent, twice.
        (
            "POST",
            "transit/encrypt/c".into(),
            json!({ "plaintext": secret, "context": ctx1 }),
        ),
        (
            "POST",
            "transit/encrypt/c".into(),
            json!({ "plaintext": secret, "context": ctx1 }),
        ),
        // A plain key ignores a context.
        (
            "POST",
            "transit/encrypt/plain".into(),
            json!({ "plaintext": secret, "context": ctx1 }),
        ),
        ("POST", "transit/datakey/wrapped/d".into(), json!({})),
        (
            "POST",
            "transit/datakey/wrapped/d".into(),
            json!({ "context": "!!" }),
        ),
        (
            "POST",
            "transit/datakey/plaintext/d".into(),
            json!({ "context": ctx1 }),
        ),
        // Upserts: a context makes a derived key; convergent needs one.
        (
            "POST",
            "transit/encrypt/upsert-derived".into(),
            json!({ "plaintext": secret, "context": ctx1 }),
        ),
        ("GET", "transit/keys/upsert-derived".into(), json!({})),
        (
            "POST",
            "transit/encrypt/upsert-convergent".into(),
            json!({ "plaintext": secret, "context": ctx1, "convergent_encryption": true }),
        ),
        ("GET", "transit/keys/upsert-convergent".into(), json!({})),
        (
            "POST",
            "transit/encrypt/upsert-refused".into(),
            json!({ "plaintext": secret, "convergent_encryption": true }),
        ),
        ("GET", "transit/keys/upsert-refused".into(), json!({})),
        // 24: OpenBao has no `nonce` (HashiCorp Vault refuses one with convergent version 3):
        // it is ignored, and the convergent nonce is derived as ever.
        (
            "POST",
            "transit/encrypt/c".into(),
            json!({ "plaintext": secret, "context": ctx1, "nonce": b64(&[1; 12]) }),
        ),
    ];
    let theirs = bao.batch(&first);
    let ours: Vec<(u16, Value)> = first
        .iter()
        .map(|(method, path, body)| broker.request(method, path, Some(body)))
        .collect();
    compare(&first, &theirs, &ours);
    for answers in [&theirs, &ours] {
        // Convergent: the same ciphertext twice.
        assert_eq!(
            answers[12].1["data"]["ciphertext"],
            answers[13].1["data"]["ciphertext"]
        );
        assert_eq!(
            answers[12].1["data"]["ciphertext"],
            answers[24].1["data"]["ciphertext"]
        );
        for index in [3, 4, 19, 21] {
            let data = &answers[index].1["data"];
            assert_eq!(data["derived"], true, "{data}");
            assert_eq!(data["kdf"], "hkdf_sha256", "{data}");
        }
        assert_eq!(answers[4].1["data"]["convergent_encryption"], true);
        assert_eq!(answers[19].1["data"]["convergent_encryption"], false);
        assert_eq!(answers[21].1["data"]["convergent_encryption"], true);
    }

    // Decrypt and rewrap what each side encrypted, on that side.
    let second = |answers: &[(u16, Value)]| -> Vec<(&'static str, String, Value)> {
        let ciphertext = answers[5].1["data"]["ciphertext"].clone();
        let convergent = answers[12].1["data"]["ciphertext"].clone();
        let plain = answers[14].1["data"]["ciphertext"].clone();
        vec![
            (
                "POST",
                "transit/decrypt/d".into(),
                json!({ "ciphertext": ciphertext, "context": ctx1 }),
            ),
            (
                "POST",
                "transit/decrypt/d".into(),
                json!({ "ciphertext": ciphertext, "context": ctx2 }),
            ),
            (
                "POST",
                "transit/decrypt/d".into(),
                json!({ "ciphertext": ciphertext }),
            ),
            (
                "POST",
                "transit/decrypt/d".into(),
                json!({ "ciphertext": ciphertext, "context": "!!" }),
            ),
            (
                "POST",
                "transit/decrypt/d".into(),
                json!({ "batch_input": [
                    { "ciphertext": ciphertext, "context": ctx1 },
                    { "ciphertext": ciphertext, "context": ctx2 },
                ] }),
            ),
            (
                "POST",
                "transit/decrypt/d".into(),
                json!({ "batch_input": [{ "ciphertext": ciphertext, "context": ctx1 }, { "ciphertext": ciphertext }] }),
            ),
            (
                "POST",
                "transit/decrypt/c".into(),
                json!({ "ciphertext": convergent, "context": ctx1 }),
            ),
            (
                "POST",
                "transit/decrypt/plain".into(),
                json!({ "ciphertext": plain, "context": ctx2 }),
            ),
            ("POST", "transit/keys/d/rotate".into(), json!({})),
            (
                "POST",
                "transit/rewrap/d".into(),
                json!({ "ciphertext": ciphertext, "context": ctx1 }),
            ),
            (
                "POST",
                "transit/rewrap/d".into(),
                json!({ "ciphertext": ciphertext }),
            ),
            (
                "POST",
                "transit/rewrap/d".into(),
                json!({ "batch_input": [
                    { "ciphertext": ciphertext, "context": ctx1 },
                    { "ciphertext": ciphertext, "context": ctx2 },
                ] }),
            ),
            (
                "POST",
                "transit/rewrap/d".into(),
                json!({ "batch_input": [{ "ciphertext": ciphertext, "context": ctx1 }, { "ciphertext": ciphertext }] }),
            ),
        ]
    };
    let their_second = bao.batch(&second(&theirs));
    let our_requests = second(&ours);
    let our_second: Vec<(u16, Value)> = our_requests
        .iter()
        .map(|(method, path, body)| broker.request(method, path, Some(body)))
        .collect();
    compare(&our_requests, &their_second, &our_second);
    for answers in [&their_second, &our_second] {
        assert_eq!(answers[0].1["data"]["plaintext"], secret.as_str());
        assert_eq!(answers[6].1["data"]["plaintext"], secret.as_str());
        assert_eq!(answers[7].1["data"]["plaintext"], secret.as_str());
        let rewrapped = answers[9].1["data"]["ciphertext"].as_str().unwrap();
        assert!(rewrapped.starts_with("vault:v2:"), "{rewrapped}");
    }
}

/// Each answer of keybroker against OpenBao's to the same request: the status, the errors,
/// and each batch item's error and fields.
fn compare(requests: &[(&str, String, Value)], theirs: &[(u16, Value)], ours: &[(u16, Value)]) {
    for (((method, path, body), (their_status, their_body)), (status, our_body)) in
        requests.iter().zip(theirs).zip(ours)
    {
        let what = format!(
            "{method} {path} {body}: OpenBao {their_status} {their_body}, keybroker {status} {our_body}"
        );
        assert_eq!(status, their_status, "{what}");
        if *status == 404 {
            continue;
        }
        assert_eq!(our_body.get("errors"), their_body.get("errors"), "{what}");
        let data = &our_body["data"];
        let their_data = &their_body["data"];
        if let Some(items) = their_data["batch_results"].as_array() {
            let ours = data["batch_results"].as_array().unwrap();
            assert_eq!(ours.len(), items.len(), "{what}");
            for (item, their_item) in ours.iter().zip(items) {
                assert_eq!(item.get("error"), their_item.get("error"), "{what}");
                for field in ["ciphertext", "key_version"] {
                    assert_eq!(
                        item.get(field).is_some(),
                        their_item.get(field).is_some(),
                        "{field}: {what}"
                    );
                }
            }
        } else if let Some(fields) = their_data.as_object() {
            for field in fields.keys() {
                assert!(data.get(field).is_some(), "field {field} missing: {what}");
            }
        }
    }
}

/// A known answer from OpenBao itself: a derived, convergent, exportable key of each AEAD
/// type made there, a plaintext encrypted there under a context (with and without associated
/// data), and the key exported; `transit::derive` on that key in Vault's layout makes the
/// same ciphertext byte for byte, and opens OpenBao's ciphertext of a derived key that is
/// not convergent.
#[test]
fn convergent_ciphertexts_match_openbao_byte_for_byte() {
    let bao = OpenBao::with_transit();
    let plaintext = b"the same record, every time";
    let context = b"customer-42";
    let types = [
        ("aes128-gcm96", Aead::Aes128Gcm),
        ("aes256-gcm96", Aead::Aes256Gcm),
        ("chacha20-poly1305", Aead::ChaCha20Poly1305),
        ("xchacha20-poly1305", Aead::XChaCha20Poly1305),
    ];
    let mut requests: Vec<(&str, String, Value)> = Vec::new();
    for (key_type, _) in types {
        for (name, convergent) in [
            (format!("c-{key_type}"), true),
            (format!("d-{key_type}"), false),
        ] {
            requests.push((
                "POST",
                format!("transit/keys/{name}"),
                json!({ "type": key_type, "exportable": true, "derived": true,
                        "convergent_encryption": convergent }),
            ));
            requests.push((
                "POST",
                format!("transit/encrypt/{name}"),
                json!({ "plaintext": b64(plaintext), "context": b64(context) }),
            ));
            requests.push((
                "POST",
                format!("transit/encrypt/{name}"),
                json!({ "plaintext": b64(plaintext), "context": b64(context),
                        "associated_data": b64(b"row 7") }),
            ));
            requests.push((
                "GET",
                format!("transit/export/encryption-key/{name}/1"),
                json!({}),
            ));
        }
    }
    let answers = bao.batch(&requests);
    for (index, (status, body)) in answers.iter().enumerate() {
        assert!(
            matches!(status, 200 | 204),
            "{:?}: {status} {body}",
            requests[index]
        );
    }
    let binding = Binding {
        tenant: TenantId::random(),
        key: KeyId::random(),
        version: 1,
    };
    for (index, (key_type, aead)) in types.iter().enumerate() {
        for (offset, convergent) in [(0, true), (4, false)] {
            let at = index * 8 + offset;
            let exported = &answers[at + 3].1["data"]["keys"]["1"];
            let key = STANDARD.decode(exported.as_str().unwrap()).unwrap();
            assert_eq!(key.len(), aead.key_len(), "{key_type}");
            // Vault's layout: the key, then an HMAC key the derivation does not use.
            let mut material = key.clone();
            material.extend_from_slice(&[0x5a; 32]);
            let version_key = DataKey::from_material(&material, binding, Some(*aead), 32).unwrap();
            let derived = context_key(&version_key, context, convergent).unwrap();
            for (request, associated_data) in [(1, &b""[..]), (2, &b"row 7"[..])] {
                let theirs = answers[at + request].1["data"]["ciphertext"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                assert!(theirs.starts_with("vault:v1:"), "{theirs}");
                let their_payload = payload(&theirs);
                if convergent {
                    let ours = derived.seal(plaintext, associated_data).unwrap();
                    assert_eq!(ours, their_payload, "{key_type} with {associated_data:?}");
                }
                assert_eq!(
                    derived
                        .open(&their_payload, associated_data)
                        .unwrap()
                        .as_slice(),
                    plaintext,
                    "{key_type} convergent={convergent}"
                );
                // Another context does not open it.
                let other = context_key(&version_key, b"customer-43", false).unwrap();
                assert!(other.open(&their_payload, associated_data).is_err());
            }
        }
    }
}
