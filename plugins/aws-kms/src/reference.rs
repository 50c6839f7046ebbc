//! Key references: `c/<tenant id>/<KMS key id>` for keys the plugin created, and
//! `b/<tenant id>/<key ARN>` for bound keys. Both carry the tenant, checked on every use
//! before KMS is called.

use keybroker_plugin_abi::PluginError;

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
    /// The KMS key id (created) or ARN (bound).
    pub key: String,
}

impl Reference {
    pub fn created(tenant_id: &str, key_id: &str) -> Self {
        Self {
            origin: Origin::Created,
            tenant_id: tenant_id.to_owned(),
            key: key_id.to_owned(),
        }
    }

    pub fn bound(tenant_id: &str, arn: &str) -> Self {
        Self {
            origin: Origin::Bound,
            tenant_id: tenant_id.to_owned(),
            key: arn.to_owned(),
        }
    }

    pub fn encode(&self) -> String {
        let origin = match self.origin {
            Origin::Created => "c",
            Origin::Bound => "b",
        };
        format!("{origin}/{}/{}", self.tenant_id, self.key)
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
        let (origin, rest) = text.split_once('/')?;
        let (tenant_id, key) = rest.split_once('/')?;
        if tenant_id.is_empty() {
            return None;
        }
        let origin = match origin {
            "c" if is_key_id(key) => Origin::Created,
            "b" if key.starts_with("arn:") && key.contains(":key/") => Origin::Bound,
            _ => return None,
        };
        Some(Self {
            origin,
            tenant_id: tenant_id.to_owned(),
            key: key.to_owned(),
        })
    }
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

    const ID: &str = "28a8eefc-5eaa-4634-8e4d-09f38c6c2616";

    #[test]
    fn references_round_trip_and_carry_the_tenant() {
        let created = Reference::created("t1", ID);
        assert_eq!(created.encode(), format!("c/t1/{ID}"));
        assert_eq!(
            Reference::for_tenant(&created.encode(), "t1").unwrap(),
            created
        );
        let arn = format!("arn:aws:kms:us-east-1:123456789012:key/{ID}");
        let bound = Reference::bound("t1", &arn);
        assert_eq!(Reference::for_tenant(&bound.encode(), "t1").unwrap(), bound);
        let other = Reference::for_tenant(&bound.encode(), "t2").unwrap_err();
        assert_eq!(other.kind, ErrorKind::KEY_NOT_FOUND);
        assert!(!other.message.contains("t1"));
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
            let error = Reference::for_tenant(&text, "t1").unwrap_err();
            assert_eq!(error.kind, ErrorKind::KEY_NOT_FOUND, "{text}");
        }
    }
}
