//! Software asymmetric keys: generation, PKCS #8 (de)serialisation, signing and verification
//! of digests the broker computed.
//!
//! Nothing here knows about KEKs or references: [`crate::signing`] seals what this module
//! serialises. Private keys live in types that wipe themselves on drop (`RsaPrivateKey`,
//! ECDSA `SigningKey`, P-521's `SecretKey` and Ed25519's `SigningKey` are `ZeroizeOnDrop`,
//! serialised forms and scalars copied out are `Zeroizing`), and [`PrivateKey`] has no
//! `Debug` impl (the `rsa` crate's would print the private exponent).
//!
//! Ed25519 is pure Ed25519 (RFC 8032): the request's `digest` is the whole message, which the
//! algorithm hashes itself, and its `hash_algorithm` is `none`.

use keybroker_plugin_abi::{
    key_type, PluginError, HASH_NONE, RSA_PADDING_OAEP_SHA256, RSA_PADDING_PKCS1V15,
};
use keybroker_plugin_sdk::{
    public_key::PublicKey,
    signature::{prehash_for, verify_rsa_pss_any_salt, Curve},
};
use p256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use rand::rngs::OsRng;
use rsa::{
    pkcs8::{DecodePrivateKey, EncodePrivateKey},
    traits::PublicKeyParts,
    Oaep, Pkcs1v15Encrypt, Pkcs1v15Sign, Pss, RsaPrivateKey,
};
use sha2::{Sha224, Sha256, Sha384, Sha512};
use zeroize::Zeroizing;

/// The asymmetric key types this plugin creates (see [`keybroker_plugin_abi::key_type`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyType {
    Rsa2048,
    Rsa3072,
    Rsa4096,
    EcdsaP256,
    EcdsaP384,
    EcdsaP521,
    Ed25519,
}

impl KeyType {
    /// Every type, in the order of [`key_type::ASYMMETRIC`].
    #[cfg(test)]
    pub(crate) const ALL: [Self; 7] = [
        Self::Rsa2048,
        Self::Rsa3072,
        Self::Rsa4096,
        Self::EcdsaP256,
        Self::EcdsaP384,
        Self::EcdsaP521,
        Self::Ed25519,
    ];

    /// The type named `name`, if it is an asymmetric type.
    pub(crate) fn parse(name: &str) -> Option<Self> {
        match name {
            key_type::RSA_2048 => Some(Self::Rsa2048),
            key_type::RSA_3072 => Some(Self::Rsa3072),
            key_type::RSA_4096 => Some(Self::Rsa4096),
            key_type::ECDSA_P256 => Some(Self::EcdsaP256),
            key_type::ECDSA_P384 => Some(Self::EcdsaP384),
            key_type::ECDSA_P521 => Some(Self::EcdsaP521),
            key_type::ED25519 => Some(Self::Ed25519),
            _ => None,
        }
    }

    /// The broker's name of the type.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Rsa2048 => key_type::RSA_2048,
            Self::Rsa3072 => key_type::RSA_3072,
            Self::Rsa4096 => key_type::RSA_4096,
            Self::EcdsaP256 => key_type::ECDSA_P256,
            Self::EcdsaP384 => key_type::ECDSA_P384,
            Self::EcdsaP521 => key_type::ECDSA_P521,
            Self::Ed25519 => key_type::ED25519,
        }
    }

    /// The RSA modulus size in bits, `None` for ECDSA and Ed25519.
    pub(crate) fn rsa_bits(self) -> Option<usize> {
        match self {
            Self::Rsa2048 => Some(2048),
            Self::Rsa3072 => Some(3072),
            Self::Rsa4096 => Some(4096),
            Self::EcdsaP256 | Self::EcdsaP384 | Self::EcdsaP521 | Self::Ed25519 => None,
        }
    }
}

/// A digest algorithm, by Vault's name.
pub(crate) use keybroker_plugin_abi::HashAlgorithm as Hash;

/// RSASSA-PSS and RSASSA-PKCS1-v1_5 with a hash.
trait RsaPadding {
    /// RSASSA-PSS with MGF1 over the same hash and a salt as long as the digest (signing;
    /// verification takes any salt length).
    fn pss(self) -> Pss;
    /// RSASSA-PKCS1-v1_5 with the hash's DigestInfo.
    fn pkcs1v15(self) -> Pkcs1v15Sign;
}

impl RsaPadding for Hash {
    fn pss(self) -> Pss {
        let salt_len = self.digest_len();
        match self {
            Self::Sha224 => Pss::new_with_salt::<Sha224>(salt_len),
            Self::Sha256 => Pss::new_with_salt::<Sha256>(salt_len),
            Self::Sha384 => Pss::new_with_salt::<Sha384>(salt_len),
            Self::Sha512 => Pss::new_with_salt::<Sha512>(salt_len),
        }
    }

    fn pkcs1v15(self) -> Pkcs1v15Sign {
        match self {
            Self::Sha224 => Pkcs1v15Sign::new::<Sha224>(),
            Self::Sha256 => Pkcs1v15Sign::new::<Sha256>(),
            Self::Sha384 => Pkcs1v15Sign::new::<Sha384>(),
            Self::Sha512 => Pkcs1v15Sign::new::<Sha512>(),
        }
    }
}

/// How to sign or verify: checked against the key type and the digest before any key is
/// opened, so a malformed request costs no decryption.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scheme {
    RsaPss(Hash),
    RsaPkcs1v15(Hash),
    Ecdsa,
    /// Pure Ed25519 over the whole message.
    Ed25519,
}

impl Scheme {
    /// The scheme a sign or verify request asks for, or `INVALID_REQUEST`.
    pub(crate) fn for_request(
        key_type: KeyType,
        hash_algorithm: &str,
        signature_algorithm: &str,
        digest: &[u8],
    ) -> Result<Self, PluginError> {
        if key_type == KeyType::Ed25519 {
            return match (hash_algorithm, signature_algorithm) {
                (HASH_NONE, "") => Ok(Self::Ed25519),
                (HASH_NONE, other) => Err(PluginError::invalid_request(format!(
                    "signature_algorithm must be empty for ed25519 keys, not {other:?}"
                ))),
                (other, _) => Err(PluginError::invalid_request(format!(
                    "hash_algorithm must be {HASH_NONE:?} for ed25519 keys (pure Ed25519 signs \
                     the message), not {other:?}"
                ))),
            };
        }
        let hash = Hash::of_request(hash_algorithm, digest)?;
        match (key_type.rsa_bits(), signature_algorithm) {
            (Some(_), "pss") => Ok(Self::RsaPss(hash)),
            (Some(_), "pkcs1v15") => Ok(Self::RsaPkcs1v15(hash)),
            (Some(_), other) => Err(PluginError::invalid_request(format!(
                "signature_algorithm {other:?} is not supported for {} keys; use pss or pkcs1v15",
                key_type.name()
            ))),
            (None, "") => Ok(Self::Ecdsa),
            (None, other) => Err(PluginError::invalid_request(format!(
                "signature_algorithm must be empty for {} keys, not {other:?}",
                key_type.name()
            ))),
        }
    }
}

/// A parsed private key. Wiped on drop; deliberately not `Debug`.
pub(crate) enum PrivateKey {
    Rsa(RsaPrivateKey),
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    /// Kept as its scalar: P-521's `SigningKey` has no PKCS #8 of its own.
    P521(p521::SecretKey),
    Ed25519(ed25519_dalek::SigningKey),
}

impl PrivateKey {
    /// A fresh key of `key_type` from the operating system's random number generator.
    pub(crate) fn generate(key_type: KeyType) -> Result<Self, PluginError> {
        let rsa = |bits| {
            RsaPrivateKey::new(&mut OsRng, bits)
                .map(Self::Rsa)
                .map_err(|_| PluginError::internal("RSA key generation failed"))
        };
        match key_type {
            KeyType::Rsa2048 => rsa(2048),
            KeyType::Rsa3072 => rsa(3072),
            KeyType::Rsa4096 => rsa(4096),
            KeyType::EcdsaP256 => Ok(Self::P256(p256::ecdsa::SigningKey::random(&mut OsRng))),
            KeyType::EcdsaP384 => Ok(Self::P384(p384::ecdsa::SigningKey::random(&mut OsRng))),
            KeyType::EcdsaP521 => Ok(Self::P521(p521::SecretKey::random(&mut OsRng))),
            KeyType::Ed25519 => Ok(Self::Ed25519(ed25519_dalek::SigningKey::generate(
                &mut OsRng,
            ))),
        }
    }

    /// The key as PKCS #8 DER, in a buffer wiped on drop.
    pub(crate) fn to_pkcs8(&self) -> Result<Zeroizing<Vec<u8>>, PluginError> {
        let document = match self {
            Self::Rsa(key) => key.to_pkcs8_der(),
            Self::P256(key) => key.to_pkcs8_der(),
            Self::P384(key) => key.to_pkcs8_der(),
            Self::P521(key) => key.to_pkcs8_der(),
            Self::Ed25519(key) => key.to_pkcs8_der(),
        }
        .map_err(|_| PluginError::internal("encoding the private key failed"))?;
        // `SecretDocument` wipes its own copy.
        Ok(Zeroizing::new(document.as_bytes().to_vec()))
    }

    /// Parses PKCS #8 DER written by [`Self::to_pkcs8`], checking that it is a `key_type`.
    pub(crate) fn from_pkcs8(key_type: KeyType, der: &[u8]) -> Result<Self, PluginError> {
        let malformed = || PluginError::internal("the sealed private key does not parse");
        let key = match key_type {
            KeyType::EcdsaP256 => {
                Self::P256(p256::ecdsa::SigningKey::from_pkcs8_der(der).map_err(|_| malformed())?)
            }
            KeyType::EcdsaP384 => {
                Self::P384(p384::ecdsa::SigningKey::from_pkcs8_der(der).map_err(|_| malformed())?)
            }
            KeyType::EcdsaP521 => {
                Self::P521(p521::SecretKey::from_pkcs8_der(der).map_err(|_| malformed())?)
            }
            KeyType::Ed25519 => Self::Ed25519(
                ed25519_dalek::SigningKey::from_pkcs8_der(der).map_err(|_| malformed())?,
            ),
            KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096 => {
                let key = RsaPrivateKey::from_pkcs8_der(der).map_err(|_| malformed())?;
                if Some(key.n().bits()) != key_type.rsa_bits() {
                    return Err(malformed());
                }
                Self::Rsa(key)
            }
        };
        Ok(key)
    }

    /// Parses a private key someone brings (PKCS #8 DER), which must be of exactly
    /// `key_type`: an RSA key of that size, a key on that curve. Anything else is an invalid
    /// request naming the expected type, never the material.
    pub(crate) fn import_pkcs8(key_type: KeyType, der: &[u8]) -> Result<Self, PluginError> {
        let refused = || {
            PluginError::invalid_request(format!(
                "the private key is not a PKCS #8 {} private key",
                key_type.name()
            ))
        };
        let key = match key_type {
            KeyType::EcdsaP256 => {
                Self::P256(p256::ecdsa::SigningKey::from_pkcs8_der(der).map_err(|_| refused())?)
            }
            KeyType::EcdsaP384 => {
                Self::P384(p384::ecdsa::SigningKey::from_pkcs8_der(der).map_err(|_| refused())?)
            }
            KeyType::EcdsaP521 => {
                Self::P521(p521::SecretKey::from_pkcs8_der(der).map_err(|_| refused())?)
            }
            KeyType::Ed25519 => Self::Ed25519(
                ed25519_dalek::SigningKey::from_pkcs8_der(der).map_err(|_| refused())?,
            ),
            KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096 => {
                let key = RsaPrivateKey::from_pkcs8_der(der).map_err(|_| refused())?;
                if Some(key.n().bits()) != key_type.rsa_bits() {
                    return Err(PluginError::invalid_request(format!(
                        "the private key is a {}-bit RSA key, not a {} key",
                        key.n().bits(),
                        key_type.name()
                    )));
                }
                // Its components must make a consistent key (primes that multiply to the
                // modulus, exponents that invert each other), not just parse.
                key.validate().map_err(|_| refused())?;
                Self::Rsa(key)
            }
        };
        Ok(key)
    }

    /// Signs a digest: RSA as PKCS #1 defines it, ECDSA as `r ‖ s`; Ed25519 signs `digest` as
    /// the whole message, in RFC 8032's 64 bytes.
    pub(crate) fn sign(&self, scheme: Scheme, digest: &[u8]) -> Result<Vec<u8>, PluginError> {
        let failed = || PluginError::internal("signing failed");
        match (self, scheme) {
            // With a random number generator the private-key operation is blinded.
            (Self::Rsa(key), Scheme::RsaPss(hash)) => key
                .sign_with_rng(&mut OsRng, hash.pss(), digest)
                .map_err(|_| failed()),
            (Self::Rsa(key), Scheme::RsaPkcs1v15(hash)) => key
                .sign_with_rng(&mut OsRng, hash.pkcs1v15(), digest)
                .map_err(|_| failed()),
            (Self::P256(key), Scheme::Ecdsa) => {
                let signature: p256::ecdsa::Signature =
                    key.sign_prehash(digest).map_err(|_| failed())?;
                Ok(signature.to_bytes().to_vec())
            }
            (Self::P384(key), Scheme::Ecdsa) => {
                let signature: p384::ecdsa::Signature =
                    key.sign_prehash(digest).map_err(|_| failed())?;
                Ok(signature.to_bytes().to_vec())
            }
            (Self::P521(secret), Scheme::Ecdsa) => {
                let signature: p521::ecdsa::Signature = p521_signing_key(secret)?
                    .sign_prehash(&prehash_for(Curve::P521, digest))
                    .map_err(|_| failed())?;
                Ok(signature.to_bytes().to_vec())
            }
            (Self::Ed25519(key), Scheme::Ed25519) => {
                use ed25519_dalek::Signer as _;
                Ok(key.sign(digest).to_bytes().to_vec())
            }
            _ => Err(PluginError::internal(
                "signature scheme does not match the key",
            )),
        }
    }

    /// Whether `signature` is valid over `digest`; anything malformed is simply not valid.
    pub(crate) fn verify(&self, scheme: Scheme, digest: &[u8], signature: &[u8]) -> bool {
        match (self, scheme) {
            // Any salt length, as Vault's `salt_length=auto` (signing uses the digest's).
            (Self::Rsa(key), Scheme::RsaPss(hash)) => {
                verify_rsa_pss_any_salt(key.as_ref(), hash, digest, signature)
            }
            (Self::Rsa(key), Scheme::RsaPkcs1v15(hash)) => key
                .as_ref()
                .verify(hash.pkcs1v15(), digest, signature)
                .is_ok(),
            (Self::P256(key), Scheme::Ecdsa) => p256::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|signature| {
                    key.verifying_key()
                        .verify_prehash(digest, &signature)
                        .is_ok()
                }),
            (Self::P384(key), Scheme::Ecdsa) => p384::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|signature| {
                    key.verifying_key()
                        .verify_prehash(digest, &signature)
                        .is_ok()
                }),
            (Self::P521(secret), Scheme::Ecdsa) => PublicKey::P521(secret.public_key())
                .verify_prehash(Hash::Sha512, "", digest, signature),
            (Self::Ed25519(key), Scheme::Ed25519) => PublicKey::Ed25519(key.verifying_key())
                .verify_prehash(Hash::Sha512, "", digest, signature),
            _ => false,
        }
    }

    /// Decrypts a raw RSA ciphertext with the padding the decrypt request's AAD names
    /// (`capability::ASYMMETRIC_DECRYPT`); an empty ciphertext only asks whether the padding
    /// is one this plugin decrypts. Every failure to decrypt answers the same message, so
    /// the answer tells nothing of where the padding check failed.
    pub(crate) fn decrypt(
        &self,
        padding: &[u8],
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, PluginError> {
        let Self::Rsa(key) = self else {
            return Err(PluginError::invalid_request(
                "only RSA keys decrypt: this key type does not support encryption",
            ));
        };
        let oaep = padding == RSA_PADDING_OAEP_SHA256.as_bytes();
        if !oaep && padding != RSA_PADDING_PKCS1V15.as_bytes() {
            return Err(PluginError::invalid_request(format!(
                "unknown RSA padding {:?}: use {RSA_PADDING_OAEP_SHA256} or \
                 {RSA_PADDING_PKCS1V15}",
                String::from_utf8_lossy(padding)
            )));
        }
        if ciphertext.is_empty() {
            return Ok(Zeroizing::new(Vec::new()));
        }
        // With a random number generator the private-key operation is blinded.
        let plaintext = if oaep {
            key.decrypt_blinded(&mut OsRng, Oaep::new::<Sha256>(), ciphertext)
        } else {
            key.decrypt_blinded(&mut OsRng, Pkcs1v15Encrypt, ciphertext)
        };
        plaintext
            .map(Zeroizing::new)
            .map_err(|_| PluginError::invalid_request("RSA decryption failed"))
    }

    /// The public key as a PEM `PUBLIC KEY` (SubjectPublicKeyInfo).
    pub(crate) fn public_key_pem(&self) -> Result<String, PluginError> {
        let public = match self {
            Self::Rsa(key) => PublicKey::Rsa(key.as_ref().clone()),
            Self::P256(key) => PublicKey::P256(key.verifying_key().into()),
            Self::P384(key) => PublicKey::P384(key.verifying_key().into()),
            Self::P521(secret) => PublicKey::P521(secret.public_key()),
            Self::Ed25519(key) => PublicKey::Ed25519(key.verifying_key()),
        };
        public
            .to_pem()
            .map_err(|_| PluginError::internal("encoding the public key failed"))
    }
}

/// P-521's signing key from its scalar; the scalar copied out on the way is wiped.
fn p521_signing_key(secret: &p521::SecretKey) -> Result<p521::ecdsa::SigningKey, PluginError> {
    let scalar = Zeroizing::new(secret.to_bytes());
    p521::ecdsa::SigningKey::from_bytes(&scalar)
        .map_err(|_| PluginError::internal("the P-521 private key is not usable"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keybroker_plugin_abi::ErrorKind;
    use rsa::pkcs8::DecodePublicKey;
    use sha2::Digest;

    #[test]
    fn key_type_names_round_trip() {
        for (key_type, name) in KeyType::ALL.iter().zip(key_type::ASYMMETRIC) {
            assert_eq!(key_type.name(), name);
            assert_eq!(KeyType::parse(name), Some(*key_type));
        }
        for other in [
            "",
            "aes256-gcm96",
            "rsa-1024",
            "RSA-2048",
            "ecdsa-p224",
            "ed448",
        ] {
            assert_eq!(KeyType::parse(other), None, "{other:?}");
        }
    }

    #[test]
    fn schemes_are_checked_against_key_type_and_digest() {
        let digest = [7u8; 32];
        let ok = |key_type, hash: &str, algorithm: &str, digest: &[u8]| {
            Scheme::for_request(key_type, hash, algorithm, digest).unwrap()
        };
        assert_eq!(
            ok(KeyType::Rsa2048, "sha2-256", "pss", &digest),
            Scheme::RsaPss(Hash::Sha256)
        );
        assert_eq!(
            ok(KeyType::Rsa4096, "sha2-512", "pkcs1v15", &[0; 64]),
            Scheme::RsaPkcs1v15(Hash::Sha512)
        );
        assert_eq!(
            ok(KeyType::EcdsaP384, "sha2-224", "", &[0; 28]),
            Scheme::Ecdsa
        );
        assert_eq!(
            ok(KeyType::EcdsaP521, "sha2-224", "", &[0; 28]),
            Scheme::Ecdsa
        );
        // Ed25519 takes a message of any length.
        for message in [&b""[..], b"m", &[9; 5000]] {
            assert_eq!(ok(KeyType::Ed25519, "none", "", message), Scheme::Ed25519);
        }
        for (key_type, hash, algorithm, digest) in [
            (KeyType::Rsa2048, "sha2-256", "", &digest[..]),
            (KeyType::Rsa2048, "sha2-256", "PSS", &digest[..]),
            (KeyType::Rsa2048, "sha2-384", "pss", &digest[..]),
            (KeyType::Rsa2048, "sha1", "pkcs1v15", &digest[..20]),
            (KeyType::EcdsaP256, "sha2-256", "pss", &digest[..]),
            (KeyType::EcdsaP256, "sha2-256", "", &digest[..31]),
            (KeyType::EcdsaP256, "", "", &digest[..]),
            (KeyType::EcdsaP521, "none", "", &digest[..]),
            (KeyType::Ed25519, "sha2-256", "", &digest[..]),
            (KeyType::Ed25519, "none", "pss", &digest[..]),
        ] {
            let error = Scheme::for_request(key_type, hash, algorithm, digest).unwrap_err();
            assert_eq!(
                error.kind,
                ErrorKind::INVALID_REQUEST,
                "{key_type:?} {hash} {algorithm}"
            );
        }
    }

    /// Sign, verify, and check the signature with the public key alone, as a client would.
    #[test]
    fn rsa_signatures_verify_with_the_public_key() {
        let key = PrivateKey::generate(KeyType::Rsa2048).unwrap();
        let pem = key.public_key_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
        let public = rsa::RsaPublicKey::from_public_key_pem(&pem).unwrap();
        assert_eq!(public.n().bits(), 2048);
        let digest = Sha256::digest(b"message");
        for scheme in [
            Scheme::RsaPss(Hash::Sha256),
            Scheme::RsaPkcs1v15(Hash::Sha256),
        ] {
            let signature = key.sign(scheme, &digest).unwrap();
            assert_eq!(signature.len(), 256);
            assert!(key.verify(scheme, &digest, &signature), "{scheme:?}");
            assert!(!key.verify(scheme, &[0; 32], &signature), "{scheme:?}");
            assert!(!key.verify(scheme, &digest, &signature[1..]), "{scheme:?}");
            let independent = match scheme {
                Scheme::RsaPss(_) => public.verify(Pss::new::<Sha256>(), &digest, &signature),
                _ => public.verify(Pkcs1v15Sign::new::<Sha256>(), &digest, &signature),
            };
            independent.unwrap();
        }
        // PKCS #1 v1.5 is deterministic, PSS is salted.
        let pkcs1 = Scheme::RsaPkcs1v15(Hash::Sha256);
        assert_eq!(
            key.sign(pkcs1, &digest).unwrap(),
            key.sign(pkcs1, &digest).unwrap()
        );
        let pss = Scheme::RsaPss(Hash::Sha256);
        assert_ne!(
            key.sign(pss, &digest).unwrap(),
            key.sign(pss, &digest).unwrap()
        );
        // The wrong scheme never verifies.
        let signature = key.sign(pss, &digest).unwrap();
        assert!(!key.verify(pkcs1, &digest, &signature));
        assert!(!key.verify(Scheme::Ecdsa, &digest, &signature));
    }

    /// Vault and OpenBao sign PSS with the largest salt by default and verify any salt
    /// length (`salt_length=auto`): so does `verify`, for a key imported from them.
    #[test]
    fn rsa_pss_verifies_with_any_salt_length() {
        let key = PrivateKey::generate(KeyType::Rsa2048).unwrap();
        let PrivateKey::Rsa(private) = &key else {
            unreachable!()
        };
        for hash in [Hash::Sha224, Hash::Sha256, Hash::Sha384, Hash::Sha512] {
            let h_len = hash.digest_len();
            let digest = vec![0x33; h_len];
            let scheme = Scheme::RsaPss(hash);
            for salt_len in [0, 20, h_len, 256 - h_len - 2] {
                let padding = match hash {
                    Hash::Sha224 => Pss::new_with_salt::<Sha224>(salt_len),
                    Hash::Sha256 => Pss::new_with_salt::<Sha256>(salt_len),
                    Hash::Sha384 => Pss::new_with_salt::<Sha384>(salt_len),
                    Hash::Sha512 => Pss::new_with_salt::<Sha512>(salt_len),
                };
                let signature = private.sign_with_rng(&mut OsRng, padding, &digest).unwrap();
                let case = format!("{hash:?} salt {salt_len}");
                assert!(key.verify(scheme, &digest, &signature), "{case}");
                assert!(
                    !key.verify(scheme, &vec![0x44; h_len], &signature),
                    "{case}"
                );
                assert!(
                    !key.verify(Scheme::RsaPkcs1v15(hash), &digest, &signature),
                    "{case}"
                );
                let mut tampered = signature.clone();
                tampered[128] ^= 1;
                assert!(!key.verify(scheme, &digest, &tampered), "{case}");
                assert!(!key.verify(scheme, &digest, &signature[1..]), "{case}");
            }
            let other = if hash == Hash::Sha512 {
                Hash::Sha256
            } else {
                Hash::Sha512
            };
            let signature = key.sign(scheme, &digest).unwrap();
            assert!(!key.verify(
                Scheme::RsaPss(other),
                &vec![0x33; other.digest_len()],
                &signature
            ));
            for garbage in [vec![0u8; 256], vec![0xff; 256], vec![0x5a; 256], vec![]] {
                assert!(!key.verify(scheme, &digest, &garbage));
            }
        }
    }

    #[test]
    fn ecdsa_signatures_are_raw_r_and_s() {
        for (key_type, size) in [(KeyType::EcdsaP256, 64), (KeyType::EcdsaP384, 96)] {
            let key = PrivateKey::generate(key_type).unwrap();
            let pem = key.public_key_pem().unwrap();
            for digest in [
                Sha256::digest(b"m").to_vec(),
                Sha384::digest(b"m").to_vec(),
                Sha512::digest(b"m").to_vec(),
            ] {
                let signature = key.sign(Scheme::Ecdsa, &digest).unwrap();
                assert_eq!(signature.len(), size, "{key_type:?}");
                assert!(key.verify(Scheme::Ecdsa, &digest, &signature));
                let mut tampered = signature.clone();
                tampered[size / 2] ^= 1;
                assert!(!key.verify(Scheme::Ecdsa, &digest, &tampered));
                assert!(!key.verify(Scheme::Ecdsa, &digest, &signature[..size - 1]));
                assert!(!key.verify(Scheme::Ecdsa, &digest, &[]));
                assert!(!key.verify(Scheme::Ecdsa, &[1; 32], &signature));
                let independent = match key_type {
                    KeyType::EcdsaP256 => p256::ecdsa::VerifyingKey::from_public_key_pem(&pem)
                        .unwrap()
                        .verify_prehash(
                            &digest,
                            &p256::ecdsa::Signature::from_slice(&signature).unwrap(),
                        ),
                    _ => p384::ecdsa::VerifyingKey::from_public_key_pem(&pem)
                        .unwrap()
                        .verify_prehash(
                            &digest,
                            &p384::ecdsa::Signature::from_slice(&signature).unwrap(),
                        ),
                };
                independent.unwrap();
            }
        }
    }

    /// P-521 over every SHA-2 digest, SHA-224 and SHA-256 included (shorter than half its
    /// scalar), checked with the reference crate from the PEM alone.
    #[test]
    fn p521_signatures_are_raw_r_and_s_over_every_digest() {
        use p256::pkcs8::DecodePublicKey as _;
        let key = PrivateKey::generate(KeyType::EcdsaP521).unwrap();
        let pem = key.public_key_pem().unwrap();
        let public = p521::PublicKey::from_public_key_pem(&pem).unwrap();
        let verifying = p521::ecdsa::VerifyingKey::from_affine(*public.as_affine()).unwrap();
        for digest in [
            Sha224::digest(b"m").to_vec(),
            Sha256::digest(b"m").to_vec(),
            Sha384::digest(b"m").to_vec(),
            Sha512::digest(b"m").to_vec(),
        ] {
            let signature = key.sign(Scheme::Ecdsa, &digest).unwrap();
            assert_eq!(signature.len(), 132);
            assert!(key.verify(Scheme::Ecdsa, &digest, &signature));
            assert!(!key.verify(Scheme::Ecdsa, &Sha256::digest(b"n"), &signature));
            assert!(!key.verify(Scheme::Ecdsa, &digest, &signature[1..]));
            let mut padded = vec![0u8; 66 - digest.len()];
            padded.extend_from_slice(&digest);
            verifying
                .verify_prehash(
                    &padded,
                    &p521::ecdsa::Signature::from_slice(&signature).unwrap(),
                )
                .unwrap();
        }
        assert!(!key.verify(Scheme::Ed25519, b"m", &[0; 64]));
    }

    /// Pure Ed25519 over the message: deterministic, RFC 8032's 64 bytes, verified with the
    /// reference crate from the PEM alone.
    #[test]
    fn ed25519_signs_the_message() {
        use ed25519_dalek::{pkcs8::DecodePublicKey as _, Verifier as _};
        let key = PrivateKey::generate(KeyType::Ed25519).unwrap();
        let pem = key.public_key_pem().unwrap();
        let public = ed25519_dalek::VerifyingKey::from_public_key_pem(&pem).unwrap();
        for message in [&b""[..], b"message", &[7; 10_000]] {
            let signature = key.sign(Scheme::Ed25519, message).unwrap();
            assert_eq!(signature.len(), 64);
            assert_eq!(key.sign(Scheme::Ed25519, message).unwrap(), signature);
            assert!(key.verify(Scheme::Ed25519, message, &signature));
            assert!(!key.verify(Scheme::Ed25519, b"other", &signature));
            assert!(!key.verify(Scheme::Ed25519, message, &signature[..63]));
            public
                .verify(
                    message,
                    &ed25519_dalek::Signature::from_slice(&signature).unwrap(),
                )
                .unwrap();
        }
        assert!(key.sign(Scheme::Ecdsa, b"m").is_err());
        let der = key.to_pkcs8().unwrap();
        let parsed = PrivateKey::from_pkcs8(KeyType::Ed25519, &der).unwrap();
        assert_eq!(parsed.public_key_pem().unwrap(), pem);
        assert!(PrivateKey::from_pkcs8(KeyType::EcdsaP521, &der).is_err());
    }

    #[test]
    fn pkcs8_round_trip_keeps_the_key_and_checks_its_type() {
        let key = PrivateKey::generate(KeyType::EcdsaP256).unwrap();
        let der = key.to_pkcs8().unwrap();
        let parsed = PrivateKey::from_pkcs8(KeyType::EcdsaP256, &der).unwrap();
        assert_eq!(
            parsed.public_key_pem().unwrap(),
            key.public_key_pem().unwrap()
        );
        for wrong in [
            KeyType::EcdsaP384,
            KeyType::EcdsaP521,
            KeyType::Ed25519,
            KeyType::Rsa2048,
        ] {
            assert!(PrivateKey::from_pkcs8(wrong, &der).is_err(), "{wrong:?}");
        }
        assert!(PrivateKey::from_pkcs8(KeyType::EcdsaP256, &der[1..]).is_err());
    }
}
