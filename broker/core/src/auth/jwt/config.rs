//! A jwt mount's configuration (Vault API: auth/jwt/config), and its checks.

use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};

use super::keys::{self, VerificationKey};
use crate::error::{Error, Result};
use zeroize::Zeroizing;

/// Seconds between two JWKS refetches caused by unknown `kid`s, unless configured.
pub const DEFAULT_JWKS_REFETCH_INTERVAL: u64 = 30;

/// Longest accepted `oidc_client_id`, bytes.
const MAX_CLIENT_ID_LEN: usize = 256;

/// Longest accepted `jwks_refetch_interval`, seconds (a day).
const MAX_JWKS_REFETCH_INTERVAL: u64 = 86_400;

fn default_refetch_interval() -> u64 {
    DEFAULT_JWKS_REFETCH_INTERVAL
}

/// Vault's `auth/jwt/config`, plus our extensions (`bearer_role`, `jwks_refetch_interval`).
/// Stored as JSON in the mount's storage, under `config`. Exactly one key source is set:
/// `oidc_discovery_url`, `jwks_url` or `jwt_validation_pubkeys`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct JwtConfig {
    /// The OIDC issuer whose discovery document (`/.well-known/openid-configuration`) names
    /// the JWKS; tokens' `iss` must equal the discovered issuer.
    pub oidc_discovery_url: Option<String>,
    /// PEM CA certificate(s) trusted for the discovery URL and its JWKS instead of the
    /// system's roots.
    pub oidc_discovery_ca_pem: Option<String>,
    /// A JWKS URL.
    pub jwks_url: Option<String>,
    /// PEM CA certificate(s) trusted for `jwks_url` instead of the system's roots.
    pub jwks_ca_pem: Option<String>,
    /// PEM public keys (RSA, EC P-256/P-384, Ed25519).
    pub jwt_validation_pubkeys: Vec<String>,
    /// The `iss` every token must carry, when set.
    pub bound_issuer: Option<String>,
    /// Accepted signing algorithms; empty means every asymmetric algorithm the key types
    /// allow.
    pub jwt_supported_algs: Vec<String>,
    /// The role of logins that name none (lowercase).
    pub default_role: Option<String>,
    /// Our extension: the role applied to requests carrying `Authorization: Bearer <jwt>`
    /// (lowercase).
    pub bearer_role: Option<String>,
    /// Our extension: at most one JWKS refetch per this many seconds, on an unknown `kid`.
    #[serde(default = "default_refetch_interval")]
    pub jwks_refetch_interval: u64,
    /// The OAuth client the broker is at the provider, for the OIDC login flow (roles of
    /// type `oidc`); needs `oidc_discovery_url`. Its secret is kept apart, sealed, and never
    /// read back.
    pub oidc_client_id: Option<String>,
    /// Our extension: the client secret is one the operator keeps outside the API, named in
    /// the server's configuration (`[oidc_client_secrets.<name>]`, bound to this provider);
    /// root namespace only.
    pub oidc_client_secret_source: Option<String>,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            oidc_discovery_url: None,
            oidc_discovery_ca_pem: None,
            jwks_url: None,
            jwks_ca_pem: None,
            jwt_validation_pubkeys: Vec::new(),
            bound_issuer: None,
            jwt_supported_algs: Vec::new(),
            default_role: None,
            bearer_role: None,
            jwks_refetch_interval: DEFAULT_JWKS_REFETCH_INTERVAL,
            oidc_client_id: None,
            oidc_client_secret_source: None,
        }
    }
}

/// A write to `auth/jwt/config` (Vault API), as the HTTP edge decoded it (its wire struct
/// takes Vault's lenient forms). Every field is optional; a write replaces the whole
/// configuration, as in Vault.
#[derive(Clone, Default)]
// Tests write inputs as (canonical) JSON.
#[cfg_attr(test, derive(Deserialize), serde(default))]
pub struct JwtConfigInput {
    /// See [`JwtConfig::oidc_discovery_url`].
    pub oidc_discovery_url: Option<String>,
    /// See [`JwtConfig::oidc_discovery_ca_pem`].
    pub oidc_discovery_ca_pem: Option<String>,
    /// See [`JwtConfig::jwks_url`].
    pub jwks_url: Option<String>,
    /// See [`JwtConfig::jwks_ca_pem`].
    pub jwks_ca_pem: Option<String>,
    /// See [`JwtConfig::jwt_validation_pubkeys`].
    pub jwt_validation_pubkeys: Option<Vec<String>>,
    /// See [`JwtConfig::bound_issuer`].
    pub bound_issuer: Option<String>,
    /// See [`JwtConfig::jwt_supported_algs`].
    pub jwt_supported_algs: Option<Vec<String>>,
    /// See [`JwtConfig::default_role`].
    pub default_role: Option<String>,
    /// See [`JwtConfig::bearer_role`].
    pub bearer_role: Option<String>,
    /// See [`JwtConfig::jwks_refetch_interval`], seconds.
    pub jwks_refetch_interval: Option<u64>,
    /// See [`JwtConfig::oidc_client_id`].
    pub oidc_client_id: Option<String>,
    /// The client secret (Vault's `oidc_client_secret`), stored sealed apart from the
    /// configuration, never read back.
    #[cfg_attr(test, serde(deserialize_with = "secret_text"))]
    pub oidc_client_secret: Option<Zeroizing<String>>,
    /// See [`JwtConfig::oidc_client_secret_source`].
    pub oidc_client_secret_source: Option<String>,
    /// Whether Vault's `jwks_pairs` was given (several JWKS URLs are not supported).
    pub jwks_pairs: bool,
}

impl std::fmt::Debug for JwtConfigInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the client secret.
        f.debug_struct("JwtConfigInput")
            .field("oidc_discovery_url", &self.oidc_discovery_url)
            .field("jwks_url", &self.jwks_url)
            .field("oidc_client_id", &self.oidc_client_id)
            .field(
                "oidc_client_secret",
                &self.oidc_client_secret.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
fn secret_text<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<Zeroizing<String>>, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.map(Zeroizing::new))
}

/// Trims a text field; empty means unset (the CLI clears a field with `field=""`).
fn text(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

fn role_name(field: &str, value: Option<String>) -> Result<Option<String>> {
    text(value)
        .map(|name| {
            crate::auth::approle::validate_role_name(&name)
                .map_err(|e| Error::invalid(format!("{field}: {e}")))
        })
        .transpose()
}

/// Checks a URL we fetch from: https, a host, no credentials, no fragment.
fn check_url(field: &str, url: &str) -> Result<()> {
    let parsed = url::Url::parse(url)
        .map_err(|e| Error::invalid(format!("{field}: invalid URL {url:?}: {e}")))?;
    if parsed.scheme() != "https" {
        return Err(Error::invalid(format!(
            "{field}: only https URLs are accepted"
        )));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(Error::invalid(format!("{field}: the URL has no host")));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(Error::invalid(format!(
            "{field}: the URL must not hold credentials"
        )));
    }
    if parsed.fragment().is_some() {
        return Err(Error::invalid(format!(
            "{field}: the URL must not have a fragment"
        )));
    }
    Ok(())
}

impl JwtConfig {
    /// Builds and checks a configuration from a write to `auth/jwt/config`: exactly one key
    /// source, https URLs, public keys that parse, known asymmetric algorithms only. Nothing
    /// is fetched here, and CA certificates are judged by the identity providers that use
    /// them ([`crate::auth::jwt::Verifier::new`] does both).
    pub fn from_input(input: JwtConfigInput) -> Result<Self> {
        if input.jwks_pairs {
            return Err(Error::invalid(
                "jwks_pairs is not supported: use jwks_url and jwks_ca_pem",
            ));
        }
        let mut algorithms: Vec<String> = Vec::new();
        for name in input.jwt_supported_algs.unwrap_or_default() {
            if !algorithms.contains(&name) {
                algorithms.push(name);
            }
        }
        let config = Self {
            oidc_discovery_url: text(input.oidc_discovery_url),
            oidc_discovery_ca_pem: text(input.oidc_discovery_ca_pem),
            jwks_url: text(input.jwks_url),
            jwks_ca_pem: text(input.jwks_ca_pem),
            jwt_validation_pubkeys: input.jwt_validation_pubkeys.unwrap_or_default(),
            bound_issuer: text(input.bound_issuer),
            jwt_supported_algs: algorithms,
            default_role: role_name("default_role", input.default_role)?,
            bearer_role: role_name("bearer_role", input.bearer_role)?,
            jwks_refetch_interval: input
                .jwks_refetch_interval
                .unwrap_or(DEFAULT_JWKS_REFETCH_INTERVAL),
            oidc_client_id: text(input.oidc_client_id),
            oidc_client_secret_source: text(input.oidc_client_secret_source),
        };
        if input
            .oidc_client_secret
            .as_ref()
            .is_some_and(|secret| !secret.trim().is_empty())
            && config.oidc_client_id.is_none()
        {
            return Err(Error::invalid("oidc_client_secret needs oidc_client_id"));
        }
        config.check()?;
        Ok(config)
    }

    /// Checks a configuration without network access (also run on a stored one when its
    /// verifier is built).
    pub(crate) fn check(&self) -> Result<()> {
        let sources = [
            self.oidc_discovery_url.is_some(),
            self.jwks_url.is_some(),
            !self.jwt_validation_pubkeys.is_empty(),
        ];
        if sources.iter().filter(|set| **set).count() != 1 {
            return Err(Error::invalid(
                "exactly one of 'jwt_validation_pubkeys', 'jwks_url' or 'oidc_discovery_url' must be set",
            ));
        }
        if self.oidc_discovery_ca_pem.is_some() && self.oidc_discovery_url.is_none() {
            return Err(Error::invalid(
                "oidc_discovery_ca_pem is only used with oidc_discovery_url",
            ));
        }
        if self.jwks_ca_pem.is_some() && self.jwks_url.is_none() {
            return Err(Error::invalid("jwks_ca_pem is only used with jwks_url"));
        }
        if let Some(url) = &self.oidc_discovery_url {
            check_url("oidc_discovery_url", url)?;
            // Discovery accepts only an issuer equal to its URL, so any other bound_issuer
            // would refuse every token.
            if self
                .bound_issuer
                .as_ref()
                .is_some_and(|issuer| issuer != url)
            {
                return Err(Error::invalid(
                    "bound_issuer must equal oidc_discovery_url (the issuer discovery accepts) or be unset",
                ));
            }
        }
        if let Some(url) = &self.jwks_url {
            check_url("jwks_url", url)?;
        }
        if let Some(client) = &self.oidc_client_id {
            if self.oidc_discovery_url.is_none() {
                return Err(Error::invalid(
                    "oidc_client_id needs oidc_discovery_url: the OIDC login flow finds the provider's endpoints by discovery",
                ));
            }
            if client.len() > MAX_CLIENT_ID_LEN || client.chars().any(char::is_control) {
                return Err(Error::invalid(format!(
                    "oidc_client_id: at most {MAX_CLIENT_ID_LEN} bytes, no control characters"
                )));
            }
        }
        if let Some(source) = &self.oidc_client_secret_source {
            if self.oidc_client_id.is_none() {
                return Err(Error::invalid(
                    "oidc_client_secret_source needs oidc_client_id",
                ));
            }
            if source.len() > 64
                || !source
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(Error::invalid(
                    "oidc_client_secret_source: a name of the server's [oidc_client_secrets]",
                ));
            }
        }
        let keys = self.static_keys()?;
        if !self.jwt_validation_pubkeys.is_empty() && keys.is_empty() {
            return Err(Error::invalid(
                "none of jwt_validation_pubkeys can verify any of jwt_supported_algs",
            ));
        }
        if self.jwks_refetch_interval == 0 || self.jwks_refetch_interval > MAX_JWKS_REFETCH_INTERVAL
        {
            return Err(Error::invalid(format!(
                "jwks_refetch_interval must be between 1 and {MAX_JWKS_REFETCH_INTERVAL} seconds"
            )));
        }
        Ok(())
    }

    /// `jwt_supported_algs` parsed (empty: no narrowing).
    pub(crate) fn supported_algorithms(&self) -> Result<Vec<Algorithm>> {
        self.jwt_supported_algs
            .iter()
            .map(|name| {
                keys::parse_algorithm(name)
                    .map_err(|e| Error::invalid(format!("jwt_supported_algs: {e}")))
            })
            .collect()
    }

    /// `jwt_validation_pubkeys` parsed, narrowed to `jwt_supported_algs`; keys that fit none
    /// of them are left out.
    pub(crate) fn static_keys(&self) -> Result<Vec<VerificationKey>> {
        let algorithms = self.supported_algorithms()?;
        let mut out = Vec::with_capacity(self.jwt_validation_pubkeys.len());
        for (index, pem) in self.jwt_validation_pubkeys.iter().enumerate() {
            let mut key = keys::from_pem(pem)
                .map_err(|e| Error::invalid(format!("jwt_validation_pubkeys[{index}]: {e}")))?;
            key.narrow(&algorithms);
            if !key.algorithms.is_empty() {
                out.push(key);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jwt::test_support as ts;

    fn input(json: serde_json::Value) -> JwtConfigInput {
        serde_json::from_value(json).unwrap()
    }

    fn refused(json: serde_json::Value, expected: &str) {
        match JwtConfig::from_input(input(json.clone())) {
            Err(Error::InvalidRequest(message)) => {
                assert!(message.contains(expected), "{json}: {message}")
            }
            other => panic!("{json}: expected a 400 containing {expected:?}, got {other:?}"),
        }
    }

    #[test]
    fn a_config_with_static_keys() {
        let config = JwtConfig::from_input(input(serde_json::json!({
            "jwt_validation_pubkeys": [ts::rsa().public_pem, ts::ed25519().public_pem],
            "bound_issuer": " https://issuer.example ",
            "jwt_supported_algs": ["RS256", "EdDSA", "RS256"],
            "default_role": "Reader",
            "bearer_role": "",
            "jwks_refetch_interval": 60,
        })))
        .unwrap();
        assert_eq!(config.jwt_validation_pubkeys.len(), 2);
        assert_eq!(
            config.bound_issuer.as_deref(),
            Some("https://issuer.example")
        );
        assert_eq!(config.jwt_supported_algs, ["RS256", "EdDSA"]);
        assert_eq!(config.default_role.as_deref(), Some("reader"));
        assert_eq!(config.bearer_role, None);
        assert_eq!(config.jwks_refetch_interval, 60);

        // Stored as JSON and read back; older stored forms get the defaults.
        let stored = serde_json::to_value(&config).unwrap();
        assert_eq!(serde_json::from_value::<JwtConfig>(stored).unwrap(), config);
        let old: JwtConfig =
            serde_json::from_value(serde_json::json!({"jwks_url": "https://x.example/keys"}))
                .unwrap();
        assert_eq!(old.jwks_refetch_interval, DEFAULT_JWKS_REFETCH_INTERVAL);
    }

    #[test]
    fn a_config_with_a_url() {
        let config = JwtConfig::from_input(input(serde_json::json!({
            "oidc_discovery_url": "https://idp.example/realms/x",
        })))
        .unwrap();
        assert_eq!(
            config.oidc_discovery_url.as_deref(),
            Some("https://idp.example/realms/x")
        );
        assert_eq!(config.jwks_refetch_interval, DEFAULT_JWKS_REFETCH_INTERVAL);
        let config = JwtConfig::from_input(input(serde_json::json!({
            "jwks_url": "https://idp.example/jwks.json",
        })))
        .unwrap();
        assert_eq!(
            config.jwks_url.as_deref(),
            Some("https://idp.example/jwks.json")
        );
    }

    #[test]
    fn bound_issuer_must_agree_with_discovery() {
        refused(
            serde_json::json!({"oidc_discovery_url": "https://a.example", "bound_issuer": "https://b.example"}),
            "bound_issuer must equal oidc_discovery_url",
        );
        JwtConfig::from_input(input(serde_json::json!({
            "oidc_discovery_url": "https://a.example", "bound_issuer": "https://a.example",
        })))
        .unwrap();
    }

    #[test]
    fn exactly_one_key_source() {
        let one = "exactly one of 'jwt_validation_pubkeys', 'jwks_url' or 'oidc_discovery_url'";
        refused(serde_json::json!({}), one);
        refused(serde_json::json!({"jwks_url": ""}), one);
        refused(
            serde_json::json!({"jwks_url": "https://a.example/k", "oidc_discovery_url": "https://a.example"}),
            one,
        );
        refused(
            serde_json::json!({"jwks_url": "https://a.example/k", "jwt_validation_pubkeys": [ts::p256().public_pem]}),
            one,
        );
    }

    #[test]
    fn urls_must_be_https() {
        for url in [
            "http://idp.example",
            "http://127.0.0.1:8200",
            "ftp://idp.example",
            "not a url",
            "https://user:pw@idp.example",
            "https://idp.example/#x",
        ] {
            refused(
                serde_json::json!({"oidc_discovery_url": url}),
                "oidc_discovery_url",
            );
            refused(serde_json::json!({"jwks_url": url}), "jwks_url");
        }
    }

    #[test]
    fn ca_pems_must_fit_their_source() {
        refused(
            serde_json::json!({"jwks_url": "https://a.example/k", "oidc_discovery_ca_pem": ts::CA_PEM}),
            "only used with oidc_discovery_url",
        );
        refused(
            serde_json::json!({"oidc_discovery_url": "https://a.example", "jwks_ca_pem": ts::CA_PEM}),
            "only used with jwks_url",
        );
        JwtConfig::from_input(input(
            serde_json::json!({"jwks_url": "https://a.example/k", "jwks_ca_pem": ts::CA_PEM}),
        ))
        .unwrap();
    }

    #[test]
    fn public_keys_must_parse() {
        refused(
            serde_json::json!({"jwt_validation_pubkeys": [ts::rsa().public_pem, "junk"]}),
            "jwt_validation_pubkeys[1]",
        );
        refused(
            serde_json::json!({"jwt_validation_pubkeys": [ts::rsa().private_pem]}),
            "private key",
        );
    }

    #[test]
    fn algorithms_must_be_known_and_asymmetric() {
        let pubkeys = [ts::rsa().public_pem.clone()];
        for alg in ["none", "HS256", "HS512", "ES512", "rs256"] {
            refused(
                serde_json::json!({"jwt_validation_pubkeys": pubkeys, "jwt_supported_algs": [alg]}),
                "jwt_supported_algs",
            );
        }
        refused(
            serde_json::json!({"jwt_validation_pubkeys": pubkeys, "jwt_supported_algs": ["ES256"]}),
            "none of jwt_validation_pubkeys can verify",
        );
    }

    #[test]
    fn unsupported_vault_fields_are_refused() {
        let base = || serde_json::json!({"jwks_url": "https://a.example/k"});
        let mut body = base();
        body["jwks_pairs"] = true.into();
        refused(body, "jwks_pairs");
    }

    #[test]
    fn an_oidc_client_needs_discovery_and_its_secret_a_client() {
        let mut body =
            serde_json::json!({"jwks_url": "https://a.example/k", "oidc_client_id": "web"});
        refused(body.clone(), "oidc_client_id needs oidc_discovery_url");
        body = serde_json::json!({"oidc_discovery_url": "https://idp.example", "oidc_client_secret": "s"});
        refused(body, "oidc_client_secret needs oidc_client_id");
        body = serde_json::json!({"oidc_discovery_url": "https://idp.example", "oidc_client_id": "a\u{1}"});
        refused(body, "oidc_client_id");
        let input: JwtConfigInput = serde_json::from_value(serde_json::json!({
            "oidc_discovery_url": "https://idp.example",
            "oidc_client_id": " web ",
            "oidc_client_secret": "hunter2",
        }))
        .unwrap();
        assert!(!format!("{input:?}").contains("hunter2"), "{input:?}");
        let config = JwtConfig::from_input(input).unwrap();
        assert_eq!(config.oidc_client_id.as_deref(), Some("web"));
        assert!(!serde_json::to_string(&config).unwrap().contains("hunter2"));
    }

    #[test]
    fn role_names_and_interval_are_checked() {
        let base = || serde_json::json!({"jwks_url": "https://a.example/k"});
        let mut body = base();
        body["default_role"] = "bad name!".into();
        refused(body, "default_role");
        let mut body = base();
        body["bearer_role"] = "-x".into();
        refused(body, "bearer_role");
        for interval in [0, 48 * 3600] {
            let mut body = base();
            body["jwks_refetch_interval"] = interval.into();
            refused(body, "jwks_refetch_interval");
        }
    }
}
