//! Binding keys that already exist in the backend.

use keybroker_plugin_abi::{
    abi_stable::std_types::RVec, capability, key_type, BackendBox, BindKeyRequest, ErrorKind,
    SignRequest, VerifyRequest,
};
use sha2::{Digest as _, Sha256};

use crate::scope::{decrypt_request, encrypt_request, random_iv, random_uuid, rstring, Scope};
use crate::Options;

/// With [`capability::BIND_EXISTING`]: every key of [`Options::bindable_keys`] binds for
/// tenant A, works (an encryption round trip, or a signature that verifies), and is refused
/// to tenant B; a backend key that does not exist cannot be bound. Without it: `bind_key`
/// is `INVALID_REQUEST`.
pub fn check_bind_existing(backend: &BackendBox, options: &Options) {
    let scope = Scope::for_backend(backend, "bind_key");
    let info = scope.ok("info()", backend.info());
    let (a, b) = (options.tenant_a.as_str(), options.tenant_b.as_str());
    let request = |backend_key: &str, key_type: &str| BindKeyRequest {
        tenant_id: rstring(a),
        key_id: rstring(&random_uuid()),
        key_type: rstring(key_type),
        backend_key: rstring(backend_key),
    };
    if info.capabilities & capability::BIND_EXISTING == 0 {
        scope.fails(
            "bind_key without the BIND_EXISTING capability",
            ErrorKind::INVALID_REQUEST,
            backend.bind_key(request("conformance-key", key_type::AES256_GCM96)),
        );
        return;
    }
    scope.check(
        !options.bindable_keys.is_empty(),
        "Options::bindable_keys to name at least one existing key, since the plugin reports \
         BIND_EXISTING",
    );
    for bindable in &options.bindable_keys {
        let scope = Scope::new(
            &info.name,
            format!(
                "bound key {:?} of type {}",
                bindable.backend_key, bindable.key_type
            ),
        );
        let reference = scope
            .ok(
                "bind_key for tenant A",
                backend.bind_key(request(&bindable.backend_key, &bindable.key_type)),
            )
            .reference
            .into_string();
        if bindable.key_type == key_type::AES256_GCM96 {
            let ciphertext = scope.ok(
                "encrypt",
                backend.encrypt(encrypt_request(
                    a,
                    &reference,
                    b"bound",
                    b"aad",
                    &random_iv(),
                )),
            );
            let plaintext = scope.ok(
                "decrypt",
                backend.decrypt(decrypt_request(a, &reference, &ciphertext, b"aad")),
            );
            scope.check(plaintext.as_slice() == b"bound", "a round trip");
            scope.not_found_for(
                "decrypt as tenant B",
                a,
                backend.decrypt(decrypt_request(b, &reference, &ciphertext, b"aad")),
            );
        } else {
            let digest = RVec::from(Sha256::digest(b"bound").to_vec());
            let scheme = if bindable.key_type.starts_with("rsa") {
                "pss"
            } else {
                ""
            };
            let sign = |tenant: &str| SignRequest {
                tenant_id: rstring(tenant),
                key_reference: rstring(&reference),
                digest: digest.clone(),
                hash_algorithm: rstring("sha2-256"),
                signature_algorithm: rstring(scheme),
            };
            let signature = scope.ok("sign", backend.sign(sign(a)));
            let valid = scope.ok(
                "verify",
                backend.verify(VerifyRequest {
                    tenant_id: rstring(a),
                    key_reference: rstring(&reference),
                    digest: digest.clone(),
                    hash_algorithm: rstring("sha2-256"),
                    signature_algorithm: rstring(scheme),
                    signature,
                }),
            );
            scope.check(valid, "verify to accept the bound key's signature");
            scope.ok(
                "public_key",
                backend.public_key(rstring(a), rstring(&reference)),
            );
            scope.not_found_for("sign as tenant B", a, backend.sign(sign(b)));
        }
    }
    let missing = format!("keybroker-conformance-missing-{}", random_uuid());
    match backend
        .bind_key(request(&missing, key_type::AES256_GCM96))
        .into_result()
    {
        Ok(_) => panic!(
            "conformance: plugin {}, bind_key: binding the backend key {missing:?}, which does \
             not exist: expected error KEY_NOT_FOUND or INVALID_REQUEST, got success",
            info.name
        ),
        Err(error) => scope.check(
            matches!(
                error.kind,
                ErrorKind::KEY_NOT_FOUND | ErrorKind::INVALID_REQUEST
            ),
            format!(
                "binding a backend key that does not exist to fail with KEY_NOT_FOUND or \
                 INVALID_REQUEST, got {} ({:?})",
                crate::scope::kind_name(error.kind),
                error.message.as_str()
            ),
        ),
    }
}
