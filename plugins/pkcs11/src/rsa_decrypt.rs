//! Decryption with the token's RSA private keys (`capability::ASYMMETRIC_DECRYPT`): the
//! broker encrypted with the public key, and the decrypt request's AAD names the padding.
//!
//! - `oaep-sha256`: `CKM_RSA_PKCS_OAEP` with `CKM_SHA256`, `CKG_MGF1_SHA256` and an empty
//!   label (Vault's RSA-OAEP);
//! - `pkcs1v15`: `CKM_RSA_PKCS`.
//!
//! Not every token takes every parameter: SoftHSM2 2.6 decrypts OAEP only with SHA-1, and
//! refuses SHA-256 in `C_DecryptInit`. An empty ciphertext asks whether the token can use a
//! padding at all: the token is tried with a ciphertext of zeros, which every padding
//! refuses in `C_Decrypt` — a refusal from `C_DecryptInit` means it cannot, and the answer
//! says why, so the broker refuses to encrypt for it.

use cryptoki::{
    context::Function,
    error::{Error as CkError, RvError},
    mechanism::{
        rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource},
        Mechanism, MechanismType,
    },
};
use keybroker_plugin_abi::{
    DecryptRequest, PluginError, RSA_PADDING_OAEP_SHA256, RSA_PADDING_PKCS1V15,
};
use zeroize::Zeroizing;

use crate::{
    backend::{Pkcs11Backend, NAME},
    error::{self, Fault},
    keys::{KeyKind, Role},
    reference,
};

/// The paddings the broker names in a decrypt request's AAD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Padding {
    OaepSha256,
    Pkcs1v15,
}

impl Padding {
    /// The padding a decrypt request's AAD names, if it names one.
    fn named(aad: &[u8]) -> Option<Self> {
        if aad == RSA_PADDING_OAEP_SHA256.as_bytes() {
            Some(Self::OaepSha256)
        } else if aad == RSA_PADDING_PKCS1V15.as_bytes() {
            Some(Self::Pkcs1v15)
        } else {
            None
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::OaepSha256 => RSA_PADDING_OAEP_SHA256,
            Self::Pkcs1v15 => RSA_PADDING_PKCS1V15,
        }
    }

    fn mechanism(self) -> Mechanism<'static> {
        match self {
            Self::OaepSha256 => Mechanism::RsaPkcsOaep(PkcsOaepParams::new(
                MechanismType::SHA256,
                PkcsMgfType::MGF1_SHA256,
                PkcsOaepSource::empty(),
            )),
            Self::Pkcs1v15 => Mechanism::RsaPkcs,
        }
    }
}

/// Whether a decrypt request is for an RSA key: its AAD names a padding. (For an AES key
/// the AAD is the broker's binding, a length-prefixed encoding that never spells one.)
pub(crate) fn is_rsa_request(request: &DecryptRequest) -> bool {
    Padding::named(&request.aad).is_some()
}

impl Pkcs11Backend {
    /// Decrypts a raw RSA ciphertext with the private key of the reference, or answers
    /// whether the token can use the padding (an empty ciphertext).
    pub(crate) fn rsa_decrypt(&self, request: &DecryptRequest) -> Result<Vec<u8>, PluginError> {
        let key = reference::parse(&request.tenant_id, &request.key_reference)?;
        let padding = Padding::named(&request.aad)
            .ok_or_else(|| PluginError::invalid_request("unknown RSA padding"))?;
        let mechanism = padding.mechanism();
        let mut plaintext = self.call(|attempt, slot| {
            let object = attempt.find_key(&key, Role::Private, "cannot decrypt")?;
            let KeyKind::Rsa { bits } = object.kind else {
                return Err(Fault::Final(PluginError::invalid_request(format!(
                    "the key is {}: only RSA keys decrypt",
                    object.describe()
                ))));
            };
            let asking = request.ciphertext.is_empty();
            let zeros;
            let ciphertext: &[u8] = if asking {
                zeros = vec![0u8; bits.div_ceil(8)];
                &zeros
            } else {
                &request.ciphertext
            };
            match attempt
                .session
                .decrypt(&mechanism, object.handle, ciphertext)
            {
                Ok(plaintext) if !asking => Ok(Zeroizing::new(plaintext)),
                Ok(_) => Ok(Zeroizing::new(Vec::new())),
                // The token took the mechanism and refused the data: it can use the padding.
                Err(CkError::Pkcs11(_, Function::Decrypt)) if asking => {
                    Ok(Zeroizing::new(Vec::new()))
                }
                Err(CkError::Pkcs11(
                    rv @ (RvError::MechanismInvalid
                    | RvError::MechanismParamInvalid
                    | RvError::ArgumentsBad
                    | RvError::KeyFunctionNotPermitted
                    | RvError::KeyTypeInconsistent),
                    Function::DecryptInit,
                )) => Err(Fault::Final(PluginError::invalid_request(format!(
                    "{NAME}: the token cannot decrypt with RSA padding {} ({}{})",
                    padding.name(),
                    error::rv_name(rv),
                    if padding == Padding::OaepSha256 {
                        ": it may support RSA-OAEP only with SHA-1; use padding_scheme=pkcs1v15"
                    } else {
                        ""
                    }
                )))),
                Err(CkError::Pkcs11(
                    rv @ (RvError::EncryptedDataInvalid
                    | RvError::EncryptedDataLenRange
                    | RvError::GeneralError
                    | RvError::FunctionFailed
                    | RvError::DataInvalid
                    | RvError::DataLenRange),
                    Function::Decrypt,
                )) => {
                    attempt.check_token(slot)?;
                    Err(Fault::Final(PluginError::invalid_request(format!(
                        "RSA decryption failed ({})",
                        error::rv_name(rv)
                    ))))
                }
                Err(error) => Err(error.into()),
            }
        })?;
        // Handed to the host, which zeroizes it after use.
        Ok(std::mem::take(&mut *plaintext))
    }
}
