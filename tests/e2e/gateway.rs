//! The API-gateway path with real processes, as `examples/gateway/run` sets it up: a real
//! OpenID provider (npm `oidc-provider` over TLS) issues JWT access tokens by the
//! client-credentials grant, nginx (rendered from `examples/gateway/nginx.conf.template`)
//! passes `Authorization` through to the broker's tenant `acme`, and the broker's bearer mode
//! gives the JWT its role's policies. The example's app script runs here too, so the example
//! cannot rot unnoticed.

use std::process::Command;

use base64::{engine::general_purpose::STANDARD, Engine as _};
use serde_json::{json, Value};

use crate::support::{idp::Idp, nginx::Nginx, private_dir, repo_root, Broker};

/// The audience the broker's role binds (the token request's `resource`).
const AUDIENCE: &str = "https://broker.example/";

/// The tenant behind the gateway (the template's `X-Vault-Namespace`), as a `bao` flag.
const NS: &str = "-namespace=acme";

/// The provider, the broker configured as in the example, and nginx in front of it.
struct Gateway {
    idp: Idp,
    broker: Broker,
    nginx: Nginx,
}

impl Gateway {
    /// Tenant `acme` with transit keys `app-orders` and `payroll`, policy `app-enc`
    /// (encrypt/decrypt `app-*` only) and a jwt mount in bearer mode for the provider, whose
    /// role `web` binds the broker's audience and team `web`.
    fn start() -> Self {
        let idp = Idp::start();
        let broker = Broker::dev();
        let files = private_dir();
        broker.bao_ok(&["namespace", "create", "acme"]);
        broker.bao_ok(&["secrets", "enable", NS, "transit"]);
        for key in ["app-orders", "payroll"] {
            broker.bao_ok(&["write", NS, "-f", &format!("transit/keys/{key}")]);
        }
        let policy = repo_root().join("policies/examples/app-enc.hcl");
        broker.bao_ok(&["policy", "write", NS, "app-enc", policy.to_str().unwrap()]);
        broker.bao_ok(&["auth", "enable", NS, "jwt"]);
        let ca = files.path().join("ca.pem");
        std::fs::write(&ca, idp.ca_pem_text()).unwrap();
        broker.bao_ok(&[
            "write",
            NS,
            "auth/jwt/config",
            &format!("oidc_discovery_url={}", idp.issuer),
            &format!("oidc_discovery_ca_pem=@{}", ca.display()),
            "bearer_role=web",
        ]);
        let role = json!({
            "role_type": "jwt",
            "bound_audiences": [AUDIENCE],
            "bound_claims": { "team": "web" },
            "user_claim": "sub",
            "groups_claim": "groups",
            "token_policies": ["app-enc"],
            "token_ttl": "1h",
        });
        let role_file = files.path().join("role.json");
        std::fs::write(&role_file, role.to_string()).unwrap();
        broker.bao_ok(&[
            "write",
            NS,
            "auth/jwt/role/web",
            &format!("@{}", role_file.display()),
        ]);
        let nginx = Nginx::gateway(broker.port);
        Self { idp, broker, nginx }
    }

    /// `Authorization: Bearer` with a fresh JWT of a default client of the provider.
    fn bearer(&self, client_id: &str) -> String {
        let jwt = self
            .idp
            .token(client_id, &format!("{client_id}-secret"), AUDIENCE);
        format!("Bearer {jwt}")
    }

    /// `POST /api/transit/<operation>/<key>` through the gateway.
    fn transit(
        &self,
        operation: &str,
        key: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let path = format!("api/transit/{operation}/{key}");
        self.nginx.request("POST", &path, Some(body), headers)
    }

    /// Encrypts then decrypts `message` with `key`; returns the decrypt answer's status and
    /// plaintext (an encrypt refusal is returned as is).
    fn round_trip(&self, key: &str, message: &[u8], headers: &[(&str, &str)]) -> (u16, Vec<u8>) {
        let body = json!({ "plaintext": STANDARD.encode(message) });
        let (status, value) = self.transit("encrypt", key, &body, headers);
        if status != 200 {
            return (status, Vec::new());
        }
        let ciphertext = value["data"]["ciphertext"].as_str().unwrap();
        assert!(ciphertext.starts_with("vault:v1:"), "{value}");
        let body = json!({ "ciphertext": ciphertext });
        let (status, value) = self.transit("decrypt", key, &body, headers);
        assert_eq!(status, 200, "decrypt {key}: {value}");
        let plaintext = STANDARD
            .decode(value["data"]["plaintext"].as_str().unwrap())
            .unwrap();
        (status, plaintext)
    }
}

#[test]
fn an_app_behind_nginx_round_trips_with_its_providers_jwt_and_the_broker_applies_the_role() {
    let gateway = Gateway::start();
    let web = gateway.bearer("app-web");
    let as_web = [("Authorization", web.as_str())];
    let message = b"order 1042: 3 x espresso";
    assert_eq!(
        gateway.round_trip("app-orders", message, &as_web),
        (200, message.to_vec()),
        "broker log:\n{}\nnginx:\n{}",
        gateway.broker.log(),
        gateway.nginx.output()
    );
    // The gateway picks the tenant: a client's X-Vault-Namespace does not move the request
    // (were it passed on, the unknown namespace would be refused).
    let elsewhere = [
        ("Authorization", web.as_str()),
        ("X-Vault-Namespace", "globex"),
    ];
    assert_eq!(
        gateway.round_trip("app-orders", message, &elsewhere),
        (200, message.to_vec())
    );
    // What the JWT may do is the broker's decision: a key outside the policy is refused.
    let body = json!({ "plaintext": STANDARD.encode(message) });
    let (status, value) = gateway.transit("encrypt", "payroll", &body, &as_web);
    assert_eq!(status, 403, "{value}");
    // A valid JWT of a team the role does not bind: the broker refuses it.
    let batch = gateway.bearer("app-batch");
    let (status, value) =
        gateway.transit("encrypt", "app-orders", &body, &[("Authorization", &batch)]);
    assert_eq!(status, 403, "{value}");
    // A broker token as a bearer still works through the gateway.
    let root = format!("Bearer {}", gateway.broker.token);
    assert_eq!(
        gateway.round_trip("app-orders", message, &[("Authorization", &root)]),
        (200, message.to_vec())
    );
}

#[test]
fn the_gateway_refuses_requests_without_a_bearer_before_they_reach_the_broker() {
    let gateway = Gateway::start();
    let body = json!({ "plaintext": STANDARD.encode("hello") });
    let path = "api/transit/encrypt/app-orders";
    let (status, head, text) = gateway.nginx.raw("POST", path, Some(&body), &[]);
    assert_eq!(status, 401, "{text}");
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer realm=\"api\""),
        "{head}"
    );
    // The broker would accept the root token in X-Vault-Token; the gateway takes credentials
    // only as a bearer, and drops X-Vault-Token so it cannot override the bearer either.
    let root = gateway.broker.token.clone();
    let (status, _) = gateway
        .nginx
        .request("POST", path, Some(&body), &[("X-Vault-Token", &root)]);
    assert_eq!(status, 401);
    let batch = gateway.bearer("app-batch");
    let (status, value) = gateway.nginx.request(
        "POST",
        path,
        Some(&body),
        &[("Authorization", &batch), ("X-Vault-Token", &root)],
    );
    assert_eq!(status, 403, "{value}");
    for scheme in [
        "Basic YXBwLXdlYjphcHAtd2ViLXNlY3JldA==",
        "Bearer",
        "Bearer ",
    ] {
        let (status, _) =
            gateway
                .nginx
                .request("POST", path, Some(&body), &[("Authorization", scheme)]);
        assert_eq!(status, 401, "{scheme}");
    }
    // Only /api/ is exposed: the broker's own paths are not reachable through the gateway,
    // not even by a client that walks up out of /api/.
    let bearer_root = format!("Bearer {root}");
    for path in [
        "v1/sys/mounts",
        "api/../v1/sys/mounts",
        "api/%2e%2e/v1/sys/mounts",
    ] {
        let (status, value) =
            gateway
                .nginx
                .request("GET", path, None, &[("Authorization", &bearer_root)]);
        assert_eq!(status, 404, "{path}: {value}");
    }
    // Control: the same root bearer does reach the broker through /api/.
    let (status, value) = gateway.nginx.request(
        "GET",
        "api/transit/keys/app-orders",
        None,
        &[("Authorization", &bearer_root)],
    );
    assert_eq!(status, 200, "{value}");
}

#[test]
fn the_examples_app_script_round_trips_through_the_gateway() {
    let gateway = Gateway::start();
    let app = |client: &str| {
        Command::new(repo_root().join("examples/gateway/app.sh"))
            .env("IDP_URL", &gateway.idp.issuer)
            .env("IDP_CA", &gateway.idp.ca_pem)
            .env("GATEWAY_URL", &gateway.nginx.url)
            .env("CLIENT_ID", client)
            .env("CLIENT_SECRET", format!("{client}-secret"))
            .output()
            .unwrap()
    };
    let out = app("app-web");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "app.sh failed:\n{stdout}\n{}\nnginx:\n{}",
        String::from_utf8_lossy(&out.stderr),
        gateway.nginx.output()
    );
    assert!(stdout.contains("-> vault:v1:"), "{stdout}");
    assert!(stdout.ends_with("app-web: round trip ok\n"), "{stdout}");
    // The same app with app-batch's identity: the broker's 403 reaches it and it fails.
    let out = app("app-batch");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("HTTP 403"), "{stderr}");
}
