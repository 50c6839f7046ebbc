//! Derived keys (Vault's `derived`, `context` and `convergent_encryption`): the key a
//! `context` selects from a version's key, and convergent encryption's nonce.
//!
//! As Vault's KDF `hkdf_sha256` (`keysutil.Policy.DeriveKey`): `HKDF-SHA256(ikm = the
//! version's encryption key, salt = none, info = context)`, as long as the AEAD's key. A
//! convergent key (Vault's convergent version 3, `EncryptWithFactory`) reads 32 bytes more
//! from the same HKDF, an HMAC key, and the nonce is `HMAC-SHA256(that key, plaintext)`
//! truncated to the AEAD's nonce length, so the same (context, plaintext, version) always
//! gives the same ciphertext. The ciphertext layout does not change (`nonce ‖ ct ‖ tag`).
//!
//! In Vault's layout ([`PayloadFormat::Vault`]: exportable or imported keys) this is Vault's
//! byte for byte. In keybroker's envelope layout the version key is already bound to the
//! tenant, key and version, the AAD starts with the binding, and the convergent nonce also
//! covers the caller's `associated_data` (length-prefixed): Vault's nonce covers the
//! plaintext alone, so the same plaintext under two associated data reuses a GCM nonce with
//! two AADs, and the two tags give away the context key's GHASH key (a forgery). An
//! envelope ciphertext never has to match Vault's, so it does not inherit that.
//!
//! Context keys are not cached: HKDF is two HMACs and the cipher's key schedule, far below
//! a DEK cache look-up's cost in a batch, and an uncached key is zeroized when the request
//! is done instead of living as long as its version's data key.

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::{
    crypto::{DataKey, PayloadFormat},
    error::{Error, Result},
};

/// Length of a convergent key's nonce HMAC key (Vault's `hmacBytes`).
pub const CONVERGENT_HMAC_KEY_LEN: usize = 32;

/// Vault's refusal of an operation on a derived key without a `context`.
pub const MISSING_CONTEXT: &str = "missing 'context' for key derivation; the key was created \
                                   using a derived key, which means additional, per-request \
                                   information must be included in order to perform operations \
                                   with the key";

/// The key one `context` derives from a version's key, and, for a convergent key, the HMAC
/// key of its nonces. Both are zeroized on drop.
pub struct ContextKey {
    key: DataKey,
    nonce_key: Option<Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for ContextKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContextKey")
            .field("key", &self.key)
            .field("convergent", &self.nonce_key.is_some())
            .finish_non_exhaustive()
    }
}

/// The key `context` derives from `version_key` (a version of a derived key); `convergent`
/// also derives the nonce key. An empty `context` is refused with Vault's message.
pub fn context_key(version_key: &DataKey, context: &[u8], convergent: bool) -> Result<ContextKey> {
    if context.is_empty() {
        return Err(Error::invalid(MISSING_CONTEXT));
    }
    let aead = version_key
        .aead()
        .ok_or_else(|| Error::invalid("key type hmac not supported for this operation"))?;
    let key_len = aead.key_len();
    let extra = if convergent {
        CONVERGENT_HMAC_KEY_LEN
    } else {
        0
    };
    let hkdf = Hkdf::<Sha256>::new(None, version_key.key_material());
    let mut okm = Zeroizing::new(vec![0u8; key_len + extra]);
    hkdf.expand(context, &mut okm)
        .map_err(|_| Error::internal("HKDF output length"))?;
    let (key, nonce_key) = okm.split_at(key_len);
    Ok(ContextKey {
        key: version_key.with_key(Zeroizing::new(key.to_vec()))?,
        nonce_key: convergent.then(|| Zeroizing::new(nonce_key.to_vec())),
    })
}

impl ContextKey {
    /// Encrypts to `nonce ‖ ciphertext ‖ tag`: a convergent key under its derived nonce, any
    /// other under a random one.
    pub fn seal(&self, plaintext: &[u8], associated_data: &[u8]) -> Result<Vec<u8>> {
        let Some(nonce_key) = &self.nonce_key else {
            return self.key.seal(plaintext, associated_data);
        };
        let aead = self
            .key
            .aead()
            .ok_or_else(|| Error::internal("context key without an AEAD"))?;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(nonce_key)
            .map_err(|_| Error::internal("HMAC key length"))?;
        if self.key.format() != PayloadFormat::Vault {
            let len = u64::try_from(associated_data.len()).unwrap_or(u64::MAX);
            mac.update(&len.to_be_bytes());
            mac.update(associated_data);
        }
        mac.update(plaintext);
        let sum = Zeroizing::new(mac.finalize().into_bytes());
        let nonce = sum
            .get(..aead.nonce_len())
            .ok_or_else(|| Error::internal("AEAD nonce longer than the HMAC"))?;
        self.key.seal_with_nonce(nonce, plaintext, associated_data)
    }

    /// Decrypts `nonce ‖ ciphertext ‖ tag` (the nonce is read from the payload, convergent
    /// or not).
    pub fn open(&self, payload: &[u8], associated_data: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        self.key.open(payload, associated_data)
    }
}

#[cfg(test)]
mod tests {
    use aes_gcm::{
        aead::{generic_array::GenericArray, Aead as _, Payload},
        Aes256Gcm, KeyInit,
    };

    use super::*;
    use crate::{
        crypto::{generate_dek, Aead, Binding},
        KeyId, TenantId,
    };

    fn binding() -> Binding {
        Binding {
            tenant: TenantId::random(),
            key: KeyId::random(),
            version: 1,
        }
    }

    /// Vault's layout: the version key is the material's first 32 bytes.
    fn vault_key(material: &[u8]) -> DataKey {
        DataKey::from_material(material, binding(), Some(Aead::Aes256Gcm), 32).unwrap()
    }

    /// A known answer, computed apart from this module (Python's `cryptography`: HKDF-SHA256
    /// with no salt, `hmac`, AES-GCM): key bytes 0..32, context "ctx", plaintext "hello",
    /// convergent.
    #[test]
    fn convergent_encryption_matches_a_known_answer() {
        let material: Vec<u8> = (0u8..64).collect();
        let key = vault_key(&material);
        let derived = context_key(&key, b"ctx", true).unwrap();
        let sealed = derived.seal(b"hello", b"").unwrap();
        assert_eq!(hex::encode(&sealed), KNOWN_CONVERGENT_PAYLOAD);
        assert_eq!(derived.open(&sealed, b"").unwrap().as_slice(), b"hello");
    }

    const KNOWN_CONVERGENT_PAYLOAD: &str =
        "9562925dd99b55245fbe78ce42addb499c45ffa3e930b59085c7234b995eccf613";

    /// The same derivation written out with the RustCrypto primitives directly.
    #[test]
    fn the_derivation_is_vaults_hkdf_and_hmac_nonce() {
        let material: Vec<u8> = (100u8..164).collect();
        let key = vault_key(&material);
        let mut okm = [0u8; 64];
        Hkdf::<Sha256>::new(None, &material[..32])
            .expand(b"tenant-7", &mut okm)
            .unwrap();
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&okm[32..]).unwrap();
        mac.update(b"plaintext");
        let sum = mac.finalize().into_bytes();
        let nonce = &sum[..12];
        let cipher = Aes256Gcm::new_from_slice(&okm[..32]).unwrap();
        let mut expected = nonce.to_vec();
        expected.extend(
            cipher
                .encrypt(
                    GenericArray::from_slice(nonce),
                    Payload {
                        msg: b"plaintext",
                        aad: b"ad",
                    },
                )
                .unwrap(),
        );
        let derived = context_key(&key, b"tenant-7", true).unwrap();
        assert_eq!(derived.seal(b"plaintext", b"ad").unwrap(), expected);
        // Not convergent: the same key (HKDF's output is a prefix), a random nonce.
        let plain = context_key(&key, b"tenant-7", false).unwrap();
        let sealed = plain.seal(b"plaintext", b"ad").unwrap();
        assert_ne!(sealed, expected);
        assert_eq!(
            plain.open(&expected, b"ad").unwrap().as_slice(),
            b"plaintext"
        );
        assert_eq!(
            derived.open(&sealed, b"ad").unwrap().as_slice(),
            b"plaintext"
        );
    }

    #[test]
    fn a_missing_context_is_refused_with_vaults_message() {
        let key = vault_key(&[7u8; 64]);
        let error = context_key(&key, b"", false).unwrap_err();
        assert!(matches!(error, Error::InvalidRequest(_)), "{error:?}");
        assert_eq!(error.to_string(), MISSING_CONTEXT);
    }

    #[test]
    fn each_context_has_its_own_key() {
        let dek = generate_dek();
        let key = DataKey::derive(dek.as_ref(), binding(), Some(Aead::Aes256Gcm), 32).unwrap();
        let one = context_key(&key, b"one", false).unwrap();
        let two = context_key(&key, b"two", false).unwrap();
        let sealed = one.seal(b"secret", b"").unwrap();
        assert_eq!(one.open(&sealed, b"").unwrap().as_slice(), b"secret");
        assert!(two.open(&sealed, b"").is_err());
        // Nor does the version key itself open it.
        assert!(key.open(&sealed, b"").is_err());
    }

    #[test]
    fn convergent_is_deterministic_per_context_plaintext_and_associated_data() {
        let dek = generate_dek();
        for aead in [
            Aead::Aes128Gcm,
            Aead::Aes256Gcm,
            Aead::ChaCha20Poly1305,
            Aead::XChaCha20Poly1305,
        ] {
            let key = DataKey::derive(dek.as_ref(), binding(), Some(aead), 32).unwrap();
            let one = context_key(&key, b"one", true).unwrap();
            let sealed = one.seal(b"secret", b"ad").unwrap();
            assert_eq!(sealed.len(), aead.nonce_len() + 6 + 16, "{aead:?}");
            assert_eq!(one.seal(b"secret", b"ad").unwrap(), sealed, "{aead:?}");
            assert_ne!(one.seal(b"secret!", b"ad").unwrap(), sealed, "{aead:?}");
            let two = context_key(&key, b"two", true).unwrap();
            assert_ne!(two.seal(b"secret", b"ad").unwrap(), sealed, "{aead:?}");
            // Envelope layout: other associated data, another nonce.
            let other = one.seal(b"secret", b"other").unwrap();
            assert_ne!(
                other[..aead.nonce_len()],
                sealed[..aead.nonce_len()],
                "{aead:?}"
            );
            assert_eq!(one.open(&sealed, b"ad").unwrap().as_slice(), b"secret");
            assert!(one.open(&sealed, b"other").is_err(), "{aead:?}");
        }
    }

    #[test]
    fn vaults_layout_keeps_vaults_nonce_whatever_the_associated_data() {
        let key = vault_key(&[9u8; 64]);
        let derived = context_key(&key, b"ctx", true).unwrap();
        let one = derived.seal(b"secret", b"a").unwrap();
        let two = derived.seal(b"secret", b"b").unwrap();
        assert_eq!(one[..12], two[..12]);
        assert_ne!(one, two);
    }

    #[test]
    fn an_hmac_key_cannot_be_derived_for_encryption() {
        let key = DataKey::from_material(&[1u8; 32], binding(), None, 32).unwrap();
        assert!(context_key(&key, b"ctx", false).is_err());
    }
}
