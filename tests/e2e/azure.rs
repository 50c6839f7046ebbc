//! Keys in Azure Key Vault: the azure-keyvault plugin loaded as a `.so` from a drop-in,
//! talking HTTPS (trusting the fake's test CA) to the in-repo fake of Key Vault and of the
//! Entra ID token endpoint (`tests/azure-fake`, itself checked by the official Python SDK),
//! driven with `bao` and `curl`.

use std::{
    os::unix::fs::PermissionsExt as _,
    path::PathBuf,
    time::{Duration, Instant},
};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use keybroker_azure_fake::{AzureFake, KeySpec, Operation};
use serde_json::{json, Value};

use crate::{
    aws::{reload, until_served, Timeouts, GAVE_UP_WITHIN, PATIENCE},
    support::{eventually, ns, post_as, private_dir, tenant_token, Broker, Options, PluginDir},
};

const TENANT: &str = "8f0c6c2e-1d4b-4a57-9c3e-2b7d5e9a1f60";
const CLIENT: &str = "keybroker-e2e";
pub(crate) const SECRET: &str = "e2e-client-secret-do-not-log";

/// The fake, a file with the client secret, and a drop-in directory with the plugin.
pub(crate) struct Vault {
    pub fake: AzureFake,
    pub plugins: PluginDir,
    library: PathBuf,
    secret_dir: tempfile::TempDir,
}

impl Vault {
    pub(crate) fn new() -> Self {
        let fake = AzureFake::start(TENANT, CLIENT, SECRET);
        let plugins = PluginDir::new();
        let library =
            plugins.add_library("azure_keyvault", "libkeybroker_plugin_azure_keyvault.so");
        let secret_dir = private_dir();
        Self {
            fake,
            plugins,
            library,
            secret_dir,
        }
    }

    /// Writes the drop-in of instance `name` with client secret `secret` and `timeouts`;
    /// `host_extra` adds host settings (before `[config]`).
    pub(crate) fn dropin(&self, name: &str, timeouts: Timeouts, host_extra: &str, secret: &str) {
        let secret_file = self.secret_dir.path().join(format!("{name}.secret"));
        std::fs::write(&secret_file, secret).unwrap();
        std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        // The fake listens on 127.0.0.1, not on *.vault.azure.net: the SDK's check that
        // the bearer challenge names a vault resource is turned off for it.
        let config = format!(
            "vault_url = \"{}\"\ntenant_id = \"{TENANT}\"\nclient_id = \"{CLIENT}\"\n\
             client_secret_file = \"{}\"\nauthority_host = \"{}\"\nca_file = \"{}\"\n\
             verify_challenge_resource = false\noperation_timeout_ms = {}\n\
             create_timeout_ms = {}\n",
            self.fake.vault_url(),
            secret_file.display(),
            self.fake.authority_host(),
            self.fake.ca_pem_path().display(),
            timeouts.plugin_ms(),
            // Short timeouts are for faults, not for making keys: creation stays generous.
            Timeouts::Generous.plugin_ms(),
        );
        self.plugins.write_instance(
            name,
            &self.library,
            "[\"*\"]",
            &format!("{}{host_extra}", timeouts.host()),
            &config,
        );
    }

    fn dev_broker(&self) -> Broker {
        Broker::start(Options {
            plugin_dir: Some(self.plugins.path().to_owned()),
            ..Options::default()
        })
    }

    /// A config-mode broker, which can restart on its state.
    fn config_broker(&self) -> Broker {
        Broker::start(Options {
            config: Some(format!(
                "state_dir = \"{{state}}\"\nplugin_dir = \"{}\"\n[listener]\naddress = \"127.0.0.1:{{port}}\"\n",
                self.plugins.path().display()
            )),
            ..Options::default()
        })
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

#[test]
fn key_vault_keys_wrap_data_keys_sign_bind_within_grants_and_are_deleted_only_when_made() {
    let vault = Vault::new();
    vault.dropin(
        "azure",
        Timeouts::Generous,
        "[bind]\nacme = [\"acme-*\"]\n",
        SECRET,
    );
    vault
        .fake
        .create_key("acme-orders", KeySpec::Rsa(3072))
        .unwrap();
    vault
        .fake
        .create_key("globex-orders", KeySpec::Rsa(3072))
        .unwrap();
    let broker = vault.dev_broker();
    assert_eq!(broker.backend("azure")["status"], "available");

    // Envelope: the data key is wrapped in Key Vault once, unwrapped once, then cached.
    broker.bao_ok(&["write", "transit/keys/env", "backend=azure"]);
    let ciphertext = broker.encrypt("env", b"first");
    assert_eq!(broker.decrypt("env", &ciphertext), b"first");
    let (wraps, unwraps) = (
        vault.fake.request_count(Operation::WrapKey),
        vault.fake.request_count(Operation::UnwrapKey),
    );
    assert!(wraps >= 1);
    for round in 0..5 {
        let plaintext = format!("round {round}");
        let ciphertext = broker.encrypt("env", plaintext.as_bytes());
        assert_eq!(broker.decrypt("env", &ciphertext), plaintext.as_bytes());
    }
    assert_eq!(vault.fake.request_count(Operation::WrapKey), wraps);
    assert_eq!(vault.fake.request_count(Operation::UnwrapKey), unwraps);

    // No direct mode on Key Vault: a clear refusal.
    let (status, body) = broker.request(
        "POST",
        "transit/keys/dir",
        Some(&json!({"backend": "azure", "mode": "direct"})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("direct"), "{body}");

    // Signing keys in Key Vault, verified by the broker.
    for key_type in ["ecdsa-p256", "rsa-2048"] {
        let name = format!("signer-{key_type}");
        broker.bao_ok(&[
            "write",
            &format!("transit/keys/{name}"),
            "backend=azure",
            &format!("type={key_type}"),
        ]);
        let (status, signed) = broker.request(
            "POST",
            &format!("transit/sign/{name}"),
            Some(&json!({"input": b64(b"invoice 42")})),
        );
        assert_eq!(status, 200, "{signed}");
        let signature = signed["data"]["signature"].as_str().unwrap().to_owned();
        for (input, valid) in [(b"invoice 42".as_slice(), true), (b"invoice 43", false)] {
            let (status, body) = broker.request(
                "POST",
                &format!("transit/verify/{name}"),
                Some(&json!({"input": b64(input), "signature": signature})),
            );
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["data"]["valid"], valid, "{key_type}: {body}");
        }
    }

    // P-521 signs in Key Vault with ES512 (SHA-512); Ed25519 is refused, naming the backend
    // and the type: Key Vault has no Ed25519 keys.
    broker.bao_ok(&[
        "write",
        "transit/keys/p521",
        "backend=azure",
        "type=ecdsa-p521",
    ]);
    let (_, key) = broker.request("GET", "transit/keys/p521", None);
    assert_eq!(key["data"]["keys"]["1"]["name"], "P-521", "{key}");
    let (status, signed) = broker.request(
        "POST",
        "transit/sign/p521",
        Some(&json!({"input": b64(b"invoice 42"), "hash_algorithm": "sha2-512"})),
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
        assert_eq!(body["data"]["valid"], valid, "ecdsa-p521: {body}");
    }
    let (status, body) = broker.request(
        "POST",
        "transit/keys/ed",
        Some(&json!({"backend": "azure", "type": "ed25519"})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string()
            .contains("backend azure-keyvault cannot hold ed25519 keys"),
        "{body}"
    );

    // Tenants bind what the drop-in grants them, nothing else.
    broker.bao_ok(&["namespace", "create", "acme"]);
    broker.bao_ok(&["secrets", "enable", &ns("acme"), "transit"]);
    let acme = tenant_token(&broker, "acme");
    let as_acme = |path: &str, body: &Value| post_as(&broker, &acme, "acme", path, body);
    let (status, body) = as_acme(
        "transit/keys/orders",
        &json!({"backend": "azure", "backend_key": "acme-orders"}),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = as_acme(
        "transit/encrypt/orders",
        &json!({"plaintext": b64(b"acme order")}),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = as_acme(
        "transit/keys/refused",
        &json!({"backend": "azure", "backend_key": "globex-orders"}),
    );
    assert_eq!(status, 403, "{body}");

    // Deleting: a key the broker made is deleted in Key Vault, a bound one never.
    let deletes = vault.fake.request_count(Operation::Delete);
    broker.bao_ok(&["write", "transit/keys/env/config", "deletion_allowed=true"]);
    broker.bao_ok(&["delete", "transit/keys/env"]);
    assert_eq!(vault.fake.request_count(Operation::Delete), deletes + 1);
    as_acme(
        "transit/keys/orders/config",
        &json!({"deletion_allowed": true}),
    );
    let (status, body) = broker.request_with(
        "DELETE",
        "transit/keys/orders",
        None,
        &[("X-Vault-Token", &acme), ("X-Vault-Namespace", "acme")],
    );
    assert_eq!(status, 204, "{body}");
    assert_eq!(vault.fake.request_count(Operation::Delete), deletes + 1);
}

#[test]
fn a_key_vault_outage_throttling_disabled_keys_and_a_wrong_secret_get_clear_answers() {
    let vault = Vault::new();
    vault.dropin("azure", Timeouts::Generous, "", SECRET);
    vault
        .fake
        .create_key("ops-wrap", KeySpec::Rsa(3072))
        .unwrap();
    let mut broker = vault.config_broker();
    broker.bao_ok(&["write", "transit/keys/warm", "backend=azure"]);
    broker.bao_ok(&["write", "transit/keys/cold", "backend=azure"]);
    broker.bao_ok(&["write", "-f", "transit/keys/local"]);
    // Data keys are cached from creation: a restart leaves them all uncached, then one use
    // of `warm` unwraps (and caches) its data key. The restarted broker has short timeouts
    // for the outage (key references need nothing else): `warm` is used until served.
    vault.dropin("azure", Timeouts::Short, "", SECRET);
    broker.restart();
    let body = until_served(&broker, "warm with short timeouts", || {
        encrypt(&broker, "warm", b"warm data")
    });
    let warm = body["data"]["ciphertext"].as_str().unwrap().to_owned();
    assert_eq!(broker.decrypt("warm", &warm), b"warm data");

    // Outage: the cached data key serves; the uncached one is 503 within the deadline;
    // other backends are untouched; recovery without a restart.
    vault.fake.set_outage(true);
    assert_eq!(broker.decrypt("warm", &warm), b"warm data");
    let started = Instant::now();
    let (status, body) = encrypt(&broker, "cold", b"needs Key Vault");
    assert_eq!(status, 503, "{body}");
    assert!(
        started.elapsed() < GAVE_UP_WITHIN,
        "answered after {:?}",
        started.elapsed()
    );
    let local = broker.encrypt("local", b"local data");
    assert_eq!(broker.decrypt("local", &local), b"local data");
    vault.fake.set_outage(false);
    until_served(&broker, "recovery after the outage", || {
        encrypt(&broker, "cold", b"x")
    });

    // Back to generous timeouts: nothing below is meant to time out.
    vault.dropin("azure", Timeouts::Generous, "", SECRET);
    reload(&broker);

    // Throttling (429 with Retry-After) is retried by the SDK within the deadline.
    vault.fake.throttle(1, Duration::from_millis(200));
    broker.bao_ok(&["write", "-f", "transit/keys/cold/rotate"]);

    // A disabled key: a clear 400 naming the state.
    broker.bao_ok(&[
        "write",
        "transit/keys/bound",
        "backend=azure",
        "backend_key=ops-wrap",
    ]);
    vault.fake.set_key_enabled("ops-wrap", false).unwrap();
    let (status, body) = broker.request("POST", "transit/keys/bound/rotate", None);
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("disabled"), "{body}");

    // A wrong client secret: that instance is unavailable with Entra ID's reason, and the
    // secret is nowhere in what the broker shows or logs.
    let wrong = Vault::new();
    wrong.dropin("azure", Timeouts::Generous, "", "not-the-secret-xyz");
    let broker = wrong.dev_broker();
    let (status, body) =
        broker.request("POST", "transit/keys/k", Some(&json!({"backend": "azure"})));
    assert_eq!(status, 503, "{body}");
    assert!(
        eventually(PATIENCE, || broker.backend("azure")["status"]
            == "unavailable"),
        "{}",
        broker.backend("azure")
    );
    let shown = format!("{body} {} {}", broker.backend("azure"), broker.log());
    assert!(!shown.contains("not-the-secret-xyz"), "{shown}");
    assert!(
        shown.contains("AADSTS"),
        "Entra ID's reason is shown: {shown}"
    );
}
