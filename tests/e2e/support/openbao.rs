//! A real OpenBao dev server (`bao server -dev`, root token `root`) for known-answer and
//! differential tests: the same request to OpenBao and to keybroker, the answers compared.

use std::{
    fs,
    net::TcpListener,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::support;

/// A dev OpenBao, killed on drop.
pub(crate) struct OpenBao {
    child: Child,
    /// Its address, `http://127.0.0.1:<port>`.
    pub(crate) addr: String,
    dir: tempfile::TempDir,
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl OpenBao {
    pub(crate) fn start() -> OpenBao {
        // OpenBao also listens on port + 1 (cluster listener).
        let port = loop {
            let port = support::free_port();
            if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
                break port;
            }
        };
        let dir = support::private_dir();
        let log = fs::File::create(dir.path().join("bao.log")).unwrap();
        let child = Command::new(support::bao_bin())
            .args([
                "server",
                "-dev",
                "-dev-root-token-id=root",
                &format!("-dev-listen-address=127.0.0.1:{port}"),
            ])
            // The dev server stores its token in $HOME/.vault-token: keep it in our dir.
            .env("HOME", dir.path())
            .env_remove("BAO_ADDR")
            .env_remove("VAULT_ADDR")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start bao server -dev");
        let mut bao = OpenBao {
            child,
            addr: format!("http://127.0.0.1:{port}"),
            dir,
        };
        // Ready when `sys/health` answers 200 (initialised, unsealed, active). Starting is
        // a Python launcher, then the Go server initialising its dev store: a generous
        // deadline, since a loaded machine is slow at both.
        let started = Instant::now();
        let deadline = started + Duration::from_secs(60);
        loop {
            if let Some(status) = bao.child.try_wait().unwrap() {
                panic!("bao exited with {status}:\n{}", bao.log());
            }
            // Each try bounded too, so a server that accepts but never answers cannot keep
            // the test past its deadline.
            let out = support::curl(&[
                "-s",
                "-m",
                "10",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("{}/v1/sys/health", bao.addr),
            ]);
            if out.stdout == b"200" {
                return bao;
            }
            assert!(
                Instant::now() < deadline,
                "bao did not become ready within {:?}: {}/v1/sys/health last answered {} \
                 (000: no answer); its log:\n{}",
                started.elapsed(),
                bao.addr,
                String::from_utf8_lossy(&out.stdout),
                bao.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A dev server with a transit engine mounted at `transit/`, as keybroker's dev server
    /// has one: the peer of every transit known-answer test.
    pub(crate) fn with_transit() -> OpenBao {
        let bao = OpenBao::start();
        let mounted = bao.batch(&[(
            "POST",
            "sys/mounts/transit".into(),
            serde_json::json!({ "type": "transit" }),
        )]);
        assert_eq!(mounted[0].0, 204, "{mounted:?}\n{}", bao.log());
        bao
    }

    pub(crate) fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("bao.log")).unwrap_or_default()
    }

    /// Runs `bao` against this server with its root token.
    pub(crate) fn bao(&self, args: &[&str]) -> Output {
        support::bao_at(&self.addr, "root", args)
    }

    /// Runs `bao` against this server, asserting success; returns stdout.
    pub(crate) fn bao_ok(&self, args: &[&str]) -> String {
        support::bao_ok_at(&self.addr, "root", args)
    }

    /// One request with the root token: (status, JSON body or Null).
    pub(crate) fn request(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        self.batch(&[(method, path.to_owned(), body)])
            .pop()
            .unwrap()
    }

    /// One request with explicit headers (none added): (status, JSON body or Null).
    pub(crate) fn request_with(
        &self,
        method: &str,
        path: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let (status, body) =
            support::raw_at(&self.addr, method, path, Some(&body.to_string()), headers);
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    /// Sends many requests with the root token through one curl process (one kept-alive
    /// connection); returns each response's (status, JSON body or Null), in order.
    pub(crate) fn batch(&self, requests: &[(&str, String, Value)]) -> Vec<(u16, Value)> {
        let bodies = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = Vec::new();
        for (index, (method, path, body)) in requests.iter().enumerate() {
            let file = bodies.path().join(index.to_string());
            fs::write(&file, body.to_string()).unwrap();
            if index > 0 {
                args.push("--next".into());
            }
            args.extend([
                "-s".into(),
                "-X".into(),
                (*method).into(),
                "-H".into(),
                "X-Vault-Token: root".into(),
                "-H".into(),
                "Content-Type: application/json".into(),
                "--data-binary".into(),
                format!("@{}", file.display()),
                "-w".into(),
                "\n{\"curl_status\":%{http_code}}\n".into(),
                format!("{}/v1/{}", self.addr, path),
            ]);
        }
        let out = Command::new("curl").args(&args).output().unwrap();
        let mut responses = Vec::with_capacity(requests.len());
        let mut body = Value::Null;
        for value in serde_json::Deserializer::from_slice(&out.stdout).into_iter::<Value>() {
            let value =
                value.unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
            match value.get("curl_status").and_then(Value::as_u64) {
                Some(status) => responses.push((status as u16, std::mem::take(&mut body))),
                None => body = value,
            }
        }
        assert_eq!(
            responses.len(),
            requests.len(),
            "curl answered {} of {} requests: {}\n{}",
            responses.len(),
            requests.len(),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        responses
    }
}
