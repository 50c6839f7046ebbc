//! Key types, the templates keys are created with, and what an object found in the token is.

use cryptoki::{
    error::Error as CkError,
    mechanism::{Mechanism, MechanismType},
    object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle},
    session::Session,
};
use keybroker_plugin_abi::{key_type, PluginError};
use keybroker_plugin_sdk::entry::unsupported_key_type;

use crate::NAME;

/// DER of the OID of NIST P-256 (`prime256v1`), as `CKA_EC_PARAMS` holds it.
const P256_OID_DER: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER of the OID of NIST P-384 (`secp384r1`).
const P384_OID_DER: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
/// DER of the OID of NIST P-521 (`secp521r1`).
const P521_OID_DER: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23];
/// DER of the OID of Ed25519 (`id-Ed25519`, RFC 8410), as `CKA_EC_PARAMS` of a
/// `CKK_EC_EDWARDS` key holds it.
const ED25519_OID_DER: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
/// DER of the PrintableString `edwards25519`, the other `CKA_EC_PARAMS` PKCS#11 3.0 allows
/// for Ed25519 (accepted on keys found in the token).
const ED25519_NAME_DER: &[u8] = &[
    0x13, 0x0c, 0x65, 0x64, 0x77, 0x61, 0x72, 0x64, 0x73, 0x32, 0x35, 0x35, 0x31, 0x39,
];
/// RSA public exponent 65537, big-endian.
const RSA_PUBLIC_EXPONENT: &[u8] = &[0x01, 0x00, 0x01];
/// AES-256 key length, in bytes.
pub(crate) const AES256_LEN: u64 = 32;

/// An elliptic curve the plugin signs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Curve {
    P256,
    P384,
    P521,
}

impl Curve {
    fn oid_der(self) -> &'static [u8] {
        match self {
            Curve::P256 => P256_OID_DER,
            Curve::P384 => P384_OID_DER,
            Curve::P521 => P521_OID_DER,
        }
    }

    fn from_params(params: &[u8]) -> Option<Curve> {
        [Curve::P256, Curve::P384, Curve::P521]
            .into_iter()
            .find(|curve| curve.oid_der() == params)
    }

    /// Length of an uncompressed SEC1 point (`04 ‖ x ‖ y`).
    pub(crate) fn point_len(self) -> usize {
        match self {
            Curve::P256 => 65,
            Curve::P384 => 97,
            Curve::P521 => 133,
        }
    }
}

/// What a key is, as far as the plugin cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyKind {
    /// AES with a key of this many bytes.
    Aes { len: u64 },
    /// RSA with a modulus of this many bits.
    Rsa { bits: usize },
    /// ECDSA on this curve.
    Ec(Curve),
    /// Pure Ed25519 (`CKK_EC_EDWARDS` on edwards25519, signing with `CKM_EDDSA`).
    Ed25519,
    /// An EC key on a curve the plugin does not support.
    OtherCurve,
    /// Anything else (another key type, a certificate, a data object).
    Other,
}

impl KeyKind {
    /// The kind a broker key type needs, if the plugin supports the type.
    pub(crate) fn for_key_type(name: &str) -> Option<KeyKind> {
        Some(match name {
            key_type::AES256_GCM96 => KeyKind::Aes { len: AES256_LEN },
            key_type::RSA_2048 => KeyKind::Rsa { bits: 2048 },
            key_type::RSA_3072 => KeyKind::Rsa { bits: 3072 },
            key_type::RSA_4096 => KeyKind::Rsa { bits: 4096 },
            key_type::ECDSA_P256 => KeyKind::Ec(Curve::P256),
            key_type::ECDSA_P384 => KeyKind::Ec(Curve::P384),
            key_type::ECDSA_P521 => KeyKind::Ec(Curve::P521),
            key_type::ED25519 => KeyKind::Ed25519,
            _ => return None,
        })
    }

    /// Whether keys of this kind are pairs (a private and a public key object).
    pub(crate) fn is_asymmetric(self) -> bool {
        matches!(
            self,
            KeyKind::Rsa { .. } | KeyKind::Ec(_) | KeyKind::Ed25519
        )
    }

    /// The mechanisms the token must offer to create and use keys of this kind, each with
    /// the key size (bits) it must allow: checked at creation, since tokens differ (SoftHSM
    /// 2.6 has them all; many HSMs have neither Ed25519 nor P-521). Empty for the kinds
    /// every token the plugin supports has.
    fn required_mechanisms(self) -> &'static [(MechanismType, usize)] {
        match self {
            KeyKind::Ec(Curve::P521) => &[
                (MechanismType::ECC_KEY_PAIR_GEN, 521),
                (MechanismType::ECDSA, 521),
            ],
            KeyKind::Ed25519 => &[
                (MechanismType::ECC_EDWARDS_KEY_PAIR_GEN, 0),
                (MechanismType::EDDSA, 0),
            ],
            _ => &[],
        }
    }

    /// For messages: "AES-128", "RSA-2048", "EC P-256".
    pub(crate) fn name(self) -> String {
        match self {
            KeyKind::Aes { len } => format!("AES-{}", len * 8),
            KeyKind::Rsa { bits } => format!("RSA-{bits}"),
            KeyKind::Ec(Curve::P256) => "EC P-256".to_owned(),
            KeyKind::Ec(Curve::P384) => "EC P-384".to_owned(),
            KeyKind::Ec(Curve::P521) => "EC P-521".to_owned(),
            KeyKind::Ed25519 => "Ed25519".to_owned(),
            KeyKind::OtherCurve => "EC (unsupported curve)".to_owned(),
            KeyKind::Other => "unsupported".to_owned(),
        }
    }

    /// For messages: "an AES-128 key" (every name starts with a vowel sound).
    pub(crate) fn describe(self) -> String {
        format!("an {} key", self.name())
    }
}

/// Refuses a key type whose mechanisms the token does not offer: `offered` answers the
/// largest key size (bits) the token allows for a mechanism, `None` when it does not list
/// it. The refusal names the backend, the type and the missing mechanism.
pub(crate) fn check_offered(
    kind: KeyKind,
    key_type: &str,
    token: &str,
    mut offered: impl FnMut(MechanismType) -> Result<Option<usize>, CkError>,
) -> Result<(), crate::error::Fault> {
    for &(mechanism, bits) in kind.required_mechanisms() {
        let missing = match offered(mechanism)? {
            None => format!("token {token:?} does not offer {mechanism}"),
            Some(max) if max < bits => {
                format!("token {token:?} offers {mechanism} only up to {max}-bit keys, not {bits}")
            }
            Some(_) => continue,
        };
        return Err(unsupported_key_type(NAME, key_type, &missing).into());
    }
    Ok(())
}

/// The refusal of a key type the plugin does not know at all.
pub(crate) fn not_supported(key_type: &str) -> PluginError {
    PluginError::invalid_request(format!(
        "key type {key_type:?} is not supported by {NAME}; use aes256-gcm96, rsa-2048, \
         rsa-3072, rsa-4096, ecdsa-p256, ecdsa-p384, ecdsa-p521 or ed25519"
    ))
}

/// The part of a key pair (or the secret key) an operation uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Role {
    Secret,
    Private,
    Public,
}

impl Role {
    pub(crate) fn class(self) -> ObjectClass {
        match self {
            Role::Secret => ObjectClass::SECRET_KEY,
            Role::Private => ObjectClass::PRIVATE_KEY,
            Role::Public => ObjectClass::PUBLIC_KEY,
        }
    }

    fn of(class: ObjectClass) -> Option<Role> {
        [Role::Secret, Role::Private, Role::Public]
            .into_iter()
            .find(|role| role.class() == class)
    }

    /// For messages.
    pub(crate) fn noun(self) -> &'static str {
        match self {
            Role::Secret => "secret key",
            Role::Private => "private key",
            Role::Public => "public key",
        }
    }
}

/// An object of the token, described by its attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ObjectInfo {
    pub(crate) handle: ObjectHandle,
    /// `None` for objects that are not keys (certificates, data objects).
    pub(crate) role: Option<Role>,
    pub(crate) kind: KeyKind,
    pub(crate) label: Vec<u8>,
    pub(crate) id: Vec<u8>,
    /// CKA_ENCRYPT and CKA_DECRYPT (secret keys), CKA_SIGN (private), CKA_VERIFY (public).
    pub(crate) usable: bool,
}

impl ObjectInfo {
    /// For messages: "an EC P-256 private key", "an AES-128 secret key".
    pub(crate) fn describe(&self) -> String {
        match self.role {
            Some(role) => format!("an {} {}", self.kind.name(), role.noun()),
            None => "an object that is not a key".to_owned(),
        }
    }
}

/// Reads what the plugin needs to know about an object.
pub(crate) fn describe(session: &Session, handle: ObjectHandle) -> Result<ObjectInfo, CkError> {
    let attributes = session.get_attributes(
        handle,
        &[
            AttributeType::Class,
            AttributeType::KeyType,
            AttributeType::Label,
            AttributeType::Id,
            AttributeType::ValueLen,
            AttributeType::Modulus,
            AttributeType::EcParams,
            AttributeType::Encrypt,
            AttributeType::Decrypt,
            AttributeType::Sign,
            AttributeType::Verify,
        ],
    )?;
    let mut class = None;
    let mut key_type = None;
    let mut label = Vec::new();
    let mut id = Vec::new();
    let mut value_len = None;
    let mut modulus_bits = None;
    let mut ec_params = None;
    let (mut encrypt, mut decrypt, mut sign, mut verify) = (false, false, false, false);
    for attribute in attributes {
        match attribute {
            Attribute::Class(value) => class = Some(value),
            Attribute::KeyType(value) => key_type = Some(value),
            Attribute::Label(value) => label = value,
            Attribute::Id(value) => id = value,
            Attribute::ValueLen(value) => value_len = Some(u64::from(value)),
            Attribute::Modulus(value) => modulus_bits = Some(bit_length(&value)),
            Attribute::EcParams(value) => ec_params = Some(value),
            Attribute::Encrypt(value) => encrypt = value,
            Attribute::Decrypt(value) => decrypt = value,
            Attribute::Sign(value) => sign = value,
            Attribute::Verify(value) => verify = value,
            _ => {}
        }
    }
    let role = class.and_then(Role::of);
    let kind = match (role, key_type) {
        (Some(Role::Secret), Some(KeyType::AES)) => match value_len {
            Some(len) => KeyKind::Aes { len },
            None => KeyKind::Other,
        },
        (Some(Role::Private | Role::Public), Some(KeyType::RSA)) => match modulus_bits {
            Some(bits) => KeyKind::Rsa { bits },
            None => KeyKind::Other,
        },
        (Some(Role::Private | Role::Public), Some(KeyType::EC)) => ec_params
            .as_deref()
            .and_then(Curve::from_params)
            .map_or(KeyKind::OtherCurve, KeyKind::Ec),
        (Some(Role::Private | Role::Public), Some(KeyType::EC_EDWARDS)) => {
            match ec_params.as_deref() {
                Some(ED25519_OID_DER | ED25519_NAME_DER) => KeyKind::Ed25519,
                _ => KeyKind::OtherCurve,
            }
        }
        _ => KeyKind::Other,
    };
    let usable = match role {
        Some(Role::Secret) => encrypt && decrypt,
        Some(Role::Private) => sign,
        Some(Role::Public) => verify,
        None => false,
    };
    Ok(ObjectInfo {
        handle,
        role,
        kind,
        label,
        id,
        usable,
    })
}

/// Bits of a big-endian unsigned integer.
fn bit_length(bytes: &[u8]) -> usize {
    let Some(first) = bytes.iter().position(|&b| b != 0) else {
        return 0;
    };
    let leading = bytes.get(first).map_or(0, |b| b.leading_zeros() as usize);
    (bytes.len() - first) * 8 - leading
}

/// Generates a token key of `kind` with `id` and `label`: an AES key, or a key pair whose
/// private key is sensitive and never extractable.
pub(crate) fn generate(
    session: &Session,
    kind: KeyKind,
    id: &[u8],
    label: &[u8],
) -> Result<(), CkError> {
    let common = |extra: &mut Vec<Attribute>| {
        extra.push(Attribute::Token(true));
        extra.push(Attribute::Id(id.to_vec()));
        extra.push(Attribute::Label(label.to_vec()));
    };
    match kind {
        KeyKind::Aes { len } => {
            let mut template = vec![
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(len.into()),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
            ];
            common(&mut template);
            session.generate_key(&Mechanism::AesKeyGen, &template)?;
        }
        KeyKind::Rsa { bits } => {
            let bits = u64::try_from(bits).map_err(|_| CkError::InvalidValue)?;
            let mut public = vec![
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::KeyType(KeyType::RSA),
                Attribute::ModulusBits(bits.into()),
                Attribute::PublicExponent(RSA_PUBLIC_EXPONENT.to_vec()),
                Attribute::Verify(true),
                Attribute::Encrypt(true),
            ];
            common(&mut public);
            let mut private = private_template(KeyType::RSA);
            // RSA keys also decrypt what the broker encrypted with the public key.
            private.push(Attribute::Decrypt(true));
            common(&mut private);
            session.generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &public, &private)?;
        }
        KeyKind::Ec(curve) => {
            let mut public = vec![
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::KeyType(KeyType::EC),
                Attribute::EcParams(curve.oid_der().to_vec()),
                Attribute::Verify(true),
            ];
            common(&mut public);
            let mut private = private_template(KeyType::EC);
            common(&mut private);
            session.generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)?;
        }
        KeyKind::Ed25519 => {
            let mut public = vec![
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::KeyType(KeyType::EC_EDWARDS),
                Attribute::EcParams(ED25519_OID_DER.to_vec()),
                Attribute::Verify(true),
            ];
            common(&mut public);
            let mut private = private_template(KeyType::EC_EDWARDS);
            common(&mut private);
            session.generate_key_pair(&Mechanism::EccEdwardsKeyPairGen, &public, &private)?;
        }
        KeyKind::OtherCurve | KeyKind::Other => return Err(CkError::NotSupported),
    }
    Ok(())
}

fn private_template(key_type: KeyType) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::KeyType(key_type),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_types_and_descriptions() {
        assert_eq!(
            KeyKind::for_key_type("aes256-gcm96"),
            Some(KeyKind::Aes { len: 32 })
        );
        assert_eq!(
            KeyKind::for_key_type("rsa-3072"),
            Some(KeyKind::Rsa { bits: 3072 })
        );
        assert_eq!(
            KeyKind::for_key_type("ecdsa-p384"),
            Some(KeyKind::Ec(Curve::P384))
        );
        assert_eq!(KeyKind::for_key_type("aes128-gcm96"), None);
        assert_eq!(KeyKind::for_key_type("ed448"), None);
        assert_eq!(KeyKind::for_key_type("ed25519"), Some(KeyKind::Ed25519));
        assert_eq!(
            KeyKind::for_key_type("ecdsa-p521"),
            Some(KeyKind::Ec(Curve::P521))
        );
        for name in key_type::ASYMMETRIC {
            assert!(KeyKind::for_key_type(name).unwrap().is_asymmetric());
        }
        assert_eq!(KeyKind::Aes { len: 16 }.describe(), "an AES-128 key");
        assert_eq!(KeyKind::Ec(Curve::P256).describe(), "an EC P-256 key");
        assert_eq!(KeyKind::Ed25519.describe(), "an Ed25519 key");
    }

    /// A token without Ed25519 or P-521 mechanisms refuses those types, naming the backend,
    /// the type and what is missing; the other types need nothing checked.
    #[test]
    fn types_the_token_cannot_hold_are_refused_by_name() {
        use crate::error::Fault;
        let refusal =
            |kind, key_type, offered: &dyn Fn(MechanismType) -> Option<usize>| match check_offered(
                kind,
                key_type,
                "t",
                |m| Ok(offered(m)),
            ) {
                Err(Fault::Final(error)) => Some(error),
                Err(_) => panic!("not a final refusal"),
                Ok(()) => None,
            };
        let nothing = |_| None;
        let error = refusal(KeyKind::Ed25519, "ed25519", &nothing).unwrap();
        assert_eq!(error.kind, keybroker_plugin_abi::ErrorKind::INVALID_REQUEST);
        assert!(
            error
                .message
                .as_str()
                .starts_with("backend pkcs11 cannot hold ed25519 keys: token \"t\" does not offer"),
            "{}",
            error.message.as_str()
        );
        let small_ec =
            |m| (m == MechanismType::ECC_KEY_PAIR_GEN || m == MechanismType::ECDSA).then_some(384);
        let error = refusal(KeyKind::Ec(Curve::P521), "ecdsa-p521", &small_ec).unwrap();
        assert!(error.message.as_str().contains("only up to 384-bit keys"));
        assert!(refusal(KeyKind::Ec(Curve::P384), "ecdsa-p384", &nothing).is_none());
        assert!(refusal(KeyKind::Rsa { bits: 2048 }, "rsa-2048", &nothing).is_none());
        let softhsm = |_| Some(521);
        assert!(refusal(KeyKind::Ed25519, "ed25519", &softhsm).is_none());
        assert!(refusal(KeyKind::Ec(Curve::P521), "ecdsa-p521", &softhsm).is_none());
    }

    #[test]
    fn curves_by_oid_and_bit_lengths() {
        assert_eq!(Curve::from_params(P256_OID_DER), Some(Curve::P256));
        assert_eq!(Curve::from_params(P384_OID_DER), Some(Curve::P384));
        assert_eq!(Curve::from_params(P521_OID_DER), Some(Curve::P521));
        assert_eq!(Curve::from_params(ED25519_OID_DER), None);
        assert_eq!(Curve::from_params(&[0x06, 0x01, 0x00]), None);
        assert_eq!(bit_length(&[]), 0);
        assert_eq!(bit_length(&[0, 0]), 0);
        assert_eq!(bit_length(&[0x01]), 1);
        assert_eq!(bit_length(&[0x00, 0x80, 0x00]), 16);
        let mut modulus = vec![0xc5; 256];
        assert_eq!(bit_length(&modulus), 2048);
        modulus.insert(0, 0);
        assert_eq!(bit_length(&modulus), 2048);
    }
}
