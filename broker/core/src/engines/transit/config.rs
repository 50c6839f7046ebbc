//! [Update key configuration](https://developer.hashicorp.com/vault/api-docs/secret/transit#update-key-configuration):
//! `POST /transit/keys/:name/config`.

use super::{validate_key_name, KeyInfo, Transit};
use crate::{
    error::{Error, Result},
    MountId, Tenant,
};

/// Changes to a key's configuration (Vault transit API: key config).
#[derive(Clone, Debug, Default)]
pub struct KeyConfigUpdate {
    /// New minimum decryption version.
    pub min_decryption_version: Option<u32>,
    /// New minimum encryption version (0 = latest).
    pub min_encryption_version: Option<u32>,
    /// Whether the key may be deleted.
    pub deletion_allowed: Option<bool>,
    /// Automatic rotation period in seconds (0 = off).
    pub auto_rotate_period: Option<u64>,
    /// Vault's `exportable`: one way to true (false is ignored, as in Vault).
    pub exportable: Option<bool>,
    /// Vault's `allow_plaintext_backup`: one way to true (false is ignored, as in Vault).
    pub allow_plaintext_backup: Option<bool>,
}

impl Transit {
    /// Changes a key's configuration.
    pub async fn configure_key(
        &self,
        tenant: &Tenant,
        mount: MountId,
        name: &str,
        update: KeyConfigUpdate,
    ) -> Result<KeyInfo> {
        validate_key_name(name)?;
        // Re-read: a trim on another node may have raised min_available_version.
        let state = self.existing_reloaded(tenant, mount, name).await?;
        let mut record = state.record.clone();
        if let Some(min) = update.min_decryption_version {
            if min > record.latest_version {
                return Err(Error::invalid(
                    "cannot set min decryption version greater than latest version",
                ));
            }
            record.min_decryption_version = min.max(1);
        }
        if let Some(min) = update.min_encryption_version {
            if min > record.latest_version {
                return Err(Error::invalid(
                    "cannot set min encryption version greater than latest version",
                ));
            }
            record.min_encryption_version = min;
        }
        if record.min_encryption_version != 0
            && record.min_encryption_version < record.min_decryption_version
        {
            return Err(Error::invalid(
                "min encryption version must be 0 or at least the min decryption version",
            ));
        }
        // Vault's check, after the changes: a trimmed version cannot come back.
        if record.min_available_version > record.min_encryption_version {
            return Err(Error::invalid(
                "min encryption version should not be less than min available version",
            ));
        }
        if record.min_available_version > record.min_decryption_version {
            return Err(Error::invalid(
                "min decryption version should not be less then min available version",
            ));
        }
        if let Some(allowed) = update.deletion_allowed {
            record.deletion_allowed = allowed;
        }
        if let Some(period) = update.auto_rotate_period {
            self.check_auto_rotate_period(period)?;
            record.auto_rotate_period = period;
        }
        // Vault never unsets them; setting them is refused where the material never leaves
        // the backend (export.rs). New versions are then made in Vault's layout.
        let exportable = update.exportable == Some(true) && !record.options.exportable;
        let plaintext_backup =
            update.allow_plaintext_backup == Some(true) && !record.options.allow_plaintext_backup;
        if exportable || plaintext_backup {
            self.check_material_may_leave(tenant, &record)?;
            record.options.exportable |= exportable;
            record.options.allow_plaintext_backup |= plaintext_backup;
        }
        if record != state.record {
            self.store.update_key_config(&record).await?;
        }
        let state = self.existing_reloaded(tenant, mount, name).await?;
        self.info(tenant, &state).await
    }
}
