//! Errors of policy parsing, policy names and request paths.

/// Why a policy, a policy name or a request path was refused. Every variant is a user error
/// (HTTP 400, or a start-up error naming the file): the text says where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The text is not valid HCL.
    #[error("line {line}, column {column}: invalid HCL: {message}")]
    Syntax {
        /// One-based line of the error.
        line: usize,
        /// One-based column of the error.
        column: usize,
        /// What the HCL parser expected.
        message: String,
    },
    /// A key or block the policy language does not have (at the top level when `pattern` is
    /// `None`, else inside that `path` block).
    #[error("line {line}: {}unknown {what} `{key}`", in_path(.pattern))]
    UnknownKey {
        /// One-based line of the key.
        line: usize,
        /// The `path` block the key is in, if any.
        pattern: Option<String>,
        /// "key" or "block".
        what: &'static str,
        /// The key as written.
        key: String,
    },
    /// A Vault policy key that this broker does not enforce, refused so that nobody
    /// believes it is enforced.
    #[error("line {line}: path \"{pattern}\": `{key}` is not supported by keybroker")]
    Unsupported {
        /// One-based line of the key.
        line: usize,
        /// The `path` block the key is in.
        pattern: String,
        /// The key as written.
        key: String,
    },
    /// A capability name Vault does not have (or that keybroker does not support).
    #[error("line {line}: path \"{pattern}\": invalid capability \"{capability}\"")]
    InvalidCapability {
        /// One-based line of the capability.
        line: usize,
        /// The `path` block it is in.
        pattern: String,
        /// The name as written.
        capability: String,
    },
    /// A `path` pattern that is malformed (bad glob, `..`, `//`, `%`...).
    #[error("line {line}: path \"{pattern}\": {reason}")]
    InvalidPattern {
        /// One-based line of the `path` block.
        line: usize,
        /// The pattern as written (escaped for display).
        pattern: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A value of the wrong shape (`capabilities` not a list of strings, a legacy `policy`
    /// value Vault does not know, a block without labels...).
    #[error("line {line}: {}{reason}", in_path(.pattern))]
    InvalidValue {
        /// One-based line of the value.
        line: usize,
        /// The `path` block it is in, if any.
        pattern: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// A policy name outside Vault's rules, or a reserved one.
    #[error("invalid policy name \"{name}\": {reason}")]
    InvalidName {
        /// The name as given (escaped for display).
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A request path that is not in canonical form.
    #[error("invalid request path: {reason}")]
    InvalidRequestPath {
        /// What is wrong with it.
        reason: &'static str,
    },
}

fn in_path(pattern: &Option<String>) -> String {
    match pattern {
        Some(pattern) => format!("path \"{pattern}\": "),
        None => String::new(),
    }
}
