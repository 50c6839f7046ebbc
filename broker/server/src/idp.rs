//! The identity providers of the JWT auth method, reached over HTTPS: the core's
//! [`IdentityProviders`] on a reqwest client (rustls on ring, optional CA certificates instead
//! of the system's roots, no redirects, short timeouts, capped responses), OIDC discovery
//! through `openidconnect`, and the JWKS fetcher. The composition root ([`crate::app`]) hands
//! it to the core.

use std::{collections::BTreeMap, error::Error as StdError, time::Duration};

use async_trait::async_trait;
use keybroker_core::auth::jwt::{Discovered, IdentityProviders, JwksFetcher, ProviderError};
use openidconnect::{core::CoreProviderMetadata, IssuerUrl};

use crate::config::ClientSecretSource;

/// Time allowed for connecting, and for a whole request.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Largest response body read from an identity provider.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Identity providers reached over HTTPS, each request through a client trusting the
/// configuration's CA certificates (or the system's roots); and the OIDC client secrets
/// the operator keeps outside the API.
#[derive(Clone, Debug, Default)]
pub struct HttpsIdentityProviders {
    secrets: std::sync::Arc<BTreeMap<String, ClientSecretSource>>,
}

impl HttpsIdentityProviders {
    /// Providers with the operator's client secret sources.
    pub fn new(secrets: BTreeMap<String, ClientSecretSource>) -> Self {
        Self {
            secrets: std::sync::Arc::new(secrets),
        }
    }
}

#[async_trait]
impl IdentityProviders for HttpsIdentityProviders {
    async fn discover(&self, url: &str, ca_pem: Option<&str>) -> Result<Discovered, ProviderError> {
        let client = client(ca_pem).map_err(ProviderError::CaCertificates)?;
        discover(&client, url).await.map_err(ProviderError::Fetch)
    }

    fn jwks_fetcher(
        &self,
        url: &str,
        ca_pem: Option<&str>,
    ) -> Result<Box<dyn JwksFetcher>, ProviderError> {
        let client = client(ca_pem).map_err(ProviderError::CaCertificates)?;
        Ok(Box::new(HttpJwksFetcher::new(client, url.to_owned())))
    }

    async fn exchange_code(
        &self,
        code: &keybroker_core::auth::jwt::CodeExchange<'_>,
    ) -> Result<zeroize::Zeroizing<String>, ProviderError> {
        let client = client(code.ca_pem).map_err(ProviderError::CaCertificates)?;
        exchange(&client, code).await.map_err(ProviderError::Fetch)
    }

    fn named_client_secret(
        &self,
        name: &str,
        issuer: &str,
    ) -> Result<zeroize::Zeroizing<String>, ProviderError> {
        let unknown =
            || ProviderError::Fetch(format!("no client secret source {name:?} for {issuer}"));
        let source = self.secrets.get(name).ok_or_else(unknown)?;
        if source.issuer.trim_end_matches('/') != issuer.trim_end_matches('/') {
            return Err(unknown());
        }
        let text = match (&source.env, &source.file) {
            (Some(variable), _) => {
                zeroize::Zeroizing::new(std::env::var(variable).map_err(|_| {
                    ProviderError::Fetch(format!(
                        "client secret source {name:?}: environment variable {variable} is not set"
                    ))
                })?)
            }
            (None, Some(path)) => {
                zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|error| {
                    ProviderError::Fetch(format!(
                        "client secret source {name:?}: cannot read {}: {error}",
                        path.display()
                    ))
                })?)
            }
            (None, None) => return Err(unknown()),
        };
        let secret = text.trim();
        if secret.is_empty() {
            return Err(ProviderError::Fetch(format!(
                "client secret source {name:?} is empty"
            )));
        }
        Ok(zeroize::Zeroizing::new(secret.to_owned()))
    }
}

/// An error of a fetch, with its causes in its message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct FetchError(String);

/// An error and its causes, one line (`error sending request: …: invalid peer certificate`).
fn describe(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// An HTTPS client trusting `ca_pem` (one or more PEM certificates) instead of the system's
/// roots when given.
fn client(ca_pem: Option<&str>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .https_only(true)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(TIMEOUT)
        .timeout(TIMEOUT)
        .use_rustls_tls();
    if let Some(pem) = ca_pem {
        let certificates = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| format!("invalid PEM certificates: {}", describe(&e)))?;
        if certificates.is_empty() {
            return Err("no PEM certificate found".to_owned());
        }
        builder = builder.tls_built_in_root_certs(false);
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder
        .build()
        .map_err(|e| format!("invalid CA certificates: {}", describe(&e)))
}

/// Reads a response body, refusing more than [`MAX_RESPONSE_BYTES`].
async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    if response
        .content_length()
        .is_some_and(|len| len > MAX_RESPONSE_BYTES as u64)
    {
        return Err(format!(
            "the response is larger than {MAX_RESPONSE_BYTES} bytes"
        ));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(format!(
                "the response is larger than {MAX_RESPONSE_BYTES} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Sends a request built by `openidconnect`, reading a capped body.
async fn send(
    client: reqwest::Client,
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, FetchError> {
    let (parts, body) = request.into_parts();
    let response = client
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(|e| FetchError(describe(&e)))?;
    let mut builder = openidconnect::http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        builder = builder.header(name, value);
    }
    let body = read_capped(response).await.map_err(FetchError)?;
    builder.body(body).map_err(|e| FetchError(e.to_string()))
}

/// Runs OIDC discovery on `url` (`<url>/.well-known/openid-configuration`).
async fn discover(client: &reqwest::Client, url: &str) -> Result<Discovered, String> {
    let issuer_url = IssuerUrl::new(url.to_owned()).map_err(|e| format!("invalid URL: {e}"))?;
    let http = |request: openidconnect::HttpRequest| send(client.clone(), request);
    let metadata = CoreProviderMetadata::discover_async(issuer_url, &http)
        .await
        .map_err(|e| describe(&e))?;
    let jwks_uri = metadata.jwks_uri().as_str().to_owned();
    if !jwks_uri.starts_with("https://") {
        return Err(format!(
            "the provider's jwks_uri {jwks_uri:?} is not an https URL"
        ));
    }
    let https = |url: &str| url.starts_with("https://").then(|| url.to_owned());
    Ok(Discovered {
        issuer: metadata.issuer().as_str().to_owned(),
        jwks_uri,
        authorization_endpoint: https(metadata.authorization_endpoint().as_str()),
        token_endpoint: metadata
            .token_endpoint()
            .and_then(|url| https(url.as_str())),
    })
}

/// What a token endpoint answers (RFC 6749 §5.1 and §5.2), of what the broker reads.
#[derive(serde::Deserialize)]
struct TokenAnswer {
    id_token: Option<String>,
    error: Option<String>,
}

/// Exchanges an authorization code at the token endpoint (RFC 6749 §4.1.3, PKCE's
/// `code_verifier`), authenticating with `client_secret_basic` when the client has a secret
/// (the default method, RFC 6749 §2.3.1; the form-urlencoded id and secret as the Basic
/// credentials). Written here rather than through `openidconnect`'s client, whose types
/// would also verify the ID token: the broker verifies it as it verifies every JWT.
async fn exchange(
    client: &reqwest::Client,
    exchange: &keybroker_core::auth::jwt::CodeExchange<'_>,
) -> Result<zeroize::Zeroizing<String>, String> {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", exchange.code),
        ("redirect_uri", exchange.redirect_uri),
        ("code_verifier", exchange.code_verifier),
    ];
    let mut request = client
        .post(exchange.token_endpoint)
        .header(reqwest::header::ACCEPT, "application/json");
    match exchange.client_secret {
        Some(secret) => {
            let encode = |text: &str| {
                url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>()
            };
            request = request.basic_auth(encode(exchange.client_id), Some(encode(secret)));
        }
        None => form.push(("client_id", exchange.client_id)),
    }
    let response = request.form(&form).send().await.map_err(|e| describe(&e))?;
    let status = response.status();
    let body = zeroize::Zeroizing::new(read_capped(response).await?);
    let answer: TokenAnswer = serde_json::from_slice(&body)
        .map_err(|e| format!("the token endpoint answered HTTP {status} and no JSON: {e}"))?;
    if !status.is_success() {
        return Err(format!(
            "the token endpoint answered HTTP {status} ({})",
            answer.error.as_deref().unwrap_or("no error code")
        ));
    }
    answer
        .id_token
        .map(zeroize::Zeroizing::new)
        .ok_or_else(|| "the token endpoint's answer has no id_token".to_owned())
}

/// Fetches a JWKS document over HTTPS.
struct HttpJwksFetcher {
    client: reqwest::Client,
    url: String,
}

impl HttpJwksFetcher {
    /// A fetcher of `url` through `client`.
    fn new(client: reqwest::Client, url: String) -> Self {
        Self { client, url }
    }
}

#[async_trait]
impl JwksFetcher for HttpJwksFetcher {
    async fn fetch(&self) -> Result<Vec<u8>, String> {
        let response = self
            .client
            .get(&self.url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            return Err(format!("{} answered HTTP status {status}", self.url));
        }
        read_capped(response).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed CA certificate's PEM; nothing connects to it.
    fn ca_pem() -> String {
        rcgen::generate_simple_self_signed(vec!["idp.example".to_owned()])
            .unwrap()
            .cert
            .pem()
    }

    #[test]
    fn clients_take_ca_pems() {
        client(None).unwrap();
        let ca = ca_pem();
        client(Some(&ca)).unwrap();
        client(Some(&format!("{ca}{}", ca_pem()))).unwrap();
        assert!(client(Some("junk"))
            .unwrap_err()
            .contains("no PEM certificate"));
        let bad = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(client(Some(bad)).is_err());
    }

    #[tokio::test]
    async fn unusable_ca_certificates_are_told_apart_from_fetch_failures() {
        let providers = HttpsIdentityProviders::default();
        for ca in [
            "junk",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ] {
            assert!(matches!(
                providers.jwks_fetcher("https://idp.example/jwks", Some(ca)),
                Err(ProviderError::CaCertificates(_))
            ));
            assert!(matches!(
                providers.discover("https://idp.example", Some(ca)).await,
                Err(ProviderError::CaCertificates(_))
            ));
        }
        // Plain http is refused by the client itself, before connecting: no listener needed.
        assert!(matches!(
            providers.discover("http://127.0.0.1:9", None).await,
            Err(ProviderError::Fetch(_))
        ));
    }

    #[tokio::test]
    async fn plain_http_is_never_fetched() {
        // https_only refuses before connecting, so no listener is needed.
        let fetcher = HttpsIdentityProviders::default()
            .jwks_fetcher("http://127.0.0.1:9/keys", None)
            .unwrap();
        assert!(fetcher.fetch().await.is_err());
    }
}
