//! BYOK (Vault transit API), plus our `backend`:
//! - [Import key](https://openbao.org/api-docs/secret/transit/#import-key) (Vault: [Import key](https://developer.hashicorp.com/vault/api-docs/secret/transit#import-key)): `POST /transit/keys/:name/import`;
//! - [Import key version](https://openbao.org/api-docs/secret/transit/#import-key-version) (Vault: [Import key version](https://developer.hashicorp.com/vault/api-docs/secret/transit#import-key-version)): `POST /transit/keys/:name/import_version`.
//!
//! Both answer 204, as Vault does. Where Vault answers a caller's mistake with a 500
//! (an existing key, a ciphertext that does not open), keybroker answers 400 with Vault's
//! message (ARCHITECTURE.md §3: user errors are 4xx).

use axum::response::Response;
use keybroker_core::engines::transit::ImportOptions;
use serde::Deserialize;

use super::Context;
use crate::http::{body, error::ApiError, response};

/// Vault transit API: import key (plus `backend`). `context` is accepted and unused, as in
/// Vault.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ImportBody {
    #[serde(rename = "type")]
    key_type: Option<String>,
    hash_function: Option<String>,
    ciphertext: Option<String>,
    public_key: Option<String>,
    backend: Option<String>,
    #[serde(deserialize_with = "body::opt_bool")]
    derived: Option<bool>,
    /// Vault refuses the field whatever its value.
    #[serde(deserialize_with = "body::present")]
    convergent_encryption: bool,
    #[serde(deserialize_with = "body::opt_bool")]
    exportable: Option<bool>,
    #[serde(deserialize_with = "body::opt_bool")]
    allow_plaintext_backup: Option<bool>,
    #[serde(deserialize_with = "body::opt_bool")]
    allow_rotation: Option<bool>,
    #[serde(deserialize_with = "body::opt_duration_secs")]
    auto_rotate_period: Option<u64>,
}

impl ImportBody {
    fn options(self) -> ImportOptions {
        ImportOptions {
            key_type: self.key_type,
            hash_function: self.hash_function,
            ciphertext: self.ciphertext,
            public_key: self.public_key,
            backend: self.backend.filter(|b| !b.is_empty()),
            derived: self.derived.unwrap_or(false),
            convergent_encryption_sent: self.convergent_encryption,
            exportable: self.exportable.unwrap_or(false),
            allow_plaintext_backup: self.allow_plaintext_backup.unwrap_or(false),
            allow_rotation: self.allow_rotation.unwrap_or(false),
            auto_rotate_period: self.auto_rotate_period,
        }
    }
}

/// Vault transit API: import key version.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ImportVersionBody {
    hash_function: Option<String>,
    ciphertext: Option<String>,
    public_key: Option<String>,
    #[serde(deserialize_with = "body::opt_i64")]
    version: Option<i64>,
}

impl Context<'_> {
    pub(super) async fn import_key(&self, name: &str) -> Result<Response, ApiError> {
        let input: ImportBody = body::parse(&self.request.body)?;
        self.transit()
            .import_key(self.tenant, self.mount.id, name, input.options())
            .await?;
        Ok(response::no_content())
    }

    pub(super) async fn import_key_version(&self, name: &str) -> Result<Response, ApiError> {
        let input: ImportVersionBody = body::parse(&self.request.body)?;
        let options = ImportOptions {
            hash_function: input.hash_function,
            ciphertext: input.ciphertext,
            public_key: input.public_key,
            ..ImportOptions::default()
        };
        self.transit()
            .import_key_version(self.tenant, self.mount.id, name, options, input.version)
            .await?;
        Ok(response::no_content())
    }
}

/// [`ImportBody`] and [`ImportVersionBody`] decoded without a broker; how many were.
pub(super) fn fuzz_request_bodies(body: &bytes::Bytes) -> usize {
    let import = body::parse::<ImportBody>(body)
        .map(ImportBody::options)
        .is_ok();
    let version = body::parse::<ImportVersionBody>(body).is_ok();
    usize::from(import) + usize::from(version)
}
