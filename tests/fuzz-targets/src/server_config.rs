//! The server's configuration file (`broker/server/src/config.rs`): TOML into
//! [`FileConfig`], then validated into a [`Config`], as written and in dev mode.

use keybroker_server::config::{Config, ConfigError, FileConfig, Overrides};

/// Parses `data` as a config file and validates it.
pub fn server_config(data: &[u8]) {
    let Some(text) = crate::text(data) else {
        return;
    };
    let Ok(file) = toml::from_str::<FileConfig>(text) else {
        return;
    };
    for overrides in [
        Overrides::default(),
        Overrides {
            dev: true,
            dev_state_dir: Some("/nonexistent/dev".into()),
            ..Overrides::default()
        },
    ] {
        match Config::build(Some(file.clone()), overrides) {
            Ok(config) => {
                assert!(config.listener.max_request_size >= 1024);
                assert!(config.timing.token_default_ttl <= config.timing.token_max_ttl);
                assert!(config.timing.storage_heartbeat < config.timing.max_staleness);
                assert_eq!(
                    config.trusted_proxies.len(),
                    config.listener.trusted_proxies.len()
                );
                if config.dev {
                    assert!(config.listener.address.ip().is_loopback());
                }
            }
            // Errors name the key.
            Err(ConfigError::Invalid { key, .. }) => assert!(!key.is_empty()),
            Err(other) => panic!("a built config fails only as Invalid: {other}"),
        }
    }
}
