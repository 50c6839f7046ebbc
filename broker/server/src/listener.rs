//! The API listener: accepts connections, plain or TLS, and serves each with hyper, within
//! bounds no client can stretch (issue 16):
//! - at most `max_connections` connections at a time: beyond that the listener stops
//!   accepting, and further clients wait in the kernel's backlog (nothing is allocated for
//!   them);
//! - a TLS handshake, a request's headers, and the wait for the next request on a kept-alive
//!   HTTP/1 connection each end at `http_read_header_timeout` (Vault's setting; hyper's
//!   header timer runs from the first read of a request head, idle or not);
//! - the body is read under `http_read_timeout` and in-flight requests are bounded by
//!   `max_in_flight_requests`, both in the dispatcher ([`crate::http`]).
//!
//! axum's `serve` offers none of the connection bounds, so this is hyper-util's connection
//! builder (the same machinery `serve` wraps) with its timer set.

use std::{future::Future, sync::Arc, time::Duration};

use anyhow::Context as _;
use axum::{extract::ConnectInfo, Router};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

/// Bounds of the listener (from `[listener]`).
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// Connections served at once.
    pub max_connections: usize,
    /// Deadline of a TLS handshake, of a request's headers, and of an idle kept-alive wait.
    pub header_read_timeout: Duration,
}

/// How long requests under way may finish once shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

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
    let graceful = GracefulShutdown::new();
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
        let service = TowerToHyperService::new(app.clone().map_request(
            move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            },
        ));
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let deadline = bounds.header_read_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let served = match tls {
                None => {
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    watcher.watch(connection.into_owned()).await
                }
                Some(acceptor) => {
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(deadline, acceptor.accept(stream)).await
                    else {
                        return;
                    };
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    watcher.watch(connection.into_owned()).await
                }
            };
            if let Err(error) = served {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still under way at shutdown were cut off");
    }
    Ok(())
}
