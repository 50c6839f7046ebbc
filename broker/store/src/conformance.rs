//! The store conformance suite: the same assertions for every `Store` implementation.
//! Each adapter's tests call [`run_all`] on a fresh, empty store.

use keybroker_core::{
    store::{
        AppRoleRecord, KeyMode, KeyRecord, KeyVersionRecord, MountRecord, SecretIdRecord, Store,
        StoreError, TenantRecord, TokenRecord,
    },
    KeyId, MountId, TenantId,
};

fn mount(tenant: TenantId, path: &str) -> MountRecord {
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

fn key(tenant: TenantId, mount: MountId, name: &str) -> (KeyRecord, KeyVersionRecord) {
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
        min_decryption_version: 1,
        min_encryption_version: 0,
        deletion_allowed: false,
        // Non-default values, so that a store dropping them fails the round trip.
        bound: true,
        auto_rotate_period: 0,
        latest_version: 1,
        created_at: 10,
        rotated_at: 10,
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
pub async fn run_all(store: &dyn Store) {
    meta(store).await;
    mounts(store).await;
    tokens(store).await;
    approle(store).await;
    policies(store).await;
    keys(store).await;
    counters(store).await;
    audit_checkpoints(store).await;
}

async fn audit_checkpoints(store: &dyn Store) {
    assert_eq!(store.latest_audit_checkpoint("file").await.unwrap(), None);
    store
        .put_audit_checkpoint("file", 1000, &[1; 32])
        .await
        .unwrap();
    assert_eq!(
        store.latest_audit_checkpoint("file").await.unwrap(),
        Some((1000, vec![1; 32]))
    );
    // A lower or equal sequence never replaces the recorded head.
    store
        .put_audit_checkpoint("file", 500, &[2; 32])
        .await
        .unwrap();
    store
        .put_audit_checkpoint("file", 1000, &[3; 32])
        .await
        .unwrap();
    assert_eq!(
        store.latest_audit_checkpoint("file").await.unwrap(),
        Some((1000, vec![1; 32]))
    );
    store
        .put_audit_checkpoint("file", 2000, &[4; 32])
        .await
        .unwrap();
    assert_eq!(
        store.latest_audit_checkpoint("file").await.unwrap(),
        Some((2000, vec![4; 32]))
    );
    // Sinks are independent.
    assert_eq!(store.latest_audit_checkpoint("other").await.unwrap(), None);
    store
        .put_audit_checkpoint("other", 7, &[5; 32])
        .await
        .unwrap();
    assert_eq!(
        store.latest_audit_checkpoint("other").await.unwrap(),
        Some((7, vec![5; 32]))
    );
    assert_eq!(
        store.latest_audit_checkpoint("file").await.unwrap(),
        Some((2000, vec![4; 32]))
    );
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
    assert!(store
        .get_key_versions(tenant, record.id)
        .await
        .unwrap()
        .is_empty());
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
    store
        .put_tokens(&[TokenRecord {
            auth_mount: Some(issuer),
            ..token(23, "late", None)
        }])
        .await
        .unwrap();
    assert!(store.delete_mount(TenantId::ROOT, issuer).await.unwrap());
    assert_eq!(store.get_token(&[23; 32]).await.unwrap(), None);
    assert!(matches!(
        store
            .put_tokens(&[TokenRecord {
                auth_mount: Some(issuer),
                ..token(24, "too-late", None)
            }])
            .await,
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

fn secret_id(
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
    assert_eq!(
        store
            .get_approle_role_by_role_id(tenant, auth.id, "rid-billing")
            .await
            .unwrap(),
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
        store
            .get_approle_role_by_role_id(other_tenant, auth.id, "rid-billing")
            .await
            .unwrap(),
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
    assert_eq!(
        store
            .get_approle_role_by_role_id(tenant, auth.id, "rid-billing")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .get_approle_secret_id(tenant, auth.id, "billing", &[1; 32])
            .await
            .unwrap(),
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
        assert_eq!(
            store
                .get_approle_secret_id(t, m, r, &[1; 32])
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            store
                .get_approle_secret_id_by_accessor(t, m, r, "accessor-1")
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            store
                .use_approle_secret_id(t, m, r, &[1; 32])
                .await
                .unwrap(),
            None
        );
    }

    // Uses are consumed one at a time; the last use deletes the secret_id.
    assert_eq!(
        store
            .use_approle_secret_id(tenant, auth.id, "billing", &[1; 32])
            .await
            .unwrap(),
        Some(1)
    );
    assert_eq!(
        store
            .use_approle_secret_id(tenant, auth.id, "billing", &[1; 32])
            .await
            .unwrap(),
        Some(0)
    );
    assert_eq!(
        store
            .use_approle_secret_id(tenant, auth.id, "billing", &[1; 32])
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .get_approle_secret_id(tenant, auth.id, "billing", &[1; 32])
            .await
            .unwrap(),
        None
    );
    // Unlimited secret_ids are not use-counted.
    store
        .put_approle_secret_id(&secret_id(&billing, 2, None, None))
        .await
        .unwrap();
    assert_eq!(
        store
            .use_approle_secret_id(tenant, auth.id, "billing", &[2; 32])
            .await
            .unwrap(),
        None
    );
    assert!(store
        .get_approle_secret_id(tenant, auth.id, "billing", &[2; 32])
        .await
        .unwrap()
        .is_some());

    // Listing, destruction, tidy in batches.
    for hash in 3..8 {
        store
            .put_approle_secret_id(&secret_id(
                &billing,
                hash,
                None,
                Some(100 + i64::from(hash)),
            ))
            .await
            .unwrap();
    }
    assert_eq!(
        store
            .list_approle_secret_id_accessors(tenant, auth.id, "billing")
            .await
            .unwrap()
            .len(),
        6
    );
    assert!(store
        .delete_approle_secret_id(tenant, auth.id, "billing", &[3; 32])
        .await
        .unwrap());
    assert!(!store
        .delete_approle_secret_id(tenant, auth.id, "billing", &[3; 32])
        .await
        .unwrap());
    assert_eq!(
        store
            .tidy_approle_secret_ids(tenant, other_mount.id, 1_000, 10)
            .await
            .unwrap(),
        0,
        "tidy stays within its mount"
    );
    assert_eq!(
        store
            .tidy_approle_secret_ids(tenant, auth.id, 106, 2)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .tidy_approle_secret_ids(tenant, auth.id, 106, 2)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .list_approle_secret_id_accessors(tenant, auth.id, "billing")
            .await
            .unwrap(),
        vec!["accessor-2", "accessor-7"]
    );

    // Deleting a role deletes its secret_ids; disabling a mount deletes its roles.
    assert!(store
        .delete_approle_role(tenant, auth.id, "billing")
        .await
        .unwrap());
    assert!(!store
        .delete_approle_role(tenant, auth.id, "billing")
        .await
        .unwrap());
    store.put_approle_role(&billing).await.unwrap();
    assert!(store
        .list_approle_secret_id_accessors(tenant, auth.id, "billing")
        .await
        .unwrap()
        .is_empty());
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
    assert_eq!(
        store
            .get_approle_secret_id(tenant, auth.id, "billing", &[9; 32])
            .await
            .unwrap(),
        None
    );
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

    // Another tenant sees nothing of it.
    let other = TenantId::random();
    assert_eq!(store.get_key(other, m.id, "k").await.unwrap(), None);
    assert!(store
        .get_key_versions(other, record.id)
        .await
        .unwrap()
        .is_empty());

    store.delete_key(tenant, record.id).await.unwrap();
    assert_eq!(store.get_key(tenant, m.id, "k").await.unwrap(), None);
    assert!(store
        .get_key_versions(tenant, record.id)
        .await
        .unwrap()
        .is_empty());
}

async fn counters(store: &dyn Store) {
    let tenant = TenantId::ROOT;
    let m = mount(tenant, "counters/");
    store.create_mount(&m).await.unwrap();
    let (record, first) = key(tenant, m.id, "c");
    store.create_key(&record, &first).await.unwrap();
    assert_eq!(
        store
            .reserve_counter(tenant, record.id, 1, 100, 250)
            .await
            .unwrap(),
        (0, 100)
    );
    assert_eq!(
        store
            .reserve_counter(tenant, record.id, 1, 100, 250)
            .await
            .unwrap(),
        (100, 200)
    );
    // Capped at the limit, then empty windows.
    assert_eq!(
        store
            .reserve_counter(tenant, record.id, 1, 100, 250)
            .await
            .unwrap(),
        (200, 250)
    );
    assert_eq!(
        store
            .reserve_counter(tenant, record.id, 1, 100, 250)
            .await
            .unwrap(),
        (250, 250)
    );
    assert_eq!(
        store.get_key_versions(tenant, record.id).await.unwrap()[0].counter_reserved,
        250
    );
    assert!(store
        .reserve_counter(tenant, record.id, 9, 100, 250)
        .await
        .is_err());
}
