//! Auto-unseal: `[seal] type = "backend"` keeps the root key wrapped by a backend instance.
//! A broker whose seal backend cannot unwrap it runs sealed (`sys/health` 503,
//! `sys/seal-status` says why) and unseals by itself once the backend answers. Each kind is
//! tested with its real backend: AWS KMS (moto, stopped with SIGSTOP), an HSM (SoftHSM2,
//! its token directory moved away) and Azure Key Vault (the fake, in an outage).

use serde_json::Value;

use crate::{
    aws::{Kms, Timeouts, PATIENCE},
    hsm::Hsm,
    support::{eventually, private_dir, Broker, Options},
};

/// A config-mode broker (state kept across restarts) sealed by instance `instance` of
/// `plugin_dir`; `seal_extra` adds lines to `[seal]`.
fn sealed_options(
    plugin_dir: &std::path::Path,
    instance: &str,
    seal_extra: &str,
    env: Vec<(String, String)>,
    state: &std::path::Path,
) -> Options {
    Options {
        config: Some(format!(
            "state_dir = \"{{state}}\"\nplugin_dir = \"{}\"\n\
             [listener]\naddress = \"127.0.0.1:{{port}}\"\n\
             [seal]\ntype = \"backend\"\ninstance = \"{instance}\"\nretry_interval = \"1s\"\n{seal_extra}",
            plugin_dir.display()
        )),
        env,
        state_dir: Some(state.to_owned()),
        ..Options::default()
    }
}

fn health(broker: &Broker) -> (u16, Value) {
    broker.request("GET", "sys/health", None)
}

fn seal_status(broker: &Broker) -> Value {
    let (status, body) = broker.request("GET", "sys/seal-status", None);
    assert_eq!(status, 200, "{body}");
    body
}

/// Asserts the broker is sealed because of instance `instance`, and refuses requests.
fn assert_sealed_by(broker: &Broker, instance: &str) {
    let (status, body) = health(broker);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["sealed"], true, "{body}");
    let seal = seal_status(broker);
    assert_eq!(seal["sealed"], true, "{seal}");
    assert_eq!(seal["type"], "backend", "{seal}");
    let reason = seal["sealed_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!("\"{instance}\"")),
        "the reason names the seal's instance: {seal}"
    );
    let (status, body) = broker.request("GET", "transit/keys", None);
    assert_eq!(status, 503, "{body}");
}

/// Waits until the broker has unsealed by itself (a backend that answers again may first
/// catch up on what it was sent meanwhile).
fn assert_unseals(broker: &Broker) {
    assert!(
        eventually(PATIENCE, || health(broker).0 == 200),
        "did not unseal: {}\n{}",
        seal_status(broker),
        broker.log()
    );
    assert_eq!(seal_status(broker)["sealed"], false);
}

/// The root token a broker printed when it initialised its store, once it has.
fn root_token_once_initialised(broker: &Broker) -> String {
    let mut token = None;
    assert!(
        eventually(PATIENCE, || {
            token = broker.printed_root_token();
            token.is_some()
        }),
        "no root token printed: {}",
        broker.log()
    );
    token.unwrap()
}

#[test]
fn a_kms_seal_keeps_the_broker_sealed_while_kms_is_down_and_unseals_by_itself() {
    let kms = Kms::new();
    let state = private_dir();
    let options = sealed_options(kms.plugins.path(), "aws", "", Kms::env(), state.path());
    // While KMS is stopped, the seal's calls time out, at the short deadlines (the broker
    // tries before it answers, and again every second). Before KMS comes back, the drop-in
    // gets generous ones, which the next attempt reads: from then on, nothing races moto.
    let stopped = |kms: &Kms| {
        kms.dropin("aws", Timeouts::Short, "", "");
        kms.moto.pause();
    };
    let resumed = |kms: &Kms| {
        kms.dropin("aws", Timeouts::Generous, "", "");
        kms.moto.resume();
    };

    // First start, KMS hung: no root key can be made; sealed, then unsealed when KMS
    // answers, initialising the store then.
    stopped(&kms);
    let mut broker = Broker::start(options.clone());
    assert_sealed_by(&broker, "aws");
    assert!(broker.printed_root_token().is_none());
    resumed(&kms);
    assert_unseals(&broker);
    broker.token = root_token_once_initialised(&broker);
    broker.bao_ok(&["write", "-f", "transit/keys/local"]);
    broker.bao_ok(&["write", "transit/keys/kms", "backend=aws"]);
    let local = broker.encrypt("local", b"local data");
    let in_kms = broker.encrypt("kms", b"kms data");
    // The root key's wrapping key is a KMS key the broker made, for the root namespace
    // (with transit key `kms`'s, and possibly some whose CreateKey moto carried out after
    // resuming, when the broker had given up on them).
    let root_keys = kms.keys_tagged_for("00000000-0000-0000-0000-000000000000");
    assert!(
        root_keys.len() >= 2,
        "the seal's key and transit key kms: {root_keys:?}"
    );
    let token = broker.token.clone();
    broker.kill9();

    // Restarted with KMS down: sealed; KMS back: unsealed, everything decrypts.
    stopped(&kms);
    let mut broker = Broker::start(options.clone());
    broker.token = token.clone();
    assert_sealed_by(&broker, "aws");
    resumed(&kms);
    assert_unseals(&broker);
    assert_eq!(broker.decrypt("local", &local), b"local data");
    assert_eq!(broker.decrypt("kms", &in_kms), b"kms data");
    broker.kill9();

    // Denied access to the seal's key is a reason too, and so is its end.
    for key in &root_keys {
        kms.proxy.deny_access(key);
    }
    let mut broker = Broker::start(options);
    broker.token = token;
    assert_sealed_by(&broker, "aws");
    let reason = seal_status(&broker)["sealed_reason"].to_string();
    assert!(reason.contains("denied"), "{reason}");
    for key in &root_keys {
        kms.proxy.clear_key_fault(key);
    }
    assert_unseals(&broker);
    assert_eq!(broker.decrypt("local", &local), b"local data");
}

#[test]
fn an_hsm_seal_with_a_bound_key_unseals_when_the_token_comes_back() {
    let hsm = Hsm::new();
    hsm.softhsm
        .create_aes_key(&hsm.token, "keybroker-seal", "5e01");
    hsm.standard_dropin("");
    let (name, value) = hsm.softhsm.env();
    let env = vec![(name.to_owned(), value.display().to_string())];
    let state = private_dir();
    let options = sealed_options(
        hsm.plugins.path(),
        "hsm",
        "key = \"label:keybroker-seal\"\n",
        env,
        state.path(),
    );

    // The token is gone at first start: sealed; back: unsealed and initialised.
    hsm.softhsm.hide_tokens();
    let mut broker = Broker::start(options.clone());
    assert_sealed_by(&broker, "hsm");
    hsm.softhsm.restore_tokens();
    assert_unseals(&broker);
    broker.token = root_token_once_initialised(&broker);
    broker.bao_ok(&["write", "-f", "transit/keys/data"]);
    let ciphertext = broker.encrypt("data", b"sealed by the HSM");
    // The bound key wrapped the root key; the broker made no object of its own for it.
    let labels: Vec<String> = hsm
        .softhsm
        .objects(&hsm.token)
        .into_iter()
        .filter_map(|o| o.label)
        .collect();
    assert_eq!(labels, vec!["keybroker-seal".to_owned()], "{labels:?}");
    let token = broker.token.clone();
    broker.kill9();

    // A restart with the token present unseals at once.
    let mut broker = Broker::start(options.clone());
    broker.token = token.clone();
    assert_eq!(health(&broker).0, 200, "{}", broker.log());
    assert_eq!(broker.decrypt("data", &ciphertext), b"sealed by the HSM");
    broker.kill9();

    // And one with the token gone waits for it.
    hsm.softhsm.hide_tokens();
    let mut broker = Broker::start(options);
    broker.token = token;
    assert_sealed_by(&broker, "hsm");
    hsm.softhsm.restore_tokens();
    assert_unseals(&broker);
    assert_eq!(broker.decrypt("data", &ciphertext), b"sealed by the HSM");
}

#[test]
fn a_seal_naming_a_missing_or_built_in_instance_is_refused_or_sealed_with_the_reason() {
    // No plugin_dir: the configuration is refused at start-up.
    let state = private_dir();
    let config = state.path().join("kb.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\n[seal]\ntype = \"backend\"\ninstance = \"aws\"\n",
            state.path().display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(crate::support::keybroker_bin())
        .args(["server", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("plugin_dir"), "{stderr}");

    // A drop-in directory without that instance: sealed, saying so.
    let plugins = crate::support::PluginDir::new();
    let state = private_dir();
    let broker = Broker::start(sealed_options(
        plugins.path(),
        "aws",
        "",
        Vec::new(),
        state.path(),
    ));
    assert_sealed_by(&broker, "aws");
    let reason = seal_status(&broker)["sealed_reason"].to_string();
    assert!(reason.contains("no drop-in"), "{reason}");
    // SIGHUP (reload plugins) while sealed: logged, and the broker keeps running.
    broker.sighup();
    assert!(
        eventually(PATIENCE, || broker
            .log()
            .contains("the broker is sealed; no plugins to reload")),
        "{}",
        broker.log()
    );
    assert_sealed_by(&broker, "aws");
}

#[test]
fn a_key_vault_seal_waits_out_an_outage_at_start() {
    let vault = crate::azure::Vault::new();
    // Generous timeouts throughout: an outage answers 503 at once, so it seals the broker
    // without waiting for any deadline.
    vault.dropin("azure", Timeouts::Generous, "", crate::azure::SECRET);
    let state = private_dir();
    let options = sealed_options(vault.plugins.path(), "azure", "", Vec::new(), state.path());

    vault.fake.set_outage(true);
    let mut broker = Broker::start(options.clone());
    assert_sealed_by(&broker, "azure");
    vault.fake.set_outage(false);
    assert_unseals(&broker);
    broker.token = root_token_once_initialised(&broker);
    broker.bao_ok(&["write", "-f", "transit/keys/data"]);
    let ciphertext = broker.encrypt("data", b"sealed by Key Vault");
    let token = broker.token.clone();
    broker.kill9();

    // Restarted: the root key is unwrapped by Key Vault (one unwrapKey) at once.
    let unwraps = vault
        .fake
        .request_count(keybroker_azure_fake::Operation::UnwrapKey);
    let mut broker = Broker::start(options);
    broker.token = token;
    assert_eq!(health(&broker).0, 200, "{}", broker.log());
    assert_eq!(broker.decrypt("data", &ciphertext), b"sealed by Key Vault");
    assert_eq!(
        vault
            .fake
            .request_count(keybroker_azure_fake::Operation::UnwrapKey),
        unwraps + 1
    );
}
