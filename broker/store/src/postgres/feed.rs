//! The change feed: announcements with LISTEN/NOTIFY, the listener task, and the heartbeat
//! that proves the feed works end to end
//! ([`Store::last_in_sync`](keybroker_core::store::Store::last_in_sync)).

use std::time::{Duration, Instant};

use keybroker_core::{changes::Change, store::StoreError};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions};
use tokio::sync::{broadcast, watch};

use super::{map_error, PostgresStore};

/// The notification channel every node listens on.
const CHANNEL: &str = "keybroker_changes";

/// Heartbeat payloads: `heartbeat:<store id>:<nanoseconds since the store's base instant
/// when it was sent>`. Never a [`Change`]; other stores' heartbeats are ignored.
const HEARTBEAT_PREFIX: &str = "heartbeat:";

/// Changes buffered per subscriber before it lags (and must resync).
pub(super) const BROADCAST_CAPACITY: usize = 4096;

/// Reconnection backoff of the listener: from the first to the last, doubling.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(1));

/// Announces changes inside the caller's transaction: Postgres delivers them when (and only
/// if) it commits. One notification per change keeps each payload far below the 8000-byte
/// limit; one statement sends them all.
pub(super) async fn announce_in(
    connection: &mut PgConnection,
    changes: impl IntoIterator<Item = Change>,
) -> Result<(), StoreError> {
    let payloads: Vec<String> = changes.into_iter().map(|c| c.encode()).collect();
    if payloads.is_empty() {
        return Ok(());
    }
    sqlx::query("SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload")
        .bind(CHANNEL)
        .bind(payloads)
        .execute(connection)
        .await
        .map_err(map_error)?;
    Ok(())
}

fn nanos_since(base: Instant) -> u64 {
    u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// A listener on [`CHANNEL`], on a connection of its own (a fresh one-connection pool each
/// time: an abandoned listener's cleanup can then never hold up the next one).
pub(super) async fn listen(
    options: &PgConnectOptions,
    connect_timeout: Duration,
) -> Result<PgListener, StoreError> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(connect_timeout)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_lazy_with(options.clone());
    let connect = async {
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(CHANNEL).await?;
        Ok::<_, sqlx::Error>(listener)
    };
    tokio::time::timeout(connect_timeout, connect)
        .await
        .map_err(|_| {
            StoreError::Unavailable("connecting the change listener timed out".to_owned())
        })?
        .map_err(map_error)
}

/// The listener task's state.
pub(super) struct Feed {
    pub(super) options: PgConnectOptions,
    pub(super) connect_timeout: Duration,
    /// No notification at all for this long (not even our heartbeats) means the connection
    /// is dead without having said so (a half-open TCP connection): reconnect.
    pub(super) silence: Duration,
    pub(super) changes: broadcast::Sender<Change>,
    pub(super) in_sync: watch::Sender<u64>,
    pub(super) node: String,
}

impl Feed {
    /// Receives announcements forever, reconnecting (with a short backoff) whenever the
    /// connection is lost, then announcing [`Change::Resync`] to this node's subscribers.
    pub(super) async fn run(self, first: PgListener) {
        let mut listener = Some(first);
        let mut backoff = BACKOFF.0;
        let mut missed = false;
        loop {
            let mut active = match listener.take() {
                Some(active) => active,
                None => match listen(&self.options, self.connect_timeout).await {
                    Ok(active) => active,
                    Err(error) => {
                        tracing::debug!(%error, "change feed: reconnecting failed");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(BACKOFF.1);
                        continue;
                    }
                },
            };
            backoff = BACKOFF.0;
            if std::mem::take(&mut missed) {
                tracing::info!("change feed: listening again, dropping every cache");
                let _ = self.changes.send(Change::Resync);
            }
            loop {
                match tokio::time::timeout(self.silence, active.try_recv()).await {
                    Ok(Ok(Some(notification))) => self.deliver(notification.payload()),
                    Ok(Ok(None)) => {
                        // sqlx reconnected and listens again; what was sent meanwhile is lost.
                        tracing::warn!("change feed: connection lost and re-established");
                        let _ = self.changes.send(Change::Resync);
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "change feed: connection lost");
                        missed = true;
                        break;
                    }
                    Err(_) => {
                        tracing::warn!("change feed: silent for too long, reconnecting");
                        missed = true;
                        break;
                    }
                }
            }
        }
    }

    fn deliver(&self, payload: &str) {
        if let Some(heartbeat) = payload.strip_prefix(HEARTBEAT_PREFIX) {
            let ours = heartbeat
                .split_once(':')
                .filter(|(node, _)| *node == self.node)
                .and_then(|(_, sent)| sent.parse::<u64>().ok());
            if let Some(sent) = ours {
                self.in_sync.send_if_modified(|latest| {
                    let newer = sent > *latest;
                    if newer {
                        *latest = sent;
                    }
                    newer
                });
            }
            return;
        }
        match Change::decode(payload) {
            Some(change) => {
                // No subscriber is not an error.
                let _ = self.changes.send(change);
            }
            None => tracing::debug!(
                payload = payload.get(..64).unwrap_or(payload),
                "change feed: ignoring an announcement this version does not know"
            ),
        }
    }
}

/// Sends this store's heartbeat through the pool every `every`, forever.
pub(super) async fn heartbeats(
    pool: PgPool,
    node: String,
    base: Instant,
    every: Duration,
    limit: Duration,
) {
    // A zero period would make `interval` panic.
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(10)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        // The time is taken before sending: every change committed before it is delivered
        // ahead of the heartbeat (Postgres delivers notifications in commit order).
        let payload = format!("{HEARTBEAT_PREFIX}{node}:{}", nanos_since(base));
        let send = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload)
            .execute(&pool);
        match tokio::time::timeout(limit, send).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::debug!(%error, "heartbeat not sent"),
            Err(_) => tracing::debug!("heartbeat not sent: timed out"),
        }
    }
}

impl PostgresStore {
    pub(super) fn subscribe(&self) -> Option<broadcast::Receiver<Change>> {
        Some(self.changes.subscribe())
    }

    pub(super) fn last_in_sync(&self) -> Option<Instant> {
        let sent = *self.in_sync.borrow();
        Some(
            self.base
                .checked_add(Duration::from_nanos(sent))
                .unwrap_or(self.base),
        )
    }

    pub(super) async fn announce(&self, change: &Change) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(change.encode())
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        Ok(())
    }
}
