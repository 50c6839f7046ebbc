//! Customer-held keys (issue 8): the remote-agent gateway plugin loaded as a `.so` from a
//! drop-in, and the real `keybroker-agent` binary holding the customer's key, connected over
//! TLS with a throwaway CA. Faults are real: kill -9 and SIGSTOP of the agent, a TCP proxy
//! cut between agent and broker, wrong secrets, an untrusted broker certificate, and a rogue
//! agent (this test, speaking the protocol itself) sending unknown reply ids, malformed and
//! oversized frames.

use std::{
    io::{BufRead, BufReader},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use keybroker_agent_protocol::AgentIdentity;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use serde_json::{json, Value};

use crate::support::{
    artefact, backend_calls, eventually, free_port, ns, private_dir, proxy::Proxy, Broker, Options,
    PluginDir,
};

/// The gateway's heartbeat interval in these tests: eviction within three of them.
pub(crate) const HEARTBEAT_MS: u64 = 1000;

/// The instance name of the gateway.
pub(crate) const INSTANCE: &str = "acme-agent";

/// A throwaway CA and a certificate it issued for `127.0.0.1`/`localhost`, as PEM files.
pub(crate) struct Pki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    pub(crate) fn new(dir: &Path, name: &str) -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        let pki = Self {
            ca: dir.join(format!("{name}-ca.pem")),
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&pki.ca, ca_cert.pem()).unwrap();
        std::fs::write(&pki.cert, cert.pem()).unwrap();
        write_private(&pki.key, &key.serialize_pem());
        pki
    }
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// 32 random bytes, base64.
fn random_b64() -> String {
    STANDARD.encode(rand::random::<[u8; 32]>())
}

/// One agent's identity: id and secret file (and its pin for the gateway config).
pub(crate) struct AgentSpec {
    pub id: String,
    pub secret_file: PathBuf,
    pub pin: String,
    pub tenants: Vec<String>,
}

/// Files shared by a scenario: PKI, agent secrets, the customer's key, the drop-in.
pub(crate) struct Setup {
    pub dir: tempfile::TempDir,
    pub pki: Pki,
    pub plugins: PluginDir,
    pub port: u16,
    pub key_file: PathBuf,
    pub agents: Vec<AgentSpec>,
}

impl Setup {
    /// Agents `(id, tenants)`, each with its own secret; one customer key file `data`.
    pub(crate) fn new(agents: &[(&str, &[&str])]) -> Self {
        let dir = private_dir();
        let pki = Pki::new(dir.path(), "gateway");
        let key_file = dir.path().join("data.key");
        write_private(&key_file, &random_b64());
        let agents = agents
            .iter()
            .map(|(id, tenants)| {
                let secret = rand::random::<[u8; 32]>();
                let secret_file = dir.path().join(format!("{id}.secret"));
                write_private(&secret_file, &STANDARD.encode(secret));
                AgentSpec {
                    id: (*id).to_owned(),
                    secret_file,
                    pin: AgentIdentity::from_secret(&secret).unwrap().pin(),
                    tenants: tenants.iter().map(|t| (*t).to_owned()).collect(),
                }
            })
            .collect();
        let setup = Self {
            dir,
            pki,
            plugins: PluginDir::new(),
            port: free_port(),
            key_file,
            agents,
        };
        setup.write_dropin();
        setup
    }

    fn write_dropin(&self) {
        let library = self
            .plugins
            .add_library("remote_agent", "libkeybroker_plugin_remote_agent.so");
        let agents: Vec<String> = self
            .agents
            .iter()
            .map(|a| {
                format!(
                    "{{ id = \"{}\", pin = \"{}\", tenants = {:?} }}",
                    a.id, a.pin, a.tenants
                )
            })
            .collect();
        let config = format!(
            "listen = \"127.0.0.1:{}\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n\
             default_key = \"data\"\nheartbeat_interval_ms = {HEARTBEAT_MS}\n\
             agents = [{}]\n",
            self.port,
            self.pki.cert.display(),
            self.pki.key.display(),
            agents.join(", ")
        );
        self.plugins.write_instance(
            INSTANCE,
            &library,
            "[\"acme\", \"beta\"]",
            "timeout = \"2s\"\non_unavailable = \"evict\"",
            &config,
        );
    }

    /// A dev broker loading the gateway, with tenants `acme` and `beta` (transit mounted).
    pub(crate) fn broker(&self) -> Broker {
        let broker = Broker::start(Options {
            plugin_dir: Some(self.plugins.path().to_owned()),
            ..Options::default()
        });
        for tenant in ["acme", "beta"] {
            broker.bao_ok(&["namespace", "create", tenant]);
            broker.bao_ok(&["secrets", "enable", &ns(tenant), "transit"]);
        }
        broker
    }

    pub(crate) fn spec(&self, id: &str) -> &AgentSpec {
        self.agents.iter().find(|a| a.id == id).unwrap()
    }

    /// Starts the real agent `id`, dialing `port` (the gateway's, or a proxy's), trusting
    /// `ca`, allowing `allow` (`tenant=key,…`).
    pub(crate) fn agent_via(&self, id: &str, port: u16, ca: &Path, allow: &[&str]) -> Agent {
        let mut command = self.agent_command(id, port, ca);
        command
            .arg("--key-file")
            .arg(format!("data={}", self.key_file.display()));
        for allowed in allow {
            command.arg("--allow").arg(allowed);
        }
        Agent::spawn(command)
    }

    /// Starts the real agent `id` on the gateway with only the broker and identity flags,
    /// then `extra_args` (its keys and `--allow`: no key file is added) and `env` set.
    pub(crate) fn agent_with(&self, id: &str, extra_args: &[&str], env: &[(&str, &Path)]) -> Agent {
        let mut command = self.agent_command(id, self.port, &self.pki.ca);
        command.args(extra_args);
        for (name, value) in env {
            command.env(name, value);
        }
        Agent::spawn(command)
    }

    /// `keybroker-agent` as agent `id` dialing `port`, trusting `ca`, retrying within 1 s.
    fn agent_command(&self, id: &str, port: u16, ca: &Path) -> Command {
        let spec = self.spec(id);
        let mut command = Command::new(artefact("keybroker-agent"));
        command
            .arg("--broker")
            .arg(format!("wss://127.0.0.1:{port}"))
            .arg("--broker-ca")
            .arg(ca)
            .arg("--agent-id")
            .arg(&spec.id)
            .arg("--secret-file")
            .arg(&spec.secret_file)
            .arg("--reconnect-max-delay")
            .arg("1s");
        command
    }

    /// Starts the real agent `id` on the gateway, allowing tenant `acme` key `data`.
    pub(crate) fn agent(&self, id: &str) -> Agent {
        self.agent_via(id, self.port, &self.pki.ca, &["acme=data"])
    }
}

/// A running `keybroker-agent`, killed on drop.
pub(crate) struct Agent {
    pub child: Child,
    pub log: Arc<Mutex<String>>,
}

impl Agent {
    fn spawn(mut command: Command) -> Self {
        command
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start keybroker-agent");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut sink = sink.lock().unwrap();
                sink.push_str(&line);
                sink.push('\n');
            }
        });
        Self { child, log }
    }

    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn signal(&self, signal: rustix::process::Signal) -> rustix::io::Result<()> {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, signal)
    }

    pub(crate) fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub(crate) fn stop(&self) {
        self.signal(rustix::process::Signal::STOP).unwrap();
    }

    pub(crate) fn cont(&self) {
        self.signal(rustix::process::Signal::CONT).unwrap();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // Already reaped after kill9: its pid may belong to another process by now.
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.signal(rustix::process::Signal::CONT);
            self.kill9();
        }
    }
}

/// `GET sys/agents` → the agents listed.
pub(crate) fn agents(broker: &Broker) -> Vec<Value> {
    let (status, body) = broker.request("GET", "sys/agents", None);
    assert_eq!(status, 200, "{body}");
    body["data"]["agents"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits until `sys/agents` lists exactly `ids`.
pub(crate) fn wait_agents(broker: &Broker, ids: &[&str], context: &dyn Fn() -> String) {
    let mut listed = Vec::new();
    let ok = eventually(Duration::from_secs(15), || {
        listed = agents(broker)
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>();
        listed.sort();
        listed == ids
    });
    assert!(
        ok,
        "sys/agents lists {listed:?}, expected {ids:?}\n{}\nbroker log:\n{}",
        context(),
        broker.log()
    );
}

/// A request in tenant `tenant` as root.
pub(crate) fn tenant_post(broker: &Broker, tenant: &str, path: &str, body: &Value) -> (u16, Value) {
    broker.request_with(
        "POST",
        path,
        Some(body),
        &[
            ("X-Vault-Token", broker.token.as_str()),
            ("X-Vault-Namespace", tenant),
        ],
    )
}

/// The status of reading transit key `name` in `tenant` (404: it does not exist).
pub(crate) fn key_status(broker: &Broker, tenant: &str, name: &str) -> u16 {
    broker
        .request_with(
            "GET",
            &format!("transit/keys/{name}"),
            None,
            &[
                ("X-Vault-Token", broker.token.as_str()),
                ("X-Vault-Namespace", tenant),
            ],
        )
        .0
}

/// Waits until the text `log` returns (a process's log) contains `needle`.
pub(crate) fn wait_log(log: &dyn Fn() -> String, needle: &str, within: Duration) {
    assert!(
        eventually(within, || log().contains(needle)),
        "{needle:?} never logged:\n{}",
        log()
    );
}

pub(crate) fn encrypt(broker: &Broker, tenant: &str, key: &str, plaintext: &[u8]) -> (u16, Value) {
    tenant_post(
        broker,
        tenant,
        &format!("transit/encrypt/{key}"),
        &json!({"plaintext": STANDARD.encode(plaintext)}),
    )
}

pub(crate) fn decrypt(broker: &Broker, tenant: &str, key: &str, ciphertext: &str) -> (u16, Value) {
    tenant_post(
        broker,
        tenant,
        &format!("transit/decrypt/{key}"),
        &json!({"ciphertext": ciphertext}),
    )
}

/// Encrypts and returns the ciphertext, asserting success.
pub(crate) fn encrypt_ok(broker: &Broker, tenant: &str, key: &str, plaintext: &[u8]) -> String {
    let (status, body) = encrypt(broker, tenant, key, plaintext);
    assert_eq!(status, 200, "{body}\n{}", broker.log());
    body["data"]["ciphertext"].as_str().unwrap().to_owned()
}

/// Decrypts, asserting success and the plaintext.
pub(crate) fn decrypt_ok(
    broker: &Broker,
    tenant: &str,
    key: &str,
    ciphertext: &str,
    plaintext: &[u8],
) {
    let (status, body) = decrypt(broker, tenant, key, ciphertext);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        STANDARD
            .decode(body["data"]["plaintext"].as_str().unwrap())
            .unwrap(),
        plaintext
    );
}

/// The gateway's calls of `operation` (`encrypt`, `decrypt`), single or batched, from
/// `sys/metrics`.
pub(crate) fn calls(broker: &Broker, operation: &str) -> f64 {
    backend_calls(broker, INSTANCE, operation)
        + backend_calls(broker, INSTANCE, &format!("{operation}_batch"))
}

/// Asks to create the envelope key `name` on the gateway in `tenant`: (status, body).
pub(crate) fn try_create_key(broker: &Broker, tenant: &str, name: &str) -> (u16, Value) {
    tenant_post(
        broker,
        tenant,
        &format!("transit/keys/{name}"),
        &json!({"backend": INSTANCE}),
    )
}

/// Creates the transit key `name` on the gateway in `tenant` (`direct` for direct mode).
pub(crate) fn create_key(broker: &Broker, tenant: &str, name: &str, direct: bool) {
    let mut body = json!({"backend": INSTANCE});
    if direct {
        body["mode"] = json!("direct");
    }
    let (status, response) = tenant_post(broker, tenant, &format!("transit/keys/{name}"), &body);
    assert!(
        status == 200 || status == 204,
        "{status} {response}\n{}",
        broker.log()
    );
}

/// Polls decrypt until it answers `wanted` (failing past `limit`, a generous deadline);
/// returns how long after the call the last decrypt answered otherwise was sent (zero if
/// none was). The answer changed after that request was sent: so a value past a bound proves
/// a change later than the bound, whatever the machine's speed, while the time a loaded
/// machine takes to answer a request is not counted against the gateway.
pub(crate) fn time_until_status(
    broker: &Broker,
    tenant: &str,
    key: &str,
    ciphertext: &str,
    wanted: u16,
    limit: Duration,
) -> Duration {
    let start = Instant::now();
    let mut last_other = Duration::ZERO;
    loop {
        let sent = start.elapsed();
        let (status, body) = decrypt(broker, tenant, key, ciphertext);
        if status == wanted {
            if wanted == 503 {
                assert!(
                    body.to_string().contains("customer key unavailable"),
                    "{body}"
                );
            }
            return last_other;
        }
        last_other = sent;
        assert!(
            start.elapsed() < limit,
            "decrypt still answers {status} {body} after {limit:?}\n{}",
            broker.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn envelope_and_direct_keys_through_the_agent() {
    let setup = Setup::new(&[("acme-dc1", &["acme"])]);
    let broker = setup.broker();
    // No agent yet: the customer key is unavailable, creation says so.
    let (status, body) = try_create_key(&broker, "acme", "data");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.to_string().contains("customer key unavailable"),
        "{body}"
    );

    let agent = setup.agent("acme-dc1");
    wait_agents(&broker, &["acme-dc1"], &|| agent.log());
    let listed = &agents(&broker)[0];
    assert_eq!(listed["instance"], INSTANCE);
    assert_eq!(listed["tenants"], json!(["acme"]));
    assert_eq!(listed["in_flight"], 0);
    assert!(listed["last_heartbeat"].as_str().is_some(), "{listed}");

    create_key(&broker, "acme", "data", false);
    create_key(&broker, "acme", "direct", true);
    for key in ["data", "direct"] {
        let secret = format!("customer record via {key}");
        let ciphertext = encrypt_ok(&broker, "acme", key, secret.as_bytes());
        decrypt_ok(&broker, "acme", key, &ciphertext, secret.as_bytes());
    }
    // Direct mode goes to the agent every time; envelope mode once per data key.
    let before = calls(&broker, "encrypt");
    for _ in 0..3 {
        encrypt_ok(&broker, "acme", "direct", b"x");
        encrypt_ok(&broker, "acme", "data", b"x");
    }
    assert_eq!(calls(&broker, "encrypt") - before, 3.0);

    // The agent logged each operation it served, without the data.
    let log = agent.log();
    assert!(log.contains("acme-dc1") && log.contains("encrypt"), "{log}");
    assert!(!log.contains("customer record"), "{log}");
    assert!(
        !log.contains(&STANDARD.encode(b"customer record via direct")),
        "{log}"
    );

    // A tenant the gateway does not list for any agent cannot use the instance's keys.
    let (status, body) = try_create_key(&broker, "beta", "data");
    assert_eq!(status, 403, "{body}");
}

/// A gateway with agent `acme-dc1` serving envelope key `data` in `acme` (its data key
/// cached), and a local key in `beta`; `fault` takes the agent away, `heal` brings it back.
/// Checks: 503 "customer key unavailable" within three heartbeat intervals, `beta`
/// unaffected, then service resumes by itself with exactly one more agent decrypt (the data
/// key fetched again).
fn outage_and_recovery(
    start: impl FnOnce(&Setup) -> (Agent, Option<Proxy>),
    fault: impl FnOnce(&mut Agent, Option<&Proxy>),
    heal: impl FnOnce(&Setup, Agent, Option<&Proxy>) -> Agent,
) {
    let setup = Setup::new(&[("acme-dc1", &["acme"])]);
    let broker = setup.broker();
    broker.bao_ok(&["write", &ns("beta"), "-f", "transit/keys/local"]);
    let (mut agent, proxy) = start(&setup);
    wait_agents(&broker, &["acme-dc1"], &|| agent.log());
    create_key(&broker, "acme", "data", false);
    let ciphertext = encrypt_ok(&broker, "acme", "data", b"acme payroll");
    decrypt_ok(&broker, "acme", "data", &ciphertext, b"acme payroll");
    let local = encrypt_ok(&broker, "beta", "local", b"beta data");
    // Cached: decrypting again does not reach the agent.
    let decrypts = calls(&broker, "decrypt");
    decrypt_ok(&broker, "acme", "data", &ciphertext, b"acme payroll");
    assert_eq!(calls(&broker, "decrypt"), decrypts);

    fault(&mut agent, proxy.as_ref());
    // The bound: no decrypt sent later than three heartbeats after the fault is served. How
    // soon the 503 is seen is polled with a generous deadline (the machine's speed).
    let limit = Duration::from_millis(3 * HEARTBEAT_MS);
    let took = time_until_status(
        &broker,
        "acme",
        "data",
        &ciphertext,
        503,
        Duration::from_secs(30),
    );
    assert!(
        took <= limit,
        "a decrypt sent {took:?} after the fault was still served (limit {limit:?})"
    );
    decrypt_ok(&broker, "beta", "local", &local, b"beta data");
    assert!(agents(&broker).is_empty());

    let agent = heal(&setup, agent, proxy.as_ref());
    time_until_status(
        &broker,
        "acme",
        "data",
        &ciphertext,
        200,
        Duration::from_secs(20),
    );
    decrypt_ok(&broker, "acme", "data", &ciphertext, b"acme payroll");
    assert_eq!(
        calls(&broker, "decrypt") - decrypts,
        1.0,
        "the data key is fetched again exactly once\n{}",
        agent.log()
    );
}

fn direct_agent(setup: &Setup) -> (Agent, Option<Proxy>) {
    (setup.agent("acme-dc1"), None)
}

#[test]
fn a_killed_agent_cuts_access_within_three_heartbeats_and_a_new_one_restores_it() {
    outage_and_recovery(
        direct_agent,
        |agent, _| agent.kill9(),
        |setup, _, _| setup.agent("acme-dc1"),
    );
}

#[test]
fn a_hung_agent_cuts_access_within_three_heartbeats_and_recovers_when_it_wakes() {
    outage_and_recovery(
        direct_agent,
        |agent, _| agent.stop(),
        |_, agent, _| {
            agent.cont();
            agent
        },
    );
}

#[test]
fn a_cut_network_path_cuts_access_within_three_heartbeats_and_recovers() {
    outage_and_recovery(
        |setup| {
            let proxy = Proxy::start(setup.port);
            let agent = setup.agent_via("acme-dc1", proxy.port, &setup.pki.ca, &["acme=data"]);
            (agent, Some(proxy))
        },
        |_, proxy| proxy.unwrap().cut(),
        |_, agent, proxy| {
            proxy.unwrap().restore();
            agent
        },
    );
}

#[test]
fn an_agent_with_a_wrong_secret_is_refused() {
    let setup = Setup::new(&[("acme-dc1", &["acme"])]);
    write_private(&setup.spec("acme-dc1").secret_file, &random_b64());
    let broker = setup.broker();
    broker.bao_ok(&["write", &ns("beta"), "-f", "transit/keys/local"]);
    let agent = setup.agent("acme-dc1");
    wait_log(
        &|| broker.log(),
        "authentication failed",
        Duration::from_secs(10),
    );
    // The agent logs the refusal the broker logged above: its own process's work on a loaded
    // machine (it was 5 s).
    wait_log(
        &|| agent.log(),
        "authentication failed",
        Duration::from_secs(15),
    );
    assert!(agents(&broker).is_empty());
    let (status, body) = try_create_key(&broker, "acme", "data");
    assert_eq!(status, 503, "{body}");
    let local = encrypt_ok(&broker, "beta", "local", b"beta");
    decrypt_ok(&broker, "beta", "local", &local, b"beta");
}

#[test]
fn an_agent_refuses_tenants_outside_its_own_allowlist() {
    // The gateway lets acme-dc1 serve acme and beta; the customer's agent allows only acme.
    let setup = Setup::new(&[("acme-dc1", &["acme", "beta"])]);
    let broker = setup.broker();
    let agent = setup.agent("acme-dc1");
    wait_agents(&broker, &["acme-dc1"], &|| agent.log());
    let (status, body) = try_create_key(&broker, "beta", "stolen");
    assert_eq!(status, 403, "{body}");
    assert!(body.to_string().contains("AccessDeniedException"), "{body}");
    assert_eq!(
        key_status(&broker, "beta", "stolen"),
        404,
        "nothing was created"
    );
    create_key(&broker, "acme", "data", false);
    let ciphertext = encrypt_ok(&broker, "acme", "data", b"acme");
    decrypt_ok(&broker, "acme", "data", &ciphertext, b"acme");
}

#[test]
fn an_agent_does_not_talk_to_a_broker_it_does_not_trust() {
    let setup = Setup::new(&[("acme-dc1", &["acme"])]);
    let broker = setup.broker();
    let other = Pki::new(setup.dir.path(), "other");
    let agent = setup.agent_via("acme-dc1", setup.port, &other.ca, &["acme=data"]);
    wait_log(&|| agent.log(), "not trusted", Duration::from_secs(10));
    assert!(agents(&broker).is_empty());
    assert!(!broker.log().contains("authentication failed"));
}

/// Two agents serve one instance: one killed under load fails no request beyond those in
/// flight on it, and nothing is evicted while the other serves.
#[test]
fn two_agents_serve_one_instance_and_one_going_away_is_absorbed() {
    let setup = Setup::new(&[("acme-dc1", &["acme"]), ("acme-dc2", &["acme"])]);
    let broker = Arc::new(setup.broker());
    let mut first = setup.agent("acme-dc1");
    let second = setup.agent("acme-dc2");
    wait_agents(&broker, &["acme-dc1", "acme-dc2"], &|| {
        format!("{}\n{}", first.log(), second.log())
    });
    create_key(&broker, "acme", "data", false);
    create_key(&broker, "acme", "direct", true);
    let ciphertext = encrypt_ok(&broker, "acme", "data", b"kept");
    decrypt_ok(&broker, "acme", "data", &ciphertext, b"kept");
    let decrypts = calls(&broker, "decrypt");

    const CLIENTS: usize = 4;
    let stop = Arc::new(AtomicBool::new(false));
    // Requests served so far, by all clients: what the waits below watch.
    let served = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (broker, stop, served) = (broker.clone(), stop.clone(), served.clone());
            std::thread::spawn(move || {
                let (mut ok, mut failed) = (0, Vec::new());
                while !stop.load(Ordering::SeqCst) {
                    let (status, body) = encrypt(&broker, "acme", "direct", b"load");
                    if status == 200 {
                        ok += 1;
                        served.fetch_add(1, Ordering::SeqCst);
                    } else {
                        failed.push(format!("{status} {body}"));
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    // Waits until `count` requests have been served in all, with a generous deadline (the
    // machine's speed); on failure the clients are stopped first.
    let wait_served = |count: usize, what: &str| {
        if !eventually(Duration::from_secs(60), || {
            served.load(Ordering::SeqCst) >= count
        }) {
            stop.store(true, Ordering::SeqCst);
            panic!(
                "only {} requests served {what} within 60 s\n{}",
                served.load(Ordering::SeqCst),
                broker.log()
            );
        }
    };
    // The kill comes under load: once 25 requests were served (it was after 700 ms).
    wait_served(25, "before the kill");
    first.kill9();
    // Load goes on for 1.5 s after the kill, and until 30 more requests were served, however
    // slow the machine: the checks below count on both.
    let after_kill = served.load(Ordering::SeqCst) + 30;
    std::thread::sleep(Duration::from_millis(1500));
    wait_served(after_kill, "after the kill");
    stop.store(true, Ordering::SeqCst);
    let (mut ok, mut failed) = (0, Vec::new());
    for client in clients {
        let (o, f) = client.join().unwrap();
        ok += o;
        failed.extend(f);
    }
    assert!(ok > 50, "only {ok} requests served");
    assert!(
        failed.len() <= CLIENTS,
        "{} failed requests (at most {CLIENTS} were in flight): {failed:?}",
        failed.len()
    );
    wait_agents(&broker, &["acme-dc2"], &|| second.log());
    // No eviction: the cached data key still serves without asking an agent.
    decrypt_ok(&broker, "acme", "data", &ciphertext, b"kept");
    assert_eq!(calls(&broker, "decrypt"), decrypts);
}

/// This test playing a misbehaving agent with a valid identity: TLS (trusting the gateway's
/// CA), WebSocket and the handshake, then whatever frames the test writes.
struct Rogue {
    socket: tokio_tungstenite::tungstenite::WebSocket<
        rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    >,
}

impl Rogue {
    fn connect(setup: &Setup, id: &str) -> Self {
        use keybroker_agent_protocol::{decode, encode, random_nonce, Frame};
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&setup.pki.ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connection =
            rustls::ClientConnection::new(Arc::new(config), "127.0.0.1".try_into().unwrap())
                .unwrap();
        let tcp = TcpStream::connect(("127.0.0.1", setup.port)).unwrap();
        let mut tls = rustls::StreamOwned::new(connection, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).unwrap();
        }
        let mut binding = [0u8; 32];
        tls.conn
            .export_keying_material(&mut binding, b"EXPORTER-Channel-Binding", None)
            .unwrap();
        let (socket, _) = tokio_tungstenite::tungstenite::client::client(
            format!("wss://127.0.0.1:{}/", setup.port),
            tls,
        )
        .unwrap();
        let secret = STANDARD
            .decode(
                std::fs::read_to_string(&setup.spec(id).secret_file)
                    .unwrap()
                    .trim(),
            )
            .unwrap();
        let identity = AgentIdentity::from_secret(&secret).unwrap();
        let hello = identity.hello(id, random_nonce());
        let mut rogue = Self { socket };
        rogue.send_text(&encode(&Frame::Hello(hello.clone())).unwrap());
        let Frame::Challenge(challenge) = decode(&rogue.read_text()).unwrap() else {
            panic!("no challenge");
        };
        let proof = identity.prove(&hello, &challenge.broker_nonce, &binding);
        rogue.send_text(&encode(&Frame::Proof(proof)).unwrap());
        let welcome = rogue.read_text();
        assert!(
            matches!(decode(&welcome).unwrap(), Frame::Welcome(_)),
            "{welcome}"
        );
        rogue
    }

    fn send_text(&mut self, text: &str) {
        use tokio_tungstenite::tungstenite::Message;
        self.socket.send(Message::text(text.to_owned())).unwrap();
    }

    /// The next text frame (heartbeats included).
    fn read_text(&mut self) -> String {
        use tokio_tungstenite::tungstenite::Message;
        loop {
            match self.socket.read().unwrap() {
                Message::Text(text) => return text.as_str().to_owned(),
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// The next request frame, skipping heartbeats.
    fn next_request(&mut self) -> keybroker_agent_protocol::Request {
        use keybroker_agent_protocol::{decode, Frame};
        loop {
            if let Frame::Request(request) = decode(&self.read_text()).unwrap() {
                return request;
            }
        }
    }

    /// Whether the gateway closed the connection (reads until an error or a close; a read
    /// waiting 15 s means it did not). Closing is the gateway's at once; the generous wait
    /// is for a loaded machine (it was 5 s).
    fn closed_by_gateway(mut self) -> bool {
        use tokio_tungstenite::tungstenite::Message;
        self.socket
            .get_mut()
            .sock
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        loop {
            match self.socket.read() {
                Ok(Message::Close(_)) => return true,
                Ok(_) => {}
                Err(tokio_tungstenite::tungstenite::Error::Io(error))
                    if error.kind() == std::io::ErrorKind::WouldBlock
                        || error.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return false
                }
                Err(_) => return true,
            }
        }
    }
}

#[test]
fn misbehaving_agents_get_clear_outcomes_and_leave_nothing_behind() {
    use keybroker_agent_protocol::{
        encode,
        xks::{XksError, XksErrorName},
        Frame, Reply, Response,
    };
    let setup = Setup::new(&[("acme-dc1", &["acme"]), ("acme-dc2", &["acme"])]);
    let broker = setup.broker();
    broker.bao_ok(&["write", &ns("beta"), "-f", "transit/keys/local"]);
    let local = encrypt_ok(&broker, "beta", "local", b"beta");

    // A reply with an unknown request id: dropped, never applied; the request it did not
    // answer times out with a clear 503.
    let mut rogue = Rogue::connect(&setup, "acme-dc2");
    wait_agents(&broker, &["acme-dc2"], &String::new);
    let status = std::thread::scope(|scope| {
        let creating = scope.spawn(|| try_create_key(&broker, "acme", "data").0);
        let request = rogue.next_request();
        let wrong = Frame::Response(Response {
            id: request.id + 1_000,
            result: Reply::Error(XksError::new(XksErrorName::AccessDeniedException)),
        });
        rogue.send_text(&encode(&wrong).unwrap());
        creating.join().unwrap()
    });
    assert_eq!(status, 503);
    // Logged as the gateway reads the rogue's reply (it was 5 s: the broker's speed).
    wait_log(&|| broker.log(), "reply dropped", Duration::from_secs(15));
    assert_eq!(agents(&broker).len(), 1, "the agent stays connected");

    // A malformed frame ends that agent's connection.
    rogue.send_text("{\"type\": \"response\", \"id\": ");
    assert!(rogue.closed_by_gateway());
    wait_agents(&broker, &[], &String::new);

    // A 10 MB frame ends the connection before it is read.
    let mut rogue = Rogue::connect(&setup, "acme-dc2");
    wait_agents(&broker, &["acme-dc2"], &String::new);
    let huge = "x".repeat(10 * 1024 * 1024);
    let _ = rogue
        .socket
        .send(tokio_tungstenite::tungstenite::Message::text(huge));
    assert!(rogue.closed_by_gateway());
    wait_agents(&broker, &[], &String::new);
    let log = broker.log();
    assert!(log.contains("malformed frame"), "{log}");

    // Nothing was created, nothing is cached, the broker and other tenants serve on, and a
    // well-behaved agent works.
    assert_eq!(key_status(&broker, "acme", "data"), 404);
    decrypt_ok(&broker, "beta", "local", &local, b"beta");
    let agent = setup.agent("acme-dc1");
    wait_agents(&broker, &["acme-dc1"], &|| agent.log());
    create_key(&broker, "acme", "data", false);
    let ciphertext = encrypt_ok(&broker, "acme", "data", b"acme");
    decrypt_ok(&broker, "acme", "data", &ciphertext, b"acme");
}

/// `examples/customer-agent/run`, as a user runs it (with the debug builds of this run).
#[test]
fn the_customer_agent_example_runs() {
    let out = Command::new(crate::support::repo_root().join("examples/customer-agent/run"))
        .env("PROFILE", "debug")
        .env("SKIP_BUILD", "1")
        .env("HEARTBEAT_MS", HEARTBEAT_MS.to_string())
        .env("BROKER_PORT", free_port().to_string())
        .env("AGENT_PORT", free_port().to_string())
        .env("KEYBROKER_BAO", crate::support::bao_bin())
        .env(
            "PATH",
            format!(
                "{}:{}",
                crate::support::bao_bin().parent().unwrap().display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("customer-agent example: OK"), "{stderr}");
    assert!(stderr.contains("customer key unavailable"), "{stderr}");
}

/// One gateway, two customers' agents: the one of `beta` going away cuts off `beta` (its
/// cached data key dropped), while `acme` keeps being served from its cache.
#[test]
fn one_tenant_losing_its_agent_leaves_the_other_tenants_of_the_instance_served() {
    let setup = Setup::new(&[("acme-dc1", &["acme"]), ("beta-dc1", &["beta"])]);
    let broker = setup.broker();
    let acme_agent = setup.agent("acme-dc1");
    let mut beta_agent = setup.agent_via("beta-dc1", setup.port, &setup.pki.ca, &["beta=data"]);
    wait_agents(&broker, &["acme-dc1", "beta-dc1"], &|| {
        format!("{}\n{}", acme_agent.log(), beta_agent.log())
    });
    let mut ciphertexts = Vec::new();
    for tenant in ["acme", "beta"] {
        create_key(&broker, tenant, "data", false);
        let ciphertext = encrypt_ok(&broker, tenant, "data", tenant.as_bytes());
        decrypt_ok(&broker, tenant, "data", &ciphertext, tenant.as_bytes());
        ciphertexts.push(ciphertext);
    }
    let decrypts = calls(&broker, "decrypt");
    beta_agent.kill9();
    // As in `outage_and_recovery`: the bound on when decrypts sent stop being served, a
    // generous deadline for seeing the 503.
    let limit = Duration::from_millis(3 * HEARTBEAT_MS);
    let took = time_until_status(
        &broker,
        "beta",
        "data",
        &ciphertexts[1],
        503,
        Duration::from_secs(30),
    );
    assert!(
        took <= limit,
        "a decrypt sent {took:?} after the kill was still served (limit {limit:?})"
    );
    decrypt_ok(&broker, "acme", "data", &ciphertexts[0], b"acme");
    assert_eq!(
        calls(&broker, "decrypt"),
        decrypts,
        "acme's data key stayed cached"
    );

    let _beta_agent = setup.agent_via("beta-dc1", setup.port, &setup.pki.ca, &["beta=data"]);
    time_until_status(
        &broker,
        "beta",
        "data",
        &ciphertexts[1],
        200,
        Duration::from_secs(20),
    );
    assert_eq!(calls(&broker, "decrypt") - decrypts, 1.0);
}
