//! `local-kek`: a keybroker backend whose key-encryption keys (KEKs) are local AES-256 keys.
//!
//! # Design
//!
//! The plugin holds a small ring of KEKs, each a 32-byte key read from a file or an
//! environment variable, and names one of them *active*. It stores nothing: a broker key is
//! an opaque reference `t/<tenant_id>/<32 hex random>` and the key that protects its data is
//! derived on every call,
//!
//! ```text
//! key = HKDF-SHA256(ikm = KEK, salt = none, info = "keybroker/local-kek/v1" ‖ reference)
//! ```
//!
//! so two references never share a key and a reference moved to another tenant is refused
//! before any cryptography happens. Data (in envelope mode: the broker's data keys) is sealed
//! with AES-256-GCM under that key, with the caller's AAD, into a self-describing blob:
//!
//! ```text
//! 0x01 ‖ u8 len(kek_id) ‖ kek_id ‖ nonce(12) ‖ ciphertext ‖ tag(16)
//! ```
//!
//! The KEK id inside the blob is what makes rotation work: add a new KEK, make it `active`,
//! and keep the old one configured for as long as blobs made under it exist. New blobs use
//! the active KEK, old ones decrypt under the KEK they name. The nonce is the broker's
//! 96-bit IV when it supplies one (it counts them), otherwise a fresh random one.
//!
//! `delete_key` is a no-op: per-key keys are derived, not stored, so there is nothing to
//! destroy here; the broker shreds a key by dropping its wrapped data keys.
//!
//! KEKs live only in zeroizing buffers, are never printed (the [`LocalKek`] `Debug` impl shows
//! ids only) and never appear in error messages, not even a byte of a malformed value.
//!
//! # Configuration
//!
//! The host hands the drop-in's `[config]` table over as JSON; unknown fields are refused.
//!
//! ```json
//! {
//!   "active": "k2",
//!   "max_payload": 1048576,
//!   "keks": [
//!     {"id": "k1", "file": "/etc/keybroker/kek-k1.b64"},
//!     {"id": "k2", "env": "KB_KEK_2"}
//!   ]
//! }
//! ```
//!
//! - `keks`: at least one; each has an `id` matching `^[A-Za-z0-9_.-]{1,64}$` (unique) and
//!   exactly one of `file` (a path) or `env` (a variable name). The file or variable holds
//!   the standard base64 of exactly 32 bytes; surrounding whitespace is ignored. Generate one
//!   with `head -c32 /dev/urandom | base64 > kek.b64; chmod 600 kek.b64`.
//! - `active`: the id new blobs are made under; may be left out when there is a single KEK.
//! - `max_payload`: largest plaintext `encrypt` accepts, in bytes (default 1 MiB).
//!
//! `examples/plugins.d/local-kek.toml` at the repository root is a commented drop-in.
//!
//! # Use
//!
//! Built as a `cdylib`, the crate exports the keybroker root module (see
//! `keybroker-plugin-abi`). The broker also links it in-process as `builtin:local-kek`,
//! through [`new_backend`], and uses [`with_keks`] for the KEK it generates in dev mode.
#![allow(non_local_definitions)]
// `export_backend_plugin!` expands to abi_stable's `#[export_root_module]`, which emits a
// `#[no_mangle]` static and unsafe glue: the FFI edge of this crate, and nothing else.
#![allow(unsafe_code)]

mod backend;
mod blob;
mod config;
mod reference;
#[cfg(test)]
mod test_host;

pub use backend::{new_backend, with_keks, LocalKek, DEFAULT_MAX_PAYLOAD, KEY_TYPE, NAME};

keybroker_plugin_abi::export_backend_plugin!(new_backend);
