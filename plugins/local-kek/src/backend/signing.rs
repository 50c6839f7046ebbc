//! Asymmetric keys of [`LocalKek`]: creation, signing, verification, public keys, and
//! decryption with RSA keys.
//!
//! Every operation checks the reference's owner first, then the request (so a malformed
//! request costs no decryption), then opens the sealed private key, or takes it from the
//! cache of parsed keys.

use std::sync::Arc;

use keybroker_plugin_abi::{DecryptRequest, ErrorKind, PluginError, SignRequest, VerifyRequest};
use zeroize::Zeroizing;

use super::{LocalKek, KEY_TYPE};
use crate::asymmetric::{KeyType, PrivateKey, Scheme};
use crate::reference::{self, Asymmetric, Reference};
use crate::sealing;

impl LocalKek {
    /// Generates a private key of `key_type`, seals it under the active KEK and returns the
    /// self-contained reference.
    pub(super) fn create_signing_key(
        &self,
        tenant_id: &str,
        key_type: KeyType,
    ) -> Result<String, PluginError> {
        self.seal_signing_key(tenant_id, key_type, PrivateKey::generate(key_type)?)
    }

    /// Takes in a private key (PKCS #8 DER) of exactly `key_type` as a new key of the
    /// tenant, sealed like one it made (`capability::PRIVATE_KEY_TRANSFER`).
    pub(super) fn import_signing_key(
        &self,
        tenant_id: &str,
        key_type: KeyType,
        pkcs8: &[u8],
    ) -> Result<String, PluginError> {
        let key = PrivateKey::import_pkcs8(key_type, pkcs8)?;
        self.seal_signing_key(tenant_id, key_type, key)
    }

    /// The private key of one of the tenant's asymmetric keys, PKCS #8 DER
    /// (`capability::PRIVATE_KEY_TRANSFER`).
    pub(super) fn export_signing_key(
        &self,
        tenant_id: &str,
        key_reference: &str,
    ) -> Result<Zeroizing<Vec<u8>>, PluginError> {
        let key = asymmetric(tenant_id, key_reference, "private key export")?;
        self.private_key(key_reference, &key)?.to_pkcs8()
    }

    /// Seals `key` under the active KEK and returns the self-contained reference.
    fn seal_signing_key(
        &self,
        tenant_id: &str,
        key_type: KeyType,
        key: PrivateKey,
    ) -> Result<String, PluginError> {
        let header = reference::asymmetric_header(tenant_id, key_type)?;
        let pkcs8 = key.to_pkcs8()?;
        let nonce = sealing::choose_nonce(&[])?;
        let sealed = sealing::seal(
            self.active_kek()?,
            &header,
            &nonce,
            header.as_bytes(),
            &pkcs8,
        )?;
        let reference = reference::asymmetric_reference(&header, &sealed);
        self.signing_keys.insert(reference.clone(), Arc::new(key));
        Ok(reference)
    }

    pub(super) fn sign_digest(&self, request: &SignRequest) -> Result<Vec<u8>, PluginError> {
        let key = asymmetric(&request.tenant_id, &request.key_reference, "signing")?;
        let scheme = Scheme::for_request(
            key.key_type,
            &request.hash_algorithm,
            &request.signature_algorithm,
            &request.digest,
        )?;
        self.private_key(&request.key_reference, &key)?
            .sign(scheme, &request.digest)
    }

    pub(super) fn verify_digest(&self, request: &VerifyRequest) -> Result<bool, PluginError> {
        let key = asymmetric(&request.tenant_id, &request.key_reference, "verification")?;
        let scheme = Scheme::for_request(
            key.key_type,
            &request.hash_algorithm,
            &request.signature_algorithm,
            &request.digest,
        )?;
        Ok(self.private_key(&request.key_reference, &key)?.verify(
            scheme,
            &request.digest,
            &request.signature,
        ))
    }

    /// Decrypts with an RSA key (`capability::ASYMMETRIC_DECRYPT`): the AAD names the
    /// padding, the ciphertext is the raw RSA ciphertext.
    pub(super) fn decrypt_asymmetric(
        &self,
        request: &DecryptRequest,
        key: &Asymmetric<'_>,
    ) -> Result<Zeroizing<Vec<u8>>, PluginError> {
        if key.key_type.rsa_bits().is_none() {
            return Err(PluginError::invalid_request(format!(
                "key type {:?} does not support encryption",
                key.key_type.name()
            )));
        }
        self.private_key(&request.key_reference, key)?
            .decrypt(&request.aad, &request.ciphertext)
    }

    pub(super) fn public_key_pem(
        &self,
        tenant_id: &str,
        key_reference: &str,
    ) -> Result<String, PluginError> {
        let key = asymmetric(tenant_id, key_reference, "public keys")?;
        self.private_key(key_reference, &key)?.public_key_pem()
    }

    /// The parsed private key of a reference whose owner was checked: from the cache, or
    /// opened under the KEK its blob names.
    fn private_key(
        &self,
        key_reference: &str,
        key: &Asymmetric<'_>,
    ) -> Result<Arc<PrivateKey>, PluginError> {
        // Concurrent first uses of one key open it once; the others wait for that result.
        self.signing_keys
            .try_get_with_by_ref(key_reference, || self.open_private_key(key))
            .map_err(|error| (*error).clone())
    }

    /// Opens and parses a sealed private key, under the KEK its blob names.
    fn open_private_key(&self, key: &Asymmetric<'_>) -> Result<Arc<PrivateKey>, PluginError> {
        let header = key.header;
        let pkcs8 =
            sealing::open(&self.keks, header, header.as_bytes(), &key.sealed).map_err(|error| {
                // The blob is part of the reference: one that does not open is a reference
                // this instance cannot serve, not a bad ciphertext from the caller.
                PluginError::new(
                    ErrorKind::KEY_NOT_FOUND,
                    format!("key not found: the key reference does not open: {error}"),
                )
            })?;
        PrivateKey::from_pkcs8(key.key_type, &pkcs8).map(Arc::new)
    }
}

/// Parses a reference used for an asymmetric operation: owned by `tenant_id`, and not a
/// symmetric key.
fn asymmetric<'a>(
    tenant_id: &str,
    key_reference: &'a str,
    operation: &str,
) -> Result<Asymmetric<'a>, PluginError> {
    match reference::parse(tenant_id, key_reference)? {
        Reference::Asymmetric(key) => Ok(key),
        Reference::Symmetric => Err(PluginError::invalid_request(format!(
            "key type {KEY_TYPE:?} does not support {operation}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::with_keks;
    use crate::config::KEK_LEN;
    use abi_stable::std_types::RVec;
    use base64::Engine as _;
    use keybroker_plugin_abi::{Backend, DecryptRequest, EncryptRequest};
    use keybroker_plugin_conformance::direct::{self, create};
    use rsa::pkcs8::DecodePublicKey as _;
    use sha2::{Digest as _, Sha256, Sha384, Sha512};
    use zeroize::Zeroizing;

    fn ring(active: &str) -> LocalKek {
        with_keks(
            vec![
                ("k1".to_owned(), Zeroizing::new([1; KEK_LEN])),
                ("k2".to_owned(), Zeroizing::new([2; KEK_LEN])),
            ],
            active,
            None,
        )
        .unwrap()
    }

    fn only(id: &str, byte: u8) -> LocalKek {
        with_keks(
            vec![(id.to_owned(), Zeroizing::new([byte; KEK_LEN]))],
            id,
            None,
        )
        .unwrap()
    }

    fn sign_request(tenant: &str, reference: &str, digest: &[u8], algorithm: &str) -> SignRequest {
        SignRequest {
            tenant_id: tenant.into(),
            key_reference: reference.into(),
            digest: RVec::from(digest),
            hash_algorithm: hash_name(digest.len()).into(),
            signature_algorithm: algorithm.into(),
        }
    }

    fn hash_name(digest_len: usize) -> &'static str {
        match digest_len {
            28 => "sha2-224",
            48 => "sha2-384",
            64 => "sha2-512",
            _ => "sha2-256",
        }
    }

    fn sign(
        backend: &LocalKek,
        tenant: &str,
        reference: &str,
        digest: &[u8],
        algorithm: &str,
    ) -> Result<Vec<u8>, PluginError> {
        backend.sign(sign_request(tenant, reference, digest, algorithm))
    }

    fn verify(
        backend: &LocalKek,
        tenant: &str,
        reference: &str,
        digest: &[u8],
        algorithm: &str,
        signature: &[u8],
    ) -> Result<bool, PluginError> {
        let hash = hash_name(digest.len());
        direct::verify(
            backend, tenant, reference, digest, hash, algorithm, signature,
        )
    }

    /// The sealed blob inside an asymmetric reference.
    fn sealed_part(reference: &str) -> Vec<u8> {
        let encoded = reference.rsplit('/').next().unwrap();
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(encoded)
            .unwrap()
    }

    #[test]
    fn references_are_self_contained_and_tagged() {
        let backend = ring("k1");
        let reference = create(&backend, "acme", "ecdsa-p256");
        assert!(reference.starts_with("a/acme/ecdsa-p256/"), "{reference}");
        let sealed = sealed_part(&reference);
        assert_eq!(&sealed[..4], b"\x01\x02k1", "the blob names its KEK");
        // Two keys of the same type differ.
        assert_ne!(
            sealed_part(&create(&backend, "acme", "ecdsa-p256"))[4..],
            sealed[4..]
        );
    }

    /// Every type signs and verifies through a *fresh* instance (nothing cached), and the
    /// signatures check out with the PEM public key alone.
    #[test]
    fn every_type_signs_after_a_restart() {
        let creator = ring("k1");
        let references: Vec<(&str, String)> = ["rsa-2048", "rsa-3072", "ecdsa-p256", "ecdsa-p384"]
            .into_iter()
            .map(|key_type| (key_type, create(&creator, "acme", key_type)))
            .collect();
        let backend = ring("k1");
        for (key_type, reference) in &references {
            assert!(!backend.signing_keys.contains_key(reference.as_str()));
            let pem = backend.public_key("acme", reference).unwrap();
            assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
            assert_eq!(pem, creator.public_key("acme", reference).unwrap());
            let algorithms: &[&str] = if key_type.starts_with("rsa") {
                &["pss", "pkcs1v15"]
            } else {
                &[""]
            };
            for digest in [
                Sha256::digest(b"m").to_vec(),
                Sha384::digest(b"m").to_vec(),
                Sha512::digest(b"m").to_vec(),
            ] {
                for algorithm in algorithms {
                    let signature = sign(&backend, "acme", reference, &digest, algorithm).unwrap();
                    assert!(
                        verify(&backend, "acme", reference, &digest, algorithm, &signature)
                            .unwrap(),
                        "{key_type} {algorithm}"
                    );
                    let mut other = digest.clone();
                    other[0] ^= 1;
                    assert!(
                        !verify(&backend, "acme", reference, &other, algorithm, &signature)
                            .unwrap()
                    );
                    for malformed in [&signature[..signature.len() - 1], &[], &[0; 7]] {
                        assert!(
                            !verify(&backend, "acme", reference, &digest, algorithm, malformed)
                                .unwrap(),
                            "a malformed signature is not valid, and not an error"
                        );
                    }
                }
            }
            assert!(backend.signing_keys.contains_key(reference.as_str()));
            let digest = Sha256::digest(b"independent");
            match *key_type {
                "ecdsa-p256" => {
                    use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
                    let signature = sign(&backend, "acme", reference, &digest, "").unwrap();
                    assert_eq!(signature.len(), 64);
                    p256::ecdsa::VerifyingKey::from_public_key_pem(&pem)
                        .unwrap()
                        .verify_prehash(
                            &digest,
                            &p256::ecdsa::Signature::from_slice(&signature).unwrap(),
                        )
                        .unwrap();
                }
                "ecdsa-p384" => {
                    let signature = sign(&backend, "acme", reference, &digest, "").unwrap();
                    assert_eq!(signature.len(), 96);
                }
                _ => {
                    let public = rsa::RsaPublicKey::from_public_key_pem(&pem).unwrap();
                    let signature = sign(&backend, "acme", reference, &digest, "pss").unwrap();
                    public
                        .verify(rsa::Pss::new::<Sha256>(), &digest, &signature)
                        .unwrap();
                    let signature = sign(&backend, "acme", reference, &digest, "pkcs1v15").unwrap();
                    public
                        .verify(rsa::Pkcs1v15Sign::new::<Sha256>(), &digest, &signature)
                        .unwrap();
                }
            }
        }
    }

    #[test]
    fn kek_rotation_keeps_keys_usable() {
        let before = ring("k1");
        let old = create(&before, "acme", "ecdsa-p384");
        let digest = Sha384::digest(b"m");
        let signature = sign(&before, "acme", &old, &digest, "").unwrap();

        // k2 becomes active: the old key still opens under k1, new keys are made under k2.
        let after = ring("k2");
        assert!(verify(&after, "acme", &old, &digest, "", &signature).unwrap());
        sign(&after, "acme", &old, &digest, "").unwrap();
        let new = create(&after, "acme", "ecdsa-p384");
        assert_eq!(&sealed_part(&new)[..4], b"\x01\x02k2");

        // Once k1 is gone, its keys no longer open; a KEK with the same id but other bytes
        // does not open them either.
        for (backend, reason) in [
            (only("k2", 2), "unknown KEK id"),
            (only("k1", 9), "message authentication failed"),
        ] {
            let error = sign(&backend, "acme", &old, &digest, "").unwrap_err();
            assert_eq!(error.kind, ErrorKind::KEY_NOT_FOUND);
            assert!(error.message.contains(reason), "{error}");
            let error = backend.public_key("acme", &old).unwrap_err();
            assert_eq!(error.kind, ErrorKind::KEY_NOT_FOUND);
        }
        // Under k2 alone the new key opens (and the old key's signature is not its own).
        assert!(!verify(&only("k2", 2), "acme", &new, &digest, "", &signature).unwrap());
    }

    #[test]
    fn references_moved_to_another_tenant_or_type_fail() {
        let backend = ring("k1");
        let reference = create(&backend, "acme", "ecdsa-p256");
        let digest = Sha256::digest(b"m");
        let error = sign(&backend, "globex", &reference, &digest, "").unwrap_err();
        assert_eq!(error.kind, ErrorKind::KEY_NOT_FOUND);
        assert_eq!(error.message.as_str(), "key not found for this tenant");
        let error = backend.public_key("globex", &reference).unwrap_err();
        assert_eq!(error.kind, ErrorKind::KEY_NOT_FOUND);
        assert!(!error.message.contains("acme"), "{error}");
        let error = verify(&backend, "globex", &reference, &digest, "", &[0; 64]).unwrap_err();
        assert_eq!(error.kind, ErrorKind::KEY_NOT_FOUND);

        // The blob rewritten under another tenant's or type's header does not open, even in
        // the instance that has the original cached.
        let blob = reference.rsplit('/').next().unwrap();
        for (tenant, moved) in [
            ("globex", format!("a/globex/ecdsa-p256/{blob}")),
            ("acme", format!("a/acme/ecdsa-p384/{blob}")),
        ] {
            let error = backend.public_key(tenant, &moved).unwrap_err();
            assert_eq!(error.kind, ErrorKind::KEY_NOT_FOUND, "{moved}");
            assert!(error.message.contains("does not open"), "{error}");
            assert!(!backend.signing_keys.contains_key(moved.as_str()));
        }

        // One flipped bit anywhere in the sealed key.
        let sealed = sealed_part(&reference);
        let fresh = ring("k1");
        for index in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[index] ^= 0x10;
            let tampered = reference::asymmetric_reference("a/acme/ecdsa-p256", &tampered);
            let error = fresh.public_key("acme", &tampered).unwrap_err();
            assert_eq!(error.kind, ErrorKind::KEY_NOT_FOUND, "byte {index}");
        }
    }

    #[test]
    fn keys_are_used_only_for_what_their_type_allows() {
        let backend = ring("k1");
        let asymmetric = create(&backend, "acme", "ecdsa-p256");
        let symmetric = create(&backend, "acme", KEY_TYPE);
        let error = backend
            .encrypt(EncryptRequest {
                tenant_id: "acme".into(),
                key_reference: asymmetric.as_str().into(),
                plaintext: RVec::from(&b"x"[..]),
                aad: RVec::new(),
                iv: RVec::new(),
            })
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::INVALID_REQUEST);
        assert_eq!(
            error.message.as_str(),
            "key type \"ecdsa-p256\" does not support encryption"
        );
        let error = backend
            .decrypt(DecryptRequest {
                tenant_id: "acme".into(),
                key_reference: asymmetric.as_str().into(),
                ciphertext: RVec::from(&[1u8; 40][..]),
                aad: RVec::new(),
            })
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::INVALID_REQUEST);

        let digest = Sha256::digest(b"m");
        let error = sign(&backend, "acme", &symmetric, &digest, "").unwrap_err();
        assert_eq!(error.kind, ErrorKind::INVALID_REQUEST);
        assert!(
            error.message.contains("does not support signing"),
            "{error}"
        );
        let error = verify(&backend, "acme", &symmetric, &digest, "", &[0; 64]).unwrap_err();
        assert_eq!(error.kind, ErrorKind::INVALID_REQUEST);
        let error = backend.public_key("acme", &symmetric).unwrap_err();
        assert_eq!(error.kind, ErrorKind::INVALID_REQUEST);
    }

    #[test]
    fn bad_requests_are_refused_before_the_key_is_opened() {
        let reference = create(&ring("k1"), "acme", "rsa-2048");
        // This instance cannot open the key: a request error must still come first.
        let backend = only("k2", 2);
        let digest = Sha256::digest(b"m");
        for (digest, hash, algorithm) in [
            (&digest[..31], "sha2-256", "pss"),
            (&digest[..], "sha2-384", "pss"),
            (&digest[..], "sha1", "pss"),
            (&digest[..], "sha2-256", ""),
            (&digest[..], "sha2-256", "oaep"),
        ] {
            let mut request = sign_request("acme", &reference, digest, algorithm);
            request.hash_algorithm = hash.into();
            let error = backend.sign(request).unwrap_err();
            assert_eq!(
                error.kind,
                ErrorKind::INVALID_REQUEST,
                "{hash} {algorithm}: {error}"
            );
        }
        let backend = ring("k1");
        let reference = create(&backend, "acme", "ecdsa-p256");
        let error = sign(&backend, "acme", &reference, &digest, "pss").unwrap_err();
        assert_eq!(error.kind, ErrorKind::INVALID_REQUEST);
        let error = verify(&backend, "acme", &reference, &digest[..20], "", &[0; 64]).unwrap_err();
        assert_eq!(error.kind, ErrorKind::INVALID_REQUEST);
    }

    fn import(
        backend: &LocalKek,
        tenant: &str,
        key_type: &str,
        pkcs8: &[u8],
    ) -> Result<String, PluginError> {
        backend
            .import_private_key(keybroker_plugin_abi::ImportKeyRequest {
                tenant_id: tenant.into(),
                key_id: "imported-1".into(),
                key_type: key_type.into(),
                pkcs8: RVec::from(pkcs8),
            })
            .map(|handle| handle.reference.into_string())
    }

    /// An imported key's reference is bound to the tenant that imported it, as a created
    /// key's is: another tenant can neither sign with it, read its public key nor export
    /// it, and moving its blob under another tenant's header does not open it.
    #[test]
    fn imported_keys_are_bound_to_their_tenant() {
        use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
        let own = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let der = own.to_pkcs8_der().unwrap();
        let backend = ring("k1");
        let reference = import(&backend, "acme", "ecdsa-p256", der.as_bytes()).unwrap();
        assert!(reference.starts_with("a/acme/ecdsa-p256/"), "{reference}");
        assert_eq!(&sealed_part(&reference)[..4], b"\x01\x02k1");

        let digest = Sha256::digest(b"m");
        let error = sign(&backend, "globex", &reference, &digest, "").unwrap_err();
        assert_eq!(error.kind, ErrorKind::KEY_NOT_FOUND);
        assert_eq!(error.message.as_str(), "key not found for this tenant");
        for error in [
            backend.public_key("globex", &reference).unwrap_err(),
            backend
                .export_private_key("globex", &reference)
                .unwrap_err(),
        ] {
            assert_eq!(error.kind, ErrorKind::KEY_NOT_FOUND, "{error}");
            assert!(!error.message.contains("acme"), "{error}");
        }
        let blob = reference.rsplit('/').next().unwrap();
        let moved = format!("a/globex/ecdsa-p256/{blob}");
        let error = backend.export_private_key("globex", &moved).unwrap_err();
        assert_eq!(error.kind, ErrorKind::KEY_NOT_FOUND);
        assert!(error.message.contains("does not open"), "{error}");

        // The owner signs with it, through a fresh instance too, and gets the key back.
        let fresh = ring("k1");
        let signature = sign(&fresh, "acme", &reference, &digest, "").unwrap();
        assert!(verify(&backend, "acme", &reference, &digest, "", &signature).unwrap());
        let exported = fresh.export_private_key("acme", &reference).unwrap();
        let back = p256::ecdsa::SigningKey::from_pkcs8_der(&exported).unwrap();
        assert_eq!(back.verifying_key(), own.verifying_key());
    }

    /// A PKCS #8 v2 (RFC 8410 `OneAsymmetricKey`) Ed25519 key carries its public key: one
    /// that is not the seed's is refused, without the key in the message; a matching one
    /// is taken in.
    #[test]
    fn ed25519_keys_with_a_foreign_public_key_are_refused() {
        use ed25519_dalek::pkcs8::{EncodePrivateKey as _, KeypairBytes, PublicKeyBytes};
        let seed = [0x42; 32];
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let stranger = ed25519_dalek::SigningKey::from_bytes(&[0x17; 32]);
        let with_public = |public: [u8; 32]| {
            KeypairBytes {
                secret_key: seed,
                public_key: Some(PublicKeyBytes(public)),
            }
            .to_pkcs8_der()
            .unwrap()
        };
        let backend = ring("k1");
        let mismatched = with_public(stranger.verifying_key().to_bytes());
        let error = import(&backend, "acme", "ed25519", mismatched.as_bytes()).unwrap_err();
        assert_eq!(error.kind, ErrorKind::INVALID_REQUEST);
        assert_eq!(
            error.message.as_str(),
            "the private key is not a PKCS #8 ed25519 private key"
        );

        let matching = with_public(key.verifying_key().to_bytes());
        let reference = import(&backend, "acme", "ed25519", matching.as_bytes()).unwrap();
        let pem = backend.public_key("acme", &reference).unwrap();
        assert_eq!(
            ed25519_dalek::VerifyingKey::from_public_key_pem(&pem).unwrap(),
            key.verifying_key()
        );
        // A v1 PKCS #8 (seed only) of the same key is taken in too.
        let v1 = KeypairBytes {
            secret_key: seed,
            public_key: None,
        }
        .to_pkcs8_der()
        .unwrap();
        let again = import(&backend, "acme", "ed25519", v1.as_bytes()).unwrap();
        assert_eq!(backend.public_key("acme", &again).unwrap(), pem);
    }

    #[test]
    fn nothing_secret_in_debug_or_errors() {
        let backend = ring("k1");
        let reference = create(&backend, "acme", "ecdsa-p256");
        let debug = format!("{backend:?}");
        assert!(debug.contains("signing_keys_cached"), "{debug}");
        assert!(!debug.contains(&reference[18..]), "{debug}");
        let error = sign(&only("k1", 9), "acme", &reference, &[0; 32], "").unwrap_err();
        assert!(!error.message.contains(&reference[18..]), "{error}");
    }
}
