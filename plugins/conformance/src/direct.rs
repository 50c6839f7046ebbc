//! In-process calls on a plugin's own backend type (the `Backend` trait, without the FFI
//! layer), for unit tests that also reach into the instance: the same one-line calls as
//! [`crate::calls`], each returning the plugin's error for the test to check.

use keybroker_plugin_abi::{
    abi_stable::std_types::RVec, Backend, CreateKeyRequest, DecryptRequest, EncryptRequest,
    PluginError, SignRequest, VerifyRequest,
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

/// Signs `digest` (of `hash`, e.g. `sha2-256`) with `reference` and `algorithm` (`pss`,
/// `pkcs1v15`, or "" for ECDSA).
pub fn sign(
    backend: &impl Backend,
    tenant: &str,
    reference: &str,
    digest: &[u8],
    hash: &str,
    algorithm: &str,
) -> Result<Vec<u8>, PluginError> {
    backend.sign(SignRequest {
        tenant_id: tenant.into(),
        key_reference: reference.into(),
        digest: RVec::from(digest),
        hash_algorithm: hash.into(),
        signature_algorithm: algorithm.into(),
    })
}

/// Verifies `signature` over `digest` (see [`sign`]).
pub fn verify(
    backend: &impl Backend,
    tenant: &str,
    reference: &str,
    digest: &[u8],
    hash: &str,
    algorithm: &str,
    signature: &[u8],
) -> Result<bool, PluginError> {
    backend.verify(VerifyRequest {
        tenant_id: tenant.into(),
        key_reference: reference.into(),
        digest: RVec::from(digest),
        hash_algorithm: hash.into(),
        signature_algorithm: algorithm.into(),
        signature: RVec::from(signature),
    })
}
