//! The KV secrets engine's routes: Vault's KV v1 and v2 API at each `kv` mount, the
//! version from the mount's `options` (`version=2`; `kv-v2` enables one), plus our
//! `rotate` and `key` (version 2 only) for the mount's key. `wire.rs` holds the bodies and
//! answers; the engine is `keybroker_core::engines::kv`.
//!
//! Who may call what: every route needs a token whose policies grant the path (Vault's
//! `secret/data/*`, `secret/metadata/*`, `secret/delete/*`, … and the `patch` capability);
//! `rotate` and `key` also need `sudo` (they act on the key every secret of the mount is
//! encrypted under).

mod wire;

use axum::{http::StatusCode, response::Response};
use keybroker_core::{
    changes::Change,
    engines::kv::{DataRead, KvMount, KvOptions, SecretPath, VersionChange, KEY_NAME},
    mounts::Tuning,
    store::MountRecord,
    Tenant,
};
use serde_json::{json, Value};

use super::{
    body,
    error::{error_body, ApiError},
    kind::{unmounted, Call, Class, Handled, MountKind, Spec},
    response,
    routes::{route, Route},
    ApiRequest, Operation, Ready,
};

/// The KV engine's type name (`kv-v2` enables it with `version=2`).
pub(super) const KIND: &str = "kv";

/// The type name that enables a KV mount of version 2.
pub(super) const KIND_V2_ALIAS: &str = "kv-v2";

/// The default lease a version 1 read reports (Vault's 768 hours).
const V1_LEASE_SECS: u64 = 768 * 3600;

/// Every route below a KV mount: version 2's, then version 1's (any path). The handler
/// answers by the mount's version.
pub(super) const ROUTES: &[Route] = {
    use Operation::{Delete as D, List as L, Patch as P, Read as R, Write as W};
    &[
        route("config", &[R, W]),
        route("rotate", &[W]),
        route("key", &[R]),
        route("data/*path", &[R, W, D, P]),
        route("metadata", &[L]),
        route("metadata/*path", &[R, W, D, L, P]),
        route("delete/*path", &[W]),
        route("undelete/*path", &[W]),
        route("destroy/*path", &[W]),
        route("subkeys/*path", &[R]),
        route("", &[L]),
        route("*path", &[R, W, D, L]),
    ]
};

/// The KV engine.
pub(super) struct KvEngine;

/// The options a KV mount keeps (`version`, `backend`, `rotation_period`).
pub(super) fn options(tuning: &Tuning) -> Result<KvOptions, ApiError> {
    let get = |name: &str| {
        tuning
            .options
            .as_ref()
            .and_then(|o| o.get(name))
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    };
    let version = match get("version") {
        None | Some("1") => 1,
        Some("2") => 2,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "invalid KV version {other:?}: use 1 or 2"
            )))
        }
    };
    let rotation_period = match get("rotation_period") {
        None => 0,
        Some(text) => {
            #[derive(serde::Deserialize)]
            struct Period {
                #[serde(deserialize_with = "body::opt_duration_secs")]
                period: Option<u64>,
            }
            serde_json::from_value::<Period>(json!({ "period": text }))
                .map_err(|e| ApiError::bad_request(format!("invalid rotation_period: {e}")))?
                .period
                .unwrap_or(0)
        }
    };
    Ok(KvOptions {
        version,
        backend: get("backend").map(str::to_owned),
        rotation_period,
    })
}

#[async_trait::async_trait]
impl MountKind for KvEngine {
    fn spec(&self) -> &'static Spec {
        &Spec {
            name: KIND,
            class: Class::Engine,
            routes: ROUTES,
            sudo_paths: &["rotate", "key"],
        }
    }

    /// A write to a secret (or its metadata) that is not there yet.
    async fn creates(
        &self,
        ready: &Ready,
        tenant: &Tenant,
        mount: &MountRecord,
        rest: &str,
    ) -> bool {
        let Ok(options) = options(&Tuning::of(mount)) else {
            return false;
        };
        let raw = match options.version {
            2 => match rest.split_once('/') {
                Some(("data" | "metadata", path)) => path,
                _ => return false,
            },
            _ => rest,
        };
        let Ok(path) = SecretPath::secret(raw) else {
            return false;
        };
        let kv = KvMount { tenant, mount };
        matches!(ready.broker.kv.exists(&kv, &path).await, Ok(false))
    }

    async fn handle(&self, call: Call<'_>) -> Handled {
        let Some(mount) = call.mount else {
            return unmounted();
        };
        let options = match options(&Tuning::of(mount)) {
            Ok(options) => options,
            Err(error) => return ("kv", Err(error)),
        };
        let context = Context {
            ready: call.ready,
            kv: KvMount {
                tenant: call.tenant,
                mount,
            },
            request: call.request,
            content_type: call
                .headers
                .get(axum::http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .trim()
                .to_owned(),
        };
        match options.version {
            2 => context.v2(call.rest).await,
            _ => ("kv", context.v1(call.rest).await),
        }
    }

    /// Secrets' documents are cached for reads by tenant, mount and storage key.
    async fn invalidate(&self, ready: &Ready, change: &Change) {
        let kv = &ready.broker.kv;
        match change {
            Change::MountEntry(tenant, mount, key) => kv.forget_entry(*tenant, *mount, key),
            Change::Mounts(tenant) | Change::TenantDeleted(tenant) => kv.forget_tenant(*tenant),
            Change::Resync => kv.forget_all(),
            _ => {}
        }
    }

    async fn configure(
        &self,
        ready: &Ready,
        tenant: &Tenant,
        mount: &MountRecord,
        before: Option<&Tuning>,
        after: &Tuning,
    ) -> Result<(), ApiError> {
        let next = options(after)?;
        match before {
            None => ready
                .broker
                .kv
                .enable(&ready.broker.transit, tenant, mount, &next)
                .await
                .map_err(ApiError::from),
            Some(before) => ready
                .broker
                .kv
                .retune(
                    &ready.broker.transit,
                    tenant,
                    mount,
                    &options(before)?,
                    &next,
                )
                .await
                .map_err(ApiError::from),
        }
    }
}

/// One request inside a KV mount.
struct Context<'a> {
    ready: &'a Ready,
    kv: KvMount<'a>,
    request: &'a ApiRequest,
    /// The request's content type: a PATCH must be `application/merge-patch+json`.
    content_type: String,
}

/// A status without a body.
fn empty(status: StatusCode) -> Response {
    let mut response = response::no_content();
    *response.status_mut() = status;
    response
}

/// Vault's 404 without a message.
fn not_found() -> Response {
    error_body(StatusCode::NOT_FOUND, &[])
}

impl Context<'_> {
    fn engine(&self) -> &keybroker_core::engines::kv::Kv {
        &self.ready.broker.kv
    }

    fn transit(&self) -> &keybroker_core::engines::transit::Transit {
        &self.ready.broker.transit
    }

    /// Refuses a PATCH that is not a JSON merge patch, as Vault does.
    fn require_merge_patch(&self) -> Result<(), ApiError> {
        let media_type = self
            .content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim();
        if media_type.is_empty() {
            // Go's `mime.ParseMediaType` of nothing, as Vault answers it.
            return Err(ApiError::bad_request("mime: no media type"));
        }
        if media_type.eq_ignore_ascii_case("application/merge-patch+json") {
            Ok(())
        } else {
            Err(ApiError::UnsupportedMediaType(self.content_type.clone()))
        }
    }

    /// `?version=N` (0 or absent: the current one).
    fn version_query(&self) -> Result<Option<u64>, ApiError> {
        match self.request.query.get("version").map(|v| v.trim()) {
            None | Some("") => Ok(None),
            Some(text) => text
                .parse::<u64>()
                .map(|v| (v > 0).then_some(v))
                .map_err(|_| ApiError::bad_request(format!("invalid version {text:?}"))),
        }
    }

    async fn v2(&self, rest: &str) -> Handled {
        let op = self.request.operation;
        let (first, tail) = rest.split_once('/').unwrap_or((rest, ""));
        match (first, op) {
            ("config", Operation::Read) if tail.is_empty() => {
                ("kv/config", self.read_config().await)
            }
            ("config", Operation::Write) if tail.is_empty() => {
                ("kv/config", self.write_config().await)
            }
            ("rotate", Operation::Write) if tail.is_empty() => ("kv/rotate", self.rotate().await),
            ("key", Operation::Read) if tail.is_empty() => ("kv/key", self.key().await),
            ("data", _) => ("kv/data", self.data(tail).await),
            ("metadata", _) => ("kv/metadata", self.metadata(tail).await),
            ("delete" | "undelete" | "destroy", Operation::Write) => {
                ("kv/delete", self.versions(first, tail).await)
            }
            ("subkeys", Operation::Read) => ("kv/subkeys", self.subkeys(tail).await),
            ("config" | "rotate" | "key", _) if tail.is_empty() => {
                ("kv", Err(ApiError::UnsupportedOperation))
            }
            ("delete" | "undelete" | "destroy" | "subkeys", _) => {
                ("kv", Err(ApiError::UnsupportedOperation))
            }
            _ => ("kv", Err(ApiError::UnsupportedPath)),
        }
    }

    async fn data(&self, raw: &str) -> Result<Response, ApiError> {
        let path = SecretPath::secret(raw)?;
        let kv = &self.kv;
        match self.request.operation {
            Operation::Read => {
                let read = self
                    .engine()
                    .read(self.transit(), kv, &path, self.version_query()?)
                    .await?;
                Ok(read_response(read, "data", |data| {
                    serde_json::from_slice::<Value>(data).unwrap_or(Value::Null)
                }))
            }
            Operation::Write => {
                let input: wire::DataBody = body::parse(&self.request.body)?;
                let data = serde_json::to_vec(input.data()?).map_err(|_| {
                    ApiError::bad_request("failed to parse JSON input: data is not JSON")
                })?;
                let data = zeroize::Zeroizing::new(data);
                let written = self
                    .engine()
                    .write(self.transit(), kv, &path, &data, input.cas()?)
                    .await?;
                Ok(response::data(&wire::version_json(&written)))
            }
            Operation::Patch => {
                self.require_merge_patch()?;
                let input: wire::DataBody = body::parse(&self.request.body)?;
                let patch = Value::Object(input.data()?.clone());
                match self
                    .engine()
                    .patch(self.transit(), kv, &path, &patch, input.cas()?)
                    .await?
                {
                    // Vault answers a patch of nothing with a bare 404.
                    DataRead::Missing => Ok(empty(StatusCode::NOT_FOUND)),
                    DataRead::Gone(view) => Ok(response::data_with(
                        StatusCode::NOT_FOUND,
                        &wire::version_json(&view),
                        &[],
                    )),
                    DataRead::Found(view, _) => Ok(response::data(&wire::version_json(&view))),
                }
            }
            Operation::Delete => {
                self.engine()
                    .change_versions(kv, &path, None, VersionChange::Delete)
                    .await?;
                Ok(response::no_content())
            }
            Operation::List => Err(ApiError::UnsupportedOperation),
        }
    }

    async fn metadata(&self, raw: &str) -> Result<Response, ApiError> {
        let kv = &self.kv;
        if self.request.operation == Operation::List {
            return self.list(raw).await;
        }
        let path = SecretPath::secret(raw)?;
        match self.request.operation {
            Operation::Read => match self.engine().read_metadata(kv, &path).await? {
                Some(metadata) => Ok(response::data(&wire::metadata_json(&metadata))),
                None => Ok(not_found()),
            },
            Operation::Write | Operation::Patch => {
                let patch = self.request.operation == Operation::Patch;
                if patch {
                    self.require_merge_patch()?;
                }
                let input: wire::MetadataBody = body::parse(&self.request.body)?;
                match self
                    .engine()
                    .write_metadata(kv, &path, &input.update(patch)?, patch)
                    .await?
                {
                    None => Ok(not_found()),
                    Some(warnings) if warnings.is_empty() => Ok(response::no_content()),
                    Some(warnings) => {
                        Ok(response::data_with(StatusCode::OK, &Value::Null, &warnings))
                    }
                }
            }
            Operation::Delete => {
                self.engine().delete_metadata(kv, &path).await?;
                Ok(response::no_content())
            }
            Operation::List => Err(ApiError::UnsupportedOperation),
        }
    }

    async fn list(&self, raw: &str) -> Result<Response, ApiError> {
        let folder = SecretPath::folder(raw)?;
        let keys = self.engine().list(&self.kv, &folder).await?;
        let keys = super::paging::page(keys, &self.request.query)?;
        if keys.is_empty() {
            return Ok(not_found());
        }
        Ok(response::data(&json!({ "keys": keys })))
    }

    async fn versions(&self, action: &str, raw: &str) -> Result<Response, ApiError> {
        let path = SecretPath::secret(raw)?;
        let input: wire::VersionsBody = body::parse(&self.request.body)?;
        let versions = input.versions()?;
        let change = match action {
            "delete" => VersionChange::Delete,
            "undelete" => VersionChange::Undelete,
            _ => VersionChange::Destroy,
        };
        self.engine()
            .change_versions(&self.kv, &path, Some(&versions), change)
            .await?;
        Ok(response::no_content())
    }

    async fn subkeys(&self, raw: &str) -> Result<Response, ApiError> {
        let path = SecretPath::secret(raw)?;
        let depth = match self.request.query.get("depth").map(|d| d.trim()) {
            None | Some("") => 0,
            Some(text) => text
                .parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid depth {text:?}")))?,
        };
        let (read, subkeys) = self
            .engine()
            .subkeys(
                self.transit(),
                &self.kv,
                &path,
                self.version_query()?,
                depth,
            )
            .await?;
        Ok(match read {
            DataRead::Found(view, _) => response::data(&json!({
                "subkeys": subkeys,
                "metadata": wire::version_json(&view),
            })),
            other => read_response(other, "subkeys", |_| Value::Null),
        })
    }

    async fn read_config(&self) -> Result<Response, ApiError> {
        let config = self.engine().config(&self.kv).await?;
        Ok(response::data(&wire::config_json(&config)))
    }

    async fn write_config(&self) -> Result<Response, ApiError> {
        let input: wire::ConfigBody = body::parse(&self.request.body)?;
        let config = input.apply(self.engine().config(&self.kv).await?);
        self.engine().set_config(&self.kv, &config).await?;
        Ok(response::no_content())
    }

    async fn rotate(&self) -> Result<Response, ApiError> {
        self.engine()
            .rotate(self.transit(), self.kv.tenant, self.kv.mount)
            .await?;
        self.key().await
    }

    /// Our view of the mount's key: its backend, versions and rotation period.
    async fn key(&self) -> Result<Response, ApiError> {
        let info = self
            .transit()
            .read_key(self.kv.tenant, self.kv.mount.id, KEY_NAME)
            .await?;
        let record = &info.record;
        let engine = self.engine();
        let data_keys = engine.data_key_versions(&self.kv).await?;
        let rewrapped = engine.rewrapped_version(&self.kv).await?;
        Ok(response::data(&json!({
            // How many secret versions' data keys each key version encrypts, and the key
            // version the last completed background rewrap left them all under.
            "data_keys_by_version": data_keys.iter().map(|(v, n)| (v.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "rewrapped_version": rewrapped,
            "backend": record.backend,
            "type": record.key_type,
            "latest_version": record.latest_version,
            "min_available_version": record.min_available_version,
            "rotation_period": record.auto_rotate_period,
            "backend_available": info.backend_available,
            "versions": info.versions.iter().map(|v| (v.version.to_string(), json!(v.created_at))).collect::<serde_json::Map<_, _>>(),
        })))
    }

    async fn v1(&self, rest: &str) -> Result<Response, ApiError> {
        let kv = &self.kv;
        if self.request.operation == Operation::List {
            return self.list(rest).await;
        }
        let path = SecretPath::secret(rest)?;
        match self.request.operation {
            Operation::Read => match self
                .engine()
                .read_unversioned(self.transit(), kv, &path)
                .await?
            {
                Some(data) => {
                    let value: Value = serde_json::from_slice(&data).unwrap_or(Value::Null);
                    Ok(response::data_leased(&value, V1_LEASE_SECS))
                }
                None => Ok(not_found()),
            },
            Operation::Write => {
                let input: serde_json::Map<String, Value> = body::parse(&self.request.body)?;
                if input.is_empty() {
                    return Err(ApiError::bad_request("missing data fields"));
                }
                let data = zeroize::Zeroizing::new(
                    serde_json::to_vec(&input)
                        .map_err(|_| ApiError::bad_request("failed to parse JSON input"))?,
                );
                self.engine()
                    .write_unversioned(self.transit(), kv, &path, &data)
                    .await?;
                Ok(response::no_content())
            }
            Operation::Delete => {
                self.engine().delete_metadata(kv, &path).await?;
                Ok(response::no_content())
            }
            Operation::Patch | Operation::List => Err(ApiError::UnsupportedOperation),
        }
    }
}

/// A read's answer: the data and its version's metadata; a deleted or destroyed version
/// answers 404 with its metadata and `data: null`, as Vault does.
fn read_response(read: DataRead, field: &str, data: impl Fn(&[u8]) -> Value) -> Response {
    let answer = |data: Value, view| {
        let mut answer = serde_json::Map::new();
        answer.insert(field.to_owned(), data);
        answer.insert("metadata".to_owned(), wire::version_json(view));
        Value::Object(answer)
    };
    match read {
        DataRead::Missing => not_found(),
        DataRead::Gone(view) => {
            response::data_with(StatusCode::NOT_FOUND, &answer(Value::Null, &view), &[])
        }
        DataRead::Found(view, plain) => response::data(&answer(data(&plain), &view)),
    }
}
