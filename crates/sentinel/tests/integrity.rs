//! The integrity monitor against real ledgers: a consistent log verifies
//! round after round; a log with the same key but another history (a fork),
//! a rolled-back log, a missing witness quorum and entries altered in the
//! ledger's own store each raise one critical `ledger-integrity` alert.
mod support;

use std::time::Duration;

use quis_proto::ledger::{Action, Decision};
use quis_sentinel::{
    SentinelConfig, SentinelStore,
    integrity::{Monitor, Outcome},
    store::AlertFilter,
};
use support::*;
use tokio::sync::{broadcast, mpsc};

const LOG_KEY: &str = "keys/ledger-log.key";

fn events(actor: &str, n: usize) -> Vec<(quis_proto::ledger::Event, Vec<quis_proto::ledger::EventDetail>)> {
    (0..n).map(|i| access(actor, "10.0.0.1", Action::Read, Decision::Allow, &format!("s-{i}"))).collect()
}

async fn monitor(
    ledger: &TestLedger,
    store: &SentinelStore,
    config: &SentinelConfig,
) -> (Monitor, mpsc::Sender<quis_sentinel::consumer::Sample>) {
    let (tx, rx) = mpsc::channel(64);
    let (alerts, _) = broadcast::channel(16);
    (Monitor::new(ledger.link().await, store.clone(), config, rx, alerts, None).expect("monitor"), tx)
}

async fn integrity_alerts(store: &SentinelStore) -> Vec<String> {
    let filter = AlertFilter { detection: Some("ledger-integrity".into()), ..Default::default() };
    let alerts = store.alerts(&filter, 100).await.expect("alerts");
    for a in &alerts {
        assert_eq!(a.severity, quis_sentinel::Severity::Critical.to_proto() as i64);
    }
    alerts.into_iter().map(|a| a.explanation).collect()
}

/// Gives a ledger's data directory another log's key (with the owner-only mode key files need).
fn plant(dir: &std::path::Path, key: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(LOG_KEY);
    std::fs::write(&path, key).expect("plant key");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

async fn store(dir: &std::path::Path, postgres: bool) -> SentinelStore {
    SentinelStore::connect(&sentinel_store_url(dir, postgres).await, 3600, 3600).await.expect("store")
}

async fn consistent_log_then_fork_and_rollback(postgres: bool) {
    let a = start_ledger(|_| {}).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path(), postgres).await;
    let config = a.sentinel_config();
    let (mut m, _samples) = monitor(&a, &store, &config).await;

    a.append(events("alice", 5)).await;
    a.signed(5).await;
    assert_eq!(m.check_once().await, Outcome::Verified(5));
    a.append(events("alice", 3)).await;
    a.signed(8).await;
    assert_eq!(m.check_once().await, Outcome::Verified(8));
    assert!(integrity_alerts(&store).await.is_empty());

    // Another ledger signing with the same key, over a different history of 12 entries.
    let key = std::fs::read(a.dir().join(LOG_KEY)).expect("log key");
    let b = start_ledger(|dir| plant(dir, &key)).await;
    assert_eq!(b.vkey, a.vkey, "the fork signs with the same key");
    b.append(events("mallory", 12)).await;
    b.signed(12).await;
    let (mut m, _samples) = monitor(&b, &store, &config).await;
    let Outcome::Failed(why) = m.check_once().await else { panic!("a fork verified") };
    assert!(why.contains("does not extend the tree of 8 entries"), "{why}");
    // Raised once, however often it is checked.
    assert!(matches!(m.check_once().await, Outcome::Failed(_)));
    assert_eq!(integrity_alerts(&store).await.len(), 1);

    // A log with the same key and fewer entries: a rollback.
    let c = start_ledger(|dir| plant(dir, &key)).await;
    c.append(events("alice", 2)).await;
    c.signed(2).await;
    let (mut m, _samples) = monitor(&c, &store, &config).await;
    let Outcome::Failed(why) = m.check_once().await else { panic!("a rollback verified") };
    assert!(why.contains("went back from 8 entries to 2"), "{why}");
    assert_eq!(integrity_alerts(&store).await.len(), 2);

    // The verified state did not move: the honest log still verifies.
    let (mut m, _samples) = monitor(&a, &store, &config).await;
    assert_eq!(m.check_once().await, Outcome::Verified(8));
}

#[tokio::test]
async fn fork_and_rollback_sqlite() {
    consistent_log_then_fork_and_rollback(false).await;
}

#[tokio::test]
async fn fork_and_rollback_postgres() {
    consistent_log_then_fork_and_rollback(true).await;
}

#[tokio::test]
async fn missing_witness_quorum_is_an_alert() {
    let ledger = start_ledger(|_| {}).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path(), false).await;
    let witness =
        quis_tlog::note::Signer::generate("witness.example", quis_tlog::note::KEY_TYPE_COSIGNATURE_V1).expect("key");
    let mut config = ledger.sentinel_config();
    config.witness_vkeys = vec![witness.vkey()];
    config.witness_quorum = 1;
    quis_sentinel::config::validate(&config).expect("valid");
    let (mut m, _samples) = monitor(&ledger, &store, &config).await;
    ledger.append(events("alice", 2)).await;
    ledger.signed(2).await;
    let Outcome::Failed(why) = m.check_once().await else { panic!("an unwitnessed checkpoint verified") };
    assert!(why.contains("cosigned by 0 of the 1 witnesses"), "{why}");
    assert_eq!(integrity_alerts(&store).await.len(), 1);
    // Nothing was recorded as verified.
    assert_eq!(store.verified_checkpoint().await.expect("read"), None);
}

#[tokio::test]
async fn a_wrong_log_key_is_an_alert() {
    let ledger = start_ledger(|_| {}).await;
    let other = quis_tlog::note::Signer::generate("quis.local/ledger", quis_tlog::note::KEY_TYPE_ED25519).expect("key");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path(), false).await;
    let config = SentinelConfig { log_vkeys: vec![other.vkey()], ..ledger.sentinel_config() };
    let (mut m, _samples) = monitor(&ledger, &store, &config).await;
    ledger.append(events("alice", 1)).await;
    ledger.signed(1).await;
    let Outcome::Failed(why) = m.check_once().await else { panic!("a checkpoint under an unknown key verified") };
    assert!(why.contains("does not verify under its key"), "{why}");
}

/// An insider with access to the ledger's database rewrites a stored entry: the ledger keeps
/// serving it, signed checkpoints stay consistent, but the entry no longer matches the tree,
/// whether sentinel proves it with the ledger's inclusion proofs or from the public hash tiles.
#[tokio::test]
async fn an_entry_rewritten_in_the_ledger_store_is_an_alert() {
    an_entry_rewritten(false).await;
}

#[tokio::test]
async fn an_entry_rewritten_in_the_ledger_store_is_an_alert_from_the_tiles() {
    an_entry_rewritten(true).await;
}

async fn an_entry_rewritten(from_tiles: bool) {
    let ledger = start_ledger(|_| {}).await;
    ledger.append(events("mallory", 6)).await;
    ledger.signed(6).await;
    // Replace entry 3's bytes with entry 4's: a well-formed entry that the tree does not hold at 3.
    let db = quis_core::db::Db::connect(&ledger.config.store_url("ledger")).await.expect("ledger store");
    let quis_core::db::Db::Sqlite(pool) = db else { unreachable!() };
    let (data,): (Vec<u8>,) =
        sqlx::query_as("SELECT data FROM ledger_entries WHERE idx = 4").fetch_one(&pool).await.expect("read");
    sqlx::query("UPDATE ledger_entries SET data = $1 WHERE idx = 3").bind(&data).execute(&pool).await.expect("tamper");

    let dir = tempfile::tempdir().expect("tempdir");
    let url = sentinel_store_url(dir.path(), false).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let mut config = ledger.sentinel_config();
    if from_tiles {
        config.tiles_url = Some(format!("http://{}", ledger.tiles));
    }
    let _built =
        quis_sentinel::build_with(config, &url, ledger.link().await, None, stop.clone()).await.expect("sentinel");
    let store = SentinelStore::connect(&url, 3600, 3600).await.expect("store");
    let filter = AlertFilter { detection: Some("ledger-integrity".into()), ..Default::default() };
    let on_tail = async || {
        let alerts = store.alerts(&filter, 10).await.expect("alerts");
        alerts.into_iter().find(|a| a.explanation.contains("as served on the tail"))
    };
    let found = eventually(Duration::from_secs(10), async || on_tail().await.is_some()).await;
    stop.cancel();
    assert!(found, "no alert for a rewritten entry: {:?}", integrity_alerts(&store).await);
    let alert = on_tail().await.expect("the alert");
    assert!(alert.explanation.contains("Ledger entry 3 as served on the tail"), "{}", alert.explanation);
    assert_eq!(alert.explanation.contains("the log's tiles prove"), from_tiles, "{}", alert.explanation);
    assert_eq!(alert.evidence[0].index, 3);
    assert_eq!(alert.evidence[0].leaf_hash, quis_tlog::leaf_hash(&data));
}

/// An insider deletes a stored entry: the re-check finds it missing, and the tail stops.
#[tokio::test]
async fn an_entry_deleted_from_the_ledger_store_is_an_alert() {
    let ledger = start_ledger(|_| {}).await;
    ledger.append(events("mallory", 6)).await;
    ledger.signed(6).await;
    let db = quis_core::db::Db::connect(&ledger.config.store_url("ledger")).await.expect("ledger store");
    let quis_core::db::Db::Sqlite(pool) = db else { unreachable!() };
    sqlx::query("DELETE FROM ledger_entries WHERE idx = 3").execute(&pool).await.expect("tamper");

    let dir = tempfile::tempdir().expect("tempdir");
    let url = sentinel_store_url(dir.path(), false).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let config = SentinelConfig { stall_alert_ms: 300, ..ledger.sentinel_config() };
    let _built =
        quis_sentinel::build_with(config, &url, ledger.link().await, None, stop.clone()).await.expect("sentinel");
    let store = SentinelStore::connect(&url, 3600, 3600).await.expect("store");
    let both = async || {
        let alerts = integrity_alerts(&store).await;
        alerts.iter().any(|a| a.contains("Ledger entry 3 is missing")) && alerts.iter().any(|a| a.contains("stuck"))
    };
    let found = eventually(Duration::from_secs(10), both).await;
    stop.cancel();
    let alerts = integrity_alerts(&store).await;
    assert!(found, "{alerts:?}");
    assert_eq!(alerts.len(), 2, "each failure raised once: {alerts:?}");
    // The ledger serves entries by pages, and refuses a page with a hole: the tail stops at its start.
    let stuck = alerts.iter().find(|a| a.contains("stuck")).expect("stuck");
    assert!(stuck.contains("stuck at entry 0") && stuck.contains("the signed tree holds 6 entries"), "{stuck}");
}

/// The insider waits until sentinel has read the entries, then rewrites one and deletes another:
/// sampling the tail cannot see it, the re-check of stored entries against the tiles does.
#[tokio::test]
async fn rows_rewritten_or_deleted_after_sentinel_read_them_are_alerts() {
    let ledger = start_ledger(|_| {}).await;
    ledger.append(events("mallory", 300)).await;
    ledger.append(events("alice", 300)).await;
    ledger.signed(600).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sentinel_store_url(dir.path(), false).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let config = SentinelConfig {
        tiles_url: Some(format!("http://{}", ledger.tiles)),
        sample_every: 1000,
        recheck_entries_per_sec: 2048,
        recheck_recent_entries: 256,
        integrity_interval_ms: 100,
        ..ledger.sentinel_config()
    };
    let _built =
        quis_sentinel::build_with(config, &url, ledger.link().await, None, stop.clone()).await.expect("sentinel");
    let store = SentinelStore::connect(&url, 3600, 3600).await.expect("store");
    assert!(eventually(Duration::from_secs(10), async || store.cursor().await.expect("cursor") >= 600).await);
    // Several sweeps of the 3 tiles of entries, all clean.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(integrity_alerts(&store).await.is_empty(), "{:?}", integrity_alerts(&store).await);

    let db = quis_core::db::Db::connect(&ledger.config.store_url("ledger")).await.expect("ledger store");
    let quis_core::db::Db::Sqlite(pool) = db else { unreachable!() };
    let (data,): (Vec<u8>,) =
        sqlx::query_as("SELECT data FROM ledger_entries WHERE idx = 521").fetch_one(&pool).await.expect("read");
    sqlx::query("UPDATE ledger_entries SET data = $1 WHERE idx = 520")
        .bind(&data)
        .execute(&pool)
        .await
        .expect("tamper");
    sqlx::query("DELETE FROM ledger_entries WHERE idx = 100").execute(&pool).await.expect("tamper");
    let tampered = std::time::Instant::now();
    let both = async || {
        let alerts = integrity_alerts(&store).await;
        alerts.iter().any(|a| a.contains("Ledger entry 100 is missing"))
            && alerts.iter().any(|a| a.contains("Ledger entry 520 as the ledger serves it now"))
    };
    let found = eventually(Duration::from_secs(10), both).await;
    stop.cancel();
    assert!(found, "{:?}", integrity_alerts(&store).await);
    assert!(tampered.elapsed() < Duration::from_secs(10));
    let filter = AlertFilter { detection: Some("ledger-integrity".into()), ..Default::default() };
    let alerts = store.alerts(&filter, 10).await.expect("alerts");
    let rewritten = alerts.iter().find(|a| a.explanation.contains("entry 520")).expect("rewrite");
    assert_eq!(rewritten.evidence[0].index, 520);
    assert_eq!(rewritten.evidence[0].leaf_hash, quis_tlog::leaf_hash(&data));
    assert!(rewritten.explanation.contains("the log's tiles prove"), "{}", rewritten.explanation);
}

/// A hash tile that the signed checkpoint covers and the log answers 404 for is an integrity
/// failure (the hashes were removed), not an outage.
#[tokio::test]
async fn a_tile_the_checkpoint_covers_missing_is_an_alert() {
    let ledger = start_ledger(|_| {}).await;
    ledger.append(events("alice", 5)).await;
    ledger.signed(5).await;
    let (listener, tiles) = listener().await;
    let no_tiles = axum::Router::new().fallback(|| async { axum::http::StatusCode::NOT_FOUND });
    tokio::spawn(async move { axum::serve(listener, no_tiles).await });
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path(), false).await;
    let config = SentinelConfig { tiles_url: Some(format!("http://{tiles}")), ..ledger.sentinel_config() };
    let (mut m, _samples) = monitor(&ledger, &store, &config).await;
    let Outcome::Failed(why) = m.check_once().await else { panic!("a missing tile verified") };
    assert!(why.contains("does not serve a tile that a signed checkpoint covers"), "{why}");
    assert_eq!(integrity_alerts(&store).await.len(), 1);
}

#[tokio::test]
async fn a_witnessed_log_verifies_with_its_quorum() {
    let (ledger, witness_vkey, _witness_dir) = start_witnessed_ledger().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path(), false).await;
    let config = SentinelConfig { witness_vkeys: vec![witness_vkey], witness_quorum: 1, ..ledger.sentinel_config() };
    quis_sentinel::config::validate(&config).expect("valid");
    let (mut m, _samples) = monitor(&ledger, &store, &config).await;
    ledger.append(events("alice", 3)).await;
    ledger.signed(3).await;
    assert_eq!(m.check_once().await, Outcome::Verified(3));
    ledger.append(events("alice", 4)).await;
    ledger.signed(7).await;
    assert_eq!(m.check_once().await, Outcome::Verified(7));
    assert!(integrity_alerts(&store).await.is_empty());

    // A quorum of two, with a second witness that never cosigned: refused.
    let other =
        quis_tlog::note::Signer::generate("other.example", quis_tlog::note::KEY_TYPE_COSIGNATURE_V1).expect("key");
    let mut strict = config.clone();
    strict.witness_vkeys.push(other.vkey());
    strict.witness_quorum = 2;
    let (mut m, _samples) = monitor(&ledger, &store, &strict).await;
    let Outcome::Failed(why) = m.check_once().await else { panic!("a short quorum verified") };
    assert!(why.contains("cosigned by 1 of the 2 witnesses"), "{why}");
}

/// The vault's access index must list every sampled allowed access to its subject: an access
/// missing from it (hidden from the subject's history) is an alert; one listed is not.
#[tokio::test]
async fn an_access_missing_from_the_vault_index_is_an_alert() {
    use quis_sentinel::access_index::{AccessIndex, AccessSample};
    let ledger = start_ledger(|_| {}).await;
    let indices = ledger.append(events("alice", 2)).await;
    ledger.signed(2).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path(), false).await;
    let vault_url = format!("sqlite://{}?mode=rwc", dir.path().join("vault.db").display());
    let vault = quis_vault::store::Store::open(quis_core::db::Db::connect(&vault_url).await.expect("vault db"))
        .await
        .expect("vault store");
    let indexed = quis_vault::store::IndexedAccess {
        subject_id: "s-0".into(),
        ledger_index: indices[0],
        visible_from_us: 0,
        salt: vec![0; 16],
    };
    vault.add_access(&indexed).await.expect("index");
    let config = SentinelConfig { access_index_grace_ms: 0, ..ledger.sentinel_config() };
    let (accesses, rx) = mpsc::channel(8);
    let (_samples, samples_rx) = mpsc::channel(8);
    let (alerts, _) = broadcast::channel(16);
    let index: std::sync::Arc<dyn AccessIndex> = std::sync::Arc::new(vault);
    let mut m = Monitor::new(ledger.link().await, store.clone(), &config, samples_rx, alerts, Some((index, rx)))
        .expect("monitor");
    let sample = |i: usize, subject: &str| AccessSample {
        index: indices[i],
        leaf_hash: [0; 32],
        subject: subject.into(),
        time_ms: 0,
    };
    accesses.send(sample(0, "s-0")).await.expect("send");
    assert_eq!(m.check_once().await, Outcome::Verified(2), "an indexed access");
    accesses.send(sample(1, "s-1")).await.expect("send");
    let Outcome::Failed(why) = m.check_once().await else { panic!("an unindexed access passed") };
    assert!(why.contains(&format!("does not list ledger entry {}", indices[1])), "{why}");
    assert_eq!(integrity_alerts(&store).await.len(), 1);
}

#[tokio::test]
async fn a_log_first_seen_empty_verifies_as_it_grows() {
    let ledger = start_ledger(|_| {}).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path(), false).await;
    let (mut m, _samples) = monitor(&ledger, &store, &ledger.sentinel_config()).await;
    ledger.signed(0).await;
    assert_eq!(m.check_once().await, Outcome::Verified(0), "the empty tree's checkpoint");
    ledger.append(events("alice", 3)).await;
    ledger.signed(3).await;
    assert_eq!(m.check_once().await, Outcome::Verified(3), "every tree extends the empty one");
    assert!(integrity_alerts(&store).await.is_empty());
}
