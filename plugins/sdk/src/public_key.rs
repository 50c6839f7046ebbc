//! Public keys as PEM SubjectPublicKeyInfo (`-----BEGIN PUBLIC KEY-----`), what the ABI's
//! `public_key` answers.

use keybroker_plugin_abi::HashAlgorithm;
use p256::pkcs8::{EncodePublicKey as _, LineEnding};
use rsa::{traits::PublicKeyParts as _, Pkcs1v15Sign};

use crate::signature::{prehash_for, verify_rsa_pss_any_salt, Curve};

/// A public key of a type the broker signs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKey {
    /// RSA.
    Rsa(rsa::RsaPublicKey),
    /// NIST P-256.
    P256(p256::PublicKey),
    /// NIST P-384.
    P384(p384::PublicKey),
    /// NIST P-521.
    P521(p521::PublicKey),
    /// Ed25519.
    Ed25519(ed25519_dalek::VerifyingKey),
}

/// Why a public key could not be built or encoded.
#[derive(Debug)]
#[non_exhaustive]
pub enum PublicKeyError {
    /// The RSA modulus and exponent are not a usable key.
    Rsa(rsa::Error),
    /// The bytes are not a point of the curve.
    Point(p256::elliptic_curve::Error),
    /// The bytes are not an Ed25519 public key.
    Ed25519(ed25519_dalek::SignatureError),
    /// The key could not be DER-encoded.
    Encode(p256::pkcs8::spki::Error),
}

impl std::fmt::Display for PublicKeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PublicKeyError::Rsa(error) => error.fmt(f),
            PublicKeyError::Point(error) => error.fmt(f),
            PublicKeyError::Ed25519(error) => error.fmt(f),
            PublicKeyError::Encode(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for PublicKeyError {}

impl PublicKey {
    /// An RSA key from its big-endian modulus and public exponent.
    pub fn rsa(modulus: &[u8], exponent: &[u8]) -> Result<Self, PublicKeyError> {
        rsa::RsaPublicKey::new(
            rsa::BigUint::from_bytes_be(modulus),
            rsa::BigUint::from_bytes_be(exponent),
        )
        .map(PublicKey::Rsa)
        .map_err(PublicKeyError::Rsa)
    }

    /// An EC key from its SEC1 point (compressed or not).
    pub fn ec(curve: Curve, sec1: &[u8]) -> Result<Self, PublicKeyError> {
        match curve {
            Curve::P256 => p256::PublicKey::from_sec1_bytes(sec1).map(PublicKey::P256),
            Curve::P384 => p384::PublicKey::from_sec1_bytes(sec1).map(PublicKey::P384),
            Curve::P521 => p521::PublicKey::from_sec1_bytes(sec1).map(PublicKey::P521),
        }
        .map_err(PublicKeyError::Point)
    }

    /// An Ed25519 key from its 32 bytes (RFC 8032's encoding, as PKCS #11's `CKA_EC_POINT`
    /// carries it once unwrapped).
    pub fn ed25519(raw: &[u8]) -> Result<Self, PublicKeyError> {
        let bytes: [u8; 32] = raw
            .try_into()
            .map_err(|_| PublicKeyError::Ed25519(ed25519_dalek::SignatureError::new()))?;
        ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map(PublicKey::Ed25519)
            .map_err(PublicKeyError::Ed25519)
    }

    /// PEM SubjectPublicKeyInfo, with `\n` line endings.
    pub fn to_pem(&self) -> Result<String, PublicKeyError> {
        match self {
            PublicKey::Rsa(public) => {
                rsa::pkcs8::EncodePublicKey::to_public_key_pem(public, LineEnding::LF)
            }
            PublicKey::P256(public) => public.to_public_key_pem(LineEnding::LF),
            PublicKey::P384(public) => public.to_public_key_pem(LineEnding::LF),
            PublicKey::P521(public) => public.to_public_key_pem(LineEnding::LF),
            PublicKey::Ed25519(public) => public.to_public_key_pem(LineEnding::LF),
        }
        .map_err(PublicKeyError::Encode)
    }

    /// Verifies a signature over a digest: RSA with `scheme` `pss` (a salt of any length, see
    /// [`verify_rsa_pss_any_salt`]) or anything else for PKCS #1 v1.5, ECDSA as `r ‖ s`; Ed25519 (which hashes the message
    /// itself) over `digest` as the whole message, ignoring `hash`. `false` for anything that
    /// is not a valid signature (wrong length, zero scalars, garbage, a hash RSA is not used
    /// with).
    pub fn verify_prehash(
        &self,
        hash: HashAlgorithm,
        scheme: &str,
        digest: &[u8],
        signature: &[u8],
    ) -> bool {
        use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
        match self {
            PublicKey::Rsa(public) => {
                if signature.len() != public.size() {
                    return false;
                }
                let result = match (scheme, hash) {
                    // Any salt length, as Vault's `salt_length=auto`.
                    (
                        "pss",
                        HashAlgorithm::Sha256 | HashAlgorithm::Sha384 | HashAlgorithm::Sha512,
                    ) => return verify_rsa_pss_any_salt(public, hash, digest, signature),
                    (_, HashAlgorithm::Sha256) => {
                        public.verify(Pkcs1v15Sign::new::<sha2::Sha256>(), digest, signature)
                    }
                    (_, HashAlgorithm::Sha384) => {
                        public.verify(Pkcs1v15Sign::new::<sha2::Sha384>(), digest, signature)
                    }
                    (_, HashAlgorithm::Sha512) => {
                        public.verify(Pkcs1v15Sign::new::<sha2::Sha512>(), digest, signature)
                    }
                    _ => return false,
                };
                result.is_ok()
            }
            PublicKey::P256(public) => {
                p256::ecdsa::Signature::from_slice(signature).is_ok_and(|signature| {
                    p256::ecdsa::VerifyingKey::from(public)
                        .verify_prehash(digest, &signature)
                        .is_ok()
                })
            }
            PublicKey::P384(public) => {
                p384::ecdsa::Signature::from_slice(signature).is_ok_and(|signature| {
                    p384::ecdsa::VerifyingKey::from(public)
                        .verify_prehash(digest, &signature)
                        .is_ok()
                })
            }
            PublicKey::P521(public) => {
                let Ok(key) = p521::ecdsa::VerifyingKey::from_affine(*public.as_affine()) else {
                    return false;
                };
                p521::ecdsa::Signature::from_slice(signature).is_ok_and(|signature| {
                    key.verify_prehash(&prehash_for(Curve::P521, digest), &signature)
                        .is_ok()
                })
            }
            PublicKey::Ed25519(public) => {
                use ed25519_dalek::Verifier as _;
                ed25519_dalek::Signature::from_slice(signature)
                    .is_ok_and(|signature| public.verify(digest, &signature).is_ok())
            }
        }
    }
}

/// The DER SubjectPublicKeyInfo `der` (as AWS KMS's `GetPublicKey` answers it) as PEM, as is
/// (not parsed; the `pem` crate's line endings).
pub fn spki_der_to_pem(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("PUBLIC KEY", der))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use p256::pkcs8::DecodePublicKey as _;

    #[test]
    fn keys_encode_as_pem_spki() {
        let secret = p256::SecretKey::from_slice(&[7u8; 32]).unwrap();
        let public = secret.public_key();
        let point = p256::EncodedPoint::from(public);
        let pem = PublicKey::ec(Curve::P256, point.as_bytes())
            .unwrap()
            .to_pem()
            .unwrap();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
        assert_eq!(p256::PublicKey::from_public_key_pem(&pem).unwrap(), public);
        assert!(PublicKey::ec(Curve::P384, point.as_bytes()).is_err());
        let der = public.to_public_key_der().unwrap();
        let again = spki_der_to_pem(der.as_bytes());
        assert_eq!(
            p256::PublicKey::from_public_key_pem(&again).unwrap(),
            public
        );
        let rsa = PublicKey::rsa(&[0xff; 256], &[1, 0, 1]).unwrap();
        assert!(rsa
            .to_pem()
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert!(PublicKey::rsa(&[0xff; 256], &[]).is_err());

        use p256::ecdsa::signature::hazmat::PrehashSigner as _;
        let digest = [3u8; 32];
        let signing = p256::ecdsa::SigningKey::from(&secret);
        let signature: p256::ecdsa::Signature = signing.sign_prehash(&digest).unwrap();
        let key = PublicKey::P256(public);
        assert!(key.verify_prehash(HashAlgorithm::Sha256, "", &digest, &signature.to_bytes()));
        assert!(!key.verify_prehash(HashAlgorithm::Sha256, "", &[4u8; 32], &signature.to_bytes()));
        assert!(!key.verify_prehash(HashAlgorithm::Sha256, "", &digest, &[]));
        assert!(!rsa.verify_prehash(HashAlgorithm::Sha224, "", &digest, &[0; 256]));
    }

    #[test]
    fn p521_and_ed25519_keys_encode_and_verify() {
        use ed25519_dalek::{pkcs8::DecodePublicKey as _, Signer as _};
        use p256::ecdsa::signature::hazmat::PrehashSigner as _;

        let mut scalar = [5u8; 66];
        scalar[0] = 0; // below P-521's order, whose top byte is 1
        let secret = p521::SecretKey::from_slice(&scalar).unwrap();
        let point = p521::EncodedPoint::from(secret.public_key());
        let key = PublicKey::ec(Curve::P521, point.as_bytes()).unwrap();
        let pem = key.to_pem().unwrap();
        assert_eq!(
            p521::PublicKey::from_public_key_pem(&pem).unwrap(),
            secret.public_key()
        );
        let signing = p521::ecdsa::SigningKey::from_bytes(&secret.to_bytes()).unwrap();
        // A SHA-256 digest: shorter than half of P-521's scalar.
        let digest = [3u8; 32];
        let signature: p521::ecdsa::Signature = signing
            .sign_prehash(&prehash_for(Curve::P521, &digest))
            .unwrap();
        assert!(key.verify_prehash(HashAlgorithm::Sha256, "", &digest, &signature.to_bytes()));
        assert!(!key.verify_prehash(HashAlgorithm::Sha256, "", &[4u8; 32], &signature.to_bytes()));
        assert!(!key.verify_prehash(HashAlgorithm::Sha256, "", &digest, &[0; 132]));

        let signing = ed25519_dalek::SigningKey::from_bytes(&[8u8; 32]);
        let key = PublicKey::ed25519(signing.verifying_key().as_bytes()).unwrap();
        let pem = key.to_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
        assert_eq!(
            ed25519_dalek::VerifyingKey::from_public_key_pem(&pem).unwrap(),
            signing.verifying_key()
        );
        let message = b"the whole message, not a digest";
        let signature = signing.sign(message).to_bytes();
        assert!(key.verify_prehash(HashAlgorithm::Sha256, "", message, &signature));
        assert!(!key.verify_prehash(HashAlgorithm::Sha256, "", b"another", &signature));
        assert!(!key.verify_prehash(HashAlgorithm::Sha256, "", message, &signature[1..]));
        assert!(PublicKey::ed25519(&[1u8; 31]).is_err());
    }
}
