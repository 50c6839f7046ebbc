//! Request paths (`keybroker_core::policy::canonicalize_request_path`): the part of every
//! URL after `/v1/`, authenticated or not, made canonical once for both the policy check and
//! routing; then matched against a policy set with every kind of rule. The same text goes
//! through the checks of names taken from path segments (mount paths, transit key, role
//! and tenant names).

use std::sync::Arc;

use keybroker_core::{
    auth::approle::validate_role_name,
    engines::transit,
    mounts::normalize_path,
    policy::{self, canonicalize_request_path, Acl, Capability},
    tenants,
};

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
    names(raw);
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

/// A name that passes its check is one path segment, never `..` (a mount path: canonical
/// segments), and checking it again changes nothing.
fn names(raw: &str) {
    if let Ok(mount) = normalize_path(raw) {
        assert!(mount.ends_with('/') && !mount.starts_with('/'));
        assert_eq!(normalize_path(&mount).ok().as_ref(), Some(&mount));
        assert_eq!(
            canonicalize_request_path(&mount).ok().as_ref(),
            Some(&mount)
        );
    }
    if transit::validate_key_name(raw).is_ok() {
        assert!(!raw.contains('/') && !raw.contains(".."), "{raw:?}");
    }
    if let Ok(role) = validate_role_name(raw) {
        assert!(
            !role.contains('/') && role != "." && role != "..",
            "{raw:?}"
        );
        assert_eq!(validate_role_name(&role).ok().as_ref(), Some(&role));
    }
    if tenants::valid_name(raw) {
        assert!(!raw.contains('/') && !raw.contains('.'), "{raw:?}");
    }
}
