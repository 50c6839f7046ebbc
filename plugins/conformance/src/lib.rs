//! The backend conformance suite: the same assertions for every keybroker backend plugin.
//!
//! A plugin's own tests build an instance, turn it into the ABI trait object (a
//! [`BackendBox`], so every call goes through the FFI layer the broker uses) and call
//! [`run`] with [`Options`] that say which tenants to use and what to exercise:
//!
//! ```text
//! let backend = keybroker_plugin_abi::into_ffi(my_plugin::new_backend(config, host)?);
//! keybroker_plugin_conformance::run(&backend, &Options::default());
//! ```
//!
//! Every capability the plugin reports in `info()` is exercised: encryption round trips,
//! refusals and tenant isolation for [`capability::ENVELOPE`] (required) and
//! [`capability::DIRECT`]; signing with every type of [`Options::asymmetric_key_types`] for
//! [`capability::SIGN`]; binding every key of [`Options::bindable_keys`] for
//! [`capability::BIND_EXISTING`]. A plugin that does not report a capability must refuse
//! its operations with `INVALID_REQUEST`. What deletion means is plugin-specific: the suite
//! only checks that deleting a key it created succeeds.
//!
//! A failed assertion panics with the plugin's name, the key type and what was expected, as
//! `conformance: plugin local-kek, key type ecdsa-p256: sign with tenant B's id: expected
//! error KEY_NOT_FOUND, got success`. The finer-grained functions ([`check_info`],
//! [`check_symmetric`], [`check_asymmetric`], …) let a plugin run one part at a time.
//!
//! [`run`] does not exercise private key transfer ([`capability::PRIVATE_KEY_TRANSFER`]):
//! a plugin that reports it calls [`check_private_key_transfer`] for each asymmetric type
//! it holds, every other plugin calls [`check_no_private_key_transfer`] once.
// A test-only crate: its whole job is to panic with a readable message when a plugin
// misbehaves, so the workspace's bans on unwrap/expect/panic do not apply here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod asymmetric;
mod bind;
pub mod calls;
pub mod direct;
pub mod outage;
mod scope;
mod symmetric;
mod test_host;

use keybroker_plugin_abi::{capability, key_type, BackendBox, BackendInfo};

pub use asymmetric::{
    check_asymmetric, check_ed25519, check_no_private_key_transfer, check_private_key_transfer,
    check_refuses_key_type,
};
pub use bind::check_bind_existing;
pub use symmetric::check_symmetric;
pub use test_host::RecordingHost;

use scope::Scope;

/// What the suite exercises, and as whom.
#[derive(Clone, Debug)]
pub struct Options {
    /// The tenant that creates every key. Must be distinct from `tenant_b`, and neither may
    /// contain the other (the suite checks that tenant B's errors never name tenant A).
    pub tenant_a: String,
    /// The tenant that tries to use tenant A's keys and must be refused.
    pub tenant_b: String,
    /// Asymmetric key types to exercise (see [`key_type::ASYMMETRIC`]). With
    /// [`capability::SIGN`] each is created, signs and verifies, and the list must not be
    /// empty; without it, creating each must be refused.
    pub asymmetric_key_types: Vec<String>,
    /// Round-trip a plaintext of exactly `info().max_payload` bytes, and check that one
    /// byte more is `PAYLOAD_TOO_LARGE`. Turn off only for a plugin whose limit is too large
    /// to allocate in a test (over 64 MiB).
    pub max_payload_round_trip: bool,
    /// The plugin authenticates the AAD (a wrong AAD is `INVALID_CIPHERTEXT`). Turn off only
    /// for a backend whose wrap has no AAD (RSA-OAEP), where the broker's binding makes up
    /// for it.
    pub authenticates_aad: bool,
    /// Keys that already exist in the backend, to bind with `bind_key` when the plugin
    /// reports [`capability::BIND_EXISTING`] (then at least one is required).
    pub bindable_keys: Vec<BindableKey>,
    /// The hashes a key type signs with (default [`all_hashes`]). A backend that pairs each
    /// curve with one hash or has no SHA-224 (AWS KMS, Azure Key Vault) names its own; the
    /// suite then checks that every other SHA-2 hash is refused with `INVALID_REQUEST`.
    pub signing_hashes: fn(&str) -> Vec<&'static str>,
    /// The signatures come from moto's KMS, which deviates from AWS in two ways: it hashes a
    /// `DIGEST` message again before signing, and signs RSASSA-PSS with the maximum salt.
    /// The independent check then also accepts a signature over the digest's hash, and the
    /// maximum salt. Off for everything else (salt = digest length, the digest signed as is).
    pub moto_signatures: bool,
}

/// Every SHA-2 hash the broker signs with: the default of [`Options::signing_hashes`].
pub fn all_hashes(_key_type: &str) -> Vec<&'static str> {
    vec!["sha2-224", "sha2-256", "sha2-384", "sha2-512"]
}

/// A key that exists in the backend before the suite runs (see [`Options::bindable_keys`]).
#[derive(Clone, Debug)]
pub struct BindableKey {
    /// The backend's name for it, in the plugin's syntax (an HSM label, a KMS ARN…).
    pub backend_key: String,
    /// Its type: `aes256-gcm96` or one of [`key_type::ASYMMETRIC`].
    pub key_type: String,
}

impl Default for Options {
    /// Two fixed UUID tenant ids (as the broker's), every asymmetric type, the full
    /// `max_payload` round trip, AAD authenticated, no bindable keys, every SHA-2 hash for
    /// every signing key, PSS salts of the digest's length.
    fn default() -> Self {
        Self {
            tenant_a: "3f6c1b0e-8a2d-4c59-9e71-5b0d2a4c8e13".to_owned(),
            tenant_b: "c81e9d47-2b6a-4f03-a5d8-7e9c0b1f2a64".to_owned(),
            asymmetric_key_types: key_type::ASYMMETRIC.map(str::to_owned).to_vec(),
            max_payload_round_trip: true,
            authenticates_aad: true,
            bindable_keys: Vec::new(),
            signing_hashes: all_hashes,
            moto_signatures: false,
        }
    }
}

/// Runs the whole suite against `backend`; panics at the first failed assertion.
pub fn run(backend: &BackendBox, options: &Options) {
    check_options(options);
    let info = check_info(backend);
    check_unknown_key_type(backend, options);
    check_symmetric(backend, options);
    if info.capabilities & capability::SIGN != 0 {
        assert!(
            !options.asymmetric_key_types.is_empty(),
            "conformance: plugin {} reports the SIGN capability: list the asymmetric key types \
             it supports in Options::asymmetric_key_types",
            info.name
        );
    }
    for key_type in &options.asymmetric_key_types {
        check_asymmetric(backend, options, key_type);
    }
    check_bind_existing(backend, options);
    check_health(backend);
}

/// Refuses options that would make some assertions meaningless.
fn check_options(options: &Options) {
    let (a, b) = (&options.tenant_a, &options.tenant_b);
    assert!(
        !a.is_empty() && !b.is_empty() && !a.contains(b.as_str()) && !b.contains(a.as_str()),
        "conformance: Options: tenant ids must be non-empty and neither may contain the other \
         ({a:?}, {b:?})"
    );
    for key_type in &options.asymmetric_key_types {
        assert!(
            key_type::ASYMMETRIC.contains(&key_type.as_str()),
            "conformance: Options::asymmetric_key_types: {key_type:?} is not one of {:?}",
            key_type::ASYMMETRIC
        );
    }
}

/// `info()`: a name and version, a positive `max_payload`, and the ENVELOPE capability that
/// every backend must offer. Returns the info.
pub fn check_info(backend: &BackendBox) -> BackendInfo {
    let info = Scope::new("(unnamed)", "info").ok("info()", backend.info());
    let scope = Scope::new(&info.name, "info");
    scope.check(!info.name.is_empty(), "info().name is not empty");
    scope.check(!info.version.is_empty(), "info().version is not empty");
    scope.check(info.max_payload > 0, "info().max_payload is positive");
    scope.check(
        info.capabilities & capability::ENVELOPE != 0,
        format!(
            "info().capabilities ({:#b}) includes ENVELOPE",
            info.capabilities
        ),
    );
    info
}

/// `create_key` with a key type nobody supports is `INVALID_REQUEST`.
pub fn check_unknown_key_type(backend: &BackendBox, options: &Options) {
    let scope = Scope::for_backend(backend, "key type conformance-unknown");
    scope.fails(
        "create_key with an unknown key type",
        keybroker_plugin_abi::ErrorKind::INVALID_REQUEST,
        backend.create_key(scope::create_request(
            &options.tenant_a,
            "conformance-unknown",
        )),
    );
}

/// `health()` answers `Ok`.
pub fn check_health(backend: &BackendBox) {
    Scope::for_backend(backend, "health").ok("health()", backend.health());
}
