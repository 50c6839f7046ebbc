//! The checks of a JWT's claims against a role (`broker/core/src/auth/jwt/claims.rs`). A tenant
//! may run the issuer, so whatever it signs reaches them: times, issuer, audience, subject,
//! bound claims (names, JSON pointers, globs), the user and groups claims and claim
//! mappings. Input: the claims, a JSON object.

use keybroker_core::auth::jwt::{fuzzing::check_claims, JwtRole, JwtRoleInput, MAX_LEEWAY};
use serde_json::{json, Map, Value};

const NOW: i64 = 1_700_000_000;
const ISSUER: &str = "https://idp.example";

fn strings(items: &[&str]) -> Option<Vec<String>> {
    Some(items.iter().map(|item| (*item).to_owned()).collect())
}

fn object(value: Value) -> Option<Map<String, Value>> {
    value.as_object().cloned()
}

/// Roles that between them use every check.
fn roles() -> Vec<JwtRole> {
    let leeways = |seconds| JwtRoleInput {
        clock_skew_leeway: Some(seconds),
        expiration_leeway: Some(seconds),
        not_before_leeway: Some(seconds),
        ..JwtRoleInput::default()
    };
    [
        JwtRoleInput {
            bound_audiences: strings(&["api"]),
            ..JwtRoleInput::default()
        },
        JwtRoleInput {
            bound_audiences: strings(&["api", "other"]),
            bound_subject: Some("svc-a".to_owned()),
            user_claim: Some("/profile/id".to_owned()),
            groups_claim: Some("groups".to_owned()),
            claim_mappings: object(
                json!({"/org/name": "org", "email": "email", "/a~1b/0": "slashed"}),
            ),
            ..leeways(0)
        },
        JwtRoleInput {
            bound_claims_type: Some("glob".to_owned()),
            bound_claims: object(
                json!({"/groups/0": "adm*", "email": ["*@example.com", "root"], "n": 5}),
            ),
            groups_claim: Some("/nested/groups".to_owned()),
            ..leeways(300)
        },
    ]
    .into_iter()
    .map(|input| JwtRole::apply(None, input).unwrap())
    .collect()
}

/// Checks the claims in `data` against each role, with and without an expected issuer.
pub fn jwt_claims(data: &[u8]) {
    let Ok(Value::Object(claims)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let issuers = [Vec::new(), vec![ISSUER.to_owned()]];
    for role in roles() {
        for expected in &issuers {
            let Ok(accepted) = check_claims(&claims, &role, expected, NOW) else {
                continue;
            };
            properties(&claims, &role, expected, &accepted);
        }
    }
}

/// What an accepted token must have.
fn properties(
    claims: &Map<String, Value>,
    role: &JwtRole,
    expected: &[String],
    accepted: &keybroker_core::auth::jwt::fuzzing::Accepted,
) {
    // Not expired beyond the leeways, which are capped whatever the role says.
    let leeway = i64::try_from(2 * MAX_LEEWAY).unwrap();
    assert!(accepted.expires_at.saturating_add(leeway) > NOW);
    assert!(claims.get("exp").is_some_and(Value::is_number));
    assert!(claims.get("iat").is_some_and(Value::is_number));
    for issuer in expected {
        assert_eq!(accepted.issuer.as_deref(), Some(issuer.as_str()));
    }
    if let Some(subject) = &role.bound_subject {
        assert_eq!(
            claims.get("sub").and_then(Value::as_str),
            Some(subject.as_str())
        );
    }
    if role.bound_audiences.is_empty() {
        assert!(claims
            .get("aud")
            .is_none_or(|aud| aud.is_null() || aud.as_array().is_some_and(Vec::is_empty)));
    }
    assert!(!accepted.user.is_empty());
    if role.groups_claim.is_none() {
        assert!(accepted.groups.is_empty());
    }
    for key in accepted.metadata.keys() {
        assert!(role.claim_mappings.values().any(|mapped| mapped == key));
    }
}
