//! The API listener: accepts connections, plain or TLS, and serves each with hyper, within
//! bounds no client can stretch (issue 16):
//! - at most `max_connections` connections at a time: beyond that the listener stops
//!   accepting, and further clients wait in the kernel's backlog (nothing is allocated for
//!   them);
//! - a connection must complete its TLS handshake and its first request's head within
//!   `http_read_header_timeout`, and every later HTTP/1 request head too (hyper's header
//!   timer, which also bounds the wait for the next request on a kept-alive connection);
//! - a connection with no request in flight and none started for `http_idle_timeout` is
//!   closed (HTTP/2 has no header timer);
//! - the body is read under `http_read_timeout` and in-flight requests are bounded by
//!   `max_in_flight_requests`, both in the dispatcher ([`crate::http`]).
//!
//! axum's `serve` offers none of these bounds, so this is hyper-util's connection builder
//! (the same machinery `serve` wraps) with its timer set, and a watchdog per connection:
//! hyper-util's protocol detection waits for a client's first 24 bytes without a deadline,
//! and an HTTP/2 connection may idle for ever.

use std::{
    future::Future,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::Context as _;
use axum::{extract::ConnectInfo, Router};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpListener,
    sync::{watch, Semaphore},
};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Bounds of the listener (from `[listener]`).
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// Connections served at once.
    pub max_connections: usize,
    /// Deadline of a TLS handshake and of a request's head (and, in HTTP/1, of the wait
    /// for the next request).
    pub header_read_timeout: Duration,
    /// How long a connection may stay without a request before it is closed.
    pub idle_timeout: Duration,
}

/// How long requests under way may finish once shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Requests of one connection: started so far, and in flight now.
#[derive(Default)]
struct Activity {
    started: AtomicU64,
    in_flight: AtomicUsize,
}

/// Held while a request of a connection is in flight.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn enter(activity: &Arc<Activity>) -> Self {
        activity.started.fetch_add(1, Ordering::SeqCst);
        activity.in_flight.fetch_add(1, Ordering::SeqCst);
        Self(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves `app` on `listener` until `shutdown` completes; then stops accepting and gives
/// the requests under way [`SHUTDOWN_GRACE`] to finish.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    bounds: Bounds,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let permits = Arc::new(Semaphore::new(bounds.max_connections));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(bounds.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let (stopping, stop) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        // A permit first: at the bound, connections wait in the backlog, not in memory.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.context("connection permits closed")?,
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors, or a connection reset before it was accepted:
                    // the listener itself is fine. Back off a little rather than spin.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let activity = Arc::new(Activity::default());
        let counted = activity.clone();
        let service = app
            .clone()
            .map_request(move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            })
            .map_future(move |response| {
                let in_flight = InFlight::enter(&counted);
                async move {
                    let response = response.await;
                    drop(in_flight);
                    response
                }
            });
        let service = TowerToHyperService::new(service);
        let builder = builder.clone();
        let tls = tls.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let served = match tls {
                None => serve_connection(&builder, stream, service, &activity, bounds, stop).await,
                Some(acceptor) => {
                    let deadline = bounds.header_read_timeout;
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(deadline, acceptor.accept(stream)).await
                    else {
                        return;
                    };
                    serve_connection(&builder, stream, service, &activity, bounds, stop).await
                }
            };
            if let Err(error) = served {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = stopping.send(true);
    // Every connection holds a permit until it ends: having them all back means all ended.
    let all = u32::try_from(bounds.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(SHUTDOWN_GRACE, permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("requests still under way at shutdown were cut off");
    }
    Ok(())
}

/// Serves one connection until it ends, it idles past its deadline, or shutdown starts
/// (then it finishes what is in flight).
async fn serve_connection<I, S, B>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    service: S,
    activity: &Activity,
    bounds: Bounds,
    mut stop: watch::Receiver<bool>,
) -> Result<(), BoxError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<hyper::Request<Incoming>, Response = hyper::Response<B>>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    // The first request must start within the header deadline; after that, the
    // connection may idle for `idle_timeout` between requests.
    let mut wait = bounds.header_read_timeout;
    let mut seen = 0;
    // Once closing, what is in flight may finish; a peer that keeps a closing connection
    // open (HTTP/2 waits for its answer to a ping) is cut off after one more header
    // deadline.
    let mut closing: Option<tokio::time::Instant> = None;
    loop {
        let cut_off = closing.unwrap_or_else(tokio::time::Instant::now);
        tokio::select! {
            served = connection.as_mut() => return served,
            changed = stop.changed(), if closing.is_none() => {
                if changed.is_err() || *stop.borrow() {
                    closing = Some(tokio::time::Instant::now() + bounds.header_read_timeout);
                    connection.as_mut().graceful_shutdown();
                }
            }
            () = tokio::time::sleep(wait), if closing.is_none() => {
                let started = activity.started.load(Ordering::SeqCst);
                let busy = activity.in_flight.load(Ordering::SeqCst) > 0;
                if started == seen && !busy {
                    closing = Some(tokio::time::Instant::now() + bounds.header_read_timeout);
                    connection.as_mut().graceful_shutdown();
                }
                seen = started;
                wait = bounds.idle_timeout;
            }
            () = tokio::time::sleep_until(cut_off), if closing.is_some() => {
                // Unless a request is still being answered: that one ends by itself (its
                // body under the read deadline, its handler under its own).
                if activity.in_flight.load(Ordering::SeqCst) == 0 {
                    return Ok(());
                }
                closing = Some(tokio::time::Instant::now() + bounds.header_read_timeout);
            }
        }
    }
}
