//! Availability of an instance as the plugin reports it (the whole instance, or some of its
//! keys) or as health checks see it, and [`HostHandle`], the host services a plugin calls
//! back: availability reports (which may evict cached data keys) and log lines.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use abi_stable::std_types::{RSlice, RStr, RString};
use keybroker_core::{backend::OnUnavailable, dek_cache::DekCache};
use keybroker_plugin_abi::{HostServices, LogLevel};

/// Availability as reported by the plugin or seen by health checks.
#[derive(Debug, Default)]
pub struct Availability {
    /// The plugin said the whole instance is down, with its reason.
    reported_down: RwLock<Option<String>>,
    /// The last health check failed, with its reason.
    health_error: RwLock<Option<String>>,
    /// Key references the plugin reported unavailable, with its reason.
    keys_down: RwLock<HashMap<String, String>>,
}

impl Availability {
    /// Why the instance is unavailable, if it is.
    pub fn reason(&self) -> Option<String> {
        if let Some(reason) = self.reported_reason() {
            return Some(reason);
        }
        self.health_error.read().ok().and_then(|r| r.clone())
    }

    /// The plugin's own reason, if it reported the whole instance unavailable. Plugin
    /// reasons are safe to show callers; health check errors may carry operator details.
    pub(super) fn reported_reason(&self) -> Option<String> {
        self.reported_down.read().ok().and_then(|r| r.clone())
    }

    /// Why the plugin reported this key unavailable, if it did.
    pub(super) fn key_down(&self, reference: &str) -> Option<String> {
        match self.keys_down.read() {
            Ok(keys) => keys.get(reference).cloned(),
            Err(_) => Some(String::new()),
        }
    }

    /// Records the last health check's failure, or its success (`None`).
    pub(super) fn record_health(&self, reason: Option<String>) {
        if let Ok(mut health) = self.health_error.write() {
            *health = reason;
        }
    }
}

/// The host side of [`HostServices`], one per instance.
#[derive(Clone)]
pub struct HostHandle {
    instance: Arc<str>,
    availability: Arc<Availability>,
    cache: Arc<DekCache>,
    on_unavailable: OnUnavailable,
}

impl HostHandle {
    /// The host side of instance `instance`, reporting into `availability` and evicting
    /// from `cache` as `on_unavailable` says.
    pub(super) fn new(
        instance: &str,
        availability: Arc<Availability>,
        cache: Arc<DekCache>,
        on_unavailable: OnUnavailable,
    ) -> Self {
        Self {
            instance: Arc::from(instance),
            availability,
            cache,
            on_unavailable,
        }
    }

    fn evict(&self) -> bool {
        self.on_unavailable == OnUnavailable::Evict
    }
}

impl HostServices for HostHandle {
    fn set_instance_available(&self, available: bool, reason: RStr<'_>) {
        if let Ok(mut down) = self.availability.reported_down.write() {
            *down = if available {
                None
            } else {
                Some(if reason.is_empty() {
                    "reported unavailable by the plugin".to_owned()
                } else {
                    reason.to_string()
                })
            };
        }
        if available {
            // The plugin knows best: a failed health check from while it was down is stale.
            if let Ok(mut health) = self.availability.health_error.write() {
                *health = None;
            }
            tracing::info!(instance = %self.instance, "backend instance reports available");
        } else {
            tracing::warn!(instance = %self.instance, reason = %reason, "backend instance reports unavailable");
            if self.evict() {
                self.cache.purge_all();
            }
        }
    }

    fn set_keys_available(
        &self,
        key_references: RSlice<'_, RString>,
        available: bool,
        reason: RStr<'_>,
    ) {
        let references: Vec<String> = key_references.iter().map(|r| r.to_string()).collect();
        if let Ok(mut keys) = self.availability.keys_down.write() {
            for reference in &references {
                if available {
                    keys.remove(reference);
                } else {
                    keys.insert(reference.clone(), reason.to_string());
                }
            }
        }
        tracing::info!(instance = %self.instance, keys = references.len(), available, reason = %reason,
            "backend instance reports key availability");
        if !available && self.evict() {
            self.cache.purge_references(references);
        }
    }

    fn log(&self, level: LogLevel, message: RStr<'_>) {
        let instance = &*self.instance;
        match level {
            LogLevel::ERROR => tracing::error!(instance, plugin_message = %message),
            LogLevel::WARN => tracing::warn!(instance, plugin_message = %message),
            LogLevel::DEBUG => tracing::debug!(instance, plugin_message = %message),
            _ => tracing::info!(instance, plugin_message = %message),
        }
    }
}

#[cfg(test)]
mod tests {
    use keybroker_core::backend::BackendInstance;
    use keybroker_plugin_abi::{not_supported, HostServices_TO};

    use super::super::tests::{instance, unavailable_message};

    #[tokio::test]
    async fn unavailable_answers_carry_the_plugins_reason_but_not_a_health_checks() {
        let (instance, _, handle) = instance(Err(not_supported("status")));
        let host = HostServices_TO::from_value(handle, abi_stable::sabi_trait::TD_Opaque);
        host.set_instance_available(
            false,
            "customer key unavailable (no agent connected)".into(),
        );
        assert_eq!(
            unavailable_message(&instance),
            "backend instance \"acme-agent\" is unavailable: customer key unavailable (no agent \
             connected)"
        );
        host.set_instance_available(true, "".into());
        assert!(instance.check_available("").is_ok());

        // A failed health check's reason (it may name hosts or credentials) stays in the log.
        if let Ok(mut health) = instance.availability.health_error.write() {
            *health = Some("cannot reach kms.internal:443 as role ops-admin".to_owned());
        }
        assert_eq!(
            unavailable_message(&instance),
            "backend instance \"acme-agent\" is unavailable"
        );
    }
}
