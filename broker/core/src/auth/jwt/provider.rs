//! What the JWT auth method needs from an identity provider: OIDC discovery, and a fetcher of
//! a JWKS document. The core owns the trait and does no I/O of its own; the server implements
//! it over HTTPS (`keybroker-server`'s `idp` module), tests stub it.

use async_trait::async_trait;

use super::jwks::JwksFetcher;

/// What OIDC discovery found: the issuer tokens must name and the JWKS URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discovered {
    /// The provider's issuer (equal to the discovery URL: discovery checks it).
    pub issuer: String,
    /// The provider's `jwks_uri`.
    pub jwks_uri: String,
}

/// Why an identity provider's documents cannot be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// The CA certificates configured for the provider cannot be used. The reason is for the
    /// admin who gave them (`no PEM certificate found`).
    #[error("{0}")]
    CaCertificates(String),
    /// The provider could not be reached, or answered nothing usable. The cause may name
    /// hosts, addresses, ports or what they answered: it is for the operator's log, never for
    /// the caller.
    #[error("{0}")]
    Fetch(String),
}

/// Identity providers as the JWT auth method reaches them.
#[async_trait]
pub trait IdentityProviders: Send + Sync {
    /// Runs OIDC discovery on `url` (`<url>/.well-known/openid-configuration`), trusting
    /// `ca_pem` (one or more PEM certificates) instead of the system's roots when given.
    async fn discover(&self, url: &str, ca_pem: Option<&str>) -> Result<Discovered, ProviderError>;

    /// A fetcher of the JWKS document at `url`, trusting `ca_pem` instead of the system's
    /// roots when given. Nothing is fetched yet.
    fn jwks_fetcher(
        &self,
        url: &str,
        ca_pem: Option<&str>,
    ) -> Result<Box<dyn JwksFetcher>, ProviderError>;
}
