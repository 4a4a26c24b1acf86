//! What sentinel reasons about: a ledger entry decoded from the exact bytes
//! the ledger hashed (its leaf hash kept as evidence), and the enriched access
//! event the detections read: its subject opened through the ledger's event
//! details, its parties looked up in policy's entities ([`crate::enrich`]).
//! Without a policy link the entity fields stay `None` and the detections that
//! need them do not run.
use std::sync::Arc;

use prost::Message;
use quis_proto::ledger::{Action, Decision, LedgerEntry, Purpose, event::Kind};
use quis_tlog::Hash;

use crate::entities::{Staff, Subject};

/// A ledger entry as received, decoded.
#[derive(Clone, Debug)]
pub struct Observed {
    /// Its index in the ledger.
    pub index: u64,
    /// `SHA-256(0x00 || stored bytes)`: what an inclusion proof proves.
    pub leaf_hash: Hash,
    /// The ledger's sequencing time, milliseconds since the epoch.
    pub time_ms: i64,
    /// The service that appended it.
    pub appended_by: String,
    /// The event.
    pub event: Kind,
}

/// An entry that is not a well-formed `LedgerEntry` (the ledger validated it on append, so this is tampering).
#[derive(Debug, thiserror::Error)]
#[error("entry {index} does not decode: {why}")]
pub struct DecodeError {
    pub index: u64,
    pub leaf_hash: Hash,
    pub why: String,
}

/// Decodes an entry from its stored bytes.
pub fn decode(index: u64, data: &[u8]) -> Result<Observed, DecodeError> {
    let leaf_hash = quis_tlog::leaf_hash(data);
    let fail = |why: String| DecodeError { index, leaf_hash, why };
    let entry = LedgerEntry::decode(data).map_err(|e| fail(e.to_string()))?;
    let time = entry.sequence_time.ok_or_else(|| fail("no sequence time".into()))?;
    let event = entry.event.and_then(|e| e.kind).ok_or_else(|| fail("no event".into()))?;
    let time_ms = time.seconds.saturating_mul(1000).saturating_add(i64::from(time.nanos / 1_000_000));
    Ok(Observed { index, leaf_hash, time_ms, appended_by: entry.appended_by, event })
}

/// What accounts for an access, once its parties are known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Explanation {
    /// Not judged: sentinel has no entities (no policy link), or the actor is not staff.
    Unknown,
    /// An open case about the subject, assigned to the actor.
    AssignedCase,
    /// An open case about the subject, assigned to the actor's team, or (for a team lead) to
    /// a team under theirs or one of its members.
    TeamCase,
    /// A grant on the subject in force at the time.
    Grant,
    /// A declared purpose that needs no case (`unexplained_access.explaining_purposes`).
    Purpose,
    /// Nothing accounts for it.
    Nothing,
}

/// An access event with what is known about its parties.
#[derive(Clone, Debug)]
pub struct EnrichedAccess {
    pub index: u64,
    pub leaf_hash: Hash,
    pub time_ms: i64,
    pub actor: String,
    pub actor_kind: String,
    /// Source address, else device: where the credential was used from.
    pub host: String,
    pub device: String,
    /// The site in the actor's token at the time.
    pub site: String,
    pub action: Action,
    pub decision: Decision,
    pub purpose: Purpose,
    pub case: String,
    /// The subject's commitment digest.
    pub subject: Option<Vec<u8>>,
    /// The search terms' commitment digests.
    pub query: Vec<Vec<u8>>,
    /// The restricted compartment the event names, if any.
    pub compartment: String,
    pub has_justification: bool,
    pub break_glass_grant: String,
    pub result_count: u32,
    pub truncated: bool,
    /// The subject id behind the commitment, opened through the ledger's event details.
    pub subject_id: Option<String>,
    /// The search terms, opened likewise (never stored).
    pub query_terms: Vec<String>,
    pub actor_entity: Option<Arc<Staff>>,
    pub subject_entity: Option<Arc<Subject>>,
    pub explanation: Explanation,
}

impl EnrichedAccess {
    /// The access event of an observed entry, not yet enriched; `None` for other kinds.
    pub fn from_observed(o: &Observed) -> Option<Self> {
        let Kind::Access(a) = &o.event else { return None };
        let actor = a.actor.clone().unwrap_or_default();
        let host = if actor.source_address.is_empty() { actor.device.clone() } else { actor.source_address };
        Some(Self {
            index: o.index,
            leaf_hash: o.leaf_hash,
            time_ms: o.time_ms,
            actor: actor.principal,
            actor_kind: actor.kind,
            host,
            device: actor.device,
            site: actor.site,
            action: Action::try_from(a.action).unwrap_or(Action::Unspecified),
            decision: Decision::try_from(a.decision).unwrap_or(Decision::Unspecified),
            purpose: Purpose::try_from(a.purpose).unwrap_or(Purpose::Unspecified),
            case: a.case.clone(),
            subject: a.subject.as_ref().map(|c| c.digest.clone()),
            query: a.query.iter().map(|c| c.digest.clone()).collect(),
            compartment: a.compartment.clone(),
            has_justification: a.justification.is_some(),
            break_glass_grant: a.break_glass_grant.clone(),
            result_count: a.result_count,
            truncated: a.truncated,
            subject_id: None,
            query_terms: Vec::new(),
            actor_entity: None,
            subject_entity: None,
            explanation: Explanation::Unknown,
        })
    }

    /// Whether something accounts for the access. Without entities, the access's own
    /// declaration (a case, or a purpose that needs none) is taken at its word.
    pub fn explained(&self) -> bool {
        match self.explanation {
            Explanation::Unknown => {
                !self.case.is_empty() || matches!(self.purpose, Purpose::TaxpayerService | Purpose::Audit)
            }
            Explanation::Nothing => false,
            _ => true,
        }
    }

    /// Whether an assignment (a case or a grant) accounts for it, not only a declared purpose.
    pub fn assigned(&self) -> bool {
        matches!(self.explanation, Explanation::AssignedCase | Explanation::TeamCase | Explanation::Grant)
    }
}
