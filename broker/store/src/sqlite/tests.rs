use keybroker_core::{
    store::{KeyMode, KeyRecord, KeyVersionRecord, MountRecord, Store},
    KeyId, MountId, TenantId,
};

use super::SqliteStore;

#[tokio::test]
async fn conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
    crate::conformance::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_file_race_a_compare_and_set_with_one_winner_per_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let a = SqliteStore::open(&path).await.unwrap();
    let b = SqliteStore::open(&path).await.unwrap();
    crate::conformance::racing_compare_and_set(std::sync::Arc::new(a), std::sync::Arc::new(b))
        .await;
}

#[tokio::test]
async fn concurrent_reservations_never_overlap() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(SqliteStore::open(&dir.path().join("t.db")).await.unwrap());
    let mount = MountRecord {
        id: MountId::random(),
        tenant: TenantId::ROOT,
        path: "t/".into(),
        kind: "transit".into(),
        description: String::new(),
        config: serde_json::json!({}),
        created_at: 0,
    };
    store.create_mount(&mount).await.unwrap();
    let id = KeyId::random();
    let key = KeyRecord {
        id,
        tenant: TenantId::ROOT,
        mount: mount.id,
        name: "k".into(),
        key_type: "aes256-gcm96".into(),
        backend: "local".into(),
        mode: KeyMode::Envelope,
        backend_reference: None,
        min_decryption_version: 1,
        min_encryption_version: 0,
        deletion_allowed: false,
        bound: false,
        auto_rotate_period: 0,
        latest_version: 1,
        created_at: 0,
        rotated_at: 0,
    };
    let version = KeyVersionRecord {
        key: id,
        version: 1,
        backend_reference: "r".into(),
        wrapped_dek: None,
        payload_format: 2,
        public_key: None,
        created_at: 0,
        counter_reserved: 0,
    };
    store.create_key(&key, &version).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .reserve_counter(TenantId::ROOT, id, 1, 10, 1_000)
                .await
                .unwrap()
        }));
    }
    let mut windows = Vec::new();
    for task in tasks {
        windows.push(task.await.unwrap());
    }
    windows.sort();
    for pair in windows.windows(2) {
        assert_eq!(
            pair[0].1, pair[1].0,
            "windows overlap or leave gaps: {windows:?}"
        );
    }
    assert_eq!(windows.last().unwrap().1, 160);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_logins_consume_a_secret_id_exactly_once_per_use() {
    use keybroker_core::store::{AppRoleRecord, SecretIdRecord};
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(SqliteStore::open(&dir.path().join("t.db")).await.unwrap());
    let mount = MountRecord {
        id: MountId::random(),
        tenant: TenantId::ROOT,
        path: "auth/approle/".into(),
        kind: "approle".into(),
        description: String::new(),
        config: serde_json::json!({}),
        created_at: 0,
    };
    store.create_mount(&mount).await.unwrap();
    let role = AppRoleRecord::new(TenantId::ROOT, mount.id, "r", "rid", 0);
    store.put_approle_role(&role).await.unwrap();
    for (hash, uses) in [(1u8, 1u64), (2, 5)] {
        store
            .put_approle_secret_id(&SecretIdRecord {
                hash: vec![hash; 32],
                accessor: format!("a{hash}"),
                tenant: TenantId::ROOT,
                mount: mount.id,
                role_name: "r".into(),
                metadata: Default::default(),
                cidr_list: Vec::new(),
                token_bound_cidrs: Vec::new(),
                uses_remaining: Some(uses),
                num_uses: uses,
                ttl: 0,
                created_at: 0,
                expires_at: None,
            })
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .use_approle_secret_id(TenantId::ROOT, mount.id, "r", &[hash; 32])
                    .await
                    .unwrap()
            }));
        }
        let mut granted = 0;
        for task in tasks {
            granted += u64::from(task.await.unwrap().is_some());
        }
        assert_eq!(granted, uses, "secret_id with {uses} uses");
    }
}
