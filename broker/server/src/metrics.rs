//! Prometheus metrics (`GET /v1/sys/metrics?format=prometheus`): request counts and
//! latencies per operation, per-instance DEK-cache hits/misses/entries, and per-instance
//! backend calls, errors and latency. The registry is passed around, never global.

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::ConstGauge,
        histogram::{exponential_buckets, Histogram},
        MetricType,
    },
    registry::Registry,
};

use keybroker_core::{backend::Backends, dek_cache::CacheStats};

/// Labels of an HTTP request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Operation class, e.g. `transit/encrypt` (never a key name).
    pub operation: &'static str,
    /// HTTP status code.
    pub code: u16,
}

/// Labels of a request latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// Operation class.
    pub operation: &'static str,
}

/// Labels of a backend call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    /// Instance name.
    pub instance: String,
    /// Plugin operation.
    pub operation: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 18))
}

/// Backend call metrics, shared by every instance.
#[derive(Debug)]
pub struct BackendMetrics {
    calls: Family<BackendLabels, Counter>,
    errors: Family<BackendLabels, Counter>,
    latency: Family<BackendLabels, Histogram, fn() -> Histogram>,
}

impl Default for BackendMetrics {
    fn default() -> Self {
        Self {
            calls: Family::default(),
            errors: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
        }
    }
}

impl BackendMetrics {
    /// Records one call.
    pub fn observe(&self, instance: &str, operation: &'static str, elapsed: Duration, ok: bool) {
        let labels = BackendLabels {
            instance: instance.to_owned(),
            operation,
        };
        self.calls.get_or_create(&labels).inc();
        if !ok {
            self.errors.get_or_create(&labels).inc();
        }
        self.latency
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }
}

impl BackendMetrics {
    /// Counts a call that returned but failed some of its batch items.
    pub fn count_failed_call(&self, instance: &str, operation: &'static str) {
        let labels = BackendLabels {
            instance: instance.to_owned(),
            operation,
        };
        self.errors.get_or_create(&labels).inc();
    }
}

/// HTTP request metrics.
#[derive(Debug)]
pub struct RequestMetrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<OperationLabels, Histogram, fn() -> Histogram>,
}

impl RequestMetrics {
    /// Records one request.
    pub fn observe(&self, operation: &'static str, code: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels { operation, code })
            .inc();
        self.latency
            .get_or_create(&OperationLabels { operation })
            .observe(elapsed.as_secs_f64());
    }
}

/// Reads the DEK caches of the current instances at scrape time.
struct CacheCollector {
    backends: Weak<dyn Backends>,
}

impl std::fmt::Debug for CacheCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheCollector(..)")
    }
}

impl Collector for CacheCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(backends) = self.backends.upgrade() else {
            return Ok(());
        };
        let stats: Vec<(String, CacheStats)> = backends
            .all()
            .iter()
            .map(|i| (i.name().to_owned(), i.cache().stats()))
            .collect();
        type Read = fn(&CacheStats) -> u64;
        let series: [(&str, &str, MetricType, Read); 3] = [
            (
                "keybroker_dek_cache_hits",
                "DEK cache lookups served from the cache",
                MetricType::Counter,
                |s| s.hits,
            ),
            (
                "keybroker_dek_cache_misses",
                "DEK cache lookups that asked the backend",
                MetricType::Counter,
                |s| s.misses,
            ),
            (
                "keybroker_dek_cache_entries",
                "Data keys currently cached",
                MetricType::Gauge,
                |s| s.entries,
            ),
        ];
        for (name, help, metric_type, value) in series {
            let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
            for (instance, stats) in &stats {
                let labels = [("instance", instance.as_str())];
                let metric = family.encode_family(&labels)?;
                match metric_type {
                    MetricType::Counter => ConstCounter::new(value(stats)).encode(metric)?,
                    _ => ConstGauge::new(i64::try_from(value(stats)).unwrap_or(i64::MAX))
                        .encode(metric)?,
                }
            }
        }
        Ok(())
    }
}

/// All metrics of one broker.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// HTTP requests.
    pub requests: Arc<RequestMetrics>,
    /// Backend calls.
    pub backends: Arc<BackendMetrics>,
}

impl Metrics {
    /// Registers every metric; `instances` are read at scrape time for cache figures.
    pub fn new(backends: Arc<BackendMetrics>, instances: Arc<dyn Backends>) -> Self {
        let mut registry = Registry::default();
        let requests = Arc::new(RequestMetrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
        });
        registry.register(
            "keybroker_http_requests",
            "HTTP requests by operation and status code",
            requests.requests.clone(),
        );
        registry.register(
            "keybroker_http_request_duration_seconds",
            "HTTP request latency by operation",
            requests.latency.clone(),
        );
        registry.register(
            "keybroker_backend_calls",
            "Calls into backend plugins",
            backends.calls.clone(),
        );
        registry.register(
            "keybroker_backend_errors",
            "Backend plugin calls that failed",
            backends.errors.clone(),
        );
        registry.register(
            "keybroker_backend_call_duration_seconds",
            "Backend plugin call latency",
            backends.latency.clone(),
        );
        registry.register_collector(Box::new(CacheCollector {
            backends: Arc::downgrade(&instances),
        }));
        Self {
            registry,
            requests,
            backends,
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
