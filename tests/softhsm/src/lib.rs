//! SoftHSM2 test harness (work in progress).
