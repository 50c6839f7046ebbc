//! `testing`: a keybroker backend plugin that exists only for the broker's own tests.
//!
//! It exercises the plugin host where real backends cannot be made to misbehave on demand:
//!
//! - **panics** (`panic_on`, `panic_new`): the host's `catch_unwind` guard must turn them
//!   into errors;
//! - **hangs** (`hang_ms`): the per-call deadline and the per-instance bulkhead must hold;
//! - **failed construction** (`fail_new`): the instance is marked unavailable, the broker
//!   keeps serving the others;
//! - **availability reports** (`control_file`): the plugin calls
//!   `HostServices::set_instance_available` / `set_keys_available` when a test rewrites a
//!   file (see the `control` module for its commands);
//! - **live state** (`status_agents`): `status` answers `{"agents": [...], "tenant_names":
//!   {id: name}}`, the configured agents and the names the host gave through `name_tenant`
//!   (otherwise `status` is not supported, as for most plugins);
//! - **replaced libraries**: `keybroker-plugin-testing-alt` compiles the same source with
//!   another flavor; `info().version` is `testing-1` here and `testing-2` there, so a test
//!   can swap one `.so` for the other and see the new code run.
//!
//! Crypto is real but simple: AES-256-GCM under SHA-256(seed ‖ reference), blob
//! `nonce(12) ‖ ciphertext ‖ tag(16)`, references `t/<tenant_id>/<hex>` checked against the
//! calling tenant. The same seed decrypts across restarts. Never use it for real data.
//!
//! Configuration (JSON, the drop-in's `[config]` table; every field optional, unknown fields
//! refused):
//!
//! ```json
//! {"seed": "any string", "panic_on": ["encrypt"], "hang_ms": {"decrypt": 5000},
//!  "control_file": "/tmp/x", "fail_new": false, "panic_new": false,
//!  "generate_data_keys": false, "status_agents": [{"id": "dc1", "tenants": ["acme"]}]}
//! ```
//!
//! Method names for `panic_on` and `hang_ms`: `info`, `create_key`, `delete_key`, `encrypt`,
//! `decrypt`, `health`.
#![allow(non_local_definitions)]
// `export_backend_plugin!` expands to abi_stable's `#[export_root_module]`, which emits a
// `#[no_mangle]` static and unsafe glue: the FFI edge of this crate, and nothing else.
#![allow(unsafe_code)]

mod backend;
mod control;
#[cfg(test)]
mod test_host;

pub use backend::{Method, TestingBackend, DEFAULT_SEED, MAX_PAYLOAD, NAME};
use keybroker_plugin_abi::{HostBox, PluginError};

/// The version `info()` reports: the flavor of this build of the shared source.
pub const VERSION: &str = "testing-1";

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
        assert_eq!(backend.info().version.as_str(), "testing-1");
    }
}
