//! Small pieces of the ABI's entry points that every plugin writes the same way: what
//! `info()` answers, an `encrypt` that wipes the request's plaintext once used, and the
//! refusal of a key type the backend cannot hold.

use keybroker_plugin_abi::{BackendInfo, EncryptRequest, PluginError};
use zeroize::Zeroize as _;

/// What `info()` answers: the plugin's `name`, its `version` (pass
/// `env!("CARGO_PKG_VERSION")` of the plugin crate), its bit set of `capabilities` and the
/// largest direct-mode plaintext.
pub fn backend_info(name: &str, version: &str, capabilities: u64, max_payload: u64) -> BackendInfo {
    BackendInfo {
        name: name.into(),
        version: version.into(),
        capabilities,
        max_payload,
    }
}

/// Runs `encrypt` on `request`, then wipes the request's plaintext (the host hands it over;
/// no copy of it outlives the call), whatever `encrypt` answered.
pub fn encrypt_then_wipe<T>(
    mut request: EncryptRequest,
    encrypt: impl FnOnce(&EncryptRequest) -> T,
) -> T {
    let result = encrypt(&request);
    request.plaintext.as_mut_slice().zeroize();
    result
}

/// `create_key` (or `bind_key`) refusing a key type that the backend itself cannot hold:
/// `INVALID_REQUEST` (a 400 at the broker), naming the plugin, the type, and why (e.g. "AWS
/// KMS has no Ed25519 key spec").
pub fn unsupported_key_type(plugin: &str, key_type: &str, reason: &str) -> PluginError {
    PluginError::invalid_request(format!(
        "backend {plugin} cannot hold {key_type} keys: {reason}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keybroker_plugin_abi::abi_stable::std_types::RVec;

    #[test]
    fn unsupported_types_name_the_backend_and_the_type() {
        let error = unsupported_key_type("aws-kms", "ed25519", "no such key spec");
        assert_eq!(error.kind, keybroker_plugin_abi::ErrorKind::INVALID_REQUEST);
        assert_eq!(
            error.message.as_str(),
            "backend aws-kms cannot hold ed25519 keys: no such key spec"
        );
    }

    #[test]
    fn info_and_wiping() {
        let info = backend_info("p", "1.2.3", 5, 64);
        assert_eq!((info.name.as_str(), info.version.as_str()), ("p", "1.2.3"));
        assert_eq!((info.capabilities, info.max_payload), (5, 64));
        let request = EncryptRequest {
            tenant_id: "t".into(),
            key_reference: "k".into(),
            plaintext: RVec::from(&b"secret"[..]),
            aad: RVec::new(),
            iv: RVec::new(),
        };
        let seen = encrypt_then_wipe(request, |request| request.plaintext.to_vec());
        assert_eq!(seen, b"secret");
    }
}
