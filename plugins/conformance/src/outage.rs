//! The outage-and-recovery test body the plugins with a remote service share: a plugin's
//! test starts its service (moto, the Azure fake), builds an instance with a short operation
//! timeout on a [`RecordingHost`], makes a key and a ciphertext, and hands [`Outage::run`]
//! how to break the service and mend it. The body then checks, in order, that:
//!
//! 1. the instance decrypts before the fault (its first use of the key comes first);
//! 2. during the fault, `decrypt` and `health` are `UNAVAILABLE`, within
//!    [`Outage::gave_up_within`] (not waiting for the fault to end);
//! 3. once the service is back, `health` and `decrypt` recover on the same instance;
//! 4. the host heard of the outage once, then of the recovery.

use std::time::{Duration, Instant};

use keybroker_plugin_abi::{BackendBox, ErrorKind};

use crate::{
    calls::{assert_error, decrypt, until_available},
    RecordingHost,
};

/// One outage scenario: the instance, its host, and a ciphertext it can decrypt.
pub struct Outage<'a> {
    /// The instance under test (a short operation timeout when the fault is a hang).
    pub backend: &'a BackendBox,
    /// Its host, whose availability reports are checked.
    pub host: &'a RecordingHost,
    /// The tenant of `key`.
    pub tenant: &'a str,
    /// A key reference of `tenant`.
    pub key: &'a str,
    /// A ciphertext of `plaintext` under `key`, with an empty AAD.
    pub ciphertext: &'a [u8],
    /// What `ciphertext` decrypts to.
    pub plaintext: &'a [u8],
    /// What the error of the `decrypt` made during the fault must contain ("" for anything).
    pub fault_message: &'a str,
    /// Upper bound on the `decrypt` made during the fault: far below the fault's own length,
    /// so it only shows that the plugin, not the end of the fault, ended the call.
    pub gave_up_within: Duration,
    /// After `health` recovered, the first `decrypt` must succeed at once (`true`), or may
    /// still be `UNAVAILABLE` for a while, as a service catches up (`false`).
    pub decrypts_once_healthy: bool,
}

impl Outage<'_> {
    /// Runs the scenario: `fail` starts the fault, `mend` ends it (both return at once).
    #[track_caller]
    pub fn run(&self, fail: impl FnOnce(), mend: impl FnOnce()) {
        let decrypt = || decrypt(self.backend, self.tenant, self.key, self.ciphertext, b"");
        let warm = until_available("first use", decrypt);
        assert_eq!(warm, self.plaintext);

        fail();
        let started = Instant::now();
        let result = decrypt();
        let elapsed = started.elapsed();
        let health = self.backend.health().into_result();
        mend();
        assert_error(result, ErrorKind::UNAVAILABLE, self.fault_message);
        assert!(elapsed < self.gave_up_within, "{elapsed:?}");
        assert_error(health, ErrorKind::UNAVAILABLE, "");

        until_available("health after the outage", || {
            self.backend.health().into_result()
        });
        let recovered = if self.decrypts_once_healthy {
            decrypt().unwrap_or_else(|error| panic!("decrypt after the outage: {error}"))
        } else {
            until_available("decrypt after the outage", decrypt)
        };
        assert_eq!(recovered, self.plaintext);
        self.host.assert_outage_then_recovery_reported();
    }
}
