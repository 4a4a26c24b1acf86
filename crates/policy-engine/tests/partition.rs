//! The per-(action, purpose, optional context) split of a policy set decides exactly as the whole set:
//! for every request of a small exhaustive family over Northshire, bare Cedar on the
//! split and on the whole set agree on the decision, the determining policies and the
//! policies that failed to evaluate.

mod common;

use std::collections::BTreeSet;
use std::str::FromStr;

use cedar_policy::{ActionConstraint, Authorizer, Entities, PolicyId, Request, Response};
use common::*;
use quis_policy_engine::model::{Action, Purpose};
use quis_policy_engine::{CheckRequest, ContextKeys, Engine, EntityIndex, PolicySet};

fn outcome(response: &Response) -> (bool, BTreeSet<String>, BTreeSet<String>) {
    let errors = response
        .diagnostics()
        .errors()
        .map(|e| match e {
            cedar_policy::AuthorizationError::PolicyEvaluationError(e) => e.policy_id().to_string(),
        })
        .collect();
    (
        response.decision() == cedar_policy::Decision::Allow,
        response.diagnostics().reason().map(ToString::to_string).collect(),
        errors,
    )
}

/// Every request of the family that the engine would hand to Cedar.
fn requests(index: &EntityIndex) -> Vec<(CheckRequest, Request, Entities)> {
    let principals = [
        "staff/alice",
        "staff/bob",
        "staff/carol",
        "staff/dave",
        "staff/erin",
        "staff/frank",
        "staff/grace",
        "staff/heidi",
        "staff/judy",
        "subjects/s-ann",
    ];
    let resources = [
        "subjects/s-ann",
        "subjects/s-ben",
        "subjects/s-mp",
        "subjects/s-witness",
        "subjects/s-decoy",
        "subjects/s-neighbour",
        "subjects/s-colleague",
        "subjects",
        "cases/c-100",
        "cases/c-103",
        "staff/heidi",
        "teams/north",
        "policy",
    ];
    let purposes = std::iter::once(None).chain(Purpose::ALL.iter().map(|p| Some(p.as_str())));
    let mut out = Vec::new();
    for purpose in purposes {
        for principal in principals {
            for action in Action::ALL {
                for resource in resources {
                    for (case, justification) in [(None, None), (Some("cases/c-100"), Some("urgent, verified"))] {
                        let mut req = request(principal, action.as_str(), resource, purpose);
                        req.context.case = case.map(Into::into);
                        req.context.justification = justification.map(Into::into);
                        if let Ok(Some((cedar_request, entities))) = Engine::cedar_inputs(index, &req) {
                            out.push((req, cedar_request, entities));
                        }
                    }
                }
            }
        }
    }
    out
}

fn assert_split_decides_as_the_whole(policies: &PolicySet) {
    let index = index_of(northshire());
    let authorizer = Authorizer::new();
    let cases = requests(&index);
    assert!(cases.len() > 5_000, "the family is exhaustive enough: {}", cases.len());
    let mut allowed = 0;
    for (req, cedar_request, entities) in &cases {
        let action = Action::from_str(&req.action).unwrap();
        let purpose = req.context.purpose.as_deref().map(|p| Purpose::from_str(p).unwrap());
        let whole = outcome(&authorizer.is_authorized(cedar_request, policies.cedar(), entities));
        let split = outcome(&authorizer.is_authorized(
            cedar_request,
            policies.for_request(action, purpose, ContextKeys::of(cedar_request)),
            entities,
        ));
        assert_eq!(split, whole, "{req:?}");
        let by_action = outcome(&authorizer.is_authorized(cedar_request, policies.for_action(action), entities));
        assert_eq!(by_action, whole, "{req:?}");
        allowed += usize::from(whole.0);
    }
    assert!(allowed > 100, "the family reaches the permits: {allowed} allowed");
}

#[test]
fn the_split_of_the_default_pack_decides_as_the_whole_pack() {
    let pack = PolicySet::default();
    assert_split_decides_as_the_whole(&pack);
    // And it is smaller: a CASEWORK read sees neither the other purposes' permits nor the
    // purpose-required forbid.
    let with_case = ContextKeys::default().with("case");
    let read = pack.for_request(Action::Read, Some(Purpose::Casework), with_case);
    let ids: BTreeSet<String> = read.policies().map(|p| p.id().to_string()).collect();
    assert!(ids.contains("case-read-casework") && ids.contains("restricted-compartment"), "{ids:?}");
    assert!(!ids.contains("case-read-legal") && !ids.contains("purpose-required"), "{ids:?}");
    assert!(
        pack.for_request(Action::Read, None, ContextKeys::default())
            .policies()
            .any(|p| p.id().to_string() == "purpose-required")
    );
    // Nor, without a grant, the grant's permit; nor, without a case, the case's.
    let ids_of = |keys| -> BTreeSet<String> {
        pack.for_request(Action::Read, Some(Purpose::Casework), keys).policies().map(|p| p.id().to_string()).collect()
    };
    assert!(!ids.contains("temporary-grant-read") && !ids.contains("conflict-of-interest"), "{ids:?}");
    let with_grant = ids_of(with_case.with("grant"));
    assert!(with_grant.contains("temporary-grant-read") && with_grant.contains("case-read-casework"), "{with_grant:?}");
    assert!(!ids_of(ContextKeys::default()).contains("case-read-casework"));
    // The splits hold for their action alone, so Cedar need not check the action scope.
    for action in Action::ALL {
        assert!(pack.for_action(*action).policies().all(|p| matches!(p.action_constraint(), ActionConstraint::Any)));
    }
    assert!(!matches!(
        pack.cedar().policy(&PolicyId::new("case-read-casework")).unwrap().action_constraint(),
        ActionConstraint::Any
    ));
}

#[test]
fn a_policy_that_fails_before_its_purpose_gate_stays_in_the_split() {
    // The forbid overflows for every request, before its purpose is compared: Cedar reports
    // the error (and the engine denies) whatever the purpose, so no split may drop it.
    let text = format!(
        "{}\n@id(\"overflowing\")\nforbid (principal, action, resource) when {{ context.time * 4611686018427387904 > 0 && context has purpose && context.purpose == \"LEGAL\" }};",
        quis_policy_engine::policy::DEFAULT_POLICIES
    );
    let policies = PolicySet::compile(&text).unwrap();
    for action in Action::ALL {
        assert!(
            policies
                .for_request(*action, Some(Purpose::Casework), ContextKeys::default())
                .policies()
                .any(|p| p.id().to_string() == "overflowing")
        );
    }
    assert_split_decides_as_the_whole(&policies);
}
