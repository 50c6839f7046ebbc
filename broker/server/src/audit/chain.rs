//! The line format and its chain MAC.
//!
//! A line is the record's JSON (`body`, which holds neither `prev` nor `chain`) with
//! `,"prev":"<hex>","chain":"<hex>"}` put in place of its closing brace. The MAC covers the
//! body's exact bytes as written, so any edit to a line — even one that leaves the JSON
//! meaning unchanged — is detected, and verifying never depends on re-serialising:
//!
//! `chain = HMAC-SHA256(chain_key, prev ‖ body)`, `prev` being the previous line's 32-byte
//! chain (empty for the first line).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Length of a chain MAC.
pub(crate) const MAC_LEN: usize = 32;
const HEX_LEN: usize = MAC_LEN * 2;
const PREV_MARK: &[u8] = b",\"prev\":\"";
const CHAIN_MARK: &[u8] = b"\",\"chain\":\"";
const END_MARK: &[u8] = b"\"}";

/// The prefix of every HMAC'd string, as Vault writes it.
pub(crate) const HASH_PREFIX: &str = "hmac-sha256:";

/// HMAC-SHA256 keyed once; each use clones the keyed state.
#[derive(Clone)]
pub(crate) struct Keyed(Hmac<Sha256>);

impl std::fmt::Debug for Keyed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keyed(..)")
    }
}

impl Keyed {
    /// Keys the MAC; `None` only if the key is refused (HMAC takes any length).
    pub(super) fn new(key: &[u8]) -> Option<Self> {
        <Hmac<Sha256> as Mac>::new_from_slice(key).ok().map(Self)
    }

    /// `hmac-sha256:<hex>` of `input` (what `sys/audit-hash` answers).
    pub(super) fn hash_string(&self, input: &str) -> String {
        let mut mac = self.0.clone();
        mac.update(input.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(HASH_PREFIX.len() + HEX_LEN);
        out.push_str(HASH_PREFIX);
        out.push_str(&hex::encode(digest));
        out
    }

    fn chain_mac(&self, prev: &[u8], body: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.0.clone();
        mac.update(prev);
        mac.update(body);
        mac
    }

    /// The chain MAC of a body following `prev`.
    pub(super) fn chain(&self, prev: &[u8], body: &[u8]) -> [u8; MAC_LEN] {
        self.chain_mac(prev, body).finalize().into_bytes().into()
    }
}

/// Appends to `out` the line for `body` (a JSON object) with its `prev` and `chain`,
/// newline included.
pub(crate) fn encode_line(out: &mut Vec<u8>, body: &[u8], prev: &[u8], chain: &[u8; MAC_LEN]) {
    let open = body.strip_suffix(b"}").unwrap_or(body);
    out.extend_from_slice(open);
    out.extend_from_slice(PREV_MARK);
    out.extend_from_slice(hex::encode(prev).as_bytes());
    out.extend_from_slice(CHAIN_MARK);
    out.extend_from_slice(hex::encode(chain).as_bytes());
    out.extend_from_slice(END_MARK);
    out.push(b'\n');
}

/// A line taken apart.
#[derive(Debug)]
pub(crate) struct ParsedLine {
    /// The record's sequence number.
    pub sequence: u64,
    /// The previous line's chain as this line states it (empty on the first line).
    pub prev: Vec<u8>,
    /// This line's chain MAC.
    pub chain: [u8; MAC_LEN],
    /// The bytes the MAC covers.
    pub body: Vec<u8>,
}

impl ParsedLine {
    /// Whether the line's MAC is right under `key` (constant time).
    pub(super) fn mac_matches(&self, key: &Keyed) -> bool {
        key.chain_mac(&self.prev, &self.body)
            .verify_slice(&self.chain)
            .is_ok()
    }
}

#[derive(serde::Deserialize)]
struct SequenceOnly {
    sequence: u64,
}

fn decode_mac(hex_text: &[u8]) -> Option<[u8; MAC_LEN]> {
    let mut out = [0u8; MAC_LEN];
    hex::decode_to_slice(hex_text, &mut out).ok()?;
    Some(out)
}

/// Takes a line (without its newline) apart; the error says what is wrong, never what the
/// line holds.
pub(crate) fn parse_line(line: &[u8]) -> Result<ParsedLine, &'static str> {
    let rest = line
        .strip_suffix(END_MARK)
        .ok_or("the line does not end with its chain")?;
    let split = rest
        .len()
        .checked_sub(HEX_LEN)
        .ok_or("the line is too short")?;
    let (rest, chain_hex) = rest.split_at(split);
    let chain = decode_mac(chain_hex).ok_or("the chain is not a hex MAC")?;
    let rest = rest
        .strip_suffix(CHAIN_MARK)
        .ok_or("the line does not end with its chain")?;
    let (open, prev) = if let Some(open) = rest.strip_suffix(PREV_MARK) {
        (open, Vec::new())
    } else {
        let split = rest
            .len()
            .checked_sub(HEX_LEN)
            .ok_or("the line is too short")?;
        let (rest, prev_hex) = rest.split_at(split);
        let prev = decode_mac(prev_hex).ok_or("prev is not a hex MAC")?;
        let open = rest
            .strip_suffix(PREV_MARK)
            .ok_or("the line does not end with prev and chain")?;
        (open, prev.to_vec())
    };
    let mut body = Vec::with_capacity(open.len() + 1);
    body.extend_from_slice(open);
    body.push(b'}');
    let sequence = serde_json::from_slice::<SequenceOnly>(&body)
        .map_err(|_| "the line is not a JSON record with a sequence")?
        .sequence;
    Ok(ParsedLine {
        sequence,
        prev,
        chain,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_with_and_without_prev() {
        let key = Keyed::new(&[9u8; 32]).unwrap();
        let body = br#"{"type":"request","sequence":1}"#;
        let first = key.chain(&[], body);
        let mut line = Vec::new();
        encode_line(&mut line, body, &[], &first);
        let text = std::str::from_utf8(&line).unwrap();
        let expected_end = format!("\"prev\":\"\",\"chain\":\"{}\"}}\n", hex::encode(first));
        assert!(text.ends_with(&expected_end), "{text}");
        let value: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(value["chain"], hex::encode(first));

        let parsed = parse_line(line.strip_suffix(b"\n").unwrap()).unwrap();
        assert_eq!(parsed.sequence, 1);
        assert!(parsed.prev.is_empty());
        assert_eq!(parsed.body, body);
        assert!(parsed.mac_matches(&key));
        assert!(!parsed.mac_matches(&Keyed::new(&[8u8; 32]).unwrap()));

        let body2 = br#"{"type":"response","sequence":2}"#;
        let second = key.chain(&first, body2);
        let mut line = Vec::new();
        encode_line(&mut line, body2, &first, &second);
        let parsed = parse_line(line.strip_suffix(b"\n").unwrap()).unwrap();
        assert_eq!(parsed.sequence, 2);
        assert_eq!(parsed.prev, first);
        assert_eq!(parsed.chain, second);
        assert!(parsed.mac_matches(&key));
    }

    #[test]
    fn malformed_lines_are_refused() {
        for line in [
            &b""[..],
            b"{}",
            b"not json",
            br#"{"sequence":1,"prev":"","chain":"zz"}"#,
            br#"{"sequence":1,"prev":"","chain":"00"}"#,
        ] {
            assert!(
                parse_line(line).is_err(),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn hashes_have_vaults_form() {
        let salt = Keyed::new(b"salt").unwrap();
        let hashed = salt.hash_string("value");
        assert!(hashed.starts_with("hmac-sha256:"));
        assert_eq!(hashed.len(), HASH_PREFIX.len() + 64);
        assert_eq!(hashed, salt.hash_string("value"));
        assert_ne!(
            hashed,
            Keyed::new(b"other salt").unwrap().hash_string("value")
        );
        assert_ne!(hashed, salt.hash_string("valuf"));
        // RFC 4231 test case 1: plain HMAC-SHA256, so anyone holding the salt can check.
        assert_eq!(
            Keyed::new(&[0x0b; 20]).unwrap().hash_string("Hi There"),
            "hmac-sha256:b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
    }
}
