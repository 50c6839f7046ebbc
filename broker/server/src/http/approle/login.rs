//! `auth/<mount>/login` (Vault API: auth/approle/login), reached without a token: the body
//! decoded leniently, and every failure answered alike.

use std::net::IpAddr;

use axum::response::Response;
use keybroker_core::{
    auth::approle::{LoginIdentity, LOGIN_FAILED},
    store::MountRecord,
};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::http::{
    body, error::ApiError, kind::LoginAudit, response, token, ApiRequest, Operation, Ready,
};

/// Vault API: auth/approle/login.
#[derive(Deserialize, Default)]
#[serde(default)]
struct LoginBody {
    role_id: Option<String>,
    secret_id: Option<Zeroizing<String>>,
}

/// `POST auth/<mount>/login` (Vault API: auth/approle/login), without a token. Every
/// failure, malformed input included, is the same 400 `invalid role or secret ID`.
pub(super) async fn login(
    ready: &Ready,
    mount: &MountRecord,
    request: &ApiRequest,
    client: Option<IpAddr>,
) -> (Result<Response, ApiError>, LoginAudit) {
    if request.operation != Operation::Write {
        return (Err(ApiError::UnsupportedOperation), LoginAudit::default());
    }
    let input: LoginBody = body::parse(&request.body).unwrap_or_default();
    let role_id = input.role_id.unwrap_or_default();
    let secret_id = input.secret_id.unwrap_or_default();
    let (identity, issued) = ready
        .broker
        .approle_login(mount, &role_id, &secret_id, client)
        .await;
    let LoginIdentity {
        role_name,
        secret_id_accessor,
    } = identity;
    match issued {
        Ok(issued) => {
            let auth = token::auth_json(Some(&issued.token), &issued.record, token::now());
            let audit = LoginAudit::new(role_name, secret_id_accessor, Some(issued));
            (Ok(response::auth(&auth)), audit)
        }
        Err(error) => {
            let answer = match error {
                keybroker_core::Error::InvalidRequest(_) => ApiError::bad_request(LOGIN_FAILED),
                other => other.into(),
            };
            let audit = LoginAudit::new(role_name, secret_id_accessor, None);
            (Err(answer), audit)
        }
    }
}

/// The login body decoded as [`login`] decodes it (see [`super::fuzz_request_bodies`]);
/// whether it was accepted.
pub(super) fn fuzz_body(body: &bytes::Bytes) -> usize {
    usize::from(body::parse::<LoginBody>(body).is_ok())
}
