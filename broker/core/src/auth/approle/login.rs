//! Logins (Vault API: `auth/approle/login`): the checks of a role_id and secret_id from a
//! client address (the role's and the secret_id's CIDR blocks, the secret_id's expiry and
//! uses), with the same store reads for an unknown role_id as for a known one, and the
//! failed-login [`Lockout`](crate::auth::lockout::Lockout) of the (role_id, client address)
//! pair.

use std::net::IpAddr;

use crate::{
    auth::lockout::LockKey,
    cidr,
    error::{Error, Result},
    store::{AppRoleRecord, MountRecord, SecretIdRecord},
};

use super::{AppRoles, LOGIN_FAILED};

/// What a login attempt revealed about who tried, for the audit log, whatever the outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoginIdentity {
    /// The role whose role_id was presented, if it exists.
    pub role_name: Option<String>,
    /// The accessor of the presented secret_id, if it was found.
    pub secret_id_accessor: Option<String>,
}

/// A login whose credentials passed every check (and whose secret_id use was consumed).
#[derive(Clone, Debug)]
pub struct VerifiedLogin {
    /// The role.
    pub role: AppRoleRecord,
    /// The secret_id, when the role binds one.
    pub secret_id: Option<SecretIdRecord>,
}

fn failed() -> Error {
    Error::invalid(LOGIN_FAILED)
}

impl AppRoles {
    /// Checks a login's credentials from `client` and consumes a use of its secret_id.
    /// Every refusal is [`LOGIN_FAILED`], reached through the same store reads whether or
    /// not the role_id exists; the [`LoginIdentity`] says what was found, for the audit log.
    pub async fn verify_login(
        &self,
        mount: &MountRecord,
        role_id: &str,
        secret_id: &str,
        client: Option<IpAddr>,
    ) -> (LoginIdentity, Result<VerifiedLogin>) {
        let mut identity = LoginIdentity::default();
        let result = self
            .check_login(mount, role_id, secret_id, client, &mut identity)
            .await;
        (identity, result)
    }

    async fn check_login(
        &self,
        mount: &MountRecord,
        role_id: &str,
        secret_id: &str,
        client: Option<IpAddr>,
        identity: &mut LoginIdentity,
    ) -> Result<VerifiedLogin> {
        let role_id = role_id.trim();
        let secret_id = secret_id.trim();
        let client = client.map(cidr::canonical_address);
        let pair = LockKey::new(mount.tenant, mount.id, role_id.as_bytes(), client);
        // The same reads whatever the outcome: a role lookup, one HMAC, a secret_id lookup
        // (under a name no role can have when the role_id is unknown).
        let role = self
            .store
            .get_approle_role_by_role_id(mount.tenant, mount.id, role_id)
            .await?;
        let hash = self.hash(secret_id);
        let lookup_name = role.as_ref().map_or("\0", |r| r.name.as_str());
        let stored = self
            .store
            .get_approle_secret_id(mount.tenant, mount.id, lookup_name, &hash)
            .await?;
        let now = self.clock.now_unix();
        if let Some(role) = &role {
            identity.role_name = Some(role.name.clone());
            if role.bind_secret_id {
                identity.secret_id_accessor = stored.as_ref().map(|s| s.accessor.clone());
            }
        }
        if self.lockout.is_locked(&pair, now) {
            return Err(failed());
        }
        let verified = role.and_then(|role| {
            let from = |blocks: &[String]| {
                blocks.is_empty() || client.is_some_and(|c| cidr::contains_any(blocks, c))
            };
            let secret = if role.bind_secret_id {
                let secret = stored.filter(|s| {
                    !secret_id.is_empty()
                        && s.expires_at.is_none_or(|at| at > now)
                        && from(&s.cidr_list)
                })?;
                Some(secret)
            } else {
                None
            };
            from(&role.secret_id_bound_cidrs).then_some(VerifiedLogin {
                role,
                secret_id: secret,
            })
        });
        let Some(verified) = verified else {
            self.lockout.record_failure(pair, now);
            return Err(failed());
        };
        // Consumed last, so a refused login never spends a use.
        if let Some(secret) = verified
            .secret_id
            .as_ref()
            .filter(|s| s.uses_remaining.is_some())
        {
            let left = self
                .store
                .use_approle_secret_id(mount.tenant, mount.id, &secret.role_name, &secret.hash)
                .await?;
            if left.is_none() {
                self.lockout.record_failure(pair, now);
                return Err(failed());
            }
        }
        self.lockout.clear(&pair);
        Ok(verified)
    }
}
