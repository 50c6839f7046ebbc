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

use crate::clock::Clock;
use crate::files::{read_private_file, PrivateFileError};
use crate::keys::{validate_key_name, KeyError, KeySource, KeyStore};
use crate::policy::{Allowlist, RateLimit};
use crate::service::Service;

/// Default interval of the agent's heartbeats (the broker's `welcome` may set another).
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);

/// Default cap on the delay between reconnection attempts.
pub const DEFAULT_RECONNECT_MAX_DELAY: Duration = Duration::from_secs(30);

/// Longest accepted agent id.
const MAX_AGENT_ID_CHARS: usize = 128;

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
        if let Err(error) = std::fs::File::open(&config.broker_ca) {
            return Err(config.invalid(
                "broker_ca",
                format!("cannot read {}: {error}", config.broker_ca.display()),
            ));
        }
        Ok(config)
    }

    /// Parses and validates config text that came from `path` (used in messages and to
    /// resolve relative paths). Reads no other file.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let file: ConfigFile = toml::from_str(text).map_err(|error| ConfigError::Parse {
            path: path.to_owned(),
            message: error.to_string().trim_end().to_owned(),
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        let resolve = |relative: &Path| base.join(relative);
        let invalid = |field: &str, reason: String| ConfigError::Invalid {
            path: path.to_owned(),
            field: field.to_owned(),
            reason,
        };

        check_agent_id(&file.agent_id).map_err(|reason| invalid("agent_id", reason))?;
        check_broker_url(&file.broker).map_err(|reason| invalid("broker", reason))?;
        for (field, value) in [
            ("broker_ca", &file.broker_ca),
            ("secret_file", &file.secret_file),
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
                "heartbeat_interval",
                "must be between 100ms and 10m".to_owned(),
            ));
        }
        let reconnect_max_delay = file
            .reconnect_max_delay
            .unwrap_or(DEFAULT_RECONNECT_MAX_DELAY);
        if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&reconnect_max_delay)
        {
            return Err(invalid(
                "reconnect_max_delay",
                "must be between 100ms and 1h".to_owned(),
            ));
        }

        let rate_limit = match file.rate_limit {
            None => RateLimit::default(),
            Some(RateLimitFile { per_second, burst }) => {
                if per_second == 0 {
                    return Err(invalid(
                        "rate_limit.per_second",
                        "must be at least 1".to_owned(),
                    ));
                }
                if burst == 0 {
                    return Err(invalid("rate_limit.burst", "must be at least 1".to_owned()));
                }
                RateLimit { per_second, burst }
            }
        };

        if file.keys.is_empty() {
            return Err(invalid(
                "keys",
                "no key configured: add a [[keys]] entry with name and file or env".to_owned(),
            ));
        }
        let mut keys: Vec<KeyConfig> = Vec::with_capacity(file.keys.len());
        for (index, entry) in file.keys.into_iter().enumerate() {
            validate_key_name(&entry.name)
                .map_err(|error| invalid(&format!("keys[{index}].name"), error.to_string()))?;
            if keys.iter().any(|key| key.name == entry.name) {
                return Err(invalid(
                    &format!("keys[{index}].name"),
                    format!("key {:?} is defined more than once", entry.name),
                ));
            }
            let source = match (entry.file, entry.env) {
                (Some(file), None) if !file.as_os_str().is_empty() => {
                    KeySource::File(resolve(&file))
                }
                (None, Some(variable))
                    if !variable.is_empty() && !variable.contains(['=', '\0']) =>
                {
                    KeySource::Env(variable)
                }
                (Some(_), None) => {
                    return Err(invalid(
                        &format!("keys[{index}].file"),
                        "the path is empty".to_owned(),
                    ))
                }
                (None, Some(_)) => {
                    return Err(invalid(
                        &format!("keys[{index}].env"),
                        "not a usable environment variable name".to_owned(),
                    ))
                }
                _ => {
                    return Err(invalid(
                        &format!("keys[{index}]"),
                        format!("key {:?}: give exactly one of file or env", entry.name),
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
                "allow",
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
                    &format!("allow[{index}].keys"),
                    format!("no key named {unknown:?} is configured in [[keys]]"),
                ));
            }
            allowlist
                .allow(&entry.tenant, &entry.keys)
                .map_err(|error| invalid(&format!("allow[{index}]"), error.to_string()))?;
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
        })
    }

    fn invalid(&self, field: &str, reason: String) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.clone(),
            field: field.to_owned(),
            reason,
        }
    }

    /// Reads the agent secret (owner-only file, base64 of at least 32 bytes) and derives the
    /// agent's identity from it.
    pub fn identity(&self) -> Result<AgentIdentity, ConfigError> {
        let secret_error = |reason: String| ConfigError::Secret {
            path: self.path.clone(),
            secret_file: self.secret_file.clone(),
            reason,
        };
        let contents = read_private_file(&self.secret_file).map_err(|error| match error {
            PrivateFileError::Io(source) => ConfigError::SecretRead {
                path: self.path.clone(),
                secret_file: self.secret_file.clone(),
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

    /// Loads every configured key. `env` looks up environment variables (pass
    /// `|name| std::env::var_os(name)`).
    pub fn key_store(
        &self,
        env: &dyn Fn(&str) -> Option<OsString>,
    ) -> Result<KeyStore, ConfigError> {
        KeyStore::load(
            self.keys.iter().map(|key| (key.name.as_str(), &key.source)),
            env,
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

fn check_broker_url(url: &str) -> Result<(), String> {
    let Some(rest) = url.strip_prefix("wss://") else {
        return Err(if url.starts_with("ws://") {
            "the connection must use TLS: use wss://, not ws://".to_owned()
        } else {
            "must be a wss:// URL, e.g. wss://broker.example:8201".to_owned()
        });
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.starts_with(':') {
        return Err("the URL names no host".to_owned());
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the URL contains whitespace".to_owned());
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;
