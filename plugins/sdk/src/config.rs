//! The drop-in's `[config]` table, which the host hands a plugin as JSON text: parsing it
//! into the plugin's own `serde` type, and errors that are `INVALID_CONFIG`, name the
//! plugin and the field, and never echo a secret.

use std::path::Path;

use keybroker_plugin_abi::PluginError;
use serde::de::DeserializeOwned;

/// The default deadline of one operation of a plugin that calls a remote service, retries
/// included, in milliseconds: below the host's usual per-call `timeout` of 2 s.
pub const DEFAULT_OPERATION_TIMEOUT_MS: u64 = 1500;

/// [`DEFAULT_OPERATION_TIMEOUT_MS`], for `#[serde(default = "…")]`.
pub fn default_operation_timeout_ms() -> u64 {
    DEFAULT_OPERATION_TIMEOUT_MS
}

/// The error shape of one plugin's configuration: every message starts with the prefix it
/// was made with (`aws-kms config: …`).
#[derive(Clone, Copy, Debug)]
pub struct ConfigErrors {
    prefix: &'static str,
}

impl ConfigErrors {
    /// Errors whose messages start with `<prefix>: `.
    pub const fn new(prefix: &'static str) -> Self {
        Self { prefix }
    }

    /// An `INVALID_CONFIG` error: `<prefix>: <message>`.
    pub fn invalid(self, message: impl std::fmt::Display) -> PluginError {
        PluginError::invalid_config(format!("{}: {message}", self.prefix))
    }

    /// [`Self::parse_json`], then `check` (which gives its own errors, e.g. with
    /// [`Self::invalid`]).
    pub fn parse_checked<T: DeserializeOwned>(
        self,
        text: &str,
        check: impl FnOnce(&T) -> Result<(), PluginError>,
    ) -> Result<T, PluginError> {
        let config = self.parse_json(text)?;
        check(&config)?;
        Ok(config)
    }

    /// Parses the JSON text of the `[config]` table into `T`; serde's error (which names
    /// an unknown or missing field) becomes [`Self::invalid`].
    pub fn parse_json<T: DeserializeOwned>(self, text: &str) -> Result<T, PluginError> {
        serde_json::from_str(text).map_err(|error| self.invalid(error))
    }
}

/// Refuses an empty `[config]` table: "the [config] table is missing: `<needs>`".
pub fn require_table(text: &str, needs: &str) -> Result<(), PluginError> {
    if text.trim().is_empty() {
        return Err(PluginError::invalid_config(format!(
            "the [config] table is missing: {needs}"
        )));
    }
    Ok(())
}

/// A warning when the secret file at `path` is readable by group or others: "mode `<mode>`
/// lets group or others read `<what>`; use chmod 600". `None` when it is not (or cannot be
/// read, or on systems without Unix modes).
pub fn permissive_mode(path: &Path, what: &str) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path).ok()?.permissions().mode();
        (mode & 0o077 != 0).then(|| {
            format!(
                "mode {:o} lets group or others read {what}; use chmod 600",
                mode & 0o777
            )
        })
    }
    #[cfg(not(unix))]
    {
        let _ = (path, what);
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use keybroker_plugin_abi::ErrorKind;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        region: String,
    }

    const ERRORS: ConfigErrors = ConfigErrors::new("sample config");

    #[test]
    fn errors_are_invalid_config_and_name_the_field() {
        let error = ERRORS
            .parse_json::<Sample>(r#"{"regoin":"x"}"#)
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::INVALID_CONFIG);
        assert!(error.message.starts_with("sample config: "), "{error}");
        assert!(error.message.contains("regoin"), "{error}");
        assert!(ERRORS.parse_json::<Sample>(r#"{"region":"x"}"#).is_ok());
        let missing = require_table(" ", "sample needs region").unwrap_err();
        assert_eq!(
            missing.message.as_str(),
            "the [config] table is missing: sample needs region"
        );
    }

    #[cfg(unix)]
    #[test]
    fn readable_secret_files_are_named() {
        use std::os::unix::fs::PermissionsExt as _;
        let path = std::env::temp_dir().join(format!("kb-sdk-mode-{}", std::process::id()));
        std::fs::write(&path, "x").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let warning = permissive_mode(&path, "it").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let none = permissive_mode(&path, "it");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            warning,
            "mode 644 lets group or others read it; use chmod 600"
        );
        assert_eq!(none, None);
    }
}
