//! Tenants (namespaces) through the real binary and the `bao` CLI: creation, routing by
//! header and by path prefix, isolation of mounts and keys, and deletion.

use serde_json::json;

use crate::support::Broker;

#[test]
fn namespaces_are_created_listed_and_deleted_with_bao() {
    let broker = Broker::dev();
    broker.bao_ok(&["namespace", "create", "acme"]);
    broker.bao_ok(&["namespace", "create", "globex"]);
    let out = broker.bao_ok(&["namespace", "list"]);
    assert!(out.contains("acme/") && out.contains("globex/"), "{out}");
    let out = broker.bao_ok(&["namespace", "lookup", "acme"]);
    assert!(out.contains("acme/"), "{out}");

    for reserved in ["root", "sys", "auth", "identity", "transit"] {
        let out = broker.bao(&["namespace", "create", reserved]);
        assert!(!out.status.success(), "{reserved} must be refused");
        assert!(String::from_utf8_lossy(&out.stderr).contains("reserved"));
    }
    for invalid in ["Acme", "a.b", "-x"] {
        let (status, _) = broker.request("POST", &format!("sys/namespaces/{invalid}"), None);
        assert_eq!(status, 400, "{invalid}");
    }
    let again = broker.bao(&["namespace", "create", "acme"]);
    assert!(!again.status.success());

    // A root mount may not take a tenant's name, so /v1/<tenant>/… stays unambiguous.
    let clash = broker.bao(&["secrets", "enable", "-path=acme", "transit"]);
    assert!(!clash.status.success());

    broker.bao_ok(&["namespace", "delete", "globex"]);
    let out = broker.bao_ok(&["namespace", "list"]);
    assert!(out.contains("acme/") && !out.contains("globex/"), "{out}");
}

#[test]
fn each_tenant_has_its_own_mounts_and_keys_by_header_or_path_prefix() {
    let broker = Broker::dev();
    broker.bao_ok(&["namespace", "create", "acme"]);
    broker.bao_ok(&["namespace", "create", "globex"]);
    // A new tenant has no transit mount until one is enabled in it.
    let (status, _) = broker.request(
        "POST",
        "acme/transit/encrypt/k",
        Some(&json!({ "plaintext": "aGk=" })),
    );
    assert_eq!(status, 404);
    broker.bao_ok(&["secrets", "enable", "-namespace=acme", "transit"]);
    broker.bao_ok(&["secrets", "enable", "-namespace=globex", "transit"]);

    // The same key name in three tenants: three different keys.
    broker.bao_ok(&["write", "-namespace=acme", "-f", "transit/keys/shared"]);
    broker.bao_ok(&["write", "-namespace=globex", "-f", "transit/keys/shared"]);
    broker.bao_ok(&["write", "-f", "transit/keys/shared"]);
    let root_ct = broker.encrypt("shared", b"root data");

    // Header routing and path-prefix routing reach the same tenant.
    let (status, value) = broker.request(
        "POST",
        "acme/transit/encrypt/shared",
        Some(&json!({ "plaintext": "YWNtZQ==" })),
    );
    assert_eq!(status, 200, "{value}");
    let acme_ct = value["data"]["ciphertext"].as_str().unwrap().to_owned();
    let token = broker.token.clone();
    let (status, value) = broker.request_with(
        "POST",
        "transit/decrypt/shared",
        Some(&json!({ "ciphertext": acme_ct })),
        &[("X-Vault-Token", &token), ("X-Vault-Namespace", "acme")],
    );
    assert_eq!(
        (status, value["data"]["plaintext"].clone()),
        (200, json!("YWNtZQ=="))
    );

    // A ciphertext never decrypts under another tenant's key of the same name.
    for path in ["globex/transit/decrypt/shared", "transit/decrypt/shared"] {
        let (status, _) = broker.request("POST", path, Some(&json!({ "ciphertext": acme_ct })));
        assert_eq!(status, 400, "{path}");
    }
    let (status, _) = broker.request(
        "POST",
        "acme/transit/decrypt/shared",
        Some(&json!({ "ciphertext": root_ct })),
    );
    assert_eq!(status, 400);

    // Listings are per tenant.
    broker.bao_ok(&["write", "-namespace=acme", "-f", "transit/keys/only-acme"]);
    let out = broker.bao_ok(&["list", "-namespace=globex", "transit/keys"]);
    assert!(!out.contains("only-acme"), "{out}");
    let out = broker.bao_ok(&["secrets", "list", "-namespace=acme"]);
    assert!(out.contains("transit/"), "{out}");

    // An unknown namespace is refused like any forbidden request.
    let (status, value) = broker.request_with(
        "GET",
        "transit/keys/shared",
        None,
        &[("X-Vault-Token", &token), ("X-Vault-Namespace", "nope")],
    );
    assert_eq!(
        (status, value["errors"][0].clone()),
        (403, json!("permission denied"))
    );
}

#[test]
fn deleting_a_tenant_makes_its_keys_unusable() {
    let broker = Broker::dev();
    broker.bao_ok(&["namespace", "create", "acme"]);
    broker.bao_ok(&["secrets", "enable", "-namespace=acme", "transit"]);
    let (status, value) = broker.request(
        "POST",
        "acme/transit/encrypt/k",
        Some(&json!({ "plaintext": "aGk=" })),
    );
    assert_eq!(status, 200, "{value}");
    let ciphertext = value["data"]["ciphertext"].as_str().unwrap().to_owned();
    broker.bao_ok(&["namespace", "delete", "acme"]);
    let token = broker.token.clone();
    let (status, _) = broker.request_with(
        "POST",
        "transit/decrypt/k",
        Some(&json!({ "ciphertext": ciphertext })),
        &[("X-Vault-Token", &token), ("X-Vault-Namespace", "acme")],
    );
    assert_eq!(status, 403);
    // By path prefix the name no longer routes to a tenant: nothing is there.
    let body = json!({ "ciphertext": ciphertext });
    let (status, _) = broker.request("POST", "acme/transit/decrypt/k", Some(&body));
    assert_eq!(status, 404);

    // A new tenant of the same name is a new world: the old ciphertext stays useless.
    broker.bao_ok(&["namespace", "create", "acme"]);
    broker.bao_ok(&["secrets", "enable", "-namespace=acme", "transit"]);
    broker.bao_ok(&["write", "-namespace=acme", "-f", "transit/keys/k"]);
    let (status, _) = broker.request(
        "POST",
        "acme/transit/decrypt/k",
        Some(&json!({ "ciphertext": ciphertext })),
    );
    assert_eq!(status, 400);
}
