//! The core does no I/O of its own (issue 17): no HTTP client, HTTP server, TLS stack or
//! OpenID library anywhere below `keybroker-core` in the workspace's lock file. (The lock
//! file lists development dependencies too, so this is, if anything, stricter than
//! `cargo tree -p keybroker-core -e normal`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeSet, HashMap};

/// Crates whose presence would mean the core talks to the network itself.
const FORBIDDEN: &[&str] = &[
    "reqwest",
    "hyper",
    "hyper-util",
    "openidconnect",
    "rustls",
    "axum",
];

#[test]
fn keybroker_core_depends_on_no_network_stack() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock");
    let lock: toml::Value = std::fs::read_to_string(path).unwrap().parse().unwrap();
    let packages = lock["package"].as_array().unwrap();
    // A dependency is written "name" or "name version" (when several versions exist).
    let mut dependencies: HashMap<&str, Vec<&str>> = HashMap::new();
    for package in packages {
        let name = package["name"].as_str().unwrap();
        let entry = dependencies.entry(name).or_default();
        for dependency in package
            .get("dependencies")
            .and_then(|d| d.as_array())
            .into_iter()
            .flatten()
        {
            let text = dependency.as_str().unwrap();
            entry.push(text.split(' ').next().unwrap());
        }
    }
    assert!(
        dependencies.contains_key("keybroker-core"),
        "keybroker-core is not in the lock file"
    );
    let mut seen = BTreeSet::new();
    let mut queue = vec!["keybroker-core"];
    while let Some(name) = queue.pop() {
        if seen.insert(name) {
            queue.extend(dependencies.get(name).into_iter().flatten().copied());
        }
    }
    let found: Vec<&&str> = FORBIDDEN.iter().filter(|c| seen.contains(**c)).collect();
    assert!(found.is_empty(), "keybroker-core reaches {found:?}");
    // The walk itself works: the core's own dependencies are found.
    assert!(
        seen.contains("aes-gcm") && seen.contains("tokio"),
        "{seen:?}"
    );
}
