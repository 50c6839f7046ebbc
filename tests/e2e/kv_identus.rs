//! Scenario 1 of issue 21: the Hyperledger Identus Cloud Agent keeps each wallet's seed and
//! DID keys in KV v2 at `secret/` and logs in with AppRole, here with the exact calls it
//! makes (read from its source: `VaultClient.scala`, `VaultWalletSecretStorage.scala`,
//! `VaultDIDSecretStorage.scala` and the jopenlibs vault-java-driver 6.2.0 it uses), on a
//! mount whose key the customer's agent holds.
//!
//! The calls are sent as raw HTTP/1.1 over kept-alive connections, with the headers that
//! driver sends and nothing else: no `X-Vault-Namespace` (the root tenant), no
//! `Content-Type` on a data write or a login, `X-Vault-Request: true` everywhere. What the
//! agent insists on is asserted exactly: a missing secret is 404 `{"errors":[]}`, a data
//! write is exactly 200 with `data.version`, a metadata write any 2xx, a login answers 200
//! with `Content-Type: application/json` (no parameters), `auth.policies` and a top-level
//! `renewable`. It never renews its token: it logs in again `lease_duration - 15 s` after
//! each login and swaps the new token in.
//!
//! The customer's agent then hangs (SIGSTOP), and later is stopped (killed) and started
//! again: each time every read answers 503 "customer key unavailable" within three
//! heartbeat intervals, a write is refused and leaves nothing, and once the agent is back
//! reads succeed by themselves, the mount's data key fetched from it exactly once more.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    sync::{mpsc, Arc, Mutex},
    time::{Duration, Instant},
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::{
    agent::{calls, wait_agents, Agent, Setup, HEARTBEAT_MS, INSTANCE},
    support::{eventually, runs_out, Broker, Options},
};

/// Wallets the service creates.
const WALLETS: usize = 1000;

/// Connections the service uses at once (each wallet's calls go in order on one).
const CLIENTS: usize = 4;

/// The policy Identus's operator guide gives, written through the older `sys/policy`.
const POLICY: &str = "path \"secret/*\" {\n    capabilities = [\"create\", \"read\", \"update\", \"patch\", \"delete\", \"list\"]\n}\n";

/// The role, with the role_id and secret_id the operator chose (Identus reads them from
/// `VAULT_APPROLE_ROLE_ID` and `VAULT_APPROLE_SECRET_ID`).
const ROLE: &str = "identus-cloud-agent";
const ROLE_ID: &str = "identus-cloud-agent-role-id";
const SECRET_ID: &str = "identus-cloud-agent-secret-id-6f1c0d9e";

/// The token_ttl the run below uses, so that the agent's re-login rule (`lease - 15 s`)
/// logs in again every 3 s instead of every 45 s.
const SHORT_TTL_SECS: u64 = 18;

/// Identus logs in again this long before its token expires.
const RELOGIN_MARGIN_SECS: u64 = 15;

/// How long a read waits for an answer the broker owes it.
const PATIENCE: Duration = Duration::from_secs(60);

/// An answer: status, `Content-Type` as sent, body.
struct Answer {
    status: u16,
    content_type: Option<String>,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?} {}", self.status, self.content_type, self.text)
    }
}

/// One kept-alive HTTP/1.1 connection to the broker, as Java's `HttpClient` (which the
/// driver uses, `Version.HTTP_1_1`) keeps one.
struct Http {
    port: u16,
    connection: Option<BufReader<TcpStream>>,
}

impl Http {
    fn new(port: u16) -> Self {
        Self {
            port,
            connection: None,
        }
    }

    /// Sends `method /v1/path` with these headers (plus `Host`, `User-Agent` and, with a
    /// body, `Content-Length`: what `HttpClient` adds); a connection the broker closed
    /// while idle is opened again and the request sent once more.
    fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Answer {
        let mut request = format!(
            "{method} /v1/{path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUser-Agent: Java-http-client/21\r\n",
            self.port
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(body) = body {
            request.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        request.push_str("\r\n");
        request.push_str(body.unwrap_or_default());
        let reused = self.connection.is_some();
        match self.exchange(&request) {
            Some(answer) => answer,
            None if reused => {
                self.connection = None;
                self.exchange(&request).unwrap_or_else(|| {
                    panic!("the broker closed a new connection without answering {method} {path}")
                })
            }
            None => panic!("the broker closed a new connection without answering {method} {path}"),
        }
    }

    /// One request and its answer; `None` if the connection was closed before an answer.
    fn exchange(&mut self, request: &str) -> Option<Answer> {
        let port = self.port;
        let connection = self.connection.get_or_insert_with(|| {
            let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            stream.set_read_timeout(Some(PATIENCE)).unwrap();
            stream.set_nodelay(true).unwrap();
            BufReader::new(stream)
        });
        if connection.get_mut().write_all(request.as_bytes()).is_err() {
            return None;
        }
        let mut status_line = String::new();
        match connection.read_line(&mut status_line) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => return None,
            Err(error) => panic!("no answer from the broker: {error}"),
        }
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP status line: {status_line:?}"));
        let (mut length, mut chunked, mut close, mut content_type) = (0, false, false, None);
        loop {
            let mut line = String::new();
            connection.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                panic!("bad header line {line:?}");
            };
            let value = value.trim();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse().unwrap(),
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                "content-type" => content_type = Some(value.to_owned()),
                _ => {}
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                let mut size = String::new();
                connection.read_line(&mut size).unwrap();
                let size = usize::from_str_radix(size.trim().split(';').next().unwrap(), 16)
                    .unwrap_or_else(|_| panic!("bad chunk size {size:?}"));
                let mut chunk = vec![0u8; size + 2];
                connection.read_exact(&mut chunk).unwrap();
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else {
            body.resize(length, 0);
            connection.read_exact(&mut body).unwrap();
        }
        if close {
            self.connection = None;
        }
        Some(Answer {
            status,
            content_type,
            text: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// A login as the driver's `auth().loginByAppRole(roleId, secretId)` sends it, with what
/// the agent needs of the answer checked: (token, lease in seconds).
fn login(http: &mut Http, role_id: &str, secret_id: &str) -> (String, u64) {
    let body = json!({ "role_id": role_id, "secret_id": secret_id }).to_string();
    let answer = http.send(
        "POST",
        "auth/approle/login",
        &[("X-Vault-Request", "true")],
        Some(&body),
    );
    assert_eq!(answer.status, 200, "login: {answer}");
    // `Auth.validateJsonResponse`: `"application/json".equals(mimeType)`, the raw header.
    assert_eq!(
        answer.content_type.as_deref(),
        Some("application/json"),
        "the driver refuses any other login Content-Type: {answer}"
    );
    let value = answer.json();
    let auth = &value["auth"];
    let token = auth["client_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no auth.client_token: {answer}"))
        .to_owned();
    let lease = auth["lease_duration"]
        .as_u64()
        .unwrap_or_else(|| panic!("no auth.lease_duration: {answer}"));
    // `AuthResponse` dereferences these without a null check.
    assert!(auth["renewable"].is_boolean(), "auth.renewable: {answer}");
    assert!(auth["accessor"].is_string(), "auth.accessor: {answer}");
    assert!(
        auth["metadata"].is_null() || auth["metadata"].is_object(),
        "auth.metadata: {answer}"
    );
    let policies = auth["policies"]
        .as_array()
        .unwrap_or_else(|| panic!("auth.policies must be an array: {answer}"));
    assert!(
        policies.iter().any(|p| p == ROLE),
        "auth.policies names the role's policy: {answer}"
    );
    assert!(
        value["renewable"].is_boolean(),
        "a top-level renewable: {answer}"
    );
    (token, lease)
}

/// The agent's KV client (`VaultKVClientImpl`): the current token, swapped by its re-login
/// loop, and one connection.
struct Identus {
    http: Http,
    token: Arc<Mutex<String>>,
}

impl Identus {
    fn token(&self) -> String {
        self.token.lock().unwrap().clone()
    }

    /// `Logical.read`: `GET`, the token and `X-Vault-Request`.
    fn get(&mut self, path: &str) -> Answer {
        let token = self.token();
        self.http.send(
            "GET",
            path,
            &[("X-Vault-Token", &token), ("X-Vault-Request", "true")],
            None,
        )
    }

    /// `Logical.write` of KV v2 data: `POST`, `{"data": {...}}`, no `Content-Type`.
    fn write_data(&mut self, path: &str, value: &str) -> Answer {
        let token = self.token();
        let body = json!({ "data": { "value": value } }).to_string();
        self.http.send(
            "POST",
            path,
            &[
                ("X-Vault-Token", &token),
                ("X-Vault-Request", "true"),
                ("Accept-Charset", "UTF-8"),
            ],
            Some(&body),
        )
    }

    /// `ExtendedLogical`'s metadata write: `POST`, JSON with its `Content-Type`.
    fn write_metadata(&mut self, path: &str, custom_metadata: &Value) -> Answer {
        let token = self.token();
        let body = json!({ "custom_metadata": custom_metadata }).to_string();
        self.http.send(
            "POST",
            path,
            &[
                ("Content-Type", "application/json"),
                ("X-Vault-Request", "true"),
                ("X-Vault-Token", &token),
            ],
            Some(&body),
        )
    }

    /// Stores a secret as every `VaultXxxSecretStorage` does: a read that must find
    /// nothing (404), the write (exactly 200), then the custom metadata if any (2xx).
    fn store(&mut self, secret: &Secret) {
        let data = format!("secret/data/{}", secret.path);
        let read = self.get(&data);
        assert_eq!(
            (read.status, read.json()),
            (404, json!({ "errors": [] })),
            "a first read of {data}: {read}"
        );
        let written = self.write_data(&data, &secret.value);
        assert_eq!(written.status, 200, "write {data}: {written}");
        assert_eq!(
            written.json()["data"]["version"],
            1,
            "write {data}: {written}"
        );
        if let Some(semantic_path) = &secret.semantic_path {
            let metadata = format!("secret/metadata/{}", secret.path);
            let answer = self.write_metadata(&metadata, &json!({ "semanticPath": semantic_path }));
            assert!(
                (200..300).contains(&answer.status),
                "write {metadata}: {answer}"
            );
        }
    }

    /// Reads a secret back as `getWalletSeed` / `getPrismDIDKeyPair` do (`data.data.value`,
    /// 200), and its custom metadata (in `data.metadata`).
    fn fetch(&mut self, secret: &Secret) {
        let data = format!("secret/data/{}", secret.path);
        let read = self.get(&data);
        assert_eq!(read.status, 200, "read {data}: {read}");
        let value = read.json();
        assert_eq!(
            value["data"]["data"],
            json!({ "value": secret.value }),
            "read {data}: {read}"
        );
        assert_eq!(value["data"]["metadata"]["version"], 1, "{read}");
        let custom = &value["data"]["metadata"]["custom_metadata"];
        match &secret.semantic_path {
            Some(path) => assert_eq!(custom, &json!({ "semanticPath": path }), "{read}"),
            None => assert!(custom.is_null(), "{read}"),
        }
    }
}

/// One secret as the agent stores it: its path below `secret/`, its `value`, and the
/// `semanticPath` custom metadata of a hashed path.
struct Secret {
    path: String,
    value: String,
    semantic_path: Option<String>,
}

/// One wallet: its seed and one PRISM DID key.
struct Wallet {
    seed: Secret,
    key: Secret,
}

/// `bytes` random bytes as lowercase hex.
fn random_hex(bytes: usize) -> String {
    hex::encode((0..bytes).map(|_| rand::random::<u8>()).collect::<Vec<_>>())
}

impl Wallet {
    /// A wallet with a fresh UUID, a 64-byte seed (stored as lowercase hex) and a
    /// secp256k1 JWK for `did:prism:…/keys/master0/<operation hash>`. `semantic`: the path
    /// as `VAULT_USE_SEMANTIC_PATH=true` (the default) lays it out, DID and all; otherwise
    /// its SHA-256 with `semanticPath` in the custom metadata.
    fn new(semantic: bool) -> Self {
        let mut uuid = rand::random::<[u8; 16]>();
        uuid[6] = (uuid[6] & 0x0f) | 0x40;
        uuid[8] = (uuid[8] & 0x3f) | 0x80;
        let uuid = hex::encode(uuid);
        let id = format!(
            "{}-{}-{}-{}-{}",
            &uuid[..8],
            &uuid[8..12],
            &uuid[12..16],
            &uuid[16..20],
            &uuid[20..]
        );
        let relative = format!(
            "did:prism:{}/keys/master0/{}",
            random_hex(32),
            random_hex(32)
        );
        let coordinate = || URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let jwk = json!({
            "kty": "EC", "crv": "secp256k1", "x": coordinate(), "y": coordinate(), "d": coordinate(),
        })
        .to_string();
        let (tail, semantic_path) = if semantic {
            (relative, None)
        } else {
            (
                hex::encode(Sha256::digest(relative.as_bytes())),
                Some(relative),
            )
        };
        Self {
            seed: Secret {
                path: format!("{id}/seed"),
                value: random_hex(64),
                semantic_path: None,
            },
            key: Secret {
                path: format!("{id}/dids/prism/{tail}"),
                value: jwk,
                semantic_path,
            },
        }
    }
}

/// Runs `work` on the wallets over [`CLIENTS`] connections at once.
fn for_each_wallet(
    broker: &Broker,
    token: &Arc<Mutex<String>>,
    wallets: &[Wallet],
    work: impl Fn(&mut Identus, &Wallet) + Sync,
) {
    let per_client = wallets.len().div_ceil(CLIENTS);
    std::thread::scope(|scope| {
        for share in wallets.chunks(per_client) {
            let work = &work;
            let mut identus = Identus {
                http: Http::new(broker.port),
                token: token.clone(),
            };
            scope.spawn(move || {
                for wallet in share {
                    work(&mut identus, wallet);
                }
            });
        }
    });
}

/// The agent's `vaultTokenRefreshLogic`, running: it sleeps `max(lease - 15 s, 1 s)`, logs
/// in again and swaps the new token in (it never renews, never revokes). Each login is
/// kept with when it was sent and answered; at each swap, the old token must still work
/// (requests in flight with it are served) and so must the new one.
struct Refresher {
    /// The lease of the first login.
    first_lease: u64,
    logins: Arc<Mutex<Vec<(String, Instant, Instant)>>>,
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Refresher {
    fn start(port: u16, token: Arc<Mutex<String>>) -> Self {
        let logins = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = mpsc::channel();
        let mut http = Http::new(port);
        let sent = Instant::now();
        let (first, first_lease) = login(&mut http, ROLE_ID, SECRET_ID);
        let mut lease = first_lease;
        logins
            .lock()
            .unwrap()
            .push((first.clone(), sent, Instant::now()));
        *token.lock().unwrap() = first;
        let kept = logins.clone();
        let thread = std::thread::spawn(move || {
            let probe = |http: &mut Http, token: &str, which: &str| {
                let answer = http.send(
                    "GET",
                    "secret/data/identus-token-probe",
                    &[("X-Vault-Token", token), ("X-Vault-Request", "true")],
                    None,
                );
                assert_eq!(
                    answer.status, 404,
                    "the {which} token at a re-login: {answer}"
                );
            };
            loop {
                let wait = Duration::from_secs(lease.saturating_sub(RELOGIN_MARGIN_SECS).max(1));
                if stopped.recv_timeout(wait) != Err(mpsc::RecvTimeoutError::Timeout) {
                    return;
                }
                let sent = Instant::now();
                let (next, next_lease) = login(&mut http, ROLE_ID, SECRET_ID);
                let answered = Instant::now();
                let old = std::mem::replace(&mut *token.lock().unwrap(), next.clone());
                probe(&mut http, &old, "old");
                probe(&mut http, &next, "new");
                kept.lock().unwrap().push((next, sent, answered));
                lease = next_lease;
            }
        });
        Self {
            first_lease,
            logins,
            stop,
            thread,
        }
    }

    fn count(&self) -> usize {
        self.logins.lock().unwrap().len()
    }

    /// Stops the loop; returns every login it made (the first one included).
    fn stop(self) -> Vec<(String, Instant, Instant)> {
        let _ = self.stop.send(());
        if let Err(panic) = self.thread.join() {
            std::panic::resume_unwind(panic);
        }
        let logins = self.logins.lock().unwrap();
        logins.clone()
    }
}

/// Polls a read of `path` until it answers `wanted` (failing past `limit`, a generous
/// deadline); returns how long after `since` the last read answered otherwise was sent.
/// The answer changed after that read was sent, so a bound on it is a bound on the
/// broker, whatever the time the machine takes to answer.
fn time_until(
    identus: &mut Identus,
    path: &str,
    wanted: u16,
    since: Instant,
    limit: Duration,
    log: &dyn Fn() -> String,
) -> (Duration, Answer) {
    let mut last_other = Duration::ZERO;
    loop {
        let sent = since.elapsed();
        let answer = identus.get(path);
        if answer.status == wanted {
            return (last_other, answer);
        }
        assert!(
            answer.status == 200 || answer.status == 503,
            "read {path}: {answer}"
        );
        last_other = sent;
        assert!(
            since.elapsed() < limit,
            "read {path} still answers {answer} after {limit:?}\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Takes the customer's agent away with `fault`: reads of `probe` answer 503 "customer key
/// unavailable" within three heartbeat intervals, and so do those of `others` (other
/// wallets' secrets), a write is refused
/// and leaves nothing behind; `heal` brings it back: reads succeed again by themselves,
/// the mount's data key fetched from the agent exactly once more. Returns how long after
/// the fault a read was still served.
fn goes_dark_and_comes_back(
    broker: &Broker,
    identus: &mut Identus,
    probe: &str,
    others: &[String],
    agent: &mut Agent,
    fault: impl FnOnce(&mut Agent),
    heal: impl FnOnce(&mut Agent),
) -> Duration {
    // The read is served from the cached data key: the agent is not asked.
    let decrypts = calls(broker, "decrypt");
    assert_eq!(identus.get(probe).status, 200);
    assert_eq!(
        calls(broker, "decrypt"),
        decrypts,
        "reads use the cached data key"
    );

    fault(agent);
    let (served, answer) = time_until(
        identus,
        probe,
        503,
        Instant::now(),
        Duration::from_secs(30),
        &|| broker.log(),
    );
    let limit = Duration::from_millis(3 * HEARTBEAT_MS);
    assert!(
        served <= limit,
        "a read sent {served:?} after the agent went away was still served (limit {limit:?})"
    );
    assert!(
        answer.text.contains("customer key unavailable"),
        "the 503 says why: {answer}"
    );
    for other in others {
        let answer = identus.get(other);
        assert_eq!(answer.status, 503, "read {other}: {answer}");
    }
    let unwritten = Wallet::new(true);
    let path = format!("secret/data/{}", unwritten.seed.path);
    let answer = identus.write_data(&path, &unwritten.seed.value);
    assert_eq!(
        answer.status, 503,
        "a write while the agent is away: {answer}"
    );
    // AppRole does not depend on the agent: the service can still log in.
    login(&mut Http::new(broker.port), ROLE_ID, SECRET_ID);

    heal(agent);
    time_until(
        identus,
        probe,
        200,
        Instant::now(),
        Duration::from_secs(20),
        &|| format!("{}\n{}", broker.log(), agent.log()),
    );
    assert_eq!(
        calls(broker, "decrypt") - decrypts,
        1.0,
        "the mount's data key is fetched again exactly once\n{}",
        agent.log()
    );
    let read = identus.get(&path);
    assert_eq!(
        (read.status, read.json()),
        (404, json!({ "errors": [] })),
        "the write refused while the agent was away left nothing: {read}"
    );
    served
}

/// Starts the customer's agent, serving key `data` to the root tenant, which is where the
/// Identus agent works (it sends no namespace).
fn start_agent(setup: &Setup, broker: &Broker) -> Agent {
    let agent = setup.agent_via("acme-dc1", setup.port, &setup.pki.ca, &["root=data"]);
    wait_agents(broker, &["acme-dc1"], &|| agent.log());
    agent
}

#[test]
fn identus_cloud_agent_keeps_1000_wallets_on_the_customers_agent_and_loses_them_with_it() {
    let started = Instant::now();
    // The gateway's drop-in (agent.rs), serving the root tenant: Identus sends no
    // namespace. The drop-in names the tenants the instance serves on one line.
    let setup = Setup::new(&[("acme-dc1", &["root"])]);
    let dropin = format!("{INSTANCE}.toml");
    let text = std::fs::read_to_string(setup.plugins.path().join(&dropin)).unwrap();
    let served = text.replacen(
        "\ntenants = [\"acme\", \"beta\"]\n",
        "\ntenants = [\"root\"]\n",
        1,
    );
    assert_ne!(served, text, "the drop-in's tenants line moved:\n{text}");
    setup.plugins.write(&dropin, &served);
    let broker = Broker::start(Options {
        plugin_dir: Some(setup.plugins.path().to_owned()),
        ..Options::default()
    });
    let mut agent = start_agent(&setup, &broker);

    // The operator: `secret/` (the dev server's KV v2) again, on the customer's key.
    broker.bao_ok(&["secrets", "disable", "secret"]);
    broker.bao_ok(&[
        "secrets",
        "enable",
        "-path=secret",
        &format!("-options=backend={INSTANCE}"),
        "kv-v2",
    ]);
    let (status, key) = broker.request("GET", "secret/key", None);
    assert_eq!(status, 200, "{key}");
    assert_eq!(key["data"]["backend"], INSTANCE, "{key}");

    // AppRole, the policy through `sys/policy/<name>`, the role with its chosen ids.
    let root = |method: &str, path: &str, body: Value| {
        let (status, answer) = broker.request(method, path, Some(&body));
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {answer}"
        );
    };
    root("POST", "sys/auth/approle", json!({ "type": "approle" }));
    root(
        "PUT",
        &format!("sys/policy/{ROLE}"),
        json!({ "policy": POLICY }),
    );
    root(
        "POST",
        &format!("auth/approle/role/{ROLE}"),
        json!({ "token_policies": [ROLE], "token_ttl": "60s" }),
    );
    root(
        "POST",
        &format!("auth/approle/role/{ROLE}/role-id"),
        json!({ "role_id": ROLE_ID }),
    );
    root(
        "POST",
        &format!("auth/approle/role/{ROLE}/custom-secret-id"),
        json!({ "secret_id": SECRET_ID }),
    );
    let (status, policy) = broker.request("GET", &format!("sys/policy/{ROLE}"), None);
    assert_eq!(
        (status, policy["data"]["rules"].as_str()),
        (200, Some(POLICY))
    );

    // A login with the role as the operator guide sets it up: a 60 s lease, so the agent
    // would log in again every 45 s.
    let (token, lease) = login(&mut Http::new(broker.port), ROLE_ID, SECRET_ID);
    assert_eq!(lease, 60);
    let (status, lookup) = broker.request_with(
        "GET",
        "auth/token/lookup-self",
        None,
        &[("X-Vault-Token", &token)],
    );
    assert_eq!(status, 200, "{lookup}");
    let ttl = lookup["data"]["ttl"].as_u64().unwrap();
    assert!((58..=60).contains(&ttl), "{lookup}");

    // The run: the same role with a shorter token_ttl, so that the agent's re-login loop
    // swaps tokens every few seconds while it works.
    root(
        "POST",
        &format!("auth/approle/role/{ROLE}"),
        json!({ "token_ttl": format!("{SHORT_TTL_SECS}s") }),
    );
    let token = Arc::new(Mutex::new(String::new()));
    let refresher = Refresher::start(broker.port, token.clone());
    assert_eq!(refresher.first_lease, SHORT_TTL_SECS);

    // Half the wallets with the default semantic paths (DIDs with `:` in the path), half
    // with hashed paths and `semanticPath` custom metadata.
    let wallets: Vec<Wallet> = (0..WALLETS).map(|i| Wallet::new(i % 2 == 0)).collect();
    let run = Instant::now();
    for_each_wallet(&broker, &token, &wallets, |identus, wallet| {
        identus.store(&wallet.seed);
        identus.store(&wallet.key);
        identus.fetch(&wallet.seed);
        identus.fetch(&wallet.key);
    });
    let run = run.elapsed();
    eprintln!("{WALLETS} wallets stored and read back in {run:?}");
    let mut identus = Identus {
        http: Http::new(broker.port),
        token: token.clone(),
    };
    // The agent re-logged in at least twice by its rule, every request served throughout.
    let relogged = eventually(Duration::from_secs(3 * SHORT_TTL_SECS), || {
        refresher.count() >= 3
    });
    assert!(
        relogged,
        "the re-login loop logged in {} times",
        refresher.count()
    );

    // The customer's agent hangs (SIGSTOP: only the heartbeats tell), then wakes up.
    let probe = format!("secret/data/{}", wallets[1].key.path);
    let others = [&wallets[0], &wallets[WALLETS - 1]]
        .map(|wallet| format!("secret/data/{}", wallet.seed.path));
    let hung = goes_dark_and_comes_back(
        &broker,
        &mut identus,
        &probe,
        &others,
        &mut agent,
        |agent| agent.stop(),
        |agent| agent.cont(),
    );
    // The customer stops the agent, then starts it again.
    let stopped = goes_dark_and_comes_back(
        &broker,
        &mut identus,
        &probe,
        &others,
        &mut agent,
        |agent| agent.kill9(),
        |agent| *agent = start_agent(&setup, &broker),
    );
    // Every wallet reads back, with no further call to the agent: the mount's data key
    // fetched once is enough for all of them.
    let decrypts = calls(&broker, "decrypt");
    for_each_wallet(&broker, &token, &wallets, |identus, wallet| {
        identus.fetch(&wallet.seed);
        identus.fetch(&wallet.key);
    });
    assert_eq!(calls(&broker, "decrypt"), decrypts, "{}", agent.log());

    // Each token the agent dropped runs out at its TTL: it was never renewed.
    let logins = refresher.stop();
    for (index, (token, sent, answered)) in logins.iter().enumerate() {
        runs_out(
            &format!("login {index}'s token"),
            (*sent, *answered),
            Duration::from_secs(SHORT_TTL_SECS),
            || {
                let (status, _) = broker.request_with(
                    "GET",
                    "auth/token/lookup-self",
                    None,
                    &[("X-Vault-Token", token)],
                );
                status == 403
            },
        );
    }
    eprintln!(
        "{} logins; reads served at most {hung:?} after the agent hung, {stopped:?} after it \
         stopped (limit {:?}); whole test {:?}",
        logins.len(),
        Duration::from_millis(3 * HEARTBEAT_MS),
        started.elapsed()
    );
}

/// `examples/kv-identus/run`, as a user runs it (with the debug builds of this run).
#[test]
fn the_kv_identus_example_runs() {
    let bao = crate::support::bao_bin();
    let out =
        std::process::Command::new(crate::support::repo_root().join("examples/kv-identus/run"))
            .env("PROFILE", "debug")
            .env("SKIP_BUILD", "1")
            .env("CARGO_TARGET_DIR", crate::support::target_dir())
            .env("HEARTBEAT_MS", HEARTBEAT_MS.to_string())
            .env("BROKER_PORT", crate::support::free_port().to_string())
            .env("AGENT_PORT", crate::support::free_port().to_string())
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    bao.parent().unwrap().display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .output()
            .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("kv-identus example: OK"), "{stderr}");
    assert!(stderr.contains("lease_duration 60 s"), "{stderr}");
    assert!(stderr.contains("customer key unavailable"), "{stderr}");
}
