//! A real, throwaway PostgreSQL server for tests: no mocks, no Docker.
//!
//! [`PgServer::start`] finds the server binaries (`initdb`, `pg_ctl`, `postgres`) on `PATH`
//! or under `/usr/lib/postgresql/*/bin` (the newest; `KEYBROKER_PG_BINDIR` overrides both),
//! runs `initdb` in a fresh temporary directory and starts `postgres` on a free loopback
//! port. Tests create one database each ([`PgServer::create_database`]) and connect with
//! the URL it returns; they can stop, restart or kill the server to test recovery. Dropping
//! the server stops it and deletes its directory.
//!
//! Tests run as root on CI, and PostgreSQL refuses to run as root: the harness then runs the
//! server binaries as `nobody` (the directory is handed to that user).
//!
//! Everything fails loudly: if PostgreSQL is missing or cannot start, the calling test
//! panics with the server's log — a test that needs Postgres never skips. `tests/run`
//! installs Debian's `postgresql` package when no server binaries are found.
//!
//! The API is synchronous (`std::process`), so plain tests and `#[tokio::test]`s can use it.

// A test harness: failing loudly, with the reason, is its job.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::{
    fs::OpenOptions,
    net::TcpListener,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

/// The database superuser `initdb` creates; URLs connect as this user (trust auth).
pub const USER: &str = "keybroker";

/// How long a starting (or recovering) server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running PostgreSQL server with its own data directory.
pub struct PgServer {
    bindir: PathBuf,
    /// Holds `data/` (the cluster), `postgres.log` and the Unix socket.
    dir: tempfile::TempDir,
    port: u16,
    /// The postmaster, while it runs.
    child: Option<Child>,
    /// `(uid, gid)` the server binaries run as when this process is root.
    run_as: Option<(u32, u32)>,
}

impl PgServer {
    /// Initialises a new cluster and starts it on a free port; panics (with the server log)
    /// if PostgreSQL is not installed or does not start.
    pub fn start() -> PgServer {
        let bindir = find_bindir();
        let dir = tempfile::Builder::new()
            .prefix("keybroker-pg-")
            .tempdir()
            .expect("create a temporary directory for PostgreSQL");
        let run_as = unprivileged_user();
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("hand the PostgreSQL directory to the unprivileged user");
        }
        let mut server = PgServer {
            bindir,
            dir,
            port: 0,
            child: None,
            run_as,
        };
        let data = server.data_dir();
        let initdb = server
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-A",
                "trust",
                "-U",
                USER,
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .output();
        check("initdb", &initdb, "");
        // Another process may take the free port before the server binds it: try a few.
        let mut failures = String::new();
        for _ in 0..5 {
            server.port = free_port();
            match server.spawn_and_wait(false) {
                Ok(()) => return server,
                Err(error) => failures.push_str(&format!("port {}: {error}\n", server.port)),
            }
        }
        panic!(
            "PostgreSQL did not start:\n{failures}--- server log ---\n{}",
            server.log()
        );
    }

    /// The TCP port the server listens on (127.0.0.1), the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The connection URL of database `db` (which [`PgServer::create_database`] creates).
    pub fn url_for(&self, db: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates an empty database and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        let output = self
            .command("createdb")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                USER,
                name,
            ])
            .output();
        check(&format!("createdb {name}"), &output, &self.log());
        self.url_for(name)
    }

    /// Stops the server (fast shutdown: open sessions are ended) and waits until it is down.
    /// Does nothing if it is not running.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let stopped = self
            .command("pg_ctl")
            .arg("stop")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "fast", "-w", "-t", "60"])
            .output();
        if !stopped.as_ref().is_ok_and(|o| o.status.success()) {
            let _ = child.kill();
        }
        child.wait().expect("wait for the stopped postmaster");
    }

    /// Starts the server again on the same port with the same data, stopping it first if it
    /// runs; waits until it accepts connections (after crash recovery, following
    /// [`PgServer::kill9`]).
    pub fn restart(&mut self) {
        self.stop();
        if let Err(error) = self.spawn_and_wait(true) {
            panic!(
                "PostgreSQL did not restart on port {}: {error}\n--- server log ---\n{}",
                self.port,
                self.log()
            );
        }
    }

    /// Kills the postmaster with SIGKILL (a crash: no shutdown checkpoint, its sessions are
    /// left to notice); [`PgServer::restart`] recovers.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            child.wait().expect("wait for the killed postmaster");
        }
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// A command for one of the server's programs, run as the unprivileged user if needed.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bindir.join(program));
        command.current_dir(self.dir.path()).stdin(Stdio::null());
        if let Some((uid, gid)) = self.run_as {
            // std drops the supplementary groups when root changes its uid.
            command.uid(uid).gid(gid);
        }
        command
    }

    /// Starts the postmaster and waits until it accepts connections. With `retry_exits`, a
    /// postmaster that exits at once is started again until the deadline (after a SIGKILL,
    /// the old sessions may still hold the shared memory for a moment).
    fn spawn_and_wait(&mut self, retry_exits: bool) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let log = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.log_path())
                .map_err(|e| format!("open the server log: {e}"))?;
            let log_err = log
                .try_clone()
                .map_err(|e| format!("open the server log: {e}"))?;
            let mut child = self
                .command("postgres")
                .arg("-D")
                .arg(self.data_dir())
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
                .arg("-k")
                .arg(self.dir.path())
                // fsync=off: a power loss could corrupt this throwaway cluster, which never
                // matters to a test and saves seconds per test. A process crash (kill9) is
                // still recovered from the WAL as usual.
                .args(["-c", "fsync=off"])
                .args(["-c", "shared_buffers=16MB", "-c", "max_connections=200"])
                .stdout(Stdio::from(log))
                .stderr(Stdio::from(log_err))
                .spawn()
                .map_err(|e| format!("run postgres: {e}"))?;
            let exited = loop {
                if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                    break status;
                }
                if self.is_ready() {
                    self.child = Some(child);
                    return Ok(());
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "not accepting connections after {} s",
                        START_TIMEOUT.as_secs()
                    ));
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            if !retry_exits || Instant::now() > deadline {
                return Err(format!("postgres exited at start ({exited})"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn is_ready(&self) -> bool {
        self.command("pg_isready")
            .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", USER, "-d", "postgres", "-t", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // Never panic here: this may run while a failing test unwinds.
        if let Some(mut child) = self.child.take() {
            let stopped = self
                .command("pg_ctl")
                .arg("stop")
                .arg("-D")
                .arg(self.data_dir())
                .args(["-m", "immediate", "-w", "-t", "10"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if !stopped.is_ok_and(|status| status.success()) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        // The temporary directory is removed when `dir` drops.
    }
}

impl std::fmt::Debug for PgServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgServer")
            .field("bindir", &self.bindir)
            .field("dir", &self.dir.path())
            .field("port", &self.port)
            .field("running", &self.child.is_some())
            .finish()
    }
}

/// Panics with the program's output (and the server log) unless it succeeded.
fn check(what: &str, output: &std::io::Result<Output>, log: &str) {
    match output {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!(
            "{what} failed ({}):\n{}{}\n--- server log ---\n{log}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        ),
        Err(error) => panic!("{what} could not run: {error}"),
    }
}

/// The directory holding `initdb`, `pg_ctl` and `postgres`.
fn find_bindir() -> PathBuf {
    let complete = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres", "pg_isready", "createdb"]
            .iter()
            .all(|program| dir.join(program).is_file())
    };
    if let Some(dir) = std::env::var_os("KEYBROKER_PG_BINDIR") {
        let dir = PathBuf::from(dir);
        assert!(
            complete(&dir),
            "KEYBROKER_PG_BINDIR={} lacks the PostgreSQL server programs",
            dir.display()
        );
        return dir;
    }
    // On PATH, `initdb` is often a link into the versioned directory (Debian's
    // /usr/bin/pg_* are wrappers; initdb is not among them): use the directory it points to.
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|dir| std::fs::canonicalize(dir.join("initdb")).ok())
        .filter_map(|initdb| initdb.parent().map(Path::to_path_buf))
        .find(|dir| complete(dir));
    if let Some(dir) = on_path {
        return dir;
    }
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = version_key(&entry.file_name().to_string_lossy())?;
            let bin = entry.path().join("bin");
            complete(&bin).then_some((version, bin))
        })
        .max();
    match newest {
        Some((_, dir)) => dir,
        None => panic!(
            "PostgreSQL server programs (initdb, pg_ctl, postgres) not found on PATH nor in \
             /usr/lib/postgresql/*/bin: install PostgreSQL (Debian: apt-get install postgresql; \
             tests/run does) or set KEYBROKER_PG_BINDIR"
        ),
    }
}

/// `"15"` → `[15]`, `"9.6"` → `[9, 6]`; `None` for other names.
fn version_key(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

/// As root, the uid and gid of `nobody` (PostgreSQL refuses to run as root).
fn unprivileged_user() -> Option<(u32, u32)> {
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let nobody = passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        match fields.as_slice() {
            ["nobody", _, uid, gid, ..] => Some((uid.parse().ok()?, gid.parse().ok()?)),
            _ => None,
        }
    });
    Some(nobody.unwrap_or((65534, 65534)))
}

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("find a free loopback port")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_creates_databases_restarts_and_cleans_up() {
        let mut server = PgServer::start();
        let url = server.create_database("one");
        assert_eq!(
            url,
            format!("postgres://keybroker@127.0.0.1:{}/one", server.port())
        );
        let port = server.port();
        server.restart();
        assert_eq!(server.port(), port);
        server.create_database("two");
        server.kill9();
        server.restart();
        server.create_database("three");
        let dir = server.dir.path().to_path_buf();
        drop(server);
        assert!(!dir.exists(), "the server's directory is removed");
        assert!(
            TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "the port is free again"
        );
    }

    #[test]
    fn versions_sort_numerically() {
        assert!(version_key("15") > version_key("9.6"));
        assert_eq!(version_key("main"), None);
    }
}
