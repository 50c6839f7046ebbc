//! Request paths (`keybroker_core::policy::canonicalize_request_path`): the part of every
//! URL after `/v1/`, authenticated or not, made canonical once for both the policy check and
//! routing; then matched against a policy set with every kind of rule.

use std::sync::Arc;

use keybroker_core::policy::{self, canonicalize_request_path, Acl, Capability};

const POLICY: &str = r#"
path "transit/encrypt/app-*" { capabilities = ["update"] }
path "transit/keys/+" { capabilities = ["read"] }
path "transit/keys/+/config" { capabilities = ["update", "read"] }
path "transit/keys/" { capabilities = ["list"] }
path "sys/policies/acl/*" { capabilities = ["read", "list"] }
path "sys/policies/acl/admin" { capabilities = ["deny"] }
path "auth/+/role/+/secret-id*" { capabilities = ["create", "update"] }
"#;

/// Canonicalises `data` as a request path and asks the ACL about it.
pub fn request_path(data: &[u8]) {
    let Some(raw) = crate::text(data) else {
        return;
    };
    let Ok(path) = canonicalize_request_path(raw) else {
        return;
    };
    // Canonical is a fixed point: nothing is left to resolve differently the second time.
    assert_eq!(canonicalize_request_path(&path).as_ref(), Ok(&path));
    assert!(!path.is_empty() && !path.starts_with('/'));
    assert!(raw == path || raw.strip_prefix('/') == Some(&path));
    for segment in path.split('/') {
        assert!(segment != "." && segment != "..");
    }
    assert!(!path.contains("//") && !path.contains('%') && !path.contains('\\'));
    assert!(path.bytes().all(|b| (0x20..0x7f).contains(&b)));

    let acl = Acl::new(&[Arc::new(policy::parse("p", POLICY).unwrap())], false);
    let capabilities = acl.capabilities(&path);
    // Every grant comes from a rule that matches.
    if capabilities.contains(Capability::Update) && !path.starts_with("transit/encrypt/app-") {
        // A list of `a/b/` may fall back to the rules for `a/b`.
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        let config =
            segments.len() == 4 && segments[..2] == ["transit", "keys"] && segments[3] == "config";
        let secret_id = segments.len() >= 5
            && segments[0] == "auth"
            && segments[2] == "role"
            && segments[4].starts_with("secret-id");
        assert!(config || secret_id, "{path:?}");
    }
    if path.starts_with("sys/policies/acl/admin") && path.len() == "sys/policies/acl/admin".len() {
        assert!(capabilities.is_denied());
    }
    if !path.starts_with("transit/")
        && !path.starts_with("sys/policies/acl/")
        && !path.starts_with("auth/")
    {
        assert_eq!(capabilities, Default::default(), "{path:?}");
    }
    for capability in Capability::ALL {
        let _ = acl.allows(&path, capability, capability == Capability::Sudo);
    }
}
