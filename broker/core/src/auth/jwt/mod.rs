//! Vault's `jwt` auth method, the pure part (Vault docs: "JWT/OIDC auth method", API
//! `auth/jwt/config`, `auth/jwt/role/:name`, `auth/jwt/login`): the configuration and role
//! model, and the validation of a JWT against a role. Storage, endpoints and token issuing
//! are [`crate::auth::jwt::method`].
//!
//! - [`JwtConfig`] names exactly one source of keys: PEM public keys, a JWKS URL, or an OIDC
//!   discovery URL (whose issuer then binds `iss`).
//! - [`JwtRole`] binds audiences, subject and claims, and says which claims make the user
//!   name, the groups and the token metadata.
//! - [`Verifier`] holds one configuration's keys. JWKS keys are cached and refetched on an
//!   unknown `kid`, at most once per `jwks_refetch_interval`, one fetch for all concurrent
//!   verifications.
//! - [`IdentityProviders`] is how keys are had from a URL (OIDC discovery, [`JwksFetcher`]):
//!   the server implements it over HTTPS, tests stub it; nothing here does I/O.
//!
//! The signing algorithm is never taken from the token alone: it must be one the key's type
//! allows, narrowed by the key's own `alg` and by `jwt_supported_algs`; `none` and HMAC are
//! always refused. Every refusal is [`crate::Error::InvalidRequest`] with a short message; the
//! precise reason is logged at debug level, never the token.

mod claims;
mod config;
mod jwks;
mod keys;
pub mod method;
mod provider;
mod role;
mod token;
mod verify;

#[cfg(test)]
pub(crate) mod test_support;

pub use claims::glob_match;
pub use config::{JwtConfig, JwtConfigInput, DEFAULT_JWKS_REFETCH_INTERVAL};
pub use jwks::JwksFetcher;
pub use provider::{CodeExchange, Discovered, IdentityProviders, ProviderError};
pub use role::{JwtRole, JwtRoleInput, MAX_LEEWAY};
pub use verify::{VerifiedJwt, Verifier, MAX_TOKEN_LEN};

/// Entry points for the fuzz targets (`fuzz/`, replayed by `cargo test -p keybroker-fuzz`),
/// not an API: the parsers a caller's JWT, an issuer's JWKS document and PEM keys reach, and
/// the checks of a token's claims (whose issuer a tenant may run).
#[doc(hidden)]
pub mod fuzzing {
    pub use super::claims::{check as check_claims, Accepted, Refusal};
    pub use super::keys::{
        algorithm_name, from_jwk, from_pem, parse_algorithm, parse_jwks, KeyType, VerificationKey,
        ASYMMETRIC_ALGORITHMS,
    };
    pub use super::token::{parse as parse_token, ParsedToken};
    pub use jsonwebtoken::Algorithm;
}
