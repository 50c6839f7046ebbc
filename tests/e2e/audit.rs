//! The audit log through the real binary: every request and response is a line, no secret
//! appears in any encoding, `sys/audit-hash` finds a known value, and `keybroker audit
//! verify` detects edits, deletions, truncation and a chain recomputed without the key.

use base64::{engine::general_purpose::STANDARD, Engine as _};
use serde_json::{json, Value};

use crate::support::{keybroker_bin, private_dir, Broker, Options};

/// A broker with the file audit log. Each record is made durable (`fdatasync`) before the
/// answer; a loaded machine's disk can hold that up past the default 1 s deadline, which no
/// test here is about.
fn audited_broker(state: &std::path::Path) -> Broker {
    let config = format!(
        "state_dir = \"{{state}}\"\n[listener]\naddress = \"127.0.0.1:{{port}}\"\n[audit]\nfile = \"{}\"\ncheckpoint_every = 1\nwrite_timeout = \"60s\"\n",
        state.join("audit.log").display()
    );
    Broker::start(Options {
        config: Some(config),
        state_dir: Some(state.to_owned()),
        ..Options::default()
    })
}

fn verify(state: &std::path::Path) -> (bool, String) {
    let out = std::process::Command::new(keybroker_bin())
        .args(["audit", "verify"])
        .arg(state.join("audit.log"))
        .arg("--config")
        .arg(state.join("keybroker.toml"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn lines(state: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(state.join("audit.log"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_request_is_audited_and_no_secret_appears_in_any_encoding() {
    let state = private_dir();
    let mut broker = audited_broker(state.path());
    let root = broker.token.clone();

    let canary_plaintext = b"canary-plaintext-7f3a9c";
    let ciphertext = broker.encrypt("audited", canary_plaintext);
    assert_eq!(broker.decrypt("audited", &ciphertext), canary_plaintext);
    let (status, value) = broker.request(
        "POST",
        "auth/token/create",
        Some(&json!({ "policies": ["app"] })),
    );
    assert_eq!(status, 200);
    let child = value["auth"]["client_token"].as_str().unwrap().to_owned();
    let (status, _) = broker.request_with(
        "GET",
        "auth/token/lookup-self",
        None,
        &[("X-Vault-Token", &child)],
    );
    assert_eq!(status, 200);
    let (status, _) = broker.request_with(
        "GET",
        "transit/keys/audited",
        None,
        &[("X-Vault-Token", "kbs.forged-canary")],
    );
    assert_eq!(status, 403);
    let (status, value) = broker.request(
        "POST",
        "sys/audit-hash/file",
        Some(&json!({ "input": root })),
    );
    assert_eq!(status, 200, "{value}");
    let root_hash = value["data"]["hash"].as_str().unwrap().to_owned();
    let (status, value) = broker.request("POST", "transit/datakey/plaintext/audited", None);
    assert_eq!(status, 200);
    let datakey_request_id = value["request_id"].as_str().unwrap().to_owned();
    let datakey = STANDARD
        .decode(value["data"]["plaintext"].as_str().unwrap())
        .unwrap();
    broker.kill9();

    let log = lines(state.path());
    let records: Vec<Value> = log
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // A request line and a response line for each of the 7 requests (forged one included).
    assert_eq!(records.len(), 14, "{log:#?}");
    assert!(records
        .iter()
        .any(|r| r["type"] == "request" && r["request"]["path"] == "transit/encrypt/audited"));
    assert!(records
        .iter()
        .any(|r| r["type"] == "response" && r["response"]["status"] == 403));
    // The request and response records carry the request_id the caller was answered with.
    let same_id: Vec<&Value> = records
        .iter()
        .filter(|r| r["request_id"] == datakey_request_id.as_str())
        .collect();
    assert_eq!(same_id.len(), 2, "{log:#?}");
    assert_eq!(
        same_id[1]["request"]["path"],
        "transit/datakey/plaintext/audited"
    );
    let text = log.join("\n");
    assert!(
        text.contains(&root_hash),
        "the logged token is sys/audit-hash of it"
    );

    let secrets: Vec<Vec<u8>> = vec![
        canary_plaintext.to_vec(),
        root.clone().into_bytes(),
        child.clone().into_bytes(),
        b"kbs.forged-canary".to_vec(),
        datakey,
    ];
    for secret in &secrets {
        let forms = [
            String::from_utf8_lossy(secret).into_owned(),
            STANDARD.encode(secret),
            hex::encode(secret),
        ];
        for form in forms.iter().filter(|f| f.len() >= 8) {
            assert!(
                !text.contains(form.as_str()),
                "a secret appears in the audit log"
            );
            assert!(
                !broker.log().contains(form.as_str()),
                "a secret appears in the broker's log"
            );
        }
    }

    let (ok, report) = verify(state.path());
    assert!(ok, "{report}");
}

#[test]
fn audit_verify_detects_edits_deletions_truncation_and_forged_chains() {
    let state = private_dir();
    let mut broker = audited_broker(state.path());
    for i in 0..4 {
        broker.encrypt("k", format!("value {i}").as_bytes());
    }
    // The store's checkpoint follows the file asynchronously: the tail is provable once it
    // has caught up (what `verify` reports), so the kill comes after that.
    assert!(crate::support::eventually(
        std::time::Duration::from_secs(10),
        || {
            let last = lines(state.path()).len();
            verify(state.path())
                .1
                .contains(&format!("checkpoint at sequence {last} matches"))
        }
    ));
    broker.kill9();
    let original = lines(state.path());
    assert!(original.len() >= 8);
    let restore =
        || std::fs::write(state.path().join("audit.log"), original.join("\n") + "\n").unwrap();
    assert!(verify(state.path()).0);

    // An edited line.
    let mut edited = original.clone();
    edited[3] = edited[3].replace("transit/encrypt/k", "transit/encrypt/x");
    std::fs::write(state.path().join("audit.log"), edited.join("\n") + "\n").unwrap();
    let (ok, report) = verify(state.path());
    assert!(!ok, "an edited line must be detected: {report}");

    // A deleted line.
    let mut deleted = original.clone();
    deleted.remove(4);
    std::fs::write(state.path().join("audit.log"), deleted.join("\n") + "\n").unwrap();
    assert!(!verify(state.path()).0, "a deleted line must be detected");

    // A truncated tail (the store's checkpoint knows how far the log went).
    let truncated = &original[..original.len() - 2];
    std::fs::write(state.path().join("audit.log"), truncated.join("\n") + "\n").unwrap();
    assert!(!verify(state.path()).0, "a truncated tail must be detected");

    // A chain recomputed without the key: same shape, MACs from a guessed key.
    let forged: Vec<String> = original
        .iter()
        .map(|l| {
            let mut record: Value = serde_json::from_str(l).unwrap();
            record["chain"] = json!(hex::encode([0x42u8; 32]));
            record.to_string()
        })
        .collect();
    std::fs::write(state.path().join("audit.log"), forged.join("\n") + "\n").unwrap();
    assert!(!verify(state.path()).0, "a forged chain must be detected");

    restore();
    let (ok, report) = verify(state.path());
    assert!(ok, "{report}");
}
