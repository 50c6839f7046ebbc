//! XKS proxy API v1 §Decrypt: AES-256-GCM under the agent's key (in memory, or inside the
//! token for an HSM key), the tag checked over the ciphertext and AAD before any plaintext
//! is released.

use aes_gcm::aead::AeadInPlace as _;
use aes_gcm::{Nonce, Tag};
use keybroker_agent_protocol::xks::{DecryptRequest, DecryptResponse, EncryptionAlgorithm};
use keybroker_agent_protocol::SecretBytes;
use zeroize::Zeroizing;

use super::{Refused, IV_BYTES, MAX_AAD_BYTES, MAX_PLAINTEXT_BYTES, TAG_BYTES};
use crate::keys::StoredKey;

pub(super) fn decrypt(
    key: &StoredKey,
    request: &DecryptRequest,
) -> Result<DecryptResponse, Refused> {
    match request.encryption_algorithm {
        EncryptionAlgorithm::AesGcm => {}
    }
    // Malformed fields are the caller's mistake (ValidationException); well-formed fields
    // that do not authenticate are a bad ciphertext (InvalidCiphertextException).
    if request.initialization_vector.len() != IV_BYTES {
        return Err(Refused::invalid(
            "initializationVector must be 12 bytes (the IV length this agent's encrypt uses)",
        ));
    }
    if request.authentication_tag.len() != TAG_BYTES {
        return Err(Refused::invalid("authenticationTag must be 16 bytes"));
    }
    if request.ciphertext.len() > MAX_PLAINTEXT_BYTES {
        return Err(Refused::invalid(
            "ciphertext is longer than 4300 bytes, the XKS limit",
        ));
    }
    let aad = request.additional_authenticated_data.as_deref();
    if aad.is_some_and(|aad| aad.len() > MAX_AAD_BYTES) {
        return Err(Refused::invalid(
            "additionalAuthenticatedData is longer than 8192 bytes, the XKS limit",
        ));
    }
    // This agent's encrypt returns no ciphertext metadata, so a ciphertext that comes with
    // some was not made by it.
    if request
        .ciphertext_metadata
        .as_deref()
        .is_some_and(|metadata| !metadata.is_empty())
    {
        return Err(Refused::invalid_ciphertext());
    }
    let buffer = match key {
        StoredKey::Software(key) => {
            let mut buffer = Zeroizing::new(request.ciphertext.clone());
            key.cipher()
                .decrypt_in_place_detached(
                    Nonce::from_slice(&request.initialization_vector),
                    aad.unwrap_or_default(),
                    &mut buffer,
                    Tag::from_slice(&request.authentication_tag),
                )
                .map_err(|_| Refused::invalid_ciphertext())?;
            buffer
        }
        StoredKey::Hsm(key) => key
            .decrypt(
                &request.initialization_vector,
                &request.ciphertext,
                &request.authentication_tag,
                aad.unwrap_or_default(),
            )
            .map_err(Refused::from_hsm)?,
    };
    Ok(DecryptResponse {
        plaintext: SecretBytes::from(buffer),
    })
}
