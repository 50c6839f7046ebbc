//! Response wrapping (Vault's `X-Vault-Wrap-TTL` and `sys/wrapping/*`; OpenBao docs
//! "Response wrapping"): a response is kept, sealed, under a single-use **wrapping token**
//! and answered only to whoever unwraps it.
//!
//! - A wrapping token is `kbw.` + 32 random characters. It is no token of the token store:
//!   it authenticates nothing but its own `sys/wrapping/unwrap`, `lookup` and `rewrap` (the
//!   HTTP edge sends a `kbw.` token anywhere else to the ordinary token check, which knows
//!   no such token). It is stored only as HMAC-SHA256 under a key of its own, sealed under
//!   the root key; lookups go by that HMAC, so no secret is compared byte by byte.
//! - The response is stored only sealed: AES-256-GCM under a 32-byte secret the root key
//!   seals (`broker::sealed_secret`), the AAD naming the tenant and the row's random id, so
//!   a sealed response moved to another tenant or row does not open.
//! - Single use: unwrapping deletes the row in the statement that reads it
//!   (`Store::take_wrapped_response`, `DELETE … RETURNING`), so of two callers racing, on
//!   any nodes, exactly one gets the response. A rewrap moves the row to a new token in one
//!   statement: the old token dies as the new one starts.
//! - Expiry: an expired row is never answered (every read compares `expires_at` with the
//!   clock) and is deleted by the next wrap (`Store::tidy_wrapped_responses`).
//! - Tenancy: a response wrapped in a tenant unwraps, looks up and rewraps only there;
//!   elsewhere the token is unknown. Every failure (unknown, expired, used, another
//!   tenant's) is the same [`Error::InvalidRequest`] with Vault's text.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::{
    auth::token::random_text,
    clock::Clock,
    error::{Error, Result},
    seal::RootKey,
    store::{Store, StoreError, WrappedResponseRecord, WrappedResponseRenewal},
    TenantId,
};

/// The prefix of every wrapping token.
pub const WRAPPING_TOKEN_PREFIX: &str = "kbw.";

/// The meta name of the secret wrapping tokens are hashed under.
pub const HMAC_KEY_NAME: &str = "wrapping-token-hmac-key";

/// The meta name of the secret wrapped responses are sealed under.
pub const SEALER_NAME: &str = "wrapping-sealer";

/// The longest wrapping TTL: Vault's default maximum lease TTL (768h).
pub const MAX_WRAP_TTL: u64 = 768 * 3600;

/// Vault's answer to every wrapping token that is not live in the caller's tenant.
const NOT_VALID: &str = "wrapping token is not valid or does not exist";

/// Wrapping tokens made before a fresh one is given up (a hash collision is astronomically
/// unlikely; this only bounds the loop).
const MAX_ATTEMPTS: usize = 3;

/// What a wrapped response's token is, as Vault's `wrap_info` answers it.
pub struct WrapInfo {
    /// The wrapping token (only ever answered to the caller who wrapped).
    pub token: Zeroizing<String>,
    /// The wrapping token's accessor.
    pub accessor: String,
    /// Seconds it lives.
    pub ttl: u64,
    /// Creation time, Unix seconds.
    pub creation_time: i64,
    /// The path whose response is wrapped.
    pub creation_path: String,
    /// The accessor of a wrapped token or secret_id, or empty.
    pub wrapped_accessor: String,
}

impl std::fmt::Debug for WrapInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WrapInfo")
            .field("accessor", &self.accessor)
            .field("ttl", &self.ttl)
            .field("creation_path", &self.creation_path)
            .finish_non_exhaustive()
    }
}

/// What `sys/wrapping/lookup` tells of a live wrapping token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrapLookup {
    /// The path whose response is wrapped.
    pub creation_path: String,
    /// Creation time, Unix seconds.
    pub creation_time: i64,
    /// The TTL it was wrapped with.
    pub creation_ttl: u64,
}

/// A response to wrap.
pub struct ToWrap<'a> {
    /// The tenant it is wrapped in.
    pub tenant: TenantId,
    /// The (tenant-relative) path that answered it.
    pub creation_path: &'a str,
    /// Seconds the wrapping token lives, 1 to [`MAX_WRAP_TTL`].
    pub ttl: u64,
    /// The response body, JSON.
    pub response: &'a [u8],
    /// The accessor of a wrapped token or secret_id, or empty.
    pub wrapped_accessor: &'a str,
}

/// Response wrapping: wraps, looks up, unwraps and rewraps.
pub struct Wrapping {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    hmac_key: Zeroizing<[u8; 32]>,
    sealer: RootKey,
}

impl std::fmt::Debug for Wrapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Wrapping(..)")
    }
}

impl Wrapping {
    /// Response wrapping over `store`, hashing tokens under `hmac_key` and sealing
    /// responses under `sealer_key` (both secrets the root key seals).
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        hmac_key: Zeroizing<[u8; 32]>,
        sealer_key: Zeroizing<[u8; 32]>,
    ) -> Self {
        Self {
            store,
            clock,
            hmac_key,
            sealer: RootKey::new(sealer_key),
        }
    }

    /// Whether `token` has the shape of a wrapping token (its prefix; nothing is looked up).
    pub fn is_wrapping_token(token: &str) -> bool {
        token.starts_with(WRAPPING_TOKEN_PREFIX)
    }

    fn hash(&self, token: &str) -> Result<Vec<u8>> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.hmac_key.as_ref())
            .map_err(|_| Error::internal("wrapping hmac key length"))?;
        mac.update(token.as_bytes());
        Ok(mac.finalize().into_bytes().to_vec())
    }

    fn purpose(tenant: TenantId, id: &str) -> String {
        format!("wrapped response\0{tenant}\0{id}")
    }

    fn fresh_token() -> (Zeroizing<String>, String) {
        (
            Zeroizing::new(format!("{WRAPPING_TOKEN_PREFIX}{}", random_text(32))),
            random_text(24),
        )
    }

    /// Checks a requested wrapping TTL: at least a second, at most [`MAX_WRAP_TTL`].
    pub fn check_ttl(ttl: u64) -> Result<u64> {
        if ttl == 0 {
            return Err(Error::invalid("wrapping ttl must be at least 1s"));
        }
        if ttl > MAX_WRAP_TTL {
            return Err(Error::invalid(format!(
                "wrapping ttl is greater than the maximum ttl of {MAX_WRAP_TTL}s"
            )));
        }
        Ok(ttl)
    }

    /// Wraps a response; answers its wrapping token. Expired responses are tidied first.
    pub async fn wrap(&self, wrap: ToWrap<'_>) -> Result<WrapInfo> {
        let ttl = Self::check_ttl(wrap.ttl)?;
        let now = self.clock.now_unix();
        self.store.tidy_wrapped_responses(now).await?;
        let id = random_text(24);
        let sealed = self
            .sealer
            .seal(&Self::purpose(wrap.tenant, &id), wrap.response)?;
        let expires_at = now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX));
        for _ in 0..MAX_ATTEMPTS {
            let (token, accessor) = Self::fresh_token();
            let record = WrappedResponseRecord {
                hash: self.hash(&token)?,
                id: id.clone(),
                tenant: wrap.tenant,
                accessor: accessor.clone(),
                created_at: now,
                expires_at,
                ttl,
                creation_path: wrap.creation_path.to_owned(),
                wrapped_accessor: wrap.wrapped_accessor.to_owned(),
                sealed: sealed.clone(),
            };
            match self.store.put_wrapped_response(&record).await {
                Ok(()) => {
                    return Ok(WrapInfo {
                        token,
                        accessor,
                        ttl,
                        creation_time: now,
                        creation_path: record.creation_path,
                        wrapped_accessor: record.wrapped_accessor,
                    })
                }
                Err(StoreError::Conflict) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(Error::internal("could not make a unique wrapping token"))
    }

    /// What a live wrapping token of `tenant` wraps (not the response itself).
    pub async fn lookup(&self, tenant: TenantId, token: &str) -> Result<WrapLookup> {
        let record = self
            .store
            .get_wrapped_response(tenant, &self.hash(token)?, self.clock.now_unix())
            .await?
            .ok_or_else(|| Error::invalid(NOT_VALID))?;
        Ok(WrapLookup {
            creation_path: record.creation_path,
            creation_time: record.created_at,
            creation_ttl: record.ttl,
        })
    }

    /// Unwraps: answers the response and destroys the token, once, even across nodes.
    pub async fn unwrap(&self, tenant: TenantId, token: &str) -> Result<Zeroizing<Vec<u8>>> {
        let record = self
            .store
            .take_wrapped_response(tenant, &self.hash(token)?, self.clock.now_unix())
            .await?
            .ok_or_else(|| Error::invalid(NOT_VALID))?;
        self.sealer
            .unseal(&Self::purpose(record.tenant, &record.id), &record.sealed)
            .map_err(|_| Error::internal("a wrapped response does not open"))
    }

    /// Rewraps: the same response under a new token with the original TTL, from now; the
    /// old token stops working.
    pub async fn rewrap(&self, tenant: TenantId, token: &str) -> Result<WrapInfo> {
        let old_hash = self.hash(token)?;
        let now = self.clock.now_unix();
        let (token, accessor) = Self::fresh_token();
        // The new lifetime needs the original TTL: read it, then move the row only if it is
        // still live (the move itself is the single atomic step).
        let current = self
            .store
            .get_wrapped_response(tenant, &old_hash, now)
            .await?
            .ok_or_else(|| Error::invalid(NOT_VALID))?;
        let renewal = WrappedResponseRenewal {
            hash: self.hash(&token)?,
            accessor: accessor.clone(),
            created_at: now,
            expires_at: now.saturating_add(i64::try_from(current.ttl).unwrap_or(i64::MAX)),
        };
        let moved = self
            .store
            .rewrap_wrapped_response(tenant, &old_hash, now, &renewal)
            .await?
            .ok_or_else(|| Error::invalid(NOT_VALID))?;
        Ok(WrapInfo {
            token,
            accessor,
            ttl: moved.ttl,
            creation_time: now,
            creation_path: moved.creation_path,
            wrapped_accessor: moved.wrapped_accessor,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ttl_bounds() {
        assert!(Wrapping::check_ttl(0).is_err());
        assert_eq!(Wrapping::check_ttl(1).unwrap(), 1);
        assert_eq!(Wrapping::check_ttl(MAX_WRAP_TTL).unwrap(), MAX_WRAP_TTL);
        assert!(Wrapping::check_ttl(MAX_WRAP_TTL + 1).is_err());
    }

    #[test]
    fn tokens_have_the_prefix_and_differ() {
        let (a, _) = Wrapping::fresh_token();
        let (b, _) = Wrapping::fresh_token();
        assert!(Wrapping::is_wrapping_token(&a));
        assert_ne!(*a, *b);
        assert!(!Wrapping::is_wrapping_token("kbs.x"));
    }

    #[test]
    fn a_sealed_response_opens_only_for_its_tenant_and_row() {
        let sealer = RootKey::new(Zeroizing::new([7; 32]));
        let tenant = TenantId::random();
        let sealed = sealer
            .seal(&Wrapping::purpose(tenant, "id"), b"{\"data\":1}")
            .unwrap();
        assert!(sealer
            .unseal(&Wrapping::purpose(tenant, "id"), &sealed)
            .is_ok());
        assert!(sealer
            .unseal(&Wrapping::purpose(TenantId::ROOT, "id"), &sealed)
            .is_err());
        assert!(sealer
            .unseal(&Wrapping::purpose(tenant, "other"), &sealed)
            .is_err());
    }
}
