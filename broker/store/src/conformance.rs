//! The store conformance suite: the same assertions for every `Store` implementation.
//! Each adapter's tests call [`run_all`] on a fresh, empty store.

use std::sync::Arc;

use keybroker_core::{
    store::{
        AppRoleRecord, Expect, KeyMode, KeyOptions, KeyRecord, KeyVersionRecord, MountEntry,
        MountRecord, SecretIdRecord, Store, StoreError, TenantRecord, TokenRecord,
    },
    KeyId, MountId, TenantId,
};
use serde_json::json;

/// A transit mount at `path` in `tenant`.
pub(crate) fn mount(tenant: TenantId, path: &str) -> MountRecord {
    MountRecord {
        id: MountId::random(),
        tenant,
        path: path.to_owned(),
        kind: "transit".to_owned(),
        description: String::new(),
        config: serde_json::json!({}),
        created_at: 1,
    }
}

/// Key `name` in `mount` with its version 1, every field round-trippable.
pub(crate) fn key(tenant: TenantId, mount: MountId, name: &str) -> (KeyRecord, KeyVersionRecord) {
    let id = KeyId::random();
    let record = KeyRecord {
        id,
        tenant,
        mount,
        name: name.to_owned(),
        key_type: "aes256-gcm96".to_owned(),
        backend: "local".to_owned(),
        mode: KeyMode::Envelope,
        backend_reference: Some("ref".to_owned()),
        min_available_version: 0,
        min_decryption_version: 1,
        min_encryption_version: 0,
        deletion_allowed: false,
        // Non-default values, so that a store dropping them fails the round trip.
        bound: true,
        auto_rotate_period: 0,
        latest_version: 1,
        created_at: 10,
        rotated_at: 10,
        options: KeyOptions {
            derived: true,
            convergent_encryption: true,
            exportable: false,
            allow_plaintext_backup: true,
            imported: true,
            imported_key_allow_rotation: true,
            key_size: 48,
        },
    };
    let version = KeyVersionRecord {
        key: id,
        version: 1,
        backend_reference: "ref".to_owned(),
        wrapped_dek: Some(vec![1, 2, 3]),
        payload_format: 1,
        public_key: Some("-----BEGIN PUBLIC KEY-----\nAA==\n-----END PUBLIC KEY-----\n".to_owned()),
        created_at: 10,
        counter_reserved: 0,
    };
    (record, version)
}

/// Runs every check.
pub(crate) async fn run_all(store: &dyn Store) {
    meta(store).await;
    mounts(store).await;
    tokens(store).await;
    approle(store).await;
    policies(store).await;
    keys(store).await;
    restore(store).await;
    counters(store).await;
    audit_checkpoints(store).await;
    mount_entries(store).await;
    mount_entry_lists(store).await;
    mount_entries_isolation_and_cascades(store).await;
    token_orphans_accessors_and_roles(store).await;
    wrapped_responses(store).await;
}

async fn audit_checkpoints(store: &dyn Store) {
    let latest = |sink: &'static str| store.latest_audit_checkpoint(sink);
    let put = |sink: &'static str, sequence: u64, head: &'static [u8]| {
        store.put_audit_checkpoint(sink, sequence, head)
    };
    assert_eq!(latest("file").await.unwrap(), None);
    put("file", 1000, &[1; 32]).await.unwrap();
    assert_eq!(latest("file").await.unwrap(), Some((1000, vec![1; 32])));
    // A lower or equal sequence never replaces the recorded head.
    put("file", 500, &[2; 32]).await.unwrap();
    put("file", 1000, &[3; 32]).await.unwrap();
    assert_eq!(latest("file").await.unwrap(), Some((1000, vec![1; 32])));
    put("file", 2000, &[4; 32]).await.unwrap();
    assert_eq!(latest("file").await.unwrap(), Some((2000, vec![4; 32])));
    // Sinks are independent.
    assert_eq!(latest("other").await.unwrap(), None);
    put("other", 7, &[5; 32]).await.unwrap();
    assert_eq!(latest("other").await.unwrap(), Some((7, vec![5; 32])));
    assert_eq!(latest("file").await.unwrap(), Some((2000, vec![4; 32])));
}

async fn meta(store: &dyn Store) {
    assert_eq!(store.get_meta("m").await.unwrap(), None);
    assert!(store.put_meta_if_absent("m", b"one").await.unwrap());
    assert!(!store.put_meta_if_absent("m", b"two").await.unwrap());
    assert_eq!(
        store.get_meta("m").await.unwrap().as_deref(),
        Some(&b"one"[..])
    );
}

async fn mounts(store: &dyn Store) {
    let tenant = TenantId::ROOT;
    let a = mount(tenant, "a/");
    store.create_mount(&a).await.unwrap();
    assert!(matches!(
        store.create_mount(&mount(tenant, "a/")).await,
        Err(StoreError::Conflict)
    ));
    store
        .update_mount_config(tenant, a.id, &serde_json::json!({ "disable_upsert": true }))
        .await
        .unwrap();
    let listed = store.list_mounts(tenant).await.unwrap();
    let found = listed.iter().find(|m| m.id == a.id).unwrap();
    assert_eq!(found.config["disable_upsert"], true);
    // Deleting a mount deletes its keys.
    let (record, version) = key(tenant, a.id, "in-mount");
    store.create_key(&record, &version).await.unwrap();
    assert!(store.delete_mount(tenant, a.id).await.unwrap());
    assert!(!store.delete_mount(tenant, a.id).await.unwrap());
    assert_eq!(store.get_key(tenant, a.id, "in-mount").await.unwrap(), None);
    assert!(key_versions(store, tenant, record.id).await.is_empty());
}

fn token(hash: u8, accessor: &str, parent: Option<&str>) -> TokenRecord {
    TokenRecord {
        hash: vec![hash; 32],
        accessor: accessor.to_owned(),
        tenant: TenantId::ROOT,
        policies: vec!["root".to_owned()],
        display_name: "root".to_owned(),
        created_at: 5,
        expires_at: None,
        period: 0,
        ttl: 0,
        max_expires_at: None,
        uses_remaining: None,
        parent_accessor: parent.map(str::to_owned),
        meta: [("team".to_owned(), "billing".to_owned())].into(),
        renewable: false,
        bound_cidrs: vec!["10.0.0.0/8".to_owned()],
        auth_mount: None,
    }
}

/// The versions of `key` in `tenant`.
async fn key_versions(store: &dyn Store, tenant: TenantId, key: KeyId) -> Vec<KeyVersionRecord> {
    store.get_key_versions(tenant, key).await.unwrap()
}

async fn tokens(store: &dyn Store) {
    let root = token(7, "acc", None);
    store.put_tokens(std::slice::from_ref(&root)).await.unwrap();
    assert_eq!(store.get_token(&[7; 32]).await.unwrap(), Some(root.clone()));
    assert_eq!(store.get_token(&[8; 32]).await.unwrap(), None);
    assert_eq!(
        store
            .get_token_by_accessor(TenantId::ROOT, "acc")
            .await
            .unwrap(),
        Some(root.clone())
    );
    assert_eq!(
        store
            .get_token_by_accessor(TenantId::random(), "acc")
            .await
            .unwrap(),
        None,
        "accessors resolve only within their tenant"
    );

    // Revoking a parent revokes its children, recursively, and nothing else: also those in
    // another tenant (a root-namespace token creates tokens inside tenants).
    let tenant = TenantId::random();
    store
        .create_tenant(&TenantRecord {
            id: tenant,
            name: "token-tree".into(),
            created_at: 0,
        })
        .await
        .unwrap();
    let in_tenant = |hash, accessor, parent| TokenRecord {
        tenant,
        ..token(hash, accessor, Some(parent))
    };
    store
        .put_tokens(&[
            token(10, "parent", None),
            token(11, "child", Some("parent")),
            token(12, "grandchild", Some("child")),
            token(13, "other", None),
            in_tenant(14, "tenant-child", "parent"),
            in_tenant(15, "tenant-grandchild", "tenant-child"),
        ])
        .await
        .unwrap();
    // A group of new tokens is stored all or none: a duplicate fails the whole group.
    assert!(store
        .put_tokens(&[token(16, "new", None), token(10, "again", None)])
        .await
        .is_err());
    assert_eq!(store.get_token(&[16; 32]).await.unwrap(), None);
    let mut revoked = store
        .revoke_token_tree(TenantId::ROOT, "parent")
        .await
        .unwrap();
    revoked.sort();
    assert_eq!(revoked, [10, 11, 12, 14, 15].map(|h| vec![h; 32]).to_vec());
    assert!(store.get_token(&[13; 32]).await.unwrap().is_some());

    // Disabling an auth mount revokes what it issued, with children, and nothing else.
    let (issuer, other_issuer) = (
        mount(TenantId::ROOT, "auth/a/"),
        mount(TenantId::ROOT, "auth/b/"),
    );
    store.create_mount(&issuer).await.unwrap();
    store.create_mount(&other_issuer).await.unwrap();
    let (issuer, other_issuer) = (issuer.id, other_issuer.id);
    let periodic = TokenRecord {
        period: 3600,
        expires_at: Some(3605),
        auth_mount: Some(issuer),
        ..token(20, "from-mount", None)
    };
    store
        .put_tokens(&[
            periodic.clone(),
            token(21, "child-of-mount", Some("from-mount")),
            in_tenant(25, "tenant-child-of-mount", "from-mount"),
            TokenRecord {
                auth_mount: Some(other_issuer),
                ..token(22, "other-mount", None)
            },
        ])
        .await
        .unwrap();
    assert_eq!(store.get_token(&[20; 32]).await.unwrap(), Some(periodic));
    let mut revoked = store
        .revoke_mount_tokens(TenantId::ROOT, issuer)
        .await
        .unwrap();
    revoked.sort();
    assert_eq!(revoked, [20, 21, 25].map(|h| vec![h; 32]).to_vec());
    assert!(store.get_token(&[22; 32]).await.unwrap().is_some());
    // Deleting the mount deletes tokens it issued; none can be stored for it afterwards.
    let issued = |hash, accessor| TokenRecord {
        auth_mount: Some(issuer),
        ..token(hash, accessor, None)
    };
    store.put_tokens(&[issued(23, "late")]).await.unwrap();
    assert!(store.delete_mount(TenantId::ROOT, issuer).await.unwrap());
    assert_eq!(store.get_token(&[23; 32]).await.unwrap(), None);
    assert!(matches!(
        store.put_tokens(&[issued(24, "too-late")]).await,
        Err(StoreError::Gone)
    ));

    // Use counts are consumed one at a time; the last use deletes the token.
    let limited = TokenRecord {
        uses_remaining: Some(2),
        ..token(14, "limited", None)
    };
    store
        .put_tokens(std::slice::from_ref(&limited))
        .await
        .unwrap();
    assert_eq!(store.use_token(&[14; 32]).await.unwrap(), Some(1));
    assert_eq!(store.use_token(&[14; 32]).await.unwrap(), Some(0));
    assert_eq!(store.use_token(&[14; 32]).await.unwrap(), None);
    assert_eq!(store.get_token(&[14; 32]).await.unwrap(), None);

    // Expiry and tidy.
    let expiring = TokenRecord {
        expires_at: Some(100),
        ..token(15, "expiring", None)
    };
    store
        .put_tokens(std::slice::from_ref(&expiring))
        .await
        .unwrap();
    store.set_token_expiry(&[15; 32], 200).await.unwrap();
    assert_eq!(store.tidy_tokens(150).await.unwrap(), Vec::<Vec<u8>>::new());
    assert_eq!(store.tidy_tokens(200).await.unwrap(), vec![vec![15; 32]]);
}

fn role(mount: &MountRecord, name: &str, role_id: &str) -> AppRoleRecord {
    AppRoleRecord {
        tenant: mount.tenant,
        mount: mount.id,
        name: name.to_owned(),
        role_id: role_id.to_owned(),
        bind_secret_id: true,
        secret_id_num_uses: 3,
        secret_id_ttl: 600,
        secret_id_bound_cidrs: vec!["10.0.0.0/8".to_owned()],
        token_bound_cidrs: vec!["10.1.0.0/16".to_owned()],
        token_policies: vec!["app-enc".to_owned()],
        token_ttl: 3600,
        token_max_ttl: 7200,
        token_explicit_max_ttl: 0,
        token_num_uses: 5,
        token_no_default_policy: true,
        token_period: 86_400,
        created_at: 9,
    }
}

/// Secret ID `hash` of `role`, with `uses` and `expires_at`.
pub(crate) fn secret_id(
    role: &AppRoleRecord,
    hash: u8,
    uses: Option<u64>,
    expires_at: Option<i64>,
) -> SecretIdRecord {
    SecretIdRecord {
        hash: vec![hash; 32],
        accessor: format!("accessor-{hash}"),
        tenant: role.tenant,
        mount: role.mount,
        role_name: role.name.clone(),
        metadata: [("env".to_owned(), "prod".to_owned())].into(),
        cidr_list: vec!["10.2.0.0/16".to_owned()],
        token_bound_cidrs: Vec::new(),
        uses_remaining: uses,
        num_uses: uses.unwrap_or(0),
        ttl: 600,
        created_at: 10,
        expires_at,
    }
}

async fn approle(store: &dyn Store) {
    let tenant = TenantId::ROOT;
    let auth = MountRecord {
        kind: "approle".to_owned(),
        ..mount(tenant, "auth/approle/")
    };
    store.create_mount(&auth).await.unwrap();
    let other_mount = MountRecord {
        kind: "approle".to_owned(),
        ..mount(tenant, "auth/other/")
    };
    store.create_mount(&other_mount).await.unwrap();

    // Roles: by name and by role_id, unique role_ids per mount, updates keep secret_ids.
    let billing = role(&auth, "billing", "rid-billing");
    store.put_approle_role(&billing).await.unwrap();
    assert_eq!(
        store
            .get_approle_role(tenant, auth.id, "billing")
            .await
            .unwrap(),
        Some(billing.clone())
    );
    let by_role_id = |tenant, role_id| store.get_approle_role_by_role_id(tenant, auth.id, role_id);
    assert_eq!(
        by_role_id(tenant, "rid-billing").await.unwrap(),
        Some(billing.clone())
    );
    assert!(matches!(
        store
            .put_approle_role(&role(&auth, "payroll", "rid-billing"))
            .await,
        Err(StoreError::Conflict)
    ));
    store
        .put_approle_role(&role(&other_mount, "billing", "rid-billing"))
        .await
        .unwrap();
    let other_tenant = TenantId::random();
    assert_eq!(
        by_role_id(other_tenant, "rid-billing").await.unwrap(),
        None,
        "roles resolve only within their tenant"
    );
    store
        .put_approle_role(&role(&auth, "payroll", "rid-payroll"))
        .await
        .unwrap();
    assert_eq!(
        store.list_approle_roles(tenant, auth.id).await.unwrap(),
        vec!["billing", "payroll"]
    );

    // Secret ids: by hash and by accessor, only within their role.
    let billing_secret_id =
        |hash: &'static [u8]| store.get_approle_secret_id(tenant, auth.id, "billing", hash);
    let use_billing_secret_id =
        |hash: &'static [u8]| store.use_approle_secret_id(tenant, auth.id, "billing", hash);
    let billing_accessors = || store.list_approle_secret_id_accessors(tenant, auth.id, "billing");
    let limited = secret_id(&billing, 1, Some(2), Some(1000));
    store.put_approle_secret_id(&limited).await.unwrap();
    assert!(matches!(
        store.put_approle_secret_id(&limited).await,
        Err(StoreError::Conflict)
    ));
    let updated = AppRoleRecord {
        role_id: "rid-billing-2".to_owned(),
        token_ttl: 60,
        ..billing.clone()
    };
    store.put_approle_role(&updated).await.unwrap();
    assert_eq!(by_role_id(tenant, "rid-billing").await.unwrap(), None);
    assert_eq!(
        billing_secret_id(&[1; 32]).await.unwrap(),
        Some(limited.clone()),
        "updating a role keeps its secret_ids"
    );
    assert_eq!(
        store
            .get_approle_secret_id_by_accessor(tenant, auth.id, "billing", "accessor-1")
            .await
            .unwrap(),
        Some(limited.clone())
    );
    for (t, m, r) in [
        (tenant, auth.id, "payroll"),
        (tenant, other_mount.id, "billing"),
        (other_tenant, auth.id, "billing"),
    ] {
        let hash = &[1; 32];
        assert_eq!(
            store.get_approle_secret_id(t, m, r, hash).await.unwrap(),
            None
        );
        let by_accessor = store.get_approle_secret_id_by_accessor(t, m, r, "accessor-1");
        assert_eq!(by_accessor.await.unwrap(), None);
        assert_eq!(
            store.use_approle_secret_id(t, m, r, hash).await.unwrap(),
            None
        );
    }

    // Uses are consumed one at a time; the last use deletes the secret_id.
    assert_eq!(use_billing_secret_id(&[1; 32]).await.unwrap(), Some(1));
    assert_eq!(use_billing_secret_id(&[1; 32]).await.unwrap(), Some(0));
    assert_eq!(use_billing_secret_id(&[1; 32]).await.unwrap(), None);
    assert_eq!(billing_secret_id(&[1; 32]).await.unwrap(), None);
    // Unlimited secret_ids are not use-counted.
    store
        .put_approle_secret_id(&secret_id(&billing, 2, None, None))
        .await
        .unwrap();
    assert_eq!(use_billing_secret_id(&[2; 32]).await.unwrap(), None);
    assert!(billing_secret_id(&[2; 32]).await.unwrap().is_some());

    // Listing, destruction, tidy in batches.
    for hash in 3..8 {
        let expires_at = Some(100 + i64::from(hash));
        let record = secret_id(&billing, hash, None, expires_at);
        store.put_approle_secret_id(&record).await.unwrap();
    }
    assert_eq!(billing_accessors().await.unwrap().len(), 6);
    let delete = || store.delete_approle_secret_id(tenant, auth.id, "billing", &[3; 32]);
    assert!(delete().await.unwrap());
    assert!(!delete().await.unwrap());
    let tidy = |mount: MountId, now: i64, limit: u32| {
        store.tidy_approle_secret_ids(tenant, mount, now, limit)
    };
    assert_eq!(
        tidy(other_mount.id, 1_000, 10).await.unwrap(),
        0,
        "tidy stays within its mount"
    );
    assert_eq!(tidy(auth.id, 106, 2).await.unwrap(), 2);
    assert_eq!(tidy(auth.id, 106, 2).await.unwrap(), 1);
    assert_eq!(
        billing_accessors().await.unwrap(),
        vec!["accessor-2", "accessor-7"]
    );

    // Deleting a role deletes its secret_ids; disabling a mount deletes its roles.
    let delete_role = || store.delete_approle_role(tenant, auth.id, "billing");
    assert!(delete_role().await.unwrap());
    assert!(!delete_role().await.unwrap());
    store.put_approle_role(&billing).await.unwrap();
    assert!(billing_accessors().await.unwrap().is_empty());
    store
        .put_approle_secret_id(&secret_id(&billing, 9, None, None))
        .await
        .unwrap();
    assert!(store.delete_mount(tenant, auth.id).await.unwrap());
    assert!(store
        .list_approle_roles(tenant, auth.id)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(billing_secret_id(&[9; 32]).await.unwrap(), None);
    assert!(store.delete_mount(tenant, other_mount.id).await.unwrap());
}

async fn policies(store: &dyn Store) {
    let tenant = TenantId::ROOT;
    assert_eq!(store.get_policy(tenant, "app").await.unwrap(), None);
    store.put_policy(tenant, "app", "one", 1).await.unwrap();
    store.put_policy(tenant, "app", "two", 2).await.unwrap();
    store.put_policy(tenant, "ops", "x", 2).await.unwrap();
    assert_eq!(
        store.get_policy(tenant, "app").await.unwrap().as_deref(),
        Some("two")
    );
    assert_eq!(
        store.list_policies(tenant).await.unwrap(),
        vec!["app", "ops"]
    );
    assert_eq!(
        store.get_policy(TenantId::random(), "app").await.unwrap(),
        None
    );
    assert!(store.delete_policy(tenant, "ops").await.unwrap());
    assert!(!store.delete_policy(tenant, "ops").await.unwrap());
}

async fn keys(store: &dyn Store) {
    let tenant = TenantId::ROOT;
    let m = mount(tenant, "keys/");
    store.create_mount(&m).await.unwrap();
    let (record, first) = key(tenant, m.id, "k");
    store.create_key(&record, &first).await.unwrap();
    let (dup, dup_version) = key(tenant, m.id, "k");
    assert!(matches!(
        store.create_key(&dup, &dup_version).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        store.get_key(tenant, m.id, "k").await.unwrap(),
        Some(record.clone())
    );
    assert_eq!(
        store.list_keys(tenant, m.id).await.unwrap(),
        vec!["k".to_owned()]
    );

    // Rotation is a compare-and-set on the latest version: exactly one of two racers wins.
    let second = KeyVersionRecord {
        version: 2,
        created_at: 20,
        ..first.clone()
    };
    assert!(store.add_key_version(tenant, 1, &second).await.unwrap());
    assert!(!store.add_key_version(tenant, 1, &second).await.unwrap());
    let stored = store.get_key(tenant, m.id, "k").await.unwrap().unwrap();
    assert_eq!((stored.latest_version, stored.rotated_at), (2, 20));
    let versions = store.get_key_versions(tenant, record.id).await.unwrap();
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(versions[0], first, "a version reads back as written");

    let mut configured = stored.clone();
    configured.min_decryption_version = 2;
    configured.deletion_allowed = true;
    configured.auto_rotate_period = 3600;
    configured.options.exportable = true;
    store.update_key_config(&configured).await.unwrap();
    assert_eq!(
        store.get_key(tenant, m.id, "k").await.unwrap(),
        Some(configured.clone())
    );
    assert!(store
        .list_auto_rotating_keys()
        .await
        .unwrap()
        .iter()
        .any(|k| k.id == record.id));

    // Trimming: never above either min version, never lowered; the versions below go.
    let third = KeyVersionRecord {
        version: 3,
        created_at: 30,
        ..first.clone()
    };
    assert!(store.add_key_version(tenant, 2, &third).await.unwrap());
    expectation_failed(store.trim_key_versions(tenant, record.id, 2).await);
    configured.min_encryption_version = 3;
    store.update_key_config(&configured).await.unwrap();
    expectation_failed(store.trim_key_versions(tenant, record.id, 3).await);
    let trimmed = store.trim_key_versions(tenant, record.id, 2).await.unwrap();
    assert_eq!(
        trimmed,
        vec![first.clone()],
        "the trimmed versions, as stored"
    );
    assert_eq!(
        key_versions(store, tenant, record.id)
            .await
            .iter()
            .map(|v| v.version)
            .collect::<Vec<_>>(),
        vec![2, 3]
    );
    let stored = store.get_key(tenant, m.id, "k").await.unwrap().unwrap();
    assert_eq!(stored.min_available_version, 2);
    // Again at the same value: nothing more goes.
    assert!(store
        .trim_key_versions(tenant, record.id, 2)
        .await
        .unwrap()
        .is_empty());
    expectation_failed(store.trim_key_versions(tenant, record.id, 1).await);
    expectation_failed(
        store
            .trim_key_versions(TenantId::random(), record.id, 2)
            .await,
    );
    // A configuration read before the trim cannot lower min_decryption_version below it.
    let mut stale = configured.clone();
    stale.min_decryption_version = 1;
    store.update_key_config(&stale).await.unwrap();
    assert_eq!(
        store
            .get_key(tenant, m.id, "k")
            .await
            .unwrap()
            .unwrap()
            .min_decryption_version,
        2
    );

    // Another tenant sees nothing of it.
    let other = TenantId::random();
    assert_eq!(store.get_key(other, m.id, "k").await.unwrap(), None);
    assert!(key_versions(store, other, record.id).await.is_empty());

    store.delete_key(tenant, record.id).await.unwrap();
    assert_eq!(store.get_key(tenant, m.id, "k").await.unwrap(), None);
    assert!(key_versions(store, tenant, record.id).await.is_empty());
}

/// A key restored from a backup: with all its versions at once, under its own id; over a key
/// only with `replace`; a count never goes backwards when a key is restored over itself.
async fn restore(store: &dyn Store) {
    let tenant = TenantId::ROOT;
    let m = mount(tenant, "restore/");
    store.create_mount(&m).await.unwrap();
    let (mut record, first) = key(tenant, m.id, "r");
    record.latest_version = 3;
    record.min_available_version = 2;
    record.min_decryption_version = 2;
    record.min_encryption_version = 2;
    let versions: Vec<KeyVersionRecord> = (2..=3)
        .map(|version| KeyVersionRecord {
            version,
            created_at: i64::from(version) * 10,
            counter_reserved: u64::from(version) * 100,
            ..first.clone()
        })
        .collect();
    assert_eq!(
        store.restore_key(&record, &versions, false).await.unwrap(),
        None
    );
    assert_eq!(
        store.get_key(tenant, m.id, "r").await.unwrap(),
        Some(record.clone()),
        "every field, min_available_version too, reads back as restored"
    );
    assert_eq!(key_versions(store, tenant, record.id).await, versions);

    // Without replace, a taken name is a conflict and nothing changes.
    let (other, other_first) = key(tenant, m.id, "r");
    assert!(matches!(
        store
            .restore_key(&other, std::slice::from_ref(&other_first), false)
            .await,
        Err(StoreError::Conflict)
    ));
    // The key id of another key (here under another name) is a conflict, even with replace.
    let mut same_id = record.clone();
    same_id.name = "elsewhere".to_owned();
    let restored = store.restore_key(&same_id, &versions, true).await;
    assert!(
        matches!(restored, Err(StoreError::Conflict)),
        "{restored:?}"
    );
    assert!(store
        .get_key(tenant, m.id, "elsewhere")
        .await
        .unwrap()
        .is_none());
    assert_eq!(key_versions(store, tenant, record.id).await, versions);

    // Restored over itself: counts never go below what the store holds.
    store
        .reserve_counter(tenant, record.id, 3, 1_000, u64::MAX)
        .await
        .unwrap();
    let mut older = record.clone();
    older.deletion_allowed = true;
    assert_eq!(
        store.restore_key(&older, &versions, true).await.unwrap(),
        Some(record.id)
    );
    let counts: Vec<u64> = key_versions(store, tenant, record.id)
        .await
        .iter()
        .map(|v| v.counter_reserved)
        .collect();
    assert_eq!(counts, vec![200, 1_300]);
    assert_eq!(
        store.get_key(tenant, m.id, "r").await.unwrap(),
        Some(older.clone())
    );

    // Replacing another key of that name: it goes with its versions.
    let (fresh, fresh_first) = key(tenant, m.id, "r");
    assert_eq!(
        store
            .restore_key(&fresh, std::slice::from_ref(&fresh_first), true)
            .await
            .unwrap(),
        Some(record.id)
    );
    assert!(key_versions(store, tenant, record.id).await.is_empty());
    assert_eq!(
        key_versions(store, tenant, fresh.id).await,
        vec![fresh_first]
    );
    assert!(store.delete_mount(tenant, m.id).await.unwrap());
}

async fn counters(store: &dyn Store) {
    let tenant = TenantId::ROOT;
    let m = mount(tenant, "counters/");
    store.create_mount(&m).await.unwrap();
    let (record, first) = key(tenant, m.id, "c");
    store.create_key(&record, &first).await.unwrap();
    let reserve = |version: u32| store.reserve_counter(tenant, record.id, version, 100, 250);
    assert_eq!(reserve(1).await.unwrap(), (0, 100));
    assert_eq!(reserve(1).await.unwrap(), (100, 200));
    // Capped at the limit, then empty windows.
    assert_eq!(reserve(1).await.unwrap(), (200, 250));
    assert_eq!(reserve(1).await.unwrap(), (250, 250));
    assert_eq!(
        store.get_key_versions(tenant, record.id).await.unwrap()[0].counter_reserved,
        250
    );
    assert!(reserve(9).await.is_err());
}

fn entry(value: serde_json::Value, version: u64) -> Option<MountEntry> {
    Some(MountEntry { value, version })
}

fn expectation_failed<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    assert!(
        matches!(result, Err(StoreError::ExpectationFailed)),
        "{result:?}"
    );
}

async fn mount_entries(store: &dyn Store) {
    let tenant = TenantId::ROOT;
    let m = mount(tenant, "entries/");
    store.create_mount(&m).await.unwrap();
    let get = |key: &'static str| store.get_entry(tenant, m.id, key);
    // Whatever JSON goes in comes out: nesting, big numbers, any text (NUL included).
    let document = json!({
        "name": "web", "nested": {"list": [1, 2.5, null, true]},
        "big": u64::MAX, "text": "é\u{0}\n\"'%_",
    });
    assert_eq!(get("doc").await.unwrap(), None);

    // Creation only where nothing is: version 1, and a second creation changes nothing.
    assert_eq!(
        store
            .put_entry(tenant, m.id, "doc", &document, Expect::Absent)
            .await
            .unwrap(),
        1
    );
    assert_eq!(get("doc").await.unwrap(), entry(document.clone(), 1));
    expectation_failed(
        store
            .put_entry(tenant, m.id, "doc", &json!("other"), Expect::Absent)
            .await,
    );
    assert_eq!(get("doc").await.unwrap(), entry(document.clone(), 1));

    // Each write adds one; a write expecting a version succeeds only at that version.
    assert_eq!(
        store
            .put_entry(tenant, m.id, "doc", &json!(2), Expect::Any)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .put_entry(tenant, m.id, "doc", &json!(3), Expect::Version(2))
            .await
            .unwrap(),
        3
    );
    for stale in [0, 1, 2, 4, u64::MAX] {
        expectation_failed(
            store
                .put_entry(tenant, m.id, "doc", &json!("stale"), Expect::Version(stale))
                .await,
        );
    }
    assert_eq!(get("doc").await.unwrap(), entry(json!(3), 3));

    // An unconditional write creates at version 1; a versioned one creates nothing.
    expectation_failed(
        store
            .put_entry(tenant, m.id, "new", &json!(1), Expect::Version(1))
            .await,
    );
    assert_eq!(get("new").await.unwrap(), None);
    assert_eq!(
        store
            .put_entry(tenant, m.id, "new", &json!(1), Expect::Any)
            .await
            .unwrap(),
        1
    );

    // Deletes: expecting the wrong version, or absence, deletes nothing.
    expectation_failed(
        store
            .delete_entry(tenant, m.id, "doc", Expect::Version(2))
            .await,
    );
    expectation_failed(
        store
            .delete_entry(tenant, m.id, "doc", Expect::Absent)
            .await,
    );
    assert_eq!(get("doc").await.unwrap(), entry(json!(3), 3));
    assert!(store
        .delete_entry(tenant, m.id, "doc", Expect::Version(3))
        .await
        .unwrap());
    assert_eq!(get("doc").await.unwrap(), None);
    // Nothing to delete: false, unless a version was expected.
    assert!(!store
        .delete_entry(tenant, m.id, "doc", Expect::Any)
        .await
        .unwrap());
    assert!(!store
        .delete_entry(tenant, m.id, "doc", Expect::Absent)
        .await
        .unwrap());
    expectation_failed(
        store
            .delete_entry(tenant, m.id, "doc", Expect::Version(3))
            .await,
    );
    assert!(store
        .delete_entry(tenant, m.id, "new", Expect::Any)
        .await
        .unwrap());
    // A deleted entry leaves nothing behind: written again, it starts over.
    assert_eq!(
        store
            .put_entry(tenant, m.id, "doc", &json!("again"), Expect::Absent)
            .await
            .unwrap(),
        1
    );

    // The longest key the core accepts fits.
    let long = "k".repeat(keybroker_core::mount_storage::MAX_KEY_LEN);
    store
        .put_entry(tenant, m.id, &long, &json!(1), Expect::Absent)
        .await
        .unwrap();
    assert_eq!(
        store.get_entry(tenant, m.id, &long).await.unwrap(),
        entry(json!(1), 1)
    );
}

async fn mount_entry_lists(store: &dyn Store) {
    let tenant = TenantId::ROOT;
    let m = mount(tenant, "entry-lists/");
    store.create_mount(&m).await.unwrap();
    assert!(store
        .list_entries(tenant, m.id, "")
        .await
        .unwrap()
        .is_empty());
    // Characters that are patterns in LIKE or GLOB, code points at the edges of UTF-8
    // ranges, and keys that share a prefix with one character more or less.
    let keys = [
        "config",
        "role",
        "role/",
        "role/a",
        "role/a/x",
        "role/b",
        "role0",
        "rolex",
        "p%1",
        "p_2",
        "pa3",
        "P%4",
        "p*5",
        "p[6",
        "\u{7f}",
        "é/1",
        "\u{D7FF}",
        "\u{E000}",
        "\u{10FFFF}",
        "\u{10FFFF}z",
    ];
    for key in keys {
        store
            .put_entry(tenant, m.id, key, &json!(key), Expect::Absent)
            .await
            .unwrap();
    }
    let list = |prefix: &'static str| store.list_entries(tenant, m.id, prefix);
    // Everything, in byte order (code point order: UTF-8 sorts so).
    let mut sorted: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    sorted.sort();
    assert_eq!(list("").await.unwrap(), sorted);
    assert_eq!(
        list("role/").await.unwrap(),
        vec!["role/", "role/a", "role/a/x", "role/b"]
    );
    assert_eq!(
        list("role").await.unwrap(),
        vec!["role", "role/", "role/a", "role/a/x", "role/b", "role0", "rolex"]
    );
    assert_eq!(list("role/a/").await.unwrap(), vec!["role/a/x"]);
    assert_eq!(list("p%").await.unwrap(), vec!["p%1"]);
    assert_eq!(list("p_").await.unwrap(), vec!["p_2"]);
    assert_eq!(list("p*").await.unwrap(), vec!["p*5"]);
    assert_eq!(list("p[").await.unwrap(), vec!["p[6"]);
    assert_eq!(list("P").await.unwrap(), vec!["P%4"], "case matters");
    assert_eq!(list("é").await.unwrap(), vec!["é/1"]);
    assert_eq!(list("\u{D7FF}").await.unwrap(), vec!["\u{D7FF}"]);
    assert_eq!(
        list("\u{10FFFF}").await.unwrap(),
        vec!["\u{10FFFF}", "\u{10FFFF}z"]
    );
    assert!(list("role/c").await.unwrap().is_empty());
    assert!(list("zzz").await.unwrap().is_empty());
    assert_eq!(list("config").await.unwrap(), vec!["config"]);
}

/// The entry `config` of `mount` in `tenant` is `expected`.
async fn assert_config(
    store: &dyn Store,
    tenant: TenantId,
    mount: MountId,
    expected: Option<MountEntry>,
) {
    let found = store.get_entry(tenant, mount, "config").await.unwrap();
    assert_eq!(found, expected, "{tenant:?} {mount:?}");
}

async fn mount_entries_isolation_and_cascades(store: &dyn Store) {
    let root = TenantId::ROOT;
    let tenant = TenantId::random();
    store
        .create_tenant(&TenantRecord {
            id: tenant,
            name: "entries".into(),
            created_at: 0,
        })
        .await
        .unwrap();
    let (a, b, theirs) = (
        mount(root, "isolated-a/"),
        mount(root, "isolated-b/"),
        mount(tenant, "isolated-a/"),
    );
    for m in [&a, &b, &theirs] {
        store.create_mount(m).await.unwrap();
    }
    // The same key in three mounts: three entries with their own versions.
    for (m, writes) in [(&a, 1), (&b, 2), (&theirs, 3)] {
        for _ in 0..writes {
            store
                .put_entry(m.tenant, m.id, "config", &json!(m.path), Expect::Any)
                .await
                .unwrap();
        }
    }
    assert_config(store, root, a.id, entry(json!("isolated-a/"), 1)).await;
    assert_config(store, root, b.id, entry(json!("isolated-b/"), 2)).await;
    assert_config(store, tenant, theirs.id, entry(json!("isolated-a/"), 3)).await;
    // A mount is reached only through its own tenant: nothing read, listed, written or
    // deleted through another.
    assert_config(store, root, theirs.id, None).await;
    assert_config(store, tenant, a.id, None).await;
    assert!(store
        .list_entries(root, theirs.id, "")
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(
        store
            .put_entry(root, theirs.id, "config", &json!("x"), Expect::Any)
            .await,
        Err(StoreError::Gone)
    ));
    assert!(matches!(
        store
            .put_entry(root, theirs.id, "other", &json!("x"), Expect::Absent)
            .await,
        Err(StoreError::Gone)
    ));
    expectation_failed(
        store
            .put_entry(root, theirs.id, "config", &json!("x"), Expect::Version(3))
            .await,
    );
    assert!(!store
        .delete_entry(root, theirs.id, "config", Expect::Any)
        .await
        .unwrap());
    assert_config(store, tenant, theirs.id, entry(json!("isolated-a/"), 3)).await;

    // Deleting a mount deletes its entries and no other; none can be written afterwards.
    store
        .put_entry(root, a.id, "role/x", &json!(1), Expect::Any)
        .await
        .unwrap();
    assert!(store.delete_mount(root, a.id).await.unwrap());
    assert_config(store, root, a.id, None).await;
    assert!(store.list_entries(root, a.id, "").await.unwrap().is_empty());
    assert!(matches!(
        store
            .put_entry(root, a.id, "config", &json!(1), Expect::Any)
            .await,
        Err(StoreError::Gone)
    ));
    assert_config(store, root, b.id, entry(json!("isolated-b/"), 2)).await;
    assert_config(store, tenant, theirs.id, entry(json!("isolated-a/"), 3)).await;

    // Deleting a tenant deletes its mounts' entries, and nobody else's.
    assert!(store.delete_tenant(tenant).await.unwrap());
    assert_config(store, tenant, theirs.id, None).await;
    assert!(store
        .list_entries(tenant, theirs.id, "")
        .await
        .unwrap()
        .is_empty());
    assert_config(store, root, b.id, entry(json!("isolated-b/"), 2)).await;
}

/// The counter windows reserved by concurrent callers, sorted, tile `0..end`: no overlap,
/// no gap.
pub(crate) fn assert_windows_tile(mut windows: Vec<(u64, u64)>, end: u64) {
    windows.sort_unstable();
    assert_eq!(windows.first().map(|window| window.0), Some(0));
    for pair in windows.windows(2) {
        assert_eq!(
            pair[0].1, pair[1].0,
            "windows overlap or leave gaps: {windows:?}"
        );
    }
    assert_eq!(windows.last().map(|window| window.1), Some(end));
}

/// Two stores on one database (two nodes, or two connection pools on one SQLite file)
/// racing compare-and-sets on one entry. In each round every writer reads the entry, then
/// all of them at once write it back one higher, expecting the version they read: exactly
/// one must win, whichever store it came through, and the entry must count every win.
pub(crate) async fn racing_compare_and_set(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    const WRITERS_PER_STORE: usize = 8;
    const ROUNDS: u64 = 10;
    let writers = 2 * WRITERS_PER_STORE;
    let tenant = TenantId::ROOT;
    let m = mount(tenant, "race/");
    a.create_mount(&m).await.unwrap();
    assert_eq!(
        b.put_entry(
            tenant,
            m.id,
            "counter",
            &json!({"count": 0}),
            Expect::Absent
        )
        .await
        .unwrap(),
        1
    );
    // Every read of a round comes before its writes, and every write before the next
    // round's reads.
    let barrier = Arc::new(tokio::sync::Barrier::new(writers));
    let mut tasks = Vec::new();
    for store in [&a, &b]
        .into_iter()
        .flat_map(|store| std::iter::repeat_n(store, WRITERS_PER_STORE))
    {
        let (store, barrier) = (store.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let mut won = Vec::new();
            for _ in 0..ROUNDS {
                let read = store
                    .get_entry(tenant, m.id, "counter")
                    .await
                    .unwrap()
                    .unwrap();
                let count = read.value["count"].as_u64().unwrap();
                let next = json!({ "count": count + 1 });
                barrier.wait().await;
                match store
                    .put_entry(
                        tenant,
                        m.id,
                        "counter",
                        &next,
                        Expect::Version(read.version),
                    )
                    .await
                {
                    Ok(version) => {
                        assert_eq!(version, read.version + 1);
                        won.push(read.version);
                    }
                    Err(StoreError::ExpectationFailed) => {}
                    Err(other) => panic!("a racing write failed: {other}"),
                }
                barrier.wait().await;
            }
            won
        }));
    }
    let mut won = Vec::new();
    for task in tasks {
        won.extend(task.await.unwrap());
    }
    // One winner per round, so per version: versions 1 to ROUNDS, each won once.
    won.sort_unstable();
    assert_eq!(won, (1..=ROUNDS).collect::<Vec<_>>());
    for store in [&a, &b] {
        assert_eq!(
            store.get_entry(tenant, m.id, "counter").await.unwrap(),
            entry(json!({ "count": ROUNDS }), ROUNDS + 1)
        );
    }
}

/// Revoking a token alone orphans its children; accessors list per tenant; token roles live
/// per tenant and go with it.
async fn token_orphans_accessors_and_roles(store: &dyn Store) {
    let tenant = TenantId::random();
    store
        .create_tenant(&TenantRecord {
            id: tenant,
            name: "token-roles".into(),
            created_at: 0,
        })
        .await
        .unwrap();
    let in_tenant = |hash, accessor: &str, parent: Option<&str>| TokenRecord {
        tenant,
        ..token(hash, accessor, parent)
    };
    store
        .put_tokens(&[
            in_tenant(40, "o-parent", None),
            in_tenant(41, "o-child", Some("o-parent")),
            in_tenant(42, "o-grandchild", Some("o-child")),
        ])
        .await
        .unwrap();
    assert_eq!(
        store.list_token_accessors(tenant).await.unwrap(),
        ["o-child", "o-grandchild", "o-parent"]
    );
    // Another tenant's accessor is not found there.
    assert!(store
        .revoke_token_orphan(TenantId::ROOT, "o-parent")
        .await
        .unwrap()
        .is_empty());
    let mut changed = store.revoke_token_orphan(tenant, "o-parent").await.unwrap();
    changed.sort();
    assert_eq!(changed, [vec![40; 32], vec![41; 32]]);
    assert_eq!(store.get_token(&[40; 32]).await.unwrap(), None);
    let child = store.get_token(&[41; 32]).await.unwrap().unwrap();
    assert_eq!(child.parent_accessor, None, "the child is an orphan now");
    let grandchild = store.get_token(&[42; 32]).await.unwrap().unwrap();
    assert_eq!(grandchild.parent_accessor.as_deref(), Some("o-child"));

    let role = json!({"allowed_policies": ["a"]});
    store.put_token_role(tenant, "r", &role).await.unwrap();
    store.put_token_role(tenant, "a", &json!({})).await.unwrap();
    assert_eq!(store.get_token_role(tenant, "r").await.unwrap(), Some(role));
    assert_eq!(
        store.get_token_role(TenantId::ROOT, "r").await.unwrap(),
        None
    );
    assert!(store
        .list_token_roles(TenantId::ROOT)
        .await
        .unwrap()
        .is_empty());
    let replaced = json!({"allowed_policies": ["b"]});
    store.put_token_role(tenant, "r", &replaced).await.unwrap();
    assert_eq!(
        store.get_token_role(tenant, "r").await.unwrap(),
        Some(replaced)
    );
    assert_eq!(store.list_token_roles(tenant).await.unwrap(), ["a", "r"]);
    assert!(!store.delete_token_role(TenantId::ROOT, "r").await.unwrap());
    assert!(store.delete_token_role(tenant, "r").await.unwrap());
    assert!(!store.delete_token_role(tenant, "r").await.unwrap());
    assert!(store.delete_tenant(tenant).await.unwrap());
    assert_eq!(store.get_token_role(tenant, "a").await.unwrap(), None);
}

async fn wrapped_responses(store: &dyn Store) {
    use keybroker_core::store::{WrappedResponseRecord, WrappedResponseRenewal};
    let tenant = TenantId::random();
    store
        .create_tenant(&TenantRecord {
            id: tenant,
            name: "wrapping".into(),
            created_at: 0,
        })
        .await
        .unwrap();
    let record = |hash: u8, expires_at: i64| WrappedResponseRecord {
        hash: vec![hash; 32],
        id: format!("id-{hash}"),
        tenant,
        accessor: format!("acc-{hash}"),
        created_at: 100,
        expires_at,
        ttl: 60,
        creation_path: "auth/approle/role/r/secret-id".into(),
        wrapped_accessor: "wrapped".into(),
        sealed: vec![hash, 1, 2, 3],
    };
    store.put_wrapped_response(&record(1, 160)).await.unwrap();
    store.put_wrapped_response(&record(2, 160)).await.unwrap();
    store.put_wrapped_response(&record(3, 110)).await.unwrap();
    assert!(matches!(
        store.put_wrapped_response(&record(1, 160)).await,
        Err(StoreError::Conflict)
    ));
    // Only in its tenant, only while live.
    let get = |t, h: u8, now| async move { store.get_wrapped_response(t, &[h; 32], now).await };
    assert_eq!(get(tenant, 1, 150).await.unwrap(), Some(record(1, 160)));
    assert_eq!(get(TenantId::ROOT, 1, 150).await.unwrap(), None);
    assert_eq!(
        get(tenant, 1, 160).await.unwrap(),
        None,
        "expired at its expiry"
    );
    // Taken once: another tenant does not consume it, an expired one is not answered.
    let take = |t, h: u8, now| async move { store.take_wrapped_response(t, &[h; 32], now).await };
    assert_eq!(take(TenantId::ROOT, 1, 150).await.unwrap(), None);
    assert_eq!(take(tenant, 1, 150).await.unwrap(), Some(record(1, 160)));
    assert_eq!(take(tenant, 1, 150).await.unwrap(), None);
    assert_eq!(take(tenant, 3, 120).await.unwrap(), None);
    // A rewrap moves the response to a new hash: the old one is gone.
    let renewal = WrappedResponseRenewal {
        hash: vec![9; 32],
        accessor: "acc-9".into(),
        created_at: 150,
        expires_at: 210,
    };
    assert_eq!(
        store
            .rewrap_wrapped_response(TenantId::ROOT, &[2; 32], 150, &renewal)
            .await
            .unwrap(),
        None
    );
    let moved = store
        .rewrap_wrapped_response(tenant, &[2; 32], 150, &renewal)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(moved.sealed, record(2, 160).sealed);
    assert_eq!((moved.id.as_str(), moved.ttl), ("id-2", 60));
    assert_eq!((moved.accessor.as_str(), moved.expires_at), ("acc-9", 210));
    assert_eq!(get(tenant, 2, 150).await.unwrap(), None);
    assert_eq!(get(tenant, 9, 200).await.unwrap(), Some(moved));
    // Tidy deletes the expired (3) and keeps the live (9).
    assert_eq!(store.tidy_wrapped_responses(200).await.unwrap(), 1);
    assert!(get(tenant, 9, 200).await.unwrap().is_some());
    assert!(store.delete_tenant(tenant).await.unwrap());
    assert_eq!(store.tidy_wrapped_responses(0).await.unwrap(), 0);
    assert_eq!(get(tenant, 9, 200).await.unwrap(), None);
}
