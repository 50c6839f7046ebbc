//! `azure-keyvault`: a keybroker backend whose keys live in Azure Key Vault (ARCHITECTURE.md §5,
//! issue 7).
//!
//! One instance holds one `KeyClient` of the official Azure SDK for Rust
//! (`azure_security_keyvault_keys` 1.x with `azure_identity`'s `ClientSecretCredential`)
//! on its own Tokio runtime: no futures cross the plugin ABI, every operation is a
//! `block_on` of one Key Vault call (token request included), bounded by
//! `operation_timeout_ms`, retries included. Retries are the SDK's exponential policy with
//! `max_retries`, which honours `Retry-After` on 429 and 503; no retry layer of our own.
//! HTTP goes through a reqwest client of ours on rustls with ring (no OpenSSL, no aws-lc),
//! trusting the system's roots and the optional `ca_file`, handed to the SDK as its
//! transport. Keep the operation timeout below the drop-in's `timeout`.
//!
//! Why this SDK: the community crate `azure_security_keyvault` (0.21) is deprecated and no
//! longer maintained; `azure_security_keyvault_keys` is its successor, the crate Microsoft
//! maintains and releases as the Azure SDK for Rust.
//!
//! - `create_key` makes a Key Vault key named `kb-<hex SHA-256 of tenant id NUL key id>`
//!   (Key Vault names allow only `[0-9a-zA-Z-]`; the same broker key always maps to the
//!   same name), tagged `keybroker-tenant=<tenant id>` and `keybroker-key=<key id>`:
//!   `aes256-gcm96` (the envelope wrapping key) → RSA-3072 with key_ops wrapKey/unwrapKey;
//!   `rsa-2048|3072|4096` → RSA with sign/verify; `ecdsa-p256|p384` → EC P-256/P-384 with
//!   sign/verify. Its reference is `c/<tenant id>/<name>`. The first use of such a key by
//!   an instance reads it (Get Key) and checks the tenant tag; later uses cost one call.
//!   `delete_key` deletes it (Key Vault's soft delete: recoverable for the vault's
//!   retention period).
//! - `bind_key` takes `<name>` or `<name>/<version>` of an enabled key of the right kind
//!   that the broker did not make (no `keybroker-tenant` tag): for `aes256-gcm96` an RSA
//!   key of at least 2048 bits whose key_ops allow wrapKey and unwrapKey, for signing
//!   types a key of that size or curve allowing sign. Its reference is
//!   `b/<tenant id>/<name>[/<version>]`; `delete_key` never touches it.
//! - Every reference carries its tenant: another tenant's request gets `KEY_NOT_FOUND`
//!   before Key Vault is asked.
//! - Envelope mode only (capabilities ENVELOPE, BIND_EXISTING, SIGN; not DIRECT: Key Vault
//!   RSA encryption takes at most 190 bytes and has no AAD). `encrypt`/`decrypt` are
//!   `wrapKey`/`unwrapKey` with RSA-OAEP-256; `max_payload` is 190 bytes, what RSA-OAEP-256
//!   takes under the smallest accepted key (RSA-2048); the broker's data keys are 32. The
//!   request's AAD is not used: RSA-OAEP has none, and the broker derives the data key
//!   with HKDF over its binding (ARCHITECTURE.md §3), so a data key moved to another key or tenant
//!   is useless anyway. The request's IV is not used either. A wrapped key is
//!   `0x01 ‖ len(version) (1 byte) ‖ version (ASCII) ‖ RSA-OAEP-256 ciphertext`: unwrapping
//!   uses the version that wrapped, so a key rotated in Key Vault still unwraps older data
//!   keys. An empty plaintext is wrapped as one zero byte under the format byte `0x00`
//!   (checked on unwrap). A corrupted or foreign blob is `INVALID_CIPHERTEXT`.
//! - `sign` calls Key Vault's sign on the digest (Key Vault signs digests): RS256/384/512
//!   (`pkcs1v15`), PS256/384/512 (`pss`, salt = digest length), ES256 (P-256, SHA-256
//!   only), ES384 (P-384, SHA-384 only); ECDSA signatures are `r ‖ s` on both sides. Key
//!   Vault has no SHA-224: `sha2-224` and curve/hash mismatches are `INVALID_REQUEST`.
//!   `verify` is local, with the public key read on the key's first use (Key Vault's verify
//!   operation is meant for keys whose public part cannot be read), and answers `false` for
//!   any bad, truncated or empty signature. `sign` uses that same version, so signatures
//!   always verify with `public_key` (PEM SubjectPublicKeyInfo built from the JWK) within
//!   an instance; bind `<name>/<version>` to pin a version across instances and restarts.
//! - `health` reads one entry of the vault's key list (keys/list permission): it fails
//!   with `UNAVAILABLE` when the vault or the token endpoint cannot be reached, or Entra
//!   ID refuses the credentials (with its reason), and reports instance availability
//!   changes to the host.
//! - Errors: 401/403 → `ACCESS_DENIED` with Key Vault's message; a disabled key →
//!   `INVALID_REQUEST` "key is disabled"; 404 → `KEY_NOT_FOUND`; 429 after the SDK's
//!   retries, timeouts, connection failures, and a token endpoint refusing the credentials
//!   → `UNAVAILABLE`. The client secret is read from a file or an environment variable
//!   (never from the drop-in), held in `Zeroizing` and the SDK's `Secret` type, and never
//!   logged nor put in errors or `Debug` output.
//!
//! Configuration (the drop-in's `[config]` table):
//!
//! ```toml
//! vault_url = "https://acme.vault.azure.net/"   # required, https
//! tenant_id = "<directory id>"                  # required
//! client_id = "<application id>"                # required
//! client_secret_file = "/etc/keybroker/azure-secret"   # exactly one of these two;
//! # client_secret_env = "KB_AZURE_CLIENT_SECRET"       # an inline client_secret is refused
//! authority_host = "https://login.microsoftonline.com" # default: Azure public cloud
//! # ca_file = "/etc/keybroker/extra-roots.pem"  # extra PEM roots to trust
//! operation_timeout_ms = 1500                   # per operation, retries included
//! create_timeout_ms = 30000                     # key creation (RSA generation takes seconds)
//! max_retries = 3                               # the SDK's exponential retry policy
//! # verify_challenge_resource = true            # off only for a test fake on 127.0.0.1
//! ```
//!
//! Tests run against the in-repo Key Vault fake (`tests/azure-fake`) with the real SDK:
//! `cargo test -p keybroker-plugin-azure-keyvault`.

mod backend;
mod config;
mod error;
mod export;
mod key_kind;
mod reference;
mod rsa_decrypt;
#[cfg(test)]
mod tests;

pub use backend::{
    new_backend, AzureKeyVaultBackend, FORMAT_EMPTY, FORMAT_WRAPPED, KEY_TAG, NAME, TENANT_TAG,
};
pub use config::{Config, DEFAULT_MAX_RETRIES, DEFAULT_OPERATION_TIMEOUT_MS};
pub use key_kind::MAX_WRAP_PAYLOAD;
pub use reference::created_key_name;
