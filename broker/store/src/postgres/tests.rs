use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use keybroker_core::{
    changes::Change,
    store::{
        AppRoleRecord, Expect, KeyRecord, KeyVersionRecord, MountRecord, Store, StoreError,
        TenantRecord, TokenRecord,
    },
    MountId, TenantId,
};
use keybroker_pg_harness::PgServer;
use tokio::sync::broadcast;

use super::{PostgresOptions, PostgresStore};

/// Long enough for any delivery (or a reconnection after a restart) on a loaded machine;
/// only reached when a test fails.
const PATIENCE: Duration = Duration::from_secs(30);

/// Options for a store whose server stays up: no deadline of these tests is the fault
/// under test, and on a loaded machine a pooled connection (32 tasks share a node's 16 in
/// the concurrency tests), the first connections or the first heartbeat of `open` may
/// take seconds, beyond the default 2 s.
fn patient() -> PostgresOptions {
    PostgresOptions {
        acquire_timeout: Duration::from_secs(60),
        connect_timeout: Duration::from_secs(60),
        ..PostgresOptions::default()
    }
}

async fn open(url: &str) -> PostgresStore {
    PostgresStore::open(url, patient()).await.unwrap()
}

/// A fresh server with one database, and two nodes on it.
async fn cluster() -> (PgServer, PostgresStore, PostgresStore) {
    let server = PgServer::start();
    let url = server.create_database("keybroker");
    let (a, b) = (open(&url).await, open(&url).await);
    (server, a, b)
}

/// Waits for `want` on the feed, skipping other changes.
async fn expect(feed: &mut broadcast::Receiver<Change>, want: &Change) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, feed.recv()).await {
            Ok(Ok(change)) if &change == want => return,
            Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(error)) => panic!("feed closed waiting for {want:?}: {error}"),
            Err(_) => panic!("{want:?} not delivered within {PATIENCE:?}"),
        }
    }
}

/// Every change on the feed up to (not including) `marker`.
async fn changes_until(feed: &mut broadcast::Receiver<Change>, marker: &Change) -> Vec<Change> {
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout(PATIENCE, feed.recv()).await {
            Ok(Ok(change)) if &change == marker => return seen,
            Ok(Ok(change)) => seen.push(change),
            other => panic!("{marker:?} not delivered: {other:?}"),
        }
    }
}

fn mount(path: &str, kind: &str) -> MountRecord {
    MountRecord {
        id: MountId::random(),
        tenant: TenantId::ROOT,
        path: path.into(),
        kind: kind.into(),
        description: String::new(),
        config: serde_json::json!({}),
        created_at: 0,
    }
}

fn token(tenant: TenantId, hash: u8, uses: Option<u64>) -> TokenRecord {
    TokenRecord {
        hash: vec![hash; 32],
        accessor: format!("accessor-{hash}"),
        tenant,
        policies: vec!["default".into()],
        display_name: "t".into(),
        created_at: 0,
        expires_at: Some(1_000),
        period: 0,
        ttl: 1_000,
        max_expires_at: None,
        uses_remaining: uses,
        parent_accessor: None,
        meta: Default::default(),
        renewable: true,
        bound_cidrs: Vec::new(),
        auth_mount: None,
    }
}

/// A transit mount with key `k` (version 1) in the root tenant.
async fn key(store: &PostgresStore) -> (KeyRecord, KeyVersionRecord) {
    let mount = mount("transit/", "transit");
    store.create_mount(&mount).await.unwrap();
    let (key, version) = crate::conformance::key(TenantId::ROOT, mount.id, "k");
    store.create_key(&key, &version).await.unwrap();
    (key, version)
}

#[tokio::test]
async fn conforms() {
    let server = PgServer::start();
    let store = open(&server.create_database("conformance")).await;
    crate::conformance::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_race_a_compare_and_set_with_one_winner_per_version() {
    let (_server, a, b) = cluster().await;
    crate::conformance::racing_compare_and_set(Arc::new(a), Arc::new(b)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_migrate_once() {
    let server = PgServer::start();
    let url = server.create_database("fresh");
    let (a, b, c) = tokio::join!(
        PostgresStore::open(&url, patient()),
        PostgresStore::open(&url, patient()),
        PostgresStore::open(&url, patient()),
    );
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    a.put_policy(TenantId::ROOT, "p", "one", 1).await.unwrap();
    assert_eq!(
        c.get_policy(TenantId::ROOT, "p").await.unwrap().as_deref(),
        Some("one")
    );
    drop((a, b, c));
    // And a node starting on the migrated database.
    let d = open(&url).await;
    assert_eq!(d.list_policies(TenantId::ROOT).await.unwrap(), vec!["p"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_on_one_node_reach_the_others() {
    let (_server, a, b) = cluster().await;
    let mut feed = b.subscribe().unwrap();
    let root = TenantId::ROOT;

    // A revoked token.
    a.put_tokens(&[token(root, 1, None)]).await.unwrap();
    a.revoke_token_tree(root, "accessor-1").await.unwrap();
    expect(&mut feed, &Change::Token(vec![1; 32])).await;
    // A used, renewed and tidied token.
    a.put_tokens(&[token(root, 2, Some(5)), token(root, 3, None)])
        .await
        .unwrap();
    assert_eq!(a.use_token(&[2; 32]).await.unwrap(), Some(4));
    expect(&mut feed, &Change::Token(vec![2; 32])).await;
    a.set_token_expiry(&[3; 32], 2_000).await.unwrap();
    expect(&mut feed, &Change::Token(vec![3; 32])).await;
    a.tidy_tokens(5_000).await.unwrap();
    expect(&mut feed, &Change::Token(vec![2; 32])).await;
    expect(&mut feed, &Change::Token(vec![3; 32])).await;

    // A policy write.
    a.put_policy(root, "app", "path \"x\" {}", 1).await.unwrap();
    expect(&mut feed, &Change::Policies(root)).await;

    // A key rotation.
    let (key, first) = key(&a).await;
    expect(&mut feed, &Change::Mounts(root)).await;
    let second = KeyVersionRecord {
        version: 2,
        ..first.clone()
    };
    assert!(a.add_key_version(root, 1, &second).await.unwrap());
    expect(&mut feed, &Change::Key(root, key.id)).await;
    // A trim, once the min versions allow it.
    let configured = KeyRecord {
        latest_version: 2,
        min_decryption_version: 2,
        min_encryption_version: 2,
        ..key.clone()
    };
    a.update_key_config(&configured).await.unwrap();
    expect(&mut feed, &Change::Key(root, key.id)).await;
    assert_eq!(
        a.trim_key_versions(root, key.id, 2).await.unwrap(),
        vec![first.clone()]
    );
    expect(&mut feed, &Change::Key(root, key.id)).await;
    // A restore over another key of that name: both ids are announced.
    let (restored, _) = crate::conformance::key(root, key.mount, &key.name);
    let restored_version = KeyVersionRecord {
        key: restored.id,
        ..first.clone()
    };
    assert_eq!(
        a.restore_key(&restored, &[restored_version], true)
            .await
            .unwrap(),
        Some(key.id)
    );
    expect(&mut feed, &Change::Key(root, restored.id)).await;
    expect(&mut feed, &Change::Key(root, key.id)).await;

    // A tenant deletion, with its tokens.
    let tenant = TenantId::random();
    a.create_tenant(&TenantRecord {
        id: tenant,
        name: "team".into(),
        created_at: 0,
    })
    .await
    .unwrap();
    expect(&mut feed, &Change::Tenants).await;
    a.put_tokens(&[token(tenant, 9, None)]).await.unwrap();
    assert!(a.delete_tenant(tenant).await.unwrap());
    expect_all(
        &mut feed,
        vec![
            Change::TenantDeleted(tenant),
            Change::Tenants,
            Change::Token(vec![9; 32]),
        ],
    )
    .await;

    // A disabled auth mount, with the tokens it issued and the keys in it.
    let auth = mount("auth/approle/", "approle");
    a.create_mount(&auth).await.unwrap();
    a.put_tokens(&[TokenRecord {
        auth_mount: Some(auth.id),
        ..token(root, 10, None)
    }])
    .await
    .unwrap();
    assert!(a.delete_mount(root, auth.id).await.unwrap());
    expect_all(
        &mut feed,
        vec![Change::Mounts(root), Change::Token(vec![10; 32])],
    )
    .await;
    // The mount's key is now the restored one.
    assert!(a.delete_mount(root, key.mount).await.unwrap());
    expect_all(
        &mut feed,
        vec![Change::Mounts(root), Change::Key(root, restored.id)],
    )
    .await;

    // Mount-storage writes and deletes, by key; a mount's entries deleted with it are
    // announced by the mount's change.
    let storage = mount("auth/jwt/", "jwt");
    a.create_mount(&storage).await.unwrap();
    expect(&mut feed, &Change::Mounts(root)).await;
    let entry = |key: &str| Change::MountEntry(root, storage.id, key.to_owned());
    let value = serde_json::json!({"policies": ["web"]});
    for expect_as in [Expect::Absent, Expect::Any, Expect::Version(2)] {
        a.put_entry(root, storage.id, "role/web", &value, expect_as)
            .await
            .unwrap();
        expect(&mut feed, &entry("role/web")).await;
    }
    a.put_entry(root, storage.id, "a:b", &value, Expect::Any)
        .await
        .unwrap();
    expect(&mut feed, &entry("a:b")).await;
    assert!(a
        .delete_entry(root, storage.id, "role/web", Expect::Version(3))
        .await
        .unwrap());
    expect(&mut feed, &entry("role/web")).await;
    assert!(a
        .delete_entry(root, storage.id, "a:b", Expect::Any)
        .await
        .unwrap());
    expect(&mut feed, &entry("a:b")).await;
    a.put_entry(root, storage.id, "config", &value, Expect::Any)
        .await
        .unwrap();
    expect(&mut feed, &entry("config")).await;
    assert!(a.delete_mount(root, storage.id).await.unwrap());
    let marker = Change::Plugins;
    a.announce(&marker).await.unwrap();
    assert_eq!(
        changes_until(&mut feed, &marker).await,
        vec![Change::Mounts(root)]
    );

    // What a node announces itself arrives too.
    b.announce(&Change::Plugins).await.unwrap();
    expect(&mut feed, &Change::Plugins).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_that_do_not_commit_announce_nothing() {
    let (_server, a, b) = cluster().await;
    let mut feed = b.subscribe().unwrap();
    let root = TenantId::ROOT;
    let (key, first) = key(&a).await;
    let second = KeyVersionRecord {
        version: 2,
        ..first.clone()
    };
    assert!(a.add_key_version(root, 1, &second).await.unwrap());
    expect(&mut feed, &Change::Key(root, key.id)).await;
    // A mount-storage entry.
    let storage = mount("auth/jwt/", "jwt");
    a.create_mount(&storage).await.unwrap();
    expect(&mut feed, &Change::Mounts(root)).await;
    let value = serde_json::json!(1);
    a.put_entry(root, storage.id, "k", &value, Expect::Absent)
        .await
        .unwrap();
    expect(
        &mut feed,
        &Change::MountEntry(root, storage.id, "k".to_owned()),
    )
    .await;

    // A lost rotation race, a refused mount, a token for a deleted mount, nothing to
    // revoke or delete.
    assert!(!a.add_key_version(root, 1, &second).await.unwrap());
    assert!(matches!(
        a.create_mount(&mount("transit/", "transit")).await,
        Err(StoreError::Conflict)
    ));
    assert!(matches!(
        a.put_tokens(&[TokenRecord {
            auth_mount: Some(MountId::random()),
            ..token(root, 1, None)
        }])
        .await,
        Err(StoreError::Gone)
    ));
    assert!(a
        .revoke_token_tree(root, "nobody")
        .await
        .unwrap()
        .is_empty());
    assert!(!a.delete_policy(root, "none").await.unwrap());
    assert!(!a.delete_mount(root, MountId::random()).await.unwrap());
    assert!(!a.delete_tenant(TenantId::random()).await.unwrap());
    // Mount-storage writes that expected otherwise, or found nothing to delete.
    for expect_as in [Expect::Absent, Expect::Version(2)] {
        assert!(matches!(
            a.put_entry(root, storage.id, "k", &value, expect_as).await,
            Err(StoreError::ExpectationFailed)
        ));
    }
    for expect_as in [Expect::Absent, Expect::Version(2)] {
        assert!(matches!(
            a.delete_entry(root, storage.id, "k", expect_as).await,
            Err(StoreError::ExpectationFailed)
        ));
    }
    assert!(!a
        .delete_entry(root, storage.id, "none", Expect::Any)
        .await
        .unwrap());
    assert!(matches!(
        a.put_entry(root, MountId::random(), "k", &value, Expect::Any)
            .await,
        Err(StoreError::Gone)
    ));
    // Notifications arrive in commit order: everything before the marker is seen first.
    a.announce(&Change::Plugins).await.unwrap();
    let seen = changes_until(&mut feed, &Change::Plugins).await;
    assert!(
        seen.is_empty(),
        "announced without a committed change: {seen:?}"
    );
}

/// Waits until every change of `want` was on the feed, in any order.
async fn expect_all(feed: &mut broadcast::Receiver<Change>, mut want: Vec<Change>) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !want.is_empty() {
        match tokio::time::timeout_at(deadline, feed.recv()).await {
            Ok(Ok(change)) => want.retain(|w| w != &change),
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            other => panic!("{want:?} not delivered: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_confirms_it_is_in_sync() {
    let (_server, a, _b) = cluster().await;
    let first = a.last_in_sync().unwrap();
    assert!(first <= Instant::now());
    let deadline = Instant::now() + PATIENCE;
    while a.last_in_sync().unwrap() <= first {
        assert!(Instant::now() < deadline, "last_in_sync never advanced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `store` until a write succeeds: the same store recovers, without being opened
/// again. Each attempt has the 2 s acquire deadline, which a loaded machine may exceed
/// while the pool replaces its dead connections; the overall wait is generous.
async fn writes_again(store: &PostgresStore) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match store.put_policy(TenantId::ROOT, "p", "again", 2).await {
            Ok(()) => return,
            Err(error) if Instant::now() < deadline => {
                tracing::debug!(%error, "not yet");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => {
                panic!("writes still fail {PATIENCE:?} after the restart: {error}")
            }
        }
    }
}

/// Calls made while the server is down end by the 2 s acquire deadline, not when the
/// server comes back (it stays down until the test restarts it). Bounds on how long they
/// take are loose: a loaded machine answers late, and the bound only tells a call ended
/// by the deadline from one left waiting for the server.
const DOWN_CALL_BOUND: Duration = Duration::from_secs(20);

/// Options for the store whose server the test stops: the default 2 s acquire deadline is
/// what ends calls while the server is down (the fault under test). Its dedicated
/// connections (migrations, the change listener) and the wait for the first heartbeat get
/// longer, as a loaded machine may need; not so long that the listener, whose connection
/// attempts back off up to a fifth of it while the server is down, is slow to come back.
fn restartable() -> PostgresOptions {
    PostgresOptions {
        connect_timeout: Duration::from_secs(10),
        ..PostgresOptions::default()
    }
}

/// The call failed as `Unavailable`.
fn assert_unavailable<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
}

/// What ran since `started` (`what`) ended within `DOWN_CALL_BOUND` (a hang guard).
fn assert_prompt(started: Instant, what: &str) {
    let elapsed = started.elapsed();
    assert!(elapsed < DOWN_CALL_BOUND, "{what} took {elapsed:?}");
}

/// While the server is down, a call fails as `Unavailable`, promptly (a hang guard).
async fn fails_fast_while_down(store: &PostgresStore) {
    let started = Instant::now();
    assert_unavailable(store.get_policy(TenantId::ROOT, "p").await);
    assert_unavailable(store.put_policy(TenantId::ROOT, "p", "lost", 3).await);
    assert_prompt(started, "two calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_database_resyncs_and_recovers() {
    let mut server = PgServer::start();
    let url = server.create_database("restart");
    let store = PostgresStore::open(&url, restartable()).await.unwrap();
    let mut feed = store.subscribe().unwrap();
    store
        .put_policy(TenantId::ROOT, "p", "one", 1)
        .await
        .unwrap();

    // A clean restart (fast shutdown ends the sessions).
    server.stop();
    let started = Instant::now();
    assert_unavailable(store.get_meta("m").await);
    assert_prompt(started, "a call");
    fails_fast_while_down(&store).await;
    let before = store.last_in_sync().unwrap();
    server.restart();
    writes_again(&store).await;
    expect(&mut feed, &Change::Resync).await;
    let deadline = Instant::now() + PATIENCE;
    while store.last_in_sync().unwrap() <= before {
        assert!(Instant::now() < deadline, "never in sync again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A crash (SIGKILL of the postmaster) and crash recovery.
    server.kill9();
    fails_fast_while_down(&store).await;
    server.restart();
    writes_again(&store).await;
    expect(&mut feed, &Change::Resync).await;
    assert_eq!(
        store
            .get_policy(TenantId::ROOT, "p")
            .await
            .unwrap()
            .as_deref(),
        Some("again")
    );
    // The feed works again end to end.
    store.announce(&Change::Plugins).await.unwrap();
    expect(&mut feed, &Change::Plugins).await;
}

#[tokio::test]
async fn opening_an_unreachable_database_fails_fast() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .unwrap()
        .port();
    let started = Instant::now();
    let result = PostgresStore::open(
        &format!("postgres://keybroker@127.0.0.1:{port}/x"),
        PostgresOptions::default(),
    )
    .await;
    assert_unavailable(result);
    // Nothing listens on the port, ever: only the 2 s acquire deadline ends the attempt.
    assert_prompt(started, "opening");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_on_one_node_at_a_time() {
    let (_server, a, b) = cluster().await;
    let tidy = a.try_lock_job("tidy").await.unwrap();
    assert!(tidy.is_some());
    assert!(b.try_lock_job("tidy").await.unwrap().is_none());
    assert!(
        a.try_lock_job("tidy").await.unwrap().is_none(),
        "not even twice on one node"
    );
    let rotate = b.try_lock_job("auto-rotate").await.unwrap();
    assert!(rotate.is_some(), "jobs are locked independently");
    drop(tidy);
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(_guard) = b.try_lock_job("tidy").await.unwrap() {
            break;
        }
        assert!(Instant::now() < deadline, "the lock was never released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(rotate);
}

/// Runs `count` calls at once, call `i` on node `i % 2`; their results, in call order.
async fn on_both_nodes<T, Call>(
    nodes: &[Arc<PostgresStore>; 2],
    count: usize,
    call: impl Fn(Arc<PostgresStore>, usize) -> Call,
) -> Vec<T>
where
    Call: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let tasks: Vec<_> = (0..count)
        .map(|i| tokio::spawn(call(nodes[i % 2].clone(), i)))
        .collect();
    let mut results = Vec::with_capacity(count);
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uses_on_two_nodes_are_exact() {
    let (_server, a, b) = cluster().await;
    let nodes = [Arc::new(a), Arc::new(b)];
    let auth = mount("auth/approle/", "approle");
    nodes[0].create_mount(&auth).await.unwrap();
    let role = AppRoleRecord::new(TenantId::ROOT, auth.id, "r", "rid", 0);
    nodes[0].put_approle_role(&role).await.unwrap();
    for (hash, uses) in [(1u8, 1u64), (2, 5)] {
        let secret_id = crate::conformance::secret_id(&role, hash, Some(uses), None);
        nodes[0].put_approle_secret_id(&secret_id).await.unwrap();
        let left = on_both_nodes(&nodes, 64, |node, _| async move {
            node.use_approle_secret_id(TenantId::ROOT, auth.id, "r", &[hash; 32])
                .await
                .unwrap()
        })
        .await;
        let mut left: Vec<u64> = left.into_iter().flatten().collect();
        left.sort_unstable();
        assert_eq!(
            left,
            (0..uses).collect::<Vec<_>>(),
            "secret_id with {uses} uses"
        );
        assert_eq!(
            nodes[1]
                .get_approle_secret_id(TenantId::ROOT, auth.id, "r", &[hash; 32])
                .await
                .unwrap(),
            None
        );
    }

    // Tokens with a use limit, likewise.
    nodes[1]
        .put_tokens(&[token(TenantId::ROOT, 7, Some(3))])
        .await
        .unwrap();
    let left = on_both_nodes(&nodes, 32, |node, _| async move {
        node.use_token(&[7; 32]).await.unwrap()
    })
    .await;
    let mut left: Vec<u64> = left.into_iter().flatten().collect();
    left.sort_unstable();
    assert_eq!(left, vec![0, 1, 2]);
    assert_eq!(nodes[0].get_token(&[7; 32]).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reservations_and_rotations_on_two_nodes() {
    let (_server, a, b) = cluster().await;
    let (key, first) = key(&a).await;
    let nodes = [Arc::new(a), Arc::new(b)];
    let windows = on_both_nodes(&nodes, 32, |node, _| async move {
        node.reserve_counter(TenantId::ROOT, key.id, 1, 10, 1_000)
            .await
            .unwrap()
    })
    .await;
    crate::conformance::assert_windows_tile(windows, 320);

    // Racing rotations from the same latest version: exactly one wins.
    let won = on_both_nodes(&nodes, 8, |node, i| {
        let version = KeyVersionRecord {
            version: 2,
            backend_reference: format!("r{i}"),
            ..first.clone()
        };
        async move {
            node.add_key_version(TenantId::ROOT, 1, &version)
                .await
                .unwrap()
        }
    })
    .await;
    assert_eq!(won.iter().filter(|won| **won).count(), 1);
    let versions = nodes[1]
        .get_key_versions(TenantId::ROOT, key.id)
        .await
        .unwrap();
    assert_eq!(versions.len(), 2);
}
