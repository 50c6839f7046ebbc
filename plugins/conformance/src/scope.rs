//! Assertions that say which plugin, which key type and what was expected.

use std::fmt::Display;

use keybroker_plugin_abi::{
    abi_stable::std_types::{RResult, RString, RVec},
    BackendBox, CreateKeyRequest, DecryptRequest, EncryptRequest, ErrorKind, PluginError,
};

/// Where an assertion is made: the plugin and the subject (usually a key type).
pub(crate) struct Scope {
    plugin: String,
    subject: String,
}

impl Scope {
    pub(crate) fn new(plugin: &str, subject: impl Into<String>) -> Self {
        Self {
            plugin: plugin.to_owned(),
            subject: subject.into(),
        }
    }

    /// A scope named after the plugin's `info().name`.
    pub(crate) fn for_backend(backend: &BackendBox, subject: impl Into<String>) -> Self {
        let plugin = match backend.info().into_result() {
            Ok(info) => info.name.into_string(),
            Err(_) => "(info() failed)".to_owned(),
        };
        Self {
            plugin,
            subject: subject.into(),
        }
    }

    fn prefix(&self) -> String {
        format!("conformance: plugin {}, {}", self.plugin, self.subject)
    }

    /// The value of a call that must succeed.
    #[track_caller]
    pub(crate) fn ok<T>(&self, what: impl Display, result: RResult<T, PluginError>) -> T {
        match result.into_result() {
            Ok(value) => value,
            Err(error) => panic!(
                "{}: {what}: expected success, got error {} ({:?})",
                self.prefix(),
                kind_name(error.kind),
                error.message.as_str()
            ),
        }
    }

    /// The error of a call that must fail with `expected`.
    #[track_caller]
    pub(crate) fn fails<T>(
        &self,
        what: impl Display,
        expected: ErrorKind,
        result: RResult<T, PluginError>,
    ) -> PluginError {
        match result.into_result() {
            Ok(_) => panic!(
                "{}: {what}: expected error {}, got success",
                self.prefix(),
                kind_name(expected)
            ),
            Err(error) if error.kind == expected => error,
            Err(error) => panic!(
                "{}: {what}: expected error {}, got error {} ({:?})",
                self.prefix(),
                kind_name(expected),
                kind_name(error.kind),
                error.message.as_str()
            ),
        }
    }

    /// The error of a call that must fail with `KEY_NOT_FOUND` without naming `owner`.
    #[track_caller]
    pub(crate) fn not_found_for<T>(
        &self,
        what: impl Display,
        owner: &str,
        result: RResult<T, PluginError>,
    ) {
        let error = self.fails(&what, ErrorKind::KEY_NOT_FOUND, result);
        self.check(
            !error.message.as_str().contains(owner),
            format!(
                "{what}: the error message must not name the owning tenant, got {:?}",
                error.message.as_str()
            ),
        );
    }

    #[track_caller]
    pub(crate) fn check(&self, condition: bool, what: impl Display) {
        if !condition {
            panic!("{}: expected {what}", self.prefix());
        }
    }

    /// Creates a key of `key_type` for `tenant_id` and returns its reference.
    #[track_caller]
    pub(crate) fn create(&self, backend: &BackendBox, tenant_id: &str, key_type: &str) -> String {
        let handle = self.ok(
            format!("create_key({key_type}) for tenant A"),
            backend.create_key(create_request(tenant_id, key_type)),
        );
        self.check(
            !handle.reference.is_empty(),
            "create_key to return a non-empty reference",
        );
        handle.reference.into_string()
    }
}

/// The name of an error kind, for messages.
pub(crate) fn kind_name(kind: ErrorKind) -> String {
    let name = match kind {
        ErrorKind::INVALID_REQUEST => "INVALID_REQUEST",
        ErrorKind::KEY_NOT_FOUND => "KEY_NOT_FOUND",
        ErrorKind::ACCESS_DENIED => "ACCESS_DENIED",
        ErrorKind::UNAVAILABLE => "UNAVAILABLE",
        ErrorKind::INVALID_CIPHERTEXT => "INVALID_CIPHERTEXT",
        ErrorKind::PAYLOAD_TOO_LARGE => "PAYLOAD_TOO_LARGE",
        ErrorKind::INVALID_CONFIG => "INVALID_CONFIG",
        ErrorKind::INTERNAL => "INTERNAL",
        ErrorKind(other) => return format!("unknown kind {other}"),
    };
    name.to_owned()
}

/// A `create_key` request with a fresh key id shaped like the broker's (a UUID).
pub(crate) fn create_request(tenant_id: &str, key_type: &str) -> CreateKeyRequest {
    CreateKeyRequest {
        tenant_id: tenant_id.into(),
        key_id: random_uuid().into(),
        key_type: key_type.into(),
    }
}

pub(crate) fn random_uuid() -> String {
    let bytes: [u8; 16] = rand::random();
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

/// A fresh random 96-bit IV.
pub(crate) fn random_iv() -> Vec<u8> {
    rand::random::<[u8; 12]>().to_vec()
}

pub(crate) fn encrypt_request(
    tenant_id: &str,
    reference: &str,
    plaintext: &[u8],
    aad: &[u8],
    iv: &[u8],
) -> EncryptRequest {
    EncryptRequest {
        tenant_id: tenant_id.into(),
        key_reference: reference.into(),
        plaintext: RVec::from(plaintext),
        aad: RVec::from(aad),
        iv: RVec::from(iv),
    }
}

pub(crate) fn decrypt_request(
    tenant_id: &str,
    reference: &str,
    ciphertext: &[u8],
    aad: &[u8],
) -> DecryptRequest {
    DecryptRequest {
        tenant_id: tenant_id.into(),
        key_reference: reference.into(),
        ciphertext: RVec::from(ciphertext),
        aad: RVec::from(aad),
    }
}

/// References no plugin hands out, derived from a real one and made up.
pub(crate) fn made_up_references(real: &str) -> Vec<String> {
    vec![
        String::new(),
        "keybroker-conformance: not a key reference".to_owned(),
        format!("{real}-made-up"),
        format!("made-up/{real}"),
    ]
}

pub(crate) fn rstring(text: &str) -> RString {
    RString::from(text)
}
