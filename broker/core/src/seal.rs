//! The root key and what it protects: the broker's own secrets at rest (server HMAC key,
//! generated KEKs) are AES-256-GCM encrypted under it, each bound to its purpose by AAD.

use aes_gcm::{
    aead::{Aead, Payload},
    Aes256Gcm, KeyInit, Nonce,
};
use zeroize::Zeroizing;

use crate::{
    crypto::{random_nonce, NONCE_LEN},
    error::Error,
};

/// The broker's root key, from the seal (file, environment, or later a backend).
pub struct RootKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for RootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RootKey(..)")
    }
}

impl RootKey {
    /// Wraps 32 key bytes.
    pub fn new(bytes: Zeroizing<[u8; 32]>) -> Self {
        Self(bytes)
    }

    fn cipher(&self) -> Result<Aes256Gcm, Error> {
        Aes256Gcm::new_from_slice(self.0.as_ref()).map_err(|_| Error::internal("root key length"))
    }

    /// Encrypts a secret for storage; `purpose` is authenticated so values cannot be swapped.
    pub fn seal(&self, purpose: &str, secret: &[u8]) -> Result<Vec<u8>, Error> {
        let nonce = random_nonce();
        let sealed = self
            .cipher()?
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret,
                    aad: purpose.as_bytes(),
                },
            )
            .map_err(|_| Error::internal("sealing failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Decrypts a stored secret; fails if the root key is not the one that sealed it.
    pub fn unseal(&self, purpose: &str, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        if blob.len() < NONCE_LEN {
            return Err(Error::internal("sealed value too short"));
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        self.cipher()?
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: purpose.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| Error::Sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trip_and_purpose_binding() {
        let key = RootKey::new(Zeroizing::new([7u8; 32]));
        let blob = key.seal("server-key", b"secret").unwrap();
        assert_eq!(
            key.unseal("server-key", &blob).unwrap().as_slice(),
            b"secret"
        );
        assert!(key.unseal("kek", &blob).is_err());
        let other = RootKey::new(Zeroizing::new([8u8; 32]));
        assert!(matches!(
            other.unseal("server-key", &blob),
            Err(Error::Sealed)
        ));
    }
}
