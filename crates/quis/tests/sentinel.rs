//! Sentinel in the suite, over real sockets: accesses appended to the ledger
//! by the vault's service token become alerts that investigators read and
//! watch through the gateway; triage lands in the ledger as the `sentinel`
//! service; a restarted sentinel resumes from its stored cursor without
//! raising an alert twice; policy's entities (written through policy, read by
//! sentinel from its change feed) and the subjects opened through the
//! ledger's details explain accesses and reveal a decoy; and a malformed
//! detection setting stops the configuration from loading, naming its key.
mod support;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use prost::Message;
use quis_auth::{
    PrincipalKind, Role, TokenVerifier,
    mint::{TokenSigner, TokenSpec},
};
use quis_core::{QuisConfig, health::Readiness, keys::FileKeySource};
use quis_proto::{
    ledger::{
        Action, AppendEventsRequest, Decision, Event, EventDetail, GetEntriesRequest, LedgerEntry, event::Kind,
        ledger_service_client::LedgerServiceClient,
    },
    policy::{
        self as pb, BatchUpsertEntitiesRequest, Entity, entity::Kind as E, policy_service_client::PolicyServiceClient,
    },
    sentinel::{
        AlertState, GetDetectionStatsRequest, ListAlertsRequest, Severity, TriageAction, TriageAlertRequest,
        WatchAlertsRequest, sentinel_service_client::SentinelServiceClient,
    },
};
use quis_runtime::ServiceContext;
use support::*;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Code, transport::Channel};

/// A ledger, policy, a sentinel on a SQLite file that can be restarted on the same address, and the gateway.
struct World {
    _dir: tempfile::TempDir,
    config: Arc<QuisConfig>,
    signer: TokenSigner,
    stop: CancellationToken,
    ledger: SocketAddr,
    policy: SocketAddr,
    sentinel: SocketAddr,
    sentinel_stop: CancellationToken,
    gateway: SocketAddr,
}

impl Drop for World {
    fn drop(&mut self) {
        self.sentinel_stop.cancel();
        self.stop.cancel();
    }
}

/// Serves `quis_sentinel::build` of `config` on `listener` until the returned token is cancelled.
async fn start_sentinel(config: &Arc<QuisConfig>, listener: TcpListener) -> CancellationToken {
    let stop = CancellationToken::new();
    let verifier = TokenVerifier::from_config(config, stop.clone()).await.expect("verifier");
    let ctx = ServiceContext { config: Arc::clone(config), verifier, shutdown: stop.clone() };
    let built = quis_sentinel::build(&ctx).await.expect("sentinel");
    tokio::spawn(async move { quis_runtime::serve(&ctx, built, listener, Readiness::default()).await });
    stop
}

impl World {
    async fn start() -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = test_config(dir.path());
        config.ledger.checkpoint_interval_ms = 50;
        let stop = CancellationToken::new();
        let ledger_config = Arc::new(config.clone());
        let verifier = TokenVerifier::from_config(&ledger_config, stop.clone()).await.expect("verifier");
        let ctx = ServiceContext { config: ledger_config, verifier, shutdown: stop.clone() };
        let (built, _tiles, log) = quis_ledger::build(&ctx).await.expect("ledger");
        let (l, ledger) = listener().await;
        tokio::spawn(async move { quis_runtime::serve(&ctx, built, l, Readiness::default()).await });
        config.policy.ledger_url = Some(format!("http://{ledger}"));
        let policy_config = Arc::new(config.clone());
        let verifier = TokenVerifier::from_config(&policy_config, stop.clone()).await.expect("verifier");
        let ctx = ServiceContext { config: policy_config, verifier, shutdown: stop.clone() };
        let (built, _) = quis_policy::build(&ctx).await.expect("policy");
        let (l, policy) = listener().await;
        tokio::spawn(async move { quis_runtime::serve(&ctx, built, l, Readiness::default()).await });

        let s = &mut config.sentinel;
        s.ledger_url = Some(format!("http://{ledger}"));
        s.policy_url = Some(format!("http://{policy}"));
        s.log_vkeys = vec![log.verifier_key()];
        s.integrity_interval_ms = 50;
        s.reconnect_min_ms = 20;
        s.reconnect_max_ms = 200;
        s.detections.enumeration.denials = 5;
        let (l, sentinel) = listener().await;
        config.gateway.upstreams.insert("sentinel".into(), vec![format!("http://{sentinel}")]);
        config.gateway.upstreams.insert("ledger".into(), vec![format!("http://{ledger}")]);
        let config = Arc::new(config);
        let sentinel_stop = start_sentinel(&config, l).await;
        let gateway = serve_gateway(&config, stop.clone()).await;
        let signer = TokenSigner::load(&FileKeySource::new(dir.path()), &config.auth.issuer, &config.auth.audience)
            .expect("signer");
        World { _dir: dir, config, signer, stop, ledger, policy, sentinel, sentinel_stop, gateway }
    }

    /// Stops sentinel and starts another on the same store and address.
    async fn restart_sentinel(&mut self) {
        self.sentinel_stop.cancel();
        let mut bound = None;
        // The old server releases its port once its listener task has seen the cancellation.
        let released = eventually(Duration::from_secs(10), async || {
            bound = TcpListener::bind(self.sentinel).await.ok();
            bound.is_some()
        })
        .await;
        assert!(released, "the old sentinel releases its port");
        self.sentinel_stop = start_sentinel(&self.config, bound.expect("bound")).await;
    }

    fn token(&self, sub: &str, kind: PrincipalKind, roles: &[Role]) -> String {
        self.signer.mint(&TokenSpec::new(sub, kind, roles)).expect("mint").0
    }

    /// Appends access events with the vault's service token, straight to the ledger (appending is
    /// internal: the gateway does not route it).
    async fn append_as_vault(&self, events: Vec<(Event, Vec<EventDetail>)>) -> Vec<u64> {
        let (events, details): (Vec<Event>, Vec<Vec<EventDetail>>) = events.into_iter().unzip();
        let request = AppendEventsRequest { events, details: details.into_iter().flatten().collect() };
        let vault = self.token("vault", PrincipalKind::Service, &[Role::Service]);
        let mut ledger = LedgerServiceClient::new(channel(self.ledger).await);
        ledger.append_events(with_token(request, &vault)).await.expect("append").into_inner().indices
    }

    /// Writes entities through policy as the vault (HR and case feeds would do the same).
    async fn upsert_entities(&self, entities: Vec<Entity>) {
        let vault = self.token("vault", PrincipalKind::Service, &[Role::Service]);
        let mut policy = PolicyServiceClient::new(channel(self.policy).await);
        let request = BatchUpsertEntitiesRequest { entities, reason: "HR and case feeds".into() };
        policy.batch_upsert_entities(with_token(request, &vault)).await.expect("entities");
    }

    async fn sentinel_via_gateway(&self) -> SentinelServiceClient<Channel> {
        SentinelServiceClient::new(channel(self.gateway).await)
    }

    /// Waits until sentinel has processed the ledger up to `size`, asking through the gateway.
    async fn processed(&self, size: u64, token: &str) {
        let mut client = self.sentinel_via_gateway().await;
        let ok = eventually(Duration::from_secs(15), async || {
            client
                .get_detection_stats(with_token(GetDetectionStatsRequest {}, token))
                .await
                .is_ok_and(|r| r.into_inner().cursor >= size)
        })
        .await;
        assert!(ok, "sentinel did not reach entry {size}");
    }
}

fn probing(actor: &str, from: usize, n: usize) -> Vec<(Event, Vec<EventDetail>)> {
    (from..from + n).map(|i| access(actor, "10.0.0.7", Action::Read, Decision::Deny, &format!("subject-{i}"))).collect()
}

#[tokio::test]
async fn accesses_in_the_ledger_become_alerts_read_watched_and_triaged_through_the_gateway() {
    let mut world = World::start().await;
    let ivy = world.token("ivy", PrincipalKind::Staff, &[Role::Investigator]);
    let mut client = world.sentinel_via_gateway().await;
    let ready = eventually(Duration::from_secs(10), async || {
        client.list_alerts(with_token(ListAlertsRequest::default(), &ivy)).await.is_ok()
    })
    .await;
    assert!(ready, "sentinel is routed by the gateway");
    let mut watch = client
        .watch_alerts(with_token(
            WatchAlertsRequest { after: String::new(), min_severity: Severity::High as i32 },
            &ivy,
        ))
        .await
        .expect("watch")
        .into_inner();

    let indices = world.append_as_vault(probing("mallory", 0, 5)).await;
    let watched = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect("an alert in time")
        .expect("stream")
        .and_then(|w| w.alert)
        .expect("alert");
    assert_eq!(watched.detection_id, "enumeration");
    assert_eq!(watched.actor, "mallory");
    assert_eq!(watched.evidence.iter().map(|e| e.index).collect::<Vec<_>>(), indices, "evidence: the ledger indices");

    let listed =
        client.list_alerts(with_token(ListAlertsRequest::default(), &ivy)).await.expect("list").into_inner().alerts;
    assert_eq!(listed, vec![watched.clone()]);
    let caseworker = world.token("alice", PrincipalKind::Staff, &[Role::Caseworker]);
    assert_refused(
        &client.list_alerts(with_token(ListAlertsRequest::default(), &caseworker)).await.expect_err("caseworker"),
        Code::PermissionDenied,
        "ROLE_REQUIRED",
    );

    // Triage through the gateway lands in the ledger, appended by sentinel, naming the investigator.
    let triaged = client
        .triage_alert(with_token(
            TriageAlertRequest {
                name: watched.name.clone(),
                action: TriageAction::Acknowledge as i32,
                note: "asked mallory's team lead".into(),
            },
            &ivy,
        ))
        .await
        .expect("triage")
        .into_inner()
        .alert
        .expect("alert");
    assert_eq!(triaged.state, AlertState::Acknowledged as i32);
    let at = triaged.triage_ledger_index;
    let auditor = world.token("audrey", PrincipalKind::Staff, &[Role::Auditor]);
    let mut ledger = LedgerServiceClient::new(channel(world.gateway).await);
    let entries = ledger
        .get_entries(with_token(
            GetEntriesRequest { start_index: at, end_index: at + 1, ..Default::default() },
            &auditor,
        ))
        .await
        .expect("entries through the gateway")
        .into_inner()
        .entries;
    let entry = LedgerEntry::decode(entries[0].data.as_slice()).expect("decode");
    assert_eq!(entry.appended_by, "sentinel");
    let Some(Kind::Triage(t)) = entry.event.and_then(|e| e.kind) else { panic!("not a triage event") };
    assert_eq!((t.target.as_str(), t.state.as_str()), (watched.name.as_str(), "ACKNOWLEDGED"));
    assert_eq!(t.actor.expect("actor").principal, "ivy");
    world.processed(at + 1, &ivy).await;

    // A restart resumes from the stored cursor: the first probe is not alerted again, the next one is.
    drop(watch);
    world.restart_sentinel().await;
    let more = world.append_as_vault(probing("mallory", 5, 5)).await;
    world.processed(more[4] + 1, &ivy).await;
    let mut client = world.sentinel_via_gateway().await;
    let after = client
        .list_alerts(with_token(ListAlertsRequest { actor: "mallory".into(), ..Default::default() }, &ivy))
        .await
        .expect("list")
        .into_inner()
        .alerts;
    assert_eq!(after.len(), 2, "one alert per probe, none repeated: {after:?}");
    assert_eq!(after[0].evidence.iter().map(|e| e.index).collect::<Vec<_>>(), more);
    assert_eq!(after[1].name, watched.name);
    assert_eq!(after[1].state, AlertState::Acknowledged as i32, "triage survives the restart");
}

fn entity(kind: E) -> Entity {
    Entity { kind: Some(kind) }
}

#[tokio::test]
async fn policy_entities_explain_accesses_and_a_decoy_touch_is_critical() {
    let world = World::start().await;
    world
        .upsert_entities(vec![
            entity(E::Team(pb::Team { name: "teams/north".into(), site: "hq".into(), parent: String::new() })),
            entity(E::Staff(pb::Staff {
                name: "staff/alice".into(),
                team: "teams/north".into(),
                site: "hq".into(),
                roles: vec!["caseworker".into()],
                status: pb::StaffStatus::Active as i32,
                surname_key: vec![1; 32],
                address_key: vec![2; 32],
                ..Default::default()
            })),
            entity(E::Subject(pb::Subject {
                name: "subjects/s-1".into(),
                surname_key: vec![1; 32],
                address_key: vec![3; 32],
                ..Default::default()
            })),
            entity(E::Subject(pb::Subject {
                name: "subjects/decoy-1".into(),
                decoy: true,
                surname_key: vec![4; 32],
                address_key: vec![5; 32],
                ..Default::default()
            })),
            entity(E::Case(pb::Case {
                name: "cases/c-1".into(),
                subjects: vec!["subjects/s-1".into()],
                assigned_staff: vec!["staff/alice".into()],
                status: pb::CaseStatus::Open as i32,
                purpose: pb::Purpose::Casework as i32,
                ..Default::default()
            })),
        ])
        .await;
    let ivy = world.token("ivy", PrincipalKind::Staff, &[Role::Investigator]);
    // Alice on her case (her surname, a common one: no alert), then on the decoy under the same case.
    let indices = world
        .append_as_vault(vec![
            access("alice", "10.0.0.9", Action::Read, Decision::Allow, "subjects/s-1"),
            access("alice", "10.0.0.9", Action::Read, Decision::Allow, "subjects/decoy-1"),
        ])
        .await;
    let mut client = world.sentinel_via_gateway().await;
    let mut alerts = Vec::new();
    let found = eventually(Duration::from_secs(15), async || {
        alerts = client
            .list_alerts(with_token(ListAlertsRequest { actor: "alice".into(), ..Default::default() }, &ivy))
            .await
            .map(|r| r.into_inner().alerts)
            .unwrap_or_default();
        !alerts.is_empty()
    })
    .await;
    assert!(found, "the decoy touch is alerted");
    world.processed(indices[1] + 1, &ivy).await;
    let alerts = client
        .list_alerts(with_token(ListAlertsRequest { actor: "alice".into(), ..Default::default() }, &ivy))
        .await
        .expect("list")
        .into_inner()
        .alerts;
    assert_eq!(alerts.iter().map(|a| a.detection_id.as_str()).collect::<Vec<_>>(), vec!["honeytoken"], "{alerts:?}");
    assert_eq!(alerts[0].severity, Severity::Critical as i32);
    assert_eq!(alerts[0].evidence.iter().map(|e| e.index).collect::<Vec<_>>(), vec![indices[1]]);
    let stats = client.get_detection_stats(with_token(GetDetectionStatsRequest {}, &ivy)).await.expect("stats");
    let stats = stats.into_inner();
    assert_eq!((stats.explained_accesses, stats.accesses), (1, 2), "the decoy is on no case of hers");
}

#[test]
fn a_malformed_detection_setting_is_refused_naming_its_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("quis.toml");
    std::fs::write(&file, "[sentinel.detections.volume]\nfactor = 0.5\n").expect("write");
    let e = QuisConfig::load(Some(&file), None).expect_err("refused");
    assert!(e.to_string().contains("`sentinel.detections.volume.factor`"), "{e}");

    std::fs::write(&file, "[sentinel.detections.enumeration]\ndenial = 3\n").expect("write");
    let e = QuisConfig::load(Some(&file), None).expect_err("refused");
    assert!(e.to_string().contains("denial") && e.to_string().contains("sentinel"), "{e}");
}
