//! A key's lifecycle (Vault transit API, plus our `backend`, `mode` and `backend_key`):
//! - [Create key](https://developer.hashicorp.com/vault/api-docs/secret/transit#create-key): `POST /transit/keys/:name`;
//! - [Read key](https://developer.hashicorp.com/vault/api-docs/secret/transit#read-key): `GET /transit/keys/:name`;
//! - [List keys](https://developer.hashicorp.com/vault/api-docs/secret/transit#list-keys): `LIST /transit/keys`;
//! - [Delete key](https://developer.hashicorp.com/vault/api-docs/secret/transit#delete-key): `DELETE /transit/keys/:name`.
//!
//! A key is answered as read key answers it ([`key_json`]), also by config and rotate: every
//! field OpenBao's read key answers, with what is true of the key (no key is soft-deleted;
//! `supports_derivation` is true only of envelope keys with an AEAD, since keybroker derives
//! per-context keys in its envelope), plus our fields.
//!
//! `encryption_counts` (ours) maps each version to the encryptions the store has reserved
//! for it, read from the store at every answer. It is an **upper bound** of the
//! encryptions that version performed, never below them: counts are reserved in blocks of
//! `counter_block` per node before they are used (ARCHITECTURE.md §3), so it is ahead of
//! the true count by what the nodes hold reserved but unused — at most two blocks per node
//! (the rest of its current block, and the next one, reserved in the background once half
//! of the current one is used) — and by what was skipped for good (the rest of a block
//! when its node restarted, or when a batch did not fit it).

use axum::{http::StatusCode, response::Response};
use keybroker_core::{
    engines::transit::{CreateKeyOptions, KeyInfo, KeyType},
    store::KeyMode,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::Context;
use crate::http::{body, error::ApiError, response};

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
    #[serde(deserialize_with = "body::opt_u32")]
    key_size: Option<u32>,
    /// Ours: bind this existing backend key instead of creating one.
    backend_key: Option<String>,
}

/// A key as Vault's read key answers it, plus our fields (`backend`, `mode`, `bound`, …).
pub(super) fn key_json(info: &KeyInfo) -> Value {
    let record = &info.record;
    let key_type = KeyType::parse(&record.key_type).ok();
    let signing = key_type.is_some_and(KeyType::is_asymmetric);
    // RSA keys both sign and encrypt, as in Vault.
    let encrypts = key_type.is_some_and(KeyType::encrypts);
    let options = &record.options;
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
                    "certificate_chain": "",
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
    let mut data = json!({
        "name": record.name,
        "type": record.key_type,
        "keys": keys,
        "latest_version": record.latest_version,
        "min_available_version": record.min_available_version,
        "min_decryption_version": record.min_decryption_version,
        "min_encryption_version": record.min_encryption_version,
        "deletion_allowed": record.deletion_allowed,
        "auto_rotate_period": record.auto_rotate_period,
        "derived": options.derived,
        "exportable": options.exportable,
        "allow_plaintext_backup": options.allow_plaintext_backup,
        "imported_key": options.imported,
        "soft_deleted": false,
        "supports_encryption": encrypts,
        "supports_decryption": encrypts,
        // Keys are derived in the broker's envelope: symmetric envelope keys can be.
        "supports_derivation": key_type.and_then(KeyType::aead).is_some()
            && record.mode == KeyMode::Envelope,
        "supports_signing": signing,
        "bound": record.bound,
        "backend": record.backend,
        "mode": record.mode.as_str(),
        "backend_available": info.backend_available,
        "encryption_counts": counts,
    });
    if let Some(data) = data.as_object_mut() {
        // Vault adds these only where they apply.
        if options.imported {
            data.insert(
                "imported_key_allow_rotation".to_owned(),
                json!(options.imported_key_allow_rotation),
            );
        }
        if options.key_size != 0 {
            data.insert("key_size".to_owned(), json!(options.key_size));
        }
        if options.derived {
            data.insert("kdf".to_owned(), json!("hkdf_sha256"));
            data.insert(
                "convergent_encryption".to_owned(),
                json!(options.convergent_encryption),
            );
            if options.convergent_encryption {
                // Vault and OpenBao report -1 (each version records its own).
                data.insert("convergent_encryption_version".to_owned(), json!(-1));
            }
        }
    }
    data
}

/// Unix seconds as RFC 3339 (UTC), as Vault writes times.
fn rfc3339(unix: i64) -> String {
    humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(unix).unwrap_or(0)),
    )
    .to_string()
}

impl Context<'_> {
    pub(super) async fn list_keys(&self) -> Result<Response, ApiError> {
        let keys = self.transit().list_keys(self.tenant, self.mount.id).await?;
        let keys = crate::http::paging::page(keys, &self.request.query)?;
        if keys.is_empty() {
            // Vault answers an empty list with 404 and no message.
            return Ok(crate::http::error::error_body(StatusCode::NOT_FOUND, &[]));
        }
        Ok(response::data(&json!({ "keys": keys })))
    }

    pub(super) async fn create_key(&self, name: &str) -> Result<Response, ApiError> {
        let input: CreateKeyBody = body::parse(&self.request.body)?;
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
            && crate::http::governs_instance(self.ready, self.caller, instance).await?;
        let options = CreateKeyOptions {
            key_type: input.key_type.filter(|t| !t.is_empty()),
            backend: input.backend.filter(|b| !b.is_empty()),
            mode,
            auto_rotate_period: input.auto_rotate_period,
            backend_key,
            operator,
            derived: input.derived.unwrap_or(false),
            convergent_encryption: input.convergent_encryption.unwrap_or(false),
            exportable: input.exportable.unwrap_or(false),
            allow_plaintext_backup: input.allow_plaintext_backup.unwrap_or(false),
            key_size: input.key_size.unwrap_or(0),
        };
        let info = self
            .transit()
            .create_key(self.tenant, self.mount.id, name, options)
            .await?;
        Ok(response::data(&key_json(&info)))
    }

    pub(super) async fn read_key(&self, name: &str) -> Result<Response, ApiError> {
        let info = self
            .transit()
            .read_key(self.tenant, self.mount.id, name)
            .await?;
        Ok(response::data(&key_json(&info)))
    }

    pub(super) async fn delete_key(&self, name: &str) -> Result<Response, ApiError> {
        self.transit()
            .delete_key(self.tenant, self.mount.id, name)
            .await?;
        Ok(response::no_content())
    }
}

/// [`CreateKeyBody`] decoded as create key decodes it, without a broker; whether it was.
pub(super) fn fuzz_request_bodies(body: &bytes::Bytes) -> usize {
    let Ok(input) = body::parse::<CreateKeyBody>(body) else {
        return 0;
    };
    if let Some(key_type) = input.key_type {
        let _ = KeyType::parse(&key_type);
    }
    if let Some(mode) = input.mode {
        let _ = KeyMode::parse(&mode);
    }
    1
}
