//! Keys and tokens for the unit tests: key pairs generated once per test process (RSA
//! generation is slow unoptimised), JWKs of their public halves, and tokens with any header.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc, Mutex, OnceLock,
};

use async_trait::async_trait;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use jsonwebtoken::{Algorithm, EncodingKey};
use p256::{
    elliptic_curve::sec1::ToEncodedPoint,
    pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding},
};
use rsa::{pkcs1::EncodeRsaPublicKey, traits::PublicKeyParts};
use serde_json::{json, Value};

use super::{Discovered, IdentityProviders, JwksFetcher, ProviderError};

/// A self-signed CA certificate (P-256, made once with `openssl req -x509`), for CA PEM
/// fields; nothing connects to it.
pub(crate) const CA_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIBoTCCAUegAwIBAgIUC4krluROW/4n6tq6TXQky96Y5agwCgYIKoZIzj0EAwIw\nJTEjMCEGA1UEAwwaa2V5YnJva2VyIGp3dCB1bml0IHRlc3QgQ0EwIBcNMjYxMTIz\nMDE1MDM1WhgPMjEyNjEwMzAwMTUwMzVaMCUxIzAhBgNVBAMMGmtleWJyb2tlciBq\nd3QgdW5pdCB0ZXN0IENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEAhOtTIgC\nH/CCDy0Wj5plwothv95/oFWUFeENkLfFhQRVYkn06hatwIpRMqXKYxJHAbQ6qxSc\nYUa/wKUJdvOxIaNTMFEwHQYDVR0OBBYEFEmE91C5uiExi2EVoa3sWaYQean0MB8G\nA1UdIwQYMBaAFEmE91C5uiExi2EVoa3sWaYQean0MA8GA1UdEwEB/wQFMAMBAf8w\nCgYIKoZIzj0EAwIDSAAwRQIhAJcYGoiGeMu9IbxTkonLPtpDnRYwomQv6eQhf8ih\nswe8AiAyoEPN+ikVGopShgN48LMlrHOhD/PCxi/NZzW67+ipoQ==\n-----END CERTIFICATE-----\n";

/// A key pair for tests.
pub(crate) struct TestKey {
    /// Its natural algorithm (RS256, ES256, ES384, EdDSA).
    pub algorithm: Algorithm,
    /// SubjectPublicKeyInfo PEM.
    pub public_pem: String,
    /// PKCS#1 PEM of an RSA key (empty for others).
    pub public_pkcs1_pem: String,
    /// PKCS#8 PEM of the private key.
    pub private_pem: String,
    jwk_members: Value,
    encoding: EncodingKey,
}

impl TestKey {
    /// The public JWK, with a `kid` if given.
    pub(crate) fn jwk(&self, kid: Option<&str>) -> Value {
        let mut jwk = self.jwk_members.clone();
        if let Some(kid) = kid {
            jwk["kid"] = kid.into();
        }
        jwk
    }

    /// A raw signature.
    pub(crate) fn sign_raw(&self, message: &[u8], algorithm: Algorithm) -> Vec<u8> {
        let signature = jsonwebtoken::crypto::sign(message, &self.encoding, algorithm).unwrap();
        URL_SAFE_NO_PAD.decode(signature).unwrap()
    }

    /// A compact JWS of `claims` with exactly `header` (its `alg` names the algorithm used).
    pub(crate) fn sign(&self, header: &Value, claims: &Value) -> String {
        let algorithm: Algorithm = header["alg"].as_str().unwrap().parse().unwrap();
        let header = URL_SAFE_NO_PAD.encode(header.to_string());
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let input = format!("{header}.{claims}");
        let signature = URL_SAFE_NO_PAD.encode(self.sign_raw(input.as_bytes(), algorithm));
        format!("{input}.{signature}")
    }

    /// A token of `claims` signed with the key's natural algorithm, with an optional `kid`.
    pub(crate) fn token(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut header = json!({"alg": format!("{:?}", self.algorithm), "typ": "JWT"});
        if let Some(kid) = kid {
            header["kid"] = kid.into();
        }
        self.sign(&header, claims)
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn new_rsa(bits: usize) -> rsa::RsaPrivateKey {
    rsa::RsaPrivateKey::new(&mut rand::thread_rng(), bits).unwrap()
}

fn rsa_key(private: rsa::RsaPrivateKey) -> TestKey {
    let public = private.to_public_key();
    let private_pem = EncodePrivateKey::to_pkcs8_pem(&private, LineEnding::LF)
        .unwrap()
        .to_string();
    TestKey {
        algorithm: Algorithm::RS256,
        public_pem: EncodePublicKey::to_public_key_pem(&public, LineEnding::LF).unwrap(),
        public_pkcs1_pem: public.to_pkcs1_pem(LineEnding::LF).unwrap(),
        jwk_members: json!({"kty": "RSA", "n": b64(&public.n().to_bytes_be()), "e": b64(&public.e().to_bytes_be())}),
        encoding: EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap(),
        private_pem,
    }
}

/// An RSA 2048 key.
pub(crate) fn rsa() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| rsa_key(new_rsa(2048)))
}

/// Another RSA 2048 key.
pub(crate) fn rsa_other() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| rsa_key(new_rsa(2048)))
}

/// The public PEM of an RSA key too small to be accepted.
pub(crate) fn small_rsa_public_pem() -> String {
    let public = new_rsa(1024).to_public_key();
    EncodePublicKey::to_public_key_pem(&public, LineEnding::LF).unwrap()
}

/// A P-256 key.
pub(crate) fn p256() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let secret = p256::SecretKey::random(&mut rand::thread_rng());
        let point = secret.public_key().to_encoded_point(false);
        let private_pem = secret.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
        TestKey {
            algorithm: Algorithm::ES256,
            public_pem: secret.public_key().to_public_key_pem(LineEnding::LF).unwrap(),
            public_pkcs1_pem: String::new(),
            jwk_members: json!({"kty": "EC", "crv": "P-256", "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())}),
            encoding: EncodingKey::from_ec_pem(private_pem.as_bytes()).unwrap(),
            private_pem,
        }
    })
}

/// A P-384 key.
pub(crate) fn p384() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let secret = p384::SecretKey::random(&mut rand::thread_rng());
        let point = secret.public_key().to_encoded_point(false);
        let private_pem = secret.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
        TestKey {
            algorithm: Algorithm::ES384,
            public_pem: secret.public_key().to_public_key_pem(LineEnding::LF).unwrap(),
            public_pkcs1_pem: String::new(),
            jwk_members: json!({"kty": "EC", "crv": "P-384", "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())}),
            encoding: EncodingKey::from_ec_pem(private_pem.as_bytes()).unwrap(),
            private_pem,
        }
    })
}

/// An Ed25519 key.
pub(crate) fn ed25519() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let signing = ed25519_dalek::SigningKey::generate(&mut rand::thread_rng());
        let private_pem = signing.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
        TestKey {
            algorithm: Algorithm::EdDSA,
            public_pem: signing
                .verifying_key()
                .to_public_key_pem(LineEnding::LF)
                .unwrap(),
            public_pkcs1_pem: String::new(),
            jwk_members: json!({"kty": "OKP", "crv": "Ed25519", "x": b64(signing.verifying_key().as_bytes())}),
            encoding: EncodingKey::from_ed_pem(private_pem.as_bytes()).unwrap(),
            private_pem,
        }
    })
}

/// Serves the JWKS it is given, counting fetches; `None` makes a fetch fail.
#[derive(Default)]
pub struct StubFetcher {
    /// What the next fetch returns.
    pub document: Mutex<Option<Value>>,
    /// Fetches so far.
    pub fetches: AtomicUsize,
    /// Time each fetch takes.
    pub delay: Option<std::time::Duration>,
}

#[async_trait]
impl JwksFetcher for Arc<StubFetcher> {
    async fn fetch(&self) -> Result<Vec<u8>, String> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
        self.document
            .lock()
            .unwrap()
            .as_ref()
            .map(|d| d.to_string().into_bytes())
            .ok_or_else(|| "connection refused".to_owned())
    }
}

/// A stub serving these JWKs.
pub(crate) fn stub(keys: Vec<Value>) -> Arc<StubFetcher> {
    Arc::new(StubFetcher {
        document: Mutex::new(Some(json!({ "keys": keys }))),
        ..Default::default()
    })
}

/// Makes the stub serve these JWKs from now on.
pub(crate) fn serve(stub: &StubFetcher, keys: Vec<Value>) {
    *stub.document.lock().unwrap() = Some(json!({ "keys": keys }));
}

/// Identity providers for tests: every JWKS URL is served by `jwks`; discovery finds `issuer`
/// (and fails without one); CA certificates other than [`CA_PEM`] are refused.
#[derive(Default)]
pub(crate) struct StubProviders {
    /// The fetcher of every JWKS URL.
    pub jwks: Arc<StubFetcher>,
    /// What discovery finds; `None` makes it fail.
    pub issuer: Option<String>,
    /// The ID token each authorization code exchanges for (once).
    pub id_tokens: Mutex<std::collections::HashMap<String, String>>,
}

fn trusted(ca_pem: Option<&str>) -> Result<(), ProviderError> {
    match ca_pem {
        // Configurations keep text fields trimmed.
        Some(pem) if pem != CA_PEM.trim() => Err(ProviderError::CaCertificates(
            "no PEM certificate found".to_owned(),
        )),
        _ => Ok(()),
    }
}

#[async_trait]
impl IdentityProviders for StubProviders {
    async fn discover(&self, url: &str, ca_pem: Option<&str>) -> Result<Discovered, ProviderError> {
        trusted(ca_pem)?;
        let issuer = self
            .issuer
            .clone()
            .ok_or_else(|| ProviderError::Fetch("connection refused".to_owned()))?;
        Ok(Discovered {
            issuer,
            jwks_uri: format!("{url}/jwks"),
            authorization_endpoint: Some(format!("{url}/auth")),
            token_endpoint: Some(format!("{url}/token")),
        })
    }

    async fn exchange_code(
        &self,
        exchange: &crate::auth::jwt::CodeExchange<'_>,
    ) -> Result<zeroize::Zeroizing<String>, ProviderError> {
        trusted(exchange.ca_pem)?;
        self.id_tokens
            .lock()
            .unwrap()
            .remove(exchange.code)
            .map(zeroize::Zeroizing::new)
            .ok_or_else(|| ProviderError::Fetch("invalid_grant".to_owned()))
    }

    fn jwks_fetcher(
        &self,
        _url: &str,
        ca_pem: Option<&str>,
    ) -> Result<Box<dyn JwksFetcher>, ProviderError> {
        trusted(ca_pem)?;
        Ok(Box::new(self.jwks.clone()))
    }
}
