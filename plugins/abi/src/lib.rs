//! The one crate both sides of the plugin boundary link (ARCHITECTURE.md §5).
//!
//! A backend plugin is a `cdylib` exporting an [`abi_stable`] root module, [`PluginMod`]. Its
//! single constructor takes the instance's configuration (JSON text: the `[config]` table of
//! the drop-in file) and a [`HostBox`], and returns a [`BackendBox`] or a [`PluginError`].
//!
//! Rules that keep the boundary safe:
//! - [`PluginMod`] and [`BackendPlugin`] are prefix types: later versions add fields and
//!   methods *after* the ones marked `last_prefix_field`, so plugins built against this
//!   version keep loading in a newer host.
//! - No futures cross the boundary: the host calls plugins from its own bounded thread pool,
//!   with a deadline per call. A plugin that needs async I/O owns its runtime. A plugin whose
//!   batch calls only queue work for that runtime reports [`capability::NONBLOCKING`]: the
//!   host then calls [`BackendPlugin::encrypt_batch_start`] and
//!   [`BackendPlugin::decrypt_batch_start`] on its own async threads, and the plugin hands the
//!   results back through a [`BatchDoneBox`] from whichever thread has them.
//! - A panic must never unwind across `extern "C"` (abi_stable aborts the process). Plugin
//!   authors implement the plain Rust trait [`Backend`] and export it with
//!   [`export_backend_plugin!`]; [`into_ffi`] wraps every method in `catch_unwind`.
//! - Plugins report availability and log through the [`HostBox`]: they are a separate
//!   dynamic library, so the host's `tracing` subscriber is not theirs.
#![allow(non_local_definitions)]
// abi_stable's derive and sabi_trait macros expand to `unsafe` impls, and sabi_trait to
// fully qualified paths; neither is code of ours.
#![allow(unsafe_code, unused_qualifications)]

use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, RResult, RSlice, RStr, RString, RVec},
    StableAbi,
};

pub use abi_stable;
use zeroize::Zeroizing;

/// Forwards the first ABI's eight methods of [`BackendPlugin`] to `self.0`, an older trait
/// object: the body shared by the `Upgraded` wrappers of the frozen modules.
macro_rules! forward_first_abi {
    () => {
        fn info(&self) -> RResult<BackendInfo, PluginError> {
            self.0.info()
        }
        fn create_key(&self, request: CreateKeyRequest) -> RResult<KeyHandle, PluginError> {
            self.0.create_key(request)
        }
        fn delete_key(
            &self,
            tenant_id: RString,
            key_reference: RString,
        ) -> RResult<(), PluginError> {
            self.0.delete_key(tenant_id, key_reference)
        }
        fn encrypt(&self, request: EncryptRequest) -> RResult<RVec<u8>, PluginError> {
            self.0.encrypt(request)
        }
        fn decrypt(&self, request: DecryptRequest) -> RResult<RVec<u8>, PluginError> {
            self.0.decrypt(request)
        }
        fn encrypt_batch(&self, requests: RVec<EncryptRequest>) -> RVec<BatchItem> {
            self.0.encrypt_batch(requests)
        }
        fn decrypt_batch(&self, requests: RVec<DecryptRequest>) -> RVec<BatchItem> {
            self.0.decrypt_batch(requests)
        }
        fn health(&self) -> RResult<(), PluginError> {
            self.0.health()
        }
    };
}

/// Forwards the methods the second ABI added (`bind_key`, `sign`, `verify`, `public_key`) to
/// `self.0`: shared by the `Upgraded` wrappers of the second and later frozen modules.
macro_rules! forward_second_abi {
    () => {
        fn bind_key(&self, request: BindKeyRequest) -> RResult<KeyHandle, PluginError> {
            self.0.bind_key(request)
        }
        fn sign(&self, request: SignRequest) -> RResult<RVec<u8>, PluginError> {
            self.0.sign(request)
        }
        fn verify(&self, request: VerifyRequest) -> RResult<bool, PluginError> {
            self.0.verify(request)
        }
        fn public_key(
            &self,
            tenant_id: RString,
            key_reference: RString,
        ) -> RResult<RString, PluginError> {
            self.0.public_key(tenant_id, key_reference)
        }
    };
}

pub mod v1;
pub mod v2;
pub mod v3;
pub mod v4;
pub mod v5;

/// Kind of a [`PluginError`]: decides the HTTP status the broker answers with.
///
/// A plain integer, not an enum, so that later versions may add kinds without changing the
/// layout that the loader checks; unknown kinds are treated as [`ErrorKind::INTERNAL`].
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorKind(pub u32);

impl ErrorKind {
    /// The request is malformed or not supported by this backend (HTTP 400).
    pub const INVALID_REQUEST: Self = Self(1);
    /// The key reference is unknown to the backend (HTTP 400 at the broker).
    pub const KEY_NOT_FOUND: Self = Self(2);
    /// The backend refused the operation (HTTP 403).
    pub const ACCESS_DENIED: Self = Self(3);
    /// The backend cannot be reached or is not ready (HTTP 503).
    pub const UNAVAILABLE: Self = Self(4);
    /// The ciphertext failed authentication or could not be parsed (HTTP 400).
    pub const INVALID_CIPHERTEXT: Self = Self(5);
    /// The payload is larger than the backend accepts (HTTP 400).
    pub const PAYLOAD_TOO_LARGE: Self = Self(6);
    /// The configuration given to the constructor is invalid.
    pub const INVALID_CONFIG: Self = Self(7);
    /// Anything else, including a caught panic (HTTP 500, details only in the log).
    pub const INTERNAL: Self = Self(8);
}

/// An error returned by a plugin. The message must never contain key material.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct PluginError {
    /// What went wrong, for the broker's error mapping.
    pub kind: ErrorKind,
    /// A human readable reason, safe to show to the caller.
    pub message: RString,
}

impl PluginError {
    /// An error of the given kind.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: RString::from(message.into()),
        }
    }
    /// Shorthand for [`ErrorKind::INVALID_REQUEST`].
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::INVALID_REQUEST, message)
    }
    /// Shorthand for [`ErrorKind::INVALID_CIPHERTEXT`].
    pub fn invalid_ciphertext(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::INVALID_CIPHERTEXT, message)
    }
    /// Shorthand for [`ErrorKind::INVALID_CONFIG`].
    pub fn invalid_config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::INVALID_CONFIG, message)
    }
    /// Shorthand for [`ErrorKind::UNAVAILABLE`].
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::UNAVAILABLE, message)
    }
    /// Shorthand for [`ErrorKind::INTERNAL`].
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::INTERNAL, message)
    }
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message.as_str())
    }
}

impl std::error::Error for PluginError {}

/// Capability bits reported in [`BackendInfo::capabilities`].
pub mod capability {
    /// Can wrap and unwrap broker-generated data keys (envelope mode).
    pub const ENVELOPE: u64 = 1;
    /// Can encrypt and decrypt caller data itself (direct mode).
    pub const DIRECT: u64 = 1 << 1;
    /// Can bind a key that already exists in the backend ([`BackendPlugin::bind_key`]).
    pub const BIND_EXISTING: u64 = 1 << 2;
    /// Can create asymmetric keys (some of [`key_type::ASYMMETRIC`](super::key_type::ASYMMETRIC))
    /// and sign and verify with them ([`BackendPlugin::sign`]). A plugin refuses to create a
    /// type it cannot hold with [`ErrorKind::INVALID_REQUEST`](super::ErrorKind) and a message
    /// naming itself and the type.
    pub const SIGN: u64 = 1 << 3;
    /// Makes envelope-mode data keys itself ([`BackendPlugin::generate_data_key`], e.g. AWS
    /// KMS `GenerateDataKey`) instead of wrapping keys the broker generates.
    pub const GENERATE_DATA_KEY: u64 = 1 << 4;
    /// [`BackendPlugin::encrypt_batch_start`], [`BackendPlugin::decrypt_batch_start`] and
    /// [`BackendPlugin::name_tenant`] return without blocking (they queue the work and complete
    /// later, from the plugin's own threads): the host calls them on its async threads instead
    /// of a blocking thread per call, for encryptions and decryptions alike. Added with the
    /// fifth ABI.
    pub const NONBLOCKING: u64 = 1 << 5;
    /// The plugin's keys are software keys in the broker's own process and storage (the
    /// local KEK): material they wrap is already the broker's to hold, so the broker lets
    /// transit keys on such an instance be `exportable` and backed up in plaintext (Vault's
    /// `export` and `backup`). Every other plugin keeps key material where the broker must
    /// never take it from. Added with the fifth ABI, without a new entry point.
    pub const BROKER_HELD: u64 = 1 << 6;
    /// Decrypts with the private key of an RSA key it holds
    /// ([`key_type::RSA_2048`](super::key_type::RSA_2048) and the larger ones), through
    /// the ordinary [`BackendPlugin::decrypt`](super::BackendPlugin::decrypt): the broker encrypts with the version's public
    /// key itself, Vault's `transit/encrypt` on an RSA key. For an RSA key reference the
    /// [`DecryptRequest`](super::DecryptRequest) means:
    /// - `ciphertext`: the raw RSA ciphertext (as long as the modulus);
    /// - `aad`: the padding, by name: [`RSA_PADDING_OAEP_SHA256`](super::RSA_PADDING_OAEP_SHA256)
    ///   (RSAES-OAEP, SHA-256 and MGF1-SHA-256, empty label: Vault's default) or
    ///   [`RSA_PADDING_PKCS1V15`](super::RSA_PADDING_PKCS1V15) (RSAES-PKCS1-v1_5);
    /// - an *empty* `ciphertext` asks whether the instance can decrypt with that padding at
    ///   all: it answers an empty plaintext if it can, otherwise
    ///   [`ErrorKind::INVALID_REQUEST`](super::ErrorKind) with a message naming itself and the
    ///   reason. The broker asks before it encrypts, so it never makes a ciphertext its
    ///   backend cannot decrypt.
    ///
    /// A wrong padding, key or ciphertext answers [`ErrorKind::INVALID_REQUEST`](super::ErrorKind).
    /// Added after the fifth ABI, without changing any request's layout.
    pub const ASYMMETRIC_DECRYPT: u64 = 1 << 7;
    /// Hands the private key of an asymmetric key it created to the broker, and takes one in
    /// ([`BackendPlugin::export_private_key`], [`BackendPlugin::import_private_key`]), as
    /// PKCS #8 DER: Vault's `export/signing-key`, plaintext backups and BYOK import of
    /// asymmetric keys. Only a plugin that also reports [`BROKER_HELD`] may report it (the
    /// local KEK): the broker never asks a plugin whose keys live elsewhere for one. Added
    /// with the sixth ABI.
    pub const PRIVATE_KEY_TRANSFER: u64 = 1 << 8;
}

/// The `aad` of a decrypt request for an RSA key naming RSAES-OAEP with SHA-256 and
/// MGF1-SHA-256 and an empty label (see [`capability::ASYMMETRIC_DECRYPT`]).
pub const RSA_PADDING_OAEP_SHA256: &str = "oaep-sha256";
/// The `aad` of a decrypt request for an RSA key naming RSAES-PKCS1-v1_5 (see
/// [`capability::ASYMMETRIC_DECRYPT`]).
pub const RSA_PADDING_PKCS1V15: &str = "pkcs1v15";

/// Key types the broker asks for in [`CreateKeyRequest::key_type`] and
/// [`BindKeyRequest::key_type`].
pub mod key_type {
    /// A symmetric AES-256 key (GCM with a 96-bit IV), for envelope and direct mode.
    pub const AES256_GCM96: &str = "aes256-gcm96";
    /// RSA with a 2048-bit modulus.
    pub const RSA_2048: &str = "rsa-2048";
    /// RSA with a 3072-bit modulus.
    pub const RSA_3072: &str = "rsa-3072";
    /// RSA with a 4096-bit modulus.
    pub const RSA_4096: &str = "rsa-4096";
    /// ECDSA on NIST P-256.
    pub const ECDSA_P256: &str = "ecdsa-p256";
    /// ECDSA on NIST P-384.
    pub const ECDSA_P384: &str = "ecdsa-p384";
    /// ECDSA on NIST P-521. Its `r ‖ s` is 132 bytes (66 each).
    pub const ECDSA_P521: &str = "ecdsa-p521";
    /// Pure Ed25519 (RFC 8032), which hashes the message itself: a sign or verify request for
    /// it carries the whole message in its `digest` field and [`HASH_NONE`](super::HASH_NONE)
    /// as its `hash_algorithm` (see [`SignRequest`](super::SignRequest)). Its signature is 64
    /// bytes; its public key, like every other, a PEM SubjectPublicKeyInfo (RFC 8410).
    pub const ED25519: &str = "ed25519";
    /// Every asymmetric type, for signing.
    pub const ASYMMETRIC: [&str; 7] = [
        RSA_2048, RSA_3072, RSA_4096, ECDSA_P256, ECDSA_P384, ECDSA_P521, ED25519,
    ];
}

/// What a plugin says about itself.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct BackendInfo {
    /// Plugin name, e.g. `local-kek`.
    pub name: RString,
    /// Plugin version, free form.
    pub version: RString,
    /// Bit set of [`capability`] constants.
    pub capabilities: u64,
    /// Largest plaintext accepted by `encrypt` in direct mode, in bytes.
    pub max_payload: u64,
}

/// Ask the backend for a key owned by one tenant of the broker.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct CreateKeyRequest {
    /// Immutable id of the tenant that owns the key; backends tag the key with it.
    pub tenant_id: RString,
    /// Immutable id of the broker key (one backend key may serve several versions).
    pub key_id: RString,
    /// Key type, e.g. `aes256-gcm96`.
    pub key_type: RString,
}

/// A backend key as the broker stores it: an opaque reference the plugin understands.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct KeyHandle {
    /// Opaque reference, stored by the broker and passed back on every call.
    pub reference: RString,
}

/// Take in a private key as a new key of one tenant ([`capability::PRIVATE_KEY_TRANSFER`]).
/// Not `Debug`-printable beyond its type: it carries key material.
#[repr(C)]
#[derive(StableAbi, Clone, PartialEq, Eq)]
pub struct ImportKeyRequest {
    /// Immutable id of the tenant that owns the key; backends tag the key with it.
    pub tenant_id: RString,
    /// Immutable id of the broker key.
    pub key_id: RString,
    /// An asymmetric key type (one of [`key_type::ASYMMETRIC`]); the key must be of it
    /// exactly (an RSA key of another size is refused).
    pub key_type: RString,
    /// The private key, PKCS #8 DER (`PrivateKeyInfo`; for Ed25519, RFC 8410's). The plugin
    /// wipes its copy once the key is sealed; the host wipes its own.
    pub pkcs8: RVec<u8>,
}

impl std::fmt::Debug for ImportKeyRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportKeyRequest")
            .field("tenant_id", &self.tenant_id)
            .field("key_id", &self.key_id)
            .field("key_type", &self.key_type)
            .finish_non_exhaustive()
    }
}

/// Encrypt (or wrap a data key) under a backend key.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct EncryptRequest {
    /// Tenant on whose behalf the call is made; must match the key's tag.
    pub tenant_id: RString,
    /// The reference returned by `create_key`.
    pub key_reference: RString,
    /// Data to encrypt. Ownership passes to the plugin, which zeroizes it when done.
    pub plaintext: RVec<u8>,
    /// Additional authenticated data; backends without AAD ignore it (the broker's binding
    /// makes up for that).
    pub aad: RVec<u8>,
    /// A 96-bit IV chosen and counted by the broker; a backend that picks its own IV (a
    /// FIPS-mode HSM) returns it inside the ciphertext instead.
    pub iv: RVec<u8>,
}

/// Decrypt (or unwrap a data key) under a backend key.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct DecryptRequest {
    /// Tenant on whose behalf the call is made; must match the key's tag.
    pub tenant_id: RString,
    /// The reference returned by `create_key`.
    pub key_reference: RString,
    /// What `encrypt` returned.
    pub ciphertext: RVec<u8>,
    /// The same AAD as given to `encrypt`.
    pub aad: RVec<u8>,
}

/// Bind a key that already exists in the backend (an HSM object by label or id, a KMS key
/// by id, ARN or alias) to a broker key. The host has already checked that the tenant may
/// bind `backend_key`; the plugin checks that the key exists and has `key_type`, and returns
/// a reference that carries the tenant id like those of created keys.
///
/// Added after the first ABI: older plugins answer [`ErrorKind::INVALID_REQUEST`].
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct BindKeyRequest {
    /// Immutable id of the tenant that binds the key.
    pub tenant_id: RString,
    /// Immutable id of the broker key.
    pub key_id: RString,
    /// The key type the broker expects (see [`key_type`]).
    pub key_type: RString,
    /// The backend's name for the key, in the plugin's own syntax.
    pub backend_key: RString,
}

/// The hash of [`SignRequest::hash_algorithm`], by Vault's names. Not part of the ABI (the
/// request carries the name): a shared reading of it for plugins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    /// `sha2-224`.
    Sha224,
    /// `sha2-256`.
    Sha256,
    /// `sha2-384`.
    Sha384,
    /// `sha2-512`.
    Sha512,
}

impl HashAlgorithm {
    /// Parses Vault's name.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "sha2-224" => Self::Sha224,
            "sha2-256" => Self::Sha256,
            "sha2-384" => Self::Sha384,
            "sha2-512" => Self::Sha512,
            _ => return None,
        })
    }

    /// Digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            Self::Sha224 => 28,
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    /// The hash a sign or verify request names, checked against the length of its digest;
    /// otherwise [`ErrorKind::INVALID_REQUEST`].
    pub fn of_request(name: &str, digest: &[u8]) -> Result<Self, PluginError> {
        let hash = Self::from_name(name).ok_or_else(|| {
            PluginError::invalid_request(format!(
                "hash_algorithm {name:?} is not supported; use sha2-224, sha2-256, sha2-384 \
                 or sha2-512"
            ))
        })?;
        if digest.len() != hash.digest_len() {
            return Err(PluginError::invalid_request(format!(
                "a {name} digest is {} bytes, not {}",
                hash.digest_len(),
                digest.len()
            )));
        }
        Ok(hash)
    }
}

/// The `hash_algorithm` of a sign or verify request for an [`key_type::ED25519`] key: the
/// broker hashes nothing, and `digest` carries the whole message, which pure Ed25519 hashes
/// itself. Never sent for any other type.
pub const HASH_NONE: &str = "none";

/// Sign a digest with an asymmetric key. Added after the first ABI.
///
/// For an [`key_type::ED25519`] key, `digest` is the whole message and `hash_algorithm` is
/// [`HASH_NONE`] (a meaning given to the same fields, not a change of layout).
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct SignRequest {
    /// Tenant on whose behalf the call is made; must match the key's tag.
    pub tenant_id: RString,
    /// The reference returned by `create_key` or `bind_key`.
    pub key_reference: RString,
    /// The digest of the caller's input, computed by the broker with `hash_algorithm`; for
    /// Ed25519 the input itself.
    pub digest: RVec<u8>,
    /// `sha2-224`, `sha2-256`, `sha2-384` or `sha2-512` (Vault's names); [`HASH_NONE`] for
    /// Ed25519.
    pub hash_algorithm: RString,
    /// For RSA keys `pss` (salt length = digest length, MGF1 with the same hash) or
    /// `pkcs1v15`; empty for ECDSA and Ed25519 keys.
    pub signature_algorithm: RString,
}

/// Verify a signature over a digest (for Ed25519, over the message: see [`SignRequest`]).
/// Added after the first ABI.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct VerifyRequest {
    /// Tenant on whose behalf the call is made; must match the key's tag.
    pub tenant_id: RString,
    /// The reference returned by `create_key` or `bind_key`.
    pub key_reference: RString,
    /// The digest of the signed input (for Ed25519, the input itself).
    pub digest: RVec<u8>,
    /// As in [`SignRequest::hash_algorithm`].
    pub hash_algorithm: RString,
    /// As in [`SignRequest::signature_algorithm`].
    pub signature_algorithm: RString,
    /// The signature: RSA as defined by PKCS #1, ECDSA as `r ‖ s`, each the size of the
    /// curve order (IEEE P1363, as PKCS #11 and JWS produce it), Ed25519 as RFC 8032's 64
    /// bytes.
    pub signature: RVec<u8>,
}

/// Ask the backend for a fresh data key, returned in plaintext and wrapped under a backend
/// key. Added after the second ABI.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct GenerateDataKeyRequest {
    /// Tenant on whose behalf the call is made; must match the key's tag.
    pub tenant_id: RString,
    /// The reference returned by `create_key` or `bind_key`.
    pub key_reference: RString,
    /// Additional authenticated data (the broker's binding), as for `encrypt`: `decrypt`
    /// with the same AAD unwraps the key.
    pub aad: RVec<u8>,
    /// Length of the key in bytes (32 for the broker's AES-256 data keys).
    pub length: u32,
}

/// A data key made by the backend.
#[repr(C)]
#[derive(StableAbi, Clone, PartialEq, Eq)]
pub struct DataKey {
    /// The key itself. The host zeroizes it after use.
    pub plaintext: RVec<u8>,
    /// The key wrapped under the backend key: what `decrypt` takes back.
    pub wrapped: RVec<u8>,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("plaintext", &"<redacted>")
            .field("wrapped_len", &self.wrapped.len())
            .finish()
    }
}

/// Result of one operation in a batch.
pub type BatchItem = RResult<RVec<u8>, PluginError>;

/// The host's side of a batch call started with [`BackendPlugin::encrypt_batch_start`] or
/// [`BackendPlugin::decrypt_batch_start`]. Added with the fifth ABI.
#[sabi_trait]
pub trait BatchDone: Send + Sync {
    /// Hands the host one result per request, in order; may be called from any thread. Only
    /// the first call counts. Dropping the handle without calling it fails the whole call.
    #[sabi(last_prefix_field)]
    fn complete(&self, results: RVec<BatchItem>);
}

/// An owned completion handle, passed to the `*_batch_start` methods.
pub type BatchDoneBox = BatchDone_TO<'static, RBox<()>>;

/// A plugin's view of a [`BatchDoneBox`]: completes once, with plain Rust results.
pub struct BatchCompletion(BatchDoneBox);

impl BatchCompletion {
    /// Wraps the host's handle.
    pub fn new(done: BatchDoneBox) -> Self {
        Self(done)
    }

    /// Hands the results to the host (one per request, in order).
    pub fn complete(self, results: Vec<Result<Vec<u8>, PluginError>>) {
        self.0.complete(
            results
                .into_iter()
                .map(|r| r.map(RVec::from).into())
                .collect(),
        );
    }
}

impl std::fmt::Debug for BatchCompletion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BatchCompletion")
    }
}

/// The backend operations, as seen through the ABI. Implement [`Backend`] instead.
#[sabi_trait]
pub trait BackendPlugin: Send + Sync {
    /// Name, version, capabilities, limits.
    fn info(&self) -> RResult<BackendInfo, PluginError>;
    /// Create a key for a tenant, returning its reference.
    fn create_key(&self, request: CreateKeyRequest) -> RResult<KeyHandle, PluginError>;
    /// Destroy a key the broker created (never called for bound keys).
    fn delete_key(&self, tenant_id: RString, key_reference: RString) -> RResult<(), PluginError>;
    /// Encrypt or wrap.
    fn encrypt(&self, request: EncryptRequest) -> RResult<RVec<u8>, PluginError>;
    /// Decrypt or unwrap.
    fn decrypt(&self, request: DecryptRequest) -> RResult<RVec<u8>, PluginError>;
    /// Several encryptions in one call, one result each, in order.
    fn encrypt_batch(&self, requests: RVec<EncryptRequest>) -> RVec<BatchItem>;
    /// Several decryptions in one call, one result each, in order.
    fn decrypt_batch(&self, requests: RVec<DecryptRequest>) -> RVec<BatchItem>;
    /// Whether the backend can serve requests now.
    #[sabi(last_prefix_field)]
    fn health(&self) -> RResult<(), PluginError>;

    // Methods below were added after the first ABI. abi_stable refuses a library whose
    // vtable is shorter than the host's, so a plugin built before them is loaded through
    // the frozen module of its ABI (`v1` to `v5`) and wrapped (`upgrade`): for it, these
    // default bodies run and answer "not supported". New methods go at the end, always with
    // a default body, and the vtable they replace gets a frozen module of its own.

    /// Bind an existing backend key (see [`BindKeyRequest`]).
    fn bind_key(&self, request: BindKeyRequest) -> RResult<KeyHandle, PluginError> {
        let _ = request;
        RResult::RErr(not_supported("binding existing keys"))
    }
    /// Sign a digest; returns the signature in the format described at
    /// [`VerifyRequest::signature`].
    fn sign(&self, request: SignRequest) -> RResult<RVec<u8>, PluginError> {
        let _ = request;
        RResult::RErr(not_supported("signing"))
    }
    /// Verify a signature; `Ok(false)` when it does not match.
    fn verify(&self, request: VerifyRequest) -> RResult<bool, PluginError> {
        let _ = request;
        RResult::RErr(not_supported("verification"))
    }
    /// The public key of an asymmetric key, as a PEM `PUBLIC KEY` (SubjectPublicKeyInfo).
    fn public_key(
        &self,
        tenant_id: RString,
        key_reference: RString,
    ) -> RResult<RString, PluginError> {
        let _ = (tenant_id, key_reference);
        RResult::RErr(not_supported("public keys"))
    }

    // Added after the second ABI (frozen in `v2`).

    /// Make a data key in the backend (see [`GenerateDataKeyRequest`]).
    fn generate_data_key(&self, request: GenerateDataKeyRequest) -> RResult<DataKey, PluginError> {
        let _ = request;
        RResult::RErr(not_supported("generating data keys"))
    }

    // Added after the third ABI (frozen in `v3`).

    /// The instance's live state, for operators: a JSON object as text. Its members are the
    /// plugin's own, except `agents`, which the host gathers from every instance into
    /// `GET /v1/sys/agents` (an array of objects, each with a unique `id`). Like error
    /// messages, it is shown to operators: never put key material or credentials in it.
    /// Plugins without live state answer [`ErrorKind::INVALID_REQUEST`] (the default).
    fn status(&self) -> RResult<RString, PluginError> {
        RResult::RErr(not_supported("status"))
    }
    /// The canonical name of a tenant id (`root` for the root namespace). The host calls it
    /// once per tenant on each instance, before the first call carrying that tenant id; a
    /// tenant's name never changes for its id. For backends whose own access rules name
    /// tenants (a customer agent's allowlist), while every request carries the id.
    fn name_tenant(&self, tenant_id: RString, tenant_name: RString) {
        let _ = (tenant_id, tenant_name);
    }

    // Added after the fourth ABI (frozen in `v4`).

    /// Starts several encryptions; the results go to `done` (see [`BatchDone`]), now or
    /// later. The host calls it instead of `encrypt_batch` only for plugins reporting
    /// [`capability::NONBLOCKING`], on a thread that must not block. The default runs
    /// `encrypt_batch` and completes before returning.
    fn encrypt_batch_start(&self, requests: RVec<EncryptRequest>, done: BatchDoneBox) {
        done.complete(self.encrypt_batch(requests));
    }
    /// Starts several decryptions, as [`BackendPlugin::encrypt_batch_start`].
    fn decrypt_batch_start(&self, requests: RVec<DecryptRequest>, done: BatchDoneBox) {
        done.complete(self.decrypt_batch(requests));
    }

    // Added after the fifth ABI (frozen in `v5`).

    /// The private key of one of the tenant's asymmetric keys, as PKCS #8 DER
    /// ([`capability::PRIVATE_KEY_TRANSFER`]). The host wipes it after use.
    fn export_private_key(
        &self,
        tenant_id: RString,
        key_reference: RString,
    ) -> RResult<RVec<u8>, PluginError> {
        let _ = (tenant_id, key_reference);
        RResult::RErr(not_supported("exporting private keys"))
    }
    /// Takes in a private key as a new key of the tenant, returning its reference
    /// ([`capability::PRIVATE_KEY_TRANSFER`]).
    fn import_private_key(&self, request: ImportKeyRequest) -> RResult<KeyHandle, PluginError> {
        let _ = request;
        RResult::RErr(not_supported("importing private keys"))
    }
}

/// The answer of an operation a plugin does not implement.
pub fn not_supported(what: &str) -> PluginError {
    PluginError::invalid_request(format!("this backend plugin does not support {what}"))
}

/// An owned backend trait object, as returned by a plugin constructor.
pub type BackendBox = BackendPlugin_TO<'static, RBox<()>>;

/// Log levels a plugin can use through [`HostServices::log`].
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogLevel(pub u8);

impl LogLevel {
    /// Something failed.
    pub const ERROR: Self = Self(1);
    /// Something is wrong but service goes on.
    pub const WARN: Self = Self(2);
    /// Normal operation worth recording.
    pub const INFO: Self = Self(3);
    /// Details for troubleshooting.
    pub const DEBUG: Self = Self(4);
}

/// What the host offers a plugin: availability reports and logging.
#[sabi_trait]
pub trait HostServices: Send + Sync + Clone {
    /// The whole instance became unavailable (`available = false`) or available again.
    fn set_instance_available(&self, available: bool, reason: RStr<'_>);
    /// Some keys, by reference, became unavailable or available again.
    fn set_keys_available(
        &self,
        key_references: RSlice<'_, RString>,
        available: bool,
        reason: RStr<'_>,
    );
    /// Write a line to the host's log. Never pass key material.
    #[sabi(last_prefix_field)]
    fn log(&self, level: LogLevel, message: RStr<'_>);
}

/// An owned host handle, given to the plugin constructor; cheap to clone.
pub type HostBox = HostServices_TO<'static, RBox<()>>;

/// Signature of a plugin constructor.
pub type NewBackendFn =
    extern "C" fn(config: RStr<'_>, host: HostBox) -> RResult<BackendBox, PluginError>;

/// The root module a plugin exports (see [`export_backend_plugin!`]).
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    /// Build one backend instance from its configuration (JSON text).
    #[sabi(last_prefix_field)]
    pub new_backend:
        extern "C" fn(config: RStr<'_>, host: HostBox) -> RResult<BackendBox, PluginError>,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "keybroker_backend";
    const NAME: &'static str = "keybroker_backend";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// The plain Rust trait a plugin implements; [`into_ffi`] turns it into a [`BackendBox`].
pub trait Backend: Send + Sync + 'static {
    /// Name, version, capabilities, limits.
    fn info(&self) -> BackendInfo;
    /// Create a key for a tenant.
    fn create_key(&self, request: CreateKeyRequest) -> Result<KeyHandle, PluginError>;
    /// Destroy a key the broker created. The default keeps nothing to destroy.
    fn delete_key(&self, _tenant_id: &str, _key_reference: &str) -> Result<(), PluginError> {
        Ok(())
    }
    /// Encrypt or wrap.
    fn encrypt(&self, request: EncryptRequest) -> Result<Vec<u8>, PluginError>;
    /// Decrypt or unwrap. The returned plaintext is zeroized by the host after use.
    fn decrypt(&self, request: DecryptRequest) -> Result<Vec<u8>, PluginError>;
    /// Whether the backend can serve requests now.
    fn health(&self) -> Result<(), PluginError>;
    /// Bind an existing backend key. Plugins with [`capability::BIND_EXISTING`] override it.
    fn bind_key(&self, _request: BindKeyRequest) -> Result<KeyHandle, PluginError> {
        Err(not_supported("binding existing keys"))
    }
    /// Sign a digest. Plugins with [`capability::SIGN`] override it.
    fn sign(&self, _request: SignRequest) -> Result<Vec<u8>, PluginError> {
        Err(not_supported("signing"))
    }
    /// Verify a signature over a digest; `Ok(false)` when it does not match.
    fn verify(&self, _request: VerifyRequest) -> Result<bool, PluginError> {
        Err(not_supported("verification"))
    }
    /// The PEM public key of an asymmetric key.
    fn public_key(&self, _tenant_id: &str, _key_reference: &str) -> Result<String, PluginError> {
        Err(not_supported("public keys"))
    }
    /// Make a data key. Plugins with [`capability::GENERATE_DATA_KEY`] override it.
    fn generate_data_key(&self, _request: GenerateDataKeyRequest) -> Result<DataKey, PluginError> {
        Err(not_supported("generating data keys"))
    }
    /// The instance's live state as a JSON object (see [`BackendPlugin::status`]). Plugins
    /// with state worth showing operators (connected agents) override it.
    fn status(&self) -> Result<String, PluginError> {
        Err(not_supported("status"))
    }
    /// Learns the canonical name of a tenant id before the first call for it (see
    /// [`BackendPlugin::name_tenant`]). The default ignores it.
    fn name_tenant(&self, _tenant_id: &str, _tenant_name: &str) {}
    /// Starts several encryptions and completes `done` with one result each, in order (see
    /// [`BackendPlugin::encrypt_batch_start`]). Plugins with [`capability::NONBLOCKING`]
    /// override it to queue the work and return at once; the default encrypts one by one
    /// before returning.
    fn encrypt_batch_start(&self, requests: Vec<EncryptRequest>, done: BatchCompletion) {
        done.complete(requests.into_iter().map(|r| self.encrypt(r)).collect());
    }
    /// Starts several decryptions, as [`Backend::encrypt_batch_start`].
    fn decrypt_batch_start(&self, requests: Vec<DecryptRequest>, done: BatchCompletion) {
        done.complete(requests.into_iter().map(|r| self.decrypt(r)).collect());
    }
    /// An asymmetric key's private key as PKCS #8 DER. Plugins with
    /// [`capability::PRIVATE_KEY_TRANSFER`] override it.
    fn export_private_key(
        &self,
        _tenant_id: &str,
        _key_reference: &str,
    ) -> Result<Zeroizing<Vec<u8>>, PluginError> {
        Err(not_supported("exporting private keys"))
    }
    /// Takes in a private key as a new key. Plugins with
    /// [`capability::PRIVATE_KEY_TRANSFER`] override it.
    fn import_private_key(&self, _request: ImportKeyRequest) -> Result<KeyHandle, PluginError> {
        Err(not_supported("importing private keys"))
    }
}

/// Runs `f`, turning a panic into an [`ErrorKind::INTERNAL`] error.
pub fn guard<T>(f: impl FnOnce() -> Result<T, PluginError>) -> RResult<T, PluginError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result.into(),
        Err(_) => RResult::RErr(PluginError::internal("the plugin panicked")),
    }
}

struct Guarded<B>(B);

impl<B: Backend> BackendPlugin for Guarded<B> {
    fn info(&self) -> RResult<BackendInfo, PluginError> {
        guard(|| Ok(self.0.info()))
    }
    fn create_key(&self, request: CreateKeyRequest) -> RResult<KeyHandle, PluginError> {
        guard(|| self.0.create_key(request))
    }
    fn delete_key(&self, tenant_id: RString, key_reference: RString) -> RResult<(), PluginError> {
        guard(|| self.0.delete_key(&tenant_id, &key_reference))
    }
    fn encrypt(&self, request: EncryptRequest) -> RResult<RVec<u8>, PluginError> {
        guard(|| self.0.encrypt(request).map(RVec::from))
    }
    fn decrypt(&self, request: DecryptRequest) -> RResult<RVec<u8>, PluginError> {
        guard(|| self.0.decrypt(request).map(RVec::from))
    }
    fn encrypt_batch(&self, requests: RVec<EncryptRequest>) -> RVec<BatchItem> {
        requests
            .into_iter()
            .map(|request| guard(|| self.0.encrypt(request).map(RVec::from)))
            .collect()
    }
    fn decrypt_batch(&self, requests: RVec<DecryptRequest>) -> RVec<BatchItem> {
        requests
            .into_iter()
            .map(|request| guard(|| self.0.decrypt(request).map(RVec::from)))
            .collect()
    }
    fn health(&self) -> RResult<(), PluginError> {
        guard(|| self.0.health())
    }
    fn bind_key(&self, request: BindKeyRequest) -> RResult<KeyHandle, PluginError> {
        guard(|| self.0.bind_key(request))
    }
    fn sign(&self, request: SignRequest) -> RResult<RVec<u8>, PluginError> {
        guard(|| self.0.sign(request).map(RVec::from))
    }
    fn verify(&self, request: VerifyRequest) -> RResult<bool, PluginError> {
        guard(|| self.0.verify(request))
    }
    fn public_key(
        &self,
        tenant_id: RString,
        key_reference: RString,
    ) -> RResult<RString, PluginError> {
        guard(|| {
            self.0
                .public_key(&tenant_id, &key_reference)
                .map(RString::from)
        })
    }
    fn generate_data_key(&self, request: GenerateDataKeyRequest) -> RResult<DataKey, PluginError> {
        guard(|| self.0.generate_data_key(request))
    }
    fn status(&self) -> RResult<RString, PluginError> {
        guard(|| self.0.status().map(RString::from))
    }
    fn name_tenant(&self, tenant_id: RString, tenant_name: RString) {
        // Nothing to answer: a panic is caught and dropped (the plugin logs its own failures).
        let _ = guard(|| {
            self.0.name_tenant(&tenant_id, &tenant_name);
            Ok(())
        });
    }
    fn encrypt_batch_start(&self, requests: RVec<EncryptRequest>, done: BatchDoneBox) {
        // A panic drops `done` on the way out: the host fails the call.
        let _ = guard(|| {
            self.0
                .encrypt_batch_start(requests.into_vec(), BatchCompletion::new(done));
            Ok(())
        });
    }
    fn decrypt_batch_start(&self, requests: RVec<DecryptRequest>, done: BatchDoneBox) {
        let _ = guard(|| {
            self.0
                .decrypt_batch_start(requests.into_vec(), BatchCompletion::new(done));
            Ok(())
        });
    }
    fn export_private_key(
        &self,
        tenant_id: RString,
        key_reference: RString,
    ) -> RResult<RVec<u8>, PluginError> {
        // The plugin's own copy is wiped; the one crossing the boundary is the host's to wipe.
        guard(|| {
            self.0
                .export_private_key(&tenant_id, &key_reference)
                .map(|der| RVec::from(der.as_slice()))
        })
    }
    fn import_private_key(&self, request: ImportKeyRequest) -> RResult<KeyHandle, PluginError> {
        guard(|| self.0.import_private_key(request))
    }
}

/// Wraps a [`Backend`] into the ABI trait object, with every method under `catch_unwind`.
pub fn into_ffi<B: Backend>(backend: B) -> BackendBox {
    BackendPlugin_TO::from_value(Guarded(backend), sabi_trait::TD_Opaque)
}

/// Runs a plugin constructor under `catch_unwind`; used by [`export_backend_plugin!`] and by
/// hosts that link a plugin in-process.
pub fn construct<B, F>(
    config: RStr<'_>,
    host: HostBox,
    constructor: F,
) -> RResult<BackendBox, PluginError>
where
    B: Backend,
    F: FnOnce(&str, HostBox) -> Result<B, PluginError>,
{
    guard(|| constructor(config.as_str(), host).map(into_ffi))
}

/// Exports a plugin's root module. `$constructor` is a
/// `fn(&str, HostBox) -> Result<impl Backend, PluginError>`.
///
/// The plugin crate must depend on `abi_stable` directly (the export attribute refers to it).
#[macro_export]
macro_rules! export_backend_plugin {
    ($constructor:path) => {
        #[::abi_stable::export_root_module]
        pub fn keybroker_root_module() -> $crate::PluginModRef {
            use ::abi_stable::prefix_type::PrefixTypeTrait;
            $crate::PluginMod {
                new_backend: keybroker_new_backend,
            }
            .leak_into_prefix()
        }

        extern "C" fn keybroker_new_backend(
            config: ::abi_stable::std_types::RStr<'_>,
            host: $crate::HostBox,
        ) -> ::abi_stable::std_types::RResult<$crate::BackendBox, $crate::PluginError> {
            $crate::construct(config, host, $constructor)
        }
    };
}

/// Convenience for plugins: log through the host without building `RStr`s by hand.
pub fn host_log(host: &HostBox, level: LogLevel, message: &str) {
    host.log(level, RStr::from(message));
}

/// For plugins whose backend is a remote service (KMS, Key Vault): tells the host, once per
/// change, when health checks find the service unreachable (an `UNAVAILABLE` error) and when
/// it answers again, logging each change. Only health checks should report: an operation
/// failing for a moment (throttling) must not make the host refuse every call.
#[derive(Debug, Default)]
pub struct AvailabilityReporter {
    unavailable: std::sync::atomic::AtomicBool,
}

impl AvailabilityReporter {
    /// Reports what `result` (a health check's) says of the service, if it changed;
    /// `plugin` prefixes the log lines, `service` names the service ("AWS KMS").
    pub fn observe<T>(
        &self,
        host: &HostBox,
        plugin: &str,
        service: &str,
        result: &Result<T, PluginError>,
    ) {
        use std::sync::atomic::Ordering;
        match result {
            Err(error) if error.kind == ErrorKind::UNAVAILABLE => {
                if !self.unavailable.swap(true, Ordering::SeqCst) {
                    host.set_instance_available(false, error.message.as_str().into());
                    host_log(
                        host,
                        LogLevel::WARN,
                        &format!("{plugin}: unavailable: {error}"),
                    );
                }
            }
            Ok(_) => {
                if self.unavailable.swap(false, Ordering::SeqCst) {
                    let message = format!("{service} answers again");
                    host.set_instance_available(true, message.as_str().into());
                    host_log(host, LogLevel::INFO, &format!("{plugin}: available again"));
                }
            }
            Err(_) => {}
        }
    }
}
