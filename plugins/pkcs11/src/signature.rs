//! Signature schemes over digests the broker computed.
//!
//! - RSA `pkcs1v15`: `CKM_RSA_PKCS` over `DigestInfo(hash) ‖ digest` (RFC 8017 §9.2);
//! - RSA `pss`: `CKM_RSA_PKCS_PSS` with the same SHA-2 as hash and as MGF1 hash, salt as long
//!   as the digest;
//! - ECDSA: `CKM_ECDSA` over the digest; the signature is `r ‖ s` as PKCS#11 returns it;
//! - Ed25519: `CKM_EDDSA` without parameters (pure Ed25519) over the whole message, which
//!   the ABI carries in its `digest` field with `hash_algorithm` `none`.

use cryptoki::mechanism::{
    eddsa::{EddsaParams, EddsaSignatureScheme},
    rsa::{PkcsMgfType, PkcsPssParams},
    Mechanism, MechanismType,
};
use keybroker_plugin_abi::{PluginError, HASH_NONE};

use crate::keys::KeyKind;

/// A SHA-2 hash, by Vault's name.
pub(crate) use keybroker_plugin_abi::HashAlgorithm as Hash;

/// What PKCS #11 needs to know of a hash.
trait Pkcs11Hash {
    fn digest_info_prefix(self) -> &'static [u8];
    fn mechanism(self) -> MechanismType;
    fn mgf1(self) -> PkcsMgfType;
}

impl Pkcs11Hash for Hash {
    /// DER of `DigestInfo` up to the digest itself (RFC 8017 §9.2, note 1).
    fn digest_info_prefix(self) -> &'static [u8] {
        match self {
            Hash::Sha224 => &[
                0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x04, 0x05, 0x00, 0x04, 0x1c,
            ],
            Hash::Sha256 => &[
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x01, 0x05, 0x00, 0x04, 0x20,
            ],
            Hash::Sha384 => &[
                0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x02, 0x05, 0x00, 0x04, 0x30,
            ],
            Hash::Sha512 => &[
                0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x03, 0x05, 0x00, 0x04, 0x40,
            ],
        }
    }

    fn mechanism(self) -> MechanismType {
        match self {
            Hash::Sha224 => MechanismType::SHA224,
            Hash::Sha256 => MechanismType::SHA256,
            Hash::Sha384 => MechanismType::SHA384,
            Hash::Sha512 => MechanismType::SHA512,
        }
    }

    fn mgf1(self) -> PkcsMgfType {
        match self {
            Hash::Sha224 => PkcsMgfType::MGF1_SHA224,
            Hash::Sha256 => PkcsMgfType::MGF1_SHA256,
            Hash::Sha384 => PkcsMgfType::MGF1_SHA384,
            Hash::Sha512 => PkcsMgfType::MGF1_SHA512,
        }
    }
}

/// How to sign with a key of `kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scheme {
    Pkcs1v15(Hash),
    Pss(Hash),
    Ecdsa,
    /// Pure Ed25519 over the message.
    Eddsa,
}

/// The hash a sign or verify request names: `None` for [`HASH_NONE`] (Ed25519's message),
/// otherwise a SHA-2 checked against the digest's length.
pub(crate) fn request_hash(name: &str, digest: &[u8]) -> Result<Option<Hash>, PluginError> {
    if name == HASH_NONE {
        return Ok(None);
    }
    Hash::of_request(name, digest).map(Some)
}

impl Scheme {
    /// The scheme for a key and the request's `signature_algorithm`.
    pub(crate) fn choose(
        kind: KeyKind,
        hash: Option<Hash>,
        signature_algorithm: &str,
    ) -> Result<Scheme, PluginError> {
        let hash = match (kind, hash) {
            (KeyKind::Ed25519, None) if signature_algorithm.is_empty() => return Ok(Scheme::Eddsa),
            (KeyKind::Ed25519, None) => {
                return Err(PluginError::invalid_request(format!(
                    "an Ed25519 key takes no signature_algorithm (got {signature_algorithm:?})"
                )))
            }
            (KeyKind::Ed25519, Some(_)) => {
                return Err(PluginError::invalid_request(format!(
                    "an Ed25519 key signs the message itself: hash_algorithm must be \
                     {HASH_NONE:?}"
                )))
            }
            (_, Some(hash)) => hash,
            (_, None) => {
                return Err(PluginError::invalid_request(format!(
                    "hash_algorithm {HASH_NONE:?} is only for Ed25519 keys"
                )))
            }
        };
        match (kind, signature_algorithm) {
            (KeyKind::Rsa { .. }, "pkcs1v15") => Ok(Scheme::Pkcs1v15(hash)),
            (KeyKind::Rsa { .. }, "pss") => Ok(Scheme::Pss(hash)),
            (KeyKind::Rsa { .. }, other) => Err(PluginError::invalid_request(format!(
                "an RSA key needs signature_algorithm \"pss\" or \"pkcs1v15\", not {other:?}"
            ))),
            (KeyKind::Ec(_), "") => Ok(Scheme::Ecdsa),
            (KeyKind::Ec(_), other) => Err(PluginError::invalid_request(format!(
                "an ECDSA key takes no signature_algorithm (got {other:?})"
            ))),
            (other, _) => Err(PluginError::invalid_request(format!(
                "the key is {}: it cannot sign",
                other.describe()
            ))),
        }
    }

    /// The mechanism and the data to hand to `C_Sign`/`C_Verify`.
    pub(crate) fn mechanism_and_input(self, digest: &[u8]) -> (Mechanism<'static>, Vec<u8>) {
        match self {
            Scheme::Pkcs1v15(hash) => {
                let prefix = hash.digest_info_prefix();
                let mut input = Vec::with_capacity(prefix.len() + digest.len());
                input.extend_from_slice(prefix);
                input.extend_from_slice(digest);
                (Mechanism::RsaPkcs, input)
            }
            Scheme::Pss(hash) => {
                let params = PkcsPssParams {
                    hash_alg: hash.mechanism(),
                    mgf: hash.mgf1(),
                    // usize → CK_ULONG: a digest length always fits.
                    s_len: (hash.digest_len() as u64).into(),
                };
                (Mechanism::RsaPkcsPss(params), digest.to_vec())
            }
            Scheme::Ecdsa => (Mechanism::Ecdsa, digest.to_vec()),
            Scheme::Eddsa => (
                Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
                digest.to_vec(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Curve;
    use keybroker_plugin_abi::ErrorKind;

    #[test]
    fn digests_must_match_their_hash() {
        assert_eq!(
            Hash::of_request("sha2-256", &[0; 32]).unwrap(),
            Hash::Sha256
        );
        assert_eq!(
            Hash::of_request("sha2-224", &[0; 28]).unwrap(),
            Hash::Sha224
        );
        assert_eq!(
            Hash::of_request("sha2-512", &[0; 64]).unwrap(),
            Hash::Sha512
        );
        for (hash, len) in [("sha2-256", 31), ("sha2-384", 32), ("sha1", 20), ("", 32)] {
            let error = Hash::of_request(hash, &vec![0; len]).unwrap_err();
            assert_eq!(error.kind, ErrorKind::INVALID_REQUEST, "{hash} {len}");
        }
    }

    #[test]
    fn schemes_follow_the_key() {
        let rsa = KeyKind::Rsa { bits: 2048 };
        let ec = KeyKind::Ec(Curve::P256);
        let sha256 = Some(Hash::Sha256);
        assert_eq!(
            Scheme::choose(rsa, sha256, "pss").unwrap(),
            Scheme::Pss(Hash::Sha256)
        );
        assert_eq!(
            Scheme::choose(rsa, Some(Hash::Sha384), "pkcs1v15").unwrap(),
            Scheme::Pkcs1v15(Hash::Sha384)
        );
        assert_eq!(Scheme::choose(ec, sha256, "").unwrap(), Scheme::Ecdsa);
        assert_eq!(
            Scheme::choose(KeyKind::Ec(Curve::P521), sha256, "").unwrap(),
            Scheme::Ecdsa
        );
        assert_eq!(
            Scheme::choose(KeyKind::Ed25519, None, "").unwrap(),
            Scheme::Eddsa
        );
        for (kind, hash, algorithm) in [
            (rsa, sha256, ""),
            (rsa, sha256, "oaep"),
            (rsa, None, "pss"),
            (ec, sha256, "pss"),
            (ec, None, ""),
            (KeyKind::Ed25519, sha256, ""),
            (KeyKind::Ed25519, None, "pss"),
            (KeyKind::Aes { len: 32 }, sha256, ""),
        ] {
            let error = Scheme::choose(kind, hash, algorithm).unwrap_err();
            assert_eq!(
                error.kind,
                ErrorKind::INVALID_REQUEST,
                "{kind:?} {hash:?} {algorithm}"
            );
        }
        assert_eq!(request_hash("none", b"any message").unwrap(), None);
        assert_eq!(request_hash("sha2-256", &[0; 32]).unwrap(), sha256);
        assert!(request_hash("none-ish", &[0; 32]).is_err());
    }

    #[test]
    fn pkcs1v15_input_is_digest_info() {
        use sha2::Digest as _;
        // DigestInfo for SHA-256 of "abc", as any RSA library builds it.
        let digest = sha2::Sha256::digest(b"abc");
        let (_, input) = Scheme::Pkcs1v15(Hash::Sha256).mechanism_and_input(&digest);
        assert_eq!(input.len(), 19 + 32);
        assert_eq!(
            hex::encode(&input[..19]),
            "3031300d060960864801650304020105000420"
        );
        assert_eq!(&input[19..], digest.as_slice());
        for hash in [Hash::Sha224, Hash::Sha256, Hash::Sha384, Hash::Sha512] {
            let prefix = hash.digest_info_prefix();
            // The outer SEQUENCE length covers the rest of the prefix and the digest.
            assert_eq!(usize::from(prefix[1]), prefix.len() - 2 + hash.digest_len());
            assert_eq!(usize::from(prefix[prefix.len() - 1]), hash.digest_len());
        }
    }
}
