//! Offline verification of an audit file against its chain key and latest checkpoint.
//!
//! Each line must follow the previous one (sequence + 1, `prev` = previous `chain`) and
//! carry the right MAC; the file must reach the checkpoint's sequence with the
//! checkpoint's head. Editing a line breaks its MAC, deleting one breaks the sequence,
//! cutting the tail falls short of the checkpoint, and a chain recomputed without the key
//! fails at the first line.

use std::{
    fs::File,
    io::{self, BufRead, BufReader},
    path::{Path, PathBuf},
};

use super::chain::{self, Keyed};

/// What a clean verification found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Lines in the file.
    pub records: u64,
    /// The last sequence number (0 for an empty file).
    pub last_sequence: u64,
    /// The checkpoint sequence that was matched, if a checkpoint was given.
    pub checkpoint: Option<u64>,
}

/// What is wrong with an audit file. Line numbers count from 1.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The chain key was refused.
    #[error("the chain key is unusable")]
    Key,
    /// A line is not an audit record (or the file ends mid-line).
    #[error("line {line}: malformed: {reason}")]
    Malformed {
        /// The line.
        line: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A line is missing before this one (or the sequence was altered).
    #[error("line {line}: sequence {found} where {expected} was expected: a line was deleted")]
    SequenceGap {
        /// The line.
        line: u64,
        /// The sequence that should be here.
        expected: u64,
        /// The sequence found.
        found: u64,
    },
    /// The line does not chain to the previous one.
    #[error("line {line}: prev does not match the previous line's chain: a line was removed or replaced")]
    PrevMismatch {
        /// The line.
        line: u64,
    },
    /// The line's MAC is wrong: edited, or the chain was computed without the key.
    #[error("line {line}: chain MAC mismatch: the line was edited or the chain was recomputed without the key")]
    MacMismatch {
        /// The line.
        line: u64,
    },
    /// The file ends before the checkpoint.
    #[error("the file ends at sequence {last_sequence} but the checkpoint is at sequence {checkpoint}: the tail was truncated")]
    Truncated {
        /// The file's last sequence.
        last_sequence: u64,
        /// The checkpoint's sequence.
        checkpoint: u64,
    },
    /// The line at the checkpoint's sequence is not the one checkpointed.
    #[error("line {line}: sequence {sequence} does not match the checkpoint: the log was replaced from here")]
    CheckpointMismatch {
        /// The line.
        line: u64,
        /// The checkpoint's sequence.
        sequence: u64,
    },
}

impl VerifyError {
    /// The line the problem was found at, if it is about one line.
    pub fn line(&self) -> Option<u64> {
        match self {
            Self::Malformed { line, .. }
            | Self::SequenceGap { line, .. }
            | Self::PrevMismatch { line }
            | Self::MacMismatch { line }
            | Self::CheckpointMismatch { line, .. } => Some(*line),
            _ => None,
        }
    }
}

/// Verifies `file` under `chain_key`, and against `checkpoint` (sequence, head) if given.
pub fn verify(
    file: &Path,
    chain_key: &[u8],
    checkpoint: Option<(u64, Vec<u8>)>,
) -> Result<VerifyReport, VerifyError> {
    let key = Keyed::new(chain_key).ok_or(VerifyError::Key)?;
    let read_error = |source| VerifyError::Read {
        path: file.to_owned(),
        source,
    };
    let mut reader = BufReader::new(File::open(file).map_err(read_error)?);
    // A checkpoint at 0 says nothing (none is ever stored for an empty log).
    let checkpoint = checkpoint.filter(|(sequence, _)| *sequence > 0);
    let mut buffer = Vec::new();
    let mut line = 0u64;
    let mut prev: Vec<u8> = Vec::new();
    let mut last_sequence = 0u64;
    loop {
        buffer.clear();
        if reader.read_until(b'\n', &mut buffer).map_err(read_error)? == 0 {
            break;
        }
        line += 1;
        let Some(text) = buffer.strip_suffix(b"\n") else {
            return Err(VerifyError::Malformed {
                line,
                reason: "the file ends in the middle of this line",
            });
        };
        let parsed =
            chain::parse_line(text).map_err(|reason| VerifyError::Malformed { line, reason })?;
        let expected = last_sequence + 1;
        if parsed.sequence != expected {
            return Err(VerifyError::SequenceGap {
                line,
                expected,
                found: parsed.sequence,
            });
        }
        if parsed.prev != prev {
            return Err(VerifyError::PrevMismatch { line });
        }
        if !parsed.mac_matches(&key) {
            return Err(VerifyError::MacMismatch { line });
        }
        if let Some((sequence, head)) = &checkpoint {
            if *sequence == parsed.sequence && head.as_slice() != parsed.chain.as_slice() {
                return Err(VerifyError::CheckpointMismatch {
                    line,
                    sequence: *sequence,
                });
            }
        }
        prev = parsed.chain.to_vec();
        last_sequence = parsed.sequence;
    }
    if let Some((sequence, _)) = &checkpoint {
        if *sequence > last_sequence {
            return Err(VerifyError::Truncated {
                last_sequence,
                checkpoint: *sequence,
            });
        }
    }
    Ok(VerifyReport {
        records: line,
        last_sequence,
        checkpoint: checkpoint.map(|(sequence, _)| sequence),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{
        file::tests::{log_pairs, Fixture},
        AuditSink as _,
    };

    /// A log of 10 records with a checkpoint at 10.
    async fn written() -> Fixture {
        let fixture = Fixture::new().await;
        let sink = fixture.sink().await.unwrap();
        log_pairs(&sink, 5).await;
        sink.flush().await.unwrap();
        fixture
    }

    fn read_lines(fixture: &Fixture) -> Vec<String> {
        std::fs::read_to_string(fixture.log_path())
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn write_lines(fixture: &Fixture, lines: &[String]) {
        let mut text = lines.join("\n");
        if !lines.is_empty() {
            text.push('\n');
        }
        std::fs::write(fixture.log_path(), text).unwrap();
    }

    async fn check(fixture: &Fixture) -> Result<VerifyReport, VerifyError> {
        verify(
            &fixture.log_path(),
            &fixture.chain_key().await,
            fixture.checkpoint().await,
        )
    }

    #[tokio::test]
    async fn a_clean_log_passes() {
        let fixture = written().await;
        let report = check(&fixture).await.unwrap();
        assert_eq!(
            report,
            VerifyReport {
                records: 10,
                last_sequence: 10,
                checkpoint: Some(10),
            }
        );
        // Without a checkpoint too, and an empty log is clean.
        let key = fixture.chain_key().await;
        assert!(verify(&fixture.log_path(), &key, None).is_ok());
        write_lines(&fixture, &[]);
        assert_eq!(verify(&fixture.log_path(), &key, None).unwrap().records, 0);
    }

    #[tokio::test]
    async fn an_edited_line_is_found() {
        let fixture = written().await;
        let mut lines = read_lines(&fixture);
        assert!(lines[6].contains("transit/encrypt/k3"));
        lines[6] = lines[6].replace("transit/encrypt/k3", "transit/encrypt/k9");
        write_lines(&fixture, &lines);
        let error = check(&fixture).await.unwrap_err();
        assert!(
            matches!(error, VerifyError::MacMismatch { line: 7 }),
            "{error}"
        );
        assert!(error.to_string().contains("line 7"), "{error}");

        // Even an edit that keeps the JSON's meaning (whitespace) is found.
        let fixture = written().await;
        let mut lines = read_lines(&fixture);
        lines[2] = lines[2].replacen("{\"type\":", "{ \"type\":", 1);
        write_lines(&fixture, &lines);
        assert!(matches!(
            check(&fixture).await.unwrap_err(),
            VerifyError::MacMismatch { line: 3 }
        ));
    }

    #[tokio::test]
    async fn a_deleted_line_is_found() {
        let fixture = written().await;
        let mut lines = read_lines(&fixture);
        lines.remove(4);
        write_lines(&fixture, &lines);
        let error = check(&fixture).await.unwrap_err();
        assert!(
            matches!(
                error,
                VerifyError::SequenceGap {
                    line: 5,
                    expected: 5,
                    found: 6
                }
            ),
            "{error}"
        );

        // The first line too.
        let fixture = written().await;
        let mut lines = read_lines(&fixture);
        lines.remove(0);
        write_lines(&fixture, &lines);
        assert_eq!(check(&fixture).await.unwrap_err().line(), Some(1));
    }

    #[tokio::test]
    async fn a_truncated_tail_is_found() {
        let fixture = written().await;
        let mut lines = read_lines(&fixture);
        lines.truncate(7);
        write_lines(&fixture, &lines);
        let error = check(&fixture).await.unwrap_err();
        assert!(
            matches!(
                error,
                VerifyError::Truncated {
                    last_sequence: 7,
                    checkpoint: 10
                }
            ),
            "{error}"
        );

        // Cut mid-line.
        let fixture = written().await;
        let text = std::fs::read(fixture.log_path()).unwrap();
        std::fs::write(fixture.log_path(), &text[..text.len() - 10]).unwrap();
        assert!(matches!(
            check(&fixture).await.unwrap_err(),
            VerifyError::Malformed { line: 10, .. }
        ));

        // A line at the checkpoint's sequence with another head.
        let fixture = written().await;
        let key = fixture.chain_key().await;
        let error = verify(&fixture.log_path(), &key, Some((4, vec![0; 32]))).unwrap_err();
        assert!(
            matches!(
                error,
                VerifyError::CheckpointMismatch {
                    line: 4,
                    sequence: 4
                }
            ),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_chain_recomputed_without_the_key_is_found() {
        let fixture = written().await;
        // The forger edits line 3 and recomputes every MAC with a key of their own.
        let forger = Keyed::new(b"not the real key").unwrap();
        let mut prev: Vec<u8> = Vec::new();
        let mut forged = Vec::new();
        for (index, line) in read_lines(&fixture).iter().enumerate() {
            let line = if index == 2 {
                line.replace("transit/encrypt/k1", "transit/encrypt/kX")
            } else {
                line.clone()
            };
            let parsed = chain::parse_line(line.as_bytes()).unwrap();
            let mac = forger.chain(&prev, &parsed.body);
            chain::encode_line(&mut forged, &parsed.body, &prev, &mac);
            prev = mac.to_vec();
        }
        std::fs::write(fixture.log_path(), &forged).unwrap();
        // Without the checkpoint (which a forger might also have replaced) it fails at the
        // first line.
        let key = fixture.chain_key().await;
        let error = verify(&fixture.log_path(), &key, None).unwrap_err();
        assert!(
            matches!(error, VerifyError::MacMismatch { line: 1 }),
            "{error}"
        );
    }

    #[tokio::test]
    async fn the_wrong_sink_key_fails_at_the_first_line() {
        let fixture = written().await;
        let error = verify(&fixture.log_path(), &[0u8; 32], None).unwrap_err();
        assert!(
            matches!(error, VerifyError::MacMismatch { line: 1 }),
            "{error}"
        );
    }
}
