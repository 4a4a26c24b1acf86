//! The detections, table-driven, over real ledger entries: each case builds
//! `LedgerEntry` messages with chosen sequencing times, encodes them as the
//! ledger does, decodes them as the consumer does, and runs the engine.
use prost::Message;
use quis_proto::ledger::{AccessEvent, Action, Actor, Commitment, Decision, Event, LedgerEntry, Purpose, event::Kind};
use quis_sentinel::{
    config::DetectionsConfig,
    detect::{Engine, NewAlert, NewReview},
    event::{EnrichedAccess, decode},
};

/// Monday 2026-11-23 00:00 UTC, in milliseconds.
const MONDAY: i64 = 1_795_392_000_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

#[derive(Clone)]
struct Ev {
    at: i64,
    actor: &'static str,
    host: String,
    action: Action,
    decision: Decision,
    subject: u32,
    results: u32,
    justified: bool,
}

fn ev(at: i64, actor: &'static str) -> Ev {
    Ev {
        at,
        actor,
        host: "10.0.0.1".into(),
        action: Action::Read,
        decision: Decision::Allow,
        subject: 0,
        results: 0,
        justified: false,
    }
}

impl Ev {
    fn subject(mut self, s: u32) -> Self {
        self.subject = s;
        self
    }
    fn deny(mut self) -> Self {
        self.decision = Decision::Deny;
        self
    }
    fn host(mut self, h: &str) -> Self {
        self.host = h.into();
        self
    }
    fn export(mut self, results: u32) -> Self {
        self.action = Action::Export;
        self.results = results;
        self
    }
    fn break_glass(mut self, justified: bool) -> Self {
        self.action = Action::BreakGlassStart;
        self.justified = justified;
        self
    }
}

fn digest(n: u32) -> Vec<u8> {
    let mut d = vec![0u8; 32];
    d[..4].copy_from_slice(&n.to_be_bytes());
    d[31] = 1;
    d
}

/// Encodes the events as ledger entries (indices from 0), decodes them as the consumer does.
fn entries(events: &[Ev]) -> Vec<EnrichedAccess> {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let access = AccessEvent {
                actor: Some(Actor {
                    principal: e.actor.into(),
                    kind: "staff".into(),
                    source_address: e.host.clone(),
                    ..Default::default()
                }),
                action: e.action as i32,
                subject: Some(Commitment { digest: digest(e.subject) }),
                purpose: if e.action == Action::BreakGlassStart { Purpose::Emergency } else { Purpose::Casework }
                    as i32,
                case: "cases/c-1".into(),
                justification: e.justified.then(|| Commitment { digest: digest(999_999) }),
                decision: e.decision as i32,
                break_glass_grant: if e.action == Action::BreakGlassStart {
                    format!("grants/g-{i}")
                } else {
                    String::new()
                },
                result_count: e.results,
                ..Default::default()
            };
            let entry = LedgerEntry {
                sequence_time: Some(prost_types::Timestamp {
                    seconds: e.at.div_euclid(1000),
                    nanos: (e.at.rem_euclid(1000) * 1_000_000) as i32,
                }),
                appended_by: "vault".into(),
                event: Some(Event { kind: Some(Kind::Access(access)) }),
            };
            let observed = decode(i as u64, &entry.encode_to_vec()).expect("decodes");
            EnrichedAccess::from_observed(&observed).expect("an access")
        })
        .collect()
}

/// A working week of office hours for `actor`: `per_day` distinct subjects a day, 09:00-17:00.
fn routine(actor: &'static str, days: i64, per_day: u32) -> Vec<Ev> {
    let mut out = Vec::new();
    for d in 0..days {
        for k in 0..per_day {
            let at = MONDAY + d * DAY + 9 * HOUR + i64::from(k) * (8 * HOUR / i64::from(per_day));
            out.push(ev(at, actor).subject(d as u32 * 1000 + k));
        }
    }
    out
}

struct Case {
    name: &'static str,
    events: Vec<Ev>,
    /// (detection, actor) of every alert expected, in order.
    alerts: Vec<(&'static str, &'static str)>,
    reviews: usize,
}

fn run(config: DetectionsConfig, events: &[Ev]) -> (Vec<NewAlert>, Vec<NewReview>) {
    let mut engine = Engine::new(config);
    let out = engine.process(&entries(events));
    (out.alerts, out.reviews)
}

fn cases() -> Vec<Case> {
    let after_routine = MONDAY + 10 * DAY;
    vec![
        Case {
            name: "ten denials within ten minutes are enumeration",
            events: (0..10).map(|i| ev(MONDAY + 9 * HOUR + i * 30_000, "mallory").subject(i as u32).deny()).collect(),
            alerts: vec![("enumeration", "mallory")],
            reviews: 0,
        },
        Case {
            name: "ten denials spread over a day are not",
            events: (0..10).map(|i| ev(MONDAY + i * 2 * HOUR, "carol").subject(i as u32).deny()).collect(),
            alerts: vec![],
            reviews: 0,
        },
        Case {
            name: "a day far above the actor's own baseline is volume",
            events: {
                let mut e = routine("bob", 5, 10);
                e.extend((0..40).map(|k| ev(after_routine + 9 * HOUR + k * 60_000, "bob").subject(90_000 + k as u32)));
                e
            },
            alerts: vec![("volume", "bob")],
            reviews: 0,
        },
        Case {
            name: "a busy day within the baseline is not",
            events: {
                let mut e = routine("bob", 5, 20);
                e.extend((0..25).map(|k| ev(after_routine + 9 * HOUR + k * 60_000, "bob").subject(90_000 + k as u32)));
                e
            },
            alerts: vec![],
            reviews: 0,
        },
        Case {
            name: "activity at 03:00 for an office-hours actor is off-hours, once per hour",
            events: {
                let mut e = routine("dora", 25, 10);
                e.push(ev(MONDAY + 30 * DAY + 3 * HOUR, "dora").subject(7));
                e.push(ev(MONDAY + 30 * DAY + 3 * HOUR + 60_000, "dora").subject(8));
                e
            },
            alerts: vec![("off-hours", "dora")],
            reviews: 0,
        },
        Case {
            name: "an export of 600 results is bulk export",
            events: vec![ev(MONDAY + 10 * HOUR, "erin").export(600)],
            alerts: vec![("bulk-export", "erin")],
            reviews: 0,
        },
        Case {
            name: "an export far above the actor's usual size is bulk export",
            events: {
                let mut e: Vec<Ev> = (0..20).map(|i| ev(MONDAY + 9 * HOUR + i * HOUR / 4, "erin").export(5)).collect();
                e.push(ev(MONDAY + 15 * HOUR, "erin").export(120));
                e
            },
            alerts: vec![("bulk-export", "erin")],
            reviews: 0,
        },
        Case {
            name: "usual exports are not",
            events: (0..30).map(|i| ev(MONDAY + 9 * HOUR + i * HOUR / 4, "erin").export(40)).collect(),
            alerts: vec![],
            reviews: 0,
        },
        Case {
            name: "three hosts within fifteen minutes are credential misuse",
            events: vec![
                ev(MONDAY + 10 * HOUR, "fred").host("10.0.0.1"),
                ev(MONDAY + 10 * HOUR + 60_000, "fred").host("198.51.100.7"),
                ev(MONDAY + 10 * HOUR + 120_000, "fred").host("203.0.113.9"),
            ],
            alerts: vec![("credential-misuse", "fred")],
            reviews: 0,
        },
        Case {
            name: "a new host after an established history is credential misuse (new host)",
            events: {
                let mut e = routine("gina", 6, 10);
                e.push(ev(MONDAY + 7 * DAY + 10 * HOUR, "gina").host("203.0.113.50").subject(5));
                e
            },
            alerts: vec![("credential-misuse", "gina")],
            reviews: 0,
        },
        Case {
            name: "a justified break-glass is a review, not an alert",
            events: vec![ev(MONDAY + 10 * HOUR, "hank").break_glass(true)],
            alerts: vec![],
            reviews: 1,
        },
        Case {
            name: "a break-glass without justification is abuse, and still a review",
            events: vec![ev(MONDAY + 10 * HOUR, "hank").break_glass(false)],
            alerts: vec![("break-glass-abuse", "hank")],
            reviews: 1,
        },
        Case {
            name: "three break-glass starts within a week are abuse",
            events: (0..3).map(|d| ev(MONDAY + d * DAY + 10 * HOUR, "iris").break_glass(true)).collect(),
            alerts: vec![("break-glass-abuse", "iris")],
            reviews: 3,
        },
    ]
}

#[test]
fn detections_table() {
    for case in cases() {
        let (alerts, reviews) = run(DetectionsConfig::default(), &case.events);
        let got: Vec<(&str, &str)> = alerts.iter().map(|a| (a.detection, a.actor.as_str())).collect();
        assert_eq!(got, case.alerts, "{}: {alerts:#?}", case.name);
        assert_eq!(reviews.len(), case.reviews, "{}", case.name);
        for a in &alerts {
            assert!(!a.evidence.is_empty(), "{}: an alert without evidence", case.name);
            assert!(a.explanation.contains(&a.actor), "{}: {}", case.name, a.explanation);
            let last = a.evidence.iter().map(|e| e.index).max().unwrap_or_default();
            assert!((last as usize) < case.events.len(), "{}", case.name);
        }
    }
}

#[test]
fn disabled_detections_stay_quiet() {
    let mut config = DetectionsConfig::default();
    config.enumeration.enabled = false;
    let events: Vec<Ev> = (0..20).map(|i| ev(MONDAY + i * 1000, "mallory").subject(i as u32).deny()).collect();
    assert!(run(config, &events).0.is_empty());
}

#[test]
fn state_survives_a_save_and_restore() {
    let config = DetectionsConfig::default();
    let events: Vec<Ev> = (0..10).map(|i| ev(MONDAY + i * 1000, "mallory").subject(i as u32).deny()).collect();
    let all = entries(&events);
    let mut engine = Engine::new(config.clone());
    let first = engine.process(&all[..6]);
    assert!(first.alerts.is_empty());
    let mut restored = Engine::restore(config, first.changed).expect("restore");
    let second = restored.process(&all[6..]);
    assert_eq!(second.alerts.len(), 1);
    assert_eq!(second.alerts[0].evidence.len(), 10);
}

#[test]
fn tracked_actors_are_bounded() {
    let config = DetectionsConfig { max_actors: 2, ..DetectionsConfig::default() };
    let actors = ["a1", "a2", "a3"];
    let events: Vec<Ev> = actors.iter().enumerate().map(|(i, a)| ev(MONDAY + i as i64 * 1000, a)).collect();
    let out = Engine::new(config).process(&entries(&events));
    assert_eq!(out.forgotten, vec!["a1".to_string()]);
    assert!(out.changed.iter().all(|(a, _)| a != "a1"));
}

/// An actor's saved state after a long history is no larger than after a short one of the same
/// shape: windows, caps and per-day sets bound it, not the number of events. The history uses
/// everything that is remembered: a new host and subject each time, denials, exports, break-glass.
#[test]
fn saved_state_is_bounded_by_configuration_not_history() {
    let history = |days: i64| -> Vec<Ev> {
        let mut out = Vec::new();
        for i in 0..days * 400 {
            let at = MONDAY + (i / 400) * DAY + 8 * HOUR + (i % 400) * 60_000;
            let mut e =
                ev(at, "mallory").subject(i as u32).host(&format!("10.{}.{}.{}", i / 65536, i / 256 % 256, i % 256));
            e = match i % 50 {
                0 => e.export(20),
                1 => e.break_glass(true),
                2..=6 => e.deny(),
                _ => e,
            };
            out.push(e);
        }
        out
    };
    let saved_size = |days: i64| {
        let out = Engine::new(DetectionsConfig::default()).process(&entries(&history(days)));
        out.changed.iter().find(|(a, _)| a == "mallory").map(|(_, json)| json.len()).expect("saved")
    };
    let (short, long) = (saved_size(5), saved_size(60));
    assert!(long <= short + short / 10, "{long} bytes after 60 days against {short} after 5");
    assert!(long < 64 * 1024, "{long} bytes");
}

#[test]
fn malformed_configuration_names_the_key() {
    let mut config = quis_sentinel::SentinelConfig::default();
    config.detections.volume.factor = 0.5;
    assert_eq!(quis_sentinel::config::validate(&config).expect_err("refused").key, "detections.volume.factor");
    let mut config = quis_sentinel::SentinelConfig::default();
    config.detections.enumeration.id_walk = quis_sentinel::config::MAX_ID_WALK + 1;
    let refused = quis_sentinel::config::validate(&config).expect_err("a walk longer than it remembers");
    assert_eq!(
        (refused.key.as_str(), refused.rule.as_str()),
        ("detections.enumeration.id_walk", "must be 0 (off) or between 2 and 64")
    );
    let parsed: Result<quis_sentinel::SentinelConfig, _> =
        serde_json::from_str(r#"{"detections": {"enumeration": {"denials_typo": 3}}}"#);
    assert!(parsed.expect_err("refused").to_string().contains("denials_typo"));
    let config = quis_sentinel::SentinelConfig { witness_vkeys: vec!["not a key".into()], ..Default::default() };
    assert_eq!(quis_sentinel::config::validate(&config).expect_err("refused").key, "witness_vkeys[0]");
}
