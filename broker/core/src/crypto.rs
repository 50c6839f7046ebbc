//! Envelope crypto (ARCHITECTURE.md §3): the binding of a ciphertext, the derived data key, and
//! AES-256-GCM with the binding as AAD.
//!
//! The binding is a length-prefixed encoding of (format version, tenant id, key id, key
//! version): immutable ids, never names. The data key is `HKDF-SHA256(DEK, info = binding)`,
//! and the AES-GCM AAD is the binding followed by the caller's `associated_data`. A DEK
//! moved to another key or tenant, or a ciphertext copied there, fails authentication even
//! where the backend's wrap has no AAD of its own.

use aes_gcm::{
    aead::{Aead, AeadInPlace, Payload},
    Aes256Gcm, KeyInit, Nonce,
};
use hkdf::Hkdf;
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::{error::Error, KeyId, TenantId};

/// Version of the binding encoding itself.
pub const BINDING_FORMAT: u8 = 1;
/// Length of an AES-GCM nonce.
pub const NONCE_LEN: usize = 12;
/// Length of an AES-GCM tag.
pub const TAG_LEN: usize = 16;
/// Length of a DEK.
pub const DEK_LEN: usize = 32;

/// Payload format of a key version, recorded per version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadFormat {
    /// `nonce(12) ‖ ciphertext ‖ tag(16)` under the derived data key.
    Envelope,
    /// Whatever the backend returned in direct mode.
    BackendBlob,
}

impl PayloadFormat {
    /// Stored code.
    pub fn code(self) -> u8 {
        match self {
            Self::Envelope => 1,
            Self::BackendBlob => 2,
        }
    }
    /// From the stored code.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Envelope),
            2 => Some(Self::BackendBlob),
            _ => None,
        }
    }
}

/// What a ciphertext is bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding {
    /// Owning tenant.
    pub tenant: TenantId,
    /// Owning key.
    pub key: KeyId,
    /// Key version.
    pub version: u32,
}

impl Binding {
    /// The canonical encoding: each field as `u32 length ‖ bytes`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 * 4 + 1 + 16 + 16 + 4);
        push_field(&mut out, &[BINDING_FORMAT]);
        push_field(&mut out, self.tenant.as_bytes());
        push_field(&mut out, self.key.as_bytes());
        push_field(&mut out, &self.version.to_be_bytes());
        out
    }

    /// The AAD of a data operation: the binding, then the caller's associated data.
    pub fn aad(&self, associated_data: &[u8]) -> Vec<u8> {
        let mut out = self.encode();
        push_field(&mut out, associated_data);
        out
    }
}

fn push_field(out: &mut Vec<u8>, field: &[u8]) {
    // Fields are tiny (ids, versions, caller AAD bounded by the body limit).
    let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(field);
}

/// A fresh random DEK.
pub fn generate_dek() -> Zeroizing<[u8; DEK_LEN]> {
    let mut dek = Zeroizing::new([0u8; DEK_LEN]);
    rand::rngs::OsRng.fill_bytes(dek.as_mut());
    dek
}

/// Random bytes from the OS.
pub fn random_bytes(len: usize) -> Zeroizing<Vec<u8>> {
    let mut bytes = Zeroizing::new(vec![0u8; len]);
    rand::rngs::OsRng.fill_bytes(bytes.as_mut_slice());
    bytes
}

/// A random 96-bit nonce. Drawn from the thread-local CSPRNG (ChaCha, seeded and
/// periodically reseeded from the OS): unpredictable like `OsRng`, without a system call
/// per encryption. Keys and tokens still come from `OsRng`.
pub fn random_nonce() -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    rand::thread_rng().fill_bytes(&mut nonce);
    nonce
}

/// The data key of one key version: AES-256-GCM under `HKDF(DEK, binding)`. Its key schedule
/// is zeroized on drop (aes-gcm's `zeroize` feature).
pub struct DataKey {
    cipher: Aes256Gcm,
    binding: Binding,
    /// The AAD for empty associated data, computed once (the common case).
    bare_aad: Vec<u8>,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("binding", &self.binding)
            .finish_non_exhaustive()
    }
}

impl DataKey {
    /// Derives the data key for `binding` from a DEK.
    pub fn derive(dek: &[u8], binding: Binding) -> Result<Self, Error> {
        if dek.len() != DEK_LEN {
            return Err(Error::internal("unwrapped data key has the wrong length"));
        }
        let mut okm = Zeroizing::new([0u8; 32]);
        Hkdf::<Sha256>::new(None, dek)
            .expand(&binding.encode(), okm.as_mut())
            .map_err(|_| Error::internal("HKDF output length"))?;
        let cipher = Aes256Gcm::new_from_slice(okm.as_ref())
            .map_err(|_| Error::internal("AES key length"))?;
        Ok(Self {
            cipher,
            binding,
            bare_aad: binding.aad(&[]),
        })
    }

    fn with_aad<T>(&self, associated_data: &[u8], f: impl FnOnce(&[u8]) -> T) -> T {
        if associated_data.is_empty() {
            f(&self.bare_aad)
        } else {
            f(&self.binding.aad(associated_data))
        }
    }

    /// Encrypts to `nonce ‖ ciphertext ‖ tag`, in one buffer.
    pub fn seal(&self, plaintext: &[u8], associated_data: &[u8]) -> Result<Vec<u8>, Error> {
        let nonce = random_nonce();
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .with_aad(associated_data, |aad| {
                self.cipher.encrypt_in_place_detached(
                    Nonce::from_slice(&nonce),
                    aad,
                    &mut out[NONCE_LEN..],
                )
            })
            .map_err(|_| Error::internal("AES-GCM encryption failed"))?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Decrypts `nonce ‖ ciphertext ‖ tag`.
    pub fn open(
        &self,
        payload: &[u8],
        associated_data: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        if payload.len() < NONCE_LEN + TAG_LEN {
            return Err(Error::invalid("invalid ciphertext: too short"));
        }
        let (nonce, sealed) = payload.split_at(NONCE_LEN);
        self.with_aad(associated_data, |aad| {
            self.cipher
                .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad })
        })
        .map(Zeroizing::new)
        .map_err(|_| Error::invalid("cipher: message authentication failed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding() -> Binding {
        Binding {
            tenant: TenantId::random(),
            key: KeyId::random(),
            version: 3,
        }
    }

    #[test]
    fn round_trip() {
        let dek = generate_dek();
        let key = DataKey::derive(dek.as_ref(), binding()).unwrap();
        let ct = key.seal(b"hello", b"ad").unwrap();
        assert_eq!(key.open(&ct, b"ad").unwrap().as_slice(), b"hello");
    }

    #[test]
    fn every_binding_field_and_the_associated_data_matter() {
        let dek = generate_dek();
        let original = binding();
        let ct = DataKey::derive(dek.as_ref(), original)
            .unwrap()
            .seal(b"secret", b"ad")
            .unwrap();

        let other_tenant = Binding {
            tenant: TenantId::random(),
            ..original
        };
        let other_key = Binding {
            key: KeyId::random(),
            ..original
        };
        let other_version = Binding {
            version: original.version + 1,
            ..original
        };
        for changed in [other_tenant, other_key, other_version] {
            let key = DataKey::derive(dek.as_ref(), changed).unwrap();
            assert!(
                key.open(&ct, b"ad").is_err(),
                "{changed:?} must not decrypt"
            );
        }
        let key = DataKey::derive(dek.as_ref(), original).unwrap();
        assert!(key.open(&ct, b"other").is_err());
        assert!(key.open(&ct, b"").is_err());
        assert_eq!(key.open(&ct, b"ad").unwrap().as_slice(), b"secret");
    }

    #[test]
    fn binding_alone_matters_even_with_same_aad_bytes() {
        // The AAD is length-prefixed: moving bytes between binding and associated data
        // cannot produce the same AAD.
        let b = binding();
        assert_ne!(b.aad(b"x"), b.aad(b""));
        let mut encoded = b.encode();
        encoded.extend_from_slice(b"x");
        assert_ne!(encoded, b.aad(b""));
    }

    #[test]
    fn tampered_and_truncated_fail_cleanly() {
        let dek = generate_dek();
        let key = DataKey::derive(dek.as_ref(), binding()).unwrap();
        let ct = key.seal(b"hello world", b"").unwrap();
        for len in 0..ct.len() {
            assert!(key.open(&ct[..len], b"").is_err());
        }
        for i in 0..ct.len() {
            let mut bad = ct.clone();
            bad[i] ^= 1;
            assert!(key.open(&bad, b"").is_err());
        }
    }

    #[test]
    fn wrong_dek_length_is_refused() {
        assert!(DataKey::derive(&[0u8; 16], binding()).is_err());
    }
}
