//! A host handle for plugin tests that records what the plugin reports and logs.

use std::sync::{Arc, Mutex};

use keybroker_plugin_abi::abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RSlice, RStr, RString},
};
use keybroker_plugin_abi::{HostBox, HostServices, HostServices_TO, LogLevel};

/// A [`HostServices`] that keeps every report and log line, in order.
#[derive(Clone, Default)]
pub struct RecordingHost {
    lines: Arc<Mutex<Vec<String>>>,
}

impl RecordingHost {
    /// A fresh recorder as a host handle (for tests that do not read the lines).
    pub fn boxed() -> HostBox {
        Self::default().into_box()
    }

    /// This recorder as a host handle; clones share the lines.
    pub fn into_box(self) -> HostBox {
        HostServices_TO::from_value(self, TD_Opaque)
    }

    /// What was reported and logged so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The `instance available=…` reports so far.
    pub fn availability_reports(&self) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|line| line.starts_with("instance available="))
            .collect()
    }

    /// Asserts the host heard of one outage, then of the recovery, and of nothing else.
    #[track_caller]
    pub fn assert_outage_then_recovery_reported(&self) {
        let reports = self.availability_reports();
        assert_eq!(reports.len(), 2, "{:?}", self.lines());
        assert!(
            reports[0].starts_with("instance available=false"),
            "{reports:?}"
        );
        assert!(
            reports[1].starts_with("instance available=true"),
            "{reports:?}"
        );
    }
}

impl HostServices for RecordingHost {
    fn set_instance_available(&self, available: bool, reason: RStr<'_>) {
        self.lines
            .lock()
            .unwrap()
            .push(format!("instance available={available} {reason}"));
    }

    fn set_keys_available(
        &self,
        key_references: RSlice<'_, RString>,
        available: bool,
        reason: RStr<'_>,
    ) {
        self.lines.lock().unwrap().push(format!(
            "keys {key_references:?} available={available} {reason}"
        ));
    }

    fn log(&self, level: LogLevel, message: RStr<'_>) {
        self.lines
            .lock()
            .unwrap()
            .push(format!("log {level:?} {message}"));
    }
}
