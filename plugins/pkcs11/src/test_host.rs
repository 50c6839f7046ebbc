//! A host handle for tests that records what the plugin logs.

use std::sync::{Arc, Mutex};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RSlice, RStr, RString},
};
use keybroker_plugin_abi::{HostBox, HostServices, HostServices_TO, LogLevel};

#[derive(Clone, Default)]
pub(crate) struct RecordingHost {
    lines: Arc<Mutex<Vec<String>>>,
}

impl RecordingHost {
    pub(crate) fn boxed() -> HostBox {
        Self::default().into_box()
    }

    pub(crate) fn into_box(self) -> HostBox {
        HostServices_TO::from_value(self, TD_Opaque)
    }

    pub(crate) fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
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
