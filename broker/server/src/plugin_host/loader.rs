//! Loading a plugin library safely (ARCHITECTURE.md §5): refuse group- or world-writable files and
//! directories, hash the file, compare with the pinned SHA-256, copy the verified bytes to
//! `<state>/plugins/<sha256>.so` and load that copy. glibc's `dlopen` returns the library
//! already loaded for a path whose file was replaced; loading the copy named by its hash
//! both closes the gap between hashing and loading and makes a replaced file load anew.

use std::{
    collections::HashMap,
    fs,
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::Mutex,
};

use abi_stable::{
    library::lib_header_from_path,
    std_types::{RResult, RStr},
};
use keybroker_plugin_abi::{v1, v2, v3, v4, v5, BackendBox, HostBox, PluginError, PluginModRef};
use sha2::{Digest, Sha256};

/// Refuses a file or directory that others than its owner can write.
pub fn check_not_writable_by_others(path: &Path, what: &str) -> Result<(), String> {
    let metadata = fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{what} not found: {}", path.display()),
        _ => format!("cannot inspect {what} {}: {e}", path.display()),
    })?;
    if metadata.permissions().mode() & 0o022 != 0 {
        return Err(format!(
            "{what} {} is group- or world-writable (mode {:o}); refusing to load",
            path.display(),
            metadata.permissions().mode() & 0o7777
        ));
    }
    Ok(())
}

/// Checks permissions and the pinned hash; returns the verified bytes and their hash.
pub(super) fn verify(library: &Path, expected_sha256: &str) -> Result<(Vec<u8>, String), String> {
    if let Some(parent) = library.parent() {
        check_not_writable_by_others(parent, "library directory")?;
    }
    check_not_writable_by_others(library, "library file")?;
    let bytes =
        fs::read(library).map_err(|e| format!("cannot read library {}: {e}", library.display()))?;
    let actual = sha256_hex(&bytes);
    if !actual.eq_ignore_ascii_case(expected_sha256) {
        return Err(format!(
            "sha256 mismatch for {}: the drop-in pins {}, the file has {actual}",
            library.display(),
            expected_sha256.to_ascii_lowercase()
        ));
    }
    Ok((bytes, actual))
}

/// Hex SHA-256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A loaded plugin's root module: the current ABI, or an earlier one (a plugin built before
/// the operations added since, whose backends are wrapped to answer "not supported").
#[derive(Clone, Copy)]
pub(super) enum PluginModule {
    /// Built against the current ABI.
    Current(PluginModRef),
    /// Built against the fifth ABI (asynchronous batches; no private key transfer).
    V5(v5::PluginModRef),
    /// Built against the fourth ABI (status and tenant names; no asynchronous batches).
    V4(v4::PluginModRef),
    /// Built against the third ABI (data key generation; no status or tenant names).
    V3(v3::PluginModRef),
    /// Built against the second ABI (signing, binding; no data key generation).
    V2(v2::PluginModRef),
    /// Built against the first ABI.
    V1(v1::PluginModRef),
}

impl PluginModule {
    /// Runs the plugin's constructor (blocking: call it off the async runtime).
    pub(super) fn new_backend(
        self,
        config: RStr<'_>,
        host: HostBox,
    ) -> RResult<BackendBox, PluginError> {
        match self {
            Self::Current(module) => module.new_backend()(config, host),
            Self::V5(module) => module.new_backend()(config, host).map(v5::upgrade),
            Self::V4(module) => module.new_backend()(config, host).map(v4::upgrade),
            Self::V3(module) => module.new_backend()(config, host).map(v3::upgrade),
            Self::V2(module) => module.new_backend()(config, host).map(v2::upgrade),
            Self::V1(module) => module.new_backend()(config, host).map(v1::upgrade),
        }
    }
}

/// Loaded plugin modules by hash: a library is loaded (and ABI-checked) once and never
/// unloaded; every instance using the same bytes shares the module.
#[derive(Default)]
pub(super) struct ModuleCache {
    modules: Mutex<HashMap<String, PluginModule>>,
}

impl std::fmt::Debug for ModuleCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ModuleCache(..)")
    }
}

impl ModuleCache {
    /// Verifies `library` against `expected_sha256`, copies it under `copies_dir` and loads
    /// the copy. Errors are reasons fit for the operator (no secrets involved).
    pub(super) fn load(
        &self,
        library: &Path,
        expected_sha256: &str,
        copies_dir: &Path,
    ) -> Result<PluginModule, String> {
        let (bytes, actual) = verify(library, expected_sha256)?;
        let mut modules = self
            .modules
            .lock()
            .map_err(|_| "plugin module cache poisoned".to_owned())?;
        if let Some(module) = modules.get(&actual) {
            return Ok(*module);
        }
        let copy = write_verified_copy(&bytes, &actual, copies_dir)?;
        let header = lib_header_from_path(&copy).map_err(|e| {
            format!(
                "not a keybroker plugin ({}): {}",
                library.display(),
                first_lines(&e.to_string())
            )
        })?;
        // Newest first: a plugin also passes the checks of every ABI older than its own.
        let module = match header.init_root_module::<PluginModRef>() {
            Ok(module) => PluginModule::Current(module),
            Err(current) => {
                if let Ok(module) = header.init_root_module::<v5::PluginModRef>() {
                    PluginModule::V5(module)
                } else if let Ok(module) = header.init_root_module::<v4::PluginModRef>() {
                    PluginModule::V4(module)
                } else if let Ok(module) = header.init_root_module::<v3::PluginModRef>() {
                    PluginModule::V3(module)
                } else if let Ok(module) = header.init_root_module::<v2::PluginModRef>() {
                    PluginModule::V2(module)
                } else if let Ok(module) = header.init_root_module::<v1::PluginModRef>() {
                    PluginModule::V1(module)
                } else {
                    return Err(format!(
                        "ABI check failed for {}: {}",
                        library.display(),
                        abi_error(&current.to_string())
                    ));
                }
            }
        };
        modules.insert(actual, module);
        Ok(module)
    }
}

/// abi_stable's layout errors run to pages: the first lines say where, and its `Error:`,
/// `Expected:` and `Found:` lines say what.
fn abi_error(text: &str) -> String {
    let reasons: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| {
            l.starts_with("Error:") || l.starts_with("Expected:") || l.starts_with("Found:")
        })
        .take(6)
        .collect();
    let head = first_lines(text);
    if reasons.is_empty() {
        head
    } else {
        format!("{} | {}", reasons.join(" "), head)
    }
}

/// The first lines of a long error, joined and cut to a readable length.
fn first_lines(text: &str) -> String {
    let mut out: String = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(6)
        .collect::<Vec<_>>()
        .join(" | ");
    if out.len() > 600 {
        let mut cut = 600;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}

fn write_verified_copy(bytes: &[u8], sha256: &str, copies_dir: &Path) -> Result<PathBuf, String> {
    fs::create_dir_all(copies_dir)
        .map_err(|e| format!("cannot create {}: {e}", copies_dir.display()))?;
    fs::set_permissions(copies_dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("cannot restrict {}: {e}", copies_dir.display()))?;
    let target = copies_dir.join(format!("{sha256}.so"));
    if let Ok(existing) = fs::read(&target) {
        if sha256_hex(&existing) == sha256 {
            return Ok(target);
        }
    }
    let temporary = copies_dir.join(format!(".{sha256}.{}.tmp", std::process::id()));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o500)
        .open(&temporary)
        .map_err(|e| format!("cannot write {}: {e}", temporary.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", temporary.display()))?;
    fs::rename(&temporary, &target)
        .map_err(|e| format!("cannot write {}: {e}", target.display()))?;
    Ok(target)
}
