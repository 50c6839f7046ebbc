//! [Sign data](https://developer.hashicorp.com/vault/api-docs/secret/transit#sign-data): `POST /transit/sign/:name(/:hash_algorithm)`.
//!
//! Also the options, hashes and signature encodings that verify shares.
//!
//! The broker hashes the input (unless `prehashed`), the backend signs the digest with the
//! key version's private key, and the broker marshals the result as Vault does:
//! `vault:v<N>:<base64>`, with ECDSA signatures in ASN.1 DER (`asn1`, the default) or as
//! raw `r ‖ s` in base64url (`jws`). Backends exchange ECDSA signatures as raw `r ‖ s`.
//!
//! Ed25519 is pure Ed25519 (RFC 8032): the backend signs the input itself, which the
//! algorithm hashes (the ABI's `digest` field carries it, with `hash_algorithm` `none`), and
//! the signature is its 64 bytes, in base64 (base64url under `jws`, as Vault writes it).
//! `hash_algorithm` is ignored, except that, as in Vault CE, `prehashed` and `sha2-512`
//! (which would ask for Ed25519ph, a Vault Enterprise feature) are refused, item by item.

use base64::{
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
    Engine as _,
};
use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};

use super::{key_type::KeyType, ItemResults, KeyState, Transit, VersionState};
use crate::{
    backend::BackendSign,
    error::{Error, Result},
    MountId, Tenant,
};

/// Hash of the input before signing (Vault's `hash_algorithm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HashAlgorithm {
    /// SHA-224.
    Sha2_224,
    /// SHA-256 (Vault's default).
    #[default]
    Sha2_256,
    /// SHA-384.
    Sha2_384,
    /// SHA-512.
    Sha2_512,
    /// A hash Vault also signs with (`sha1`, `sha3-224` … `sha3-512`) that keybroker does
    /// not: accepted where the hash is ignored (Ed25519, as in Vault), refused item by item
    /// otherwise.
    NotSupported(&'static str),
}

/// Vault's names of the hashes it signs with that keybroker does not.
const NOT_SUPPORTED: [&str; 5] = ["sha1", "sha3-224", "sha3-256", "sha3-384", "sha3-512"];

/// The refusal of a hash keybroker does not sign with.
fn unsupported_hash(name: &str) -> Error {
    Error::invalid(format!(
        "unsupported hash algorithm {name:?}: use sha2-224, sha2-256, sha2-384 or sha2-512"
    ))
}

impl HashAlgorithm {
    /// Parses Vault's name (`sha2-256`; also `sha2_256` as the path form writes it). A name
    /// Vault does not know is refused here, before any key is looked up.
    pub fn parse(name: &str) -> Result<Self> {
        let normalised = name.replace('_', "-");
        Ok(match normalised.as_str() {
            "sha2-224" => Self::Sha2_224,
            "sha2-256" => Self::Sha2_256,
            "sha2-384" => Self::Sha2_384,
            "sha2-512" => Self::Sha2_512,
            other => match NOT_SUPPORTED.iter().find(|known| **known == other) {
                Some(known) => Self::NotSupported(known),
                None => return Err(unsupported_hash(name)),
            },
        })
    }

    /// Vault's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha2_224 => "sha2-224",
            Self::Sha2_256 => "sha2-256",
            Self::Sha2_384 => "sha2-384",
            Self::Sha2_512 => "sha2-512",
            Self::NotSupported(name) => name,
        }
    }

    /// Digest length in bytes; `None` for a hash keybroker does not sign with.
    pub fn digest_len(self) -> Option<usize> {
        match self {
            Self::Sha2_224 => Some(28),
            Self::Sha2_256 => Some(32),
            Self::Sha2_384 => Some(48),
            Self::Sha2_512 => Some(64),
            Self::NotSupported(_) => None,
        }
    }

    fn digest(self, input: &[u8]) -> Result<Vec<u8>> {
        Ok(match self {
            Self::Sha2_224 => Sha224::digest(input).to_vec(),
            Self::Sha2_256 => Sha256::digest(input).to_vec(),
            Self::Sha2_384 => Sha384::digest(input).to_vec(),
            Self::Sha2_512 => Sha512::digest(input).to_vec(),
            Self::NotSupported(name) => return Err(unsupported_hash(name)),
        })
    }
}

/// How a signature is written (Vault's `marshaling_algorithm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Marshaling {
    /// ECDSA as ASN.1 DER, standard base64 (the default).
    #[default]
    Asn1,
    /// ECDSA as raw `r ‖ s`, base64url without padding (as in a JWS).
    Jws,
}

impl Marshaling {
    /// Parses `asn1` or `jws`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "asn1" => Ok(Self::Asn1),
            "jws" => Ok(Self::Jws),
            _ => Err(Error::invalid(format!(
                "unsupported marshaling algorithm {name:?}: use asn1 or jws"
            ))),
        }
    }
}

/// Options shared by sign and verify.
#[derive(Clone, Debug, Default)]
pub struct SignOptions {
    /// Version to sign with (default: the latest); ignored by verify, which reads it from
    /// the signature.
    pub key_version: Option<u32>,
    /// Hash of the input (ignored for Ed25519, which hashes the input itself).
    pub hash_algorithm: HashAlgorithm,
    /// RSA padding: `pss` (default) or `pkcs1v15`; ignored for ECDSA keys, as in Vault.
    pub signature_algorithm: Option<String>,
    /// Signature encoding.
    pub marshaling: Marshaling,
    /// The input is already a digest made with `hash_algorithm` (refused for Ed25519).
    pub prehashed: bool,
}

/// Result of one signature.
#[derive(Clone, Debug)]
pub struct SignOutput {
    /// `vault:v<N>:…` text.
    pub signature: String,
    /// Version that signed.
    pub key_version: u32,
}

/// The `hash_algorithm` a backend is sent for an Ed25519 key, whose `digest` field carries
/// the whole input (the plugin ABI's `HASH_NONE`).
const HASH_NONE: &str = "none";

/// Why Vault CE refuses an Ed25519 request that asks for anything but pure Ed25519 (its
/// Enterprise edition would make an Ed25519ph signature).
const PURE_ED25519_ONLY_PREHASHED: &str =
    "only Pure Ed25519 signatures supported, prehashed must be false";
/// As [`PURE_ED25519_ONLY_PREHASHED`], for `hash_algorithm=sha2-512`; Vault's words,
/// spelling included.
const PURE_ED25519_ONLY_HASH: &str =
    "only Pure Ed25519 signatures supported, hash_alogithm should not be set";

/// What the backend is asked to do, once per request.
pub(super) struct Plan {
    pub(super) key_type: KeyType,
    pub(super) signature_algorithm: &'static str,
}

impl Plan {
    /// The `hash_algorithm` the backend is sent: the hash's name, or `none` for Ed25519.
    pub(super) fn hash_name(&self, options: &SignOptions) -> &'static str {
        if self.key_type.signs_input() {
            HASH_NONE
        } else {
            options.hash_algorithm.name()
        }
    }

    /// What the backend signs or verifies for `input`: for Ed25519 the input itself (after
    /// Vault CE's refusals, whose message is `refusal_prefix` then the reason), otherwise
    /// [`SignOptions::digest`].
    pub(super) fn to_sign(
        &self,
        options: &SignOptions,
        refusal_prefix: &str,
        input: &[u8],
    ) -> Result<Vec<u8>> {
        if !self.key_type.signs_input() {
            return options.digest(input);
        }
        if options.prehashed {
            return Err(Error::invalid(format!(
                "{refusal_prefix}{PURE_ED25519_ONLY_PREHASHED}"
            )));
        }
        if options.hash_algorithm == HashAlgorithm::Sha2_512 {
            return Err(Error::invalid(format!(
                "{refusal_prefix}{PURE_ED25519_ONLY_HASH}"
            )));
        }
        Ok(input.to_vec())
    }
}

/// How Vault words a refused sign item (`failed to parse batch item: …`).
const SIGN_ITEM: &str = "failed to parse batch item: ";

impl SignOptions {
    /// What to ask the backend for a key of `key_type`; refuses keys that do not sign.
    pub(super) fn plan(&self, key_type: &str) -> Result<Plan> {
        let key_type = KeyType::parse(key_type)
            .ok()
            .filter(|t| t.is_asymmetric())
            .ok_or_else(|| {
                Error::invalid(format!("key type {key_type} does not support signing"))
            })?;
        let signature_algorithm = if key_type.is_rsa() {
            match self.signature_algorithm.as_deref() {
                None | Some("" | "pss") => "pss",
                Some("pkcs1v15") => "pkcs1v15",
                Some(other) => {
                    return Err(Error::invalid(format!(
                        "unsupported signature algorithm {other:?}: use pss or pkcs1v15"
                    )))
                }
            }
        } else {
            ""
        };
        Ok(Plan {
            key_type,
            signature_algorithm,
        })
    }

    /// The digest the backend signs: the input hashed, or checked if `prehashed`.
    pub(super) fn digest(&self, input: &[u8]) -> Result<Vec<u8>> {
        if !self.prehashed {
            return self.hash_algorithm.digest(input);
        }
        let name = self.hash_algorithm.name();
        let len = self
            .hash_algorithm
            .digest_len()
            .ok_or_else(|| unsupported_hash(name))?;
        if input.len() != len {
            return Err(Error::invalid(format!(
                "prehashed input must be a {len}-byte {name} digest, got {} bytes",
                input.len()
            )));
        }
        Ok(input.to_vec())
    }

    fn encode(&self, bytes: &[u8]) -> String {
        match self.marshaling {
            Marshaling::Asn1 => STANDARD.encode(bytes),
            Marshaling::Jws => URL_SAFE_NO_PAD.encode(bytes),
        }
    }

    /// A signature's text back to bytes, per the marshaling.
    pub(super) fn decode(&self, text: &str) -> Result<Vec<u8>> {
        let decoded = match self.marshaling {
            Marshaling::Asn1 => STANDARD.decode(text),
            Marshaling::Jws => URL_SAFE_NO_PAD.decode(text),
        };
        decoded.map_err(|_| Error::invalid("invalid signature: could not decode base64"))
    }
}

/// Raw `r ‖ s` from a backend to the requested marshaling.
fn marshal(key_type: KeyType, marshaling: Marshaling, raw: Vec<u8>) -> Result<Vec<u8>> {
    let malformed = || Error::internal("backend returned a malformed ECDSA signature");
    Ok(match (key_type, marshaling) {
        (KeyType::EcdsaP256, Marshaling::Asn1) => p256::ecdsa::Signature::from_slice(&raw)
            .map_err(|_| malformed())?
            .to_der()
            .as_bytes()
            .to_vec(),
        (KeyType::EcdsaP384, Marshaling::Asn1) => p384::ecdsa::Signature::from_slice(&raw)
            .map_err(|_| malformed())?
            .to_der()
            .as_bytes()
            .to_vec(),
        (KeyType::EcdsaP521, Marshaling::Asn1) => p521::ecdsa::Signature::from_slice(&raw)
            .map_err(|_| malformed())?
            .to_der()
            .as_bytes()
            .to_vec(),
        _ => raw,
    })
}

/// A caller's signature back to what a backend verifies (raw `r ‖ s` for ECDSA).
pub(super) fn unmarshal(
    key_type: KeyType,
    marshaling: Marshaling,
    bytes: Vec<u8>,
) -> Result<Vec<u8>> {
    let malformed = || Error::invalid("invalid signature: not an ASN.1 DER ECDSA signature");
    Ok(match (key_type, marshaling) {
        (KeyType::EcdsaP256, Marshaling::Asn1) => p256::ecdsa::Signature::from_der(&bytes)
            .map_err(|_| malformed())?
            .to_bytes()
            .to_vec(),
        (KeyType::EcdsaP384, Marshaling::Asn1) => p384::ecdsa::Signature::from_der(&bytes)
            .map_err(|_| malformed())?
            .to_bytes()
            .to_vec(),
        (KeyType::EcdsaP521, Marshaling::Asn1) => p521::ecdsa::Signature::from_der(&bytes)
            .map_err(|_| malformed())?
            .to_bytes()
            .to_vec(),
        _ => bytes,
    })
}

impl Transit {
    /// The key a sign or verify names; an invalid request if absent.
    pub(super) async fn signing_key(
        &self,
        tenant: &Tenant,
        mount: MountId,
        name: &str,
    ) -> Result<std::sync::Arc<KeyState>> {
        super::validate_key_name(name)?;
        self.state(tenant.id, mount, name)
            .await?
            .ok_or_else(|| Error::invalid("signing key not found"))
    }

    fn signing_version(
        state: &KeyState,
        requested: Option<u32>,
    ) -> Result<std::sync::Arc<VersionState>> {
        let record = &state.record;
        let version = requested
            .filter(|v| *v != 0)
            .unwrap_or(record.latest_version);
        if version > record.latest_version {
            return Err(Error::invalid(format!(
                "key version {version} is higher than the latest version {}",
                record.latest_version
            )));
        }
        if record.min_encryption_version != 0 && version < record.min_encryption_version {
            return Err(Error::invalid(
                "requested version for signing is less than the minimum encryption key version",
            ));
        }
        state
            .version(version)
            .cloned()
            .ok_or_else(|| Error::internal("missing key version"))
    }

    /// Signs each input with the key (Vault transit API: sign).
    pub async fn sign(
        &self,
        tenant: &Tenant,
        mount: MountId,
        name: &str,
        options: &SignOptions,
        inputs: Vec<Vec<u8>>,
    ) -> Result<ItemResults<SignOutput>> {
        self.check_batch_size(inputs.len())?;
        let state = self.signing_key(tenant, mount, name).await?;
        let plan = options.plan(&state.record.key_type)?;
        let version = Self::signing_version(&state, options.key_version)?;
        let instance = self.instance(tenant, &state.record.backend)?;
        let reference = &version.record.backend_reference;
        instance.check_available(reference)?;
        let number = version.record.version;
        let mut results = Vec::with_capacity(inputs.len());
        for input in inputs {
            let digest = match plan.to_sign(options, SIGN_ITEM, &input) {
                Ok(digest) => digest,
                Err(error) => {
                    results.push(Err(error));
                    continue;
                }
            };
            let request = BackendSign {
                reference,
                digest: &digest,
                hash_algorithm: plan.hash_name(options),
                signature_algorithm: plan.signature_algorithm,
            };
            let raw = match instance.sign(tenant, request).await {
                Ok(raw) => raw,
                Err(error @ (Error::Unavailable(_) | Error::Internal { .. })) => return Err(error),
                Err(error) => {
                    results.push(Err(error));
                    continue;
                }
            };
            let bytes = marshal(plan.key_type, options.marshaling, raw)?;
            results.push(Ok(SignOutput {
                signature: format!("vault:v{number}:{}", options.encode(&bytes)),
                key_version: number,
            }));
        }
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_names_and_lengths() {
        for (name, len) in [
            ("sha2-224", 28),
            ("sha2-256", 32),
            ("sha2_384", 48),
            ("sha2-512", 64),
        ] {
            let hash = HashAlgorithm::parse(name).unwrap();
            assert_eq!(hash.digest_len(), Some(len));
            assert_eq!(hash.digest(b"x").unwrap().len(), len);
        }
        // Vault's other names parse, but nothing is hashed with them.
        for name in ["sha1", "sha3-256", "sha3_512"] {
            let hash = HashAlgorithm::parse(name).unwrap();
            assert_eq!(hash.digest_len(), None);
            assert!(hash.digest(b"x").is_err());
            let options = SignOptions {
                hash_algorithm: hash,
                ..SignOptions::default()
            };
            let Err(Error::InvalidRequest(message)) = options.digest(b"x") else {
                panic!("{name} must be refused");
            };
            assert!(
                message.starts_with("unsupported hash algorithm"),
                "{message}"
            );
        }
        for name in ["md5", "SHA2-256", "none", ""] {
            assert!(HashAlgorithm::parse(name).is_err(), "{name}");
        }
    }

    #[test]
    fn plans_refuse_symmetric_keys_and_unknown_paddings() {
        let options = SignOptions::default();
        assert!(options.plan("aes256-gcm96").is_err());
        assert_eq!(options.plan("rsa-2048").unwrap().signature_algorithm, "pss");
        assert_eq!(options.plan("ecdsa-p256").unwrap().signature_algorithm, "");
        let pkcs1 = SignOptions {
            signature_algorithm: Some("pkcs1v15".into()),
            ..SignOptions::default()
        };
        assert_eq!(
            pkcs1.plan("rsa-4096").unwrap().signature_algorithm,
            "pkcs1v15"
        );
        // Vault ignores the padding for ECDSA keys.
        assert_eq!(pkcs1.plan("ecdsa-p384").unwrap().signature_algorithm, "");
        let bad = SignOptions {
            signature_algorithm: Some("raw".into()),
            ..SignOptions::default()
        };
        assert!(bad.plan("rsa-2048").is_err());
    }

    #[test]
    fn prehashed_input_must_have_the_digest_length() {
        let options = SignOptions {
            prehashed: true,
            hash_algorithm: HashAlgorithm::Sha2_384,
            ..SignOptions::default()
        };
        assert!(options.digest(&[0; 32]).is_err());
        assert_eq!(options.digest(&[7; 48]).unwrap(), vec![7; 48]);
    }

    #[test]
    fn ed25519_signs_the_input_and_refuses_prehashing_as_vault_ce_does() {
        let plan = SignOptions::default().plan("ed25519").unwrap();
        assert_eq!(plan.signature_algorithm, "");
        let options = SignOptions {
            hash_algorithm: HashAlgorithm::Sha2_384,
            ..SignOptions::default()
        };
        // The hash is ignored: the backend gets the input itself, with `none`.
        assert_eq!(plan.to_sign(&options, SIGN_ITEM, b"data").unwrap(), b"data");
        assert_eq!(plan.hash_name(&options), "none");
        let prehashed = SignOptions {
            prehashed: true,
            ..SignOptions::default()
        };
        let Err(Error::InvalidRequest(message)) = plan.to_sign(&prehashed, SIGN_ITEM, &[0; 32])
        else {
            panic!("prehashed Ed25519 must be refused");
        };
        assert_eq!(
            message,
            "failed to parse batch item: only Pure Ed25519 signatures supported, prehashed \
             must be false"
        );
        let sha512 = SignOptions {
            hash_algorithm: HashAlgorithm::Sha2_512,
            ..SignOptions::default()
        };
        let Err(Error::InvalidRequest(message)) = plan.to_sign(&sha512, SIGN_ITEM, b"data") else {
            panic!("sha2-512 (Ed25519ph) must be refused");
        };
        assert!(
            message.ends_with("hash_alogithm should not be set"),
            "{message}"
        );
        // As in Vault, Ed25519 ignores the hashes keybroker does not sign with.
        let sha3 = SignOptions {
            hash_algorithm: HashAlgorithm::parse("sha3-256").unwrap(),
            ..SignOptions::default()
        };
        assert_eq!(plan.to_sign(&sha3, SIGN_ITEM, b"data").unwrap(), b"data");
        // Other types still hash, and refuse those hashes.
        let plan = SignOptions::default().plan("ecdsa-p521").unwrap();
        assert!(plan.to_sign(&sha3, SIGN_ITEM, b"data").is_err());
        assert_eq!(
            plan.to_sign(&options, SIGN_ITEM, b"data").unwrap().len(),
            48
        );
        assert_eq!(plan.hash_name(&options), "sha2-384");
    }

    #[test]
    fn p521_signatures_round_trip_through_both_marshalings() {
        use p521::ecdsa::{signature::Signer as _, SigningKey};
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let signature: p521::ecdsa::Signature = key.sign(b"data");
        let raw = signature.to_bytes().to_vec();
        assert_eq!(raw.len(), 132);
        for marshaling in [Marshaling::Asn1, Marshaling::Jws] {
            let out = marshal(KeyType::EcdsaP521, marshaling, raw.clone()).unwrap();
            assert_eq!(marshaling == Marshaling::Asn1, out != raw);
            assert_eq!(unmarshal(KeyType::EcdsaP521, marshaling, out).unwrap(), raw);
        }
        assert!(unmarshal(KeyType::EcdsaP521, Marshaling::Asn1, vec![1, 2, 3]).is_err());
        // Ed25519 signatures pass through as their 64 bytes.
        let ed = vec![5u8; 64];
        assert_eq!(
            marshal(KeyType::Ed25519, Marshaling::Asn1, ed.clone()).unwrap(),
            ed
        );
        assert_eq!(
            unmarshal(KeyType::Ed25519, Marshaling::Jws, ed.clone()).unwrap(),
            ed
        );
    }

    #[test]
    fn ecdsa_signatures_round_trip_through_both_marshalings() {
        use p256::ecdsa::{signature::hazmat::PrehashSigner, SigningKey};
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let digest = Sha256::digest(b"data");
        let signature: p256::ecdsa::Signature = key.sign_prehash(&digest).unwrap();
        let raw = signature.to_bytes().to_vec();
        for marshaling in [Marshaling::Asn1, Marshaling::Jws] {
            let out = marshal(KeyType::EcdsaP256, marshaling, raw.clone()).unwrap();
            assert_eq!(marshaling == Marshaling::Asn1, out != raw);
            assert_eq!(unmarshal(KeyType::EcdsaP256, marshaling, out).unwrap(), raw);
        }
        assert!(unmarshal(KeyType::EcdsaP256, Marshaling::Asn1, vec![1, 2, 3]).is_err());
    }
}
