//! Key references, each tagged with the owning tenant:
//!
//! - `t/<tenant_id>/<32 lowercase hex>`: a symmetric key, derived from the KEK on every use;
//! - `a/<tenant_id>/<key_type>/<base64url, unpadded>`: an asymmetric key, whose PKCS #8
//!   private key is sealed (a [`crate::blob`]) inside the reference itself. The header
//!   `a/<tenant_id>/<key_type>` is the sealing context and AAD, so the blob moved under
//!   another tenant or type no longer opens.
//!
//! [`parse`] checks the shape and then the owner before anything is decrypted, and never
//! names the owning tenant in its errors.

use base64::Engine as _;
use keybroker_plugin_abi::PluginError;
use keybroker_plugin_sdk::reference::{key_not_found, malformed};
use rand::{rngs::OsRng, RngCore};

use crate::asymmetric::KeyType;

/// Random bytes in a symmetric reference (128 bits: collisions are not a concern).
const RANDOM_BYTES: usize = 16;
/// Longest sealed private key accepted in a reference. An RSA-4096 key seals into about
/// 2.4 KiB; anything far beyond is not ours, and is refused before decoding.
const MAX_ENCODED_SEALED_LEN: usize = 8 * 1024;
const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A reference that is well formed and belongs to the caller's tenant.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reference<'a> {
    /// `t/…`: the reference itself is the derivation context of the data key.
    Symmetric,
    /// `a/…`: a sealed private key.
    Asymmetric(Asymmetric<'a>),
}

/// The parts of an asymmetric reference.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Asymmetric<'a> {
    pub(crate) key_type: KeyType,
    /// `a/<tenant_id>/<key_type>`: context and AAD of the sealed key.
    pub(crate) header: &'a str,
    /// The sealed PKCS #8 private key (not secret: it is encrypted).
    pub(crate) sealed: Vec<u8>,
}

/// A fresh symmetric reference for a key owned by `tenant_id`.
pub(crate) fn new_reference(tenant_id: &str) -> Result<String, PluginError> {
    check_new_tenant(tenant_id)?;
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

/// The header `a/<tenant_id>/<key_type>` of a new asymmetric reference.
pub(crate) fn asymmetric_header(tenant_id: &str, key_type: KeyType) -> Result<String, PluginError> {
    check_new_tenant(tenant_id)?;
    Ok(format!("a/{tenant_id}/{}", key_type.name()))
}

/// The asymmetric reference made of `header` and the sealed private key.
pub(crate) fn asymmetric_reference(header: &str, sealed: &[u8]) -> String {
    let mut reference = String::with_capacity(header.len() + 1 + sealed.len().div_ceil(3) * 4);
    reference.push_str(header);
    reference.push('/');
    BASE64.encode_string(sealed, &mut reference);
    reference
}

fn check_new_tenant(tenant_id: &str) -> Result<(), PluginError> {
    if tenant_id.is_empty() || tenant_id.contains('/') {
        return Err(PluginError::invalid_request(
            "tenant_id must be non-empty and must not contain '/'",
        ));
    }
    Ok(())
}

fn hex_digit(nibble: u8) -> char {
    // `nibble` is below 16, so the fallback is never taken.
    char::from_digit(u32::from(nibble), 16).unwrap_or('0')
}

/// Parses `reference` and checks that `tenant_id` owns it. A malformed reference and one of
/// another tenant are both `KEY_NOT_FOUND`; the message never names the owner.
pub(crate) fn parse<'a>(tenant_id: &str, reference: &'a str) -> Result<Reference<'a>, PluginError> {
    let (owner, parsed) = if let Some(rest) = reference.strip_prefix("t/") {
        let (owner, random) = rest.split_once('/').ok_or_else(malformed)?;
        let well_formed = random.len() == 2 * RANDOM_BYTES
            && random
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !well_formed {
            return Err(malformed());
        }
        (owner, Reference::Symmetric)
    } else if let Some(rest) = reference.strip_prefix("a/") {
        let (owner, rest) = rest.split_once('/').ok_or_else(malformed)?;
        let (type_name, encoded) = rest.split_once('/').ok_or_else(malformed)?;
        let key_type = KeyType::parse(type_name).ok_or_else(malformed)?;
        if encoded.is_empty() || encoded.len() > MAX_ENCODED_SEALED_LEN {
            return Err(malformed());
        }
        let sealed = BASE64.decode(encoded).map_err(|_| malformed())?;
        let header_len = reference.len() - encoded.len() - 1;
        let header = reference.get(..header_len).ok_or_else(malformed)?;
        let parsed = Reference::Asymmetric(Asymmetric {
            key_type,
            header,
            sealed,
        });
        (owner, parsed)
    } else {
        return Err(malformed());
    };
    if owner.is_empty() {
        return Err(malformed());
    }
    if owner != tenant_id {
        return Err(key_not_found());
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keybroker_plugin_abi::ErrorKind;

    #[test]
    fn new_reference_is_tagged_and_checks_back() {
        let reference = new_reference("acme").unwrap();
        assert!(reference.starts_with("t/acme/"));
        assert_eq!(reference.len(), "t/acme/".len() + 32);
        assert_eq!(parse("acme", &reference).unwrap(), Reference::Symmetric);
        assert_ne!(reference, new_reference("acme").unwrap());
    }

    #[test]
    fn asymmetric_reference_round_trips() {
        let header = asymmetric_header("acme", KeyType::EcdsaP384).unwrap();
        assert_eq!(header, "a/acme/ecdsa-p384");
        let sealed = [0xfbu8, 0xff, 0x00, 0x01, 0x3e];
        let reference = asymmetric_reference(&header, &sealed);
        assert_eq!(reference, "a/acme/ecdsa-p384/-_8AAT4");
        assert_eq!(
            parse("acme", &reference).unwrap(),
            Reference::Asymmetric(Asymmetric {
                key_type: KeyType::EcdsaP384,
                header: "a/acme/ecdsa-p384",
                sealed: sealed.to_vec(),
            })
        );
    }

    #[test]
    fn bad_tenants_are_refused() {
        for tenant in ["", "a/b", "/"] {
            let error = new_reference(tenant).unwrap_err();
            assert_eq!(error.kind, ErrorKind::INVALID_REQUEST, "{tenant:?}");
            let error = asymmetric_header(tenant, KeyType::Rsa2048).unwrap_err();
            assert_eq!(error.kind, ErrorKind::INVALID_REQUEST, "{tenant:?}");
        }
    }

    #[test]
    fn other_tenant_and_malformed_references_are_not_found() {
        let symmetric = new_reference("acme").unwrap();
        let asymmetric = asymmetric_reference("a/acme/rsa-2048", b"sealed");
        for reference in [&symmetric, &asymmetric] {
            let error = parse("globex", reference).unwrap_err();
            assert_eq!(error.kind, ErrorKind::KEY_NOT_FOUND);
            assert_eq!(error.message.as_str(), "key not found for this tenant");
        }
        let too_long = format!("a/acme/rsa-2048/{}", "A".repeat(MAX_ENCODED_SEALED_LEN + 1));
        for bad in [
            "",
            "t/",
            "t//0123456789abcdef0123456789abcdef",
            "x/acme/0123456789abcdef0123456789abcdef",
            "t/acme/0123",
            "t/acme/0123456789ABCDEF0123456789ABCDEF",
            "t/acme/0123456789abcdef0123456789abcdef/x",
            "a/",
            "a/acme",
            "a/acme/rsa-2048",
            "a/acme/rsa-2048/",
            "a//rsa-2048/c2VhbGVk",
            "a/acme/rsa-1024/c2VhbGVk",
            "a/acme/aes256-gcm96/c2VhbGVk",
            "a/acme/rsa-2048/c2VhbGVk=",
            "a/acme/rsa-2048/c2Vh+GVk",
            "a/acme/rsa-2048/c2VhbGVk/x",
            "a/acme/rsa-2048/c2VhbGV",
            &too_long,
        ] {
            let error = parse("acme", bad).unwrap_err();
            assert_eq!(error.kind, ErrorKind::KEY_NOT_FOUND, "{bad:?}");
        }
    }
}
