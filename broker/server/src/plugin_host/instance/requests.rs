//! Core requests translated to the plugin ABI's (the tenant by id, buffers as `RVec`), and
//! tenant naming: the plugin learns a tenant's name before the first call carrying its id.

use std::{
    collections::HashSet,
    sync::{Arc, RwLock},
};

use abi_stable::std_types::{RString, RVec};
use keybroker_core::{
    backend::{BackendDecrypt, BackendEncrypt, BackendSign},
    Tenant, TenantId,
};
use keybroker_plugin_abi::{
    BackendBox, DecryptRequest, EncryptRequest, SignRequest, VerifyRequest,
};
use zeroize::{Zeroize, Zeroizing};

use super::Instance;

/// A tenant whose name the plugin has not been told yet: told on the blocking thread, just
/// before the call that carries its id, then remembered. Two first calls racing may both
/// tell it; names never change for an id, so telling twice is harmless.
pub(super) struct Naming {
    id: TenantId,
    id_text: RString,
    name: RString,
    named_tenants: Arc<RwLock<HashSet<TenantId>>>,
}

impl Naming {
    /// Tells the plugin the tenant's name and remembers that it was told.
    pub(super) fn tell(self, backend: &BackendBox) {
        backend.name_tenant(self.id_text, self.name);
        if let Ok(mut named) = self.named_tenants.write() {
            named.insert(self.id);
        }
    }
}

impl Instance {
    /// The name of `tenant` to tell the plugin before a call carrying its id, unless told
    /// already. The common case (told) takes a read lock and allocates nothing.
    pub(super) fn naming(&self, tenant: &Tenant) -> Option<Naming> {
        let named = self
            .named_tenants
            .read()
            .is_ok_and(|named| named.contains(&tenant.id));
        (!named).then(|| Naming {
            id: tenant.id,
            id_text: RString::from(tenant.id.to_string()),
            name: RString::from(&*tenant.name),
            named_tenants: self.named_tenants.clone(),
        })
    }
}

/// The ABI form of an encryption.
pub(super) fn encrypt_request(tenant: &Tenant, request: &BackendEncrypt<'_>) -> EncryptRequest {
    EncryptRequest {
        tenant_id: RString::from(tenant.id.to_string()),
        key_reference: RString::from(request.reference),
        plaintext: RVec::from(request.plaintext),
        aad: RVec::from(request.aad),
        iv: RVec::from(&request.iv[..]),
    }
}

/// The ABI form of a decryption.
pub(super) fn decrypt_request(tenant: &Tenant, request: &BackendDecrypt<'_>) -> DecryptRequest {
    DecryptRequest {
        tenant_id: RString::from(tenant.id.to_string()),
        key_reference: RString::from(request.reference),
        ciphertext: RVec::from(request.ciphertext),
        aad: RVec::from(request.aad),
    }
}

/// The ABI form of a signature.
pub(super) fn sign_request(tenant: &Tenant, request: &BackendSign<'_>) -> SignRequest {
    SignRequest {
        tenant_id: RString::from(tenant.id.to_string()),
        key_reference: RString::from(request.reference),
        digest: RVec::from(request.digest),
        hash_algorithm: RString::from(request.hash_algorithm),
        signature_algorithm: RString::from(request.signature_algorithm),
    }
}

/// A verification request carrying a sign request's fields (the signature is set apart).
pub(super) fn verify_fields(sign: SignRequest) -> VerifyRequest {
    VerifyRequest {
        tenant_id: sign.tenant_id,
        key_reference: sign.key_reference,
        digest: sign.digest,
        hash_algorithm: sign.hash_algorithm,
        signature_algorithm: sign.signature_algorithm,
        signature: RVec::new(),
    }
}

/// Takes a plaintext out of an `RVec`, zeroizing the plugin-allocated buffer.
pub(super) fn take_secret(mut value: RVec<u8>) -> Zeroizing<Vec<u8>> {
    let out = Zeroizing::new(value.as_slice().to_vec());
    value.as_mut_slice().zeroize();
    out
}
