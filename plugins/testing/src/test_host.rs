//! A host handle for tests that records every call the plugin makes.

use std::sync::{Arc, Mutex};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RSlice, RStr, RString},
};
use keybroker_plugin_abi::{HostBox, HostServices, HostServices_TO, LogLevel};

#[derive(Clone, Default)]
pub(crate) struct RecordingHost {
    events: Arc<Mutex<Vec<String>>>,
}

impl RecordingHost {
    pub(crate) fn into_box(self) -> HostBox {
        HostServices_TO::from_value(self, TD_Opaque)
    }

    /// `instance <available> <reason>`, `keys [<refs>] <available> <reason>` or
    /// `log <LEVEL> <message>`, in call order.
    pub(crate) fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }

    fn push(&self, event: String) {
        self.events.lock().unwrap().push(event);
    }
}

impl HostServices for RecordingHost {
    fn set_instance_available(&self, available: bool, reason: RStr<'_>) {
        self.push(format!("instance {available} {reason}"));
    }

    fn set_keys_available(
        &self,
        key_references: RSlice<'_, RString>,
        available: bool,
        reason: RStr<'_>,
    ) {
        let references: Vec<&str> = key_references.iter().map(RString::as_str).collect();
        self.push(format!("keys {references:?} {available} {reason}"));
    }

    fn log(&self, level: LogLevel, message: RStr<'_>) {
        let level = match level {
            LogLevel::ERROR => "ERROR",
            LogLevel::WARN => "WARN",
            LogLevel::INFO => "INFO",
            _ => "DEBUG",
        };
        self.push(format!("log {level} {message}"));
    }
}
