//! Between the wire messages and the library's types, and the checks every
//! guarded call's `AccessContext` must pass.
use quis_proto::{
    ledger,
    policy::{self as pb, Compartment},
    vault as v,
};
use quis_vault::{Field, FieldValue, Instant, RecordView, SubjectInput, SubjectView, names};

use crate::error::{ServiceError, Violations};

/// Longest justification, in characters (as policy accepts).
pub const MAX_JUSTIFICATION_CHARS: usize = 2000;
/// Longest justification in UTF-8 bytes: the most the ledger keeps behind a commitment.
pub const MAX_JUSTIFICATION_BYTES: usize = quis_proto::MAX_DETAIL_VALUE_BYTES;

pub fn timestamp_us(us: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: us.div_euclid(1_000_000), nanos: (us.rem_euclid(1_000_000) * 1000) as i32 }
}

pub fn field_to_proto(f: Field) -> v::Field {
    use v::field::Value;
    let value = f.value.map(|value| match value {
        FieldValue::String(s) => Value::StringValue(s),
        FieldValue::Int(i) => Value::IntValue(i),
        FieldValue::Decimal(d) => Value::DecimalValue(d),
        FieldValue::Bool(b) => Value::BoolValue(b),
        FieldValue::Date(d) => Value::DateValue(d),
        FieldValue::Timestamp(t) => {
            Value::TimestampValue(prost_types::Timestamp { seconds: t.seconds, nanos: t.nanos })
        }
        FieldValue::Bytes(b) => Value::BytesValue(b),
    });
    v::Field { name: f.name, sensitivity: f.sensitivity, value }
}

pub fn field_from_proto(f: v::Field) -> Field {
    use v::field::Value;
    let value = f.value.map(|value| match value {
        Value::StringValue(s) => FieldValue::String(s),
        Value::IntValue(i) => FieldValue::Int(i),
        Value::DecimalValue(d) => FieldValue::Decimal(d),
        Value::BoolValue(b) => FieldValue::Bool(b),
        Value::DateValue(d) => FieldValue::Date(d),
        Value::TimestampValue(t) => FieldValue::Timestamp(Instant { seconds: t.seconds, nanos: t.nanos }),
        Value::BytesValue(b) => FieldValue::Bytes(b),
    });
    // The library checks the sensitivity (unknown numbers are refused at ingest).
    Field { name: f.name, sensitivity: f.sensitivity, value }
}

pub fn record_to_proto(r: RecordView) -> v::Record {
    v::Record {
        name: r.name,
        kind: r.kind,
        fields: r.fields.into_iter().map(field_to_proto).collect(),
        version: r.version,
        create_time: Some(timestamp_us(r.create_time_us)),
        update_time: Some(timestamp_us(r.update_time_us)),
    }
}

/// A subject as answered: never the decoy mark.
pub fn subject_to_proto(s: SubjectView) -> v::Subject {
    v::Subject {
        name: s.name,
        given_names: s.given_names,
        family_name: s.family_name,
        date_of_birth: s.date_of_birth,
        postcode: s.postcode,
        reference_number: s.reference_number,
        address_lines: s.address_lines,
        household: s.household,
        compartment: s.compartment,
        protected: s.protected,
        decoy: false,
        create_time: Some(timestamp_us(s.create_time_us)),
        update_time: Some(timestamp_us(s.update_time_us)),
    }
}

pub fn subject_input(s: &v::Subject) -> SubjectInput {
    SubjectInput {
        given_names: s.given_names.clone(),
        family_name: s.family_name.clone(),
        date_of_birth: s.date_of_birth.clone(),
        postcode: s.postcode.clone(),
        reference_number: s.reference_number.clone(),
        address_lines: s.address_lines.clone(),
        household: s.household.clone(),
        compartment: s.compartment.clone(),
        protected: s.protected,
        decoy: s.decoy,
    }
}

/// The compartments policy knows, by the vault's names for them.
const COMPARTMENTS: &[(&str, Compartment)] = &[
    ("public-figure", Compartment::PublicFigure),
    ("politician", Compartment::Politician),
    ("own-staff", Compartment::OwnStaff),
    ("protected-person", Compartment::Protected),
];

/// The rule a subject's compartment must follow.
pub fn compartment_rule() -> String {
    let names: Vec<&str> = COMPARTMENTS.iter().map(|(n, _)| *n).collect();
    format!("must be empty or one of {}", names.join(", "))
}

/// Policy's compartments for a subject: its named compartment, and `protected-person` if protected.
pub fn policy_compartments(compartment: &str, protected: bool) -> Option<Vec<i32>> {
    let mut out = Vec::new();
    if !compartment.is_empty() {
        out.push(COMPARTMENTS.iter().find(|(n, _)| *n == compartment)?.1 as i32);
    }
    if protected && !out.contains(&(Compartment::Protected as i32)) {
        out.push(Compartment::Protected as i32);
    }
    Some(out)
}

/// A checked `AccessContext`.
#[derive(Clone, Debug)]
pub struct Context {
    pub purpose: ledger::Purpose,
    pub case: String,
    pub justification: String,
}

impl Context {
    /// For policy: the purpose codes share their numbers with the ledger's.
    pub fn check_context(&self, source_address: &str) -> pb::CheckContext {
        pb::CheckContext {
            purpose: self.purpose as i32,
            case: self.case.clone(),
            justification: self.justification.clone(),
            time: None,
            source_address: source_address.to_string(),
            device: String::new(),
        }
    }
}

/// Whether a case is needed: everything but emergencies and register-wide searches names one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum CaseRule {
    Required,
    Optional,
}

/// Checks a context: a known purpose, a well-formed case (required per `rule`
/// unless the purpose is an emergency), a justification of bounded length.
pub fn context(field: &str, ctx: Option<&v::AccessContext>, rule: CaseRule, violations: &mut Violations) -> Context {
    let ctx = ctx.cloned().unwrap_or_default();
    let at = |name: &str| if field.is_empty() { name.to_string() } else { format!("{field}.{name}") };
    let purpose = ledger::Purpose::try_from(ctx.purpose).unwrap_or(ledger::Purpose::Unspecified);
    if purpose == ledger::Purpose::Unspecified {
        violations.add(at("purpose"), "is required: a known purpose of use");
    }
    if ctx.case.is_empty() {
        if rule == CaseRule::Required
            && purpose != ledger::Purpose::Emergency
            && purpose != ledger::Purpose::Unspecified
        {
            violations.add(at("case"), "is required: the case the work belongs to, cases/{case}");
        }
    } else if !ctx.case.strip_prefix("cases/").is_some_and(names::is_valid_id) {
        violations.add(at("case"), "must be cases/{case} with an id of 1 to 64 characters of [a-z0-9-]");
    }
    if ctx.justification.chars().count() > MAX_JUSTIFICATION_CHARS
        || ctx.justification.chars().any(|c| c.is_control() && c != '\n')
    {
        violations
            .add(at("justification"), format!("at most {MAX_JUSTIFICATION_CHARS} characters, no control characters"));
    } else if ctx.justification.len() > MAX_JUSTIFICATION_BYTES {
        violations.add(at("justification"), quis_proto::detail_value_bytes_rule());
    }
    Context { purpose, case: ctx.case, justification: ctx.justification }
}

/// Checks field names asked for: `[a-z][a-z0-9_]*`, at most 64 characters, at most 256 of them.
pub fn asked_fields(field: &str, asked: &[String], violations: &mut Violations) {
    if asked.len() > quis_vault::MAX_FIELDS {
        violations.add(field, format!("at most {} field names", quis_vault::MAX_FIELDS));
    }
    for (i, name) in asked.iter().enumerate() {
        let mut bytes = name.bytes();
        let ok = name.len() <= 64
            && bytes.next().is_some_and(|b| b.is_ascii_lowercase())
            && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            violations.add(format!("{field}[{i}]"), "must match [a-z][a-z0-9_]* and be at most 64 characters");
        }
    }
}

/// The distinct field tags of the names asked for, for policy.
pub fn asked_tags(asked: &[String]) -> Vec<String> {
    let mut tags: Vec<String> = asked.iter().map(|n| crate::guarded::field_tag(n).to_string()).collect();
    tags.sort();
    tags.dedup();
    tags
}

/// A page size: 0 means `default`, else 1 to `max`.
pub fn page_size(field: &str, value: i32, default: usize, max: usize) -> Result<usize, ServiceError> {
    match usize::try_from(value) {
        Ok(0) => Ok(default),
        Ok(n) if n <= max => Ok(n),
        _ => Err(ServiceError::invalid(field, format!("must be 0 to {max}"))),
    }
}
