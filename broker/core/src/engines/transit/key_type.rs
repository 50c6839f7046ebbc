//! Transit key types (Vault's names): the symmetric types, which encrypt (envelope mode
//! with the type's AEAD in the broker; direct mode AES-256-GCM in the backend), and the
//! asymmetric types whose private keys live in a backend and sign.

use crate::{
    crypto::Aead,
    error::{Error, Result},
};

/// A transit key's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// AES-128-GCM with a 96-bit nonce: encryption (envelope).
    Aes128Gcm96,
    /// AES-256-GCM with a 96-bit nonce: encryption (envelope or direct).
    Aes256Gcm96,
    /// ChaCha20-Poly1305: encryption (envelope).
    ChaCha20Poly1305,
    /// XChaCha20-Poly1305 (OpenBao's type): encryption (envelope).
    XChaCha20Poly1305,
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
            "aes128-gcm96" => Self::Aes128Gcm96,
            "aes256-gcm96" => Self::Aes256Gcm96,
            "chacha20-poly1305" => Self::ChaCha20Poly1305,
            "xchacha20-poly1305" => Self::XChaCha20Poly1305,
            "rsa-2048" => Self::Rsa(2048),
            "rsa-3072" => Self::Rsa(3072),
            "rsa-4096" => Self::Rsa(4096),
            "ecdsa-p256" => Self::EcdsaP256,
            "ecdsa-p384" => Self::EcdsaP384,
            other => {
                return Err(Error::invalid(format!(
                    "unknown key type {other:?}: use aes128-gcm96, aes256-gcm96, \
                     chacha20-poly1305, xchacha20-poly1305, rsa-2048, rsa-3072, rsa-4096, \
                     ecdsa-p256 or ecdsa-p384"
                )))
            }
        })
    }

    /// Whether keys of this type sign (and do not encrypt).
    pub fn is_asymmetric(self) -> bool {
        self.aead().is_none()
    }

    /// The AEAD of a symmetric type, `None` for the asymmetric ones.
    pub fn aead(self) -> Option<Aead> {
        match self {
            Self::Aes128Gcm96 => Some(Aead::Aes128Gcm),
            Self::Aes256Gcm96 => Some(Aead::Aes256Gcm),
            Self::ChaCha20Poly1305 => Some(Aead::ChaCha20Poly1305),
            Self::XChaCha20Poly1305 => Some(Aead::XChaCha20Poly1305),
            Self::Rsa(_) | Self::EcdsaP256 | Self::EcdsaP384 => None,
        }
    }

    /// Whether this is an RSA type.
    pub fn is_rsa(self) -> bool {
        matches!(self, Self::Rsa(_))
    }

    /// How Vault names a version's key in `keys` of a key read (`P-256`, `rsa-2048`).
    pub fn version_name(self) -> &'static str {
        match self {
            Self::Aes128Gcm96 => "aes128-gcm96",
            Self::Aes256Gcm96 => "aes256-gcm96",
            Self::ChaCha20Poly1305 => "chacha20-poly1305",
            Self::XChaCha20Poly1305 => "xchacha20-poly1305",
            Self::Rsa(2048) => "rsa-2048",
            Self::Rsa(3072) => "rsa-3072",
            Self::Rsa(_) => "rsa-4096",
            Self::EcdsaP256 => "P-256",
            Self::EcdsaP384 => "P-384",
        }
    }
}

/// The AEAD of a key of type `key_type`; refuses data operations (encrypt, decrypt, datakey,
/// rewrap) on a signing key.
pub(super) fn require_encryption(key_type: &str) -> Result<Aead> {
    KeyType::parse(key_type)
        .ok()
        .and_then(KeyType::aead)
        .ok_or_else(|| Error::invalid(format!("key type {key_type} does not support encryption")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_types_are_refused() {
        for name in [
            "aes128-gcm96",
            "aes256-gcm96",
            "chacha20-poly1305",
            "xchacha20-poly1305",
            "rsa-2048",
            "rsa-3072",
            "rsa-4096",
            "ecdsa-p256",
            "ecdsa-p384",
        ] {
            let kind = KeyType::parse(name).unwrap();
            assert_eq!(
                kind.is_asymmetric(),
                name.starts_with("rsa") || name.starts_with("ecdsa")
            );
            assert_eq!(kind.version_name() == name, !name.starts_with("ecdsa"));
        }
        for bad in [
            "",
            "rsa-1024",
            "ed25519",
            "AES256-GCM96",
            "aes192-gcm96",
            "chacha20",
        ] {
            assert!(matches!(KeyType::parse(bad), Err(Error::InvalidRequest(_))));
        }
        assert!(require_encryption("aes256-gcm96").is_ok());
        assert!(require_encryption("ecdsa-p256").is_err());
    }
}
