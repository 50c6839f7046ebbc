//! Process memory hygiene (ARCHITECTURE.md §8b): no core dumps and no ptrace by other users, so key
//! material in memory does not end up on disk.

/// Sets `PR_SET_DUMPABLE=0` and `RLIMIT_CORE=0`. Failures are logged, not fatal.
pub fn harden_process() {
    if let Err(error) =
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
    {
        tracing::warn!(%error, "could not clear the dumpable flag");
    }
    let no_core = rustix::process::Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    if let Err(error) = rustix::process::setrlimit(rustix::process::Resource::Core, no_core) {
        tracing::warn!(%error, "could not disable core dumps");
    }
}
