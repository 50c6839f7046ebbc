//! [Verify signed data](https://developer.hashicorp.com/vault/api-docs/secret/transit#verify-signed-data):
//! `POST /transit/verify/:name(/:hash_algorithm)`.

use super::{
    ciphertext,
    sign::{unmarshal, Plan},
    ItemResults, KeyState, KeyType, SignOptions, Transit, VersionState,
};
use crate::{
    backend::{BackendSign, BackendVerify},
    error::{Error, Result},
    MountId, Tenant,
};

/// How Vault words a refused verify item (`failed to parse item: failed to parse batch
/// item: …`).
const VERIFY_ITEM: &str = "failed to parse item: failed to parse batch item: ";

/// One signature to check.
#[derive(Debug)]
pub struct VerifyItem {
    /// The signed input (or digest, if prehashed; Ed25519 takes only the input).
    pub input: Vec<u8>,
    /// `vault:v<N>:…` text.
    pub signature: String,
}

impl Transit {
    /// Checks each signature (Vault transit API: verify); `Ok(false)` when it does not match.
    pub async fn verify(
        &self,
        tenant: &Tenant,
        mount: MountId,
        name: &str,
        options: &SignOptions,
        items: Vec<VerifyItem>,
    ) -> Result<ItemResults<bool>> {
        self.check_batch_size(items.len())?;
        let state = self.signing_key(tenant, mount, name).await?;
        let key_type = &state.record.key_type;
        if !KeyType::parse(key_type).is_ok_and(KeyType::is_asymmetric) {
            return Err(Error::invalid(format!(
                "key type {key_type} does not support verification"
            )));
        }
        let plan = options.plan(key_type)?;
        let instance = self.instance(tenant, &state.record.backend)?;
        let mut results = Vec::with_capacity(items.len());
        for item in items {
            let prepared = self.prepare_verify(&state, options, &plan, &item);
            let (version, digest, signature) = match prepared {
                Ok(prepared) => prepared,
                Err(error) => {
                    results.push(Err(error));
                    continue;
                }
            };
            let reference = &version.record.backend_reference;
            instance.check_available(reference)?;
            let request = BackendVerify {
                sign: BackendSign {
                    reference,
                    digest: &digest,
                    hash_algorithm: plan.hash_name(options),
                    signature_algorithm: plan.signature_algorithm,
                },
                signature: &signature,
            };
            match instance.verify(tenant, request).await {
                Ok(valid) => results.push(Ok(valid)),
                Err(error @ (Error::Unavailable(_) | Error::Internal { .. })) => return Err(error),
                Err(error) => results.push(Err(error)),
            }
        }
        Ok(results)
    }

    fn prepare_verify(
        &self,
        state: &KeyState,
        options: &SignOptions,
        plan: &Plan,
        item: &VerifyItem,
    ) -> Result<(std::sync::Arc<VersionState>, Vec<u8>, Vec<u8>)> {
        // Vault checks the item's options before the signature.
        let digest = plan.to_sign(options, VERIFY_ITEM, &item.input)?;
        let (number, encoded) = ciphertext::split("signature", &item.signature)?;
        let version = state.readable_version("signature", number)?;
        let signature = unmarshal(plan.key_type, options.marshaling, options.decode(encoded)?)?;
        Ok((version, digest, signature))
    }
}
