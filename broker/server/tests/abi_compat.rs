//! Plugins built against earlier plugin ABIs keep working in this host. abi_stable's
//! layout check refuses a library whose vtable is shorter than the host's, so the host
//! tries the current ABI first and then the frozen earlier ones (`keybroker_plugin_abi::v5`,
//! `v4`, `v3`, `v2`, `v1`), wrapping such a backend so that the operations added since answer
//! "not supported".
//!
//! The fixtures are `tests/fixtures/testing-abi-v1` to `tests/fixtures/testing-abi-v5`, cargo
//! workspaces of their own, each holding a frozen copy of that ABI crate and the same small
//! AES-256-GCM plugin built against it. This test builds them with cargo (once per process),
//! then loads each `.so` through the real plugin host: a drop-in with the pinned SHA-256, the
//! host's permission checks, the verified copy under `<copies>/<sha256>.so`,
//! `lib_header_from_path(..)` and abi_stable's layout checks (the current ABI refuses the
//! plugin, its own ABI accepts it).
//!
//! The operations an old plugin has no vtable entry for (after the first ABI: `bind_key`,
//! `sign`, `verify`, `public_key`; after the second: `generate_data_key`; after the third:
//! `status`) must be answered with the ABI's `INVALID_REQUEST` "this backend plugin does not
//! support …" instead of crashing, and the instance keeps serving the rest. `name_tenant`
//! (after the third), which the host calls before the first call for each tenant, does
//! nothing for them. None of them reports `NONBLOCKING` (after the fourth), so the host calls
//! their blocking encrypt and decrypt entries. After the fifth: `export_private_key` and
//! `import_private_key` (`PRIVATE_KEY_TRANSFER`). The host refuses those itself for an
//! instance without that capability, so they are also checked on the backend as the host's
//! loader builds it (the frozen module's constructor and its `upgrade`): there they answer
//! the ABI's "not supported".
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::BTreeMap,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use keybroker_core::{
    backend::{BackendDecrypt, BackendEncrypt, BackendInstance, BackendSign, BackendVerify},
    seal::RootKey,
    store::Store,
    Error, Tenant, TenantId,
};
use keybroker_plugin_abi::{
    abi_stable::{
        library::lib_header_from_path,
        std_types::{RResult, RStr, RString, RVec},
    },
    capability, v1, v2, v3, v4, v5, BackendBox, CreateKeyRequest, DecryptRequest, EncryptRequest,
    ErrorKind, ImportKeyRequest, PluginError,
};
use keybroker_server::{
    metrics::BackendMetrics,
    plugin_host::{sha256_hex, HostSettings, Instance, PluginHost},
};
use keybroker_store::SqliteStore;
use zeroize::Zeroizing;

/// The earlier ABIs with a fixture: `tests/fixtures/testing-abi-<abi>` builds the same example
/// plugin against a frozen copy of that ABI.
const V1: &str = "v1";
const V2: &str = "v2";
const V3: &str = "v3";
const V4: &str = "v4";
const V5: &str = "v5";

/// A tenant as the edge resolves it: a fresh id and its name.
fn tenant(name: &str) -> Tenant {
    Tenant {
        id: TenantId::random(),
        name: Arc::from(name),
    }
}

fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|e| panic!("cannot resolve the repository root from {manifest:?}: {e}"))
}

/// Builds `tests/fixtures/testing-abi-<abi>` into `<repo>/target/abi-<abi>` once per process and
/// returns the plugin library. A failed build fails the test: it is never skipped.
fn old_plugin_library(abi: &'static str) -> PathBuf {
    static BUILT: Mutex<BTreeMap<&'static str, PathBuf>> = Mutex::new(BTreeMap::new());
    let mut built = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let library = built.entry(abi).or_insert_with(|| {
        let root = repo_root();
        let manifest = root.join(format!("tests/fixtures/testing-abi-{abi}/Cargo.toml"));
        let target_dir = root.join(format!("target/abi-{abi}"));
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let output = Command::new(&cargo)
            .arg("build")
            .arg("--locked")
            .arg("--manifest-path")
            .arg(&manifest)
            .arg("--target-dir")
            .arg(&target_dir)
            .env_remove("CARGO_TARGET_DIR")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cargo:?} to build the ABI {abi} fixture: {e}"));
        assert!(
            output.status.success(),
            "building the ABI {abi} fixture plugin failed ({cargo:?} build --locked --manifest-path {} \
             --target-dir {}): {}\n{}",
            manifest.display(),
            target_dir.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let library = target_dir
            .join("debug")
            .join(format!("libkeybroker_plugin_abi_{abi}_example.so"));
        assert!(
            library.is_file(),
            "the ABI {abi} fixture built, but {} is missing",
            library.display()
        );
        library
    });
    library.clone()
}

/// A host with one drop-in for the old plugin, loaded through `PluginHost::reload`.
struct Fixture {
    instance: String,
    host: PluginHost,
    copies: PathBuf,
    sha256: String,
    /// The drop-in's `[config]` table, as the JSON text the host gives the constructor.
    config: String,
    _dir: tempfile::TempDir,
}

fn private_dir(path: &Path) {
    std::fs::create_dir_all(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).unwrap();
}

async fn load_old_plugin(abi: &'static str) -> Fixture {
    let built = old_plugin_library(abi);
    let instance = format!("abi-{abi}");
    let dir = tempfile::tempdir().unwrap();
    private_dir(dir.path());
    let plugins = dir.path().join("plugins.d");
    let copies = dir.path().join("copies");
    private_dir(&plugins);

    // The library as an operator installs it: not writable by others, pinned by hash.
    let library = plugins.join(format!("{instance}.so"));
    std::fs::copy(&built, &library).unwrap();
    std::fs::set_permissions(&library, std::fs::Permissions::from_mode(0o644)).unwrap();
    let sha256 = sha256_hex(&std::fs::read(&library).unwrap());
    let key_b64 = STANDARD.encode(rand::random::<[u8; 32]>());
    let dropin = format!(
        "name = \"{instance}\"\nlibrary = \"{}\"\nsha256 = \"{sha256}\"\ntenants = [\"*\"]\n\
         timeout = \"10s\"\nconcurrency = 4\n[config]\nkey_b64 = \"{key_b64}\"\n",
        library.display()
    );
    std::fs::write(plugins.join(format!("{instance}.toml")), dropin).unwrap();

    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.path().join("store.db"))
            .await
            .unwrap(),
    );
    let root_key = Arc::new(RootKey::new(Zeroizing::new(rand::random::<[u8; 32]>())));
    let host = PluginHost::new(
        HostSettings {
            plugin_dir: Some(plugins),
            copies_dir: copies.clone(),
            builtin_local: false,
            cache_ttl: Duration::from_secs(60),
            cache_capacity: 16,
        },
        store,
        root_key,
        Arc::new(BackendMetrics::default()),
    );
    host.reload().await;
    Fixture {
        instance,
        host,
        copies,
        sha256,
        config: serde_json::json!({ "key_b64": key_b64 }).to_string(),
        _dir: dir,
    }
}

impl Fixture {
    fn instance(&self) -> Arc<Instance> {
        let reports = self.host.reports();
        let report = reports
            .iter()
            .find(|r| r.name == self.instance)
            .unwrap_or_else(|| panic!("no report for {}: {reports:?}", self.instance));
        assert_eq!(report.error, None, "drop-in refused: {report:?}");
        let instance = report.instance.clone().expect("instance");
        if let Some(reason) = instance.unavailable_reason() {
            panic!("the host must load a plugin built against an earlier ABI: {reason}");
        }
        instance
    }

    /// The host's verified copy of the library, named by its hash.
    fn verified_copy(&self) -> PathBuf {
        let copy = self.copies.join(format!("{}.so", self.sha256));
        assert!(
            copy.is_file(),
            "the host did not load from its verified copy {}",
            copy.display()
        );
        copy
    }

    /// abi_stable's layout checks, as the host's loader runs them on the verified copy: the
    /// current root module refuses the plugin and the frozen module of its own ABI accepts it.
    fn assert_loads_only_through_its_own_abi(&self, abi: &str) {
        let header = lib_header_from_path(&self.verified_copy()).unwrap();
        assert!(
            header
                .init_root_module::<keybroker_plugin_abi::PluginModRef>()
                .is_err(),
            "the current ABI must refuse a plugin built against ABI {abi}"
        );
        let accepted = match abi {
            V1 => header.init_root_module::<v1::PluginModRef>().is_ok(),
            V2 => header.init_root_module::<v2::PluginModRef>().is_ok(),
            V3 => header.init_root_module::<v3::PluginModRef>().is_ok(),
            V4 => header.init_root_module::<v4::PluginModRef>().is_ok(),
            V5 => header.init_root_module::<v5::PluginModRef>().is_ok(),
            other => panic!("no frozen module for ABI {other}"),
        };
        assert!(accepted, "the frozen {abi} module must accept its plugin");
    }

    /// A second backend from the verified copy, built as the host's loader builds one: the
    /// constructor of the frozen module of its ABI, the result seen through the current
    /// trait by that module's `upgrade`.
    fn upgraded_backend(&self, abi: &str) -> BackendBox {
        let header = lib_header_from_path(&self.verified_copy()).unwrap();
        let config = RStr::from_str(&self.config);
        let host = keybroker_plugin_conformance::RecordingHost::boxed;
        let backend = match abi {
            V1 => (header
                .init_root_module::<v1::PluginModRef>()
                .unwrap()
                .new_backend())(config, host())
            .map(v1::upgrade),
            V2 => (header
                .init_root_module::<v2::PluginModRef>()
                .unwrap()
                .new_backend())(config, host())
            .map(v2::upgrade),
            V3 => (header
                .init_root_module::<v3::PluginModRef>()
                .unwrap()
                .new_backend())(config, host())
            .map(v3::upgrade),
            V4 => (header
                .init_root_module::<v4::PluginModRef>()
                .unwrap()
                .new_backend())(config, host())
            .map(v4::upgrade),
            V5 => (header
                .init_root_module::<v5::PluginModRef>()
                .unwrap()
                .new_backend())(config, host())
            .map(v5::upgrade),
            other => panic!("no frozen module for ABI {other}"),
        };
        backend
            .into_result()
            .unwrap_or_else(|e| panic!("the ABI {abi} plugin's constructor failed: {e:?}"))
    }
}

fn encrypt_request<'a>(
    reference: &'a str,
    plaintext: &'a [u8],
    aad: &'a [u8],
) -> BackendEncrypt<'a> {
    BackendEncrypt {
        reference,
        plaintext,
        aad,
        iv: rand::random::<[u8; 12]>(),
    }
}

fn decrypt_request<'a>(
    reference: &'a str,
    ciphertext: &'a [u8],
    aad: &'a [u8],
) -> BackendDecrypt<'a> {
    BackendDecrypt {
        reference,
        ciphertext,
        aad,
    }
}

fn assert_invalid_request(result: Result<impl std::fmt::Debug, Error>, what: &str) {
    match result {
        Err(Error::InvalidRequest(message)) => assert!(!message.is_empty(), "{what}"),
        other => panic!("{what}: expected an invalid-request error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_plugin_built_against_the_first_abi_loads_and_serves() {
    serves(V1).await;
}

#[tokio::test]
async fn a_plugin_built_against_the_second_abi_loads_and_serves() {
    serves(V2).await;
}

#[tokio::test]
async fn a_plugin_built_against_the_third_abi_loads_and_serves() {
    serves(V3).await;
}

#[tokio::test]
async fn a_plugin_built_against_the_fourth_abi_loads_and_serves() {
    serves(V4).await;
}

#[tokio::test]
async fn a_plugin_built_against_the_fifth_abi_loads_and_serves() {
    serves(V5).await;
}

/// The old plugin works through every operation it has.
async fn serves(abi: &'static str) {
    let fixture = load_old_plugin(abi).await;
    let instance = fixture.instance();
    fixture.assert_loads_only_through_its_own_abi(abi);

    let info = instance.info().expect("info");
    assert_eq!(info.name.as_str(), "abi-v1-example");
    assert_eq!(info.version.as_str(), "abi-v1");
    assert_eq!(info.capabilities, capability::ENVELOPE | capability::DIRECT);
    assert_eq!(info.max_payload, 65536);
    assert!(instance.supports_direct());
    instance.check_health().await;
    assert_eq!(instance.unavailable_reason(), None, "health check failed");

    let acme = tenant("acme");
    let globex = tenant("globex");
    let reference = instance
        .create_key(&acme, "key-1", "aes256-gcm96")
        .await
        .unwrap();
    assert!(
        reference.starts_with(&format!("v1/{}/", acme.id)),
        "reference {reference}"
    );
    assert_invalid_request(
        instance.create_key(&acme, "key-2", "rsa-2048").await,
        "an asymmetric key type",
    );

    // Round trip with AAD; the AAD is authenticated.
    let plaintext = b"written by a host newer than the plugin";
    let ciphertext = instance
        .encrypt(&acme, encrypt_request(&reference, plaintext, b"context"))
        .await
        .unwrap();
    assert_eq!(ciphertext.len(), 12 + plaintext.len() + 16, "iv ‖ ct ‖ tag");
    let decrypted = instance
        .decrypt(&acme, decrypt_request(&reference, &ciphertext, b"context"))
        .await
        .unwrap();
    assert_eq!(decrypted.as_slice(), plaintext);
    assert_invalid_request(
        instance
            .decrypt(&acme, decrypt_request(&reference, &ciphertext, b"other"))
            .await,
        "decrypt with the wrong AAD",
    );

    // Another tenant can neither encrypt nor decrypt with acme's key.
    assert_invalid_request(
        instance
            .encrypt(&globex, encrypt_request(&reference, plaintext, b"context"))
            .await,
        "encrypt by the wrong tenant",
    );
    assert_invalid_request(
        instance
            .decrypt(
                &globex,
                decrypt_request(&reference, &ciphertext, b"context"),
            )
            .await,
        "decrypt by the wrong tenant",
    );

    // Batches go through the old vtable too, one result per item.
    let encrypted = instance
        .encrypt_batch(
            &acme,
            vec![
                encrypt_request(&reference, b"one", b"a"),
                encrypt_request(&reference, b"two", b"b"),
            ],
        )
        .await
        .unwrap();
    let blobs: Vec<Vec<u8>> = encrypted.into_iter().map(Result::unwrap).collect();
    let decrypted = instance
        .decrypt_batch(
            &acme,
            vec![
                decrypt_request(&reference, &blobs[0], b"a"),
                decrypt_request(&reference, &blobs[1], b"wrong"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(decrypted[0].as_ref().unwrap().as_slice(), b"one");
    assert!(matches!(decrypted[1], Err(Error::InvalidRequest(_))));

    instance.delete_key(&acme, &reference).await.unwrap();
}

/// The host's answer for an operation the plugin predates: a 400 saying so.
fn assert_host_not_supported(result: Result<impl std::fmt::Debug, Error>, what: &str) {
    match result {
        Err(Error::InvalidRequest(message)) => assert_eq!(
            message,
            format!("this backend plugin does not support {what}")
        ),
        other => panic!("{what}: expected \"not supported\", got {other:?}"),
    }
}

/// The host's refusal of an operation the instance does not offer, before any plugin call.
fn assert_host_refuses(result: Result<impl std::fmt::Debug, Error>, expected: &str) {
    match result {
        Err(Error::InvalidRequest(message)) => assert_eq!(message, expected),
        other => panic!("expected the host's refusal \"{expected}\", got {other:?}"),
    }
}

/// The ABI's own answer for an operation the plugin predates, as the upgraded backend gives
/// it to the host: `INVALID_REQUEST` saying so.
fn assert_abi_not_supported(result: RResult<impl std::fmt::Debug, PluginError>, what: &str) {
    match result.into_result() {
        Err(error) => {
            assert_eq!(error.kind, ErrorKind::INVALID_REQUEST, "{what}: {error:?}");
            assert_eq!(
                error.message.as_str(),
                format!("this backend plugin does not support {what}")
            );
        }
        Ok(other) => panic!("{what}: expected \"not supported\", got {other:?}"),
    }
}

#[tokio::test]
async fn operations_added_after_the_first_abi_answer_not_supported() {
    answers_not_supported(V1).await;
}

#[tokio::test]
async fn operations_added_after_the_second_abi_answer_not_supported() {
    // The example plugin implements none of the second ABI's additions either: through
    // that ABI's vtable they reach its own "not supported" defaults.
    answers_not_supported(V2).await;
}

#[tokio::test]
async fn operations_added_after_the_third_abi_answer_not_supported() {
    // Through the third ABI's vtable, `generate_data_key` too reaches the plugin's own
    // default; `status` and `name_tenant` are not in it at all.
    answers_not_supported(V3).await;
}

#[tokio::test]
async fn operations_added_after_the_fourth_abi_answer_not_supported() {
    // Through the fourth ABI's vtable, `status` reaches the plugin's own default too; the
    // batch start entries are not in it, and the host does not use them (no NONBLOCKING).
    answers_not_supported(V4).await;
}

#[tokio::test]
async fn operations_added_after_the_fifth_abi_answer_not_supported() {
    // Through the fifth ABI's vtable the batch start entries reach the plugin's own
    // defaults (no NONBLOCKING); private key export and import are not in it at all.
    answers_not_supported(V5).await;
}

/// Operations the plugin predates (or does not implement) answer "not supported" and the
/// instance keeps serving.
async fn answers_not_supported(abi: &'static str) {
    let fixture = load_old_plugin(abi).await;
    let instance = fixture.instance();
    fixture.assert_loads_only_through_its_own_abi(abi);
    assert!(!instance.supports_sign());
    assert!(!instance.supports_bind());
    // No live state to show: `sys/agents` skips the instance.
    assert_eq!(instance.status().await.unwrap(), None);

    // Every call below first tells the plugin the tenant's name (`name_tenant`), which it
    // predates: nothing happens, and the call goes through.
    let acme = tenant("acme");
    let reference = instance
        .create_key(&acme, "key-1", "aes256-gcm96")
        .await
        .unwrap();
    let sign = || BackendSign {
        reference: &reference,
        digest: &[0u8; 32],
        hash_algorithm: "sha2-256",
        signature_algorithm: "pss",
    };
    assert_host_not_supported(
        instance
            .bind_key(&acme, "key-2", "aes256-gcm96", "existing")
            .await,
        "binding existing keys",
    );
    assert_host_not_supported(instance.sign(&acme, sign()).await, "signing");
    assert_host_not_supported(
        instance
            .verify(
                &acme,
                BackendVerify {
                    sign: sign(),
                    signature: &[0u8; 256],
                },
            )
            .await,
        "verification",
    );
    assert_host_not_supported(instance.public_key(&acme, &reference).await, "public keys");
    assert!(!instance.supports_generate_data_key());
    assert_host_not_supported(
        instance
            .generate_data_key(&acme, &reference, b"binding")
            .await,
        "generating data keys",
    );
    // The instance keeps serving after those answers.
    let ciphertext = instance
        .encrypt(&acme, encrypt_request(&reference, b"after", b""))
        .await
        .unwrap();
    let plaintext = instance
        .decrypt(&acme, decrypt_request(&reference, &ciphertext, b""))
        .await
        .unwrap();
    assert_eq!(plaintext.as_slice(), b"after");
    // Private key export and import: the host never asks an instance without
    // PRIVATE_KEY_TRANSFER, and its plugin answers the ABI's "not supported" if asked.
    assert!(!instance.supports_private_key_transfer());
    assert_host_refuses(
        instance.export_private_key(&acme, &reference).await,
        &format!(
            "backend instance \"{}\" never hands out private keys",
            fixture.instance
        ),
    );
    assert_host_refuses(
        instance
            .import_private_key(&acme, "key-6", "ecdsa-p256", &[0x30, 0x00])
            .await,
        &format!(
            "backend instance \"{}\" does not take in private keys",
            fixture.instance
        ),
    );
    private_key_transfer_not_supported(&fixture, abi, &acme);
    // A tenant first seen after those answers is named and served too.
    let globex = tenant("globex");
    let other = instance
        .create_key(&globex, "key-3", "aes256-gcm96")
        .await
        .unwrap();
    let ciphertext = instance
        .encrypt(&globex, encrypt_request(&other, b"globex", b""))
        .await
        .unwrap();
    assert_eq!(
        instance
            .decrypt(&globex, decrypt_request(&other, &ciphertext, b""))
            .await
            .unwrap()
            .as_slice(),
        b"globex"
    );
    assert_eq!(instance.status().await.unwrap(), None);
    assert_eq!(instance.unavailable_reason(), None);
}

/// Private key export and import (after the fifth ABI) on the backend as the host's loader
/// builds it: the plugin reports no `PRIVATE_KEY_TRANSFER`, both calls answer the ABI's "not
/// supported" without crashing, and the backend keeps serving.
fn private_key_transfer_not_supported(fixture: &Fixture, abi: &str, tenant: &Tenant) {
    let backend = fixture.upgraded_backend(abi);
    let info = backend.info().into_result().unwrap();
    assert_eq!(info.capabilities & capability::PRIVATE_KEY_TRANSFER, 0);
    let tenant_id = || RString::from(tenant.id.to_string());
    let reference = backend
        .create_key(CreateKeyRequest {
            tenant_id: tenant_id(),
            key_id: RString::from("key-4"),
            key_type: RString::from("aes256-gcm96"),
        })
        .into_result()
        .unwrap()
        .reference;
    assert_abi_not_supported(
        backend.export_private_key(tenant_id(), reference.clone()),
        "exporting private keys",
    );
    assert_abi_not_supported(
        backend.import_private_key(ImportKeyRequest {
            tenant_id: tenant_id(),
            key_id: RString::from("key-5"),
            key_type: RString::from("ecdsa-p256"),
            pkcs8: RVec::from(vec![0x30, 0x00]),
        }),
        "importing private keys",
    );
    let ciphertext = backend
        .encrypt(EncryptRequest {
            tenant_id: tenant_id(),
            key_reference: reference.clone(),
            plaintext: RVec::from(b"after transfer".to_vec()),
            aad: RVec::new(),
            iv: RVec::new(),
        })
        .into_result()
        .unwrap();
    let plaintext = backend
        .decrypt(DecryptRequest {
            tenant_id: tenant_id(),
            key_reference: reference,
            ciphertext,
            aad: RVec::new(),
        })
        .into_result()
        .unwrap();
    assert_eq!(plaintext.as_slice(), b"after transfer");
}
