//! The plugin host through the real binary: drop-ins in `plugins.d/` loading the real plugin
//! `.so` files, failures that stay contained to their instance, reloads (API and SIGHUP),
//! replaced libraries, deadlines and bulkheads, availability reports from plugins through
//! the host handle, tenant allowlists, and the metrics an operator watches.
//!
//! The `testing` plugin misbehaves on demand (`panic_on`, `hang_ms`, `fail_new`,
//! `panic_new`, and a `control_file` through which a test makes it report itself down or
//! up); `testing-alt` is the same code reporting version `testing-2`.

use std::{
    collections::BTreeMap,
    io::Read,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::{Mutex, PoisonError},
    thread,
    time::{Duration, Instant},
};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use serde_json::{json, Value};

use crate::support::{
    copy_with_mode, eventually, metrics, plugin_so, private_dir, repo_root, sample, sha256_file,
    Broker, Options, PluginDir,
};

fn b64(data: &[u8]) -> String {
    STANDARD.encode(data)
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut bytes)
        .unwrap();
    bytes
}

/// Writes a fresh KEK as local-kek reads it (base64 of 32 random bytes, mode 0600).
fn write_kek(dir: &Path, file_name: &str) -> PathBuf {
    let path = dir.join(file_name);
    std::fs::write(&path, format!("{}\n", b64(&random_bytes(32)))).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// The `[config]` of a local-kek instance with one KEK file.
fn local_kek_config(kek: &Path) -> String {
    format!(
        "active = \"k1\"\n[[config.keks]]\nid = \"k1\"\nfile = \"{}\"",
        kek.display()
    )
}

/// A dev broker reading `plugins` as its drop-in directory.
pub(crate) fn dev_broker(plugins: &PluginDir) -> Broker {
    Broker::start(Options {
        plugin_dir: Some(plugins.path().to_owned()),
        ..Options::default()
    })
}

/// A broker from a config file (fresh state dir) with `plugins` and a `[timing]` table.
pub(crate) fn config_broker(plugins: &PluginDir, timing: &str) -> Broker {
    Broker::start(Options {
        config: Some(format!(
            "state_dir = \"{{state}}\"\nplugin_dir = \"{}\"\n[listener]\naddress = \"127.0.0.1:{{port}}\"\n[timing]\n{timing}\n",
            plugins.path().display()
        )),
        ..Options::default()
    })
}

/// SHA-256 of a built plugin library, computed once per test process: hashing a debug
/// build's 18 MB takes the better part of a second.
pub(crate) fn plugin_sha256(plugin: &str) -> String {
    static HASHES: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());
    let mut hashes = HASHES.lock().unwrap_or_else(PoisonError::into_inner);
    hashes
        .entry(plugin.to_owned())
        .or_insert_with(|| sha256_file(&plugin_so(plugin)))
        .clone()
}

/// Writes a drop-in (as `PluginDir::write_instance` does, with a known hash).
pub(crate) fn write_dropin(
    plugins: &PluginDir,
    name: &str,
    library: &Path,
    sha256: &str,
    tenants: &str,
    extra: &str,
    config: &str,
) {
    let text = format!(
        "name = \"{name}\"\nlibrary = \"{}\"\nsha256 = \"{sha256}\"\ntenants = {tenants}\n{extra}\n[config]\n{config}\n",
        library.display()
    );
    plugins.write(&format!("{name}.toml"), &text);
}

/// The testing plugin copied once into the drop-in directory as `testing.so`.
pub(crate) fn testing_library(plugins: &PluginDir) -> PathBuf {
    let path = plugins.path().join("testing.so");
    if path.exists() {
        path
    } else {
        plugins.add_library("testing", "testing.so")
    }
}

/// Writes a drop-in for an instance of the testing plugin open to every tenant.
fn testing_instance(plugins: &PluginDir, name: &str, extra: &str, config: &str) {
    let library = testing_library(plugins);
    let sha256 = plugin_sha256("testing");
    write_dropin(plugins, name, &library, &sha256, r#"["*"]"#, extra, config);
}

fn create_key(broker: &Broker, key: &str, backend: &str, mode: &str) -> (u16, Value) {
    let body = json!({ "backend": backend, "mode": mode });
    broker.request("POST", &format!("transit/keys/{key}"), Some(&body))
}

fn create_key_ok(broker: &Broker, key: &str, backend: &str, mode: &str) {
    let (status, value) = create_key(broker, key, backend, mode);
    assert_eq!(status, 200, "create {key} on {backend} ({mode}): {value}");
    assert_eq!(value["data"]["backend"], backend, "{value}");
    assert_eq!(value["data"]["mode"], mode, "{value}");
}

fn try_encrypt(broker: &Broker, key: &str, plaintext: &[u8]) -> (u16, Value) {
    let body = json!({ "plaintext": b64(plaintext) });
    broker.request("POST", &format!("transit/encrypt/{key}"), Some(&body))
}

fn try_decrypt(broker: &Broker, key: &str, ciphertext: &str) -> (u16, Value) {
    let body = json!({ "ciphertext": ciphertext });
    broker.request("POST", &format!("transit/decrypt/{key}"), Some(&body))
}

/// The first error message of an error body.
fn error_of(value: &Value) -> String {
    value["errors"][0].as_str().unwrap_or_default().to_owned()
}

/// `POST sys/plugins/reload`, asserting success; returns the answer (the new list).
fn reload(broker: &Broker) -> Value {
    let (status, value) = broker.request("POST", "sys/plugins/reload", None);
    assert_eq!(status, 200, "reload: {value}");
    value
}

/// (status, reason) of an instance in `sys/plugins/backends`.
fn state_of(broker: &Broker, name: &str) -> (String, String) {
    let backend = broker.backend(name);
    (
        backend["status"].as_str().unwrap_or_default().to_owned(),
        backend["reason"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Names listed by `sys/plugins/backends`.
fn listed(broker: &Broker) -> Vec<String> {
    let (status, value) = broker.request("GET", "sys/plugins/backends", None);
    assert_eq!(status, 200, "{value}");
    value["data"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect()
}

fn cache_entries(broker: &Broker, name: &str) -> u64 {
    broker.backend(name)["dek_cache"]["entries"]
        .as_u64()
        .unwrap()
}

/// The built-in `local` instance still creates keys and round-trips data.
fn assert_local_serves(broker: &Broker) {
    create_key_ok(broker, "canary", "local", "envelope");
    let ciphertext = broker.encrypt("canary", b"still serving");
    assert_eq!(broker.decrypt("canary", &ciphertext), b"still serving");
}

/// Rewrites the testing plugin's control file atomically (it is polled every 50 ms).
pub(crate) fn write_control(path: &Path, text: &str) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

fn sample_or_zero(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    sample(text, name, labels).unwrap_or(0.0)
}

fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "expected {from:?} once");
    text.replacen(from, to, 1)
}

// ---------------------------------------------------------------------------------------
// Loading a real plugin library.

#[test]
fn local_kek_library_from_a_dropin_serves_bao_from_a_verified_copy_across_restarts() {
    let plugins = PluginDir::new();
    let secrets = private_dir();
    let kek = write_kek(secrets.path(), "k1.b64");
    let library = plugins.add_library("local_kek", "libkeybroker_plugin_local_kek.so");
    let sha256 = plugin_sha256("local_kek");
    write_dropin(
        &plugins,
        "kek-files",
        &library,
        &sha256,
        r#"["root"]"#,
        "",
        &local_kek_config(&kek),
    );
    let state = private_dir();
    let options = Options {
        config: Some(format!(
            "state_dir = \"{{state}}\"\nplugin_dir = \"{}\"\n[listener]\naddress = \"127.0.0.1:{{port}}\"\n",
            plugins.path().display()
        )),
        state_dir: Some(state.path().to_owned()),
        ..Options::default()
    };
    let broker = Broker::start(options.clone());
    assert!(
        broker.token.starts_with("kbs."),
        "config mode prints a root token"
    );

    let backend = broker.backend("kek-files");
    assert_eq!(backend["status"], "available", "{backend}");
    assert_eq!(backend["plugin"]["plugin"], "local-kek", "{backend}");
    assert_eq!(backend["sha256"], sha256.as_str(), "{backend}");
    assert_eq!(backend["tenants"], json!(["root"]), "{backend}");

    // The host loaded a private copy named by the verified hash, not the drop-in's path.
    let copy = state.path().join("plugins").join(format!("{sha256}.so"));
    assert!(copy.exists(), "no verified copy at {}", copy.display());
    assert!(
        std::fs::read(&copy).unwrap() == std::fs::read(&library).unwrap(),
        "the copy must hold the verified bytes"
    );
    let mode = std::fs::metadata(&copy).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o077,
        0,
        "the verified copy must be private, mode {mode:o}"
    );

    broker.bao_ok(&["write", "transit/keys/k2", "backend=kek-files"]);
    let key: Value =
        serde_json::from_str(&broker.bao_ok(&["read", "-format=json", "transit/keys/k2"])).unwrap();
    assert_eq!(key["data"]["backend"], "kek-files", "{key}");
    assert_eq!(key["data"]["backend_available"], true, "{key}");

    let plaintext = b64(b"customer record 42");
    let out = broker.bao_ok(&[
        "write",
        "-format=json",
        "transit/encrypt/k2",
        &format!("plaintext={plaintext}"),
    ]);
    let ciphertext = serde_json::from_str::<Value>(&out).unwrap()["data"]["ciphertext"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(ciphertext.starts_with("vault:v1:"), "{ciphertext}");
    let out = broker.bao_ok(&[
        "write",
        "-format=json",
        "transit/decrypt/k2",
        &format!("ciphertext={ciphertext}"),
    ]);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["data"]["plaintext"],
        plaintext.as_str()
    );
    assert_eq!(cache_entries(&broker, "kek-files"), 1);

    // After a restart the same KEK file opens the same data key.
    let token = broker.token.clone();
    drop(broker);
    let mut again = Broker::start(options);
    again.token = token;
    assert_eq!(again.backend("kek-files")["status"], "available");
    assert_eq!(again.decrypt("k2", &ciphertext), b"customer record 42");
}

#[test]
fn the_example_local_kek_dropin_works_once_its_paths_are_filled_in() {
    let example =
        std::fs::read_to_string(repo_root().join("examples/plugins.d/local-kek.toml")).unwrap();
    let plugins = PluginDir::new();
    let secrets = private_dir();
    let kek = write_kek(secrets.path(), "kek-k1.b64");
    let library = plugins.add_library("local_kek", "libkeybroker_plugin_local_kek.so");
    let text = replace_once(
        &example,
        "library = \"/usr/lib/keybroker/libkeybroker_plugin_local_kek.so\"",
        &format!("library = \"{}\"", library.display()),
    );
    let text = replace_once(
        &text,
        &format!("sha256 = \"{}\"", "0".repeat(64)),
        &format!("sha256 = \"{}\"", plugin_sha256("local_kek")),
    );
    let text = replace_once(
        &text,
        "file = \"/etc/keybroker/kek-k1.b64\"",
        &format!("file = \"{}\"", kek.display()),
    );
    plugins.write("local-kek.toml", &text);

    let broker = dev_broker(&plugins);
    let backend = broker.backend("kek-files");
    assert_eq!(backend["status"], "available", "{backend}");
    assert_eq!(backend["plugin"]["plugin"], "local-kek", "{backend}");
    assert_eq!(backend["tenants"], json!(["root"]), "{backend}");
    assert_eq!(backend["on_unavailable"], "serve", "{backend}");
    for mode in ["envelope", "direct"] {
        let key = format!("example-{mode}");
        create_key_ok(&broker, &key, "kek-files", mode);
        let ciphertext = broker.encrypt(&key, b"from the example");
        assert_eq!(broker.decrypt(&key, &ciphertext), b"from the example");
    }
}

// ---------------------------------------------------------------------------------------
// Failures stay contained.

#[test]
fn broken_dropins_leave_only_their_own_instance_unavailable_with_a_reason() {
    let plugins = PluginDir::new();
    let testing = testing_library(&plugins);
    let testing_sha = plugin_sha256("testing");
    let open = |name: &str, library: &Path, sha256: &str, extra: &str| {
        write_dropin(&plugins, name, library, sha256, r#"["*"]"#, extra, "");
    };
    testing_instance(&plugins, "good", "", "");
    open("wrong-sha", &testing, &"ab".repeat(32), "");
    open(
        "missing",
        &plugins.path().join("no-such-library.so"),
        &testing_sha,
        "",
    );
    let group_writable = plugins.path().join("group-writable.so");
    copy_with_mode(&plugin_so("testing"), &group_writable, 0o775);
    open("group-writable", &group_writable, &testing_sha, "");
    let world_writable = plugins.path().join("world-writable.so");
    copy_with_mode(&plugin_so("testing"), &world_writable, 0o757);
    open("world-writable", &world_writable, &testing_sha, "");
    let shared_dir = plugins.path().join("shared");
    std::fs::create_dir(&shared_dir).unwrap();
    std::fs::set_permissions(&shared_dir, std::fs::Permissions::from_mode(0o770)).unwrap();
    let in_shared_dir = shared_dir.join("testing.so");
    copy_with_mode(&plugin_so("testing"), &in_shared_dir, 0o755);
    open("shared-dir", &in_shared_dir, &testing_sha, "");
    let mismatch = plugins.add_library("testing_abi_mismatch", "abi-mismatch.so");
    open(
        "abi-mismatch",
        &mismatch,
        &plugin_sha256("testing_abi_mismatch"),
        "",
    );
    open("unknown-field", &testing, &testing_sha, "colour = \"blue\"");
    testing_instance(&plugins, "fail-new", "", "fail_new = true");
    testing_instance(&plugins, "panic-new", "", "panic_new = true");

    let mut broker = dev_broker(&plugins);
    let log = broker.log();
    // A drop-in that parsed becomes an instance that answers 503; one that did not is
    // no instance at all, so creating a key on it is refused like any unknown name (400).
    for (name, expected, create_status) in [
        ("wrong-sha", "sha256 mismatch", 503),
        ("missing", "not found", 503),
        ("group-writable", "group- or world-writable", 503),
        ("world-writable", "group- or world-writable", 503),
        ("shared-dir", "library directory", 503),
        ("abi-mismatch", "ABI", 503),
        ("unknown-field", "colour", 400),
        ("fail-new", "fail_new is set", 503),
        ("panic-new", "panicked", 503),
    ] {
        let (status, reason) = state_of(&broker, name);
        assert_eq!(status, "unavailable", "{name}: {reason}");
        assert!(
            reason.contains(expected),
            "{name}: expected {expected:?} in the reason {reason:?}"
        );
        assert!(
            log.contains(&reason),
            "{name}: the reason {reason:?} is not in the log:\n{log}"
        );
        let (status, value) = create_key(&broker, &format!("on-{name}"), name, "envelope");
        assert_eq!(status, create_status, "{name}: {value}");
    }
    assert!(
        broker.child.try_wait().unwrap().is_none(),
        "a broken plugin must not take the broker down"
    );

    // Everything else serves: the good instance from the same library, and `local`.
    assert_eq!(state_of(&broker, "good").0, "available");
    create_key_ok(&broker, "on-good", "good", "envelope");
    let ciphertext = broker.encrypt("on-good", b"unaffected");
    assert_eq!(broker.decrypt("on-good", &ciphertext), b"unaffected");
    assert_local_serves(&broker);
}

#[test]
fn a_group_writable_plugin_directory_is_refused_as_a_whole_until_fixed() {
    let plugins = PluginDir::new();
    testing_instance(&plugins, "inside", "", "");
    std::fs::set_permissions(plugins.path(), std::fs::Permissions::from_mode(0o770)).unwrap();
    let broker = dev_broker(&plugins);
    let (status, value) = broker.request("GET", "sys/plugins/backends", None);
    assert_eq!(status, 200, "{value}");
    let backends = value["data"]["backends"].as_array().unwrap();
    assert!(
        backends.iter().all(|b| b["name"] != "inside"),
        "nothing from a group-writable directory may load: {value}"
    );
    assert!(
        backends.iter().any(|b| b["status"] == "unavailable"
            && b["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("plugin directory")),
        "{value}"
    );
    assert_local_serves(&broker);

    std::fs::set_permissions(plugins.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    reload(&broker);
    assert_eq!(state_of(&broker, "inside").0, "available");
}

#[test]
fn keys_of_an_instance_that_fails_answer_503_until_it_is_back() {
    let plugins = PluginDir::new();
    testing_instance(&plugins, "plug", "", "seed = \"s1\"");
    let broker = dev_broker(&plugins);
    create_key_ok(&broker, "env", "plug", "envelope");
    create_key_ok(&broker, "dir", "plug", "direct");
    let env_ciphertext = broker.encrypt("env", b"envelope data");
    let dir_ciphertext = broker.encrypt("dir", b"direct data");

    // The drop-in changes and the plugin now refuses to start.
    testing_instance(&plugins, "plug", "", "seed = \"s1\"\nfail_new = true");
    reload(&broker);
    let (status, reason) = state_of(&broker, "plug");
    assert_eq!(status, "unavailable");
    assert!(reason.contains("fail_new is set"), "{reason}");
    for (key, ciphertext) in [("env", &env_ciphertext), ("dir", &dir_ciphertext)] {
        let (status, value) = try_encrypt(&broker, key, b"more");
        assert_eq!(status, 503, "encrypt {key}: {value}");
        assert!(error_of(&value).contains("unavailable"), "{value}");
        let (status, value) = try_decrypt(&broker, key, ciphertext);
        assert_eq!(status, 503, "decrypt {key}: {value}");
        let (_, value) = broker.request("GET", &format!("transit/keys/{key}"), None);
        assert_eq!(value["data"]["backend_available"], false, "{value}");
    }
    assert_local_serves(&broker);

    // Fixed: the same keys serve again and old ciphertexts decrypt.
    testing_instance(&plugins, "plug", "", "seed = \"s1\"");
    reload(&broker);
    assert_eq!(state_of(&broker, "plug").0, "available");
    assert_eq!(broker.decrypt("env", &env_ciphertext), b"envelope data");
    assert_eq!(broker.decrypt("dir", &dir_ciphertext), b"direct data");
}

// ---------------------------------------------------------------------------------------
// Reloading.

#[test]
fn reload_and_sighup_pick_up_added_and_removed_dropins_and_keep_unchanged_ones() {
    let plugins = PluginDir::new();
    let broker = dev_broker(&plugins);
    assert_eq!(listed(&broker), ["local"]);
    let (status, _) = create_key(&broker, "a-key", "alpha", "envelope");
    assert_eq!(status, 400, "alpha is not loaded yet");

    // Added, then reloaded through the API, which answers with the new list.
    testing_instance(&plugins, "alpha", "", "");
    let answer = reload(&broker);
    assert!(
        answer["data"]["keys"]
            .as_array()
            .unwrap()
            .contains(&json!("alpha")),
        "{answer}"
    );
    assert_eq!(state_of(&broker, "alpha").0, "available");
    create_key_ok(&broker, "a-key", "alpha", "envelope");
    let ciphertext = broker.encrypt("a-key", b"alpha data");

    // Added, then SIGHUP.
    testing_instance(&plugins, "beta", "", "");
    broker.sighup();
    // The reload runs in the background (reading the drop-ins, loading the library): the
    // broker's work on a loaded machine, not a bound under test (it was 5 s).
    assert!(
        eventually(Duration::from_secs(30), || listed(&broker)
            .contains(&"beta".to_owned())),
        "SIGHUP did not load beta:\n{}",
        broker.log()
    );
    assert_eq!(state_of(&broker, "beta").0, "available");
    create_key_ok(&broker, "b-key", "beta", "direct");

    // An unchanged drop-in keeps its instance, and so its cached data keys.
    let before = broker.backend("alpha")["dek_cache"].clone();
    assert_eq!(before["entries"], 1, "{before}");
    reload(&broker);
    assert_eq!(broker.decrypt("a-key", &ciphertext), b"alpha data");
    let after = broker.backend("alpha")["dek_cache"].clone();
    assert_eq!(after["entries"], 1, "{after}");
    assert_eq!(
        after["hits"].as_u64().unwrap(),
        before["hits"].as_u64().unwrap() + 1,
        "the decrypt after the reload must be a cache hit: {before} → {after}"
    );
    assert_eq!(after["misses"], before["misses"], "{before} → {after}");

    // Removed: gone from the list; its keys answer 503.
    std::fs::remove_file(plugins.path().join("alpha.toml")).unwrap();
    reload(&broker);
    let names = listed(&broker);
    assert!(!names.contains(&"alpha".to_owned()), "{names:?}");
    assert!(names.contains(&"beta".to_owned()) && names.contains(&"local".to_owned()));
    let (status, value) = try_encrypt(&broker, "a-key", b"x");
    assert_eq!(status, 503, "{value}");

    std::fs::remove_file(plugins.path().join("beta.toml")).unwrap();
    broker.sighup();
    // As above: a background reload, at the machine's speed (it was 5 s).
    assert!(
        eventually(Duration::from_secs(30), || !listed(&broker)
            .contains(&"beta".to_owned())),
        "SIGHUP did not drop beta"
    );
    assert_local_serves(&broker);
}

#[test]
fn replacing_a_library_and_its_pin_runs_the_new_code_after_reload() {
    let plugins = PluginDir::new();
    let library = plugins.add_library("testing", "plug.so");
    let (v1, v2) = (plugin_sha256("testing"), plugin_sha256("testing_alt"));
    write_dropin(
        &plugins,
        "plug",
        &library,
        &v1,
        r#"["*"]"#,
        "",
        "seed = \"shared\"",
    );
    let broker = dev_broker(&plugins);
    assert_eq!(broker.backend("plug")["plugin"]["version"], "testing-1");
    create_key_ok(&broker, "k", "plug", "envelope");
    let ciphertext = broker.encrypt("k", b"written by v1");

    copy_with_mode(&plugin_so("testing_alt"), &library, 0o755);
    write_dropin(
        &plugins,
        "plug",
        &library,
        &v2,
        r#"["*"]"#,
        "",
        "seed = \"shared\"",
    );
    reload(&broker);
    let backend = broker.backend("plug");
    assert_eq!(backend["status"], "available", "{backend}");
    assert_eq!(backend["plugin"]["version"], "testing-2", "{backend}");
    assert_eq!(backend["sha256"], v2.as_str());
    assert!(
        broker.log().contains("testing plugin testing-2 ready"),
        "{}",
        broker.log()
    );
    // The new code unwraps what the old one wrapped (same seed) and serves new data.
    assert_eq!(broker.decrypt("k", &ciphertext), b"written by v1");
    let newer = broker.encrypt("k", b"written by v2");
    assert_eq!(broker.decrypt("k", &newer), b"written by v2");
}

#[test]
fn a_library_replaced_without_a_new_pin_is_refused_on_reload() {
    let plugins = PluginDir::new();
    let library = plugins.add_library("testing", "plug.so");
    let sha256 = plugin_sha256("testing");
    write_dropin(&plugins, "plug", &library, &sha256, r#"["*"]"#, "", "");
    let broker = dev_broker(&plugins);
    create_key_ok(&broker, "k", "plug", "envelope");
    let ciphertext = broker.encrypt("k", b"pinned");

    // Same drop-in, other bytes: the host re-verifies the file on reload.
    copy_with_mode(&plugin_so("testing_alt"), &library, 0o755);
    reload(&broker);
    let (status, reason) = state_of(&broker, "plug");
    assert_eq!(status, "unavailable");
    assert!(reason.contains("sha256 mismatch"), "{reason}");
    let (status, value) = try_encrypt(&broker, "k", b"x");
    assert_eq!(status, 503, "{value}");
    assert_local_serves(&broker);

    // The pinned bytes back in place: available again, running the pinned code.
    copy_with_mode(&plugin_so("testing"), &library, 0o755);
    reload(&broker);
    let backend = broker.backend("plug");
    assert_eq!(backend["status"], "available", "{backend}");
    assert_eq!(backend["plugin"]["version"], "testing-1", "{backend}");
    assert_eq!(broker.decrypt("k", &ciphertext), b"pinned");
}

// ---------------------------------------------------------------------------------------
// Panics, hangs and the bulkhead.

#[test]
fn a_panicking_plugin_call_answers_500_and_everything_keeps_serving() {
    let plugins = PluginDir::new();
    testing_instance(&plugins, "panicky", "", "panic_on = [\"encrypt\"]");
    let mut broker = dev_broker(&plugins);
    create_key_ok(&broker, "p", "panicky", "direct");
    for _ in 0..2 {
        let (status, value) = try_encrypt(&broker, "p", b"boom");
        assert_eq!(status, 500, "{value}");
        assert!(!error_of(&value).is_empty(), "{value}");
    }
    // Envelope keys wrap their data key with encrypt: creating one fails the same way.
    let (status, value) = create_key(&broker, "q", "panicky", "envelope");
    assert_eq!(status, 500, "{value}");
    assert!(
        broker.child.try_wait().unwrap().is_none(),
        "a plugin panic must not cross the boundary"
    );
    assert_local_serves(&broker);
}

#[test]
fn a_hanging_plugin_call_answers_503_at_its_deadline_while_other_instances_serve() {
    let plugins = PluginDir::new();
    testing_instance(
        &plugins,
        "slow",
        "timeout = \"300ms\"",
        "hang_ms = { encrypt = 30000 }",
    );
    let broker = dev_broker(&plugins);
    create_key_ok(&broker, "h", "slow", "direct");
    create_key_ok(&broker, "canary", "local", "envelope");

    thread::scope(|scope| {
        let hung = scope.spawn(|| {
            let started = Instant::now();
            let answer = try_encrypt(&broker, "h", b"never mind");
            (answer, started.elapsed())
        });
        for _ in 0..3 {
            let ciphertext = broker.encrypt("canary", b"meanwhile");
            assert_eq!(broker.decrypt("canary", &ciphertext), b"meanwhile");
        }
        let ((status, value), elapsed) = hung.join().unwrap();
        assert_eq!(status, 503, "{value}");
        assert!(
            error_of(&value).contains("did not answer within"),
            "{value}"
        );
        // Only the 300 ms deadline can end the call before the 30 s hang does; how soon
        // after the deadline the answer arrives is the machine's speed.
        assert!(
            elapsed < Duration::from_secs(20),
            "the 300 ms deadline must cut a 30 s hang short, took {elapsed:?}"
        );
    });
    assert_local_serves(&broker);
}

#[test]
fn a_saturated_instance_refuses_further_calls_while_other_instances_serve() {
    let plugins = PluginDir::new();
    testing_instance(
        &plugins,
        "narrow",
        "timeout = \"1s\"\nconcurrency = 1",
        // Long enough that the checks below run while the hung call holds the slot, however
        // slowly the machine runs them (a 5 s hang was too short to be sure).
        "hang_ms = { encrypt = 20000 }",
    );
    let broker = dev_broker(&plugins);
    create_key_ok(&broker, "n", "narrow", "direct");
    create_key_ok(&broker, "canary", "local", "envelope");

    // The first call times out at 1 s but its plugin thread holds the only slot for 20 s.
    let started = Instant::now();
    let (status, value) = try_encrypt(&broker, "n", b"first");
    assert_eq!(status, 503, "{value}");
    assert!(
        error_of(&value).contains("did not answer within"),
        "{value}"
    );
    // So the next call on that instance finds no free slot before its own deadline.
    let (status, value) = try_encrypt(&broker, "n", b"second");
    assert_eq!(status, 503, "{value}");
    assert!(error_of(&value).contains("saturated"), "{value}");
    // Another instance is not held up by it.
    let ciphertext = broker.encrypt("canary", b"unaffected");
    assert_eq!(broker.decrypt("canary", &ciphertext), b"unaffected");
    assert!(
        started.elapsed() < Duration::from_secs(19),
        "the checks above must run while the hung call still holds its slot ({:?})",
        started.elapsed()
    );

    // Once the plugin returns, the slot is free: a decrypt reaches the plugin, which
    // refuses a forged ciphertext (400) instead of the host answering 503.
    let forged = format!("vault:v1:{}", b64(&random_bytes(40)));
    // The hang ends 20 s after it began; when the slot is seen free after that is the
    // machine's speed.
    assert!(
        eventually(Duration::from_secs(60), || try_decrypt(
            &broker, "n", &forged
        )
        .0 == 400),
        "the slot was never released"
    );
}

// ---------------------------------------------------------------------------------------
// Availability reported by the plugin through the host handle.

/// A testing instance with a control file (`extra` goes to the drop-in's top level).
pub(crate) fn controlled_instance(plugins: &PluginDir, name: &str, extra: &str) -> PathBuf {
    let control = plugins.path().join(format!("{name}.control"));
    testing_instance(
        plugins,
        name,
        extra,
        &format!("control_file = \"{}\"", control.display()),
    );
    control
}

/// `sys/agents` gathers the agents that instances report in their status (the testing
/// plugin reports its `status_agents`), each tagged with its instance and sorted; instances
/// without status (here `plain` and the built-in `local`) are left out.
#[test]
fn sys_agents_lists_what_instances_report_sorted_and_leaves_out_the_others() {
    let plugins = PluginDir::new();
    testing_instance(
        &plugins,
        "zeta-agent",
        "",
        r#"status_agents = [{ id = "z1", tenants = ["zeta"] }]"#,
    );
    testing_instance(
        &plugins,
        "acme-agent",
        "",
        r#"status_agents = [{ id = "dc2", tenants = ["acme"] }, { id = "dc1", tenants = ["acme"], in_flight = 0 }]"#,
    );
    testing_instance(&plugins, "plain", "", "");
    let broker = dev_broker(&plugins);
    assert_eq!(state_of(&broker, "plain").0, "available");
    let (status, value) = broker.request("GET", "sys/agents", None);
    assert_eq!(status, 200, "{value}");
    assert_eq!(
        value["data"]["agents"],
        json!([
            { "instance": "acme-agent", "id": "dc1", "tenants": ["acme"], "in_flight": 0 },
            { "instance": "acme-agent", "id": "dc2", "tenants": ["acme"] },
            { "instance": "zeta-agent", "id": "z1", "tenants": ["zeta"] },
        ]),
        "{value}"
    );
}

#[test]
fn an_evicting_instance_that_reports_itself_down_drops_its_cached_keys_at_once() {
    let plugins = PluginDir::new();
    let control = controlled_instance(&plugins, "agent", "on_unavailable = \"evict\"");
    // Health checks out of the way: only the plugin's own report counts here.
    let broker = config_broker(&plugins, "plugin_health_interval = \"1h\"");
    assert_eq!(broker.backend("agent")["on_unavailable"], "evict");
    create_key_ok(&broker, "cmk", "agent", "envelope");
    let ciphertext = broker.encrypt("cmk", b"customer data");
    assert_eq!(cache_entries(&broker, "agent"), 1);

    write_control(&control, "instance down agent gone\n");
    // The plugin polls its control file every 50 ms and reports; with health checks an hour
    // apart, only that report can evict, so a generous deadline (it was 2 s) still tells
    // "at once" from "at a health check".
    assert!(
        eventually(Duration::from_secs(15), || {
            state_of(&broker, "agent").0 == "unavailable" && cache_entries(&broker, "agent") == 0
        }),
        "not evicted: {}",
        broker.backend("agent")
    );
    assert_eq!(state_of(&broker, "agent").1, "agent gone");
    let (status, value) = try_encrypt(&broker, "cmk", b"more");
    assert_eq!(status, 503, "{value}");
    // The plugin's reason is the caller's to see (a health check's would not be).
    assert_eq!(
        error_of(&value),
        "backend instance \"agent\" is unavailable: agent gone"
    );
    let (status, value) = try_decrypt(&broker, "cmk", &ciphertext);
    assert_eq!(status, 503, "{value}");
    assert!(broker.log().contains("agent gone"), "{}", broker.log());
    assert_local_serves(&broker);

    write_control(&control, "instance up\n");
    // As above: only the plugin's report can bring it back within the hour (it was 2 s).
    assert!(
        eventually(Duration::from_secs(15), || try_encrypt(
            &broker, "cmk", b"x"
        )
        .0 == 200),
        "not back: {}",
        broker.backend("agent")
    );
    assert_eq!(state_of(&broker, "agent").0, "available");
    assert_eq!(broker.decrypt("cmk", &ciphertext), b"customer data");
}

#[test]
fn a_serving_instance_that_reports_itself_down_keeps_serving_cached_keys_only() {
    let plugins = PluginDir::new();
    let control = controlled_instance(&plugins, "kms", "on_unavailable = \"serve\"");
    let mut broker = config_broker(&plugins, "plugin_health_interval = \"1h\"");
    create_key_ok(&broker, "hot", "kms", "envelope");
    create_key_ok(&broker, "cold", "kms", "envelope");
    // A key's data key is cached from its creation: a restart leaves both uncached.
    assert_eq!(cache_entries(&broker, "kms"), 2);
    broker.restart();
    let ciphertext = broker.encrypt("hot", b"cached");
    assert_eq!(cache_entries(&broker, "kms"), 1, "only hot is cached");

    write_control(&control, "instance down maintenance\n");
    // Only the plugin's report can do this (health checks an hour apart): a generous
    // deadline for its file poll and the host (it was 2 s).
    assert!(
        eventually(Duration::from_secs(15), || state_of(&broker, "kms").0
            == "unavailable"),
        "{}",
        broker.backend("kms")
    );
    assert_eq!(state_of(&broker, "kms").1, "maintenance");
    // The cached key keeps serving, both ways.
    let fresh = broker.encrypt("hot", b"while down");
    assert_eq!(broker.decrypt("hot", &fresh), b"while down");
    assert_eq!(broker.decrypt("hot", &ciphertext), b"cached");
    assert_eq!(cache_entries(&broker, "kms"), 1);
    let (_, value) = broker.request("GET", "transit/keys/hot", None);
    assert_eq!(value["data"]["backend_available"], false, "{value}");
    // A key whose data key is not cached needs the backend: 503. So does a new key.
    let (status, value) = try_encrypt(&broker, "cold", b"x");
    assert_eq!(status, 503, "{value}");
    let (status, value) = create_key(&broker, "new", "kms", "envelope");
    assert_eq!(status, 503, "{value}");

    write_control(&control, "instance up\n");
    // As above (it was 2 s).
    assert!(
        eventually(Duration::from_secs(15), || try_encrypt(
            &broker, "cold", b"x"
        )
        .0 == 200),
        "not back: {}",
        broker.backend("kms")
    );
}

#[test]
fn an_instance_reporting_itself_available_again_serves_without_waiting_for_a_health_check() {
    let plugins = PluginDir::new();
    let control = controlled_instance(&plugins, "agent", "on_unavailable = \"evict\"");
    let broker = config_broker(&plugins, "plugin_health_interval = \"2s\"");
    create_key_ok(&broker, "cmk", "agent", "envelope");
    let ciphertext = broker.encrypt("cmk", b"customer data");

    write_control(&control, "instance down agent gone\n");
    // Let a periodic health check see the outage too (the plugin's health fails while down):
    // one runs every 2 s; when its log line shows is the machine's speed (it was 6 s).
    assert!(
        eventually(Duration::from_secs(15), || broker
            .log()
            .contains("backend health check failed")),
        "no health check ran:\n{}",
        broker.log()
    );
    const REPORT: &str = "backend instance reports available";
    let reports_before = broker.log().matches(REPORT).count();
    write_control(&control, "instance up\n");
    // The plugin's own report is the newest word: once the broker has taken it, the very next
    // call is served, without waiting for the next health check (every 2 s) to pass. How
    // soon the report arrives is the machine's speed; what follows it is not.
    assert!(
        eventually(Duration::from_secs(30), || broker
            .log()
            .matches(REPORT)
            .count()
            > reports_before),
        "the plugin's report never reached the broker:\n{}",
        broker.log()
    );
    let (status, body) = try_encrypt(&broker, "cmk", b"x");
    assert_eq!(
        status,
        200,
        "still unavailable after the plugin reported itself up: {body}\n{}",
        broker.backend("agent")
    );
    assert_eq!(broker.decrypt("cmk", &ciphertext), b"customer data");
}

// ---------------------------------------------------------------------------------------
// Tenant allowlists.

#[test]
fn tenant_allowlists_decide_who_may_create_keys_and_unknown_instances_look_the_same() {
    let plugins = PluginDir::new();
    let library = testing_library(&plugins);
    let sha256 = plugin_sha256("testing");
    write_dropin(
        &plugins,
        "operators",
        &library,
        &sha256,
        r#"["root"]"#,
        "",
        "",
    );
    write_dropin(&plugins, "nobody", &library, &sha256, "[]", "", "");
    let broker = dev_broker(&plugins);
    assert_eq!(broker.backend("nobody")["tenants"], json!([]));
    assert_eq!(broker.backend("nobody")["status"], "available");

    create_key_ok(&broker, "ops", "operators", "envelope");
    let ciphertext = broker.encrypt("ops", b"for operators");
    assert_eq!(broker.decrypt("ops", &ciphertext), b"for operators");

    let (status, closed) = create_key(&broker, "k1", "nobody", "envelope");
    assert_eq!(status, 400, "{closed}");
    assert!(
        error_of(&closed).contains("not available to this tenant"),
        "{closed}"
    );
    let (status, unknown) = create_key(&broker, "k2", "no-such-instance", "envelope");
    assert_eq!(status, 400, "{unknown}");
    assert_eq!(
        error_of(&closed).replace("nobody", "X"),
        error_of(&unknown).replace("no-such-instance", "X"),
        "a closed instance and a missing one must answer alike"
    );
    let (status, _) = broker.request("GET", "transit/keys/k1", None);
    assert_eq!(status, 404, "the refused key must not exist");
}

/// `examples/plugins.d/local-kek.toml`: "[] for none (the instance then only serves keys
/// that already exist on it)"; ARCHITECTURE.md §5: `tenants` says "who may create keys on it".
#[test]
fn removing_a_tenant_from_the_allowlist_cuts_off_its_existing_keys() {
    let plugins = PluginDir::new();
    let library = testing_library(&plugins);
    let sha256 = plugin_sha256("testing");
    write_dropin(
        &plugins,
        "closing",
        &library,
        &sha256,
        r#"["root"]"#,
        "",
        "seed = \"s\"",
    );
    let broker = dev_broker(&plugins);
    create_key_ok(&broker, "existing", "closing", "envelope");
    let ciphertext = broker.encrypt("existing", b"before");

    write_dropin(
        &plugins,
        "closing",
        &library,
        &sha256,
        "[]",
        "",
        "seed = \"s\"",
    );
    reload(&broker);
    assert_eq!(broker.backend("closing")["tenants"], json!([]));
    let (status, value) = create_key(&broker, "another", "closing", "envelope");
    assert_eq!(status, 400, "{value}");
    // The allowlist says who may use the instance at all, not only who may create keys.
    let (status, value) = try_decrypt(&broker, "existing", &ciphertext);
    assert_eq!(status, 400, "{value}");
    assert!(value["errors"][0]
        .as_str()
        .unwrap()
        .contains("not available to this tenant"));
    let (status, value) = try_encrypt(&broker, "existing", b"after");
    assert_eq!(status, 400, "{value}");

    // Allowing the tenant again restores service.
    write_dropin(
        &plugins,
        "closing",
        &library,
        &sha256,
        r#"["root"]"#,
        "",
        "seed = \"s\"",
    );
    reload(&broker);
    assert_eq!(broker.decrypt("existing", &ciphertext), b"before");
}

// ---------------------------------------------------------------------------------------
// Metrics.

#[test]
fn metrics_count_requests_cache_use_and_backend_calls_per_instance() {
    let plugins = PluginDir::new();
    testing_instance(&plugins, "plug", "", "");
    testing_instance(&plugins, "flaky", "", "panic_on = [\"decrypt\"]");
    let broker = dev_broker(&plugins);
    create_key_ok(&broker, "metered-local", "local", "envelope");
    create_key_ok(&broker, "metered-plug", "plug", "envelope");
    for round in 0..3 {
        for key in ["metered-local", "metered-plug"] {
            let plaintext = format!("round {round}");
            let ciphertext = broker.encrypt(key, plaintext.as_bytes());
            assert_eq!(broker.decrypt(key, &ciphertext), plaintext.as_bytes());
        }
    }
    // Creating an envelope key proves the wrap by unwrapping it: flaky panics there.
    let (status, value) = create_key(&broker, "metered-flaky", "flaky", "envelope");
    assert_eq!(status, 500, "{value}");

    let text = metrics(&broker);
    let at_least = |name: &str, labels: &[(&str, &str)], minimum: f64| {
        let value = sample(&text, name, labels)
            .unwrap_or_else(|| panic!("no {name} {labels:?} in:\n{text}"));
        assert!(
            value >= minimum,
            "{name} {labels:?} = {value}, expected at least {minimum}"
        );
        value
    };
    let encrypt_ok = [("operation", "transit/encrypt"), ("code", "200")];
    at_least("keybroker_http_requests_total", &encrypt_ok, 6.0);
    let decrypt_ok = [("operation", "transit/decrypt"), ("code", "200")];
    at_least("keybroker_http_requests_total", &decrypt_ok, 6.0);
    let encrypt = [("operation", "transit/encrypt")];
    let all = at_least(
        "keybroker_http_request_duration_seconds_bucket",
        &[("operation", "transit/encrypt"), ("le", "+Inf")],
        6.0,
    );
    assert_eq!(
        sample(
            &text,
            "keybroker_http_request_duration_seconds_count",
            &encrypt
        ),
        Some(all)
    );

    // Per-instance DEK cache: filled when the key was created, so every lookup hits. The
    // dev server's `secret/` KV mount has its key on `local` too: one entry more there.
    for (instance, entries) in [("local", 2.0), ("plug", 1.0)] {
        let labels = [("instance", instance)];
        at_least("keybroker_dek_cache_hits_total", &labels, 6.0);
        assert_eq!(
            sample(&text, "keybroker_dek_cache_misses_total", &labels).unwrap_or(0.0),
            0.0,
            "{instance}"
        );
        assert_eq!(
            sample(&text, "keybroker_dek_cache_entries", &labels),
            Some(entries),
            "{instance}"
        );
    }
    let cache = broker.backend("plug")["dek_cache"].clone();
    assert_eq!(
        sample(
            &text,
            "keybroker_dek_cache_hits_total",
            &[("instance", "plug")]
        ),
        cache["hits"].as_f64(),
        "{cache}"
    );

    // Backend calls: the wrap round trip at creation, which also filled the cache.
    let plug_decrypt = [("instance", "plug"), ("operation", "decrypt")];
    let calls = at_least("keybroker_backend_calls_total", &plug_decrypt, 1.0);
    assert_eq!(
        calls, 1.0,
        "one unwrap in all: uses of the key hit the cache"
    );
    at_least(
        "keybroker_backend_calls_total",
        &[("instance", "plug"), ("operation", "encrypt")],
        1.0,
    );
    assert_eq!(
        sample(
            &text,
            "keybroker_backend_call_duration_seconds_count",
            &plug_decrypt
        ),
        Some(calls)
    );
    at_least(
        "keybroker_backend_call_duration_seconds_bucket",
        &[
            ("instance", "plug"),
            ("operation", "decrypt"),
            ("le", "+Inf"),
        ],
        calls,
    );
    at_least(
        "keybroker_backend_calls_total",
        &[("instance", "local"), ("operation", "decrypt")],
        1.0,
    );
    assert_eq!(
        sample_or_zero(
            &text,
            "keybroker_backend_errors_total",
            &[("instance", "plug")]
        ),
        0.0
    );
    at_least(
        "keybroker_backend_errors_total",
        &[("instance", "flaky"), ("operation", "decrypt")],
        1.0,
    );
    // Labels carry operation classes and instance names, never key names.
    assert!(!text.contains("metered-"), "{text}");
}

#[test]
fn failed_direct_mode_calls_count_as_backend_errors() {
    let plugins = PluginDir::new();
    testing_instance(&plugins, "panicky", "", "panic_on = [\"encrypt\"]");
    let broker = dev_broker(&plugins);
    create_key_ok(&broker, "p", "panicky", "direct");
    let (status, value) = try_encrypt(&broker, "p", b"boom");
    assert_eq!(status, 500, "{value}");
    let text = metrics(&broker);
    let errors = sample_or_zero(
        &text,
        "keybroker_backend_errors_total",
        &[("instance", "panicky")],
    );
    assert!(
        errors >= 1.0,
        "a plugin call that failed (500) must count as a backend error:\n{}",
        text.lines()
            .filter(|l| l.contains("panicky") && l.contains("_total"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn a_backend_that_makes_data_keys_makes_every_envelope_version_key() {
    let plugins = PluginDir::new();
    testing_instance(&plugins, "maker", "", "generate_data_keys = true");
    let broker = dev_broker(&plugins);
    create_key_ok(&broker, "made", "maker", "envelope");
    let ciphertext = broker.encrypt("made", b"under a data key the backend made");
    assert_eq!(
        broker.decrypt("made", &ciphertext),
        b"under a data key the backend made"
    );
    broker.bao_ok(&["write", "-f", "transit/keys/made/rotate"]);
    let rotated = broker.encrypt("made", b"version two");
    assert!(rotated.starts_with("vault:v2:"), "{rotated}");
    assert_eq!(broker.decrypt("made", &rotated), b"version two");
    assert_eq!(
        broker.decrypt("made", &ciphertext),
        b"under a data key the backend made"
    );
    // One data key per version came from the backend; the broker wrapped none itself.
    let text = metrics(&broker);
    let calls = |operation: &str| {
        sample_or_zero(
            &text,
            "keybroker_backend_calls_total",
            &[("instance", "maker"), ("operation", operation)],
        )
    };
    assert_eq!(calls("generate_data_key"), 2.0, "{text}");
    assert_eq!(calls("encrypt"), 0.0, "{text}");
}
