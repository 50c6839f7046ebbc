//! Authority (ARCHITECTURE.md §2b): no caller gains authority it was not given. Each attack of
//! issue 16 that was reproduced against `keybroker server --dev` is a test here.

use serde_json::{json, Value};

use crate::{
    plugins::{dev_broker, plugin_sha256, testing_library, write_dropin},
    support::{ns, Broker, PluginDir},
};

/// A POST as `token` in `tenant` (`""`: the root namespace).
fn post_as(broker: &Broker, token: &str, tenant: &str, path: &str, body: &Value) -> (u16, Value) {
    broker.request_as(token, tenant, "POST", path, Some(body))
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
    let (status, body) = broker.request_as(
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

/// The token a root-namespace token creates in `tenant` with `body` (as `creator`).
fn child_in(broker: &Broker, creator: &str, tenant: &str, body: &Value) -> String {
    let (status, answer) = post_as(broker, creator, tenant, "auth/token/create", body);
    assert_eq!(status, 200, "child in {tenant}: {answer}");
    answer["auth"]["client_token"].as_str().unwrap().to_owned()
}

/// Whether `token` still authenticates in `tenant` (its own lookup).
fn alive(broker: &Broker, token: &str, tenant: &str) -> bool {
    let (status, body) = broker.request_as(token, tenant, "GET", "auth/token/lookup-self", None);
    assert!(matches!(status, 200 | 403), "{status}: {body}");
    status == 200
}

#[test]
fn a_tenant_admin_reaches_no_global_operation_and_sees_only_its_own_backends_and_agents() {
    let plugins = PluginDir::new();
    let library = testing_library(&plugins);
    let sha256 = plugin_sha256("testing");
    for (name, tenants, agents) in [
        (
            "acme-agent",
            r#"["acme"]"#,
            r#"[{ id = "dc1", tenants = ["acme"], remote_address = "10.0.0.1:4000" }]"#,
        ),
        (
            "shared",
            r#"["*"]"#,
            r#"[{ id = "both", tenants = ["acme", "globex"], remote_address = "10.0.0.2:4000" }]"#,
        ),
        (
            "globex-agent",
            r#"["globex"]"#,
            r#"[{ id = "g1", tenants = ["globex"], remote_address = "10.0.0.3:4000" }]"#,
        ),
    ] {
        let config = format!("status_agents = {agents}");
        write_dropin(&plugins, name, &library, &sha256, tenants, "", &config);
    }
    let broker = dev_broker(&plugins);
    broker.bao_ok(&["namespace", "create", "acme"]);
    broker.bao_ok(&["namespace", "create", "globex"]);
    let admin = token_with_policy(
        &broker,
        "acme",
        "admin",
        "path \"*\" { capabilities = [\"create\", \"read\", \"update\", \"delete\", \"list\", \"sudo\"] }\n",
    );

    // The operator's operations over the whole broker do not exist inside a tenant.
    for (method, path, body) in [
        ("GET", "sys/metrics?format=prometheus", None),
        ("POST", "sys/plugins/reload", Some(json!({}))),
        ("POST", "sys/audit-hash/file", Some(json!({ "input": "x" }))),
        ("LIST", "sys/namespaces", None),
        ("POST", "sys/namespaces/evil", Some(json!({}))),
        ("DELETE", "sys/namespaces/globex", None),
    ] {
        let (status, answer) = broker.request_as(&admin, "acme", method, path, body.as_ref());
        assert_eq!(status, 404, "{method} {path}: {answer}");
        assert_eq!(error_of(&answer), "unsupported path", "{method} {path}");
    }
    let (status, _) = broker.request("GET", "sys/namespaces/globex", None);
    assert_eq!(status, 200, "globex is still there");

    // Its view of the backends: the instances allowed for it, nothing of the operator's.
    let (status, view) = broker.request_as(&admin, "acme", "GET", "sys/plugins/backends", None);
    assert_eq!(status, 200, "{view}");
    let names = &view["data"]["keys"];
    assert!(
        names.as_array().unwrap().contains(&json!("acme-agent")),
        "{view}"
    );
    assert!(
        names.as_array().unwrap().contains(&json!("shared")),
        "{view}"
    );
    assert!(
        !names.as_array().unwrap().contains(&json!("globex-agent")),
        "{view}"
    );
    for backend in view["data"]["backends"].as_array().unwrap() {
        for field in ["library", "sha256", "source", "tenants", "dek_cache"] {
            assert!(backend.get(field).is_none(), "{field} shown: {backend}");
        }
    }
    let text = view.to_string();
    assert!(!text.contains("globex") && !text.contains(".so"), "{view}");

    // Its view of the agents: those serving it, naming only it; the address only of an
    // agent that serves nobody else.
    let (status, view) = broker.request_as(&admin, "acme", "GET", "sys/agents", None);
    assert_eq!(status, 200, "{view}");
    assert_eq!(
        view["data"]["agents"],
        json!([
            { "instance": "acme-agent", "id": "dc1", "tenants": ["acme"],
              "remote_address": "10.0.0.1:4000" },
            { "instance": "shared", "id": "both", "tenants": ["acme"] },
        ]),
        "{view}"
    );

    // Our health details beyond Vault's fields are not told inside a namespace.
    let (status, health) =
        broker.request_with("GET", "sys/health", None, &[("X-Vault-Namespace", "acme")]);
    assert_eq!(status, 200, "{health}");
    assert!(health.get("storage_in_sync").is_none(), "{health}");
    assert_eq!(health["sealed"], false, "{health}");

    // Control: the operator sees everything.
    let (status, all) = broker.request("GET", "sys/plugins/backends", None);
    assert_eq!(status, 200, "{all}");
    let text = all.to_string();
    assert!(
        text.contains("globex-agent") && text.contains("sha256"),
        "{all}"
    );
    let (status, agents) = broker.request("GET", "sys/agents", None);
    assert_eq!(status, 200, "{agents}");
    assert_eq!(
        agents["data"]["agents"].as_array().unwrap().len(),
        3,
        "{agents}"
    );
    let (status, health) = broker.request_with("GET", "sys/health", None, &[]);
    assert_eq!((status, &health["storage_in_sync"]), (200, &json!(true)));
}

#[test]
fn revoking_a_root_namespace_token_or_its_auth_mount_revokes_its_children_inside_tenants() {
    let broker = Broker::dev();
    broker.bao_ok(&["namespace", "create", "acme"]);
    let delegator_policy =
        "path \"acme/auth/token/create\" { capabilities = [\"create\", \"update\", \"sudo\"] }\n";
    let delegator = token_with_policy(&broker, "", "delegator", delegator_policy);
    let periodic = child_in(
        &broker,
        &delegator,
        "acme",
        &json!({ "period": "1h", "policies": ["default"] }),
    );
    let plain = child_in(
        &broker,
        &delegator,
        "acme",
        &json!({ "policies": ["default"] }),
    );
    assert!(alive(&broker, &periodic, "acme") && alive(&broker, &plain, "acme"));
    let (status, body) = post_as(
        &broker,
        &delegator,
        "",
        "auth/token/revoke-self",
        &json!({}),
    );
    assert_eq!(status, 204, "{body}");
    assert!(
        !alive(&broker, &periodic, "acme"),
        "the periodic child outlived its parent"
    );
    assert!(
        !alive(&broker, &plain, "acme"),
        "the child outlived its parent"
    );

    // The same through an auth mount of the root namespace: disabling it revokes what it
    // issued and their children in tenants.
    broker.bao_ok(&["auth", "enable", "approle"]);
    let (status, body) = post_as(
        &broker,
        &broker.token,
        "",
        "auth/approle/role/ops",
        &json!({ "token_policies": ["delegator"] }),
    );
    assert_eq!(status, 204, "{body}");
    let (_, role_id) = broker.request_as(
        &broker.token,
        "",
        "GET",
        "auth/approle/role/ops/role-id",
        None,
    );
    let (_, secret) = post_as(
        &broker,
        &broker.token,
        "",
        "auth/approle/role/ops/secret-id",
        &json!({}),
    );
    let login = json!({
        "role_id": role_id["data"]["role_id"],
        "secret_id": secret["data"]["secret_id"],
    });
    let (status, answer) = broker.request_with("POST", "auth/approle/login", Some(&login), &[]);
    assert_eq!(status, 200, "{answer}");
    let service = answer["auth"]["client_token"].as_str().unwrap().to_owned();
    let periodic = child_in(
        &broker,
        &service,
        "acme",
        &json!({ "period": "1h", "policies": ["default"] }),
    );
    assert!(alive(&broker, &periodic, "acme"));
    broker.bao_ok(&["auth", "disable", "approle"]);
    assert!(!alive(&broker, &service, ""));
    assert!(
        !alive(&broker, &periodic, "acme"),
        "the child outlived its auth mount"
    );
}

/// A token of `tenant` (`""`: the root namespace) with `num_uses` uses and the default policy.
fn limited_token(broker: &Broker, tenant: &str, num_uses: u64) -> String {
    let (status, body) = post_as(
        broker,
        &broker.token,
        tenant,
        "auth/token/create",
        &json!({ "num_uses": num_uses, "no_parent": true }),
    );
    assert_eq!(status, 200, "{body}");
    body["auth"]["client_token"].as_str().unwrap().to_owned()
}

#[test]
fn looking_at_a_token_from_elsewhere_costs_it_no_use() {
    let broker = Broker::dev();
    broker.bao_ok(&["namespace", "create", "acme"]);
    broker.bao_ok(&["namespace", "create", "globex"]);

    // sys/capabilities about a token spends none of its uses.
    let subject = limited_token(&broker, "", 2);
    for _ in 0..3 {
        let (status, body) = post_as(
            &broker,
            &broker.token,
            "",
            "sys/capabilities",
            &json!({ "token": subject, "paths": ["transit/encrypt/k"] }),
        );
        assert_eq!(status, 200, "{body}");
    }
    // Presented to a tenant it does not belong to, a token is refused and loses no use.
    let globex = limited_token(&broker, "globex", 2);
    for _ in 0..3 {
        assert!(
            !alive(&broker, &globex, "acme"),
            "a globex token acted in acme"
        );
    }
    for token in [&subject, &globex] {
        let home = if *token == subject { "" } else { "globex" };
        assert!(alive(&broker, token, home), "first use");
        assert!(alive(&broker, token, home), "second use");
        assert!(!alive(&broker, token, home), "a third use of two");
    }
}

#[test]
fn a_failed_identity_provider_fetch_tells_the_caller_nothing_of_the_network() {
    let broker = Broker::dev();
    broker.bao_ok(&["namespace", "create", "acme"]);
    broker.bao_ok(&["auth", "enable", &ns("acme"), "jwt"]);
    // A closed port, and the broker's own plain-HTTP port spoken to in TLS.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    for (field, url) in [
        (
            "oidc_discovery_url",
            format!("https://127.0.0.1:{closed_port}/"),
        ),
        (
            "oidc_discovery_url",
            format!("https://127.0.0.1:{}/", broker.port),
        ),
        ("jwks_url", format!("https://127.0.0.1:{closed_port}/jwks")),
        (
            "jwks_url",
            format!("https://127.0.0.1:{}/v1/sys/health", broker.port),
        ),
    ] {
        let (status, body) = post_as(
            &broker,
            &broker.token,
            "acme",
            "auth/jwt/config",
            &json!({ field: url }),
        );
        assert_eq!(status, 400, "{url}: {body}");
        let message = error_of(&body);
        assert!(
            message.contains("could not be fetched or used"),
            "{url}: {message}"
        );
        for detail in [
            "127.0.0.1",
            "refused",
            "os error",
            "tls",
            "certificate",
            "status",
        ] {
            assert!(
                !message.to_ascii_lowercase().contains(detail),
                "{url}: {message:?} tells {detail:?}"
            );
        }
    }
    // The operator finds the cause in the log.
    assert!(
        broker.log().contains("could not be fetched or used"),
        "{}",
        broker.log()
    );
}
