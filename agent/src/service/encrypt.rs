//! XKS proxy API v1 §Encrypt: AES-256-GCM under the agent's key, with an IV the agent draws
//! (the spec has the proxy choose it) — in the agent's memory for a software key, inside the
//! token for an HSM key.

use aes_gcm::aead::AeadInPlace as _;
use aes_gcm::Nonce;
use keybroker_agent_protocol::xks::{EncryptRequest, EncryptResponse, EncryptionAlgorithm};
use rand::RngCore as _;
use zeroize::Zeroizing;

use super::{Refused, IV_BYTES, MAX_AAD_BYTES, MAX_PLAINTEXT_BYTES};
use crate::hsm::Sealed;
use crate::keys::{AgentKey, StoredKey};

pub(super) fn encrypt(
    key: &StoredKey,
    request: &EncryptRequest,
) -> Result<EncryptResponse, Refused> {
    match request.encryption_algorithm {
        EncryptionAlgorithm::AesGcm => {}
    }
    if request.plaintext.len() > MAX_PLAINTEXT_BYTES {
        return Err(Refused::invalid(
            "plaintext is longer than 4300 bytes, the XKS limit",
        ));
    }
    let aad = request.additional_authenticated_data.as_deref();
    if aad.is_some_and(|aad| aad.len() > MAX_AAD_BYTES) {
        return Err(Refused::invalid(
            "additionalAuthenticatedData is longer than 8192 bytes, the XKS limit",
        ));
    }
    let plaintext = request.plaintext.expose();
    let aad_bytes = aad.unwrap_or_default();
    let sealed = match key {
        StoredKey::Software(key) => encrypt_in_memory(key, plaintext, aad_bytes)?,
        // The agent draws the IV for the token as for its own keys.
        StoredKey::Hsm(key) => key
            .encrypt(plaintext, aad_bytes)
            .map_err(Refused::from_hsm)?,
    };
    let mut response = EncryptResponse {
        authentication_tag: sealed.tag,
        ciphertext: sealed.ciphertext,
        initialization_vector: sealed.iv,
        ciphertext_metadata: None,
        ciphertext_data_integrity_value: None,
    };
    // v1 knows one algorithm (SHA_256): asking at all means asking for it.
    if request.ciphertext_data_integrity_value_algorithm.is_some() {
        response.ciphertext_data_integrity_value =
            Some(response.compute_data_integrity_value(aad).to_vec());
    }
    Ok(response)
}

fn encrypt_in_memory(key: &AgentKey, plaintext: &[u8], aad: &[u8]) -> Result<Sealed, Refused> {
    // A fresh random 96-bit IV per call: with at most a few billion encryptions per key the
    // chance of a repeat stays far below the 2^-32 that NIST SP 800-38D allows.
    let mut iv = [0u8; IV_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut iv);
    // Encrypted in place; wiped if encryption fails while it still holds plaintext.
    let mut buffer = Zeroizing::new(plaintext.to_vec());
    let tag = key
        .cipher()
        .encrypt_in_place_detached(Nonce::from_slice(&iv), aad, &mut buffer)
        .map_err(|_| Refused::internal())?;
    Ok(Sealed {
        iv: iv.to_vec(),
        ciphertext: std::mem::take(&mut *buffer),
        tag: tag.to_vec(),
    })
}
