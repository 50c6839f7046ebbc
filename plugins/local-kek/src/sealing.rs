//! AES-256-GCM sealing under keys derived from the KEK ring, into [`crate::blob`]s.
//!
//! Both kinds of key use it: a symmetric reference seals the caller's data (with the
//! caller's AAD), an asymmetric reference seals its own private key (with the reference's
//! header as AAD). The derivation input `context` is the symmetric reference itself, or the
//! asymmetric reference's header (`a/<tenant_id>/<key_type>`); the two never collide, since
//! one starts with `t/` and the other with `a/`.

use aes_gcm::{
    aead::{AeadInPlace, KeyInit},
    Aes256Gcm,
};
use hkdf::Hkdf;
use keybroker_plugin_abi::PluginError;
use rand::{rngs::OsRng, RngCore};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::blob::{self, NONCE_LEN};
use crate::config::KEK_LEN;

/// HKDF `info` prefix; the derivation context follows it.
const DERIVATION_INFO: &[u8] = b"keybroker/local-kek/v1";

/// One KEK of the ring. The key is wiped when dropped.
pub(crate) struct Kek {
    pub(crate) id: String,
    pub(crate) key: Zeroizing<[u8; KEK_LEN]>,
}

/// Seals `plaintext` under the key derived from `kek` and `context`, into a blob naming the
/// KEK.
pub(crate) fn seal(
    kek: &Kek,
    context: &str,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, PluginError> {
    let cipher = cipher_for(kek, context)?;
    // The plaintext is copied once, into the buffer that becomes the ciphertext; it is
    // sized exactly so it never reallocates and wiped if sealing fails.
    let mut out = Zeroizing::new(Vec::with_capacity(blob::sealed_len(
        &kek.id,
        plaintext.len(),
    )));
    blob::write_header(&mut out, &kek.id, nonce)?;
    let body_start = out.len();
    out.extend_from_slice(plaintext);
    let body = out
        .get_mut(body_start..)
        .ok_or_else(|| PluginError::internal("ciphertext buffer too short"))?;
    let tag = cipher
        .encrypt_in_place_detached(nonce.into(), aad, body)
        .map_err(|_| PluginError::internal("encryption failed"))?;
    out.extend_from_slice(&tag);
    Ok(std::mem::take(&mut *out))
}

/// Opens a blob made by [`seal`] with the same `context` and `aad`, under the KEK of `ring`
/// it names. Every failure is `INVALID_CIPHERTEXT`.
pub(crate) fn open(
    ring: &[Kek],
    context: &str,
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, PluginError> {
    let parsed = blob::parse(sealed)?;
    let kek = ring
        .iter()
        .find(|kek| kek.id == parsed.kek_id)
        .ok_or_else(|| {
            PluginError::invalid_ciphertext(format!(
                "unknown KEK id {:?} (was it removed from the configuration?)",
                parsed.kek_id
            ))
        })?;
    let cipher = cipher_for(kek, context)?;
    // On failure the buffer holds unauthenticated output: it is wiped on drop.
    let mut buffer = Zeroizing::new(parsed.ciphertext.to_vec());
    cipher
        .decrypt_in_place_detached(parsed.nonce.into(), aad, &mut buffer, parsed.tag.into())
        .map_err(|_| PluginError::invalid_ciphertext("message authentication failed"))?;
    Ok(buffer)
}

/// The broker's IV when it gives one, a random nonce when it does not.
pub(crate) fn choose_nonce(iv: &[u8]) -> Result<[u8; NONCE_LEN], PluginError> {
    if let Ok(iv) = <[u8; NONCE_LEN]>::try_from(iv) {
        return Ok(iv);
    }
    if !iv.is_empty() {
        return Err(PluginError::invalid_request(format!(
            "iv must be {NONCE_LEN} bytes or empty, not {} bytes",
            iv.len()
        )));
    }
    let mut nonce = [0u8; NONCE_LEN];
    OsRng
        .try_fill_bytes(&mut nonce)
        .map_err(|_| PluginError::internal("the system random number generator failed"))?;
    Ok(nonce)
}

/// AES-256-GCM under the key derived from `kek` for `context`.
fn cipher_for(kek: &Kek, context: &str) -> Result<Aes256Gcm, PluginError> {
    let mut key = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(None, kek.key.as_slice())
        .expand_multi_info(&[DERIVATION_INFO, context.as_bytes()], key.as_mut_slice())
        .map_err(|_| PluginError::internal("key derivation failed"))?;
    Ok(Aes256Gcm::new((&*key).into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keybroker_plugin_abi::ErrorKind;

    fn kek(id: &str, byte: u8) -> Kek {
        Kek {
            id: id.to_owned(),
            key: Zeroizing::new([byte; KEK_LEN]),
        }
    }

    #[test]
    fn context_and_aad_both_bind() {
        let ring = [kek("k1", 1)];
        let nonce = choose_nonce(&[]).unwrap();
        let sealed = seal(&ring[0], "a/acme/rsa-2048", &nonce, b"aad", b"secret").unwrap();
        assert_eq!(
            *open(&ring, "a/acme/rsa-2048", b"aad", &sealed).unwrap(),
            b"secret"
        );
        for (context, aad) in [
            ("a/globex/rsa-2048", &b"aad"[..]),
            ("a/acme/rsa-3072", b"aad"),
            ("a/acme/rsa-2048", b"other"),
        ] {
            let error = open(&ring, context, aad, &sealed).unwrap_err();
            assert_eq!(error.kind, ErrorKind::INVALID_CIPHERTEXT, "{context}");
        }
    }
}
