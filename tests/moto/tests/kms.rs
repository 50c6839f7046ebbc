//! The harness against the real `aws-sdk-kms`: moto behind the fault proxy, and every fault
//! the proxy injects seen as the SDK sees AWS's.

// Test code throughout: a failed unwrap is a failed test (clippy's `allow-*-in-tests` does
// not reach helpers outside `#[test]` functions).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use aws_config::{retry::RetryConfig, timeout::TimeoutConfig, BehaviorVersion, Region};
use aws_sdk_kms::{
    config::Credentials,
    error::{ProvideErrorMetadata as _, SdkError},
    primitives::Blob,
    types::{DataKeySpec, KeySpec, KeyState, KeyUsageType, MessageType, SigningAlgorithmSpec},
    Client,
};
use aws_smithy_http_client::tls;
use keybroker_moto_harness::{FaultProxy, KeyFault, MotoServer};

/// Operation timeout of clients whose calls are not meant to time out: generous, because
/// moto answers from Python, beside the other tests of this binary, on machines with as few
/// as 2 cores. A test must never race that.
const GENEROUS: Duration = Duration::from_secs(60);
/// Operation timeout of the client a test makes time out on purpose (a paused moto, a
/// latency fault); only the faulty calls go through it.
const SHORT: Duration = Duration::from_secs(2);
/// Throttling and latency that outlast any call of the test: they end when the test ends
/// them, so only the SDK's attempts or a timeout can end a call meanwhile.
const LONG_FAULT: Duration = Duration::from_secs(600);

/// A client as the plugin would build one: static test credentials, `us-east-1`, the
/// endpoint overridden, quick retries (`attempts` in all) and an operation timeout.
async fn client(endpoint: &str, attempts: u32, operation_timeout: Duration) -> Client {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let config = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "test-akid",
            "test-secret",
            None,
            None,
            "test",
        ))
        .endpoint_url(endpoint)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(attempts)
                .with_initial_backoff(Duration::from_millis(10))
                .with_max_backoff(Duration::from_millis(50)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(operation_timeout)
                .build(),
        )
        .load()
        .await;
    Client::new(&config)
}

async fn symmetric_key(kms: &Client) -> (String, String) {
    let created = kms.create_key().send().await.unwrap();
    let metadata = created.key_metadata().unwrap();
    (
        metadata.key_id().to_owned(),
        metadata.arn().unwrap().to_owned(),
    )
}

async fn encrypt(kms: &Client, key: &str, plaintext: &[u8]) -> Blob {
    kms.encrypt()
        .key_id(key)
        .plaintext(Blob::new(plaintext))
        .encryption_context("tenant", "acme")
        .send()
        .await
        .unwrap()
        .ciphertext_blob()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn round_trips_through_the_proxy_with_the_real_sdk() {
    let moto = MotoServer::start();
    let proxy = FaultProxy::in_front_of(&moto);
    let kms = client(&proxy.endpoint(), 3, GENEROUS).await;

    let (key, arn) = symmetric_key(&kms).await;
    assert!(arn.ends_with(&format!(":key/{key}")), "{arn}");
    let blob = encrypt(&kms, &key, b"a secret").await;
    let decrypted = kms
        .decrypt()
        .ciphertext_blob(blob.clone())
        .encryption_context("tenant", "acme")
        .send()
        .await
        .unwrap();
    assert_eq!(decrypted.plaintext().unwrap().as_ref(), b"a secret");
    assert_eq!(decrypted.key_id(), Some(arn.as_str()));

    // moto enforces the encryption context.
    let wrong = kms
        .decrypt()
        .ciphertext_blob(blob)
        .encryption_context("tenant", "globex")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(wrong.is_invalid_ciphertext_exception(), "{wrong:?}");

    let data_key = kms
        .generate_data_key()
        .key_id(&arn)
        .key_spec(DataKeySpec::Aes256)
        .encryption_context("tenant", "acme")
        .send()
        .await
        .unwrap();
    let plaintext = data_key.plaintext().unwrap().as_ref().to_vec();
    assert_eq!(plaintext.len(), 32);
    let unwrapped = kms
        .decrypt()
        .ciphertext_blob(data_key.ciphertext_blob().unwrap().clone())
        .encryption_context("tenant", "acme")
        .send()
        .await
        .unwrap();
    assert_eq!(unwrapped.plaintext().unwrap().as_ref(), plaintext);

    let signing = kms
        .create_key()
        .key_spec(KeySpec::EccNistP256)
        .key_usage(KeyUsageType::SignVerify)
        .send()
        .await
        .unwrap();
    let signing = signing.key_metadata().unwrap().key_id().to_owned();
    let signature = kms
        .sign()
        .key_id(&signing)
        .message(Blob::new(b"a message".as_slice()))
        .message_type(MessageType::Raw)
        .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
        .send()
        .await
        .unwrap()
        .signature()
        .unwrap()
        .clone();
    let verify = |message: &'static [u8]| {
        kms.verify()
            .key_id(&signing)
            .message(Blob::new(message))
            .message_type(MessageType::Raw)
            .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
            .signature(signature.clone())
            .send()
    };
    assert!(verify(b"a message").await.unwrap().signature_valid());
    // As AWS answers (moto says `false`; the proxy makes it AWS's error).
    let error = verify(b"another message")
        .await
        .unwrap_err()
        .into_service_error();
    assert!(error.is_kms_invalid_signature_exception(), "{error:?}");
    let public_key = kms.get_public_key().key_id(&signing).send().await.unwrap();
    assert!(!public_key.public_key().unwrap().as_ref().is_empty());

    let counts = proxy.counts();
    assert_eq!(counts.forwarded("CreateKey"), 2);
    assert_eq!(counts.forwarded("Encrypt"), 1);
    assert_eq!(counts.forwarded("Decrypt"), 3);
    assert_eq!(counts.forwarded("GenerateDataKey"), 1);
    assert_eq!(counts.forwarded("Sign"), 1);
    assert_eq!(counts.forwarded("Verify"), 2);
    assert_eq!(counts.forwarded("GetPublicKey"), 1);
    assert!(counts.throttled.is_empty() && counts.refused.is_empty());
    proxy.reset_counts();
    assert_eq!(proxy.counts(), Default::default());
    kms.describe_key().key_id(&key).send().await.unwrap();
    assert_eq!(proxy.forwarded("DescribeKey"), 1);
    assert_eq!(proxy.forwarded("Decrypt"), 0);
}

#[tokio::test]
async fn throttling_is_retried_by_the_sdk_until_it_lasts_too_long() {
    let moto = MotoServer::start();
    let proxy = FaultProxy::in_front_of(&moto);
    let kms = client(&proxy.endpoint(), 4, GENEROUS).await;
    let (key, _) = symmetric_key(&kms).await;

    // Three throttled attempts, then the fourth goes through.
    proxy.throttle_next(3);
    let blob = encrypt(&kms, &key, b"x").await;
    assert_eq!(proxy.throttled("Encrypt"), 3);
    assert_eq!(proxy.forwarded("Encrypt"), 1);

    // Throttled for longer than the SDK retries: every attempt is throttled, and the error
    // is AWS's throttling error.
    proxy.throttle_for(LONG_FAULT);
    let error = kms
        .decrypt()
        .ciphertext_blob(blob.clone())
        .encryption_context("tenant", "acme")
        .send()
        .await
        .unwrap_err();
    assert!(matches!(error, SdkError::ServiceError(_)), "{error:?}");
    assert_eq!(error.code(), Some("ThrottlingException"));
    assert_eq!(error.message(), Some("Rate exceeded"));
    assert_eq!(
        error.raw_response().map(|raw| raw.status().as_u16()),
        Some(400)
    );
    assert_eq!(proxy.throttled("Decrypt"), 4);
    assert_eq!(proxy.forwarded("Decrypt"), 0);

    proxy.stop_throttling();
    kms.decrypt()
        .ciphertext_blob(blob)
        .encryption_context("tenant", "acme")
        .send()
        .await
        .unwrap();
    assert_eq!(proxy.forwarded("Decrypt"), 1);
    assert_eq!(proxy.throttled("Decrypt"), 4);

    // Throttling for a while ends by itself: once the proxy says it is over (polled, not
    // slept past), a client without retries goes through.
    proxy.throttle_for(Duration::from_millis(200));
    let deadline = Instant::now() + GENEROUS;
    while proxy.is_throttling() {
        assert!(
            Instant::now() < deadline,
            "throttling did not end by itself"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let once = client(&proxy.endpoint(), 1, GENEROUS).await;
    encrypt(&once, &key, b"x").await;
    assert_eq!(proxy.throttled("Encrypt"), 3);
    assert!(!proxy.is_throttling());
    // Throttling a number of requests is over once they were throttled.
    proxy.throttle_next(1);
    assert!(proxy.is_throttling());
    kms.describe_key().key_id(&key).send().await.unwrap();
    assert!(!proxy.is_throttling());
    assert_eq!(proxy.throttled("DescribeKey"), 1);
}

#[tokio::test]
async fn disabled_pending_deletion_and_forbidden_keys_give_aws_errors() {
    let moto = MotoServer::start();
    let proxy = FaultProxy::in_front_of(&moto);
    let kms = client(&proxy.endpoint(), 3, GENEROUS).await;
    let (key, arn) = symmetric_key(&kms).await;
    let (other, _) = symmetric_key(&kms).await;
    let blob = encrypt(&kms, &key, b"x").await;
    let decrypt = || {
        kms.decrypt()
            .ciphertext_blob(blob.clone())
            .encryption_context("tenant", "acme")
            .send()
    };

    // Marked by id: refused by id and by ARN, and for a Decrypt naming no key.
    proxy.disable_key(&key);
    for reference in [&key, &arn] {
        let error = kms
            .encrypt()
            .key_id(reference)
            .plaintext(Blob::new(b"x".as_slice()))
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert!(error.is_disabled_exception(), "{error:?}");
        assert_eq!(
            error.message(),
            Some(format!("{arn} is disabled.").as_str())
        );
    }
    let error = decrypt().await.unwrap_err().into_service_error();
    assert!(error.is_disabled_exception(), "{error:?}");
    // Other keys are untouched; DescribeKey tells the state, as AWS's does.
    encrypt(&kms, &other, b"x").await;
    let described = kms.describe_key().key_id(&arn).send().await.unwrap();
    let metadata = described.key_metadata().unwrap();
    assert_eq!(metadata.key_state(), Some(&KeyState::Disabled));
    assert!(!metadata.enabled());
    assert_eq!(proxy.refused("Encrypt"), 2);
    assert_eq!(proxy.refused("Decrypt"), 1);

    proxy.schedule_key_deletion(&arn);
    let error = decrypt().await.unwrap_err().into_service_error();
    assert!(error.is_kms_invalid_state_exception(), "{error:?}");
    assert_eq!(
        error.message(),
        Some(format!("{arn} is pending deletion.").as_str())
    );
    let error = kms
        .generate_data_key()
        .key_id(&key)
        .key_spec(DataKeySpec::Aes256)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(error.is_kms_invalid_state_exception(), "{error:?}");
    let described = kms.describe_key().key_id(&key).send().await.unwrap();
    let metadata = described.key_metadata().unwrap();
    assert_eq!(metadata.key_state(), Some(&KeyState::PendingDeletion));
    assert!(metadata.deletion_date().is_some());

    proxy.set_key_fault(&key, KeyFault::AccessDenied);
    let error = decrypt().await.unwrap_err();
    assert_eq!(error.code(), Some("AccessDeniedException"));
    assert!(
        error.message().is_some_and(|m| m.contains("kms:Decrypt")),
        "{error:?}"
    );
    let error = kms.describe_key().key_id(&key).send().await.unwrap_err();
    assert_eq!(error.code(), Some("AccessDeniedException"));

    proxy.clear_key_fault(&key);
    decrypt().await.unwrap();
    proxy.disable_key(&key);
    proxy.clear_faults();
    decrypt().await.unwrap();

    // An alias is its own reference: marked by alias, refused by alias (name or ARN) only.
    kms.create_alias()
        .alias_name("alias/marked")
        .target_key_id(&key)
        .send()
        .await
        .unwrap();
    proxy.disable_key("alias/marked");
    for reference in [
        "alias/marked",
        "arn:aws:kms:us-east-1:123456789012:alias/marked",
    ] {
        let error = kms
            .encrypt()
            .key_id(reference)
            .plaintext(Blob::new(b"x".as_slice()))
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert!(error.is_disabled_exception(), "{error:?}");
    }
    encrypt(&kms, &key, b"x").await;
}

#[tokio::test]
async fn moto_behaves_as_the_harness_documents() {
    // Straight to moto, no proxy: what the proxy makes up for.
    let moto = MotoServer::start();
    let kms = client(&moto.endpoint(), 1, GENEROUS).await;
    let (key, _) = symmetric_key(&kms).await;
    let blob = encrypt(&kms, &key, b"x").await;
    // The key id opens the ciphertext blob.
    assert!(blob.as_ref().starts_with(key.as_bytes()));
    // It never throttles, even with no retries.
    for _ in 0..50 {
        encrypt(&kms, &key, b"x").await;
    }
    // It ignores key state.
    kms.disable_key().key_id(&key).send().await.unwrap();
    encrypt(&kms, &key, b"x").await;
    kms.enable_key().key_id(&key).send().await.unwrap();
    kms.schedule_key_deletion()
        .key_id(&key)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    let described = kms.describe_key().key_id(&key).send().await.unwrap();
    assert_eq!(
        described.key_metadata().unwrap().key_state(),
        Some(&KeyState::PendingDeletion)
    );
    kms.decrypt()
        .ciphertext_blob(blob)
        .encryption_context("tenant", "acme")
        .send()
        .await
        .unwrap();
    // After a reset, the key is gone.
    moto.reset();
    let error = kms
        .describe_key()
        .key_id(&key)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(error.is_not_found_exception(), "{error:?}");
}

#[tokio::test]
async fn a_paused_server_times_out_and_recovers_when_resumed() {
    let moto = MotoServer::start();
    let proxy = FaultProxy::in_front_of(&moto);
    // The faulty calls go through a client with a short timeout; the others through one
    // with a generous timeout, which also waits for moto to catch up after a pause.
    let kms = client(&proxy.endpoint(), 1, GENEROUS).await;
    let hurried = client(&proxy.endpoint(), 1, SHORT).await;
    let (key, _) = symmetric_key(&kms).await;

    moto.pause();
    let error = hurried
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"x".as_slice()))
        .send()
        .await
        .unwrap_err();
    assert!(matches!(error, SdkError::TimeoutError(_)), "{error:?}");
    moto.resume();
    encrypt(&kms, &key, b"x").await;

    // Latency past the operation timeout times out the same way.
    proxy.set_latency(LONG_FAULT);
    let error = hurried
        .describe_key()
        .key_id(&key)
        .send()
        .await
        .unwrap_err();
    assert!(matches!(error, SdkError::TimeoutError(_)), "{error:?}");
    proxy.set_latency(Duration::ZERO);
    kms.describe_key().key_id(&key).send().await.unwrap();

    // Dropping the proxy while a request hangs on the paused server does not wait for it.
    moto.pause();
    let error = hurried
        .describe_key()
        .key_id(&key)
        .send()
        .await
        .unwrap_err();
    assert!(matches!(error, SdkError::TimeoutError(_)), "{error:?}");
    drop(proxy);
    drop(moto);
}

#[test]
fn moto_starts_resets_and_is_killed_on_drop() {
    let moto = MotoServer::start();
    let pid = moto.pid();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(moto.endpoint(), format!("http://127.0.0.1:{}", moto.port()));
    moto.reset();
    // Dropped while stopped: still killed and reaped.
    moto.pause();
    drop(moto);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}
