//! [Verify signed data](https://developer.hashicorp.com/vault/api-docs/secret/transit#verify-signed-data):
//! `POST /transit/verify/:name(/:hash_algorithm)`.
//!
//! The body is sign's ([`SignBody`]). A body with `hmac` instead of `signature` checks
//! HMACs ([`super::hmac`]).

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
        let (items, batch) = input.items();
        // OpenBao's dispatch between signatures and HMACs, with its messages: an item with a
        // signature is a signature item (whatever else it has), else an HMAC item if it has
        // one; all items must be of one kind.
        let signatures = items.iter().any(|item| item.signature.is_some());
        let hmacs = items
            .iter()
            .any(|item| item.signature.is_none() && item.hmac.is_some());
        let missing = items
            .iter()
            .any(|item| item.signature.is_none() && item.hmac.is_none());
        let refusal = match (batch, signatures, hmacs, missing) {
            (false, false, false, _) => {
                Some("neither a 'signature' nor an 'hmac' were given to verify")
            }
            (_, true, true, _) => {
                Some("elements of batch_input must all provide 'signature' or all provide 'hmac'")
            }
            (_, true, false, true) => Some("some elements of batch_input are missing 'signature'"),
            (_, false, true, true) => Some("some elements of batch_input are missing 'hmac'"),
            (_, false, false, true) => Some("no batch_input elements have 'signature' or 'hmac'"),
            _ => None,
        };
        if let Some(message) = refusal {
            return Err(ApiError::bad_request(message));
        }
        if hmacs {
            return self
                .verify_hmac(name, path_hash, &input, items, batch)
                .await;
        }
        let options = input.options(path_hash)?;
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
