//! Recording accesses: the `AccessEvent` with salted commitments in place of
//! every personal value (the salts and values go to the ledger's event
//! details), appended and durable before anything is answered. A [`Recorded`]
//! exists only once the ledger has acknowledged the event: the vault's
//! decrypting reads take one, so no code path returns data without a ledger index.
use quis_auth::{Principal, PrincipalKind};
use quis_proto::{
    ledger::{self, AccessEvent, Actor, Commitment, Event, EventDetail, event::Kind},
    vault::AuditReceipt,
};
use quis_vault::{names, store::IndexedAccess};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::{
    error::ServiceError,
    index_writer::IndexWriter,
    links::{Decision, LedgerLink},
    service::timed,
};

/// A value with a fresh random salt: its commitment goes into the entry, both into the details.
struct Salted {
    salt: Vec<u8>,
    value: String,
}

impl Salted {
    fn new(value: String) -> Self {
        let mut salt = vec![0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        Self { salt, value }
    }

    fn commitment(&self) -> Commitment {
        Commitment { digest: commit(&self.salt, &self.value).to_vec() }
    }
}

/// SHA-256(salt || value).
pub fn commit(salt: &[u8], value: &str) -> [u8; 32] {
    Sha256::new().chain_update(salt).chain_update(value.as_bytes()).finalize().into()
}

/// Who acted and from where, as the entry names them.
pub struct Caller<'a> {
    pub principal: &'a Principal,
    pub source_address: String,
    pub request_id: String,
}

fn kind_name(kind: PrincipalKind) -> &'static str {
    match kind {
        PrincipalKind::Staff => "staff",
        PrincipalKind::Service => "service",
        PrincipalKind::Subject => "subject",
    }
}

/// An access event being built, with the details behind its commitments.
pub struct AccessRecord {
    event: AccessEvent,
    details: Vec<Salted>,
    /// Subjects whose history shows this access (by id), with their commitment's salt.
    subjects: Vec<(String, Vec<u8>)>,
    decision: Decision,
    /// Whether the caller is the subject itself reading their own history (not indexed).
    self_read: bool,
}

impl AccessRecord {
    pub fn new(
        caller: &Caller<'_>,
        action: ledger::Action,
        purpose: ledger::Purpose,
        case: &str,
        decision: &Decision,
    ) -> Self {
        let p = caller.principal;
        let event = AccessEvent {
            actor: Some(Actor {
                principal: p.id.clone(),
                kind: kind_name(p.kind).into(),
                roles: p.roles.iter().map(|r| r.as_str().to_string()).collect(),
                team: p.team.clone().unwrap_or_default(),
                site: p.site.clone().unwrap_or_default(),
                source_address: caller.source_address.clone(),
                device: String::new(),
                token_id: p.token_id.clone(),
            }),
            action: action as i32,
            purpose: purpose as i32,
            case: case.to_string(),
            decision: if decision.allowed { ledger::Decision::Allow } else { ledger::Decision::Deny } as i32,
            determining_policies: decision.determining_policies.clone(),
            policy_version: decision.policy_version.clone(),
            break_glass_grant: decision.break_glass_grant.clone(),
            request_id: caller.request_id.clone(),
            subject_visible_time: decision
                .history_release_at
                .map(|seconds| prost_types::Timestamp { seconds, nanos: 0 }),
            ..AccessEvent::default()
        };
        Self { event, details: Vec::new(), subjects: Vec::new(), decision: decision.clone(), self_read: false }
    }

    fn salted(&mut self, value: String) -> (Commitment, Vec<u8>) {
        let salted = Salted::new(value);
        let out = (salted.commitment(), salted.salt.clone());
        self.details.push(salted);
        out
    }

    /// The subject the access is about (`subjects/{id}`).
    pub fn subject(mut self, name: &str) -> Self {
        let (commitment, salt) = self.salted(name.to_string());
        self.event.subject = Some(commitment);
        if let Some(id) = names::parse_subject(name) {
            self.self_read = self.event.actor.as_ref().is_some_and(|a| a.kind == "subject" && a.principal == id);
            self.subjects.push((id.to_string(), salt));
        }
        self
    }

    /// The record and the version read (`subjects/{s}/records/{r}`, or an external reference).
    pub fn record(mut self, name: &str, version: i64) -> Self {
        let (commitment, _) = self.salted(name.to_string());
        self.event.record = Some(commitment);
        self.event.record_version = version;
        self
    }

    pub fn justification(mut self, text: &str) -> Self {
        if !text.trim().is_empty() {
            let (commitment, _) = self.salted(text.trim().to_string());
            self.event.justification = Some(commitment);
        }
        self
    }

    /// Search terms, each as `term=value`.
    pub fn query(mut self, terms: impl IntoIterator<Item = String>) -> Self {
        for term in terms {
            let (commitment, _) = self.salted(term);
            self.event.query.push(commitment);
        }
        self
    }

    /// Subjects returned by a search or covered by an export; each sees the access in their history.
    pub fn results(mut self, subjects: &[String], truncated: bool) -> Self {
        for name in subjects {
            let (commitment, salt) = self.salted(name.clone());
            self.event.results.push(commitment);
            if let Some(id) = names::parse_subject(name) {
                self.subjects.push((id.to_string(), salt));
            }
        }
        self.event.result_count = u32::try_from(subjects.len()).unwrap_or(u32::MAX);
        self.event.truncated = truncated;
        self
    }

    /// The field tags (or names asked for) the access may return.
    pub fn fields(mut self, fields: impl IntoIterator<Item = String>) -> Self {
        self.event.fields_returned = fields.into_iter().collect();
        self
    }
}

/// Proof that an access was durably recorded: made only by [`Audit::record`].
#[derive(Debug)]
pub struct Recorded {
    ledger_index: u64,
    decision: Decision,
}

impl Recorded {
    pub fn decision(&self) -> &Decision {
        &self.decision
    }

    /// The receipt answered with the access.
    pub fn receipt(&self) -> AuditReceipt {
        AuditReceipt {
            ledger_index: self.ledger_index,
            decision: if self.decision.allowed { ledger::Decision::Allow } else { ledger::Decision::Deny } as i32,
            break_glass_grant: self.decision.break_glass_grant.clone(),
            reason: self.decision.public_reason.clone(),
        }
    }

    /// Fails with policy's caller-safe reason unless the access was allowed.
    pub fn allowed(self) -> Result<Self, ServiceError> {
        if self.decision.allowed {
            Ok(self)
        } else {
            Err(ServiceError::Denied { reason: self.decision.public_reason, ledger_index: self.ledger_index })
        }
    }
}

/// Appends access events and keeps the per-subject access index.
#[derive(Clone, Debug)]
pub struct Audit {
    pub ledger: LedgerLink,
    pub index: IndexWriter,
}

impl Audit {
    /// Appends the event and waits until it is durable; then queues it for the
    /// subjects' histories. The index is secondary (rebuilt from the ledger), so
    /// failing to write it does not fail the access.
    pub async fn record(&self, access: AccessRecord) -> Result<Recorded, ServiceError> {
        let AccessRecord { event, details, subjects, decision, self_read } = access;
        let visible_from_us = event.subject_visible_time.map_or(0, |t| t.seconds.saturating_mul(1_000_000));
        let details = details.into_iter().map(|d| EventDetail { salt: d.salt, value: d.value }).collect();
        let ledger_index =
            timed("ledger_append", self.ledger.append(Event { kind: Some(Kind::Access(event)) }, details)).await?;
        if !self_read {
            let rows = subjects
                .into_iter()
                .map(|(subject_id, salt)| IndexedAccess { subject_id, ledger_index, visible_from_us, salt })
                .collect();
            if let Err(e) = timed("access_index", self.index.add(rows)).await {
                tracing::warn!(ledger_index, error = %e, "access index not written; a rebuild from the ledger restores it");
            }
        }
        Ok(Recorded { ledger_index, decision })
    }
}
