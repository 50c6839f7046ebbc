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
    };
    let key = PublicKey::ec(curve, point)
        .map_err(|error| PluginError::internal(format!("invalid EC point: {error}")))?;
    to_pem(&key)
}

fn to_pem(key: &PublicKey) -> Result<String, PluginError> {
    key.to_pem()
        .map_err(|error| PluginError::internal(format!("cannot encode the public key: {error}")))
}

/// The uncompressed SEC1 point inside `CKA_EC_POINT`. PKCS#11 says the attribute is the DER
/// of an OCTET STRING holding the point (SoftHSM does that); some modules store the bare
/// point. The two are told apart by length, as the bare point also starts with 0x04.
fn sec1_point(curve: Curve, ec_point: &[u8]) -> Option<&[u8]> {
    let len = curve.point_len();
    if ec_point.len() == len {
        return Some(ec_point);
    }
    match ec_point {
        [0x04, octets, point @ ..] if usize::from(*octets) == len && point.len() == len => {
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
    }

    #[test]
    fn rsa_public_keys_are_encoded() {
        // A 2048-bit modulus of all 0xff bytes is no real key but a valid encoding input.
        let pem = rsa_pem(&[0xff; 256], &[1, 0, 1]).unwrap();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
        assert!(rsa_pem(&[0xff; 256], &[]).is_err());
    }
}
