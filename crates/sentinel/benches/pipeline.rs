//! Sentinel's per-event work on one core, with every detection enabled: decode
//! the stored entry bytes, enrich (opened subject, policy's entities,
//! explanation), run the engine; and the same with the batch committed to a
//! SQLite store (cursor, alerts, changed detection state), as the consumer does.
//! Events/s = batch size × (1 / time per batch). Target: 20,000 events/s.
//!
//! `cargo bench -p quis-sentinel --bench pipeline` (the lead measures on an idle machine).
use std::collections::HashMap;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use quis_core::sentinel::SentinelConfig;
use quis_proto::{
    ledger::{AccessEvent, Action, Actor, Commitment, Decision, Event, LedgerEntry, Purpose, event::Kind},
    policy::{self as pb, entity::Kind as E},
};
use quis_sentinel::{
    config::{DetectionsConfig, Site},
    detect::Engine,
    enrich,
    entities::EntityView,
    event::{EnrichedAccess, decode},
    store::SentinelStore,
};

const STAFF: usize = 500;
const SUBJECTS: usize = 50_000;
const BATCH: usize = 500;
/// Monday 2026-11-23 08:00 UTC.
const T0: i64 = 1_795_392_000_000 + 8 * 3_600_000;

fn change(version: u64, kind: E) -> pb::EntityChange {
    pb::EntityChange { version, entity: Some(pb::Entity { kind: Some(kind) }), deleted: String::new() }
}

/// 500 staff in 25 teams, 50,000 subjects (1 in 1,000 a decoy, 1 in 100 a public figure), one open
/// case per staff member over 40 subjects.
fn organization() -> EntityView {
    let mut view = EntityView::default();
    let mut v = 0;
    let mut next = || {
        v += 1;
        v
    };
    for t in 0..25 {
        view.apply(change(
            next(),
            E::Team(pb::Team { name: format!("teams/t-{t}"), site: "hq".into(), parent: String::new() }),
        ));
    }
    for s in 0..STAFF {
        view.apply(change(
            next(),
            E::Staff(pb::Staff {
                name: format!("staff/u-{s}"),
                team: format!("teams/t-{}", s % 25),
                site: "paris".into(),
                roles: vec![if s % 20 == 0 { "team_lead" } else { "caseworker" }.into()],
                status: pb::StaffStatus::Active as i32,
                surname_key: vec![(s % 251) as u8; 32],
                address_key: vec![(s % 241) as u8 + 1; 32],
                ..Default::default()
            }),
        ));
    }
    for s in 0..SUBJECTS {
        let compartments = if s % 100 == 7 { vec![pb::Compartment::PublicFigure as i32] } else { vec![] };
        view.apply(change(
            next(),
            E::Subject(pb::Subject {
                name: format!("subjects/s-{s}"),
                compartments,
                decoy: s % 1000 == 999,
                surname_key: vec![(s % 253) as u8; 32],
                address_key: vec![(s % 239) as u8 + 2; 32],
                ..Default::default()
            }),
        ));
    }
    for s in 0..STAFF {
        view.apply(change(
            next(),
            E::Case(pb::Case {
                name: format!("cases/c-{s}"),
                subjects: (0..40).map(|i| format!("subjects/s-{}", (s * 97 + i * 13) % SUBJECTS)).collect(),
                assigned_staff: vec![format!("staff/u-{s}")],
                status: pb::CaseStatus::Open as i32,
                purpose: pb::Purpose::Casework as i32,
                ..Default::default()
            }),
        ));
    }
    view
}

/// Stored entries as (index, bytes), and the subject behind each commitment digest.
type Entries = (Vec<(u64, Vec<u8>)>, HashMap<Vec<u8>, String>);

/// A day of work as stored entries (each with its subject detail): mostly assigned casework, some
/// unexplained reads, denials and searches.
fn entries(n: usize) -> Entries {
    let mut details = HashMap::new();
    let entries = (0..n)
        .map(|i| {
            let staff = i % STAFF;
            let on_case = i % 10 != 0;
            let subject = if on_case { (staff * 97 + (i % 40) * 13) % SUBJECTS } else { (i * 7919) % SUBJECTS };
            let mut digest = [0u8; 32];
            digest[..8].copy_from_slice(&(i as u64).to_be_bytes());
            details.insert(digest.to_vec(), format!("subjects/s-{subject}"));
            let access = AccessEvent {
                actor: Some(Actor {
                    principal: format!("u-{staff}"),
                    kind: "staff".into(),
                    site: "paris".into(),
                    source_address: format!("10.0.{}.{}", staff / 200, staff % 200),
                    ..Default::default()
                }),
                action: if i % 50 == 0 { Action::Search } else { Action::Read } as i32,
                subject: Some(Commitment { digest: digest.to_vec() }),
                purpose: Purpose::Casework as i32,
                case: format!("cases/c-{staff}"),
                decision: if i % 100 == 0 { Decision::Deny } else { Decision::Allow } as i32,
                result_count: if i % 50 == 0 { 12 } else { 1 },
                ..Default::default()
            };
            let at = T0 + (i as i64) * 1_000;
            let entry = LedgerEntry {
                sequence_time: Some(prost_types::Timestamp { seconds: at / 1000, nanos: 0 }),
                appended_by: "vault".into(),
                event: Some(Event { kind: Some(Kind::Access(access)) }),
            };
            (i as u64, entry.encode_to_vec())
        })
        .collect();
    (entries, details)
}

fn config() -> DetectionsConfig {
    let mut c = DetectionsConfig::default();
    c.credential_misuse.sites = [("paris".to_string(), Site { lat: 48.86, lon: 2.35 })].into();
    c
}

fn enriched(view: &EntityView, details: &HashMap<Vec<u8>, String>, batch: &[(u64, Vec<u8>)]) -> Vec<EnrichedAccess> {
    let purposes = config().unexplained_access.explaining_purposes;
    batch
        .iter()
        .filter_map(|(i, data)| decode(*i, data).ok())
        .filter_map(|o| EnrichedAccess::from_observed(&o))
        .map(|mut e| {
            enrich::enrich(view, details, &purposes, &mut e);
            e
        })
        .collect()
}

fn pipeline(c: &mut Criterion) {
    let view = organization();
    let (all, details) = entries(20 * SentinelConfig::default().batch_max.max(BATCH));
    let mut group = c.benchmark_group("sentinel");
    group.throughput(Throughput::Elements(BATCH as u64));

    let mut engine = Engine::new(config());
    let mut batches = all.chunks(BATCH).cycle();
    group.bench_function("decode+enrich+detect", |b| {
        b.iter(|| {
            let batch = batches.next().unwrap_or_default();
            engine.process(&enriched(&view, &details, batch))
        })
    });

    // The consumer commits up to `sentinel.batch_max` entries at once when it is behind: the
    // default, beside the 500 it was until it was measured here.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    for batch_size in [500, SentinelConfig::default().batch_max] {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("sentinel.db").display());
        let store = runtime.block_on(SentinelStore::connect(&url, 86_400, 86_400)).expect("store");
        let mut engine = Engine::new(config());
        let mut cursor = 0u64;
        group.throughput(Throughput::Elements(batch_size as u64));
        group.bench_function(format!("decode+enrich+detect+commit (SQLite), {batch_size} per batch"), |b| {
            b.iter(|| {
                let start = (cursor as usize) % (all.len() - batch_size);
                let batch = &all[start..start + batch_size];
                let out = engine.process(&enriched(&view, &details, batch));
                runtime.block_on(store.commit_batch(cursor, cursor + batch_size as u64, &out)).expect("commit");
                cursor += batch_size as u64;
            })
        });
    }
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
