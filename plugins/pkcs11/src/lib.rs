//! `pkcs11`: a keybroker backend whose keys live in an HSM, reached over PKCS#11 (cryptoki).
//!
//! # Design
//!
//! Keys never leave the token. The broker creates them there (`create_key`: AES-256 for
//! envelope and direct mode, RSA and ECDSA pairs for signing) or binds keys an operator put
//! there (`bind_key`), and every operation is a PKCS#11 call on the token:
//!
//! - encrypt/decrypt (wrap/unwrap of the broker's data keys is the same call): `CKM_AES_GCM`
//!   with the caller's AAD and a 128-bit tag, through `C_Encrypt`/`C_Decrypt`, into the blob
//!   `0x01 ‖ iv(12) ‖ ciphertext ‖ tag(16)`. The IV is the broker's (it counts them), or, with
//!   `iv_source = "module"`, the one the module generates (FIPS-mode HSMs insist on it);
//! - sign/verify over the digest the broker computed: RSA PKCS #1 v1.5 (`CKM_RSA_PKCS` over
//!   `DigestInfo ‖ digest`) or PSS (`CKM_RSA_PKCS_PSS`, salt = digest length), ECDSA
//!   (`CKM_ECDSA`, signature `r ‖ s`); `public_key` gives the PEM SubjectPublicKeyInfo;
//! - decrypt with an RSA key (the AAD names the padding: `CKM_RSA_PKCS_OAEP` with SHA-256,
//!   or `CKM_RSA_PKCS`), what the broker encrypted with its public key (`rsa_decrypt.rs`).
//!   RSA private keys are made with `CKA_DECRYPT`; a token that cannot use a padding (SoftHSM2
//!   2.6 has OAEP with SHA-1 only) says so when the broker asks, before it encrypts.
//!
//! A created key's objects carry `CKA_ID` = 16 random bytes and `CKA_LABEL` =
//! `keybroker:<tenant_id>:<key_id>`; its reference is `c/<tenant_id>/<hex CKA_ID>`. A bound
//! key's reference is `b/<tenant_id>/<hex CKA_ID>`. Every use checks the reference's tenant
//! against the request and the object's label against the reference (a created key must be
//! labelled for that tenant, a bound key must not be the broker's), so one tenant can never
//! reach another's key; the answer is always "key not found for this tenant". Objects the
//! broker created are never bindable, and bound keys are never destroyed.
//!
//! The module (`.so`) is pinned like a plugin library (no group- or world-writable file or
//! directory, the configured SHA-256, a private copy of the verified bytes is what gets
//! loaded), initialised once per process and shared by every instance using it
//! (`C_Initialize` is process-wide). Each instance keeps a bounded pool of sessions
//! (`max_sessions`), validated before use; a call waits at most `session_wait` for one. Calls
//! recover on their own, retrying once: a lost session is replaced, a lost login redone,
//! stale object handles looked up again by `CKA_ID`, and a vanished token (or module) makes
//! the module be re-initialised — only when no call is in flight on it, since that affects
//! every instance sharing it — while the call fails fast with `UNAVAILABLE` and the reason
//! (`HSM token "x" is not reachable: CKR_…`). `health()` does the same check and recovery.
//!
//! Secrets: the PIN is read from a file or an environment variable into zeroizing memory
//! (cryptoki's `AuthPin`), never logged and never in an error; plaintexts passed in are
//! wiped after use and decrypted ones are handed to the host, which wipes them. A segfault in
//! the native module still kills the broker: the price of an in-process module.
//!
//! # Configuration
//!
//! The host hands the drop-in's `[config]` table over as JSON; unknown fields are refused.
//!
//! ```json
//! {
//!   "module": "/usr/lib/softhsm/libsofthsm2.so",
//!   "module_sha256": "<sha256sum of the module file>",
//!   "token_label": "keybroker",
//!   "pin_file": "/etc/keybroker/hsm.pin",
//!   "max_payload": 65536,
//!   "max_sessions": 4,
//!   "session_wait": 2000,
//!   "iv_source": "broker"
//! }
//! ```
//!
//! - `module` (absolute path) and `module_sha256` (hex): the PKCS#11 library and its pin;
//! - `token_label`: slots are found by the token's label, never by number;
//! - exactly one of `pin_file` (one trailing newline is stripped) or `pin_env` (a variable of
//!   the broker's environment); an inline `pin` is refused;
//! - `max_payload` (bytes, default 65536), `max_sessions` (default 4), `session_wait`
//!   (milliseconds, default 2000), `iv_source` (`"broker"`, default, or `"module"`).
//!
//! `examples/plugins.d/hsm.toml` at the repository root is a fully commented drop-in.
//!
//! # SoftHSM
//!
//! Tests run against a real SoftHSM2 through `keybroker-softhsm-harness`. SoftHSM does not
//! generate GCM IVs: it uses the buffer it is given. With `iv_source = "module"` the plugin
//! passes a zeroed IV and refuses the result if the module leaves it zeroed, so against
//! SoftHSM that setting fails every encryption (the tests check that path; a FIPS-mode HSM
//! fills the IV in). `cargo test -p keybroker-plugin-pkcs11` needs `softhsm2` and `opensc`.
//!
//! # Use
//!
//! Built as a `cdylib`, the crate exports the keybroker root module (see
//! `keybroker-plugin-abi`); [`new_backend`] builds an instance in-process.

mod backend;
mod bind;
mod blob;
mod config;
mod error;
mod export;
mod keys;
mod module;
mod module_file;
mod pool;
mod public_key;
mod reference;
mod rsa_decrypt;
mod session;
mod signature;
#[cfg(test)]
mod tests;

pub use backend::{new_backend, Pkcs11Backend, NAME};
pub use config::{IvSource, DEFAULT_MAX_PAYLOAD, DEFAULT_MAX_SESSIONS, DEFAULT_SESSION_WAIT_MS};
pub use pool::SessionStats;
