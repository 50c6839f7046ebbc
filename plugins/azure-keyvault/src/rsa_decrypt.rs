//! Decryption with a Key Vault RSA key (`capability::ASYMMETRIC_DECRYPT`): the broker
//! encrypted with the version's public key, and the decrypt request's AAD names the padding,
//! which becomes Key Vault's algorithm: `oaep-sha256` is `RSA-OAEP-256`, `pkcs1v15` is
//! `RSA1_5`. Key Vault's `decrypt` runs on the key version whose public key the instance
//! handed out. The key's `key_ops` must allow `decrypt` (keys this plugin creates for RSA
//! types do); an empty ciphertext only asks whether they do.

use azure_core::http::RequestContent;
use azure_security_keyvault_keys::models::{EncryptionAlgorithm, KeyOperationParameters};
use keybroker_plugin_abi::{
    DecryptRequest, PluginError, RSA_PADDING_OAEP_SHA256, RSA_PADDING_PKCS1V15,
};

use crate::{
    backend::{AzureKeyVaultBackend, NAME},
    error::{from_azure, service_error},
    key_kind::KeyKind,
};

/// Key Vault's algorithm for the padding a decrypt request's AAD names, if it names one.
pub(crate) fn algorithm(aad: &[u8]) -> Option<EncryptionAlgorithm> {
    if aad == RSA_PADDING_OAEP_SHA256.as_bytes() {
        Some(EncryptionAlgorithm::RsaOaep256)
    } else if aad == RSA_PADDING_PKCS1V15.as_bytes() {
        Some(EncryptionAlgorithm::Rsa1_5)
    } else {
        None
    }
}

fn failed() -> PluginError {
    PluginError::invalid_request("RSA decryption failed")
}

impl AzureKeyVaultBackend {
    /// Decrypts a raw RSA ciphertext with Key Vault's `decrypt`.
    pub(crate) fn rsa_decrypt(
        &self,
        request: &DecryptRequest,
        algorithm: EncryptionAlgorithm,
    ) -> Result<Vec<u8>, PluginError> {
        let (reference, description) = self.key(&request.tenant_id, &request.key_reference)?;
        let KeyKind::Rsa { bytes, decrypt, .. } = description.kind else {
            return Err(PluginError::invalid_request(
                "only RSA keys decrypt: this key does not support encryption",
            ));
        };
        if !decrypt {
            return Err(PluginError::invalid_request(format!(
                "{NAME}: the Key Vault key {:?} does not allow decrypt in its key_ops",
                reference.key.name
            )));
        }
        if request.ciphertext.is_empty() {
            return Ok(Vec::new());
        }
        if request.ciphertext.len() != bytes {
            return Err(failed());
        }
        let parameters = KeyOperationParameters {
            algorithm: Some(algorithm),
            value: Some(request.ciphertext.to_vec()),
            ..Default::default()
        };
        let content =
            RequestContent::try_from(parameters).map_err(|error| from_azure("decrypt", &error))?;
        let result = self.call_raw("decrypt", async {
            self.client
                .decrypt(&reference.key.name, &description.version, content, None)
                .await?
                .into_model()
        })?;
        match result {
            // The host zeroizes what it is given.
            Ok(result) => result
                .result
                .ok_or_else(|| PluginError::internal("Azure Key Vault decrypt: no result")),
            Err(error) => Err(match service_error(&error) {
                // Key Vault answers 400 BadParameter when the padding does not decode.
                Some(service) if service.status == 400 && !service.message.contains("disabled") => {
                    failed()
                }
                Some(service) if service.status == 404 => {
                    self.unwrap_not_found(&reference.key.name)
                }
                _ => from_azure("decrypt", &error),
            }),
        }
    }
}
