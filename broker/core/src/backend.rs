//! What the core needs from a backend instance. The plugin host in `keybroker-server`
//! implements it over the plugin ABI, with a bounded pool and a deadline per call.

use std::sync::Arc;

use async_trait::async_trait;
use zeroize::Zeroizing;

use crate::{dek_cache::DekCache, error::Error, Tenant};

/// What happens to cached DEKs when an instance becomes unavailable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnUnavailable {
    /// Keep serving cached DEKs until their TTL (KMS, HSM, local).
    Serve,
    /// Zeroize cached DEKs at once and refuse (customer agents).
    Evict,
}

/// One encryption in a backend call.
#[derive(Debug)]
pub struct BackendEncrypt<'a> {
    /// Backend key reference.
    pub reference: &'a str,
    /// Data (a DEK, or caller data in direct mode).
    pub plaintext: &'a [u8],
    /// AAD (the binding, plus the caller's associated data).
    pub aad: &'a [u8],
    /// Broker-chosen, counted IV.
    pub iv: [u8; 12],
}

/// One decryption in a backend call.
#[derive(Debug)]
pub struct BackendDecrypt<'a> {
    /// Backend key reference.
    pub reference: &'a str,
    /// What `encrypt` returned.
    pub ciphertext: &'a [u8],
    /// The same AAD as at encryption.
    pub aad: &'a [u8],
}

/// One signature in a backend call.
#[derive(Debug)]
pub struct BackendSign<'a> {
    /// Backend key reference (an asymmetric key).
    pub reference: &'a str,
    /// The digest to sign.
    pub digest: &'a [u8],
    /// Vault's name of the hash that made the digest (`sha2-256`, …).
    pub hash_algorithm: &'a str,
    /// RSA: `pss` or `pkcs1v15`; ECDSA: empty.
    pub signature_algorithm: &'a str,
}

/// One verification in a backend call.
#[derive(Debug)]
pub struct BackendVerify<'a> {
    /// What was signed, as in [`BackendSign`].
    pub sign: BackendSign<'a>,
    /// The signature (RSA: PKCS #1; ECDSA: `r ‖ s`).
    pub signature: &'a [u8],
}

/// A loaded backend instance as the core sees it.
///
/// Operations take the whole [`Tenant`]: the backend sees its immutable id on every call,
/// and its canonical name once per instance, before the first call for it (backends whose
/// own rules name tenants, such as a customer agent's allowlist, need it).
#[async_trait]
pub trait BackendInstance: Send + Sync {
    /// Instance name.
    fn name(&self) -> &str;
    /// Whether keys of this tenant may be created on the instance.
    fn allows_tenant(&self, tenant_name: &str) -> bool;
    /// The instance's DEK cache.
    fn cache(&self) -> &DekCache;
    /// Policy for cached keys when unavailable.
    fn on_unavailable(&self) -> OnUnavailable;
    /// `Ok` if the instance, and this key reference, can serve now; otherwise the
    /// `Unavailable` error to answer with.
    fn check_available(&self, reference: &str) -> Result<(), Error>;
    /// Whether the instance supports direct mode.
    fn supports_direct(&self) -> bool;
    /// Whether the instance can create asymmetric keys and sign with them.
    fn supports_sign(&self) -> bool;
    /// Whether the instance decrypts with the RSA keys it holds ([`decrypt`](Self::decrypt)
    /// with an RSA key's reference, the padding's name as the AAD and the raw RSA
    /// ciphertext; an empty ciphertext asks whether it can use that padding at all).
    fn supports_asymmetric_decrypt(&self) -> bool;
    /// Whether the instance can bind keys that already exist in the backend.
    fn supports_bind(&self) -> bool;
    /// Whether the instance makes data keys itself (AWS KMS `GenerateDataKey`).
    fn supports_generate_data_key(&self) -> bool;
    /// Whether the instance's keys are the broker's own software keys (the local KEK): only
    /// their transit keys may be exportable or backed up in plaintext.
    fn holds_in_broker(&self) -> bool;
    /// Whether the instance hands the private keys of its asymmetric keys to the broker and
    /// takes such keys in ([`export_private_key`](Self::export_private_key),
    /// [`import_private_key`](Self::import_private_key)): only an instance that also
    /// [holds its keys in the broker](Self::holds_in_broker), the local KEK.
    fn supports_private_key_transfer(&self) -> bool;
    /// Whether the instance's configuration lets tenant `tenant_name` bind `backend_key`
    /// (operators in the root namespace with `sudo` need no grant: the caller checks that).
    fn may_bind(&self, tenant_name: &str, backend_key: &str) -> bool;
    /// Binds an existing backend key to a tenant's transit key; returns its reference.
    async fn bind_key(
        &self,
        tenant: &Tenant,
        key_id: &str,
        key_type: &str,
        backend_key: &str,
    ) -> Result<String, Error>;
    /// Signs a digest with an asymmetric key.
    async fn sign(&self, tenant: &Tenant, request: BackendSign<'_>) -> Result<Vec<u8>, Error>;
    /// Verifies a signature; `Ok(false)` when it does not match.
    async fn verify(&self, tenant: &Tenant, request: BackendVerify<'_>) -> Result<bool, Error>;
    /// The PEM public key of an asymmetric key.
    async fn public_key(&self, tenant: &Tenant, reference: &str) -> Result<String, Error>;
    /// The private key of an asymmetric key, PKCS #8 DER.
    async fn export_private_key(
        &self,
        tenant: &Tenant,
        reference: &str,
    ) -> Result<Zeroizing<Vec<u8>>, Error>;
    /// Takes in a private key (PKCS #8 DER) of an asymmetric `key_type` as a new backend key
    /// of a tenant's transit key; returns its reference.
    async fn import_private_key(
        &self,
        tenant: &Tenant,
        key_id: &str,
        key_type: &str,
        pkcs8: &[u8],
    ) -> Result<String, Error>;
    /// A fresh 32-byte data key made by the backend: (plaintext, wrapped under `reference`
    /// with `aad`, as `decrypt` takes it back).
    async fn generate_data_key(
        &self,
        tenant: &Tenant,
        reference: &str,
        aad: &[u8],
    ) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), Error>;
    /// Creates a backend key for a tenant's transit key.
    async fn create_key(
        &self,
        tenant: &Tenant,
        key_id: &str,
        key_type: &str,
    ) -> Result<String, Error>;
    /// Destroys a backend key the broker created.
    async fn delete_key(&self, tenant: &Tenant, reference: &str) -> Result<(), Error>;
    /// Encrypts (wraps).
    async fn encrypt(&self, tenant: &Tenant, request: BackendEncrypt<'_>)
        -> Result<Vec<u8>, Error>;
    /// Decrypts (unwraps).
    async fn decrypt(
        &self,
        tenant: &Tenant,
        request: BackendDecrypt<'_>,
    ) -> Result<Zeroizing<Vec<u8>>, Error>;
    /// Several encryptions in one backend call.
    async fn encrypt_batch(
        &self,
        tenant: &Tenant,
        requests: Vec<BackendEncrypt<'_>>,
    ) -> Result<Vec<Result<Vec<u8>, Error>>, Error>;
    /// Several decryptions in one backend call.
    async fn decrypt_batch(
        &self,
        tenant: &Tenant,
        requests: Vec<BackendDecrypt<'_>>,
    ) -> Result<Vec<Result<Zeroizing<Vec<u8>>, Error>>, Error>;
}

/// The set of instances, by name.
pub trait Backends: Send + Sync {
    /// The instance called `name`, if loaded (even if unavailable).
    fn get(&self, name: &str) -> Option<Arc<dyn BackendInstance>>;

    /// Every loaded instance.
    fn all(&self) -> Vec<Arc<dyn BackendInstance>>;
}
