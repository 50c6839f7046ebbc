//! The verifier of one configuration: its keys (static, or a JWKS cache), its expected
//! issuers, and the order of the checks: size and form, header, key and algorithm,
//! signature, and only then the claims.

use std::collections::BTreeMap;

use super::{
    claims::{self, Refusal, BAD_SIGNATURE, MALFORMED},
    jwks::{JwksCache, JwksFetcher},
    keys::{algorithm_name, VerificationKey},
    token, Discovered, IdentityProviders, JwtConfig, JwtRole, ProviderError,
};
use crate::error::{Error, Result};

/// Longest JWT accepted, in bytes, checked before any decoding.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// What a valid token says, for the login that issues a broker token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedJwt {
    /// The role's `user_claim` (a number is given as its decimal text).
    pub user: String,
    /// The role's `groups_claim` entries (empty without one).
    pub groups: Vec<String>,
    /// The role's `claim_mappings`, by metadata key (never `role`: the caller adds it).
    pub metadata: BTreeMap<String, String>,
    /// The token's `exp`, seconds since the epoch (without leeway).
    pub expires_at: i64,
    /// The token's `iss`, when it has one.
    pub issuer: Option<String>,
}

/// What a token is checked as.
#[derive(Clone, Copy)]
enum Expect<'a> {
    /// A JWT presented to `login` or as a bearer token (`jwt` roles).
    Jwt,
    /// The ID token of an OIDC login (`oidc` roles).
    IdToken { client_id: &'a str, nonce: &'a str },
}

enum Keys {
    Static(Vec<VerificationKey>),
    Jwks(JwksCache),
}

/// Validates tokens for one mount's configuration; holds its key material and JWKS cache.
/// Build a new one when the configuration changes (discovery runs only here).
pub struct Verifier {
    keys: Keys,
    /// Every one of these must equal `iss`: `bound_issuer`, and the discovered issuer.
    issuers: Vec<String>,
    /// What discovery found (with `oidc_discovery_url`): the OIDC flow's endpoints.
    discovered: Option<Discovered>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = match &self.keys {
            Keys::Static(keys) => format!("{} static keys", keys.len()),
            Keys::Jwks(cache) => format!("JWKS {:?}", cache.kids()),
        };
        f.debug_struct("Verifier")
            .field("keys", &keys)
            .field("issuers", &self.issuers)
            .finish()
    }
}

/// A fetch from the identity provider failed or gave nothing usable. The caller (who may
/// be a tenant's admin pointing the broker at any address) learns only that; the cause,
/// which may name hosts, addresses, ports, certificates or what an address answered, goes
/// to the operator's log.
fn fetch_failed(what: &str, url: &str, cause: &str) -> Error {
    tracing::warn!(url, %cause, "{what} could not be fetched or used");
    Error::invalid(format!(
        "error checking {what}: the identity provider's document could not be fetched or \
         used (the broker's log has the cause)"
    ))
}

/// What the caller learns of a provider's error: what is wrong with the CA certificates they
/// gave in `ca_field`, or only that fetching `what` failed.
fn provider_failed(what: &str, ca_field: &str, url: &str, error: ProviderError) -> Error {
    match error {
        ProviderError::CaCertificates(reason) => Error::invalid(format!("{ca_field}: {reason}")),
        ProviderError::Fetch(cause) => fetch_failed(what, url, &cause),
    }
}

impl Verifier {
    /// The verifier of `config`. Static keys are parsed; with `jwks_url` the JWKS is fetched,
    /// with `oidc_discovery_url` discovery runs and then the JWKS is fetched, both through
    /// `providers`. A configuration whose keys cannot be had is refused (400): with the reason
    /// when its CA certificates cannot be used, generically when a fetch failed.
    pub async fn new(config: &JwtConfig, providers: &dyn IdentityProviders) -> Result<Self> {
        config.check()?;
        if let Some(url) = &config.oidc_discovery_url {
            let ca_pem = config.oidc_discovery_ca_pem.as_deref();
            let failed =
                |error| provider_failed("oidc_discovery_url", "oidc_discovery_ca_pem", url, error);
            let discovered = providers.discover(url, ca_pem).await.map_err(failed)?;
            let fetcher = providers
                .jwks_fetcher(&discovered.jwks_uri, ca_pem)
                .map_err(failed)?;
            let mut verifier =
                Self::with_fetcher(config, fetcher, Some(discovered.issuer.clone())).await?;
            verifier.discovered = Some(discovered);
            return Ok(verifier);
        }
        if let Some(url) = &config.jwks_url {
            let fetcher = providers
                .jwks_fetcher(url, config.jwks_ca_pem.as_deref())
                .map_err(|error| provider_failed("the JWKS", "jwks_ca_pem", url, error))?;
            return Self::with_fetcher(config, fetcher, None).await;
        }
        Ok(Self {
            keys: Keys::Static(config.static_keys()?),
            issuers: config.bound_issuer.iter().cloned().collect(),
            discovered: None,
        })
    }

    /// A verifier whose keys come from `fetcher` (tests, other transports) instead of
    /// `config`'s URL; `discovered_issuer` is what discovery found, if it ran. The first
    /// fetch happens here: refused (400) if it fails or yields no usable key.
    pub async fn with_fetcher(
        config: &JwtConfig,
        fetcher: Box<dyn JwksFetcher>,
        discovered_issuer: Option<String>,
    ) -> Result<Self> {
        let cache = JwksCache::new(
            fetcher,
            config.supported_algorithms()?,
            config.jwks_refetch_interval,
        )
        .await
        .map_err(|cause| {
            let url = config
                .jwks_url
                .as_deref()
                .or(config.oidc_discovery_url.as_deref());
            fetch_failed("the JWKS", url.unwrap_or_default(), &cause)
        })?;
        let mut issuers: Vec<String> = config.bound_issuer.iter().cloned().collect();
        if let Some(issuer) = discovered_issuer {
            if !issuers.contains(&issuer) {
                issuers.push(issuer);
            }
        }
        Ok(Self {
            keys: Keys::Jwks(cache),
            issuers,
            discovered: None,
        })
    }

    /// What discovery found, when the configuration has `oidc_discovery_url`.
    pub fn discovered(&self) -> Option<&Discovered> {
        self.discovered.as_ref()
    }

    /// The issuers a token's `iss` must equal (`bound_issuer`, the discovered issuer).
    pub fn expected_issuers(&self) -> &[String] {
        &self.issuers
    }

    /// Validates `token` for `role` at time `now` (seconds since the epoch). Every refusal is
    /// [`Error::InvalidRequest`] with a short message; the precise reason is logged at debug
    /// level (never the token).
    pub async fn verify(&self, token: &str, role: &JwtRole, now: i64) -> Result<VerifiedJwt> {
        self.verify_as(token, role, now, Expect::Jwt).await
    }

    /// Validates the ID token of an OIDC login for an `oidc` role: as [`Verifier::verify`],
    /// but its audience is `client_id` (the mount's OAuth client) and its `nonce` must be
    /// the login's.
    pub async fn verify_id_token(
        &self,
        token: &str,
        role: &JwtRole,
        now: i64,
        client_id: &str,
        nonce: &str,
    ) -> Result<VerifiedJwt> {
        self.verify_as(token, role, now, Expect::IdToken { client_id, nonce })
            .await
    }

    async fn verify_as(
        &self,
        token: &str,
        role: &JwtRole,
        now: i64,
        expect: Expect<'_>,
    ) -> Result<VerifiedJwt> {
        match self.check(token, role, now, expect).await {
            Ok(verified) => Ok(verified),
            Err(refusal) => {
                tracing::debug!(reason = %refusal.reason, "JWT refused");
                Err(Error::invalid(refusal.message))
            }
        }
    }

    async fn check(
        &self,
        token: &str,
        role: &JwtRole,
        now: i64,
        expect: Expect<'_>,
    ) -> std::result::Result<VerifiedJwt, Refusal> {
        let role_type = match expect {
            Expect::Jwt => "jwt",
            Expect::IdToken { .. } => "oidc",
        };
        if role.role_type != role_type {
            return Err(Refusal::new(
                MALFORMED,
                format!(
                    "role type {:?} cannot log in with a {}",
                    role.role_type,
                    match expect {
                        Expect::Jwt => "JWT",
                        Expect::IdToken { .. } => "provider's ID token",
                    }
                ),
            ));
        }
        let parsed =
            token::parse(token, MAX_TOKEN_LEN).map_err(|reason| Refusal::new(MALFORMED, reason))?;
        let candidates = match &self.keys {
            Keys::Static(keys) => {
                // PEM keys have no kid: every key of a type allowing the algorithm is tried.
                let fitting: Vec<VerificationKey> = keys
                    .iter()
                    .filter(|k| k.allows(parsed.algorithm))
                    .cloned()
                    .collect();
                if fitting.is_empty() {
                    return Err(Refusal::new(
                        BAD_SIGNATURE,
                        format!(
                            "no configured key allows {}",
                            algorithm_name(parsed.algorithm)
                        ),
                    ));
                }
                fitting
            }
            Keys::Jwks(cache) => cache
                .keys_for(parsed.kid.as_deref(), parsed.algorithm, now)
                .await
                .map_err(|reason| Refusal::new(BAD_SIGNATURE, reason))?,
        };
        let verified = candidates
            .iter()
            .any(|key| key.verify(parsed.signing_input, &parsed.signature, parsed.algorithm));
        if !verified {
            return Err(Refusal::new(
                BAD_SIGNATURE,
                format!(
                    "the {} signature does not verify with {} candidate key(s)",
                    algorithm_name(parsed.algorithm),
                    candidates.len()
                ),
            ));
        }
        let claims = parsed
            .claims()
            .map_err(|reason| Refusal::new(MALFORMED, reason))?;
        let accepted = match expect {
            Expect::Jwt => claims::check(&claims, role, &self.issuers, now)?,
            Expect::IdToken { client_id, nonce } => {
                claims::check_id_token(&claims, role, &self.issuers, now, client_id, nonce)?
            }
        };
        Ok(VerifiedJwt {
            user: accepted.user,
            groups: accepted.groups,
            metadata: accepted.metadata,
            expires_at: accepted.expires_at,
            issuer: accepted.issuer,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
    use serde_json::{json, Value};

    use super::*;
    use crate::auth::jwt::{
        test_support::{self as ts, serve, stub, TestKey},
        JwtConfigInput,
    };

    const NOW: i64 = 1_700_000_000;
    const ISSUER: &str = "https://idp.example";

    fn claims() -> Value {
        json!({"iss": ISSUER, "sub": "svc-a", "aud": "api", "iat": NOW - 5, "exp": NOW + 300})
    }

    fn role() -> JwtRole {
        JwtRole::apply(
            None,
            serde_json::from_value(json!({"bound_audiences": ["api"]})).unwrap(),
        )
        .unwrap()
    }

    fn config(fields: Value) -> JwtConfig {
        let input: JwtConfigInput = serde_json::from_value(fields).unwrap();
        JwtConfig::from_input(input).unwrap()
    }

    async fn static_verifier(keys: &[&TestKey], extra: Value) -> Verifier {
        let mut fields = json!({
            "jwt_validation_pubkeys": keys.iter().map(|k| k.public_pem.clone()).collect::<Vec<_>>(),
        });
        for (key, value) in extra.as_object().unwrap() {
            fields[key] = value.clone();
        }
        Verifier::new(&config(fields), &ts::StubProviders::default())
            .await
            .unwrap()
    }

    async fn jwks_verifier(
        keys: Vec<Value>,
        extra: Value,
    ) -> (Verifier, std::sync::Arc<ts::StubFetcher>) {
        let mut fields = json!({"jwks_url": "https://idp.example/jwks"});
        for (key, value) in extra.as_object().unwrap() {
            fields[key] = value.clone();
        }
        let stub = stub(keys);
        let verifier = Verifier::with_fetcher(&config(fields), Box::new(stub.clone()), None)
            .await
            .unwrap();
        (verifier, stub)
    }

    async fn refused(verifier: &Verifier, token: &str) -> String {
        match verifier.verify(token, &role(), NOW).await {
            Err(Error::InvalidRequest(message)) => message,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn header(alg: &str, kid: Option<&str>) -> Value {
        let mut header = json!({"alg": alg, "typ": "JWT"});
        if let Some(kid) = kid {
            header["kid"] = kid.into();
        }
        header
    }

    /// An OIDC login's ID token: the client is the audience, the login's nonce is in it, and
    /// every other check of a JWT login holds (issuer, expiry, signature by a known key).
    #[tokio::test]
    async fn an_id_token_is_checked_for_its_client_nonce_issuer_expiry_and_key() {
        const CLIENT: &str = "broker-web";
        const NONCE: &str = "n-0S6_WzA2Mj";
        let (verifier, _stub) = jwks_verifier(
            vec![ts::rsa().jwk(Some("k"))],
            json!({"bound_issuer": ISSUER}),
        )
        .await;
        let oidc_role: JwtRole = JwtRole::apply(
            None,
            serde_json::from_value(json!({
                "allowed_redirect_uris": ["http://localhost:8250/oidc/callback"],
                "user_claim": "email",
            }))
            .unwrap(),
        )
        .unwrap();
        let id_token = |changes: Value| {
            let mut claims = json!({
                "iss": ISSUER, "sub": "u-1", "email": "alice@example.com", "aud": CLIENT,
                "nonce": NONCE, "iat": NOW - 5, "exp": NOW + 300,
            });
            for (key, value) in changes.as_object().unwrap() {
                if value.is_null() {
                    claims.as_object_mut().unwrap().remove(key);
                } else {
                    claims[key] = value.clone();
                }
            }
            ts::rsa().token(Some("k"), &claims)
        };
        let check = |token: String| {
            let verifier = &verifier;
            let role = oidc_role.clone();
            async move {
                verifier
                    .verify_id_token(&token, &role, NOW, CLIENT, NONCE)
                    .await
            }
        };
        let verified = check(id_token(json!({}))).await.unwrap();
        assert_eq!(verified.user, "alice@example.com");
        check(id_token(json!({"aud": ["other", CLIENT], "azp": CLIENT})))
            .await
            .unwrap();
        for (changes, why) in [
            (json!({"nonce": "another login's"}), "wrong nonce"),
            (json!({"nonce": null}), "no nonce"),
            (json!({"aud": "another-client"}), "another client"),
            (
                json!({"aud": [CLIENT, "x"], "azp": "x"}),
                "authorised for another party",
            ),
            (json!({"iss": "https://evil.example"}), "another issuer"),
            (json!({"exp": NOW - 3600, "iat": NOW - 7200}), "expired"),
        ] {
            assert!(
                matches!(
                    check(id_token(changes)).await,
                    Err(Error::InvalidRequest(_))
                ),
                "{why}"
            );
        }
        // Signed by a key the provider does not publish.
        let unknown = ts::p256().token(
            Some("k2"),
            &json!({
                "iss": ISSUER, "sub": "u-1", "email": "a@b", "aud": CLIENT, "nonce": NONCE,
                "iat": NOW - 5, "exp": NOW + 300,
            }),
        );
        assert!(check(unknown).await.is_err(), "unknown key");
        // A JWT role never takes an ID token, nor an oidc role a JWT login.
        assert!(verifier
            .verify_id_token(&id_token(json!({})), &role(), NOW, CLIENT, NONCE)
            .await
            .is_err());
        assert!(verifier
            .verify(&id_token(json!({})), &oidc_role, NOW)
            .await
            .is_err());
    }

    #[tokio::test]
    async fn every_key_type_verifies_with_static_keys() {
        let keys = [ts::rsa(), ts::p256(), ts::p384(), ts::ed25519()];
        let verifier = static_verifier(&keys, json!({"bound_issuer": ISSUER})).await;
        for key in keys {
            let verified = verifier
                .verify(&key.token(None, &claims()), &role(), NOW)
                .await
                .unwrap();
            assert_eq!(verified.user, "svc-a");
            assert_eq!(verified.expires_at, NOW + 300);
            assert_eq!(verified.issuer.as_deref(), Some(ISSUER));
        }
        // RSA keys verify every RSA algorithm, PSS included.
        for alg in ["RS384", "RS512", "PS256", "PS384", "PS512"] {
            let token = ts::rsa().sign(&header(alg, None), &claims());
            verifier.verify(&token, &role(), NOW).await.unwrap();
        }
    }

    #[tokio::test]
    async fn an_unknown_key_or_a_changed_payload_is_refused() {
        let verifier = static_verifier(&[ts::rsa()], json!({})).await;
        let control = ts::rsa().token(None, &claims());
        verifier.verify(&control, &role(), NOW).await.unwrap();

        let other = ts::rsa_other().token(None, &claims());
        assert_eq!(refused(&verifier, &other).await, BAD_SIGNATURE);

        let mut changed = claims();
        changed["sub"] = "admin".into();
        let (header, _, signature) = {
            let parts: Vec<&str> = control.split('.').collect();
            (
                parts[0].to_owned(),
                parts[1].to_owned(),
                parts[2].to_owned(),
            )
        };
        let forged = format!(
            "{header}.{}.{signature}",
            URL_SAFE_NO_PAD.encode(changed.to_string())
        );
        assert_eq!(refused(&verifier, &forged).await, BAD_SIGNATURE);
    }

    #[tokio::test]
    async fn the_length_is_capped() {
        let verifier = static_verifier(&[ts::rsa()], json!({})).await;
        let mut big = claims();
        big["pad"] = "x".repeat(MAX_TOKEN_LEN).into();
        let token = ts::rsa().token(None, &big);
        assert_eq!(refused(&verifier, &token).await, MALFORMED);
        let mut fits = claims();
        fits["pad"] = "x".repeat(MAX_TOKEN_LEN / 2).into();
        verifier
            .verify(&ts::rsa().token(None, &fits), &role(), NOW)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn jwe_and_nested_tokens_are_refused() {
        let verifier = static_verifier(&[ts::rsa()], json!({})).await;
        let jwe = "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a2V5.aXY.Y2lwaGVy.dGFn";
        assert_eq!(refused(&verifier, jwe).await, MALFORMED);
        let mut nested = header("RS256", None);
        nested["cty"] = "JWT".into();
        let token = ts::rsa().sign(&nested, &claims());
        assert_eq!(refused(&verifier, &token).await, MALFORMED);
        // Another content type is no reason to refuse.
        let mut other = header("RS256", None);
        other["cty"] = "json".into();
        verifier
            .verify(&ts::rsa().sign(&other, &claims()), &role(), NOW)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn crit_is_refused() {
        let verifier = static_verifier(&[ts::rsa()], json!({})).await;
        let mut critical = header("RS256", None);
        critical["crit"] = json!(["b64"]);
        critical["b64"] = false.into();
        let token = ts::rsa().sign(&critical, &claims());
        assert_eq!(refused(&verifier, &token).await, MALFORMED);
    }

    #[tokio::test]
    async fn key_headers_are_never_used() {
        let verifier = static_verifier(&[ts::rsa()], json!({})).await;
        // A token signed by the attacker's key, which its header offers every way it can.
        let mut offered = header("ES256", Some("attacker"));
        offered["jwk"] = ts::p256().jwk(Some("attacker"));
        offered["jku"] = "https://attacker.example/jwks".into();
        offered["x5u"] = "https://attacker.example/cert".into();
        offered["x5c"] = json!(["MIIB"]);
        let token = ts::p256().sign(&offered, &claims());
        assert_eq!(refused(&verifier, &token).await, BAD_SIGNATURE);
        // The same headers on a token of the configured key change nothing.
        let mut harmless = offered.clone();
        harmless["alg"] = "RS256".into();
        verifier
            .verify(&ts::rsa().sign(&harmless, &claims()), &role(), NOW)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn none_and_hmac_are_refused() {
        let verifier = static_verifier(&[ts::rsa()], json!({})).await;
        let encode = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let unsigned = format!("{}.{}.", encode(&json!({"alg": "none"})), encode(&claims()));
        assert_eq!(refused(&verifier, &unsigned).await, MALFORMED);
        let unsigned = format!(
            "{}.{}.c2ln",
            encode(&json!({"alg": "none"})),
            encode(&claims())
        );
        assert_eq!(refused(&verifier, &unsigned).await, MALFORMED);
        // The classic confusion: HS256 keyed with the RSA public key's PEM.
        let input = format!("{}.{}", encode(&json!({"alg": "HS256"})), encode(&claims()));
        let hmac_key = jsonwebtoken::EncodingKey::from_secret(ts::rsa().public_pem.as_bytes());
        let signature =
            jsonwebtoken::crypto::sign(input.as_bytes(), &hmac_key, jsonwebtoken::Algorithm::HS256)
                .unwrap();
        let confused = format!("{input}.{signature}");
        assert_eq!(refused(&verifier, &confused).await, MALFORMED);
    }

    #[tokio::test]
    async fn the_algorithm_must_fit_the_key_type() {
        // An EC key signs, but the only configured key is RSA: ES256 is not tried with it.
        let verifier = static_verifier(&[ts::rsa()], json!({})).await;
        let token = ts::p256().token(None, &claims());
        assert_eq!(refused(&verifier, &token).await, BAD_SIGNATURE);
        // A P-384 key does not verify ES256, a P-256 key not ES384.
        let verifier = static_verifier(&[ts::p256()], json!({})).await;
        let token = ts::p384().token(None, &claims());
        assert_eq!(refused(&verifier, &token).await, BAD_SIGNATURE);
    }

    #[tokio::test]
    async fn supported_algs_narrow_static_keys() {
        let verifier = static_verifier(
            &[ts::rsa(), ts::ed25519()],
            json!({"jwt_supported_algs": ["RS256"]}),
        )
        .await;
        verifier
            .verify(&ts::rsa().token(None, &claims()), &role(), NOW)
            .await
            .unwrap();
        let pss = ts::rsa().sign(&header("PS256", None), &claims());
        assert_eq!(refused(&verifier, &pss).await, BAD_SIGNATURE);
        let ed = ts::ed25519().token(None, &claims());
        assert_eq!(refused(&verifier, &ed).await, BAD_SIGNATURE);
    }

    #[tokio::test]
    async fn jwks_keys_by_kid() {
        let (verifier, _) = jwks_verifier(
            vec![ts::rsa().jwk(Some("a")), ts::p256().jwk(Some("b"))],
            json!({}),
        )
        .await;
        verifier
            .verify(&ts::rsa().token(Some("a"), &claims()), &role(), NOW)
            .await
            .unwrap();
        verifier
            .verify(&ts::p256().token(Some("b"), &claims()), &role(), NOW)
            .await
            .unwrap();
        // Signed by the key of kid "a" but naming "b": b is EC and does not allow RS256.
        let token = ts::rsa().token(Some("b"), &claims());
        assert_eq!(refused(&verifier, &token).await, BAD_SIGNATURE);
        // No kid, one key allowing the algorithm: that one.
        verifier
            .verify(&ts::p256().token(None, &claims()), &role(), NOW)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_kid_names_exactly_its_key() {
        let (verifier, _) = jwks_verifier(
            vec![ts::rsa().jwk(Some("a")), ts::rsa_other().jwk(Some("b"))],
            json!({}),
        )
        .await;
        let token = ts::rsa().token(Some("b"), &claims());
        assert_eq!(refused(&verifier, &token).await, BAD_SIGNATURE);
        // No kid and two RSA keys: refused rather than tried in turn.
        let token = ts::rsa().token(None, &claims());
        assert_eq!(refused(&verifier, &token).await, BAD_SIGNATURE);
    }

    #[tokio::test]
    async fn jwk_alg_and_supported_algs_narrow_jwks_keys() {
        let mut rs256_only = ts::rsa().jwk(Some("a"));
        rs256_only["alg"] = "RS256".into();
        let (verifier, _) = jwks_verifier(
            vec![rs256_only, ts::p256().jwk(Some("e"))],
            json!({"jwt_supported_algs": ["RS256", "PS256"]}),
        )
        .await;
        verifier
            .verify(&ts::rsa().token(Some("a"), &claims()), &role(), NOW)
            .await
            .unwrap();
        let pss = ts::rsa().sign(&header("PS256", Some("a")), &claims());
        assert_eq!(refused(&verifier, &pss).await, BAD_SIGNATURE);
        // The EC key was dropped: ES256 is not supported by the configuration.
        let ec = ts::p256().token(Some("e"), &claims());
        assert_eq!(refused(&verifier, &ec).await, BAD_SIGNATURE);
    }

    #[tokio::test]
    async fn rotation_through_the_verifier() {
        let (verifier, stub) = jwks_verifier(
            vec![ts::rsa().jwk(Some("old"))],
            json!({"jwks_refetch_interval": 60}),
        )
        .await;
        serve(&stub, vec![ts::rsa_other().jwk(Some("new"))]);
        verifier
            .verify(&ts::rsa_other().token(Some("new"), &claims()), &role(), NOW)
            .await
            .unwrap();
        assert_eq!(stub.fetches.load(Ordering::SeqCst), 2);
        // The old key is gone from the new set.
        let old = ts::rsa().token(Some("old"), &claims());
        assert_eq!(refused(&verifier, &old).await, BAD_SIGNATURE);
        assert_eq!(stub.fetches.load(Ordering::SeqCst), 2, "rate-limited");
    }

    #[tokio::test]
    async fn a_config_whose_keys_cannot_be_fetched_is_refused() {
        let failing = std::sync::Arc::new(ts::StubFetcher::default());
        let config = config(json!({"jwks_url": "https://idp.example/jwks"}));
        match Verifier::with_fetcher(&config, Box::new(failing), None).await {
            // The caller learns that the keys could not be had, not why (the log says).
            Err(Error::InvalidRequest(message)) => {
                assert!(message.contains("could not be fetched"), "{message}");
                assert!(!message.contains("connection refused"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn keys_come_through_the_identity_providers() {
        let providers = ts::StubProviders {
            jwks: stub(vec![ts::rsa().jwk(Some("k"))]),
            issuer: Some(ISSUER.to_owned()),
            ..Default::default()
        };
        let token = ts::rsa().token(Some("k"), &claims());
        let discovery =
            config(json!({"oidc_discovery_url": ISSUER, "oidc_discovery_ca_pem": ts::CA_PEM}));
        let verifier = Verifier::new(&discovery, &providers).await.unwrap();
        assert_eq!(verifier.expected_issuers(), [ISSUER]);
        verifier.verify(&token, &role(), NOW).await.unwrap();
        let jwks = config(json!({"jwks_url": "https://idp.example/jwks"}));
        let verifier = Verifier::new(&jwks, &providers).await.unwrap();
        assert!(verifier.expected_issuers().is_empty());
        verifier.verify(&token, &role(), NOW).await.unwrap();
    }

    #[tokio::test]
    async fn a_provider_that_cannot_be_reached_or_trusted_is_refused() {
        let unreachable = ts::StubProviders::default();
        for fields in [
            json!({"oidc_discovery_url": ISSUER}),
            json!({"jwks_url": "https://idp.example/jwks"}),
        ] {
            // The caller learns that the keys could not be had, not why (the log says).
            match Verifier::new(&config(fields.clone()), &unreachable).await {
                Err(Error::InvalidRequest(message)) => {
                    assert!(message.contains("could not be fetched"), "{message}");
                    assert!(!message.contains("connection refused"), "{message}");
                }
                other => panic!("{fields}: {other:?}"),
            }
        }
        // CA certificates that cannot be used: the admin who gave them learns why.
        for (fields, field) in [
            (
                json!({"oidc_discovery_url": ISSUER, "oidc_discovery_ca_pem": "junk"}),
                "oidc_discovery_ca_pem",
            ),
            (
                json!({"jwks_url": "https://idp.example/jwks", "jwks_ca_pem": "junk"}),
                "jwks_ca_pem",
            ),
        ] {
            match Verifier::new(&config(fields.clone()), &unreachable).await {
                Err(Error::InvalidRequest(message)) => {
                    assert_eq!(message, format!("{field}: no PEM certificate found"))
                }
                other => panic!("{fields}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn the_discovered_issuer_binds_iss() {
        let config = config(json!({"jwks_url": "https://idp.example/jwks"}));
        let verifier = Verifier::with_fetcher(
            &config,
            Box::new(stub(vec![ts::rsa().jwk(Some("k"))])),
            Some(ISSUER.to_owned()),
        )
        .await
        .unwrap();
        assert_eq!(verifier.expected_issuers(), [ISSUER]);
        verifier
            .verify(&ts::rsa().token(Some("k"), &claims()), &role(), NOW)
            .await
            .unwrap();
        let mut other = claims();
        other["iss"] = "https://evil.example".into();
        let token = ts::rsa().token(Some("k"), &other);
        assert_eq!(refused(&verifier, &token).await, claims::WRONG_ISSUER);
    }

    #[tokio::test]
    async fn bound_issuer_binds_iss() {
        let verifier = static_verifier(&[ts::rsa()], json!({"bound_issuer": ISSUER})).await;
        let mut other = claims();
        other["iss"] = "https://evil.example".into();
        let token = ts::rsa().token(None, &other);
        assert_eq!(refused(&verifier, &token).await, claims::WRONG_ISSUER);
        // Without bound_issuer, any iss passes (Vault's rule for static keys).
        let verifier = static_verifier(&[ts::rsa()], json!({})).await;
        verifier.verify(&token, &role(), NOW).await.unwrap();
    }

    #[tokio::test]
    async fn claims_are_checked_only_after_the_signature() {
        let verifier = static_verifier(&[ts::rsa()], json!({})).await;
        // An array payload, correctly signed: refused as malformed.
        let array = ts::rsa().sign(&header("RS256", None), &json!(["sub", "svc-a"]));
        assert_eq!(refused(&verifier, &array).await, MALFORMED);
        // An expired token signed by an unknown key: the signature fails first.
        let mut expired = claims();
        expired["exp"] = (NOW - 1000).into();
        let token = ts::rsa_other().token(None, &expired);
        assert_eq!(refused(&verifier, &token).await, BAD_SIGNATURE);
        let token = ts::rsa().token(None, &expired);
        assert_eq!(refused(&verifier, &token).await, claims::EXPIRED);
        // A string exp and a missing iat, correctly signed.
        let mut string_exp = claims();
        string_exp["exp"] = (NOW + 300).to_string().into();
        assert_eq!(
            refused(&verifier, &ts::rsa().token(None, &string_exp)).await,
            MALFORMED
        );
        let mut no_iat = claims();
        no_iat.as_object_mut().unwrap().remove("iat");
        assert_eq!(
            refused(&verifier, &ts::rsa().token(None, &no_iat)).await,
            MALFORMED
        );
    }

    #[tokio::test]
    async fn the_role_is_applied() {
        let verifier = static_verifier(&[ts::rsa()], json!({})).await;
        let role = JwtRole::apply(
            None,
            serde_json::from_value(json!({
                "bound_audiences": ["api"],
                "bound_subject": "svc-a",
                "bound_claims": {"team": "web"},
                "user_claim": "email",
                "groups_claim": "groups",
                "claim_mappings": {"team": "team"},
            }))
            .unwrap(),
        )
        .unwrap();
        let mut good = claims();
        good["email"] = "a@example.com".into();
        good["groups"] = json!(["g1", "g2"]);
        good["team"] = "web".into();
        let verified = verifier
            .verify(&ts::rsa().token(None, &good), &role, NOW)
            .await
            .unwrap();
        assert_eq!(verified.user, "a@example.com");
        assert_eq!(verified.groups, ["g1", "g2"]);
        assert_eq!(
            verified.metadata.get("team").map(String::as_str),
            Some("web")
        );

        let mut wrong_team = good.clone();
        wrong_team["team"] = "data".into();
        let token = ts::rsa().token(None, &wrong_team);
        assert!(verifier.verify(&token, &role, NOW).await.is_err());

        let mut oidc_role = role.clone();
        oidc_role.role_type = "oidc".into();
        assert!(verifier
            .verify(&ts::rsa().token(None, &good), &oidc_role, NOW)
            .await
            .is_err());
    }
}
