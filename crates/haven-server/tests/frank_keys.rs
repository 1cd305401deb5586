//! The franking key file (security review 2026-12, finding 9): a deployment from before key
//! files has its key moved out of the database on first start, old (v1) tags still verify,
//! rotation keeps every older key's tags verifiable, and a server refuses to start with a
//! key file that is missing or belongs to another deployment. Real servers on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use haven_frank::{Binding, Commitment, EncodedTag, KeyId, ServerKey};
use haven_server::store;
use haven_server::{frank_keys, ServerConfig, StartError};

fn config(data: &Path) -> ServerConfig {
    let mut c = ServerConfig::embedded(data.to_path_buf());
    c.listen = "127.0.0.1:0".parse().unwrap();
    c
}

fn contains(path: &Path, needle: &[u8]) -> bool {
    let bytes = std::fs::read(path).unwrap_or_default();
    bytes.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_key_moves_to_the_key_file_and_old_tags_still_verify() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let db = data.join("haven.db");
    // A deployment from before key files: the key in `server_secrets`, v1 tags stored.
    let old_key = ServerKey::random();
    {
        let s = store::open_store(&db.to_string_lossy()).await.unwrap();
        s.server_secret(frank_keys::LEGACY_SECRET, old_key.as_bytes())
            .await
            .unwrap();
    }
    let c = Commitment::from_slice(&[3; 32]).unwrap();
    let binding = Binding {
        commitment: &c,
        sender_device: "0123456789abcdef0123456789abcdef",
        group_id: b"group-0123456789",
        received_at_ms: 1_700_000_000_000,
    };
    let v1_tag = haven_frank::server_tag(&old_key, &binding);

    let running = haven_server::start(config(&data)).await.unwrap();
    let keys = running.service.frank_keys().clone();
    running.shutdown().await;
    // The key is in its own 0600 file, as key 1: current and legacy.
    let file = frank_keys::path(&data);
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(contains(&file, hex_of(old_key.as_bytes()).as_bytes()));
    assert_eq!(keys.current_id(), KeyId::new(1));
    assert_eq!(keys.legacy_id(), Some(KeyId::new(1)));
    keys.verify(&binding, v1_tag.as_bytes()).unwrap();
    // New tags are v2 tags naming key 1.
    let new_tag = keys.tag(&binding).encode();
    assert!(matches!(
        EncodedTag::decode(&new_tag).unwrap(),
        EncodedTag::V2 { key_id, .. } if key_id == KeyId::new(1)
    ));
    // Gone from the database, and scrubbed from its file once the WAL is checkpointed.
    {
        let s = store::open_store(&db.to_string_lossy()).await.unwrap();
        assert_eq!(
            s.get_server_secret(frank_keys::LEGACY_SECRET)
                .await
                .unwrap(),
            None
        );
    }
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    drop(conn);
    assert!(
        !contains(&db, old_key.as_bytes()),
        "the old key is still in haven.db"
    );

    // Rotation: a new current key 2; after a restart tags name key 2, and the v1 tag and the
    // tag of key 1 still verify.
    assert_eq!(frank_keys::rotate(&data, 5).unwrap(), KeyId::new(2));
    let running = haven_server::start(config(&data)).await.unwrap();
    let keys = running.service.frank_keys().clone();
    running.shutdown().await;
    assert_eq!(keys.current_id(), KeyId::new(2));
    keys.verify(&binding, v1_tag.as_bytes()).unwrap();
    keys.verify(&binding, &new_tag).unwrap();
    let rotated = keys.tag(&binding).encode();
    assert_ne!(rotated, new_tag);
    keys.verify(&binding, &rotated).unwrap();
    assert_eq!(frank_keys::list(&data).unwrap().entries().count(), 2);
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_foreign_key_file_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for d in [&a, &b] {
        haven_server::start(config(d))
            .await
            .unwrap()
            .shutdown()
            .await;
    }
    let keys_a = std::fs::read(frank_keys::path(&a)).unwrap();
    // Another deployment's key file: refused, and nothing is tagged with it.
    std::fs::copy(frank_keys::path(&b), frank_keys::path(&a)).unwrap();
    match haven_server::start(config(&a)).await {
        Err(StartError::Keys(m)) => assert!(m.contains("another deployment"), "{m}"),
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("started with another deployment's key file"),
    }
    // No key file at all for a database that has keys: refused, instead of a fresh key.
    std::fs::remove_file(frank_keys::path(&a)).unwrap();
    match haven_server::start(config(&a)).await {
        Err(StartError::Keys(m)) => assert!(m.contains("not here"), "{m}"),
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("started without the key file"),
    }
    // Its own key file back: starts.
    std::fs::write(frank_keys::path(&a), &keys_a).unwrap();
    haven_server::start(config(&a))
        .await
        .unwrap()
        .shutdown()
        .await;
}

/// Several nodes over one PostgreSQL database: the first node creates the key file, a node
/// without it refuses to start, and with a copy of it (distributed with the deployment) starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_nodes_share_the_distributed_key_file() {
    let Ok(url) = std::env::var("HAVEN_TEST_POSTGRES_URL") else {
        eprintln!("HAVEN_TEST_POSTGRES_URL not set; skipped");
        return;
    };
    // A scratch schema so the marker of other tests does not interfere.
    let schema = format!("frank_{:016x}", rand::random::<u64>());
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    let scoped = format!("{url}{sep}options=-c%20search_path%3D{schema}");
    let dir = tempfile::tempdir().unwrap();
    let (n1, n2) = (dir.path().join("node1"), dir.path().join("node2"));
    let mut c1 = config(&n1);
    c1.database = Some(scoped.clone());
    let mut c2 = config(&n2);
    c2.database = Some(scoped.clone());
    let first = haven_server::start(c1).await.unwrap();
    let k1 = first.service.frank_keys().clone();
    match haven_server::start(c2.clone()).await {
        Err(StartError::Keys(m)) => assert!(m.contains("not here"), "{m}"),
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("a second node made its own franking key"),
    }
    std::fs::create_dir_all(&n2).unwrap();
    std::fs::copy(frank_keys::path(&n1), frank_keys::path(&n2)).unwrap();
    // The evidence key is distributed the same way: without it the node refuses to start.
    match haven_server::start(c2.clone()).await {
        Err(StartError::Keys(m)) => assert!(m.contains("evidence key"), "{m}"),
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("a second node made its own evidence key"),
    }
    let evidence = haven_server::moderation::vault::default_path;
    std::fs::copy(evidence(&n1), evidence(&n2)).unwrap();
    // And the key directory's keys: a node without them refuses rather than sign other roots.
    match haven_server::start(c2.clone()).await {
        Err(StartError::Keys(m)) => assert!(m.contains("kt-keys is missing"), "{m}"),
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("a second node made its own key-directory keys"),
    }
    let kt_keys = haven_server::kt::keys::path;
    std::fs::copy(kt_keys(&n1), kt_keys(&n2)).unwrap();
    let second = haven_server::start(c2).await.unwrap();
    let c = Commitment::from_slice(&[1; 32]).unwrap();
    let b = Binding {
        commitment: &c,
        sender_device: "dev",
        group_id: b"g",
        received_at_ms: 1,
    };
    second
        .service
        .frank_keys()
        .verify(&b, &k1.tag(&b).encode())
        .unwrap();
    first.shutdown().await;
    second.shutdown().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&admin)
        .await
        .unwrap();
}
