//! Public keys as PEM SubjectPublicKeyInfo, built from the public key object's attributes.

use keybroker_plugin_abi::PluginError;
use keybroker_plugin_sdk::{public_key::PublicKey, signature};

use crate::keys::Curve;

/// PEM of an RSA public key from `CKA_MODULUS` and `CKA_PUBLIC_EXPONENT`.
pub(crate) fn rsa_pem(modulus: &[u8], exponent: &[u8]) -> Result<String, PluginError> {
    let key = PublicKey::rsa(modulus, exponent).map_err(|error| {
        PluginError::internal(format!("the token's RSA public key is invalid: {error}"))
    })?;
    to_pem(&key)
}

/// PEM of an EC public key from `CKA_EC_POINT`.
pub(crate) fn ec_pem(curve: Curve, ec_point: &[u8]) -> Result<String, PluginError> {
    let point = sec1_point(curve, ec_point).ok_or_else(|| {
        PluginError::internal(format!(
            "the token's EC point has {} bytes, which is not an uncompressed {curve:?} point",
            ec_point.len()
        ))
    })?;
    let curve = match curve {
        Curve::P256 => signature::Curve::P256,
        Curve::P384 => signature::Curve::P384,
        Curve::P521 => signature::Curve::P521,
    };
    let key = PublicKey::ec(curve, point)
        .map_err(|error| PluginError::internal(format!("invalid EC point: {error}")))?;
    to_pem(&key)
}

/// PEM of an Ed25519 public key from `CKA_EC_POINT`: the DER of an OCTET STRING holding
/// the 32-byte key (PKCS#11 3.0; SoftHSM does that), or the bare 32 bytes.
pub(crate) fn ed25519_pem(ec_point: &[u8]) -> Result<String, PluginError> {
    let raw = match ec_point {
        [0x04, 32, key @ ..] if key.len() == 32 => key,
        key if key.len() == 32 => key,
        _ => {
            return Err(PluginError::internal(format!(
                "the token's CKA_EC_POINT has {} bytes, which is not an Ed25519 key",
                ec_point.len()
            )))
        }
    };
    let key = PublicKey::ed25519(raw)
        .map_err(|error| PluginError::internal(format!("invalid Ed25519 key: {error}")))?;
    to_pem(&key)
}

fn to_pem(key: &PublicKey) -> Result<String, PluginError> {
    key.to_pem()
        .map_err(|error| PluginError::internal(format!("cannot encode the public key: {error}")))
}

/// The uncompressed SEC1 point inside `CKA_EC_POINT`. PKCS#11 says the attribute is the DER
/// of an OCTET STRING holding the point (SoftHSM does that); some modules store the bare
/// point. The two are told apart by length, as the bare point also starts with 0x04. A
/// P-521 point (133 bytes) takes DER's long form of length (`04 81 85`).
fn sec1_point(curve: Curve, ec_point: &[u8]) -> Option<&[u8]> {
    let len = curve.point_len();
    if ec_point.len() == len {
        return Some(ec_point);
    }
    match ec_point {
        [0x04, octets, point @ ..] if usize::from(*octets) == len && point.len() == len => {
            Some(point)
        }
        [0x04, 0x81, octets, point @ ..]
            if len > 0x7f && usize::from(*octets) == len && point.len() == len =>
        {
            Some(point)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::pkcs8::{EncodePublicKey as _, LineEnding};

    #[test]
    fn ec_points_are_unwrapped() {
        let secret = p256::SecretKey::from_slice(&[0x11; 32]).unwrap();
        let point = secret.public_key().to_sec1_bytes();
        assert_eq!(point.len(), 65);
        let mut wrapped = vec![0x04, 65];
        wrapped.extend_from_slice(&point);
        let expected = secret
            .public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        assert_eq!(ec_pem(Curve::P256, &wrapped).unwrap(), expected);
        assert_eq!(ec_pem(Curve::P256, &point).unwrap(), expected);
        assert!(expected.starts_with("-----BEGIN PUBLIC KEY-----"));
        assert!(ec_pem(Curve::P384, &wrapped).is_err());
        assert!(ec_pem(Curve::P256, &wrapped[..60]).is_err());

        let mut scalar = [0x21; 66];
        scalar[0] = 0;
        let secret = p521::SecretKey::from_slice(&scalar).unwrap();
        let point = secret.public_key().to_sec1_bytes();
        assert_eq!(point.len(), 133);
        let mut wrapped = vec![0x04, 0x81, 133];
        wrapped.extend_from_slice(&point);
        let expected = secret
            .public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        assert_eq!(ec_pem(Curve::P521, &wrapped).unwrap(), expected);
        assert_eq!(ec_pem(Curve::P521, &point).unwrap(), expected);
    }

    #[test]
    fn ed25519_points_are_unwrapped() {
        // The encoding of Ed25519's base point.
        let mut raw = [0x66; 32];
        raw[0] = 0x58;
        let bare = ed25519_pem(&raw).unwrap();
        let mut wrapped = vec![0x04, 32];
        wrapped.extend_from_slice(&raw);
        assert_eq!(ed25519_pem(&wrapped).unwrap(), bare);
        assert!(bare.starts_with("-----BEGIN PUBLIC KEY-----"));
        assert!(ed25519_pem(&wrapped[..33]).is_err());
    }

    #[test]
    fn rsa_public_keys_are_encoded() {
        // A 2048-bit modulus of all 0xff bytes is no real key but a valid encoding input.
        let pem = rsa_pem(&[0xff; 256], &[1, 0, 1]).unwrap();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
        assert!(rsa_pem(&[0xff; 256], &[]).is_err());
    }
}
