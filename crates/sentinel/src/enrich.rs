//! Enrichment: the subject and search terms behind an access's commitments
//! (opened in bulk through the ledger's event details, as the sentinel service
//! that `ledger.detail_reader_services` allows, and never stored), the actor's
//! and the subject's entities, and what explains the access.
use std::collections::HashMap;

use quis_proto::ledger::{GetEventDetailsRequest, Purpose};

use crate::{
    entities::{EntityView, id_of},
    event::{EnrichedAccess, Explanation},
    link::LedgerLink,
};

/// The subject id a subject detail names: `subjects/{id}[/records/{record}]`, or a bare id.
pub fn subject_id(value: &str) -> &str {
    match value.strip_prefix("subjects/") {
        Some(rest) => rest.split('/').next().unwrap_or(rest),
        None => value,
    }
}

/// Opens the subject and query commitments of `accesses` (digest → value); an erased detail is absent.
pub async fn open_details(
    link: &LedgerLink,
    accesses: &[EnrichedAccess],
) -> Result<HashMap<Vec<u8>, String>, tonic::Status> {
    let wanted: Vec<(u64, &Vec<u8>)> = accesses
        .iter()
        .flat_map(|a| a.subject.iter().chain(a.query.iter()).map(|d| (a.index, d)))
        .filter(|(_, d)| d.len() == 32)
        .collect();
    let mut values = HashMap::with_capacity(wanted.len());
    for chunk in wanted.chunks(quis_proto::MAX_EVENT_DETAILS_PER_CALL) {
        let request = link.request(GetEventDetailsRequest {
            digests: chunk.iter().map(|(_, d)| d.to_vec()).collect(),
            entry_indexes: chunk.iter().map(|(i, _)| *i).collect(),
        })?;
        for d in link.client().get_event_details(request).await?.into_inner().details {
            values.insert(d.digest, d.value);
        }
    }
    Ok(values)
}

fn purpose_name(p: Purpose) -> String {
    p.as_str_name().trim_start_matches("PURPOSE_").to_lowercase()
}

/// Fills in the subject, the entities and the explanation of `e`.
pub fn enrich(
    view: &EntityView,
    details: &HashMap<Vec<u8>, String>,
    explaining_purposes: &[String],
    e: &mut EnrichedAccess,
) {
    e.subject_id = e.subject.as_ref().and_then(|d| details.get(d)).map(|v| subject_id(v).to_string());
    e.query_terms = e.query.iter().filter_map(|d| details.get(d).cloned()).collect();
    e.subject_entity = e.subject_id.as_ref().and_then(|s| view.subjects.get(s)).cloned();
    if e.actor_kind != "staff" {
        return;
    }
    e.actor_entity = view.staff.get(&e.actor).cloned();
    e.explanation = explain(view, explaining_purposes, e);
}

fn explain(view: &EntityView, explaining_purposes: &[String], e: &EnrichedAccess) -> Explanation {
    let Some(actor) = &e.actor_entity else { return Explanation::Nothing };
    if let Some(subject) = &e.subject_id
        && view.grant_at(&e.actor, subject, e.time_ms).is_some()
    {
        return Explanation::Grant;
    }
    if let Some(case) = view.cases.get(id_of(&e.case))
        && case.open
        && e.subject_id.as_ref().is_none_or(|s| case.subjects.contains(s))
    {
        if case.staff.contains(&e.actor) {
            return Explanation::AssignedCase;
        }
        let own_team = |team: &str| {
            !actor.team.is_empty() && (team == actor.team || (actor.team_lead && view.team_within(team, &actor.team)))
        };
        if case.teams.iter().any(|t| own_team(t)) {
            return Explanation::TeamCase;
        }
        // A team lead reads the cases of the people they lead.
        if actor.team_lead
            && case.staff.iter().any(|s| view.staff.get(s).is_some_and(|m| !m.team.is_empty() && own_team(&m.team)))
        {
            return Explanation::TeamCase;
        }
    }
    if explaining_purposes.iter().any(|p| *p == purpose_name(e.purpose)) {
        return Explanation::Purpose;
    }
    Explanation::Nothing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_details_name_the_subject() {
        assert_eq!(subject_id("subjects/s-1"), "s-1");
        assert_eq!(subject_id("subjects/s-1/records/r-9"), "s-1");
        assert_eq!(subject_id("s-1"), "s-1");
    }
}
