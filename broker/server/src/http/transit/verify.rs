//! [Verify signed data](https://developer.hashicorp.com/vault/api-docs/secret/transit#verify-signed-data):
//! `POST /transit/verify/:name(/:hash_algorithm)`.
//!
//! The body is sign's ([`SignBody`]).

use axum::response::Response;
use keybroker_core::{engines::transit::VerifyItem, Error};
use serde::Serialize;

use super::{
    batch::{merge, respond, split},
    sign::{input_of, references, SignBody},
    Context,
};
use crate::http::{body, error::ApiError};

/// Vault transit API: verify response data.
#[derive(Serialize)]
struct ValidData {
    valid: bool,
}

impl Context<'_> {
    /// Vault transit API: verify signed data.
    pub(super) async fn verify(
        &self,
        name: &str,
        path_hash: Option<&str>,
    ) -> Result<Response, ApiError> {
        let mut input: SignBody = body::parse(&self.request.body)?;
        let options = input.options(path_hash)?;
        let (items, batch) = input.items();
        let (slots, work) = split(&items, batch, |item| {
            let signature = item
                .signature
                .as_deref()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| Error::invalid("missing signature to verify"))?;
            Ok(VerifyItem {
                input: input_of(item)?,
                signature: signature.to_owned(),
            })
        })?;
        let results = if work.is_empty() {
            Vec::new()
        } else {
            self.transit()
                .verify(self.tenant, self.mount.id, name, &options, work)
                .await?
        };
        respond(
            merge(slots, results)?,
            references(&items),
            batch,
            input.partial_failure_response_code,
            |valid| ValidData { valid },
        )
    }
}
