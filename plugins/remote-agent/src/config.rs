//! The instance's configuration: the drop-in's `[config]` table, as JSON text.

use std::{collections::BTreeSet, path::PathBuf, time::Duration};

use keybroker_agent_protocol::is_valid_pin;
use keybroker_plugin_abi::PluginError;
use keybroker_plugin_sdk::config::ConfigErrors;
use serde::Deserialize;

/// Default heartbeat interval: three missed intervals (15 s) evict the agent.
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u32 = 5_000;
/// Default deadline of one request sent to an agent.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u32 = 250;
/// Default bound on an agent's TLS, WebSocket and authentication handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT_MS: u32 = 10_000;
/// Largest plaintext of a direct-mode encrypt: the XKS proxy API's limit is 4300 bytes.
pub const DEFAULT_MAX_PAYLOAD: u64 = 4_096;
/// The XKS limit on plaintexts.
pub const XKS_MAX_PLAINTEXT: u64 = 4_300;

/// One agent the gateway accepts.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The id the agent announces (`--agent-id`).
    pub id: String,
    /// The agent's pin: hex SHA-256 of the public key derived from its secret (printed by
    /// `keybroker-agent pin`).
    pub pin: String,
    /// Tenants (by name) whose keys this agent serves.
    pub tenants: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    listen: String,
    tls_cert_file: PathBuf,
    tls_key_file: PathBuf,
    agents: Vec<AgentConfig>,
    #[serde(default)]
    default_key: Option<String>,
    #[serde(default)]
    heartbeat_interval_ms: Option<u32>,
    #[serde(default)]
    request_timeout_ms: Option<u32>,
    #[serde(default)]
    handshake_timeout_ms: Option<u32>,
    #[serde(default)]
    max_payload: Option<u64>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `host:port` to listen on for agents.
    pub listen: String,
    /// The gateway's TLS certificate chain (PEM); agents pin its CA.
    pub tls_cert_file: PathBuf,
    /// Its private key (PEM).
    pub tls_key_file: PathBuf,
    /// The agents accepted, by id.
    pub agents: Vec<AgentConfig>,
    /// The agent-side key name given to transit keys created without `backend_key`.
    pub default_key: Option<String>,
    /// Heartbeat interval, both ways.
    pub heartbeat_interval: Duration,
    /// Deadline of one request to an agent.
    pub request_timeout: Duration,
    /// Deadline of an agent's handshake.
    pub handshake_timeout: Duration,
    /// Largest direct-mode plaintext.
    pub max_payload: u64,
}

/// Every config error starts with `remote-agent: `.
const ERRORS: ConfigErrors = ConfigErrors::new("remote-agent");

fn invalid(field: &str, reason: impl std::fmt::Display) -> PluginError {
    ERRORS.invalid(format_args!("{field}: {reason}"))
}

/// Agent and key names: what `keybroker-agent` accepts.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn millis(
    field: &str,
    value: Option<u32>,
    default: u32,
    min: u32,
    max: u32,
) -> Result<Duration, PluginError> {
    let value = value.unwrap_or(default);
    if !(min..=max).contains(&value) {
        return Err(invalid(field, format!("must be between {min} and {max}")));
    }
    Ok(Duration::from_millis(u64::from(value)))
}

impl Config {
    /// Parses and checks the `[config]` JSON text.
    pub fn parse(text: &str) -> Result<Self, PluginError> {
        let file: File = ERRORS.parse_json(text)?;
        if file.agents.is_empty() {
            return Err(invalid("agents", "at least one agent is needed"));
        }
        let mut ids = BTreeSet::new();
        for (index, agent) in file.agents.iter().enumerate() {
            let field = format!("agents[{index}]");
            if !valid_name(&agent.id) {
                return Err(invalid(
                    &format!("{field}.id"),
                    "use 1 to 128 letters, digits, '.', '_' or '-'",
                ));
            }
            if !ids.insert(agent.id.as_str()) {
                return Err(invalid(
                    &format!("{field}.id"),
                    format!("{:?} is listed twice", agent.id),
                ));
            }
            if !is_valid_pin(&agent.pin) {
                return Err(invalid(
                    &format!("{field}.pin"),
                    "must be 64 hex digits (keybroker-agent pin prints it)",
                ));
            }
            if agent.tenants.is_empty() {
                return Err(invalid(
                    &format!("{field}.tenants"),
                    "name at least one tenant",
                ));
            }
            if agent.tenants.iter().any(|t| t == "*" || t.is_empty()) {
                return Err(invalid(
                    &format!("{field}.tenants"),
                    "name each tenant exactly (no \"*\")",
                ));
            }
        }
        if let Some(key) = &file.default_key {
            if !valid_name(key) {
                return Err(invalid(
                    "default_key",
                    "use 1 to 128 letters, digits, '.', '_' or '-'",
                ));
            }
        }
        let max_payload = file.max_payload.unwrap_or(DEFAULT_MAX_PAYLOAD);
        if max_payload == 0 || max_payload > XKS_MAX_PLAINTEXT {
            return Err(invalid(
                "max_payload",
                format!("must be between 1 and {XKS_MAX_PLAINTEXT}"),
            ));
        }
        if file.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid(
                "listen",
                "must be an address and port, e.g. \"0.0.0.0:8201\"",
            ));
        }
        Ok(Self {
            listen: file.listen,
            tls_cert_file: file.tls_cert_file,
            tls_key_file: file.tls_key_file,
            agents: file.agents,
            default_key: file.default_key,
            heartbeat_interval: millis(
                "heartbeat_interval_ms",
                file.heartbeat_interval_ms,
                DEFAULT_HEARTBEAT_INTERVAL_MS,
                100,
                600_000,
            )?,
            request_timeout: millis(
                "request_timeout_ms",
                file.request_timeout_ms,
                DEFAULT_REQUEST_TIMEOUT_MS,
                10,
                60_000,
            )?,
            handshake_timeout: millis(
                "handshake_timeout_ms",
                file.handshake_timeout_ms,
                DEFAULT_HANDSHAKE_TIMEOUT_MS,
                100,
                120_000,
            )?,
            max_payload,
        })
    }

    /// The configured agent with this id.
    pub fn agent(&self, id: &str) -> Option<&AgentConfig> {
        self.agents.iter().find(|agent| agent.id == id)
    }

    /// Whether some agent serves tenant `name`.
    pub fn serves_tenant(&self, name: &str) -> bool {
        self.agents
            .iter()
            .any(|agent| agent.tenants.iter().any(|t| t == name))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn text(extra: &str) -> String {
        format!(
            r#"{{"listen":"127.0.0.1:8201","tls_cert_file":"c.pem","tls_key_file":"k.pem",
               "agents":[{{"id":"acme-dc1","pin":"{}","tenants":["acme"]}}]{extra}}}"#,
            "ab".repeat(32)
        )
    }

    #[test]
    fn defaults() {
        let config = Config::parse(&text("")).unwrap();
        assert_eq!(config.heartbeat_interval, Duration::from_secs(5));
        assert_eq!(config.request_timeout, Duration::from_millis(250));
        assert_eq!(config.max_payload, 4096);
        assert!(config.serves_tenant("acme"));
        assert!(!config.serves_tenant("beta"));
        assert!(config.agent("acme-dc1").is_some());
    }

    #[test]
    fn refusals_name_the_field() {
        for (extra, field) in [
            (r#","heartbeat_interval_ms":5"#, "heartbeat_interval_ms"),
            (r#","max_payload":5000"#, "max_payload"),
            (r#","default_key":"a b""#, "default_key"),
            (r#","unknown":1"#, "unknown"),
        ] {
            let error = Config::parse(&text(extra)).unwrap_err();
            assert!(error.message.contains(field), "{extra}: {}", error.message);
        }
        let bad_pin = text("").replace(&"ab".repeat(32), "abc");
        assert!(Config::parse(&bad_pin)
            .unwrap_err()
            .message
            .contains("agents[0].pin"));
        let wildcard = text("").replace(r#"["acme"]"#, r#"["*"]"#);
        assert!(Config::parse(&wildcard)
            .unwrap_err()
            .message
            .contains("tenants"));
        let twice = text("").replacen(
            "}]",
            &format!(
                r#"}},{{"id":"acme-dc1","pin":"{}","tenants":["acme"]}}]"#,
                "cd".repeat(32)
            ),
            1,
        );
        assert!(Config::parse(&twice).unwrap_err().message.contains("twice"));
        let listen = text("").replace("127.0.0.1:8201", "broker");
        assert!(Config::parse(&listen)
            .unwrap_err()
            .message
            .contains("listen"));
    }

    #[test]
    fn the_example_drop_in_is_a_valid_config() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/plugins.d/acme-agent.toml"
        );
        // The example's pins are placeholders for what `keybroker-agent pin` prints.
        let text = std::fs::read_to_string(path)
            .unwrap()
            .replace("<64 hex digits from keybroker-agent pin>", &"0f".repeat(32));
        let drop_in: toml::Table = text.parse().unwrap();
        assert_eq!(drop_in["on_unavailable"].as_str(), Some("evict"));
        // As the host does: the [config] table, as JSON.
        let config = serde_json::to_value(&drop_in["config"]).unwrap();
        let parsed = Config::parse(&config.to_string()).unwrap();
        assert_eq!(parsed.agents.len(), 2);
        assert_eq!(parsed.default_key.as_deref(), Some("data"));
    }
}
