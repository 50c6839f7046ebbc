//! Frames: one JSON object per WebSocket text message, tagged by `"type"`, at most
//! [`MAX_FRAME_BYTES`], read with [`decode`] and written with [`encode`].

use std::fmt;
use std::io;

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::encoding;
use crate::xks::{
    DecryptRequest, DecryptResponse, EncryptRequest, EncryptResponse, GetKeyMetadataRequest,
    GetKeyMetadataResponse, HealthRequest, HealthResponse, XksError,
};

/// The protocol version an agent announces in [`Hello::protocol`]. The broker refuses others.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest frame either side sends or accepts, in bytes of JSON text (ARCHITECTURE.md §6). An XKS
/// body with the spec's largest inputs (4300 bytes of plaintext, 8192 of AAD) fits well.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// One WebSocket text message.
// A frame lives for one message; a few hundred bytes on the stack beat a box per request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Frame {
    /// Agent → broker, first frame: who the agent claims to be.
    Hello(Hello),
    /// Broker → agent: the broker's fresh nonce to sign.
    Challenge(Challenge),
    /// Agent → broker: the signature over the handshake transcript.
    Proof(Proof),
    /// Broker → agent: authenticated; the connection's settings.
    Welcome(Welcome),
    /// Broker → agent: not authenticated (or not now); the broker closes the connection.
    Refused(Refused),
    /// Broker → agent: one key operation.
    Request(Request),
    /// Agent → broker: the outcome of the request with the same id.
    Response(Response),
    /// Either way: are you there?
    Heartbeat(Heartbeat),
    /// Either way: the answer to the heartbeat with the same `seq`.
    HeartbeatAck(Heartbeat),
}

/// The `"type"` values of [`Frame`], for error messages that must not quote the input.
const FRAME_TYPES: [&str; 9] = [
    "hello",
    "challenge",
    "proof",
    "welcome",
    "refused",
    "request",
    "response",
    "heartbeat",
    "heartbeatAck",
];

/// Handshake step 1 (agent → broker). Built by [`crate::AgentIdentity::hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the agent.
    pub protocol: u32,
    /// The agent's configured id (e.g. `acme-dc1`): selects the pin in the gateway config.
    pub agent_id: String,
    /// The agent's Ed25519 public key; its SHA-256 is the pin.
    #[serde(with = "encoding::array32")]
    pub public_key: [u8; 32],
    /// 32 fresh random bytes from the agent (see [`crate::random_nonce`]).
    #[serde(with = "encoding::array32")]
    pub agent_nonce: [u8; 32],
}

/// Handshake step 2 (broker → agent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Challenge {
    /// 32 fresh random bytes from the broker, never reused.
    #[serde(with = "encoding::array32")]
    pub broker_nonce: [u8; 32],
}

/// Handshake step 3 (agent → broker). Built by [`crate::AgentIdentity::prove`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Proof {
    /// Ed25519 signature over the transcript. Any length is accepted on the wire so that a
    /// bad one fails authentication like any other bad proof.
    #[serde(with = "encoding::bytes")]
    pub signature: Vec<u8>,
}

/// Handshake step 4, success (broker → agent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Welcome {
    /// How often each side sends a heartbeat; three missed intervals mean the peer is gone.
    pub heartbeat_interval_ms: u32,
    /// The broker's default per-request deadline (each request carries its own).
    pub request_timeout_ms: u32,
    /// Tenants the gateway config lets this agent serve. The agent further applies its own
    /// allowlist.
    pub tenants: Vec<String>,
}

/// Handshake step 4, failure (broker → agent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Refused {
    /// Why, in words fit for the agent's log. Authentication failures all read the same.
    pub reason: String,
}

/// A key operation (broker → agent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Request {
    /// Chosen by the broker (see [`crate::Inflight`]), unique for the connection's life.
    pub id: u64,
    /// The keybroker tenant asking; the agent checks it against its allowlist.
    pub tenant: String,
    /// The agent-side name of the key (the agent's config maps it to key material).
    pub key_id: String,
    /// How long the broker will wait; the agent may drop work it cannot finish in time.
    pub deadline_ms: u32,
    /// What to do.
    pub operation: Operation,
}

/// The XKS operation of a [`Request`], tagged by `"op"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Operation {
    /// XKS GetKeyMetadata.
    GetKeyMetadata(GetKeyMetadataRequest),
    /// XKS Encrypt.
    Encrypt(EncryptRequest),
    /// XKS Decrypt.
    Decrypt(DecryptRequest),
    /// XKS GetHealthStatus.
    Health(HealthRequest),
}

/// Which operation, without its body: what the broker remembers about a request in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperationKind {
    /// XKS GetKeyMetadata.
    GetKeyMetadata,
    /// XKS Encrypt.
    Encrypt,
    /// XKS Decrypt.
    Decrypt,
    /// XKS GetHealthStatus.
    Health,
}

impl OperationKind {
    /// The `"op"` tag of this operation.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GetKeyMetadata => "getKeyMetadata",
            Self::Encrypt => "encrypt",
            Self::Decrypt => "decrypt",
            Self::Health => "health",
        }
    }
}

impl fmt::Display for OperationKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl Operation {
    /// Which operation this is.
    pub fn kind(&self) -> OperationKind {
        match self {
            Self::GetKeyMetadata(_) => OperationKind::GetKeyMetadata,
            Self::Encrypt(_) => OperationKind::Encrypt,
            Self::Decrypt(_) => OperationKind::Decrypt,
            Self::Health(_) => OperationKind::Health,
        }
    }
}

/// The outcome of a request (agent → broker).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Response {
    /// The id of the request answered. An id the broker is not waiting for (unknown, or
    /// already timed out) is dropped: it must never complete another request.
    pub id: u64,
    /// The XKS response body, or the XKS error.
    pub result: Reply,
}

/// The body of a [`Response`], tagged by `"op"` like the request it answers, or `"error"`.
///
/// The tag is on the wire so that a body can be checked against the request it claims to
/// answer: [`Reply::check`] or, typed, [`XksCall::take_reply`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Reply {
    /// Answer to [`Operation::GetKeyMetadata`].
    GetKeyMetadata(GetKeyMetadataResponse),
    /// Answer to [`Operation::Encrypt`].
    Encrypt(EncryptResponse),
    /// Answer to [`Operation::Decrypt`].
    Decrypt(DecryptResponse),
    /// Answer to [`Operation::Health`].
    Health(HealthResponse),
    /// Any operation failed, with the XKS error.
    Error(XksError),
}

impl Reply {
    /// The operation this reply answers; `None` for an error, which may answer any.
    pub fn kind(&self) -> Option<OperationKind> {
        match self {
            Self::GetKeyMetadata(_) => Some(OperationKind::GetKeyMetadata),
            Self::Encrypt(_) => Some(OperationKind::Encrypt),
            Self::Decrypt(_) => Some(OperationKind::Decrypt),
            Self::Health(_) => Some(OperationKind::Health),
            Self::Error(_) => None,
        }
    }

    /// This reply if it can answer a request of kind `expected` (its body is of that kind,
    /// or it is an error), else [`ProtocolError::MismatchedReply`].
    pub fn check(self, expected: OperationKind) -> Result<Self, ProtocolError> {
        match self.kind() {
            Some(received) if received != expected => {
                Err(ProtocolError::MismatchedReply { expected, received })
            }
            _ => Ok(self),
        }
    }
}

/// An XKS request body together with the type of its answer, so a caller that sent an
/// [`EncryptRequest`] gets back an [`EncryptResponse`] or an [`XksError`], never another body.
pub trait XksCall: Into<Operation> {
    /// The XKS response body that answers this request.
    type Reply;
    /// The operation.
    const KIND: OperationKind;
    /// The typed outcome of `reply`, or [`ProtocolError::MismatchedReply`] if the agent
    /// answered with another operation's body.
    fn take_reply(reply: Reply) -> Result<Result<Self::Reply, XksError>, ProtocolError>;
}

macro_rules! xks_call {
    ($request:ty, $response:ty, $variant:ident) => {
        impl From<$request> for Operation {
            fn from(request: $request) -> Self {
                Self::$variant(request)
            }
        }

        impl XksCall for $request {
            type Reply = $response;
            const KIND: OperationKind = OperationKind::$variant;
            fn take_reply(reply: Reply) -> Result<Result<$response, XksError>, ProtocolError> {
                match reply.check(Self::KIND)? {
                    Reply::$variant(body) => Ok(Ok(body)),
                    Reply::Error(error) => Ok(Err(error)),
                    other => Err(ProtocolError::MismatchedReply {
                        expected: Self::KIND,
                        // `check` let through only this kind or an error.
                        received: other.kind().unwrap_or(Self::KIND),
                    }),
                }
            }
        }
    };
}

xks_call!(
    GetKeyMetadataRequest,
    GetKeyMetadataResponse,
    GetKeyMetadata
);
xks_call!(EncryptRequest, EncryptResponse, Encrypt);
xks_call!(DecryptRequest, DecryptResponse, Decrypt);
xks_call!(HealthRequest, HealthResponse, Health);

/// Liveness probe (`heartbeat`) and its answer (`heartbeatAck`), either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Heartbeat {
    /// Increases by one per heartbeat sent; the ack echoes it.
    pub seq: u64,
}

/// Why a frame could not be read or written.
///
/// No variant carries text from the frame: frames hold plaintext and key ids, and these
/// errors get logged. That is also why serde_json's error is not kept as a `#[source]`: its
/// messages quote the offending input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A received frame is over the cap; it was refused before parsing.
    #[error("frame of {size} bytes exceeds the {limit}-byte limit")]
    FrameTooLarge {
        /// Size of the received text in bytes.
        size: usize,
        /// [`MAX_FRAME_BYTES`].
        limit: usize,
    },
    /// A frame to send would be over the cap; serializing stopped at the cap.
    #[error("frame to send exceeds the {limit}-byte limit")]
    FrameTooLargeToSend {
        /// [`MAX_FRAME_BYTES`].
        limit: usize,
    },
    /// The text is not JSON.
    #[error("malformed frame: not valid JSON (line {line}, column {column})")]
    NotJson {
        /// Line of the first error, from 1.
        line: usize,
        /// Column of the first error, from 1.
        column: usize,
    },
    /// The JSON is not an object with a known `"type"`.
    #[error(
        "malformed frame: not an object with a known \"type\" (hello, challenge, proof, \
         welcome, refused, request, response, heartbeat, heartbeatAck)"
    )]
    UnknownType,
    /// A known frame type whose fields are missing, unknown, of the wrong type or invalid
    /// (e.g. bad base64, a nonce not 32 bytes, an unknown `"op"`).
    #[error(
        "malformed frame: {frame_type} frame with missing, unknown or invalid fields \
         (line {line}, column {column})"
    )]
    InvalidFields {
        /// The frame's `"type"`.
        frame_type: &'static str,
        /// Line where parsing stopped, from 1.
        line: usize,
        /// Column where parsing stopped, from 1.
        column: usize,
    },
    /// A response body answers another operation than the request with its id.
    #[error("reply carries a {received} body for a {expected} request")]
    MismatchedReply {
        /// The operation of the request.
        expected: OperationKind,
        /// The operation the body answers.
        received: OperationKind,
    },
    /// A frame could not be serialized (not expected to happen with these types).
    #[error("frame could not be serialized")]
    Encode,
}

/// Serializes `frame` to the JSON text of one WebSocket message.
///
/// Serializing stops as soon as the output would exceed [`MAX_FRAME_BYTES`], so an
/// oversized body costs at most that much memory. The buffer is allocated once at full size
/// (no reallocation leaves copies of plaintext behind) and wiped if encoding fails. The
/// returned text holds any plaintext of the frame in base64: the caller should drop it as
/// soon as it is sent.
pub fn encode(frame: &Frame) -> Result<String, ProtocolError> {
    let mut writer = CappedWriter {
        buffer: Zeroizing::new(Vec::with_capacity(MAX_FRAME_BYTES)),
        exceeded: false,
    };
    if serde_json::to_writer(&mut writer, frame).is_err() {
        return Err(if writer.exceeded {
            ProtocolError::FrameTooLargeToSend {
                limit: MAX_FRAME_BYTES,
            }
        } else {
            ProtocolError::Encode
        });
    }
    let bytes = std::mem::take(&mut *writer.buffer);
    String::from_utf8(bytes).map_err(|error| {
        error.into_bytes().zeroize();
        ProtocolError::Encode
    })
}

/// Collects output up to [`MAX_FRAME_BYTES`] and fails the write beyond it.
struct CappedWriter {
    buffer: Zeroizing<Vec<u8>>,
    exceeded: bool,
}

impl io::Write for CappedWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.buffer.len().saturating_add(bytes.len()) > MAX_FRAME_BYTES {
            self.exceeded = true;
            return Err(io::Error::other("frame size limit"));
        }
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Parses the text of one WebSocket message.
///
/// Text over [`MAX_FRAME_BYTES`] is refused by its length alone, before any parsing.
/// Errors say what is wrong and where, never what the frame contained.
pub fn decode(text: &str) -> Result<Frame, ProtocolError> {
    if text.len() > MAX_FRAME_BYTES {
        return Err(ProtocolError::FrameTooLarge {
            size: text.len(),
            limit: MAX_FRAME_BYTES,
        });
    }
    serde_json::from_str(text).map_err(|error| classify(text, &error))
}

/// Turns serde_json's error (whose message may quote the input) into a [`ProtocolError`].
fn classify(text: &str, error: &serde_json::Error) -> ProtocolError {
    use serde_json::error::Category;
    let (line, column) = (error.line(), error.column());
    match error.classify() {
        Category::Syntax | Category::Eof | Category::Io => ProtocolError::NotJson { line, column },
        Category::Data => {
            // Valid JSON that does not fit: look at "type" alone to say which frame it was.
            #[derive(Deserialize)]
            struct TypeOnly<'a> {
                #[serde(rename = "type", borrow, default)]
                frame_type: Option<std::borrow::Cow<'a, str>>,
            }
            let frame_type = serde_json::from_str::<TypeOnly>(text)
                .ok()
                .and_then(|probe| probe.frame_type)
                .and_then(|name| FRAME_TYPES.iter().copied().find(|known| *known == name));
            match frame_type {
                Some(frame_type) => ProtocolError::InvalidFields {
                    frame_type,
                    line,
                    column,
                },
                None => ProtocolError::UnknownType,
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::encoding::SecretBytes;
    use crate::xks::*;

    fn metadata() -> RequestMetadata {
        RequestMetadata {
            aws_principal_arn: "entity:42".into(),
            kms_operation: "transit/decrypt".into(),
            kms_request_id: "b7c1".into(),
            kms_key_arn: Some("transit/keys/data".into()),
            kms_via_service: None,
            aws_source_vpc: None,
            aws_source_vpce: None,
            keybroker_tenant_id: Some("acme".into()),
        }
    }

    fn request(id: u64, operation: Operation) -> Frame {
        Frame::Request(Request {
            id,
            tenant: "acme".into(),
            key_id: "acme-main".into(),
            deadline_ms: 250,
            operation,
        })
    }

    fn encrypt_request() -> EncryptRequest {
        EncryptRequest {
            request_metadata: metadata(),
            plaintext: SecretBytes::new(b"TOP-SECRET-PLAINTEXT".to_vec()),
            encryption_algorithm: EncryptionAlgorithm::AesGcm,
            additional_authenticated_data: Some(b"context".to_vec()),
            ciphertext_data_integrity_value_algorithm: Some(DataIntegrityAlgorithm::Sha256),
        }
    }

    fn encrypt_response() -> EncryptResponse {
        EncryptResponse {
            authentication_tag: vec![0xaa; 16],
            ciphertext: vec![0x01, 0xfe, 0x7f],
            initialization_vector: vec![0x55; 12],
            ciphertext_metadata: Some(b"v=2".to_vec()),
            ciphertext_data_integrity_value: Some(vec![0x11; 32]),
        }
    }

    fn every_frame() -> Vec<Frame> {
        vec![
            Frame::Hello(Hello {
                protocol: PROTOCOL_VERSION,
                agent_id: "acme-dc1".into(),
                public_key: [3; 32],
                agent_nonce: [4; 32],
            }),
            Frame::Challenge(Challenge {
                broker_nonce: [5; 32],
            }),
            Frame::Proof(Proof {
                signature: vec![6; 64],
            }),
            Frame::Welcome(Welcome {
                heartbeat_interval_ms: 5000,
                request_timeout_ms: 250,
                tenants: vec!["acme".into(), "acme-eu".into()],
            }),
            Frame::Refused(Refused {
                reason: "agent authentication failed".into(),
            }),
            request(
                1,
                Operation::GetKeyMetadata(GetKeyMetadataRequest {
                    request_metadata: metadata(),
                }),
            ),
            request(2, Operation::Encrypt(encrypt_request())),
            request(
                3,
                Operation::Decrypt(DecryptRequest {
                    request_metadata: metadata(),
                    encryption_algorithm: EncryptionAlgorithm::AesGcm,
                    ciphertext: vec![1, 2, 3],
                    initialization_vector: vec![9; 16],
                    authentication_tag: vec![8; 16],
                    additional_authenticated_data: None,
                    ciphertext_metadata: Some(vec![0]),
                }),
            ),
            request(
                u64::MAX,
                Operation::Health(HealthRequest {
                    request_metadata: HealthRequestMetadata {
                        kms_request_id: "h1".into(),
                        kms_operation: "KmsHealthCheck".into(),
                        keybroker_tenant_id: None,
                    },
                }),
            ),
            Frame::Response(Response {
                id: 1,
                result: Reply::GetKeyMetadata(GetKeyMetadataResponse {
                    key_spec: KeySpec::Aes256,
                    key_usage: vec![KeyUsage::Encrypt, KeyUsage::Decrypt],
                    key_status: KeyStatus::Enabled,
                }),
            }),
            Frame::Response(Response {
                id: 2,
                result: Reply::Encrypt(encrypt_response()),
            }),
            Frame::Response(Response {
                id: 3,
                result: Reply::Decrypt(DecryptResponse {
                    plaintext: SecretBytes::new(vec![0, 255, 10]),
                }),
            }),
            Frame::Response(Response {
                id: 4,
                result: Reply::Health(HealthResponse {
                    xks_proxy_fleet_size: 1,
                    xks_proxy_vendor: "keybroker".into(),
                    xks_proxy_model: "keybroker-agent 0.1.0".into(),
                    ekm_vendor: "SoftHSM".into(),
                    ekm_fleet_details: vec![EkmFleetDetail {
                        id: "slot-0".into(),
                        model: "SoftHSM 2.6".into(),
                        health_status: HealthStatus::Active,
                    }],
                }),
            }),
            Frame::Response(Response {
                id: 5,
                result: Reply::Error(XksError::with_message(
                    XksErrorName::AccessDeniedException,
                    "tenant not allowed",
                )),
            }),
            Frame::Heartbeat(Heartbeat { seq: 7 }),
            Frame::HeartbeatAck(Heartbeat { seq: 7 }),
        ]
    }

    #[test]
    fn every_frame_round_trips() {
        for frame in every_frame() {
            let text = encode(&frame).unwrap();
            assert_eq!(decode(&text).unwrap(), frame, "{text}");
        }
    }

    #[test]
    fn frame_json_shape() {
        let text = encode(&Frame::HeartbeatAck(Heartbeat { seq: 9 })).unwrap();
        assert_eq!(text, r#"{"type":"heartbeatAck","seq":9}"#);

        let text = encode(&Frame::Challenge(Challenge {
            broker_nonce: [0; 32],
        }))
        .unwrap();
        assert_eq!(
            text,
            r#"{"type":"challenge","brokerNonce":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}"#
        );

        let text = encode(&request(2, Operation::Encrypt(encrypt_request()))).unwrap();
        assert!(
            text.starts_with(
                r#"{"type":"request","id":2,"tenant":"acme","keyId":"acme-main","deadlineMs":250,"operation":{"op":"encrypt","requestMetadata":{"#
            ),
            "{text}"
        );
        // Plaintext travels as standard base64.
        assert!(
            text.contains(r#""plaintext":"VE9QLVNFQ1JFVC1QTEFJTlRFWFQ=""#),
            "{text}"
        );

        let text = encode(&Frame::Response(Response {
            id: 5,
            result: Reply::Error(XksError::new(XksErrorName::KeyNotFoundException)),
        }))
        .unwrap();
        assert_eq!(
            text,
            r#"{"type":"response","id":5,"result":{"op":"error","errorName":"KeyNotFoundException"}}"#
        );
    }

    #[test]
    fn the_spec_encrypt_example_parses_inside_a_request_frame() {
        let text = r#"{"type":"request","id":1,"tenant":"acme","keyId":"k","deadlineMs":250,
            "operation":{"op":"encrypt",
              "requestMetadata":{"awsPrincipalArn":"arn:aws:iam::123456789012:user/Alice",
                "kmsKeyArn":"arn:aws:kms:us-east-2:123456789012:/key/1234abcd-12ab-34cd-56ef-1234567890ab",
                "kmsOperation":"Encrypt","kmsRequestId":"4112f4d6-db54-4af4-ae30-c55a22a8dfae",
                "kmsViaService":"ebs"},
              "additionalAuthenticatedData":"cHJvamVjdD1uaWxlLGRlcGFydG1lbnQ9bWFya2V0aW5n",
              "plaintext":"SGVsbG8gV29ybGQh","encryptionAlgorithm":"AES_GCM",
              "ciphertextDataIntegrityValueAlgorithm":"SHA_256"}}"#;
        let Frame::Request(request) = decode(text).unwrap() else {
            panic!("not a request");
        };
        let Operation::Encrypt(body) = request.operation else {
            panic!("not encrypt");
        };
        assert_eq!(body.plaintext.expose(), b"Hello World!");
    }

    #[test]
    fn oversized_frames_are_refused_on_encode() {
        let frame = request(
            1,
            Operation::Encrypt(EncryptRequest {
                plaintext: SecretBytes::new(vec![0x41; MAX_FRAME_BYTES]),
                ..encrypt_request()
            }),
        );
        assert_eq!(
            encode(&frame),
            Err(ProtocolError::FrameTooLargeToSend {
                limit: MAX_FRAME_BYTES
            })
        );
        // Just under the cap is fine: 3/4 of the cap in bytes is the cap in base64, minus
        // room for the rest of the frame.
        let frame = request(
            1,
            Operation::Encrypt(EncryptRequest {
                plaintext: SecretBytes::new(vec![0x41; MAX_FRAME_BYTES / 4 * 3 - 1024]),
                ..encrypt_request()
            }),
        );
        let text = encode(&frame).unwrap();
        assert!(text.len() <= MAX_FRAME_BYTES);
        assert_eq!(decode(&text).unwrap(), frame);
    }

    #[test]
    fn oversized_frames_are_refused_on_decode_by_length_alone() {
        // 10 MB that is not even JSON: refusal by length, before the parser sees a byte
        // (a parse attempt would report NotJson instead).
        let huge = "x".repeat(10 * 1024 * 1024);
        assert_eq!(
            decode(&huge),
            Err(ProtocolError::FrameTooLarge {
                size: 10 * 1024 * 1024,
                limit: MAX_FRAME_BYTES
            })
        );
        // One byte over the cap, otherwise a valid frame: still refused.
        let mut text = encode(&Frame::Heartbeat(Heartbeat { seq: 1 })).unwrap();
        text.insert_str(
            text.len() - 1,
            &" ".repeat(MAX_FRAME_BYTES + 1 - text.len()),
        );
        assert_eq!(text.len(), MAX_FRAME_BYTES + 1);
        assert!(matches!(
            decode(&text),
            Err(ProtocolError::FrameTooLarge { .. })
        ));
        // Drop one of the padding spaces (just before the closing brace).
        text.remove(text.len() - 2);
        assert!(decode(&text).is_ok(), "exactly the cap is accepted");
    }

    #[test]
    fn malformed_frames_are_refused_without_quoting_them() {
        let secret = "SECRETSECRET";
        let cases: Vec<(String, &str)> = vec![
            (
                format!("{{\"type\":\"hello\",\"agentId\":\"{secret}"),
                "not valid JSON",
            ),
            (format!("{secret} garbage"), "not valid JSON"),
            (format!("[\"{secret}\"]"), "known \"type\""),
            (format!("{{\"type\":\"{secret}\"}}"), "known \"type\""),
            (format!("{{\"seq\":\"{secret}\"}}"), "known \"type\""),
            (
                format!("{{\"type\":\"heartbeat\",\"seq\":\"{secret}\"}}"),
                "heartbeat frame",
            ),
            (
                format!("{{\"type\":\"heartbeat\",\"seq\":1,\"{secret}\":1}}"),
                "heartbeat frame",
            ),
            (
                format!("{{\"type\":\"challenge\",\"brokerNonce\":\"{secret}\"}}"),
                "challenge frame",
            ),
            (
                // Valid base64, but not 32 bytes.
                "{\"type\":\"challenge\",\"brokerNonce\":\"AAAA\"}".into(),
                "challenge frame",
            ),
            (
                format!(
                    "{{\"type\":\"request\",\"id\":1,\"tenant\":\"a\",\"keyId\":\"k\",\
                     \"deadlineMs\":250,\"operation\":{{\"op\":\"{secret}\"}}}}"
                ),
                "request frame",
            ),
            (
                format!(
                    "{{\"type\":\"response\",\"id\":1,\"result\":{{\"op\":\"decrypt\",\
                     \"plaintext\":\"{secret}!\"}}}}"
                ),
                "response frame",
            ),
            (
                "{\"type\":\"request\",\"id\":-1,\"tenant\":\"a\",\"keyId\":\"k\",\
                 \"deadlineMs\":250,\"operation\":{\"op\":\"health\"}}"
                    .into(),
                "request frame",
            ),
        ];
        for (text, expected) in cases {
            let error = decode(&text).unwrap_err();
            let message = error.to_string();
            assert!(message.contains(expected), "{text} → {message}");
            assert!(!message.contains(secret), "{message}");
            assert!(!format!("{error:?}").contains(secret), "{error:?}");
        }
    }

    #[test]
    fn debug_of_frames_redacts_plaintext() {
        let frame = request(2, Operation::Encrypt(encrypt_request()));
        let debug = format!("{frame:?}");
        assert!(!debug.contains("TOP-SECRET"), "{debug}");
        // Nor as the bytes' decimal rendering.
        assert!(!debug.contains("84, 79, 80"), "{debug}");
    }

    #[test]
    fn typed_replies_refuse_another_operations_body() {
        let encrypted = Reply::Encrypt(encrypt_response());
        assert_eq!(
            EncryptRequest::take_reply(encrypted.clone()).unwrap(),
            Ok(encrypt_response())
        );
        assert_eq!(
            DecryptRequest::take_reply(encrypted.clone()),
            Err(ProtocolError::MismatchedReply {
                expected: OperationKind::Decrypt,
                received: OperationKind::Encrypt
            })
        );
        assert!(encrypted.clone().check(OperationKind::Encrypt).is_ok());
        assert!(encrypted.check(OperationKind::Health).is_err());

        let error = XksError::new(XksErrorName::ThrottlingException);
        assert_eq!(
            HealthRequest::take_reply(Reply::Error(error.clone())).unwrap(),
            Err(error.clone())
        );
        assert!(Reply::Error(error).check(OperationKind::Decrypt).is_ok());

        let operation: Operation = encrypt_request().into();
        assert_eq!(operation.kind(), EncryptRequest::KIND);
    }

    #[test]
    fn every_frame_type_is_listed_for_error_messages() {
        for frame in every_frame() {
            let value: serde_json::Value = serde_json::from_str(&encode(&frame).unwrap()).unwrap();
            let frame_type = value["type"].as_str().unwrap();
            assert!(FRAME_TYPES.contains(&frame_type), "{frame_type}");
        }
    }
}
