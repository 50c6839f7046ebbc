//! Calling into the plugin: every call within the instance's bulkhead and deadline, started
//! from the async thread on a [`capability::NONBLOCKING`] plugin or run on a blocking thread
//! on others; batch answers checked for length and zeroized when unused; plugin errors mapped
//! to the broker's, with metrics around every call.

use std::{
    future::Future,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use abi_stable::std_types::{RResult, RVec};
use keybroker_core::{Error, Tenant};
use keybroker_plugin_abi::{
    capability, BackendBox, BatchDone, BatchDoneBox, BatchDone_TO, BatchItem, ErrorKind,
    PluginError,
};
use tokio::sync::{oneshot, OwnedSemaphorePermit};
use zeroize::Zeroize;

use super::{requests::Naming, Instance};

/// The host's side of a batch started on a [`capability::NONBLOCKING`] plugin: hands the
/// results to the waiting call, and holds the call's bulkhead permit until the plugin
/// completes or drops it, however long after the caller gave up.
struct Completion {
    sender: Mutex<Option<oneshot::Sender<RVec<BatchItem>>>>,
    _permit: OwnedSemaphorePermit,
}

impl BatchDone for Completion {
    fn complete(&self, results: RVec<BatchItem>) {
        let sender = self
            .sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let unwanted = match sender {
            Some(sender) => sender.send(results).err(),
            None => Some(results),
        };
        // Late (the call timed out) or a second completion: decrypted plaintexts go nowhere.
        if let Some(mut unwanted) = unwanted {
            zeroize_results(&mut unwanted);
        }
    }
}

/// Zeroizes the bytes of a batch answer that will not be used (they may be plaintexts).
fn zeroize_results(results: &mut RVec<BatchItem>) {
    for item in results.iter_mut() {
        if let RResult::ROk(bytes) = item {
            bytes.as_mut_slice().zeroize();
        }
    }
}

impl Instance {
    /// Whether encryptions and decryptions are started on the async threads.
    fn nonblocking(&self) -> bool {
        self.has_capability(capability::NONBLOCKING)
    }

    /// A plugin answering a batch with another number of results than it was given is
    /// broken: nothing of its answer is used (plaintexts are zeroized).
    fn check_batch_len(
        &self,
        operation: &'static str,
        expected: usize,
        results: &mut RVec<BatchItem>,
    ) -> Result<(), Error> {
        if results.len() == expected {
            return Ok(());
        }
        zeroize_results(results);
        self.metrics
            .count_failed_call(&self.settings.name, operation);
        Err(Error::internal(format!(
            "backend instance \"{}\" answered {operation} with {} results for {expected} requests",
            self.settings.name,
            results.len()
        )))
    }

    /// Calls the plugin on a blocking thread, within the bulkhead and the deadline. With a
    /// tenant, the plugin first learns its name if it has not yet.
    pub(super) async fn call<T, F>(
        &self,
        operation: &'static str,
        tenant: Option<&Tenant>,
        f: F,
    ) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&BackendBox) -> RResult<T, PluginError> + Send + 'static,
    {
        self.call_within(operation, self.settings.timeout, tenant, f)
            .await
    }

    /// [`Instance::call`] with another deadline.
    pub(super) async fn call_within<T, F>(
        &self,
        operation: &'static str,
        timeout: Duration,
        tenant: Option<&Tenant>,
        f: F,
    ) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&BackendBox) -> RResult<T, PluginError> + Send + 'static,
    {
        self.dispatch(
            operation,
            timeout,
            tenant,
            move |backend, naming, permit| {
                let task = tokio::task::spawn_blocking(move || {
                    // The permit is released only when the plugin returns, however long it hangs.
                    let _permit = permit;
                    if let Some(naming) = naming {
                        naming.tell(&backend);
                    }
                    f(&backend)
                });
                async move { task.await.map_err(|join| join.to_string()) }
            },
        )
        .await
    }

    /// Starts a batch on a [`capability::NONBLOCKING`] plugin from this async thread (no
    /// blocking thread per call) and waits for its completion, within the bulkhead and the
    /// deadline, as [`Instance::call`].
    async fn start_batch<F>(
        &self,
        operation: &'static str,
        tenant: &Tenant,
        start: F,
    ) -> Result<RVec<BatchItem>, Error>
    where
        F: FnOnce(&BackendBox, BatchDoneBox),
    {
        self.dispatch(
            operation,
            self.settings.timeout,
            Some(tenant),
            move |backend, naming, permit| {
                let (sender, receiver) = oneshot::channel();
                let done = BatchDone_TO::from_value(
                    Completion {
                        sender: Mutex::new(Some(sender)),
                        _permit: permit,
                    },
                    abi_stable::sabi_trait::TD_Opaque,
                );
                if let Some(naming) = naming {
                    naming.tell(&backend);
                }
                start(&backend, done);
                async move {
                    receiver
                        .await
                        .map(RResult::ROk)
                        .map_err(|_| "the plugin dropped the call without completing it".to_owned())
                }
            },
        )
        .await
    }

    /// One encryption or decryption: started as a one-request batch on a
    /// [`capability::NONBLOCKING`] plugin, a blocking call on others.
    pub(super) async fn single<R: Send + 'static>(
        &self,
        operation: &'static str,
        tenant: &Tenant,
        request: R,
        start: fn(&BackendBox, RVec<R>, BatchDoneBox),
        blocking: fn(&BackendBox, R) -> RResult<RVec<u8>, PluginError>,
    ) -> Result<RVec<u8>, Error> {
        if !self.nonblocking() {
            return self
                .call(operation, Some(tenant), move |b| blocking(b, request))
                .await;
        }
        let mut results = self
            .start_batch(operation, tenant, move |b, done| {
                start(b, RVec::from(vec![request]), done)
            })
            .await?;
        self.check_batch_len(operation, 1, &mut results)?;
        match results.pop() {
            Some(RResult::ROk(bytes)) => Ok(bytes),
            Some(RResult::RErr(error)) => {
                self.metrics
                    .count_failed_call(&self.settings.name, operation);
                Err(map_plugin_error(&self.settings.name, operation, error))
            }
            None => Err(self.unavailable()),
        }
    }

    /// A batch of encryptions or decryptions, started on a [`capability::NONBLOCKING`]
    /// plugin, a blocking call on others; one result per request or an error.
    pub(super) async fn batch<R: Send + 'static>(
        &self,
        operation: &'static str,
        tenant: &Tenant,
        batch: RVec<R>,
        start: fn(&BackendBox, RVec<R>, BatchDoneBox),
        blocking: fn(&BackendBox, RVec<R>) -> RVec<BatchItem>,
    ) -> Result<RVec<BatchItem>, Error> {
        let expected = batch.len();
        let mut results = if self.nonblocking() {
            self.start_batch(operation, tenant, move |b, done| start(b, batch, done))
                .await?
        } else {
            self.call(operation, Some(tenant), move |b| {
                RResult::ROk(blocking(b, batch))
            })
            .await?
        };
        self.check_batch_len(operation, expected, &mut results)?;
        Ok(results)
    }

    /// The bulkhead, the deadline, error mapping and metrics around one plugin call: `run`
    /// gets the backend, the tenant naming still due and the permit, and returns what the
    /// plugin answered (`Err` when the call itself failed: a panic, a dropped completion).
    async fn dispatch<T, R, Fut>(
        &self,
        operation: &'static str,
        timeout: Duration,
        tenant: Option<&Tenant>,
        run: R,
    ) -> Result<T, Error>
    where
        R: FnOnce(Arc<BackendBox>, Option<Naming>, OwnedSemaphorePermit) -> Fut,
        Fut: Future<Output = Result<RResult<T, PluginError>, String>>,
    {
        let backend = self.backend.clone().ok_or_else(|| self.unavailable())?;
        let naming = tenant.and_then(|tenant| self.naming(tenant));
        let name = &self.settings.name;
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + timeout;
        let outcome = async {
            let permit = tokio::time::timeout_at(deadline, self.permits.clone().acquire_owned())
                .await
                .map_err(|_| {
                    Error::Unavailable(format!(
                        "backend instance \"{name}\" is saturated: no free slot within {timeout:?}"
                    ))
                })?
                .map_err(|_| self.unavailable())?;
            match tokio::time::timeout_at(deadline, run(backend, naming, permit)).await {
                Err(_) => Err(Error::Unavailable(format!(
                    "backend instance \"{name}\" did not answer within {timeout:?}"
                ))),
                Ok(Err(failure)) => Err(Error::internal(format!(
                    "backend instance \"{name}\" call failed: {failure}"
                ))),
                Ok(Ok(RResult::ROk(value))) => Ok(value),
                Ok(Ok(RResult::RErr(error))) => Err(map_plugin_error(name, operation, error)),
            }
        }
        .await;
        self.metrics
            .observe(name, operation, started.elapsed(), outcome.is_ok());
        outcome
    }
}

/// Maps a plugin error to the broker's error kinds.
pub(crate) fn map_plugin_error(instance: &str, operation: &str, error: PluginError) -> Error {
    let message = error.message.to_string();
    match error.kind {
        ErrorKind::INVALID_REQUEST
        | ErrorKind::KEY_NOT_FOUND
        | ErrorKind::INVALID_CIPHERTEXT
        | ErrorKind::PAYLOAD_TOO_LARGE
        | ErrorKind::INVALID_CONFIG => Error::InvalidRequest(message),
        ErrorKind::ACCESS_DENIED => Error::BackendDenied(message),
        ErrorKind::UNAVAILABLE => Error::Unavailable(format!(
            "backend instance \"{instance}\" is unavailable: {message}"
        )),
        _ => Error::internal(format!(
            "backend instance \"{instance}\" failed in {operation}: {message}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use keybroker_core::backend::{BackendDecrypt, BackendInstance};
    use keybroker_plugin_abi::{
        into_ffi, not_supported, Backend, BackendInfo, BatchCompletion, CreateKeyRequest,
        DecryptRequest, EncryptRequest, KeyHandle,
    };

    use super::super::tests::{encrypt, settings, tenant};
    use super::super::InstanceSettings;
    use super::*;
    use crate::metrics::BackendMetrics;

    /// Batches a [`Deferred`] plugin has started and not completed: the requests' plaintexts
    /// (or ciphertexts) and the completion.
    type Held = Arc<Mutex<Vec<(Vec<Vec<u8>>, BatchCompletion)>>>;

    /// A `NONBLOCKING` plugin that holds every batch it is given until the test completes
    /// it, recording the thread each start ran on.
    struct Deferred {
        held: Held,
        threads: Arc<Mutex<Vec<std::thread::ThreadId>>>,
    }

    impl Deferred {
        fn hold(&self, items: Vec<Vec<u8>>, done: BatchCompletion) {
            self.threads
                .lock()
                .unwrap()
                .push(std::thread::current().id());
            self.held.lock().unwrap().push((items, done));
        }
    }

    impl Backend for Deferred {
        fn info(&self) -> BackendInfo {
            BackendInfo {
                name: "deferred".into(),
                version: "1".into(),
                capabilities: capability::DIRECT | capability::NONBLOCKING,
                max_payload: 1024,
            }
        }
        fn create_key(&self, _: CreateKeyRequest) -> Result<KeyHandle, PluginError> {
            Err(not_supported("keys"))
        }
        fn encrypt(&self, _: EncryptRequest) -> Result<Vec<u8>, PluginError> {
            Err(PluginError::internal("the host must start batches instead"))
        }
        fn decrypt(&self, _: DecryptRequest) -> Result<Vec<u8>, PluginError> {
            Err(PluginError::internal("the host must start batches instead"))
        }
        fn health(&self) -> Result<(), PluginError> {
            Ok(())
        }
        fn encrypt_batch_start(&self, requests: Vec<EncryptRequest>, done: BatchCompletion) {
            let items = requests.into_iter().map(|r| r.plaintext.into_vec());
            self.hold(items.collect(), done);
        }
        fn decrypt_batch_start(&self, requests: Vec<DecryptRequest>, done: BatchCompletion) {
            let items = requests.into_iter().map(|r| r.ciphertext.into_vec());
            self.hold(items.collect(), done);
        }
    }

    /// A deadline no call of these tests reaches unless the test means it to: the plugin
    /// completes from the test, which a loaded machine may delay by whole seconds.
    const PATIENT: Duration = Duration::from_secs(60);

    /// A loaded `Deferred` instance with this deadline and 2 permits.
    fn deferred(
        timeout: Duration,
    ) -> (Arc<Instance>, Held, Arc<Mutex<Vec<std::thread::ThreadId>>>) {
        let settings = InstanceSettings {
            timeout,
            concurrency: 2,
            ..settings()
        };
        let (_, cache, availability) = Instance::prepare(&settings, Duration::from_secs(60), 16);
        let held = Held::default();
        let threads = Arc::default();
        let backend = into_ffi(Deferred {
            held: held.clone(),
            threads: Arc::clone(&threads),
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
        (Arc::new(instance), held, threads)
    }

    /// Waits until the plugin holds `count` batches, then takes them.
    async fn take_held(held: &Held, count: usize) -> Vec<(Vec<Vec<u8>>, BatchCompletion)> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if held.lock().unwrap().len() >= count {
                return held.lock().unwrap().drain(..).collect();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!(
            "the plugin was given {} batches in 30 s, not {count}",
            held.lock().unwrap().len()
        );
    }

    #[tokio::test]
    async fn a_nonblocking_plugin_is_started_on_the_async_thread_and_completes_from_its_own() {
        let (instance, held, threads) = deferred(PATIENT);
        let acme = tenant("acme");
        let call = tokio::spawn({
            let instance = instance.clone();
            let acme = acme.clone();
            async move {
                let requests = vec![encrypt("ref"), encrypt("ref")];
                instance.encrypt_batch(&acme, requests).await
            }
        });
        let mut batches = take_held(&held, 1).await;
        let (items, done) = batches.pop().unwrap();
        assert_eq!(items, vec![b"data".to_vec(), b"data".to_vec()]);
        // Completed from a thread of the plugin's own, as a gateway's reader would.
        std::thread::spawn(move || {
            done.complete(vec![
                Ok(b"one".to_vec()),
                Err(PluginError::invalid_ciphertext("bad")),
            ])
        })
        .join()
        .unwrap();
        let results = call.await.unwrap().unwrap();
        assert_eq!(results[0].as_ref().unwrap(), b"one");
        assert!(matches!(&results[1], Err(Error::InvalidRequest(m)) if m == "bad"));
        // The single-request form goes through the same entry; no blocking thread ran it.
        let single = tokio::spawn({
            let instance = instance.clone();
            async move { instance.encrypt(&acme, encrypt("ref")).await }
        });
        let (_, done) = take_held(&held, 1).await.pop().unwrap();
        done.complete(vec![Err(PluginError::unavailable("no agent"))]);
        assert!(matches!(
            single.await.unwrap(),
            Err(Error::Unavailable(m)) if m.ends_with("is unavailable: no agent")
        ));
        let test_thread = std::thread::current().id();
        assert!(threads.lock().unwrap().iter().all(|t| *t == test_thread));
    }

    #[tokio::test]
    async fn a_started_call_holds_its_permit_until_the_plugin_completes_or_drops_it() {
        // The deadline is the fault under test here: the plugin never answers these calls.
        let (instance, held, _) = deferred(Duration::from_millis(300));
        let acme = tenant("acme");
        let decrypt = |instance: Arc<Instance>, acme: Tenant| async move {
            let request = BackendDecrypt {
                reference: "ref",
                ciphertext: b"sealed",
                aad: b"",
            };
            instance.decrypt(&acme, request).await
        };
        // Two calls the plugin never answers: each gives up at the deadline...
        let (first, second) = tokio::join!(
            decrypt(instance.clone(), acme.clone()),
            decrypt(instance.clone(), acme.clone())
        );
        for result in [first, second] {
            assert!(
                matches!(&result, Err(Error::Unavailable(m)) if m.contains("did not answer")),
                "{result:?}"
            );
        }
        // ...but their permits stay taken while the plugin holds them: the bulkhead is full.
        let saturated = decrypt(instance.clone(), acme.clone()).await;
        assert!(
            matches!(&saturated, Err(Error::Unavailable(m)) if m.contains("saturated")),
            "{saturated:?}"
        );
        // A late completion goes nowhere (its plaintext is zeroized) and frees its permit; a
        // dropped one frees the other.
        let mut late = take_held(&held, 2).await;
        late.pop()
            .unwrap()
            .1
            .complete(vec![Ok(b"plaintext".to_vec())]);
        drop(late);
        // Both permits are free again: the next call reaches the plugin (however it ends).
        let call = tokio::spawn(decrypt(instance.clone(), acme.clone()));
        drop(take_held(&held, 1).await);
        let _ = call.await.unwrap();
        // The plugin completes the next calls from the test: an instance whose deadline the
        // test cannot reach, however slowly it runs.
        let (instance, held, _) = deferred(PATIENT);
        let call = tokio::spawn(decrypt(instance.clone(), acme.clone()));
        let (_, done) = take_held(&held, 1).await.pop().unwrap();
        drop(done);
        assert!(matches!(
            call.await.unwrap(),
            Err(Error::Internal { context: m, .. }) if m.contains("dropped the call")
        ));
        // A completion with the wrong number of results is refused whole.
        let call = tokio::spawn(decrypt(instance.clone(), acme.clone()));
        let (_, done) = take_held(&held, 1).await.pop().unwrap();
        done.complete(vec![Ok(b"a".to_vec()), Ok(b"b".to_vec())]);
        assert!(matches!(
            call.await.unwrap(),
            Err(Error::Internal { context: m, .. }) if m.contains("2 results for 1 requests")
        ));
    }
}
