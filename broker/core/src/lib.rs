//! keybroker's domain, free of HTTP, SQL and dynamic loading.
//!
//! The broker keeps named, versioned keys per tenant and mount. Every key version names a
//! backend instance (a plugin: local KEK, KMS, HSM, customer agent) and a mode:
//! - `envelope`: the broker generates a data key (DEK) per version, the backend wraps it,
//!   and data operations run here with the unwrapped DEK, cached for minutes ([`dek_cache`]);
//! - `direct`: every encrypt/decrypt goes to the backend.
//!
//! Ciphertexts are bound to immutable ids (tenant, key, version) through HKDF and AES-GCM
//! AAD ([`crypto`]), so a DEK or ciphertext moved elsewhere is useless.
//!
//! Callers authenticate with tokens ([`auth::token`]) issued directly or by an auth method
//! ([`auth::approle`], [`auth::jwt`]); ACL policies ([`policy`], stored by
//! [`policy::store`]) confine them to their tenant ([`tenants`]). Secrets engines are in
//! [`engines`] ([`engines::transit`]).
//!
//! The core talks to the world through traits: [`store::Store`] (sqlx adapters live in
//! `keybroker-store`; engines and auth methods keep their own state in
//! [`mount_storage`]), [`backend::Backends`] (the plugin host lives in `keybroker-server`),
//! [`auth::jwt::IdentityProviders`] (OIDC discovery and JWKS fetching over HTTPS, also in
//! `keybroker-server`) and [`clock::Clock`]; it does no I/O of its own. [`Broker`] ties them
//! together; the HTTP layer makes one call into
//! it per request.

pub mod auth;
pub mod backend;
pub mod broker;
pub mod changes;
pub mod cidr;
pub mod clock;
pub mod crypto;
pub mod dek_cache;
pub mod engines;
pub mod error;
pub mod ids;
pub mod mount_storage;
pub mod mounts;
pub mod policy;
pub mod seal;
pub mod store;
pub mod tenants;
pub mod turns;
pub mod wrapping;

pub use broker::{Broker, BrokerSettings};
pub use error::Error;
pub use ids::{KeyId, MountId, Tenant, TenantId};
