//! The compact form of a JWT and its protected header (`broker/core/src/auth/jwt/token.rs`), read
//! on `auth/jwt/login` and for bearer mode before any authentication, then its payload, and
//! a signature check against one key of each type.

use keybroker_core::{
    auth::jwt::method::{looks_like_jwt, unverified_issuer},
    auth::jwt::{
        fuzzing::{algorithm_name, from_pem, parse_algorithm, parse_token, ASYMMETRIC_ALGORITHMS},
        MAX_TOKEN_LEN,
    },
};

const RSA_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAti7BZ5GHivmDQk7W3JbU
pN6BeNg4uTFlSCTnY3XoEegs7RkCZBe5kTFd3qVQrxpgH4dEev11WlXWyTNwFAsL
dq2d5jtVdSA1EgxhOxBOWZ24BTF2z84cWZvDO5Xqg+apKgX4+WTPgHHRCLP+VuOG
/Mr05cBsYbqkt3k9XRo2fK7YfUXTeuqHQ6Z/9Dhj81zj/76sPr0oJcytty3shkGr
9UxS/6mpB/iW6dRJrxuj+jtG+SVOmxLriCyD8IAJ4KZFiLYmx2UC85TqKpc96m3s
6EgcB5cEFpSB48We1qG2A066kxqZA1m+NVhh3l6cZAhqzGBx/4uUBZJpxkM/v/VC
SQIDAQAB
-----END PUBLIC KEY-----";
const P256_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEh/NHq2vM/W8O4GKXO9vBiDyO3kb1
TBl/u5TcvT03f0dea+Ep/++cuy91gLAQl7cxqRMCWzq5UE0O7iP6DzfOiw==
-----END PUBLIC KEY-----";
const ED25519_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAAnuVQ2IjrG7oqAp4fxCf6Pq4l7JzS9u86w6uIhoppdg=
-----END PUBLIC KEY-----";

/// Parses `data` as a JWT, as login and bearer mode do.
pub fn jwt_token(data: &[u8]) {
    let Some(token) = crate::text(data) else {
        return;
    };
    let _ = looks_like_jwt(token);
    if let Some(issuer) = unverified_issuer(token) {
        assert!(!issuer.ends_with('/'));
    }
    let Ok(parsed) = parse_token(token, MAX_TOKEN_LEN) else {
        return;
    };
    assert!(token.len() <= MAX_TOKEN_LEN);
    // Only asymmetric algorithms get through, and the name is the one written.
    assert!(ASYMMETRIC_ALGORITHMS.contains(&parsed.algorithm));
    assert_eq!(
        parse_algorithm(&algorithm_name(parsed.algorithm)),
        Ok(parsed.algorithm)
    );
    // The signature covers exactly `header.payload`.
    let (signing_input, _) = token.rsplit_once('.').unwrap();
    assert_eq!(parsed.signing_input, signing_input.as_bytes());
    if let Ok(claims) = parsed.claims() {
        let _ = claims.get("iss");
    }
    for pem in [RSA_PUBLIC, P256_PUBLIC, ED25519_PUBLIC] {
        let key = from_pem(pem).unwrap();
        if key.allows(parsed.algorithm) {
            let _ = key.verify(parsed.signing_input, &parsed.signature, parsed.algorithm);
        }
    }
}
