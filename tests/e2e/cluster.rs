//! Several broker processes on one real PostgreSQL (DESIGN §7): every node serves the full
//! API, a change made through one is seen by the others within a second, and the faults of
//! a cluster — the database restarted under load, a node killed, a node cut off from the
//! database while a token is revoked, concurrent single-use logins on two nodes, a node
//! killed during rotations — never lose an acknowledged ciphertext nor honour a revoked
//! token.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Barrier, Mutex,
    },
    time::{Duration, Instant},
};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use keybroker_pg_harness::PgServer;
use serde_json::{json, Value};

use crate::support::{
    eventually, private_dir, proxy::Proxy, sha256_file, Broker, Options, PluginDir,
};

/// What "seen by every node" means: within one second.
const PROPAGATION: Duration = Duration::from_secs(1);

/// A database, a shared seal and plugin directory, and the nodes started on them.
struct Cluster {
    pg: PgServer,
    url: String,
    seal: tempfile::TempDir,
    plugins: PluginDir,
}

impl Cluster {
    fn new() -> Self {
        let pg = PgServer::start();
        let url = pg.create_database("keybroker");
        Self {
            pg,
            url,
            seal: private_dir(),
            plugins: PluginDir::new(),
        }
    }

    /// A node on `url` (the cluster's database unless a proxy stands between). The first
    /// node initialises the store; later ones get its root token.
    fn node_at(&self, url: &str, timing: &str, root: Option<&Broker>) -> Broker {
        let config = format!(
            "state_dir = \"{{state}}\"\nstorage = \"{url}\"\nplugin_dir = \"{plugins}\"\n\
             [listener]\naddress = \"127.0.0.1:{{port}}\"\n\
             [seal]\ntype = \"file\"\npath = \"{seal}\"\n\
             [timing]\nmax_staleness = \"1s\"\nstorage_heartbeat = \"200ms\"\nstorage_timeout = \"1s\"\n{timing}\n",
            plugins = self.plugins.path().display(),
            seal = self.seal.path().join("root.key").display(),
        );
        let mut node = Broker::start(Options {
            config: Some(config),
            ..Options::default()
        });
        if let Some(first) = root {
            node.token = first.token.clone();
        }
        assert!(
            node.token.starts_with("kbs."),
            "no root token: {}",
            node.log()
        );
        node
    }

    fn node(&self, root: Option<&Broker>) -> Broker {
        self.node_at(&self.url, "", root)
    }
}

fn ok(node: &Broker, method: &str, path: &str, body: Option<&Value>) -> Value {
    let (status, value) = node.request(method, path, body);
    assert!(
        status == 200 || status == 204,
        "{method} {path}: {status} {value}"
    );
    value
}

fn status_with(node: &Broker, token: &str, method: &str, path: &str, body: &Value) -> u16 {
    node.request_with(method, path, Some(body), &[("X-Vault-Token", token)])
        .0
}

fn plaintext() -> Value {
    json!({ "plaintext": STANDARD.encode("cluster data") })
}

#[test]
fn a_change_made_through_one_node_is_seen_by_the_others_within_a_second() {
    let cluster = Cluster::new();
    let one = cluster.node(None);
    let two = cluster.node(Some(&one));

    // Keys and ciphertexts work across nodes.
    ok(&one, "POST", "transit/keys/shared", None);
    let ciphertext = one.encrypt("shared", b"from node one");
    assert_eq!(two.decrypt("shared", &ciphertext), b"from node one");

    // A rotated key: the other node encrypts with the new version within a second.
    ok(&one, "POST", "transit/keys/shared/rotate", None);
    assert!(eventually(PROPAGATION, || {
        two.encrypt("shared", b"x").starts_with("vault:v2:")
    }));
    // A reconfigured key.
    ok(
        &one,
        "POST",
        "transit/keys/shared/config",
        Some(&json!({ "min_decryption_version": 2 })),
    );
    assert!(eventually(PROPAGATION, || {
        two.request(
            "POST",
            "transit/decrypt/shared",
            Some(&json!({ "ciphertext": ciphertext })),
        )
        .0 == 400
    }));
    // A reconfigured mount: upserts refused on the other node too.
    ok(
        &one,
        "POST",
        "transit/config/keys",
        Some(&json!({ "disable_upsert": true })),
    );
    assert!(eventually(PROPAGATION, || {
        two.request("POST", "transit/encrypt/brand-new", Some(&plaintext()))
            .0
            == 400
    }));

    // A revoked token.
    let value = ok(
        &one,
        "POST",
        "auth/token/create",
        Some(&json!({ "policies": ["enc"] })),
    );
    let token = value["auth"]["client_token"].as_str().unwrap().to_owned();
    let accessor = value["auth"]["accessor"].as_str().unwrap().to_owned();
    let policy = "path \"transit/encrypt/shared\" { capabilities = [\"update\"] }";
    ok(
        &one,
        "PUT",
        "sys/policies/acl/enc",
        Some(&json!({ "policy": policy })),
    );
    let encrypt =
        |node: &Broker| status_with(node, &token, "POST", "transit/encrypt/shared", &plaintext());
    assert!(eventually(PROPAGATION, || encrypt(&two) == 200));
    // A changed policy.
    ok(
        &one,
        "PUT",
        "sys/policies/acl/enc",
        Some(&json!({ "policy": "path \"transit/keys\" { capabilities = [\"list\"] }" })),
    );
    assert!(eventually(PROPAGATION, || encrypt(&two) == 403));
    ok(
        &one,
        "PUT",
        "sys/policies/acl/enc",
        Some(&json!({ "policy": policy })),
    );
    assert!(eventually(PROPAGATION, || encrypt(&two) == 200));
    ok(
        &one,
        "POST",
        "auth/token/revoke-accessor",
        Some(&json!({ "accessor": accessor })),
    );
    assert!(eventually(PROPAGATION, || encrypt(&two) == 403));

    // A destroyed secret_id: the other node refuses the login at once.
    ok(
        &one,
        "POST",
        "sys/auth/approle",
        Some(&json!({ "type": "approle" })),
    );
    ok(
        &one,
        "POST",
        "auth/approle/role/svc",
        Some(&json!({ "token_policies": ["enc"] })),
    );
    let role_id = ok(&one, "GET", "auth/approle/role/svc/role-id", None)["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret = ok(&one, "POST", "auth/approle/role/svc/secret-id", None)["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let login = json!({ "role_id": role_id, "secret_id": secret });
    let login_on_two = || {
        two.request_with("POST", "auth/approle/login", Some(&login), &[])
            .0
    };
    assert!(eventually(PROPAGATION, || login_on_two() == 200));
    ok(
        &one,
        "POST",
        "auth/approle/role/svc/secret-id/destroy",
        Some(&json!({ "secret_id": secret })),
    );
    assert!(eventually(PROPAGATION, || login_on_two() == 400));

    // A deleted tenant: its tokens and namespace are gone on the other node.
    ok(&one, "POST", "sys/namespaces/acme", None);
    assert!(eventually(PROPAGATION, || {
        two.request("GET", "sys/namespaces/acme", None).0 == 200
    }));
    ok(
        &one,
        "POST",
        "acme/sys/mounts/transit",
        Some(&json!({ "type": "transit" })),
    );
    let value = ok(&one, "POST", "acme/auth/token/create", Some(&json!({})));
    let acme_token = value["auth"]["client_token"].as_str().unwrap().to_owned();
    let lookup = |node: &Broker| {
        node.request_with(
            "GET",
            "acme/auth/token/lookup-self",
            None,
            &[("X-Vault-Token", &acme_token)],
        )
        .0
    };
    assert!(eventually(PROPAGATION, || lookup(&two) == 200));
    ok(&one, "DELETE", "sys/namespaces/acme", None);
    assert!(eventually(PROPAGATION, || {
        lookup(&two) == 403 && two.request("GET", "sys/namespaces/acme", None).0 == 404
    }));

    // A reloaded plugin set: a drop-in added to the shared directory and reloaded through
    // node one is served by node two.
    let library = cluster.plugins.add_library("testing", "testing.so");
    let text = format!(
        "name = \"late\"\nlibrary = \"{}\"\nsha256 = \"{}\"\ntenants = [\"*\"]\n[config]\n",
        library.display(),
        sha256_file(&library),
    );
    cluster.plugins.write("late.toml", &text);
    ok(&one, "POST", "sys/plugins/reload", None);
    assert!(eventually(PROPAGATION, || {
        let (_, value) = two.request("GET", "sys/plugins/backends", None);
        value["data"]["backends"]
            .as_array()
            .is_some_and(|all| all.iter().any(|b| b["name"] == "late"))
    }));
}

#[test]
fn sixty_four_concurrent_logins_over_two_nodes_with_a_single_use_secret_id_give_one_token() {
    let cluster = Cluster::new();
    let one = cluster.node(None);
    let two = cluster.node(Some(&one));
    ok(
        &one,
        "POST",
        "sys/auth/approle",
        Some(&json!({ "type": "approle" })),
    );
    ok(
        &one,
        "POST",
        "auth/approle/role/once",
        Some(&json!({ "secret_id_num_uses": 1 })),
    );
    let role_id = ok(&one, "GET", "auth/approle/role/once/role-id", None)["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret = ok(&one, "POST", "auth/approle/role/once/secret-id", None)["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = json!({ "role_id": role_id, "secret_id": secret }).to_string();
    let barrier = Arc::new(Barrier::new(64));
    let nodes = [one.addr.clone(), two.addr.clone()];
    let threads: Vec<_> = (0..64)
        .map(|i| {
            let (barrier, body, addr) = (barrier.clone(), body.clone(), nodes[i % 2].clone());
            std::thread::spawn(move || {
                barrier.wait();
                let out = crate::support::curl(&[
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "-X",
                    "POST",
                    "--data-binary",
                    &body,
                    &format!("{addr}/v1/auth/approle/login"),
                ]);
                String::from_utf8_lossy(&out.stdout).into_owned()
            })
        })
        .collect();
    let codes: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(codes.iter().filter(|c| *c == "200").count(), 1, "{codes:?}");
    assert_eq!(
        codes.iter().filter(|c| *c == "400").count(),
        63,
        "{codes:?}"
    );
}

/// Encrypts through `node` until `stop`, recording (when it finished, status, how long it
/// took) for each request.
fn load(
    addr: String,
    token: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<(Instant, u16, Duration)>> {
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let body = plaintext().to_string();
        while !stop.load(Ordering::SeqCst) {
            let started = Instant::now();
            let out = crate::support::curl(&[
                "-s",
                "-o",
                "/dev/null",
                "-m",
                "10",
                "-w",
                "%{http_code}",
                "-H",
                &format!("X-Vault-Token: {token}"),
                "-X",
                "POST",
                "--data-binary",
                &body,
                &format!("{addr}/v1/transit/encrypt/load"),
            ]);
            let code = String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0);
            seen.push((Instant::now(), code, started.elapsed()));
        }
        seen
    })
}

#[test]
fn postgres_restarted_under_load_gives_503_fast_then_service_resumes_without_a_node_restart() {
    let mut cluster = Cluster::new();
    let one = cluster.node(None);
    let two = cluster.node(Some(&one));
    ok(&one, "POST", "transit/keys/load", None);
    let stop = Arc::new(AtomicBool::new(false));
    let loads = [
        load(one.addr.clone(), one.token.clone(), stop.clone()),
        load(two.addr.clone(), two.token.clone(), stop.clone()),
    ];
    std::thread::sleep(Duration::from_millis(500));
    let down = Instant::now();
    cluster.pg.stop();
    std::thread::sleep(Duration::from_secs(3));
    let up = Instant::now();
    cluster.pg.restart();
    std::thread::sleep(Duration::from_secs(6));
    stop.store(true, Ordering::SeqCst);
    for (node, load) in [&one, &two].into_iter().zip(loads) {
        let seen = load.join().unwrap();
        // No request hangs, whatever the database does.
        let slowest = seen.iter().map(|(_, _, took)| *took).max().unwrap();
        assert!(
            slowest < Duration::from_secs(3),
            "a request took {slowest:?}"
        );
        // Refused with 503 within 2 s of the database going away…
        let first_503 = seen
            .iter()
            .find(|(at, code, _)| *at > down && *code == 503)
            .map(|(at, _, _)| *at - down);
        assert!(
            first_503.is_some_and(|after| after <= Duration::from_secs(2)),
            "first 503 after {first_503:?}: {:?}",
            seen.iter().map(|(_, c, _)| c).collect::<Vec<_>>()
        );
        // …only 200 or 503 meanwhile, and served again within 5 s of it being back.
        assert!(seen.iter().all(|(_, code, _)| *code == 200 || *code == 503));
        let back = seen
            .iter()
            .find(|(at, code, _)| *at > up && *code == 200)
            .map(|(at, _, _)| *at - up);
        assert!(
            back.is_some_and(|after| after <= Duration::from_secs(5)),
            "served again after {back:?}"
        );
        assert!(seen.last().is_some_and(|(_, code, _)| *code == 200));
        let log = node.log();
        assert!(!log.contains("panicked"), "{log}");
    }
    for node in [&one, &two] {
        assert_eq!(
            node.request("GET", "sys/health", None).0,
            200,
            "{}",
            node.log()
        );
    }
}

#[test]
fn a_node_killed_with_sigkill_leaves_the_others_serving() {
    let cluster = Cluster::new();
    let mut one = cluster.node(None);
    let two = cluster.node(Some(&one));
    ok(&one, "POST", "transit/keys/load", None);
    let stop = Arc::new(AtomicBool::new(false));
    let load_two = load(two.addr.clone(), two.token.clone(), stop.clone());
    std::thread::sleep(Duration::from_millis(500));
    one.kill9();
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    let seen = load_two.join().unwrap();
    assert!(seen.len() > 10, "{}", seen.len());
    assert!(
        seen.iter().all(|(_, code, _)| *code == 200),
        "{:?}",
        seen.iter().map(|(_, c, _)| c).collect::<Vec<_>>()
    );
}

#[test]
fn a_revocation_made_while_a_node_is_cut_off_is_honoured_by_it() {
    let cluster = Cluster::new();
    let one = cluster.node(None);
    let proxy = Proxy::start(cluster.pg.port());
    let proxied = cluster.url.replace(
        &format!(":{}/", cluster.pg.port()),
        &format!(":{}/", proxy.port),
    );
    let two = cluster.node_at(&proxied, "", Some(&one));
    ok(&one, "POST", "transit/keys/cut", None);
    let created = |node: &Broker| {
        let value = ok(node, "POST", "auth/token/create", Some(&json!({})));
        let text = |field: &str| value["auth"][field].as_str().unwrap().to_owned();
        (text("client_token"), text("accessor"))
    };
    let ((revoked, revoked_accessor), (kept, _)) = (created(&one), created(&one));
    let lookup = |token: &str| {
        two.request_with(
            "GET",
            "auth/token/lookup-self",
            None,
            &[("X-Vault-Token", token)],
        )
        .0
    };
    assert_eq!(lookup(&revoked), 200);
    assert_eq!(lookup(&kept), 200);

    proxy.cut();
    let cut_at = Instant::now();
    ok(
        &one,
        "POST",
        "auth/token/revoke-accessor",
        Some(&json!({ "accessor": revoked_accessor })),
    );
    // Node two cannot hear of it: within its staleness bound (1 s here) it refuses every
    // authenticated request rather than honour a token that may be revoked.
    assert!(eventually(Duration::from_secs(2), || lookup(&revoked) == 503));
    assert!(cut_at.elapsed() < Duration::from_millis(2500));
    assert_eq!(lookup(&kept), 503);
    let (status, health) = two.request("GET", "sys/health", None);
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["sealed"], false);
    assert_eq!(health["storage_in_sync"], false);

    // Back on the database: the revoked token is refused, the other one works.
    proxy.restore();
    assert!(eventually(Duration::from_secs(10), || lookup(&kept) == 200));
    assert_eq!(lookup(&revoked), 403);
    assert_eq!(two.request("GET", "sys/health", None).0, 200);
}

#[test]
fn every_acknowledged_ciphertext_decrypts_on_another_node_after_a_kill_during_rotations() {
    let cluster = Cluster::new();
    // Rotation every 40 encryptions, counted in blocks of 8: a run of a few hundred
    // encryptions rotates many times, and the kill lands in or near one.
    let timing = "rotation_threshold = 40\ncounter_block = 8\n";
    let mut one = cluster.node_at(&cluster.url, timing, None);
    let two = cluster.node_at(&cluster.url, timing, Some(&one));
    ok(&one, "POST", "transit/keys/rotating", None);
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let writer = {
        let (addr, token, acknowledged) =
            (one.addr.clone(), one.token.clone(), acknowledged.clone());
        std::thread::spawn(move || {
            for i in 0..100_000 {
                let body = json!({ "plaintext": STANDARD.encode(format!("record {i}")) });
                let out = crate::support::curl(&[
                    "-s",
                    "-m",
                    "5",
                    "-H",
                    &format!("X-Vault-Token: {token}"),
                    "-X",
                    "POST",
                    "--data-binary",
                    &body.to_string(),
                    &format!("{addr}/v1/transit/encrypt/rotating"),
                ]);
                let Ok(value) = serde_json::from_slice::<Value>(&out.stdout) else {
                    return;
                };
                let Some(ciphertext) = value["data"]["ciphertext"].as_str() else {
                    return;
                };
                acknowledged
                    .lock()
                    .unwrap()
                    .push((format!("record {i}"), ciphertext.to_owned()));
            }
        })
    };
    assert!(eventually(Duration::from_secs(30), || {
        acknowledged.lock().unwrap().len() >= 300
    }));
    one.kill9();
    writer.join().unwrap();
    let acknowledged = acknowledged.lock().unwrap().clone();
    let versions: std::collections::BTreeSet<&str> = acknowledged
        .iter()
        .filter_map(|(_, c)| c.split(':').nth(1))
        .collect();
    assert!(versions.len() >= 5, "rotations: {versions:?}");
    for (plaintext, ciphertext) in &acknowledged {
        assert_eq!(two.decrypt("rotating", ciphertext), plaintext.as_bytes());
    }
}
