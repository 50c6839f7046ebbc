//! The agent's connection to the broker's agent gateway: dial out, authenticate, serve,
//! reconnect, forever (until told to stop).
//!
//! # On the wire
//!
//! 1. **Connect**: TCP to the `broker` URL's host and port, TLS 1.3 (rustls,
//!    ring) trusting only the certificates in `broker_ca`, server name = the URL's host,
//!    then the WebSocket client handshake (messages and frames capped at
//!    [`MAX_FRAME_BYTES`](keybroker_agent_protocol::MAX_FRAME_BYTES)). All of it within
//!    [`CONNECT_TIMEOUT`].
//! 2. **Channel binding**: 32 bytes of TLS keying material, label `EXPORTER-Channel-Binding`,
//!    no context (RFC 9266 `tls-exporter`), signed into the agent's proof so the proof is
//!    worthless on any other TLS connection.
//! 3. **Handshake**: hello → challenge → proof → welcome (or refused), each step within
//!    [`HANDSHAKE_STEP_TIMEOUT`]. Anything else is a protocol error.
//! 4. **Serve**: each `request` is answered by [`Service::handle`]; a `request` frame that
//!    does not decode is answered by [`Service::handle_undecodable`] when its id can be read,
//!    else it is a protocol error, as is a binary message. A `heartbeat {seq}` goes out
//!    every interval (the welcome's `heartbeatIntervalMs`), the broker's heartbeats are
//!    acknowledged with the same `seq`, and any message counts as a sign of life: after
//!    [`MISSED_HEARTBEATS`] intervals of silence the connection is dropped.
//! 5. **Reconnect** after any failure with [`Backoff`] (200 ms doubling up to
//!    `reconnect_max_delay`, each delay drawn from `[d/2, d]`), reset by a welcome. Each
//!    failure is logged once, at warn (a refusal at error).
//! 6. **Shutdown**: when the `shutdown` flag turns true, the connection is closed with a
//!    normal close frame and [`Transport::run`] returns.

mod backoff;
mod connect;
mod session;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use keybroker_agent_protocol::AgentIdentity;
use rustls::ClientConfig;
use tokio::sync::watch;

pub use crate::broker_url::{BrokerUrl, UrlError};
pub use backoff::{Backoff, INITIAL_DELAY};
pub use connect::{
    channel_binding, tls_config, websocket_config, BrokerStream, CHANNEL_BINDING_BYTES,
    CHANNEL_BINDING_LABEL,
};
pub use session::{CLOSE_TIMEOUT, HANDSHAKE_STEP_TIMEOUT, MISSED_HEARTBEATS};

use crate::config::Config;
use crate::service::Service;

/// Longest wait for TCP connect, TLS handshake and WebSocket handshake together.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The transport could not be set up (a configuration problem: nothing to retry).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The `broker` URL is unusable.
    #[error("broker {url:?}: {source}")]
    Url {
        /// The URL as configured.
        url: String,
        /// Why.
        #[source]
        source: UrlError,
    },
    /// The `broker_ca` file could not be read.
    #[error("broker_ca {}: cannot read: {source}", path.display())]
    CaRead {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The `broker_ca` file holds no usable CA certificate.
    #[error("broker_ca {}: {reason}", path.display())]
    Ca {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Why one connection attempt, or an established connection, ended. Logged, then retried.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// A step took longer than its timeout (the step is named).
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The TCP connection could not be made (or the name not resolved).
    #[error("cannot reach the broker: {0}")]
    Dial(#[source] io::Error),
    /// The broker's certificate does not chain to `broker_ca`, or is not valid for the URL's
    /// host, or has expired.
    #[error("broker certificate not trusted (is broker_ca right?): {0}")]
    UntrustedBroker(String),
    /// Another TLS failure.
    #[error("TLS failed: {0}")]
    Tls(String),
    /// The WebSocket handshake or connection failed.
    #[error("WebSocket: {0}")]
    WebSocket(#[source] Box<tokio_tungstenite::tungstenite::Error>),
    /// The broker refused the agent (its reason).
    #[error("the broker refused the agent: {0}")]
    Refused(String),
    /// The broker broke the protocol (what it did, never a frame's contents).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The broker closed the connection (its close code and reason, if it gave them).
    #[error("the broker closed the connection{}", .0.as_ref().map(|reason| format!(" ({reason})")).unwrap_or_default())]
    ClosedByBroker(Option<String>),
    /// Nothing was heard from the broker for this long.
    #[error("nothing heard from the broker for {}", humantime::format_duration(*.0))]
    HeartbeatTimeout(Duration),
    /// Frames could not be handed to the connection's writer.
    #[error("sending failed: {0}")]
    Send(String),
}

/// Dials the broker and serves it, reconnecting as needed.
pub struct Transport {
    url: BrokerUrl,
    tls: Arc<ClientConfig>,
    agent_id: String,
    identity: AgentIdentity,
    service: Arc<Service>,
    heartbeat_interval: Duration,
    reconnect_max_delay: Duration,
}

impl Transport {
    /// The transport for `config` (reads `broker_ca` now), authenticating as `identity` and
    /// answering with `service`.
    pub fn new(
        config: &Config,
        identity: AgentIdentity,
        service: Arc<Service>,
    ) -> Result<Self, TransportError> {
        let url = BrokerUrl::parse(&config.broker).map_err(|source| TransportError::Url {
            url: config.broker.clone(),
            source,
        })?;
        Ok(Self {
            url,
            tls: tls_config(&config.broker_ca)?,
            agent_id: config.agent_id.clone(),
            identity,
            service,
            heartbeat_interval: config.heartbeat_interval,
            reconnect_max_delay: config.reconnect_max_delay,
        })
    }

    /// The broker's URL.
    pub fn url(&self) -> &BrokerUrl {
        &self.url
    }

    /// Connects and serves until `shutdown` becomes true (or its sender is dropped),
    /// reconnecting with [`Backoff`] after every failure.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Backoff::new(self.reconnect_max_delay);
        loop {
            let error = match self.connect_and_serve(&mut shutdown, &mut backoff).await {
                Ok(()) => return,
                Err(error) => error,
            };
            let delay = backoff.next_delay();
            let retry = humantime::format_duration(round_to_millis(delay));
            match &error {
                ConnectionError::Refused(_) => tracing::error!(
                    broker = %self.url, agent_id = %self.agent_id, "{error}; retrying in {retry}"
                ),
                _ => tracing::warn!(
                    broker = %self.url, agent_id = %self.agent_id, "{error}; retrying in {retry}"
                ),
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = signalled(&mut shutdown) => return,
            }
        }
    }

    /// One connection: `Ok` when stopped by `shutdown`, else why it ended.
    async fn connect_and_serve(
        &self,
        shutdown: &mut watch::Receiver<bool>,
        backoff: &mut Backoff,
    ) -> Result<(), ConnectionError> {
        let connecting =
            tokio::time::timeout(CONNECT_TIMEOUT, connect::connect(&self.url, &self.tls));
        let (mut websocket, channel_binding) = tokio::select! {
            connected = connecting => connected.map_err(|_| ConnectionError::Timeout("the connection to the broker"))??,
            () = signalled(shutdown) => return Ok(()),
        };
        let welcome = tokio::select! {
            welcome = session::handshake(&mut websocket, &self.identity, &self.agent_id, &channel_binding) => welcome,
            () = signalled(shutdown) => {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, websocket.close(None)).await;
                return Ok(());
            }
        };
        let welcome = match welcome {
            Ok(welcome) => welcome,
            Err(error) => {
                if matches!(error, ConnectionError::Protocol(_)) {
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, websocket.close(None)).await;
                }
                return Err(error);
            }
        };
        backoff.reset();
        let interval = session::heartbeat_interval(&welcome, self.heartbeat_interval);
        tracing::info!(
            broker = %self.url,
            agent_id = %self.agent_id,
            tenants = ?welcome.tenants,
            heartbeat_interval = %humantime::format_duration(interval),
            "connected to the broker and authenticated"
        );
        session::serve(websocket, &self.service, interval, shutdown).await
    }
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Transport")
            .field("url", &self.url)
            .field("agent_id", &self.agent_id)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("reconnect_max_delay", &self.reconnect_max_delay)
            .finish_non_exhaustive()
    }
}

/// Resolves once `shutdown` is true or its sender is gone.
async fn signalled(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

fn round_to_millis(duration: Duration) -> Duration {
    Duration::from_millis(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}
