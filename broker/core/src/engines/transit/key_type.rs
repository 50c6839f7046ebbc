//! Transit key types (Vault's names): the symmetric AES key, and the asymmetric types whose
//! private keys live in a backend and sign.

use crate::error::{Error, Result};

/// A transit key's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// AES-256-GCM with a 96-bit nonce: encryption (envelope or direct).
    Aes256Gcm96,
    /// RSA with a modulus of this many bits (2048, 3072 or 4096): signing.
    Rsa(u16),
    /// ECDSA on P-256: signing.
    EcdsaP256,
    /// ECDSA on P-384: signing.
    EcdsaP384,
}

impl KeyType {
    /// Parses Vault's name of a type this broker supports.
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "aes256-gcm96" => Self::Aes256Gcm96,
            "rsa-2048" => Self::Rsa(2048),
            "rsa-3072" => Self::Rsa(3072),
            "rsa-4096" => Self::Rsa(4096),
            "ecdsa-p256" => Self::EcdsaP256,
            "ecdsa-p384" => Self::EcdsaP384,
            other => {
                return Err(Error::invalid(format!(
                    "unknown key type {other:?}: use aes256-gcm96, rsa-2048, rsa-3072, \
                     rsa-4096, ecdsa-p256 or ecdsa-p384"
                )))
            }
        })
    }

    /// Whether keys of this type sign (and do not encrypt).
    pub fn is_asymmetric(self) -> bool {
        !matches!(self, Self::Aes256Gcm96)
    }

    /// Whether this is an RSA type.
    pub fn is_rsa(self) -> bool {
        matches!(self, Self::Rsa(_))
    }

    /// How Vault names a version's key in `keys` of a key read (`P-256`, `rsa-2048`).
    pub fn version_name(self) -> &'static str {
        match self {
            Self::Aes256Gcm96 => "aes256-gcm96",
            Self::Rsa(2048) => "rsa-2048",
            Self::Rsa(3072) => "rsa-3072",
            Self::Rsa(_) => "rsa-4096",
            Self::EcdsaP256 => "P-256",
            Self::EcdsaP384 => "P-384",
        }
    }
}

/// Refuses data operations (encrypt, decrypt, datakey, rewrap) on a signing key.
pub(super) fn require_encryption(key_type: &str) -> Result<()> {
    match KeyType::parse(key_type) {
        Ok(kind) if !kind.is_asymmetric() => Ok(()),
        _ => Err(Error::invalid(format!(
            "key type {key_type} does not support encryption"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_types_are_refused() {
        for name in [
            "aes256-gcm96",
            "rsa-2048",
            "rsa-3072",
            "rsa-4096",
            "ecdsa-p256",
            "ecdsa-p384",
        ] {
            let kind = KeyType::parse(name).unwrap();
            assert_eq!(kind.is_asymmetric(), name != "aes256-gcm96");
        }
        for bad in [
            "",
            "rsa-1024",
            "ed25519",
            "AES256-GCM96",
            "chacha20-poly1305",
        ] {
            assert!(matches!(KeyType::parse(bad), Err(Error::InvalidRequest(_))));
        }
        assert!(require_encryption("aes256-gcm96").is_ok());
        assert!(require_encryption("ecdsa-p256").is_err());
    }
}
