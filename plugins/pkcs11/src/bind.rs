//! Binding a key that already exists in the HSM (`bind_key`).
//!
//! `backend_key` names the object: `label:<CKA_LABEL>`, `id:<hex CKA_ID>`, or a bare label.
//! The object must be the one key of the kind the broker key type needs (a 32-byte AES
//! secret key; a private key of the right RSA size or EC curve, with its public key under
//! the same `CKA_ID`), allowed to do the job, and findable again by its `CKA_ID` alone,
//! since that is what the reference records. Objects the broker created (labels starting
//! with `keybroker:`) are never bindable, whichever tenant they belong to.

use std::fmt;

use cryptoki::object::Attribute;
use keybroker_plugin_abi::{ErrorKind, PluginError};

use crate::{
    error::Fault,
    keys::{KeyKind, ObjectInfo, Role},
    reference::is_broker_label,
    session::Attempt,
};

/// Longest `CKA_ID` a bound reference may carry, in bytes.
const ID_MAX: usize = 128;

/// How `backend_key` names the object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Selector {
    Label(String),
    Id(Vec<u8>),
}

impl Selector {
    /// Parses `backend_key`.
    pub(crate) fn parse(backend_key: &str) -> Result<Selector, PluginError> {
        let selector = if let Some(hex_id) = backend_key.strip_prefix("id:") {
            let id = hex::decode(hex_id).map_err(|_| {
                PluginError::invalid_request(format!(
                    "backend_key {backend_key:?}: after \"id:\" comes the CKA_ID in hex"
                ))
            })?;
            Selector::Id(id)
        } else {
            let label = backend_key.strip_prefix("label:").unwrap_or(backend_key);
            Selector::Label(label.to_owned())
        };
        let empty = match &selector {
            Selector::Label(label) => label.is_empty(),
            Selector::Id(id) => id.is_empty(),
        };
        if empty {
            return Err(PluginError::invalid_request(
                "backend_key is empty: use label:<label>, id:<hex> or a label",
            ));
        }
        Ok(selector)
    }

    fn template(&self) -> Attribute {
        match self {
            Selector::Label(label) => Attribute::Label(label.as_bytes().to_vec()),
            Selector::Id(id) => Attribute::Id(id.clone()),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Label(label) => write!(f, "the object labelled {label:?}"),
            Selector::Id(id) => write!(f, "the object with CKA_ID {}", hex::encode(id)),
        }
    }
}

fn broker_key() -> Fault {
    Fault::Final(PluginError::new(
        ErrorKind::ACCESS_DENIED,
        "keys created by the broker cannot be bound",
    ))
}

fn refuse(message: String) -> Fault {
    Fault::Final(PluginError::invalid_request(message))
}

/// Finds and checks the object; returns its `CKA_ID`.
pub(crate) fn resolve(
    attempt: &Attempt<'_>,
    selector: &Selector,
    kind: KeyKind,
    key_type: &str,
) -> Result<Vec<u8>, Fault> {
    let found = attempt.find(&[selector.template()])?;
    if found.is_empty() {
        return Err(Fault::NotFound(PluginError::new(
            ErrorKind::KEY_NOT_FOUND,
            format!(
                "key not found: no {} on token {:?}",
                selector.to_string().trim_start_matches("the "),
                attempt.token_label()
            ),
        )));
    }
    if found.iter().any(|object| is_broker_label(&object.label)) {
        return Err(broker_key());
    }
    let role = if kind.is_asymmetric() {
        Role::Private
    } else {
        Role::Secret
    };
    let needed = format!("an {} {}", kind.name(), role.noun());
    let candidates: Vec<&ObjectInfo> = found
        .iter()
        .filter(|object| object.role == Some(role))
        .collect();
    let key = match candidates.as_slice() {
        [key] => *key,
        [] => {
            // Of a key pair, name the private key.
            let what = found
                .iter()
                .find(|object| object.role == Some(Role::Private))
                .or(found.first())
                .map_or_else(String::new, |object| object.describe());
            return Err(refuse(format!(
                "{selector} is {what}; {key_type} needs {needed}"
            )));
        }
        several => {
            return Err(refuse(format!(
                "{} {}s match {selector}; name one by id:<hex CKA_ID>",
                several.len(),
                role.noun()
            )))
        }
    };
    check_kind(key, kind, selector, key_type, &needed)?;
    if key.id.is_empty() {
        return Err(refuse(format!(
            "{selector} has no CKA_ID; give it one (pkcs11-tool --id) to bind it"
        )));
    }
    if key.id.len() > ID_MAX {
        return Err(refuse(format!(
            "{selector} has a CKA_ID of {} bytes; at most {ID_MAX} can be bound",
            key.id.len()
        )));
    }
    // The reference records the CKA_ID: later lookups by it must find this key alone.
    let same_id = attempt.find(&[Attribute::Id(key.id.clone())])?;
    if same_id.iter().any(|object| is_broker_label(&object.label)) {
        return Err(broker_key());
    }
    let count = |role: Role| {
        same_id
            .iter()
            .filter(|object| object.role == Some(role))
            .count()
    };
    if count(role) != 1 {
        return Err(refuse(format!(
            "{} {}s share the CKA_ID {} of {selector}; it cannot be bound by id",
            count(role),
            role.noun(),
            hex::encode(&key.id)
        )));
    }
    if kind.is_asymmetric() {
        let publics: Vec<&ObjectInfo> = same_id
            .iter()
            .filter(|object| object.role == Some(Role::Public))
            .collect();
        let public = match publics.as_slice() {
            [public] => *public,
            [] => {
                return Err(refuse(format!(
                    "the public key of {selector} (CKA_ID {}) is not on the token; import it \
                     to bind the key",
                    hex::encode(&key.id)
                )))
            }
            several => {
                return Err(refuse(format!(
                    "{} public keys share the CKA_ID {} of {selector}",
                    several.len(),
                    hex::encode(&key.id)
                )))
            }
        };
        if public.kind != kind || !public.usable {
            return Err(refuse(format!(
                "the public key of {selector} is {}{}; {key_type} needs an {} public key \
                 that may verify",
                public.describe(),
                if public.usable {
                    ""
                } else {
                    " without CKA_VERIFY"
                },
                kind.name()
            )));
        }
    }
    Ok(key.id.clone())
}

fn check_kind(
    key: &ObjectInfo,
    kind: KeyKind,
    selector: &Selector,
    key_type: &str,
    needed: &str,
) -> Result<(), Fault> {
    if key.kind != kind {
        return Err(refuse(format!(
            "{selector} is {}; {key_type} needs {needed}",
            key.describe()
        )));
    }
    if !key.usable {
        let permission = match key.role {
            Some(Role::Secret) => "CKA_ENCRYPT and CKA_DECRYPT",
            _ => "CKA_SIGN",
        };
        return Err(refuse(format!(
            "{selector} does not allow what {key_type} needs ({permission})"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        assert_eq!(
            Selector::parse("label:payments").unwrap(),
            Selector::Label("payments".into())
        );
        assert_eq!(
            Selector::parse("payments").unwrap(),
            Selector::Label("payments".into())
        );
        assert_eq!(
            Selector::parse("id:0A0b").unwrap(),
            Selector::Id(vec![0x0a, 0x0b])
        );
        // A label may itself contain a colon.
        assert_eq!(
            Selector::parse("label:a:b").unwrap(),
            Selector::Label("a:b".into())
        );
        for bad in ["", "label:", "id:", "id:xyz", "id:abc"] {
            let error = Selector::parse(bad).unwrap_err();
            assert_eq!(error.kind, ErrorKind::INVALID_REQUEST, "{bad:?}");
        }
        assert_eq!(
            Selector::Id(vec![1, 2]).to_string(),
            "the object with CKA_ID 0102"
        );
        assert_eq!(
            Selector::Label("k".into()).to_string(),
            "the object labelled \"k\""
        );
    }
}
