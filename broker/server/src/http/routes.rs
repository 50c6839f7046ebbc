//! Routes as data: each kind of mount ([`super::kind::MountKind`]) lists the routes it
//! serves, and the dispatcher answers only requests that match one (404 "unsupported path"
//! for an unknown path, 405 for a known path with another verb). The authority matrix
//! (`tests/e2e/matrix.rs`) walks the registry's routes, so a route cannot be served without
//! a written expectation of who may call it.
//!
//! A pattern is a `/`-separated list of segments: a literal, `:name` for one segment, or
//! `*name` (last) for one or more. A built-in kind's patterns start at the API's root
//! (`sys/…`, `auth/token/…`); any other kind's start below each of its mounts
//! (`keys/:name` below each `transit` mount).

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

/// One route: what, which verbs, whether a token is needed.
#[derive(Clone, Copy, Debug)]
pub struct Route {
    /// The path (below the mount, or from the API's root for a built-in kind).
    pub pattern: &'static str,
    /// The verbs served.
    pub operations: &'static [Operation],
    /// Whether a token is needed.
    pub access: Access,
}

/// A route that needs a token.
pub const fn route(pattern: &'static str, operations: &'static [Operation]) -> Route {
    Route {
        pattern,
        operations,
        access: Access::Token,
    }
}

/// A route anyone may call.
pub const fn anonymous(route: Route) -> Route {
    Route {
        access: Access::Anonymous,
        ..route
    }
}

/// Whether `path` (below `base`, without a trailing `/`) matches `pattern`.
fn matches(pattern: &str, path: &str) -> bool {
    let mut wanted = pattern.split('/');
    let mut given = path.split('/');
    loop {
        match (wanted.next(), given.next()) {
            (None, None) => return true,
            // `*name` takes one or more segments, then the literal segments after it end
            // the path (`sys/mounts/*path/tune`).
            (Some(rest), Some(segment)) if rest.starts_with('*') => {
                let tail: Vec<&str> = wanted.collect();
                let rest: Vec<&str> = std::iter::once(segment).chain(given).collect();
                return rest.len() > tail.len()
                    && rest.iter().all(|s| !s.is_empty())
                    && rest[rest.len() - tail.len()..] == tail[..];
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

/// What `routes` say of a request on `path` (below the mount, without a trailing `/`
/// needed): served, known with another verb, or unknown.
pub fn find(
    routes: &'static [Route],
    path: &str,
    operation: Operation,
) -> Result<&'static Route, Refusal> {
    let path = path.trim_end_matches('/');
    let mut known = false;
    for route in routes.iter().filter(|r| matches(r.pattern, path)) {
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

/// Whether `path` is one of `routes`' anonymous routes, whatever the verb.
pub fn is_anonymous(routes: &[Route], path: &str) -> bool {
    let path = path.trim_end_matches('/');
    routes
        .iter()
        .any(|r| r.access == Access::Anonymous && matches(r.pattern, path))
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
        assert!(matches("sys/mounts/*path/tune", "sys/mounts/a/b/tune"));
        assert!(matches("sys/mounts/*path/tune", "sys/mounts/a/tune"));
        assert!(!matches("sys/mounts/*path/tune", "sys/mounts/tune"));
        assert!(!matches("sys/mounts/*path/tune", "sys/mounts/a/tuned"));
        assert!(!matches("sys/mounts/*path/tune", "sys/mounts//tune"));
    }

    #[test]
    fn the_list_answers_served_known_and_unknown() {
        let transit = super::super::transit::ROUTES;
        assert!(find(transit, "keys/k/", Operation::Read).is_ok());
        assert_eq!(
            find(transit, "keys/k/rotate", Operation::Read).unwrap_err(),
            Refusal::Operation
        );
        assert_eq!(
            find(transit, "keys/k/export", Operation::Read).unwrap_err(),
            Refusal::Path
        );
        assert!(is_anonymous(super::super::approle::ROUTES, "login/"));
        assert!(!is_anonymous(super::super::approle::ROUTES, "role"));
    }

    #[test]
    fn every_kind_has_routes_and_no_route_is_listed_twice() {
        let registry = super::super::kind::Registry::standard();
        for kind in registry.kinds() {
            assert!(!kind.routes().is_empty(), "{} has no route", kind.name());
        }
        let routes: Vec<(Base, &Route)> = registry.routes().collect();
        for (i, (base, a)) in routes.iter().enumerate() {
            for (other, b) in &routes[i + 1..] {
                assert!(base != other || a.pattern != b.pattern, "{a:?} and {b:?}");
            }
        }
    }
}
