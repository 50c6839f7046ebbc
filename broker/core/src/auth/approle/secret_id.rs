//! Secret_ids (Vault API: `auth/approle/role/:role_name/secret-id`, `custom-secret-id`,
//! `secret-id/lookup`, `secret-id/destroy` and their `-accessor` forms): issuing random or
//! chosen ones within the role's limits, the HMAC under which they are stored, lookups,
//! destruction and listing by accessor.

use std::collections::BTreeMap;

use hmac::Mac;
use zeroize::Zeroizing;

use crate::{
    cidr,
    error::{Error, Result},
    store::{AppRoleRecord, MountRecord, SecretIdRecord, StoreError},
};

use super::{seconds, validate_identifier, AppRoles};

/// Name under which the secret_id HMAC key is sealed in the store.
pub const SECRET_ID_KEY_NAME: &str = "approle-secret-id-key";

/// A secret_id to issue (Vault API: auth/approle/role/:role_name/secret-id and
/// custom-secret-id).
#[derive(Default)]
pub struct SecretIdRequest {
    /// The secret_id itself for `custom-secret-id`; a random one otherwise.
    pub custom: Option<Zeroizing<String>>,
    /// Copied into the metadata of tokens it logs in.
    pub metadata: BTreeMap<String, String>,
    /// CIDR blocks its logins must come from, within the role's.
    pub cidr_list: Vec<String>,
    /// CIDR blocks its tokens may be used from, within the role's.
    pub token_bound_cidrs: Vec<String>,
    /// Lifetime in seconds, at most the role's `secret_id_ttl` (default: the role's).
    pub ttl: Option<u64>,
    /// Uses, at most the role's `secret_id_num_uses` (default: the role's).
    pub num_uses: Option<u64>,
}

impl std::fmt::Debug for SecretIdRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretIdRequest")
            .field("custom", &self.custom.as_ref().map(|_| "<redacted>"))
            .field("cidr_list", &self.cidr_list)
            .field("ttl", &self.ttl)
            .field("num_uses", &self.num_uses)
            .finish_non_exhaustive()
    }
}

/// A secret_id just issued: its text (shown once) and what was stored.
pub struct IssuedSecretId {
    /// The secret_id.
    pub secret_id: Zeroizing<String>,
    /// The stored record (keyed hash only).
    pub record: SecretIdRecord,
}

impl std::fmt::Debug for IssuedSecretId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedSecretId")
            .field("accessor", &self.record.accessor)
            .finish_non_exhaustive()
    }
}

/// Narrows a secret_id request to its role: limits may be lower than the role's, never
/// higher, and never unlimited where the role limits (Vault's rule).
fn narrow(role: &AppRoleRecord, request: &SecretIdRequest) -> Result<(u64, u64)> {
    let num_uses = match request.num_uses {
        None => role.secret_id_num_uses,
        Some(uses)
            if role.secret_id_num_uses > 0 && (uses == 0 || uses > role.secret_id_num_uses) =>
        {
            return Err(Error::invalid(
                "num_uses cannot be higher than the role's secret_id_num_uses",
            ))
        }
        Some(uses) => uses,
    };
    let ttl = match request.ttl {
        None => role.secret_id_ttl,
        Some(ttl) if role.secret_id_ttl > 0 && (ttl == 0 || ttl > role.secret_id_ttl) => {
            return Err(Error::invalid(
                "ttl cannot be longer than the role's secret_id_ttl",
            ))
        }
        Some(ttl) => ttl,
    };
    Ok((num_uses, ttl))
}

impl AppRoles {
    /// The keyed hash under which a secret_id is stored.
    pub(super) fn hash(&self, secret_id: &str) -> Vec<u8> {
        let mut mac = self.mac.clone();
        mac.update(secret_id.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// Issues a secret_id for a role, within the role's limits.
    pub async fn issue_secret_id(
        &self,
        mount: &MountRecord,
        name: &str,
        request: SecretIdRequest,
    ) -> Result<IssuedSecretId> {
        let role = self.role(mount, name).await?;
        if !role.bind_secret_id {
            return Err(Error::invalid("bind_secret_id is not set on the role"));
        }
        let (num_uses, ttl) = narrow(&role, &request)?;
        let cidr_list = cidr::canonical_list(&request.cidr_list)?;
        if !cidr::is_subset(&cidr_list, &role.secret_id_bound_cidrs)? {
            return Err(Error::invalid(
                "failed to verify the CIDR restrictions set on the secret ID: cidr_list must lie within the role's secret_id_bound_cidrs",
            ));
        }
        let token_bound_cidrs = cidr::canonical_list(&request.token_bound_cidrs)?;
        if !cidr::is_subset(&token_bound_cidrs, &role.token_bound_cidrs)? {
            return Err(Error::invalid(
                "failed to verify the CIDR restrictions set on the secret ID: token_bound_cidrs must lie within the role's token_bound_cidrs",
            ));
        }
        let secret_id = match request.custom {
            Some(custom) => {
                validate_identifier("secret_id", &custom)?;
                custom
            }
            None => Zeroizing::new(uuid::Uuid::new_v4().to_string()),
        };
        let now = self.clock.now_unix();
        let record = SecretIdRecord {
            hash: self.hash(&secret_id),
            accessor: uuid::Uuid::new_v4().to_string(),
            tenant: mount.tenant,
            mount: mount.id,
            role_name: role.name,
            metadata: request.metadata,
            cidr_list,
            token_bound_cidrs,
            uses_remaining: (num_uses > 0).then_some(num_uses),
            num_uses,
            ttl,
            created_at: now,
            expires_at: (ttl > 0).then(|| now.saturating_add(seconds(ttl))),
        };
        match self.store.put_approle_secret_id(&record).await {
            Ok(()) => Ok(IssuedSecretId { secret_id, record }),
            Err(StoreError::Conflict) => Err(Error::invalid("SecretID is already registered")),
            Err(other) => Err(other.into()),
        }
    }

    fn live(&self, record: Option<SecretIdRecord>) -> Option<SecretIdRecord> {
        let now = self.clock.now_unix();
        record.filter(|r| r.expires_at.is_none_or(|at| at > now))
    }

    /// A role's live secret_id by its value.
    pub async fn lookup_secret_id(
        &self,
        mount: &MountRecord,
        name: &str,
        secret_id: &str,
    ) -> Result<Option<SecretIdRecord>> {
        let role = self.role(mount, name).await?;
        let found = self
            .store
            .get_approle_secret_id(mount.tenant, mount.id, &role.name, &self.hash(secret_id))
            .await?;
        Ok(self.live(found))
    }

    /// A role's live secret_id by accessor.
    pub async fn lookup_secret_id_accessor(
        &self,
        mount: &MountRecord,
        name: &str,
        accessor: &str,
    ) -> Result<Option<SecretIdRecord>> {
        let role = self.role(mount, name).await?;
        let found = self
            .store
            .get_approle_secret_id_by_accessor(mount.tenant, mount.id, &role.name, accessor)
            .await?;
        Ok(self.live(found))
    }

    /// Destroys a role's secret_id by its value; unknown ones succeed, as in Vault.
    pub async fn destroy_secret_id(
        &self,
        mount: &MountRecord,
        name: &str,
        secret_id: &str,
    ) -> Result<()> {
        let role = self.role(mount, name).await?;
        self.store
            .delete_approle_secret_id(mount.tenant, mount.id, &role.name, &self.hash(secret_id))
            .await?;
        Ok(())
    }

    /// Destroys a role's secret_id by accessor; returns whether it existed.
    pub async fn destroy_secret_id_accessor(
        &self,
        mount: &MountRecord,
        name: &str,
        accessor: &str,
    ) -> Result<bool> {
        let role = self.role(mount, name).await?;
        let Some(found) = self
            .store
            .get_approle_secret_id_by_accessor(mount.tenant, mount.id, &role.name, accessor)
            .await?
        else {
            return Ok(false);
        };
        Ok(self
            .store
            .delete_approle_secret_id(mount.tenant, mount.id, &role.name, &found.hash)
            .await?)
    }

    /// Accessors of a role's secret_ids.
    pub async fn list_secret_id_accessors(
        &self,
        mount: &MountRecord,
        name: &str,
    ) -> Result<Vec<String>> {
        let role = self.role(mount, name).await?;
        Ok(self
            .store
            .list_approle_secret_id_accessors(mount.tenant, mount.id, &role.name)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MountId, TenantId};

    fn role() -> AppRoleRecord {
        AppRoleRecord::new(TenantId::ROOT, MountId::random(), "billing", "r", 0)
    }

    #[test]
    fn secret_ids_are_never_wider_than_their_role() {
        let limited = AppRoleRecord {
            secret_id_num_uses: 3,
            secret_id_ttl: 600,
            ..role()
        };
        let request = |ttl, num_uses| SecretIdRequest {
            ttl,
            num_uses,
            ..SecretIdRequest::default()
        };
        assert_eq!(narrow(&limited, &request(None, None)).unwrap(), (3, 600));
        assert_eq!(
            narrow(&limited, &request(Some(60), Some(1))).unwrap(),
            (1, 60)
        );
        for (ttl, uses) in [
            (Some(601), None),
            (Some(0), None),
            (None, Some(4)),
            (None, Some(0)),
        ] {
            assert!(
                narrow(&limited, &request(ttl, uses)).is_err(),
                "{ttl:?} {uses:?}"
            );
        }
        // An unlimited role allows any limit, or none.
        assert_eq!(narrow(&role(), &request(Some(0), Some(0))).unwrap(), (0, 0));
        assert_eq!(narrow(&role(), &request(Some(9), Some(9))).unwrap(), (9, 9));
    }
}
