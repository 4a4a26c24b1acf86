//! Which policies of a set can decide a request of a given action, purpose and context.
//!
//! Cedar evaluates every policy of the set it is handed, a few microseconds each, and
//! most policies of a pack are gated on the action (their scope), on the purpose
//! declared (`context has purpose && context.purpose == "CASEWORK" && ...`) and on the
//! optional context the engine adds (`context has grant && ...`). The engine therefore
//! hands Cedar, per (action, purpose, optional context present), only the policies that
//! can hold.
//!
//! A policy is left out only when it provably evaluates to `false` *without an error*
//! for such a request: its action scope excludes the action, or one of its conditions,
//! read left to right as Cedar evaluates them, is decided by the purpose and the
//! presence of the optional context attributes alone before anything that could fail.
//! Cedar would have found such a policy unsatisfied and reported no error for it, so the
//! decision, the determining policies and the errors are those of the whole set (tested
//! in `tests/partition.rs`).
//!
//! A policy kept for an action has its action scope dropped in that split
//! ([`without_action_scope`]): the scope holds, without error, for every request of the
//! action, and Cedar would otherwise build the scope's set of actions on every evaluation.

use cedar_policy::{ActionConstraint, Policy};
use serde_json::Value as Json;

use crate::model::{Action, Purpose};
use crate::policy::action_uid;

/// The optional context attributes whose presence selects a split.
const OPTIONAL_CONTEXT: [&str; 4] = ["case", "grant", "conflict", "justification"];

/// Which of the optional context attributes (`case`, `grant`, `conflict`,
/// `justification`) a request's context carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContextKeys(u8);

impl ContextKeys {
    /// Every combination, by [`Self::index`].
    pub(crate) const COUNT: usize = 1 << OPTIONAL_CONTEXT.len();

    /// These keys and `key` (unchanged if `key` is not an optional context attribute).
    pub fn with(self, key: &str) -> Self {
        match OPTIONAL_CONTEXT.iter().position(|k| *k == key) {
            Some(bit) => Self(self.0 | 1 << bit),
            None => self,
        }
    }

    /// The keys `request`'s context carries.
    pub fn of(request: &cedar_policy::Request) -> Self {
        let context = request.context();
        OPTIONAL_CONTEXT
            .iter()
            .filter(|key| context.is_some_and(|c| c.get(key).is_some()))
            .fold(Self::default(), |keys, key| keys.with(key))
    }

    /// Whether `context has key` holds: `None` when `key` is not an optional attribute.
    fn has(self, key: &str) -> Option<bool> {
        OPTIONAL_CONTEXT.iter().position(|k| *k == key).map(|bit| self.0 & 1 << bit != 0)
    }

    pub(crate) fn index(self) -> usize {
        usize::from(self.0)
    }

    pub(crate) fn all() -> impl Iterator<Item = Self> {
        (0..Self::COUNT as u8).map(Self)
    }
}

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

/// Whether the policy whose JSON form (Cedar's EST) is `policy` can hold for a request
/// declaring `purpose` (`None`: no purpose) whose context carries `keys`. `false` only
/// when one of its conditions, evaluated in order, is decided `false` by these alone and
/// every condition before it is decided `true` by them.
pub(crate) fn may_hold_for(policy: &Json, purpose: Option<Purpose>, keys: ContextKeys) -> bool {
    let Some(conditions) = policy.get("conditions").and_then(Json::as_array) else { return true };
    let known = Known { purpose: purpose.map(Purpose::as_str), keys };
    for condition in conditions {
        let Some(body) = condition.get("body") else { return true };
        let value = match condition.get("kind").and_then(Json::as_str) {
            Some("when") => decided(body, known),
            Some("unless") => decided(body, known).map(|b| !b),
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

/// What the split of a request knows of it.
#[derive(Clone, Copy)]
struct Known<'a> {
    purpose: Option<&'a str>,
    keys: ContextKeys,
}

/// `policy` (whose JSON form is `json`) with an unconstrained action scope, for a split
/// whose requests all have an action the scope admits: the same decision, the same
/// errors, less work. `policy` itself when the JSON form does not convert back.
pub(crate) fn without_action_scope(policy: &Policy, json: &Json) -> Policy {
    if matches!(policy.action_constraint(), ActionConstraint::Any) {
        return policy.clone();
    }
    let mut json = json.clone();
    json["action"] = serde_json::json!({ "op": "All" });
    Policy::from_json(Some(policy.id().clone()), json).unwrap_or_else(|_| policy.clone())
}

/// `Some(b)` when `expr` evaluates to `b`, without error, for any request `known`
/// describes, whatever else the request and its entities hold; `None` when that is not
/// certain. Follows Cedar's left-to-right short-circuit of `&&` and `||`.
fn decided(expr: &Json, known: Known) -> Option<bool> {
    let (op, args) = single_entry(expr)?;
    let side = |name: &str| args.get(name);
    match op {
        "&&" => match decided(side("left")?, known)? {
            false => Some(false),
            true => decided(side("right")?, known),
        },
        "||" => match decided(side("left")?, known)? {
            true => Some(true),
            false => decided(side("right")?, known),
        },
        "!" => decided(side("arg")?, known).map(|b| !b),
        "has" if is_var(side("left")?, "context") => match side("attr")?.as_str()? {
            "purpose" => Some(known.purpose.is_some()),
            attr => known.keys.has(attr),
        },
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
            let equal = known.purpose? == literal;
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

    /// A policy's JSON form, which is what [`may_hold_for`] reads.
    fn policy(text: &str) -> Json {
        Policy::from_str(text).unwrap().to_json().unwrap()
    }

    #[test]
    fn a_purpose_gate_excludes_the_other_purposes_and_the_absent_one_only_when_safe() {
        let p = policy(
            r#"permit (principal, action, resource) when { context has purpose && context.purpose == "LEGAL" && principal.x };"#,
        );
        assert!(may_hold_for(&p, Some(Purpose::Legal), ContextKeys::default()));
        assert!(!may_hold_for(&p, Some(Purpose::Casework), ContextKeys::default()));
        assert!(!may_hold_for(&p, None, ContextKeys::default()));

        // Without the `has` guard, no purpose is an evaluation error: the policy stays.
        let p = policy(r#"permit (principal, action, resource) when { context.purpose == "LEGAL" };"#);
        assert!(!may_hold_for(&p, Some(Purpose::Audit), ContextKeys::default()));
        assert!(may_hold_for(&p, None, ContextKeys::default()));
    }

    #[test]
    fn an_undecided_condition_before_the_gate_keeps_the_policy() {
        // `principal.x` may fail before the purpose is compared: Cedar would report the error.
        let p = policy(
            r#"forbid (principal, action, resource) when { principal.x && context has purpose && context.purpose == "LEGAL" };"#,
        );
        assert!(may_hold_for(&p, Some(Purpose::Casework), ContextKeys::default()));
        let p = policy(
            r#"forbid (principal, action, resource) when { principal.x } when { context has purpose && context.purpose == "LEGAL" };"#,
        );
        assert!(may_hold_for(&p, Some(Purpose::Casework), ContextKeys::default()));
    }

    #[test]
    fn unless_or_and_not_equal_follow_cedar() {
        let p = policy(r#"forbid (principal, action, resource) unless { context has purpose };"#);
        assert!(may_hold_for(&p, None, ContextKeys::default()));
        assert!(!may_hold_for(&p, Some(Purpose::Audit), ContextKeys::default()));

        let p = policy(
            r#"permit (principal, action, resource) when { context has purpose && ("LEGAL" == context.purpose || context.purpose == "AUDIT") };"#,
        );
        assert!(may_hold_for(&p, Some(Purpose::Legal), ContextKeys::default()));
        assert!(may_hold_for(&p, Some(Purpose::Audit), ContextKeys::default()));
        assert!(!may_hold_for(&p, Some(Purpose::Emergency), ContextKeys::default()));

        let p = policy(
            r#"permit (principal, action, resource) when { context has purpose && context.purpose != "EMERGENCY" };"#,
        );
        assert!(!may_hold_for(&p, Some(Purpose::Emergency), ContextKeys::default()));
        assert!(may_hold_for(&p, Some(Purpose::Casework), ContextKeys::default()));

        let p = policy(r#"permit (principal, action, resource) when { !(context has purpose) };"#);
        assert!(may_hold_for(&p, None, ContextKeys::default()));
        assert!(!may_hold_for(&p, Some(Purpose::Casework), ContextKeys::default()));
    }

    #[test]
    fn optional_context_decides_its_has_and_nothing_else() {
        let none = ContextKeys::default();
        let grant = none.with("grant");
        let p =
            policy(r#"permit (principal, action, resource) when { context has grant && context.grant.kind == "X" };"#);
        assert!(!may_hold_for(&p, None, none));
        assert!(may_hold_for(&p, None, grant));
        let p = policy(r#"forbid (principal, action, resource) unless { context has justification };"#);
        assert!(may_hold_for(&p, None, grant));
        assert!(!may_hold_for(&p, None, grant.with("justification")));
        // `time`, `device` and `source_address` are not decided by the split.
        for text in [
            r#"permit (principal, action, resource) when { context has device };"#,
            r#"permit (principal, action, resource) when { context has source_address };"#,
        ] {
            assert!(may_hold_for(&policy(text), None, none), "{text}");
        }
        assert_eq!(none.with("device"), none);
        assert_eq!(ContextKeys::all().count(), ContextKeys::COUNT);
    }

    #[test]
    fn anything_else_is_kept() {
        for text in [
            r#"permit (principal, action, resource);"#,
            r#"permit (principal, action, resource) when { context.purpose like "LEG*" };"#,
        ] {
            for purpose in [None, Some(Purpose::Casework), Some(Purpose::Legal)] {
                assert!(may_hold_for(&policy(text), purpose, ContextKeys::default()), "{text} for {purpose:?}");
            }
        }
        // Without a purpose `context has purpose` is false, so these are rightly left out then;
        // with one, what follows is not decided by the purpose alone.
        for text in [
            r#"permit (principal, action, resource) when { context has purpose && context.purpose == principal.purpose };"#,
            r#"permit (principal, action, resource) when { context has purpose && context.purpose in ["LEGAL"] };"#,
        ] {
            assert!(!may_hold_for(&policy(text), None, ContextKeys::default()), "{text} without a purpose");
            for purpose in [Some(Purpose::Casework), Some(Purpose::Legal)] {
                assert!(may_hold_for(&policy(text), purpose, ContextKeys::default()), "{text} for {purpose:?}");
            }
        }
    }
}
