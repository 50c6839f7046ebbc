//! Response wrapping (Vault's `X-Vault-Wrap-TTL` and `sys/wrapping/*`) through the real
//! binary and the `bao` CLI: the trusted-orchestrator pattern (an orchestrator fetches a
//! wrapped AppRole secret_id, the service unwraps it with the wrapping token alone and logs
//! in) in the root namespace and in a tenant, single use, tenancy, lookup, rewrap, expiry,
//! a wrapping token good for nothing else, and known answers of a real OpenBao. The race of
//! two cluster nodes unwrapping one token is in `cluster.rs`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{
    bao_at, bao_ok_at, eventually, ns, openbao::OpenBao, tenant_with_auth, Broker,
};

/// Vault's answer to every wrapping token that is not live where it is presented.
const NOT_VALID: &str = "wrapping token is not valid or does not exist";

fn bao_json(broker: &Broker, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("-format=json");
    serde_json::from_str(&broker.bao_ok(&all)).unwrap()
}

/// The wrapping token of a wrapped answer, checking that nothing else was answered.
fn wrapping_token(answer: &Value) -> String {
    assert!(answer["data"].is_null(), "{answer}");
    assert!(answer["auth"].is_null(), "{answer}");
    let token = answer["wrap_info"]["token"].as_str().unwrap();
    assert!(token.starts_with("kbw."), "{answer}");
    token.to_owned()
}

/// The orchestrator (root) gets a wrapped secret_id of role `svc` in `namespace` (`""`:
/// root) with `bao write -wrap-ttl`; the service, holding only the wrapping token, unwraps
/// it with `bao unwrap` and logs in.
fn orchestrate(broker: &Broker, namespace: &str) {
    let prefix = if namespace.is_empty() {
        String::new()
    } else {
        format!("{namespace}/")
    };
    // `-namespace=` (empty) is the root namespace.
    let flag = &format!("-namespace={namespace}");
    broker.bao_ok(&[
        "write",
        flag,
        "auth/approle/role/svc",
        "token_policies=app-enc",
    ]);
    let role_id = bao_json(broker, &["read", flag, "auth/approle/role/svc/role-id"])["data"]
        ["role_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let wrapped = bao_json(
        broker,
        &[
            "write",
            flag,
            "-wrap-ttl=60s",
            "-f",
            "auth/approle/role/svc/secret-id",
        ],
    );
    let token = wrapping_token(&wrapped);
    let info = &wrapped["wrap_info"];
    assert_eq!(info["ttl"], 60, "{wrapped}");
    assert_eq!(info["creation_path"], "auth/approle/role/svc/secret-id");
    let accessor = info["wrapped_accessor"].as_str().unwrap().to_owned();
    assert!(!accessor.is_empty(), "{wrapped}");

    // A wrapping token is good for nothing but its own unwrap, lookup and rewrap.
    let (status, _) = broker.request_with(
        "GET",
        &format!("{prefix}auth/token/lookup-self"),
        None,
        &[("X-Vault-Token", &token)],
    );
    assert_eq!(status, 403);
    // Another namespace does not know it, and does not use it up.
    let elsewhere = if namespace.is_empty() { "acme" } else { "root" };
    let out = bao_at(&broker.addr, &token, &["unwrap", &ns(elsewhere)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(NOT_VALID));

    // The service: only the wrapping token, no other.
    let unwrapped: Value = serde_json::from_str(&bao_ok_at(
        &broker.addr,
        &token,
        &["unwrap", flag, "-format=json"],
    ))
    .unwrap();
    let secret_id = unwrapped["data"]["secret_id"].as_str().unwrap().to_owned();
    assert_eq!(unwrapped["data"]["secret_id_accessor"], accessor.as_str());
    let body = json!({ "role_id": role_id, "secret_id": secret_id }).to_string();
    let (status, login) = broker.raw(
        "POST",
        &format!("{prefix}auth/approle/login"),
        Some(&body),
        &[],
    );
    assert_eq!(status, 200, "{login}");
    // Single use, whoever asks.
    let out = bao_at(&broker.addr, &token, &["unwrap", flag]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(NOT_VALID));
    let out = broker.bao(&["unwrap", flag, &token]);
    assert!(!out.status.success());
}

#[test]
fn the_trusted_orchestrator_hands_a_service_a_wrapped_secret_id_in_root_and_in_a_tenant() {
    let broker = Broker::dev();
    tenant_with_auth(&broker, "acme", "approle");
    broker.bao_ok(&["auth", "enable", "approle"]);
    let policy = crate::support::repo_root().join("policies/examples/app-enc.hcl");
    broker.bao_ok(&["policy", "write", "app-enc", policy.to_str().unwrap()]);
    orchestrate(&broker, "");
    orchestrate(&broker, "acme");
}

/// POST `sys/wrapping/lookup` with no token at all.
fn anonymous_lookup(broker: &Broker, token: &str) -> (u16, Value) {
    broker.request_with(
        "POST",
        "sys/wrapping/lookup",
        Some(&json!({ "token": token })),
        &[],
    )
}

#[test]
fn wrapped_tokens_look_up_rewrap_unwrap_once_and_expire() {
    let broker = Broker::dev();
    let wrapped = bao_json(
        &broker,
        &["token", "create", "-wrap-ttl=5m", "-policy=default"],
    );
    let first = wrapping_token(&wrapped);
    let wrapped_accessor = wrapped["wrap_info"]["wrapped_accessor"].as_str().unwrap();

    let (status, lookup) = anonymous_lookup(&broker, &first);
    assert_eq!(status, 200, "{lookup}");
    assert_eq!(lookup["data"]["creation_path"], "auth/token/create");
    assert_eq!(lookup["data"]["creation_ttl"], 300);
    assert!(lookup["data"]["creation_time"].is_string(), "{lookup}");
    assert!(lookup["data"].get("secret_id").is_none() && lookup["auth"].is_null());

    // Rewrap: a new token, the same response, the old token dead.
    let rewrapped = bao_json(
        &broker,
        &["write", "sys/wrapping/rewrap", &format!("token={first}")],
    );
    let second = wrapping_token(&rewrapped);
    assert_ne!(first, second);
    assert_eq!(rewrapped["wrap_info"]["ttl"], 300);
    assert_eq!(rewrapped["wrap_info"]["creation_path"], "auth/token/create");
    let (status, dead) = anonymous_lookup(&broker, &first);
    assert_eq!(status, 400, "{dead}");
    assert_eq!(dead["errors"][0], NOT_VALID);

    // Unwrapped (the wrapping token in the body, root calling): a working token.
    let unwrapped: Value =
        serde_json::from_str(&broker.bao_ok(&["unwrap", "-format=json", &second])).unwrap();
    let issued = unwrapped["auth"]["client_token"].as_str().unwrap();
    assert_eq!(unwrapped["auth"]["accessor"], wrapped_accessor);
    let out = bao_ok_at(&broker.addr, issued, &["token", "lookup", "-format=json"]);
    assert!(out.contains("default"), "{out}");
    assert_eq!(anonymous_lookup(&broker, &second).0, 400);

    // sys/wrapping/wrap needs a wrap TTL; bad TTLs are refused, never answered unwrapped.
    let (status, body) = broker.request("POST", "sys/wrapping/wrap", Some(&json!({"a": 1})));
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["errors"][0],
        "endpoint requires response wrapping to be used"
    );
    for ttl in ["0", "-5", "never", "769h"] {
        let (status, body) = broker.request_with(
            "POST",
            "auth/token/create",
            Some(&json!({})),
            &[("X-Vault-Token", &broker.token), ("X-Vault-Wrap-TTL", ttl)],
        );
        assert_eq!(status, 400, "{ttl}: {body}");
        assert!(
            body["auth"].is_null() && body["wrap_info"].is_null(),
            "{body}"
        );
    }

    // Expiry: a 1 s wrapping token stops answering, then cannot be unwrapped.
    let (status, short) = broker.request_with(
        "POST",
        "sys/wrapping/wrap",
        Some(&json!({ "secret": "short-lived" })),
        &[("X-Vault-Token", &broker.token), ("X-Vault-Wrap-TTL", "1s")],
    );
    assert_eq!(status, 200, "{short}");
    let short = wrapping_token(&short);
    assert!(
        eventually(Duration::from_secs(30), || anonymous_lookup(
            &broker, &short
        )
        .0 == 400),
        "a 1 s wrapping token still answers"
    );
    let (status, body) = broker.request_with(
        "POST",
        "sys/wrapping/unwrap",
        None,
        &[("X-Vault-Token", &short)],
    );
    assert_eq!(
        (status, &body["errors"][0]),
        (400, &json!(NOT_VALID)),
        "{body}"
    );
}

/// The same request to OpenBao and to the broker, each with its root token.
fn both(
    bao: &OpenBao,
    broker: &Broker,
    path: &str,
    body: &Value,
    wrap_ttl: Option<&str>,
) -> [(u16, Value); 2] {
    let headers = |token: &'static str| {
        let mut all = vec![("X-Vault-Token", token)];
        if let Some(ttl) = wrap_ttl {
            all.push(("X-Vault-Wrap-TTL", ttl));
        }
        all
    };
    let mut ours = headers("");
    ours[0].1 = &broker.token;
    [
        bao.request_with("POST", path, body, &headers("root")),
        broker.request_with("POST", path, Some(body), &ours),
    ]
}

fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    keys
}

#[test]
fn wrapping_answers_as_openbao_does() {
    let bao = OpenBao::start();
    let broker = Broker::dev();

    // Wrap: wrap_info's fields, no data, no auth.
    let wrapped = both(
        &bao,
        &broker,
        "sys/wrapping/wrap",
        &json!({"foo": "bar"}),
        Some("60"),
    );
    for (status, body) in &wrapped {
        assert_eq!(*status, 200, "{body}");
        assert!(body["data"].is_null() && body["auth"].is_null(), "{body}");
        assert_eq!(body["wrap_info"]["ttl"], 60);
        assert_eq!(body["wrap_info"]["creation_path"], "sys/wrapping/wrap");
    }
    assert_eq!(
        keys(&wrapped[0].1["wrap_info"]),
        keys(&wrapped[1].1["wrap_info"])
    );
    let tokens: Vec<String> = wrapped
        .iter()
        .map(|(_, b)| b["wrap_info"]["token"].as_str().unwrap().to_owned())
        .collect();

    // Lookup without a token: the same fields.
    let looked: Vec<(u16, Value)> = [
        bao.request_with(
            "POST",
            "sys/wrapping/lookup",
            &json!({"token": tokens[0]}),
            &[],
        ),
        anonymous_lookup(&broker, &tokens[1]),
    ]
    .into();
    assert_eq!(looked[0].0, looked[1].0, "{looked:?}");
    assert_eq!(
        keys(&looked[0].1["data"]),
        keys(&looked[1].1["data"]),
        "{looked:?}"
    );
    assert_eq!(
        looked[0].1["data"]["creation_ttl"],
        looked[1].1["data"]["creation_ttl"]
    );

    // Unwrap with the token in the body: the data wrapped; a second time: the same refusal.
    for round in 0..2 {
        let answers = [
            bao.request_with(
                "POST",
                "sys/wrapping/unwrap",
                &json!({"token": tokens[0]}),
                &[("X-Vault-Token", "root")],
            ),
            broker.request(
                "POST",
                "sys/wrapping/unwrap",
                Some(&json!({"token": tokens[1]})),
            ),
        ];
        assert_eq!(answers[0].0, answers[1].0, "round {round}: {answers:?}");
        if round == 0 {
            assert_eq!(answers[0].1["data"], json!({"foo": "bar"}));
            assert_eq!(answers[1].1["data"], json!({"foo": "bar"}));
        } else {
            assert_eq!(
                answers[0].1["errors"], answers[1].1["errors"],
                "{answers:?}"
            );
        }
    }

    // Wrap without a TTL: the same refusal.
    let refused = both(&bao, &broker, "sys/wrapping/wrap", &json!({"a": 1}), None);
    assert_eq!(refused[0].0, refused[1].0, "{refused:?}");
    assert_eq!(
        refused[0].1["errors"], refused[1].1["errors"],
        "{refused:?}"
    );

    // A wrapped token: wrapped_accessor, the creation path; a rewrap keeps the path.
    let created = both(
        &bao,
        &broker,
        "auth/token/create",
        &json!({"policies": ["default"]}),
        Some("60"),
    );
    assert_eq!(
        keys(&created[0].1["wrap_info"]),
        keys(&created[1].1["wrap_info"]),
        "{created:?}"
    );
    for (status, body) in &created {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["wrap_info"]["creation_path"], "auth/token/create");
        assert!(!body["wrap_info"]["wrapped_accessor"]
            .as_str()
            .unwrap()
            .is_empty());
    }
    let rewrapped = [
        bao.request_with(
            "POST",
            "sys/wrapping/rewrap",
            &json!({"token": created[0].1["wrap_info"]["token"]}),
            &[("X-Vault-Token", "root")],
        ),
        broker.request(
            "POST",
            "sys/wrapping/rewrap",
            Some(&json!({"token": created[1].1["wrap_info"]["token"]})),
        ),
    ];
    assert_eq!(rewrapped[0].0, rewrapped[1].0, "{rewrapped:?}");
    assert_eq!(
        keys(&rewrapped[0].1["wrap_info"]),
        keys(&rewrapped[1].1["wrap_info"]),
        "{rewrapped:?}"
    );
    for (_, body) in &rewrapped {
        assert_eq!(
            body["wrap_info"]["creation_path"], "auth/token/create",
            "{body}"
        );
    }
}
