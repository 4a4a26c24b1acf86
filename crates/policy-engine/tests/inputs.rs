//! Bad requests name the field at fault; bad policy sets name the policy and position;
//! bad entity changes are refused and leave the index as it was.

mod common;

use common::*;
use quis_policy_engine::model::*;
use quis_policy_engine::policy::{MAX_POLICIES, MAX_POLICY_SET_BYTES};
use quis_policy_engine::{Engine, EntityError, Pack, PolicyErrorKind, PolicySet};

type Edit = Box<dyn Fn(&mut quis_policy_engine::CheckRequest)>;

#[test]
fn malformed_requests_name_the_field() {
    let policies = PolicySet::default();
    let index = index_of(northshire());
    let base = || request("staff/alice", "read", "subjects/s-ann", Some("CASEWORK"));
    let cases: Vec<(&str, Edit)> = vec![
        ("principal", Box::new(|r| r.principal = "robots/r2".into())),
        ("principal", Box::new(|r| r.principal = "alice".into())),
        ("principal", Box::new(|r| r.principal = "staff/Alice".into())),
        ("principal", Box::new(|r| r.principal = "staff/".into())),
        ("principal", Box::new(|r| r.principal = format!("staff/{}", "a".repeat(65)))),
        ("principal", Box::new(|r| r.principal = "subjects/s-ann".into())),
        ("action", Box::new(|r| r.action = "delete".into())),
        ("action", Box::new(|r| r.action = "READ".into())),
        ("resource", Box::new(|r| r.resource = "people/s-ann".into())),
        ("resource", Box::new(|r| r.resource = "subjects/s ann".into())),
        ("resource", Box::new(|r| r.resource = "subjects/s-ann/files/x".into())),
        ("resource", Box::new(|r| r.resource = "cases/c-100".into())),
        (
            "resource",
            Box::new(|r| {
                r.action = "admin_entities".into();
                r.resource = "widgets/w-1".into();
            }),
        ),
        (
            "resource",
            Box::new(|r| {
                r.action = "search".into();
                r.resource = "teams/north".into();
            }),
        ),
        (
            "resource",
            Box::new(|r| {
                r.action = "admin_policy".into();
                r.resource = "policies".into();
            }),
        ),
        ("fields[1]", Box::new(|r| r.fields = vec!["contact".into(), "Income!".into()])),
        ("fields", Box::new(|r| r.fields = (0..65).map(|i| format!("f{i}")).collect())),
        ("context.purpose", Box::new(|r| r.context.purpose = Some("casework".into()))),
        ("context.purpose", Box::new(|r| r.context.purpose = Some("CURIOSITY".into()))),
        ("context.case", Box::new(|r| r.context.case = Some("c-100".into()))),
        ("context.case", Box::new(|r| r.context.case = Some("cases/C-100".into()))),
        ("context.justification", Box::new(|r| r.context.justification = Some("x".repeat(2001)))),
        ("context.justification", Box::new(|r| r.context.justification = Some("ok\u{7}".into()))),
        ("context.time", Box::new(|r| r.context.time = -1)),
        ("context.source_address", Box::new(|r| r.context.source_address = Some("not-an-ip".into()))),
        ("context.device", Box::new(|r| r.context.device = Some("d".repeat(257)))),
        ("context.device", Box::new(|r| r.context.device = Some("tab\u{0}".into()))),
    ];
    for (field, change) in cases {
        let mut r = base();
        change(&mut r);
        match Engine::check(&policies, &index, &r) {
            Err(e) => assert_eq!(e.field, field, "{r:?}: {e}"),
            Ok(d) => panic!("{r:?} was decided ({}), not refused on {field}", d.full_reason),
        }
    }
}

#[test]
fn well_formed_context_is_accepted() {
    let policies = PolicySet::default();
    let index = index_of(northshire());
    let mut r = request("staff/alice", "read", "subjects/s-ann", Some("CASEWORK"));
    r.context.source_address = Some("10.1.2.3:50123".into());
    r.context.device = Some("laptop-4411 (managed)".into());
    r.context.justification = Some("call from the taxpayer\nabout the 2025 return".into());
    assert!(Engine::check(&policies, &index, &r).unwrap().allowed);
    r.context.source_address = Some("2001:db8::7".into());
    assert!(Engine::check(&policies, &index, &r).unwrap().allowed);
}

#[test]
fn the_default_pack_compiles_and_is_versioned() {
    let pack = Pack::default().compile().unwrap();
    assert_eq!(pack.version(), PolicySet::default().version());
    assert_eq!(pack.version().len(), 64);
    assert!(pack.len() >= 20);
    let again = PolicySet::compile(Pack::default().policies).unwrap();
    assert_eq!(again.version(), pack.version());
    let other = PolicySet::compile(&format!("{}\n// a comment\n", Pack::default().policies)).unwrap();
    assert_ne!(other.version(), pack.version());
}

#[test]
fn syntax_errors_have_a_position() {
    let text = "@id(\"a\")\npermit (principal, action, resource);\n\n@id(\"b\")\npermit (principal, action, resource) when { principal.roles.contains( };\n";
    let errors = PolicySet::compile(text).unwrap_err();
    assert!(!errors.is_empty());
    let e = &errors[0];
    assert_eq!(e.kind, PolicyErrorKind::Syntax);
    assert_eq!(e.line, Some(5), "{e}");
    assert!(e.column.is_some());
    assert_eq!(e.policy_id.as_deref(), Some("policy number 2"));
}

#[test]
fn validation_errors_name_the_policy_and_position() {
    let text = "@id(\"fine\")\npermit (principal is Quis::Staff, action == Quis::Action::\"read\", resource is Quis::Subject);\n\n@id(\"typo\")\npermit (principal is Quis::Staff, action == Quis::Action::\"read\", resource is Quis::Subject)\nwhen { principal.rolez.contains(\"caseworker\") };\n\n@id(\"wrong-type\")\nforbid (principal, action == Quis::Action::\"read\", resource is Quis::Subject)\nwhen { resource.decoy == \"yes\" };\n\n@id(\"no-such-action\")\npermit (principal, action == Quis::Action::\"destroy\", resource);\n";
    let errors = PolicySet::compile(text).unwrap_err();
    let ids: Vec<_> = errors.iter().map(|e| e.policy_id.clone().unwrap()).collect();
    assert!(ids.contains(&"typo".to_string()), "{errors:?}");
    assert!(ids.contains(&"wrong-type".to_string()), "{errors:?}");
    assert!(ids.contains(&"no-such-action".to_string()), "{errors:?}");
    assert!(!ids.contains(&"fine".to_string()), "{errors:?}");
    for e in &errors {
        assert_eq!(e.kind, PolicyErrorKind::Validation);
    }
    let typo = errors.iter().find(|e| e.policy_id.as_deref() == Some("typo")).unwrap();
    assert_eq!(typo.line, Some(6), "{typo}");
    assert!(typo.message.contains("rolez"), "{typo}");
}

#[test]
fn annotations_are_checked() {
    let cases = [
        ("permit (principal, action, resource);", None, 1),
        ("@id(\"Bad Id\")\npermit (principal, action, resource);", Some("Bad Id"), 1),
        ("@id(\"x\")\n@alert(\"loud\")\npermit (principal, action, resource);", Some("x"), 1),
        ("@id(\"x\")\n@fields(\"contact, Income\")\npermit (principal, action, resource);", Some("x"), 1),
        ("@id(\"x\")\n@break_glass(\"-5\")\npermit (principal, action, resource);", Some("x"), 1),
        ("@id(\"x\")\n@fields(\"contact\")\nforbid (principal, action, resource);", Some("x"), 1),
        (
            "@id(\"x\")\npermit (principal, action, resource);\n// two\n@id(\"x\")\npermit (principal, action, resource);",
            Some("x"),
            4,
        ),
    ];
    for (text, id, line) in cases {
        let errors = PolicySet::compile(text).unwrap_err();
        assert_eq!(errors.len(), 1, "{text}: {errors:?}");
        assert_eq!(errors[0].kind, PolicyErrorKind::Annotation, "{text}");
        assert_eq!(errors[0].policy_id.as_deref(), id, "{text}");
        assert_eq!(errors[0].line, Some(line), "{text}: {}", errors[0]);
        assert_eq!(errors[0].column, Some(1), "{text}");
    }
}

#[test]
fn oversized_sets_and_templates_are_refused() {
    let big = format!("// {}\n", "x".repeat(MAX_POLICY_SET_BYTES));
    let errors = PolicySet::compile(&big).unwrap_err();
    assert_eq!(errors[0].kind, PolicyErrorKind::Limit);

    let many: String = (0..=MAX_POLICIES).map(|i| format!("@id(\"p{i}\")permit(principal,action,resource);")).collect();
    assert!(many.len() < MAX_POLICY_SET_BYTES);
    let errors = PolicySet::compile(&many).unwrap_err();
    assert_eq!(errors[0].kind, PolicyErrorKind::Limit);
    assert!(errors[0].message.contains("1001 policies"));

    let template = "@id(\"t\")\npermit (principal == ?principal, action, resource);";
    assert_eq!(PolicySet::compile(template).unwrap_err()[0].kind, PolicyErrorKind::Limit);
}

#[test]
fn bad_entity_changes_are_refused_and_change_nothing() {
    let index = index_of(northshire());
    let version = index.version();
    let refused = [
        staff("zoe", "north", &["Case Worker"], &[], StaffStatus::Active),
        grant("g-x", GrantKind::BreakGlass, "bob", "s-ann", &[Purpose::Emergency], T0, T0),
        grant("g-x", GrantKind::Temporary, "bob", "s-ann", &[], T0, T0 + HOUR),
        Entity::Grant(Grant {
            justification: "  ".into(),
            ..match grant("g-x", GrantKind::BreakGlass, "bob", "s-ann", &[Purpose::Emergency], T0, T0 + HOUR) {
                Entity::Grant(g) => g,
                _ => unreachable!(),
            }
        }),
    ];
    for e in refused {
        let err = index.apply(EntityChange::Upsert(e.clone())).unwrap_err();
        assert!(matches!(err, EntityError::Invalid { .. }), "{e:?}: {err}");
    }
    // A team cycle: ops -> north-intake would close north-intake -> north -> ops.
    let err = index.apply(EntityChange::Upsert(team("ops", Some("north-intake")))).unwrap_err();
    assert_eq!(err, EntityError::TeamCycle(id("ops")));
    let err = index.apply(EntityChange::Upsert(team("solo", Some("solo")))).unwrap_err();
    assert_eq!(err, EntityError::TeamCycle(id("solo")));
    assert_eq!(index.version(), version);
    assert!(index.staff("zoe").is_none());
    assert!(index.grant("g-x").is_none());

    assert_eq!(
        index.apply_versioned(EntityChange::Delete(EntityKind::Staff, id("bob")), version - 1),
        Err(EntityError::StaleVersion { given: version - 1, current: version })
    );
    assert!(index.staff("bob").is_some());
    assert_eq!(index.apply_versioned(EntityChange::Delete(EntityKind::Staff, id("bob")), 1_000), Ok(1_000));
    assert!(index.staff("bob").is_none());
    assert_eq!(index.version(), 1_000);
}
