//! `remote-agent`: the agent gateway (issue 8, ARCHITECTURE.md §6). Customers run `keybroker-agent`
//! in their own network with their own AES-256 keys; it dials out to this plugin's TLS
//! WebSocket listener and answers key operations in the AWS KMS XKS proxy API v1 shapes.
//! Stopping the agent cuts off access to the customer's data.
//!
//! - **Listener**: `listen` with TLS 1.3 (`tls_cert_file`, `tls_key_file`); agents pin the
//!   CA of that certificate. Handshakes are bounded (`handshake_timeout_ms`) and at most 64
//!   run at once.
//! - **Agents are pinned**: `agents = [{ id, pin, tenants }]`. An agent proves it holds the
//!   secret behind `pin` by signing the gateway's challenge together with the TLS channel
//!   binding (RFC 9266 exporter); its secret never crosses the wire. Unknown ids and wrong
//!   secrets get the same refusal. An agent serves only the tenants listed for it (by name;
//!   the host names each tenant id to the plugin before its first call).
//! - **Keys** are the agent's keys, by name: `bao write transit/keys/k backend=<instance>`
//!   uses `default_key`; `backend_key=<name>` binds another (within the drop-in's `[bind]`
//!   for tenants). Creation asks an agent for the key's metadata (enabled, AES-256). The
//!   reference is `<tenant id>/<name>/<broker key id>`. Deleting a transit key never touches the
//!   agent.
//! - **Operations**: envelope wrap/unwrap and direct encrypt/decrypt are XKS Encrypt and
//!   Decrypt; the AAD the agent authenticates is the broker key's id followed by the
//!   broker's AAD, so transit keys sharing one agent key cannot open each other's
//!   ciphertexts; the agent picks the IV; the ciphertext is a format byte,
//!   the IV, the tag and the ciphertext. Encrypt asks for the XKS data-integrity value and
//!   checks it.
//! - **Requests** go to the least busy agent serving the tenant, multiplexed by id, each with
//!   a deadline (`request_timeout_ms`, default 250). If that agent's connection is lost
//!   before it answers, the request goes to another agent serving the tenant. A late reply is
//!   dropped (logged and counted in the status). The plugin reports `NONBLOCKING`: the host
//!   starts encryptions and decryptions without waiting, and the connection's reader
//!   completes them with the agent's reply (an expiry task, every tenth of the request
//!   timeout, fails those past their deadline).
//! - **Liveness**: heartbeats both ways every `heartbeat_interval_ms` (default 5000); a
//!   connection silent for three intervals is dropped. When the last agent is gone the plugin
//!   reports the instance unavailable ("customer key unavailable: no agent connected"): with
//!   `on_unavailable = "evict"` the host zeroizes every data key that came from it and
//!   answers 503 until an agent is back. The instance starts unavailable.
//! - **Frames** over 64 KiB, malformed frames and frames only the broker may send end the
//!   agent's connection.
//! - **Status** (`GET /v1/sys/agents`): every connected agent with its tenants, address,
//!   connection time, last frame heard and requests in flight.
//!
//! ```toml
//! [config]
//! listen = "0.0.0.0:8201"
//! tls_cert_file = "/etc/keybroker/agents.crt"
//! tls_key_file = "/etc/keybroker/agents.key"
//! default_key = "data"
//! agents = [
//!   { id = "acme-dc1", pin = "<keybroker-agent pin>", tenants = ["acme"] },
//! ]
//! # heartbeat_interval_ms = 5000, request_timeout_ms = 250, max_payload = 4096
//! ```

mod backend;
pub mod config;
mod export;
pub mod gateway;
mod reference;
pub mod server;

pub use backend::{new_backend, RemoteAgentBackend, NAME};
pub use config::Config;

use keybroker_plugin_abi::PluginError;

/// The instance's own Tokio runtime: a current-thread runtime driven by a thread of its own
/// (the gateway's work is a few small frames per request; more threads would mostly add
/// switches between them on a busy broker). Dropping it stops that thread, which closes the
/// listener and every agent connection; the host's thread does not wait for it.
pub(crate) struct OwnRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl OwnRuntime {
    fn new(name: &str) -> Result<Self, PluginError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| {
                PluginError::internal(format!("{name}: cannot start a runtime: {error}"))
            })?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                // Runs the spawned tasks until the instance is dropped, then drops them.
                let _ = runtime.block_on(stopped);
            })
            .map_err(|error| {
                PluginError::internal(format!("{name}: cannot start a thread: {error}"))
            })?;
        Ok(Self {
            handle,
            stop: Some(stop),
        })
    }

    fn spawn<F>(&self, future: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.handle.spawn(future);
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
