//! The detections on policy's entities, over real ledger entries enriched as
//! the consumer enriches them: an organization written as policy's change feed
//! (`EntityChange` messages), subject commitments opened through a details
//! map, then the engine. Misuse raises the named alert; its legitimate
//! look-alikes (a common surname on an assigned case, a team lead reading the
//! team's cases, assigned work) raise nothing and count as explained.
use prost::Message;
use quis_proto::{
    ledger::{AccessEvent, Action, Actor, Commitment, Decision, Event, LedgerEntry, Purpose, event::Kind},
    policy::{self as pb, entity::Kind as E},
};
use quis_sentinel::{
    config::{DetectionsConfig, Severity, Site},
    detect::{Engine, NewAlert},
    enrich,
    entities::EntityView,
    event::{EnrichedAccess, Explanation, decode},
};
use std::collections::HashMap;

/// Monday 2026-11-23 10:00 UTC, in milliseconds.
const T0: i64 = 1_795_392_000_000 + 10 * 3_600_000;
const MINUTE: i64 = 60_000;

fn key(n: u8) -> Vec<u8> {
    vec![n; 32]
}

fn staff(id: &str, team: &str, roles: &[&str], status: pb::StaffStatus, keys: (u8, u8, u8)) -> E {
    E::Staff(pb::Staff {
        name: format!("staff/{id}"),
        team: format!("teams/{team}"),
        site: "paris".into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        clearances: if id == "carol" { vec![pb::Compartment::PublicFigure as i32] } else { vec![] },
        status: status as i32,
        surname_key: key(keys.0),
        address_key: key(keys.1),
        household_key: if keys.2 == 0 { vec![] } else { key(keys.2) },
    })
}

fn subject(id: &str, compartments: &[pb::Compartment], decoy: bool, keys: (u8, u8)) -> E {
    E::Subject(pb::Subject {
        name: format!("subjects/{id}"),
        compartments: compartments.iter().map(|c| *c as i32).collect(),
        decoy,
        surname_key: key(keys.0),
        address_key: key(keys.1),
        household_key: vec![],
    })
}

fn case(id: &str, subjects: &[&str], staff: &[&str], teams: &[&str]) -> E {
    E::Case(pb::Case {
        name: format!("cases/{id}"),
        subjects: subjects.iter().map(|s| format!("subjects/{s}")).collect(),
        assigned_staff: staff.iter().map(|s| format!("staff/{s}")).collect(),
        assigned_teams: teams.iter().map(|t| format!("teams/{t}")).collect(),
        status: pb::CaseStatus::Open as i32,
        purpose: pb::Purpose::Casework as i32,
    })
}

/// North (led by lena) with alice and bob; tom, terminated; carol, cleared for public figures.
fn organization() -> EntityView {
    use pb::{Compartment as C, StaffStatus::*};
    let entities = vec![
        E::Team(pb::Team { name: "teams/north".into(), site: "paris".into(), parent: String::new() }),
        staff("alice", "north", &["caseworker"], Active, (1, 11, 21)),
        staff("bob", "north", &["caseworker"], Active, (2, 12, 0)),
        staff("lena", "north", &["caseworker", "team_lead"], Active, (3, 13, 0)),
        staff("tom", "north", &["caseworker"], Terminated, (4, 14, 0)),
        staff("carol", "south", &["caseworker"], Active, (5, 15, 0)),
        staff("mallory", "south", &["caseworker"], Active, (6, 16, 0)),
        // s-1 shares alice's (common) surname; s-2 lives at alice's address.
        subject("s-1", &[], false, (1, 31)),
        subject("s-2", &[], false, (32, 11)),
        subject("s-3", &[], true, (33, 33)),
        subject("s-4", &[C::PublicFigure], false, (34, 34)),
        subject("s-6", &[], false, (36, 36)),
        subject("s-7", &[], false, (37, 37)),
        case("c-1", &["s-1", "s-2"], &["alice"], &[]),
        case("c-2", &["s-6"], &[], &["north"]),
        case("c-3", &["s-7"], &["bob"], &[]),
        case("c-4", &["s-4"], &["carol", "alice"], &[]),
    ];
    let mut view = EntityView::default();
    for (i, kind) in entities.into_iter().enumerate() {
        view.apply(pb::EntityChange {
            version: i as u64 + 1,
            entity: Some(pb::Entity { kind: Some(kind) }),
            deleted: String::new(),
        });
    }
    view
}

#[derive(Clone)]
struct Access {
    at: i64,
    actor: &'static str,
    kind: &'static str,
    subject: String,
    case: &'static str,
    action: Action,
    decision: Decision,
    site: &'static str,
    device: &'static str,
}

fn access(at: i64, actor: &'static str, subject: &str, case: &'static str) -> Access {
    Access {
        at,
        actor,
        kind: "staff",
        subject: subject.into(),
        case,
        action: Action::Read,
        decision: Decision::Allow,
        site: "paris",
        device: "",
    }
}

fn digest_of(index: usize) -> Vec<u8> {
    let mut d = vec![7u8; 32];
    d[..8].copy_from_slice(&(index as u64).to_be_bytes());
    d
}

/// Encodes, decodes and enriches the accesses (indices from 0) on `view`.
fn enriched(view: &EntityView, config: &DetectionsConfig, accesses: &[Access]) -> Vec<EnrichedAccess> {
    let mut details = HashMap::new();
    accesses
        .iter()
        .enumerate()
        .map(|(i, a)| {
            details.insert(digest_of(i), format!("subjects/{}", a.subject));
            let event = AccessEvent {
                actor: Some(Actor {
                    principal: a.actor.into(),
                    kind: a.kind.into(),
                    site: a.site.into(),
                    device: a.device.into(),
                    source_address: "10.0.0.1".into(),
                    ..Default::default()
                }),
                action: a.action as i32,
                subject: Some(Commitment { digest: digest_of(i) }),
                purpose: Purpose::Casework as i32,
                case: if a.case.is_empty() { String::new() } else { format!("cases/{}", a.case) },
                decision: a.decision as i32,
                ..Default::default()
            };
            let entry = LedgerEntry {
                sequence_time: Some(prost_types::Timestamp { seconds: a.at / 1000, nanos: 0 }),
                appended_by: "vault".into(),
                event: Some(Event { kind: Some(Kind::Access(event)) }),
            };
            let observed = decode(i as u64, &entry.encode_to_vec()).expect("decodes");
            let mut e = EnrichedAccess::from_observed(&observed).expect("an access");
            enrich::enrich(view, &details, &config.unexplained_access.explaining_purposes, &mut e);
            e
        })
        .collect()
}

fn run(config: DetectionsConfig, accesses: &[Access]) -> (Vec<NewAlert>, Vec<EnrichedAccess>, (u64, u64)) {
    let view = organization();
    let events = enriched(&view, &config, accesses);
    let out = Engine::new(config).process(&events);
    (out.alerts, events, (out.explained, out.accesses))
}

fn only(alerts: &[NewAlert]) -> Vec<(&'static str, String)> {
    alerts.iter().map(|a| (a.detection, a.actor.clone())).collect()
}

#[test]
fn legitimate_look_alikes_raise_nothing_and_are_explained() {
    let day = [
        // A common surname on an assigned case.
        access(T0, "alice", "s-1", "c-1"),
        // A case assigned to the team.
        access(T0 + MINUTE, "bob", "s-6", "c-2"),
        // A team lead reading a team member's case.
        access(T0 + 2 * MINUTE, "lena", "s-7", "c-3"),
        // Cleared and assigned: a public figure on carol's case.
        access(T0 + 3 * MINUTE, "carol", "s-4", "c-4"),
    ];
    let (alerts, events, (explained, accesses)) = run(DetectionsConfig::default(), &day);
    assert_eq!(only(&alerts), vec![]);
    assert_eq!(
        events.iter().map(|e| e.explanation).collect::<Vec<_>>(),
        vec![Explanation::AssignedCase, Explanation::TeamCase, Explanation::TeamCase, Explanation::AssignedCase]
    );
    assert_eq!((explained, accesses), (4, 4), "every access explained");
}

#[test]
fn misuse_raises_the_named_detection_with_evidence() {
    let mut config = DetectionsConfig::default();
    config.credential_misuse.sites = [
        ("paris".to_string(), Site { lat: 48.86, lon: 2.35 }),
        ("sydney".to_string(), Site { lat: -33.87, lon: 151.21 }),
    ]
    .into();
    let mut service = access(T0 + 40 * MINUTE, "batch-export", "s-6", "");
    service.kind = "service";
    service.device = "laptop-77";
    let mut travel = access(T0 + 31 * MINUTE, "bob", "s-6", "c-2");
    travel.site = "sydney";
    let mut decoy = access(T0 + 5 * MINUTE, "carol", "s-3", "");
    decoy.decision = Decision::Deny;
    let cases = [
        access(T0, "alice", "s-2", "c-1"), // household address, even on her own case
        decoy,                             // a decoy, even denied
        access(T0 + 10 * MINUTE, "alice", "s-4", "c-4"), // a public figure without clearance
        access(T0 + 20 * MINUTE, "tom", "s-6", "c-2"), // a terminated account
        access(T0 + 30 * MINUTE, "bob", "s-6", "c-2"),
        travel, // paris, then sydney a minute later
        service,
        access(T0 + 50 * MINUTE, "mallory", "s-6", ""), // no case: unexplained...
        access(T0 + 51 * MINUTE, "mallory", "s-7", ""), // ...twice
    ];
    let (alerts, events, (explained, accesses)) = run(config, &cases);
    assert_eq!(
        only(&alerts),
        vec![
            ("relationship", "alice".to_string()),
            ("honeytoken", "carol".to_string()),
            ("restricted-compartment", "alice".to_string()),
            ("credential-misuse", "tom".to_string()),
            ("credential-misuse", "bob".to_string()),
            ("credential-misuse", "batch-export".to_string()),
            ("unexplained-access", "mallory".to_string()),
        ]
    );
    let honeytoken = &alerts[1];
    assert_eq!(honeytoken.severity, Severity::Critical);
    assert_eq!(honeytoken.evidence.iter().map(|e| e.index).collect::<Vec<_>>(), vec![1]);
    assert_eq!(honeytoken.evidence[0].leaf_hash, events[1].leaf_hash);
    assert!(alerts[0].explanation.contains("address"), "{}", alerts[0].explanation);
    assert!(alerts[4].explanation.contains("km"), "{}", alerts[4].explanation);
    assert_eq!(alerts[6].evidence.iter().map(|e| e.index).collect::<Vec<_>>(), vec![7, 8]);
    for a in &alerts {
        assert!(!a.explanation.contains("s-"), "no subject id in an alert: {}", a.explanation);
    }
    // Staff's allowed accesses: seven (carol's was denied, batch-export is a service); mallory's two
    // are the unexplained ones.
    assert_eq!((explained, accesses), (5, 7));
}

#[test]
fn id_walking_and_one_alert_per_relationship() {
    let walk: Vec<Access> = (0..5).map(|i| access(T0 + i * MINUTE, "mallory", &format!("s-{}", 100 + i), "")).collect();
    let mut config = DetectionsConfig::default();
    config.unexplained_access.enabled = false;
    let (alerts, _, _) = run(config.clone(), &walk);
    assert_eq!(only(&alerts), vec![("enumeration", "mallory".to_string())]);
    assert_eq!(alerts[0].evidence.len(), 5);

    // Sent in parallel, a walk reaches the ledger in any order: the run of numbers is what counts.
    let order = [102, 100, 104, 101, 103];
    let shuffled: Vec<Access> =
        order.iter().enumerate().map(|(i, n)| access(T0 + i as i64, "mallory", &format!("s-{n}"), "")).collect();
    let (alerts, events, _) = run(config.clone(), &shuffled);
    assert_eq!(only(&alerts), vec![("enumeration", "mallory".to_string())]);
    let by_number: Vec<u64> = [1, 3, 0, 4, 2].iter().map(|&i| events[i].index).collect();
    assert_eq!(alerts[0].evidence.iter().map(|e| e.index).collect::<Vec<_>>(), by_number, "evidence in id order");

    // At any pace, between other reads (many subjects: only the walk is looked at here); but five
    // with a gap are no walk, nor a run pushed out of the last 64 subjects.
    config.bulk_collection.enabled = false;
    config.volume.enabled = false;
    let mut slow = Vec::new();
    for (i, n) in order.iter().enumerate() {
        let t = T0 + i as i64 * 60 * MINUTE;
        slow.push(access(t, "mallory", &format!("s-{n}"), ""));
        slow.extend((0..10).map(|k| access(t + k, "mallory", &format!("s-{}", 5000 + 100 * i as i64 + 2 * k), "")));
    }
    assert_eq!(only(&run(config.clone(), &slow).0), vec![("enumeration", "mallory".to_string())], "one an hour");
    let gap: Vec<Access> =
        [100, 101, 102, 104, 105].iter().map(|n| access(T0, "mallory", &format!("s-{n}"), "")).collect();
    assert!(run(config.clone(), &gap).0.is_empty());
    let mut forgotten = Vec::new();
    for (i, n) in order.iter().enumerate() {
        forgotten.push(access(T0 + i as i64, "mallory", &format!("s-{n}"), ""));
        if i == 3 {
            forgotten.extend((0..64).map(|k| access(T0 + 10, "mallory", &format!("s-{}", 5000 + 2 * k), "")));
        }
    }
    assert!(run(config.clone(), &forgotten).0.is_empty(), "the first four are no longer among the last 64");

    let again = [access(T0, "alice", "s-2", "c-1"), access(T0 + MINUTE, "alice", "s-2", "c-1")];
    let (alerts, _, _) = run(config, &again);
    assert_eq!(only(&alerts), vec![("relationship", "alice".to_string())], "the same subject twice: one alert");
}

#[test]
fn a_state_saved_with_the_ordered_walk_still_restores() {
    let seen = format!(r#"{{"time_ms":{T0},"index":7,"leaf_hash":"{}"}}"#, "0".repeat(64));
    let saved = format!(r#"{{"events":3,"entity":{{"walk_last":103,"walk":[{seen}]}}}}"#);
    Engine::restore(DetectionsConfig::default(), vec![("mallory".into(), saved)]).expect("restores");
}

/// lena, a team lead, reads a few of the team's cases a day, then all of them on her last day;
/// alice has a busy day on her own cases. Only lena's gathering is bulk collection.
#[test]
fn bulk_collection_beyond_ones_own_cases() {
    let mut view = organization();
    let team_subjects: Vec<String> = (0..60).map(|i| format!("s-{}", 1000 + 2 * i)).collect();
    let own_subjects: Vec<String> = (0..60).map(|i| format!("s-{}", 2000 + 2 * i)).collect();
    let mut extra: Vec<E> =
        team_subjects.iter().chain(&own_subjects).map(|s| subject(s, &[], false, (40, 40))).collect();
    let team_refs: Vec<&str> = team_subjects.iter().map(String::as_str).collect();
    let own_refs: Vec<&str> = own_subjects.iter().map(String::as_str).collect();
    extra.push(case("c-team", &team_refs, &["bob"], &["north"]));
    extra.push(case("c-alice", &own_refs, &["alice"], &[]));
    for (i, kind) in extra.into_iter().enumerate() {
        view.apply(pb::EntityChange {
            version: 1000 + i as u64,
            entity: Some(pb::Entity { kind: Some(kind) }),
            deleted: String::new(),
        });
    }
    const DAY: i64 = 24 * 60 * MINUTE;
    let mut accesses = Vec::new();
    for day in 0..3 {
        for i in 0..3 {
            let t = T0 + day * DAY + i * MINUTE;
            accesses.push(access(t, "lena", &team_subjects[(day * 3 + i) as usize], "c-team"));
            accesses.push(access(t, "alice", &own_subjects[i as usize], "c-alice"));
        }
    }
    for i in 0..45 {
        accesses.push(access(T0 + 3 * DAY + i * MINUTE, "lena", &team_subjects[i as usize], "c-team"));
        accesses.push(access(T0 + 3 * DAY + i * MINUTE, "alice", &own_subjects[i as usize], "c-alice"));
    }
    let mut config = DetectionsConfig::default();
    config.volume.enabled = false;
    config.off_hours.enabled = false;
    let events = enriched(&view, &config, &accesses);
    let out = Engine::new(config.clone()).process(&events);
    assert_eq!(only(&out.alerts), vec![("bulk-collection", "lena".to_string())]);
    let alert = &out.alerts[0];
    assert!(alert.explanation.contains("gathered 40 records today"), "{}", alert.explanation);
    assert!(alert.explanation.contains("usual 3.0 a day over their last 3 active days"), "{}", alert.explanation);
    assert_eq!(alert.evidence.len(), quis_sentinel::detect::MAX_EVIDENCE);
    assert!(alert.evidence.iter().all(|e| events[e.index as usize].actor == "lena"));
    assert!(!alert.explanation.contains("s-"), "no subject id in an alert");

    // Above her own baseline but not above min_records: nothing; and off, nothing.
    let mut quiet = config.clone();
    quiet.bulk_collection.min_records = 46;
    assert!(Engine::new(quiet).process(&events).alerts.is_empty());
    config.bulk_collection.enabled = false;
    assert!(Engine::new(config).process(&events).alerts.is_empty());
}
