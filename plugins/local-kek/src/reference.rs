//! Key references: `t/<tenant_id>/<32 lowercase hex>`, tagged with the owning tenant.

use keybroker_plugin_abi::{ErrorKind, PluginError};
use rand::{rngs::OsRng, RngCore};

/// Random bytes in a reference (128 bits: collisions are not a concern).
const RANDOM_BYTES: usize = 16;

/// A fresh reference for a key owned by `tenant_id`.
pub(crate) fn new_reference(tenant_id: &str) -> Result<String, PluginError> {
    if tenant_id.is_empty() || tenant_id.contains('/') {
        return Err(PluginError::invalid_request(
            "tenant_id must be non-empty and must not contain '/'",
        ));
    }
    let mut random = [0u8; RANDOM_BYTES];
    OsRng
        .try_fill_bytes(&mut random)
        .map_err(|_| PluginError::internal("the system random number generator failed"))?;
    let mut reference = String::with_capacity(3 + tenant_id.len() + 2 * RANDOM_BYTES);
    reference.push_str("t/");
    reference.push_str(tenant_id);
    reference.push('/');
    for byte in random {
        reference.push(hex_digit(byte >> 4));
        reference.push(hex_digit(byte & 0x0f));
    }
    Ok(reference)
}

fn hex_digit(nibble: u8) -> char {
    // `nibble` is below 16, so the fallback is never taken.
    char::from_digit(u32::from(nibble), 16).unwrap_or('0')
}

/// Refuses a reference that is malformed or belongs to another tenant. The message never
/// names the owning tenant.
pub(crate) fn check_owner(tenant_id: &str, reference: &str) -> Result<(), PluginError> {
    let Some((owner, random)) = reference
        .strip_prefix("t/")
        .and_then(|rest| rest.split_once('/'))
    else {
        return Err(malformed());
    };
    let well_formed = !owner.is_empty()
        && random.len() == 2 * RANDOM_BYTES
        && random
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !well_formed {
        return Err(malformed());
    }
    if owner != tenant_id {
        return Err(PluginError::new(
            ErrorKind::KEY_NOT_FOUND,
            "key not found for this tenant",
        ));
    }
    Ok(())
}

fn malformed() -> PluginError {
    PluginError::new(
        ErrorKind::KEY_NOT_FOUND,
        "key not found: malformed key reference",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_reference_is_tagged_and_checks_back() {
        let reference = new_reference("acme").unwrap();
        assert!(reference.starts_with("t/acme/"));
        assert_eq!(reference.len(), "t/acme/".len() + 32);
        check_owner("acme", &reference).unwrap();
        assert_ne!(reference, new_reference("acme").unwrap());
    }

    #[test]
    fn bad_tenants_are_refused() {
        for tenant in ["", "a/b", "/"] {
            let error = new_reference(tenant).unwrap_err();
            assert_eq!(error.kind, ErrorKind::INVALID_REQUEST, "{tenant:?}");
        }
    }

    #[test]
    fn other_tenant_and_malformed_references_are_not_found() {
        let reference = new_reference("acme").unwrap();
        let error = check_owner("globex", &reference).unwrap_err();
        assert_eq!(error.kind, ErrorKind::KEY_NOT_FOUND);
        assert!(!error.message.as_str().contains("acme"));
        for bad in [
            "",
            "t/",
            "t//0123456789abcdef0123456789abcdef",
            "x/acme/0123456789abcdef0123456789abcdef",
            "t/acme/0123",
            "t/acme/0123456789ABCDEF0123456789ABCDEF",
            "t/acme/0123456789abcdef0123456789abcdef/x",
        ] {
            let error = check_owner("acme", bad).unwrap_err();
            assert_eq!(error.kind, ErrorKind::KEY_NOT_FOUND, "{bad:?}");
        }
    }
}
