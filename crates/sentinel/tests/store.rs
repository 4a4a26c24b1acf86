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
    let store = SentinelStore::connect(&url, 24 * 3600).await.expect("store");
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
