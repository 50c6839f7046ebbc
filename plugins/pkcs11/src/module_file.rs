//! Pinning the PKCS#11 module file the way the broker pins plugins (ARCHITECTURE.md §5).
//!
//! The module is native code loaded into the broker, so it gets the same checks as a plugin
//! library: refuse a file, or a directory holding it, that group or others can write; hash
//! the bytes and compare them with `module_sha256`; copy the verified bytes into a private
//! directory, `<temp dir>/keybroker-pkcs11-<euid>` (mode 0700, owned by this user, refused
//! otherwise), as `<sha256>.so`, and load that copy. Loading the copy closes the gap between
//! hashing and loading, and a module replaced on disk is never confused with the one already
//! loaded (glibc's `dlopen` returns the loaded library for a path it has seen).

use std::{
    fs,
    io::Write as _,
    os::unix::fs::{
        DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
    },
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use keybroker_plugin_abi::PluginError;
use sha2::{Digest as _, Sha256};

/// A module file whose bytes matched the pin, copied where only this user can write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct VerifiedModule {
    /// The private copy, to load.
    pub(crate) copy: PathBuf,
    /// Lowercase hex SHA-256 of its bytes.
    pub(crate) sha256: String,
}

/// Checks `module` against `expected_sha256` (lowercase hex) and copies it into the private
/// directory under `temp_dir`.
pub(crate) fn verify_and_copy(
    module: &Path,
    expected_sha256: &str,
    temp_dir: &Path,
) -> Result<VerifiedModule, PluginError> {
    if let Some(parent) = module.parent() {
        check_not_writable_by_others(parent, "module directory")?;
    }
    check_not_writable_by_others(module, "module file")?;
    // A symbolic link (Debian's /usr/lib/softhsm/libsofthsm2.so is one) is as safe as the
    // directory its target is in.
    let resolved = fs::canonicalize(module).map_err(|error| {
        PluginError::invalid_config(format!(
            "module: cannot resolve {}: {error}",
            module.display()
        ))
    })?;
    if resolved != module {
        if let Some(parent) = resolved.parent() {
            check_not_writable_by_others(parent, "module directory")?;
        }
    }
    let bytes = fs::read(&resolved).map_err(|error| {
        PluginError::invalid_config(format!("module: cannot read {}: {error}", module.display()))
    })?;
    let actual = sha256_hex(&bytes);
    if actual != expected_sha256 {
        return Err(PluginError::invalid_config(format!(
            "module_sha256: sha256 mismatch for {}: the config pins {expected_sha256}, the \
             file has {actual}",
            module.display()
        )));
    }
    let directory = private_directory(temp_dir)?;
    let copy = write_copy(&directory, &actual, &bytes)?;
    Ok(VerifiedModule {
        copy,
        sha256: actual,
    })
}

/// Lowercase hex SHA-256.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The directory the copies go to: `<temp_dir>/keybroker-pkcs11-<euid>`.
pub(crate) fn private_directory_path(temp_dir: &Path) -> PathBuf {
    temp_dir.join(format!(
        "keybroker-pkcs11-{}",
        rustix::process::geteuid().as_raw()
    ))
}

fn check_not_writable_by_others(path: &Path, what: &str) -> Result<(), PluginError> {
    let metadata = fs::metadata(path).map_err(|error| {
        PluginError::invalid_config(format!(
            "module: cannot inspect {what} {}: {error}",
            path.display()
        ))
    })?;
    let mode = metadata.permissions().mode();
    if mode & 0o022 != 0 {
        return Err(PluginError::invalid_config(format!(
            "module: {what} {} is group- or world-writable (mode {:o}); refusing to load it",
            path.display(),
            mode & 0o7777
        )));
    }
    Ok(())
}

/// Creates the private directory, or checks that the existing one is ours and closed.
fn private_directory(temp_dir: &Path) -> Result<PathBuf, PluginError> {
    let directory = private_directory_path(temp_dir);
    match fs::DirBuilder::new().mode(0o700).create(&directory) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(error) => {
            return Err(PluginError::invalid_config(format!(
                "module: cannot create the private directory {}: {error}",
                directory.display()
            )))
        }
    }
    // Not following a link: a planted symbolic link must not redirect the copy.
    let metadata = fs::symlink_metadata(&directory).map_err(|error| {
        PluginError::invalid_config(format!(
            "module: cannot inspect the private directory {}: {error}",
            directory.display()
        ))
    })?;
    let euid = rustix::process::geteuid().as_raw();
    let refuse = |why: String| {
        Err(PluginError::invalid_config(format!(
            "module: refusing the private directory {}: {why}",
            directory.display()
        )))
    };
    if !metadata.file_type().is_dir() {
        return refuse("it is not a directory".to_owned());
    }
    if metadata.uid() != euid {
        return refuse(format!(
            "it is owned by uid {}, not by this process (uid {euid})",
            metadata.uid()
        ));
    }
    if metadata.mode() & 0o077 != 0 {
        return refuse(format!(
            "its mode is {:o}; it must be 700",
            metadata.mode() & 0o7777
        ));
    }
    Ok(directory)
}

/// Writes `<directory>/<sha256>.so` unless an identical copy is there already.
fn write_copy(directory: &Path, sha256: &str, bytes: &[u8]) -> Result<PathBuf, PluginError> {
    static TEMPORARY_COUNTER: AtomicU64 = AtomicU64::new(0);
    let target = directory.join(format!("{sha256}.so"));
    if fs::read(&target).is_ok_and(|existing| sha256_hex(&existing) == sha256) {
        return Ok(target);
    }
    let temporary = directory.join(format!(
        ".{sha256}.{}.{}.tmp",
        std::process::id(),
        TEMPORARY_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let failed = |error: std::io::Error| {
        PluginError::invalid_config(format!(
            "module: cannot write the verified copy {}: {error}",
            target.display()
        ))
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o500)
        .open(&temporary)
        .map_err(failed)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    drop(file);
    if let Err(error) = written.and_then(|()| fs::rename(&temporary, &target)) {
        let _ = fs::remove_file(&temporary);
        return Err(failed(error));
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keybroker_plugin_abi::ErrorKind;

    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Scratch {
            let dir = std::env::temp_dir().join(format!(
                "keybroker-pkcs11-pin-test-{}-{}",
                std::process::id(),
                rand::random::<u64>()
            ));
            fs::create_dir(&dir).unwrap();
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn module_in(dir: &Path, bytes: &[u8]) -> PathBuf {
        let lib = dir.join("lib");
        fs::create_dir_all(&lib).unwrap();
        let path = lib.join("libfake.so");
        fs::write(&path, bytes).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        path
    }

    #[test]
    fn verified_bytes_are_copied_privately() {
        let scratch = Scratch::new();
        let module = module_in(&scratch.0, b"module bytes");
        let sha = sha256_hex(b"module bytes");
        let temp = scratch.0.join("tmp");
        fs::create_dir(&temp).unwrap();
        let verified = verify_and_copy(&module, &sha, &temp).unwrap();
        assert_eq!(verified.sha256, sha);
        assert_eq!(
            verified.copy,
            private_directory_path(&temp).join(format!("{sha}.so"))
        );
        assert_eq!(fs::read(&verified.copy).unwrap(), b"module bytes");
        let mode = fs::metadata(private_directory_path(&temp)).unwrap().mode();
        assert_eq!(mode & 0o777, 0o700);
        // Again: the existing copy is reused.
        assert_eq!(verify_and_copy(&module, &sha, &temp).unwrap(), verified);
    }

    #[test]
    fn a_hash_mismatch_names_the_path_and_both_hashes() {
        let scratch = Scratch::new();
        let module = module_in(&scratch.0, b"module bytes");
        let pinned = sha256_hex(b"other bytes");
        let error = verify_and_copy(&module, &pinned, &scratch.0).unwrap_err();
        assert_eq!(error.kind, ErrorKind::INVALID_CONFIG);
        assert!(error.message.starts_with("module_sha256:"), "{error}");
        assert!(
            error.message.contains(&module.display().to_string()),
            "{error}"
        );
        assert!(error.message.contains(&pinned), "{error}");
        assert!(
            error.message.contains(&sha256_hex(b"module bytes")),
            "{error}"
        );
    }

    #[test]
    fn writable_files_and_directories_are_refused() {
        let scratch = Scratch::new();
        let module = module_in(&scratch.0, b"bytes");
        let sha = sha256_hex(b"bytes");
        fs::set_permissions(&module, fs::Permissions::from_mode(0o666)).unwrap();
        let error = verify_and_copy(&module, &sha, &scratch.0).unwrap_err();
        assert!(error.message.contains("module file"), "{error}");
        assert!(error.message.contains("writable"), "{error}");
        fs::set_permissions(&module, fs::Permissions::from_mode(0o644)).unwrap();
        let dir = module.parent().unwrap();
        fs::set_permissions(dir, fs::Permissions::from_mode(0o775)).unwrap();
        let error = verify_and_copy(&module, &sha, &scratch.0).unwrap_err();
        assert!(error.message.contains("module directory"), "{error}");
    }

    #[test]
    fn a_loose_or_foreign_private_directory_is_refused() {
        let scratch = Scratch::new();
        let module = module_in(&scratch.0, b"bytes");
        let sha = sha256_hex(b"bytes");
        let temp = scratch.0.join("tmp");
        fs::create_dir(&temp).unwrap();
        let private = private_directory_path(&temp);
        fs::create_dir(&private).unwrap();
        fs::set_permissions(&private, fs::Permissions::from_mode(0o755)).unwrap();
        let error = verify_and_copy(&module, &sha, &temp).unwrap_err();
        assert!(error.message.contains("must be 700"), "{error}");
        fs::remove_dir(&private).unwrap();
        // A link to a directory of ours is still refused: it is not the directory itself.
        let elsewhere = scratch.0.join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        fs::set_permissions(&elsewhere, fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &private).unwrap();
        let error = verify_and_copy(&module, &sha, &temp).unwrap_err();
        assert!(error.message.contains("not a directory"), "{error}");
        fs::remove_file(&private).unwrap();
        if rustix::process::geteuid().is_root() {
            fs::create_dir(&private).unwrap();
            fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
            std::os::unix::fs::chown(&private, Some(65534), None).unwrap();
            let error = verify_and_copy(&module, &sha, &temp).unwrap_err();
            assert!(error.message.contains("owned by uid 65534"), "{error}");
        }
    }
}
