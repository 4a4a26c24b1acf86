//! The ledger consumer against a real ledger, with sentinel's store on SQLite
//! and on PostgreSQL: alerts from tailed entries, a restart that resumes
//! exactly (detection state included), and nothing alerted twice.
mod support;

use std::time::Duration;

use quis_auth::Role;
use quis_proto::{
    ledger::{Action, Decision},
    sentinel::{GetDetectionStatsRequest, ListAlertsRequest, sentinel_service_client::SentinelServiceClient},
};
use support::*;
use tokio_util::sync::CancellationToken;

struct Running {
    stop: CancellationToken,
    client: SentinelServiceClient<tonic::transport::Channel>,
    token: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start_sentinel(ledger: &TestLedger, store_url: &str) -> Running {
    start_sentinel_via(ledger, store_url, ledger.grpc).await
}

async fn start_sentinel_via(ledger: &TestLedger, store_url: &str, ledger_addr: std::net::SocketAddr) -> Running {
    let stop = CancellationToken::new();
    let mut config = ledger.sentinel_config();
    config.detections.enumeration.denials = 10;
    let link = ledger.link_via(ledger_addr).await;
    let built = quis_sentinel::build_with(config, store_url, link, None, stop.clone()).await.expect("sentinel");
    let addr = serve_backend(&ledger.config, built, stop.clone()).await;
    Running {
        stop,
        client: SentinelServiceClient::new(channel(addr).await),
        token: ledger.token("ivy", &[Role::Investigator]),
    }
}

impl Running {
    async fn cursor(&mut self) -> u64 {
        let req = with_token(GetDetectionStatsRequest {}, &self.token);
        self.client.get_detection_stats(req).await.expect("stats").into_inner().cursor
    }

    async fn wait_cursor(&mut self, size: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.cursor().await < size {
            assert!(tokio::time::Instant::now() < deadline, "sentinel did not reach {size}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(self.cursor().await, size, "sentinel went past the ledger");
    }

    async fn alerts(&mut self, detection: &str) -> Vec<quis_proto::sentinel::Alert> {
        let req = ListAlertsRequest { detection_id: detection.into(), page_size: 1000, ..Default::default() };
        self.client.list_alerts(with_token(req, &self.token)).await.expect("list").into_inner().alerts
    }
}

fn denials(
    actor: &str,
    n: usize,
    from: usize,
) -> Vec<(quis_proto::ledger::Event, Vec<quis_proto::ledger::EventDetail>)> {
    (from..from + n).map(|i| access(actor, "10.0.0.1", Action::Read, Decision::Deny, &format!("s-{i}"))).collect()
}

async fn restart_resumes_exactly(postgres: bool) {
    let ledger = start_ledger(|_| {}).await;
    let store_dir = tempfile::tempdir().expect("tempdir");
    let url = sentinel_store_url(store_dir.path(), postgres).await;

    // Six denials: below the threshold of ten.
    let mut events = denials("mallory", 6, 0);
    events.extend((0..4).map(|i| access("alice", "10.0.0.2", Action::Read, Decision::Allow, &format!("a-{i}"))));
    ledger.append(events).await;
    let mut first = start_sentinel(&ledger, &url).await;
    first.wait_cursor(10).await;
    assert!(first.alerts("enumeration").await.is_empty());
    drop(first);

    // Four more while sentinel is down: ten in the window only if the six were remembered.
    ledger.append(denials("mallory", 4, 6)).await;
    let mut second = start_sentinel(&ledger, &url).await;
    second.wait_cursor(14).await;
    let alerts = second.alerts("enumeration").await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = &alerts[0];
    assert_eq!(alert.actor, "mallory");
    assert_eq!(alert.evidence.len(), 10);
    let mut indices: Vec<u64> = alert.evidence.iter().map(|e| e.index).collect();
    indices.sort();
    assert_eq!(indices, vec![0, 1, 2, 3, 4, 5, 10, 11, 12, 13]);
    assert!(alert.explanation.contains("mallory was denied 10 times"), "{}", alert.explanation);
    let stats = second
        .client
        .get_detection_stats(with_token(GetDetectionStatsRequest {}, &second.token))
        .await
        .expect("stats")
        .into_inner();
    assert_eq!(stats.accesses, 4);
    assert_eq!(stats.explained_accesses, 4);
    drop(second);

    // A restart with nothing new raises nothing again.
    let mut third = start_sentinel(&ledger, &url).await;
    third.wait_cursor(14).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(third.alerts("enumeration").await.len(), 1);
    // Leaf hashes are the ledger's: SHA-256(0x00 || stored bytes).
    let mut client = quis_proto::ledger::ledger_service_client::LedgerServiceClient::new(ledger.channel().await);
    let entries = client
        .get_entries(with_token(
            quis_proto::ledger::GetEntriesRequest { start_index: 0, end_index: 14, ..Default::default() },
            &ledger.token("audrey", &[Role::Auditor]),
        ))
        .await
        .expect("entries")
        .into_inner()
        .entries;
    let alert = &third.alerts("enumeration").await[0];
    for e in &alert.evidence {
        let stored = &entries[e.index as usize];
        assert_eq!(e.leaf_hash, quis_tlog::leaf_hash(&stored.data).to_vec());
    }
}

#[tokio::test]
async fn restart_resumes_exactly_sqlite() {
    restart_resumes_exactly(false).await;
}

#[tokio::test]
async fn restart_resumes_exactly_postgres() {
    restart_resumes_exactly(true).await;
}

async fn follows_live_appends_and_reconnects(postgres: bool) {
    let ledger = start_ledger(|_| {}).await;
    let store_dir = tempfile::tempdir().expect("tempdir");
    let url = sentinel_store_url(store_dir.path(), postgres).await;
    let relay = Relay::start(ledger.grpc).await;
    let mut s = start_sentinel_via(&ledger, &url, relay.addr).await;
    for round in 0..2 {
        ledger.append(denials("eve", 5, round * 5)).await;
    }
    s.wait_cursor(10).await;
    assert_eq!(s.alerts("enumeration").await.len(), 1);
    // The connection to the ledger breaks: sentinel reconnects and resumes where it stopped.
    relay.cut();
    ledger.append(denials("eve", 9, 10)).await;
    s.wait_cursor(19).await;
    assert_eq!(s.alerts("enumeration").await.len(), 1, "nine denials after the alert are below the threshold");
    ledger.append(denials("eve", 1, 19)).await;
    s.wait_cursor(20).await;
    // The second firing joins the open alert: one alert, fired twice, on all twenty denials.
    let alerts = s.alerts("enumeration").await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].firings, 2);
    let mut indices: Vec<u64> = alerts[0].evidence.iter().map(|e| e.index).collect();
    indices.sort();
    assert_eq!(indices, (0..20).collect::<Vec<u64>>());
}

#[tokio::test]
async fn follows_live_appends_and_reconnects_sqlite() {
    follows_live_appends_and_reconnects(false).await;
}

#[tokio::test]
async fn follows_live_appends_and_reconnects_postgres() {
    follows_live_appends_and_reconnects(true).await;
}
