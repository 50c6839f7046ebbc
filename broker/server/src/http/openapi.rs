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
//! are documented as JSON objects with the members their handlers read (a table kept
//! beside the routes, checked against them), other members allowed.
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

/// A request body's members: name and JSON type (`""`: any; an integer TTL also takes
/// Vault's duration strings), as the handler's wire struct reads them.
type Members = &'static [(&'static str, &'static str)];

const ENABLE_MOUNT: Members = &[
    ("type", "string"),
    ("description", "string"),
    ("config", "object"),
    ("options", "object"),
];
const TUNE: Members = &[
    ("description", "string"),
    ("default_lease_ttl", ""),
    ("max_lease_ttl", ""),
    ("listing_visibility", "string"),
    ("audit_non_hmac_request_keys", "array"),
    ("audit_non_hmac_response_keys", "array"),
    ("passthrough_request_headers", "array"),
    ("allowed_response_headers", "array"),
    ("options", "object"),
    ("token_type", "string"),
    ("force_no_cache", "boolean"),
    ("plugin_version", "string"),
];
const POLICY: Members = &[("policy", "string"), ("rules", "string")];
const CAPABILITIES: Members = &[
    ("token", "string"),
    ("accessor", "string"),
    ("path", "string"),
    ("paths", ""),
];
const TOKEN_CREATE: Members = &[
    ("policies", ""),
    ("ttl", "integer"),
    ("explicit_max_ttl", "integer"),
    ("num_uses", "integer"),
    ("meta", "object"),
    ("display_name", "string"),
    ("renewable", "boolean"),
    ("no_default_policy", "boolean"),
    ("no_parent", "boolean"),
    ("period", "integer"),
];
const TOKEN: Members = &[("token", "string"), ("increment", "integer")];
const ACCESSOR: Members = &[("accessor", "string"), ("increment", "integer")];
const TOKEN_ROLE: Members = &[
    ("allowed_policies", "array"),
    ("disallowed_policies", "array"),
    ("allowed_policies_glob", "array"),
    ("disallowed_policies_glob", "array"),
    ("orphan", "boolean"),
    ("renewable", "boolean"),
    ("path_suffix", "string"),
    ("period", "integer"),
    ("token_period", "integer"),
    ("explicit_max_ttl", "integer"),
    ("token_explicit_max_ttl", "integer"),
    ("token_no_default_policy", "boolean"),
    ("token_num_uses", "integer"),
    ("token_type", "string"),
];
const APPROLE_ROLE: Members = &[
    ("role_id", "string"),
    ("bind_secret_id", "boolean"),
    ("secret_id_num_uses", "integer"),
    ("secret_id_ttl", "integer"),
    ("secret_id_bound_cidrs", ""),
    ("token_bound_cidrs", ""),
    ("token_policies", ""),
    ("policies", ""),
    ("token_ttl", "integer"),
    ("token_max_ttl", "integer"),
    ("token_explicit_max_ttl", "integer"),
    ("token_num_uses", "integer"),
    ("token_no_default_policy", "boolean"),
    ("token_period", "integer"),
    ("period", "integer"),
    ("token_type", "string"),
];
const SECRET_ID: Members = &[
    ("secret_id", "string"),
    ("metadata", ""),
    ("cidr_list", ""),
    ("token_bound_cidrs", ""),
    ("ttl", "integer"),
    ("num_uses", "integer"),
];
const JWT_CONFIG: Members = &[
    ("oidc_discovery_url", "string"),
    ("oidc_discovery_ca_pem", "string"),
    ("jwks_url", "string"),
    ("jwks_ca_pem", "string"),
    ("jwt_validation_pubkeys", "array"),
    ("bound_issuer", "string"),
    ("jwt_supported_algs", "array"),
    ("default_role", "string"),
    ("bearer_role", "string"),
    ("jwks_refetch_interval", "integer"),
];
const JWT_ROLE: Members = &[
    ("role_type", "string"),
    ("bound_audiences", "array"),
    ("bound_subject", "string"),
    ("bound_claims", "object"),
    ("bound_claims_type", "string"),
    ("user_claim", "string"),
    ("groups_claim", "string"),
    ("claim_mappings", "object"),
    ("clock_skew_leeway", "integer"),
    ("expiration_leeway", "integer"),
    ("not_before_leeway", "integer"),
    ("token_policies", "array"),
    ("policies", "array"),
    ("token_ttl", "integer"),
    ("token_max_ttl", "integer"),
    ("token_explicit_max_ttl", "integer"),
    ("token_num_uses", "integer"),
    ("token_period", "integer"),
    ("token_no_default_policy", "boolean"),
    ("token_bound_cidrs", "array"),
    ("token_type", "string"),
];
const TRANSIT_KEY: Members = &[
    ("type", "string"),
    ("backend", "string"),
    ("mode", "string"),
    ("auto_rotate_period", "integer"),
    ("derived", "boolean"),
    ("convergent_encryption", "boolean"),
    ("exportable", "boolean"),
    ("allow_plaintext_backup", "boolean"),
    ("key_size", "integer"),
    ("backend_key", "string"),
];
const TRANSIT_KEY_CONFIG: Members = &[
    ("min_decryption_version", "integer"),
    ("min_encryption_version", "integer"),
    ("deletion_allowed", "boolean"),
    ("auto_rotate_period", "integer"),
    ("exportable", "boolean"),
    ("allow_plaintext_backup", "boolean"),
];
const TRANSIT_DATA: Members = &[
    ("plaintext", "string"),
    ("ciphertext", "string"),
    ("associated_data", "string"),
    ("context", "string"),
    ("convergent_encryption", "boolean"),
    ("key_version", "integer"),
    ("batch_input", "array"),
    ("partial_failure_response_code", "integer"),
    ("bits", "integer"),
    ("type", "string"),
    ("padding_scheme", "string"),
];
const TRANSIT_SIGN: Members = &[
    ("input", "string"),
    ("signature", "string"),
    ("hmac", "string"),
    ("context", "string"),
    ("hash_algorithm", "string"),
    ("algorithm", "string"),
    ("key_version", "integer"),
    ("prehashed", "boolean"),
    ("signature_algorithm", "string"),
    ("marshaling_algorithm", "string"),
    ("salt_length", ""),
    ("batch_input", "array"),
    ("partial_failure_response_code", "integer"),
];
const TRANSIT_HMAC: Members = &[
    ("input", "string"),
    ("algorithm", "string"),
    ("key_version", "integer"),
    ("batch_input", "array"),
];
const TRANSIT_HASH: Members = &[
    ("input", "string"),
    ("algorithm", "string"),
    ("format", "string"),
];
const TRANSIT_RANDOM: Members = &[
    ("bytes", "integer"),
    ("format", "string"),
    ("source", "string"),
];
const TRANSIT_RESTORE: Members = &[
    ("backup", "string"),
    ("name", "string"),
    ("force", "boolean"),
];
const TRANSIT_IMPORT: Members = &[
    ("type", "string"),
    ("hash_function", "string"),
    ("ciphertext", "string"),
    ("public_key", "string"),
    ("backend", "string"),
    ("derived", "boolean"),
    ("exportable", "boolean"),
    ("allow_plaintext_backup", "boolean"),
    ("allow_rotation", "boolean"),
    ("auto_rotate_period", "integer"),
];
const TRANSIT_IMPORT_VERSION: Members = &[
    ("hash_function", "string"),
    ("ciphertext", "string"),
    ("public_key", "string"),
    ("version", "integer"),
];

const KV_METADATA: Members = &[
    ("max_versions", "integer"),
    ("cas_required", "boolean"),
    ("delete_version_after", "string"),
    ("custom_metadata", "object"),
];
const KV_VERSIONS: Members = &[("versions", "array")];

/// The members of each write's body, by kind and pattern (a write not listed: a JSON
/// object of any members). A unit test checks that each names a served write.
const BODIES: &[(&str, &str, Members)] = &[
    (
        "kv",
        "data/*path",
        &[("data", "object"), ("options", "object")],
    ),
    ("kv", "metadata/*path", KV_METADATA),
    (
        "kv",
        "config",
        &[
            ("max_versions", "integer"),
            ("cas_required", "boolean"),
            ("delete_version_after", "string"),
        ],
    ),
    ("kv", "delete/*path", KV_VERSIONS),
    ("kv", "undelete/*path", KV_VERSIONS),
    ("kv", "destroy/*path", KV_VERSIONS),
    ("system", "sys/mounts/*path", ENABLE_MOUNT),
    ("system", "sys/auth/*path", ENABLE_MOUNT),
    ("system", "sys/mounts/*path/tune", TUNE),
    ("system", "sys/auth/*path/tune", TUNE),
    ("system", "sys/policies/acl/:name", POLICY),
    ("system", "sys/policy/:name", POLICY),
    ("system", "sys/capabilities", CAPABILITIES),
    ("system", "sys/capabilities-self", CAPABILITIES),
    ("system", "sys/capabilities-accessor", CAPABILITIES),
    ("system", "sys/audit-hash/:name", &[("input", "string")]),
    ("token", "auth/token/create", TOKEN_CREATE),
    ("token", "auth/token/create-orphan", TOKEN_CREATE),
    ("token", "auth/token/create/:role_name", TOKEN_CREATE),
    (
        "token",
        "auth/token/renew-self",
        &[("increment", "integer")],
    ),
    ("token", "auth/token/lookup", TOKEN),
    ("token", "auth/token/renew", TOKEN),
    ("token", "auth/token/revoke", TOKEN),
    ("token", "auth/token/revoke-orphan", TOKEN),
    ("token", "auth/token/lookup-accessor", ACCESSOR),
    ("token", "auth/token/renew-accessor", ACCESSOR),
    ("token", "auth/token/revoke-accessor", ACCESSOR),
    ("token", "auth/token/roles/:role_name", TOKEN_ROLE),
    (
        "approle",
        "login",
        &[("role_id", "string"), ("secret_id", "string")],
    ),
    ("approle", "role/:name", APPROLE_ROLE),
    ("approle", "role/:name/role-id", &[("role_id", "string")]),
    ("approle", "role/:name/secret-id", SECRET_ID),
    ("approle", "role/:name/custom-secret-id", SECRET_ID),
    (
        "approle",
        "role/:name/secret-id/lookup",
        &[("secret_id", "string")],
    ),
    (
        "approle",
        "role/:name/secret-id/destroy",
        &[("secret_id", "string")],
    ),
    (
        "approle",
        "role/:name/secret-id-accessor/lookup",
        &[("secret_id_accessor", "string")],
    ),
    (
        "approle",
        "role/:name/secret-id-accessor/destroy",
        &[("secret_id_accessor", "string")],
    ),
    ("jwt", "login", &[("role", "string"), ("jwt", "string")]),
    ("jwt", "config", JWT_CONFIG),
    ("jwt", "role/:name", JWT_ROLE),
    ("transit", "keys/:name", TRANSIT_KEY),
    ("transit", "keys/:name/config", TRANSIT_KEY_CONFIG),
    (
        "transit",
        "keys/:name/trim",
        &[("min_available_version", "integer")],
    ),
    ("transit", "restore", TRANSIT_RESTORE),
    ("transit", "restore/:name", TRANSIT_RESTORE),
    ("transit", "encrypt/:name", TRANSIT_DATA),
    ("transit", "decrypt/:name", TRANSIT_DATA),
    ("transit", "rewrap/:name", TRANSIT_DATA),
    ("transit", "datakey/:kind/:name", TRANSIT_DATA),
    ("transit", "sign/:name", TRANSIT_SIGN),
    ("transit", "sign/:name/:algorithm", TRANSIT_SIGN),
    ("transit", "verify/:name", TRANSIT_SIGN),
    ("transit", "verify/:name/:algorithm", TRANSIT_SIGN),
    ("transit", "hmac/:name", TRANSIT_HMAC),
    ("transit", "hmac/:name/:algorithm", TRANSIT_HMAC),
    ("transit", "random", TRANSIT_RANDOM),
    ("transit", "random/:a", TRANSIT_RANDOM),
    ("transit", "random/:a/:b", TRANSIT_RANDOM),
    ("transit", "hash", TRANSIT_HASH),
    ("transit", "hash/:algorithm", TRANSIT_HASH),
    ("transit", "config/keys", &[("disable_upsert", "boolean")]),
    ("transit", "cache-config", &[("size", "integer")]),
    ("transit", "keys/:name/import", TRANSIT_IMPORT),
    (
        "transit",
        "keys/:name/import_version",
        TRANSIT_IMPORT_VERSION,
    ),
];

/// The schema of a write's body on `pattern` of `kind`: its members where [`BODIES`] lists
/// them, any others allowed.
fn body_schema(kind: &str, pattern: &str) -> Value {
    let mut properties = Map::new();
    let members = BODIES
        .iter()
        .find(|(k, p, _)| *k == kind && *p == pattern)
        .map(|(_, _, members)| *members)
        .unwrap_or_default();
    for (name, kind) in members {
        let schema = match *kind {
            "" => json!({}),
            "array" => json!({ "type": "array", "items": {} }),
            other => json!({ "type": other }),
        };
        properties.insert((*name).to_owned(), schema);
    }
    json!({ "type": "object", "properties": properties, "additionalProperties": true })
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
                "content": { "application/json": {
                    "schema": body_schema(kind.name(), route.pattern),
                } },
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
                    Operation::Patch => (path.clone(), "patch"),
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
                    Operation::Patch => (path.clone(), "patch"),
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
    fn every_documented_body_is_a_served_write() {
        let registry = Registry::standard();
        for (kind, pattern, _) in BODIES {
            let served = registry.get(kind).is_some_and(|k| {
                k.routes()
                    .iter()
                    .any(|r| r.pattern == *pattern && r.operations.contains(&Operation::Write))
            });
            assert!(served, "{kind}:{pattern} is not a served write");
        }
        let doc = document(&registry);
        let schema = &doc["paths"]["/transit/encrypt/{name}"]["post"]["requestBody"]["content"]
            ["application/json"]["schema"];
        assert_eq!(schema["properties"]["plaintext"]["type"], "string");
        assert_eq!(schema["additionalProperties"], true);
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
