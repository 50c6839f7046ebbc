//! ACL policies through the real binary and the `bao` CLI: writing them, enforcing them per
//! tenant, `sys/capabilities-self`, and loading them from a directory at start-up.

use serde_json::{json, Value};

use crate::support::{private_dir, repo_root, Broker, Options};

fn token_with(broker: &Broker, namespace_prefix: &str, policies: &[&str]) -> String {
    let body = json!({ "policies": policies });
    let (status, value) = broker.request(
        "POST",
        &format!("{namespace_prefix}auth/token/create"),
        Some(&body),
    );
    assert_eq!(status, 200, "{value}");
    value["auth"]["client_token"].as_str().unwrap().to_owned()
}

fn call(
    broker: &Broker,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    broker.request_with(method, path, body.as_ref(), &[("X-Vault-Token", token)])
}

fn encrypt_body() -> Option<Value> {
    Some(json!({ "plaintext": "aGk=" }))
}

#[test]
fn a_policy_confines_a_token_to_exactly_what_it_allows_in_its_tenant() {
    let broker = Broker::dev();
    let policy_file = repo_root().join("policies/examples/app-enc.hcl");
    let policy_file = policy_file.to_str().unwrap();
    for tenant in ["acme", "globex"] {
        broker.bao_ok(&["namespace", "create", tenant]);
        broker.bao_ok(&[
            "secrets",
            "enable",
            &format!("-namespace={tenant}"),
            "transit",
        ]);
        broker.bao_ok(&[
            "policy",
            "write",
            &format!("-namespace={tenant}"),
            "app-enc",
            policy_file,
        ]);
        broker.bao_ok(&[
            "write",
            &format!("-namespace={tenant}"),
            "-f",
            "transit/keys/app-orders",
        ]);
        broker.bao_ok(&[
            "write",
            &format!("-namespace={tenant}"),
            "-f",
            "transit/keys/payroll",
        ]);
    }
    let out = broker.bao_ok(&["policy", "list", "-namespace=acme"]);
    assert!(out.contains("app-enc") && out.contains("default"), "{out}");
    let token = token_with(&broker, "acme/", &["app-enc"]);

    // What the policy allows.
    let (status, value) = call(
        &broker,
        &token,
        "POST",
        "acme/transit/encrypt/app-orders",
        encrypt_body(),
    );
    assert_eq!(status, 200, "{value}");
    let ciphertext = value["data"]["ciphertext"].as_str().unwrap().to_owned();
    let (status, _) = call(
        &broker,
        &token,
        "POST",
        "acme/transit/decrypt/app-orders",
        Some(json!({ "ciphertext": ciphertext })),
    );
    assert_eq!(status, 200);
    let (status, _) = call(&broker, &token, "GET", "acme/transit/keys/app-orders", None);
    assert_eq!(status, 200);

    // Everything else: the same 403 body whatever the reason.
    let refusals = [
        ("POST", "acme/transit/encrypt/payroll", encrypt_body()),
        ("POST", "acme/transit/encrypt/app-new", encrypt_body()),
        ("POST", "acme/transit/keys/app-orders/rotate", None),
        ("DELETE", "acme/transit/keys/app-orders", None),
        ("LIST", "acme/transit/keys", None),
        ("POST", "globex/transit/encrypt/app-orders", encrypt_body()),
        ("POST", "transit/encrypt/app-orders", encrypt_body()),
        (
            "POST",
            "acme/sys/policies/acl/app-enc",
            Some(json!({ "policy": "" })),
        ),
        (
            "POST",
            "acme/sys/mounts/x",
            Some(json!({ "type": "transit" })),
        ),
        (
            "POST",
            "acme/transit/encrypt/app-orders/../payroll",
            encrypt_body(),
        ),
        ("POST", "acme/transit/encrypt/APP-orders", encrypt_body()),
    ];
    let mut bodies = Vec::new();
    for (method, path, body) in refusals {
        let (status, text) = broker.raw(
            method,
            path,
            body.map(|b| b.to_string()).as_deref(),
            &[("X-Vault-Token", &token)],
        );
        assert_eq!(status, 403, "{method} {path}: {text}");
        bodies.push(text);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "refusals differ: {bodies:?}"
    );

    // The token's capabilities, as Vault answers them.
    let out = broker.bao_ok(&[
        "token",
        "capabilities",
        "-namespace=acme",
        &token,
        "transit/encrypt/app-orders",
    ]);
    assert!(out.contains("update"), "{out}");
    let (status, value) = call(
        &broker,
        &token,
        "POST",
        "acme/sys/capabilities-self",
        Some(json!({ "paths": ["transit/encrypt/app-x", "transit/keys/payroll"] })),
    );
    assert_eq!(status, 200, "{value}");
    assert_eq!(value["data"]["transit/encrypt/app-x"], json!(["update"]));
    assert_eq!(value["data"]["transit/keys/payroll"], json!(["deny"]));
}

#[test]
fn root_namespace_policies_name_tenant_paths_and_bad_policies_are_refused() {
    let broker = Broker::dev();
    broker.bao_ok(&["namespace", "create", "acme"]);
    broker.bao_ok(&["secrets", "enable", "-namespace=acme", "transit"]);
    let policy = "path \"acme/transit/*\" { capabilities = [\"create\", \"update\", \"read\"] }\n";
    let (status, value) = broker.request(
        "PUT",
        "sys/policies/acl/acme-ops",
        Some(&json!({ "policy": policy })),
    );
    assert_eq!(status, 204, "{value}");
    let token = token_with(&broker, "", &["acme-ops"]);
    let (status, value) = call(
        &broker,
        &token,
        "POST",
        "acme/transit/encrypt/k",
        encrypt_body(),
    );
    assert_eq!(status, 200, "{value}");
    let (status, _) = call(&broker, &token, "POST", "transit/encrypt/k", encrypt_body());
    assert_eq!(status, 403);

    // Bad policies get a 400 naming the line or the pattern.
    for (text, expected) in [
        (
            "path \"a/*\" {\n  capabilities = [\"read\"]\n  bogus = 1\n}\n",
            "bogus",
        ),
        ("path \"a/*/b\" { capabilities = [\"read\"] }\n", "a/*/b"),
        ("path \"a\" { capabilities = [\"fly\"] }\n", "fly"),
        ("path \"a\" {\n  capabilities = [\"read\"\n", "line"),
    ] {
        let (status, value) = broker.request(
            "PUT",
            "sys/policies/acl/bad",
            Some(&json!({ "policy": text })),
        );
        assert_eq!(status, 400, "{text}: {value}");
        let message = value["errors"][0].as_str().unwrap();
        assert!(
            message.contains(expected),
            "{expected:?} not in {message:?}"
        );
    }
    let (status, _) = broker.request(
        "PUT",
        "sys/policies/acl/root",
        Some(&json!({ "policy": policy })),
    );
    assert_eq!(status, 400);
    let (status, _) = broker.request("DELETE", "sys/policies/acl/default", None);
    assert_eq!(status, 400);
}

#[test]
fn policies_are_loaded_from_a_directory_at_start_up() {
    let policies = private_dir();
    std::fs::write(
        policies.path().join("ops.hcl"),
        "path \"transit/keys/*\" { capabilities = [\"read\", \"list\"] }\n",
    )
    .unwrap();
    std::fs::create_dir(policies.path().join("not-a-tenant")).unwrap();
    let config = format!(
        "state_dir = \"{{state}}\"\npolicy_dir = \"{}\"\n[listener]\naddress = \"127.0.0.1:{{port}}\"\n",
        policies.path().display()
    );
    let broker = Broker::start(Options {
        config: Some(config.clone()),
        ..Options::default()
    });
    let (status, value) = broker.request("GET", "sys/policies/acl/ops", None);
    assert_eq!(status, 200, "{value}");
    assert!(value["data"]["policy"]
        .as_str()
        .unwrap()
        .contains("transit/keys/*"));
    // The API can still write more.
    let (status, _) = broker.request(
        "PUT",
        "sys/policies/acl/more",
        Some(&json!({ "policy": "path \"x\" { capabilities = [\"read\"] }" })),
    );
    assert_eq!(status, 204);
    drop(broker);

    // A bad policy file stops the start-up, naming the file.
    std::fs::write(
        policies.path().join("broken.hcl"),
        "path \"a\" { capabilities = [\"fly\"] }\n",
    )
    .unwrap();
    let state = private_dir();
    let path = state.path().join("kb.toml");
    std::fs::write(
        &path,
        config
            .replace("{state}", &state.path().display().to_string())
            .replace("{port}", &crate::support::free_port().to_string()),
    )
    .unwrap();
    let out = std::process::Command::new(crate::support::keybroker_bin())
        .args(["server", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("broken.hcl") && stderr.contains("fly"),
        "{stderr}"
    );
}
