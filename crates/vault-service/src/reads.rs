//! The guarded calls: check with policy → record the access (allowed or
//! denied) and wait until the ledger holds it → only then decrypt, minimized.
//! Every caller, decoy or real subject alike, goes through the same steps.
use std::sync::Arc;

use quis_proto::{ledger, policy as pb, vault as v};
use quis_vault::{
    RawQuery, VaultError,
    names::{self, RecordName},
    query::SearchQuery,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::{
    audit::AccessRecord,
    convert::{self, CaseRule, asked_fields, asked_tags, page_size, record_to_proto, subject_to_proto},
    error::{ServiceError, Violations},
    guarded::FieldFilter,
    links::Decision,
    service::{CallerInfo, Inner, timed},
};

/// Most subjects in one export.
const MAX_EXPORT_SUBJECTS: usize = 1000;
/// Records per export message.
const EXPORT_BATCH: usize = 100;
/// Most checks policy decides in one call.
const CHECKS_PER_CALL: usize = 100;

fn raw_query(q: &v::SubjectQuery) -> RawQuery {
    RawQuery {
        family_name: q.family_name.clone(),
        given_name: q.given_name.clone(),
        date_of_birth: q.date_of_birth.clone(),
        postcode: q.postcode.clone(),
        reference_number: q.reference_number.clone(),
    }
}

/// A refused query's terms as typed (they are committed to, never stored in the clear).
fn raw_terms(q: &RawQuery) -> Vec<String> {
    [
        ("family-name", &q.family_name),
        ("given-name", &q.given_name),
        ("date-of-birth", &q.date_of_birth),
        ("postcode", &q.postcode),
        ("reference-number", &q.reference_number),
    ]
    .into_iter()
    .filter(|(_, value)| !value.is_empty())
    .map(|(term, value)| format!("{term}={value}"))
    .collect()
}

impl Inner {
    pub async fn get_record(
        &self,
        caller: &CallerInfo,
        req: v::GetRecordRequest,
    ) -> Result<v::GetRecordResponse, ServiceError> {
        let mut violations = Violations::default();
        let name = RecordName::parse(&req.name);
        if name.is_none() {
            violations.add("name", "must be subjects/{subject}/records/{record}, ids of [a-z0-9-]{1,64}");
        }
        let ctx = convert::context("context", req.context.as_ref(), CaseRule::Required, &mut violations);
        asked_fields("fields", &req.fields, &mut violations);
        violations.check()?;
        let name = name.map(|n| n.to_string()).unwrap_or_default();
        let sealed = timed("record_read", self.vault.record_head(&name)).await?;
        let version = sealed.as_ref().map_or(0, |s| s.version());
        let check = Self::check_request(caller, pb::Action::Read, &name, asked_tags(&req.fields), &ctx);
        let decision = self.check(check).await?;
        let filter = FieldFilter::new(&decision.fields, &req.fields);
        let access = AccessRecord::new(&caller.audit(), ledger::Action::Read, ctx.purpose, &ctx.case, &decision)
            .subject(&RecordName::parse(&name).map(|n| n.parent()).unwrap_or_default())
            .record(&name, version)
            .justification(&ctx.justification)
            .fields(if decision.allowed { filter.recorded() } else { Vec::new() });
        let recorded = self.audit.record(access).await?.allowed()?;
        // Unknown records are NOT_FOUND only once the read is allowed and recorded.
        let sealed = sealed.ok_or_else(|| quis_vault::VaultError::NotFound(name.clone()))?;
        let record =
            quis_core::metrics::time_stage("vault", "decrypt", || self.vault.open_record(&recorded, sealed, &filter))?;
        Ok(v::GetRecordResponse { record: Some(record_to_proto(record)), receipt: Some(recorded.receipt()) })
    }

    pub async fn search_subjects(
        &self,
        caller: &CallerInfo,
        req: v::SearchSubjectsRequest,
    ) -> Result<v::SearchSubjectsResponse, ServiceError> {
        let mut violations = Violations::default();
        let ctx = convert::context("context", req.context.as_ref(), CaseRule::Optional, &mut violations);
        let size = page_size("page_size", req.page_size, 20, 50);
        if !req.page_token.is_empty() && !names::is_valid_id(&req.page_token) {
            violations.add("page_token", "must be a token from a previous response of the same search");
        }
        violations.check()?;
        let size = size?;
        let raw = raw_query(&req.query.unwrap_or_default());
        let resource = if ctx.case.is_empty() { "subjects".to_string() } else { ctx.case.clone() };
        let parsed = match SearchQuery::parse(&raw) {
            Ok(parsed) => parsed,
            Err(VaultError::QueryTooBroad(rule)) => {
                // Refused as enumeration: recorded like any other denial.
                let decision =
                    Decision::refused_by_vault("vault-query-too-broad", format!("{} {}", rule.field, rule.rule));
                let access =
                    AccessRecord::new(&caller.audit(), ledger::Action::Search, ctx.purpose, &ctx.case, &decision)
                        .query(raw_terms(&raw))
                        .justification(&ctx.justification);
                self.audit.record(access).await?;
                return Err(VaultError::QueryTooBroad(rule).into());
            }
            Err(other) => return Err(other.into()),
        };
        let terms: Vec<String> = parsed.terms.iter().map(|(t, value)| format!("{}={value}", t.as_str())).collect();
        let decision = self.check(Self::check_request(caller, pb::Action::Search, &resource, Vec::new(), &ctx)).await?;
        let found = if decision.allowed { Some(self.vault_search(&raw).await?) } else { None };
        let (page, truncated, more) = match &found {
            Some(found) => {
                let after: Vec<&String> = found
                    .subjects
                    .iter()
                    .filter(|s| req.page_token.is_empty() || **s > names::subject_name(&req.page_token))
                    .collect();
                let more = after.len() > size;
                (after.into_iter().take(size).cloned().collect::<Vec<_>>(), found.truncated, more)
            }
            None => (Vec::new(), false, false),
        };
        let access = AccessRecord::new(&caller.audit(), ledger::Action::Search, ctx.purpose, &ctx.case, &decision)
            .query(terms)
            .results(&page, truncated)
            .justification(&ctx.justification)
            .fields(decision.fields.iter().cloned());
        let recorded = self.audit.record(access).await?.allowed()?;
        let mut matches = Vec::with_capacity(page.len());
        for name in &page {
            let id = names::parse_subject(name).unwrap_or_default();
            let subject = self.vault.read_subject(&recorded, id, &recorded.decision().fields).await?;
            matches.push(v::SubjectMatch { name: name.clone(), subject: Some(subject_to_proto(subject)) });
        }
        let next_page_token = match (more, page.last()) {
            (true, Some(last)) => names::parse_subject(last).unwrap_or_default().to_string(),
            _ => String::new(),
        };
        Ok(v::SearchSubjectsResponse { matches, next_page_token, truncated, receipt: Some(recorded.receipt()) })
    }

    async fn vault_search(&self, raw: &RawQuery) -> Result<quis_vault::SearchOutcome, ServiceError> {
        Ok(self.vault.search(raw).await?)
    }

    /// Checks every subject of an export; the export is allowed only if each one is.
    async fn check_each(
        &self,
        caller: &CallerInfo,
        subjects: &[String],
        ctx: &convert::Context,
        tags: &[String],
    ) -> Result<Vec<Decision>, ServiceError> {
        let mut decisions = Vec::with_capacity(subjects.len());
        for chunk in subjects.chunks(CHECKS_PER_CALL) {
            let checks =
                chunk.iter().map(|s| Self::check_request(caller, pb::Action::Export, s, tags.to_vec(), ctx)).collect();
            decisions.extend(self.policy.batch_check(checks).await?);
        }
        if decisions.len() != subjects.len() {
            return Err(ServiceError::PolicyUnavailable("policy answered a different number of checks".into()));
        }
        Ok(decisions)
    }

    pub async fn export_records(
        self: Arc<Self>,
        caller: &CallerInfo,
        req: v::ExportRecordsRequest,
    ) -> Result<crate::service::ExportStream, Status> {
        let mut violations = Violations::default();
        if req.subjects.is_empty() || req.subjects.len() > MAX_EXPORT_SUBJECTS {
            violations.add("subjects", format!("must hold 1 to {MAX_EXPORT_SUBJECTS} subjects"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, s) in req.subjects.iter().enumerate() {
            if names::parse_subject(s).is_none() {
                violations.add(format!("subjects[{i}]"), "must be subjects/{subject}, an id of [a-z0-9-]{1,64}");
            } else if !seen.insert(s.as_str()) {
                violations.add(format!("subjects[{i}]"), "is named twice");
            }
        }
        if !req.kind.is_empty() && !names::is_valid_id(&req.kind) {
            violations.add("kind", names::ID_RULE);
        }
        let ctx = convert::context("context", req.context.as_ref(), CaseRule::Required, &mut violations);
        asked_fields("fields", &req.fields, &mut violations);
        violations.check()?;
        let tags = asked_tags(&req.fields);
        let decisions = self.check_each(caller, &req.subjects, &ctx, &tags).await?;
        // One event covers the export: allowed only if every subject is; the first denial decides otherwise.
        let decision = decisions.iter().find(|d| !d.allowed).unwrap_or(&decisions[0]).clone();
        let access = AccessRecord::new(&caller.audit(), ledger::Action::Export, ctx.purpose, &ctx.case, &decision)
            .subject(&req.subjects[0])
            .results(&req.subjects, false)
            .justification(&ctx.justification)
            .fields(if decision.allowed { decision.fields.iter().cloned().collect() } else { Vec::new() });
        let recorded = self.audit.record(access).await?.allowed()?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let kind = (!req.kind.is_empty()).then_some(req.kind);
        tokio::spawn(async move {
            let receipt = recorded.receipt();
            let mut batch = Vec::new();
            for (subject, decision) in req.subjects.iter().zip(&decisions) {
                let filter = FieldFilter::new(&decision.fields, &req.fields);
                let id = names::parse_subject(subject).unwrap_or_default();
                let records = match self.vault.read_records_of(&recorded, id, kind.as_deref(), &filter).await {
                    Ok(records) => records,
                    Err(e) => {
                        let _ = tx.send(Err(Status::from(ServiceError::from(e)))).await;
                        return;
                    }
                };
                for record in records {
                    batch.push(record_to_proto(record));
                    if batch.len() == EXPORT_BATCH {
                        let message = v::ExportRecordsResponse {
                            records: std::mem::take(&mut batch),
                            receipt: Some(receipt.clone()),
                        };
                        if tx.send(Ok(message)).await.is_err() {
                            return; // the caller went away
                        }
                    }
                }
            }
            // The last message, possibly empty, so that every export answers its receipt.
            let _ = tx.send(Ok(v::ExportRecordsResponse { records: batch, receipt: Some(receipt) })).await;
        });
        Ok(Box::pin(ReceiverStream::new(rx)))
    }

    pub async fn record_access(
        &self,
        caller: &CallerInfo,
        req: v::RecordAccessRequest,
    ) -> Result<v::RecordAccessResponse, ServiceError> {
        let mut violations = Violations::default();
        let record = req.record.unwrap_or_default();
        if !names::is_valid_id(&record.system) {
            violations.add("record.system", names::ID_RULE);
        }
        if names::parse_subject(&record.subject).is_none() {
            violations.add("record.subject", "is required: subjects/{subject}, an id of [a-z0-9-]{1,64}");
        }
        if record.reference.is_empty()
            || record.reference.chars().count() > 256
            || record.reference.chars().any(char::is_control)
        {
            violations.add("record.reference", "must be 1 to 256 printable characters");
        }
        if !names::is_valid_id(&record.kind) {
            violations.add("record.kind", names::ID_RULE);
        }
        let action = match ledger::Action::try_from(req.action) {
            Ok(ledger::Action::Read) => Some(pb::Action::RecordAccess),
            Ok(ledger::Action::Update) => Some(pb::Action::Update),
            Ok(ledger::Action::Export) => Some(pb::Action::Export),
            _ => {
                violations.add("action", "must be ACTION_READ, ACTION_UPDATE or ACTION_EXPORT");
                None
            }
        };
        let ctx = convert::context("context", req.context.as_ref(), CaseRule::Required, &mut violations);
        asked_fields("fields", &req.fields, &mut violations);
        violations.check()?;
        let check = Self::check_request(
            caller,
            action.unwrap_or(pb::Action::RecordAccess),
            &record.subject,
            asked_tags(&req.fields),
            &ctx,
        );
        let decision = self.check(check).await?;
        let filter = FieldFilter::new(&decision.fields, &req.fields);
        let allowed_fields = if decision.allowed { filter.recorded() } else { Vec::new() };
        let access =
            AccessRecord::new(&caller.audit(), ledger::Action::RecordAccess, ctx.purpose, &ctx.case, &decision)
                .subject(&record.subject)
                .record(&format!("{}/{}", record.system, record.reference), 0)
                .justification(&ctx.justification)
                .fields(allowed_fields.clone());
        // The caller's system enforces the decision: a denial is an answer here, recorded like the rest.
        let recorded = self.audit.record(access).await?;
        Ok(v::RecordAccessResponse { receipt: Some(recorded.receipt()), allowed_fields })
    }
}
