//! `keybroker-agent`: the customer-run agent (issue 8, DESIGN §6). It holds a customer's
//! AES-256 keys in the customer's network and answers the broker's key operations (XKS
//! proxy API v1: GetKeyMetadata, Encrypt, Decrypt, GetHealthStatus), so that the customer
//! can cut off access to their data by stopping it.
//!
//! # What the agent enforces, and why
//!
//! - **Egress only.** The agent dials out to the broker's agent gateway (`broker`, a
//!   `wss://` URL; plain `ws://` is refused by the config) and keeps one connection; the
//!   customer opens no inbound port.
//! - **It pins the broker's CA** (`broker_ca`): only a broker whose certificate chains to
//!   that CA is served. Otherwise anyone able to redirect the agent's connection could use
//!   it as a decryption oracle for the customer's data.
//! - **It proves who it is without sending its secret**: an Ed25519 key derived from the
//!   ≥ 256-bit secret signs the broker's challenge; the broker pins only a hash
//!   ([`pin_instructions`] prints it for the broker's operator).
//! - **Its own allowlist** ([`Allowlist`]): each tenant, named exactly (no wildcard tenant),
//!   may use only the keys listed for it, whatever the broker's config says. A tenant
//!   refused a key name cannot tell whether the key exists (see [`service`]).
//! - **A rate cap** ([`RateLimiter`], a token bucket): a broker that misbehaves can decrypt
//!   only so fast.
//! - **It logs every operation** with `tracing` (agent id, request id, tenant, key name,
//!   operation, outcome), never plaintext, ciphertext, AAD or key material, and counts
//!   them ([`Service::stats`]).
//! - **Keys and the secret stay private**: their files must not be readable by group or
//!   others, they are wiped from memory on drop, and no `Debug` output or error message
//!   shows them.
//!
//! # What is here
//!
//! The network-free core: [`keys`] (the [`KeyStore`]), [`policy`] (allowlist, rate cap),
//! [`config`] (the TOML config file → [`Config`]) and [`service`] ([`Service::handle`]:
//! one broker [`Request`](keybroker_agent_protocol::Request) in, one
//! [`Response`](keybroker_agent_protocol::Response) out). The frames and XKS bodies are
//! those of `keybroker-agent-protocol`.
//!
//! **Not here yet**: the transport (TLS with the pinned CA, WebSocket, handshake,
//! heartbeats, reconnection with backoff) and the `keybroker-agent` binary with its CLI
//! flags; they come in a later change and will drive [`Service::handle`] with each
//! `request` frame they receive.
//!
//! # Tests
//!
//! `cargo test -p keybroker-agent`

pub mod clock;
pub mod config;
mod files;
pub mod keys;
pub mod policy;
pub mod service;
pub mod stats;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{pin_instructions, Config, ConfigError, KeyConfig};
pub use keys::{AgentKey, KeyError, KeySource, KeyStore};
pub use policy::{Allowlist, AllowlistError, KeyGrant, RateLimit, RateLimiter};
pub use service::Service;
pub use stats::{OperationCounts, Refusal, RefusalCounts, Stats};
