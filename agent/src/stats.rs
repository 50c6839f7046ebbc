//! Counters of what the agent served and refused, for the operator and for tests that compare
//! the agent's call count with the broker's metrics.

use std::sync::atomic::{AtomicU64, Ordering};

use keybroker_agent_protocol::OperationKind;

/// Why a request was not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The request's deadline had passed on arrival at the service (`DependencyTimeoutException`).
    DeadlineExpired,
    /// The tenant may not use the key, or the key does not exist for it (`AccessDeniedException`).
    AccessDenied,
    /// The tenant may use every key, and this one does not exist (`KeyNotFoundException`).
    KeyNotFound,
    /// Over the rate cap (`ThrottlingException`).
    Throttled,
    /// A field out of range (`ValidationException`).
    Invalid,
    /// Decryption failed: tag, IV, AAD or ciphertext wrong (`InvalidCiphertextException`).
    InvalidCiphertext,
    /// The crypto library failed where it cannot, or the HSM failed otherwise than by being
    /// out of reach (`InternalException`).
    Internal,
    /// The HSM holding the key cannot be reached now (`DependencyTimeoutException`).
    KeyUnavailable,
}

impl Refusal {
    /// A short word for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DeadlineExpired => "deadline_expired",
            Self::AccessDenied => "access_denied",
            Self::KeyNotFound => "key_not_found",
            Self::Throttled => "throttled",
            Self::Invalid => "invalid_request",
            Self::InvalidCiphertext => "invalid_ciphertext",
            Self::Internal => "internal_error",
            Self::KeyUnavailable => "key_unavailable",
        }
    }
}

/// Requests served, by operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OperationCounts {
    /// GetKeyMetadata.
    pub get_key_metadata: u64,
    /// Encrypt.
    pub encrypt: u64,
    /// Decrypt.
    pub decrypt: u64,
    /// GetHealthStatus.
    pub health: u64,
}

impl OperationCounts {
    /// All operations together.
    pub fn total(&self) -> u64 {
        self.get_key_metadata + self.encrypt + self.decrypt + self.health
    }
}

/// Requests refused, by reason (see [`Refusal`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefusalCounts {
    /// [`Refusal::DeadlineExpired`].
    pub deadline_expired: u64,
    /// [`Refusal::AccessDenied`].
    pub access_denied: u64,
    /// [`Refusal::KeyNotFound`].
    pub key_not_found: u64,
    /// [`Refusal::Throttled`].
    pub throttled: u64,
    /// [`Refusal::Invalid`].
    pub invalid_request: u64,
    /// [`Refusal::InvalidCiphertext`].
    pub invalid_ciphertext: u64,
    /// [`Refusal::Internal`].
    pub internal_error: u64,
    /// [`Refusal::KeyUnavailable`].
    pub key_unavailable: u64,
}

impl RefusalCounts {
    /// All reasons together.
    pub fn total(&self) -> u64 {
        self.deadline_expired
            + self.access_denied
            + self.key_not_found
            + self.throttled
            + self.invalid_request
            + self.invalid_ciphertext
            + self.internal_error
            + self.key_unavailable
    }
}

/// A snapshot of the counters since the service started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests answered with a result.
    pub served: OperationCounts,
    /// Requests answered with an error.
    pub refused: RefusalCounts,
}

/// The live counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    get_key_metadata: AtomicU64,
    encrypt: AtomicU64,
    decrypt: AtomicU64,
    health: AtomicU64,
    deadline_expired: AtomicU64,
    access_denied: AtomicU64,
    key_not_found: AtomicU64,
    throttled: AtomicU64,
    invalid_request: AtomicU64,
    invalid_ciphertext: AtomicU64,
    internal_error: AtomicU64,
    key_unavailable: AtomicU64,
}

impl Counters {
    pub(crate) fn served(&self, operation: OperationKind) {
        let counter = match operation {
            OperationKind::GetKeyMetadata => &self.get_key_metadata,
            OperationKind::Encrypt => &self.encrypt,
            OperationKind::Decrypt => &self.decrypt,
            OperationKind::Health => &self.health,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn refused(&self, refusal: Refusal) {
        let counter = match refusal {
            Refusal::DeadlineExpired => &self.deadline_expired,
            Refusal::AccessDenied => &self.access_denied,
            Refusal::KeyNotFound => &self.key_not_found,
            Refusal::Throttled => &self.throttled,
            Refusal::Invalid => &self.invalid_request,
            Refusal::InvalidCiphertext => &self.invalid_ciphertext,
            Refusal::Internal => &self.internal_error,
            Refusal::KeyUnavailable => &self.key_unavailable,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Stats {
            served: OperationCounts {
                get_key_metadata: read(&self.get_key_metadata),
                encrypt: read(&self.encrypt),
                decrypt: read(&self.decrypt),
                health: read(&self.health),
            },
            refused: RefusalCounts {
                deadline_expired: read(&self.deadline_expired),
                access_denied: read(&self.access_denied),
                key_not_found: read(&self.key_not_found),
                throttled: read(&self.throttled),
                invalid_request: read(&self.invalid_request),
                invalid_ciphertext: read(&self.invalid_ciphertext),
                internal_error: read(&self.internal_error),
                key_unavailable: read(&self.key_unavailable),
            },
        }
    }
}
