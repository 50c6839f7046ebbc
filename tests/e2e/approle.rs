//! The AppRole auth method through the real binary, the `bao` CLI and curl: the login flow
//! in a namespace, single-use secret_ids under concurrency, one answer for every failed
//! login, lockout per (role_id, client address), CIDR bindings with trusted proxies, tidy,
//! and an audit log that names the login but never holds its credentials.

use std::{
    sync::{Arc, Barrier},
    time::{Duration, Instant},
};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use serde_json::{json, Value};

use crate::support::{eventually, ns, private_dir, tenant_with_auth, Broker, Options};

/// The body of every failed login (Vault's message).
const FAILED: &str = r#"{"errors":["invalid role or secret ID"]}"#;

/// A broker from a config file: `listener` lines go in `[listener]`, `tables` after it.
fn configured(listener: &str, tables: &str, state: Option<&std::path::Path>) -> Broker {
    let config = format!(
        "state_dir = \"{{state}}\"\n[listener]\naddress = \"127.0.0.1:{{port}}\"\n{listener}\n{tables}\n"
    );
    Broker::start(Options {
        config: Some(config),
        state_dir: state.map(std::path::Path::to_owned),
        ..Options::default()
    })
}

/// A namespace with transit (keys `app-orders`, `payroll`), the `app-enc` policy and
/// approle enabled.
fn tenant_with_approle(broker: &Broker, namespace: &str) {
    tenant_with_auth(broker, namespace, "approle");
}

fn bao_json(broker: &Broker, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("-format=json");
    serde_json::from_str(&broker.bao_ok(&all)).unwrap()
}

fn role_id(broker: &Broker, namespace: &str, role: &str) -> String {
    let path = format!("auth/approle/role/{role}/role-id");
    bao_json(broker, &["read", &ns(namespace), &path])["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Generates a secret_id with `bao write`; returns (secret_id, accessor).
fn secret_id(broker: &Broker, namespace: &str, role: &str, args: &[&str]) -> (String, String) {
    let path = format!("auth/approle/role/{role}/secret-id");
    let mut all = vec!["write", "-f"];
    let namespace = ns(namespace);
    all.push(&namespace);
    all.push(&path);
    all.extend_from_slice(args);
    let value = bao_json(broker, &all);
    (
        value["data"]["secret_id"].as_str().unwrap().to_owned(),
        value["data"]["secret_id_accessor"]
            .as_str()
            .unwrap()
            .to_owned(),
    )
}

/// A login with curl and no token; returns (status, raw body).
fn login(
    broker: &Broker,
    prefix: &str,
    role_id: &str,
    secret_id: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let body = json!({ "role_id": role_id, "secret_id": secret_id }).to_string();
    broker.raw(
        "POST",
        &format!("{prefix}auth/approle/login"),
        Some(&body),
        headers,
    )
}

/// Sleeps until a lifetime of `lifetime` that began before `began` (the answer to the
/// request that started it) has run out: the broker counts whole seconds, so it ends at
/// most `lifetime` after. This waits for wall-clock time to pass, not for the broker: what
/// follows does not race it (later is only more surely past).
fn wait_out(began: Instant, lifetime: Duration) {
    // A margin for the broker's wall clock against this monotonic one.
    let until = began + lifetime + Duration::from_millis(100);
    if let Some(left) = until.checked_duration_since(Instant::now()) {
        std::thread::sleep(left);
    }
}

fn token_of(body: &str) -> String {
    let value: Value = serde_json::from_str(body).unwrap();
    value["auth"]["client_token"].as_str().unwrap().to_owned()
}

fn encrypt(broker: &Broker, token: &str, path: &str) -> u16 {
    let body = json!({ "plaintext": STANDARD.encode("hello") });
    broker
        .request_with("POST", path, Some(&body), &[("X-Vault-Token", token)])
        .0
}

#[test]
fn bao_approle_login_gives_a_token_confined_to_its_tenant_and_policy() {
    let broker = Broker::dev();
    tenant_with_approle(&broker, "acme");
    tenant_with_approle(&broker, "globex");
    broker.bao_ok(&[
        "write",
        "-namespace=acme",
        "auth/approle/role/billing",
        "token_policies=app-enc",
        "secret_id_ttl=10m",
        "secret_id_num_uses=1",
        "token_ttl=1h",
    ]);
    let out = broker.bao_ok(&["auth", "list", "-namespace=acme"]);
    assert!(out.contains("approle/") && out.contains("token/"), "{out}");
    let out = broker.bao_ok(&["auth", "list"]);
    assert!(
        !out.contains("approle/"),
        "auth mounts are per tenant: {out}"
    );
    let role = bao_json(
        &broker,
        &["read", "-namespace=acme", "auth/approle/role/billing"],
    );
    assert_eq!(role["data"]["token_policies"], json!(["app-enc"]));
    assert_eq!(role["data"]["secret_id_num_uses"], 1);
    assert_eq!(role["data"]["secret_id_ttl"], 600);
    assert_eq!(role["data"]["token_ttl"], 3600);
    assert_eq!(role["data"]["bind_secret_id"], true);

    let role_id = role_id(&broker, "acme", "billing");
    let (secret, _) = secret_id(
        &broker,
        "acme",
        "billing",
        &["metadata={\"team\":\"payments\"}"],
    );
    let role_id_arg = format!("role_id={role_id}");
    let secret_arg = format!("secret_id={secret}");
    let out = bao_json(
        &broker,
        &[
            "write",
            "-namespace=acme",
            "auth/approle/login",
            &role_id_arg,
            &secret_arg,
        ],
    );
    let auth = &out["auth"];
    let token = auth["client_token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("kbs."), "{out}");
    assert_eq!(auth["policies"], json!(["app-enc", "default"]));
    assert_eq!(auth["lease_duration"], 3600);
    assert_eq!(auth["metadata"]["role_name"], "billing");
    assert_eq!(auth["metadata"]["team"], "payments");

    // Exactly what app-enc allows, in acme only.
    assert_eq!(
        encrypt(&broker, &token, "acme/transit/encrypt/app-orders"),
        200
    );
    let (status, value) = broker.request_with(
        "POST",
        "transit/encrypt/app-orders",
        Some(&json!({ "plaintext": "aGk=" })),
        &[("X-Vault-Token", &token), ("X-Vault-Namespace", "acme")],
    );
    assert_eq!(status, 200, "{value}");
    for path in [
        "acme/transit/encrypt/payroll",
        "globex/transit/encrypt/app-orders",
        "transit/encrypt/app-orders",
    ] {
        assert_eq!(encrypt(&broker, &token, path), 403, "{path}");
    }
    let (status, value) = broker.request_with(
        "GET",
        "acme/auth/token/lookup-self",
        None,
        &[("X-Vault-Token", &token)],
    );
    assert_eq!(status, 200);
    assert_eq!(value["data"]["meta"]["role_name"], "billing");

    // The secret_id had one use.
    let again = broker.bao(&[
        "write",
        "-namespace=acme",
        "auth/approle/login",
        &role_id_arg,
        &secret_arg,
    ]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("invalid role or secret ID"));
    assert_eq!(
        login(&broker, "acme/", &role_id, &secret, &[]),
        (400, FAILED.to_owned())
    );

    // Disabling the auth method removes its roles.
    broker.bao_ok(&["auth", "disable", "-namespace=acme", "approle"]);
    broker.bao_ok(&["auth", "enable", "-namespace=acme", "approle"]);
    let (status, _) = broker.request("GET", "acme/auth/approle/role/billing", None);
    assert_eq!(status, 404);
}

/// A token's own view of itself (`auth/token/lookup-self` in `namespace`).
fn lookup_self(broker: &Broker, namespace: &str, token: &str) -> Value {
    let path = format!("{namespace}/auth/token/lookup-self");
    let (status, value) = broker.request_with("GET", &path, None, &[("X-Vault-Token", token)]);
    assert_eq!(status, 200, "{value}");
    value["data"].clone()
}

#[test]
fn periodic_tokens_renew_by_their_period_and_disabling_a_mount_revokes_its_tokens() {
    let broker = Broker::dev();
    tenant_with_approle(&broker, "acme");
    let minter = json!({ "policy": "path \"auth/token/create\" { capabilities = [\"update\"] }" });
    let (status, value) = broker.request("PUT", "acme/sys/policies/acl/minter", Some(&minter));
    assert_eq!(status, 204, "{value}");
    broker.bao_ok(&[
        "write",
        "-namespace=acme",
        "auth/approle/role/worker",
        "token_policies=app-enc,minter",
        "token_period=1h",
        "token_ttl=5m",
    ]);
    let role = bao_json(
        &broker,
        &["read", "-namespace=acme", "auth/approle/role/worker"],
    );
    assert_eq!(role["data"]["token_period"], 3600);

    // A periodic token: its TTL is the period, a renewal gives the period again whatever
    // increment is asked, and no maximum ends it.
    let role_id = role_id(&broker, "acme", "worker");
    let (secret, _) = secret_id(&broker, "acme", "worker", &[]);
    let (status, body) = login(&broker, "acme/", &role_id, &secret, &[]);
    assert_eq!(status, 200, "{body}");
    let login_json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(login_json["auth"]["lease_duration"], 3600, "{body}");
    let token = token_of(&body);
    let me = lookup_self(&broker, "acme", &token);
    assert_eq!(me["period"], 3600, "{me}");
    assert_eq!(me["explicit_max_ttl"], 0, "{me}");
    let (status, renewed) = broker.request_with(
        "POST",
        "acme/auth/token/renew-self",
        Some(&json!({ "increment": "10s" })),
        &[("X-Vault-Token", &token)],
    );
    assert_eq!(status, 200, "{renewed}");
    let lease = renewed["auth"]["lease_duration"].as_i64().unwrap();
    assert!((3590..=3600).contains(&lease), "{renewed}");

    // Only root or sudo tokens make periodic tokens; a child without a period is fine.
    let (status, refused) = broker.request_with(
        "POST",
        "acme/auth/token/create",
        Some(&json!({ "policies": ["app-enc"], "period": "1h" })),
        &[("X-Vault-Token", &token)],
    );
    assert_eq!(status, 400, "{refused}");
    assert_eq!(
        refused["errors"][0],
        "root or sudo privileges required to create periodic token"
    );
    let (status, child) = broker.request_with(
        "POST",
        "acme/auth/token/create",
        Some(&json!({ "policies": ["app-enc"] })),
        &[("X-Vault-Token", &token)],
    );
    assert_eq!(status, 200, "{child}");
    let child = child["auth"]["client_token"].as_str().unwrap().to_owned();
    let out = bao_json(
        &broker,
        &[
            "token",
            "create",
            "-namespace=acme",
            "-period=30m",
            "-policy=app-enc",
        ],
    );
    let rooted = out["auth"]["client_token"].as_str().unwrap().to_owned();
    assert_eq!(lookup_self(&broker, "acme", &rooted)["period"], 1800);

    // A second approle mount, whose tokens outlive the first mount.
    broker.bao_ok(&[
        "auth",
        "enable",
        "-namespace=acme",
        "-path=batch",
        "approle",
    ]);
    broker.bao_ok(&[
        "write",
        "-namespace=acme",
        "auth/batch/role/nightly",
        "token_policies=app-enc",
    ]);
    let path = "auth/batch/role/nightly/role-id";
    let batch_role_id = bao_json(&broker, &["read", "-namespace=acme", path])["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = "auth/batch/role/nightly/secret-id";
    let batch_secret = bao_json(&broker, &["write", "-f", "-namespace=acme", path])["data"]
        ["secret_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = json!({ "role_id": batch_role_id, "secret_id": batch_secret }).to_string();
    let (status, body) = broker.raw("POST", "acme/auth/batch/login", Some(&body), &[]);
    assert_eq!(status, 200, "{body}");
    let other = token_of(&body);

    // Disabling the approle mount revokes what it issued, children included, at once.
    for t in [&token, &child, &other, &rooted] {
        assert_eq!(encrypt(&broker, t, "acme/transit/encrypt/app-orders"), 200);
    }
    broker.bao_ok(&["auth", "disable", "-namespace=acme", "approle"]);
    for t in [&token, &child] {
        assert_eq!(encrypt(&broker, t, "acme/transit/encrypt/app-orders"), 403);
    }
    for t in [&other, &rooted] {
        assert_eq!(encrypt(&broker, t, "acme/transit/encrypt/app-orders"), 200);
    }
}

#[test]
fn a_single_use_secret_id_yields_exactly_one_token_under_64_concurrent_logins() {
    let broker = Arc::new(Broker::dev());
    broker.bao_ok(&["auth", "enable", "approle"]);
    broker.bao_ok(&[
        "write",
        "auth/approle/role/once",
        "secret_id_num_uses=1",
        "token_policies=default",
    ]);
    let role_id = role_id(&broker, "root", "once");
    let (secret, _) = secret_id(&broker, "root", "once", &[]);
    let start = Arc::new(Barrier::new(64));
    let threads: Vec<_> = (0..64)
        .map(|_| {
            let (broker, start) = (broker.clone(), start.clone());
            let (role_id, secret) = (role_id.clone(), secret.clone());
            std::thread::spawn(move || {
                start.wait();
                login(&broker, "", &role_id, &secret, &[])
            })
        })
        .collect();
    let results: Vec<(u16, String)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let successes = results.iter().filter(|(status, _)| *status == 200).count();
    assert_eq!(successes, 1, "{results:?}");
    for (status, body) in results.iter().filter(|(status, _)| *status != 200) {
        assert_eq!((*status, body.as_str()), (400, FAILED));
    }
}

#[test]
fn every_failed_login_gets_the_same_answer() {
    let broker = Broker::dev();
    tenant_with_approle(&broker, "acme");
    tenant_with_approle(&broker, "globex");
    for (namespace, role, params) in [
        ("acme", "billing", vec!["token_policies=app-enc"]),
        (
            "acme",
            "short",
            vec!["token_policies=app-enc", "secret_id_ttl=1s"],
        ),
        (
            "acme",
            "bound",
            vec!["token_policies=app-enc", "secret_id_bound_cidrs=10.0.0.0/8"],
        ),
        ("globex", "billing", vec!["token_policies=app-enc"]),
    ] {
        let (namespace, path) = (ns(namespace), format!("auth/approle/role/{role}"));
        let mut args = vec!["write", namespace.as_str(), path.as_str()];
        args.extend(params.iter().copied());
        broker.bao_ok(&args);
    }
    let billing = role_id(&broker, "acme", "billing");
    let short = role_id(&broker, "acme", "short");
    let bound = role_id(&broker, "acme", "bound");
    let globex_billing = role_id(&broker, "globex", "billing");

    let (expired, _) = secret_id(&broker, "acme", "short", &[]);
    let expired_issued = Instant::now();
    let (destroyed, _) = secret_id(&broker, "acme", "billing", &[]);
    let (destroyed_by_accessor, accessor) = secret_id(&broker, "acme", "billing", &[]);
    let (outside_cidr, _) = secret_id(&broker, "acme", "billing", &["cidr_list=10.0.0.0/8"]);
    let (bound_secret, _) = secret_id(&broker, "acme", "bound", &[]);
    let (acme_live, _) = secret_id(&broker, "acme", "billing", &[]);
    let (globex_secret, _) = secret_id(&broker, "globex", "billing", &[]);

    broker.bao_ok(&[
        "write",
        "-namespace=acme",
        "auth/approle/role/billing/secret-id/destroy",
        &format!("secret_id={destroyed}"),
    ]);
    broker.bao_ok(&[
        "write",
        "-namespace=acme",
        "auth/approle/role/billing/secret-id-accessor/destroy",
        &format!("secret_id_accessor={accessor}"),
    ]);
    let (status, _) = broker.request(
        "POST",
        "acme/auth/approle/role/billing/secret-id-accessor/lookup",
        Some(&json!({ "secret_id_accessor": accessor })),
    );
    assert_eq!(status, 404, "a destroyed secret_id is gone");
    // `expired` (secret_id_ttl 1s) has run out by now.
    wait_out(expired_issued, Duration::from_secs(1));

    let cases: Vec<(&str, (u16, String))> = vec![
        ("expired", login(&broker, "acme/", &short, &expired, &[])),
        (
            "destroyed by value",
            login(&broker, "acme/", &billing, &destroyed, &[]),
        ),
        (
            "destroyed by accessor",
            login(&broker, "acme/", &billing, &destroyed_by_accessor, &[]),
        ),
        (
            "acme secret_id for a globex role",
            login(&broker, "globex/", &globex_billing, &acme_live, &[]),
        ),
        (
            "globex secret_id in acme",
            login(&broker, "acme/", &billing, &globex_secret, &[]),
        ),
        (
            "globex role_id in acme",
            login(&broker, "acme/", &globex_billing, &globex_secret, &[]),
        ),
        (
            "wrong role_id",
            login(&broker, "acme/", "no-such-role-id", &bound_secret, &[]),
        ),
        (
            "role bound to 10.0.0.0/8",
            login(&broker, "acme/", &bound, &bound_secret, &[]),
        ),
        (
            "secret_id bound to 10.0.0.0/8",
            login(&broker, "acme/", &billing, &outside_cidr, &[]),
        ),
        (
            "X-Forwarded-For from an untrusted peer",
            login(
                &broker,
                "acme/",
                &bound,
                &bound_secret,
                &[("X-Forwarded-For", "10.1.2.3")],
            ),
        ),
        (
            "missing secret_id",
            login(&broker, "acme/", &short, "", &[]),
        ),
        (
            "malformed body",
            broker.raw("POST", "acme/auth/approle/login", Some("{not json"), &[]),
        ),
    ];
    for (case, answer) in &cases {
        assert_eq!(
            (answer.0, answer.1.as_str()),
            (400, FAILED),
            "{case} must fail like every other failed login"
        );
    }

    // The same login works when nothing is wrong with it.
    let (status, body) = login(&broker, "globex/", &globex_billing, &globex_secret, &[]);
    assert_eq!(status, 200, "{body}");
    let token = token_of(&body);
    assert!(token.starts_with("kbs."));

    // Deleting the tenant takes its auth mount, roles and secret_ids, and revokes the token.
    broker.bao_ok(&["namespace", "delete", "globex"]);
    let (status, _) = broker.request_with(
        "GET",
        "auth/token/lookup-self",
        None,
        &[("X-Vault-Token", &token)],
    );
    assert_eq!(status, 403);
    broker.bao_ok(&["namespace", "create", "globex"]);
    broker.bao_ok(&["auth", "enable", "-namespace=globex", "approle"]);
    let (status, _) = broker.request("GET", "globex/auth/approle/role/billing", None);
    assert_eq!(status, 404);
}

#[test]
fn secret_ids_are_listed_looked_up_narrowed_and_tidied() {
    let broker = Broker::dev();
    broker.bao_ok(&["auth", "enable", "-path=apps", "approle"]);
    broker.bao_ok(&[
        "write",
        "auth/apps/role/svc",
        "secret_id_num_uses=3",
        "secret_id_ttl=1h",
        "token_policies=default",
    ]);
    // No wider than the role: more uses, unlimited uses, a longer or unlimited TTL.
    for args in [
        json!({ "num_uses": 4 }),
        json!({ "num_uses": 0 }),
        json!({ "ttl": "2h" }),
        json!({ "ttl": 0 }),
    ] {
        let (status, value) = broker.request("POST", "auth/apps/role/svc/secret-id", Some(&args));
        assert_eq!(status, 400, "{args}: {value}");
    }
    let (status, value) = broker.request(
        "POST",
        "auth/apps/role/svc/secret-id",
        Some(&json!({ "num_uses": 2, "ttl": "10m", "metadata": "{\"env\":\"prod\"}" })),
    );
    assert_eq!(status, 200, "{value}");
    assert_eq!(value["data"]["secret_id_num_uses"], 2);
    assert_eq!(value["data"]["secret_id_ttl"], 600);
    let secret = value["data"]["secret_id"].as_str().unwrap().to_owned();
    let accessor = value["data"]["secret_id_accessor"]
        .as_str()
        .unwrap()
        .to_owned();

    let (status, value) = broker.request(
        "POST",
        "auth/apps/role/svc/custom-secret-id",
        Some(&json!({ "secret_id": "my-chosen-secret-id-0123456789" })),
    );
    assert_eq!(status, 200, "{value}");
    let (status, _) = broker.request(
        "POST",
        "auth/apps/role/svc/custom-secret-id",
        Some(&json!({ "secret_id": "my-chosen-secret-id-0123456789" })),
    );
    assert_eq!(status, 400, "a custom secret_id is registered once");

    let out = broker.bao_ok(&["list", "auth/apps/role/svc/secret-id"]);
    assert!(out.contains(&accessor), "{out}");
    assert!(!out.contains(&secret), "{out}");
    let (status, value) = broker.request(
        "POST",
        "auth/apps/role/svc/secret-id/lookup",
        Some(&json!({ "secret_id": secret })),
    );
    assert_eq!(status, 200);
    assert_eq!(value["data"]["secret_id_accessor"], accessor.as_str());
    assert_eq!(value["data"]["metadata"]["env"], "prod");
    let (status, value) = broker.request(
        "POST",
        "auth/apps/role/svc/secret-id-accessor/lookup",
        Some(&json!({ "secret_id_accessor": accessor })),
    );
    assert_eq!(status, 200);
    assert_eq!(value["data"]["secret_id_num_uses"], 2);

    // A custom role_id replaces the old one for logins.
    let (_, value) = broker.request("GET", "auth/apps/role/svc/role-id", None);
    let old_role_id = value["data"]["role_id"].as_str().unwrap().to_owned();
    broker.bao_ok(&["write", "auth/apps/role/svc/role-id", "role_id=svc-role-id"]);
    let (status, _) = broker.raw(
        "POST",
        "auth/apps/login",
        Some(&json!({ "role_id": old_role_id, "secret_id": secret }).to_string()),
        &[],
    );
    assert_eq!(status, 400);
    let (status, body) = broker.raw(
        "POST",
        "auth/apps/login",
        Some(&json!({ "role_id": "svc-role-id", "secret_id": secret }).to_string()),
        &[],
    );
    assert_eq!(status, 200, "{body}");

    // A period that is not a duration is refused clearly.
    let (status, value) = broker.request(
        "POST",
        "auth/apps/role/periodic",
        Some(&json!({ "token_period": "soon" })),
    );
    assert_eq!(status, 400);
    assert!(
        value["errors"][0]
            .as_str()
            .unwrap()
            .contains("token_period"),
        "{value}"
    );

    // Tidy deletes expired secret_ids in the background.
    broker.bao_ok(&["write", "auth/apps/role/short", "secret_id_ttl=1s"]);
    for _ in 0..3 {
        let (status, _) = broker.request("POST", "auth/apps/role/short/secret-id", None);
        assert_eq!(status, 200);
    }
    // All three have run out (listed until tidied).
    wait_out(Instant::now(), Duration::from_secs(1));
    let (status, value) = broker.request("LIST", "auth/apps/role/short/secret-id", None);
    assert_eq!(
        (status, value["data"]["keys"].as_array().unwrap().len()),
        (200, 3)
    );
    let (status, _) = broker.request("POST", "auth/apps/tidy/secret-id", None);
    assert_eq!(status, 202);
    // The tidy runs in the background, in small batches that yield to logins: how soon it
    // is done is the machine's load (it was 5 s), not what this checks.
    assert!(eventually(Duration::from_secs(30), || {
        broker
            .request("LIST", "auth/apps/role/short/secret-id", None)
            .0
            == 404
    }));
    let (status, _) = broker.request("LIST", "auth/apps/role/svc/secret-id", None);
    assert_eq!(status, 200, "live secret_ids are kept");

    broker.bao_ok(&["delete", "auth/apps/role/svc"]);
    let (status, _) = broker.raw(
        "POST",
        "auth/apps/login",
        Some(
            &json!({ "role_id": "svc-role-id", "secret_id": "my-chosen-secret-id-0123456789" })
                .to_string(),
        ),
        &[],
    );
    assert_eq!(status, 400, "a deleted role's secret_ids are gone");
}

#[test]
fn lockout_is_per_client_address_and_clears_and_cidrs_follow_trusted_proxies() {
    // The lockout window: the five failures and the locked-out login below must fall within
    // it (whole seconds: at least 9 s of the 10), six requests in a row, which a loaded
    // machine may take seconds over (it was 3 s, so at least 2 s).
    let window = Duration::from_secs(10);
    let broker = configured(
        "trusted_proxies = [\"127.0.0.1\"]",
        &format!(
            "[timing]\napprole_lockout_threshold = 5\napprole_lockout_duration = \"{}s\"",
            window.as_secs()
        ),
        None,
    );
    broker.bao_ok(&["auth", "enable", "approle"]);
    broker.bao_ok(&["write", "auth/approle/role/svc", "token_policies=default"]);
    let svc = role_id(&broker, "root", "svc");
    let (secret, _) = secret_id(&broker, "root", "svc", &[]);

    let mut fifth = (Instant::now(), Instant::now());
    for _ in 0..5 {
        let sent = Instant::now();
        assert_eq!(
            login(&broker, "", &svc, "wrong-secret-id", &[]),
            (400, FAILED.to_owned())
        );
        fifth = (sent, Instant::now());
    }
    assert_eq!(
        login(&broker, "", &svc, &secret, &[]),
        (400, FAILED.to_owned()),
        "locked out: even the right secret_id fails, with the same answer"
    );
    let (status, body) = login(
        &broker,
        "",
        &svc,
        &secret,
        &[("X-Forwarded-For", "192.0.2.10")],
    );
    assert_eq!(
        status, 200,
        "another client address is not locked out: {body}"
    );
    // Locked for the window from the fifth failure, not longer: the lock clears after it.
    // (A login refused while locked counts no failure, so polling does not extend it.)
    crate::support::runs_out("the lockout", fifth, window, || {
        let (status, body) = login(&broker, "", &svc, &secret, &[]);
        assert!(
            (status, body.as_str()) == (400, FAILED) || status == 200,
            "{status} {body}"
        );
        status == 200
    });

    // CIDR bindings see the client through the trusted proxy.
    broker.bao_ok(&[
        "write",
        "auth/approle/role/bound",
        "secret_id_bound_cidrs=10.0.0.0/8",
        "token_bound_cidrs=10.0.0.0/8",
        "token_policies=default",
    ]);
    let bound = role_id(&broker, "root", "bound");
    let (bound_secret, _) = secret_id(&broker, "root", "bound", &["num_uses=5"]);
    assert_eq!(
        login(&broker, "", &bound, &bound_secret, &[]),
        (400, FAILED.to_owned())
    );
    let inside = [("X-Forwarded-For", "203.0.113.9, 10.1.2.3")];
    let (status, body) = login(&broker, "", &bound, &bound_secret, &inside);
    assert_eq!(status, 200, "{body}");
    let token = token_of(&body);
    let (status, _) = broker.request_with(
        "GET",
        "auth/token/lookup-self",
        None,
        &[("X-Vault-Token", &token)],
    );
    assert_eq!(
        status, 403,
        "a token bound to 10.0.0.0/8 is refused from 127.0.0.1"
    );
    let (status, value) = broker.request_with(
        "GET",
        "auth/token/lookup-self",
        None,
        &[("X-Vault-Token", &token), ("X-Forwarded-For", "10.9.9.9")],
    );
    assert_eq!(status, 200, "{value}");
    let (status, _) = broker.request_with(
        "GET",
        "auth/token/lookup-self",
        None,
        &[
            ("X-Vault-Token", &token),
            ("X-Forwarded-For", "not-an-address"),
        ],
    );
    assert_eq!(status, 400, "a trusted proxy's malformed header is refused");
}

#[test]
fn the_audit_log_names_the_login_but_never_holds_its_credentials() {
    let state = private_dir();
    let log_path = state.path().join("audit.log");
    let mut broker = configured(
        "",
        &format!(
            // fdatasync per record: a loaded disk can pass the default 1 s deadline.
            "[audit]\nfile = \"{}\"\ncheckpoint_every = 1\nwrite_timeout = \"60s\"",
            log_path.display()
        ),
        Some(state.path()),
    );
    tenant_with_approle(&broker, "acme");
    broker.bao_ok(&[
        "write",
        "-namespace=acme",
        "auth/approle/role/billing",
        "token_policies=app-enc",
        "secret_id_num_uses=2",
    ]);
    let role_id = role_id(&broker, "acme", "billing");
    let (secret, accessor) = secret_id(&broker, "acme", "billing", &[]);
    let (status, body) = login(&broker, "acme/", &role_id, &secret, &[]);
    assert_eq!(status, 200, "{body}");
    let token = token_of(&body);
    assert_eq!(
        encrypt(&broker, &token, "acme/transit/encrypt/app-orders"),
        200
    );
    assert_eq!(
        login(&broker, "acme/", &role_id, "wrong-secret-id", &[]).0,
        400
    );
    let (status, value) = broker.request(
        "POST",
        "sys/audit-hash/file",
        Some(&json!({ "input": accessor })),
    );
    assert_eq!(status, 200, "{value}");
    let accessor_hash = value["data"]["hash"].as_str().unwrap().to_owned();
    broker.kill9();

    let text = std::fs::read_to_string(&log_path).unwrap();
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let logins: Vec<&Value> = records
        .iter()
        .filter(|r| r["request"]["path"] == "auth/approle/login")
        .collect();
    assert_eq!(logins.len(), 4, "a request and a response line per login");
    for record in &logins {
        assert!(
            record["auth"]["client_token"].is_null() || record["type"] == "response",
            "a login request carries no client token: {record}"
        );
    }
    let success = logins
        .iter()
        .find(|r| r["type"] == "response" && r["response"]["status"] == 200)
        .unwrap();
    assert_eq!(success["auth"]["role"], "billing");
    assert_eq!(
        success["auth"]["secret_id_accessor"],
        accessor_hash.as_str()
    );
    assert_eq!(success["tenant"], "acme");
    let failure = logins
        .iter()
        .find(|r| r["type"] == "response" && r["response"]["status"] == 400)
        .unwrap();
    assert_eq!(failure["auth"]["role"], "billing", "{failure}");
    assert!(text.contains(&accessor_hash));

    for secret in [&secret, &role_id, &token, &accessor] {
        for form in [
            secret.clone(),
            STANDARD.encode(secret.as_bytes()),
            hex::encode(secret.as_bytes()),
        ] {
            assert!(
                !text.contains(&form),
                "a credential appears in the audit log"
            );
            assert!(
                !broker.log().contains(&form),
                "a credential appears in the broker's log"
            );
        }
    }
}
