//! [Get wrapping key](https://openbao.org/api-docs/secret/transit/#get-wrapping-key):
//! `GET /transit/wrapping_key`.
//!
//! One RSA-4096 key pair per transit mount, made on its first read (as Vault makes its
//! `import/wrapping-key` policy), with which a caller wraps the ephemeral AES key of a BYOK
//! import (`import.rs`). It is kept in mount storage (under Vault's own storage name),
//! its private key only sealed under the broker's secret sealer (itself sealed under the
//! root key: [`SecretSealer`]), and held in memory per mount once opened.
//!
//! Generating an RSA-4096 key takes a while: it runs on a blocking thread, never on the
//! async workers, and one node makes one key at a time (a lock), re-reading the storage
//! under it; two nodes making a first key at once are settled by the store's compare-and-set
//! (`Expect::Absent`): the loser drops its key and takes the winner's.

use std::sync::Arc;

use base64::{engine::general_purpose::STANDARD, Engine as _};
use rsa::{
    pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding},
    RsaPrivateKey,
};
use serde::{Deserialize, Serialize};

use super::Transit;
use crate::{
    error::{Error, Result},
    mount_storage::MountStorage,
    seal::RootKey,
    store::Expect,
    MountId, Tenant, TenantId,
};

/// The mount storage key of the wrapping key (Vault's policy name, `import/wrapping-key`).
const WRAPPING_KEY_ENTRY: &str = "policy/import/wrapping-key";

/// The purpose the wrapping key's private key is sealed for (authenticated with it).
const SEAL_PURPOSE: &str = "transit wrapping key";

/// Bits of the wrapping key, as Vault's (`KeyType_RSA4096`).
const WRAPPING_KEY_BITS: usize = 4096;

/// Most mounts whose opened wrapping key a node keeps in memory.
const OPENED_CAPACITY: u64 = 1_024;

/// How long an opened wrapping key unused stays in memory.
const OPENED_IDLE: std::time::Duration = std::time::Duration::from_secs(3600);

/// The key that seals the broker's own transit secrets (the mounts' wrapping keys) at
/// rest: a 32-byte secret the broker keeps sealed under the root key
/// (`broker::sealed_secret`), so the engine never holds the root key itself.
pub struct SecretSealer(RootKey);

impl SecretSealer {
    /// A sealer over a 32-byte key.
    pub fn new(key: zeroize::Zeroizing<[u8; 32]>) -> Self {
        Self(RootKey::new(key))
    }
}

impl std::fmt::Debug for SecretSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretSealer(..)")
    }
}

/// A mount's wrapping key as stored: the public key in PEM, the private key (PKCS#8 DER)
/// sealed, base64.
#[derive(Serialize, Deserialize)]
struct StoredWrappingKey {
    public_key: String,
    sealed_private_key: String,
}

/// A mount's wrapping key, opened.
pub(super) struct WrappingKey {
    /// `SubjectPublicKeyInfo` PEM, as Vault answers it.
    pub(super) public_key: String,
    /// The private key (the `rsa` crate zeroizes it on drop).
    pub(super) private_key: RsaPrivateKey,
}

/// The wrapping keys this node opened, and what makes them.
pub(super) struct WrappingKeys {
    sealer: Option<SecretSealer>,
    opened: moka::sync::Cache<(TenantId, MountId), Arc<WrappingKey>>,
    /// One key generation at a time on this node.
    generating: tokio::sync::Mutex<()>,
}

impl WrappingKeys {
    pub(super) fn new(sealer: Option<SecretSealer>) -> Self {
        Self {
            sealer,
            // Bounded, and idle keys go (a deleted mount's or tenant's among them): the
            // store keeps them sealed, and reopening one is cheap next to making one.
            opened: moka::sync::Cache::builder()
                .max_capacity(OPENED_CAPACITY)
                .time_to_idle(OPENED_IDLE)
                .build(),
            generating: tokio::sync::Mutex::new(()),
        }
    }

    fn sealer(&self) -> Result<&SecretSealer> {
        self.sealer
            .as_ref()
            .ok_or_else(|| Error::internal("transit engine has no secret sealer"))
    }
}

impl Transit {
    /// Gives the engine the sealer of its own secrets (the broker does, when it opens).
    #[must_use]
    pub fn with_secret_sealer(mut self, sealer: SecretSealer) -> Self {
        self.wrapping_keys = WrappingKeys::new(Some(sealer));
        self
    }

    /// The mount's wrapping public key (PEM), made on first use.
    pub async fn wrapping_public_key(&self, tenant: &Tenant, mount: MountId) -> Result<String> {
        Ok(self.wrapping_key(tenant, mount).await?.public_key.clone())
    }

    /// The mount's wrapping key, opened: from memory, from mount storage, or made now.
    pub(super) async fn wrapping_key(
        &self,
        tenant: &Tenant,
        mount: MountId,
    ) -> Result<Arc<WrappingKey>> {
        let keys = &self.wrapping_keys;
        if let Some(key) = keys.opened.get(&(tenant.id, mount)) {
            return Ok(key);
        }
        let storage = MountStorage::new(self.store.clone(), tenant.id, mount);
        if let Some(key) = self.stored_wrapping_key(&storage).await? {
            keys.opened.insert((tenant.id, mount), key.clone());
            return Ok(key);
        }
        let _generating = keys.generating.lock().await;
        if let Some(key) = self.stored_wrapping_key(&storage).await? {
            keys.opened.insert((tenant.id, mount), key.clone());
            return Ok(key);
        }
        let (stored, key) = self.generate_wrapping_key().await?;
        let key = match storage
            .put(WRAPPING_KEY_ENTRY, &stored, Expect::Absent)
            .await
        {
            Ok(_) => Arc::new(key),
            // Another node stored one first: theirs stands.
            Err(Error::Conflict(_)) => self
                .stored_wrapping_key(&storage)
                .await?
                .ok_or_else(|| Error::internal("wrapping key vanished"))?,
            Err(other) => return Err(other),
        };
        keys.opened.insert((tenant.id, mount), key.clone());
        Ok(key)
    }

    /// The wrapping key kept in `storage`, unsealed, if there is one.
    async fn stored_wrapping_key(
        &self,
        storage: &MountStorage,
    ) -> Result<Option<Arc<WrappingKey>>> {
        let Some(entry) = storage.get::<StoredWrappingKey>(WRAPPING_KEY_ENTRY).await? else {
            return Ok(None);
        };
        let sealed = STANDARD
            .decode(&entry.value.sealed_private_key)
            .map_err(|e| Error::internal_from("decoding the sealed wrapping key", e))?;
        let der = self
            .wrapping_keys
            .sealer()?
            .0
            .unseal(SEAL_PURPOSE, &sealed)?;
        let private_key = RsaPrivateKey::from_pkcs8_der(&der)
            .map_err(|e| Error::internal_from("parsing the wrapping key", e))?;
        Ok(Some(Arc::new(WrappingKey {
            public_key: entry.value.public_key,
            private_key,
        })))
    }

    /// A new RSA-4096 key pair, made on a blocking thread, and its stored form.
    async fn generate_wrapping_key(&self) -> Result<(StoredWrappingKey, WrappingKey)> {
        let private_key = tokio::task::spawn_blocking(|| {
            RsaPrivateKey::new(&mut rand::rngs::OsRng, WRAPPING_KEY_BITS)
        })
        .await
        .map_err(|e| Error::internal_from("generating the wrapping key", e))?
        .map_err(|e| Error::internal_from("generating the wrapping key", e))?;
        let der = private_key
            .to_pkcs8_der()
            .map_err(|e| Error::internal_from("encoding the wrapping key", e))?;
        let sealed = self
            .wrapping_keys
            .sealer()?
            .0
            .seal(SEAL_PURPOSE, der.as_bytes())?;
        let public_key = private_key
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| Error::internal_from("encoding the wrapping public key", e))?;
        Ok((
            StoredWrappingKey {
                public_key: public_key.clone(),
                sealed_private_key: STANDARD.encode(sealed),
            },
            WrappingKey {
                public_key,
                private_key,
            },
        ))
    }
}
