//! [Hash data](https://openbao.org/api-docs/secret/transit/#hash-data): the digest of some
//! data with no key, `POST /transit/hash(/:algorithm)`.
//!
//! The request is checked in OpenBao's order, with OpenBao's messages: the input must be
//! present, then be base64 (decoded as Go's `base64.StdEncoding` decodes it), then the format
//! must be `hex` or `base64`, then the algorithm known. An absent `algorithm` or `format` is
//! the default (`sha2-256`, `hex`); a present but empty one is refused, as in OpenBao.

use base64::{engine::general_purpose::STANDARD, Engine as _};
use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};
use sha3::{Sha3_224, Sha3_256, Sha3_384, Sha3_512};

use crate::error::{Error, Result};

/// A hash function of Vault's `transit/hash` (its `algorithm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HashFunction {
    /// SHA-224 (FIPS 180-4).
    Sha2_224,
    /// SHA-256 (FIPS 180-4), Vault's default.
    #[default]
    Sha2_256,
    /// SHA-384 (FIPS 180-4).
    Sha2_384,
    /// SHA-512 (FIPS 180-4).
    Sha2_512,
    /// SHA3-224 (FIPS 202).
    Sha3_224,
    /// SHA3-256 (FIPS 202).
    Sha3_256,
    /// SHA3-384 (FIPS 202).
    Sha3_384,
    /// SHA3-512 (FIPS 202).
    Sha3_512,
}

impl HashFunction {
    /// Every hash function, in Vault's order.
    pub const ALL: [Self; 8] = [
        Self::Sha2_224,
        Self::Sha2_256,
        Self::Sha2_384,
        Self::Sha2_512,
        Self::Sha3_224,
        Self::Sha3_256,
        Self::Sha3_384,
        Self::Sha3_512,
    ];

    /// Parses Vault's name (`sha3-256`); anything else, the empty name included, is refused
    /// with OpenBao's message.
    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|function| function.name() == name)
            .ok_or_else(|| Error::invalid(format!("unsupported algorithm {name}")))
    }

    /// Vault's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha2_224 => "sha2-224",
            Self::Sha2_256 => "sha2-256",
            Self::Sha2_384 => "sha2-384",
            Self::Sha2_512 => "sha2-512",
            Self::Sha3_224 => "sha3-224",
            Self::Sha3_256 => "sha3-256",
            Self::Sha3_384 => "sha3-384",
            Self::Sha3_512 => "sha3-512",
        }
    }

    /// The digest of `input`.
    pub fn digest(self, input: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha2_224 => Sha224::digest(input).to_vec(),
            Self::Sha2_256 => Sha256::digest(input).to_vec(),
            Self::Sha2_384 => Sha384::digest(input).to_vec(),
            Self::Sha2_512 => Sha512::digest(input).to_vec(),
            Self::Sha3_224 => Sha3_224::digest(input).to_vec(),
            Self::Sha3_256 => Sha3_256::digest(input).to_vec(),
            Self::Sha3_384 => Sha3_384::digest(input).to_vec(),
            Self::Sha3_512 => Sha3_512::digest(input).to_vec(),
        }
    }
}

/// How a sum is written (Vault's `format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SumFormat {
    /// Lowercase hex, Vault's default.
    #[default]
    Hex,
    /// Standard base64, padded.
    Base64,
}

impl SumFormat {
    /// Parses Vault's name (`hex`, `base64`); anything else, the empty name included, is
    /// refused with OpenBao's message.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "hex" => Ok(Self::Hex),
            "base64" => Ok(Self::Base64),
            _ => Err(Error::invalid(format!(
                "unsupported encoding format {name}; must be \"hex\" or \"base64\""
            ))),
        }
    }

    /// `bytes` written in this format.
    pub fn encode(self, bytes: &[u8]) -> String {
        match self {
            Self::Hex => hex::encode(bytes),
            Self::Base64 => STANDARD.encode(bytes),
        }
    }
}

/// A hash request's fields as given: `None` where the field is absent.
#[derive(Clone, Copy, Debug, Default)]
pub struct HashRequest<'a> {
    /// `input`: the data, in base64.
    pub input: Option<&'a str>,
    /// The algorithm named in the path (`hash/:algorithm`), which wins over the body's.
    pub path_algorithm: Option<&'a str>,
    /// `algorithm` from the body.
    pub algorithm: Option<&'a str>,
    /// `format`.
    pub format: Option<&'a str>,
}

/// The sum Vault's `transit/hash` answers for `request`, checked in OpenBao's order.
pub fn hash_data(request: &HashRequest<'_>) -> Result<String> {
    let input = request
        .input
        .ok_or_else(|| Error::invalid("input missing"))?;
    let input = decode_go_base64(input)
        .map_err(|offset| {
            Error::invalid(format!(
                "unable to decode input as base64: illegal base64 data at input byte {offset}"
            ))
        })
        .map(zeroize::Zeroizing::new)?;
    let format = request
        .format
        .map_or(Ok(SumFormat::Hex), SumFormat::parse)?;
    let function = match request.path_algorithm.filter(|a| !a.is_empty()) {
        Some(name) => HashFunction::parse(name)?,
        None => request
            .algorithm
            .map_or(Ok(HashFunction::Sha2_256), HashFunction::parse)?,
    };
    Ok(format.encode(&function.digest(&input)))
}

/// The value of a character of the standard base64 alphabet.
fn sextet(byte: u8) -> Option<u8> {
    match byte {
        b'A'..=b'Z' => Some(byte - b'A'),
        b'a'..=b'z' => Some(byte - b'a' + 26),
        b'0'..=b'9' => Some(byte - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Decodes base64 as Go's `base64.StdEncoding.DecodeString` does, which is what Vault and
/// OpenBao decode `input` with: the standard alphabet, padding required, `\r` and `\n`
/// skipped anywhere, and the unused low bits of the last character ignored (`adba32==`, the
/// API page's sample, is valid). On failure, the offset Go's `CorruptInputError` names.
pub fn decode_go_base64(text: &str) -> std::result::Result<Vec<u8>, usize> {
    let src = text.as_bytes();
    let skip_newlines = |mut at: usize| {
        while src.get(at).is_some_and(|b| matches!(b, b'\n' | b'\r')) {
            at += 1;
        }
        at
    };
    let mut out = Vec::with_capacity(src.len() / 4 * 3);
    let mut at = 0;
    loop {
        // One quantum: up to four characters, newlines skipped.
        let mut quantum = [0u8; 4];
        let mut filled = 0;
        let mut end = false;
        while filled < 4 {
            let Some(&byte) = src.get(at) else {
                return match filled {
                    0 => Ok(out),
                    _ => Err(at - filled),
                };
            };
            at += 1;
            if let Some(value) = sextet(byte) {
                quantum[filled] = value;
                filled += 1;
                continue;
            }
            if matches!(byte, b'\n' | b'\r') {
                continue;
            }
            if byte != b'=' || filled < 2 {
                return Err(at - 1);
            }
            // Padding: "==" after two characters, "=" after three, then only newlines.
            if filled == 2 {
                at = skip_newlines(at);
                match src.get(at) {
                    None => return Err(src.len()),
                    Some(b'=') => at += 1,
                    Some(_) => return Err(at - 1),
                }
            }
            at = skip_newlines(at);
            if at < src.len() {
                return Err(at);
            }
            end = true;
            break;
        }
        let value = (u32::from(quantum[0]) << 18)
            | (u32::from(quantum[1]) << 12)
            | (u32::from(quantum[2]) << 6)
            | u32::from(quantum[3]);
        let bytes = value.to_be_bytes();
        out.extend_from_slice(&bytes[1..filled]);
        if end {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FIPS 180-4 / FIPS 202 example digests of "abc" (NIST CSRC example values).
    const ABC: [(HashFunction, &str); 8] = [
        (
            HashFunction::Sha2_224,
            "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7",
        ),
        (
            HashFunction::Sha2_256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        ),
        (
            HashFunction::Sha2_384,
            "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed\
             8086072ba1e7cc2358baeca134c825a7",
        ),
        (
            HashFunction::Sha2_512,
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        ),
        (
            HashFunction::Sha3_224,
            "e642824c3f8cf24ad09234ee7d3c766fc9a3a5168d0c94ad73b46fdf",
        ),
        (
            HashFunction::Sha3_256,
            "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532",
        ),
        (
            HashFunction::Sha3_384,
            "ec01498288516fc926459f58e2c6ad8df9b473cb0fc08c2596da7cf0e49be4b2\
             98d88cea927ac7f539f1edf228376d25",
        ),
        (
            HashFunction::Sha3_512,
            "b751850b1a57168a5693cd924b6b096e08f621827444f70d884f5d0240d2712e\
             10e116e9192af3c91a7ec57647e3934057340b4cf408d5a56592f8274eec53f0",
        ),
    ];

    /// "abc" in base64.
    const ABC_B64: &str = "YWJj";

    fn request<'a>(
        input: Option<&'a str>,
        path_algorithm: Option<&'a str>,
        algorithm: Option<&'a str>,
        format: Option<&'a str>,
    ) -> HashRequest<'a> {
        HashRequest {
            input,
            path_algorithm,
            algorithm,
            format,
        }
    }

    fn refusal(request: &HashRequest<'_>) -> String {
        match hash_data(request) {
            Err(Error::InvalidRequest(message)) => message,
            other => panic!("expected an invalid request, got {other:?}"),
        }
    }

    #[test]
    fn every_algorithm_gives_the_published_digest_of_abc_in_both_formats() {
        for (function, hex_digest) in ABC {
            let name = function.name();
            assert_eq!(HashFunction::parse(name).unwrap(), function);
            let bytes = hex::decode(hex_digest).unwrap();
            assert_eq!(function.digest(b"abc"), bytes, "{name}");
            // In the path, in the body, default format and both named formats.
            for req in [
                request(Some(ABC_B64), Some(name), None, None),
                request(Some(ABC_B64), None, Some(name), None),
                request(Some(ABC_B64), Some(name), None, Some("hex")),
            ] {
                assert_eq!(hash_data(&req).unwrap(), hex_digest, "{name}");
            }
            let req = request(Some(ABC_B64), Some(name), None, Some("base64"));
            assert_eq!(hash_data(&req).unwrap(), STANDARD.encode(&bytes), "{name}");
        }
    }

    #[test]
    fn the_defaults_are_sha2_256_and_hex_and_the_path_wins_over_the_body() {
        let sha256 = ABC[1].1;
        assert_eq!(
            hash_data(&request(Some(ABC_B64), None, None, None)).unwrap(),
            sha256
        );
        // An empty path segment is no algorithm there.
        assert_eq!(
            hash_data(&request(Some(ABC_B64), Some(""), None, None)).unwrap(),
            sha256
        );
        assert_eq!(
            hash_data(&request(
                Some(ABC_B64),
                Some("sha3-512"),
                Some("sha2-224"),
                None
            ))
            .unwrap(),
            ABC[7].1
        );
        // Even over a body algorithm that is not one.
        assert_eq!(
            hash_data(&request(Some(ABC_B64), Some("sha2-256"), Some("md5"), None)).unwrap(),
            sha256
        );
        // The empty input is hashed.
        assert_eq!(
            hash_data(&request(Some(""), None, None, None)).unwrap(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn refusals_carry_openbaos_messages_in_openbaos_order() {
        assert_eq!(refusal(&request(None, None, None, None)), "input missing");
        assert_eq!(
            refusal(&request(None, Some("md5"), None, Some("raw"))),
            "input missing"
        );
        assert_eq!(
            refusal(&request(
                Some("not base64!"),
                Some("md5"),
                None,
                Some("raw")
            )),
            "unable to decode input as base64: illegal base64 data at input byte 3"
        );
        assert_eq!(
            refusal(&request(Some(ABC_B64), Some("md5"), None, Some("raw"))),
            "unsupported encoding format raw; must be \"hex\" or \"base64\""
        );
        assert_eq!(
            refusal(&request(Some(ABC_B64), None, None, Some(""))),
            "unsupported encoding format ; must be \"hex\" or \"base64\""
        );
        assert_eq!(
            refusal(&request(Some(ABC_B64), Some("md5"), None, None)),
            "unsupported algorithm md5"
        );
        assert_eq!(
            refusal(&request(Some(ABC_B64), None, Some("SHA2-256"), None)),
            "unsupported algorithm SHA2-256"
        );
        assert_eq!(
            refusal(&request(Some(ABC_B64), None, Some(""), None)),
            "unsupported algorithm "
        );
    }

    #[test]
    fn base64_is_decoded_as_go_decodes_it() {
        assert_eq!(decode_go_base64("").unwrap(), b"");
        assert_eq!(decode_go_base64("YWJj").unwrap(), b"abc");
        assert_eq!(decode_go_base64("YWI=").unwrap(), b"ab");
        assert_eq!(decode_go_base64("YQ==").unwrap(), b"a");
        assert_eq!(decode_go_base64("YW\r\nJj\n").unwrap(), b"abc");
        assert_eq!(decode_go_base64("YQ=\n=\n").unwrap(), b"a");
        // Unused low bits are ignored: the API page's sample.
        assert_eq!(
            decode_go_base64("adba32==").unwrap(),
            [0x69, 0xd6, 0xda, 0xdf]
        );
        assert_eq!(
            decode_go_base64("YR==").unwrap(),
            decode_go_base64("YQ==").unwrap()
        );
        // Go's CorruptInputError offsets.
        assert_eq!(decode_go_base64("YQ"), Err(0));
        assert_eq!(decode_go_base64("YWJjYQ"), Err(4));
        assert_eq!(decode_go_base64("YWJjY"), Err(4));
        assert_eq!(decode_go_base64("YWJ"), Err(0));
        assert_eq!(decode_go_base64("=YWJ"), Err(0));
        assert_eq!(decode_go_base64("Y=WJ"), Err(1));
        assert_eq!(decode_go_base64("YQ="), Err(3));
        assert_eq!(decode_go_base64("YQ=x"), Err(2));
        assert_eq!(decode_go_base64("YQ==YQ=="), Err(4));
        assert_eq!(decode_go_base64("YWI=x"), Err(4));
        assert_eq!(decode_go_base64(" YWJj"), Err(0));
        assert_eq!(decode_go_base64("YWJj "), Err(4));
        assert_eq!(decode_go_base64("YW-j"), Err(2));
        assert_eq!(decode_go_base64("not base64!"), Err(3));
    }
}
