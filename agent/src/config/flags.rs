//! The config from command-line flags instead of a file: the same [`Config`], validated by
//! the same code, with errors naming the flag.

use std::path::{Path, PathBuf};
use std::time::Duration;

use keybroker_agent_protocol::AgentIdentity;

use super::{
    check_agent_id, read_identity, AllowFile, Config, ConfigError, ConfigFile, Field, FieldNames,
    HsmFile, KeyFile, RateLimitFile,
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
    /// `--key-hsm NAME=label:X` or `NAME=id:HEX`, repeatable: a key in the HSM.
    pub key_hsms: Vec<String>,
    /// `--hsm-module PATH`: the PKCS#11 module (the `[hsm]` table's `module`).
    pub hsm_module: Option<PathBuf>,
    /// `--hsm-module-sha256 HEX`.
    pub hsm_module_sha256: Option<String>,
    /// `--hsm-token LABEL`: the token's label.
    pub hsm_token: Option<String>,
    /// `--hsm-pin-file FILE` (mode 600).
    pub hsm_pin_file: Option<PathBuf>,
    /// `--hsm-pin-env VAR`.
    pub hsm_pin_env: Option<String>,
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
        if flags.key_files.is_empty() && flags.key_envs.is_empty() && flags.key_hsms.is_empty() {
            return Err(ConfigError::InvalidFlag {
                flag: "--key-file/--key-env".to_owned(),
                reason: "no key given: add --key-file [NAME=]PATH, --key-env [NAME=]VAR or \
                         --key-hsm NAME=label:LABEL"
                    .to_owned(),
            });
        }
        let hsm = hsm_from_flags(flags)?;
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
                hsm: None,
            });
        }
        for argument in &flags.key_envs {
            let (name, variable) = split_name(argument);
            keys.push(KeyFile {
                name,
                file: None,
                env: Some(variable.to_owned()),
                hsm: None,
            });
        }
        for argument in &flags.key_hsms {
            // `NAME=label:X`: the object's name has a ':' where a bare one would not.
            let (name, backend_key) = split_name(argument);
            keys.push(KeyFile {
                name,
                file: None,
                env: None,
                hsm: Some(backend_key.to_owned()),
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
            hsm,
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

/// The `[hsm]` table the `--hsm-*` flags describe: none without any of them; with some,
/// `--hsm-module`, `--hsm-module-sha256` and `--hsm-token` are required (the PIN flags are
/// checked by the shared validation, like `pin_file`/`pin_env`).
fn hsm_from_flags(flags: &Flags) -> Result<Option<HsmFile>, ConfigError> {
    let any = flags.hsm_module.is_some()
        || flags.hsm_module_sha256.is_some()
        || flags.hsm_token.is_some()
        || flags.hsm_pin_file.is_some()
        || flags.hsm_pin_env.is_some();
    if !any {
        return Ok(None);
    }
    let required = |value: Option<String>, flag: &str| {
        value.ok_or_else(|| ConfigError::InvalidFlag {
            flag: flag.to_owned(),
            reason: "is required with the other --hsm-* flags".to_owned(),
        })
    };
    Ok(Some(HsmFile {
        module: PathBuf::from(required(
            flags
                .hsm_module
                .as_ref()
                .map(|path| path.to_string_lossy().into_owned()),
            "--hsm-module",
        )?),
        module_sha256: required(flags.hsm_module_sha256.clone(), "--hsm-module-sha256")?,
        token_label: required(flags.hsm_token.clone(), "--hsm-token")?,
        pin_file: flags.hsm_pin_file.clone(),
        pin_env: flags.hsm_pin_env.clone(),
        pin: None,
    }))
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
            .chain(
                flags
                    .key_hsms
                    .iter()
                    .map(|argument| format!("--key-hsm {argument}")),
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
            | Field::KeyEnv(index)
            | Field::KeyHsm(index) => indexed(&self.keys, index, "--key-file/--key-env/--key-hsm"),
            Field::Allow => "--allow".to_owned(),
            Field::AllowEntry(index) | Field::AllowKeys(index) => {
                indexed(&self.allow, index, "--allow")
            }
            Field::HsmModule => "--hsm-module".to_owned(),
            Field::HsmModuleSha256 => "--hsm-module-sha256".to_owned(),
            Field::HsmTokenLabel => "--hsm-token".to_owned(),
            Field::HsmPin => "--hsm-pin-file/--hsm-pin-env".to_owned(),
            Field::HsmPinFile => "--hsm-pin-file".to_owned(),
            Field::HsmPinEnv => "--hsm-pin-env".to_owned(),
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
            ..Flags::default()
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

    /// `flags(ca)` with the `logs` key in the HSM, as `--key-hsm` and `--hsm-*` give it.
    fn hsm_flags(ca: &Path) -> Flags {
        let mut flags = flags(ca);
        flags.key_envs.clear();
        flags.key_hsms = vec!["logs=label:acme-kek".into()];
        flags.hsm_module = Some("/usr/lib/softhsm/libsofthsm2.so".into());
        flags.hsm_module_sha256 = Some("ab".repeat(32));
        flags.hsm_token = Some("acme".into());
        flags.hsm_pin_file = Some("hsm.pin".into());
        flags
    }

    #[test]
    fn hsm_flags_build_the_config_an_hsm_table_would() {
        let ca = tempfile::NamedTempFile::new().unwrap();
        let config = Config::from_flags(&hsm_flags(ca.path())).unwrap();
        let logs = config.keys.iter().find(|key| key.name == "logs").unwrap();
        assert_eq!(logs.source, KeySource::Hsm("label:acme-kek".into()));
        assert_eq!(
            config.hsm,
            Some(crate::hsm::HsmConfig {
                module: "/usr/lib/softhsm/libsofthsm2.so".into(),
                module_sha256: "ab".repeat(32),
                token_label: "acme".into(),
                pin: crate::hsm::PinSource::File("hsm.pin".into()),
            })
        );
        // An HSM key alone is enough of a key.
        let mut only_hsm = hsm_flags(ca.path());
        only_hsm.key_files.clear();
        only_hsm.allow = vec!["acme=logs".into()];
        assert!(Config::from_flags(&only_hsm).is_ok());
    }

    #[test]
    fn hsm_flag_errors_name_the_flag() {
        let ca = tempfile::NamedTempFile::new().unwrap();
        let cases: [(Change, &str); 7] = [
            (
                |f| {
                    f.hsm_module = None;
                    f.hsm_module_sha256 = None;
                    f.hsm_token = None;
                    f.hsm_pin_file = None;
                },
                "--key-hsm logs=label:acme-kek: key \"logs\" is in an HSM, but no HSM is \
                 configured",
            ),
            (
                |f| f.hsm_module = None,
                "--hsm-module: is required with the other --hsm-* flags",
            ),
            (|f| f.hsm_token = None, "--hsm-token: is required"),
            (
                |f| f.hsm_module_sha256 = Some("abc".into()),
                "--hsm-module-sha256: must be 64 hex digits",
            ),
            (
                |f| f.hsm_pin_env = Some("PIN".into()),
                "--hsm-pin-file/--hsm-pin-env: give exactly one",
            ),
            (
                |f| f.key_hsms = vec!["logs=acme-kek".into()],
                "--key-hsm logs=acme-kek: name the HSM object as label:",
            ),
            (
                |f| f.key_files.push("logs=x.key".into()),
                "--key-hsm logs=label:acme-kek: key \"logs\" is defined more than once",
            ),
        ];
        for (change, expected) in cases {
            let mut flags = hsm_flags(ca.path());
            change(&mut flags);
            let message = Config::from_flags(&flags).unwrap_err().to_string();
            assert!(message.starts_with(expected), "{expected}: {message}");
        }
    }
}
