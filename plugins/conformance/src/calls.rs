//! One-line calls through the ABI for a plugin's own tests (each panics or returns the
//! plugin's error as the test needs), so every plugin's tests speak the same way.

use keybroker_plugin_abi::{
    abi_stable::std_types::{RString, RVec},
    BackendBox, BindKeyRequest, CreateKeyRequest, DecryptRequest, EncryptRequest, ErrorKind,
    PluginError,
};

/// An ABI string.
pub fn rstring(text: &str) -> RString {
    RString::from(text)
}

/// Creates a key with the broker's key id `key_id`; panics if the plugin refuses.
pub fn create_with_id(backend: &BackendBox, tenant: &str, key_id: &str, key_type: &str) -> String {
    backend
        .create_key(CreateKeyRequest {
            tenant_id: rstring(tenant),
            key_id: rstring(key_id),
            key_type: rstring(key_type),
        })
        .into_result()
        .unwrap_or_else(|error| panic!("create_key {key_type}: {error}"))
        .reference
        .into_string()
}

/// Creates a key with key id `key-<key_type>`; panics if the plugin refuses.
pub fn create(backend: &BackendBox, tenant: &str, key_type: &str) -> String {
    create_with_id(backend, tenant, &format!("key-{key_type}"), key_type)
}

/// An encryption request (a zero IV: the plugins that take the broker's IV get a valid one
/// from the conformance suite; these tests only need the call).
pub fn encrypt_request(
    tenant: &str,
    reference: &str,
    plaintext: &[u8],
    aad: &[u8],
) -> EncryptRequest {
    EncryptRequest {
        tenant_id: rstring(tenant),
        key_reference: rstring(reference),
        plaintext: RVec::from(plaintext),
        aad: RVec::from(aad),
        iv: RVec::from(vec![0u8; 12]),
    }
}

/// Encrypts (wraps).
pub fn encrypt(
    backend: &BackendBox,
    tenant: &str,
    reference: &str,
    plaintext: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, PluginError> {
    backend
        .encrypt(encrypt_request(tenant, reference, plaintext, aad))
        .into_result()
        .map(RVec::into_vec)
}

/// Decrypts (unwraps).
pub fn decrypt(
    backend: &BackendBox,
    tenant: &str,
    reference: &str,
    ciphertext: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, PluginError> {
    backend
        .decrypt(DecryptRequest {
            tenant_id: rstring(tenant),
            key_reference: rstring(reference),
            ciphertext: RVec::from(ciphertext),
            aad: RVec::from(aad),
        })
        .into_result()
        .map(RVec::into_vec)
}

/// Binds `backend_key` for `tenant` as key id `bound`; returns the reference.
pub fn bind(
    backend: &BackendBox,
    tenant: &str,
    backend_key: &str,
    key_type: &str,
) -> Result<String, PluginError> {
    backend
        .bind_key(BindKeyRequest {
            tenant_id: rstring(tenant),
            key_id: rstring("bound"),
            key_type: rstring(key_type),
            backend_key: rstring(backend_key),
        })
        .into_result()
        .map(|handle| handle.reference.into_string())
}

/// Asserts an error of `kind` whose message contains `contains`; returns it.
#[track_caller]
pub fn assert_error<T: std::fmt::Debug>(
    result: Result<T, PluginError>,
    kind: ErrorKind,
    contains: &str,
) -> PluginError {
    let error = result.expect_err("expected an error");
    assert_eq!(error.kind, kind, "{error}");
    assert!(
        error.message.contains(contains),
        "{error:?} should contain {contains:?}"
    );
    error
}
