//! The durable encryption counter under crashes (ARCHITECTURE.md §3): counts are reserved in blocks
//! before use, so after any number of kill -9 restarts the persisted count of every version
//! is at least the number of acknowledged encryptions, and keys rotate by the threshold.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use serde_json::json;

use crate::support::{eventually, private_dir, Broker, Options};

const THRESHOLD: u64 = 1000;
const BATCH: usize = 40;

#[test]
fn kill9_under_encrypt_load_never_loses_counts_and_rotates_by_the_threshold() {
    let state = private_dir();
    let config = format!(
        "state_dir = \"{{state}}\"\n[listener]\naddress = \"127.0.0.1:{{port}}\"\n[timing]\nrotation_threshold = {THRESHOLD}\ncounter_block = 100\n"
    );
    let options = Options {
        config: Some(config),
        state_dir: Some(state.path().to_owned()),
        ..Options::default()
    };
    let mut broker = Broker::start(options.clone());
    let token = broker.token.clone();
    broker.request("POST", "transit/keys/c", Some(&json!({})));

    // Acknowledged encryptions per key version, and a sample ciphertext of each version.
    let acknowledged: Arc<Mutex<BTreeMap<u64, u64>>> = Arc::default();
    let samples: Arc<Mutex<BTreeMap<u64, String>>> = Arc::default();
    let items: Vec<_> = (0..BATCH)
        .map(|i| json!({ "plaintext": base64_of(i) }))
        .collect();
    let body = json!({ "batch_input": items });

    for round in 0..4 {
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for _ in 0..3 {
            let (stop, acknowledged, samples, body) = (
                stop.clone(),
                acknowledged.clone(),
                samples.clone(),
                body.clone(),
            );
            let (addr, token) = (broker.addr.clone(), token.clone());
            workers.push(std::thread::spawn(move || {
                let client = Client { addr, token };
                while !stop.load(Ordering::Relaxed) {
                    let Some(value) = client.encrypt(&body) else {
                        continue;
                    };
                    let mut acknowledged = acknowledged.lock().unwrap();
                    for result in value["data"]["batch_results"].as_array().unwrap() {
                        let ciphertext = result["ciphertext"].as_str().unwrap();
                        let version: u64 = ciphertext["vault:v".len()..]
                            .split(':')
                            .next()
                            .unwrap()
                            .parse()
                            .unwrap();
                        *acknowledged.entry(version).or_default() += 1;
                        samples
                            .lock()
                            .unwrap()
                            .entry(version)
                            .or_insert_with(|| ciphertext.to_owned());
                    }
                }
            }));
        }
        // The kill lands once this round's workers have had a number of encryptions
        // acknowledged (a different one each round, so the kills fall at different points of
        // the counter's blocks): a count, not a time, since the checks below need the load to
        // pass twice the threshold in all, however slow the machine. How soon the count comes
        // is the machine's speed, hence the generous deadline.
        let acknowledged_so_far = || acknowledged.lock().unwrap().values().sum::<u64>();
        let wanted = acknowledged_so_far() + 1000 + 250 * round;
        let reached = eventually(Duration::from_secs(120), || acknowledged_so_far() >= wanted);
        if !reached {
            stop.store(true, Ordering::Relaxed);
            for worker in workers {
                worker.join().unwrap();
            }
            panic!(
                "round {round}: {} of {wanted} encryptions acknowledged within 120 s\n{}",
                acknowledged_so_far(),
                broker.log()
            );
        }
        broker.kill9();
        stop.store(true, Ordering::Relaxed);
        for worker in workers {
            worker.join().unwrap();
        }
        broker = Broker::start(options.clone());
        broker.token = token.clone();
    }

    let (status, key) = broker.request("GET", "transit/keys/c", None);
    assert_eq!(status, 200);
    let acknowledged = acknowledged.lock().unwrap().clone();
    let total: u64 = acknowledged.values().sum();
    assert!(
        total > 2 * THRESHOLD,
        "the load was too light to reach the threshold: {total}"
    );
    let latest = key["data"]["latest_version"].as_u64().unwrap();
    assert!(
        latest * THRESHOLD >= total,
        "rotation did not keep up: {latest} versions for {total} encryptions"
    );
    for (version, count) in &acknowledged {
        let persisted = key["data"]["encryption_counts"][version.to_string()]
            .as_u64()
            .unwrap();
        assert!(
            persisted >= *count,
            "version {version}: persisted count {persisted} fell below {count} acknowledged encryptions"
        );
        assert!(
            *count <= THRESHOLD,
            "version {version} encrypted {count} times, past the threshold"
        );
        assert!(
            persisted <= THRESHOLD,
            "version {version} reserved {persisted}, past the threshold"
        );
    }
    // Every acknowledged version still decrypts after the crashes.
    for (version, ciphertext) in samples.lock().unwrap().iter() {
        let (status, value) = broker.request(
            "POST",
            "transit/decrypt/c",
            Some(&json!({ "ciphertext": ciphertext })),
        );
        assert_eq!(status, 200, "version {version}: {value}");
    }
}

fn base64_of(i: usize) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("item {i}"))
}

struct Client {
    addr: String,
    token: String,
}

impl Client {
    /// One batch encrypt; `None` if the broker did not acknowledge it (killed mid-way).
    fn encrypt(&self, body: &serde_json::Value) -> Option<serde_json::Value> {
        let out = std::process::Command::new("curl")
            .args(["-s", "-m", "5", "-X", "POST", "-H"])
            .arg(format!("X-Vault-Token: {}", self.token))
            .args(["-H", "Content-Type: application/json", "-d"])
            .arg(body.to_string())
            .arg(format!("{}/v1/transit/encrypt/c", self.addr))
            .output()
            .ok()?;
        let value: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        value["data"]["batch_results"].is_array().then_some(value)
    }
}

/// A key read reports each version's count as the store holds it now, not as it was when
/// the key was loaded: after `n` encryptions on a running broker, never below `n`, and
/// ahead by at most the two blocks one node may hold reserved (ARCHITECTURE.md §3).
#[test]
fn key_read_reports_the_stores_current_count() {
    const BLOCK: u64 = 100;
    let config = format!(
        "state_dir = \"{{state}}\"\n[listener]\naddress = \"127.0.0.1:{{port}}\"\n[timing]\ncounter_block = {BLOCK}\n"
    );
    let broker = Broker::start(Options {
        config: Some(config),
        ..Options::default()
    });
    let (status, _) = broker.request("POST", "transit/keys/k", Some(&json!({})));
    assert_eq!(status, 200);
    let count = || {
        let (status, key) = broker.request("GET", "transit/keys/k", None);
        assert_eq!(status, 200, "{key}");
        key["data"]["encryption_counts"]["1"].as_u64().unwrap()
    };
    assert_eq!(count(), 0, "a new key has reserved nothing");

    let mut done = 0u64;
    for round in 0..5u64 {
        for i in 0..(37 + 11 * round) {
            let (status, value) = broker.request(
                "POST",
                "transit/encrypt/k",
                Some(&json!({ "plaintext": base64_of(i as usize) })),
            );
            assert_eq!(status, 200, "{value}");
            done += 1;
        }
        let reported = count();
        assert!(
            (done..=done + 2 * BLOCK).contains(&reported),
            "after {done} encryptions the key read reports {reported}"
        );
    }
}
