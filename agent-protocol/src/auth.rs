//! Agent authentication: challenge–response with an Ed25519 key derived from the agent's
//! secret. The secret never crosses the wire, and what the broker pins cannot log in.
//!
//! The agent holds a secret of at least 32 bytes. From it, deterministically:
//!
//! ```text
//! seed = HKDF-SHA256(ikm = secret, salt = "keybroker-agent", info = "keybroker agent identity v1")
//! signing key = Ed25519 key with that 32-byte seed
//! pin = lowercase hex SHA-256(public key)
//! ```
//!
//! The operator pins `pin` in the gateway's config. It is a hash of a public value derived
//! one-way from the secret: a leaked config gives neither the secret nor the signing key, and
//! signing the broker's fresh nonce needs the signing key.
//!
//! The signed transcript binds everything both sides saw, so no part can be swapped or
//! replayed:
//!
//! ```text
//! "keybroker agent auth v1\0"
//! || u64-BE length || agent id
//! || public key (32) || agent nonce (32) || broker nonce (32)
//! || u64-BE length || channel binding
//! ```
//!
//! The channel binding is whatever the TLS layer can export for this connection (RFC 9266
//! `tls-exporter`), empty if none; with it, a proof relayed through another TLS connection
//! fails.

use std::fmt;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use hkdf::Hkdf;
use rand::rngs::OsRng;
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};
use zeroize::Zeroizing;

use crate::frame::{Hello, Proof, PROTOCOL_VERSION};

const HKDF_SALT: &[u8] = b"keybroker-agent";
const HKDF_INFO: &[u8] = b"keybroker agent identity v1";
const TRANSCRIPT_DOMAIN: &[u8] = b"keybroker agent auth v1\0";

/// 32 bytes from the operating system's random source, for [`Hello::agent_nonce`] and
/// [`crate::Challenge::broker_nonce`].
pub fn random_nonce() -> [u8; 32] {
    let mut nonce = [0; 32];
    OsRng.fill_bytes(&mut nonce);
    nonce
}

/// Why an [`AgentIdentity`] could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The secret is shorter than [`AgentIdentity::MIN_SECRET_BYTES`].
    #[error("agent secret is too short: at least {minimum} bytes (256 bits) are required")]
    SecretTooShort {
        /// [`AgentIdentity::MIN_SECRET_BYTES`].
        minimum: usize,
    },
    /// Key derivation failed (not expected: HKDF only fails for outputs over 8 KiB).
    #[error("agent key derivation failed")]
    Derivation,
}

/// Authentication failed. One value for every cause (unknown pin, wrong key, bad signature,
/// stale nonce, other channel), so a failure tells the peer nothing about which part was
/// wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("agent authentication failed")]
pub struct AuthError {
    _private: (),
}

const AUTH_FAILED: AuthError = AuthError { _private: () };

/// The agent's signing identity, derived from its secret. Key material is wiped on drop and
/// never shown by `Debug`.
pub struct AgentIdentity {
    signing_key: SigningKey,
}

impl AgentIdentity {
    /// Shortest accepted secret: 256 bits.
    pub const MIN_SECRET_BYTES: usize = 32;

    /// Derives the identity from `secret` (see the module docs). The same secret always gives
    /// the same identity and pin.
    pub fn from_secret(secret: &[u8]) -> Result<Self, IdentityError> {
        if secret.len() < Self::MIN_SECRET_BYTES {
            return Err(IdentityError::SecretTooShort {
                minimum: Self::MIN_SECRET_BYTES,
            });
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        Hkdf::<Sha256>::new(Some(HKDF_SALT), secret)
            .expand(HKDF_INFO, seed.as_mut())
            .map_err(|_| IdentityError::Derivation)?;
        Ok(Self {
            signing_key: SigningKey::from_bytes(&seed),
        })
    }

    /// The Ed25519 public key (not secret; sent in [`Hello`]).
    pub fn public_key(&self) -> [u8; 32] {
        self.signing_key.verifying_key().to_bytes()
    }

    /// What the operator pins in the gateway config for this agent: lowercase hex SHA-256 of
    /// the public key.
    pub fn pin(&self) -> String {
        pin_of(&self.public_key())
    }

    /// Handshake step 1: the agent's hello with a fresh `agent_nonce` (from [`random_nonce`]).
    pub fn hello(&self, agent_id: &str, agent_nonce: [u8; 32]) -> Hello {
        Hello {
            protocol: PROTOCOL_VERSION,
            agent_id: agent_id.to_owned(),
            public_key: self.public_key(),
            agent_nonce,
        }
    }

    /// Handshake step 3: signs the transcript of `hello` (as sent), the broker's challenge
    /// nonce and this connection's `channel_binding` (empty if the TLS layer gives none).
    pub fn prove(&self, hello: &Hello, broker_nonce: &[u8; 32], channel_binding: &[u8]) -> Proof {
        let transcript = transcript(
            &hello.agent_id,
            &self.public_key(),
            &hello.agent_nonce,
            broker_nonce,
            channel_binding,
        );
        Proof {
            signature: self.signing_key.sign(&transcript).to_bytes().to_vec(),
        }
    }
}

impl fmt::Debug for AgentIdentity {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("AgentIdentity")
            .field("signing_key", &"[redacted]")
            .finish()
    }
}

/// The pin of an Ed25519 public key: lowercase hex SHA-256.
pub fn pin_of(public_key: &[u8; 32]) -> String {
    hex::encode(Sha256::digest(public_key))
}

/// Whether `pin` has the form of a pin (64 hex digits), for checking config at load time.
pub fn is_valid_pin(pin: &str) -> bool {
    parse_pin(pin).is_some()
}

fn parse_pin(pin: &str) -> Option<[u8; 32]> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(pin, &mut bytes).ok()?;
    Some(bytes)
}

/// Broker side of handshake step 3: whether `proof` shows that the agent which sent `hello`
/// holds the key pinned as `expected_pin` (hex, either case), for this `broker_nonce` and
/// this connection's `channel_binding`.
///
/// The pin is compared in constant time and the signature (Ed25519, `verify_strict`) is
/// checked even when the pin does not match, so every failure gives the same [`AuthError`]
/// after about the same work.
pub fn verify_agent(
    expected_pin: &str,
    hello: &Hello,
    broker_nonce: &[u8; 32],
    proof: &Proof,
    channel_binding: &[u8],
) -> Result<(), AuthError> {
    let presented = Sha256::digest(hello.public_key);
    let pin_matches = match parse_pin(expected_pin) {
        Some(expected) => expected.ct_eq(presented.as_slice()),
        None => Choice::from(0),
    };
    let signature_valid = Choice::from(u8::from(signature_valid(
        hello,
        broker_nonce,
        proof,
        channel_binding,
    )));
    if bool::from(pin_matches & signature_valid) {
        Ok(())
    } else {
        Err(AUTH_FAILED)
    }
}

fn signature_valid(
    hello: &Hello,
    broker_nonce: &[u8; 32],
    proof: &Proof,
    channel_binding: &[u8],
) -> bool {
    let Ok(public_key) = VerifyingKey::from_bytes(&hello.public_key) else {
        return false;
    };
    let Ok(signature) = Signature::from_slice(&proof.signature) else {
        return false;
    };
    let transcript = transcript(
        &hello.agent_id,
        &hello.public_key,
        &hello.agent_nonce,
        broker_nonce,
        channel_binding,
    );
    public_key.verify_strict(&transcript, &signature).is_ok()
}

/// The signed bytes (see the module docs). Variable-length parts carry their length, so no
/// two different inputs give the same transcript.
fn transcript(
    agent_id: &str,
    public_key: &[u8; 32],
    agent_nonce: &[u8; 32],
    broker_nonce: &[u8; 32],
    channel_binding: &[u8],
) -> Vec<u8> {
    let mut transcript = Vec::with_capacity(
        TRANSCRIPT_DOMAIN.len() + 8 + agent_id.len() + 3 * 32 + 8 + channel_binding.len(),
    );
    transcript.extend_from_slice(TRANSCRIPT_DOMAIN);
    transcript.extend_from_slice(&(agent_id.len() as u64).to_be_bytes());
    transcript.extend_from_slice(agent_id.as_bytes());
    transcript.extend_from_slice(public_key);
    transcript.extend_from_slice(agent_nonce);
    transcript.extend_from_slice(broker_nonce);
    transcript.extend_from_slice(&(channel_binding.len() as u64).to_be_bytes());
    transcript.extend_from_slice(channel_binding);
    transcript
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::frame::{decode, encode, Frame};

    const SECRET: &[u8; 32] = b"0123456789abcdef0123456789abcdef";
    const OTHER_SECRET: &[u8; 32] = b"0123456789abcdef0123456789abcdeF";
    const BINDING: &[u8] = b"tls-exporter bytes";

    struct Handshake {
        pin: String,
        hello: Hello,
        broker_nonce: [u8; 32],
        proof: Proof,
    }

    fn handshake() -> Handshake {
        let identity = AgentIdentity::from_secret(SECRET).unwrap();
        let hello = identity.hello("acme-dc1", random_nonce());
        let broker_nonce = random_nonce();
        let proof = identity.prove(&hello, &broker_nonce, BINDING);
        Handshake {
            pin: identity.pin(),
            hello,
            broker_nonce,
            proof,
        }
    }

    fn verify(handshake: &Handshake, binding: &[u8]) -> Result<(), AuthError> {
        verify_agent(
            &handshake.pin,
            &handshake.hello,
            &handshake.broker_nonce,
            &handshake.proof,
            binding,
        )
    }

    #[test]
    fn a_correct_proof_verifies_also_through_the_wire() {
        let handshake = handshake();
        assert_eq!(verify(&handshake, BINDING), Ok(()));
        // The pin may be pasted in upper case.
        assert_eq!(
            verify_agent(
                &handshake.pin.to_uppercase(),
                &handshake.hello,
                &handshake.broker_nonce,
                &handshake.proof,
                BINDING
            ),
            Ok(())
        );
        // What the broker sees after encode/decode verifies the same.
        let Frame::Hello(hello) =
            decode(&encode(&Frame::Hello(handshake.hello.clone())).unwrap()).unwrap()
        else {
            panic!("not a hello");
        };
        let Frame::Proof(proof) =
            decode(&encode(&Frame::Proof(handshake.proof.clone())).unwrap()).unwrap()
        else {
            panic!("not a proof");
        };
        assert_eq!(
            verify_agent(
                &handshake.pin,
                &hello,
                &handshake.broker_nonce,
                &proof,
                BINDING
            ),
            Ok(())
        );
    }

    #[test]
    fn without_channel_binding_an_empty_one_is_used() {
        let identity = AgentIdentity::from_secret(SECRET).unwrap();
        let hello = identity.hello("acme-dc1", [1; 32]);
        let proof = identity.prove(&hello, &[2; 32], &[]);
        assert_eq!(
            verify_agent(&identity.pin(), &hello, &[2; 32], &proof, &[]),
            Ok(())
        );
    }

    #[test]
    fn every_tampering_fails_with_the_same_error() {
        let good = handshake();
        let mut failures: Vec<(&str, Result<(), AuthError>)> = Vec::new();

        // Wrong secret: another key, pinned value unchanged.
        let impostor = AgentIdentity::from_secret(OTHER_SECRET).unwrap();
        let hello = impostor.hello("acme-dc1", good.hello.agent_nonce);
        let proof = impostor.prove(&hello, &good.broker_nonce, BINDING);
        failures.push((
            "wrong secret",
            verify_agent(&good.pin, &hello, &good.broker_nonce, &proof, BINDING),
        ));
        // Wrong secret that claims the right public key in its hello.
        let mut claimed = hello.clone();
        claimed.public_key = good.hello.public_key;
        let proof = impostor.prove(&claimed, &good.broker_nonce, BINDING);
        failures.push((
            "wrong secret, right public key",
            verify_agent(&good.pin, &claimed, &good.broker_nonce, &proof, BINDING),
        ));

        // Wrong pin, right proof.
        let other_pin = impostor.pin();
        failures.push((
            "wrong pin",
            verify_agent(
                &other_pin,
                &good.hello,
                &good.broker_nonce,
                &good.proof,
                BINDING,
            ),
        ));
        failures.push((
            "malformed pin",
            verify_agent(
                "not-a-pin",
                &good.hello,
                &good.broker_nonce,
                &good.proof,
                BINDING,
            ),
        ));
        // The pin itself used as if it were the secret cannot log in.
        let from_pin = AgentIdentity::from_secret(good.pin.as_bytes()).unwrap();
        let hello = from_pin.hello("acme-dc1", [9; 32]);
        let proof = from_pin.prove(&hello, &good.broker_nonce, BINDING);
        failures.push((
            "pin used as secret",
            verify_agent(&good.pin, &hello, &good.broker_nonce, &proof, BINDING),
        ));

        let mut altered = handshake();
        altered.hello.agent_id = "acme-dc2".into();
        failures.push(("altered agent id", verify(&altered, BINDING)));

        let mut altered = handshake();
        altered.hello.agent_nonce[0] ^= 1;
        failures.push(("altered agent nonce", verify(&altered, BINDING)));

        let mut altered = handshake();
        altered.broker_nonce[31] ^= 0x80;
        failures.push(("altered broker nonce", verify(&altered, BINDING)));

        // Replay: a proof recorded for one challenge, presented to another.
        let mut replayed = handshake();
        replayed.broker_nonce = random_nonce();
        failures.push(("replayed proof", verify(&replayed, BINDING)));

        failures.push((
            "other channel binding",
            verify(&good, b"tls-exporter other"),
        ));
        failures.push(("no channel binding", verify(&good, b"")));

        let mut altered = handshake();
        altered.proof.signature.truncate(63);
        failures.push(("truncated signature", verify(&altered, BINDING)));
        let mut altered = handshake();
        altered.proof.signature = vec![0xff; 64];
        failures.push(("garbage signature", verify(&altered, BINDING)));
        let mut altered = handshake();
        altered.proof.signature.clear();
        failures.push(("empty signature", verify(&altered, BINDING)));
        let mut altered = handshake();
        altered.proof.signature[10] ^= 1;
        failures.push(("flipped signature bit", verify(&altered, BINDING)));

        // A public key that is not a curve point, with its own pin.
        let mut altered = handshake();
        altered.hello.public_key = [0xff; 32];
        altered.pin = pin_of(&altered.hello.public_key);
        failures.push(("invalid public key", verify(&altered, BINDING)));

        let first = failures[0].1.unwrap_err();
        for (case, result) in &failures {
            assert_eq!(*result, Err(first), "{case}");
            assert_eq!(
                result.unwrap_err().to_string(),
                "agent authentication failed",
                "{case}"
            );
        }
        // The good handshake still verifies: the cases above did not pass by accident.
        assert_eq!(verify(&good, BINDING), Ok(()));
    }

    #[test]
    fn short_secrets_are_refused() {
        assert_eq!(
            AgentIdentity::from_secret(&[7; 31]).unwrap_err(),
            IdentityError::SecretTooShort { minimum: 32 }
        );
        assert!(AgentIdentity::from_secret(&[]).is_err());
        assert!(AgentIdentity::from_secret(&[7; 32]).is_ok());
        assert!(AgentIdentity::from_secret(&[7; 100]).is_ok());
    }

    #[test]
    fn identity_is_deterministic_and_distinct_per_secret() {
        let first = AgentIdentity::from_secret(SECRET).unwrap();
        let again = AgentIdentity::from_secret(SECRET).unwrap();
        let other = AgentIdentity::from_secret(OTHER_SECRET).unwrap();
        assert_eq!(first.pin(), again.pin());
        assert_eq!(first.public_key(), again.public_key());
        assert_ne!(first.pin(), other.pin());
        assert_eq!(first.pin().len(), 64);
        assert!(first
            .pin()
            .chars()
            .all(|c| matches!(c, '0'..='9' | 'a'..='f')));
        assert!(is_valid_pin(&first.pin()));
        assert!(!is_valid_pin("abc"));
        assert_eq!(first.pin(), pin_of(&first.public_key()));
        // Pin the derivation itself: changing salt, info or hash must be a deliberate,
        // versioned change (existing pins in configs would stop matching).
        let expected_seed = {
            let mut seed = [0u8; 32];
            Hkdf::<Sha256>::new(Some(b"keybroker-agent"), SECRET)
                .expand(b"keybroker agent identity v1", &mut seed)
                .unwrap();
            seed
        };
        assert_eq!(
            first.public_key(),
            SigningKey::from_bytes(&expected_seed)
                .verifying_key()
                .to_bytes()
        );
    }

    #[test]
    fn debug_shows_no_key_material() {
        let identity = AgentIdentity::from_secret(SECRET).unwrap();
        let debug = format!("{identity:?}");
        let secret_key = identity.signing_key.to_bytes();
        for bytes in [&secret_key[..], &identity.public_key()[..]] {
            assert!(!debug.contains(&hex::encode(bytes)), "{debug}");
            assert!(!debug.contains(&format!("{bytes:?}")), "{debug}");
            assert!(
                !debug.contains(&format!("{}", bytes[0])) || bytes[0] < 10,
                "{debug}"
            );
        }
        assert!(!debug.contains(&identity.pin()), "{debug}");
        assert_eq!(debug, r#"AgentIdentity { signing_key: "[redacted]" }"#);
        assert_eq!(format!("{:?}", AUTH_FAILED), "AuthError { _private: () }");
    }

    #[test]
    fn transcript_is_unambiguous() {
        // Moving a byte from the agent id into the channel binding changes the transcript.
        let a = transcript("ab", &[0; 32], &[1; 32], &[2; 32], b"c");
        let b = transcript("a", &[0; 32], &[1; 32], &[2; 32], b"bc");
        assert_ne!(a, b);
        assert!(a.starts_with(b"keybroker agent auth v1\0\0\0\0\0\0\0\0\x02ab"));
    }

    #[test]
    fn nonces_are_fresh() {
        assert_ne!(random_nonce(), random_nonce());
    }
}
