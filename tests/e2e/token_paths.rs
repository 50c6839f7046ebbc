//! Vault's token paths that take the token in the body (`lookup`, `renew`, `revoke`,
//! `revoke-orphan`, `renew-accessor`, `LIST accessors`) and token roles (`roles/:name`,
//! `create/:role`), through the real binary and the `bao` CLI, in the root namespace and in
//! tenants; and the answers a real OpenBao gives to the same requests.

use serde_json::{json, Value};

use crate::support::{bao_at, bao_ok_at, ns, openbao::OpenBao, Broker};

/// Runs `bao` with `token`; returns (success, stdout + stderr).
fn bao_as(broker: &Broker, token: &str, args: &[&str]) -> (bool, String) {
    let out = bao_at(&broker.addr, token, args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `bao … -format=json` as JSON (the flag after the command's words, before its arguments).
fn bao_json(broker: &Broker, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    let words = if args[0] == "token" { 2 } else { 1 };
    args.insert(words, "-format=json");
    serde_json::from_str(&broker.bao_ok(&args)).unwrap()
}

/// Writes `policy` as `name` in `tenant` and returns an orphan token of that tenant with it.
fn token_with(broker: &Broker, tenant: &str, name: &str, policy: &str) -> String {
    let root = broker.token.clone();
    let (status, body) = broker.request_as(
        &root,
        tenant,
        "POST",
        &format!("sys/policies/acl/{name}"),
        Some(&json!({ "policy": policy })),
    );
    assert_eq!(status, 204, "{body}");
    let (status, body) = broker.request_as(
        &root,
        tenant,
        "POST",
        "auth/token/create-orphan",
        Some(&json!({ "policies": [name] })),
    );
    assert_eq!(status, 200, "{body}");
    body["auth"]["client_token"].as_str().unwrap().to_owned()
}

fn created(out: &str) -> (String, String) {
    let auth: Value = serde_json::from_str(out).unwrap();
    (
        auth["auth"]["client_token"].as_str().unwrap().to_owned(),
        auth["auth"]["accessor"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn bao_looks_up_renews_and_revokes_tokens_named_in_the_body() {
    let broker = Broker::dev();
    let root = broker.token.clone();
    // `app` lets its tokens create children.
    let (status, body) = broker.request_as(
        &root,
        "",
        "POST",
        "sys/policies/acl/app",
        Some(&json!({ "policy": "path \"auth/token/create\" { capabilities = [\"update\"] }" })),
    );
    assert_eq!(status, 204, "{body}");
    let (parent, parent_accessor) =
        created(&broker.bao_ok(&["token", "create", "-policy=app", "-ttl=1h", "-format=json"]));
    let (child, child_accessor) = created(&bao_ok_at(
        &broker.addr,
        &parent,
        &["token", "create", "-policy=app", "-ttl=30m", "-format=json"],
    ));

    // Lookup by token (POST auth/token/lookup).
    let looked = bao_json(&broker, &["token", "lookup", &parent]);
    assert_eq!(looked["data"]["accessor"], parent_accessor.as_str());
    assert_eq!(looked["data"]["policies"], json!(["app", "default"]));
    assert_eq!(looked["data"]["orphan"], false);

    // Renew by token and by accessor.
    let renewed = bao_json(&broker, &["token", "renew", "-increment=2h", &parent]);
    assert_eq!(renewed["auth"]["accessor"], parent_accessor.as_str());
    // As OpenBao: a renewal by token answers that token (the caller named it); only a
    // renewal by accessor does not.
    assert_eq!(renewed["auth"]["client_token"], parent.as_str());
    let (status, body) = broker.request_as(
        &root,
        "",
        "POST",
        "auth/token/renew-accessor",
        Some(&json!({ "accessor": child_accessor, "increment": "10m" })),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["auth"]["accessor"], child_accessor.as_str());
    assert_eq!(
        body["auth"]["client_token"], "",
        "a renewal by accessor names no token"
    );

    // LIST auth/token/accessors (sudo).
    let out = broker.bao_ok(&["list", "auth/token/accessors"]);
    assert!(
        out.contains(&parent_accessor) && out.contains(&child_accessor),
        "{out}"
    );
    let (status, _) = broker.request_as(&parent, "", "LIST", "auth/token/accessors", None);
    assert_eq!(status, 403, "listing accessors needs sudo");

    // revoke-orphan: the parent goes, the child stays, an orphan now.
    broker.bao_ok(&["token", "revoke", "-mode=orphan", &parent]);
    let (status, body) = broker.request_as(
        &root,
        "",
        "POST",
        "auth/token/lookup",
        Some(&json!({ "token": parent })),
    );
    assert_eq!(
        (status, body["errors"].clone()),
        (403, json!(["bad token"]))
    );
    let looked = bao_json(&broker, &["token", "lookup", &child]);
    assert_eq!(looked["data"]["orphan"], true, "{looked}");
    assert!(
        bao_as(&broker, &child, &["token", "lookup"]).0,
        "the child still works"
    );

    // revoke-orphan needs root or sudo on the path (Vault's 400).
    let (ok, text) = bao_as(
        &broker,
        &child,
        &["token", "revoke", "-mode=orphan", &child],
    );
    assert!(!ok);
    assert!(
        text.contains("permission denied") || text.contains("root or sudo"),
        "{text}"
    );

    // revoke: the token and its children.
    let (tree, _) = created(&broker.bao_ok(&["token", "create", "-policy=app", "-format=json"]));
    let (leaf, _) = created(&bao_ok_at(
        &broker.addr,
        &tree,
        &["token", "create", "-policy=app", "-format=json"],
    ));
    broker.bao_ok(&["token", "revoke", &tree]);
    for gone in [&tree, &leaf] {
        let (status, _) = broker.request_as(
            &root,
            "",
            "POST",
            "auth/token/lookup",
            Some(&json!({ "token": gone })),
        );
        assert_eq!(status, 403);
    }
    // Revoking a token that does not exist succeeds, as in Vault.
    let (status, _) = broker.request_as(
        &root,
        "",
        "POST",
        "auth/token/revoke",
        Some(&json!({ "token": "kbs.nothing" })),
    );
    assert_eq!(status, 204);

    // revoke -accessor.
    broker.bao_ok(&["token", "revoke", "-accessor", &child_accessor]);
    assert!(!bao_as(&broker, &child, &["token", "lookup"]).0);
    let (status, body) = broker.request_as(
        &root,
        "",
        "POST",
        "auth/token/renew",
        Some(&json!({ "token": child })),
    );
    assert_eq!(
        (status, body["errors"].clone()),
        (400, json!(["token not found"]))
    );
    let (status, body) = broker.request_as(&root, "", "POST", "auth/token/renew", Some(&json!({})));
    assert_eq!(
        (status, body["errors"].clone()),
        (400, json!(["missing token ID"]))
    );
}

#[test]
fn token_roles_shape_tokens_and_never_grant_beyond_their_writer() {
    let broker = Broker::dev();
    let root = broker.token.clone();
    broker.bao_ok(&[
        "write",
        "auth/token/roles/r",
        "allowed_policies=a,b",
        "disallowed_policies=c",
        "explicit_max_ttl=2h",
        "path_suffix=rev-1",
    ]);
    let read = bao_json(&broker, &["read", "auth/token/roles/r"]);
    assert_eq!(read["data"]["allowed_policies"], json!(["a", "b"]));
    assert_eq!(read["data"]["disallowed_policies"], json!(["c"]));
    assert_eq!(read["data"]["explicit_max_ttl"], 7200);
    assert_eq!(read["data"]["token_explicit_max_ttl"], 7200);
    assert_eq!(read["data"]["renewable"], true);
    assert_eq!(read["data"]["orphan"], false);
    let listed = broker.bao_ok(&["list", "auth/token/roles"]);
    assert!(listed.contains('r'), "{listed}");

    // Tokens get the allowed set, or a subset of it; never beyond, never a disallowed one.
    let all = bao_json(&broker, &["token", "create", "-role=r", "-ttl=5h"]);
    assert_eq!(all["auth"]["policies"], json!(["a", "b", "default"]));
    assert_eq!(
        all["auth"]["lease_duration"], 7200,
        "the role's explicit max TTL caps"
    );
    let some = bao_json(&broker, &["token", "create", "-role=r", "-policy=a"]);
    assert_eq!(some["auth"]["policies"], json!(["a", "default"]));
    let out = broker.bao(&["token", "create", "-role=r", "-policy=z"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("must be subset of the role's allowed policies"));
    let (status, body) = broker.request_as(
        &root,
        "",
        "POST",
        "auth/token/create/nope",
        Some(&json!({})),
    );
    assert_eq!(
        (status, body["errors"].clone()),
        (400, json!(["unknown role nope"]))
    );

    // A role delegates: a creator may create against it without holding its policies.
    let creator = token_with(
        &broker,
        "",
        "creator",
        "path \"auth/token/create/*\" { capabilities = [\"update\"] }\n",
    );
    let (ok, text) = bao_as(
        &broker,
        &creator,
        &["token", "create", "-role=r", "-format=json"],
    );
    assert!(ok, "{text}");
    // Without an allowed set, the creator hands out no more than it holds (stricter than
    // Vault, which lets a role with only a disallowed set give anything).
    broker.bao_ok(&["write", "auth/token/roles/open", "disallowed_policies=c"]);
    let (ok, text) = bao_as(
        &broker,
        &creator,
        &["token", "create", "-role=open", "-policy=a"],
    );
    assert!(
        !ok && text.contains("child policies must be subset of parent"),
        "{text}"
    );
    let (ok, _) = bao_as(&broker, &creator, &["token", "create", "-role=open"]);
    assert!(ok, "the creator's own policies are fine");

    // Writing roles: only what the writer holds, unless it has sudo on the role's path.
    let writer = token_with(
        &broker,
        "",
        "writer",
        "path \"auth/token/roles/*\" { capabilities = [\"create\", \"read\", \"update\", \"delete\", \"list\"] }\n",
    );
    // The writer carries `writer` and `default`.
    let (ok, text) = bao_as(
        &broker,
        &writer,
        &[
            "write",
            "auth/token/roles/mine",
            "allowed_policies=writer,default",
        ],
    );
    assert!(ok, "{text}");
    for beyond in [
        "allowed_policies=a",
        "allowed_policies_glob=w*",
        "orphan=true",
        "token_period=1h",
    ] {
        let (ok, text) = bao_as(
            &broker,
            &writer,
            &["write", "auth/token/roles/more", beyond],
        );
        assert!(!ok, "{beyond}: {text}");
        assert!(
            text.contains("Code: 400")
                && text.contains("needs root or sudo on auth/token/roles/more"),
            "{beyond}: {text}"
        );
    }
    let sudo_writer = token_with(
        &broker,
        "",
        "sudo-writer",
        "path \"auth/token/roles/*\" { capabilities = [\"create\", \"update\", \"sudo\"] }\n",
    );
    let (ok, text) = bao_as(
        &broker,
        &sudo_writer,
        &[
            "write",
            "auth/token/roles/more",
            "allowed_policies_glob=dev-*",
            "orphan=true",
        ],
    );
    assert!(ok, "{text}");
    let orphan = bao_json(&broker, &["token", "create", "-role=more", "-policy=dev-x"]);
    assert_eq!(orphan["auth"]["policies"], json!(["default", "dev-x"]));
    assert_eq!(orphan["auth"]["orphan"], true);

    // Root is never in a role, nor given by one.
    let out = broker.bao(&["write", "auth/token/roles/rooty", "allowed_policies=root"]);
    assert!(!out.status.success());
    broker.bao_ok(&["write", "auth/token/roles/any", "allowed_policies_glob=*"]);
    let out = broker.bao(&["token", "create", "-role=any", "-policy=root"]);
    assert!(!out.status.success());
    // Vault's fields it has no use for are refused, clearly.
    let (status, body) = broker.request_as(
        &root,
        "",
        "POST",
        "auth/token/roles/x",
        Some(&json!({ "allowed_entity_aliases": ["e"] })),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body["errors"][0]
        .as_str()
        .unwrap()
        .contains("allowed_entity_aliases"));

    broker.bao_ok(&["delete", "auth/token/roles/r"]);
    let (status, body) = broker.request_as(&root, "", "GET", "auth/token/roles/r", None);
    assert_eq!((status, body), (404, json!({ "errors": [] })));
}

#[test]
fn roles_and_named_tokens_stay_in_their_tenant() {
    let broker = Broker::dev();
    let root = broker.token.clone();
    for tenant in ["acme", "globex"] {
        broker.bao_ok(&["namespace", "create", tenant]);
    }
    broker.bao_ok(&[
        "write",
        &ns("acme"),
        "auth/token/roles/r",
        "allowed_policies=a",
    ]);
    let read = bao_json(&broker, &["read", &ns("acme"), "auth/token/roles/r"]);
    assert_eq!(read["data"]["allowed_policies"], json!(["a"]));
    // Invisible and unusable from the root namespace and from another tenant.
    for tenant in ["", "globex"] {
        let (status, _) = broker.request_as(&root, tenant, "GET", "auth/token/roles/r", None);
        assert_eq!(status, 404, "{tenant}");
        let (status, _) = broker.request_as(&root, tenant, "LIST", "auth/token/roles", None);
        assert_eq!(status, 404, "{tenant}");
        let (status, body) = broker.request_as(
            &root,
            tenant,
            "POST",
            "auth/token/create/r",
            Some(&json!({})),
        );
        assert_eq!(
            (status, body["errors"].clone()),
            (400, json!(["unknown role r"]))
        );
    }
    let (token, accessor) =
        created(&broker.bao_ok(&["token", "create", &ns("acme"), "-role=r", "-format=json"]));
    let looked = bao_json(&broker, &["token", "lookup", &ns("acme"), &token]);
    assert_eq!(looked["data"]["policies"], json!(["a", "default"]));

    // Another tenant's token looks exactly like an unknown one, and is untouched.
    for tenant in ["", "globex"] {
        let with_token = |path: &str, token: &str| {
            broker.request_as(
                &root,
                tenant,
                "POST",
                path,
                Some(&json!({ "token": token })),
            )
        };
        let named = with_token("auth/token/lookup", &token);
        let unknown = with_token("auth/token/lookup", "kbs.unknown");
        assert_eq!(named, unknown);
        assert_eq!(named.0, 403);
        let renewed = with_token("auth/token/renew", &token);
        let renewed_unknown = with_token("auth/token/renew", "kbs.unknown");
        assert_eq!(renewed.0, renewed_unknown.0);
        assert_eq!(renewed.1["errors"], renewed_unknown.1["errors"]);
        let (status, _) = with_token("auth/token/revoke", &token);
        assert_eq!(status, 204);
        let (status, body) = broker.request_as(
            &root,
            tenant,
            "POST",
            "auth/token/revoke-orphan",
            Some(&json!({ "token": token })),
        );
        assert_eq!(
            (status, body["errors"].clone()),
            (400, json!(["token to revoke not found"]))
        );
        let out = broker.bao_ok(&["list", "auth/token/accessors"]);
        assert!(!out.contains(&accessor), "{out}");
    }
    assert!(
        bao_as(&broker, &token, &["token", "lookup", &ns("acme")]).0,
        "still alive"
    );
    let out = broker.bao_ok(&["list", &ns("acme"), "auth/token/accessors"]);
    assert!(out.contains(&accessor), "{out}");

    // A tenant's admin works on its own roles, and never creates tokens elsewhere.
    let admin = token_with(
        &broker,
        "acme",
        "admin",
        "path \"*\" { capabilities = [\"create\", \"read\", \"update\", \"delete\", \"list\", \"sudo\"] }\n",
    );
    let (ok, text) = bao_as(
        &broker,
        &admin,
        &[
            "write",
            &ns("acme"),
            "auth/token/roles/own",
            "allowed_policies=admin",
        ],
    );
    assert!(ok, "{text}");
    let (ok, text) = bao_as(
        &broker,
        &admin,
        &["token", "create", &ns("acme"), "-role=own", "-format=json"],
    );
    assert!(ok, "{text}");
    for tenant in ["", "globex"] {
        for path in [
            "auth/token/create/own",
            "auth/token/create",
            "auth/token/roles/own",
        ] {
            let (status, body) = broker.request_as(&admin, tenant, "POST", path, Some(&json!({})));
            assert_eq!(
                (status, body["errors"].clone()),
                (403, json!(["permission denied"])),
                "{tenant} {path}"
            );
        }
    }
    // revoke-orphan in the tenant, by its admin (sudo there).
    let (ok, text) = bao_as(
        &broker,
        &admin,
        &["token", "revoke", "-mode=orphan", &ns("acme"), &token],
    );
    assert!(ok, "{text}");
    assert!(!bao_as(&broker, &token, &["token", "lookup", &ns("acme")]).0);
}

/// Only the fields both answer; `request_id` and the like differ by nature.
fn data(body: &Value) -> Value {
    body["data"].clone()
}

#[test]
fn openbao_agrees_on_role_shapes_and_refusals() {
    let bao = OpenBao::start();
    let broker = Broker::dev();
    let ours = |method: &str, path: &str, body: Value| broker.request(method, path, Some(&body));
    let theirs = |method: &str, path: &str, body: Value| bao.request(method, path, body);

    let role = json!({
        "allowed_policies": "a,b",
        "disallowed_policies": ["c"],
        "allowed_policies_glob": ["dev-*"],
        "disallowed_policies_glob": "adm*",
        "orphan": false,
        "renewable": "false",
        "explicit_max_ttl": "2h",
        "token_period": 600,
        "path_suffix": "rev-1",
        "token_no_default_policy": false,
    });
    let written = (
        ours("POST", "auth/token/roles/r", role.clone()),
        theirs("POST", "auth/token/roles/r", role),
    );
    assert_eq!(written.0 .0, written.1 .0, "{written:?}");
    let (read_ours, read_theirs) = (
        ours("GET", "auth/token/roles/r", Value::Null),
        theirs("GET", "auth/token/roles/r", Value::Null),
    );
    assert_eq!(read_ours.0, read_theirs.0);
    assert_eq!(data(&read_ours.1), data(&read_theirs.1), "role read shapes");
    let (list_ours, list_theirs) = (
        ours("LIST", "auth/token/roles", Value::Null),
        theirs("LIST", "auth/token/roles", Value::Null),
    );
    assert_eq!(
        (list_ours.0, data(&list_ours.1)),
        (list_theirs.0, data(&list_theirs.1))
    );

    // The refusals both give, with the same status and message.
    let cases = [
        ("POST", "auth/token/create/r", json!({ "policies": ["z"] })),
        ("POST", "auth/token/create/r", json!({ "policies": ["c"] })),
        (
            "POST",
            "auth/token/create/r",
            json!({ "policies": ["admin"] }),
        ),
        ("POST", "auth/token/lookup", json!({ "token": "" })),
        ("POST", "auth/token/lookup", json!({ "token": "s.unknown" })),
        ("POST", "auth/token/renew", json!({ "token": "s.unknown" })),
        ("POST", "auth/token/renew", json!({})),
        ("POST", "auth/token/revoke", json!({ "token": "s.unknown" })),
        ("POST", "auth/token/revoke", json!({})),
        (
            "POST",
            "auth/token/revoke-orphan",
            json!({ "token": "s.unknown" }),
        ),
        ("POST", "auth/token/revoke-orphan", json!({})),
        ("GET", "auth/token/roles/nothing", Value::Null),
        (
            "POST",
            "auth/token/roles/x",
            json!({ "token_type": "nonsense" }),
        ),
        ("POST", "auth/token/roles/x", json!({ "path_suffix": "v1" })),
        (
            "POST",
            "auth/token/roles/x",
            json!({ "path_suffix": "a/../b" }),
        ),
    ];
    let mut differ = Vec::new();
    for (method, path, body) in cases {
        let (a, b) = (
            ours(method, path, body.clone()),
            theirs(method, path, body.clone()),
        );
        if a.0 != b.0 || a.1["errors"] != b.1["errors"] {
            differ.push(format!(
                "{method} {path} {body}: ours {a:?}, OpenBao's {b:?}"
            ));
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));

    // The tokens both make against the role: the same policies, orphan flag and renewability.
    let request = json!({ "policies": ["a", "dev-x"] });
    let (a, b) = (
        ours("POST", "auth/token/create/r", request.clone()),
        theirs("POST", "auth/token/create/r", request),
    );
    assert_eq!(a.0, b.0, "{a:?} {b:?}");
    for field in ["policies", "orphan", "renewable", "lease_duration"] {
        assert_eq!(
            a.1["auth"][field], b.1["auth"][field],
            "{field}: {a:?} {b:?}"
        );
    }
}
