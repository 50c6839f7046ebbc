//! Key references: `c/<tenant id>/<key name>` for keys the plugin created, and
//! `b/<tenant id>/<key name>[/<version>]` for bound keys. Both carry the tenant, checked on
//! every use before Key Vault is called.
//!
//! Created keys are named `kb-` and the hex SHA-256 of `<tenant id> NUL <key id>` (67
//! characters): Key Vault names allow only `[0-9a-zA-Z-]`, up to 127 characters, and the
//! same broker key always maps to the same name (a repeated `create_key` adds a version).

use std::fmt;

use keybroker_plugin_abi::PluginError;
use keybroker_plugin_sdk::reference::KeyReference;
pub(crate) use keybroker_plugin_sdk::reference::Origin;

use crate::error::key_not_found;

/// A parsed reference: its `key` is a Key Vault key name and an optional version.
pub(crate) type Reference = KeyReference<VaultKey>;

/// The key part of a reference: `<name>` or `<name>/<version>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct VaultKey {
    /// The Key Vault key name.
    pub name: String,
    /// A version pinned when binding (`name/version`); otherwise the current version.
    pub version: Option<String>,
}

impl VaultKey {
    /// The current version of `name`.
    pub(crate) fn latest(name: &str) -> Self {
        Self::new(name, None)
    }

    /// `name`, at `version` if given.
    pub(crate) fn new(name: &str, version: Option<&str>) -> Self {
        Self {
            name: name.to_owned(),
            version: version.map(str::to_owned),
        }
    }

    /// Reads the key part of a reference of `origin`: only bound keys pin a version.
    fn parse(origin: Origin, text: &str) -> Option<Self> {
        let (name, version) = match text.split_once('/') {
            Some((name, version)) => (name, Some(version)),
            None => (text, None),
        };
        let valid = is_key_name(name)
            && match (origin, version) {
                (_, None) => true,
                (Origin::Bound, Some(version)) => is_key_version(version),
                (Origin::Created, Some(_)) => false,
            };
        valid.then(|| Self::new(name, version))
    }
}

impl fmt::Display for VaultKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.version {
            Some(version) => write!(f, "{}/{version}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Parses `text` and checks it belongs to `tenant_id`; anything else is `KEY_NOT_FOUND` with
/// the same message (never naming the owner).
pub(crate) fn for_tenant(text: &str, tenant_id: &str) -> Result<Reference, PluginError> {
    Reference::for_tenant(text, tenant_id, VaultKey::parse).map_err(|_| key_not_found())
}

/// The Key Vault name of the key the plugin creates for a broker key.
pub fn created_key_name(tenant_id: &str, key_id: &str) -> String {
    keybroker_plugin_sdk::reference::created_key_name("kb-", tenant_id, key_id)
}

/// A Key Vault key name: `[0-9a-zA-Z-]`, 1 to 127 characters.
pub(crate) fn is_key_name(text: &str) -> bool {
    (1..=127).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A Key Vault key version (32 hex digits in practice): alphanumeric, 1 to 64 characters.
pub(crate) fn is_key_version(text: &str) -> bool {
    (1..=64).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;
    use keybroker_plugin_abi::ErrorKind;
    use keybroker_plugin_conformance::calls::assert_hides_owner;

    #[test]
    fn created_names_are_valid_and_deterministic() {
        let name = created_key_name("t1", "k1");
        assert!(is_key_name(&name), "{name}");
        assert_eq!(name.len(), 67);
        assert_eq!(name, created_key_name("t1", "k1"));
        assert_ne!(name, created_key_name("t1k", "1"));
        assert_ne!(name, created_key_name("t2", "k1"));
    }

    #[test]
    fn references_round_trip_and_carry_the_tenant() {
        let created = Reference::created("t1", VaultKey::latest("kb-00ff"));
        assert_eq!(created.encode(), "c/t1/kb-00ff");
        assert_eq!(for_tenant(&created.encode(), "t1").unwrap(), created);
        for version in [None, Some("0123456789abcdef0123456789abcdef")] {
            let bound = Reference::bound("t1", VaultKey::new("ops-key", version));
            assert_eq!(for_tenant(&bound.encode(), "t1").unwrap(), bound);
            assert_hides_owner(for_tenant(&bound.encode(), "t2"), "t1");
        }
    }

    #[test]
    fn made_up_references_are_not_found() {
        for text in [
            "",
            "not a reference",
            "c/t1/bad_name",
            "c/t1/kb-1/version",
            "b/t1/k/v/extra",
            "b/t1/k/ver-sion",
            "c//kb-1",
            "x/t1/kb-1",
        ] {
            let error = for_tenant(text, "t1").unwrap_err();
            assert_eq!(error.kind, ErrorKind::KEY_NOT_FOUND, "{text}");
        }
    }
}
