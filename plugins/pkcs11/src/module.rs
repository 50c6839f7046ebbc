//! One initialised PKCS#11 module per process, shared by every instance that uses it.
//!
//! `C_Initialize` and `C_Finalize` act on the whole process: a second `C_Initialize` fails,
//! and one instance's `C_Finalize` would close every other instance's sessions. So the
//! module (by the SHA-256 of its verified bytes) is initialised once and shared through an
//! `Arc<Module>`; the last instance to drop it finalises it. The libraries themselves are
//! never unloaded (ARCHITECTURE.md §5: a native library may have left threads or handlers behind).
//!
//! Recovery sometimes needs `C_Finalize` + `C_Initialize` (SoftHSM, for one, only sees a
//! token directory that came back after that). That affects every instance at once, so it is
//! done only when no call is in flight on the module: calls hold [`Module::read`] (a read
//! lock) for their whole duration, re-initialisation takes the write lock without waiting
//! for it ([`Module::reinitialize`]). Each re-initialisation bumps a *generation*; sessions,
//! slots and object handles are tagged with the generation they came from and are dropped,
//! never used nor closed, once it has passed (their handle numbers may already belong to
//! someone else's new session).

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{Arc, Mutex as StdMutex, PoisonError, Weak},
    time::{Duration, Instant},
};

use cryptoki::{
    context::{CInitializeArgs, CInitializeFlags, Pkcs11},
    error::{Error as CkError, RvError},
};
use keybroker_plugin_abi::PluginError;
use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::error::ckr;

/// Loaded PKCS#11 libraries by the SHA-256 of their bytes, each with the context currently
/// using it.
///
/// The one global of this crate, against the house rule, because the thing it guards is
/// global: a PKCS#11 library is initialised once per *process* (`C_Initialize` /
/// `C_Finalize`), so two broker instances in one process (or two backend instances in one
/// broker) must find the context the other made. It holds only `Weak` references: the
/// instances own the contexts.
static MODULES: StdMutex<BTreeMap<String, Loaded>> = StdMutex::new(BTreeMap::new());

struct Loaded {
    /// Kept for the life of the process, so the library is never unloaded.
    library: Pkcs11,
    context: Weak<Module>,
    /// Bumped whenever a new context takes the library over, so that a context being
    /// dropped while a new one starts does not finalise the new one's module.
    epoch: u64,
}

/// An initialised PKCS#11 module, shared by the instances using it.
pub(crate) struct Module {
    sha256: String,
    library: Pkcs11,
    epoch: u64,
    state: RwLock<ModuleState>,
    /// When recovery last re-initialised the module (or tried to): calls that fail on a
    /// vanished token do not re-initialise it more often than [`RECOVERY_INTERVAL`].
    last_recovery: Mutex<Option<Instant>>,
    /// Who logged in to which token (by label), as a salted hash of the PIN: a token stays
    /// logged in for the whole process, so an instance whose `C_Login` answers
    /// `CKR_USER_ALREADY_LOGGED_IN` proves its PIN against the one that did log in.
    logins: Mutex<BTreeMap<String, [u8; 32]>>,
    pin_salt: [u8; 32],
}

/// The module's state, behind the read-write lock.
#[derive(Debug)]
pub(crate) struct ModuleState {
    /// Bumped by every re-initialisation.
    pub(crate) generation: u64,
    /// Why the last `C_Initialize` failed (`CKR_…`), if it did: the module is then not
    /// initialised and every call fails until a re-initialisation succeeds.
    pub(crate) init_error: Option<String>,
}

/// A call's hold on the module: no re-initialisation happens while it lives.
pub(crate) type ModuleGuard<'a> = RwLockReadGuard<'a, ModuleState>;

/// Least time between two re-initialisations attempted by failing calls.
pub(crate) const RECOVERY_INTERVAL: Duration = Duration::from_millis(500);

/// What [`Module::reinitialize`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reinit {
    /// Finalised and initialised again.
    Done,
    /// Another caller re-initialised it since the generation was read: nothing to do.
    AlreadyDone,
    /// Calls are in flight (or a re-initialisation is running): not now.
    Busy,
    /// `C_Initialize` failed with this `CKR_…`; the module is left uninitialised.
    Failed(String),
}

fn init_args() -> CInitializeArgs {
    // The broker calls from many threads: let the module use the OS's locking.
    CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)
}

/// `C_Initialize`, where `CKR_CRYPTOKI_ALREADY_INITIALIZED` (another copy of this plugin in
/// the process got there first) counts as success.
fn initialize(library: &Pkcs11) -> Result<(), CkError> {
    match library.initialize(init_args()) {
        Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) | Ok(()) => Ok(()),
        Err(error) => Err(error),
    }
}

impl Module {
    /// The context of the module whose verified copy is `copy` (hash `sha256`), loading
    /// and initialising it if no instance uses it yet.
    pub(crate) fn acquire(copy: &Path, sha256: &str) -> Result<Arc<Module>, PluginError> {
        let mut modules = MODULES.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(module) = modules.get(sha256).and_then(|m| m.context.upgrade()) {
            return Ok(module);
        }
        let (library, epoch) = match modules.get(sha256) {
            Some(loaded) => {
                // The previous context may be in the middle of being dropped and not have
                // finalised yet: finalise now (its drop then sees the new epoch and leaves
                // the library alone), so this context starts from a clean module.
                let _ = loaded.library.clone().finalize();
                (loaded.library.clone(), loaded.epoch + 1)
            }
            None => {
                let library = Pkcs11::new(copy).map_err(|error| {
                    PluginError::unavailable(format!(
                        "cannot load the PKCS#11 module {}: {}",
                        copy.display(),
                        ckr(&error)
                    ))
                })?;
                (library, 0)
            }
        };
        initialize(&library).map_err(|error| {
            PluginError::unavailable(format!(
                "cannot initialise the PKCS#11 module {}: {}",
                copy.display(),
                ckr(&error)
            ))
        })?;
        let mut pin_salt = [0u8; 32];
        rand::RngCore::try_fill_bytes(&mut rand::rngs::OsRng, &mut pin_salt)
            .map_err(|_| PluginError::internal("the system random number generator failed"))?;
        let module = Arc::new(Module {
            sha256: sha256.to_owned(),
            library: library.clone(),
            epoch,
            state: RwLock::new(ModuleState {
                generation: 0,
                init_error: None,
            }),
            last_recovery: Mutex::new(None),
            logins: Mutex::new(BTreeMap::new()),
            pin_salt,
        });
        modules.insert(
            sha256.to_owned(),
            Loaded {
                library,
                context: Arc::downgrade(&module),
                epoch,
            },
        );
        Ok(module)
    }

    /// The cryptoki handle of the library.
    pub(crate) fn library(&self) -> &Pkcs11 {
        &self.library
    }

    /// Lowercase hex SHA-256 of the module's bytes.
    pub(crate) fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Holds the module for a call, waiting at most `wait` for a re-initialisation to end.
    pub(crate) fn read(&self, wait: Duration) -> Option<ModuleGuard<'_>> {
        self.state.try_read_for(wait)
    }

    /// Holds the module if that is possible right now (for cleanup in `Drop`).
    pub(crate) fn try_read(&self) -> Option<ModuleGuard<'_>> {
        self.state.try_read()
    }

    /// Whether a failing call may re-initialise the module now; records the attempt.
    pub(crate) fn recovery_allowed(&self) -> bool {
        let mut last = self.last_recovery.lock();
        if last.is_some_and(|at| at.elapsed() < RECOVERY_INTERVAL) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    /// Forgets the last recovery attempt, when it did not happen after all.
    pub(crate) fn forget_recovery_attempt(&self) {
        *self.last_recovery.lock() = None;
    }

    /// `C_Finalize` + `C_Initialize`, unless the generation moved past `seen_generation`
    /// already. Never waits: if a call is in flight (or a re-initialisation runs) it answers
    /// [`Reinit::Busy`]. A waiting writer would make every new call queue behind it (the lock
    /// is fair), which is exactly what must not happen.
    pub(crate) fn reinitialize(&self, seen_generation: u64) -> Reinit {
        let Some(mut state) = self.state.try_write() else {
            return Reinit::Busy;
        };
        if state.generation != seen_generation {
            return Reinit::AlreadyDone;
        }
        // `finalize` takes the handle by value; the library stays loaded through `self`.
        let _ = self.library.clone().finalize();
        let result = initialize(&self.library);
        state.generation += 1;
        self.logins.lock().clear();
        match result {
            Ok(()) => {
                state.init_error = None;
                Reinit::Done
            }
            Err(error) => {
                let reason = ckr(&error);
                state.init_error = Some(reason.clone());
                Reinit::Failed(reason)
            }
        }
    }

    /// Records that `pin` logged in to the token labelled `token_label`.
    pub(crate) fn record_login(&self, token_label: &str, pin: &[u8]) {
        let fingerprint = self.pin_fingerprint(pin);
        self.logins
            .lock()
            .insert(token_label.to_owned(), fingerprint);
    }

    /// Whether `pin` is the PIN that logged in to `token_label` in this process (`true` when
    /// the login was not made through this context, so nothing is known).
    pub(crate) fn login_matches(&self, token_label: &str, pin: &[u8]) -> bool {
        let fingerprint = self.pin_fingerprint(pin);
        self.logins
            .lock()
            .get(token_label)
            .is_none_or(|recorded| bool::from(recorded.ct_eq(&fingerprint)))
    }

    fn pin_fingerprint(&self, pin: &[u8]) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.pin_salt);
        hasher.update(pin);
        hasher.finalize().into()
    }
}

impl Drop for Module {
    fn drop(&mut self) {
        let modules = MODULES.lock().unwrap_or_else(PoisonError::into_inner);
        if modules
            .get(&self.sha256)
            .is_some_and(|loaded| loaded.epoch == self.epoch)
        {
            // The last instance using the module is gone. The library stays loaded.
            let _ = self.library.clone().finalize();
        }
    }
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("sha256", &self.sha256)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}
