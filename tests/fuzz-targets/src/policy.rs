//! Vault HCL policies (`broker/core/src/policy/parse.rs`), written by tenant admins through
//! `sys/policies/acl`, and the ACL compiled from them (`broker/core/src/policy/acl.rs`).

use std::sync::Arc;

use keybroker_core::policy::{self, Acl, Capability, Policy};

/// Parses `data` as a policy (and as a policy name); what parses prints back to HCL that
/// parses the same, and its ACL answers for each exact rule what the rule grants.
pub fn policy(data: &[u8]) {
    let Some(text) = crate::text(data) else {
        return;
    };
    if let Ok(name) = policy::validate_name(text) {
        assert_eq!(name, text.to_ascii_lowercase());
        assert_eq!(policy::validate_name(&name), Ok(name.clone()));
    }
    let Ok(parsed) = policy::parse("fuzz", text) else {
        return;
    };
    let printed = print(&parsed);
    assert_eq!(
        policy::parse("fuzz", &printed).as_ref(),
        Ok(&parsed),
        "{printed}"
    );
    let parsed = Arc::new(parsed);
    let acl = Acl::new(std::slice::from_ref(&parsed), false);
    for rule in parsed.rules() {
        let pattern = rule.pattern();
        let exact = !pattern.contains('*') && !pattern.contains('+');
        if !exact {
            let _ = acl.capabilities(&pattern);
            continue;
        }
        let granted = rule.capabilities();
        assert_eq!(acl.capabilities(&pattern), granted, "{pattern:?}");
        for capability in Capability::ALL {
            let expected = !granted.is_denied()
                && capability != Capability::Deny
                && granted.contains(capability);
            assert_eq!(acl.allows(&pattern, capability, false), expected);
        }
    }
    // Root answers everything; no policy at all answers nothing.
    let root = Acl::new(&[], true);
    let none = Acl::new(&[], false);
    for rule in parsed.rules() {
        assert!(root.capabilities(&rule.pattern()).is_root());
        assert_eq!(none.capabilities(&rule.pattern()), Default::default());
    }
}

/// The policy as HCL: one block per rule, every capability it holds.
fn print(policy: &Policy) -> String {
    let mut out = String::new();
    for rule in policy.rules() {
        let capabilities: Vec<String> = Capability::ALL
            .into_iter()
            .filter(|c| rule.capabilities().contains(*c))
            .map(|c| format!("\"{}\"", c.as_str()))
            .collect();
        out.push_str(&format!(
            "path \"{}\" {{\n  capabilities = [{}]\n}}\n",
            quote(&rule.pattern()),
            capabilities.join(", ")
        ));
    }
    out
}

/// The inside of an HCL quoted string holding `text`.
fn quote(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace("${", "$${")
        .replace("%{", "%%{")
}
