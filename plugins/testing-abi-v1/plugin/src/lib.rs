//! `abi-v1-example`: a minimal keybroker backend plugin built against an *earlier* plugin ABI:
//! the frozen copy in `../abi` of the workspace that builds it (`plugins/testing-abi-v1`: the
//! first ABI; `plugins/testing-abi-v2` and `plugins/testing-abi-v3` build this same source
//! against the second and the third). The broker's tests load its `.so` to prove that a
//! plugin built before later ABI additions still loads, works, and answers "not supported"
//! for what it predates. Do not port it to the current ABI: being old is its purpose.
//!
//! Crypto: AES-256-GCM under one 32-byte key from the configuration. Blob
//! `iv(12) ‖ ciphertext ‖ tag(16)`; the IV is the broker's when it gives one, else random.
//! The key reference is bound into the GCM AAD (`u32 length ‖ reference ‖ caller AAD`), so a
//! ciphertext decrypts only under the reference it was made with. References are
//! `v1/<tenant_id>/<32 hex>`, checked against the calling tenant.
//!
//! Configuration (JSON, the drop-in's `[config]` table): `{"key_b64": "<base64 of 32 bytes>"}`.
#![allow(non_local_definitions)]
// `export_backend_plugin!` expands to abi_stable's `#[export_root_module]`, which emits a
// `#[no_mangle]` static and unsafe glue: the FFI edge of this crate, and nothing else.
#![allow(unsafe_code)]

use aes_gcm::{
    aead::{rand_core::RngCore, Aead, KeyInit, OsRng, Payload},
    Aes256Gcm,
};
use base64::{engine::general_purpose::STANDARD, Engine as _};
use keybroker_plugin_abi::{
    capability, host_log, Backend, BackendInfo, CreateKeyRequest, DecryptRequest, EncryptRequest,
    ErrorKind, HostBox, KeyHandle, LogLevel, PluginError,
};
use serde::Deserialize;
use zeroize::{Zeroize, Zeroizing};

/// Plugin name reported by `info()`.
pub const NAME: &str = "abi-v1-example";
/// Version reported by `info()`.
pub const VERSION: &str = "abi-v1";
/// Largest plaintext `encrypt` accepts.
pub const MAX_PAYLOAD: u64 = 65536;
/// The only key type this backend creates.
const KEY_TYPE: &str = "aes256-gcm96";
const KEY_LEN: usize = 32;
const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;
const REFERENCE_PREFIX: &str = "v1/";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    key_b64: String,
}

/// A backend instance: one AES-256-GCM key (zeroized on drop by `aes-gcm`).
pub struct V1Backend {
    cipher: Aes256Gcm,
}

/// Builds an instance from its configuration (JSON).
pub fn new_backend(config: &str, host: HostBox) -> Result<V1Backend, PluginError> {
    let mut config: Config = serde_json::from_str(config)
        .map_err(|error| PluginError::invalid_config(format!("invalid config: {error}")))?;
    let key = STANDARD
        .decode(config.key_b64.trim())
        .map(Zeroizing::new)
        .map_err(|_| PluginError::invalid_config("key_b64: not valid base64"));
    config.key_b64.zeroize();
    let key = key?;
    if key.len() != KEY_LEN {
        return Err(PluginError::invalid_config(format!(
            "key_b64: must decode to {KEY_LEN} bytes, not {}",
            key.len()
        )));
    }
    let cipher = Aes256Gcm::new_from_slice(&key)
        .map_err(|_| PluginError::invalid_config("key_b64: invalid AES-256 key"))?;
    host_log(
        &host,
        LogLevel::INFO,
        &format!("{NAME} plugin {VERSION} ready"),
    );
    Ok(V1Backend { cipher })
}

keybroker_plugin_abi::export_backend_plugin!(new_backend);

/// Refuses a reference that is malformed or belongs to another tenant; the message never
/// names the owner.
fn check_owner(tenant_id: &str, reference: &str) -> Result<(), PluginError> {
    let owner = reference
        .strip_prefix(REFERENCE_PREFIX)
        .and_then(|rest| rest.split_once('/'))
        .filter(|(owner, random)| {
            !owner.is_empty() && random.len() == 32 && random.bytes().all(|b| b.is_ascii_hexdigit())
        })
        .map(|(owner, _)| owner)
        .ok_or_else(|| {
            PluginError::new(
                ErrorKind::KEY_NOT_FOUND,
                "key not found: malformed key reference",
            )
        })?;
    if tenant_id.is_empty() || owner != tenant_id {
        return Err(PluginError::new(
            ErrorKind::KEY_NOT_FOUND,
            "key not found for this tenant",
        ));
    }
    Ok(())
}

/// The GCM AAD: the key reference (length-prefixed) followed by the caller's AAD.
fn bound_aad(reference: &str, aad: &[u8]) -> Result<Vec<u8>, PluginError> {
    let length = u32::try_from(reference.len())
        .map_err(|_| PluginError::invalid_request("key reference too long"))?;
    let mut out = Vec::with_capacity(4 + reference.len() + aad.len());
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(reference.as_bytes());
    out.extend_from_slice(aad);
    Ok(out)
}

/// The broker's IV when it gives one, a random one when it does not.
fn choose_iv(iv: &[u8]) -> Result<[u8; IV_LEN], PluginError> {
    if let Ok(iv) = <[u8; IV_LEN]>::try_from(iv) {
        return Ok(iv);
    }
    if !iv.is_empty() {
        return Err(PluginError::invalid_request(format!(
            "iv must be {IV_LEN} bytes or empty, not {} bytes",
            iv.len()
        )));
    }
    let mut fresh = [0u8; IV_LEN];
    OsRng
        .try_fill_bytes(&mut fresh)
        .map_err(|_| PluginError::internal("the system random number generator failed"))?;
    Ok(fresh)
}

impl V1Backend {
    fn seal(&self, request: &EncryptRequest) -> Result<Vec<u8>, PluginError> {
        check_owner(&request.tenant_id, &request.key_reference)?;
        if request.plaintext.len() as u64 > MAX_PAYLOAD {
            return Err(PluginError::new(
                ErrorKind::PAYLOAD_TOO_LARGE,
                format!("plaintext larger than {MAX_PAYLOAD} bytes"),
            ));
        }
        let iv = choose_iv(&request.iv)?;
        let aad = bound_aad(&request.key_reference, &request.aad)?;
        let sealed = self
            .cipher
            .encrypt(
                (&iv).into(),
                Payload {
                    msg: &request.plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| PluginError::internal("encryption failed"))?;
        let mut blob = Vec::with_capacity(IV_LEN + sealed.len());
        blob.extend_from_slice(&iv);
        blob.extend_from_slice(&sealed);
        Ok(blob)
    }
}

impl Backend for V1Backend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            name: NAME.into(),
            version: VERSION.into(),
            capabilities: capability::ENVELOPE | capability::DIRECT,
            max_payload: MAX_PAYLOAD,
        }
    }

    fn create_key(&self, request: CreateKeyRequest) -> Result<KeyHandle, PluginError> {
        let tenant_id = request.tenant_id.as_str();
        if tenant_id.is_empty() || tenant_id.contains('/') {
            return Err(PluginError::invalid_request(
                "tenant_id must be non-empty and must not contain '/'",
            ));
        }
        if request.key_type.as_str() != KEY_TYPE {
            return Err(PluginError::invalid_request(format!(
                "this backend only creates {KEY_TYPE} keys"
            )));
        }
        let mut random = [0u8; 16];
        OsRng
            .try_fill_bytes(&mut random)
            .map_err(|_| PluginError::internal("the system random number generator failed"))?;
        let hex: String = random.iter().map(|byte| format!("{byte:02x}")).collect();
        Ok(KeyHandle {
            reference: format!("{REFERENCE_PREFIX}{tenant_id}/{hex}").into(),
        })
    }

    fn delete_key(&self, tenant_id: &str, key_reference: &str) -> Result<(), PluginError> {
        // Nothing is stored per key; only the owner may ask.
        check_owner(tenant_id, key_reference)
    }

    fn encrypt(&self, mut request: EncryptRequest) -> Result<Vec<u8>, PluginError> {
        let result = self.seal(&request);
        request.plaintext.as_mut_slice().zeroize();
        result
    }

    fn decrypt(&self, request: DecryptRequest) -> Result<Vec<u8>, PluginError> {
        check_owner(&request.tenant_id, &request.key_reference)?;
        if request.ciphertext.len() < IV_LEN + TAG_LEN {
            return Err(PluginError::invalid_ciphertext(
                "ciphertext shorter than an IV and a tag",
            ));
        }
        let (iv, sealed) = request
            .ciphertext
            .split_first_chunk::<IV_LEN>()
            .ok_or_else(|| PluginError::invalid_ciphertext("ciphertext shorter than an IV"))?;
        let aad = bound_aad(&request.key_reference, &request.aad)?;
        self.cipher
            .decrypt(
                iv.into(),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| PluginError::invalid_ciphertext("message authentication failed"))
    }

    fn health(&self) -> Result<(), PluginError> {
        Ok(())
    }
}
