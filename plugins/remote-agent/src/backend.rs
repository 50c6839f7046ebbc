//! The backend operations: keys are the agents' keys, named by the agent's config; every
//! operation is one XKS request to an agent serving the tenant.

use std::sync::{Arc, Mutex, PoisonError};

use keybroker_agent_protocol::{
    xks::{
        DataIntegrityAlgorithm, DecryptRequest as XksDecrypt, EncryptRequest as XksEncrypt,
        EncryptionAlgorithm, GetKeyMetadataRequest, KeyStatus, KeyUsage, RequestMetadata,
        XksErrorName,
    },
    Operation, Reply, SecretBytes, XksError,
};
use keybroker_plugin_abi::{
    capability, key_type, Backend, BackendInfo, BatchCompletion, BindKeyRequest, CreateKeyRequest,
    DecryptRequest, EncryptRequest, ErrorKind, HostBox, KeyHandle, PluginError,
};
use keybroker_plugin_sdk::entry::backend_info;

use crate::{config::Config, gateway::Gateway, reference::Reference, server, OwnRuntime};

/// Plugin name.
pub const NAME: &str = "remote-agent";

/// Ciphertext format: one version byte, the agent's 12-byte IV, the 16-byte tag, then the
/// ciphertext.
const FORMAT: u8 = 1;
const IV_BYTES: usize = 12;
const TAG_BYTES: usize = 16;

/// One gateway instance.
pub struct RemoteAgentBackend {
    gateway: Arc<Gateway>,
    // Dropped last: shutting the runtime down closes the listener and every connection.
    _runtime: OwnRuntime,
}

/// Builds an instance from the `[config]` JSON text and starts listening for agents.
pub fn new_backend(config: &str, host: HostBox) -> Result<RemoteAgentBackend, PluginError> {
    let config = Config::parse(config)?;
    let acceptor = server::tls_acceptor(&config)?;
    let runtime = OwnRuntime::new(NAME)?;
    let gateway = Arc::new(Gateway::new(config, host));
    runtime.spawn(server::listen(gateway.clone(), acceptor));
    runtime.spawn(server::expire_requests(gateway.clone()));
    Ok(RemoteAgentBackend {
        gateway,
        _runtime: runtime,
    })
}

/// Maps an agent's XKS error to the broker's error kinds. The message is the agent's,
/// shortened: it is the customer's own agent speaking to the customer's own tenant.
fn from_xks(error: XksError) -> PluginError {
    let kind = match error.error_name {
        XksErrorName::InvalidCiphertextException => ErrorKind::INVALID_CIPHERTEXT,
        XksErrorName::AccessDeniedException | XksErrorName::AuthenticationFailedException => {
            ErrorKind::ACCESS_DENIED
        }
        XksErrorName::KeyNotFoundException => ErrorKind::KEY_NOT_FOUND,
        XksErrorName::ValidationException
        | XksErrorName::InvalidStateException
        | XksErrorName::InvalidKeyUsageException
        | XksErrorName::UnsupportedOperationException => ErrorKind::INVALID_REQUEST,
        // Throttling, timeouts and the agent's own failures: the customer key is not
        // available right now.
        _ => ErrorKind::UNAVAILABLE,
    };
    let mut message = format!(
        "the customer's agent answered {}",
        error.error_name.as_str()
    );
    if let Some(detail) = error.error_message.as_deref() {
        let detail: String = detail.chars().take(200).collect();
        message.push_str(": ");
        message.push_str(&detail);
    }
    PluginError::new(kind, message)
}

fn mismatched() -> PluginError {
    PluginError::unavailable("customer key unavailable: the agent answered another operation")
}

impl RemoteAgentBackend {
    /// The gateway's state (for tests).
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    fn metadata(&self, tenant: &str, operation: &str) -> RequestMetadata {
        RequestMetadata::keybroker(
            &format!("keybroker:tenant/{tenant}"),
            operation,
            &self.gateway.next_request_id(),
            tenant,
        )
    }

    fn tenant_name(&self, tenant_id: &str) -> Result<String, PluginError> {
        self.gateway.tenant_name(tenant_id).ok_or_else(|| {
            PluginError::new(
                ErrorKind::ACCESS_DENIED,
                "remote-agent: the host did not name this tenant",
            )
        })
    }

    /// The reference of a request of `tenant_id`, with the tenant's name.
    fn resolve(
        &self,
        tenant_id: &str,
        reference_text: &str,
    ) -> Result<(String, Reference), PluginError> {
        let reference = Reference::parse(reference_text)?;
        if reference.tenant_id != tenant_id {
            return Err(PluginError::new(
                ErrorKind::KEY_NOT_FOUND,
                "remote-agent: no such key for this tenant",
            ));
        }
        let tenant = self.tenant_name(tenant_id)?;
        self.gateway.used(&tenant, reference_text);
        Ok((tenant, reference))
    }

    /// The XKS Encrypt call for `request`; its reply is checked against the data-integrity
    /// value of the AAD the agent authenticates.
    fn encrypt_call(&self, request: EncryptRequest) -> Result<AgentCall, PluginError> {
        let mut plaintext = request.plaintext;
        let prepared = self.resolve(&request.tenant_id, &request.key_reference);
        let too_large = plaintext.len() as u64 > self.gateway.config.max_payload;
        let secret = SecretBytes::new(plaintext.to_vec());
        zeroize::Zeroize::zeroize(plaintext.as_mut_slice());
        let (tenant, reference) = prepared?;
        if too_large {
            return Err(PluginError::new(
                ErrorKind::PAYLOAD_TOO_LARGE,
                format!(
                    "remote-agent: plaintext over {} bytes",
                    self.gateway.config.max_payload
                ),
            ));
        }
        let aad = agent_aad(&reference, &request.aad);
        let body = XksEncrypt {
            request_metadata: self.metadata(&tenant, "Encrypt"),
            plaintext: secret,
            encryption_algorithm: EncryptionAlgorithm::AesGcm,
            additional_authenticated_data: Some(aad.clone()),
            ciphertext_data_integrity_value_algorithm: Some(DataIntegrityAlgorithm::Sha256),
        };
        Ok(AgentCall {
            tenant,
            key: reference.key,
            operation: Operation::Encrypt(body),
            finish: Box::new(move |reply| finish_encrypt(reply, &aad)),
        })
    }

    /// The XKS Decrypt call for `request`.
    fn decrypt_call(&self, request: DecryptRequest) -> Result<AgentCall, PluginError> {
        let (tenant, reference) = self.resolve(&request.tenant_id, &request.key_reference)?;
        let blob = request.ciphertext.as_slice();
        if blob.len() < 1 + IV_BYTES + TAG_BYTES || blob[0] != FORMAT {
            return Err(PluginError::invalid_ciphertext(
                "remote-agent: not a ciphertext of this plugin",
            ));
        }
        let (iv, rest) = blob[1..].split_at(IV_BYTES);
        let (tag, ciphertext) = rest.split_at(TAG_BYTES);
        let body = XksDecrypt {
            request_metadata: self.metadata(&tenant, "Decrypt"),
            encryption_algorithm: EncryptionAlgorithm::AesGcm,
            ciphertext: ciphertext.to_vec(),
            initialization_vector: iv.to_vec(),
            authentication_tag: tag.to_vec(),
            additional_authenticated_data: Some(agent_aad(&reference, &request.aad)),
            ciphertext_metadata: None,
        };
        Ok(AgentCall {
            tenant,
            key: reference.key,
            operation: Operation::Decrypt(body),
            finish: Box::new(finish_decrypt),
        })
    }

    /// Sends `call` and waits for its outcome (key creation aside, only callers of the ABI's
    /// blocking entries get here).
    fn call(&self, call: AgentCall) -> Outcome {
        let reply = self.gateway.call(&call.tenant, &call.key, call.operation)?;
        (call.finish)(reply)
    }

    /// Starts every call without waiting; `done` gets the outcomes, in order, once the last
    /// one is in. A request that could not be turned into a call fails alone.
    fn start_all(
        &self,
        calls: impl ExactSizeIterator<Item = Result<AgentCall, PluginError>>,
        done: BatchCompletion,
    ) {
        let batch = Batch::new(calls.len(), done);
        for (index, call) in calls.enumerate() {
            match call {
                Ok(call) => {
                    let (batch, finish) = (batch.clone(), call.finish);
                    self.gateway.start(
                        call.tenant,
                        call.key,
                        call.operation,
                        Box::new(move |reply| batch.set(index, reply.and_then(finish))),
                    );
                }
                Err(error) => batch.set(index, Err(error)),
            }
        }
    }

    /// Checks with an agent that `key` exists, is enabled and usable by the tenant; returns
    /// its reference.
    fn adopt(
        &self,
        tenant_id: &str,
        key_id: &str,
        key_type_name: &str,
        key: &str,
    ) -> Result<KeyHandle, PluginError> {
        if key_type_name != key_type::AES256_GCM96 {
            return Err(keybroker_plugin_sdk::entry::unsupported_key_type(
                NAME,
                key_type_name,
                "agents hold AES-256 keys only (no signing keys)",
            ));
        }
        if !crate::config::valid_name(key) {
            return Err(PluginError::invalid_request(
                "remote-agent: an agent key name is 1 to 128 letters, digits, '.', '_' or '-'",
            ));
        }
        let tenant = self.tenant_name(tenant_id)?;
        if !self.gateway.config.serves_tenant(&tenant) {
            return Err(PluginError::new(
                ErrorKind::ACCESS_DENIED,
                format!("remote-agent: no agent of this gateway serves tenant {tenant:?}"),
            ));
        }
        let operation = Operation::GetKeyMetadata(GetKeyMetadataRequest {
            request_metadata: self.metadata(&tenant, "CreateKey"),
        });
        let metadata = match self.gateway.call(&tenant, key, operation)? {
            Reply::GetKeyMetadata(metadata) => metadata,
            Reply::Error(error) => return Err(from_xks(error)),
            _ => return Err(mismatched()),
        };
        if metadata.key_status != KeyStatus::Enabled {
            return Err(PluginError::invalid_request(format!(
                "remote-agent: the agent's key {key:?} is disabled"
            )));
        }
        if !(metadata.key_usage.contains(&KeyUsage::Encrypt)
            && metadata.key_usage.contains(&KeyUsage::Decrypt))
        {
            return Err(PluginError::invalid_request(format!(
                "remote-agent: the agent's key {key:?} cannot both encrypt and decrypt"
            )));
        }
        Ok(KeyHandle {
            reference: Reference {
                tenant_id: tenant_id.to_owned(),
                key: key.to_owned(),
                key_id: key_id.to_owned(),
            }
            .to_string()
            .into(),
        })
    }
}

/// One request for an agent: the tenant (by name), the agent's key, the XKS operation and
/// what turns the agent's reply into the outcome.
struct AgentCall {
    tenant: String,
    key: String,
    operation: Operation,
    finish: Box<dyn FnOnce(Reply) -> Outcome + Send>,
}

/// The ciphertext of the agent's Encrypt reply, checked against the data-integrity value.
fn finish_encrypt(reply: Reply, aad: &[u8]) -> Result<Vec<u8>, PluginError> {
    let response = match reply {
        Reply::Encrypt(response) => response,
        Reply::Error(error) => return Err(from_xks(error)),
        _ => return Err(mismatched()),
    };
    if response.initialization_vector.len() != IV_BYTES
        || response.authentication_tag.len() != TAG_BYTES
        || !response.data_integrity_value_matches(Some(aad))
    {
        return Err(PluginError::unavailable(
            "customer key unavailable: the agent's ciphertext failed its integrity check",
        ));
    }
    let mut blob = Vec::with_capacity(1 + IV_BYTES + TAG_BYTES + response.ciphertext.len());
    blob.push(FORMAT);
    blob.extend_from_slice(&response.initialization_vector);
    blob.extend_from_slice(&response.authentication_tag);
    blob.extend_from_slice(&response.ciphertext);
    Ok(blob)
}

/// The plaintext of the agent's Decrypt reply.
fn finish_decrypt(reply: Reply) -> Result<Vec<u8>, PluginError> {
    match reply {
        Reply::Decrypt(response) => Ok(response.plaintext.expose().to_vec()),
        Reply::Error(error) => Err(from_xks(error)),
        _ => Err(mismatched()),
    }
}

/// One request's outcome: a ciphertext or plaintext.
type Outcome = Result<Vec<u8>, PluginError>;

/// A batch in flight: one slot per request, completed towards the host when the last one is
/// filled (each by its own agent reply, on whichever thread has it).
#[derive(Clone)]
struct Batch(Arc<Mutex<BatchState>>);

struct BatchState {
    results: Vec<Option<Outcome>>,
    remaining: usize,
    done: Option<BatchCompletion>,
}

impl Batch {
    fn new(len: usize, done: BatchCompletion) -> Self {
        let batch = Self(Arc::new(Mutex::new(BatchState {
            results: (0..len).map(|_| None).collect(),
            remaining: len,
            done: Some(done),
        })));
        if len == 0 {
            batch.finish(&mut batch.state());
        }
        batch
    }

    fn state(&self) -> std::sync::MutexGuard<'_, BatchState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, index: usize, result: Outcome) {
        let mut state = self.state();
        if let Some(slot @ None) = state.results.get_mut(index) {
            *slot = Some(result);
            state.remaining -= 1;
            if state.remaining == 0 {
                self.finish(&mut state);
            }
        }
    }

    fn finish(&self, state: &mut BatchState) {
        let results = std::mem::take(&mut state.results);
        if let Some(done) = state.done.take() {
            done.complete(
                results
                    .into_iter()
                    .map(|slot| {
                        slot.unwrap_or_else(|| {
                            Err(PluginError::internal("remote-agent: no result"))
                        })
                    })
                    .collect(),
            );
        }
    }
}

/// The AAD the agent authenticates: the broker key's id (length-prefixed), then the caller's
/// AAD. Transit keys that share one agent key so cannot decrypt each other's ciphertexts.
fn agent_aad(reference: &Reference, aad: &[u8]) -> Vec<u8> {
    let id = reference.key_id.as_bytes();
    let mut bound = Vec::with_capacity(2 + id.len() + aad.len());
    bound.extend_from_slice(&u16::try_from(id.len()).unwrap_or(u16::MAX).to_be_bytes());
    bound.extend_from_slice(id);
    bound.extend_from_slice(aad);
    bound
}

impl Backend for RemoteAgentBackend {
    fn info(&self) -> BackendInfo {
        backend_info(
            NAME,
            env!("CARGO_PKG_VERSION"),
            capability::ENVELOPE
                | capability::DIRECT
                | capability::BIND_EXISTING
                | capability::NONBLOCKING,
            self.gateway.config.max_payload,
        )
    }

    fn create_key(&self, request: CreateKeyRequest) -> Result<KeyHandle, PluginError> {
        let Some(key) = self.gateway.config.default_key.clone() else {
            return Err(PluginError::invalid_request(
                "remote-agent: this gateway has no default_key; name the agent's key with \
                 backend_key=<name>",
            ));
        };
        self.adopt(&request.tenant_id, &request.key_id, &request.key_type, &key)
    }

    fn bind_key(&self, request: BindKeyRequest) -> Result<KeyHandle, PluginError> {
        self.adopt(
            &request.tenant_id,
            &request.key_id,
            &request.key_type,
            &request.backend_key,
        )
    }

    fn encrypt(&self, request: EncryptRequest) -> Result<Vec<u8>, PluginError> {
        self.call(self.encrypt_call(request)?)
    }

    fn decrypt(&self, request: DecryptRequest) -> Result<Vec<u8>, PluginError> {
        self.call(self.decrypt_call(request)?)
    }

    fn encrypt_batch_start(&self, requests: Vec<EncryptRequest>, done: BatchCompletion) {
        let calls = requests.into_iter().map(|r| self.encrypt_call(r));
        self.start_all(calls, done);
    }

    fn decrypt_batch_start(&self, requests: Vec<DecryptRequest>, done: BatchCompletion) {
        let calls = requests.into_iter().map(|r| self.decrypt_call(r));
        self.start_all(calls, done);
    }

    fn health(&self) -> Result<(), PluginError> {
        if self.gateway.any_connected() {
            Ok(())
        } else {
            Err(PluginError::unavailable(crate::gateway::NO_AGENT))
        }
    }

    fn status(&self) -> Result<String, PluginError> {
        Ok(self.gateway.status().to_string())
    }

    fn name_tenant(&self, tenant_id: &str, tenant_name: &str) {
        self.gateway.name_tenant(tenant_id, tenant_name);
    }
}
