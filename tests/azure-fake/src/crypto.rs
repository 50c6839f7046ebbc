//! Key material and the cryptography of Key Vault's key operations.
//!
//! Follows the Key Vault REST API: wrapKey/unwrapKey take `RSA-OAEP-256`, `RSA-OAEP` and
//! `RSA1_5`; sign/verify take a digest (never the message) with `PS256/384/512`,
//! `RS256/384/512` on RSA keys and `ES256`/`ES384`/`ES512` on P-256/P-384/P-521 keys, EC
//! signatures being the raw `r‖s` concatenation Key Vault returns.

use p256::ecdsa::signature::hazmat::{PrehashSigner as _, PrehashVerifier as _};
use rsa::{traits::PublicKeyParts as _, Oaep, Pkcs1v15Encrypt, Pkcs1v15Sign, Pss, RsaPrivateKey};
use sha2::{Sha256, Sha384, Sha512};

/// Why a key operation failed; every variant is the caller's fault (Key Vault answers 400).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    /// The algorithm is unknown or does not fit the key type.
    UnsupportedAlgorithm(String),
    /// The digest length does not match the signature algorithm's hash.
    DigestLength {
        /// The signature algorithm asked for.
        algorithm: String,
        /// The digest length its hash gives.
        expected: usize,
        /// The digest length sent.
        got: usize,
    },
    /// Decryption failed or the input does not fit the key.
    InvalidInput(String),
    /// The key size or curve cannot be created.
    UnsupportedKey(String),
}

impl std::fmt::Display for CryptoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CryptoError::UnsupportedAlgorithm(alg) => {
                write!(f, "Algorithm {alg} is not supported for this key type.")
            }
            CryptoError::DigestLength {
                algorithm,
                expected,
                got,
            } => write!(
                f,
                "Invalid digest length {got} for algorithm {algorithm}; expected {expected} bytes."
            ),
            CryptoError::InvalidInput(why) => f.write_str(why),
            CryptoError::UnsupportedKey(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for CryptoError {}

/// The private key of one key version.
pub enum KeyMaterial {
    /// An RSA key (`kty` `RSA` or `RSA-HSM`).
    Rsa(Box<RsaPrivateKey>),
    /// A P-256 key (`crv` `P-256`).
    P256(p256::ecdsa::SigningKey),
    /// A P-384 key (`crv` `P-384`).
    P384(p384::ecdsa::SigningKey),
    /// A P-521 key (`crv` `P-521`).
    P521(p521::ecdsa::SigningKey),
}

/// What `kty`/`key_size`/`crv` of a create request ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySpec {
    /// RSA of this many bits (2048, 3072 or 4096).
    Rsa(usize),
    /// NIST P-256.
    P256,
    /// NIST P-384.
    P384,
    /// NIST P-521.
    P521,
}

impl KeyMaterial {
    /// Generates a new private key.
    pub fn generate(spec: KeySpec) -> Result<KeyMaterial, CryptoError> {
        let mut rng = rand::thread_rng();
        Ok(match spec {
            KeySpec::Rsa(bits @ (2048 | 3072 | 4096)) => KeyMaterial::Rsa(Box::new(
                RsaPrivateKey::new(&mut rng, bits)
                    .map_err(|e| CryptoError::UnsupportedKey(e.to_string()))?,
            )),
            KeySpec::Rsa(bits) => {
                return Err(CryptoError::UnsupportedKey(format!(
                    "The specified key size {bits} is not supported; use 2048, 3072 or 4096."
                )))
            }
            KeySpec::P256 => KeyMaterial::P256(p256::ecdsa::SigningKey::random(&mut rng)),
            KeySpec::P384 => KeyMaterial::P384(p384::ecdsa::SigningKey::random(&mut rng)),
            KeySpec::P521 => KeyMaterial::P521(p521::ecdsa::SigningKey::random(&mut rng)),
        })
    }

    /// `true` for RSA keys.
    pub fn is_rsa(&self) -> bool {
        matches!(self, KeyMaterial::Rsa(_))
    }

    /// The public key as JWK members (without `kid`, `kty`, `key_ops`): `n`/`e` or
    /// `crv`/`x`/`y`, base64url without padding.
    pub fn public_jwk_members(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut out = serde_json::Map::new();
        let mut put = |name: &str, value: String| {
            out.insert(name.to_owned(), serde_json::Value::String(value));
        };
        match self {
            KeyMaterial::Rsa(key) => {
                put("n", b64url(&key.n().to_bytes_be()));
                put("e", b64url(&key.e().to_bytes_be()));
            }
            KeyMaterial::P256(key) => {
                let point = key.verifying_key().to_encoded_point(false);
                put("crv", "P-256".to_owned());
                put(
                    "x",
                    b64url(point.x().map(|x| x.as_slice()).unwrap_or_default()),
                );
                put(
                    "y",
                    b64url(point.y().map(|y| y.as_slice()).unwrap_or_default()),
                );
            }
            KeyMaterial::P384(key) => {
                let point = key.verifying_key().to_encoded_point(false);
                put("crv", "P-384".to_owned());
                put(
                    "x",
                    b64url(point.x().map(|x| x.as_slice()).unwrap_or_default()),
                );
                put(
                    "y",
                    b64url(point.y().map(|y| y.as_slice()).unwrap_or_default()),
                );
            }
            KeyMaterial::P521(key) => {
                // p521's `SigningKey::verifying_key` sits behind a feature it does not have.
                let point = p521::ecdsa::VerifyingKey::from(key).to_encoded_point(false);
                put("crv", "P-521".to_owned());
                put(
                    "x",
                    b64url(point.x().map(|x| x.as_slice()).unwrap_or_default()),
                );
                put(
                    "y",
                    b64url(point.y().map(|y| y.as_slice()).unwrap_or_default()),
                );
            }
        }
        out
    }

    /// wrapKey: encrypts `plaintext` with the public key.
    pub fn wrap(&self, algorithm: &str, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let KeyMaterial::Rsa(key) = self else {
            return Err(CryptoError::UnsupportedAlgorithm(algorithm.to_owned()));
        };
        let public = key.to_public_key();
        let mut rng = rand::thread_rng();
        let result = match algorithm {
            "RSA-OAEP-256" => public.encrypt(&mut rng, Oaep::new::<Sha256>(), plaintext),
            "RSA-OAEP" => public.encrypt(&mut rng, Oaep::new::<sha1::Sha1>(), plaintext),
            "RSA1_5" => public.encrypt(&mut rng, Pkcs1v15Encrypt, plaintext),
            other => return Err(CryptoError::UnsupportedAlgorithm(other.to_owned())),
        };
        result.map_err(|e| CryptoError::InvalidInput(format!("Wrap failed: {e}.")))
    }

    /// unwrapKey: decrypts `ciphertext` with the private key.
    pub fn unwrap(&self, algorithm: &str, ciphertext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let KeyMaterial::Rsa(key) = self else {
            return Err(CryptoError::UnsupportedAlgorithm(algorithm.to_owned()));
        };
        let result = match algorithm {
            "RSA-OAEP-256" => key.decrypt(Oaep::new::<Sha256>(), ciphertext),
            "RSA-OAEP" => key.decrypt(Oaep::new::<sha1::Sha1>(), ciphertext),
            "RSA1_5" => key.decrypt(Pkcs1v15Encrypt, ciphertext),
            other => return Err(CryptoError::UnsupportedAlgorithm(other.to_owned())),
        };
        // Key Vault does not say why an unwrap failed (no padding oracle).
        result.map_err(|_| {
            CryptoError::InvalidInput(
                "Unwrap failed: the ciphertext is invalid for this key.".to_owned(),
            )
        })
    }

    /// sign: signs a digest the caller computed.
    pub fn sign(&self, algorithm: &str, digest: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let hash = SignatureHash::for_algorithm(self, algorithm)?;
        hash.check_digest(algorithm, digest)?;
        let mut rng = rand::thread_rng();
        let failed =
            |e: &dyn std::fmt::Display| CryptoError::InvalidInput(format!("Sign failed: {e}."));
        match (self, hash) {
            (KeyMaterial::Rsa(key), SignatureHash::Pkcs1(bits)) => {
                key.sign(pkcs1_scheme(bits), digest).map_err(|e| failed(&e))
            }
            (KeyMaterial::Rsa(key), SignatureHash::Pss(bits)) => match bits {
                256 => key.sign_with_rng(&mut rng, Pss::new::<Sha256>(), digest),
                384 => key.sign_with_rng(&mut rng, Pss::new::<Sha384>(), digest),
                _ => key.sign_with_rng(&mut rng, Pss::new::<Sha512>(), digest),
            }
            .map_err(|e| failed(&e)),
            (KeyMaterial::P256(key), SignatureHash::Ecdsa) => {
                let signature: p256::ecdsa::Signature =
                    key.sign_prehash(digest).map_err(|e| failed(&e))?;
                Ok(signature.to_bytes().to_vec())
            }
            (KeyMaterial::P384(key), SignatureHash::Ecdsa) => {
                let signature: p384::ecdsa::Signature =
                    key.sign_prehash(digest).map_err(|e| failed(&e))?;
                Ok(signature.to_bytes().to_vec())
            }
            (KeyMaterial::P521(key), SignatureHash::Ecdsa) => {
                let signature: p521::ecdsa::Signature =
                    key.sign_prehash(digest).map_err(|e| failed(&e))?;
                Ok(signature.to_bytes().to_vec())
            }
            _ => Err(CryptoError::UnsupportedAlgorithm(algorithm.to_owned())),
        }
    }

    /// verify: `Ok(false)` for a signature that does not verify, an error for bad input.
    pub fn verify(
        &self,
        algorithm: &str,
        digest: &[u8],
        signature: &[u8],
    ) -> Result<bool, CryptoError> {
        let hash = SignatureHash::for_algorithm(self, algorithm)?;
        hash.check_digest(algorithm, digest)?;
        Ok(match (self, hash) {
            (KeyMaterial::Rsa(key), SignatureHash::Pkcs1(bits)) => key
                .to_public_key()
                .verify(pkcs1_scheme(bits), digest, signature)
                .is_ok(),
            (KeyMaterial::Rsa(key), SignatureHash::Pss(bits)) => {
                let public = key.to_public_key();
                match bits {
                    256 => public.verify(Pss::new::<Sha256>(), digest, signature),
                    384 => public.verify(Pss::new::<Sha384>(), digest, signature),
                    _ => public.verify(Pss::new::<Sha512>(), digest, signature),
                }
                .is_ok()
            }
            (KeyMaterial::P256(key), SignatureHash::Ecdsa) => {
                p256::ecdsa::Signature::from_slice(signature).is_ok_and(|signature| {
                    key.verifying_key()
                        .verify_prehash(digest, &signature)
                        .is_ok()
                })
            }
            (KeyMaterial::P384(key), SignatureHash::Ecdsa) => {
                p384::ecdsa::Signature::from_slice(signature).is_ok_and(|signature| {
                    key.verifying_key()
                        .verify_prehash(digest, &signature)
                        .is_ok()
                })
            }
            (KeyMaterial::P521(key), SignatureHash::Ecdsa) => {
                p521::ecdsa::Signature::from_slice(signature).is_ok_and(|signature| {
                    p521::ecdsa::VerifyingKey::from(key)
                        .verify_prehash(digest, &signature)
                        .is_ok()
                })
            }
            _ => return Err(CryptoError::UnsupportedAlgorithm(algorithm.to_owned())),
        })
    }
}

fn pkcs1_scheme(bits: usize) -> Pkcs1v15Sign {
    match bits {
        256 => Pkcs1v15Sign::new::<Sha256>(),
        384 => Pkcs1v15Sign::new::<Sha384>(),
        _ => Pkcs1v15Sign::new::<Sha512>(),
    }
}

/// The signature scheme an algorithm name selects, with the hash size in bits.
#[derive(Clone, Copy)]
enum SignatureHash {
    Pkcs1(usize),
    Pss(usize),
    Ecdsa,
}

impl SignatureHash {
    fn for_algorithm(key: &KeyMaterial, algorithm: &str) -> Result<SignatureHash, CryptoError> {
        let scheme = match (key, algorithm) {
            (KeyMaterial::Rsa(_), "RS256") => SignatureHash::Pkcs1(256),
            (KeyMaterial::Rsa(_), "RS384") => SignatureHash::Pkcs1(384),
            (KeyMaterial::Rsa(_), "RS512") => SignatureHash::Pkcs1(512),
            (KeyMaterial::Rsa(_), "PS256") => SignatureHash::Pss(256),
            (KeyMaterial::Rsa(_), "PS384") => SignatureHash::Pss(384),
            (KeyMaterial::Rsa(_), "PS512") => SignatureHash::Pss(512),
            (KeyMaterial::P256(_), "ES256")
            | (KeyMaterial::P384(_), "ES384")
            | (KeyMaterial::P521(_), "ES512") => SignatureHash::Ecdsa,
            _ => return Err(CryptoError::UnsupportedAlgorithm(algorithm.to_owned())),
        };
        Ok(scheme)
    }

    fn check_digest(self, algorithm: &str, digest: &[u8]) -> Result<(), CryptoError> {
        let expected = match (self, algorithm) {
            (SignatureHash::Pkcs1(bits) | SignatureHash::Pss(bits), _) => bits / 8,
            (SignatureHash::Ecdsa, "ES256") => 32,
            (SignatureHash::Ecdsa, "ES384") => 48,
            (SignatureHash::Ecdsa, _) => 64,
        };
        if digest.len() == expected {
            Ok(())
        } else {
            Err(CryptoError::DigestLength {
                algorithm: algorithm.to_owned(),
                expected,
                got: digest.len(),
            })
        }
    }
}

/// base64url without padding, as JWK members and key operation values are written.
pub fn b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Reads base64url with or without padding (the SDKs differ).
pub fn from_b64url(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use sha2::Digest as _;

    #[test]
    fn rsa_oaep_256_round_trip_and_independent_decrypt() {
        let key = KeyMaterial::generate(KeySpec::Rsa(2048)).unwrap();
        let dek = [7u8; 32];
        let wrapped = key.wrap("RSA-OAEP-256", &dek).unwrap();
        assert_eq!(wrapped.len(), 256);
        assert_eq!(key.unwrap("RSA-OAEP-256", &wrapped).unwrap(), dek);
        // Decrypted by the rsa crate directly, so the padding really is OAEP with SHA-256.
        let KeyMaterial::Rsa(private) = &key else {
            panic!()
        };
        assert_eq!(
            private.decrypt(Oaep::new::<Sha256>(), &wrapped).unwrap(),
            dek
        );
        // A different OAEP hash does not unwrap it.
        assert!(key.unwrap("RSA-OAEP", &wrapped).is_err());
        let legacy = key.wrap("RSA-OAEP", &dek).unwrap();
        assert_eq!(key.unwrap("RSA-OAEP", &legacy).unwrap(), dek);
        let pkcs1 = key.wrap("RSA1_5", &dek).unwrap();
        assert_eq!(key.unwrap("RSA1_5", &pkcs1).unwrap(), dek);
        assert!(matches!(
            key.wrap("A256KW", &dek),
            Err(CryptoError::UnsupportedAlgorithm(_))
        ));
    }

    #[test]
    fn rsa_signatures_verify_with_the_rsa_crate() {
        let key = KeyMaterial::generate(KeySpec::Rsa(2048)).unwrap();
        let digest = Sha256::digest(b"message");
        let KeyMaterial::Rsa(private) = &key else {
            panic!()
        };
        let public = private.to_public_key();
        let ps = key.sign("PS256", &digest).unwrap();
        public.verify(Pss::new::<Sha256>(), &digest, &ps).unwrap();
        assert!(key.verify("PS256", &digest, &ps).unwrap());
        let rs = key.sign("RS256", &digest).unwrap();
        public
            .verify(Pkcs1v15Sign::new::<Sha256>(), &digest, &rs)
            .unwrap();
        assert!(key.verify("RS256", &digest, &rs).unwrap());
        let other = Sha256::digest(b"other");
        assert!(!key.verify("PS256", &other, &ps).unwrap());
        assert!(matches!(
            key.sign("PS384", &digest),
            Err(CryptoError::DigestLength {
                expected: 48,
                got: 32,
                ..
            })
        ));
        assert!(key.sign("ES256", &digest).is_err());
    }

    #[test]
    fn ec_signatures_are_raw_r_s_and_verify_with_the_p256_crate() {
        let key = KeyMaterial::generate(KeySpec::P256).unwrap();
        let digest = Sha256::digest(b"message");
        let signature = key.sign("ES256", &digest).unwrap();
        assert_eq!(signature.len(), 64);
        let KeyMaterial::P256(private) = &key else {
            panic!()
        };
        let parsed = p256::ecdsa::Signature::from_slice(&signature).unwrap();
        private
            .verifying_key()
            .verify_prehash(&digest, &parsed)
            .unwrap();
        assert!(key.verify("ES256", &digest, &signature).unwrap());
        assert!(!key
            .verify("ES256", &Sha256::digest(b"x"), &signature)
            .unwrap());
        assert!(key.wrap("RSA-OAEP-256", b"k").is_err());
        let p384 = KeyMaterial::generate(KeySpec::P384).unwrap();
        let digest = Sha384::digest(b"message");
        let signature = p384.sign("ES384", &digest).unwrap();
        assert_eq!(signature.len(), 96);
        assert!(p384.verify("ES384", &digest, &signature).unwrap());
        let p521 = KeyMaterial::generate(KeySpec::P521).unwrap();
        let digest = Sha512::digest(b"message");
        let signature = p521.sign("ES512", &digest).unwrap();
        assert_eq!(signature.len(), 132);
        assert!(p521.verify("ES512", &digest, &signature).unwrap());
        assert!(!p521
            .verify("ES512", &Sha512::digest(b"x"), &signature)
            .unwrap());
        assert!(p521.sign("ES384", &Sha384::digest(b"m")).is_err());
        assert!(matches!(
            p521.sign("ES512", &Sha256::digest(b"m")),
            Err(CryptoError::DigestLength { expected: 64, .. })
        ));
        assert_eq!(p521.public_jwk_members()["crv"], "P-521");
    }

    #[test]
    fn jwk_members_are_base64url() {
        let key = KeyMaterial::generate(KeySpec::P256).unwrap();
        let jwk = key.public_jwk_members();
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(from_b64url(jwk["x"].as_str().unwrap()).unwrap().len(), 32);
        let rsa = KeyMaterial::generate(KeySpec::Rsa(2048)).unwrap();
        let jwk = rsa.public_jwk_members();
        assert_eq!(jwk["e"], "AQAB");
        assert_eq!(from_b64url(jwk["n"].as_str().unwrap()).unwrap().len(), 256);
        assert!(KeyMaterial::generate(KeySpec::Rsa(1024)).is_err());
    }
}
