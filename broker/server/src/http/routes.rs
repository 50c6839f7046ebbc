//! Every route the API serves, as one list: the dispatcher answers only requests that match
//! an entry (404 "unsupported path" for an unknown path, 405 for a known path with another
//! verb), and the authority matrix (`tests/e2e/matrix.rs`) walks the same list, so a route
//! cannot be served without a written expectation of who may call it.
//!
//! A pattern is a `/`-separated list of segments: a literal, `:name` for one segment, or
//! `*name` (last) for one or more. A route is either at the API's root (`sys/…`,
//! `auth/token/…`) or below every mount of one kind (`transit/keys/:name` is
//! `keys/:name` below each `transit` mount).

use super::Operation;

/// Where a route's pattern starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Base {
    /// At the API's root (`/v1/<pattern>`, or `/v1/<tenant>/<pattern>`).
    Root,
    /// Below each mount of this kind (`transit`, `approle`, `jwt`).
    Mount(&'static str),
}

/// Who may call a route without a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A token is needed, and its policies decide.
    Token,
    /// Anyone: health and seal status, and an auth method's login.
    Anonymous,
}

/// One route: where, what, which verbs.
#[derive(Clone, Copy, Debug)]
pub struct Route {
    /// Where the pattern starts.
    pub base: Base,
    /// The path below the base.
    pub pattern: &'static str,
    /// The verbs served.
    pub operations: &'static [Operation],
    /// Whether a token is needed.
    pub access: Access,
}

use Operation::{Delete as D, List as L, Read as R, Write as W};

const fn root(pattern: &'static str, operations: &'static [Operation]) -> Route {
    Route {
        base: Base::Root,
        pattern,
        operations,
        access: Access::Token,
    }
}

const fn mount(
    kind: &'static str,
    pattern: &'static str,
    operations: &'static [Operation],
) -> Route {
    Route {
        base: Base::Mount(kind),
        pattern,
        operations,
        access: Access::Token,
    }
}

const fn anonymous(route: Route) -> Route {
    Route {
        access: Access::Anonymous,
        ..route
    }
}

/// Every route served.
pub const ROUTES: &[Route] = &[
    // Health, for load balancers and clients (Vault: unauthenticated).
    anonymous(root("sys/health", &[R])),
    anonymous(root("sys/seal-status", &[R])),
    anonymous(root("sys/leader", &[R])),
    // Mounts and auth methods.
    root("sys/mounts", &[R, L]),
    root("sys/mounts/*path", &[R, W, D]),
    root("sys/auth", &[R, L]),
    root("sys/auth/*path", &[R, W, D]),
    // Policies (and the legacy `sys/policy`), capabilities.
    root("sys/policies/acl", &[R, L]),
    root("sys/policies/acl/:name", &[R, W, D]),
    root("sys/policy", &[R, L]),
    root("sys/policy/:name", &[R, W, D]),
    root("sys/capabilities", &[W]),
    root("sys/capabilities-self", &[W]),
    // Tenants, plugins, agents, metrics, audit: the operator's (some with a tenant's view).
    root("sys/namespaces", &[R, L]),
    root("sys/namespaces/:name", &[R, W, D]),
    root("sys/plugins/backends", &[R, L]),
    root("sys/plugins/reload", &[W]),
    root("sys/agents", &[R, L]),
    root("sys/metrics", &[R]),
    root("sys/audit-hash/:name", &[W]),
    // Tokens.
    root("auth/token/create", &[W]),
    root("auth/token/create-orphan", &[W]),
    root("auth/token/lookup-self", &[R, W]),
    root("auth/token/renew-self", &[W]),
    root("auth/token/revoke-self", &[W]),
    root("auth/token/lookup-accessor", &[W]),
    root("auth/token/revoke-accessor", &[W]),
    root("auth/token/tidy", &[W]),
    // AppRole.
    anonymous(mount("approle", "login", &[W])),
    mount("approle", "role", &[L]),
    mount("approle", "role/:name", &[R, W, D]),
    mount("approle", "role/:name/role-id", &[R, W]),
    mount("approle", "role/:name/secret-id", &[W, L]),
    mount("approle", "role/:name/custom-secret-id", &[W]),
    mount("approle", "role/:name/secret-id/lookup", &[W]),
    mount("approle", "role/:name/secret-id/destroy", &[W, D]),
    mount("approle", "role/:name/secret-id-accessor/lookup", &[W]),
    mount("approle", "role/:name/secret-id-accessor/destroy", &[W, D]),
    mount("approle", "tidy/secret-id", &[W]),
    // JWT.
    anonymous(mount("jwt", "login", &[W])),
    mount("jwt", "config", &[R, W]),
    mount("jwt", "role", &[L]),
    mount("jwt", "role/:name", &[R, W, D]),
    // Transit.
    mount("transit", "keys", &[L]),
    mount("transit", "keys/:name", &[R, W, D]),
    mount("transit", "keys/:name/config", &[W]),
    mount("transit", "keys/:name/rotate", &[W]),
    mount("transit", "encrypt/:name", &[W]),
    mount("transit", "decrypt/:name", &[W]),
    mount("transit", "rewrap/:name", &[W]),
    mount("transit", "datakey/:kind/:name", &[W]),
    mount("transit", "sign/:name", &[W]),
    mount("transit", "sign/:name/:algorithm", &[W]),
    mount("transit", "verify/:name", &[W]),
    mount("transit", "verify/:name/:algorithm", &[W]),
    mount("transit", "random", &[W]),
    mount("transit", "random/:a", &[W]),
    mount("transit", "random/:a/:b", &[W]),
    mount("transit", "config/keys", &[R, W]),
];

/// Whether `path` (below `base`, without a trailing `/`) matches `pattern`.
fn matches(pattern: &str, path: &str) -> bool {
    let mut wanted = pattern.split('/');
    let mut given = path.split('/');
    loop {
        match (wanted.next(), given.next()) {
            (None, None) => return true,
            (Some(rest), Some(segment)) if rest.starts_with('*') => {
                return !segment.is_empty() && given.all(|s| !s.is_empty())
            }
            (Some(segment), Some(actual)) if segment.starts_with(':') => {
                if actual.is_empty() {
                    return false;
                }
            }
            (Some(segment), Some(actual)) if segment == actual => {}
            _ => return false,
        }
    }
}

/// What the list says of a request below a mount of `mount_kind` (`None`: the API's root):
/// served, known with another verb, or unknown.
pub fn check(
    mount_kind: Option<&str>,
    path: &str,
    operation: Operation,
) -> Result<&'static Route, Refusal> {
    let path = path.trim_end_matches('/');
    let at_base = |route: &&Route| match (route.base, mount_kind) {
        (Base::Root, None) => true,
        (Base::Mount(kind), Some(wanted)) => kind == wanted,
        _ => false,
    };
    let mut known = false;
    for route in ROUTES
        .iter()
        .filter(at_base)
        .filter(|r| matches(r.pattern, path))
    {
        if route.operations.contains(&operation) {
            return Ok(route);
        }
        known = true;
    }
    Err(if known {
        Refusal::Operation
    } else {
        Refusal::Path
    })
}

/// Why the list refuses a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No route has this path (404).
    Path,
    /// A route has this path, not this verb (405).
    Operation,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_segments_and_rests() {
        assert!(matches("keys/:name", "keys/k"));
        assert!(!matches("keys/:name", "keys"));
        assert!(!matches("keys/:name", "keys/"));
        assert!(!matches("keys/:name", "keys/k/config"));
        assert!(matches("sys/auth/*path", "sys/auth/a/b"));
        assert!(!matches("sys/auth/*path", "sys/auth"));
        assert!(!matches("sys/auth/*path", "sys/auth/a//b"));
        assert!(matches("sys/health", "sys/health"));
    }

    #[test]
    fn the_list_answers_served_known_and_unknown() {
        let transit = Some("transit");
        assert!(check(transit, "keys/k/", Operation::Read).is_ok());
        assert_eq!(
            check(transit, "keys/k/rotate", Operation::Read).unwrap_err(),
            Refusal::Operation
        );
        assert_eq!(
            check(transit, "keys/k/export", Operation::Read).unwrap_err(),
            Refusal::Path
        );
        assert_eq!(
            check(None, "transit/keys", Operation::List).unwrap_err(),
            Refusal::Path
        );
    }

    #[test]
    fn every_mountable_kind_has_routes_and_every_route_a_known_kind() {
        use keybroker_core::mounts::{AUTH_TYPES, ENGINE_TYPES};
        let kinds: Vec<&str> = AUTH_TYPES.iter().chain(ENGINE_TYPES).copied().collect();
        for kind in &kinds {
            assert!(
                ROUTES.iter().any(|r| r.base == Base::Mount(kind)),
                "{kind} has no route"
            );
        }
        for route in ROUTES {
            if let Base::Mount(kind) = route.base {
                assert!(kinds.contains(&kind), "{route:?}");
            }
        }
    }

    #[test]
    fn no_route_is_listed_twice() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(
                    a.base != b.base || a.pattern != b.pattern,
                    "{a:?} and {b:?}"
                );
            }
        }
    }
}
