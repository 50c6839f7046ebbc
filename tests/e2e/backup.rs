//! Transit key backup and restore (issue 19) through the real binary and the `bao` CLI:
//! a restored key keeps its id, its versions, its trim and its encryption counts, so its
//! old ciphertexts decrypt again, in its own tenant only; restoring over a key needs
//! `force`; a tampered backup is a 400; a key whose material lives outside the broker (an
//! HSM) never has a backup. And the same requests against a real OpenBao.

use base64::{engine::general_purpose::STANDARD, Engine as _};
use serde_json::{json, Value};

use crate::{
    hsm::Hsm,
    support::{ns, openbao::OpenBao, post_as, tenant_token, Broker},
};

/// The key's `bao read` JSON `data`.
fn read_key(broker: &Broker, path: &str) -> Value {
    let (status, value) = broker.request("GET", path, None);
    assert_eq!(status, 200, "{path}: {value}");
    value["data"].clone()
}

/// `{"backup": …}` of `name`, read with `bao read -field=backup`.
fn backup_with_bao(broker: &Broker, name: &str) -> String {
    broker
        .bao_ok(&["read", "-field=backup", &format!("transit/backup/{name}")])
        .trim()
        .to_owned()
}

/// A restore's (status, first error).
fn restore(broker: &Broker, path: &str, body: &Value) -> (u16, String) {
    let (status, value) = broker.request("POST", path, Some(body));
    (
        status,
        value["errors"][0].as_str().unwrap_or_default().to_owned(),
    )
}

fn decrypt_status(broker: &Broker, key: &str, ciphertext: &str) -> u16 {
    broker
        .request(
            "POST",
            &format!("transit/decrypt/{key}"),
            Some(&json!({ "ciphertext": ciphertext })),
        )
        .0
}

/// The backup's JSON, changed by `edit`, encoded again.
fn tampered(backup: &str, edit: impl FnOnce(&mut Value)) -> String {
    let mut value: Value = serde_json::from_slice(&STANDARD.decode(backup).unwrap()).unwrap();
    edit(&mut value);
    STANDARD.encode(value.to_string())
}

fn counts(key: &Value) -> Vec<u64> {
    let counts = key["encryption_counts"].as_object().unwrap();
    let mut versions: Vec<(u64, u64)> = counts
        .iter()
        .map(|(v, c)| (v.parse().unwrap(), c.as_u64().unwrap()))
        .collect();
    versions.sort_unstable();
    versions.into_iter().map(|(_, c)| c).collect()
}

#[test]
fn a_restored_key_decrypts_its_old_ciphertexts_under_its_name_or_a_new_one() {
    let broker = Broker::dev();
    broker.bao_ok(&[
        "write",
        "transit/keys/k",
        "exportable=true",
        "allow_plaintext_backup=true",
    ]);
    let v1 = broker.encrypt("k", b"one");
    broker.bao_ok(&["write", "-f", "transit/keys/k/rotate"]);
    let v2 = broker.encrypt("k", b"two");
    broker.bao_ok(&["write", "-f", "transit/keys/k/rotate"]);
    let v3 = broker.encrypt("k", b"three");
    broker.bao_ok(&[
        "write",
        "transit/keys/k/config",
        "min_decryption_version=2",
        "min_encryption_version=3",
    ]);
    broker.bao_ok(&["write", "transit/keys/k/trim", "min_available_version=2"]);
    let before = read_key(&broker, "transit/keys/k");
    let backup = backup_with_bao(&broker, "k");

    // Deleted, then restored under its name with the bao CLI.
    broker.bao_ok(&["write", "transit/keys/k/config", "deletion_allowed=true"]);
    broker.bao_ok(&["delete", "transit/keys/k"]);
    assert_eq!(decrypt_status(&broker, "k", &v2), 400, "the key is gone");
    broker.bao_ok(&["write", "transit/restore", &format!("backup={backup}")]);
    let restored = read_key(&broker, "transit/keys/k");
    for field in [
        "latest_version",
        "min_available_version",
        "min_decryption_version",
        "min_encryption_version",
        "exportable",
        "allow_plaintext_backup",
        "deletion_allowed",
        "type",
        "keys",
    ] {
        assert_eq!(restored[field], before[field], "{field}");
    }
    let before_counts = counts(&before);
    assert_eq!(before_counts.len(), 2);
    assert!(before_counts[1] >= 1, "{before}");
    assert!(
        counts(&restored)
            .iter()
            .zip(&before_counts)
            .all(|(after, before)| after >= before),
        "encryption counts never go backwards: {restored} after {before}"
    );
    assert_eq!(broker.decrypt("k", &v2), b"two");
    assert_eq!(broker.decrypt("k", &v3), b"three");
    assert_eq!(decrypt_status(&broker, "k", &v1), 400, "trimmed for good");
    // It encrypts again, with its latest version.
    let again = broker.encrypt("k", b"again");
    assert!(again.starts_with("vault:v3:"), "{again}");

    // Under a new name, while the key it came from exists: its id is taken.
    let (status, error) = restore(&broker, "transit/restore/k2", &json!({ "backup": backup }));
    assert_eq!(status, 400, "{error}");
    assert!(error.contains("still exists under another name"), "{error}");
    broker.bao_ok(&["write", "transit/keys/k/config", "deletion_allowed=true"]);
    broker.bao_ok(&["delete", "transit/keys/k"]);
    broker.bao_ok(&["write", "transit/restore/k2", &format!("backup={backup}")]);
    assert_eq!(broker.decrypt("k2", &v2), b"two");
    assert_eq!(broker.decrypt("k2", &again), b"again");

    // Over an existing key: only with force; with force, replaced.
    let (status, error) = restore(&broker, "transit/restore/k2", &json!({ "backup": backup }));
    assert_eq!((status, error.as_str()), (400, "key \"k2\" already exists"));
    let newer = broker.encrypt("k2", b"newer");
    let counted = counts(&read_key(&broker, "transit/keys/k2"));
    let (status, error) = restore(
        &broker,
        "transit/restore/k2",
        &json!({ "backup": backup, "force": true }),
    );
    assert_eq!(status, 204, "{error}");
    assert_eq!(broker.decrypt("k2", &newer), b"newer");
    assert_eq!(broker.decrypt("k2", &v3), b"three");
    let recounted = counts(&read_key(&broker, "transit/keys/k2"));
    assert!(
        recounted
            .iter()
            .zip(&counted)
            .all(|(after, before)| after >= before),
        "restored over itself, a key keeps its higher counts: {recounted:?} after {counted:?}"
    );
    // A key of another id under that name is replaced too (`bao` sends force as a string).
    broker.bao_ok(&["write", "-f", "transit/keys/other"]);
    assert_eq!(decrypt_status(&broker, "other", &v2), 400, "nowhere else");
    broker.bao_ok(&["write", "transit/keys/k2/config", "deletion_allowed=true"]);
    broker.bao_ok(&["delete", "transit/keys/k2"]);
    broker.bao_ok(&[
        "write",
        "transit/restore/other",
        &format!("backup={backup}"),
        "force=true",
    ]);
    assert_eq!(broker.decrypt("other", &v2), b"two");
}

#[test]
fn backups_are_refused_unless_the_key_allows_them_and_tampered_ones_are_400() {
    let broker = Broker::dev();
    broker.bao_ok(&["write", "-f", "transit/keys/plain"]);
    broker.bao_ok(&["write", "transit/keys/exportable", "exportable=true"]);
    broker.bao_ok(&[
        "write",
        "transit/keys/backup-only",
        "allow_plaintext_backup=true",
    ]);
    for (name, message) in [
        ("plain", "exporting is disallowed on the policy"),
        ("backup-only", "exporting is disallowed on the policy"),
        ("exportable", "plaintext backup is disallowed on the policy"),
        ("missing", "key \"missing\" not found"),
    ] {
        let (status, value) = broker.request("GET", &format!("transit/backup/{name}"), None);
        assert_eq!((status, value["errors"][0].as_str()), (400, Some(message)));
    }
    let out = broker.bao(&["read", "transit/backup/plain"]);
    assert!(!out.status.success());

    broker.bao_ok(&[
        "write",
        "transit/keys/k",
        "exportable=true",
        "allow_plaintext_backup=true",
    ]);
    let backup = backup_with_bao(&broker, "k");
    broker.bao_ok(&["write", "transit/keys/k/config", "deletion_allowed=true"]);
    broker.bao_ok(&["delete", "transit/keys/k"]);
    let mut flipped = backup.clone().into_bytes();
    flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "'backup' must be supplied"),
        (json!({ "backup": "" }), "'backup' must be supplied"),
        (
            json!({ "backup": "!!!" }),
            "invalid backup: it is not base64",
        ),
        (json!({ "backup": STANDARD.encode("{}") }), "invalid backup"),
        (
            json!({ "backup": STANDARD.encode("null") }),
            "invalid backup",
        ),
        (json!({ "backup": flipped }), "invalid backup"),
        (
            json!({ "backup": tampered(&backup, |v| v["format_version"] = json!(2)) }),
            "invalid backup",
        ),
        (
            json!({ "backup": tampered(&backup, |v| v["versions"] = json!([])) }),
            "invalid backup",
        ),
        (
            json!({ "backup": tampered(&backup, |v| v["latest_version"] = json!(2)) }),
            "invalid backup",
        ),
        (
            json!({ "backup": tampered(&backup, |v| v["versions"][0]["material"] = json!("AAAA")) }),
            "invalid backup: the key material of version 1",
        ),
        (
            json!({ "backup": tampered(&backup, |v| v["type"] = json!("rsa-2048")) }),
            "invalid backup",
        ),
        (
            json!({ "backup": tampered(&backup, |v| v["extra"] = json!(1)) }),
            "invalid backup",
        ),
        (
            json!({ "backup": tampered(&backup, |v| v["name"] = json!("../x")) }),
            "invalid backup",
        ),
        (
            json!({ "backup": tampered(&backup, |v| v["backend"] = json!("nope")) }),
            "backend instance \"nope\" named in the backup is not available",
        ),
        (
            json!({ "backup": backup, "force": "maybe" }),
            "failed to parse JSON input",
        ),
    ];
    for (body, message) in &cases {
        let (status, error) = restore(&broker, "transit/restore", body);
        assert_eq!(status, 400, "{body}: {error}");
        assert!(error.starts_with(message), "{body}: {error}");
    }
    assert_eq!(
        broker.request("GET", "transit/keys/k", None).0,
        404,
        "nothing was restored"
    );
    let (status, error) = restore(&broker, "transit/restore", &json!({ "backup": backup }));
    assert_eq!(status, 204, "{error}");
}

#[test]
fn a_backup_restores_only_into_its_own_tenant() {
    let broker = Broker::dev();
    for tenant in ["acme", "globex"] {
        broker.bao_ok(&["namespace", "create", tenant]);
        broker.bao_ok(&["secrets", "enable", &ns(tenant), "transit"]);
    }
    let acme = tenant_token(&broker, "acme");
    let globex = tenant_token(&broker, "globex");
    let (status, value) = post_as(
        &broker,
        &acme,
        "acme",
        "transit/keys/k",
        &json!({ "exportable": true, "allow_plaintext_backup": true }),
    );
    assert_eq!(status, 200, "{value}");
    let (status, value) = post_as(
        &broker,
        &acme,
        "acme",
        "transit/encrypt/k",
        &json!({ "plaintext": "YWNtZQ==" }),
    );
    assert_eq!(status, 200, "{value}");
    let ciphertext = value["data"]["ciphertext"].as_str().unwrap().to_owned();
    let (status, value) = broker.request_with(
        "GET",
        "transit/backup/k",
        None,
        &[("X-Vault-Token", &acme), ("X-Vault-Namespace", "acme")],
    );
    assert_eq!(status, 200, "{value}");
    let backup = value["data"]["backup"].as_str().unwrap().to_owned();

    let refused = "this backup belongs to another namespace";
    let (status, value) = post_as(
        &broker,
        &globex,
        "globex",
        "transit/restore/k",
        &json!({ "backup": backup }),
    );
    assert_eq!(status, 400, "{value}");
    assert!(value["errors"][0].as_str().unwrap().starts_with(refused));
    let (status, error) = restore(&broker, "transit/restore/k", &json!({ "backup": backup }));
    assert_eq!(status, 400, "{error}");
    assert!(
        error.starts_with(refused),
        "the root namespace is another: {error}"
    );
    // Rewriting the tenant in the backup does not help: the binding of an envelope version
    // names the tenant, and the tenant is checked against the caller's.
    let (status, _) = post_as(
        &broker,
        &globex,
        "globex",
        "transit/decrypt/k",
        &json!({ "ciphertext": ciphertext }),
    );
    assert_eq!(status, 400, "no key k in globex");

    // Into its own tenant, under a new name once the original is gone.
    post_as(
        &broker,
        &acme,
        "acme",
        "transit/keys/k/config",
        &json!({ "deletion_allowed": true }),
    );
    let (status, _) = broker.request_with(
        "DELETE",
        "transit/keys/k",
        None,
        &[("X-Vault-Token", &acme), ("X-Vault-Namespace", "acme")],
    );
    assert_eq!(status, 204);
    let (status, value) = post_as(
        &broker,
        &acme,
        "acme",
        "transit/restore/renamed",
        &json!({ "backup": backup }),
    );
    assert_eq!(status, 204, "{value}");
    let (status, value) = post_as(
        &broker,
        &acme,
        "acme",
        "transit/decrypt/renamed",
        &json!({ "ciphertext": ciphertext }),
    );
    assert_eq!(
        (status, value["data"]["plaintext"].clone()),
        (200, json!("YWNtZQ=="))
    );
}

#[test]
fn a_key_held_in_an_hsm_is_never_backed_up_or_restored_into_it() {
    let hsm = Hsm::new();
    hsm.standard_dropin("");
    let broker = hsm.broker();
    let (status, value) = broker.request(
        "POST",
        "transit/keys/held",
        Some(&json!({ "backend": "hsm", "exportable": true, "allow_plaintext_backup": true })),
    );
    assert_eq!(status, 400, "{value}");
    assert!(
        value["errors"][0]
            .as_str()
            .unwrap()
            .contains("keeps its keys' material outside the broker"),
        "{value}"
    );
    let (status, value) = broker.request(
        "POST",
        "transit/keys/held",
        Some(&json!({ "backend": "hsm" })),
    );
    assert_eq!(status, 200, "{value}");
    let (status, value) = broker.request("GET", "transit/backup/held", None);
    assert_eq!(
        (status, value["errors"][0].as_str()),
        (400, Some("exporting is disallowed on the policy"))
    );

    // A local key's backup edited to name the HSM is not restored there.
    broker.bao_ok(&[
        "write",
        "transit/keys/k",
        "exportable=true",
        "allow_plaintext_backup=true",
    ]);
    let backup = backup_with_bao(&broker, "k");
    let ciphertext = broker.encrypt("k", b"local");
    let moved = tampered(&backup, |v| v["backend"] = json!("hsm"));
    let (status, error) = restore(
        &broker,
        "transit/restore",
        &json!({ "backup": moved, "force": true }),
    );
    assert_eq!(status, 400, "{error}");
    assert!(error.contains("outside the broker"), "{error}");
    assert_eq!(
        broker.decrypt("k", &ciphertext),
        b"local",
        "nothing was replaced"
    );
    assert_eq!(read_key(&broker, "transit/keys/k")["backend"], "local");
}

/// Compares answers to the same requests: OpenBao's 500s are user errors it reports as plain
/// Go errors (`1 error occurred:\n\t* <message>\n\n`), which keybroker answers with a 400 and
/// the message alone; every other status is the same, and every refusal's words are
/// OpenBao's, except where `loose` (field decoding, whose wording is each server's own).
fn compare(
    requests: &[(&str, String, Value)],
    theirs: &[(u16, Value)],
    ours: &[(u16, Value)],
    loose: &[usize],
) {
    assert_eq!((theirs.len(), ours.len()), (requests.len(), requests.len()));
    for (index, (((method, path, body), (their_status, their_body)), (status, our_body))) in
        requests.iter().zip(theirs).zip(ours).enumerate()
    {
        let what = format!(
            "{method} {path} {body}: OpenBao {their_status} {their_body}, keybroker {status} {our_body}"
        );
        let expected = if *their_status == 500 {
            400
        } else {
            *their_status
        };
        assert_eq!(*status, expected, "{what}");
        if *status >= 400 && !loose.contains(&index) {
            let message = our_body["errors"][0].as_str().unwrap_or_default();
            assert!(!message.is_empty(), "{what}");
            assert!(
                their_body["errors"][0]
                    .as_str()
                    .unwrap_or_default()
                    .contains(message),
                "{what}"
            );
        }
        if *status == 200 && path.starts_with("transit/backup/") {
            assert!(our_body["data"]["backup"].is_string(), "{what}");
            assert!(their_body["data"]["backup"].is_string(), "{what}");
        }
    }
}

/// The same requests to OpenBao and to keybroker (see [`compare`]). A backup's content
/// differs by design: keybroker's format is its own (tenant, key id, backend instance), and
/// neither restores the other's; each side restores its own.
#[test]
fn backup_and_restore_answer_as_openbao_does() {
    let broker = Broker::dev();
    let bao = OpenBao::with_transit();
    let setup: Vec<(&str, String, Value)> = vec![
        ("POST", "transit/keys/plain".into(), json!({})),
        (
            "POST",
            "transit/keys/exportable".into(),
            json!({ "exportable": true }),
        ),
        (
            "POST",
            "transit/keys/p".into(),
            json!({ "exportable": true, "allow_plaintext_backup": true }),
        ),
        ("POST", "transit/keys/p/rotate".into(), json!({})),
        ("GET", "transit/backup/plain".into(), json!({})),
        ("GET", "transit/backup/exportable".into(), json!({})),
        ("GET", "transit/backup/missing".into(), json!({})),
        ("GET", "transit/backup/p".into(), json!({})),
        ("POST", "transit/restore".into(), json!({})),
        ("POST", "transit/restore".into(), json!({ "backup": "" })),
        ("PUT", "transit/backup/p".into(), json!({})),
    ];
    let theirs = bao.batch(&setup);
    let ours: Vec<(u16, Value)> = setup
        .iter()
        .map(|(method, path, body)| broker.request(method, path, Some(body)))
        .collect();
    compare(&setup, &theirs, &ours, &[]);
    assert_eq!(ours[7].0, 200);

    let restores = |backup: &str| -> Vec<(&'static str, String, Value)> {
        vec![
            // Under its own name, which `p` holds.
            (
                "POST",
                "transit/restore".into(),
                json!({ "backup": backup }),
            ),
            (
                "POST",
                "transit/keys/p/config".into(),
                json!({ "deletion_allowed": true }),
            ),
            ("DELETE", "transit/keys/p".into(), json!({})),
            (
                "POST",
                "transit/restore/p2".into(),
                json!({ "backup": backup }),
            ),
            (
                "POST",
                "transit/restore/p2".into(),
                json!({ "backup": backup }),
            ),
            (
                "POST",
                "transit/restore/p2".into(),
                json!({ "backup": backup, "force": true }),
            ),
            (
                "POST",
                "transit/restore/p2".into(),
                json!({ "backup": backup, "force": "maybe" }),
            ),
            ("GET", "transit/keys/p2".into(), json!({})),
        ]
    };
    let their_requests = restores(theirs[7].1["data"]["backup"].as_str().unwrap());
    let our_requests = restores(ours[7].1["data"]["backup"].as_str().unwrap());
    let theirs = bao.batch(&their_requests);
    let ours: Vec<(u16, Value)> = our_requests
        .iter()
        .map(|(method, path, body)| broker.request(method, path, Some(body)))
        .collect();
    compare(&our_requests, &theirs, &ours, &[6]);
    let statuses: Vec<u16> = ours.iter().map(|(status, _)| *status).collect();
    assert_eq!(statuses, vec![400, 200, 204, 204, 400, 204, 400, 200]);
    for field in [
        "latest_version",
        "exportable",
        "allow_plaintext_backup",
        "keys",
    ] {
        assert_eq!(
            ours[7].1["data"][field].as_object().map(|o| o.len()),
            theirs[7].1["data"][field].as_object().map(|o| o.len()),
            "{field}"
        );
        if !ours[7].1["data"][field].is_object() {
            assert_eq!(
                ours[7].1["data"][field], theirs[7].1["data"][field],
                "{field}"
            );
        }
    }
}
