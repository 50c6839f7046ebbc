//! End-to-end tests: one binary, one module per area.

mod support;

mod counter;
mod plugins;
mod transit;
