//! Vault HCL policies → [`Policy`], and policy names.

use std::collections::HashMap;
use std::ops::Range;

use hcl::edit::expr::Expression;
use hcl::edit::structure::{Attribute, Block, BlockLabel, Structure};
use hcl::edit::Span;

use super::path::Pattern;
use super::{Capabilities, Capability, PolicyError};

/// A parsed ACL policy: its canonical name and its rules, one per distinct pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    name: String,
    rules: Vec<Rule>,
}

impl Policy {
    /// The canonical (lowercase) name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The rules, in the order their patterns first appear; a pattern written twice is one
    /// merged rule.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
}

/// One `path "<pattern>" { capabilities = [...] }` block (merged with any other block for
/// the identical pattern in the same policy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub(crate) pattern: Pattern,
    pub(crate) capabilities: Capabilities,
}

impl Rule {
    /// The pattern as Vault writes it (no leading `/`).
    pub fn pattern(&self) -> String {
        self.pattern.as_written()
    }

    /// What the rule grants; `deny` if any block for the pattern said `deny`.
    pub fn capabilities(&self) -> Capabilities {
        self.capabilities
    }
}

/// Vault keys this broker recognises but does not enforce: refused by name so nobody
/// believes they are enforced.
const UNSUPPORTED_KEYS: [&str; 10] = [
    "allowed_parameters",
    "denied_parameters",
    "required_parameters",
    "min_wrapping_ttl",
    "max_wrapping_ttl",
    "mfa_methods",
    "pagination_limit",
    "expiration",
    "list_scan_response_keys_filter_path",
    "control_group",
];

/// Checks a policy name against Vault's rules and returns its canonical (lowercase) form.
/// `root` is refused: it is no policy text, only the marker of a root token.
pub fn validate_name(name: &str) -> Result<String, PolicyError> {
    let invalid = |reason| PolicyError::InvalidName {
        name: name.escape_debug().to_string(),
        reason,
    };
    let canonical = name.to_ascii_lowercase();
    let bytes = canonical.as_bytes();
    match bytes.first() {
        None => return Err(invalid("the name is empty")),
        Some(first) if !first.is_ascii_alphanumeric() => {
            return Err(invalid("the name must start with a letter or a digit"))
        }
        Some(_) => {}
    }
    if bytes.len() > 128 {
        return Err(invalid("the name is longer than 128 characters"));
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(invalid(
            "the name may hold only letters, digits, `_`, `.` and `-`",
        ));
    }
    if canonical == "root" {
        return Err(invalid("`root` is reserved"));
    }
    Ok(canonical)
}

/// Parses a Vault ACL policy written in HCL.
///
/// The policy holds `path "<pattern>" { capabilities = [...] }` blocks (the legacy
/// `policy = "deny|read|write|sudo"` shorthand is accepted, and so is `comment`). Anything
/// else is refused with the line and the reason, including Vault keys this broker does not
/// enforce (`allowed_parameters`, wrapping TTLs...).
pub fn parse(name: &str, hcl: &str) -> Result<Policy, PolicyError> {
    let name = validate_name(name)?;
    let lines = Lines::new(hcl);
    if let Err((offset, reason)) = screen(hcl) {
        return Err(PolicyError::InvalidValue {
            line: lines.line(Some(offset..offset), 1),
            pattern: None,
            reason,
        });
    }
    let body = hcl::edit::parser::parse_body(hcl).map_err(|error| PolicyError::Syntax {
        line: error.location().line(),
        column: error.location().column(),
        message: error.message().to_owned(),
    })?;
    let mut rules: Vec<Rule> = Vec::new();
    let mut index_of: HashMap<Pattern, usize> = HashMap::new();
    for structure in body.iter() {
        let rule = match structure {
            Structure::Block(block) if block.ident.as_str() == "path" => {
                parse_path_block(block, &lines)?
            }
            Structure::Block(block) => {
                return Err(PolicyError::UnknownKey {
                    line: lines.line(block.span(), 0),
                    pattern: None,
                    what: "block",
                    key: block.ident.as_str().to_owned(),
                })
            }
            Structure::Attribute(attribute) => {
                return Err(PolicyError::UnknownKey {
                    line: lines.line(attribute.span(), 0),
                    pattern: None,
                    what: "key",
                    key: attribute.key.as_str().to_owned(),
                })
            }
        };
        // The identical pattern written twice merges, exactly as across policies.
        match index_of.get(&rule.pattern) {
            Some(&index) => {
                rules[index].capabilities = rules[index].capabilities.union(rule.capabilities)
            }
            None => {
                index_of.insert(rule.pattern.clone(), rules.len());
                rules.push(rule);
            }
        }
    }
    Ok(Policy { name, rules })
}

/// Deepest nesting of `{` and `[` a policy may have: a `path` block holds lists (2 levels);
/// `allowed_parameters = { "k" = [] }`, refused by name, has 3.
const MAX_NESTING: usize = 8;

/// Refuses, before hcl-edit sees it, what a policy never needs and what makes hcl-edit's
/// backtracking parser take time exponential in the nesting (fuzzing found 600- and
/// 1800-byte policies that took 50 s and more): templates (`${...}`, `%{...}`; the escapes
/// `$${` and `%%{` are text), heredocs, every operator and punctuation beyond `=`, `,`, `{}`
/// and `[]` (so no conditionals, `for` expressions or function calls), and nesting deeper
/// than [`MAX_NESTING`]. Comments and quoted strings are skipped as HCL reads them. The error
/// is the byte offset and the reason.
fn screen(hcl: &str) -> Result<(), (usize, String)> {
    let bytes = hcl.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        let next = bytes.get(i + 1).copied();
        match bytes[i] {
            b'#' => i = line_end(bytes, i),
            b'/' if next == Some(b'/') => i = line_end(bytes, i),
            b'/' if next == Some(b'*') => {
                i = hcl[i + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |end| i + 2 + end + 2)
            }
            b'"' => i = string_end(bytes, i + 1)?,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err((
                        i,
                        format!("more than {MAX_NESTING} nested levels of `{{` and `[`"),
                    ));
                }
                i += 1;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'<' if next == Some(b'<') => {
                return Err((i, "heredocs (`<<`) have no place in a policy".to_owned()))
            }
            b'=' | b',' | b'.' | b'-' | b'_' | b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            byte if byte.is_ascii_alphanumeric() => i += 1,
            _ => {
                let shown = hcl[i..].chars().next().unwrap_or_default().escape_debug();
                return Err((
                    i,
                    format!(
                        "`{shown}` has no place in a policy, which holds only `path` blocks \
                         of quoted strings and lists of them"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The offset of the end of the line holding `i`.
fn line_end(bytes: &[u8], i: usize) -> usize {
    bytes[i..]
        .iter()
        .position(|b| *b == b'\n')
        .map_or(bytes.len(), |end| i + end)
}

/// The offset just past the quoted string whose text starts at `i` (hcl-edit lets one span
/// lines), or the end of the text if it is never closed; a template in it is refused.
fn string_end(bytes: &[u8], mut i: usize) -> Result<usize, (usize, String)> {
    while i < bytes.len() {
        let next = bytes.get(i + 1).copied();
        match bytes[i] {
            b'"' => return Ok(i + 1),
            b'\\' => i += 2,
            b'$' | b'%' if next == Some(bytes[i]) && bytes.get(i + 2) == Some(&b'{') => i += 3,
            b'$' | b'%' if next == Some(b'{') => {
                return Err((
                    i,
                    "templates (`${...}`, `%{...}`) have no place in a policy; a literal `${` \
                     is written `$${`"
                        .to_owned(),
                ))
            }
            _ => i += 1,
        }
    }
    Ok(bytes.len())
}

fn parse_path_block(block: &Block, lines: &Lines) -> Result<Rule, PolicyError> {
    let block_line = lines.line(block.span(), 0);
    let written = match block.labels.as_slice() {
        [BlockLabel::String(label)] => label.as_str(),
        _ => {
            return Err(PolicyError::InvalidValue {
                line: block_line,
                pattern: None,
                reason: "a `path` block takes exactly one quoted pattern: \
                         path \"transit/encrypt/app\" { capabilities = [\"update\"] }"
                    .to_owned(),
            })
        }
    };
    let shown = written.escape_debug().to_string();
    let pattern = Pattern::parse(written).map_err(|reason| PolicyError::InvalidPattern {
        line: block_line,
        pattern: shown.clone(),
        reason,
    })?;

    let mut capabilities: Option<Capabilities> = None;
    let mut legacy: Option<Capabilities> = None;
    for structure in block.body.iter() {
        let attribute = match structure {
            Structure::Attribute(attribute) => attribute,
            Structure::Block(inner) => {
                let key = inner.ident.as_str();
                let line = lines.line(inner.span(), block_line);
                return Err(if UNSUPPORTED_KEYS.contains(&key) {
                    PolicyError::Unsupported {
                        line,
                        pattern: shown,
                        key: key.to_owned(),
                    }
                } else {
                    PolicyError::UnknownKey {
                        line,
                        pattern: Some(shown),
                        what: "block",
                        key: key.to_owned(),
                    }
                });
            }
        };
        let key = attribute.key.as_str();
        let line = lines.line(attribute.span(), block_line);
        match key {
            "capabilities" => {
                capabilities = Some(parse_capabilities(attribute, &shown, line, lines)?);
            }
            "policy" => legacy = Some(parse_legacy_policy(attribute, &shown, line)?),
            "comment" => {
                string_value(&attribute.value).ok_or_else(|| PolicyError::InvalidValue {
                    line,
                    pattern: Some(shown.clone()),
                    reason: "`comment` must be a quoted string".to_owned(),
                })?;
            }
            _ if UNSUPPORTED_KEYS.contains(&key) => {
                return Err(PolicyError::Unsupported {
                    line,
                    pattern: shown,
                    key: key.to_owned(),
                })
            }
            _ => {
                return Err(PolicyError::UnknownKey {
                    line,
                    pattern: Some(shown),
                    what: "key",
                    key: key.to_owned(),
                })
            }
        }
    }
    let capabilities = match (capabilities, legacy) {
        (None, None) => {
            return Err(PolicyError::InvalidValue {
                line: block_line,
                pattern: Some(shown),
                reason: "the block grants nothing: add `capabilities = [...]`".to_owned(),
            })
        }
        (capabilities, legacy) => capabilities
            .unwrap_or(Capabilities::NONE)
            .union(legacy.unwrap_or(Capabilities::NONE)),
    };
    Ok(Rule {
        pattern,
        capabilities,
    })
}

fn parse_capabilities(
    attribute: &Attribute,
    shown: &str,
    line: usize,
    lines: &Lines,
) -> Result<Capabilities, PolicyError> {
    let not_a_list = || PolicyError::InvalidValue {
        line,
        pattern: Some(shown.to_owned()),
        reason: "`capabilities` must be a list of quoted strings".to_owned(),
    };
    let Expression::Array(items) = &attribute.value else {
        return Err(not_a_list());
    };
    let mut capabilities = Capabilities::NONE;
    for item in items.iter() {
        let name = string_value(item).ok_or_else(not_a_list)?;
        let capability =
            Capability::from_name(name).ok_or_else(|| PolicyError::InvalidCapability {
                line: lines.line(item.span(), line),
                pattern: shown.to_owned(),
                capability: name.escape_debug().to_string(),
            })?;
        capabilities = capabilities.with(capability);
    }
    Ok(capabilities)
}

/// Vault's pre-0.5 shorthand, mapped as Vault maps it.
fn parse_legacy_policy(
    attribute: &Attribute,
    shown: &str,
    line: usize,
) -> Result<Capabilities, PolicyError> {
    use Capability::*;
    let granted: &[Capability] = match string_value(&attribute.value) {
        Some("deny") => &[Deny],
        Some("read") => &[Read, List],
        Some("write") => &[Create, Read, Update, Delete, List],
        Some("sudo") => &[Create, Read, Update, Delete, List, Sudo],
        _ => {
            return Err(PolicyError::InvalidValue {
                line,
                pattern: Some(shown.to_owned()),
                reason: "`policy` must be one of \"deny\", \"read\", \"write\", \"sudo\""
                    .to_owned(),
            })
        }
    };
    Ok(granted.iter().copied().collect())
}

/// The text of a plain quoted string (no interpolation, no heredoc).
fn string_value(expression: &Expression) -> Option<&str> {
    match expression {
        Expression::String(text) => Some(text.as_str()),
        _ => None,
    }
}

/// Byte offsets → one-based line numbers.
struct Lines {
    starts: Vec<usize>,
}

impl Lines {
    fn new(text: &str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(index, _)| index + 1))
            .collect();
        Lines { starts }
    }

    /// The line of a span, or `fallback` when the parser gave none.
    fn line(&self, span: Option<Range<usize>>, fallback: usize) -> usize {
        match span {
            Some(span) => self.starts.partition_point(|start| *start <= span.start),
            None => fallback,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(names: &[Capability]) -> Capabilities {
        names.iter().copied().collect()
    }

    #[test]
    fn parses_blocks_and_merges_a_repeated_pattern() {
        let policy = parse(
            "App-Enc",
            r#"
# Encrypt with the app keys.
path "transit/encrypt/app-*" {
  capabilities = ["update"]
  comment      = "services encrypt"
}

path "/transit/keys/+" { capabilities = ["read", "list"] }

path "transit/encrypt/app-*" {
  capabilities = ["create"]
}
"#,
        )
        .unwrap();
        assert_eq!(policy.name(), "app-enc");
        let rules: Vec<(String, Capabilities)> = policy
            .rules()
            .iter()
            .map(|r| (r.pattern(), r.capabilities()))
            .collect();
        assert_eq!(
            rules,
            vec![
                (
                    "transit/encrypt/app-*".to_owned(),
                    caps(&[Capability::Update, Capability::Create])
                ),
                (
                    "transit/keys/+".to_owned(),
                    caps(&[Capability::Read, Capability::List])
                ),
            ]
        );
    }

    #[test]
    fn deny_in_a_repeated_pattern_wins() {
        let policy = parse(
            "p",
            "path \"a\" {\n capabilities = [\"read\"]\n}\npath \"a\" {\n capabilities = [\"deny\"]\n}\n",
        )
        .unwrap();
        assert_eq!(
            policy.rules()[0].capabilities().to_vault_strings(),
            vec!["deny"]
        );
    }

    #[test]
    fn legacy_policy_shorthand_maps_as_vault() {
        let policy = parse(
            "legacy",
            "path \"r\" {\n policy = \"read\"\n}\npath \"w\" {\n policy = \"write\"\n}\n\
             path \"s\" {\n policy = \"sudo\"\n}\npath \"d\" {\n policy = \"deny\"\n capabilities = [\"read\"]\n}\n",
        )
        .unwrap();
        let strings: Vec<Vec<&str>> = policy
            .rules()
            .iter()
            .map(|r| r.capabilities().to_vault_strings())
            .collect();
        assert_eq!(
            strings,
            vec![
                vec!["read", "list"],
                vec!["read", "list", "update", "delete", "create"],
                vec!["sudo", "read", "list", "update", "delete", "create"],
                vec!["deny"],
            ]
        );
    }

    #[test]
    fn empty_capabilities_are_a_rule_that_grants_nothing() {
        let policy = parse("p", "path \"a/*\" {\n capabilities = []\n}\n").unwrap();
        assert_eq!(policy.rules()[0].capabilities(), Capabilities::NONE);
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let error = parse("p", "path \"a\" {\n  capabilities = [\"read\"\n}\n").unwrap_err();
        assert!(
            matches!(error, PolicyError::Syntax { line: 3, .. }),
            "{error:?}"
        );
        assert!(error.to_string().starts_with("line 3"), "{error}");
    }

    #[test]
    fn unknown_capability_names_line_and_pattern() {
        let error = parse(
            "p",
            "path \"ok\" {\n capabilities = [\"read\"]\n}\n\npath \"transit/*\" {\n  capabilities = [\n    \"read\",\n    \"root\",\n  ]\n}\n",
        )
        .unwrap_err();
        assert_eq!(
            error,
            PolicyError::InvalidCapability {
                line: 8,
                pattern: "transit/*".into(),
                capability: "root".into()
            }
        );
        assert_eq!(
            error.to_string(),
            "line 8: path \"transit/*\": invalid capability \"root\""
        );
        // OpenBao's `scan` is not supported here: refused, not silently ignored.
        assert!(matches!(
            parse("p", "path \"a\" {\n capabilities = [\"scan\"]\n}\n"),
            Err(PolicyError::InvalidCapability { .. })
        ));
    }

    #[test]
    fn bad_glob_names_line_and_pattern() {
        let error = parse(
            "p",
            "\n\npath \"transit/*/encrypt\" {\n capabilities = [\"update\"]\n}\n",
        )
        .unwrap_err();
        assert!(
            matches!(&error, PolicyError::InvalidPattern { line: 3, pattern, .. } if pattern == "transit/*/encrypt"),
            "{error:?}"
        );
        assert!(error
            .to_string()
            .contains("`*` is allowed only as the last character"));
        for bad in ["a/+*", "a/b+", "a/../b", "a//b", "a/%2e", ""] {
            let text = format!("path \"{bad}\" {{\n capabilities = [\"read\"]\n}}\n");
            assert!(
                matches!(
                    parse("p", &text),
                    Err(PolicyError::InvalidPattern { line: 1, .. })
                ),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn unknown_and_unsupported_keys_are_refused() {
        let error = parse(
            "p",
            "path \"a\" {\n capabilities = [\"read\"]\n}\nname = \"x\"\n",
        )
        .unwrap_err();
        assert!(
            matches!(&error, PolicyError::UnknownKey { line: 4, key, pattern: None, .. } if key == "name"),
            "{error:?}"
        );
        let error = parse("p", "namespace \"a\" {\n}\n").unwrap_err();
        assert!(
            matches!(
                &error,
                PolicyError::UnknownKey {
                    line: 1,
                    what: "block",
                    ..
                }
            ),
            "{error:?}"
        );
        let error = parse(
            "p",
            "path \"a\" {\n capabilities = [\"read\"]\n capabilitys = [\"list\"]\n}\n",
        )
        .unwrap_err();
        assert!(
            matches!(&error, PolicyError::UnknownKey { line: 3, pattern: Some(p), .. } if p == "a"),
            "{error:?}"
        );
        let error = parse(
            "p",
            "path \"a\" {\n capabilities = [\"update\"]\n allowed_parameters = {\n  \"k\" = []\n }\n}\n",
        )
        .unwrap_err();
        assert!(
            matches!(&error, PolicyError::Unsupported { line: 3, key, .. } if key == "allowed_parameters"),
            "{error:?}"
        );
        assert!(error.to_string().contains("not supported"), "{error}");
        for key in UNSUPPORTED_KEYS {
            let text = format!("path \"a\" {{\n capabilities = [\"read\"]\n {key} = \"1\"\n}}\n");
            assert!(
                matches!(parse("p", &text), Err(PolicyError::Unsupported { .. })),
                "{key}"
            );
        }
    }

    #[test]
    fn malformed_values_are_refused() {
        for text in [
            "path \"a\" {\n capabilities = \"read\"\n}\n",
            "path \"a\" {\n capabilities = [read]\n}\n",
            "path \"a\" {\n capabilities = [\"${x}\"]\n}\n",
            "path \"a\" {\n policy = \"admin\"\n}\n",
            "path \"a\" {\n}\n",
            "path {\n capabilities = [\"read\"]\n}\n",
            "path \"a\" \"b\" {\n capabilities = [\"read\"]\n}\n",
            "path a {\n capabilities = [\"read\"]\n}\n",
        ] {
            assert!(
                matches!(parse("p", text), Err(PolicyError::InvalidValue { .. })),
                "{text:?}: {:?}",
                parse("p", text)
            );
        }
    }

    #[test]
    fn what_a_policy_never_needs_is_refused_before_parsing() {
        for text in [
            "path \"a\" {\n capabilities = [\"${x}\"]\n}\n",
            "path \"a\" {\n comment = \"%{ if x }y%{ endif }\"\n capabilities = []\n}\n",
            "path \"a\" {\n capabilities = x ? [\"read\"] : []\n}\n",
            "path \"a\" {\n capabilities = [for c in [\"read\"] : c]\n}\n",
            "path \"a\" {\n capabilities = concat([\"read\"])\n}\n",
            "path \"a\" {\n comment = <<EOT\nx\nEOT\n capabilities = []\n}\n",
            "path \"a\" {\n capabilities = [[[[[[[[[]]]]]]]]]\n}\n",
            "path \"a\" {\n capabilities = [\"read\"] + []\n}\n",
            "path \"a\" {\n capabilities = [\"read\"]\n}\n\u{e9} = 1\n",
            // A quoted string may span lines: what follows its end is checked, not skipped
            // as a comment.
            "path \"a\" {\n capabilities = [\"read\n# \"] + [\"x\"]\n}\n",
        ] {
            assert!(
                matches!(
                    parse("p", text),
                    Err(PolicyError::InvalidValue { pattern: None, .. })
                ),
                "{text:?}: {:?}",
                parse("p", text)
            );
        }
        let error = parse("p", "\n\npath \"${a}\" {}\n").unwrap_err();
        assert!(error.to_string().starts_with("line 3: "), "{error}");
        // Escapes are text; comments and strings may hold anything.
        let policy = parse(
            "p",
            "# ${x} ? : ( <<\n// %{y}\n/* [[[[[[[[[[ \" */\npath \"a$${x}\" {\n capabilities = [\"read\"] # ?\n \
             comment = \"%%{y} $$${z} ? : ( ) <<EOT [[[[[[[[[[ \\\" #\"\n}\n",
        )
        .unwrap();
        assert_eq!(policy.rules()[0].pattern(), "a${x}");
    }

    #[test]
    fn a_key_given_twice_is_refused() {
        let error = parse(
            "p",
            "path \"a\" {\n capabilities = [\"read\"]\n capabilities = [\"list\"]\n}\n",
        )
        .unwrap_err();
        assert!(
            matches!(error, PolicyError::Syntax { line: 3, .. }),
            "{error:?}"
        );
    }

    #[test]
    fn policy_names() {
        assert_eq!(validate_name("App-Enc_1.v2"), Ok("app-enc_1.v2".to_owned()));
        assert_eq!(validate_name("default"), Ok("default".to_owned()));
        assert_eq!(validate_name(&"a".repeat(128)).map(|n| n.len()), Ok(128));
        for bad in [
            "",
            "root",
            "ROOT",
            "-a",
            "_a",
            ".a",
            "a/b",
            "a b",
            "a\u{0}",
            "é",
            &"a".repeat(129),
        ] {
            assert!(
                matches!(validate_name(bad), Err(PolicyError::InvalidName { .. })),
                "{bad:?} was accepted"
            );
        }
        assert!(matches!(
            parse("root", "path \"a\" {\n capabilities = [\"read\"]\n}\n"),
            Err(PolicyError::InvalidName { .. })
        ));
    }
}
