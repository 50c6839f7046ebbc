//! PKCS#11 failures: their `CKR_*` names and what the plugin does about each.
//!
//! Messages name the return value (`CKR_PIN_INCORRECT`) and the function (`C_Login`), never
//! a PIN or key material: cryptoki's errors carry neither, and nothing else goes in.

use cryptoki::error::{Error as CkError, RvError};
use keybroker_plugin_abi::{ErrorKind, PluginError};

/// What an operation on a session reports to the call machinery in `session.rs`.
#[derive(Debug)]
pub(crate) enum Fault {
    /// A PKCS#11 function failed: the call machinery classifies it, repairs what it can
    /// (new session, new login, fresh handles, module re-initialisation) and retries once.
    Pkcs11(CkError),
    /// The answer, returned as is (a refused request, a tampered ciphertext…).
    Final(PluginError),
    /// Nothing was found. Returned as is once the token is known to be reachable: SoftHSM
    /// finds nothing at all when its token directory has vanished, which is not "no key".
    NotFound(PluginError),
    /// The token did not answer `C_GetTokenInfo` (the reason): the module is re-initialised.
    Unreachable(String),
}

impl From<CkError> for Fault {
    fn from(error: CkError) -> Self {
        Fault::Pkcs11(error)
    }
}

impl From<PluginError> for Fault {
    fn from(error: PluginError) -> Self {
        Fault::Final(error)
    }
}

/// How the call machinery treats a PKCS#11 failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// The session is gone (`CKR_SESSION_HANDLE_INVALID`, `CKR_SESSION_CLOSED`): open another.
    SessionLost,
    /// The token forgot the login (`CKR_USER_NOT_LOGGED_IN`): log in again.
    NotLoggedIn,
    /// An object handle is stale (`CKR_OBJECT_HANDLE_INVALID`, `CKR_KEY_HANDLE_INVALID`):
    /// look the key up again by `CKA_ID`, unless the token itself is gone.
    StaleHandle,
    /// The module is not initialised (`CKR_CRYPTOKI_NOT_INITIALIZED`): re-initialise it.
    ModuleLost,
    /// Token, slot or device trouble: check whether the token is still reachable.
    Device,
    /// The ciphertext or its tag is wrong (`CKR_ENCRYPTED_DATA_INVALID`, `…_LEN_RANGE`).
    BadCiphertext,
    /// The PIN is refused (`CKR_PIN_INCORRECT`, `CKR_PIN_INVALID`, `CKR_PIN_LEN_RANGE`).
    BadPin,
    /// The PIN can no longer be used (`CKR_PIN_LOCKED`, `CKR_PIN_EXPIRED`).
    PinUnusable,
    /// Anything else: a bug or an unsupported mechanism, reported as internal.
    Other,
}

/// Classifies a cryptoki error.
pub(crate) fn classify(error: &CkError) -> Class {
    let CkError::Pkcs11(rv, _) = error else {
        return Class::Other;
    };
    match rv {
        RvError::SessionHandleInvalid | RvError::SessionClosed => Class::SessionLost,
        RvError::UserNotLoggedIn => Class::NotLoggedIn,
        RvError::ObjectHandleInvalid | RvError::KeyHandleInvalid => Class::StaleHandle,
        RvError::CryptokiNotInitialized => Class::ModuleLost,
        RvError::TokenNotPresent
        | RvError::TokenNotRecognized
        | RvError::DeviceRemoved
        | RvError::DeviceError
        | RvError::DeviceMemory
        | RvError::GeneralError
        | RvError::FunctionFailed
        | RvError::SlotIdInvalid
        | RvError::SessionCount => Class::Device,
        RvError::EncryptedDataInvalid | RvError::EncryptedDataLenRange => Class::BadCiphertext,
        RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange => Class::BadPin,
        RvError::PinLocked | RvError::PinExpired => Class::PinUnusable,
        _ => Class::Other,
    }
}

/// The return value of a failed PKCS#11 call, or what went wrong around it.
pub(crate) fn ckr(error: &CkError) -> String {
    match error {
        CkError::Pkcs11(rv, _) => rv_name(*rv),
        CkError::LibraryLoading(error) => format!("the library could not be loaded ({error})"),
        other => format!("cryptoki: {other}"),
    }
}

/// `C_<function> failed: CKR_<value>`, or [`ckr`] for errors outside a PKCS#11 call.
pub(crate) fn describe(error: &CkError) -> String {
    match error {
        CkError::Pkcs11(rv, function) => format!("C_{function:?} failed: {}", rv_name(*rv)),
        other => ckr(other),
    }
}

/// `CKR_*` name of a return value: cryptoki's variant names are the constants in camel case.
pub(crate) fn rv_name(rv: RvError) -> String {
    match rv {
        RvError::VendorDefined(code) => format!("CKR_VENDOR_DEFINED+{code:#x}"),
        RvError::UnknownErrorCode(code) => format!("unknown CK_RV {code:#x}"),
        other => {
            let camel = format!("{other:?}");
            let mut name = String::with_capacity(camel.len() + 8);
            name.push_str("CKR");
            for c in camel.chars() {
                if c.is_ascii_uppercase() {
                    name.push('_');
                }
                name.push(c.to_ascii_uppercase());
            }
            name
        }
    }
}

/// The error for a cryptoki failure no repair applies to.
pub(crate) fn final_error(error: &CkError, token_label: &str) -> PluginError {
    match classify(error) {
        Class::BadCiphertext => PluginError::invalid_ciphertext(format!(
            "message authentication failed ({})",
            ckr(error)
        )),
        Class::SessionLost | Class::ModuleLost | Class::Device | Class::StaleHandle => {
            unreachable_token(token_label, &ckr(error))
        }
        Class::NotLoggedIn | Class::BadPin | Class::PinUnusable => login_failed(token_label, error),
        Class::Other => PluginError::internal(describe(error)),
    }
}

/// "HSM token "x" is not reachable: <reason>" ([`ErrorKind::UNAVAILABLE`]).
pub(crate) fn unreachable_token(token_label: &str, reason: &str) -> PluginError {
    PluginError::unavailable(format!(
        "HSM token {token_label:?} is not reachable: {reason}"
    ))
}

/// "login to token "x" failed: CKR_…": a wrong PIN is a configuration error, a locked one
/// needs the operator, anything else is the token's trouble.
pub(crate) fn login_failed(token_label: &str, error: &CkError) -> PluginError {
    let kind = match classify(error) {
        Class::BadPin => ErrorKind::INVALID_CONFIG,
        _ => ErrorKind::UNAVAILABLE,
    };
    PluginError::new(
        kind,
        format!("login to token {token_label:?} failed: {}", ckr(error)),
    )
}

pub(crate) use keybroker_plugin_sdk::reference::key_not_found;

#[cfg(test)]
mod tests {
    use super::*;
    use cryptoki::context::Function;

    #[test]
    fn names_are_the_pkcs11_constants() {
        assert_eq!(rv_name(RvError::PinIncorrect), "CKR_PIN_INCORRECT");
        assert_eq!(rv_name(RvError::GeneralError), "CKR_GENERAL_ERROR");
        assert_eq!(
            rv_name(RvError::SessionHandleInvalid),
            "CKR_SESSION_HANDLE_INVALID"
        );
        assert_eq!(
            rv_name(RvError::CryptokiNotInitialized),
            "CKR_CRYPTOKI_NOT_INITIALIZED"
        );
        assert_eq!(rv_name(RvError::Cancel), "CKR_CANCEL");
        assert_eq!(
            rv_name(RvError::VendorDefined(0x8000_0001)),
            "CKR_VENDOR_DEFINED+0x80000001"
        );
        let error = CkError::Pkcs11(RvError::MechanismInvalid, Function::EncryptInit);
        assert_eq!(
            describe(&error),
            "C_EncryptInit failed: CKR_MECHANISM_INVALID"
        );
    }

    #[test]
    fn errors_map_to_kinds() {
        let error = |rv| CkError::Pkcs11(rv, Function::Decrypt);
        let kind = |rv| final_error(&error(rv), "t").kind;
        assert_eq!(
            kind(RvError::EncryptedDataInvalid),
            ErrorKind::INVALID_CIPHERTEXT
        );
        assert_eq!(
            kind(RvError::EncryptedDataLenRange),
            ErrorKind::INVALID_CIPHERTEXT
        );
        assert_eq!(kind(RvError::TokenNotPresent), ErrorKind::UNAVAILABLE);
        assert_eq!(kind(RvError::DeviceRemoved), ErrorKind::UNAVAILABLE);
        assert_eq!(kind(RvError::MechanismInvalid), ErrorKind::INTERNAL);
        let message = final_error(&error(RvError::DeviceError), "hsm-1").message;
        assert_eq!(
            message.as_str(),
            "HSM token \"hsm-1\" is not reachable: CKR_DEVICE_ERROR"
        );
        let login = login_failed(
            "hsm-1",
            &CkError::Pkcs11(RvError::PinIncorrect, Function::Login),
        );
        assert_eq!(login.kind, ErrorKind::INVALID_CONFIG);
        assert_eq!(
            login.message.as_str(),
            "login to token \"hsm-1\" failed: CKR_PIN_INCORRECT"
        );
    }
}
