//! The ciphertext blob: `0x01 ‖ iv(12) ‖ ciphertext ‖ tag(16)` (AES-256-GCM, 128-bit tag).
//!
//! Parsing takes untrusted bytes: every step is a checked split, so a truncated or foreign
//! blob is an `INVALID_CIPHERTEXT` error, never a panic.

use keybroker_plugin_abi::PluginError;

/// First byte of every blob this version writes.
pub(crate) const FORMAT_V1: u8 = 0x01;
/// AES-GCM IV length.
pub(crate) const IV_LEN: usize = 12;
/// AES-GCM tag length.
pub(crate) const TAG_LEN: usize = 16;
/// The tag length as the mechanism parameters want it, in bits.
pub(crate) const TAG_BITS: u64 = 128;

/// A blob split into its parts; borrows the input.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Parsed<'a> {
    pub(crate) iv: [u8; IV_LEN],
    /// The ciphertext followed by the tag, as `C_Decrypt` wants it for `CKM_AES_GCM`.
    pub(crate) sealed: &'a [u8],
}

/// Assembles a blob from the IV and `C_Encrypt`'s output (ciphertext ‖ tag).
pub(crate) fn assemble(iv: &[u8; IV_LEN], sealed: &[u8]) -> Vec<u8> {
    let mut blob = Vec::with_capacity(1 + IV_LEN + sealed.len());
    blob.push(FORMAT_V1);
    blob.extend_from_slice(iv);
    blob.extend_from_slice(sealed);
    blob
}

/// Splits a blob.
pub(crate) fn parse(blob: &[u8]) -> Result<Parsed<'_>, PluginError> {
    let (&version, rest) = blob
        .split_first()
        .ok_or_else(|| invalid("ciphertext is empty"))?;
    if version != FORMAT_V1 {
        return Err(invalid(format!(
            "unsupported ciphertext format version {version}"
        )));
    }
    let (iv, sealed) = rest
        .split_first_chunk::<IV_LEN>()
        .ok_or_else(|| invalid("ciphertext truncated inside the IV"))?;
    if sealed.len() < TAG_LEN {
        return Err(invalid(
            "ciphertext truncated: shorter than the authentication tag",
        ));
    }
    Ok(Parsed { iv: *iv, sealed })
}

fn invalid(message: impl Into<String>) -> PluginError {
    PluginError::invalid_ciphertext(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keybroker_plugin_abi::ErrorKind;

    #[test]
    fn parses_what_it_assembles() {
        let blob = assemble(&[7; IV_LEN], &[9; TAG_LEN + 3]);
        assert_eq!(blob.len(), 1 + IV_LEN + TAG_LEN + 3);
        assert_eq!(blob[0], 1);
        let parsed = parse(&blob).unwrap();
        assert_eq!(parsed.iv, [7; IV_LEN]);
        assert_eq!(parsed.sealed, &[9; TAG_LEN + 3]);
        // An empty plaintext: just the tag.
        assert!(parse(&assemble(&[0; IV_LEN], &[0; TAG_LEN])).is_ok());
    }

    #[test]
    fn short_or_foreign_blobs_are_refused() {
        let blob = assemble(&[7; IV_LEN], &[9; TAG_LEN]);
        for len in 0..blob.len() {
            let error = parse(&blob[..len]).unwrap_err();
            assert_eq!(error.kind, ErrorKind::INVALID_CIPHERTEXT, "length {len}");
        }
        let mut other = blob.clone();
        other[0] = 2;
        assert!(parse(&other).unwrap_err().message.contains("version 2"));
    }
}
