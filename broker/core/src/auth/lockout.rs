//! Failed-login lockout, for any auth method that checks a secret of its own (AppRole today;
//! userpass or LDAP later): [`Lockout`] counts failed logins per (identity, client address)
//! pair in memory and locks a pair out for a while after too many. Other addresses are not
//! affected, so knowing an identity does not let anyone lock its owner out.
//!
//! # Using it from an auth method
//!
//! A method holds one [`Lockout`] for all its mounts, made from its [`LockoutSettings`]
//! ([`Lockout::from_settings`]), and for each login:
//!
//! 1. builds the pair's [`LockKey`] from the mount, the identity the login names (AppRole:
//!    the role_id; userpass or LDAP: the username) and the client's address
//!    ([`LockKey::new`]; the identity is kept only as a digest);
//! 2. does the same work whatever the outcome (the same store reads for an unknown identity
//!    as for a known one), then refuses a pair that [`Lockout::is_locked`] with the same
//!    answer as any other failed login, so a locked pair cannot be told from a wrong secret;
//! 3. calls [`Lockout::record_failure`] when the login fails, and [`Lockout::clear`] when it
//!    succeeds.
//!
//! AppRole does exactly this in `approle/login.rs`. JWT logins are not locked out, as in
//! Vault: their credential is signed by an identity provider, not a secret guessed here.

use std::{collections::HashMap, net::IpAddr, sync::Mutex};

use sha2::{Digest, Sha256};

use crate::{MountId, TenantId};

/// The limits of a lockout. Vault's user lockout defaults: 5 failures, 15 minutes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockoutSettings {
    /// Failed logins of a (identity, client address) pair that lock the pair out.
    pub threshold: u32,
    /// Seconds over which failures are counted, and for which a locked pair stays locked.
    pub duration: u64,
}

impl Default for LockoutSettings {
    fn default() -> Self {
        Self {
            threshold: 5,
            duration: 15 * 60,
        }
    }
}

/// What a lockout is keyed by: the pair (identity, client address) within a mount. The
/// identity is whatever the method's login names (AppRole: the role_id), opaque here and
/// kept only as a digest, so memory does not grow with what callers send.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LockKey {
    tenant: TenantId,
    mount: MountId,
    identity: [u8; 32],
    client: Option<IpAddr>,
}

impl LockKey {
    /// The pair of `identity` and `client` on `mount` of `tenant`. The client address is
    /// compared as [`crate::cidr::canonical_address`] makes it (an IPv4-mapped IPv6 address
    /// is its IPv4 address).
    pub fn new(tenant: TenantId, mount: MountId, identity: &[u8], client: Option<IpAddr>) -> Self {
        Self {
            tenant,
            mount,
            identity: Sha256::digest(identity).into(),
            client: client.map(crate::cidr::canonical_address),
        }
    }

    /// What the overflow sketch counts for this pair: the client (an IPv6 client by its
    /// /64, what one host usually holds) within the mount, without the identity. An attacker
    /// who makes fresh pairs by sending made-up identities (role_ids) then adds to the cells of their own
    /// address only, so the flood locks that address out and not, by collisions, others.
    fn overflow_key(&self) -> (TenantId, MountId, Option<IpAddr>) {
        let client = self.client.map(|address| match address {
            IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
            v4 => v4,
        });
        (self.tenant, self.mount, client)
    }
}

#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    window_start: i64,
    locked_until: Option<i64>,
}

impl Failures {
    fn is_locked(&self, now: i64) -> bool {
        self.locked_until.is_some_and(|until| until > now)
    }

    /// Whether the entry still says something at `now`: locked, or counting failures whose
    /// window is open. Anything else would be reset by the pair's next failure anyway.
    fn is_live(&self, now: i64, window: i64) -> bool {
        self.is_locked(now) || (self.locked_until.is_none() && now - self.window_start < window)
    }
}

/// Most (identity, client address) pairs whose failures are counted exactly, by default.
pub const DEFAULT_LOCKOUT_CAPACITY: usize = 100_000;

/// Failed logins per (identity, client address), in memory: `threshold` failures within
/// `window` seconds lock the pair for `window` seconds from the last of them.
///
/// # Bounded, and still locking once full
///
/// Pairs are made by callers (any identity, from any address), so the exact table holds at
/// most `capacity` of them. What happens when it is full decides whether the lockout holds:
/// an attacker who can fill it must gain nothing against the pair they attack.
///
/// - **A live entry is never evicted.** Evicting (LRU, or moka's TinyLFU) would let a flood
///   of fresh pairs reset the count, or lift the lock, of the pair under attack. Only stale
///   entries go (no failure within the window and not locked: the pair's next failure would
///   reset them anyway), swept when the table is full, at most once per clock second so a
///   flood cannot make every failed login scan the table.
/// - **No failure goes uncounted.** A failure that finds the table full of live entries is
///   counted in a fixed-size count-min sketch (conservative update, keyed by a per-process
///   random hash so no one can aim collisions) of the pair's client address within the
///   mount ([`LockKey::overflow_key`]). A sketch never underestimates: `threshold` failures
///   of a pair lock it, from any address. Collisions only overestimate, so under a flood far
///   beyond the table the sketch fails closed: some innocent clients without an entry of
///   their own may be refused until the flood's failures age out, never an attacker let
///   through. Leaving the identity out keeps a flood's cells to the attacker's addresses.
/// - The sketch counts a failure for 3 epochs of `window` seconds, so any `threshold`
///   failures within `window` seconds (2 consecutive epochs at most) are all still counted
///   for at least `window` seconds after the last: a lock found there lasts at least as long
///   as one in the table, and at most 3 windows. A pair entering the table starts from what
///   the sketch already counted for it, so its count is not split. A successful login
///   clears the table entry; the sketch cannot forget one pair and keeps its count.
///
/// The alternative of refusing every pair without an entry once the table is full would
/// also be safe, but would let anyone lock out every client on every mount with one
/// table's worth of failures.
///
/// Failed logins look the same whichever structure counted them: the method answers a locked
/// pair as any failed login (AppRole: [`crate::auth::approle::LOGIN_FAILED`]).
pub struct Lockout {
    threshold: u32,
    window: i64,
    capacity: usize,
    state: Mutex<LockoutState>,
}

impl std::fmt::Debug for Lockout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lockout")
            .field("threshold", &self.threshold)
            .field("window", &self.window)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct LockoutState {
    pairs: HashMap<LockKey, Failures>,
    /// The clock second of the last sweep of a full table.
    swept_at: Option<i64>,
    /// Failures that found the table full; allocated at the first.
    overflow: Option<Box<OverflowSketch>>,
}

impl Lockout {
    /// A lockout of `threshold` failures (at least 1) over `window` seconds, counting
    /// [`DEFAULT_LOCKOUT_CAPACITY`] pairs exactly.
    pub fn new(threshold: u32, window: i64) -> Self {
        Self::with_capacity(threshold, window, DEFAULT_LOCKOUT_CAPACITY)
    }

    /// A lockout counting at most `capacity` pairs (at least 1) exactly, the rest in its
    /// overflow sketch.
    pub fn with_capacity(threshold: u32, window: i64, capacity: usize) -> Self {
        Self {
            threshold: threshold.max(1),
            window: window.max(1),
            capacity: capacity.max(1),
            state: Mutex::new(LockoutState::default()),
        }
    }

    /// A lockout with the limits of `settings` (a duration beyond `i64::MAX` seconds is
    /// `i64::MAX`).
    pub fn from_settings(settings: &LockoutSettings) -> Self {
        Self::new(
            settings.threshold,
            i64::try_from(settings.duration).unwrap_or(i64::MAX),
        )
    }

    /// Whether the pair is locked out at `now`.
    pub fn is_locked(&self, key: &LockKey, now: i64) -> bool {
        let Ok(state) = self.state.lock() else {
            // A poisoned lock means a panic elsewhere: refuse rather than guess.
            return true;
        };
        state.pairs.get(key).is_some_and(|f| f.is_locked(now))
            || state
                .overflow
                .as_ref()
                .is_some_and(|sketch| sketch.estimate(key, now, self.window) >= self.threshold)
    }

    /// Counts a failed login of the pair.
    pub fn record_failure(&self, key: LockKey, now: i64) {
        let Ok(mut guard) = self.state.lock() else {
            return;
        };
        let state = &mut *guard;
        let known = state.pairs.contains_key(&key);
        if !known && state.pairs.len() >= self.capacity && state.swept_at != Some(now) {
            state.swept_at = Some(now);
            let window = self.window;
            state.pairs.retain(|_, f| f.is_live(now, window));
        }
        if !known && state.pairs.len() >= self.capacity {
            state
                .overflow
                .get_or_insert_with(|| Box::new(OverflowSketch::new()))
                .record(&key, now, self.window, self.threshold);
            return;
        }
        let overflow = &state.overflow;
        let window = self.window;
        let entry = state.pairs.entry(key).or_insert_with_key(|key| Failures {
            count: overflow
                .as_ref()
                .map_or(0, |sketch| sketch.estimate(key, now, window)),
            window_start: now,
            locked_until: None,
        });
        if entry.is_locked(now) {
            return;
        }
        if entry.locked_until.is_some() || now - entry.window_start >= self.window {
            *entry = Failures {
                count: 0,
                window_start: now,
                locked_until: None,
            };
        }
        entry.count = entry.count.saturating_add(1);
        if entry.count >= self.threshold {
            entry.locked_until = Some(now.saturating_add(self.window));
        }
    }

    /// Forgets the pair's failures (a successful login).
    pub fn clear(&self, key: &LockKey) {
        if let Ok(mut state) = self.state.lock() {
            state.pairs.remove(key);
        }
    }

    /// Pairs counted exactly right now (for tests and metrics).
    pub fn tracked_pairs(&self) -> usize {
        self.state.lock().map_or(0, |state| state.pairs.len())
    }
}

/// Rows of the overflow sketch (independent hashes).
const SKETCH_ROWS: usize = 4;
/// Counters per row and epoch.
const SKETCH_COLUMNS: usize = 1 << 16;
/// Epochs of `window` seconds during which a failure stays counted (see [`Lockout`]).
const SKETCH_EPOCHS: usize = 3;

/// A count-min sketch of failures per [`LockKey::overflow_key`], in [`SKETCH_EPOCHS`]
/// rotating epochs: 1.5 MiB, whatever the flood.
struct OverflowSketch {
    hasher: std::collections::hash_map::RandomState,
    /// The epoch each bucket counts (a bucket is cleared when reused for a later one).
    epochs: [i64; SKETCH_EPOCHS],
    /// `SKETCH_EPOCHS` buckets of `SKETCH_ROWS` rows of `SKETCH_COLUMNS` counters.
    counters: Vec<u16>,
}

impl OverflowSketch {
    fn new() -> Self {
        Self {
            hasher: std::collections::hash_map::RandomState::new(),
            epochs: [i64::MIN; SKETCH_EPOCHS],
            counters: vec![0; SKETCH_EPOCHS * SKETCH_ROWS * SKETCH_COLUMNS],
        }
    }

    /// The counter index of each row for `key` within a bucket.
    fn columns(&self, key: &LockKey) -> [usize; SKETCH_ROWS] {
        use std::hash::BuildHasher;
        let counted = key.overflow_key();
        std::array::from_fn(|row| {
            let hash = self.hasher.hash_one((row, &counted));
            // Lossless: the modulus is below usize::MAX.
            (hash % SKETCH_COLUMNS as u64) as usize + row * SKETCH_COLUMNS
        })
    }

    fn bucket_of(epoch: i64) -> usize {
        // Lossless: the remainder is below SKETCH_EPOCHS.
        epoch.rem_euclid(SKETCH_EPOCHS as i64) as usize
    }

    /// Whether a bucket's epoch is still counted at `epoch`. Later epochs (a clock that went
    /// back) are counted too: keeping failures longer only fails closed.
    fn is_counted(bucket_epoch: i64, epoch: i64) -> bool {
        bucket_epoch != i64::MIN && bucket_epoch > epoch - SKETCH_EPOCHS as i64
    }

    /// At least the failures of `key`'s client counted in the last [`SKETCH_EPOCHS`] epochs.
    fn estimate(&self, key: &LockKey, now: i64, window: i64) -> u32 {
        let epoch = now.div_euclid(window);
        let columns = self.columns(key);
        (0..SKETCH_EPOCHS)
            .filter(|bucket| Self::is_counted(self.epochs[*bucket], epoch))
            .map(|bucket| {
                let base = bucket * SKETCH_ROWS * SKETCH_COLUMNS;
                columns
                    .iter()
                    .map(|column| u32::from(self.counters[base + column]))
                    .min()
                    .unwrap_or(0)
            })
            .sum()
    }

    /// Counts a failure of `key` at `now`, unless its client is already locked out here
    /// (adding more would only raise collisions for others).
    fn record(&mut self, key: &LockKey, now: i64, window: i64, threshold: u32) {
        if self.estimate(key, now, window) >= threshold {
            return;
        }
        let epoch = now.div_euclid(window);
        let bucket = Self::bucket_of(epoch);
        let base = bucket * SKETCH_ROWS * SKETCH_COLUMNS;
        if self.epochs[bucket] < epoch {
            self.epochs[bucket] = epoch;
            self.counters[base..base + SKETCH_ROWS * SKETCH_COLUMNS].fill(0);
        }
        // Conservative update within the bucket: raise each row's counter only to one more
        // than the bucket's smallest, which still bounds the key's own count from above.
        let columns = self.columns(key);
        let least = columns
            .iter()
            .map(|column| self.counters[base + column])
            .min()
            .unwrap_or(0);
        let raised = least.saturating_add(1);
        for column in columns {
            let counter = &mut self.counters[base + column];
            *counter = (*counter).max(raised);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(client: &str) -> LockKey {
        LockKey {
            tenant: TenantId::ROOT,
            mount: MountId::random(),
            identity: [7; 32],
            client: Some(client.parse().unwrap()),
        }
    }

    fn pair(mount: MountId, role_id: u32, client: &str) -> LockKey {
        let mut digest = [0; 32];
        digest[..4].copy_from_slice(&role_id.to_be_bytes());
        LockKey {
            tenant: TenantId::ROOT,
            mount,
            identity: digest,
            client: Some(client.parse().unwrap()),
        }
    }

    /// A different address for each `i` (10.x.y.z), none of them in 192.0.2.0/24.
    fn elsewhere(i: u32) -> String {
        let [_, b, c, d] = i.to_be_bytes();
        format!("10.{b}.{c}.{d}")
    }

    const REAL_ROLE: u32 = u32::MAX;

    #[test]
    fn a_full_table_never_evicts_or_resets_the_pair_under_attack() {
        let lockout = Lockout::with_capacity(3, 60, 8);
        let mount = MountId::random();
        let target = pair(mount, REAL_ROLE, "192.0.2.1");
        lockout.record_failure(target.clone(), 100);
        lockout.record_failure(target.clone(), 101);
        assert!(!lockout.is_locked(&target, 101));
        // A flood of fresh pairs, from many other addresses, fills the table many times over.
        for i in 0..1_000 {
            lockout.record_failure(pair(mount, i, &elsewhere(i)), 102);
            assert!(lockout.tracked_pairs() <= 8);
        }
        assert!(!lockout.is_locked(&target, 102));
        // The pair under attack kept its count: its third failure locks it, for the window.
        lockout.record_failure(target.clone(), 103);
        assert!(lockout.is_locked(&target, 103));
        assert!(lockout.is_locked(&target, 162));
        assert!(!lockout.is_locked(&target, 163));
        assert!(lockout.tracked_pairs() <= 8);
    }

    #[test]
    fn failures_that_find_the_table_full_of_locked_pairs_still_lock() {
        let lockout = Lockout::with_capacity(3, 60, 8);
        let mount = MountId::random();
        for i in 0..8 {
            for _ in 0..3 {
                lockout.record_failure(pair(mount, i, &elsewhere(i)), 0);
            }
            assert!(lockout.is_locked(&pair(mount, i, &elsewhere(i)), 0));
        }
        let target = pair(mount, REAL_ROLE, "192.0.2.1");
        lockout.record_failure(target.clone(), 1);
        lockout.record_failure(target.clone(), 2);
        assert!(!lockout.is_locked(&target, 2));
        lockout.record_failure(target.clone(), 3);
        assert_eq!(lockout.tracked_pairs(), 8, "the target is not in the table");
        assert!(
            lockout.is_locked(&target, 3),
            "its failures were counted all the same"
        );
        // Locked at least for the window after its last failure, at most three windows.
        assert!(lockout.is_locked(&target, 63));
        assert!(!lockout.is_locked(&target, 180));
        let service = pair(mount, REAL_ROLE, "192.0.2.2");
        assert!(
            !lockout.is_locked(&service, 3),
            "another address is not locked out"
        );
    }

    #[test]
    fn a_flood_of_made_up_role_ids_locks_the_flooding_address_only() {
        let lockout = Lockout::with_capacity(3, 60, 8);
        let mount = MountId::random();
        for i in 0..1_000 {
            lockout.record_failure(pair(mount, i, "192.0.2.1"), 0);
        }
        assert_eq!(lockout.tracked_pairs(), 8);
        // The real role_id from the flooding address was never tried, and is locked out.
        assert!(lockout.is_locked(&pair(mount, REAL_ROLE, "192.0.2.1"), 1));
        // The service using the real role_id from its own address is not.
        assert!(!lockout.is_locked(&pair(mount, REAL_ROLE, "192.0.2.2"), 1));

        // An IPv6 client is counted by its /64.
        for i in 0..1_000 {
            lockout.record_failure(pair(mount, i, &format!("2001:db8::{i:x}")), 0);
        }
        assert!(lockout.is_locked(&pair(mount, REAL_ROLE, "2001:db8::ffff"), 1));
        assert!(!lockout.is_locked(&pair(mount, REAL_ROLE, "2001:db8:0:1::1"), 1));
        assert!(lockout.tracked_pairs() <= 8);
    }

    #[test]
    fn stale_pairs_make_room_and_a_pair_entering_the_table_keeps_its_count() {
        let lockout = Lockout::with_capacity(3, 60, 8);
        let mount = MountId::random();
        for i in 0..8 {
            lockout.record_failure(pair(mount, i, &elsewhere(i)), 0);
        }
        // Two failures while the table is full: counted in the sketch.
        let target = pair(mount, REAL_ROLE, "192.0.2.1");
        lockout.record_failure(target.clone(), 10);
        lockout.record_failure(target.clone(), 11);
        assert_eq!(lockout.tracked_pairs(), 8);
        // The window of the table's pairs has passed: they are swept, and the target enters
        // the table with the two failures already counted, so its third locks it.
        lockout.record_failure(target.clone(), 61);
        assert_eq!(lockout.tracked_pairs(), 1);
        assert!(lockout.is_locked(&target, 61));

        // A pair counted exactly in the room made behaves exactly.
        let fresh = pair(mount, 1, "192.0.2.9");
        lockout.record_failure(fresh.clone(), 62);
        assert_eq!(lockout.tracked_pairs(), 2);
        lockout.clear(&fresh);
        lockout.record_failure(fresh.clone(), 63);
        assert!(!lockout.is_locked(&fresh, 63));
    }

    #[test]
    fn lockout_counts_per_pair_and_clears_after_the_window() {
        let lockout = Lockout::new(3, 60);
        let attacker = key("192.0.2.1");
        let service = LockKey {
            client: Some("192.0.2.2".parse().unwrap()),
            ..attacker.clone()
        };
        for i in 0..2 {
            lockout.record_failure(attacker.clone(), 100 + i);
            assert!(!lockout.is_locked(&attacker, 100 + i));
        }
        lockout.record_failure(attacker.clone(), 102);
        assert!(lockout.is_locked(&attacker, 102));
        assert!(lockout.is_locked(&attacker, 161));
        assert!(
            !lockout.is_locked(&service, 102),
            "another address is not locked out"
        );
        // Failures while locked do not extend the lock.
        lockout.record_failure(attacker.clone(), 150);
        assert!(!lockout.is_locked(&attacker, 162));
        // Failures spread wider than the window never lock.
        let slow = key("192.0.2.3");
        for at in [0, 70, 140, 210] {
            lockout.record_failure(slow.clone(), at);
            assert!(!lockout.is_locked(&slow, at));
        }
        // A success forgets the count.
        let once = key("192.0.2.4");
        lockout.record_failure(once.clone(), 0);
        lockout.record_failure(once.clone(), 1);
        lockout.clear(&once);
        lockout.record_failure(once.clone(), 2);
        assert!(!lockout.is_locked(&once, 2));
    }

    #[test]
    fn a_key_names_its_identity_by_digest_and_its_client_canonically() {
        let mount = MountId::random();
        let mapped = LockKey::new(
            TenantId::ROOT,
            mount,
            b"role-id",
            Some("::ffff:192.0.2.1".parse().unwrap()),
        );
        let v4 = LockKey::new(
            TenantId::ROOT,
            mount,
            b"role-id",
            Some("192.0.2.1".parse().unwrap()),
        );
        assert_eq!(mapped, v4);
        assert_eq!(v4.identity, <[u8; 32]>::from(Sha256::digest(b"role-id")));
        assert_ne!(v4, LockKey::new(TenantId::ROOT, mount, b"other", v4.client));
        assert_ne!(
            v4,
            LockKey::new(TenantId::ROOT, MountId::random(), b"role-id", v4.client)
        );
    }

    #[test]
    fn settings_make_the_lockout() {
        let lockout = Lockout::from_settings(&LockoutSettings {
            threshold: 2,
            duration: 30,
        });
        let attacker = key("192.0.2.1");
        lockout.record_failure(attacker.clone(), 0);
        assert!(!lockout.is_locked(&attacker, 0));
        lockout.record_failure(attacker.clone(), 1);
        assert!(lockout.is_locked(&attacker, 30));
        assert!(!lockout.is_locked(&attacker, 31));
        let far = Lockout::from_settings(&LockoutSettings {
            threshold: 1,
            duration: u64::MAX,
        });
        far.record_failure(attacker.clone(), 0);
        assert!(far.is_locked(&attacker, i64::MAX - 1));
    }
}
