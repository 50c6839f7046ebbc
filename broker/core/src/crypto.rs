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
/// Length of a version's HMAC key (Vault's), except an `hmac` key's, which has its type's
/// `key_size`.
pub const HMAC_KEY_LEN: usize = 32;
/// Label of the HMAC key's derivation from a DEK, apart from the data key's.
const HMAC_LABEL: &[u8] = b"keybroker transit hmac key";

/// Payload format of a key version, recorded per version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadFormat {
    /// `nonce(12) ‖ ciphertext ‖ tag(16)` under the derived data key.
    Envelope,
    /// Whatever the backend returned in direct mode.
    BackendBlob,
    /// Vault's own: `nonce ‖ ciphertext ‖ tag` under the version's key used as it is, with
    /// the caller's associated data alone as AAD, so that the key means the same in Vault
    /// and OpenBao. The backend wraps the version's material, `key ‖ hmac key` (an `hmac`
    /// key: the HMAC key alone). Versions of keys that are exportable, may be backed up in
    /// plaintext, or were imported are made this way (local KEK only: see
    /// [`DataKey::from_material`]).
    Vault,
}

impl PayloadFormat {
    /// Stored code.
    pub fn code(self) -> u8 {
        match self {
            Self::Envelope => 1,
            Self::BackendBlob => 2,
            Self::Vault => 3,
        }
    }
    /// From the stored code.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Envelope),
            2 => Some(Self::BackendBlob),
            3 => Some(Self::Vault),
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

/// The keys of one key version: the key type's AEAD (none for an `hmac` key) and the
/// version's HMAC key. Everything is zeroized on drop (aes-gcm's `zeroize` feature;
/// chacha20poly1305 always zeroizes; the raw keys are `Zeroizing`).
///
/// Two layouts ([`PayloadFormat`]): keybroker's envelope, where both keys are derived from
/// the DEK the backend wraps and every AAD starts with the binding, and Vault's, where the
/// wrapped material is the keys themselves and the AAD is the caller's alone.
pub struct DataKey {
    cipher: Option<Cipher>,
    aead: Option<Aead>,
    binding: Binding,
    format: PayloadFormat,
    /// The AAD for empty associated data, computed once (the common case).
    bare_aad: Vec<u8>,
    /// The encryption key the cipher was made from (empty for an `hmac` key).
    key: Zeroizing<Vec<u8>>,
    /// The version's HMAC key.
    hmac_key: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("aead", &self.aead)
            .field("binding", &self.binding)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl DataKey {
    /// The version's keys in keybroker's envelope layout, derived from a DEK: the data key
    /// is `HKDF-SHA256(DEK, info = binding)` (as long as `aead`'s key), the HMAC key
    /// `HKDF-SHA256(DEK, info = binding ‖ label)` of `hmac_len` bytes.
    pub fn derive(
        dek: &[u8],
        binding: Binding,
        aead: Option<Aead>,
        hmac_len: usize,
    ) -> Result<Self, Error> {
        if dek.len() != DEK_LEN {
            return Err(Error::internal("unwrapped data key has the wrong length"));
        }
        let hkdf = Hkdf::<Sha256>::new(None, dek);
        let info = binding.encode();
        let mut key = Zeroizing::new(vec![0u8; aead.map_or(0, Aead::key_len)]);
        hkdf.expand(&info, &mut key)
            .map_err(|_| Error::internal("HKDF output length"))?;
        let mut hmac_info = info;
        push_field(&mut hmac_info, HMAC_LABEL);
        let mut hmac_key = Zeroizing::new(vec![0u8; hmac_len]);
        hkdf.expand(&hmac_info, &mut hmac_key)
            .map_err(|_| Error::internal("HKDF output length"))?;
        Self::new(aead, binding, PayloadFormat::Envelope, key, hmac_key)
    }

    /// The version's keys in Vault's layout, from the material the backend wrapped:
    /// `key ‖ hmac key` (`aead`'s key length, then `hmac_len` bytes).
    pub fn from_material(
        material: &[u8],
        binding: Binding,
        aead: Option<Aead>,
        hmac_len: usize,
    ) -> Result<Self, Error> {
        let key_len = aead.map_or(0, Aead::key_len);
        if material.len() != key_len + hmac_len {
            return Err(Error::internal(
                "unwrapped key material has the wrong length",
            ));
        }
        let (key, hmac_key) = material.split_at(key_len);
        Self::new(
            aead,
            binding,
            PayloadFormat::Vault,
            Zeroizing::new(key.to_vec()),
            Zeroizing::new(hmac_key.to_vec()),
        )
    }

    fn new(
        aead: Option<Aead>,
        binding: Binding,
        format: PayloadFormat,
        key: Zeroizing<Vec<u8>>,
        hmac_key: Zeroizing<Vec<u8>>,
    ) -> Result<Self, Error> {
        let cipher = aead.map(|aead| Cipher::new(aead, &key)).transpose()?;
        let bare_aad = match format {
            PayloadFormat::Vault => Vec::new(),
            PayloadFormat::Envelope | PayloadFormat::BackendBlob => binding.aad(&[]),
        };
        Ok(Self {
            cipher,
            aead,
            binding,
            format,
            bare_aad,
            key,
            hmac_key,
        })
    }

    /// A key of the same layout and binding whose encryption key is `key` (a key derived
    /// from this one, for a `context`), with no HMAC key of its own.
    pub fn with_key(&self, key: Zeroizing<Vec<u8>>) -> Result<Self, Error> {
        Self::new(
            self.aead,
            self.binding,
            self.format,
            key,
            Zeroizing::new(Vec::new()),
        )
    }

    /// The layout this key seals in.
    pub fn format(&self) -> PayloadFormat {
        self.format
    }

    /// The AEAD, `None` for an `hmac` key.
    pub fn aead(&self) -> Option<Aead> {
        self.aead
    }

    /// The encryption key itself (empty for an `hmac` key).
    pub fn key_material(&self) -> &[u8] {
        &self.key
    }

    /// The version's HMAC key.
    pub fn hmac_key(&self) -> &[u8] {
        &self.hmac_key
    }

    fn with_aad<T>(&self, associated_data: &[u8], f: impl FnOnce(&[u8]) -> T) -> T {
        if associated_data.is_empty() {
            f(&self.bare_aad)
        } else if self.format == PayloadFormat::Vault {
            f(associated_data)
        } else {
            f(&self.binding.aad(associated_data))
        }
    }

    fn cipher(&self) -> Result<(&Cipher, Aead), Error> {
        match (&self.cipher, self.aead) {
            (Some(cipher), Some(aead)) => Ok((cipher, aead)),
            _ => Err(Error::invalid(
                "key type hmac not supported for this operation",
            )),
        }
    }

    /// Encrypts to `nonce ‖ ciphertext ‖ tag`, in one buffer, under a random nonce.
    pub fn seal(&self, plaintext: &[u8], associated_data: &[u8]) -> Result<Vec<u8>, Error> {
        let (_, aead) = self.cipher()?;
        let mut nonce = [0u8; 24];
        let nonce = &mut nonce[..aead.nonce_len()];
        rand::thread_rng().fill_bytes(nonce);
        self.seal_with_nonce(nonce, plaintext, associated_data)
    }

    /// Encrypts to `nonce ‖ ciphertext ‖ tag` under `nonce` (of the AEAD's nonce length),
    /// which the caller makes unique (convergent encryption derives it from the plaintext).
    pub fn seal_with_nonce(
        &self,
        nonce: &[u8],
        plaintext: &[u8],
        associated_data: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let (cipher, aead) = self.cipher()?;
        let nonce_len = aead.nonce_len();
        if nonce.len() != nonce_len {
            return Err(Error::internal("AEAD nonce length"));
        }
        let mut out = Vec::with_capacity(nonce_len + plaintext.len() + TAG_LEN);
        out.extend_from_slice(nonce);
        out.extend_from_slice(plaintext);
        let (nonce, body) = out.split_at_mut(nonce_len);
        let tag = self
            .with_aad(associated_data, |aad| cipher.seal(nonce, aad, body))
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
        let (cipher, aead) = self.cipher()?;
        let nonce_len = aead.nonce_len();
        if payload.len() < nonce_len + TAG_LEN {
            return Err(Error::invalid("invalid ciphertext: too short"));
        }
        let (nonce, sealed) = payload.split_at(nonce_len);
        let (body, tag) = sealed.split_at(sealed.len() - TAG_LEN);
        let mut plaintext = Zeroizing::new(body.to_vec());
        self.with_aad(associated_data, |aad| {
            cipher.open(nonce, aad, &mut plaintext, tag)
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
        let key =
            DataKey::derive(dek.as_ref(), binding(), Some(Aead::Aes256Gcm), HMAC_KEY_LEN).unwrap();
        let ct = key.seal(b"hello", b"ad").unwrap();
        assert_eq!(key.open(&ct, b"ad").unwrap().as_slice(), b"hello");
    }

    #[test]
    fn every_binding_field_and_the_associated_data_matter() {
        let dek = generate_dek();
        let original = binding();
        let ct = DataKey::derive(dek.as_ref(), original, Some(Aead::Aes256Gcm), HMAC_KEY_LEN)
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
            let key = DataKey::derive(dek.as_ref(), changed, Some(Aead::Aes256Gcm), HMAC_KEY_LEN)
                .unwrap();
            assert!(
                key.open(&ct, b"ad").is_err(),
                "{changed:?} must not decrypt"
            );
        }
        let key =
            DataKey::derive(dek.as_ref(), original, Some(Aead::Aes256Gcm), HMAC_KEY_LEN).unwrap();
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
                let key = DataKey::derive(dek.as_ref(), bound, Some(aead), HMAC_KEY_LEN).unwrap();
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
            let key = DataKey::derive(dek.as_ref(), bound, Some(aead), HMAC_KEY_LEN).unwrap();
            for (j, ct) in sealed.iter().enumerate() {
                assert_eq!(key.open(ct, b"ad").is_ok(), i == j, "{aead:?} on {j}");
            }
        }
    }

    #[test]
    fn every_aead_refuses_tampered_and_truncated_payloads() {
        let dek = generate_dek();
        for aead in AEADS {
            let key = DataKey::derive(dek.as_ref(), binding(), Some(aead), HMAC_KEY_LEN).unwrap();
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
        assert!(
            DataKey::derive(&[0u8; 16], binding(), Some(Aead::Aes256Gcm), HMAC_KEY_LEN).is_err()
        );
    }

    #[test]
    fn vault_layout_uses_the_material_as_it_is_with_the_callers_aad_alone() {
        // What Vault's AES-GCM makes with the same key opens here, and the other way round.
        let material: Vec<u8> = (0u8..64).collect();
        let key = DataKey::from_material(&material, binding(), Some(Aead::Aes256Gcm), 32).unwrap();
        assert_eq!(key.format(), PayloadFormat::Vault);
        assert_eq!(key.key_material(), &material[..32]);
        assert_eq!(key.hmac_key(), &material[32..]);
        let plain = Aes256Gcm::new_from_slice(&material[..32]).unwrap();
        let nonce = [9u8; NONCE_LEN];
        let mut theirs = nonce.to_vec();
        theirs.extend(
            aes_gcm::aead::Aead::encrypt(
                &plain,
                GenericArray::from_slice(&nonce),
                aes_gcm::aead::Payload {
                    msg: b"hello",
                    aad: b"ad",
                },
            )
            .unwrap(),
        );
        assert_eq!(key.open(&theirs, b"ad").unwrap().as_slice(), b"hello");
        assert!(key.open(&theirs, b"").is_err());
        let ours = key.seal_with_nonce(&nonce, b"hello", b"ad").unwrap();
        assert_eq!(ours, theirs);
        // The wrong material length is refused; an hmac key has no cipher.
        assert!(
            DataKey::from_material(&material[..63], binding(), Some(Aead::Aes256Gcm), 32).is_err()
        );
        let hmac = DataKey::from_material(&material[..48], binding(), None, 48).unwrap();
        assert_eq!(hmac.hmac_key(), &material[..48]);
        assert!(hmac.seal(b"x", b"").is_err());
    }

    #[test]
    fn the_envelope_hmac_key_is_derived_apart_from_the_data_key_and_bound() {
        let dek = generate_dek();
        let original = binding();
        let key = DataKey::derive(dek.as_ref(), original, Some(Aead::Aes256Gcm), 32).unwrap();
        assert_eq!(key.format(), PayloadFormat::Envelope);
        assert_eq!(key.hmac_key().len(), 32);
        assert_ne!(key.hmac_key(), key.key_material());
        let moved = Binding {
            version: 4,
            ..original
        };
        let other = DataKey::derive(dek.as_ref(), moved, Some(Aead::Aes256Gcm), 32).unwrap();
        assert_ne!(key.hmac_key(), other.hmac_key());
        let long = DataKey::derive(dek.as_ref(), original, None, 512).unwrap();
        assert_eq!(long.hmac_key().len(), 512);
        assert!(long.key_material().is_empty());
    }
}
