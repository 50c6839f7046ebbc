//! The keybroker server: HTTP API (Vault-compatible), plugin host, identity providers (HTTPS),
//! config, seal.
//!
//! `keybroker server --dev` starts a broker on 127.0.0.1:8200 with SQLite in a temporary
//! directory, a generated root key, the built-in local-KEK instance `local`, and transit at
//! `transit/`. `keybroker server --config FILE` runs a real deployment. [`app::build`] makes
//! the whole broker from a [`config::Config`]; [`http::router`] is the API, so tests can
//! drive it without a socket.

pub mod app;
pub mod audit;
pub mod config;
pub mod http;
pub mod hygiene;
pub mod idp;
pub mod listener;
pub mod metrics;
pub mod plugin_host;
pub mod seal;
