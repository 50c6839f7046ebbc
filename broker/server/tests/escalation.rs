//! The escalation search (issue 16): random sequences of policy, role, login and token
//! operations (token roles and creation against them among them), made by callers who start
//! with neither `root` nor any operator policy — two tenants' own admins, a root-namespace
//! token delegated one tenant, a root-namespace role writer — each step by a token any
//! earlier step yielded, in the root namespace or a tenant. Then every token yielded is
//! tried, and none may carry `root`, reach an operator operation (in the root namespace or
//! in its tenant), or reach a tenant it has no authority over.
//!
//! Deterministic: each case is a fixed seed; `ESCALATION_SEEDS=<from>..<to>` searches other
//! seeds. A failure prints the seed and every step taken.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fmt::Write as _;

use rand::{rngs::StdRng, seq::SliceRandom, Rng, SeedableRng};
use serde_json::{json, Value};
use support::{dev_broker, Api};

/// Namespaces: the root one (`""`) and two tenants.
const NAMESPACES: [&str; 3] = ["", "acme", "globex"];

/// Policy names the search writes and names (`root` among them: it must never stick).
const POLICY_NAMES: [&str; 6] = ["root", "default", "p1", "p2", "admin", "acme-delegate"];

/// Policy bodies the search writes.
const POLICY_BODIES: [&str; 5] = [
    r#"path "*" { capabilities = ["create", "read", "update", "delete", "list", "sudo"] }"#,
    r#"path "sys/*" { capabilities = ["create", "read", "update", "delete", "list", "sudo"] }"#,
    r#"path "auth/*" { capabilities = ["create", "read", "update", "delete", "list", "sudo"] }"#,
    r#"path "acme/*" { capabilities = ["create", "read", "update", "delete", "list", "sudo"] }"#,
    r#"path "globex/*" { capabilities = ["create", "read", "update", "delete", "list", "sudo"] }"#,
];

const EVERYTHING: &str =
    r#"path "*" { capabilities = ["create", "read", "update", "delete", "list", "sudo"] }"#;

/// Steps per case.
const STEPS: usize = 40;

/// A token the search holds, and the namespace it belongs to.
#[derive(Clone, Debug)]
struct Held {
    token: String,
    home: &'static str,
}

/// A random subset of the policy names, `root` included at times.
fn some_policies(rng: &mut StdRng) -> Vec<&'static str> {
    let count = rng.gen_range(1..=3);
    POLICY_NAMES.choose_multiple(rng, count).copied().collect()
}

/// One random step by a random held token; returns a token it yielded, if any.
async fn step(api: &Api, rng: &mut StdRng, pool: &[Held], log: &mut String) -> Option<Held> {
    let actor = pool.choose(rng).unwrap().clone();
    let namespace = *NAMESPACES.choose(rng).unwrap();
    let token = Some(actor.token.as_str());
    let role = ["r1", "r2"].choose(rng).unwrap().to_owned();
    let kind = rng.gen_range(0..8);
    let _ = write!(log, "\n  by a token of {:?} in {namespace:?}: ", actor.home);
    match kind {
        0 => {
            let name = *POLICY_NAMES.choose(rng).unwrap();
            let body = *POLICY_BODIES.choose(rng).unwrap();
            let path = format!("sys/policies/acl/{name}");
            let (status, _) = api
                .call(
                    token,
                    namespace,
                    "PUT",
                    &path,
                    Some(json!({ "policy": body })),
                )
                .await;
            let _ = write!(log, "policy {name} = {body} -> {status}");
            None
        }
        1 | 2 => {
            let policies = some_policies(rng);
            let (mount, body) = if kind == 1 {
                ("approle", json!({ "token_policies": policies }))
            } else {
                let jwt = json!({
                    "role_type": "jwt", "user_claim": "sub",
                    "bound_audiences": ["x"], "policies": policies,
                });
                ("jwt", jwt)
            };
            let path = format!("auth/{mount}/role/{role}");
            let (status, _) = api.call(token, namespace, "POST", &path, Some(body)).await;
            let _ = write!(log, "{mount} role {role} with {policies:?} -> {status}");
            None
        }
        3 => {
            // Log in with an AppRole role: the actor reads its id and makes a secret id.
            let base = format!("auth/approle/role/{role}");
            let (_, id) = api
                .call(token, namespace, "GET", &format!("{base}/role-id"), None)
                .await;
            let (_, secret) = api
                .call(
                    token,
                    namespace,
                    "POST",
                    &format!("{base}/secret-id"),
                    Some(json!({})),
                )
                .await;
            let login = json!({
                "role_id": id["data"]["role_id"], "secret_id": secret["data"]["secret_id"],
            });
            let (status, answer) = api
                .call(None, namespace, "POST", "auth/approle/login", Some(login))
                .await;
            let _ = write!(log, "approle login {role} -> {status}");
            let token = answer["auth"]["client_token"].as_str()?.to_owned();
            Some(Held {
                token,
                home: namespace,
            })
        }
        6 => {
            // A token role: allowed policies, a glob, orphans, a period, at random.
            let mut body = json!({ "allowed_policies": some_policies(rng) });
            if rng.gen_bool(0.3) {
                body["allowed_policies_glob"] = json!(["*"]);
            }
            if rng.gen_bool(0.3) {
                body["orphan"] = json!(true);
            }
            if rng.gen_bool(0.3) {
                body["token_period"] = json!("1h");
            }
            let path = format!("auth/token/roles/{role}");
            let (status, _) = api
                .call(token, namespace, "POST", &path, Some(body.clone()))
                .await;
            let _ = write!(log, "token role {role} = {body} -> {status}");
            None
        }
        7 => {
            let body = if rng.gen_bool(0.5) {
                json!({ "policies": some_policies(rng) })
            } else {
                json!({})
            };
            let path = format!("auth/token/create/{role}");
            let (status, answer) = api
                .call(token, namespace, "POST", &path, Some(body.clone()))
                .await;
            let _ = write!(log, "token create against {role} {body} -> {status}");
            let token = answer["auth"]["client_token"].as_str()?.to_owned();
            Some(Held {
                token,
                home: namespace,
            })
        }
        _ => {
            let policies = some_policies(rng);
            let mut body = json!({ "policies": policies });
            let orphan = rng.gen_bool(0.5);
            if orphan {
                body["no_parent"] = json!(true);
            }
            if rng.gen_bool(0.3) {
                body["period"] = json!("1h");
            }
            let (status, answer) = api
                .call(
                    token,
                    namespace,
                    "POST",
                    "auth/token/create",
                    Some(body.clone()),
                )
                .await;
            let _ = write!(log, "token create {body} -> {status}");
            let token = answer["auth"]["client_token"].as_str()?.to_owned();
            Some(Held {
                token,
                home: namespace,
            })
        }
    }
}

/// What `held` must never reach; a description of each breach.
async fn breaches(api: &Api, held: &Held) -> Vec<String> {
    let token = Some(held.token.as_str());
    let mut found = Vec::new();
    let (status, me) = api
        .call(token, held.home, "GET", "auth/token/lookup-self", None)
        .await;
    if status == 200 && me["data"]["policies"].to_string().contains("\"root\"") {
        found.push(format!("carries root: {me}"));
    }
    // The operator's operations, in the root namespace and in the token's own.
    let operator: [(&str, &str, Option<Value>); 7] = [
        ("GET", "sys/metrics?format=prometheus", None),
        ("LIST", "sys/namespaces", None),
        ("POST", "sys/namespaces/escalated", Some(json!({}))),
        ("POST", "sys/plugins/reload", Some(json!({}))),
        ("POST", "sys/audit-hash/file", Some(json!({ "input": "x" }))),
        (
            "PUT",
            "sys/policies/acl/escalated",
            Some(json!({ "policy": EVERYTHING })),
        ),
        (
            "POST",
            "sys/auth/escalated",
            Some(json!({ "type": "approle" })),
        ),
    ];
    let mut places = vec![""];
    if !held.home.is_empty() {
        places.push(held.home);
    }
    for namespace in places {
        for (method, path, body) in &operator {
            // Policies and auth methods are the tenant's own to manage inside it.
            if !namespace.is_empty()
                && path.starts_with("sys/policies") | path.starts_with("sys/auth")
            {
                continue;
            }
            let (status, answer) = api.call(token, namespace, method, path, body.clone()).await;
            if (200..300).contains(&status) || status == 400 {
                found.push(format!(
                    "{method} {path} in {namespace:?} -> {status} {answer}"
                ));
            }
        }
    }
    // Tenants it has no authority over: for a tenant's token every other namespace; for a
    // root-namespace token globex (no root-namespace policy the actors can hold names it).
    let elsewhere: Vec<&str> = match held.home {
        "" => vec!["globex"],
        home => NAMESPACES.iter().copied().filter(|n| *n != home).collect(),
    };
    for namespace in elsewhere {
        for (method, path) in [("LIST", "transit/keys"), ("LIST", "sys/policies/acl")] {
            let (status, answer) = api.call(token, namespace, method, path, None).await;
            if status != 403 {
                found.push(format!(
                    "{method} {path} in {namespace:?} -> {status} {answer}"
                ));
            }
        }
    }
    found
}

async fn search(seed: u64) {
    let (app, root, _dir) = dev_broker().await;
    let api = Api { app };
    let root = root.as_str();
    for tenant in ["acme", "globex"] {
        let (status, body) = api
            .call(
                Some(root),
                "",
                "POST",
                &format!("sys/namespaces/{tenant}"),
                Some(json!({})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let transit = json!({ "type": "transit" });
        let (status, body) = api
            .call(
                Some(root),
                tenant,
                "POST",
                "sys/mounts/transit",
                Some(transit),
            )
            .await;
        assert_eq!(status, 204, "{body}");
    }
    for namespace in NAMESPACES {
        for kind in ["approle", "jwt"] {
            let path = format!("sys/auth/{kind}");
            let (status, body) = api
                .call(
                    Some(root),
                    namespace,
                    "POST",
                    &path,
                    Some(json!({ "type": kind })),
                )
                .await;
            assert_eq!(status, 204, "{body}");
        }
    }
    let mut pool = vec![
        Held {
            token: api.token_with(root, "acme", "admin", EVERYTHING).await,
            home: "acme",
        },
        Held {
            token: api.token_with(root, "globex", "admin", EVERYTHING).await,
            home: "globex",
        },
        Held {
            token: api.token_with(root, "", "acme-delegate", POLICY_BODIES[3]).await,
            home: "",
        },
        Held {
            token: api
                .token_with(
                    root,
                    "",
                    "role-writer",
                    r#"path "auth/approle/role/*" { capabilities = ["create", "read", "update", "list"] }
path "auth/token/create" { capabilities = ["update"] }"#,
                )
                .await,
            home: "",
        },
    ];
    let mut rng = StdRng::seed_from_u64(seed);
    let mut log = String::new();
    for _ in 0..STEPS {
        if let Some(yielded) = step(&api, &mut rng, &pool, &mut log).await {
            pool.push(yielded);
        }
    }
    println!(
        "seed {seed}: {} tokens yielded by {STEPS} steps",
        pool.len() - 4
    );
    let mut found = Vec::new();
    for held in &pool {
        for breach in breaches(&api, held).await {
            found.push(format!("a token of {:?}: {breach}", held.home));
        }
    }
    assert!(
        found.is_empty(),
        "seed {seed}: {} breaches:\n{}\nsteps:{log}",
        found.len(),
        found.join("\n")
    );
}

/// The seeds searched: `ESCALATION_SEEDS=<from>..<to>`, else 0..24.
fn seeds() -> std::ops::Range<u64> {
    std::env::var("ESCALATION_SEEDS")
        .ok()
        .and_then(|text| {
            let (from, to) = text.split_once("..")?;
            Some(from.parse().ok()?..to.parse().ok()?)
        })
        .unwrap_or(0..24)
}

#[tokio::test]
async fn no_sequence_of_operations_escalates_a_caller_without_operator_authority() {
    for seed in seeds() {
        search(seed).await;
    }
}
