//! `keybroker-agent`: holds the customer's keys and serves the broker's agent gateway over
//! one outbound TLS WebSocket. See the crate docs and README.md.
//!
//! ```text
//! keybroker-agent --config agent.toml
//! keybroker-agent --broker wss://broker:8201 --broker-ca ca.pem --agent-id acme-dc1 \
//!     --secret-file secret --key-file data=data.key --allow acme=data
//! keybroker-agent ... --hsm-module /usr/lib/softhsm/libsofthsm2.so --hsm-module-sha256 HEX \
//!     --hsm-token acme --hsm-pin-file hsm.pin --key-hsm data=label:acme-kek --allow acme=data
//! keybroker-agent pin --config agent.toml
//! keybroker-agent genkey data.key        # or: genkey --secret secret
//! ```
//!
//! Exit codes: 0 after SIGTERM/SIGINT (or a subcommand's success), 2 for a usage or
//! configuration error, 1 if the runtime cannot start.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use keybroker_agent::config::{identity_from_flags, Flags};
use keybroker_agent::genkey::write_random_key_file;
use keybroker_agent::{pin_instructions, Config, ConfigError, SystemClock, Transport};
use tokio::sync::watch;

/// Flags given together with `--config` are refused: one source of truth.
const CONFIG_FLAGS: [&str; 16] = [
    "broker",
    "broker_ca",
    "agent_id",
    "secret_file",
    "key_file",
    "key_env",
    "allow",
    "heartbeat_interval",
    "reconnect_max_delay",
    "rate_limit",
    "key_hsm",
    "hsm_module",
    "hsm_module_sha256",
    "hsm_token",
    "hsm_pin_file",
    "hsm_pin_env",
];

#[derive(Parser)]
#[command(
    name = "keybroker-agent",
    version,
    about = "Holds the customer's keys and answers keybroker's agent gateway (egress only)",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Print the agent's id and pin for the broker's operator, then exit.
    Pin(PinArgs),
    /// Write a new random key (or, with --secret, agent secret) file, mode 600.
    Genkey(GenkeyArgs),
}

#[derive(Args)]
struct RunArgs {
    /// The TOML config file (exclusive with the flags below).
    #[arg(long, value_name = "FILE", conflicts_with_all = CONFIG_FLAGS)]
    config: Option<PathBuf>,
    /// The broker's agent gateway.
    #[arg(long, value_name = "wss://HOST:PORT")]
    broker: Option<String>,
    /// The CA certificate(s) (PEM) the broker's certificate must chain to; nothing else is
    /// trusted.
    #[arg(long, value_name = "FILE")]
    broker_ca: Option<PathBuf>,
    /// The id the broker's gateway knows this agent by.
    #[arg(long, value_name = "ID")]
    agent_id: Option<String>,
    /// The agent secret (base64 of ≥ 32 bytes, mode 600; see `genkey --secret`).
    #[arg(long, value_name = "FILE")]
    secret_file: Option<PathBuf>,
    /// A key file (raw 32 bytes or base64, mode 600); NAME defaults to "default".
    /// Repeatable.
    #[arg(long, value_name = "[NAME=]PATH")]
    key_file: Vec<String>,
    /// A key in an environment variable (base64); NAME defaults to "default". Repeatable.
    #[arg(long, value_name = "[NAME=]VAR")]
    key_env: Vec<String>,
    /// A key in the HSM (--hsm-*): an AES-256 key named by its CKA_LABEL or CKA_ID.
    /// Repeatable.
    #[arg(long, value_name = "NAME=label:LABEL|NAME=id:HEX")]
    key_hsm: Vec<String>,
    /// The HSM's PKCS#11 module (.so), for --key-hsm.
    #[arg(long, value_name = "PATH")]
    hsm_module: Option<PathBuf>,
    /// The SHA-256 of the PKCS#11 module file (sha256sum); nothing else is loaded.
    #[arg(long, value_name = "HEX")]
    hsm_module_sha256: Option<String>,
    /// The HSM token's label.
    #[arg(long, value_name = "LABEL")]
    hsm_token: Option<String>,
    /// The HSM user PIN's file (mode 600).
    #[arg(long, value_name = "FILE")]
    hsm_pin_file: Option<PathBuf>,
    /// The environment variable holding the HSM user PIN.
    #[arg(long, value_name = "VAR")]
    hsm_pin_env: Option<String>,
    /// Let TENANT use these keys (no keys: every key). Repeatable.
    #[arg(long, value_name = "TENANT[=KEY1,KEY2]")]
    allow: Vec<String>,
    /// Heartbeat interval until the broker sets one [default: 5s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    heartbeat_interval: Option<Duration>,
    /// Longest wait between reconnection attempts [default: 30s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    reconnect_max_delay: Option<Duration>,
    /// Operations per second, and burst [default: 1000/1000].
    #[arg(long, value_name = "PER_SECOND[/BURST]")]
    rate_limit: Option<String>,
}

#[derive(Args)]
struct PinArgs {
    /// The agent's config file.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["agent_id", "secret_file"])]
    config: Option<PathBuf>,
    /// The agent's id (with --secret-file, instead of --config).
    #[arg(long, value_name = "ID")]
    agent_id: Option<String>,
    /// The agent secret file.
    #[arg(long, value_name = "FILE")]
    secret_file: Option<PathBuf>,
}

#[derive(Args)]
struct GenkeyArgs {
    /// Write an agent secret (for --secret-file) rather than a key; the same format, but
    /// says what to do next.
    #[arg(long)]
    secret: bool,
    /// The file to create; an existing file is never overwritten.
    file: PathBuf,
}

fn parse_duration(text: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(text)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Pin(args)) => pin(&args),
        Some(Command::Genkey(args)) => genkey(&args),
        None => run(cli.run),
    }
}

/// A configuration error: reported on stderr, exit code 2.
fn config_error(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("keybroker-agent: {error}");
    ExitCode::from(2)
}

fn pin(args: &PinArgs) -> ExitCode {
    let loaded = match &args.config {
        Some(path) => {
            Config::load(path).and_then(|config| Ok((config.agent_id.clone(), config.identity()?)))
        }
        None => identity_from_flags(args.agent_id.as_deref(), args.secret_file.as_deref()),
    };
    match loaded {
        Ok((agent_id, identity)) => {
            print!("{}", pin_instructions(&agent_id, &identity));
            ExitCode::SUCCESS
        }
        Err(error) => config_error(&error),
    }
}

fn genkey(args: &GenkeyArgs) -> ExitCode {
    if let Err(error) = write_random_key_file(&args.file) {
        return config_error(&error);
    }
    let file = args.file.display();
    if args.secret {
        eprintln!(
            "wrote a new agent secret to {file} (mode 600); give it to --secret-file, then run \
             `keybroker-agent pin` and send the output to the broker's operator"
        );
    } else {
        eprintln!(
            "wrote a new 256-bit key to {file} (mode 600); give it to --key-file NAME={file}. \
             Back it up: data encrypted under it cannot be decrypted without it"
        );
    }
    ExitCode::SUCCESS
}

fn run(args: RunArgs) -> ExitCode {
    init_logging();
    let config = match &args.config {
        Some(path) => Config::load(path),
        None => Config::from_flags(&args.into_flags()),
    };
    let config = match config {
        Ok(config) => config,
        Err(error) => return config_error(&error),
    };
    let transport = match start(&config) {
        Ok(transport) => transport,
        Err(StartError::Config(error)) => return config_error(&error),
        Err(StartError::Transport(error)) => return config_error(&error),
    };
    let tenants: Vec<&str> = config
        .allowlist
        .entries()
        .map(|(tenant, _)| tenant)
        .collect();
    tracing::info!(
        agent_id = %config.agent_id,
        broker = %transport.url(),
        "serving {} keys for tenants {}",
        config.keys.len(),
        tenants.join(", ")
    );

    // One thread: the agent serves one connection, handling each request inline; more
    // threads would only add switches between them.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("keybroker-agent: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let (stop, shutdown) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("signal received: closing the connection and exiting");
            let _ = stop.send(true);
        });
        transport.run(shutdown).await;
    });
    ExitCode::SUCCESS
}

/// Why the agent could not start.
enum StartError {
    Config(ConfigError),
    Transport(keybroker_agent::TransportError),
}

impl From<ConfigError> for StartError {
    fn from(error: ConfigError) -> Self {
        Self::Config(error)
    }
}

/// Loads the identity and keys, and prepares the transport (reads `broker_ca`).
fn start(config: &Config) -> Result<Transport, StartError> {
    let identity = config.identity()?;
    let service = config.service(&|name| std::env::var_os(name), Arc::new(SystemClock))?;
    Transport::new(config, identity, Arc::new(service)).map_err(StartError::Transport)
}

impl RunArgs {
    fn into_flags(self) -> Flags {
        Flags {
            agent_id: self.agent_id,
            broker: self.broker,
            broker_ca: self.broker_ca,
            secret_file: self.secret_file,
            key_files: self.key_file,
            key_envs: self.key_env,
            allow: self.allow,
            heartbeat_interval: self.heartbeat_interval,
            reconnect_max_delay: self.reconnect_max_delay,
            rate_limit: self.rate_limit,
            key_hsms: self.key_hsm,
            hsm_module: self.hsm_module,
            hsm_module_sha256: self.hsm_module_sha256,
            hsm_token: self.hsm_token,
            hsm_pin_file: self.hsm_pin_file,
            hsm_pin_env: self.hsm_pin_env,
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// SIGTERM or SIGINT.
async fn wait_for_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = terminate => {}
        () = interrupt => {}
    }
}
