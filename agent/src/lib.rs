//! `keybroker-agent`: the customer-run agent (issue 8, ARCHITECTURE.md §6). It holds a customer's
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
//!   shows them. A key may instead stay in an HSM (`[hsm]`, [`hsm`]): the agent then holds
//!   only a reference to it, and the HSM's PIN file obeys the same owner-only rule.
//!
//! # What is here
//!
//! The network-free core: [`keys`] (the [`KeyStore`]; keys from files, variables or, through
//! [`hsm`], an on-prem HSM over PKCS#11), [`policy`] (allowlist, rate cap),
//! [`config`] (the TOML config file or CLI flags → [`Config`]) and [`service`]
//! ([`Service::handle`]: one broker [`Request`](keybroker_agent_protocol::Request) in, one
//! [`Response`](keybroker_agent_protocol::Response) out). The frames and XKS bodies are
//! those of `keybroker-agent-protocol`.
//!
//! Around it, [`transport`] ([`Transport`]): TLS 1.3 to the broker trusting only
//! `broker_ca`, the WebSocket, the handshake with the proof bound to the TLS channel
//! (RFC 9266 exporter), heartbeats both ways, reconnection with jittered exponential
//! backoff, a normal close on shutdown. The `keybroker-agent` binary (`src/main.rs`) wires
//! config, identity, keys and transport together and adds `pin` and `genkey` ([`genkey`]);
//! README.md is the operator's guide.
//!
//! ```text
//! cargo build --release -p keybroker-agent
//! keybroker-agent genkey --secret secret && keybroker-agent genkey data.key
//! keybroker-agent pin --agent-id acme-dc1 --secret-file secret   # → the broker's operator
//! keybroker-agent --config agent.toml
//! ```
//!
//! # Tests
//!
//! `cargo test -p keybroker-agent`

pub mod broker_url;
pub mod clock;
pub mod config;
mod files;
pub mod genkey;
pub mod hsm;
pub mod keys;
pub mod policy;
pub mod service;
pub mod stats;
pub mod transport;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{pin_instructions, Config, ConfigError, KeyConfig};
pub use hsm::{Hsm, HsmConfig, HsmError, HsmKey};
pub use keys::{AgentKey, KeyError, KeySource, KeyStore, StoredKey};
pub use policy::{Allowlist, AllowlistError, KeyGrant, RateLimit, RateLimiter};
pub use service::Service;
pub use stats::{OperationCounts, Refusal, RefusalCounts, Stats};
pub use transport::{ConnectionError, Transport, TransportError};
