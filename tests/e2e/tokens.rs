//! Tokens (Vault's token auth method) through the real binary and the `bao` CLI.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{runs_out, Broker};

fn create(broker: &Broker, token: &str, path: &str, body: Value) -> Value {
    let (status, value) =
        broker.request_with("POST", path, Some(&body), &[("X-Vault-Token", token)]);
    assert_eq!(status, 200, "{path}: {value}");
    value["auth"].clone()
}

fn as_token(
    broker: &Broker,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    broker.request_with(method, path, body, &[("X-Vault-Token", token)])
}

#[test]
fn bao_creates_looks_up_renews_and_revokes_tokens() {
    let broker = Broker::dev();
    let out = broker.bao_ok(&["token", "create", "-policy=app", "-ttl=1h", "-format=json"]);
    let auth: Value = serde_json::from_str(&out).unwrap();
    let token = auth["auth"]["client_token"].as_str().unwrap().to_owned();
    let accessor = auth["auth"]["accessor"].as_str().unwrap().to_owned();
    assert!(token.starts_with("kbs."));
    assert_eq!(auth["auth"]["policies"], json!(["app", "default"]));
    assert_eq!(auth["auth"]["lease_duration"], 3600);

    let (status, value) = as_token(&broker, &token, "GET", "auth/token/lookup-self", None);
    assert_eq!(status, 200);
    assert_eq!(value["data"]["accessor"], accessor.as_str());
    assert_eq!(value["data"]["policies"], json!(["app", "default"]));

    let out = broker.bao_ok(&["token", "lookup", "-accessor", &accessor]);
    assert!(out.contains(&accessor) && !out.contains(&token), "{out}");

    let (status, _) = as_token(
        &broker,
        &token,
        "POST",
        "auth/token/renew-self",
        Some(&json!({ "increment": "2h" })),
    );
    assert_eq!(status, 200);

    // Without policies granting it, the token can do nothing else.
    let (status, value) = as_token(
        &broker,
        &token,
        "POST",
        "transit/encrypt/k",
        Some(&json!({ "plaintext": "aGk=" })),
    );
    assert_eq!(
        (status, value["errors"][0].clone()),
        (403, json!("permission denied"))
    );

    broker.bao_ok(&["token", "revoke", "-accessor", &accessor]);
    let (status, _) = as_token(&broker, &token, "GET", "auth/token/lookup-self", None);
    assert_eq!(
        status, 403,
        "a revoked token is refused on the next request"
    );
}

#[test]
fn lifetimes_uses_and_trees_are_enforced() {
    let broker = Broker::dev();
    let root = broker.token.clone();

    // Renewal extends the token, never past the maximum. The renewal must come within the
    // token's first TTL (whole seconds: at least 3 s of the 4): room for a loaded machine's
    // next request (it was 2 s, so at least 1 s). Without the renewal the token would run
    // out 2 s before its maximum, which the check of its end below tells apart.
    let created = Instant::now();
    let auth = create(
        &broker,
        &root,
        "auth/token/create",
        json!({ "ttl": "4s", "explicit_max_ttl": "6s" }),
    );
    let created = (created, Instant::now());
    let short = auth["client_token"].as_str().unwrap().to_owned();
    let (status, value) = as_token(
        &broker,
        &short,
        "POST",
        "auth/token/renew-self",
        Some(&json!({ "increment": "1h" })),
    );
    assert_eq!(status, 200, "{value}");
    assert!(
        value["auth"]["lease_duration"].as_i64().unwrap() <= 6,
        "{value}"
    );
    // Valid until its maximum, refused from then on: an expired token is refused.
    runs_out(
        "a token with explicit_max_ttl 6s",
        created,
        Duration::from_secs(6),
        || {
            let (status, value) = as_token(&broker, &short, "GET", "auth/token/lookup-self", None);
            assert!(status == 200 || status == 403, "{status} {value}");
            status == 403
        },
    );

    // num_uses: exactly that many requests.
    let auth = create(
        &broker,
        &root,
        "auth/token/create",
        json!({ "num_uses": 2 }),
    );
    let limited = auth["client_token"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        let (status, _) = as_token(&broker, &limited, "GET", "auth/token/lookup-self", None);
        assert_eq!(status, 200);
    }
    let (status, _) = as_token(&broker, &limited, "GET", "auth/token/lookup-self", None);
    assert_eq!(status, 403, "a use-exhausted token is refused");

    // Revoking a parent revokes its children.
    let parent = create(
        &broker,
        &root,
        "auth/token/create",
        json!({ "policies": ["root"] }),
    );
    let parent_token = parent["client_token"].as_str().unwrap().to_owned();
    let child = create(
        &broker,
        &parent_token,
        "auth/token/create",
        json!({ "policies": ["app"] }),
    );
    let child_token = child["client_token"].as_str().unwrap().to_owned();
    let (status, _) = as_token(
        &broker,
        &parent_token,
        "POST",
        "auth/token/revoke-self",
        None,
    );
    assert_eq!(status, 204);
    let (status, _) = as_token(&broker, &child_token, "GET", "auth/token/lookup-self", None);
    assert_eq!(status, 403);

    // A child of a non-root token gets a subset of its policies.
    let app = create(
        &broker,
        &root,
        "auth/token/create",
        json!({ "policies": ["app"] }),
    );
    let app_token = app["client_token"].as_str().unwrap().to_owned();
    let (status, _) = as_token(
        &broker,
        &app_token,
        "POST",
        "auth/token/create",
        Some(&json!({ "policies": ["admin"] })),
    );
    assert_eq!(
        status, 403,
        "without a policy granting auth/token/create, the request is refused first"
    );

    // Forged tokens, and a root token's tidy.
    for forged in ["kbs.forged", "root2", ""] {
        let (status, _) = as_token(&broker, forged, "GET", "auth/token/lookup-self", None);
        assert_eq!(status, 403, "{forged:?}");
    }
    let (status, value) = as_token(&broker, &root, "POST", "auth/token/tidy", None);
    assert_eq!(status, 200, "{value}");
}

#[test]
fn accessors_resolve_only_within_their_tenant() {
    let broker = Broker::dev();
    broker.bao_ok(&["namespace", "create", "acme"]);
    broker.bao_ok(&["namespace", "create", "globex"]);
    let root = broker.token.clone();
    let auth = create(
        &broker,
        &root,
        "acme/auth/token/create",
        json!({ "policies": ["app"] }),
    );
    let acme_token = auth["client_token"].as_str().unwrap().to_owned();
    let accessor = auth["accessor"].as_str().unwrap().to_owned();

    let body = json!({ "accessor": accessor });
    let (status, _) = as_token(
        &broker,
        &root,
        "POST",
        "acme/auth/token/lookup-accessor",
        Some(&body),
    );
    assert_eq!(status, 200);
    let (status_other, other) = as_token(
        &broker,
        &root,
        "POST",
        "globex/auth/token/lookup-accessor",
        Some(&body),
    );
    let (status_missing, missing) = as_token(
        &broker,
        &root,
        "POST",
        "globex/auth/token/lookup-accessor",
        Some(&json!({ "accessor": "no-such-accessor" })),
    );
    assert_eq!(
        (status_other, &other["errors"]),
        (status_missing, &missing["errors"])
    );
    let (status, _) = as_token(
        &broker,
        &root,
        "POST",
        "globex/auth/token/revoke-accessor",
        Some(&body),
    );
    assert_eq!(status, 400);

    // The tenant's token works in its tenant and nowhere else.
    let (status, _) = as_token(
        &broker,
        &acme_token,
        "GET",
        "acme/auth/token/lookup-self",
        None,
    );
    assert_eq!(status, 200);
    for path in ["globex/auth/token/lookup-self", "auth/token/lookup-self"] {
        let (status, value) = as_token(&broker, &acme_token, "GET", path, None);
        assert_eq!(
            (status, value["errors"][0].clone()),
            (403, json!("permission denied")),
            "{path}"
        );
    }
    // Deleting the tenant revokes its tokens.
    broker.bao_ok(&["namespace", "delete", "acme"]);
    let (status, _) = broker.request_with(
        "GET",
        "auth/token/lookup-self",
        None,
        &[
            ("X-Vault-Token", &acme_token),
            ("X-Vault-Namespace", "acme"),
        ],
    );
    assert_eq!(status, 403);
}
