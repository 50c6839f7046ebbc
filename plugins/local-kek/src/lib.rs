//! `local-kek`: a keybroker backend whose key-encryption keys (KEKs) are local AES-256 keys.
//!
//! # Design
//!
//! The plugin holds a small ring of KEKs, each a 32-byte key read from a file or an
//! environment variable, and names one of them *active*. It stores nothing: every key is
//! an opaque, self-describing reference tagged with the owning tenant, and every call checks
//! that tag against the calling tenant (`KEY_NOT_FOUND`, "key not found for this tenant",
//! never naming the owner) before any cryptography happens.
//!
//! ## Symmetric keys (`aes256-gcm96`): envelope and direct mode
//!
//! The reference is `t/<tenant_id>/<32 hex random>` and the key that protects its data is
//! derived on every call,
//!
//! ```text
//! key = HKDF-SHA256(ikm = KEK, salt = none, info = "keybroker/local-kek/v1" ‖ reference)
//! ```
//!
//! so two references never share a key. Data (in envelope mode: the broker's data keys) is
//! sealed with AES-256-GCM under that key, with the caller's AAD, into a self-describing
//! blob:
//!
//! ```text
//! 0x01 ‖ u8 len(kek_id) ‖ kek_id ‖ nonce(12) ‖ ciphertext ‖ tag(16)
//! ```
//!
//! The nonce is the broker's 96-bit IV when it supplies one (it counts them), otherwise a
//! fresh random one.
//!
//! ## Asymmetric keys (`rsa-2048`, `-3072`, `-4096`, `ecdsa-p256`, `-p384`): signing
//!
//! `create_key` generates the private key in software (the `rsa`, `p256` and `p384` crates,
//! from the operating system's RNG), serialises it as PKCS #8 DER and seals it, in the same
//! blob format, *into the reference itself*:
//!
//! ```text
//! reference = "a/" tenant_id "/" key_type "/" base64url-unpadded(blob)
//! header    = "a/" tenant_id "/" key_type
//! blob      = AES-256-GCM(key = HKDF-SHA256(KEK, info = "keybroker/local-kek/v1" ‖ header),
//!                         nonce = random, aad = header, plaintext = PKCS #8 private key)
//! ```
//!
//! The header binds the tenant and the key type twice (derivation and AAD), so a blob pasted
//! under another tenant or type does not open. An RSA-4096 reference is about 3.3 KB long.
//! `sign` takes a digest the broker computed (`sha2-224`, `-256`, `-384`, `-512`; its length
//! is checked) and answers RSASSA-PSS (salt = digest length, MGF1 with the same hash) or
//! RSASSA-PKCS1-v1_5 for RSA keys, and ECDSA as raw `r ‖ s` (64 bytes on P-256, 96 on
//! P-384). `verify` answers `false` for any signature that does not match, malformed ones
//! included; `public_key` answers a PEM SubjectPublicKeyInfo. Asymmetric references cannot
//! encrypt, symmetric ones cannot sign (`INVALID_REQUEST`). Parsed private keys are kept in a
//! small cache (1024 keys, dropped after 10 minutes unused) because parsing RSA PKCS #8 on
//! every signature is slow; they are wiped when evicted. Being software keys, they share the
//! process's memory with everything else: keys that must never be in memory belong in an
//! HSM (the PKCS #11 plugin). The `rsa` crate's private-key operations are not constant
//! time (RUSTSEC-2023-0071); signing is blinded, which is what that crate offers.
//!
//! ## Rotation and deletion
//!
//! The KEK id inside every blob is what makes rotation work: add a new KEK, make it
//! `active`, and keep the old one configured for as long as blobs made under it exist. New
//! blobs (ciphertexts and new asymmetric keys) use the active KEK, old ones open under the
//! KEK they name. An asymmetric reference made under a KEK that is later removed can no
//! longer be used (`KEY_NOT_FOUND`).
//!
//! `delete_key` is a no-op: symmetric keys are derived and asymmetric keys live in their
//! references, so there is nothing to destroy here; the broker shreds a key by dropping its
//! wrapped data keys or its reference.
//!
//! KEKs and private keys live only in zeroizing buffers, are never printed (the [`LocalKek`]
//! `Debug` impl shows ids and counts only) and never appear in error messages, not even a
//! byte of a malformed value.
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
//!
//! `cargo test -p keybroker-plugin-local-kek` runs the unit tests and the backend
//! conformance suite (`tests/conformance.rs`) through the ABI trait object.

mod asymmetric;
mod backend;
mod blob;
mod config;
mod export;
mod reference;
mod sealing;

pub use backend::{new_backend, with_keks, LocalKek, DEFAULT_MAX_PAYLOAD, KEY_TYPE, NAME};
