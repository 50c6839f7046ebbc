//! The handlers driven through the whole router (path normalization included), no socket.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{sync::Arc, time::Duration};

use axum::{
    body::Body,
    http::{header, Method, Request, StatusCode},
};
use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
use serde_json::{json, Value};
use sha2::Digest as _;
use tower::ServiceExt as _;

use crate::{
    crypto::{b64url, from_b64url},
    state::{FakeConfig, FakeState},
    Operation,
};

const BASE: &str = "https://127.0.0.1:1";

fn fake() -> Arc<FakeState> {
    Arc::new(FakeState::new(FakeConfig {
        tenant: "t1".to_owned(),
        client_id: "c1".to_owned(),
        client_secret: "s1".to_owned(),
        base_url: BASE.to_owned(),
    }))
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

async fn send(state: &Arc<FakeState>, request: Request<Body>) -> Reply {
    let response = crate::app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
    }
}

async fn token_request(state: &Arc<FakeState>, form: &str) -> Reply {
    let request = Request::post("/t1/oauth2/v2.0/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form.to_owned()))
        .unwrap();
    send(state, request).await
}

async fn token(state: &Arc<FakeState>) -> String {
    let reply = token_request(
        state,
        "grant_type=client_credentials&client_id=c1&client_secret=s1&scope=https%3A%2F%2Fvault.azure.net%2F.default",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["token_type"], "Bearer");
    assert_eq!(reply.body["expires_in"], 3599);
    reply.body["access_token"].as_str().unwrap().to_owned()
}

async fn call(
    state: &Arc<FakeState>,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Reply {
    let builder = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json");
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    send(state, builder.body(body).unwrap()).await
}

async fn create(state: &Arc<FakeState>, token: &str, name: &str, body: Value) -> Value {
    let reply = call(
        state,
        token,
        Method::POST,
        &format!("/keys/{name}/create?api-version=7.4"),
        Some(body),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

#[tokio::test]
async fn unauthenticated_requests_get_the_bearer_challenge() {
    let state = fake();
    let request = Request::get("/keys/k?api-version=7.4")
        .body(Body::empty())
        .unwrap();
    let reply = send(&state, request).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply.headers[header::WWW_AUTHENTICATE],
        "Bearer authorization=\"https://127.0.0.1:1/t1\", resource=\"https://vault.azure.net\""
    );
    assert_eq!(reply.body["error"]["code"], "Unauthorized");
    // A token the fake did not issue, or revoked, is refused the same way.
    let reply = call(
        &state,
        "forged",
        Method::GET,
        "/keys/k?api-version=7.4",
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.headers.contains_key(header::WWW_AUTHENTICATE));
    let good = token(&state).await;
    assert_eq!(
        call(&state, &good, Method::GET, "/keys/k?api-version=7.4", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    state.revoke_tokens();
    assert_eq!(
        call(&state, &good, Method::GET, "/keys/k?api-version=7.4", None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(state.request_count(Operation::Get), 4);
}

#[tokio::test]
async fn token_endpoint_refuses_wrong_credentials_like_entra_id() {
    let state = fake();
    let scope = "scope=https%3A%2F%2Fvault.azure.net%2F.default";
    let reply = token_request(
        &state,
        &format!("grant_type=client_credentials&client_id=c1&client_secret=nope&{scope}"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.body["error"], "invalid_client");
    assert!(reply.body["error_description"]
        .as_str()
        .unwrap()
        .starts_with("AADSTS7000215"));
    assert_eq!(reply.body["error_codes"], json!([7000215]));
    let reply = token_request(
        &state,
        &format!("grant_type=client_credentials&client_id=other&client_secret=s1&{scope}"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["error"], "unauthorized_client");
    let reply = token_request(&state, "grant_type=client_credentials&client_id=c1&client_secret=s1&scope=https%3A%2F%2Fstorage.azure.com%2F.default").await;
    assert_eq!(reply.body["error"], "invalid_scope");
    let reply = token_request(
        &state,
        &format!("grant_type=password&client_id=c1&client_secret=s1&{scope}"),
    )
    .await;
    assert_eq!(reply.body["error"], "unsupported_grant_type");
    // client_secret_basic works too.
    let request = Request::post("/t1/oauth2/v2.0/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::AUTHORIZATION, "Basic YzE6czE=")
        .body(Body::from(format!("grant_type=client_credentials&{scope}")))
        .unwrap();
    assert_eq!(send(&state, request).await.status, StatusCode::OK);
    let request = Request::get("/t1/v2.0/.well-known/openid-configuration")
        .body(Body::empty())
        .unwrap();
    let reply = send(&state, request).await;
    assert_eq!(
        reply.body["token_endpoint"],
        "https://127.0.0.1:1/t1/oauth2/v2.0/token"
    );
    assert_eq!(state.request_count(Operation::Token), 5);
}

#[tokio::test]
async fn rsa_oaep_256_wrap_unwrap_round_trip_over_rest() {
    let state = fake();
    let token = token(&state).await;
    let bundle = create(
        &state,
        &token,
        "kek",
        json!({"kty": "RSA", "key_size": 2048, "tags": {"a": "b"}}),
    )
    .await;
    let kid = bundle["key"]["kid"].as_str().unwrap();
    let version = kid.rsplit('/').next().unwrap();
    assert_eq!(kid, format!("{BASE}/keys/kek/{version}"));
    assert_eq!(version.len(), 32);
    assert_eq!(bundle["key"]["kty"], "RSA");
    assert_eq!(bundle["key"]["e"], "AQAB");
    assert_eq!(bundle["attributes"]["enabled"], true);
    assert_eq!(
        bundle["attributes"]["recoveryLevel"],
        "Recoverable+Purgeable"
    );
    assert_eq!(bundle["tags"], json!({"a": "b"}));

    let dek = [9u8; 32];
    let wrapped = call(
        &state,
        &token,
        Method::POST,
        &format!("/keys/kek/{version}/wrapkey?api-version=7.4"),
        Some(json!({"alg": "RSA-OAEP-256", "value": b64url(&dek)})),
    )
    .await;
    assert_eq!(wrapped.status, StatusCode::OK, "{}", wrapped.body);
    assert_eq!(wrapped.body["kid"], kid);
    let ciphertext = wrapped.body["value"].as_str().unwrap();
    assert_eq!(from_b64url(ciphertext).unwrap().len(), 256);
    // The current version through an empty version segment, as SDKs send it.
    let unwrapped = call(
        &state,
        &token,
        Method::POST,
        "/keys/kek//unwrapkey?api-version=7.4",
        Some(json!({"alg": "RSA-OAEP-256", "value": ciphertext})),
    )
    .await;
    assert_eq!(unwrapped.status, StatusCode::OK, "{}", unwrapped.body);
    assert_eq!(
        from_b64url(unwrapped.body["value"].as_str().unwrap()).unwrap(),
        dek
    );
    // Checked independently: the rsa crate decrypts with OAEP/SHA-256.
    let (material, _) = state.usable_key("kek", None, "unwrapKey").unwrap();
    let crate::crypto::KeyMaterial::Rsa(private) = material.as_ref() else {
        panic!()
    };
    let plain = private
        .decrypt(
            rsa::Oaep::new::<sha2::Sha256>(),
            &from_b64url(ciphertext).unwrap(),
        )
        .unwrap();
    assert_eq!(plain, dek);

    let bad = call(
        &state,
        &token,
        Method::POST,
        &format!("/keys/kek/{version}/wrapkey?api-version=7.4"),
        Some(json!({"alg": "A256KW", "value": b64url(&dek)})),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.body["error"]["code"], "BadParameter");
    let got = call(
        &state,
        &token,
        Method::GET,
        "/keys/kek/?api-version=7.4",
        None,
    )
    .await;
    assert_eq!(got.body["key"]["kid"], kid);
}

#[tokio::test]
async fn es256_signature_is_raw_and_verifies_with_p256() {
    let state = fake();
    let token = token(&state).await;
    let bundle = create(
        &state,
        &token,
        "signer",
        json!({"kty": "EC", "crv": "P-256"}),
    )
    .await;
    assert_eq!(bundle["key"]["key_ops"], json!(["sign", "verify"]));
    let x = from_b64url(bundle["key"]["x"].as_str().unwrap()).unwrap();
    let y = from_b64url(bundle["key"]["y"].as_str().unwrap()).unwrap();
    let point = p256::EncodedPoint::from_affine_coordinates(
        x.as_slice().into(),
        y.as_slice().into(),
        false,
    );
    let public = p256::ecdsa::VerifyingKey::from_encoded_point(&point).unwrap();
    let digest = sha2::Sha256::digest(b"to be signed");
    let signed = call(
        &state,
        &token,
        Method::POST,
        "/keys/signer/sign?api-version=7.4",
        Some(json!({"alg": "ES256", "value": b64url(&digest)})),
    )
    .await;
    assert_eq!(signed.status, StatusCode::OK, "{}", signed.body);
    let signature = from_b64url(signed.body["value"].as_str().unwrap()).unwrap();
    assert_eq!(signature.len(), 64);
    public
        .verify_prehash(
            &digest,
            &p256::ecdsa::Signature::from_slice(&signature).unwrap(),
        )
        .unwrap();
    let verified = call(
        &state,
        &token,
        Method::POST,
        "/keys/signer/verify?api-version=7.4",
        Some(json!({"alg": "ES256", "digest": b64url(&digest), "value": b64url(&signature)})),
    )
    .await;
    assert_eq!(verified.body, json!({"value": true}));
    let other = sha2::Sha256::digest(b"other");
    let verified = call(
        &state,
        &token,
        Method::POST,
        "/keys/signer/verify?api-version=7.4",
        Some(json!({"alg": "ES256", "digest": b64url(&other), "value": b64url(&signature)})),
    )
    .await;
    assert_eq!(verified.body, json!({"value": false}));
    // EC keys do not wrap.
    let refused = call(
        &state,
        &token,
        Method::POST,
        "/keys/signer/wrapkey?api-version=7.4",
        Some(json!({"alg": "RSA-OAEP-256", "value": b64url(b"k")})),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn throttling_answers_429_with_retry_after_then_recovers() {
    let state = fake();
    let token = token(&state).await;
    create(&state, &token, "k", json!({"kty": "EC"})).await;
    state.throttle(2, Duration::from_secs(3));
    for _ in 0..2 {
        let reply = call(&state, &token, Method::GET, "/keys/k?api-version=7.4", None).await;
        assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(reply.headers[header::RETRY_AFTER], "3");
        assert_eq!(reply.body["error"]["code"], "Throttled");
    }
    assert_eq!(
        call(&state, &token, Method::GET, "/keys/k?api-version=7.4", None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(state.request_count(Operation::Get), 3);
    assert_eq!(state.request_count(Operation::Create), 1);
    assert_eq!(state.throttle_remaining(), 0);
    state.set_outage(true);
    let reply = call(&state, &token, Method::GET, "/keys/k?api-version=7.4", None).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.body["error"]["code"], "ServiceUnavailable");
    let reply = token_request(&state, "grant_type=client_credentials&client_id=c1&client_secret=s1&scope=https%3A%2F%2Fvault.azure.net%2F.default").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    state.clear_faults();
    assert_eq!(
        call(&state, &token, Method::GET, "/keys/k?api-version=7.4", None)
            .await
            .status,
        StatusCode::OK
    );
    state.reset_counts();
    assert_eq!(state.request_count(Operation::Get), 0);
}

#[tokio::test]
async fn disabled_key_is_refused_but_readable() {
    let state = fake();
    let token = token(&state).await;
    let bundle = create(&state, &token, "k", json!({"kty": "RSA"})).await;
    let version = bundle["key"]["kid"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let updated = call(
        &state,
        &token,
        Method::PATCH,
        &format!("/keys/k/{version}?api-version=7.4"),
        Some(json!({"attributes": {"enabled": false}})),
    )
    .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.body["attributes"]["enabled"], false);
    let got = call(&state, &token, Method::GET, "/keys/k?api-version=7.4", None).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body["attributes"]["enabled"], false);
    let refused = call(
        &state,
        &token,
        Method::POST,
        "/keys/k/unwrapkey?api-version=7.4",
        Some(json!({"alg": "RSA-OAEP-256", "value": b64url(&[0; 256])})),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.body["error"]["code"], "Forbidden");
    assert_eq!(refused.body["error"]["innererror"]["code"], "KeyDisabled");
    assert_eq!(
        refused.body["error"]["message"],
        "Operation unwrapKey is not allowed on a disabled key."
    );
}

#[tokio::test]
async fn denied_operations_missing_keys_and_api_version() {
    let state = fake();
    let token = token(&state).await;
    create(&state, &token, "k", json!({"kty": "RSA"})).await;
    state.deny_for_key(Operation::Get, "k");
    let denied = call(&state, &token, Method::GET, "/keys/k?api-version=7.4", None).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(denied.body["error"]["innererror"]["code"], "AccessDenied");
    assert!(denied.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("does not have keys get permission"));
    state.allow(Operation::Get);
    assert_eq!(
        call(&state, &token, Method::GET, "/keys/k?api-version=7.4", None)
            .await
            .status,
        StatusCode::OK
    );
    let missing = call(
        &state,
        &token,
        Method::GET,
        "/keys/nope/0123?api-version=7.4",
        None,
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.body["error"]["code"], "KeyNotFound");
    let no_version = call(&state, &token, Method::GET, "/keys/k", None).await;
    assert_eq!(no_version.status, StatusCode::BAD_REQUEST);
    assert_eq!(no_version.body["error"]["code"], "BadParameter");
    let bad_name = call(
        &state,
        &token,
        Method::POST,
        "/keys/bad_name/create?api-version=7.4",
        Some(json!({"kty": "RSA"})),
    )
    .await;
    assert_eq!(bad_name.status, StatusCode::BAD_REQUEST);
}
