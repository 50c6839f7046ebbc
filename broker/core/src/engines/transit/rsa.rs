//! Encrypt and decrypt with RSA keys (Vault's `transit/encrypt` and `transit/decrypt` on an
//! `rsa-2048|3072|4096` key).
//!
//! The broker encrypts with the version's public key, kept with the version when it was
//! made: RSAES-OAEP with SHA-256, MGF1-SHA-256 and an empty label by default (Vault's
//! `rsa.EncryptOAEP(sha256.New(), …, nil)`), or RSAES-PKCS1-v1_5 (`padding_scheme`
//! `pkcs1v15`). The backend that holds the private key decrypts, through its ordinary
//! decrypt entry point with the key's reference: the AAD names the padding and the
//! ciphertext is the raw RSA ciphertext (the plugin ABI's `capability::ASYMMETRIC_DECRYPT`).
//! An instance without that capability, or one that cannot use the padding asked for, is
//! refused before anything is encrypted, so the broker never makes a ciphertext it could not
//! decrypt.
//!
//! As in Vault, RSA encryption takes no `associated_data` (refused with Vault's message),
//! ignores `context` (an RSA key is never derived), and takes no counts: the encryption
//! counter and its rotation threshold bound the nonces of the AEAD types, and RSA has none.
//! Datakey and rewrap go through encrypt and decrypt, so they work on RSA keys as in
//! OpenBao (with the default padding).
//!
//! Two answers differ from OpenBao's on purpose: a plaintext too long for the key, and a
//! ciphertext that does not decrypt, are the caller's errors (400 with the reason), where
//! OpenBao answers 500 (which Vault clients retry).

use rsa::{pkcs8::DecodePublicKey as _, Oaep, Pkcs1v15Encrypt, RsaPublicKey};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::{
    ciphertext, decrypt::backend_batch_decrypt, encrypt::encryption_version, key_type::KeyType,
    DecryptItem, EncryptItem, EncryptOutput, ItemResults, KeyState, Transit,
};
use crate::{
    backend::{BackendDecrypt, BackendInstance},
    error::{Error, Result},
    Tenant,
};

/// How an RSA key pads what it encrypts (Vault's `padding_scheme`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PaddingScheme {
    /// RSAES-OAEP with SHA-256 and MGF1-SHA-256, empty label (`oaep`, the default).
    #[default]
    Oaep,
    /// RSAES-PKCS1-v1_5 (`pkcs1v15`).
    Pkcs1v15,
}

impl PaddingScheme {
    /// Parses Vault's name, lower case as Vault compares it (`keysutil.ParsePaddingScheme`),
    /// with Vault's message.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "oaep" => Ok(Self::Oaep),
            "pkcs1v15" => Ok(Self::Pkcs1v15),
            other => Err(Error::invalid(format!(
                "padding_scheme argument invalid: unknown padding scheme: {other}"
            ))),
        }
    }

    /// Vault's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Oaep => "oaep",
            Self::Pkcs1v15 => "pkcs1v15",
        }
    }

    /// The name a backend is sent in the decrypt request's AAD (the plugin ABI's
    /// `RSA_PADDING_OAEP_SHA256` and `RSA_PADDING_PKCS1V15`).
    fn backend_name(self) -> &'static str {
        match self {
            Self::Oaep => "oaep-sha256",
            Self::Pkcs1v15 => "pkcs1v15",
        }
    }
}

/// Vault's refusal of a `padding_scheme` on a key that is not RSA
/// (`parsePaddingSchemeArg`).
fn padding_not_supported(key_type: &str) -> Error {
    Error::invalid(format!(
        "padding_scheme argument invalid: unsupported key type {key_type} for padding scheme"
    ))
}

/// Vault's refusal of `associated_data` on a type that is not an AEAD, for the item at
/// `index`.
fn associated_data_refused(index: usize, key_type: &str) -> Error {
    Error::invalid(format!(
        "'[{index}].associated_data' provided for non-AEAD cipher suite {key_type}"
    ))
}

/// Whether the key is RSA: the encrypt and decrypt hooks send it here. A `padding_scheme`
/// on any other key is refused, as Vault refuses it.
pub(super) fn dispatch<'a>(
    state: &KeyState,
    mut paddings: impl Iterator<Item = &'a Option<PaddingScheme>>,
) -> Result<bool> {
    let key_type = &state.record.key_type;
    if KeyType::parse(key_type).is_ok_and(KeyType::is_rsa) {
        return Ok(true);
    }
    if paddings.any(Option::is_some) {
        return Err(padding_not_supported(key_type));
    }
    Ok(false)
}

/// The instance must decrypt with RSA keys, or nothing is encrypted for it.
fn require_decryptor(instance: &dyn BackendInstance, key_type: &str) -> Result<()> {
    if instance.supports_asymmetric_decrypt() {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "backend instance \"{}\" cannot decrypt with key type {key_type}, so the broker does \
         not encrypt with it: the instance does not decrypt with the asymmetric keys it holds",
        instance.name()
    )))
}

impl Transit {
    /// Encrypts each item with the public key of the version it names.
    pub(super) async fn rsa_encrypt(
        &self,
        tenant: &Tenant,
        state: &KeyState,
        items: Vec<EncryptItem>,
    ) -> Result<ItemResults<EncryptOutput>> {
        let key_type = &state.record.key_type;
        let instance = self.instance(tenant, &state.record.backend)?;
        require_decryptor(instance.as_ref(), key_type)?;
        // Each (version, padding) the request uses is asked about once, before any
        // encryption: an instance that could not decrypt it refuses those items.
        let mut asked: Vec<(u32, PaddingScheme, Option<String>)> = Vec::new();
        // Each version's public key, parsed once per request.
        let mut public_keys: Vec<(u32, RsaPublicKey)> = Vec::new();
        let mut results = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            if !item.associated_data.is_empty() {
                results.push(Err(associated_data_refused(index, key_type)));
                continue;
            }
            let number = match encryption_version(&state.record, item.key_version) {
                Ok(number) => number,
                Err(error) => {
                    results.push(Err(error));
                    continue;
                }
            };
            let version = state
                .version(number)
                .ok_or_else(|| Error::internal("missing key version"))?;
            let padding = item.padding_scheme.unwrap_or_default();
            let known = asked
                .iter()
                .find(|(v, p, _)| *v == number && *p == padding)
                .map(|(_, _, answer)| answer.clone());
            let answer = match known {
                Some(answer) => answer,
                None => {
                    let reference = &version.record.backend_reference;
                    instance.check_available(reference)?;
                    let probe = BackendDecrypt {
                        reference,
                        ciphertext: &[],
                        aad: padding.backend_name().as_bytes(),
                    };
                    let answer = match instance.decrypt(tenant, probe).await {
                        Ok(_) => None,
                        Err(Error::InvalidRequest(reason)) => Some(format!(
                            "backend instance \"{}\" cannot decrypt with key type {key_type} \
                             and padding_scheme {}, so the broker does not encrypt with it: \
                             {reason}",
                            instance.name(),
                            padding.name()
                        )),
                        Err(error) => return Err(error),
                    };
                    asked.push((number, padding, answer.clone()));
                    answer
                }
            };
            if let Some(reason) = answer {
                results.push(Err(Error::InvalidRequest(reason)));
                continue;
            }
            let slot = match public_keys.iter().position(|(v, _)| *v == number) {
                Some(slot) => slot,
                None => {
                    let pem =
                        version.record.public_key.as_deref().ok_or_else(|| {
                            Error::internal("RSA key version without a public key")
                        })?;
                    let key = RsaPublicKey::from_public_key_pem(pem.trim()).map_err(|_| {
                        Error::internal("RSA key version with a malformed public key")
                    })?;
                    public_keys.push((number, key));
                    public_keys.len() - 1
                }
            };
            let public_key = public_keys
                .get(slot)
                .map(|(_, key)| key)
                .ok_or_else(|| Error::internal("RSA public key missing"))?;
            results.push(
                seal(public_key, padding, &item.plaintext).map(|sealed| EncryptOutput {
                    ciphertext: ciphertext::format(number, &sealed),
                    key_version: number,
                }),
            );
        }
        Ok(results)
    }

    /// Decrypts each item in the backend that holds the private key, in one batch call.
    pub(super) async fn rsa_decrypt(
        &self,
        tenant: &Tenant,
        state: &KeyState,
        items: Vec<DecryptItem>,
    ) -> Result<ItemResults<Zeroizing<Vec<u8>>>> {
        let key_type = &state.record.key_type;
        let instance = self.instance(tenant, &state.record.backend)?;
        require_decryptor(instance.as_ref(), key_type)?;
        let mut results: Vec<Option<Result<Zeroizing<Vec<u8>>>>> = Vec::new();
        let mut pending = Vec::new();
        for (index, item) in items.iter().enumerate() {
            if !item.associated_data.is_empty() {
                results.push(Some(Err(associated_data_refused(index, key_type))));
                continue;
            }
            let parsed = ciphertext::parse(&item.ciphertext)
                .and_then(|(number, payload)| {
                    Ok((state.readable_version("ciphertext", number)?, payload))
                })
                .and_then(|(version, payload)| {
                    if payload.is_empty() {
                        return Err(Error::invalid("invalid ciphertext: no data"));
                    }
                    Ok((version, payload))
                });
            match parsed {
                Ok((version, payload)) => {
                    instance.check_available(&version.record.backend_reference)?;
                    let padding = item.padding_scheme.unwrap_or_default();
                    pending.push((index, version, payload, padding));
                    results.push(None);
                }
                Err(error) => results.push(Some(Err(error))),
            }
        }
        let requests = pending
            .iter()
            .map(|(index, version, payload, padding)| {
                (
                    *index,
                    BackendDecrypt {
                        reference: &version.record.backend_reference,
                        ciphertext: payload,
                        aad: padding.backend_name().as_bytes(),
                    },
                )
            })
            .collect();
        backend_batch_decrypt(tenant, instance.as_ref(), results, requests).await
    }
}

/// Encrypts `plaintext` with `public_key`. A plaintext too long for the key is the caller's
/// error.
fn seal(public_key: &RsaPublicKey, padding: PaddingScheme, plaintext: &[u8]) -> Result<Vec<u8>> {
    let mut rng = rand::rngs::OsRng;
    let sealed = match padding {
        PaddingScheme::Oaep => public_key.encrypt(&mut rng, Oaep::new::<Sha256>(), plaintext),
        PaddingScheme::Pkcs1v15 => public_key.encrypt(&mut rng, Pkcs1v15Encrypt, plaintext),
    };
    sealed.map_err(|error| match error {
        rsa::Error::MessageTooLong => Error::invalid(format!(
            "failed to RSA encrypt the plaintext: the plaintext is too long for this key with \
             padding {}",
            padding.name()
        )),
        _ => Error::internal("RSA encryption failed"),
    })
}

#[cfg(test)]
mod tests {
    use rsa::{traits::PublicKeyParts as _, RsaPrivateKey};

    use super::*;

    #[test]
    fn padding_schemes_parse_with_vault_names_and_messages() {
        assert_eq!(PaddingScheme::parse("oaep").unwrap(), PaddingScheme::Oaep);
        assert_eq!(
            PaddingScheme::parse("pkcs1v15").unwrap(),
            PaddingScheme::Pkcs1v15
        );
        assert_eq!(PaddingScheme::default(), PaddingScheme::Oaep);
        for bad in ["OAEP", "pss", "", "oaep-sha1"] {
            assert_eq!(
                PaddingScheme::parse(bad).unwrap_err().to_string(),
                format!("padding_scheme argument invalid: unknown padding scheme: {bad}")
            );
        }
        assert_eq!(
            padding_not_supported("aes256-gcm96").to_string(),
            "padding_scheme argument invalid: unsupported key type aes256-gcm96 for padding scheme"
        );
    }

    #[test]
    fn sealed_ciphertexts_open_with_the_private_key_under_the_same_padding_only() {
        let private = RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
        let public = private.to_public_key();
        let oaep = seal(&public, PaddingScheme::Oaep, b"attack at dawn").unwrap();
        assert_eq!(oaep.len(), public.size());
        assert_eq!(
            private.decrypt(Oaep::new::<Sha256>(), &oaep).unwrap(),
            b"attack at dawn"
        );
        assert!(private.decrypt(Pkcs1v15Encrypt, &oaep).is_err());
        let pkcs1 = seal(&public, PaddingScheme::Pkcs1v15, b"attack at dawn").unwrap();
        assert_eq!(
            private.decrypt(Pkcs1v15Encrypt, &pkcs1).unwrap(),
            b"attack at dawn"
        );
        // OAEP-SHA256 on 2048 bits takes at most 256 - 2*32 - 2 = 190 bytes.
        assert!(seal(&public, PaddingScheme::Oaep, &[0; 190]).is_ok());
        assert!(matches!(
            seal(&public, PaddingScheme::Oaep, &[0; 191]),
            Err(Error::InvalidRequest(_))
        ));
    }
}
