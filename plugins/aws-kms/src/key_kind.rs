//! What a KMS key is, as the broker sees it: its key spec mapped to the ABI's key types, and
//! the signing algorithms and signature formats that follow from it.

use aws_sdk_kms::types::{KeySpec, KeyUsageType, SigningAlgorithmSpec};
use keybroker_plugin_abi::{key_type, HashAlgorithm, PluginError};
use keybroker_plugin_sdk::{
    entry::unsupported_key_type,
    signature::{self, Curve},
};

use crate::backend::NAME;

/// The kind of a KMS key the plugin can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyKind {
    /// `SYMMETRIC_DEFAULT`, `ENCRYPT_DECRYPT`.
    Symmetric,
    /// `RSA_*`, `SIGN_VERIFY`, with the modulus size in bytes.
    Rsa(usize),
    /// `ECC_NIST_P256`, `SIGN_VERIFY`.
    P256,
    /// `ECC_NIST_P384`, `SIGN_VERIFY`.
    P384,
    /// `ECC_NIST_P521`, `SIGN_VERIFY`.
    P521,
    /// Anything else (HMAC keys, RSA encryption keys, other curves): unusable here.
    Other,
}

impl KeyKind {
    /// The KMS key spec and usage for a broker key type; `INVALID_REQUEST` for others.
    pub(crate) fn for_key_type(
        name: &str,
    ) -> Result<(KeyKind, KeySpec, KeyUsageType), PluginError> {
        use KeyUsageType::{EncryptDecrypt, SignVerify};
        Ok(match name {
            key_type::AES256_GCM96 => (
                KeyKind::Symmetric,
                KeySpec::SymmetricDefault,
                EncryptDecrypt,
            ),
            key_type::RSA_2048 => (KeyKind::Rsa(256), KeySpec::Rsa2048, SignVerify),
            key_type::RSA_3072 => (KeyKind::Rsa(384), KeySpec::Rsa3072, SignVerify),
            key_type::RSA_4096 => (KeyKind::Rsa(512), KeySpec::Rsa4096, SignVerify),
            key_type::ECDSA_P256 => (KeyKind::P256, KeySpec::EccNistP256, SignVerify),
            key_type::ECDSA_P384 => (KeyKind::P384, KeySpec::EccNistP384, SignVerify),
            key_type::ECDSA_P521 => (KeyKind::P521, KeySpec::EccNistP521, SignVerify),
            // KMS has Ed25519 keys (ECC_NIST_EDWARDS25519), but moto, the KMS this plugin is
            // tested against, has not: refused until they can be tested.
            key_type::ED25519 => {
                return Err(unsupported_key_type(
                    NAME,
                    key_type::ED25519,
                    "this plugin does not create ECC_NIST_EDWARDS25519 keys; use local-kek or \
                     pkcs11 for ed25519",
                ))
            }
            other => {
                return Err(PluginError::invalid_request(format!(
                    "key type {other:?} is not supported by aws-kms; use aes256-gcm96, \
                     rsa-2048, rsa-3072, rsa-4096, ecdsa-p256, ecdsa-p384 or ecdsa-p521"
                )))
            }
        })
    }

    /// The kind of a key KMS describes.
    pub(crate) fn of(spec: Option<&KeySpec>, usage: Option<&KeyUsageType>) -> KeyKind {
        match (spec, usage) {
            (Some(KeySpec::SymmetricDefault), Some(KeyUsageType::EncryptDecrypt)) => {
                KeyKind::Symmetric
            }
            (Some(KeySpec::Rsa2048), Some(KeyUsageType::SignVerify)) => KeyKind::Rsa(256),
            (Some(KeySpec::Rsa3072), Some(KeyUsageType::SignVerify)) => KeyKind::Rsa(384),
            (Some(KeySpec::Rsa4096), Some(KeyUsageType::SignVerify)) => KeyKind::Rsa(512),
            (Some(KeySpec::EccNistP256), Some(KeyUsageType::SignVerify)) => KeyKind::P256,
            (Some(KeySpec::EccNistP384), Some(KeyUsageType::SignVerify)) => KeyKind::P384,
            (Some(KeySpec::EccNistP521), Some(KeyUsageType::SignVerify)) => KeyKind::P521,
            _ => KeyKind::Other,
        }
    }

    /// Whether the key signs (RSA or ECDSA).
    pub(crate) fn signs(self) -> bool {
        matches!(
            self,
            KeyKind::Rsa(_) | KeyKind::P256 | KeyKind::P384 | KeyKind::P521
        )
    }

    /// Refuses a key that is not symmetric, for encryption and data keys.
    pub(crate) fn require_symmetric(self, operation: &str) -> Result<(), PluginError> {
        if self == KeyKind::Symmetric {
            Ok(())
        } else {
            Err(PluginError::invalid_request(format!(
                "{operation} needs an aes256-gcm96 key"
            )))
        }
    }

    /// The KMS signing algorithm for this key and a request; `INVALID_REQUEST` for a
    /// symmetric key, a bad scheme or digest, or SHA-224 (KMS has no SHA-224 algorithm).
    pub(crate) fn signing_algorithm(
        self,
        hash_name: &str,
        scheme: &str,
        digest: &[u8],
    ) -> Result<SigningAlgorithmSpec, PluginError> {
        use SigningAlgorithmSpec as Alg;
        if !self.signs() {
            return Err(PluginError::invalid_request(
                "signing needs an rsa-* or ecdsa-* key",
            ));
        }
        let hash = HashAlgorithm::of_request(hash_name, digest)?;
        if hash == HashAlgorithm::Sha224 {
            return Err(PluginError::invalid_request(
                "AWS KMS has no SHA-224 signing algorithm; use sha2-256, sha2-384 or sha2-512",
            ));
        }
        let pick = |sha256, sha384, sha512| match hash {
            HashAlgorithm::Sha384 => sha384,
            HashAlgorithm::Sha512 => sha512,
            _ => sha256,
        };
        match (self, scheme) {
            (KeyKind::Rsa(_), "pss") => Ok(pick(
                Alg::RsassaPssSha256,
                Alg::RsassaPssSha384,
                Alg::RsassaPssSha512,
            )),
            (KeyKind::Rsa(_), "pkcs1v15") => Ok(pick(
                Alg::RsassaPkcs1V15Sha256,
                Alg::RsassaPkcs1V15Sha384,
                Alg::RsassaPkcs1V15Sha512,
            )),
            (KeyKind::Rsa(_), other) => Err(PluginError::invalid_request(format!(
                "signature_algorithm {other:?} is not supported for RSA keys; use pss or \
                 pkcs1v15"
            ))),
            // KMS signs with each curve's own hash only (KMS developer guide, "ECC key
            // specs"): ECC_NIST_P256 with SHA-256, ECC_NIST_P384 with SHA-384, ECC_NIST_P521
            // with SHA-512.
            (KeyKind::P256, "") if hash == HashAlgorithm::Sha256 => Ok(Alg::EcdsaSha256),
            (KeyKind::P384, "") if hash == HashAlgorithm::Sha384 => Ok(Alg::EcdsaSha384),
            (KeyKind::P521, "") if hash == HashAlgorithm::Sha512 => Ok(Alg::EcdsaSha512),
            (_, "") => {
                let (name, curve_hash) = match self {
                    KeyKind::P256 => ("ecdsa-p256", "sha2-256"),
                    KeyKind::P384 => ("ecdsa-p384", "sha2-384"),
                    _ => ("ecdsa-p521", "sha2-512"),
                };
                Err(PluginError::invalid_request(format!(
                    "AWS KMS signs with {name} keys only over {curve_hash} digests, not \
                     {hash_name}"
                )))
            }
            (_, other) => Err(PluginError::invalid_request(format!(
                "signature_algorithm {other:?} is not used with ECDSA keys; leave it empty"
            ))),
        }
    }

    /// KMS's signature (DER for ECDSA) in the ABI's format (`r ‖ s` for ECDSA).
    pub(crate) fn signature_from_kms(self, signature: &[u8]) -> Result<Vec<u8>, PluginError> {
        let Some(curve) = self.curve() else {
            return Ok(signature.to_vec());
        };
        signature::der_to_raw(curve, signature)
            .ok_or_else(|| PluginError::internal("AWS KMS returned a malformed ECDSA signature"))
    }

    /// The ABI's signature in KMS's format; `None` when it cannot be a signature of this key
    /// at all (wrong length, zero scalars), which verifies as false without asking KMS.
    pub(crate) fn signature_for_kms(self, signature: &[u8]) -> Option<Vec<u8>> {
        match self {
            KeyKind::P256 => signature::raw_to_der(Curve::P256, signature),
            KeyKind::P384 => signature::raw_to_der(Curve::P384, signature),
            KeyKind::P521 => signature::raw_to_der(Curve::P521, signature),
            KeyKind::Rsa(size) if signature.len() == size => Some(signature.to_vec()),
            _ => None,
        }
    }

    /// The curve of an ECDSA key.
    fn curve(self) -> Option<Curve> {
        match self {
            KeyKind::P256 => Some(Curve::P256),
            KeyKind::P384 => Some(Curve::P384),
            KeyKind::P521 => Some(Curve::P521),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keybroker_plugin_abi::ErrorKind;

    #[test]
    fn algorithms_follow_key_and_request() {
        let digest = [1u8; 32];
        assert_eq!(
            KeyKind::Rsa(256)
                .signing_algorithm("sha2-256", "pss", &digest)
                .unwrap(),
            SigningAlgorithmSpec::RsassaPssSha256
        );
        assert_eq!(
            KeyKind::P384
                .signing_algorithm("sha2-384", "", &[0; 48])
                .unwrap(),
            SigningAlgorithmSpec::EcdsaSha384
        );
        assert_eq!(
            KeyKind::P521
                .signing_algorithm("sha2-512", "", &[0; 64])
                .unwrap(),
            SigningAlgorithmSpec::EcdsaSha512
        );
        for (kind, hash, scheme, digest) in [
            (KeyKind::Rsa(256), "sha2-224", "pss", &[0u8; 28][..]),
            (KeyKind::Rsa(256), "sha2-256", "", &digest[..]),
            (KeyKind::P256, "sha2-256", "pss", &digest[..]),
            (KeyKind::P256, "sha2-384", "", &digest[..]),
            (KeyKind::P256, "sha2-384", "", &[0u8; 48][..]),
            (KeyKind::P384, "sha2-256", "", &digest[..]),
            (KeyKind::P521, "sha2-256", "", &digest[..]),
            (KeyKind::P521, "sha2-384", "", &[0u8; 48][..]),
            (KeyKind::Symmetric, "sha2-256", "", &digest[..]),
        ] {
            let error = kind.signing_algorithm(hash, scheme, digest).unwrap_err();
            assert_eq!(
                error.kind,
                ErrorKind::INVALID_REQUEST,
                "{kind:?} {hash} {scheme}"
            );
        }
    }

    #[test]
    fn ecdsa_signatures_convert_both_ways() {
        let mut raw = [0u8; 64];
        raw[31] = 7;
        raw[63] = 9;
        let der = KeyKind::P256.signature_for_kms(&raw).unwrap();
        assert_eq!(KeyKind::P256.signature_from_kms(&der).unwrap(), raw);
        assert!(KeyKind::P256.signature_for_kms(&raw[..63]).is_none());
        assert!(KeyKind::P256.signature_for_kms(&[0; 64]).is_none());
        assert!(KeyKind::Rsa(256).signature_for_kms(&[1; 255]).is_none());
        let mut raw = [0u8; 132];
        raw[65] = 7;
        raw[131] = 9;
        let der = KeyKind::P521.signature_for_kms(&raw).unwrap();
        assert_eq!(KeyKind::P521.signature_from_kms(&der).unwrap(), raw);
    }

    #[test]
    fn ed25519_is_refused_naming_the_backend_and_the_type() {
        let error = KeyKind::for_key_type("ed25519").unwrap_err();
        assert_eq!(error.kind, ErrorKind::INVALID_REQUEST);
        assert!(
            error
                .message
                .as_str()
                .starts_with("backend aws-kms cannot hold ed25519 keys"),
            "{}",
            error.message.as_str()
        );
        assert_eq!(
            KeyKind::for_key_type("ecdsa-p521").unwrap().1,
            KeySpec::EccNistP521
        );
    }
}
