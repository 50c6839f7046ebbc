//! Tokens: random, `kbs.`-prefixed, stored only as HMAC-SHA256 under the server key.
//!
//! Issue scope so far: root tokens (no TTL) for operators. Tenants, policies, TTLs and child
//! tokens build on this in the next issue.

use std::{sync::Arc, time::Duration};

use hmac::{Hmac, Mac};
use moka::sync::Cache;
use rand::{distributions::Alphanumeric, Rng};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::{
    clock::Clock,
    error::{Error, Result},
    store::{Store, TokenRecord},
    TenantId,
};

/// Prefix of every token the broker issues.
pub const TOKEN_PREFIX: &str = "kbs.";

/// The policy name that grants everything.
pub const ROOT_POLICY: &str = "root";

/// A token's identity after a successful lookup.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The token's record.
    pub token: Arc<TokenRecord>,
}

impl Caller {
    /// Whether the token carries the root policy.
    pub fn is_root(&self) -> bool {
        self.token.policies.iter().any(|p| p == ROOT_POLICY)
    }
    /// The token's tenant.
    pub fn tenant(&self) -> TenantId {
        self.token.tenant
    }
}

/// Issues and resolves tokens.
pub struct Tokens {
    mac: Hmac<Sha256>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    cache: Cache<[u8; 32], Arc<TokenRecord>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens(..)")
    }
}

impl Tokens {
    /// Token service keyed by the server HMAC key.
    pub fn new(server_key: &[u8], store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Result<Self> {
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(server_key)
            .map_err(|_| Error::internal("server key length"))?;
        Ok(Self {
            mac,
            store,
            clock,
            cache: Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(600))
                .build(),
        })
    }

    /// The keyed hash under which a token is stored.
    pub fn hash(&self, token: &str) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(token.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Creates a root token in a tenant. `chosen` lets dev mode pick the token's text.
    pub async fn create_root(
        &self,
        tenant: TenantId,
        chosen: Option<&str>,
    ) -> Result<Zeroizing<String>> {
        let token = match chosen {
            Some(text) => {
                if text.is_empty()
                    || text.len() > 256
                    || !text.bytes().all(|b| b.is_ascii_graphic())
                {
                    return Err(Error::invalid(
                        "root token id must be 1-256 printable ASCII characters",
                    ));
                }
                Zeroizing::new(text.to_owned())
            }
            None => Zeroizing::new(format!("{TOKEN_PREFIX}{}", random_text(32))),
        };
        let record = TokenRecord {
            hash: self.hash(&token).to_vec(),
            accessor: random_text(24),
            tenant,
            policies: vec![ROOT_POLICY.to_owned()],
            display_name: "root".to_owned(),
            created_at: self.clock.now_unix(),
            expires_at: None,
        };
        self.store.put_token(&record).await?;
        Ok(token)
    }

    /// Resolves a presented token; every failure is the same `PermissionDenied`.
    pub async fn authenticate(&self, token: &str) -> Result<Caller> {
        if token.is_empty() || token.len() > 512 {
            return Err(Error::PermissionDenied);
        }
        let hash = self.hash(token);
        let record = match self.cache.get(&hash) {
            Some(record) => record,
            None => {
                let record = self
                    .store
                    .get_token(&hash)
                    .await?
                    .ok_or(Error::PermissionDenied)?;
                let record = Arc::new(record);
                self.cache.insert(hash, record.clone());
                record
            }
        };
        if let Some(expires_at) = record.expires_at {
            if expires_at <= self.clock.now_unix() {
                self.cache.invalidate(&hash);
                return Err(Error::PermissionDenied);
            }
        }
        Ok(Caller { token: record })
    }
}

/// Random alphanumeric text from the OS RNG.
pub fn random_text(len: usize) -> String {
    rand::rngs::OsRng
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}
