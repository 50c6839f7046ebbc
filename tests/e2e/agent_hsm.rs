//! A customer key held in the customer's HSM: the real `keybroker-agent` binary binds an
//! AES-256 key of a real SoftHSM2 token (its own token store, handed to the agent process
//! through `SOFTHSM2_CONF`) and serves it to a real broker through the remote-agent gateway
//! (`.so` from a drop-in). The token vanishing is a clear 503, never a crash; its return
//! restores service by itself.

use std::time::Duration;

use keybroker_softhsm_harness::{unique_label, SoftHsm};

use crate::agent::{
    agents, create_key, decrypt_ok, encrypt, encrypt_ok, wait_agents, Agent, Setup,
};
use crate::support::{eventually, Broker};

const PIN: &str = "agent-hsm-pin-5678";

/// A SoftHSM store with one token holding the customer's AES-256 key `acme-kek`.
struct CustomerHsm {
    softhsm: SoftHsm,
    token: String,
    pin_file: std::path::PathBuf,
}

impl CustomerHsm {
    fn new() -> Self {
        let softhsm = SoftHsm::new();
        let token = unique_label("kb-agent");
        let pin_file = softhsm.add_token(&token, PIN);
        softhsm.create_aes_key(&token, "acme-kek", "a1b2c3");
        Self {
            softhsm,
            token,
            pin_file,
        }
    }

    /// The agent `acme-dc1` with its key `data` in this HSM, allowed to tenant `acme`.
    fn agent(&self, setup: &Setup) -> Agent {
        let module = self.softhsm.module_path().to_str().unwrap().to_owned();
        let sha256 = self.softhsm.module_sha256();
        let pin_file = self.pin_file.to_str().unwrap().to_owned();
        let (conf_variable, conf) = self.softhsm.env();
        setup.agent_with(
            "acme-dc1",
            &[
                "--key-hsm",
                "data=label:acme-kek",
                "--allow",
                "acme=data",
                "--hsm-module",
                &module,
                "--hsm-module-sha256",
                &sha256,
                "--hsm-token",
                &self.token,
                "--hsm-pin-file",
                &pin_file,
            ],
            &[(conf_variable, conf.as_path())],
        )
    }
}

/// Encrypts under `key` until it answers 200 or `limit` passes; returns the last answer.
fn encrypt_until_ok(broker: &Broker, key: &str, limit: Duration) -> (u16, serde_json::Value) {
    let mut last = (0, serde_json::Value::Null);
    eventually(limit, || {
        last = encrypt(broker, "acme", key, b"probe");
        last.0 == 200
    });
    last
}

#[test]
fn an_agent_serves_a_key_held_in_the_customers_hsm() {
    let hsm = CustomerHsm::new();
    let setup = Setup::new(&[("acme-dc1", &["acme"])]);
    let broker = setup.broker();
    let mut agent = hsm.agent(&setup);
    wait_agents(&broker, &["acme-dc1"], &|| agent.log());
    assert!(
        agent.log().contains(&hsm.token),
        "the agent reports the token it opened\n{}",
        agent.log()
    );

    // Envelope and direct keys backed by the HSM key round-trip.
    create_key(&broker, "acme", "data", false);
    create_key(&broker, "acme", "direct", true);
    let mut ciphertexts = Vec::new();
    for key in ["data", "direct"] {
        let secret = format!("customer record via {key}");
        let ciphertext = encrypt_ok(&broker, "acme", key, secret.as_bytes());
        decrypt_ok(&broker, "acme", key, &ciphertext, secret.as_bytes());
        ciphertexts.push((key, ciphertext, secret));
    }
    let log = agent.log();
    assert!(log.contains("operation served"), "{log}");
    assert!(!log.contains("customer record"), "{log}");
    assert!(!log.contains(PIN), "{log}");

    // The token vanishes: direct encryption (which needs the HSM every time) gets a clear
    // 503; the agent stays up and connected.
    hsm.softhsm.hide_token(&hsm.token);
    let (status, body) = encrypt(&broker, "acme", "direct", b"while the HSM is away");
    assert_eq!(status, 503, "{body}\n{}", agent.log());
    let text = body.to_string();
    assert!(
        text.contains("unavailable") || text.contains("Unavailable"),
        "{text}"
    );
    assert!(!text.contains(PIN), "{text}");
    assert!(
        matches!(agent.child.try_wait(), Ok(None)),
        "the agent exited\n{}",
        agent.log()
    );
    // The agent logs the failure it answered above: its process's work on a loaded machine
    // (it was 5 s).
    assert!(
        eventually(Duration::from_secs(15), || agent
            .log()
            .contains("DependencyTimeoutException")),
        "{}",
        agent.log()
    );
    assert!(!agent.log().contains("panicked"), "{}", agent.log());

    // The token returns: service resumes by itself, and what was encrypted before decrypts.
    hsm.softhsm.restore_token(&hsm.token);
    let (status, body) = encrypt_until_ok(&broker, "direct", Duration::from_secs(20));
    assert_eq!(status, 200, "{body}\n{}", agent.log());
    wait_agents(&broker, &["acme-dc1"], &|| agent.log());
    for (key, ciphertext, secret) in &ciphertexts {
        let (status, body) = encrypt_until_ok(&broker, key, Duration::from_secs(20));
        assert_eq!(status, 200, "{body}\n{}", agent.log());
        decrypt_ok(&broker, "acme", key, ciphertext, secret.as_bytes());
    }
    assert_eq!(agents(&broker).len(), 1);
    assert!(!agent.log().contains(PIN));
    agent.kill9();
}
