//! The gateway's shared state: the connected agents, and sending one request to one of them.
//!
//! [`Gateway::start`] never blocks: it puts the request, with what to do with its outcome,
//! in the chosen connection's [`Inflight`] table, queues the request frame for the
//! connection's writer task and returns. The host calls it from its async threads (the
//! plugin reports `NONBLOCKING`). The connection's reader task completes the entry with the
//! agent's reply; the gateway's expiry task fails entries whose deadline passed; a lost
//! connection's entries are sent to another agent serving the tenant, if any. A reply that
//! arrives after its request expired finds no entry and is dropped; ids never repeat on a
//! connection, so it can never answer another request. [`Gateway::call`] is the blocking
//! form, for key creation and binding.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc::sync_channel,
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

/// What to do with the outcome of one request: the agent's reply, or why there is none.
pub type OnReply = Box<dyn FnOnce(Result<Reply, PluginError>) + Send>;

/// A request in flight on a connection, kept whole so that it can be sent to another agent
/// if the connection is lost before the reply.
struct Pending {
    tenant: String,
    key: String,
    operation: Operation,
    deadline: Instant,
    /// Serials of the connections it was sent on.
    tried: Vec<u64>,
    on_reply: OnReply,
}

/// Serial numbers of connections (never reused, unlike addresses).
static CONNECTION_SERIAL: AtomicU64 = AtomicU64::new(1);

/// One authenticated agent connection.
pub struct Connection {
    /// The agent's configured id.
    pub agent_id: String,
    /// Tenants (by name) it serves, from the gateway config.
    pub tenants: Vec<String>,
    /// Where it connected from.
    pub remote: String,
    serial: u64,
    connected_since: SystemTime,
    /// When a frame was last heard from the agent.
    last_heard: Mutex<(Instant, SystemTime)>,
    inflight: Mutex<Inflight<Pending>>,
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
            serial: CONNECTION_SERIAL.fetch_add(1, Ordering::Relaxed),
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
    /// waiting (unknown, answered, or expired).
    pub fn complete(&self, id: u64, reply: Reply) -> bool {
        let pending = lock(&self.inflight).complete(id);
        match pending {
            Some(pending) => {
                (pending.on_reply)(Ok(reply));
                true
            }
            None => false,
        }
    }

    /// Marks the connection closed and returns everything that was in flight on it.
    fn close(&self) -> Vec<Pending> {
        let mut inflight = lock(&self.inflight);
        // Under the table's lock: a request is either queued before this (and drained here)
        // or sees the connection closed.
        self.closed.store(true, Ordering::SeqCst);
        inflight
            .drain()
            .into_iter()
            .map(|(_, pending)| pending)
            .collect()
    }

    /// Takes out the requests whose deadline has passed.
    fn expire(&self, now: Instant) -> Vec<Pending> {
        lock(&self.inflight)
            .expire(now)
            .into_iter()
            .map(|(_, pending)| pending)
            .collect()
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
        let lost = connection.close();
        let removed = {
            let mut connections = self
                .connections
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let orphaned = Self::only_served_by(&connections, connection);
            let before = connections.len();
            connections.retain(|c| !Arc::ptr_eq(c, connection));
            (before != connections.len()).then_some((connections.is_empty(), orphaned))
        };
        if let Some((none_left, orphaned)) = removed {
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
        // What was in flight goes to another agent serving the tenant, or fails.
        for pending in lost {
            self.send(pending);
        }
    }

    /// Fails every request whose deadline passed; run by the expiry task.
    pub fn expire(&self) {
        self.expire_at(Instant::now());
    }

    /// [`Gateway::expire`] as of `now` (tests pass the instants around a deadline).
    fn expire_at(&self, now: Instant) {
        let connections = self
            .connections
            .read()
            .map(|c| c.clone())
            .unwrap_or_default();
        for connection in connections {
            for pending in connection.expire(now) {
                (pending.on_reply)(Err(self.timed_out()));
            }
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
    fn pick(&self, tenant: &str, tried: &[u64]) -> Option<Arc<Connection>> {
        let connections = self.connections.read().ok()?;
        connections
            .iter()
            .filter(|c| c.serves(tenant) && !tried.contains(&c.serial))
            .min_by_key(|c| c.in_flight())
            .cloned()
    }

    /// Sends `operation` for `tenant` (by name) on key `key` to an agent serving the tenant,
    /// without waiting: `on_reply` gets the agent's reply, or the reason there is none (no
    /// agent, the request timeout passed, the connection lost with no other agent to send
    /// it to), from whichever thread has it, possibly this one.
    pub fn start(&self, tenant: String, key: String, operation: Operation, on_reply: OnReply) {
        self.send(Pending {
            tenant,
            key,
            operation,
            deadline: Instant::now() + self.config.request_timeout,
            tried: Vec::new(),
            on_reply,
        });
    }

    /// [`Gateway::start`], waiting for the outcome.
    pub fn call(
        &self,
        tenant: &str,
        key: &str,
        operation: Operation,
    ) -> Result<Reply, PluginError> {
        let (sender, receiver) = sync_channel(1);
        self.start(
            tenant.to_owned(),
            key.to_owned(),
            operation,
            Box::new(move |outcome| {
                let _ = sender.try_send(outcome);
            }),
        );
        // The expiry task answers within its resolution after the deadline; the margin
        // covers a gateway whose runtime is shutting down.
        receiver
            .recv_timeout(self.config.request_timeout + Duration::from_secs(1))
            .unwrap_or_else(|_| Err(self.timed_out()))
    }

    /// Queues `pending` on the least busy connection serving its tenant that it was not sent
    /// on yet; fails it when there is none, or when its deadline has passed.
    fn send(&self, mut pending: Pending) {
        loop {
            let Some(connection) = self.pick(&pending.tenant, &pending.tried) else {
                let error = PluginError::unavailable(if pending.tried.is_empty() {
                    format!("{NO_AGENT} for tenant {:?}", pending.tenant)
                } else {
                    "customer key unavailable: the agent connection was lost".to_owned()
                });
                return (pending.on_reply)(Err(error));
            };
            pending.tried.push(connection.serial);
            let remaining = pending.deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return (pending.on_reply)(Err(self.timed_out()));
            }
            let request = Request {
                id: 0,
                tenant: pending.tenant.clone(),
                key_id: pending.key.clone(),
                deadline_ms: u32::try_from(remaining.as_millis()).unwrap_or(u32::MAX),
                operation: pending.operation.clone(),
            };
            let id = {
                let mut inflight = lock(&connection.inflight);
                if connection.closed.load(Ordering::SeqCst) {
                    // Closed since it was picked: its requests were drained already.
                    continue;
                }
                inflight.insert(pending.deadline, pending)
            };
            let frame = Frame::Request(Request { id, ..request });
            let failure = match encode(&frame) {
                Err(error) => Some(PluginError::invalid_request(format!(
                    "remote-agent: {error}"
                ))),
                Ok(text) => match connection.outbound.try_send(Message::text(text)) {
                    Ok(()) => return,
                    // The writer is gone (the connection is closing): try another agent.
                    Err(mpsc::error::TrySendError::Closed(_)) => None,
                    Err(mpsc::error::TrySendError::Full(_)) => Some(PluginError::unavailable(
                        "customer key unavailable: the agent connection is congested",
                    )),
                },
            };
            drop(frame);
            // Taken back, unless the connection's closing or the expiry task took it first.
            let Some(taken) = lock(&connection.inflight).complete(id) else {
                return;
            };
            pending = taken;
            if let Some(error) = failure {
                return (pending.on_reply)(Err(error));
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

#[cfg(test)]
mod tests {
    use std::sync::mpsc::{channel, Receiver};

    use keybroker_agent_protocol::{
        decode,
        xks::{GetKeyMetadataRequest, RequestMetadata, XksErrorName},
        XksError,
    };
    use keybroker_plugin_abi::ErrorKind;
    use keybroker_plugin_conformance::RecordingHost;

    use super::*;

    /// A request timeout no request of these tests reaches unless the test means it to: they
    /// answer (or lose) requests themselves, which a loaded machine may delay by seconds, and
    /// `start` fails a request whose deadline passed before it was queued.
    const PATIENT_MS: u64 = 60_000;

    /// A gateway accepting agents for tenant `acme`, with a request timeout of `timeout_ms`.
    fn gateway(timeout_ms: u64) -> Gateway {
        let config = Config::parse(
            &json!({
                "listen": "127.0.0.1:0",
                "tls_cert_file": "unused.crt",
                "tls_key_file": "unused.key",
                "agents": [
                    { "id": "dc1", "pin": "1".repeat(64), "tenants": ["acme"] },
                    { "id": "dc2", "pin": "2".repeat(64), "tenants": ["acme"] },
                ],
                "request_timeout_ms": timeout_ms,
            })
            .to_string(),
        )
        .unwrap();
        Gateway::new(config, RecordingHost::boxed())
    }

    /// A registered connection for agent `id`, and its outbound queue (what the writer task
    /// would send).
    fn connect(gateway: &Gateway, id: &str) -> (Arc<Connection>, mpsc::Receiver<Message>) {
        let (outbound, queued) = mpsc::channel(16);
        let connection = Arc::new(Connection::new(
            id.to_owned(),
            vec!["acme".to_owned()],
            "test".to_owned(),
            outbound,
        ));
        gateway.register(connection.clone());
        (connection, queued)
    }

    fn start(gateway: &Gateway) -> Receiver<Result<Reply, PluginError>> {
        let (sender, receiver) = channel();
        let operation = Operation::GetKeyMetadata(GetKeyMetadataRequest {
            request_metadata: RequestMetadata::keybroker("test", "CreateKey", "kb-1", "acme"),
        });
        gateway.start(
            "acme".to_owned(),
            "data".to_owned(),
            operation,
            Box::new(move |outcome| sender.send(outcome).unwrap()),
        );
        receiver
    }

    /// The id of the request frame queued next.
    fn queued_id(queued: &mut mpsc::Receiver<Message>) -> u64 {
        let Ok(Message::Text(text)) = queued.try_recv() else {
            panic!("no request frame queued");
        };
        match decode(text.as_str()).unwrap() {
            Frame::Request(request) => request.id,
            other => panic!("not a request: {other:?}"),
        }
    }

    fn not_found() -> Reply {
        Reply::Error(XksError::new(XksErrorName::KeyNotFoundException))
    }

    fn unavailable_reason(outcome: Result<Reply, PluginError>) -> String {
        match outcome {
            Err(error) if error.kind == ErrorKind::UNAVAILABLE => error.message.into_string(),
            other => panic!("expected unavailable, got {other:?}"),
        }
    }

    #[test]
    fn a_reply_completes_its_own_request_once() {
        let gateway = gateway(PATIENT_MS);
        let (connection, mut queued) = connect(&gateway, "dc1");
        let first = start(&gateway);
        let second = start(&gateway);
        let (first_id, second_id) = (queued_id(&mut queued), queued_id(&mut queued));
        assert!(first.try_recv().is_err(), "answered before the reply");
        assert!(connection.complete(second_id, not_found()));
        assert!(matches!(second.try_recv(), Ok(Ok(Reply::Error(_)))));
        assert!(first.try_recv().is_err(), "another request's reply");
        assert!(
            !connection.complete(second_id, not_found()),
            "answered twice"
        );
        assert!(!connection.complete(9999, not_found()), "an unknown id");
        assert!(connection.complete(first_id, not_found()));
        assert!(matches!(first.try_recv(), Ok(Ok(Reply::Error(_)))));
    }

    #[test]
    fn a_request_past_its_deadline_fails_and_its_late_reply_is_dropped() {
        // The expiry is driven by the instants handed to `expire_at`, not by sleeping past a
        // short deadline: a loaded machine could let a 20 ms deadline pass before the test
        // first looked, or queue the request already expired.
        let gateway = gateway(PATIENT_MS);
        let timeout = Duration::from_millis(PATIENT_MS);
        let (connection, mut queued) = connect(&gateway, "dc1");
        let before = Instant::now();
        let outcome = start(&gateway);
        let id = queued_id(&mut queued);
        // The deadline is at least `timeout` after `before`: now, and just short of that, the
        // request is not expired.
        gateway.expire();
        gateway.expire_at(before + timeout - Duration::from_millis(1));
        assert!(outcome.try_recv().is_err(), "expired before its deadline");
        // And at most `timeout` after now.
        gateway.expire_at(Instant::now() + timeout);
        assert!(unavailable_reason(outcome.try_recv().unwrap())
            .contains(&format!("within {PATIENT_MS} ms")));
        assert!(
            !connection.complete(id, not_found()),
            "a late reply is applied"
        );
    }

    #[test]
    fn a_lost_connections_requests_go_to_another_agent_or_fail() {
        let gateway = gateway(PATIENT_MS);
        let (dc1, mut dc1_queued) = connect(&gateway, "dc1");
        let (dc2, mut dc2_queued) = connect(&gateway, "dc2");
        // Least busy first: one request on each.
        let on_dc1 = start(&gateway);
        let on_dc2 = start(&gateway);
        let (_, dc2_id) = (queued_id(&mut dc1_queued), queued_id(&mut dc2_queued));
        gateway.unregister(&dc1, "test");
        // dc1's request was sent again, on dc2, and is answered there.
        let resent = queued_id(&mut dc2_queued);
        assert!(on_dc1.try_recv().is_err());
        assert!(dc2.complete(resent, not_found()));
        assert!(matches!(on_dc1.try_recv(), Ok(Ok(Reply::Error(_)))));
        // With no agent left, what was in flight fails, and new requests fail at once.
        gateway.unregister(&dc2, "test");
        assert!(unavailable_reason(on_dc2.try_recv().unwrap()).contains("was lost"));
        assert!(!dc2.complete(dc2_id, not_found()));
        assert!(unavailable_reason(start(&gateway).try_recv().unwrap()).contains(NO_AGENT));
    }
}
