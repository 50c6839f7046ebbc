//! The file sink: JSON lines appended by one writer thread.
//!
//! Callers hand records to the writer over a bounded channel and wait for its answer under
//! a deadline. The writer takes whatever is queued (group commit), stamps each record with
//! its time and sequence, chains it, appends the batch with one `write`, syncs it, and only
//! then answers. Order in the file is the order of sequence numbers because only this
//! thread assigns them.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, UNIX_EPOCH},
};

use async_trait::async_trait;
use keybroker_core::{broker::sealed_secret, clock::Clock, seal::RootKey, store::Store};
use tokio::sync::{mpsc, oneshot, watch};

use super::{
    chain::{self, Keyed, MAC_LEN},
    chain_key_name, salt_name, AuditError, AuditRecord, AuditSink, DEFAULT_SINK,
};
use crate::config::AuditConfig;

/// Records waiting for the writer; past this, callers wait (within their deadline).
const QUEUE: usize = 8192;
/// Most records in one write and sync.
const MAX_BATCH: usize = 1024;
/// Longest line read back at start-up.
const MAX_LINE: u64 = 1 << 20;

/// How a file sink is set up.
#[derive(Clone, Debug)]
pub struct FileSinkSettings {
    /// Sink name: its salt, chain key and checkpoints are kept under it.
    pub name: String,
    /// The log file (created mode 0600; its directory must exist).
    pub path: PathBuf,
    /// Records between two checkpoints in the store.
    pub checkpoint_every: u64,
    /// How long `log` may take before it fails.
    pub write_timeout: Duration,
}

impl FileSinkSettings {
    /// The sink `file` at `path` with the default checkpoint interval (1000) and deadline (1 s).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            name: DEFAULT_SINK.to_owned(),
            path: path.into(),
            checkpoint_every: 1000,
            write_timeout: Duration::from_secs(1),
        }
    }

    /// The sink `file` as configured in `[audit]`.
    pub fn from_config(config: &AuditConfig) -> Self {
        Self {
            name: DEFAULT_SINK.to_owned(),
            path: config.file.clone(),
            checkpoint_every: config.checkpoint_every,
            write_timeout: config.write_timeout,
        }
    }
}

/// The chain position: last sequence written and its MAC (empty before the first line).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Head {
    sequence: u64,
    chain: Vec<u8>,
}

enum Command {
    Write {
        record: Box<AuditRecord>,
        done: oneshot::Sender<Result<(), AuditError>>,
    },
    Flush {
        done: oneshot::Sender<Result<Head, AuditError>>,
    },
}

/// An audit sink writing JSON lines to a file.
pub struct FileSink {
    name: String,
    path: PathBuf,
    salt: Keyed,
    write_timeout: Duration,
    commands: mpsc::Sender<Command>,
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for FileSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSink")
            .field("name", &self.name)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl FileSink {
    /// Opens (or creates) the file, continues the chain from its last line, and starts the
    /// writer. Refuses to start if the last line is incomplete or not ours, or if the file
    /// ends before the store's last checkpoint: the chain is never silently forked.
    pub async fn start(
        settings: FileSinkSettings,
        store: Arc<dyn Store>,
        root_key: &RootKey,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, AuditError> {
        let name = settings.name.clone();
        let keys_error = |source| AuditError::Keys {
            sink: name.clone(),
            source,
        };
        let salt = sealed_secret(store.as_ref(), root_key, &salt_name(&name))
            .await
            .map_err(keys_error)?;
        let chain_key = sealed_secret(store.as_ref(), root_key, &chain_key_name(&name))
            .await
            .map_err(keys_error)?;
        let (Some(salt), Some(chain_key)) =
            (Keyed::new(salt.as_ref()), Keyed::new(chain_key.as_ref()))
        else {
            return Err(keys_error(keybroker_core::Error::internal(
                "audit key refused by HMAC",
            )));
        };
        let checkpoint = store
            .latest_audit_checkpoint(&name)
            .await
            .map_err(|source| AuditError::Store {
                sink: name.clone(),
                source,
            })?;
        // Start-up only: a few small reads, so blocking here is fine.
        let (file, head) = open_log(&settings.path, &chain_key)?;
        if let Some((sequence, chain)) = checkpoint {
            if sequence > head.sequence {
                return Err(AuditError::Truncated {
                    path: settings.path.clone(),
                    last_sequence: head.sequence,
                    checkpoint: sequence,
                });
            }
            if sequence == head.sequence && chain != head.chain {
                return Err(AuditError::CorruptTail {
                    path: settings.path.clone(),
                    reason: format!(
                        "the line at sequence {sequence} differs from the store's checkpoint"
                    ),
                });
            }
        }
        Self::launch(settings, store, salt, chain_key, clock, file, head)
    }

    fn launch(
        settings: FileSinkSettings,
        store: Arc<dyn Store>,
        salt: Keyed,
        chain_key: Keyed,
        clock: Arc<dyn Clock>,
        file: File,
        head: Head,
    ) -> Result<Self, AuditError> {
        let (commands, queue) = mpsc::channel(QUEUE);
        let (checkpoints, checkpoint_queue) = watch::channel(head.clone());
        let good_len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let writer = Writer {
            name: settings.name.clone(),
            file,
            chain_key,
            clock,
            last_checkpoint: head.sequence,
            head,
            good_len,
            broken: false,
            checkpoint_every: settings.checkpoint_every.max(1),
            checkpoints,
        };
        std::thread::Builder::new()
            .name(format!("audit-{}", settings.name))
            .spawn(move || writer.run(queue))
            .map_err(|source| AuditError::Start {
                sink: settings.name.clone(),
                source,
            })?;
        tokio::spawn(record_checkpoints(
            settings.name.clone(),
            store.clone(),
            checkpoint_queue,
        ));
        Ok(Self {
            name: settings.name,
            path: settings.path,
            salt,
            write_timeout: settings.write_timeout,
            commands,
            store,
        })
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn closed(&self) -> AuditError {
        AuditError::Closed {
            sink: self.name.clone(),
        }
    }

    fn timeout(&self) -> AuditError {
        AuditError::Timeout {
            sink: self.name.clone(),
            after: self.write_timeout,
        }
    }
}

#[async_trait]
impl AuditSink for FileSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn hash(&self, input: &str) -> String {
        self.salt.hash_string(input)
    }

    async fn log(&self, record: AuditRecord) -> Result<(), AuditError> {
        let (done, answer) = oneshot::channel();
        let command = Command::Write {
            record: Box::new(record),
            done,
        };
        let attempt = async {
            self.commands
                .send(command)
                .await
                .map_err(|_| self.closed())?;
            answer.await.map_err(|_| self.closed())?
        };
        tokio::time::timeout(self.write_timeout, attempt)
            .await
            .map_err(|_| self.timeout())?
    }

    async fn flush(&self) -> Result<(), AuditError> {
        let (done, answer) = oneshot::channel();
        let attempt = async {
            self.commands
                .send(Command::Flush { done })
                .await
                .map_err(|_| self.closed())?;
            answer.await.map_err(|_| self.closed())?
        };
        let head = tokio::time::timeout(self.write_timeout, attempt)
            .await
            .map_err(|_| self.timeout())??;
        if head.sequence > 0 {
            self.store
                .put_audit_checkpoint(&self.name, head.sequence, &head.chain)
                .await
                .map_err(|source| AuditError::Store {
                    sink: self.name.clone(),
                    source,
                })?;
        }
        Ok(())
    }
}

/// Stores the heads the writer publishes. A checkpoint is an integrity aid, not part of
/// the write: failing to store one is logged and retried with the next one.
async fn record_checkpoints(name: String, store: Arc<dyn Store>, mut heads: watch::Receiver<Head>) {
    while heads.changed().await.is_ok() {
        let head = heads.borrow_and_update().clone();
        if let Err(error) = store
            .put_audit_checkpoint(&name, head.sequence, &head.chain)
            .await
        {
            tracing::warn!(sink = %name, %error, "cannot store the audit checkpoint");
        }
    }
}

/// Opens the log for appending and reads where its chain stands.
fn open_log(path: &Path, chain_key: &Keyed) -> Result<(File, Head), AuditError> {
    let open_error = |source| AuditError::Open {
        path: path.to_owned(),
        source,
    };
    // Checked before opening: opening a FIFO would block, a directory would fail obscurely.
    match std::fs::metadata(path) {
        Ok(metadata) if !metadata.is_file() => {
            return Err(AuditError::NotAFile {
                path: path.to_owned(),
            })
        }
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(open_error(error)),
    }
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(open_error)?;
    let metadata = file.metadata().map_err(open_error)?;
    // As Vault's file device: the log is the owner's alone, whatever it was created with.
    if metadata.permissions().mode() & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(open_error)?;
    }
    let corrupt = |reason: &str| AuditError::CorruptTail {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let head = match last_line(&file, metadata.len()).map_err(open_error)? {
        LastLine::Empty => Head::default(),
        LastLine::Incomplete => {
            return Err(corrupt(
                "the last line is incomplete (no newline); a write was interrupted — \
                 inspect the file and run `keybroker audit verify`",
            ))
        }
        LastLine::TooLong => return Err(corrupt("the last line is longer than 1 MiB")),
        LastLine::Line(line) => {
            let parsed = chain::parse_line(&line)
                .map_err(|reason| corrupt(&format!("the last line is malformed: {reason}")))?;
            if !parsed.mac_matches(chain_key) {
                return Err(corrupt(
                    "the last line's chain MAC does not match this sink's key",
                ));
            }
            Head {
                sequence: parsed.sequence,
                chain: parsed.chain.to_vec(),
            }
        }
    };
    Ok((file, head))
}

enum LastLine {
    Empty,
    Incomplete,
    TooLong,
    Line(Vec<u8>),
}

/// Reads the last line (without its newline) by growing windows from the end.
fn last_line(file: &File, len: u64) -> io::Result<LastLine> {
    if len == 0 {
        return Ok(LastLine::Empty);
    }
    let mut window = len.min(4096);
    loop {
        let start = len - window;
        let mut buffer = vec![0u8; usize::try_from(window).unwrap_or(usize::MAX)];
        file.read_exact_at(&mut buffer, start)?;
        let Some(content) = buffer.strip_suffix(b"\n") else {
            return Ok(LastLine::Incomplete);
        };
        if let Some(newline) = content.iter().rposition(|&byte| byte == b'\n') {
            return Ok(LastLine::Line(content[newline + 1..].to_vec()));
        }
        if start == 0 {
            return Ok(LastLine::Line(content.to_vec()));
        }
        if window >= MAX_LINE {
            return Ok(LastLine::TooLong);
        }
        window = (window * 2).min(len);
    }
}

fn rfc3339(unix_seconds: i64) -> String {
    let seconds = u64::try_from(unix_seconds).unwrap_or(0);
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(seconds)).to_string()
}

/// The writer thread's state; only it touches the file.
struct Writer {
    name: String,
    file: File,
    chain_key: Keyed,
    clock: Arc<dyn Clock>,
    head: Head,
    /// File length up to the last durable line, to cut off a failed batch.
    good_len: u64,
    broken: bool,
    checkpoint_every: u64,
    last_checkpoint: u64,
    checkpoints: watch::Sender<Head>,
}

impl Writer {
    fn run(mut self, mut queue: mpsc::Receiver<Command>) {
        let mut batch = Vec::new();
        while let Some(first) = queue.blocking_recv() {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(command) => batch.push(command),
                    Err(_) => break,
                }
            }
            self.process(&mut batch);
        }
    }

    fn broken(&self) -> AuditError {
        AuditError::Broken {
            sink: self.name.clone(),
        }
    }

    fn process(&mut self, batch: &mut Vec<Command>) {
        let before = self.head.clone();
        let time = rfc3339(self.clock.now_unix());
        let mut lines = Vec::new();
        let mut written = Vec::new();
        let mut flushes = Vec::new();
        for command in batch.drain(..) {
            match command {
                Command::Write { mut record, done } => {
                    if self.broken {
                        let _ = done.send(Err(self.broken()));
                        continue;
                    }
                    let sequence = self.head.sequence + 1;
                    record.stamp(&time, sequence);
                    match serde_json::to_vec(&record) {
                        Ok(body) => {
                            let mac: [u8; MAC_LEN] = self.chain_key.chain(&self.head.chain, &body);
                            chain::encode_line(&mut lines, &body, &self.head.chain, &mac);
                            self.head = Head {
                                sequence,
                                chain: mac.to_vec(),
                            };
                            written.push(done);
                        }
                        Err(source) => {
                            let _ = done.send(Err(AuditError::Encode {
                                sink: self.name.clone(),
                                source,
                            }));
                        }
                    }
                }
                Command::Flush { done } => flushes.push(done),
            }
        }
        if !lines.is_empty() {
            match self.append(&lines) {
                Ok(()) => {
                    self.good_len += lines.len() as u64;
                    for done in written {
                        let _ = done.send(Ok(()));
                    }
                    if self.head.sequence - self.last_checkpoint >= self.checkpoint_every {
                        self.last_checkpoint = self.head.sequence;
                        self.checkpoints.send_replace(self.head.clone());
                    }
                }
                Err(error) => {
                    tracing::error!(sink = %self.name, %error, "audit write failed");
                    self.head = before;
                    self.recover();
                    for done in written {
                        let _ = done.send(Err(AuditError::Write {
                            sink: self.name.clone(),
                            source: io::Error::new(error.kind(), error.to_string()),
                        }));
                    }
                }
            }
        }
        for done in flushes {
            let answer = if self.broken {
                Err(self.broken())
            } else {
                Ok(self.head.clone())
            };
            let _ = done.send(answer);
        }
    }

    /// Appends and syncs a batch. Syncing per batch rather than per record: a caller is
    /// answered only once its line is on disk (so a served operation's record survives a
    /// crash), while concurrent requests share one `fdatasync` instead of queueing for one
    /// each.
    fn append(&mut self, lines: &[u8]) -> io::Result<()> {
        self.file.write_all(lines)?;
        if let Err(error) = self.file.sync_data() {
            // After a failed sync the kernel may have dropped the dirty pages; nothing
            // written from here on could be trusted to be durable.
            self.broken = true;
            return Err(error);
        }
        Ok(())
    }

    /// Cuts off whatever part of a failed batch reached the file, so the next line follows
    /// the last good one. If that fails the sink refuses everything from now on.
    fn recover(&mut self) {
        if let Err(error) = self.file.set_len(self.good_len) {
            tracing::error!(sink = %self.name, %error, "cannot cut off a failed audit write");
            self.broken = true;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Instant;

    use keybroker_core::{clock::SystemClock, TenantId};
    use keybroker_store::SqliteStore;
    use zeroize::Zeroizing;

    use super::*;
    use crate::audit::{existing_chain_key, AuditAuth};

    pub(crate) struct Fixture {
        pub dir: tempfile::TempDir,
        pub store: Arc<dyn Store>,
        pub root_key: RootKey,
    }

    impl Fixture {
        pub(crate) async fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let store: Arc<dyn Store> =
                Arc::new(SqliteStore::open(&dir.path().join("t.db")).await.unwrap());
            Self {
                dir,
                store,
                root_key: RootKey::new(Zeroizing::new([7u8; 32])),
            }
        }

        pub(crate) fn log_path(&self) -> PathBuf {
            self.dir.path().join("audit.log")
        }

        /// A sink on the fixture's log whose writes never reach their deadline: each record
        /// is made durable (`fdatasync`) on the real disk, which a loaded machine can hold up
        /// past the default 1 s. Tests of the deadline set it with [`Fixture::sink_with`].
        pub(crate) async fn sink(&self) -> Result<FileSink, AuditError> {
            self.sink_with(FileSinkSettings {
                write_timeout: Duration::from_secs(60),
                ..FileSinkSettings::new(self.log_path())
            })
            .await
        }

        pub(crate) async fn sink_with(
            &self,
            settings: FileSinkSettings,
        ) -> Result<FileSink, AuditError> {
            FileSink::start(
                settings,
                self.store.clone(),
                &self.root_key,
                Arc::new(SystemClock),
            )
            .await
        }

        pub(crate) async fn chain_key(&self) -> Zeroizing<Vec<u8>> {
            existing_chain_key(self.store.as_ref(), &self.root_key, DEFAULT_SINK)
                .await
                .unwrap()
                .unwrap()
        }

        pub(crate) async fn checkpoint(&self) -> Option<(u64, Vec<u8>)> {
            self.store
                .latest_audit_checkpoint(DEFAULT_SINK)
                .await
                .unwrap()
        }

        pub(crate) fn lines(&self) -> Vec<serde_json::Value> {
            std::fs::read_to_string(self.log_path())
                .unwrap()
                .lines()
                .map(|line| serde_json::from_str(line).unwrap())
                .collect()
        }
    }

    pub(crate) fn record(sink: &dyn AuditSink, number: usize) -> AuditRecord {
        AuditRecord::request(
            format!("request-{number}"),
            "update",
            format!("transit/encrypt/k{number}"),
        )
        .with_remote_address("127.0.0.1")
        .with_tenant("acme", TenantId::ROOT)
        .with_auth(
            AuditAuth::builder(sink)
                .client_token("kbs.token")
                .accessor("accessor")
                .policies(["default", "app-enc"])
                .token_type("service")
                .build(),
        )
    }

    /// Logs `count` request/response pairs.
    pub(crate) async fn log_pairs(sink: &FileSink, count: usize) {
        for number in 0..count {
            let request = record(sink, number);
            sink.log(request.clone()).await.unwrap();
            sink.log(request.to_response(200, Duration::from_micros(1234), None))
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn lines_are_sequenced_chained_and_private() {
        let fixture = Fixture::new().await;
        let sink = fixture.sink().await.unwrap();
        log_pairs(&sink, 2).await;
        let lines = fixture.lines();
        assert_eq!(lines.len(), 4);
        for (index, line) in lines.iter().enumerate() {
            assert_eq!(line["sequence"], index as u64 + 1);
            assert_eq!(line["tenant"], "acme");
            assert!(line["time"].as_str().unwrap().ends_with('Z'));
        }
        assert_eq!(lines[0]["type"], "request");
        assert_eq!(lines[1]["type"], "response");
        assert_eq!(lines[1]["response"]["status"], 200);
        assert_eq!(lines[1]["response"]["latency_ms"], 1.234);
        assert_eq!(lines[0]["prev"], "");
        assert_eq!(lines[1]["prev"], lines[0]["chain"]);
        assert_eq!(lines[0]["auth"]["client_token"], sink.hash("kbs.token"));
        let mode = std::fs::metadata(fixture.log_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[tokio::test]
    async fn a_restart_continues_the_sequence_and_chain() {
        let fixture = Fixture::new().await;
        let sink = fixture.sink().await.unwrap();
        let salted = sink.hash("x");
        log_pairs(&sink, 2).await;
        sink.flush().await.unwrap();
        drop(sink);
        let head = fixture.lines()[3]["chain"].clone();
        assert_eq!(
            fixture.checkpoint().await.map(|(sequence, _)| sequence),
            Some(4)
        );

        let sink = fixture.sink().await.unwrap();
        assert_eq!(sink.hash("x"), salted, "the salt is kept per sink");
        log_pairs(&sink, 1).await;
        let lines = fixture.lines();
        assert_eq!(lines.len(), 6);
        assert_eq!(lines[4]["sequence"], 5);
        assert_eq!(lines[4]["prev"], head);
        let report = crate::audit::verify(
            &fixture.log_path(),
            &fixture.chain_key().await,
            fixture.checkpoint().await,
        )
        .unwrap();
        assert_eq!(report.last_sequence, 6);
    }

    #[tokio::test]
    async fn checkpoints_are_stored_every_n_records() {
        let fixture = Fixture::new().await;
        let settings = FileSinkSettings {
            checkpoint_every: 3,
            ..FileSinkSettings::new(fixture.log_path())
        };
        let sink = fixture.sink_with(settings).await.unwrap();
        log_pairs(&sink, 2).await;
        // Stored by a background task: wait for it (bounded).
        let started = Instant::now();
        let checkpoint = loop {
            if let Some(found) = fixture.checkpoint().await {
                break found;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "no checkpoint");
            tokio::task::yield_now().await;
        };
        assert_eq!(checkpoint.0, 3);
        let line = &fixture.lines()[2];
        assert_eq!(line["chain"], hex::encode(&checkpoint.1));
    }

    #[tokio::test]
    async fn a_corrupt_last_line_refuses_start_naming_the_file() {
        let fixture = Fixture::new().await;
        let sink = fixture.sink().await.unwrap();
        log_pairs(&sink, 1).await;
        drop(sink);
        let path = fixture.log_path();
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"type\":\"requ").unwrap();
        let error = fixture.sink().await.unwrap_err().to_string();
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(error.contains("incomplete"), "{error}");

        // A complete line that is not ours (chain not under this key).
        let text = std::fs::read_to_string(&path).unwrap();
        let cut = text.rfind('\n').unwrap() + 1;
        let last = text[..cut - 1].rsplit('\n').next().unwrap().to_owned();
        let forged = last.replace("k0", "kX");
        std::fs::write(&path, format!("{}{forged}\n", &text[..cut])).unwrap();
        let error = fixture.sink().await.unwrap_err().to_string();
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(error.contains("MAC"), "{error}");
    }

    #[tokio::test]
    async fn a_log_shorter_than_its_checkpoint_refuses_start() {
        let fixture = Fixture::new().await;
        let sink = fixture.sink().await.unwrap();
        log_pairs(&sink, 2).await;
        sink.flush().await.unwrap();
        drop(sink);
        std::fs::write(fixture.log_path(), b"").unwrap();
        let error = fixture.sink().await.unwrap_err();
        assert!(
            matches!(
                error,
                AuditError::Truncated {
                    last_sequence: 0,
                    checkpoint: 4,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_directory_or_missing_parent_is_refused() {
        let fixture = Fixture::new().await;
        let error = fixture
            .sink_with(FileSinkSettings::new(fixture.dir.path()))
            .await
            .unwrap_err();
        assert!(matches!(error, AuditError::NotAFile { .. }), "{error}");
        let error = fixture
            .sink_with(FileSinkSettings::new(
                fixture.dir.path().join("no/such.log"),
            ))
            .await
            .unwrap_err();
        assert!(matches!(error, AuditError::Open { .. }), "{error}");
    }

    /// A FIFO whose buffer is full and whose reader never reads: a write that blocks for
    /// good (permission bits would not stop root).
    fn blocked_fifo(dir: &Path) -> (File, File) {
        let path = dir.join("fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        let reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .unwrap();
        let mut filler = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .unwrap();
        let chunk = [b'x'; 4096];
        loop {
            match filler.write(&chunk) {
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) => panic!("{error}"),
            }
        }
        let writer = OpenOptions::new().write(true).open(&path).unwrap();
        (reader, writer)
    }

    #[tokio::test]
    async fn a_blocked_write_fails_within_the_deadline() {
        let fixture = Fixture::new().await;
        let (reader, writer) = blocked_fifo(fixture.dir.path());
        let deadline = Duration::from_millis(300);
        let settings = FileSinkSettings {
            write_timeout: deadline,
            ..FileSinkSettings::new(fixture.dir.path().join("fifo"))
        };
        let salt = Keyed::new(&[1; 32]).unwrap();
        let key = Keyed::new(&[2; 32]).unwrap();
        let sink = FileSink::launch(
            settings,
            fixture.store.clone(),
            salt,
            key,
            Arc::new(SystemClock),
            writer,
            Head::default(),
        )
        .unwrap();
        for attempt in 0..2 {
            let started = Instant::now();
            let error = sink.log(record(&sink, attempt)).await.unwrap_err();
            let waited = started.elapsed();
            assert!(
                matches!(error, AuditError::Timeout { .. }),
                "{attempt}: {error}"
            );
            assert!(waited >= deadline, "{waited:?}");
            // Nothing reads the FIFO, so only the deadline ends the write; the loose bound
            // (a loaded machine answers late) tells that from a write left waiting.
            assert!(waited < Duration::from_secs(20), "{waited:?}");
        }
        assert!(matches!(
            sink.flush().await,
            Err(AuditError::Timeout { .. })
        ));
        // Unblock the writer thread (EPIPE) so it ends with the test.
        drop(reader);
    }

    #[tokio::test]
    async fn the_sink_refuses_to_start_on_a_fifo() {
        let fixture = Fixture::new().await;
        let (_reader, _writer) = blocked_fifo(fixture.dir.path());
        let error = fixture
            .sink_with(FileSinkSettings::new(fixture.dir.path().join("fifo")))
            .await
            .unwrap_err();
        assert!(matches!(error, AuditError::NotAFile { .. }), "{error}");
    }

    #[tokio::test]
    async fn a_failed_write_is_reported_at_once() {
        // /dev/full: every write fails with ENOSPC, as on a full disk.
        let Ok(full) = OpenOptions::new().append(true).open("/dev/full") else {
            return;
        };
        let fixture = Fixture::new().await;
        let sink = FileSink::launch(
            FileSinkSettings::new("/dev/full"),
            fixture.store.clone(),
            Keyed::new(&[1; 32]).unwrap(),
            Keyed::new(&[2; 32]).unwrap(),
            Arc::new(SystemClock),
            full,
            Head::default(),
        )
        .unwrap();
        let started = Instant::now();
        let error = sink.log(record(&sink, 0)).await.unwrap_err();
        // A full disk fails the write at once; the bound, loose so that a loaded machine
        // cannot break it, only tells that failure from a write that waits for space.
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
        assert!(
            matches!(error, AuditError::Write { .. } | AuditError::Broken { .. }),
            "{error}"
        );
    }
}
