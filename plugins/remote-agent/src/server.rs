//! The listener: TLS (1.3 only), a WebSocket per agent, the handshake, then the connection's
//! reader, writer and heartbeat loops.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use keybroker_agent_protocol::{
    decode, encode, random_nonce, verify_agent, Challenge, Frame, Heartbeat, Refused, Welcome,
    PROTOCOL_VERSION,
};
use keybroker_plugin_abi::{LogLevel, PluginError};
use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
    sync::{mpsc, Semaphore},
};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::{tungstenite::Message, WebSocketStream};

use crate::{
    config::Config,
    gateway::{Connection, Gateway},
};

/// RFC 9266 `tls-exporter` channel binding: what the agent signs along with the nonces.
pub const CHANNEL_BINDING_LABEL: &[u8] = b"EXPORTER-Channel-Binding";

/// Handshakes in progress at once; more connections wait for a slot.
const MAX_PENDING_HANDSHAKES: usize = 64;

/// Frames queued for one agent before callers are told the connection is congested.
const OUTBOUND_QUEUE: usize = 4096;

/// What every failed authentication reads, to the agent and in the log.
const AUTH_FAILED: &str = "authentication failed";

/// The TLS server configuration from the configured certificate and key.
pub fn tls_acceptor(config: &Config) -> Result<TlsAcceptor, PluginError> {
    let certificates: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(&config.tls_cert_file)
            .and_then(|certificates| certificates.collect::<Result<_, _>>())
            .map_err(|error| {
                PluginError::invalid_config(format!(
                    "remote-agent: tls_cert_file {}: {error}",
                    config.tls_cert_file.display()
                ))
            })?;
    if certificates.is_empty() {
        return Err(PluginError::invalid_config(format!(
            "remote-agent: tls_cert_file {}: no certificate in it",
            config.tls_cert_file.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&config.tls_key_file).map_err(|_| {
        PluginError::invalid_config(format!(
            "remote-agent: tls_key_file {}: no readable PEM private key",
            config.tls_key_file.display()
        ))
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .and_then(|builder| {
            builder
                .with_no_client_auth()
                .with_single_cert(certificates, key)
        })
        .map_err(|error| {
            PluginError::invalid_config(format!("remote-agent: TLS certificate and key: {error}"))
        })?;
    Ok(TlsAcceptor::from(Arc::new(server)))
}

/// Accepts agents forever. Binding is retried (a reloaded instance may wait for its
/// predecessor to release the port).
pub async fn listen(gateway: Arc<Gateway>, acceptor: TlsAcceptor) {
    let mut warned = false;
    let listener = loop {
        match TcpListener::bind(&gateway.config.listen).await {
            Ok(listener) => break listener,
            Err(error) => {
                if !warned {
                    gateway.log(
                        LogLevel::ERROR,
                        &format!(
                            "cannot listen on {}: {error}; retrying",
                            gateway.config.listen
                        ),
                    );
                    warned = true;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    gateway.log(
        LogLevel::INFO,
        &format!("listening for agents on {}", gateway.config.listen),
    );
    let pending = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                gateway.log(LogLevel::WARN, &format!("accept failed: {error}"));
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = pending.clone().acquire_owned().await else {
            return;
        };
        let gateway = gateway.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let timeout = gateway.config.handshake_timeout;
            let accepted =
                tokio::time::timeout(timeout, handshake(&gateway, acceptor, stream, remote)).await;
            drop(permit);
            match accepted {
                Ok(Ok(Some((connection, socket, outbound)))) => {
                    serve(gateway, connection, socket, outbound).await;
                }
                Ok(Ok(None)) => {}
                Ok(Err(reason)) => gateway.log(
                    LogLevel::WARN,
                    &format!("agent connection from {remote} refused: {reason}"),
                ),
                Err(_) => gateway.log(
                    LogLevel::WARN,
                    &format!("agent connection from {remote}: handshake timed out"),
                ),
            }
        });
    }
}

type Accepted<S> = (Arc<Connection>, WebSocketStream<S>, mpsc::Receiver<Message>);

/// Reads the next frame of the handshake.
async fn next_frame<S: AsyncRead + AsyncWrite + Unpin>(
    socket: &mut WebSocketStream<S>,
) -> Result<Frame, String> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => {
                return decode(text.as_str()).map_err(|error| error.to_string())
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(_)) => return Err("unexpected WebSocket message".to_owned()),
            Some(Err(error)) => return Err(error.to_string()),
            None => return Err("connection closed during the handshake".to_owned()),
        }
    }
}

async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    socket: &mut WebSocketStream<S>,
    frame: &Frame,
) -> Result<(), String> {
    let text = encode(frame).map_err(|error| error.to_string())?;
    socket
        .send(Message::text(text))
        .await
        .map_err(|error| error.to_string())
}

/// TLS, WebSocket and the agent's authentication. `Ok(None)` after a refusal already logged.
async fn handshake(
    gateway: &Gateway,
    acceptor: TlsAcceptor,
    stream: TcpStream,
    remote: SocketAddr,
) -> Result<Option<Accepted<tokio_rustls::server::TlsStream<TcpStream>>>, String> {
    let _ = stream.set_nodelay(true);
    let tls = acceptor
        .accept(stream)
        .await
        .map_err(|error| format!("TLS: {error}"))?;
    let mut binding = [0u8; 32];
    tls.get_ref()
        .1
        .export_keying_material(&mut binding, CHANNEL_BINDING_LABEL, None)
        .map_err(|error| format!("TLS exporter: {error}"))?;
    let mut socket = tokio_tungstenite::accept_async_with_config(
        tls,
        Some(keybroker_agent_protocol::websocket_config()),
    )
    .await
    .map_err(|error| format!("WebSocket: {error}"))?;
    let Frame::Hello(hello) = next_frame(&mut socket).await? else {
        return Err("the first frame is not a hello".to_owned());
    };
    if hello.protocol != PROTOCOL_VERSION {
        let refused = Frame::Refused(Refused {
            reason: format!(
                "protocol version {} is not supported; this gateway speaks {PROTOCOL_VERSION}",
                hello.protocol
            ),
        });
        let _ = send(&mut socket, &refused).await;
        let _ = socket.close(None).await;
        return Err(format!("agent speaks protocol {}", hello.protocol));
    }
    let broker_nonce = random_nonce();
    send(&mut socket, &Frame::Challenge(Challenge { broker_nonce })).await?;
    let Frame::Proof(proof) = next_frame(&mut socket).await? else {
        return Err("the frame after the challenge is not a proof".to_owned());
    };
    let agent = gateway.config.agent(&hello.agent_id);
    // An unknown id is checked against a pin no key has, so it fails like a wrong secret.
    let pin = agent.map_or("0".repeat(64), |agent| agent.pin.clone());
    let verified = verify_agent(&pin, &hello, &broker_nonce, &proof, &binding).is_ok();
    let Some(agent) = agent.filter(|_| verified) else {
        let refused = Frame::Refused(Refused {
            reason: AUTH_FAILED.to_owned(),
        });
        let _ = send(&mut socket, &refused).await;
        let _ = socket.close(None).await;
        let announced: String = hello.agent_id.chars().take(128).collect();
        gateway.log(
            LogLevel::WARN,
            &format!("agent {announced:?} from {remote}: {AUTH_FAILED}"),
        );
        return Ok(None);
    };
    let welcome = Frame::Welcome(Welcome {
        heartbeat_interval_ms: millis(gateway.config.heartbeat_interval),
        request_timeout_ms: millis(gateway.config.request_timeout),
        tenants: agent.tenants.clone(),
    });
    send(&mut socket, &welcome).await?;
    let (outbound, queued) = mpsc::channel(OUTBOUND_QUEUE);
    let connection = Arc::new(Connection::new(
        agent.id.clone(),
        agent.tenants.clone(),
        remote.to_string(),
        outbound,
    ));
    Ok(Some((connection, socket, queued)))
}

fn millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

/// Runs an authenticated connection until it ends, then unregisters it.
async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    gateway: Arc<Gateway>,
    connection: Arc<Connection>,
    socket: WebSocketStream<S>,
    mut queued: mpsc::Receiver<Message>,
) {
    let (mut sink, mut stream) = socket.split();
    gateway.register(connection.clone());
    // The writer: queued frames are fed and flushed together.
    let writer = tokio::spawn(async move {
        while let Some(message) = queued.recv().await {
            if sink.feed(message).await.is_err() {
                return;
            }
            while let Ok(message) = queued.try_recv() {
                if sink.feed(message).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    let interval = gateway.config.heartbeat_interval;
    let tick = interval / 10;
    // Silence for three intervals ends the connection; checked every tick, so the eviction
    // happens within three intervals of the last frame heard.
    let allowed_silence = interval * 3 - tick;
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_sent = Instant::now();
    let mut seq = 0u64;
    let why = loop {
        tokio::select! {
            received = stream.next() => {
                match received {
                    Some(Ok(Message::Text(text))) => {
                        connection.heard();
                        if let Err(reason) = on_frame(&gateway, &connection, text.as_str()) {
                            break reason;
                        }
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => connection.heard(),
                    Some(Ok(Message::Close(_))) | None => break "the agent closed the connection".to_owned(),
                    Some(Ok(_)) => break "the agent sent a binary frame".to_owned(),
                    Some(Err(error)) => break format!("connection error: {error}"),
                }
            }
            _ = ticker.tick() => {
                if connection.silence() > allowed_silence {
                    break format!("nothing heard for three heartbeat intervals ({} ms)", interval.as_millis() * 3);
                }
                if last_sent.elapsed() >= interval {
                    seq += 1;
                    last_sent = Instant::now();
                    if let Ok(text) = encode(&Frame::Heartbeat(Heartbeat { seq })) {
                        if connection.outbound_send(Message::text(text)).is_err() {
                            break "the connection's writer stopped".to_owned();
                        }
                    }
                }
            }
        }
    };
    gateway.unregister(&connection, &why);
    // Stop the writer: the queue's other senders (callers) may outlive this loop.
    writer.abort();
}

/// Fails requests whose deadline passed, every tenth of the request timeout (5 to 50 ms).
pub async fn expire_requests(gateway: Arc<Gateway>) {
    let period = (gateway.config.request_timeout / 10)
        .clamp(Duration::from_millis(5), Duration::from_millis(50));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        gateway.expire();
    }
}

/// Handles one frame from an authenticated agent; `Err` ends the connection.
fn on_frame(gateway: &Gateway, connection: &Connection, text: &str) -> Result<(), String> {
    match decode(text) {
        Ok(Frame::Response(response)) => {
            if !connection.complete(response.id, response.result) {
                gateway.reply_dropped(&connection.agent_id, response.id);
            }
            Ok(())
        }
        Ok(Frame::Heartbeat(heartbeat)) => {
            let ack = encode(&Frame::HeartbeatAck(heartbeat)).map_err(|e| e.to_string())?;
            connection
                .outbound_send(Message::text(ack))
                .map_err(|_| "the connection's writer stopped".to_owned())
        }
        Ok(Frame::HeartbeatAck(_)) => Ok(()),
        Ok(_) => Err("the agent sent a frame only the broker may send".to_owned()),
        Err(error) => Err(format!("the agent sent a malformed frame: {error}")),
    }
}
