//! The gateway through the plugin ABI, with the real `keybroker-agent` binary connected over
//! TLS: the backend conformance suite, then the availability reports that drive eviction
//! when the agent goes away and comes back.
//!
//! The agent runs as a process, not linked in: it links the pkcs11 plugin (for customer
//! HSMs), and two plugin libraries in one executable export the same root-module symbol.
//! Build it first (`cargo build -p keybroker-agent`; `tests/run` builds the workspace).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use keybroker_agent_protocol::AgentIdentity;
use keybroker_plugin_abi::{key_type, BackendBox};
use keybroker_plugin_conformance::{BindableKey, Options, RecordingHost};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Writes `ca.pem`, `gateway.crt` and `gateway.key` (for 127.0.0.1) into `dir`.
fn certificates(dir: &Path) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("gateway.crt"), cert.pem()).unwrap();
    write_private(&dir.join("gateway.key"), &key.serialize_pem());
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `keybroker-agent` binary beside this test's executable (target/<profile>/).
fn agent_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("keybroker-agent");
    assert!(
        path.exists(),
        "{} is missing: cargo build -p keybroker-agent first (tests/run builds the workspace)",
        path.display()
    );
    path
}

/// The agent process, killed when dropped; its log (stderr) kept for failure messages.
struct RunningAgent {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl RunningAgent {
    fn start(config: &Path) -> Self {
        let mut child = Command::new(agent_binary())
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (stderr, sink) = (child.stderr.take().unwrap(), log.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut sink = sink.lock().unwrap();
                sink.push_str(&line);
                sink.push('\n');
            }
        });
        Self { child, log }
    }

    /// Whether the agent still runs, and what it logged so far.
    fn report(&mut self) -> String {
        let state = match self.child.try_wait() {
            Ok(None) => "running".to_owned(),
            Ok(Some(status)) => format!("exited ({status})"),
            Err(error) => format!("in an unknown state ({error})"),
        };
        format!(
            "the agent is {state}; its log:\n{}",
            self.log.lock().unwrap()
        )
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it holds; past a generous deadline, fails with `what` it waited for
/// and `context` (the agent's state and log, the gateway's reports).
fn wait_until(what: &str, mut context: impl FnMut() -> String, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out (15 s) waiting until {what}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn healthy(backend: &BackendBox) -> bool {
    backend.health().is_ok()
}

#[test]
fn passes_the_conformance_suite_and_reports_the_agent_going_and_coming_back() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    certificates(dir);
    let secret = rand::random::<[u8; 32]>();
    write_private(&dir.join("secret"), &STANDARD.encode(secret));
    write_private(
        &dir.join("data.key"),
        &STANDARD.encode(rand::random::<[u8; 32]>()),
    );
    let pin = AgentIdentity::from_secret(&secret).unwrap().pin();
    let port = free_port();
    let options = Options {
        asymmetric_key_types: Vec::new(),
        bindable_keys: vec![BindableKey {
            backend_key: "data".to_owned(),
            key_type: key_type::AES256_GCM96.to_owned(),
        }],
        ..Options::default()
    };

    let gateway_config = serde_json::json!({
        "listen": format!("127.0.0.1:{port}"),
        "tls_cert_file": dir.join("gateway.crt"),
        "tls_key_file": dir.join("gateway.key"),
        "default_key": "data",
        "heartbeat_interval_ms": 200,
        "agents": [{"id": "dc1", "pin": pin, "tenants": ["tenant-a", "tenant-b"]}],
    });
    let host = RecordingHost::default();
    let backend = keybroker_plugin_abi::into_ffi(
        keybroker_plugin_remote_agent::new_backend(
            &gateway_config.to_string(),
            host.clone().into_box(),
        )
        .unwrap(),
    );
    // As the host does before a tenant's first call.
    backend.name_tenant(options.tenant_a.as_str().into(), "tenant-a".into());
    backend.name_tenant(options.tenant_b.as_str().into(), "tenant-b".into());
    assert!(!healthy(&backend), "no agent yet");

    let agent_config = dir.join("agent.toml");
    std::fs::write(
        &agent_config,
        format!(
            "agent_id = \"dc1\"\nbroker = \"wss://127.0.0.1:{port}\"\nbroker_ca = \"ca.pem\"\n\
             secret_file = \"secret\"\nrate_limit = {{ per_second = 100000, burst = 100000 }}\n\
             [[keys]]\nname = \"data\"\nfile = \"data.key\"\n\
             [[allow]]\ntenant = \"tenant-a\"\nkeys = [\"*\"]\n"
        ),
    )
    .unwrap();
    let mut agent = RunningAgent::start(&agent_config);
    wait_until(
        "the agent is connected",
        || format!("{}\nthe host heard:\n{:#?}", agent.report(), host.lines()),
        || healthy(&backend),
    );

    keybroker_plugin_conformance::run(&backend, &options);
    // Agents hold AES keys only: every signing type is refused, by name.
    for key_type in key_type::ASYMMETRIC {
        keybroker_plugin_conformance::check_refuses_key_type(&backend, &options, key_type);
    }
    // Keys stay with the agents: no private key leaves or enters through the plugin.
    keybroker_plugin_conformance::check_no_private_key_transfer(&backend, &options);

    let status: serde_json::Value =
        serde_json::from_str(backend.status().unwrap().as_str()).unwrap();
    assert_eq!(status["agents"][0]["id"], "dc1", "{status}");
    assert_eq!(status["agents"][0]["tenants"][0], "tenant-a", "{status}");

    // The agent goes away: the plugin tells the host at once; it comes back: again.
    drop(agent);
    wait_until(
        "the gateway notices",
        || format!("the host heard:\n{:#?}", host.lines()),
        || !healthy(&backend),
    );
    let mut agent = RunningAgent::start(&agent_config);
    wait_until(
        "the agent is back",
        || format!("{}\nthe host heard:\n{:#?}", agent.report(), host.lines()),
        || healthy(&backend),
    );
    let lines = host.lines();
    let reports: Vec<&String> = lines.iter().filter(|l| l.starts_with("instance")).collect();
    assert_eq!(reports.len(), 4, "{lines:#?}");
    for (report, available) in reports.iter().zip([false, true, false, true]) {
        assert!(
            report.starts_with(&format!("instance available={available}")),
            "{lines:#?}"
        );
    }
    assert!(
        reports[2].contains("customer key unavailable"),
        "{lines:#?}"
    );
}
