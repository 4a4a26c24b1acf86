//! Every rule of the default pack, allowed and denied, over the Northshire organization,
//! with the reason a caller reads and the obligations checked.

mod common;

use common::*;
use quis_policy_engine::engine::{NO_CASE, NOT_AUTHORIZED};
use quis_policy_engine::{AlertLevel, Engine, PolicySet};

struct Row {
    name: &'static str,
    principal: &'static str,
    action: &'static str,
    resource: &'static str,
    purpose: Option<&'static str>,
    case: Option<&'static str>,
    justification: Option<&'static str>,
    fields: &'static [&'static str],
    allowed: bool,
    policies: &'static [&'static str],
    public_reason: &'static str,
    obligation_fields: &'static [&'static str],
    alert: AlertLevel,
    break_glass_expires_at: Option<i64>,
}

const R: Row = Row {
    name: "",
    principal: "staff/alice",
    action: "read",
    resource: "subjects/s-ann",
    purpose: Some("CASEWORK"),
    case: None,
    justification: None,
    fields: &[],
    allowed: false,
    policies: &[],
    public_reason: "",
    obligation_fields: &[],
    alert: AlertLevel::None,
    break_glass_expires_at: None,
};

const CASEWORK_FIELDS: &[&str] = &["assets", "contact", "employment", "identity", "income", "notes"];
const ALL_FIELDS: &[&str] = &["assets", "bank", "contact", "employment", "identity", "income", "notes"];

fn rows() -> Vec<Row> {
    vec![
        // ---- casework: an open case assigned to the actor or their team, for its purpose
        Row {
            name: "case found through the actor's team",
            allowed: true,
            policies: &["case-read-casework"],
            public_reason: "an open CASEWORK case assigned to you or your team covers this subject",
            obligation_fields: CASEWORK_FIELDS,
            ..R
        },
        Row {
            name: "case named by the caller",
            case: Some("cases/c-100"),
            allowed: true,
            policies: &["case-read-casework"],
            public_reason: "an open CASEWORK case assigned to you or your team covers this subject",
            obligation_fields: CASEWORK_FIELDS,
            ..R
        },
        Row {
            name: "record access counts as a read",
            action: "record_access",
            resource: "subjects/s-ann/records/r-2024-return",
            allowed: true,
            policies: &["case-read-casework"],
            public_reason: "an open CASEWORK case assigned to you or your team covers this subject",
            obligation_fields: CASEWORK_FIELDS,
            ..R
        },
        Row {
            name: "no purpose",
            purpose: None,
            policies: &["purpose-required"],
            public_reason: "a purpose is required",
            ..R
        },
        Row { name: "no case for this subject", resource: "subjects/s-ben", public_reason: NO_CASE, ..R },
        Row {
            name: "taxpayer service sees contact and identity only",
            principal: "staff/bob",
            resource: "subjects/s-ben",
            purpose: Some("TAXPAYER_SERVICE"),
            allowed: true,
            policies: &["case-read-taxpayer-service"],
            public_reason: "an open TAXPAYER_SERVICE case assigned to you or your team covers this subject",
            obligation_fields: &["contact", "identity"],
            ..R
        },
        Row {
            name: "fields asked for narrow the obligation; income stays hidden",
            principal: "staff/bob",
            resource: "subjects/s-ben",
            purpose: Some("TAXPAYER_SERVICE"),
            fields: &["income", "contact"],
            allowed: true,
            policies: &["case-read-taxpayer-service"],
            public_reason: "an open TAXPAYER_SERVICE case assigned to you or your team covers this subject",
            obligation_fields: &["contact"],
            ..R
        },
        Row {
            name: "purpose differs from the case's",
            principal: "staff/bob",
            resource: "subjects/s-ben",
            public_reason: "case c-101 was opened for TAXPAYER_SERVICE, not CASEWORK",
            ..R
        },
        Row {
            name: "closed case",
            purpose: Some("COMPLIANCE"),
            case: Some("cases/c-102"),
            public_reason: "case c-102 is closed",
            ..R
        },
        Row {
            name: "subject not in the case named",
            resource: "subjects/s-ben",
            case: Some("cases/c-100"),
            public_reason: "this subject is not part of case c-100",
            ..R
        },
        Row {
            name: "case assigned to another team",
            principal: "staff/bob",
            case: Some("cases/c-100"),
            public_reason: "case c-100 is not assigned to you or your team",
            ..R
        },
        Row {
            name: "case named does not exist",
            case: Some("cases/c-999"),
            public_reason: "the case named does not exist",
            ..R
        },
        Row {
            name: "case assigned to a parent team covers its sub-teams",
            principal: "staff/judy",
            resource: "subjects/s-colleague",
            allowed: true,
            policies: &["case-read-casework"],
            public_reason: "an open CASEWORK case assigned to you or your team covers this subject",
            obligation_fields: CASEWORK_FIELDS,
            ..R
        },
        Row {
            name: "legal purpose, named case",
            principal: "staff/carol",
            purpose: Some("LEGAL"),
            case: Some("cases/c-105"),
            allowed: true,
            policies: &["case-read-legal"],
            public_reason: "an open LEGAL case assigned to you or your team covers this subject",
            obligation_fields: &["assets", "contact", "identity", "income", "notes"],
            ..R
        },
        // ---- employment status and conflicts: forbidden regardless of anything else
        Row {
            name: "suspended staff",
            principal: "staff/erin",
            policies: &["inactive-staff"],
            public_reason: "your account is not active",
            alert: AlertLevel::High,
            ..R
        },
        Row {
            name: "terminated staff",
            principal: "staff/frank",
            resource: "subjects/s-colleague",
            policies: &["inactive-staff", "restricted-compartment"],
            public_reason: "your account is not active",
            alert: AlertLevel::High,
            ..R
        },
        Row {
            name: "suspended staff with an active break-glass",
            principal: "staff/erin",
            purpose: Some("EMERGENCY"),
            policies: &["inactive-staff"],
            public_reason: "your account is not active",
            alert: AlertLevel::High,
            ..R
        },
        Row {
            name: "declared conflict of interest beats an assigned case",
            resource: "subjects/s-neighbour",
            policies: &["conflict-of-interest"],
            public_reason: "you have declared a conflict of interest with this subject",
            alert: AlertLevel::High,
            ..R
        },
        // ---- restricted compartments need a clearance; the reason never says so
        Row {
            name: "own-staff subject without clearance",
            resource: "subjects/s-colleague",
            policies: &["restricted-compartment"],
            public_reason: NOT_AUTHORIZED,
            alert: AlertLevel::High,
            ..R
        },
        Row {
            name: "protected person without clearance",
            principal: "staff/judy",
            resource: "subjects/s-witness",
            policies: &["restricted-compartment"],
            public_reason: NOT_AUTHORIZED,
            alert: AlertLevel::High,
            ..R
        },
        Row {
            name: "restricted subject without a case: the caller hears only about the case",
            principal: "staff/bob",
            resource: "subjects/s-star",
            policies: &["restricted-compartment"],
            public_reason: NO_CASE,
            alert: AlertLevel::High,
            ..R
        },
        Row {
            name: "politician with clearance in a fraud case",
            principal: "staff/dave",
            resource: "subjects/s-mp",
            purpose: Some("FRAUD_INVESTIGATION"),
            allowed: true,
            policies: &["case-read-fraud-investigation"],
            public_reason: "an open FRAUD_INVESTIGATION case assigned to you or your team covers this subject",
            obligation_fields: ALL_FIELDS,
            ..R
        },
        // ---- decoys: denied with a critical alert, indistinguishable to the caller
        Row {
            name: "decoy inside an assigned case",
            resource: "subjects/s-decoy",
            policies: &["decoy-subject"],
            public_reason: NOT_AUTHORIZED,
            alert: AlertLevel::Critical,
            ..R
        },
        Row {
            name: "decoy without a case",
            principal: "staff/bob",
            resource: "subjects/s-decoy",
            policies: &["decoy-subject"],
            public_reason: NO_CASE,
            alert: AlertLevel::Critical,
            ..R
        },
        // ---- break-glass: justification, active time-bound grant, always an alert
        Row {
            name: "start a break-glass with a justification",
            principal: "staff/bob",
            action: "break_glass",
            resource: "subjects/s-witness",
            purpose: Some("EMERGENCY"),
            justification: Some("caller reports immediate danger; address needed"),
            allowed: true,
            policies: &["break-glass-start"],
            public_reason: "break-glass started with a justification",
            alert: AlertLevel::High,
            break_glass_expires_at: Some(T0 + 4 * HOUR),
            ..R
        },
        Row {
            name: "break-glass without a justification",
            principal: "staff/bob",
            action: "break_glass",
            purpose: Some("EMERGENCY"),
            policies: &["break-glass-justification"],
            public_reason: "break-glass needs a justification",
            ..R
        },
        Row {
            name: "blank justification is none",
            principal: "staff/bob",
            action: "break_glass",
            purpose: Some("EMERGENCY"),
            justification: Some("   "),
            policies: &["break-glass-justification"],
            public_reason: "break-glass needs a justification",
            ..R
        },
        Row {
            name: "break-glass needs the EMERGENCY purpose",
            principal: "staff/bob",
            action: "break_glass",
            justification: Some("urgent"),
            public_reason: "break-glass needs the EMERGENCY purpose",
            ..R
        },
        Row {
            name: "break-glass start on a decoy",
            principal: "staff/bob",
            action: "break_glass",
            resource: "subjects/s-decoy",
            purpose: Some("EMERGENCY"),
            justification: Some("urgent"),
            policies: &["decoy-subject"],
            public_reason: NOT_AUTHORIZED,
            alert: AlertLevel::Critical,
            ..R
        },
        Row {
            name: "read through an active break-glass, restricted subject included",
            principal: "staff/bob",
            resource: "subjects/s-witness",
            purpose: Some("EMERGENCY"),
            allowed: true,
            policies: &["break-glass-read"],
            public_reason: "an active break-glass grant covers this subject",
            obligation_fields: ALL_FIELDS,
            alert: AlertLevel::High,
            break_glass_expires_at: Some(T0 + HOUR),
            ..R
        },
        Row {
            name: "expired break-glass",
            principal: "staff/bob",
            purpose: Some("EMERGENCY"),
            public_reason: "your break-glass for this subject has expired",
            ..R
        },
        Row {
            name: "emergency without a break-glass",
            purpose: Some("EMERGENCY"),
            public_reason: "the EMERGENCY purpose needs an active break-glass for this subject",
            ..R
        },
        Row {
            name: "an active break-glass does not make a case",
            principal: "staff/bob",
            resource: "subjects/s-witness",
            public_reason: NO_CASE,
            ..R
        },
        // ---- temporary grants
        Row {
            name: "temporary grant for its purpose",
            principal: "staff/judy",
            resource: "subjects/s-ben",
            purpose: Some("AUDIT"),
            allowed: true,
            policies: &["temporary-grant-read"],
            public_reason: "an active temporary grant covers this subject and purpose",
            obligation_fields: &["assets", "contact", "employment", "identity", "income"],
            alert: AlertLevel::Low,
            ..R
        },
        Row {
            name: "temporary grant for another purpose",
            principal: "staff/judy",
            resource: "subjects/s-ben",
            purpose: Some("COMPLIANCE"),
            public_reason: NO_CASE,
            ..R
        },
        // ---- export and update
        Row {
            name: "team lead exports for a legal case",
            principal: "staff/carol",
            action: "export",
            purpose: Some("LEGAL"),
            allowed: true,
            policies: &["case-export"],
            public_reason: "an open LEGAL or FRAUD_INVESTIGATION case assigned to you or your team covers this subject, and your role may export",
            obligation_fields: ALL_FIELDS,
            alert: AlertLevel::Low,
            ..R
        },
        Row {
            name: "export for casework",
            action: "export",
            public_reason: "export needs a LEGAL or FRAUD_INVESTIGATION purpose",
            ..R
        },
        Row {
            name: "investigator exports for a fraud case",
            principal: "staff/dave",
            action: "export",
            resource: "subjects/s-ben",
            purpose: Some("FRAUD_INVESTIGATION"),
            allowed: true,
            policies: &["case-export"],
            public_reason: "an open LEGAL or FRAUD_INVESTIGATION case assigned to you or your team covers this subject, and your role may export",
            obligation_fields: ALL_FIELDS,
            alert: AlertLevel::Low,
            ..R
        },
        Row {
            name: "caseworker updates in casework",
            action: "update",
            allowed: true,
            policies: &["case-update"],
            public_reason: "an open CASEWORK case assigned to you or your team covers this subject, and your role may update records",
            obligation_fields: &["assets", "contact", "employment", "income", "notes"],
            ..R
        },
        Row {
            name: "update needs casework",
            principal: "staff/dave",
            action: "update",
            resource: "subjects/s-ben",
            purpose: Some("FRAUD_INVESTIGATION"),
            public_reason: "updates need the CASEWORK purpose",
            ..R
        },
        Row {
            name: "update on another team's case",
            principal: "staff/dave",
            action: "update",
            resource: "subjects/s-star",
            case: Some("cases/c-104"),
            public_reason: "case c-104 is not assigned to you or your team",
            ..R
        },
        // ---- search
        Row {
            name: "search within an assigned case",
            action: "search",
            resource: "cases/c-100",
            allowed: true,
            policies: &["case-search"],
            public_reason: "searching within an open case assigned to you or your team, for its purpose",
            obligation_fields: &["contact", "identity"],
            ..R
        },
        Row {
            name: "search within another team's case",
            principal: "staff/bob",
            action: "search",
            resource: "cases/c-100",
            public_reason: "case c-100 is not assigned to you or your team",
            ..R
        },
        Row {
            name: "investigator searches the register",
            principal: "staff/dave",
            action: "search",
            resource: "subjects",
            purpose: Some("FRAUD_INVESTIGATION"),
            allowed: true,
            policies: &["register-search"],
            public_reason: "investigators may search the whole register for a fraud investigation",
            obligation_fields: &["identity"],
            alert: AlertLevel::Low,
            ..R
        },
        Row {
            name: "caseworker may not search the register",
            action: "search",
            resource: "subjects",
            public_reason: "only investigators may search the whole register, for a FRAUD_INVESTIGATION purpose",
            ..R
        },
        Row {
            name: "search without a purpose",
            action: "search",
            resource: "cases/c-100",
            purpose: None,
            policies: &["purpose-required"],
            public_reason: "a purpose is required",
            ..R
        },
        // ---- access history
        Row {
            name: "privacy officer reads a subject's access history",
            principal: "staff/grace",
            action: "read_history",
            purpose: Some("AUDIT"),
            allowed: true,
            policies: &["history-privacy-officer"],
            public_reason: "privacy officers may read any subject's access history for an audit or legal purpose",
            obligation_fields: &["history"],
            ..R
        },
        Row {
            name: "privacy officer without clearance on a restricted subject",
            principal: "staff/grace",
            action: "read_history",
            resource: "subjects/s-mp",
            purpose: Some("AUDIT"),
            policies: &["restricted-compartment"],
            public_reason: NOT_AUTHORIZED,
            alert: AlertLevel::High,
            ..R
        },
        Row {
            name: "caseworker may not read access history",
            action: "read_history",
            public_reason: "only privacy officers may read a subject's access history, for an AUDIT or LEGAL purpose",
            ..R
        },
        Row {
            name: "a data subject reads their own access history",
            principal: "subjects/s-ann",
            action: "read_history",
            purpose: Some("AUDIT"),
            allowed: true,
            policies: &["history-own"],
            public_reason: "a data subject may read their own access history",
            obligation_fields: &["history"],
            ..R
        },
        Row {
            name: "a data subject may not read another's history",
            principal: "subjects/s-ann",
            action: "read_history",
            resource: "subjects/s-ben",
            purpose: Some("AUDIT"),
            public_reason: "you may read only your own access history",
            ..R
        },
        // ---- administration
        Row {
            name: "admin administers another staff member",
            principal: "staff/heidi",
            action: "admin_entities",
            resource: "staff/alice",
            purpose: None,
            allowed: true,
            policies: &["admin-entities"],
            public_reason: "administrators may administer entities",
            ..R
        },
        Row {
            name: "admin on themselves",
            principal: "staff/heidi",
            action: "admin_entities",
            resource: "staff/heidi",
            purpose: None,
            policies: &["admin-not-on-self"],
            public_reason: "you may not administer your own entity",
            ..R
        },
        Row {
            name: "non-admin administers",
            action: "admin_entities",
            resource: "cases/c-100",
            purpose: None,
            public_reason: "administration needs the admin role",
            ..R
        },
        Row {
            name: "admin proposes a policy set",
            principal: "staff/ivan",
            action: "admin_policy",
            resource: "policy",
            purpose: None,
            allowed: true,
            policies: &["admin-policy"],
            public_reason: "administrators may propose and approve policy sets",
            ..R
        },
        // ---- principals and subjects the index does not know
        Row {
            name: "a service is not a principal for record access",
            principal: "services/vault",
            public_reason: "services may not access records as principals",
            ..R
        },
        Row {
            name: "unknown staff",
            principal: "staff/zed",
            public_reason: "you are not known to the policy service",
            ..R
        },
        Row {
            name: "unknown subject answers like a missing case",
            resource: "subjects/s-nobody",
            public_reason: NO_CASE,
            ..R
        },
    ]
}

#[test]
fn northshire_table() {
    let policies = PolicySet::default();
    let index = index_of(northshire());
    let mut failures = Vec::new();
    for row in rows() {
        let mut req = request(row.principal, row.action, row.resource, row.purpose);
        req.context.case = row.case.map(Into::into);
        req.context.justification = row.justification.map(Into::into);
        req.fields = row.fields.iter().map(|f| f.to_string()).collect();
        let d = Engine::check(&policies, &index, &req).unwrap_or_else(|e| panic!("{}: refused: {e}", row.name));
        let fields: Vec<&str> = d.obligations.fields.iter().map(String::as_str).collect();
        let mut problems = Vec::new();
        if d.allowed != row.allowed {
            problems.push(format!("allowed {} (expected {})", d.allowed, row.allowed));
        }
        if d.determining_policies != row.policies {
            problems.push(format!("policies {:?} (expected {:?})", d.determining_policies, row.policies));
        }
        if d.public_reason != row.public_reason {
            problems.push(format!("public reason {:?} (expected {:?})", d.public_reason, row.public_reason));
        }
        if fields != row.obligation_fields {
            problems.push(format!("fields {fields:?} (expected {:?})", row.obligation_fields));
        }
        if d.obligations.alert != row.alert {
            problems.push(format!("alert {:?} (expected {:?})", d.obligations.alert, row.alert));
        }
        if d.obligations.break_glass_expires_at != row.break_glass_expires_at {
            problems.push(format!(
                "break-glass expiry {:?} (expected {:?})",
                d.obligations.break_glass_expires_at, row.break_glass_expires_at
            ));
        }
        if let Some(word) = reveals_secret(&d.public_reason) {
            problems.push(format!("public reason reveals {word:?}"));
        }
        if d.policy_version != policies.version() || d.entity_version != index.version() {
            problems.push("versions not reported".into());
        }
        if !problems.is_empty() {
            failures.push(format!("{}: {}\n    full reason: {}", row.name, problems.join("; "), d.full_reason));
        }
    }
    assert!(failures.is_empty(), "{} rows failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn full_reasons_tell_the_whole_story() {
    let policies = PolicySet::default();
    let index = index_of(northshire());
    let d = Engine::check(&policies, &index, &request("staff/alice", "read", "subjects/s-colleague", Some("CASEWORK")))
        .unwrap();
    assert!(!d.allowed);
    assert!(d.full_reason.contains("restricted compartment"), "{}", d.full_reason);
    assert!(d.full_reason.contains("OWN_STAFF"), "{}", d.full_reason);
    assert!(d.full_reason.contains("case c-104 (found)"), "{}", d.full_reason);
    assert_eq!(d.case.as_ref().map(|c| c.as_str()), Some("c-104"));

    let d =
        Engine::check(&policies, &index, &request("staff/bob", "read", "subjects/s-decoy", Some("CASEWORK"))).unwrap();
    assert!(d.full_reason.contains("decoy"), "{}", d.full_reason);

    let d = Engine::check(&policies, &index, &request("staff/bob", "read", "subjects/s-witness", Some("EMERGENCY")))
        .unwrap();
    assert!(d.allowed);
    assert_eq!(d.grant.as_ref().map(|g| g.as_str()), Some("g-bg-1"));
    assert!(d.full_reason.contains("grant g-bg-1 (BREAK_GLASS)"), "{}", d.full_reason);
}

#[test]
fn changes_take_effect_on_the_next_check() {
    use quis_policy_engine::model::*;
    let policies = PolicySet::default();
    let index = index_of(northshire());
    let read = request("staff/alice", "read", "subjects/s-ann", Some("CASEWORK"));
    assert!(Engine::check(&policies, &index, &read).unwrap().allowed);

    // Suspension.
    let before = index.version();
    index
        .apply(EntityChange::Upsert(staff("alice", "north-intake", &["caseworker"], &[], StaffStatus::Suspended)))
        .unwrap();
    let d = Engine::check(&policies, &index, &read).unwrap();
    assert!(!d.allowed);
    assert_eq!(d.entity_version, before + 1);
    index
        .apply(EntityChange::Upsert(staff("alice", "north-intake", &["caseworker"], &[], StaffStatus::Active)))
        .unwrap();
    assert!(Engine::check(&policies, &index, &read).unwrap().allowed);

    // Closing the case.
    index
        .apply(EntityChange::Upsert(case(
            "c-100",
            Purpose::Casework,
            CaseStatus::Closed,
            &["s-ann", "s-neighbour"],
            &[],
            &["north-intake"],
        )))
        .unwrap();
    let d = Engine::check(&policies, &index, &read).unwrap();
    assert_eq!(d.public_reason, "case c-100 is closed");

    // Reassigning it to alice alone, open again; then moving alice to another team.
    index
        .apply(EntityChange::Upsert(case(
            "c-100",
            Purpose::Casework,
            CaseStatus::Open,
            &["s-ann"],
            &["bob"],
            &["south"],
        )))
        .unwrap();
    // Only alice's closed compliance case is left to explain the access.
    assert_eq!(Engine::check(&policies, &index, &read).unwrap().public_reason, "case c-102 is closed");
    index.apply(EntityChange::Upsert(staff("alice", "south", &["caseworker"], &[], StaffStatus::Active))).unwrap();
    assert!(Engine::check(&policies, &index, &read).unwrap().allowed);

    // Deleting the cases.
    index.apply(EntityChange::Delete(EntityKind::Case, id("c-100"))).unwrap();
    index.apply(EntityChange::Delete(EntityKind::Case, id("c-102"))).unwrap();
    assert_eq!(Engine::check(&policies, &index, &read).unwrap().public_reason, NO_CASE);

    // A conflict declared, then withdrawn.
    let ben = request("staff/bob", "read", "subjects/s-ben", Some("TAXPAYER_SERVICE"));
    assert!(Engine::check(&policies, &index, &ben).unwrap().allowed);
    index.apply(EntityChange::Upsert(conflict("k-2", "bob", "s-ben"))).unwrap();
    assert_eq!(Engine::check(&policies, &index, &ben).unwrap().determining_policies, ["conflict-of-interest"]);
    index.apply(EntityChange::Delete(EntityKind::Conflict, id("k-2"))).unwrap();
    assert!(Engine::check(&policies, &index, &ben).unwrap().allowed);

    // A break-glass is usable only while its grant lasts.
    let mut emergency = request("staff/alice", "read", "subjects/s-witness", Some("EMERGENCY"));
    assert!(!Engine::check(&policies, &index, &emergency).unwrap().allowed);
    index
        .apply(EntityChange::Upsert(grant(
            "g-new",
            GrantKind::BreakGlass,
            "alice",
            "s-witness",
            &[Purpose::Emergency],
            T0,
            T0 + 60,
        )))
        .unwrap();
    assert!(Engine::check(&policies, &index, &emergency).unwrap().allowed);
    emergency.context.time = T0 + 60;
    let d = Engine::check(&policies, &index, &emergency).unwrap();
    assert_eq!(d.public_reason, "your break-glass for this subject has expired");
}

#[test]
fn a_changed_policy_set_takes_effect_on_the_next_check() {
    let index = index_of(northshire());
    let read = request("staff/alice", "read", "subjects/s-ann", Some("CASEWORK"));
    let default = PolicySet::default();
    assert!(Engine::check(&default, &index, &read).unwrap().allowed);

    let stricter = format!(
        "{}\n@id(\"no-casework-reads\")\n@reason(\"casework reads are suspended\")\n@public_reason(\"casework reads are suspended\")\nforbid (principal, action == Quis::Action::\"read\", resource) when {{ context has purpose && context.purpose == \"CASEWORK\" }};\n",
        default.text()
    );
    let stricter = PolicySet::compile(&stricter).unwrap();
    assert_ne!(stricter.version(), default.version());
    let d = Engine::check(&stricter, &index, &read).unwrap();
    assert!(!d.allowed);
    assert_eq!(d.determining_policies, ["no-casework-reads"]);
    assert_eq!(d.public_reason, "casework reads are suspended");
    assert_eq!(d.policy_version, stricter.version());
}

#[test]
fn each_source_address_is_decided_on_its_own_value() {
    // The engine keeps the Cedar `ip(..)` expression of addresses it has seen (at most a few
    // thousand): every check must still see its own address, for more addresses than are kept.
    let index = index_of(northshire());
    let office_only = format!(
        "{}\n@id(\"office-only\")\n@reason(\"outside the office network\")\n@public_reason(\"outside the office network\")\nforbid (principal, action, resource) when {{ context has source_address && !context.source_address.isInRange(ip(\"10.0.0.0/8\")) }};\n",
        PolicySet::default().text()
    );
    let policies = PolicySet::compile(&office_only).unwrap();
    let mut read = request("staff/alice", "read", "subjects/s-ann", Some("CASEWORK"));
    for i in 0..5_000u32 {
        let [_, a, b, c] = i.to_be_bytes();
        for (address, inside) in [(format!("10.{a}.{b}.{c}"), true), (format!("192.168.{b}.{c}"), false)] {
            read.context.source_address = Some(address.clone());
            let d = Engine::check(&policies, &index, &read).unwrap();
            assert_eq!(d.allowed, inside, "{address}: {}", d.full_reason);
        }
    }
    read.context.source_address = Some("[2001:db8::1]:443".into());
    assert_eq!(Engine::check(&policies, &index, &read).unwrap().determining_policies, ["office-only"]);
}
