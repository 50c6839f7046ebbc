//! The backend instance: one `KeyClient` on the instance's own Tokio runtime, and the
//! operations of the plugin ABI, each a `block_on` of one Key Vault call bounded by the
//! operation timeout (ARCHITECTURE.md §5: no futures cross the ABI; the host calls from its blocking
//! pool with a deadline, which the operation timeout keeps us inside).

use std::{collections::HashMap, future::Future, sync::Arc, time::Duration};

use azure_core::{
    cloud::{CloudConfiguration, CustomConfiguration},
    credentials::Secret,
    http::{ClientOptions, ExponentialRetryOptions, RequestContent, RetryOptions, Transport},
};
use azure_identity::{ClientSecretCredential, ClientSecretCredentialOptions};
use azure_security_keyvault_keys::{
    models::{
        CreateKeyParameters, CurveName, EncryptionAlgorithm, Key, KeyOperation,
        KeyOperationParameters, KeyType, SignParameters,
    },
    KeyClient, KeyClientOptions, ResourceExt,
};
use futures::StreamExt as _;
use keybroker_plugin_abi::{
    capability, host_log, key_type, AvailabilityReporter, BackendInfo, BindKeyRequest,
    CreateKeyRequest, DecryptRequest, EncryptRequest, ErrorKind, HostBox, KeyHandle, LogLevel,
    PluginError, SignRequest, VerifyRequest,
};
use keybroker_plugin_sdk::{
    cache::VerifiedKeys, entry::backend_info, reference::refuse_broker_key,
    runtime::BlockingRuntime,
};
use zeroize::Zeroizing;

use crate::{
    config::Config,
    error::{from_azure, key_not_found, service_error},
    key_kind::{
        check_key_type, signing_algorithm, unsuitable, KeyDescription, KeyKind,
        CREATED_WRAPPING_KEY_BITS, MAX_WRAP_PAYLOAD,
    },
    reference::{self, created_key_name, is_key_name, is_key_version, Origin, Reference, VaultKey},
};

/// The plugin's name in `info()`.
pub const NAME: &str = "azure-keyvault";
/// The tag carrying the owning tenant's id on keys the plugin creates.
pub const TENANT_TAG: &str = "keybroker-tenant";
/// The tag carrying the broker key's id on keys the plugin creates.
pub const KEY_TAG: &str = "keybroker-key";
/// First byte of a wrapped data key: the length of the Key Vault key version (one byte),
/// the version (ASCII), then the RSA-OAEP-256 ciphertext follow.
pub const FORMAT_WRAPPED: u8 = 1;
/// First byte of the wrapping of an empty plaintext, laid out as [`FORMAT_WRAPPED`]: what
/// is wrapped is one zero byte (Key Vault's wrapKey takes no empty value), and unwrapping
/// checks it, so the marker cannot be forged without the key.
pub const FORMAT_EMPTY: u8 = 0;
/// First delay of the SDK's exponential retry policy (its default is 200 ms).
const INITIAL_RETRY_DELAY_MS: i64 = 50;

/// One `azure-keyvault` instance.
pub struct AzureKeyVaultBackend {
    runtime: BlockingRuntime,
    pub(crate) client: KeyClient,
    operation_timeout: Duration,
    create_timeout: Duration,
    host: HostBox,
    /// Keys whose tags (created keys) and kind were checked by this instance, with the
    /// version and public key seen then: after the first use of a key, an operation costs
    /// at most one Key Vault call, and verification none.
    verified: VerifiedKeys<Reference, KeyDescription>,
    /// Whether the host was told the instance is unavailable.
    availability: AvailabilityReporter,
}

impl std::fmt::Debug for AzureKeyVaultBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureKeyVaultBackend")
            .field("vault", &self.client.endpoint().as_str())
            .field("operation_timeout", &self.operation_timeout)
            .finish_non_exhaustive()
    }
}

/// Builds an instance from the `[config]` JSON text.
pub fn new_backend(config: &str, host: HostBox) -> Result<AzureKeyVaultBackend, PluginError> {
    let config = Config::parse(config)?;
    let runtime = BlockingRuntime::new(NAME)?;
    let client = client(&config)?;
    let backend = AzureKeyVaultBackend {
        runtime,
        client,
        operation_timeout: Duration::from_millis(config.operation_timeout_ms),
        create_timeout: Duration::from_millis(config.create_timeout_ms),
        host,
        verified: VerifiedKeys::default(),
        availability: AvailabilityReporter::default(),
    };
    backend.log(
        LogLevel::INFO,
        &format!(
            "ready: vault {}, authority {}, operation timeout {} ms, {} retries",
            config.vault_url,
            config.authority_host,
            config.operation_timeout_ms,
            config.max_retries
        ),
    );
    Ok(backend)
}

/// The HTTP client both the credential and the key client use: reqwest on rustls with
/// ring, trusting the system's roots and the config's `ca_file`.
fn http_client(config: &Config) -> Result<reqwest013::Client, PluginError> {
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable system certificates are skipped, as rustls-native-certs' callers usually
    // do; a vault whose chain needs one of them then fails its TLS handshake, by name.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    for certificate in config.extra_roots()? {
        roots.add(certificate).map_err(|error| {
            PluginError::invalid_config(format!(
                "azure-keyvault config: ca_file: a certificate is not usable as a root: {error}"
            ))
        })?;
    }
    if roots.is_empty() {
        return Err(PluginError::invalid_config(
            "azure-keyvault config: no trusted root certificates (none in the system store \
             and no ca_file)",
        ));
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| PluginError::internal(format!("azure-keyvault: TLS setup: {error}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let timeout = Duration::from_millis(config.operation_timeout_ms);
    // Reads may wait as long as a key creation; every call is bounded by its own deadline
    // on top (`call_within`).
    let read_timeout =
        Duration::from_millis(config.operation_timeout_ms.max(config.create_timeout_ms));
    reqwest013::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(timeout)
        .read_timeout(read_timeout)
        // Key Vault never redirects; the SDK's own client refuses redirects too.
        .redirect(reqwest013::redirect::Policy::none())
        .build()
        .map_err(|error| {
            PluginError::internal(format!(
                "azure-keyvault: cannot build the HTTP client: {error}"
            ))
        })
}

/// Client options shared by the credential and the key client: our transport, the SDK's
/// exponential retries (which honour `Retry-After` on 429 and 503) bounded by the
/// operation timeout, and the configured authority host.
fn client_options(config: &Config, transport: &Transport) -> ClientOptions {
    let timeout_ms = i64::try_from(config.operation_timeout_ms).unwrap_or(i64::MAX);
    let mut cloud = CustomConfiguration::default();
    cloud.authority_host = config.authority_host.trim_end_matches('/').to_owned();
    ClientOptions {
        transport: Some(transport.clone()),
        retry: RetryOptions::exponential(ExponentialRetryOptions {
            initial_delay: azure_core::time::Duration::milliseconds(INITIAL_RETRY_DELAY_MS),
            max_retries: config.max_retries,
            max_total_elapsed: azure_core::time::Duration::milliseconds(timeout_ms),
            max_delay: azure_core::time::Duration::milliseconds(timeout_ms),
        }),
        cloud: Some(Arc::new(CloudConfiguration::Custom(cloud))),
        ..ClientOptions::default()
    }
}

pub(crate) fn client(config: &Config) -> Result<KeyClient, PluginError> {
    let secret = config.client_secret()?;
    let transport = Transport::new(Arc::new(http_client(config)?));
    // The SDK keeps its own copy in its `Secret` type (redacted in Debug output); ours is
    // zeroized when `secret` goes out of scope.
    let credential = ClientSecretCredential::new(
        &config.tenant_id,
        config.client_id.clone(),
        Secret::new(secret.as_str().to_owned()),
        Some(ClientSecretCredentialOptions {
            client_options: client_options(config, &transport),
        }),
    )
    .map_err(|error| {
        PluginError::invalid_config(format!("azure-keyvault config: credential: {error}"))
    })?;
    KeyClient::new(
        &config.vault_url,
        credential,
        Some(KeyClientOptions {
            client_options: client_options(config, &transport),
            verify_challenge_resource: Some(config.verify_challenge_resource),
            ..KeyClientOptions::default()
        }),
    )
    .map_err(|error| {
        PluginError::invalid_config(format!("azure-keyvault config: vault_url: {error}"))
    })
}

fn invalid_ciphertext() -> PluginError {
    PluginError::invalid_ciphertext("the ciphertext is not a data key wrapped by this key")
}

/// The version named by the `kid` of a key or operation result.
fn version_of(resource: &impl ResourceExt) -> Result<String, PluginError> {
    resource
        .resource_id()
        .ok()
        .and_then(|id| id.version)
        .filter(|version| is_key_version(version))
        .ok_or_else(|| PluginError::internal("Azure Key Vault answered without a key version"))
}

fn describe(key: &Key) -> Result<KeyDescription, PluginError> {
    let jwk = key
        .key
        .as_ref()
        .ok_or_else(|| PluginError::internal("Azure Key Vault answered without a key"))?;
    Ok(KeyDescription::of(jwk, version_of(key)?))
}

/// A wrapped data key: format byte, version length, version, RSA-OAEP-256 ciphertext.
fn encode_wrapped(format: u8, version: &str, wrapped: &[u8]) -> Result<Vec<u8>, PluginError> {
    let length = u8::try_from(version.len())
        .map_err(|_| PluginError::internal("Azure Key Vault key version too long"))?;
    let mut blob = Vec::with_capacity(2 + version.len() + wrapped.len());
    blob.push(format);
    blob.push(length);
    blob.extend_from_slice(version.as_bytes());
    blob.extend_from_slice(wrapped);
    Ok(blob)
}

/// The format byte, version and RSA ciphertext of a wrapped data key, for a key of
/// `modulus` bytes.
fn decode_wrapped(blob: &[u8], modulus: usize) -> Option<(u8, &str, &[u8])> {
    let (&format, rest) = blob.split_first()?;
    let (&length, rest) = rest.split_first()?;
    if !matches!(format, FORMAT_WRAPPED | FORMAT_EMPTY) || rest.len() < usize::from(length) {
        return None;
    }
    let (version, wrapped) = rest.split_at(usize::from(length));
    let version = std::str::from_utf8(version).ok()?;
    (is_key_version(version) && wrapped.len() == modulus).then_some((format, version, wrapped))
}

impl AzureKeyVaultBackend {
    fn log(&self, level: LogLevel, message: &str) {
        host_log(&self.host, level, &format!("azure-keyvault: {message}"));
    }

    /// Runs one SDK call on the instance's runtime, within the operation timeout.
    fn call<T>(
        &self,
        operation: &str,
        future: impl Future<Output = azure_core::Result<T>>,
    ) -> Result<T, PluginError> {
        self.call_within(self.operation_timeout, operation, future)
    }

    /// [`Self::call`] with another deadline.
    fn call_within<T>(
        &self,
        timeout: Duration,
        operation: &str,
        future: impl Future<Output = azure_core::Result<T>>,
    ) -> Result<T, PluginError> {
        self.call_raw_within(timeout, operation, future)?
            .map_err(|error| from_azure(operation, &error))
    }

    /// [`Self::call`], leaving the SDK's error to the caller.
    pub(crate) fn call_raw<T>(
        &self,
        operation: &str,
        future: impl Future<Output = azure_core::Result<T>>,
    ) -> Result<azure_core::Result<T>, PluginError> {
        self.call_raw_within(self.operation_timeout, operation, future)
    }

    /// [`Self::call_raw`] with another deadline.
    fn call_raw_within<T>(
        &self,
        timeout: Duration,
        operation: &str,
        future: impl Future<Output = azure_core::Result<T>>,
    ) -> Result<azure_core::Result<T>, PluginError> {
        match self.runtime.block_on_within(timeout, future)? {
            Some(result) => Ok(result),
            None => Err(PluginError::unavailable(format!(
                "Azure Key Vault {operation}: no answer within the timeout of {} ms",
                timeout.as_millis()
            ))),
        }
    }

    /// Tells the host what a health check found, once per change (see
    /// [`AvailabilityReporter`]); passes the result through.
    fn observe<T>(&self, result: Result<T, PluginError>) -> Result<T, PluginError> {
        self.availability
            .observe(&self.host, NAME, "Azure Key Vault", &result);
        result
    }

    fn get_key(&self, name: &str, version: Option<&str>) -> Result<Key, PluginError> {
        let options = azure_security_keyvault_keys::models::KeyClientGetKeyOptions {
            key_version: version.map(str::to_owned),
            ..Default::default()
        };
        self.call("get", async {
            self.client.get_key(name, Some(options)).await?.into_model()
        })
    }

    /// Parses the reference for the request's tenant and describes the key, checking on
    /// the first use by this instance that a created key carries the tenant's tag.
    pub(crate) fn key(
        &self,
        tenant_id: &str,
        text: &str,
    ) -> Result<(Reference, KeyDescription), PluginError> {
        let reference = reference::for_tenant(text, tenant_id)?;
        let description = self.verified.get_or_verify(&reference, |reference| {
            let key = self.get_key(&reference.key.name, reference.key.version.as_deref())?;
            if reference.origin == Origin::Created {
                let owner = key.tags.as_ref().and_then(|tags| tags.get(TENANT_TAG));
                if owner.map(String::as_str) != Some(reference.tenant_id.as_str()) {
                    return Err(key_not_found());
                }
            }
            describe(&key)
        })?;
        Ok((reference, description))
    }

    fn check_payload(&self, length: usize) -> Result<(), PluginError> {
        if length > MAX_WRAP_PAYLOAD {
            return Err(PluginError::new(
                ErrorKind::PAYLOAD_TOO_LARGE,
                format!(
                    "a data key of {length} bytes is larger than the {MAX_WRAP_PAYLOAD} bytes \
                     RSA-OAEP-256 wraps under an RSA-2048 key"
                ),
            ));
        }
        Ok(())
    }

    /// Unwrapping answered 404: the key is gone (`KEY_NOT_FOUND`), or the blob names a
    /// version this key does not have (a data key of another key: `INVALID_CIPHERTEXT`).
    pub(crate) fn unwrap_not_found(&self, name: &str) -> PluginError {
        match self.get_key(name, None) {
            Ok(_) => invalid_ciphertext(),
            Err(error) => error,
        }
    }
}

fn require_wrapping(kind: KeyKind, operation: &str) -> Result<usize, PluginError> {
    match kind {
        KeyKind::Rsa {
            bytes, wrap: true, ..
        } => Ok(bytes),
        _ => Err(PluginError::invalid_request(format!(
            "{operation} needs an aes256-gcm96 key (a Key Vault RSA key allowing \
             wrapKey/unwrapKey); this backend wraps data keys only (envelope mode)"
        ))),
    }
}

impl keybroker_plugin_abi::Backend for AzureKeyVaultBackend {
    fn info(&self) -> BackendInfo {
        backend_info(
            NAME,
            env!("CARGO_PKG_VERSION"),
            capability::ENVELOPE
                | capability::BIND_EXISTING
                | capability::SIGN
                | capability::ASYMMETRIC_DECRYPT,
            MAX_WRAP_PAYLOAD as u64,
        )
    }

    fn create_key(&self, request: CreateKeyRequest) -> Result<KeyHandle, PluginError> {
        check_key_type(&request.key_type)?;
        let name = created_key_name(&request.tenant_id, &request.key_id);
        let sign_ops = || Some(vec![KeyOperation::Sign, KeyOperation::Verify]);
        let mut parameters = CreateKeyParameters {
            tags: Some(HashMap::from([
                (TENANT_TAG.to_owned(), request.tenant_id.to_string()),
                (KEY_TAG.to_owned(), request.key_id.to_string()),
            ])),
            ..Default::default()
        };
        match request.key_type.as_str() {
            key_type::AES256_GCM96 => {
                parameters.kty = Some(KeyType::Rsa);
                parameters.key_size = Some(CREATED_WRAPPING_KEY_BITS);
                parameters.key_ops = Some(vec![KeyOperation::WrapKey, KeyOperation::UnwrapKey]);
            }
            key_type::ECDSA_P256 | key_type::ECDSA_P384 | key_type::ECDSA_P521 => {
                parameters.kty = Some(KeyType::Ec);
                parameters.curve = Some(match request.key_type.as_str() {
                    key_type::ECDSA_P256 => CurveName::P256,
                    key_type::ECDSA_P384 => CurveName::P384,
                    _ => CurveName::P521,
                });
                parameters.key_ops = sign_ops();
            }
            rsa => {
                parameters.kty = Some(KeyType::Rsa);
                parameters.key_size = Some(match rsa {
                    key_type::RSA_2048 => 2048,
                    key_type::RSA_3072 => 3072,
                    _ => 4096,
                });
                // RSA keys also decrypt what the broker encrypted with their public key.
                parameters.key_ops = Some(vec![
                    KeyOperation::Sign,
                    KeyOperation::Verify,
                    KeyOperation::Encrypt,
                    KeyOperation::Decrypt,
                ]);
            }
        }
        let content =
            RequestContent::try_from(parameters).map_err(|error| from_azure("create", &error))?;
        let key = self.call_within(self.create_timeout, "create", async {
            self.client
                .create_key(&name, content, None)
                .await?
                .into_model()
        })?;
        let description = describe(&key)?;
        if let Some(reason) = unsuitable(description.kind, &request.key_type) {
            return Err(PluginError::internal(format!(
                "Azure Key Vault created an unexpected key: {reason}"
            )));
        }
        let reference = Reference::created(&request.tenant_id, VaultKey::latest(&name));
        self.log(
            LogLevel::INFO,
            &format!("created key {name} ({})", request.key_type),
        );
        Ok(self.verified.handle(reference, description))
    }

    fn bind_key(&self, request: BindKeyRequest) -> Result<KeyHandle, PluginError> {
        check_key_type(&request.key_type)?;
        let backend_key = request.backend_key.as_str();
        let (name, version) = match backend_key.split_once('/') {
            Some((name, version)) => (name, Some(version)),
            None => (backend_key, None),
        };
        if !is_key_name(name) || version.is_some_and(|version| !is_key_version(version)) {
            return Err(PluginError::invalid_request(format!(
                "backend_key: {backend_key:?} is not a Key Vault key name ([0-9a-zA-Z-], up to \
                 127 characters), optionally followed by /<version>"
            )));
        }
        let key = self.get_key(name, version).map_err(|error| {
            if error.kind == ErrorKind::KEY_NOT_FOUND {
                PluginError::new(
                    ErrorKind::KEY_NOT_FOUND,
                    format!("Azure Key Vault has no key {backend_key:?}"),
                )
            } else {
                error
            }
        })?;
        if key
            .tags
            .as_ref()
            .is_some_and(|tags| tags.contains_key(TENANT_TAG))
        {
            return Err(refuse_broker_key(backend_key, TENANT_TAG));
        }
        if key
            .attributes
            .as_ref()
            .and_then(|attributes| attributes.enabled)
            == Some(false)
        {
            return Err(PluginError::invalid_request(format!(
                "cannot bind {backend_key:?}: key is disabled"
            )));
        }
        let description = describe(&key)?;
        if let Some(reason) = unsuitable(description.kind, &request.key_type) {
            return Err(PluginError::invalid_request(format!(
                "cannot bind {backend_key:?}: {reason}"
            )));
        }
        let reference = Reference::bound(&request.tenant_id, VaultKey::new(name, version));
        Ok(self.verified.handle(reference, description))
    }

    fn delete_key(&self, tenant_id: &str, key_reference: &str) -> Result<(), PluginError> {
        let reference = reference::for_tenant(key_reference, tenant_id)?;
        if reference.origin == Origin::Bound {
            // A bound key belongs to whoever made it: the broker only forgets it.
            return Ok(());
        }
        match self.key(tenant_id, key_reference) {
            Ok(_) => {}
            // Already deleted (by an earlier call that timed out, or an operator).
            Err(error) if error.kind == ErrorKind::KEY_NOT_FOUND => {
                let exists = self.get_key(&reference.key.name, None);
                if matches!(&exists, Err(error) if error.kind == ErrorKind::KEY_NOT_FOUND) {
                    return Ok(());
                }
                return Err(error);
            }
            Err(error) => return Err(error),
        }
        let deleted = self.call_raw("delete", async {
            self.client.delete_key(&reference.key.name, None).await
        })?;
        match deleted {
            Ok(_) => {}
            Err(error) if service_error(&error).is_some_and(|e| e.status == 404) => {}
            Err(error) => return Err(from_azure("delete", &error)),
        }
        self.verified.remove(&reference);
        self.log(
            LogLevel::INFO,
            &format!(
                "deleted key {} (soft delete: recoverable for the vault's retention period)",
                reference.key.name
            ),
        );
        Ok(())
    }

    fn encrypt(&self, mut request: EncryptRequest) -> Result<Vec<u8>, PluginError> {
        let plaintext = Zeroizing::new(std::mem::take(&mut request.plaintext).into_vec());
        // Tenant first (no call), then the size (no call), then the key (maybe a call).
        reference::for_tenant(&request.key_reference, &request.tenant_id)?;
        self.check_payload(plaintext.len())?;
        let (reference, description) = self.key(&request.tenant_id, &request.key_reference)?;
        require_wrapping(description.kind, "encrypt")?;
        // RSA-OAEP has no AAD and picks its own randomness: the request's AAD and IV are
        // not used (the broker's HKDF binding covers the AAD, ARCHITECTURE.md §3).
        let empty = plaintext.is_empty();
        let parameters = KeyOperationParameters {
            algorithm: Some(EncryptionAlgorithm::RsaOaep256),
            value: Some(if empty { vec![0] } else { plaintext.to_vec() }),
            ..Default::default()
        };
        let content =
            RequestContent::try_from(parameters).map_err(|error| from_azure("wrapKey", &error))?;
        let options = azure_security_keyvault_keys::models::KeyClientWrapKeyOptions {
            key_version: reference.key.version.clone(),
            ..Default::default()
        };
        let result = self.call("wrapKey", async {
            self.client
                .wrap_key(&reference.key.name, content, Some(options))
                .await?
                .into_model()
        })?;
        let version = version_of(&result)?;
        let wrapped = result
            .result
            .ok_or_else(|| PluginError::internal("Azure Key Vault wrapKey: no result"))?;
        encode_wrapped(
            if empty { FORMAT_EMPTY } else { FORMAT_WRAPPED },
            &version,
            &wrapped,
        )
    }

    fn decrypt(&self, request: DecryptRequest) -> Result<Vec<u8>, PluginError> {
        if let Some(algorithm) = crate::rsa_decrypt::algorithm(&request.aad) {
            return self.rsa_decrypt(&request, algorithm);
        }
        let (reference, description) = self.key(&request.tenant_id, &request.key_reference)?;
        let modulus = require_wrapping(description.kind, "decrypt")?;
        let (format, version, wrapped) =
            decode_wrapped(&request.ciphertext, modulus).ok_or_else(invalid_ciphertext)?;
        if reference
            .key
            .version
            .as_deref()
            .is_some_and(|pinned| pinned != version)
        {
            return Err(invalid_ciphertext());
        }
        let parameters = KeyOperationParameters {
            algorithm: Some(EncryptionAlgorithm::RsaOaep256),
            value: Some(wrapped.to_vec()),
            ..Default::default()
        };
        let content = RequestContent::try_from(parameters)
            .map_err(|error| from_azure("unwrapKey", &error))?;
        let result = self.call_raw("unwrapKey", async {
            self.client
                .unwrap_key(&reference.key.name, version, content, None)
                .await?
                .into_model()
        })?;
        match result {
            Ok(result) => {
                let plaintext = Zeroizing::new(result.result.ok_or_else(|| {
                    PluginError::internal("Azure Key Vault unwrapKey: no result")
                })?);
                match format {
                    FORMAT_EMPTY if plaintext.as_slice() == [0] => Ok(Vec::new()),
                    FORMAT_EMPTY => Err(invalid_ciphertext()),
                    // The host zeroizes what it is given.
                    _ => Ok(plaintext.to_vec()),
                }
            }
            Err(error) => Err(match service_error(&error) {
                // Key Vault answers 400 BadParameter when OAEP decoding fails.
                Some(service) if service.status == 400 && !service.message.contains("disabled") => {
                    invalid_ciphertext()
                }
                Some(service) if service.status == 404 => {
                    self.unwrap_not_found(&reference.key.name)
                }
                _ => from_azure("unwrapKey", &error),
            }),
        }
    }

    fn sign(&self, request: SignRequest) -> Result<Vec<u8>, PluginError> {
        let (reference, description) = self.key(&request.tenant_id, &request.key_reference)?;
        let (algorithm, _) = signing_algorithm(
            description.kind,
            &request.hash_algorithm,
            &request.signature_algorithm,
            &request.digest,
        )?;
        let parameters = SignParameters {
            algorithm: Some(algorithm),
            value: Some(request.digest.to_vec()),
        };
        let content =
            RequestContent::try_from(parameters).map_err(|error| from_azure("sign", &error))?;
        // The version whose public key this instance verifies with and hands out.
        let options = azure_security_keyvault_keys::models::KeyClientSignOptions {
            key_version: Some(description.version.clone()),
            ..Default::default()
        };
        let result = self.call("sign", async {
            self.client
                .sign(&reference.key.name, content, Some(options))
                .await?
                .into_model()
        })?;
        result
            .result
            .ok_or_else(|| PluginError::internal("Azure Key Vault sign: no signature"))
    }

    fn verify(&self, request: VerifyRequest) -> Result<bool, PluginError> {
        let (_, description) = self.key(&request.tenant_id, &request.key_reference)?;
        let (_, hash) = signing_algorithm(
            description.kind,
            &request.hash_algorithm,
            &request.signature_algorithm,
            &request.digest,
        )?;
        let public = description
            .public
            .ok_or_else(|| PluginError::internal("azure-keyvault: no public key to verify"))?;
        // Locally, with the public key of the version `sign` uses: Key Vault's own verify
        // operation exists only for keys whose public part a client cannot get.
        Ok(public.verify_prehash(
            hash,
            &request.signature_algorithm,
            &request.digest,
            &request.signature,
        ))
    }

    fn public_key(&self, tenant_id: &str, key_reference: &str) -> Result<String, PluginError> {
        let (_, description) = self.key(tenant_id, key_reference)?;
        match (description.kind, &description.public) {
            (
                KeyKind::Rsa { sign: true, .. } | KeyKind::P256 | KeyKind::P384 | KeyKind::P521,
                Some(public),
            ) => public
                .to_pem()
                .map_err(|_| PluginError::internal("azure-keyvault: cannot encode the public key")),
            _ => Err(PluginError::invalid_request(
                "public_key needs an rsa-* or ecdsa-* key",
            )),
        }
    }

    fn health(&self) -> Result<(), PluginError> {
        let result = self.call("list", async {
            let options = azure_security_keyvault_keys::models::KeyClientListKeyPropertiesOptions {
                maxresults: Some(1),
                ..Default::default()
            };
            let mut pages = self.client.list_key_properties(Some(options))?.into_pages();
            match pages.next().await {
                Some(page) => page.map(|_| ()),
                None => Ok(()),
            }
        });
        self.observe(result)
    }
}
