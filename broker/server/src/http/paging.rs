//! OpenBao's paginated LIST (OpenBao API: "paginated lists", `after` and `limit`): the keys
//! sorted, those after `after` (strictly), at most `limit` of them. Vault has no such
//! parameters. OpenBao takes them on the engines' and auth methods' LISTs (transit `keys`,
//! approle and jwt `role`: so do we), not on `sys/policies/acl` or `auth/token/accessors`,
//! which ignore them, as ours do.

use std::collections::HashMap;

use super::error::ApiError;

/// The page of `keys` that the request's `after` and `limit` ask for (all of them when
/// neither is given; a `limit` of zero or less is no limit, as in OpenBao). A `limit` that
/// is not an integer is refused with a 400.
pub(super) fn page(
    mut keys: Vec<String>,
    query: &HashMap<String, String>,
) -> Result<Vec<String>, ApiError> {
    let limit = match query.get("limit").map(|text| text.trim()) {
        None => None,
        Some(text) => match text.parse::<i64>() {
            Ok(limit) => usize::try_from(limit).ok().filter(|&limit| limit > 0),
            Err(_) => {
                return Err(ApiError::bad_request(format!(
                    "invalid limit {text:?}: expected an integer"
                )))
            }
        },
    };
    keys.sort();
    if let Some(after) = query.get("after").filter(|after| !after.is_empty()) {
        keys.retain(|key| key.as_str() > after.as_str());
    }
    if let Some(limit) = limit {
        keys.truncate(limit);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn pages_follow_after_and_limit() {
        let keys = || vec!["c".to_owned(), "a".to_owned(), "b".to_owned()];
        assert_eq!(page(keys(), &query(&[])).unwrap(), ["a", "b", "c"]);
        assert_eq!(page(keys(), &query(&[("after", "a")])).unwrap(), ["b", "c"]);
        assert_eq!(
            page(keys(), &query(&[("after", "a"), ("limit", "1")])).unwrap(),
            ["b"]
        );
        assert_eq!(
            page(keys(), &query(&[("limit", "-1")])).unwrap(),
            ["a", "b", "c"]
        );
        assert_eq!(
            page(keys(), &query(&[("limit", "0")])).unwrap(),
            ["a", "b", "c"]
        );
        assert!(page(keys(), &query(&[("after", "c")])).unwrap().is_empty());
        for bad in ["x", "", "1.5"] {
            assert!(page(keys(), &query(&[("limit", bad)])).is_err(), "{bad:?}");
        }
    }
}
