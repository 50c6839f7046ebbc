//! A loaded backend instance: the plugin trait object behind a bulkhead (a semaphore of
//! `concurrency` permits, each held by the blocking thread running a call) and a deadline on
//! every call. A hung plugin holds at most its own permits; other instances are unaffected.
//!
//! The parts, one job each:
//! - this module: [`Instance`] and its [`InstanceSettings`], construction (prepare, loaded,
//!   failed) and accessors;
//! - `availability`: [`Availability`] and [`HostHandle`], the host services a plugin calls
//!   back (instance and key availability, log);
//! - `calls`: calling into the plugin — bulkhead, deadline, nonblocking starts versus
//!   blocking calls, batch length checks, plugin errors mapped to the broker's;
//! - `requests`: core requests translated to ABI requests, and tenant naming;
//! - `health`: the health check and the plugin's live state for operators;
//! - `backend`: the `BackendInstance` implementation, the core's view of an instance.

mod availability;
mod backend;
mod calls;
mod health;
mod requests;
#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, RwLock},
    time::Duration,
};

use keybroker_core::{backend::OnUnavailable, dek_cache::DekCache, Error, TenantId};
use keybroker_plugin_abi::{BackendBox, BackendInfo};
use tokio::sync::Semaphore;

use crate::metrics::BackendMetrics;

pub(super) use availability::{Availability, HostHandle};
pub(super) use calls::map_plugin_error;

/// Settings of an instance that come from its drop-in.
#[derive(Debug, Clone)]
pub struct InstanceSettings {
    /// Instance name.
    pub name: String,
    /// Allowed tenants (`*` = all).
    pub tenants: Vec<String>,
    /// Per-call deadline.
    pub timeout: Duration,
    /// Deadline of key creation and binding (an RSA-4096 key pair takes seconds to make).
    pub create_timeout: Duration,
    /// Bulkhead size.
    pub concurrency: usize,
    /// Cache policy when unavailable.
    pub on_unavailable: OnUnavailable,
    /// Glob patterns of backend keys each tenant (by name) may bind.
    pub bind: BTreeMap<String, Vec<String>>,
}

/// A backend instance: loaded, or failed with a reason.
pub struct Instance {
    settings: InstanceSettings,
    backend: Option<Arc<BackendBox>>,
    info: Option<BackendInfo>,
    load_error: Option<String>,
    availability: Arc<Availability>,
    cache: Arc<DekCache>,
    permits: Arc<Semaphore>,
    metrics: Arc<BackendMetrics>,
    /// Tenants whose canonical name the plugin has been told (`BackendPlugin::name_tenant`).
    named_tenants: Arc<RwLock<HashSet<TenantId>>>,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("settings", &self.settings)
            .field("load_error", &self.load_error)
            .finish_non_exhaustive()
    }
}

impl Instance {
    /// Pieces a plugin constructor needs before the instance exists.
    pub fn prepare(
        settings: &InstanceSettings,
        cache_ttl: Duration,
        cache_capacity: u64,
    ) -> (HostHandle, Arc<DekCache>, Arc<Availability>) {
        let cache = Arc::new(DekCache::new(cache_ttl, cache_capacity));
        let availability = Arc::new(Availability::default());
        let handle = HostHandle::new(
            &settings.name,
            availability.clone(),
            cache.clone(),
            settings.on_unavailable,
        );
        (handle, cache, availability)
    }

    /// A loaded instance.
    pub fn loaded(
        settings: InstanceSettings,
        backend: BackendBox,
        info: BackendInfo,
        cache: Arc<DekCache>,
        availability: Arc<Availability>,
        metrics: Arc<BackendMetrics>,
    ) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(settings.concurrency)),
            settings,
            backend: Some(Arc::new(backend)),
            info: Some(info),
            load_error: None,
            availability,
            cache,
            metrics,
            named_tenants: Arc::default(),
        }
    }

    /// An instance that could not be loaded; every call answers 503.
    pub fn failed(
        settings: InstanceSettings,
        reason: String,
        metrics: Arc<BackendMetrics>,
        cache_ttl: Duration,
    ) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(1)),
            settings,
            backend: None,
            info: None,
            load_error: Some(reason),
            availability: Arc::new(Availability::default()),
            cache: Arc::new(DekCache::new(cache_ttl, 1)),
            metrics,
            named_tenants: Arc::default(),
        }
    }

    /// Drop-in settings.
    pub fn settings(&self) -> &InstanceSettings {
        &self.settings
    }

    /// What the plugin said about itself, if loaded.
    pub fn info(&self) -> Option<&BackendInfo> {
        self.info.as_ref()
    }

    /// Why the instance is unavailable, if it is.
    pub fn unavailable_reason(&self) -> Option<String> {
        self.load_error
            .clone()
            .or_else(|| self.availability.reason())
    }

    fn has_capability(&self, bit: u64) -> bool {
        self.info
            .as_ref()
            .is_some_and(|i| i.capabilities & bit != 0)
    }

    fn unavailable(&self) -> Error {
        Error::Unavailable(format!(
            "backend instance \"{}\" is unavailable",
            self.settings.name
        ))
    }
}
