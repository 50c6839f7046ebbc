//! The fuzz targets of keybroker: every parser an unauthenticated or tenant caller reaches,
//! each with the properties it must keep, as plain functions of the input bytes.
//!
//! Two drivers call them. `fuzz/` (cargo-fuzz, libFuzzer) searches for inputs that break
//! them: `fuzz/run [seconds-per-target]`. The test `tests/replay.rs` replays every committed
//! input (`fuzz/corpus/<target>/`, and `fuzz/regressions/<target>/` for the crashes found and
//! fixed) on the stable toolchain, deterministically, as part of `cargo test --workspace`.
//!
//! A target panics when a property breaks (that is how libFuzzer learns of it), so the
//! workspace's `unwrap`/`panic` lints are lifted here. Inputs that are not UTF-8 are dropped
//! where the parser takes text (the HTTP layer and the WebSocket hand it text already).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod agent_frame;
mod change_feed;
mod cidr;
mod ciphertext;
mod dropin;
mod glob;
mod jwks;
mod jwt_claims;
mod jwt_token;
mod policy;
mod request_body;
mod request_path;
mod server_config;

pub use agent_frame::agent_frame;
pub use change_feed::change_feed;
pub use cidr::cidr;
pub use ciphertext::ciphertext;
pub use dropin::dropin;
pub use glob::glob;
pub use jwks::jwks;
pub use jwt_claims::jwt_claims;
pub use jwt_token::jwt_token;
pub use policy::policy;
pub use request_body::request_body;
pub use request_path::request_path;
pub use server_config::server_config;

/// A fuzz target: it panics if `data` breaks a property.
pub type Target = fn(data: &[u8]);

/// Every target by name: the name of its `fuzz/fuzz_targets/<name>.rs` and of its corpus.
pub const TARGETS: &[(&str, Target)] = &[
    ("agent_frame", agent_frame),
    ("change_feed", change_feed),
    ("cidr", cidr),
    ("ciphertext", ciphertext),
    ("dropin", dropin),
    ("glob", glob),
    ("jwks", jwks),
    ("jwt_claims", jwt_claims),
    ("jwt_token", jwt_token),
    ("policy", policy),
    ("request_body", request_body),
    ("request_path", request_path),
    ("server_config", server_config),
];

/// The input as text, if it is UTF-8.
fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}
