//! The JWT auth method through the real binary: a real OpenID provider (npm
//! `oidc-provider` over TLS) for discovery, JWKS and key rotation, the `bao` CLI for the
//! login exchange, bearer mode with `Authorization: Bearer <jwt>`, and forged tokens (signed
//! with the `openssl` CLI) for the attacks — every one refused beside accepted controls.

use std::{path::Path, process::Command, time::Duration};

use base64::{
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
    Engine as _,
};
use serde_json::{json, Value};

use crate::support::{eventually, idp::Idp, private_dir, tenant_with_auth, Broker, Options};

/// The body of every refused login.
const FAILED: &str = r#"{"errors":["invalid role or JWT"]}"#;

/// The audience the broker's roles bind.
const AUDIENCE: &str = "https://broker.example/";

/// A namespace with transit (keys `app-orders`, `payroll`), the `app-enc` policy and a
/// jwt mount.
fn tenant_with_jwt(broker: &Broker, namespace: &str) {
    tenant_with_auth(broker, namespace, "jwt");
}

/// Writes a file and returns `@path` for `bao write`.
fn at_file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    format!("@{}", path.display())
}

/// The role of the tests: RS256 tokens for the broker's audience from team `web`.
fn web_role(team: &str) -> Value {
    json!({
        "role_type": "jwt",
        "bound_audiences": [AUDIENCE],
        "user_claim": "sub",
        "groups_claim": "groups",
        "bound_claims": { "team": team },
        "claim_mappings": { "team": "team" },
        "token_policies": ["app-enc"],
        "token_ttl": "1h",
    })
}

/// A login on a mount (`acme/auth/jwt`); returns (status, raw body).
fn login(broker: &Broker, mount: &str, role: &str, jwt: &str) -> (u16, String) {
    let body = json!({ "role": role, "jwt": jwt }).to_string();
    broker.raw("POST", &format!("{mount}/login"), Some(&body), &[])
}

fn encrypt_with(broker: &Broker, headers: &[(&str, &str)], path: &str) -> u16 {
    let body = json!({ "plaintext": STANDARD.encode("hello") });
    broker.request_with("POST", path, Some(&body), headers).0
}

#[test]
fn bao_jwt_login_through_oidc_discovery_gives_a_token_with_the_roles_policies_and_claims() {
    let idp = Idp::start();
    let broker = Broker::dev();
    let files = private_dir();
    tenant_with_jwt(&broker, "acme");
    tenant_with_jwt(&broker, "globex");
    let ca = at_file(files.path(), "ca.pem", &idp.ca_pem_text());
    broker.bao_ok(&[
        "write",
        "-namespace=acme",
        "auth/jwt/config",
        &format!("oidc_discovery_url={}", idp.issuer),
        &format!("oidc_discovery_ca_pem={ca}"),
        &format!("bound_issuer={}", idp.issuer),
    ]);
    let role = at_file(files.path(), "web-role.json", &web_role("web").to_string());
    broker.bao_ok(&["write", "-namespace=acme", "auth/jwt/role/web", &role]);
    let read = broker.bao_ok(&[
        "read",
        "-format=json",
        "-namespace=acme",
        "auth/jwt/role/web",
    ]);
    let read: Value = serde_json::from_str(&read).unwrap();
    assert_eq!(read["data"]["bound_audiences"], json!([AUDIENCE]), "{read}");

    // A role without any binding cannot be created.
    let out = broker.bao(&[
        "write",
        "-namespace=acme",
        "auth/jwt/role/loose",
        "user_claim=sub",
        "token_policies=app-enc",
    ]);
    assert!(!out.status.success());

    let jwt = idp.token("app-web", "app-web-secret", AUDIENCE);
    let out = broker.bao_ok(&[
        "write",
        "-format=json",
        "-namespace=acme",
        "auth/jwt/login",
        "role=web",
        &format!("jwt={jwt}"),
    ]);
    let out: Value = serde_json::from_str(&out).unwrap();
    let auth = &out["auth"];
    let token = auth["client_token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("kbs."), "{out}");
    assert_eq!(auth["policies"], json!(["app-enc", "default"]), "{out}");
    assert_eq!(auth["metadata"]["role"], "web", "{out}");
    assert_eq!(auth["metadata"]["team"], "web", "{out}");
    assert_eq!(auth["lease_duration"], 3600, "{out}");

    let header = [("X-Vault-Token", token.as_str())];
    assert_eq!(
        encrypt_with(&broker, &header, "acme/transit/encrypt/app-orders"),
        200
    );
    for path in [
        "acme/transit/encrypt/payroll",
        "globex/transit/encrypt/app-orders",
    ] {
        assert_eq!(encrypt_with(&broker, &header, path), 403, "{path}");
    }
    // The same JWT means nothing in a tenant whose mount has no configuration for it.
    assert_eq!(
        login(&broker, "globex/auth/jwt", "web", &jwt),
        (400, FAILED.to_owned())
    );
    // Disabling the mount revokes what it issued.
    broker.bao_ok(&["auth", "disable", "-namespace=acme", "jwt"]);
    assert_eq!(
        encrypt_with(&broker, &header, "acme/transit/encrypt/app-orders"),
        403
    );
}

#[test]
fn bearer_mode_takes_the_jwt_itself_and_broker_tokens_keep_working() {
    let idp = Idp::start();
    let broker = Broker::dev();
    tenant_with_jwt(&broker, "acme");
    let config = json!({
        "jwks_url": idp.jwks_url(),
        "jwks_ca_pem": idp.ca_pem_text(),
        "bound_issuer": idp.issuer,
        "bearer_role": "web",
    });
    let (status, value) = broker.request("POST", "acme/auth/jwt/config", Some(&config));
    assert_eq!(status, 204, "{value}");
    let (status, value) = broker.request("POST", "acme/auth/jwt/role/web", Some(&web_role("web")));
    assert_eq!(status, 204, "{value}");

    let jwt = idp.token("app-web", "app-web-secret", AUDIENCE);
    let bearer = format!("Bearer {jwt}");
    let headers = [("Authorization", bearer.as_str())];
    for _ in 0..3 {
        assert_eq!(
            encrypt_with(&broker, &headers, "acme/transit/encrypt/app-orders"),
            200
        );
    }
    assert_eq!(
        encrypt_with(&broker, &headers, "acme/transit/encrypt/payroll"),
        403
    );
    let (status, me) = broker.request_with("GET", "acme/auth/token/lookup-self", None, &headers);
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["data"]["policies"], json!(["app-enc", "default"]));
    // Not in another tenant, nor at the root.
    assert_eq!(
        encrypt_with(&broker, &headers, "transit/encrypt/app-orders"),
        403
    );
    // A team the role does not bind, and a tampered JWT.
    let batch = idp.token("app-batch", "app-batch-secret", AUDIENCE);
    let other = format!("Bearer {batch}");
    assert_eq!(
        encrypt_with(
            &broker,
            &[("Authorization", &other)],
            "acme/transit/encrypt/app-orders"
        ),
        403
    );
    let mut tampered = jwt.clone();
    tampered.pop();
    tampered.push(if jwt.ends_with('A') { 'B' } else { 'A' });
    let tampered = format!("Bearer {tampered}");
    assert_eq!(
        encrypt_with(
            &broker,
            &[("Authorization", &tampered)],
            "acme/transit/encrypt/app-orders"
        ),
        403
    );
    // A broker token in `Authorization: Bearer` is still a broker token (Vault's habit).
    let root = format!("Bearer {}", broker.token);
    assert_eq!(
        encrypt_with(
            &broker,
            &[("Authorization", &root)],
            "acme/transit/encrypt/app-orders"
        ),
        200
    );
    // One bearer mount per (tenant, issuer).
    broker.bao_ok(&["auth", "enable", "-namespace=acme", "-path=jwt2", "jwt"]);
    let (status, value) = broker.request("POST", "acme/auth/jwt2/config", Some(&config));
    assert_eq!(status, 400, "{value}");
    // The same issuer and JWT serve another tenant through its own bearer mount, each
    // tenant with its own answer.
    tenant_with_jwt(&broker, "globex");
    assert_eq!(
        broker
            .request("POST", "globex/auth/jwt/config", Some(&config))
            .0,
        204
    );
    assert_eq!(
        encrypt_with(&broker, &headers, "globex/transit/encrypt/app-orders"),
        403,
        "no role web in globex yet"
    );
    let (status, value) =
        broker.request("POST", "globex/auth/jwt/role/web", Some(&web_role("web")));
    assert_eq!(status, 204, "{value}");
    for tenant in ["globex", "acme"] {
        let path = format!("{tenant}/transit/encrypt/app-orders");
        assert_eq!(encrypt_with(&broker, &headers, &path), 200, "{path}");
    }
}

#[test]
fn jwks_rotation_at_the_identity_provider_is_followed_and_retired_keys_stop_validating() {
    let idp = Idp::start();
    let broker = Broker::dev();
    tenant_with_jwt(&broker, "acme");
    let config = json!({
        "oidc_discovery_url": idp.issuer,
        "oidc_discovery_ca_pem": idp.ca_pem_text(),
        "jwks_refetch_interval": 1,
    });
    let (status, value) = broker.request("POST", "acme/auth/jwt/config", Some(&config));
    assert_eq!(status, 204, "{value}");
    broker.request("POST", "acme/auth/jwt/role/web", Some(&web_role("web")));

    let first = idp.token("app-web", "app-web-secret", AUDIENCE);
    assert_eq!(login(&broker, "acme/auth/jwt", "web", &first).0, 200);
    // A new signing key: the unknown kid makes the broker refetch the key set once.
    idp.rotate();
    let second = idp.token("app-web", "app-web-secret", AUDIENCE);
    assert_ne!(
        crate::support::idp::decode_unverified(&first).0["kid"],
        crate::support::idp::decode_unverified(&second).0["kid"]
    );
    // Refetches are at most one a second, and each is an HTTPS round trip to the provider (a
    // Node process): how soon one lands is the machine's load (it was 5 s).
    assert!(eventually(Duration::from_secs(30), || {
        login(&broker, "acme/auth/jwt", "web", &second).0 == 200
    }));
    // The first key retired, and another rotation that makes the broker refetch: tokens
    // signed by the retired key stop validating, the current ones go on.
    idp.retire();
    idp.rotate();
    let third = idp.token("app-web", "app-web-secret", AUDIENCE);
    assert!(eventually(Duration::from_secs(30), || {
        login(&broker, "acme/auth/jwt", "web", &third).0 == 200
    }));
    // The refetch that found the third key came before that answer. Once a refetch
    // interval (1 s, whole seconds) has passed since, the first key's unknown kid makes the
    // broker refetch again rather than refuse unseen: the retired key must fail that way
    // too. This waits for wall-clock time to pass, not for the broker: the answers after it
    // do not race it (the first key fails either way, the second works either way).
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        login(&broker, "acme/auth/jwt", "web", &first),
        (400, FAILED.to_owned())
    );
    assert_eq!(login(&broker, "acme/auth/jwt", "web", &second).0, 200);
}

/// An RSA key pair made with the `openssl` CLI: (private key file, public key PEM text).
fn rsa_key(dir: &Path) -> (std::path::PathBuf, String) {
    let key = dir.join("forger.pem");
    let status = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key)
        .status()
        .unwrap();
    assert!(status.success());
    let out = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .output()
        .unwrap();
    (key, String::from_utf8(out.stdout).unwrap())
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `header.payload.signature`, the signature from `openssl dgst` with `sign_args`
/// (`["-sign", key]` for RS256, `["-hmac", secret]` for HS256).
fn signed(header: &Value, payload: &str, sign_args: &[&str]) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(payload.as_bytes())
    );
    let dir = private_dir();
    let file = dir.path().join("input");
    std::fs::write(&file, &input).unwrap();
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-binary"])
        .args(sign_args)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("{input}.{}", b64(&out.stdout))
}

fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

#[test]
fn fifteen_forged_or_misdirected_jwts_are_refused_while_controls_are_accepted() {
    const ISSUER: &str = "https://forge.example";
    let idp = Idp::start();
    let broker = Broker::dev();
    let files = private_dir();
    tenant_with_jwt(&broker, "acme");
    tenant_with_jwt(&broker, "globex");
    let (key, public) = rsa_key(files.path());
    let key = key.to_str().unwrap().to_owned();
    // acme/jwt: static keys (the forger's own, so that every other check is reached);
    // acme/idp: the real provider's JWKS; globex/jwt: the provider too, another audience.
    let config = json!({ "jwt_validation_pubkeys": [public], "bound_issuer": ISSUER });
    assert_eq!(
        broker
            .request("POST", "acme/auth/jwt/config", Some(&config))
            .0,
        204
    );
    let (status, value) = broker.request(
        "POST",
        "acme/auth/jwt/role/web",
        Some(&web_role("payments")),
    );
    assert_eq!(status, 204, "{value}");
    broker.bao_ok(&["auth", "enable", "-namespace=acme", "-path=idp", "jwt"]);
    let idp_config = json!({
        "jwks_url": idp.jwks_url(),
        "jwks_ca_pem": idp.ca_pem_text(),
        "bound_issuer": idp.issuer,
        "jwks_refetch_interval": 1,
    });
    assert_eq!(
        broker
            .request("POST", "acme/auth/idp/config", Some(&idp_config))
            .0,
        204
    );
    assert_eq!(
        broker
            .request("POST", "acme/auth/idp/role/web", Some(&web_role("web")))
            .0,
        204
    );
    let globex_role = json!({
        "bound_audiences": ["https://globex.example/"],
        "user_claim": "sub",
        "token_policies": ["app-enc"],
    });
    assert_eq!(
        broker
            .request("POST", "globex/auth/jwt/config", Some(&idp_config))
            .0,
        204
    );
    assert_eq!(
        broker
            .request("POST", "globex/auth/jwt/role/web", Some(&globex_role))
            .0,
        204
    );

    let rs256 = json!({ "alg": "RS256", "typ": "JWT" });
    let claims = |changes: Value| {
        let mut base = json!({
            "iss": ISSUER, "sub": "app-web", "aud": AUDIENCE, "team": "payments",
            "groups": ["payments"], "iat": now(), "exp": now() + 300,
        });
        for (name, value) in changes.as_object().unwrap() {
            if value.is_null() {
                base.as_object_mut().unwrap().remove(name);
            } else {
                base[name] = value.clone();
            }
        }
        base.to_string()
    };
    let forged = |payload: String| signed(&rs256, &payload, &["-sign", &key]);

    // Controls: accepted as they are.
    let control = forged(claims(json!({})));
    assert_eq!(login(&broker, "acme/auth/jwt", "web", &control).0, 200);
    let real = idp.token("app-web", "app-web-secret", AUDIENCE);
    assert_eq!(login(&broker, "acme/auth/idp", "web", &real).0, 200);

    let idp_claims = |kid_header: Value| {
        let payload = json!({
            "iss": idp.issuer, "sub": "app-web", "aud": AUDIENCE, "team": "web",
            "iat": now(), "exp": now() + 300,
        });
        signed(&kid_header, &payload.to_string(), &["-sign", &key])
    };
    let control_payload = claims(json!({}));
    let attacks: Vec<(&str, &str, String)> = vec![
        (
            "alg none",
            "acme/auth/jwt",
            format!(
                "{}.{}.",
                b64(json!({ "alg": "none", "typ": "JWT" })
                    .to_string()
                    .as_bytes()),
                b64(control_payload.as_bytes())
            ),
        ),
        (
            "HS256 keyed with the RSA public key",
            "acme/auth/jwt",
            signed(
                &json!({ "alg": "HS256", "typ": "JWT" }),
                &control_payload,
                &["-hmac", &public],
            ),
        ),
        (
            "unknown kid",
            "acme/auth/idp",
            idp_claims(json!({ "alg": "RS256", "kid": "unknown-kid" })),
        ),
        (
            "jku pointing elsewhere",
            "acme/auth/idp",
            idp_claims(
                json!({ "alg": "RS256", "kid": "forger", "jku": "https://127.0.0.1:9/jwks" }),
            ),
        ),
        (
            "wrong iss",
            "acme/auth/jwt",
            forged(claims(json!({ "iss": "https://evil.example" }))),
        ),
        (
            "wrong aud",
            "acme/auth/jwt",
            forged(claims(json!({ "aud": "https://other.example/" }))),
        ),
        (
            "missing aud",
            "acme/auth/jwt",
            forged(claims(json!({ "aud": null }))),
        ),
        (
            "exp in the past beyond leeway",
            "acme/auth/jwt",
            forged(claims(json!({ "exp": now() - 3600 }))),
        ),
        (
            "missing exp",
            "acme/auth/jwt",
            forged(claims(json!({ "exp": null }))),
        ),
        (
            "exp as a string",
            "acme/auth/jwt",
            forged(claims(json!({ "exp": (now() + 300).to_string() }))),
        ),
        (
            "nbf in the future",
            "acme/auth/jwt",
            forged(claims(json!({ "nbf": now() + 3600 }))),
        ),
        (
            "payload is a JSON array",
            "acme/auth/jwt",
            forged("[1,2,3]".to_owned()),
        ),
        (
            "a 32 KiB token (over the verifier's 8 KiB, within a login's 64 KiB body)",
            "acme/auth/jwt",
            format!("{}.{}.{}", "e".repeat(1 << 14), "e".repeat(1 << 14), "sig"),
        ),
        (
            "bound claim with the wrong case",
            "acme/auth/jwt",
            forged(claims(json!({ "team": "Payments" }))),
        ),
        (
            "tenant A's valid token presented to tenant B",
            "globex/auth/jwt",
            real.clone(),
        ),
    ];
    for (what, mount, jwt) in &attacks {
        assert_eq!(
            login(&broker, mount, "web", jwt),
            (400, FAILED.to_owned()),
            "{what} was not refused"
        );
    }
    println!("{} forged or misdirected JWTs refused", attacks.len());
    assert_eq!(attacks.len(), 15);
    // A 1 MiB one never reaches the verifier: a login's body is capped at 64 KiB.
    let huge = format!("{}.{}.{}", "e".repeat(1 << 19), "e".repeat(1 << 19), "sig");
    let (status, message) = login(&broker, "acme/auth/jwt", "web", &huge);
    assert_eq!(status, 413, "{message}");
    // The controls still pass after the attacks; the same issuer serves globex for its
    // own audience, independently of acme's two mounts.
    assert_eq!(login(&broker, "acme/auth/jwt", "web", &control).0, 200);
    assert_eq!(login(&broker, "acme/auth/idp", "web", &real).0, 200);
    let for_globex = idp.token("app-web", "app-web-secret", "https://globex.example/");
    assert_eq!(login(&broker, "globex/auth/jwt", "web", &for_globex).0, 200);
    assert_eq!(
        login(&broker, "acme/auth/idp", "web", &for_globex),
        (400, FAILED.to_owned())
    );
}

#[test]
fn a_fresh_node_answers_503_to_logins_while_the_identity_provider_is_unreachable() {
    let mut idp = Idp::start();
    let state = private_dir();
    let options = Options {
        config: Some(
            "state_dir = \"{state}\"\n[listener]\naddress = \"127.0.0.1:{port}\"\n".to_owned(),
        ),
        state_dir: Some(state.path().to_owned()),
        ..Options::default()
    };
    let first = Broker::start(options.clone());
    let root = first.token.clone();
    assert_eq!(
        first
            .request("POST", "sys/auth/jwt", Some(&json!({ "type": "jwt" })))
            .0,
        204
    );
    let config = json!({
        "oidc_discovery_url": idp.issuer,
        "oidc_discovery_ca_pem": idp.ca_pem_text(),
    });
    assert_eq!(
        first.request("POST", "auth/jwt/config", Some(&config)).0,
        204
    );
    assert_eq!(
        first
            .request("POST", "auth/jwt/role/web", Some(&web_role("web")))
            .0,
        204
    );
    let jwt = idp.token("app-web", "app-web-secret", AUDIENCE);
    assert_eq!(login(&first, "auth/jwt", "web", &jwt).0, 200);
    drop(first);

    // A restarted node builds its verifier on first use: with the provider down, that is
    // an outage (503), not a bad credential.
    idp.stop();
    let mut second = Broker::start(options);
    second.token = root;
    let (status, body) = login(&second, "auth/jwt", "web", &jwt);
    assert_eq!(status, 503, "{body}");
    idp.restart();
    // The node builds its verifier on the next login: discovery and JWKS fetched over HTTPS
    // from the restarted provider (a Node process), at the machine's speed (it was 10 s).
    assert!(eventually(Duration::from_secs(30), || {
        login(&second, "auth/jwt", "web", &jwt).0 == 200
    }));
}
