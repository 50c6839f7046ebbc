//! The transit engine's routes (Vault transit API), plus our `backend` and `mode` fields.
//!
//! This file holds the kind of mount (its routes, existence check and cache invalidation)
//! and the dispatch to one file per operation: `keys.rs` (create, read, list, delete),
//! `config.rs` (a key's configuration), `rotate.rs`, `trim.rs`, `backup.rs`, `restore.rs`,
//! `encrypt.rs`, `decrypt.rs`, `rewrap.rs`, `datakey.rs`, `sign.rs`, `verify.rs`, `hmac.rs`,
//! `random.rs`, `hash.rs`, `mount_config.rs` (`config/keys`), `cache_config.rs`
//! (`cache-config`), and BYOK: `export.rs`, `wrapping_key.rs`, `import.rs` (`import`,
//! `import_version`). `batch.rs`
//! holds the body encrypt, decrypt, rewrap and datakey share, and the batch handling of
//! every batch operation.

mod backup;
mod batch;
mod cache_config;
mod config;
mod datakey;
mod decrypt;
mod encrypt;
mod export;
mod hash;
mod hmac;
mod import;
mod keys;
mod mount_config;
mod random;
mod restore;
mod rewrap;
mod rotate;
mod sign;
mod trim;
mod verify;
mod wrapping_key;

use axum::response::Response;
use base64::{engine::general_purpose::STANDARD, Engine as _};
use keybroker_core::{
    auth::token::Caller, changes::Change, engines::transit::Transit, store::MountRecord, Error,
    Tenant,
};
use zeroize::Zeroizing;

use super::{
    error::ApiError,
    kind::{unmounted, Call, Class, Handled, MountKind, Spec},
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
        route("keys/:name/trim", &[W]),
        route("backup/:name", &[R]),
        route("restore", &[W]),
        route("restore/:name", &[W]),
        route("encrypt/:name", &[W]),
        route("decrypt/:name", &[W]),
        route("rewrap/:name", &[W]),
        route("datakey/:kind/:name", &[W]),
        route("sign/:name", &[W]),
        route("sign/:name/:algorithm", &[W]),
        route("verify/:name", &[W]),
        route("verify/:name/:algorithm", &[W]),
        route("hmac/:name", &[W]),
        route("hmac/:name/:algorithm", &[W]),
        route("random", &[W]),
        route("random/:a", &[W]),
        route("random/:a/:b", &[W]),
        route("hash", &[W]),
        route("hash/:algorithm", &[W]),
        route("config/keys", &[R, W]),
        route("cache-config", &[R, W]),
        route("export/:type/:name", &[R]),
        route("export/:type/:name/:version", &[R]),
        route("wrapping_key", &[R]),
        route("keys/:name/import", &[W]),
        route("keys/:name/import_version", &[W]),
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
        (["keys", name, "trim"], Operation::Write) => {
            ("transit/keys/trim", context.trim(name).await)
        }
        (["keys", name, "import"], Operation::Write) => {
            ("transit/keys/import", context.import_key(name).await)
        }
        (["keys", name, "import_version"], Operation::Write) => (
            "transit/keys/import_version",
            context.import_key_version(name).await,
        ),
        (["export", export_type, name], Operation::Read) => (
            "transit/export",
            context.export_key(export_type, name, None).await,
        ),
        (["export", export_type, name, version], Operation::Read) => (
            "transit/export",
            context.export_key(export_type, name, Some(version)).await,
        ),
        (["wrapping_key"], Operation::Read) => {
            ("transit/wrapping_key", context.wrapping_key().await)
        }
        (["backup", name], Operation::Read) => ("transit/backup", context.backup(name).await),
        (["restore"], Operation::Write) => ("transit/restore", context.restore(None).await),
        (["restore", name], Operation::Write) => {
            ("transit/restore", context.restore(Some(name)).await)
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
        (["hmac", name] | ["hmac", name, _], Operation::Write) => (
            "transit/hmac",
            context.hmac(name, segments.get(2).copied()).await,
        ),
        (["random"], Operation::Write) => ("transit/random", context.random(None, None)),
        (["random", a], Operation::Write) => ("transit/random", context.random(Some(a), None)),
        (["random", a, b], Operation::Write) => {
            ("transit/random", context.random(Some(a), Some(b)))
        }
        (["hash"], Operation::Write) => ("transit/hash", context.hash(None)),
        (["hash", algorithm], Operation::Write) => ("transit/hash", context.hash(Some(algorithm))),
        (["config", "keys"], Operation::Read) => {
            ("transit/config/keys", Ok(context.read_mount_config()))
        }
        (["config", "keys"], Operation::Write) => {
            ("transit/config/keys", context.write_mount_config().await)
        }
        (["cache-config"], Operation::Read) => {
            ("transit/cache-config", context.read_cache_config().await)
        }
        (["cache-config"], Operation::Write) => {
            ("transit/cache-config", context.write_cache_config().await)
        }
        (
            ["keys"]
            | ["keys", _]
            | ["keys", _, "config" | "rotate" | "trim" | "import" | "import_version"]
            | ["export", _, _]
            | ["export", _, _, _]
            | ["wrapping_key"]
            | ["backup", _]
            | ["restore"]
            | ["restore", _]
            | ["encrypt" | "decrypt" | "rewrap", _]
            | ["sign" | "verify", _]
            | ["sign" | "verify" | "hmac", _, _]
            | ["hmac", _]
            | ["datakey", _, _]
            | ["random", ..]
            | ["hash"]
            | ["hash", _]
            | ["config", "keys"]
            | ["cache-config"],
            _,
        ) => ("transit", Err(ApiError::UnsupportedOperation)),
        _ => ("transit", Err(ApiError::UnsupportedPath)),
    }
}

/// What every handler of a transit mount works with.
struct Context<'a> {
    ready: &'a Ready,
    caller: &'a Caller,
    tenant: &'a Tenant,
    mount: &'a MountRecord,
    request: &'a ApiRequest,
}

impl Context<'_> {
    /// The broker's transit engine.
    fn transit(&self) -> &Transit {
        &self.ready.broker.transit
    }
}

/// A base64 field's bytes; an invalid request naming `field` if it is not base64.
fn decode_base64(field: &str, value: &str) -> Result<Vec<u8>, Error> {
    STANDARD
        .decode(value.trim())
        .map_err(|_| Error::invalid(format!("failed to base64-decode {field}")))
}

/// A secret base64 field (a plaintext), decoded into memory that is zeroed on drop.
fn decode_secret(field: &str, value: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
    decode_base64(field, value).map(Zeroizing::new)
}

/// An optional base64 field; absent or empty is no bytes.
fn optional_base64(field: &str, value: Option<&str>) -> Result<Vec<u8>, Error> {
    match value {
        None | Some("") => Ok(Vec::new()),
        Some(value) => decode_base64(field, value),
    }
}

/// Every body of this engine decoded as its handlers decode it, without a broker (see
/// [`super::fuzzing`]); how many of the wire structs accepted `body`.
pub(super) fn fuzz_request_bodies(body: &bytes::Bytes) -> usize {
    keys::fuzz_request_bodies(body)
        + config::fuzz_request_bodies(body)
        + trim::fuzz_request_bodies(body)
        + restore::fuzz_request_bodies(body)
        + cache_config::fuzz_request_bodies(body)
        + batch::fuzz_request_bodies(body)
        + sign::fuzz_request_bodies(body)
        + hash::fuzz_request_bodies(body)
        + hmac::fuzz_request_bodies(body)
        + import::fuzz_request_bodies(body)
}
