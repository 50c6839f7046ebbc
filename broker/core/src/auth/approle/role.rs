//! Roles (Vault API: `auth/approle/role/:role_name` and its `role-id`): writes checked
//! against Vault's rules, reads, lists, deletes, and the role_id.

use crate::{
    cidr,
    error::{Error, Result},
    store::{AppRoleRecord, MountRecord, StoreError},
};

use super::{validate_identifier, AppRoles};

/// A role write (Vault API: auth/approle/role/:role_name). `None` keeps the current value,
/// or takes Vault's default when the role is created.
#[derive(Clone, Debug, Default)]
pub struct RoleUpdate {
    /// A chosen role_id (default: a random UUID on creation).
    pub role_id: Option<String>,
    /// Whether logins need a secret_id (default true).
    pub bind_secret_id: Option<bool>,
    /// Uses of each secret_id (0 = unlimited).
    pub secret_id_num_uses: Option<u64>,
    /// Lifetime of each secret_id, seconds (0 = unlimited).
    pub secret_id_ttl: Option<u64>,
    /// CIDR blocks logins must come from.
    pub secret_id_bound_cidrs: Option<Vec<String>>,
    /// CIDR blocks issued tokens may be used from.
    pub token_bound_cidrs: Option<Vec<String>>,
    /// Policies of issued tokens.
    pub token_policies: Option<Vec<String>>,
    /// TTL of issued tokens, seconds.
    pub token_ttl: Option<u64>,
    /// Maximum lifetime of issued tokens, seconds.
    pub token_max_ttl: Option<u64>,
    /// Hard limit on issued tokens' lifetime, seconds.
    pub token_explicit_max_ttl: Option<u64>,
    /// Uses of each issued token (0 = unlimited).
    pub token_num_uses: Option<u64>,
    /// Leave `default` out of issued tokens' policies.
    pub token_no_default_policy: Option<bool>,
    /// Period of the issued tokens in seconds (0 = not periodic).
    pub token_period: Option<u64>,
}

/// Checks a role name (Vault's `\w([\w.-]*\w)?`) and returns it in lowercase, as Vault
/// stores role names.
pub fn validate_role_name(name: &str) -> Result<String> {
    let bytes = name.as_bytes();
    let word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    let valid = !bytes.is_empty()
        && bytes.len() <= 128
        && bytes.first().is_some_and(word)
        && bytes.last().is_some_and(word)
        && bytes.iter().all(|b| word(b) || matches!(b, b'-' | b'.'));
    if !valid {
        return Err(Error::invalid(format!(
            "invalid role name {name:?}: use letters, digits, '_', '-' and '.', starting and ending with a letter, digit or '_'"
        )));
    }
    Ok(name.to_ascii_lowercase())
}

fn normalize_policies(policies: &[String]) -> Vec<String> {
    let mut out: Vec<String> = policies
        .iter()
        .map(|p| p.trim().to_ascii_lowercase())
        .filter(|p| !p.is_empty())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Applies an update to a role (or to a new role's defaults) and checks the result.
fn apply_update(mut role: AppRoleRecord, update: RoleUpdate) -> Result<AppRoleRecord> {
    if let Some(role_id) = update.role_id {
        validate_identifier("role_id", &role_id)?;
        role.role_id = role_id;
    }
    if let Some(bind) = update.bind_secret_id {
        role.bind_secret_id = bind;
    }
    if let Some(uses) = update.secret_id_num_uses {
        role.secret_id_num_uses = uses;
    }
    if let Some(ttl) = update.secret_id_ttl {
        role.secret_id_ttl = ttl;
    }
    if let Some(cidrs) = update.secret_id_bound_cidrs {
        role.secret_id_bound_cidrs = cidr::canonical_list(&cidrs)?;
    }
    if let Some(cidrs) = update.token_bound_cidrs {
        role.token_bound_cidrs = cidr::canonical_list(&cidrs)?;
    }
    if let Some(policies) = update.token_policies {
        let policies = normalize_policies(&policies);
        crate::auth::token::refuse_root_for_auth_method("token_policies", &policies)?;
        role.token_policies = policies;
    }
    if let Some(ttl) = update.token_ttl {
        role.token_ttl = ttl;
    }
    if let Some(ttl) = update.token_max_ttl {
        role.token_max_ttl = ttl;
    }
    if let Some(ttl) = update.token_explicit_max_ttl {
        role.token_explicit_max_ttl = ttl;
    }
    if let Some(uses) = update.token_num_uses {
        role.token_num_uses = uses;
    }
    if let Some(no_default) = update.token_no_default_policy {
        role.token_no_default_policy = no_default;
    }
    if let Some(period) = update.token_period {
        role.token_period = period;
    }
    if role.token_max_ttl > 0 && role.token_ttl > role.token_max_ttl {
        return Err(Error::invalid(
            "token_ttl should not be greater than token_max_ttl",
        ));
    }
    if !role.bind_secret_id
        && role.secret_id_bound_cidrs.is_empty()
        && role.token_bound_cidrs.is_empty()
    {
        return Err(Error::invalid(
            "at least one constraint should be enabled on the role",
        ));
    }
    Ok(role)
}

impl AppRoles {
    /// Creates a role or updates it.
    pub async fn write_role(
        &self,
        mount: &MountRecord,
        name: &str,
        update: RoleUpdate,
    ) -> Result<AppRoleRecord> {
        let name = validate_role_name(name)?;
        let current = match self
            .store
            .get_approle_role(mount.tenant, mount.id, &name)
            .await?
        {
            Some(role) => role,
            None => AppRoleRecord::new(
                mount.tenant,
                mount.id,
                &name,
                &uuid::Uuid::new_v4().to_string(),
                self.clock.now_unix(),
            ),
        };
        let role = apply_update(current, update)?;
        self.put_role(&role).await?;
        Ok(role)
    }

    async fn put_role(&self, role: &AppRoleRecord) -> Result<()> {
        match self.store.put_approle_role(role).await {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict) => Err(Error::invalid("role_id already in use")),
            Err(other) => Err(other.into()),
        }
    }

    /// A role, if it exists.
    pub async fn read_role(
        &self,
        mount: &MountRecord,
        name: &str,
    ) -> Result<Option<AppRoleRecord>> {
        let name = name.to_ascii_lowercase();
        Ok(self
            .store
            .get_approle_role(mount.tenant, mount.id, &name)
            .await?)
    }

    /// A role that must exist (secret_id operations).
    pub(super) async fn role(&self, mount: &MountRecord, name: &str) -> Result<AppRoleRecord> {
        self.read_role(mount, name).await?.ok_or_else(|| {
            Error::invalid(format!(
                "role \"{}\" does not exist",
                name.to_ascii_lowercase()
            ))
        })
    }

    /// Names of a mount's roles.
    pub async fn list_roles(&self, mount: &MountRecord) -> Result<Vec<String>> {
        Ok(self
            .store
            .list_approle_roles(mount.tenant, mount.id)
            .await?)
    }

    /// Deletes a role and its secret_ids. Unknown roles succeed, as in Vault.
    pub async fn delete_role(&self, mount: &MountRecord, name: &str) -> Result<()> {
        let name = name.to_ascii_lowercase();
        self.store
            .delete_approle_role(mount.tenant, mount.id, &name)
            .await?;
        Ok(())
    }

    /// Replaces a role's role_id (its secret_ids stay valid).
    pub async fn set_role_id(&self, mount: &MountRecord, name: &str, role_id: &str) -> Result<()> {
        let mut role = self.role(mount, name).await?;
        validate_identifier("role_id", role_id)?;
        role.role_id = role_id.to_owned();
        self.put_role(&role).await
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
    fn role_names() {
        assert_eq!(validate_role_name("Billing.v2").unwrap(), "billing.v2");
        for bad in ["", "-a", "a-", "a b", "a/b", ".", "é", &"a".repeat(129)] {
            assert!(validate_role_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_role_never_names_root_in_any_spelling() {
        for policies in [vec!["root"], vec!["default", " ROOT "], vec!["Root"]] {
            let update = RoleUpdate {
                token_policies: Some(policies.iter().map(|p| (*p).to_owned()).collect()),
                ..RoleUpdate::default()
            };
            match apply_update(role(), update) {
                Err(Error::InvalidRequest(message)) => assert!(message.contains("root")),
                other => panic!("{policies:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn role_updates_are_checked() {
        let updated = apply_update(
            role(),
            RoleUpdate {
                token_policies: Some(vec!["App-Enc ".into(), "app-enc".into(), String::new()]),
                secret_id_bound_cidrs: Some(vec!["10.1.2.3".into()]),
                ..RoleUpdate::default()
            },
        )
        .unwrap();
        assert_eq!(updated.token_policies, vec!["app-enc"]);
        assert_eq!(updated.secret_id_bound_cidrs, vec!["10.1.2.3/32"]);
        for bad in [
            RoleUpdate {
                bind_secret_id: Some(false),
                ..RoleUpdate::default()
            },
            RoleUpdate {
                token_ttl: Some(7200),
                token_max_ttl: Some(3600),
                ..RoleUpdate::default()
            },
            RoleUpdate {
                token_bound_cidrs: Some(vec!["nope".into()]),
                ..RoleUpdate::default()
            },
            RoleUpdate {
                role_id: Some("with space".into()),
                ..RoleUpdate::default()
            },
        ] {
            assert!(apply_update(role(), bad.clone()).is_err(), "{bad:?}");
        }
        let periodic = apply_update(
            role(),
            RoleUpdate {
                token_period: Some(60),
                ..RoleUpdate::default()
            },
        )
        .unwrap();
        assert_eq!(periodic.token_period, 60);
    }
}
