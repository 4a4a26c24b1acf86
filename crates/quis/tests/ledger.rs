//! The ledger over real sockets, on SQLite and on PostgreSQL: appends that are
//! durable before they are acknowledged, proofs that check against signed
//! checkpoints, the tiles, resumable tailing, ownership and bad input.
mod support;

use std::{collections::HashSet, net::SocketAddr, sync::Arc, time::Duration};

use prost::Message;
use quis_auth::{
    PrincipalKind, Role,
    mint::{TokenSigner, TokenSpec},
};
use quis_core::{health::Readiness, keys::FileKeySource};
use quis_proto::ledger::{
    AccessEvent, Action, Actor, AdminEvent, AppendEventsRequest, Commitment, Decision, Event, EventDetail,
    GetCheckpointRequest, GetConsistencyProofRequest, GetEntriesRequest, GetInclusionProofRequest, LedgerEntry,
    Purpose, TailEventsRequest, event::Kind, ledger_service_client::LedgerServiceClient,
};
use quis_runtime::ServiceContext;
use quis_tlog::{Hash, checkpoint, note::Verifier};
use sha2::{Digest, Sha256};
use support::*;
use tonic::{Code, transport::Channel};

struct LedgerUnderTest {
    dir: Option<tempfile::TempDir>,
    grpc: SocketAddr,
    tiles: SocketAddr,
    signer: TokenSigner,
    vkey: String,
    stop: tokio_util::sync::CancellationToken,
}

impl Drop for LedgerUnderTest {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A fresh PostgreSQL database on the local server, or the embedded SQLite default.
async fn store_url(postgres: bool) -> Option<String> {
    if postgres { Some(postgres_url().await) } else { None }
}

async fn start(postgres: bool) -> LedgerUnderTest {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = store_url(postgres).await;
    start_in(dir, |c| c.store.url = url).await
}

/// Starts a ledger on `dir` (an existing log is reopened); `tune` adjusts the configuration.
async fn start_in(dir: tempfile::TempDir, tune: impl FnOnce(&mut quis_core::QuisConfig)) -> LedgerUnderTest {
    let mut config = test_config(dir.path());
    config.ledger.checkpoint_interval_ms = 50;
    tune(&mut config);
    let config = Arc::new(config);
    let stop = tokio_util::sync::CancellationToken::new();
    let verifier = quis_auth::TokenVerifier::from_config(&config, stop.clone()).await.expect("verifier");
    let ctx = ServiceContext { config: Arc::clone(&config), verifier, shutdown: stop.clone() };
    let (built, router, ledger) = quis_ledger::build(&ctx).await.expect("ledger");
    let (grpc_listener, grpc) = listener().await;
    let (http_listener, tiles) = listener().await;
    let http_stop = stop.clone();
    tokio::spawn(async move {
        axum::serve(http_listener, router).with_graceful_shutdown(async move { http_stop.cancelled().await }).await
    });
    tokio::spawn(async move { quis_runtime::serve(&ctx, built, grpc_listener, Readiness::default()).await });
    let signer =
        TokenSigner::load(&FileKeySource::new(dir.path()), &config.auth.issuer, &config.auth.audience).expect("signer");
    LedgerUnderTest { vkey: ledger.verifier_key(), dir: Some(dir), grpc, tiles, signer, stop }
}

impl LedgerUnderTest {
    /// Stops this ledger and starts another on the same data directory.
    async fn restart(mut self, tune: impl FnOnce(&mut quis_core::QuisConfig)) -> LedgerUnderTest {
        self.stop.cancel();
        let dir = self.dir.take().expect("dir");
        start_in(dir, tune).await
    }

    fn token(&self, sub: &str, kind: PrincipalKind, roles: &[Role]) -> String {
        self.signer.mint(&TokenSpec::new(sub, kind, roles)).expect("mint").0
    }
    fn service(&self, name: &str) -> String {
        self.token(name, PrincipalKind::Service, &[Role::Service])
    }
    fn auditor(&self) -> String {
        self.token("audrey", PrincipalKind::Staff, &[Role::Auditor])
    }
    async fn client(&self) -> LedgerServiceClient<Channel> {
        LedgerServiceClient::new(channel(self.grpc).await)
    }
}

/// An access event whose subject is a fresh commitment, with its detail.
fn access(subject: &str) -> (Event, EventDetail) {
    let salt = uuid().into_bytes();
    let digest = Sha256::new().chain_update(&salt).chain_update(subject.as_bytes()).finalize().to_vec();
    let event = AccessEvent {
        actor: Some(Actor { principal: "alice".into(), kind: "staff".into(), ..Default::default() }),
        action: Action::Read as i32,
        subject: Some(Commitment { digest }),
        purpose: Purpose::Casework as i32,
        case: "cases/c-1".into(),
        decision: Decision::Allow as i32,
        ..Default::default()
    };
    (Event { kind: Some(Kind::Access(event)) }, EventDetail { salt, value: subject.into() })
}

fn batch(n: usize) -> AppendEventsRequest {
    let (events, details) = (0..n).map(|i| access(&format!("subject-{i}"))).unzip();
    AppendEventsRequest { events, details }
}

async fn checkpoint_of_size(l: &LedgerUnderTest, size: u64) -> checkpoint::Verified {
    let mut client = l.client().await;
    let token = l.auditor();
    let vkey = Verifier::from_vkey(&l.vkey).expect("vkey");
    for _ in 0..200 {
        let cp = client.get_checkpoint(with_token(GetCheckpointRequest {}, &token)).await.map(|r| r.into_inner());
        if let Ok(cp) = cp
            && cp.tree_size >= size
        {
            return checkpoint::open(&cp.checkpoint, std::slice::from_ref(&vkey), &[]).expect("a valid log signature");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no checkpoint of size {size}");
}

async fn appends_are_proved_against_signed_checkpoints(postgres: bool) {
    let l = start(postgres).await;
    let mut client = l.client().await;
    let vault = l.service("vault");
    let mut all = Vec::new();
    for round in 0..3 {
        let r = client.append_events(with_token(batch(7), &vault)).await.expect("append").into_inner();
        assert_eq!(r.indices, (round * 7..round * 7 + 7).collect::<Vec<u64>>());
        all.extend(r.indices);
    }
    let first = checkpoint_of_size(&l, 7).await;
    let verified = checkpoint_of_size(&l, 21).await;
    let cp = &verified.checkpoint;
    assert_eq!(cp.size, 21);

    let auditor = l.auditor();
    let entries = client
        .get_entries(with_token(
            GetEntriesRequest { start_index: 0, end_index: 21, page_size: 8, page_token: String::new() },
            &auditor,
        ))
        .await
        .expect("entries")
        .into_inner();
    assert_eq!(entries.entries.len(), 8);
    assert_eq!(entries.next_page_token, "8");
    let entry = LedgerEntry::decode(entries.entries[3].data.as_slice()).expect("a LedgerEntry");
    assert_eq!(entry.appended_by, "vault", "the ledger stamps the verified appender");
    assert!(entry.sequence_time.is_some());

    for index in [0u64, 3, 20] {
        let proof = client
            .get_inclusion_proof(with_token(GetInclusionProofRequest { index, tree_size: 21 }, &auditor))
            .await
            .expect("proof")
            .into_inner();
        let data = client
            .get_entries(with_token(
                GetEntriesRequest { start_index: index, end_index: index + 1, ..Default::default() },
                &auditor,
            ))
            .await
            .expect("entry")
            .into_inner()
            .entries
            .remove(0)
            .data;
        let hashes: Vec<Hash> = proof.hashes.iter().map(|h| h.as_slice().try_into().expect("32 bytes")).collect();
        quis_tlog::check_record(&hashes, 21, &cp.root, index, &quis_tlog::leaf_hash(&data))
            .expect("inclusion verifies");
        let mut tampered = data.clone();
        tampered[0] ^= 1;
        assert!(quis_tlog::check_record(&hashes, 21, &cp.root, index, &quis_tlog::leaf_hash(&tampered)).is_err());
    }
    let consistency = client
        .get_consistency_proof(with_token(
            GetConsistencyProofRequest { from_size: first.checkpoint.size, to_size: 21 },
            &auditor,
        ))
        .await
        .expect("consistency")
        .into_inner();
    let hashes: Vec<Hash> = consistency.hashes.iter().map(|h| h.as_slice().try_into().expect("32 bytes")).collect();
    quis_tlog::check_tree(&hashes, 21, &cp.root, first.checkpoint.size, &first.checkpoint.root).expect("consistent");
}

#[tokio::test]
async fn appends_are_proved_against_signed_checkpoints_on_sqlite() {
    appends_are_proved_against_signed_checkpoints(false).await;
}

#[tokio::test]
async fn appends_are_proved_against_signed_checkpoints_on_postgres() {
    appends_are_proved_against_signed_checkpoints(true).await;
}

async fn ownership_and_bad_input_are_refused_and_write_nothing(postgres: bool) {
    let l = start(postgres).await;
    let mut client = l.client().await;
    let vault = l.service("vault");
    client.append_events(with_token(batch(2), &vault)).await.expect("append");

    let refused = [
        ("policy appends access", l.service("policy"), batch(1), Code::PermissionDenied, "EVENT_KIND_NOT_OWNED"),
        (
            "a caseworker appends",
            l.token("alice", PrincipalKind::Staff, &[Role::Caseworker]),
            batch(1),
            Code::PermissionDenied,
            "SERVICE_REQUIRED",
        ),
        ("no events", vault.clone(), AppendEventsRequest::default(), Code::InvalidArgument, "INVALID_ARGUMENT"),
        ("too many events", vault.clone(), batch(1001), Code::InvalidArgument, "INVALID_ARGUMENT"),
    ];
    for (name, token, request, code, reason) in refused {
        let err = client.append_events(with_token(request, &token)).await.expect_err(name);
        assert_refused(&err, code, reason);
    }
    // A commitment without its detail, and a detail that does not hash to the commitment.
    let (event, _) = access("x");
    let err = client
        .append_events(with_token(AppendEventsRequest { events: vec![event.clone()], details: vec![] }, &vault))
        .await
        .expect_err("no detail");
    assert_refused(&err, Code::InvalidArgument, "INVALID_ARGUMENT");
    let wrong = EventDetail { salt: vec![1; 16], value: "someone else".into() };
    let err = client
        .append_events(with_token(AppendEventsRequest { events: vec![event], details: vec![wrong] }, &vault))
        .await
        .expect_err("wrong detail");
    let fields = violation_fields(&err);
    assert!(fields.contains(&"events[0].subject".to_string()), "{fields:?}");
    // An entry over the tile format's 65,535 bytes.
    let huge = Event {
        kind: Some(Kind::Admin(AdminEvent {
            actor: None,
            operation: "Upsert".into(),
            reason: "x".repeat(70_000),
            ..Default::default()
        })),
    };
    let err = client
        .append_events(with_token(AppendEventsRequest { events: vec![huge], details: vec![] }, &l.service("policy")))
        .await
        .expect_err("oversize");
    assert_refused(&err, Code::InvalidArgument, "INVALID_ARGUMENT");

    let cp = checkpoint_of_size(&l, 2).await;
    assert_eq!(cp.checkpoint.size, 2, "nothing refused was written");
    let auditor = l.auditor();
    let err = client
        .get_inclusion_proof(with_token(GetInclusionProofRequest { index: 2, tree_size: 0 }, &auditor))
        .await
        .expect_err("beyond");
    assert_refused(&err, Code::OutOfRange, "BEYOND_TREE");
    let err = client
        .get_consistency_proof(with_token(GetConsistencyProofRequest { from_size: 2, to_size: 1 }, &auditor))
        .await
        .expect_err("inverted");
    assert_refused(&err, Code::InvalidArgument, "INVALID_ARGUMENT");
    let err = client
        .get_entries(with_token(GetEntriesRequest { start_index: 1, end_index: 1, ..Default::default() }, &auditor))
        .await
        .expect_err("empty range");
    assert_refused(&err, Code::InvalidArgument, "INVALID_ARGUMENT");
    let err = client
        .get_entries(with_token(
            GetEntriesRequest { start_index: 0, end_index: 2, ..Default::default() },
            &l.token("alice", PrincipalKind::Staff, &[Role::Caseworker]),
        ))
        .await
        .expect_err("not a reader");
    assert_refused(&err, Code::PermissionDenied, "ROLE_REQUIRED");
}

#[tokio::test]
async fn ownership_and_bad_input_are_refused_and_write_nothing_on_sqlite() {
    ownership_and_bad_input_are_refused_and_write_nothing(false).await;
}

#[tokio::test]
async fn ownership_and_bad_input_are_refused_and_write_nothing_on_postgres() {
    ownership_and_bad_input_are_refused_and_write_nothing(true).await;
}

#[tokio::test]
async fn a_tail_consumer_resumes_without_gaps_or_repeats() {
    let l = start(false).await;
    let mut client = l.client().await;
    let vault = l.service("vault");
    let sentinel = l.service("sentinel");
    client.append_events(with_token(batch(10), &vault)).await.expect("append");

    let mut seen = Vec::new();
    let mut stream = client
        .tail_events(with_token(TailEventsRequest { start_index: 0 }, &sentinel))
        .await
        .expect("tail")
        .into_inner();
    for _ in 0..4 {
        seen.push(stream.message().await.expect("entry").expect("some").entry.expect("entry").index);
    }
    drop(stream); // the consumer goes away after index 3
    client.append_events(with_token(batch(5), &vault)).await.expect("append while away");
    let cursor = seen.last().expect("seen") + 1;
    let mut stream = client
        .tail_events(with_token(TailEventsRequest { start_index: cursor }, &sentinel))
        .await
        .expect("tail")
        .into_inner();
    let follow = tokio::spawn({
        let mut client = client.clone();
        let vault = vault.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            client.append_events(with_token(batch(3), &vault)).await.expect("append while tailing");
        }
    });
    while seen.len() < 18 {
        let entry = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .expect("no stall")
            .expect("ok")
            .expect("some");
        seen.push(entry.entry.expect("entry").index);
    }
    follow.await.expect("joined");
    assert_eq!(seen, (0..18).collect::<Vec<u64>>(), "every index once, in order");
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), 18);
}

async fn http_get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let auth = token.map(|t| format!("authorization: Bearer {t}\r\n")).unwrap_or_default();
    tcp.write_all(format!("GET {path} HTTP/1.0\r\nhost: quis\r\n{auth}\r\n").as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.expect("read");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("headers") + 4;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, raw[split..].to_vec())
}

#[tokio::test]
async fn tiles_serve_the_signed_tree_and_entries_need_an_auditor() {
    let l = start(false).await;
    let mut client = l.client().await;
    client.append_events(with_token(batch(5), &l.service("vault"))).await.expect("append");
    let cp = checkpoint_of_size(&l, 5).await;
    let (status, body) = http_get(l.tiles, "/checkpoint", None).await;
    assert_eq!(status, 200);
    let opened = checkpoint::open(
        std::str::from_utf8(&body).expect("text"),
        &[Verifier::from_vkey(&l.vkey).expect("vkey")],
        &[],
    )
    .expect("valid");
    assert_eq!(opened.checkpoint.size, 5);

    let (status, tile) = http_get(l.tiles, "/tile/0/000.p/5", None).await;
    assert_eq!(status, 200);
    assert_eq!(tile.len(), 5 * 32);
    let (status, bundle) = http_get(l.tiles, "/tile/entries/000.p/5", Some(&l.auditor())).await;
    assert_eq!(status, 200);
    let entries = quis_tlog::tile::decode_bundle(&bundle).expect("bundle");
    let mut leaves = quis_tlog::MemoryHashes(Vec::new());
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!(
            &tile[i * 32..i * 32 + 32],
            quis_tlog::leaf_hash(entry).as_slice(),
            "level-0 tile hashes are the leaves"
        );
        leaves.append_record(entry).expect("append");
    }
    assert_eq!(
        quis_tlog::tree_hash(5, &leaves).expect("root"),
        cp.checkpoint.root,
        "entries recompute the signed root"
    );

    assert_eq!(http_get(l.tiles, "/tile/entries/000.p/5", None).await.0, 401);
    assert_eq!(
        http_get(l.tiles, "/tile/entries/000.p/5", Some(&l.token("alice", PrincipalKind::Staff, &[Role::Caseworker])))
            .await
            .0,
        403
    );
    assert_eq!(http_get(l.tiles, "/tile/0/000.p/6", None).await.0, 404, "beyond the signed tree");
    assert_eq!(http_get(l.tiles, "/tile/0/000", None).await.0, 404, "a full tile does not exist yet");
}

#[tokio::test]
async fn details_decrypt_for_investigators_and_erasure_leaves_proofs_valid() {
    use quis_proto::ledger::{EraseEventDetailRequest, GetEventDetailRequest, GetEventDetailsRequest};
    let l = start(false).await;
    let mut client = l.client().await;
    let (event, detail) = access("subject-42");
    let digest = match &event.kind {
        Some(Kind::Access(a)) => a.subject.clone().expect("subject").digest,
        _ => unreachable!(),
    };
    let r = client
        .append_events(with_token(
            AppendEventsRequest { events: vec![event], details: vec![detail.clone()] },
            &l.service("vault"),
        ))
        .await
        .expect("append")
        .into_inner();
    let at = r.indices[0];
    let one = |digest: &Vec<u8>| GetEventDetailRequest { digest: digest.clone(), entry_index: Some(at) };
    let investigator = l.token("ivan", PrincipalKind::Staff, &[Role::Investigator]);
    let got = client.get_event_detail(with_token(one(&digest), &investigator)).await.expect("detail").into_inner();
    assert_eq!(
        (got.value.as_str(), got.salt.as_slice(), got.entry_index),
        ("subject-42", detail.salt.as_slice(), r.indices[0])
    );
    let cp = checkpoint_of_size(&l, 1).await;

    let caseworker = l.token("alice", PrincipalKind::Staff, &[Role::Caseworker]);
    let err = client.get_event_detail(with_token(one(&digest), &caseworker)).await.expect_err("not a reader");
    assert_refused(&err, Code::PermissionDenied, "ROLE_REQUIRED");
    // Of the services, only those of ledger.detail_reader_services (vault, sentinel) open details.
    let err = client
        .get_event_detail(with_token(one(&digest), &l.service("policy")))
        .await
        .expect_err("policy appends admin events and opens no details");
    assert_refused(&err, Code::PermissionDenied, "ROLE_REQUIRED");
    let by_sentinel = client
        .get_event_detail(with_token(one(&digest), &l.service("sentinel")))
        .await
        .expect("sentinel opens details")
        .into_inner();
    assert_eq!(by_sentinel.value, "subject-42");
    let batch = client
        .get_event_details(with_token(
            GetEventDetailsRequest {
                digests: vec![vec![7; 32], digest.clone(), digest.clone()],
                entry_indexes: vec![at, at, at + 1],
            },
            &l.service("sentinel"),
        ))
        .await
        .expect("sentinel opens details in bulk")
        .into_inner()
        .details;
    assert_eq!(batch.len(), 1, "an unknown commitment, and a commitment of another entry, are left out");
    assert_eq!((batch[0].digest.as_slice(), batch[0].value.as_str()), (digest.as_slice(), "subject-42"));
    let err = client
        .get_event_details(with_token(
            GetEventDetailsRequest { digests: vec![vec![1; 3]], entry_indexes: vec![at] },
            &investigator,
        ))
        .await
        .expect_err("a short digest");
    assert_refused(&err, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violation_fields(&err), ["digests[0]"]);
    let err = client
        .get_event_details(with_token(
            GetEventDetailsRequest { digests: vec![digest.clone()], entry_indexes: vec![] },
            &investigator,
        ))
        .await
        .expect_err("no entry index");
    assert_eq!(violation_fields(&err), ["entry_indexes"]);
    let err = client
        .get_event_detail(with_token(
            GetEventDetailRequest { digest: digest.clone(), entry_index: None },
            &investigator,
        ))
        .await
        .expect_err("no entry index");
    assert_eq!(violation_fields(&err), ["entry_index"]);
    let erase = |entry_index: Option<u64>, token: &str| {
        let req = EraseEventDetailRequest { digest: digest.clone(), entry_index, reason: "erasure request 7".into() };
        with_token(req, token)
    };
    let err = client.erase_event_detail(erase(Some(at), &investigator)).await.expect_err("only privacy officers erase");
    assert_refused(&err, Code::PermissionDenied, "ROLE_REQUIRED");
    let dpo = l.token("priya", PrincipalKind::Staff, &[Role::PrivacyOfficer]);
    let err = client.erase_event_detail(erase(None, &dpo)).await.expect_err("no entry index");
    assert_eq!(violation_fields(&err), ["entry_index"]);
    let err = client.erase_event_detail(erase(Some(at + 1), &dpo)).await.expect_err("not a commitment of that entry");
    assert_refused(&err, Code::NotFound, "DETAIL_NOT_FOUND");
    let erased = client.erase_event_detail(erase(Some(at), &dpo)).await.expect("erased");
    assert_eq!(erased.into_inner().entry_index, at);
    let err = client.get_event_detail(with_token(one(&digest), &investigator)).await.expect_err("gone");
    assert_refused(&err, Code::NotFound, "DETAIL_NOT_FOUND");

    // The entry and its proof are untouched.
    let auditor = l.auditor();
    let entry = client
        .get_entries(with_token(GetEntriesRequest { start_index: 0, end_index: 1, ..Default::default() }, &auditor))
        .await
        .expect("entry")
        .into_inner()
        .entries
        .remove(0);
    let proof = client
        .get_inclusion_proof(with_token(GetInclusionProofRequest { index: 0, tree_size: 1 }, &auditor))
        .await
        .expect("proof")
        .into_inner();
    let hashes: Vec<Hash> = proof.hashes.iter().map(|h| h.as_slice().try_into().expect("32 bytes")).collect();
    quis_tlog::check_record(&hashes, 1, &cp.checkpoint.root, 0, &quis_tlog::leaf_hash(&entry.data))
        .expect("still proved");
}

#[tokio::test]
async fn log_key_rotation_signs_with_both_keys_during_the_change() {
    let l = start(false).await;
    let old_vkey = Verifier::from_vkey(&l.vkey).expect("vkey");
    let mut client = l.client().await;
    client.append_events(with_token(batch(2), &l.service("vault"))).await.expect("append");
    checkpoint_of_size(&l, 2).await;

    // During the change: the new key is current, the old one still signs.
    let l = l
        .restart(|c| {
            c.ledger.log_key = "keys/ledger-log-2.key".into();
            c.ledger.additional_log_keys = vec!["keys/ledger-log.key".into()];
        })
        .await;
    let new_vkey = Verifier::from_vkey(&l.vkey).expect("vkey");
    assert_ne!(old_vkey.key_id(), new_vkey.key_id());
    let mut client = l.client().await;
    client.append_events(with_token(batch(1), &l.service("vault"))).await.expect("append");
    let note = loop {
        let cp =
            client.get_checkpoint(with_token(GetCheckpointRequest {}, &l.auditor())).await.expect("cp").into_inner();
        if cp.tree_size == 3 {
            break cp.checkpoint;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    checkpoint::open(&note, std::slice::from_ref(&old_vkey), &[]).expect("verifiers that know only the old key");
    checkpoint::open(&note, std::slice::from_ref(&new_vkey), &[]).expect("verifiers that know the new key");

    // After the change: only the new key signs.
    let l = l.restart(|c| c.ledger.log_key = "keys/ledger-log-2.key".into()).await;
    let mut client = l.client().await;
    client.append_events(with_token(batch(1), &l.service("vault"))).await.expect("append");
    let note = loop {
        let cp =
            client.get_checkpoint(with_token(GetCheckpointRequest {}, &l.auditor())).await.expect("cp").into_inner();
        if cp.tree_size == 4 {
            break cp.checkpoint;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    checkpoint::open(&note, std::slice::from_ref(&new_vkey), &[]).expect("the new key");
    assert!(checkpoint::open(&note, std::slice::from_ref(&old_vkey), &[]).is_err(), "the old key no longer signs");
}

#[tokio::test]
async fn a_log_with_entries_refuses_to_start_without_its_keys() {
    let l = start(false).await;
    let mut client = l.client().await;
    client.append_events(with_token(batch(1), &l.service("vault"))).await.expect("append");
    checkpoint_of_size(&l, 1).await;
    let mut l = l;
    l.stop.cancel();
    let dir = l.dir.take().expect("dir");
    std::fs::remove_file(dir.path().join("keys/ledger-log.key")).expect("remove the log key");
    let config = Arc::new(test_config(dir.path()));
    let stop = tokio_util::sync::CancellationToken::new();
    let verifier = quis_auth::TokenVerifier::from_config(&config, stop.clone()).await.expect("verifier");
    let ctx = ServiceContext { config: Arc::clone(&config), verifier, shutdown: stop.clone() };
    let err = quis_ledger::build(&ctx).await.err().expect("refused");
    assert!(err.contains("ledger-log.key") && err.contains("restore"), "{err}");
    assert!(!dir.path().join("keys/ledger-log.key").exists(), "no new key was made for an existing log");
    stop.cancel();
}
