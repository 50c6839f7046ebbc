use keybroker_core::{
    store::{MountRecord, Store},
    TenantId,
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
    let mount = crate::conformance::mount(TenantId::ROOT, "t/");
    store.create_mount(&mount).await.unwrap();
    let (key, version) = crate::conformance::key(TenantId::ROOT, mount.id, "k");
    let id = key.id;
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
    crate::conformance::assert_windows_tile(windows, 160);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_logins_consume_a_secret_id_exactly_once_per_use() {
    use keybroker_core::store::AppRoleRecord;
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(SqliteStore::open(&dir.path().join("t.db")).await.unwrap());
    let mount = MountRecord {
        kind: "approle".into(),
        ..crate::conformance::mount(TenantId::ROOT, "auth/approle/")
    };
    store.create_mount(&mount).await.unwrap();
    let role = AppRoleRecord::new(TenantId::ROOT, mount.id, "r", "rid", 0);
    store.put_approle_role(&role).await.unwrap();
    for (hash, uses) in [(1u8, 1u64), (2, 5)] {
        let secret_id = crate::conformance::secret_id(&role, hash, Some(uses), None);
        store.put_approle_secret_id(&secret_id).await.unwrap();
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

#[tokio::test]
async fn an_entry_cache_answers_what_its_node_wrote_with_the_version_written() {
    use keybroker_core::{
        mount_storage::{EntryCache, MountStorage},
        store::Expect,
    };
    let dir = tempfile::tempdir().unwrap();
    let store: std::sync::Arc<dyn Store> =
        std::sync::Arc::new(SqliteStore::open(&dir.path().join("t.db")).await.unwrap());
    assert!(
        store.subscribe().is_none(),
        "SQLite's node is its only writer"
    );
    let mount = crate::conformance::mount(TenantId::ROOT, "kv/");
    store.create_mount(&mount).await.unwrap();
    let storage = MountStorage::new(store.clone(), TenantId::ROOT, mount.id);
    let cache = EntryCache::new(16);

    let first = serde_json::json!({"v": 1});
    let version = storage
        .put_json("doc", &first, Expect::Absent)
        .await
        .unwrap();
    let read = cache
        .get_versioned::<serde_json::Value>(&storage, "doc")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((read.value, read.version), (first.clone(), version));

    // A write through the node: the cache answers it, at its new version, without the store
    // (which another writer changed behind the node's back here).
    let second = serde_json::json!({"v": 2});
    let written = storage
        .put_json("doc", &second, Expect::Version(version))
        .await
        .unwrap();
    assert_eq!(written, version + 1);
    cache.remember(TenantId::ROOT, mount.id, "doc", second.clone(), written);
    let behind = serde_json::json!({"v": "behind"});
    let changed = storage
        .put_json("doc", &behind, Expect::Version(written))
        .await
        .unwrap();
    let read = cache
        .get_versioned::<serde_json::Value>(&storage, "doc")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((read.value, read.version), (second, written));

    // Forgotten (a change announced), it is read from the store again.
    cache.forget(TenantId::ROOT, mount.id, "doc");
    let read = cache
        .get_versioned::<serde_json::Value>(&storage, "doc")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((read.value, read.version), (behind, changed));
}
