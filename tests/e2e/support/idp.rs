//! A real OpenID provider for the JWT/OIDC auth tests: `tests/idp/server.mjs` (npm
//! `oidc-provider`) over HTTPS on loopback, with a throwaway CA made by the `openssl` CLI.
//!
//! ```ignore
//! let idp = Idp::start();
//! let token = idp.token("app-web", "app-web-secret", "https://broker.example/");
//! idp.rotate(); // a new RS256 key signs from now on; the old one stays published
//! idp.retire(); // only the newest RS256 key (and the ES256 key) stay published
//!
//! // The authorization-code flow, with a person at the provider's login and consent pages
//! // (accounts alice / alice-password and bob / bob-password by default):
//! let idp = Idp::start_with_clients(&json!([auth_code_client(
//!     "people", "people-secret", &["http://localhost:8250/oidc/callback"],
//! )]));
//! let done = idp.person_login(&auth_url, "alice", "alice-password");
//! // done.redirect: "http://localhost:8250/oidc/callback?code=…&state=…&iss=…", not fetched;
//! // "" when the provider refused the password (done.pages then shows `invalid login`).
//! ```

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{mpsc, Arc, Mutex},
    time::{Duration, Instant},
};

use base64::Engine;
use serde_json::Value;

use super::{native_stacks, private_dir, process_state, repo_root};

/// How long the provider may take to print `ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `tests/idp/server.mjs`, killed on drop.
pub(crate) struct Idp {
    /// `https://127.0.0.1:<port>`, exactly as in discovery and in the tokens' `iss`.
    pub issuer: String,
    /// The throwaway CA that signed the provider's certificate (PEM file).
    pub ca_pem: PathBuf,
    pub port: u16,
    /// The provider's state: `jwks.json` (private keys) and `clients.json` if given.
    pub state_dir: PathBuf,
    child: Option<Child>,
    output: Arc<Mutex<String>>,
    cert: PathBuf,
    key: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Idp {
    /// Starts the provider with its default clients: `app-web` / `app-web-secret` (groups
    /// `["payments","readers"]`, team `web`) and `app-batch` / `app-batch-secret` (groups
    /// `["batch"]`, team `data`).
    pub(crate) fn start() -> Self {
        Self::launch(None)
    }

    /// Starts the provider with these clients (a JSON array; see `tests/idp/README.md` for the
    /// fields, e.g. `extra_claims`, `access_token_ttl`, `access_token_alg`; `auth_code_client`
    /// makes an authorization-code entry). The accounts stay the defaults: `alice` /
    /// `alice-password` (`alice@example.com`, groups `["admins","readers"]`, name `Alice`) and
    /// `bob` / `bob-password` (`bob@example.com`, `["readers"]`, `Bob`).
    pub(crate) fn start_with_clients(clients: &Value) -> Self {
        Self::launch(Some(clients))
    }

    fn launch(clients: Option<&Value>) -> Self {
        let dir = private_dir();
        let state_dir = dir.path().join("state");
        std::fs::create_dir(&state_dir).unwrap();
        if let Some(clients) = clients {
            std::fs::write(state_dir.join("clients.json"), clients.to_string()).unwrap();
        }
        let ca_pem = dir.path().join("ca.pem");
        let cert = dir.path().join("server.pem");
        let key = dir.path().join("server.key");
        make_certificates(dir.path(), &ca_pem, &cert, &key);
        let mut idp = Self {
            issuer: String::new(),
            ca_pem,
            port: 0,
            state_dir,
            child: None,
            output: Arc::new(Mutex::new(String::new())),
            cert,
            key,
            _dir: dir,
        };
        idp.spawn();
        idp
    }

    /// Starts the process on `self.port` (0 at first: the provider picks a free port and
    /// names it in its `ready` line, so no port is raced for) and waits for that line. A
    /// provider that is not ready in time fails the test with what it printed, the kernel's
    /// view of the process (stopped, blocked or busy) and Node's diagnostic report.
    fn spawn(&mut self) {
        let idp_dir = repo_root().join("tests/idp");
        assert!(
            idp_dir.join("node_modules/oidc-provider").exists(),
            "{}/node_modules is missing: tests/run installs it (cd tests/idp && npm ci)",
            idp_dir.display()
        );
        let reports = self.state_dir.join("reports");
        let _ = std::fs::remove_dir_all(&reports);
        std::fs::create_dir_all(&reports).unwrap();
        let mut child = Command::new("node")
            .arg("--report-on-signal")
            .arg("--report-directory")
            .arg(&reports)
            .arg(idp_dir.join("server.mjs"))
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--cert")
            .arg(&self.cert)
            .arg("--key")
            .arg(&self.key)
            .arg("--state")
            .arg(&self.state_dir)
            .arg("--exit-on-stdin-close")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start node tests/idp/server.mjs (is Node.js installed?)");
        let (ready_sender, ready) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let output = self.output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(issuer) = line.strip_prefix("ready ") {
                    let _ = ready_sender.send(issuer.to_owned());
                }
                push_line(&output, &line);
            }
        });
        let stderr = child.stderr.take().unwrap();
        let output = self.output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                push_line(&output, &line);
            }
        });
        let pid = child.id();
        self.child = Some(child);
        let started = Instant::now();
        match ready.recv_timeout(READY_TIMEOUT) {
            Ok(issuer) => self.ready(issuer),
            Err(_) => {
                let exited = self
                    .child
                    .as_mut()
                    .and_then(|child| child.try_wait().ok().flatten());
                // Read before the report's signal changes it.
                let state = process_state(pid);
                let stacks = native_stacks(pid);
                panic!(
                    "the OpenID provider (node tests/idp/server.mjs, pid {pid}) did not print \
                     `ready <issuer>` on stdout within {:?}\nexit status: {exited:?}\n\
                     process state:\n{state}native stacks:\n{stacks}output:\n{}\n{}",
                    started.elapsed(),
                    self.output(),
                    diagnostic_report(pid, &reports)
                )
            }
        }
    }

    /// Records the issuer and port of a provider that printed `ready <issuer>`.
    fn ready(&mut self, issuer: String) {
        let port = issuer
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse().ok())
            .unwrap_or_else(|| panic!("no port in the ready line's issuer {issuer:?}"));
        if self.port != 0 {
            assert_eq!(port, self.port, "the restarted provider moved");
        }
        self.port = port;
        self.issuer = issuer;
    }

    /// Stops the provider (the port closes; tests see it unreachable).
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a stopped provider again on the same port, with the same keys and clients.
    pub(crate) fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Everything the provider printed so far (stdout and stderr).
    pub(crate) fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// The published JWKS URL (also discovery's `jwks_uri`).
    pub(crate) fn jwks_url(&self) -> String {
        format!("{}/jwks", self.issuer)
    }

    /// The CA certificate's PEM text, as Vault's `oidc_discovery_ca_pem` / `jwks_ca_pem` take it.
    pub(crate) fn ca_pem_text(&self) -> String {
        std::fs::read_to_string(&self.ca_pem).unwrap()
    }

    /// `/.well-known/openid-configuration`.
    pub(crate) fn discovery(&self) -> Value {
        let (status, body) = self.call(&["/.well-known/openid-configuration"]);
        assert_eq!(status, 200, "discovery: {body}");
        body
    }

    /// The published JWKS.
    pub(crate) fn jwks(&self) -> Value {
        let (status, body) = self.call(&["/jwks"]);
        assert_eq!(status, 200, "jwks: {body}");
        body
    }

    /// The `kid`s of the published JWKS, in order.
    pub(crate) fn published_kids(&self) -> Vec<String> {
        kids(&self.jwks()["keys"])
    }

    /// A client-credentials token request for `audience` (the `resource` parameter);
    /// returns (status, JSON body), failures included.
    pub(crate) fn request_token(
        &self,
        client_id: &str,
        secret: &str,
        audience: &str,
    ) -> (u16, Value) {
        self.call(&[
            "/token",
            "--data-urlencode",
            "grant_type=client_credentials",
            "--data-urlencode",
            &format!("client_id={client_id}"),
            "--data-urlencode",
            &format!("client_secret={secret}"),
            "--data-urlencode",
            &format!("resource={audience}"),
        ])
    }

    /// A JWT access token for `client_id` whose `aud` is `audience`.
    pub(crate) fn token(&self, client_id: &str, secret: &str, audience: &str) -> String {
        let (status, body) = self.request_token(client_id, secret, audience);
        assert_eq!(status, 200, "token for {client_id}: {body}");
        body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access_token in {body}"))
            .to_owned()
    }

    /// Plays a person in a browser through the authorization-code flow that `auth_url` (the
    /// provider's authorization endpoint with the client's parameters) starts: follows the
    /// provider's redirects one by one (never automatically, and only while they stay on the
    /// provider's origin), answers the login form with `login` and `password` and the consent
    /// form, and stops at the first redirect that leaves the provider: the client's
    /// `redirect_uri` with `code` and `state` (or with `error`). That redirect is returned, not
    /// fetched. When the provider refuses the password (it answers the login form again, with
    /// `invalid login`), stops there and returns an empty `redirect`. Cookies live in a jar of
    /// this call's own, so every call is a new browser. Panics, with the pages seen, on
    /// anything else (an error page, a loop).
    pub(crate) fn person_login(&self, auth_url: &str, login: &str, password: &str) -> PersonLogin {
        assert!(
            self.on_provider(auth_url),
            "{auth_url} is not on the provider {}",
            self.issuer
        );
        let jar_dir = private_dir();
        let jar = jar_dir.path().join("cookies.txt");
        let mut pages = Vec::new();
        let mut url = auth_url.to_owned();
        let mut form: Option<Vec<(&str, &str)>> = None;
        let mut logged_in_at: Option<String> = None;
        for _ in 0..MAX_BROWSER_STEPS {
            let posted_login = form.as_ref().is_some_and(|fields| !fields.is_empty());
            let (status, body, location) = self.browse(&jar, &url, form.take());
            pages.push((status, body.clone()));
            if let Some(location) = location {
                if !self.on_provider(&location) {
                    return PersonLogin {
                        redirect: location,
                        pages,
                    };
                }
                url = location;
                continue;
            }
            let action = form_action(&body).map(|action| self.absolute(&action));
            match action {
                Some(action) if status == 200 && action.ends_with("/login") => {
                    if posted_login && logged_in_at.as_deref() == Some(action.as_str()) {
                        // The login form again: the password was refused.
                        return PersonLogin {
                            redirect: String::new(),
                            pages,
                        };
                    }
                    logged_in_at = Some(action.clone());
                    form = Some(vec![("login", login), ("password", password)]);
                    url = action;
                }
                Some(action) if status == 200 && action.ends_with("/confirm") => {
                    form = Some(Vec::new());
                    url = action;
                }
                _ => panic!(
                    "the provider answered {url} with neither a redirect nor a login or consent \
                     form: status {status}\npages seen: {pages:#?}\nprovider output:\n{}",
                    self.output()
                ),
            }
        }
        panic!(
            "no redirect away from the provider after {MAX_BROWSER_STEPS} steps\npages seen: \
             {pages:#?}\nprovider output:\n{}",
            self.output()
        )
    }

    /// Whether `url` is on the provider's origin.
    fn on_provider(&self, url: &str) -> bool {
        url == self.issuer
            || url
                .strip_prefix(&self.issuer)
                .is_some_and(|rest| rest.starts_with(['/', '?']))
    }

    /// A form action (a path on the provider, or already absolute) as an absolute URL.
    fn absolute(&self, action: &str) -> String {
        if action.starts_with('/') {
            format!("{}{action}", self.issuer)
        } else {
            action.to_owned()
        }
    }

    /// One browser request, redirects not followed: GET, or a form POST when `form` is given
    /// (empty: a POST with an empty body). Returns the status, the body and, for a redirect,
    /// its target as an absolute URL.
    fn browse(
        &self,
        jar: &Path,
        url: &str,
        form: Option<Vec<(&str, &str)>>,
    ) -> (u16, String, Option<String>) {
        let mut command = Command::new("curl");
        command
            .arg("-sS")
            .arg("--max-time")
            .arg("60")
            .arg("--cacert")
            .arg(&self.ca_pem)
            .arg("-b")
            .arg(jar)
            .arg("-c")
            .arg(jar)
            .args(["-w", "\n%{http_code}\n%{redirect_url}"]);
        if let Some(fields) = &form {
            if fields.is_empty() {
                command.args(["--data", ""]);
            }
            for (name, value) in fields {
                command
                    .arg("--data-urlencode")
                    .arg(format!("{name}={value}"));
            }
        }
        let out = command.arg(url).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let mut tail = text.rsplitn(3, '\n');
        let (Some(redirect), Some(code), Some(body)) = (tail.next(), tail.next(), tail.next())
        else {
            panic!(
                "curl {url} printed no status: {}\nprovider output:\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.output()
            );
        };
        let status: u16 = code.trim().parse().unwrap_or(0);
        assert_ne!(
            status,
            0,
            "curl {url} failed: {}\nprovider output:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.output()
        );
        let redirect = redirect.trim();
        let location =
            ((300..400).contains(&status) && !redirect.is_empty()).then(|| redirect.to_owned());
        (status, body.to_owned(), location)
    }

    /// Adds a new RS256 key that signs from now on; the previous keys stay published.
    /// Returns the published kids, newest first.
    pub(crate) fn rotate(&self) -> Vec<String> {
        self.admin("rotate")
    }

    /// Unpublishes every RS256 key but the newest. Returns the published kids.
    pub(crate) fn retire(&self) -> Vec<String> {
        self.admin("retire")
    }

    fn admin(&self, action: &str) -> Vec<String> {
        let (status, body) = self.call(&[&format!("/admin/{action}"), "-X", "POST"]);
        assert_eq!(status, 200, "{action}: {body}");
        kids(&body["kids"])
    }

    /// curl against the provider: the path first, then extra curl arguments.
    fn call(&self, args: &[&str]) -> (u16, Value) {
        let (path, extra) = args.split_first().unwrap();
        let out = Command::new("curl")
            .arg("-s")
            .arg("--cacert")
            .arg(&self.ca_pem)
            .args(["-w", "\n%{http_code}"])
            .args(extra)
            .arg(format!("{}{path}", self.issuer))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        let status = code.trim().parse().unwrap_or(0);
        assert_ne!(
            status,
            0,
            "curl {path} failed: {}\nprovider output:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.output()
        );
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }
}

/// How many requests `person_login` makes at most before it gives up.
const MAX_BROWSER_STEPS: usize = 20;

/// What a person's login at the provider ended with (`Idp::person_login`).
#[derive(Debug, Clone)]
pub(crate) struct PersonLogin {
    /// The first redirect away from the provider (the client's `redirect_uri` with `code` and
    /// `state`, or with `error`), not fetched; empty if the provider refused the password.
    pub redirect: String,
    /// The status and body of every answer seen, in order, for diagnostics.
    pub pages: Vec<(u16, String)>,
}

/// A `clients.json` entry for an authorization-code client (`client_secret_basic`, response
/// type `code`, PKCE S256 required by the provider) that may redirect to `redirect_uris`.
/// Pass it, in an array with any other clients, to `Idp::start_with_clients`.
pub(crate) fn auth_code_client(client_id: &str, secret: &str, redirect_uris: &[&str]) -> Value {
    serde_json::json!({
        "client_id": client_id,
        "client_secret": secret,
        "redirect_uris": redirect_uris,
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "client_secret_basic",
    })
}

/// The `action` of the first form in an HTML page.
fn form_action(html: &str) -> Option<String> {
    let form = &html[html.find("<form")?..];
    let form = &form[..form.find('>')?];
    let start = form.find("action=\"")? + "action=\"".len();
    let action = &form[start..];
    Some(action[..action.find('"')?].replace("&amp;", "&"))
}

/// A JWT's header and payload, decoded without any verification.
pub(crate) fn decode_unverified(token: &str) -> (Value, Value) {
    let part = |text: &str| -> Value {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .unwrap_or_else(|e| panic!("JWT part {text:?} is not base64url: {e}"));
        serde_json::from_slice(&bytes).unwrap()
    };
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        panic!("not a compact JWS: {token}");
    };
    (part(header), part(payload))
}

fn kids(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|entry| {
            let kid = entry.get("kid").unwrap_or(entry);
            kid.as_str().unwrap().to_owned()
        })
        .collect()
}

/// Node's diagnostic report of a provider that did not get ready (SIGUSR2 with
/// `--report-on-signal`): its JavaScript and native stacks and event loop handles, or why
/// there is none (never its environment variables).
fn diagnostic_report(pid: u32, reports: &Path) -> String {
    let signalled = Command::new("kill")
        .args(["-USR2", &pid.to_string()])
        .status()
        .is_ok_and(|status| status.success());
    if !signalled {
        return "no diagnostic report: the process could not be signalled".to_owned();
    }
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        let report = std::fs::read_dir(reports)
            .ok()
            .and_then(|mut entries| entries.next())
            .and_then(|entry| entry.ok())
            .and_then(|entry| std::fs::read_to_string(entry.path()).ok())
            .and_then(|text| serde_json::from_str::<Value>(&text).ok());
        if let Some(report) = report {
            let native: Vec<&Value> = report["nativeStack"]
                .as_array()
                .map(|frames| frames.iter().take(30).collect())
                .unwrap_or_default();
            return format!(
                "diagnostic report: javascriptStack {:#}\nnativeStack {native:#?}\nlibuv handles \
                 {:#}",
                report["javascriptStack"], report["libuv"]
            );
        }
    }
    "no diagnostic report within 5 s".to_owned()
}

fn push_line(output: &Mutex<String>, line: &str) {
    let mut output = output.lock().unwrap();
    output.push_str(line);
    output.push('\n');
}

/// A CA (P-256, two days) and a server certificate it signs for `IP:127.0.0.1`: a real chain,
/// so the broker's verifier sees the same shape as in production.
fn make_certificates(dir: &Path, ca_pem: &Path, cert: &Path, key: &Path) {
    let ca_key = dir.join("ca.key");
    let csr = dir.join("server.csr");
    let extensions = dir.join("server.ext");
    std::fs::write(
        &extensions,
        "basicConstraints = critical, CA:FALSE\n\
         keyUsage = critical, digitalSignature\n\
         extendedKeyUsage = serverAuth\n\
         subjectAltName = IP:127.0.0.1\n",
    )
    .unwrap();
    let new_key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        Command::new("openssl")
            .args(["req", "-x509", "-days", "2"])
            .args(new_key)
            .args(["-subj", "/CN=keybroker test IdP CA"])
            .args(["-addext", "basicConstraints = critical, CA:TRUE"])
            .args(["-addext", "keyUsage = critical, keyCertSign, cRLSign"])
            .arg("-keyout")
            .arg(&ca_key)
            .arg("-out")
            .arg(ca_pem),
    );
    openssl(
        Command::new("openssl")
            .args(["req", "-new"])
            .args(new_key)
            .args(["-subj", "/CN=127.0.0.1"])
            .arg("-keyout")
            .arg(key)
            .arg("-out")
            .arg(&csr),
    );
    openssl(
        Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-set_serial", "1"])
            .arg("-in")
            .arg(&csr)
            .arg("-CA")
            .arg(ca_pem)
            .arg("-CAkey")
            .arg(&ca_key)
            .arg("-extfile")
            .arg(&extensions)
            .arg("-out")
            .arg(cert),
    );
}

fn openssl(command: &mut Command) {
    let out = command.output().expect("run openssl");
    assert!(
        out.status.success(),
        "{command:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
