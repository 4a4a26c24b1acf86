//! Sentinel's store on SQLite and PostgreSQL: incidents group one actor's
//! alerts over the configured window, and a batch commits only from the
//! cursor it started at (two consumers on one store cannot both advance it).
mod support;

use quis_sentinel::{
    SentinelStore, Severity,
    detect::{Evidence, NewAlert, Output},
    store::{AlertFilter, StoreError},
};

const HOUR: i64 = 3_600_000;

fn alert(actor: &str, detection: &'static str, severity: Severity, at: i64) -> NewAlert {
    NewAlert {
        detection,
        severity,
        explanation: format!("{actor} did something"),
        evidence: vec![Evidence { index: 7, leaf_hash: [7; 32], note: "it".into() }],
        actor: actor.into(),
        event_time_ms: at,
    }
}

async fn incidents_and_cursor(postgres: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = support::sentinel_store_url(dir.path(), postgres).await;
    // Alerts on one actor less than 24 hours apart share an incident.
    let store = SentinelStore::connect(&url, 24 * 3600, 0).await.expect("store");
    let t = 1_795_392_000_000;
    let first = store
        .raise(&[
            alert("mallory", "enumeration", Severity::High, t),
            alert("mallory", "off-hours", Severity::Medium, t + 5 * HOUR),
            alert("oscar", "volume", Severity::High, t + 6 * HOUR),
        ])
        .await
        .expect("raise");
    assert_eq!(first[0].incident, first[1].incident);
    assert_ne!(first[0].incident, first[2].incident);
    // 30 hours after mallory's last alert: a new incident.
    let later =
        store.raise(&[alert("mallory", "bulk-export", Severity::Critical, t + 35 * HOUR)]).await.expect("raise");
    assert_ne!(later[0].incident, first[0].incident);

    let incident = store.incident(&first[0].incident).await.expect("read").expect("exists");
    assert_eq!(incident.alerts, vec![first[0].id.clone(), first[1].id.clone()]);
    assert_eq!(incident.detections, vec!["enumeration".to_string(), "off-hours".to_string()]);
    assert_eq!(incident.severity, i64::from(Severity::High.to_proto()), "the highest of its alerts");
    assert_eq!((incident.start_ms, incident.end_ms), (t, t + 5 * HOUR));
    let mallory = store.incidents(Some("mallory"), None, 0, 10).await.expect("list");
    assert_eq!(mallory.len(), 2);
    assert_eq!(mallory[0].id, later[0].incident, "most recently active first");
    let critical = store.incidents(None, Some(i64::from(Severity::Critical.to_proto())), 0, 10).await.expect("list");
    assert_eq!(critical.len(), 1);
    let stored = store.alert(&first[0].id).await.expect("read").expect("exists");
    assert_eq!(stored.evidence, first[0].evidence);

    // A batch moves the cursor only from where it is; a stale consumer writes nothing.
    let out = Output { alerts: vec![alert("eve", "enumeration", Severity::High, t)], ..Default::default() };
    store.commit_batch(0, 10, &out).await.expect("commit");
    assert_eq!(store.cursor().await.expect("cursor"), 10);
    let stale = store.commit_batch(0, 5, &out).await.expect_err("stale");
    assert!(matches!(stale, StoreError::CursorMoved { expected: 0, found: 10 }), "{stale:?}");
    let eve = AlertFilter { actor: Some("eve".into()), ..Default::default() };
    assert_eq!(store.alerts(&eve, 10).await.expect("alerts").len(), 1);
}

#[tokio::test]
async fn incidents_and_cursor_sqlite() {
    incidents_and_cursor(false).await;
}

#[tokio::test]
async fn incidents_and_cursor_postgres() {
    incidents_and_cursor(true).await;
}

fn evidence(index: u64) -> Vec<Evidence> {
    vec![Evidence { index, leaf_hash: [index as u8; 32], note: format!("entry {index}") }]
}

/// A detection firing again on an actor while its alert is open joins that alert; other
/// detections, triaged alerts, firings beyond the window and the integrity monitor's
/// alerts do not.
async fn firings_join_the_open_alert(postgres: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = support::sentinel_store_url(dir.path(), postgres).await;
    let store = SentinelStore::connect(&url, 24 * 3600, 6 * 3600).await.expect("store");
    let t = 1_795_392_000_000;
    let firing = |detection, severity, at, index| NewAlert {
        evidence: evidence(index),
        explanation: format!("firing at entry {index}"),
        ..alert("mallory", detection, severity, at)
    };
    let batch = |alerts: Vec<NewAlert>| Output { alerts, ..Default::default() };
    let first = store
        .commit_batch(0, 1, &batch(vec![firing("credential-misuse", Severity::Medium, t, 10)]))
        .await
        .expect("commit");
    assert_eq!(first[0].firings, 1);
    // Two more firings (one in the same batch as another detection) join it.
    let second = store
        .commit_batch(
            1,
            2,
            &batch(vec![
                firing("credential-misuse", Severity::High, t + HOUR, 20),
                firing("off-hours", Severity::Low, t + HOUR, 20),
                firing("credential-misuse", Severity::Medium, t + 2 * HOUR, 30),
            ]),
        )
        .await
        .expect("commit");
    assert_eq!(second.len(), 2, "each alert reported once, as it is after the batch: {second:?}");
    let joined = second.iter().find(|a| a.detection == "credential-misuse").expect("joined");
    assert_eq!((joined.id.as_str(), joined.seq), (first[0].id.as_str(), first[0].seq));
    assert_eq!(joined.firings, 3);
    assert_eq!((joined.first_event_ms, joined.event_ms), (t, t + 2 * HOUR));
    assert_eq!(joined.severity, i64::from(Severity::High.to_proto()), "the highest firing's");
    assert_eq!(joined.explanation, "firing at entry 30", "the latest firing's");
    assert_eq!(joined.evidence.iter().map(|e| e.index).collect::<Vec<_>>(), vec![10, 20, 30]);
    assert_eq!(store.alert(&joined.id).await.expect("read").expect("exists"), *joined);
    let incident = store.incident(&joined.incident).await.expect("read").expect("exists");
    assert_eq!((incident.start_ms, incident.end_ms), (t, t + 2 * HOUR));
    assert_eq!(incident.alerts.len(), 2);

    // Beyond the window after the last firing: a new alert (in the same incident).
    let late = store
        .commit_batch(2, 3, &batch(vec![firing("credential-misuse", Severity::Medium, t + 9 * HOUR, 40)]))
        .await
        .expect("commit");
    assert_ne!(late[0].id, joined.id);
    assert_eq!((late[0].firings, late[0].incident.as_str()), (1, joined.incident.as_str()));
    // Once triaged, an alert takes no more firings.
    store.triage(&late[0].id, 2, "looking", "ivy", 99).await.expect("triage");
    let after_triage = store
        .commit_batch(3, 4, &batch(vec![firing("credential-misuse", Severity::Medium, t + 10 * HOUR, 50)]))
        .await
        .expect("commit");
    assert_ne!(after_triage[0].id, late[0].id);
    assert_eq!(store.alert(&late[0].id).await.expect("read").expect("exists").firings, 1);
    // The integrity monitor's alerts stand alone.
    let integrity =
        |index| NewAlert { evidence: evidence(index), ..alert("", "ledger-integrity", Severity::Critical, t) };
    let a = store.raise(&[integrity(60)]).await.expect("raise");
    let b = store.raise(&[integrity(61)]).await.expect("raise");
    assert_ne!(a[0].id, b[0].id);

    // Evidence stays bounded: the first and the latest entries.
    let many: Vec<NewAlert> =
        (0..30).map(|i| firing("credential-misuse", Severity::Medium, t + 10 * HOUR + i, 100 + i as u64)).collect();
    let bounded = store.commit_batch(4, 5, &batch(many)).await.expect("commit");
    let indices: Vec<u64> = bounded[0].evidence.iter().map(|e| e.index).collect();
    assert_eq!(indices.len(), quis_sentinel::detect::MAX_EVIDENCE);
    assert_eq!((indices[0], indices[indices.len() - 1]), (50, 129));
    assert_eq!(bounded[0].firings, 31);

    // With no alert window, every firing is an alert.
    drop(store);
    let store = SentinelStore::connect(&url, 24 * 3600, 0).await.expect("store");
    let one = store
        .commit_batch(5, 6, &batch(vec![firing("volume", Severity::Medium, t + 11 * HOUR, 200)]))
        .await
        .expect("commit");
    let two = store
        .commit_batch(6, 7, &batch(vec![firing("volume", Severity::Medium, t + 11 * HOUR, 201)]))
        .await
        .expect("commit");
    assert_ne!(one[0].id, two[0].id);
}

#[tokio::test]
async fn firings_join_the_open_alert_sqlite() {
    firings_join_the_open_alert(false).await;
}

#[tokio::test]
async fn firings_join_the_open_alert_postgres() {
    firings_join_the_open_alert(true).await;
}

/// A store created before alerts counted their firings gains the columns at start; its
/// alerts read as fired once.
async fn older_alerts_gain_firings(postgres: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = support::sentinel_store_url(dir.path(), postgres).await;
    let db = quis_core::db::Db::connect(&url).await.expect("db");
    let old = "CREATE TABLE sentinel_alerts (seq BIGINT PRIMARY KEY, id TEXT NOT NULL UNIQUE, \
        detection TEXT NOT NULL, severity BIGINT NOT NULL, explanation TEXT NOT NULL, evidence TEXT NOT NULL, \
        actor TEXT NOT NULL, event_ms BIGINT NOT NULL, create_ms BIGINT NOT NULL, state BIGINT NOT NULL, \
        incident TEXT NOT NULL, triage_note TEXT NOT NULL, triaged_by TEXT NOT NULL, triage_ms BIGINT NOT NULL, \
        triage_index BIGINT NOT NULL); \
        INSERT INTO sentinel_alerts VALUES (1, 'a1', 'volume', 2, 'old', '[]', 'mallory', 1000, 2000, 1, 'i1', '', '', 0, 0)";
    db.migrate(old, old).await.expect("old schema");
    let store = SentinelStore::connect(&url, 3600, 3600).await.expect("store");
    let row = store.alert("a1").await.expect("read").expect("exists");
    assert_eq!((row.first_event_ms, row.event_ms, row.update_ms, row.firings), (1000, 1000, 2000, 1));
    // Starting again changes nothing.
    drop(store);
    let store = SentinelStore::connect(&url, 3600, 3600).await.expect("store");
    assert_eq!(store.alert("a1").await.expect("read").expect("exists"), row);
}

#[tokio::test]
async fn older_alerts_gain_firings_sqlite() {
    older_alerts_gain_firings(false).await;
}

#[tokio::test]
async fn older_alerts_gain_firings_postgres() {
    older_alerts_gain_firings(true).await;
}
