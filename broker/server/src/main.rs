//! `keybroker`: the key broker server.
//!
//! `keybroker server --dev` for a throwaway broker on 127.0.0.1:8200, `keybroker server
//! --config FILE` for a real one.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use keybroker_server::{app, audit, config, hygiene};

// Many small allocations per request (headers, JSON, base64); mimalloc serves them faster
// than glibc's allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "keybroker", version, about = "A Vault-style key broker")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker.
    Server(ServerArgs),
    /// Audit log tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check an audit file's chain and the store's checkpoint: exit 0 if intact, 1 with the
    /// offending line otherwise.
    Verify(AuditVerifyArgs),
}

#[derive(clap::Args)]
struct AuditVerifyArgs {
    /// The audit file.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The broker's configuration file (for the store and the seal).
    #[arg(long, value_name = "CONFIG")]
    config: PathBuf,
    /// The audit sink that wrote the file.
    #[arg(long, value_name = "NAME", default_value = audit::DEFAULT_SINK)]
    sink: String,
}

#[derive(clap::Args)]
struct ServerArgs {
    /// Configuration file (TOML).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Development mode: temporary SQLite store, generated root key, printed root token,
    /// loopback only. Never for real data.
    #[arg(long)]
    dev: bool,
    /// Dev mode: use this text as the root token.
    #[arg(long, value_name = "ID", requires = "dev")]
    dev_root_token_id: Option<String>,
    /// Dev mode: listen address (loopback only).
    #[arg(long, value_name = "ADDR", requires = "dev")]
    dev_listen_address: Option<SocketAddr>,
    /// Drop-in directory of backend instances (overrides the config file's `plugin_dir`).
    #[arg(long, value_name = "DIR")]
    plugin_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KEYBROKER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    hygiene::harden_process();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Server(args) => runtime.block_on(run_server(args)),
        Command::Audit {
            command: AuditCommand::Verify(args),
        } => return runtime.block_on(run_audit_verify(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_server(args: ServerArgs) -> anyhow::Result<()> {
    let file = args.config.as_deref().map(config::read_file).transpose()?;
    // Dev state lives in a temporary directory removed at exit.
    let dev_dir = if args.dev {
        Some(
            tempfile::Builder::new()
                .prefix("keybroker-dev-")
                .tempdir()?,
        )
    } else {
        None
    };
    let overrides = config::Overrides {
        dev: args.dev,
        dev_root_token_id: args.dev_root_token_id,
        dev_listen_address: args.dev_listen_address,
        plugin_dir: args.plugin_dir,
        dev_state_dir: dev_dir.as_ref().map(|d| d.path().to_owned()),
    };
    let config = config::Config::build(file, overrides)?;
    let built = app::build(&config).await?;
    app::announce_root_token(&config, built.root_token.as_ref())?;
    app::spawn_background(&built.state, &config);
    let live = keybroker_server::http::LiveState::new(built.state);
    app::spawn_sighup_reload(&live)?;
    if let Some(unsealer) = built.unsealer {
        tokio::spawn(unsealer.run(live.clone()));
    }
    app::serve(&config, live).await?;
    drop(dev_dir);
    Ok(())
}

/// `keybroker audit verify`: one line on stdout, exit 0 if the file is intact.
async fn run_audit_verify(args: AuditVerifyArgs) -> ExitCode {
    let file = args.file.display().to_string();
    match audit_verify(args).await {
        Ok(Ok(report)) => {
            let checkpoint = match report.checkpoint {
                Some(sequence) => format!("checkpoint at sequence {sequence} matches"),
                None => "no checkpoint in the store".to_owned(),
            };
            println!(
                "OK {file}: {} records, last sequence {}, {checkpoint}",
                report.records, report.last_sequence
            );
            ExitCode::SUCCESS
        }
        Ok(Err(problem)) => {
            println!("FAILED {file}: {problem}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn audit_verify(
    args: AuditVerifyArgs,
) -> anyhow::Result<Result<audit::VerifyReport, audit::VerifyError>> {
    let config = config::Config::build(
        Some(config::read_file(&args.config)?),
        config::Overrides::default(),
    )?;
    // Verifying must not create an empty store where the real one is missing.
    match &config.storage {
        config::StorageConfig::Sqlite(path) if !path.exists() => {
            anyhow::bail!("the store {} does not exist", path.display())
        }
        _ => {}
    }
    let store = app::open_store(&config).await?;
    let root_key = app::existing_root_key(&config, store.clone()).await?;
    let chain_key = audit::existing_chain_key(store.as_ref(), &root_key, &args.sink)
        .await?
        .ok_or_else(|| {
            anyhow::anyhow!("the store has no audit chain key for sink {}", args.sink)
        })?;
    let checkpoint = store.latest_audit_checkpoint(&args.sink).await?;
    let path = args.file;
    Ok(tokio::task::spawn_blocking(move || audit::verify(&path, &chain_key, checkpoint)).await?)
}
