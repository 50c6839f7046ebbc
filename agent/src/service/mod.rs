//! The agent's request handler: one broker [`Request`] in, one [`Response`] out, with the
//! XKS proxy API v1 semantics over the agent's [`KeyStore`] — after the agent's own checks.
//!
//! # Order of checks
//!
//! 1. **Deadline.** If the request's `deadlineMs`, counted from when the transport received
//!    it, has already passed, the answer is `DependencyTimeoutException` without touching a
//!    key: the broker has stopped waiting and will drop any reply, so the work would be
//!    wasted, and a backlog drains fastest this way. (The broker measures the deadline from
//!    when it sent the request, so the agent's view is a little generous; the broker's own
//!    timer is the one that counts.)
//! 2. **Allowlist** (every operation but health). A tenant not allowed the key name gets
//!    `AccessDeniedException` with [`ACCESS_DENIED_MESSAGE`], whether or not the agent holds
//!    a key of that name: a tenant cannot probe which key names exist for others. Only a
//!    tenant allowed that name (or allowed every key with `"*"`) can learn that it does not
//!    exist, as `KeyNotFoundException`; such a tenant is entitled to the agent's key names
//!    anyway. Refusals take no rate token and do no cryptography.
//! 3. **Rate cap** (every operation but health): `ThrottlingException` when the token bucket
//!    is empty. Health is exempt so that a busy agent is not reported as down; it touches no
//!    key.
//! 4. **The operation**: field checks (`ValidationException`), then AES-256-GCM: in the
//!    agent's memory for a software key, inside the token for an HSM key (same limits, AAD,
//!    data integrity value and error names). An HSM that cannot be reached answers
//!    `DependencyTimeoutException` (with the HSM's reason, e.g. `CKR_…`; never the PIN or key
//!    material); any other HSM failure is `InternalException`.
//!
//! Every request is logged at the end (agent id, request id, tenant, key name, operation,
//! outcome, the broker's principal and request id from the XKS metadata), never plaintext,
//! ciphertext, AAD or key material, and counted in [`Stats`].

mod decrypt;
mod encrypt;
mod metadata;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use keybroker_agent_protocol::xks::{XksError, XksErrorName};
use keybroker_agent_protocol::{Operation, Reply, Request, Response};

use crate::clock::Clock;
use crate::hsm::HsmOperationError;
use crate::keys::{KeyStore, StoredKey};
use crate::policy::{Allowlist, RateLimit, RateLimiter};
use crate::stats::{Counters, Refusal, Stats};

/// XKS proxy API v1: the largest plaintext an encrypt must accept (4300 bytes); this agent
/// accepts no more. Decrypt applies the same bound to ciphertext, which has the same length.
pub const MAX_PLAINTEXT_BYTES: usize = 4300;

/// XKS proxy API v1: the largest additional authenticated data (8192 bytes).
pub const MAX_AAD_BYTES: usize = 8192;

/// The IV length this agent generates and accepts (the AES-GCM standard length).
pub const IV_BYTES: usize = 12;

/// The AES-GCM tag length.
pub const TAG_BYTES: usize = 16;

/// The message of every `AccessDeniedException`: the same for a key that does not exist and
/// a key the tenant may not use, so a refusal reveals nothing about other tenants' keys.
pub const ACCESS_DENIED_MESSAGE: &str = "this tenant may not use this key on this agent";

/// The message of `KeyNotFoundException` (only ever sent to a tenant allowed that key name).
pub const KEY_NOT_FOUND_MESSAGE: &str = "the agent holds no key of this name";

/// The message of `ThrottlingException`.
pub const THROTTLED_MESSAGE: &str = "the agent's rate limit is exceeded; retry later";

/// The message of `DependencyTimeoutException` for an expired deadline.
pub const DEADLINE_MESSAGE: &str = "the request's deadline passed before the agent processed it";

/// The message of `InvalidCiphertextException`: one for every cause, so that a failed
/// decryption says nothing about which part was wrong.
pub const INVALID_CIPHERTEXT_MESSAGE: &str =
    "the ciphertext, authentication tag, initialization vector or additional authenticated \
     data is invalid for this key";

/// The message of `DependencyTimeoutException` when the HSM holding the key cannot be
/// reached (followed by the HSM's reason).
pub const HSM_UNAVAILABLE_MESSAGE: &str = "the agent's HSM is unavailable; retry later";

/// A request not served: the reason (for stats and logs) and the XKS error sent back.
#[derive(Debug)]
struct Refused {
    reason: Refusal,
    error: XksError,
    /// Why, for the log line, when the message alone does not say (an HSM's reason).
    detail: Option<String>,
}

impl Refused {
    fn new(reason: Refusal, name: XksErrorName, message: &str) -> Self {
        Self {
            reason,
            error: XksError::with_message(name, message),
            detail: None,
        }
    }

    /// An HSM operation that failed: a bad tag is a bad ciphertext like any other; an HSM
    /// out of reach is a dependency failure (the broker answers 503 and may retry); anything
    /// else is internal. The HSM's reason (a `CKR_*` value, the token's label) goes to the
    /// broker and the log: the customer's own agent speaking to the customer's own tenant.
    fn from_hsm(error: HsmOperationError) -> Self {
        let (reason, name, message, detail) = match error {
            HsmOperationError::InvalidCiphertext => return Self::invalid_ciphertext(),
            HsmOperationError::Unavailable(detail) => (
                Refusal::KeyUnavailable,
                XksErrorName::DependencyTimeoutException,
                HSM_UNAVAILABLE_MESSAGE,
                detail,
            ),
            HsmOperationError::Failed(detail) => (
                Refusal::Internal,
                XksErrorName::InternalException,
                "the agent's HSM failed to perform the operation",
                detail,
            ),
        };
        Self {
            reason,
            error: XksError::with_message(name, &format!("{message}: {detail}")),
            detail: Some(detail),
        }
    }

    /// `ValidationException`; `message` names the field, never its value.
    fn invalid(message: &str) -> Self {
        Self::new(Refusal::Invalid, XksErrorName::ValidationException, message)
    }

    fn invalid_ciphertext() -> Self {
        Self::new(
            Refusal::InvalidCiphertext,
            XksErrorName::InvalidCiphertextException,
            INVALID_CIPHERTEXT_MESSAGE,
        )
    }

    fn internal() -> Self {
        Self::new(
            Refusal::Internal,
            XksErrorName::InternalException,
            "the agent failed to perform the operation",
        )
    }
}

/// Answers the broker's requests. Shareable between threads (`&self` everywhere).
pub struct Service {
    agent_id: String,
    keys: KeyStore,
    allowlist: Allowlist,
    rate_limiter: RateLimiter,
    clock: Arc<dyn Clock>,
    counters: Counters,
}

impl Service {
    /// A service for the agent `agent_id` over `keys`, applying `allowlist` and `rate_limit`,
    /// reading time from `clock`.
    pub fn new(
        agent_id: impl Into<String>,
        keys: KeyStore,
        allowlist: Allowlist,
        rate_limit: RateLimit,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            agent_id: agent_id.into(),
            keys,
            allowlist,
            rate_limiter: RateLimiter::new(rate_limit),
            clock,
            counters: Counters::default(),
        }
    }

    /// The agent's id (as in its config and its hello).
    pub fn agent_id(&self) -> &str {
        &self.agent_id
    }

    /// What has been served and refused so far.
    pub fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    /// Whether answering `request` may block: it names a key held in the HSM (a PKCS#11
    /// call, as slow as the token is). The transport answers those off the connection's
    /// thread, so that a slow token delays neither other requests nor heartbeats.
    pub fn may_block(&self, request: &Request) -> bool {
        matches!(self.keys.get(&request.key_id), Some(StoredKey::Hsm(_)))
    }

    /// Answers `request`, which the transport received at `received`. Never fails: every
    /// refusal is an XKS error in the response, with the request's id.
    pub fn handle(&self, request: &Request, received: Instant) -> Response {
        let operation = request.operation.kind();
        let outcome = self.serve(request, received);
        let (principal, kms_request_id) = metadata_for_log(&request.operation);
        let result = match outcome {
            Ok(reply) => {
                self.counters.served(operation);
                tracing::info!(
                    agent_id = %self.agent_id,
                    request_id = request.id,
                    tenant = ?request.tenant,
                    key = ?request.key_id,
                    operation = %operation,
                    outcome = "served",
                    principal = ?principal.unwrap_or_default(),
                    kms_request_id = ?kms_request_id,
                    "operation served"
                );
                reply
            }
            Err(refused) => {
                self.counters.refused(refused.reason);
                tracing::warn!(
                    agent_id = %self.agent_id,
                    request_id = request.id,
                    tenant = ?request.tenant,
                    key = ?request.key_id,
                    operation = %operation,
                    outcome = refused.reason.as_str(),
                    error = %refused.error.error_name,
                    detail = refused.detail.as_deref(),
                    principal = ?principal.unwrap_or_default(),
                    kms_request_id = ?kms_request_id,
                    "operation refused"
                );
                Reply::Error(refused.error)
            }
        };
        Response {
            id: request.id,
            result,
        }
    }

    /// Answers a `request` frame that [`keybroker_agent_protocol::decode`] refused (a field
    /// out of the protocol's vocabulary, such as an unknown `encryptionAlgorithm`), so the
    /// broker hears `ValidationException` at once instead of waiting out its deadline.
    ///
    /// `None` when the text is not a JSON object of type `request` with a numeric `id` (or
    /// is over the frame size limit): the transport then treats it as a protocol error.
    /// Nothing of the text is logged but the id.
    pub fn handle_undecodable(&self, text: &str) -> Option<Response> {
        #[derive(serde::Deserialize)]
        struct RequestProbe<'a> {
            #[serde(rename = "type", borrow)]
            frame_type: std::borrow::Cow<'a, str>,
            id: u64,
        }
        if text.len() > keybroker_agent_protocol::MAX_FRAME_BYTES {
            return None;
        }
        let probe: RequestProbe = serde_json::from_str(text).ok()?;
        if probe.frame_type != "request" {
            return None;
        }
        self.counters.refused(Refusal::Invalid);
        tracing::warn!(
            agent_id = %self.agent_id,
            request_id = probe.id,
            outcome = Refusal::Invalid.as_str(),
            error = %XksErrorName::ValidationException,
            "request refused: a field is malformed or outside the protocol's vocabulary"
        );
        Some(Response {
            id: probe.id,
            result: Reply::Error(XksError::with_message(
                XksErrorName::ValidationException,
                "the request has a malformed field or a value this agent does not support",
            )),
        })
    }

    fn serve(&self, request: &Request, received: Instant) -> Result<Reply, Refused> {
        let now = self.clock.now();
        let deadline = received + Duration::from_millis(u64::from(request.deadline_ms));
        if now >= deadline {
            return Err(Refused::new(
                Refusal::DeadlineExpired,
                XksErrorName::DependencyTimeoutException,
                DEADLINE_MESSAGE,
            ));
        }
        if let Operation::Health(_) = &request.operation {
            return Ok(Reply::Health(metadata::health(&self.agent_id)));
        }
        let key = self.authorize(&request.tenant, &request.key_id)?;
        check_metadata_tenant(request)?;
        if !self.rate_limiter.try_acquire(now) {
            return Err(Refused::new(
                Refusal::Throttled,
                XksErrorName::ThrottlingException,
                THROTTLED_MESSAGE,
            ));
        }
        match &request.operation {
            Operation::GetKeyMetadata(_) => Ok(Reply::GetKeyMetadata(metadata::key_metadata())),
            Operation::Encrypt(body) => encrypt::encrypt(key, body).map(Reply::Encrypt),
            Operation::Decrypt(body) => decrypt::decrypt(key, body).map(Reply::Decrypt),
            Operation::Health(_) => Ok(Reply::Health(metadata::health(&self.agent_id))),
        }
    }

    /// The key `key_id` if `tenant` may use it. See the module docs for why a tenant not
    /// allowed the name hears "access denied" whether or not the key exists.
    fn authorize(&self, tenant: &str, key_id: &str) -> Result<&StoredKey, Refused> {
        if !self.allowlist.permits(tenant, key_id) {
            return Err(Refused::new(
                Refusal::AccessDenied,
                XksErrorName::AccessDeniedException,
                ACCESS_DENIED_MESSAGE,
            ));
        }
        self.keys.get(key_id).ok_or_else(|| {
            Refused::new(
                Refusal::KeyNotFound,
                XksErrorName::KeyNotFoundException,
                KEY_NOT_FOUND_MESSAGE,
            )
        })
    }
}

impl std::fmt::Debug for Service {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Service")
            .field("agent_id", &self.agent_id)
            .field("keys", &self.keys)
            .field("allowlist", &self.allowlist)
            .field("rate_limit", &self.rate_limiter.limit())
            .finish_non_exhaustive()
    }
}

/// The XKS metadata's `keybrokerTenantId`, when the broker sets it, must name the request's
/// tenant: the allowlist was checked against `Request.tenant`, and the two disagreeing means
/// the broker is confused about whom it is asking for.
fn check_metadata_tenant(request: &Request) -> Result<(), Refused> {
    let metadata_tenant = match &request.operation {
        Operation::GetKeyMetadata(body) => body.request_metadata.keybroker_tenant_id.as_deref(),
        Operation::Encrypt(body) => body.request_metadata.keybroker_tenant_id.as_deref(),
        Operation::Decrypt(body) => body.request_metadata.keybroker_tenant_id.as_deref(),
        Operation::Health(_) => None,
    };
    match metadata_tenant {
        Some(tenant) if tenant != request.tenant => Err(Refused::invalid(
            "requestMetadata.keybrokerTenantId differs from the request's tenant",
        )),
        _ => Ok(()),
    }
}

/// The broker-side principal and request id from the XKS metadata, for the log.
fn metadata_for_log(operation: &Operation) -> (Option<&str>, &str) {
    match operation {
        Operation::GetKeyMetadata(body) => (
            Some(&body.request_metadata.aws_principal_arn),
            &body.request_metadata.kms_request_id,
        ),
        Operation::Encrypt(body) => (
            Some(&body.request_metadata.aws_principal_arn),
            &body.request_metadata.kms_request_id,
        ),
        Operation::Decrypt(body) => (
            Some(&body.request_metadata.aws_principal_arn),
            &body.request_metadata.kms_request_id,
        ),
        Operation::Health(body) => (None, &body.request_metadata.kms_request_id),
    }
}
