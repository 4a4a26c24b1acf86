//! Ingest (the `ingest` role): subjects and records in, and what decisions
//! need pushed to policy as a Subject entity. Ingest answers never read data
//! back beyond what the request itself wrote.
use std::collections::BTreeSet;

use quis_auth::Role;
use quis_proto::{policy as pb, vault as v};
use quis_vault::{PolicyPush, VaultError, blind::Relationship, names};

use crate::{
    convert::{self, compartment_rule, field_from_proto, record_to_proto, subject_input, subject_to_proto},
    error::{ServiceError, Violations},
    service::{CallerInfo, Inner},
};

/// Subject fields an update mask may name.
const SUBJECT_PATHS: &[&str] = &[
    "given_names",
    "family_name",
    "date_of_birth",
    "postcode",
    "reference_number",
    "address_lines",
    "household",
    "compartment",
    "protected",
];

fn check_compartment(field: &str, subject: &v::Subject, violations: &mut Violations) {
    if convert::policy_compartments(&subject.compartment, subject.protected).is_none() {
        violations.add(field, compartment_rule());
    }
}

impl Inner {
    /// Tells policy what its decisions need about a subject; the subject stays
    /// unknown to policy (every access denied) until this succeeds.
    async fn push_subject(&self, push: &PolicyPush) -> Result<(), ServiceError> {
        let key = |kind: Relationship| {
            push.relationship_keys.iter().find(|(k, _)| *k == kind).map(|(_, t)| t.to_vec()).unwrap_or_default()
        };
        let subject = pb::Subject {
            name: push.subject.clone(),
            compartments: convert::policy_compartments(&push.compartment, push.protected).unwrap_or_default(),
            decoy: push.decoy,
            surname_key: key(Relationship::Surname),
            address_key: key(Relationship::Address),
            household_key: key(Relationship::Household),
        };
        self.policy.upsert(pb::entity::Kind::Subject(subject), "vault ingest").await
    }

    pub async fn create_subject(
        &self,
        caller: &CallerInfo,
        req: v::CreateSubjectRequest,
    ) -> Result<v::CreateSubjectResponse, ServiceError> {
        caller.require(Role::Ingest)?;
        let subject = req.subject.ok_or_else(|| ServiceError::invalid("subject", "is required"))?;
        let mut violations = Violations::default();
        check_compartment("subject.compartment", &subject, &mut violations);
        violations.check()?;
        if names::is_valid_id(&req.subject_id) && self.vault.subject_exists(&req.subject_id).await? {
            return Err(VaultError::AlreadyExists(names::subject_name(&req.subject_id)).into());
        }
        let ingested = self.vault.ingest_subject(&req.subject_id, &subject_input(&subject)).await?;
        self.push_subject(&ingested.policy).await?;
        Ok(v::CreateSubjectResponse { subject: Some(subject_to_proto(ingested.subject)) })
    }

    pub async fn update_subject(
        &self,
        caller: &CallerInfo,
        req: v::UpdateSubjectRequest,
    ) -> Result<v::UpdateSubjectResponse, ServiceError> {
        caller.require(Role::Ingest)?;
        let subject = req.subject.ok_or_else(|| ServiceError::invalid("subject", "is required"))?;
        let mut violations = Violations::default();
        let id = names::parse_subject(&subject.name).map(str::to_string);
        if id.is_none() {
            violations.add("subject.name", format!("must be subjects/{{subject}}, an id that {}", names::ID_RULE));
        }
        let paths: BTreeSet<String> = req.update_mask.map(|m| m.paths.into_iter().collect()).unwrap_or_default();
        if paths.is_empty() {
            violations.add("update_mask", "is required: the subject fields to change");
        }
        for path in &paths {
            if !SUBJECT_PATHS.contains(&path.as_str()) {
                violations.add("update_mask", format!("{path:?} is not a field that can be changed"));
            }
        }
        check_compartment("subject.compartment", &subject, &mut violations);
        violations.check()?;
        let id = id.unwrap_or_default();
        let patch = subject_input(&subject);
        let has = |p: &str| paths.contains(p);
        let ingested = self
            .vault
            .update_subject(&id, |current| {
                if has("given_names") {
                    current.given_names = patch.given_names.clone();
                }
                if has("family_name") {
                    current.family_name = patch.family_name.clone();
                }
                if has("date_of_birth") {
                    current.date_of_birth = patch.date_of_birth.clone();
                }
                if has("postcode") {
                    current.postcode = patch.postcode.clone();
                }
                if has("reference_number") {
                    current.reference_number = patch.reference_number.clone();
                }
                if has("address_lines") {
                    current.address_lines = patch.address_lines.clone();
                }
                if has("household") {
                    current.household = patch.household.clone();
                }
                if has("compartment") {
                    current.compartment = patch.compartment.clone();
                }
                if has("protected") {
                    current.protected = patch.protected;
                }
            })
            .await?;
        self.push_subject(&ingested.policy).await?;
        // Only what the mask named goes back: ingest never reads identifying data unguarded.
        let stored = subject_to_proto(ingested.subject);
        let keep = |p: &str, value: String| if has(p) { value } else { String::new() };
        Ok(v::UpdateSubjectResponse {
            subject: Some(v::Subject {
                given_names: keep("given_names", stored.given_names),
                family_name: keep("family_name", stored.family_name),
                date_of_birth: keep("date_of_birth", stored.date_of_birth),
                postcode: keep("postcode", stored.postcode),
                reference_number: keep("reference_number", stored.reference_number),
                address_lines: if has("address_lines") { stored.address_lines } else { Vec::new() },
                household: keep("household", stored.household),
                compartment: keep("compartment", stored.compartment),
                protected: has("protected") && stored.protected,
                ..stored
            }),
        })
    }

    pub async fn create_record(
        &self,
        caller: &CallerInfo,
        req: v::CreateRecordRequest,
    ) -> Result<v::CreateRecordResponse, ServiceError> {
        caller.require(Role::Ingest)?;
        let mut violations = Violations::default();
        let subject = names::parse_subject(&req.parent);
        if subject.is_none() {
            violations.add("parent", format!("must be subjects/{{subject}}, an id that {}", names::ID_RULE));
        }
        if !names::is_valid_id(&req.record_id) {
            violations.add("record_id", names::ID_RULE);
        }
        let record = req.record.unwrap_or_default();
        violations.check()?;
        let name = format!("{}/records/{}", req.parent, req.record_id);
        let fields = record.fields.into_iter().map(field_from_proto).collect();
        let stored = self.vault.create_record(&name, &record.kind, fields).await?;
        Ok(v::CreateRecordResponse { record: Some(record_to_proto(stored)) })
    }

    pub async fn update_record(
        &self,
        caller: &CallerInfo,
        req: v::UpdateRecordRequest,
    ) -> Result<v::UpdateRecordResponse, ServiceError> {
        caller.require(Role::Ingest)?;
        let record = req.record.unwrap_or_default();
        let mut violations = Violations::default();
        let paths: Vec<String> = req.update_mask.map(|m| m.paths).unwrap_or_default();
        if paths.is_empty() {
            violations.add("update_mask", "is required: `kind` or `fields.<field name>`");
        }
        let mut kind = None;
        let mut named = BTreeSet::new();
        for path in &paths {
            match path.strip_prefix("fields.") {
                _ if path == "kind" => kind = Some(record.kind.as_str()),
                Some(field) if !field.is_empty() => {
                    named.insert(field.to_string());
                }
                _ => violations.add("update_mask", format!("{path:?} is neither `kind` nor `fields.<field name>`")),
            }
        }
        if req.expected_version < 0 {
            violations.add("expected_version", "must be 0 (no check) or a version");
        }
        for (i, f) in record.fields.iter().enumerate() {
            if !named.contains(&f.name) {
                violations.add(format!("record.fields[{i}]"), "is not named in update_mask as fields.<name>");
            }
        }
        violations.check()?;
        let written: Vec<_> = record.fields.into_iter().map(field_from_proto).collect();
        let removed: BTreeSet<String> = named.into_iter().filter(|n| !written.iter().any(|f| &f.name == n)).collect();
        let expected = (req.expected_version > 0).then_some(req.expected_version);
        let stored = self.vault.update_record(&record.name, kind, written, &removed, expected).await?;
        Ok(v::UpdateRecordResponse { record: Some(record_to_proto(stored)) })
    }
}
