//! `sys/` endpoints: health and seal status (Vault semantics), mounts, auth methods, backend
//! plugins and the agents connected to them, metrics. Mount listings and tuning, and the
//! UI's listing of mounts: [`mounts`].

mod mounts;

use mounts::Table;
pub(super) use mounts::{is_ui_mounts, ui_mounts, Viewer};

use std::collections::HashMap;

use axum::{
    body::Body,
    http::{header, HeaderValue, StatusCode},
    response::Response,
};
use keybroker_core::{backend::BackendInstance, Tenant};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{
    body,
    error::ApiError,
    kind::{Call, Class, Handled, MountKind, Spec},
    response,
    routes::{anonymous, route, Route},
    ApiRequest, AppState, Operation, Ready,
};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The system backend's type name (`sys/`, built in).
pub(super) const KIND: &str = "system";

/// Every `sys/` route.
pub(super) const ROUTES: &[Route] = {
    use Operation::{Delete as D, List as L, Read as R, Write as W};
    &[
        // Health, for load balancers and clients (Vault: unauthenticated).
        anonymous(route("sys/health", &[R])),
        anonymous(route("sys/seal-status", &[R])),
        anonymous(route("sys/leader", &[R])),
        anonymous(route("sys/init", &[R])),
        // The API's OpenAPI document (Vault: unauthenticated): the software's, not the state's.
        anonymous(route("sys/internal/specs/openapi", &[R])),
        // Mounts and auth methods, and their tuning.
        route("sys/mounts", &[R, L]),
        route("sys/mounts/*path", &[R, W, D]),
        route("sys/mounts/*path/tune", &[R, W]),
        route("sys/auth", &[R, L]),
        route("sys/auth/*path", &[R, W, D]),
        route("sys/auth/*path/tune", &[R, W]),
        // What the CLI and UIs read to find a path's engine: anyone, each seeing the mounts
        // its policies reach (anonymous callers: those tuned `listing_visibility=unauth`).
        route("sys/internal/ui/mounts", &[R]),
        route("sys/internal/ui/mounts/*path", &[R]),
        // Policies (and the legacy `sys/policy`), capabilities.
        route("sys/policies/acl", &[R, L]),
        route("sys/policies/acl/:name", &[R, W, D]),
        route("sys/policy", &[R, L]),
        route("sys/policy/:name", &[R, W, D]),
        // Response wrapping (`super::wrapping`): unwrap, lookup and rewrap also take the
        // wrapping token itself, and lookup no token, served by the edge before this list.
        route("sys/wrapping/wrap", &[W]),
        route("sys/wrapping/unwrap", &[W]),
        route("sys/wrapping/lookup", &[W]),
        route("sys/wrapping/rewrap", &[W]),
        route("sys/capabilities", &[W]),
        route("sys/capabilities-self", &[W]),
        route("sys/capabilities-accessor", &[W]),
        // Tenants, plugins, agents, metrics, audit: the operator's (some with a tenant's
        // view).
        route("sys/namespaces", &[R, L]),
        route("sys/namespaces/:name", &[R, W, D]),
        route("sys/plugins/backends", &[R, L]),
        route("sys/plugins/reload", &[W]),
        route("sys/agents", &[R, L]),
        route("sys/metrics", &[R]),
        route("sys/audit-hash/:name", &[W]),
    ]
};

/// `sys/`, built in.
pub(super) struct System;

#[async_trait::async_trait]
impl MountKind for System {
    fn spec(&self) -> &'static Spec {
        &Spec {
            name: KIND,
            class: Class::Builtin,
            routes: ROUTES,
            // Vault's root-protected paths, and ours. Enabling and disabling auth methods
            // is root-protected in Vault; listing them is not.
            sudo_paths: &[
                "sys/plugins/reload",
                "sys/plugins/backends",
                "sys/agents",
                "sys/namespaces",
                "sys/metrics",
                "sys/auth/*",
                // Tuning an auth method takes the authority that enabling it takes.
                "sys/mounts/auth/*",
            ],
        }
    }

    async fn handle(&self, call: Call<'_>) -> Handled {
        if call.rest.starts_with("sys/wrapping/") {
            let (ready, tenant) = (call.ready, call.tenant);
            return super::wrapping::by_caller(
                ready,
                tenant,
                call.rest,
                call.headers,
                call.request,
            )
            .await;
        }
        let rest = call.rest.strip_prefix("sys/").unwrap_or(call.rest);
        handle(
            call.state,
            call.ready,
            call.caller,
            call.tenant,
            rest,
            call.request,
        )
        .await
    }
}

/// `GET /v1/sys/health` (Vault API: sys/health): 200 unsealed, 503 sealed, with Vault's
/// query overrides for the codes. `details`: our fields beyond Vault's (why it is sealed or
/// out of sync), for the root namespace only.
pub(super) fn health(state: &AppState, query: &HashMap<String, String>, details: bool) -> Response {
    let sealed = state.inner.ready.is_none();
    let code = |name: &str, default: u16| {
        query
            .get(name)
            .and_then(|v| v.parse::<u16>().ok())
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::from_u16(default).unwrap_or(StatusCode::OK))
    };
    // A cluster node out of touch with its database says so, and load balancers take it
    // out of rotation: it refuses authenticated requests until it is back in sync.
    let stale = state.stale_reason();
    let status = if sealed {
        code("sealedcode", 503)
    } else if stale.is_some() {
        code("stalecode", 503)
    } else {
        code("activecode", 200)
    };
    let now = super::token::now();
    let mut body = json!({
        "initialized": true,
        "sealed": sealed,
        "standby": false,
        "performance_standby": false,
        "replication_performance_mode": "disabled",
        "replication_dr_mode": "disabled",
        "server_time_utc": now,
        "version": VERSION,
        "cluster_name": "keybroker",
    });
    if !details {
        return response::json(status, &body);
    }
    if let (Some(reason), Some(map)) = (&state.inner.sealed_reason, body.as_object_mut()) {
        map.insert("sealed_reason".to_owned(), json!(reason));
    }
    if let Some(map) = body.as_object_mut() {
        map.insert("storage_in_sync".to_owned(), json!(stale.is_none()));
        if let Some(reason) = stale {
            map.insert("storage_reason".to_owned(), json!(reason));
        }
    }
    response::json(status, &body)
}

/// `GET /v1/sys/seal-status` (Vault API: sys/seal-status); `details` as for [`health`].
pub(super) fn seal_status(state: &AppState, details: bool) -> Response {
    let mut body = json!({
        "type": state.inner.seal_type,
        "initialized": true,
        "sealed": state.inner.ready.is_none(),
        "t": 1,
        "n": 1,
        "progress": 0,
        "nonce": "",
        "version": VERSION,
        "migration": false,
        "recovery_seal": false,
        "storage_type": state.inner.storage_type,
    });
    if !details {
        return response::json(StatusCode::OK, &body);
    }
    if let (Some(reason), Some(map)) = (&state.inner.sealed_reason, body.as_object_mut()) {
        map.insert("sealed_reason".to_owned(), json!(reason));
    }
    response::json(StatusCode::OK, &body)
}

/// `GET /v1/sys/init` (Vault API: sys/init, read): a broker that answers is initialised
/// (its root key was made or given at start-up).
pub(super) fn init() -> Response {
    response::json(StatusCode::OK, &json!({ "initialized": true }))
}

/// `GET /v1/sys/internal/specs/openapi` (Vault API: sys/internal/specs/openapi), for anyone:
/// see [`super::openapi`]. Sealed, it answers as every path does.
pub(super) fn openapi(state: &AppState, operation: Operation) -> Result<Response, ApiError> {
    let ready = state
        .inner
        .ready
        .as_ref()
        .ok_or(ApiError::Core(keybroker_core::Error::Sealed))?;
    if operation != Operation::Read {
        return Err(ApiError::UnsupportedOperation);
    }
    Ok(super::openapi::response(&ready.kinds))
}

/// `GET /v1/sys/leader` (Vault API: sys/leader): every node serves, none is a leader.
pub(super) fn leader() -> Response {
    response::json(
        StatusCode::OK,
        &json!({
            "ha_enabled": false,
            "is_self": false,
            "active_time": "0001-01-01T00:00:00Z",
            "leader_address": "",
            "leader_cluster_address": "",
            "performance_standby": false,
            "performance_standby_last_remote_wal": 0,
        }),
    )
}

/// Authenticated `sys/…` routes.
async fn handle(
    state: &AppState,
    ready: &Ready,
    caller: &keybroker_core::auth::token::Caller,
    tenant: &Tenant,
    rest: &str,
    request: &ApiRequest,
) -> (&'static str, Result<Response, ApiError>) {
    let rest = rest.trim_end_matches('/');
    if tenant.id != keybroker_core::TenantId::ROOT && is_global(rest) {
        // The operator's operations over the whole broker do not exist inside a tenant.
        return ("sys", Err(ApiError::UnsupportedPath));
    }
    if rest == "namespaces" || rest.starts_with("namespaces/") {
        return (
            "sys/namespaces",
            namespaces(ready, tenant, rest, request).await,
        );
    }
    let policy_api = match rest.strip_prefix("policies/acl") {
        Some(name) => Some((name, super::policies::Api::Acl)),
        None => rest
            .strip_prefix("policy")
            .map(|name| (name, super::policies::Api::Legacy)),
    };
    if let Some((name, api)) = policy_api.filter(|(n, _)| n.is_empty() || n.starts_with('/')) {
        let name = name.trim_start_matches('/');
        let result = super::policies::acl(ready, tenant, name, request, api).await;
        return ("sys/policies", result);
    }
    if let Some(path) = rest
        .strip_prefix("auth/")
        .or_else(|| rest.strip_prefix("mounts/"))
        .and_then(|path| path.strip_suffix("/tune"))
    {
        // `bao auth tune` tunes `sys/mounts/auth/<path>`.
        let (table, path) = match path.strip_prefix("auth/") {
            Some(auth) if rest.starts_with("mounts/") => (Table::Auth, auth),
            _ if rest.starts_with("auth/") => (Table::Auth, path),
            _ => (Table::Engines, path),
        };
        let result = mounts::tune(ready, tenant, table, path, request).await;
        return ("sys/tune", result);
    }
    if is_ui_mounts(rest) {
        let result = ui_mounts(ready, Viewer::Token(caller), tenant, rest).await;
        return ("sys/internal/ui/mounts", result);
    }
    if rest == "auth" || rest.starts_with("auth/") {
        let path = rest
            .strip_prefix("auth")
            .unwrap_or_default()
            .trim_start_matches('/');
        return ("sys/auth", auth_methods(ready, tenant, path, request).await);
    }
    if rest == "capabilities-accessor" && request.operation == Operation::Write {
        let result = super::policies::capabilities_accessor(ready, tenant, request).await;
        return ("sys/capabilities", result);
    }
    if matches!(rest, "capabilities-self" | "capabilities") && request.operation == Operation::Write
    {
        let self_only = rest == "capabilities-self";
        let result = super::policies::capabilities(ready, caller, tenant, self_only, request).await;
        return ("sys/capabilities", result);
    }
    match (rest, request.operation) {
        ("mounts", Operation::Read | Operation::List) => (
            "sys/mounts",
            mounts::list(ready, tenant, Table::Engines).await,
        ),
        ("plugins/backends", Operation::Read | Operation::List) => {
            ("sys/plugins/backends", Ok(backends(ready, tenant)))
        }
        ("agents", Operation::Read | Operation::List) => {
            ("sys/agents", Ok(agents(ready, tenant).await))
        }
        ("plugins/reload", Operation::Write) => {
            ready.host.reload_everywhere().await;
            ("sys/plugins/reload", Ok(backends(ready, tenant)))
        }
        ("metrics", Operation::Read) => ("sys/metrics", metrics(state, request)),
        ("internal/specs/openapi", Operation::Read) => (
            "sys/internal/specs/openapi",
            Ok(super::openapi::response(&ready.kinds)),
        ),
        (path, Operation::Write) if path.starts_with("audit-hash/") => {
            ("sys/audit-hash", audit_hash(state, path, request))
        }
        (path, operation) if path.starts_with("mounts/") => {
            let mount = path.trim_start_matches("mounts/");
            let result = match operation {
                Operation::Write => {
                    enable_mount(ready, tenant, mount, request, Table::Engines).await
                }
                Operation::Delete => disable_mount(ready, tenant, mount).await,
                Operation::Read => mounts::read(ready, tenant, Table::Engines, mount).await,
                Operation::List | Operation::Patch => Err(ApiError::UnsupportedOperation),
            };
            ("sys/mounts", result)
        }
        ("mounts" | "plugins/backends" | "plugins/reload" | "agents" | "metrics", _) => {
            ("sys", Err(ApiError::UnsupportedOperation))
        }
        _ => ("sys", Err(ApiError::UnsupportedPath)),
    }
}

/// Operations over the whole broker, the operator's: every tenant's plugins and their reload,
/// global metrics, the audit devices and their HMAC key, the tenants themselves. They answer
/// only in the root namespace (`sys/plugins/backends` and `sys/agents` have a tenant's view).
fn is_global(rest: &str) -> bool {
    let under = |prefix: &str| {
        rest == prefix
            || rest
                .strip_prefix(prefix)
                .is_some_and(|tail| tail.starts_with('/') || tail.starts_with('-'))
    };
    under("plugins/reload") || under("metrics") || under("audit") || under("namespaces")
}

/// Vault API: sys/mounts/:path, enable.
#[derive(Deserialize, Default)]
#[serde(default)]
struct EnableMount {
    #[serde(rename = "type")]
    kind: Option<String>,
    description: Option<String>,
    /// Tuned at once (`bao secrets enable -default-lease-ttl=…`).
    config: Option<mounts::TuneBody>,
    #[serde(deserialize_with = "super::input::opt_object")]
    options: Option<Map<String, Value>>,
}

impl EnableMount {
    /// The tuning an enable asks for, checked before anything is mounted (none: nothing to
    /// tune).
    fn tuning(&mut self, auth: bool) -> Result<Option<keybroker_core::mounts::Tuning>, ApiError> {
        let options = self.options.take().filter(|o| !o.is_empty());
        let config = self.config.take();
        if config.is_none() && options.is_none() {
            return Ok(None);
        }
        let mut config = config.unwrap_or_default();
        if options.is_some() {
            config.set_options(options);
        }
        let tuning = config.apply(keybroker_core::mounts::Tuning::default(), auth)?;
        Ok((tuning != keybroker_core::mounts::Tuning::default()).then_some(tuning))
    }
}

/// Enables a secrets engine or (`table` `Auth`) an auth method at `path`, tuned as the
/// request's `config` says.
async fn enable_mount(
    ready: &Ready,
    tenant: &Tenant,
    path: &str,
    request: &ApiRequest,
    table: Table,
) -> Result<Response, ApiError> {
    let auth = table == Table::Auth;
    let mut input: EnableMount = body::parse(&request.body)?;
    if !auth && input.kind.as_deref() == Some(super::kv::KIND_V2_ALIAS) {
        // Vault's `kv-v2`: the `kv` engine at version 2, whatever the options say.
        input.kind = Some(super::kv::KIND.to_owned());
        input
            .options
            .get_or_insert_with(Map::new)
            .insert("version".to_owned(), Value::String("2".to_owned()));
    }
    if auth && input.kind.as_deref() == Some(super::jwt::OIDC_ALIAS) {
        // Vault's `oidc`: the same method as `jwt`, kept as `jwt`.
        input.kind = Some(keybroker_core::auth::jwt::method::AUTH_TYPE.to_owned());
    }
    let tuning = input.tuning(auth)?;
    let kind = input.kind.filter(|k| !k.is_empty()).ok_or_else(|| {
        ApiError::bad_request(if auth {
            "missing type of the auth method"
        } else {
            "missing type of the secrets engine"
        })
    })?;
    let description = input.description.as_deref().unwrap_or_default();
    let mount = if auth {
        ready
            .broker
            .enable_auth(tenant, path, &kind, description)
            .await?
    } else {
        ready
            .broker
            .enable_mount(tenant, path, &kind, description)
            .await?
    };
    let tuning = tuning.unwrap_or_default();
    let configured = match ready.kinds.get(&mount.kind) {
        Some(kind) => kind.configure(ready, tenant, &mount, None, &tuning).await,
        None => Ok(()),
    };
    if let Err(error) = configured {
        // Refused by its kind (a backend that cannot hold a KV mount's key): unmount again.
        let undone = if auth {
            ready
                .broker
                .disable_auth(tenant, path)
                .await
                .map_err(ApiError::from)
        } else {
            disable_mount(ready, tenant, &mount.path).await.map(|_| ())
        };
        if let Err(undo) = undone {
            tracing::warn!(error = %undo, path = %mount.path, "could not unmount a refused mount");
        }
        return Err(error);
    }
    if tuning != keybroker_core::mounts::Tuning::default() {
        ready
            .broker
            .mounts
            .tune(tenant.id, &mount.path, &tuning)
            .await?;
    }
    Ok(response::no_content())
}

async fn disable_mount(ready: &Ready, tenant: &Tenant, path: &str) -> Result<Response, ApiError> {
    if let Some(mount) = ready.broker.mounts.disable(tenant.id, path).await? {
        ready.broker.transit.forget_mount(tenant.id, mount);
    }
    Ok(response::no_content())
}

/// `sys/auth[/:path]` (Vault API: sys/auth): list, enable, read and disable auth methods.
/// `token/` is built in: listed, never enabled or disabled.
async fn auth_methods(
    ready: &Ready,
    tenant: &Tenant,
    path: &str,
    request: &ApiRequest,
) -> Result<Response, ApiError> {
    match (path, request.operation) {
        ("", Operation::Read | Operation::List) => mounts::list(ready, tenant, Table::Auth).await,
        ("", _) => Err(ApiError::UnsupportedOperation),
        (path, Operation::Write) => enable_mount(ready, tenant, path, request, Table::Auth).await,
        (path, Operation::Delete) => {
            ready.broker.disable_auth(tenant, path).await?;
            Ok(response::no_content())
        }
        (path, Operation::Read) => mounts::read(ready, tenant, Table::Auth, path).await,
        (_, Operation::List | Operation::Patch) => Err(ApiError::UnsupportedOperation),
    }
}

fn namespace_json(tenant: &Tenant) -> Value {
    json!({ "id": tenant.id.to_string(), "path": format!("{}/", tenant.name), "custom_metadata": {} })
}

/// `sys/namespaces` (OpenBao API: namespaces), from the root namespace only: tenants are
/// flat, a tenant cannot create tenants.
async fn namespaces(
    ready: &Ready,
    tenant: &Tenant,
    rest: &str,
    request: &ApiRequest,
) -> Result<Response, ApiError> {
    if tenant.id != keybroker_core::TenantId::ROOT {
        return Err(ApiError::bad_request(
            "namespaces can only be managed from the root namespace",
        ));
    }
    let name = rest
        .strip_prefix("namespaces")
        .unwrap_or_default()
        .trim_matches('/');
    let tenants = &ready.broker.tenants;
    match (name, request.operation) {
        ("", Operation::List | Operation::Read) => {
            let all = tenants.list();
            if all.is_empty() {
                return Ok(super::error::error_body(StatusCode::NOT_FOUND, &[]));
            }
            let keys: Vec<String> = all.iter().map(|t| format!("{}/", t.name)).collect();
            let info: Map<String, Value> = all
                .iter()
                .map(|t| (format!("{}/", t.name), namespace_json(t)))
                .collect();
            Ok(response::data(&json!({ "keys": keys, "key_info": info })))
        }
        ("", _) => Err(ApiError::UnsupportedOperation),
        (name, Operation::Write) => {
            let created = ready.broker.create_tenant(name).await?;
            Ok(response::data(&namespace_json(&created)))
        }
        (name, Operation::Read) => {
            let found = tenants
                .resolve(name)
                .filter(|t| t.id != keybroker_core::TenantId::ROOT)
                .ok_or_else(|| {
                    ApiError::Core(keybroker_core::Error::NotFound(format!(
                        "namespace \"{name}\" not found"
                    )))
                })?;
            Ok(response::data(&namespace_json(&found)))
        }
        (name, Operation::Delete) => {
            // Deletion is complete when this returns (tokens revoked, keys gone).
            let deleted = ready.broker.delete_tenant(name).await?;
            let status = if deleted.is_some() {
                "deleted"
            } else {
                "not-found"
            };
            Ok(response::data(&json!({ "status": status })))
        }
        (_, Operation::List | Operation::Patch) => Err(ApiError::UnsupportedOperation),
    }
}

/// `GET /v1/sys/plugins/backends`: every drop-in with its health and reason. Inside a
/// tenant, only the instances allowed for it, without what is the operator's (library path
/// and hash, the tenants allowed, the cache) and without the reason of an instance it shares
/// with other tenants (a reason may name another customer's agent or address).
fn backends(ready: &Ready, tenant: &Tenant) -> Response {
    let operator = tenant.id == keybroker_core::TenantId::ROOT;
    let mut instances = Vec::new();
    for report in ready.host.reports() {
        let instance = report.instance.as_ref();
        if !operator && !instance.is_some_and(|i| i.allows_tenant(&tenant.name)) {
            continue;
        }
        let reason = match instance {
            Some(instance) => instance.unavailable_reason(),
            None => report.error.clone(),
        };
        let status = if instance.is_some() && reason.is_none() {
            "available"
        } else {
            "unavailable"
        };
        let info = instance.and_then(|i| i.info()).map(|i| {
            json!({ "plugin": i.name.as_str(), "version": i.version.as_str(),
                    "capabilities": i.capabilities, "max_payload": i.max_payload })
        });
        let on_unavailable = instance.map(|i| match i.on_unavailable() {
            keybroker_core::backend::OnUnavailable::Serve => "serve",
            keybroker_core::backend::OnUnavailable::Evict => "evict",
        });
        if !operator {
            let own = instance.is_some_and(
                |i| matches!(i.settings().tenants.as_slice(), [only] if *only == *tenant.name),
            );
            instances.push(json!({
                "name": report.name,
                "status": status,
                "reason": if own { reason } else { None },
                "plugin": info,
                "on_unavailable": on_unavailable,
            }));
            continue;
        }
        let cache = instance.map(|i| {
            let stats = i.cache().stats();
            json!({ "hits": stats.hits, "misses": stats.misses, "entries": stats.entries })
        });
        instances.push(json!({
            "name": report.name,
            "source": report.source,
            "library": report.library,
            "sha256": report.sha256,
            "status": status,
            "reason": reason,
            "plugin": info,
            "tenants": instance.map(|i| &i.settings().tenants),
            "on_unavailable": on_unavailable,
            "dek_cache": cache,
        }));
    }
    let names: Vec<Value> = instances.iter().map(|i| i["name"].clone()).collect();
    response::data(&json!({ "keys": names, "backends": instances }))
}

/// `GET /v1/sys/agents`: the remote agents every instance reports in its live status
/// (`BackendPlugin::status`, its `agents` array), each tagged with its instance. Instances
/// without status are left out, as is one whose status call fails (logged).
async fn agents(ready: &Ready, tenant: &Tenant) -> Response {
    let operator = tenant.id == keybroker_core::TenantId::ROOT;
    let mut calls = tokio::task::JoinSet::new();
    for instance in ready.host.instances() {
        if !operator && !instance.allows_tenant(&tenant.name) {
            continue;
        }
        calls.spawn(async move {
            let status = instance.status().await;
            (instance.name().to_owned(), status)
        });
    }
    let mut statuses = Vec::new();
    while let Some(joined) = calls.join_next().await {
        match joined {
            Ok((name, Ok(Some(status)))) => statuses.push((name, status)),
            Ok((_, Ok(None))) => {}
            Ok((name, Err(error))) => {
                tracing::warn!(instance = %name, %error, "backend status failed; its agents are not listed");
            }
            Err(error) => tracing::error!(%error, "backend status task failed"),
        }
    }
    let mut agents = merge_agents(statuses);
    if !operator {
        agents = tenant_view_of_agents(agents, &tenant.name);
    }
    response::data(&json!({ "agents": agents }))
}

/// A tenant's view of the agents: those serving it, each naming only this tenant, and with
/// its address only when it serves no other tenant (an agent another customer runs too is
/// not this tenant's to locate).
fn tenant_view_of_agents(agents: Vec<Value>, tenant: &str) -> Vec<Value> {
    agents
        .into_iter()
        .filter_map(|mut agent| {
            let served: Vec<&str> = agent
                .get("tenants")
                .and_then(Value::as_array)
                .map(|t| t.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if !served.contains(&tenant) {
                return None;
            }
            let own = served.iter().all(|t| *t == tenant);
            let fields = agent.as_object_mut()?;
            if !own {
                fields.remove("remote_address");
            }
            fields.insert("tenants".to_owned(), json!([tenant]));
            Some(agent)
        })
        .collect()
}

/// The `agents` of each instance's status, each with an `instance` member naming where it
/// is connected, sorted by instance, then agent id. Statuses without an `agents` array, and
/// entries that are not objects, add nothing.
fn merge_agents(statuses: Vec<(String, Value)>) -> Vec<Value> {
    let mut agents: Vec<(String, String, Value)> = Vec::new();
    for (instance, mut status) in statuses {
        let Some(Value::Array(reported)) = status.get_mut("agents").map(Value::take) else {
            continue;
        };
        for agent in reported {
            let Value::Object(mut fields) = agent else {
                continue;
            };
            let id = fields
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            fields.insert("instance".to_owned(), Value::String(instance.clone()));
            agents.push((instance.clone(), id, Value::Object(fields)));
        }
    }
    agents.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    agents.into_iter().map(|(_, _, agent)| agent).collect()
}

/// `POST /v1/sys/audit-hash/:path` (Vault API: sys/audit-hash): the HMAC a sink writes for
/// `input`, so a caller can find a known value in the log.
fn audit_hash(state: &AppState, path: &str, request: &ApiRequest) -> Result<Response, ApiError> {
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct HashBody {
        input: Option<String>,
    }
    let name = path.trim_start_matches("audit-hash/").trim_end_matches('/');
    let sink = state
        .audit()
        .filter(|sink| sink.name() == name)
        .ok_or_else(|| ApiError::bad_request(format!("unknown audit backend {name:?}")))?;
    let input: HashBody = body::parse(&request.body)?;
    let input = input
        .input
        .ok_or_else(|| ApiError::bad_request("missing input"))?;
    Ok(response::data(&json!({ "hash": sink.hash(&input) })))
}

/// `GET /v1/sys/metrics?format=prometheus` (Vault's path).
fn metrics(state: &AppState, request: &ApiRequest) -> Result<Response, ApiError> {
    match request.query.get("format").map(String::as_str) {
        Some("prometheus") => {}
        _ => return Err(ApiError::bad_request("only format=prometheus is supported")),
    }
    let text =
        state.inner.metrics.render().map_err(|_| {
            ApiError::Core(keybroker_core::Error::internal("metrics encoding failed"))
        })?;
    let mut response = Response::new(Body::from(text));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

/// Every body of this module decoded as its handlers decode it, without a broker (see
/// [`super::fuzzing`]); how many of the wire structs accepted `body`.
pub(super) fn fuzz_request_bodies(body: &bytes::Bytes) -> usize {
    let mut accepted = 0;
    if let Ok(mut input) = body::parse::<EnableMount>(body) {
        accepted += 1;
        let _ = input.tuning(false);
    }
    for auth in [false, true] {
        if let Ok(input) = body::parse::<mounts::TuneBody>(body) {
            accepted += 1;
            let _ = input.apply(keybroker_core::mounts::Tuning::default(), auth);
        }
    }
    accepted
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::merge_agents;

    #[test]
    fn agents_are_merged_across_instances_sorted_and_tagged() {
        let statuses = vec![
            (
                "zeta-agent".to_owned(),
                json!({"agents": [{"id": "z1", "tenants": ["zeta"], "in_flight": 2}]}),
            ),
            // A status with other members but no agents adds nothing.
            ("hsm".to_owned(), json!({"sessions": 3})),
            (
                "acme-agent".to_owned(),
                json!({"agents": [
                    {"id": "acme-dc2", "tenants": ["acme"]},
                    "not an object",
                    {"id": "acme-dc1", "tenants": ["acme"], "instance": "spoofed"},
                ]}),
            ),
            ("empty".to_owned(), json!({"agents": []})),
            ("odd".to_owned(), json!({"agents": "none"})),
        ];
        assert_eq!(
            merge_agents(statuses),
            vec![
                json!({"instance": "acme-agent", "id": "acme-dc1", "tenants": ["acme"]}),
                json!({"instance": "acme-agent", "id": "acme-dc2", "tenants": ["acme"]}),
                json!({"instance": "zeta-agent", "id": "z1", "tenants": ["zeta"], "in_flight": 2}),
            ]
        );
    }
}
