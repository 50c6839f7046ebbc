//! Key references that carry their tenant: `<origin>/<tenant id>/<key>`, where the origin is
//! `c` for a key the plugin created and `b` for a key an operator bound, and `<key>` is the
//! plugin's own name for the key (a KMS key id or ARN, a Key Vault name and version, a
//! `CKA_ID`). Every use checks the tenant before the backend is asked; a reference that is
//! malformed or another tenant's is `KEY_NOT_FOUND`, never naming the owner.

use std::fmt;

use keybroker_plugin_abi::{ErrorKind, PluginError};
use sha2::{Digest as _, Sha256};

/// How a key came to the broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// Created by the plugin, marked as its tenant's: deletable.
    Created,
    /// Bound by an operator: never deleted by the broker.
    Bound,
}

impl Origin {
    /// The reference's first part: `c` or `b`.
    pub fn tag(self) -> &'static str {
        match self {
            Origin::Created => "c",
            Origin::Bound => "b",
        }
    }

    /// The origin a reference's first part names.
    pub fn from_tag(tag: &str) -> Option<Self> {
        match tag {
            "c" => Some(Origin::Created),
            "b" => Some(Origin::Bound),
            _ => None,
        }
    }
}

/// Why a reference was refused; both mean `KEY_NOT_FOUND` to the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not a reference of this plugin.
    Malformed,
    /// A well-formed reference of another tenant.
    OtherTenant,
}

/// `<origin>/<tenant id>/<key>`.
pub fn encode(origin: Origin, tenant_id: &str, key: &str) -> String {
    format!("{}/{tenant_id}/{key}", origin.tag())
}

/// The origin, tenant id (never empty) and key text of a reference, or `None` when it has
/// not that shape. The key text is everything after the second `/` and may itself hold `/`.
pub fn split(text: &str) -> Option<(Origin, &str, &str)> {
    let mut parts = text.splitn(3, '/');
    let origin = Origin::from_tag(parts.next()?)?;
    let tenant_id = parts.next()?;
    let key = parts.next()?;
    (!tenant_id.is_empty()).then_some((origin, tenant_id, key))
}

/// A parsed reference, whose key is the plugin's own type `K` (written with its `Display`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyReference<K> {
    /// Created or bound.
    pub origin: Origin,
    /// The tenant the key belongs to.
    pub tenant_id: String,
    /// The plugin's name for the key.
    pub key: K,
}

impl<K: fmt::Display> KeyReference<K> {
    /// The reference of a key the plugin created for `tenant_id`.
    pub fn created(tenant_id: &str, key: K) -> Self {
        Self {
            origin: Origin::Created,
            tenant_id: tenant_id.to_owned(),
            key,
        }
    }

    /// The reference of a key bound for `tenant_id`.
    pub fn bound(tenant_id: &str, key: K) -> Self {
        Self {
            origin: Origin::Bound,
            tenant_id: tenant_id.to_owned(),
            key,
        }
    }

    /// `<origin>/<tenant id>/<key>`.
    pub fn encode(&self) -> String {
        format!("{}/{}/{}", self.origin.tag(), self.tenant_id, self.key)
    }

    /// Parses `text`; `key` reads the key part for its origin (`None`: not a key of that
    /// origin).
    pub fn parse(text: &str, key: impl FnOnce(Origin, &str) -> Option<K>) -> Option<Self> {
        let (origin, tenant_id, key_text) = split(text)?;
        Some(Self {
            origin,
            tenant_id: tenant_id.to_owned(),
            key: key(origin, key_text)?,
        })
    }

    /// Parses `text` (see [`Self::parse`]) and checks that it belongs to `tenant_id`.
    pub fn for_tenant(
        text: &str,
        tenant_id: &str,
        key: impl FnOnce(Origin, &str) -> Option<K>,
    ) -> Result<Self, Refusal> {
        let reference = Self::parse(text, key).ok_or(Refusal::Malformed)?;
        if reference.tenant_id != tenant_id {
            return Err(Refusal::OtherTenant);
        }
        Ok(reference)
    }
}

/// The error for a reference of another tenant (or any refusal the caller must not tell
/// apart): `KEY_NOT_FOUND`, "key not found for this tenant".
pub fn key_not_found() -> PluginError {
    PluginError::new(ErrorKind::KEY_NOT_FOUND, "key not found for this tenant")
}

/// The error for a malformed reference: `KEY_NOT_FOUND`, "key not found: malformed key
/// reference".
pub fn malformed() -> PluginError {
    PluginError::new(
        ErrorKind::KEY_NOT_FOUND,
        "key not found: malformed key reference",
    )
}

/// The refusal to bind `backend_key`, which carries the tag `tenant_tag` a broker puts on the
/// keys it creates: `ACCESS_DENIED`, since only keys made outside the broker can be bound
/// (a created key stays its tenant's).
pub fn refuse_broker_key(backend_key: &str, tenant_tag: &str) -> PluginError {
    PluginError::new(
        ErrorKind::ACCESS_DENIED,
        format!(
            "cannot bind {backend_key:?}: it was created by a keybroker (it has a \
             {tenant_tag} tag); only keys made outside the broker can be bound"
        ),
    )
}

/// The backend name of the key a plugin creates for a broker key: `prefix` and the hex
/// SHA-256 of `<tenant id> NUL <key id>` (64 characters), so the same broker key always maps
/// to the same name, and names of different tenants or keys never meet.
pub fn created_key_name(prefix: &str, tenant_id: &str, key_id: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(tenant_id.as_bytes());
    hash.update([0]);
    hash.update(key_id.as_bytes());
    let digest = hash.finalize();
    let mut name = String::with_capacity(prefix.len() + 64);
    name.push_str(prefix);
    for byte in digest {
        name.push_str(&format!("{byte:02x}"));
    }
    name
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn any_key(_: Origin, key: &str) -> Option<String> {
        (!key.is_empty()).then(|| key.to_owned())
    }

    #[test]
    fn references_round_trip_and_carry_the_tenant() {
        let created = KeyReference::created("t1", "k/1".to_owned());
        assert_eq!(created.encode(), "c/t1/k/1");
        assert_eq!(
            KeyReference::for_tenant(&created.encode(), "t1", any_key).unwrap(),
            created
        );
        let bound = KeyReference::bound("t1", "arn".to_owned());
        assert_eq!(bound.encode(), encode(Origin::Bound, "t1", "arn"));
        assert_eq!(
            KeyReference::for_tenant(&bound.encode(), "t2", any_key),
            Err(Refusal::OtherTenant)
        );
    }

    #[test]
    fn malformed_references_are_refused() {
        for text in ["", "c", "c/t1", "c//k", "x/t1/k", "c/t1/"] {
            assert_eq!(
                KeyReference::for_tenant(text, "t1", any_key),
                Err(Refusal::Malformed),
                "{text}"
            );
        }
        assert_eq!(split("b/t/a/b"), Some((Origin::Bound, "t", "a/b")));
    }

    #[test]
    fn errors_never_name_the_owner() {
        for error in [key_not_found(), malformed()] {
            assert_eq!(error.kind, ErrorKind::KEY_NOT_FOUND);
        }
    }

    #[test]
    fn created_names_are_deterministic_and_distinct() {
        let name = created_key_name("kb-", "t1", "k1");
        assert_eq!(name.len(), 67);
        assert_eq!(name, created_key_name("kb-", "t1", "k1"));
        assert_ne!(name, created_key_name("kb-", "t1k", "1"));
        assert_ne!(name, created_key_name("kb-", "t2", "k1"));
    }
}
