//! moto harness (work in progress).
