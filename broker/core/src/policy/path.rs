//! Rule patterns and request paths: validation and the one canonical form.

use super::PolicyError;

/// A validated rule pattern, classified as Vault's ACL stores it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Pattern {
    /// No wildcard: matches exactly this path.
    Exact(String),
    /// Ends in `*` and has no `+` segment: matches every path starting with this prefix.
    Prefix(String),
    /// Has at least one `+` segment (and may end in `*`): the pattern as written.
    SegmentWildcard(String),
}

impl Pattern {
    /// Validates a pattern as written in a `path` block and classifies it. One leading `/`
    /// is dropped, as Vault does.
    pub(crate) fn parse(written: &str) -> Result<Pattern, &'static str> {
        let pattern = written.strip_prefix('/').unwrap_or(written);
        if pattern.is_empty() {
            return Err("the pattern is empty");
        }
        check_characters(pattern)?;
        if let Some(position) = pattern.find('*') {
            if position != pattern.len() - 1 {
                return Err("`*` is allowed only as the last character");
            }
        }
        let mut has_segment_wildcard = false;
        let last = pattern.split('/').count() - 1;
        for (index, segment) in pattern.split('/').enumerate() {
            if segment.is_empty() && index != last {
                return Err("empty path segment (`//`)");
            }
            if segment == "+" {
                has_segment_wildcard = true;
            } else if segment.contains('+') {
                return Err("`+` is allowed only as a whole segment (`a/+/b`)");
            }
            if segment == "." || segment == ".." {
                return Err("`.` and `..` segments are not allowed");
            }
        }
        Ok(if has_segment_wildcard {
            Pattern::SegmentWildcard(pattern.to_owned())
        } else if let Some(prefix) = pattern.strip_suffix('*') {
            Pattern::Prefix(prefix.to_owned())
        } else {
            Pattern::Exact(pattern.to_owned())
        })
    }

    /// The pattern in Vault's written form (without a leading `/`).
    pub(crate) fn as_written(&self) -> String {
        match self {
            Pattern::Exact(path) | Pattern::SegmentWildcard(path) => path.clone(),
            Pattern::Prefix(prefix) => format!("{prefix}*"),
        }
    }
}

fn check_characters(path: &str) -> Result<(), &'static str> {
    for byte in path.bytes() {
        match byte {
            0x00..=0x1f | 0x7f => return Err("control characters are not allowed"),
            0x80..=0xff => return Err("non-ASCII characters are not allowed"),
            b'%' => return Err("percent-escapes (`%`) are not allowed"),
            b'\\' => return Err("backslashes are not allowed"),
            _ => {}
        }
    }
    Ok(())
}

/// The canonical form of a request path (the part after `/v1/`, namespace prefix removed),
/// used both for the policy check and for routing, so the two can never disagree.
///
/// One leading `/` is dropped and the case is kept (paths are case-sensitive, as in Vault).
/// Refused: an empty path, `.` and `..` segments, empty segments (`//`), percent-escapes of
/// any kind, backslashes, control characters and non-ASCII characters. A trailing `/` is
/// kept: it is how a list request is written.
pub fn canonicalize_request_path(raw: &str) -> Result<String, PolicyError> {
    let invalid = |reason| PolicyError::InvalidRequestPath { reason };
    let path = raw.strip_prefix('/').unwrap_or(raw);
    if path.is_empty() {
        return Err(invalid("the path is empty"));
    }
    check_characters(path).map_err(invalid)?;
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len() - 1;
    for (index, segment) in segments.iter().enumerate() {
        match *segment {
            "." | ".." => return Err(invalid("`.` and `..` segments are not allowed")),
            // Only the final segment may be empty: a trailing slash.
            "" if index != last => return Err(invalid("empty path segment (`//`)")),
            _ => {}
        }
    }
    Ok(path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_classified_as_vault_does() {
        assert_eq!(
            Pattern::parse("/transit/keys"),
            Ok(Pattern::Exact("transit/keys".into()))
        );
        assert_eq!(
            Pattern::parse("transit/encrypt/app-*"),
            Ok(Pattern::Prefix("transit/encrypt/app-".into()))
        );
        assert_eq!(Pattern::parse("*"), Ok(Pattern::Prefix(String::new())));
        assert_eq!(
            Pattern::parse("transit/+/app/*"),
            Ok(Pattern::SegmentWildcard("transit/+/app/*".into()))
        );
        assert_eq!(
            Pattern::parse("+"),
            Ok(Pattern::SegmentWildcard("+".into()))
        );
        assert_eq!(
            Pattern::parse("a/").map(|p| p.as_written()),
            Ok("a/".to_owned())
        );
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in [
            "", "/", "a/*/b", "a*b", "**", "a/+*", "a/b+", "a/+b/c", "a//b", "//a", "a/../b",
            "a/./b", "..", "a/%2e%2e", "a\\b", "a\u{0}b", "a\nb", "a/é", "a\u{7f}",
        ] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn canonical_request_paths() {
        assert_eq!(
            canonicalize_request_path("/transit/encrypt/k"),
            Ok("transit/encrypt/k".into())
        );
        assert_eq!(
            canonicalize_request_path("transit/keys/"),
            Ok("transit/keys/".into())
        );
        // Case is kept: `Transit/...` is another path, never folded onto `transit/...`.
        assert_eq!(
            canonicalize_request_path("Transit/Keys"),
            Ok("Transit/Keys".into())
        );
    }

    #[test]
    fn non_canonical_request_paths_are_refused() {
        for bad in [
            "",
            "/",
            "//transit/keys",
            "transit//keys",
            "transit/keys//",
            "transit/../sys/seal",
            "transit/./keys",
            "..",
            ".",
            "transit/%2e%2e/sys",
            "transit%2fkeys",
            "transit/keys%00",
            "transit/%2E",
            "transit\\keys",
            "transit/keys\u{0}",
            "transit/keys\r\n",
            "transit/k\u{7f}",
            "transit/ключ",
            "transit/ｋeys",
        ] {
            assert!(
                matches!(
                    canonicalize_request_path(bad),
                    Err(PolicyError::InvalidRequestPath { .. })
                ),
                "{bad:?} was accepted"
            );
        }
    }
}
