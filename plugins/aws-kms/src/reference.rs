//! Key references: `c/<tenant id>/<KMS key id>` for keys the plugin created, and
//! `b/<tenant id>/<key ARN>` for bound keys. Both carry the tenant, checked on every use
//! before KMS is called.

use keybroker_plugin_abi::PluginError;
use keybroker_plugin_sdk::reference::KeyReference;
pub(crate) use keybroker_plugin_sdk::reference::Origin;

use crate::error::key_not_found;

/// A parsed reference: the KMS key id (created) or ARN (bound) is its `key`.
pub(crate) type Reference = KeyReference<String>;

/// Parses `text` and checks it belongs to `tenant_id`; anything else is `KEY_NOT_FOUND` with
/// the same message (never naming the owner).
pub(crate) fn for_tenant(text: &str, tenant_id: &str) -> Result<Reference, PluginError> {
    Reference::for_tenant(text, tenant_id, kms_key).map_err(|_| key_not_found())
}

/// The key part of a reference: a key id for a created key, a key ARN for a bound one.
fn kms_key(origin: Origin, key: &str) -> Option<String> {
    let valid = match origin {
        Origin::Created => is_key_id(key),
        Origin::Bound => key.starts_with("arn:") && key.contains(":key/"),
    };
    valid.then(|| key.to_owned())
}

/// A KMS key id: a UUID, or `mrk-` and 32 hex digits (multi-Region keys).
fn is_key_id(key: &str) -> bool {
    if let Some(hex) = key.strip_prefix("mrk-") {
        return hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    }
    key.len() == 36
        && key.bytes().enumerate().all(|(index, byte)| match index {
            8 | 13 | 18 | 23 => byte == b'-',
            _ => byte.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use keybroker_plugin_abi::ErrorKind;
    use keybroker_plugin_conformance::calls::assert_hides_owner;

    const ID: &str = "28a8eefc-5eaa-4634-8e4d-09f38c6c2616";

    #[test]
    fn references_round_trip_and_carry_the_tenant() {
        let created = Reference::created("t1", ID.to_owned());
        assert_eq!(created.encode(), format!("c/t1/{ID}"));
        assert_eq!(for_tenant(&created.encode(), "t1").unwrap(), created);
        let arn = format!("arn:aws:kms:us-east-1:123456789012:key/{ID}");
        let bound = Reference::bound("t1", arn);
        assert_eq!(for_tenant(&bound.encode(), "t1").unwrap(), bound);
        assert_hides_owner(for_tenant(&bound.encode(), "t2"), "t1");
    }

    #[test]
    fn made_up_references_are_not_found() {
        for text in [
            String::new(),
            "not a reference".to_owned(),
            format!("c/t1/{ID}-made-up"),
            format!("made-up/c/t1/{ID}"),
            format!("c//{ID}"),
            "b/t1/alias/x".to_owned(),
        ] {
            let error = for_tenant(&text, "t1").unwrap_err();
            assert_eq!(error.kind, ErrorKind::KEY_NOT_FOUND, "{text}");
        }
    }
}
