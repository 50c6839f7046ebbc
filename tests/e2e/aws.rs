//! Keys in AWS KMS: the aws-kms plugin loaded as a `.so` from a drop-in, talking to moto's
//! KMS server through the fault proxy of `tests/moto` (throttling, key states and access
//! denials moto cannot produce; outages by SIGSTOP of moto), driven with `bao` and `curl`.
//! KMS is inspected and arranged with direct calls to moto, outside the broker.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use keybroker_moto_harness::{FaultProxy, MotoServer};
use serde_json::{json, Value};

use crate::support::{
    backend_calls, curl, eventually, metrics, ns, post_as, private_dir, sample, tenant_token,
    Broker, Options, PluginDir,
};

/// Names of the environment variables the drop-in reads its credentials from.
const ACCESS_KEY_ENV: &str = "KB_AWS_ACCESS_KEY_ID";
const SECRET_KEY_ENV: &str = "KB_AWS_SECRET_ACCESS_KEY";

/// How long a test waits for something that happens on any machine, however slow: a
/// recovery after a fault, an instance with short timeouts answering, a health check.
pub(crate) const PATIENCE: Duration = Duration::from_secs(60);
/// Upper bound on a request that a fault made time out (throttling for
/// [`LONG_THROTTLE`], a stopped moto that never answers). It is not a measure of the
/// machine's speed: it is far below the fault's own length, so it only shows that the
/// deadline, not the end of the fault, ended the request — and that nothing hangs.
pub(crate) const GAVE_UP_WITHIN: Duration = Duration::from_secs(60);
/// Throttling that outlasts every request of the test: it ends when the test stops it.
const LONG_THROTTLE: Duration = Duration::from_secs(600);

/// The deadlines of a drop-in (the host's, and the plugin's operation timeout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timeouts {
    /// For requests that are not meant to time out: generous, because moto generates keys
    /// (RSA ones take seconds) in Python — and the Azure fake in a debug build — beside
    /// other tests on machines with as few as 2 cores. A test must never race that. The
    /// plugin's timeouts stay below the host's, as the plugins ask.
    Generous,
    /// For requests that a test makes time out on purpose (throttling, a stopped backend):
    /// the plugins' default operation timeout of 1.5 s within the host's default 2 s. Only
    /// the faulty requests go through an instance with these.
    Short,
}

impl Timeouts {
    /// The plugin's `operation_timeout_ms` (and Azure's `create_timeout_ms`).
    pub(crate) fn plugin_ms(self) -> u64 {
        match self {
            Self::Generous => 60_000,
            Self::Short => 1_500,
        }
    }

    /// The host's settings of the drop-in.
    pub(crate) fn host(self) -> &'static str {
        match self {
            Self::Generous => "timeout = \"90s\"\ncreate_timeout = \"90s\"\n",
            // Key creation is not what these are for: it keeps a generous deadline.
            Self::Short => "timeout = \"2s\"\ncreate_timeout = \"90s\"\n",
        }
    }
}

/// moto, the fault proxy in front of it, and a drop-in directory with the aws-kms plugin.
pub(crate) struct Kms {
    pub moto: MotoServer,
    pub proxy: FaultProxy,
    pub plugins: PluginDir,
    library: PathBuf,
}

impl Kms {
    pub(crate) fn new() -> Self {
        let moto = MotoServer::start();
        let proxy = FaultProxy::in_front_of(&moto);
        let plugins = PluginDir::new();
        let library = plugins.add_library("aws_kms", "libkeybroker_plugin_aws_kms.so");
        Self {
            moto,
            proxy,
            plugins,
            library,
        }
    }

    /// Writes the drop-in of instance `name` on the proxy, with `timeouts`; `host_extra`
    /// adds host settings (before `[config]`), `config_extra` lines of `[config]`.
    pub(crate) fn dropin(
        &self,
        name: &str,
        timeouts: Timeouts,
        host_extra: &str,
        config_extra: &str,
    ) {
        let config = format!(
            "region = \"us-east-1\"\nendpoint = \"{}\"\noperation_timeout_ms = {}\n\
             {config_extra}\n[config.credentials]\naccess_key_id_env = \"{ACCESS_KEY_ENV}\"\n\
             secret_access_key_env = \"{SECRET_KEY_ENV}\"\n",
            self.proxy.endpoint(),
            timeouts.plugin_ms(),
        );
        self.plugins.write_instance(
            name,
            &self.library,
            "[\"*\"]",
            &format!("{}{host_extra}", timeouts.host()),
            &config,
        );
    }

    /// The credentials the drop-in names, for the broker's environment (moto takes any).
    pub(crate) fn env() -> Vec<(String, String)> {
        vec![
            (ACCESS_KEY_ENV.to_owned(), "AKIAKEYBROKERE2E".to_owned()),
            (SECRET_KEY_ENV.to_owned(), "keybroker-e2e-secret".to_owned()),
        ]
    }

    /// A dev broker with this drop-in directory.
    fn dev_broker(&self) -> Broker {
        Broker::start(Options {
            plugin_dir: Some(self.plugins.path().to_owned()),
            env: Self::env(),
            ..Options::default()
        })
    }

    /// One KMS call straight to moto (AWS JSON 1.1; moto reads the region from the
    /// credential scope and checks no signature).
    pub(crate) fn call(&self, operation: &str, body: &Value) -> Value {
        let out = curl(&[
            "-s",
            "-X",
            "POST",
            "-H",
            &format!("X-Amz-Target: TrentService.{operation}"),
            "-H",
            "Content-Type: application/x-amz-json-1.1",
            "-H",
            "Authorization: AWS4-HMAC-SHA256 Credential=AKIAKEYBROKERE2E/20260101/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=00",
            "-d",
            &body.to_string(),
            &self.moto.endpoint(),
        ]);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            panic!(
                "moto answered {operation} with: {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Creates a KMS key outside the broker; returns (key id, ARN).
    pub(crate) fn create_key(&self, spec: &str, usage: &str) -> (String, String) {
        let created = self.call("CreateKey", &json!({"KeySpec": spec, "KeyUsage": usage}));
        let metadata = &created["KeyMetadata"];
        (
            metadata["KeyId"].as_str().unwrap().to_owned(),
            metadata["Arn"].as_str().unwrap().to_owned(),
        )
    }

    /// Points `alias` at `key_id`.
    pub(crate) fn alias(&self, alias: &str, key_id: &str) {
        self.call(
            "CreateAlias",
            &json!({"AliasName": alias, "TargetKeyId": key_id}),
        );
    }

    /// A key's state as KMS reports it (`Enabled`, `PendingDeletion`, …).
    pub(crate) fn key_state(&self, key_id: &str) -> String {
        self.call("DescribeKey", &json!({"KeyId": key_id}))["KeyMetadata"]["KeyState"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The ids of the keys in moto tagged by the broker for a tenant whose id starts with
    /// `tenant_tag_prefix`.
    pub(crate) fn keys_tagged_for(&self, tenant_tag_prefix: &str) -> Vec<String> {
        let listed = self.call("ListKeys", &json!({}));
        listed["Keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["KeyId"].as_str().unwrap().to_owned())
            .filter(|id| {
                let tags = self.call("ListResourceTags", &json!({"KeyId": id}));
                tags["Tags"].as_array().is_some_and(|tags| {
                    tags.iter().any(|t| {
                        t["TagKey"] == "keybroker:tenant"
                            && t["TagValue"]
                                .as_str()
                                .is_some_and(|v| v.starts_with(tenant_tag_prefix))
                    })
                })
            })
            .collect()
    }
}

fn b64(data: &[u8]) -> String {
    STANDARD.encode(data)
}

fn encrypt(broker: &Broker, key: &str, plaintext: &[u8]) -> (u16, Value) {
    broker.request(
        "POST",
        &format!("transit/encrypt/{key}"),
        Some(&json!({ "plaintext": b64(plaintext) })),
    )
}

fn decrypt(broker: &Broker, key: &str, ciphertext: &str) -> (u16, Value) {
    broker.request(
        "POST",
        &format!("transit/decrypt/{key}"),
        Some(&json!({ "ciphertext": ciphertext })),
    )
}

/// Reloads the broker's drop-ins (a changed drop-in makes a new instance, with an empty
/// cache; key references need nothing else, so it serves the same keys).
pub(crate) fn reload(broker: &Broker) {
    let (status, body) = broker.request("POST", "sys/plugins/reload", None);
    assert_eq!(status, 200, "{body}");
}

/// Sends `request` until it answers 200, for up to [`PATIENCE`], while it answers 503 (an
/// instance with short timeouts may, on a loaded machine, and after a fault until the
/// backend answers again); returns the 200's body. Any other answer fails the test.
pub(crate) fn until_served(
    broker: &Broker,
    what: &str,
    mut request: impl FnMut() -> (u16, Value),
) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, body) = request();
        match status {
            200 => return body,
            503 if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => panic!("{what}: {status} {body}\n{}", broker.log()),
        }
    }
}

/// The plaintext of a decryption's answer.
fn plaintext(body: &Value) -> Vec<u8> {
    STANDARD
        .decode(body["data"]["plaintext"].as_str().unwrap())
        .unwrap()
}

#[test]
fn kms_keys_serve_envelope_direct_and_signing_and_only_broker_made_keys_are_deleted() {
    let kms = Kms::new();
    let broker = kms.dev_broker();
    kms.dropin("aws", Timeouts::Generous, "", "");
    reload(&broker);
    assert_eq!(broker.backend("aws")["status"], "available");

    // Envelope: one GenerateDataKey per version, then the DEK serves from cache.
    broker.bao_ok(&["write", "transit/keys/env", "backend=aws"]);
    assert_eq!(kms.proxy.forwarded("GenerateDataKey"), 1);
    // Creating the version unwrapped its data key once (the broker checks the wrap before
    // storing it) and cached it: using the key needs no KMS call.
    assert_eq!(kms.proxy.forwarded("Decrypt"), 1);
    for round in 0..5 {
        let plaintext = format!("envelope round {round}");
        let ciphertext = broker.encrypt("env", plaintext.as_bytes());
        assert_eq!(broker.decrypt("env", &ciphertext), plaintext.as_bytes());
    }
    assert_eq!(
        kms.proxy.forwarded("Decrypt"),
        1,
        "cached data keys need no KMS call"
    );
    // The key the broker made carries the tenant's id (the root namespace's is the nil
    // UUID) in its tags.
    let made = kms.keys_tagged_for("00000000-0000-0000-0000-000000000000");
    assert_eq!(made.len(), 1, "one KMS key for the transit key: {made:?}");

    // Direct: every request is a KMS Encrypt/Decrypt; over 4 KiB is a clear 400.
    broker.bao_ok(&["write", "transit/keys/dir", "backend=aws", "mode=direct"]);
    let encrypts_before = kms.proxy.forwarded("Encrypt");
    let ciphertext = broker.encrypt("dir", b"direct secret");
    assert_eq!(broker.decrypt("dir", &ciphertext), b"direct secret");
    assert_eq!(kms.proxy.forwarded("Encrypt"), encrypts_before + 1);
    let (status, body) = encrypt(&broker, "dir", &[7u8; 5000]);
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("4096"), "{body}");

    // Asymmetric KMS keys sign; the broker verifies through KMS.
    broker.bao_ok(&[
        "write",
        "transit/keys/signer",
        "backend=aws",
        "type=ecdsa-p256",
    ]);
    let (status, signed) = broker.request(
        "POST",
        "transit/sign/signer",
        Some(&json!({"input": b64(b"invoice 42")})),
    );
    assert_eq!(status, 200, "{signed}");
    let signature = signed["data"]["signature"].as_str().unwrap().to_owned();
    for (input, valid) in [(b"invoice 42".as_slice(), true), (b"invoice 43", false)] {
        let (status, body) = broker.request(
            "POST",
            "transit/verify/signer",
            Some(&json!({"input": b64(input), "signature": signature})),
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["valid"], valid, "{body}");
    }
    let (_, key) = broker.request("GET", "transit/keys/signer", None);
    assert!(
        key["data"]["keys"]["1"]["public_key"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----"),
        "{key}"
    );

    // P-521 signs in KMS with SHA-512 (KMS pairs each curve with its own hash); Ed25519 is
    // refused, naming the backend and the type.
    broker.bao_ok(&[
        "write",
        "transit/keys/p521",
        "backend=aws",
        "type=ecdsa-p521",
    ]);
    let (status, signed) = broker.request(
        "POST",
        "transit/sign/p521/sha2-512",
        Some(&json!({"input": b64(b"invoice 42")})),
    );
    assert_eq!(status, 200, "{signed}");
    let signature = signed["data"]["signature"].as_str().unwrap().to_owned();
    for (input, valid) in [(b"invoice 42".as_slice(), true), (b"invoice 43", false)] {
        let (status, body) = broker.request(
            "POST",
            "transit/verify/p521/sha2-512",
            Some(&json!({"input": b64(input), "signature": signature})),
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["valid"], valid, "{body}");
    }
    let (status, body) = broker.request(
        "POST",
        "transit/sign/p521",
        Some(&json!({"input": b64(b"invoice 42")})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("sha2-512"), "{body}");
    let (status, body) = broker.request(
        "POST",
        "transit/keys/ed",
        Some(&json!({"backend": "aws", "type": "ed25519"})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string()
            .contains("backend aws-kms cannot hold ed25519 keys"),
        "{body}"
    );

    // Deleting a transit key schedules deletion of the KMS key the broker made ...
    broker.bao_ok(&["write", "transit/keys/env/config", "deletion_allowed=true"]);
    broker.bao_ok(&["delete", "transit/keys/env"]);
    assert_eq!(kms.key_state(&made[0]), "PendingDeletion");
    // ... never of a bound one.
    let (bound_id, bound_arn) = kms.create_key("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT");
    broker.bao_ok(&[
        "write",
        "transit/keys/bound",
        "backend=aws",
        &format!("backend_key={bound_arn}"),
    ]);
    let ciphertext = broker.encrypt("bound", b"bound data");
    assert_eq!(broker.decrypt("bound", &ciphertext), b"bound data");
    // A trim deletes versions, never the bound KMS key that wraps the kept ones.
    broker.bao_ok(&["write", "-f", "transit/keys/bound/rotate"]);
    broker.bao_ok(&["write", "-f", "transit/keys/bound/rotate"]);
    broker.bao_ok(&[
        "write",
        "transit/keys/bound/config",
        "min_decryption_version=3",
        "min_encryption_version=3",
    ]);
    broker.bao_ok(&[
        "write",
        "transit/keys/bound/trim",
        "min_available_version=3",
    ]);
    assert_eq!(kms.key_state(&bound_id), "Enabled");
    let ciphertext = broker.encrypt("bound", b"bound data");
    assert!(ciphertext.starts_with("vault:v3:"), "{ciphertext}");
    assert_eq!(broker.decrypt("bound", &ciphertext), b"bound data");
    broker.bao_ok(&[
        "write",
        "transit/keys/bound/config",
        "deletion_allowed=true",
    ]);
    broker.bao_ok(&["delete", "transit/keys/bound"]);
    assert_eq!(kms.key_state(&bound_id), "Enabled");
}

#[test]
fn throttling_is_retried_by_the_sdk_within_the_deadline_or_answers_503_never_hangs() {
    let kms = Kms::new();
    kms.dropin("aws", Timeouts::Generous, "", "max_attempts = 3\n");
    let broker = kms.dev_broker();
    broker.bao_ok(&["write", "transit/keys/dir", "backend=aws", "mode=direct"]);

    // A short burst: the SDK's own retries absorb it.
    kms.proxy.throttle_next(2);
    let ciphertext = broker.encrypt("dir", b"after a burst");
    assert_eq!(kms.proxy.throttled("Encrypt"), 2);
    assert_eq!(broker.decrypt("dir", &ciphertext), b"after a burst");

    // Throttled for longer than any request: every request ends within its deadline, with
    // 503. Through an instance with short timeouts (the drop-in changed and reloaded), used
    // once before the fault (its first use checks the key's tags).
    kms.dropin("aws", Timeouts::Short, "", "max_attempts = 3\n");
    reload(&broker);
    until_served(&broker, "first use with short timeouts", || {
        encrypt(&broker, "dir", b"before the throttling")
    });
    kms.proxy.throttle_for(LONG_THROTTLE);
    for round in 0..4 {
        let started = Instant::now();
        let (status, body) = encrypt(&broker, "dir", format!("round {round}").as_bytes());
        let elapsed = started.elapsed();
        assert_eq!(status, 503, "throttled: {body}");
        assert!(
            body.to_string().contains("aws"),
            "the 503 names the instance: {body}"
        );
        assert!(
            elapsed < GAVE_UP_WITHIN,
            "answered after {elapsed:?}, as if the 2 s deadline did not hold"
        );
    }
    assert!(kms.proxy.throttled("Encrypt") > 2);
    kms.proxy.stop_throttling();
    until_served(&broker, "recovery after throttling", || {
        encrypt(&broker, "dir", b"x")
    });
}

#[test]
fn a_stopped_kms_leaves_cached_keys_serving_uncached_ones_503_and_recovers() {
    let kms = Kms::new();
    kms.dropin("aws", Timeouts::Generous, "", "");
    let state = private_dir();
    let config = format!(
        "state_dir = \"{{state}}\"\nplugin_dir = \"{}\"\n[listener]\naddress = \"127.0.0.1:{{port}}\"\n",
        kms.plugins.path().display()
    );
    let options = Options {
        config: Some(config),
        env: Kms::env(),
        state_dir: Some(state.path().to_owned()),
        ..Options::default()
    };
    let mut first = Broker::start(options.clone());
    for key in ["warm", "cold"] {
        first.bao_ok(&["write", &format!("transit/keys/{key}"), "backend=aws"]);
    }
    first.bao_ok(&["write", "transit/keys/dir", "backend=aws", "mode=direct"]);
    first.bao_ok(&["write", "-f", "transit/keys/local"]);
    let warm = first.encrypt("warm", b"warm data");
    let cold = first.encrypt("cold", b"cold data");
    let direct = first.encrypt("dir", b"direct data");
    let token = first.token.clone();
    first.kill9();

    // A restart empties the cache; decrypting `warm` fills it again (one KMS Decrypt).
    let mut broker = Broker::start(options);
    broker.token = token;
    let decrypts = kms.proxy.forwarded("Decrypt");
    assert_eq!(broker.decrypt("warm", &warm), b"warm data");
    assert_eq!(kms.proxy.forwarded("Decrypt"), decrypts + 1);
    let misses = sample(
        &metrics(&broker),
        "keybroker_dek_cache_misses_total",
        &[("instance", "aws")],
    );
    assert_eq!(misses, Some(1.0), "one miss, one fill");

    // KMS stopped: through an instance with short timeouts (the drop-in changed and
    // reloaded). It starts with an empty cache: `warm` is decrypted once more before the
    // fault, which caches its data key.
    kms.dropin("aws", Timeouts::Short, "", "");
    reload(&broker);
    let body = until_served(&broker, "warm with short timeouts", || {
        decrypt(&broker, "warm", &warm)
    });
    assert_eq!(plaintext(&body), b"warm data");
    kms.moto.pause();
    assert_eq!(broker.decrypt("warm", &warm), b"warm data");
    let rewrapped = broker.encrypt("warm", b"still served");
    for (key, ciphertext) in [("cold", &cold), ("dir", &direct)] {
        let started = Instant::now();
        let (status, body) = decrypt(&broker, key, ciphertext);
        assert_eq!(status, 503, "{key}: {body}");
        assert!(
            started.elapsed() < GAVE_UP_WITHIN,
            "{key}: answered after {:?}",
            started.elapsed()
        );
    }
    let ciphertext = broker.encrypt("local", b"local data");
    assert_eq!(broker.decrypt("local", &ciphertext), b"local data");

    kms.moto.resume();
    let body = until_served(&broker, "cold after KMS came back", || {
        decrypt(&broker, "cold", &cold)
    });
    assert_eq!(plaintext(&body), b"cold data");
    let body = until_served(&broker, "dir after KMS came back", || {
        decrypt(&broker, "dir", &direct)
    });
    assert_eq!(plaintext(&body), b"direct data");
    assert_eq!(broker.decrypt("warm", &rewrapped), b"still served");
    assert!(backend_calls(&broker, "aws", "decrypt") >= 2.0);
}

#[test]
fn disabled_pending_deletion_and_denied_kms_keys_get_clear_4xx() {
    let kms = Kms::new();
    kms.dropin("aws", Timeouts::Generous, "", "");
    let broker = kms.dev_broker();
    let (key_id, arn) = kms.create_key("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT");
    broker.bao_ok(&[
        "write",
        "transit/keys/bound",
        "backend=aws",
        "mode=direct",
        &format!("backend_key={arn}"),
    ]);
    let ciphertext = broker.encrypt("bound", b"data");

    for (fault, status_wanted, words) in [
        ("disabled", 400, "disabled"),
        ("pending deletion", 400, "pending deletion"),
        ("denied", 403, "denied"),
    ] {
        match fault {
            "disabled" => kms.proxy.disable_key(&key_id),
            "pending deletion" => kms.proxy.schedule_key_deletion(&key_id),
            _ => kms.proxy.deny_access(&key_id),
        }
        for (what, (status, body)) in [
            ("encrypt", encrypt(&broker, "bound", b"more")),
            ("decrypt", decrypt(&broker, "bound", &ciphertext)),
        ] {
            assert_eq!(status, status_wanted, "{fault} key, {what}: {body}");
            assert!(
                body.to_string().to_lowercase().contains(words),
                "{fault} key, {what}: {body}"
            );
        }
        kms.proxy.clear_key_fault(&key_id);
    }
    assert_eq!(broker.decrypt("bound", &ciphertext), b"data");
}

#[test]
fn tenants_bind_kms_keys_only_within_their_grants_and_bad_credentials_are_reported() {
    let kms = Kms::new();
    kms.dropin(
        "aws",
        Timeouts::Generous,
        "[bind]\nacme = [\"alias/acme-*\"]\n",
        "",
    );
    let (acme_key, _) = kms.create_key("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT");
    kms.alias("alias/acme-orders", &acme_key);
    let (globex_key, globex_arn) = kms.create_key("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT");
    kms.alias("alias/globex-orders", &globex_key);
    let broker = kms.dev_broker();
    for tenant in ["acme", "globex"] {
        broker.bao_ok(&["namespace", "create", tenant]);
        broker.bao_ok(&["secrets", "enable", &ns(tenant), "transit"]);
    }
    let acme = tenant_token(&broker, "acme");
    let as_acme = |path: &str, body: &Value| post_as(&broker, &acme, "acme", path, body);
    let (status, body) = as_acme(
        "transit/keys/orders",
        &json!({"backend": "aws", "backend_key": "alias/acme-orders"}),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = as_acme(
        "transit/encrypt/orders",
        &json!({"plaintext": b64(b"acme order")}),
    );
    assert_eq!(status, 200, "{body}");
    // Another tenant's key made by the broker, or any key outside the grants: refused.
    broker.bao_ok(&["write", &ns("globex"), "transit/keys/own", "backend=aws"]);
    let globex_made = kms.keys_tagged_for("");
    assert!(!globex_made.is_empty());
    for backend_key in [
        "alias/globex-orders".to_owned(),
        globex_arn,
        acme_key.clone(),
        globex_made[0].clone(),
    ] {
        let (status, body) = as_acme(
            "transit/keys/refused",
            &json!({"backend": "aws", "backend_key": backend_key}),
        );
        assert_eq!(status, 403, "{backend_key}: {body}");
        // Nothing about the other tenant beyond what the request itself named.
        assert!(
            backend_key.contains("globex") || !body.to_string().contains("globex"),
            "{body}"
        );
    }

    // Credentials AWS does not recognise: the instance is unavailable with AWS's reason,
    // and the secret is nowhere in what the broker shows or logs.
    broker.bao_ok(&["write", "transit/keys/ops", "backend=aws", "mode=direct"]);
    kms.proxy.reject_access_key("AKIAKEYBROKERE2E");
    assert!(
        eventually(PATIENCE, || broker.backend("aws")["status"]
            == "unavailable"),
        "{}",
        broker.backend("aws")
    );
    let (status, body) = encrypt(&broker, "ops", b"x");
    assert_eq!(status, 503, "{body}");
    let shown = format!("{status} {body} {} {}", broker.backend("aws"), broker.log());
    assert!(
        shown.contains("rejected this instance's credentials"),
        "the reason: {shown}"
    );
    assert!(!shown.contains("keybroker-e2e-secret"), "{shown}");
    drop(broker);

    // Credentials named in the drop-in but absent from the environment: that instance is
    // unavailable with the reason; the rest of the broker serves.
    let plugins = PluginDir::new();
    let library = plugins.add_library("aws_kms", "libkeybroker_plugin_aws_kms.so");
    plugins.write_instance(
        "aws",
        &library,
        "[\"*\"]",
        "",
        &format!(
            "region = \"us-east-1\"\nendpoint = \"{}\"\n[config.credentials]\n\
             access_key_id_env = \"KB_TEST_UNSET_ACCESS_KEY\"\n\
             secret_access_key_env = \"KB_TEST_UNSET_SECRET_KEY\"\n",
            kms.proxy.endpoint()
        ),
    );
    let broker = Broker::start(Options {
        plugin_dir: Some(plugins.path().to_owned()),
        ..Options::default()
    });
    let backend = broker.backend("aws");
    assert_eq!(backend["status"], "unavailable", "{backend}");
    assert!(
        backend.to_string().contains("KB_TEST_UNSET_ACCESS_KEY"),
        "{backend}"
    );
    broker.bao_ok(&["write", "-f", "transit/keys/local"]);
}
