//! [Rewrap data](https://developer.hashicorp.com/vault/api-docs/secret/transit#rewrap-data): `POST /transit/rewrap/:name`.
//!
//! Items as decrypt takes them, each with the `key_version` to encrypt it with again;
//! results as encrypt answers them. A batch answers 200 whatever its items' errors, as
//! Vault's rewrap does (it takes no `partial_failure_response_code`).

use axum::response::Response;
use keybroker_core::{engines::transit::RewrapItem, Error};

use super::{
    batch::{check_contexts, merge, references, respond_ok, split, BatchItem, DataBody},
    decrypt::decrypt_item,
    encrypt::{ciphertext_data, encryption_version},
    Context,
};
use crate::http::{body, error::ApiError};

/// One item to rewrap: its ciphertext as decrypt takes it (with its `context`, which also
/// encrypts it again), and the `key_version` it names (absent: 0, the latest).
pub(super) fn rewrap_item(item: &BatchItem) -> Result<RewrapItem, Error> {
    Ok(RewrapItem {
        decrypt: decrypt_item(item)?,
        key_version: encryption_version(item.key_version)?,
    })
}

impl Context<'_> {
    /// Rewraps the ciphertext, or each item of `batch_input` with the `key_version` the
    /// item names (Vault ignores the top-level one in a batch).
    pub(super) async fn rewrap(&self, name: &str) -> Result<Response, ApiError> {
        let input: DataBody = body::parse(&self.request.body)?;
        let (items, batch) = input.items();
        check_contexts(&items)?;
        let (slots, work) = split(&items, batch, rewrap_item)?;
        let results = if work.is_empty() {
            Vec::new()
        } else {
            self.transit()
                .rewrap(self.tenant, self.mount.id, name, work)
                .await?
        };
        let results = merge(slots, results)?;
        respond_ok(results, references(&items), batch, ciphertext_data)
    }
}
