//! Which policies of a set can decide a request of a given action and purpose.
//!
//! Cedar evaluates every policy of the set it is handed, a few microseconds each, and
//! most policies of a pack are gated on the action (their scope) and on the purpose
//! declared (`context has purpose && context.purpose == "CASEWORK" && ...`). The engine
//! therefore hands Cedar, per (action, purpose), only the policies that can hold.
//!
//! A policy is left out only when it provably evaluates to `false` *without an error*
//! for that action and purpose: its action scope excludes the action, or one of its
//! conditions, read left to right as Cedar evaluates them, is decided by the purpose
//! alone before anything that could fail. Cedar would have found such a policy
//! unsatisfied and reported no error for it, so the decision, the determining policies
//! and the errors are those of the whole set (tested in `tests/partition.rs`).

use cedar_policy::{ActionConstraint, Policy};
use serde_json::Value as Json;

use crate::model::{Action, Purpose};
use crate::policy::action_uid;

/// Whether `policy`'s action scope admits `action`. The schema declares no action
/// groups, so `action in [..]` is plain membership.
pub(crate) fn admits_action(policy: &Policy, action: Action) -> bool {
    let uid = action_uid(action);
    match policy.action_constraint() {
        ActionConstraint::Any => true,
        ActionConstraint::Eq(a) => a == uid,
        ActionConstraint::In(list) => list.contains(&uid),
    }
}

/// Whether `policy` can hold for a request declaring `purpose` (`None`: no purpose).
/// `false` only when one of its conditions, evaluated in order, is decided `false` by
/// the purpose alone and every condition before it is decided `true` by it.
pub(crate) fn may_hold_for(policy: &Policy, purpose: Option<Purpose>) -> bool {
    // A policy's JSON form (Cedar's EST) always serializes; if it ever did not, keep the policy.
    let Ok(json) = policy.to_json() else { return true };
    let Some(conditions) = json.get("conditions").and_then(Json::as_array) else { return true };
    let purpose = purpose.map(Purpose::as_str);
    for condition in conditions {
        let Some(body) = condition.get("body") else { return true };
        let value = match condition.get("kind").and_then(Json::as_str) {
            Some("when") => decided_by_purpose(body, purpose),
            Some("unless") => decided_by_purpose(body, purpose).map(|b| !b),
            _ => None,
        };
        match value {
            Some(true) => continue,
            Some(false) => return false,
            None => return true,
        }
    }
    true
}

/// `Some(b)` when `expr` evaluates to `b`, without error, for any request declaring
/// `purpose`, whatever else the request and its entities hold; `None` when that is not
/// certain. Follows Cedar's left-to-right short-circuit of `&&` and `||`.
fn decided_by_purpose(expr: &Json, purpose: Option<&str>) -> Option<bool> {
    let (op, args) = single_entry(expr)?;
    let side = |name: &str| args.get(name);
    match op {
        "&&" => match decided_by_purpose(side("left")?, purpose)? {
            false => Some(false),
            true => decided_by_purpose(side("right")?, purpose),
        },
        "||" => match decided_by_purpose(side("left")?, purpose)? {
            true => Some(true),
            false => decided_by_purpose(side("right")?, purpose),
        },
        "!" => decided_by_purpose(side("arg")?, purpose).map(|b| !b),
        "has" if is_var(side("left")?, "context") && side("attr")?.as_str() == Some("purpose") => {
            Some(purpose.is_some())
        }
        "==" | "!=" => {
            let (left, right) = (side("left")?, side("right")?);
            let literal = if is_context_purpose(left) {
                string_literal(right)?
            } else if is_context_purpose(right) {
                string_literal(left)?
            } else {
                return None;
            };
            // Without a purpose, `context.purpose` is an error: not decided.
            let equal = purpose? == literal;
            Some(if op == "==" { equal } else { !equal })
        }
        _ => None,
    }
}

/// The operator and operands of an EST expression (`{"op": {...}}`).
fn single_entry(expr: &Json) -> Option<(&str, &Json)> {
    let object = expr.as_object()?;
    let mut entries = object.iter();
    let (op, args) = entries.next()?;
    entries.next().is_none().then_some((op.as_str(), args))
}

fn is_var(expr: &Json, name: &str) -> bool {
    expr.get("Var").and_then(Json::as_str) == Some(name)
}

fn is_context_purpose(expr: &Json) -> bool {
    single_entry(expr).is_some_and(|(op, args)| {
        op == "."
            && args.get("left").is_some_and(|l| is_var(l, "context"))
            && args.get("attr") == Some(&"purpose".into())
    })
}

fn string_literal(expr: &Json) -> Option<&str> {
    expr.get("Value")?.as_str()
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn policy(text: &str) -> Policy {
        Policy::from_str(text).unwrap()
    }

    #[test]
    fn a_purpose_gate_excludes_the_other_purposes_and_the_absent_one_only_when_safe() {
        let p = policy(
            r#"permit (principal, action, resource) when { context has purpose && context.purpose == "LEGAL" && principal.x };"#,
        );
        assert!(may_hold_for(&p, Some(Purpose::Legal)));
        assert!(!may_hold_for(&p, Some(Purpose::Casework)));
        assert!(!may_hold_for(&p, None));

        // Without the `has` guard, no purpose is an evaluation error: the policy stays.
        let p = policy(r#"permit (principal, action, resource) when { context.purpose == "LEGAL" };"#);
        assert!(!may_hold_for(&p, Some(Purpose::Audit)));
        assert!(may_hold_for(&p, None));
    }

    #[test]
    fn an_undecided_condition_before_the_gate_keeps_the_policy() {
        // `principal.x` may fail before the purpose is compared: Cedar would report the error.
        let p = policy(
            r#"forbid (principal, action, resource) when { principal.x && context has purpose && context.purpose == "LEGAL" };"#,
        );
        assert!(may_hold_for(&p, Some(Purpose::Casework)));
        let p = policy(
            r#"forbid (principal, action, resource) when { principal.x } when { context has purpose && context.purpose == "LEGAL" };"#,
        );
        assert!(may_hold_for(&p, Some(Purpose::Casework)));
    }

    #[test]
    fn unless_or_and_not_equal_follow_cedar() {
        let p = policy(r#"forbid (principal, action, resource) unless { context has purpose };"#);
        assert!(may_hold_for(&p, None));
        assert!(!may_hold_for(&p, Some(Purpose::Audit)));

        let p = policy(
            r#"permit (principal, action, resource) when { context has purpose && ("LEGAL" == context.purpose || context.purpose == "AUDIT") };"#,
        );
        assert!(may_hold_for(&p, Some(Purpose::Legal)));
        assert!(may_hold_for(&p, Some(Purpose::Audit)));
        assert!(!may_hold_for(&p, Some(Purpose::Emergency)));

        let p = policy(
            r#"permit (principal, action, resource) when { context has purpose && context.purpose != "EMERGENCY" };"#,
        );
        assert!(!may_hold_for(&p, Some(Purpose::Emergency)));
        assert!(may_hold_for(&p, Some(Purpose::Casework)));

        let p = policy(r#"permit (principal, action, resource) when { !(context has purpose) };"#);
        assert!(may_hold_for(&p, None));
        assert!(!may_hold_for(&p, Some(Purpose::Casework)));
    }

    #[test]
    fn anything_else_is_kept() {
        for text in [
            r#"permit (principal, action, resource);"#,
            r#"permit (principal, action, resource) when { context.purpose like "LEG*" };"#,
        ] {
            for purpose in [None, Some(Purpose::Casework), Some(Purpose::Legal)] {
                assert!(may_hold_for(&policy(text), purpose), "{text} for {purpose:?}");
            }
        }
        // Without a purpose `context has purpose` is false, so these are rightly left out then;
        // with one, what follows is not decided by the purpose alone.
        for text in [
            r#"permit (principal, action, resource) when { context has purpose && context.purpose == principal.purpose };"#,
            r#"permit (principal, action, resource) when { context has purpose && context.purpose in ["LEGAL"] };"#,
        ] {
            assert!(!may_hold_for(&policy(text), None), "{text} without a purpose");
            for purpose in [Some(Purpose::Casework), Some(Purpose::Legal)] {
                assert!(may_hold_for(&policy(text), purpose), "{text} for {purpose:?}");
            }
        }
    }
}
