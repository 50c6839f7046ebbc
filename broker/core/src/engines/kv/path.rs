//! Secret paths and where their documents live in mount storage.
//!
//! A secret's path is never stored in the clear: its document lives under a key made of
//! one keyed hash per path segment, each chained to its parent's
//! (`s/<h1>/<h2>/…`, `h_i = HMAC(path key, h_{i-1} ‖ segment_i)`, the first chained to the
//! tenant and mount), so that listing a folder is a prefix scan of mount storage, and the
//! path itself is only inside the sealed document. Equal names under different parents, or
//! in different mounts, hash differently.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::{
    error::{Error, Result},
    mount_storage::MAX_KEY_LEN,
    MountId, TenantId,
};

/// Prefix of every secret document's storage key.
pub(super) const SECRET_PREFIX: &str = "s/";

/// Bytes of each segment's hash kept in a storage key (96 bits: 16 base64 characters).
const SEGMENT_HASH_LEN: usize = 12;

/// Characters of one hashed segment in a storage key, with its `/`.
const SEGMENT_KEY_LEN: usize = 17;

/// Most segments of a secret's path: as many as fit in a storage key.
pub const MAX_DEPTH: usize = (MAX_KEY_LEN - SECRET_PREFIX.len()) / SEGMENT_KEY_LEN;

/// Longest path, in bytes.
pub const MAX_PATH_LEN: usize = 1024;

/// A checked secret path (or folder, for a listing): segments without `.`/`..`, control
/// characters or percent-escapes, no empty segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretPath {
    segments: Vec<String>,
}

impl SecretPath {
    /// A secret's path, as the request gives it below `data/`, `metadata/`, … (a trailing
    /// `/` names a folder, never a secret: refused).
    pub fn secret(raw: &str) -> Result<Self> {
        if raw.ends_with('/') {
            return Err(Error::invalid(
                "invalid secret path: a secret's path does not end with '/'",
            ));
        }
        let path = Self::parse(raw)?;
        if path.segments.is_empty() {
            return Err(Error::invalid("missing path"));
        }
        Ok(path)
    }

    /// A folder to list (empty: the mount's root; a trailing `/` is allowed).
    pub fn folder(raw: &str) -> Result<Self> {
        Self::parse(raw.strip_suffix('/').unwrap_or(raw))
    }

    fn parse(raw: &str) -> Result<Self> {
        if raw.len() > MAX_PATH_LEN {
            return Err(Error::invalid(format!(
                "invalid secret path: longer than {MAX_PATH_LEN} bytes"
            )));
        }
        if raw.is_empty() {
            return Ok(Self {
                segments: Vec::new(),
            });
        }
        let mut segments = Vec::new();
        for segment in raw.split('/') {
            let refusal = if segment.is_empty() {
                Some("an empty segment")
            } else if segment == "." || segment == ".." {
                Some("'.' or '..'")
            } else if segment.chars().any(char::is_control) {
                Some("control characters")
            } else if segment.contains('%') {
                Some("percent-escapes")
            } else {
                None
            };
            if let Some(what) = refusal {
                return Err(Error::invalid(format!(
                    "invalid secret path: it has {what}"
                )));
            }
            segments.push(segment.to_owned());
        }
        if segments.len() > MAX_DEPTH {
            return Err(Error::invalid(format!(
                "invalid secret path: more than {MAX_DEPTH} segments"
            )));
        }
        Ok(Self { segments })
    }

    /// The path as `a/b/c`.
    pub fn as_string(&self) -> String {
        self.segments.join("/")
    }

    /// Its segments.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }
}

/// Hashes paths into storage keys, per mount.
pub(super) struct PathHasher {
    key: zeroize::Zeroizing<[u8; 32]>,
}

impl PathHasher {
    pub(super) fn new(key: zeroize::Zeroizing<[u8; 32]>) -> Self {
        Self { key }
    }

    fn mac(&self) -> Hmac<Sha256> {
        // An HMAC takes a key of any length: this cannot fail.
        <Hmac<Sha256> as Mac>::new_from_slice(self.key.as_ref())
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
    }

    /// The storage key of the secret at `path`, or (`folder`) the prefix every secret
    /// below the folder `path` starts with.
    pub(super) fn storage_key(
        &self,
        tenant: TenantId,
        mount: MountId,
        path: &SecretPath,
        folder: bool,
    ) -> String {
        let mut mac = self.mac();
        mac.update(tenant.as_bytes());
        mac.update(mount.as_bytes());
        let mut chain = mac.finalize().into_bytes();
        let mut key =
            String::with_capacity(SECRET_PREFIX.len() + path.segments.len() * SEGMENT_KEY_LEN + 1);
        key.push_str(SECRET_PREFIX);
        for (index, segment) in path.segments.iter().enumerate() {
            let mut mac = self.mac();
            mac.update(&chain);
            mac.update(segment.as_bytes());
            chain = mac.finalize().into_bytes();
            if index > 0 {
                key.push('/');
            }
            key.push_str(&URL_SAFE_NO_PAD.encode(&chain[..SEGMENT_HASH_LEN]));
        }
        if folder && !path.segments.is_empty() {
            key.push('/');
        }
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_checked() {
        assert!(SecretPath::secret("a/b").is_ok());
        for bad in ["", "a/", "a//b", "../a", "a/./b", "a\0b", "a%2Fb", "a\nb"] {
            assert!(SecretPath::secret(bad).is_err(), "{bad:?}");
        }
        assert!(SecretPath::folder("").unwrap().segments().is_empty());
        assert_eq!(SecretPath::folder("a/b/").unwrap().as_string(), "a/b");
        let deep = vec!["x"; MAX_DEPTH + 1].join("/");
        assert!(SecretPath::secret(&deep).is_err());
    }

    #[test]
    fn keys_chain_segments_and_fit_storage() {
        let hasher = PathHasher::new(zeroize::Zeroizing::new([3; 32]));
        let (t, m) = (TenantId::ROOT, MountId::random());
        let path = |p: &str| SecretPath::secret(p).unwrap();
        let ab = hasher.storage_key(t, m, &path("a/b"), false);
        let a_folder = hasher.storage_key(t, m, &SecretPath::folder("a").unwrap(), true);
        assert!(ab.starts_with(&a_folder));
        // The same name under another parent, or in another mount, hashes differently.
        let cb = hasher.storage_key(t, m, &path("c/b"), false);
        assert_ne!(ab.rsplit('/').next(), cb.rsplit('/').next());
        assert_ne!(
            ab,
            hasher.storage_key(t, MountId::random(), &path("a/b"), false)
        );
        let deepest = vec!["segment"; MAX_DEPTH].join("/");
        assert!(hasher.storage_key(t, m, &path(&deepest), false).len() <= MAX_KEY_LEN);
    }
}
