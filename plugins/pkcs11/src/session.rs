//! How every call reaches the token: a session from the pool, validated and logged in, the
//! operation, and recovery, retried once.
//!
//! [`Pkcs11Backend::call`] runs an operation in an *attempt*: hold the module (no
//! re-initialisation meanwhile), find the slot by token label, take a session (checked with
//! `C_GetSessionInfo`, logged in if it is not), run. When the operation fails, the attempt
//! says what would repair it, and the call repairs and tries once more:
//!
//! | failure | repair |
//! |---|---|
//! | `CKR_SESSION_HANDLE_INVALID`, `CKR_SESSION_CLOSED` | forget the session, open another |
//! | `CKR_USER_NOT_LOGGED_IN` | log in again (`CKR_USER_ALREADY_LOGGED_IN` is success) |
//! | `CKR_OBJECT_HANDLE_INVALID`, `CKR_KEY_HANDLE_INVALID` | drop cached handles, look up by `CKA_ID` |
//! | token unreachable (`C_GetTokenInfo` fails), `CKR_CRYPTOKI_NOT_INITIALIZED` | re-initialise the module |
//!
//! Whether the token is reachable is asked of `C_GetTokenInfo` whenever something fails or
//! nothing is found: SoftHSM, when its token directory vanishes, keeps answering
//! `C_GetSessionInfo` and `C_OpenSession` as if nothing happened, fails object handles with
//! `CKR_OBJECT_HANDLE_INVALID` and finds no objects at all, and only `C_GetTokenInfo` says
//! `CKR_GENERAL_ERROR`. Re-initialising is the only cure (SoftHSM does not notice the
//! directory coming back by itself), and it is attempted only when no call is in flight on
//! the module and at most every [`RECOVERY_INTERVAL`](crate::module::RECOVERY_INTERVAL); the
//! failing call answers [`ErrorKind::UNAVAILABLE`](keybroker_plugin_abi::ErrorKind) with the
//! reason meanwhile. Nothing here waits longer than `session_wait`.

use std::time::Instant;

use cryptoki::{
    error::{Error as CkError, RvError},
    mechanism::MechanismType,
    object::Attribute,
    session::{Session, SessionState, UserType},
    slot::Slot,
};
use keybroker_plugin_abi::{host_log, ErrorKind, LogLevel, PluginError};
use secrecy::ExposeSecret as _;

use crate::{
    backend::{Pkcs11Backend, NAME},
    error::{self, ckr, classify, Class, Fault},
    keys::{self, ObjectInfo, Role},
    module::Reinit,
    pool::{PooledSession, Taken},
    reference::KeyRef,
};

/// Most object handles cached per instance; the cache starts over beyond it.
const HANDLE_CACHE_LIMIT: usize = 4096;

/// A failed attempt: the error to report, and what might repair it.
pub(crate) struct Failure {
    pub(crate) error: PluginError,
    pub(crate) repair: Repair,
}

/// What to do before trying again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Repair {
    /// Nothing helps: report the error.
    None,
    /// Already repaired (new session, new login, handles dropped): just try again.
    Retry,
    /// The token or the module is lost: re-initialise the module, seen at this generation.
    Reinitialize { generation: u64 },
}

impl Failure {
    fn final_(error: PluginError) -> Failure {
        Failure {
            error,
            repair: Repair::None,
        }
    }
    fn retry(error: PluginError) -> Failure {
        Failure {
            error,
            repair: Repair::Retry,
        }
    }
    fn reinitialize(error: PluginError, generation: u64) -> Failure {
        Failure {
            error,
            repair: Repair::Reinitialize { generation },
        }
    }
}

/// What an operation gets to work with.
pub(crate) struct Attempt<'a> {
    pub(crate) session: &'a Session,
    generation: u64,
    backend: &'a Pkcs11Backend,
}

impl Attempt<'_> {
    /// The object of `role` serving `key`, checked against the reference's tenant rule; a
    /// cached handle is used when it still names the same object. `purpose` completes
    /// "the key … " in the error for a key without such an object ("cannot sign").
    pub(crate) fn find_key(
        &self,
        key: &KeyRef,
        role: Role,
        purpose: &str,
    ) -> Result<ObjectInfo, Fault> {
        let cache_key = (key.id.clone(), role);
        // A handle found (and checked against the tenant rule) by this module generation is
        // trusted until an operation on it fails: a stale handle answers
        // CKR_OBJECT_HANDLE_INVALID or CKR_KEY_HANDLE_INVALID, which drops every cached
        // handle and retries with a fresh lookup; a re-initialisation starts a new
        // generation. Re-reading the attributes on every use would double the token's work.
        let cached = self
            .backend
            .handles
            .lock()
            .get(&cache_key)
            .filter(|(generation, _)| *generation == self.generation)
            .map(|(_, info)| info.clone());
        if let Some(info) = cached {
            // The cache is keyed by CKA_ID alone: the tenant rule is checked on every use,
            // against the label the object had when it was found.
            if key.accepts_label(&info.label) {
                return Ok(info);
            }
            return Err(Fault::NotFound(error::key_not_found()));
        }
        let objects: Vec<ObjectInfo> = self
            .find(&[Attribute::Id(key.id.clone())])?
            .into_iter()
            .filter(|info| key.accepts_label(&info.label))
            .collect();
        let Some(first) = objects.first() else {
            return Err(Fault::NotFound(error::key_not_found()));
        };
        let mut matching = objects.iter().filter(|info| info.role == Some(role));
        let (Some(found), None) = (matching.next(), matching.next()) else {
            let count = objects
                .iter()
                .filter(|info| info.role == Some(role))
                .count();
            return Err(Fault::Final(if count == 0 {
                PluginError::invalid_request(format!(
                    "the key is {}: it {purpose}",
                    first.describe()
                ))
            } else {
                PluginError::internal(format!(
                    "{count} {}s on the token share this key's CKA_ID",
                    role.noun()
                ))
            }));
        };
        let mut handles = self.backend.handles.lock();
        if handles.len() >= HANDLE_CACHE_LIMIT {
            handles.clear();
        }
        handles.insert(cache_key, (self.generation, found.clone()));
        Ok(found.clone())
    }

    /// Every object matching `template`, described; objects that vanish meanwhile are
    /// skipped.
    pub(crate) fn find(&self, template: &[Attribute]) -> Result<Vec<ObjectInfo>, Fault> {
        let handles = self.session.find_objects(template)?;
        let mut objects = Vec::with_capacity(handles.len());
        for handle in handles {
            match keys::describe(self.session, handle) {
                Ok(info) => objects.push(info),
                Err(error) if classify(&error) == Class::StaleHandle => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(objects)
    }

    /// Drops the cached handles of a key (after destroying it).
    pub(crate) fn forget_handles(&self, id: &[u8]) {
        self.backend
            .handles
            .lock()
            .retain(|(cached_id, _), _| cached_id.as_slice() != id);
    }

    /// Fails with [`Fault::Unreachable`] unless the token answers `C_GetTokenInfo`.
    pub(crate) fn check_token(&self, slot: Slot) -> Result<(), Fault> {
        self.backend.check_token(slot).map_err(Fault::Unreachable)
    }

    /// The largest key size (bits) the token in `slot` allows for `mechanism`; `None` when
    /// it does not offer the mechanism at all.
    pub(crate) fn mechanism_max_bits(
        &self,
        slot: Slot,
        mechanism: MechanismType,
    ) -> Result<Option<usize>, CkError> {
        let library = self.backend.module.library();
        if !library.get_mechanism_list(slot)?.contains(&mechanism) {
            return Ok(None);
        }
        Ok(Some(
            library.get_mechanism_info(slot, mechanism)?.max_key_size(),
        ))
    }

    /// The label of the token, for messages.
    pub(crate) fn token_label(&self) -> &str {
        &self.backend.config.token_label
    }
}

impl Pkcs11Backend {
    /// Runs `operation` on a session, repairing and retrying once (see the module docs).
    /// `operation` gets the attempt and the slot; it may run twice.
    pub(crate) fn call<T>(
        &self,
        mut operation: impl FnMut(&Attempt<'_>, Slot) -> Result<T, Fault>,
    ) -> Result<T, PluginError> {
        let deadline = Instant::now() + self.config.session_wait;
        let mut token_lost = false;
        let result = match self.attempt(deadline, &mut operation) {
            Ok(value) => Ok(value),
            Err(first) => {
                let again = match first.repair {
                    Repair::None => false,
                    Repair::Retry => true,
                    Repair::Reinitialize { generation } => {
                        token_lost = true;
                        self.recover(generation, &first.error)
                    }
                };
                if again {
                    self.attempt(deadline, &mut operation).map_err(|second| {
                        token_lost = matches!(second.repair, Repair::Reinitialize { .. });
                        second.error
                    })
                } else {
                    Err(first.error)
                }
            }
        };
        self.report_availability(&result, token_lost);
        result
    }

    fn attempt<T>(
        &self,
        deadline: Instant,
        operation: &mut impl FnMut(&Attempt<'_>, Slot) -> Result<T, Fault>,
    ) -> Result<T, Failure> {
        let label = &self.config.token_label;
        let wait = deadline.saturating_duration_since(Instant::now());
        // Held until the end of the attempt: the session goes back to the pool (or is
        // closed) while its generation is still the module's.
        let Some(module) = self.module.read(wait) else {
            return Err(Failure::final_(PluginError::unavailable(format!(
                "HSM token {label:?}: the PKCS#11 module is being re-initialised and did not \
                 come back within {} ms",
                self.config.session_wait.as_millis()
            ))));
        };
        let generation = module.generation;
        if let Some(reason) = &module.init_error {
            return Err(Failure::reinitialize(
                error::unreachable_token(
                    label,
                    &format!("the PKCS#11 module could not be initialised: {reason}"),
                ),
                generation,
            ));
        }
        let slot = self.slot(generation).map_err(|reason| {
            Failure::reinitialize(error::unreachable_token(label, &reason), generation)
        })?;
        let pooled = self.lease(generation, slot, deadline)?;
        let attempt = Attempt {
            session: &pooled.session,
            generation,
            backend: self,
        };
        match operation(&attempt, slot) {
            Ok(value) => {
                self.pool.put(pooled);
                Ok(value)
            }
            Err(Fault::Final(error)) => {
                self.pool.put(pooled);
                Err(Failure::final_(error))
            }
            Err(Fault::NotFound(error)) => {
                self.pool.put(pooled);
                match self.check_token(slot) {
                    Ok(()) => Err(Failure::final_(error)),
                    Err(reason) => Err(Failure::reinitialize(
                        error::unreachable_token(label, &reason),
                        generation,
                    )),
                }
            }
            Err(Fault::Unreachable(reason)) => {
                self.pool.put(pooled);
                Err(Failure::reinitialize(
                    error::unreachable_token(label, &reason),
                    generation,
                ))
            }
            Err(Fault::Pkcs11(error)) => Err(self.repair(error, pooled, slot, generation)),
        }
    }

    /// After a stale handle or a device error: with the token still there, drop the cached
    /// handles and retry; without it, re-initialise the module.
    fn retry_if_token_present(&self, error: &CkError, slot: Slot, generation: u64) -> Failure {
        let label = &self.config.token_label;
        match self.check_token(slot) {
            Ok(()) => {
                self.handles.lock().clear();
                Failure::retry(error::final_error(error, label))
            }
            Err(reason) => {
                Failure::reinitialize(error::unreachable_token(label, &reason), generation)
            }
        }
    }

    /// Classifies a failure of the operation and repairs what can be repaired at once.
    fn repair(
        &self,
        error: CkError,
        pooled: PooledSession,
        slot: Slot,
        generation: u64,
    ) -> Failure {
        let label = &self.config.token_label;
        match classify(&error) {
            Class::SessionLost => {
                self.forget(pooled);
                self.log(
                    LogLevel::INFO,
                    &format!("a session was lost ({}); opening another", ckr(&error)),
                );
                Failure::retry(error::final_error(&error, label))
            }
            Class::NotLoggedIn => {
                self.log(
                    LogLevel::INFO,
                    "the token forgot the login (CKR_USER_NOT_LOGGED_IN); logging in again",
                );
                match self.login(&pooled.session, generation, slot) {
                    Ok(()) => {
                        self.pool.put(pooled);
                        Failure::retry(error::final_error(&error, label))
                    }
                    Err(failure) => {
                        self.close(pooled);
                        failure
                    }
                }
            }
            Class::StaleHandle => {
                self.pool.put(pooled);
                self.retry_if_token_present(&error, slot, generation)
            }
            Class::ModuleLost => {
                self.forget(pooled);
                Failure::reinitialize(error::final_error(&error, label), generation)
            }
            Class::Device => {
                self.close(pooled);
                self.retry_if_token_present(&error, slot, generation)
            }
            Class::BadCiphertext => {
                self.pool.put(pooled);
                Failure::final_(error::final_error(&error, label))
            }
            Class::BadPin | Class::PinUnusable | Class::Other => {
                // The session may be in the middle of an operation: do not reuse it.
                self.close(pooled);
                Failure::final_(error::final_error(&error, label))
            }
        }
    }

    /// A failure of opening, validating or logging in a session.
    fn session_failure(&self, error: &CkError, slot: Slot, generation: u64) -> Failure {
        let label = &self.config.token_label;
        match classify(error) {
            Class::ModuleLost => {
                Failure::reinitialize(error::final_error(error, label), generation)
            }
            Class::SessionLost | Class::StaleHandle | Class::Device | Class::NotLoggedIn => {
                match self.check_token(slot) {
                    Ok(()) => Failure::retry(error::unreachable_token(label, &ckr(error))),
                    Err(reason) => {
                        Failure::reinitialize(error::unreachable_token(label, &reason), generation)
                    }
                }
            }
            Class::BadPin | Class::PinUnusable => {
                Failure::final_(error::login_failed(label, error))
            }
            Class::BadCiphertext | Class::Other => Failure::final_(PluginError::unavailable(
                format!("HSM token {label:?}: {}", error::describe(error)),
            )),
        }
    }

    /// A validated, logged-in session of `generation`, waiting for one until `deadline`.
    pub(crate) fn lease(
        &self,
        generation: u64,
        slot: Slot,
        deadline: Instant,
    ) -> Result<PooledSession, Failure> {
        loop {
            let Some(taken) = self.pool.take(generation, deadline) else {
                return Err(Failure::final_(PluginError::unavailable(format!(
                    "HSM token {:?}: no PKCS#11 session became free within {} ms \
                     (max_sessions = {})",
                    self.config.token_label,
                    self.config.session_wait.as_millis(),
                    self.pool.max()
                ))));
            };
            let pooled = match taken {
                Taken::Idle(pooled) => match pooled.session.get_session_info() {
                    Ok(info) if info.slot_id() != slot => {
                        // The handle now names a session on another token: the module was
                        // reset behind our back and handed the number out again. Not ours
                        // to close.
                        self.forget(pooled);
                        self.log(
                            LogLevel::WARN,
                            "an idle session handle now belongs to another slot (the module \
                             was reset outside this plugin); opening another",
                        );
                        continue;
                    }
                    Ok(info) => {
                        if matches!(
                            info.session_state(),
                            SessionState::RwUser | SessionState::RoUser
                        ) {
                            return Ok(pooled);
                        }
                        pooled
                    }
                    Err(error) if classify(&error) == Class::SessionLost => {
                        self.forget(pooled);
                        self.log(
                            LogLevel::INFO,
                            &format!(
                                "an idle session was lost ({}); opening another",
                                ckr(&error)
                            ),
                        );
                        continue;
                    }
                    Err(error) => {
                        self.close(pooled);
                        return Err(self.session_failure(&error, slot, generation));
                    }
                },
                Taken::Room => match self.module.library().open_rw_session_no_drop(slot) {
                    Ok(session) => PooledSession {
                        session,
                        generation,
                    },
                    Err(error) => {
                        self.pool.release();
                        return Err(self.session_failure(&error, slot, generation));
                    }
                },
            };
            return match self.login(&pooled.session, generation, slot) {
                Ok(()) => Ok(pooled),
                Err(failure) => {
                    self.close(pooled);
                    Err(failure)
                }
            };
        }
    }

    /// Logs the user in; a token that is logged in already (the login belongs to the whole
    /// process) is fine, if it was this PIN that logged it in.
    fn login(&self, session: &Session, generation: u64, slot: Slot) -> Result<(), Failure> {
        let label = &self.config.token_label;
        let pin = self.pin.expose_secret().as_bytes();
        match session.login(UserType::User, Some(&self.pin)) {
            Ok(()) => {
                self.module.record_login(label, pin);
                Ok(())
            }
            Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {
                if self.module.login_matches(label, pin) {
                    Ok(())
                } else {
                    Err(Failure::final_(PluginError::new(
                        ErrorKind::INVALID_CONFIG,
                        format!(
                            "login to token {label:?} failed: CKR_PIN_INCORRECT (the token is \
                             logged in already, with another PIN)"
                        ),
                    )))
                }
            }
            Err(error) => Err(self.session_failure(&error, slot, generation)),
        }
    }

    /// The slot holding the token, found by label once per module generation.
    pub(crate) fn slot(&self, generation: u64) -> Result<Slot, String> {
        let mut cached = self.slot.lock();
        if let Some((cached_generation, slot)) = *cached {
            if cached_generation == generation {
                return Ok(slot);
            }
        }
        let slot = self.find_slot()?;
        *cached = Some((generation, slot));
        Ok(slot)
    }

    fn find_slot(&self) -> Result<Slot, String> {
        let library = self.module.library();
        let label = self.config.token_label.as_str();
        let slots = library
            .get_slots_with_token()
            .map_err(|error| ckr(&error))?;
        let mut matches = Vec::new();
        let mut failures = Vec::new();
        for slot in slots {
            match library.get_token_info(slot) {
                Ok(info) if info.label() == label => matches.push(slot),
                Ok(_) => {}
                Err(error) => failures.push(ckr(&error)),
            }
        }
        match matches.as_slice() {
            [slot] => Ok(*slot),
            [] if failures.is_empty() => Err("no slot holds a token with this label".to_owned()),
            [] => Err(format!(
                "no slot holds a token with this label (C_GetTokenInfo failed: {})",
                failures.join(", ")
            )),
            several => Err(format!(
                "{} slots hold a token with this label",
                several.len()
            )),
        }
    }

    /// `Ok` when the token in `slot` answers `C_GetTokenInfo` and still has its label;
    /// otherwise why not.
    pub(crate) fn check_token(&self, slot: Slot) -> Result<(), String> {
        match self.module.library().get_token_info(slot) {
            Ok(info) if info.label() == self.config.token_label => Ok(()),
            Ok(info) => Err(format!("the slot now holds token {:?}", info.label())),
            Err(error) => Err(ckr(&error)),
        }
    }

    /// Re-initialises the module after `cause`, if allowed now; whether to try again.
    fn recover(&self, generation: u64, cause: &PluginError) -> bool {
        if self
            .module
            .try_read()
            .is_some_and(|state| state.generation != generation)
        {
            // Someone re-initialised it since: just try again.
            return true;
        }
        if !self.module.recovery_allowed() {
            return false;
        }
        self.log(
            LogLevel::WARN,
            &format!(
                "{cause}; re-initialising the PKCS#11 module (sha256 {})",
                self.module.sha256()
            ),
        );
        match self.module.reinitialize(generation) {
            Reinit::Done => {
                self.log(LogLevel::INFO, "the PKCS#11 module was re-initialised");
                true
            }
            Reinit::AlreadyDone => true,
            Reinit::Busy => {
                self.module.forget_recovery_attempt();
                self.log(
                    LogLevel::INFO,
                    "calls are in flight on the PKCS#11 module; re-initialisation postponed",
                );
                false
            }
            Reinit::Failed(reason) => {
                self.log(
                    LogLevel::ERROR,
                    &format!("re-initialising the PKCS#11 module failed: {reason}"),
                );
                false
            }
        }
    }

    /// Tells the host when the token is lost and when it is back.
    fn report_availability<T>(&self, result: &Result<T, PluginError>, token_lost: bool) {
        use std::sync::atomic::Ordering;
        match result {
            Ok(_) => {
                if self.reported_unavailable.swap(false, Ordering::AcqRel) {
                    self.log(LogLevel::INFO, "the token is reachable again");
                    self.host.set_instance_available(true, "".into());
                }
            }
            Err(error) if token_lost => {
                if !self.reported_unavailable.swap(true, Ordering::AcqRel) {
                    self.host
                        .set_instance_available(false, error.message.as_str().into());
                }
            }
            Err(_) => {}
        }
    }

    /// Closes a session of the current generation and frees its place in the pool.
    fn close(&self, pooled: PooledSession) {
        let _ = pooled.session.close();
        self.pool.release();
    }

    /// Frees the place of a session that is gone already, without closing its handle.
    fn forget(&self, pooled: PooledSession) {
        drop(pooled);
        self.pool.release();
    }

    pub(crate) fn log(&self, level: LogLevel, message: &str) {
        host_log(
            &self.host,
            level,
            &format!("{NAME}: token {:?}: {message}", self.config.token_label),
        );
    }
}

/// Caches of one instance: object handles by (CKA_ID, role), tagged with their generation.
pub(crate) type HandleCache = std::collections::HashMap<(Vec<u8>, Role), (u64, ObjectInfo)>;
