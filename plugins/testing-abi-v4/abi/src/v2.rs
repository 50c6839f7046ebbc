//! The second plugin ABI's backend vtable and root module, frozen: the first ABI plus
//! `bind_key`, `sign`, `verify` and `public_key`.
//!
//! abi_stable refuses a library whose vtable is shorter than the host's (see [`crate::v1`]),
//! so plugins built against this ABI are loaded through this module once the current one
//! has grown, and wrapped with [`upgrade`]: the methods added since answer "not supported".
//!
//! Never edit the items below: they must stay the second ABI's layout.

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
    not_supported, BackendInfo, BatchItem, BindKeyRequest, CreateKeyRequest, DecryptRequest,
    EncryptRequest, HostBox, KeyHandle, PluginError, SignRequest, VerifyRequest,
};

/// The backend operations of the second ABI.
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

    // Methods below were added after the first ABI (frozen in `v1`).

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
}

/// A second-ABI backend trait object.
pub type BackendBox = BackendPlugin_TO<'static, RBox<()>>;

/// The root module of the second ABI.
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

/// A second-ABI backend seen through the current trait; the methods it lacks keep their
/// default bodies ("not supported").
struct Upgraded(BackendBox);

impl crate::BackendPlugin for Upgraded {
    forward_first_abi!();
    forward_second_abi!();
}

/// A second-ABI backend as a current one.
pub fn upgrade(old: BackendBox) -> crate::BackendBox {
    crate::BackendPlugin_TO::from_value(Upgraded(old), TD_Opaque)
}
