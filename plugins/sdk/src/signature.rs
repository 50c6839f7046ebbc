//! ECDSA signatures between the DER `Ecdsa-Sig-Value` most services and HSM APIs speak and
//! the ABI's fixed-size `r ‖ s` (what the broker hands out and takes back), digests shaped
//! for the reference crates, and RSASSA-PSS verification with a salt of any length (Vault's
//! `salt_length=auto`).

use keybroker_plugin_abi::HashAlgorithm;
use rsa::{traits::PublicKeyParts as _, BigUint, Pss, RsaPublicKey};
use sha2::digest::{Digest, DynDigest};

/// The curves the broker signs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Curve {
    /// NIST P-256 (`ecdsa-p256`): `r ‖ s` is 64 bytes.
    P256,
    /// NIST P-384 (`ecdsa-p384`): `r ‖ s` is 96 bytes.
    P384,
    /// NIST P-521 (`ecdsa-p521`): `r ‖ s` is 132 bytes.
    P521,
}

/// The width of a scalar of P-521 (and of each of `r` and `s`), in bytes.
const P521_SCALAR_BYTES: usize = 66;

/// `digest` as the RustCrypto ECDSA crates take a prehash for `curve`. They refuse a prehash
/// shorter than half the scalar, which on P-521 is every SHA-256 and SHA-224 digest; padded
/// with zeros on the left to the scalar's width, it is the same integer, which is what
/// ECDSA (FIPS 186-5, and Go's `crypto/ecdsa` behind Vault) signs for a digest shorter
/// than the order. Other curves take the digest as it is.
pub fn prehash_for(curve: Curve, digest: &[u8]) -> Vec<u8> {
    match curve {
        Curve::P521 if digest.len() < P521_SCALAR_BYTES => {
            let mut padded = vec![0u8; P521_SCALAR_BYTES - digest.len()];
            padded.extend_from_slice(digest);
            padded
        }
        _ => digest.to_vec(),
    }
}

/// The DER signature `der` as `r ‖ s`; `None` when it is not a valid signature encoding for
/// `curve`.
pub fn der_to_raw(curve: Curve, der: &[u8]) -> Option<Vec<u8>> {
    match curve {
        Curve::P256 => p256::ecdsa::Signature::from_der(der)
            .ok()
            .map(|signature| signature.to_bytes().to_vec()),
        Curve::P384 => p384::ecdsa::Signature::from_der(der)
            .ok()
            .map(|signature| signature.to_bytes().to_vec()),
        Curve::P521 => p521::ecdsa::Signature::from_der(der)
            .ok()
            .map(|signature| signature.to_bytes().to_vec()),
    }
}

/// The `r ‖ s` signature `raw` as DER; `None` when it cannot be a signature for `curve`
/// (wrong length, zero scalars).
pub fn raw_to_der(curve: Curve, raw: &[u8]) -> Option<Vec<u8>> {
    match curve {
        Curve::P256 => p256::ecdsa::Signature::from_slice(raw)
            .ok()
            .map(|signature| signature.to_der().as_bytes().to_vec()),
        Curve::P384 => p384::ecdsa::Signature::from_slice(raw)
            .ok()
            .map(|signature| signature.to_der().as_bytes().to_vec()),
        Curve::P521 => p521::ecdsa::Signature::from_slice(raw)
            .ok()
            .map(|signature| signature.to_der().as_bytes().to_vec()),
    }
}

/// Whether `signature` is a valid RSASSA-PSS signature (MGF1 over `hash`, RFC 8017 §8.1.2)
/// over `digest` with a salt of ANY length, as Go's `rsa.VerifyPSS` with
/// `PSSSaltLengthAuto` checks it: what Vault's and OpenBao's `transit/verify` do with
/// `signature_algorithm=pss` and the default `salt_length=auto`. Vault's `transit/sign`
/// with `auto` signs with the largest salt (modulus bytes − hash length − 2), the broker
/// with a salt as long as the digest; both, and any other length, verify here.
///
/// The `rsa` crate only verifies a salt length given in advance. So the salt length is read
/// from the signature's encoded message ([`pss_salt_len`]) and the crate then verifies
/// strictly with that length: the crate does the real check, this only finds the length.
/// `false` for anything that is not a valid signature (wrong length, garbage, a digest of
/// the wrong length), never a panic.
pub fn verify_rsa_pss_any_salt(
    key: &RsaPublicKey,
    hash: HashAlgorithm,
    digest: &[u8],
    signature: &[u8],
) -> bool {
    match hash {
        HashAlgorithm::Sha224 => verify_pss_any_salt::<sha2::Sha224>(key, digest, signature),
        HashAlgorithm::Sha256 => verify_pss_any_salt::<sha2::Sha256>(key, digest, signature),
        HashAlgorithm::Sha384 => verify_pss_any_salt::<sha2::Sha384>(key, digest, signature),
        HashAlgorithm::Sha512 => verify_pss_any_salt::<sha2::Sha512>(key, digest, signature),
    }
}

/// [`verify_rsa_pss_any_salt`] for the hash `D`.
fn verify_pss_any_salt<D>(key: &RsaPublicKey, digest: &[u8], signature: &[u8]) -> bool
where
    D: 'static + Digest + DynDigest + Send + Sync,
{
    pss_salt_len::<D>(key, signature).is_some_and(|salt_len| {
        key.verify(Pss::new_with_salt::<D>(salt_len), digest, signature)
            .is_ok()
    })
}

/// The salt length an RSASSA-PSS signature was made with (hash `D`, MGF1 over `D`), read
/// from its encoded message as RFC 8017 §9.1.2 (EMSA-PSS-VERIFY) steps 4–10 unmask it:
/// `EM = maskedDB ‖ H ‖ 0xbc`, `DB = maskedDB ⊕ MGF1(H)` with its top `8·emLen − emBits`
/// bits cleared, `DB = 00…00 ‖ 0x01 ‖ salt`. `None` when the signature is not a PSS
/// encoding under this key at all. A length is no verdict: `H` is not checked here (the
/// caller verifies with the length it gets).
fn pss_salt_len<D: Digest>(key: &RsaPublicKey, signature: &[u8]) -> Option<usize> {
    // RSAVP1: s < n, of exactly the modulus' length.
    if signature.len() != key.size() {
        return None;
    }
    let s = BigUint::from_bytes_be(signature);
    if &s >= key.n() {
        return None;
    }
    let m = s.modpow(key.e(), key.n()).to_bytes_be();
    // EM = I2OSP(m, emLen), emBits = modBits − 1: with a modulus of 8k + 1 bits EM is one
    // byte shorter than the modulus, and a longer m is no encoding.
    let em_bits = key.n().bits().checked_sub(1)?;
    let em_len = em_bits.div_ceil(8);
    let h_len = <D as Digest>::output_size();
    if m.len() > em_len || em_len < h_len + 2 {
        return None;
    }
    let mut em = vec![0u8; em_len];
    em[em_len - m.len()..].copy_from_slice(&m);
    // Step 4: the trailer.
    if em[em_len - 1] != 0xbc {
        return None;
    }
    // Steps 5–6: maskedDB ‖ H, and the bits above emBits are zero.
    let (db, rest) = em.split_at_mut(em_len - h_len - 1);
    let h = &rest[..h_len];
    let top_bits = 0xffu8 >> (8 * em_len - em_bits);
    if db[0] & !top_bits != 0 {
        return None;
    }
    // Steps 7–9: unmask.
    mgf1_xor::<D>(db, h);
    db[0] &= top_bits;
    // Step 10: zeros, then 0x01; the salt is what follows.
    let one = db.iter().position(|byte| *byte != 0)?;
    (db[one] == 0x01).then(|| db.len() - one - 1)
}

/// `out ⊕= MGF1(seed)` over the hash `D` (RFC 8017 B.2.1). `out` is shorter than the
/// modulus, far below MGF1's limit of 2³² hash lengths.
fn mgf1_xor<D: Digest>(out: &mut [u8], seed: &[u8]) {
    for (counter, chunk) in (0u32..).zip(out.chunks_mut(<D as Digest>::output_size())) {
        let mut hasher = D::new();
        hasher.update(seed);
        hasher.update(counter.to_be_bytes());
        for (byte, mask) in chunk.iter_mut().zip(hasher.finalize()) {
            *byte ^= mask;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn signatures_convert_both_ways() {
        for (curve, size) in [(Curve::P256, 64), (Curve::P384, 96), (Curve::P521, 132)] {
            let mut raw = vec![0u8; size];
            raw[size / 2 - 1] = 1;
            raw[size - 1] = 2;
            let der = raw_to_der(curve, &raw).unwrap();
            assert_eq!(der_to_raw(curve, &der).unwrap(), raw);
            assert!(raw_to_der(curve, &raw[1..]).is_none());
            assert!(raw_to_der(curve, &vec![0u8; size]).is_none());
            assert!(der_to_raw(curve, &raw).is_none());
        }
    }

    #[test]
    fn short_digests_are_padded_for_p521_only() {
        let digest = [9u8; 32];
        assert_eq!(prehash_for(Curve::P256, &digest), digest);
        assert_eq!(prehash_for(Curve::P384, &digest), digest);
        let padded = prehash_for(Curve::P521, &digest);
        assert_eq!(padded.len(), 66);
        assert_eq!(&padded[34..], &digest);
        assert!(padded[..34].iter().all(|byte| *byte == 0));
    }

    /// Signs `digest` with the `rsa` crate, RSASSA-PSS over `D` with a salt of `salt_len`.
    fn pss_sign<D>(key: &rsa::RsaPrivateKey, digest: &[u8], salt_len: usize) -> Vec<u8>
    where
        D: 'static + Digest + DynDigest + Send + Sync,
    {
        key.sign_with_rng(
            &mut rsa::rand_core::OsRng,
            Pss::new_with_salt::<D>(salt_len),
            digest,
        )
        .unwrap()
    }

    /// The raw RSA private-key operation on `em`: a "signature" of any encoded message.
    fn raw_sign(key: &rsa::RsaPrivateKey, em: &[u8]) -> Vec<u8> {
        use rsa::traits::PrivateKeyParts as _;
        let s = BigUint::from_bytes_be(em)
            .modpow(key.d(), key.n())
            .to_bytes_be();
        let mut padded = vec![0u8; key.size() - s.len()];
        padded.extend_from_slice(&s);
        padded
    }

    /// Signatures with the salt lengths Vault, OpenBao and others use (none, SHA-1's, the
    /// digest's, the largest) verify, through the SDK's function and `PublicKey`; tampering
    /// and any mismatch do not.
    #[test]
    fn rsa_pss_verifies_with_any_salt_length() {
        use crate::public_key::PublicKey;
        let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let public = private.to_public_key();
        let key = PublicKey::Rsa(public.clone());
        let em_len = 256;
        for hash in [
            HashAlgorithm::Sha256,
            HashAlgorithm::Sha384,
            HashAlgorithm::Sha512,
        ] {
            let h_len = hash.digest_len();
            let digest = vec![0x5a; h_len];
            let other_digest = vec![0xa5; h_len];
            for salt_len in [0, 20, h_len, em_len - h_len - 2] {
                let signature = match hash {
                    HashAlgorithm::Sha256 => pss_sign::<sha2::Sha256>(&private, &digest, salt_len),
                    HashAlgorithm::Sha384 => pss_sign::<sha2::Sha384>(&private, &digest, salt_len),
                    _ => pss_sign::<sha2::Sha512>(&private, &digest, salt_len),
                };
                let case = format!("{hash:?} salt {salt_len}");
                assert_eq!(
                    match hash {
                        HashAlgorithm::Sha256 => pss_salt_len::<sha2::Sha256>(&public, &signature),
                        HashAlgorithm::Sha384 => pss_salt_len::<sha2::Sha384>(&public, &signature),
                        _ => pss_salt_len::<sha2::Sha512>(&public, &signature),
                    },
                    Some(salt_len),
                    "{case}"
                );
                assert!(
                    verify_rsa_pss_any_salt(&public, hash, &digest, &signature),
                    "{case}"
                );
                // What the crate alone answers: only the digest's length verifies.
                let strict = match hash {
                    HashAlgorithm::Sha256 => Pss::new::<sha2::Sha256>(),
                    HashAlgorithm::Sha384 => Pss::new::<sha2::Sha384>(),
                    _ => Pss::new::<sha2::Sha512>(),
                };
                assert_eq!(
                    public.verify(strict, &digest, &signature).is_ok(),
                    salt_len == h_len,
                    "{case}"
                );
                assert!(
                    key.verify_prehash(hash, "pss", &digest, &signature),
                    "{case}"
                );
                // Not PKCS #1 v1.5, not another digest, not another hash.
                assert!(
                    !key.verify_prehash(hash, "pkcs1v15", &digest, &signature),
                    "{case}"
                );
                assert!(
                    !verify_rsa_pss_any_salt(&public, hash, &other_digest, &signature),
                    "{case}"
                );
                assert!(
                    !verify_rsa_pss_any_salt(&public, hash, &digest[1..], &signature),
                    "{case}"
                );
                for other in [
                    HashAlgorithm::Sha224,
                    HashAlgorithm::Sha256,
                    HashAlgorithm::Sha384,
                    HashAlgorithm::Sha512,
                ] {
                    if other != hash {
                        let digest = vec![0x5a; other.digest_len()];
                        assert!(
                            !verify_rsa_pss_any_salt(&public, other, &digest, &signature),
                            "{case} as {other:?}"
                        );
                    }
                }
                // Every bit flipped somewhere fails, before or after the salt.
                for index in [0, 1, 100, 200, 254, 255] {
                    let mut tampered = signature.clone();
                    tampered[index] ^= 0x10;
                    assert!(
                        !verify_rsa_pss_any_salt(&public, hash, &digest, &tampered),
                        "{case} byte {index}"
                    );
                    assert!(
                        !key.verify_prehash(hash, "pss", &digest, &tampered),
                        "{case} byte {index}"
                    );
                }
                // Wrong lengths.
                let mut longer = vec![0u8];
                longer.extend_from_slice(&signature);
                for wrong in [&signature[1..], &longer[..], &[][..]] {
                    assert!(!verify_rsa_pss_any_salt(&public, hash, &digest, wrong));
                    assert!(!key.verify_prehash(hash, "pss", &digest, wrong));
                }
            }
        }
    }

    /// Garbage, values not below the modulus, and encodings that are not PSS are refused
    /// without a panic.
    #[test]
    fn malformed_rsa_pss_signatures_are_not_valid() {
        let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let public = private.to_public_key();
        let digest = [1u8; 32];
        let mut modulus = public.n().to_bytes_be();
        let mut garbage = Vec::new();
        for seed in 0u8..=255 {
            garbage.extend(sha2::Sha256::digest([seed]));
        }
        let mut cases: Vec<Vec<u8>> = vec![
            vec![0; 256],
            vec![0xff; 256],
            {
                let mut one = vec![0; 256];
                one[255] = 1;
                one
            },
            modulus.clone(),
            garbage[..256].to_vec(),
            garbage[256..512].to_vec(),
            garbage[..512].to_vec(),
            garbage[..255].to_vec(),
        ];
        *modulus.last_mut().unwrap() -= 1; // n − 1
        cases.push(modulus);
        for signature in &cases {
            for hash in [
                HashAlgorithm::Sha224,
                HashAlgorithm::Sha256,
                HashAlgorithm::Sha384,
                HashAlgorithm::Sha512,
            ] {
                let digest = vec![1u8; hash.digest_len()];
                assert!(!verify_rsa_pss_any_salt(&public, hash, &digest, signature));
            }
        }
        assert_eq!(pss_salt_len::<sha2::Sha256>(&public, &cases[0]), None);

        // Encoded messages built by hand, then "signed" raw: EM = maskedDB ‖ H ‖ 0xbc.
        let h = [7u8; 32];
        let encode = |db: &[u8], trailer: u8| {
            let mut masked = db.to_vec();
            mgf1_xor::<sha2::Sha256>(&mut masked, &h);
            masked[0] &= 0x7f;
            let mut em = masked;
            em.extend_from_slice(&h);
            em.push(trailer);
            raw_sign(&private, &em)
        };
        let db_len = 256 - 32 - 1;
        let mut db = vec![0u8; db_len];
        db[db_len - 11] = 0x01; // a 10-byte salt of zeros
        assert_eq!(
            pss_salt_len::<sha2::Sha256>(&public, &encode(&db, 0xbc)),
            Some(10)
        );
        // A length is no verdict: H is not the hash of this digest and salt.
        assert!(!verify_rsa_pss_any_salt(
            &public,
            HashAlgorithm::Sha256,
            &digest,
            &encode(&db, 0xbc)
        ));
        assert_eq!(
            pss_salt_len::<sha2::Sha256>(&public, &encode(&db, 0xbd)),
            None
        );
        db[db_len - 11] = 0x02;
        assert_eq!(
            pss_salt_len::<sha2::Sha256>(&public, &encode(&db, 0xbc)),
            None
        );
        let zeros = vec![0u8; db_len];
        assert_eq!(
            pss_salt_len::<sha2::Sha256>(&public, &encode(&zeros, 0xbc)),
            None
        );
        // The bit above emBits set.
        let mut em = vec![0u8; 256];
        em[0] = 0x80;
        em[255] = 0xbc;
        assert_eq!(
            pss_salt_len::<sha2::Sha256>(&public, &raw_sign(&private, &em)),
            None
        );
    }

    /// A modulus of 8k + 1 bits: EM is one byte shorter than the signature.
    #[test]
    fn rsa_pss_with_a_short_encoded_message() {
        let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1025).unwrap();
        let public = private.to_public_key();
        assert_eq!(public.size(), 129);
        let digest = [3u8; 32];
        for salt_len in [0, 32, 128 - 32 - 2] {
            let signature = pss_sign::<sha2::Sha256>(&private, &digest, salt_len);
            assert_eq!(
                pss_salt_len::<sha2::Sha256>(&public, &signature),
                Some(salt_len)
            );
            assert!(verify_rsa_pss_any_salt(
                &public,
                HashAlgorithm::Sha256,
                &digest,
                &signature
            ));
        }
    }
}
