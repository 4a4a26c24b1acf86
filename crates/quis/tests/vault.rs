//! The vault end to end: real ledger, policy and vault services on loopback
//! sockets, called through the gateway with real tokens, on SQLite and on
//! PostgreSQL. Every guarded call is checked with policy and in the ledger
//! before any data is answered; the ledger down means no data; nothing
//! personal is stored or logged in the clear; keys rotate; bad input and
//! wrong roles are refused precisely; a subject's history comes with proofs
//! that verify against the signed checkpoint, hides covert accesses until
//! their release and survives the loss of its index.
mod support;

use std::{
    io::Write,
    net::SocketAddr,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use prost::Message;
use quis_auth::{
    PrincipalKind, Role,
    mint::{TokenSigner, TokenSpec},
};
use quis_core::{QuisConfig, keys::FileKeySource};
use quis_proto::{
    ledger::{
        self, AccessEvent, GetCheckpointRequest, GetEntriesRequest, LedgerEntry, event::Kind,
        ledger_service_client::LedgerServiceClient,
    },
    policy::{self as pb, entity::Kind as E, policy_service_client::PolicyServiceClient},
    vault::{self as v, field::Value, vault_service_client::VaultServiceClient},
};
use quis_tlog::{Hash, note::Verifier};
use support::*;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status, transport::Channel};
use tonic_types::StatusExt;

// ------------------------------------------------------------------ logs

/// Every log line of this test binary, for the plaintext scan.
fn captured_logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        struct Sink;
        impl Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                captured_logs().lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug,h2=info,hyper=info,tower=info"))
            .with_writer(|| Sink)
            .with_ansi(false)
            .finish();
        // Another test may have installed one first; then its lines are not captured, and the scan says so.
        let _ = tracing::subscriber::set_global_default(subscriber);
        Mutex::new(Vec::new())
    })
}

// ------------------------------------------------------------------ the world

struct World {
    dir: tempfile::TempDir,
    config: Arc<QuisConfig>,
    signer: TokenSigner,
    stop: CancellationToken,
    gateway: SocketAddr,
    ledger: SocketAddr,
    ledger_stop: CancellationToken,
    ledger_task: Option<JoinHandle<()>>,
    vault_stop: CancellationToken,
    vault_task: Option<JoinHandle<()>>,
    vault_addr: SocketAddr,
}

impl Drop for World {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

const CASEWORK: i32 = ledger::Purpose::Casework as i32;

fn field(name: &str, sensitivity: v::Sensitivity, value: Value) -> v::Field {
    v::Field { name: name.into(), sensitivity: sensitivity as i32, value: Some(value) }
}

/// A tax record: income, contact, bank and notes fields.
fn tax_record(income: &str, note: &str) -> v::Record {
    v::Record {
        kind: "tax-return".into(),
        fields: vec![
            field("income_2024", v::Sensitivity::Confidential, Value::DecimalValue(income.into())),
            field("contact_phone", v::Sensitivity::Confidential, Value::StringValue("+44 20 7946 0000".into())),
            field("bank_iban", v::Sensitivity::Restricted, Value::StringValue("GB82WEST12345698765432".into())),
            field("notes", v::Sensitivity::Basic, Value::StringValue(note.into())),
        ],
        ..Default::default()
    }
}

fn person(given: &str, family: &str) -> v::Subject {
    v::Subject {
        given_names: given.into(),
        family_name: family.into(),
        date_of_birth: "1980-02-29".into(),
        postcode: "SW1A 1AA".into(),
        reference_number: "AB 12 34 56 C".into(),
        address_lines: vec!["10 Downing Street".into()],
        ..Default::default()
    }
}

fn context(purpose: ledger::Purpose, case: &str) -> Option<v::AccessContext> {
    Some(v::AccessContext { purpose: purpose as i32, case: case.into(), justification: String::new() })
}

fn read(name: &str, purpose: ledger::Purpose, case: &str) -> v::GetRecordRequest {
    v::GetRecordRequest { name: name.into(), context: context(purpose, case), fields: vec![] }
}

fn staff(id: &str, roles: &[&str]) -> pb::Entity {
    pb::Entity {
        kind: Some(E::Staff(pb::Staff {
            name: format!("staff/{id}"),
            team: "teams/t1".into(),
            site: "hq".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            clearances: vec![],
            status: pb::StaffStatus::Active as i32,
            ..Default::default()
        })),
    }
}

fn case(id: &str, subjects: &[&str], staff: &[&str], purpose: pb::Purpose) -> pb::Entity {
    pb::Entity {
        kind: Some(E::Case(pb::Case {
            name: format!("cases/{id}"),
            subjects: subjects.iter().map(|s| format!("subjects/{s}")).collect(),
            assigned_staff: staff.iter().map(|s| format!("staff/{s}")).collect(),
            assigned_teams: vec![],
            status: pb::CaseStatus::Open as i32,
            purpose: purpose as i32,
        })),
    }
}

impl World {
    async fn start(postgres: bool) -> World {
        captured_logs();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = test_config(dir.path());
        config.store.url = store_url(postgres).await;
        config.ledger.checkpoint_interval_ms = 20;
        let stop = CancellationToken::new();
        let (ledger_listener, ledger) = listener().await;
        let (policy_listener, policy) = listener().await;
        let (vault_listener, vault_addr) = listener().await;
        config.policy.ledger_url = Some(format!("http://{ledger}"));
        config.vault.ledger_url = Some(format!("http://{ledger}"));
        config.vault.policy_url = Some(format!("http://{policy}"));
        config.vault.history_accessor = quis_core::vault::HistoryAccessor::Person;
        for (name, addr) in [("ledger", ledger), ("policy", policy), ("vault", vault_addr)] {
            config.gateway.upstreams.insert(name.into(), vec![format!("http://{addr}")]);
        }
        let config = Arc::new(config);
        let ledger_stop = stop.child_token();
        let lctx = ctx(&config, &ledger_stop).await;
        let (built, _, _) = quis_ledger::build(&lctx).await.expect("ledger");
        let ledger_task = serve_on(lctx, built, ledger_listener);
        let pctx = ctx(&config, &stop).await;
        let (built, _) = quis_policy::build(&pctx).await.expect("policy");
        serve_on(pctx, built, policy_listener);
        let vault_stop = stop.child_token();
        let vctx = ctx(&config, &vault_stop).await;
        let built = quis_vault_service::build(&vctx).await.expect("vault");
        let vault_task = serve_on(vctx, built, vault_listener);
        let gateway = serve_gateway(&config, stop.clone()).await;
        let signer = TokenSigner::load(&FileKeySource::new(dir.path()), &config.auth.issuer, &config.auth.audience)
            .expect("signer");
        let world = World {
            dir,
            config,
            signer,
            stop,
            gateway,
            ledger,
            ledger_stop,
            ledger_task: Some(ledger_task),
            vault_stop,
            vault_task: Some(vault_task),
            vault_addr,
        };
        let admin = world.staff_token("root", &[Role::Admin]);
        let installed = eventually(Duration::from_secs(15), async || {
            world
                .policy()
                .await
                .get_policy_set_version(with_token(
                    pb::GetPolicySetVersionRequest { name: "policySets/active".into() },
                    &admin,
                ))
                .await
                .is_ok()
        })
        .await;
        if !installed {
            let last = world
                .policy()
                .await
                .get_policy_set_version(with_token(
                    pb::GetPolicySetVersionRequest { name: "policySets/active".into() },
                    &admin,
                ))
                .await;
            panic!("the default pack was not installed: {last:?}");
        }
        let team = pb::Entity {
            kind: Some(E::Team(pb::Team { name: "teams/t1".into(), site: "hq".into(), parent: String::new() })),
        };
        world
            .upsert(vec![
                team,
                staff("alice", &["caseworker"]),
                staff("bob", &["caseworker"]),
                staff("ivy", &["investigator"]),
                staff("petra", &["privacy_officer"]),
            ])
            .await;
        world
    }

    fn token(&self, sub: &str, kind: PrincipalKind, roles: &[Role]) -> String {
        let spec = TokenSpec { team: Some("t1".into()), ..TokenSpec::new(sub, kind, roles) };
        self.signer.mint(&spec).expect("mint").0
    }

    fn staff_token(&self, sub: &str, roles: &[Role]) -> String {
        self.token(sub, PrincipalKind::Staff, roles)
    }

    fn ingest(&self) -> String {
        self.token("feed", PrincipalKind::Staff, &[Role::Ingest])
    }

    async fn vault(&self) -> VaultServiceClient<Channel> {
        VaultServiceClient::new(channel(self.gateway).await)
    }

    async fn policy(&self) -> PolicyServiceClient<Channel> {
        PolicyServiceClient::new(channel(self.gateway).await)
    }

    async fn upsert(&self, entities: Vec<pb::Entity>) {
        let admin = self.staff_token("root", &[Role::Admin]);
        self.policy()
            .await
            .batch_upsert_entities(with_token(
                pb::BatchUpsertEntitiesRequest { entities, reason: "test organization".into() },
                &admin,
            ))
            .await
            .expect("entities");
    }

    /// A subject with one tax record `r1`.
    async fn subject_with_record(&self, id: &str, subject: v::Subject, income: &str, note: &str) -> String {
        let ingest = self.ingest();
        let mut vault = self.vault().await;
        vault
            .create_subject(with_token(
                v::CreateSubjectRequest { subject_id: id.into(), subject: Some(subject) },
                &ingest,
            ))
            .await
            .expect("create subject");
        vault
            .create_record(with_token(
                v::CreateRecordRequest {
                    parent: format!("subjects/{id}"),
                    record_id: "r1".into(),
                    record: Some(tax_record(income, note)),
                },
                &ingest,
            ))
            .await
            .expect("create record");
        format!("subjects/{id}/records/r1")
    }

    async fn get(&self, token: &str, req: v::GetRecordRequest) -> Result<v::GetRecordResponse, Status> {
        self.vault().await.get_record(with_token(req, token)).await.map(|r| r.into_inner())
    }

    /// The ledger index of an allowed read.
    async fn read_index(&self, token: &str, req: v::GetRecordRequest) -> u64 {
        self.get(token, req).await.expect("allowed").receipt.expect("receipt").ledger_index
    }

    /// The vault's access events in the ledger, read as an auditor through the gateway, once
    /// the signed checkpoint covers at least `count` of them.
    async fn access_events(&self, count: usize) -> Vec<(u64, AccessEvent)> {
        self.access_entries(count).await.into_iter().map(|(index, _, event)| (index, event)).collect()
    }

    /// As [`Self::access_events`], with each entry's sequencing time.
    async fn access_entries(&self, count: usize) -> Vec<(u64, prost_types::Timestamp, AccessEvent)> {
        let auditor = self.staff_token("audrey", &[Role::Auditor]);
        let mut ledger = LedgerServiceClient::new(channel(self.gateway).await);
        let mut events = Vec::new();
        let covered = eventually(Duration::from_secs(10), async || {
            let Ok(checkpoint) = ledger.get_checkpoint(with_token(GetCheckpointRequest {}, &auditor)).await else {
                return false;
            };
            let size = checkpoint.into_inner().tree_size;
            events = Vec::new();
            let mut page_token = String::new();
            loop {
                let request = GetEntriesRequest { start_index: 0, end_index: size, page_size: 1000, page_token };
                let Ok(page) = ledger.get_entries(with_token(request, &auditor)).await else { return false };
                let page = page.into_inner();
                for entry in page.entries {
                    let decoded = LedgerEntry::decode(entry.data.as_slice()).expect("entry");
                    let time = decoded.sequence_time.unwrap_or_default();
                    if let Some(Kind::Access(access)) = decoded.event.and_then(|e| e.kind) {
                        events.push((entry.index, time, access));
                    }
                }
                if page.next_page_token.is_empty() {
                    return events.len() >= count;
                }
                page_token = page.next_page_token;
            }
        })
        .await;
        assert!(covered, "the checkpoint never covered {count} access events: {}", events.len());
        events
    }

    async fn history(
        &self,
        token: &str,
        subject: &str,
        ctx: Option<v::AccessContext>,
    ) -> Result<v::GetAccessHistoryResponse, Status> {
        let req = v::GetAccessHistoryRequest {
            parent: format!("subjects/{subject}"),
            page_size: 100,
            page_token: String::new(),
            context: ctx,
        };
        self.vault().await.get_access_history(with_token(req, token)).await.map(|r| r.into_inner())
    }

    /// Stops the ledger and waits until its port is closed.
    async fn stop_ledger(&mut self) {
        self.ledger_stop.cancel();
        if let Some(task) = self.ledger_task.take() {
            task.await.expect("ledger stopped");
        }
    }

    /// Starts the ledger again on its address, on the same store.
    async fn restart_ledger(&mut self) {
        self.ledger_stop = self.stop.child_token();
        let lctx = ctx(&self.config, &self.ledger_stop).await;
        let (built, _, _) = quis_ledger::build(&lctx).await.expect("ledger");
        let listener = tokio::net::TcpListener::bind(self.ledger).await.expect("the ledger's address again");
        self.ledger_task = Some(serve_on(lctx, built, listener));
    }

    /// Replaces the vault process with a new one on the same data directory and store.
    async fn restart_vault(&mut self) {
        self.vault_stop.cancel();
        if let Some(task) = self.vault_task.take() {
            task.await.expect("vault stopped");
        }
        self.vault_stop = self.stop.child_token();
        let vctx = ctx(&self.config, &self.vault_stop).await;
        let built = quis_vault_service::build(&vctx).await.expect("vault");
        let listener = tokio::net::TcpListener::bind(self.vault_addr).await.expect("the vault's address again");
        self.vault_task = Some(serve_on(vctx, built, listener));
    }
}

/// The ledger index a refusal names: the entry that recorded it, as a receipt would.
fn refusal_index(status: &Status) -> u64 {
    let info = status.get_details_error_info().expect("error info");
    info.metadata.get("ledger_index").expect("the refusal's ledger index").parse().expect("a number")
}

/// The `notes` field of a read record.
fn note_of(read: &v::GetRecordResponse) -> Option<Value> {
    let record = read.record.as_ref().expect("record");
    record.fields.iter().find(|f| f.name == "notes").and_then(|f| f.value.clone())
}

fn field_names(record: &v::Record) -> Vec<&str> {
    let mut names: Vec<&str> = record.fields.iter().map(|f| f.name.as_str()).collect();
    names.sort_unstable();
    names
}

// ------------------------------------------------------------------ guarded reads

async fn guarded_reads_are_decided_recorded_and_minimized(postgres: bool) {
    let w = World::start(postgres).await;
    let real = w.subject_with_record("s-real", person("Ann", "Smith"), "54321.00", "called about a refund").await;
    let mut vip = person("Victor", "Public");
    vip.compartment = "public-figure".into();
    let vip = w.subject_with_record("s-vip", vip, "1.00", "vip note").await;
    w.upsert(vec![
        case("c1", &["s-real"], &["alice"], pb::Purpose::Casework),
        case("c2", &["s-vip"], &["alice"], pb::Purpose::Casework),
    ])
    .await;
    let alice = w.staff_token("alice", &[Role::Caseworker]);
    let bob = w.staff_token("bob", &[Role::Caseworker]);

    let allowed = w.get(&alice, read(&real, ledger::Purpose::Casework, "cases/c1")).await.expect("alice reads");
    let record = allowed.record.expect("record");
    assert_eq!(field_names(&record), ["contact_phone", "income_2024", "notes"], "casework never sees bank fields");
    assert_eq!(record.version, 1);
    let receipt = allowed.receipt.expect("receipt");
    assert_eq!(receipt.decision, ledger::Decision::Allow as i32);
    let asked = v::GetRecordRequest {
        fields: vec!["notes".into(), "bank_iban".into()],
        ..read(&real, ledger::Purpose::Casework, "cases/c1")
    };
    let narrowed = w.get(&alice, asked).await.expect("named fields");
    assert_eq!(field_names(&narrowed.record.expect("record")), ["notes"]);

    let no_case = w.get(&bob, read(&real, ledger::Purpose::Casework, "cases/c1")).await.expect_err("bob has no case");
    assert_refused(&no_case, Code::PermissionDenied, "ACCESS_DENIED");
    assert!(no_case.message().contains("case"), "a reason the caller can act on: {no_case:?}");
    let wrong_purpose =
        w.get(&alice, read(&real, ledger::Purpose::Compliance, "cases/c1")).await.expect_err("wrong purpose");
    assert_refused(&wrong_purpose, Code::PermissionDenied, "ACCESS_DENIED");
    assert!(!wrong_purpose.message().is_empty());
    let restricted = w.get(&alice, read(&vip, ledger::Purpose::Casework, "cases/c2")).await.expect_err("restricted");
    assert_refused(&restricted, Code::PermissionDenied, "ACCESS_DENIED");
    assert!(
        !restricted.message().contains("compartment") && !restricted.message().contains("public"),
        "{restricted:?}"
    );

    let events = w.access_events(5).await;
    let reads: Vec<(String, i32, i32)> = events
        .iter()
        .filter(|(_, e)| e.action == ledger::Action::Read as i32)
        .map(|(_, e)| (e.actor.clone().unwrap_or_default().principal, e.purpose, e.decision))
        .collect();
    let (allow, deny) = (ledger::Decision::Allow as i32, ledger::Decision::Deny as i32);
    let compliance = ledger::Purpose::Compliance as i32;
    assert_eq!(
        reads,
        [
            ("alice".into(), CASEWORK, allow),
            ("alice".into(), CASEWORK, allow),
            ("bob".into(), CASEWORK, deny),
            ("alice".into(), compliance, deny),
            ("alice".into(), CASEWORK, deny),
        ]
    );
    let (index, first) = &events.iter().find(|(_, e)| e.action == ledger::Action::Read as i32).expect("first read");
    assert_eq!(*index, receipt.ledger_index);
    // A refusal names the entry that recorded it, as a receipt would.
    let denied: Vec<u64> = events.iter().filter(|(_, e)| e.decision == deny).map(|(index, _)| *index).collect();
    assert_eq!(denied, [refusal_index(&no_case), refusal_index(&wrong_purpose), refusal_index(&restricted)]);
    assert_eq!(first.record_version, 1, "the version read is recorded");
    assert_eq!(first.fields_returned, ["assets", "contact", "employment", "identity", "income", "notes"]);
    assert_eq!(first.case, "cases/c1");
    assert!(first.subject.is_some() && first.record.is_some());
    assert!(events.iter().all(|(_, e)| e.actor.as_ref().is_some_and(|a| !a.source_address.is_empty())));

    // Decoys: the same errors and the same shapes as real subjects.
    let decoy = v::Subject { decoy: true, ..person("Dora", "Smith") };
    let decoy_record = w.subject_with_record("s-decoy", decoy, "54321.00", "called about a refund").await;
    let real_denied = w.get(&bob, read(&real, ledger::Purpose::Casework, "cases/c1")).await.expect_err("real");
    let decoy_denied =
        w.get(&bob, read(&decoy_record, ledger::Purpose::Casework, "cases/c1")).await.expect_err("decoy");
    assert_eq!((real_denied.code(), real_denied.message()), (decoy_denied.code(), decoy_denied.message()));
    assert_eq!(reason(&real_denied), reason(&decoy_denied));
    let investigator = w.staff_token("ivy", &[Role::Investigator]);
    let search = v::SearchSubjectsRequest {
        query: Some(v::SubjectQuery { family_name: "Smith".into(), ..Default::default() }),
        context: context(ledger::Purpose::FraudInvestigation, ""),
        ..Default::default()
    };
    let found = w.vault().await.search_subjects(with_token(search, &investigator)).await.expect("search").into_inner();
    let names: Vec<&str> = found.matches.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["subjects/s-decoy", "subjects/s-real"]);
    let shape = |m: &v::SubjectMatch| {
        let s = m.subject.clone().expect("subject");
        (s.decoy, s.compartment.is_empty(), s.protected, s.given_names.is_empty(), s.postcode.is_empty())
    };
    assert_eq!(shape(&found.matches[0]), shape(&found.matches[1]), "a decoy looks like any subject");
    assert_eq!(found.matches[0].subject.clone().expect("subject").family_name, "Smith");
}

/// Concurrent reads share their policy checks and ledger appends (one
/// `BatchCheck`, one `AppendEvents` per group), yet each gets its own
/// decision, and its receipt or refusal names exactly the entry that recorded
/// it: the right caller, decision and record.
async fn concurrent_reads_share_calls_yet_each_has_its_own_entry(postgres: bool) {
    let w = World::start(postgres).await;
    let mut records = Vec::new();
    for s in 0..8 {
        let id = format!("s-{s}");
        records
            .push(w.subject_with_record(&id, person("Ann", &format!("Smith{s}")), "1.00", &format!("note {s}")).await);
    }
    let on_case: Vec<&str> = ["s-0", "s-1", "s-2", "s-3"].into();
    w.upsert(vec![case("c1", &on_case, &["alice"], pb::Purpose::Casework)]).await;
    let (alice, bob) = (w.staff_token("alice", &[Role::Caseworker]), w.staff_token("bob", &[Role::Caseworker]));
    // (caller, record, allowed): alice may read the case's subjects, bob none.
    let calls: Vec<(&str, usize, bool)> = (0..64)
        .map(|i| {
            let (caller, record) = (if i % 3 == 0 { "bob" } else { "alice" }, i % 8);
            (caller, record, caller == "alice" && record < 4)
        })
        .collect();
    let vault = w.vault().await;
    let answers = futures::future::join_all(calls.iter().map(|&(caller, record, _)| {
        let mut vault = vault.clone();
        let token = if caller == "alice" { &alice } else { &bob };
        let request = with_token(read(&records[record], ledger::Purpose::Casework, "cases/c1"), token);
        async move { vault.get_record(request).await.map(|r| r.into_inner()) }
    }))
    .await;
    let mut indices = Vec::new();
    for ((caller, record, allowed), answer) in calls.iter().zip(&answers) {
        let index = match answer {
            Ok(read) => {
                assert!(allowed, "{caller} read {record}");
                assert_eq!(note_of(read), Some(Value::StringValue(format!("note {record}"))), "the record asked for");
                read.receipt.clone().expect("receipt").ledger_index
            }
            Err(refused) => {
                assert!(!allowed, "{caller} refused {record}: {refused:?}");
                assert_refused(refused, Code::PermissionDenied, "ACCESS_DENIED");
                refusal_index(refused)
            }
        };
        indices.push(index);
    }
    let mut distinct = indices.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), calls.len(), "every read has an entry of its own");

    let entries = w.access_entries(calls.len()).await;
    let auditor = w.staff_token("audrey", &[Role::Auditor]);
    let mut ledger = LedgerServiceClient::new(channel(w.gateway).await);
    let mut times = std::collections::HashMap::<(i64, i32), usize>::new();
    for ((caller, record, allowed), index) in calls.iter().zip(&indices) {
        let (_, time, event) = entries.iter().find(|(i, _, _)| i == index).expect("the entry named");
        *times.entry((time.seconds, time.nanos)).or_default() += 1;
        assert_eq!(event.actor.clone().unwrap_or_default().principal, *caller);
        let decision = if *allowed { ledger::Decision::Allow } else { ledger::Decision::Deny };
        assert_eq!(event.decision, decision as i32, "entry {index}");
        let digest = event.record.clone().expect("record commitment").digest;
        let request = ledger::GetEventDetailRequest { digest, entry_index: Some(*index) };
        let detail = ledger.get_event_detail(with_token(request, &auditor)).await.expect("detail").into_inner();
        assert_eq!(detail.value, records[*record], "entry {index} is of the record read");
    }
    // The entries of one AppendEvents share its sequencing time: some reads did share a call.
    assert!(times.values().any(|&n| n > 1), "no two reads shared an append: {times:?}");

    // Records read together, some twice and one missing: each read gets its own row, or NOT_FOUND.
    let names = [records[0].clone(), "subjects/s-0/records/nope".to_string(), records[1].clone(), records[0].clone()];
    let answers = futures::future::join_all(names.iter().cycle().take(32).map(|name| {
        let mut vault = vault.clone();
        let request = with_token(read(name, ledger::Purpose::Casework, "cases/c1"), &alice);
        async move { vault.get_record(request).await.map(|r| r.into_inner()) }
    }))
    .await;
    for (name, answer) in names.iter().cycle().zip(&answers) {
        match records.iter().position(|r| r == name) {
            Some(record) => {
                let read = answer.as_ref().expect("allowed");
                assert_eq!(note_of(read), Some(Value::StringValue(format!("note {record}"))), "{name}");
            }
            None => assert_eq!(answer.as_ref().expect_err("missing").code(), Code::NotFound, "{name}"),
        }
    }
}

// ------------------------------------------------------------------ source address

/// A channel whose connections leave from `local` (all of 127.0.0.0/8 is loopback on Linux).
async fn channel_from(addr: SocketAddr, local: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .local_address(Some(local.parse().expect("ip")))
        .connect()
        .await
        .expect("connect")
}

/// A read that claims to come from 203.0.113.9, vouched for by `forwarder`'s token.
fn claiming_source(name: &str, token: &str, forwarder: &str) -> tonic::Request<v::GetRecordRequest> {
    let mut req = with_token(read(name, ledger::Purpose::Casework, "cases/c1"), token);
    req.metadata_mut().insert("quis-source-address", "203.0.113.9".parse().expect("header"));
    req.metadata_mut().insert("quis-forwarded-by", format!("Bearer {forwarder}").parse().expect("header"));
    req
}

#[tokio::test]
async fn only_the_gateway_can_say_where_a_call_came_from() {
    let w = World::start(false).await;
    let name = w.subject_with_record("s-src", person("Sam", "Source"), "1.00", "a note").await;
    w.upsert(vec![case("c1", &["s-src"], &["alice"], pb::Purpose::Casework)]).await;
    let alice = w.staff_token("alice", &[Role::Caseworker]);
    let gateway_token = w.token("gateway", PrincipalKind::Service, &[Role::Service]);
    let policy_token = w.token("policy", PrincipalKind::Service, &[Role::Service]);

    // Through the gateway from 127.0.0.2: the gateway vouches for the peer it saw.
    let mut via_gateway = VaultServiceClient::new(channel_from(w.gateway, "127.0.0.2").await);
    via_gateway.get_record(with_token(read(&name, ledger::Purpose::Casework, "cases/c1"), &alice)).await.expect("read");
    // A client that sends the headers itself through the gateway: the gateway replaces both.
    let mut spoofing = VaultServiceClient::new(channel_from(w.gateway, "127.0.0.4").await);
    spoofing.get_record(claiming_source(&name, &alice, &gateway_token)).await.expect("read");
    // Straight at the vault from 127.0.0.3, vouched for by the caller's own token, then by another service's.
    let mut direct = VaultServiceClient::new(channel_from(w.vault_addr, "127.0.0.3").await);
    direct.get_record(claiming_source(&name, &alice, &alice)).await.expect("read");
    direct.get_record(claiming_source(&name, &alice, &policy_token)).await.expect("read");
    // Only a token of a trusted forwarder (auth.trusted_forwarders: the gateway) is believed.
    direct.get_record(claiming_source(&name, &alice, &gateway_token)).await.expect("read");

    let events = w.access_events(5).await;
    let sources: Vec<String> = events
        .iter()
        .filter(|(_, e)| e.action == ledger::Action::Read as i32)
        .map(|(_, e)| e.actor.clone().unwrap_or_default().source_address)
        .collect();
    assert_eq!(sources, ["127.0.0.2", "127.0.0.4", "127.0.0.3", "127.0.0.3", "203.0.113.9"]);
}

// ------------------------------------------------------------------ fail closed

#[tokio::test]
async fn with_the_ledger_down_nothing_is_answered_and_nothing_recorded_twice() {
    let mut w = World::start(false).await;
    let name = w.subject_with_record("s-1", person("Ann", "Smith"), "100.00", "note").await;
    w.upsert(vec![case("c1", &["s-1"], &["alice"], pb::Purpose::Casework)]).await;
    let alice = w.staff_token("alice", &[Role::Caseworker]);
    let before = w.get(&alice, read(&name, ledger::Purpose::Casework, "cases/c1")).await.expect("read");
    w.stop_ledger().await;
    let down = w.get(&alice, read(&name, ledger::Purpose::Casework, "cases/c1")).await.expect_err("fail closed");
    assert_refused(&down, Code::Unavailable, "LEDGER_UNAVAILABLE");
    assert!(!down.message().contains("100.00") && !down.details().is_empty());
    w.restart_ledger().await;
    let mut after = None;
    let recovered = eventually(Duration::from_secs(10), async || {
        after = w.get(&alice, read(&name, ledger::Purpose::Casework, "cases/c1")).await.ok();
        after.is_some()
    })
    .await;
    assert!(recovered, "the vault answers again once the ledger is back");
    let after = after.expect("answer").receipt.expect("receipt");
    let events = w.access_events(2).await;
    let reads: Vec<u64> =
        events.iter().filter(|(_, e)| e.action == ledger::Action::Read as i32).map(|(i, _)| *i).collect();
    assert_eq!(
        reads,
        [before.receipt.expect("receipt").ledger_index, after.ledger_index],
        "one entry per answered read"
    );
}

// ------------------------------------------------------------------ plaintext

/// Whether `haystack` holds `needle` as text, or as the hex PostgreSQL's text form gives bytes in.
fn holds(haystack: &[u8], needle: &str) -> bool {
    let lower = haystack.to_ascii_lowercase();
    let needle = needle.to_ascii_lowercase();
    let hex = hex_of(&needle);
    [needle.as_bytes(), hex.as_bytes()].iter().any(|n| lower.windows(n.len()).any(|w| w == *n))
}

fn hex_of(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

async fn no_plaintext_at_rest_or_in_logs(postgres: bool) {
    let w = World::start(postgres).await;
    let mut subject = person("Zebulon", "Quixotemarple");
    subject.postcode = "ZZ9 9ZQ".into();
    subject.reference_number = "QX778899".into();
    subject.address_lines = vec!["77 Wobbleberry Lane".into()];
    let name = w.subject_with_record("s-1", subject, "987654.32", "Xylophonic secret remark").await;
    w.upsert(vec![case("c1", &["s-1"], &["alice"], pb::Purpose::Casework)]).await;
    let alice = w.staff_token("alice", &[Role::Caseworker]);
    let got = w.get(&alice, read(&name, ledger::Purpose::Casework, "cases/c1")).await.expect("read");
    let record = got.record.expect("record");
    assert!(record.fields.iter().any(|f| f.value == Some(Value::StringValue("Xylophonic secret remark".into()))));
    let investigator = w.staff_token("ivy", &[Role::Investigator]);
    for query in [
        v::SubjectQuery { family_name: "Quixotem*".into(), ..Default::default() },
        v::SubjectQuery { postcode: "ZZ9 9ZQ".into(), ..Default::default() },
        v::SubjectQuery { given_name: "Zebulon".into(), reference_number: "QX778899".into(), ..Default::default() },
    ] {
        let search = v::SearchSubjectsRequest {
            query: Some(query),
            context: context(ledger::Purpose::FraudInvestigation, ""),
            ..Default::default()
        };
        let found = w.vault().await.search_subjects(with_token(search, &investigator)).await.expect("search");
        assert_eq!(found.into_inner().matches.len(), 1);
    }
    w.access_events(4).await;

    let needles = [
        "Zebulon",
        "Quixotemarple",
        "quixotem",
        "ZZ9 9ZQ",
        "ZZ99ZQ",
        "QX778899",
        "Wobbleberry",
        "987654.32",
        "Xylophonic secret remark",
        "GB82WEST12345698765432",
        "+44 20 7946 0000",
    ];
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(w.dir.path()).expect("data dir") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            stored.push((path.display().to_string(), std::fs::read(&path).expect("read")));
        }
    }
    let names: Vec<&str> = stored.iter().map(|(n, _)| n.as_str()).collect();
    if !postgres {
        for file in ["vault.db", "vault-access-index.db", "ledger.db", "policy.db"] {
            assert!(names.iter().any(|n| n.ends_with(file)), "{file} among {names:?}");
        }
        assert!(names.iter().any(|n| n.ends_with("-wal")), "the WAL files are scanned too: {names:?}");
    }
    if let Some(url) = &w.config.store.url {
        let db = quis_core::db::Db::connect(url).await.expect("postgres");
        let quis_core::db::Db::Postgres(pool) = db else { unreachable!() };
        let tables: Vec<(String,)> =
            sqlx::query_as("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'")
                .fetch_all(&pool)
                .await
                .expect("tables");
        assert!(tables.iter().any(|t| t.0 == "vault_sealed") && tables.iter().any(|t| t.0 == "ledger_entries"));
        for (table,) in tables {
            let rows: Vec<(String,)> =
                sqlx::query_as(&format!("SELECT t::text FROM {table} t")).fetch_all(&pool).await.expect("dump");
            stored.push((format!("postgres table {table}"), rows.into_iter().flat_map(|r| r.0.into_bytes()).collect()));
        }
    }
    let logs = captured_logs().lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert!(!logs.is_empty(), "the log capture works");
    stored.push(("logs".into(), logs));
    for (place, bytes) in &stored {
        for needle in needles {
            assert!(!holds(bytes, needle), "{needle:?} in the clear in {place}");
        }
    }
}

// ------------------------------------------------------------------ keys

async fn key_rotation_rewraps_and_the_old_key_can_be_destroyed(postgres: bool) {
    let mut w = World::start(postgres).await;
    let mut names = Vec::new();
    for i in 0..3 {
        names.push(w.subject_with_record(&format!("s-{i}"), person("Ann", "Smith"), "10.00", "note").await);
    }
    let subjects: Vec<&str> = vec!["s-0", "s-1", "s-2"];
    w.upsert(vec![case("c1", &subjects, &["alice"], pb::Purpose::Casework)]).await;
    let admin = w.staff_token("root", &[Role::Admin]);
    let alice = w.staff_token("alice", &[Role::Caseworker]);
    let new_key = quis_vault::keyring::Keyring::create_next(w.dir.path(), &w.config.vault.keys).expect("k2");
    assert_eq!(new_key, "k2");
    let mut vault = w.vault().await;
    loop {
        let progress = vault
            .rotate_keys(with_token(v::RotateKeysRequest { batch_size: 2 }, &admin))
            .await
            .expect("rotate")
            .into_inner();
        assert_eq!(progress.active_key_id, "k2");
        if progress.remaining == 0 {
            break;
        }
        assert!(progress.rewrapped > 0);
    }
    let keys = vault
        .list_encryption_keys(with_token(v::ListEncryptionKeysRequest::default(), &admin))
        .await
        .expect("keys")
        .into_inner()
        .keys;
    let usage: Vec<(&str, bool, i64)> =
        keys.iter().map(|k| (k.key_id.as_str(), k.active, k.wrapped_data_keys)).collect();
    assert_eq!(usage, [("k1", false, 0), ("k2", true, 6)], "3 profiles and 3 records, all under k2");
    for name in &names {
        w.get(&alice, read(name, ledger::Purpose::Casework, "cases/c1")).await.expect("decrypts after rotation");
    }
    std::fs::remove_file(w.dir.path().join(&w.config.vault.keys.kek_dir).join("k1.hex")).expect("destroy k1");
    w.restart_vault().await;
    let mut read_back = 0;
    let ok = eventually(Duration::from_secs(10), async || {
        read_back = 0;
        for name in &names {
            if w.get(&alice, read(name, ledger::Purpose::Casework, "cases/c1")).await.is_ok() {
                read_back += 1;
            }
        }
        read_back == names.len()
    })
    .await;
    assert!(ok, "every record decrypts without k1 ({read_back} of {})", names.len());
}

// ------------------------------------------------------------------ bad input and roles

#[tokio::test]
async fn bad_input_is_refused_precisely_and_roles_are_enforced() {
    let w = World::start(false).await;
    let name = w.subject_with_record("s-1", person("Ann", "Smith"), "10.00", "note").await;
    let ingest = w.ingest();
    let alice = w.staff_token("alice", &[Role::Caseworker]);
    let admin = w.staff_token("root", &[Role::Admin]);
    let mut vault = w.vault().await;
    let invalid = |status: Status, field: &str| {
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(violation_fields(&status).iter().any(|f| f == field), "{field} in {status:?}");
    };

    let bad_id = v::CreateSubjectRequest { subject_id: "Bad_Id".into(), subject: Some(person("Ann", "Smith")) };
    invalid(vault.create_subject(with_token(bad_id, &ingest)).await.expect_err("id"), "subject_id");
    let no_mask = v::UpdateSubjectRequest {
        subject: Some(v::Subject { name: "subjects/s-1".into(), ..Default::default() }),
        update_mask: None,
    };
    invalid(vault.update_subject(with_token(no_mask, &ingest)).await.expect_err("mask"), "update_mask");
    let bad_parent = v::CreateRecordRequest {
        parent: "people/s-1".into(),
        record_id: "r2".into(),
        record: Some(tax_record("1.00", "n")),
    };
    invalid(vault.create_record(with_token(bad_parent, &ingest)).await.expect_err("parent"), "parent");
    let mut huge = tax_record("1.00", "n");
    huge.fields.push(field("notes_long", v::Sensitivity::Basic, Value::StringValue("x".repeat(70_000))));
    let oversized =
        v::CreateRecordRequest { parent: "subjects/s-1".into(), record_id: "r2".into(), record: Some(huge) };
    invalid(
        vault.create_record(with_token(oversized, &ingest)).await.expect_err("oversized"),
        "record.fields[4].value",
    );
    let unknown_parent = v::CreateRecordRequest {
        parent: "subjects/nobody".into(),
        record_id: "r2".into(),
        record: Some(tax_record("1.00", "n")),
    };
    assert_refused(
        &vault.create_record(with_token(unknown_parent, &ingest)).await.expect_err("unknown"),
        Code::NotFound,
        "NOT_FOUND",
    );
    let no_record_mask = v::UpdateRecordRequest {
        record: Some(v::Record { name: name.clone(), ..Default::default() }),
        update_mask: None,
        expected_version: 0,
    };
    invalid(vault.update_record(with_token(no_record_mask, &ingest)).await.expect_err("mask"), "update_mask");

    let no_purpose = v::GetRecordRequest { name: name.clone(), context: None, fields: vec![] };
    invalid(vault.get_record(with_token(no_purpose, &alice)).await.expect_err("purpose"), "context.purpose");
    let bad_case = read(&name, ledger::Purpose::Casework, "case-1");
    invalid(vault.get_record(with_token(bad_case, &alice)).await.expect_err("case"), "context.case");
    // 1,500 characters, but 4,500 bytes: more than the ledger keeps behind a commitment.
    let mut long_justification = read(&name, ledger::Purpose::Casework, "cases/c1");
    long_justification.context.as_mut().expect("context").justification = "€".repeat(1500);
    let refused = vault.get_record(with_token(long_justification, &alice)).await.expect_err("justification");
    invalid(refused, "context.justification");
    invalid(
        vault
            .get_record(with_token(read("subjects/s-1", ledger::Purpose::Casework, "cases/c1"), &alice))
            .await
            .expect_err("name"),
        "name",
    );
    let long_query = v::SearchSubjectsRequest {
        query: Some(v::SubjectQuery { family_name: "x".repeat(300), ..Default::default() }),
        context: context(ledger::Purpose::FraudInvestigation, ""),
        ..Default::default()
    };
    invalid(vault.search_subjects(with_token(long_query, &alice)).await.expect_err("long"), "query.family_name");
    let broad = v::SearchSubjectsRequest {
        query: Some(v::SubjectQuery { family_name: "Sm*".into(), given_name: "a*".into(), ..Default::default() }),
        context: context(ledger::Purpose::FraudInvestigation, ""),
        ..Default::default()
    };
    let refused = vault.search_subjects(with_token(broad, &alice)).await.expect_err("too broad");
    assert_refused(&refused, Code::InvalidArgument, "QUERY_TOO_BROAD");
    invalid(
        vault
            .export_records(with_token(
                v::ExportRecordsRequest { context: context(ledger::Purpose::Legal, "cases/c1"), ..Default::default() },
                &alice,
            ))
            .await
            .expect_err("export"),
        "subjects",
    );
    let bad_action = v::RecordAccessRequest {
        record: Some(v::ExternalRecord {
            system: "tax-core".into(),
            subject: "subjects/s-1".into(),
            reference: "T-1".into(),
            kind: "tax-return".into(),
        }),
        action: ledger::Action::Search as i32,
        context: context(ledger::Purpose::Casework, "cases/c1"),
        fields: vec![],
    };
    invalid(vault.record_access(with_token(bad_action, &alice)).await.expect_err("action"), "action");
    let short = v::StartBreakGlassRequest {
        subjects: vec!["subjects/s-1".into()],
        justification: "hurry".into(),
        duration: Some(prost_types::Duration { seconds: 600, nanos: 0 }),
        case: String::new(),
    };
    invalid(vault.start_break_glass(with_token(short, &alice)).await.expect_err("justification"), "justification");
    let wide = v::StartBreakGlassRequest {
        subjects: vec!["subjects/s-1".into()],
        justification: "€".repeat(1500),
        duration: Some(prost_types::Duration { seconds: 600, nanos: 0 }),
        case: String::new(),
    };
    invalid(vault.start_break_glass(with_token(wide, &alice)).await.expect_err("wide"), "justification");
    invalid(
        vault
            .end_break_glass(with_token(v::EndBreakGlassRequest { name: "grant-1".into() }, &alice))
            .await
            .expect_err("name"),
        "name",
    );
    let history = v::GetAccessHistoryRequest { parent: "subject/s-1".into(), ..Default::default() };
    invalid(vault.get_access_history(with_token(history, &alice)).await.expect_err("parent"), "parent");
    invalid(
        vault
            .list_encryption_keys(with_token(
                v::ListEncryptionKeysRequest { page_size: 500, page_token: String::new() },
                &admin,
            ))
            .await
            .expect_err("size"),
        "page_size",
    );
    invalid(
        vault.rotate_keys(with_token(v::RotateKeysRequest { batch_size: 20_000 }, &admin)).await.expect_err("batch"),
        "batch_size",
    );
    let beyond = v::RebuildAccessIndexRequest { start_index: u64::MAX, batch_size: 0 };
    invalid(vault.rebuild_access_index(with_token(beyond, &admin)).await.expect_err("beyond"), "start_index");
    let too_many = v::RebuildAccessIndexRequest { start_index: 0, batch_size: 100_001 };
    invalid(vault.rebuild_access_index(with_token(too_many, &admin)).await.expect_err("batch"), "batch_size");

    // Wrong roles.
    let as_caseworker = v::CreateSubjectRequest { subject_id: "s-2".into(), subject: Some(person("Bo", "Jones")) };
    assert_refused(
        &vault.create_subject(with_token(as_caseworker, &alice)).await.expect_err("role"),
        Code::PermissionDenied,
        "ROLE_REQUIRED",
    );
    assert_refused(
        &vault.rotate_keys(with_token(v::RotateKeysRequest::default(), &ingest)).await.expect_err("role"),
        Code::PermissionDenied,
        "ROLE_REQUIRED",
    );
    let privacy_officer = w.staff_token("petra", &[Role::PrivacyOfficer]);
    assert_refused(
        &vault
            .rebuild_access_index(with_token(v::RebuildAccessIndexRequest::default(), &privacy_officer))
            .await
            .expect_err("role"),
        Code::PermissionDenied,
        "ROLE_REQUIRED",
    );
    assert_refused(
        &vault
            .list_encryption_keys(with_token(v::ListEncryptionKeysRequest::default(), &alice))
            .await
            .expect_err("role"),
        Code::PermissionDenied,
        "ROLE_REQUIRED",
    );
    let ingest_reads = vault
        .get_record(with_token(read(&name, ledger::Purpose::Casework, "cases/c1"), &ingest))
        .await
        .expect_err("ingest reads nothing");
    assert_eq!(ingest_reads.code(), Code::PermissionDenied);

    // Nothing changed: the refused subject does not exist, and the refused record was not written.
    let created = v::CreateSubjectRequest { subject_id: "s-2".into(), subject: Some(person("Bo", "Jones")) };
    vault.create_subject(with_token(created, &ingest)).await.expect("s-2 was never created");
    let again = v::CreateRecordRequest {
        parent: "subjects/s-1".into(),
        record_id: "r2".into(),
        record: Some(tax_record("1.00", "n")),
    };
    vault.create_record(with_token(again, &ingest)).await.expect("r2 was never written");
    // The refused search is in the ledger, denied, with its terms as commitments.
    let events = w.access_events(2).await;
    let searches: Vec<&AccessEvent> =
        events.iter().map(|(_, e)| e).filter(|e| e.action == ledger::Action::Search as i32).collect();
    assert_eq!(searches.len(), 1);
    assert_eq!(searches[0].decision, ledger::Decision::Deny as i32);
    assert_eq!(searches[0].determining_policies, ["vault-query-too-broad"]);
    assert_eq!(searches[0].query.len(), 2);
}

// ------------------------------------------------------------------ break-glass

#[tokio::test]
async fn break_glass_is_granted_by_policy_named_in_accesses_and_ended() {
    let w = World::start(false).await;
    let name = w.subject_with_record("s-1", person("Ann", "Smith"), "10.00", "note").await;
    let alice = w.staff_token("alice", &[Role::Caseworker]);
    let bob = w.staff_token("bob", &[Role::Caseworker]);
    let emergency = || read(&name, ledger::Purpose::Emergency, "");
    let before = w.get(&alice, emergency()).await.expect_err("no grant yet");
    assert_refused(&before, Code::PermissionDenied, "ACCESS_DENIED");
    let mut vault = w.vault().await;
    let start = v::StartBreakGlassRequest {
        subjects: vec!["subjects/s-1".into()],
        justification: "the subject collapsed at the counter; next of kin needed".into(),
        duration: Some(prost_types::Duration { seconds: 900, nanos: 0 }),
        case: String::new(),
    };
    let started = vault.start_break_glass(with_token(start, &alice)).await.expect("start").into_inner();
    let grant = started.grant.expect("grant");
    assert_eq!(grant.grantee, "staff/alice");
    let under = w.get(&alice, emergency()).await.expect("read under the grant");
    let receipt = under.receipt.expect("receipt");
    assert_eq!(receipt.break_glass_grant, grant.name);
    assert!(field_names(&under.record.expect("record")).contains(&"bank_iban"));
    let not_grantee = vault
        .end_break_glass(with_token(v::EndBreakGlassRequest { name: grant.name.clone() }, &bob))
        .await
        .expect_err("bob");
    assert_refused(&not_grantee, Code::PermissionDenied, "NOT_GRANTEE");
    let ended = vault
        .end_break_glass(with_token(v::EndBreakGlassRequest { name: grant.name.clone() }, &alice))
        .await
        .expect("end")
        .into_inner();
    assert!(ended.grant.expect("grant").ended);
    let after = w.get(&alice, emergency()).await.expect_err("ended");
    assert_refused(&after, Code::PermissionDenied, "ACCESS_DENIED");
    let events = w.access_events(5).await;
    let story: Vec<(i32, i32, String)> =
        events.iter().map(|(_, e)| (e.action, e.decision, e.break_glass_grant.clone())).collect();
    let (allow, deny) = (ledger::Decision::Allow as i32, ledger::Decision::Deny as i32);
    assert_eq!(
        story,
        [
            (ledger::Action::Read as i32, deny, String::new()),
            (ledger::Action::BreakGlassStart as i32, allow, grant.name.clone()),
            (ledger::Action::Read as i32, allow, grant.name.clone()),
            (ledger::Action::BreakGlassEnd as i32, allow, grant.name.clone()),
            (ledger::Action::Read as i32, deny, String::new()),
        ]
    );
    assert!(events[1].1.justification.is_some(), "the justification is committed to");
}

// ------------------------------------------------------------------ access history

fn verify_items(w: &World, history: &v::GetAccessHistoryResponse, subject: &str) {
    let verifiers: Vec<Verifier> = quis_ledger::log_verifier_keys(&w.config)
        .expect("log keys")
        .iter()
        .map(|k| Verifier::from_vkey(k).expect("vkey"))
        .collect();
    let opened = quis_tlog::checkpoint::open(&history.checkpoint, &verifiers, &[]).expect("signed checkpoint");
    assert_eq!(opened.checkpoint.size, history.tree_size);
    for item in &history.items {
        let hashes: Vec<Hash> =
            item.inclusion_proof.iter().map(|h| h.as_slice().try_into().expect("32 bytes")).collect();
        quis_tlog::check_record(
            &hashes,
            history.tree_size,
            &opened.checkpoint.root,
            item.ledger_index,
            &quis_tlog::leaf_hash(&item.entry),
        )
        .expect("inclusion verifies");
        let entry = LedgerEntry::decode(item.entry.as_slice()).expect("entry");
        let Some(Kind::Access(access)) = entry.event.and_then(|e| e.kind) else { panic!("not an access") };
        let mine = quis_vault_service::commit(&item.subject_salt, &format!("subjects/{subject}")).to_vec();
        assert!(
            access.subject.iter().chain(&access.results).any(|c| c.digest == mine),
            "the salt opens the entry's commitment to the subject"
        );
        assert_eq!((access.action, access.decision), (item.action, item.decision));
    }
}

async fn access_history_lists_own_accesses_with_proofs(postgres: bool) {
    let w = World::start(postgres).await;
    let name = w.subject_with_record("s-1", person("Ann", "Smith"), "10.00", "note").await;
    w.subject_with_record("s-2", person("Bo", "Jones"), "20.00", "note").await;
    w.upsert(vec![
        case("c1", &["s-1", "s-2"], &["alice"], pb::Purpose::Casework),
        case("f1", &["s-1"], &["ivy"], pb::Purpose::FraudInvestigation),
    ])
    .await;
    let alice = w.staff_token("alice", &[Role::Caseworker]);
    let bob = w.staff_token("bob", &[Role::Caseworker]);
    let ivy = w.staff_token("ivy", &[Role::Investigator]);
    let petra = w.staff_token("petra", &[Role::PrivacyOfficer]);
    let me = w.token("s-1", PrincipalKind::Subject, &[]);
    let allowed = w.read_index(&alice, read(&name, ledger::Purpose::Casework, "cases/c1")).await;
    w.get(&bob, read(&name, ledger::Purpose::Casework, "cases/c1")).await.expect_err("bob");
    w.get(&alice, read("subjects/s-2/records/r1", ledger::Purpose::Casework, "cases/c1"))
        .await
        .expect("another subject");
    let covert = w.read_index(&ivy, read(&name, ledger::Purpose::FraudInvestigation, "cases/f1")).await;
    w.access_events(4).await;

    let own = w.history(&me, "s-1", None).await.expect("own history");
    let seen: Vec<(String, i32)> = own.items.iter().map(|i| (i.accessor.clone(), i.decision)).collect();
    let (allow, deny) = (ledger::Decision::Allow as i32, ledger::Decision::Deny as i32);
    assert_eq!(seen, [("alice".into(), allow), ("bob".into(), deny)], "the covert access is hidden, s-2's is not mine");
    assert_eq!(own.items[0].ledger_index, allowed);
    assert_eq!(own.items[0].record, name);
    assert_eq!(own.items[0].purpose, CASEWORK);
    verify_items(&w, &own, "s-1");
    let other = w.history(&me, "s-2", None).await.expect_err("not mine");
    assert_refused(&other, Code::PermissionDenied, "ACCESS_DENIED");
    let staff_denied = w.history(&alice, "s-1", context(ledger::Purpose::Audit, "")).await.expect_err("staff");
    assert_eq!(staff_denied.code(), Code::PermissionDenied);

    let overseen = w.history(&petra, "s-1", context(ledger::Purpose::Audit, "")).await.expect("privacy officer");
    let indices: Vec<u64> = overseen.items.iter().map(|i| i.ledger_index).collect();
    assert!(indices.contains(&covert), "a privacy officer sees covert accesses");
    verify_items(&w, &overseen, "s-1");
    let officer_read = overseen.receipt.expect("receipt").ledger_index;
    let mut listed = Vec::new();
    let recorded = eventually(Duration::from_secs(10), async || {
        listed = w.history(&me, "s-1", None).await.expect("own").items.iter().map(|i| i.ledger_index).collect();
        listed.contains(&officer_read)
    })
    .await;
    assert!(recorded, "the privacy officer's read is itself in the subject's history: {listed:?}");
    assert!(!listed.contains(&covert));

    // The index is secondary: rows deleted behind the vault's back come back from the ledger.
    let db = quis_core::db::Db::connect(&w.config.store_url("vault")).await.expect("vault store");
    let store = quis_vault::store::Store::open(db).await.expect("vault store");
    let deleted = quis_core::on_pool!(store.access_index_db(), pool => sqlx::query("DELETE FROM vault_access_index").execute(pool).await.map(|r| r.rows_affected()))
        .expect("delete rows");
    assert!(w.history(&me, "s-1", None).await.expect("own").items.is_empty());
    let admin = w.staff_token("root", &[Role::Admin]);
    let rebuild = async |batch_size: i32| {
        let (mut start, mut restored, mut calls) = (0, 0, 0);
        loop {
            let req = v::RebuildAccessIndexRequest { start_index: start, batch_size };
            let done = w.vault().await.rebuild_access_index(with_token(req, &admin)).await.expect("rebuild");
            let done = done.into_inner();
            assert!(done.next_index > start || done.next_index == done.tree_size, "{done:?}");
            (start, restored, calls) = (done.next_index, restored + done.restored, calls + 1);
            if start == done.tree_size {
                return (restored, calls);
            }
        }
    };
    let (restored, calls) = rebuild(3).await;
    assert!(calls > 1, "three entries per call take several calls");
    assert_eq!(restored as u64, deleted, "every deleted row, and only those, comes back");
    let rebuilt: Vec<u64> =
        w.history(&me, "s-1", None).await.expect("own").items.iter().map(|i| i.ledger_index).collect();
    assert_eq!(rebuilt, listed, "nothing is hidden after a rebuild");
    assert_eq!(rebuild(0).await, (0, 1), "a second pass finds nothing missing");

    // Covert accesses appear once released: a policy version releasing after one second.
    let text = quis_policy_engine::policy::DEFAULT_POLICIES
        .replace("@history_release(\"15552000\")", "@history_release(\"1\")");
    let mut policy = w.policy().await;
    let proposed = policy
        .create_policy_set_version(with_token(
            pb::CreatePolicySetVersionRequest { text, description: "release covert reads after 1 s".into() },
            &w.staff_token("root", &[Role::Admin]),
        ))
        .await
        .expect("propose")
        .into_inner()
        .version
        .expect("version");
    policy
        .approve_policy_set_version(with_token(
            pb::ApprovePolicySetVersionRequest { name: proposed.name, reason: "test".into() },
            &w.staff_token("root2", &[Role::Admin]),
        ))
        .await
        .expect("approve");
    let released = w.read_index(&ivy, read(&name, ledger::Purpose::FraudInvestigation, "cases/f1")).await;
    let mut now_listed = Vec::new();
    let appeared = eventually(Duration::from_secs(15), async || {
        now_listed = w.history(&me, "s-1", None).await.expect("own").items.iter().map(|i| i.ledger_index).collect();
        now_listed.contains(&released)
    })
    .await;
    assert!(appeared, "a released covert access appears: {now_listed:?}");
    assert!(!now_listed.contains(&covert), "the first stays hidden until its own release date");
}

macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            #[tokio::test]
            async fn sqlite() {
                super::$test(false).await;
            }
            #[tokio::test]
            async fn postgres() {
                super::$test(true).await;
            }
        }
    )*};
}

on_both_backends!(
    guarded_reads_are_decided_recorded_and_minimized,
    concurrent_reads_share_calls_yet_each_has_its_own_entry,
    no_plaintext_at_rest_or_in_logs,
    key_rotation_rewraps_and_the_old_key_can_be_destroyed,
    access_history_lists_own_accesses_with_proofs,
);
