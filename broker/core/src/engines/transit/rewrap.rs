//! [Rewrap data](https://developer.hashicorp.com/vault/api-docs/secret/transit#rewrap-data): `POST /transit/rewrap/:name`.
//!
//! Each item is decrypted with the version its ciphertext names and encrypted again with
//! the version the item names (`key_version`, 0: the latest), as Vault's rewrap does.

use super::{DecryptItem, EncryptItem, EncryptOutput, ItemResults, Transit};
use crate::{
    error::{Error, Result},
    MountId, Tenant,
};

/// One ciphertext to rewrap.
#[derive(Debug)]
pub struct RewrapItem {
    /// The ciphertext, its `associated_data` and `context` (a derived key decrypts and
    /// encrypts again with that context).
    pub decrypt: DecryptItem,
    /// The version to encrypt it with again (`key_version`); 0 is the latest.
    pub key_version: u32,
}

impl Transit {
    /// Decrypts with any allowed version, then encrypts with each item's `key_version`.
    pub async fn rewrap(
        &self,
        tenant: &Tenant,
        mount: MountId,
        name: &str,
        items: Vec<RewrapItem>,
    ) -> Result<ItemResults<EncryptOutput>> {
        let mut targets = Vec::with_capacity(items.len());
        let mut to_decrypt = Vec::with_capacity(items.len());
        for item in items {
            targets.push((
                item.decrypt.associated_data.clone(),
                item.decrypt.context.clone(),
                item.key_version,
            ));
            to_decrypt.push(item.decrypt);
        }
        let decrypted = self.decrypt(tenant, mount, name, to_decrypt).await?;
        let mut to_encrypt = Vec::new();
        let mut slots = Vec::with_capacity(decrypted.len());
        for (plaintext, (associated_data, context, key_version)) in
            decrypted.into_iter().zip(targets)
        {
            match plaintext {
                Ok(plaintext) => {
                    slots.push(None);
                    to_encrypt.push(EncryptItem {
                        plaintext,
                        associated_data,
                        key_version,
                        context,
                        padding_scheme: None,
                    });
                }
                Err(error) => slots.push(Some(error)),
            }
        }
        let mut encrypted = if to_encrypt.is_empty() {
            Vec::new()
        } else {
            self.encrypt(tenant, mount, name, None, to_encrypt).await?
        }
        .into_iter();
        Ok(slots
            .into_iter()
            .map(|slot| match slot {
                Some(error) => Err(error),
                None => encrypted
                    .next()
                    .unwrap_or_else(|| Err(Error::internal("rewrap result missing"))),
            })
            .collect())
    }
}
