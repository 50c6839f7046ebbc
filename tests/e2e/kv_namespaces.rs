//! Issue 21, scenario 2: namespaces of secrets behind a credential shown once. A service
//! makes one tenant per customer namespace, with a KV mount whose key is held by a local
//! KEK read from an environment variable (a drop-in), and an AppRole credential shown once
//! and stored only hashed; each namespace stores and reads its secrets with it, and none
//! reaches another's. A stolen database reveals nothing: it holds no secret value, path or
//! credential; without the root key it does not open; with the root key but without the
//! KEK no secret reads.

use serde_json::json;

use crate::support::{private_dir, Broker, Options, PluginDir};

const KEK: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // base64 of 32 bytes

fn plugin_dir() -> PluginDir {
    let plugins = PluginDir::new();
    plugins.write(
        "kek-env.toml",
        "name = \"kek-env\"\nlibrary = \"builtin:local-kek\"\ntenants = [\"*\"]\n\
         [config]\nactive = \"k1\"\n[[config.keks]]\nid = \"k1\"\nenv = \"KEYBROKER_TEST_KEK\"\n",
    );
    plugins
}

fn options(state: &std::path::Path, plugins: &PluginDir, kek: Option<&str>) -> Options {
    Options {
        config: Some(
            "state_dir = \"{state}\"\n[listener]\naddress = \"127.0.0.1:{port}\"\n".to_owned(),
        ),
        plugin_dir: Some(plugins.path().to_owned()),
        state_dir: Some(state.to_owned()),
        env: kek
            .map(|k| vec![("KEYBROKER_TEST_KEK".to_owned(), k.to_owned())])
            .unwrap_or_default(),
    }
}

/// What the service does for a new customer namespace: a tenant, its KV mount on the KEK,
/// AppRole with a role limited to the mount; returns the credential (role_id, secret_id),
/// shown this once.
fn provision(broker: &Broker, ns: &str) -> (String, String) {
    let root = broker.token.as_str();
    broker.ok_as(root, "", "POST", &format!("sys/namespaces/{ns}"), None);
    broker.ok_as(
        root,
        ns,
        "POST",
        "sys/mounts/secrets",
        Some(&json!({"type": "kv-v2", "options": {"backend": "kek-env"}})),
    );
    broker.ok_as(
        root,
        ns,
        "POST",
        "sys/auth/approle",
        Some(&json!({"type": "approle"})),
    );
    broker.ok_as(root, ns, "POST",
        "sys/policies/acl/namespace-secrets",
        Some(&json!({
            "policy": "path \"secrets/*\" { capabilities = [\"create\", \"read\", \"update\", \"patch\", \"delete\", \"list\"] }"
        })));
    broker.ok_as(
        root,
        ns,
        "POST",
        "auth/approle/role/service",
        Some(&json!({"token_policies": ["namespace-secrets"], "token_ttl": "10m"})),
    );
    let role_id = broker.ok_as(root, ns, "GET", "auth/approle/role/service/role-id", None)["data"]
        ["role_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret = broker.ok_as(
        root,
        ns,
        "POST",
        "auth/approle/role/service/secret-id",
        None,
    );
    let secret_id = secret["data"]["secret_id"].as_str().unwrap().to_owned();
    // Shown once: looking the credential up again shows its accessor's metadata, never it.
    let accessor = secret["data"]["secret_id_accessor"].as_str().unwrap();
    let looked_up = broker.ok_as(
        root,
        ns,
        "POST",
        "auth/approle/role/service/secret-id-accessor/lookup",
        Some(&json!({"secret_id_accessor": accessor})),
    );
    assert!(!looked_up.to_string().contains(&secret_id));
    (role_id, secret_id)
}

fn login(broker: &Broker, ns: &str, (role_id, secret_id): &(String, String)) -> String {
    let (status, body) = broker.request_with(
        "POST",
        "auth/approle/login",
        Some(&json!({"role_id": role_id, "secret_id": secret_id})),
        &[("X-Vault-Namespace", ns)],
    );
    assert_eq!(status, 200, "{body}");
    body["auth"]["client_token"].as_str().unwrap().to_owned()
}

#[test]
fn each_namespace_keeps_its_secrets_behind_its_credential_and_a_stolen_database_reveals_nothing() {
    let state = private_dir();
    let plugins = plugin_dir();
    let mut broker = Broker::start(options(state.path(), &plugins, Some(KEK)));
    let customers = ["cust-a", "cust-b", "cust-c"];
    let credentials: Vec<(String, String)> =
        customers.iter().map(|ns| provision(&broker, ns)).collect();
    let value = |ns: &str, i: usize| format!("webhook-signing-key-{ns}-{i}-9c1e");
    for (ns, credential) in customers.iter().zip(&credentials) {
        let token = login(&broker, ns, credential);
        for i in 0..3 {
            broker.ok_as(
                &token,
                ns,
                "POST",
                &format!("secrets/data/hooks/h{i}"),
                Some(&json!({"data": {"secret": value(ns, i)}})),
            );
        }
        let listed = broker.ok_as(&token, ns, "LIST", "secrets/metadata/hooks", None);
        assert_eq!(listed["data"]["keys"], json!(["h0", "h1", "h2"]));
        let read = broker.ok_as(&token, ns, "GET", "secrets/data/hooks/h1", None);
        assert_eq!(read["data"]["data"]["secret"], value(ns, 1));
    }
    // A customer's credential reaches no other namespace, and logs in to none.
    let token_a = login(&broker, "cust-a", &credentials[0]);
    for ns in ["cust-b", ""] {
        let (status, _) = broker.request_as(&token_a, ns, "GET", "secrets/data/hooks/h1", None);
        assert_eq!(status, 403, "{ns}");
    }
    let (status, _) = broker.request_with(
        "POST",
        "auth/approle/login",
        Some(&json!({"role_id": credentials[0].0, "secret_id": credentials[0].1})),
        &[("X-Vault-Namespace", "cust-b")],
    );
    assert_eq!(status, 400);

    // The stolen database: neither values, paths nor credentials are in it.
    broker.kill9();
    let stolen = private_dir();
    for file in ["keybroker.db", "keybroker.db-wal", "keybroker.db-shm"] {
        let from = state.path().join(file);
        if from.exists() {
            std::fs::copy(&from, stolen.path().join(file)).unwrap();
        }
    }
    let mut bytes = Vec::new();
    for file in ["keybroker.db", "keybroker.db-wal"] {
        bytes.extend(std::fs::read(stolen.path().join(file)).unwrap_or_default());
    }
    let clear: Vec<String> = customers
        .iter()
        .flat_map(|ns| (0..3).map(move |i| value(ns, i)))
        .chain(credentials.iter().map(|(_, secret_id)| secret_id.clone()))
        .chain(["webhook".to_owned(), "hooks".to_owned()])
        .collect();
    for text in &clear {
        assert!(
            !bytes.windows(text.len()).any(|w| w == text.as_bytes()),
            "{text:?} is in the clear in the database"
        );
    }
    // Without the root key, the database does not open.
    let thief = Broker::start(options(stolen.path(), &plugins, Some(KEK)));
    let (status, health) = thief.request("GET", "sys/health", None);
    assert_eq!((status, &health["sealed"]), (503, &json!(true)), "{health}");
    drop(thief);
    // With the root key but without the KEK, no secret reads.
    let _ = std::fs::remove_file(stolen.path().join("root.key"));
    std::fs::copy(
        state.path().join("root.key"),
        stolen.path().join("root.key"),
    )
    .unwrap();
    let thief = Broker::start(options(stolen.path(), &plugins, None));
    let (status, body) = thief.request_as(
        &broker.token,
        "cust-a",
        "GET",
        "secrets/data/hooks/h1",
        None,
    );
    assert_eq!(status, 503, "{body}");
    assert!(!body.to_string().contains(&value("cust-a", 1)));
    drop(thief);
    // The owner, with both, reads everything.
    broker.restart();
    let token = login(&broker, "cust-c", &credentials[2]);
    let read = broker.ok_as(&token, "cust-c", "GET", "secrets/data/hooks/h2", None);
    assert_eq!(read["data"]["data"]["secret"], value("cust-c", 2));
}

/// `examples/kv-namespaces/run`, as a user runs it (with the debug builds of this run).
#[test]
fn the_kv_namespaces_example_runs() {
    let out =
        std::process::Command::new(crate::support::repo_root().join("examples/kv-namespaces/run"))
            .env("PROFILE", "debug")
            .env("SKIP_BUILD", "1")
            .env("CARGO_TARGET_DIR", crate::support::target_dir())
            .env("BROKER_PORT", crate::support::free_port().to_string())
            .output()
            .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("kv-namespaces example: OK"), "{stderr}");
    assert!(stderr.contains("alpha in beta: 403"), "{stderr}");
}
