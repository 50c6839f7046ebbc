//! Secrets engines: what a mount of each kind does with its keys and data.

pub mod kv;
pub mod transit;
