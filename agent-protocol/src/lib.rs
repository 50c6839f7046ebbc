//! The wire protocol between keybroker's agent gateway and `keybroker-agent` (issue 8,
//! ARCHITECTURE.md §6): frame types, AWS KMS XKS proxy API v1 bodies, agent authentication and the
//! broker's table of requests in flight. Pure types and functions, no I/O: the gateway
//! plugin (server side) and the agent binary (client side) share them.
//!
//! # Connection
//!
//! The agent dials out to the gateway: one TLS connection carrying a WebSocket, kept open.
//! Each WebSocket text message is one [`Frame`], a JSON object tagged by `"type"`, at most
//! [`MAX_FRAME_BYTES`] (64 KiB). [`encode`] refuses to produce a larger one; [`decode`]
//! refuses a larger one by its length before parsing, and reports malformed frames without
//! quoting them (frames carry plaintext).
//!
//! # Handshake
//!
//! ```text
//! agent                                              broker
//!   hello {protocol: 1, agentId, publicKey, agentNonce} →
//!                                        ← challenge {brokerNonce}
//!   proof {signature}                                  →
//!                        ← welcome {heartbeatIntervalMs, requestTimeoutMs, tenants}
//!                          or refused {reason}, then close
//! ```
//!
//! The agent's key is an Ed25519 key derived from its secret (≥ 256 bits) with HKDF-SHA256
//! ([`AgentIdentity::from_secret`]); the secret never crosses the wire. The operator pins
//! the agent's **pin**, the SHA-256 of its public key ([`AgentIdentity::pin`]), under its id
//! in the gateway config. The pin is a hash of a value derived one-way from the secret: a
//! leaked config reveals nothing that can log in. The proof is a signature over a transcript
//! binding the agent id, public key, both nonces and (when the TLS layer provides it) an RFC
//! 9266 channel binding, so it cannot be replayed on another challenge or relayed over
//! another connection. [`verify_agent`] gives one and the same [`AuthError`] for every
//! failure. Details in the `auth` module. (The agent authenticates the broker by pinning
//! its CA in TLS, outside this crate.)
//!
//! # Requests
//!
//! After `welcome`, the broker sends [`Request`] frames: a request id, the tenant, the
//! agent-side key name, a deadline and an XKS operation ([`Operation`]: getKeyMetadata,
//! encrypt, decrypt, health) whose body is the XKS proxy API v1 request body. The agent
//! answers each with a [`Response`] frame carrying the same id and either the matching XKS
//! response body or an [`XksError`] ([`Reply`]). Many requests are in flight at once, in any
//! order; the broker keeps them in an [`Inflight`] table whose ids never repeat, so a reply
//! arriving after its request timed out finds nothing and is dropped, never applied to
//! another request. [`XksCall::take_reply`] (typed) or [`Reply::check`] refuses a body of
//! another operation than the request's.
//!
//! # Heartbeats
//!
//! Both sides send `heartbeat {seq}` every `heartbeatIntervalMs` and answer each with
//! `heartbeatAck {seq}`. A side that hears nothing for three intervals treats the connection
//! as lost: the broker fails everything in flight ([`Inflight::drain`]) and evicts DEKs that
//! came from that agent; the agent reconnects with backoff.
//!
//! # Tests
//!
//! `cargo test -p keybroker-agent-protocol`

mod auth;
mod encoding;
mod frame;
mod inflight;
pub mod xks;

pub use auth::{
    is_valid_pin, pin_of, random_nonce, verify_agent, AgentIdentity, AuthError, IdentityError,
};
pub use encoding::SecretBytes;
pub use frame::{
    decode, encode, Challenge, Frame, Heartbeat, Hello, Operation, OperationKind, Proof,
    ProtocolError, Refused, Reply, Request, Response, Welcome, XksCall, MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
};
pub use inflight::Inflight;
pub use xks::XksError;

/// Bytes the WebSocket reader asks the socket for at once. tungstenite zero-fills that much
/// of its buffer before every read (128 KiB by default); frames here are a few hundred
/// bytes, and a longer frame still grows the buffer as it needs.
pub const READ_BUFFER_BYTES: usize = 8 * 1024;

/// The WebSocket settings of both ends: messages and frames capped at [`MAX_FRAME_BYTES`]
/// (a longer one ends the connection before it is read), reads of [`READ_BUFFER_BYTES`].
#[cfg(feature = "websocket")]
pub fn websocket_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
        .read_buffer_size(READ_BUFFER_BYTES)
}
