//! `aws-kms`: a keybroker backend whose keys live in AWS KMS (ARCHITECTURE.md §5, issue 7).
//!
//! One instance holds one `aws-sdk-kms` client (HTTP over rustls with ring, as the rest of
//! the workspace) on its own Tokio runtime: no futures cross the plugin ABI, every operation
//! is a `block_on` of one KMS call, bounded by `operation_timeout_ms` (retries included, by
//! the SDK's standard retry mode with `max_attempts`; no retry layer of our own). Keep the
//! operation timeout below the drop-in's `timeout`.
//!
//! - `create_key` makes a KMS key (`aes256-gcm96` → `SYMMETRIC_DEFAULT`, `rsa-*` → `RSA_*`,
//!   `ecdsa-p256|p384` → `ECC_NIST_P256|P384`, the latter for `SIGN_VERIFY`) tagged
//!   `keybroker:tenant=<tenant id>` and `keybroker:key=<key id>`; its reference is
//!   `c/<tenant id>/<KMS key id>`. The first use of such a key by an instance checks the
//!   tenant tag (`ListResourceTags`) and the key spec (`DescribeKey`); later uses cost one
//!   KMS call. `delete_key` schedules its deletion (7 days).
//! - `bind_key` takes a key id, ARN or `alias/…` of an enabled key of the right spec that
//!   the broker did not make (no `keybroker:tenant` tag); its reference is
//!   `b/<tenant id>/<key ARN>`, and `delete_key` never touches it.
//! - Every reference carries its tenant: another tenant's request gets `KEY_NOT_FOUND`
//!   before KMS is asked.
//! - `encrypt`/`decrypt` (direct mode, and envelope wrap/unwrap) call KMS `Encrypt`/`Decrypt`
//!   with the encryption context `{"keybroker:aad": base64(aad)}`, which KMS enforces on
//!   `Decrypt`. The request's IV is ignored: KMS picks its own and keeps it in its blob.
//!   The ciphertext is one format byte followed by KMS's blob (KMS refuses empty
//!   plaintexts, so an empty one is sent as one zero byte with a `keybroker:empty` context
//!   entry, and marked by the format byte). `generate_data_key` calls `GenerateDataKey` with
//!   the same context; `decrypt` with the same AAD unwraps its result.
//! - `sign`/`verify` call `Sign`/`Verify` on the digest (`MessageType DIGEST`); ECDSA
//!   signatures are converted between KMS's DER and the ABI's `r ‖ s`. KMS has no SHA-224
//!   algorithm: `sha2-224` is `INVALID_REQUEST`. `public_key` is `GetPublicKey` as PEM.
//! - Errors: access denied → `ACCESS_DENIED` with KMS's reason; disabled or
//!   pending-deletion keys → `INVALID_REQUEST` naming the state; throttling (after the
//!   SDK's retries), timeouts, connection failures and credentials AWS rejects →
//!   `UNAVAILABLE`; anything else
//!   `INTERNAL` with KMS's error code. Credentials are never logged nor put in errors.
//!
//! Configuration (the drop-in's `[config]` table):
//!
//! ```toml
//! region = "eu-west-1"                  # required
//! endpoint = "https://kms.example"      # optional: a VPC endpoint, or moto in tests
//! operation_timeout_ms = 1500           # per operation, retries included
//! max_attempts = 3                      # the SDK's standard retry mode
//! max_payload = 4096                    # at most KMS's 4096
//! # credentials: leave out for the standard AWS chain, or one of
//! [config.credentials]                  # (in the drop-in, under its [config] table)
//! access_key_id_env = "KB_AWS_ACCESS_KEY_ID"       # names of environment variables
//! secret_access_key_env = "KB_AWS_SECRET_ACCESS_KEY"
//! session_token_env = "KB_AWS_SESSION_TOKEN"       # optional
//! # file = "/etc/keybroker/aws-credentials"      # a shared-credentials file
//! # profile = "keybroker"                        # optional, default "default"
//! ```
//!
//! Tests run against moto behind the fault proxy of `tests/moto` (`cargo test -p
//! keybroker-plugin-aws-kms`; moto must be installed, see that crate).

mod backend;
mod config;
mod error;
mod export;
mod key_kind;
mod reference;
#[cfg(test)]
mod tests;

pub use backend::{new_backend, AwsKmsBackend, AAD_CONTEXT, KEY_TAG, NAME, TENANT_TAG};
pub use config::{Config, DEFAULT_MAX_ATTEMPTS, DEFAULT_OPERATION_TIMEOUT_MS, KMS_MAX_PAYLOAD};
