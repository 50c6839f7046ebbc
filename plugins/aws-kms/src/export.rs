//! The plugin's export, the only FFI edge of the crate: the `#[no_mangle]` root module the
//! host loads, built by `export_backend_plugin!` (abi_stable's `#[export_root_module]`)
//! around [`new_backend`](crate::new_backend).
// The macro emits a `#[no_mangle]` static and abi_stable's unsafe glue (no unsafe block of
// ours): `unsafe_code`, denied crate-wide, is allowed in this module only. abi_stable's
// expansion also has impls the `non_local_definitions` lint flags.
#![allow(unsafe_code)]
#![allow(non_local_definitions)]

keybroker_plugin_abi::export_backend_plugin!(crate::new_backend);
