//! Scenario 3 of issue 21: key managers that keep their keys in Vault KV, replayed call
//! for call from their sources against the real binary.
//!
//! * **MinIO KES**, Vault keystore (`internal/keystore/vault/{vault,client}.go`, Vault's Go
//!   SDK underneath): AppRole login, `sys/health?…code=299` without a namespace, create
//!   (a read, then a write, create-only with `options.cas=0` on KV v2), a second create of
//!   the same name refused from the read, reads (`?version=1` on v2), listing (`GET
//!   ?list=true`, newest; the `LIST` method, older), deletes (through the SDK, newest; a raw
//!   DELETE that must answer exactly 204, older), token renewal through `renew-self` (with
//!   `increment` 0, newest; the TTL, older). On KV v1 and v2, in the root namespace and in a
//!   tenant.
//! * **Percona pg_tde**, Vault v2 keyring (`src/keyring/keyring_vault.c`, libcurl): the
//!   provider's validation (`sys/mounts/<mount>`, whose `data.type` must be `kv` and
//!   `data.options.version` `2`, then `<mount>/metadata/?list=true`), creating principal
//!   keys (a read that must answer 404, then a POST of `{"data":{"key":<base64>}}`), a second
//!   create refused from the read, and loading keys (`data.data.key`). In the root namespace
//!   and in a tenant, named by `X-Vault-Namespace` with its trailing slash or by the mount
//!   path, as pg_tde's docs suggest.
//!
//! Each request carries exactly the client's method, path, query, headers and body (the Go
//! SDK sends no `Content-Type`; pg_tde sends `Content-Type: application/json` even on a GET),
//! and each answer is read as the client reads it: the Go SDK's decoding into its `Secret`
//! and `HealthResponse` types and its 404 rule, KES's checks on the KV v2 metadata; pg_tde's
//! positional JSON state machines and its status rules. A test fails where the client would.
//! The example's replays (`examples/kv-integrators/kes.sh` and `pg_tde.sh`) run here too.

use base64::{engine::general_purpose::STANDARD, Engine as _};
use serde_json::{json, Map, Value};

use crate::support::{ns, repo_root, Broker};

// --- one HTTP exchange, with exactly the headers a client sends ---------------------------

/// An answer: status and body.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: String,
}

/// Sends one request with curl. `headers` are curl `-H` lines: `"Name: value"` sends one,
/// `"Name:"` removes one curl would add by itself (`Accept`, `User-Agent`, and the form
/// content type it gives a body). `target` is the path and query under the address.
fn exchange(
    broker: &Broker,
    method: &str,
    target: &str,
    headers: &[String],
    body: Option<&str>,
    compressed: bool,
) -> Answer {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("body");
    let mut args: Vec<String> = vec![
        "-s".into(),
        "--http1.1".into(),
        "--path-as-is".into(),
        "-X".into(),
        method.into(),
        "-o".into(),
        out.display().to_string(),
        "-w".into(),
        "%{http_code}".into(),
    ];
    if compressed {
        args.push("--compressed".into());
    }
    for header in headers {
        args.push("-H".into());
        args.push(header.clone());
    }
    if let Some(body) = body {
        let file = dir.path().join("request");
        std::fs::write(&file, body).unwrap();
        args.push("--data-binary".into());
        args.push(format!("@{}", file.display()));
    }
    args.push(format!("{}{target}", broker.addr));
    let output = crate::support::curl(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let status = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    assert_ne!(status, 0, "{method} {target}: no answer");
    Answer {
        status,
        body: std::fs::read_to_string(&out).unwrap_or_default(),
    }
}

// --- Vault's Go SDK (github.com/hashicorp/vault/api), as KES uses it ----------------------

/// A client of Vault's Go SDK: `X-Vault-Request: true`, the token once logged in, the
/// namespace set with `SetNamespace` (KES sets one only if configured), Go's user agent and
/// `Accept-Encoding: gzip`, no `Accept`, and no `Content-Type` on a JSON body
/// (`Request.SetJSONBody` sets none).
struct GoVault<'a> {
    broker: &'a Broker,
    token: Option<String>,
    namespace: Option<String>,
}

impl GoVault<'_> {
    /// `NewRequest(method, "/v1/"+path)` with `Params` (`url.Values.Encode` sorts them by
    /// name) and an optional JSON body. `namespace: false` is a clone with `ClearNamespace`.
    fn send(
        &self,
        method: &str,
        path: &str,
        params: &[(&str, &str)],
        body: Option<&Value>,
        namespace: bool,
    ) -> Answer {
        let mut params = params.to_vec();
        params.sort();
        let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut target = format!("/v1/{path}");
        if !query.is_empty() {
            target = format!("{target}?{}", query.join("&"));
        }
        let mut headers = vec![
            "User-Agent: Go-http-client/1.1".to_owned(),
            "Accept:".to_owned(),
            "Accept-Encoding: gzip".to_owned(),
            "X-Vault-Request: true".to_owned(),
        ];
        if let Some(token) = &self.token {
            headers.push(format!("X-Vault-Token: {token}"));
        }
        if let (true, Some(namespace)) = (namespace, &self.namespace) {
            headers.push(format!("X-Vault-Namespace: {namespace}"));
        }
        if body.is_some() {
            headers.push("Content-Type:".to_owned());
        }
        let body = body.map(Value::to_string);
        exchange(
            self.broker,
            method,
            &target,
            &headers,
            body.as_deref(),
            true,
        )
    }
}

/// `api.ParseSecret`: an empty body is no secret; otherwise the body must decode into Go's
/// `api.Secret` (field types as declared there); a body that fills none of its fields is
/// read raw: only `errors` means no secret, `errors` with anything else is an error, and
/// anything else becomes the secret's data.
fn parse_secret(body: &str) -> Result<Option<Value>, String> {
    if body.is_empty() {
        return Ok(None);
    }
    let value: Value = serde_json::from_str(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let object = value
        .as_object()
        .ok_or_else(|| format!("a secret must be a JSON object: {body}"))?;
    go_fields(
        object,
        &[
            ("request_id", GoType::String),
            ("lease_id", GoType::String),
            ("lease_duration", GoType::Int),
            ("renewable", GoType::Bool),
            ("data", GoType::Object),
            ("warnings", GoType::Strings),
            ("mount_type", GoType::String),
            ("auth", GoType::Object),
            ("wrap_info", GoType::Object),
        ],
    )?;
    if let Some(auth) = object.get("auth").and_then(Value::as_object) {
        go_fields(
            auth,
            &[
                ("client_token", GoType::String),
                ("accessor", GoType::String),
                ("policies", GoType::Strings),
                ("token_policies", GoType::Strings),
                ("identity_policies", GoType::Strings),
                ("metadata", GoType::StringMap),
                ("orphan", GoType::Bool),
                ("entity_id", GoType::String),
                ("lease_duration", GoType::Int),
                ("renewable", GoType::Bool),
                ("mfa_requirement", GoType::Object),
            ],
        )?;
    }
    let known = [
        "request_id",
        "lease_id",
        "lease_duration",
        "renewable",
        "data",
        "warnings",
        "mount_type",
        "auth",
        "wrap_info",
    ];
    let zero = known.iter().all(|name| match object.get(*name) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(Value::Bool(b)) => !b,
        // A non-nil map or slice, even empty, is not Go's zero value.
        Some(_) => false,
    });
    if zero {
        if object.len() == 1 && object.contains_key("errors") {
            return Ok(None);
        }
        if object.contains_key("errors") {
            return Err(format!("errors with raw data: {body}"));
        }
        return Ok(Some(json!({ "data": value })));
    }
    Ok(Some(value))
}

#[derive(Clone, Copy)]
enum GoType {
    String,
    Int,
    Bool,
    Object,
    Strings,
    StringMap,
}

/// encoding/json's rules for a struct's fields: null leaves a field alone, anything else
/// must have the field's type (an `int` takes only a whole number).
fn go_fields(object: &Map<String, Value>, fields: &[(&str, GoType)]) -> Result<(), String> {
    for (name, kind) in fields {
        let Some(value) = object.get(*name) else {
            continue;
        };
        let fits = match (kind, value) {
            (_, Value::Null) => true,
            (GoType::String, Value::String(_)) => true,
            (GoType::Int, Value::Number(n)) => n.is_i64() || n.is_u64(),
            (GoType::Bool, Value::Bool(_)) => true,
            (GoType::Object, Value::Object(_)) => true,
            (GoType::Strings, Value::Array(items)) => {
                items.iter().all(|i| i.is_string() || i.is_null())
            }
            (GoType::StringMap, Value::Object(map)) => {
                map.values().all(|v| v.is_string() || v.is_null())
            }
            _ => false,
        };
        if !fits {
            return Err(format!("json: cannot unmarshal {value} into field {name}"));
        }
    }
    Ok(())
}

/// `Logical().Read…` and `Delete…` (`ParseRawResponseAndCloseBody`): a 404 whose body
/// holds no warnings and no data is no secret; any other status of 400 or more is an error
/// (`Response.Error`); otherwise the body is parsed.
fn go_read(answer: &Answer) -> Result<Option<Value>, String> {
    if answer.status == 404 {
        let secret = parse_secret(&answer.body)?;
        return Ok(secret.filter(|s| {
            s["warnings"].as_array().is_some_and(|w| !w.is_empty())
                || s["data"].as_object().is_some_and(|d| !d.is_empty())
        }));
    }
    go_ok(answer)?;
    parse_secret(&answer.body)
}

/// `Response.Error`: a status of 400 or more is an error (`*ResponseError`).
fn go_ok(answer: &Answer) -> Result<(), String> {
    if (200..400).contains(&answer.status) {
        Ok(())
    } else {
        Err(format!(
            "Error making API request. Code: {}. {}",
            answer.status, answer.body
        ))
    }
}

/// Go's `time.Parse(time.RFC3339, …)`: `2006-01-02T15:04:05Z07:00`, fraction allowed.
fn rfc3339(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range)
            .is_some_and(|s| s.iter().all(u8::is_ascii_digit))
    };
    if b.len() < 20
        || !(digits(0..4) && b[4] == b'-' && digits(5..7) && b[7] == b'-' && digits(8..10))
        || b[10] != b'T'
        || !(digits(11..13) && b[13] == b':' && digits(14..16) && b[16] == b':' && digits(17..19))
    {
        return false;
    }
    let mut rest = &b[19..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let n = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return false;
        }
        rest = &fraction[n..];
    }
    rest == b"Z"
        || (rest.len() == 6
            && (rest[0] == b'+' || rest[0] == b'-')
            && rest[1..3].iter().all(u8::is_ascii_digit)
            && rest[3] == b':'
            && rest[4..6].iter().all(u8::is_ascii_digit))
}

/// `KVv2.GetVersion`'s checks on a read secret (`extractDataAndVersionMetadata`,
/// `extractVersionMetadata`, `extractCustomMetadata`): `data` must be present (a map or
/// null), `metadata` present and a map whose `version` is an int, `destroyed` a bool,
/// `created_time` RFC 3339 and `deletion_time` RFC 3339 or `""`, and `custom_metadata`
/// present (a map or null). Returns the secret's data.
fn kv2_secret(secret: &Value) -> Result<Map<String, Value>, String> {
    let Some(data) = secret["data"].as_object() else {
        return Ok(Map::new());
    };
    let inner = match data.get("data") {
        None => return Err("missing expected 'data' element".to_owned()),
        Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(other) => return Err(format!("unexpected type for 'data' element: {other}")),
    };
    let metadata = match data.get("metadata") {
        None => return Err("missing expected 'metadata' element".to_owned()),
        Some(Value::Object(map)) => map,
        Some(other) => return Err(format!("unexpected type for 'metadata' element: {other}")),
    };
    go_fields(
        metadata,
        &[("version", GoType::Int), ("destroyed", GoType::Bool)],
    )?;
    for field in ["created_time", "deletion_time"] {
        match metadata.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.is_empty() && field == "deletion_time" => {}
            Some(Value::String(s)) if rfc3339(s) => {}
            Some(other) => return Err(format!("{field}: parsing time {other} as RFC3339")),
        }
    }
    match metadata.get("custom_metadata") {
        None => return Err("metadata missing expected field \"custom_metadata\"".to_owned()),
        Some(Value::Null | Value::Object(_)) => {}
        Some(other) => return Err(format!("unexpected type for custom_metadata: {other}")),
    }
    Ok(inner)
}

// --- MinIO KES's Vault keystore -----------------------------------------------------------

/// KES's errors, as its API reports them.
#[derive(Debug, PartialEq)]
enum KesError {
    /// `kesdk.ErrKeyExists` (HTTP 400 "key already exists" to KES's client).
    KeyExists,
    /// `kesdk.ErrKeyNotFound`.
    KeyNotFound,
    /// Any other failure: KES's message.
    Other(String),
}

/// KES's keystore configuration (`keystore.vault` in its YAML).
struct KesConfig {
    /// `engine` (default `kv`).
    engine: &'static str,
    /// `version`: `v1` (the default) or `v2`.
    v2: bool,
    /// `prefix`.
    prefix: &'static str,
    /// `namespace`.
    namespace: Option<String>,
    /// `approle.id`, `approle.secret` (`approle.engine` is `approle`).
    role_id: String,
    secret_id: String,
}

/// A connected KES Vault keystore (`vault.Store`).
struct Kes<'a> {
    vault: GoVault<'a>,
    config: KesConfig,
    /// What the login answered: `TokenTTL()` in seconds and `TokenIsRenewable()`.
    ttl: u64,
    renewable: bool,
}

/// Go's `path.Join`: empty elements dropped, no trailing slash.
fn join(parts: &[&str]) -> String {
    parts
        .iter()
        .flat_map(|p| p.split('/'))
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

impl<'a> Kes<'a> {
    /// `vault.Connect`: `AuthenticateWithAppRole` (a PUT of `role_id` and `secret_id` to
    /// `auth/approle/login`, in the configured namespace), `TokenID()`, `SetToken`; then
    /// `CheckStatus` polls health.
    fn connect(broker: &'a Broker, config: KesConfig) -> Result<Kes<'a>, String> {
        let mut vault = GoVault {
            broker,
            token: None,
            namespace: config.namespace.clone(),
        };
        let body = json!({ "role_id": config.role_id, "secret_id": config.secret_id });
        let answer = vault.send("PUT", "auth/approle/login", &[], Some(&body), true);
        go_ok(&answer)?;
        let secret = parse_secret(&answer.body)?.ok_or(
            "vault: authentication failed: SDK returned no error but also no token".to_owned(),
        )?;
        let (token, ttl, renewable) = token_of(&secret);
        if token.is_empty() {
            return Err(format!("login: no token in {secret}"));
        }
        vault.token = Some(token);
        let kes = Kes {
            vault,
            config,
            ttl,
            renewable,
        };
        kes.status()?;
        Ok(kes)
    }

    /// `client.CheckStatus` and `Store.Status`: `Sys().HealthWithContext` on a clone with
    /// the namespace cleared, the SDK's `…code=299` parameters; `initialized` and `sealed`.
    fn status(&self) -> Result<(), String> {
        let answer = self.vault.send(
            "GET",
            "sys/health",
            &[
                ("uninitcode", "299"),
                ("sealedcode", "299"),
                ("standbycode", "299"),
                ("drsecondarycode", "299"),
                ("performancestandbycode", "299"),
                ("removedcode", "299"),
                ("haunhealthycode", "299"),
            ],
            None,
            false,
        );
        go_ok(&answer)?;
        let health: Value = serde_json::from_str(&answer.body)
            .map_err(|e| format!("health: {e}: {}", answer.body))?;
        let object = health
            .as_object()
            .ok_or_else(|| format!("health: {}", answer.body))?;
        go_fields(
            object,
            &[
                ("initialized", GoType::Bool),
                ("sealed", GoType::Bool),
                ("standby", GoType::Bool),
                ("performance_standby", GoType::Bool),
                ("replication_performance_mode", GoType::String),
                ("replication_dr_mode", GoType::String),
                ("server_time_utc", GoType::Int),
                ("version", GoType::String),
                ("cluster_name", GoType::String),
                ("cluster_id", GoType::String),
                ("last_wal", GoType::Int),
                ("enterprise", GoType::Bool),
                ("echo_duration_ms", GoType::Int),
                ("clock_skew_ms", GoType::Int),
                ("replication_primary_canary_age_ms", GoType::Int),
                ("removed_from_cluster", GoType::Bool),
                ("ha_connection_healthy", GoType::Bool),
                ("last_request_forwarding_heartbeat_ms", GoType::Int),
            ],
        )?;
        if health["initialized"] != true {
            return Err("vault: not initialized".to_owned());
        }
        if health["sealed"] == true {
            return Err("vault: key store is sealed".to_owned());
        }
        Ok(())
    }

    /// Where a key's data lives: `<engine>/data/<prefix>/<name>` (v2) or
    /// `<engine>/<prefix>/<name>` (v1).
    fn data_path(&self, name: &str) -> String {
        let c = &self.config;
        if c.v2 {
            join(&[c.engine, "data", c.prefix, name])
        } else {
            join(&[c.engine, c.prefix, name])
        }
    }

    /// The body KES writes: `{"data":{name:value},"options":{"cas":0}}` (v2, create-only)
    /// or `{name:value}` (v1).
    fn create_body(&self, name: &str, value: &str) -> Value {
        let mut data = Map::new();
        data.insert(name.to_owned(), json!(value));
        if self.config.v2 {
            json!({ "data": data, "options": { "cas": 0 } })
        } else {
            Value::Object(data)
        }
    }

    /// `Store.Create`: a read of the data path (a secret holding `name` means
    /// `ErrKeyExists`, no secret means go on), then a PUT that must answer 200 or 204.
    fn create(&self, name: &str, value: &str) -> Result<(), KesError> {
        let location = self.data_path(name);
        let read = self.vault.send("GET", &location, &[], None, true);
        match go_read(&read) {
            Ok(Some(secret)) if !self.config.v2 => {
                return Err(if secret["data"].get(name).is_some() {
                    KesError::KeyExists
                } else {
                    KesError::Other(format!(
                        "vault: entry exist but failed to read '{location}': invalid K/V v1 \
                         format: {secret}"
                    ))
                });
            }
            Ok(Some(secret))
                if self.config.v2 && secret["data"].as_object().is_some_and(|d| !d.is_empty()) =>
            {
                return Err(match &secret["data"]["data"] {
                    Value::Object(data) if data.contains_key(name) => KesError::KeyExists,
                    other => KesError::Other(format!(
                        "vault: entry exists but failed to read '{location}': invalid K/V v2 \
                         format: {other}"
                    )),
                });
            }
            Ok(_) => {}
            Err(e) => {
                return Err(KesError::Other(format!(
                    "vault: failed to create '{location}': {e}"
                )))
            }
        }
        self.put(name, value)
    }

    /// The PUT of `Store.Create` (what a concurrent creator also sends after its read).
    fn put(&self, name: &str, value: &str) -> Result<(), KesError> {
        let location = self.data_path(name);
        let body = self.create_body(name, value);
        let answer = self.vault.send("PUT", &location, &[], Some(&body), true);
        if answer.status != 204 && answer.status != 200 {
            return Err(KesError::Other(format!(
                "vault: failed to create '{location}': server responded with {} {}",
                answer.status, answer.body
            )));
        }
        Ok(())
    }

    /// `Store.Get`: `KVv2.GetVersion(…, 1)` (`GET <engine>/data/<path>?version=1`) or
    /// `KVv1.Get`; no secret is `ErrKeyNotFound`; the value is `data[name]`, a string.
    fn get(&self, name: &str) -> Result<String, KesError> {
        let location = join(&[self.config.prefix, name]);
        let answer = if self.config.v2 {
            let path = join(&[self.config.engine, "data", &location]);
            self.vault
                .send("GET", &path, &[("version", "1")], None, true)
        } else {
            let path = join(&[self.config.engine, &location]);
            self.vault.send("GET", &path, &[], None, true)
        };
        let fail = |e: String| KesError::Other(format!("vault: failed to read '{location}': {e}"));
        let Some(secret) = go_read(&answer).map_err(fail)? else {
            return Err(KesError::KeyNotFound);
        };
        let data = if self.config.v2 {
            kv2_secret(&secret).map_err(fail)?
        } else {
            secret["data"].as_object().cloned().unwrap_or_default()
        };
        match data.get(name) {
            Some(Value::String(value)) => Ok(value.clone()),
            None | Some(Value::Null) => {
                Err(fail("entry exists but no secret key is present".to_owned()))
            }
            Some(_) => Err(fail("invalid K/V format".to_owned())),
        }
    }

    /// `Store.Delete`: `KVv2.DeleteMetadata` (`DELETE <engine>/metadata/<path>`) or
    /// `KVv1.Delete`, through `Logical().DeleteWithContext` (a 404 is no error).
    fn delete(&self, name: &str) -> Result<(), String> {
        let answer = self
            .vault
            .send("DELETE", &self.delete_path(name), &[], None, true);
        go_read(&answer).map(|_| ())
    }

    /// Older KES (0244caf): a raw DELETE that must answer exactly 204 No Content.
    fn delete_older(&self, name: &str) -> Result<(), String> {
        let answer = self
            .vault
            .send("DELETE", &self.delete_path(name), &[], None, true);
        if answer.status != 204 {
            return Err(format!(
                "vault: failed to delete '{name}': expected response 204 No Content but \
                 received {} {}",
                answer.status, answer.body
            ));
        }
        Ok(())
    }

    fn delete_path(&self, name: &str) -> String {
        let c = &self.config;
        if c.v2 {
            join(&[c.engine, "metadata", c.prefix, name])
        } else {
            join(&[c.engine, c.prefix, name])
        }
    }

    fn list_path(&self) -> String {
        let c = &self.config;
        if c.v2 {
            join(&[c.engine, "metadata", c.prefix])
        } else {
            join(&[c.engine, c.prefix])
        }
    }

    /// `Store.List` (newest): `ReadRawWithDataWithContext(location, {"list":["true"]})`,
    /// i.e. `GET <location>?list=true` (any status of 400 or more is an error, a 404
    /// too), `data.keys` an array; then `keystore.List` sorts and filters by prefix.
    fn list(&self, prefix: &str) -> Result<Vec<String>, String> {
        let answer = self
            .vault
            .send("GET", &self.list_path(), &[("list", "true")], None, true);
        Self::names(&answer, prefix)
    }

    /// Older KES: the `LIST` method with `?list=true`; names ending in `/` are prefixes,
    /// skipped.
    fn list_older(&self, prefix: &str) -> Result<Vec<String>, String> {
        let answer = self
            .vault
            .send("LIST", &self.list_path(), &[("list", "true")], None, true);
        Self::names(&answer, prefix)
    }

    fn names(answer: &Answer, prefix: &str) -> Result<Vec<String>, String> {
        go_ok(answer)?;
        let Some(secret) = parse_secret(&answer.body)? else {
            return Ok(Vec::new());
        };
        let keys = secret["data"]["keys"]
            .as_array()
            .ok_or_else(|| format!("invalid key listing format: {secret}"))?;
        let mut names: Vec<String> = keys
            .iter()
            .map(|k| k.as_str().map_or_else(|| k.to_string(), str::to_owned))
            .filter(|k| !k.ends_with('/') && k.starts_with(prefix))
            .collect();
        names.sort();
        Ok(names)
    }

    /// `client.RenewToken`: `Auth().Token().RenewSelfWithContext(ctx, increment)` (a PUT of
    /// `{"increment":N}` to `auth/token/renew-self`; the newest KES sends 0, older ones the
    /// TTL); it then uses `TokenID()` and `TokenTTL()` of the answer.
    fn renew_self(&mut self, increment: u64) -> Result<(), String> {
        let body = json!({ "increment": increment });
        let answer = self
            .vault
            .send("PUT", "auth/token/renew-self", &[], Some(&body), true);
        go_ok(&answer)?;
        let secret = parse_secret(&answer.body)?.ok_or("renew-self: no secret")?;
        let (token, ttl, renewable) = token_of(&secret);
        if token.is_empty() {
            // `TokenID()` would give "" and KES would use it from then on.
            return Err(format!("renew-self: no auth.client_token in {secret}"));
        }
        self.vault.token = Some(token);
        self.ttl = ttl;
        self.renewable = renewable;
        Ok(())
    }
}

/// `Secret.TokenID()`, `TokenTTL()` (seconds) and `TokenIsRenewable()`.
fn token_of(secret: &Value) -> (String, u64, bool) {
    let auth = &secret["auth"];
    let token = auth["client_token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .or_else(|| secret["data"]["id"].as_str())
        .unwrap_or_default()
        .to_owned();
    let ttl = auth["lease_duration"]
        .as_u64()
        .filter(|t| *t > 0)
        .or_else(|| secret["data"]["ttl"].as_u64())
        .unwrap_or(0);
    let renewable = auth["renewable"]
        .as_bool()
        .or_else(|| secret["data"]["renewable"].as_bool())
        .unwrap_or(false);
    (token, ttl, renewable)
}

/// Runs `bao` in `tenant` (`""`: the root namespace) as root, asserting success; the
/// `-namespace` flag goes right after the command's words (`read`, `write`: one; others:
/// two), before its arguments.
fn bao(broker: &Broker, tenant: &str, args: &[&str]) -> String {
    let words = match args.first() {
        Some(&"read" | &"write") => 1,
        _ => 2,
    };
    let namespace = ns(tenant);
    let mut all: Vec<&str> = args[..words].to_vec();
    if !tenant.is_empty() {
        all.push(&namespace);
    }
    all.extend_from_slice(&args[words..]);
    broker.bao_ok(&all)
}

/// Writes a policy from its text.
fn policy(broker: &Broker, tenant: &str, name: &str, text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("{name}.hcl"));
    std::fs::write(&file, text).unwrap();
    bao(
        broker,
        tenant,
        &["policy", "write", name, file.to_str().unwrap()],
    );
}

/// KES's Vault setup, as its docs and CI do it: the KV mount at `kv` (v1: `kv`; v2:
/// `kv-v2`), AppRole, the policy (CI's for v1, the docs' for v2), a role
/// (`period=5m`, then `policies=kes-policy`), its role_id and a secret_id. Returns (role_id, secret_id).
fn kes_vault_setup(broker: &Broker, tenant: &str, v2: bool) -> (String, String) {
    if !tenant.is_empty() {
        broker.bao_ok(&["namespace", "create", tenant]);
    }
    if v2 {
        bao(broker, tenant, &["secrets", "enable", "-path=kv", "kv-v2"]);
    } else {
        // deploy_vault.sh's own command: version 1 at `kv/`.
        bao(broker, tenant, &["secrets", "enable", "-version=1", "kv"]);
    }
    bao(broker, tenant, &["auth", "enable", "approle"]);
    let rules = if v2 {
        // KES's docs, K/V v2.
        "path \"kv/data/*\" {\n  capabilities = [ \"create\", \"read\" ]\n}\n\
         path \"kv/metadata/*\" {\n  capabilities = [ \"list\", \"delete\" ]\n}\n"
    } else {
        // kesconf/testdata/vault/kes-policy.hcl (transit lines aside).
        "path \"kv/*\" {\n  capabilities = [ \"create\", \"read\", \"delete\", \"list\" ]\n}\n"
    };
    policy(broker, tenant, "kes-policy", rules);
    // As kesconf/testdata/vault/deploy_vault.sh: two writes, the second only adding the
    // policy (the role keeps its period).
    bao(
        broker,
        tenant,
        &[
            "write",
            "auth/approle/role/kes-role",
            "token_num_uses=0",
            "secret_id_num_uses=0",
            "period=5m",
        ],
    );
    bao(
        broker,
        tenant,
        &["write", "auth/approle/role/kes-role", "policies=kes-policy"],
    );
    let role_id = bao(
        broker,
        tenant,
        &[
            "read",
            "-field=role_id",
            "auth/approle/role/kes-role/role-id",
        ],
    );
    let secret_id = bao(
        broker,
        tenant,
        &[
            "write",
            "-f",
            "-field=secret_id",
            "auth/approle/role/kes-role/secret-id",
        ],
    );
    (role_id.trim().to_owned(), secret_id.trim().to_owned())
}

/// A KES key as KES stores it: the serialized key, a JSON text kept as a string.
fn kes_key_value(name: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    json!({
        "bytes": STANDARD.encode(bytes),
        "algorithm": "AES256",
        "created_at": "2026-12-07T19:30:00.123456789Z",
        "created_by": format!("identity-of-{name}"),
    })
    .to_string()
}

/// KES's whole life with its keystore, asserting what KES's API would answer.
fn kes_scenario(v2: bool, tenant: &str) {
    let broker = Broker::dev();
    let (role_id, secret_id) = kes_vault_setup(&broker, tenant, v2);
    let what = format!(
        "KES on KV {} in {}",
        if v2 { "v2" } else { "v1" },
        if tenant.is_empty() { "root" } else { tenant }
    );
    let mut kes = Kes::connect(
        &broker,
        KesConfig {
            engine: "kv",
            v2,
            prefix: "",
            namespace: (!tenant.is_empty()).then(|| tenant.to_owned()),
            role_id,
            secret_id,
        },
    )
    .unwrap_or_else(|e| panic!("{what}: connect: {e}"));
    // The role's period: a renewable five-minute token.
    assert_eq!((kes.ttl, kes.renewable), (300, true), "{what}: login");

    // An empty store lists as on Vault: a 404, which the SDK (and so KES) reports as an error.
    let empty = kes.list("");
    assert!(
        empty.as_ref().is_err_and(|e| e.contains("Code: 404")),
        "{what}: an empty listing: {empty:?}"
    );

    // `kes key create`: created once, refused the second time (from the read, no write).
    let first = kes_key_value("my-key");
    assert_eq!(kes.create("my-key", &first), Ok(()), "{what}: create");
    assert_eq!(
        kes.create("my-key", &kes_key_value("my-key")),
        Err(KesError::KeyExists),
        "{what}: a second create"
    );
    let second = kes_key_value("minio-sse");
    assert_eq!(kes.create("minio-sse", &second), Ok(()), "{what}: create");
    if v2 {
        // A concurrent creator's write, made after its read found nothing: with KES's
        // policy (`create`, no `update`) a write to a key that exists is refused as on
        // OpenBao, 403; with a token that may update, `cas=0` is refused, 400. Either way
        // KES fails the create and the key is not overwritten.
        let raced = kes.put("my-key", &kes_key_value("my-key"));
        assert!(
            matches!(&raced, Err(KesError::Other(e)) if e.contains("responded with 403")),
            "{what}: a racing create-only write: {raced:?}"
        );
        let updater = GoVault {
            broker: &broker,
            token: Some(broker.token.clone()),
            namespace: kes.vault.namespace.clone(),
        };
        let body = kes.create_body("my-key", &kes_key_value("my-key"));
        let answer = updater.send("PUT", "kv/data/my-key", &[], Some(&body), true);
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (
                400,
                r#"{"errors":["check-and-set parameter did not match the current version"]}"#
            ),
            "{what}: cas=0 on a key that exists"
        );
    }

    // `kes key describe` / decryption: the stored value, byte for byte.
    assert_eq!(kes.get("my-key").as_deref(), Ok(first.as_str()), "{what}");
    assert_eq!(
        kes.get("minio-sse").as_deref(),
        Ok(second.as_str()),
        "{what}"
    );
    assert_eq!(
        kes.get("no-such-key"),
        Err(KesError::KeyNotFound),
        "{what}: a missing key"
    );

    // `kes key ls`, newest (GET ?list=true) and older (LIST), with KES's own prefixes.
    let both = vec!["minio-sse".to_owned(), "my-key".to_owned()];
    assert_eq!(kes.list(""), Ok(both.clone()), "{what}: list");
    assert_eq!(kes.list_older(""), Ok(both), "{what}: LIST");
    assert_eq!(
        kes.list("my-"),
        Ok(vec!["my-key".to_owned()]),
        "{what}: list my-"
    );

    // The health poll KES runs every 15 s, and token renewal at 80 % of the TTL (newest:
    // increment 0; older: the TTL itself). The token stays the same and keeps working.
    kes.status()
        .unwrap_or_else(|e| panic!("{what}: status: {e}"));
    let token = kes.vault.token.clone();
    for increment in [0, 300] {
        kes.renew_self(increment)
            .unwrap_or_else(|e| panic!("{what}: renew-self {increment}: {e}"));
        assert_eq!(kes.vault.token, token, "{what}: renew-self {increment}");
        assert_eq!(
            (kes.ttl, kes.renewable),
            (300, true),
            "{what}: renew-self {increment}"
        );
        assert_eq!(kes.get("my-key").as_deref(), Ok(first.as_str()), "{what}");
    }

    // `kes key rm`: newest through the SDK (a missing key is no error), older with a raw
    // DELETE that must answer 204.
    assert_eq!(kes.delete("minio-sse"), Ok(()), "{what}: delete");
    assert_eq!(
        kes.get("minio-sse"),
        Err(KesError::KeyNotFound),
        "{what}: deleted"
    );
    assert_eq!(kes.delete("minio-sse"), Ok(()), "{what}: delete again");
    assert_eq!(kes.delete_older("my-key"), Ok(()), "{what}: older delete");
    assert_eq!(
        kes.get("my-key"),
        Err(KesError::KeyNotFound),
        "{what}: deleted"
    );
    // A deleted name can be created again (on v2 the metadata went with it, so `cas=0`
    // holds again).
    let again = kes_key_value("my-key");
    assert_eq!(kes.create("my-key", &again), Ok(()), "{what}: re-create");
    assert_eq!(kes.get("my-key").as_deref(), Ok(again.as_str()), "{what}");
    assert_eq!(kes.list(""), Ok(vec!["my-key".to_owned()]), "{what}");

    // The policy is what keeps KES's token to its keys: nothing outside the mount.
    let outside = kes.vault.send("GET", "sys/mounts", &[], None, true);
    assert_eq!(outside.status, 403, "{what}: sys/mounts: {}", outside.body);
}

#[test]
fn kes_on_kv_v1_in_the_root_namespace() {
    kes_scenario(false, "");
}

#[test]
fn kes_on_kv_v1_in_a_tenant() {
    kes_scenario(false, "acme");
}

#[test]
fn kes_on_kv_v2_in_the_root_namespace() {
    kes_scenario(true, "");
}

#[test]
fn kes_on_kv_v2_in_a_tenant() {
    kes_scenario(true, "acme");
}

// --- Percona pg_tde's Vault v2 keyring ------------------------------------------------------

/// pg_tde's provider configuration (`pg_tde_add_global_key_provider_vault_v2(name, url,
/// mount_path, token_path, ca_path[, namespace])`).
struct PgTde<'a> {
    broker: &'a Broker,
    /// `mount_path`, inserted into URLs as given.
    mount: String,
    /// The token file's content.
    token: String,
    /// `namespace`, sent verbatim.
    namespace: Option<String>,
}

/// What pg_tde's `get_key_by_name` concludes.
#[derive(Debug, PartialEq)]
enum Loaded {
    /// 404: no such key (`KEYRING_CODE_SUCCESS`, no key).
    Absent,
    /// A key of this many bytes.
    Key(Vec<u8>),
}

impl PgTde<'_> {
    /// `curl_perform`: GET, or POST with `CURLOPT_POSTFIELDS`; headers `X-Vault-Token`,
    /// `X-Vault-Namespace` if configured, `Content-Type: application/json` always; libcurl
    /// sends `Accept: */*` and no `User-Agent`; HTTP/1.1.
    fn perform(&self, url_path: &str, post: Option<&str>) -> Answer {
        let mut headers = vec![
            "User-Agent:".to_owned(),
            "Accept: */*".to_owned(),
            format!("X-Vault-Token: {}", self.token),
        ];
        if let Some(namespace) = &self.namespace {
            headers.push(format!("X-Vault-Namespace: {namespace}"));
        }
        headers.push("Content-Type: application/json".to_owned());
        let method = if post.is_some() { "POST" } else { "GET" };
        exchange(self.broker, method, url_path, &headers, post, false)
    }

    /// `validate()`, run when the provider is added or changed: `GET /v1/sys/mounts/<mount>`
    /// (not 200: a WARNING only; 200: `data.type` must be `kv` and `data.options.version`
    /// `2`, else ERROR), then `GET /v1/<mount>/metadata/?list=true` (200 or 404, else ERROR).
    /// Returns the mount's status, or pg_tde's ERROR.
    fn validate(&self) -> Result<u16, String> {
        let answer = self.perform(&format!("/v1/sys/mounts/{}", self.mount), None);
        if answer.status == 200 {
            match mount_info(&answer.body) {
                Err(e) => eprintln!("WARNING: failed to parse mount info: {e}"),
                Ok((None, _)) => eprintln!("WARNING: mount info: missing type field"),
                Ok((Some(kind), _)) if kind != "kv" => {
                    return Err(format!(
                        "vault mount has unsupported engine type \"{kind}\""
                    ))
                }
                Ok((Some(_), None)) => {
                    return Err(format!(
                        "failed to parse mount info: missing version field: {}",
                        answer.body
                    ))
                }
                Ok((Some(_), Some(version))) if version != "2" => {
                    return Err(format!(
                        "vault mount has unsupported Key/Value engine version \"{version}\""
                    ))
                }
                Ok(_) => {}
            }
        }
        let list = self.perform(&format!("/v1/{}/metadata/?list=true", self.mount), None);
        if list.status != 200 && list.status != 404 {
            return Err(format!(
                "Listing secrets at mountpoint \"{}\" failed: {} {}",
                self.mount, list.status, list.body
            ));
        }
        Ok(answer.status)
    }

    fn key_url(&self, name: &str) -> String {
        format!("/v1/{}/data/{name}", self.mount)
    }

    /// `get_key_by_name`: 404 is no key; another non-2xx is `KEYRING_CODE_INVALID_RESPONSE`;
    /// a 2xx must hold `data.data.key` (by nesting level) decoding to at most 32 bytes.
    fn get(&self, name: &str) -> Result<Loaded, String> {
        let answer = self.perform(&self.key_url(name), None);
        if answer.status == 404 {
            return Ok(Loaded::Absent);
        }
        if answer.status / 100 != 2 {
            return Err(format!(
                "HTTP(S) request to keyring provider returned invalid response {}: {}",
                answer.status, answer.body
            ));
        }
        let key = response_key(&answer.body)?
            .ok_or_else(|| format!("keyring provider returned no key: {}", answer.body))?;
        let bytes = STANDARD
            .decode(&key)
            .map_err(|e| format!("invalid base64 key {key:?}: {e}"))?;
        if bytes.len() > 32 {
            return Err(format!("invalid key size: {}", bytes.len()));
        }
        Ok(Loaded::Key(bytes))
    }

    /// `pg_tde_create_key_using_*_key_provider`: the key must be absent (a read answering
    /// 404), then `set_key_by_name` POSTs `{"data":{"key":"<base64>"}}` built by hand, and
    /// any 2xx will do.
    fn create(&self, name: &str, key: &[u8]) -> Result<(), String> {
        match self.get(name) {
            Ok(Loaded::Absent) => {}
            Ok(Loaded::Key(_)) => {
                return Err(format!(
                    "cannot create key \"{name}\" because it already exists"
                ))
            }
            Err(e) => return Err(format!("could not successfully query key provider: {e}")),
        }
        let body = format!("{{\"data\":{{\"key\":\"{}\"}}}}", STANDARD.encode(key));
        let answer = self.perform(&self.key_url(name), Some(&body));
        if answer.status / 100 != 2 {
            return Err(format!(
                "Invalid HTTP response from keyring provider: {} {}",
                answer.status, answer.body
            ));
        }
        Ok(())
    }
}

/// A JSON document as PostgreSQL's `pg_parse_json` hands it to semantic actions.
#[derive(Debug)]
enum Event {
    ObjectStart,
    ObjectEnd,
    /// `object_field_start` with the field's name.
    Field(String),
    /// `scalar` with its token: a string's value, or a number's, `true`'s… text.
    Scalar(String),
}

/// Tokenizes a JSON document into events, in document order.
fn json_events(text: &str) -> Result<Vec<Event>, String> {
    struct Lexer<'t> {
        chars: std::iter::Peekable<std::str::Chars<'t>>,
        events: Vec<Event>,
    }
    impl Lexer<'_> {
        fn skip(&mut self) {
            while self.chars.peek().is_some_and(|c| c.is_whitespace()) {
                self.chars.next();
            }
        }
        fn string(&mut self) -> Result<String, String> {
            // The opening quote is consumed by the caller.
            let mut raw = String::from("\"");
            loop {
                let c = self.chars.next().ok_or("unterminated string")?;
                raw.push(c);
                match c {
                    '"' => break,
                    '\\' => raw.push(self.chars.next().ok_or("unterminated escape")?),
                    _ => {}
                }
            }
            serde_json::from_str(&raw).map_err(|e| format!("bad string {raw}: {e}"))
        }
        fn value(&mut self) -> Result<(), String> {
            self.skip();
            match self.chars.next().ok_or("unexpected end")? {
                '{' => {
                    self.events.push(Event::ObjectStart);
                    self.skip();
                    if self.chars.peek() == Some(&'}') {
                        self.chars.next();
                    } else {
                        loop {
                            self.skip();
                            if self.chars.next() != Some('"') {
                                return Err("expected a field name".into());
                            }
                            let name = self.string()?;
                            self.events.push(Event::Field(name));
                            self.skip();
                            if self.chars.next() != Some(':') {
                                return Err("expected ':'".into());
                            }
                            self.value()?;
                            self.skip();
                            match self.chars.next() {
                                Some(',') => continue,
                                Some('}') => break,
                                _ => return Err("expected ',' or '}'".into()),
                            }
                        }
                    }
                    self.events.push(Event::ObjectEnd);
                }
                '[' => {
                    self.skip();
                    if self.chars.peek() == Some(&']') {
                        self.chars.next();
                    } else {
                        loop {
                            self.value()?;
                            self.skip();
                            match self.chars.next() {
                                Some(',') => continue,
                                Some(']') => break,
                                _ => return Err("expected ',' or ']'".into()),
                            }
                        }
                    }
                }
                '"' => {
                    let s = self.string()?;
                    self.events.push(Event::Scalar(s));
                }
                first => {
                    let mut token = first.to_string();
                    while self
                        .chars
                        .peek()
                        .is_some_and(|c| c.is_ascii_alphanumeric() || "+-.".contains(*c))
                    {
                        token.push(self.chars.next().unwrap());
                    }
                    serde_json::from_str::<Value>(&token)
                        .map_err(|e| format!("bad token {token}: {e}"))?;
                    self.events.push(Event::Scalar(token));
                }
            }
            Ok(())
        }
    }
    let mut lexer = Lexer {
        chars: text.chars().peekable(),
        events: Vec::new(),
    };
    lexer.value()?;
    lexer.skip();
    if lexer.chars.next().is_some() {
        return Err("trailing characters".into());
    }
    Ok(lexer.events)
}

/// pg_tde's `parse_json_response`: the first `data` field at level 0, then the first `data`
/// field at level 1 after it, then a `key` field at level 2; the key is that field's scalar.
fn response_key(body: &str) -> Result<Option<String>, String> {
    #[derive(PartialEq)]
    enum State {
        TopData,
        Data,
        Key,
    }
    let mut state = State::TopData;
    let mut level: i32 = -1;
    let mut taking = false;
    let mut key = None;
    for event in json_events(body)? {
        match event {
            Event::ObjectStart => level += 1,
            Event::ObjectEnd => level -= 1,
            Event::Scalar(token) => {
                if taking {
                    key = Some(token);
                    taking = false;
                }
            }
            Event::Field(name) => match state {
                State::TopData if name == "data" && level == 0 => state = State::Data,
                State::Data if name == "data" && level == 1 => state = State::Key,
                State::Key if name == "key" && level == 2 => taking = true,
                _ => {}
            },
        }
    }
    Ok(key)
}

/// pg_tde's `parse_vault_mount_info`, state for state: `type` and `options.version` inside
/// the top-level `data` object. Returns (type, version).
fn mount_info(body: &str) -> Result<(Option<String>, Option<String>), String> {
    #[derive(PartialEq, Clone, Copy)]
    enum S {
        TopLevelField,
        DataStart,
        DataField,
        TypeValue,
        VersionValue,
        OptionsStart,
        OptionsField,
    }
    let mut state = S::TopLevelField;
    let mut level: i32 = -1;
    let (mut kind, mut version) = (None, None);
    for event in json_events(body)? {
        match event {
            Event::ObjectStart => {
                state = match state {
                    S::DataStart => S::DataField,
                    S::OptionsStart => S::OptionsField,
                    other => other,
                };
                level += 1;
            }
            Event::ObjectEnd => {
                if state == S::OptionsField {
                    state = S::DataField;
                } else if state == S::DataField && level == 1 {
                    state = S::TopLevelField;
                }
                level -= 1;
            }
            Event::Scalar(token) => match state {
                S::TypeValue => {
                    kind = Some(token);
                    state = S::DataField;
                }
                S::VersionValue => {
                    version = Some(token);
                    state = S::OptionsField;
                }
                S::OptionsStart => state = S::DataField,
                S::DataStart => state = S::TopLevelField,
                _ => {}
            },
            Event::Field(name) => match state {
                S::TopLevelField if level == 0 && name == "data" => state = S::DataStart,
                S::DataField if level == 1 && name == "type" => state = S::TypeValue,
                S::DataField if level == 1 && name == "options" => state = S::OptionsStart,
                S::OptionsField if level == 2 && name == "version" => state = S::VersionValue,
                _ => {}
            },
        }
    }
    Ok((kind, version))
}

/// pg_tde's docs' policy for its mount (`sys/mounts/*` read, so validation sees the mount).
fn pg_tde_policy(mount: &str) -> String {
    format!(
        "path \"{mount}/data/*\" {{\n  capabilities = [\"read\", \"create\", \"update\", \"list\"]\n}}\n\
         path \"{mount}/metadata/*\" {{\n  capabilities = [\"read\", \"list\"]\n}}\n\
         path \"sys/mounts/*\" {{\n  capabilities = [\"read\"]\n}}\n"
    )
}

/// pg_tde's life with a provider: added (validated), principal keys created (256- and
/// 128-bit), a second create of a name refused, keys loaded back, the provider changed
/// (validated again, now listing keys).
fn pg_tde_scenario(tde: &PgTde, what: &str) {
    assert_eq!(tde.validate(), Ok(200), "{what}: add the provider");
    let global: [u8; 32] = rand::random();
    let database: [u8; 16] = rand::random();
    assert_eq!(
        tde.create("global-master-key", &global),
        Ok(()),
        "{what}: pg_tde_create_key_using_global_key_provider"
    );
    assert_eq!(
        tde.create("db-key-16384", &database),
        Ok(()),
        "{what}: pg_tde_create_key_using_database_key_provider"
    );
    let again = tde.create("global-master-key", &rand::random::<[u8; 32]>());
    assert_eq!(
        again,
        Err("cannot create key \"global-master-key\" because it already exists".to_owned()),
        "{what}: a second create"
    );
    assert_eq!(
        tde.get("global-master-key"),
        Ok(Loaded::Key(global.to_vec())),
        "{what}: load the global key"
    );
    assert_eq!(
        tde.get("db-key-16384"),
        Ok(Loaded::Key(database.to_vec())),
        "{what}: load the database key"
    );
    assert_eq!(tde.get("never-made"), Ok(Loaded::Absent), "{what}");
    assert_eq!(tde.validate(), Ok(200), "{what}: change the provider");
}

#[test]
fn pg_tde_in_the_root_namespace() {
    let broker = Broker::dev();
    // `server --dev` mounts KV v2 at `secret/`; pg_tde's docs use a `tde` mount of its own.
    broker.bao_ok(&["secrets", "enable", "-path=tde", "-version=2", "kv"]);
    for mount in ["secret", "tde"] {
        policy(
            &broker,
            "",
            &format!("{mount}-policy"),
            &pg_tde_policy(mount),
        );
        let token = broker.bao_ok(&[
            "token",
            "create",
            &format!("-policy={mount}-policy"),
            "-field=token",
        ]);
        let tde = PgTde {
            broker: &broker,
            mount: mount.to_owned(),
            token: token.trim().to_owned(),
            namespace: None,
        };
        pg_tde_scenario(&tde, &format!("pg_tde on {mount}/"));
        let (status, value) = broker.request("GET", &format!("{mount}/metadata/?list=true"), None);
        assert_eq!(status, 200, "{value}");
        assert_eq!(
            value["data"]["keys"],
            json!(["db-key-16384", "global-master-key"])
        );
    }

    // Percona's "KV only" policy: no `sys/mounts/*`. Validation only warns (the newest
    // pg_tde), so the read must be refused cleanly, and keys still work.
    broker.bao_ok(&["secrets", "enable", "-path=pg_tde", "kv-v2"]);
    policy(
        &broker,
        "",
        "kv-only",
        "path \"pg_tde/data/*\" { capabilities = [\"create\", \"read\"] }\n\
         path \"pg_tde/metadata/*\" { capabilities = [\"read\", \"list\"] }\n",
    );
    let token = broker.bao_ok(&["token", "create", "-policy=kv-only", "-field=token"]);
    let tde = PgTde {
        broker: &broker,
        mount: "pg_tde".to_owned(),
        token: token.trim().to_owned(),
        namespace: None,
    };
    assert_eq!(tde.validate(), Ok(403), "KV-only policy");
    let key: [u8; 32] = rand::random();
    assert_eq!(tde.create("global-master-key", &key), Ok(()));
    assert_eq!(tde.get("global-master-key"), Ok(Loaded::Key(key.to_vec())));

    // The check validation makes is a real one: a KV v1 mount is refused.
    broker.bao_ok(&["secrets", "enable", "-version=1", "-path=kv1", "kv"]);
    let v1 = PgTde {
        broker: &broker,
        mount: "kv1".to_owned(),
        token: broker.token.clone(),
        namespace: None,
    };
    assert_eq!(
        v1.validate(),
        Err("vault mount has unsupported Key/Value engine version \"1\"".to_owned())
    );
}

#[test]
fn pg_tde_in_a_tenant() {
    let broker = Broker::dev();
    broker.bao_ok(&["namespace", "create", "acme"]);
    broker.bao_ok(&[
        "secrets",
        "enable",
        "-namespace=acme",
        "-path=tde",
        "-version=2",
        "kv",
    ]);
    policy(&broker, "acme", "tde-policy", &pg_tde_policy("tde"));
    let token = broker.bao_ok(&[
        "token",
        "create",
        "-namespace=acme",
        "-policy=tde-policy",
        "-field=token",
    ]);
    let token = token.trim().to_owned();
    // The namespace as Percona's tests pass it: `acme/`, with its trailing slash.
    let tde = PgTde {
        broker: &broker,
        mount: "tde".to_owned(),
        token: token.clone(),
        namespace: Some("acme/".to_owned()),
    };
    pg_tde_scenario(&tde, "pg_tde in acme/ by header");

    // The namespace in the mount path, as pg_tde's docs suggest (`pgns/tde`), with no
    // namespace header: `sys/mounts/acme/tde` is no mount of the root namespace, which
    // validation only warns about; keys are read and written under `acme/tde/…`.
    let by_path = PgTde {
        broker: &broker,
        mount: "acme/tde".to_owned(),
        token,
        namespace: None,
    };
    let status = by_path.validate();
    assert!(status.is_ok(), "pg_tde with acme/tde: {status:?}");
    let key: [u8; 32] = rand::random();
    assert_eq!(by_path.create("path-key", &key), Ok(()));
    assert_eq!(by_path.get("path-key"), Ok(Loaded::Key(key.to_vec())));
    // The same key, by header.
    assert_eq!(tde.get("path-key"), Ok(Loaded::Key(key.to_vec())));
    assert_eq!(
        by_path.get("global-master-key"),
        tde.get("global-master-key")
    );

    // Nothing of acme's is in the root namespace.
    let (status, _) = broker.request("GET", "tde/data/global-master-key", None);
    assert_ne!(status, 200);
}

/// The example's replays (`examples/kv-integrators/kes.sh` and `pg_tde.sh`) run to their
/// end against a dev broker set up as `examples/kv-integrators/run` sets it up.
#[test]
fn the_examples_replays_run_against_a_dev_broker() {
    let broker = Broker::dev();
    let run = |script: &str, env: &[(&str, &str)]| {
        let out =
            std::process::Command::new(repo_root().join("examples/kv-integrators").join(script))
                .env("VAULT_ADDR", &broker.addr)
                .envs(env.iter().copied())
                .output()
                .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.ends_with(": ok\n"),
            "{script} {env:?} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let (role_id, secret_id) = kes_vault_setup(&broker, "", false);
    run(
        "kes.sh",
        &[("ROLE_ID", &role_id), ("SECRET_ID", &secret_id)],
    );
    let (role_id, secret_id) = kes_vault_setup(&broker, "acme", true);
    run(
        "kes.sh",
        &[
            ("ROLE_ID", &role_id),
            ("SECRET_ID", &secret_id),
            ("KV_VERSION", "v2"),
            ("NAMESPACE", "acme"),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    for (tenant, namespace) in [("", ""), ("acme", "acme/")] {
        bao(
            &broker,
            tenant,
            &["secrets", "enable", "-path=tde", "-version=2", "kv"],
        );
        policy(&broker, tenant, "tde-policy", &pg_tde_policy("tde"));
        let token = bao(
            &broker,
            tenant,
            &["token", "create", "-policy=tde-policy", "-field=token"],
        );
        let file = dir.path().join(format!("token-{tenant}"));
        std::fs::write(&file, token.trim()).unwrap();
        run(
            "pg_tde.sh",
            &[
                ("TOKEN_FILE", file.to_str().unwrap()),
                ("NAMESPACE", namespace),
            ],
        );
    }
}

/// The parsers above hold to what their clients do with Vault's own answers.
#[test]
fn the_client_parsers_read_vaults_answers_as_the_clients_do() {
    // pg_tde reads `data.type` and `data.options.version`, not the top-level copies.
    let mount = r#"{"type":"generic","options":{"version":"1"},"request_id":"x",
        "data":{"accessor":"kv_1","config":{"default_lease_ttl":0},"description":"",
        "options":{"version":"2"},"type":"kv"}}"#;
    assert_eq!(
        mount_info(mount),
        Ok((Some("kv".to_owned()), Some("2".to_owned())))
    );
    assert_eq!(
        mount_info(r#"{"data":{"type":"kv","options":null}}"#),
        Ok((Some("kv".to_owned()), None))
    );
    let read = r#"{"data":{"metadata":{"key":"no"},"data":{"key":"a2V5"}},"key":"no"}"#;
    assert_eq!(response_key(read), Ok(Some("a2V5".to_owned())));
    // The Go SDK: `{"errors":[]}` is no secret; warnings on a 404 make one.
    assert_eq!(parse_secret(r#"{"errors":[]}"#), Ok(None));
    let answer = Answer {
        status: 404,
        body: r#"{"warnings":["w"]}"#.to_owned(),
    };
    assert!(go_read(&answer).unwrap().is_some());
    assert!(parse_secret(r#"{"lease_duration":"1"}"#).is_err());
    assert!(rfc3339("2026-12-07T19:30:00.123456789Z"));
    assert!(rfc3339("2026-12-07T19:30:00+01:00"));
    assert!(!rfc3339("2026-12-07 19:30:00Z"));
    assert_eq!(join(&["kv", "", "name"]), "kv/name");
    assert_eq!(join(&["kv", "metadata", ""]), "kv/metadata");
}
