//! Policy sets: parsing, validation against the Quis schema, obligations read from
//! annotations, and a split of the set per action and purpose so each check evaluates
//! only the policies that can hold for it (see [`crate::partition`]).

use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::{Arc, LazyLock};

use cedar_policy::{Effect, PolicyId, Schema, ValidationMode, Validator};
use miette::Diagnostic;
use sha2::{Digest, Sha256};

use crate::model::{Action, Purpose};
use crate::partition::{ContextKeys, admits_action, may_hold_for, without_action_scope};

/// The Cedar schema of Quis (namespace `Quis`).
pub const SCHEMA: &str = include_str!("../pack/quis.cedarschema");
/// The default policy pack shipped with Quis.
pub const DEFAULT_POLICIES: &str = include_str!("../pack/default.cedar");

/// Largest policy set accepted, in bytes of source text.
pub const MAX_POLICY_SET_BYTES: usize = 256 * 1024;
/// Most policies accepted in one set.
pub const MAX_POLICIES: usize = 1_000;
/// Longest field tag, alert or reason annotation accepted.
const MAX_ANNOTATION_LEN: usize = 512;

static SCHEMA_PARSED: LazyLock<Schema> = LazyLock::new(|| {
    // The schema is a constant of this crate and the tests parse it.
    Schema::from_str(SCHEMA).expect("the built-in Quis schema parses")
});

/// The parsed built-in schema.
pub fn schema() -> &'static Schema {
    &SCHEMA_PARSED
}

/// The built-in default: schema and policy pack.
#[derive(Clone, Copy, Debug)]
pub struct Pack {
    pub schema: &'static str,
    pub policies: &'static str,
}

impl Default for Pack {
    fn default() -> Self {
        Self { schema: SCHEMA, policies: DEFAULT_POLICIES }
    }
}

impl Pack {
    /// Compiles the pack's policies (the tests prove the built-in pack compiles).
    pub fn compile(&self) -> Result<PolicySet, Vec<PolicyError>> {
        PolicySet::compile(self.policies)
    }
}

/// What is wrong with a policy set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyErrorKind {
    /// Not Cedar syntax.
    Syntax,
    /// Does not type-check against the schema.
    Validation,
    /// A missing, malformed or duplicated `@id`, or a malformed obligation annotation.
    Annotation,
    /// Larger than [`MAX_POLICY_SET_BYTES`] or [`MAX_POLICIES`]; templates are refused too.
    Limit,
}

/// One error in a policy set, with the policy it is in and its 1-based line and column
/// in the submitted text (when known).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError {
    pub kind: PolicyErrorKind,
    pub policy_id: Option<String>,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(id) = &self.policy_id {
            write!(f, "policy {id}: ")?;
        }
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, "{line}:{column}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Alert level an access raises (an obligation); ordered, `max` wins.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlertLevel {
    #[default]
    None,
    Low,
    High,
    Critical,
}

impl AlertLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertLevel::None => "none",
            AlertLevel::Low => "low",
            AlertLevel::High => "high",
            AlertLevel::Critical => "critical",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(AlertLevel::None),
            "low" => Some(AlertLevel::Low),
            "high" => Some(AlertLevel::High),
            "critical" => Some(AlertLevel::Critical),
            _ => None,
        }
    }
}

/// How a permit's `@break_glass` annotation sets the break-glass expiry obligation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakGlassRule {
    /// `@break_glass("grant")`: the access rides on the active break-glass grant; its expiry.
    Grant,
    /// `@break_glass("<seconds>")`: starting a break-glass; it may last this long.
    StartFor(i64),
}

/// What a policy's annotations say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyMeta {
    pub effect: Effect,
    /// Position in the set's text; reasons are reported in this order.
    pub order: usize,
    /// `@fields("a,b")`: record field tags this permit allows.
    pub fields: BTreeSet<String>,
    /// `@alert("low" | "high" | "critical")`.
    pub alert: AlertLevel,
    /// `@reason("...")`: the full reason (ledger).
    pub reason: Option<String>,
    /// `@public_reason("...")`: what the caller may read. A forbid without one is hidden:
    /// the caller gets the reason they would have had without it.
    pub public_reason: Option<String>,
    pub break_glass: Option<BreakGlassRule>,
    /// `@uses_grant("true")`: the permit holds through the request's grant, which the
    /// decision then names (for the ledger).
    pub uses_grant: bool,
    /// `@history_release("<seconds>")`: a covert access, hidden from the data
    /// subject's access history for this long after it happened.
    pub history_release: Option<i64>,
}

/// A compiled, validated policy set with its version.
#[derive(Clone, Debug)]
pub struct PolicySet {
    inner: Arc<Compiled>,
}

#[derive(Debug)]
struct Compiled {
    version: String,
    text: String,
    all: cedar_policy::PolicySet,
    /// For each [`Action`] (by `Action::ALL` index): the policies whose action scope can match it.
    by_action: Vec<cedar_policy::PolicySet>,
    /// For each [`Action`], purpose and [`ContextKeys`] (by [`request_slot`]): the policies that can hold.
    by_request: Vec<cedar_policy::PolicySet>,
    meta: HashMap<PolicyId, PolicyMeta>,
}

impl Default for PolicySet {
    /// The default pack (compiled once per process).
    fn default() -> Self {
        static DEFAULT: LazyLock<PolicySet> = LazyLock::new(|| {
            // The pack is a constant of this crate and the tests compile it.
            Pack::default().compile().expect("the default policy pack compiles")
        });
        DEFAULT.clone()
    }
}

impl PolicySet {
    /// Parses `text`, requires a unique `@id` on every policy (the id reported in decisions),
    /// checks the obligation annotations and validates the set against the Quis schema
    /// (strict mode). Every problem found is returned, each with its policy and position.
    pub fn compile(text: &str) -> Result<PolicySet, Vec<PolicyError>> {
        if text.len() > MAX_POLICY_SET_BYTES {
            return Err(vec![limit_error(format!(
                "policy set is {} bytes; at most {MAX_POLICY_SET_BYTES} are accepted",
                text.len()
            ))]);
        }
        let parsed = cedar_policy::PolicySet::from_str(text).map_err(|errs| parse_errors(text, &errs))?;
        if parsed.num_of_templates() > 0 {
            return Err(vec![limit_error("templates are not accepted in a Quis policy set".into())]);
        }
        if parsed.num_of_policies() > MAX_POLICIES {
            return Err(vec![limit_error(format!(
                "policy set has {} policies; at most {MAX_POLICIES} are accepted",
                parsed.num_of_policies()
            ))]);
        }

        let starts = policy_starts(text);
        let mut errors = Vec::new();
        let mut renamed = cedar_policy::PolicySet::new();
        let mut meta = HashMap::new();
        // Cedar numbers policies `policy0..` in source order; sort to keep that order.
        let mut policies: Vec<_> = parsed.policies().collect();
        policies.sort_by_key(|p| p.id().to_string().trim_start_matches("policy").parse::<usize>().unwrap_or(0));
        for (index, policy) in policies.into_iter().enumerate() {
            let at = starts.get(index).map(|&offset| line_column(text, offset));
            let annotation_error = |policy_id: Option<String>, message: String| PolicyError {
                kind: PolicyErrorKind::Annotation,
                policy_id,
                line: at.map(|a| a.0),
                column: at.map(|a| a.1),
                message,
            };
            let Some(id) = policy.annotation("id") else {
                errors.push(annotation_error(
                    None,
                    format!("policy number {} has no @id(\"...\") annotation", index + 1),
                ));
                continue;
            };
            if !is_policy_id(id) {
                errors.push(annotation_error(
                    Some(id.to_string()),
                    "@id must be 1-64 characters of a-z, 0-9 and '-'".into(),
                ));
                continue;
            }
            match read_meta(policy, index) {
                Ok(m) => {
                    meta.insert(PolicyId::new(id), m);
                }
                Err(message) => errors.push(annotation_error(Some(id.to_string()), message)),
            }
            if renamed.add(policy.new_id(PolicyId::new(id))).is_err() {
                errors.push(annotation_error(Some(id.to_string()), format!("duplicate @id(\"{id}\")")));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }

        let validation = Validator::new(schema().clone()).validate(&renamed, ValidationMode::Strict);
        if !validation.validation_passed() {
            return Err(validation
                .validation_errors()
                .map(|e| {
                    let at = first_label(e).map(|offset| line_column(text, offset));
                    PolicyError {
                        kind: PolicyErrorKind::Validation,
                        policy_id: Some(e.policy_id().to_string()),
                        line: at.map(|a| a.0),
                        column: at.map(|a| a.1),
                        message: e.to_string(),
                    }
                })
                .collect());
        }

        // Per action, the policies its scope admits, each without its action scope and with its
        // JSON form (Cedar's EST, computed once: the splits read it).
        let json: Vec<(&cedar_policy::Policy, Option<serde_json::Value>)> =
            renamed.policies().map(|p| (p, p.to_json().ok())).collect();
        let for_action: Vec<Vec<(cedar_policy::Policy, Option<&serde_json::Value>)>> = Action::ALL
            .iter()
            .map(|&action| {
                json.iter()
                    .filter(|(p, _)| admits_action(p, action))
                    .map(|(p, json)| match json {
                        Some(json) => (without_action_scope(p, json), Some(json)),
                        None => ((*p).clone(), None),
                    })
                    .collect()
            })
            .collect();
        let by_action = for_action.iter().map(|policies| subset(policies, |_| true)).collect();
        let by_request = for_action
            .iter()
            .flat_map(|policies| {
                PURPOSES.iter().flat_map(move |&purpose| {
                    ContextKeys::all().map(move |keys| {
                        // A policy whose JSON form is unknown is kept.
                        subset(policies, |json| json.is_none_or(|json| may_hold_for(json, purpose, keys)))
                    })
                })
            })
            .collect();
        let version = hex::encode(Sha256::digest(text.as_bytes()));
        Ok(PolicySet {
            inner: Arc::new(Compiled { version, text: text.to_string(), all: renamed, by_action, by_request, meta }),
        })
    }

    /// Hex SHA-256 of the policy text.
    pub fn version(&self) -> &str {
        &self.inner.version
    }

    /// The source text it was compiled from.
    pub fn text(&self) -> &str {
        &self.inner.text
    }

    /// The whole validated Cedar policy set (policies named by their `@id`).
    pub fn cedar(&self) -> &cedar_policy::PolicySet {
        &self.inner.all
    }

    /// The policies that can apply to `action` (same decisions as [`Self::cedar`] for it).
    /// Their action scopes are dropped: hand it requests of `action` only.
    pub fn for_action(&self, action: Action) -> &cedar_policy::PolicySet {
        let index = Action::ALL.iter().position(|a| *a == action).unwrap_or(0);
        &self.inner.by_action[index]
    }

    /// The policies that can hold for a request of `action` declaring `purpose` whose
    /// context carries the optional attributes `keys` (same decisions, determining policies
    /// and errors as [`Self::cedar`] for such a request). Their action scopes are dropped:
    /// hand it such requests only.
    pub fn for_request(&self, action: Action, purpose: Option<Purpose>, keys: ContextKeys) -> &cedar_policy::PolicySet {
        &self.inner.by_request[request_slot(action, purpose, keys)]
    }

    /// The `@id`s of the set's policies, in source order.
    pub fn policy_ids(&self) -> Vec<String> {
        let mut ids: Vec<(&PolicyId, &PolicyMeta)> = self.inner.meta.iter().collect();
        ids.sort_by_key(|(_, m)| m.order);
        ids.into_iter().map(|(id, _)| id.to_string()).collect()
    }

    pub fn meta(&self, id: &PolicyId) -> Option<&PolicyMeta> {
        self.inner.meta.get(id)
    }

    pub fn len(&self) -> usize {
        self.inner.meta.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.meta.is_empty()
    }
}

pub(crate) fn action_uid(action: Action) -> cedar_policy::EntityUid {
    static UIDS: LazyLock<Vec<cedar_policy::EntityUid>> = LazyLock::new(|| {
        Action::ALL
            .iter()
            .map(|a| {
                cedar_policy::EntityUid::from_type_name_and_id(
                    cedar_policy::EntityTypeName::from_str("Quis::Action").expect("valid type name"),
                    cedar_policy::EntityId::new(a.as_str()),
                )
            })
            .collect()
    });
    let index = Action::ALL.iter().position(|a| *a == action).unwrap_or(0);
    UIDS[index].clone()
}

/// No purpose, then every purpose: the purposes a request can declare.
const PURPOSES: [Option<Purpose>; 1 + Purpose::ALL.len()] = {
    let mut all = [None; 1 + Purpose::ALL.len()];
    let mut i = 0;
    while i < Purpose::ALL.len() {
        all[i + 1] = Some(Purpose::ALL[i]);
        i += 1;
    }
    all
};

/// The position of (action, purpose, keys) in `Compiled::by_request`.
fn request_slot(action: Action, purpose: Option<Purpose>, keys: ContextKeys) -> usize {
    let action = Action::ALL.iter().position(|a| *a == action).unwrap_or(0);
    let purpose = PURPOSES.iter().position(|p| *p == purpose).unwrap_or(0);
    (action * PURPOSES.len() + purpose) * ContextKeys::COUNT + keys.index()
}

/// The policies that `keep` admits, given their JSON form.
fn subset(
    policies: &[(cedar_policy::Policy, Option<&serde_json::Value>)],
    keep: impl Fn(Option<&serde_json::Value>) -> bool,
) -> cedar_policy::PolicySet {
    let mut out = cedar_policy::PolicySet::new();
    for (policy, _) in policies.iter().filter(|(_, json)| keep(*json)) {
        // Ids are unique in the set, so adding cannot collide.
        let _ = out.add(policy.clone());
    }
    out
}

fn read_meta(policy: &cedar_policy::Policy, order: usize) -> Result<PolicyMeta, String> {
    for (key, value) in policy.annotations() {
        if value.len() > MAX_ANNOTATION_LEN {
            return Err(format!("@{key} is longer than {MAX_ANNOTATION_LEN} characters"));
        }
    }
    let effect = policy.effect();
    let fields = match policy.annotation("fields") {
        None => BTreeSet::new(),
        Some(list) => {
            let tags: BTreeSet<String> = list.split(',').map(|t| t.trim().to_string()).collect();
            if let Some(bad) = tags.iter().find(|t| !is_field_tag(t)) {
                return Err(format!("@fields: {bad:?} is not a field tag (1-32 characters of a-z, 0-9, '_')"));
            }
            tags
        }
    };
    let alert = match policy.annotation("alert") {
        None => AlertLevel::None,
        Some(level) => AlertLevel::parse(level)
            .ok_or_else(|| format!("@alert must be \"none\", \"low\", \"high\" or \"critical\", not {level:?}"))?,
    };
    let break_glass = match policy.annotation("break_glass") {
        None => None,
        Some("grant") => Some(BreakGlassRule::Grant),
        Some(seconds) => match seconds.parse::<i64>() {
            Ok(s) if s > 0 => Some(BreakGlassRule::StartFor(s)),
            _ => {
                return Err(format!("@break_glass must be \"grant\" or a positive number of seconds, not {seconds:?}"));
            }
        },
    };
    let uses_grant = match policy.annotation("uses_grant") {
        None => false,
        Some("true") => true,
        Some(other) => return Err(format!("@uses_grant must be \"true\", not {other:?}")),
    };
    let history_release = match policy.annotation("history_release") {
        None => None,
        Some(seconds) => match seconds.parse::<i64>() {
            Ok(s) if s > 0 => Some(s),
            _ => return Err(format!("@history_release must be a positive number of seconds, not {seconds:?}")),
        },
    };
    if effect == Effect::Forbid
        && (!fields.is_empty() || break_glass.is_some() || uses_grant || history_release.is_some())
    {
        return Err("@fields, @break_glass, @uses_grant and @history_release belong on permits, not on forbids".into());
    }
    Ok(PolicyMeta {
        effect,
        order,
        fields,
        alert,
        reason: policy.annotation("reason").map(str::to_string),
        public_reason: policy.annotation("public_reason").map(str::to_string),
        break_glass,
        uses_grant,
        history_release,
    })
}

pub(crate) fn is_field_tag(tag: &str) -> bool {
    (1..=32).contains(&tag.len()) && tag.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn is_policy_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn limit_error(message: String) -> PolicyError {
    PolicyError { kind: PolicyErrorKind::Limit, policy_id: None, line: None, column: None, message }
}

fn parse_errors(text: &str, errs: &cedar_policy::ParseErrors) -> Vec<PolicyError> {
    errs.iter()
        .map(|e| {
            let at = first_label(e).map(|offset| line_column(text, offset));
            // A syntax error has no policy id yet: name the policy by its number in the text.
            let policy_id = first_label(e).map(|offset| {
                let n = policy_starts(text).iter().filter(|&&s| s <= offset).count();
                format!("policy number {}", n.max(1))
            });
            PolicyError {
                kind: PolicyErrorKind::Syntax,
                policy_id,
                line: at.map(|a| a.0),
                column: at.map(|a| a.1),
                message: e.to_string(),
            }
        })
        .collect()
}

fn first_label(e: &dyn Diagnostic) -> Option<usize> {
    e.labels()?.next().map(|l| l.offset())
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Byte offsets where each policy starts (its first annotation or its effect keyword), in
/// source order, skipping comments and string literals. Cedar's public API does not expose
/// policy source locations, and errors must name a position.
fn policy_starts(text: &str) -> Vec<usize> {
    let bytes = text.as_bytes();
    let mut starts = Vec::new();
    let mut pending_annotation: Option<usize> = None;
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'(' | b'{' | b'[' => depth += 1,
            b')' | b'}' | b']' => depth = depth.saturating_sub(1),
            b'@' if depth == 0 => {
                pending_annotation.get_or_insert(i);
            }
            b'p' | b'f' if depth == 0 && (i == 0 || !is_ident_byte(bytes[i - 1])) => {
                let word_end = (i..bytes.len()).find(|&j| !is_ident_byte(bytes[j])).unwrap_or(bytes.len());
                let word = &text[i..word_end];
                if word == "permit" || word == "forbid" {
                    starts.push(pending_annotation.take().unwrap_or(i));
                }
                i = word_end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    starts
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_starts_skip_comments_strings_and_bodies() {
        let text = "// permit(\n@id(\"a\")\npermit(principal, action, resource) when { \"forbid\" == \"x\" };\nforbid(principal, action, resource);";
        let starts = policy_starts(text);
        assert_eq!(starts.len(), 2);
        assert_eq!(line_column(text, starts[0]), (2, 1));
        assert_eq!(line_column(text, starts[1]), (4, 1));
    }
}
