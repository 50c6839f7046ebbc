//! The checks of a verified token's claims against a role (Vault's `validateBoundClaims`,
//! `getClaim`, `extractMetadata`), and what a login takes from them.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{role::MAX_LEEWAY, JwtRole};

/// Why a token was refused: a short message for the caller, the precise reason for the log.
#[derive(Debug)]
pub struct Refusal {
    /// Shown to the caller.
    pub message: &'static str,
    /// Logged at debug level; never holds the token.
    pub reason: String,
}

impl Refusal {
    /// A refusal.
    pub fn new(message: &'static str, reason: impl Into<String>) -> Self {
        Self {
            message,
            reason: reason.into(),
        }
    }
}

/// Caller-facing messages.
pub(super) const MALFORMED: &str = "malformed token";
/// The signature did not verify with any acceptable key.
pub(super) const BAD_SIGNATURE: &str = "token signature could not be verified";
/// `exp` passed.
pub(super) const EXPIRED: &str = "token has expired";
/// `nbf` or `iat` in the future.
pub(super) const NOT_YET_VALID: &str = "token is not yet valid";
/// `iss` does not match.
pub(super) const WRONG_ISSUER: &str = "token issuer does not match";
/// `aud` does not match.
pub(super) const WRONG_AUDIENCE: &str = "token audience does not match the role";
/// `sub` or a bound claim does not match.
pub(super) const WRONG_CLAIMS: &str = "token claims do not match the role";
/// The user, groups or a mapped claim is missing or of the wrong type.
pub(super) const MISSING_CLAIMS: &str = "token lacks a claim the role requires";
/// An ID token's `nonce` is not the one its login asked for.
pub(super) const WRONG_NONCE: &str = "invalid ID token nonce";

/// What a login takes from a token that passed every check.
#[derive(Debug)]
pub struct Accepted {
    /// The user claim.
    pub user: String,
    /// The groups claim's entries.
    pub groups: Vec<String>,
    /// Mapped claims.
    pub metadata: BTreeMap<String, String>,
    /// `exp`.
    pub expires_at: i64,
    /// `iss`, when a string.
    pub issuer: Option<String>,
}

/// A claim by name, or by JSON pointer (RFC 6901) when it starts with `/`. JSON null is
/// absent.
fn claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    let found = match name.strip_prefix('/') {
        None => claims.get(name),
        Some(rest) => {
            let (first, tail) = match rest.split_once('/') {
                Some((first, tail)) => (first, Some(tail)),
                None => (rest, None),
            };
            let value = claims.get(&first.replace("~1", "/").replace("~0", "~"))?;
            match tail {
                None => Some(value),
                Some(tail) => value.pointer(&format!("/{tail}")),
            }
        }
    };
    found.filter(|value| !value.is_null())
}

/// A NumericDate (RFC 7519 §2): a JSON number of seconds, fractions dropped.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, Refusal> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(number)) => Ok(number
            .as_i64()
            .or_else(|| number.as_f64().map(|f| f.floor() as i64))),
        Some(_) => Err(Refusal::new(
            MALFORMED,
            format!("the {name:?} claim is not a number"),
        )),
    }
}

/// A scalar claim as text (`true`, `42`, `"x"`); lists, objects and null have none.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Glob matching as Vault's bound claims do it (`*` matches any text, including none;
/// everything else literally, case-sensitively).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let pattern = pattern.as_bytes();
    let text = text.as_bytes();
    let (mut p, mut t) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            backtrack = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((star, matched)) = backtrack {
            p = star + 1;
            t = matched + 1;
            backtrack = Some((star, matched + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|b| *b == b'*')
}

fn leeway(seconds: u64) -> i64 {
    // Stored roles are capped at write; the cap is applied again so a hand-edited store
    // cannot turn expiry off.
    i64::try_from(seconds.min(MAX_LEEWAY)).unwrap_or(0)
}

fn check_times(claims: &Map<String, Value>, role: &JwtRole, now: i64) -> Result<i64, Refusal> {
    let skew = leeway(role.clock_skew_leeway);
    let exp = numeric_date(claims, "exp")?
        .ok_or_else(|| Refusal::new(MALFORMED, "the token has no \"exp\""))?;
    let iat = numeric_date(claims, "iat")?
        .ok_or_else(|| Refusal::new(MALFORMED, "the token has no \"iat\""))?;
    let nbf = numeric_date(claims, "nbf")?;
    if exp
        .saturating_add(leeway(role.expiration_leeway))
        .saturating_add(skew)
        <= now
    {
        return Err(Refusal::new(
            EXPIRED,
            format!("exp {exp} is past (now {now})"),
        ));
    }
    if let Some(nbf) = nbf {
        if nbf
            .saturating_sub(leeway(role.not_before_leeway))
            .saturating_sub(skew)
            > now
        {
            return Err(Refusal::new(
                NOT_YET_VALID,
                format!("nbf {nbf} is ahead (now {now})"),
            ));
        }
    }
    if iat.saturating_sub(skew) > now {
        return Err(Refusal::new(
            NOT_YET_VALID,
            format!("iat {iat} is in the future (now {now})"),
        ));
    }
    Ok(exp)
}

fn check_issuer(
    claims: &Map<String, Value>,
    expected: &[String],
) -> Result<Option<String>, Refusal> {
    let issuer = match claims.get("iss") {
        None | Some(Value::Null) => None,
        Some(Value::String(iss)) => Some(iss.clone()),
        Some(_) => return Err(Refusal::new(MALFORMED, "the \"iss\" claim is not a string")),
    };
    for wanted in expected {
        if issuer.as_deref() != Some(wanted.as_str()) {
            return Err(Refusal::new(
                WRONG_ISSUER,
                format!("iss {issuer:?} is not {wanted:?}"),
            ));
        }
    }
    Ok(issuer)
}

/// The token's `aud`: absent, a string, or a list of strings.
fn audiences(claims: &Map<String, Value>) -> Result<Vec<&str>, Refusal> {
    let not_strings = || {
        Refusal::new(
            MALFORMED,
            "the \"aud\" claim is not a string or a list of strings",
        )
    };
    Ok(match claims.get("aud") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(aud)) => vec![aud.as_str()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().ok_or_else(not_strings))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(not_strings()),
    })
}

fn check_audience(claims: &Map<String, Value>, role: &JwtRole) -> Result<(), Refusal> {
    let audiences = audiences(claims)?;
    if role.bound_audiences.is_empty() {
        if !audiences.is_empty() {
            return Err(Refusal::new(
                WRONG_AUDIENCE,
                "the token has an audience but the role binds none",
            ));
        }
        return Ok(());
    }
    if audiences
        .iter()
        .any(|aud| role.bound_audiences.iter().any(|bound| bound == aud))
    {
        Ok(())
    } else {
        Err(Refusal::new(
            WRONG_AUDIENCE,
            format!("aud {audiences:?} matches no bound audience"),
        ))
    }
}

fn check_subject(claims: &Map<String, Value>, role: &JwtRole) -> Result<(), Refusal> {
    let Some(bound) = &role.bound_subject else {
        return Ok(());
    };
    match claims.get("sub") {
        Some(Value::String(sub)) if sub == bound => Ok(()),
        _ => Err(Refusal::new(
            WRONG_CLAIMS,
            "sub does not equal bound_subject",
        )),
    }
}

fn check_bound_claims(claims: &Map<String, Value>, role: &JwtRole) -> Result<(), Refusal> {
    let glob = role.bound_claims_type == "glob";
    for (name, expected) in &role.bound_claims {
        let expected: Vec<&str> = match expected {
            Value::String(s) => vec![s.as_str()],
            Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let actual: Vec<String> = match claim(claims, name) {
            None => {
                return Err(Refusal::new(
                    WRONG_CLAIMS,
                    format!("bound claim {name:?} is missing"),
                ))
            }
            Some(Value::Array(items)) => items.iter().filter_map(scalar_text).collect(),
            Some(value) => scalar_text(value).into_iter().collect(),
        };
        let matched = expected.iter().any(|want| {
            actual.iter().any(|have| {
                if glob {
                    glob_match(want, have)
                } else {
                    want == have
                }
            })
        });
        if !matched {
            return Err(Refusal::new(
                WRONG_CLAIMS,
                format!("bound claim {name:?} does not match"),
            ));
        }
    }
    Ok(())
}

fn user(claims: &Map<String, Value>, role: &JwtRole) -> Result<String, Refusal> {
    match claim(claims, &role.user_claim) {
        Some(Value::String(user)) if !user.is_empty() => Ok(user.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(_) => Err(Refusal::new(
            MISSING_CLAIMS,
            format!("user claim {:?} is not a non-empty string", role.user_claim),
        )),
        None => Err(Refusal::new(
            MISSING_CLAIMS,
            format!("user claim {:?} is missing", role.user_claim),
        )),
    }
}

fn groups(claims: &Map<String, Value>, role: &JwtRole) -> Result<Vec<String>, Refusal> {
    let Some(name) = &role.groups_claim else {
        return Ok(Vec::new());
    };
    let wrong = || {
        Refusal::new(
            MISSING_CLAIMS,
            format!("groups claim {name:?} is not a list of strings"),
        )
    };
    match claim(claims, name) {
        None => Err(Refusal::new(
            MISSING_CLAIMS,
            format!("groups claim {name:?} is missing"),
        )),
        Some(Value::String(group)) => Ok(vec![group.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned).ok_or_else(wrong))
            .collect(),
        Some(_) => Err(wrong()),
    }
}

fn metadata(
    claims: &Map<String, Value>,
    role: &JwtRole,
) -> Result<BTreeMap<String, String>, Refusal> {
    let mut out = BTreeMap::new();
    for (name, key) in &role.claim_mappings {
        let Some(value) = claim(claims, name) else {
            continue;
        };
        let text = scalar_text(value).ok_or_else(|| {
            Refusal::new(
                MISSING_CLAIMS,
                format!("mapped claim {name:?} is not a string, number or boolean"),
            )
        })?;
        out.insert(key.clone(), text);
    }
    Ok(out)
}

/// An ID token's audience (OpenID Connect Core §3.1.3.7): `aud` holds the client id, and
/// `azp`, when present, is the client id; with `bound_audiences`, `aud` holds one of them too.
fn check_client_audience(
    claims: &Map<String, Value>,
    role: &JwtRole,
    client_id: &str,
) -> Result<(), Refusal> {
    let audiences = audiences(claims)?;
    if !audiences.contains(&client_id) {
        return Err(Refusal::new(
            WRONG_AUDIENCE,
            format!("aud {audiences:?} does not hold the client id"),
        ));
    }
    if claims
        .get("azp")
        .is_some_and(|azp| azp.as_str() != Some(client_id))
    {
        return Err(Refusal::new(WRONG_AUDIENCE, "azp is not the client id"));
    }
    if !role.bound_audiences.is_empty()
        && !audiences
            .iter()
            .any(|aud| role.bound_audiences.iter().any(|bound| bound == aud))
    {
        return Err(Refusal::new(
            WRONG_AUDIENCE,
            format!("aud {audiences:?} matches no bound audience"),
        ));
    }
    Ok(())
}

/// An ID token's `nonce` equals the one its login sent (compared in constant time).
fn check_nonce(claims: &Map<String, Value>, nonce: &str) -> Result<(), Refusal> {
    use subtle::ConstantTimeEq;
    let matches = claims
        .get("nonce")
        .and_then(Value::as_str)
        .is_some_and(|got| bool::from(got.as_bytes().ct_eq(nonce.as_bytes())));
    if matches {
        Ok(())
    } else {
        Err(Refusal::new(
            WRONG_NONCE,
            "the nonce is missing or not the login's",
        ))
    }
}

/// Checks the claims of a token whose signature verified: times, issuer (each of
/// `issuers` must equal `iss`), audience, subject, bound claims; then takes the user, the
/// groups and the mapped metadata.
pub fn check(
    claims: &Map<String, Value>,
    role: &JwtRole,
    issuers: &[String],
    now: i64,
) -> Result<Accepted, Refusal> {
    accept(claims, role, issuers, now, |claims| {
        check_audience(claims, role)
    })
}

/// [`check`] for an OIDC login's ID token: the audience is the mount's client
/// ([`check_client_audience`]) and `nonce` the login's.
pub(crate) fn check_id_token(
    claims: &Map<String, Value>,
    role: &JwtRole,
    issuers: &[String],
    now: i64,
    client_id: &str,
    nonce: &str,
) -> Result<Accepted, Refusal> {
    accept(claims, role, issuers, now, |claims| {
        check_client_audience(claims, role, client_id)?;
        check_nonce(claims, nonce)
    })
}

fn accept(
    claims: &Map<String, Value>,
    role: &JwtRole,
    issuers: &[String],
    now: i64,
    audience: impl FnOnce(&Map<String, Value>) -> Result<(), Refusal>,
) -> Result<Accepted, Refusal> {
    let expires_at = check_times(claims, role, now)?;
    let issuer = check_issuer(claims, issuers)?;
    audience(claims)?;
    check_subject(claims, role)?;
    check_bound_claims(claims, role)?;
    Ok(Accepted {
        user: user(claims, role)?,
        groups: groups(claims, role)?,
        metadata: metadata(claims, role)?,
        expires_at,
        issuer,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn make_role(value: Value) -> JwtRole {
        JwtRole::apply(None, serde_json::from_value(value).unwrap()).unwrap()
    }

    fn base_claims() -> Value {
        json!({"sub": "svc-a", "aud": "api", "iss": "https://idp.example", "iat": NOW - 10, "exp": NOW + 300})
    }

    fn with(changes: Value) -> Map<String, Value> {
        let mut claims = base_claims();
        for (key, value) in changes.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(key);
            } else {
                claims[key] = value.clone();
            }
        }
        claims.as_object().unwrap().clone()
    }

    fn api_role() -> JwtRole {
        make_role(json!({"bound_audiences": ["api"]}))
    }

    fn refusal(claims: &Map<String, Value>, role: &JwtRole, issuers: &[String]) -> Refusal {
        check(claims, role, issuers, NOW).unwrap_err()
    }

    #[test]
    fn a_good_token_is_accepted() {
        let accepted = check(&with(json!({})), &api_role(), &[], NOW).unwrap();
        assert_eq!(accepted.user, "svc-a");
        assert_eq!(accepted.expires_at, NOW + 300);
        assert_eq!(accepted.issuer.as_deref(), Some("https://idp.example"));
        assert!(accepted.groups.is_empty() && accepted.metadata.is_empty());
    }

    #[test]
    fn exp_and_iat_are_required_numbers() {
        let role = api_role();
        for (changes, message) in [
            (json!({"exp": null}), MALFORMED),
            (json!({"iat": null}), MALFORMED),
            (json!({"exp": (NOW + 300).to_string()}), MALFORMED),
            (json!({"iat": "yesterday"}), MALFORMED),
            (json!({"nbf": "now"}), MALFORMED),
        ] {
            assert_eq!(
                refusal(&with(changes.clone()), &role, &[]).message,
                message,
                "{changes}"
            );
        }
        // Fractions are allowed (NumericDate) and dropped.
        let accepted = check(&with(json!({"exp": NOW as f64 + 10.7})), &role, &[], NOW).unwrap();
        assert_eq!(accepted.expires_at, NOW + 10);
    }

    #[test]
    fn expiry_with_leeways() {
        // Defaults: 60 s expiration leeway + 60 s clock skew.
        let role = api_role();
        assert!(check(&with(json!({"exp": NOW - 119})), &role, &[], NOW).is_ok());
        assert_eq!(
            refusal(&with(json!({"exp": NOW - 120})), &role, &[]).message,
            EXPIRED
        );
        let strict = make_role(
            json!({"bound_audiences": ["api"], "expiration_leeway": 0, "clock_skew_leeway": 0}),
        );
        assert!(check(&with(json!({"exp": NOW + 1})), &strict, &[], NOW).is_ok());
        assert_eq!(
            refusal(&with(json!({"exp": NOW})), &strict, &[]).message,
            EXPIRED
        );
        // A stored leeway beyond the cap is capped.
        let mut tampered = strict.clone();
        tampered.expiration_leeway = u64::MAX;
        assert_eq!(
            refusal(&with(json!({"exp": NOW - 301})), &tampered, &[]).message,
            EXPIRED
        );
    }

    #[test]
    fn not_before_with_leeways() {
        let role = api_role();
        assert!(check(&with(json!({"nbf": NOW + 120})), &role, &[], NOW).is_ok());
        assert_eq!(
            refusal(&with(json!({"nbf": NOW + 121})), &role, &[]).message,
            NOT_YET_VALID
        );
        let strict = make_role(
            json!({"bound_audiences": ["api"], "not_before_leeway": 0, "clock_skew_leeway": 0}),
        );
        assert!(check(&with(json!({"nbf": NOW})), &strict, &[], NOW).is_ok());
        assert_eq!(
            refusal(&with(json!({"nbf": NOW + 1})), &strict, &[]).message,
            NOT_YET_VALID
        );
    }

    #[test]
    fn iat_in_the_future_beyond_clock_skew() {
        let role = api_role();
        assert!(check(&with(json!({"iat": NOW + 60})), &role, &[], NOW).is_ok());
        assert_eq!(
            refusal(&with(json!({"iat": NOW + 61})), &role, &[]).message,
            NOT_YET_VALID
        );
    }

    #[test]
    fn issuer_must_match() {
        let role = api_role();
        let wanted = ["https://idp.example".to_owned()];
        assert!(check(&with(json!({})), &role, &wanted, NOW).is_ok());
        for changes in [
            json!({"iss": "https://idp.example/"}),
            json!({"iss": "https://IDP.example"}),
            json!({"iss": null}),
        ] {
            assert_eq!(
                refusal(&with(changes), &role, &wanted).message,
                WRONG_ISSUER
            );
        }
        assert_eq!(
            refusal(&with(json!({"iss": 5})), &role, &wanted).message,
            MALFORMED
        );
        // Two expectations (bound_issuer and the discovered issuer) must both hold.
        let both = ["https://idp.example".to_owned(), "https://other".to_owned()];
        assert_eq!(
            refusal(&with(json!({})), &role, &both).message,
            WRONG_ISSUER
        );
    }

    #[test]
    fn audience_rules() {
        let role = make_role(json!({"bound_audiences": ["api", "web"]}));
        for aud in [json!("web"), json!(["other", "api"])] {
            assert!(check(&with(json!({"aud": aud})), &role, &[], NOW).is_ok());
        }
        for aud in [json!("API"), json!(["other"]), json!([]), Value::Null] {
            assert_eq!(
                refusal(&with(json!({"aud": aud.clone()})), &role, &[]).message,
                WRONG_AUDIENCE,
                "{aud}"
            );
        }
        for aud in [json!(5), json!(["api", 5]), json!({"a": 1})] {
            assert_eq!(
                refusal(&with(json!({"aud": aud})), &role, &[]).message,
                MALFORMED
            );
        }
        // A role binding no audience refuses tokens that carry one (Vault's rule).
        let no_aud = make_role(json!({"bound_subject": "svc-a"}));
        assert_eq!(
            refusal(&with(json!({})), &no_aud, &[]).message,
            WRONG_AUDIENCE
        );
        assert!(check(&with(json!({"aud": null})), &no_aud, &[], NOW).is_ok());
        assert!(check(&with(json!({"aud": []})), &no_aud, &[], NOW).is_ok());
    }

    #[test]
    fn bound_subject_is_exact() {
        let role = make_role(json!({"bound_audiences": ["api"], "bound_subject": "svc-a"}));
        assert!(check(&with(json!({})), &role, &[], NOW).is_ok());
        for sub in [json!("svc-A"), json!("svc-a "), Value::Null, json!(1)] {
            assert_eq!(
                refusal(&with(json!({"sub": sub})), &role, &[]).message,
                WRONG_CLAIMS
            );
        }
    }

    #[test]
    fn bound_claims_by_name_and_pointer() {
        let role = make_role(json!({
            "bound_audiences": ["api"],
            "bound_claims": {"team": ["web", "data"], "/org/id": "42", "verified": "true"},
        }));
        let good = json!({"team": "data", "org": {"id": 42}, "verified": true});
        assert!(check(&with(good.clone()), &role, &[], NOW).is_ok());
        // A list claim matches when one element does.
        assert!(check(
            &with(json!({"team": ["x", "web"], "org": {"id": "42"}, "verified": "true"})),
            &role,
            &[],
            NOW
        )
        .is_ok());
        for changes in [
            json!({"team": "Web"}),
            json!({"team": ["x"]}),
            json!({"team": {"web": 1}}),
            json!({"team": null}),
            json!({"org": {"id": 43}}),
            json!({"org": "42"}),
            json!({"verified": false}),
        ] {
            let mut claims = good.clone();
            for (key, value) in changes.as_object().unwrap() {
                claims[key] = value.clone();
            }
            assert_eq!(
                refusal(&with(claims), &role, &[]).message,
                WRONG_CLAIMS,
                "{changes}"
            );
        }
    }

    #[test]
    fn json_pointer_escapes() {
        let role =
            make_role(json!({"bound_audiences": ["api"], "bound_claims": {"/a~1b/c~0d": "x"}}));
        assert!(check(&with(json!({"a/b": {"c~d": "x"}})), &role, &[], NOW).is_ok());
        assert!(check(&with(json!({"a": {"b": {"c~d": "x"}}})), &role, &[], NOW).is_err());
    }

    #[test]
    fn glob_bound_claims() {
        let role = make_role(json!({
            "bound_audiences": ["api"],
            "bound_claims_type": "glob",
            "bound_claims": {"email": "*@example.com", "repo": ["org/*-service"]},
        }));
        assert!(check(
            &with(json!({"email": "a@example.com", "repo": "org/pay-service"})),
            &role,
            &[],
            NOW
        )
        .is_ok());
        for (email, repo) in [
            ("a@example.com.evil", "org/pay-service"),
            ("a@EXAMPLE.com", "org/pay-service"),
            ("a@example.com", "other/pay-service"),
        ] {
            assert_eq!(
                refusal(&with(json!({"email": email, "repo": repo})), &role, &[]).message,
                WRONG_CLAIMS
            );
        }
        // The same values as plain strings match only literally.
        let literal = make_role(
            json!({"bound_audiences": ["api"], "bound_claims": {"email": "*@example.com"}}),
        );
        assert!(check(&with(json!({"email": "a@example.com"})), &literal, &[], NOW).is_err());
        assert!(check(&with(json!({"email": "*@example.com"})), &literal, &[], NOW).is_ok());
    }

    #[test]
    fn glob_matching() {
        for (pattern, text) in [
            ("*", ""),
            ("*", "abc"),
            ("a*c", "abbbc"),
            ("a*", "a"),
            ("*b*", "abc"),
            ("a*b*c", "aXbYc"),
            ("abc", "abc"),
            ("a**c", "ac"),
        ] {
            assert!(glob_match(pattern, text), "{pattern} {text}");
        }
        for (pattern, text) in [
            ("abc", "abcd"),
            ("a*c", "ab"),
            ("a*b*c", "aXcYb"),
            ("", "a"),
            ("A*", "a"),
        ] {
            assert!(!glob_match(pattern, text), "{pattern} {text}");
        }
    }

    #[test]
    fn user_claim() {
        let by_email = make_role(json!({"bound_audiences": ["api"], "user_claim": "email"}));
        let accepted = check(
            &with(json!({"email": "a@example.com"})),
            &by_email,
            &[],
            NOW,
        )
        .unwrap();
        assert_eq!(accepted.user, "a@example.com");
        let numeric = make_role(json!({"bound_audiences": ["api"], "user_claim": "/ids/uid"}));
        assert_eq!(
            check(&with(json!({"ids": {"uid": 1001}})), &numeric, &[], NOW)
                .unwrap()
                .user,
            "1001"
        );
        for changes in [
            json!({}),
            json!({"email": ""}),
            json!({"email": ["a"]}),
            json!({"email": true}),
        ] {
            assert_eq!(
                refusal(&with(changes), &by_email, &[]).message,
                MISSING_CLAIMS
            );
        }
    }

    #[test]
    fn groups_claim() {
        let role = make_role(json!({"bound_audiences": ["api"], "groups_claim": "groups"}));
        let accepted = check(&with(json!({"groups": ["a", "b"]})), &role, &[], NOW).unwrap();
        assert_eq!(accepted.groups, ["a", "b"]);
        assert_eq!(
            check(&with(json!({"groups": "solo"})), &role, &[], NOW)
                .unwrap()
                .groups,
            ["solo"]
        );
        for changes in [
            json!({}),
            json!({"groups": ["a", 1]}),
            json!({"groups": {"a": 1}}),
            json!({"groups": 5}),
        ] {
            assert_eq!(refusal(&with(changes), &role, &[]).message, MISSING_CLAIMS);
        }
    }

    #[test]
    fn claim_mappings_become_metadata() {
        let role = make_role(json!({
            "bound_audiences": ["api"],
            "claim_mappings": {"team": "team", "/org/id": "org_id", "admin": "is_admin", "absent": "never"},
        }));
        let accepted = check(
            &with(json!({"team": "web", "org": {"id": 7}, "admin": false})),
            &role,
            &[],
            NOW,
        )
        .unwrap();
        let expected: BTreeMap<String, String> =
            [("team", "web"), ("org_id", "7"), ("is_admin", "false")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        assert_eq!(accepted.metadata, expected);
        assert_eq!(
            refusal(&with(json!({"team": ["web"]})), &role, &[]).message,
            MISSING_CLAIMS
        );
    }
}
