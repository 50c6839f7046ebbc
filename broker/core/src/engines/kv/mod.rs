//! The KV secrets engine, versions 1 and 2 (Vault's `kv`), with every secret encrypted
//! under a key held by the backend instance the mount names (ARCHITECTURE.md §4d).
//!
//! - **The mount's key** is a transit key of the mount's own (named [`KEY_NAME`], in the
//!   KV mount, so no transit route reaches it), `aes256-gcm96` in envelope mode on the
//!   mount's backend instance: the local KEK, an HSM, a cloud KMS or the customer's agent.
//!   Its versions' data keys are cached like any transit key's, and evicted when an
//!   `evict` instance goes away; it rotates on request and on the mount's period
//!   (transit's auto-rotation).
//! - **Each secret version** has a fresh random 256-bit data key. The version's data is
//!   AES-256-GCM under it; the data key itself is encrypted by the mount's key (a transit
//!   ciphertext). Both are bound by AAD to immutable ids: the tenant, the mount, the
//!   secret's random id and the version number ([`binding`]), so a version copied to
//!   another secret, mount or tenant does not decrypt. A rotation is followed by a rewrap
//!   of the older versions' data keys under the new key version ([`Kv::rewrap_mount`]).
//! - **Paths and metadata** are sealed: each secret is one document in mount storage
//!   (`path.rs` says under which key), sealed under a secret the root key seals, its AAD
//!   naming the tenant, mount and storage key. One document per secret makes every
//!   change a single compare-and-set in the store, so check-and-set is exact across nodes.
//! - Version 1 keeps each secret as the version 1 of the same document, rewritten in
//!   place, so enabling versioning changes nothing stored.
//!
//! The operations are in `secrets.rs` (data, delete, undelete, destroy, subkeys, version 1)
//! and `metadata.rs` (metadata, listings, the mount's `config`, rewrap).

mod document;
mod metadata;
mod path;
mod secrets;

use std::sync::Arc;

use aes_gcm::{
    aead::{Aead, Payload},
    Aes256Gcm, KeyInit, Nonce,
};
use base64::{engine::general_purpose::STANDARD, Engine as _};
use zeroize::Zeroizing;

pub use document::{SecretMetadata, VersionMetadata};
pub use metadata::{KvConfig, MetadataUpdate, RewrapReport};
pub use path::{SecretPath, MAX_DEPTH, MAX_PATH_LEN};
pub use secrets::{DataRead, VersionChange, Written};

use crate::{
    clock::Clock,
    crypto::{random_nonce, NONCE_LEN},
    engines::transit::{CreateKeyOptions, DecryptItem, EncryptItem, Transit, AES256_GCM96},
    error::{Error, Result},
    mount_storage::MountStorage,
    seal::RootKey,
    store::{KeyMode, MountRecord, Store},
    turns::{Turn, Turns},
    Tenant,
};
use document::{SecretDoc, StoredSecret};
use path::PathHasher;

/// The name of each KV mount's key, a transit key of the mount's own.
pub const KEY_NAME: &str = "kv";

/// Versions kept per secret when neither the mount nor the secret says (Vault's).
pub const DEFAULT_MAX_VERSIONS: u32 = 10;

/// The meta name of the secret that seals KV documents.
pub const SEALER_NAME: &str = "kv-sealer";

/// The meta name of the secret that hashes KV paths.
pub const PATH_KEY_NAME: &str = "kv-path-key";

/// Attempts at a read-modify-write of one document before giving up with a conflict.
const WRITE_ATTEMPTS: usize = 32;

/// Largest data of one version (its JSON), as Vault's integrated storage bounds an entry.
pub const MAX_VERSION_BYTES: usize = 1024 * 1024;

/// Largest document of one secret (every version kept, sealed): a secret keeping many large
/// versions is refused a new one rather than grow without bound.
pub const MAX_DOCUMENT_BYTES: usize = 8 * 1024 * 1024;

/// A KV mount's options, as `sys/mounts` keeps them (`-options=version=2,backend=…`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvOptions {
    /// 1 or 2.
    pub version: u8,
    /// The backend instance holding the mount's key (`None`: the default one).
    pub backend: Option<String>,
    /// Seconds between automatic rotations of the mount's key (0: never).
    pub rotation_period: u64,
}

/// One KV mount, as the operations need it.
#[derive(Clone, Copy)]
pub struct KvMount<'a> {
    /// The tenant owning it.
    pub tenant: &'a Tenant,
    /// The mount.
    pub mount: &'a MountRecord,
}

/// The KV engine.
pub struct Kv {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    sealer: RootKey,
    paths: PathHasher,
    /// Writers of one secret on this node take turns here (as Vault's lock per key, but
    /// per exact secret: no two secrets share a turn), so concurrent writes without `cas`
    /// all land, one after the other; the store's compare-and-set still settles writers on
    /// different nodes.
    write_turns: Turns<(crate::TenantId, crate::MountId, String)>,
    /// Secrets' stored (sealed) documents as reads find them, dropped at every change
    /// another node announces and replaced by every write through this node.
    reads: crate::mount_storage::EntryCache,
    /// Whether this node is the store's only writer (SQLite): then writes too start from
    /// what `reads` holds, its versions being the store's. Otherwise they read the store (a
    /// secret deleted and written again on another node is back at the same version).
    sole_writer: bool,
}

/// Bytes of sealed documents a node keeps for reads.
const READ_CACHE_BYTES: u64 = 64 * 1024 * 1024;

impl std::fmt::Debug for Kv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kv(..)")
    }
}

/// What a version's data and data key are bound to: immutable ids, never names.
fn binding(mount: &KvMount<'_>, secret_id: &str, version: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    for field in [
        b"keybroker kv 1".as_slice(),
        mount.tenant.id.as_bytes(),
        mount.mount.id.as_bytes(),
        secret_id.as_bytes(),
        &version.to_be_bytes(),
    ] {
        out.extend_from_slice(&u32::try_from(field.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(field);
    }
    out
}

impl Kv {
    /// The engine over `store`, sealing documents under `sealer_key` and hashing paths
    /// under `path_key` (both secrets the root key seals).
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        sealer_key: Zeroizing<[u8; 32]>,
        path_key: Zeroizing<[u8; 32]>,
    ) -> Self {
        let sole_writer = store.subscribe().is_none();
        Self {
            store,
            clock,
            sealer: RootKey::new(sealer_key),
            paths: PathHasher::new(path_key),
            write_turns: Turns::default(),
            reads: crate::mount_storage::EntryCache::with_max_bytes(READ_CACHE_BYTES),
            sole_writer,
        }
    }

    /// Drops what this node keeps of an entry of a mount (written on another node).
    pub fn forget_entry(&self, tenant: crate::TenantId, mount: crate::MountId, key: &str) {
        self.reads.forget(tenant, mount, key);
    }

    /// Drops what this node keeps of a tenant's mounts (a mount went, or the tenant).
    pub fn forget_tenant(&self, tenant: crate::TenantId) {
        self.reads.forget_tenant(tenant);
    }

    /// Drops everything this node keeps (changes may have been missed).
    pub fn forget_all(&self) {
        self.reads.forget_all();
    }

    /// This node's turn to change the secret under storage key `key` of `mount`.
    async fn write_turn(
        &self,
        mount: &KvMount<'_>,
        key: &str,
    ) -> Turn<'_, (crate::TenantId, crate::MountId, String)> {
        self.write_turns
            .take((mount.tenant.id, mount.mount.id, key.to_owned()))
            .await
    }

    /// Makes (or finds) the mount's key in its backend instance: called when the mount is
    /// enabled, so a backend that cannot hold it refuses the mount.
    pub async fn enable(
        &self,
        transit: &Transit,
        tenant: &Tenant,
        mount: &MountRecord,
        options: &KvOptions,
    ) -> Result<()> {
        transit
            .create_key(
                tenant,
                mount.id,
                KEY_NAME,
                CreateKeyOptions {
                    key_type: Some(AES256_GCM96.to_owned()),
                    backend: options.backend.clone(),
                    mode: Some(KeyMode::Envelope),
                    auto_rotate_period: (options.rotation_period > 0)
                        .then_some(options.rotation_period),
                    ..CreateKeyOptions::default()
                },
            )
            .await?;
        Ok(())
    }

    /// Checks a change of a mount's options (a tune, `bao kv enable-versioning`) and applies
    /// what concerns the mount's key.
    pub async fn retune(
        &self,
        transit: &Transit,
        tenant: &Tenant,
        mount: &MountRecord,
        before: &KvOptions,
        after: &KvOptions,
    ) -> Result<()> {
        if after.version < before.version {
            return Err(Error::invalid(
                "cannot downgrade a KV mount from version 2 to version 1",
            ));
        }
        if after.backend != before.backend {
            return Err(Error::invalid(
                "the backend of a KV mount cannot change: its secrets are encrypted under a key \
                 held there",
            ));
        }
        if after.rotation_period != before.rotation_period {
            transit
                .configure_key(
                    tenant,
                    mount.id,
                    KEY_NAME,
                    crate::engines::transit::KeyConfigUpdate {
                        auto_rotate_period: Some(after.rotation_period),
                        ..Default::default()
                    },
                )
                .await?;
        }
        Ok(())
    }

    /// Rotates the mount's key (our `<mount>/rotate`); returns the new key version. The
    /// rewrap of older versions' data keys follows in the background ([`Kv::rewrap_mount`]).
    pub async fn rotate(
        &self,
        transit: &Transit,
        tenant: &Tenant,
        mount: &MountRecord,
    ) -> Result<u32> {
        let info = transit.rotate(tenant, mount.id, KEY_NAME).await?;
        Ok(info.record.latest_version)
    }

    fn storage(&self, mount: &KvMount<'_>) -> MountStorage {
        MountStorage::new(self.store.clone(), mount.tenant.id, mount.mount.id)
    }

    fn now_nanos(&self) -> i64 {
        self.clock.now_unix_nanos()
    }

    fn seal_purpose(mount: &KvMount<'_>, key: &str) -> String {
        format!("kv:{}:{}:{key}", mount.tenant.id, mount.mount.id)
    }

    /// The document under storage key `key`, opened, with its store version: for writes,
    /// which compare and set against that version.
    async fn load(&self, mount: &KvMount<'_>, key: &str) -> Result<Option<(SecretDoc, u64)>> {
        let storage = self.storage(mount);
        let stored = if self.sole_writer {
            self.reads
                .get_versioned::<StoredSecret>(&storage, key)
                .await?
        } else {
            storage.get::<StoredSecret>(key).await?
        };
        let Some(stored) = stored else {
            return Ok(None);
        };
        Ok(Some((
            self.open(mount, key, &stored.value)?,
            stored.version,
        )))
    }

    /// The document under storage key `key`, opened, from this node's cache of reads.
    async fn load_read(&self, mount: &KvMount<'_>, key: &str) -> Result<Option<SecretDoc>> {
        match self
            .reads
            .get::<StoredSecret>(&self.storage(mount), key)
            .await?
        {
            Some(stored) => self.open(mount, key, &stored).map(Some),
            None => Ok(None),
        }
    }

    /// Opens a stored document.
    fn open(&self, mount: &KvMount<'_>, key: &str, stored: &StoredSecret) -> Result<SecretDoc> {
        let sealed = STANDARD
            .decode(&stored.sealed)
            .map_err(|e| Error::internal_from("KV document encoding", e))?;
        let opened = self
            .sealer
            .unseal(&Self::seal_purpose(mount, key), &sealed)
            .map_err(|_| Error::internal("a KV document does not open under this mount"))?;
        serde_json::from_slice(&opened).map_err(|e| Error::internal_from("KV document", e))
    }

    /// Seals `doc` under storage key `key`, replacing the version `expected` (0: absent).
    async fn save(
        &self,
        mount: &KvMount<'_>,
        key: &str,
        doc: &SecretDoc,
        expected: u64,
    ) -> Result<()> {
        let plain = Zeroizing::new(
            serde_json::to_vec(doc).map_err(|e| Error::internal_from("KV document", e))?,
        );
        if plain.len() > MAX_DOCUMENT_BYTES {
            return Err(Error::invalid(format!(
                "the secret's versions would take more than {MAX_DOCUMENT_BYTES} bytes: lower its max_versions, or destroy or delete versions with its metadata"
            )));
        }
        let sealed = self.sealer.seal(&Self::seal_purpose(mount, key), &plain)?;
        let stored = serde_json::to_value(StoredSecret {
            sealed: STANDARD.encode(sealed),
        })
        .map_err(|e| Error::internal_from("KV document", e))?;
        let expect = match expected {
            0 => crate::store::Expect::Absent,
            version => crate::store::Expect::Version(version),
        };
        let written = self.storage(mount).put_json(key, &stored, expect).await;
        let (tenant, mount) = (mount.tenant.id, mount.mount.id);
        match written {
            Ok(version) if self.sole_writer => {
                self.reads.remember(tenant, mount, key, stored, version);
                Ok(())
            }
            // Written, or changed by another writer meanwhile: what reads kept is stale.
            written => {
                self.reads.forget(tenant, mount, key);
                written.map(|_| ())
            }
        }
    }

    /// Encrypts a version's data (JSON text) under a fresh data key, itself encrypted by the
    /// mount's key; returns (data key ciphertext, data ciphertext in base64).
    async fn seal_version(
        &self,
        transit: &Transit,
        mount: &KvMount<'_>,
        secret_id: &str,
        version: u64,
        plaintext: &[u8],
    ) -> Result<(String, String)> {
        if plaintext.len() > MAX_VERSION_BYTES {
            return Err(Error::invalid(format!(
                "the secret's data takes {} bytes, more than the {MAX_VERSION_BYTES} a version may hold",
                plaintext.len()
            )));
        }
        let aad = binding(mount, secret_id, version);
        let dek = crate::crypto::generate_dek();
        let wrapped = transit
            .encrypt(
                mount.tenant,
                mount.mount.id,
                KEY_NAME,
                None,
                vec![EncryptItem {
                    plaintext: Zeroizing::new(dek.to_vec()),
                    associated_data: aad.clone(),
                    key_version: 0,
                    context: Vec::new(),
                    padding_scheme: None,
                }],
            )
            .await
            .map_err(missing_key)?
            .pop()
            .ok_or_else(|| Error::internal("no wrapped data key"))??;
        let nonce = random_nonce();
        let sealed = Aes256Gcm::new_from_slice(dek.as_ref())
            .map_err(|_| Error::internal("data key length"))?
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| Error::internal("sealing a secret failed"))?;
        let mut data = nonce.to_vec();
        data.extend_from_slice(&sealed);
        Ok((wrapped.ciphertext, STANDARD.encode(data)))
    }

    /// The data key of a version, decrypted by the mount's key.
    async fn open_data_key(
        &self,
        transit: &Transit,
        mount: &KvMount<'_>,
        secret_id: &str,
        version: u64,
        wrapped: &str,
    ) -> Result<Zeroizing<Vec<u8>>> {
        transit
            .decrypt(
                mount.tenant,
                mount.mount.id,
                KEY_NAME,
                vec![DecryptItem {
                    ciphertext: wrapped.to_owned(),
                    associated_data: binding(mount, secret_id, version),
                    context: Vec::new(),
                    padding_scheme: None,
                }],
            )
            .await
            .map_err(missing_key)?
            .pop()
            .ok_or_else(|| Error::internal("no data key"))?
            .map_err(|error| match error {
                Error::InvalidRequest(_) => {
                    Error::internal("a KV version's data key does not open under the mount's key")
                }
                other => other,
            })
    }

    /// A version's data (JSON text), decrypted.
    async fn open_version(
        &self,
        transit: &Transit,
        mount: &KvMount<'_>,
        secret_id: &str,
        version: u64,
        wrapped: &str,
        data: &str,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let dek = self
            .open_data_key(transit, mount, secret_id, version, wrapped)
            .await?;
        let data = STANDARD
            .decode(data)
            .map_err(|e| Error::internal_from("KV version encoding", e))?;
        if data.len() < NONCE_LEN {
            return Err(Error::internal("KV version too short"));
        }
        let (nonce, sealed) = data.split_at(NONCE_LEN);
        Aes256Gcm::new_from_slice(&dek)
            .map_err(|_| Error::internal("data key length"))?
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &binding(mount, secret_id, version),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| Error::internal("a KV version does not open under its data key"))
    }
}

/// The mount's key missing is the store's inconsistency (a mount enabled without it), not
/// the caller's bad request.
fn missing_key(error: Error) -> Error {
    match error {
        Error::InvalidRequest(message) if message == "encryption key not found" => {
            Error::internal("the KV mount has no key")
        }
        other => other,
    }
}
