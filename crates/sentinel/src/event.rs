//! What sentinel reasons about: a ledger entry decoded from the exact bytes
//! the ledger hashed (its leaf hash kept as evidence), and the enriched access
//! event the detections read. Enrichment with policy's entities comes with the
//! policy service; until then the entity fields are `None` and detections that
//! need them do not run.
use prost::Message;
use quis_proto::ledger::{Action, Decision, LedgerEntry, Purpose, event::Kind};
use quis_tlog::Hash;

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

/// The actor's staff entity, from policy (later).
#[derive(Clone, Debug, Default)]
pub struct StaffEntity {
    pub team: String,
    pub site: String,
    /// `active`, `dormant` or `terminated`.
    pub status: String,
    /// Usual working hours (local, `[start, end)`), if the staff member works shifts.
    pub shift_hours: Option<(u8, u8)>,
    /// Relationship keys (HMAC of surname, address, household).
    pub relationship_keys: Vec<[u8; 32]>,
}

/// The subject's entity, from policy (later).
#[derive(Clone, Debug, Default)]
pub struct SubjectEntity {
    pub compartments: Vec<String>,
    /// A decoy (honeytoken) that no legitimate work touches.
    pub decoy: bool,
    pub relationship_keys: Vec<[u8; 32]>,
}

/// The case an access names, from policy (later).
#[derive(Clone, Debug, Default)]
pub struct CaseEntity {
    pub open: bool,
    /// Staff and teams assigned.
    pub assignees: Vec<String>,
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
    pub action: Action,
    pub decision: Decision,
    pub purpose: Purpose,
    pub case: String,
    pub subject: Option<Vec<u8>>,
    pub has_justification: bool,
    pub break_glass_grant: String,
    pub result_count: u32,
    pub actor_entity: Option<StaffEntity>,
    pub subject_entity: Option<SubjectEntity>,
    pub case_entity: Option<CaseEntity>,
}

impl EnrichedAccess {
    /// The access event of an observed entry, not yet enriched; `None` for other kinds.
    pub fn from_observed(o: &Observed) -> Option<Self> {
        let Kind::Access(a) = &o.event else { return None };
        let actor = a.actor.clone().unwrap_or_default();
        let host = if actor.source_address.is_empty() { actor.device } else { actor.source_address };
        Some(Self {
            index: o.index,
            leaf_hash: o.leaf_hash,
            time_ms: o.time_ms,
            actor: actor.principal,
            actor_kind: actor.kind,
            host,
            action: Action::try_from(a.action).unwrap_or(Action::Unspecified),
            decision: Decision::try_from(a.decision).unwrap_or(Decision::Unspecified),
            purpose: Purpose::try_from(a.purpose).unwrap_or(Purpose::Unspecified),
            case: a.case.clone(),
            subject: a.subject.as_ref().map(|c| c.digest.clone()),
            has_justification: a.justification.is_some(),
            break_glass_grant: a.break_glass_grant.clone(),
            result_count: a.result_count,
            actor_entity: None,
            subject_entity: None,
            case_entity: None,
        })
    }

    /// Whether the access itself declares what accounts for it (a case, or a
    /// purpose that needs none). Policy's entities will make this a check that
    /// the case is open and assigned to the actor.
    pub fn declares_reason(&self) -> bool {
        match &self.case_entity {
            Some(case) => case.open && case.assignees.contains(&self.actor),
            None => !self.case.is_empty() || matches!(self.purpose, Purpose::TaxpayerService | Purpose::Audit),
        }
    }
}
