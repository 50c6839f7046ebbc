//! The JWKS cache of one configuration.
//!
//! Keys are fetched when the verifier is built, then again only when a token names a `kid`
//! the cached set lacks (an identity provider rotating its keys). Such refetches are:
//! - **single-flight**: concurrent verifications with unknown `kid`s wait for one fetch and
//!   then look again in its result;
//! - **rate-limited**: at most one per `jwks_refetch_interval` seconds; an unknown `kid`
//!   within the interval is refused without a fetch, so forged `kid`s cannot make the broker
//!   hammer the provider;
//! - **fail-safe**: a failed fetch keeps the last good set; a successful one replaces it
//!   whole, so a key the provider removed stops validating.
//!
//! Time is the caller's `now`, so tests drive the interval.

use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use jsonwebtoken::Algorithm;

use super::keys::{self, algorithm_name, VerificationKey};

/// Fetches the bytes of a JWKS document (`{"keys":[…]}`). [`super::IdentityProviders`] makes
/// them (the server's over HTTPS); tests implement this.
#[async_trait]
pub trait JwksFetcher: Send + Sync {
    /// The document, or why it could not be had.
    async fn fetch(&self) -> Result<Vec<u8>, String>;
}

/// One fetched key set.
#[derive(Debug)]
struct KeySet {
    /// Incremented by every successful refetch.
    generation: u64,
    keys: Vec<VerificationKey>,
}

/// Which keys may check a token.
enum Lookup {
    /// These keys.
    Found(Vec<VerificationKey>),
    /// The token names a `kid` the set lacks.
    UnknownKid,
    /// No key may check it, and a refetch would not help.
    Refused(String),
}

fn lookup(set: &KeySet, kid: Option<&str>, algorithm: Algorithm) -> Lookup {
    match kid {
        Some(kid) => {
            let named: Vec<&VerificationKey> = set
                .keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .collect();
            if named.is_empty() {
                return Lookup::UnknownKid;
            }
            let fitting: Vec<VerificationKey> = named
                .into_iter()
                .filter(|k| k.allows(algorithm))
                .cloned()
                .collect();
            if fitting.is_empty() {
                Lookup::Refused(format!(
                    "the key {kid:?} does not allow {}",
                    algorithm_name(algorithm)
                ))
            } else {
                Lookup::Found(fitting)
            }
        }
        None => {
            let fitting: Vec<VerificationKey> = set
                .keys
                .iter()
                .filter(|k| k.allows(algorithm))
                .cloned()
                .collect();
            match fitting.len() {
                1 => Lookup::Found(fitting),
                0 => Lookup::Refused(format!(
                    "no key of the JWKS allows {}",
                    algorithm_name(algorithm)
                )),
                n => Lookup::Refused(format!(
                    "the token has no kid and {n} keys of the JWKS allow {}",
                    algorithm_name(algorithm)
                )),
            }
        }
    }
}

/// When the last refetch was tried.
#[derive(Debug, Default)]
struct RefetchState {
    last_attempt: Option<i64>,
}

/// The cached JWKS of one configuration.
pub(super) struct JwksCache {
    fetcher: Box<dyn JwksFetcher>,
    supported: Vec<Algorithm>,
    interval: i64,
    set: ArcSwap<KeySet>,
    /// Held for the whole of a refetch: the single flight.
    refetch: tokio::sync::Mutex<RefetchState>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("keys", &self.set.load().keys)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

async fn fetch_keys(
    fetcher: &dyn JwksFetcher,
    supported: &[Algorithm],
) -> Result<Vec<VerificationKey>, String> {
    let body = fetcher.fetch().await?;
    keys::parse_jwks(&body, supported)
}

impl JwksCache {
    /// Fetches the first set; refused if it cannot be had or holds no usable key.
    /// `supported` narrows every key's algorithms (empty: no narrowing); `interval` is the
    /// least number of seconds between two refetches.
    pub(super) async fn new(
        fetcher: Box<dyn JwksFetcher>,
        supported: Vec<Algorithm>,
        interval: u64,
    ) -> Result<Self, String> {
        let keys = fetch_keys(fetcher.as_ref(), &supported).await?;
        if keys.is_empty() {
            return Err("the JWKS holds no key usable to verify signatures".to_owned());
        }
        Ok(Self {
            fetcher,
            supported,
            interval: i64::try_from(interval).unwrap_or(i64::MAX),
            set: ArcSwap::from_pointee(KeySet {
                generation: 0,
                keys,
            }),
            refetch: tokio::sync::Mutex::new(RefetchState::default()),
        })
    }

    /// The keys that may check a token with this `kid` and algorithm: those named by `kid`,
    /// or without a `kid` the only key allowing the algorithm. An unknown `kid` refetches the
    /// set once (see the module documentation).
    pub(super) async fn keys_for(
        &self,
        kid: Option<&str>,
        algorithm: Algorithm,
        now: i64,
    ) -> Result<Vec<VerificationKey>, String> {
        let seen = self.set.load_full();
        match lookup(&seen, kid, algorithm) {
            Lookup::Found(keys) => return Ok(keys),
            Lookup::Refused(reason) => return Err(reason),
            Lookup::UnknownKid => {}
        }
        let current = self.refetch(seen.generation, now).await?;
        match lookup(&current, kid, algorithm) {
            Lookup::Found(keys) => Ok(keys),
            Lookup::Refused(reason) => Err(reason),
            Lookup::UnknownKid => Err(format!(
                "unknown kid {:?}, also after refetching the JWKS",
                kid.unwrap_or_default()
            )),
        }
    }

    /// A set newer than generation `seen`: the one another verification fetched while this
    /// one waited, or a fresh fetch if the interval allows.
    async fn refetch(&self, seen: u64, now: i64) -> Result<Arc<KeySet>, String> {
        let mut state = self.refetch.lock().await;
        let current = self.set.load_full();
        if current.generation != seen {
            return Ok(current);
        }
        if let Some(last) = state.last_attempt {
            // A clock that went back does not block refetches.
            if now >= last && now < last.saturating_add(self.interval) {
                return Err(format!(
                    "unknown kid; the JWKS was refetched less than {} s ago",
                    self.interval
                ));
            }
        }
        state.last_attempt = Some(now);
        match fetch_keys(self.fetcher.as_ref(), &self.supported).await {
            Ok(keys) => {
                let next = Arc::new(KeySet {
                    generation: current.generation + 1,
                    keys,
                });
                self.set.store(next.clone());
                Ok(next)
            }
            Err(reason) => {
                tracing::warn!(%reason, "JWKS refetch failed; keeping the last good key set");
                Err(format!("unknown kid; the JWKS refetch failed: {reason}"))
            }
        }
    }

    /// The `kid`s of the cached keys (for diagnostics and tests).
    pub(super) fn kids(&self) -> Vec<Option<String>> {
        self.set.load().keys.iter().map(|k| k.kid.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{atomic::Ordering, Mutex};

    use serde_json::json;

    use super::*;
    use crate::auth::jwt::test_support::{self as ts, serve, stub, StubFetcher};

    async fn cache(stub: &Arc<StubFetcher>, interval: u64) -> JwksCache {
        JwksCache::new(Box::new(stub.clone()), Vec::new(), interval)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_first_fetch_must_succeed_and_hold_a_usable_key() {
        let failing = Arc::new(StubFetcher::default());
        let error = JwksCache::new(Box::new(failing), Vec::new(), 30)
            .await
            .unwrap_err();
        assert!(error.contains("connection refused"), "{error}");

        let only_hmac = stub(vec![json!({"kty": "oct", "k": "c2VjcmV0"})]);
        let error = JwksCache::new(Box::new(only_hmac), Vec::new(), 30)
            .await
            .unwrap_err();
        assert!(error.contains("no key usable"), "{error}");

        let rsa_only = stub(vec![ts::rsa().jwk(Some("r"))]);
        let error = JwksCache::new(Box::new(rsa_only), vec![Algorithm::ES256], 30)
            .await
            .unwrap_err();
        assert!(error.contains("no key usable"), "{error}");
    }

    #[tokio::test]
    async fn keys_are_chosen_by_kid_and_algorithm() {
        let stub = stub(vec![ts::rsa().jwk(Some("r")), ts::p256().jwk(Some("e"))]);
        let cache = cache(&stub, 30).await;
        let keys = cache
            .keys_for(Some("r"), Algorithm::RS256, 0)
            .await
            .unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("r"));
        // The kid's key does not allow the token's algorithm: no refetch helps.
        let error = cache
            .keys_for(Some("r"), Algorithm::ES256, 0)
            .await
            .unwrap_err();
        assert!(error.contains("does not allow ES256"), "{error}");
        // No kid: the only key allowing the algorithm.
        let keys = cache.keys_for(None, Algorithm::ES256, 0).await.unwrap();
        assert_eq!(keys[0].kid.as_deref(), Some("e"));
        assert!(cache.keys_for(None, Algorithm::EdDSA, 0).await.is_err());
        assert_eq!(stub.fetches.load(Ordering::SeqCst), 1, "no refetch");
    }

    #[tokio::test]
    async fn no_kid_with_several_fitting_keys_is_refused() {
        let stub = stub(vec![
            ts::rsa().jwk(Some("a")),
            ts::rsa_other().jwk(Some("b")),
        ]);
        let cache = cache(&stub, 30).await;
        let error = cache.keys_for(None, Algorithm::RS256, 0).await.unwrap_err();
        assert!(error.contains("no kid and 2 keys"), "{error}");
    }

    #[tokio::test]
    async fn an_unknown_kid_refetches_once_per_interval() {
        let stub = stub(vec![ts::rsa().jwk(Some("old"))]);
        let cache = cache(&stub, 30).await;
        assert_eq!(stub.fetches.load(Ordering::SeqCst), 1);

        // The provider rotated: the unknown kid triggers one refetch and is found.
        serve(
            &stub,
            vec![ts::rsa().jwk(Some("old")), ts::rsa_other().jwk(Some("new"))],
        );
        let keys = cache
            .keys_for(Some("new"), Algorithm::RS256, 1000)
            .await
            .unwrap();
        assert_eq!(keys[0].kid.as_deref(), Some("new"));
        assert_eq!(stub.fetches.load(Ordering::SeqCst), 2);

        // Another unknown kid within the interval: refused without a fetch.
        serve(&stub, vec![ts::rsa().jwk(Some("newer"))]);
        let error = cache
            .keys_for(Some("newer"), Algorithm::RS256, 1029)
            .await
            .unwrap_err();
        assert!(error.contains("less than 30 s ago"), "{error}");
        assert_eq!(stub.fetches.load(Ordering::SeqCst), 2);

        // After the interval it is fetched; the set is replaced whole, so the removed keys
        // stop validating.
        cache
            .keys_for(Some("newer"), Algorithm::RS256, 1030)
            .await
            .unwrap();
        assert_eq!(stub.fetches.load(Ordering::SeqCst), 3);
        assert_eq!(cache.kids(), [Some("newer".to_owned())]);
        let error = cache
            .keys_for(Some("old"), Algorithm::RS256, 1031)
            .await
            .unwrap_err();
        assert!(error.contains("less than"), "{error}");
    }

    #[tokio::test]
    async fn a_failed_refetch_keeps_the_last_good_set() {
        let stub = stub(vec![ts::rsa().jwk(Some("k"))]);
        let cache = cache(&stub, 30).await;
        *stub.document.lock().unwrap() = None;
        let error = cache
            .keys_for(Some("x"), Algorithm::RS256, 100)
            .await
            .unwrap_err();
        assert!(
            error.contains("refetch failed: connection refused"),
            "{error}"
        );
        assert!(cache
            .keys_for(Some("k"), Algorithm::RS256, 101)
            .await
            .is_ok());

        // A document that is not a JWKS fails the same way.
        *stub.document.lock().unwrap() = Some(json!({"nope": 1}));
        assert!(cache
            .keys_for(Some("x"), Algorithm::RS256, 200)
            .await
            .is_err());
        assert!(cache
            .keys_for(Some("k"), Algorithm::RS256, 201)
            .await
            .is_ok());
        assert_eq!(stub.fetches.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_clock_that_went_back_does_not_block_refetches() {
        let stub = stub(vec![ts::rsa().jwk(Some("k"))]);
        let cache = cache(&stub, 30).await;
        assert!(cache
            .keys_for(Some("x"), Algorithm::RS256, 1000)
            .await
            .is_err());
        serve(&stub, vec![ts::rsa().jwk(Some("x"))]);
        assert!(cache
            .keys_for(Some("x"), Algorithm::RS256, 500)
            .await
            .is_ok());
        assert_eq!(stub.fetches.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_unknown_kids_share_one_fetch() {
        let stub = Arc::new(StubFetcher {
            document: Mutex::new(Some(json!({"keys": [ts::rsa().jwk(Some("old"))]}))),
            delay: Some(std::time::Duration::from_millis(50)),
            ..Default::default()
        });
        let cache = Arc::new(cache(&stub, 30).await);
        serve(
            &stub,
            vec![ts::rsa().jwk(Some("old")), ts::rsa_other().jwk(Some("new"))],
        );
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let cache = cache.clone();
                // Half ask for the new kid, half for kids that exist nowhere.
                let kid = if i % 2 == 0 {
                    "new".to_owned()
                } else {
                    format!("bogus-{i}")
                };
                tokio::spawn(async move { cache.keys_for(Some(&kid), Algorithm::RS256, 10).await })
            })
            .collect();
        let mut found = 0;
        for (i, task) in tasks.into_iter().enumerate() {
            let result = task.await.unwrap();
            if i % 2 == 0 {
                assert!(result.is_ok(), "{result:?}");
                found += 1;
            } else {
                assert!(result.is_err());
            }
        }
        assert_eq!(found, 8);
        assert_eq!(
            stub.fetches.load(Ordering::SeqCst),
            2,
            "one initial fetch, one refetch"
        );
    }
}
