//! Access: who the caller is (the presented token, or a JWT in bearer mode, resolved to a
//! [`Caller`]) and what it may do (its policies checked on the canonical path, `sudo`, the
//! operator's authority over a backend instance). Every refusal is the same 403.

use std::net::IpAddr;

use axum::http::HeaderMap;
use keybroker_core::{auth::token::Caller, Error, Tenant};

use super::{edge::presented_token, error::ApiError, kind, policies, ApiRequest, Operation, Ready};

/// Authenticates the caller for a tenant. A tenant's token never acts outside its tenant;
/// root-namespace tokens may act in child tenants (their policies see `<tenant>/<path>`).
pub(super) async fn authenticate(
    ready: &Ready,
    headers: &HeaderMap,
    tenant: &Tenant,
    client: Option<IpAddr>,
) -> Result<Caller, ApiError> {
    let denied = || ApiError::Core(Error::PermissionDenied);
    let token = presented_token(headers).ok_or_else(denied)?;
    // Bearer mode: a JWT (three segments, no `kbs.` prefix) in `Authorization: Bearer`
    // stands for itself, through the tenant's jwt mount for its issuer.
    let bearer = headers.get("x-vault-token").is_none()
        && keybroker_core::auth::jwt::method::looks_like_jwt(token);
    if bearer {
        let caller = ready
            .broker
            .jwt
            .bearer(&ready.broker.mounts, tenant.id, token, client)
            .await?;
        return Ok(caller);
    }
    let caller = ready
        .broker
        .tokens
        .authenticate(token, client, tenant.id)
        .await?;
    Ok(caller)
}

/// Checks the caller's policies for the request, once, on the canonical path. Every
/// refusal is the same 403.
pub(super) async fn authorize(
    ready: &Ready,
    caller: &Caller,
    tenant: &Tenant,
    request: &ApiRequest,
    target: Option<&kind::Target<'_>>,
) -> Result<(), ApiError> {
    use keybroker_core::policy::{canonicalize_request_path, Capability};
    if caller.is_root() {
        return Ok(());
    }
    let denied = || ApiError::Core(Error::PermissionDenied);
    let canonical = canonicalize_request_path(&request.path).map_err(|_| denied())?;
    let mut checked = policies::policy_path(caller.tenant(), tenant, &canonical);
    if matches!(request.operation, Operation::List) && !checked.ends_with('/') {
        checked.push('/');
    }
    // The canonical path is the request's path, checked.
    let rest = target.map(|t| t.rest(&canonical)).unwrap_or_default();
    let sudo = target.is_some_and(|t| t.needs_sudo(rest));
    let acl = ready
        .broker
        .policies
        .acl(caller.tenant(), &caller.token.policies)
        .await?;
    // A write that creates something needs `create` instead of `update` (Vault's
    // existence check, the kind's to answer).
    let creates = match (request.operation, target) {
        (Operation::Write, Some(target)) => target.creates(ready, tenant, rest).await,
        _ => false,
    };
    let needed = match request.operation {
        Operation::Read => Capability::Read,
        Operation::List => Capability::List,
        Operation::Delete => Capability::Delete,
        Operation::Patch => Capability::Patch,
        Operation::Write if creates => Capability::Create,
        Operation::Write => Capability::Update,
    };
    if acl.allows(&checked, needed, sudo) {
        return Ok(());
    }
    Err(denied())
}

/// Whether the caller holds `sudo` (with `update`) on the request's path: root tokens do.
/// For options Vault reserves to root or sudo tokens (periodic and orphan tokens).
pub(crate) async fn has_sudo(
    ready: &Ready,
    caller: &Caller,
    tenant: &Tenant,
    request: &ApiRequest,
) -> Result<bool, ApiError> {
    use keybroker_core::policy::{canonicalize_request_path, Capability};
    if caller.is_root() {
        return Ok(true);
    }
    let Ok(canonical) = canonicalize_request_path(&request.path) else {
        return Ok(false);
    };
    let checked = policies::policy_path(caller.tenant(), tenant, &canonical);
    let acl = ready
        .broker
        .policies
        .acl(caller.tenant(), &caller.token.policies)
        .await?;
    Ok(acl.allows(&checked, Capability::Update, true))
}

/// Whether the caller has the operator's authority over backend instance `instance`: root,
/// or a root-namespace token whose policy grants `sudo` on `sys/plugins/backends/<instance>`.
pub(crate) async fn governs_instance(
    ready: &Ready,
    caller: &Caller,
    instance: &str,
) -> Result<bool, ApiError> {
    use keybroker_core::policy::Capability;
    if caller.is_root() {
        return Ok(true);
    }
    if caller.tenant() != keybroker_core::TenantId::ROOT {
        return Ok(false);
    }
    let acl = ready
        .broker
        .policies
        .acl(caller.tenant(), &caller.token.policies)
        .await?;
    let path = format!("sys/plugins/backends/{instance}");
    Ok(acl.capabilities(&path).contains(Capability::Sudo))
}
