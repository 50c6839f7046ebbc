//! The AppRole auth method (Vault's `approle`): roles, secret_ids and the checks of a login.
//!
//! - A **role** names the policies and lifetimes of the tokens its logins get, and the
//!   constraints of a login: a secret_id (`bind_secret_id`), client CIDR blocks.
//! - A **secret_id** is random (or chosen: `custom-secret-id`), shown once and stored only as
//!   HMAC-SHA256 under a key sealed by the root key; it may be limited in uses, lifetime and
//!   client CIDR blocks, never more widely than its role allows. Uses are consumed by one
//!   atomic statement in the store, so N concurrent logins with a secret_id of one use yield
//!   one token.
//! - A **login** ([`AppRoles::verify_login`]) fails with one message, [`LOGIN_FAILED`],
//!   whatever the reason, after the same store reads for an unknown role_id as for a known
//!   one. Repeated failures for a (role_id, client address) pair lock that pair out for a
//!   while ([`Lockout`]); other addresses are not affected, so knowing a role_id does not
//!   let anyone lock its service out.
//!
//! The broker turns a verified login into a token ([`crate::Broker::approle_login`]).
//!
//! One file per task: roles in `role.rs`, secret_ids (issued, looked up, destroyed, listed,
//! and their HMAC) in `secret_id.rs`, the checks of a login in `login.rs`, the tidy of
//! expired secret_ids in `tidy.rs`. The lockout is the auth methods' shared one
//! ([`crate::auth::lockout`]), re-exported here.

mod login;
mod role;
mod secret_id;
mod tidy;

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub use self::{
    login::{LoginIdentity, VerifiedLogin},
    role::{validate_role_name, RoleUpdate},
    secret_id::{IssuedSecretId, SecretIdRequest, SECRET_ID_KEY_NAME},
};
pub use crate::auth::lockout::{LockKey, Lockout, DEFAULT_LOCKOUT_CAPACITY};
use crate::{
    auth::lockout::LockoutSettings,
    clock::Clock,
    error::{Error, Result},
    store::Store,
    MountId,
};

/// The auth method's type name (`bao auth enable approle`).
pub const AUTH_TYPE: &str = "approle";

/// The one answer to every failed login (Vault's message).
pub const LOGIN_FAILED: &str = "invalid role or secret ID";

/// Longest role name, role_id or secret_id accepted.
const MAX_IDENTIFIER_LEN: usize = 512;

/// Limits of the AppRole method.
#[derive(Clone, Debug)]
pub struct AppRoleSettings {
    /// Failed logins of a (role_id, client address) pair that lock the pair out.
    pub lockout_threshold: u32,
    /// Seconds over which failures are counted, and for which a locked pair stays locked.
    pub lockout_duration: u64,
}

impl AppRoleSettings {
    /// The limits of the method's failed-login [`Lockout`].
    pub fn lockout(&self) -> LockoutSettings {
        LockoutSettings {
            threshold: self.lockout_threshold,
            duration: self.lockout_duration,
        }
    }
}

impl Default for AppRoleSettings {
    fn default() -> Self {
        // Vault's user lockout defaults: 5 failures, 15 minutes.
        let lockout = LockoutSettings::default();
        Self {
            lockout_threshold: lockout.threshold,
            lockout_duration: lockout.duration,
        }
    }
}

/// The roles and secret_ids of every approle mount.
pub struct AppRoles {
    mac: Hmac<Sha256>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    lockout: Lockout,
    tidying: Mutex<HashSet<MountId>>,
}

impl std::fmt::Debug for AppRoles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppRoles(..)")
    }
}

/// Checks a chosen role_id or secret_id: 1 to 512 printable ASCII characters.
fn validate_identifier(what: &str, text: &str) -> Result<()> {
    if text.is_empty()
        || text.len() > MAX_IDENTIFIER_LEN
        || !text.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(Error::invalid(format!(
            "invalid {what}: use 1-{MAX_IDENTIFIER_LEN} printable ASCII characters without spaces"
        )));
    }
    Ok(())
}

/// Seconds as a clock offset (saturating).
fn seconds(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl AppRoles {
    /// The AppRole service; `key` is the secret_id HMAC key (sealed under the root key).
    pub fn new(
        key: &[u8],
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        settings: AppRoleSettings,
    ) -> Result<Self> {
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
            .map_err(|_| Error::internal("approle key length"))?;
        Ok(Self {
            mac,
            store,
            lockout: Lockout::from_settings(&settings.lockout()),
            clock,
            tidying: Mutex::new(HashSet::new()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_name_the_lockout() {
        let settings = AppRoleSettings {
            lockout_threshold: 3,
            lockout_duration: 2,
        };
        assert_eq!(
            settings.lockout(),
            LockoutSettings {
                threshold: 3,
                duration: 2,
            }
        );
        // Vault's defaults: 5 failures, 15 minutes.
        assert_eq!(
            AppRoleSettings::default().lockout(),
            LockoutSettings {
                threshold: 5,
                duration: 900,
            }
        );
    }
}
