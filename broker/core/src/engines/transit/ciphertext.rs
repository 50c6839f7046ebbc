//! The `vault:v<N>:<base64>` ciphertext text form (Vault transit API).

use std::fmt::Write as _;

use base64::{engine::general_purpose::STANDARD, Engine as _};

use crate::error::{Error, Result};

const PREFIX: &str = "vault:v";

/// Formats a payload as `vault:v<version>:<base64>`.
pub fn format(version: u32, payload: &[u8]) -> String {
    let mut out = String::with_capacity(PREFIX.len() + 12 + payload.len() * 4 / 3 + 4);
    out.push_str(PREFIX);
    // Writing to a String cannot fail.
    let _ = write!(out, "{version}:");
    STANDARD.encode_string(payload, &mut out);
    out
}

/// Splits a ciphertext into its version and decoded payload.
pub fn parse(text: &str) -> Result<(u32, Vec<u8>)> {
    let (version, encoded) = split("ciphertext", text)?;
    let payload = STANDARD
        .decode(encoded)
        .map_err(|_| Error::invalid("invalid ciphertext: could not decode base64"))?;
    Ok((version, payload))
}

/// Splits `vault:v<N>:<rest>` (a ciphertext or a signature: `what`) into `N` and `rest`.
pub fn split<'a>(what: &str, text: &'a str) -> Result<(u32, &'a str)> {
    let rest = text
        .strip_prefix(PREFIX)
        .ok_or_else(|| Error::invalid(format!("invalid {what}: no prefix")))?;
    let (version, encoded) = rest
        .split_once(':')
        .ok_or_else(|| Error::invalid(format!("invalid {what}: wrong number of fields")))?;
    let undecodable = || {
        Error::invalid(format!(
            "invalid {what}: version number could not be decoded"
        ))
    };
    if version.is_empty() || version.len() > 10 || !version.bytes().all(|b| b.is_ascii_digit()) {
        return Err(undecodable());
    }
    let version: u32 = version.parse().map_err(|_| undecodable())?;
    if version == 0 {
        return Err(undecodable());
    }
    Ok((version, encoded))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let text = format(12, b"\x00\x01payload");
        assert!(text.starts_with("vault:v12:"));
        assert_eq!(parse(&text).unwrap(), (12, b"\x00\x01payload".to_vec()));
    }

    #[test]
    fn malformed_inputs_are_rejected() {
        for bad in [
            "",
            "vault:",
            "vault:v",
            "vault:v1",
            "vault:vx:AAAA",
            "vault:v0:AAAA",
            "vault:v-1:AAAA",
            "vault:v99999999999:AAAA",
            "vault:v1:***",
            "other:v1:AAAA",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
