//! A token's policies compiled for lookups, with Vault's matching semantics
//! (`vault/acl.go`: `NewACL`, `AllowOperation`, `CheckAllowedFromNonExactPaths`).

use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::Arc;

use super::path::Pattern;
use super::{Capabilities, Capability, Policy};

/// The rules of a token's policies, merged and indexed. Build once per policy set and
/// share it; lookups do not allocate except for `+` patterns.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    root: bool,
    exact: HashMap<String, Capabilities>,
    /// Longest prefix first, so the first match is the longest.
    prefixes: Vec<(String, Capabilities)>,
    segment_wildcards: Vec<SegmentWildcardRule>,
}

#[derive(Debug, Clone)]
struct SegmentWildcardRule {
    /// The pattern without its trailing `*`.
    stem: String,
    /// `stem` split on `/`.
    segments: Vec<String>,
    /// The pattern ends in `*`.
    is_prefix: bool,
    /// Byte position of the first `+`.
    first_wildcard: usize,
    /// Number of `+` segments.
    wildcards: usize,
    capabilities: Capabilities,
}

/// A matching non-exact rule, ranked as Vault ranks them.
struct Candidate<'a> {
    rank: (usize, bool, Reverse<usize>, usize, &'a str),
    capabilities: Capabilities,
}

impl Acl {
    /// Compiles a token's policies. `root` makes every answer "everything" (the `root`
    /// policy is no HCL text, only this flag).
    ///
    /// Rules for the identical pattern are merged across policies: the union of their
    /// capabilities, or `deny` alone if any of them denies.
    pub fn new(policies: &[Arc<Policy>], root: bool) -> Acl {
        let mut merged: HashMap<&Pattern, Capabilities> = HashMap::new();
        for rule in policies.iter().flat_map(|policy| policy.rules()) {
            merged
                .entry(&rule.pattern)
                .and_modify(|existing| *existing = existing.union(rule.capabilities))
                .or_insert(rule.capabilities);
        }
        let mut acl = Acl {
            root,
            ..Acl::default()
        };
        for (pattern, capabilities) in merged {
            match pattern {
                Pattern::Exact(path) => {
                    acl.exact.insert(path.clone(), capabilities);
                }
                Pattern::Prefix(prefix) => acl.prefixes.push((prefix.clone(), capabilities)),
                Pattern::SegmentWildcard(written) => {
                    let is_prefix = written.ends_with('*');
                    let stem = written.strip_suffix('*').unwrap_or(written).to_owned();
                    let segments: Vec<String> = stem.split('/').map(str::to_owned).collect();
                    acl.segment_wildcards.push(SegmentWildcardRule {
                        first_wildcard: written.find('+').unwrap_or(written.len()),
                        wildcards: segments.iter().filter(|s| *s == "+").count(),
                        stem,
                        segments,
                        is_prefix,
                        capabilities,
                    });
                }
            }
        }
        acl.prefixes
            .sort_by(|(a, _), (b, _)| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        acl
    }

    /// What the token may do on `path`: the answer of Vault's `sys/capabilities`.
    ///
    /// `path` should be canonical ([`super::canonicalize_request_path`]); leading `/` are
    /// ignored as Vault does. Like Vault, the lookup is the one of a list request: for a path
    /// ending in `/`, an exact rule for the path without it applies, and so do the globs
    /// matching the path without it when none matches the path itself.
    pub fn capabilities(&self, path: &str) -> Capabilities {
        if self.root {
            return Capabilities::ROOT;
        }
        self.lookup(path, true).unwrap_or(Capabilities::NONE)
    }

    /// Whether a request needing `operation` on `path` is allowed, and, when
    /// `sudo_required` (root-protected paths), whether the same rule also grants `sudo`.
    ///
    /// Only a `list` request falls back from `path/` to the rules for `path`, as in Vault.
    pub fn allows(&self, path: &str, operation: Capability, sudo_required: bool) -> bool {
        if self.root {
            return operation != Capability::Deny;
        }
        let Some(capabilities) = self.lookup(path, operation == Capability::List) else {
            return false;
        };
        operation != Capability::Deny
            && capabilities.contains(operation)
            && (!sudo_required || capabilities.contains(Capability::Sudo))
    }

    /// Whether some rule grants anything on `mount` (a mount path, `transit/`) or below it:
    /// Vault's `hasMountAccess`, which decides the mounts `sys/internal/ui/mounts` shows.
    pub fn reaches_below(&self, mount: &str) -> bool {
        if self.root {
            return true;
        }
        let grants = |capabilities: &Capabilities| {
            !capabilities.is_denied() && *capabilities != Capabilities::NONE
        };
        if self.lookup(mount, true).is_some_and(|c| grants(&c)) {
            return true;
        }
        let bare = mount.trim_end_matches('/');
        let below = |path: &str| path == bare || path.starts_with(mount);
        if self.exact.iter().any(|(path, c)| below(path) && grants(c)) {
            return true;
        }
        if self
            .prefixes
            .iter()
            .any(|(prefix, c)| prefix.starts_with(mount) && grants(c))
        {
            return true;
        }
        let mount_parts: Vec<&str> = bare.split('/').collect();
        self.segment_wildcards.iter().any(|rule| {
            grants(&rule.capabilities)
                && rule.segments.len() > mount_parts.len()
                && rule
                    .segments
                    .iter()
                    .zip(&mount_parts)
                    .all(|(segment, part)| segment == "+" || segment == part)
        })
    }

    /// The capabilities of the one rule that applies, if any: an exact rule, else the most
    /// specific of the prefix and segment-wildcard rules that match.
    fn lookup(&self, path: &str, list: bool) -> Option<Capabilities> {
        let path = path.trim_start_matches('/');
        if let Some(capabilities) = self.exact.get(path) {
            return Some(*capabilities);
        }
        let trimmed = path.strip_suffix('/').filter(|_| list);
        if let Some(capabilities) = trimmed.and_then(|trimmed| self.exact.get(trimmed)) {
            return Some(*capabilities);
        }
        let mut best: Option<Candidate> = None;
        self.non_exact(path, &mut best);
        if best.is_none() {
            // Only when no glob matches `a/b/` does a list fall back to those matching `a/b`
            // (`a/+`, `a/b/+`): OpenBao's order, established by the differential test.
            if let Some(trimmed) = trimmed {
                self.non_exact(trimmed, &mut best);
            }
        }
        best.map(|candidate| candidate.capabilities)
    }

    /// Ranks the prefix and segment-wildcard rules matching `path` into `best`.
    ///
    /// Vault's priority, highest first: the first wildcard or glob comes later; not a
    /// prefix (no trailing `*`); fewer `+` segments; a longer pattern; the
    /// lexicographically larger pattern. A `*` pattern competes as a wildcard at the
    /// position of its `*`, so `a/b/+` beats `a/*`, and `a/b*` beats `a/+`.
    fn non_exact<'a>(&'a self, path: &str, best: &mut Option<Candidate<'a>>) {
        let mut offer = |candidate: Candidate<'a>| {
            if best.as_ref().is_none_or(|best| candidate.rank > best.rank) {
                *best = Some(candidate);
            }
        };
        // The first match is the longest prefix.
        if let Some((prefix, capabilities)) = self
            .prefixes
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix.as_str()))
        {
            offer(Candidate {
                rank: (
                    prefix.len(),
                    false,
                    Reverse(0),
                    prefix.len(),
                    prefix.as_str(),
                ),
                capabilities: *capabilities,
            });
        }
        if self.segment_wildcards.is_empty() {
            return;
        }
        let parts: Vec<&str> = path.split('/').collect();
        for rule in &self.segment_wildcards {
            if rule.matches(&parts) {
                offer(Candidate {
                    rank: (
                        rule.first_wildcard,
                        !rule.is_prefix,
                        Reverse(rule.wildcards),
                        rule.stem.len(),
                        rule.stem.as_str(),
                    ),
                    capabilities: rule.capabilities,
                });
            }
        }
    }
}

impl SegmentWildcardRule {
    fn matches(&self, parts: &[&str]) -> bool {
        if parts.len() < self.segments.len()
            || (!self.is_prefix && parts.len() != self.segments.len())
        {
            return false;
        }
        let last = self.segments.len() - 1;
        self.segments
            .iter()
            .zip(parts)
            .enumerate()
            .all(|(index, (segment, part))| {
                segment == "+"
                    || segment == part
                    || (self.is_prefix && index == last && part.starts_with(segment.as_str()))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{parse, DEFAULT_POLICY};

    /// Builds an ACL from policies given as lists of (pattern, capabilities).
    fn compile(policies: &[&[(&str, &[&str])]]) -> Acl {
        let policies: Vec<Arc<Policy>> = policies
            .iter()
            .enumerate()
            .map(|(index, rules)| {
                let text: String = rules
                    .iter()
                    .map(|(pattern, caps)| {
                        let caps: Vec<String> = caps.iter().map(|c| format!("\"{c}\"")).collect();
                        format!(
                            "path \"{pattern}\" {{\n  capabilities = [{}]\n}}\n",
                            caps.join(", ")
                        )
                    })
                    .collect();
                Arc::new(parse(&format!("p{index}"), &text).unwrap())
            })
            .collect();
        Acl::new(&policies, false)
    }

    fn answer(acl: &Acl, path: &str) -> Vec<&'static str> {
        acl.capabilities(path).to_vault_strings()
    }

    #[test]
    fn nothing_matches_means_deny() {
        let acl = compile(&[&[("transit/keys", &["read"])]]);
        assert_eq!(answer(&acl, "transit/keys/a"), vec!["deny"]);
        assert_eq!(answer(&acl, "sys/seal"), vec!["deny"]);
        assert_eq!(answer(&Acl::new(&[], false), "a"), vec!["deny"]);
    }

    #[test]
    fn exact_beats_any_glob() {
        let acl = compile(&[&[
            ("transit/keys/k", &["read"]),
            ("transit/keys/*", &["update"]),
            ("transit/+/k", &["list"]),
        ]]);
        assert_eq!(answer(&acl, "transit/keys/k"), vec!["read"]);
        assert_eq!(answer(&acl, "transit/keys/j"), vec!["update"]);
    }

    #[test]
    fn longest_prefix_wins_among_globs() {
        let acl = compile(&[&[
            ("*", &["list"]),
            ("transit/*", &["read"]),
            ("transit/encrypt/app-*", &["update"]),
        ]]);
        assert_eq!(answer(&acl, "transit/encrypt/app-1"), vec!["update"]);
        assert_eq!(answer(&acl, "transit/encrypt/other"), vec!["read"]);
        assert_eq!(answer(&acl, "sys/health"), vec!["list"]);
    }

    #[test]
    fn the_most_specific_rule_applies_alone() {
        // No union across different patterns: the specific rule's deny is all there is.
        let acl = compile(&[&[
            ("secret/*", &["read", "list"]),
            ("secret/private", &["deny"]),
        ]]);
        assert_eq!(answer(&acl, "secret/private"), vec!["deny"]);
        assert_eq!(answer(&acl, "secret/public"), vec!["read", "list"]);
        let acl = acl_single("secret/a*", &["update"], "secret/*", &["read"]);
        assert_eq!(answer(&acl, "secret/ab"), vec!["update"]);
    }

    fn acl_single(p1: &str, c1: &[&str], p2: &str, c2: &[&str]) -> Acl {
        compile(&[&[(p1, c1), (p2, c2)]])
    }

    #[test]
    fn later_first_wildcard_wins() {
        // foo/bar/+/baz beats foo/+/bar/baz; a glob later than the `+` beats it too.
        let acl = compile(&[&[("a/+/b/c", &["read"]), ("a/b/+/c", &["update"])]]);
        assert_eq!(answer(&acl, "a/b/b/c"), vec!["update"]);
        let acl = acl_single("a/b*", &["read"], "a/+", &["update"]);
        assert_eq!(answer(&acl, "a/bc"), vec!["read"]);
        // ...and a `+` later than a glob's `*` beats the shorter glob.
        let acl = acl_single("a/*", &["read"], "a/b/+", &["update"]);
        assert_eq!(answer(&acl, "a/b/c"), vec!["update"]);
        assert_eq!(answer(&acl, "a/c/c"), vec!["read"]);
    }

    #[test]
    fn not_a_prefix_beats_a_prefix() {
        // foo/+ over foo/*: same first wildcard position.
        let acl = acl_single("a/+", &["read"], "a/*", &["update"]);
        assert_eq!(answer(&acl, "a/b"), vec!["read"]);
        assert_eq!(answer(&acl, "a/b/c"), vec!["update"]);
        // foo/+/bar over foo/+/ba*.
        let acl = acl_single("a/+/keys", &["read"], "a/+/ke*", &["update"]);
        assert_eq!(answer(&acl, "a/x/keys"), vec!["read"]);
        assert_eq!(answer(&acl, "a/x/keysx"), vec!["update"]);
    }

    #[test]
    fn fewer_wildcards_win() {
        let acl = acl_single("a/+/+/d", &["read"], "a/+/c/d", &["update"]);
        assert_eq!(answer(&acl, "a/b/c/d"), vec!["update"]);
    }

    #[test]
    fn longer_wins_then_lexicographically_larger() {
        let acl = acl_single("a/+/b*", &["read"], "a/+/bc*", &["update"]);
        assert_eq!(answer(&acl, "a/x/bcd"), vec!["update"]);
        assert_eq!(answer(&acl, "a/x/bd"), vec!["read"]);
        let acl = acl_single("+/a", &["read"], "+/b", &["update"]);
        assert_eq!(answer(&acl, "x/a"), vec!["read"]);
        // Equal position, kind, count and length: the larger string wins.
        let acl = acl_single("+/+/y", &["read"], "+/x/+", &["update"]);
        assert_eq!(answer(&acl, "p/x/y"), vec!["update"]);
    }

    #[test]
    fn plus_matches_exactly_one_segment_even_an_empty_one() {
        let acl = compile(&[&[("a/+", &["read"])]]);
        assert_eq!(answer(&acl, "a/b"), vec!["read"]);
        assert_eq!(answer(&acl, "a/b/c"), vec!["deny"]);
        assert_eq!(answer(&acl, "a"), vec!["deny"]);
        // `a/` has an empty second segment.
        assert_eq!(answer(&acl, "a/"), vec!["read"]);
        let acl = compile(&[&[("a/+/*", &["read"])]]);
        assert_eq!(answer(&acl, "a/b/c/d"), vec!["read"]);
        assert_eq!(answer(&acl, "a/b/"), vec!["read"]);
        assert_eq!(answer(&acl, "a/b"), vec!["deny"]);
    }

    #[test]
    fn identical_patterns_merge_across_policies() {
        let acl = compile(&[
            &[("transit/encrypt/*", &["update"])],
            &[("transit/encrypt/*", &["create"]), ("transit/+", &["read"])],
            &[("transit/+", &["list"])],
        ]);
        assert_eq!(answer(&acl, "transit/encrypt/k"), vec!["update", "create"]);
        assert_eq!(answer(&acl, "transit/keys"), vec!["read", "list"]);
    }

    #[test]
    fn deny_in_a_merged_rule_denies_everything() {
        let acl = compile(&[
            &[("transit/*", &["read", "update", "sudo"])],
            &[("transit/*", &["deny"])],
        ]);
        assert_eq!(answer(&acl, "transit/keys"), vec!["deny"]);
        assert!(!acl.allows("transit/keys", Capability::Read, false));
    }

    #[test]
    fn deny_within_a_rule_overrides_its_grants() {
        let acl = compile(&[&[("a", &["read", "deny", "update"])]]);
        assert_eq!(answer(&acl, "a"), vec!["deny"]);
    }

    #[test]
    fn empty_rule_still_shadows_broader_rules() {
        let acl = compile(&[&[("a/*", &["read"]), ("a/b", &[])]]);
        assert_eq!(answer(&acl, "a/b"), vec!["deny"]);
        assert_eq!(answer(&acl, "a/c"), vec!["read"]);
    }

    #[test]
    fn trailing_slash_falls_back_for_list_only() {
        let acl = compile(&[&[("a/b", &["read", "list"])]]);
        assert_eq!(answer(&acl, "a/b/"), vec!["read", "list"]);
        assert!(acl.allows("a/b/", Capability::List, false));
        assert!(!acl.allows("a/b/", Capability::Read, false));
        // Globs matching `a/b/` itself come first...
        let acl = acl_single("a/+", &["read"], "a/b/*", &["update"]);
        assert_eq!(answer(&acl, "a/b/"), vec!["update"]);
        // ...and only when none does, those matching `a/b`, for a list only.
        let acl = compile(&[&[("a/+", &["read", "list"])]]);
        assert_eq!(answer(&acl, "a/b/"), vec!["read", "list"]);
        assert!(acl.allows("a/b/", Capability::List, false));
        assert!(!acl.allows("a/b/", Capability::Read, false));
        let acl = acl_single("a/+", &["list"], "*", &["update"]);
        assert_eq!(answer(&acl, "a/b/"), vec!["update"]);
    }

    #[test]
    fn paths_are_case_sensitive() {
        let acl = compile(&[&[("transit/*", &["update"])]]);
        assert_eq!(answer(&acl, "Transit/encrypt/k"), vec!["deny"]);
        assert!(!acl.allows("TRANSIT/encrypt/k", Capability::Update, false));
    }

    #[test]
    fn sudo_must_come_from_the_same_rule() {
        let acl = acl_single("sys/*", &["update", "sudo"], "sys/seal", &["update"]);
        assert!(acl.allows("sys/seal", Capability::Update, false));
        assert!(!acl.allows("sys/seal", Capability::Update, true));
        assert!(acl.allows("sys/step-down", Capability::Update, true));
    }

    #[test]
    fn root_grants_everything() {
        let acl = Acl::new(&[], true);
        assert_eq!(answer(&acl, "sys/anything"), vec!["root"]);
        assert!(acl.capabilities("x").contains(Capability::Sudo));
        assert!(acl.allows("sys/seal", Capability::Update, true));
        assert!(!acl.allows("sys/seal", Capability::Deny, false));
    }

    #[test]
    fn default_policy_is_token_self_service() {
        let default = Arc::new(parse("default", DEFAULT_POLICY).unwrap());
        let acl = Acl::new(&[default], false);
        assert_eq!(answer(&acl, "auth/token/lookup-self"), vec!["read"]);
        assert_eq!(answer(&acl, "auth/token/renew-self"), vec!["update"]);
        assert_eq!(answer(&acl, "auth/token/revoke-self"), vec!["update"]);
        assert_eq!(answer(&acl, "sys/capabilities-self"), vec!["update"]);
        assert_eq!(answer(&acl, "auth/token/create"), vec!["deny"]);
        assert_eq!(answer(&acl, "transit/encrypt/k"), vec!["deny"]);
    }

    #[test]
    fn a_mount_is_reached_by_any_rule_granting_below_it() {
        let acl = compile(&[&[
            ("transit/encrypt/app", &["update"]),
            ("kv/*", &["read"]),
            ("apps/+/keys", &["read"]),
            ("secret/*", &["deny"]),
        ]]);
        assert!(acl.reaches_below("transit/"));
        assert!(acl.reaches_below("kv/"));
        assert!(acl.reaches_below("apps/"));
        assert!(!acl.reaches_below("secret/"));
        assert!(!acl.reaches_below("other/"));
        assert!(!acl.reaches_below("transit2/"));
        let everything = compile(&[&[("*", &["read"])]]);
        assert!(everything.reaches_below("anything/"));
        assert!(Acl::new(&[], true).reaches_below("x/"));
        assert!(!Acl::new(&[], false).reaches_below("x/"));
    }
}
