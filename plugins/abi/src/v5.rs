//! The fifth plugin ABI's backend vtable and root module, frozen: the fourth ABI plus
//! `encrypt_batch_start` and `decrypt_batch_start` (asynchronous batches,
//! `capability::NONBLOCKING`).
//!
//! abi_stable refuses a library whose vtable is shorter than the host's (see [`crate::v1`]),
//! so plugins built against this ABI are loaded through this module once the current one
//! has grown, and wrapped with [`upgrade`]: the methods added since
//! (`export_private_key`, `import_private_key`) keep their default bodies, which answer "not
//! supported".
//!
//! Never edit the items below: they must stay the fifth ABI's layout.

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_trait::TD_Opaque,
    sabi_types::VersionStrings,
    std_types::{RBox, RResult, RStr, RString, RVec},
    StableAbi,
};

use crate::{
    not_supported, BackendInfo, BatchDoneBox, BatchItem, BindKeyRequest, CreateKeyRequest, DataKey,
    DecryptRequest, EncryptRequest, GenerateDataKeyRequest, HostBox, KeyHandle, PluginError,
    SignRequest, VerifyRequest,
};

/// The backend operations of the fifth ABI.
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
    // the frozen module of its ABI (`v1` to `v4`) and wrapped (`upgrade`): for it, these
    // default bodies run and answer "not supported". New methods go at the end, always with
    // a default body, and the vtable they replace gets a frozen module of its own.

    /// Bind an existing backend key (see [`BindKeyRequest`](crate::BindKeyRequest)).
    fn bind_key(&self, request: BindKeyRequest) -> RResult<KeyHandle, PluginError> {
        let _ = request;
        RResult::RErr(not_supported("binding existing keys"))
    }
    /// Sign a digest; returns the signature in the format described at
    /// [`VerifyRequest::signature`](crate::VerifyRequest::signature).
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

    /// Make a data key in the backend (see [`GenerateDataKeyRequest`](crate::GenerateDataKeyRequest)).
    fn generate_data_key(&self, request: GenerateDataKeyRequest) -> RResult<DataKey, PluginError> {
        let _ = request;
        RResult::RErr(not_supported("generating data keys"))
    }

    // Added after the third ABI (frozen in `v3`).

    /// The instance's live state, for operators: a JSON object as text. Its members are the
    /// plugin's own, except `agents`, which the host gathers from every instance into
    /// `GET /v1/sys/agents` (an array of objects, each with a unique `id`). Like error
    /// messages, it is shown to operators: never put key material or credentials in it.
    /// Plugins without live state answer [`ErrorKind::INVALID_REQUEST`](crate::ErrorKind::INVALID_REQUEST) (the default).
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

    /// Starts several encryptions; the results go to `done` (see [`BatchDone`](crate::BatchDone)), now or
    /// later. The host calls it instead of `encrypt_batch` only for plugins reporting
    /// [`capability::NONBLOCKING`](crate::capability::NONBLOCKING), on a thread that must not block. The default runs
    /// `encrypt_batch` and completes before returning.
    fn encrypt_batch_start(&self, requests: RVec<EncryptRequest>, done: BatchDoneBox) {
        done.complete(self.encrypt_batch(requests));
    }
    /// Starts several decryptions, as `encrypt_batch_start`.
    fn decrypt_batch_start(&self, requests: RVec<DecryptRequest>, done: BatchDoneBox) {
        done.complete(self.decrypt_batch(requests));
    }
}

/// A fifth-ABI backend trait object.
pub type BackendBox = BackendPlugin_TO<'static, RBox<()>>;

/// The root module of the fifth ABI.
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

/// A fifth-ABI backend seen through the current trait; the methods it lacks keep their
/// default bodies ("not supported").
struct Upgraded(BackendBox);

impl crate::BackendPlugin for Upgraded {
    forward_first_abi!();
    forward_second_abi!();
    fn generate_data_key(&self, request: GenerateDataKeyRequest) -> RResult<DataKey, PluginError> {
        self.0.generate_data_key(request)
    }
    fn status(&self) -> RResult<RString, PluginError> {
        self.0.status()
    }
    fn name_tenant(&self, tenant_id: RString, tenant_name: RString) {
        self.0.name_tenant(tenant_id, tenant_name)
    }
    fn encrypt_batch_start(&self, requests: RVec<EncryptRequest>, done: BatchDoneBox) {
        self.0.encrypt_batch_start(requests, done)
    }
    fn decrypt_batch_start(&self, requests: RVec<DecryptRequest>, done: BatchDoneBox) {
        self.0.decrypt_batch_start(requests, done)
    }
}

/// A fifth-ABI backend as a current one.
pub fn upgrade(old: BackendBox) -> crate::BackendBox {
    crate::BackendPlugin_TO::from_value(Upgraded(old), TD_Opaque)
}
