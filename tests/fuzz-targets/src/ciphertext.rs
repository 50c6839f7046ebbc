//! `vault:v<N>:<base64>` ciphertexts and signatures (`broker/core/src/engines/transit/ciphertext.rs`),
//! and the envelope payload they carry (`broker/core/src/crypto.rs`).

use keybroker_core::{
    crypto::{Aead, Binding, DataKey, HMAC_KEY_LEN},
    engines::transit::ciphertext,
    KeyId, TenantId,
};

/// Parses `data` as a ciphertext; seals and opens `data` as a plaintext, under the AEAD and
/// the layout its length picks.
pub fn ciphertext(data: &[u8]) {
    let aead = [
        Aead::Aes128Gcm,
        Aead::Aes256Gcm,
        Aead::ChaCha20Poly1305,
        Aead::XChaCha20Poly1305,
    ][data.len() % 4];
    let binding = Binding {
        tenant: TenantId::ROOT,
        key: KeyId::parse("00000000-0000-4000-8000-000000000001").unwrap(),
        version: 1,
    };
    // keybroker's envelope layout (keys derived from a DEK, binding in the AAD), or Vault's
    // (the material used as it is, the caller's AAD alone).
    let key = if (data.len() / 4).is_multiple_of(2) {
        DataKey::derive(&[7; 32], binding, Some(aead), HMAC_KEY_LEN).unwrap()
    } else {
        let material = vec![7; aead.key_len() + HMAC_KEY_LEN];
        DataKey::from_material(&material, binding, Some(aead), HMAC_KEY_LEN).unwrap()
    };
    if let Some(text) = crate::text(data) {
        if let Ok((version, payload)) = ciphertext::parse(text) {
            // Base64 decoding is canonical: formatting gives back the text, but for zeros
            // written before the version number.
            let (written, encoded) = text["vault:v".len()..].split_once(':').unwrap();
            assert_eq!(written.trim_start_matches('0'), version.to_string());
            let formatted = ciphertext::format(version, &payload);
            assert_eq!(formatted, format!("vault:v{version}:{encoded}"));
            assert_eq!(
                ciphertext::parse(&formatted).ok(),
                Some((version, payload.clone()))
            );
            // Whatever the payload, opening it fails cleanly or yields a plaintext.
            let _ = key.open(&payload, b"");
        }
        if let Ok((version, rest)) = ciphertext::split("signature", text) {
            assert!(version > 0);
            assert!(text.ends_with(rest));
        }
    }
    // Any plaintext survives seal → text → parse → open.
    let version = u32::from(data.first().copied().unwrap_or(1)).max(1);
    let sealed = key.seal(data, b"aad").unwrap();
    let (parsed_version, payload) =
        ciphertext::parse(&ciphertext::format(version, &sealed)).unwrap();
    assert_eq!(parsed_version, version);
    assert_eq!(key.open(&payload, b"aad").unwrap().as_slice(), data);
    assert!(key.open(&payload, b"other").is_err());
}
