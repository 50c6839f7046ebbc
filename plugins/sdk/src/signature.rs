//! ECDSA signatures between the DER `Ecdsa-Sig-Value` most services and HSM APIs speak and
//! the ABI's fixed-size `r ‖ s` (what the broker hands out and takes back), and digests
//! shaped for the reference crates.

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
}
