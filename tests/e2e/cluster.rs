//! Several broker processes on one real PostgreSQL (ARCHITECTURE.md §7): every node serves the full
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

/// What "seen by every node" means: within one second (the nodes' `max_staleness`).
const PROPAGATION: Duration = Duration::from_secs(1);

/// How a node answers about a change made through another node.
#[derive(Debug, PartialEq, Eq)]
enum View {
    /// As before the change.
    Before,
    /// As after the change.
    After,
    /// 503: out of sync with the cluster, and saying so rather than answer from stale state.
    OutOfSync,
}

/// Polls `view` (one request to a node) after a change acknowledged at `changed` through
/// another node, until the node shows the change. The bound is what is checked: a request
/// sent more than [`PROPAGATION`] after the change sees it, or is refused as out of sync, but
/// is never answered as before. Before the bound either answer is right, so how fast this
/// machine answers changes nothing; how soon the node shows the change at all (not merely
/// refuses) is its speed on a loaded machine, given a generous deadline.
fn propagated(what: &str, changed: Instant, mut view: impl FnMut() -> View) {
    let deadline = changed + Duration::from_secs(30);
    loop {
        let sent = Instant::now();
        match view() {
            View::After => return,
            View::Before => assert!(
                sent <= changed + PROPAGATION,
                "{what}: a request sent {:?} after the change still saw the state before it",
                sent - changed
            ),
            View::OutOfSync => {}
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not seen within 30 s (out of sync meanwhile)"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A status as a [`View`]: `before` or `after`, or 503; anything else fails the test.
fn view_of(what: &str, status: u16, before: u16, after: u16) -> View {
    match status {
        503 => View::OutOfSync,
        status if status == after => View::After,
        status if status == before => View::Before,
        status => panic!("{what}: unexpected status {status}"),
    }
}

/// Runs `apply` (a change made through one node) and returns when it was acknowledged.
fn change(apply: impl FnOnce()) -> Instant {
    apply();
    Instant::now()
}

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
    node.ok(method, path, body)
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
    let changed = change(|| {
        ok(&one, "POST", "transit/keys/shared/rotate", None);
    });
    propagated("a rotation", changed, || {
        let (status, value) = two.request(
            "POST",
            "transit/encrypt/shared",
            Some(&json!({ "plaintext": STANDARD.encode("x") })),
        );
        match (status, value["data"]["ciphertext"].as_str()) {
            (503, _) => View::OutOfSync,
            (200, Some(c)) if c.starts_with("vault:v2:") => View::After,
            (200, Some(c)) if c.starts_with("vault:v1:") => View::Before,
            _ => panic!("a rotation: unexpected answer {status} {value}"),
        }
    });
    // A reconfigured key.
    let changed = change(|| {
        ok(
            &one,
            "POST",
            "transit/keys/shared/config",
            Some(&json!({ "min_decryption_version": 2 })),
        );
    });
    propagated("min_decryption_version", changed, || {
        let (status, _) = two.request(
            "POST",
            "transit/decrypt/shared",
            Some(&json!({ "ciphertext": ciphertext })),
        );
        view_of("min_decryption_version", status, 200, 400)
    });
    // A reconfigured mount: upserts refused on the other node too. A new key name for each
    // try: an upsert answered before the change creates its key, which a later try of the
    // same name would find (200 whatever the mount's configuration).
    let changed = change(|| {
        ok(
            &one,
            "POST",
            "transit/config/keys",
            Some(&json!({ "disable_upsert": true })),
        );
    });
    let mut tries = 0;
    propagated("disable_upsert", changed, || {
        tries += 1;
        let path = format!("transit/encrypt/brand-new-{tries}");
        let (status, _) = two.request("POST", &path, Some(&plaintext()));
        view_of("disable_upsert", status, 200, 400)
    });

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
    let changed = change(|| {
        ok(
            &one,
            "PUT",
            "sys/policies/acl/enc",
            Some(&json!({ "policy": policy })),
        );
    });
    let encrypt =
        |node: &Broker| status_with(node, &token, "POST", "transit/encrypt/shared", &plaintext());
    propagated("a new policy", changed, || {
        view_of("a new policy", encrypt(&two), 403, 200)
    });
    // A changed policy.
    let changed = change(|| {
        ok(
            &one,
            "PUT",
            "sys/policies/acl/enc",
            Some(&json!({ "policy": "path \"transit/keys\" { capabilities = [\"list\"] }" })),
        );
    });
    propagated("a narrowed policy", changed, || {
        view_of("a narrowed policy", encrypt(&two), 200, 403)
    });
    let changed = change(|| {
        ok(
            &one,
            "PUT",
            "sys/policies/acl/enc",
            Some(&json!({ "policy": policy })),
        );
    });
    propagated("a widened policy", changed, || {
        view_of("a widened policy", encrypt(&two), 403, 200)
    });
    let changed = change(|| {
        ok(
            &one,
            "POST",
            "auth/token/revoke-accessor",
            Some(&json!({ "accessor": accessor })),
        );
    });
    propagated("a revocation", changed, || {
        view_of("a revocation", encrypt(&two), 200, 403)
    });

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
    let changed = Instant::now();
    let login = json!({ "role_id": role_id, "secret_id": secret });
    let login_on_two = || {
        two.request_with("POST", "auth/approle/login", Some(&login), &[])
            .0
    };
    propagated("a new secret_id", changed, || {
        view_of("a new secret_id", login_on_two(), 400, 200)
    });
    let changed = change(|| {
        ok(
            &one,
            "POST",
            "auth/approle/role/svc/secret-id/destroy",
            Some(&json!({ "secret_id": secret })),
        );
    });
    propagated("a destroyed secret_id", changed, || {
        view_of("a destroyed secret_id", login_on_two(), 200, 400)
    });

    // A deleted tenant: its tokens and namespace are gone on the other node.
    let changed = change(|| {
        ok(&one, "POST", "sys/namespaces/acme", None);
    });
    propagated("a new namespace", changed, || {
        let status = two.request("GET", "sys/namespaces/acme", None).0;
        view_of("a new namespace", status, 404, 200)
    });
    ok(
        &one,
        "POST",
        "acme/sys/mounts/transit",
        Some(&json!({ "type": "transit" })),
    );
    let value = ok(&one, "POST", "acme/auth/token/create", Some(&json!({})));
    let changed = Instant::now();
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
    propagated("a tenant's new token", changed, || {
        view_of("a tenant's new token", lookup(&two), 403, 200)
    });
    let changed = change(|| {
        ok(&one, "DELETE", "sys/namespaces/acme", None);
    });
    propagated("a deleted tenant", changed, || {
        let token = view_of("a deleted tenant's token", lookup(&two), 200, 403);
        let status = two.request("GET", "sys/namespaces/acme", None).0;
        let namespace = view_of("a deleted tenant's namespace", status, 200, 404);
        if token == View::OutOfSync || namespace == View::OutOfSync {
            View::OutOfSync
        } else if token == View::After && namespace == View::After {
            View::After
        } else {
            View::Before
        }
    });

    // A reloaded plugin set: a drop-in added to the shared directory and reloaded through
    // node one is served by node two.
    let library = cluster.plugins.add_library("testing", "testing.so");
    let text = format!(
        "name = \"late\"\nlibrary = \"{}\"\nsha256 = \"{}\"\ntenants = [\"*\"]\n[config]\n",
        library.display(),
        sha256_file(&library),
    );
    cluster.plugins.write("late.toml", &text);
    let changed = change(|| {
        ok(&one, "POST", "sys/plugins/reload", None);
    });
    propagated("a plugin reload", changed, || {
        let (status, value) = two.request("GET", "sys/plugins/backends", None);
        let listed = value["data"]["backends"]
            .as_array()
            .is_some_and(|all| all.iter().any(|b| b["name"] == "late"));
        match (status, listed) {
            (503, _) => View::OutOfSync,
            (200, true) => View::After,
            (200, false) => View::Before,
            _ => panic!("a plugin reload: unexpected answer {status} {value}"),
        }
    });
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

/// One request of a load.
#[derive(Clone, Copy, Debug)]
struct Served {
    /// When it was sent (just before curl started).
    sent: Instant,
    /// How long curl took from its start of the transfer to the answer (so not counting the
    /// time a loaded machine takes to start a process).
    took: Duration,
    /// The HTTP status (0: none).
    code: u16,
}

/// A load on one node: every request, appended as it is answered.
type Seen = Arc<Mutex<Vec<Served>>>;

/// Encrypts through `node` until `stop`, recording each request as it is answered.
fn load(addr: String, token: String, stop: Arc<AtomicBool>) -> (Seen, std::thread::JoinHandle<()>) {
    let seen = Seen::default();
    let record = seen.clone();
    let thread = std::thread::spawn(move || {
        let body = plaintext().to_string();
        while !stop.load(Ordering::SeqCst) {
            let sent = Instant::now();
            let out = crate::support::curl(&[
                "-s",
                "-o",
                "/dev/null",
                "-m",
                "10",
                "-w",
                "%{http_code} %{time_total}",
                "-H",
                &format!("X-Vault-Token: {token}"),
                "-X",
                "POST",
                "--data-binary",
                &body,
                &format!("{addr}/v1/transit/encrypt/load"),
            ]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let (code, took) = text.split_once(' ').unwrap_or((&text, ""));
            record.lock().unwrap().push(Served {
                sent,
                took: took
                    .trim()
                    .parse()
                    .map_or_else(|_| sent.elapsed(), Duration::from_secs_f64),
                code: code.parse().unwrap_or(0),
            });
        }
    });
    (seen, thread)
}

/// Waits until `done` holds for every load (a real signal: what the checks after need has
/// happened), with a generous deadline: how soon a load gets there is the machine's speed.
/// On failure the loads are stopped before the test fails with what they saw.
fn wait_for_loads(
    what: &str,
    loads: &[&Seen],
    stop: &AtomicBool,
    done: impl Fn(&[Served]) -> bool,
) {
    let all_done = || loads.iter().all(|seen| done(&seen.lock().unwrap()));
    if !eventually(Duration::from_secs(60), all_done) {
        stop.store(true, Ordering::SeqCst);
        let codes: Vec<Vec<u16>> = loads
            .iter()
            .map(|seen| seen.lock().unwrap().iter().map(|s| s.code).collect())
            .collect();
        panic!("the load never showed that {what} within 60 s: {codes:?}");
    }
}

#[test]
fn postgres_restarted_under_load_gives_503_fast_then_service_resumes_without_a_node_restart() {
    let mut cluster = Cluster::new();
    let one = cluster.node(None);
    let two = cluster.node(Some(&one));
    ok(&one, "POST", "transit/keys/load", None);
    let stop = Arc::new(AtomicBool::new(false));
    let (seen_one, load_one) = load(one.addr.clone(), one.token.clone(), stop.clone());
    let (seen_two, load_two) = load(two.addr.clone(), two.token.clone(), stop.clone());
    let seen = [&seen_one, &seen_two];
    // The fault comes under load: once both nodes are serving it.
    wait_for_loads("both nodes serve", &seen, &stop, |served| {
        served.iter().filter(|s| s.code == 200).count() >= 5
    });
    cluster.pg.stop();
    // The database is gone by now (pg_ctl waited for it to exit).
    let down = Instant::now();
    // Down for 3 s (the fault), and at least until both nodes have refused a request: the
    // checks below need a refusal, which comes at the machine's speed.
    std::thread::sleep(Duration::from_secs(3));
    wait_for_loads("both nodes refuse", &seen, &stop, |served| {
        served.iter().any(|s| s.sent > down && s.code == 503)
    });
    let up = Instant::now();
    cluster.pg.restart();
    // The database is back by now (pg_ctl waited for it to accept connections).
    let back = Instant::now();
    wait_for_loads("both nodes serve again", &seen, &stop, |served| {
        served.iter().any(|s| s.sent > back && s.code == 200)
    });
    stop.store(true, Ordering::SeqCst);
    load_one.join().unwrap();
    load_two.join().unwrap();
    for (node, seen) in [&one, &two].into_iter().zip(seen) {
        let seen = seen.lock().unwrap().clone();
        let codes = || seen.iter().map(|s| s.code).collect::<Vec<_>>();
        // No request hangs, whatever the database does.
        let slowest = seen.iter().map(|s| s.took).max().unwrap();
        assert!(
            slowest < Duration::from_secs(3),
            "a request took {slowest:?}"
        );
        // Only 200 or 503 throughout.
        assert!(
            seen.iter().all(|s| s.code == 200 || s.code == 503),
            "{:?}",
            codes()
        );
        // Refused with 503 within 2 s of the database going away: while it is down, no
        // request sent later than that is served (and one is refused, waited for above).
        let served_late = seen
            .iter()
            .find(|s| s.sent > down + Duration::from_secs(2) && s.sent < up && s.code == 200)
            .map(|s| s.sent - down);
        assert!(
            served_late.is_none(),
            "served {served_late:?} after the database went away: {:?}",
            codes()
        );
        // Served again within 5 s of it being back: no request sent later than that is
        // refused (and one is served, waited for above), the last one included.
        let refused_late = seen
            .iter()
            .find(|s| s.sent > back + Duration::from_secs(5) && s.code != 200)
            .map(|s| s.sent - back);
        assert!(
            refused_late.is_none(),
            "refused {refused_late:?} after the database was back: {:?}",
            codes()
        );
        assert!(seen.last().is_some_and(|s| s.code == 200), "{:?}", codes());
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
    let (seen, load_two) = load(two.addr.clone(), two.token.clone(), stop.clone());
    // The kill comes under load: once node two is serving it.
    wait_for_loads("node two serves", &[&seen], &stop, |served| {
        served.len() >= 5
    });
    one.kill9();
    let killed = Instant::now();
    // Two seconds of load after the kill (time for its effects to show), and at least ten
    // requests sent after it, however slow the machine.
    std::thread::sleep(Duration::from_secs(2));
    wait_for_loads(
        "node two serves after the kill",
        &[&seen],
        &stop,
        |served| served.iter().filter(|s| s.sent > killed).count() >= 10,
    );
    stop.store(true, Ordering::SeqCst);
    load_two.join().unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() > 10, "{}", seen.len());
    assert!(
        seen.iter().all(|s| s.code == 200),
        "{:?}",
        seen.iter().map(|s| s.code).collect::<Vec<_>>()
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
    // authenticated request rather than honour a token that may be revoked. The bound is what
    // is checked: no lookup sent more than 2 s after the cut (the bound and a margin) is
    // answered 200, whenever it is answered; how soon a refusal shows is the node's speed on
    // a loaded machine, given a generous deadline.
    loop {
        let sent = Instant::now();
        match lookup(&revoked) {
            503 => break,
            200 => assert!(
                sent <= cut_at + Duration::from_secs(2),
                "node two honoured a token revoked while it was cut off, {:?} after the cut",
                sent - cut_at
            ),
            status => panic!("unexpected status {status}:\n{}", two.log()),
        }
        assert!(
            cut_at.elapsed() < Duration::from_secs(30),
            "node two never refused while cut off:\n{}",
            two.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(lookup(&kept), 503);
    let (status, health) = two.request("GET", "sys/health", None);
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["sealed"], false);
    assert_eq!(health["storage_in_sync"], false);

    // Back on the database: the revoked token is refused, the other one works.
    proxy.restore();
    // Reconnecting through the restored path and catching up is the node's work on a loaded
    // machine, not a bound under test (it was 10 s).
    assert!(eventually(Duration::from_secs(30), || lookup(&kept) == 200));
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
    // A count, not a time: 300 acknowledged encryptions, however long a loaded machine
    // takes (it was 30 s).
    assert!(eventually(Duration::from_secs(120), || {
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

/// A trim made through one node (`transit/keys/:name/trim`) is seen by another node that
/// holds the key in memory within a second: it reports the new `min_available_version`,
/// keeps serving the kept versions (their data keys unwrapped again), and refuses to lower
/// `min_decryption_version` below it.
#[test]
fn a_trim_through_one_node_is_seen_by_the_others_within_a_second() {
    let cluster = Cluster::new();
    let one = cluster.node(None);
    let two = cluster.node(Some(&one));
    ok(&one, "POST", "transit/keys/trimmed", None);
    ok(&one, "POST", "transit/keys/trimmed/rotate", None);
    ok(&one, "POST", "transit/keys/trimmed/rotate", None);
    ok(
        &one,
        "POST",
        "transit/keys/trimmed/config",
        Some(&json!({ "min_decryption_version": 2, "min_encryption_version": 2 })),
    );
    // The other node holds the key, and version 3's data key, in memory.
    let kept = ok(&two, "POST", "transit/encrypt/trimmed", Some(&plaintext()))["data"]
        ["ciphertext"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(kept.starts_with("vault:v3:"), "{kept}");
    let changed = change(|| {
        ok(
            &one,
            "POST",
            "transit/keys/trimmed/trim",
            Some(&json!({ "min_available_version": 2 })),
        );
    });
    propagated("trim", changed, || {
        let (status, value) = two.request("GET", "transit/keys/trimmed", None);
        match (status, value["data"]["min_available_version"].as_u64()) {
            (503, _) => View::OutOfSync,
            (200, Some(2)) => View::After,
            (200, Some(0)) => View::Before,
            other => panic!("trim: unexpected answer {other:?} {value}"),
        }
    });
    let decrypted = ok(
        &two,
        "POST",
        "transit/decrypt/trimmed",
        Some(&json!({ "ciphertext": kept })),
    );
    assert_eq!(decrypted["data"]["plaintext"], plaintext()["plaintext"]);
    let (status, value) = two.request(
        "POST",
        "transit/keys/trimmed/config",
        Some(&json!({ "min_decryption_version": 1 })),
    );
    assert_eq!(
        (status, value["errors"][0].as_str()),
        (
            400,
            Some("min decryption version should not be less then min available version")
        ),
        "{value}"
    );
}

/// BYOK over two nodes: both read the mount's wrapping key for the first time at once and
/// get the same key (the store's compare-and-set keeps one); a key imported through one
/// node, wrapped with what the other answered, serves on both.
#[test]
fn two_nodes_make_one_wrapping_key_and_serve_a_key_imported_through_either() {
    let cluster = Cluster::new();
    let one = cluster.node(None);
    let two = cluster.node(Some(&one));
    let barrier = Barrier::new(2);
    let keys: Vec<String> = std::thread::scope(|scope| {
        let reads: Vec<_> = [&one, &two]
            .into_iter()
            .map(|node| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    ok(node, "GET", "transit/wrapping_key", None)["data"]["public_key"]
                        .as_str()
                        .unwrap()
                        .to_owned()
                })
            })
            .collect();
        reads.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert!(
        keys[0].starts_with("-----BEGIN PUBLIC KEY-----"),
        "{keys:?}"
    );
    assert_eq!(keys[0], keys[1]);

    let key = STANDARD.encode([42u8; 32]);
    one.bao_ok(&["transit", "import", "transit/keys/byok", &key]);
    two.bao_ok(&[
        "transit",
        "import-version",
        "transit/keys/byok",
        &STANDARD.encode([43u8; 32]),
    ]);
    let ciphertext = two.encrypt("byok", b"imported on one node");
    assert!(ciphertext.starts_with("vault:v2:"), "{ciphertext}");
    assert_eq!(one.decrypt("byok", &ciphertext), b"imported on one node");
}

/// A forced restore through one node replaces, on the others, the key of that name they
/// hold in memory (another key: both ids are announced), and its cached data key: the
/// restored key's old ciphertexts decrypt there, the replaced key's no longer do.
#[test]
fn a_restore_through_one_node_is_seen_by_the_others_within_a_second() {
    let cluster = Cluster::new();
    let one = cluster.node(None);
    let two = cluster.node(Some(&one));
    let text = |value: &Value, field: &str| value["data"][field].as_str().unwrap().to_owned();
    ok(
        &one,
        "POST",
        "transit/keys/saved",
        Some(&json!({ "exportable": true, "allow_plaintext_backup": true })),
    );
    let saved = text(
        &ok(&one, "POST", "transit/encrypt/saved", Some(&plaintext())),
        "ciphertext",
    );
    let backup = text(&ok(&one, "GET", "transit/backup/saved", None), "backup");
    ok(
        &one,
        "POST",
        "transit/keys/saved/config",
        Some(&json!({ "deletion_allowed": true })),
    );
    ok(&one, "DELETE", "transit/keys/saved", None);
    // The other node holds the key named `target`, and its data key, in memory.
    ok(&one, "POST", "transit/keys/target", None);
    let replaced = text(
        &ok(&two, "POST", "transit/encrypt/target", Some(&plaintext())),
        "ciphertext",
    );
    let changed = change(|| {
        ok(
            &one,
            "POST",
            "transit/restore/target",
            Some(&json!({ "backup": backup, "force": true })),
        );
    });
    propagated("restore", changed, || {
        let (status, _) = two.request(
            "POST",
            "transit/decrypt/target",
            Some(&json!({ "ciphertext": saved })),
        );
        view_of("restore", status, 400, 200)
    });
    let (status, value) = two.request(
        "POST",
        "transit/decrypt/target",
        Some(&json!({ "ciphertext": replaced })),
    );
    assert_eq!(status, 400, "the replaced key is gone: {value}");
}

#[test]
fn a_token_wrapped_on_one_node_unwraps_once_with_both_nodes_racing() {
    let cluster = Cluster::new();
    let one = cluster.node(None);
    let two = cluster.node(Some(&one));
    for round in 0..20 {
        let (status, wrapped) = one.request_with(
            "POST",
            "sys/wrapping/wrap",
            Some(&json!({ "round": round })),
            &[("X-Vault-Token", &one.token), ("X-Vault-Wrap-TTL", "60s")],
        );
        assert_eq!(status, 200, "{wrapped}");
        let token = wrapped["wrap_info"]["token"].as_str().unwrap().to_owned();
        let barrier = Arc::new(Barrier::new(2));
        let racers: Vec<_> = [one.addr.clone(), two.addr.clone()]
            .into_iter()
            .map(|addr| {
                let (barrier, token) = (barrier.clone(), token.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let (status, body) = crate::support::raw_at(
                        &addr,
                        "POST",
                        "sys/wrapping/unwrap",
                        None,
                        &[("X-Vault-Token", &token)],
                    );
                    format!("{body}\n{status}")
                })
            })
            .collect();
        let answers: Vec<String> = racers.into_iter().map(|t| t.join().unwrap()).collect();
        let won: Vec<&String> = answers.iter().filter(|a| a.ends_with("\n200")).collect();
        assert_eq!(won.len(), 1, "round {round}: {answers:?}");
        assert!(
            won[0].contains(&format!("\"round\":{round}")),
            "{answers:?}"
        );
        assert_eq!(
            answers.iter().filter(|a| a.ends_with("\n400")).count(),
            1,
            "round {round}: {answers:?}"
        );
    }
}

#[test]
fn kv_check_and_set_is_exact_across_two_nodes_racing_and_each_sees_the_others_writes() {
    let cluster = Cluster::new();
    let one = cluster.node(None);
    let two = cluster.node(Some(&one));
    ok(
        &one,
        "POST",
        "sys/mounts/secret",
        Some(&json!({"type": "kv-v2"})),
    );
    for round in 0u64..20 {
        // Both nodes write the next version with the same `cas`: exactly one may win.
        let barrier = Arc::new(Barrier::new(2));
        let racers: Vec<_> = [(&one, "one"), (&two, "two")]
            .into_iter()
            .map(|(node, name)| {
                let (barrier, addr, token) =
                    (barrier.clone(), node.addr.clone(), node.token.clone());
                let body = json!({"data": {"writer": name}, "options": {"cas": round}}).to_string();
                std::thread::spawn(move || {
                    barrier.wait();
                    let (status, body) = crate::support::raw_at(
                        &addr,
                        "POST",
                        "secret/data/race",
                        Some(&body),
                        &[("X-Vault-Token", &token)],
                    );
                    (name, format!("{body}\n{status}"))
                })
            })
            .collect();
        let answers: Vec<(&str, String)> = racers.into_iter().map(|t| t.join().unwrap()).collect();
        let won: Vec<&(&str, String)> = answers
            .iter()
            .filter(|(_, a)| a.ends_with("\n200"))
            .collect();
        assert_eq!(won.len(), 1, "round {round}: {answers:?}");
        let lost = answers.iter().find(|(_, a)| !a.ends_with("\n200")).unwrap();
        assert!(
            lost.1.ends_with("\n400") && lost.1.contains("check-and-set parameter did not match"),
            "round {round}: {answers:?}"
        );
        // Either node reads the winner's version: the writer's at once, the other once the
        // change reaches it (its cache of reads dropped), within a second as every change.
        let seen = |read: &Value| {
            read["data"]["metadata"]["version"] == round + 1
                && read["data"]["data"]["writer"] == won[0].0
        };
        let writer = if won[0].0 == "one" { &one } else { &two };
        assert!(seen(&ok(writer, "GET", "secret/data/race", None)));
        for node in [&one, &two] {
            assert!(
                eventually(Duration::from_secs(5), || seen(&ok(
                    node,
                    "GET",
                    "secret/data/race",
                    None
                ))),
                "round {round}: {}",
                ok(node, "GET", "secret/data/race", None)
            );
        }
    }
    // A delete through one node is seen by the other.
    ok(&two, "DELETE", "secret/metadata/race", None);
    assert!(eventually(Duration::from_secs(5), || {
        one.request("GET", "secret/data/race", None).0 == 404
    }));
}

#[test]
fn an_oidc_login_started_on_one_node_completes_on_the_other_once() {
    use crate::oidc;
    let idp = oidc::provider(crate::support::free_port());
    let cluster = Cluster::new();
    let one = cluster.node(None);
    let two = cluster.node(Some(&one));
    oidc::configure(&one, "", &idp);
    // Node two serves the mount once it has heard of it and its role.
    let heard = eventually(Duration::from_secs(30), || {
        let body = json!({"role": "people", "redirect_uri": "https://people.example/callback"});
        let (status, answer) =
            two.request_as("", "", "POST", "auth/oidc/oidc/auth_url", Some(&body));
        status == 200
            && answer["data"]["auth_url"]
                .as_str()
                .is_some_and(|u| !u.is_empty())
    });
    assert!(heard, "node two never served auth/oidc");
    let url = oidc::auth_url(&one, "", "started-on-one");
    let (code, state) = oidc::person(&idp, &url, "alice", "alice-password");
    let (status, body) = oidc::callback(&two, "", &state, &code, "started-on-one");
    assert_eq!(status, 200, "completed on node two: {body}");
    let issued: Value = serde_json::from_str(&body).unwrap();
    let token = issued["auth"]["client_token"].as_str().unwrap();
    let (status, _) = one.request_as(token, "", "GET", "auth/token/lookup-self", None);
    assert_eq!(status, 200, "node one honours the token");
    // The state is spent for the whole cluster.
    let (status, body) = oidc::callback(&one, "", &state, &code, "started-on-one");
    assert_eq!((status, body.contains(oidc::FAILED)), (400, true), "{body}");
}
