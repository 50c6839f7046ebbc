//! The fake over real HTTPS with a Rust client (reqwest + rustls, as the plugin's SDK uses):
//! the test CA is enough to trust it, and latency faults make calls time out.

// A test: failing loudly, with the reason, is its job.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use keybroker_azure_fake::{AzureFake, KeySpec, Operation};

/// Timeout of requests that are not meant to time out: generous, because the fake answers
/// from a debug build, beside other tests, on machines with as few as 2 cores.
const GENEROUS: Duration = Duration::from_secs(60);
/// Latency of a vault that hangs: far beyond the short timeout of the request the test
/// makes time out, so that only the timeout can end it, however slow the machine.
const HANG: Duration = Duration::from_secs(600);

fn client(fake: &AzureFake, timeout: Duration) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(fake.ca_pem().as_bytes()).unwrap();
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .timeout(timeout)
        .build()
        .unwrap()
}

async fn token(fake: &AzureFake, client: &reqwest::Client, secret: &str) -> reqwest::Response {
    client
        .post(fake.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", fake.client_id()),
            ("client_secret", secret),
            ("scope", "https://vault.azure.net/.default"),
        ])
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rustls_client_trusts_the_test_ca_and_latency_faults_time_out() {
    let fake = AzureFake::start("t", "c", "s");
    assert!(fake.ca_pem_path().exists());
    let kid = fake.create_key("bound", KeySpec::Rsa(2048)).unwrap();
    assert!(
        kid.starts_with(&format!("{}keys/bound/", fake.vault_url())),
        "{kid}"
    );
    let http = client(&fake, GENEROUS);

    let refused = token(&fake, &http, "wrong").await;
    assert_eq!(refused.status(), 401);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");

    let reply: serde_json::Value = token(&fake, &http, "s").await.json().await.unwrap();
    let bearer = reply["access_token"].as_str().unwrap().to_owned();
    let url = format!("{}keys/bound?api-version=2025-07-01", fake.vault_url());
    let got = http.get(&url).bearer_auth(&bearer).send().await.unwrap();
    assert_eq!(got.status(), 200);
    let bundle: serde_json::Value = got.json().await.unwrap();
    assert_eq!(bundle["key"]["kid"], kid.as_str());

    fake.set_key_enabled("bound", false).unwrap();
    let wrap = format!(
        "{}keys/bound//wrapkey?api-version=2025-07-01",
        fake.vault_url()
    );
    let refused = http
        .post(&wrap)
        .bearer_auth(&bearer)
        .json(&serde_json::json!({"alg": "RSA-OAEP-256", "value": "AAAA"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    // Read to the end, so that its connection goes back to the pool for the next request.
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["innererror"]["code"], "KeyDisabled");

    // A hung vault: a request with a short timeout gives up; without the fault the vault
    // answers. The short timeout is only for the faulty request, sent on the connection the
    // requests above opened (no handshake to wait for), so it reaches the fake and is
    // counted; the hang outlasts the timeout by far, so only the timeout ends it.
    fake.set_latency(HANG);
    let error = http
        .get(&url)
        .bearer_auth(&bearer)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error}");
    fake.clear_faults();
    assert_eq!(
        http.get(&url)
            .bearer_auth(&bearer)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(fake.request_count(Operation::Get), 3);
    assert_eq!(fake.request_count(Operation::Token), 2);
}
