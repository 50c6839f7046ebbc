//! Changes to cached state, announced to every node that shares a store (ARCHITECTURE.md §7).
//!
//! Each node caches tokens, policies, mount tables, tenants and key metadata. A write on one
//! node invalidates its own caches at once; a store shared by several nodes (Postgres) also
//! announces the write — in the same transaction, so it is delivered if and only if the
//! write commits — and every node drops what the change makes stale. A node whose feed was
//! interrupted cannot know what it missed: it gets [`Change::Resync`] and drops everything.

use crate::{mount_storage, KeyId, MountId, TenantId};

/// One change to cached state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A token was revoked, renewed, used up, tidied or had a use counted (by keyed hash).
    Token(Vec<u8>),
    /// A tenant was created or deleted.
    Tenants,
    /// A tenant was deleted: everything of it goes.
    TenantDeleted(TenantId),
    /// A tenant's mount table changed (mount, unmount, mount config).
    Mounts(TenantId),
    /// A tenant's policies changed.
    Policies(TenantId),
    /// A key's configuration or versions changed, or it was deleted.
    Key(TenantId, KeyId),
    /// An entry of a mount's storage was written or deleted (by key). A mount's entries
    /// deleted with it, or with its tenant, are announced by [`Change::Mounts`] and
    /// [`Change::TenantDeleted`] alone.
    MountEntry(TenantId, MountId, String),
    /// The plugin set was reloaded on a node: every node reloads its own.
    Plugins,
    /// Changes may have been lost (the feed was interrupted): drop every cache.
    Resync,
}

impl Change {
    /// The text sent through the store's notification channel (at most a few hundred
    /// bytes; Postgres allows 8000).
    pub fn encode(&self) -> String {
        match self {
            Self::Token(hash) => format!("token:{}", hex::encode(hash)),
            Self::Tenants => "tenants".to_owned(),
            Self::TenantDeleted(tenant) => format!("tenant-deleted:{tenant}"),
            Self::Mounts(tenant) => format!("mounts:{tenant}"),
            Self::Policies(tenant) => format!("policies:{tenant}"),
            Self::Key(tenant, key) => format!("key:{tenant}:{key}"),
            // In hex: a key may hold any character, ':' included. At most 512 bytes, so
            // about 1.1 KB in all.
            Self::MountEntry(tenant, mount, key) => {
                format!("mount-entry:{tenant}:{mount}:{}", hex::encode(key))
            }
            Self::Plugins => "plugins".to_owned(),
            Self::Resync => "resync".to_owned(),
        }
    }

    /// Parses [`Change::encode`]'s text; `None` for anything else.
    pub fn decode(text: &str) -> Option<Self> {
        let (kind, rest) = text.split_once(':').unwrap_or((text, ""));
        let tenant = || TenantId::parse(rest);
        match kind {
            "token" if !rest.is_empty() => hex::decode(rest).ok().map(Self::Token),
            "tenants" if rest.is_empty() => Some(Self::Tenants),
            "tenant-deleted" => tenant().map(Self::TenantDeleted),
            "mounts" => tenant().map(Self::Mounts),
            "policies" => tenant().map(Self::Policies),
            "key" => {
                let (tenant, key) = rest.split_once(':')?;
                Some(Self::Key(TenantId::parse(tenant)?, KeyId::parse(key)?))
            }
            "mount-entry" => {
                let mut parts = rest.splitn(3, ':');
                let tenant = TenantId::parse(parts.next()?)?;
                let mount = MountId::parse(parts.next()?)?;
                let key = String::from_utf8(hex::decode(parts.next()?).ok()?).ok()?;
                mount_storage::is_valid_key(&key).then_some(Self::MountEntry(tenant, mount, key))
            }
            "plugins" if rest.is_empty() => Some(Self::Plugins),
            "resync" if rest.is_empty() => Some(Self::Resync),
            _ => None,
        }
    }
}

/// Held while a periodic job runs on this node; other nodes asking for the same job get
/// nothing until it is dropped (Postgres: an advisory lock held by a dedicated session).
pub struct JobGuard {
    _lock: Box<dyn Send + Sync>,
}

impl JobGuard {
    /// A guard holding `lock` (whatever releases the job when dropped).
    pub fn new(lock: impl Send + Sync + 'static) -> Self {
        Self {
            _lock: Box::new(lock),
        }
    }

    /// A guard for a store only this process uses: there is no one to exclude.
    pub fn local() -> Self {
        Self {
            _lock: Box::new(()),
        }
    }
}

impl std::fmt::Debug for JobGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JobGuard(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_change_round_trips_and_garbage_is_refused() {
        let tenant = TenantId::random();
        let key = KeyId::random();
        let mount = MountId::random();
        for change in [
            Change::Token(vec![0, 1, 0xab, 0xff]),
            Change::Tenants,
            Change::TenantDeleted(tenant),
            Change::Mounts(tenant),
            Change::Policies(tenant),
            Change::Key(tenant, key),
            Change::MountEntry(tenant, mount, "role/web".to_owned()),
            // Separators, non-ASCII text and the longest key survive the trip.
            Change::MountEntry(tenant, mount, "a:b:c/é ü".to_owned()),
            Change::MountEntry(tenant, mount, "k".repeat(mount_storage::MAX_KEY_LEN)),
            Change::Plugins,
            Change::Resync,
        ] {
            assert_eq!(Change::decode(&change.encode()), Some(change.clone()));
        }
        for bad in [
            "",
            "token:",
            "token:abc",
            "token:zz",
            "key:x:y",
            "mounts:",
            "other",
            "tenants:x",
        ] {
            assert_eq!(Change::decode(bad), None, "{bad}");
        }
        // A mount entry names a tenant, a mount and a valid key, in hex.
        let prefix = format!("mount-entry:{tenant}:{mount}:");
        for bad in [
            format!("mount-entry:{tenant}:{mount}"),
            prefix.clone(),
            format!("{prefix}zz"),
            format!("{prefix}6"),
            // Not UTF-8; a control character; one byte too long.
            format!("{prefix}ff"),
            format!("{prefix}00"),
            format!(
                "{prefix}{}",
                hex::encode("k".repeat(mount_storage::MAX_KEY_LEN + 1))
            ),
            format!("mount-entry:{tenant}:x:6b"),
            format!("mount-entry:x:{mount}:6b"),
        ] {
            assert_eq!(Change::decode(&bad), None, "{bad}");
        }
    }
}
