//! The gateway's shared state: the connected agents, and sending one request to one of them.
//!
//! Callers are the host's blocking threads (the plugin ABI is synchronous): a call puts a
//! one-slot channel in the chosen connection's [`Inflight`] table, queues the request frame
//! for the connection's writer task and waits on the channel until the request's deadline.
//! The connection's reader task completes the entry with the agent's reply. A reply that
//! arrives after its caller gave up finds no entry and is dropped; ids never repeat on a
//! connection, so it can never answer another request.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc::{sync_channel, RecvTimeoutError, SyncSender},
        Arc, Mutex, MutexGuard, PoisonError, RwLock,
    },
    time::{Duration, Instant, SystemTime},
};

use keybroker_agent_protocol::{encode, Frame, Inflight, Operation, Reply, Request};
use keybroker_plugin_abi::{host_log, HostBox, LogLevel, PluginError};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::config::Config;

/// What tenants see while no agent serves the instance.
pub const NO_AGENT: &str = "customer key unavailable: no agent connected";

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The connection's writer task has stopped: the connection is over.
#[derive(Debug, Clone, Copy)]
pub struct WriterGone;

/// One authenticated agent connection.
pub struct Connection {
    /// The agent's configured id.
    pub agent_id: String,
    /// Tenants (by name) it serves, from the gateway config.
    pub tenants: Vec<String>,
    /// Where it connected from.
    pub remote: String,
    connected_since: SystemTime,
    /// When a frame was last heard from the agent.
    last_heard: Mutex<(Instant, SystemTime)>,
    inflight: Mutex<Inflight<SyncSender<Reply>>>,
    outbound: mpsc::Sender<Message>,
    closed: AtomicBool,
}

impl Connection {
    /// A connection that just completed its handshake.
    pub fn new(
        agent_id: String,
        tenants: Vec<String>,
        remote: String,
        outbound: mpsc::Sender<Message>,
    ) -> Self {
        Self {
            agent_id,
            tenants,
            remote,
            connected_since: SystemTime::now(),
            last_heard: Mutex::new((Instant::now(), SystemTime::now())),
            inflight: Mutex::new(Inflight::new()),
            outbound,
            closed: AtomicBool::new(false),
        }
    }

    /// Records that a frame was heard from the agent.
    pub fn heard(&self) {
        *lock(&self.last_heard) = (Instant::now(), SystemTime::now());
    }

    /// How long since a frame was heard.
    pub fn silence(&self) -> Duration {
        lock(&self.last_heard).0.elapsed()
    }

    /// Hands a reply to the request waiting for it; `false` if no request with that id is
    /// waiting (unknown, answered, or given up on).
    pub fn complete(&self, id: u64, reply: Reply) -> bool {
        match lock(&self.inflight).complete(id) {
            // The caller may have given up between our removal and this send: then the
            // reply is simply dropped.
            Some(waiting) => {
                let _ = waiting.try_send(reply);
                true
            }
            None => false,
        }
    }

    /// Marks the connection closed and fails everything in flight on it: each waiting
    /// caller sees its channel disconnected and may try another agent.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        drop(lock(&self.inflight).drain());
    }

    /// Queues a control frame (heartbeats); dropped when the queue is full, `Err` when the
    /// writer is gone.
    pub fn outbound_send(&self, message: Message) -> Result<(), WriterGone> {
        match self.outbound.try_send(message) {
            Err(mpsc::error::TrySendError::Closed(_)) => Err(WriterGone),
            _ => Ok(()),
        }
    }

    fn in_flight(&self) -> usize {
        lock(&self.inflight).len()
    }

    fn serves(&self, tenant: &str) -> bool {
        !self.closed.load(Ordering::SeqCst) && self.tenants.iter().any(|t| t == tenant)
    }

    fn status(&self) -> serde_json::Value {
        let last_heard = lock(&self.last_heard).1;
        json!({
            "id": self.agent_id,
            "tenants": self.tenants,
            "remote_address": self.remote,
            "connected_since": humantime::format_rfc3339_millis(self.connected_since).to_string(),
            "last_heartbeat": humantime::format_rfc3339_millis(last_heard).to_string(),
            "in_flight": self.in_flight(),
        })
    }
}

/// Why one attempt on one connection did not produce a reply.
enum Attempt {
    Reply(Reply),
    /// The connection went away (closed, or drained while we waited): try another agent.
    Lost,
    Failed(PluginError),
}

/// State shared by the listener, the connections and the backend.
pub struct Gateway {
    /// The instance configuration.
    pub config: Config,
    host: HostBox,
    connections: RwLock<Vec<Arc<Connection>>>,
    /// Tenant id → canonical name, as told by the host.
    tenant_names: RwLock<HashMap<String, String>>,
    /// Key references used, by tenant name: the keys to report unavailable (and so evict)
    /// when a tenant loses its last agent while other tenants of the instance keep theirs.
    references: RwLock<HashMap<String, HashSet<String>>>,
    /// Counts requests, for the XKS `kmsRequestId`.
    requests: AtomicU64,
    /// Replies that matched no request in flight (late or unknown ids).
    dropped_replies: AtomicU64,
}

impl Gateway {
    /// A gateway with no agent connected; tells the host the instance is unavailable.
    pub fn new(config: Config, host: HostBox) -> Self {
        host.set_instance_available(false, NO_AGENT.into());
        Self {
            config,
            host,
            connections: RwLock::new(Vec::new()),
            tenant_names: RwLock::new(HashMap::new()),
            references: RwLock::new(HashMap::new()),
            requests: AtomicU64::new(0),
            dropped_replies: AtomicU64::new(0),
        }
    }

    /// Logs through the host.
    pub fn log(&self, level: LogLevel, message: &str) {
        host_log(&self.host, level, &format!("remote-agent: {message}"));
    }

    /// Records a tenant's name.
    pub fn name_tenant(&self, id: &str, name: &str) {
        if let Ok(mut names) = self.tenant_names.write() {
            names.insert(id.to_owned(), name.to_owned());
        }
    }

    /// A tenant's name, if the host told it.
    pub fn tenant_name(&self, id: &str) -> Option<String> {
        self.tenant_names.read().ok()?.get(id).cloned()
    }

    /// Records that `reference` of tenant `tenant` is in use (see [`Gateway::references`]).
    pub fn used(&self, tenant: &str, reference: &str) {
        let known = self
            .references
            .read()
            .map(|r| r.get(tenant).is_some_and(|refs| refs.contains(reference)))
            .unwrap_or(false);
        if !known {
            if let Ok(mut references) = self.references.write() {
                references
                    .entry(tenant.to_owned())
                    .or_default()
                    .insert(reference.to_owned());
            }
        }
    }

    /// Tells the host that the keys of `tenants` are (un)available.
    fn report_tenants(&self, tenants: &[String], available: bool, reason: &str) {
        let references: Vec<abi_stable::std_types::RString> = {
            let Ok(known) = self.references.read() else {
                return;
            };
            tenants
                .iter()
                .filter_map(|tenant| known.get(tenant))
                .flatten()
                .map(|r| r.as_str().into())
                .collect()
        };
        if !references.is_empty() {
            self.host
                .set_keys_available(references.as_slice().into(), available, reason.into());
        }
    }

    /// The tenants of `connection` that no other connection serves.
    fn only_served_by(
        connections: &[Arc<Connection>],
        connection: &Arc<Connection>,
    ) -> Vec<String> {
        connection
            .tenants
            .iter()
            .filter(|tenant| {
                !connections
                    .iter()
                    .any(|c| !Arc::ptr_eq(c, connection) && c.tenants.contains(tenant))
            })
            .cloned()
            .collect()
    }

    /// Adds an authenticated connection; the first one makes the instance available, and
    /// tenants that had no agent get their keys back.
    pub fn register(&self, connection: Arc<Connection>) {
        let (first, newly_served) = {
            let mut connections = self
                .connections
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let newly_served = Self::only_served_by(&connections, &connection);
            connections.push(connection.clone());
            (connections.len() == 1, newly_served)
        };
        self.log(
            LogLevel::INFO,
            &format!(
                "agent {:?} connected from {} for tenants {:?}",
                connection.agent_id, connection.remote, connection.tenants
            ),
        );
        let reason = format!("agent {:?} connected", connection.agent_id);
        if first {
            self.host
                .set_instance_available(true, reason.as_str().into());
        }
        self.report_tenants(&newly_served, true, &reason);
    }

    /// Removes a connection and fails its requests in flight; when no agent is left the
    /// instance becomes unavailable, and the host (with `on_unavailable = "evict"`) drops
    /// every data key that came from it.
    pub fn unregister(&self, connection: &Arc<Connection>, why: &str) {
        connection.close();
        let (none_left, orphaned) = {
            let mut connections = self
                .connections
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let before = connections.len();
            let orphaned = Self::only_served_by(&connections, connection);
            connections.retain(|c| !Arc::ptr_eq(c, connection));
            if before == connections.len() {
                return;
            }
            (connections.is_empty(), orphaned)
        };
        self.log(
            LogLevel::WARN,
            &format!("agent {:?} disconnected: {why}", connection.agent_id),
        );
        if none_left {
            self.host.set_instance_available(false, NO_AGENT.into());
        } else {
            // Other tenants keep their agents: only the keys of tenants left without one go.
            self.report_tenants(&orphaned, false, NO_AGENT);
        }
    }

    /// Counts a reply nobody waited for.
    pub fn reply_dropped(&self, agent_id: &str, id: u64) {
        let count = self.dropped_replies.fetch_add(1, Ordering::Relaxed) + 1;
        self.log(
            LogLevel::WARN,
            &format!(
                "agent {agent_id:?} answered request {id}, which is not waiting (timed out or \
                 unknown); reply dropped ({count} so far)"
            ),
        );
    }

    /// Whether any agent is connected.
    pub fn any_connected(&self) -> bool {
        self.connections
            .read()
            .map(|c| !c.is_empty())
            .unwrap_or(false)
    }

    /// The status document: every connected agent.
    pub fn status(&self) -> serde_json::Value {
        let connections = self
            .connections
            .read()
            .map(|c| c.clone())
            .unwrap_or_default();
        json!({
            "agents": connections.iter().map(|c| c.status()).collect::<Vec<_>>(),
            "dropped_replies": self.dropped_replies.load(Ordering::Relaxed),
        })
    }

    /// A fresh XKS `kmsRequestId`.
    pub fn next_request_id(&self) -> String {
        format!("kb-{}", self.requests.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// The connected agents serving `tenant` that were not tried yet, least busy first.
    fn pick(&self, tenant: &str, tried: &[*const Connection]) -> Option<Arc<Connection>> {
        let connections = self.connections.read().ok()?;
        connections
            .iter()
            .filter(|c| c.serves(tenant) && !tried.contains(&Arc::as_ptr(c)))
            .min_by_key(|c| c.in_flight())
            .cloned()
    }

    /// Sends `operation` for `tenant` (by name) on key `key` to an agent serving the tenant
    /// and waits for its reply until the request timeout. If the agent's connection goes away
    /// first, the request is sent to another agent serving the tenant, if any.
    pub fn call(
        &self,
        tenant: &str,
        key: &str,
        operation: Operation,
    ) -> Result<Reply, PluginError> {
        let deadline = Instant::now() + self.config.request_timeout;
        let mut tried = Vec::new();
        loop {
            let Some(connection) = self.pick(tenant, &tried) else {
                return Err(PluginError::unavailable(if tried.is_empty() {
                    format!("{NO_AGENT} for tenant {tenant:?}")
                } else {
                    "customer key unavailable: the agent connection was lost".to_owned()
                }));
            };
            tried.push(Arc::as_ptr(&connection));
            match self.attempt(&connection, tenant, key, operation.clone(), deadline) {
                Attempt::Reply(reply) => return Ok(reply),
                Attempt::Failed(error) => return Err(error),
                Attempt::Lost => {}
            }
        }
    }

    fn attempt(
        &self,
        connection: &Connection,
        tenant: &str,
        key: &str,
        operation: Operation,
        deadline: Instant,
    ) -> Attempt {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Attempt::Failed(self.timed_out());
        }
        let (sender, receiver) = sync_channel(1);
        let id = lock(&connection.inflight).insert(deadline, sender);
        let frame = Frame::Request(Request {
            id,
            tenant: tenant.to_owned(),
            key_id: key.to_owned(),
            deadline_ms: u32::try_from(remaining.as_millis()).unwrap_or(u32::MAX),
            operation,
        });
        let text = match encode(&frame) {
            Ok(text) => text,
            Err(error) => {
                lock(&connection.inflight).complete(id);
                return Attempt::Failed(PluginError::invalid_request(format!(
                    "remote-agent: {error}"
                )));
            }
        };
        drop(frame);
        match connection.outbound.try_send(Message::text(text)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => {
                lock(&connection.inflight).complete(id);
                return Attempt::Lost;
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                lock(&connection.inflight).complete(id);
                return Attempt::Failed(PluginError::unavailable(
                    "customer key unavailable: the agent connection is congested",
                ));
            }
        }
        match receiver.recv_timeout(remaining) {
            Ok(reply) => Attempt::Reply(reply),
            Err(RecvTimeoutError::Disconnected) => Attempt::Lost,
            Err(RecvTimeoutError::Timeout) => {
                lock(&connection.inflight).complete(id);
                Attempt::Failed(self.timed_out())
            }
        }
    }

    fn timed_out(&self) -> PluginError {
        PluginError::unavailable(format!(
            "customer key unavailable: the agent did not answer within {} ms",
            self.config.request_timeout.as_millis()
        ))
    }
}
