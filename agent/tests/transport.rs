//! The agent's transport against a real TLS WebSocket server playing the broker's gateway
//! (rustls server, tokio-tungstenite, a throwaway CA from rcgen), checking the handshake with
//! the protocol crate's `verify_agent` over the same exporter channel binding.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use keybroker_agent::transport::{websocket_config, CHANNEL_BINDING_LABEL};
use keybroker_agent::{Config, SystemClock, Transport};
use keybroker_agent_protocol::xks::{
    DecryptRequest, EncryptRequest, EncryptionAlgorithm, RequestMetadata, XksErrorName,
};
use keybroker_agent_protocol::{
    decode, encode, random_nonce, verify_agent, Challenge, Frame, Heartbeat, Hello, Operation,
    Refused, Reply, Request, SecretBytes, Welcome, MAX_FRAME_BYTES,
};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Base64 of 32 bytes, the agent secret.
const SECRET_B64: &str = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ=";
/// Base64 of 32 bytes of 'A', the key `data`.
const KEY_B64: &str = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=";
const WAIT: Duration = Duration::from_secs(10);

/// A CA and a server certificate for 127.0.0.1 signed by it.
struct Pki {
    ca_pem: String,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: Vec<u8>,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        server_chain: vec![server_cert.der().clone()],
        server_key: server_key.serialize_der(),
    }
}

type BrokerSocket = WebSocketStream<TlsStream<TcpStream>>;

/// One agent connection accepted by the fake broker.
struct Connection {
    socket: BrokerSocket,
    channel_binding: [u8; 32],
}

/// The broker's side: accepts TLS + WebSocket connections and hands them to the test.
struct FakeBroker {
    port: u16,
    connections: mpsc::UnboundedReceiver<Connection>,
    tcp_accepts: Arc<AtomicUsize>,
}

impl FakeBroker {
    async fn start(pki: &Pki) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                pki.server_chain.clone(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.server_key.clone())),
            )
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (sender, connections) = mpsc::unbounded_channel();
        let tcp_accepts = Arc::new(AtomicUsize::new(0));
        let accepts = tcp_accepts.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                accepts.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                let sender = sender.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut channel_binding = [0u8; 32];
                    tls.get_ref()
                        .1
                        .export_keying_material(&mut channel_binding, CHANNEL_BINDING_LABEL, None)
                        .unwrap();
                    let Ok(socket) =
                        tokio_tungstenite::accept_async_with_config(tls, Some(websocket_config()))
                            .await
                    else {
                        return;
                    };
                    let _ = sender.send(Connection {
                        socket,
                        channel_binding,
                    });
                });
            }
        });
        Self {
            port,
            connections,
            tcp_accepts,
        }
    }

    async fn next_connection(&mut self) -> Connection {
        tokio::time::timeout(WAIT, self.connections.recv())
            .await
            .expect("the agent did not connect")
            .unwrap()
    }
}

impl Connection {
    async fn send(&mut self, frame: &Frame) {
        self.socket
            .send(Message::text(encode(frame).unwrap()))
            .await
            .unwrap();
    }

    /// The next frame from the agent, checking its size.
    async fn recv(&mut self) -> Frame {
        loop {
            let message = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .expect("the agent sent nothing")
                .expect("the connection ended")
                .expect("the connection failed");
            match message {
                Message::Text(text) => {
                    assert!(text.len() <= MAX_FRAME_BYTES, "{} bytes", text.len());
                    return decode(&text).unwrap();
                }
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("unexpected message {other:?}"),
            }
        }
    }

    /// The next frame that is not one of the agent's heartbeats.
    async fn recv_skipping_heartbeats(&mut self) -> Frame {
        loop {
            match self.recv().await {
                Frame::Heartbeat(_) => {}
                frame => return frame,
            }
        }
    }

    async fn expect_hello(&mut self) -> Hello {
        match self.recv().await {
            Frame::Hello(hello) => hello,
            other => panic!("expected hello, got {other:?}"),
        }
    }

    /// The broker's side of a successful handshake; returns when the welcome was about to be
    /// sent (the agent starts timing the broker's silence no earlier).
    async fn welcome(&mut self, pin: &str, heartbeat_interval_ms: u32) -> tokio::time::Instant {
        let hello = self.expect_hello().await;
        assert_eq!(hello.agent_id, "acme-dc1");
        let broker_nonce = random_nonce();
        self.send(&Frame::Challenge(Challenge { broker_nonce }))
            .await;
        let Frame::Proof(proof) = self.recv().await else {
            panic!("expected proof");
        };
        verify_agent(pin, &hello, &broker_nonce, &proof, &self.channel_binding)
            .expect("the proof verifies over this connection's channel binding");
        let sending = tokio::time::Instant::now();
        self.send(&Frame::Welcome(Welcome {
            heartbeat_interval_ms,
            request_timeout_ms: 5000,
            tenants: vec!["acme".into()],
        }))
        .await;
        sending
    }

    /// Whether the agent ends the connection within `WAIT`.
    async fn ends(&mut self) -> bool {
        let ending = async {
            loop {
                match self.socket.next().await {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                    Some(Ok(_)) => {}
                }
            }
        };
        tokio::time::timeout(WAIT, ending).await.is_ok()
    }
}

/// An agent (its config files in a temporary directory) running its transport in-process.
struct Agent {
    _dir: tempfile::TempDir,
    pin: String,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn write_private(path: &Path, contents: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

impl Agent {
    fn start(port: u16, ca_pem: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca_pem).unwrap();
        write_private(&dir.path().join("secret"), SECRET_B64);
        write_private(&dir.path().join("data.key"), KEY_B64);
        let config_text = format!(
            r#"
agent_id = "acme-dc1"
broker = "wss://127.0.0.1:{port}"
broker_ca = "ca.pem"
secret_file = "secret"
heartbeat_interval = "5s"
reconnect_max_delay = "400ms"

[[keys]]
name = "data"
file = "data.key"

[[allow]]
tenant = "acme"
keys = ["data"]
"#
        );
        std::fs::write(dir.path().join("agent.toml"), config_text).unwrap();
        let config = Config::load(&dir.path().join("agent.toml")).unwrap();
        let identity = config.identity().unwrap();
        let pin = identity.pin();
        let service = config.service(&|_| None, Arc::new(SystemClock)).unwrap();
        let transport = Transport::new(&config, identity, Arc::new(service)).unwrap();
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(async move { transport.run(shutdown).await });
        Self {
            _dir: dir,
            pin,
            stop,
            task,
        }
    }
}

fn metadata(tenant: &str) -> RequestMetadata {
    RequestMetadata::keybroker("entity:42", "transit/encrypt", "kms-req-1", tenant)
}

fn encrypt_request(id: u64, tenant: &str, plaintext: &[u8], aad: &[u8]) -> Frame {
    Frame::Request(Request {
        id,
        tenant: tenant.into(),
        key_id: "data".into(),
        deadline_ms: 5000,
        operation: Operation::Encrypt(EncryptRequest {
            request_metadata: metadata(tenant),
            plaintext: SecretBytes::new(plaintext.to_vec()),
            encryption_algorithm: EncryptionAlgorithm::AesGcm,
            additional_authenticated_data: Some(aad.to_vec()),
            ciphertext_data_integrity_value_algorithm: None,
        }),
    })
}

#[tokio::test]
async fn handshake_round_trip_heartbeats_allowlist_and_shutdown() {
    let pki = pki();
    let mut broker = FakeBroker::start(&pki).await;
    let agent = Agent::start(broker.port, &pki.ca_pem);
    let mut connection = broker.next_connection().await;
    connection.welcome(&agent.pin, 200).await;

    // Encrypt then decrypt through the agent's key, with the largest plaintext and AAD XKS
    // allows: every frame the agent sends stays under the cap (checked in `recv`).
    let plaintext = vec![0x5a; 4300];
    let aad = vec![0x17; 8192];
    connection
        .send(&encrypt_request(1, "acme", &plaintext, &aad))
        .await;
    let Frame::Response(response) = connection.recv_skipping_heartbeats().await else {
        panic!("expected a response");
    };
    assert_eq!(response.id, 1);
    let Reply::Encrypt(encrypted) = response.result else {
        panic!("expected an encrypt reply, got {:?}", response.result);
    };
    assert_ne!(encrypted.ciphertext, plaintext);
    connection
        .send(&Frame::Request(Request {
            id: 2,
            tenant: "acme".into(),
            key_id: "data".into(),
            deadline_ms: 5000,
            operation: Operation::Decrypt(DecryptRequest {
                request_metadata: metadata("acme"),
                encryption_algorithm: EncryptionAlgorithm::AesGcm,
                ciphertext: encrypted.ciphertext.clone(),
                initialization_vector: encrypted.initialization_vector.clone(),
                authentication_tag: encrypted.authentication_tag.clone(),
                additional_authenticated_data: Some(aad.clone()),
                ciphertext_metadata: None,
            }),
        }))
        .await;
    let Frame::Response(response) = connection.recv_skipping_heartbeats().await else {
        panic!("expected a response");
    };
    assert_eq!(response.id, 2);
    let Reply::Decrypt(decrypted) = response.result else {
        panic!("expected a decrypt reply, got {:?}", response.result);
    };
    assert_eq!(decrypted.plaintext.expose(), plaintext.as_slice());

    // A tenant not in the agent's allowlist is refused, whatever the broker says.
    connection
        .send(&encrypt_request(3, "globex", b"x", b""))
        .await;
    let Frame::Response(response) = connection.recv_skipping_heartbeats().await else {
        panic!("expected a response");
    };
    assert_eq!(response.id, 3);
    let Reply::Error(error) = response.result else {
        panic!("expected an error, got {:?}", response.result);
    };
    assert_eq!(error.error_name, XksErrorName::AccessDeniedException);

    // A request frame that does not decode but has an id is answered, not dropped.
    connection
        .socket
        .send(Message::text(
            r#"{"type":"request","id":4,"tenant":"acme","keyId":"data","deadlineMs":5000,"operation":"encrypt","body":{"bogus":true}}"#,
        ))
        .await
        .unwrap();
    let Frame::Response(response) = connection.recv_skipping_heartbeats().await else {
        panic!("expected a response");
    };
    assert_eq!(response.id, 4);
    let Reply::Error(error) = response.result else {
        panic!("expected an error, got {:?}", response.result);
    };
    assert_eq!(error.error_name, XksErrorName::ValidationException);

    // The broker's heartbeat is acknowledged with its seq; the agent sends its own.
    connection
        .send(&Frame::Heartbeat(Heartbeat { seq: 77 }))
        .await;
    let mut acknowledged = false;
    let mut agent_heartbeats = 0;
    while !acknowledged || agent_heartbeats == 0 {
        match connection.recv().await {
            Frame::HeartbeatAck(Heartbeat { seq }) => {
                assert_eq!(seq, 77);
                acknowledged = true;
            }
            Frame::Heartbeat(_) => agent_heartbeats += 1,
            other => panic!("unexpected {other:?}"),
        }
    }

    // Shutdown: a normal close frame, and `run` returns.
    agent.stop.send(true).unwrap();
    let close = loop {
        match tokio::time::timeout(WAIT, connection.socket.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(close.unwrap().code, CloseCode::Normal);
    tokio::time::timeout(WAIT, agent.task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_broker_whose_certificate_chains_to_another_ca_never_hears_a_hello() {
    let trusted = pki();
    let impostor = pki();
    let mut broker = FakeBroker::start(&impostor).await;
    let agent = Agent::start(broker.port, &trusted.ca_pem);
    // The agent keeps trying (backoff) but never completes TLS.
    tokio::time::timeout(WAIT, async {
        while broker.tcp_accepts.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the agent retries");
    assert!(
        broker.connections.try_recv().is_err(),
        "no WebSocket connection (so no hello) reached the impostor"
    );
    agent.stop.send(true).unwrap();
    tokio::time::timeout(WAIT, agent.task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn the_agent_reconnects_after_a_drop_a_refusal_silence_and_an_oversized_frame() {
    let pki = pki();
    let mut broker = FakeBroker::start(&pki).await;
    let agent = Agent::start(broker.port, &pki.ca_pem);

    // Dropped after the welcome.
    let mut connection = broker.next_connection().await;
    connection.welcome(&agent.pin, 5000).await;
    drop(connection);

    // Refused: the agent retries later.
    let mut connection = broker.next_connection().await;
    connection.expect_hello().await;
    connection
        .send(&Frame::Refused(Refused {
            reason: "agent authentication failed".into(),
        }))
        .await;
    connection.socket.close(None).await.unwrap();

    // Silence: with 200 ms heartbeats, the agent gives up within three intervals.
    let mut connection = broker.next_connection().await;
    // Timed from before the welcome is sent: the agent cannot start its own clock earlier,
    // however the two tasks are scheduled (timing from after the send could start later
    // than the agent's clock, and so measure less than the agent waited).
    let started = connection.welcome(&agent.pin, 200).await;
    assert!(connection.ends().await, "the agent dropped a silent broker");
    assert!(
        started.elapsed() >= Duration::from_millis(550),
        "{:?}",
        started.elapsed()
    );

    // A frame over the cap is refused by the agent's WebSocket; it reconnects.
    let mut connection = broker.next_connection().await;
    connection.welcome(&agent.pin, 5000).await;
    let oversized = "x".repeat(MAX_FRAME_BYTES + 1);
    let _ = connection.socket.send(Message::text(oversized)).await;
    assert!(connection.ends().await);

    // And it comes back once more, and is served.
    let mut connection = broker.next_connection().await;
    connection.welcome(&agent.pin, 5000).await;
    connection
        .send(&encrypt_request(9, "acme", b"hello", b""))
        .await;
    let Frame::Response(response) = connection.recv_skipping_heartbeats().await else {
        panic!("expected a response");
    };
    assert!(matches!(response.result, Reply::Encrypt(_)));

    agent.stop.send(true).unwrap();
    tokio::time::timeout(WAIT, agent.task)
        .await
        .unwrap()
        .unwrap();
}
