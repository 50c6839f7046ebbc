//! Vault ACL policies with Vault's semantics, pure (no I/O).
//!
//! - [`parse`] reads a Vault HCL policy (`path "transit/encrypt/app-*" { capabilities =
//!   ["update"] }`) into a [`Policy`]; errors name the line and the reason.
//! - [`Acl::new`] compiles a token's policies; [`Acl::capabilities`] answers as Vault's
//!   `sys/capabilities` does and [`Acl::allows`] decides a request.
//! - [`canonicalize_request_path`] gives the one form of a request path used both for the
//!   check and for routing.
//!
//! Matching follows OpenBao's `vault/acl.go`, and `tests/e2e/policy_diff.rs` compares it with
//! a real OpenBao on thousands of random policy sets: rules for the identical pattern merge
//! across policies (`deny` wins); otherwise an exact rule applies, else the single most
//! specific `*`-prefix or `+`-segment rule (Vault's priority order), and `deny` inside that
//! rule overrides everything in it. Deny by default. A list of `a/b/` also considers the
//! rules for `a/b` (exact first; globs only when none matches `a/b/`), as OpenBao does.

mod acl;
mod capability;
mod error;
mod parse;
mod path;
pub mod store;

pub use acl::Acl;
pub use capability::{Capabilities, Capability};
pub use error::PolicyError;
pub use parse::{parse, validate_name, Policy, Rule};
pub use path::canonicalize_request_path;

/// The built-in `default` policy: a token's self-service paths (Vault's `default` policy,
/// reduced to what a key broker serves).
pub const DEFAULT_POLICY: &str = r#"# Allow tokens to look up their own properties.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}

# Allow tokens to renew themselves.
path "auth/token/renew-self" {
  capabilities = ["update"]
}

# Allow tokens to revoke themselves.
path "auth/token/revoke-self" {
  capabilities = ["update"]
}

# Allow a token to look up its own capabilities on a path.
path "sys/capabilities-self" {
  capabilities = ["update"]
}

# Allow a token to wrap arbitrary values in a response-wrapping token.
path "sys/wrapping/wrap" {
  capabilities = ["update"]
}

# Allow a token to look up the creation time and TTL of a given response-wrapping token.
path "sys/wrapping/lookup" {
  capabilities = ["update"]
}

# Allow a token to unwrap a response-wrapping token.
path "sys/wrapping/unwrap" {
  capabilities = ["update"]
}
"#;
