use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;

use super::*;
use crate::clock::ManualClock;
use crate::hsm::{HsmConfig, PinSource};

const KEY_B64: &str = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=";
/// Base64 of 32 bytes of "secret-secret-secret-secret-1234".
const SECRET_B64: &str = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ=";

const VALID: &str = r#"
agent_id = "acme-dc1"
broker = "wss://broker.example:8201"
broker_ca = "ca.pem"
secret_file = "/etc/keybroker-agent/secret"
heartbeat_interval = "2s"
rate_limit = { per_second = 50, burst = 100 }

[[keys]]
name = "data"
file = "keys/data.key"

[[keys]]
name = "logs"
env = "AGENT_KEY_LOGS"

[[allow]]
tenant = "acme"
keys = ["data", "logs"]

[[allow]]
tenant = "acme-ops"
keys = ["*"]
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/keybroker-agent/agent.toml"))
}

/// The error for `VALID` with `from` replaced by `to`.
/// An error message that starts with the config file's path and contains `expected`.
fn assert_names_file_and(message: &str, expected: &str) {
    assert!(
        message.starts_with("/etc/keybroker-agent/agent.toml: "),
        "{message}"
    );
    assert!(
        message.contains(expected),
        "expected {expected:?} in {message}"
    );
}

fn error_with(from: &str, to: &str) -> String {
    assert!(VALID.contains(from), "{from}");
    parse(&VALID.replacen(from, to, 1)).unwrap_err().to_string()
}

#[test]
fn valid_config_parses_with_paths_resolved_and_defaults() {
    let config = parse(VALID).unwrap();
    assert_eq!(config.agent_id, "acme-dc1");
    assert_eq!(config.broker, "wss://broker.example:8201");
    assert_eq!(config.broker_ca, Path::new("/etc/keybroker-agent/ca.pem"));
    assert_eq!(config.secret_file, Path::new("/etc/keybroker-agent/secret"));
    assert_eq!(config.heartbeat_interval, Duration::from_secs(2));
    assert_eq!(config.reconnect_max_delay, DEFAULT_RECONNECT_MAX_DELAY);
    assert_eq!(
        config.rate_limit,
        RateLimit {
            per_second: 50,
            burst: 100
        }
    );
    assert_eq!(
        config.keys,
        [
            KeyConfig {
                name: "data".into(),
                source: KeySource::File("/etc/keybroker-agent/keys/data.key".into()),
            },
            KeyConfig {
                name: "logs".into(),
                source: KeySource::Env("AGENT_KEY_LOGS".into()),
            },
        ]
    );
    assert!(config.allowlist.permits("acme", "logs"));
    assert!(!config.allowlist.permits("acme", "other"));
    assert!(config.allowlist.permits("acme-ops", "anything"));

    let minimal = parse(
        "agent_id = \"a\"\nbroker = \"wss://b\"\nbroker_ca = \"/ca\"\nsecret_file = \"/s\"\n\
         [[keys]]\nname = \"k\"\nenv = \"K\"\n[[allow]]\ntenant = \"t\"\nkeys = [\"k\"]\n",
    )
    .unwrap();
    assert_eq!(minimal.rate_limit, RateLimit::default());
    assert_eq!(minimal.heartbeat_interval, DEFAULT_HEARTBEAT_INTERVAL);
}

#[test]
fn parse_errors_name_the_file_and_the_field() {
    let cases = [
        // Missing required field.
        ("agent_id = \"acme-dc1\"\n", "", "agent_id"),
        // Unknown field, at the top and in a table.
        (
            "heartbeat_interval",
            "heartbeat_intervall",
            "heartbeat_intervall",
        ),
        ("burst = 100", "burst = 100, refill = 3", "refill"),
        ("name = \"logs\"", "name = \"logs\"\npath = \"x\"", "path"),
        // Wrong type.
        ("per_second = 50", "per_second = \"fast\"", "per_second"),
        ("\"2s\"", "\"soon\"", "heartbeat_interval"),
    ];
    for (from, to, field) in cases {
        let message = error_with(from, to);
        assert!(
            message.contains("/etc/keybroker-agent/agent.toml"),
            "{message}"
        );
        assert!(message.contains(field), "{field}: {message}");
    }
}

#[test]
fn validation_errors_name_the_field_and_the_reason() {
    let cases = [
        ("\"acme-dc1\"", "\"\"", "agent_id: it is empty"),
        ("\"acme-dc1\"", "\"acme dc1\"", "agent_id: use only"),
        (
            "wss://broker.example:8201",
            "ws://broker.example:8201",
            "broker: the connection must use TLS",
        ),
        (
            "wss://broker.example:8201",
            "https://broker.example",
            "broker: must be a wss:// URL",
        ),
        (
            "wss://broker.example:8201",
            "wss://:8201",
            "broker: the URL names no host",
        ),
        (
            "broker_ca = \"ca.pem\"",
            "broker_ca = \"\"",
            "broker_ca: the path is empty",
        ),
        ("\"2s\"", "\"0s\"", "heartbeat_interval: must be between"),
        (
            "per_second = 50",
            "per_second = 0",
            "rate_limit.per_second: must be at least 1",
        ),
        (
            "burst = 100",
            "burst = 0",
            "rate_limit.burst: must be at least 1",
        ),
        (
            "name = \"logs\"",
            "name = \"data\"",
            "keys[1].name: key \"data\" is defined more than once",
        ),
        (
            "name = \"logs\"",
            "name = \"*\"",
            "keys[1].name: key name \"*\" is invalid",
        ),
        (
            "env = \"AGENT_KEY_LOGS\"",
            "env = \"A=B\"",
            "keys[1].env: not a usable",
        ),
        (
            "env = \"AGENT_KEY_LOGS\"",
            "env = \"AGENT_KEY_LOGS\"\nfile = \"x\"",
            "keys[1]: key \"logs\": give exactly one of file, env or hsm",
        ),
        (
            "env = \"AGENT_KEY_LOGS\"",
            "",
            "keys[1]: key \"logs\": give exactly one",
        ),
        (
            "keys = [\"data\", \"logs\"]",
            "keys = [\"data\", \"dtaa\"]",
            "allow[0].keys: no key named \"dtaa\"",
        ),
        (
            "keys = [\"data\", \"logs\"]",
            "keys = []",
            "allow[0]: tenant \"acme\": keys is empty",
        ),
        (
            "tenant = \"acme-ops\"",
            "tenant = \"*\"",
            "allow[1]: tenant \"*\" is invalid",
        ),
        (
            "tenant = \"acme-ops\"",
            "tenant = \"acme\"",
            "allow[1]: tenant \"acme\" is listed more than once",
        ),
        (
            "keys = [\"*\"]",
            "keys = [\"*\", \"data\"]",
            "allow[1]: tenant \"acme-ops\": \"*\" already grants",
        ),
    ];
    for (from, to, expected) in cases {
        assert_names_file_and(&error_with(from, to), expected);
    }

    let without_keys = VALID.split("[[keys]]").next().unwrap();
    let message = parse(without_keys).unwrap_err().to_string();
    assert!(message.contains("keys: no key configured"), "{message}");
    let without_allow = VALID.split("[[allow]]").next().unwrap();
    let message = parse(without_allow).unwrap_err().to_string();
    assert!(message.contains("allow: no tenant is allowed"), "{message}");
}

/// A directory with an agent config whose secret file, CA and one key file are real files.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(secret: &str, secret_mode: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("secret"), secret.as_bytes(), secret_mode);
        write(
            &dir.path().join("ca.pem"),
            b"-----BEGIN CERTIFICATE-----\n",
            0o644,
        );
        std::fs::create_dir(dir.path().join("keys")).unwrap();
        write(&dir.path().join("keys/data.key"), KEY_B64.as_bytes(), 0o600);
        let config = VALID.replace("/etc/keybroker-agent/secret", "secret");
        write(&dir.path().join("agent.toml"), config.as_bytes(), 0o644);
        Self { dir }
    }

    fn load(&self) -> Result<Config, ConfigError> {
        Config::load(&self.dir.path().join("agent.toml"))
    }
}

fn write(path: &Path, contents: &[u8], mode: u32) {
    let mut file = std::fs::File::create(path).unwrap();
    file.write_all(contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn env(name: &str) -> Option<OsString> {
    (name == "AGENT_KEY_LOGS").then(|| OsString::from(KEY_B64))
}

#[test]
fn loaded_config_gives_identity_pin_keys_and_service() {
    let setup = Setup::new(&format!("{SECRET_B64}\n"), 0o600);
    let config = setup.load().unwrap();
    let identity = config.identity().unwrap();
    // The same secret as the protocol crate sees it gives the same pin.
    let expected = AgentIdentity::from_secret(b"secret-secret-secret-secret-1234").unwrap();
    assert_eq!(identity.pin(), expected.pin());
    let instructions = pin_instructions(&config.agent_id, &identity);
    assert!(
        instructions.contains("agent_id = \"acme-dc1\""),
        "{instructions}"
    );
    assert!(
        instructions.contains(&format!("pin = \"{}\"", identity.pin())),
        "{instructions}"
    );
    assert!(!instructions.contains(SECRET_B64) && !instructions.contains("secret-secret"));

    let keys = config.key_store(&env).unwrap();
    assert_eq!(keys.names().collect::<Vec<_>>(), ["data", "logs"]);
    let service = config.service(&env, Arc::new(ManualClock::new())).unwrap();
    assert_eq!(service.agent_id(), "acme-dc1");

    // A missing key variable is named, with the config file.
    let message = config.key_store(&|_| None).unwrap_err().to_string();
    assert!(
        message.contains("agent.toml: keys: key \"logs\""),
        "{message}"
    );
    assert!(message.contains("AGENT_KEY_LOGS is not set"), "{message}");
}

#[test]
fn missing_broker_ca_is_refused_at_load() {
    let setup = Setup::new(SECRET_B64, 0o600);
    std::fs::remove_file(setup.dir.path().join("ca.pem")).unwrap();
    let message = setup.load().unwrap_err().to_string();
    assert!(message.contains("broker_ca: cannot read"), "{message}");
}

#[test]
fn secret_file_must_be_private_base64_of_at_least_32_bytes() {
    let setup = Setup::new(SECRET_B64, 0o640);
    let message = setup.load().unwrap().identity().unwrap_err().to_string();
    assert!(message.contains("secret_file"), "{message}");
    assert!(
        message.contains("mode 640") && message.contains("chmod 600"),
        "{message}"
    );

    // 31 bytes, base64.
    let setup = Setup::new("c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMw==", 0o600);
    let message = setup.load().unwrap().identity().unwrap_err().to_string();
    assert!(message.contains("decodes to 31 bytes"), "{message}");
    assert!(message.contains("at least 32 bytes"), "{message}");
    assert!(!message.contains("c2VjcmV0"), "{message}");

    let setup = Setup::new("secret-secret-secret-secret-secret-not-base64!", 0o600);
    let message = setup.load().unwrap().identity().unwrap_err().to_string();
    assert!(message.contains("not base64"), "{message}");
    assert!(!message.contains("secret-secret"), "{message}");

    let setup = Setup::new(SECRET_B64, 0o600);
    std::fs::remove_file(setup.dir.path().join("secret")).unwrap();
    let error = setup.load().unwrap().identity().unwrap_err();
    assert!(matches!(error, ConfigError::SecretRead { .. }), "{error:?}");
}

#[test]
fn debug_of_config_and_loaded_keys_shows_no_key_or_secret_bytes() {
    let setup = Setup::new(SECRET_B64, 0o600);
    let config = setup.load().unwrap();
    let shown = format!(
        "{config:?} {:?} {:?}",
        config.key_store(&env).unwrap(),
        config.identity().unwrap()
    );
    assert!(
        shown.contains("AGENT_KEY_LOGS") && shown.contains("data"),
        "{shown}"
    );
    for secret in [KEY_B64, "QUFB", SECRET_B64, "65, 65", "secret-secret"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
}

/// An `[hsm]` table (64 hex digits of "ab") with a relative PIN file.
const HSM_TABLE: &str = r#"
[hsm]
module = "/usr/lib/softhsm/libsofthsm2.so"
module_sha256 = "ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB"
token_label = "acme"
pin_file = "hsm.pin"
"#;

/// `VALID` with its `logs` key moved into the HSM, plus `table`.
fn with_hsm_key(backend_key: &str, table: &str) -> String {
    let text = VALID.replacen(
        "env = \"AGENT_KEY_LOGS\"",
        &format!("hsm = \"{backend_key}\""),
        1,
    );
    format!("{text}{table}")
}

#[test]
fn hsm_table_and_hsm_keys_parse_with_paths_resolved() {
    let config = parse(&with_hsm_key("label:acme-kek", HSM_TABLE)).unwrap();
    assert_eq!(
        config.keys[1],
        KeyConfig {
            name: "logs".into(),
            source: KeySource::Hsm("label:acme-kek".into()),
        }
    );
    assert_eq!(
        config.hsm,
        Some(HsmConfig {
            module: "/usr/lib/softhsm/libsofthsm2.so".into(),
            module_sha256: "ab".repeat(32),
            token_label: "acme".into(),
            pin: PinSource::File("/etc/keybroker-agent/hsm.pin".into()),
        })
    );
    let by_id = parse(&with_hsm_key(
        "id:0a1B",
        &HSM_TABLE.replace("pin_file = \"hsm.pin\"", "pin_env = \"HSM_PIN\""),
    ))
    .unwrap();
    assert_eq!(by_id.keys[1].source, KeySource::Hsm("id:0a1B".into()));
    assert_eq!(by_id.hsm.unwrap().pin, PinSource::Env("HSM_PIN".into()));
    // Software keys need no [hsm]; an [hsm] without HSM keys is accepted.
    assert!(parse(VALID).unwrap().hsm.is_none());
    assert!(parse(&format!("{VALID}{HSM_TABLE}")).unwrap().hsm.is_some());
}

#[test]
fn hsm_errors_name_the_field() {
    let cases = [
        (
            with_hsm_key("label:acme-kek", ""),
            "keys[1].hsm: key \"logs\" is in an HSM, but no HSM is configured",
        ),
        (
            with_hsm_key("label:acme-kek", HSM_TABLE).replacen(
                "hsm = \"label:acme-kek\"",
                "hsm = \"label:acme-kek\"\nfile = \"x.key\"",
                1,
            ),
            "keys[1]: key \"logs\": give exactly one of file, env or hsm",
        ),
        (
            with_hsm_key("acme-kek", HSM_TABLE),
            "keys[1].hsm: name the HSM object as label:<CKA_LABEL> or id:<hex CKA_ID>",
        ),
        (
            with_hsm_key("id:xyz", HSM_TABLE),
            "keys[1].hsm: name the HSM object",
        ),
        (
            with_hsm_key("label:", HSM_TABLE),
            "keys[1].hsm: name the HSM object",
        ),
        (
            with_hsm_key("label:k", &HSM_TABLE.replace("ABAB", "ABZZ")),
            "hsm.module_sha256: must be 64 hex digits",
        ),
        (
            with_hsm_key("label:k", &HSM_TABLE.replace("\"acme\"", "\"\"")),
            "hsm.token_label: must be 1 to 32 bytes",
        ),
        (
            with_hsm_key(
                "label:k",
                &HSM_TABLE.replace(
                    "pin_file = \"hsm.pin\"",
                    "pin_file = \"p\"\npin_env = \"P\"",
                ),
            ),
            "hsm.pin_file/hsm.pin_env: give exactly one of pin_file or pin_env",
        ),
        (
            with_hsm_key("label:k", &HSM_TABLE.replace("pin_file = \"hsm.pin\"", "")),
            "hsm.pin_file/hsm.pin_env: give exactly one",
        ),
        (
            with_hsm_key(
                "label:k",
                &HSM_TABLE.replace("pin_file = \"hsm.pin\"", "pin_env = \"A=B\""),
            ),
            "hsm.pin_env: not a usable",
        ),
        (
            with_hsm_key(
                "label:k",
                &HSM_TABLE.replace(
                    "module = \"/usr/lib/softhsm/libsofthsm2.so\"",
                    "module = \"\"",
                ),
            ),
            "hsm.module: the path is empty",
        ),
    ];
    for (text, expected) in cases {
        assert_names_file_and(&parse(&text).unwrap_err().to_string(), expected);
    }
    // A PIN written in the config is refused without being quoted.
    let message = parse(&with_hsm_key(
        "label:k",
        &HSM_TABLE.replace("pin_file = \"hsm.pin\"", "pin = \"1234\""),
    ))
    .unwrap_err()
    .to_string();
    assert!(
        message.contains("hsm.pin_file/hsm.pin_env: a PIN written in the config is refused"),
        "{message}"
    );
    assert!(!message.contains("1234"), "{message}");
}

#[test]
fn an_hsm_pin_file_others_can_read_stops_the_key_store_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("hsm.pin"), b"1234\n", 0o644);
    let config = Config::parse(
        &with_hsm_key("label:acme-kek", HSM_TABLE),
        &dir.path().join("agent.toml"),
    )
    .unwrap();
    let error = config.key_store(&env).unwrap_err();
    assert!(matches!(error, ConfigError::Hsm { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("hsm: pin_file"), "{message}");
    assert!(
        message.contains("mode 644") && message.contains("chmod 600"),
        "{message}"
    );
    assert!(!message.contains("1234"), "{message}");
}
