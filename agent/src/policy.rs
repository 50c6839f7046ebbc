//! The agent's own policy, applied whatever the broker asks: which tenants may use which
//! keys (the [`Allowlist`]) and how fast ([`RateLimiter`]).
//!
//! The broker's gateway config also says which tenants an agent serves; the agent does not
//! rely on it. A compromised or misconfigured broker still gets only what the customer
//! wrote here.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

/// Which keys a tenant may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyGrant {
    /// Every key the agent holds (`keys = ["*"]`).
    All,
    /// Exactly these key names.
    Named(BTreeSet<String>),
}

impl KeyGrant {
    /// Whether the grant covers `key`.
    pub fn covers(&self, key: &str) -> bool {
        match self {
            Self::All => true,
            Self::Named(names) => names.contains(key),
        }
    }
}

/// Tenants (exactly as the broker names them in `Request.tenant`) and the keys each may use.
/// A tenant not listed may use nothing; there is no wildcard tenant, so the customer names
/// every tenant that may reach their keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    tenants: BTreeMap<String, KeyGrant>,
}

/// Why an allowlist entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AllowlistError {
    /// The tenant name is unusable.
    #[error("tenant {tenant:?} is invalid: {reason}")]
    InvalidTenant {
        /// The name given.
        tenant: String,
        /// Why.
        reason: &'static str,
    },
    /// The tenant is listed twice.
    #[error("tenant {tenant:?} is listed more than once; list all its keys in one entry")]
    DuplicateTenant {
        /// The tenant.
        tenant: String,
    },
    /// The entry grants no key.
    #[error("tenant {tenant:?}: keys is empty; list key names or \"*\" for every key")]
    NoKeys {
        /// The tenant.
        tenant: String,
    },
    /// `"*"` listed together with names.
    #[error("tenant {tenant:?}: \"*\" already grants every key; list nothing else with it")]
    WildcardWithNames {
        /// The tenant.
        tenant: String,
    },
}

/// Longest accepted tenant id.
const MAX_TENANT_CHARS: usize = 256;

impl Allowlist {
    /// An allowlist that allows nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets `tenant` use the keys named in `keys` (`["*"]`: every key). Key names are
    /// checked against the agent's keys by [`crate::Config`], not here.
    pub fn allow(&mut self, tenant: &str, keys: &[String]) -> Result<(), AllowlistError> {
        let invalid = |reason| AllowlistError::InvalidTenant {
            tenant: tenant.to_owned(),
            reason,
        };
        if tenant.is_empty() {
            return Err(invalid("it is empty"));
        }
        if tenant == "*" {
            return Err(invalid(
                "\"*\" is not allowed for tenants: name each tenant that may use the keys",
            ));
        }
        if tenant.chars().count() > MAX_TENANT_CHARS {
            return Err(invalid("it is longer than 256 characters"));
        }
        if tenant.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("it contains whitespace or control characters"));
        }
        if self.tenants.contains_key(tenant) {
            return Err(AllowlistError::DuplicateTenant {
                tenant: tenant.to_owned(),
            });
        }
        let grant = match keys {
            [] => {
                return Err(AllowlistError::NoKeys {
                    tenant: tenant.to_owned(),
                })
            }
            [only] if only == "*" => KeyGrant::All,
            names if names.iter().any(|name| name == "*") => {
                return Err(AllowlistError::WildcardWithNames {
                    tenant: tenant.to_owned(),
                })
            }
            names => KeyGrant::Named(names.iter().cloned().collect()),
        };
        self.tenants.insert(tenant.to_owned(), grant);
        Ok(())
    }

    /// Whether `tenant` may use the key named `key`.
    pub fn permits(&self, tenant: &str, key: &str) -> bool {
        self.tenants
            .get(tenant)
            .is_some_and(|grant| grant.covers(key))
    }

    /// The tenants listed, with their grants.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &KeyGrant)> {
        self.tenants
            .iter()
            .map(|(tenant, grant)| (tenant.as_str(), grant))
    }
}

/// The rate cap's settings: a sustained rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per second, sustained.
    pub per_second: u32,
    /// Requests that may arrive at once after a quiet period (the bucket's size).
    pub burst: u32,
}

impl Default for RateLimit {
    /// 1000 requests per second, bursts of 1000: far above what one tenant's interactive
    /// use needs, low enough to slow a broker that has turned into a decryption oracle.
    fn default() -> Self {
        Self {
            per_second: 1000,
            burst: 1000,
        }
    }
}

/// A token bucket over caller-supplied instants: holds up to `burst` tokens, refills at
/// `per_second`, and each request takes one. Thread-safe.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    state: Mutex<BucketState>,
}

#[derive(Debug)]
struct BucketState {
    tokens: f64,
    last_refill: Option<Instant>,
}

impl RateLimiter {
    /// A full bucket for `limit` (`per_second` and `burst` are taken as at least 1).
    pub fn new(limit: RateLimit) -> Self {
        let limit = RateLimit {
            per_second: limit.per_second.max(1),
            burst: limit.burst.max(1),
        };
        Self {
            limit,
            state: Mutex::new(BucketState {
                tokens: f64::from(limit.burst),
                last_refill: None,
            }),
        }
    }

    /// The settings.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Takes a token at `now` if one is left; `false` means the request is over the cap.
    /// An instant earlier than one already seen adds nothing (time never runs backwards).
    pub fn try_acquire(&self, now: Instant) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(last) = state.last_refill {
            let elapsed = now.saturating_duration_since(last).as_secs_f64();
            state.tokens = (state.tokens + elapsed * f64::from(self.limit.per_second))
                .min(f64::from(self.limit.burst));
        }
        if state.last_refill.is_none_or(|last| now > last) {
            state.last_refill = Some(now);
        }
        if state.tokens >= 1.0 {
            state.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn allowlist_permits_only_listed_pairs() {
        let mut allowlist = Allowlist::new();
        allowlist.allow("acme", &names(&["data", "logs"])).unwrap();
        allowlist.allow("acme-ops", &names(&["*"])).unwrap();
        assert!(allowlist.permits("acme", "data"));
        assert!(allowlist.permits("acme", "logs"));
        assert!(!allowlist.permits("acme", "billing"));
        assert!(allowlist.permits("acme-ops", "billing"));
        assert!(!allowlist.permits("globex", "data"));
        assert!(!allowlist.permits("ACME", "data"));
        assert!(!allowlist.permits("", "data"));
    }

    #[test]
    fn allowlist_refuses_wildcard_tenants_duplicates_and_empty_grants() {
        let mut allowlist = Allowlist::new();
        allowlist.allow("acme", &names(&["data"])).unwrap();
        let cases = [
            ("*", names(&["data"])),
            ("", names(&["data"])),
            ("ac me", names(&["data"])),
            ("acme", names(&["logs"])),
            ("globex", names(&[])),
            ("globex", names(&["*", "data"])),
        ];
        for (tenant, keys) in cases {
            let error = allowlist.allow(tenant, &keys).unwrap_err();
            assert!(
                error.to_string().contains(&format!("{tenant:?}")),
                "{error}"
            );
        }
        assert!(matches!(
            allowlist.allow("*", &names(&["data"])),
            Err(AllowlistError::InvalidTenant { .. })
        ));
        // The refused duplicate did not replace the first entry.
        assert!(allowlist.permits("acme", "data") && !allowlist.permits("acme", "logs"));
    }

    #[test]
    fn bucket_allows_the_burst_then_refuses_then_refills_with_time() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 10,
            burst: 3,
        });
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.try_acquire(start));
        }
        assert!(!limiter.try_acquire(start));
        // 50 ms at 10/s is half a token: still refused.
        assert!(!limiter.try_acquire(start + Duration::from_millis(50)));
        // 100 ms: one token.
        assert!(limiter.try_acquire(start + Duration::from_millis(100)));
        assert!(!limiter.try_acquire(start + Duration::from_millis(100)));
        // A long pause refills to the burst, not beyond.
        let later = start + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(limiter.try_acquire(later));
        }
        assert!(!limiter.try_acquire(later));
        // An earlier instant adds nothing.
        assert!(!limiter.try_acquire(start));
    }
}
