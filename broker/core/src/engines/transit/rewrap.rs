//! [Rewrap data](https://developer.hashicorp.com/vault/api-docs/secret/transit#rewrap-data): `POST /transit/rewrap/:name`.

use super::{DecryptItem, EncryptItem, EncryptOutput, ItemResults, Transit};
use crate::{
    error::{Error, Result},
    MountId, Tenant,
};

impl Transit {
    /// Decrypts with any allowed version, then encrypts with the latest (or `key_version`).
    pub async fn rewrap(
        &self,
        tenant: &Tenant,
        mount: MountId,
        name: &str,
        key_version: Option<u32>,
        items: Vec<DecryptItem>,
    ) -> Result<ItemResults<EncryptOutput>> {
        let associated: Vec<Vec<u8>> = items.iter().map(|i| i.associated_data.clone()).collect();
        let decrypted = self.decrypt(tenant, mount, name, items).await?;
        let mut to_encrypt = Vec::new();
        let mut slots = Vec::with_capacity(decrypted.len());
        for (plaintext, associated_data) in decrypted.into_iter().zip(associated) {
            match plaintext {
                Ok(plaintext) => {
                    slots.push(None);
                    to_encrypt.push(EncryptItem {
                        plaintext,
                        associated_data,
                    });
                }
                Err(error) => slots.push(Some(error)),
            }
        }
        let mut encrypted = if to_encrypt.is_empty() {
            Vec::new()
        } else {
            self.encrypt(tenant, mount, name, key_version, None, to_encrypt)
                .await?
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
