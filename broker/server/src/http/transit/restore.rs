//! [Restore key](https://openbao.org/api-docs/secret/transit/#restore-key) (Vault:
//! [Restore key](https://developer.hashicorp.com/vault/api-docs/secret/transit#restore-key)):
//! `POST /transit/restore` and `POST /transit/restore/:name`, with `backup` and `force`;
//! answers 204. The body is attacker-controlled: it is decoded strictly, and every fault is
//! a 400 (see the fuzz target).

use axum::response::Response;
use keybroker_core::engines::transit::backup_is_well_formed;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::Context;
use crate::http::{body, error::ApiError, response};

/// Vault transit API: restore key.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RestoreBody {
    /// The base64 backup (plaintext key material: zeroized once read).
    backup: Option<Zeroizing<String>>,
    /// The name to restore under, when the path has none (Vault takes it from either).
    name: Option<String>,
    #[serde(deserialize_with = "body::opt_bool")]
    force: Option<bool>,
}

impl Context<'_> {
    /// Restores a key from a backup, under `name` or the backup's own.
    pub(super) async fn restore(&self, name: Option<&str>) -> Result<Response, ApiError> {
        let input: RestoreBody = body::parse(&self.request.body)?;
        let backup = match &input.backup {
            Some(backup) if !backup.is_empty() => backup,
            _ => return Err(ApiError::bad_request("'backup' must be supplied")),
        };
        let name = name.or(input.name.as_deref());
        self.transit()
            .restore_key(
                self.tenant,
                self.mount.id,
                name,
                backup,
                input.force.unwrap_or(false),
            )
            .await?;
        Ok(response::no_content())
    }
}

/// [`RestoreBody`] decoded without a broker, and its backup checked as restore checks it;
/// how many of the two accepted `body`.
pub(super) fn fuzz_request_bodies(body: &bytes::Bytes) -> usize {
    match body::parse::<RestoreBody>(body) {
        Ok(input) => 1 + usize::from(input.backup.is_some_and(|b| backup_is_well_formed(&b))),
        Err(_) => 0,
    }
}
