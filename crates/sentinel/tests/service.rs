//! `SentinelService` over real sockets, against a real ledger: who may read
//! and triage, precise refusals, pagination, the watch stream, incidents,
//! the break-glass review queue, and triage recorded in the ledger by the
//! `sentinel` service principal.
mod support;

use std::time::Duration;

use prost::Message;
use quis_auth::Role;
use quis_proto::{
    ledger::{
        Action, Decision, GetEntriesRequest, LedgerEntry, event::Kind, ledger_service_client::LedgerServiceClient,
    },
    sentinel::{
        AlertState, CompleteReviewRequest, GetAlertRequest, GetDetectionStatsRequest, GetIncidentRequest,
        ListAlertsRequest, ListDetectionsRequest, ListIncidentsRequest, ListReviewsRequest, ReviewState, Severity,
        TriageAction, TriageAlertRequest, WatchAlertsRequest, sentinel_service_client::SentinelServiceClient,
    },
};
use support::*;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status, transport::Channel};
use tonic_types::StatusExt;

fn reason(s: &Status) -> String {
    s.get_error_details().error_info().map(|i| i.reason.clone()).unwrap_or_default()
}

fn fields(s: &Status) -> Vec<String> {
    s.get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

#[track_caller]
fn refused(s: Status, code: Code, why: &str) {
    assert_eq!(s.code(), code, "{s:?}");
    assert_eq!(reason(&s), why, "{s:?}");
}

struct Fixture {
    ledger: TestLedger,
    client: SentinelServiceClient<Channel>,
    investigator: String,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn fixture() -> Fixture {
    fixture_on(false).await
}

async fn fixture_on(postgres: bool) -> Fixture {
    let ledger = start_ledger(|_| {}).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sentinel_store_url(dir.path(), postgres).await;
    let stop = CancellationToken::new();
    let mut config = ledger.sentinel_config();
    config.detections.enumeration.denials = 5;
    let built =
        quis_sentinel::build_with(config, &url, ledger.link().await, None, stop.clone()).await.expect("sentinel");
    let addr = serve_backend(&ledger.config, built, stop.clone()).await;
    let client = SentinelServiceClient::new(channel(addr).await);
    let investigator = ledger.token("ivy", &[Role::Investigator]);
    Fixture { ledger, client, investigator, stop, _dir: dir }
}

impl Fixture {
    async fn wait_cursor(&mut self, size: u64) {
        let token = self.investigator.clone();
        let client = &mut self.client;
        let ok = eventually(Duration::from_secs(10), async || {
            client
                .get_detection_stats(with_token(GetDetectionStatsRequest {}, &token))
                .await
                .is_ok_and(|r| r.into_inner().cursor >= size)
        })
        .await;
        assert!(ok, "sentinel did not reach {size}");
    }
}

fn probing(actor: &str, n: usize) -> Vec<(quis_proto::ledger::Event, Vec<quis_proto::ledger::EventDetail>)> {
    (0..n).map(|i| access(actor, "10.0.0.1", Action::Read, Decision::Deny, &format!("{actor}-{i}"))).collect()
}

#[tokio::test]
async fn investigators_triage_and_the_ledger_records_it_sqlite() {
    investigators_triage_and_the_ledger_records_it(false).await;
}

#[tokio::test]
async fn investigators_triage_and_the_ledger_records_it_postgres() {
    investigators_triage_and_the_ledger_records_it(true).await;
}

async fn investigators_triage_and_the_ledger_records_it(postgres: bool) {
    let mut f = fixture_on(postgres).await;
    let ivy = f.investigator.clone();
    let mut watch = f
        .client
        .watch_alerts(with_token(
            WatchAlertsRequest { after: String::new(), min_severity: Severity::High as i32 },
            &ivy,
        ))
        .await
        .expect("watch")
        .into_inner();
    f.ledger.append(probing("mallory", 5)).await;
    f.wait_cursor(5).await;

    let watched = tokio::time::timeout(Duration::from_secs(5), watch.message()).await.expect("in time").expect("ok");
    let watched = watched.and_then(|w| w.alert).expect("an alert");
    assert_eq!(watched.detection_id, "enumeration");
    assert_eq!(watched.state, AlertState::Open as i32);

    let got = f.client.get_alert(with_token(GetAlertRequest { name: watched.name.clone() }, &ivy)).await.expect("get");
    assert_eq!(got.into_inner().alert.expect("alert"), watched);
    assert_eq!(watched.firings, 1);

    // Probing on: the detection fires again and joins the open alert, which the stream sends again.
    f.ledger.append(probing("mallory", 5)).await;
    f.wait_cursor(10).await;
    let again = tokio::time::timeout(Duration::from_secs(5), watch.message()).await.expect("in time").expect("ok");
    let again = again.and_then(|w| w.alert).expect("an alert");
    assert_eq!((again.name.as_str(), again.firings), (watched.name.as_str(), 2));
    assert_eq!(again.evidence.len(), 10);
    assert_eq!(again.first_event_time, watched.event_time);
    let seconds = |t: &Option<prost_types::Timestamp>| t.as_ref().map(|t| (t.seconds, t.nanos));
    assert!(seconds(&again.update_time) >= seconds(&watched.update_time));
    let got = f.client.get_alert(with_token(GetAlertRequest { name: watched.name.clone() }, &ivy)).await.expect("get");
    assert_eq!(got.into_inner().alert.expect("alert"), again);

    // Triage: recorded in the ledger first, by the sentinel service, naming the investigator.
    let triaged = f
        .client
        .triage_alert(with_token(
            TriageAlertRequest {
                name: watched.name.clone(),
                action: TriageAction::Acknowledge as i32,
                note: "looking into it".into(),
            },
            &ivy,
        ))
        .await
        .expect("triage")
        .into_inner()
        .alert
        .expect("alert");
    assert_eq!(triaged.state, AlertState::Acknowledged as i32);
    assert_eq!(triaged.triaged_by, "ivy");
    assert_eq!(triaged.triage_ledger_index, 10);
    let mut ledger = LedgerServiceClient::new(f.ledger.channel().await);
    let entries = ledger
        .get_entries(with_token(
            GetEntriesRequest { start_index: 10, end_index: 11, ..Default::default() },
            &f.ledger.token("audrey", &[Role::Auditor]),
        ))
        .await
        .expect("entries")
        .into_inner()
        .entries;
    let entry = LedgerEntry::decode(entries[0].data.as_slice()).expect("decode");
    assert_eq!(entry.appended_by, "sentinel");
    let Some(Kind::Triage(t)) = entry.event.and_then(|e| e.kind) else { panic!("not a triage event") };
    assert_eq!(t.target, watched.name);
    assert_eq!(t.state, "ACKNOWLEDGED");
    assert_eq!(t.actor.expect("actor").principal, "ivy");
    assert!(t.note.is_some_and(|n| n.digest.len() == 32));
    // Sentinel tails its own triage event too; it raises nothing.
    f.wait_cursor(11).await;

    let resolve = |action: TriageAction| {
        with_token(TriageAlertRequest { name: watched.name.clone(), action: action as i32, note: "done".into() }, &ivy)
    };
    let resolved = f.client.triage_alert(resolve(TriageAction::Resolve)).await.expect("resolve").into_inner();
    assert_eq!(resolved.alert.expect("alert").state, AlertState::Resolved as i32);
    refused(
        f.client.triage_alert(resolve(TriageAction::FalsePositive)).await.expect_err("closed"),
        Code::FailedPrecondition,
        "ALERT_CLOSED",
    );

    // The alert's incident groups it on its actor.
    let incidents = f
        .client
        .list_incidents(with_token(ListIncidentsRequest { actor: "mallory".into(), ..Default::default() }, &ivy))
        .await
        .expect("incidents")
        .into_inner()
        .incidents;
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0].alerts, vec![watched.name.clone()]);
    assert_eq!(incidents[0].name, watched.incident);
    let incident = f
        .client
        .get_incident(with_token(GetIncidentRequest { name: watched.incident.clone() }, &ivy))
        .await
        .expect("get");
    assert_eq!(incident.into_inner().incident.expect("incident").detection_ids, vec!["enumeration".to_string()]);
}

#[tokio::test]
async fn only_investigators_and_auditors_read_and_only_investigators_triage() {
    let mut f = fixture().await;
    let caseworker = f.ledger.token("alice", &[Role::Caseworker]);
    let auditor = f.ledger.token("audrey", &[Role::Auditor]);
    refused(
        f.client.list_alerts(with_token(ListAlertsRequest::default(), &caseworker)).await.expect_err("caseworker"),
        Code::PermissionDenied,
        "ROLE_REQUIRED",
    );
    refused(
        f.client.list_alerts(ListAlertsRequest::default()).await.expect_err("anonymous"),
        Code::Unauthenticated,
        "TOKEN_MISSING",
    );
    f.client.list_alerts(with_token(ListAlertsRequest::default(), &auditor)).await.expect("auditor reads");
    let triage =
        TriageAlertRequest { name: "alerts/a-1".into(), action: TriageAction::Resolve as i32, note: "x".into() };
    refused(
        f.client.triage_alert(with_token(triage, &auditor)).await.expect_err("auditor triage"),
        Code::PermissionDenied,
        "ROLE_REQUIRED",
    );
}

#[tokio::test]
async fn bad_input_is_refused_field_by_field() {
    let mut f = fixture().await;
    let ivy = f.investigator.clone();
    let bad = TriageAlertRequest { name: "alert/Nope".into(), action: 0, note: " ".into() };
    let s = f.client.triage_alert(with_token(bad, &ivy)).await.expect_err("bad triage");
    refused(s.clone(), Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(fields(&s), vec!["name", "action", "note"]);
    // Within 2,000 characters, over the 4,096 bytes the ledger keeps behind the note's commitment.
    let wide = TriageAlertRequest { name: "alerts/a-1".into(), action: 0, note: "€".repeat(1500) };
    let s = f.client.triage_alert(with_token(wide, &ivy)).await.expect_err("wide note");
    assert_eq!(fields(&s), vec!["action", "note"]);
    let bad = ListAlertsRequest {
        page_size: 5000,
        page_token: "abc".into(),
        detection_id: "made-up".into(),
        min_severity: 42,
        ..Default::default()
    };
    let s = f.client.list_alerts(with_token(bad, &ivy)).await.expect_err("bad list");
    assert_eq!(fields(&s), vec!["page_size", "page_token", "detection_id", "min_severity"]);
    refused(
        f.client
            .get_alert(with_token(GetAlertRequest { name: "alerts/none-such".into() }, &ivy))
            .await
            .expect_err("404"),
        Code::NotFound,
        "NOT_FOUND",
    );
    let s = f
        .client
        .complete_review(with_token(
            CompleteReviewRequest { name: "reviews/r".into(), outcome: ReviewState::Pending as i32, note: "ok".into() },
            &ivy,
        ))
        .await
        .expect_err("pending is not an outcome");
    assert_eq!(fields(&s), vec!["outcome"]);
}

#[tokio::test]
async fn pages_reviews_and_detections_sqlite() {
    pages_reviews_and_detections(false).await;
}

#[tokio::test]
async fn pages_reviews_and_detections_postgres() {
    pages_reviews_and_detections(true).await;
}

async fn pages_reviews_and_detections(postgres: bool) {
    let mut f = fixture_on(postgres).await;
    let ivy = f.investigator.clone();
    let mut events = probing("mallory", 5);
    events.extend(probing("oscar", 5));
    events.push(access("hank", "10.0.0.9", Action::BreakGlassStart, Decision::Allow, "patient-1"));
    f.ledger.append(events).await;
    f.wait_cursor(11).await;

    // Two enumeration alerts and one break-glass-abuse (no justification), newest first, one per page.
    let mut names = Vec::new();
    let mut token = String::new();
    loop {
        let page = f
            .client
            .list_alerts(with_token(ListAlertsRequest { page_size: 1, page_token: token, ..Default::default() }, &ivy))
            .await
            .expect("page")
            .into_inner();
        names.extend(page.alerts.into_iter().map(|a| (a.detection_id, a.actor)));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        names,
        vec![
            ("break-glass-abuse".to_string(), "hank".to_string()),
            ("enumeration".to_string(), "oscar".to_string()),
            ("enumeration".to_string(), "mallory".to_string()),
        ]
    );

    let reviews = f
        .client
        .list_reviews(with_token(ListReviewsRequest { state: ReviewState::Pending as i32, ..Default::default() }, &ivy))
        .await
        .expect("reviews")
        .into_inner()
        .reviews;
    assert_eq!(reviews.len(), 1);
    assert_eq!(reviews[0].actor, "hank");
    assert!(!reviews[0].justified_at_start);
    assert_eq!(reviews[0].evidence.as_ref().expect("evidence").index, 10);
    let complete = |outcome: ReviewState| {
        with_token(
            CompleteReviewRequest {
                name: reviews[0].name.clone(),
                outcome: outcome as i32,
                note: "called the ward".into(),
            },
            &ivy,
        )
    };
    let done = f.client.complete_review(complete(ReviewState::Justified)).await.expect("complete").into_inner();
    let done = done.review.expect("review");
    assert_eq!(done.state, ReviewState::Justified as i32);
    assert_eq!(done.review_ledger_index, 11);
    refused(
        f.client.complete_review(complete(ReviewState::Unjustified)).await.expect_err("twice"),
        Code::FailedPrecondition,
        "REVIEW_COMPLETED",
    );

    let detections =
        f.client.list_detections(with_token(ListDetectionsRequest {}, &ivy)).await.expect("detections").into_inner();
    let enumeration = detections.detections.iter().find(|d| d.id == "enumeration").expect("enumeration");
    assert_eq!(enumeration.thresholds.get("denials").map(String::as_str), Some("5"));
    assert_eq!(enumeration.severity, Severity::High as i32);

    let stats = f.client.get_detection_stats(with_token(GetDetectionStatsRequest {}, &ivy)).await.expect("stats");
    let stats = stats.into_inner();
    assert_eq!(stats.alerts, 3);
    assert_eq!(stats.staff_days, 3);
    assert!((stats.alerts_per_1000_staff_days - 1000.0).abs() < 1e-9);
    assert_eq!(stats.alerts_by_detection.get("enumeration"), Some(&2));
}
