//! Keys that never leave an HSM: the PKCS#11 plugin loaded as a `.so` from a drop-in,
//! against a real SoftHSM2 token (its own token store per broker, handed to the broker
//! process through `SOFTHSM2_CONF`), driven with the unmodified `bao` CLI and `curl`.
//! Objects in the token are inspected with opensc's `pkcs11-tool`, outside the broker.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use keybroker_softhsm_harness::{unique_label, SoftHsm};
use serde_json::{json, Value};

use crate::{
    sign::{ed25519_key, ed25519_verifies, openssl_options, openssl_verifies},
    support::{eventually, ns, tenant_token, Broker, Options, PluginDir},
};

const PIN: &str = "hsm-user-pin-1234";

/// A SoftHSM store with one token, a drop-in directory, and a broker using both.
pub(crate) struct Hsm {
    pub softhsm: SoftHsm,
    pub token: String,
    pin_file: PathBuf,
    pub plugins: PluginDir,
    library: PathBuf,
}

impl Hsm {
    pub(crate) fn new() -> Self {
        let softhsm = SoftHsm::new();
        let token = unique_label("kb-e2e");
        let pin_file = softhsm.add_token(&token, PIN);
        let plugins = PluginDir::new();
        let library = plugins.add_library("pkcs11", "libkeybroker_plugin_pkcs11.so");
        Self {
            softhsm,
            token,
            pin_file,
            plugins,
            library,
        }
    }

    /// The `[config]` of an instance on this token; `extra` adds lines.
    fn config(&self, pin_file: &Path, module_sha256: &str, extra: &str) -> String {
        format!(
            "module = \"{}\"\nmodule_sha256 = \"{module_sha256}\"\ntoken_label = \"{}\"\n\
             pin_file = \"{}\"\nmax_payload = 4096\n{extra}",
            self.softhsm.module_path().display(),
            self.token,
            pin_file.display()
        )
    }

    /// Writes the drop-in of instance `name`.
    fn dropin(&self, name: &str, host_extra: &str, config: &str) {
        self.plugins
            .write_instance(name, &self.library, "[\"*\"]", host_extra, config);
    }

    /// The usual instance `hsm` on the token.
    pub(crate) fn standard_dropin(&self, host_extra: &str) {
        let config = self.config(&self.pin_file, &self.softhsm.module_sha256(), "");
        self.dropin("hsm", &format!("timeout = \"2s\"\n{host_extra}"), &config);
    }

    pub(crate) fn broker(&self) -> Broker {
        let (name, value) = self.softhsm.env();
        Broker::start(Options {
            plugin_dir: Some(self.plugins.path().to_owned()),
            env: vec![(name.to_owned(), value.display().to_string())],
            ..Options::default()
        })
    }

    /// Labels of the objects in the token.
    fn labels(&self) -> Vec<String> {
        self.softhsm
            .objects(&self.token)
            .into_iter()
            .filter_map(|o| o.label)
            .collect()
    }
}

fn b64(data: &[u8]) -> String {
    STANDARD.encode(data)
}

fn reload(broker: &Broker) {
    let (status, body) = broker.request("POST", "sys/plugins/reload", None);
    assert_eq!(status, 200, "{body}");
}

fn encrypt(broker: &Broker, key: &str, plaintext: &[u8]) -> (u16, Value) {
    broker.request(
        "POST",
        &format!("transit/encrypt/{key}"),
        Some(&json!({ "plaintext": b64(plaintext) })),
    )
}

#[test]
fn hsm_keys_encrypt_in_both_modes_sign_and_are_destroyed_with_their_key() {
    let hsm = Hsm::new();
    let broker = hsm.broker();
    // Dropped in while the broker runs, then reloaded.
    hsm.standard_dropin("");
    reload(&broker);
    let backend = broker.backend("hsm");
    assert_eq!(backend["status"], "available", "{backend}");

    broker.bao_ok(&["write", "transit/keys/env", "backend=hsm"]);
    broker.bao_ok(&["write", "transit/keys/dir", "backend=hsm", "mode=direct"]);
    for key in ["env", "dir"] {
        let secret = format!("secret for {key}").into_bytes();
        let ciphertext = broker.encrypt(key, &secret);
        assert_eq!(broker.decrypt(key, &ciphertext), secret);
        // Tampering is caught (by GCM in the broker or in the HSM).
        let mut bytes = STANDARD
            .decode(ciphertext.rsplit(':').next().unwrap())
            .unwrap();
        bytes[14] ^= 1;
        let (status, body) = broker.request(
            "POST",
            &format!("transit/decrypt/{key}"),
            Some(&json!({"ciphertext": format!("vault:v1:{}", b64(&bytes))})),
        );
        assert_eq!(status, 400, "{key}: {body}");
    }
    // Both keys live in the token as broker-made objects.
    let made: Vec<String> = hsm
        .labels()
        .into_iter()
        .filter(|l| l.starts_with("keybroker:"))
        .collect();
    assert_eq!(made.len(), 2, "{made:?}");

    // Direct mode: the HSM's max_payload is a clear 400.
    let (status, body) = encrypt(&broker, "dir", &vec![7u8; 5000]);
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("max_payload"), "{body}");

    // Asymmetric keys on the HSM sign; OpenSSL checks the signatures with the public keys.
    let dir = tempfile::tempdir().unwrap();
    let data = b"signed by the HSM";
    for key_type in ["ecdsa-p256", "ecdsa-p384", "rsa-2048"] {
        let name = format!("sig-{key_type}");
        broker.bao_ok(&[
            "write",
            &format!("transit/keys/{name}"),
            "backend=hsm",
            &format!("type={key_type}"),
        ]);
        let (_, key) = broker.request("GET", &format!("transit/keys/{name}"), None);
        let public_key = key["data"]["keys"]["1"]["public_key"].as_str().unwrap();
        for algorithm in ["pss", "pkcs1v15"] {
            let (status, signed) = broker.request(
                "POST",
                &format!("transit/sign/{name}"),
                Some(&json!({"input": b64(data), "signature_algorithm": algorithm})),
            );
            assert_eq!(status, 200, "{signed}");
            let signature = signed["data"]["signature"].as_str().unwrap();
            let raw = STANDARD
                .decode(signature.rsplit(':').next().unwrap())
                .unwrap();
            assert!(
                openssl_verifies(
                    dir.path(),
                    public_key,
                    data,
                    &raw,
                    &openssl_options(key_type, algorithm)
                ),
                "{key_type} {algorithm}"
            );
            let (_, verified) = broker.request(
                "POST",
                &format!("transit/verify/{name}"),
                Some(&json!({"input": b64(data), "signature": signature,
                             "signature_algorithm": algorithm})),
            );
            assert_eq!(verified["data"]["valid"], true, "{verified}");
        }
    }

    // Ed25519 (CKM_EDDSA over the input itself) and P-521 in the HSM: the key read shows
    // the raw Ed25519 key in base64 and P-521 as PEM; signatures verify independently.
    broker.bao_ok(&[
        "write",
        "transit/keys/sig-ed",
        "backend=hsm",
        "type=ed25519",
    ]);
    let (_, key) = broker.request("GET", "transit/keys/sig-ed", None);
    assert_eq!(key["data"]["keys"]["1"]["name"], "ed25519", "{key}");
    let public = ed25519_key(&key["data"]["keys"]["1"]["public_key"]);
    let (status, signed) = broker.request(
        "POST",
        "transit/sign/sig-ed",
        Some(&json!({"input": b64(data)})),
    );
    assert_eq!(status, 200, "{signed}");
    let signature = signed["data"]["signature"].as_str().unwrap();
    assert!(ed25519_verifies(&public, data, signature), "{signed}");
    for (input, valid) in [(data.as_slice(), true), (b"another", false)] {
        let (_, verified) = broker.request(
            "POST",
            "transit/verify/sig-ed",
            Some(&json!({"input": b64(input), "signature": signature})),
        );
        assert_eq!(verified["data"]["valid"], valid, "{verified}");
    }
    broker.bao_ok(&[
        "write",
        "transit/keys/sig-p521",
        "backend=hsm",
        "type=ecdsa-p521",
    ]);
    let (_, key) = broker.request("GET", "transit/keys/sig-p521", None);
    assert_eq!(key["data"]["keys"]["1"]["name"], "P-521", "{key}");
    let public_key = key["data"]["keys"]["1"]["public_key"].as_str().unwrap();
    let (status, signed) = broker.request(
        "POST",
        "transit/sign/sig-p521",
        Some(&json!({"input": b64(data)})),
    );
    assert_eq!(status, 200, "{signed}");
    let signature = signed["data"]["signature"].as_str().unwrap();
    let raw = STANDARD
        .decode(signature.rsplit(':').next().unwrap())
        .unwrap();
    assert!(
        openssl_verifies(dir.path(), public_key, data, &raw, &[]),
        "ecdsa-p521 in the HSM"
    );
    let (_, verified) = broker.request(
        "POST",
        "transit/verify/sig-p521",
        Some(&json!({"input": b64(data), "signature": signature})),
    );
    assert_eq!(verified["data"]["valid"], true, "{verified}");

    // Deleting a transit key destroys the objects the broker made for it, and only those.
    let before = hsm.labels();
    broker.bao_ok(&["write", "transit/keys/dir/config", "deletion_allowed=true"]);
    broker.bao_ok(&["delete", "transit/keys/dir"]);
    let after = hsm.labels();
    assert_eq!(after.len(), before.len() - 1, "{before:?} -> {after:?}");
    broker.bao_ok(&[
        "write",
        "transit/keys/sig-rsa-2048/config",
        "deletion_allowed=true",
    ]);
    broker.bao_ok(&["delete", "transit/keys/sig-rsa-2048"]);
    assert_eq!(
        hsm.labels().len(),
        after.len() - 2,
        "private and public key are destroyed"
    );
    // The envelope key still decrypts.
    let ciphertext = broker.encrypt("env", b"still here");
    assert_eq!(broker.decrypt("env", &ciphertext), b"still here");
}

/// A root-namespace token carrying only policy `name` (HCL `policy`).
fn root_namespace_token(broker: &Broker, name: &str, policy: &str) -> String {
    let (status, body) = broker.request(
        "POST",
        &format!("sys/policies/acl/{name}"),
        Some(&json!({ "policy": policy })),
    );
    assert_eq!(status, 204, "{body}");
    let (status, body) = broker.request(
        "POST",
        "auth/token/create",
        Some(&json!({ "policies": [name], "no_parent": true })),
    );
    assert_eq!(status, 200, "{body}");
    body["auth"]["client_token"].as_str().unwrap().to_owned()
}

/// A token of tenant `tenant` allowed to manage and use transit keys there.
#[test]
fn existing_hsm_keys_are_bound_by_operators_and_by_tenants_within_their_grants() {
    let hsm = Hsm::new();
    for (label, id) in [
        ("ops-master", "0a01"),
        ("acme-k1", "0a02"),
        ("globex-k1", "0a03"),
    ] {
        hsm.softhsm.create_aes_key(&hsm.token, label, id);
    }
    hsm.softhsm
        .create_ec_p256_key_pair(&hsm.token, "acme-sign", "0a04");
    hsm.softhsm
        .create_aes128_key(&hsm.token, "acme-short", "0a05");
    hsm.standard_dropin("[bind]\nacme = [\"label:acme-*\", \"label:keybroker:*\"]\n");
    let broker = hsm.broker();
    for tenant in ["acme", "globex"] {
        broker.bao_ok(&["namespace", "create", tenant]);
        broker.bao_ok(&["secrets", "enable", &ns(tenant), "transit"]);
    }

    // An operator (root namespace, sudo) binds any key.
    broker.bao_ok(&[
        "write",
        "transit/keys/ops",
        "backend=hsm",
        "backend_key=label:ops-master",
    ]);
    let ciphertext = broker.encrypt("ops", b"operator data");
    assert_eq!(broker.decrypt("ops", &ciphertext), b"operator data");
    let (_, key) = broker.request("GET", "transit/keys/ops", None);
    assert_eq!(key["data"]["bound"], true, "{key}");

    // Authority over the instance is what lets an operator bind: `sudo` on
    // `sys/plugins/backends/hsm`, not `sudo` on the tenant's transit path (which an operator
    // delegated to one tenant may hold).
    let delegated = root_namespace_token(
        &broker,
        "acme-operator",
        "path \"acme/*\" { capabilities = [\"create\", \"read\", \"update\", \"sudo\"] }\n",
    );
    let hsm_operator = root_namespace_token(
        &broker,
        "hsm-operator",
        "path \"acme/transit/keys/*\" { capabilities = [\"create\", \"update\"] }\n\
         path \"sys/plugins/backends/hsm\" { capabilities = [\"read\", \"sudo\"] }\n",
    );
    let bind_ops_master = |token: &str, name: &str| {
        broker.request_with(
            "POST",
            &format!("acme/transit/keys/{name}"),
            Some(&json!({"backend": "hsm", "backend_key": "label:ops-master"})),
            &[("X-Vault-Token", token)],
        )
    };
    let (status, body) = bind_ops_master(&delegated, "delegated");
    assert_eq!(status, 403, "{body}");
    assert!(body.to_string().contains("not granted"), "{body}");
    let (status, body) = bind_ops_master(&hsm_operator, "by-operator");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["bound"], true, "{body}");

    // A tenant binds what the drop-in grants it, nothing else; every refusal is clear.
    let acme = tenant_token(&broker, "acme");
    let as_acme = |method: &str, path: &str, body: Option<&Value>| {
        broker.request_with(
            method,
            path,
            body,
            &[("X-Vault-Token", &acme), ("X-Vault-Namespace", "acme")],
        )
    };
    let (status, body) = as_acme(
        "POST",
        "transit/keys/mine",
        Some(&json!({"backend": "hsm", "backend_key": "label:acme-k1"})),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = as_acme(
        "POST",
        "transit/encrypt/mine",
        Some(&json!({"plaintext": b64(b"acme data")})),
    );
    assert_eq!(status, 200, "{body}");
    for (backend_key, key_type, status_wanted, message) in [
        ("label:globex-k1", "aes256-gcm96", 403, "not granted"),
        ("label:ops-master", "aes256-gcm96", 403, "not granted"),
        ("id:0a01", "aes256-gcm96", 403, "not granted"),
        ("label:acme-short", "aes256-gcm96", 400, ""),
        ("label:acme-k1", "ecdsa-p256", 400, ""),
        ("label:acme-missing", "aes256-gcm96", 400, ""),
    ] {
        let (status, body) = as_acme(
            "POST",
            "transit/keys/refused",
            Some(&json!({"backend": "hsm", "backend_key": backend_key, "type": key_type})),
        );
        assert_eq!(status, status_wanted, "{backend_key} {key_type}: {body}");
        assert!(body.to_string().contains(message), "{backend_key}: {body}");
    }
    // Keys the broker made (here: globex's) can never be bound, even where a pattern matches.
    broker.bao_ok(&["write", &ns("globex"), "transit/keys/own", "backend=hsm"]);
    let globex_label = hsm
        .labels()
        .into_iter()
        .find(|l| l.starts_with("keybroker:"))
        .unwrap();
    let (status, body) = as_acme(
        "POST",
        "transit/keys/stolen",
        Some(&json!({"backend": "hsm", "backend_key": format!("label:{globex_label}")})),
    );
    assert_eq!(status, 403, "{body}");
    assert!(!body.to_string().contains("globex"), "{body}");

    // A bound key pair signs.
    let (status, body) = as_acme(
        "POST",
        "transit/keys/signer",
        Some(&json!({"backend": "hsm", "backend_key": "label:acme-sign", "type": "ecdsa-p256"})),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = as_acme(
        "POST",
        "transit/sign/signer",
        Some(&json!({"input": b64(b"order 7")})),
    );
    assert_eq!(status, 200, "{body}");

    // Deleting a bound transit key leaves the HSM key in place.
    let before = hsm.labels();
    let (status, _) = as_acme(
        "POST",
        "transit/keys/mine/config",
        Some(&json!({"deletion_allowed": true})),
    );
    assert_eq!(status, 200);
    let (status, body) = as_acme("DELETE", "transit/keys/mine", None);
    assert_eq!(status, 204, "{body}");
    assert_eq!(hsm.labels(), before, "a bound key is never destroyed");
    // Rotating a bound direct key is refused; a bound envelope key rotates its data key.
    broker.bao_ok(&["write", "-f", "transit/keys/ops/rotate"]);
    let (status, body) = as_acme("POST", "transit/keys/signer/rotate", None);
    assert_eq!(status, 400, "{body}");
}

#[test]
fn a_vanished_token_answers_503_within_the_deadline_and_recovers_without_restart() {
    let hsm = Hsm::new();
    hsm.standard_dropin("");
    let broker = hsm.broker();
    broker.bao_ok(&["write", "transit/keys/dir", "backend=hsm", "mode=direct"]);
    broker.bao_ok(&["write", "transit/keys/env", "backend=hsm"]);
    broker.bao_ok(&["write", "-f", "transit/keys/local"]);
    let direct = broker.encrypt("dir", b"before");
    let envelope = broker.encrypt("env", b"cached");

    hsm.softhsm.hide_tokens();
    let started = Instant::now();
    let (status, body) = encrypt(&broker, "dir", b"during");
    let elapsed = started.elapsed();
    assert_eq!(status, 503, "{body}");
    // The token stays hidden until the test brings it back, so only the instance's 2 s
    // deadline can end this call. How soon after the deadline the answer arrives depends on
    // the machine's load, so the bound only tells an answer at the deadline from a call
    // left waiting on the token.
    assert!(
        elapsed < Duration::from_secs(20),
        "answered after {elapsed:?}: the 2 s deadline did not end the call"
    );
    // The envelope key's data key is cached and the instance serves from cache (serve).
    assert_eq!(broker.decrypt("env", &envelope), b"cached");
    // Other backends are untouched.
    let ciphertext = broker.encrypt("local", b"local");
    assert_eq!(broker.decrypt("local", &ciphertext), b"local");

    hsm.softhsm.restore_tokens();
    assert!(
        eventually(Duration::from_secs(15), || encrypt(
            &broker, "dir", b"after"
        )
        .0 == 200),
        "the HSM key did not come back: {}",
        broker.log()
    );
    assert_eq!(broker.decrypt("dir", &direct), b"before");
}

#[test]
fn a_wrong_pin_or_module_hash_makes_only_that_instance_unavailable() {
    let hsm = Hsm::new();
    let dir = tempfile::tempdir().unwrap();
    let wrong_pin = dir.path().join("wrong.pin");
    std::fs::write(&wrong_pin, "not-the-pin-9999\n").unwrap();
    std::fs::set_permissions(
        &wrong_pin,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let module_sha256 = hsm.softhsm.module_sha256();
    hsm.dropin("badpin", "", &hsm.config(&wrong_pin, &module_sha256, ""));
    hsm.dropin(
        "badhash",
        "",
        &hsm.config(&hsm.pin_file, &"0".repeat(64), ""),
    );
    hsm.standard_dropin("");
    let broker = hsm.broker();

    let badpin = broker.backend("badpin");
    assert_eq!(badpin["status"], "unavailable", "{badpin}");
    assert!(badpin.to_string().contains("CKR_PIN_INCORRECT"), "{badpin}");
    let badhash = broker.backend("badhash");
    assert_eq!(badhash["status"], "unavailable", "{badhash}");
    assert!(badhash.to_string().contains("sha256"), "{badhash}");
    assert!(!broker.log().contains("not-the-pin-9999"));
    assert!(!broker.log().contains(PIN));

    let (status, body) = broker.request(
        "POST",
        "transit/keys/k",
        Some(&json!({"backend": "badpin"})),
    );
    assert_eq!(status, 503, "{body}");
    broker.bao_ok(&["write", "transit/keys/good", "backend=hsm"]);
    let ciphertext = broker.encrypt("good", b"fine");
    assert_eq!(broker.decrypt("good", &ciphertext), b"fine");
}
