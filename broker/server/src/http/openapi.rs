//! `GET /v1/sys/internal/specs/openapi` (Vault API: sys/internal/specs/openapi): an OpenAPI
//! 3.0 document of the whole API, generated from the registry's route lists
//! ([`super::kind::Registry`]) at each request, so it cannot drift from what the dispatcher
//! serves.
//!
//! Shaped as Vault's: `:name` and `*name` segments become `{name}` path parameters; a mounted
//! kind's routes are documented below its default mount path (`transit/…`, `auth/approle/…`);
//! LIST is a GET of the path with a trailing `/` and a required `list=true` query parameter;
//! writes are POST; `x-vault-unauthenticated` marks the routes anyone may call and
//! `x-vault-sudo` those whose policy must also grant `sudo`; every operation takes the
//! `X-Vault-Token` security scheme and an optional `X-Vault-Namespace` header. Request bodies
//! are documented as JSON objects of any members (the handlers' wire structs are not
//! described field by field).
//!
//! The document describes the software, not the broker's state (no mount, tenant or
//! policy): like Vault, which serves this path unauthenticated, anyone may read it.

use axum::{http::StatusCode, response::Response};
use serde_json::{json, Map, Value};

use super::{
    kind::{self, Class, Registry},
    response,
    routes::{Access, Route},
    Operation,
};

/// The path of the document, from the API's root.
pub(super) const PATH: &str = "sys/internal/specs/openapi";

/// The OpenAPI version written (Vault's).
const OPENAPI_VERSION: &str = "3.0.2";

/// The document as an answer.
pub(super) fn response(registry: &Registry) -> Response {
    response::json(StatusCode::OK, &document(registry))
}

/// Where a kind's routes are documented: the API's root for a built-in kind, else the kind's
/// default mount path (an engine at `<type>/`, an auth method at `auth/<type>/`, as `bao
/// secrets enable <type>` and `bao auth enable <type>` mount them).
fn prefix(kind: &dyn kind::MountKind) -> String {
    match kind.class() {
        Class::Builtin => String::new(),
        Class::Engine => format!("{}/", kind.name()),
        Class::Auth => format!("auth/{}/", kind.name()),
    }
}

/// The OpenAPI path of `pattern` below `prefix` (with its leading `/`), and its path
/// parameters' names.
fn openapi_path(prefix: &str, pattern: &str) -> (String, Vec<String>) {
    let mut names = Vec::new();
    let segments: Vec<String> = pattern
        .split('/')
        .map(|segment| match segment.strip_prefix([':', '*']) {
            Some(name) => {
                names.push(name.to_owned());
                format!("{{{name}}}")
            }
            None => segment.to_owned(),
        })
        .collect();
    (format!("/{prefix}{}", segments.join("/")), names)
}

/// The concrete path a sample request on `pattern` would take (each parameter `x`), to ask
/// the kind's `sudo` list about it.
fn sample(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|s| if s.starts_with([':', '*']) { "x" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

/// `operationId`: the verb and the path, dashed (`list-auth-approle-role`).
fn operation_id(verb: &str, path: &str) -> String {
    let mut id = verb.to_owned();
    for part in path
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|p| !p.is_empty())
    {
        id.push('-');
        id.push_str(part);
    }
    id
}

fn tag(kind: &dyn kind::MountKind) -> &'static str {
    match kind.class() {
        Class::Builtin if kind.name() == super::sys::KIND => "system",
        Class::Builtin | Class::Auth => "auth",
        Class::Engine => "secrets",
    }
}

/// One operation of `route` (`verb` is OpenAPI's method; `list` for Vault's LIST).
fn operation(
    kind: &dyn kind::MountKind,
    route: &Route,
    path: &str,
    names: &[String],
    verb: &str,
) -> Value {
    let mut parameters: Vec<Value> = names
        .iter()
        .map(|name| {
            json!({
                "name": name,
                "in": "path",
                "required": true,
                "schema": { "type": "string", "minLength": 1 },
            })
        })
        .collect();
    if verb == "list" {
        parameters.push(json!({
            "name": "list",
            "in": "query",
            "description": "Must be `true` (Vault's LIST as a GET).",
            "required": true,
            "schema": { "type": "string", "enum": ["true"] },
        }));
    }
    parameters.push(json!({
        "name": "X-Vault-Namespace",
        "in": "header",
        "description": "The tenant (namespace) the request is for; none: the root namespace.",
        "required": false,
        "schema": { "type": "string" },
    }));
    let mut op = Map::new();
    op.insert("operationId".into(), json!(operation_id(verb, path)));
    op.insert("tags".into(), json!([tag(kind)]));
    op.insert("parameters".into(), Value::Array(parameters));
    if verb == "post" {
        op.insert(
            "requestBody".into(),
            json!({
                "required": false,
                "content": { "application/json": { "schema": {
                    "type": "object",
                    "additionalProperties": true,
                } } },
            }),
        );
    }
    op.insert(
        "responses".into(),
        json!({
            "200": { "description": "OK" },
            "204": { "description": "empty body" },
        }),
    );
    if route.access == Access::Anonymous {
        op.insert("x-vault-unauthenticated".into(), json!(true));
        // No token needed; one is still read where it is sent.
        op.insert("security".into(), json!([{}, { "token": [] }]));
    } else if kind::is_sudo_path(kind.sudo_paths(), &sample(route.pattern)) {
        op.insert("x-vault-sudo".into(), json!(true));
    }
    Value::Object(op)
}

/// The document for every route of every kind in `registry`.
pub(super) fn document(registry: &Registry) -> Value {
    let mut paths = Map::new();
    for kind in registry.kinds() {
        let prefix = prefix(kind);
        for route in kind.routes() {
            let (path, names) = openapi_path(&prefix, route.pattern);
            for &op in route.operations {
                let (path, verb) = match op {
                    Operation::Read => (path.clone(), "get"),
                    // Vault documents LIST as a GET of the path with a trailing `/`.
                    Operation::List => (format!("{path}/"), "list"),
                    Operation::Write => (path.clone(), "post"),
                    Operation::Delete => (path.clone(), "delete"),
                };
                let value = operation(kind, route, &path, &names, verb);
                let item = paths
                    .entry(path)
                    .or_insert_with(|| json!({}))
                    .as_object_mut();
                if let Some(item) = item {
                    item.insert(if verb == "list" { "get" } else { verb }.into(), value);
                }
            }
        }
    }
    json!({
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "keybroker API",
            "description": "Vault-compatible HTTP API of keybroker. Every path is below `/v1/`. \
                            Mounted engines and auth methods are shown at their default paths.",
            "version": env!("CARGO_PKG_VERSION"),
            "license": { "name": "Apache-2.0 OR MIT" },
        },
        "servers": [{ "url": "/v1" }],
        "components": { "securitySchemes": {
            "token": { "type": "apiKey", "in": "header", "name": "X-Vault-Token" },
        } },
        "security": [{ "token": [] }],
        "paths": paths,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::routes::Base;

    /// The documented operations: `(OpenAPI path, method)`.
    fn documented(doc: &Value) -> Vec<(String, String)> {
        let mut all = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, _) in item.as_object().unwrap() {
                all.push((path.clone(), method.clone()));
            }
        }
        all
    }

    #[test]
    fn every_route_and_verb_is_documented_and_nothing_else() {
        let registry = Registry::standard();
        let doc = document(&registry);
        let documented = documented(&doc);
        let mut expected = Vec::new();
        for (base, route) in registry.routes() {
            let prefix = match base {
                Base::Root => String::new(),
                Base::Mount(name) => prefix(registry.get(name).unwrap()),
            };
            let (path, _) = openapi_path(&prefix, route.pattern);
            for op in route.operations {
                let (path, method) = match op {
                    Operation::Read => (path.clone(), "get"),
                    Operation::List => (format!("{path}/"), "get"),
                    Operation::Write => (path.clone(), "post"),
                    Operation::Delete => (path.clone(), "delete"),
                };
                let wanted = (path, method.to_owned());
                assert!(documented.contains(&wanted), "{wanted:?} is not documented");
                expected.push(wanted);
            }
        }
        for op in &documented {
            assert!(expected.contains(op), "{op:?} documented, not served");
        }
        assert_eq!(documented.len(), expected.len());
        // The document's own route is in it, readable by anyone.
        assert_eq!(
            doc["paths"]["/sys/internal/specs/openapi"]["get"]["x-vault-unauthenticated"],
            json!(true)
        );
    }

    #[test]
    fn paths_use_vault_shapes() {
        let doc = document(&Registry::standard());
        let paths = &doc["paths"];
        assert_eq!(doc["openapi"], "3.0.2");
        let list = &paths["/auth/approle/role/"]["get"];
        assert_eq!(list["parameters"][0]["name"], "list");
        assert_eq!(list["parameters"][0]["required"], true);
        let read = &paths["/transit/keys/{name}"]["get"];
        assert_eq!(read["parameters"][0]["in"], "path");
        assert!(paths["/transit/keys/{name}"]["post"]["requestBody"].is_object());
        assert!(paths["/sys/mounts/{path}/tune"]["post"].is_object());
        assert_eq!(paths["/sys/auth/{path}"]["post"]["x-vault-sudo"], true);
        assert!(paths["/sys/auth/"]["get"].get("x-vault-sudo").is_none());
        assert_eq!(
            paths["/auth/jwt/login"]["post"]["x-vault-unauthenticated"],
            true
        );
        assert_eq!(
            doc["components"]["securitySchemes"]["token"]["name"],
            "X-Vault-Token"
        );
        let ids: Vec<&Value> = documented(&doc)
            .iter()
            .map(|(p, m)| &paths[p.as_str()][m.as_str()]["operationId"])
            .collect();
        for (i, id) in ids.iter().enumerate() {
            assert!(!ids[i + 1..].contains(id), "{id} twice");
        }
    }
}
