//! The plugin host: reads `plugins.d/`, verifies and loads each instance, and keeps the
//! current set. A drop-in that fails (parse, pin, permissions, ABI, constructor) leaves its
//! instance unavailable with a reason; everything else keeps serving. Reloading keeps
//! instances whose drop-in did not change (and so their caches), and loads changed ones
//! anew.

mod dropin;
mod instance;
mod loader;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use abi_stable::std_types::{RResult, RStr};
use arc_swap::ArcSwap;
use keybroker_core::{
    backend::{BackendInstance, Backends, OnUnavailable},
    seal::RootKey,
    store::Store,
};
use keybroker_plugin_abi::{BackendBox, HostBox, HostServices_TO, PluginError};
use tokio::sync::Mutex;

pub use dropin::{valid_instance_name, DropIn, BUILTIN_PREFIX};
pub use instance::{Instance, InstanceSettings};
pub use loader::{check_not_writable_by_others, sha256_hex};

use crate::metrics::BackendMetrics;

/// Name of the built-in instance whose KEK the broker generates and seals.
pub const BUILTIN_LOCAL: &str = "local";

/// What `sys/plugins/backends` shows of one drop-in.
#[derive(Debug, Clone)]
pub struct InstanceReport {
    /// Instance name (the file stem if the file could not be parsed).
    pub name: String,
    /// Drop-in file, or `builtin`.
    pub source: String,
    /// Library path or `builtin:…`.
    pub library: String,
    /// Pinned hash.
    pub sha256: Option<String>,
    /// The loaded instance, if the drop-in parsed.
    pub instance: Option<Arc<Instance>>,
    /// Why the drop-in could not even become an instance.
    pub error: Option<String>,
}

#[derive(Default)]
struct Loaded {
    instances: HashMap<String, Arc<Instance>>,
    reports: Vec<InstanceReport>,
    dropins: HashMap<String, DropIn>,
}

/// Settings of the host.
#[derive(Debug, Clone)]
pub struct HostSettings {
    /// Drop-in directory.
    pub plugin_dir: Option<PathBuf>,
    /// Where verified copies of libraries go.
    pub copies_dir: PathBuf,
    /// Whether the built-in `local` instance exists.
    pub builtin_local: bool,
    /// DEK cache TTL per instance.
    pub cache_ttl: Duration,
    /// DEK cache capacity per instance.
    pub cache_capacity: u64,
}

/// The plugin host.
pub struct PluginHost {
    settings: HostSettings,
    store: Arc<dyn Store>,
    root_key: Arc<RootKey>,
    modules: loader::ModuleCache,
    current: ArcSwap<Loaded>,
    reload_lock: Mutex<()>,
    metrics: Arc<BackendMetrics>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Backends for PluginHost {
    fn get(&self, name: &str) -> Option<Arc<dyn BackendInstance>> {
        self.current
            .load()
            .instances
            .get(name)
            .map(|i| i.clone() as Arc<dyn BackendInstance>)
    }

    fn all(&self) -> Vec<Arc<dyn BackendInstance>> {
        self.current
            .load()
            .instances
            .values()
            .map(|i| i.clone() as Arc<dyn BackendInstance>)
            .collect()
    }
}

/// The built-in drop-in for `local`.
fn builtin_local_dropin() -> DropIn {
    DropIn {
        name: BUILTIN_LOCAL.to_owned(),
        library: format!("{BUILTIN_PREFIX}local-kek"),
        sha256: None,
        tenants: vec!["*".to_owned()],
        timeout: Duration::from_secs(2),
        create_timeout: Duration::from_secs(60),
        concurrency: 64,
        on_unavailable: dropin::OnUnavailableSetting::Serve,
        bind: Default::default(),
        config: toml::Table::new(),
    }
}

impl PluginHost {
    /// A host with nothing loaded yet; call [`PluginHost::reload`].
    pub fn new(
        settings: HostSettings,
        store: Arc<dyn Store>,
        root_key: Arc<RootKey>,
        metrics: Arc<BackendMetrics>,
    ) -> Self {
        Self {
            settings,
            store,
            root_key,
            modules: loader::ModuleCache::default(),
            current: ArcSwap::from_pointee(Loaded::default()),
            reload_lock: Mutex::new(()),
            metrics,
        }
    }

    /// Every drop-in with its state, sorted by name.
    pub fn reports(&self) -> Vec<InstanceReport> {
        let mut reports = self.current.load().reports.clone();
        reports.sort_by(|a, b| a.name.cmp(&b.name));
        reports
    }

    /// Every loaded instance.
    pub fn instances(&self) -> Vec<Arc<Instance>> {
        self.current.load().instances.values().cloned().collect()
    }

    /// Reloads the plugins on this node and asks every other node of a cluster (sharing the
    /// store) to do the same.
    pub async fn reload_everywhere(&self) {
        self.reload().await;
        if let Err(error) = self
            .store
            .announce(&keybroker_core::changes::Change::Plugins)
            .await
        {
            tracing::warn!(%error, "plugin reload not announced to the other nodes");
        }
    }

    /// Re-reads the drop-in directory and swaps in the new set of instances.
    pub async fn reload(&self) {
        let _guard = self.reload_lock.lock().await;
        let previous = self.current.load_full();
        let mut next = Loaded::default();
        let mut found: Vec<(String, Result<DropIn, String>)> = match &self.settings.plugin_dir {
            Some(dir) => read_dropins(dir),
            None => Vec::new(),
        };
        // A drop-in named `local` replaces the built-in one.
        let local_declared = found
            .iter()
            .any(|(_, d)| matches!(d, Ok(d) if d.name == BUILTIN_LOCAL));
        if self.settings.builtin_local && !local_declared {
            found.insert(0, ("builtin".to_owned(), Ok(builtin_local_dropin())));
        }
        for (source, parsed) in found {
            match parsed {
                Err(error) => {
                    tracing::error!(source = %source, %error, "backend drop-in refused");
                    next.reports.push(InstanceReport {
                        name: Path::new(&source)
                            .file_stem()
                            .map(|s| s.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                        source,
                        library: String::new(),
                        sha256: None,
                        instance: None,
                        error: Some(error),
                    });
                }
                Ok(dropin) => {
                    if next.dropins.contains_key(&dropin.name) {
                        let error = format!(
                            "duplicate instance name \"{}\"; ignoring {source}",
                            dropin.name
                        );
                        tracing::error!(%error, "backend drop-in refused");
                        next.reports.push(InstanceReport {
                            name: dropin.name.clone(),
                            source,
                            library: dropin.library.clone(),
                            sha256: dropin.sha256.clone(),
                            instance: None,
                            error: Some(error),
                        });
                        continue;
                    }
                    let reused = previous
                        .dropins
                        .get(&dropin.name)
                        .filter(|old| **old == dropin)
                        .and_then(|_| previous.instances.get(&dropin.name))
                        // Only a loaded instance is kept, and only while its file still
                        // matches the pin; a failed one is tried again.
                        .filter(|i| {
                            i.info().is_some() && self.library_still_pinned(&source, &dropin)
                        })
                        .cloned();
                    let instance = match reused {
                        Some(instance) => instance,
                        None => Arc::new(self.build(&source, &dropin).await),
                    };
                    if let Some(reason) = instance.unavailable_reason() {
                        tracing::error!(instance = %dropin.name, source = %source, %reason, "backend instance unavailable");
                    } else {
                        tracing::info!(instance = %dropin.name, source = %source, "backend instance ready");
                    }
                    next.reports.push(InstanceReport {
                        name: dropin.name.clone(),
                        source,
                        library: dropin.library.clone(),
                        sha256: dropin.sha256.clone(),
                        instance: Some(instance.clone()),
                        error: None,
                    });
                    next.instances.insert(dropin.name.clone(), instance);
                    next.dropins.insert(dropin.name.clone(), dropin);
                }
            }
        }
        self.current.store(Arc::new(next));
    }

    /// Loads the one instance of `plugins.d/` named `name`, outside the current set (the
    /// seal's backend, needed before the root key exists). Built-in libraries are refused:
    /// the root key protects their keys.
    pub async fn load_one(&self, name: &str) -> Result<Instance, String> {
        let Some(dir) = &self.settings.plugin_dir else {
            return Err("no plugin_dir is configured".to_owned());
        };
        let mut found = None;
        for (source, parsed) in read_dropins(dir) {
            match parsed {
                Ok(dropin) if dropin.name == name => {
                    found = Some((source, dropin));
                    break;
                }
                Err(error) if Path::new(&source).file_stem().is_some_and(|s| s == name) => {
                    return Err(error);
                }
                _ => {}
            }
        }
        let Some((source, dropin)) = found else {
            return Err(format!(
                "no drop-in in {} names instance \"{name}\"",
                dir.display()
            ));
        };
        if dropin.library.starts_with(BUILTIN_PREFIX) {
            return Err(format!(
                "instance \"{name}\" is a built-in plugin, whose keys the root key itself protects"
            ));
        }
        Ok(self.build(&source, &dropin).await)
    }

    /// Runs every instance's health check once, concurrently.
    pub async fn check_health(&self) {
        let mut checks = tokio::task::JoinSet::new();
        for instance in self.instances() {
            checks.spawn(async move { instance.check_health().await });
        }
        while checks.join_next().await.is_some() {}
    }

    fn library_path(source: &str, dropin: &DropIn) -> Option<PathBuf> {
        if dropin.library.starts_with(BUILTIN_PREFIX) {
            return None;
        }
        let base = Path::new(source).parent().unwrap_or(Path::new("."));
        Some(base.join(&dropin.library))
    }

    fn library_still_pinned(&self, source: &str, dropin: &DropIn) -> bool {
        match Self::library_path(source, dropin) {
            None => true,
            Some(path) => {
                loader::verify(&path, dropin.sha256.as_deref().unwrap_or_default()).is_ok()
            }
        }
    }

    async fn build(&self, source: &str, dropin: &DropIn) -> Instance {
        let settings = InstanceSettings {
            name: dropin.name.clone(),
            tenants: dropin.tenants.clone(),
            timeout: dropin.timeout,
            create_timeout: dropin.create_timeout,
            concurrency: dropin.concurrency,
            on_unavailable: OnUnavailable::from(dropin.on_unavailable),
            bind: dropin.bind.clone(),
        };
        let (handle, cache, availability) = Instance::prepare(
            &settings,
            self.settings.cache_ttl,
            self.settings.cache_capacity,
        );
        let host: HostBox = HostServices_TO::from_value(handle, abi_stable::sabi_trait::TD_Opaque);
        let constructed = self.construct(source, dropin, host).await;
        let backend = match constructed {
            Ok(backend) => backend,
            Err(reason) => {
                return Instance::failed(
                    settings,
                    reason,
                    self.metrics.clone(),
                    self.settings.cache_ttl,
                );
            }
        };
        let timeout = dropin.timeout;
        let info = tokio::time::timeout(
            timeout,
            tokio::task::spawn_blocking(move || (backend.info(), backend)),
        )
        .await;
        match info {
            Ok(Ok((RResult::ROk(info), backend))) => Instance::loaded(
                settings,
                backend,
                info,
                cache,
                availability,
                self.metrics.clone(),
            ),
            Ok(Ok((RResult::RErr(error), _))) => Instance::failed(
                settings,
                format!("plugin info failed: {}", error.message),
                self.metrics.clone(),
                self.settings.cache_ttl,
            ),
            Ok(Err(_)) | Err(_) => Instance::failed(
                settings,
                format!("plugin info did not answer within {timeout:?}"),
                self.metrics.clone(),
                self.settings.cache_ttl,
            ),
        }
    }

    /// Builds the plugin's trait object: built-in (linked in) or from a verified library.
    async fn construct(
        &self,
        source: &str,
        dropin: &DropIn,
        host: HostBox,
    ) -> Result<BackendBox, String> {
        let config = dropin.config_json()?;
        if let Some(builtin) = dropin.library.strip_prefix(BUILTIN_PREFIX) {
            if builtin != "local-kek" {
                return Err(format!(
                    "unknown built-in plugin \"{builtin}\" (known: local-kek)"
                ));
            }
            if dropin.config.is_empty() {
                // No KEKs configured: the broker generates one, sealed under the root key.
                let kek = keybroker_core::broker::managed_secret(
                    self.store.as_ref(),
                    &self.root_key,
                    &dropin.name,
                )
                .await
                .map_err(|e| format!("cannot obtain the managed KEK: {e}"))?;
                let backend = keybroker_plugin_local_kek::with_keks(
                    vec![("managed".to_owned(), kek)],
                    "managed",
                    Some(host),
                )
                .map_err(|e| e.message.to_string())?;
                return Ok(keybroker_plugin_abi::into_ffi(backend));
            }
            return into_result(keybroker_plugin_abi::construct(
                RStr::from(config.as_str()),
                host,
                keybroker_plugin_local_kek::new_backend,
            ));
        }
        let library = Self::library_path(source, dropin).unwrap_or_default();
        let expected = dropin.sha256.clone().unwrap_or_default();
        let module = self
            .modules
            .load(&library, &expected, &self.settings.copies_dir)?;
        let timeout = dropin.timeout.max(Duration::from_secs(10));
        let task = tokio::task::spawn_blocking(move || {
            module.new_backend(RStr::from(config.as_str()), host)
        });
        match tokio::time::timeout(timeout, task).await {
            Ok(Ok(result)) => into_result(result),
            Ok(Err(error)) => Err(format!("plugin constructor failed: {error}")),
            Err(_) => Err(format!(
                "plugin constructor did not return within {timeout:?}"
            )),
        }
    }
}

fn into_result(result: RResult<BackendBox, PluginError>) -> Result<BackendBox, String> {
    result
        .into_result()
        .map_err(|e| format!("plugin refused its configuration: {}", e.message))
}

/// Reads `*.toml` in a directory, sorted by file name, checking the directory's and each
/// file's permissions.
fn read_dropins(dir: &Path) -> Vec<(String, Result<DropIn, String>)> {
    if let Err(error) = check_not_writable_by_others(dir, "plugin directory") {
        tracing::error!(%error, "plugin directory refused");
        return vec![(dir.display().to_string(), Err(error))];
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            let error = format!("cannot read plugin directory {}: {error}", dir.display());
            return vec![(dir.display().to_string(), Err(error))];
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let parsed = check_not_writable_by_others(&path, "drop-in file").and_then(|()| {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                DropIn::parse(&path, &text)
            });
            (path.display().to_string(), parsed)
        })
        .collect()
}
