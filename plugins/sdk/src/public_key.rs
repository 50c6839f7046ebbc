//! Public keys as PEM SubjectPublicKeyInfo (`-----BEGIN PUBLIC KEY-----`), what the ABI's
//! `public_key` answers.

use p256::pkcs8::{EncodePublicKey as _, LineEnding};

use crate::signature::Curve;

/// A public key of a type the broker signs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKey {
    /// RSA.
    Rsa(rsa::RsaPublicKey),
    /// NIST P-256.
    P256(p256::PublicKey),
    /// NIST P-384.
    P384(p384::PublicKey),
}

/// Why a public key could not be built or encoded.
#[derive(Debug)]
#[non_exhaustive]
pub enum PublicKeyError {
    /// The RSA modulus and exponent are not a usable key.
    Rsa(rsa::Error),
    /// The bytes are not a point of the curve.
    Point(p256::elliptic_curve::Error),
    /// The key could not be DER-encoded.
    Encode(p256::pkcs8::spki::Error),
}

impl std::fmt::Display for PublicKeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PublicKeyError::Rsa(error) => error.fmt(f),
            PublicKeyError::Point(error) => error.fmt(f),
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
        }
        .map_err(PublicKeyError::Point)
    }

    /// PEM SubjectPublicKeyInfo, with `\n` line endings.
    pub fn to_pem(&self) -> Result<String, PublicKeyError> {
        match self {
            PublicKey::Rsa(public) => {
                rsa::pkcs8::EncodePublicKey::to_public_key_pem(public, LineEnding::LF)
            }
            PublicKey::P256(public) => public.to_public_key_pem(LineEnding::LF),
            PublicKey::P384(public) => public.to_public_key_pem(LineEnding::LF),
        }
        .map_err(PublicKeyError::Encode)
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
    }
}
