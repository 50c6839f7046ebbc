//! `testing-alt`: the `testing` plugin again, built from the same source
//! (`plugins/testing/src`) with another flavor: `info().version` is `testing-2`.
//!
//! The broker's tests copy this library over the `testing` one to prove that replacing a
//! plugin's `.so` and reloading runs the new code (the host loads a hashed copy, so
//! `dlopen`'s cache of the old path cannot hand back the old library). Everything else,
//! including the configuration, is as documented in `keybroker-plugin-testing`.
#![allow(non_local_definitions)]
// `export_backend_plugin!` expands to abi_stable's `#[export_root_module]`, which emits a
// `#[no_mangle]` static and unsafe glue: the FFI edge of this crate, and nothing else.
#![allow(unsafe_code)]

#[path = "../../testing/src/backend.rs"]
mod backend;
#[path = "../../testing/src/control.rs"]
mod control;
#[cfg(test)]
#[path = "../../testing/src/test_host.rs"]
mod test_host;

pub use backend::{Method, TestingBackend, DEFAULT_SEED, MAX_PAYLOAD, NAME};
use keybroker_plugin_abi::{HostBox, PluginError};

/// The version `info()` reports: the flavor of this build of the shared source.
pub const VERSION: &str = "testing-2";

/// Builds an instance from its configuration (JSON).
pub fn new_backend(config: &str, host: HostBox) -> Result<TestingBackend, PluginError> {
    backend::new_backend_with_version(config, host, VERSION)
}

keybroker_plugin_abi::export_backend_plugin!(new_backend);

#[cfg(test)]
mod tests {
    use keybroker_plugin_abi::Backend as _;

    #[test]
    fn reports_its_flavor() {
        let host = crate::test_host::RecordingHost::default().into_box();
        let backend = super::new_backend("{}", host).unwrap();
        assert_eq!(backend.info().version.as_str(), "testing-2");
    }
}
