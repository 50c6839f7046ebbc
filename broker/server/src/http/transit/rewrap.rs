//! [Rewrap data](https://developer.hashicorp.com/vault/api-docs/secret/transit#rewrap-data): `POST /transit/rewrap/:name`.
//!
//! Items as decrypt takes them; results as encrypt answers them.

use axum::response::Response;

use super::{
    batch::{common_key_version, merge, references, respond, split, DataBody},
    decrypt::decrypt_item,
    encrypt::ciphertext_data,
    Context,
};
use crate::http::{body, error::ApiError};

impl Context<'_> {
    pub(super) async fn rewrap(&self, name: &str) -> Result<Response, ApiError> {
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
}
