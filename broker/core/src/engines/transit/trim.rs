//! [Trim key](https://openbao.org/api-docs/secret/transit/#trim-key): `POST /transit/keys/:name/trim`.
//!
//! Deletes a key's versions below `min_available_version` for good: their rows (and so an
//! envelope version's wrapped data key), their cached data keys on every node (the store
//! announces the change), and in direct mode the backend key each of them had, unless the
//! key is bound (a bound backend key is never destroyed). The checks are Vault's, in
//! Vault's order, with Vault's messages (`path_trim.go`).

use super::{validate_key_name, KeyInfo, Transit};
use crate::{
    error::{Error, Result},
    store::KeyRecord,
    MountId, Tenant,
};

/// Why `requested` may not become the key's `min_available_version`, in Vault's order
/// (`None`: the field is absent).
fn check_trim(record: &KeyRecord, requested: Option<i64>) -> Result<u32> {
    let Some(requested) = requested else {
        return Err(Error::invalid("missing min_available_version"));
    };
    let refuse = |message: &str| Err(Error::invalid(message));
    if requested < i64::from(record.min_available_version) {
        return refuse("minimum available version cannot be decremented");
    }
    if record.min_encryption_version == 0 {
        return refuse(
            "minimum available version cannot be set when minimum encryption version is not set",
        );
    }
    if record.min_decryption_version == 0 {
        return refuse(
            "minimum available version cannot be set when minimum decryption version is not set",
        );
    }
    if requested > i64::from(record.min_encryption_version) {
        // Vault's spelling.
        return refuse(
            "minimum available version cannot be greater than minmum encryption version",
        );
    }
    if requested > i64::from(record.min_decryption_version) {
        return refuse(
            "minimum available version cannot be greater than minimum decryption version",
        );
    }
    if requested < 0 {
        return refuse("minimum available version cannot be negative");
    }
    if requested == 0 {
        return refuse("minimum available version should be positive");
    }
    u32::try_from(requested).map_err(|_| Error::invalid("minimum available version is too large"))
}

impl Transit {
    /// Trims a key to `min_available_version` (`None`: the field was absent); returns the
    /// key as read key shows it.
    pub async fn trim_key(
        &self,
        tenant: &Tenant,
        mount: MountId,
        name: &str,
        min_available_version: Option<i64>,
    ) -> Result<KeyInfo> {
        validate_key_name(name)?;
        let state = match self.existing_reloaded(tenant, mount, name).await {
            Err(Error::NotFound(_)) => return Err(Error::invalid("invalid key name")),
            other => other?,
        };
        let record = &state.record;
        let min = check_trim(record, min_available_version)?;
        let trimmed = self
            .store
            .trim_key_versions(tenant.id, record.id, min)
            .await?;
        let instance = self.backends.get(&record.backend);
        if let Some(instance) = &instance {
            // Every version's data key leaves this node's memory; the kept ones are
            // unwrapped again on use. Other nodes drop theirs when the change arrives.
            instance.cache().purge_key(tenant.id, record.id);
        }
        let fresh = self.existing_reloaded(tenant, mount, name).await?;
        if !trimmed.is_empty() && !record.bound {
            if let Some(instance) = instance {
                // A backend key still used by a kept version, or the key's own (envelope
                // mode: it wraps every version's data key), stays.
                let mut gone: Vec<&str> = trimmed
                    .iter()
                    .map(|v| v.backend_reference.as_str())
                    .filter(|reference| {
                        record.backend_reference.as_deref() != Some(*reference)
                            && !fresh
                                .versions
                                .iter()
                                .any(|v| v.record.backend_reference == *reference)
                    })
                    .collect();
                gone.sort_unstable();
                gone.dedup();
                for reference in gone {
                    if let Err(error) = instance.delete_key(tenant, reference).await {
                        tracing::warn!(key = %record.id, %error, "trimmed version's backend key not destroyed");
                    }
                }
            }
        }
        self.info(tenant, &fresh).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(latest: u32, available: u32, decryption: u32, encryption: u32) -> KeyRecord {
        super::super::test_record(latest, available, decryption, encryption)
    }

    fn refusal(record: &KeyRecord, requested: Option<i64>) -> String {
        check_trim(record, requested).unwrap_err().to_string()
    }

    #[test]
    fn trim_is_checked_in_vaults_order_with_vaults_messages() {
        let fresh = record(3, 0, 1, 0);
        assert_eq!(refusal(&fresh, None), "missing min_available_version");
        assert_eq!(
            refusal(&fresh, Some(1)),
            "minimum available version cannot be set when minimum encryption version is not set"
        );
        assert_eq!(
            refusal(&record(3, 0, 0, 2), Some(1)),
            "minimum available version cannot be set when minimum decryption version is not set"
        );
        let key = record(4, 0, 3, 2);
        assert_eq!(
            refusal(&key, Some(3)),
            "minimum available version cannot be greater than minmum encryption version"
        );
        assert_eq!(
            refusal(&record(4, 0, 2, 3), Some(3)),
            "minimum available version cannot be greater than minimum decryption version"
        );
        // Below the current value (0 before any trim) is a decrement, as in Vault.
        assert_eq!(
            refusal(&key, Some(-1)),
            "minimum available version cannot be decremented"
        );
        assert_eq!(
            refusal(&key, Some(0)),
            "minimum available version should be positive"
        );
        assert_eq!(check_trim(&key, Some(2)).unwrap(), 2);
        assert_eq!(check_trim(&key, Some(1)).unwrap(), 1);
        let trimmed = record(4, 2, 3, 3);
        assert_eq!(
            refusal(&trimmed, Some(1)),
            "minimum available version cannot be decremented"
        );
        assert_eq!(check_trim(&trimmed, Some(2)).unwrap(), 2);
        assert_eq!(check_trim(&trimmed, Some(3)).unwrap(), 3);
        assert_eq!(
            refusal(&trimmed, Some(i64::MAX)),
            "minimum available version cannot be greater than minmum encryption version"
        );
    }
}
