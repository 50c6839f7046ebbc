//! The config from command-line flags instead of a file: the same [`Config`], validated by
//! the same code, with errors naming the flag.

use std::path::{Path, PathBuf};
use std::time::Duration;

use keybroker_agent_protocol::AgentIdentity;

use super::{
    check_agent_id, read_identity, AllowFile, Config, ConfigError, ConfigFile, Field, FieldNames,
    KeyFile, RateLimitFile,
};

/// The key name of `--key-file PATH` / `--key-env VAR` given without `NAME=`.
pub const DEFAULT_KEY_NAME: &str = "default";

/// What stands in for the config file's path in messages about a flags-only config.
pub const COMMAND_LINE: &str = "command line";

/// The config as given by flags (each field is the flag of the same name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    /// `--agent-id ID`.
    pub agent_id: Option<String>,
    /// `--broker wss://host:port`.
    pub broker: Option<String>,
    /// `--broker-ca FILE`.
    pub broker_ca: Option<PathBuf>,
    /// `--secret-file FILE`.
    pub secret_file: Option<PathBuf>,
    /// `--key-file [NAME=]PATH`, repeatable (`NAME` defaults to [`DEFAULT_KEY_NAME`]).
    pub key_files: Vec<String>,
    /// `--key-env [NAME=]VAR`, repeatable.
    pub key_envs: Vec<String>,
    /// `--allow TENANT[=KEY1,KEY2]`, repeatable; without keys, every key.
    pub allow: Vec<String>,
    /// `--heartbeat-interval 5s`.
    pub heartbeat_interval: Option<Duration>,
    /// `--reconnect-max-delay 30s`.
    pub reconnect_max_delay: Option<Duration>,
    /// `--rate-limit PER_SECOND[/BURST]` (burst defaults to the per-second rate).
    pub rate_limit: Option<String>,
}

impl Config {
    /// The config the flags describe, validated like a config file (relative paths are
    /// taken relative to the working directory), with `broker_ca` checked readable. Errors
    /// name the flag.
    pub fn from_flags(flags: &Flags) -> Result<Self, ConfigError> {
        let names = FlagNames::new(flags);
        let required = |value: Option<String>, flag: &str| {
            value.ok_or_else(|| ConfigError::InvalidFlag {
                flag: flag.to_owned(),
                reason: "is required (or give the whole config with --config FILE)".to_owned(),
            })
        };
        let path_string = |path: &Option<PathBuf>| {
            path.as_ref()
                .map(|path| path.to_string_lossy().into_owned())
        };
        let agent_id = required(flags.agent_id.clone(), "--agent-id")?;
        let broker = required(flags.broker.clone(), "--broker")?;
        let broker_ca = required(path_string(&flags.broker_ca), "--broker-ca")?;
        let secret_file = required(path_string(&flags.secret_file), "--secret-file")?;
        if flags.key_files.is_empty() && flags.key_envs.is_empty() {
            return Err(ConfigError::InvalidFlag {
                flag: "--key-file/--key-env".to_owned(),
                reason: "no key given: add --key-file [NAME=]PATH or --key-env [NAME=]VAR"
                    .to_owned(),
            });
        }
        if flags.allow.is_empty() {
            return Err(ConfigError::InvalidFlag {
                flag: "--allow".to_owned(),
                reason: "no tenant is allowed any key: add --allow TENANT[=KEY1,KEY2]".to_owned(),
            });
        }
        let rate_limit = flags
            .rate_limit
            .as_deref()
            .map(|text| {
                parse_rate_limit(text).ok_or_else(|| ConfigError::InvalidFlag {
                    flag: format!("--rate-limit {text}"),
                    reason: "expected PER_SECOND or PER_SECOND/BURST, e.g. 1000/2000".to_owned(),
                })
            })
            .transpose()?;

        let mut keys: Vec<KeyFile> = Vec::new();
        for argument in &flags.key_files {
            let (name, path) = split_name(argument);
            keys.push(KeyFile {
                name,
                file: Some(PathBuf::from(path)),
                env: None,
            });
        }
        for argument in &flags.key_envs {
            let (name, variable) = split_name(argument);
            keys.push(KeyFile {
                name,
                file: None,
                env: Some(variable.to_owned()),
            });
        }
        let allow = flags
            .allow
            .iter()
            .map(|argument| match argument.split_once('=') {
                None => AllowFile {
                    tenant: argument.clone(),
                    keys: vec!["*".to_owned()],
                },
                Some((tenant, keys)) => AllowFile {
                    tenant: tenant.to_owned(),
                    keys: keys
                        .split(',')
                        .filter(|key| !key.is_empty())
                        .map(str::to_owned)
                        .collect(),
                },
            })
            .collect();

        let file = ConfigFile {
            agent_id,
            broker,
            broker_ca: PathBuf::from(broker_ca),
            secret_file: PathBuf::from(secret_file),
            heartbeat_interval: flags.heartbeat_interval,
            reconnect_max_delay: flags.reconnect_max_delay,
            rate_limit,
            keys,
            allow,
        };
        let config = Self::validate(file, Path::new(COMMAND_LINE), Path::new(""), &names)?;
        config.check_broker_ca(&names)?;
        Ok(config)
    }
}

/// The agent's id and identity from `--agent-id` and `--secret-file` alone (what
/// `keybroker-agent pin` needs), checked like the full config.
pub fn identity_from_flags(
    agent_id: Option<&str>,
    secret_file: Option<&Path>,
) -> Result<(String, AgentIdentity), ConfigError> {
    let missing = |flag: &str| ConfigError::InvalidFlag {
        flag: flag.to_owned(),
        reason: "is required (or give the whole config with --config FILE)".to_owned(),
    };
    let agent_id = agent_id.ok_or_else(|| missing("--agent-id"))?;
    let secret_file = secret_file.ok_or_else(|| missing("--secret-file"))?;
    check_agent_id(agent_id).map_err(|reason| ConfigError::InvalidFlag {
        flag: "--agent-id".to_owned(),
        reason,
    })?;
    let identity = read_identity(Path::new(COMMAND_LINE), secret_file)?;
    Ok((agent_id.to_owned(), identity))
}

/// `NAME=VALUE` → (`NAME`, `VALUE`); `VALUE` alone → ([`DEFAULT_KEY_NAME`], `VALUE`).
fn split_name(argument: &str) -> (String, &str) {
    match argument.split_once('=') {
        Some((name, value)) => (name.to_owned(), value),
        None => (DEFAULT_KEY_NAME.to_owned(), argument),
    }
}

/// `PER_SECOND[/BURST]`; the burst defaults to the rate. Zero is left for validation to
/// refuse, with the same message as in a file.
fn parse_rate_limit(text: &str) -> Option<RateLimitFile> {
    let (per_second, burst) = match text.split_once('/') {
        Some((per_second, burst)) => (per_second.trim().parse().ok()?, burst.trim().parse().ok()?),
        None => {
            let per_second = text.trim().parse().ok()?;
            (per_second, per_second)
        }
    };
    Some(RateLimitFile { per_second, burst })
}

/// Names fields by the flag (and argument) that set them.
struct FlagNames {
    /// For each key in order (`--key-file` ones first): the flag and its argument.
    keys: Vec<String>,
    /// For each `--allow`: the flag and its argument.
    allow: Vec<String>,
}

impl FlagNames {
    fn new(flags: &Flags) -> Self {
        let keys = flags
            .key_files
            .iter()
            .map(|argument| format!("--key-file {argument}"))
            .chain(
                flags
                    .key_envs
                    .iter()
                    .map(|argument| format!("--key-env {argument}")),
            )
            .collect();
        let allow = flags
            .allow
            .iter()
            .map(|argument| format!("--allow {argument}"))
            .collect();
        Self { keys, allow }
    }
}

impl FieldNames for FlagNames {
    fn invalid(&self, field: Field, reason: String) -> ConfigError {
        let indexed = |list: &[String], index: usize, fallback: &str| {
            list.get(index)
                .cloned()
                .unwrap_or_else(|| fallback.to_owned())
        };
        let flag = match field {
            Field::AgentId => "--agent-id".to_owned(),
            Field::Broker => "--broker".to_owned(),
            Field::BrokerCa => "--broker-ca".to_owned(),
            Field::SecretFile => "--secret-file".to_owned(),
            Field::HeartbeatInterval => "--heartbeat-interval".to_owned(),
            Field::ReconnectMaxDelay => "--reconnect-max-delay".to_owned(),
            Field::RatePerSecond | Field::RateBurst => "--rate-limit".to_owned(),
            Field::Keys => "--key-file/--key-env".to_owned(),
            Field::Key(index)
            | Field::KeyName(index)
            | Field::KeyFile(index)
            | Field::KeyEnv(index) => indexed(&self.keys, index, "--key-file/--key-env"),
            Field::Allow => "--allow".to_owned(),
            Field::AllowEntry(index) | Field::AllowKeys(index) => {
                indexed(&self.allow, index, "--allow")
            }
        };
        ConfigError::InvalidFlag { flag, reason }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::keys::KeySource;
    use crate::policy::RateLimit;

    fn flags(ca: &Path) -> Flags {
        Flags {
            agent_id: Some("acme-dc1".into()),
            broker: Some("wss://broker.example:8201".into()),
            broker_ca: Some(ca.to_owned()),
            secret_file: Some("secret".into()),
            key_files: vec!["data=keys/data.key".into(), "other.key".into()],
            key_envs: vec!["logs=AGENT_KEY_LOGS".into()],
            allow: vec!["acme=data,logs".into(), "acme-ops".into()],
            heartbeat_interval: Some(Duration::from_secs(2)),
            reconnect_max_delay: None,
            rate_limit: Some("50/100".into()),
        }
    }

    #[test]
    fn flags_build_the_config_a_file_would() {
        let ca = tempfile::NamedTempFile::new().unwrap();
        let config = Config::from_flags(&flags(ca.path())).unwrap();
        assert_eq!(config.agent_id, "acme-dc1");
        assert_eq!(config.broker, "wss://broker.example:8201");
        assert_eq!(config.broker_ca, ca.path());
        assert_eq!(config.secret_file, Path::new("secret"));
        assert_eq!(config.heartbeat_interval, Duration::from_secs(2));
        assert_eq!(
            config.reconnect_max_delay,
            super::super::DEFAULT_RECONNECT_MAX_DELAY
        );
        assert_eq!(
            config.rate_limit,
            RateLimit {
                per_second: 50,
                burst: 100
            }
        );
        let keys: Vec<(&str, &KeySource)> = config
            .keys
            .iter()
            .map(|key| (key.name.as_str(), &key.source))
            .collect();
        assert_eq!(
            keys,
            [
                ("data", &KeySource::File("keys/data.key".into())),
                ("default", &KeySource::File("other.key".into())),
                ("logs", &KeySource::Env("AGENT_KEY_LOGS".into())),
            ]
        );
        assert!(config.allowlist.permits("acme", "data"));
        assert!(config.allowlist.permits("acme", "logs"));
        assert!(!config.allowlist.permits("acme", "default"));
        assert!(config.allowlist.permits("acme-ops", "default"));
        assert!(!config.allowlist.permits("other", "data"));
    }

    #[test]
    fn a_rate_without_burst_uses_the_rate_as_burst() {
        let ca = tempfile::NamedTempFile::new().unwrap();
        let mut flags = flags(ca.path());
        flags.rate_limit = Some("70".into());
        let config = Config::from_flags(&flags).unwrap();
        assert_eq!(
            config.rate_limit,
            RateLimit {
                per_second: 70,
                burst: 70
            }
        );
    }

    type Change = fn(&mut Flags);

    #[test]
    fn errors_name_the_flag() {
        let ca = tempfile::NamedTempFile::new().unwrap();
        let cases: [(Change, &str); 12] = [
            (|f| f.broker = None, "--broker: is required"),
            (|f| f.agent_id = Some("a b".into()), "--agent-id: use only"),
            (
                |f| f.broker = Some("ws://x:1".into()),
                "--broker: the connection must use TLS",
            ),
            (
                |f| f.broker_ca = Some("/nonexistent/ca.pem".into()),
                "--broker-ca: cannot read /nonexistent/ca.pem",
            ),
            (
                |f| f.heartbeat_interval = Some(Duration::ZERO),
                "--heartbeat-interval: must be between",
            ),
            (
                |f| f.rate_limit = Some("fast".into()),
                "--rate-limit fast: expected PER_SECOND",
            ),
            (
                |f| f.rate_limit = Some("0/5".into()),
                "--rate-limit: must be at least 1",
            ),
            (
                |f| f.key_envs.push("data=X".into()),
                "--key-env data=X: key \"data\" is defined more than once",
            ),
            (
                |f| f.key_envs.push("A=B=C".into()),
                "--key-env A=B=C: not a usable",
            ),
            (
                |f| f.allow.push("acme".into()),
                "--allow acme: tenant \"acme\" is listed more than once",
            ),
            (
                |f| f.allow[0] = "acme=dtaa".into(),
                "--allow acme=dtaa: no key named \"dtaa\"",
            ),
            (|f| f.allow.clear(), "--allow: no tenant is allowed any key"),
        ];
        for (change, expected) in cases {
            let mut flags = flags(ca.path());
            change(&mut flags);
            let message = Config::from_flags(&flags).unwrap_err().to_string();
            assert!(message.starts_with(expected), "{expected}: {message}");
        }
        let mut no_keys = flags(ca.path());
        no_keys.key_files.clear();
        no_keys.key_envs.clear();
        let message = Config::from_flags(&no_keys).unwrap_err().to_string();
        assert!(
            message.starts_with("--key-file/--key-env: no key given"),
            "{message}"
        );
    }
}
