//! The benchmark floor: the least a server can do to answer the Vault transit
//! encrypt/decrypt API, so `bench/run` can say how close keybroker gets to it.
//!
//! Per request it parses the JSON body, base64-decodes, runs one AES-256-GCM
//! operation with a key fixed at start-up and a random 96-bit nonce, and answers
//! in the Vault wire format. No auth, no policy, no key lookup, no audit, no
//! storage: whatever keybroker spends beyond this is its own overhead.
//!
//! Run: `keybroker-bench-floor --listen 127.0.0.1:8300` (normally started by
//! `bench/run`, pinned to one core with `taskset`).

use std::net::SocketAddr;
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Nonce};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use clap::Parser;
use rand::RngCore;
use serde_json::{json, Value};

/// Vault's ciphertext prefix for key version 1.
const CIPHERTEXT_PREFIX: &str = "vault:v1:";
/// AES-GCM nonce length (96 bits).
const NONCE_LEN: usize = 12;

#[derive(Parser)]
#[command(about = "Minimal Vault-transit-compatible server: the benchmark floor")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8300")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let cipher = Arc::new(Aes256Gcm::new(&Aes256Gcm::generate_key(OsRng)));
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    axum::serve(listener, router(cipher)).await
}

fn router(cipher: Arc<Aes256Gcm>) -> Router {
    Router::new()
        .route("/v1/sys/health", get(|| async { axum::Json(json!({})) }))
        .route("/v1/transit/encrypt/{name}", post(encrypt).put(encrypt))
        .route("/v1/transit/decrypt/{name}", post(decrypt).put(decrypt))
        .with_state(cipher)
}

/// Vault transit API: encrypt (`{"plaintext": base64}` → `{"data":{"ciphertext","key_version"}}`).
async fn encrypt(State(cipher): State<Arc<Aes256Gcm>>, body: Bytes) -> Response {
    let Some(plaintext) =
        string_field(&body, "plaintext").and_then(|b64| STANDARD.decode(b64).ok())
    else {
        return bad_request("expected JSON {\"plaintext\": \"<base64>\"}");
    };
    let mut nonce = [0u8; NONCE_LEN];
    rand::thread_rng().fill_bytes(&mut nonce);
    let Ok(sealed) = cipher.encrypt(Nonce::from_slice(&nonce), plaintext.as_slice()) else {
        return bad_request("encryption failed");
    };
    let mut framed = Vec::with_capacity(NONCE_LEN + sealed.len());
    framed.extend_from_slice(&nonce);
    framed.extend_from_slice(&sealed);
    let ciphertext = format!("{CIPHERTEXT_PREFIX}{}", STANDARD.encode(framed));
    axum::Json(json!({"data": {"ciphertext": ciphertext, "key_version": 1}})).into_response()
}

/// Vault transit API: decrypt (`{"ciphertext": "vault:v1:…"}` → `{"data":{"plaintext"}}`).
async fn decrypt(State(cipher): State<Arc<Aes256Gcm>>, body: Bytes) -> Response {
    let Some(framed) = string_field(&body, "ciphertext")
        .and_then(|text| text.strip_prefix(CIPHERTEXT_PREFIX).map(str::to_owned))
        .and_then(|b64| STANDARD.decode(b64).ok())
        .filter(|framed| framed.len() >= NONCE_LEN)
    else {
        return bad_request("expected JSON {\"ciphertext\": \"vault:v1:<base64>\"}");
    };
    let (nonce, sealed) = framed.split_at(NONCE_LEN);
    let Ok(plaintext) = cipher.decrypt(Nonce::from_slice(nonce), sealed) else {
        return bad_request("ciphertext does not authenticate");
    };
    axum::Json(json!({"data": {"plaintext": STANDARD.encode(plaintext)}})).into_response()
}

/// The string value of `field` in a JSON object body, if there is one.
fn string_field(body: &[u8], field: &str) -> Option<String> {
    match serde_json::from_slice::<Value>(body)
        .ok()?
        .get_mut(field)?
        .take()
    {
        Value::String(text) => Some(text),
        _ => None,
    }
}

fn bad_request(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"errors": [message]})),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn call(router: &Router, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    fn floor() -> Router {
        router(Arc::new(Aes256Gcm::new(&Aes256Gcm::generate_key(OsRng))))
    }

    #[tokio::test]
    async fn encrypt_then_decrypt_gives_the_plaintext_back_in_vault_format() {
        let router = floor();
        let plaintext = STANDARD.encode([7u8; 64]);
        let (status, encrypted) = call(
            &router,
            "POST",
            "/v1/transit/encrypt/bench",
            json!({"plaintext": plaintext}),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(encrypted["data"]["key_version"], 1);
        let ciphertext = encrypted["data"]["ciphertext"].as_str().unwrap();
        let framed = STANDARD
            .decode(ciphertext.strip_prefix("vault:v1:").unwrap())
            .unwrap();
        assert_eq!(framed.len(), NONCE_LEN + 64 + 16);

        let (status, decrypted) = call(
            &router,
            "PUT",
            "/v1/transit/decrypt/bench",
            json!({"ciphertext": ciphertext}),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(decrypted, json!({"data": {"plaintext": plaintext}}));
    }

    #[tokio::test]
    async fn malformed_or_forged_input_is_a_400() {
        let router = floor();
        let forged = format!("vault:v1:{}", STANDARD.encode([0u8; 40]));
        for (path, body) in [
            (
                "/v1/transit/encrypt/bench",
                json!({"plaintext": "not base64!"}),
            ),
            ("/v1/transit/encrypt/bench", json!({"other": "AAAA"})),
            ("/v1/transit/decrypt/bench", json!({"ciphertext": "AAAA"})),
            ("/v1/transit/decrypt/bench", json!({"ciphertext": forged})),
        ] {
            let (status, answer) = call(&router, "POST", path, body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
            assert!(answer["errors"].is_array());
        }
    }
}
