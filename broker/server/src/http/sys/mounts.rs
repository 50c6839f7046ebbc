//! Mount listings and tuning (Vault API: sys/mounts, sys/auth, and their `tune`), and the
//! listing clients read to find a path's engine, `sys/internal/ui/mounts` (Vault API:
//! internal-ui-mounts).
//!
//! A mount's tuning is kept in its configuration (`keybroker_core::mounts::Tuning`). Only
//! settings that change nothing the broker enforces are kept; those that would (an auth
//! mount's lease TTLs capping the tokens it issues, unhashed audit fields, another token
//! type, a plugin version) are refused with a 400 rather than kept and ignored.

use keybroker_core::{
    auth::token::Caller,
    mounts::{self, ListingVisibility, Tuning},
    store::MountRecord,
    Tenant,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::super::{
    body, error::ApiError, input, policies::policy_path, response, ApiRequest, Operation, Ready,
};
use axum::response::Response;

/// Whether a mount is a secrets engine (`sys/mounts`) or an auth method (`sys/auth`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Table {
    /// `sys/mounts`.
    Engines,
    /// `sys/auth`.
    Auth,
}

impl Table {
    /// The path the mount table holds for a path as `sys/mounts/:path` or `sys/auth/:path`
    /// name it.
    fn full_path(self, path: &str) -> Result<String, ApiError> {
        Ok(match self {
            Table::Engines => mounts::normalize_path(path)?,
            Table::Auth => mounts::normalize_auth_path(path)?,
        })
    }
}

/// A mount's `config` as listed: the tuned values, `0` for the system's.
fn config_json(tuning: &Tuning, auth: bool) -> Map<String, Value> {
    let mut config = Map::new();
    config.insert("default_lease_ttl".into(), json!(tuning.default_lease_ttl));
    config.insert("max_lease_ttl".into(), json!(tuning.max_lease_ttl));
    config.insert("force_no_cache".into(), json!(false));
    add_tuned_lists(&mut config, tuning);
    if auth {
        config.insert("token_type".into(), json!("default-service"));
    }
    config
}

/// The optional settings Vault reports only when set.
fn add_tuned_lists(into: &mut Map<String, Value>, tuning: &Tuning) {
    let lists = [
        (
            "audit_non_hmac_request_keys",
            &tuning.audit_non_hmac_request_keys,
        ),
        (
            "audit_non_hmac_response_keys",
            &tuning.audit_non_hmac_response_keys,
        ),
        (
            "passthrough_request_headers",
            &tuning.passthrough_request_headers,
        ),
        ("allowed_response_headers", &tuning.allowed_response_headers),
    ];
    for (name, list) in lists {
        if !list.is_empty() {
            into.insert(name.into(), json!(list));
        }
    }
    if tuning.listing_visibility != ListingVisibility::Default {
        into.insert(
            "listing_visibility".into(),
            json!(tuning.listing_visibility.as_str()),
        );
    }
}

/// The accessor of a mount (Vault: `<type>_<8 hex>`, `auth_<type>_<8 hex>`).
pub(super) fn accessor(mount: &MountRecord) -> String {
    let short = &mount.id.to_string()[..8];
    if mounts::is_auth(mount) {
        format!("auth_{}_{short}", mount.kind)
    } else {
        format!("{}_{short}", mount.kind)
    }
}

/// A mount as `sys/mounts` and `sys/auth` list it, every field Vault gives.
pub(super) fn mount_json(mount: &MountRecord) -> Value {
    let tuning = Tuning::of(mount);
    json!({
        "type": mount.kind,
        "description": tuning.description(mount),
        "accessor": accessor(mount),
        "uuid": mount.id.to_string(),
        "config": config_json(&tuning, mounts::is_auth(mount)),
        "options": tuning.options,
        "local": false,
        "seal_wrap": false,
        "external_entropy_access": false,
        "plugin_version": "",
        "running_plugin_version": "",
        "running_sha256": "",
        "deprecation_status": "supported",
    })
}

/// The built-in `sys/` mount.
fn system_json() -> Value {
    json!({
        "type": "system", "description": "system endpoints used for control, policy and debugging",
        "accessor": "system", "uuid": "",
        "config": { "default_lease_ttl": 0, "max_lease_ttl": 0, "force_no_cache": false },
        "options": null, "local": false, "seal_wrap": true, "external_entropy_access": false,
        "plugin_version": "", "running_plugin_version": "", "running_sha256": "",
    })
}

/// The built-in `auth/token/` method.
fn token_json() -> Value {
    json!({
        "type": "token", "description": "token based credentials",
        "accessor": "auth_token", "uuid": "",
        "config": { "default_lease_ttl": 0, "max_lease_ttl": 0, "force_no_cache": false,
                    "token_type": "default-service" },
        "options": null, "local": false, "seal_wrap": false, "external_entropy_access": false,
        "plugin_version": "", "running_plugin_version": "", "running_sha256": "",
    })
}

/// `GET sys/mounts` or `GET sys/auth`: every mount of the table, built-ins included, at the
/// top level and under `data` as Vault answers.
pub(super) async fn list(
    ready: &Ready,
    tenant: &Tenant,
    table: Table,
) -> Result<Response, ApiError> {
    let mounts = ready.broker.mounts.table(tenant.id).await?;
    let mut data = Map::new();
    for mount in mounts.iter() {
        match (table, mount.path.strip_prefix(mounts::AUTH_PREFIX)) {
            (Table::Engines, None) => {
                data.insert(mount.path.clone(), mount_json(mount));
            }
            (Table::Auth, Some(name)) => {
                data.insert(name.to_owned(), mount_json(mount));
            }
            _ => {}
        }
    }
    match table {
        Table::Engines => data.insert("sys/".to_owned(), system_json()),
        Table::Auth => data.insert("token/".to_owned(), token_json()),
    };
    Ok(response::legacy(&data))
}

async fn find(
    ready: &Ready,
    tenant: &Tenant,
    full: &str,
) -> Result<Option<std::sync::Arc<MountRecord>>, ApiError> {
    let mounts = ready.broker.mounts.table(tenant.id).await?;
    Ok(mounts.iter().find(|m| m.path == full).cloned())
}

/// `GET sys/mounts/:path` or `GET sys/auth/:path`: one mount (400 when there is none, as
/// in Vault).
pub(super) async fn read(
    ready: &Ready,
    tenant: &Tenant,
    table: Table,
    path: &str,
) -> Result<Response, ApiError> {
    let full = table.full_path(path)?;
    let mount = find(ready, tenant, &full)
        .await?
        .ok_or_else(|| match table {
            Table::Engines => ApiError::bad_request(format!("No secret engine mount at {full}")),
            Table::Auth => ApiError::bad_request(format!("No auth engine at {full}")),
        })?;
    legacy_of(mount_json(&mount))
}

fn legacy_of(value: Value) -> Result<Response, ApiError> {
    match value {
        Value::Object(map) => Ok(response::legacy(&map)),
        _ => Err(ApiError::Core(keybroker_core::Error::internal(
            "a mount is not an object",
        ))),
    }
}

/// Vault API: sys/mounts/:path/tune and sys/auth/:path/tune, write; also the `config`
/// of an enable.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct TuneBody {
    description: Option<String>,
    default_lease_ttl: Option<Value>,
    max_lease_ttl: Option<Value>,
    listing_visibility: Option<String>,
    #[serde(deserialize_with = "input::opt_string_list")]
    audit_non_hmac_request_keys: Option<Vec<String>>,
    #[serde(deserialize_with = "input::opt_string_list")]
    audit_non_hmac_response_keys: Option<Vec<String>>,
    #[serde(deserialize_with = "input::opt_string_list")]
    passthrough_request_headers: Option<Vec<String>>,
    #[serde(deserialize_with = "input::opt_string_list")]
    allowed_response_headers: Option<Vec<String>>,
    #[serde(deserialize_with = "input::opt_object")]
    options: Option<Map<String, Value>>,
    token_type: Option<String>,
    #[serde(deserialize_with = "input::opt_bool")]
    force_no_cache: Option<bool>,
    // Settings that would change what the broker enforces: refused when given.
    #[serde(deserialize_with = "input::present")]
    plugin_version: bool,
    #[serde(deserialize_with = "input::present")]
    user_lockout_config: bool,
    #[serde(deserialize_with = "input::present")]
    allowed_managed_keys: bool,
    #[serde(deserialize_with = "input::present")]
    delegated_auth_accessors: bool,
    #[serde(deserialize_with = "input::present")]
    identity_token_key: bool,
}

/// A TTL of a tune: a duration, or `system` (or `0`) for the system's.
fn ttl(name: &str, value: Option<Value>) -> Result<Option<u64>, ApiError> {
    match value {
        Some(Value::String(text)) if text.trim() == "system" => Ok(Some(0)),
        Some(value) => input::opt_duration_secs(value)
            .map_err(|error| ApiError::bad_request(format!("invalid {name}: {error}"))),
        None => Ok(None),
    }
}

impl TuneBody {
    /// Sets the engine's options (an enable gives them beside its `config`).
    pub(super) fn set_options(&mut self, options: Option<Map<String, Value>>) {
        self.options = options;
    }

    /// `current` with this body's changes applied, or the refusal of a setting the broker
    /// would not honour.
    pub(super) fn apply(self, mut tuning: Tuning, auth: bool) -> Result<Tuning, ApiError> {
        let refused = [
            ("plugin_version", self.plugin_version),
            ("user_lockout_config", self.user_lockout_config),
            ("allowed_managed_keys", self.allowed_managed_keys),
            ("delegated_auth_accessors", self.delegated_auth_accessors),
            ("identity_token_key", self.identity_token_key),
        ];
        if let Some((name, _)) = refused.iter().find(|(_, given)| *given) {
            return Err(ApiError::bad_request(format!(
                "{name} is not supported by keybroker"
            )));
        }
        if self.force_no_cache == Some(true) {
            return Err(ApiError::bad_request(
                "force_no_cache is not supported by keybroker: transit keys are always cached",
            ));
        }
        // Unhashed audit fields would put caller input in the log in the clear: the audit
        // log hashes every field, and says so rather than keep a setting it ignores.
        for (name, list) in [
            (
                "audit_non_hmac_request_keys",
                &self.audit_non_hmac_request_keys,
            ),
            (
                "audit_non_hmac_response_keys",
                &self.audit_non_hmac_response_keys,
            ),
        ] {
            if list.as_ref().is_some_and(|l| !l.is_empty()) {
                return Err(ApiError::bad_request(format!(
                    "{name} is not supported by keybroker: the audit log hashes every field"
                )));
            }
        }
        match self.token_type.as_deref().map(str::trim) {
            None | Some("") => {}
            Some(_) if !auth => {
                return Err(ApiError::bad_request(
                    "'token_type' can only be modified on auth mounts",
                ))
            }
            Some("default-service" | "service") => {}
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                "token_type {other:?} is not supported by keybroker: it issues service tokens only"
            )))
            }
        }
        let default_ttl = ttl("default_lease_ttl", self.default_lease_ttl)?;
        let max_ttl = ttl("max_lease_ttl", self.max_lease_ttl)?;
        // An auth mount's TTLs would cap the tokens it issues: the broker takes them from
        // the role (`token_ttl`, `token_max_ttl`) and would not apply these.
        if auth && (default_ttl.unwrap_or(0) != 0 || max_ttl.unwrap_or(0) != 0) {
            return Err(ApiError::bad_request(
                "an auth mount's default_lease_ttl and max_lease_ttl are not supported by \
                 keybroker: set the role's token_ttl and token_max_ttl",
            ));
        }
        if let Some(seconds) = default_ttl {
            tuning.default_lease_ttl = seconds;
        }
        if let Some(seconds) = max_ttl {
            tuning.max_lease_ttl = seconds;
        }
        if let Some(description) = self.description {
            tuning.description = Some(description);
        }
        if let Some(visibility) = self.listing_visibility {
            tuning.listing_visibility = ListingVisibility::parse(visibility.trim())?;
        }
        if let Some(list) = self.passthrough_request_headers {
            tuning.passthrough_request_headers = list;
        }
        if let Some(list) = self.allowed_response_headers {
            tuning.allowed_response_headers = list;
        }
        if let Some(options) = self.options {
            // Merged into the options kept, an empty value removing its option, as Vault's
            // tune does (`bao secrets tune -options=version=2` keeps the others).
            let mut kept = tuning.options.take().unwrap_or_default();
            for (name, value) in options {
                let text = match value {
                    Value::String(text) => text,
                    Value::Number(number) => number.to_string(),
                    Value::Bool(flag) => flag.to_string(),
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "option {name:?} must be a string"
                        )))
                    }
                };
                if text.is_empty() {
                    kept.remove(&name);
                } else {
                    kept.insert(name, text);
                }
            }
            tuning.options = Some(kept);
        }
        tuning.check()?;
        Ok(tuning)
    }
}

/// `GET/POST sys/mounts/:path/tune` and `sys/auth/:path/tune`. A write answers 204, as in
/// Vault.
pub(super) async fn tune(
    ready: &Ready,
    tenant: &Tenant,
    table: Table,
    path: &str,
    request: &ApiRequest,
) -> Result<Response, ApiError> {
    if matches!(request.operation, Operation::List | Operation::Delete) {
        return Err(ApiError::UnsupportedOperation);
    }
    if table == Table::Auth && path.trim_matches('/') == "token" {
        return builtin_token_tune(request);
    }
    let full = table.full_path(path)?;
    let mount = find(ready, tenant, &full)
        .await?
        .ok_or_else(|| ApiError::bad_request(format!("cannot fetch mount entry on \"{full}\"")))?;
    let auth = table == Table::Auth;
    match request.operation {
        Operation::Read => {
            let tuning = Tuning::of(&mount);
            let mut data = Map::new();
            data.insert("description".into(), json!(tuning.description(&mount)));
            data.insert(
                "default_lease_ttl".into(),
                json!(tuning.effective_default_ttl()),
            );
            data.insert("max_lease_ttl".into(), json!(tuning.effective_max_ttl()));
            data.insert("force_no_cache".into(), json!(false));
            add_tuned_lists(&mut data, &tuning);
            if let Some(options) = &tuning.options {
                data.insert("options".into(), json!(options));
            }
            if auth {
                data.insert("token_type".into(), json!("default-service"));
            }
            Ok(response::legacy(&data))
        }
        Operation::Write => {
            let input: TuneBody = body::parse(&request.body)?;
            let before = Tuning::of(&mount);
            let tuning = input.apply(before.clone(), auth)?;
            if let Some(kind) = ready.kinds.get(&mount.kind) {
                kind.configure(ready, tenant, &mount, Some(&before), &tuning)
                    .await?;
            }
            ready.broker.mounts.tune(tenant.id, &full, &tuning).await?;
            Ok(response::no_content())
        }
        Operation::List | Operation::Delete | Operation::Patch => {
            Err(ApiError::UnsupportedOperation)
        }
    }
}

/// The built-in token method's tune: read as Vault reports an untuned one; never written
/// (its TTLs are the server's `token_default_ttl` and `token_max_ttl`).
fn builtin_token_tune(request: &ApiRequest) -> Result<Response, ApiError> {
    if request.operation != Operation::Read {
        return Err(ApiError::bad_request(
            "auth/token/ is built in and cannot be tuned in keybroker: its TTLs are the \
             server's token_default_ttl and token_max_ttl",
        ));
    }
    let tuning = Tuning::default();
    let mut data = Map::new();
    data.insert("description".into(), json!("token based credentials"));
    data.insert(
        "default_lease_ttl".into(),
        json!(tuning.effective_default_ttl()),
    );
    data.insert("max_lease_ttl".into(), json!(tuning.effective_max_ttl()));
    data.insert("force_no_cache".into(), json!(false));
    data.insert("token_type".into(), json!("default-service"));
    Ok(response::legacy(&data))
}

/// Whether `rest` (below `sys/`) is the UI's mount listing.
pub(in super::super) fn is_ui_mounts(rest: &str) -> bool {
    let rest = rest.trim_end_matches('/');
    rest == "internal/ui/mounts" || rest.starts_with("internal/ui/mounts/")
}

/// Who looks at `sys/internal/ui/mounts`.
pub(in super::super) enum Viewer<'a> {
    /// No token: only mounts tuned `listing_visibility=unauth`, with their type,
    /// description and options.
    Anonymous,
    /// A token: the mounts its policies reach, in full.
    Token(&'a Caller),
}

/// `GET sys/internal/ui/mounts[/:path]` (Vault API: internal-ui-mounts): the mounts of the
/// tenant `viewer` may see, as `secret` and `auth` maps; with a path, the one mount serving
/// it, with its `path`.
pub(in super::super) async fn ui_mounts(
    ready: &Ready,
    viewer: Viewer<'_>,
    tenant: &Tenant,
    rest: &str,
) -> Result<Response, ApiError> {
    let acl = match viewer {
        Viewer::Token(caller) => Some((
            caller,
            ready
                .broker
                .policies
                .acl(caller.tenant(), &caller.token.policies)
                .await?,
        )),
        Viewer::Anonymous => None,
    };
    // What the viewer sees of a mount at `path`, if anything.
    let view = |path: &str, entry: Value, visibility: ListingVisibility| -> Option<Value> {
        match &acl {
            Some((caller, acl)) => acl
                .reaches_below(&policy_path(caller.tenant(), tenant, path))
                .then_some(entry),
            None if visibility == ListingVisibility::Unauth => Some(json!({
                "type": entry["type"], "description": entry["description"],
                "options": entry["options"],
            })),
            None => None,
        }
    };
    let table = ready.broker.mounts.table(tenant.id).await?;
    let mut entries: Vec<(String, Value)> = vec![
        ("sys/".to_owned(), system_json()),
        ("auth/token/".to_owned(), token_json()),
    ];
    let visibility: Vec<ListingVisibility> = table
        .iter()
        .map(|m| Tuning::of(m).listing_visibility)
        .collect();
    entries.extend(table.iter().map(|m| (m.path.clone(), mount_json(m))));
    let visibility_of = |index: usize| {
        index
            .checked_sub(2)
            .and_then(|i| visibility.get(i).copied())
            .unwrap_or_default()
    };
    let target = rest
        .trim_end_matches('/')
        .strip_prefix("internal/ui/mounts")
        .unwrap_or_default()
        .trim_start_matches('/');
    if target.is_empty() {
        let (mut secret, mut auth) = (Map::new(), Map::new());
        for (index, (path, entry)) in entries.into_iter().enumerate() {
            let Some(seen) = view(&path, entry, visibility_of(index)) else {
                continue;
            };
            match path.strip_prefix(mounts::AUTH_PREFIX) {
                Some(name) => auth.insert(name.to_owned(), seen),
                None => secret.insert(path, seen),
            };
        }
        return Ok(response::data(&json!({ "secret": secret, "auth": auth })));
    }
    let wanted = format!("{}/", target.trim_end_matches('/'));
    let found = entries
        .into_iter()
        .enumerate()
        .filter(|(_, (path, _))| wanted.starts_with(path.as_str()))
        .max_by_key(|(_, (path, _))| path.len());
    let denied = || {
        ApiError::Forbidden(format!(
            "preflight capability check returned 403, please ensure client's policies grant \
             access to path \"{wanted}\""
        ))
    };
    let (index, (path, entry)) = found.ok_or_else(denied)?;
    let mut seen = view(&path, entry, visibility_of(index)).ok_or_else(denied)?;
    if let Some(fields) = seen.as_object_mut() {
        fields.insert("path".to_owned(), json!(path));
    }
    Ok(response::data(&seen))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tune(body: Value, auth: bool) -> Result<Tuning, ApiError> {
        let input: TuneBody = serde_json::from_value(body).unwrap();
        input.apply(Tuning::default(), auth)
    }

    #[test]
    fn a_tune_keeps_what_it_may_and_refuses_what_the_broker_would_not_honour() {
        let tuned = tune(
            json!({"description": "d", "default_lease_ttl": "1h", "max_lease_ttl": 7200,
                   "listing_visibility": "unauth", "passthrough_request_headers": "X-A,X-B",
                   "allowed_response_headers": ["X-C"], "options": {"version": 2},
                   "audit_non_hmac_request_keys": []}),
            false,
        )
        .unwrap();
        assert_eq!(tuned.description.as_deref(), Some("d"));
        assert_eq!((tuned.default_lease_ttl, tuned.max_lease_ttl), (3600, 7200));
        assert_eq!(tuned.listing_visibility, ListingVisibility::Unauth);
        assert_eq!(tuned.passthrough_request_headers, ["X-A", "X-B"]);
        assert_eq!(tuned.options.unwrap()["version"], "2");
        // `system` resets a TTL.
        let reset: TuneBody =
            serde_json::from_value(json!({"default_lease_ttl": "system"})).unwrap();
        let again = reset
            .apply(
                Tuning {
                    default_lease_ttl: 60,
                    ..Tuning::default()
                },
                false,
            )
            .unwrap();
        assert_eq!(again.default_lease_ttl, 0);

        for refused in [
            json!({"audit_non_hmac_request_keys": ["plaintext"]}),
            json!({"audit_non_hmac_response_keys": "ciphertext"}),
            json!({"plugin_version": "v1.0.0"}),
            json!({"user_lockout_config": {"lockout_threshold": 1}}),
            json!({"force_no_cache": true}),
            json!({"token_type": "service"}),
            json!({"listing_visibility": "everyone"}),
            json!({"default_lease_ttl": "3h", "max_lease_ttl": "2h"}),
            json!({"default_lease_ttl": "soon"}),
            json!({"options": {"nested": {"a": 1}}}),
        ] {
            assert!(tune(refused.clone(), false).is_err(), "{refused}");
        }
        // An auth mount's TTLs would cap its tokens: refused; the token type it issues is
        // accepted by name, any other refused.
        assert!(tune(json!({"default_lease_ttl": "1h"}), true).is_err());
        assert!(tune(json!({"max_lease_ttl": 60}), true).is_err());
        assert!(tune(json!({"token_type": "batch"}), true).is_err());
        assert!(tune(
            json!({"token_type": "default-service", "description": "x"}),
            true
        )
        .is_ok());
    }

    #[test]
    fn ui_mount_paths_are_recognised() {
        assert!(is_ui_mounts("internal/ui/mounts"));
        assert!(is_ui_mounts("internal/ui/mounts/transit/keys/k"));
        assert!(!is_ui_mounts("internal/ui/mountsx"));
        assert!(!is_ui_mounts("mounts"));
    }
}
