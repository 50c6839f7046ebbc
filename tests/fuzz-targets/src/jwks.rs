//! Verification keys (`broker/core/src/auth/jwt/keys.rs`): a JWKS document as fetched from the
//! `jwks_url` or discovery of a tenant's JWT mount (the tenant may run that server), and PEM
//! public keys from `jwt_validation_pubkeys`.

use keybroker_core::auth::jwt::fuzzing::{from_pem, parse_jwks, Algorithm, VerificationKey};

/// Parses `data` as a JWKS document, plain and narrowed, and as PEM.
pub fn jwks(data: &[u8]) {
    if let Ok(keys) = parse_jwks(data, &[]) {
        keys.iter().for_each(|key| usable(key, &[]));
    }
    let narrowed = [Algorithm::ES256, Algorithm::PS512];
    if let Ok(keys) = parse_jwks(data, &narrowed) {
        keys.iter().for_each(|key| usable(key, &narrowed));
    }
    if let Some(text) = crate::text(data) {
        if let Ok(key) = from_pem(text) {
            assert!(key.kid.is_none());
            usable(&key, &[]);
        }
    }
}

/// A key verifies at least one algorithm, each allowed by its type and by `supported`.
fn usable(key: &VerificationKey, supported: &[Algorithm]) {
    assert!(!key.algorithms.is_empty(), "{key:?}");
    for algorithm in &key.algorithms {
        assert!(key.key_type.algorithms().contains(algorithm), "{key:?}");
        assert!(
            supported.is_empty() || supported.contains(algorithm),
            "{key:?}"
        );
        assert!(key.allows(*algorithm));
        assert!(!key.verify(b"message", &[0; 64], *algorithm));
    }
}
