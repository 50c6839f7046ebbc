//! The test OpenID provider itself (`tests/idp`): what the JWT/OIDC auth tests rely on.

use serde_json::{json, Value};

use crate::support::idp::{decode_unverified, Idp};

const AUDIENCE: &str = "https://broker.example/";

/// The token's `kid` after checking the claims every JWT auth test relies on.
fn checked_kid(idp: &Idp, token: &str, client_id: &str, groups: Value) -> String {
    let (header, claims) = decode_unverified(token);
    assert_eq!(header["alg"], "RS256", "{header}");
    assert_eq!(claims["iss"], idp.issuer.as_str(), "{claims}");
    assert_eq!(claims["aud"], AUDIENCE, "{claims}");
    assert_eq!(claims["sub"], client_id, "{claims}");
    assert_eq!(claims["groups"], groups, "{claims}");
    let issued_at = claims["iat"].as_u64().unwrap();
    let expires = claims["exp"].as_u64().unwrap();
    assert!(expires > issued_at, "{claims}");
    header["kid"].as_str().unwrap().to_owned()
}

#[test]
fn idp_issues_jwt_access_tokens_and_rotates_its_keys() {
    let mut idp = Idp::start();
    assert!(idp.issuer.starts_with("https://127.0.0.1:"));
    let discovery = idp.discovery();
    assert_eq!(discovery["issuer"], idp.issuer.as_str());
    assert_eq!(discovery["jwks_uri"], idp.jwks_url().as_str());
    assert_eq!(
        discovery["token_endpoint"],
        format!("{}/token", idp.issuer).as_str()
    );

    let token = idp.token("app-web", "app-web-secret", AUDIENCE);
    let first = checked_kid(&idp, &token, "app-web", json!(["payments", "readers"]));
    let (_, claims) = decode_unverified(&token);
    assert_eq!(claims["team"], "web");
    let published = idp.published_kids();
    assert!(published.contains(&first), "{first} not in {published:?}");
    let batch = idp.token("app-batch", "app-batch-secret", AUDIENCE);
    checked_kid(&idp, &batch, "app-batch", json!(["batch"]));

    let (status, body) = idp.request_token("app-web", "wrong-secret", AUDIENCE);
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_client");

    let rotated = idp.rotate();
    let token = idp.token("app-web", "app-web-secret", AUDIENCE);
    let second = checked_kid(&idp, &token, "app-web", json!(["payments", "readers"]));
    assert_ne!(second, first);
    assert_eq!(rotated[0], second);
    let published = idp.published_kids();
    assert!(published.contains(&first) && published.contains(&second));

    let retired = idp.retire();
    assert_eq!(idp.published_kids(), retired);
    assert!(!retired.contains(&first), "{retired:?}");
    assert!(retired.contains(&second), "{retired:?}");

    // The keys live in the state directory: a restart publishes and signs with the same ones.
    idp.restart();
    assert_eq!(idp.published_kids(), retired);
    let token = idp.token("app-web", "app-web-secret", AUDIENCE);
    assert_eq!(
        checked_kid(&idp, &token, "app-web", json!(["payments", "readers"])),
        second
    );
}

#[test]
fn idp_clients_file_sets_claims_lifetime_and_algorithm() {
    let idp = Idp::start_with_clients(&json!([{
        "client_id": "app-ec",
        "client_secret": "app-ec-secret",
        "extra_claims": { "groups": ["ops"], "team": "sre", "sub": "forged" },
        "access_token_ttl": 30,
        "access_token_alg": "ES256",
    }]));
    let token = idp.token("app-ec", "app-ec-secret", "https://other.example/api");
    let (header, claims) = decode_unverified(&token);
    assert_eq!(header["alg"], "ES256");
    let ec_kid = idp.jwks()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["kty"] == "EC")
        .map(|key| key["kid"].clone())
        .unwrap();
    assert_eq!(header["kid"], ec_kid);
    assert_eq!(claims["aud"], "https://other.example/api");
    assert_eq!(claims["groups"], json!(["ops"]));
    assert_eq!(claims["team"], "sre");
    // Extra claims cannot override the identity oidc-provider sets.
    assert_eq!(claims["sub"], "app-ec");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        30
    );
    // The default clients are gone.
    let (status, _) = idp.request_token("app-web", "app-web-secret", AUDIENCE);
    assert_eq!(status, 401);
}
