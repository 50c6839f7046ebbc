//! [Generate HMAC](https://developer.hashicorp.com/vault/api-docs/secret/transit#generate-hmac):
//! `POST /transit/hmac/:name(/:algorithm)`, and the `hmac` half of
//! [verify](https://developer.hashicorp.com/vault/api-docs/secret/transit#verify-signed-data)
//! (`verify/:name` with `hmac=`), with Vault's version rules and messages
//! (`builtin/logical/transit/path_hmac.go`).
//!
//! As in Vault, every key version carries an HMAC key, apart from its encryption key. Here
//! it lives in the version's [`DataKey`](crate::crypto::DataKey), so it comes from the DEK
//! cache like the data key, and unwrapping it takes the backend, like encryption: in
//! keybroker's envelope it is derived from the version's DEK in the broker
//! (`HKDF(DEK, binding ‖ label)`), never from the backend key, which never leaves its
//! backend; in Vault's layout (exportable and imported keys) it is the version's stored
//! HMAC key, so HMACs agree with Vault's byte for byte. An `hmac` key's HMAC key is its
//! whole material (`key_size` bytes).
//!
//! Keys in mode=direct and asymmetric keys have no HMAC key in the broker: their material
//! is in the backend, which computes no HMAC. They are refused with the reason rather than
//! given an HMAC key the broker would hold on its own, which would outlive the backend: an
//! HMAC of a customer's agent-held key must stop working when the agent is unplugged.

use std::sync::Arc;

use ::hmac::{Mac, SimpleHmac};
use sha2::{Sha224, Sha256, Sha384, Sha512};
use sha3::{Sha3_224, Sha3_256, Sha3_384, Sha3_512};
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use super::{ciphertext, HashFunction, ItemResults, KeyState, KeyType, Transit};
use crate::{
    error::{Error, Result},
    store::KeyMode,
    MountId, Tenant,
};

/// One HMAC to check.
#[derive(Debug)]
pub struct HmacVerifyItem {
    /// The input the HMAC was made of.
    pub input: Vec<u8>,
    /// `vault:v<N>:<base64>` text.
    pub hmac: String,
}

/// HMAC of `input` under `key` with `function`.
fn mac(function: HashFunction, key: &[u8], input: &[u8]) -> Vec<u8> {
    fn with<D>(key: &[u8], input: &[u8]) -> Vec<u8>
    where
        D: sha2::Digest + sha2::digest::core_api::BlockSizeUser,
    {
        // HMAC takes keys of any length; SimpleHmac works with every digest here.
        match SimpleHmac::<D>::new_from_slice(key) {
            Ok(mut mac) => {
                mac.update(input);
                mac.finalize().into_bytes().to_vec()
            }
            Err(_) => Vec::new(),
        }
    }
    match function {
        HashFunction::Sha2_224 => with::<Sha224>(key, input),
        HashFunction::Sha2_256 => with::<Sha256>(key, input),
        HashFunction::Sha2_384 => with::<Sha384>(key, input),
        HashFunction::Sha2_512 => with::<Sha512>(key, input),
        HashFunction::Sha3_224 => with::<Sha3_224>(key, input),
        HashFunction::Sha3_256 => with::<Sha3_256>(key, input),
        HashFunction::Sha3_384 => with::<Sha3_384>(key, input),
        HashFunction::Sha3_512 => with::<Sha3_512>(key, input),
    }
}

impl Transit {
    /// HMACs each input with version `key_version` of the key (0: the latest).
    pub async fn hmac(
        &self,
        tenant: &Tenant,
        mount: MountId,
        name: &str,
        function: HashFunction,
        key_version: u32,
        inputs: Vec<Vec<u8>>,
    ) -> Result<ItemResults<String>> {
        self.check_batch_size(inputs.len())?;
        let state = self.hmac_key_state(tenant, mount, name).await?;
        let record = &state.record;
        // Vault's order: the latest is always allowed, older versions down to
        // min_encryption_version, then HMACKey's own checks.
        let version = match key_version {
            0 => record.latest_version,
            v if v == record.latest_version => v,
            v if record.min_encryption_version > 0 && v < record.min_encryption_version => {
                return Err(Error::invalid(
                    "cannot generate HMAC: version is too old (disallowed by policy)",
                ))
            }
            v if v > record.latest_version => {
                return Err(Error::invalid(format!(
                    "key version does not exist; latest key version is {}",
                    record.latest_version
                )))
            }
            v => v,
        };
        let key = self.hmac_key(tenant, &state, version).await?;
        Ok(inputs
            .iter()
            .map(|input| Ok(ciphertext::format(version, &mac(function, &key, input))))
            .collect())
    }

    /// Checks each HMAC (`Ok(false)` when it does not match), in constant time.
    pub async fn verify_hmac(
        &self,
        tenant: &Tenant,
        mount: MountId,
        name: &str,
        function: HashFunction,
        items: Vec<HmacVerifyItem>,
    ) -> Result<ItemResults<bool>> {
        self.check_batch_size(items.len())?;
        let state = self.hmac_key_state(tenant, mount, name).await?;
        let mut results = Vec::with_capacity(items.len());
        for item in items {
            let parsed = parse_hmac(&state, &item.hmac);
            let result = match parsed {
                Ok((version, expected)) => match self.hmac_key(tenant, &state, version).await {
                    Ok(key) => Ok(bool::from(
                        mac(function, &key, &item.input).ct_eq(&expected),
                    )),
                    Err(error @ (Error::Unavailable(_) | Error::Internal { .. })) => {
                        return Err(error)
                    }
                    Err(error) => Err(error),
                },
                Err(error) => Err(error),
            };
            results.push(result);
        }
        Ok(results)
    }

    /// The key, if it has HMAC keys in the broker; Vault's message when it is missing.
    async fn hmac_key_state(
        &self,
        tenant: &Tenant,
        mount: MountId,
        name: &str,
    ) -> Result<Arc<KeyState>> {
        super::validate_key_name(name)?;
        let state = self
            .state(tenant.id, mount, name)
            .await?
            .ok_or_else(|| Error::invalid("encryption key not found"))?;
        let record = &state.record;
        if KeyType::parse(&record.key_type)?.is_asymmetric() {
            return Err(Error::invalid(format!(
                "key type {} has no HMAC key in keybroker: its private key lives in backend \
                 instance \"{}\", which computes no HMAC; use a symmetric or hmac key",
                record.key_type, record.backend
            )));
        }
        if record.mode == KeyMode::Direct {
            return Err(Error::invalid(format!(
                "this key is held by backend instance \"{}\" in mode=direct: its material never \
                 leaves the backend, which computes no HMAC, so its versions have no HMAC key; \
                 use a key in mode=envelope",
                record.backend
            )));
        }
        Ok(state)
    }

    /// Version `version`'s HMAC key, from the DEK cache (the backend unwraps on a miss).
    async fn hmac_key(
        &self,
        tenant: &Tenant,
        state: &KeyState,
        version: u32,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let version = state
            .version(version)
            .cloned()
            .ok_or_else(|| Error::invalid("no such key version"))?;
        let instance = self.instance(tenant, &state.record.backend)?;
        let key = self
            .data_key(tenant, state, &version, instance.as_ref())
            .await?;
        Ok(Zeroizing::new(key.data_key.hmac_key().to_vec()))
    }
}

/// The version and bytes of a `vault:v<N>:<base64>` HMAC, checked against the key as Vault
/// checks it, with its messages.
fn parse_hmac(state: &KeyState, text: &str) -> Result<(u32, Vec<u8>)> {
    let rest = text
        .strip_prefix("vault:v")
        .ok_or_else(|| Error::invalid("invalid HMAC to verify: no prefix"))?;
    let (version, encoded) = rest
        .split_once(':')
        .ok_or_else(|| Error::invalid("invalid HMAC: wrong number of fields"))?;
    let version: u32 = version
        .parse()
        .map_err(|_| Error::invalid("invalid HMAC: version number could not be decoded"))?;
    let bytes = super::decode_go_base64(encoded).map_err(|at| {
        Error::invalid(format!(
            "unable to decode verification HMAC as base64: illegal base64 data at input byte {at}"
        ))
    })?;
    let record = &state.record;
    if version > record.latest_version {
        return Err(Error::invalid("invalid HMAC: version is too new"));
    }
    if record.min_decryption_version > 0 && version < record.min_decryption_version {
        return Err(Error::invalid(
            "cannot verify HMAC: version is too old (disallowed by policy)",
        ));
    }
    Ok((version, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmacs_match_rfc_4231_and_fips_202_vectors() {
        // RFC 4231 test case 2 ("Jefe"), SHA-256 and SHA-512.
        let key = b"Jefe";
        let data = b"what do ya want for nothing?";
        let hex = |bytes: Vec<u8>| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(
            hex(mac(HashFunction::Sha2_256, key, data)),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(mac(HashFunction::Sha2_224, key, data)),
            "a30e01098bc6dbbf45690f3a7e9e6d0f8bbea2a39e6148008fd05e44"
        );
        assert_eq!(
            hex(mac(HashFunction::Sha2_512, key, data)),
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
        );
        // Every function answers its digest's length.
        for (function, len) in HashFunction::ALL
            .into_iter()
            .zip([28, 32, 48, 64, 28, 32, 48, 64])
        {
            assert_eq!(mac(function, &[0; 64], b"x").len(), len);
        }
    }

    #[test]
    fn hmac_texts_are_checked_with_vault_messages() {
        let state = KeyState {
            record: super::super::test_record(3, 0, 2, 0),
            versions: Vec::new(),
        };
        let err = |text: &str| parse_hmac(&state, text).unwrap_err().to_string();
        assert_eq!(err("v1:AAAA"), "invalid HMAC to verify: no prefix");
        assert_eq!(err("vault:v1"), "invalid HMAC: wrong number of fields");
        assert_eq!(
            err("vault:vx:AAAA"),
            "invalid HMAC: version number could not be decoded"
        );
        assert_eq!(err("vault:v4:AAAA"), "invalid HMAC: version is too new");
        assert_eq!(
            err("vault:v1:AAAA"),
            "cannot verify HMAC: version is too old (disallowed by policy)"
        );
        assert!(err("vault:v2:A").starts_with("unable to decode verification HMAC as base64"));
        assert_eq!(
            parse_hmac(&state, "vault:v3:AAAA").unwrap(),
            (3, vec![0, 0, 0])
        );
    }
}
