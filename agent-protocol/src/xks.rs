//! Message bodies of the AWS KMS External Key Store (XKS) proxy API v1
//! (<https://github.com/aws/aws-kms-xksproxy-api-spec>, "External Key Store Proxy API
//! Specification"), carried inside [`crate::Request`] and [`crate::Response`] frames.
//!
//! Field names and values are the spec's (camelCase JSON, standard base64 for bytes). What
//! keybroker adds is marked as an extension: `keybrokerTenantId` in the request metadata.
//! Plaintext is held in [`SecretBytes`] (zeroized, redacted in `Debug`).

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::encoding::{self, SecretBytes};

/// A string-valued enum whose unknown values are kept as received (`Other`), so a newer peer's
/// value is reported rather than turned into a parse failure of the whole frame.
macro_rules! open_string_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident => $text:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$variant_meta])* $variant, )*
            /// A value this version does not know, kept exactly as received.
            Other(String),
        }

        impl $name {
            /// The value as it appears on the wire.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $text, )*
                    Self::Other(text) => text,
                }
            }
        }

        impl From<&str> for $name {
            fn from(text: &str) -> Self {
                match text {
                    $( $text => Self::$variant, )*
                    other => Self::Other(other.to_owned()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                Ok(Self::from(text.as_str()))
            }
        }
    };
}

/// XKS proxy API v1 §requestMetadata (GetKeyMetadata, Encrypt, Decrypt): who asked and why,
/// for the agent's audit log and its own authorization.
///
/// Unknown fields are accepted and ignored here, unlike in every other body: the spec
/// (Appendix B) says KMS may add metadata fields over time, and metadata only informs logging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestMetadata {
    /// The principal that made the call. keybroker puts the calling token's entity here.
    pub aws_principal_arn: String,
    /// The operation that caused this call (keybroker: e.g. `"transit/encrypt"`).
    pub kms_operation: String,
    /// Identifier of the originating request, for correlating the agent's log with the
    /// broker's audit log. Opaque.
    pub kms_request_id: String,
    /// The key the caller named (keybroker: the transit key path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_arn: Option<String>,
    /// The service that called on the principal's behalf, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_via_service: Option<String>,
    /// The VPC the request came from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_source_vpc: Option<String>,
    /// The VPC endpoint the request came through, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_source_vpce: Option<String>,
    /// keybroker extension, not in the XKS spec: the tenant on whose behalf the broker asks.
    /// The agent checks it against its own allowlist (as it does the frame's `tenant`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keybroker_tenant_id: Option<String>,
}

impl RequestMetadata {
    /// The metadata keybroker sends: `principal`, the operation, the request id and the
    /// tenant; the optional AWS fields left out.
    pub fn keybroker(principal: &str, operation: &str, request_id: &str, tenant: &str) -> Self {
        Self {
            aws_principal_arn: principal.to_owned(),
            kms_operation: operation.to_owned(),
            kms_request_id: request_id.to_owned(),
            kms_key_arn: None,
            kms_via_service: None,
            aws_source_vpc: None,
            aws_source_vpce: None,
            keybroker_tenant_id: Some(tenant.to_owned()),
        }
    }
}

/// XKS proxy API v1 §GetHealthStatus requestMetadata: only the request id and operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthRequestMetadata {
    /// Identifier of the originating request. Opaque.
    pub kms_request_id: String,
    /// Why the health check was made (the spec's periodic check uses `"KmsHealthCheck"`).
    pub kms_operation: String,
    /// keybroker extension, not in the XKS spec: the tenant asking, if the check is for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keybroker_tenant_id: Option<String>,
}

/// XKS proxy API v1 §GetKeyMetadata request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GetKeyMetadataRequest {
    /// Who asked and why.
    pub request_metadata: RequestMetadata,
}

open_string_enum! {
    /// XKS proxy API v1 §GetKeyMetadata `keySpec`. v1 knows only 256-bit AES keys.
    pub enum KeySpec {
        /// A 256-bit AES key.
        Aes256 => "AES_256",
    }
}

open_string_enum! {
    /// XKS proxy API v1 §GetKeyMetadata `keyUsage` entry. Key managers may list more usages
    /// than encrypt and decrypt (the spec names DERIVE, SIGN, VERIFY, WRAP, UNWRAP).
    pub enum KeyUsage {
        /// The key can encrypt.
        Encrypt => "ENCRYPT",
        /// The key can decrypt.
        Decrypt => "DECRYPT",
    }
}

/// XKS proxy API v1 §GetKeyMetadata `keyStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum KeyStatus {
    /// The key can be used.
    Enabled,
    /// The key exists but is disabled in the key manager.
    Disabled,
}

/// XKS proxy API v1 §GetKeyMetadata response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GetKeyMetadataResponse {
    /// The key's type; must be `AES_256` for the broker to use it.
    pub key_spec: KeySpec,
    /// What the key can do; must include `ENCRYPT` and `DECRYPT` (at most ten entries).
    pub key_usage: Vec<KeyUsage>,
    /// Whether the key is enabled in the key manager.
    pub key_status: KeyStatus,
}

/// XKS proxy API v1 `encryptionAlgorithm`: v1 has exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum EncryptionAlgorithm {
    /// AES-GCM with the key's 256-bit key, 12- or 16-byte IV and 16-byte tag.
    #[default]
    #[serde(rename = "AES_GCM")]
    AesGcm,
}

/// XKS proxy API v1 `ciphertextDataIntegrityValueAlgorithm`: v1 has exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum DataIntegrityAlgorithm {
    /// SHA-256, see [`ciphertext_data_integrity_value`].
    #[default]
    #[serde(rename = "SHA_256")]
    Sha256,
}

/// XKS proxy API v1 §Encrypt request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EncryptRequest {
    /// Who asked and why.
    pub request_metadata: RequestMetadata,
    /// What to encrypt (at least 4300 bytes must be supported).
    pub plaintext: SecretBytes,
    /// Always `AES_GCM` in v1.
    pub encryption_algorithm: EncryptionAlgorithm,
    /// Additional authenticated data bound into the tag (up to 8192 bytes).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "encoding::optional_bytes"
    )]
    pub additional_authenticated_data: Option<Vec<u8>>,
    /// When present, the response must carry `ciphertextDataIntegrityValue`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ciphertext_data_integrity_value_algorithm: Option<DataIntegrityAlgorithm>,
}

/// XKS proxy API v1 §Encrypt response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EncryptResponse {
    /// The AES-GCM tag (16 bytes).
    #[serde(with = "encoding::bytes")]
    pub authentication_tag: Vec<u8>,
    /// The ciphertext, as long as the plaintext.
    #[serde(with = "encoding::bytes")]
    pub ciphertext: Vec<u8>,
    /// The IV the key manager chose (12 or 16 bytes).
    #[serde(with = "encoding::bytes")]
    pub initialization_vector: Vec<u8>,
    /// Up to 20 bytes the key manager keeps with the ciphertext (e.g. a key version).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "encoding::optional_bytes"
    )]
    pub ciphertext_metadata: Option<Vec<u8>>,
    /// SHA-256 over the request's AAD and this response, present when the request asked for
    /// it: see [`ciphertext_data_integrity_value`].
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "encoding::optional_bytes"
    )]
    pub ciphertext_data_integrity_value: Option<Vec<u8>>,
}

impl EncryptResponse {
    /// The data integrity value of this response for a request that carried `aad`.
    pub fn compute_data_integrity_value(&self, aad: Option<&[u8]>) -> [u8; 32] {
        ciphertext_data_integrity_value(
            aad,
            self.ciphertext_metadata.as_deref(),
            &self.initialization_vector,
            &self.ciphertext,
            &self.authentication_tag,
        )
    }

    /// Whether the response carries a data integrity value and it matches this response and
    /// the request's `aad`. The broker checks this before storing a wrapped DEK.
    pub fn data_integrity_value_matches(&self, aad: Option<&[u8]>) -> bool {
        match &self.ciphertext_data_integrity_value {
            Some(value) => bool::from(
                value
                    .as_slice()
                    .ct_eq(&self.compute_data_integrity_value(aad)),
            ),
            None => false,
        }
    }
}

/// XKS proxy API v1 Appendix C: the ciphertext data integrity value (CDIV), SHA-256 over the
/// decoded `additionalAuthenticatedData || ciphertextMetadata || initializationVector ||
/// ciphertext || authenticationTag`, an absent optional field counting as empty. (On the
/// wire it is the base64 of these 32 bytes.) The spec deliberately omits lengths: the CDIV
/// guards against accidental corruption, not forgery; the GCM tag does that.
pub fn ciphertext_data_integrity_value(
    additional_authenticated_data: Option<&[u8]>,
    ciphertext_metadata: Option<&[u8]>,
    initialization_vector: &[u8],
    ciphertext: &[u8],
    authentication_tag: &[u8],
) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(additional_authenticated_data.unwrap_or_default());
    hash.update(ciphertext_metadata.unwrap_or_default());
    hash.update(initialization_vector);
    hash.update(ciphertext);
    hash.update(authentication_tag);
    hash.finalize().into()
}

/// [`ciphertext_data_integrity_value`] as the base64 string the spec shows.
pub fn ciphertext_data_integrity_value_base64(
    additional_authenticated_data: Option<&[u8]>,
    ciphertext_metadata: Option<&[u8]>,
    initialization_vector: &[u8],
    ciphertext: &[u8],
    authentication_tag: &[u8],
) -> String {
    STANDARD.encode(ciphertext_data_integrity_value(
        additional_authenticated_data,
        ciphertext_metadata,
        initialization_vector,
        ciphertext,
        authentication_tag,
    ))
}

/// XKS proxy API v1 §Decrypt request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DecryptRequest {
    /// Who asked and why.
    pub request_metadata: RequestMetadata,
    /// Always `AES_GCM` in v1.
    pub encryption_algorithm: EncryptionAlgorithm,
    /// The ciphertext from the encrypt response.
    #[serde(with = "encoding::bytes")]
    pub ciphertext: Vec<u8>,
    /// The IV from the encrypt response.
    #[serde(with = "encoding::bytes")]
    pub initialization_vector: Vec<u8>,
    /// The tag from the encrypt response.
    #[serde(with = "encoding::bytes")]
    pub authentication_tag: Vec<u8>,
    /// The AAD given to encrypt, if any.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "encoding::optional_bytes"
    )]
    pub additional_authenticated_data: Option<Vec<u8>>,
    /// The ciphertext metadata from the encrypt response, if any.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "encoding::optional_bytes"
    )]
    pub ciphertext_metadata: Option<Vec<u8>>,
}

/// XKS proxy API v1 §Decrypt response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DecryptResponse {
    /// The decrypted bytes.
    pub plaintext: SecretBytes,
}

/// XKS proxy API v1 §GetHealthStatus request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthRequest {
    /// Request id and reason.
    pub request_metadata: HealthRequestMetadata,
}

/// XKS proxy API v1 §GetHealthStatus `ekmFleetDetails[].healthStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HealthStatus {
    /// Healthy.
    Active,
    /// Unhealthy but still serving.
    Degraded,
    /// Not serving.
    Unavailable,
}

/// XKS proxy API v1 §GetHealthStatus: one key manager behind the proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EkmFleetDetail {
    /// Identifier of this key manager in its cluster.
    pub id: String,
    /// Product and version.
    pub model: String,
    /// Its health as the proxy (here: the agent) sees it.
    pub health_status: HealthStatus,
}

/// XKS proxy API v1 §GetHealthStatus response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthResponse {
    /// Number of proxies (agents) in the fleet, greater than zero.
    pub xks_proxy_fleet_size: u32,
    /// Vendor of the proxy (`keybroker`).
    pub xks_proxy_vendor: String,
    /// Product and version of the proxy.
    pub xks_proxy_model: String,
    /// Vendor of the key manager behind it.
    pub ekm_vendor: String,
    /// One to ten key managers.
    pub ekm_fleet_details: Vec<EkmFleetDetail>,
}

open_string_enum! {
    /// XKS proxy API v1 §Error codes: the `errorName` values.
    pub enum XksErrorName {
        /// 400: an input parameter is invalid.
        ValidationException => "ValidationException",
        /// 400: the key or key store is disabled, deactivated or blocked.
        InvalidStateException => "InvalidStateException",
        /// 400: ciphertext, IV, AAD or tag corrupted, missing or invalid (decrypt).
        InvalidCiphertextException => "InvalidCiphertextException",
        /// 400: the key does not support the operation.
        InvalidKeyUsageException => "InvalidKeyUsageException",
        /// 401: the request's authentication failed.
        AuthenticationFailedException => "AuthenticationFailedException",
        /// 403: not authorized for this request metadata (e.g. tenant not allowlisted).
        AccessDeniedException => "AccessDeniedException",
        /// 404: no such key.
        KeyNotFoundException => "KeyNotFoundException",
        /// 404: invalid URI path.
        InvalidUriPathException => "InvalidUriPathException",
        /// 501: operation or parameter size not supported.
        UnsupportedOperationException => "UnsupportedOperationException",
        /// 429: request rate too high (the agent's rate cap).
        ThrottlingException => "ThrottlingException",
        /// 500: generic failure, e.g. of the key manager.
        InternalException => "InternalException",
        /// 503: a dependency (e.g. the HSM) timed out.
        DependencyTimeoutException => "DependencyTimeoutException",
    }
}

impl XksErrorName {
    /// The HTTP status the spec pairs with this error (500 for names it does not list).
    pub fn http_status(&self) -> u16 {
        match self {
            Self::ValidationException
            | Self::InvalidStateException
            | Self::InvalidCiphertextException
            | Self::InvalidKeyUsageException => 400,
            Self::AuthenticationFailedException => 401,
            Self::AccessDeniedException => 403,
            Self::KeyNotFoundException | Self::InvalidUriPathException => 404,
            Self::ThrottlingException => 429,
            Self::UnsupportedOperationException => 501,
            Self::DependencyTimeoutException => 503,
            Self::InternalException | Self::Other(_) => 500,
        }
    }
}

/// XKS proxy API v1 §Error codes: the error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct XksError {
    /// What went wrong, by the spec's name.
    pub error_name: XksErrorName,
    /// Optional detail: printable ASCII, under 512 characters. Never key material.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

impl XksError {
    /// The spec's limit on `errorMessage` (exclusive).
    pub const MAX_MESSAGE_CHARS: usize = 512;

    /// An error with no message.
    pub fn new(error_name: XksErrorName) -> Self {
        Self {
            error_name,
            error_message: None,
        }
    }

    /// An error with a message made to fit the spec: characters outside printable ASCII become
    /// `?` and the text is cut to 511 characters.
    pub fn with_message(error_name: XksErrorName, message: &str) -> Self {
        let message = message
            .chars()
            .map(|c| if matches!(c, ' '..='~') { c } else { '?' })
            .take(Self::MAX_MESSAGE_CHARS - 1)
            .collect();
        Self {
            error_name,
            error_message: Some(message),
        }
    }
}

impl fmt::Display for XksError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.error_message {
            Some(message) => write!(formatter, "{}: {message}", self.error_name),
            None => write!(formatter, "{}", self.error_name),
        }
    }
}

impl std::error::Error for XksError {}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use serde::de::DeserializeOwned;

    fn metadata() -> RequestMetadata {
        RequestMetadata::keybroker("entity:1234", "transit/encrypt", "req-1", "acme")
    }

    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + fmt::Debug>(value: &T) -> String {
        let json = serde_json::to_string(value).unwrap();
        let back: T = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, value, "{json}");
        json
    }

    // The literal request/response examples of the XKS proxy API v1 spec (2022-11-10
    // revision). Three of the spec's examples miss a comma (the GetKeyMetadata, Decrypt and
    // GetHealthStatus requests); they are reproduced here with the comma added.
    const SPEC_ENCRYPT_REQUEST: &str = r#"{
        "requestMetadata": {
            "awsPrincipalArn": "arn:aws:iam::123456789012:user/Alice",
            "kmsKeyArn": "arn:aws:kms:us-east-2:123456789012:/key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "kmsOperation": "Encrypt",
            "kmsRequestId": "4112f4d6-db54-4af4-ae30-c55a22a8dfae",
            "kmsViaService": "ebs"
        },
        "additionalAuthenticatedData": "cHJvamVjdD1uaWxlLGRlcGFydG1lbnQ9bWFya2V0aW5n",
        "plaintext": "SGVsbG8gV29ybGQh",
        "encryptionAlgorithm": "AES_GCM",
        "ciphertextDataIntegrityValueAlgorithm": "SHA_256"
    }"#;
    const SPEC_ENCRYPT_RESPONSE: &str = r#"{
        "authenticationTag": "vBxN2ncH1oEkR8WVXpmyYQ==",
        "ciphertext": "ghxkK1txeDNn3q8Y",
        "ciphertextDataIntegrityValue": "qHA/ImC9h5HsLRXqCyPmWgYx7tzyoTplzILbP0fPXsc=",
        "ciphertextMetadata": "a2V5X3ZlcnNpb249MQ==",
        "initializationVector": "HMrlRw85cAJUd5Ax"
    }"#;
    const SPEC_DECRYPT_REQUEST: &str = r#"{
        "requestMetadata": {
            "awsPrincipalArn": "arn:aws:iam::123456789012:user/Alice",
            "kmsKeyArn": "arn:aws:kms:us-east-2:123456789012:/key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "kmsOperation": "Decrypt",
            "kmsRequestId": "5112f4d6-db54-4af4-ae30-c55a22a8dfae",
            "kmsViaService": "ebs"
        },
        "additionalAuthenticatedData": "cHJvamVjdD1uaWxlLGRlcGFydG1lbnQ9bWFya2V0aW5n",
        "encryptionAlgorithm": "AES_GCM",
        "ciphertext": "ghxkK1txeDNn3q8Y",
        "ciphertextMetadata": "a2V5X3ZlcnNpb249MQ==",
        "initializationVector": "HMrlRw85cAJUd5Ax",
        "authenticationTag": "vBxN2ncH1oEkR8WVXpmyYQ=="
    }"#;
    const SPEC_DECRYPT_RESPONSE: &str = r#"{ "plaintext": "SGVsbG8gV29ybGQh" }"#;
    const SPEC_METADATA_REQUEST: &str = r#"{
        "requestMetadata": {
            "awsPrincipalArn": "arn:aws:iam::123456789012:user/Alice",
            "kmsKeyArn": "arn:aws:kms:us-east-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "kmsOperation": "DescribeKey",
            "kmsRequestId": "4112f4d6-db54-4af4-ae30-c55a22a8dfae",
            "kmsViaService": "ebs"
        }
    }"#;
    const SPEC_METADATA_RESPONSE: &str = r#"{
        "keySpec": "AES_256",
        "keyUsage": ["ENCRYPT", "DECRYPT"],
        "keyStatus": "ENABLED"
    }"#;
    const SPEC_HEALTH_REQUEST: &str = r#"{
        "requestMetadata": {
            "kmsRequestId": "4112f4d6-db54-4af4-ae30-c55a22a8dfae",
            "kmsOperation": "CreateCustomKeyStore"
        }
    }"#;
    const SPEC_HEALTH_RESPONSE: &str = r#"{
        "xksProxyFleetSize": 2,
        "xksProxyVendor": "Acme Corp",
        "xksProxyModel": "Acme XKS Proxy 1.0",
        "ekmVendor": "Thales Group",
        "ekmFleetDetails": [
            { "id": "hsm-id-1", "model": "Luna 5.0", "healthStatus": "DEGRADED" },
            { "id": "hsm-id-2", "model": "Luna 5.1", "healthStatus": "ACTIVE" }
        ]
    }"#;
    const SPEC_ERROR: &str = r#"{
        "errorName": "InvalidCiphertextException",
        "errorMessage": "The request was rejected because the specified ciphertext, or additional authenticated data is corrupted, missing, or otherwise invalid."
    }"#;

    #[test]
    fn spec_encrypt_example_parses() {
        let request: EncryptRequest = serde_json::from_str(SPEC_ENCRYPT_REQUEST).unwrap();
        assert_eq!(request.plaintext.expose(), b"Hello World!");
        assert_eq!(
            request.additional_authenticated_data.as_deref(),
            Some(&b"project=nile,department=marketing"[..])
        );
        assert_eq!(request.encryption_algorithm, EncryptionAlgorithm::AesGcm);
        assert_eq!(
            request.ciphertext_data_integrity_value_algorithm,
            Some(DataIntegrityAlgorithm::Sha256)
        );
        assert_eq!(request.request_metadata.kms_operation, "Encrypt");
        assert_eq!(
            request.request_metadata.kms_via_service.as_deref(),
            Some("ebs")
        );
        assert_eq!(request.request_metadata.keybroker_tenant_id, None);
        round_trip(&request);

        let response: EncryptResponse = serde_json::from_str(SPEC_ENCRYPT_RESPONSE).unwrap();
        assert_eq!(response.initialization_vector.len(), 12);
        assert_eq!(response.authentication_tag.len(), 16);
        assert_eq!(response.ciphertext.len(), 12);
        assert_eq!(
            response.ciphertext_metadata.as_deref(),
            Some(&b"key_version=1"[..])
        );
        round_trip(&response);
    }

    #[test]
    fn spec_decrypt_example_parses() {
        let request: DecryptRequest = serde_json::from_str(SPEC_DECRYPT_REQUEST).unwrap();
        assert_eq!(request.ciphertext.len(), 12);
        assert_eq!(request.request_metadata.kms_operation, "Decrypt");
        assert_eq!(
            request.ciphertext_metadata.as_deref(),
            Some(&b"key_version=1"[..])
        );
        round_trip(&request);
        let response: DecryptResponse = serde_json::from_str(SPEC_DECRYPT_RESPONSE).unwrap();
        assert_eq!(response.plaintext.expose(), b"Hello World!");
        round_trip(&response);
    }

    #[test]
    fn spec_metadata_health_and_error_examples_parse() {
        let request: GetKeyMetadataRequest = serde_json::from_str(SPEC_METADATA_REQUEST).unwrap();
        assert_eq!(request.request_metadata.kms_operation, "DescribeKey");
        round_trip(&request);
        let response: GetKeyMetadataResponse =
            serde_json::from_str(SPEC_METADATA_RESPONSE).unwrap();
        assert_eq!(response.key_spec, KeySpec::Aes256);
        assert_eq!(response.key_usage, [KeyUsage::Encrypt, KeyUsage::Decrypt]);
        assert_eq!(response.key_status, KeyStatus::Enabled);
        round_trip(&response);

        let request: HealthRequest = serde_json::from_str(SPEC_HEALTH_REQUEST).unwrap();
        assert_eq!(
            request.request_metadata.kms_operation,
            "CreateCustomKeyStore"
        );
        round_trip(&request);
        let response: HealthResponse = serde_json::from_str(SPEC_HEALTH_RESPONSE).unwrap();
        assert_eq!(response.xks_proxy_fleet_size, 2);
        assert_eq!(
            response.ekm_fleet_details[0].health_status,
            HealthStatus::Degraded
        );
        round_trip(&response);

        let error: XksError = serde_json::from_str(SPEC_ERROR).unwrap();
        assert_eq!(error.error_name, XksErrorName::InvalidCiphertextException);
        assert_eq!(error.error_name.http_status(), 400);
        round_trip(&error);
    }

    #[test]
    fn optional_fields_are_omitted_when_none() {
        let request = EncryptRequest {
            request_metadata: RequestMetadata {
                keybroker_tenant_id: None,
                ..metadata()
            },
            plaintext: SecretBytes::new(vec![0, 1, 2, 255]),
            encryption_algorithm: EncryptionAlgorithm::AesGcm,
            additional_authenticated_data: None,
            ciphertext_data_integrity_value_algorithm: None,
        };
        let json = round_trip(&request);
        assert_eq!(
            json,
            r#"{"requestMetadata":{"awsPrincipalArn":"entity:1234","kmsOperation":"transit/encrypt","kmsRequestId":"req-1"},"plaintext":"AAEC/w==","encryptionAlgorithm":"AES_GCM"}"#
        );

        let response = EncryptResponse {
            authentication_tag: vec![7; 16],
            ciphertext: vec![1, 2, 3],
            initialization_vector: vec![9; 12],
            ciphertext_metadata: None,
            ciphertext_data_integrity_value: None,
        };
        let json = round_trip(&response);
        assert!(!json.contains("ciphertextMetadata"), "{json}");
        assert!(!json.contains("ciphertextDataIntegrityValue"), "{json}");

        let decrypt = DecryptRequest {
            request_metadata: metadata(),
            encryption_algorithm: EncryptionAlgorithm::AesGcm,
            ciphertext: vec![1, 2, 3],
            initialization_vector: vec![9; 12],
            authentication_tag: vec![7; 16],
            additional_authenticated_data: None,
            ciphertext_metadata: None,
        };
        let json = round_trip(&decrypt);
        assert!(!json.contains("additionalAuthenticatedData"), "{json}");
        assert!(json.contains(r#""keybrokerTenantId":"acme""#), "{json}");

        assert_eq!(
            round_trip(&XksError::new(XksErrorName::KeyNotFoundException)),
            r#"{"errorName":"KeyNotFoundException"}"#
        );
    }

    #[test]
    fn explicit_null_optional_bytes_read_as_none() {
        let json = r#"{"authenticationTag":"AA==","ciphertext":"","initializationVector":"AA==","ciphertextMetadata":null}"#;
        let response: EncryptResponse = serde_json::from_str(json).unwrap();
        assert_eq!(response.ciphertext_metadata, None);
        assert!(response.ciphertext.is_empty());
    }

    #[test]
    fn unknown_error_name_is_preserved() {
        let json = r#"{"errorName":"KeyRotatingException","errorMessage":"try later"}"#;
        let error: XksError = serde_json::from_str(json).unwrap();
        assert_eq!(
            error.error_name,
            XksErrorName::Other("KeyRotatingException".into())
        );
        assert_eq!(error.error_name.http_status(), 500);
        assert_eq!(serde_json::to_string(&error).unwrap(), json);
    }

    #[test]
    fn every_known_error_name_round_trips_by_name() {
        for name in [
            "ValidationException",
            "InvalidStateException",
            "InvalidCiphertextException",
            "InvalidKeyUsageException",
            "AuthenticationFailedException",
            "AccessDeniedException",
            "KeyNotFoundException",
            "InvalidUriPathException",
            "UnsupportedOperationException",
            "ThrottlingException",
            "InternalException",
            "DependencyTimeoutException",
        ] {
            let parsed = XksErrorName::from(name);
            assert!(!matches!(parsed, XksErrorName::Other(_)), "{name}");
            assert_eq!(parsed.as_str(), name);
            assert_eq!(
                serde_json::to_string(&parsed).unwrap(),
                format!("\"{name}\"")
            );
        }
    }

    #[test]
    fn unknown_key_usage_is_kept_and_unknown_fields_refused() {
        let json = r#"{"keySpec":"AES_256","keyUsage":["ENCRYPT","DECRYPT","WRAP"],"keyStatus":"DISABLED"}"#;
        let response: GetKeyMetadataResponse = serde_json::from_str(json).unwrap();
        assert_eq!(response.key_usage[2], KeyUsage::Other("WRAP".into()));
        assert_eq!(response.key_status, KeyStatus::Disabled);
        assert_eq!(serde_json::to_string(&response).unwrap(), json);

        let extra = r#"{"plaintext":"AA==","surprise":1}"#;
        assert!(serde_json::from_str::<DecryptResponse>(extra).is_err());
    }

    #[test]
    fn error_message_is_made_printable_and_short() {
        let error = XksError::with_message(XksErrorName::InternalException, "bad\nkey é");
        assert_eq!(error.error_message.as_deref(), Some("bad?key ?"));
        let long = XksError::with_message(XksErrorName::InternalException, &"x".repeat(2000));
        assert_eq!(long.error_message.map(|m| m.len()), Some(511));
    }

    #[test]
    fn data_integrity_value_matches_the_spec_appendix_c_example() {
        let request: EncryptRequest = serde_json::from_str(SPEC_ENCRYPT_REQUEST).unwrap();
        let response: EncryptResponse = serde_json::from_str(SPEC_ENCRYPT_RESPONSE).unwrap();
        let aad = request.additional_authenticated_data.as_deref();
        // Appendix C gives this hash in hex and base64.
        assert_eq!(
            hex::encode(response.compute_data_integrity_value(aad)),
            "a8703f2260bd8791ec2d15ea0b23e65a0631eedcf2a13a65cc82db3f47cf5ec7"
        );
        assert_eq!(
            ciphertext_data_integrity_value_base64(
                aad,
                response.ciphertext_metadata.as_deref(),
                &response.initialization_vector,
                &response.ciphertext,
                &response.authentication_tag,
            ),
            "qHA/ImC9h5HsLRXqCyPmWgYx7tzyoTplzILbP0fPXsc="
        );
        assert!(response.data_integrity_value_matches(aad));
        // Another AAD, or a flipped ciphertext bit, no longer matches.
        assert!(!response.data_integrity_value_matches(None));
        let mut corrupted = response.clone();
        corrupted.ciphertext[0] ^= 1;
        assert!(!corrupted.data_integrity_value_matches(aad));
        // No value at all never matches.
        corrupted.ciphertext_data_integrity_value = None;
        assert!(!corrupted.data_integrity_value_matches(aad));
    }

    #[test]
    fn data_integrity_value_against_a_hand_computed_sha256() {
        // SHA-256("aadivcttag"), no metadata.
        let value = ciphertext_data_integrity_value(Some(b"aad"), None, b"iv", b"ct", b"tag");
        assert_eq!(
            hex::encode(value),
            "b3ff01d9f64f5c2048d1addfaa232918045bc7cbae3ae30b1e5bfbf92660db5e"
        );
        // Absent AAD and metadata count as empty: SHA-256("ivcttag").
        let value = ciphertext_data_integrity_value(None, None, b"iv", b"ct", b"tag");
        assert_eq!(
            hex::encode(value),
            "5182e7e6e0b2944a86fc152ddf223a34a3d3a86b03757cb3568c5da392dfd0d9"
        );
    }
}
