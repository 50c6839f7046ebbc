//! What the instance asks of its plugin for itself: the health check (recorded in its
//! availability) and the plugin's live state for operators.

use abi_stable::std_types::RResult;
use keybroker_core::{backend::OnUnavailable, Error};
use keybroker_plugin_abi::ErrorKind;

use super::{map_plugin_error, Instance};

impl Instance {
    /// Runs the plugin's health check (under the same bulkhead and deadline) and records it.
    pub async fn check_health(&self) {
        if self.backend.is_none() {
            return;
        }
        let result = self.call("health", None, |backend| backend.health()).await;
        let reason = result.err().map(|e| e.to_string());
        if let Some(reason) = &reason {
            tracing::warn!(instance = %self.settings.name, %reason, "backend health check failed");
            if self.settings.on_unavailable == OnUnavailable::Evict {
                self.cache.purge_all();
            }
        }
        self.availability.record_health(reason);
    }

    /// The plugin's live state for operators (`BackendPlugin::status`), under the same
    /// bulkhead and deadline as other calls: `None` when the plugin keeps none (it answers
    /// "not supported"), is not loaded, or answers something other than a JSON object (an
    /// error, logged).
    pub async fn status(&self) -> Result<Option<serde_json::Value>, Error> {
        if self.backend.is_none() {
            return Ok(None);
        }
        // The plugin's error is inspected here, before it is mapped: only its own "not
        // supported" (INVALID_REQUEST) means that there is no status.
        let answer = self
            .call("status", None, |backend| RResult::ROk(backend.status()))
            .await?;
        let text = match answer {
            RResult::ROk(text) => text,
            RResult::RErr(error) if error.kind == ErrorKind::INVALID_REQUEST => return Ok(None),
            RResult::RErr(error) => {
                self.metrics
                    .count_failed_call(&self.settings.name, "status");
                return Err(map_plugin_error(&self.settings.name, "status", error));
            }
        };
        match serde_json::from_str::<serde_json::Value>(text.as_str()) {
            Ok(value @ serde_json::Value::Object(_)) => Ok(Some(value)),
            Ok(_) => {
                tracing::error!(instance = %self.settings.name, "backend status is not a JSON object; ignored");
                Ok(None)
            }
            Err(error) => {
                tracing::error!(instance = %self.settings.name, %error, "backend status is not JSON; ignored");
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use keybroker_plugin_abi::{not_supported, PluginError};

    use super::super::tests::instance;
    use super::*;

    #[tokio::test]
    async fn status_is_the_plugins_json_object_or_none() {
        let (reporting, _, _) = instance(Ok(r#"{"agents":[{"id":"dc1"}]}"#.to_owned()));
        assert_eq!(
            reporting.status().await.unwrap(),
            Some(serde_json::json!({"agents": [{"id": "dc1"}]}))
        );
        let (silent, _, _) = instance(Err(not_supported("status")));
        assert_eq!(silent.status().await.unwrap(), None);
        let (garbled, _, _) = instance(Ok("agents: none".to_owned()));
        assert_eq!(garbled.status().await.unwrap(), None, "not JSON");
        let (listed, _, _) = instance(Ok("[]".to_owned()));
        assert_eq!(listed.status().await.unwrap(), None, "not an object");
        let (failing, _, _) = instance(Err(PluginError::unavailable("no agent")));
        assert!(matches!(
            failing.status().await,
            Err(Error::Unavailable(message)) if message.contains("no agent")
        ));
    }
}
