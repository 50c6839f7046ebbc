//! The KV engine's request bodies and answers, as Vault's KV API pages give them
//! ([KV v2](https://openbao.org/api-docs/secret/kv/kv-v2/),
//! [KV v1](https://openbao.org/api-docs/secret/kv/kv-v1/)).

use std::collections::BTreeMap;

use keybroker_core::engines::kv::{
    KvConfig, MetadataUpdate, SecretMetadata, VersionMetadata, Written,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::http::{body, error::ApiError};

/// `POST/PATCH data/:path`: `{"data": {...}, "options": {"cas": N}}`.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct DataBody {
    pub(super) data: Option<Value>,
    #[serde(deserialize_with = "body::opt_object")]
    pub(super) options: Option<Map<String, Value>>,
}

impl DataBody {
    /// The `data` object; "no data provided" when missing, as Vault says.
    pub(super) fn data(&self) -> Result<&Map<String, Value>, ApiError> {
        match &self.data {
            Some(Value::Object(map)) => Ok(map),
            None | Some(Value::Null) => Err(ApiError::bad_request("no data provided")),
            Some(_) => Err(ApiError::bad_request(
                "failed to parse JSON input: data must be a JSON object",
            )),
        }
    }

    /// `options.cas`, a number or a numeric string (Vault's weak decoding).
    pub(super) fn cas(&self) -> Result<Option<u64>, ApiError> {
        let Some(cas) = self.options.as_ref().and_then(|o| o.get("cas")) else {
            return Ok(None);
        };
        match cas {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            Value::Null => return Ok(None),
            _ => None,
        }
        .map(Some)
        .ok_or_else(|| ApiError::bad_request("error parsing check-and-set parameter"))
    }
}

/// `delete/`, `undelete/`, `destroy/`: `{"versions": [1, 2]}` (numbers, numeric strings, or
/// one comma-separated string).
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct VersionsBody {
    versions: Option<Value>,
}

impl VersionsBody {
    pub(super) fn versions(&self) -> Result<Vec<u64>, ApiError> {
        let bad = || ApiError::bad_request("versions must be a list of version numbers");
        let number = |v: &Value| match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        let versions = match &self.versions {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| number(v).ok_or_else(bad))
                .collect::<Result<_, _>>()?,
            Some(Value::String(s)) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().map_err(|_| bad()))
                .collect::<Result<_, _>>()?,
            Some(Value::Number(n)) => vec![n.as_u64().ok_or_else(bad)?],
            Some(_) => return Err(bad()),
        };
        if versions.is_empty() {
            return Err(ApiError::bad_request("no version number provided"));
        }
        Ok(versions)
    }
}

/// `POST/PATCH metadata/:path`.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct MetadataBody {
    #[serde(deserialize_with = "body::opt_u32")]
    max_versions: Option<u32>,
    #[serde(deserialize_with = "body::opt_bool")]
    cas_required: Option<bool>,
    #[serde(deserialize_with = "body::opt_duration_secs")]
    delete_version_after: Option<u64>,
    #[serde(deserialize_with = "body::opt_object")]
    custom_metadata: Option<Map<String, Value>>,
}

impl MetadataBody {
    /// The update it asks for; `patch` keeps a `null` value (it removes its key).
    pub(super) fn update(self, patch: bool) -> Result<MetadataUpdate, ApiError> {
        let custom_metadata = match self.custom_metadata {
            None => None,
            Some(map) => {
                let mut out = BTreeMap::new();
                for (key, value) in map {
                    let text = match value {
                        Value::Null if patch => None,
                        Value::Null => Some(String::new()),
                        Value::String(s) => Some(s),
                        Value::Number(n) => Some(n.to_string()),
                        Value::Bool(b) => Some(b.to_string()),
                        _ => {
                            return Err(ApiError::bad_request(format!(
                                "custom_metadata validation failed: value for key {key:?} must be a string"
                            )))
                        }
                    };
                    out.insert(key, text);
                }
                Some(out)
            }
        };
        Ok(MetadataUpdate {
            max_versions: self.max_versions,
            cas_required: self.cas_required,
            delete_version_after: self.delete_version_after,
            custom_metadata,
        })
    }
}

/// `POST config`.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct ConfigBody {
    #[serde(deserialize_with = "body::opt_u32")]
    max_versions: Option<u32>,
    #[serde(deserialize_with = "body::opt_bool")]
    cas_required: Option<bool>,
    #[serde(deserialize_with = "body::opt_duration_secs")]
    delete_version_after: Option<u64>,
}

impl ConfigBody {
    pub(super) fn apply(self, mut config: KvConfig) -> KvConfig {
        if let Some(max) = self.max_versions {
            config.max_versions = max;
        }
        if let Some(cas) = self.cas_required {
            config.cas_required = cas;
        }
        if let Some(after) = self.delete_version_after {
            config.delete_version_after = after;
        }
        config
    }
}

/// Unix nanoseconds as Go's RFC 3339 with nanoseconds (trailing zeros dropped), as Vault
/// writes KV times.
pub(super) fn time(nanos: i64) -> String {
    let nanos = u128::try_from(nanos).unwrap_or(0);
    let seconds = u64::try_from(nanos / 1_000_000_000).unwrap_or(0);
    let fraction = u32::try_from(nanos % 1_000_000_000).unwrap_or(0);
    let whole = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds),
    )
    .to_string();
    if fraction == 0 {
        return whole;
    }
    let digits = format!("{fraction:09}");
    let digits = digits.trim_end_matches('0');
    match whole.strip_suffix('Z') {
        Some(base) => format!("{base}.{digits}Z"),
        None => whole,
    }
}

/// Seconds as Go's `time.Duration.String()` (`0s`, `1m30s`, `1h0m0s`), as Vault reports
/// `delete_version_after`.
pub(super) fn go_duration(seconds: u64) -> String {
    let (hours, minutes, secs) = (seconds / 3600, (seconds % 3600) / 60, seconds % 60);
    if hours > 0 {
        format!("{hours}h{minutes}m{secs}s")
    } else if minutes > 0 {
        format!("{minutes}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

/// A version's metadata as a read or write answers it.
pub(super) fn version_json(written: &Written) -> Value {
    let VersionMetadata {
        version,
        created_time,
        deletion_time,
        destroyed,
    } = &written.metadata;
    json!({
        "version": version,
        "created_time": time(*created_time),
        "deletion_time": deletion_time.map(time).unwrap_or_default(),
        "destroyed": destroyed,
        "custom_metadata": written.custom_metadata,
    })
}

/// A secret's metadata, as `metadata/:path` reads it.
pub(super) fn metadata_json(metadata: &SecretMetadata) -> Value {
    let versions: Map<String, Value> = metadata
        .versions
        .values()
        .map(|v| {
            (
                v.version.to_string(),
                json!({
                    "created_time": time(v.created_time),
                    "deletion_time": v.deletion_time.map(time).unwrap_or_default(),
                    "destroyed": v.destroyed,
                }),
            )
        })
        .collect();
    json!({
        "cas_required": metadata.cas_required,
        "created_time": time(metadata.created_time),
        "current_metadata_version": metadata.metadata_version,
        "current_version": metadata.current_version,
        "custom_metadata": metadata.custom_metadata,
        "delete_version_after": go_duration(metadata.delete_version_after),
        "max_versions": metadata.max_versions,
        // OpenBao's check-and-set of metadata writes, which keybroker does not require.
        "metadata_cas_required": false,
        "oldest_version": metadata.oldest_version,
        "updated_time": time(metadata.updated_time),
        "versions": versions,
    })
}

/// The mount's `config`, as read.
pub(super) fn config_json(config: &KvConfig) -> Value {
    json!({
        "cas_required": config.cas_required,
        "delete_version_after": go_duration(config.delete_version_after),
        "max_versions": config.max_versions,
        "metadata_cas_required": false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations_read_as_in_go() {
        assert_eq!(
            time(1_521_685_446_945_319_214),
            "2018-03-22T02:24:06.945319214Z"
        );
        assert_eq!(time(1_521_685_446_100_000_000), "2018-03-22T02:24:06.1Z");
        assert_eq!(time(1_521_685_446_000_000_000), "2018-03-22T02:24:06Z");
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(90), "1m30s");
        assert_eq!(go_duration(3600), "1h0m0s");
    }

    #[test]
    fn versions_and_cas_decode_leniently() {
        let body: VersionsBody = serde_json::from_value(json!({"versions": ["1", 2]})).unwrap();
        assert_eq!(body.versions().unwrap(), vec![1, 2]);
        let body: VersionsBody = serde_json::from_value(json!({"versions": "3,4"})).unwrap();
        assert_eq!(body.versions().unwrap(), vec![3, 4]);
        let body: VersionsBody = serde_json::from_value(json!({})).unwrap();
        assert!(body.versions().is_err());
        let body: DataBody =
            serde_json::from_value(json!({"data": {}, "options": {"cas": "0"}})).unwrap();
        assert_eq!(body.cas().unwrap(), Some(0));
        let body: DataBody = serde_json::from_value(json!({"options": {"cas": "x"}})).unwrap();
        assert!(body.cas().is_err() && body.data().is_err());
    }
}
