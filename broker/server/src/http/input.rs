//! Lenient decoding of request fields, as Vault's field decoding does: the `bao` CLI sends
//! every `key=value` as a string (`token_ttl="1h"`, `bound_audiences="a,b"`), API clients
//! send JSON numbers, lists and objects. The wire structs of every handler decode with these
//! (through [`super::body`]); the core only ever sees the decoded values.

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// What kind of JSON value this is, for error messages (never the value itself).
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
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| {
            serde::de::Error::custom(format!("expected a non-negative integer, got {n}"))
        }),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| {
            serde::de::Error::custom(format!("expected a non-negative integer, got {s:?}"))
        }),
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected a non-negative integer, got {}",
            describe(&other)
        ))),
    }
}

/// A signed integer given as a number or a numeric string (a field where Vault gives a
/// negative value a message of its own).
pub(super) fn opt_i64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("expected an integer, got {n}"))),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("expected an integer, got {s:?}"))),
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected an integer, got {}",
            describe(&other)
        ))),
    }
}

/// A boolean given as a boolean, `0`/`1`, or `"true"`/`"false"`/`"1"`/`"0"`.
pub fn opt_bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
    match Option::<Value>::deserialize(deserializer)? {
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

/// Longest duration accepted, in seconds: what a Vault duration (Go's `time.Duration`, signed
/// 64-bit nanoseconds) holds, about 292 years. A longer one is refused: it would be carried
/// into expiry times that no date format shows (`expiration_time` of a secret-id with
/// `ttl=18446744073709551615` was a panic).
pub const MAX_DURATION_SECS: u64 = 9_223_372_036;

/// A duration in seconds: a number, a numeric string, or a string like `"1h"` or `"90s"`; at
/// most [`MAX_DURATION_SECS`].
pub fn opt_duration_secs<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u64>, D::Error> {
    let seconds = match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .ok_or_else(|| serde::de::Error::custom(format!("expected a duration, got {n}")))?,
        Some(Value::String(s)) => {
            let s = s.trim();
            if s.is_empty() {
                return Ok(None);
            }
            match s.parse::<u64>() {
                Ok(seconds) => seconds,
                Err(_) => {
                    let duration = humantime::parse_duration(s).map_err(|_| {
                        serde::de::Error::custom(format!(
                            "expected a duration like \"1h\", got {s:?}"
                        ))
                    })?;
                    if duration.subsec_nanos() != 0 {
                        return Err(serde::de::Error::custom(format!(
                            "{s:?} is not a whole number of seconds"
                        )));
                    }
                    duration.as_secs()
                }
            }
        }
        Some(other) => {
            return Err(serde::de::Error::custom(format!(
                "expected a duration, got {}",
                describe(&other)
            )))
        }
    };
    if seconds > MAX_DURATION_SECS {
        return Err(serde::de::Error::custom(format!(
            "a duration of {seconds} seconds is longer than the longest accepted, \
             {MAX_DURATION_SECS} seconds"
        )));
    }
    Ok(Some(seconds))
}

/// A list of strings given as a JSON list or as a comma-separated string (Vault's
/// `TypeCommaStringSlice`). Entries are trimmed; empty entries are dropped.
pub fn opt_string_list<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<String>>, D::Error> {
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(
            text.split(',')
                .map(|item| item.trim().to_owned())
                .filter(|item| !item.is_empty())
                .collect(),
        )),
        Some(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(text) if text.trim().is_empty() => {}
                    Value::String(text) => out.push(text.trim().to_owned()),
                    other => {
                        return Err(serde::de::Error::custom(format!(
                            "expected a list of strings, got {} in the list",
                            describe(&other)
                        )))
                    }
                }
            }
            Ok(Some(out))
        }
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected a list of strings or a comma-separated string, got {}",
            describe(&other)
        ))),
    }
}

/// A JSON object, given as an object or as a string holding one (`bound_claims=@file.json`
/// from the CLI); an empty string is an empty object.
pub fn opt_object<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Map<String, Value>>, D::Error> {
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(Value::String(text)) if text.trim().is_empty() => Ok(Some(Map::new())),
        Some(Value::String(text)) => match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(map)) => Ok(Some(map)),
            _ => Err(serde::de::Error::custom(
                "expected a JSON object (or a string holding one)",
            )),
        },
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected a JSON object, got {}",
            describe(&other)
        ))),
    }
}

/// Whether a field was given a non-empty value (for fields we refuse but never keep, such as
/// `oidc_client_secret`: its value is dropped at once).
pub fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    Ok(match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.trim().is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(_) => true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Default, Debug)]
    #[serde(default)]
    struct Sample {
        #[serde(deserialize_with = "opt_u64")]
        uses: Option<u64>,
        #[serde(deserialize_with = "opt_bool")]
        flag: Option<bool>,
        #[serde(deserialize_with = "opt_duration_secs")]
        ttl: Option<u64>,
        #[serde(deserialize_with = "opt_string_list")]
        list: Option<Vec<String>>,
        #[serde(deserialize_with = "opt_object")]
        object: Option<Map<String, Value>>,
        #[serde(deserialize_with = "present")]
        secret: bool,
    }

    fn parse(text: &str) -> Result<Sample, serde_json::Error> {
        serde_json::from_str(text)
    }

    #[test]
    fn vault_forms_are_accepted() {
        let s = parse(
            r#"{"uses":"3","flag":"true","ttl":"1h","list":"a, b,,c","object":"{\"k\":\"v\"}","secret":"x"}"#,
        )
        .unwrap();
        assert_eq!(s.uses, Some(3));
        assert_eq!(s.flag, Some(true));
        assert_eq!(s.ttl, Some(3600));
        assert_eq!(s.list.unwrap(), ["a", "b", "c"]);
        assert_eq!(s.object.unwrap()["k"], "v");
        assert!(s.secret);

        let s =
            parse(r#"{"uses":4,"flag":0,"ttl":90,"list":["x"," y "],"object":{"a":1}}"#).unwrap();
        assert_eq!((s.uses, s.flag, s.ttl), (Some(4), Some(false), Some(90)));
        assert_eq!(s.list.unwrap(), ["x", "y"]);
        assert!(!s.secret);

        let s = parse(r#"{"ttl":"","list":"","object":"","secret":""}"#).unwrap();
        assert_eq!(s.ttl, None);
        assert_eq!(s.list.unwrap(), Vec::<String>::new());
        assert!(s.object.unwrap().is_empty());
        assert!(!s.secret);
    }

    #[test]
    fn bad_forms_are_refused() {
        for body in [
            r#"{"uses":-1}"#,
            r#"{"uses":"x"}"#,
            r#"{"flag":"maybe"}"#,
            r#"{"ttl":"soon"}"#,
            r#"{"ttl":"1.5s"}"#,
            r#"{"ttl":9223372037}"#,
            r#"{"ttl":"18446744073709551615"}"#,
            r#"{"ttl":"300y"}"#,
            r#"{"list":[1]}"#,
            r#"{"list":{"a":1}}"#,
            r#"{"object":"[1]"}"#,
            r#"{"object":[1]}"#,
        ] {
            assert!(parse(body).is_err(), "{body}");
        }
    }
}
