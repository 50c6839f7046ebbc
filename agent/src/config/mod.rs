//! The agent's config file: TOML, unknown fields refused, parsed and validated into
//! [`Config`]. Errors name the file, the field and the reason; none quotes a secret (the
//! file holds no secrets, only where to find them).
//!
//! ```toml
//! agent_id = "acme-dc1"                      # the id the broker's gateway knows it by
//! broker = "wss://broker.example:8201"       # wss only: egress is always TLS
//! broker_ca = "/etc/keybroker-agent/broker-ca.pem"   # the only CA trusted for the broker
//! secret_file = "/etc/keybroker-agent/secret"        # base64 of ≥ 32 random bytes, mode 600
//! heartbeat_interval = "5s"                  # optional, default 5s
//! reconnect_max_delay = "30s"                # optional, default 30s
//! rate_limit = { per_second = 1000, burst = 1000 }   # optional, these are the defaults
//!
//! [[keys]]
//! name = "data"
//! file = "/etc/keybroker-agent/data.key"     # raw 32 bytes or base64, mode 600
//!
//! [[keys]]
//! name = "logs"
//! env = "KEYBROKER_AGENT_KEY_LOGS"           # base64
//!
//! [[keys]]
//! name = "kek"
//! hsm = "label:acme-kek"                     # or "id:<hex CKA_ID>": an AES-256 key in [hsm]
//!
//! [hsm]                                      # optional: only for keys with `hsm`
//! module = "/usr/lib/softhsm/libsofthsm2.so" # the PKCS#11 module
//! module_sha256 = "<sha256sum of the module>"
//! token_label = "acme"
//! pin_file = "/etc/keybroker-agent/hsm.pin"  # mode 600; or pin_env = "VARIABLE"
//!
//! [[allow]]
//! tenant = "acme"                            # exactly as the broker names the tenant
//! keys = ["data", "logs"]                    # or ["*"]: every key above
//! ```
//!
//! Relative paths are taken relative to the config file's directory.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use keybroker_agent_protocol::{AgentIdentity, IdentityError};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::broker_url::BrokerUrl;
use crate::clock::Clock;
use crate::files::{read_private_file, PrivateFileError};
use crate::hsm::{Hsm, HsmConfig, HsmError, PinSource};
use crate::keys::{validate_key_name, KeyError, KeySource, KeyStore};
use crate::policy::{Allowlist, RateLimit};
use crate::service::Service;

/// Default interval of the agent's heartbeats (the broker's `welcome` may set another).
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);

/// Default cap on the delay between reconnection attempts.
pub const DEFAULT_RECONNECT_MAX_DELAY: Duration = Duration::from_secs(30);

/// Longest accepted agent id.
const MAX_AGENT_ID_CHARS: usize = 128;

/// A PKCS#11 token label is a 32-byte field.
const MAX_TOKEN_LABEL_BYTES: usize = 32;

/// Why the config could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The file is not valid TOML, misses a required field, or has an unknown one (the
    /// message names the field and the line).
    #[error("{}: {message}", path.display())]
    Parse {
        /// The config file.
        path: PathBuf,
        /// The TOML parser's message.
        message: String,
    },
    /// A field has a value the agent cannot use.
    #[error("{}: {field}: {reason}", path.display())]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// The field, e.g. `broker` or `allow[1].keys`.
        field: String,
        /// Why.
        reason: String,
    },
    /// A command-line flag is missing or has a value the agent cannot use.
    #[error("{flag}: {reason}")]
    InvalidFlag {
        /// The flag, with its argument when there may be several, e.g. `--allow acme=dtaa`.
        flag: String,
        /// Why.
        reason: String,
    },
    /// The agent secret file could not be read.
    #[error("{}: secret_file {}: cannot read: {source}", path.display(), secret_file.display())]
    SecretRead {
        /// The config file.
        path: PathBuf,
        /// The secret file.
        secret_file: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The agent secret is unusable: its file is readable by others, or it is not base64 of
    /// at least 32 bytes.
    #[error("{}: secret_file {}: {reason}", path.display(), secret_file.display())]
    Secret {
        /// The config file.
        path: PathBuf,
        /// The secret file.
        secret_file: PathBuf,
        /// Why, quoting nothing of the secret.
        reason: String,
    },
    /// A key could not be loaded.
    #[error("{}: keys: {source}", path.display())]
    Key {
        /// The config file.
        path: PathBuf,
        /// What went wrong with the key.
        #[source]
        source: KeyError,
    },
    /// The HSM could not be opened (PIN file, module, token or login).
    #[error("{}: hsm: {source}", path.display())]
    Hsm {
        /// The config file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: HsmError,
    },
}

/// The file as written (TOML), before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    agent_id: String,
    broker: String,
    broker_ca: PathBuf,
    secret_file: PathBuf,
    #[serde(default, with = "humantime_serde")]
    heartbeat_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    reconnect_max_delay: Option<Duration>,
    #[serde(default)]
    rate_limit: Option<RateLimitFile>,
    #[serde(default)]
    keys: Vec<KeyFile>,
    #[serde(default)]
    allow: Vec<AllowFile>,
    #[serde(default)]
    hsm: Option<HsmFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HsmFile {
    module: PathBuf,
    module_sha256: String,
    token_label: String,
    #[serde(default)]
    pin_file: Option<PathBuf>,
    #[serde(default)]
    pin_env: Option<String>,
    /// Accepted by the parser only to be refused with a useful message: as an unknown field
    /// the TOML parser's error would quote the line, PIN included. Its value is never read.
    #[serde(default)]
    pin: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitFile {
    per_second: u32,
    burst: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    name: String,
    file: Option<PathBuf>,
    env: Option<String>,
    hsm: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowFile {
    tenant: String,
    keys: Vec<String>,
}

/// One configured key: its name and where its bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyConfig {
    /// The name the broker asks for (`Request.keyId`).
    pub name: String,
    /// Where the key is.
    pub source: KeySource,
}

/// The validated config. Holds no secret: the secret and the keys are read from their
/// files or variables by [`Config::identity`] and [`Config::key_store`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Where this config came from (for error messages).
    pub path: PathBuf,
    /// The agent's id.
    pub agent_id: String,
    /// The broker's agent gateway, a `wss://` URL.
    pub broker: String,
    /// The CA certificate(s) the broker's TLS certificate must chain to; nothing else is
    /// trusted for the broker.
    pub broker_ca: PathBuf,
    /// The agent secret (base64 of ≥ 32 bytes).
    pub secret_file: PathBuf,
    /// The agent's heartbeat interval until the broker's `welcome` sets one.
    pub heartbeat_interval: Duration,
    /// The longest wait between reconnection attempts.
    pub reconnect_max_delay: Duration,
    /// The rate cap.
    pub rate_limit: RateLimit,
    /// The keys.
    pub keys: Vec<KeyConfig>,
    /// Who may use which key.
    pub allowlist: Allowlist,
    /// The HSM holding the keys whose source is [`KeySource::Hsm`], if any.
    pub hsm: Option<HsmConfig>,
}

impl Config {
    /// Reads, parses and validates the config file at `path`, and checks that `broker_ca`
    /// is a readable file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config = Self::parse(&text, path)?;
        config.check_broker_ca(&FileFields { path })?;
        Ok(config)
    }

    fn check_broker_ca(&self, fields: &dyn FieldNames) -> Result<(), ConfigError> {
        match std::fs::File::open(&self.broker_ca) {
            Ok(_) => Ok(()),
            Err(error) => Err(fields.invalid(
                Field::BrokerCa,
                format!("cannot read {}: {error}", self.broker_ca.display()),
            )),
        }
    }

    /// Parses and validates config text that came from `path` (used in messages and to
    /// resolve relative paths). Reads no other file.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let file: ConfigFile = toml::from_str(text).map_err(|error| ConfigError::Parse {
            path: path.to_owned(),
            message: error.to_string().trim_end().to_owned(),
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        Self::validate(file, path, base, &FileFields { path })
    }

    /// Validates `file` (from the config file or from flags): the one place the rules are.
    /// Relative paths are taken relative to `base`; `fields` names fields in errors.
    fn validate(
        file: ConfigFile,
        path: &Path,
        base: &Path,
        fields: &dyn FieldNames,
    ) -> Result<Self, ConfigError> {
        let resolve = |relative: &Path| base.join(relative);
        let invalid = |field: Field, reason: String| fields.invalid(field, reason);

        check_agent_id(&file.agent_id).map_err(|reason| invalid(Field::AgentId, reason))?;
        BrokerUrl::parse(&file.broker)
            .map_err(|error| invalid(Field::Broker, error.to_string()))?;
        for (field, value) in [
            (Field::BrokerCa, &file.broker_ca),
            (Field::SecretFile, &file.secret_file),
        ] {
            if value.as_os_str().is_empty() {
                return Err(invalid(field, "the path is empty".to_owned()));
            }
        }

        let heartbeat_interval = file
            .heartbeat_interval
            .unwrap_or(DEFAULT_HEARTBEAT_INTERVAL);
        if !(Duration::from_millis(100)..=Duration::from_secs(600)).contains(&heartbeat_interval) {
            return Err(invalid(
                Field::HeartbeatInterval,
                "must be between 100ms and 10m".to_owned(),
            ));
        }
        let reconnect_max_delay = file
            .reconnect_max_delay
            .unwrap_or(DEFAULT_RECONNECT_MAX_DELAY);
        if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&reconnect_max_delay)
        {
            return Err(invalid(
                Field::ReconnectMaxDelay,
                "must be between 100ms and 1h".to_owned(),
            ));
        }

        let rate_limit = match file.rate_limit {
            None => RateLimit::default(),
            Some(RateLimitFile { per_second, burst }) => {
                if per_second == 0 {
                    return Err(invalid(
                        Field::RatePerSecond,
                        "must be at least 1".to_owned(),
                    ));
                }
                if burst == 0 {
                    return Err(invalid(Field::RateBurst, "must be at least 1".to_owned()));
                }
                RateLimit { per_second, burst }
            }
        };

        let hsm = file
            .hsm
            .map(|hsm| validate_hsm(hsm, &resolve, &invalid))
            .transpose()?;

        if file.keys.is_empty() {
            return Err(invalid(
                Field::Keys,
                "no key configured: add a [[keys]] entry with name and file, env or hsm".to_owned(),
            ));
        }
        let mut keys: Vec<KeyConfig> = Vec::with_capacity(file.keys.len());
        for (index, entry) in file.keys.into_iter().enumerate() {
            validate_key_name(&entry.name)
                .map_err(|error| invalid(Field::KeyName(index), error.to_string()))?;
            if keys.iter().any(|key| key.name == entry.name) {
                return Err(invalid(
                    Field::KeyName(index),
                    format!("key {:?} is defined more than once", entry.name),
                ));
            }
            let source = match (entry.file, entry.env, entry.hsm) {
                (Some(file), None, None) if !file.as_os_str().is_empty() => {
                    KeySource::File(resolve(&file))
                }
                (None, Some(variable), None)
                    if !variable.is_empty() && !variable.contains(['=', '\0']) =>
                {
                    KeySource::Env(variable)
                }
                (None, None, Some(backend_key)) => {
                    check_backend_key(&backend_key)
                        .map_err(|reason| invalid(Field::KeyHsm(index), reason))?;
                    if hsm.is_none() {
                        return Err(invalid(
                            Field::KeyHsm(index),
                            format!(
                                "key {:?} is in an HSM, but no HSM is configured: add the \
                                 [hsm] table (module, module_sha256, token_label, pin_file \
                                 or pin_env) or the --hsm-* flags",
                                entry.name
                            ),
                        ));
                    }
                    KeySource::Hsm(backend_key)
                }
                (Some(_), None, None) => {
                    return Err(invalid(
                        Field::KeyFile(index),
                        "the path is empty".to_owned(),
                    ))
                }
                (None, Some(_), None) => {
                    return Err(invalid(
                        Field::KeyEnv(index),
                        "not a usable environment variable name".to_owned(),
                    ))
                }
                _ => {
                    return Err(invalid(
                        Field::Key(index),
                        format!("key {:?}: give exactly one of file, env or hsm", entry.name),
                    ))
                }
            };
            keys.push(KeyConfig {
                name: entry.name,
                source,
            });
        }

        if file.allow.is_empty() {
            return Err(invalid(
                Field::Allow,
                "no tenant is allowed any key, so every request would be refused: add an \
                 [[allow]] entry with tenant and keys"
                    .to_owned(),
            ));
        }
        let mut allowlist = Allowlist::new();
        for (index, entry) in file.allow.iter().enumerate() {
            if let Some(unknown) = entry
                .keys
                .iter()
                .find(|name| *name != "*" && !keys.iter().any(|key| &key.name == *name))
            {
                return Err(invalid(
                    Field::AllowKeys(index),
                    format!("no key named {unknown:?} is configured in [[keys]]"),
                ));
            }
            allowlist
                .allow(&entry.tenant, &entry.keys)
                .map_err(|error| invalid(Field::AllowEntry(index), error.to_string()))?;
        }

        Ok(Self {
            path: path.to_owned(),
            agent_id: file.agent_id,
            broker: file.broker,
            broker_ca: resolve(&file.broker_ca),
            secret_file: resolve(&file.secret_file),
            heartbeat_interval,
            reconnect_max_delay,
            rate_limit,
            keys,
            allowlist,
            hsm,
        })
    }

    /// Reads the agent secret (owner-only file, base64 of at least 32 bytes) and derives the
    /// agent's identity from it.
    pub fn identity(&self) -> Result<AgentIdentity, ConfigError> {
        read_identity(&self.path, &self.secret_file)
    }

    /// Loads every configured key: reads the key files and variables, and, when a key is in
    /// the HSM, opens the HSM (one session pool for all its keys) and binds each HSM key once.
    /// `env` looks up environment variables (pass `|name| std::env::var_os(name)`); the HSM's
    /// `pin_env` is read from the process environment by the PKCS#11 backend.
    pub fn key_store(
        &self,
        env: &dyn Fn(&str) -> Option<OsString>,
    ) -> Result<KeyStore, ConfigError> {
        let uses_hsm = self
            .keys
            .iter()
            .any(|key| matches!(key.source, KeySource::Hsm(_)));
        let hsm = match &self.hsm {
            Some(config) if uses_hsm => Some(Arc::new(Hsm::open(config).map_err(|source| {
                ConfigError::Hsm {
                    path: self.path.clone(),
                    source,
                }
            })?)),
            _ => None,
        };
        KeyStore::load_with_hsm(
            self.keys.iter().map(|key| (key.name.as_str(), &key.source)),
            env,
            hsm.as_ref(),
        )
        .map_err(|source| ConfigError::Key {
            path: self.path.clone(),
            source,
        })
    }

    /// The request handler for this config: its keys (loaded now), allowlist and rate cap.
    pub fn service(
        &self,
        env: &dyn Fn(&str) -> Option<OsString>,
        clock: Arc<dyn Clock>,
    ) -> Result<Service, ConfigError> {
        Ok(Service::new(
            self.agent_id.clone(),
            self.key_store(env)?,
            self.allowlist.clone(),
            self.rate_limit,
            clock,
        ))
    }
}

/// A field of the config, for error messages: named as in the file (`keys[1].name`) or as
/// the flag that set it (`--key-file logs=/x`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    AgentId,
    Broker,
    BrokerCa,
    SecretFile,
    HeartbeatInterval,
    ReconnectMaxDelay,
    RatePerSecond,
    RateBurst,
    Keys,
    Key(usize),
    KeyName(usize),
    KeyFile(usize),
    KeyEnv(usize),
    Allow,
    AllowEntry(usize),
    AllowKeys(usize),
    KeyHsm(usize),
    HsmModule,
    HsmModuleSha256,
    HsmTokenLabel,
    HsmPin,
    HsmPinFile,
    HsmPinEnv,
}

/// How a config source names its fields in errors.
trait FieldNames {
    /// The error for `field` having an unusable value.
    fn invalid(&self, field: Field, reason: String) -> ConfigError;
}

/// Fields of the config file, named as written there.
struct FileFields<'a> {
    path: &'a Path,
}

impl FieldNames for FileFields<'_> {
    fn invalid(&self, field: Field, reason: String) -> ConfigError {
        let field = match field {
            Field::AgentId => "agent_id".to_owned(),
            Field::Broker => "broker".to_owned(),
            Field::BrokerCa => "broker_ca".to_owned(),
            Field::SecretFile => "secret_file".to_owned(),
            Field::HeartbeatInterval => "heartbeat_interval".to_owned(),
            Field::ReconnectMaxDelay => "reconnect_max_delay".to_owned(),
            Field::RatePerSecond => "rate_limit.per_second".to_owned(),
            Field::RateBurst => "rate_limit.burst".to_owned(),
            Field::Keys => "keys".to_owned(),
            Field::Key(index) => format!("keys[{index}]"),
            Field::KeyName(index) => format!("keys[{index}].name"),
            Field::KeyFile(index) => format!("keys[{index}].file"),
            Field::KeyEnv(index) => format!("keys[{index}].env"),
            Field::Allow => "allow".to_owned(),
            Field::AllowEntry(index) => format!("allow[{index}]"),
            Field::AllowKeys(index) => format!("allow[{index}].keys"),
            Field::KeyHsm(index) => format!("keys[{index}].hsm"),
            Field::HsmModule => "hsm.module".to_owned(),
            Field::HsmModuleSha256 => "hsm.module_sha256".to_owned(),
            Field::HsmTokenLabel => "hsm.token_label".to_owned(),
            Field::HsmPin => "hsm.pin_file/hsm.pin_env".to_owned(),
            Field::HsmPinFile => "hsm.pin_file".to_owned(),
            Field::HsmPinEnv => "hsm.pin_env".to_owned(),
        };
        ConfigError::Invalid {
            path: self.path.to_owned(),
            field,
            reason,
        }
    }
}

/// Reads the agent secret in `secret_file` (owner-only, base64 of at least 32 bytes) and
/// derives the identity; errors name `origin` (the config file, or the command line).
fn read_identity(origin: &Path, secret_file: &Path) -> Result<AgentIdentity, ConfigError> {
    let secret_error = |reason: String| ConfigError::Secret {
        path: origin.to_owned(),
        secret_file: secret_file.to_owned(),
        reason,
    };
    let contents = read_private_file(secret_file).map_err(|error| match error {
        PrivateFileError::Io(source) => ConfigError::SecretRead {
            path: origin.to_owned(),
            secret_file: secret_file.to_owned(),
            source,
        },
        PrivateFileError::Permissions(mode) => secret_error(format!(
            "accessible to group or others (mode {mode:o}); chmod 600 it"
        )),
    })?;
    let trimmed = contents.trim_ascii();
    let mut secret = Zeroizing::new(Vec::with_capacity(base64::decoded_len_estimate(
        trimmed.len(),
    )));
    STANDARD.decode_vec(trimmed, &mut secret).map_err(|_| {
        secret_error(
            "not base64 (standard alphabet, padded); make one with \
             `openssl rand -base64 32`"
                .to_owned(),
        )
    })?;
    AgentIdentity::from_secret(&secret).map_err(|error| match error {
        IdentityError::SecretTooShort { minimum } => secret_error(format!(
            "decodes to {} bytes; the agent secret must be at least {minimum} bytes \
             (256 bits): make one with `openssl rand -base64 32`",
            secret.len()
        )),
        other => secret_error(other.to_string()),
    })
}

/// What the operator must give the broker's operator for this agent: its id and pin (the
/// SHA-256 of its public key: not a secret, and useless for logging in).
pub fn pin_instructions(agent_id: &str, identity: &AgentIdentity) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# keybroker-agent {agent_id:?}: pin this agent in the broker's agent gateway drop-in."
    );
    let _ = writeln!(
        text,
        "# The pin is the SHA-256 of the agent's public key; it is not a secret."
    );
    let _ = writeln!(text, "agent_id = {agent_id:?}");
    let _ = writeln!(text, "pin = {:?}", identity.pin());
    text
}

/// Checks the `[hsm]` table (reads no file: the PIN file and the module are checked when the
/// HSM is opened).
fn validate_hsm(
    file: HsmFile,
    resolve: &dyn Fn(&Path) -> PathBuf,
    invalid: &dyn Fn(Field, String) -> ConfigError,
) -> Result<HsmConfig, ConfigError> {
    if file.pin.is_some() {
        return Err(invalid(
            Field::HsmPin,
            "a PIN written in the config is refused: use pin_file (mode 600) or pin_env".to_owned(),
        ));
    }
    if file.module.as_os_str().is_empty() {
        return Err(invalid(Field::HsmModule, "the path is empty".to_owned()));
    }
    let module_sha256 = file.module_sha256.to_ascii_lowercase();
    if module_sha256.len() != 64 || !module_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid(
            Field::HsmModuleSha256,
            "must be 64 hex digits (sha256sum of the module file)".to_owned(),
        ));
    }
    if file.token_label.is_empty() || file.token_label.len() > MAX_TOKEN_LABEL_BYTES {
        return Err(invalid(
            Field::HsmTokenLabel,
            format!("must be 1 to {MAX_TOKEN_LABEL_BYTES} bytes"),
        ));
    }
    let pin = match (file.pin_file, file.pin_env) {
        (Some(path), None) if !path.as_os_str().is_empty() => PinSource::File(resolve(&path)),
        (None, Some(variable)) if !variable.is_empty() && !variable.contains(['=', '\0']) => {
            PinSource::Env(variable)
        }
        (Some(_), None) => return Err(invalid(Field::HsmPinFile, "the path is empty".to_owned())),
        (None, Some(_)) => {
            return Err(invalid(
                Field::HsmPinEnv,
                "not a usable environment variable name".to_owned(),
            ))
        }
        _ => {
            return Err(invalid(
                Field::HsmPin,
                "give exactly one of pin_file or pin_env (a PIN in the config is refused)"
                    .to_owned(),
            ))
        }
    };
    Ok(HsmConfig {
        module: resolve(&file.module),
        module_sha256,
        token_label: file.token_label,
        pin,
    })
}

/// `label:<CKA_LABEL>` or `id:<hex CKA_ID>`, non-empty.
fn check_backend_key(backend_key: &str) -> Result<(), String> {
    let usable = if let Some(label) = backend_key.strip_prefix("label:") {
        !label.is_empty()
    } else if let Some(id) = backend_key.strip_prefix("id:") {
        !id.is_empty() && id.len() % 2 == 0 && id.bytes().all(|b| b.is_ascii_hexdigit())
    } else {
        false
    };
    if usable {
        Ok(())
    } else {
        Err(
            "name the HSM object as label:<CKA_LABEL> or id:<hex CKA_ID>, e.g. label:acme-kek"
                .to_owned(),
        )
    }
}

fn check_agent_id(agent_id: &str) -> Result<(), String> {
    if agent_id.is_empty() {
        return Err("it is empty".to_owned());
    }
    if agent_id.chars().count() > MAX_AGENT_ID_CHARS {
        return Err("it is longer than 128 characters".to_owned());
    }
    if !agent_id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err("use only letters, digits, '.', '_' and '-'".to_owned());
    }
    Ok(())
}

mod flags;

pub use flags::{identity_from_flags, Flags, COMMAND_LINE, DEFAULT_KEY_NAME};

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;
