//! The KV engine's own guarantees (issue 21): the mount's key rotates by hand and on its
//! period and a background pass rewraps every data key under the new version; a secret's
//! row copied to another path, mount or tenant does not decrypt; the database holds no
//! secret value or path in the clear; policies reach KV paths as in Vault; bad input gets a
//! clear 4xx and loses nothing; a kill -9 loses no acknowledged version.

use std::{
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use serde_json::{json, Value};

use crate::support::{eventually, private_dir, Broker, Options};

/// A broker on SQLite in `state`, whose periodic jobs (rotation, rewrap) run often.
fn options(state: &std::path::Path, extra: &str) -> Options {
    Options {
        config: Some(format!(
            "state_dir = \"{{state}}\"\n[listener]\naddress = \"127.0.0.1:{{port}}\"\n{extra}\n\
             [timing]\nmin_auto_rotate_period = \"1s\"\nauto_rotate_check_interval = \"200ms\"\n"
        )),
        state_dir: Some(state.to_owned()),
        ..Options::default()
    }
}

fn ok(node: &Broker, method: &str, path: &str, body: Option<&Value>) -> Value {
    node.ok(method, path, body)
}

fn put(broker: &Broker, path: &str, data: Value) -> Value {
    ok(broker, "POST", path, Some(&json!({ "data": data })))
}

/// Runs SQL on the broker's SQLite file (Python's sqlite3, as an attacker with the file
/// would); returns the rows, one per line, columns separated by `|`.
fn sql(state: &std::path::Path, statement: &str) -> String {
    let script = "import sqlite3,sys\nc=sqlite3.connect(sys.argv[1])\n\
                  rows=c.execute(sys.argv[2]).fetchall()\nc.commit()\n\
                  print('\\n'.join('|'.join(str(v) for v in r) for r in rows))";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(state.join("keybroker.db"))
        .arg(statement)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The id of the mount at `path` in the tenant named `tenant` (`root`).
fn mount_id(state: &std::path::Path, tenant: &str, path: &str) -> String {
    sql(
        state,
        &format!(
            "SELECT m.id FROM mounts m JOIN tenants t ON t.id = m.tenant_id \
             WHERE t.name = '{tenant}' AND m.path = '{path}'"
        ),
    )
}

/// The storage keys of a mount's secrets, oldest first.
fn secret_rows(state: &std::path::Path, mount: &str) -> Vec<String> {
    sql(
        state,
        &format!("SELECT key FROM mount_entries WHERE mount_id = '{mount}' AND key LIKE 's/%' ORDER BY rowid"),
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

#[test]
fn the_mounts_key_rotates_by_hand_and_on_its_period_and_every_data_key_is_rewrapped() {
    let state = private_dir();
    let broker = Broker::start(options(state.path(), ""));
    broker.bao_ok(&["secrets", "enable", "-path=secret", "kv-v2"]);
    for i in 0..5 {
        put(&broker, &format!("secret/data/s{i}"), json!({ "n": i }));
    }
    put(&broker, "secret/data/s0", json!({ "n": "second" }));
    let key = ok(&broker, "GET", "secret/key", None);
    assert_eq!(key["data"]["latest_version"], 1);
    assert_eq!(key["data"]["backend"], "local");
    assert_eq!(key["data"]["data_keys_by_version"], json!({"1": 6}));

    // By hand: root, or `sudo` on the path; every capability but `sudo` is not enough.
    ok(
        &broker,
        "POST",
        "sys/policies/acl/no-sudo",
        Some(&json!({
            "policy": "path \"secret/*\" { capabilities = [\"create\", \"read\", \"update\", \"delete\", \"list\", \"patch\"] }"
        })),
    );
    let token = ok(
        &broker,
        "POST",
        "auth/token/create",
        Some(&json!({"policies": ["no-sudo"]})),
    )["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = broker.request_as(&token, "", "POST", "secret/rotate", None);
    assert_eq!(status, 403);
    let rotated = ok(&broker, "POST", "secret/rotate", None);
    assert_eq!(rotated["data"]["latest_version"], 2);
    // The background pass rewraps the six data keys under version 2.
    assert!(
        eventually(Duration::from_secs(30), || {
            let key = ok(&broker, "GET", "secret/key", None);
            key["data"]["rewrapped_version"] == 2
                && key["data"]["data_keys_by_version"] == json!({"2": 6})
        }),
        "{}",
        ok(&broker, "GET", "secret/key", None)
    );
    // Every version still reads.
    let read = ok(&broker, "GET", "secret/data/s0?version=1", None);
    assert_eq!(read["data"]["data"]["n"], 0);
    for i in 1..5 {
        let read = ok(&broker, "GET", &format!("secret/data/s{i}"), None);
        assert_eq!(read["data"]["data"]["n"], i);
    }

    // On a period set in the mount's options (and changed by a tune).
    broker.bao_ok(&[
        "secrets",
        "enable",
        "-path=periodic",
        "-options=rotation_period=1s",
        "kv-v2",
    ]);
    put(&broker, "periodic/data/p", json!({ "v": "x" }));
    assert!(eventually(Duration::from_secs(30), || {
        let key = ok(&broker, "GET", "periodic/key", None);
        let latest = key["data"]["latest_version"].as_u64().unwrap_or(0);
        latest >= 3 && key["data"]["rewrapped_version"].as_u64() == Some(latest)
    }));
    broker.bao_ok(&["secrets", "tune", "-options=rotation_period=0", "periodic"]);
    let key = ok(&broker, "GET", "periodic/key", None);
    assert_eq!(key["data"]["rotation_period"], 0);
    let read = ok(&broker, "GET", "periodic/data/p", None);
    assert_eq!(read["data"]["data"]["v"], "x");
    // The backend of a mount never changes.
    let out = broker.bao(&["secrets", "tune", "-options=backend=other", "periodic"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot change"));
}

#[test]
fn a_secret_copied_to_another_path_mount_or_tenant_does_not_decrypt_and_the_file_holds_no_secret() {
    let state = private_dir();
    let mut broker = Broker::start(options(state.path(), ""));
    broker.bao_ok(&["secrets", "enable", "-path=m1", "kv-v2"]);
    broker.bao_ok(&["secrets", "enable", "-path=m2", "kv-v2"]);
    broker.bao_ok(&["namespace", "create", "acme"]);
    broker.bao_ok(&["secrets", "enable", "-namespace=acme", "-path=m1", "kv-v2"]);
    let value = "correct-horse-battery-staple-7f3a";
    put(
        &broker,
        "m1/data/wallets/alice/seed",
        json!({ "value": value }),
    );
    put(
        &broker,
        "m1/data/wallets/bob/seed",
        json!({ "value": "bobs" }),
    );
    put(
        &broker,
        "m2/data/wallets/alice/seed",
        json!({ "value": "other mount" }),
    );
    let (status, _) = broker.request_as(
        &broker.token,
        "acme",
        "POST",
        "m1/data/wallets/alice/seed",
        Some(&json!({"data": {"value": "other tenant"}})),
    );
    assert_eq!(status, 200);

    // The database holds neither the values nor the paths.
    let dump = sql(
        state.path(),
        "SELECT key || ' ' || value FROM mount_entries",
    );
    for clear in [value, "bobs", "wallets", "alice", "seed"] {
        assert!(
            !dump.contains(clear),
            "{clear:?} is in the clear in the database"
        );
    }
    let bytes = std::fs::read(state.path().join("keybroker.db")).unwrap();
    assert!(!bytes.windows(value.len()).any(|w| w == value.as_bytes()));

    let m1 = mount_id(state.path(), "root", "m1/");
    let m2 = mount_id(state.path(), "root", "m2/");
    let acme_m1 = mount_id(state.path(), "acme", "m1/");
    let rows = secret_rows(state.path(), &m1);
    assert_eq!(rows.len(), 2, "{rows:?}");
    let (alice, bob) = (&rows[0], &rows[1]);
    let [m2_alice] = &secret_rows(state.path(), &m2)[..] else {
        panic!()
    };
    let [acme_alice] = &secret_rows(state.path(), &acme_m1)[..] else {
        panic!()
    };
    // Alice's row copied over Bob's, over the same path in another mount, and in another
    // tenant: none of them opens, and Alice's seed is never answered.
    let copy = |mount: &str, key: &str| {
        sql(
            state.path(),
            &format!(
                "UPDATE mount_entries SET value = (SELECT value FROM mount_entries \
                 WHERE mount_id = '{m1}' AND key = '{alice}') WHERE mount_id = '{mount}' AND key = '{key}'"
            ),
        );
    };
    copy(&m1, bob);
    copy(&m2, m2_alice);
    copy(&acme_m1, acme_alice);
    // On SQLite the broker is the file's only writer and keeps what it wrote: rows changed
    // behind its back are what it reads after a restart.
    broker.restart();
    for (tenant, path) in [
        ("", "m1/data/wallets/bob/seed"),
        ("", "m2/data/wallets/alice/seed"),
        ("acme", "m1/data/wallets/alice/seed"),
    ] {
        let (status, body) = broker.request_as(&broker.token, tenant, "GET", path, None);
        assert_ne!(status, 200, "{tenant}/{path}: {body}");
        assert!(!body.to_string().contains(value), "{tenant}/{path}: {body}");
    }
    // The original still reads.
    let read = ok(&broker, "GET", "m1/data/wallets/alice/seed", None);
    assert_eq!(read["data"]["data"]["value"], value);
}

#[test]
fn policies_reach_kv_paths_as_in_vault_in_a_tenant() {
    let broker = Broker::dev();
    broker.bao_ok(&["namespace", "create", "acme"]);
    broker.bao_ok(&["namespace", "create", "globex"]);
    for tenant in ["acme", "globex"] {
        broker.bao_ok(&[
            "secrets",
            "enable",
            &format!("-namespace={tenant}"),
            "-path=secret",
            "kv-v2",
        ]);
    }
    let policy = r#"
path "secret/data/app/*" { capabilities = ["read"] }
path "secret/data/app/rw" { capabilities = ["create", "read", "update", "patch"] }
path "secret/data/app/once" { capabilities = ["create"] }
path "secret/metadata/app/*" { capabilities = ["list", "read"] }
path "secret/delete/app/rw" { capabilities = ["update"] }
"#;
    let as_root_in = |tenant: &str, method: &str, path: &str, body: Value| {
        broker.request_as(&broker.token, tenant, method, path, Some(&body))
    };
    let (status, _) = as_root_in(
        "acme",
        "POST",
        "sys/policies/acl/app",
        json!({ "policy": policy }),
    );
    assert_eq!(status, 204);
    let (_, created) = as_root_in(
        "acme",
        "POST",
        "auth/token/create",
        json!({"policies": ["app"]}),
    );
    let token = created["auth"]["client_token"].as_str().unwrap().to_owned();
    let call = |method: &str, path: &str, body: Option<Value>| {
        broker
            .request_as(&token, "acme", method, path, body.as_ref())
            .0
    };
    let data = |v: &str| Some(json!({ "data": { "v": v } }));
    // A missing secret the token may read: 404; one it may not: 403.
    assert_eq!(call("GET", "secret/data/app/x", None), 404);
    assert_eq!(call("GET", "secret/data/other", None), 403);
    assert_eq!(call("POST", "secret/data/app/x", data("no")), 403);
    // create, then update; a path granting only `create` takes one write.
    assert_eq!(call("POST", "secret/data/app/rw", data("1")), 200);
    assert_eq!(call("POST", "secret/data/app/rw", data("2")), 200);
    assert_eq!(call("POST", "secret/data/app/once", data("1")), 200);
    assert_eq!(call("POST", "secret/data/app/once", data("2")), 403);
    // PATCH needs `patch`; a write does not grant it.
    // (The harness's `raw` names a JSON content type with a body: curl directly.)
    let curl_patch = |path: &str| {
        let out = crate::support::curl(&[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "PATCH",
            "-H",
            &format!("X-Vault-Token: {token}"),
            "-H",
            "X-Vault-Namespace: acme",
            "-H",
            "Content-Type: application/merge-patch+json",
            "--data-binary",
            r#"{"data":{"w":"patched"}}"#,
            &format!("{}/v1/{path}", broker.addr),
        ]);
        String::from_utf8_lossy(&out.stdout).parse::<u16>().unwrap()
    };
    assert_eq!(curl_patch("secret/data/app/rw"), 200);
    assert_eq!(curl_patch("secret/data/app/once"), 403);
    let (status, read) = broker.request_as(&token, "acme", "GET", "secret/data/app/rw", None);
    assert_eq!(status, 200);
    assert_eq!(read["data"]["data"], json!({"v": "2", "w": "patched"}));
    // Listing and metadata by their own paths; delete only where granted.
    let (status, listed) = broker.request_as(&token, "acme", "LIST", "secret/metadata/app/", None);
    assert_eq!(status, 200);
    assert_eq!(listed["data"]["keys"], json!(["once", "rw"]));
    assert_eq!(call("LIST", "secret/metadata/", None), 403);
    assert_eq!(call("DELETE", "secret/data/app/rw", None), 403);
    assert_eq!(
        call(
            "POST",
            "secret/delete/app/rw",
            Some(json!({"versions": [1]}))
        ),
        204
    );
    assert_eq!(call("DELETE", "secret/metadata/app/rw", None), 403);
    // Neither the root namespace's `secret/` nor another tenant's is reached.
    let (status, _) = broker.request_as(&token, "", "GET", "secret/data/app/rw", None);
    assert_eq!(status, 403);
    let (status, _) = broker.request_as(&token, "globex", "GET", "secret/data/app/rw", None);
    assert_eq!(status, 403);
    let (status, _) = broker.request_as(&broker.token, "globex", "GET", "secret/data/app/rw", None);
    assert_eq!(status, 404, "globex has no such secret");
}

#[test]
fn bad_input_gets_a_clear_4xx_and_loses_nothing() {
    let state = private_dir();
    let broker = Broker::start(options(state.path(), "max_request_size = 4096"));
    broker.bao_ok(&["secrets", "enable", "-path=secret", "kv-v2"]);
    put(&broker, "secret/data/keep", json!({ "v": "kept" }));
    let unchanged = |broker: &Broker| {
        let read = ok(broker, "GET", "secret/data/keep", None);
        assert_eq!(read["data"]["data"]["v"], "kept");
        assert_eq!(read["data"]["metadata"]["version"], 1);
    };
    let refused = |method: &str, path: &str, body: Option<&str>, status: u16, message: &str| {
        let (got, text) = broker.raw(method, path, body, &[("X-Vault-Token", &broker.token)]);
        assert_eq!(got, status, "{method} {path}: {text}");
        assert!(text.contains(message), "{method} {path}: {text}");
    };
    // A stale check-and-set.
    refused(
        "POST",
        "secret/data/keep",
        Some(r#"{"data":{"v":"x"},"options":{"cas":0}}"#),
        400,
        "check-and-set parameter did not match the current version",
    );
    // A body over the limit.
    let big = format!(r#"{{"data":{{"v":"{}"}}}}"#, "x".repeat(8192));
    refused("POST", "secret/data/keep", Some(&big), 413, "larger than");
    // Paths with `..`, a NUL, a trailing slash, an empty segment.
    refused(
        "POST",
        "secret/data/a/../keep",
        Some(r#"{"data":{"v":"x"}}"#),
        400,
        "invalid secret path",
    );
    refused(
        "POST",
        "secret/data/a%00b",
        Some(r#"{"data":{"v":"x"}}"#),
        400,
        "invalid secret path",
    );
    refused(
        "POST",
        "secret/data/keep/",
        Some(r#"{"data":{"v":"x"}}"#),
        400,
        "does not end with",
    );
    refused(
        "POST",
        "secret/data/a//b",
        Some(r#"{"data":{"v":"x"}}"#),
        404,
        "unsupported path",
    );
    // Data that is not an object; versions that are not numbers; a bad version query.
    refused(
        "POST",
        "secret/data/keep",
        Some(r#"{"data":"x"}"#),
        400,
        "data must be a JSON object",
    );
    refused(
        "POST",
        "secret/data/keep",
        Some(r#"{}"#),
        400,
        "no data provided",
    );
    refused(
        "POST",
        "secret/delete/keep",
        Some(r#"{"versions":["one"]}"#),
        400,
        "versions",
    );
    refused(
        "GET",
        "secret/data/keep?version=abc",
        None,
        400,
        "invalid version",
    );
    refused(
        "POST",
        "secret/metadata/keep",
        Some(r#"{"custom_metadata":{"k":""}}"#),
        400,
        "custom_metadata validation failed",
    );
    unchanged(&broker);
    // `max_versions` exceeded: the oldest versions go, as in Vault, and say so.
    ok(
        &broker,
        "POST",
        "secret/metadata/pruned",
        Some(&json!({"max_versions": 2})),
    );
    for v in 1..=3 {
        put(&broker, "secret/data/pruned", json!({ "v": v }));
    }
    assert_eq!(
        broker
            .request("GET", "secret/data/pruned?version=1", None)
            .0,
        404
    );
    let meta = ok(&broker, "GET", "secret/metadata/pruned", None);
    assert_eq!(meta["data"]["oldest_version"], 2);
    assert_eq!(
        ok(&broker, "GET", "secret/data/pruned?version=2", None)["data"]["data"]["v"],
        2
    );
    // A destroyed version stays destroyed: undelete does not bring it back.
    ok(
        &broker,
        "POST",
        "secret/destroy/pruned",
        Some(&json!({"versions": [3]})),
    );
    ok(
        &broker,
        "POST",
        "secret/undelete/pruned",
        Some(&json!({"versions": [3]})),
    );
    let (status, gone) = broker.request("GET", "secret/data/pruned", None);
    assert_eq!(
        (status, &gone["data"]["metadata"]["destroyed"]),
        (404, &json!(true))
    );
    // A deleted mount: its paths are gone, and a new mount there starts empty.
    broker.bao_ok(&["secrets", "disable", "secret"]);
    let (status, _) = broker.request("GET", "secret/data/keep", None);
    assert!((400..500).contains(&status), "{status}");
    let (status, _) = broker.request("POST", "secret/data/keep", Some(&json!({"data": {"v": 1}})));
    assert!((400..500).contains(&status), "{status}");
    broker.bao_ok(&["secrets", "enable", "-path=secret", "kv-v2"]);
    assert_eq!(broker.request("GET", "secret/data/keep", None).0, 404);
}

#[test]
fn every_acknowledged_version_reads_back_after_a_kill_9_during_writes() {
    let state = private_dir();
    let mut broker = Broker::start(options(state.path(), ""));
    broker.bao_ok(&["secrets", "enable", "-path=secret", "kv-v2"]);
    // Every version written stays (each path gets a few dozen).
    ok(
        &broker,
        "POST",
        "secret/config",
        Some(&json!({"max_versions": 1000})),
    );
    let acknowledged = Arc::new(Mutex::new(Vec::<(String, u64, String)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (addr, token) = (broker.addr.clone(), broker.token.clone());
            let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let path = format!("w{w}/s{}", i % 5);
                    let value = format!("{w}-{i}");
                    let body = json!({"data": {"value": value}}).to_string();
                    let (status, text) = crate::support::raw_at(
                        &addr,
                        "POST",
                        &format!("secret/data/{path}"),
                        Some(&body),
                        &[("X-Vault-Token", &token)],
                    );
                    match status {
                        200 => {
                            let answer: Value = serde_json::from_str(&text).unwrap();
                            let version = answer["data"]["version"].as_u64().unwrap();
                            acknowledged.lock().unwrap().push((path, version, value));
                        }
                        0 => return, // the broker is gone
                        _ => {}
                    }
                    i += 1;
                }
            })
        })
        .collect();
    assert!(eventually(Duration::from_secs(60), || acknowledged
        .lock()
        .unwrap()
        .len()
        >= 200));
    broker.kill9();
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.join().unwrap();
    }
    broker.restart();
    let acknowledged = acknowledged.lock().unwrap().clone();
    for (path, version, value) in &acknowledged {
        let (status, read) = broker.request(
            "GET",
            &format!("secret/data/{path}?version={version}"),
            None,
        );
        assert_eq!(status, 200, "{path} v{version}: {read}");
        assert_eq!(
            read["data"]["data"]["value"],
            value.as_str(),
            "{path} v{version}"
        );
    }
    println!(
        "{} acknowledged versions read back after kill -9",
        acknowledged.len()
    );
}

#[test]
fn a_backend_gone_answers_503_and_writes_nothing_until_it_is_back() {
    let plugins = crate::support::PluginDir::new();
    let control =
        crate::plugins::controlled_instance(&plugins, "agent", "on_unavailable = \"evict\"");
    // Health checks out of the way: only the plugin's own report counts.
    let broker = crate::plugins::config_broker(&plugins, "plugin_health_interval = \"1h\"");
    broker.bao_ok(&[
        "secrets",
        "enable",
        "-path=secret",
        "-options=backend=agent",
        "kv-v2",
    ]);
    put(&broker, "secret/data/held", json!({ "v": "customer" }));
    assert_eq!(
        ok(&broker, "GET", "secret/key", None)["data"]["backend"],
        "agent"
    );

    crate::plugins::write_control(&control, "instance down agent gone\n");
    assert!(eventually(Duration::from_secs(15), || {
        broker.request("GET", "secret/data/held", None).0 == 503
    }));
    let (status, body) = broker.request("GET", "secret/data/held", None);
    assert_eq!(status, 503);
    assert!(!body.to_string().contains("customer"), "{body}");
    for (path, body) in [
        ("secret/data/held", json!({"data": {"v": "new"}})),
        ("secret/data/fresh", json!({"data": {"v": "new"}})),
    ] {
        let (status, answer) = broker.request("POST", path, Some(&body));
        assert_eq!(status, 503, "{path}: {answer}");
    }
    // Metadata needs no key: it still reads, and shows no partial write.
    let meta = ok(&broker, "GET", "secret/metadata/held", None);
    assert_eq!(meta["data"]["current_version"], 1);
    assert_eq!(broker.request("GET", "secret/metadata/fresh", None).0, 404);

    crate::plugins::write_control(&control, "instance up\n");
    assert!(eventually(Duration::from_secs(15), || {
        broker.request("GET", "secret/data/held", None).0 == 200
    }));
    let read = ok(&broker, "GET", "secret/data/held", None);
    assert_eq!(read["data"]["data"]["v"], "customer");
    assert_eq!(read["data"]["metadata"]["version"], 1);
    put(&broker, "secret/data/held", json!({ "v": "after" }));
}

#[test]
fn a_secret_is_bounded_in_size_and_says_so() {
    let broker = Broker::dev();
    let big = |len: usize| json!({ "data": { "v": "x".repeat(len) } });
    // One version holds at most 1 MiB of data.
    let (status, body) = broker.request("POST", "secret/data/big", Some(&big(1024 * 1024 + 1)));
    assert_eq!(status, 400, "{body}");
    assert!(
        body["errors"][0].as_str().unwrap().contains("more than"),
        "{body}"
    );
    // A secret's kept versions at most 8 MiB, sealed: the write that would pass it is
    // refused, and every version written before it still reads.
    ok(
        &broker,
        "POST",
        "secret/metadata/many",
        Some(&json!({"max_versions": 100})),
    );
    let mut written = 0;
    let refused = loop {
        let (status, body) = broker.request("POST", "secret/data/many", Some(&big(1000 * 1000)));
        if status != 200 {
            break (status, body);
        }
        written += 1;
        assert!(written < 20, "never refused");
    };
    assert_eq!(refused.0, 400, "{}", refused.1);
    assert!(refused.1["errors"][0]
        .as_str()
        .unwrap()
        .contains("max_versions"));
    assert!(written >= 4, "{written}");
    let meta = ok(&broker, "GET", "secret/metadata/many", None);
    assert_eq!(meta["data"]["current_version"], written);
    let read = ok(&broker, "GET", "secret/data/many?version=1", None);
    assert_eq!(
        read["data"]["data"]["v"].as_str().unwrap().len(),
        1000 * 1000
    );
}

#[test]
fn concurrent_writes_to_one_secret_all_land_one_version_each() {
    let broker = Broker::dev();
    let writers: Vec<_> = (0..32)
        .map(|w| {
            let (addr, token) = (broker.addr.clone(), broker.token.clone());
            std::thread::spawn(move || {
                let body = json!({"data": {"writer": w}}).to_string();
                let (status, answer) = crate::support::raw_at(
                    &addr,
                    "POST",
                    "secret/data/contended",
                    Some(&body),
                    &[("X-Vault-Token", &token)],
                );
                assert_eq!(status, 200, "writer {w}: {answer}");
                let answer: Value = serde_json::from_str(&answer).unwrap();
                answer["data"]["version"].as_u64().unwrap()
            })
        })
        .collect();
    let mut versions: Vec<u64> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    versions.sort_unstable();
    // Without `cas`, Vault never refuses a write for a concurrent one: each gets its own
    // version.
    assert_eq!(versions, (1..=32).collect::<Vec<u64>>());
}
