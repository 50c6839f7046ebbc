//! The plugin configuration (JSON from the drop-in's `[config]` table) and KEK loading.
//!
//! Error messages name the KEK id, the file or variable and the reason, never any part of
//! a value read from them.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use keybroker_plugin_abi::PluginError;
use keybroker_plugin_sdk::config::{permissive_mode, require_table};
use serde::Deserialize;
use zeroize::Zeroizing;

/// Length of a KEK, in bytes (AES-256).
pub(crate) const KEK_LEN: usize = 32;

/// A KEK id and its key, as loaded.
pub(crate) type LoadedKek = (String, Zeroizing<[u8; KEK_LEN]>);

/// The configuration as written by the operator.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    active: Option<String>,
    keks: Vec<RawKek>,
    #[serde(default)]
    max_payload: Option<u64>,
}

/// One `[[config.keks]]` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKek {
    id: String,
    #[serde(default)]
    file: Option<PathBuf>,
    #[serde(default)]
    env: Option<String>,
}

/// The configuration with every KEK read and decoded, not yet validated as a ring.
pub(crate) struct Loaded {
    pub(crate) keks: Vec<LoadedKek>,
    pub(crate) active: Option<String>,
    pub(crate) max_payload: Option<u64>,
    /// Things worth telling the operator that do not stop the plugin.
    pub(crate) warnings: Vec<String>,
}

/// Parses the configuration and reads every KEK.
pub(crate) fn load(config: &str) -> Result<Loaded, PluginError> {
    require_table(config, "local-kek needs at least one entry in `keks`")?;
    let raw: RawConfig = serde_json::from_str(config)
        .map_err(|error| PluginError::invalid_config(format!("invalid config: {error}")))?;
    let mut warnings = Vec::new();
    let mut keks = Vec::with_capacity(raw.keks.len());
    for entry in raw.keks {
        check_kek_id(&entry.id)?;
        let key = match (entry.file, entry.env) {
            (Some(file), None) => read_file(&entry.id, &file, &mut warnings)?,
            (None, Some(variable)) => read_env(&entry.id, &variable)?,
            (Some(_), Some(_)) => {
                return Err(PluginError::invalid_config(format!(
                    "keks: KEK {:?} sets both `file` and `env`; set exactly one",
                    entry.id
                )))
            }
            (None, None) => {
                return Err(PluginError::invalid_config(format!(
                    "keks: KEK {:?} sets neither `file` nor `env`; set exactly one",
                    entry.id
                )))
            }
        };
        keks.push((entry.id, key));
    }
    Ok(Loaded {
        keks,
        active: raw.active,
        max_payload: raw.max_payload,
        warnings,
    })
}

/// KEK ids: `^[A-Za-z0-9_.-]{1,64}$` (they are written into every blob, behind a length byte).
pub(crate) fn check_kek_id(id: &str) -> Result<(), PluginError> {
    let valid = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(PluginError::invalid_config(format!(
            "keks: KEK id {id:?} is invalid: use 1 to 64 characters among A-Z a-z 0-9 _ . -"
        )))
    }
}

fn read_file(
    id: &str,
    path: &Path,
    warnings: &mut Vec<String>,
) -> Result<Zeroizing<[u8; KEK_LEN]>, PluginError> {
    let source = format!("KEK {id:?} (file {})", path.display());
    let text = std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|error| PluginError::invalid_config(format!("{source}: cannot read: {error}")))?;
    if let Some(warning) = permissive_mode(path, "it") {
        warnings.push(format!("{source}: {warning}"));
    }
    decode(&source, &text)
}

fn read_env(id: &str, variable: &str) -> Result<Zeroizing<[u8; KEK_LEN]>, PluginError> {
    let source = format!("KEK {id:?} (environment variable {variable})");
    if variable.is_empty() {
        return Err(PluginError::invalid_config(format!(
            "{source}: the variable name is empty"
        )));
    }
    let text = match std::env::var(variable) {
        Ok(value) => Zeroizing::new(value.into_bytes()),
        Err(std::env::VarError::NotPresent) => {
            return Err(PluginError::invalid_config(format!("{source}: not set")))
        }
        Err(std::env::VarError::NotUnicode(value)) => {
            // Wipe the value we were handed before reporting.
            drop(Zeroizing::new(value.into_encoded_bytes()));
            return Err(PluginError::invalid_config(format!(
                "{source}: not valid base64 (the value is not even UTF-8)"
            )));
        }
    };
    decode(&source, &text)
}

/// Decodes standard base64 (surrounding whitespace trimmed) of exactly [`KEK_LEN`] bytes.
fn decode(source: &str, text: &[u8]) -> Result<Zeroizing<[u8; KEK_LEN]>, PluginError> {
    let trimmed = text.trim_ascii();
    // Sized up front so decoding never reallocates and leaves a stray copy behind.
    let mut decoded = Zeroizing::new(Vec::with_capacity(base64::decoded_len_estimate(
        trimmed.len(),
    )));
    // The decoder's error names the offending byte: report the reason only.
    base64::engine::general_purpose::STANDARD
        .decode_vec(trimmed, &mut decoded)
        .map_err(|_| {
            PluginError::invalid_config(format!(
                "{source}: not valid base64 (standard alphabet, padded)"
            ))
        })?;
    let mut key = Zeroizing::new([0u8; KEK_LEN]);
    if decoded.len() != KEK_LEN {
        return Err(PluginError::invalid_config(format!(
            "{source}: decodes to {} bytes, a KEK must be exactly {KEK_LEN}",
            decoded.len()
        )));
    }
    key.copy_from_slice(&decoded);
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keybroker_plugin_abi::ErrorKind;
    use std::io::Write as _;

    /// Base64 of 32 bytes of 0x41, and its decoded form.
    const KEK_B64: &str = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=";

    fn kek_file(contents: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(contents.as_bytes()).unwrap();
        file
    }

    fn json_file_config(path: &Path) -> String {
        serde_json::json!({"keks": [{"id": "k1", "file": path}]}).to_string()
    }

    fn error_of(config: &str) -> PluginError {
        match load(config) {
            Ok(_) => panic!("config accepted: {config}"),
            Err(error) => error,
        }
    }

    #[test]
    fn reads_file_and_env_with_whitespace() {
        let file = kek_file(&format!("\n  {KEK_B64}\n\n"));
        std::env::set_var("KB_TEST_LOCAL_KEK_GOOD", format!(" {KEK_B64}\t"));
        let config = serde_json::json!({
            "active": "k2",
            "max_payload": 4096,
            "keks": [
                {"id": "k1", "file": file.path()},
                {"id": "k2", "env": "KB_TEST_LOCAL_KEK_GOOD"},
            ]
        })
        .to_string();
        let loaded = load(&config).unwrap();
        assert_eq!(loaded.active.as_deref(), Some("k2"));
        assert_eq!(loaded.max_payload, Some(4096));
        assert_eq!(loaded.keks.len(), 2);
        for (_, key) in &loaded.keks {
            assert_eq!(**key, [0x41; KEK_LEN]);
        }
    }

    #[test]
    fn bad_base64_is_refused_without_echoing_the_value() {
        // A value that is almost a key: one invalid character.
        let secret = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQU*=";
        let file = kek_file(secret);
        let error = error_of(&json_file_config(file.path()));
        assert_eq!(error.kind, ErrorKind::INVALID_CONFIG);
        assert!(error.message.contains("\"k1\""), "{error}");
        assert!(error.message.contains("not valid base64"), "{error}");
        assert!(!error.message.contains("QUFB"), "{error}");
        assert!(!error.message.contains('*'), "{error}");
    }

    #[test]
    fn wrong_length_is_refused_without_echoing_the_value() {
        std::env::set_var("KB_TEST_LOCAL_KEK_SHORT", "c2hvcnQtc2VjcmV0LWtleQ==");
        let config = r#"{"keks": [{"id": "short", "env": "KB_TEST_LOCAL_KEK_SHORT"}]}"#;
        let error = error_of(config);
        assert_eq!(error.kind, ErrorKind::INVALID_CONFIG);
        assert!(error.message.contains("\"short\""), "{error}");
        assert!(error.message.contains("KB_TEST_LOCAL_KEK_SHORT"), "{error}");
        assert!(error.message.contains("exactly 32"), "{error}");
        assert!(!error.message.contains("c2hvcnQ"), "{error}");
        assert!(!error.message.contains("short-secret"), "{error}");
    }

    #[test]
    fn missing_file_and_unset_env_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.b64");
        let error = error_of(&json_file_config(&missing));
        assert!(error.message.contains("cannot read"), "{error}");
        assert!(error.message.contains("nope.b64"), "{error}");

        let config = r#"{"keks": [{"id": "k1", "env": "KB_TEST_LOCAL_KEK_UNSET_XYZ"}]}"#;
        let error = error_of(config);
        assert!(error.message.contains("not set"), "{error}");
    }

    #[test]
    fn exactly_one_source_per_kek() {
        let both = r#"{"keks": [{"id": "k1", "file": "/x", "env": "Y"}]}"#;
        assert!(error_of(both).message.contains("both"));
        let neither = r#"{"keks": [{"id": "k1"}]}"#;
        assert!(error_of(neither).message.contains("neither"));
    }

    #[test]
    fn unknown_fields_and_bad_ids_are_refused() {
        let error = error_of(r#"{"keks": [], "actve": "k1"}"#);
        assert!(error.message.contains("actve"), "{error}");
        let error = error_of(r#"{"keks": [{"id": "k1", "key": "QUFB"}]}"#);
        assert!(error.message.contains("unknown field `key`"), "{error}");
        assert!(!error.message.contains("QUFB"), "{error}");
        let error = error_of(r#"{"keks": [{"id": "bad id", "env": "X"}]}"#);
        assert!(error.message.contains("\"bad id\""), "{error}");
        assert_eq!(error_of("").kind, ErrorKind::INVALID_CONFIG);
    }

    #[test]
    fn the_example_drop_in_is_a_valid_config() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/plugins.d/local-kek.toml"
        );
        let drop_in: toml::Table = std::fs::read_to_string(path).unwrap().parse().unwrap();
        // As the host does: the [config] table, as JSON.
        let mut config = serde_json::to_value(&drop_in["config"]).unwrap();
        // The example's KEK file does not exist here: point it at one that does.
        let file = kek_file(KEK_B64);
        config["keks"][0]["file"] = serde_json::json!(file.path());
        let loaded = load(&config.to_string()).unwrap();
        assert_eq!(loaded.active.as_deref(), Some("k1"));
        assert_eq!(loaded.max_payload, Some(1 << 20));
        assert_eq!(loaded.keks.len(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn readable_files_are_reported() {
        use std::os::unix::fs::PermissionsExt as _;
        let file = kek_file(KEK_B64);
        std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        let loaded = load(&json_file_config(file.path())).unwrap();
        assert_eq!(loaded.warnings.len(), 1);
        assert!(loaded.warnings[0].contains("chmod 600"));
        std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(load(&json_file_config(file.path()))
            .unwrap()
            .warnings
            .is_empty());
    }
}
