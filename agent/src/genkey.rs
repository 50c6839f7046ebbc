//! `keybroker-agent genkey`: a new key file or agent secret file, 32 random bytes in base64,
//! created owner-only and never over an existing file.

use std::fs::OpenOptions;
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::rngs::OsRng;
use rand::RngCore as _;
use zeroize::Zeroizing;

/// Bytes of randomness written: an AES-256 key, and the minimum agent secret (256 bits).
pub const GENERATED_BYTES: usize = 32;

/// Why the file could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GenkeyError {
    /// The file exists: it may hold a key that data is encrypted under.
    #[error("{}: already exists; not overwriting it (it may hold a key in use)", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// Creating or writing the file failed.
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// Creates `path` (mode 0600, refused if it exists) holding the base64 of
/// [`GENERATED_BYTES`] bytes from the operating system's random source, and a newline.
pub fn write_random_key_file(path: &Path) -> Result<(), GenkeyError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| match source.kind() {
            io::ErrorKind::AlreadyExists => GenkeyError::Exists {
                path: path.to_owned(),
            },
            _ => GenkeyError::Write {
                path: path.to_owned(),
                source,
            },
        })?;
    let mut bytes = Zeroizing::new([0u8; GENERATED_BYTES]);
    OsRng.fill_bytes(bytes.as_mut());
    let mut text = Zeroizing::new(STANDARD.encode(bytes.as_ref()));
    text.push('\n');
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| GenkeyError::Write {
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::ffi::OsString;
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use crate::keys::{load_key, KeySource};

    #[test]
    fn writes_a_loadable_owner_only_key_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.key");
        write_random_key_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let no_env = |_: &str| -> Option<OsString> { None };
        load_key("data", &KeySource::File(path.clone()), &no_env).unwrap();

        let before = std::fs::read(&path).unwrap();
        let error = write_random_key_file(&path).unwrap_err();
        assert!(matches!(error, GenkeyError::Exists { .. }), "{error:?}");
        assert_eq!(std::fs::read(&path).unwrap(), before);

        let other = dir.path().join("other.key");
        write_random_key_file(&other).unwrap();
        assert_ne!(std::fs::read(&other).unwrap(), before);
    }
}
