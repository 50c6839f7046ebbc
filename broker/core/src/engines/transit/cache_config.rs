//! [Configure cache](https://openbao.org/api-docs/secret/transit/#configure-cache) and
//! [read cache configuration](https://openbao.org/api-docs/secret/transit/#read-cache-configuration):
//! `POST` and `GET /transit/cache-config`.
//!
//! Vault sizes its cache of key policies with it. Keybroker's caches (key metadata, and
//! the DEK cache of each backend instance) have settings of their own, in the broker's
//! configuration: the size is accepted, checked and reported as Vault does, kept per mount
//! in mount storage (under Vault's own storage key, `config/cache`), and changes nothing
//! else.

use serde::{Deserialize, Serialize};

use crate::{
    error::{Error, Result},
    mount_storage::MountStorage,
    store::Expect,
};

/// Vault's smallest non-zero cache size (`minCacheSize`).
pub const MIN_CACHE_SIZE: i64 = 10;

/// The mount storage key of the cache configuration (Vault's).
const CACHE_CONFIG_KEY: &str = "config/cache";

/// The stored cache configuration (Vault's `configCache`).
#[derive(Serialize, Deserialize)]
struct CacheConfig {
    size: i64,
}

/// Refuses a size Vault refuses: 0 (unlimited) or at least [`MIN_CACHE_SIZE`].
fn check_cache_size(size: i64) -> Result<()> {
    if size != 0 && size < MIN_CACHE_SIZE {
        return Err(Error::invalid(format!(
            "size must be 0 or a value greater or equal to {MIN_CACHE_SIZE}"
        )));
    }
    Ok(())
}

/// The mount's cache size: the one written last, or 0 (Vault's default).
pub async fn read_cache_size(storage: &MountStorage) -> Result<i64> {
    Ok(storage
        .get::<CacheConfig>(CACHE_CONFIG_KEY)
        .await?
        .map_or(0, |entry| entry.value.size))
}

/// Checks and keeps the mount's cache size (absent: 0, as in Vault); returns it.
pub async fn write_cache_size(storage: &MountStorage, size: Option<i64>) -> Result<i64> {
    let size = size.unwrap_or(0);
    check_cache_size(size)?;
    storage
        .put(CACHE_CONFIG_KEY, &CacheConfig { size }, Expect::Any)
        .await?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_size_is_0_or_at_least_10_with_vaults_message() {
        for size in [0, 10, 11, i64::MAX] {
            assert!(check_cache_size(size).is_ok(), "{size}");
        }
        for size in [1, 9, -1, i64::MIN] {
            assert_eq!(
                check_cache_size(size).unwrap_err().to_string(),
                "size must be 0 or a value greater or equal to 10",
                "{size}"
            );
        }
    }
}
