//! A subject's access history: served from the vault's per-subject access
//! index, each item with the exact ledger entry bytes, its inclusion proof
//! against one signed checkpoint and the salt that opens the entry's
//! commitment to the subject, so the subject can check it outside Quis.
//! The index is secondary: [`Inner::rebuild_access_index`] restores it from the ledger.
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;
use quis_auth::{PrincipalKind, Role};
use quis_core::vault::HistoryAccessor;
use quis_proto::{
    ledger::{self, AccessEvent, Actor, LedgerEntry, event::Kind},
    policy as pb, vault as v,
};
use quis_vault::{names, store::IndexedAccess};

use crate::{
    audit::AccessRecord,
    convert::{self, CaseRule, page_size},
    error::{ServiceError, Violations},
    service::{CallerInfo, Inner},
};

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// The access event of an entry the vault appended, if it is one.
fn access_event(data: &[u8], vault: &str) -> Option<(LedgerEntry, AccessEvent)> {
    let entry = LedgerEntry::decode(data).ok()?;
    if entry.appended_by != vault {
        return None;
    }
    match entry.event.as_ref()?.kind.as_ref()? {
        Kind::Access(access) => {
            let access = access.clone();
            Some((entry, access))
        }
        _ => None,
    }
}

impl Inner {
    fn accessor(&self, actor: &Actor) -> String {
        match self.history_accessor {
            HistoryAccessor::Person => actor.principal.clone(),
            HistoryAccessor::Team if !actor.team.is_empty() => actor.team.clone(),
            HistoryAccessor::Team => "unit not recorded".into(),
        }
    }

    pub async fn get_access_history(
        &self,
        caller: &CallerInfo,
        req: v::GetAccessHistoryRequest,
    ) -> Result<v::GetAccessHistoryResponse, ServiceError> {
        let mut violations = Violations::default();
        let subject_id = names::parse_subject(&req.parent).map(str::to_string);
        if subject_id.is_none() {
            violations.add("parent", "must be subjects/{subject}, an id of [a-z0-9-]{1,64}");
        }
        let size = page_size("page_size", req.page_size, 50, 100);
        let after = match req.page_token.as_str() {
            "" => Some(-1),
            token => token.parse::<i64>().ok().filter(|i| *i >= 0),
        };
        if after.is_none() {
            violations.add("page_token", "must be a token from a previous response");
        }
        let subject_id = subject_id.unwrap_or_default();
        let own = caller.principal.kind == PrincipalKind::Subject && caller.principal.id == subject_id;
        // A data subject declares nothing; their read is recorded as an audit.
        let declared = match (&req.context, caller.principal.kind) {
            (None, PrincipalKind::Subject) => {
                Some(v::AccessContext { purpose: ledger::Purpose::Audit as i32, ..Default::default() })
            }
            (context, _) => context.clone(),
        };
        let ctx = convert::context("context", declared.as_ref(), CaseRule::Optional, &mut violations);
        violations.check()?;
        let size = size?;
        let check = Self::check_request(caller, pb::Action::ReadHistory, &req.parent, Vec::new(), &ctx);
        let decision = self.check(check).await?;
        let access = AccessRecord::new(&caller.audit(), ledger::Action::ReadHistory, ctx.purpose, &ctx.case, &decision)
            .subject(&req.parent)
            .justification(&ctx.justification);
        let recorded = self.audit.record(access).await?.allowed()?;
        // Covert accesses stay hidden from the subject until their release; overseers see them.
        let visible_at = if own { now_us() } else { i64::MAX };
        if let Err(e) = self.audit.index.flush().await {
            tracing::warn!(error = %e, "the access index writer is not answering; the history may miss recent accesses");
        }
        let store = self.vault.store();
        let rows = store
            .accesses(&subject_id, visible_at, after.unwrap_or(-1), size + 1)
            .await
            .map_err(quis_vault::VaultError::from)?;
        let checkpoint = self.audit.ledger.checkpoint().await?;
        // Accesses not yet under a signed checkpoint appear on a later call, with their proof.
        let provable: Vec<&IndexedAccess> = rows.iter().filter(|r| r.ledger_index < checkpoint.size).collect();
        let more = provable.len() > size;
        let mut items = Vec::with_capacity(size);
        for row in provable.into_iter().take(size) {
            items.push(self.history_item(row, checkpoint.size).await?);
        }
        let next_page_token = match (more, items.last()) {
            (true, Some(last)) => last.ledger_index.to_string(),
            _ => String::new(),
        };
        Ok(v::GetAccessHistoryResponse {
            items,
            checkpoint: checkpoint.note,
            tree_size: checkpoint.size,
            next_page_token,
            receipt: Some(recorded.receipt()),
        })
    }

    async fn history_item(&self, row: &IndexedAccess, tree_size: u64) -> Result<v::AccessHistoryItem, ServiceError> {
        let ledger = &self.audit.ledger;
        let index = row.ledger_index;
        let data = ledger.entries(index, index + 1).await?.into_iter().next().map(|(_, data)| data).unwrap_or_default();
        let Some((entry, access)) = access_event(&data, &self.service_principal) else {
            // The index names an entry that is no access of the vault's: the index, not the ledger, is wrong.
            return Err(ServiceError::LedgerUnavailable(format!("entry {index} is not an access event of the vault")));
        };
        let inclusion_proof = ledger.inclusion_proof(index, tree_size).await?;
        let record = match &access.record {
            Some(c) => ledger.detail(index, &c.digest).await?.map(|(_, value)| value).unwrap_or_default(),
            None => String::new(),
        };
        Ok(v::AccessHistoryItem {
            ledger_index: index,
            inclusion_proof,
            subject_salt: row.salt.clone(),
            access_time: entry.sequence_time,
            accessor: access.actor.as_ref().map(|a| self.accessor(a)).unwrap_or_default(),
            action: access.action,
            purpose: access.purpose,
            decision: access.decision,
            record,
            entry: data,
        })
    }

    /// Restores the access index from one range of the ledger, up to its
    /// latest checkpoint: every access event the vault appended, its
    /// commitments to subjects opened through the ledger's event details. Rows
    /// already there are kept; missing ones come back.
    pub async fn rebuild_access_index(
        &self,
        caller: &CallerInfo,
        req: v::RebuildAccessIndexRequest,
    ) -> Result<v::RebuildAccessIndexResponse, ServiceError> {
        caller.require(Role::Admin)?;
        let batch = page_size("batch_size", req.batch_size, 10_000, 100_000)? as u64;
        let ledger = &self.audit.ledger;
        let tree_size = ledger.checkpoint().await?.size;
        if req.start_index > tree_size {
            return Err(ServiceError::invalid(
                "start_index",
                format!("must be at most the signed tree size, {tree_size}"),
            ));
        }
        let end = tree_size.min(req.start_index.saturating_add(batch));
        let mut found = Vec::new();
        for (index, data) in ledger.entries(req.start_index, end).await? {
            let Some((_, access)) = access_event(&data, &self.service_principal) else { continue };
            let actor = access.actor.unwrap_or_default();
            let visible_from_us = access.subject_visible_time.map_or(0, |t| t.seconds.saturating_mul(1_000_000));
            for commitment in access.subject.into_iter().chain(access.results) {
                found.push((index, visible_from_us, actor.clone(), commitment.digest));
            }
        }
        let commitments: Vec<(u64, Vec<u8>)> =
            found.iter().map(|(index, .., digest)| (*index, digest.clone())).collect();
        let details = ledger.details(&commitments).await?;
        let mut rows = Vec::with_capacity(found.len());
        for (ledger_index, visible_from_us, actor, digest) in found {
            // An erased detail leaves only the commitment: nothing to index.
            let Some((salt, value)) = details.get(&digest) else { continue };
            let Some(subject_id) = names::parse_subject(value) else { continue };
            if actor.kind == "subject" && actor.principal == subject_id {
                continue; // a subject's reads of their own history are not listed to them
            }
            rows.push(IndexedAccess {
                subject_id: subject_id.to_string(),
                ledger_index,
                visible_from_us,
                salt: salt.clone(),
            });
        }
        let restored = self.vault.store().add_accesses(&rows).await.map_err(quis_vault::VaultError::from)?;
        if restored > 0 {
            tracing::warn!(actor = %caller.principal.id, restored, start = req.start_index, end, "access index rows were missing and are restored");
        }
        tracing::info!(actor = %caller.principal.id, start = req.start_index, end, indexed = rows.len(), "access index rebuilt over a range");
        Ok(v::RebuildAccessIndexResponse {
            next_index: end,
            tree_size,
            indexed: i64::try_from(rows.len()).unwrap_or(i64::MAX),
            restored: i64::try_from(restored).unwrap_or(i64::MAX),
        })
    }
}
