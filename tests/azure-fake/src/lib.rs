//! An HTTPS fake of Azure Key Vault's keys REST API and of the Microsoft identity platform
//! token endpoint, for tests: Azure Key Vault has no emulator.
//!
//! [`AzureFake::start`] generates a throwaway CA and a server certificate for `127.0.0.1`
//! (the CA's PEM file is at [`AzureFake::ca_pem_path`]; clients must trust it, since Azure
//! SDKs refuse bearer tokens over plain HTTP), binds a free loopback port and serves, on a
//! background thread with its own Tokio runtime until dropped:
//!
//! - the vault, at [`AzureFake::vault_url`]: `GET /keys` (the key list, paged by
//!   `maxresults` and `nextLink`), `POST /keys/{name}/create`, `GET
//!   /keys/{name}[/{version}]`, `PATCH /keys/{name}[/{version}]`, `DELETE /keys/{name}`
//!   (soft delete: the key moves to `GET /deletedkeys/{name}`, and its name cannot be
//!   reused meanwhile, 409 as Key Vault answers), `POST
//!   /keys/{name}/{version}/{wrapkey|unwrapkey|encrypt|decrypt|sign|verify}`, every one
//!   needing `api-version` and a bearer token this fake issued. Without one it answers 401
//!   with Key Vault's challenge, `WWW-Authenticate: Bearer
//!   authorization="<authority host>/<tenant>", resource="https://vault.azure.net"`, which
//!   the SDKs read before their first authenticated request;
//! - the identity platform, at [`AzureFake::authority_host`]: `POST
//!   /{tenant}/oauth2/v2.0/token` (client credentials grant with the registered client id
//!   and secret, scope `https://vault.azure.net/.default`) and the OpenID discovery document
//!   MSAL fetches first, `GET /{tenant}/v2.0/.well-known/openid-configuration`.
//!
//! Because the vault is not on `*.vault.azure.net`, clients must turn off the SDKs' check
//! that the challenge's resource matches the vault's domain (`verify_challenge_resource=False`
//! in Python, `verify_challenge_resource: Some(false)` in the Rust SDK's `KeyClientOptions`),
//! point their credential's authority host at the fake (Python: `authority=<authority host>,
//! disable_instance_discovery=True`, else MSAL asks login.microsoftonline.com about the host)
//! and trust the CA (`connection_verify=<ca.pem>` in Python).
//!
//! What the Python SDK (azure-keyvault-keys 4.11, azure-identity 1.27 / MSAL 1.39) sends,
//! found by experiment: its first request goes without token or body and reads the 401
//! challenge (it keeps only the tenant from `authorization`); then MSAL fetches the OpenID
//! document and posts the token request; then the request is repeated with the token,
//! `api-version=2025-07-01`. Get Key of the current version is `GET /keys/{name}/` (empty
//! version). A `CryptographyClient` holding the public key wraps, encrypts and verifies
//! locally and calls the vault only to unwrap, decrypt and sign; when Get Key is refused
//! (403) it does everything remotely. The Rust SDK sends `api-version=2025-07-01`
//! (azure_security_keyvault_keys 1.0.1, used by the `azure-keyvault` plugin) or
//! `2026-03-01-preview` (1.1.0-beta.1), and `/keys/{name}//wrapkey` for the current
//! version; the fake accepts any `api-version`.
//!
//! Fault controls, callable from any thread while requests run: [`AzureFake::throttle`]
//! (429 with `Retry-After`), [`AzureFake::set_latency`] (slow or hanging responses),
//! [`AzureFake::set_outage`] (503 everywhere),
//! [`AzureFake::deny`] and [`AzureFake::deny_for_key`] (403 access denied per operation), [`AzureFake::set_key_enabled`],
//! [`AzureFake::revoke_tokens`]; [`AzureFake::request_count`] counts requests per operation.
//!
//! The binary `keybroker-azure-fake` runs one from the command line. The fake's fidelity is
//! checked by the official Python SDK (`tests/python_sdk.rs` runs
//! `python/check_fake.py` with `<repo>/.venv/bin/python`).

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    thread::JoinHandle,
    time::Duration,
};

use axum::{
    http::{Request, Uri},
    routing::{get, post},
    Router,
};

pub mod crypto;
pub mod error;
mod identity;
mod keys;
pub mod state;
pub mod tls;

#[cfg(test)]
mod tests;

pub use crypto::KeySpec;
pub use state::{FakeConfig, FakeState, KEY_VAULT_RESOURCE};

/// What a request asked for, as counted by [`AzureFake::request_count`] and refused by
/// [`AzureFake::deny`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// Create Key (`POST /keys/{name}/create`).
    Create,
    /// Get Key.
    Get,
    /// Update Key (`PATCH`).
    Update,
    /// Wrap Key.
    WrapKey,
    /// Unwrap Key.
    UnwrapKey,
    /// Encrypt.
    Encrypt,
    /// Decrypt.
    Decrypt,
    /// Sign.
    Sign,
    /// Verify.
    Verify,
    /// Token endpoint requests.
    Token,
    /// OpenID discovery document requests.
    Discovery,
    /// Delete Key (`DELETE /keys/{name}`).
    Delete,
    /// Get Keys (`GET /keys`, the key list).
    List,
    /// Get Deleted Key (`GET /deletedkeys/{name}`).
    GetDeleted,
}

impl Operation {
    /// Every operation, in counter order.
    pub const ALL: [Operation; 14] = [
        Operation::Create,
        Operation::Get,
        Operation::Update,
        Operation::WrapKey,
        Operation::UnwrapKey,
        Operation::Encrypt,
        Operation::Decrypt,
        Operation::Sign,
        Operation::Verify,
        Operation::Token,
        Operation::Discovery,
        Operation::Delete,
        Operation::List,
        Operation::GetDeleted,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// The key operation a `POST /keys/{name}/{version}/{path}` names (case-insensitive).
    fn from_path(path: &str) -> Option<Operation> {
        Some(match path.to_ascii_lowercase().as_str() {
            "wrapkey" => Operation::WrapKey,
            "unwrapkey" => Operation::UnwrapKey,
            "encrypt" => Operation::Encrypt,
            "decrypt" => Operation::Decrypt,
            "sign" => Operation::Sign,
            "verify" => Operation::Verify,
            _ => return None,
        })
    }

    /// Key Vault's name of the operation, as in `key_ops` and permissions.
    pub fn key_op(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Get => "get",
            Operation::Update => "update",
            Operation::WrapKey => "wrapKey",
            Operation::UnwrapKey => "unwrapKey",
            Operation::Encrypt => "encrypt",
            Operation::Decrypt => "decrypt",
            Operation::Sign => "sign",
            Operation::Verify => "verify",
            Operation::Token => "token",
            Operation::Discovery => "discovery",
            Operation::Delete => "delete",
            Operation::List => "list",
            Operation::GetDeleted => "get",
        }
    }

    /// The access-policy permission named in a 403.
    fn permission(self) -> &'static str {
        self.key_op()
    }
}

/// The routes, for tests that drive them with `oneshot`. Paths must already be normalized
/// (see [`service`]).
pub fn router(state: Arc<FakeState>) -> Router {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(identity::token))
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(identity::openid_configuration),
        )
        .route("/keys", get(keys::list))
        .route("/keys/{name}/create", post(keys::create))
        .route(
            "/keys/{name}",
            get(keys::get_current)
                .patch(keys::update_current)
                .delete(keys::delete),
        )
        .route("/deletedkeys/{name}", get(keys::get_deleted))
        .route(
            "/keys/{name}/{version}",
            get(keys::get_version)
                .patch(keys::update_version)
                .post(keys::operate_current),
        )
        .route(
            "/keys/{name}/{version}/{operation}",
            post(keys::operate_version),
        )
        .with_state(state)
}

/// A request rewrite, as [`service`] applies it.
pub type RequestRewrite = fn(Request<axum::body::Body>) -> Request<axum::body::Body>;

/// [`router`] behind path normalization.
pub type NormalizedRouter = tower::util::MapRequest<Router, RequestRewrite>;

/// The router behind path normalization: SDKs asking for "the current version" send an
/// empty version segment (`/keys/k/` for Get Key, `/keys/k//wrapkey`), which Key Vault
/// accepts; the fake collapses empty segments before routing.
pub fn service(state: Arc<FakeState>) -> NormalizedRouter {
    tower::ServiceExt::map_request(router(state), normalize_path as RequestRewrite)
}

/// [`service`] as a `Router`, ready to serve.
pub fn app(state: Arc<FakeState>) -> Router {
    Router::new().fallback_service(service(state))
}

/// Set to print each request line to stderr (to see what a client asks for).
pub const LOG_ENV: &str = "KEYBROKER_AZURE_FAKE_LOG";

fn normalize_path<B>(mut request: Request<B>) -> Request<B> {
    if std::env::var_os(LOG_ENV).is_some() {
        eprintln!("azure fake: {} {}", request.method(), request.uri());
    }
    let uri = request.uri();
    let path = uri.path();
    let has_empty_segment = path.contains("//") || (path.len() > 1 && path.ends_with('/'));
    if !has_empty_segment {
        return request;
    }
    let mut normalized: String = path
        .split('/')
        .filter(|segment| !segment.is_empty())
        .flat_map(|segment| ["/", segment])
        .collect();
    if normalized.is_empty() {
        normalized.push('/');
    }
    if let Some(query) = uri.query() {
        normalized = format!("{normalized}?{query}");
    }
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = normalized.parse().ok();
    if let Ok(uri) = Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
    request
}

/// Why the fake could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// Certificates or TLS configuration.
    Tls(tls::TlsError),
    /// Binding the port, writing the CA file or starting the runtime.
    Io(std::io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Tls(e) => write!(f, "azure fake: {e}"),
            StartError::Io(e) => write!(f, "azure fake: {e}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Tls(e) => Some(e),
            StartError::Io(e) => Some(e),
        }
    }
}

/// A running fake. Dropping it stops the server and deletes the CA file.
pub struct AzureFake {
    state: Arc<FakeState>,
    port: u16,
    ca_pem: String,
    /// Holds `ca.pem`.
    dir: tempfile::TempDir,
    handle: axum_server::Handle,
    thread: Option<JoinHandle<()>>,
}

impl AzureFake {
    /// Starts a fake vault whose token endpoint accepts one registered client; panics with
    /// the reason if it cannot (a test that needs the fake must not run without it).
    #[allow(clippy::panic)] // A test harness: failing loudly, with the reason, is its job.
    pub fn start(tenant: &str, client_id: &str, client_secret: &str) -> AzureFake {
        match Self::try_start(tenant, client_id, client_secret) {
            Ok(fake) => fake,
            Err(error) => panic!("cannot start the Azure Key Vault fake: {error}"),
        }
    }

    /// [`AzureFake::start`], returning the error instead of panicking.
    pub fn try_start(
        tenant: &str,
        client_id: &str,
        client_secret: &str,
    ) -> Result<AzureFake, StartError> {
        Self::try_start_on(tenant, client_id, client_secret, 0)
    }

    /// [`AzureFake::try_start`] on a given port (0: a free one).
    pub fn try_start_on(
        tenant: &str,
        client_id: &str,
        client_secret: &str,
        port: u16,
    ) -> Result<AzureFake, StartError> {
        let ca = tls::TestCa::generate().map_err(StartError::Tls)?;
        let dir = tempfile::Builder::new()
            .prefix("keybroker-azure-fake-")
            .tempdir()
            .map_err(StartError::Io)?;
        std::fs::write(dir.path().join("ca.pem"), &ca.ca_pem).map_err(StartError::Io)?;
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).map_err(StartError::Io)?;
        listener.set_nonblocking(true).map_err(StartError::Io)?;
        let port = listener.local_addr().map_err(StartError::Io)?.port();
        let state = Arc::new(FakeState::new(FakeConfig {
            tenant: tenant.to_owned(),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            base_url: format!("https://127.0.0.1:{port}"),
        }));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("azure-fake")
            .enable_all()
            .build()
            .map_err(StartError::Io)?;
        let handle = axum_server::Handle::new();
        let server = axum_server::from_tcp_rustls(
            listener,
            axum_server::tls_rustls::RustlsConfig::from_config(ca.server_config),
        )
        .handle(handle.clone());
        let app = app(state.clone()).into_make_service();
        let thread = std::thread::Builder::new()
            .name("azure-fake".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    if let Err(error) = server.serve(app).await {
                        eprintln!("azure fake: server stopped: {error}");
                    }
                });
            })
            .map_err(StartError::Io)?;
        Ok(AzureFake {
            state,
            port,
            ca_pem: ca.ca_pem,
            dir,
            handle,
            thread: Some(thread),
        })
    }

    /// The shared state: the same controls as this handle's methods.
    pub fn state(&self) -> &Arc<FakeState> {
        &self.state
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `https://127.0.0.1:PORT/`: the vault URL to give a `KeyClient`.
    pub fn vault_url(&self) -> String {
        format!("{}/", self.state.config().base_url)
    }

    /// `https://127.0.0.1:PORT`: the authority host to give the credential.
    pub fn authority_host(&self) -> String {
        self.state.config().base_url.clone()
    }

    /// `https://127.0.0.1:PORT/<tenant>/oauth2/v2.0/token`.
    pub fn token_url(&self) -> String {
        let config = self.state.config();
        format!("{}/{}/oauth2/v2.0/token", config.base_url, config.tenant)
    }

    /// The test CA certificate's PEM file, for clients to trust.
    pub fn ca_pem_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The test CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The registered tenant id.
    pub fn tenant(&self) -> &str {
        &self.state.config().tenant
    }

    /// The registered client id.
    pub fn client_id(&self) -> &str {
        &self.state.config().client_id
    }

    /// The registered client secret.
    pub fn client_secret(&self) -> &str {
        &self.state.config().client_secret
    }

    /// Creates a key (or a new version of it) directly, as an operator would outside the
    /// broker; returns its `kid`.
    pub fn create_key(&self, name: &str, spec: KeySpec) -> Result<String, error::KeyVaultError> {
        let kty = if matches!(spec, KeySpec::Rsa(_)) {
            "RSA"
        } else {
            "EC"
        };
        let bundle = self.state.create_key(
            name,
            kty,
            spec,
            None,
            state::KeyAttributesUpdate::default(),
            Default::default(),
        )?;
        Ok(bundle["key"]["kid"].as_str().unwrap_or_default().to_owned())
    }

    /// Enables or disables the current version of a key (as `PATCH` with
    /// `attributes.enabled` does).
    pub fn set_key_enabled(&self, name: &str, enabled: bool) -> Result<(), error::KeyVaultError> {
        let attributes = state::KeyAttributesUpdate {
            enabled: Some(enabled),
            ..Default::default()
        };
        self.state
            .update_key(name, None, None, attributes, None)
            .map(|_| ())
    }

    /// See [`FakeState::throttle`].
    pub fn throttle(&self, count: u64, retry_after: Duration) {
        self.state.throttle(count, retry_after);
    }

    /// See [`FakeState::set_latency`].
    pub fn set_latency(&self, latency: Duration) {
        self.state.set_latency(latency);
    }

    /// See [`FakeState::deny`].
    pub fn deny(&self, operation: Operation) {
        self.state.deny(operation);
    }

    /// See [`FakeState::deny_for_key`].
    pub fn deny_for_key(&self, operation: Operation, key_name: &str) {
        self.state.deny_for_key(operation, key_name);
    }

    /// See [`FakeState::allow`].
    pub fn allow(&self, operation: Operation) {
        self.state.allow(operation);
    }

    /// See [`FakeState::set_outage`].
    pub fn set_outage(&self, on: bool) {
        self.state.set_outage(on);
    }

    /// See [`FakeState::clear_faults`].
    pub fn clear_faults(&self) {
        self.state.clear_faults();
    }

    /// See [`FakeState::revoke_tokens`].
    pub fn revoke_tokens(&self) {
        self.state.revoke_tokens();
    }

    /// See [`FakeState::request_count`].
    pub fn request_count(&self, operation: Operation) -> u64 {
        self.state.request_count(operation)
    }

    /// See [`FakeState::reset_counts`].
    pub fn reset_counts(&self) {
        self.state.reset_counts();
    }

    /// Where the CA file lives (the directory is deleted on drop).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for AzureFake {
    fn drop(&mut self) {
        self.handle.shutdown();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
