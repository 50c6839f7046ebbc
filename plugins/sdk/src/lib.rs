//! `keybroker-plugin-sdk`: what keybroker's backend plugins share, written once
//! (ARCHITECTURE.md §5). Plugins link it as an ordinary rlib; nothing of it crosses the
//! plugin ABI (`keybroker-plugin-abi` stays the only crate host and plugins both link).
//!
//! - [`reference`]: key references that carry their tenant (`c/<tenant>/<key>` for keys a
//!   plugin created, `b/<tenant>/<key>` for bound ones), their parsing and the "is this
//!   reference ours, and for this tenant" check, the hashed names of created keys, and the
//!   `KEY_NOT_FOUND` errors that never name the owner.
//! - [`cache`]: the keys an instance has verified (tags, kind) on their first use.
//! - [`signature`]: ECDSA signatures between DER and the ABI's `r ‖ s`, and digests shaped for
//!   the reference crates (P-521).
//! - [`public_key`]: public keys as PEM SubjectPublicKeyInfo.
//! - [`runtime`] (feature `runtime`): the instance's own Tokio runtime, on which the ABI's
//!   blocking entry points run async SDK calls, with a deadline.
//! - [`config`]: the drop-in `[config]` table's parsing and the shape of its errors.
//! - [`entry`]: what `info()` answers, and an `encrypt` that wipes the plaintext it was
//!   handed.
//!
//! Test helpers shared by the plugins' tests (the recording host, the outage-and-recovery
//! test body) live in `keybroker-plugin-conformance`, beside the conformance suite.

#![warn(missing_docs)]

pub mod cache;
pub mod config;
pub mod entry;
pub mod public_key;
pub mod reference;
#[cfg(feature = "runtime")]
pub mod runtime;
pub mod signature;
