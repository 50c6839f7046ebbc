//! The `keybroker-agent` binary: flags, exit codes, `pin`, `genkey`, and a SIGTERM exit.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use keybroker_agent_protocol::AgentIdentity;

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_keybroker-agent"))
}

fn run(arguments: &[&str]) -> Output {
    agent().args(arguments).output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A directory with a secret, a key and a CA file (any content: the flags are checked first).
fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in ["secret", "data.key"] {
        let output = run(&["genkey", dir.path().join(name).to_str().unwrap()]);
        assert!(output.status.success(), "{}", stderr(&output));
    }
    std::fs::write(dir.path().join("ca.pem"), "not a certificate").unwrap();
    dir
}

fn flags(dir: &Path) -> Vec<String> {
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    [
        "--broker",
        "wss://127.0.0.1:9",
        "--broker-ca",
        &path("ca.pem"),
        "--agent-id",
        "acme-dc1",
        "--secret-file",
        &path("secret"),
        "--key-file",
        &format!("data={}", path("data.key")),
        "--allow",
        "acme=data",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// `flags(dir)` with `flag`'s value replaced (or the flag appended).
fn flags_with(dir: &Path, flag: &str, value: &str) -> Vec<String> {
    let mut arguments = flags(dir);
    match arguments.iter().position(|argument| argument == flag) {
        Some(index) => arguments[index + 1] = value.to_owned(),
        None => arguments.extend([flag.to_owned(), value.to_owned()]),
    }
    arguments
}

#[test]
fn bad_flags_exit_2_with_a_message_naming_the_flag() {
    let dir = setup();
    let cases = [
        (
            flags_with(dir.path(), "--broker", "ws://127.0.0.1:9"),
            "--broker",
        ),
        (
            flags_with(dir.path(), "--agent-id", "acme dc1"),
            "--agent-id",
        ),
        (
            flags_with(dir.path(), "--allow", "acme=nope"),
            "--allow acme=nope",
        ),
        (
            flags_with(dir.path(), "--rate-limit", "fast"),
            "--rate-limit",
        ),
        (
            flags_with(dir.path(), "--heartbeat-interval", "soon"),
            "--heartbeat-interval",
        ),
        (flags_with(dir.path(), "--config", "agent.toml"), "--config"),
        (
            flags_with(dir.path(), "--secret-file", "/nonexistent/secret"),
            "/nonexistent/secret",
        ),
        // The CA file is read at startup: garbage there is a configuration error too.
        (flags(dir.path()), "broker_ca"),
        (vec!["--unknown".to_owned()], "--unknown"),
        (Vec::new(), "--agent-id"),
    ];
    for (arguments, expected) in cases {
        let output = agent().args(&arguments).output().unwrap();
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{arguments:?}: {message}");
        assert!(message.contains(expected), "{arguments:?}: {message}");
    }
}

#[test]
fn pin_prints_the_pin_of_the_secret() {
    let dir = setup();
    let secret_file = dir.path().join("secret");
    let text = std::fs::read_to_string(&secret_file).unwrap();
    let secret = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .unwrap();
    let pin = AgentIdentity::from_secret(&secret).unwrap().pin();

    let output = run(&[
        "pin",
        "--agent-id",
        "acme-dc1",
        "--secret-file",
        secret_file.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = String::from_utf8(output.stdout).unwrap();
    assert!(printed.contains("agent_id = \"acme-dc1\""), "{printed}");
    assert!(printed.contains(&format!("pin = \"{pin}\"")), "{printed}");
    assert!(
        !printed.contains(text.trim()),
        "the secret is never printed"
    );

    // The same from a config file.
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        "agent_id = \"acme-dc1\"\nbroker = \"wss://127.0.0.1:9\"\nbroker_ca = \"ca.pem\"\n\
         secret_file = \"secret\"\n[[keys]]\nname = \"data\"\nfile = \"data.key\"\n\
         [[allow]]\ntenant = \"acme\"\nkeys = [\"*\"]\n",
    )
    .unwrap();
    let output = run(&["pin", "--config", config.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(String::from_utf8(output.stdout).unwrap().contains(&pin));

    let output = run(&["pin", "--agent-id", "acme-dc1"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("--secret-file"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn genkey_writes_mode_600_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.key");
    let output = run(&["genkey", path.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let written = std::fs::read_to_string(&path).unwrap();
    let key = base64::engine::general_purpose::STANDARD
        .decode(written.trim())
        .unwrap();
    assert_eq!(key.len(), 32);

    let output = run(&["genkey", "--secret", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("already exists"),
        "{}",
        stderr(&output)
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), written);
}

#[test]
fn the_agent_logs_what_it_serves_retries_and_exits_0_on_sigterm() {
    let dir = setup();
    // A real CA certificate, so startup succeeds; nothing listens on the broker's port.
    let ca = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.cert.pem()).unwrap();
    let mut child = agent()
        .args(flags_with(dir.path(), "--reconnect-max-delay", "200ms"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The log, read as the agent writes it.
    let log = Arc::new(Mutex::new(String::new()));
    let reader = {
        let (stderr, log) = (child.stderr.take().unwrap(), log.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        })
    };
    let log_text = || log.lock().unwrap().clone();

    // SIGTERM only once the log shows the agent retrying, twice: its SIGTERM handler is
    // installed by a task its single-threaded runtime first runs while the first retry
    // waits, so by the second retry a SIGTERM is handled (exit 0), not fatal. How soon that
    // comes is the machine's speed (a process start, two refused connections 100 to 200 ms
    // apart): a generous deadline.
    let deadline = Instant::now() + Duration::from_secs(60);
    while log_text().matches("retrying in").count() < 2 {
        if let Some(exit) = child.try_wait().unwrap() {
            reader.join().unwrap();
            panic!(
                "the agent exited ({exit}) before retrying twice; its log:\n{}",
                log_text()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the agent's log showed no second \"retrying in\" within 60 s; its log so far:\n{}",
            log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // Exiting is the agent's to do at once; only a loaded machine makes it slow.
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            reader.join().unwrap();
            panic!(
                "the agent did not exit within 30 s of SIGTERM; its log:\n{}",
                log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The agent is gone, so its stderr ends: the log is complete.
    reader.join().unwrap();
    let log = log_text();
    assert_eq!(exit.code(), Some(0), "{log}");
    assert!(log.contains("serving 1 keys for tenants acme"), "{log}");
    assert!(log.contains("cannot reach the broker"), "{log}");
    assert!(log.contains("retrying in"), "{log}");
    assert!(log.contains("signal received"), "{log}");
}
