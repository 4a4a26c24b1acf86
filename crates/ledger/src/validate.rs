//! What an appended event must satisfy before it is sequenced: a known kind
//! the caller owns, the fields the kind requires, well-formed commitments,
//! and a detail (salt and value) behind every commitment that hashes to it.
use std::collections::HashMap;

use quis_core::FieldViolation;
use quis_proto::{
    MAX_DETAIL_VALUE_BYTES,
    ledger::{AccessEvent, Action, Commitment, Decision, EventDetail, Purpose, event::Kind},
};
use sha2::{Digest, Sha256};

/// Most events per call.
pub const MAX_EVENTS: usize = 1000;
/// The tile format's entry size limit.
pub const MAX_ENTRY_BYTES: usize = 65_535;

/// The owner-facing name of an event kind.
pub fn kind_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::Access(_) => "access",
        Kind::Admin(_) => "admin",
        Kind::Triage(_) => "triage",
    }
}

fn commitments(kind: &Kind) -> Vec<(&'static str, &Commitment)> {
    let mut out = Vec::new();
    match kind {
        Kind::Access(a) => {
            out.extend(a.subject.iter().map(|c| ("subject", c)));
            out.extend(a.record.iter().map(|c| ("record", c)));
            out.extend(a.justification.iter().map(|c| ("justification", c)));
            out.extend(a.query.iter().map(|c| ("query", c)));
            out.extend(a.results.iter().map(|c| ("results", c)));
        }
        Kind::Admin(_) => {}
        Kind::Triage(t) => out.extend(t.note.iter().map(|c| ("note", c))),
    }
    out
}

fn check_access(field: &str, a: &AccessEvent, v: &mut Vec<FieldViolation>) {
    if a.actor.as_ref().is_none_or(|actor| actor.principal.is_empty()) {
        v.push(FieldViolation::new(format!("{field}.actor.principal"), "is required"));
    }
    if a.action == Action::Unspecified as i32 || Action::try_from(a.action).is_err() {
        v.push(FieldViolation::new(format!("{field}.action"), "must be a known action"));
    }
    if a.decision == Decision::Unspecified as i32 || Decision::try_from(a.decision).is_err() {
        v.push(FieldViolation::new(format!("{field}.decision"), "must be ALLOW or DENY"));
    }
    // A denied attempt may lack a purpose (that can be why it was denied); an allowed access never does.
    if Purpose::try_from(a.purpose).is_err()
        || (a.purpose == Purpose::Unspecified as i32 && a.decision == Decision::Allow as i32)
    {
        v.push(FieldViolation::new(format!("{field}.purpose"), "must be a known purpose, and set when allowed"));
    }
    if a.subject.is_none() && a.action != Action::Search as i32 {
        v.push(FieldViolation::new(format!("{field}.subject"), "is required except for searches"));
    }
    if !a.case.is_empty() && quis_core::error::check_id("case", a.case.strip_prefix("cases/").unwrap_or("")).is_err() {
        v.push(FieldViolation::new(format!("{field}.case"), "must be a case resource name, cases/{case}"));
    }
}

/// A commitment digest and the plaintext behind it (salt length, salt, value).
pub type Detail = ([u8; 32], Vec<u8>);

/// Checks a request's events and details; returns, for each event, the
/// details behind its commitments.
pub fn check(
    events: &[quis_proto::ledger::Event],
    details: &[EventDetail],
) -> Result<Vec<Vec<Detail>>, Vec<FieldViolation>> {
    let mut v = Vec::new();
    if events.is_empty() || events.len() > MAX_EVENTS {
        v.push(FieldViolation::new("events", "must hold 1 to 1000 events"));
        return Err(v);
    }
    let mut by_digest: HashMap<[u8; 32], Vec<u8>> = HashMap::new();
    for (i, d) in details.iter().enumerate() {
        if d.salt.len() < 16 || d.salt.len() > 64 {
            v.push(FieldViolation::new(format!("details[{i}].salt"), "must be 16 to 64 bytes"));
            continue;
        }
        if d.value.len() > MAX_DETAIL_VALUE_BYTES {
            v.push(FieldViolation::new(
                format!("details[{i}].value"),
                format!("must be at most {MAX_DETAIL_VALUE_BYTES} bytes"),
            ));
            continue;
        }
        let digest: [u8; 32] = Sha256::new().chain_update(&d.salt).chain_update(d.value.as_bytes()).finalize().into();
        let mut plain = vec![d.salt.len() as u8];
        plain.extend_from_slice(&d.salt);
        plain.extend_from_slice(d.value.as_bytes());
        by_digest.insert(digest, plain);
    }
    let mut per_event = Vec::with_capacity(events.len());
    let mut used = std::collections::HashSet::new();
    for (i, event) in events.iter().enumerate() {
        let field = format!("events[{i}]");
        let Some(kind) = &event.kind else {
            v.push(FieldViolation::new(field, "must hold an access, admin or triage event"));
            per_event.push(Vec::new());
            continue;
        };
        if let Kind::Access(a) = kind {
            check_access(&field, a, &mut v);
        }
        let mut mine = Vec::new();
        for (name, c) in commitments(kind) {
            let Ok(digest) = <[u8; 32]>::try_from(c.digest.as_slice()) else {
                v.push(FieldViolation::new(format!("{field}.{name}.digest"), "must be 32 bytes (SHA-256)"));
                continue;
            };
            match by_digest.get(&digest) {
                Some(plain) => {
                    // A commitment repeated in the batch is stored once.
                    if used.insert(digest) {
                        mine.push((digest, plain.clone()));
                    }
                }
                None => v.push(FieldViolation::new(
                    format!("{field}.{name}"),
                    "has no detail whose SHA-256(salt || value) equals it",
                )),
            }
        }
        per_event.push(mine);
    }
    if v.is_empty() && used.len() < by_digest.len() {
        v.push(FieldViolation::new("details", "every detail must belong to a commitment in the events"));
    }
    if v.is_empty() { Ok(per_event) } else { Err(v) }
}
