//! Drop-in files (`broker/server/src/plugin_host/dropin.rs`): one backend instance per
//! `plugins.d/*.toml`.

use std::path::Path;

use keybroker_server::plugin_host::{valid_instance_name, DropIn, BUILTIN_PREFIX};

/// Parses `data` as a drop-in file; what is accepted holds what the host relies on.
pub fn dropin(data: &[u8]) {
    let Some(text) = crate::text(data) else {
        return;
    };
    match DropIn::parse(Path::new("fuzz.toml"), text) {
        Ok(dropin) => {
            assert!(valid_instance_name(&dropin.name), "{:?}", dropin.name);
            assert!((1..=4096).contains(&dropin.concurrency));
            assert!(!dropin.timeout.is_zero() && !dropin.create_timeout.is_zero());
            if !dropin.library.starts_with(BUILTIN_PREFIX) {
                let hash = dropin.sha256.as_deref().unwrap();
                assert!(hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()));
            }
            if let Ok(json) = dropin.config_json() {
                let value: serde_json::Value = serde_json::from_str(&json).unwrap();
                assert!(value.is_object());
            }
            let _ = dropin.allows("acme");
        }
        // Errors name the file.
        Err(error) => assert!(error.contains("fuzz.toml"), "{error}"),
    }
}
