//! Configuration: TOML file → overrides from CLI flags → validated [`Config`].
//!
//! Every time constant is a setting, so end-to-end tests can reach expiry, rotation and
//! health transitions in seconds.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

/// Errors of configuration: they name the file, the key and the reason.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped keys.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said (names the key).
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid config: {key}: {reason}")]
    Invalid {
        /// The key, e.g. `listener.address`.
        key: &'static str,
        /// Why.
        reason: String,
    },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// `[listener]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Address to listen on.
    #[serde(default = "default_address")]
    pub address: SocketAddr,
    /// PEM certificate chain for TLS.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key for TLS.
    pub tls_key_file: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address (refused unless set, as in Vault).
    #[serde(default)]
    pub tls_disable: bool,
    /// Largest request body in bytes (413 above).
    #[serde(default = "default_max_request_size")]
    pub max_request_size: usize,
    /// Proxies (addresses or CIDR blocks) whose `X-Forwarded-For` header is believed; from
    /// any other peer the header is ignored and the peer's address is the client's.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Connections served at once; further clients wait to be accepted.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Requests handled at once; further requests are refused with 503 until one ends.
    #[serde(default = "default_max_in_flight_requests")]
    pub max_in_flight_requests: usize,
    /// Deadline of a TLS handshake, of a request's headers, and of the wait for the next
    /// request on a kept-alive connection (Vault's `http_read_header_timeout`).
    #[serde(default = "default_http_read_header_timeout", with = "humantime_serde")]
    pub http_read_header_timeout: Duration,
    /// Deadline of reading a request's body (Vault's `http_read_timeout`); 408 after it.
    #[serde(default = "default_http_read_timeout", with = "humantime_serde")]
    pub http_read_timeout: Duration,
    /// How long a connection may stay without a request before it is closed (Vault's
    /// `http_idle_timeout`).
    #[serde(default = "default_http_idle_timeout", with = "humantime_serde")]
    pub http_idle_timeout: Duration,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            address: default_address(),
            tls_cert_file: None,
            tls_key_file: None,
            tls_disable: false,
            max_request_size: default_max_request_size(),
            trusted_proxies: Vec::new(),
            max_connections: default_max_connections(),
            max_in_flight_requests: default_max_in_flight_requests(),
            http_read_header_timeout: default_http_read_header_timeout(),
            http_read_timeout: default_http_read_timeout(),
            http_idle_timeout: default_http_idle_timeout(),
        }
    }
}

fn default_max_connections() -> usize {
    4096
}

fn default_max_in_flight_requests() -> usize {
    1024
}

fn default_http_read_header_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_http_read_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_http_idle_timeout() -> Duration {
    Duration::from_secs(300)
}

fn default_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8200))
}

fn default_max_request_size() -> usize {
    32 * 1024 * 1024
}

/// `[seal]`: where the root key comes from.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SealConfig {
    /// A file holding the base64 root key; generated (mode 0600) on first start of an
    /// empty store if missing.
    File {
        /// The file.
        path: PathBuf,
    },
    /// An environment variable holding the base64 root key.
    Env {
        /// Variable name.
        env: String,
    },
    /// Auto-unseal: the root key is generated at initialisation and kept wrapped by a key
    /// of a backend instance of `plugins.d/` (AWS KMS, Azure Key Vault, an HSM); the wrapped
    /// key lives in the store. While the backend cannot unwrap it the broker runs sealed
    /// and tries again every `retry_interval`.
    Backend {
        /// The drop-in instance's name.
        instance: String,
        /// An existing backend key to wrap with (as `backend_key` of a transit key: a KMS
        /// key id, ARN or alias, an HSM label, a Key Vault key name); by default the broker
        /// creates one at initialisation. Read at initialisation only.
        #[serde(default)]
        key: Option<String>,
        /// How often a sealed broker tries to unseal again.
        #[serde(default = "default_seal_retry", with = "humantime_serde")]
        retry_interval: Duration,
    },
}

fn default_seal_retry() -> Duration {
    Duration::from_secs(5)
}

/// `[timing]`: every time constant and counter limit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimingConfig {
    /// How long an unwrapped data key stays cached.
    #[serde(with = "humantime_serde")]
    pub dek_cache_ttl: Duration,
    /// Most cached data keys per backend instance.
    pub dek_cache_capacity: u64,
    /// How often each backend instance's health is checked.
    #[serde(with = "humantime_serde")]
    pub plugin_health_interval: Duration,
    /// How often keys due for automatic rotation are looked for.
    #[serde(with = "humantime_serde")]
    pub auto_rotate_check_interval: Duration,
    /// How often expired tokens and secret_ids are deleted from the store.
    #[serde(with = "humantime_serde")]
    pub tidy_interval: Duration,
    /// Smallest non-zero `auto_rotate_period` a key may have.
    #[serde(with = "humantime_serde")]
    pub min_auto_rotate_period: Duration,
    /// Encryptions per key version before it rotates by itself.
    pub rotation_threshold: u64,
    /// Encryption counts reserved in the store at a time.
    pub counter_block: u64,
    /// TTL of tokens created without one.
    #[serde(with = "humantime_serde")]
    pub token_default_ttl: Duration,
    /// Longest lifetime of any token, renewals included.
    #[serde(with = "humantime_serde")]
    pub token_max_ttl: Duration,
    /// Failed AppRole logins of a (role_id, client address) pair that lock the pair out.
    pub approle_lockout_threshold: u32,
    /// Window over which AppRole login failures are counted, and how long a locked pair
    /// stays locked.
    #[serde(with = "humantime_serde")]
    pub approle_lockout_duration: Duration,
    /// Cluster (Postgres): how long a node may go without confirming that it receives the
    /// other nodes' changes before it refuses authenticated requests with 503 (it could
    /// otherwise honour a revoked token).
    #[serde(with = "humantime_serde")]
    pub max_staleness: Duration,
    /// Cluster (Postgres): how often a node checks that its change feed works end to end.
    #[serde(with = "humantime_serde")]
    pub storage_heartbeat: Duration,
    /// Cluster (Postgres): how long a request waits for a database connection before it is
    /// answered 503.
    #[serde(with = "humantime_serde")]
    pub storage_timeout: Duration,
}

impl Default for TimingConfig {
    fn default() -> Self {
        Self {
            dek_cache_ttl: Duration::from_secs(300),
            dek_cache_capacity: 100_000,
            plugin_health_interval: Duration::from_secs(10),
            auto_rotate_check_interval: Duration::from_secs(60),
            tidy_interval: Duration::from_secs(3600),
            min_auto_rotate_period: Duration::from_secs(3600),
            rotation_threshold: 4_000_000_000,
            counter_block: 10_000,
            token_default_ttl: Duration::from_secs(768 * 3600),
            token_max_ttl: Duration::from_secs(768 * 3600),
            approle_lockout_threshold: 5,
            approle_lockout_duration: Duration::from_secs(15 * 60),
            max_staleness: Duration::from_secs(3),
            storage_heartbeat: Duration::from_millis(500),
            storage_timeout: Duration::from_secs(2),
        }
    }
}

/// `[audit]` as written: the file audit sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditTable {
    /// The JSON-lines log (its directory must exist); no file audit when absent.
    pub file: Option<PathBuf>,
    /// Records between two checkpoints of the chain head in the store.
    pub checkpoint_every: u64,
    /// How long a request may wait for its audit record to be durable before it is
    /// refused with 503.
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
}

impl Default for AuditTable {
    fn default() -> Self {
        Self {
            file: None,
            checkpoint_every: 1000,
            write_timeout: Duration::from_secs(1),
        }
    }
}

/// Validated audit settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// The JSON-lines log.
    pub file: PathBuf,
    /// Records between two checkpoints.
    pub checkpoint_every: u64,
    /// Deadline of one audit write.
    pub write_timeout: Duration,
}

fn audit_config(table: AuditTable) -> Result<Option<AuditConfig>, ConfigError> {
    let Some(file) = table.file else {
        return Ok(None);
    };
    if file.as_os_str().is_empty() {
        return Err(invalid("audit.file", "must not be empty"));
    }
    if table.checkpoint_every == 0 {
        return Err(invalid("audit.checkpoint_every", "must be at least 1"));
    }
    if table.write_timeout.is_zero() {
        return Err(invalid("audit.write_timeout", "must be greater than zero"));
    }
    Ok(Some(AuditConfig {
        file,
        checkpoint_every: table.checkpoint_every,
        write_timeout: table.write_timeout,
    }))
}

/// The configuration file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Private state: verified plugin copies, and the default database and root key.
    pub state_dir: Option<PathBuf>,
    /// `sqlite:` URL or a path to the SQLite file (default `<state_dir>/keybroker.db`), or
    /// a `postgres://` URL shared by the nodes of a cluster.
    pub storage: Option<String>,
    /// Drop-in directory of backend instances.
    pub plugin_dir: Option<PathBuf>,
    /// Directory of HCL policies loaded at start-up (used once policies exist).
    pub policy_dir: Option<PathBuf>,
    /// On first start, write the root token here (mode 0600) instead of printing it.
    pub init_root_token_file: Option<PathBuf>,
    /// Backend instance of keys created without `backend`.
    pub default_backend: Option<String>,
    /// Offer the built-in local-KEK instance `local`, its KEK generated and sealed under
    /// the root key (default true; a drop-in named `local` replaces it).
    pub builtin_local: Option<bool>,
    /// `[listener]`.
    #[serde(default)]
    pub listener: ListenerConfig,
    /// `[seal]`.
    pub seal: Option<SealConfig>,
    /// `[timing]`.
    #[serde(default)]
    pub timing: TimingConfig,
    /// `[audit]`.
    #[serde(default)]
    pub audit: AuditTable,
    /// `[oidc_client_secrets.<name>]`.
    #[serde(default)]
    pub oidc_client_secrets: std::collections::BTreeMap<String, ClientSecretSource>,
}

/// `[oidc_client_secrets.<name>]`: an OIDC client secret the operator keeps out of the API,
/// in an environment variable or a file read at each login. A root-namespace jwt mount
/// names it with `oidc_client_secret_source = "<name>"`; it is only ever sent to `issuer`'s
/// token endpoint, so no configuration written through the API can send it elsewhere.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClientSecretSource {
    /// The provider (its `oidc_discovery_url`, the issuer) the secret belongs to.
    pub issuer: String,
    /// An environment variable holding the secret.
    pub env: Option<String>,
    /// A file holding the secret (surrounding whitespace is ignored).
    pub file: Option<PathBuf>,
}

/// Where the database lives.
#[derive(Clone, PartialEq, Eq)]
pub enum StorageConfig {
    /// SQLite file: this node alone.
    Sqlite(PathBuf),
    /// A PostgreSQL URL shared by every node of a cluster (it may hold a password: never
    /// printed).
    Postgres(String),
}

impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            Self::Postgres(_) => f.write_str("Postgres(..)"),
        }
    }
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Dev mode: temporary state, printed root token, loopback only.
    pub dev: bool,
    /// Root token text chosen for dev mode.
    pub dev_root_token_id: Option<String>,
    /// Private state directory.
    pub state_dir: PathBuf,
    /// Database.
    pub storage: StorageConfig,
    /// Drop-in directory, if any.
    pub plugin_dir: Option<PathBuf>,
    /// Policy directory, if any.
    pub policy_dir: Option<PathBuf>,
    /// Where to write the first root token.
    pub init_root_token_file: Option<PathBuf>,
    /// Default backend instance.
    pub default_backend: String,
    /// Whether the built-in `local` instance exists.
    pub builtin_local: bool,
    /// Listener.
    pub listener: ListenerConfig,
    /// `listener.trusted_proxies`, parsed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Seal.
    pub seal: SealConfig,
    /// Timing.
    pub timing: TimingConfig,
    /// The file audit sink, if configured.
    pub audit: Option<AuditConfig>,
    /// OIDC client secrets kept outside the API, by name.
    pub oidc_client_secrets: std::collections::BTreeMap<String, ClientSecretSource>,
}

/// Reads and parses a config file.
pub fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// Overrides from the command line.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--dev`.
    pub dev: bool,
    /// `--dev-root-token-id`.
    pub dev_root_token_id: Option<String>,
    /// `--dev-listen-address`.
    pub dev_listen_address: Option<SocketAddr>,
    /// `--plugin-dir`.
    pub plugin_dir: Option<PathBuf>,
    /// State directory chosen for dev mode (a temporary directory).
    pub dev_state_dir: Option<PathBuf>,
}

impl Config {
    /// Builds the validated configuration from a file (optional in dev mode) and overrides.
    pub fn build(file: Option<FileConfig>, overrides: Overrides) -> Result<Self, ConfigError> {
        let dev = overrides.dev;
        let file = match file {
            Some(file) => file,
            None if dev => FileConfig::default(),
            None => {
                return Err(invalid(
                    "--config",
                    "a config file is required unless --dev is given",
                ))
            }
        };
        let mut listener = file.listener;
        let state_dir = match (dev, overrides.dev_state_dir, file.state_dir) {
            (true, Some(dir), _) => dir,
            (_, _, Some(dir)) => dir,
            _ => return Err(invalid("state_dir", "required")),
        };
        let storage = if dev {
            StorageConfig::Sqlite(state_dir.join("keybroker.db"))
        } else {
            match file.storage {
                None => StorageConfig::Sqlite(state_dir.join("keybroker.db")),
                Some(text) => parse_storage(&text)?,
            }
        };
        let seal = if dev {
            SealConfig::File {
                path: state_dir.join("root.key"),
            }
        } else {
            file.seal.unwrap_or(SealConfig::File {
                path: state_dir.join("root.key"),
            })
        };
        if let SealConfig::Backend {
            instance,
            retry_interval,
            ..
        } = &seal
        {
            if overrides.plugin_dir.is_none() && file.plugin_dir.is_none() {
                return Err(invalid(
                    "seal",
                    "type = \"backend\" names an instance of plugin_dir, which is not set",
                ));
            }
            if !crate::plugin_host::valid_instance_name(instance)
                || instance == crate::plugin_host::BUILTIN_LOCAL
            {
                return Err(invalid(
                    "seal.instance",
                    "must name a drop-in instance of plugin_dir (not the built-in local KEK, \
                     which the root key itself protects)",
                ));
            }
            if retry_interval.is_zero() {
                return Err(invalid("seal.retry_interval", "must be positive"));
            }
        }
        if dev {
            if let Some(address) = overrides.dev_listen_address {
                listener.address = address;
            }
            if !listener.address.ip().is_loopback() {
                return Err(invalid(
                    "--dev-listen-address",
                    "dev mode listens on a loopback address only",
                ));
            }
            listener.tls_cert_file = None;
            listener.tls_key_file = None;
        }
        let has_tls = listener.tls_cert_file.is_some() || listener.tls_key_file.is_some();
        if has_tls && (listener.tls_cert_file.is_none() || listener.tls_key_file.is_none()) {
            return Err(invalid(
                "listener.tls_cert_file",
                "tls_cert_file and tls_key_file go together",
            ));
        }
        if !has_tls && !listener.address.ip().is_loopback() && !listener.tls_disable {
            return Err(invalid(
                "listener.address",
                "a non-loopback address needs TLS (tls_cert_file, tls_key_file) or tls_disable = true",
            ));
        }
        if listener.max_request_size < 1024 {
            return Err(invalid(
                "listener.max_request_size",
                "must be at least 1024 bytes",
            ));
        }
        for (key, value) in [
            ("listener.max_connections", listener.max_connections),
            (
                "listener.max_in_flight_requests",
                listener.max_in_flight_requests,
            ),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        for (key, value) in [
            (
                "listener.http_read_header_timeout",
                listener.http_read_header_timeout,
            ),
            ("listener.http_read_timeout", listener.http_read_timeout),
            ("listener.http_idle_timeout", listener.http_idle_timeout),
        ] {
            if value.is_zero() {
                return Err(invalid(key, "must be more than zero"));
            }
        }
        let timing = file.timing;
        if timing.rotation_threshold == 0 || timing.rotation_threshold >= 1 << 32 {
            return Err(invalid(
                "timing.rotation_threshold",
                "must be between 1 and 2^32 - 1",
            ));
        }
        if timing.token_default_ttl.as_secs() == 0 || timing.token_max_ttl.as_secs() == 0 {
            return Err(invalid(
                "timing.token_max_ttl",
                "token TTLs must be at least 1s",
            ));
        }
        if timing.token_default_ttl > timing.token_max_ttl {
            return Err(invalid(
                "timing.token_default_ttl",
                "must not exceed token_max_ttl",
            ));
        }
        if timing.approle_lockout_threshold == 0 {
            return Err(invalid(
                "timing.approle_lockout_threshold",
                "must be at least 1",
            ));
        }
        if timing.approle_lockout_duration.as_secs() == 0 {
            return Err(invalid(
                "timing.approle_lockout_duration",
                "must be at least 1s",
            ));
        }
        let trusted_proxies = listener
            .trusted_proxies
            .iter()
            .map(|entry| {
                keybroker_core::cidr::parse(entry).map_err(|_| {
                    invalid(
                        "listener.trusted_proxies",
                        format!("{entry:?} is not an IP address or CIDR block"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if timing.counter_block == 0 {
            return Err(invalid("timing.counter_block", "must be at least 1"));
        }
        if timing.dek_cache_capacity == 0 {
            return Err(invalid("timing.dek_cache_capacity", "must be at least 1"));
        }
        for (key, value) in [
            (
                "timing.plugin_health_interval",
                timing.plugin_health_interval,
            ),
            (
                "timing.auto_rotate_check_interval",
                timing.auto_rotate_check_interval,
            ),
            ("timing.dek_cache_ttl", timing.dek_cache_ttl),
            ("timing.tidy_interval", timing.tidy_interval),
            ("timing.max_staleness", timing.max_staleness),
            ("timing.storage_heartbeat", timing.storage_heartbeat),
            ("timing.storage_timeout", timing.storage_timeout),
        ] {
            if value.is_zero() {
                return Err(invalid(key, "must be greater than zero"));
            }
        }
        if timing.storage_heartbeat >= timing.max_staleness {
            return Err(invalid(
                "timing.storage_heartbeat",
                "must be shorter than timing.max_staleness",
            ));
        }
        for (name, source) in &file.oidc_client_secrets {
            let named =
                |reason: &str| invalid("oidc_client_secrets", format!("{name:?}: {reason}"));
            if name.is_empty()
                || name.len() > 64
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(named("a name is 1 to 64 letters, digits, '-' or '_'"));
            }
            if source.env.is_some() == source.file.is_some() {
                return Err(named("give exactly one of env and file"));
            }
            if !source.issuer.starts_with("https://") {
                return Err(named("issuer must be the provider's https discovery URL"));
            }
        }
        Ok(Self {
            dev,
            dev_root_token_id: overrides.dev_root_token_id,
            state_dir,
            storage,
            plugin_dir: overrides.plugin_dir.or(file.plugin_dir),
            policy_dir: file.policy_dir,
            init_root_token_file: file.init_root_token_file,
            default_backend: file.default_backend.unwrap_or_else(|| "local".to_owned()),
            builtin_local: file.builtin_local.unwrap_or(true),
            listener,
            trusted_proxies,
            seal,
            timing,
            audit: audit_config(file.audit)?,
            oidc_client_secrets: file.oidc_client_secrets,
        })
    }
}

fn parse_storage(text: &str) -> Result<StorageConfig, ConfigError> {
    if let Some(rest) = text.strip_prefix("sqlite://") {
        return Ok(StorageConfig::Sqlite(PathBuf::from(rest)));
    }
    if let Some(rest) = text.strip_prefix("sqlite:") {
        return Ok(StorageConfig::Sqlite(PathBuf::from(rest)));
    }
    if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        return Ok(StorageConfig::Postgres(text.to_owned()));
    }
    if text.contains("://") {
        return Err(invalid(
            "storage",
            "expected a sqlite: URL, a file path or a postgres:// URL",
        ));
    }
    Ok(StorageConfig::Sqlite(PathBuf::from(text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FileConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let error = parse("state_dir = \"/x\"\nbogus = 1\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("bogus"), "{error}");
        let error = parse("[timing]\ndek_cache_tll = \"5m\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("dek_cache_tll"), "{error}");
    }

    #[test]
    fn plain_http_on_a_public_address_needs_tls_disable() {
        let file = parse("state_dir = \"/x\"\n[listener]\naddress = \"0.0.0.0:8200\"\n").unwrap();
        let error = Config::build(Some(file), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(error.contains("listener.address"), "{error}");
        let file = parse(
            "state_dir = \"/x\"\n[listener]\naddress = \"0.0.0.0:8200\"\ntls_disable = true\n",
        )
        .unwrap();
        assert!(Config::build(Some(file), Overrides::default()).is_ok());
    }

    #[test]
    fn dev_mode_is_loopback_only() {
        let overrides = Overrides {
            dev: true,
            dev_state_dir: Some(PathBuf::from("/tmp/x")),
            dev_listen_address: Some("0.0.0.0:8200".parse().unwrap()),
            ..Overrides::default()
        };
        assert!(Config::build(None, overrides).is_err());
    }

    #[test]
    fn audit_is_off_unless_a_file_is_named_and_checked_when_it_is() {
        let config = Config::build(
            Some(parse("state_dir = \"/x\"\n").unwrap()),
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(config.audit, None);
        let file = parse("state_dir = \"/x\"\n[audit]\nfile = \"/var/log/kb.log\"\n").unwrap();
        let config = Config::build(Some(file), Overrides::default()).unwrap();
        assert_eq!(
            config.audit,
            Some(AuditConfig {
                file: "/var/log/kb.log".into(),
                checkpoint_every: 1000,
                write_timeout: Duration::from_secs(1),
            })
        );
        let file = parse("state_dir = \"/x\"\n[audit]\nfile = \"/a.log\"\ncheckpoint_every = 0\n")
            .unwrap();
        let error = Config::build(Some(file), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(error.contains("audit.checkpoint_every"), "{error}");
        let error = parse("[audit]\nfile = \"/a.log\"\nwrite_timout = \"1s\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("write_timout"), "{error}");
    }

    #[test]
    fn trusted_proxies_and_lockout_are_checked() {
        let file = parse(
            "state_dir = \"/x\"\n[listener]\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.7\"]\n[timing]\napprole_lockout_threshold = 3\napprole_lockout_duration = \"2s\"\n",
        )
        .unwrap();
        let config = Config::build(Some(file), Overrides::default()).unwrap();
        let proxies: Vec<String> = config
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(proxies, vec!["10.0.0.0/8", "192.0.2.7/32"]);
        assert_eq!(config.timing.approle_lockout_threshold, 3);
        assert_eq!(
            config.timing.approle_lockout_duration,
            Duration::from_secs(2)
        );
        for (text, key) in [
            (
                "[listener]\ntrusted_proxies = [\"proxy.example\"]\n",
                "listener.trusted_proxies",
            ),
            (
                "[timing]\napprole_lockout_threshold = 0\n",
                "timing.approle_lockout_threshold",
            ),
        ] {
            let file = parse(&format!("state_dir = \"/x\"\n{text}")).unwrap();
            let error = Config::build(Some(file), Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(error.contains(key), "{error}");
        }
        let error = parse("[listener]\ntrusted_proxy = []\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("trusted_proxy"), "{error}");
    }

    #[test]
    fn storage_forms() {
        assert_eq!(
            parse_storage("sqlite:///a/b.db").unwrap(),
            StorageConfig::Sqlite("/a/b.db".into())
        );
        assert_eq!(
            parse_storage("/a/b.db").unwrap(),
            StorageConfig::Sqlite("/a/b.db".into())
        );
        assert!(parse_storage("mysql://x").is_err());
        assert_eq!(
            parse_storage("postgres://kb:secret@db:5432/kb").unwrap(),
            StorageConfig::Postgres("postgres://kb:secret@db:5432/kb".to_owned())
        );
        // Never printed with its password.
        let shown = format!(
            "{:?}",
            parse_storage("postgresql://kb:secret@db/kb").unwrap()
        );
        assert!(!shown.contains("secret"), "{shown}");
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    #[test]
    fn the_commented_example_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/keybroker.toml");
        let file = read_file(&path).unwrap();
        let config = Config::build(Some(file), Overrides::default()).unwrap();
        assert_eq!(config.timing.dek_cache_ttl, Duration::from_secs(300));
        assert_eq!(config.default_backend, "local");
        assert_eq!(config.audit.map(|audit| audit.checkpoint_every), Some(1000));
    }

    #[test]
    fn a_backend_seal_names_an_instance_of_the_plugin_dir() {
        let build = |text: &str| {
            Config::build(
                Some(toml::from_str::<FileConfig>(text).unwrap()),
                Overrides::default(),
            )
            .map_err(|e| e.to_string())
        };
        let config = build(
            "state_dir = \"/x\"\nplugin_dir = \"/p\"\n[seal]\ntype = \"backend\"\ninstance = \"aws\"\n",
        )
        .unwrap();
        assert_eq!(
            config.seal,
            SealConfig::Backend {
                instance: "aws".to_owned(),
                key: None,
                retry_interval: Duration::from_secs(5),
            }
        );
        for (text, named) in [
            ("[seal]\ntype = \"backend\"\ninstance = \"aws\"\n", "plugin_dir"),
            ("plugin_dir = \"/p\"\n[seal]\ntype = \"backend\"\ninstance = \"local\"\n", "seal.instance"),
            ("plugin_dir = \"/p\"\n[seal]\ntype = \"backend\"\ninstance = \"a b\"\n", "seal.instance"),
            (
                "plugin_dir = \"/p\"\n[seal]\ntype = \"backend\"\ninstance = \"aws\"\nretry_interval = \"0s\"\n",
                "retry_interval",
            ),
        ] {
            let error = build(&format!("state_dir = \"/x\"\n{text}")).unwrap_err();
            assert!(error.contains(named), "{text}: {error}");
        }
        let error = toml::from_str::<FileConfig>("[seal]\ntype = \"backend\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("instance"), "{error}");
    }
}
