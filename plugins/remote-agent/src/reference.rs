//! Key references: `<tenant id>/<agent key name>/<broker key id>`. The tenant id makes
//! another tenant's request for the key fail before any agent is asked; the broker's key id
//! keeps references of transit keys sharing one agent key apart (each has its own cached
//! data keys).

use keybroker_plugin_abi::{ErrorKind, PluginError};

use crate::config::valid_name;

/// Whether `text` is a hyphenated UUID, as the broker's key ids are.
fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(group, len)| group.len() == len && group.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A parsed reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reference {
    /// The tenant the key was created or bound for.
    pub tenant_id: String,
    /// The agent-side key name.
    pub key: String,
    /// The broker's key id.
    pub key_id: String,
}

impl Reference {
    /// Parses a reference this plugin made.
    pub(crate) fn parse(text: &str) -> Result<Self, PluginError> {
        let mut parts = text.splitn(3, '/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(tenant_id), Some(key), Some(key_id))
                if !tenant_id.is_empty() && valid_name(key) && is_uuid(key_id) =>
            {
                Ok(Self {
                    tenant_id: tenant_id.to_owned(),
                    key: key.to_owned(),
                    key_id: key_id.to_owned(),
                })
            }
            _ => Err(PluginError::new(
                ErrorKind::KEY_NOT_FOUND,
                "remote-agent: not a key reference of this plugin",
            )),
        }
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.tenant_id, self.key, self.key_id)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let reference = Reference {
            tenant_id: "7d0c".to_owned(),
            key: "data".to_owned(),
            key_id: "08846422-4007-4b3b-aeeb-c0012285d42f".to_owned(),
        };
        assert_eq!(Reference::parse(&reference.to_string()).unwrap(), reference);
        for bad in [
            "", "data", "/data/k", "t/data", "t//k", "t/a b/k", "t/a/", "t/a/b/c",
        ] {
            assert_eq!(
                Reference::parse(bad).unwrap_err().kind,
                ErrorKind::KEY_NOT_FOUND,
                "{bad}"
            );
        }
    }
}
