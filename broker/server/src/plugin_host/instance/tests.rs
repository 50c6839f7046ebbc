//! Fixtures for the instance's unit tests (a recording plugin, a loaded instance of it,
//! tenants and requests), and the tests about the whole instance.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use keybroker_core::{
    backend::{BackendDecrypt, BackendEncrypt, BackendInstance, OnUnavailable},
    Error, Tenant, TenantId,
};
use keybroker_plugin_abi::{
    capability, into_ffi, not_supported, Backend, BackendInfo, CreateKeyRequest, DecryptRequest,
    EncryptRequest, KeyHandle, PluginError,
};

use super::{HostHandle, Instance, InstanceSettings};
use crate::metrics::BackendMetrics;

/// What the host told the plugin, in order: `name <id> <name>` and `<operation> <id>`.
pub(super) type Journal = Arc<Mutex<Vec<String>>>;

/// A plugin recording the calls it gets; `status` answers `status` as given.
struct Recording {
    journal: Journal,
    status: Result<String, PluginError>,
}

impl Recording {
    fn record(&self, entry: String) {
        self.journal.lock().unwrap().push(entry);
    }
}

impl Backend for Recording {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            name: "recording".into(),
            version: "1".into(),
            capabilities: capability::ENVELOPE,
            max_payload: 1024,
        }
    }
    fn create_key(&self, request: CreateKeyRequest) -> Result<KeyHandle, PluginError> {
        self.record(format!("create_key {}", request.tenant_id));
        Ok(KeyHandle {
            reference: "ref".into(),
        })
    }
    fn encrypt(&self, request: EncryptRequest) -> Result<Vec<u8>, PluginError> {
        self.record(format!("encrypt {}", request.tenant_id));
        Ok(request.plaintext.into_vec())
    }
    fn decrypt(&self, request: DecryptRequest) -> Result<Vec<u8>, PluginError> {
        self.record(format!("decrypt {}", request.tenant_id));
        Ok(request.ciphertext.into_vec())
    }
    fn health(&self) -> Result<(), PluginError> {
        Ok(())
    }
    fn status(&self) -> Result<String, PluginError> {
        self.status.clone()
    }
    fn name_tenant(&self, tenant_id: &str, tenant_name: &str) {
        self.record(format!("name {tenant_id} {tenant_name}"));
    }
}

pub(super) fn settings() -> InstanceSettings {
    InstanceSettings {
        name: "acme-agent".to_owned(),
        tenants: vec!["*".to_owned()],
        timeout: Duration::from_secs(5),
        create_timeout: Duration::from_secs(5),
        concurrency: 4,
        on_unavailable: OnUnavailable::Evict,
        bind: BTreeMap::new(),
    }
}

/// A loaded instance of `Recording`, its journal and its host handle.
pub(super) fn instance(status: Result<String, PluginError>) -> (Instance, Journal, HostHandle) {
    let settings = settings();
    let (handle, cache, availability) = Instance::prepare(&settings, Duration::from_secs(60), 16);
    let journal = Journal::default();
    let backend = into_ffi(Recording {
        journal: journal.clone(),
        status,
    });
    let info = backend.info().unwrap();
    let instance = Instance::loaded(
        settings,
        backend,
        info,
        cache,
        availability,
        Arc::new(BackendMetrics::default()),
    );
    (instance, journal, handle)
}

pub(super) fn tenant(name: &str) -> Tenant {
    Tenant {
        id: TenantId::random(),
        name: Arc::from(name),
    }
}

pub(super) fn encrypt(reference: &str) -> BackendEncrypt<'_> {
    BackendEncrypt {
        reference,
        plaintext: b"data",
        aad: b"",
        iv: [0; 12],
    }
}

pub(super) fn unavailable_message(instance: &Instance) -> String {
    match instance.check_available("") {
        Err(Error::Unavailable(message)) => message,
        other => panic!("expected unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn the_plugin_learns_each_tenants_name_once_before_its_first_call() {
    let (instance, journal, _) = instance(Err(not_supported("status")));
    let acme = tenant("acme");
    let globex = tenant("globex");
    let reference = instance
        .create_key(&acme, "k", "aes256-gcm96")
        .await
        .unwrap();
    instance.encrypt(&acme, encrypt(&reference)).await.unwrap();
    instance
        .decrypt_batch(
            &globex,
            vec![BackendDecrypt {
                reference: &reference,
                ciphertext: b"x",
                aad: b"",
            }],
        )
        .await
        .unwrap();
    instance
        .encrypt(&Tenant::root(), encrypt(&reference))
        .await
        .unwrap();
    instance
        .encrypt(&globex, encrypt(&reference))
        .await
        .unwrap();
    let (acme, globex, root) = (acme.id, globex.id, TenantId::ROOT);
    assert_eq!(
        *journal.lock().unwrap(),
        vec![
            format!("name {acme} acme"),
            format!("create_key {acme}"),
            format!("encrypt {acme}"),
            format!("name {globex} globex"),
            format!("decrypt {globex}"),
            format!("name {root} root"),
            format!("encrypt {root}"),
            format!("encrypt {globex}"),
        ]
    );
}
