//! The backend conformance suite against local-kek, built as the broker builds it from a
//! drop-in (`new_backend` with a KEK file) and driven through the ABI trait object.
// Test helpers outside `#[test]` functions panic on setup failures too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;

use base64::Engine as _;
use keybroker_plugin_abi::{into_ffi, key_type, BackendBox, HostBox};
use keybroker_plugin_conformance::Options;

/// A KEK file as an operator makes one: base64 of 32 random bytes.
fn kek_file() -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    let kek: [u8; 32] = rand::random();
    file.write_all(
        base64::engine::general_purpose::STANDARD
            .encode(kek)
            .as_bytes(),
    )
    .unwrap();
    file
}

/// An instance as the broker builds it, with two KEK files (the second active: a ring
/// mid-rotation, as production runs), behind the ABI trait object.
fn backend(old: &tempfile::NamedTempFile, new: &tempfile::NamedTempFile) -> BackendBox {
    let config = serde_json::json!({
        "active": "k2",
        "keks": [
            {"id": "k1", "file": old.path()},
            {"id": "k2", "file": new.path()},
        ],
    })
    .to_string();
    let host: HostBox = keybroker_plugin_conformance::RecordingHost::boxed();
    into_ffi(keybroker_plugin_local_kek::new_backend(&config, host).unwrap())
}

fn options() -> Options {
    Options {
        asymmetric_key_types: key_type::ASYMMETRIC.map(str::to_owned).to_vec(),
        ..Options::default()
    }
}

#[test]
fn local_kek_passes_the_conformance_suite() {
    let (old, new) = (kek_file(), kek_file());
    keybroker_plugin_conformance::run(&backend(&old, &new), &options());
}

/// Export and import of private keys (PRIVATE_KEY_TRANSFER), for every asymmetric type.
#[test]
fn local_kek_transfers_private_keys_of_every_type() {
    let (old, new) = (kek_file(), kek_file());
    let backend = backend(&old, &new);
    let options = options();
    for key_type in &options.asymmetric_key_types {
        keybroker_plugin_conformance::check_private_key_transfer(&backend, &options, key_type);
    }
}
