//! The ciphertext blob: `0x01 ‖ u8 len(kek_id) ‖ kek_id ‖ nonce(12) ‖ ciphertext ‖ tag(16)`.
//!
//! Parsing takes untrusted bytes: every step is a checked split, so a truncated or malformed
//! blob is an `INVALID_CIPHERTEXT` error, never a panic.

use keybroker_plugin_abi::PluginError;

/// First byte of every blob this version writes.
pub(crate) const FORMAT_V1: u8 = 0x01;
/// AES-GCM nonce length.
pub(crate) const NONCE_LEN: usize = 12;
/// AES-GCM tag length.
pub(crate) const TAG_LEN: usize = 16;

/// A blob split into its parts; borrows the input.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Parsed<'a> {
    pub(crate) kek_id: &'a str,
    pub(crate) nonce: &'a [u8; NONCE_LEN],
    pub(crate) ciphertext: &'a [u8],
    pub(crate) tag: &'a [u8; TAG_LEN],
}

/// Length of the blob for a KEK id and a plaintext.
pub(crate) fn sealed_len(kek_id: &str, plaintext_len: usize) -> usize {
    2 + kek_id.len() + NONCE_LEN + plaintext_len + TAG_LEN
}

/// Writes the header (`version ‖ len ‖ kek_id ‖ nonce`) into `out`.
pub(crate) fn write_header(
    out: &mut Vec<u8>,
    kek_id: &str,
    nonce: &[u8; NONCE_LEN],
) -> Result<(), PluginError> {
    let id_len = u8::try_from(kek_id.len())
        .map_err(|_| PluginError::internal("KEK id longer than 255 bytes"))?;
    out.push(FORMAT_V1);
    out.push(id_len);
    out.extend_from_slice(kek_id.as_bytes());
    out.extend_from_slice(nonce);
    Ok(())
}

/// Splits a blob into its parts.
pub(crate) fn parse(blob: &[u8]) -> Result<Parsed<'_>, PluginError> {
    let (&version, rest) = blob
        .split_first()
        .ok_or_else(|| invalid("ciphertext is empty"))?;
    if version != FORMAT_V1 {
        return Err(invalid(format!(
            "unsupported ciphertext format version {version}"
        )));
    }
    let (&id_len, rest) = rest
        .split_first()
        .ok_or_else(|| invalid("ciphertext truncated: no KEK id length"))?;
    if id_len == 0 {
        return Err(invalid("malformed ciphertext: empty KEK id"));
    }
    let (kek_id, rest) = rest
        .split_at_checked(usize::from(id_len))
        .ok_or_else(|| invalid("ciphertext truncated inside the KEK id"))?;
    let kek_id = std::str::from_utf8(kek_id)
        .map_err(|_| invalid("malformed ciphertext: KEK id is not UTF-8"))?;
    let (nonce, rest) = rest
        .split_first_chunk::<NONCE_LEN>()
        .ok_or_else(|| invalid("ciphertext truncated inside the nonce"))?;
    let (ciphertext, tag) = rest
        .split_last_chunk::<TAG_LEN>()
        .ok_or_else(|| invalid("ciphertext truncated: shorter than the authentication tag"))?;
    Ok(Parsed {
        kek_id,
        nonce,
        ciphertext,
        tag,
    })
}

fn invalid(message: impl Into<String>) -> PluginError {
    PluginError::invalid_ciphertext(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keybroker_plugin_abi::ErrorKind;

    fn sample() -> Vec<u8> {
        let mut blob = Vec::new();
        write_header(&mut blob, "k1", &[7; NONCE_LEN]).unwrap();
        blob.extend_from_slice(b"abc");
        blob.extend_from_slice(&[9; TAG_LEN]);
        blob
    }

    #[test]
    fn parses_what_it_writes() {
        let blob = sample();
        assert_eq!(blob.len(), sealed_len("k1", 3));
        let parsed = parse(&blob).unwrap();
        assert_eq!(
            parsed,
            Parsed {
                kek_id: "k1",
                nonce: &[7; NONCE_LEN],
                ciphertext: b"abc",
                tag: &[9; TAG_LEN],
            }
        );
    }

    #[test]
    fn truncated_headers_are_refused() {
        let blob = sample();
        // Cutting into the body still parses (the tag check refuses it later); cutting into
        // the header must be refused here.
        let header_and_tag = 2 + 2 + NONCE_LEN + TAG_LEN;
        for len in 0..header_and_tag {
            let error = parse(&blob[..len]).unwrap_err();
            assert_eq!(error.kind, ErrorKind::INVALID_CIPHERTEXT, "length {len}");
        }
    }

    #[test]
    fn bad_headers_are_refused() {
        let mut blob = sample();
        blob[0] = 2;
        assert!(parse(&blob).unwrap_err().message.contains("version 2"));
        let mut blob = sample();
        blob[1] = 0;
        assert!(parse(&blob).unwrap_err().message.contains("empty KEK id"));
        let mut blob = sample();
        blob[2] = 0xff;
        assert!(parse(&blob).unwrap_err().message.contains("UTF-8"));
        let mut blob = sample();
        blob[1] = 200;
        assert!(parse(&blob).unwrap_err().message.contains("truncated"));
    }
}
