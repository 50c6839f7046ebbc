//! Differential test of the policy engine against a real OpenBao: random policy sets are
//! written to an OpenBao dev server, a token gets exactly those policies, and OpenBao's
//! `sys/capabilities` answer for many paths must equal `Acl::capabilities` for every one.
//!
//! The generator is seeded (`KEYBROKER_POLICY_DIFF_SEED` overrides the fixed seed) and the
//! seed is printed with every mismatch, so a failure replays exactly.

use std::{sync::Arc, time::Instant};

use keybroker_core::policy::{self, Acl};
use rand::{rngs::StdRng, seq::SliceRandom, Rng, SeedableRng};
use serde_json::{json, Value};

use crate::support::openbao::OpenBao;

const SEED: u64 = 0x6b62_5f70_6f6c_6963;
const POLICY_SETS: usize = 500;
const PATHS_PER_SET: usize = 40;

/// Segments for patterns: short, overlapping words so that prefixes, `+` and identical
/// patterns across policies collide often.
const PATTERN_WORDS: [&str; 5] = ["a", "b", "ab", "transit", "keys"];
/// Segments for request paths: the same plus near-misses for the prefix globs.
const PATH_WORDS: [&str; 9] = ["a", "b", "ab", "transit", "keys", "abc", "tr", "k", "x"];
const GRANTS: [&str; 7] = [
    "create", "read", "update", "patch", "delete", "list", "sudo",
];

/// One generated policy: name and HCL text.
struct GeneratedPolicy {
    name: String,
    hcl: String,
    patterns: Vec<String>,
}

fn random_pattern(rng: &mut StdRng) -> String {
    if rng.gen_ratio(1, 40) {
        return "*".into();
    }
    let count = rng.gen_range(1..=3);
    let mut segments: Vec<String> = (0..count)
        .map(|_| {
            if rng.gen_ratio(3, 10) {
                "+".to_owned()
            } else {
                PATTERN_WORDS.choose(rng).unwrap().to_string()
            }
        })
        .collect();
    match rng.gen_range(0..10) {
        // A glob segment: `a/b/*`.
        0..=1 => segments.push("*".into()),
        // A partial-segment glob: `a/tra*`, `a/ab*`, `a/*` (never `+*`, refused by both).
        2..=4 => {
            let last = segments.last_mut().unwrap();
            if last == "+" {
                segments.push("*".into());
            } else {
                let keep = rng.gen_range(0..=last.len());
                last.truncate(keep);
                last.push('*');
            }
        }
        // A trailing slash: `a/b/`.
        5 => segments.push(String::new()),
        _ => {}
    }
    let pattern = segments.join("/");
    if rng.gen_ratio(1, 20) {
        format!("/{pattern}")
    } else {
        pattern
    }
}

fn random_capabilities(rng: &mut StdRng) -> Vec<&'static str> {
    let mut capabilities: Vec<&'static str> = GRANTS
        .iter()
        .copied()
        .filter(|_| rng.gen_ratio(3, 10))
        .collect();
    if rng.gen_ratio(1, 8) {
        let at = rng.gen_range(0..=capabilities.len());
        capabilities.insert(at, "deny");
    }
    capabilities
}

fn random_policy(rng: &mut StdRng, name: String) -> GeneratedPolicy {
    let mut hcl = String::new();
    let mut patterns = Vec::new();
    for _ in 0..rng.gen_range(1..=6) {
        // Sometimes repeat a pattern of this policy: blocks for one pattern merge.
        let pattern = match patterns.choose(rng) {
            Some(previous) if rng.gen_ratio(1, 8) => String::clone(previous),
            _ => random_pattern(rng),
        };
        let capabilities: Vec<String> = random_capabilities(rng)
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect();
        hcl.push_str(&format!(
            "path \"{pattern}\" {{\n  capabilities = [{}]\n}}\n\n",
            capabilities.join(", ")
        ));
        patterns.push(pattern);
    }
    GeneratedPolicy {
        name,
        hcl,
        patterns,
    }
}

fn random_path(rng: &mut StdRng) -> String {
    let count = rng.gen_range(1..=4);
    let mut segments: Vec<&str> = (0..count)
        .map(|_| *PATH_WORDS.choose(rng).unwrap())
        .collect();
    if rng.gen_ratio(1, 5) {
        segments.push("");
    }
    segments.join("/")
}

/// A path that a pattern is likely to match, or nearly: `+` filled in, `*` expanded.
fn path_near(pattern: &str, rng: &mut StdRng) -> String {
    let pattern = pattern.trim_start_matches('/');
    let mut path: String = pattern
        .split('/')
        .map(|segment| {
            if segment == "+" {
                *PATH_WORDS.choose(rng).unwrap()
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/");
    if path.ends_with('*') {
        path.pop();
        match rng.gen_range(0..4) {
            0 => {}
            1 => path.push_str(PATH_WORDS.choose(rng).unwrap()),
            2 => {
                path.push_str(PATH_WORDS.choose(rng).unwrap());
                path.push('/');
                path.push_str(PATH_WORDS.choose(rng).unwrap());
            }
            _ => path.push('/'),
        }
    }
    if rng.gen_ratio(1, 6) {
        if path.ends_with('/') {
            path.pop();
        } else {
            path.push('/');
        }
    }
    // No empty segments (`a//b`) and no empty path: not canonical, refused before any check.
    while path.contains("//") {
        path = path.replace("//", "/");
    }
    let path = path.trim_start_matches('/').to_owned();
    if path.is_empty() {
        random_path(rng)
    } else {
        path
    }
}

struct PolicySet {
    policies: Vec<GeneratedPolicy>,
    paths: Vec<String>,
}

fn random_set(rng: &mut StdRng, index: usize) -> PolicySet {
    let policies: Vec<GeneratedPolicy> = (0..rng.gen_range(1..=3))
        .map(|p| random_policy(rng, format!("s{index}p{p}")))
        .collect();
    let patterns: Vec<&String> = policies.iter().flat_map(|p| &p.patterns).collect();
    let mut paths: Vec<String> = Vec::with_capacity(PATHS_PER_SET);
    while paths.len() < PATHS_PER_SET {
        let path = if rng.gen_bool(0.5) {
            path_near(patterns.choose(rng).unwrap(), rng)
        } else {
            random_path(rng)
        };
        if !paths.contains(&path) {
            paths.push(path);
        }
    }
    PolicySet { policies, paths }
}

#[test]
fn policy_diff_matches_openbao() {
    let seed = std::env::var("KEYBROKER_POLICY_DIFF_SEED")
        .ok()
        .map(|s| {
            s.parse::<u64>()
                .expect("KEYBROKER_POLICY_DIFF_SEED is a u64")
        })
        .unwrap_or(SEED);
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let sets: Vec<PolicySet> = (0..POLICY_SETS).map(|i| random_set(&mut rng, i)).collect();
    let bao = OpenBao::start();

    // 1. Every policy, in one batch. OpenBao must accept all of them, and so must we.
    let writes: Vec<(&str, String, Value)> = sets
        .iter()
        .flat_map(|set| &set.policies)
        .map(|p| {
            (
                "PUT",
                format!("sys/policies/acl/{}", p.name),
                json!({ "policy": p.hcl }),
            )
        })
        .collect();
    let written: Vec<&GeneratedPolicy> = sets.iter().flat_map(|set| &set.policies).collect();
    for ((status, body), policy) in bao.batch(&writes).into_iter().zip(&written) {
        assert!(
            status == 204 || status == 200,
            "seed {seed}: OpenBao refused policy {}:\n{}\n{status} {body}",
            policy.name,
            policy.hcl
        );
    }

    // 2. A token per set with exactly its policies.
    let creates: Vec<(&str, String, Value)> = sets
        .iter()
        .map(|set| {
            let names: Vec<&str> = set.policies.iter().map(|p| p.name.as_str()).collect();
            (
                "POST",
                "auth/token/create".to_owned(),
                json!({ "policies": names, "no_default_policy": true, "ttl": "1h" }),
            )
        })
        .collect();
    let tokens: Vec<String> = bao
        .batch(&creates)
        .into_iter()
        .map(|(status, body)| {
            assert_eq!(status, 200, "seed {seed}: token create: {body}");
            body["auth"]["client_token"].as_str().unwrap().to_owned()
        })
        .collect();

    // 3. One capabilities request per set, for all its paths.
    let checks: Vec<(&str, String, Value)> = sets
        .iter()
        .zip(&tokens)
        .map(|(set, token)| {
            (
                "POST",
                "sys/capabilities".to_owned(),
                json!({ "token": token, "paths": set.paths }),
            )
        })
        .collect();
    let answers = bao.batch(&checks);

    let mut compared = 0usize;
    let mut granting = 0usize;
    let mut mismatched = 0usize;
    let mut mismatches: Vec<String> = Vec::new();
    for (index, (set, (status, body))) in sets.iter().zip(answers).enumerate() {
        assert_eq!(status, 200, "seed {seed}: capabilities: {body}");
        let policies: Vec<Arc<policy::Policy>> = set
            .policies
            .iter()
            .map(|p| {
                Arc::new(policy::parse(&p.name, &p.hcl).unwrap_or_else(|e| {
                    panic!("seed {seed}: we refused {}: {e}\n{}", p.name, p.hcl)
                }))
            })
            .collect();
        let acl = Acl::new(&policies, false);
        for path in &set.paths {
            assert_eq!(
                policy::canonicalize_request_path(path).as_deref(),
                Ok(path.as_str()),
                "generated path {path:?} is not canonical"
            );
            let mut theirs: Vec<String> = body["data"][path]
                .as_array()
                .unwrap_or_else(|| panic!("seed {seed}: no answer for {path:?} in {body}"))
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect();
            theirs.sort();
            let mut ours: Vec<String> = acl
                .capabilities(path)
                .to_vault_strings()
                .into_iter()
                .map(str::to_owned)
                .collect();
            ours.sort();
            compared += 1;
            if theirs != ["deny"] {
                granting += 1;
            }
            if theirs != ours {
                mismatched += 1;
            }
            if theirs != ours && mismatches.len() < 10 {
                let texts: Vec<String> = set
                    .policies
                    .iter()
                    .map(|p| format!("# policy {}\n{}", p.name, p.hcl))
                    .collect();
                mismatches.push(format!(
                    "seed {seed}, set {index}, path {path:?}: OpenBao {theirs:?}, keybroker {ours:?}\n{}",
                    texts.join("")
                ));
            }
        }
    }
    let elapsed = started.elapsed();
    println!(
        "policy_diff: {compared} (policy set, path) pairs in {POLICY_SETS} sets compared with \
         OpenBao in {elapsed:.1?}, {granting} of them granting something (seed {seed})"
    );
    assert!(
        mismatches.is_empty(),
        "{mismatched} of {compared} pairs differ (first ones below):\n\n{}",
        mismatches.join("\n")
    );
    assert!(compared >= 10_000, "only {compared} pairs compared");
    // A generator that only produced `deny` answers would prove nothing.
    assert!(
        granting * 3 >= compared,
        "only {granting} answers grant anything"
    );
}
