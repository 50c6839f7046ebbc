//! The edge: what is resolved of a request before anyone is authenticated — its verb
//! (`LIST`, or `GET ?list=true`, is a list), its query, its tenant (the `X-Vault-Namespace`
//! header or a tenant-named path), the client's address (`X-Forwarded-For` only from trusted
//! proxies), the presented token, and, once the caller is known, its body (bounded in size
//! and in time).

use std::{collections::HashMap, net::IpAddr, time::Duration};

use axum::{
    body::Body,
    http::{HeaderMap, Method, Uri},
};
use bytes::Bytes;
use keybroker_core::{Error, Tenant};

use super::{error::ApiError, Ready};

/// The verb of a request, as Vault's logical operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// GET (and HEAD).
    Read,
    /// LIST, or GET with `list=true`.
    List,
    /// POST or PUT.
    Write,
    /// DELETE.
    Delete,
    /// PATCH (a JSON merge patch).
    Patch,
}

impl Operation {
    /// The operation's name in audit records (Vault's logical operation names).
    pub fn audit_name(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::List => "list",
            Operation::Write => "update",
            Operation::Delete => "delete",
            Operation::Patch => "patch",
        }
    }
}

/// A request after the edge.
pub struct ApiRequest {
    /// The verb.
    pub operation: Operation,
    /// Path after `/v1/`, without a trailing `?query`; raw (not percent-decoded).
    pub path: String,
    /// Query parameters.
    pub query: HashMap<String, String>,
    /// Body bytes (at most `max_request_size`).
    pub body: Bytes,
}

/// What the edge knows of a request before reading its body.
pub(super) struct Edge {
    /// The request's method.
    pub(super) method: Method,
    /// The request's URI.
    pub(super) uri: Uri,
    /// The request's headers.
    pub(super) headers: HeaderMap,
    /// The direct peer's address (absent when served without a socket, e.g. in tests).
    pub(super) peer: Option<IpAddr>,
}

/// The verb of a request: `LIST`, or `GET` (or `HEAD`) with `list=true` (or `1`), is a list.
/// `None` for a method Vault does not serve.
pub(super) fn operation(method: &Method, query: &HashMap<String, String>) -> Option<Operation> {
    let wants_list = query.get("list").is_some_and(|v| v == "true" || v == "1");
    match method.as_str() {
        "GET" | "HEAD" if wants_list => Some(Operation::List),
        "GET" | "HEAD" => Some(Operation::Read),
        "LIST" => Some(Operation::List),
        "POST" | "PUT" => Some(Operation::Write),
        "DELETE" => Some(Operation::Delete),
        "PATCH" => Some(Operation::Patch),
        _ => None,
    }
}

/// The path after `/v1/` (empty when the URI has no such prefix), raw.
pub(super) fn api_path(uri: &Uri) -> String {
    uri.path()
        .strip_prefix("/v1/")
        .unwrap_or_default()
        .to_owned()
}

/// Whether the request names no namespace, or the root one: our details beyond Vault's
/// fields on unauthenticated endpoints are the operator's, not given to a namespace.
pub(super) fn names_root_namespace(headers: &HeaderMap) -> bool {
    headers.get("x-vault-namespace").is_none_or(|v| {
        v.to_str().is_ok_and(|v| {
            matches!(
                v.trim_matches('/'),
                "" | keybroker_core::TenantId::ROOT_NAME
            )
        })
    })
}

pub(super) fn parse_query(uri: &Uri) -> HashMap<String, String> {
    uri.query()
        .map(|q| {
            q.split('&')
                .filter(|p| !p.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    (k.to_owned(), v.to_owned())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Reads a body of at most `limit` bytes within `deadline` (408 after it).
pub(super) async fn read_body(
    body: Body,
    limit: usize,
    headers: &HeaderMap,
    deadline: Duration,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let read = tokio::time::timeout(deadline, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| ApiError::RequestTimeout)?;
    read.map_err(|error| {
        let too_large =
            std::iter::successors(Some(&error as &dyn std::error::Error), |e| e.source())
                .any(|e| e.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::PayloadTooLarge(limit)
        } else {
            ApiError::bad_request("could not read the request body")
        }
    })
}

/// The token of a request: `X-Vault-Token`, or `Authorization: Bearer`.
pub(super) fn presented_token(headers: &HeaderMap) -> Option<&str> {
    if let Some(token) = headers.get("x-vault-token").and_then(|v| v.to_str().ok()) {
        return Some(token);
    }
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// Resolves the tenant once, at the edge: the `X-Vault-Namespace` header, or a path that
/// starts with a tenant's name (`/v1/acme/transit/…`). Returns the tenant and the path
/// relative to it. An unknown namespace is refused like any other forbidden request.
pub(super) fn resolve_tenant(
    ready: &Ready,
    headers: &HeaderMap,
    path: String,
) -> Result<(Tenant, String), ApiError> {
    let denied = || ApiError::Core(Error::PermissionDenied);
    let header = match headers.get("x-vault-namespace") {
        None => "",
        Some(value) => value.to_str().map_err(|_| denied())?.trim_matches('/'),
    };
    if !header.is_empty() {
        let tenant = ready.broker.tenants.resolve(header).ok_or_else(denied)?;
        return Ok((tenant, path));
    }
    let (first, rest) = path.split_once('/').unwrap_or((path.as_str(), ""));
    match ready.broker.tenants.resolve(first) {
        Some(tenant) if !first.is_empty() && first != keybroker_core::TenantId::ROOT_NAME => {
            let rest = rest.to_owned();
            Ok((tenant, rest))
        }
        _ => Ok((Tenant::root(), path)),
    }
}

/// The client's address: the direct peer's, or — only when the peer is a trusted proxy —
/// the rightmost address in `X-Forwarded-For` that is not itself a trusted proxy (the
/// nearest hop no trusted proxy vouches for; what a client writes further left is ignored).
/// A trusted proxy's malformed header is refused rather than guessed at.
pub(super) fn client_address(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &[ipnet::IpNet],
) -> Result<Option<IpAddr>, ApiError> {
    let Some(peer) = peer.map(|p| p.to_canonical()) else {
        return Ok(None);
    };
    let is_trusted = |address: &IpAddr| trusted.iter().any(|net| net.contains(address));
    if !is_trusted(&peer) {
        return Ok(Some(peer));
    }
    let mut hops = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let text = value
            .to_str()
            .map_err(|_| ApiError::bad_request("invalid X-Forwarded-For header"))?;
        for hop in text.split(',').map(str::trim).filter(|h| !h.is_empty()) {
            let address = hop
                .parse::<IpAddr>()
                .map_err(|_| ApiError::bad_request("invalid X-Forwarded-For header"))?;
            hops.push(address.to_canonical());
        }
    }
    let client = hops
        .iter()
        .rev()
        .find(|address| !is_trusted(address))
        .or(hops.first())
        .copied()
        .unwrap_or(peer);
    Ok(Some(client))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(forwarded: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in forwarded {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        headers
    }

    fn client(
        peer: &str,
        forwarded: &[&str],
        trusted: &[&str],
    ) -> Result<Option<IpAddr>, ApiError> {
        let trusted: Vec<ipnet::IpNet> = trusted
            .iter()
            .map(|t| keybroker_core::cidr::parse(t).unwrap())
            .collect();
        client_address(Some(peer.parse().unwrap()), &headers(forwarded), &trusted)
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        // Untrusted peer: the header is ignored, even a malformed one.
        assert_eq!(
            client("192.0.2.1", &["10.0.0.1"], &[]).unwrap(),
            ip("192.0.2.1")
        );
        assert_eq!(
            client("192.0.2.1", &["junk"], &["10.0.0.0/8"]).unwrap(),
            ip("192.0.2.1")
        );
        // Trusted peer: the rightmost hop that is not a trusted proxy.
        let trusted = ["10.0.0.0/8"];
        assert_eq!(
            client("10.0.0.5", &["198.51.100.7"], &trusted).unwrap(),
            ip("198.51.100.7")
        );
        assert_eq!(
            client(
                "10.0.0.5",
                &["203.0.113.1, 198.51.100.7, 10.0.0.9"],
                &trusted
            )
            .unwrap(),
            ip("198.51.100.7"),
            "a client cannot choose its address by writing further left"
        );
        assert_eq!(
            client("10.0.0.5", &["203.0.113.1", "198.51.100.7"], &trusted).unwrap(),
            ip("198.51.100.7"),
            "several headers are one list"
        );
        assert_eq!(
            client("10.0.0.5", &["10.0.0.7"], &trusted).unwrap(),
            ip("10.0.0.7")
        );
        assert_eq!(client("10.0.0.5", &[], &trusted).unwrap(), ip("10.0.0.5"));
        assert_eq!(
            client("::ffff:10.0.0.5", &["::ffff:198.51.100.7"], &trusted).unwrap(),
            ip("198.51.100.7")
        );
        assert!(client("10.0.0.5", &["198.51.100.7, nope"], &trusted).is_err());
        assert_eq!(
            client_address(None, &headers(&["1.2.3.4"]), &[]).unwrap(),
            None
        );
    }
}
