//! The simulator's own logic on a small configuration: the organization, the
//! legitimate days and the planted incidents are deterministic per seed and
//! well-formed (legitimate work is always covered by an assigned open case),
//! and scoring matches alerts to incidents by actor, evidence and time.
use std::collections::{BTreeSet, HashSet};

use quis_proto::sentinel::{Alert, Evidence, Incident as SentinelIncident};
use quis_simulate::{
    incidents::{self, Incident, IncidentKind},
    org::{CasePurpose, Compartment, Org, OrgParams, StaffRole, TeamKind},
    plan::{self, Activity, Op, day_start_ms},
    score::{self, Played},
};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn params(seed: u64) -> OrgParams {
    OrgParams { seed, staff: 120, subjects: 3_000, days: 5 }
}

fn generate(seed: u64) -> (Org, Vec<Activity>, Vec<Incident>, Vec<Activity>) {
    let org = Org::generate(&params(seed));
    let legit = plan::legitimate(&org, &mut ChaCha20Rng::seed_from_u64(seed));
    let (labels, planted) = incidents::plant(&org, 12, &mut ChaCha20Rng::seed_from_u64(seed + 1));
    (org, legit, labels, planted)
}

fn fingerprint(org: &Org, activities: &[Activity]) -> String {
    let people: Vec<_> = org.people.iter().map(|p| (&p.id, &p.family_name, &p.date_of_birth, &p.household)).collect();
    format!("{people:?}{activities:?}")
}

#[test]
fn the_same_seed_gives_the_same_organization_and_days() {
    let (org, legit, labels, planted) = generate(7);
    let (again, legit_again, labels_again, planted_again) = generate(7);
    assert_eq!(fingerprint(&org, &legit), fingerprint(&again, &legit_again));
    assert_eq!(format!("{labels:?}{planted:?}"), format!("{labels_again:?}{planted_again:?}"));
    let (other, other_legit, ..) = generate(8);
    assert_ne!(fingerprint(&org, &legit), fingerprint(&other, &other_legit));
}

#[test]
fn the_organization_has_every_role_compartment_and_decoys() {
    let org = Org::generate(&params(3));
    assert_eq!(org.staff.len(), 120);
    assert!(org.people.len() >= 3_000);
    for role in [StaffRole::Admin, StaffRole::Investigator, StaffRole::TeamLead, StaffRole::Caseworker] {
        assert!(org.staff.iter().any(|s| s.role == role), "{role:?}");
    }
    assert!(org.staff.iter().filter(|s| s.role == StaffRole::Admin).count() >= 2, "two administrators");
    assert!(org.teams.iter().any(|t| t.kind == TeamKind::NightService));
    for compartment in [Compartment::PublicFigure, Compartment::Politician, Compartment::Protected] {
        assert!(org.people.iter().any(|p| p.compartment == Some(compartment)), "{compartment:?}");
    }
    assert!(org.people.iter().any(|p| p.decoy));
    for s in &org.staff {
        assert_eq!(org.people[s.person].compartment, Some(Compartment::OwnStaff), "staff are subjects too");
    }
    let hosts: HashSet<_> = org.staff.iter().map(|s| s.host).collect();
    assert_eq!(hosts.len(), org.staff.len(), "one workstation each");
    let surnames: Vec<&str> = org.people.iter().map(|p| p.family_name.as_str()).collect();
    let smiths = surnames.iter().filter(|n| **n == "Smith").count();
    assert!(smiths * 20 > surnames.len(), "the commonest surname is very common: {smiths}");
}

#[test]
fn legitimate_work_is_always_covered_by_an_assigned_open_case_in_hours() {
    let (org, legit, ..) = generate(11);
    assert!(legit.windows(2).all(|w| w[0].at_ms <= w[1].at_ms), "sorted by time");
    let mut break_glass = 0;
    for a in &legit {
        let day = (0..org.params.days).rev().find(|&d| a.at_ms >= day_start_ms(d)).expect("within the days");
        assert!(a.incident.is_none());
        assert_eq!(a.host, org.staff[a.actor].host, "from their own workstation");
        let hour = ((a.at_ms - day_start_ms(day)) / 3_600_000) as u32;
        let shift = org.staff[a.actor].shift;
        let in_shift = (0..shift.hours + 3).any(|h| (shift.start_hour + h) % 24 == hour);
        assert!(in_shift, "{} at hour {hour} outside a shift from {}", org.staff[a.actor].id, shift.start_hour);
        let (case, subjects) = match &a.op {
            Op::Search { case, .. } => (*case, org.cases[*case].subjects.clone()),
            Op::Read { case, subject, .. } => (*case, vec![*subject]),
            Op::BreakGlass { subject, justification, end } => {
                assert!(org.ordinary(*subject) && *end && justification.len() >= 20);
                break_glass += 1;
                continue;
            }
            other => panic!("legitimate work never does {other:?}"),
        };
        let c = &org.cases[case];
        assert!(c.open_on(day), "case {} not open on day {day}", c.id);
        assert!(c.staff == a.actor || c.team == org.staff[a.actor].team, "case {} not assigned", c.id);
        for s in subjects {
            assert!(c.subjects.contains(&s) && org.ordinary(s), "subject outside the case or restricted");
        }
    }
    assert!(break_glass >= 1, "an occasional justified break-glass");
    let leads_reading_team_cases = legit.iter().any(|a| {
        org.staff[a.actor].role == StaffRole::TeamLead
            && matches!(a.op, Op::Read { case, .. } if org.cases[case].staff != a.actor)
    });
    assert!(leads_reading_team_cases);
    let night = legit.iter().any(|a| org.teams[org.staff[a.actor].team].kind == TeamKind::NightService);
    assert!(night, "night shifts work");
    assert!(org.cases.iter().any(|c| c.purpose == CasePurpose::TaxpayerService));
}

#[test]
fn incidents_cover_every_kind_on_distinct_actors_late_in_the_run() {
    let (org, _, labels, planted) = generate(5);
    let kinds: BTreeSet<IncidentKind> = labels.iter().map(|i| i.kind).collect();
    assert_eq!(kinds.len(), IncidentKind::PLAYED.len(), "{kinds:?}");
    assert_eq!(labels.len(), 12);
    for kind in kinds {
        let n = labels.iter().filter(|i| i.kind == kind).count();
        assert!((1..=2).contains(&n), "{kind:?} planted {n} times");
    }
    // Fewer than the kinds: as many distinct kinds.
    let (few, _) = incidents::plant(&org, 5, &mut ChaCha20Rng::seed_from_u64(9));
    assert_eq!(few.iter().map(|i| i.kind).collect::<BTreeSet<_>>().len(), 5);
    let actors: HashSet<&str> = labels.iter().map(|i| i.actor.as_str()).collect();
    assert_eq!(actors.len(), labels.len(), "one incident per actor");
    for (n, label) in labels.iter().enumerate() {
        let own: Vec<&Activity> = planted.iter().filter(|a| a.incident == Some(n)).collect();
        assert!(!own.is_empty(), "{label:?} has activities");
        assert!(label.start_ms >= day_start_ms(org.params.days / 2) || label.kind == IncidentKind::BulkCollection);
        assert!(own.iter().all(|a| (label.start_ms..=label.end_ms).contains(&a.at_ms)));
    }
    let stolen = labels.iter().position(|i| i.kind == IncidentKind::StolenCredentials).expect("stolen");
    let hosts: HashSet<_> = planted.iter().filter(|a| a.incident == Some(stolen)).map(|a| a.host).collect();
    let victim = planted.iter().find(|a| a.incident == Some(stolen)).map(|a| a.actor).expect("victim");
    assert!(hosts.len() >= 3 && !hosts.contains(&org.staff[victim].host), "new hosts at other sites");
}

fn alert(name: &str, detection: &str, actor: &str, at_ms: i64, evidence: &[u64]) -> Alert {
    Alert {
        name: format!("alerts/{name}"),
        detection_id: detection.into(),
        actor: actor.into(),
        event_time: Some(prost_types::Timestamp { seconds: at_ms / 1000, nanos: 0 }),
        evidence: evidence.iter().map(|&index| Evidence { index, ..Default::default() }).collect(),
        explanation: format!("{detection} on {actor}"),
        ..Default::default()
    }
}

fn incident(kind: IncidentKind, actor: &str, start_ms: i64, indices: &[u64]) -> Incident {
    Incident {
        kind,
        actor: actor.into(),
        start_ms,
        end_ms: start_ms + 600_000,
        ledger_indices: indices.to_vec(),
        description: String::new(),
    }
}

#[test]
fn scoring_matches_alerts_by_actor_evidence_and_time() {
    let t = day_start_ms(3) + 10 * 3_600_000;
    let incidents = vec![
        incident(IncidentKind::Enumeration, "emp-0001", t, &[100, 101]),
        incident(IncidentKind::DecoyTouched, "emp-0002", t, &[200]),
        incident(IncidentKind::SnoopingCelebrity, "emp-0003", t, &[300]),
        incident(IncidentKind::LedgerTampering, "", t + 7_200_000, &[300]),
    ];
    let alerts = vec![
        // On the incident's evidence, even two days later.
        alert("a1", "enumeration", "emp-0001", t + 2 * 86_400_000, &[101]),
        // Within the window on the same actor.
        alert("a2", "honeytoken", "emp-0002", t + 120_000, &[999]),
        // The right time, the wrong actor: a false positive.
        alert("a3", "relationship", "emp-0009", t + 60_000, &[300]),
        // The right actor, long after, other evidence: a false positive.
        alert("a4", "off-hours", "emp-0003", t + 86_400_000, &[555]),
        alert("a5", "ledger-integrity", "", t + 7_205_000, &[]),
    ];
    let played = Played {
        seed: 1,
        staff: 10,
        subjects: 100,
        days: 5,
        staff_days: 50,
        calls: 1_000,
        denied: 10,
        integrity_alert_wall_secs: Some(1.5),
        wall_detection_lag: None,
    };
    // One sentinel incident per alert: two of them belong to no planted incident.
    let grouped = |name: &str, actor: &str, alerts: &[&str]| SentinelIncident {
        name: format!("incidents/{name}"),
        actor: actor.into(),
        alerts: alerts.iter().map(|a| format!("alerts/{a}")).collect(),
        ..Default::default()
    };
    let sentinel_incidents = [
        grouped("i1", "emp-0001", &["a1"]),
        grouped("i2", "emp-0002", &["a2"]),
        grouped("i3", "emp-0009", &["a3"]),
        grouped("i4", "emp-0003", &["a4"]),
        grouped("i5", "", &["a5"]),
    ];
    let raised = score::Raised { alerts: &alerts, incidents: &sentinel_incidents };
    let report = score::score(played, incidents, raised, 0.97);
    assert_eq!(report.alerts, 5);
    assert_eq!(report.alerts_matched, 3);
    assert!((report.alert_precision - 0.6).abs() < 1e-9);
    assert_eq!((report.sentinel_incidents, report.sentinel_incidents_matched), (5, 3));
    assert!((report.incident_precision - 0.6).abs() < 1e-9);
    assert!((report.incidents_per_1000_staff_days - 100.0).abs() < 1e-9);
    let unmatched: Vec<&str> = report.unmatched_incidents.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(unmatched, ["incidents/i3", "incidents/i4"]);
    assert!((report.recall - 0.75).abs() < 1e-9, "the celebrity snooping went unseen");
    assert!((report.alerts_per_1000_staff_days - 100.0).abs() < 1e-9);
    assert_eq!(report.recall_by_kind[&IncidentKind::SnoopingCelebrity].found, 0);
    assert_eq!(report.recall_by_kind[&IncidentKind::LedgerTampering].found, 1);
    let decoy = report.incidents.iter().find(|o| o.incident.kind == IncidentKind::DecoyTouched).expect("decoy");
    assert_eq!(decoy.lag_secs, Some(120.0));
    assert_eq!(decoy.detections, vec!["honeytoken".to_string()]);
    let unmatched: Vec<&str> = report.unmatched_alerts.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(unmatched, ["alerts/a3", "alerts/a4"]);
    let lag = report.detection_lag.as_ref().expect("lag");
    assert!(lag.p50_secs <= lag.max_secs);
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(json["recall_by_kind"]["decoy-touched"]["recall"], 1.0);
}

#[test]
fn wall_lag_runs_from_the_answer_of_the_last_evidence_entry_to_the_alert() {
    use std::time::{Duration, Instant};
    let t0 = Instant::now();
    let ms = |n: u64| t0 + Duration::from_millis(n);
    let answered = [(10, ms(0)), (11, ms(5)), (12, ms(100))].into_iter().collect();
    let received = [
        // Its last evidence entry, 11, was answered at 5 ms.
        (alert("a1", "volume", "emp-0001", 0, &[10, 11]), ms(25)),
        (alert("a2", "honeytoken", "emp-0002", 0, &[12]), ms(400)),
        // Arrived before its caller had the answer: no lag.
        (alert("a3", "off-hours", "emp-0003", 0, &[12]), ms(90)),
        // Not on a played call, or the integrity monitor's: not counted.
        (alert("a4", "off-hours", "emp-0003", 0, &[99]), ms(90)),
        (alert("a5", "ledger-integrity", "", 0, &[10]), ms(90)),
    ];
    let lag = score::wall_lag(&received, &answered).expect("three alerts timed");
    assert_eq!(lag.alerts, 3);
    assert_eq!((lag.p50_ms, lag.p99_ms, lag.max_ms), (20.0, 300.0, 300.0));
}
