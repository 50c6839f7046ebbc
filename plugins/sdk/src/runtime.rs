//! The instance's own Tokio runtime, for plugins whose service SDKs are async: the ABI's
//! entry points are blocking (no futures cross the ABI; the host calls them from its
//! blocking pool with a deadline), so each operation is a `block_on` of the SDK's future,
//! bounded by the instance's operation timeout.

use std::{future::Future, time::Duration};

use keybroker_plugin_abi::PluginError;

/// A multi-threaded Tokio runtime owned by one instance. Dropping a runtime the usual way
/// blocks until its threads stop, which panics when the host drops the instance from async
/// code (and a panic in a drop across the ABI aborts): this one shuts down in the
/// background instead.
#[derive(Debug)]
pub struct BlockingRuntime {
    runtime: Option<tokio::runtime::Runtime>,
    name: &'static str,
}

impl BlockingRuntime {
    /// Starts a runtime of two worker threads named `name` (the plugin's name, also the
    /// prefix of its errors).
    pub fn new(name: &'static str) -> Result<Self, PluginError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(name)
            .enable_all()
            .build()
            .map_err(|error| {
                PluginError::internal(format!("{name}: cannot start a Tokio runtime: {error}"))
            })?;
        Ok(Self {
            runtime: Some(runtime),
            name,
        })
    }

    /// Runs `future` to completion on the runtime, blocking the calling thread.
    pub fn block_on<F: Future>(&self, future: F) -> Result<F::Output, PluginError> {
        match &self.runtime {
            Some(runtime) => Ok(runtime.block_on(future)),
            None => Err(PluginError::internal(format!(
                "{}: the runtime is gone",
                self.name
            ))),
        }
    }

    /// [`Self::block_on`] with a deadline: `Ok(None)` when `timeout` passed first (the
    /// future is dropped then).
    pub fn block_on_within<F: Future>(
        &self,
        timeout: Duration,
        future: F,
    ) -> Result<Option<F::Output>, PluginError> {
        // The timer must be made inside the runtime.
        Ok(self
            .block_on(async move { tokio::time::timeout(timeout, future).await })?
            .ok())
    }
}

impl Drop for BlockingRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn runs_futures_within_a_deadline_and_drops_from_async_code() {
        let runtime = BlockingRuntime::new("sdk-test").unwrap();
        assert_eq!(runtime.block_on(async { 1 }).unwrap(), 1);
        assert_eq!(
            runtime
                .block_on_within(Duration::from_secs(60), async { 2 })
                .unwrap(),
            Some(2)
        );
        let never = std::future::pending::<()>();
        assert_eq!(
            runtime
                .block_on_within(Duration::from_millis(10), never)
                .unwrap(),
            None
        );
        let host = tokio::runtime::Runtime::new().unwrap();
        host.block_on(async move { drop(runtime) });
    }
}
