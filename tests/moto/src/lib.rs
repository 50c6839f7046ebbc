//! moto's AWS KMS server for tests, and a fault-injecting proxy in front of it: no mocks of
//! the SDK, no Docker.
//!
//! [`MotoServer::start`] runs moto's server (`moto_server -H 127.0.0.1 -p PORT`, in its own
//! process group) on a free loopback port and waits until it answers; dropping it kills the
//! group. [`MotoServer::pause`] and [`MotoServer::resume`] stop and continue it (SIGSTOP /
//! SIGCONT): a stopped server still accepts TCP connections (the kernel queues them) but
//! never answers, which is what a hung KMS endpoint looks like to a client.
//!
//! [`FaultProxy`] is an HTTP/1.1 reverse proxy on another free loopback port, with its own
//! Tokio runtime on its own thread (so plain tests and `#[tokio::test]`s can use it alike).
//! Clients (the AWS plugin, `aws-sdk-kms`) are pointed at [`FaultProxy::endpoint`]; it
//! forwards to moto and injects the faults moto cannot produce — throttling, disabled,
//! pending-deletion and access-denied keys, latency — and counts the requests per KMS
//! operation (from `X-Amz-Target: TrentService.<Operation>`, the AWS JSON 1.1 protocol).
//! Its error answers have the shape of AWS KMS's (HTTP 400, content type
//! `application/x-amz-json-1.1`, body `{"__type":"<Code>","message":"…"}`, an
//! `x-amzn-RequestId` header), so the real SDK classifies them as it would AWS's:
//! `ThrottlingException` is in the SDK's list of retryable throttling codes.
//!
//! What moto 5.2 does, found by experiment and relied on by these tests (ARCHITECTURE.md §9):
//! - it enforces the encryption context on `Decrypt` (a missing or different context gives
//!   `InvalidCiphertextException`);
//! - it never throttles (hundreds of calls in a row all succeed);
//! - it ignores key state: after `DisableKey` or `ScheduleKeyDeletion`, `DescribeKey` shows
//!   the new state but `Encrypt` and `Decrypt` still succeed — hence the proxy's key faults;
//! - a symmetric ciphertext blob starts with the 36 ASCII bytes of the key id, so `Decrypt`
//!   needs no `KeyId` (the proxy reads the key from there when the request names none);
//! - `Verify` with a signature that does not match answers `"SignatureValid": false`, where
//!   AWS fails with `KMSInvalidSignatureException`: the proxy always turns the former into
//!   the latter;
//! - keys live in account `123456789012`; unknown keys give `NotFoundException`;
//! - it answers every request with `Connection: close`.
//!
//! Everything fails loudly: if moto is missing the calling test panics saying what to
//! install; no test skips. `tests/run` installs it (`pip install 'moto[server]'` into
//! `<repo>/.venv`); [`MOTO_SERVER_ENV`] names another `moto_server`.

// A test harness: failing loudly, with the reason, is its job.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    os::unix::process::CommandExt as _,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Router,
};
use base64::Engine as _;
use rustix::process::{kill_process, kill_process_group, Pid, Signal};

/// Names the `moto_server` program to run instead of `<repo>/.venv/bin/moto_server`.
pub const MOTO_SERVER_ENV: &str = "KEYBROKER_MOTO_SERVER";
/// The AWS account moto puts every resource in.
pub const MOTO_ACCOUNT: &str = "123456789012";
/// What to install when moto is missing.
const INSTALL_HINT: &str = "install moto's server (python3 -m venv .venv && .venv/bin/pip \
                            install 'moto[server]' in the repository; tests/run does) or set \
                            KEYBROKER_MOTO_SERVER to a moto_server program";
/// How long moto may take to answer after it is started: generous, since Python imports
/// moto's many modules slowly on a loaded machine (tests start one moto each, side by side).
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a request to moto's own API (`/moto-api/…`) may take once moto answers.
const API_TIMEOUT: Duration = Duration::from_secs(60);

/// A running moto server (all AWS services, KMS among them) on a loopback port.
pub struct MotoServer {
    child: Child,
    port: u16,
    /// Holds `moto.log` (the server's standard output and error).
    dir: tempfile::TempDir,
}

impl MotoServer {
    /// Starts moto on a free loopback port and waits until it answers HTTP; panics (with
    /// its log) if it is not installed or does not start.
    pub fn start() -> MotoServer {
        let program = find_moto_server();
        let dir = tempfile::Builder::new()
            .prefix("keybroker-moto-")
            .tempdir()
            .expect("create a temporary directory for moto");
        let log_path = dir.path().join("moto.log");
        // Another process may take the free port before moto binds it: try a few.
        let mut failures = String::new();
        for _ in 0..5 {
            let port = free_port();
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .expect("open moto's log");
            let log_err = log.try_clone().expect("open moto's log");
            let mut child = Command::new(&program)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::from(log))
                .stderr(Stdio::from(log_err))
                // Its own group, so dropping kills whatever it started too.
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("run {}: {e}; {INSTALL_HINT}", program.display()));
            match wait_until_answering(&mut child, port) {
                Ok(()) => return MotoServer { child, port, dir },
                Err(error) => {
                    kill_group(&mut child);
                    failures.push_str(&format!("port {port}: {error}\n"));
                }
            }
        }
        panic!(
            "moto ({}) did not start:\n{failures}--- moto log ---\n{}",
            program.display(),
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
    }

    /// The server's base URL, `http://127.0.0.1:PORT` (an AWS SDK `endpoint_url`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server (SIGSTOP): connections are still accepted by the kernel, but no
    /// request is answered until [`MotoServer::resume`]. Requests already sent are answered
    /// after the resume.
    pub fn pause(&self) {
        self.signal(Signal::STOP);
    }

    /// Continues a server stopped by [`MotoServer::pause`] (SIGCONT).
    pub fn resume(&self) {
        self.signal(Signal::CONT);
    }

    /// Forgets every resource (keys, aliases, …) of every account: moto's `/moto-api/reset`.
    pub fn reset(&self) {
        let status = http_status(self.port, "POST", "/moto-api/reset", API_TIMEOUT)
            .unwrap_or_else(|e| panic!("reset moto: {e}\n--- moto log ---\n{}", self.log()));
        assert_eq!(status, 200, "reset moto\n--- moto log ---\n{}", self.log());
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default()
    }

    fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(self.child.id() as i32).expect("a child's pid is positive");
        kill_process(pid, signal)
            .unwrap_or_else(|e| panic!("send {signal:?} to moto (pid {pid:?}): {e}"));
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        // Never panic here: this may run while a failing test unwinds. SIGKILL ends stopped
        // processes too, so a paused server goes as well.
        kill_group(&mut self.child);
    }
}

impl std::fmt::Debug for MotoServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MotoServer")
            .field("pid", &self.child.id())
            .field("port", &self.port)
            .field("dir", &self.dir.path())
            .finish()
    }
}

/// `moto_server`: from [`MOTO_SERVER_ENV`], the repository's `.venv`, or `PATH`.
fn find_moto_server() -> PathBuf {
    if let Some(path) = std::env::var_os(MOTO_SERVER_ENV) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{MOTO_SERVER_ENV}={} is not a file",
            path.display()
        );
        return path;
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/moto_server");
    if venv.is_file() {
        return venv;
    }
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("moto_server"))
        .find(|path| path.is_file());
    match on_path {
        Some(path) => path,
        None => panic!(
            "moto_server not found in {} nor on PATH: {INSTALL_HINT}",
            venv.display()
        ),
    }
}

/// Waits until moto answers an HTTP request on `port`; an error if it exits or times out.
fn wait_until_answering(child: &mut Child, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("moto_server exited at start ({status})"));
        }
        // A slow answer is still an answer: wait for it rather than ask again.
        if http_status(port, "GET", "/moto-api/", Duration::from_secs(10)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("no answer after {} s", START_TIMEOUT.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends a body-less HTTP/1.0 request to the loopback `port` and returns the status code.
fn http_status(port: u16, method: &str, path: &str, timeout: Duration) -> Result<u16, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| e.to_string())?;
    let status_line = String::from_utf8_lossy(&response);
    status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {:?}", status_line.lines().next()))
}

/// Kills the child's whole process group and reaps the child; never panics.
fn kill_group(child: &mut Child) {
    if let Some(pid) = Pid::from_raw(child.id() as i32) {
        let _ = kill_process_group(pid, Signal::KILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("find a free loopback port")
}

/// A fault the proxy gives for every request on one key, instead of forwarding it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFault {
    /// The key is disabled: cryptographic operations get `DisabledException`;
    /// `DescribeKey` is forwarded and its answer says `KeyState: Disabled` (as AWS's does).
    Disabled,
    /// The key is scheduled for deletion: cryptographic operations get
    /// `KMSInvalidStateException`; `DescribeKey` says `KeyState: PendingDeletion`.
    PendingDeletion,
    /// The caller may not use the key: every operation naming it, `DescribeKey` included,
    /// gets `AccessDeniedException`.
    AccessDenied,
}

/// Operations AWS refuses on a disabled or pending-deletion key (the cryptographic ones and
/// `GetPublicKey`; see "Key states of AWS KMS keys" in the KMS developer guide).
const KEY_STATE_OPERATIONS: &[&str] = &[
    "Encrypt",
    "Decrypt",
    "ReEncrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "GenerateMac",
    "VerifyMac",
    "Sign",
    "Verify",
    "GetPublicKey",
];

/// How many requests of each operation the proxy forwarded, throttled or refused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Forwarded to the upstream, by operation (`Decrypt`, …).
    pub forwarded: BTreeMap<String, u64>,
    /// Answered with `ThrottlingException`, by operation.
    pub throttled: BTreeMap<String, u64>,
    /// Answered with a key fault (disabled, pending deletion, access denied), by operation.
    pub refused: BTreeMap<String, u64>,
}

impl Counts {
    /// Forwarded requests of `operation`.
    pub fn forwarded(&self, operation: &str) -> u64 {
        self.forwarded.get(operation).copied().unwrap_or(0)
    }

    /// Throttled requests of `operation`.
    pub fn throttled(&self, operation: &str) -> u64 {
        self.throttled.get(operation).copied().unwrap_or(0)
    }

    /// Refused requests of `operation`.
    pub fn refused(&self, operation: &str) -> u64 {
        self.refused.get(operation).copied().unwrap_or(0)
    }
}

/// The proxy's settings and counters, shared by its handler and its owner.
#[derive(Default)]
struct Faults {
    /// Throttle this many more KMS requests.
    throttle_next: u64,
    /// Throttle every KMS request until then.
    throttle_until: Option<Instant>,
    /// By key reference, normalised ([`normalise_key_ref`]).
    keys: BTreeMap<String, KeyFault>,
    /// Access key ids AWS would not recognise.
    unknown_access_keys: std::collections::BTreeSet<String>,
    latency: Duration,
    counts: Counts,
}

struct Shared {
    upstream: String,
    client: reqwest::Client,
    faults: Mutex<Faults>,
    request_ids: AtomicU64,
}

/// A fault-injecting HTTP/1.1 reverse proxy for the AWS KMS API (JSON 1.1) on a loopback
/// port. Every setting can be changed while it runs, from any thread. Dropping it stops it
/// (requests in flight are abandoned).
///
/// For each request, in this order: the latency is waited; a KMS request (one with an
/// `X-Amz-Target`) is throttled if throttling is on; it is refused if it names a key with a
/// fault that applies to its operation; otherwise it is forwarded as it came (the proxy does
/// not time it out: a paused upstream hangs it until the client gives up). An upstream that
/// cannot be reached gives 502 with a plain-text body. Requests without `X-Amz-Target`
/// (moto's own `/moto-api/…`) are forwarded untouched and not counted.
pub struct FaultProxy {
    shared: Arc<Shared>,
    port: u16,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// A proxy in front of `moto`.
    pub fn in_front_of(moto: &MotoServer) -> FaultProxy {
        Self::start(&moto.endpoint())
    }

    /// A proxy in front of any HTTP `upstream` base URL (`http://host:port`).
    pub fn start(upstream: &str) -> FaultProxy {
        let listener =
            TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy to a loopback port");
        let port = listener
            .local_addr()
            .expect("the fault proxy's address")
            .port();
        listener
            .set_nonblocking(true)
            .expect("make the fault proxy's listener non-blocking");
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("build the fault proxy's HTTP client");
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client,
            faults: Mutex::new(Faults::default()),
            request_ids: AtomicU64::new(0),
        });
        // Its own runtime on its own thread: usable from sync tests and async ones alike,
        // and dropped on that thread (a runtime may not be dropped inside another one).
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("build the fault proxy's runtime");
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new().fallback(proxy).with_state(shared.clone());
        let thread = std::thread::Builder::new()
            .name(format!("fault-proxy-{port}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("hand the fault proxy's listener to tokio");
                    // Not a graceful shutdown: a request stuck on a paused upstream must not
                    // keep the proxy (and the test dropping it) waiting.
                    tokio::select! {
                        served = axum::serve(listener, app) => {
                            if let Err(error) = served {
                                eprintln!("fault proxy on port {port} stopped: {error}");
                            }
                        }
                        _ = stopped => {}
                    }
                });
            })
            .expect("start the fault proxy's thread");
        FaultProxy {
            shared,
            port,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// The proxy's base URL, `http://127.0.0.1:PORT` (an AWS SDK `endpoint_url`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The upstream base URL it forwards to.
    pub fn upstream(&self) -> &str {
        &self.shared.upstream
    }

    /// Answers the next `requests` KMS requests with `ThrottlingException` (added to any
    /// still pending).
    pub fn throttle_next(&self, requests: u64) {
        self.faults().throttle_next += requests;
    }

    /// Answers every KMS request with `ThrottlingException` for `duration` from now.
    pub fn throttle_for(&self, duration: Duration) {
        self.faults().throttle_until = Some(Instant::now() + duration);
    }

    /// Whether a KMS request sent now would be throttled: [`FaultProxy::throttle_next`]
    /// requests remain, or [`FaultProxy::throttle_for`]'s time has not run out. Once false,
    /// it stays false until throttling is asked for again (so tests can poll it instead of
    /// sleeping past a throttling window).
    pub fn is_throttling(&self) -> bool {
        let faults = self.faults();
        faults.throttle_next > 0
            || faults
                .throttle_until
                .is_some_and(|until| Instant::now() < until)
    }

    /// Ends throttling, of both kinds.
    pub fn stop_throttling(&self) {
        let mut faults = self.faults();
        faults.throttle_next = 0;
        faults.throttle_until = None;
    }

    /// Gives `fault` for requests on `key`: a key id, key ARN, alias name (`alias/x`) or
    /// alias ARN. An id and its key ARN are the same key here, as are an alias and its ARN;
    /// a key and its aliases are not (the proxy does not ask moto which key an alias names),
    /// so mark each reference the client uses. `Decrypt` requests without a `KeyId` are
    /// matched by the key id in moto's ciphertext blob.
    pub fn set_key_fault(&self, key: &str, fault: KeyFault) {
        self.faults().keys.insert(normalise_key_ref(key), fault);
    }

    /// [`KeyFault::Disabled`] for `key`.
    pub fn disable_key(&self, key: &str) {
        self.set_key_fault(key, KeyFault::Disabled);
    }

    /// [`KeyFault::PendingDeletion`] for `key`.
    pub fn schedule_key_deletion(&self, key: &str) {
        self.set_key_fault(key, KeyFault::PendingDeletion);
    }

    /// [`KeyFault::AccessDenied`] for `key`.
    pub fn deny_access(&self, key: &str) {
        self.set_key_fault(key, KeyFault::AccessDenied);
    }

    /// Forwards requests on `key` again.
    pub fn clear_key_fault(&self, key: &str) {
        self.faults().keys.remove(&normalise_key_ref(key));
    }

    /// Answers requests signed with `access_key_id` as AWS answers unknown credentials:
    /// HTTP 400 `UnrecognizedClientException` (moto accepts any credentials).
    pub fn reject_access_key(&self, access_key_id: &str) {
        self.faults()
            .unknown_access_keys
            .insert(access_key_id.to_owned());
    }

    /// Waits `latency` before answering each request (zero: none). Other requests are not
    /// held up meanwhile.
    pub fn set_latency(&self, latency: Duration) {
        self.faults().latency = latency;
    }

    /// Removes every fault (throttling, key faults, latency); counters stay.
    pub fn clear_faults(&self) {
        let mut faults = self.faults();
        let counts = std::mem::take(&mut faults.counts);
        *faults = Faults {
            counts,
            ..Faults::default()
        };
    }

    /// The counters so far.
    pub fn counts(&self) -> Counts {
        self.faults().counts.clone()
    }

    /// Requests of `operation` (`Decrypt`, …) forwarded so far.
    pub fn forwarded(&self, operation: &str) -> u64 {
        self.faults().counts.forwarded(operation)
    }

    /// Requests of `operation` throttled so far.
    pub fn throttled(&self, operation: &str) -> u64 {
        self.faults().counts.throttled(operation)
    }

    /// Requests of `operation` refused with a key fault so far.
    pub fn refused(&self, operation: &str) -> u64 {
        self.faults().counts.refused(operation)
    }

    /// Sets every counter to zero.
    pub fn reset_counts(&self) {
        self.faults().counts = Counts::default();
    }

    fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        lock(&self.shared.faults)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("port", &self.port)
            .field("upstream", &self.shared.upstream)
            .finish()
    }
}

/// A poisoned lock only means another test thread panicked; the data is still usable.
fn lock(faults: &Mutex<Faults>) -> std::sync::MutexGuard<'_, Faults> {
    faults
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What the proxy does with one request.
enum Decision {
    Throttle,
    /// Signed with an access key AWS would not know.
    Unrecognised,
    Refuse(KeyFault, String),
    /// Forward; for `DescribeKey` on a key with a state fault, rewrite the key's state.
    Forward(Option<KeyFault>),
}

/// The proxy's only handler.
async fn proxy(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, 8 << 20).await {
        Ok(body) => body,
        Err(error) => {
            return (StatusCode::BAD_REQUEST, format!("read the body: {error}")).into_response()
        }
    };
    let operation = parts
        .headers
        .get("x-amz-target")
        .and_then(|target| target.to_str().ok())
        .map(|target| {
            target
                .rsplit_once('.')
                .map_or(target, |(_, operation)| operation)
                .to_owned()
        });
    let latency = lock(&shared.faults).latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    // AWS authenticates before anything else.
    let access_key = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once("Credential="))
        .and_then(|(_, rest)| rest.split('/').next())
        .map(str::to_owned);
    let unrecognised =
        access_key.is_some_and(|key| lock(&shared.faults).unknown_access_keys.contains(&key));
    let decision = match &operation {
        _ if unrecognised => Decision::Unrecognised,
        Some(operation) => decide(&shared, operation, &body),
        None => Decision::Forward(None),
    };
    let operation = operation.unwrap_or_default();
    let request_id = format!(
        "00000000-0000-4000-8000-{:012x}",
        shared.request_ids.fetch_add(1, Ordering::Relaxed)
    );
    match decision {
        Decision::Throttle => kms_error(&request_id, "ThrottlingException", "Rate exceeded"),
        Decision::Unrecognised => kms_error(
            &request_id,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ),
        Decision::Refuse(fault, key) => {
            let arn = key_arn(&key, &parts.headers);
            let (code, message) = match fault {
                KeyFault::Disabled => ("DisabledException", format!("{arn} is disabled.")),
                KeyFault::PendingDeletion => (
                    "KMSInvalidStateException",
                    format!("{arn} is pending deletion."),
                ),
                KeyFault::AccessDenied => (
                    "AccessDeniedException",
                    format!(
                        "User: arn:aws:iam::{MOTO_ACCOUNT}:root is not authorized to perform: \
                         kms:{operation} on resource: {arn} because no resource-based policy \
                         allows the kms:{operation} action"
                    ),
                ),
            };
            kms_error(&request_id, code, &message)
        }
        Decision::Forward(state) => {
            match forward(&shared, parts.method, &parts.uri, &parts.headers, body).await {
                Ok(response) => match state {
                    Some(fault) if operation == "DescribeKey" => {
                        rewrite_key_state(response, fault).await
                    }
                    _ if operation == "Verify" => {
                        reject_invalid_signature(response, &request_id).await
                    }
                    _ => response,
                },
                Err(error) => (
                    StatusCode::BAD_GATEWAY,
                    format!("fault proxy: the upstream failed: {error}"),
                )
                    .into_response(),
            }
        }
    }
}

/// Applies the faults to one KMS request and counts it.
fn decide(shared: &Shared, operation: &str, body: &[u8]) -> Decision {
    let mut faults = lock(&shared.faults);
    let throttled_until = faults
        .throttle_until
        .is_some_and(|until| Instant::now() < until);
    if faults.throttle_next > 0 || throttled_until {
        if !throttled_until {
            faults.throttle_next -= 1;
        }
        *faults
            .counts
            .throttled
            .entry(operation.to_owned())
            .or_default() += 1;
        return Decision::Throttle;
    }
    let key_fault = if faults.keys.is_empty() {
        None
    } else {
        // Access denied wins: AWS checks authorisation before the key's state.
        key_refs(body)
            .into_iter()
            .filter_map(|key| {
                faults
                    .keys
                    .get(&normalise_key_ref(&key))
                    .map(|fault| (*fault, key))
            })
            .min_by_key(|(fault, _)| *fault != KeyFault::AccessDenied)
    };
    let refused = match &key_fault {
        Some((KeyFault::AccessDenied, key)) => Some((KeyFault::AccessDenied, key.clone())),
        Some((fault, key)) if KEY_STATE_OPERATIONS.contains(&operation) => {
            Some((*fault, key.clone()))
        }
        _ => None,
    };
    if let Some((fault, key)) = refused {
        *faults
            .counts
            .refused
            .entry(operation.to_owned())
            .or_default() += 1;
        return Decision::Refuse(fault, key);
    }
    *faults
        .counts
        .forwarded
        .entry(operation.to_owned())
        .or_default() += 1;
    Decision::Forward(key_fault.map(|(fault, _)| fault))
}

/// The keys a KMS request names: `KeyId`, `SourceKeyId`, `DestinationKeyId`, and (when no
/// `KeyId` is given) the key id moto writes at the start of a symmetric ciphertext blob.
fn key_refs(body: &[u8]) -> Vec<String> {
    let Ok(serde_json::Value::Object(request)) = serde_json::from_slice(body) else {
        return Vec::new();
    };
    let mut keys: Vec<String> = ["KeyId", "SourceKeyId", "DestinationKeyId"]
        .iter()
        .filter_map(|field| request.get(*field)?.as_str().map(str::to_owned))
        .collect();
    if !request.contains_key("KeyId") && !request.contains_key("SourceKeyId") {
        let blob = request
            .get("CiphertextBlob")
            .and_then(|blob| blob.as_str())
            .and_then(|blob| base64::engine::general_purpose::STANDARD.decode(blob).ok());
        if let Some(id) = blob.as_deref().and_then(moto_blob_key_id) {
            keys.push(id);
        }
    }
    keys
}

/// The key id at the start of a moto ciphertext blob, if it has one.
fn moto_blob_key_id(blob: &[u8]) -> Option<String> {
    let id = std::str::from_utf8(blob.get(..36)?).ok()?;
    let uuid_shaped = id.char_indices().all(|(i, c)| match i {
        8 | 13 | 18 | 23 => c == '-',
        _ => c.is_ascii_hexdigit(),
    });
    uuid_shaped.then(|| id.to_owned())
}

/// `arn:aws:kms:REGION:ACCOUNT:key/ID` → `ID`; `arn:…:alias/NAME` → `alias/NAME`; ids and
/// alias names unchanged.
fn normalise_key_ref(key: &str) -> String {
    let resource = if key.starts_with("arn:") {
        key.splitn(6, ':').nth(5).unwrap_or(key)
    } else {
        key
    };
    resource.strip_prefix("key/").unwrap_or(resource).to_owned()
}

/// The ARN AWS would name `key` by in an error message: ARNs as given, a key id or alias
/// expanded with the request's region (from its SigV4 credential scope) and moto's account.
fn key_arn(key: &str, headers: &HeaderMap) -> String {
    if key.starts_with("arn:") {
        return key.to_owned();
    }
    let region = headers
        .get(header::AUTHORIZATION)
        .and_then(|auth| auth.to_str().ok())
        .and_then(|auth| auth.split("Credential=").nth(1))
        // Credential=AKID/DATE/REGION/SERVICE/aws4_request
        .and_then(|scope| scope.split('/').nth(2))
        .unwrap_or("us-east-1");
    let resource = if key.starts_with("alias/") {
        key.to_owned()
    } else {
        format!("key/{key}")
    };
    format!("arn:aws:kms:{region}:{MOTO_ACCOUNT}:{resource}")
}

/// An AWS JSON 1.1 error answer, as AWS KMS sends them (HTTP 400; the SDK reads the code
/// from `__type` and the message from `message`).
fn kms_error(request_id: &str, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "__type": code, "message": message }).to_string();
    let mut response = (StatusCode::BAD_REQUEST, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-requestid", id);
    }
    response
}

/// Headers that belong to one connection, not to the request or answer.
fn is_hop_by_hop(name: &header::HeaderName) -> bool {
    [
        header::CONNECTION,
        header::HOST,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::TE,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
    ]
    .contains(name)
        || name.as_str() == "keep-alive"
}

async fn forward(
    shared: &Shared,
    method: axum::http::Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, reqwest::Error> {
    let path = uri.path_and_query().map_or("/", |path| path.as_str());
    let mut request = shared
        .client
        .request(method, format!("{}{path}", shared.upstream))
        .body(body);
    for (name, value) in headers {
        if !is_hop_by_hop(name) {
            request = request.header(name, value);
        }
    }
    let answer = request.send().await?;
    let status = answer.status();
    let mut answer_headers = HeaderMap::new();
    for (name, value) in answer.headers() {
        if !is_hop_by_hop(name) {
            answer_headers.append(name, value.clone());
        }
    }
    let body = answer.bytes().await?;
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    *response.headers_mut() = answer_headers;
    Ok(response)
}

/// A successful answer's JSON body, or the answer itself (unchanged) if it is not one.
async fn json_answer(
    response: Response,
) -> Result<(axum::http::response::Parts, serde_json::Value), Response> {
    if !response.status().is_success() {
        return Err(response);
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 8 << 20).await else {
        return Err((
            StatusCode::BAD_GATEWAY,
            "fault proxy: unreadable upstream answer",
        )
            .into_response());
    };
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(answer) => Ok((parts, answer)),
        Err(_) => Err(Response::from_parts(parts, Body::from(bytes))),
    }
}

/// AWS answers `Verify` with a signature that does not match by
/// `KMSInvalidSignatureException`; moto answers `"SignatureValid": false`. Make it AWS's
/// answer, so clients are tested against what they will meet.
async fn reject_invalid_signature(response: Response, request_id: &str) -> Response {
    let (parts, answer) = match json_answer(response).await {
        Ok(json) => json,
        Err(response) => return response,
    };
    if answer.get("SignatureValid") == Some(&serde_json::Value::Bool(false)) {
        return kms_error(
            request_id,
            "KMSInvalidSignatureException",
            "The signature is not valid.",
        );
    }
    Response::from_parts(parts, Body::from(answer.to_string()))
}

/// Makes a successful `DescribeKey` answer show the state of `fault`, as AWS's would.
async fn rewrite_key_state(response: Response, fault: KeyFault) -> Response {
    let (parts, mut answer) = match json_answer(response).await {
        Ok(json) => json,
        Err(response) => return response,
    };
    if let Some(metadata) = answer
        .get_mut("KeyMetadata")
        .and_then(|metadata| metadata.as_object_mut())
    {
        metadata.insert("Enabled".into(), false.into());
        match fault {
            KeyFault::Disabled => {
                metadata.insert("KeyState".into(), "Disabled".into());
            }
            KeyFault::PendingDeletion => {
                let in_a_week = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |now| now.as_secs())
                    + 7 * 24 * 3600;
                metadata.insert("KeyState".into(), "PendingDeletion".into());
                metadata.insert("DeletionDate".into(), in_a_week.into());
                metadata.insert("PendingDeletionWindowInDays".into(), 7.into());
            }
            KeyFault::AccessDenied => {}
        }
    }
    Response::from_parts(parts, Body::from(answer.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_references_are_normalised() {
        let id = "28a8eefc-5eaa-4634-8e4d-09f38c6c2616";
        assert_eq!(normalise_key_ref(id), id);
        assert_eq!(
            normalise_key_ref(&format!("arn:aws:kms:us-east-1:123456789012:key/{id}")),
            id
        );
        assert_eq!(normalise_key_ref("alias/x"), "alias/x");
        assert_eq!(
            normalise_key_ref("arn:aws:kms:eu-west-1:123456789012:alias/x"),
            "alias/x"
        );
    }

    #[test]
    fn keys_are_found_in_requests_and_moto_blobs() {
        let id = "28a8eefc-5eaa-4634-8e4d-09f38c6c2616";
        let mut blob = id.as_bytes().to_vec();
        blob.extend_from_slice(&[3, 21, 112, 45, 9, 9]);
        let blob = base64::engine::general_purpose::STANDARD.encode(blob);
        let decrypt = serde_json::json!({ "CiphertextBlob": blob }).to_string();
        assert_eq!(key_refs(decrypt.as_bytes()), vec![id.to_owned()]);
        let named = serde_json::json!({ "CiphertextBlob": blob, "KeyId": "alias/x" }).to_string();
        assert_eq!(key_refs(named.as_bytes()), vec!["alias/x".to_owned()]);
        let other = base64::engine::general_purpose::STANDARD.encode([7u8; 64]);
        let foreign = serde_json::json!({ "CiphertextBlob": other }).to_string();
        assert!(key_refs(foreign.as_bytes()).is_empty());
        assert!(key_refs(b"not json").is_empty());
    }

    #[test]
    fn error_messages_name_the_key_arn_in_the_request_region() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=test/20261123/eu-west-1/kms/aws4_request, \
                 SignedHeaders=host, Signature=00",
            ),
        );
        assert_eq!(
            key_arn("abc", &headers),
            "arn:aws:kms:eu-west-1:123456789012:key/abc"
        );
        assert_eq!(
            key_arn("alias/x", &HeaderMap::new()),
            "arn:aws:kms:us-east-1:123456789012:alias/x"
        );
        let arn = "arn:aws:kms:us-east-2:111122223333:key/abc";
        assert_eq!(key_arn(arn, &headers), arn);
    }
}
