//! The `sys/` paths clients read to learn about a server (issue 20): mount tuning, mount
//! listings, the older `sys/policy` shapes, the UI's listing of mounts, `sys/init` and
//! `sys/capabilities-accessor`, through the real `bao` CLI, in the root namespace and in a
//! tenant, with the answers' shapes compared to a real OpenBao's.

use serde_json::{json, Value};

use crate::support::{ns, openbao::OpenBao, Broker};

/// The shape of a JSON value: objects by their keys (each with its shape), lists by the
/// shape of their first item, scalars by type.
fn shape(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), shape(v))).collect())
        }
        Value::Array(items) => json!([items.first().map(shape)]),
        Value::String(_) => json!("string"),
        Value::Number(_) => json!("number"),
        Value::Bool(_) => json!("bool"),
        Value::Null => json!("null"),
    }
}

/// The answer without what differs between any two answers (the request id).
fn shape_of_answer(value: &Value) -> Value {
    let mut shape = shape(value);
    if let Some(map) = shape.as_object_mut() {
        map.remove("request_id");
    }
    shape
}

fn write_file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn tuning_and_mount_listings_answer_as_openbao_does() {
    let broker = Broker::dev();
    let bao = OpenBao::with_transit();
    let tune = [
        "secrets",
        "tune",
        "-description=tuned",
        "-default-lease-ttl=1h",
        "-max-lease-ttl=2h",
        "-listing-visibility=unauth",
        "-passthrough-request-headers=X-A",
        "-allowed-response-headers=X-B",
        "-options=x=y",
        "transit/",
    ];
    broker.bao_ok(&tune);
    bao.bao_ok(&tune);
    for server in [
        broker.bao_ok(&["auth", "enable", "approle"]),
        bao.bao_ok(&["auth", "enable", "approle"]),
    ] {
        assert!(server.contains("approle"), "{server}");
    }
    broker.bao_ok(&["auth", "tune", "-description=apps", "approle/"]);
    bao.bao_ok(&["auth", "tune", "-description=apps", "approle/"]);

    // `bao read` of a tune: the values as set, in OpenBao's shape.
    let ours = broker.request("GET", "sys/mounts/transit/tune", None);
    let theirs = bao.request("GET", "sys/mounts/transit/tune", Value::Null);
    assert_eq!(ours.0, 200, "{}", ours.1);
    assert_eq!(shape_of_answer(&ours.1), shape_of_answer(&theirs.1));
    assert_eq!(ours.1["data"], theirs.1["data"]);
    assert_eq!(ours.1["default_lease_ttl"], 3600);
    let out = broker.bao_ok(&["read", "-format=json", "sys/mounts/transit/tune"]);
    let read: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(read["data"]["description"], "tuned");
    assert_eq!(read["data"]["max_lease_ttl"], 7200);
    assert_eq!(read["data"]["options"]["x"], "y");

    // The auth method's tune, through either path.
    for path in ["sys/auth/approle/tune", "sys/mounts/auth/approle/tune"] {
        let ours = broker.request("GET", path, None);
        let theirs = bao.request("GET", path, Value::Null);
        assert_eq!(ours.0, theirs.0, "{path}: {}", ours.1);
        assert_eq!(
            shape_of_answer(&ours.1),
            shape_of_answer(&theirs.1),
            "{path}"
        );
        assert_eq!(ours.1["data"]["description"], "apps");
    }

    // Listings: the same fields and types, at the top level and under `data`.
    for (path, entry) in [
        ("sys/mounts", "transit/"),
        ("sys/auth", "approle/"),
        ("sys/auth", "token/"),
    ] {
        let ours = broker.request("GET", path, None).1;
        let theirs = bao.request("GET", path, Value::Null).1;
        let mut want = shape(&theirs["data"][entry]);
        let mut got = shape(&ours["data"][entry]);
        // OpenBao reports its built-in plugins' version (a string, as ours, but empty).
        for shape in [&mut want, &mut got] {
            shape.as_object_mut().unwrap().remove("deprecation_status");
        }
        assert_eq!(got, want, "{path} {entry}");
        assert_eq!(ours[entry], ours["data"][entry], "{path}: legacy copy");
    }
    let ours = broker.request("GET", "sys/mounts", None).1;
    let theirs = bao.request("GET", "sys/mounts", Value::Null).1;
    assert_eq!(ours["transit/"]["config"], theirs["transit/"]["config"]);
    assert_eq!(ours["transit/"]["options"], json!({"x": "y"}));
    let one = broker.request("GET", "sys/mounts/transit", None).1;
    let theirs_one = bao.request("GET", "sys/mounts/transit", Value::Null).1;
    assert_eq!(
        shape_of_answer(&one)["data"],
        shape_of_answer(&theirs_one)["data"]
    );
    assert_eq!(one["description"], "tuned");

    let out = broker.bao_ok(&["secrets", "list", "-detailed"]);
    assert!(out.contains("tuned") && out.contains("transit"), "{out}");
    let out = broker.bao_ok(&["auth", "list", "-detailed"]);
    assert!(out.contains("apps") && out.contains("approle"), "{out}");

    // An enable that tunes at once.
    broker.bao_ok(&[
        "secrets",
        "enable",
        "-path=t2",
        "-description=two",
        "-default-lease-ttl=30m",
        "transit",
    ]);
    let t2 = broker.request("GET", "sys/mounts/t2/tune", None).1;
    assert_eq!(
        (t2["description"].clone(), t2["default_lease_ttl"].clone()),
        (json!("two"), json!(1800))
    );

    // Refusals, as OpenBao words them where it refuses too.
    for (body, openbao_refuses) in [
        (json!({"listing_visibility": "bogus"}), true),
        (json!({"default_lease_ttl": "3h"}), true),
        // Ours only: settings the broker would not honour.
        (json!({"audit_non_hmac_request_keys": ["plaintext"]}), false),
        (json!({"plugin_version": "v9.9.9"}), false),
    ] {
        let ours = broker.request("POST", "sys/mounts/transit/tune", Some(&body));
        assert_eq!(ours.0, 400, "{body}: {}", ours.1);
        if openbao_refuses {
            let theirs = bao.request("POST", "sys/mounts/transit/tune", body.clone());
            assert_eq!(theirs.0, 400, "{body}");
            assert_eq!(ours.1, theirs.1, "{body}");
        }
    }
    // An auth mount's TTLs would cap the tokens it issues, which the broker takes from
    // the role: refused, where OpenBao applies them.
    let out = broker.bao(&["auth", "tune", "-max-lease-ttl=1h", "approle/"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("token_max_ttl"));
    // Nothing was changed by the refusals.
    let after = broker.request("GET", "sys/mounts/transit/tune", None).1;
    assert_eq!(after["data"], theirs_data_after(&bao));
    // The built-in token method: read as OpenBao reports an untuned one, never written
    // (its TTLs are the server's).
    let ours = broker.request("GET", "sys/auth/token/tune", None);
    let theirs = bao.request("GET", "sys/auth/token/tune", Value::Null);
    assert_eq!(ours.0, 200, "{}", ours.1);
    assert_eq!(shape_of_answer(&ours.1), shape_of_answer(&theirs.1));
    let out = broker.bao(&["auth", "tune", "-description=x", "token/"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("token_max_ttl"));
    // The engine's own configuration, written from a copy of the mount, keeps the tuning
    // (and the tuning keeps it).
    broker.bao_ok(&["write", "transit/config/keys", "disable_upsert=true"]);
    let after = broker.request("GET", "sys/mounts/transit/tune", None).1;
    assert_eq!(after["description"], "tuned");
    broker.bao_ok(&["secrets", "tune", "-description=retuned", "transit/"]);
    let config = broker.request("GET", "transit/config/keys", None).1;
    assert_eq!(config["data"]["disable_upsert"], true, "{config}");
    // A tune of nothing mounted.
    let (status, _) = broker.request("GET", "sys/mounts/nothing/tune", None);
    assert_eq!(status, 400);
}

fn theirs_data_after(bao: &OpenBao) -> Value {
    bao.request("GET", "sys/mounts/transit/tune", Value::Null).1["data"].clone()
}

#[test]
fn a_tenant_tunes_and_lists_only_its_own_mounts() {
    let broker = Broker::dev();
    for tenant in ["acme", "globex"] {
        broker.bao_ok(&["namespace", "create", tenant]);
        broker.bao_ok(&["secrets", "enable", &ns(tenant), "transit"]);
        broker.bao_ok(&["auth", "enable", &ns(tenant), "approle"]);
    }
    broker.bao_ok(&["secrets", "enable", "-path=operator-only", "transit"]);
    broker.bao_ok(&[
        "secrets",
        "tune",
        &ns("acme"),
        "-description=acme keys",
        "transit/",
    ]);
    broker.bao_ok(&[
        "auth",
        "tune",
        &ns("acme"),
        "-description=acme apps",
        "approle/",
    ]);
    let out = broker.bao_ok(&[
        "read",
        &ns("acme"),
        "-format=json",
        "sys/mounts/transit/tune",
    ]);
    assert!(out.contains("acme keys"), "{out}");
    let out = broker.bao_ok(&["secrets", "list", &ns("acme"), "-detailed"]);
    assert!(
        out.contains("acme keys") && !out.contains("operator-only"),
        "{out}"
    );
    let out = broker.bao_ok(&["auth", "list", &ns("acme"), "-detailed"]);
    assert!(out.contains("acme apps"), "{out}");
    // The other tenant's mount is untouched, and the root namespace's too.
    let out = broker.bao_ok(&[
        "read",
        &ns("globex"),
        "-format=json",
        "sys/mounts/transit/tune",
    ]);
    assert!(!out.contains("acme keys"), "{out}");
    let (_, root) = broker.request("GET", "sys/mounts/transit/tune", None);
    assert_ne!(root["description"], "acme keys");

    // A tenant's admin tunes its own mounts; another tenant's admin reaches none of them.
    let dir = tempfile::tempdir().unwrap();
    let everything = write_file(
        &dir,
        "admin.hcl",
        "path \"*\" { capabilities = [\"create\", \"read\", \"update\", \"delete\", \"list\", \"sudo\"] }\n",
    );
    let mut admins = Vec::new();
    for tenant in ["acme", "globex"] {
        broker.bao_ok(&["policy", "write", &ns(tenant), "admin", &everything]);
        let token = broker.bao_ok(&[
            "token",
            "create",
            &ns(tenant),
            "-policy=admin",
            "-field=token",
        ]);
        admins.push(token.trim().to_owned());
    }
    let as_admin = |token: &str, tenant: &str, method: &str, path: &str, body: Option<&Value>| {
        broker.request_with(
            method,
            path,
            body,
            &[("X-Vault-Token", token), ("X-Vault-Namespace", tenant)],
        )
    };
    let body = json!({"description": "by acme's admin"});
    let (status, answer) = as_admin(
        &admins[0],
        "acme",
        "POST",
        "sys/mounts/transit/tune",
        Some(&body),
    );
    assert_eq!(status, 204, "{answer}");
    let (status, _) = as_admin(
        &admins[1],
        "acme",
        "POST",
        "sys/mounts/transit/tune",
        Some(&body),
    );
    assert_eq!(status, 403);
    let (status, _) = as_admin(&admins[1], "acme", "GET", "sys/mounts", None);
    assert_eq!(status, 403);
    // Anonymous callers see, in each namespace, only that namespace's mounts tuned to be
    // seen so (by header or by path prefix).
    broker.bao_ok(&[
        "secrets",
        "tune",
        "-listing-visibility=unauth",
        "operator-only/",
    ]);
    broker.bao_ok(&[
        "secrets",
        "tune",
        &ns("acme"),
        "-listing-visibility=unauth",
        "transit/",
    ]);
    let (status, in_acme) = broker.request_with(
        "GET",
        "sys/internal/ui/mounts",
        None,
        &[("X-Vault-Namespace", "acme")],
    );
    assert_eq!(status, 200, "{in_acme}");
    let (_, by_prefix) = broker.request_with("GET", "acme/sys/internal/ui/mounts", None, &[]);
    assert_eq!(in_acme["data"], by_prefix["data"]);
    let names = |listing: &Value| {
        listing["data"]["secret"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&in_acme), ["transit/"]);
    assert_eq!(in_acme["data"]["auth"], json!({}));
    let (_, in_root) = broker.request_with("GET", "sys/internal/ui/mounts", None, &[]);
    assert_eq!(names(&in_root), ["operator-only/"]);
    let (status, _) = broker.request_with(
        "GET",
        "sys/internal/ui/mounts/operator-only",
        None,
        &[("X-Vault-Namespace", "globex")],
    );
    assert_eq!(status, 403);

    // Tuning an auth method takes what enabling one takes: `sudo`, by either path.
    let tuner = write_file(
        &dir,
        "tuner.hcl",
        "path \"sys/mounts/*\" { capabilities = [\"read\", \"update\"] }\n\
         path \"sys/auth/*\" { capabilities = [\"read\", \"update\"] }\n",
    );
    broker.bao_ok(&["policy", "write", &ns("acme"), "tuner", &tuner]);
    let token = broker.bao_ok(&[
        "token",
        "create",
        &ns("acme"),
        "-policy=tuner",
        "-field=token",
    ]);
    let token = token.trim();
    let (status, answer) = as_admin(
        token,
        "acme",
        "POST",
        "sys/mounts/transit/tune",
        Some(&body),
    );
    assert_eq!(status, 204, "{answer}");
    for path in ["sys/mounts/auth/approle/tune", "sys/auth/approle/tune"] {
        let (status, _) = as_admin(token, "acme", "POST", path, Some(&body));
        assert_eq!(status, 403, "{path}");
        let (status, answer) = as_admin(&admins[0], "acme", "POST", path, Some(&body));
        assert_eq!(status, 204, "{path}: {answer}");
    }
    // The tenant's listing of mounts shows its own, never the operator's.
    let (status, listing) = as_admin(&admins[0], "acme", "GET", "sys/internal/ui/mounts", None);
    assert_eq!(status, 200, "{listing}");
    assert_eq!(
        listing["data"]["secret"]["transit/"]["description"],
        "by acme's admin"
    );
    assert!(
        listing["data"]["secret"].get("operator-only/").is_none(),
        "{listing}"
    );
    assert!(
        listing["data"]["auth"].get("approle/").is_some(),
        "{listing}"
    );
}

#[test]
fn the_ui_mount_listing_shows_what_the_caller_reaches() {
    let broker = Broker::dev();
    let bao = OpenBao::with_transit();
    broker.bao_ok(&["secrets", "enable", "-path=hidden-keys", "transit"]);
    // Anonymous callers see only what is tuned to be seen so, with fewer fields.
    let (status, anonymous) = broker.request_with("GET", "sys/internal/ui/mounts", None, &[]);
    assert_eq!(status, 200, "{anonymous}");
    assert_eq!(anonymous["data"], json!({"secret": {}, "auth": {}}));
    broker.bao_ok(&["secrets", "tune", "-listing-visibility=unauth", "transit/"]);
    bao.bao_ok(&["secrets", "tune", "-listing-visibility=unauth", "transit/"]);
    let (_, anonymous) = broker.request_with("GET", "sys/internal/ui/mounts", None, &[]);
    let theirs = bao_anonymous(&bao, "sys/internal/ui/mounts");
    // The same fields (the values differ: our dev mount has a description, and OpenBao
    // reports an engine enabled through the API with empty options, `{}`).
    let fields = |entry: &Value| {
        entry
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        fields(&anonymous["data"]["secret"]["transit/"]),
        fields(&theirs["data"]["secret"]["transit/"])
    );
    assert_eq!(
        anonymous["data"]["secret"].as_object().unwrap().len(),
        1,
        "{anonymous}"
    );

    // A token sees the mounts its policies reach, in full.
    let dir = tempfile::tempdir().unwrap();
    let policy = write_file(
        &dir,
        "enc.hcl",
        "path \"transit/encrypt/*\" { capabilities = [\"update\"] }\n",
    );
    broker.bao_ok(&["policy", "write", "enc", &policy]);
    let token = broker.bao_ok(&["token", "create", "-policy=enc", "-field=token"]);
    let token = token.trim();
    let (status, seen) = broker.request_with(
        "GET",
        "sys/internal/ui/mounts",
        None,
        &[("X-Vault-Token", token)],
    );
    assert_eq!(status, 200, "{seen}");
    let secret = seen["data"]["secret"].as_object().unwrap();
    assert!(
        secret.contains_key("transit/") && !secret.contains_key("hidden-keys/"),
        "{seen}"
    );
    // One path: the mount serving it, with its path, in OpenBao's shape.
    let (status, one) = broker.request_with(
        "GET",
        "sys/internal/ui/mounts/transit/keys/k",
        None,
        &[("X-Vault-Token", token)],
    );
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["data"]["path"], "transit/");
    assert_eq!(one["data"]["type"], "transit");
    let theirs = bao
        .request("GET", "sys/internal/ui/mounts/transit", Value::Null)
        .1;
    let (mut want, mut got) = (shape(&theirs["data"]), shape(&one["data"]));
    // `options`: null for an engine enabled without them (as `bao secrets enable` sends),
    // `{}` for OpenBao's, enabled through the API without the field.
    for shape in [&mut want, &mut got] {
        shape.as_object_mut().unwrap().remove("deprecation_status");
        shape.as_object_mut().unwrap().remove("options");
    }
    assert_eq!(got, want);
    // A mount it does not reach, and none at all, look the same: Vault's 403.
    for path in [
        "sys/internal/ui/mounts/hidden-keys",
        "sys/internal/ui/mounts/nothing",
    ] {
        let (status, answer) = broker.request_with("GET", path, None, &[("X-Vault-Token", token)]);
        assert_eq!(status, 403, "{path}: {answer}");
        assert!(answer["errors"][0]
            .as_str()
            .unwrap()
            .starts_with("preflight capability check returned 403"));
    }
    let theirs = bao.request("GET", "sys/internal/ui/mounts/nothing", Value::Null);
    assert_eq!(theirs.0, 403);
    // A forged token is refused, not treated as anonymous.
    let (status, _) = broker.request_with(
        "GET",
        "sys/internal/ui/mounts",
        None,
        &[("X-Vault-Token", "kbs.forged")],
    );
    assert_eq!(status, 403);
    // `bao kv` and `bao transit import` ask it for the engine of a path.
    let out = broker.bao_ok(&["read", "-format=json", "sys/internal/ui/mounts/transit"]);
    assert!(out.contains("\"transit\""), "{out}");
}

fn bao_anonymous(bao: &OpenBao, path: &str) -> Value {
    let out = crate::support::curl(&["-s", &format!("{}/v1/{path}", bao.addr)]);
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn legacy_policy_shapes_and_init_answer_as_openbao_does() {
    let broker = Broker::dev();
    let bao = OpenBao::start();
    let rules = "path \"transit/encrypt/app\" { capabilities = [\"update\"] }\n";
    let body = json!({ "rules": rules });
    let ours = broker.request("POST", "sys/policy/legacy", Some(&body));
    let theirs = bao.request("POST", "sys/policy/legacy", body.clone());
    assert_eq!(ours.0, theirs.0, "{}", ours.1);
    assert_eq!(ours.1["warnings"], theirs.1["warnings"]);
    let out = broker.bao_ok(&["policy", "read", "legacy"]);
    assert!(out.contains("transit/encrypt/app"), "{out}");
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(&dir, "p.hcl", rules);
    broker.bao_ok(&["policy", "write", "modern", &file]);

    let ours = broker.request("GET", "sys/policy/legacy", None).1;
    let theirs = bao.request("GET", "sys/policy/legacy", Value::Null).1;
    for place in [&ours, &ours["data"]] {
        assert_eq!(place["name"], "legacy");
        assert_eq!(place["rules"], rules);
    }
    for field in ["name", "rules"] {
        assert_eq!(shape(&ours[field]), shape(&theirs[field]));
        assert_eq!(shape(&ours["data"][field]), shape(&theirs["data"][field]));
    }
    let ours = broker.request("GET", "sys/policy", None).1;
    let theirs = bao.request("GET", "sys/policy", Value::Null).1;
    assert_eq!(shape_of_answer(&ours), shape_of_answer(&theirs));
    assert!(ours["policies"]
        .as_array()
        .unwrap()
        .contains(&json!("legacy")));
    let (status, listed) = broker.request("LIST", "sys/policy", None);
    assert_eq!(status, 200);
    assert_eq!(listed["keys"], ours["keys"]);

    // In a tenant, through the same paths.
    broker.bao_ok(&["namespace", "create", "acme"]);
    let (status, _) = broker.request_with(
        "POST",
        "sys/policy/legacy",
        Some(&body),
        &[
            ("X-Vault-Token", &broker.token),
            ("X-Vault-Namespace", "acme"),
        ],
    );
    assert_eq!(status, 200);
    let out = broker.bao_ok(&["policy", "read", &ns("acme"), "legacy"]);
    assert!(out.contains("transit/encrypt/app"), "{out}");

    // `sys/init`: anonymous, as in OpenBao.
    let (status, init) = broker.request_with("GET", "sys/init", None, &[]);
    let theirs = bao_anonymous(&bao, "sys/init");
    assert_eq!((status, &init), (200, &theirs));
}

#[test]
fn capabilities_by_accessor_answer_only_for_the_namespace_own_tokens() {
    let broker = Broker::dev();
    let bao = OpenBao::start();
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(
        &dir,
        "p.hcl",
        "path \"transit/encrypt/app\" { capabilities = [\"update\"] }\n",
    );
    broker.bao_ok(&["policy", "write", "enc", &file]);
    bao.bao_ok(&["policy", "write", "enc", &file]);
    let create = json!({"policies": ["enc"]});
    let ours_created = broker.request("POST", "auth/token/create", Some(&create)).1;
    let theirs_created = bao.request("POST", "auth/token/create", create.clone()).1;
    let asking = |created: &Value| json!({"accessor": created["auth"]["accessor"], "paths": ["transit/encrypt/app", "transit/decrypt/app"]});
    let unknown = json!({"accessor": "unknown", "path": "x"});
    let answers = [
        broker.request(
            "POST",
            "sys/capabilities-accessor",
            Some(&asking(&ours_created)),
        ),
        broker.request("POST", "sys/capabilities-accessor", Some(&unknown)),
        bao.request("POST", "sys/capabilities-accessor", asking(&theirs_created)),
        bao.request("POST", "sys/capabilities-accessor", unknown.clone()),
    ];
    let (ours, theirs) = (&answers[0], &answers[2]);
    assert_eq!(ours.0, 200, "{}", ours.1);
    assert_eq!(ours.1["data"], theirs.1["data"]);
    assert_eq!(ours.1["data"]["transit/encrypt/app"], json!(["update"]));
    assert_eq!(
        answers[1].0, answers[3].0,
        "{} {}",
        answers[1].1, answers[3].1
    );

    // Another tenant's accessor is as unknown as a made-up one.
    broker.bao_ok(&["namespace", "create", "acme"]);
    let out = broker.bao_ok(&[
        "token",
        "create",
        &ns("acme"),
        "-policy=default",
        "-field=token_accessor",
    ]);
    let acme_accessor = out.trim();
    let body = json!({"accessor": acme_accessor, "path": "sys/mounts"});
    let root = broker.request("POST", "sys/capabilities-accessor", Some(&body));
    let unknown = broker.request(
        "POST",
        "sys/capabilities-accessor",
        Some(&json!({"accessor": "unknown", "path": "sys/mounts"})),
    );
    assert_eq!(root, unknown);
    assert_eq!(root.0, 400);
    // In its own namespace it is answered for.
    let (status, own) = broker.request_with(
        "POST",
        "sys/capabilities-accessor",
        Some(&body),
        &[
            ("X-Vault-Token", &broker.token),
            ("X-Vault-Namespace", "acme"),
        ],
    );
    assert_eq!(status, 200, "{own}");
    assert_eq!(own["data"]["sys/mounts"], json!(["deny"]));
}

#[test]
fn lists_take_openbao_after_and_limit() {
    let broker = Broker::dev();
    let bao = OpenBao::with_transit();
    for name in ["k-c", "k-a", "k-b"] {
        broker.bao_ok(&["write", "-f", &format!("transit/keys/{name}")]);
        bao.bao_ok(&["write", "-f", &format!("transit/keys/{name}")]);
    }
    broker.bao_ok(&["auth", "enable", "approle"]);
    bao.bao_ok(&["auth", "enable", "approle"]);
    for name in ["r-b", "r-a"] {
        broker.bao_ok(&[
            "write",
            &format!("auth/approle/role/{name}"),
            "token_ttl=1h",
        ]);
        bao.bao_ok(&[
            "write",
            &format!("auth/approle/role/{name}"),
            "token_ttl=1h",
        ]);
    }
    broker.bao_ok(&["auth", "enable", "jwt"]);
    bao.bao_ok(&["auth", "enable", "jwt"]);
    for name in ["j-b", "j-a"] {
        let role = [
            "write",
            &format!("auth/jwt/role/{name}"),
            "role_type=jwt",
            "user_claim=sub",
            "bound_audiences=x",
        ];
        broker.bao_ok(&role);
        bao.bao_ok(&role);
    }
    for (path, query) in [
        ("auth/jwt/role", "after=j-a"),
        ("auth/jwt/role", "limit=x"),
        ("transit/keys", "after=k-a&limit=1"),
        ("transit/keys", "after=k-a"),
        ("transit/keys", "limit=2"),
        ("transit/keys", "limit=-1"),
        ("transit/keys", "after=k-c"),
        ("transit/keys", "limit=x"),
        ("auth/approle/role", "after=r-a"),
        ("auth/approle/role", "limit=1"),
        ("auth/approle/role", "limit=one"),
    ] {
        let url = format!("{path}?{query}");
        let ours = broker.request("LIST", &url, None);
        let theirs = bao.request("LIST", &url, Value::Null);
        assert_eq!(ours.0, theirs.0, "{url}: {} / {}", ours.1, theirs.1);
        if ours.0 == 200 {
            assert_eq!(ours.1["data"], theirs.1["data"], "{url}");
        }
    }
}
