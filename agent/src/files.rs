//! Reading files that hold secrets (key files, the agent secret): refused when group or
//! others may access them, like the broker's root key file, and read into memory that is
//! wiped on drop.

use std::fs::File;
use std::io::{self, Read as _};
use std::path::Path;

use zeroize::Zeroizing;

/// Why a secret file could not be read.
#[derive(Debug)]
pub(crate) enum PrivateFileError {
    /// Opening or reading failed.
    Io(io::Error),
    /// Group or others have some access: the permission bits (`mode & 0o777`).
    Permissions(u32),
}

/// The contents of `path`, after checking (on the open handle, so the file checked is the
/// file read) that only its owner may access it.
pub(crate) fn read_private_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, PrivateFileError> {
    let mut file = File::open(path).map_err(PrivateFileError::Io)?;
    let metadata = file.metadata().map_err(PrivateFileError::Io)?;
    check_private(&metadata)?;
    // Sized up front so reading never reallocates and leaves a stray copy behind.
    let capacity = usize::try_from(metadata.len())
        .unwrap_or(0)
        .saturating_add(1);
    let mut contents = Zeroizing::new(Vec::with_capacity(capacity));
    file.read_to_end(&mut contents)
        .map_err(PrivateFileError::Io)?;
    Ok(contents)
}

#[cfg(unix)]
fn check_private(metadata: &std::fs::Metadata) -> Result<(), PrivateFileError> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = metadata.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(PrivateFileError::Permissions(mode & 0o777));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_metadata: &std::fs::Metadata) -> Result<(), PrivateFileError> {
    Ok(())
}
