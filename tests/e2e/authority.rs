//! Authority (DESIGN §2b): no caller without `root` mints a token carrying `root`. Each
//! attack of issue 16 that was reproduced against `keybroker server --dev` is a test here.

use serde_json::{json, Value};

use crate::support::{ns, Broker};

/// A request as `token` in `tenant` (`""`: the root namespace).
fn as_token(
    broker: &Broker,
    token: &str,
    tenant: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut headers = vec![("X-Vault-Token", token)];
    if !tenant.is_empty() {
        headers.push(("X-Vault-Namespace", tenant));
    }
    broker.request_with(method, path, body, &headers)
}

/// A POST as `token` in `tenant` (`""`: the root namespace).
fn post_as(broker: &Broker, token: &str, tenant: &str, path: &str, body: &Value) -> (u16, Value) {
    as_token(broker, token, tenant, "POST", path, Some(body))
}

/// Writes `policy` (HCL) as `name` in `tenant` (`""`: the root namespace) and returns a
/// token of that tenant carrying only it.
fn token_with_policy(broker: &Broker, tenant: &str, name: &str, policy: &str) -> String {
    let (status, body) = post_as(
        broker,
        &broker.token,
        tenant,
        &format!("sys/policies/acl/{name}"),
        &json!({ "policy": policy }),
    );
    assert_eq!(status, 204, "policy {name}: {body}");
    let (status, body) = post_as(
        broker,
        &broker.token,
        tenant,
        "auth/token/create",
        &json!({ "policies": [name], "no_parent": true }),
    );
    assert_eq!(status, 200, "token with {name}: {body}");
    body["auth"]["client_token"].as_str().unwrap().to_owned()
}

/// The first error message of a `{"errors": [...]}` answer.
fn error_of(body: &Value) -> String {
    body["errors"][0].as_str().unwrap_or_default().to_owned()
}

#[test]
fn a_role_writer_cannot_mint_root_through_an_approle_or_jwt_role() {
    let broker = Broker::dev();
    broker.bao_ok(&["namespace", "create", "acme"]);
    broker.bao_ok(&["auth", "enable", &ns("acme"), "approle"]);
    broker.bao_ok(&["auth", "enable", &ns("acme"), "jwt"]);
    // A delegate whose only right is managing roles: it may name policies, never root.
    let delegate = token_with_policy(
        &broker,
        "acme",
        "role-admin",
        "path \"auth/approle/role/*\" { capabilities = [\"create\", \"read\", \"update\", \"list\"] }\n\
         path \"auth/jwt/role/*\" { capabilities = [\"create\", \"read\", \"update\", \"list\"] }\n",
    );
    for policies in [
        json!("root"),
        json!(["default", " ROOT "]),
        json!("app,root"),
    ] {
        let (status, body) = post_as(
            &broker,
            &delegate,
            "acme",
            "auth/approle/role/evil",
            &json!({ "token_policies": policies }),
        );
        assert_eq!(status, 400, "approle role with {policies}: {body}");
        assert!(error_of(&body).contains("root"), "{body}");
        let role = json!({
            "role_type": "jwt",
            "bound_audiences": ["https://broker.example/"],
            "user_claim": "sub",
            "token_policies": policies,
        });
        let (status, body) = post_as(&broker, &delegate, "acme", "auth/jwt/role/evil", &role);
        assert_eq!(status, 400, "jwt role with {policies}: {body}");
        let mut older_name = role.clone();
        older_name["policies"] = older_name["token_policies"].take();
        let (status, body) = post_as(
            &broker,
            &delegate,
            "acme",
            "auth/jwt/role/evil",
            &older_name,
        );
        assert_eq!(status, 400, "jwt role with policies={policies}: {body}");
    }
    // Not even root writes such a role: auth methods never issue root tokens.
    let (status, body) = post_as(
        &broker,
        &broker.token,
        "acme",
        "auth/approle/role/evil",
        &json!({ "token_policies": ["root"] }),
    );
    assert_eq!(status, 400, "{body}");
    // Nothing was stored, so there is no role to log in with.
    let (status, body) = as_token(
        &broker,
        &delegate,
        "acme",
        "GET",
        "auth/approle/role/evil/role-id",
        None,
    );
    assert_eq!(status, 404, "{body}");
    // Control: the delegate writes a role with other policies.
    let (status, body) = post_as(
        &broker,
        &delegate,
        "acme",
        "auth/approle/role/app",
        &json!({ "token_policies": "app-enc" }),
    );
    assert_eq!(status, 204, "{body}");
}

#[test]
fn a_sudo_caller_creates_orphans_with_other_policies_but_never_root() {
    let broker = Broker::dev();
    let minter = token_with_policy(
        &broker,
        "",
        "minter",
        "path \"auth/token/create*\" { capabilities = [\"create\", \"update\", \"sudo\"] }\n",
    );
    for (path, body) in [
        (
            "auth/token/create",
            json!({ "no_parent": true, "policies": ["root"] }),
        ),
        ("auth/token/create-orphan", json!({ "policies": "Root" })),
        ("auth/token/create", json!({ "policies": ["root"] })),
    ] {
        let (status, answer) = post_as(&broker, &minter, "", path, &body);
        assert_eq!(status, 400, "{path} {body}: {answer}");
    }
    let (status, answer) = post_as(
        &broker,
        &minter,
        "",
        "auth/token/create",
        &json!({ "no_parent": true, "policies": ["root"] }),
    );
    assert_eq!(
        (status, error_of(&answer)),
        (
            400,
            "root tokens may not be created without parent token being root".to_owned()
        )
    );
    // sudo does let an orphan name policies the caller does not hold.
    let (status, answer) = post_as(
        &broker,
        &minter,
        "",
        "auth/token/create-orphan",
        &json!({ "policies": ["other"] }),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["auth"]["orphan"], true);
    assert_eq!(answer["auth"]["policies"], json!(["default", "other"]));
    // A root token still creates a root orphan, as in Vault.
    let (status, answer) = post_as(
        &broker,
        &broker.token,
        "",
        "auth/token/create",
        &json!({ "no_parent": true, "policies": ["root"] }),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["auth"]["policies"], json!(["root"]));
}
