//! Plays activities through the gateway as the real clients would: each with
//! its actor's token, from its host's address, at its simulated time.
//!
//! Activities run in time order in small groups (at most `concurrency`, all
//! within one simulated minute, at most one per actor); the simulated clock is
//! set to the group's start, so the ledger stamps each event within a minute of
//! its planned time, and each actor's events follow in their planned order.
use std::{
    collections::{HashMap, HashSet},
    time::Instant,
};

use anyhow::Result;
use futures::{StreamExt, stream};
use prost_types::Duration as ProtoDuration;
use quis_core::SimClock;
use quis_proto::{
    ledger::Purpose,
    vault::{
        AccessContext, EndBreakGlassRequest, ExportRecordsRequest, GetRecordRequest, SearchSubjectsRequest,
        StartBreakGlassRequest, SubjectQuery, vault_service_client::VaultServiceClient,
    },
};
use tonic::{Code, Status};

use crate::{
    client::{Gateway, authed, refused_index},
    org::{Org, RECORD_ID},
    plan::{Activity, Op, Query},
};

/// How long a break-glass grant is asked for.
const BREAK_GLASS_SECS: i64 = 3600;
/// Activities whose planned times lie within this of a group's first run together.
const GROUP_SPAN_MS: i64 = 60_000;

/// What one activity left in the ledger.
#[derive(Debug, Default)]
pub struct Outcome {
    pub indices: Vec<u64>,
    /// Refused by policy or as malformed (recorded all the same).
    pub denied: bool,
}

/// Counts over everything played.
#[derive(Debug, Default)]
pub struct Tally {
    pub calls: u64,
    pub denied: u64,
    /// Calls that failed for another reason (the suite unavailable, a bug): none are expected.
    pub failed: u64,
    pub first_failure: Option<String>,
    pub staff_days: HashSet<(usize, u32)>,
    pub max_index: Option<u64>,
    /// When the call that wrote each ledger entry was answered (wall clock).
    pub answered: HashMap<u64, Instant>,
}

/// See the module documentation.
pub struct Player<'a> {
    pub org: &'a Org,
    pub gateway: &'a Gateway,
    /// One token per staff member, by index.
    pub tokens: &'a [String],
    pub clock: &'a SimClock,
    pub concurrency: usize,
}

impl Player<'_> {
    /// Plays `activities` (sorted by time) of `day`; returns each one's outcome, in order.
    pub async fn play(&self, day: u32, activities: &[Activity], tally: &mut Tally) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(activities.len());
        let mut rest = activities;
        while let Some(first) = rest.first() {
            // One actor does one thing after another: their next activity waits for the next
            // group. Played at once, their entries would reach the ledger in an order that varies
            // between runs, and so would the entry a detection fires on (and its lag).
            let mut actors = HashSet::new();
            let n = rest
                .iter()
                .take(self.concurrency)
                .take_while(|a| a.at_ms < first.at_ms + GROUP_SPAN_MS && actors.insert(a.actor))
                .count()
                .max(1);
            let (group, tail) = rest.split_at(n);
            rest = tail;
            self.clock.set_ms(first.at_ms);
            let results: Vec<(Result<Outcome, Status>, Instant)> = stream::iter(group)
                .map(|a| async { (self.perform(a).await, Instant::now()) })
                .buffered(self.concurrency)
                .collect()
                .await;
            for (activity, (result, answered)) in group.iter().zip(results) {
                tally.calls += 1;
                tally.staff_days.insert((activity.actor, day));
                let outcome = result.unwrap_or_else(|status| {
                    tally.failed += 1;
                    tally.first_failure.get_or_insert_with(|| format!("{:?}: {}", activity.op, status.message()));
                    Outcome::default()
                });
                tally.denied += u64::from(outcome.denied);
                tally.max_index = outcome.indices.iter().copied().chain(tally.max_index).max();
                tally.answered.extend(outcome.indices.iter().map(|&i| (i, answered)));
                outcomes.push(outcome);
            }
        }
        outcomes
    }

    /// One activity; a refusal that the vault recorded is an outcome, not an error.
    async fn perform(&self, a: &Activity) -> Result<Outcome, Status> {
        let mut vault = VaultServiceClient::new(self.gateway.channel(a.host).map_err(internal)?);
        let token = &self.tokens[a.actor];
        let org = self.org;
        let context = |case: usize, purpose: Purpose| AccessContext {
            purpose: purpose as i32,
            case: org.cases[case].name(),
            justification: String::new(),
        };
        let result = match &a.op {
            Op::Search { case, purpose, query } => {
                let request = SearchSubjectsRequest {
                    query: Some(subject_query(query)),
                    context: Some(context(*case, *purpose)),
                    page_size: 20,
                    page_token: String::new(),
                };
                vault
                    .search_subjects(authed(request, token).map_err(internal)?)
                    .await
                    .map(|r| receipt(r.into_inner().receipt))
            }
            Op::Read { subject, case, purpose } => {
                read(&mut vault, token, org.people[*subject].record_name(), context(*case, *purpose)).await
            }
            Op::ReadId { subject_id, case, purpose } => {
                read(&mut vault, token, format!("subjects/{subject_id}/records/{RECORD_ID}"), context(*case, *purpose))
                    .await
            }
            Op::Export { subjects, case, purpose } => {
                let request = ExportRecordsRequest {
                    subjects: subjects.iter().map(|&p| org.people[p].name()).collect(),
                    kind: String::new(),
                    context: Some(context(*case, *purpose)),
                    fields: Vec::new(),
                };
                match vault.export_records(authed(request, token).map_err(internal)?).await {
                    Ok(response) => {
                        let mut stream = response.into_inner();
                        let mut indices = Vec::new();
                        while let Some(message) = stream.message().await? {
                            indices.extend(receipt(message.receipt));
                        }
                        indices.dedup();
                        Ok(indices)
                    }
                    Err(status) => Err(status),
                }
            }
            Op::BreakGlass { subject, justification, end } => {
                return self.break_glass(&mut vault, token, *subject, justification, *end).await;
            }
        };
        settle(result)
    }

    /// Starts a grant, reads under it, and ends it if asked.
    async fn break_glass(
        &self,
        vault: &mut VaultServiceClient<tonic::transport::Channel>,
        token: &str,
        subject: usize,
        justification: &str,
        end: bool,
    ) -> Result<Outcome, Status> {
        let person = &self.org.people[subject];
        let request = StartBreakGlassRequest {
            subjects: vec![person.name()],
            justification: justification.to_string(),
            duration: Some(ProtoDuration { seconds: BREAK_GLASS_SECS, nanos: 0 }),
            case: String::new(),
        };
        let started = match vault.start_break_glass(authed(request, token).map_err(internal)?).await {
            Ok(r) => r.into_inner(),
            Err(status) => return settle(Err(status)),
        };
        let mut indices = receipt(started.receipt);
        let context = AccessContext {
            purpose: Purpose::Emergency as i32,
            case: String::new(),
            justification: justification.into(),
        };
        let read = settle(read(vault, token, person.record_name(), context).await)?;
        indices.extend(read.indices);
        if end && let Some(grant) = started.grant {
            let ended = vault
                .end_break_glass(authed(EndBreakGlassRequest { name: grant.name }, token).map_err(internal)?)
                .await?;
            indices.extend(receipt(ended.into_inner().receipt));
        }
        Ok(Outcome { indices, denied: read.denied })
    }
}

async fn read(
    vault: &mut VaultServiceClient<tonic::transport::Channel>,
    token: &str,
    name: String,
    context: AccessContext,
) -> Result<Vec<u64>, Status> {
    let request = GetRecordRequest { name, context: Some(context), fields: Vec::new() };
    vault.get_record(authed(request, token).map_err(internal)?).await.map(|r| receipt(r.into_inner().receipt))
}

fn receipt(receipt: Option<quis_proto::vault::AuditReceipt>) -> Vec<u64> {
    receipt.map(|r| vec![r.ledger_index]).unwrap_or_default()
}

/// A refusal (denied, malformed, too broad, not found) is a recorded outcome; anything else fails.
fn settle(result: Result<Vec<u64>, Status>) -> Result<Outcome, Status> {
    match result {
        Ok(indices) => Ok(Outcome { indices, denied: false }),
        Err(status)
            if matches!(
                status.code(),
                Code::PermissionDenied | Code::InvalidArgument | Code::NotFound | Code::FailedPrecondition
            ) =>
        {
            Ok(Outcome { indices: refused_index(&status).into_iter().collect(), denied: true })
        }
        Err(status) => Err(status),
    }
}

fn subject_query(q: &Query) -> SubjectQuery {
    SubjectQuery {
        family_name: q.family_name.clone(),
        given_name: q.given_name.clone(),
        date_of_birth: q.date_of_birth.clone(),
        postcode: String::new(),
        reference_number: q.reference_number.clone(),
    }
}

fn internal(e: anyhow::Error) -> Status {
    Status::internal(e.to_string())
}
