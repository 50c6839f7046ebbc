//! Dialing the broker: TCP, then TLS 1.3 trusting only the broker's CA, then the WebSocket
//! client handshake; and the TLS channel binding the agent's proof is bound to.

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::WebSocketStream;

use super::{ConnectionError, TransportError};
use crate::broker_url::BrokerUrl;

/// The RFC 9266 `tls-exporter` label; the gateway exports the same bytes on its side.
pub const CHANNEL_BINDING_LABEL: &[u8] = b"EXPORTER-Channel-Binding";

/// Length of the exported channel binding.
pub const CHANNEL_BINDING_BYTES: usize = 32;

/// The WebSocket over TLS over TCP that carries the frames.
pub type BrokerStream = WebSocketStream<TlsStream<TcpStream>>;

/// The TLS client config: TLS 1.3 only, ring, and no root but the certificates in the PEM
/// file `broker_ca` (no system roots: a certificate any public CA would issue for the
/// broker's name must not be enough).
pub fn tls_config(broker_ca: &Path) -> Result<Arc<ClientConfig>, TransportError> {
    let pem = std::fs::read(broker_ca).map_err(|source| TransportError::CaRead {
        path: broker_ca.to_owned(),
        source,
    })?;
    let ca_error = |reason: String| TransportError::Ca {
        path: broker_ca.to_owned(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        let certificate =
            certificate.map_err(|error| ca_error(format!("not a PEM certificate: {error}")))?;
        roots
            .add(certificate)
            .map_err(|error| ca_error(format!("unusable CA certificate: {error}")))?;
    }
    if roots.is_empty() {
        return Err(ca_error(
            "holds no certificate (expected PEM: -----BEGIN CERTIFICATE-----)".to_owned(),
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|error| ca_error(format!("TLS setup failed: {error}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The WebSocket limits both ends use (no message or frame over `MAX_FRAME_BYTES`).
pub use keybroker_agent_protocol::websocket_config;

/// Dials `url` (no timeout here: the caller bounds the whole of it) and returns the
/// WebSocket and this connection's channel binding.
pub(super) async fn connect(
    url: &BrokerUrl,
    tls: &Arc<ClientConfig>,
) -> Result<(BrokerStream, [u8; CHANNEL_BINDING_BYTES]), ConnectionError> {
    let tcp = TcpStream::connect((url.host(), url.port()))
        .await
        .map_err(ConnectionError::Dial)?;
    // Responses are small and latency matters more than packet count; the writer batches.
    tcp.set_nodelay(true).map_err(ConnectionError::Dial)?;
    let tls_stream = TlsConnector::from(Arc::clone(tls))
        .connect(url.server_name().clone(), tcp)
        .await
        .map_err(classify_tls_error)?;
    let channel_binding = channel_binding(tls_stream.get_ref().1)?;
    let (websocket, _response) = tokio_tungstenite::client_async_with_config(
        url.request_url(),
        tls_stream,
        Some(websocket_config()),
    )
    .await
    .map_err(|error| ConnectionError::WebSocket(Box::new(error)))?;
    Ok((websocket, channel_binding))
}

/// RFC 9266 `tls-exporter`: 32 bytes exported with label `EXPORTER-Channel-Binding` and no
/// context.
pub fn channel_binding(
    connection: &rustls::ClientConnection,
) -> Result<[u8; CHANNEL_BINDING_BYTES], ConnectionError> {
    connection
        .export_keying_material([0u8; CHANNEL_BINDING_BYTES], CHANNEL_BINDING_LABEL, None)
        .map_err(|error| ConnectionError::Tls(error.to_string()))
}

/// Tells a broker certificate the agent does not trust (the likely misconfiguration, and
/// the attack the CA pin exists for) from other TLS failures.
fn classify_tls_error(error: io::Error) -> ConnectionError {
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(reason)) => {
            ConnectionError::UntrustedBroker(reason.to_string())
        }
        Some(other) => ConnectionError::Tls(other.to_string()),
        None => ConnectionError::Tls(error.to_string()),
    }
}
