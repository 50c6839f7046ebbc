//! The audit log (ARCHITECTURE.md §8): one JSON line per request and per response, fail closed.
//!
//! - **What is written**: [`AuditRecord`] — identity (tenant, hashed token and accessor,
//!   policies, role, hashed secret_id accessor), path, operation, status, latency. Never a
//!   request or response body. Credentials are HMAC-SHA256'd under a per-sink salt
//!   (`hmac-sha256:<hex>`, as Vault writes them); [`AuditSink::hash`] gives the same form,
//!   which is what `sys/audit-hash` answers.
//! - **Chain**: every line carries `prev` (the previous line's MAC) and `chain` =
//!   HMAC-SHA256(chain key, prev ‖ record bytes), the chain key being a per-sink secret
//!   sealed under the root key. Every `checkpoint_every` records and on [`AuditSink::flush`]
//!   the sink stores (sequence, head) in the store, so [`verify`] detects an edited line, a
//!   deleted line, a truncated tail and a chain recomputed without the key.
//! - **Fail closed**: [`AuditSink::log`] returns within the sink's deadline, `Ok` only once
//!   the line is durable; on `Err` the caller refuses the operation with 503.
//!
//! `keybroker audit verify FILE --config CONFIG` checks a file offline.
//!
//! ```text
//! let request = AuditRecord::request(request_id, "update", "transit/encrypt/orders")
//!     .with_remote_address(client)
//!     .with_tenant(&tenant.name, tenant.id)
//!     .with_auth(AuditAuth::builder(sink.as_ref()).client_token(token).accessor(&accessor).build());
//! sink.log(request.clone()).await?; // Err → 503, the operation does not run
//! let outcome = run().await;
//! sink.log(request.to_response(200, started.elapsed(), None)).await?;
//! ```

mod chain;
mod file;
mod record;
mod verify;

use std::{path::PathBuf, time::Duration};

use async_trait::async_trait;
use keybroker_core::{seal::RootKey, store::Store, store::StoreError};
use zeroize::Zeroizing;

pub use file::{FileSink, FileSinkSettings};
pub use record::{AuditAuth, AuditRecord, AuditRequest, AuditResponse, AuthBuilder, RecordKind};
pub use verify::{verify, VerifyError, VerifyReport};

/// Name of the file sink unless configured otherwise (Vault's file device is `file/`).
pub const DEFAULT_SINK: &str = "file";

/// Where an audit record goes.
#[async_trait]
pub trait AuditSink: Send + Sync + std::fmt::Debug {
    /// The sink's name; its salt, chain key and checkpoints are kept under it.
    fn name(&self) -> &str;

    /// `hmac-sha256:<hex>` of `input` under this sink's salt: the form every hashed field
    /// is written in, and what `sys/audit-hash` answers.
    fn hash(&self, input: &str) -> String;

    /// Writes one record; `Ok` once it is durable. Fails (never hangs) past the sink's
    /// deadline; the caller then refuses the operation with 503. A record whose call timed
    /// out may still be written later, so a log may hold records of refused operations,
    /// never the reverse.
    async fn log(&self, record: AuditRecord) -> Result<(), AuditError>;

    /// Waits until every record logged so far is durable and stores a checkpoint of the
    /// chain head. Call it at shutdown.
    async fn flush(&self) -> Result<(), AuditError>;
}

/// Why auditing failed. Messages name the sink or file, never a record's content.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The audit file could not be opened or created (the parent directory must exist).
    #[error("cannot open audit file {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The path exists but is not a regular file.
    #[error("audit file {path} is not a regular file")]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// The file's last line cannot be continued; the sink refuses to fork the chain.
    #[error("audit file {path} cannot be continued: {reason}")]
    CorruptTail {
        /// The file.
        path: PathBuf,
        /// What is wrong with the last line.
        reason: String,
    },
    /// The file ends before the last checkpoint in the store: records were removed.
    #[error(
        "audit file {path} ends at sequence {last_sequence} but the store has a checkpoint \
         at sequence {checkpoint}: the log was truncated or replaced"
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// The last sequence in the file (0 if empty).
        last_sequence: u64,
        /// The checkpoint's sequence.
        checkpoint: u64,
    },
    /// The salt or chain key could not be read or generated under the root key.
    #[error("cannot obtain the audit keys of sink {sink}")]
    Keys {
        /// The sink.
        sink: String,
        /// The cause.
        #[source]
        source: keybroker_core::Error,
    },
    /// The store could not read or write a checkpoint.
    #[error("audit checkpoint of sink {sink}")]
    Store {
        /// The sink.
        sink: String,
        /// The cause.
        #[source]
        source: StoreError,
    },
    /// The writer thread could not be started.
    #[error("cannot start the writer of audit sink {sink}")]
    Start {
        /// The sink.
        sink: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The record was not durable within the deadline.
    #[error("audit sink {sink} did not complete the write within {after:?}")]
    Timeout {
        /// The sink.
        sink: String,
        /// The deadline.
        after: Duration,
    },
    /// Writing or syncing the file failed; the record is not in the log.
    #[error("audit sink {sink} cannot write")]
    Write {
        /// The sink.
        sink: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An earlier failure left the file in a state the sink could not repair; it refuses
    /// every record until restarted.
    #[error("audit sink {sink} is broken by an earlier write failure; restart required")]
    Broken {
        /// The sink.
        sink: String,
    },
    /// The record could not be serialised (a bug).
    #[error("audit sink {sink} cannot encode a record")]
    Encode {
        /// The sink.
        sink: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The writer has stopped.
    #[error("audit sink {sink} is closed")]
    Closed {
        /// The sink.
        sink: String,
    },
}

fn salt_name(sink: &str) -> String {
    format!("audit-salt/{sink}")
}

fn chain_key_name(sink: &str) -> String {
    format!("audit-chain/{sink}")
}

/// The chain key of `sink` if the store has one, without creating it (for verification).
pub async fn existing_chain_key(
    store: &dyn Store,
    root_key: &RootKey,
    sink: &str,
) -> Result<Option<Zeroizing<Vec<u8>>>, AuditError> {
    let name = chain_key_name(sink);
    let keys_error = |source| AuditError::Keys {
        sink: sink.to_owned(),
        source,
    };
    let Some(sealed) = store
        .get_meta(&name)
        .await
        .map_err(|error| keys_error(error.into()))?
    else {
        return Ok(None);
    };
    root_key
        .unseal(&name, &sealed)
        .map(Some)
        .map_err(keys_error)
}
