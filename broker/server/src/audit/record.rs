//! What one audit line holds (keybroker's audit format, modelled on Vault's file audit
//! device: a `request` record before the operation and a `response` record after it).
//!
//! Identity values that could serve as credentials (token, accessor, secret_id accessor)
//! enter a record only through [`AuthBuilder`], which HMACs them with the sink's salt, so
//! the raw value never exists in a record. Request and response bodies are never recorded.

use std::time::Duration;

use keybroker_core::TenantId;
use serde::{Deserialize, Serialize};

use super::AuditSink;

/// Whether a record was written before the operation or after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordKind {
    /// Written before the operation runs; if it cannot be written, the operation is refused.
    Request,
    /// Written after the operation, with its status and latency.
    Response,
}

/// One audit line.
///
/// Built by the HTTP layer with [`AuditRecord::request`] and [`AuditRecord::to_response`];
/// the sink stamps `time`, `sequence`, `prev` and `chain` when it writes the record.
/// `prev` and `chain` are read from a line but never serialised with the record: the sink
/// computes the chain over the serialised record and appends both.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    #[serde(rename = "type")]
    kind: RecordKind,
    /// RFC 3339, stamped by the sink.
    #[serde(default)]
    time: String,
    /// Position in the sink's chain, from 1, stamped by the sink.
    #[serde(default)]
    sequence: u64,
    request_id: String,
    /// Tenant (namespace) name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tenant: Option<String>,
    /// Tenant id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tenant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<AuditAuth>,
    request: AuditRequest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    response: Option<AuditResponse>,
    /// Previous line's chain MAC, hex (empty on the first line).
    #[serde(default, skip_serializing)]
    prev: String,
    /// This line's chain MAC, hex.
    #[serde(default, skip_serializing)]
    chain: String,
}

/// Who made the request. Only [`AuthBuilder`] makes one, so credentials are always hashed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditAuth {
    /// `hmac-sha256:…` of the client token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_token: Option<String>,
    /// `hmac-sha256:…` of the token accessor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    accessor: Option<String>,
    /// Policies of the token.
    #[serde(default)]
    policies: Vec<String>,
    /// `service`, `batch`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_type: Option<String>,
    /// AppRole role name the token came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<String>,
    /// `hmac-sha256:…` of the AppRole secret_id accessor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret_id_accessor: Option<String>,
    /// Token display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    display_name: Option<String>,
}

/// What was asked. Never the body.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRequest {
    /// Vault operation: `create`, `read`, `update`, `delete`, `list`.
    pub operation: String,
    /// Canonical request path, without `/v1/` and the namespace prefix.
    pub path: String,
    /// Client address as the broker resolved it (after trusted proxies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_address: Option<String>,
    /// Namespace as the client addressed it (`acme/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// How it ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditResponse {
    /// HTTP status.
    pub status: u16,
    /// Time from the request record to the response, in milliseconds (µs resolution).
    pub latency_ms: f64,
    /// The error message the client was given, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl AuditRecord {
    /// A request record: written before the operation runs.
    pub fn request(
        request_id: impl Into<String>,
        operation: impl Into<String>,
        path: impl Into<String>,
    ) -> Self {
        Self {
            kind: RecordKind::Request,
            time: String::new(),
            sequence: 0,
            request_id: request_id.into(),
            tenant: None,
            tenant_id: None,
            auth: None,
            request: AuditRequest {
                operation: operation.into(),
                path: path.into(),
                remote_address: None,
                namespace: None,
            },
            response: None,
            prev: String::new(),
            chain: String::new(),
        }
    }

    /// Sets the client address.
    pub fn with_remote_address(mut self, address: impl ToString) -> Self {
        self.request.remote_address = Some(address.to_string());
        self
    }

    /// Sets the namespace as the client addressed it.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.request.namespace = Some(namespace.into());
        self
    }

    /// Sets the tenant the request was resolved to.
    pub fn with_tenant(mut self, name: &str, id: TenantId) -> Self {
        self.tenant = Some(name.to_owned());
        self.tenant_id = Some(id.to_string());
        self
    }

    /// Sets who made the request (see [`AuditAuth::builder`]).
    pub fn with_auth(mut self, auth: AuditAuth) -> Self {
        self.auth = Some(auth);
        self
    }

    /// The response record of this request: the same identity and request, with the
    /// outcome. `error` is the message the client was given (never a body).
    pub fn to_response(&self, status: u16, latency: Duration, error: Option<&str>) -> Self {
        let mut response = self.clone();
        response.kind = RecordKind::Response;
        response.time.clear();
        response.sequence = 0;
        response.prev.clear();
        response.chain.clear();
        // Microsecond resolution: most operations take well under a millisecond.
        let micros = u32::try_from(latency.as_micros()).unwrap_or(u32::MAX);
        response.response = Some(AuditResponse {
            status,
            latency_ms: f64::from(micros) / 1000.0,
            error: error.map(str::to_owned),
        });
        response
    }

    /// Request or response.
    pub fn kind(&self) -> RecordKind {
        self.kind
    }

    /// The request id (the same in a request and its response).
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The sequence number stamped by the sink (0 before it is written).
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Who made the request.
    pub fn auth(&self) -> Option<&AuditAuth> {
        self.auth.as_ref()
    }

    /// What was asked.
    pub fn request_info(&self) -> &AuditRequest {
        &self.request
    }

    /// How it ended (response records).
    pub fn response_info(&self) -> Option<&AuditResponse> {
        self.response.as_ref()
    }

    /// Stamps what the sink decides: time and position.
    pub(crate) fn stamp(&mut self, time: &str, sequence: u64) {
        time.clone_into(&mut self.time);
        self.sequence = sequence;
    }
}

impl AuditAuth {
    /// Starts an identity whose credentials are hashed with `sink`'s salt.
    pub fn builder(sink: &dyn AuditSink) -> AuthBuilder<'_> {
        AuthBuilder {
            sink,
            auth: AuditAuth::default(),
        }
    }

    /// `hmac-sha256:…` of the client token.
    pub fn client_token(&self) -> Option<&str> {
        self.client_token.as_deref()
    }

    /// `hmac-sha256:…` of the token accessor.
    pub fn accessor(&self) -> Option<&str> {
        self.accessor.as_deref()
    }

    /// `hmac-sha256:…` of the secret_id accessor.
    pub fn secret_id_accessor(&self) -> Option<&str> {
        self.secret_id_accessor.as_deref()
    }

    /// Policies.
    pub fn policies(&self) -> &[String] {
        &self.policies
    }
}

/// Fills an [`AuditAuth`]; credential setters take the raw value and keep only its HMAC.
pub struct AuthBuilder<'a> {
    sink: &'a dyn AuditSink,
    auth: AuditAuth,
}

impl std::fmt::Debug for AuthBuilder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthBuilder")
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl AuthBuilder<'_> {
    fn hashed(&self, raw: &str) -> Option<String> {
        (!raw.is_empty()).then(|| self.sink.hash(raw))
    }

    /// The client token (stored hashed).
    pub fn client_token(mut self, token: &str) -> Self {
        self.auth.client_token = self.hashed(token);
        self
    }

    /// The token accessor (stored hashed, as Vault's `hmac_accessor` default).
    pub fn accessor(mut self, accessor: &str) -> Self {
        self.auth.accessor = self.hashed(accessor);
        self
    }

    /// The AppRole secret_id accessor (stored hashed).
    pub fn secret_id_accessor(mut self, accessor: &str) -> Self {
        self.auth.secret_id_accessor = self.hashed(accessor);
        self
    }

    /// The token's policies.
    pub fn policies<I, S>(mut self, policies: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.auth.policies = policies.into_iter().map(Into::into).collect();
        self
    }

    /// `service` or `batch`.
    pub fn token_type(mut self, token_type: &str) -> Self {
        self.auth.token_type = Some(token_type.to_owned());
        self
    }

    /// The AppRole role name.
    pub fn role(mut self, role: &str) -> Self {
        self.auth.role = Some(role.to_owned());
        self
    }

    /// The token's display name.
    pub fn display_name(mut self, name: &str) -> Self {
        self.auth.display_name = Some(name.to_owned());
        self
    }

    /// The identity.
    pub fn build(self) -> AuditAuth {
        self.auth
    }
}

#[cfg(test)]
mod tests {
    use base64::{
        engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD},
        Engine as _,
    };

    use super::*;
    use crate::audit::file::tests::Fixture;

    /// Every encoding of `secret` a careless writer might produce.
    fn encodings(secret: &str) -> Vec<String> {
        let bytes = secret.as_bytes();
        vec![
            secret.to_owned(),
            STANDARD.encode(bytes),
            STANDARD_NO_PAD.encode(bytes),
            URL_SAFE.encode(bytes),
            URL_SAFE_NO_PAD.encode(bytes),
            hex::encode(bytes),
            hex::encode_upper(bytes),
        ]
    }

    #[tokio::test]
    async fn credentials_appear_only_as_their_hmac() {
        let fixture = Fixture::new().await;
        let sink = fixture.sink().await.unwrap();
        let token = "kbs.CANARY-token-5f2b9c71e0";
        let accessor = "CANARY-accessor-8d41a7";
        let secret_id_accessor = "CANARY-sid-accessor-3e9f0b";
        let auth = AuditAuth::builder(&sink)
            .client_token(token)
            .accessor(accessor)
            .secret_id_accessor(secret_id_accessor)
            .policies(["app-enc"])
            .token_type("service")
            .role("billing")
            .display_name("approle")
            .build();
        assert_eq!(auth.client_token(), Some(sink.hash(token).as_str()));
        assert_eq!(auth.accessor(), Some(sink.hash(accessor).as_str()));
        assert_eq!(
            auth.secret_id_accessor(),
            Some(sink.hash(secret_id_accessor).as_str())
        );
        let request = AuditRecord::request("r-1", "update", "transit/encrypt/orders")
            .with_tenant("acme", TenantId::ROOT)
            .with_auth(auth);
        let in_memory = format!("{request:?}{}", serde_json::to_string(&request).unwrap());
        sink.log(request.clone()).await.unwrap();
        sink.log(request.to_response(403, Duration::from_millis(2), Some("permission denied")))
            .await
            .unwrap();
        let file = std::fs::read_to_string(fixture.log_path()).unwrap();
        assert_eq!(file.lines().count(), 2);
        for secret in [token, accessor, secret_id_accessor] {
            for encoded in encodings(secret) {
                assert!(!file.contains(&encoded), "{encoded} found in the log");
                assert!(
                    !in_memory.contains(&encoded),
                    "{encoded} found in the record"
                );
            }
            assert!(file.contains(&sink.hash(secret)));
        }
        let line: serde_json::Value = serde_json::from_str(file.lines().next().unwrap()).unwrap();
        assert_eq!(line["auth"]["role"], "billing");
        assert_eq!(line["auth"]["policies"][0], "app-enc");
    }

    #[test]
    fn a_response_keeps_the_request_and_adds_the_outcome() {
        let request = AuditRecord::request("r-2", "read", "sys/health")
            .with_remote_address("10.0.0.1")
            .with_namespace("acme/");
        let response = request.to_response(503, Duration::from_micros(1500), Some("sealed"));
        assert_eq!(response.kind(), RecordKind::Response);
        assert_eq!(response.request_id(), "r-2");
        assert_eq!(response.request_info(), request.request_info());
        let outcome = response.response_info().unwrap();
        assert_eq!(outcome.status, 503);
        assert_eq!(outcome.latency_ms, 1.5);
        assert_eq!(outcome.error.as_deref(), Some("sealed"));
        assert!(request.response_info().is_none());
    }
}
