//! The transit engine's routes (Vault transit API), plus our `backend` and `mode` fields.

use axum::{http::StatusCode, response::Response};
use base64::{engine::general_purpose::STANDARD, Engine as _};
use keybroker_core::{
    auth::token::Caller,
    changes::Change,
    engines::transit::{
        CreateKeyOptions, DecryptItem, EncryptItem, EncryptOutput, KeyConfigUpdate, KeyInfo,
        KeyType,
    },
    store::{KeyMode, MountRecord},
    Error, Tenant,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use zeroize::Zeroizing;

use super::{
    batch_status, body,
    error::ApiError,
    kind::{unmounted, Call, Class, Handled, MountKind, Spec},
    response,
    routes::{route, Route},
    ApiRequest, Operation, Ready,
};

/// The transit engine's type name.
const KIND: &str = "transit";

/// Every route below a transit mount.
pub(super) const ROUTES: &[Route] = {
    use Operation::{Delete as D, List as L, Read as R, Write as W};
    &[
        route("keys", &[L]),
        route("keys/:name", &[R, W, D]),
        route("keys/:name/config", &[W]),
        route("keys/:name/rotate", &[W]),
        route("encrypt/:name", &[W]),
        route("decrypt/:name", &[W]),
        route("rewrap/:name", &[W]),
        route("datakey/:kind/:name", &[W]),
        route("sign/:name", &[W]),
        route("sign/:name/:algorithm", &[W]),
        route("verify/:name", &[W]),
        route("verify/:name/:algorithm", &[W]),
        route("random", &[W]),
        route("random/:a", &[W]),
        route("random/:a/:b", &[W]),
        route("config/keys", &[R, W]),
    ]
};

/// The transit engine.
pub(super) struct TransitEngine;

#[async_trait::async_trait]
impl MountKind for TransitEngine {
    fn spec(&self) -> &'static Spec {
        &Spec {
            name: KIND,
            class: Class::Engine,
            routes: ROUTES,
            sudo_paths: &[],
        }
    }

    /// Creating a key, or encrypting with a missing key (upsert).
    async fn creates(
        &self,
        ready: &Ready,
        tenant: &Tenant,
        mount: &MountRecord,
        rest: &str,
    ) -> bool {
        let name = match rest
            .trim_end_matches('/')
            .split('/')
            .collect::<Vec<_>>()
            .as_slice()
        {
            ["keys", name] | ["encrypt", name] => (*name).to_owned(),
            _ => return false,
        };
        matches!(
            ready.broker.transit.read_key(tenant, mount.id, &name).await,
            Err(Error::NotFound(_))
        )
    }

    async fn handle(&self, call: Call<'_>) -> Handled {
        let Some(mount) = call.mount else {
            return unmounted();
        };
        let Call {
            ready,
            caller,
            tenant,
            rest,
            request,
            ..
        } = call;
        handle(ready, caller, tenant, mount, rest, request).await
    }

    /// Keys are cached by tenant and mount.
    async fn invalidate(&self, ready: &Ready, change: &Change) {
        let transit = &ready.broker.transit;
        match change {
            Change::TenantDeleted(tenant) => transit.forget_tenant(*tenant),
            Change::Mounts(tenant) => match ready.broker.mounts.table(*tenant).await {
                Ok(table) => {
                    let live: Vec<_> = table.iter().map(|m| m.id).collect();
                    transit.forget_mounts_except(*tenant, &live);
                }
                Err(_) => transit.forget_tenant(*tenant),
            },
            Change::Key(tenant, key) => {
                // The cached key was dropped before the re-read that failed; the staleness
                // bound keeps requests off this node until its feed works again.
                if let Err(error) = transit.refresh_key(*tenant, *key).await {
                    tracing::warn!(%error, change = ?change, "could not apply a change from the cluster");
                }
            }
            Change::Resync => transit.forget_all(),
            _ => {}
        }
    }
}

/// Routes a request inside a transit mount.
async fn handle(
    ready: &Ready,
    caller: &Caller,
    tenant: &Tenant,
    mount: &MountRecord,
    rest: &str,
    request: &ApiRequest,
) -> (&'static str, Result<Response, ApiError>) {
    if mount.kind != "transit" {
        return ("unknown", Err(ApiError::UnsupportedPath));
    }
    let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    let op = request.operation;
    let context = Context {
        ready,
        caller,
        tenant,
        mount,
        request,
    };
    match (segments.as_slice(), op) {
        (["keys"], Operation::List) => ("transit/keys", context.list_keys().await),
        (["keys", name], Operation::Write) => ("transit/keys", context.create_key(name).await),
        (["keys", name], Operation::Read) => ("transit/keys", context.read_key(name).await),
        (["keys", name], Operation::Delete) => ("transit/keys", context.delete_key(name).await),
        (["keys", name, "config"], Operation::Write) => {
            ("transit/keys/config", context.configure_key(name).await)
        }
        (["keys", name, "rotate"], Operation::Write) => {
            ("transit/keys/rotate", context.rotate(name).await)
        }
        (["encrypt", name], Operation::Write) => ("transit/encrypt", context.encrypt(name).await),
        (["decrypt", name], Operation::Write) => ("transit/decrypt", context.decrypt(name).await),
        (["rewrap", name], Operation::Write) => ("transit/rewrap", context.rewrap(name).await),
        (["datakey", kind, name], Operation::Write) => {
            ("transit/datakey", context.datakey(kind, name).await)
        }
        (["sign", name] | ["sign", name, _], Operation::Write) => (
            "transit/sign",
            context.sign(name, segments.get(2).copied()).await,
        ),
        (["verify", name] | ["verify", name, _], Operation::Write) => (
            "transit/verify",
            context.verify(name, segments.get(2).copied()).await,
        ),
        (["random"], Operation::Write) => ("transit/random", context.random(None, None)),
        (["random", a], Operation::Write) => ("transit/random", context.random(Some(a), None)),
        (["random", a, b], Operation::Write) => {
            ("transit/random", context.random(Some(a), Some(b)))
        }
        (["config", "keys"], Operation::Read) => {
            ("transit/config/keys", Ok(context.read_mount_config()))
        }
        (["config", "keys"], Operation::Write) => {
            ("transit/config/keys", context.write_mount_config().await)
        }
        (
            ["keys"]
            | ["keys", _]
            | ["keys", _, "config" | "rotate"]
            | ["encrypt" | "decrypt" | "rewrap", _]
            | ["sign" | "verify", _]
            | ["sign" | "verify", _, _]
            | ["datakey", _, _]
            | ["random", ..]
            | ["config", "keys"],
            _,
        ) => ("transit", Err(ApiError::UnsupportedOperation)),
        _ => ("transit", Err(ApiError::UnsupportedPath)),
    }
}

pub(super) struct Context<'a> {
    pub(super) ready: &'a Ready,
    caller: &'a Caller,
    pub(super) tenant: &'a Tenant,
    pub(super) mount: &'a MountRecord,
    pub(super) request: &'a ApiRequest,
}

pub(super) fn decode_base64(field: &str, value: &str) -> Result<Vec<u8>, Error> {
    STANDARD
        .decode(value.trim())
        .map_err(|_| Error::invalid(format!("failed to base64-decode {field}")))
}

fn decode_secret(field: &str, value: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
    decode_base64(field, value).map(Zeroizing::new)
}

fn optional_base64(field: &str, value: Option<&str>) -> Result<Vec<u8>, Error> {
    match value {
        None | Some("") => Ok(Vec::new()),
        Some(value) => decode_base64(field, value),
    }
}

/// Vault transit API: create key (plus `backend`, `mode`).
#[derive(Deserialize, Default)]
#[serde(default)]
struct CreateKeyBody {
    #[serde(rename = "type")]
    key_type: Option<String>,
    backend: Option<String>,
    mode: Option<String>,
    #[serde(deserialize_with = "body::opt_duration_secs")]
    auto_rotate_period: Option<u64>,
    #[serde(deserialize_with = "body::opt_bool")]
    derived: Option<bool>,
    #[serde(deserialize_with = "body::opt_bool")]
    convergent_encryption: Option<bool>,
    #[serde(deserialize_with = "body::opt_bool")]
    exportable: Option<bool>,
    #[serde(deserialize_with = "body::opt_bool")]
    allow_plaintext_backup: Option<bool>,
    /// Ours: bind this existing backend key instead of creating one.
    backend_key: Option<String>,
}

/// Vault transit API: update key configuration.
#[derive(Deserialize, Default)]
#[serde(default)]
struct KeyConfigBody {
    #[serde(deserialize_with = "body::opt_u32")]
    min_decryption_version: Option<u32>,
    #[serde(deserialize_with = "body::opt_u32")]
    min_encryption_version: Option<u32>,
    #[serde(deserialize_with = "body::opt_bool")]
    deletion_allowed: Option<bool>,
    #[serde(deserialize_with = "body::opt_duration_secs")]
    auto_rotate_period: Option<u64>,
    #[serde(deserialize_with = "body::opt_bool")]
    exportable: Option<bool>,
    #[serde(deserialize_with = "body::opt_bool")]
    allow_plaintext_backup: Option<bool>,
}

/// One item of `batch_input` (Vault transit API: encrypt, decrypt, rewrap).
#[derive(Deserialize, Default)]
#[serde(default)]
struct BatchItem {
    plaintext: Option<String>,
    ciphertext: Option<String>,
    associated_data: Option<String>,
    #[serde(deserialize_with = "body::opt_u32")]
    key_version: Option<u32>,
    reference: Option<String>,
}

/// Vault transit API: encrypt, decrypt and rewrap share these fields.
#[derive(Deserialize, Default)]
#[serde(default)]
struct DataBody {
    plaintext: Option<String>,
    ciphertext: Option<String>,
    associated_data: Option<String>,
    #[serde(deserialize_with = "body::opt_u32")]
    key_version: Option<u32>,
    #[serde(deserialize_with = "body::opt_list")]
    batch_input: Option<Vec<BatchItem>>,
    #[serde(deserialize_with = "body::opt_u64")]
    partial_failure_response_code: Option<u64>,
    #[serde(deserialize_with = "body::opt_u32")]
    bits: Option<u32>,
}

/// Vault transit API: one item of `batch_results` — the fields a single item answers with,
/// or its error — and the caller's `reference`.
#[derive(Serialize)]
struct BatchResult<S> {
    #[serde(flatten)]
    data: Option<S>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    reference: String,
}

#[derive(Serialize)]
struct Batch<T> {
    batch_results: Vec<T>,
}

/// Whether a batch item's error fails the whole request instead of the item.
fn is_request_error(error: &Error) -> bool {
    matches!(
        error,
        Error::Unavailable(_) | Error::Internal { .. } | Error::Sealed | Error::BackendDenied(_)
    )
}

impl DataBody {
    /// The request's items: `batch_input`, or the single top-level item.
    fn items(self) -> (Vec<BatchItem>, bool) {
        match self.batch_input {
            Some(items) => (items, true),
            None => (
                vec![BatchItem {
                    plaintext: self.plaintext,
                    ciphertext: self.ciphertext,
                    associated_data: self.associated_data,
                    key_version: self.key_version,
                    reference: None,
                }],
                false,
            ),
        }
    }
}

/// Every batch item must agree on `key_version` (we encrypt a batch under one version).
fn common_key_version(top: Option<u32>, items: &[BatchItem]) -> Result<Option<u32>, Error> {
    let mut chosen = top;
    for item in items {
        match (chosen, item.key_version) {
            (_, None) => {}
            (None, Some(v)) => chosen = Some(v),
            (Some(a), Some(b)) if a == b => {}
            _ => {
                return Err(Error::invalid(
                    "all batch items must use the same key_version",
                ))
            }
        }
    }
    Ok(chosen)
}

fn key_json(info: &KeyInfo) -> Value {
    let record = &info.record;
    let key_type = KeyType::parse(&record.key_type).ok();
    let signing = key_type.is_some_and(KeyType::is_asymmetric);
    // Vault shows a symmetric version's creation time, and an asymmetric version's public
    // key with its name and creation time.
    let keys: Map<String, Value> = info
        .versions
        .iter()
        .map(|v| {
            let entry = match (key_type, &v.public_key) {
                (Some(kind), Some(public_key)) if signing => json!({
                    "name": kind.version_name(),
                    "public_key": public_key,
                    "creation_time": rfc3339(v.created_at),
                }),
                _ => json!(v.created_at),
            };
            (v.version.to_string(), entry)
        })
        .collect();
    let counts: Map<String, Value> = info
        .versions
        .iter()
        .map(|v| (v.version.to_string(), json!(v.encryptions_reserved)))
        .collect();
    json!({
        "name": record.name,
        "type": record.key_type,
        "keys": keys,
        "latest_version": record.latest_version,
        "min_available_version": 0,
        "min_decryption_version": record.min_decryption_version,
        "min_encryption_version": record.min_encryption_version,
        "deletion_allowed": record.deletion_allowed,
        "auto_rotate_period": record.auto_rotate_period,
        "derived": false,
        "exportable": false,
        "allow_plaintext_backup": false,
        "imported_key": false,
        "supports_encryption": !signing,
        "supports_decryption": !signing,
        "supports_derivation": false,
        "supports_signing": signing,
        "bound": record.bound,
        "backend": record.backend,
        "mode": record.mode.as_str(),
        "backend_available": info.backend_available,
        "encryption_counts": counts,
    })
}

/// Unix seconds as RFC 3339 (UTC), as Vault writes times.
fn rfc3339(unix: i64) -> String {
    humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(unix).unwrap_or(0)),
    )
    .to_string()
}

impl Context<'_> {
    pub(super) fn transit(&self) -> &keybroker_core::engines::transit::Transit {
        &self.ready.broker.transit
    }

    async fn list_keys(&self) -> Result<Response, ApiError> {
        let keys = self.transit().list_keys(self.tenant, self.mount.id).await?;
        if keys.is_empty() {
            // Vault answers an empty list with 404 and no message.
            return Ok(super::error::error_body(StatusCode::NOT_FOUND, &[]));
        }
        Ok(response::data(&json!({ "keys": keys })))
    }

    async fn create_key(&self, name: &str) -> Result<Response, ApiError> {
        let input: CreateKeyBody = body::parse(&self.request.body)?;
        for (flag, what) in [
            (input.derived, "derived keys"),
            (input.convergent_encryption, "convergent encryption"),
            (input.exportable, "exportable keys"),
            (input.allow_plaintext_backup, "plaintext backup"),
        ] {
            if flag == Some(true) {
                return Err(ApiError::bad_request(format!(
                    "{what} are not supported by keybroker"
                )));
            }
        }
        let mode = match input.mode.as_deref() {
            None | Some("") => None,
            Some(text) => Some(KeyMode::parse(text).ok_or_else(|| {
                ApiError::bad_request(format!("invalid mode {text:?}: use envelope or direct"))
            })?),
        };
        let backend_key = input.backend_key.filter(|k| !k.is_empty());
        // Binding any backend key is an act of authority over the instance: a root-namespace
        // token with `sudo` on `sys/plugins/backends/<instance>` (not `sudo` on a tenant's
        // transit path, which an operator delegated to one tenant may hold). Others bind
        // only what the instance's drop-in grants the tenant.
        let instance = self.transit().backend_for(input.backend.as_deref());
        let operator = backend_key.is_some()
            && super::governs_instance(self.ready, self.caller, instance).await?;
        let options = CreateKeyOptions {
            key_type: input.key_type.filter(|t| !t.is_empty()),
            backend: input.backend.filter(|b| !b.is_empty()),
            mode,
            auto_rotate_period: input.auto_rotate_period,
            backend_key,
            operator,
        };
        let info = self
            .transit()
            .create_key(self.tenant, self.mount.id, name, options)
            .await?;
        Ok(response::data(&key_json(&info)))
    }

    async fn read_key(&self, name: &str) -> Result<Response, ApiError> {
        let info = self
            .transit()
            .read_key(self.tenant, self.mount.id, name)
            .await?;
        Ok(response::data(&key_json(&info)))
    }

    async fn delete_key(&self, name: &str) -> Result<Response, ApiError> {
        self.transit()
            .delete_key(self.tenant, self.mount.id, name)
            .await?;
        Ok(response::no_content())
    }

    async fn configure_key(&self, name: &str) -> Result<Response, ApiError> {
        let input: KeyConfigBody = body::parse(&self.request.body)?;
        if input.exportable == Some(true) || input.allow_plaintext_backup == Some(true) {
            return Err(ApiError::bad_request(
                "exportable keys and plaintext backup are not supported by keybroker",
            ));
        }
        let update = KeyConfigUpdate {
            min_decryption_version: input.min_decryption_version,
            min_encryption_version: input.min_encryption_version,
            deletion_allowed: input.deletion_allowed,
            auto_rotate_period: input.auto_rotate_period,
        };
        let info = self
            .transit()
            .configure_key(self.tenant, self.mount.id, name, update)
            .await?;
        Ok(response::data(&key_json(&info)))
    }

    async fn rotate(&self, name: &str) -> Result<Response, ApiError> {
        let info = self
            .transit()
            .rotate(self.tenant, self.mount.id, name)
            .await?;
        Ok(response::data(&key_json(&info)))
    }

    fn upsert_allowed(&self) -> bool {
        !self
            .mount
            .config
            .get("disable_upsert")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    async fn encrypt(&self, name: &str) -> Result<Response, ApiError> {
        let input: DataBody = body::parse(&self.request.body)?;
        let partial_code = input.partial_failure_response_code;
        let top_version = input.key_version;
        let (items, batch) = input.items();
        let key_version = common_key_version(top_version, &items)?;
        let (slots, work) = split(&items, batch, |item| {
            let text = item
                .plaintext
                .as_deref()
                .ok_or_else(|| Error::invalid("missing plaintext to encrypt"))?;
            Ok(EncryptItem {
                plaintext: decode_secret("plaintext", text)?,
                associated_data: optional_base64(
                    "associated_data",
                    item.associated_data.as_deref(),
                )?,
            })
        })?;
        let results = if work.is_empty() {
            Vec::new()
        } else {
            let upsert = self.upsert_allowed();
            self.transit()
                .encrypt(self.tenant, self.mount.id, name, key_version, upsert, work)
                .await?
        };
        let results = merge(slots, results)?;
        respond(
            results,
            references(&items),
            batch,
            partial_code,
            ciphertext_data,
        )
    }

    async fn decrypt(&self, name: &str) -> Result<Response, ApiError> {
        let input: DataBody = body::parse(&self.request.body)?;
        let partial_code = input.partial_failure_response_code;
        let (items, batch) = input.items();
        let (slots, work) = split(&items, batch, decrypt_item)?;
        let results = if work.is_empty() {
            Vec::new()
        } else {
            self.transit()
                .decrypt(self.tenant, self.mount.id, name, work)
                .await?
        };
        let results = merge(slots, results)?;
        respond(
            results,
            references(&items),
            batch,
            partial_code,
            |plaintext: Zeroizing<Vec<u8>>| PlaintextData {
                plaintext: Zeroizing::new(STANDARD.encode(plaintext.as_slice())),
            },
        )
    }

    async fn rewrap(&self, name: &str) -> Result<Response, ApiError> {
        let input: DataBody = body::parse(&self.request.body)?;
        let partial_code = input.partial_failure_response_code;
        let top_version = input.key_version;
        let (items, batch) = input.items();
        let key_version = common_key_version(top_version, &items)?;
        let (slots, work) = split(&items, batch, decrypt_item)?;
        let results = if work.is_empty() {
            Vec::new()
        } else {
            self.transit()
                .rewrap(self.tenant, self.mount.id, name, key_version, work)
                .await?
        };
        let results = merge(slots, results)?;
        respond(
            results,
            references(&items),
            batch,
            partial_code,
            ciphertext_data,
        )
    }

    async fn datakey(&self, kind: &str, name: &str) -> Result<Response, ApiError> {
        let with_plaintext = match kind {
            "plaintext" => true,
            "wrapped" => false,
            other => {
                return Err(ApiError::bad_request(format!(
                    "invalid type {other:?}: use plaintext or wrapped"
                )))
            }
        };
        let input: DataBody = body::parse(&self.request.body)?;
        let associated_data = optional_base64("associated_data", input.associated_data.as_deref())?;
        let output = self
            .transit()
            .datakey(
                self.tenant,
                self.mount.id,
                name,
                with_plaintext,
                input.bits.unwrap_or(256),
                associated_data,
            )
            .await?;
        let mut data =
            json!({ "ciphertext": output.ciphertext, "key_version": output.key_version });
        if let (Some(plaintext), Some(map)) = (&output.plaintext, data.as_object_mut()) {
            let encoded = Zeroizing::new(STANDARD.encode(plaintext.as_slice()));
            map.insert(
                "plaintext".to_owned(),
                Value::String(encoded.as_str().to_owned()),
            );
        }
        Ok(response::data(&data))
    }

    /// Vault transit API: generate random bytes (`random[/source][/bytes]`).
    fn random(&self, first: Option<&str>, second: Option<&str>) -> Result<Response, ApiError> {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct RandomBody {
            #[serde(deserialize_with = "body::opt_u64")]
            bytes: Option<u64>,
            format: Option<String>,
            source: Option<String>,
        }
        let input: RandomBody = body::parse(&self.request.body)?;
        let mut bytes = input.bytes;
        let mut source = input.source;
        for segment in [first, second].into_iter().flatten() {
            match segment.parse::<u64>() {
                Ok(n) => bytes = Some(n),
                Err(_) => source = Some(segment.to_owned()),
            }
        }
        match source.as_deref() {
            None | Some("" | "platform" | "all" | "seal") => {}
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "unsupported entropy source {other:?}"
                )))
            }
        }
        let count = bytes.unwrap_or(32);
        if count == 0 || count > 128 * 1024 {
            return Err(ApiError::bad_request("bytes must be between 1 and 131072"));
        }
        let random = keybroker_core::crypto::random_bytes(count as usize);
        let encoded = match input.format.as_deref() {
            None | Some("" | "base64") => STANDARD.encode(random.as_slice()),
            Some("hex") => hex::encode(random.as_slice()),
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "unsupported encoding format {other:?}"
                )))
            }
        };
        Ok(response::data(&json!({ "random_bytes": encoded })))
    }

    fn read_mount_config(&self) -> Response {
        response::data(&json!({ "disable_upsert": !self.upsert_allowed() }))
    }

    async fn write_mount_config(&self) -> Result<Response, ApiError> {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct MountConfigBody {
            #[serde(deserialize_with = "body::opt_bool")]
            disable_upsert: Option<bool>,
        }
        let input: MountConfigBody = body::parse(&self.request.body)?;
        let mut config = self.mount.config.clone();
        if let (Some(disable), Some(map)) = (input.disable_upsert, config.as_object_mut()) {
            map.insert("disable_upsert".to_owned(), Value::Bool(disable));
        }
        self.ready
            .broker
            .mounts
            .set_config(self.mount, config.clone())
            .await?;
        Ok(response::data(&json!({
            "disable_upsert": config.get("disable_upsert").and_then(Value::as_bool).unwrap_or(false)
        })))
    }
}

fn decrypt_item(item: &BatchItem) -> Result<DecryptItem, Error> {
    let ciphertext = item
        .ciphertext
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| Error::invalid("missing ciphertext to decrypt"))?;
    Ok(DecryptItem {
        ciphertext: ciphertext.to_owned(),
        associated_data: optional_base64("associated_data", item.associated_data.as_deref())?,
    })
}

/// Vault transit API: encrypt and rewrap response data.
#[derive(Serialize)]
struct CiphertextData {
    ciphertext: String,
    key_version: u32,
}

/// Vault transit API: decrypt response data.
#[derive(Serialize)]
struct PlaintextData {
    plaintext: Zeroizing<String>,
}

fn ciphertext_data(output: EncryptOutput) -> CiphertextData {
    CiphertextData {
        ciphertext: output.ciphertext,
        key_version: output.key_version,
    }
}

/// Decodes each item. Items that fail are answered in place (`Some(error)` in the slot);
/// the rest go to the core. Outside a batch the first failure fails the request.
pub(super) fn split<B, W>(
    items: &[B],
    batch: bool,
    decode: impl Fn(&B) -> Result<W, Error>,
) -> Result<(Vec<Option<Error>>, Vec<W>), ApiError> {
    let mut slots = Vec::with_capacity(items.len());
    let mut work = Vec::with_capacity(items.len());
    for item in items {
        match decode(item) {
            Ok(decoded) => {
                work.push(decoded);
                slots.push(None);
            }
            Err(error) if !batch => return Err(error.into()),
            Err(error) => slots.push(Some(error)),
        }
    }
    Ok((slots, work))
}

/// Puts the core's results back in item order. An error that is not about the item (a
/// backend unavailable) fails the whole request.
pub(super) fn merge<T>(
    slots: Vec<Option<Error>>,
    results: Vec<Result<T, Error>>,
) -> Result<Vec<Result<T, Error>>, ApiError> {
    let mut results = results.into_iter();
    let mut merged = Vec::with_capacity(slots.len());
    for slot in slots {
        let result = match slot {
            None => results
                .next()
                .unwrap_or_else(|| Err(Error::internal("missing result"))),
            Some(error) => Err(error),
        };
        if let Err(error) = &result {
            if is_request_error(error) {
                return Err(ApiError::Core(clone_error(error)));
            }
        }
        merged.push(result);
    }
    Ok(merged)
}

fn references(items: &[BatchItem]) -> Vec<String> {
    items
        .iter()
        .map(|item| item.reference.clone().unwrap_or_default())
        .collect()
}

/// A single item answers with its data; a batch with `batch_results` and Vault's status.
pub(super) fn respond<T, S: Serialize>(
    mut results: Vec<Result<T, Error>>,
    references: Vec<String>,
    batch: bool,
    partial_code: Option<u64>,
    single: impl Fn(T) -> S,
) -> Result<Response, ApiError> {
    if !batch {
        let result = results
            .pop()
            .ok_or_else(|| ApiError::Core(Error::internal("missing result")))?;
        return Ok(response::data(&single(result?)));
    }
    let any_ok = results.iter().any(Result::is_ok);
    let any_failed = results.iter().any(Result::is_err);
    let batch_results: Vec<BatchResult<S>> = results
        .into_iter()
        .zip(references)
        .map(|(result, reference)| match result {
            Ok(value) => BatchResult {
                data: Some(single(value)),
                error: None,
                reference,
            },
            Err(error) => BatchResult {
                data: None,
                error: Some(error.to_string()),
                reference,
            },
        })
        .collect();
    let partial_code = partial_code.and_then(|c| u16::try_from(c).ok());
    let status = batch_status(any_ok, any_failed, partial_code);
    Ok(response::data_with(status, &Batch { batch_results }, &[]))
}

/// Request-level errors found on an item are re-raised for the whole request.
fn clone_error(error: &Error) -> Error {
    match error {
        Error::Unavailable(message) => Error::Unavailable(message.clone()),
        Error::BackendDenied(message) => Error::BackendDenied(message.clone()),
        Error::Sealed => Error::Sealed,
        other => Error::internal(other.to_string()),
    }
}

/// Every body of this module decoded as its handlers decode it, without a broker (see
/// [`super::fuzzing`]): the items split as encrypt and decrypt split them, every item the
/// core would get answered, and the response built; how many of the wire structs accepted
/// `body`.
pub(super) fn fuzz_request_bodies(body: &bytes::Bytes) -> usize {
    let mut accepted = 0;
    if let Ok(input) = body::parse::<CreateKeyBody>(body) {
        accepted += 1;
        if let Some(key_type) = input.key_type {
            let _ = KeyType::parse(&key_type);
        }
        if let Some(mode) = input.mode {
            let _ = KeyMode::parse(&mode);
        }
    }
    accepted += usize::from(body::parse::<KeyConfigBody>(body).is_ok());
    if let Ok(input) = body::parse::<DataBody>(body) {
        accepted += 1;
        let partial_code = input.partial_failure_response_code;
        let _ = optional_base64("associated_data", input.associated_data.as_deref());
        let top_version = input.key_version;
        let (items, batch) = input.items();
        let _ = common_key_version(top_version, &items);
        let encrypt = split(&items, batch, |item| {
            let text = item
                .plaintext
                .as_deref()
                .ok_or_else(|| Error::invalid("missing plaintext to encrypt"))?;
            Ok(EncryptItem {
                plaintext: decode_secret("plaintext", text)?,
                associated_data: optional_base64(
                    "associated_data",
                    item.associated_data.as_deref(),
                )?,
            })
        });
        if let Ok((slots, work)) = encrypt {
            let answered = work
                .iter()
                .map(|_| {
                    Ok(EncryptOutput {
                        ciphertext: "vault:v1:AAAA".to_owned(),
                        key_version: 1,
                    })
                })
                .collect();
            if let Ok(results) = merge(slots, answered) {
                let _ = respond(
                    results,
                    references(&items),
                    batch,
                    partial_code,
                    ciphertext_data,
                );
            }
        }
        if let Ok((_, work)) = split(&items, batch, decrypt_item) {
            for item in work {
                let _ = keybroker_core::engines::transit::ciphertext::parse(&item.ciphertext);
            }
        }
    }
    accepted
}
