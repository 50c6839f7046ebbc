//! Cross-tenant attacks: a tenant's most powerful token, and the names of another tenant's
//! key, token accessor, role, secret_id accessor and policy, get nothing from it — and the
//! answers are identical to those for things that do not exist at all.

use serde_json::{json, Value};

use crate::support::Broker;

const ADMIN: &str = "path \"*\" { capabilities = [\"create\", \"read\", \"update\", \"delete\", \"list\", \"sudo\"] }";

/// A tenant with transit, approle (role `billing`), a policy `secret-policy`, a key
/// `ledger`, and an all-powerful admin token. Returns (admin token, token accessor, secret_id
/// accessor).
fn tenant(broker: &Broker, name: &str) -> (String, String, String) {
    broker.bao_ok(&["namespace", "create", name]);
    let ns = format!("-namespace={name}");
    broker.bao_ok(&["secrets", "enable", &ns, "transit"]);
    broker.bao_ok(&["auth", "enable", &ns, "approle"]);
    let (status, _) = broker.request(
        "PUT",
        &format!("{name}/sys/policies/acl/admin"),
        Some(&json!({ "policy": ADMIN })),
    );
    assert_eq!(status, 204);
    let (status, _) = broker.request(
        "PUT",
        &format!("{name}/sys/policies/acl/secret-policy"),
        Some(&json!({ "policy": ADMIN })),
    );
    assert_eq!(status, 204);
    broker.bao_ok(&["write", &ns, "-f", "transit/keys/ledger"]);
    broker.bao_ok(&[
        "write",
        &ns,
        "auth/approle/role/billing",
        "token_policies=admin",
    ]);
    let (status, value) = broker.request(
        "POST",
        &format!("{name}/auth/approle/role/billing/secret-id"),
        None,
    );
    assert_eq!(status, 200, "{value}");
    let secret_id_accessor = value["data"]["secret_id_accessor"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, value) = broker.request(
        "POST",
        &format!("{name}/auth/token/create"),
        Some(&json!({ "policies": ["admin"] })),
    );
    assert_eq!(status, 200, "{value}");
    let token = value["auth"]["client_token"].as_str().unwrap().to_owned();
    let accessor = value["auth"]["accessor"].as_str().unwrap().to_owned();
    (token, accessor, secret_id_accessor)
}

fn call(
    broker: &Broker,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, String) {
    broker.raw(
        method,
        path,
        body.map(|b| b.to_string()).as_deref(),
        &[("X-Vault-Token", token)],
    )
}

#[test]
fn a_tenant_never_sees_another_tenants_anything() {
    let broker = Broker::dev();
    let (acme_admin, _acme_accessor, _) = tenant(&broker, "acme");
    let (_, globex_accessor, globex_secret_accessor) = tenant(&broker, "globex");

    // 1. Acme's admin token reaching into globex, by path prefix and by header: the same
    //    403 for every endpoint, existing or not.
    let endpoints: Vec<(&str, String, Option<Value>)> = vec![
        (
            "POST",
            "globex/transit/encrypt/ledger".into(),
            Some(json!({ "plaintext": "aGk=" })),
        ),
        ("GET", "globex/transit/keys/ledger".into(), None),
        ("LIST", "globex/transit/keys".into(), None),
        ("GET", "globex/sys/policies/acl/secret-policy".into(), None),
        ("GET", "globex/auth/approle/role/billing".into(), None),
        (
            "POST",
            "globex/auth/token/lookup-accessor".into(),
            Some(json!({ "accessor": globex_accessor })),
        ),
        (
            "POST",
            "globex/auth/token/revoke-accessor".into(),
            Some(json!({ "accessor": globex_accessor })),
        ),
        (
            "POST",
            "globex/sys/mounts/x".into(),
            Some(json!({ "type": "transit" })),
        ),
        ("GET", "globex/transit/keys/does-not-exist".into(), None),
        ("GET", "nonexistent-tenant/transit/keys/ledger".into(), None),
        ("GET", "sys/namespaces".into(), None),
        ("POST", "sys/namespaces/evil".into(), None),
        ("GET", "transit/keys/anything".into(), None),
    ];
    let mut bodies = Vec::new();
    for (method, path, body) in endpoints {
        let (status, text) = call(&broker, &acme_admin, method, &path, body);
        assert_eq!(status, 403, "{method} {path}: {text}");
        bodies.push(text);
    }
    for namespace in ["globex", "root"] {
        let (status, text) = broker.raw(
            "GET",
            "transit/keys/ledger",
            None,
            &[
                ("X-Vault-Token", &acme_admin),
                ("X-Vault-Namespace", namespace),
            ],
        );
        assert_eq!(status, 403, "{namespace}");
        bodies.push(text);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "refusals differ: {bodies:#?}"
    );

    // 2. Globex's names used inside acme (where acme's admin may act): answered exactly as
    //    names that exist nowhere.
    let pairs: Vec<(&str, &str, Option<Value>, Option<Value>)> = vec![
        (
            "POST",
            "acme/auth/token/lookup-accessor",
            Some(json!({ "accessor": globex_accessor })),
            Some(json!({ "accessor": "AAAAAAAAAAAAAAAAAAAAAAAA" })),
        ),
        (
            "POST",
            "acme/auth/approle/role/billing/secret-id-accessor/lookup",
            Some(json!({ "secret_id_accessor": globex_secret_accessor })),
            Some(json!({ "secret_id_accessor": "00000000-0000-0000-0000-000000000000" })),
        ),
    ];
    for (method, path, theirs, nobody) in pairs {
        let (status_theirs, text_theirs) = call(&broker, &acme_admin, method, path, theirs);
        let (status_nobody, text_nobody) = call(&broker, &acme_admin, method, path, nobody);
        assert_eq!(
            (status_theirs, strip_ids(&text_theirs)),
            (status_nobody, strip_ids(&text_nobody)),
            "{path}"
        );
        assert_ne!(status_theirs, 200, "{path}: {text_theirs}");
    }
    // A key, a policy and a role that exist only in globex do not exist in acme.
    let (status, _) = call(
        &broker,
        &acme_admin,
        "GET",
        "acme/transit/keys/only-in-globex",
        None,
    );
    broker.bao_ok(&[
        "write",
        "-namespace=globex",
        "-f",
        "transit/keys/only-in-globex",
    ]);
    let (status_after, _) = call(
        &broker,
        &acme_admin,
        "GET",
        "acme/transit/keys/only-in-globex",
        None,
    );
    assert_eq!((status, status_after), (404, 404));
    let (status, _) = call(
        &broker,
        &acme_admin,
        "GET",
        "acme/sys/policies/acl/globex-only",
        None,
    );
    broker.request(
        "PUT",
        "globex/sys/policies/acl/globex-only",
        Some(&json!({ "policy": ADMIN })),
    );
    let (status_after, _) = call(
        &broker,
        &acme_admin,
        "GET",
        "acme/sys/policies/acl/globex-only",
        None,
    );
    assert_eq!((status, status_after), (404, 404));
}

/// Responses carry a fresh request id; compare bodies without it.
fn strip_ids(text: &str) -> String {
    let mut value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    if let Some(map) = value.as_object_mut() {
        map.remove("request_id");
    }
    value.to_string()
}
