//! Private key transfer ([`capability::PRIVATE_KEY_TRANSFER`]): `export_private_key` and
//! `import_private_key`, each key checked independently with the `rsa`, `p256`, `p384`,
//! `p521` and `ed25519-dalek` crates.

use base64::engine::{
    general_purpose::{GeneralPurpose, STANDARD, URL_SAFE},
    Engine as _,
};
use ed25519_dalek::{Signer as _, Verifier as _};
use keybroker_plugin_abi::{
    abi_stable::std_types::RVec, capability, key_type, BackendBox, ErrorKind, ImportKeyRequest,
    PluginError, SignRequest, VerifyRequest, HASH_NONE,
};
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use rsa::{pkcs8::DecodePublicKey as _, traits::PublicKeyParts as _};

use super::{digests, verifies_independently, PublicKey};
use crate::scope::{made_up_references, random_uuid, rstring, Scope};
use crate::Options;

/// A private key as the reference crates hold it.
enum Private {
    Rsa(Box<rsa::RsaPrivateKey>),
    P256(p256::SecretKey),
    P384(p384::SecretKey),
    P521(p521::SecretKey),
    Ed25519(ed25519_dalek::SigningKey),
}

impl Private {
    /// A fresh key of `key_type`, made by the test rather than the backend.
    fn generate(key_type: &str) -> Self {
        let mut rng = rand::rngs::OsRng;
        match key_type {
            key_type::ECDSA_P256 => Self::P256(p256::SecretKey::random(&mut rng)),
            key_type::ECDSA_P384 => Self::P384(p384::SecretKey::random(&mut rng)),
            key_type::ECDSA_P521 => Self::P521(p521::SecretKey::random(&mut rng)),
            key_type::ED25519 => {
                Self::Ed25519(ed25519_dalek::SigningKey::from_bytes(&rand::random::<
                    [u8; 32],
                >()))
            }
            _ => {
                let bits = rsa_bits(key_type)
                    .unwrap_or_else(|| panic!("conformance: unknown key type {key_type:?}"));
                Self::Rsa(Box::new(rsa::RsaPrivateKey::new(&mut rng, bits).unwrap()))
            }
        }
    }

    /// Parses PKCS #8 DER as exactly `key_type` (an RSA key of that size, a key on that
    /// curve), or `None`.
    fn parse(key_type: &str, der: &[u8]) -> Option<Self> {
        let key = match key_type {
            key_type::ECDSA_P256 => Self::P256(p256::SecretKey::from_pkcs8_der(der).ok()?),
            key_type::ECDSA_P384 => Self::P384(p384::SecretKey::from_pkcs8_der(der).ok()?),
            key_type::ECDSA_P521 => Self::P521(p521::SecretKey::from_pkcs8_der(der).ok()?),
            key_type::ED25519 => {
                Self::Ed25519(ed25519_dalek::SigningKey::from_pkcs8_der(der).ok()?)
            }
            _ => {
                let key = rsa::RsaPrivateKey::from_pkcs8_der(der).ok()?;
                if Some(key.n().bits()) != rsa_bits(key_type) || key.validate().is_err() {
                    return None;
                }
                Self::Rsa(Box::new(key))
            }
        };
        Some(key)
    }

    fn to_pkcs8(&self) -> Vec<u8> {
        match self {
            Self::Rsa(key) => key.to_pkcs8_der(),
            Self::P256(key) => key.to_pkcs8_der(),
            Self::P384(key) => key.to_pkcs8_der(),
            Self::P521(key) => key.to_pkcs8_der(),
            Self::Ed25519(key) => key.to_pkcs8_der(),
        }
        .unwrap()
        .as_bytes()
        .to_vec()
    }

    /// Whether `pem`, a SubjectPublicKeyInfo, is this key's public key.
    fn has_public_key(&self, pem: &str) -> bool {
        let pem = pem.trim();
        match self {
            Self::Rsa(key) => rsa::RsaPublicKey::from_public_key_pem(pem)
                .is_ok_and(|public| public == key.to_public_key()),
            Self::P256(key) => {
                p256::PublicKey::from_public_key_pem(pem).is_ok_and(|p| p == key.public_key())
            }
            Self::P384(key) => {
                p384::PublicKey::from_public_key_pem(pem).is_ok_and(|p| p == key.public_key())
            }
            Self::P521(key) => {
                p521::PublicKey::from_public_key_pem(pem).is_ok_and(|p| p == key.public_key())
            }
            Self::Ed25519(key) => ed25519_dalek::VerifyingKey::from_public_key_pem(pem)
                .is_ok_and(|p| p == key.verifying_key()),
        }
    }

    /// The SubjectPublicKeyInfo, DER: a well-formed key that is not a private key.
    fn public_der(&self) -> Vec<u8> {
        use rsa::pkcs8::EncodePublicKey as _;
        match self {
            Self::Rsa(key) => key.to_public_key().to_public_key_der(),
            Self::P256(key) => key.public_key().to_public_key_der(),
            Self::P384(key) => key.public_key().to_public_key_der(),
            Self::P521(key) => key.public_key().to_public_key_der(),
            Self::Ed25519(key) => key.verifying_key().to_public_key_der(),
        }
        .unwrap()
        .as_bytes()
        .to_vec()
    }

    /// The public key the ECDSA and RSA checks verify with; `None` for Ed25519.
    fn verifier(&self) -> Option<PublicKey> {
        Some(match self {
            Self::Rsa(key) => PublicKey::Rsa(key.to_public_key()),
            Self::P256(key) => PublicKey::P256(key.public_key().into()),
            Self::P384(key) => PublicKey::P384(key.public_key().into()),
            Self::P521(key) => PublicKey::P521(
                p521::ecdsa::VerifyingKey::from_affine(*key.public_key().as_affine()).unwrap(),
            ),
            Self::Ed25519(_) => return None,
        })
    }
}

/// `key` as PKCS #8 with one bit of its private exponent flipped: well-formed DER of the
/// right size whose components do not make a key.
fn inconsistent_rsa(key: &rsa::RsaPrivateKey) -> Vec<u8> {
    use rsa::pkcs1::{der::Decode as _, der::Encode as _, EncodeRsaPrivateKey as _};
    let pkcs1 = key.to_pkcs1_der().unwrap();
    let mut fields = rsa::pkcs1::RsaPrivateKey::from_der(pkcs1.as_bytes()).unwrap();
    let mut exponent = fields.private_exponent.as_bytes().to_vec();
    *exponent.last_mut().unwrap() ^= 0x02;
    fields.private_exponent = rsa::pkcs1::UintRef::new(&exponent).unwrap();
    let inner = fields.to_der().unwrap();
    rsa::pkcs8::PrivateKeyInfo::new(rsa::pkcs1::ALGORITHM_ID, &inner)
        .to_der()
        .unwrap()
}

fn rsa_bits(key_type: &str) -> Option<usize> {
    match key_type {
        key_type::RSA_2048 => Some(2048),
        key_type::RSA_3072 => Some(3072),
        key_type::RSA_4096 => Some(4096),
        _ => None,
    }
}

fn import_request(tenant_id: &str, key_type: &str, pkcs8: &[u8]) -> ImportKeyRequest {
    ImportKeyRequest {
        tenant_id: rstring(tenant_id),
        key_id: rstring(&random_uuid()),
        key_type: rstring(key_type),
        pkcs8: RVec::from(pkcs8),
    }
}

/// Private key transfer for one asymmetric key type, on a backend that reports
/// [`capability::PRIVATE_KEY_TRANSFER`] (a backend without it is checked by
/// [`check_no_private_key_transfer`] instead):
///
/// - the capability comes with `SIGN` and `BROKER_HELD`;
/// - a created key exports as PKCS #8 DER that the reference crates parse as exactly
///   `key_type`, whose public key is the backend's `public_key`;
/// - that PKCS #8, imported under a new key id, gives a new reference with the same public
///   key, which signs with every hash and scheme of the type (signatures verify under the
///   original reference, by the backend, and independently; the original's verify under
///   the new one); exporting the new reference gives the same key;
/// - a key generated by the test, imported, has the test's public key, signs what the
///   test verifies with its own key, and exports back as the same key;
/// - tenant B cannot export tenant A's keys, created or imported (`KEY_NOT_FOUND`, not
///   naming tenant A), nor sign with an imported one; made-up references are
///   `KEY_NOT_FOUND`; exporting an `aes256-gcm96` key is `INVALID_REQUEST` naming that type;
/// - importing garbage (empty, random bytes, truncated DER, a public key), a key of any
///   other asymmetric type (another curve, another RSA size, Ed25519 as ECDSA…) and a key
///   under a symmetric or unknown key type are `INVALID_REQUEST` naming the requested type;
///   so are, for RSA, a key whose private exponent does not match its public one, and for
///   Ed25519, a PKCS #8 v2 whose public key is not the seed's;
/// - no error message carries the PKCS #8 (hex, base64 or a byte list);
/// - the instance stays healthy, and every key it made is deleted.
pub fn check_private_key_transfer(backend: &BackendBox, options: &Options, key_type: &str) {
    let scope = Scope::for_backend(
        backend,
        format!("key type {key_type}, private key transfer"),
    );
    let info = scope.ok("info()", backend.info());
    if info.capabilities & capability::PRIVATE_KEY_TRANSFER == 0 {
        check_no_private_key_transfer(backend, options);
        return;
    }
    scope.check(
        key_type::ASYMMETRIC.contains(&key_type),
        format!("{key_type:?} to be one of {:?}", key_type::ASYMMETRIC),
    );
    scope.check(
        info.capabilities & capability::SIGN != 0
            && info.capabilities & capability::BROKER_HELD != 0,
        format!(
            "an instance reporting PRIVATE_KEY_TRANSFER to report SIGN and BROKER_HELD too \
             (capabilities {:#b})",
            info.capabilities
        ),
    );
    let (a, b) = (options.tenant_a.as_str(), options.tenant_b.as_str());
    let mut made = Vec::new();

    // Export of a key the backend made.
    let original = scope.create(backend, a, key_type);
    made.push(original.clone());
    let exported = scope.ok(
        "export_private_key of a created key",
        backend.export_private_key(rstring(a), rstring(&original)),
    );
    let parsed = Private::parse(key_type, &exported);
    scope.check(
        parsed.is_some(),
        format!(
            "the exported private key to parse as a PKCS #8 {key_type} key ({} bytes)",
            exported.len()
        ),
    );
    let parsed = parsed.unwrap();
    let pem = public_key(&scope, backend, a, &original);
    scope.check(
        parsed.has_public_key(&pem),
        "the exported private key's public key to be the backend's public_key",
    );

    // Its PKCS #8, imported as a new key.
    let imported = import(&scope, backend, a, key_type, &exported, &made);
    made.push(imported.clone());
    scope.check(
        parsed.has_public_key(&public_key(&scope, backend, a, &imported)),
        "the imported key's public_key to be the exported key's",
    );
    check_signs_as(
        &scope, backend, options, key_type, &imported, &original, &parsed,
    );
    check_signs_as(
        &scope, backend, options, key_type, &original, &imported, &parsed,
    );
    let again = scope.ok(
        "export_private_key of an imported key",
        backend.export_private_key(rstring(a), rstring(&imported)),
    );
    scope.check(
        Private::parse(key_type, &again).is_some_and(|key| key.has_public_key(&pem)),
        "the imported key to export as a PKCS #8 key with the original's public key",
    );

    // A key the test made.
    let own = Private::generate(key_type);
    let own_der = own.to_pkcs8();
    let own_reference = import(&scope, backend, a, key_type, &own_der, &made);
    made.push(own_reference.clone());
    let own_pem = public_key(&scope, backend, a, &own_reference);
    scope.check(
        own.has_public_key(&own_pem),
        "a key made by the test, imported, to have the test's public key",
    );
    check_signs_as(
        &scope,
        backend,
        options,
        key_type,
        &own_reference,
        &own_reference,
        &own,
    );
    let own_again = scope.ok(
        "export_private_key of a key made by the test",
        backend.export_private_key(rstring(a), rstring(&own_reference)),
    );
    scope.check(
        Private::parse(key_type, &own_again).is_some_and(|key| key.has_public_key(&own_pem)),
        "a key made by the test to export as a PKCS #8 key with the test's public key",
    );

    // Tenant isolation and references the backend never handed out.
    for (what, reference) in [("created", &original), ("imported", &imported)] {
        let error = scope.fails(
            format!("export_private_key of tenant A's {what} key as tenant B"),
            ErrorKind::KEY_NOT_FOUND,
            backend.export_private_key(rstring(b), rstring(reference)),
        );
        no_owner(&scope, &error, a, "export as tenant B");
        no_material(&scope, &error, &exported, "export as tenant B");
    }
    let mut as_b = sign_request(a, &imported, key_type, options);
    as_b.tenant_id = rstring(b);
    scope.not_found_for(
        "sign with tenant A's imported key as tenant B",
        a,
        backend.sign(as_b),
    );
    scope.not_found_for(
        "public_key of tenant A's imported key as tenant B",
        a,
        backend.public_key(rstring(b), rstring(&imported)),
    );
    for made_up in made_up_references(&original) {
        let error = scope.fails(
            format!("export_private_key of the made-up reference {made_up:?}"),
            ErrorKind::KEY_NOT_FOUND,
            backend.export_private_key(rstring(a), rstring(&made_up)),
        );
        no_material(&scope, &error, &exported, "export of a made-up reference");
    }
    let symmetric = scope.create(backend, a, key_type::AES256_GCM96);
    let error = scope.fails(
        "export_private_key of an aes256-gcm96 key",
        ErrorKind::INVALID_REQUEST,
        backend.export_private_key(rstring(a), rstring(&symmetric)),
    );
    names(
        &scope,
        &error,
        key_type::AES256_GCM96,
        "export of a symmetric key",
    );
    scope.ok(
        "delete_key of a created key",
        backend.delete_key(rstring(a), rstring(&symmetric)),
    );

    // Imports that must be refused.
    let mut truncated = own_der.clone();
    truncated.pop();
    let random: Vec<u8> = (0..own_der.len()).map(|_| rand::random()).collect();
    let garbage: [(&str, &[u8]); 5] = [
        ("empty bytes", &[]),
        ("random bytes", &random),
        ("text", b"-----BEGIN PRIVATE KEY----- not a key"),
        ("a PKCS #8 one byte short", &truncated),
        ("the key's SubjectPublicKeyInfo", &own.public_der()),
    ];
    for (what, bytes) in garbage {
        refused_import(&scope, backend, a, key_type, bytes, &own_der, what);
    }
    for other in key_type::ASYMMETRIC {
        if other == key_type {
            continue;
        }
        for (whose, der) in [
            ("the exported", exported.as_slice()),
            ("the test's", own_der.as_slice()),
        ] {
            refused_import(
                &scope,
                backend,
                a,
                other,
                der,
                der,
                &format!("{whose} {key_type} key as {other}"),
            );
        }
    }
    for wrong_type in [key_type::AES256_GCM96, "conformance-unknown"] {
        refused_import(
            &scope,
            backend,
            a,
            wrong_type,
            &own_der,
            &own_der,
            &format!("a {key_type} key as the non-asymmetric type {wrong_type}"),
        );
    }
    if let Private::Rsa(key) = &own {
        refused_import(
            &scope,
            backend,
            a,
            key_type,
            &inconsistent_rsa(key),
            &own_der,
            "an RSA key whose private exponent does not invert the public one",
        );
    }
    if let Private::Ed25519(key) = &own {
        let stranger = ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>());
        let mismatched = ed25519_dalek::pkcs8::KeypairBytes {
            secret_key: key.to_bytes(),
            public_key: Some(ed25519_dalek::pkcs8::PublicKeyBytes(
                stranger.verifying_key().to_bytes(),
            )),
        }
        .to_pkcs8_der()
        .unwrap();
        refused_import(
            &scope,
            backend,
            a,
            key_type,
            mismatched.as_bytes(),
            mismatched.as_bytes(),
            "a PKCS #8 v2 whose public key is not the seed's",
        );
    }

    // Nothing broke, and the original still signs.
    check_signs_as(
        &scope, backend, options, key_type, &original, &original, &parsed,
    );
    scope.ok("health() after the refusals", backend.health());
    for reference in made {
        scope.ok(
            "delete_key of a created or imported key",
            backend.delete_key(rstring(a), rstring(&reference)),
        );
    }
}

/// A backend without [`capability::PRIVATE_KEY_TRANSFER`]: `export_private_key` (of a key
/// it made, of tenant B's view of it, of a made-up reference) and `import_private_key`
/// (of a genuine P-256 and Ed25519 PKCS #8, of garbage, under a symmetric type) all answer
/// `INVALID_REQUEST` with a reason, and nothing else: no other kind, no panic (which the
/// FFI layer turns into `INTERNAL`), no key material in the message; the instance stays
/// healthy and still serves the key.
pub fn check_no_private_key_transfer(backend: &BackendBox, options: &Options) {
    let scope = Scope::for_backend(backend, "private key transfer (not supported)");
    let info = scope.ok("info()", backend.info());
    scope.check(
        info.capabilities & capability::PRIVATE_KEY_TRANSFER == 0,
        "an instance reporting PRIVATE_KEY_TRANSFER to be checked with \
         check_private_key_transfer",
    );
    let (a, b) = (options.tenant_a.as_str(), options.tenant_b.as_str());
    let mut references = vec![scope.create(backend, a, key_type::AES256_GCM96)];
    if info.capabilities & capability::SIGN != 0 {
        if let Some(asymmetric) = options.asymmetric_key_types.first() {
            references.push(scope.create(backend, a, asymmetric));
        }
    }
    let unsupported = |what: &str, error: &PluginError| {
        scope.check(
            !error.message.is_empty(),
            format!("{what}: the refusal to give a reason"),
        );
    };
    for reference in &references {
        for (whose, tenant) in [("tenant A", a), ("tenant B", b)] {
            let what = format!("export_private_key of tenant A's key as {whose}");
            let error = scope.fails(
                &what,
                ErrorKind::INVALID_REQUEST,
                backend.export_private_key(rstring(tenant), rstring(reference)),
            );
            unsupported(&what, &error);
        }
        for made_up in made_up_references(reference) {
            let what = format!("export_private_key of the made-up reference {made_up:?}");
            let error = scope.fails(
                &what,
                ErrorKind::INVALID_REQUEST,
                backend.export_private_key(rstring(a), rstring(&made_up)),
            );
            unsupported(&what, &error);
        }
    }
    let p256 = Private::generate(key_type::ECDSA_P256).to_pkcs8();
    let ed25519 = Private::generate(key_type::ED25519).to_pkcs8();
    let imports: [(&str, &[u8], &str); 4] = [
        ("a P-256 PKCS #8", &p256, key_type::ECDSA_P256),
        ("an Ed25519 PKCS #8", &ed25519, key_type::ED25519),
        ("random bytes", &[7; 64], key_type::ECDSA_P256),
        (
            "a P-256 PKCS #8 as a symmetric key",
            &p256,
            key_type::AES256_GCM96,
        ),
    ];
    for (what, der, as_type) in imports {
        let what = format!("import_private_key of {what} ({as_type})");
        let error = scope.fails(
            &what,
            ErrorKind::INVALID_REQUEST,
            backend.import_private_key(import_request(a, as_type, der)),
        );
        unsupported(&what, &error);
        no_material(&scope, &error, der, &what);
    }
    scope.ok("health() after the refusals", backend.health());
    scope.ok(
        "public_key or encrypt still served after the refusals",
        match references.get(1) {
            Some(asymmetric) => backend
                .public_key(rstring(a), rstring(asymmetric))
                .map(|_| ()),
            None => backend
                .encrypt(crate::scope::encrypt_request(
                    a,
                    &references[0],
                    b"still here",
                    b"",
                    &crate::scope::random_iv(),
                ))
                .map(|_| ()),
        },
    );
    for reference in references {
        scope.ok(
            "delete_key of a created key",
            backend.delete_key(rstring(a), rstring(&reference)),
        );
    }
}

fn public_key(scope: &Scope, backend: &BackendBox, tenant: &str, reference: &str) -> String {
    scope
        .ok(
            "public_key",
            backend.public_key(rstring(tenant), rstring(reference)),
        )
        .into_string()
}

/// Imports `der` as `key_type` for `tenant`: a non-empty reference unlike any in `taken`.
#[track_caller]
fn import(
    scope: &Scope,
    backend: &BackendBox,
    tenant: &str,
    key_type: &str,
    der: &[u8],
    taken: &[String],
) -> String {
    let handle = scope.ok(
        format!("import_private_key of a PKCS #8 {key_type} key"),
        backend.import_private_key(import_request(tenant, key_type, der)),
    );
    let reference = handle.reference.into_string();
    scope.check(
        !reference.is_empty() && !taken.contains(&reference),
        format!("import_private_key to return a new, non-empty reference, got {reference:?}"),
    );
    reference
}

/// An import that must be `INVALID_REQUEST`, naming `key_type` and not carrying `secret`.
#[track_caller]
fn refused_import(
    scope: &Scope,
    backend: &BackendBox,
    tenant: &str,
    key_type: &str,
    der: &[u8],
    secret: &[u8],
    what: &str,
) {
    let what = format!("import_private_key of {what}");
    let error = scope.fails(
        &what,
        ErrorKind::INVALID_REQUEST,
        backend.import_private_key(import_request(tenant, key_type, der)),
    );
    names(scope, &error, key_type, &what);
    no_material(scope, &error, secret, &what);
    no_material(scope, &error, der, &what);
}

/// A sign request for `reference` with the type's first hash and scheme.
fn sign_request(tenant: &str, reference: &str, key_type: &str, options: &Options) -> SignRequest {
    let (hash, scheme, digest) = if key_type == key_type::ED25519 {
        (HASH_NONE, "", b"m".to_vec())
    } else {
        let hash = (options.signing_hashes)(key_type)[0];
        let digest = digests(b"m")
            .into_iter()
            .find(|(name, _)| *name == hash)
            .map(|(_, digest)| digest)
            .unwrap_or_default();
        let scheme = if rsa_bits(key_type).is_some() {
            "pss"
        } else {
            ""
        };
        (hash, scheme, digest)
    };
    SignRequest {
        tenant_id: rstring(tenant),
        key_reference: rstring(reference),
        digest: RVec::from(digest),
        hash_algorithm: rstring(hash),
        signature_algorithm: rstring(scheme),
    }
}

/// `signer` signs with every hash and scheme of the type; each signature verifies under
/// `verifier` (another reference to the same key, or the same), and independently with
/// `key`'s public key. For Ed25519, the signature is the one `key` itself makes.
#[allow(clippy::too_many_arguments)]
fn check_signs_as(
    scope: &Scope,
    backend: &BackendBox,
    options: &Options,
    key_type: &str,
    signer: &str,
    verifier: &str,
    key: &Private,
) {
    let a = options.tenant_a.as_str();
    let verify = |hash: &str, scheme: &str, digest: &[u8], signature: &[u8]| {
        backend.verify(VerifyRequest {
            tenant_id: rstring(a),
            key_reference: rstring(verifier),
            digest: RVec::from(digest),
            hash_algorithm: rstring(hash),
            signature_algorithm: rstring(scheme),
            signature: RVec::from(signature),
        })
    };
    let sign = |hash: &str, scheme: &str, digest: &[u8]| {
        backend.sign(SignRequest {
            tenant_id: rstring(a),
            key_reference: rstring(signer),
            digest: RVec::from(digest),
            hash_algorithm: rstring(hash),
            signature_algorithm: rstring(scheme),
        })
    };
    if let Private::Ed25519(key) = key {
        let message = b"keybroker conformance: a transferred key signs";
        let signature = scope.ok(
            "sign with a transferred Ed25519 key",
            sign(HASH_NONE, "", message),
        );
        scope.check(
            signature.as_slice() == key.sign(message).to_bytes().as_slice(),
            "a transferred Ed25519 key to sign as the key itself does (RFC 8032 is \
             deterministic)",
        );
        scope.check(
            ed25519_dalek::Signature::from_slice(&signature)
                .is_ok_and(|s| key.verifying_key().verify(message, &s).is_ok()),
            "the signature of a transferred Ed25519 key to verify with ed25519-dalek",
        );
        let valid = scope.ok(
            "verify a transferred Ed25519 key's signature under the other reference",
            verify(HASH_NONE, "", message, &signature),
        );
        scope.check(valid, "the other reference to accept the signature");
        return;
    }
    let public = key.verifier().unwrap();
    let schemes: &[&str] = if matches!(public, PublicKey::Rsa(_)) {
        &["pss", "pkcs1v15"]
    } else {
        &[""]
    };
    let supported = (options.signing_hashes)(key_type);
    for (hash, digest) in digests(b"keybroker conformance: a transferred key signs") {
        if !supported.contains(&hash) {
            continue;
        }
        for scheme in schemes {
            let what = format!("{hash} digest, signature_algorithm {scheme:?}");
            let signature = scope.ok(
                format!("sign a {what} with a transferred key"),
                sign(hash, scheme, &digest),
            );
            scope.check(
                verifies_independently(&public, hash, scheme, &digest, &signature, false),
                format!(
                    "the signature of a transferred key over a {what} to verify with the \
                     key's own public key and the reference crates"
                ),
            );
            let valid = scope.ok(
                format!("verify a transferred key's signature over a {what}"),
                verify(hash, scheme, &digest, &signature),
            );
            scope.check(
                valid,
                format!("the other reference to the same key to accept the signature ({what})"),
            );
        }
    }
}

/// The message names `expected` (the key type the refusal is about).
#[track_caller]
fn names(scope: &Scope, error: &PluginError, expected: &str, what: &str) {
    let message = error.message.as_str();
    scope.check(
        message.contains(expected),
        format!("{what}: the refusal to name the key type {expected:?}, got {message:?}"),
    );
}

#[track_caller]
fn no_owner(scope: &Scope, error: &PluginError, owner: &str, what: &str) {
    scope.check(
        !error.message.as_str().contains(owner),
        format!("{what}: the error message must not name the owning tenant"),
    );
}

/// The message carries no 12-byte run of `der`, as hex, base64 (standard or URL-safe) or
/// a Rust byte list.
#[track_caller]
fn no_material(scope: &Scope, error: &PluginError, der: &[u8], what: &str) {
    scope.check(
        !leaks(error.message.as_str(), der),
        format!(
            "{what}: the error message must not carry the PKCS #8 bytes (got a message of {} \
             characters)",
            error.message.len()
        ),
    );
}

fn leaks(message: &str, der: &[u8]) -> bool {
    const RUN: usize = 12;
    if der.len() < RUN {
        return false;
    }
    let lower = message.to_ascii_lowercase();
    let compact: String = message.chars().filter(|c| !c.is_whitespace()).collect();
    for window in der.windows(RUN) {
        let hex: String = window.iter().map(|byte| format!("{byte:02x}")).collect();
        let list = window
            .iter()
            .map(u8::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        if lower.contains(&hex) || message.contains(&list) {
            return true;
        }
    }
    // Base64 of a run starting at any byte: encode from three offsets, and look for every
    // 16-character (12-byte) group-aligned piece.
    for offset in 0..3 {
        for engine in [&STANDARD, &URL_SAFE] {
            let encoded = base64(&der[offset..], engine);
            let encoded = encoded.as_bytes();
            let mut start = 0;
            while start + 16 <= encoded.len() {
                let piece = std::str::from_utf8(&encoded[start..start + 16]).unwrap();
                if compact.contains(piece) {
                    return true;
                }
                start += 4;
            }
        }
    }
    false
}

/// Base64 of the whole 3-byte groups of `bytes` (the tail is left off, so the text stays
/// group-aligned and any 16 characters of it can be searched for).
fn base64(bytes: &[u8], engine: &GeneralPurpose) -> String {
    engine.encode(&bytes[..bytes.len() / 3 * 3])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaks_finds_the_material_in_every_encoding() {
        let der: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
        let piece = &der[5..40];
        let hex: String = piece.iter().map(|b| format!("{b:02X}")).collect();
        assert!(leaks(&format!("bad key {hex}"), &der));
        assert!(leaks(&format!("bad key {}", hex.to_lowercase()), &der));
        assert!(leaks(&format!("bad key {piece:?}"), &der));
        for engine in [&STANDARD, &URL_SAFE] {
            assert!(leaks(&format!("bad key {}", base64(piece, engine)), &der));
            assert!(leaks(&format!("bad key {}", base64(&der, engine)), &der));
        }
        assert!(!leaks(
            "the private key is not a PKCS #8 ecdsa-p256 private key",
            &der
        ));
        assert!(!leaks(&format!("{:?}", &der[..8]), &der));
    }

    #[test]
    fn base64_keeps_whole_groups_only() {
        assert_eq!(base64(b"foobar", &STANDARD), "Zm9vYmFy");
        assert_eq!(base64(b"foobarx", &STANDARD), "Zm9vYmFy");
        assert_eq!(base64(b"\xfb\xff\xfe", &URL_SAFE), "-__-");
    }

    #[test]
    fn keys_round_trip_through_pkcs8() {
        for key_type in [
            key_type::ECDSA_P256,
            key_type::ECDSA_P384,
            key_type::ED25519,
        ] {
            let key = Private::generate(key_type);
            let der = key.to_pkcs8();
            assert!(Private::parse(key_type, &der).is_some(), "{key_type}");
            for other in [
                key_type::ECDSA_P256,
                key_type::ECDSA_P521,
                key_type::ED25519,
            ] {
                if other != key_type {
                    assert!(
                        Private::parse(other, &der).is_none(),
                        "{key_type} as {other}"
                    );
                }
            }
            assert!(Private::parse(key_type, &key.public_der()).is_none());
        }
    }
}
