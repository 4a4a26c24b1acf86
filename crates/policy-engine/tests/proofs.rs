//! Proofs about the default pack, over randomized worlds (proptest) and every world of a
//! small exhaustive family:
//!
//! 1. no staff member is ever allowed to touch a subject in a restricted compartment
//!    without a clearance for every compartment of it or an active break-glass grant on
//!    it (starting a break-glass is the one action that needs neither);
//! 2. nothing but administration is ever allowed without a purpose;
//! 3. every forbid wins over every permit: whenever a forbid of the pack holds, the pack
//!    denies and names exactly those forbids; whenever the pack allows, no forbid holds
//!    and the permits alone decide the same way;
//! 4. inactive staff and declared conflicts are never allowed; a break-glass access
//!    always carries at least a high alert; public reasons never reveal compartments
//!    or decoys.
//!
//! The oracle for each property is computed from the world itself, not from the index.

mod common;

use std::sync::LazyLock;

use cedar_policy::Effect;
use common::*;
use proptest::prelude::*;
use quis_policy_engine::model::*;
use quis_policy_engine::{AlertLevel, CheckRequest, Decision, Engine, EntityIndex, PolicySet};

static PACK: LazyLock<PolicySet> = LazyLock::new(PolicySet::default);
static FORBIDS: LazyLock<PolicySet> = LazyLock::new(|| only(Effect::Forbid));
static PERMITS: LazyLock<PolicySet> = LazyLock::new(|| only(Effect::Permit));

fn only(effect: Effect) -> PolicySet {
    let text: Vec<String> = PACK.cedar().policies().filter(|p| p.effect() == effect).map(ToString::to_string).collect();
    PolicySet::compile(&text.join("\n")).unwrap()
}

const DATA_ACTIONS: &[&str] = &["read", "export", "update", "record_access", "read_history", "break_glass"];
const ROLES: &[&str] = &["caseworker", "team_lead", "investigator", "privacy_officer"];

#[derive(Clone, Debug)]
struct World {
    entities: Vec<Entity>,
}

impl World {
    fn staff(&self, id: &str) -> Option<&Staff> {
        self.entities.iter().find_map(|e| match e {
            Entity::Staff(s) if s.id.as_str() == id => Some(s),
            _ => None,
        })
    }

    fn subject(&self, id: &str) -> Option<&Subject> {
        self.entities.iter().find_map(|e| match e {
            Entity::Subject(s) if s.id.as_str() == id => Some(s),
            _ => None,
        })
    }

    fn active_break_glass(&self, staff: &str, subject: &str, time: Timestamp) -> bool {
        self.entities.iter().any(|e| match e {
            Entity::Grant(g) => {
                g.kind == GrantKind::BreakGlass
                    && g.staff.as_str() == staff
                    && g.subject.as_str() == subject
                    && g.is_active_at(time)
            }
            _ => false,
        })
    }

    fn conflicted(&self, staff: &str, subject: &str) -> bool {
        self.entities
            .iter()
            .any(|e| matches!(e, Entity::Conflict(c) if c.staff.as_str() == staff && c.subject.as_str() == subject))
    }
}

/// Checks every property for one request; returns the pack's decision.
fn assert_properties(world: &World, index: &EntityIndex, req: &CheckRequest) -> Decision {
    let d = Engine::check(&PACK, index, req).unwrap_or_else(|e| panic!("refused {req:?}: {e}"));
    let forbids = Engine::check(&FORBIDS, index, req).unwrap();
    let permits = Engine::check(&PERMITS, index, req).unwrap();
    let staff = req.principal.strip_prefix("staff/").and_then(|s| world.staff(s));
    let subject = req.resource.strip_prefix("subjects/").and_then(|s| world.subject(s.split('/').next().unwrap_or("")));
    let time = req.context.time;

    // 3. Forbids win.
    assert!(!forbids.allowed);
    if !forbids.determining_policies.is_empty() {
        assert!(!d.allowed, "a forbid held but the pack allowed: {req:?}\n{}", d.full_reason);
        assert_eq!(d.determining_policies, forbids.determining_policies, "{req:?}");
    }
    if d.allowed {
        assert!(forbids.determining_policies.is_empty());
        assert!(permits.allowed);
        assert_eq!(d.determining_policies, permits.determining_policies);
        for id in &d.determining_policies {
            assert_eq!(PACK.meta(&cedar_policy::PolicyId::new(id)).unwrap().effect, Effect::Permit);
        }
    }

    if !d.allowed {
        if let Some(word) = reveals_secret(&d.public_reason) {
            panic!("public reason reveals {word:?}: {:?} for {req:?}", d.public_reason);
        }
        return d;
    }

    // 2. A purpose, except for administration.
    if !req.action.starts_with("admin_") {
        assert!(req.context.purpose.is_some(), "allowed without a purpose: {req:?}");
    }

    if let Some(staff) = staff {
        // 4. Inactive staff, conflicts.
        assert_eq!(staff.status, StaffStatus::Active, "inactive staff allowed: {req:?}");
        if let Some(subject) = subject {
            assert!(!world.conflicted(staff.id.as_str(), subject.id.as_str()), "conflict allowed: {req:?}");
            assert!(!subject.decoy, "decoy allowed: {req:?}");
            // 1. Restricted compartments.
            let cleared = subject.compartments.iter().all(|c| staff.clearances.contains(c));
            let glass = world.active_break_glass(staff.id.as_str(), subject.id.as_str(), time);
            if req.action != "break_glass" {
                assert!(
                    cleared || glass,
                    "restricted subject without clearance or break-glass: {req:?}\n{}",
                    d.full_reason
                );
            }
        }
        // 4. Break-glass always alerts.
        if req.action == "break_glass" || d.obligations.break_glass_expires_at.is_some() {
            assert!(d.obligations.alert >= AlertLevel::High, "break-glass without alert: {req:?}");
        }
        if req.action == "break_glass" {
            let justified = req.context.justification.as_deref().is_some_and(|j| !j.trim().is_empty());
            assert!(justified, "break-glass without a justification: {req:?}");
        }
    }
    d
}

// ------------------------------------------------------------------ random worlds

const COMPARTMENTS: &[Compartment] =
    &[Compartment::PublicFigure, Compartment::Politician, Compartment::OwnStaff, Compartment::Protected];

fn subset<T: Clone + std::fmt::Debug + 'static>(all: &'static [T]) -> impl Strategy<Value = Vec<T>> {
    proptest::collection::vec(any::<bool>(), all.len())
        .prop_map(move |mask| all.iter().zip(mask).filter(|(_, m)| *m).map(|(v, _)| v.clone()).collect())
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn name(prefix: &str, i: usize) -> String {
    format!("{prefix}{i}")
}

fn world_strategy() -> impl Strategy<Value = World> {
    let teams = (prop::option::of(Just(0usize)), prop::option::of(0usize..2));
    let staff = proptest::collection::vec(
        (0usize..3, subset(ROLES), subset(COMPARTMENTS), prop::sample::select(StaffStatus::ALL)),
        3,
    );
    let subjects = proptest::collection::vec((subset(COMPARTMENTS), prop::bool::weighted(0.2)), 3);
    let cases = proptest::collection::vec(
        (
            prop::sample::select(Purpose::ALL),
            prop::sample::select(&[CaseStatus::Open, CaseStatus::Open, CaseStatus::Closed][..]),
            subset(&[0usize, 1, 2]),
            subset(&[0usize, 1, 2]),
            subset(&[0usize, 1, 2]),
        ),
        0..4,
    );
    let conflicts = proptest::collection::vec((0usize..3, 0usize..3), 0..2);
    let grants = proptest::collection::vec(
        (
            prop::sample::select(&[GrantKind::BreakGlass, GrantKind::Temporary][..]),
            0usize..3,
            0usize..3,
            subset(Purpose::ALL).prop_filter("a grant has a purpose", |p| !p.is_empty()),
            -3i64..3,
            1i64..3,
        ),
        0..4,
    );
    (teams, staff, subjects, cases, conflicts, grants).prop_map(|(teams, staff, subjects, cases, conflicts, grants)| {
        let mut e = vec![
            team("t0", None),
            team("t1", teams.0.map(|_| "t0")),
            team("t2", teams.1.map(|p| if p == 0 { "t0" } else { "t1" })),
        ];
        for (i, (t, roles, clearances, status)) in staff.into_iter().enumerate() {
            e.push(common::staff(&name("p", i), &name("t", t), &roles, &clearances, status));
        }
        for (i, (compartments, decoy)) in subjects.into_iter().enumerate() {
            e.push(subject(&name("u", i), &compartments, decoy));
        }
        for (i, (purpose, status, subjects, staff, teams)) in cases.into_iter().enumerate() {
            let s: Vec<String> = subjects.iter().map(|j| name("u", *j)).collect();
            let p: Vec<String> = staff.iter().map(|j| name("p", *j)).collect();
            let t: Vec<String> = teams.iter().map(|j| name("t", *j)).collect();
            e.push(case(&name("c", i), purpose, status, &refs(&s), &refs(&p), &refs(&t)));
        }
        for (i, (p, u)) in conflicts.into_iter().enumerate() {
            e.push(conflict(&name("k", i), &name("p", p), &name("u", u)));
        }
        for (i, (kind, p, u, purposes, start, length)) in grants.into_iter().enumerate() {
            let starts = T0 + start * HOUR;
            e.push(grant(&name("g", i), kind, &name("p", p), &name("u", u), &purposes, starts, starts + length * HOUR));
        }
        World { entities: e }
    })
}

fn request_strategy() -> impl Strategy<Value = CheckRequest> {
    (
        prop_oneof![8 => (0usize..3).prop_map(|i| format!("staff/p{i}")), 1 => (0usize..3).prop_map(|i| format!("subjects/u{i}"))],
        prop::sample::select(DATA_ACTIONS),
        0usize..3,
        prop::option::weighted(0.85, prop::sample::select(Purpose::ALL)),
        prop::option::weighted(0.4, 0usize..5),
        prop::option::of(prop::sample::select(&["urgent: caller in danger", " "][..])),
        -4i64..4,
    )
        .prop_map(|(principal, action, subject, purpose, case, justification, offset)| {
            let action = if principal.starts_with("subjects/") { "read_history" } else { action };
            let mut r = request(&principal, action, &format!("subjects/u{subject}"), purpose.map(|p| p.as_str()));
            r.context.case = case.map(|c| format!("cases/c{c}"));
            r.context.justification = justification.map(Into::into);
            r.context.time = T0 + offset * HOUR;
            r
        })
}

fn search_strategy() -> impl Strategy<Value = CheckRequest> {
    (
        0usize..3,
        prop_oneof![Just("subjects".to_string()), (0usize..4).prop_map(|c| format!("cases/c{c}"))],
        prop::option::of(prop::sample::select(Purpose::ALL)),
    )
        .prop_map(|(p, resource, purpose)| {
            request(&format!("staff/p{p}"), "search", &resource, purpose.map(|p| p.as_str()))
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn the_pack_keeps_its_promises(world in world_strategy(), requests in proptest::collection::vec(request_strategy(), 1..24), searches in proptest::collection::vec(search_strategy(), 0..4)) {
        let index = index_of(world.entities.clone());
        for req in requests.iter().chain(&searches) {
            assert_properties(&world, &index, req);
        }
    }

    /// Whatever a restricted subject's denial says to the caller, it is what the same
    /// request about the same subject, unrestricted, says (or the generic refusal).
    #[test]
    fn public_reasons_do_not_reveal_restriction(world in world_strategy(), req in request_strategy()) {
        let index = index_of(world.entities.clone());
        let d = Engine::check(&PACK, &index, &req).unwrap();
        let subject_id = req.resource.trim_start_matches("subjects/").to_string();
        let Some(subject) = world.subject(&subject_id).cloned() else { return Ok(()) };
        if d.allowed || (subject.compartments.is_empty() && !subject.decoy) {
            return Ok(());
        }
        let plain = Subject { compartments: vec![], decoy: false, ..subject };
        index.apply(EntityChange::Upsert(Entity::Subject(plain))).unwrap();
        let unrestricted = Engine::check(&PACK, &index, &req).unwrap();
        let expected = if unrestricted.allowed { quis_policy_engine::engine::NOT_AUTHORIZED.to_string() } else { unrestricted.public_reason };
        prop_assert_eq!(d.public_reason, expected);
    }
}

// ------------------------------------------------------------------ exhaustive worlds

/// Every combination of: staff status (3) × clearance (none, POLITICIAN) × subject
/// compartments (none, POLITICIAN, PROTECTED) × decoy (2) × case (none, open assigned
/// matching, open assigned other purpose, closed, open unassigned) × grant (none, active
/// break-glass, expired break-glass, active temporary) × conflict (2); and in each world
/// every action × purpose (none, CASEWORK, EMERGENCY, AUDIT) × justification (2).
#[test]
fn every_small_world() {
    use Compartment::*;
    let statuses = StaffStatus::ALL;
    let clearances: &[&[Compartment]] = &[&[], &[Politician]];
    let compartments: &[&[Compartment]] = &[&[], &[Politician], &[Protected]];
    let mut worlds = 0;
    let mut checks = 0;
    let mut allowed = 0;
    for &status in statuses {
        for &clearance in clearances {
            for &comps in compartments {
                for decoy in [false, true] {
                    for case_shape in 0..5 {
                        for grant_shape in 0..4 {
                            for conflicted in [false, true] {
                                let mut e = vec![
                                    team("t-root", None),
                                    team("t-leaf", Some("t-root")),
                                    staff("p", "t-leaf", &["caseworker", "privacy_officer"], clearance, status),
                                    subject("u", comps, decoy),
                                ];
                                match case_shape {
                                    1 => {
                                        e.push(case("c", Purpose::Casework, CaseStatus::Open, &["u"], &[], &["t-root"]))
                                    }
                                    2 => e.push(case("c", Purpose::Compliance, CaseStatus::Open, &["u"], &["p"], &[])),
                                    3 => e.push(case("c", Purpose::Casework, CaseStatus::Closed, &["u"], &["p"], &[])),
                                    4 => e.push(case(
                                        "c",
                                        Purpose::Casework,
                                        CaseStatus::Open,
                                        &["u"],
                                        &["q"],
                                        &["t-other"],
                                    )),
                                    _ => {}
                                }
                                match grant_shape {
                                    1 => e.push(grant(
                                        "g",
                                        GrantKind::BreakGlass,
                                        "p",
                                        "u",
                                        &[Purpose::Emergency],
                                        T0 - HOUR,
                                        T0 + HOUR,
                                    )),
                                    2 => e.push(grant(
                                        "g",
                                        GrantKind::BreakGlass,
                                        "p",
                                        "u",
                                        &[Purpose::Emergency],
                                        T0 - 2 * HOUR,
                                        T0,
                                    )),
                                    3 => e.push(grant(
                                        "g",
                                        GrantKind::Temporary,
                                        "p",
                                        "u",
                                        &[Purpose::Audit, Purpose::Casework],
                                        T0 - HOUR,
                                        T0 + HOUR,
                                    )),
                                    _ => {}
                                }
                                if conflicted {
                                    e.push(conflict("k", "p", "u"));
                                }
                                let world = World { entities: e };
                                let index = index_of(world.entities.clone());
                                worlds += 1;
                                for action in DATA_ACTIONS {
                                    for purpose in [None, Some("CASEWORK"), Some("EMERGENCY"), Some("AUDIT")] {
                                        for justification in [None, Some("urgent")] {
                                            let mut req = request("staff/p", action, "subjects/u", purpose);
                                            req.context.justification = justification.map(Into::into);
                                            checks += 1;
                                            if assert_properties(&world, &index, &req).allowed {
                                                allowed += 1;
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    assert_eq!(worlds, 3 * 2 * 3 * 2 * 5 * 4 * 2);
    // The family must exercise allows, not only denials, for the proof to mean anything.
    assert!(allowed > 100, "only {allowed} of {checks} checks allowed");
    println!("{worlds} worlds, {checks} checks, {allowed} allowed");
}
