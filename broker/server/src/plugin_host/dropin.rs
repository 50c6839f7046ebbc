//! Drop-in files: one backend instance per `plugins.d/*.toml` (ARCHITECTURE.md §5).

use std::{collections::BTreeMap, path::Path, time::Duration};

use keybroker_core::backend::OnUnavailable;
use serde::Deserialize;

/// Prefix of built-in libraries linked into the broker.
pub const BUILTIN_PREFIX: &str = "builtin:";

/// `on_unavailable` as written in a drop-in.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnUnavailableSetting {
    /// Keep serving cached keys until their TTL.
    Serve,
    /// Zeroize cached keys at once.
    Evict,
}

impl From<OnUnavailableSetting> for OnUnavailable {
    fn from(value: OnUnavailableSetting) -> Self {
        match value {
            OnUnavailableSetting::Serve => Self::Serve,
            OnUnavailableSetting::Evict => Self::Evict,
        }
    }
}

/// One drop-in file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DropIn {
    /// Instance name, referenced by keys (`backend = "<name>"`).
    pub name: String,
    /// Path of the plugin's shared library (relative paths are relative to the drop-in
    /// directory), or `builtin:<plugin>`.
    pub library: String,
    /// Hex SHA-256 of the library file; required for a path.
    pub sha256: Option<String>,
    /// Tenants allowed to use the instance (`"*"` = all, `[]` = none).
    pub tenants: Vec<String>,
    /// Deadline of each call into the plugin.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Deadline of key creation and binding: making an RSA-4096 key pair takes seconds.
    #[serde(default = "default_create_timeout", with = "humantime_serde")]
    pub create_timeout: Duration,
    /// Calls in flight at most (a bulkhead per instance).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// What happens to cached data keys when the instance becomes unavailable.
    #[serde(default = "default_on_unavailable")]
    pub on_unavailable: OnUnavailableSetting,
    /// Backend keys that tenants may bind (`backend_key` at key creation), by tenant name:
    /// glob patterns (`*` matches any run of characters) of the plugin's key names, e.g.
    /// `acme = ["label:acme-*"]`. Operators (root namespace, `sudo`) need no grant.
    #[serde(default)]
    pub bind: BTreeMap<String, Vec<String>>,
    /// Plugin configuration, opaque to the host; passed to the plugin as JSON.
    #[serde(default)]
    pub config: toml::Table,
}

fn default_timeout() -> Duration {
    Duration::from_secs(2)
}

fn default_create_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_concurrency() -> usize {
    16
}

fn default_on_unavailable() -> OnUnavailableSetting {
    OnUnavailableSetting::Serve
}

/// Checks an instance name: `^[a-z0-9][a-z0-9_-]{0,63}$`.
pub fn valid_instance_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && bytes
            .first()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'))
}

impl DropIn {
    /// Parses and checks a drop-in file's text; errors name the file and the key.
    pub fn parse(path: &Path, text: &str) -> Result<Self, String> {
        let dropin: DropIn =
            toml::from_str(text).map_err(|e| format!("invalid drop-in {}: {e}", path.display()))?;
        if !valid_instance_name(&dropin.name) {
            return Err(format!(
                "invalid drop-in {}: name: {:?} must match ^[a-z0-9][a-z0-9_-]{{0,63}}$",
                path.display(),
                dropin.name
            ));
        }
        if !dropin.library.starts_with(BUILTIN_PREFIX) {
            match &dropin.sha256 {
                None => {
                    return Err(format!(
                        "invalid drop-in {}: sha256: required for a library path",
                        path.display()
                    ))
                }
                Some(hash) if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    return Err(format!(
                        "invalid drop-in {}: sha256: expected 64 hex digits",
                        path.display()
                    ))
                }
                Some(_) => {}
            }
        }
        if dropin.concurrency == 0 || dropin.concurrency > 4096 {
            return Err(format!(
                "invalid drop-in {}: concurrency: must be between 1 and 4096",
                path.display()
            ));
        }
        if dropin.create_timeout.is_zero() {
            return Err(format!(
                "invalid drop-in {}: create_timeout: must be greater than zero",
                path.display()
            ));
        }
        if dropin.timeout.is_zero() {
            return Err(format!(
                "invalid drop-in {}: timeout: must be greater than zero",
                path.display()
            ));
        }
        Ok(dropin)
    }

    /// The plugin configuration as JSON text.
    pub fn config_json(&self) -> Result<String, String> {
        serde_json::to_string(&self.config)
            .map_err(|e| format!("config: cannot convert to JSON: {e}"))
    }

    /// Whether a tenant (by name) may use the instance.
    pub fn allows(&self, tenant: &str) -> bool {
        self.tenants.iter().any(|t| t == "*" || t == tenant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "kek"
library = "/opt/lib.so"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
tenants = ["root"]
"#;

    #[test]
    fn parses_with_defaults() {
        let d = DropIn::parse(Path::new("a.toml"), GOOD).unwrap();
        assert_eq!(d.timeout, Duration::from_secs(2));
        assert_eq!(d.on_unavailable, OnUnavailableSetting::Serve);
        assert!(d.allows("root"));
        assert!(!d.allows("acme"));
    }

    #[test]
    fn tenants_allowlist() {
        let mut d = DropIn::parse(Path::new("a.toml"), GOOD).unwrap();
        d.tenants = vec![];
        assert!(!d.allows("root"));
        d.tenants = vec!["*".into()];
        assert!(d.allows("acme"));
    }

    #[test]
    fn errors_name_the_file_and_key() {
        let e =
            DropIn::parse(Path::new("x.toml"), &GOOD.replace("tenants", "tenantz")).unwrap_err();
        assert!(e.contains("x.toml") && e.contains("tenantz"), "{e}");
        let e = DropIn::parse(
            Path::new("x.toml"),
            &GOOD.replace("sha256 = \"0", "sha256 = \"z"),
        )
        .unwrap_err();
        assert!(e.contains("sha256"), "{e}");
        let e = DropIn::parse(
            Path::new("x.toml"),
            &GOOD.replace("\"kek\"", "\"Bad Name\""),
        )
        .unwrap_err();
        assert!(e.contains("name"), "{e}");
    }
}
