//! [`Pkcs11Backend`]: the backend itself, its constructor and its operations.

use std::{
    fmt,
    sync::{atomic::AtomicBool, Arc},
    time::{Duration, Instant},
};

use cryptoki::{
    context::Function,
    error::{Error as CkError, RvError},
    mechanism::{aead::GcmParams, Mechanism},
    object::{Attribute, AttributeType},
    slot::Slot,
    types::AuthPin,
};
use keybroker_plugin_abi::{
    capability, Backend, BackendInfo, BindKeyRequest, CreateKeyRequest, DecryptRequest,
    EncryptRequest, ErrorKind, HostBox, KeyHandle, LogLevel, PluginError, SignRequest,
    VerifyRequest,
};
use keybroker_plugin_sdk::entry::{backend_info, encrypt_then_wipe};
use parking_lot::Mutex;
use rand::{rngs::OsRng, RngCore as _};
use zeroize::Zeroizing;

use crate::{
    bind::{self, Selector},
    blob::{self, IV_LEN, TAG_BITS},
    config::{self, Config, IvSource},
    error::{self, Class, Fault},
    keys::{self, KeyKind, ObjectInfo, Role},
    module::{Module, Reinit},
    module_file,
    pool::{Pool, SessionStats},
    public_key,
    reference::{self, KeyRef, Origin},
    session::{Attempt, HandleCache, Repair},
    signature::{self, Scheme},
};

/// Plugin name reported by `info()`.
pub const NAME: &str = "pkcs11";
/// How often a constructor that needs the module re-initialised looks for a moment when no
/// call is in flight.
const REINIT_POLL: Duration = Duration::from_millis(2);

/// A PKCS#11 backend instance: one token of one module, a pool of sessions to it.
///
/// Built by [`new_backend`]. `Debug` shows the token, the module and the limits, never the
/// PIN.
pub struct Pkcs11Backend {
    pub(crate) config: Config,
    /// Zeroized when dropped (cryptoki's `AuthPin` is a `secrecy::SecretString`).
    pub(crate) pin: AuthPin,
    pub(crate) module: Arc<Module>,
    pub(crate) pool: Pool,
    /// The token's slot, with the module generation it was found in.
    pub(crate) slot: Mutex<Option<(u64, Slot)>>,
    pub(crate) handles: Mutex<HandleCache>,
    pub(crate) host: HostBox,
    /// Whether the host was told the instance is unavailable.
    pub(crate) reported_unavailable: AtomicBool,
}

impl fmt::Debug for Pkcs11Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Backend")
            .field("token_label", &self.config.token_label)
            .field("module", &self.config.module)
            .field("module_sha256", &self.module.sha256())
            .field("max_sessions", &self.config.max_sessions)
            .field("session_wait", &self.config.session_wait)
            .field("max_payload", &self.config.max_payload)
            .field("iv_source", &self.config.iv_source)
            .finish_non_exhaustive()
    }
}

/// Builds an instance from the plugin configuration (JSON text, see the crate docs): pins
/// and loads the module, finds the token by label, opens a session and logs in.
///
/// Configuration errors are [`ErrorKind::INVALID_CONFIG`] naming the field; a token that
/// cannot be reached is [`ErrorKind::UNAVAILABLE`]; a wrong PIN is
/// "login to token "x" failed: CKR_PIN_INCORRECT".
pub fn new_backend(config: &str, host: HostBox) -> Result<Pkcs11Backend, PluginError> {
    let config = config::parse(config)?;
    let verified =
        module_file::verify_and_copy(&config.module, &config.module_sha256, &std::env::temp_dir())?;
    let (pin, warning) = config::read_pin(&config.pin)?;
    let module = Module::acquire(&verified.copy, &verified.sha256)?;
    let backend = Pkcs11Backend {
        pool: Pool::new(config.max_sessions),
        config,
        pin,
        module,
        slot: Mutex::new(None),
        handles: Mutex::new(HandleCache::new()),
        host,
        reported_unavailable: AtomicBool::new(false),
    };
    if let Some(warning) = warning {
        backend.log(LogLevel::WARN, &warning);
    }
    backend.connect()?;
    backend.log(LogLevel::INFO, &format!("ready: {backend:?}"));
    Ok(backend)
}

impl Pkcs11Backend {
    /// Opens the first session, logged in. A token that is not found makes the module be
    /// re-initialised once: modules may list only the tokens present at `C_Initialize`
    /// (SoftHSM does), and another instance may have initialised the module before this
    /// token existed. That waits, up to `session_wait`, for a moment when no call is in
    /// flight on the module.
    fn connect(&self) -> Result<(), PluginError> {
        let deadline = Instant::now() + self.config.session_wait;
        let mut reinitialized = false;
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            let Some(module) = self.module.read(wait) else {
                return Err(PluginError::unavailable(format!(
                    "HSM token {:?}: the PKCS#11 module is being re-initialised",
                    self.config.token_label
                )));
            };
            let generation = module.generation;
            let outcome = match &module.init_error {
                Some(reason) => Err((
                    error::unreachable_token(
                        &self.config.token_label,
                        &format!("the PKCS#11 module could not be initialised: {reason}"),
                    ),
                    true,
                )),
                None => self
                    .slot(generation)
                    .map_err(|reason| {
                        (
                            error::unreachable_token(&self.config.token_label, &reason),
                            true,
                        )
                    })
                    .and_then(|slot| {
                        self.lease(generation, slot, deadline).map_err(|failure| {
                            let lost = matches!(failure.repair, Repair::Reinitialize { .. });
                            (failure.error, lost)
                        })
                    })
                    .map(|pooled| self.pool.put(pooled)),
            };
            drop(module);
            match outcome {
                Ok(()) => return Ok(()),
                Err((error, true)) if !reinitialized => {
                    reinitialized = true;
                    match self.reinitialize_before(generation, deadline) {
                        Reinit::Done | Reinit::AlreadyDone => continue,
                        Reinit::Busy | Reinit::Failed(_) => return Err(error),
                    }
                }
                Err((error, _)) => return Err(error),
            }
        }
    }

    /// [`Module::reinitialize`], tried again every few milliseconds until `deadline` while
    /// calls are in flight. Polling, rather than waiting on the lock, keeps new calls from
    /// queueing behind this one.
    fn reinitialize_before(&self, generation: u64, deadline: Instant) -> Reinit {
        loop {
            match self.module.reinitialize(generation) {
                Reinit::Busy if Instant::now() < deadline => {
                    std::thread::sleep(REINIT_POLL);
                }
                outcome => return outcome,
            }
        }
    }

    /// Counts of this instance's session pool.
    pub fn session_stats(&self) -> SessionStats {
        self.pool.stats()
    }

    /// SHA-256 of the module this instance uses (shared with every instance using the same
    /// module bytes).
    pub fn module_sha256(&self) -> &str {
        self.module.sha256()
    }

    fn check_payload(&self, plaintext: &[u8]) -> Result<(), PluginError> {
        if u64::try_from(plaintext.len()).map_or(true, |len| len > self.config.max_payload) {
            return Err(PluginError::new(
                ErrorKind::PAYLOAD_TOO_LARGE,
                format!(
                    "plaintext of {} bytes is larger than max_payload ({} bytes)",
                    plaintext.len(),
                    self.config.max_payload
                ),
            ));
        }
        Ok(())
    }

    fn encrypt_with(&self, request: &EncryptRequest) -> Result<Vec<u8>, PluginError> {
        let key = reference::parse(&request.tenant_id, &request.key_reference)?;
        let plaintext = request.plaintext.as_slice();
        self.check_payload(plaintext)?;
        let iv_source = self.config.iv_source;
        let iv = match iv_source {
            IvSource::Broker => broker_iv(&request.iv)?,
            // The module fills the buffer in: it starts zeroed, as FIPS-mode modules expect.
            IvSource::Module => [0; IV_LEN],
        };
        self.call(|attempt, _| {
            let object = aes_key(attempt, &key)?;
            let mut iv_buffer = iv;
            let sealed = {
                let params = GcmParams::new(&mut iv_buffer, &request.aad, TAG_BITS.into())?;
                attempt
                    .session
                    .encrypt(&Mechanism::AesGcm(params), object.handle, plaintext)?
            };
            if iv_source == IvSource::Module && iv_buffer == [0; IV_LEN] {
                // A module that does not generate IVs (SoftHSM) leaves the buffer as it was;
                // every encryption would then use the same IV under the same key.
                return Err(Fault::Final(PluginError::internal(
                    "iv_source is \"module\" but the PKCS#11 module did not generate an IV \
                     (the IV buffer came back zeroed); use iv_source = \"broker\" with this \
                     module",
                )));
            }
            Ok(blob::assemble(&iv_buffer, &sealed))
        })
    }

    fn decrypt_with(&self, request: &DecryptRequest) -> Result<Vec<u8>, PluginError> {
        let key = reference::parse(&request.tenant_id, &request.key_reference)?;
        let parsed = blob::parse(&request.ciphertext)?;
        let mut plaintext = self.call(|attempt, slot| {
            let object = aes_key(attempt, &key)?;
            let mut iv = parsed.iv;
            let params = GcmParams::new(&mut iv, &request.aad, TAG_BITS.into())?;
            match attempt
                .session
                .decrypt(&Mechanism::AesGcm(params), object.handle, parsed.sealed)
            {
                Ok(plaintext) => Ok(Zeroizing::new(plaintext)),
                // SoftHSM answers a failed tag check with CKR_GENERAL_ERROR. From C_Decrypt
                // (the key was found and accepted by C_DecryptInit) that means a bad
                // ciphertext, once the token is known to be there.
                Err(CkError::Pkcs11(
                    rv @ (RvError::GeneralError | RvError::FunctionFailed | RvError::DataInvalid),
                    Function::Decrypt,
                )) => {
                    attempt.check_token(slot)?;
                    Err(Fault::Final(PluginError::invalid_ciphertext(format!(
                        "message authentication failed ({})",
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

/// The broker's IV, or a random one when the request carries none.
fn broker_iv(iv: &[u8]) -> Result<[u8; IV_LEN], PluginError> {
    if let Ok(iv) = <[u8; IV_LEN]>::try_from(iv) {
        return Ok(iv);
    }
    if !iv.is_empty() {
        return Err(PluginError::invalid_request(format!(
            "iv must be {IV_LEN} bytes or empty, not {} bytes",
            iv.len()
        )));
    }
    let mut random = [0u8; IV_LEN];
    OsRng
        .try_fill_bytes(&mut random)
        .map_err(|_| PluginError::internal("the system random number generator failed"))?;
    Ok(random)
}

/// The AES-256 secret key of a reference.
fn aes_key(attempt: &Attempt<'_>, key: &KeyRef) -> Result<ObjectInfo, Fault> {
    let object = attempt.find_key(key, Role::Secret, "cannot encrypt or decrypt")?;
    if object.kind
        != (KeyKind::Aes {
            len: keys::AES256_LEN,
        })
        || !object.usable
    {
        return Err(Fault::Final(PluginError::invalid_request(format!(
            "the key is {}{}: it cannot serve aes256-gcm96",
            object.describe(),
            if object.usable {
                ""
            } else {
                " without CKA_ENCRYPT/CKA_DECRYPT"
            }
        ))));
    }
    Ok(object)
}

impl Backend for Pkcs11Backend {
    fn info(&self) -> BackendInfo {
        backend_info(
            NAME,
            env!("CARGO_PKG_VERSION"),
            capability::ENVELOPE
                | capability::DIRECT
                | capability::BIND_EXISTING
                | capability::SIGN
                | capability::ASYMMETRIC_DECRYPT,
            self.config.max_payload,
        )
    }

    fn create_key(&self, request: CreateKeyRequest) -> Result<KeyHandle, PluginError> {
        reference::check_tenant_id(&request.tenant_id)?;
        let kind = KeyKind::for_key_type(&request.key_type)
            .ok_or_else(|| keys::not_supported(&request.key_type))?;
        let mut id = [0u8; reference::CREATED_ID_LEN];
        OsRng
            .try_fill_bytes(&mut id)
            .map_err(|_| PluginError::internal("the system random number generator failed"))?;
        let label = reference::created_label(&request.tenant_id, &request.key_id);
        self.call(|attempt, slot| {
            keys::check_offered(
                kind,
                &request.key_type,
                attempt.token_label(),
                |mechanism| attempt.mechanism_max_bits(slot, mechanism),
            )?;
            keys::generate(attempt.session, kind, &id, label.as_bytes())?;
            Ok(())
        })?;
        Ok(KeyHandle {
            reference: reference::format(Origin::Created, &request.tenant_id, &id).into(),
        })
    }

    fn delete_key(&self, tenant_id: &str, key_reference: &str) -> Result<(), PluginError> {
        let key = reference::parse(tenant_id, key_reference)?;
        if key.origin == Origin::Bound {
            // The broker never destroys a key it did not create.
            return Ok(());
        }
        let result = self.call(|attempt, _| {
            let mut destroyed = 0usize;
            for object in attempt.find(&[Attribute::Id(key.id.clone())])? {
                if !key.accepts_label(&object.label) {
                    continue;
                }
                match attempt.session.destroy_object(object.handle) {
                    Ok(()) => destroyed += 1,
                    Err(error) if error::classify(&error) == Class::StaleHandle => {}
                    Err(error) => return Err(error.into()),
                }
            }
            attempt.forget_handles(&key.id);
            if destroyed == 0 {
                return Err(Fault::NotFound(error::key_not_found()));
            }
            Ok(())
        });
        match result {
            // Already gone (and the token is there to say so).
            Err(error) if error.kind == ErrorKind::KEY_NOT_FOUND => Ok(()),
            other => other,
        }
    }

    fn encrypt(&self, request: EncryptRequest) -> Result<Vec<u8>, PluginError> {
        encrypt_then_wipe(request, |request| self.encrypt_with(request))
    }

    fn decrypt(&self, request: DecryptRequest) -> Result<Vec<u8>, PluginError> {
        if crate::rsa_decrypt::is_rsa_request(&request) {
            return self.rsa_decrypt(&request);
        }
        self.decrypt_with(&request)
    }

    fn health(&self) -> Result<(), PluginError> {
        self.call(|attempt, slot| attempt.check_token(slot))
    }

    fn bind_key(&self, request: BindKeyRequest) -> Result<KeyHandle, PluginError> {
        reference::check_tenant_id(&request.tenant_id)?;
        let kind = KeyKind::for_key_type(&request.key_type).ok_or_else(|| {
            PluginError::invalid_request(format!(
                "key type {:?} is not supported by {NAME}",
                request.key_type.as_str()
            ))
        })?;
        let selector = Selector::parse(&request.backend_key)?;
        let id =
            self.call(|attempt, _| bind::resolve(attempt, &selector, kind, &request.key_type))?;
        self.log(
            LogLevel::INFO,
            &format!(
                "bound {selector} (CKA_ID {}) as {} for tenant id {:?}",
                hex::encode(&id),
                request.key_type.as_str(),
                request.tenant_id.as_str()
            ),
        );
        Ok(KeyHandle {
            reference: reference::format(Origin::Bound, &request.tenant_id, &id).into(),
        })
    }

    fn sign(&self, request: SignRequest) -> Result<Vec<u8>, PluginError> {
        let key = reference::parse(&request.tenant_id, &request.key_reference)?;
        let hash = signature::request_hash(&request.hash_algorithm, &request.digest)?;
        self.call(|attempt, _| {
            let object = attempt.find_key(&key, Role::Private, "cannot sign")?;
            let scheme = Scheme::choose(object.kind, hash, &request.signature_algorithm)?;
            let (mechanism, input) = scheme.mechanism_and_input(&request.digest);
            Ok(attempt.session.sign(&mechanism, object.handle, &input)?)
        })
    }

    fn verify(&self, request: VerifyRequest) -> Result<bool, PluginError> {
        let key = reference::parse(&request.tenant_id, &request.key_reference)?;
        let hash = signature::request_hash(&request.hash_algorithm, &request.digest)?;
        self.call(|attempt, _| {
            let object = attempt.find_key(&key, Role::Public, "cannot verify")?;
            let scheme = Scheme::choose(object.kind, hash, &request.signature_algorithm)?;
            let (mechanism, input) = scheme.mechanism_and_input(&request.digest);
            match attempt
                .session
                .verify(&mechanism, object.handle, &input, &request.signature)
            {
                Ok(()) => Ok(true),
                Err(CkError::Pkcs11(RvError::SignatureInvalid | RvError::SignatureLenRange, _)) => {
                    Ok(false)
                }
                Err(error) => Err(error.into()),
            }
        })
    }

    fn public_key(&self, tenant_id: &str, key_reference: &str) -> Result<String, PluginError> {
        let key = reference::parse(tenant_id, key_reference)?;
        self.call(|attempt, _| {
            let object = attempt.find_key(&key, Role::Public, "has no public key")?;
            match object.kind {
                KeyKind::Rsa { .. } => {
                    let attributes = attempt.session.get_attributes(
                        object.handle,
                        &[AttributeType::Modulus, AttributeType::PublicExponent],
                    )?;
                    let (mut modulus, mut exponent) = (None, None);
                    for attribute in attributes {
                        match attribute {
                            Attribute::Modulus(value) => modulus = Some(value),
                            Attribute::PublicExponent(value) => exponent = Some(value),
                            _ => {}
                        }
                    }
                    let (Some(modulus), Some(exponent)) = (modulus, exponent) else {
                        return Err(Fault::Final(PluginError::internal(
                            "the token gave no modulus or exponent for the RSA public key",
                        )));
                    };
                    Ok(public_key::rsa_pem(&modulus, &exponent)?)
                }
                KeyKind::Ec(_) | KeyKind::Ed25519 => {
                    let attributes = attempt
                        .session
                        .get_attributes(object.handle, &[AttributeType::EcPoint])?;
                    let point = attributes
                        .into_iter()
                        .find_map(|attribute| match attribute {
                            Attribute::EcPoint(point) => Some(point),
                            _ => None,
                        });
                    let Some(point) = point else {
                        return Err(Fault::Final(PluginError::internal(
                            "the token gave no CKA_EC_POINT for the public key",
                        )));
                    };
                    match object.kind {
                        KeyKind::Ec(curve) => Ok(public_key::ec_pem(curve, &point)?),
                        _ => Ok(public_key::ed25519_pem(&point)?),
                    }
                }
                other => Err(Fault::Final(PluginError::invalid_request(format!(
                    "the key is {}: it has no public key the broker can export",
                    other.describe()
                )))),
            }
        })
    }
}

impl Drop for Pkcs11Backend {
    fn drop(&mut self) {
        // Close the idle sessions, if they still belong to the module's current generation;
        // after a re-initialisation their handles may be someone else's.
        let idle = self.pool.drain();
        if let Some(module) = self.module.try_read() {
            for pooled in idle {
                if pooled.generation == module.generation && module.init_error.is_none() {
                    let _ = pooled.session.close();
                }
            }
        }
    }
}
