//! XKS proxy API v1 §GetKeyMetadata and §GetHealthStatus.

use keybroker_agent_protocol::xks::{
    EkmFleetDetail, GetKeyMetadataResponse, HealthResponse, HealthStatus, KeySpec, KeyStatus,
    KeyUsage,
};

/// Every key the agent holds, in memory or in its HSM, is an enabled AES-256 key for encrypt
/// and decrypt (an HSM key was checked to be one when it was bound at start).
pub(super) fn key_metadata() -> GetKeyMetadataResponse {
    GetKeyMetadataResponse {
        key_spec: KeySpec::Aes256,
        key_usage: vec![KeyUsage::Encrypt, KeyUsage::Decrypt],
        key_status: KeyStatus::Enabled,
    }
}

/// The agent names itself; its one "key manager" is its own key store, active while it
/// answers. Nothing about keys or tenants is said.
pub(super) fn health(agent_id: &str) -> HealthResponse {
    HealthResponse {
        xks_proxy_fleet_size: 1,
        xks_proxy_vendor: "keybroker".to_owned(),
        xks_proxy_model: format!("keybroker-agent {}", env!("CARGO_PKG_VERSION")),
        ekm_vendor: "keybroker".to_owned(),
        ekm_fleet_details: vec![EkmFleetDetail {
            id: agent_id.to_owned(),
            model: "keybroker-agent key store (AES-256)".to_owned(),
            health_status: HealthStatus::Active,
        }],
    }
}
