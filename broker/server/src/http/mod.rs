//! The HTTP API, Vault-compatible (Vault HTTP API: paths, JSON shapes, status codes,
//! `{"errors":[…]}`).
//!
//! Mounts are dynamic (`bao secrets enable -path=x transit`), so one catch-all route takes
//! `/v1/*`: the edge resolves once the verb (`LIST`, or `GET ?list=true`, becomes a list), the
//! tenant and the caller, then hands the request to `sys` or to the mounted engine. Handlers
//! are thin: parse, one call into the core, map the result.
//!
//! A request passes three parts:
//! - `edge`: what is resolved before anyone is authenticated (verb, query, tenant, client
//!   address) and the body, read once the caller is known, within its limit and deadline;
//! - `access`: authentication (token → caller) and authorization (policy check, `sudo`,
//!   authority over a backend instance);
//! - this module: the state requests are served with, the router and the request driver
//!   (`dispatch` → `handle` → `route`), which audits every request and its response.

mod access;
mod approle;
mod body;
mod edge;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
mod input;
mod jwt;
pub mod kind;
mod kv;
mod openapi;
mod paging;
mod policies;
mod response;
pub mod routes;
mod sys;
mod token;
mod transit;
mod wrapping;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::any,
    Router,
};
use bytes::Bytes;
use keybroker_core::{auth::token::Caller, store::MountRecord, Broker, Error, Tenant};

use crate::{
    audit::{AuditAuth, AuditRecord, AuditSink},
    metrics::Metrics,
    plugin_host::PluginHost,
};
pub(crate) use access::governs_instance;
use access::{authenticate, authorize};
use edge::{client_address, parse_query, presented_token, read_body, resolve_tenant, Edge};
pub use edge::{ApiRequest, Operation};
use error::ApiError;

/// Requests handled at once unless configured (`listener.max_in_flight_requests`).
const DEFAULT_MAX_IN_FLIGHT: usize = 1024;

/// Deadline of reading a body unless configured (`listener.http_read_timeout`).
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest body of an unauthenticated login: credentials and a JWT fit in far less, and no
/// anonymous caller may make the broker hold more.
pub const LOGIN_BODY_LIMIT: usize = 64 * 1024;

/// Everything a request may need; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    ready: Option<Ready>,
    audit: Option<Arc<dyn AuditSink>>,
    sealed_reason: Option<String>,
    metrics: Arc<Metrics>,
    max_request_size: usize,
    /// Requests handled at once (`listener.max_in_flight_requests`).
    in_flight: Arc<tokio::sync::Semaphore>,
    /// Deadline of reading a body (`listener.http_read_timeout`).
    read_timeout: Duration,
    storage_type: &'static str,
    max_staleness: Duration,
    trusted_proxies: Vec<ipnet::IpNet>,
    seal_type: &'static str,
}

/// The parts of an unsealed broker.
#[derive(Clone)]
pub struct Ready {
    /// The core.
    pub broker: Arc<Broker>,
    /// The plugin host.
    pub host: Arc<PluginHost>,
    /// Every kind of mount served (`sys/`, `auth/token/`, engines, auth methods).
    pub kinds: Arc<kind::Registry>,
}

impl AppState {
    /// State of an unsealed broker; with `audit`, every authenticated request and its
    /// response are logged, fail closed.
    pub fn ready(
        ready: Ready,
        audit: Option<Arc<dyn AuditSink>>,
        metrics: Arc<Metrics>,
        max_request_size: usize,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                ready: Some(ready),
                audit,
                sealed_reason: None,
                metrics,
                max_request_size,
                in_flight: Arc::new(tokio::sync::Semaphore::new(DEFAULT_MAX_IN_FLIGHT)),
                read_timeout: DEFAULT_READ_TIMEOUT,
                storage_type: "sqlite",
                max_staleness: Duration::from_secs(3),
                trusted_proxies: Vec::new(),
                seal_type: "file",
            }),
        }
    }

    /// At most `max_in_flight` requests handled at once (503 beyond), each body read within
    /// `read_timeout` (408 after it).
    pub fn with_request_bounds(mut self, max_in_flight: usize, read_timeout: Duration) -> Self {
        let inner = Arc::make_mut(&mut self.inner);
        inner.in_flight = Arc::new(tokio::sync::Semaphore::new(max_in_flight));
        inner.read_timeout = read_timeout;
        self
    }

    /// Believes `X-Forwarded-For` from these peers (`listener.trusted_proxies`).
    pub fn with_trusted_proxies(mut self, proxies: Vec<ipnet::IpNet>) -> Self {
        Arc::make_mut(&mut self.inner).trusted_proxies = proxies;
        self
    }

    /// The kind of store (`sqlite`, `postgresql`) and, for a store shared by a cluster, how
    /// long this node may go without confirming its change feed before it refuses
    /// authenticated requests.
    pub fn with_storage(mut self, storage_type: &'static str, max_staleness: Duration) -> Self {
        let inner = Arc::make_mut(&mut self.inner);
        inner.storage_type = storage_type;
        inner.max_staleness = max_staleness;
        self
    }

    /// Why this node must not serve authenticated requests now: its store is shared by a
    /// cluster and it has not confirmed for too long that it receives the other nodes'
    /// changes (it could honour a revoked token). `None` when it is in sync.
    pub fn stale_reason(&self) -> Option<String> {
        let ready = self.inner.ready.as_ref()?;
        let last = ready.broker.store.last_in_sync()?;
        let age = last.elapsed();
        (age > self.inner.max_staleness).then(|| {
            format!(
                "storage unreachable: this node has not been in sync with the cluster for {} ms",
                age.as_millis()
            )
        })
    }

    /// State of a sealed broker: health says so, everything else answers 503.
    pub fn sealed(reason: String, metrics: Arc<Metrics>, max_request_size: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                ready: None,
                audit: None,
                sealed_reason: Some(reason),
                metrics,
                max_request_size,
                in_flight: Arc::new(tokio::sync::Semaphore::new(DEFAULT_MAX_IN_FLIGHT)),
                read_timeout: DEFAULT_READ_TIMEOUT,
                storage_type: "sqlite",
                max_staleness: Duration::from_secs(3),
                trusted_proxies: Vec::new(),
                seal_type: "file",
            }),
        }
    }

    /// The seal's type as `sys/seal-status` shows it (`file`, `env`, `backend`).
    pub fn with_seal_type(mut self, seal_type: &'static str) -> Self {
        Arc::make_mut(&mut self.inner).seal_type = seal_type;
        self
    }

    /// Why the broker is sealed, if it is.
    pub fn sealed_reason(&self) -> Option<&str> {
        self.inner.sealed_reason.as_deref()
    }

    /// The audit sink, if any.
    pub fn audit(&self) -> Option<&Arc<dyn AuditSink>> {
        self.inner.audit.as_ref()
    }

    /// The unsealed broker, if any.
    pub fn ready_parts(&self) -> Option<&Ready> {
        self.inner.ready.as_ref()
    }
}

/// The state requests are served with, replaced whole at run time when a sealed broker
/// unseals by itself (auto-unseal). Each request works on the state current when it came in.
#[derive(Clone)]
pub struct LiveState(Arc<arc_swap::ArcSwap<AppState>>);

impl LiveState {
    /// Serves `state` until [`LiveState::replace`].
    pub fn new(state: AppState) -> Self {
        Self(Arc::new(arc_swap::ArcSwap::from_pointee(state)))
    }

    /// The current state.
    pub fn current(&self) -> AppState {
        AppState::clone(&self.0.load())
    }

    /// Serves `state` from now on.
    pub fn replace(&self, state: AppState) {
        self.0.store(Arc::new(state));
    }
}

impl From<AppState> for LiveState {
    fn from(state: AppState) -> Self {
        Self::new(state)
    }
}

/// The API router.
pub fn router(state: impl Into<LiveState>) -> Router {
    Router::new()
        .route("/v1/{*path}", any(dispatch))
        .fallback(|| async { ApiError::UnsupportedPath.into_response() })
        .with_state(state.into())
}

async fn dispatch(State(live): State<LiveState>, request: axum::extract::Request) -> Response {
    let state = live.current();
    let started = Instant::now();
    // Held until the response is built: at the bound, refuse at once rather than queue.
    let Ok(_in_flight) = state.inner.in_flight.clone().try_acquire_owned() else {
        let busy = ApiError::Core(Error::Unavailable(
            "too many requests in flight; try again".to_owned(),
        ));
        return busy.into_response();
    };
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip());
    let (parts, body) = request.into_parts();
    let edge = Edge {
        method: parts.method,
        uri: parts.uri,
        headers: parts.headers,
        peer,
    };
    let handling =
        response::with_request_id(response::new_request_id(), handle(&state, edge, body));
    let (label, response) = match handling.await {
        (label, Ok(response)) => (label, response),
        (label, Err(error)) => (label, error.into_response()),
    };
    state
        .inner
        .metrics
        .requests
        .observe(label, response.status().as_u16(), started.elapsed());
    response
}

/// Who is calling: a token, or nobody on an auth method's unauthenticated login path.
enum Identity<'r> {
    /// A login path of this auth mount of this kind: no token is looked at.
    Login(&'r dyn kind::MountKind, Arc<MountRecord>),
    /// The presented token, resolved (or refused).
    Token(Result<Caller, ApiError>),
    /// A wrapping token on its own `sys/wrapping/*` path, or nobody on the lookup.
    WrappingToken,
}

async fn handle(
    state: &AppState,
    edge: Edge,
    body: Body,
) -> (&'static str, Result<Response, ApiError>) {
    let Edge {
        method,
        uri,
        headers,
        peer,
    } = edge;
    let query = parse_query(&uri);
    let Some(operation) = edge::operation(&method, &query) else {
        return ("unknown", Err(ApiError::UnsupportedOperation));
    };
    let path = edge::api_path(&uri);

    // Unauthenticated endpoints. Our details beyond Vault's fields are the operator's: not
    // given when the request names a namespace.
    let details = edge::names_root_namespace(&headers);
    match path.as_str() {
        "sys/health" => return ("sys/health", Ok(sys::health(state, &query, details))),
        "sys/seal-status" => return ("sys/seal-status", Ok(sys::seal_status(state, details))),
        "sys/leader" => return ("sys/leader", Ok(sys::leader())),
        "sys/init" => return ("sys/init", Ok(sys::init())),
        openapi::PATH => return ("sys/internal/specs/openapi", sys::openapi(state, operation)),
        _ => {}
    }
    let Some(ready) = state.inner.ready.as_ref() else {
        return ("sealed", Err(ApiError::Core(Error::Sealed)));
    };
    let client = match client_address(peer, &headers, &state.inner.trusted_proxies) {
        Ok(client) => client,
        Err(error) => return ("client", Err(error)),
    };
    // A wrap TTL that cannot be honoured is refused, never answered unwrapped.
    let wrap_ttl = match wrapping::requested_ttl(&headers) {
        Ok(ttl) => ttl,
        Err(error) => return ("wrapping", Err(error)),
    };
    let (tenant, path) = match resolve_tenant(ready, &headers, path) {
        Ok(resolved) => resolved,
        Err(error) => return ("namespace", Err(error)),
    };
    // The body is read only once the caller is known (and, with a token, authorised): an
    // anonymous caller makes the broker hold at most a login's body.
    let mut request = ApiRequest {
        operation,
        path,
        query,
        body: Bytes::new(),
    };
    let read_timeout = state.inner.read_timeout;
    // A node that may have missed a revocation serves nobody (health answers on).
    if let Some(reason) = state.stale_reason() {
        return ("storage", Err(ApiError::Core(Error::Unavailable(reason))));
    }
    // The UI's listing of mounts answers anyone; without a token, only what is tuned to be
    // seen so (Vault: an unauthenticated path whose answer depends on the token).
    let ui_mounts = request
        .path
        .strip_prefix("sys/")
        .is_some_and(sys::is_ui_mounts);
    if ui_mounts && presented_token(&headers).is_none() {
        if wrap_ttl.is_some() {
            return (
                "wrapping",
                Err(ApiError::bad_request("this answer cannot be wrapped")),
            );
        }
        let rest = request.path.trim_start_matches("sys/");
        let result = sys::ui_mounts(ready, sys::Viewer::Anonymous, &tenant, rest).await;
        return ("sys/internal/ui/mounts", result);
    }
    // Where the request lands, once: its kind and mount.
    let target = ready.kinds.resolve(ready, &tenant, &request.path).await;
    // A wrapping token acts on itself on its three paths, and `sys/wrapping/lookup` answers
    // without a token (`wrapping.rs`); anywhere else a wrapping token is no token.
    let presented = presented_token(&headers);
    let on_wrapping_token =
        wrapping::SelfOperation::of(&request.path, operation).filter(|op| match presented {
            Some(token) => keybroker_core::wrapping::Wrapping::is_wrapping_token(token),
            None => *op == wrapping::SelfOperation::Lookup,
        });
    let identity = match &target {
        _ if on_wrapping_token.is_some() => Identity::WrappingToken,
        Ok(Some(
            found @ kind::Target {
                mount: Some(mount), ..
            },
        )) if found.is_login(found.rest(&request.path)) => {
            Identity::Login(found.kind, mount.clone())
        }
        _ => Identity::Token(authenticate(ready, &headers, &tenant, client).await),
    };
    let audit = state.inner.audit.as_deref();
    let started = Instant::now();
    let record = audit.map(|sink| {
        let mut record = AuditRecord::request(
            response::current_request_id().to_string(),
            operation.audit_name(),
            request.path.as_str(),
        )
        .with_tenant(&tenant.name, tenant.id)
        .with_namespace(format!("{}/", tenant.name));
        if let Some(client) = &client {
            record = record.with_remote_address(client);
        }
        if let Identity::Token(Ok(caller)) = &identity {
            let token = presented_token(&headers).unwrap_or_default();
            let record_token = &caller.token;
            record = record.with_auth(
                AuditAuth::builder(sink)
                    .client_token(token)
                    .accessor(&record_token.accessor)
                    .policies(record_token.policies.iter().cloned())
                    .display_name(&record_token.display_name)
                    .token_type("service")
                    .build(),
            );
        }
        record
    });
    if let (Some(sink), Some(record)) = (audit, &record) {
        if let Err(error) = sink.log(record.clone()).await {
            tracing::error!(%error, "audit log failed; refusing the request");
            return ("audit", Err(audit_unavailable()));
        }
    }
    let mut login = None;
    let (label, result) = match identity {
        Identity::Login(kind, mount) => {
            match read_body(body, LOGIN_BODY_LIMIT, &headers, read_timeout).await {
                Err(error) => ("login", Err(error)),
                Ok(body) => {
                    request.body = body;
                    let call = kind::Login {
                        ready,
                        mount: &mount,
                        request: &request,
                        client,
                    };
                    let (handled, audit) = kind.login(call).await;
                    login = Some(audit);
                    handled
                }
            }
        }
        Identity::WrappingToken => match (on_wrapping_token, wrap_ttl) {
            (_, Some(_)) => (
                "wrapping",
                Err(ApiError::bad_request(
                    "a request with a wrapping token cannot be wrapped",
                )),
            ),
            (None, None) => ("wrapping", Err(ApiError::UnsupportedPath)),
            (Some(op), None) => {
                match read_body(body, LOGIN_BODY_LIMIT, &headers, read_timeout).await {
                    Err(error) => ("body", Err(error)),
                    Ok(body) => {
                        request.body = body;
                        wrapping::by_wrapping_token(ready, &tenant, op, presented, &request).await
                    }
                }
            }
        },
        Identity::Token(Err(error)) => ("auth", Err(error)),
        Identity::Token(Ok(caller)) => {
            let found = target.as_ref().ok().and_then(Option::as_ref);
            // The UI's listing of mounts filters by the caller's policies itself.
            let authorized = if ui_mounts {
                Ok(())
            } else {
                authorize(ready, &caller, &tenant, &request, found).await
            };
            match authorized {
                Err(error) => ("auth", Err(error)),
                Ok(()) => {
                    let limit = state.inner.max_request_size;
                    match read_body(body, limit, &headers, read_timeout).await {
                        Err(error) => ("body", Err(error)),
                        Ok(body) => {
                            request.body = body;
                            let call = Dispatch {
                                state,
                                ready,
                                caller: &caller,
                                tenant: &tenant,
                                headers: &headers,
                                request: &request,
                            };
                            route(call, target).await
                        }
                    }
                }
            }
        }
    };
    // The answer, wrapped if asked (only a token's or a login's: a wrapping token's
    // requests were refused above).
    let result = match (wrap_ttl, result) {
        (Some(ttl), Ok(answer)) => {
            wrapping::wrap_response(ready, &tenant, &request.path, ttl, answer).await
        }
        (_, result) => result,
    };
    let response = result.unwrap_or_else(IntoResponse::into_response);
    if let (Some(sink), Some(record)) = (audit, record) {
        // Error messages are not logged: some echo input.
        let mut answer = record.to_response(response.status().as_u16(), started.elapsed(), None);
        if let Some(login) = &login {
            answer = answer.with_auth(login.audit_auth(sink));
        }
        if let Err(error) = sink.log(answer).await {
            tracing::error!(%error, "audit log failed; withholding the response");
            return (label, Err(audit_unavailable()));
        }
    }
    (label, Ok(response))
}

fn audit_unavailable() -> ApiError {
    ApiError::Core(Error::Unavailable(
        "the audit log is unavailable".to_owned(),
    ))
}

/// An authenticated, authorised request, before its kind is known to serve it.
struct Dispatch<'a> {
    state: &'a AppState,
    ready: &'a Ready,
    caller: &'a Caller,
    tenant: &'a Tenant,
    headers: &'a HeaderMap,
    request: &'a ApiRequest,
}

/// Hands an authenticated, authorised request to its kind, if the kind's route list names
/// it (see `routes`).
async fn route(
    call: Dispatch<'_>,
    target: Result<Option<kind::Target<'_>>, ApiError>,
) -> kind::Handled {
    let request = call.request;
    let target = match target {
        Err(error) => return ("mounts", Err(error)),
        Ok(None) => {
            return (
                "unknown",
                Err(ApiError::Core(Error::NotFound(format!(
                    "no handler for route \"{}\". route entry not found.",
                    request.path
                )))),
            )
        }
        Ok(Some(target)) => target,
    };
    let rest = target.rest(&request.path);
    if let Some(refused) = target.refusal(rest, request.operation) {
        return refused;
    }
    let handed = kind::Call {
        state: call.state,
        ready: call.ready,
        caller: call.caller,
        tenant: call.tenant,
        headers: call.headers,
        mount: target.mount.as_deref(),
        rest,
        request,
    };
    target.kind.handle(handed).await
}

/// Status for a batch with failures, as Vault's transit computes it.
pub(crate) fn batch_status(
    any_ok: bool,
    any_failed: bool,
    partial_failure_code: Option<u16>,
) -> StatusCode {
    if !any_failed {
        return StatusCode::OK;
    }
    match partial_failure_code {
        Some(code) if any_ok => StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
        _ => StatusCode::BAD_REQUEST,
    }
}
