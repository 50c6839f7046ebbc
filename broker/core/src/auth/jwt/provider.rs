//! What the JWT auth method needs from an identity provider: OIDC discovery, and a fetcher of
//! a JWKS document. The core owns the trait and does no I/O of its own; the server implements
//! it over HTTPS (`keybroker-server`'s `idp` module), tests stub it.

use async_trait::async_trait;

use super::jwks::JwksFetcher;

/// What OIDC discovery found: the issuer tokens must name, the JWKS URL, and the endpoints
/// of the authorization-code flow.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Discovered {
    /// The provider's issuer (equal to the discovery URL: discovery checks it).
    pub issuer: String,
    /// The provider's `jwks_uri`.
    pub jwks_uri: String,
    /// `authorization_endpoint`, where a person is sent to log in.
    pub authorization_endpoint: Option<String>,
    /// `token_endpoint`, where the broker exchanges a login's code for its ID token.
    pub token_endpoint: Option<String>,
}

/// An authorization code to exchange for tokens at the provider's token endpoint
/// (RFC 6749 §4.1.3, with the PKCE verifier of RFC 7636), the client authenticating with
/// its secret (`client_secret_basic`) when it has one.
pub struct CodeExchange<'a> {
    /// The discovered `token_endpoint`.
    pub token_endpoint: &'a str,
    /// PEM certificates trusted for it instead of the system's roots.
    pub ca_pem: Option<&'a str>,
    /// The mount's `oidc_client_id`.
    pub client_id: &'a str,
    /// The client's secret, if it has one.
    pub client_secret: Option<&'a str>,
    /// The code the provider sent the person back with.
    pub code: &'a str,
    /// The redirect URI of the login (the same as in the authorization request).
    pub redirect_uri: &'a str,
    /// The PKCE code verifier.
    pub code_verifier: &'a str,
}

impl std::fmt::Debug for CodeExchange<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret, the code or the verifier.
        f.debug_struct("CodeExchange")
            .field("token_endpoint", &self.token_endpoint)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
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

    /// Exchanges an authorization code for the ID token (the `id_token` of the token
    /// endpoint's answer). Any refusal or failure is a [`ProviderError::Fetch`] whose cause
    /// is for the operator's log.
    async fn exchange_code(
        &self,
        exchange: &CodeExchange<'_>,
    ) -> Result<zeroize::Zeroizing<String>, ProviderError>;

    /// The OIDC client secret the operator keeps outside the API under `name` (the server's
    /// `[oidc_client_secrets.<name>]`), if it is one for `issuer`. Unknown names, and names
    /// for another issuer, are [`ProviderError::Fetch`] alike.
    fn named_client_secret(
        &self,
        name: &str,
        issuer: &str,
    ) -> Result<zeroize::Zeroizing<String>, ProviderError> {
        let _ = (name, issuer);
        Err(ProviderError::Fetch("no client secret sources".to_owned()))
    }
}
