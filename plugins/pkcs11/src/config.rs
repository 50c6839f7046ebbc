//! The plugin configuration (JSON from the drop-in's `[config]` table) and the user PIN.
//!
//! Every error is [`ErrorKind::INVALID_CONFIG`](keybroker_plugin_abi::ErrorKind) and starts
//! with the field at fault. The PIN is read into zeroizing memory and never appears in an
//! error: messages name the file or variable and the reason only.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use cryptoki::types::AuthPin;
use keybroker_plugin_abi::PluginError;
use keybroker_plugin_sdk::config::{permissive_mode, require_table};
use serde::{de::IgnoredAny, Deserialize};
use zeroize::Zeroizing;

/// Default largest plaintext for direct-mode encryption: 64 KiB.
pub const DEFAULT_MAX_PAYLOAD: u64 = 64 * 1024;
/// Default largest number of sessions one instance keeps open.
pub const DEFAULT_MAX_SESSIONS: usize = 4;
/// Default time a call waits for a free session, in milliseconds.
pub const DEFAULT_SESSION_WAIT_MS: u64 = 2000;
/// Bounds of `max_sessions`.
const MAX_SESSIONS_LIMIT: usize = 1024;
/// Bound of `session_wait`: a call that waits longer than a minute has long missed the
/// broker's deadline.
const SESSION_WAIT_LIMIT_MS: u64 = 60_000;
/// A PKCS#11 token label is a 32-byte field.
const TOKEN_LABEL_MAX: usize = 32;

/// Where the IV of an AES-GCM encryption comes from.
#[derive(Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum IvSource {
    /// The 96-bit IV the broker passes in `EncryptRequest::iv` (it counts them).
    #[default]
    Broker,
    /// The module generates the IV (HSMs in FIPS mode insist on it) and writes it back into
    /// the mechanism parameters.
    Module,
}

/// The configuration as written by the operator.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    module: PathBuf,
    module_sha256: String,
    token_label: String,
    #[serde(default)]
    pin_file: Option<PathBuf>,
    #[serde(default)]
    pin_env: Option<String>,
    /// Accepted by the parser only to be refused with a useful message (its value is never
    /// looked at).
    #[serde(default)]
    pin: Option<IgnoredAny>,
    #[serde(default)]
    max_payload: Option<u64>,
    #[serde(default)]
    max_sessions: Option<usize>,
    #[serde(default)]
    session_wait: Option<u64>,
    #[serde(default)]
    iv_source: Option<IvSource>,
}

/// Where the user PIN is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PinSource {
    /// A file holding the PIN (one trailing newline is stripped).
    File(PathBuf),
    /// An environment variable of the broker process.
    Env(String),
}

/// The validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Config {
    pub(crate) module: PathBuf,
    /// Lowercase hex.
    pub(crate) module_sha256: String,
    pub(crate) token_label: String,
    pub(crate) pin: PinSource,
    pub(crate) max_payload: u64,
    pub(crate) max_sessions: usize,
    pub(crate) session_wait: Duration,
    pub(crate) iv_source: IvSource,
}

/// Parses and validates the configuration.
pub(crate) fn parse(config: &str) -> Result<Config, PluginError> {
    require_table(
        config,
        "pkcs11 needs module, module_sha256, token_label and pin_file or pin_env",
    )?;
    let mut deserializer = serde_json::Deserializer::from_str(config);
    let raw: RawConfig = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if path == "." {
            PluginError::invalid_config(format!("invalid config: {inner}"))
        } else {
            PluginError::invalid_config(format!("{path}: {inner}"))
        }
    })?;

    if raw.pin.is_some() {
        return Err(PluginError::invalid_config(
            "pin: a PIN written in the configuration is refused; use pin_file (a file \
             readable by the broker only) or pin_env (an environment variable)",
        ));
    }
    let pin = match (raw.pin_file, raw.pin_env) {
        (Some(file), None) => {
            if file.as_os_str().is_empty() {
                return Err(PluginError::invalid_config("pin_file: the path is empty"));
            }
            PinSource::File(file)
        }
        (None, Some(variable)) => {
            if variable.is_empty() || variable.contains('=') || variable.contains('\0') {
                return Err(PluginError::invalid_config(format!(
                    "pin_env: {variable:?} is not a valid environment variable name"
                )));
            }
            PinSource::Env(variable)
        }
        (Some(_), Some(_)) => {
            return Err(PluginError::invalid_config(
                "pin_file, pin_env: both are set; set exactly one",
            ))
        }
        (None, None) => {
            return Err(PluginError::invalid_config(
                "pin_file, pin_env: neither is set; set exactly one",
            ))
        }
    };
    if !raw.module.is_absolute() {
        return Err(PluginError::invalid_config(format!(
            "module: {} is not an absolute path",
            raw.module.display()
        )));
    }
    let module_sha256 = raw.module_sha256.to_ascii_lowercase();
    if module_sha256.len() != 64 || !module_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(PluginError::invalid_config(
            "module_sha256: must be 64 hex digits (sha256sum of the module file)",
        ));
    }
    if raw.token_label.is_empty() || raw.token_label.len() > TOKEN_LABEL_MAX {
        return Err(PluginError::invalid_config(format!(
            "token_label: {:?} must be 1 to {TOKEN_LABEL_MAX} bytes",
            raw.token_label
        )));
    }
    let max_payload = raw.max_payload.unwrap_or(DEFAULT_MAX_PAYLOAD);
    if max_payload == 0 {
        return Err(PluginError::invalid_config(
            "max_payload: must be at least 1 byte",
        ));
    }
    let max_sessions = raw.max_sessions.unwrap_or(DEFAULT_MAX_SESSIONS);
    if !(1..=MAX_SESSIONS_LIMIT).contains(&max_sessions) {
        return Err(PluginError::invalid_config(format!(
            "max_sessions: {max_sessions} is out of range 1..={MAX_SESSIONS_LIMIT}"
        )));
    }
    let session_wait = raw.session_wait.unwrap_or(DEFAULT_SESSION_WAIT_MS);
    if session_wait > SESSION_WAIT_LIMIT_MS {
        return Err(PluginError::invalid_config(format!(
            "session_wait: {session_wait} ms is more than {SESSION_WAIT_LIMIT_MS} ms"
        )));
    }
    Ok(Config {
        module: raw.module,
        module_sha256,
        token_label: raw.token_label,
        pin,
        max_payload,
        max_sessions,
        session_wait: Duration::from_millis(session_wait),
        iv_source: raw.iv_source.unwrap_or_default(),
    })
}

/// Reads the user PIN. Returns it and, for a file others can read, a warning to log.
pub(crate) fn read_pin(source: &PinSource) -> Result<(AuthPin, Option<String>), PluginError> {
    match source {
        PinSource::File(path) => read_pin_file(path),
        PinSource::Env(variable) => read_pin_env(variable).map(|pin| (pin, None)),
    }
}

fn read_pin_file(path: &Path) -> Result<(AuthPin, Option<String>), PluginError> {
    let source = format!("pin_file: {}", path.display());
    let bytes = std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|error| PluginError::invalid_config(format!("{source}: cannot read: {error}")))?;
    let mut pin: &[u8] = &bytes;
    if let Some(rest) = pin.strip_suffix(b"\n") {
        pin = rest.strip_suffix(b"\r").unwrap_or(rest);
    }
    let pin = pin_from_bytes(&source, pin)?;
    let warning = permissive_mode(path, "the PIN").map(|w| format!("{source}: {w}"));
    Ok((pin, warning))
}

fn read_pin_env(variable: &str) -> Result<AuthPin, PluginError> {
    let source = format!("pin_env: environment variable {variable}");
    let value = std::env::var_os(variable)
        .map(|value| Zeroizing::new(value.into_encoded_bytes()))
        .ok_or_else(|| PluginError::invalid_config(format!("{source}: not set")))?;
    pin_from_bytes(&source, &value)
}

/// The PIN as cryptoki wants it, copied once into its zeroizing box.
fn pin_from_bytes(source: &str, bytes: &[u8]) -> Result<AuthPin, PluginError> {
    if bytes.is_empty() {
        return Err(PluginError::invalid_config(format!(
            "{source}: the PIN is empty"
        )));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| PluginError::invalid_config(format!("{source}: the PIN is not UTF-8")))?;
    Ok(AuthPin::from(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keybroker_plugin_abi::ErrorKind;
    use std::io::Write as _;

    /// The PIN as cryptoki hands it to `C_Login`, for assertions only.
    fn expose(pin: &AuthPin) -> String {
        use secrecy::ExposeSecret as _;
        pin.expose_secret().to_owned()
    }

    const SHA: &str = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";

    fn base() -> serde_json::Value {
        serde_json::json!({
            "module": "/usr/lib/softhsm/libsofthsm2.so",
            "module_sha256": SHA,
            "token_label": "hsm-1",
            "pin_env": "KB_TEST_PKCS11_PIN",
        })
    }

    fn error_of(config: &serde_json::Value) -> PluginError {
        match parse(&config.to_string()) {
            Ok(parsed) => panic!("config accepted: {parsed:?}"),
            Err(error) => error,
        }
    }

    #[test]
    fn defaults_and_full_config() {
        let config = parse(&base().to_string()).unwrap();
        assert_eq!(config.module_sha256, SHA.to_ascii_lowercase());
        assert_eq!(config.max_payload, DEFAULT_MAX_PAYLOAD);
        assert_eq!(config.max_sessions, DEFAULT_MAX_SESSIONS);
        assert_eq!(config.session_wait, Duration::from_millis(2000));
        assert_eq!(config.iv_source, IvSource::Broker);
        assert_eq!(config.pin, PinSource::Env("KB_TEST_PKCS11_PIN".into()));

        let full = serde_json::json!({
            "module": "/opt/hsm/lib/libvendor.so",
            "module_sha256": SHA,
            "token_label": "prod",
            "pin_file": "/etc/keybroker/hsm.pin",
            "max_payload": 1024,
            "max_sessions": 16,
            "session_wait": 250,
            "iv_source": "module",
        });
        let config = parse(&full.to_string()).unwrap();
        assert_eq!(config.pin, PinSource::File("/etc/keybroker/hsm.pin".into()));
        assert_eq!(config.max_payload, 1024);
        assert_eq!(config.max_sessions, 16);
        assert_eq!(config.session_wait, Duration::from_millis(250));
        assert_eq!(config.iv_source, IvSource::Module);
    }

    #[test]
    fn an_inline_pin_is_refused_without_echoing_it() {
        let mut config = base();
        config["pin"] = "s3cr3t-pin".into();
        let error = error_of(&config);
        assert_eq!(error.kind, ErrorKind::INVALID_CONFIG);
        assert!(error.message.contains("pin_file"), "{error}");
        assert!(error.message.contains("pin_env"), "{error}");
        assert!(!error.message.contains("s3cr3t"), "{error}");
    }

    #[test]
    fn every_field_is_checked_and_named() {
        let cases: Vec<(&str, serde_json::Value, &str)> = vec![
            ("module", serde_json::json!("relative/lib.so"), "module:"),
            ("module_sha256", serde_json::json!("abc"), "module_sha256:"),
            ("token_label", serde_json::json!(""), "token_label:"),
            (
                "token_label",
                serde_json::json!("x".repeat(33)),
                "token_label:",
            ),
            ("max_payload", serde_json::json!(0), "max_payload:"),
            ("max_sessions", serde_json::json!(0), "max_sessions:"),
            ("max_sessions", serde_json::json!("four"), "max_sessions:"),
            (
                "session_wait",
                serde_json::json!(3_600_000),
                "session_wait:",
            ),
            ("iv_source", serde_json::json!("hsm"), "iv_source:"),
            ("pin_env", serde_json::json!("A=B"), "pin_env:"),
        ];
        for (field, value, expected) in cases {
            let mut config = base();
            config[field] = value.clone();
            let error = error_of(&config);
            assert_eq!(error.kind, ErrorKind::INVALID_CONFIG, "{field}={value}");
            assert!(
                error.message.starts_with(expected),
                "{field}={value}: {error}"
            );
        }
        let mut config = base();
        config["pin_fle"] = "/x".into();
        assert!(error_of(&config).message.contains("pin_fle"));
        let mut config = base();
        config["pin_file"] = "/x".into();
        assert!(error_of(&config).message.contains("both"));
        let mut config = base();
        config.as_object_mut().unwrap().remove("pin_env");
        assert!(error_of(&config).message.contains("neither"));
        for field in ["module", "module_sha256", "token_label"] {
            let mut config = base();
            config.as_object_mut().unwrap().remove(field);
            let error = error_of(&config);
            assert!(error.message.contains(field), "{error}");
        }
        assert_eq!(parse("").unwrap_err().kind, ErrorKind::INVALID_CONFIG);
    }

    #[test]
    fn pin_file_strips_one_newline() {
        let dir = tempfile_dir();
        for (contents, expected) in [
            ("1234\n", "1234"),
            ("1234\r\n", "1234"),
            ("1234", "1234"),
            ("12 34\n\n", "12 34\n"),
        ] {
            let path = dir.join("pin");
            write_private(&path, contents.as_bytes());
            let (pin, warning) = read_pin(&PinSource::File(path.clone())).unwrap();
            assert_eq!(expose(&pin), expected);
            assert!(warning.is_none());
        }
        let path = dir.join("empty");
        write_private(&path, b"\n");
        let error = read_pin(&PinSource::File(path)).unwrap_err();
        assert!(error.message.contains("empty"), "{error}");
        let error = read_pin(&PinSource::File(dir.join("missing"))).unwrap_err();
        assert!(error.message.contains("cannot read"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn readable_pin_files_are_reported() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile_dir();
        let path = dir.join("pin");
        write_private(&path, b"9876\n");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (_, warning) = read_pin(&PinSource::File(path)).unwrap();
        assert!(warning.unwrap().contains("chmod 600"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn pin_env_is_read() {
        std::env::set_var("KB_TEST_PKCS11_PIN_SET", "4321");
        let (pin, _) = read_pin(&PinSource::Env("KB_TEST_PKCS11_PIN_SET".into())).unwrap();
        assert_eq!(expose(&pin), "4321");
        let error = read_pin(&PinSource::Env("KB_TEST_PKCS11_PIN_UNSET_XYZ".into())).unwrap_err();
        assert!(error.message.contains("not set"), "{error}");
    }

    #[test]
    fn the_example_drop_in_is_a_valid_config() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/plugins.d/hsm.toml"
        );
        let drop_in: toml::Table = std::fs::read_to_string(path).unwrap().parse().unwrap();
        for field in [
            "name",
            "library",
            "sha256",
            "tenants",
            "timeout",
            "create_timeout",
            "concurrency",
            "on_unavailable",
            "bind",
        ] {
            assert!(drop_in.contains_key(field), "{field}");
        }
        // As the host does: the [config] table, as JSON.
        let config = serde_json::to_value(&drop_in["config"]).unwrap();
        let parsed = parse(&config.to_string()).unwrap();
        assert_eq!(parsed.token_label, "keybroker");
        assert_eq!(parsed.pin, PinSource::File("/etc/keybroker/hsm.pin".into()));
        assert_eq!(parsed.max_payload, DEFAULT_MAX_PAYLOAD);
        assert_eq!(parsed.max_sessions, DEFAULT_MAX_SESSIONS);
        assert_eq!(
            parsed.session_wait,
            Duration::from_millis(DEFAULT_SESSION_WAIT_MS)
        );
        assert_eq!(parsed.iv_source, IvSource::Broker);
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "keybroker-pkcs11-config-test-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir(&dir).unwrap();
        dir
    }

    fn write_private(path: &Path, contents: &[u8]) {
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .unwrap();
        file.write_all(contents).unwrap();
    }
}
