//! `testing-abi-mismatch`: a library that looks like a keybroker plugin and is not one.
//!
//! It exports an abi_stable root module under the keybroker names (`keybroker_backend`) and
//! the workspace version, but with another layout: its constructor takes `(RStr, u64)` and
//! returns `u32`. It does not link `keybroker-plugin-abi`. The broker's tests point a drop-in
//! at it and check that the host refuses to load it (abi_stable's layout check) and keeps
//! serving every other instance.
#![allow(non_local_definitions)]
// abi_stable's derive and `#[export_root_module]` expand to unsafe glue and a `#[no_mangle]`
// static: the FFI edge of this crate, and nothing else.
#![allow(unsafe_code)]

use abi_stable::{
    declare_root_module_statics, export_root_module, library::RootModule, package_version_strings,
    prefix_type::PrefixTypeTrait, sabi_types::VersionStrings, std_types::RStr, StableAbi,
};

/// A root module with the keybroker names and a layout of its own.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = ModRef)))]
pub struct Mod {
    /// Not the keybroker constructor: other arguments, other result.
    #[sabi(last_prefix_field)]
    pub new_backend: extern "C" fn(config: RStr<'_>, flags: u64) -> u32,
}

impl RootModule for ModRef {
    declare_root_module_statics! {ModRef}
    const BASE_NAME: &'static str = "keybroker_backend";
    const NAME: &'static str = "keybroker_backend";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

extern "C" fn new_backend(_config: RStr<'_>, _flags: u64) -> u32 {
    0
}

/// The exported root module.
#[export_root_module]
pub fn get_library() -> ModRef {
    Mod { new_backend }.leak_into_prefix()
}
