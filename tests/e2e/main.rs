//! End-to-end tests: one binary, one module per area.

// Test code throughout: a failed unwrap or a panic is a failed test (clippy's
// `allow-*-in-tests` does not reach helpers outside `#[test]` functions).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod aead;
mod agent;
mod agent_hsm;
mod approle;
mod audit;
mod authority;
mod aws;
mod azure;
mod backup;
mod byok;
mod cluster;
mod counter;
mod derived;
mod edge;
mod gateway;
mod hmac;
mod hsm;
mod idp;
mod isolation;
mod jwt;
mod kv;
mod kv_identus;
mod kv_integrators;
mod kv_keys;
mod kv_namespaces;
mod matrix;
mod oidc;
mod openapi;
mod plugins;
mod policies;
mod policy_diff;
mod private_keys;
mod rsa_encrypt;
mod seal;
mod sign;
mod sys_api;
mod tenants;
mod token_paths;
mod tokens;
mod transit;
mod wrapping;
