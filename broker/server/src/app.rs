//! Building and running a broker from a validated [`Config`].

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use keybroker_core::changes::Change;
use keybroker_core::{
    broker::BrokerSettings, clock::SystemClock, engines::transit::TransitSettings, seal::RootKey,
    store::Store, Broker, Tenant, TenantId,
};
use keybroker_store::{PostgresOptions, PostgresStore, SqliteStore};
use zeroize::Zeroizing;

use crate::{
    audit::{AuditSink, FileSink, FileSinkSettings},
    config::{Config, SealConfig, StorageConfig},
    http::{kind::Registry, AppState, LiveState, Ready},
    idp::HttpsIdentityProviders,
    metrics::{BackendMetrics, Metrics},
    plugin_host::{HostSettings, PluginHost},
    seal::{backend_root_key, load_root_key},
};

/// A broker ready to serve, or sealed.
pub struct Built {
    /// The HTTP state.
    pub state: AppState,
    /// The root token if this start initialised the store.
    pub root_token: Option<Zeroizing<String>>,
    /// Set when a backend seal could not unwrap the root key yet: run it and the broker
    /// unseals by itself once the backend answers.
    pub unsealer: Option<Unsealer>,
}

/// Opens the configured store (applying migrations), creating its directory if needed.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    match &config.storage {
        StorageConfig::Sqlite(path) => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).with_context(|| {
                    format!("cannot create the storage directory {}", parent.display())
                })?;
            }
            let store = SqliteStore::open(path)
                .await
                .with_context(|| format!("cannot open the SQLite store {}", path.display()))?;
            Ok(Arc::new(store))
        }
        StorageConfig::Postgres(url) => {
            let options = PostgresOptions {
                acquire_timeout: config.timing.storage_timeout,
                connect_timeout: config.timing.storage_timeout,
                heartbeat: config.timing.storage_heartbeat,
                ..PostgresOptions::default()
            };
            // The URL may hold a password: the error names the host part only.
            let store = PostgresStore::open(url, options).await.with_context(|| {
                format!("cannot open the PostgreSQL store at {}", redact_url(url))
            })?;
            Ok(Arc::new(store))
        }
    }
}

/// A database URL without its credentials, for messages.
fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            let host = host.split(['?', '#']).next().unwrap_or_default();
            format!("{scheme}://{host}")
        }
        None => "(unparsable URL)".to_owned(),
    }
}

/// Whether the store has never been initialised.
async fn store_is_fresh(store: &Arc<dyn Store>) -> anyhow::Result<bool> {
    Ok(store
        .get_meta("server-hmac-key")
        .await
        .map_err(anyhow::Error::from)?
        .is_none())
}

/// The seal's type as `sys/seal-status` shows it.
fn seal_type(config: &Config) -> &'static str {
    match config.seal {
        SealConfig::File { .. } => "file",
        SealConfig::Env { .. } => "env",
        SealConfig::Backend { .. } => "backend",
    }
}

/// A host for what exists before the root key: the seal's backend instance. Its root key
/// is a placeholder that nothing it loads uses (built-in plugins are refused there).
fn placeholder_host(
    config: &Config,
    store: &Arc<dyn Store>,
    backend_metrics: &Arc<BackendMetrics>,
) -> Arc<PluginHost> {
    Arc::new(PluginHost::new(
        host_settings(config),
        store.clone(),
        Arc::new(RootKey::new(Zeroizing::new([0; 32]))),
        backend_metrics.clone(),
    ))
}

/// The state of a broker sealed for `reason`.
fn sealed_state(
    config: &Config,
    reason: &str,
    store: &Arc<dyn Store>,
    backend_metrics: &Arc<BackendMetrics>,
) -> AppState {
    tracing::error!(%reason, "broker is sealed");
    let host = placeholder_host(config, store, backend_metrics);
    let metrics = Arc::new(Metrics::new(backend_metrics.clone(), host.clone()));
    AppState::sealed(reason.to_owned(), metrics, config.listener.max_request_size)
        .with_request_bounds(
            config.listener.max_in_flight_requests,
            config.listener.http_read_timeout,
        )
        .with_seal_type(seal_type(config))
}

/// Opens the store, unseals, loads plugins and (on an empty store) initialises.
/// A seal that cannot be opened yields a sealed broker, not an error; a backend seal that
/// cannot unwrap the root key yet also yields an [`Unsealer`].
pub async fn build(config: &Config) -> anyhow::Result<Built> {
    build_with_kinds(config, Arc::new(Registry::standard())).await
}

/// As [`build`], serving the kinds of mount in `kinds` (the standard ones, and any other).
pub async fn build_with_kinds(config: &Config, kinds: Arc<Registry>) -> anyhow::Result<Built> {
    std::fs::create_dir_all(&config.state_dir).with_context(|| {
        format!(
            "cannot create the state directory {}",
            config.state_dir.display()
        )
    })?;
    let store = open_store(config).await?;
    let backend_metrics = Arc::new(BackendMetrics::default());
    let unsealer = Unsealer {
        config: config.clone(),
        store: store.clone(),
        backend_metrics: backend_metrics.clone(),
        kinds: kinds.clone(),
    };
    match unsealer.root_key(true).await? {
        Ok(root_key) => open_with_root_key(config, store, root_key, backend_metrics, kinds).await,
        Err(reason) => {
            let state = sealed_state(config, &reason, &store, &backend_metrics);
            let retry = matches!(config.seal, SealConfig::Backend { .. });
            Ok(Built {
                state,
                root_token: None,
                unsealer: retry.then_some(unsealer),
            })
        }
    }
}

/// Unseals a broker whose backend seal could not unwrap the root key at start-up, as soon
/// as the backend can (ARCHITECTURE.md §2, issue 7: auto-unseal).
pub struct Unsealer {
    config: Config,
    store: Arc<dyn Store>,
    backend_metrics: Arc<BackendMetrics>,
    kinds: Arc<Registry>,
}

impl Unsealer {
    /// The root key, or why the broker stays sealed (`Err` only for store failures). A
    /// fresh store gets a new root key only if `may_initialise`.
    async fn root_key(&self, may_initialise: bool) -> anyhow::Result<Result<Arc<RootKey>, String>> {
        let fresh = may_initialise && store_is_fresh(&self.store).await?;
        let key = match &self.config.seal {
            SealConfig::Backend { instance, key, .. } => {
                let host = placeholder_host(&self.config, &self.store, &self.backend_metrics);
                backend_root_key(&host, self.store.as_ref(), instance, key.as_deref(), fresh).await
            }
            seal => load_root_key(seal, fresh).map_err(|e| e.to_string()),
        };
        Ok(key.map(Arc::new))
    }

    /// Tries every `retry_interval` until the broker unseals, then serves the unsealed
    /// state through `live` (with its periodic jobs); meanwhile `live` shows the latest
    /// reason.
    pub async fn run(self, live: LiveState) {
        let interval = match self.config.seal {
            SealConfig::Backend { retry_interval, .. } => retry_interval,
            _ => return,
        };
        loop {
            tokio::time::sleep(interval).await;
            let attempt = match self.root_key(true).await {
                Ok(Ok(root_key)) => open_with_root_key(
                    &self.config,
                    self.store.clone(),
                    root_key,
                    self.backend_metrics.clone(),
                    self.kinds.clone(),
                )
                .await
                .map_err(|e| format!("{e:#}")),
                Ok(Err(reason)) => Err(reason),
                Err(error) => Err(format!("{error:#}")),
            };
            match attempt {
                Ok(built) if built.state.ready_parts().is_some() => {
                    if let Err(error) = announce_root_token(&self.config, built.root_token.as_ref())
                    {
                        tracing::error!(error = %format!("{error:#}"), "cannot hand out the root token");
                    }
                    spawn_background(&built.state, &self.config);
                    tracing::info!("unsealed: the seal backend unwrapped the root key");
                    live.replace(built.state);
                    return;
                }
                Ok(built) => {
                    // Opened the root key but not the store: nothing will change that.
                    live.replace(built.state);
                    return;
                }
                Err(reason) => {
                    if live.current().sealed_reason() != Some(reason.as_str()) {
                        live.replace(sealed_state(
                            &self.config,
                            &reason,
                            &self.store,
                            &self.backend_metrics,
                        ));
                    }
                }
            }
        }
    }
}

/// The root key of an initialised store, from any seal (`keybroker audit verify`).
pub async fn existing_root_key(
    config: &Config,
    store: Arc<dyn Store>,
) -> anyhow::Result<Arc<RootKey>> {
    let unsealer = Unsealer {
        config: config.clone(),
        store,
        backend_metrics: Arc::new(BackendMetrics::default()),
        kinds: Arc::new(Registry::standard()),
    };
    unsealer.root_key(false).await?.map_err(anyhow::Error::msg)
}

/// Prints the first root token (dev mode, or a store initialised without
/// `init_root_token_file`), or writes it to that file.
pub fn announce_root_token(
    config: &Config,
    token: Option<&Zeroizing<String>>,
) -> anyhow::Result<()> {
    let Some(token) = token else {
        return Ok(());
    };
    match (&config.init_root_token_file, config.dev) {
        (Some(path), false) => {
            write_token_file(path, token)?;
            eprintln!(
                "Initialised a new store; the root token was written to {}",
                path.display()
            );
        }
        _ => {
            let banner = if config.dev {
                "keybroker is running in dev mode: data lives in a temporary directory removed at exit."
            } else {
                "Initialised a new store. The root token is shown once; keep it safe."
            };
            println!("{banner}\n");
            println!("Api Address: http://{}", config.listener.address);
            println!("Root Token: {}", token.as_str());
            println!();
        }
    }
    Ok(())
}

/// Everything after the root key: the plugin host, the core, policies, first
/// initialisation, the audit log.
async fn open_with_root_key(
    config: &Config,
    store: Arc<dyn Store>,
    root_key: Arc<RootKey>,
    backend_metrics: Arc<BackendMetrics>,
    kinds: Arc<Registry>,
) -> anyhow::Result<Built> {
    let host = Arc::new(PluginHost::new(
        host_settings(config),
        store.clone(),
        root_key.clone(),
        backend_metrics.clone(),
    ));
    let settings = BrokerSettings {
        transit: TransitSettings {
            rotation_threshold: config.timing.rotation_threshold,
            counter_block: config.timing.counter_block,
            min_auto_rotate_period: config.timing.min_auto_rotate_period.as_secs(),
            default_backend: config.default_backend.clone(),
            ..TransitSettings::default()
        },
        tokens: keybroker_core::auth::token::TokenSettings {
            default_ttl: config.timing.token_default_ttl.as_secs(),
            max_ttl: config.timing.token_max_ttl.as_secs(),
        },
        approle: keybroker_core::auth::approle::AppRoleSettings {
            lockout_threshold: config.timing.approle_lockout_threshold,
            lockout_duration: config.timing.approle_lockout_duration.as_secs(),
        },
        mount_kinds: kinds.mount_kinds(),
    };
    let broker = match Broker::open(
        store.clone(),
        host.clone(),
        Arc::new(HttpsIdentityProviders::new(
            config.oidc_client_secrets.clone(),
        )),
        Arc::new(SystemClock),
        &root_key,
        settings,
    )
    .await
    {
        Ok(broker) => Arc::new(broker),
        Err(keybroker_core::Error::Sealed) => {
            return Ok(Built {
                state: sealed_state(
                    config,
                    "the root key does not open this store",
                    &store,
                    &backend_metrics,
                ),
                root_token: None,
                unsealer: None,
            });
        }
        Err(error) => return Err(anyhow::Error::from(error).context("cannot open the broker")),
    };
    if let Some(dir) = &config.policy_dir {
        load_policy_dir(&broker, dir).await?;
    }
    host.reload().await;
    let chosen = if config.dev {
        config.dev_root_token_id.as_deref()
    } else {
        None
    };
    let root_token = broker
        .initialize(chosen)
        .await
        .map_err(anyhow::Error::from)?;
    if config.dev && root_token.is_some() {
        broker
            .enable_dev_kv()
            .await
            .context("cannot mount KV at secret/")?;
    }
    let audit: Option<Arc<dyn AuditSink>> = match &config.audit {
        None => None,
        Some(audit) => {
            let sink = FileSink::start(
                FileSinkSettings::from_config(audit),
                store.clone(),
                &root_key,
                Arc::new(SystemClock),
            )
            .await
            .context("cannot start the audit log")?;
            Some(Arc::new(sink))
        }
    };
    let metrics = Arc::new(Metrics::new(backend_metrics, host.clone()));
    let state = AppState::ready(
        Ready {
            broker,
            host,
            kinds,
        },
        audit,
        metrics,
        config.listener.max_request_size,
    )
    .with_request_bounds(
        config.listener.max_in_flight_requests,
        config.listener.http_read_timeout,
    )
    .with_trusted_proxies(config.trusted_proxies.clone())
    .with_storage(
        match config.storage {
            StorageConfig::Sqlite(_) => "sqlite",
            StorageConfig::Postgres(_) => "postgresql",
        },
        config.timing.max_staleness,
    )
    .with_seal_type(seal_type(config));
    Ok(Built {
        state,
        root_token,
        unsealer: None,
    })
}

/// Loads `*.hcl` from the policy directory into the root namespace, and from
/// `<dir>/<tenant>/` into that tenant. A policy that does not parse stops the start-up
/// (the broker never runs half-configured); a directory that names no tenant is skipped
/// with a warning.
async fn load_policy_dir(broker: &Broker, dir: &std::path::Path) -> anyhow::Result<()> {
    let read = |dir: &std::path::Path| -> anyhow::Result<Vec<PathBuf>> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read the policy directory {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        Ok(entries)
    };
    let mut loaded = 0;
    for entry in read(dir)? {
        let (tenant, files) = if entry.is_dir() {
            let name = entry
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            match broker.tenants.resolve(&name) {
                Some(tenant) if tenant.id != TenantId::ROOT => (tenant, read(&entry)?),
                _ => {
                    tracing::warn!(directory = %entry.display(), "no namespace of that name; its policies are not loaded");
                    continue;
                }
            }
        } else {
            (Tenant::root(), vec![entry])
        };
        for file in files
            .into_iter()
            .filter(|f| f.extension().is_some_and(|e| e == "hcl"))
        {
            let name = file
                .file_stem()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read policy file {}", file.display()))?;
            broker
                .policies
                .write(tenant.id, &name, &text)
                .await
                .map_err(|e| anyhow::anyhow!("policy file {}: {e}", file.display()))?;
            loaded += 1;
        }
    }
    tracing::info!(policies = loaded, directory = %dir.display(), "loaded policies");
    Ok(())
}

fn host_settings(config: &Config) -> HostSettings {
    HostSettings {
        plugin_dir: config.plugin_dir.clone(),
        copies_dir: config.state_dir.join("plugins"),
        builtin_local: config.builtin_local,
        cache_ttl: config.timing.dek_cache_ttl,
        cache_capacity: config.timing.dek_cache_capacity,
    }
}

/// Starts the periodic jobs: backend health checks and automatic rotation.
pub fn spawn_background(state: &AppState, config: &Config) {
    let Some(ready) = state.ready_parts().cloned() else {
        return;
    };
    let host = ready.host.clone();
    let interval = config.timing.plugin_health_interval;
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            host.check_health().await;
        }
    });
    if let Some(changes) = ready.broker.store.subscribe() {
        tokio::spawn(follow_changes(ready.clone(), changes));
    }
    let broker = ready.broker.clone();
    spawn_exclusive(
        broker.clone(),
        "auto-rotate",
        config.timing.auto_rotate_check_interval,
        rotate_due_keys,
    );
    spawn_exclusive(broker, "tidy", config.timing.tidy_interval, tidy);
}

/// Runs `job` every `interval`, on one node of a cluster at a time (the store's job lock).
fn spawn_exclusive<F, Fut>(broker: Arc<Broker>, name: &'static str, interval: Duration, job: F)
where
    F: Fn(Arc<Broker>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let _lock = match broker.store.try_lock_job(name).await {
                Ok(Some(guard)) => guard,
                Ok(None) => continue,
                Err(error) => {
                    tracing::warn!(job = name, %error, "periodic job skipped");
                    continue;
                }
            };
            job(broker.clone()).await;
        }
    });
}

/// Rotates every key whose `auto_rotate_period` has elapsed, in every tenant (the rotation
/// itself is a compare-and-set, so a key rotates once even if two nodes raced).
async fn rotate_due_keys(broker: Arc<Broker>) {
    let tenant_of = |id: TenantId| {
        if id == TenantId::ROOT {
            Some(Tenant::root())
        } else {
            broker.tenants.by_id(id)
        }
    };
    match broker.transit.rotate_due_keys(tenant_of).await {
        Ok(0) => {}
        Ok(rotated) => tracing::info!(rotated, "automatic key rotation"),
        Err(error) => tracing::warn!(%error, "automatic rotation check failed"),
    }
    rewrap_kv_mounts(&broker).await;
}

/// Rewraps the data keys of every KV mount whose key rotated (by hand or on its period)
/// since its last rewrap, under the key's latest version.
async fn rewrap_kv_mounts(broker: &Broker) {
    let tenants = std::iter::once(Tenant::root()).chain(broker.tenants.list());
    for tenant in tenants {
        let Ok(table) = broker.mounts.table(tenant.id).await else {
            continue;
        };
        for mount in table.iter().filter(|m| m.kind == "kv") {
            let kv = keybroker_core::engines::kv::KvMount {
                tenant: &tenant,
                mount,
            };
            match broker.kv.rewrap_if_rotated(&broker.transit, &kv).await {
                Ok(None) => {}
                Ok(Some(report)) => tracing::info!(
                    tenant = %tenant.name,
                    mount = %mount.path,
                    rewrapped = report.rewrapped,
                    "rewrapped a KV mount's data keys after its key rotated"
                ),
                Err(error) => {
                    tracing::warn!(%error, tenant = %tenant.name, mount = %mount.path, "KV rewrap failed")
                }
            }
        }
    }
}

/// Deletes expired tokens, expired secret_ids of every AppRole mount of every tenant, and
/// the markers of expired OIDC states of every jwt mount.
async fn tidy(broker: Arc<Broker>) {
    match broker.tokens.tidy().await {
        Ok(0) => {}
        Ok(count) => tracing::info!(count, "tidied expired tokens"),
        Err(error) => tracing::warn!(%error, "token tidy failed"),
    }
    let tenants = std::iter::once(Tenant::root()).chain(broker.tenants.list());
    for tenant in tenants {
        let Ok(table) = broker.mounts.table(tenant.id).await else {
            continue;
        };
        for mount in table
            .iter()
            .filter(|m| m.kind == keybroker_core::auth::approle::AUTH_TYPE)
        {
            if let Err(error) = broker.approle.tidy(mount).await {
                tracing::warn!(%error, tenant = %tenant.name, "secret_id tidy failed");
            }
        }
        for mount in table
            .iter()
            .filter(|m| m.kind == keybroker_core::auth::jwt::method::AUTH_TYPE)
        {
            if let Err(error) = broker.jwt.tidy_spent_states(&broker.mounts, mount).await {
                tracing::warn!(%error, tenant = %tenant.name, "OIDC state tidy failed");
            }
        }
    }
}

/// Applies the changes every node of a cluster announces: caches drop what is stale, a
/// plugin reload on one node reloads the plugins here. A gap in the feed drops every cache.
async fn follow_changes(ready: Ready, mut changes: tokio::sync::broadcast::Receiver<Change>) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let change = match changes.recv().await {
            Ok(change) => change,
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "change feed lagged; dropping every cache");
                Change::Resync
            }
            Err(RecvError::Closed) => return,
        };
        apply_change(&ready, &change).await;
    }
}

/// Applies one change from the cluster on this node: a plugin reload reloads the plugins;
/// anything else drops what is stale in the core's caches, then in each kind of mount's.
pub async fn apply_change(ready: &Ready, change: &Change) {
    if *change == Change::Plugins {
        ready.host.reload().await;
        return;
    }
    if let Err(error) = ready.broker.apply_change(change).await {
        // The caches were dropped before the re-read that failed; the staleness bound
        // keeps requests off this node until its feed works again.
        tracing::warn!(%error, change = ?change, "could not apply a change from the cluster");
    }
    ready.kinds.invalidate(ready, change).await;
}

/// Reloads plugins on SIGHUP.
/// Listened for from the start, sealed or not: SIGHUP's default action would end the process.
pub fn spawn_sighup_reload(live: &LiveState) -> anyhow::Result<()> {
    let live = live.clone();
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot listen for SIGHUP")?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match live.current().ready_parts().cloned() {
                Some(ready) => {
                    tracing::info!("SIGHUP: reloading backend plugins");
                    ready.host.reload_everywhere().await;
                }
                None => tracing::warn!("SIGHUP: the broker is sealed; no plugins to reload"),
            }
        }
    });
    Ok(())
}

/// Resolves when the process is asked to stop (SIGINT or SIGTERM).
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// Writes the first root token to a file only its owner can read.
pub fn write_token_file(path: &PathBuf, token: &str) -> anyhow::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create the root token file {}", path.display()))?;
    file.write_all(token.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .with_context(|| format!("cannot write the root token file {}", path.display()))?;
    Ok(())
}

/// Serves the API until a shutdown signal, then makes the audit log durable.
pub async fn serve(config: &Config, live: LiveState) -> anyhow::Result<()> {
    let app = crate::http::router(live.clone());
    let served = serve_until_shutdown(config, app).await;
    if let Some(audit) = live.current().audit().cloned() {
        if let Err(error) = audit.flush().await {
            tracing::error!(%error, "audit log flush at shutdown failed");
        }
    }
    served
}

async fn serve_until_shutdown(config: &Config, app: axum::Router) -> anyhow::Result<()> {
    let listener_config = &config.listener;
    let address = listener_config.address;
    let tls = match (
        &listener_config.tls_cert_file,
        &listener_config.tls_key_file,
    ) {
        (Some(cert), Some(key)) => Some(tokio_rustls::TlsAcceptor::from(tls_config(cert, key)?)),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    if tls.is_some() {
        tracing::info!(%address, "listening with TLS");
    } else {
        tracing::info!(%address, "listening");
    }
    let bounds = crate::listener::Bounds {
        max_connections: listener_config.max_connections,
        header_read_timeout: listener_config.http_read_header_timeout,
        idle_timeout: listener_config.http_idle_timeout,
    };
    crate::listener::serve(listener, tls, app, bounds, shutdown_signal())
        .await
        .context("server failed")
}

fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read TLS certificate {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("invalid TLS certificate {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read TLS key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("TLS certificate and key do not match")?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(server))
}
