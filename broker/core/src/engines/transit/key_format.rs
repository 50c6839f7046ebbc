//! Vault's export formats (`format` of
//! [export key](https://openbao.org/api-docs/secret/transit/#export-key)): how a key's
//! private or public key is written, from the PKCS #8 DER the backend hands out and the
//! public key a version keeps.
//!
//! - default (`""`): RSA as a PKCS #1 `RSA PRIVATE KEY` PEM ending in a newline; ECDSA as a
//!   SEC 1 `EC PRIVATE KEY` PEM, trimmed; Ed25519 as base64 of the 64-byte `seed ‖ public`
//!   key. Public keys: PEM SubjectPublicKeyInfo (RSA ending in a newline, ECDSA trimmed),
//!   Ed25519 base64 of its 32 bytes.
//! - `raw`: Ed25519 and symmetric keys only (as the default).
//! - `der`: base64 of PKCS #8 (private) or SubjectPublicKeyInfo (public) DER.
//! - `pem`: the same DER as a `PRIVATE KEY` or `PUBLIC KEY` PEM.
//!
//! Vault answers a format that does not fit the key with a server error; keybroker answers
//! the same message with 400.

use base64::{engine::general_purpose::STANDARD, Engine as _};
use ed25519_dalek::pkcs8::{
    DecodePrivateKey as _, EncodePrivateKey as _, EncodePublicKey as _, KeypairBytes,
};
use rsa::pkcs1::{EncodeRsaPrivateKey as _, LineEnding};
use zeroize::Zeroizing;

use super::key_type::KeyType;
use crate::error::{Error, Result};

/// How an export writes its keys (Vault's `format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// The key type's own default.
    Default,
    /// The raw key, base64 (symmetric keys and Ed25519).
    Raw,
    /// Base64 of PKCS #8 or SubjectPublicKeyInfo DER (asymmetric keys).
    Der,
    /// PKCS #8 or SubjectPublicKeyInfo PEM (asymmetric keys).
    Pem,
}

impl ExportFormat {
    /// Vault's name of a format (empty: the default); Vault's message for another.
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "" => Self::Default,
            "raw" => Self::Raw,
            "der" => Self::Der,
            "pem" => Self::Pem,
            other => return Err(Error::invalid(format!("invalid format: {other}"))),
        })
    }

    /// Refuses `der` and `pem` for a symmetric or HMAC key (Vault's message, which names
    /// HMAC keys for both).
    pub(super) fn check_symmetric(self) -> Result<()> {
        match self {
            Self::Default | Self::Raw => Ok(()),
            Self::Der | Self::Pem => Err(Error::invalid(
                "unknown format for HMAC key; supported values are `` or `raw`",
            )),
        }
    }

    /// Refuses `raw` for RSA and ECDSA keys (Vault's messages).
    fn check_asymmetric(self, key_type: KeyType) -> Result<()> {
        match (self, key_type) {
            (Self::Raw, KeyType::Rsa(_)) => Err(Error::invalid(
                "unknown key format for rsa key; supported values are ``, `der`, or `pem`",
            )),
            (Self::Raw, KeyType::EcdsaP256 | KeyType::EcdsaP384 | KeyType::EcdsaP521) => {
                Err(Error::invalid(
                    "unknown key format for ec key; supported values are ``, `der`, or `pem`",
                ))
            }
            _ => Ok(()),
        }
    }
}

/// A version's private key, from the backend's PKCS #8 DER, as Vault's export writes it.
pub(super) fn private_key(
    key_type: KeyType,
    format: ExportFormat,
    pkcs8: &[u8],
) -> Result<Zeroizing<String>> {
    format.check_asymmetric(key_type)?;
    let malformed = || Error::internal("the backend handed out a private key that does not parse");
    if matches!(format, ExportFormat::Der | ExportFormat::Pem) {
        // Go writes an Ed25519 PKCS #8 with its seed alone (RFC 8410's version 1); the
        // backend's may carry the public key too.
        let seed_only;
        let der = if key_type == KeyType::Ed25519 {
            let key = ed25519_dalek::SigningKey::from_pkcs8_der(pkcs8).map_err(|_| malformed())?;
            let keypair = KeypairBytes {
                secret_key: key.to_bytes(),
                public_key: None,
            };
            seed_only = keypair.to_pkcs8_der().map_err(|_| malformed())?;
            seed_only.as_bytes()
        } else {
            pkcs8
        };
        return Ok(Zeroizing::new(if format == ExportFormat::Der {
            STANDARD.encode(der)
        } else {
            fit_to(key_type, &Zeroizing::new(pem_of("PRIVATE KEY", der)))
        }));
    }
    let text = match key_type {
        KeyType::Rsa(_) => rsa::RsaPrivateKey::from_pkcs8_der(pkcs8)
            .map_err(|_| malformed())?
            .to_pkcs1_pem(LineEnding::LF)
            .map_err(|_| malformed())?,
        KeyType::EcdsaP256 => {
            sec1_pem(&p256::SecretKey::from_pkcs8_der(pkcs8).map_err(|_| malformed())?)?
        }
        KeyType::EcdsaP384 => {
            sec1_pem(&p384::SecretKey::from_pkcs8_der(pkcs8).map_err(|_| malformed())?)?
        }
        KeyType::EcdsaP521 => {
            sec1_pem(&p521::SecretKey::from_pkcs8_der(pkcs8).map_err(|_| malformed())?)?
        }
        KeyType::Ed25519 => {
            let key = ed25519_dalek::SigningKey::from_pkcs8_der(pkcs8).map_err(|_| malformed())?;
            let keypair = Zeroizing::new(key.to_keypair_bytes());
            Zeroizing::new(STANDARD.encode(keypair.as_slice()))
        }
        _ => return Err(Error::internal("not an asymmetric key type")),
    };
    Ok(text)
}

/// A version's stored public key (as Vault shows it: PEM SubjectPublicKeyInfo, or Ed25519's
/// base64) as Vault's export writes it in `format`.
pub(super) fn public_key(key_type: KeyType, format: ExportFormat, stored: &str) -> Result<String> {
    format.check_asymmetric(key_type)?;
    let stored = stored.trim();
    let malformed = || Error::internal("a key version keeps a public key that does not parse");
    if key_type == KeyType::Ed25519 {
        if matches!(format, ExportFormat::Default | ExportFormat::Raw) {
            return Ok(stored.to_owned());
        }
        let raw: [u8; 32] = STANDARD
            .decode(stored)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(malformed)?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&raw).map_err(|_| malformed())?;
        let der = key.to_public_key_der().map_err(|_| malformed())?;
        return Ok(match format {
            ExportFormat::Der => STANDARD.encode(der.as_bytes()),
            _ => pem_of("PUBLIC KEY", der.as_bytes()).trim().to_owned(),
        });
    }
    let parsed = pem::parse(stored).map_err(|_| malformed())?;
    let text = match format {
        ExportFormat::Der => STANDARD.encode(parsed.contents()),
        _ => fit_to(key_type, stored),
    };
    Ok(text)
}

/// Whether `pkcs8` parses as a private key of `key_type` (an RSA key of its size, a key on
/// its curve): a backup's check of its material before any backend sees it.
pub(super) fn is_private_key_of(key_type: KeyType, pkcs8: &[u8]) -> bool {
    use rsa::traits::PublicKeyParts as _;
    match key_type {
        KeyType::Rsa(bits) => rsa::RsaPrivateKey::from_pkcs8_der(pkcs8)
            .is_ok_and(|key| key.n().bits() == usize::from(bits)),
        KeyType::EcdsaP256 => p256::SecretKey::from_pkcs8_der(pkcs8).is_ok(),
        KeyType::EcdsaP384 => p384::SecretKey::from_pkcs8_der(pkcs8).is_ok(),
        KeyType::EcdsaP521 => p521::SecretKey::from_pkcs8_der(pkcs8).is_ok(),
        KeyType::Ed25519 => ed25519_dalek::SigningKey::from_pkcs8_der(pkcs8).is_ok(),
        _ => false,
    }
}

/// Vault's DER inside a PEM block: 64-character lines, `\n` line ends.
fn pem_of(tag: &str, der: &[u8]) -> String {
    let block = pem::Pem::new(tag, der);
    pem::encode_config(
        &block,
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// A PEM as Vault's export ends it: RSA's with one newline, every other type's trimmed.
fn fit_to(key_type: KeyType, pem: &str) -> String {
    let trimmed = pem.trim();
    if matches!(key_type, KeyType::Rsa(_)) {
        format!("{trimmed}\n")
    } else {
        trimmed.to_owned()
    }
}

/// An ECDSA private key as Go's `x509.MarshalECPrivateKey` writes it, in a trimmed
/// `EC PRIVATE KEY` PEM: SEC 1 with the named curve and the uncompressed public key (the
/// curve crates' own `to_sec1_der` leaves the curve out, which OpenSSL cannot read).
fn sec1_pem<C>(key: &p256::elliptic_curve::SecretKey<C>) -> Result<Zeroizing<String>>
where
    C: p256::elliptic_curve::CurveArithmetic + p256::pkcs8::AssociatedOid,
    p256::elliptic_curve::AffinePoint<C>: p256::elliptic_curve::sec1::FromEncodedPoint<C>
        + p256::elliptic_curve::sec1::ToEncodedPoint<C>,
    p256::elliptic_curve::FieldBytesSize<C>: p256::elliptic_curve::sec1::ModulusSize,
{
    use p256::elliptic_curve::sec1::ToEncodedPoint as _;
    use sec1::der::Encode as _;
    let scalar = Zeroizing::new(key.to_bytes());
    let point = key.public_key().to_encoded_point(false);
    let der = Zeroizing::new(
        sec1::EcPrivateKey {
            private_key: &scalar,
            parameters: Some(sec1::EcParameters::NamedCurve(C::OID)),
            public_key: Some(point.as_bytes()),
        }
        .to_der()
        .map_err(|_| Error::internal("encoding the private key failed"))?,
    );
    let pem = Zeroizing::new(pem_of("EC PRIVATE KEY", &der));
    Ok(Zeroizing::new(pem.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::OsRng;

    #[test]
    fn formats_are_vaults() {
        assert_eq!(ExportFormat::parse("").unwrap(), ExportFormat::Default);
        assert_eq!(ExportFormat::parse("raw").unwrap(), ExportFormat::Raw);
        assert_eq!(ExportFormat::parse("der").unwrap(), ExportFormat::Der);
        assert_eq!(ExportFormat::parse("pem").unwrap(), ExportFormat::Pem);
        assert_eq!(
            ExportFormat::parse("jwk").unwrap_err().to_string(),
            "invalid format: jwk"
        );
        assert!(ExportFormat::Raw.check_symmetric().is_ok());
        assert!(ExportFormat::Der.check_symmetric().is_err());
    }

    #[test]
    fn ecdsa_default_is_sec1_and_pkcs8_round_trips() {
        let key = p256::SecretKey::random(&mut OsRng);
        let der = key.to_pkcs8_der().unwrap();
        let sec1 = private_key(KeyType::EcdsaP256, ExportFormat::Default, der.as_bytes()).unwrap();
        assert!(sec1.starts_with("-----BEGIN EC PRIVATE KEY-----\n"));
        assert!(sec1.ends_with("-----END EC PRIVATE KEY-----"));
        let back = p256::SecretKey::from_sec1_pem(&sec1).unwrap();
        assert_eq!(back.to_bytes(), key.to_bytes());
        let b64 = private_key(KeyType::EcdsaP256, ExportFormat::Der, der.as_bytes()).unwrap();
        assert_eq!(STANDARD.decode(b64.as_str()).unwrap(), der.as_bytes());
        let pem = private_key(KeyType::EcdsaP256, ExportFormat::Pem, der.as_bytes()).unwrap();
        assert_eq!(
            p256::SecretKey::from_pkcs8_pem(&pem).unwrap().to_bytes(),
            key.to_bytes()
        );
        assert_eq!(
            private_key(KeyType::EcdsaP256, ExportFormat::Raw, der.as_bytes())
                .unwrap_err()
                .to_string(),
            "unknown key format for ec key; supported values are ``, `der`, or `pem`"
        );
    }

    #[test]
    fn ed25519_default_is_seed_then_public_key() {
        let key = ed25519_dalek::SigningKey::generate(&mut OsRng);
        let der = key.to_pkcs8_der().unwrap();
        for format in [ExportFormat::Default, ExportFormat::Raw] {
            let text = private_key(KeyType::Ed25519, format, der.as_bytes()).unwrap();
            assert_eq!(
                STANDARD.decode(text.as_str()).unwrap(),
                key.to_keypair_bytes()
            );
        }
        let public = STANDARD.encode(key.verifying_key().as_bytes());
        let spki = public_key(KeyType::Ed25519, ExportFormat::Pem, &public).unwrap();
        assert!(spki.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert_eq!(
            public_key(KeyType::Ed25519, ExportFormat::Raw, &public).unwrap(),
            public
        );
    }

    #[test]
    fn rsa_default_is_pkcs1_ending_in_a_newline() {
        let key = rsa::RsaPrivateKey::new(&mut OsRng, 1024).unwrap();
        let der = key.to_pkcs8_der().unwrap();
        let text = private_key(KeyType::Rsa(2048), ExportFormat::Default, der.as_bytes()).unwrap();
        assert!(text.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
        assert!(text.ends_with("-----END RSA PRIVATE KEY-----\n"));
        assert!(!text.contains('\r'));
        let pem = private_key(KeyType::Rsa(2048), ExportFormat::Pem, der.as_bytes()).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(pem.ends_with("-----END PRIVATE KEY-----\n"));
    }
}
