//! Request bodies: JSON objects whose fields are read leniently, as Vault's field decoding
//! does (the `bao` CLI sends every `key=value` as a string: `key_version="2"`). Unknown
//! fields are ignored, as Vault ignores them.

use bytes::Bytes;
use serde::{de::DeserializeOwned, Deserialize, Deserializer};
use serde_json::Value;

use super::error::ApiError;

/// Parses a body into `T`; an empty body, or JSON `null` (`bao write -f`), is `{}`.
pub fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    let trimmed = body.trim_ascii();
    let text: &[u8] = if trimmed.is_empty() || trimmed == b"null" {
        b"{}"
    } else {
        body
    };
    if !text.trim_ascii_start().starts_with(b"{") {
        return Err(ApiError::bad_request(
            "failed to parse JSON input: the body must be a JSON object",
        ));
    }
    // The error names the field at fault (`token_period: expected a duration …`).
    serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(text))
        .map_err(|e| ApiError::bad_request(format!("failed to parse JSON input: {e}")))
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// An unsigned integer given as a number or a numeric string.
pub fn opt_u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    let value = Option::<Value>::deserialize(deserializer)?;
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| {
            serde::de::Error::custom(format!("expected a non-negative integer, got {n}"))
        }),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| {
            serde::de::Error::custom(format!("expected a non-negative integer, got {s:?}"))
        }),
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected a non-negative integer, got {}",
            describe(&other)
        ))),
    }
}

/// A `u32` given as a number or a numeric string.
pub fn opt_u32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    opt_u64(deserializer)?
        .map(|v| {
            u32::try_from(v).map_err(|_| serde::de::Error::custom(format!("{v} is too large")))
        })
        .transpose()
}

/// A boolean given as a boolean or `"true"`/`"false"`/`"1"`/`"0"`.
pub fn opt_bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
    let value = Option::<Value>::deserialize(deserializer)?;
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(Value::Number(n)) if n.as_u64() == Some(0) => Ok(Some(false)),
        Some(Value::Number(n)) if n.as_u64() == Some(1) => Ok(Some(true)),
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "t" | "yes" => Ok(Some(true)),
            "false" | "0" | "f" | "no" | "" => Ok(Some(false)),
            _ => Err(serde::de::Error::custom(format!(
                "expected a boolean, got {s:?}"
            ))),
        },
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected a boolean, got {}",
            describe(&other)
        ))),
    }
}

/// A duration in seconds: a number, a numeric string, or a string like `"1h"` or `"90m"`.
pub fn opt_duration_secs<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u64>, D::Error> {
    let value = Option::<Value>::deserialize(deserializer)?;
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("expected a duration, got {n}"))),
        Some(Value::String(s)) => {
            let s = s.trim();
            if s.is_empty() {
                return Ok(None);
            }
            if let Ok(seconds) = s.parse::<u64>() {
                return Ok(Some(seconds));
            }
            let duration = humantime::parse_duration(s).map_err(|_| {
                serde::de::Error::custom(format!("expected a duration like \"1h\", got {s:?}"))
            })?;
            if duration.subsec_nanos() != 0 {
                return Err(serde::de::Error::custom(format!(
                    "{s:?} is not a whole number of seconds"
                )));
            }
            Ok(Some(duration.as_secs()))
        }
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected a duration, got {}",
            describe(&other)
        ))),
    }
}

/// A list of objects, given as a JSON list or as a string holding one (`batch_input=@f.json`).
pub fn opt_list<'de, D, T>(deserializer: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    let value = Option::<Value>::deserialize(deserializer)?;
    let value = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => serde_json::from_str(&s)
            .map_err(|e| serde::de::Error::custom(format!("expected a JSON list: {e}")))?,
        Some(value) => value,
    };
    serde_json::from_value(value)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Default, Debug)]
    #[serde(default)]
    struct Sample {
        #[serde(deserialize_with = "opt_u32")]
        version: Option<u32>,
        #[serde(deserialize_with = "opt_bool")]
        flag: Option<bool>,
        #[serde(deserialize_with = "opt_duration_secs")]
        period: Option<u64>,
    }

    #[test]
    fn strings_and_numbers_are_both_accepted() {
        let s: Sample = parse(&Bytes::from_static(
            br#"{"version":"2","flag":"true","period":"1h","extra":1}"#,
        ))
        .unwrap();
        assert_eq!(
            (s.version, s.flag, s.period),
            (Some(2), Some(true), Some(3600))
        );
        let s: Sample = parse(&Bytes::from_static(
            br#"{"version":3,"flag":false,"period":60}"#,
        ))
        .unwrap();
        assert_eq!(
            (s.version, s.flag, s.period),
            (Some(3), Some(false), Some(60))
        );
        let s: Sample = parse(&Bytes::from_static(b"")).unwrap();
        assert_eq!(s.version, None);
    }

    #[test]
    fn bad_values_are_clear_errors() {
        for body in [
            r#"{"version":"x"}"#,
            r#"{"version":-1}"#,
            r#"{"flag":"maybe"}"#,
            r#"{"period":"soon"}"#,
            "{",
            "[]",
        ] {
            let error = parse::<Sample>(&Bytes::copy_from_slice(body.as_bytes())).unwrap_err();
            assert!(
                error.to_string().starts_with("failed to parse JSON input"),
                "{body}: {error}"
            );
        }
    }
}
