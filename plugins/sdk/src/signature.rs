//! ECDSA signatures between the DER `Ecdsa-Sig-Value` most services and HSM APIs speak and
//! the ABI's fixed-size `r ‖ s` (what the broker hands out and takes back).

/// The curves the broker signs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Curve {
    /// NIST P-256 (`ecdsa-p256`): `r ‖ s` is 64 bytes.
    P256,
    /// NIST P-384 (`ecdsa-p384`): `r ‖ s` is 96 bytes.
    P384,
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
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn signatures_convert_both_ways() {
        for (curve, size) in [(Curve::P256, 64), (Curve::P384, 96)] {
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
}
