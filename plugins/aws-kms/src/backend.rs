//! The backend instance: one SDK client on the instance's own Tokio runtime, and the
//! operations of the plugin ABI, each a `block_on` of one KMS call (ARCHITECTURE.md §5: no futures
//! cross the ABI; the host calls from its blocking pool with a deadline, which the
//! operation timeout keeps us inside).

use std::{collections::HashMap, time::Duration};

use aws_config::{retry::RetryConfig, timeout::TimeoutConfig, BehaviorVersion, Region};
use aws_sdk_kms::{
    config::Credentials,
    error::ProvideErrorMetadata as _,
    primitives::Blob,
    types::{KeyState, MessageType, Tag},
    Client,
};
use aws_smithy_http_client::tls;
use base64::Engine as _;
use keybroker_plugin_abi::{
    capability, host_log, AvailabilityReporter, BackendInfo, BindKeyRequest, CreateKeyRequest,
    DataKey, DecryptRequest, EncryptRequest, ErrorKind, GenerateDataKeyRequest, HostBox, KeyHandle,
    LogLevel, PluginError, SignRequest, VerifyRequest,
};
use keybroker_plugin_sdk::{
    cache::VerifiedKeys, entry::backend_info, public_key::spki_der_to_pem,
    reference::refuse_broker_key, runtime::BlockingRuntime,
};
use zeroize::Zeroizing;

use crate::{
    config::{Config, CredentialSource},
    error::{from_sdk, key_not_found},
    key_kind::KeyKind,
    reference::{self, Origin, Reference},
};

/// The plugin's name in `info()`.
pub const NAME: &str = "aws-kms";
/// The tag carrying the owning tenant's id on keys the plugin creates.
pub const TENANT_TAG: &str = "keybroker:tenant";
/// The tag carrying the broker key's id on keys the plugin creates.
pub const KEY_TAG: &str = "keybroker:key";
/// The encryption-context entry carrying the request's AAD (base64).
pub const AAD_CONTEXT: &str = "keybroker:aad";
/// The encryption-context entry marking the encryption of an empty plaintext.
const EMPTY_CONTEXT: &str = "keybroker:empty";
/// First byte of a ciphertext: KMS's blob follows, over the plaintext.
const FORMAT_KMS: u8 = 1;
/// First byte of the ciphertext of an empty plaintext (KMS refuses empty plaintexts): KMS's
/// blob follows, over one zero byte, with [`EMPTY_CONTEXT`] in the encryption context so
/// that changing this byte makes KMS refuse the blob.
const FORMAT_EMPTY: u8 = 0;
/// Days before KMS deletes a key scheduled for deletion (KMS's minimum).
const DELETION_WINDOW_DAYS: i32 = 7;
/// First backoff of the SDK's standard retry mode (its default, 1 s, would spend the whole
/// operation timeout on one retry).
const INITIAL_BACKOFF: Duration = Duration::from_millis(50);

/// One `aws-kms` instance.
pub struct AwsKmsBackend {
    runtime: BlockingRuntime,
    client: Client,
    max_payload: u64,
    host: HostBox,
    /// Keys whose tags (created keys) and kind were checked by this instance: after the
    /// first use of a key, an operation costs one KMS call.
    verified: VerifiedKeys<Reference, KeyKind>,
    /// Whether the host was told the instance is unavailable.
    availability: AvailabilityReporter,
}

impl std::fmt::Debug for AwsKmsBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsKmsBackend")
            .field("max_payload", &self.max_payload)
            .finish_non_exhaustive()
    }
}

/// Builds an instance from the `[config]` JSON text.
pub fn new_backend(config: &str, host: HostBox) -> Result<AwsKmsBackend, PluginError> {
    let config = Config::parse(config)?;
    let credentials = config.credential_source()?;
    let runtime = BlockingRuntime::new(NAME)?;
    let client = runtime.block_on(client(&config, credentials))?;
    let backend = AwsKmsBackend {
        runtime,
        client,
        max_payload: config.max_payload,
        host,
        verified: VerifiedKeys::default(),
        availability: AvailabilityReporter::default(),
    };
    backend.log(
        LogLevel::INFO,
        &format!(
            "ready: region {}, endpoint {}, operation timeout {} ms, {} attempts",
            config.region,
            config.endpoint.as_deref().unwrap_or("(the region's)"),
            config.operation_timeout_ms,
            config.max_attempts
        ),
    );
    Ok(backend)
}

pub(crate) async fn client(config: &Config, credentials: CredentialSource) -> Client {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let operation_timeout = Duration::from_millis(config.operation_timeout_ms);
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client.clone())
        .region(Region::new(config.region.clone()))
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(config.max_attempts)
                .with_initial_backoff(INITIAL_BACKOFF)
                .with_max_backoff(operation_timeout / 4),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(operation_timeout)
                .build(),
        );
    if let Some(endpoint) = &config.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    match credentials {
        CredentialSource::DefaultChain => {}
        CredentialSource::Environment {
            access_key_id,
            secret_access_key,
            session_token,
        } => {
            loader = loader.credentials_provider(Credentials::new(
                access_key_id,
                secret_access_key,
                session_token,
                None,
                "keybroker-aws-kms-environment",
            ));
        }
        CredentialSource::File { path, profile } => {
            use aws_config::profile::ProfileFileCredentialsProvider;
            use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
            let files = EnvConfigFiles::builder()
                .with_file(EnvConfigFileKind::Credentials, path)
                .build();
            // The provider may need STS (role profiles): give it our HTTP client, region
            // and timeouts (it has no default client without the SDK's default features).
            let provider_config = aws_config::provider_config::ProviderConfig::without_region()
                .with_region(Some(Region::new(config.region.clone())))
                .with_http_client(http_client.clone())
                .with_timeout_config(
                    TimeoutConfig::builder()
                        .operation_timeout(operation_timeout)
                        .build(),
                );
            loader = loader.credentials_provider(
                ProfileFileCredentialsProvider::builder()
                    .configure(&provider_config)
                    .profile_files(files)
                    .profile_name(profile)
                    .build(),
            );
        }
    }
    Client::new(&loader.load().await)
}

/// The encryption context of a request: its AAD, which KMS binds to the ciphertext.
fn context(aad: &[u8], empty: bool) -> HashMap<String, String> {
    let mut context = HashMap::from([(
        AAD_CONTEXT.to_owned(),
        base64::engine::general_purpose::STANDARD.encode(aad),
    )]);
    if empty {
        context.insert(EMPTY_CONTEXT.to_owned(), "true".to_owned());
    }
    context
}

fn invalid_ciphertext() -> PluginError {
    PluginError::invalid_ciphertext("the ciphertext is not valid for this key and AAD")
}

impl AwsKmsBackend {
    fn log(&self, level: LogLevel, message: &str) {
        host_log(&self.host, level, &format!("aws-kms: {message}"));
    }

    /// Tells the host what a health check found, once per change (see
    /// [`AvailabilityReporter`]); passes the result through.
    fn observe<T>(&self, result: Result<T, PluginError>) -> Result<T, PluginError> {
        self.availability
            .observe(&self.host, NAME, "AWS KMS", &result);
        result
    }

    /// Parses the reference for the request's tenant and returns the key's kind, checking
    /// on the first use by this instance that a created key carries the tenant's tag.
    fn key(&self, tenant_id: &str, text: &str) -> Result<(Reference, KeyKind), PluginError> {
        let reference = reference::for_tenant(text, tenant_id)?;
        let kind = self.verified.get_or_verify(&reference, |reference| {
            self.runtime.block_on(self.verify_key(reference))?
        })?;
        Ok((reference, kind))
    }

    async fn verify_key(&self, reference: &Reference) -> Result<KeyKind, PluginError> {
        if reference.origin == Origin::Created {
            let tags = self.tags(&reference.key).await?;
            let owner = tags
                .iter()
                .find(|tag| tag.tag_key() == TENANT_TAG)
                .map(|tag| tag.tag_value());
            if owner != Some(reference.tenant_id.as_str()) {
                return Err(key_not_found());
            }
        }
        let described = self
            .client
            .describe_key()
            .key_id(&reference.key)
            .send()
            .await
            .map_err(|error| from_sdk("DescribeKey", &error))?;
        let metadata = described
            .key_metadata()
            .ok_or_else(|| PluginError::internal("AWS KMS DescribeKey: no key metadata"))?;
        Ok(KeyKind::of(metadata.key_spec(), metadata.key_usage()))
    }

    async fn tags(&self, key: &str) -> Result<Vec<Tag>, PluginError> {
        let mut tags = Vec::new();
        let mut marker = None;
        loop {
            let page = self
                .client
                .list_resource_tags()
                .key_id(key)
                .set_marker(marker)
                .send()
                .await
                .map_err(|error| from_sdk("ListResourceTags", &error))?;
            tags.extend(page.tags().iter().cloned());
            match page.next_marker() {
                Some(next) if page.truncated() => marker = Some(next.to_owned()),
                _ => return Ok(tags),
            }
        }
    }

    fn check_payload(&self, length: usize) -> Result<(), PluginError> {
        if length as u64 > self.max_payload {
            return Err(PluginError::new(
                ErrorKind::PAYLOAD_TOO_LARGE,
                format!(
                    "a plaintext of {length} bytes is larger than this instance's max_payload \
                     of {} bytes",
                    self.max_payload
                ),
            ));
        }
        Ok(())
    }

    async fn kms_encrypt(
        &self,
        key: &str,
        plaintext: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, PluginError> {
        let empty = plaintext.is_empty();
        let answer = self
            .client
            .encrypt()
            .key_id(key)
            .plaintext(Blob::new(if empty { vec![0] } else { plaintext.to_vec() }))
            .set_encryption_context(Some(context(aad, empty)))
            .send()
            .await
            .map_err(|error| from_sdk("Encrypt", &error))?;
        let blob = answer
            .ciphertext_blob()
            .ok_or_else(|| PluginError::internal("AWS KMS Encrypt: no ciphertext"))?;
        let mut ciphertext = Vec::with_capacity(blob.as_ref().len() + 1);
        ciphertext.push(if empty { FORMAT_EMPTY } else { FORMAT_KMS });
        ciphertext.extend_from_slice(blob.as_ref());
        Ok(ciphertext)
    }

    async fn kms_decrypt(
        &self,
        key: &str,
        ciphertext: &[u8],
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, PluginError> {
        let (empty, blob) = match ciphertext.split_first() {
            Some((&FORMAT_KMS, blob)) if !blob.is_empty() => (false, blob),
            Some((&FORMAT_EMPTY, blob)) if !blob.is_empty() => (true, blob),
            _ => return Err(invalid_ciphertext()),
        };
        let answer = self
            .client
            .decrypt()
            .key_id(key)
            .ciphertext_blob(Blob::new(blob))
            .set_encryption_context(Some(context(aad, empty)))
            .send()
            .await
            .map_err(|error| {
                // A ciphertext made under another key: AWS answers IncorrectKeyException,
                // or, when the blob names a key the caller cannot use, AccessDeniedException
                // "The ciphertext refers to a customer master key that does not exist…";
                // moto answers the latter for any other key, without a message (a real
                // refusal of the caller always says who was refused). Either way the
                // ciphertext is not one of this key's.
                let foreign = error.code() == Some("AccessDeniedException")
                    && error.message().is_none_or(|message| {
                        message.is_empty() || message.starts_with("The ciphertext refers to")
                    });
                if foreign {
                    invalid_ciphertext()
                } else {
                    from_sdk("Decrypt", &error)
                }
            })?;
        let plaintext = Zeroizing::new(
            answer
                .plaintext()
                .map(|blob| blob.as_ref().to_vec())
                .unwrap_or_default(),
        );
        if empty {
            return if plaintext.as_slice() == [0] {
                Ok(Zeroizing::new(Vec::new()))
            } else {
                Err(invalid_ciphertext())
            };
        }
        Ok(plaintext)
    }
}

impl keybroker_plugin_abi::Backend for AwsKmsBackend {
    fn info(&self) -> BackendInfo {
        backend_info(
            NAME,
            env!("CARGO_PKG_VERSION"),
            capability::ENVELOPE
                | capability::DIRECT
                | capability::BIND_EXISTING
                | capability::SIGN
                | capability::GENERATE_DATA_KEY,
            self.max_payload,
        )
    }

    fn create_key(&self, request: CreateKeyRequest) -> Result<KeyHandle, PluginError> {
        let (kind, spec, usage) = KeyKind::for_key_type(&request.key_type)?;
        let tag = |key: &str, value: &str| {
            Tag::builder()
                .tag_key(key)
                .tag_value(value)
                .build()
                .map_err(|_| PluginError::internal("aws-kms: cannot build a tag"))
        };
        let tags = vec![
            tag(TENANT_TAG, &request.tenant_id)?,
            tag(KEY_TAG, &request.key_id)?,
        ];
        let created = self
            .runtime
            .block_on(
                self.client
                    .create_key()
                    .key_spec(spec)
                    .key_usage(usage)
                    .description(format!(
                        "keybroker key {} of tenant {}",
                        request.key_id, request.tenant_id
                    ))
                    .set_tags(Some(tags))
                    .send(),
            )?
            .map_err(|error| from_sdk("CreateKey", &error))?;
        let key_id = created
            .key_metadata()
            .map(|metadata| metadata.key_id().to_owned())
            .ok_or_else(|| PluginError::internal("AWS KMS CreateKey: no key metadata"))?;
        let reference = Reference::created(&request.tenant_id, key_id);
        Ok(self.verified.handle(reference, kind))
    }

    fn bind_key(&self, request: BindKeyRequest) -> Result<KeyHandle, PluginError> {
        let (wanted, _, _) = KeyKind::for_key_type(&request.key_type)?;
        let backend_key = request.backend_key.as_str();
        if backend_key.is_empty() {
            return Err(PluginError::invalid_request(
                "backend_key: give a KMS key id, key ARN or alias/…",
            ));
        }
        let (arn, kind) = self.runtime.block_on(async {
            let described = self
                .client
                .describe_key()
                .key_id(backend_key)
                .send()
                .await
                .map_err(|error| match error.code() {
                    Some("NotFoundException") => PluginError::new(
                        ErrorKind::KEY_NOT_FOUND,
                        format!("AWS KMS has no key {backend_key:?}"),
                    ),
                    _ => from_sdk("DescribeKey", &error),
                })?;
            let metadata = described
                .key_metadata()
                .ok_or_else(|| PluginError::internal("AWS KMS DescribeKey: no key metadata"))?;
            let state = metadata.key_state();
            if state != Some(&KeyState::Enabled) {
                let state = match state {
                    Some(KeyState::Disabled) => "disabled".to_owned(),
                    Some(KeyState::PendingDeletion) => "pending deletion".to_owned(),
                    Some(other) => other.as_str().to_owned(),
                    None => "in an unknown state".to_owned(),
                };
                return Err(PluginError::invalid_request(format!(
                    "cannot bind {backend_key:?}: key is {state}"
                )));
            }
            let kind = KeyKind::of(metadata.key_spec(), metadata.key_usage());
            if kind != wanted {
                return Err(PluginError::invalid_request(format!(
                    "cannot bind {backend_key:?} as {}: its key spec is {} and its usage {}",
                    request.key_type,
                    metadata.key_spec().map_or("unknown", |spec| spec.as_str()),
                    metadata
                        .key_usage()
                        .map_or("unknown", |usage| usage.as_str()),
                )));
            }
            let arn = metadata
                .arn()
                .ok_or_else(|| PluginError::internal("AWS KMS DescribeKey: no key ARN"))?
                .to_owned();
            let tags = self.tags(&arn).await?;
            if tags.iter().any(|tag| tag.tag_key() == TENANT_TAG) {
                return Err(refuse_broker_key(backend_key, TENANT_TAG));
            }
            Ok((arn, kind))
        })??;
        let reference = Reference::bound(&request.tenant_id, arn);
        Ok(self.verified.handle(reference, kind))
    }

    fn delete_key(&self, tenant_id: &str, key_reference: &str) -> Result<(), PluginError> {
        let reference = reference::for_tenant(key_reference, tenant_id)?;
        if reference.origin == Origin::Bound {
            // A bound key belongs to whoever made it: the broker only forgets it.
            return Ok(());
        }
        self.key(tenant_id, key_reference)?;
        let scheduled = self.runtime.block_on(
            self.client
                .schedule_key_deletion()
                .key_id(&reference.key)
                .pending_window_in_days(DELETION_WINDOW_DAYS)
                .send(),
        )?;
        match scheduled {
            Ok(_) => {}
            // Already pending deletion: what was asked for.
            Err(error) if error.code() == Some("KMSInvalidStateException") => {}
            Err(error) => return Err(from_sdk("ScheduleKeyDeletion", &error)),
        }
        self.verified.remove(&reference);
        self.log(
            LogLevel::INFO,
            &format!(
                "scheduled deletion of KMS key {} in {DELETION_WINDOW_DAYS} days",
                reference.key
            ),
        );
        Ok(())
    }

    fn encrypt(&self, mut request: EncryptRequest) -> Result<Vec<u8>, PluginError> {
        let plaintext = Zeroizing::new(std::mem::take(&mut request.plaintext).into_vec());
        // Tenant first (no call), then the size (no call), then the key (maybe a call).
        reference::for_tenant(&request.key_reference, &request.tenant_id)?;
        self.check_payload(plaintext.len())?;
        let (reference, kind) = self.key(&request.tenant_id, &request.key_reference)?;
        kind.require_symmetric("encrypt")?;
        // The request's IV is not used: KMS chooses its own and keeps it in its blob.
        self.runtime
            .block_on(self.kms_encrypt(&reference.key, &plaintext, &request.aad))?
    }

    fn decrypt(&self, request: DecryptRequest) -> Result<Vec<u8>, PluginError> {
        let (reference, kind) = self.key(&request.tenant_id, &request.key_reference)?;
        kind.require_symmetric("decrypt")?;
        let mut plaintext = self.runtime.block_on(self.kms_decrypt(
            &reference.key,
            &request.ciphertext,
            &request.aad,
        ))??;
        // The host zeroizes what it is given.
        Ok(std::mem::take(&mut *plaintext))
    }

    fn generate_data_key(&self, request: GenerateDataKeyRequest) -> Result<DataKey, PluginError> {
        let (reference, kind) = self.key(&request.tenant_id, &request.key_reference)?;
        kind.require_symmetric("generate_data_key")?;
        if !(1..=1024).contains(&request.length) {
            return Err(PluginError::invalid_request(format!(
                "a data key of {} bytes: AWS KMS makes 1 to 1024",
                request.length
            )));
        }
        let length = i32::try_from(request.length)
            .map_err(|_| PluginError::invalid_request("data key length out of range"))?;
        let answer = self
            .runtime
            .block_on(
                self.client
                    .generate_data_key()
                    .key_id(&reference.key)
                    .number_of_bytes(length)
                    .set_encryption_context(Some(context(&request.aad, false)))
                    .send(),
            )?
            .map_err(|error| from_sdk("GenerateDataKey", &error))?;
        let plaintext = answer
            .plaintext()
            .map(|blob| blob.as_ref().to_vec())
            .ok_or_else(|| PluginError::internal("AWS KMS GenerateDataKey: no plaintext"))?;
        let blob = answer
            .ciphertext_blob()
            .ok_or_else(|| PluginError::internal("AWS KMS GenerateDataKey: no ciphertext"))?;
        let mut wrapped = Vec::with_capacity(blob.as_ref().len() + 1);
        wrapped.push(FORMAT_KMS);
        wrapped.extend_from_slice(blob.as_ref());
        Ok(DataKey {
            plaintext: plaintext.into(),
            wrapped: wrapped.into(),
        })
    }

    fn sign(&self, request: SignRequest) -> Result<Vec<u8>, PluginError> {
        let (reference, kind) = self.key(&request.tenant_id, &request.key_reference)?;
        let algorithm = kind.signing_algorithm(
            &request.hash_algorithm,
            &request.signature_algorithm,
            &request.digest,
        )?;
        let answer = self
            .runtime
            .block_on(
                self.client
                    .sign()
                    .key_id(&reference.key)
                    .message(Blob::new(request.digest.as_slice()))
                    .message_type(MessageType::Digest)
                    .signing_algorithm(algorithm)
                    .send(),
            )?
            .map_err(|error| from_sdk("Sign", &error))?;
        let signature = answer
            .signature()
            .ok_or_else(|| PluginError::internal("AWS KMS Sign: no signature"))?;
        kind.signature_from_kms(signature.as_ref())
    }

    fn verify(&self, request: VerifyRequest) -> Result<bool, PluginError> {
        let (reference, kind) = self.key(&request.tenant_id, &request.key_reference)?;
        let algorithm = kind.signing_algorithm(
            &request.hash_algorithm,
            &request.signature_algorithm,
            &request.digest,
        )?;
        let Some(signature) = kind.signature_for_kms(&request.signature) else {
            return Ok(false);
        };
        let answer = self.runtime.block_on(
            self.client
                .verify()
                .key_id(&reference.key)
                .message(Blob::new(request.digest.as_slice()))
                .message_type(MessageType::Digest)
                .signing_algorithm(algorithm)
                .signature(Blob::new(signature))
                .send(),
        )?;
        match answer {
            Ok(answer) => Ok(answer.signature_valid()),
            Err(error) if error.code() == Some("KMSInvalidSignatureException") => Ok(false),
            Err(error) => Err(from_sdk("Verify", &error)),
        }
    }

    fn public_key(&self, tenant_id: &str, key_reference: &str) -> Result<String, PluginError> {
        let (reference, kind) = self.key(tenant_id, key_reference)?;
        if !kind.signs() {
            return Err(PluginError::invalid_request(
                "public_key needs an rsa-* or ecdsa-* key",
            ));
        }
        let answer = self
            .runtime
            .block_on(self.client.get_public_key().key_id(&reference.key).send())?
            .map_err(|error| from_sdk("GetPublicKey", &error))?;
        let der = answer
            .public_key()
            .ok_or_else(|| PluginError::internal("AWS KMS GetPublicKey: no public key"))?;
        Ok(spki_der_to_pem(der.as_ref()))
    }

    fn health(&self) -> Result<(), PluginError> {
        let result = self
            .runtime
            .block_on(self.client.list_keys().limit(1).send())?
            .map(|_| ())
            .map_err(|error| from_sdk("ListKeys", &error));
        self.observe(result)
    }
}
