//! Asymmetric keys: signing, verification and public keys, each checked independently with
//! the `rsa`, `p256`, `p384`, `p521` and `ed25519-dalek` crates.

use keybroker_plugin_abi::{
    abi_stable::std_types::RVec, capability, key_type, BackendBox, ErrorKind, SignRequest,
    VerifyRequest, HASH_NONE,
};
use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
use rsa::{pkcs8::DecodePublicKey as _, traits::PublicKeyParts as _, Pkcs1v15Sign, Pss};
use sha2::{Digest as _, Sha224, Sha256, Sha384, Sha512};

use crate::scope::{
    decrypt_request, encrypt_request, made_up_references, random_iv, rstring, Scope,
};
use crate::Options;

mod transfer;
pub use transfer::{check_no_private_key_transfer, check_private_key_transfer};

/// A public key parsed from the plugin's PEM by the reference crates.
enum PublicKey {
    Rsa(rsa::RsaPublicKey),
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    P521(p521::ecdsa::VerifyingKey),
}

/// The hashes the broker uses, with a digest of a fixed message for each.
fn digests(message: &[u8]) -> [(&'static str, Vec<u8>); 4] {
    [
        ("sha2-224", Sha224::digest(message).to_vec()),
        ("sha2-256", Sha256::digest(message).to_vec()),
        ("sha2-384", Sha384::digest(message).to_vec()),
        ("sha2-512", Sha512::digest(message).to_vec()),
    ]
}

/// Everything about one asymmetric key type: creation; the PEM public key (right size or
/// curve); signatures over every SHA-2 digest with every scheme, verified by the plugin and
/// independently; refusals of other digests, corrupted signatures, wrong digest lengths and
/// schemes; tenant isolation; refusal of encryption; deletion.
///
/// A plugin without [`capability::SIGN`] must refuse to create the key
/// (`INVALID_REQUEST`), and nothing else is checked.
///
/// Ed25519 (pure, over the whole message) is checked by [`check_ed25519`] instead.
pub fn check_asymmetric(backend: &BackendBox, options: &Options, key_type: &str) {
    let scope = Scope::for_backend(backend, format!("key type {key_type}"));
    let info = scope.ok("info()", backend.info());
    let (a, b) = (options.tenant_a.as_str(), options.tenant_b.as_str());
    if info.capabilities & capability::SIGN == 0 {
        scope.fails(
            "create_key without the SIGN capability",
            ErrorKind::INVALID_REQUEST,
            backend.create_key(crate::scope::create_request(a, key_type)),
        );
        return;
    }
    if key_type == key_type::ED25519 {
        check_ed25519(backend, options);
        return;
    }
    let reference = scope.create(backend, a, key_type);
    let public = check_public_key(&scope, backend, options, key_type, &reference);
    let rsa = matches!(public, PublicKey::Rsa(_));
    let schemes: &[&str] = if rsa { &["pss", "pkcs1v15"] } else { &[""] };

    let sign = |hash: &str, scheme: &str, digest: &[u8]| SignRequest {
        tenant_id: rstring(a),
        key_reference: rstring(&reference),
        digest: RVec::from(digest),
        hash_algorithm: rstring(hash),
        signature_algorithm: rstring(scheme),
    };
    let verify = |hash: &str, scheme: &str, digest: &[u8], signature: &[u8]| VerifyRequest {
        tenant_id: rstring(a),
        key_reference: rstring(&reference),
        digest: RVec::from(digest),
        hash_algorithm: rstring(hash),
        signature_algorithm: rstring(scheme),
        signature: RVec::from(signature),
    };

    let supported = (options.signing_hashes)(key_type);
    scope.check(
        !supported.is_empty(),
        "Options::signing_hashes names at least one hash for this key type",
    );
    let usual = supported[0];
    for (hash, digest) in digests(b"keybroker conformance: message to sign") {
        if !supported.contains(&hash) {
            for scheme in schemes {
                scope.fails(
                    format!("sign a {hash} digest (not a hash this key type signs with)"),
                    ErrorKind::INVALID_REQUEST,
                    backend.sign(sign(hash, scheme, &digest)),
                );
            }
            continue;
        }
        let other_digest = digests(b"another message")
            .into_iter()
            .find(|(name, _)| *name == hash)
            .map(|(_, digest)| digest)
            .unwrap_or_default();
        for scheme in schemes {
            let what = format!("{hash} digest, signature_algorithm {scheme:?}");
            let signature = scope.ok(
                format!("sign a {what}"),
                backend.sign(sign(hash, scheme, &digest)),
            );
            let expected_len = match &public {
                PublicKey::Rsa(key) => key.size(),
                PublicKey::P256(_) => 64,
                PublicKey::P384(_) => 96,
                PublicKey::P521(_) => 132,
            };
            scope.check(
                signature.len() == expected_len,
                format!(
                    "a signature of {expected_len} bytes over a {what}, got {}",
                    signature.len()
                ),
            );
            let valid = scope.ok(
                format!("verify a {what}"),
                backend.verify(verify(hash, scheme, &digest, &signature)),
            );
            scope.check(
                valid,
                format!("verify to accept its own signature ({what})"),
            );
            scope.check(
                verifies_independently(&public, hash, scheme, &digest, &signature, false)
                    || (options.moto_signatures
                        && verifies_independently(
                            &public,
                            hash,
                            scheme,
                            &rehash(hash, &digest),
                            &signature,
                            true,
                        )),
                format!(
                    "the signature over a {what} to verify with the PEM public key and the \
                     reference crates"
                ),
            );

            let valid = scope.ok(
                format!("verify against another {hash} digest"),
                backend.verify(verify(hash, scheme, &other_digest, &signature)),
            );
            scope.check(
                !valid,
                format!("verify to reject the signature for another digest ({what})"),
            );
            let mut corrupted = signature.to_vec();
            let middle = corrupted.len() / 2;
            corrupted[middle] ^= 0x04;
            let truncated = &signature[..signature.len() - 1];
            for (name, bad) in [
                ("a corrupted", corrupted.as_slice()),
                ("a truncated", truncated),
                ("an empty", &[][..]),
            ] {
                let valid = scope.ok(
                    format!("verify {name} signature ({what}): answer false, not an error"),
                    backend.verify(verify(hash, scheme, &digest, bad)),
                );
                scope.check(
                    !valid,
                    format!("verify to reject {name} signature ({what})"),
                );
            }
        }
    }

    // Malformed requests.
    let digest = Sha256::digest(b"m").to_vec();
    let scheme = schemes[0];
    for (what, hash, digest) in [
        ("a 31-byte sha2-256 digest", "sha2-256", &digest[..31]),
        (
            "a 33-byte sha2-256 digest",
            "sha2-256",
            &[digest.as_slice(), &[0]].concat()[..],
        ),
        ("a 32-byte sha2-384 digest", "sha2-384", &digest[..]),
        ("an empty sha2-512 digest", "sha2-512", &[][..]),
        ("hash_algorithm sha1", "sha1", &digest[..20]),
    ] {
        scope.fails(
            format!("sign {what}"),
            ErrorKind::INVALID_REQUEST,
            backend.sign(sign(hash, scheme, digest)),
        );
        scope.fails(
            format!("verify {what}"),
            ErrorKind::INVALID_REQUEST,
            backend.verify(verify(hash, scheme, digest, &[0; 64])),
        );
    }
    let wrong_schemes: &[&str] = if rsa {
        &["", "oaep", "PSS", "pss-made-up"]
    } else {
        &["pss", "pkcs1v15"]
    };
    for wrong in wrong_schemes {
        scope.fails(
            format!("sign with signature_algorithm {wrong:?}"),
            ErrorKind::INVALID_REQUEST,
            backend.sign(sign("sha2-256", wrong, &digest)),
        );
    }

    // Tenant isolation and made-up references, with a hash this key type signs with.
    let digest = digests(b"m")
        .into_iter()
        .find(|(name, _)| *name == usual)
        .map(|(_, digest)| digest)
        .unwrap_or_default();
    let mut as_b = sign(usual, scheme, &digest);
    as_b.tenant_id = rstring(b);
    scope.not_found_for(
        "sign with tenant A's key as tenant B",
        a,
        backend.sign(as_b),
    );
    let mut as_b = verify(usual, scheme, &digest, &[0; 64]);
    as_b.tenant_id = rstring(b);
    scope.not_found_for(
        "verify with tenant A's key as tenant B",
        a,
        backend.verify(as_b),
    );
    scope.not_found_for(
        "public_key of tenant A's key as tenant B",
        a,
        backend.public_key(rstring(b), rstring(&reference)),
    );
    for made_up in made_up_references(&reference) {
        let mut request = sign(usual, scheme, &digest);
        request.key_reference = rstring(&made_up);
        scope.fails(
            format!("sign with the made-up reference {made_up:?}"),
            ErrorKind::KEY_NOT_FOUND,
            backend.sign(request),
        );
    }

    // Encryption with a signing key.
    scope.fails(
        "encrypt with an asymmetric key",
        ErrorKind::INVALID_REQUEST,
        backend.encrypt(encrypt_request(a, &reference, b"data", b"", &random_iv())),
    );
    scope.fails(
        "decrypt with an asymmetric key and no padding",
        ErrorKind::INVALID_REQUEST,
        backend.decrypt(decrypt_request(a, &reference, &[1; 64], b"")),
    );
    if let PublicKey::Rsa(public) = &public {
        check_rsa_decrypt(
            &scope,
            backend,
            options,
            info.capabilities,
            &reference,
            public,
        );
    }

    scope.ok(
        "delete_key of a created key",
        backend.delete_key(rstring(a), rstring(&reference)),
    );
}

/// `public_key`: a PEM SubjectPublicKeyInfo that the reference crates parse, of the size or
/// curve of `key_type`.
fn check_public_key(
    scope: &Scope,
    backend: &BackendBox,
    options: &Options,
    key_type: &str,
    reference: &str,
) -> PublicKey {
    let pem = scope
        .ok(
            "public_key",
            backend.public_key(rstring(&options.tenant_a), rstring(reference)),
        )
        .into_string();
    scope.check(
        pem.trim_start().starts_with("-----BEGIN PUBLIC KEY-----")
            && pem.trim_end().ends_with("-----END PUBLIC KEY-----"),
        format!("public_key to be a PEM \"PUBLIC KEY\" (SubjectPublicKeyInfo), got {pem:?}"),
    );
    let pem = pem.trim();
    let rsa_bits = match key_type {
        key_type::RSA_2048 => Some(2048),
        key_type::RSA_3072 => Some(3072),
        key_type::RSA_4096 => Some(4096),
        _ => None,
    };
    if let Some(bits) = rsa_bits {
        let key = rsa::RsaPublicKey::from_public_key_pem(pem);
        scope.check(
            key.is_ok(),
            format!("public_key to parse as an RSA SubjectPublicKeyInfo: {pem}"),
        );
        let key = key.unwrap();
        scope.check(
            key.n().bits() == bits,
            format!("a {bits}-bit modulus, got {} bits", key.n().bits()),
        );
        return PublicKey::Rsa(key);
    }
    if key_type == key_type::ECDSA_P521 {
        let key = p521::PublicKey::from_public_key_pem(pem);
        scope.check(
            key.is_ok(),
            format!("public_key to parse as a P-521 SubjectPublicKeyInfo: {pem}"),
        );
        let key = p521::ecdsa::VerifyingKey::from_affine(*key.unwrap().as_affine());
        return PublicKey::P521(key.unwrap());
    }
    if key_type == key_type::ECDSA_P256 {
        let key = p256::ecdsa::VerifyingKey::from_public_key_pem(pem);
        scope.check(
            key.is_ok(),
            format!("public_key to parse as a P-256 SubjectPublicKeyInfo: {pem}"),
        );
        return PublicKey::P256(key.unwrap());
    }
    let key = p384::ecdsa::VerifyingKey::from_public_key_pem(pem);
    scope.check(
        key.is_ok(),
        format!("public_key to parse as a P-384 SubjectPublicKeyInfo: {pem}"),
    );
    PublicKey::P384(key.unwrap())
}

/// The digest hashed again with the same hash (what moto signs).
fn rehash(hash: &str, digest: &[u8]) -> Vec<u8> {
    digests(digest)
        .into_iter()
        .find(|(name, _)| *name == hash)
        .map(|(_, digest)| digest)
        .unwrap_or_default()
}

/// Verifies with the reference crates: RSASSA-PSS (salt = digest length, or with
/// `any_salt` also the maximum, MGF1 with the same hash), RSASSA-PKCS1-v1_5 with DigestInfo,
/// ECDSA over the prehashed digest from `r ‖ s`.
fn verifies_independently(
    public: &PublicKey,
    hash: &str,
    scheme: &str,
    digest: &[u8],
    signature: &[u8],
    any_salt: bool,
) -> bool {
    match public {
        PublicKey::Rsa(key) => {
            if scheme == "pss" {
                let max_salt = key.size().saturating_sub(digest.len() + 2);
                let salts = if any_salt {
                    vec![digest.len(), max_salt]
                } else {
                    vec![digest.len()]
                };
                return salts.into_iter().any(|salt| {
                    match hash {
                        "sha2-224" => {
                            key.verify(Pss::new_with_salt::<Sha224>(salt), digest, signature)
                        }
                        "sha2-256" => {
                            key.verify(Pss::new_with_salt::<Sha256>(salt), digest, signature)
                        }
                        "sha2-384" => {
                            key.verify(Pss::new_with_salt::<Sha384>(salt), digest, signature)
                        }
                        "sha2-512" => {
                            key.verify(Pss::new_with_salt::<Sha512>(salt), digest, signature)
                        }
                        _ => return false,
                    }
                    .is_ok()
                });
            }
            let result = match (scheme, hash) {
                ("pkcs1v15", "sha2-224") => {
                    key.verify(Pkcs1v15Sign::new::<Sha224>(), digest, signature)
                }
                ("pkcs1v15", "sha2-256") => {
                    key.verify(Pkcs1v15Sign::new::<Sha256>(), digest, signature)
                }
                ("pkcs1v15", "sha2-384") => {
                    key.verify(Pkcs1v15Sign::new::<Sha384>(), digest, signature)
                }
                ("pkcs1v15", "sha2-512") => {
                    key.verify(Pkcs1v15Sign::new::<Sha512>(), digest, signature)
                }
                _ => return false,
            };
            result.is_ok()
        }
        PublicKey::P256(key) => p256::ecdsa::Signature::from_slice(signature)
            .is_ok_and(|signature| key.verify_prehash(digest, &signature).is_ok()),
        PublicKey::P384(key) => p384::ecdsa::Signature::from_slice(signature)
            .is_ok_and(|signature| key.verify_prehash(digest, &signature).is_ok()),
        // The reference crate refuses a prehash shorter than half of P-521's scalar: the
        // same integer, zero-padded on the left to 66 bytes (what ECDSA signs for a digest
        // shorter than the order).
        PublicKey::P521(key) => {
            p521::ecdsa::Signature::from_slice(signature).is_ok_and(|signature| {
                let mut padded = vec![0u8; 66usize.saturating_sub(digest.len())];
                padded.extend_from_slice(digest);
                key.verify_prehash(&padded, &signature).is_ok()
            })
        }
    }
}

/// Pure Ed25519 (RFC 8032): the request's `digest` is the whole message and its
/// `hash_algorithm` is `none`. Creation; a PEM Ed25519 SubjectPublicKeyInfo; 64-byte,
/// deterministic signatures over messages of several lengths (empty, one byte, 4 KiB),
/// verified by the plugin and independently with `ed25519-dalek`; rejection of another
/// message and of corrupted, truncated and empty signatures (false, not an error); refusal
/// of any other `hash_algorithm` (Ed25519ph is not what the broker asks for) and of a
/// `signature_algorithm`; tenant isolation; refusal of encryption; deletion.
pub fn check_ed25519(backend: &BackendBox, options: &Options) {
    use ed25519_dalek::Verifier as _;
    let key_type = key_type::ED25519;
    let scope = Scope::for_backend(backend, format!("key type {key_type}"));
    let (a, b) = (options.tenant_a.as_str(), options.tenant_b.as_str());
    let reference = scope.create(backend, a, key_type);
    let pem = scope
        .ok(
            "public_key",
            backend.public_key(rstring(a), rstring(&reference)),
        )
        .into_string();
    let public = ed25519_dalek::VerifyingKey::from_public_key_pem(pem.trim());
    scope.check(
        public.is_ok(),
        format!("public_key to parse as an Ed25519 SubjectPublicKeyInfo: {pem:?}"),
    );
    let public = public.unwrap();

    let sign = |hash: &str, scheme: &str, message: &[u8]| SignRequest {
        tenant_id: rstring(a),
        key_reference: rstring(&reference),
        digest: RVec::from(message),
        hash_algorithm: rstring(hash),
        signature_algorithm: rstring(scheme),
    };
    let verify = |message: &[u8], signature: &[u8]| VerifyRequest {
        tenant_id: rstring(a),
        key_reference: rstring(&reference),
        digest: RVec::from(message),
        hash_algorithm: rstring(HASH_NONE),
        signature_algorithm: rstring(""),
        signature: RVec::from(signature),
    };

    let long = vec![0x5a; 4096];
    for message in [
        &b""[..],
        b"k",
        b"keybroker conformance: message to sign",
        &long,
    ] {
        let what = format!("a {}-byte message", message.len());
        let signature = scope.ok(
            format!("sign {what}"),
            backend.sign(sign(HASH_NONE, "", message)),
        );
        scope.check(
            signature.len() == 64,
            format!("a 64-byte signature over {what}, got {}", signature.len()),
        );
        let again = scope.ok(
            format!("sign {what} again"),
            backend.sign(sign(HASH_NONE, "", message)),
        );
        scope.check(
            again == signature,
            format!("pure Ed25519 to be deterministic ({what})"),
        );
        scope.check(
            ed25519_dalek::Signature::from_slice(&signature)
                .is_ok_and(|signature| public.verify(message, &signature).is_ok()),
            format!(
                "the signature over {what} to verify with the PEM public key and ed25519-dalek"
            ),
        );
        let valid = scope.ok(
            format!("verify {what}"),
            backend.verify(verify(message, &signature)),
        );
        scope.check(
            valid,
            format!("verify to accept its own signature ({what})"),
        );
        let valid = scope.ok(
            format!("verify against another message ({what})"),
            backend.verify(verify(b"another message", &signature)),
        );
        scope.check(
            !valid,
            format!("verify to reject the signature for another message ({what})"),
        );
        let mut corrupted = signature.to_vec();
        corrupted[10] ^= 0x04;
        for (name, bad) in [
            ("a corrupted", corrupted.as_slice()),
            ("a truncated", &signature[..63]),
            ("an empty", &[][..]),
        ] {
            let valid = scope.ok(
                format!("verify {name} signature ({what}): answer false, not an error"),
                backend.verify(verify(message, bad)),
            );
            scope.check(
                !valid,
                format!("verify to reject {name} signature ({what})"),
            );
        }
    }

    // The broker hashes nothing for Ed25519: any hash, or a scheme, is a malformed request.
    for (hash, scheme) in [
        ("sha2-256", ""),
        ("sha2-512", ""),
        ("", ""),
        (HASH_NONE, "pss"),
    ] {
        scope.fails(
            format!("sign with hash_algorithm {hash:?}, signature_algorithm {scheme:?}"),
            ErrorKind::INVALID_REQUEST,
            backend.sign(sign(hash, scheme, &Sha512::digest(b"m"))),
        );
    }

    let mut as_b = sign(HASH_NONE, "", b"m");
    as_b.tenant_id = rstring(b);
    scope.not_found_for(
        "sign with tenant A's key as tenant B",
        a,
        backend.sign(as_b),
    );
    let mut as_b = verify(b"m", &[0; 64]);
    as_b.tenant_id = rstring(b);
    scope.not_found_for(
        "verify with tenant A's key as tenant B",
        a,
        backend.verify(as_b),
    );
    scope.not_found_for(
        "public_key of tenant A's key as tenant B",
        a,
        backend.public_key(rstring(b), rstring(&reference)),
    );
    for made_up in made_up_references(&reference) {
        let mut request = sign(HASH_NONE, "", b"m");
        request.key_reference = rstring(&made_up);
        scope.fails(
            format!("sign with the made-up reference {made_up:?}"),
            ErrorKind::KEY_NOT_FOUND,
            backend.sign(request),
        );
    }
    scope.fails(
        "encrypt with an Ed25519 key",
        ErrorKind::INVALID_REQUEST,
        backend.encrypt(encrypt_request(a, &reference, b"data", b"", &random_iv())),
    );
    scope.ok(
        "delete_key of a created key",
        backend.delete_key(rstring(a), rstring(&reference)),
    );
}

/// A key type the backend cannot hold: `create_key` must fail with `INVALID_REQUEST` (a 400
/// at the broker) whose message names the plugin (its `info().name`) and the type, so that
/// the caller learns which backend refused what.
pub fn check_refuses_key_type(backend: &BackendBox, options: &Options, key_type: &str) {
    let scope = Scope::for_backend(backend, format!("key type {key_type}"));
    let info = scope.ok("info()", backend.info());
    let error = scope.fails(
        format!("create_key({key_type}), a type this backend cannot hold"),
        ErrorKind::INVALID_REQUEST,
        backend.create_key(crate::scope::create_request(&options.tenant_a, key_type)),
    );
    let message = error.message.as_str();
    scope.check(
        message.contains(info.name.as_str()) && message.contains(key_type),
        format!(
            "the refusal to name the backend {:?} and the type {key_type:?}, got {message:?}",
            info.name.as_str()
        ),
    );
}

/// RSA decryption (`capability::ASYMMETRIC_DECRYPT`): each padding the plugin says it can
/// use (asked with an empty ciphertext; at least one) decrypts what the `rsa` crate
/// encrypted with the key's public key, plaintexts of 0 bytes to the padding's maximum; a
/// corrupted OAEP ciphertext and a ciphertext of the wrong length are refused
/// (`INVALID_REQUEST`), an unknown padding fails, and tenant B is refused. Without the capability, decrypting
/// a genuine ciphertext must be refused with `INVALID_REQUEST`.
fn check_rsa_decrypt(
    scope: &Scope,
    backend: &BackendBox,
    options: &Options,
    capabilities: u64,
    reference: &str,
    public: &rsa::RsaPublicKey,
) {
    use keybroker_plugin_abi::{RSA_PADDING_OAEP_SHA256, RSA_PADDING_PKCS1V15};
    use rsa::{Oaep, Pkcs1v15Encrypt};
    let (a, b) = (options.tenant_a.as_str(), options.tenant_b.as_str());
    let mut rng = rand::rngs::OsRng;
    let oaep = |plaintext: &[u8]| {
        public
            .encrypt(&mut rand::rngs::OsRng, Oaep::new::<Sha256>(), plaintext)
            .unwrap()
    };
    if capabilities & capability::ASYMMETRIC_DECRYPT == 0 {
        scope.fails(
            "RSA decrypt (oaep-sha256) without the ASYMMETRIC_DECRYPT capability",
            ErrorKind::INVALID_REQUEST,
            backend.decrypt(decrypt_request(
                a,
                reference,
                &oaep(b"secret"),
                RSA_PADDING_OAEP_SHA256.as_bytes(),
            )),
        );
        return;
    }
    let size = public.size();
    // OAEP with SHA-256 takes at most size - 66 bytes; PKCS #1 v1.5 size - 11.
    let paddings = [
        (RSA_PADDING_OAEP_SHA256, size - 66),
        (RSA_PADDING_PKCS1V15, size - 11),
    ];
    let mut usable = 0;
    for (padding, max) in paddings {
        let asked = backend
            .decrypt(decrypt_request(a, reference, &[], padding.as_bytes()))
            .into_result();
        match asked {
            Ok(empty) => scope.check(
                empty.is_empty(),
                format!("asking about padding {padding} with an empty ciphertext to answer empty"),
            ),
            Err(error) => {
                scope.check(
                    error.kind == ErrorKind::INVALID_REQUEST && !error.message.is_empty(),
                    format!(
                        "a padding the plugin cannot use ({padding}) to be refused with \
                         INVALID_REQUEST and a reason, got {:?}",
                        error.message.as_str()
                    ),
                );
                continue;
            }
        }
        usable += 1;
        for len in [0, 1, 32, max] {
            let plaintext: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let ciphertext = if padding == RSA_PADDING_OAEP_SHA256 {
                oaep(&plaintext)
            } else {
                public
                    .encrypt(&mut rng, Pkcs1v15Encrypt, &plaintext)
                    .unwrap()
            };
            let opened = scope.ok(
                format!("RSA decrypt ({padding}) of a {len}-byte plaintext"),
                backend.decrypt(decrypt_request(
                    a,
                    reference,
                    &ciphertext,
                    padding.as_bytes(),
                )),
            );
            scope.check(
                opened.as_slice() == plaintext.as_slice(),
                format!("RSA decrypt ({padding}) of a {len}-byte plaintext to give it back"),
            );
            let mut as_b = decrypt_request(a, reference, &ciphertext, padding.as_bytes());
            as_b.tenant_id = rstring(b);
            scope.not_found_for(
                format!("RSA decrypt ({padding}) with tenant A's key as tenant B"),
                a,
                backend.decrypt(as_b),
            );
            scope.fails(
                format!("RSA decrypt ({padding}) of a ciphertext one byte short"),
                ErrorKind::INVALID_REQUEST,
                backend.decrypt(decrypt_request(
                    a,
                    reference,
                    &ciphertext[1..],
                    padding.as_bytes(),
                )),
            );
        }
        if padding == RSA_PADDING_OAEP_SHA256 {
            let mut corrupted = oaep(b"secret");
            corrupted[size / 2] ^= 1;
            scope.fails(
                "RSA decrypt (oaep-sha256) of a corrupted ciphertext",
                ErrorKind::INVALID_REQUEST,
                backend.decrypt(decrypt_request(
                    a,
                    reference,
                    &corrupted,
                    padding.as_bytes(),
                )),
            );
        }
    }
    scope.check(
        usable > 0,
        "an instance with ASYMMETRIC_DECRYPT to decrypt with oaep-sha256 or pkcs1v15",
    );
    // Not a padding the broker names: the plugin may take the request for another key's.
    scope.check(
        backend
            .decrypt(decrypt_request(a, reference, &oaep(b"x"), b"oaep-sha1"))
            .is_err(),
        "RSA decrypt with an unknown padding to fail",
    );
}
