//! [Generate data key](https://developer.hashicorp.com/vault/api-docs/secret/transit#generate-data-key): `POST /transit/datakey/:type/:name`.

use zeroize::Zeroizing;

use super::{EncryptItem, Transit};
use crate::{
    crypto::random_bytes,
    error::{Error, Result},
    MountId, Tenant,
};

/// What `datakey` is asked for.
#[derive(Debug, Default)]
pub struct DataKeyRequest {
    /// Whether the answer carries the new key's plaintext (the `plaintext` type).
    pub with_plaintext: bool,
    /// The new key's length in bits: 128, 256 or 512.
    pub bits: u32,
    /// Caller AAD (`associated_data`).
    pub associated_data: Vec<u8>,
    /// Vault's `context` of a derived key (empty: none).
    pub context: Vec<u8>,
}

/// Result of `datakey`.
#[derive(Debug)]
pub struct DataKeyOutput {
    /// The new key's plaintext (only for the `plaintext` type).
    pub plaintext: Option<Zeroizing<Vec<u8>>>,
    /// The new key encrypted under the transit key.
    pub ciphertext: String,
    /// Version used.
    pub key_version: u32,
}

impl Transit {
    /// Generates a fresh key of `bits` and returns it encrypted under the transit key (and
    /// in plaintext if asked), with the `context` of a derived key.
    pub async fn datakey(
        &self,
        tenant: &Tenant,
        mount: MountId,
        name: &str,
        request: DataKeyRequest,
    ) -> Result<DataKeyOutput> {
        let DataKeyRequest {
            with_plaintext,
            bits,
            associated_data,
            context,
        } = request;
        if !matches!(bits, 128 | 256 | 512) {
            return Err(Error::invalid("invalid bits; must be 128, 256 or 512"));
        }
        let plaintext = random_bytes(bits as usize / 8);
        let item = EncryptItem {
            plaintext: plaintext.clone(),
            associated_data,
            key_version: 0,
            context,
            padding_scheme: None,
        };
        let output = self
            .encrypt(tenant, mount, name, None, vec![item])
            .await?
            .pop()
            .ok_or_else(|| Error::internal("datakey result missing"))??;
        Ok(DataKeyOutput {
            plaintext: with_plaintext.then_some(plaintext),
            ciphertext: output.ciphertext,
            key_version: output.key_version,
        })
    }
}
