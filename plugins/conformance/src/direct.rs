//! In-process calls on a plugin's own backend type (the `Backend` trait, without the FFI
//! layer), for unit tests that also reach into the instance: the same one-line calls as
//! [`crate::calls`], each returning the plugin's error for the test to check.

use keybroker_plugin_abi::{
    abi_stable::std_types::RVec, Backend, CreateKeyRequest, DecryptRequest, EncryptRequest,
    PluginError,
};

/// Creates a key of `key_type` with key id `key-1` for `tenant`; panics if the plugin
/// refuses. Returns the reference.
#[track_caller]
pub fn create(backend: &impl Backend, tenant: &str, key_type: &str) -> String {
    backend
        .create_key(CreateKeyRequest {
            tenant_id: tenant.into(),
            key_id: "key-1".into(),
            key_type: key_type.into(),
        })
        .unwrap_or_else(|error| panic!("create_key {key_type}: {error}"))
        .reference
        .into_string()
}

/// Encrypts (wraps) `plaintext` under `reference` with `aad` and the caller's `iv`.
pub fn encrypt(
    backend: &impl Backend,
    tenant: &str,
    reference: &str,
    plaintext: &[u8],
    aad: &[u8],
    iv: &[u8],
) -> Result<Vec<u8>, PluginError> {
    backend.encrypt(EncryptRequest {
        tenant_id: tenant.into(),
        key_reference: reference.into(),
        plaintext: RVec::from(plaintext),
        aad: RVec::from(aad),
        iv: RVec::from(iv),
    })
}

/// Decrypts (unwraps) `ciphertext` under `reference` with `aad`.
pub fn decrypt(
    backend: &impl Backend,
    tenant: &str,
    reference: &str,
    ciphertext: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, PluginError> {
    backend.decrypt(DecryptRequest {
        tenant_id: tenant.into(),
        key_reference: reference.into(),
        ciphertext: RVec::from(ciphertext),
        aad: RVec::from(aad),
    })
}
