//! The core's view of an instance: [`BackendInstance`] implemented by calls into the plugin.

use abi_stable::std_types::{RString, RVec};
use async_trait::async_trait;
use keybroker_core::{
    backend::{
        BackendDecrypt, BackendEncrypt, BackendInstance, BackendSign, BackendVerify, OnUnavailable,
    },
    dek_cache::DekCache,
    Error, Tenant,
};
use keybroker_plugin_abi::{
    capability, BindKeyRequest, CreateKeyRequest, DecryptRequest, EncryptRequest,
    GenerateDataKeyRequest, ImportKeyRequest, VerifyRequest,
};
use zeroize::Zeroizing;

use super::{
    map_plugin_error,
    requests::{decrypt_request, encrypt_request, sign_request, take_secret, verify_fields},
    Instance,
};

/// Length of the broker's data keys (AES-256).
const DATA_KEY_LEN: u32 = 32;

#[async_trait]
impl BackendInstance for Instance {
    fn name(&self) -> &str {
        &self.settings.name
    }

    fn allows_tenant(&self, tenant_name: &str) -> bool {
        self.settings
            .tenants
            .iter()
            .any(|t| t == "*" || t == tenant_name)
    }

    fn cache(&self) -> &DekCache {
        &self.cache
    }

    fn on_unavailable(&self) -> OnUnavailable {
        self.settings.on_unavailable
    }

    fn check_available(&self, reference: &str) -> Result<(), Error> {
        if self.load_error.is_some() {
            return Err(self.unavailable());
        }
        // The plugin's reason is shown; a failed health check's stays in the log.
        if let Some(reason) = self.availability.reported_reason() {
            return Err(Error::Unavailable(format!(
                "backend instance \"{}\" is unavailable: {reason}",
                self.settings.name
            )));
        }
        if self.availability.reason().is_some() {
            return Err(self.unavailable());
        }
        if let Some(reason) = (!reference.is_empty())
            .then(|| self.availability.key_down(reference))
            .flatten()
        {
            let mut message = format!(
                "a key of backend instance \"{}\" is unavailable",
                self.settings.name
            );
            if !reason.is_empty() {
                message.push_str(": ");
                message.push_str(&reason);
            }
            return Err(Error::Unavailable(message));
        }
        Ok(())
    }

    fn supports_direct(&self) -> bool {
        self.has_capability(capability::DIRECT)
    }

    fn supports_sign(&self) -> bool {
        self.has_capability(capability::SIGN)
    }

    fn supports_asymmetric_decrypt(&self) -> bool {
        self.has_capability(capability::ASYMMETRIC_DECRYPT)
    }

    fn supports_bind(&self) -> bool {
        self.has_capability(capability::BIND_EXISTING)
    }

    fn supports_generate_data_key(&self) -> bool {
        self.has_capability(capability::GENERATE_DATA_KEY)
    }

    fn holds_in_broker(&self) -> bool {
        self.has_capability(capability::BROKER_HELD)
    }

    fn supports_private_key_transfer(&self) -> bool {
        // The capability means nothing without the other: a plugin whose keys live outside
        // the broker is never asked for a private key, whatever it reports.
        self.holds_in_broker() && self.has_capability(capability::PRIVATE_KEY_TRANSFER)
    }

    fn may_bind(&self, tenant_name: &str, backend_key: &str) -> bool {
        self.settings.bind.get(tenant_name).is_some_and(|patterns| {
            patterns
                .iter()
                .any(|pattern| keybroker_core::auth::jwt::glob_match(pattern, backend_key))
        })
    }

    async fn bind_key(
        &self,
        tenant: &Tenant,
        key_id: &str,
        key_type: &str,
        backend_key: &str,
    ) -> Result<String, Error> {
        let request = BindKeyRequest {
            tenant_id: RString::from(tenant.id.to_string()),
            key_id: RString::from(key_id),
            key_type: RString::from(key_type),
            backend_key: RString::from(backend_key),
        };
        let handle = self
            .call_within(
                "bind_key",
                self.settings.create_timeout,
                Some(tenant),
                move |b| b.bind_key(request),
            )
            .await?;
        Ok(handle.reference.into_string())
    }

    async fn sign(&self, tenant: &Tenant, request: BackendSign<'_>) -> Result<Vec<u8>, Error> {
        let request = sign_request(tenant, &request);
        let signature = self
            .call("sign", Some(tenant), move |b| b.sign(request))
            .await?;
        Ok(signature.into_vec())
    }

    async fn verify(&self, tenant: &Tenant, request: BackendVerify<'_>) -> Result<bool, Error> {
        let request = VerifyRequest {
            signature: RVec::from(request.signature),
            ..verify_fields(sign_request(tenant, &request.sign))
        };
        self.call("verify", Some(tenant), move |b| b.verify(request))
            .await
    }

    async fn public_key(&self, tenant: &Tenant, reference: &str) -> Result<String, Error> {
        let tenant_id = RString::from(tenant.id.to_string());
        let reference = RString::from(reference);
        let pem = self
            .call("public_key", Some(tenant), move |b| {
                b.public_key(tenant_id, reference)
            })
            .await?;
        Ok(pem.into_string())
    }

    async fn export_private_key(
        &self,
        tenant: &Tenant,
        reference: &str,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        if !self.supports_private_key_transfer() {
            return Err(Error::invalid(format!(
                "backend instance \"{}\" never hands out private keys",
                self.settings.name
            )));
        }
        let tenant_id = RString::from(tenant.id.to_string());
        let reference = RString::from(reference);
        let der = self
            .call("export_private_key", Some(tenant), move |b| {
                b.export_private_key(tenant_id, reference)
            })
            .await?;
        Ok(take_secret(der))
    }

    async fn import_private_key(
        &self,
        tenant: &Tenant,
        key_id: &str,
        key_type: &str,
        pkcs8: &[u8],
    ) -> Result<String, Error> {
        if !self.supports_private_key_transfer() {
            return Err(Error::invalid(format!(
                "backend instance \"{}\" does not take in private keys",
                self.settings.name
            )));
        }
        // The plugin owns (and wipes) the copy it is given.
        let request = ImportKeyRequest {
            tenant_id: RString::from(tenant.id.to_string()),
            key_id: RString::from(key_id),
            key_type: RString::from(key_type),
            pkcs8: RVec::from(pkcs8),
        };
        let handle = self
            .call("import_private_key", Some(tenant), move |b| {
                b.import_private_key(request)
            })
            .await?;
        Ok(handle.reference.into_string())
    }

    async fn generate_data_key(
        &self,
        tenant: &Tenant,
        reference: &str,
        aad: &[u8],
    ) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), Error> {
        let request = GenerateDataKeyRequest {
            tenant_id: RString::from(tenant.id.to_string()),
            key_reference: RString::from(reference),
            aad: RVec::from(aad),
            length: DATA_KEY_LEN,
        };
        let key = self
            .call("generate_data_key", Some(tenant), move |b| {
                b.generate_data_key(request)
            })
            .await?;
        let plaintext = take_secret(key.plaintext);
        if plaintext.len() != DATA_KEY_LEN as usize {
            return Err(Error::internal(format!(
                "backend instance \"{}\" made a data key of {} bytes, not {DATA_KEY_LEN}",
                self.settings.name,
                plaintext.len()
            )));
        }
        Ok((plaintext, key.wrapped.into_vec()))
    }

    async fn create_key(
        &self,
        tenant: &Tenant,
        key_id: &str,
        key_type: &str,
    ) -> Result<String, Error> {
        let request = CreateKeyRequest {
            tenant_id: RString::from(tenant.id.to_string()),
            key_id: RString::from(key_id),
            key_type: RString::from(key_type),
        };
        let handle = self
            .call_within(
                "create_key",
                self.settings.create_timeout,
                Some(tenant),
                move |b| b.create_key(request),
            )
            .await?;
        Ok(handle.reference.into_string())
    }

    async fn delete_key(&self, tenant: &Tenant, reference: &str) -> Result<(), Error> {
        let tenant_id = RString::from(tenant.id.to_string());
        let reference = RString::from(reference);
        self.call("delete_key", Some(tenant), move |b| {
            b.delete_key(tenant_id, reference)
        })
        .await
    }

    async fn encrypt(
        &self,
        tenant: &Tenant,
        request: BackendEncrypt<'_>,
    ) -> Result<Vec<u8>, Error> {
        // Ownership of the plaintext copy passes to the plugin, which zeroizes it.
        let request = encrypt_request(tenant, &request);
        let result = self
            .single(
                "encrypt",
                tenant,
                request,
                |b, batch, done| b.encrypt_batch_start(batch, done),
                |b, request| b.encrypt(request),
            )
            .await?;
        Ok(result.into_vec())
    }

    async fn decrypt(
        &self,
        tenant: &Tenant,
        request: BackendDecrypt<'_>,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let request = decrypt_request(tenant, &request);
        let result = self
            .single(
                "decrypt",
                tenant,
                request,
                |b, batch, done| b.decrypt_batch_start(batch, done),
                |b, request| b.decrypt(request),
            )
            .await?;
        Ok(take_secret(result))
    }

    async fn encrypt_batch(
        &self,
        tenant: &Tenant,
        requests: Vec<BackendEncrypt<'_>>,
    ) -> Result<Vec<Result<Vec<u8>, Error>>, Error> {
        let batch: RVec<EncryptRequest> = requests
            .iter()
            .map(|r| encrypt_request(tenant, r))
            .collect();
        let name = self.settings.name.clone();
        let results = self
            .batch(
                "encrypt_batch",
                tenant,
                batch,
                |b, batch, done| b.encrypt_batch_start(batch, done),
                |b, batch| b.encrypt_batch(batch),
            )
            .await?;
        let results: Vec<_> = results
            .into_iter()
            .map(|r| {
                r.into_result()
                    .map(RVec::into_vec)
                    .map_err(|e| map_plugin_error(&name, "encrypt", e))
            })
            .collect();
        if results.iter().any(Result::is_err) {
            self.metrics.count_failed_call(&name, "encrypt_batch");
        }
        Ok(results)
    }

    async fn decrypt_batch(
        &self,
        tenant: &Tenant,
        requests: Vec<BackendDecrypt<'_>>,
    ) -> Result<Vec<Result<Zeroizing<Vec<u8>>, Error>>, Error> {
        let batch: RVec<DecryptRequest> = requests
            .iter()
            .map(|r| decrypt_request(tenant, r))
            .collect();
        let name = self.settings.name.clone();
        let results = self
            .batch(
                "decrypt_batch",
                tenant,
                batch,
                |b, batch, done| b.decrypt_batch_start(batch, done),
                |b, batch| b.decrypt_batch(batch),
            )
            .await?;
        let results: Vec<_> = results
            .into_iter()
            .map(|r| {
                r.into_result()
                    .map(take_secret)
                    .map_err(|e| map_plugin_error(&name, "decrypt", e))
            })
            .collect();
        if results.iter().any(Result::is_err) {
            self.metrics.count_failed_call(&name, "decrypt_batch");
        }
        Ok(results)
    }
}
