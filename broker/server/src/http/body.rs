//! Request bodies: JSON objects whose fields are read leniently, as Vault's field decoding
//! does (the `bao` CLI sends every `key=value` as a string: `key_version="2"`). Unknown
//! fields are ignored, as Vault ignores them.

use bytes::Bytes;
use serde::{de::DeserializeOwned, Deserialize, Deserializer};
use serde_json::Value;

use super::error::ApiError;
pub(super) use super::input::{
    opt_bool, opt_duration_secs, opt_i64, opt_object, opt_string_list, opt_u64, present,
};

/// Parses a body into `T`; an empty body, or JSON `null` (`bao write -f`), is `{}`.
pub(super) fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
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

/// A `u32` given as a number or a numeric string.
pub(super) fn opt_u32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    opt_u64(deserializer)?
        .map(|v| {
            u32::try_from(v).map_err(|_| serde::de::Error::custom(format!("{v} is too large")))
        })
        .transpose()
}

/// A list of objects, given as a JSON list or as a string holding one (`batch_input=@f.json`).
pub(super) fn opt_list<'de, D, T>(deserializer: D) -> Result<Option<Vec<T>>, D::Error>
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
