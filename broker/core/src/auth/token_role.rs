//! Token roles (Vault's `auth/token/roles/:name`, used by `auth/token/create/:name`): what a
//! token created against a role may carry, per tenant.
//!
//! Vault's semantics, with this project's stricter authority rule (ARCHITECTURE.md §2b: no
//! caller grants what it does not hold):
//! - **Policies of a created token** ([`TokenRole::token_policies`]): the requested ones,
//!   or else the role's `allowed_policies`, or else (no allowed set) the creator's. With an
//!   allowed set (`allowed_policies` or `allowed_policies_glob`), every policy must be in it
//!   or match one of its globs; without one, every policy must be the creator's (Vault does
//!   not check that when the role has only a disallowed set; we do, unless the creator is
//!   root). No policy may be in `disallowed_policies` or match `disallowed_policies_glob`.
//!   `default` is added unless the request or role says `no_default_policy`, or the role
//!   disallows it. `root` is never given by a role, whatever its globs.
//! - **Writing a role** ([`TokenRole::grants_beyond`]): a role that would let tokens get
//!   more than its writer holds needs root, or `sudo` on the role's path. That is a role
//!   naming in `allowed_policies` a policy the writer's token does not carry (`default`
//!   aside; a writer from another namespace carries none of the tenant's), any
//!   `allowed_policies_glob` (it names policies not yet written), `orphan` (a token outliving
//!   its creator), or a period (as `auth/token/create` asks for periodic tokens). `root` in
//!   `allowed_policies` is refused to everyone.
//! - Roles live per tenant: the request's tenant is the only one whose roles are seen.

use serde::{Deserialize, Serialize};

use super::token::{DEFAULT_POLICY, ROOT_POLICY};
use crate::error::{Error, Result};

/// Longest role name, in bytes.
pub const MAX_ROLE_NAME_LEN: usize = 128;

/// A token role as stored (Vault's `tsRoleEntry`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TokenRole {
    /// The role's name.
    pub name: String,
    /// Policies a token may get (none: the creator's).
    pub allowed_policies: Vec<String>,
    /// Policies a token may never get.
    pub disallowed_policies: Vec<String>,
    /// Globs (`*`) of policies a token may get.
    pub allowed_policies_glob: Vec<String>,
    /// Globs (`*`) of policies a token may never get.
    pub disallowed_policies_glob: Vec<String>,
    /// Tokens have no parent.
    pub orphan: bool,
    /// Tokens may be renewed.
    pub renewable: bool,
    /// Appended to the tokens' creation path.
    pub path_suffix: String,
    /// Period of the tokens, seconds (0: not periodic).
    pub token_period: u64,
    /// The deprecated `period` as written (Vault reads it back apart).
    pub period: u64,
    /// Hard limit on the tokens' lifetime, seconds (0: none).
    pub token_explicit_max_ttl: u64,
    /// The deprecated `explicit_max_ttl` as written.
    pub explicit_max_ttl: u64,
    /// Leave `default` out of the tokens.
    pub token_no_default_policy: bool,
    /// Uses of each token (0: unlimited).
    pub token_num_uses: u64,
    /// Vault's `token_type`: only service tokens exist here, so `service` or
    /// `default-service` (empty: `default-service`).
    pub token_type: String,
}

impl TokenRole {
    /// A new role with Vault's defaults (`renewable`).
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            renewable: true,
            ..Self::default()
        }
    }

    /// Checks what a write must not store: a bad name, `root` among the allowed policies, a
    /// path suffix that climbs.
    pub fn validate(&self) -> Result<()> {
        check_name(&self.name)?;
        if self.allowed_policies.iter().any(|p| p == ROOT_POLICY) {
            return Err(Error::invalid(
                "allowed_policies cannot contain \"root\": token roles never give root",
            ));
        }
        if !self.path_suffix.is_empty() && !vault_path_suffix(&self.path_suffix) {
            return Err(Error::invalid(
                "given role path suffix contains invalid characters; must match \\w[\\w-.]+\\w",
            ));
        }
        if self.path_suffix.contains("..") {
            return Err(Error::invalid(
                "error registering path suffix: path cannot contain parent references",
            ));
        }
        Ok(())
    }

    /// Why writing this role needs root or `sudo` from a writer carrying `writer_policies`
    /// in the role's tenant (`None`: it grants nothing beyond them).
    pub fn grants_beyond(&self, writer_policies: &[String]) -> Option<String> {
        if writer_policies.iter().any(|p| p == ROOT_POLICY) {
            return None;
        }
        if let Some(policy) = self
            .allowed_policies
            .iter()
            .find(|p| *p != DEFAULT_POLICY && !writer_policies.contains(p))
        {
            return Some(format!(
                "allowed_policies names {policy:?}, a policy the writer does not hold"
            ));
        }
        if !self.allowed_policies_glob.is_empty() {
            return Some(
                "allowed_policies_glob can grant policies the writer does not hold".into(),
            );
        }
        if self.orphan {
            return Some("orphan tokens outlive their creator".into());
        }
        if self.token_period > 0 {
            return Some("periodic tokens need root or sudo".into());
        }
        None
    }

    /// The policies of a token created against this role by a creator carrying
    /// `creator_policies`, from the `requested` ones (see the module doc).
    pub fn token_policies(
        &self,
        requested: &[String],
        no_default_policy: bool,
        creator_policies: &[String],
    ) -> Result<Vec<String>> {
        let add_default = !no_default_policy
            && !self.token_no_default_policy
            && !self.disallowed_policies.iter().any(|p| p == DEFAULT_POLICY)
            && !glob_list_matches(&self.disallowed_policies_glob, DEFAULT_POLICY);
        let has_allowed_set =
            !self.allowed_policies.is_empty() || !self.allowed_policies_glob.is_empty();
        let creator_is_root = creator_policies.iter().any(|p| p == ROOT_POLICY);
        let mut policies = if !requested.is_empty() {
            sanitize(requested, add_default)
        } else if has_allowed_set {
            sanitize(&self.allowed_policies, add_default)
        } else {
            sanitize(creator_policies, add_default)
        };
        if has_allowed_set {
            let allowed = sanitize(&self.allowed_policies, add_default);
            if policies
                .iter()
                .any(|p| !allowed.contains(p) && !glob_list_matches(&self.allowed_policies_glob, p))
            {
                return Err(Error::invalid(format!(
                    "token policies ({}) must be subset of the role's allowed policies ({}) or glob policies ({})",
                    quoted(&policies),
                    quoted(&allowed),
                    quoted(&self.allowed_policies_glob),
                )));
            }
        } else if !creator_is_root {
            // Stricter than Vault: without an allowed set, a role hands out no more than
            // its creator holds.
            if policies
                .iter()
                .any(|p| p != DEFAULT_POLICY && !creator_policies.contains(p))
            {
                return Err(Error::invalid(
                    "child policies must be subset of parent when role contains no allowed_policies",
                ));
            }
        }
        if let Some(policy) = policies.iter().find(|p| {
            self.disallowed_policies.contains(p)
                || glob_list_matches(&self.disallowed_policies_glob, p)
        }) {
            return Err(Error::invalid(format!(
                "token policy {policy:?} is disallowed by this role"
            )));
        }
        if policies.iter().any(|p| p == ROOT_POLICY) {
            return Err(Error::invalid(
                "token roles never create root tokens: \"root\" is not allowed",
            ));
        }
        if no_default_policy || self.token_no_default_policy {
            policies.retain(|p| p != DEFAULT_POLICY);
        }
        Ok(policies)
    }

    /// The period of a created token: the lesser of the role's and the request's.
    pub fn period(&self, requested: Option<u64>) -> Option<u64> {
        lesser(self.token_period, requested)
    }

    /// The explicit maximum TTL of a created token: the lesser of the role's and the
    /// request's.
    pub fn explicit_max_ttl(&self, requested: Option<u64>) -> Option<u64> {
        lesser(self.token_explicit_max_ttl, requested)
    }

    /// The use count of a created token: the role's caps the request's (0: unlimited).
    pub fn num_uses(&self, requested: u64) -> u64 {
        match (self.token_num_uses, requested) {
            (0, requested) => requested,
            (role, 0) => role,
            (role, requested) => role.min(requested),
        }
    }
}

fn lesser(role: u64, requested: Option<u64>) -> Option<u64> {
    match (role, requested.filter(|r| *r > 0)) {
        (0, requested) => requested,
        (role, None) => Some(role),
        (role, Some(requested)) => Some(role.min(requested)),
    }
}

/// A role name as Vault's `GenericNameRegex` takes it: letters, digits, `_`, `-` and `.`,
/// starting and ending with a letter, digit or `_`.
pub fn check_name(name: &str) -> Result<()> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let ok = !name.is_empty()
        && name.len() <= MAX_ROLE_NAME_LEN
        && name.chars().all(|c| word(c) || c == '-' || c == '.')
        && name.starts_with(word)
        && name.ends_with(word);
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid role name: use 1-{MAX_ROLE_NAME_LEN} letters, digits, '_', '-' or '.'"
        )))
    }
}

/// Whether `suffix` passes Vault's check of a role's path suffix: it contains a match of
/// `\w[\w-.]+\w` (unanchored, as Vault's `MatchString`).
fn vault_path_suffix(suffix: &str) -> bool {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    suffix
        .split(|c: char| !(word(c) || c == '-' || c == '.'))
        .any(|run| {
            let first = run.find(word);
            let last = run.rfind(word);
            matches!((first, last), (Some(first), Some(last)) if last >= first + 2)
        })
}

/// Vault's `SanitizePolicies`: trimmed, lowercase, without empties and duplicates, sorted,
/// with `default` added when asked.
pub fn sanitize(policies: &[String], add_default: bool) -> Vec<String> {
    let mut out: Vec<String> = policies
        .iter()
        .map(|p| p.trim().to_ascii_lowercase())
        .filter(|p| !p.is_empty())
        .collect();
    if add_default && !out.iter().any(|p| p == ROOT_POLICY) {
        out.push(DEFAULT_POLICY.to_owned());
    }
    out.sort();
    out.dedup();
    out
}

/// Whether `value` matches one of `globs` (`*` stands for any text, as in Vault's
/// `StrListContainsGlob`).
pub fn glob_list_matches(globs: &[String], value: &str) -> bool {
    // The JWT method's bound-claim globs have the same rule.
    globs.iter().any(|glob| super::jwt::glob_match(glob, value))
}

fn quoted(list: &[String]) -> String {
    let items: Vec<String> = list.iter().map(|p| format!("{p:?}")).collect();
    format!("[{}]", items.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn role() -> TokenRole {
        TokenRole::new("r")
    }

    #[test]
    fn globs_match_as_vault_does() {
        assert!(crate::auth::jwt::glob_match("dev-*", "dev-a"));
        assert!(crate::auth::jwt::glob_match("*-ro", "app-ro"));
        assert!(crate::auth::jwt::glob_match("a*b*c", "axxbyyc"));
        assert!(!crate::auth::jwt::glob_match("a*b*c", "axxc"));
        assert!(!crate::auth::jwt::glob_match("dev-*", "prod-a"));
        assert!(crate::auth::jwt::glob_match("exact", "exact"));
        assert!(!crate::auth::jwt::glob_match("ab*ba", "aba"));
    }

    #[test]
    fn with_an_allowed_set_tokens_get_it_or_a_subset() {
        let role = TokenRole {
            allowed_policies: list(&["a", "b"]),
            ..role()
        };
        assert_eq!(
            role.token_policies(&[], false, &list(&["x"])).unwrap(),
            ["a", "b", "default"]
        );
        assert_eq!(
            role.token_policies(&list(&["a"]), false, &[]).unwrap(),
            ["a", "default"]
        );
        let error = role
            .token_policies(&list(&["a", "c"]), false, &list(&["c"]))
            .unwrap_err();
        assert!(
            matches!(error, Error::InvalidRequest(m) if m.contains("must be subset of the role's allowed policies"))
        );
        assert_eq!(
            role.token_policies(&[], true, &[]).unwrap(),
            ["a", "b"],
            "no_default_policy leaves default out"
        );
    }

    #[test]
    fn allowed_globs_admit_matching_policies_only() {
        let role = TokenRole {
            allowed_policies_glob: list(&["dev-*"]),
            ..role()
        };
        assert_eq!(
            role.token_policies(&list(&["dev-a"]), false, &[]).unwrap(),
            ["default", "dev-a"]
        );
        assert!(role.token_policies(&list(&["prod"]), false, &[]).is_err());
    }

    #[test]
    fn disallowed_policies_and_globs_are_never_given() {
        let role = TokenRole {
            allowed_policies: list(&["a", "secret"]),
            disallowed_policies: list(&["secret"]),
            disallowed_policies_glob: list(&["adm*"]),
            ..role()
        };
        let error = role.token_policies(&[], false, &[]).unwrap_err();
        assert!(
            matches!(error, Error::InvalidRequest(m) if m == "token policy \"secret\" is disallowed by this role")
        );
        let role = TokenRole {
            disallowed_policies_glob: list(&["adm*"]),
            ..self::role()
        };
        assert!(role
            .token_policies(&list(&["admin"]), false, &list(&["admin"]))
            .is_err());
        let role = TokenRole {
            disallowed_policies: list(&["default"]),
            ..self::role()
        };
        assert_eq!(
            role.token_policies(&[], false, &list(&["a"])).unwrap(),
            ["a"],
            "a disallowed default is not added"
        );
    }

    #[test]
    fn without_an_allowed_set_tokens_get_no_more_than_their_creator() {
        let role = TokenRole {
            disallowed_policies: list(&["x"]),
            ..role()
        };
        assert_eq!(
            role.token_policies(&[], false, &list(&["a", "b"])).unwrap(),
            ["a", "b", "default"]
        );
        // Vault lets this through; we do not.
        assert!(role
            .token_policies(&list(&["c"]), false, &list(&["a"]))
            .is_err());
        assert!(role
            .token_policies(&list(&["c"]), false, &list(&["root"]))
            .is_ok());
    }

    #[test]
    fn roles_never_give_root() {
        let role = TokenRole {
            allowed_policies_glob: list(&["*"]),
            ..role()
        };
        assert!(role
            .token_policies(&list(&["root"]), false, &list(&["root"]))
            .is_err());
        let role = TokenRole {
            allowed_policies: list(&["root"]),
            ..self::role()
        };
        assert!(role.validate().is_err());
        assert!(self::role()
            .token_policies(&[], false, &list(&["root"]))
            .is_err());
    }

    #[test]
    fn writing_a_role_beyond_the_writers_policies_needs_authority() {
        let writer = list(&["a", "default"]);
        let fine = TokenRole {
            allowed_policies: list(&["a", "default"]),
            disallowed_policies: list(&["z"]),
            ..role()
        };
        assert_eq!(fine.grants_beyond(&writer), None);
        assert_eq!(role().grants_beyond(&writer), None);
        for beyond in [
            TokenRole {
                allowed_policies: list(&["b"]),
                ..role()
            },
            TokenRole {
                allowed_policies_glob: list(&["a*"]),
                ..role()
            },
            TokenRole {
                orphan: true,
                ..role()
            },
            TokenRole {
                token_period: 60,
                ..role()
            },
        ] {
            assert!(beyond.grants_beyond(&writer).is_some(), "{beyond:?}");
            assert_eq!(beyond.grants_beyond(&list(&["root"])), None);
        }
    }

    #[test]
    fn lifetimes_take_the_lesser_of_role_and_request() {
        let role = TokenRole {
            token_period: 60,
            token_explicit_max_ttl: 600,
            token_num_uses: 3,
            ..role()
        };
        assert_eq!(role.period(None), Some(60));
        assert_eq!(role.period(Some(30)), Some(30));
        assert_eq!(role.period(Some(90)), Some(60));
        assert_eq!(role.explicit_max_ttl(Some(6000)), Some(600));
        assert_eq!(self::role().explicit_max_ttl(Some(5)), Some(5));
        assert_eq!(role.num_uses(0), 3);
        assert_eq!(role.num_uses(5), 3);
        assert_eq!(self::role().num_uses(5), 5);
    }

    #[test]
    fn path_suffixes_are_checked_as_vault_checks_them() {
        for good in ["rev-1", "v1.0", "abc"] {
            assert!(vault_path_suffix(good), "{good}");
        }
        for bad in ["v1", "-a-", "a/b"] {
            assert!(!vault_path_suffix(bad), "{bad}");
        }
    }

    #[test]
    fn names_are_vaults_generic_names() {
        for good in ["r", "a.b-c_d", "_x", "role1"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-a", "a-", "a/b", "a b", ".."] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
