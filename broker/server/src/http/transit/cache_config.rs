//! The mount's cache configuration, kept in mount storage (see the core's
//! `engines::transit::cache_config`; keybroker's own caches have settings of their own):
//! - [Configure cache](https://openbao.org/api-docs/secret/transit/#configure-cache) (Vault: [Configure cache](https://developer.hashicorp.com/vault/api-docs/secret/transit#configure-cache)): `POST /transit/cache-config`;
//! - [Read cache configuration](https://openbao.org/api-docs/secret/transit/#read-cache-configuration) (Vault: [Read cache configuration](https://developer.hashicorp.com/vault/api-docs/secret/transit#read-cache-configuration)): `GET /transit/cache-config`.

use axum::response::Response;
use keybroker_core::engines::transit::cache_config::{read_cache_size, write_cache_size};
use serde::Deserialize;
use serde_json::json;

use super::Context;
use crate::http::{body, error::ApiError, response};

/// Vault transit API: configure cache.
#[derive(Deserialize, Default)]
#[serde(default)]
struct CacheConfigBody {
    /// Signed, as Vault's: a negative size gets Vault's message.
    #[serde(deserialize_with = "body::opt_i64")]
    size: Option<i64>,
}

impl Context<'_> {
    /// The mount's cache size, as Vault reports it (`{"size": N}`, 0 by default).
    pub(super) async fn read_cache_config(&self) -> Result<Response, ApiError> {
        let storage = self.ready.broker.mounts.storage(self.mount);
        let size = read_cache_size(&storage).await?;
        Ok(response::data(&json!({ "size": size })))
    }

    /// Checks and keeps the mount's cache size; answers it as Vault does.
    pub(super) async fn write_cache_config(&self) -> Result<Response, ApiError> {
        let input: CacheConfigBody = body::parse(&self.request.body)?;
        let storage = self.ready.broker.mounts.storage(self.mount);
        let size = write_cache_size(&storage, input.size).await?;
        Ok(response::data(&json!({ "size": size })))
    }
}

/// [`CacheConfigBody`] decoded without a broker; whether it was.
pub(super) fn fuzz_request_bodies(body: &bytes::Bytes) -> usize {
    usize::from(body::parse::<CacheConfigBody>(body).is_ok())
}
