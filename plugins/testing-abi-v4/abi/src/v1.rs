//! The first plugin ABI's backend vtable and root module, frozen.
//!
//! abi_stable checks prefix types one way only: a library may have *more* fields than the
//! host knows (a newer plugin in an older host), never fewer. So the methods added after the
//! first ABI (`bind_key`, `sign`, `verify`, `public_key`) make the current [`PluginModRef`]
//! refuse a plugin built before them. The host loads such a plugin through this module
//! instead — the same type names, package and version as the first ABI, so its layout check
//! passes — and wraps its backend with [`upgrade`] into the current [`BackendBox`], whose
//! later methods answer "not supported".
//!
//! Never edit the items below: they must stay byte-for-byte the first ABI's layout. Every
//! later change to the vtable, the root module or [`HostServices`](crate::HostServices)
//! needs a frozen module like this one for the version it replaces.
//!
//! [`PluginModRef`]: crate::PluginModRef
//! [`BackendBox`]: crate::BackendBox

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
    BackendInfo, BatchItem, CreateKeyRequest, DecryptRequest, EncryptRequest, HostBox, KeyHandle,
    PluginError,
};

/// The backend operations of the first ABI.
#[sabi_trait]
pub trait BackendPlugin: Send + Sync {
    /// Name, version, capabilities, limits.
    fn info(&self) -> RResult<BackendInfo, PluginError>;
    /// Create a key for a tenant, returning its reference.
    fn create_key(&self, request: CreateKeyRequest) -> RResult<KeyHandle, PluginError>;
    /// Destroy a key the broker created.
    fn delete_key(&self, tenant_id: RString, key_reference: RString) -> RResult<(), PluginError>;
    /// Encrypt or wrap.
    fn encrypt(&self, request: EncryptRequest) -> RResult<RVec<u8>, PluginError>;
    /// Decrypt or unwrap.
    fn decrypt(&self, request: DecryptRequest) -> RResult<RVec<u8>, PluginError>;
    /// Several encryptions in one call.
    fn encrypt_batch(&self, requests: RVec<EncryptRequest>) -> RVec<BatchItem>;
    /// Several decryptions in one call.
    fn decrypt_batch(&self, requests: RVec<DecryptRequest>) -> RVec<BatchItem>;
    /// Whether the backend can serve requests now.
    #[sabi(last_prefix_field)]
    fn health(&self) -> RResult<(), PluginError>;
}

/// A first-ABI backend trait object.
pub type BackendBox = BackendPlugin_TO<'static, RBox<()>>;

/// The root module of the first ABI.
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

/// A first-ABI backend seen through the current trait; the methods it lacks keep their
/// default bodies ("not supported").
struct Upgraded(BackendBox);

impl crate::BackendPlugin for Upgraded {
    forward_first_abi!();
}

/// A first-ABI backend as a current one.
pub fn upgrade(old: BackendBox) -> crate::BackendBox {
    crate::BackendPlugin_TO::from_value(Upgraded(old), TD_Opaque)
}
