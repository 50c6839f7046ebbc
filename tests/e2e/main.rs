//! End-to-end tests: one binary, one module per area.

mod support;

mod plugins;
mod transit;
