//! A jwt role (Vault API: auth/jwt/role/:name): what a token must prove, and what the broker
//! token of a login gets.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{
    cidr,
    error::{Error, Result},
};

/// Largest accepted leeway (`clock_skew_leeway`, `expiration_leeway`, `not_before_leeway`),
/// in seconds.
pub const MAX_LEEWAY: u64 = 300;

/// Default of each leeway, in seconds.
const DEFAULT_LEEWAY: u64 = 60;

/// The metadata key the broker sets to the role's name; no claim may be mapped to it.
const RESERVED_METADATA_KEY: &str = "role";

/// A role of a jwt mount (Vault: auth/jwt/role/:name). Stored as JSON in the mount's
/// configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct JwtRole {
    /// `"jwt"`: logins present a JWT (`login`); `"oidc"`: people log in through the
    /// provider (`oidc/auth_url`, `oidc/callback`), and the ID token's audience is the
    /// mount's `oidc_client_id`.
    pub role_type: String,
    /// Where the provider may send a person back after an OIDC login (`oidc` roles);
    /// loopback URIs match whatever their port (RFC 8252), as in Vault.
    pub allowed_redirect_uris: Vec<String>,
    /// Scopes asked for besides `openid` (`oidc` roles).
    pub oidc_scopes: Vec<String>,
    /// A token's `aud` must contain one of these; with none, a token must have no `aud`.
    pub bound_audiences: Vec<String>,
    /// A token's `sub` must equal this, when set.
    pub bound_subject: Option<String>,
    /// Claim (name or JSON pointer `/a/b`) → a string or list of strings, one of which the
    /// claim (or one element of it) must match.
    pub bound_claims: Map<String, Value>,
    /// `"string"`: exact matches; `"glob"`: `*` in bound values matches any text.
    pub bound_claims_type: String,
    /// The claim naming the user (default `sub`).
    pub user_claim: String,
    /// The claim listing the user's groups, when set.
    pub groups_claim: Option<String>,
    /// Claim (name or JSON pointer) → metadata key of the issued token.
    pub claim_mappings: BTreeMap<String, String>,
    /// Seconds of clock difference tolerated on every time claim (default 60).
    pub clock_skew_leeway: u64,
    /// Seconds a token stays accepted after its `exp` (default 60).
    pub expiration_leeway: u64,
    /// Seconds a token is accepted before its `nbf` (default 60).
    pub not_before_leeway: u64,
    /// Policies of issued tokens.
    pub token_policies: Vec<String>,
    /// TTL of issued tokens, seconds (0: the mount's default).
    pub token_ttl: u64,
    /// Maximum lifetime of issued tokens, seconds (0: the mount's default).
    pub token_max_ttl: u64,
    /// Hard limit on issued tokens' lifetime, seconds (0: none).
    pub token_explicit_max_ttl: u64,
    /// Uses of each issued token (0: unlimited).
    pub token_num_uses: u64,
    /// Period of issued tokens, seconds (0: not periodic).
    pub token_period: u64,
    /// Leave `default` out of issued tokens' policies.
    pub token_no_default_policy: bool,
    /// CIDR blocks logins must come from and issued tokens may be used from (canonical).
    pub token_bound_cidrs: Vec<String>,
}

impl Default for JwtRole {
    fn default() -> Self {
        Self {
            role_type: "jwt".to_owned(),
            allowed_redirect_uris: Vec::new(),
            oidc_scopes: Vec::new(),
            bound_audiences: Vec::new(),
            bound_subject: None,
            bound_claims: Map::new(),
            bound_claims_type: "string".to_owned(),
            user_claim: "sub".to_owned(),
            groups_claim: None,
            claim_mappings: BTreeMap::new(),
            clock_skew_leeway: DEFAULT_LEEWAY,
            expiration_leeway: DEFAULT_LEEWAY,
            not_before_leeway: DEFAULT_LEEWAY,
            token_policies: Vec::new(),
            token_ttl: 0,
            token_max_ttl: 0,
            token_explicit_max_ttl: 0,
            token_num_uses: 0,
            token_period: 0,
            token_no_default_policy: false,
            token_bound_cidrs: Vec::new(),
        }
    }
}

/// A write to `auth/jwt/role/:name` (Vault API), as the HTTP edge decoded it (its wire
/// struct takes Vault's lenient forms and older field names); `None` keeps the current value
/// (or takes the default on creation).
#[derive(Clone, Debug, Default)]
// Tests write inputs as (canonical) JSON.
#[cfg_attr(test, derive(Deserialize), serde(default))]
pub struct JwtRoleInput {
    /// See [`JwtRole::role_type`].
    pub role_type: Option<String>,
    /// See [`JwtRole::allowed_redirect_uris`].
    pub allowed_redirect_uris: Option<Vec<String>>,
    /// See [`JwtRole::oidc_scopes`].
    pub oidc_scopes: Option<Vec<String>>,
    /// See [`JwtRole::bound_audiences`].
    pub bound_audiences: Option<Vec<String>>,
    /// See [`JwtRole::bound_subject`] (`""` clears it).
    pub bound_subject: Option<String>,
    /// See [`JwtRole::bound_claims`]; values may be strings, numbers, booleans or lists of
    /// them (stored as strings).
    pub bound_claims: Option<Map<String, Value>>,
    /// See [`JwtRole::bound_claims_type`].
    pub bound_claims_type: Option<String>,
    /// See [`JwtRole::user_claim`].
    pub user_claim: Option<String>,
    /// See [`JwtRole::groups_claim`] (`""` clears it).
    pub groups_claim: Option<String>,
    /// See [`JwtRole::claim_mappings`]: an object of strings.
    pub claim_mappings: Option<Map<String, Value>>,
    /// See [`JwtRole::clock_skew_leeway`].
    pub clock_skew_leeway: Option<u64>,
    /// See [`JwtRole::expiration_leeway`].
    pub expiration_leeway: Option<u64>,
    /// See [`JwtRole::not_before_leeway`].
    pub not_before_leeway: Option<u64>,
    /// See [`JwtRole::token_policies`].
    pub token_policies: Option<Vec<String>>,
    /// See [`JwtRole::token_ttl`].
    pub token_ttl: Option<u64>,
    /// See [`JwtRole::token_max_ttl`].
    pub token_max_ttl: Option<u64>,
    /// See [`JwtRole::token_explicit_max_ttl`].
    pub token_explicit_max_ttl: Option<u64>,
    /// See [`JwtRole::token_num_uses`].
    pub token_num_uses: Option<u64>,
    /// See [`JwtRole::token_period`].
    pub token_period: Option<u64>,
    /// See [`JwtRole::token_no_default_policy`].
    pub token_no_default_policy: Option<bool>,
    /// See [`JwtRole::token_bound_cidrs`].
    pub token_bound_cidrs: Option<Vec<String>>,
    /// Vault's token type: only service tokens exist here.
    pub token_type: Option<String>,
}

/// Longest accepted redirect URI, bytes.
const MAX_REDIRECT_URI_LEN: usize = 1024;

/// An allowed redirect URI: absolute http(s), a host, no fragment, bounded.
fn check_redirect_uri(uri: &str) -> Result<()> {
    let invalid = |why: &str| Error::invalid(format!("allowed_redirect_uris: {uri:?} {why}"));
    if uri.len() > MAX_REDIRECT_URI_LEN {
        return Err(invalid("is too long"));
    }
    let parsed = url::Url::parse(uri).map_err(|_| invalid("is not an absolute URI"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("is not an http or https URI"));
    }
    if parsed.host_str().is_none_or(str::is_empty) || parsed.fragment().is_some() {
        return Err(invalid("needs a host and no fragment"));
    }
    Ok(())
}

fn text(value: String) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

fn normalize_policies(policies: Vec<String>) -> Vec<String> {
    let set: BTreeSet<String> = policies
        .into_iter()
        .map(|p| p.trim().to_ascii_lowercase())
        .filter(|p| !p.is_empty())
        .collect();
    set.into_iter().collect()
}

fn leeway(field: &str, value: u64) -> Result<u64> {
    if value > MAX_LEEWAY {
        return Err(Error::invalid(format!(
            "{field} must be at most {MAX_LEEWAY} seconds"
        )));
    }
    Ok(value)
}

/// A bound claim's value as stored: a string, or a non-empty list of strings.
fn bound_claim_value(claim: &str, value: Value) -> Result<Value> {
    let invalid = || {
        Error::invalid(format!(
            "bound_claims: the value of {claim:?} must be a string or a list of strings"
        ))
    };
    let scalar = |value: Value| match value {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(invalid()),
    };
    match value {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(Error::invalid(format!(
                    "bound_claims: the list of {claim:?} is empty"
                )));
            }
            items
                .into_iter()
                .map(|item| scalar(item).map(Value::String))
                .collect::<Result<Vec<_>>>()
                .map(Value::Array)
        }
        other => scalar(other).map(Value::String),
    }
}

fn bound_claims(input: Map<String, Value>) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    for (claim, value) in input {
        if claim.trim().is_empty() {
            return Err(Error::invalid("bound_claims: a claim name is empty"));
        }
        let value = bound_claim_value(&claim, value)?;
        out.insert(claim, value);
    }
    Ok(out)
}

fn claim_mappings(input: Map<String, Value>) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut targets = BTreeSet::new();
    for (claim, target) in input {
        let Value::String(target) = target else {
            return Err(Error::invalid(format!(
                "claim_mappings: the metadata key of {claim:?} must be a string"
            )));
        };
        let target = target.trim().to_owned();
        if claim.trim().is_empty() || target.is_empty() {
            return Err(Error::invalid(
                "claim_mappings: claim names and metadata keys must not be empty",
            ));
        }
        if target == RESERVED_METADATA_KEY {
            return Err(Error::invalid(format!(
                "claim_mappings: metadata key {RESERVED_METADATA_KEY:?} is reserved and may not be set via claim mappings"
            )));
        }
        if !targets.insert(target.clone()) {
            return Err(Error::invalid(format!(
                "claim_mappings: multiple claims are mapped to metadata key {target:?}"
            )));
        }
        out.insert(claim, target);
    }
    Ok(out)
}

impl JwtRole {
    /// Applies a write to a role (or to a new role's defaults) and checks the result.
    ///
    /// A new role without `role_type` is an `oidc` role when it names
    /// `allowed_redirect_uris` (Vault's default type, which needs them) and a `jwt` role
    /// otherwise (as keybroker's roles have always been).
    ///
    /// Refused (400): an unknown role type, an `oidc` role without `allowed_redirect_uris`
    /// or with one that is not an absolute http(s) URI, a bound-claims type other
    /// than `string`/`glob`, leeways over [`MAX_LEEWAY`], a claim mapped to the reserved
    /// metadata key `role` or two claims mapped to one key, `token_ttl` over `token_max_ttl`,
    /// invalid CIDR blocks, a token type other than service, and a `jwt` role with no
    /// binding at all (no `bound_audiences`, `bound_subject` or `bound_claims`).
    pub fn apply(existing: Option<JwtRole>, input: JwtRoleInput) -> Result<JwtRole> {
        let creating = existing.is_none();
        let mut role = existing.unwrap_or_default();
        match input.role_type.as_deref().map(str::trim) {
            Some("jwt") => role.role_type = "jwt".to_owned(),
            Some("oidc") => role.role_type = "oidc".to_owned(),
            None | Some("") => {
                if creating
                    && input
                        .allowed_redirect_uris
                        .as_ref()
                        .is_some_and(|uris| !uris.is_empty())
                {
                    role.role_type = "oidc".to_owned();
                }
            }
            Some(other) => {
                return Err(Error::invalid(format!(
                    "invalid role_type {other:?}: use \"jwt\" or \"oidc\""
                )))
            }
        }
        if let Some(uris) = input.allowed_redirect_uris {
            let mut unique: Vec<String> = Vec::new();
            for uri in uris.iter().map(|u| u.trim()).filter(|u| !u.is_empty()) {
                check_redirect_uri(uri)?;
                if !unique.iter().any(|u| u == uri) {
                    unique.push(uri.to_owned());
                }
            }
            role.allowed_redirect_uris = unique;
        }
        if let Some(scopes) = input.oidc_scopes {
            let mut unique: Vec<String> = Vec::new();
            for scope in scopes.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
                if scope
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\\')
                {
                    return Err(Error::invalid(format!(
                        "oidc_scopes: invalid scope {scope:?}"
                    )));
                }
                if scope != "openid" && !unique.iter().any(|s| s == scope) {
                    unique.push(scope.to_owned());
                }
            }
            role.oidc_scopes = unique;
        }
        if input
            .token_type
            .as_deref()
            .map(str::trim)
            .is_some_and(|t| !matches!(t, "" | "default" | "service" | "default-service"))
        {
            return Err(Error::invalid(
                "token_type: only service tokens are supported",
            ));
        }
        if let Some(audiences) = input.bound_audiences {
            let mut unique: Vec<String> = Vec::new();
            for audience in audiences {
                if !unique.contains(&audience) {
                    unique.push(audience);
                }
            }
            role.bound_audiences = unique;
        }
        if let Some(subject) = input.bound_subject {
            role.bound_subject = text(subject);
        }
        if let Some(claims) = input.bound_claims {
            role.bound_claims = bound_claims(claims)?;
        }
        if let Some(kind) = input.bound_claims_type {
            match kind.trim() {
                "" | "string" => role.bound_claims_type = "string".to_owned(),
                "glob" => role.bound_claims_type = "glob".to_owned(),
                other => {
                    return Err(Error::invalid(format!(
                        "invalid bound_claims_type {other:?}: use \"string\" or \"glob\""
                    )))
                }
            }
        }
        if let Some(claim) = input.user_claim {
            role.user_claim = text(claim).ok_or_else(|| Error::invalid("user_claim is empty"))?;
        }
        if let Some(claim) = input.groups_claim {
            role.groups_claim = text(claim);
        }
        if let Some(mappings) = input.claim_mappings {
            role.claim_mappings = claim_mappings(mappings)?;
        }
        if let Some(value) = input.clock_skew_leeway {
            role.clock_skew_leeway = leeway("clock_skew_leeway", value)?;
        }
        if let Some(value) = input.expiration_leeway {
            role.expiration_leeway = leeway("expiration_leeway", value)?;
        }
        if let Some(value) = input.not_before_leeway {
            role.not_before_leeway = leeway("not_before_leeway", value)?;
        }
        if let Some(policies) = input.token_policies {
            let policies = normalize_policies(policies);
            crate::auth::token::refuse_root_for_auth_method("token_policies", &policies)?;
            role.token_policies = policies;
        }
        if let Some(ttl) = input.token_ttl {
            role.token_ttl = ttl;
        }
        if let Some(ttl) = input.token_max_ttl {
            role.token_max_ttl = ttl;
        }
        if let Some(ttl) = input.token_explicit_max_ttl {
            role.token_explicit_max_ttl = ttl;
        }
        if let Some(uses) = input.token_num_uses {
            role.token_num_uses = uses;
        }
        if let Some(period) = input.token_period {
            role.token_period = period;
        }
        if let Some(no_default) = input.token_no_default_policy {
            role.token_no_default_policy = no_default;
        }
        if let Some(cidrs) = input.token_bound_cidrs {
            role.token_bound_cidrs = cidr::canonical_list(&cidrs)?;
        }
        if role.token_max_ttl > 0 && role.token_ttl > role.token_max_ttl {
            return Err(Error::invalid(
                "token_ttl should not be greater than token_max_ttl",
            ));
        }
        if role.role_type == "oidc" && role.allowed_redirect_uris.is_empty() {
            return Err(Error::invalid(
                "'allowed_redirect_uris' must be set if 'role_type' is 'oidc' or unspecified",
            ));
        }
        // An oidc role's logins are bound to the mount's client: the ID token's audience.
        if role.role_type == "jwt"
            && role.bound_audiences.is_empty()
            && role.bound_subject.is_none()
            && role.bound_claims.is_empty()
        {
            return Err(Error::invalid(
                "must have at least one bound constraint when creating/updating a role",
            ));
        }
        Ok(role)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn input(value: Value) -> JwtRoleInput {
        serde_json::from_value(value).unwrap()
    }

    fn apply(existing: Option<JwtRole>, value: Value) -> Result<JwtRole> {
        JwtRole::apply(existing, input(value))
    }

    fn refused(value: Value, expected: &str) {
        match apply(None, value.clone()) {
            Err(Error::InvalidRequest(message)) => {
                assert!(message.contains(expected), "{value}: {message}")
            }
            other => panic!("{value}: expected a 400 containing {expected:?}, got {other:?}"),
        }
    }

    #[test]
    fn a_role_never_names_root() {
        for policies in [json!(["root"]), json!(["read", " Root "])] {
            refused(
                json!({"bound_audiences": ["api"], "token_policies": policies}),
                "cannot contain \"root\"",
            );
        }
    }

    #[test]
    fn defaults_of_a_new_role() {
        let role = apply(None, json!({"bound_audiences": ["api"]})).unwrap();
        assert_eq!(role.role_type, "jwt");
        assert_eq!(role.user_claim, "sub");
        assert_eq!(role.bound_claims_type, "string");
        assert_eq!(
            (
                role.clock_skew_leeway,
                role.expiration_leeway,
                role.not_before_leeway
            ),
            (60, 60, 60)
        );
        assert_eq!(role.bound_audiences, ["api"]);
        assert!(role.token_policies.is_empty());
    }

    #[test]
    fn a_role_is_normalised() {
        let role = apply(
            None,
            json!({
                "role_type": "jwt",
                "bound_audiences": ["a", "b", "a"],
                "bound_subject": "svc",
                "bound_claims": {"groups": ["ops", 7, true], "/org/id": 42},
                "bound_claims_type": "glob",
                "user_claim": "email",
                "groups_claim": "/realm/roles",
                "claim_mappings": {"email": "email", "/org/name": "org"},
                "clock_skew_leeway": 30,
                "expiration_leeway": 0,
                "not_before_leeway": 300,
                "token_policies": ["Read", " write", "read"],
                "token_ttl": 3600,
                "token_max_ttl": 7200,
                "token_explicit_max_ttl": 86400,
                "token_num_uses": 3,
                "token_period": 0,
                "token_no_default_policy": true,
                "token_bound_cidrs": ["10.0.0.0/8", "192.0.2.7"],
                "token_type": "service",
            }),
        )
        .unwrap();
        assert_eq!(role.bound_audiences, ["a", "b"]);
        assert_eq!(role.bound_subject.as_deref(), Some("svc"));
        assert_eq!(role.bound_claims["groups"], json!(["ops", "7", "true"]));
        assert_eq!(role.bound_claims["/org/id"], json!("42"));
        assert_eq!(role.bound_claims_type, "glob");
        assert_eq!(role.user_claim, "email");
        assert_eq!(role.groups_claim.as_deref(), Some("/realm/roles"));
        assert_eq!(role.claim_mappings["/org/name"], "org");
        assert_eq!(
            (
                role.clock_skew_leeway,
                role.expiration_leeway,
                role.not_before_leeway
            ),
            (30, 0, 300)
        );
        assert_eq!(role.token_policies, ["read", "write"]);
        assert_eq!((role.token_ttl, role.token_max_ttl), (3600, 7200));
        assert_eq!(role.token_explicit_max_ttl, 86400);
        assert_eq!(role.token_num_uses, 3);
        assert!(role.token_no_default_policy);
        assert_eq!(role.token_bound_cidrs, ["10.0.0.0/8", "192.0.2.7/32"]);

        // Stored as JSON and read back.
        let stored = serde_json::to_value(&role).unwrap();
        assert_eq!(serde_json::from_value::<JwtRole>(stored).unwrap(), role);
    }

    #[test]
    fn an_update_keeps_what_it_does_not_name() {
        let role = apply(
            None,
            json!({"bound_subject": "s", "token_policies": ["p"], "token_ttl": 60, "groups_claim": "groups"}),
        )
        .unwrap();
        let updated = apply(
            Some(role.clone()),
            json!({"token_ttl": 120, "groups_claim": ""}),
        )
        .unwrap();
        assert_eq!(updated.bound_subject.as_deref(), Some("s"));
        assert_eq!(updated.token_policies, ["p"]);
        assert_eq!(updated.token_ttl, 120);
        assert_eq!(updated.groups_claim, None);
        // Clearing the only binding is refused.
        assert!(apply(Some(role), json!({"bound_subject": ""})).is_err());
    }

    #[test]
    fn a_role_needs_a_binding() {
        let message = "must have at least one bound constraint";
        refused(json!({}), message);
        refused(
            json!({"token_policies": ["p"], "user_claim": "email"}),
            message,
        );
        refused(json!({"bound_audiences": [], "bound_claims": {}}), message);
        refused(json!({"bound_subject": "  "}), message);
        apply(None, json!({"bound_claims": {"team": "a"}})).unwrap();
        apply(None, json!({"bound_subject": "x"})).unwrap();
    }

    #[test]
    fn oidc_roles_need_redirect_uris_and_take_vaults_default_type() {
        refused(
            json!({"role_type": "oidc", "bound_audiences": ["a"]}),
            "'allowed_redirect_uris' must be set",
        );
        refused(
            json!({"role_type": "saml", "bound_audiences": ["a"]}),
            "invalid role_type",
        );
        for bad in ["/oidc/callback", "ftp://h/x", "https://h/x#f", "http://"] {
            refused(
                json!({"allowed_redirect_uris": [bad]}),
                "allowed_redirect_uris",
            );
        }
        refused(
            json!({"allowed_redirect_uris": ["http://localhost:8250/oidc/callback"], "oidc_scopes": ["a b"]}),
            "oidc_scopes",
        );
        // No type given: oidc with redirect URIs (no other binding needed), jwt without.
        let role = apply(
            None,
            json!({
                "allowed_redirect_uris": ["http://localhost:8250/oidc/callback", "https://b.example/cb"],
                "oidc_scopes": ["openid", "email", "email"],
            }),
        )
        .unwrap();
        assert_eq!(role.role_type, "oidc");
        assert_eq!(role.oidc_scopes, ["email"]);
        assert_eq!(role.allowed_redirect_uris.len(), 2);
        assert_eq!(
            apply(None, json!({"bound_audiences": ["a"]}))
                .unwrap()
                .role_type,
            "jwt"
        );
        // An update without a type keeps the role's.
        let updated = apply(Some(role), json!({"token_policies": ["p"]})).unwrap();
        assert_eq!(updated.role_type, "oidc");
    }

    #[test]
    fn bad_values_are_refused() {
        let base = || json!({"bound_audiences": ["a"]});
        for (field, value, expected) in [
            ("bound_claims_type", json!("regex"), "bound_claims_type"),
            ("clock_skew_leeway", json!(301), "clock_skew_leeway"),
            ("expiration_leeway", json!(600), "expiration_leeway"),
            ("not_before_leeway", json!(3600), "not_before_leeway"),
            ("user_claim", json!(""), "user_claim"),
            ("bound_claims", json!({"a": {"b": 1}}), "bound_claims"),
            ("bound_claims", json!({"a": [["x"]]}), "bound_claims"),
            ("bound_claims", json!({"a": null}), "bound_claims"),
            ("bound_claims", json!({"a": []}), "empty"),
            ("bound_claims", json!({"": "x"}), "empty"),
            ("claim_mappings", json!({"a": 1}), "claim_mappings"),
            ("claim_mappings", json!({"a": ""}), "claim_mappings"),
            ("claim_mappings", json!({"a": "role"}), "reserved"),
            ("claim_mappings", json!({"a": "x", "b": "x"}), "multiple"),
            ("token_bound_cidrs", json!(["10.0.0.0/33"]), "CIDR"),
            ("token_type", json!("batch"), "service"),
        ] {
            let mut body = base();
            body[field] = value;
            refused(body, expected);
        }
        refused(
            json!({"bound_audiences": ["a"], "token_ttl": 7200, "token_max_ttl": 3600}),
            "token_ttl should not be greater",
        );
    }
}
