//! Capabilities and the small bitset the ACL computes with.

use std::fmt;

/// One capability a policy rule can grant (Vault's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Capability {
    /// `create`: write to a path that does not exist yet.
    Create,
    /// `read`.
    Read,
    /// `update`: write to an existing path (and most `POST`s: encrypt, decrypt, login...).
    Update,
    /// `patch`.
    Patch,
    /// `delete`.
    Delete,
    /// `list`.
    List,
    /// `sudo`: needed in addition on root-protected paths.
    Sudo,
    /// `deny`: overrides every other capability of the rule it is in.
    Deny,
}

impl Capability {
    /// Every capability, in the order Vault reports them (`deny` last: it is never reported
    /// beside another).
    pub const ALL: [Capability; 8] = [
        Capability::Sudo,
        Capability::Read,
        Capability::List,
        Capability::Update,
        Capability::Delete,
        Capability::Create,
        Capability::Patch,
        Capability::Deny,
    ];

    /// Vault's name for the capability.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Create => "create",
            Capability::Read => "read",
            Capability::Update => "update",
            Capability::Patch => "patch",
            Capability::Delete => "delete",
            Capability::List => "list",
            Capability::Sudo => "sudo",
            Capability::Deny => "deny",
        }
    }

    /// The capability called `name` in a policy, if there is one.
    pub fn from_name(name: &str) -> Option<Capability> {
        Capability::ALL.into_iter().find(|c| c.as_str() == name)
    }

    // Bit values as in Vault's `policy.go`, so a bitmap reads the same in both.
    fn bit(self) -> u16 {
        match self {
            Capability::Deny => 1 << 0,
            Capability::Create => 1 << 1,
            Capability::Read => 1 << 2,
            Capability::Update => 1 << 3,
            Capability::Delete => 1 << 4,
            Capability::List => 1 << 5,
            Capability::Sudo => 1 << 6,
            Capability::Patch => 1 << 7,
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Marks the answer for a root token: everything is granted.
const ROOT_BIT: u16 = 1 << 15;
/// Every grantable capability (all but `deny`).
const GRANTS: u16 = (1 << 1) | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7);

/// A set of capabilities: what one rule grants, or what a token may do on one path.
///
/// A set holding `deny` grants nothing, whatever else it holds.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Capabilities(u16);

impl Capabilities {
    /// Nothing granted.
    pub const NONE: Capabilities = Capabilities(0);
    /// What a root token has: everything, `sudo` included.
    pub const ROOT: Capabilities = Capabilities(ROOT_BIT | GRANTS);

    /// Whether `capability` is granted. `deny` is "contained" only in an explicitly denied
    /// set; in such a set no other capability is.
    pub fn contains(self, capability: Capability) -> bool {
        if capability == Capability::Deny {
            return self.is_denied();
        }
        !self.is_denied() && self.0 & capability.bit() != 0
    }

    /// Whether the set is an explicit `deny`.
    pub fn is_denied(self) -> bool {
        self.0 & Capability::Deny.bit() != 0
    }

    /// Whether this is a root token's answer.
    pub fn is_root(self) -> bool {
        self.0 & ROOT_BIT != 0
    }

    /// The set with `capability` added. Adding `deny` leaves only `deny`, as in Vault.
    #[must_use]
    pub fn with(self, capability: Capability) -> Capabilities {
        self.union(Capabilities(capability.bit()))
    }

    /// Vault's merge of two rules for the identical pattern: a `deny` on either side wins,
    /// otherwise the union.
    #[must_use]
    pub fn union(self, other: Capabilities) -> Capabilities {
        let merged = self.0 | other.0;
        if merged & Capability::Deny.bit() != 0 {
            Capabilities(Capability::Deny.bit())
        } else {
            Capabilities(merged)
        }
    }

    /// The answer of Vault's `sys/capabilities` for this set, in Vault's order: `["root"]`
    /// for a root token, `["deny"]` when nothing is granted.
    pub fn to_vault_strings(self) -> Vec<&'static str> {
        if self.is_root() {
            return vec!["root"];
        }
        let granted: Vec<&'static str> = Capability::ALL
            .into_iter()
            .filter(|c| *c != Capability::Deny && self.contains(*c))
            .map(Capability::as_str)
            .collect();
        if granted.is_empty() {
            vec![Capability::Deny.as_str()]
        } else {
            granted
        }
    }
}

impl FromIterator<Capability> for Capabilities {
    fn from_iter<I: IntoIterator<Item = Capability>>(iter: I) -> Self {
        iter.into_iter()
            .fold(Capabilities::NONE, Capabilities::with)
    }
}

impl fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.to_vault_strings()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for capability in Capability::ALL {
            assert_eq!(Capability::from_name(capability.as_str()), Some(capability));
        }
        assert_eq!(Capability::from_name("root"), None);
        assert_eq!(Capability::from_name("scan"), None);
        assert_eq!(Capability::from_name("READ"), None);
    }

    #[test]
    fn deny_wins_in_a_set_and_in_a_merge() {
        let read_deny: Capabilities = [Capability::Read, Capability::Deny].into_iter().collect();
        assert!(!read_deny.contains(Capability::Read));
        assert!(read_deny.contains(Capability::Deny));
        assert_eq!(read_deny.to_vault_strings(), vec!["deny"]);

        let read: Capabilities = [Capability::Read].into_iter().collect();
        let deny: Capabilities = [Capability::Deny].into_iter().collect();
        assert_eq!(read.union(deny), deny);
        assert_eq!(deny.union(read), deny);
    }

    #[test]
    fn vault_order_and_empty_set() {
        let set: Capabilities = [
            Capability::Patch,
            Capability::Create,
            Capability::Delete,
            Capability::Update,
            Capability::List,
            Capability::Read,
            Capability::Sudo,
        ]
        .into_iter()
        .collect();
        assert_eq!(
            set.to_vault_strings(),
            vec!["sudo", "read", "list", "update", "delete", "create", "patch"]
        );
        assert_eq!(Capabilities::NONE.to_vault_strings(), vec!["deny"]);
        assert!(!Capabilities::NONE.contains(Capability::Deny));
    }

    #[test]
    fn root_grants_everything_but_deny() {
        assert_eq!(Capabilities::ROOT.to_vault_strings(), vec!["root"]);
        for capability in Capability::ALL {
            assert_eq!(
                Capabilities::ROOT.contains(capability),
                capability != Capability::Deny
            );
        }
    }
}
