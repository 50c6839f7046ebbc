//! What a Key Vault key is, as the broker sees it: its JWK (type, size or curve, allowed
//! operations) mapped to the ABI's key types, the signing algorithms that follow from it,
//! and local verification with its public key.

use azure_security_keyvault_keys::models::{CurveName, JsonWebKey, KeyType, SignatureAlgorithm};
use keybroker_plugin_abi::{key_type, HashAlgorithm, PluginError};
use keybroker_plugin_sdk::{entry::unsupported_key_type, public_key::PublicKey};

use crate::backend::NAME;
use rsa::{traits::PublicKeyParts as _, BigUint, RsaPublicKey};

/// RSA-OAEP-256 overhead: two SHA-256 lengths and two bytes.
const OAEP_SHA256_OVERHEAD: usize = 2 * 32 + 2;
/// The smallest RSA key accepted for wrapping, in bytes (RSA-2048).
pub(crate) const MIN_WRAPPING_KEY_BYTES: usize = 256;
/// The largest data key RSA-OAEP-256 wraps under the smallest accepted key: 190 bytes.
pub const MAX_WRAP_PAYLOAD: usize = MIN_WRAPPING_KEY_BYTES - OAEP_SHA256_OVERHEAD;
/// The RSA modulus of the wrapping keys the plugin creates, in bits.
pub(crate) const CREATED_WRAPPING_KEY_BITS: i32 = 3072;

/// The kind of a Key Vault key the plugin can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyKind {
    /// An RSA key: modulus size in bytes, and whether its `key_ops` allow wrapKey and
    /// unwrapKey (envelope mode), sign (signing), and decrypt (what the broker encrypted
    /// with its public key).
    Rsa {
        bytes: usize,
        wrap: bool,
        sign: bool,
        decrypt: bool,
    },
    /// An EC P-256 key whose `key_ops` allow sign.
    P256,
    /// An EC P-384 key whose `key_ops` allow sign.
    P384,
    /// An EC P-521 key whose `key_ops` allow sign.
    P521,
    /// Anything else (symmetric keys, other curves, keys without usable operations).
    Other,
}

/// A key version as Key Vault describes it.
#[derive(Clone, Debug)]
pub(crate) struct KeyDescription {
    pub kind: KeyKind,
    pub public: Option<PublicKey>,
    /// The version described (the last segment of the `kid`).
    pub version: String,
}

fn has(ops: &[String], op: &str) -> bool {
    ops.iter().any(|o| o == op)
}

impl KeyDescription {
    /// Reads a JWK. Unknown key types and curves are [`KeyKind::Other`], without a public key.
    pub(crate) fn of(jwk: &JsonWebKey, version: String) -> Self {
        let ops = jwk.key_ops.clone().unwrap_or_default();
        let other = |version| Self {
            kind: KeyKind::Other,
            public: None,
            version,
        };
        match jwk.kty.as_ref() {
            Some(KeyType::Rsa | KeyType::RsaHsm) => {
                let (Some(n), Some(e)) = (&jwk.n, &jwk.e) else {
                    return other(version);
                };
                let Ok(public) =
                    RsaPublicKey::new(BigUint::from_bytes_be(n), BigUint::from_bytes_be(e))
                else {
                    return other(version);
                };
                Self {
                    kind: KeyKind::Rsa {
                        bytes: public.size(),
                        wrap: has(&ops, "wrapKey") && has(&ops, "unwrapKey"),
                        sign: has(&ops, "sign"),
                        decrypt: has(&ops, "decrypt"),
                    },
                    public: Some(PublicKey::Rsa(public)),
                    version,
                }
            }
            Some(KeyType::Ec | KeyType::EcHsm) => {
                let (Some(x), Some(y)) = (&jwk.x, &jwk.y) else {
                    return other(version);
                };
                let mut point = Vec::with_capacity(1 + x.len() + y.len());
                point.push(4);
                point.extend_from_slice(x);
                point.extend_from_slice(y);
                let sign = has(&ops, "sign");
                let (kind, public) = match jwk.crv.as_ref() {
                    Some(CurveName::P256) => (
                        KeyKind::P256,
                        p256::PublicKey::from_sec1_bytes(&point)
                            .ok()
                            .map(PublicKey::P256),
                    ),
                    Some(CurveName::P384) => (
                        KeyKind::P384,
                        p384::PublicKey::from_sec1_bytes(&point)
                            .ok()
                            .map(PublicKey::P384),
                    ),
                    Some(CurveName::P521) => (
                        KeyKind::P521,
                        p521::PublicKey::from_sec1_bytes(&point)
                            .ok()
                            .map(PublicKey::P521),
                    ),
                    _ => return other(version),
                };
                if public.is_none() {
                    return other(version);
                }
                Self {
                    kind: if sign { kind } else { KeyKind::Other },
                    public,
                    version,
                }
            }
            _ => other(version),
        }
    }
}

/// Why a key does not suit a key type, or `None` when it does.
pub(crate) fn unsuitable(kind: KeyKind, wanted: &str) -> Option<String> {
    let describe = match kind {
        KeyKind::Rsa {
            bytes, wrap, sign, ..
        } => format!(
            "it is an RSA-{} key{}{}",
            bytes * 8,
            if wrap {
                " allowing wrapKey/unwrapKey"
            } else {
                ""
            },
            if sign { " allowing sign" } else { "" }
        ),
        KeyKind::P256 => "it is an EC P-256 signing key".to_owned(),
        KeyKind::P384 => "it is an EC P-384 signing key".to_owned(),
        KeyKind::P521 => "it is an EC P-521 signing key".to_owned(),
        KeyKind::Other => {
            "it is neither an RSA key nor a P-256/P-384/P-521 key with usable key_ops".to_owned()
        }
    };
    let fits = match (wanted, kind) {
        (key_type::AES256_GCM96, KeyKind::Rsa { bytes, wrap, .. }) => {
            wrap && bytes >= MIN_WRAPPING_KEY_BYTES
        }
        (key_type::RSA_2048, KeyKind::Rsa { bytes, sign, .. }) => sign && bytes == 256,
        (key_type::RSA_3072, KeyKind::Rsa { bytes, sign, .. }) => sign && bytes == 384,
        (key_type::RSA_4096, KeyKind::Rsa { bytes, sign, .. }) => sign && bytes == 512,
        (key_type::ECDSA_P256, KeyKind::P256)
        | (key_type::ECDSA_P384, KeyKind::P384)
        | (key_type::ECDSA_P521, KeyKind::P521) => true,
        _ => false,
    };
    if fits {
        return None;
    }
    let needs = match wanted {
        key_type::AES256_GCM96 => {
            "an RSA key of at least 2048 bits whose key_ops allow wrapKey and unwrapKey"
        }
        key_type::RSA_2048 => "an RSA-2048 key whose key_ops allow sign",
        key_type::RSA_3072 => "an RSA-3072 key whose key_ops allow sign",
        key_type::RSA_4096 => "an RSA-4096 key whose key_ops allow sign",
        key_type::ECDSA_P256 => "an EC P-256 key whose key_ops allow sign",
        key_type::ECDSA_P384 => "an EC P-384 key whose key_ops allow sign",
        _ => "an EC P-521 key whose key_ops allow sign",
    };
    Some(format!("{wanted} needs {needs}; {describe}"))
}

/// Refuses a key type the plugin does not know.
pub(crate) fn check_key_type(name: &str) -> Result<(), PluginError> {
    match name {
        key_type::AES256_GCM96
        | key_type::RSA_2048
        | key_type::RSA_3072
        | key_type::RSA_4096
        | key_type::ECDSA_P256
        | key_type::ECDSA_P384
        | key_type::ECDSA_P521 => Ok(()),
        key_type::ED25519 => Err(unsupported_key_type(
            NAME,
            key_type::ED25519,
            "Azure Key Vault has no Ed25519 keys (its EC keys are P-256, P-256K, P-384 and \
             P-521); use local-kek or pkcs11 for ed25519",
        )),
        other => Err(PluginError::invalid_request(format!(
            "key type {other:?} is not supported by azure-keyvault; use aes256-gcm96, \
             rsa-2048, rsa-3072, rsa-4096, ecdsa-p256, ecdsa-p384 or ecdsa-p521"
        ))),
    }
}

/// The Key Vault signing algorithm for this key and a request; `INVALID_REQUEST` for a
/// key that cannot sign, a bad scheme or digest, SHA-224, or a curve/hash mismatch.
pub(crate) fn signing_algorithm(
    kind: KeyKind,
    hash_name: &str,
    scheme: &str,
    digest: &[u8],
) -> Result<(SignatureAlgorithm, HashAlgorithm), PluginError> {
    use SignatureAlgorithm as Alg;
    if !matches!(
        kind,
        KeyKind::Rsa { sign: true, .. } | KeyKind::P256 | KeyKind::P384 | KeyKind::P521
    ) {
        return Err(PluginError::invalid_request(
            "signing needs an rsa-* or ecdsa-* key",
        ));
    }
    let hash = HashAlgorithm::of_request(hash_name, digest)?;
    let pick = |sha256: Alg, sha384: Alg, sha512: Alg| match hash {
        HashAlgorithm::Sha256 => Ok(sha256),
        HashAlgorithm::Sha384 => Ok(sha384),
        HashAlgorithm::Sha512 => Ok(sha512),
        HashAlgorithm::Sha224 => Err(PluginError::invalid_request(
            "Azure Key Vault has no SHA-224 signing algorithm; use sha2-256, sha2-384 or \
             sha2-512",
        )),
    };
    let algorithm = match (kind, scheme) {
        (KeyKind::Rsa { .. }, "pss") => pick(Alg::Ps256, Alg::Ps384, Alg::Ps512)?,
        (KeyKind::Rsa { .. }, "pkcs1v15") => pick(Alg::Rs256, Alg::Rs384, Alg::Rs512)?,
        (KeyKind::Rsa { .. }, other) => {
            return Err(PluginError::invalid_request(format!(
                "signature_algorithm {other:?} is not supported for RSA keys; use pss or \
                 pkcs1v15"
            )))
        }
        // Key Vault pairs each curve with its own hash: ES256 is P-256 with SHA-256, ES384
        // P-384 with SHA-384, ES512 P-521 with SHA-512.
        (KeyKind::P256, "") if hash == HashAlgorithm::Sha256 => Alg::Es256,
        (KeyKind::P384, "") if hash == HashAlgorithm::Sha384 => Alg::Es384,
        (KeyKind::P521, "") if hash == HashAlgorithm::Sha512 => Alg::Es512,
        (KeyKind::P256, "") => {
            return Err(PluginError::invalid_request(format!(
                "Azure Key Vault signs with ecdsa-p256 keys only over sha2-256 digests, not \
                 {hash_name}"
            )))
        }
        (KeyKind::P384, "") => {
            return Err(PluginError::invalid_request(format!(
                "Azure Key Vault signs with ecdsa-p384 keys only over sha2-384 digests, not \
                 {hash_name}"
            )))
        }
        (KeyKind::P521, "") => {
            return Err(PluginError::invalid_request(format!(
                "Azure Key Vault signs with ecdsa-p521 keys only over sha2-512 digests, not \
                 {hash_name}"
            )))
        }
        (_, other) => {
            return Err(PluginError::invalid_request(format!(
                "signature_algorithm {other:?} is not used with ECDSA keys; leave it empty"
            )))
        }
    };
    Ok((algorithm, hash))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keybroker_plugin_abi::ErrorKind;

    const RSA: KeyKind = KeyKind::Rsa {
        bytes: 256,
        wrap: true,
        sign: true,
        decrypt: false,
    };

    #[test]
    fn algorithms_follow_key_and_request() {
        let digest = [1u8; 32];
        assert_eq!(
            signing_algorithm(RSA, "sha2-256", "pss", &digest)
                .unwrap()
                .0,
            SignatureAlgorithm::Ps256
        );
        assert_eq!(
            signing_algorithm(KeyKind::P384, "sha2-384", "", &[0; 48])
                .unwrap()
                .0,
            SignatureAlgorithm::Es384
        );
        assert_eq!(
            signing_algorithm(KeyKind::P521, "sha2-512", "", &[0; 64])
                .unwrap()
                .0,
            SignatureAlgorithm::Es512
        );
        for (kind, hash, scheme, digest) in [
            (RSA, "sha2-224", "pss", &[0u8; 28][..]),
            (RSA, "sha2-256", "", &digest[..]),
            (KeyKind::P256, "sha2-256", "pss", &digest[..]),
            (KeyKind::P256, "sha2-384", "", &[0u8; 48][..]),
            (KeyKind::P384, "sha2-256", "", &digest[..]),
            (KeyKind::P521, "sha2-256", "", &digest[..]),
            (KeyKind::P521, "sha2-384", "", &[0u8; 48][..]),
            (KeyKind::Other, "sha2-256", "", &digest[..]),
            (
                KeyKind::Rsa {
                    bytes: 256,
                    wrap: true,
                    sign: false,
                    decrypt: false,
                },
                "sha2-256",
                "pss",
                &digest[..],
            ),
        ] {
            let error = signing_algorithm(kind, hash, scheme, digest).unwrap_err();
            assert_eq!(
                error.kind,
                ErrorKind::INVALID_REQUEST,
                "{kind:?} {hash} {scheme}"
            );
        }
    }

    #[test]
    fn kinds_suit_key_types() {
        assert!(unsuitable(RSA, "aes256-gcm96").is_none());
        assert!(unsuitable(RSA, "rsa-2048").is_none());
        assert!(unsuitable(RSA, "rsa-3072").unwrap().contains("RSA-2048"));
        let sign_only = KeyKind::Rsa {
            bytes: 384,
            wrap: false,
            sign: true,
            decrypt: true,
        };
        assert!(unsuitable(sign_only, "aes256-gcm96")
            .unwrap()
            .contains("wrapKey"));
        assert!(unsuitable(KeyKind::P256, "ecdsa-p384").is_some());
        assert!(unsuitable(KeyKind::P256, "ecdsa-p256").is_none());
        assert!(unsuitable(KeyKind::P521, "ecdsa-p521").is_none());
        assert!(unsuitable(KeyKind::P384, "ecdsa-p521").is_some());
        let refusal = check_key_type("ed25519").unwrap_err();
        assert_eq!(refusal.kind, ErrorKind::INVALID_REQUEST);
        assert!(refusal
            .message
            .as_str()
            .starts_with("backend azure-keyvault cannot hold ed25519 keys"));
        assert!(check_key_type("ecdsa-p521").is_ok());
        assert_eq!(MAX_WRAP_PAYLOAD, 190);
    }
}
