//! The entity index: incremental changes keep its reverse links right, versions count
//! changes, and checks read it while the change feed writes.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use quis_policy_engine::model::*;
use quis_policy_engine::{Engine, EntityIndex, PolicySet};

fn case_ids(index: &EntityIndex, subject: &str) -> Vec<String> {
    let mut ids: Vec<String> = index.cases_of_subject(subject).iter().map(|c| c.model.id.to_string()).collect();
    ids.sort();
    ids
}

#[test]
fn reverse_links_follow_upserts_and_deletes() {
    let index = index_of(northshire());
    assert_eq!(case_ids(&index, "s-ann"), ["c-100", "c-102", "c-105"]);
    assert_eq!(case_ids(&index, "s-ben"), ["c-101", "c-103"]);

    // c-100 now lists s-ben instead of s-ann.
    index
        .apply(EntityChange::Upsert(case("c-100", Purpose::Casework, CaseStatus::Open, &["s-ben"], &[], &[])))
        .unwrap();
    assert_eq!(case_ids(&index, "s-ann"), ["c-102", "c-105"]);
    assert_eq!(case_ids(&index, "s-ben"), ["c-100", "c-101", "c-103"]);
    assert!(case_ids(&index, "s-neighbour").is_empty());

    index.apply(EntityChange::Delete(EntityKind::Case, id("c-101"))).unwrap();
    assert_eq!(case_ids(&index, "s-ben"), ["c-100", "c-103"]);

    // Conflicts and grants move with their staff member.
    assert_eq!(index.conflicts_between("alice", "s-neighbour").len(), 1);
    index.apply(EntityChange::Upsert(conflict("k-1", "bob", "s-neighbour"))).unwrap();
    assert!(index.conflicts_between("alice", "s-neighbour").is_empty());
    assert_eq!(index.conflicts_between("bob", "s-neighbour").len(), 1);
    assert_eq!(index.grants_between("bob", "s-witness").len(), 1);
    index.apply(EntityChange::Delete(EntityKind::Grant, id("g-bg-1"))).unwrap();
    assert!(index.grants_between("bob", "s-witness").is_empty());

    // Deleting what is not there is a no-op that still counts as a change.
    let v = index.version();
    index.apply(EntityChange::Delete(EntityKind::Subject, id("s-ghost"))).unwrap();
    assert_eq!(index.version(), v + 1);
    assert_eq!(index.count(EntityKind::Subject), 8);
}

#[test]
fn team_chains_follow_parents() {
    let index = index_of(northshire());
    let chain: Vec<String> = index.team_chain(&id("north-intake")).iter().map(|t| t.model.id.to_string()).collect();
    assert_eq!(chain, ["north-intake", "north", "ops"]);
    // Re-parenting north under south moves north-intake with it.
    index.apply(EntityChange::Upsert(team("north", Some("south")))).unwrap();
    let chain: Vec<String> = index.team_chain(&id("north-intake")).iter().map(|t| t.model.id.to_string()).collect();
    assert_eq!(chain, ["north-intake", "north", "south", "ops"]);
    // A missing parent ends the chain.
    index.apply(EntityChange::Delete(EntityKind::Team, id("south"))).unwrap();
    assert_eq!(index.team_chain(&id("north-intake")).len(), 2);
}

/// A check reuses the principal's entities built by an earlier one; moving a team in the
/// hierarchy, or the staff member between teams, must take effect on the next check all
/// the same.
#[test]
fn kept_principals_follow_team_and_staff_changes() {
    let policies = PolicySet::default();
    let index = index_of(northshire());
    index
        .apply(EntityChange::Upsert(case("c-200", Purpose::Casework, CaseStatus::Open, &["s-ben"], &[], &["north"])))
        .unwrap();
    let read_ben = request("staff/alice", "read", "subjects/s-ben", Some("CASEWORK"));
    let allowed = |index: &EntityIndex| Engine::check(&policies, index, &read_ben).unwrap().allowed;
    // alice is in north-intake, under north, to which c-200 is assigned.
    assert!(allowed(&index));
    assert!(allowed(&index), "the second check, on the kept principal, decides the same");

    index.apply(EntityChange::Upsert(team("north-intake", Some("south")))).unwrap();
    assert!(!allowed(&index), "north-intake left north: c-200 is no longer alice's team's");
    index.apply(EntityChange::Upsert(team("north-intake", Some("north")))).unwrap();
    assert!(allowed(&index));

    index.apply(EntityChange::Upsert(staff("alice", "south", &["caseworker"], &[], StaffStatus::Active))).unwrap();
    assert!(!allowed(&index), "alice moved to south");
    index.apply(EntityChange::Upsert(staff("alice", "north", &["caseworker"], &[], StaffStatus::Active))).unwrap();
    assert!(allowed(&index));
    index.apply(EntityChange::Delete(EntityKind::Team, id("north"))).unwrap();
    assert!(!allowed(&index), "alice's team is gone, and so is its case assignment through the hierarchy");
    index.apply(EntityChange::Delete(EntityKind::Staff, id("alice"))).unwrap();
    let d = Engine::check(&policies, &index, &read_ben).unwrap();
    assert!(!d.allowed);
    assert_eq!(d.public_reason, "you are not known to the policy service");
}

/// One writer flips alice between active and suspended and moves case c-100 between
/// teams while readers check; every decision must match one of the states the writer
/// produced, and the last one after it stops must match the final state.
#[test]
fn checks_read_while_the_feed_writes() {
    let policies = PolicySet::default();
    let index = Arc::new(index_of(northshire()));
    // Leave c-100 the only case that can explain alice's reads of s-ann.
    index.apply(EntityChange::Delete(EntityKind::Case, id("c-102"))).unwrap();
    index.apply(EntityChange::Delete(EntityKind::Case, id("c-105"))).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let index = index.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            for i in 0..2_000u32 {
                let status = if i % 2 == 0 { StaffStatus::Suspended } else { StaffStatus::Active };
                index
                    .apply(EntityChange::Upsert(staff("alice", "north-intake", &["caseworker"], &[], status)))
                    .unwrap();
                let team = if i % 3 == 0 { "south" } else { "north-intake" };
                index
                    .apply(EntityChange::Upsert(case(
                        "c-100",
                        Purpose::Casework,
                        CaseStatus::Open,
                        &["s-ann"],
                        &[],
                        &[team],
                    )))
                    .unwrap();
            }
            stop.store(true, Ordering::Release);
        })
    };
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let index = index.clone();
            let policies = policies.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let req = request("staff/alice", "read", "subjects/s-ann", Some("CASEWORK"));
                let mut seen = 0u32;
                while !stop.load(Ordering::Acquire) || seen == 0 {
                    let d = Engine::check(&policies, &index, &req).unwrap();
                    assert!(
                        (d.allowed && d.determining_policies == ["case-read-casework"])
                            || (!d.allowed
                                && (d.determining_policies == ["inactive-staff"]
                                    || d.public_reason == quis_policy_engine::engine::NO_CASE)),
                        "{d:?}"
                    );
                    seen += 1;
                }
                seen
            })
        })
        .collect();
    writer.join().unwrap();
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    // Final state: alice active, case with north-intake (i = 1999).
    let d =
        Engine::check(&policies, &index, &request("staff/alice", "read", "subjects/s-ann", Some("CASEWORK"))).unwrap();
    assert!(d.allowed);
    assert_eq!(index.version() as usize, northshire().len() + 2 + 4_000);
}
