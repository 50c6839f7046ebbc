//! nginx (Debian's package) as the API gateway in front of a broker, rendered from the
//! example's own `examples/gateway/nginx.conf.template`, so the test checks the config that
//! users copy. Runs in the foreground with a private prefix directory; stopped on drop.
//!
//! ```ignore
//! let gateway = Nginx::gateway(broker.port);
//! let (status, body) = gateway.request("POST", "api/transit/encrypt/app-orders", Some(&body), &headers);
//! ```

use std::{
    io::{BufRead, BufReader},
    net::TcpStream,
    os::unix::fs::PermissionsExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{free_port, repo_root};

/// How long nginx may take to listen.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running nginx master process (and its worker), stopped on drop.
pub(crate) struct Nginx {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    pub port: u16,
    child: Child,
    output: Arc<Mutex<String>>,
    _prefix: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: the master stops its workers, which would otherwise outlive
        // it holding the port.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The nginx binary: on PATH, else Debian's `/usr/sbin/nginx` (not on a user's PATH).
pub(crate) fn nginx_bin() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("nginx"))
            .find(|candidate| candidate.is_file())
    });
    let path = on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/nginx"));
    assert!(
        path.is_file(),
        "nginx is missing: tests/run installs it (apt-get install nginx)"
    );
    path
}

impl Nginx {
    /// Starts the example gateway (`/api/` → the broker's `/v1/` in tenant `acme`) in front
    /// of the broker listening on `127.0.0.1:broker_port`.
    pub(crate) fn gateway(broker_port: u16) -> Self {
        let template = repo_root().join("examples/gateway/nginx.conf.template");
        let template = std::fs::read_to_string(&template)
            .unwrap_or_else(|e| panic!("{}: {e}", template.display()));
        let port = free_port();
        let config = template
            .replace("@LISTEN@", &format!("127.0.0.1:{port}"))
            .replace("@BROKER@", &format!("127.0.0.1:{broker_port}"));
        let prefix = tempfile::tempdir().unwrap();
        // Started as root, nginx runs its worker as `nobody`, which must reach the buffer
        // directories under the prefix. Nothing secret lives there.
        std::fs::set_permissions(prefix.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir(prefix.path().join("tmp")).unwrap();
        let config_path = prefix.path().join("nginx.conf");
        std::fs::write(&config_path, config).unwrap();

        let mut child = Command::new(nginx_bin())
            .arg("-p")
            .arg(prefix.path())
            .arg("-c")
            .arg(&config_path)
            .args(["-e", "stderr", "-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nginx");
        let output = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut output = output.lock().unwrap();
                    output.push_str(&line);
                    output.push('\n');
                }
            });
        }
        let mut nginx = Self {
            url: format!("http://127.0.0.1:{port}"),
            port,
            child,
            output,
            _prefix: prefix,
        };
        nginx.wait_ready();
        nginx
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("nginx exited with {status}:\n{}", self.output());
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "nginx did not listen within {READY_TIMEOUT:?}:\n{}",
            self.output()
        );
    }

    /// Everything nginx printed so far (its error log goes to stderr).
    pub(crate) fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// A request to the gateway: method, path (e.g. `api/transit/encrypt/k`), optional JSON
    /// body, headers; returns (status, response headers, body text).
    pub(crate) fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> (u16, String, String) {
        let head = tempfile::NamedTempFile::new().unwrap();
        let mut command = Command::new("curl");
        command
            .args(["-s", "--path-as-is", "-X", method, "-w", "\n%{http_code}"])
            .arg("-D")
            .arg(head.path());
        for (name, value) in headers {
            command.arg("-H").arg(format!("{name}: {value}"));
        }
        if let Some(body) = body {
            command
                .args(["-H", "Content-Type: application/json", "--data-binary"])
                .arg(body.to_string());
        }
        let out = command
            .arg(format!("{}/{path}", self.url))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        let status = code.trim().parse().unwrap_or(0);
        assert_ne!(
            status,
            0,
            "curl {method} {path} failed: {}\nnginx:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.output()
        );
        let head = std::fs::read_to_string(head.path()).unwrap();
        (status, head, body.to_owned())
    }

    /// Like [`Nginx::raw`], with the body parsed as JSON (Null if it is not).
    pub(crate) fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let (status, _, text) = self.raw(method, path, body, headers);
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}
