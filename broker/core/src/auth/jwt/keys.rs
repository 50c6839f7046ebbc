//! Verification keys: PEM public keys and JSON Web Keys, each with the signing algorithms it
//! may verify. Only asymmetric keys exist here; `none` and HMAC have no key type.

use std::str::FromStr;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use jsonwebtoken::{crypto::rust_crypto::DEFAULT_PROVIDER, Algorithm, DecodingKey};
use rsa::{
    pkcs1::DecodeRsaPublicKey,
    pkcs8::spki::{ObjectIdentifier, SubjectPublicKeyInfoRef},
    traits::PublicKeyParts,
    BigUint, RsaPublicKey,
};
use serde::Deserialize;
use serde_json::Value;

/// Smallest RSA modulus accepted, in bits.
const MIN_RSA_BITS: usize = 2048;

const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// Every algorithm a key here can verify.
pub const ASYMMETRIC_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The name of an algorithm as JOSE writes it (`RS256`, `EdDSA`).
pub fn algorithm_name(algorithm: Algorithm) -> String {
    format!("{algorithm:?}")
}

/// Parses the name of an asymmetric signing algorithm; `none`, HMAC and unknown names are
/// refused with the reason.
pub fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    match name {
        "none" => Err("\"none\" (unsigned tokens) is never accepted".to_owned()),
        "HS256" | "HS384" | "HS512" => Err(format!(
            "{name:?} is symmetric; only asymmetric algorithms are accepted"
        )),
        _ => Algorithm::from_str(name)
            .ok()
            .filter(|a| ASYMMETRIC_ALGORITHMS.contains(a))
            .ok_or_else(|| {
                format!(
                    "{name:?} is not a supported algorithm (supported: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)"
                )
            }),
    }
}

/// The kinds of public key accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// RSA, at least 2048 bits.
    Rsa,
    /// ECDSA on NIST P-256.
    EcP256,
    /// ECDSA on NIST P-384.
    EcP384,
    /// EdDSA on Ed25519.
    Ed25519,
}

impl KeyType {
    /// The algorithms a key of this type can verify.
    pub fn algorithms(self) -> &'static [Algorithm] {
        match self {
            Self::Rsa => &[
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ],
            Self::EcP256 => &[Algorithm::ES256],
            Self::EcP384 => &[Algorithm::ES384],
            Self::Ed25519 => &[Algorithm::EdDSA],
        }
    }
}

/// A public key and the algorithms it may verify.
#[derive(Clone)]
pub struct VerificationKey {
    /// The JWK's `kid` (PEM keys have none).
    pub kid: Option<String>,
    /// Its type.
    pub key_type: KeyType,
    /// The algorithms it may verify: those of its type, narrowed by the JWK's `alg` and by
    /// the configuration's `jwt_supported_algs`.
    pub algorithms: Vec<Algorithm>,
    decoding: DecodingKey,
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .field("key_type", &self.key_type)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

impl VerificationKey {
    fn new(key_type: KeyType, decoding: DecodingKey) -> Result<Self, String> {
        // The crypto provider parses EC and Ed25519 keys when it builds a verifier: build one
        // now so a bad key is refused here rather than failing every login.
        if key_type != KeyType::Rsa {
            if let Some(algorithm) = key_type.algorithms().first() {
                (DEFAULT_PROVIDER.verifier_factory)(algorithm, &decoding)
                    .map_err(|_| "the key is not a valid point of its curve".to_owned())?;
            }
        }
        Ok(Self {
            kid: None,
            key_type,
            algorithms: key_type.algorithms().to_vec(),
            decoding,
        })
    }

    /// Keeps only the algorithms in `allowed` (no-op when `allowed` is empty).
    pub fn narrow(&mut self, allowed: &[Algorithm]) {
        if !allowed.is_empty() {
            self.algorithms.retain(|a| allowed.contains(a));
        }
    }

    /// Whether this key may verify tokens signed with `algorithm`.
    pub fn allows(&self, algorithm: Algorithm) -> bool {
        self.algorithms.contains(&algorithm)
    }

    /// Checks a signature made with `algorithm` over `message`. False when the key does not
    /// allow the algorithm.
    pub fn verify(&self, message: &[u8], signature: &[u8], algorithm: Algorithm) -> bool {
        if !self.allows(algorithm) {
            return false;
        }
        // The provider is named rather than taken from the process-wide default, which
        // panics when crate features leave it ambiguous.
        match (DEFAULT_PROVIDER.verifier_factory)(&algorithm, &self.decoding) {
            Ok(verifier) => verifier.verify(message, &signature.to_vec()).is_ok(),
            Err(_) => false,
        }
    }
}

fn rsa_key(public: &RsaPublicKey) -> Result<VerificationKey, String> {
    let bits = public.n().bits();
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "the RSA key has {bits} bits; at least {MIN_RSA_BITS} are required"
        ));
    }
    VerificationKey::new(
        KeyType::Rsa,
        DecodingKey::from_rsa_raw_components(&public.n().to_bytes_be(), &public.e().to_bytes_be()),
    )
}

fn rsa_from_pkcs1(der: &[u8]) -> Result<VerificationKey, String> {
    let public =
        RsaPublicKey::from_pkcs1_der(der).map_err(|e| format!("invalid RSA public key: {e}"))?;
    rsa_key(&public)
}

fn ec_key(key_type: KeyType, sec1_point: &[u8]) -> Result<VerificationKey, String> {
    VerificationKey::new(key_type, DecodingKey::from_ec_der(sec1_point))
}

fn ed25519_key(raw: &[u8]) -> Result<VerificationKey, String> {
    if raw.len() != 32 {
        return Err("an Ed25519 public key is 32 bytes".to_owned());
    }
    VerificationKey::new(KeyType::Ed25519, DecodingKey::from_ed_der(raw))
}

fn from_spki(der: &[u8]) -> Result<VerificationKey, String> {
    let spki = SubjectPublicKeyInfoRef::try_from(der)
        .map_err(|e| format!("invalid SubjectPublicKeyInfo: {e}"))?;
    let (oid, parameters) = spki
        .algorithm
        .oids()
        .map_err(|e| format!("invalid key algorithm parameters: {e}"))?;
    let key = spki
        .subject_public_key
        .as_bytes()
        .ok_or("invalid public key bit string")?;
    match oid {
        OID_RSA => rsa_from_pkcs1(key),
        OID_EC => match parameters {
            Some(OID_P256) => ec_key(KeyType::EcP256, key),
            Some(OID_P384) => ec_key(KeyType::EcP384, key),
            _ => Err("unsupported elliptic curve (P-256 and P-384 are supported)".to_owned()),
        },
        OID_ED25519 => ed25519_key(key),
        other => Err(format!(
            "unsupported key algorithm {other} (RSA, EC P-256/P-384 and Ed25519 are supported)"
        )),
    }
}

/// Parses one PEM public key: `PUBLIC KEY` (SubjectPublicKeyInfo: RSA, EC P-256/P-384,
/// Ed25519) or `RSA PUBLIC KEY` (PKCS#1).
pub fn from_pem(text: &str) -> Result<VerificationKey, String> {
    let blocks = pem::parse_many(text.trim()).map_err(|e| format!("invalid PEM: {e}"))?;
    let [block] = blocks.as_slice() else {
        return Err(format!(
            "expected exactly one PEM block, found {}",
            blocks.len()
        ));
    };
    match block.tag() {
        "PUBLIC KEY" => from_spki(block.contents()),
        "RSA PUBLIC KEY" => rsa_from_pkcs1(block.contents()),
        "CERTIFICATE" => Err(
            "certificates are not accepted: give the public key (`openssl x509 -pubkey -noout`)"
                .to_owned(),
        ),
        tag if tag.contains("PRIVATE KEY") => {
            Err("this is a private key: give the public key only".to_owned())
        }
        tag => Err(format!("unexpected PEM block {tag:?}: expected PUBLIC KEY")),
    }
}

/// The members of a JWK that matter here (RFC 7517, RFC 7518 §6, RFC 8037).
#[derive(Deserialize)]
struct RawJwk {
    kty: Option<String>,
    #[serde(rename = "use")]
    key_use: Option<String>,
    key_ops: Option<Vec<String>>,
    alg: Option<String>,
    kid: Option<String>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

fn b64(member: &str, value: Option<&String>) -> Result<Vec<u8>, String> {
    let value = value.ok_or_else(|| format!("missing {member:?}"))?;
    URL_SAFE_NO_PAD
        .decode(value.trim_end_matches('='))
        .map_err(|_| format!("{member:?} is not base64url"))
}

fn coordinate(member: &str, value: Option<&String>, len: usize) -> Result<Vec<u8>, String> {
    let bytes = b64(member, value)?;
    if bytes.len() != len {
        return Err(format!("{member:?} must be {len} bytes"));
    }
    Ok(bytes)
}

/// Parses one JWK for signature verification. Keys for encryption (`use` other than `sig`,
/// `key_ops` without `verify`), symmetric keys and unsupported types are refused with the
/// reason.
pub fn from_jwk(value: &Value) -> Result<VerificationKey, String> {
    let jwk: RawJwk =
        serde_json::from_value(value.clone()).map_err(|e| format!("invalid JWK: {e}"))?;
    if jwk.key_use.as_deref().is_some_and(|u| u != "sig") {
        return Err("not a signing key (\"use\" is not \"sig\")".to_owned());
    }
    if jwk
        .key_ops
        .as_ref()
        .is_some_and(|ops| !ops.iter().any(|op| op == "verify"))
    {
        return Err("not a verification key (\"key_ops\" lacks \"verify\")".to_owned());
    }
    let mut key = match (jwk.kty.as_deref(), jwk.crv.as_deref()) {
        (Some("RSA"), _) => {
            let n = b64("n", jwk.n.as_ref())?;
            let e = b64("e", jwk.e.as_ref())?;
            let public = RsaPublicKey::new(BigUint::from_bytes_be(&n), BigUint::from_bytes_be(&e))
                .map_err(|e| format!("invalid RSA key: {e}"))?;
            rsa_key(&public)?
        }
        (Some("EC"), Some(curve @ ("P-256" | "P-384"))) => {
            let (key_type, len) = if curve == "P-256" {
                (KeyType::EcP256, 32)
            } else {
                (KeyType::EcP384, 48)
            };
            let mut point = vec![0x04];
            point.extend(coordinate("x", jwk.x.as_ref(), len)?);
            point.extend(coordinate("y", jwk.y.as_ref(), len)?);
            ec_key(key_type, &point)?
        }
        (Some("OKP"), Some("Ed25519")) => ed25519_key(&coordinate("x", jwk.x.as_ref(), 32)?)?,
        (kty, crv) => {
            return Err(format!(
                "unsupported key type {} {}",
                kty.unwrap_or("(none)"),
                crv.unwrap_or("")
            ))
        }
    };
    if let Some(alg) = jwk.alg.as_deref() {
        let algorithm = parse_algorithm(alg)?;
        if !key.allows(algorithm) {
            return Err(format!("\"alg\" {alg} does not fit the key type"));
        }
        key.algorithms = vec![algorithm];
    }
    key.kid = jwk.kid;
    Ok(key)
}

/// Parses a JWKS document (`{"keys":[…]}`). Keys that cannot verify any of `supported`
/// (all asymmetric algorithms when empty) are skipped and logged at debug level; the set
/// may end up empty.
pub fn parse_jwks(body: &[u8], supported: &[Algorithm]) -> Result<Vec<VerificationKey>, String> {
    let document: Value =
        serde_json::from_slice(body).map_err(|e| format!("the JWKS is not JSON: {e}"))?;
    let entries = document
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("the JWKS has no \"keys\" list")?;
    let mut keys = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        match from_jwk(entry) {
            Ok(mut key) => {
                key.narrow(supported);
                if key.algorithms.is_empty() {
                    tracing::debug!(index, kid = ?key.kid, "JWK skipped: none of jwt_supported_algs fits it");
                } else {
                    keys.push(key);
                }
            }
            Err(reason) => tracing::debug!(index, %reason, "JWK skipped"),
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jwt::test_support::{self as ts, TestKey};

    #[test]
    fn algorithm_names() {
        for name in [
            "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
        ] {
            let algorithm = parse_algorithm(name).unwrap();
            assert_eq!(algorithm_name(algorithm), name);
        }
        for name in [
            "none", "HS256", "HS384", "HS512", "ES512", "rs256", "", "RSA-OAEP",
        ] {
            assert!(parse_algorithm(name).is_err(), "{name}");
        }
    }

    #[test]
    fn pem_keys_of_every_type() {
        let cases = [
            (ts::rsa(), KeyType::Rsa),
            (ts::p256(), KeyType::EcP256),
            (ts::p384(), KeyType::EcP384),
            (ts::ed25519(), KeyType::Ed25519),
        ];
        for (key, key_type) in cases {
            let parsed = from_pem(&key.public_pem).unwrap();
            assert_eq!(parsed.key_type, key_type);
            assert_eq!(parsed.algorithms, key_type.algorithms());
            assert!(parsed.kid.is_none());
        }
        let pkcs1 = from_pem(&ts::rsa().public_pkcs1_pem).unwrap();
        assert_eq!(pkcs1.key_type, KeyType::Rsa);
    }

    #[test]
    fn bad_pems_are_refused() {
        let rsa = ts::rsa();
        let two = format!("{}\n{}", rsa.public_pem, ts::p256().public_pem);
        for (text, expected) in [
            ("", "exactly one"),
            ("not pem", "exactly one"),
            (two.as_str(), "exactly one"),
            (rsa.private_pem.as_str(), "private key"),
            (
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "certificates",
            ),
            (
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                "SubjectPublicKeyInfo",
            ),
        ] {
            let error = from_pem(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
        let small = from_pem(&ts::small_rsa_public_pem()).unwrap_err();
        assert!(small.contains("at least 2048"), "{small}");
    }

    #[test]
    fn signatures_verify_only_with_the_right_key_and_algorithm() {
        let rsa = ts::rsa();
        let key = from_pem(&rsa.public_pem).unwrap();
        let signature = rsa.sign_raw(b"message", Algorithm::RS256);
        assert!(key.verify(b"message", &signature, Algorithm::RS256));
        assert!(!key.verify(b"other", &signature, Algorithm::RS256));
        assert!(!key.verify(b"message", &signature, Algorithm::RS384));
        let other = from_pem(&ts::rsa_other().public_pem).unwrap();
        assert!(!other.verify(b"message", &signature, Algorithm::RS256));

        let mut narrowed = key.clone();
        narrowed.narrow(&[Algorithm::PS256]);
        assert!(!narrowed.verify(b"message", &signature, Algorithm::RS256));
    }

    fn jwk(key: &TestKey, kid: &str) -> Value {
        key.jwk(Some(kid))
    }

    #[test]
    fn jwks_of_every_type() {
        let body = serde_json::json!({"keys": [
            jwk(ts::rsa(), "r"), jwk(ts::p256(), "e256"), jwk(ts::p384(), "e384"), jwk(ts::ed25519(), "ed"),
        ]});
        let keys = parse_jwks(body.to_string().as_bytes(), &[]).unwrap();
        let kinds: Vec<_> = keys
            .iter()
            .map(|k| (k.kid.clone().unwrap(), k.key_type))
            .collect();
        assert_eq!(
            kinds,
            [
                ("r".to_owned(), KeyType::Rsa),
                ("e256".to_owned(), KeyType::EcP256),
                ("e384".to_owned(), KeyType::EcP384),
                ("ed".to_owned(), KeyType::Ed25519)
            ]
        );
    }

    #[test]
    fn unusable_jwks_entries_are_skipped() {
        let mut enc = jwk(ts::rsa(), "enc");
        enc["use"] = "enc".into();
        let mut ops = jwk(ts::rsa(), "ops");
        ops["key_ops"] = serde_json::json!(["encrypt"]);
        let mut wrong_alg = jwk(ts::rsa(), "wrong-alg");
        wrong_alg["alg"] = "ES256".into();
        let mut oaep = jwk(ts::rsa(), "oaep");
        oaep["alg"] = "RSA-OAEP".into();
        let mut short = jwk(ts::p256(), "short");
        short["x"] = "AAAA".into();
        let mut off_curve = jwk(ts::p256(), "off-curve");
        off_curve["y"] = URL_SAFE_NO_PAD.encode([1u8; 32]).into();
        let body = serde_json::json!({"keys": [
            enc, ops, wrong_alg, oaep, short, off_curve,
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA", "kid": "p521"},
            "not an object",
            jwk(ts::p256(), "good"),
        ]});
        let keys = parse_jwks(body.to_string().as_bytes(), &[]).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("good"));

        for body in ["", "[]", "{}", r#"{"keys":{}}"#] {
            assert!(parse_jwks(body.as_bytes(), &[]).is_err(), "{body}");
        }
    }

    #[test]
    fn jwk_alg_and_supported_algs_narrow_a_key() {
        let mut ps = jwk(ts::rsa(), "ps");
        ps["alg"] = "PS384".into();
        let body = serde_json::json!({"keys": [ps, jwk(ts::rsa(), "any"), jwk(ts::p256(), "ec")]});
        let keys = parse_jwks(body.to_string().as_bytes(), &[]).unwrap();
        assert_eq!(keys[0].algorithms, [Algorithm::PS384]);
        assert_eq!(keys[1].algorithms.len(), 6);

        let keys = parse_jwks(body.to_string().as_bytes(), &[Algorithm::RS256]).unwrap();
        assert_eq!(keys.len(), 1, "PS384-only and EC keys cannot verify RS256");
        assert_eq!(keys[0].kid.as_deref(), Some("any"));
        assert_eq!(keys[0].algorithms, [Algorithm::RS256]);
    }
}
