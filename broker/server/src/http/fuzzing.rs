//! Entry points for the fuzz targets (`fuzz/`, replayed by `cargo test -p keybroker-fuzz`),
//! not an API: every request body a handler reads, decoded into its wire struct and on as
//! the handler decodes it (lists, CIDR blocks, base64, batch items, policies, JWT
//! configuration and roles), without a broker; and Vault's lenient field decoders.

pub use super::input::{
    opt_bool, opt_duration_secs, opt_object, opt_string_list, opt_u64, present, MAX_DURATION_SECS,
};

/// Decodes `body` as each handler of the HTTP API would; how many wire structs accepted it.
pub fn request_body(body: &[u8]) -> usize {
    let body = bytes::Bytes::copy_from_slice(body);
    super::approle::fuzz_request_bodies(&body)
        + super::jwt::fuzz_request_bodies(&body)
        + super::policies::fuzz_request_bodies(&body)
        + super::sys::fuzz_request_bodies(&body)
        + super::token::fuzz_request_bodies(&body)
        + super::transit::fuzz_request_bodies(&body)
}
