//! Envelope crypto (ARCHITECTURE.md §3): the binding of a ciphertext, the derived data key, and
//! the key type's AEAD (AES-GCM, ChaCha20-Poly1305, XChaCha20-Poly1305) with the binding as
//! AAD.
//!
//! The binding is a length-prefixed encoding of (format version, tenant id, key id, key
//! version): immutable ids, never names. The data key is `HKDF-SHA256(DEK, info = binding)`,
//! as long as the AEAD's key, and the AEAD's AAD is the binding followed by the caller's
//! `associated_data`. A DEK moved to another key or tenant, or a ciphertext copied there,
//! fails authentication even where the backend's wrap has no AAD of its own.

use aes_gcm::{
    aead::{generic_array::GenericArray, AeadCore, AeadInPlace, Tag},
    Aes128Gcm, Aes256Gcm, KeyInit,
};
use chacha20poly1305::{ChaCha20Poly1305, XChaCha20Poly1305};
use hkdf::Hkdf;
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::{error::Error, KeyId, TenantId};

/// Version of the binding encoding itself.
pub const BINDING_FORMAT: u8 = 1;
/// Length of an AES-GCM nonce.
pub const NONCE_LEN: usize = 12;
/// Length of the tag of every AEAD here.
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

/// The AEAD an envelope key version seals with, by its transit key type (Vault's
/// `aes128-gcm96`, `aes256-gcm96`, `chacha20-poly1305`, `xchacha20-poly1305`). The payload is
/// `nonce ‖ ciphertext ‖ tag(16)`, as Vault lays it out for each of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aead {
    /// AES-128-GCM, 96-bit nonce.
    Aes128Gcm,
    /// AES-256-GCM, 96-bit nonce.
    Aes256Gcm,
    /// ChaCha20-Poly1305 (RFC 8439), 96-bit nonce.
    ChaCha20Poly1305,
    /// XChaCha20-Poly1305, 192-bit nonce.
    XChaCha20Poly1305,
}

impl Aead {
    /// Length of the key.
    pub fn key_len(self) -> usize {
        match self {
            Self::Aes128Gcm => 16,
            Self::Aes256Gcm | Self::ChaCha20Poly1305 | Self::XChaCha20Poly1305 => 32,
        }
    }

    /// Length of the nonce at the front of a payload.
    pub fn nonce_len(self) -> usize {
        match self {
            Self::XChaCha20Poly1305 => 24,
            Self::Aes128Gcm | Self::Aes256Gcm | Self::ChaCha20Poly1305 => NONCE_LEN,
        }
    }
}

/// A keyed AEAD (the cipher types hold their key schedules zeroized on drop).
// Unboxed: a data key lives once, in an `Arc` in the DEK cache, and AES-256-GCM (the largest
// variant) is the hot path, which a box would add a pointer chase to.
#[allow(clippy::large_enum_variant)]
enum Cipher {
    Aes128Gcm(Aes128Gcm),
    Aes256Gcm(Aes256Gcm),
    ChaCha20Poly1305(ChaCha20Poly1305),
    XChaCha20Poly1305(XChaCha20Poly1305),
}

impl Cipher {
    fn new(aead: Aead, key: &[u8]) -> Result<Self, Error> {
        let wrong = |_| Error::internal("AEAD key length");
        Ok(match aead {
            Aead::Aes128Gcm => Self::Aes128Gcm(Aes128Gcm::new_from_slice(key).map_err(wrong)?),
            Aead::Aes256Gcm => Self::Aes256Gcm(Aes256Gcm::new_from_slice(key).map_err(wrong)?),
            Aead::ChaCha20Poly1305 => {
                Self::ChaCha20Poly1305(ChaCha20Poly1305::new_from_slice(key).map_err(wrong)?)
            }
            Aead::XChaCha20Poly1305 => {
                Self::XChaCha20Poly1305(XChaCha20Poly1305::new_from_slice(key).map_err(wrong)?)
            }
        })
    }

    /// Encrypts `buffer` in place under `nonce` (of the AEAD's length); the tag.
    fn seal(&self, nonce: &[u8], aad: &[u8], buffer: &mut [u8]) -> Result<[u8; TAG_LEN], ()> {
        fn with<C: AeadInPlace>(
            cipher: &C,
            nonce: &[u8],
            aad: &[u8],
            buffer: &mut [u8],
        ) -> Result<[u8; TAG_LEN], ()> {
            let tag = cipher
                .encrypt_in_place_detached(GenericArray::from_slice(nonce), aad, buffer)
                .map_err(|_| ())?;
            tag.as_slice().try_into().map_err(|_| ())
        }
        match self {
            Self::Aes128Gcm(c) => with(c, nonce, aad, buffer),
            Self::Aes256Gcm(c) => with(c, nonce, aad, buffer),
            Self::ChaCha20Poly1305(c) => with(c, nonce, aad, buffer),
            Self::XChaCha20Poly1305(c) => with(c, nonce, aad, buffer),
        }
    }

    /// Decrypts `buffer` in place under `nonce` and checks `tag`.
    fn open(&self, nonce: &[u8], aad: &[u8], buffer: &mut [u8], tag: &[u8]) -> Result<(), ()> {
        fn with<C: AeadInPlace + AeadCore>(
            cipher: &C,
            nonce: &[u8],
            aad: &[u8],
            buffer: &mut [u8],
            tag: &[u8],
        ) -> Result<(), ()> {
            let tag: &Tag<C> = GenericArray::from_slice(tag);
            cipher
                .decrypt_in_place_detached(GenericArray::from_slice(nonce), aad, buffer, tag)
                .map_err(|_| ())
        }
        match self {
            Self::Aes128Gcm(c) => with(c, nonce, aad, buffer, tag),
            Self::Aes256Gcm(c) => with(c, nonce, aad, buffer, tag),
            Self::ChaCha20Poly1305(c) => with(c, nonce, aad, buffer, tag),
            Self::XChaCha20Poly1305(c) => with(c, nonce, aad, buffer, tag),
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

/// The data key of one key version: the key type's AEAD under `HKDF(DEK, binding)`. Its key
/// schedule is zeroized on drop (aes-gcm's `zeroize` feature; chacha20poly1305 always zeroizes).
pub struct DataKey {
    cipher: Cipher,
    aead: Aead,
    binding: Binding,
    /// The AAD for empty associated data, computed once (the common case).
    bare_aad: Vec<u8>,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("aead", &self.aead)
            .field("binding", &self.binding)
            .finish_non_exhaustive()
    }
}

impl DataKey {
    /// Derives the data key for `binding` from a DEK, for `aead`.
    pub fn derive(dek: &[u8], binding: Binding, aead: Aead) -> Result<Self, Error> {
        if dek.len() != DEK_LEN {
            return Err(Error::internal("unwrapped data key has the wrong length"));
        }
        let mut okm = Zeroizing::new([0u8; 32]);
        let okm = &mut okm[..aead.key_len()];
        Hkdf::<Sha256>::new(None, dek)
            .expand(&binding.encode(), okm)
            .map_err(|_| Error::internal("HKDF output length"))?;
        Ok(Self {
            cipher: Cipher::new(aead, okm)?,
            aead,
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
        let nonce_len = self.aead.nonce_len();
        let mut out = vec![0u8; nonce_len];
        out.reserve(plaintext.len() + TAG_LEN);
        rand::thread_rng().fill_bytes(&mut out);
        out.extend_from_slice(plaintext);
        let (nonce, body) = out.split_at_mut(nonce_len);
        let tag = self
            .with_aad(associated_data, |aad| self.cipher.seal(nonce, aad, body))
            .map_err(|()| Error::internal("AEAD encryption failed"))?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Decrypts `nonce ‖ ciphertext ‖ tag`.
    pub fn open(
        &self,
        payload: &[u8],
        associated_data: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let nonce_len = self.aead.nonce_len();
        if payload.len() < nonce_len + TAG_LEN {
            return Err(Error::invalid("invalid ciphertext: too short"));
        }
        let (nonce, sealed) = payload.split_at(nonce_len);
        let (body, tag) = sealed.split_at(sealed.len() - TAG_LEN);
        let mut plaintext = Zeroizing::new(body.to_vec());
        self.with_aad(associated_data, |aad| {
            self.cipher.open(nonce, aad, &mut plaintext, tag)
        })
        .map_err(|()| Error::invalid("cipher: message authentication failed"))?;
        Ok(plaintext)
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
        let key = DataKey::derive(dek.as_ref(), binding(), Aead::Aes256Gcm).unwrap();
        let ct = key.seal(b"hello", b"ad").unwrap();
        assert_eq!(key.open(&ct, b"ad").unwrap().as_slice(), b"hello");
    }

    #[test]
    fn every_binding_field_and_the_associated_data_matter() {
        let dek = generate_dek();
        let original = binding();
        let ct = DataKey::derive(dek.as_ref(), original, Aead::Aes256Gcm)
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
            let key = DataKey::derive(dek.as_ref(), changed, Aead::Aes256Gcm).unwrap();
            assert!(
                key.open(&ct, b"ad").is_err(),
                "{changed:?} must not decrypt"
            );
        }
        let key = DataKey::derive(dek.as_ref(), original, Aead::Aes256Gcm).unwrap();
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

    const AEADS: [Aead; 4] = [
        Aead::Aes128Gcm,
        Aead::Aes256Gcm,
        Aead::ChaCha20Poly1305,
        Aead::XChaCha20Poly1305,
    ];

    /// Each AEAD seals `nonce ‖ ciphertext ‖ tag` with its own nonce length, opens what it
    /// sealed, and nothing another AEAD sealed under the same DEK and binding.
    #[test]
    fn every_aead_round_trips_with_its_layout_and_only_its_own() {
        let dek = generate_dek();
        let bound = binding();
        let sealed: Vec<Vec<u8>> = AEADS
            .iter()
            .map(|&aead| {
                let key = DataKey::derive(dek.as_ref(), bound, aead).unwrap();
                let ct = key.seal(b"hello", b"ad").unwrap();
                assert_eq!(ct.len(), aead.nonce_len() + 5 + TAG_LEN, "{aead:?}");
                assert_eq!(key.open(&ct, b"ad").unwrap().as_slice(), b"hello");
                assert!(key.open(&ct, b"other").is_err(), "{aead:?}");
                // Two seals of the same plaintext differ (fresh nonces).
                assert_ne!(key.seal(b"hello", b"ad").unwrap(), ct, "{aead:?}");
                ct
            })
            .collect();
        for (i, &aead) in AEADS.iter().enumerate() {
            let key = DataKey::derive(dek.as_ref(), bound, aead).unwrap();
            for (j, ct) in sealed.iter().enumerate() {
                assert_eq!(key.open(ct, b"ad").is_ok(), i == j, "{aead:?} on {j}");
            }
        }
    }

    #[test]
    fn every_aead_refuses_tampered_and_truncated_payloads() {
        let dek = generate_dek();
        for aead in AEADS {
            let key = DataKey::derive(dek.as_ref(), binding(), aead).unwrap();
            let ct = key.seal(b"hello world", b"").unwrap();
            for len in 0..ct.len() {
                assert!(key.open(&ct[..len], b"").is_err(), "{aead:?} {len}");
            }
            for i in 0..ct.len() {
                let mut bad = ct.clone();
                bad[i] ^= 1;
                assert!(key.open(&bad, b"").is_err(), "{aead:?} {i}");
            }
        }
    }

    #[test]
    fn wrong_dek_length_is_refused() {
        assert!(DataKey::derive(&[0u8; 16], binding(), Aead::Aes256Gcm).is_err());
    }
}
