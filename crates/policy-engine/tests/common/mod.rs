//! Builders shared by the tests and the benchmark.
#![allow(dead_code)] // each test binary uses part of these helpers

use quis_policy_engine::model::*;
use quis_policy_engine::{CheckRequest, EntityIndex, RequestContext};

/// "Now" in the tests: 2027-01-15T08:00:00Z.
pub const T0: Timestamp = 1_799_999_200;
pub const HOUR: Timestamp = 3_600;

pub fn id(s: &str) -> Id {
    Id::new(s).unwrap()
}

pub fn ids(list: &[&str]) -> Vec<Id> {
    list.iter().map(|s| id(s)).collect()
}

pub fn team(name: &str, parent: Option<&str>) -> Entity {
    Entity::Team(Team { id: id(name), site: id("hq"), parent: parent.map(id) })
}

pub fn staff(name: &str, team: &str, roles: &[&str], clearances: &[Compartment], status: StaffStatus) -> Entity {
    Entity::Staff(Staff {
        id: id(name),
        team: id(team),
        site: id("hq"),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        clearances: clearances.to_vec(),
        status,
        surname_key: Some([7; 32]),
        address_key: None,
        household_key: None,
    })
}

pub fn subject(name: &str, compartments: &[Compartment], decoy: bool) -> Entity {
    Entity::Subject(Subject {
        id: id(name),
        compartments: compartments.to_vec(),
        decoy,
        surname_key: Some([9; 32]),
        address_key: Some([10; 32]),
        household_key: None,
    })
}

pub fn case(
    name: &str,
    purpose: Purpose,
    status: CaseStatus,
    subjects: &[&str],
    staff: &[&str],
    teams: &[&str],
) -> Entity {
    Entity::Case(Case {
        id: id(name),
        subjects: ids(subjects),
        assigned_staff: ids(staff),
        assigned_teams: ids(teams),
        status,
        purpose,
    })
}

pub fn conflict(name: &str, staff: &str, subject: &str) -> Entity {
    Entity::Conflict(Conflict { id: id(name), staff: id(staff), subject: id(subject) })
}

pub fn grant(
    name: &str,
    kind: GrantKind,
    staff: &str,
    subject: &str,
    purposes: &[Purpose],
    starts_at: Timestamp,
    expires_at: Timestamp,
) -> Entity {
    Entity::Grant(Grant {
        id: id(name),
        staff: id(staff),
        subject: id(subject),
        kind,
        purposes: purposes.to_vec(),
        justification: "caller in danger, verified by phone".into(),
        starts_at,
        expires_at,
        granted_by: id("heidi"),
    })
}

pub fn index_of(entities: impl IntoIterator<Item = Entity>) -> EntityIndex {
    let index = EntityIndex::new();
    for e in entities {
        index.apply(EntityChange::Upsert(e)).unwrap();
    }
    index
}

/// A request at `T0`.
pub fn request(principal: &str, action: &str, resource: &str, purpose: Option<&str>) -> CheckRequest {
    CheckRequest {
        principal: principal.into(),
        action: action.into(),
        resource: resource.into(),
        fields: vec![],
        context: RequestContext { purpose: purpose.map(Into::into), time: T0, ..Default::default() },
    }
}

/// Northshire Revenue, a small tax office: two regional teams under operations (one
/// with an intake sub-team), a fraud unit, a privacy office; restricted, conflicted and
/// decoy subjects; open, closed and mismatched cases; live, expired and temporary grants.
pub fn northshire() -> Vec<Entity> {
    use CaseStatus::*;
    use Compartment::*;
    use GrantKind::*;
    use Purpose::*;
    use StaffStatus::*;
    vec![
        team("ops", None),
        team("north", Some("ops")),
        team("north-intake", Some("north")),
        team("south", Some("ops")),
        team("fraud", Some("ops")),
        team("privacy", Some("ops")),
        staff("alice", "north-intake", &["caseworker"], &[], Active),
        staff("bob", "south", &["caseworker"], &[], Active),
        staff("carol", "north", &["team_lead"], &[], Active),
        staff("dave", "fraud", &["investigator"], &[Politician, PublicFigure], Active),
        staff("erin", "north-intake", &["caseworker"], &[], Suspended),
        staff("frank", "north", &["caseworker"], &[], Terminated),
        staff("grace", "privacy", &["privacy_officer"], &[], Active),
        staff("heidi", "ops", &["admin"], &[], Active),
        staff("ivan", "ops", &["admin"], &[], Active),
        staff("judy", "north-intake", &["caseworker"], &[OwnStaff], Active),
        subject("s-ann", &[], false),
        subject("s-ben", &[], false),
        subject("s-mp", &[Politician], false),
        subject("s-star", &[PublicFigure], false),
        subject("s-colleague", &[OwnStaff], false),
        subject("s-witness", &[Protected], false),
        subject("s-decoy", &[], true),
        subject("s-neighbour", &[], false),
        case("c-100", Casework, Open, &["s-ann", "s-neighbour"], &[], &["north-intake"]),
        case("c-101", TaxpayerService, Open, &["s-ben"], &["bob"], &[]),
        case("c-102", Compliance, Closed, &["s-ann"], &["alice"], &[]),
        case("c-103", FraudInvestigation, Open, &["s-mp", "s-ben"], &[], &["fraud"]),
        case("c-104", Casework, Open, &["s-colleague", "s-witness", "s-star"], &[], &["north"]),
        case("c-105", Legal, Open, &["s-ann"], &["carol"], &[]),
        case("c-106", Casework, Open, &["s-decoy"], &["alice"], &[]),
        conflict("k-1", "alice", "s-neighbour"),
        grant("g-bg-1", BreakGlass, "bob", "s-witness", &[Emergency], T0 - HOUR, T0 + HOUR),
        grant("g-bg-old", BreakGlass, "bob", "s-ann", &[Emergency], T0 - 5 * HOUR, T0 - HOUR),
        grant("g-bg-erin", BreakGlass, "erin", "s-ann", &[Emergency], T0 - HOUR, T0 + HOUR),
        grant("g-tmp-1", Temporary, "judy", "s-ben", &[Audit], T0 - HOUR, T0 + 8 * HOUR),
    ]
}

/// Words a public reason must never contain: they would reveal a restricted
/// compartment or a decoy.
pub const SECRET_WORDS: &[&str] = &[
    "restrict",
    "compartment",
    "clearance",
    "decoy",
    "honeytoken",
    "politic",
    "protected",
    "public figure",
    "own staff",
    "own_staff",
];

pub fn reveals_secret(public_reason: &str) -> Option<&'static str> {
    let lower = public_reason.to_lowercase();
    SECRET_WORDS.iter().copied().find(|w| lower.contains(w))
}
