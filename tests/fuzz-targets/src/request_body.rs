//! Request bodies (`broker/server/src/http/body.rs` and the wire structs of every handler)
//! and Vault's lenient field decoding (`broker/server/src/http/input.rs`): numbers or numeric
//! strings, booleans in Vault's spellings, durations (`"1h"`), comma-separated lists,
//! objects given as JSON text.

use keybroker_server::http::fuzzing::{
    self, opt_bool, opt_duration_secs, opt_object, opt_string_list, opt_u64, present,
    MAX_DURATION_SECS,
};
use serde_json::Value;

/// Decodes `data` as the body of every handler, then each of its fields with every lenient
/// decoder.
pub fn request_body(data: &[u8]) {
    let accepted = fuzzing::request_body(data);
    let trimmed = data.trim_ascii();
    if trimmed.is_empty() || trimmed == b"null" {
        // No body is `{}`, which every handler takes.
        assert_eq!(accepted, fuzzing::request_body(b"{}"));
    } else if !trimmed.starts_with(b"{") {
        // Only JSON objects are bodies.
        assert_eq!(accepted, 0);
    }
    match serde_json::from_slice::<Value>(data) {
        Ok(Value::Object(fields)) => fields.into_values().for_each(lenient),
        Ok(value) => lenient(value),
        Err(_) => {}
    }
}

/// Every decoder on one field value; what a decoder accepts, it accepts again in its
/// canonical form.
fn lenient(value: Value) {
    if let Ok(Some(number)) = opt_u64(value.clone()) {
        assert_eq!(opt_u64(Value::from(number)).ok(), Some(Some(number)));
        assert_eq!(
            opt_u64(Value::from(number.to_string())).ok(),
            Some(Some(number))
        );
    }
    if let Ok(Some(flag)) = opt_bool(value.clone()) {
        assert_eq!(
            opt_bool(Value::from(flag.to_string())).ok(),
            Some(Some(flag))
        );
    }
    if let Ok(Some(seconds)) = opt_duration_secs(value.clone()) {
        // Every expiry computed from it stays a date (a secret-id's `expiration_time`).
        assert!(seconds <= MAX_DURATION_SECS, "{seconds}");
        assert_eq!(
            opt_duration_secs(Value::from(seconds)).ok(),
            Some(Some(seconds))
        );
        assert_eq!(
            opt_duration_secs(Value::from(seconds.to_string())).ok(),
            Some(Some(seconds))
        );
    }
    if let Ok(Some(list)) = opt_string_list(value.clone()) {
        for item in &list {
            assert!(!item.is_empty() && item.trim() == item, "{item:?}");
        }
        let again = Value::from(list.clone());
        assert_eq!(opt_string_list(again).ok(), Some(Some(list.clone())));
        if list.iter().all(|item| !item.contains(',')) {
            let joined = Value::from(list.join(","));
            assert_eq!(opt_string_list(joined).ok(), Some(Some(list)));
        }
    }
    if let Ok(Some(object)) = opt_object(value.clone()) {
        let text = Value::from(Value::Object(object.clone()).to_string());
        assert_eq!(opt_object(text).ok(), Some(Some(object)));
    }
    let _ = present(value);
}
