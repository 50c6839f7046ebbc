//! Key references: `c/<tenant id>/<key name>` for keys the plugin created, and
//! `b/<tenant id>/<key name>[/<version>]` for bound keys. Both carry the tenant, checked on
//! every use before Key Vault is called.
//!
//! Created keys are named `kb-` and the hex SHA-256 of `<tenant id> NUL <key id>` (67
//! characters): Key Vault names allow only `[0-9a-zA-Z-]`, up to 127 characters, and the
//! same broker key always maps to the same name (a repeated `create_key` adds a version).

use keybroker_plugin_abi::PluginError;
use sha2::{Digest as _, Sha256};

use crate::error::key_not_found;

/// How a key came to the broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// Created by this plugin, tagged with the tenant: deletable.
    Created,
    /// Bound by an operator: never deleted.
    Bound,
}

/// A parsed reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    pub origin: Origin,
    pub tenant_id: String,
    /// The Key Vault key name.
    pub name: String,
    /// A version pinned when binding (`name/version`); otherwise the current version.
    pub version: Option<String>,
}

/// The Key Vault name of the key the plugin creates for a broker key.
pub fn created_key_name(tenant_id: &str, key_id: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(tenant_id.as_bytes());
    hash.update([0]);
    hash.update(key_id.as_bytes());
    let digest = hash.finalize();
    let mut name = String::with_capacity(3 + 64);
    name.push_str("kb-");
    for byte in digest {
        name.push_str(&format!("{byte:02x}"));
    }
    name
}

/// A Key Vault key name: `[0-9a-zA-Z-]`, 1 to 127 characters.
pub fn is_key_name(text: &str) -> bool {
    (1..=127).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A Key Vault key version (32 hex digits in practice): alphanumeric, 1 to 64 characters.
pub fn is_key_version(text: &str) -> bool {
    (1..=64).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl Reference {
    pub fn created(tenant_id: &str, name: &str) -> Self {
        Self {
            origin: Origin::Created,
            tenant_id: tenant_id.to_owned(),
            name: name.to_owned(),
            version: None,
        }
    }

    pub fn bound(tenant_id: &str, name: &str, version: Option<&str>) -> Self {
        Self {
            origin: Origin::Bound,
            tenant_id: tenant_id.to_owned(),
            name: name.to_owned(),
            version: version.map(str::to_owned),
        }
    }

    pub fn encode(&self) -> String {
        let origin = match self.origin {
            Origin::Created => "c",
            Origin::Bound => "b",
        };
        match &self.version {
            Some(version) => format!("{origin}/{}/{}/{version}", self.tenant_id, self.name),
            None => format!("{origin}/{}/{}", self.tenant_id, self.name),
        }
    }

    /// Parses `text` and checks it belongs to `tenant_id`; anything else is
    /// `KEY_NOT_FOUND` with the same message (never naming the owner).
    pub fn for_tenant(text: &str, tenant_id: &str) -> Result<Self, PluginError> {
        let reference = Self::parse(text).ok_or_else(key_not_found)?;
        if reference.tenant_id != tenant_id {
            return Err(key_not_found());
        }
        Ok(reference)
    }

    fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split('/');
        let origin = parts.next()?;
        let tenant_id = parts.next()?;
        let name = parts.next()?;
        let version = parts.next();
        if tenant_id.is_empty() || !is_key_name(name) || parts.next().is_some() {
            return None;
        }
        let origin = match (origin, version) {
            ("c", None) => Origin::Created,
            ("b", None) => Origin::Bound,
            ("b", Some(version)) if is_key_version(version) => Origin::Bound,
            _ => return None,
        };
        Some(Self {
            origin,
            tenant_id: tenant_id.to_owned(),
            name: name.to_owned(),
            version: version.map(str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keybroker_plugin_abi::ErrorKind;

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
        let created = Reference::created("t1", "kb-00ff");
        assert_eq!(created.encode(), "c/t1/kb-00ff");
        assert_eq!(
            Reference::for_tenant(&created.encode(), "t1").unwrap(),
            created
        );
        for version in [None, Some("0123456789abcdef0123456789abcdef")] {
            let bound = Reference::bound("t1", "ops-key", version);
            assert_eq!(Reference::for_tenant(&bound.encode(), "t1").unwrap(), bound);
            let other = Reference::for_tenant(&bound.encode(), "t2").unwrap_err();
            assert_eq!(other.kind, ErrorKind::KEY_NOT_FOUND);
            assert!(!other.message.contains("t1"));
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
            let error = Reference::for_tenant(text, "t1").unwrap_err();
            assert_eq!(error.kind, ErrorKind::KEY_NOT_FOUND, "{text}");
        }
    }
}
