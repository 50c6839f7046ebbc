//! Byte fields on the wire: standard base64 (RFC 4648 §4, padded), as the XKS proxy API v1
//! specifies for every binary field, and [`SecretBytes`] for the fields that carry plaintext.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Decodes a base64 string without first copying it into an owned `String`.
struct Base64Visitor;

impl de::Visitor<'_> for Base64Visitor {
    type Value = Vec<u8>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a standard base64 string")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Vec<u8>, E> {
        // The message names the problem, never the value: it may be a piece of plaintext.
        STANDARD
            .decode(value)
            .map_err(|_| E::custom("invalid base64"))
    }
}

/// `#[serde(with = "encoding::bytes")]` for a required byte field.
pub(crate) mod bytes {
    use super::*;

    pub(crate) fn serialize<S: Serializer, T: AsRef<[u8]>>(
        value: &T,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(value.as_ref()))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        deserializer.deserialize_str(Base64Visitor)
    }
}

/// `#[serde(default, skip_serializing_if = "Option::is_none", with = "encoding::optional_bytes")]`
/// for an optional byte field: omitted when `None`, `null` read as `None`.
pub(crate) mod optional_bytes {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        value: &Option<Vec<u8>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(bytes) => serializer.serialize_str(&STANDARD.encode(bytes)),
            None => serializer.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        struct OptionVisitor;
        impl<'de> de::Visitor<'de> for OptionVisitor {
            type Value = Option<Vec<u8>>;
            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a standard base64 string or null")
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(
                self,
                deserializer: D,
            ) -> Result<Self::Value, D::Error> {
                deserializer.deserialize_str(Base64Visitor).map(Some)
            }
        }
        deserializer.deserialize_option(OptionVisitor)
    }
}

/// `#[serde(with = "encoding::array32")]` for keys and nonces: exactly 32 bytes.
pub(crate) mod array32 {
    use super::*;

    pub(crate) use super::bytes::serialize;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<[u8; 32], D::Error> {
        let bytes = deserializer.deserialize_str(Base64Visitor)?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| de::Error::custom("expected exactly 32 bytes"))
    }
}

/// Bytes that must not outlive their use: plaintext going to or coming from the agent's key.
///
/// Zeroized on drop, compared in constant time, and `Debug` prints only `[redacted]`. On the
/// wire it is a standard base64 string like every other XKS byte field; the encoded copy made
/// while serializing is zeroized too. (The JSON text of a whole frame is the I/O layer's to
/// wipe: see [`crate::encode`].)
#[derive(Clone, Default)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Takes ownership of `bytes`; they are wiped when this value is dropped.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The secret bytes, for the one place that needs them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Number of bytes (not secret: the ciphertext has the same length).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(bytes: Vec<u8>) -> Self {
        Self::new(bytes)
    }
}

impl From<Zeroizing<Vec<u8>>> for SecretBytes {
    fn from(bytes: Zeroizing<Vec<u8>>) -> Self {
        Self(bytes)
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("SecretBytes([redacted])")
    }
}

impl PartialEq for SecretBytes {
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.0.as_slice().ct_eq(other.0.as_slice()))
    }
}

impl Eq for SecretBytes {}

impl Serialize for SecretBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let encoded = Zeroizing::new(STANDARD.encode(self.0.as_slice()));
        serializer.serialize_str(&encoded)
    }
}

impl<'de> Deserialize<'de> for SecretBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_str(Base64Visitor)
            .map(|bytes| Self(Zeroizing::new(bytes)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn secret_bytes_debug_is_redacted() {
        let secret = SecretBytes::new(b"attack at dawn".to_vec());
        let debug = format!("{secret:?}");
        assert!(!debug.contains("attack"), "{debug}");
        assert!(debug.contains("redacted"));
    }

    #[test]
    fn secret_bytes_round_trip_as_base64() {
        let secret = SecretBytes::new(b"Hello World!".to_vec());
        let json = serde_json::to_string(&secret).unwrap();
        assert_eq!(json, "\"SGVsbG8gV29ybGQh\"");
        let back: SecretBytes = serde_json::from_str(&json).unwrap();
        assert_eq!(back.expose(), b"Hello World!");
        assert_eq!(back, secret);
        assert_ne!(back, SecretBytes::new(b"Hello World?".to_vec()));
    }

    #[test]
    fn invalid_base64_is_refused_without_echoing_it() {
        let error = serde_json::from_str::<SecretBytes>("\"not*base64\"").unwrap_err();
        assert!(!error.to_string().contains("not*base64"), "{error}");
    }
}
