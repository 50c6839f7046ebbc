//! Transit key types (Vault's names): the symmetric types, which encrypt (envelope mode
//! with the type's AEAD in the broker; direct mode AES-256-GCM in the backend), and the
//! asymmetric types whose private keys live in a backend and sign (RSA, ECDSA on P-256,
//! P-384 and P-521, Ed25519); RSA keys also encrypt, with the public key in the broker and
//! the private key in their backend (`rsa.rs`).

use base64::Engine as _;

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
    /// RSA with a modulus of this many bits (2048, 3072 or 4096): signing, and encryption
    /// (RSA-OAEP or PKCS #1 v1.5, `rsa.rs`).
    Rsa(u16),
    /// ECDSA on P-256: signing.
    EcdsaP256,
    /// ECDSA on P-384: signing.
    EcdsaP384,
    /// ECDSA on P-521: signing.
    EcdsaP521,
    /// Pure Ed25519 (RFC 8032), which hashes the input itself: signing.
    Ed25519,
    /// An HMAC key of `key_size` bytes: HMAC only (envelope).
    Hmac,
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
            "ecdsa-p521" => Self::EcdsaP521,
            "ed25519" => Self::Ed25519,
            "hmac" => Self::Hmac,
            other => {
                return Err(Error::invalid(format!(
                    "unknown key type {other:?}: use aes128-gcm96, aes256-gcm96, \
                     chacha20-poly1305, xchacha20-poly1305, rsa-2048, rsa-3072, rsa-4096, \
                     ecdsa-p256, ecdsa-p384, ecdsa-p521, ed25519 or hmac"
                )))
            }
        })
    }

    /// Whether keys of this type are key pairs whose private key lives in a backend.
    pub fn is_asymmetric(self) -> bool {
        matches!(
            self,
            Self::Rsa(_) | Self::EcdsaP256 | Self::EcdsaP384 | Self::EcdsaP521 | Self::Ed25519
        )
    }

    /// The AEAD of a symmetric type, `None` for the asymmetric ones.
    pub fn aead(self) -> Option<Aead> {
        match self {
            Self::Aes128Gcm96 => Some(Aead::Aes128Gcm),
            Self::Aes256Gcm96 => Some(Aead::Aes256Gcm),
            Self::ChaCha20Poly1305 => Some(Aead::ChaCha20Poly1305),
            Self::XChaCha20Poly1305 => Some(Aead::XChaCha20Poly1305),
            Self::Rsa(_)
            | Self::EcdsaP256
            | Self::EcdsaP384
            | Self::EcdsaP521
            | Self::Ed25519
            | Self::Hmac => None,
        }
    }

    /// Whether keys of this type encrypt and decrypt: the AEAD types (not `hmac`), and RSA (with
    /// the public key in the broker and the private key in the backend: `rsa.rs`).
    pub fn encrypts(self) -> bool {
        self.aead().is_some() || self.is_rsa()
    }

    /// Whether this is an RSA type.
    pub fn is_rsa(self) -> bool {
        matches!(self, Self::Rsa(_))
    }

    /// Whether this type signs the input itself rather than a digest of it (Ed25519).
    pub fn signs_input(self) -> bool {
        matches!(self, Self::Ed25519)
    }

    /// How Vault names a version's key in `keys` of a key read (`P-256`, `rsa-2048`,
    /// `ed25519`).
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
            Self::EcdsaP521 => "P-521",
            Self::Ed25519 => "ed25519",
            Self::Hmac => "hmac",
        }
    }

    /// A version's public key as Vault's key read shows it, from the PEM
    /// SubjectPublicKeyInfo a backend answers: the PEM itself, except for Ed25519, which
    /// Vault shows as the standard base64 of the key's 32 raw bytes.
    pub fn vault_public_key(self, pem: &str) -> Result<String> {
        if self != Self::Ed25519 {
            return Ok(pem.to_owned());
        }
        use ed25519_dalek::pkcs8::DecodePublicKey as _;
        let key = ed25519_dalek::VerifyingKey::from_public_key_pem(pem.trim()).map_err(|_| {
            Error::internal("backend answered a public key that is not an Ed25519 key")
        })?;
        Ok(base64::engine::general_purpose::STANDARD.encode(key.as_bytes()))
    }
}

/// Smallest and largest `key_size` of an `hmac` key, in bytes (Vault's bounds).
pub(super) const HMAC_KEY_SIZES: std::ops::RangeInclusive<u32> = 32..=512;

/// What each envelope version of `record` holds: its AEAD (none for an `hmac` key) and the
/// length of its HMAC key (an `hmac` key's `key_size`, else Vault's 32 bytes).
pub(super) fn version_layout(record: &crate::store::KeyRecord) -> Result<(Option<Aead>, usize)> {
    let key_type = KeyType::parse(&record.key_type)?;
    match key_type {
        KeyType::Hmac => Ok((None, record.options.key_size as usize)),
        _ => match key_type.aead() {
            Some(aead) => Ok((Some(aead), crate::crypto::HMAC_KEY_LEN)),
            None => Err(Error::internal("asymmetric key with envelope versions")),
        },
    }
}

/// The AEAD of a key of type `key_type`; refuses data operations (encrypt, decrypt, datakey,
/// rewrap) on a signing key. RSA keys never get here: encrypt and decrypt send them to
/// `rsa.rs` first.
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
            "ecdsa-p521",
            "ed25519",
            "hmac",
        ] {
            let kind = KeyType::parse(name).unwrap();
            assert_eq!(
                kind.is_asymmetric(),
                name.starts_with("rsa") || name.starts_with("ecdsa") || name == "ed25519"
            );
            assert_eq!(kind.signs_input(), name == "ed25519");
            assert_eq!(
                kind.encrypts(),
                (!kind.is_asymmetric() && name != "hmac") || name.starts_with("rsa")
            );
            assert_eq!(kind.version_name() == name, !name.starts_with("ecdsa"));
        }
        assert_eq!(KeyType::EcdsaP521.version_name(), "P-521");
        assert_eq!(KeyType::Ed25519.version_name(), "ed25519");
        let unknown = KeyType::parse("ed448").unwrap_err().to_string();
        assert!(unknown.contains("ed25519 or hmac"), "{unknown}");
        for bad in [
            "",
            "rsa-1024",
            "ed448",
            "ecdsa-p224",
            "ED25519",
            "AES256-GCM96",
            "aes192-gcm96",
            "chacha20",
        ] {
            assert!(matches!(KeyType::parse(bad), Err(Error::InvalidRequest(_))));
        }
        assert!(require_encryption("aes256-gcm96").is_ok());
        assert!(require_encryption("ecdsa-p256").is_err());
        assert!(require_encryption("ed25519").is_err());
        assert!(require_encryption("hmac").is_err());
    }

    #[test]
    fn ed25519_public_keys_read_as_raw_base64_and_others_as_pem() {
        use base64::Engine as _;
        use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, EncodePublicKey as _};
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
        let pem = key.to_public_key_pem(LineEnding::LF).unwrap();
        let shown = KeyType::Ed25519.vault_public_key(&pem).unwrap();
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(&shown)
                .unwrap(),
            key.as_bytes()
        );
        assert_eq!(shown.len(), 44);
        assert_eq!(KeyType::EcdsaP521.vault_public_key(&pem).unwrap(), pem);
        assert!(KeyType::Ed25519.vault_public_key("not a key").is_err());
    }
}
