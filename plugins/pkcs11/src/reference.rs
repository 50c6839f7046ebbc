//! Key references and object labels.
//!
//! - A key the broker created: `c/<tenant_id>/<32 lowercase hex of CKA_ID>`; every object of
//!   it (the AES key, or the private and public key of a pair) has that `CKA_ID` and the
//!   label `keybroker:<tenant_id>:<key_id>`.
//! - A key that already existed in the HSM and was bound: `b/<tenant_id>/<hex of CKA_ID>`.
//!
//! The tenant in the reference must be the tenant of the request, and on every load the
//! object's label must say the same (created keys) or must not be the broker's (bound keys);
//! anything else is "key not found for this tenant", never naming the owner.

use keybroker_plugin_abi::PluginError;
pub(crate) use keybroker_plugin_sdk::reference::Origin;
use keybroker_plugin_sdk::reference::{self as tagged, key_not_found, malformed};

/// Label prefix of every object the broker creates.
pub(crate) const BROKER_LABEL_PREFIX: &str = "keybroker:";
/// Length of the `CKA_ID` of a created key, in bytes.
pub(crate) const CREATED_ID_LEN: usize = 16;
/// Longest `CKA_ID` accepted in a bound reference, in bytes.
const BOUND_ID_MAX: usize = 128;

/// A parsed reference whose tenant matched the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeyRef {
    pub(crate) origin: Origin,
    pub(crate) id: Vec<u8>,
    /// For created keys, the label prefix every object of the key carries.
    label_prefix: String,
}

impl KeyRef {
    /// Whether an object with this label may serve this reference.
    pub(crate) fn accepts_label(&self, label: &[u8]) -> bool {
        match self.origin {
            Origin::Created => label.starts_with(self.label_prefix.as_bytes()),
            Origin::Bound => !is_broker_label(label),
        }
    }
}

/// Whether a label is one the broker gives the objects it creates.
pub(crate) fn is_broker_label(label: &[u8]) -> bool {
    label.starts_with(BROKER_LABEL_PREFIX.as_bytes())
}

/// Refuses tenant ids that cannot be written into a reference and a label.
pub(crate) fn check_tenant_id(tenant_id: &str) -> Result<(), PluginError> {
    if tenant_id.is_empty() || tenant_id.contains('/') || tenant_id.contains(':') {
        return Err(PluginError::invalid_request(
            "tenant_id must be non-empty and must not contain '/' or ':'",
        ));
    }
    Ok(())
}

/// `keybroker:<tenant_id>:`.
pub(crate) fn label_prefix(tenant_id: &str) -> String {
    format!("{BROKER_LABEL_PREFIX}{tenant_id}:")
}

/// `keybroker:<tenant_id>:<key_id>`.
pub(crate) fn created_label(tenant_id: &str, key_id: &str) -> String {
    format!("{}{key_id}", label_prefix(tenant_id))
}

/// The reference of a key.
pub(crate) fn format(origin: Origin, tenant_id: &str, id: &[u8]) -> String {
    tagged::encode(origin, tenant_id, &hex::encode(id))
}

/// Parses `reference` for a request made by `tenant_id`.
pub(crate) fn parse(tenant_id: &str, reference: &str) -> Result<KeyRef, PluginError> {
    let Some((origin, owner, id_hex)) = tagged::split(reference) else {
        return Err(malformed());
    };
    let lowercase_hex = !id_hex.is_empty()
        && id_hex.len() % 2 == 0
        && id_hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let id = match hex::decode(id_hex) {
        Ok(id) if lowercase_hex => id,
        _ => return Err(malformed()),
    };
    let id_fits = match origin {
        Origin::Created => id.len() == CREATED_ID_LEN,
        Origin::Bound => id.len() <= BOUND_ID_MAX,
    };
    if owner.is_empty() || owner.contains(':') || !id_fits {
        return Err(malformed());
    }
    if owner != tenant_id {
        return Err(key_not_found());
    }
    Ok(KeyRef {
        origin,
        id,
        label_prefix: label_prefix(tenant_id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use keybroker_plugin_abi::ErrorKind;

    const ID: [u8; 16] = [0xab; 16];

    #[test]
    fn references_round_trip_and_check_the_tenant() {
        let created = format(Origin::Created, "acme", &ID);
        assert_eq!(created, format!("c/acme/{}", "ab".repeat(16)));
        let parsed = parse("acme", &created).unwrap();
        assert_eq!(parsed.origin, Origin::Created);
        assert_eq!(parsed.id, ID);
        assert!(parsed.accepts_label(b"keybroker:acme:key-1"));
        assert!(!parsed.accepts_label(b"keybroker:acme2:key-1"));
        assert!(!parsed.accepts_label(b"keybroker:globex:key-1"));
        assert!(!parsed.accepts_label(b"acme"));

        let bound = format(Origin::Bound, "acme", &[1, 2, 3]);
        assert_eq!(bound, "b/acme/010203");
        let parsed = parse("acme", &bound).unwrap();
        assert_eq!(parsed.origin, Origin::Bound);
        assert!(parsed.accepts_label(b"payments-kek"));
        assert!(!parsed.accepts_label(b"keybroker:acme:key-1"));

        for reference in [created, bound] {
            let error = parse("globex", &reference).unwrap_err();
            assert_eq!(error.kind, ErrorKind::KEY_NOT_FOUND);
            assert_eq!(error.message.as_str(), "key not found for this tenant");
        }
    }

    #[test]
    fn malformed_references_are_not_found() {
        let id = "ab".repeat(16);
        for bad in [
            String::new(),
            "c/".into(),
            format!("c//{id}"),
            format!("x/acme/{id}"),
            format!("t/acme/{id}"),
            "c/acme/abcd".into(),
            format!("c/acme/{}", id.to_uppercase()),
            format!("c/acme/{id}/x"),
            format!("c/ac:me/{id}"),
            "b/acme/".into(),
            "b/acme/abc".into(),
            "b/acme/zz".into(),
            format!("b/acme/{}", "00".repeat(129)),
        ] {
            let error = parse("acme", &bad).unwrap_err();
            assert_eq!(error.kind, ErrorKind::KEY_NOT_FOUND, "{bad:?}");
        }
    }

    #[test]
    fn tenant_ids_and_labels() {
        for bad in ["", "a/b", "a:b"] {
            assert_eq!(
                check_tenant_id(bad).unwrap_err().kind,
                ErrorKind::INVALID_REQUEST
            );
        }
        check_tenant_id("acme").unwrap();
        assert_eq!(created_label("acme", "k-1"), "keybroker:acme:k-1");
        assert!(is_broker_label(b"keybroker:x:y"));
        assert!(!is_broker_label(b"keybroker"));
    }
}
