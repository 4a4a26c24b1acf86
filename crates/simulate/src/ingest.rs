//! Loads the organization into the suite the way its feeds would: subjects
//! and records through the vault (the ingest token), teams, staff and cases
//! through policy (two administrators, since neither may administer their own
//! staff entity). Staff carry relationship keys computed with the vault's
//! blind indexer under the organization secret, never their names.
use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt, stream};
use quis_proto::{
    policy::{
        self as pb, BatchUpsertEntitiesRequest, CaseStatus, Entity, StaffStatus, entity::Kind,
        policy_service_client::PolicyServiceClient,
    },
    vault::{
        CreateRecordRequest, CreateSubjectRequest, Field, Record, Sensitivity, Subject, field::Value,
        vault_service_client::VaultServiceClient,
    },
};
use quis_vault::blind::{BlindIndexer, Relationship, relationship_keys};
use tonic::transport::Channel;

use crate::{
    client::authed,
    org::{Case, Org, RECORD_ID, StaffRole},
    plan::purpose,
};

/// Entities per BatchUpsertEntities call.
const BATCH: usize = 5_000;

/// Who loads what.
pub struct Loader<'a> {
    pub org: &'a Org,
    pub channel: Channel,
    /// The vault ingest feed's token.
    pub ingest_token: String,
    /// Two administrators' tokens: the first loads everyone but itself, the second loads the first.
    pub admins: [(usize, String); 2],
    pub indexer: &'a BlindIndexer,
    pub concurrency: usize,
}

impl Loader<'_> {
    /// Subjects and records, then teams and staff, then the initial cases.
    pub async fn load(&self) -> Result<()> {
        self.subjects().await?;
        let org = self.org;
        let mut entities: Vec<Entity> = org
            .teams
            .iter()
            .map(|t| Entity {
                kind: Some(Kind::Team(pb::Team {
                    name: format!("teams/{}", t.id),
                    site: crate::names::SITES[t.site].0.to_string(),
                    parent: String::new(),
                })),
            })
            .collect();
        let (first, _) = self.admins[0];
        entities.extend((0..org.staff.len()).filter(|&s| s != first).map(|s| self.staff_entity(s)));
        self.upsert(&self.admins[0].1, entities, "HR feed: teams and staff").await?;
        self.upsert(&self.admins[1].1, vec![self.staff_entity(first)], "HR feed: the administrator's own entry")
            .await?;
        let initial = org.cases.iter().filter(|c| c.opened_day == 0).map(|c| case_entity(c, org, true)).collect();
        self.upsert(&self.admins[0].1, initial, "case management: open cases").await
    }

    /// The case changes before `day`'s work: cases opened that day, and those closed.
    pub async fn cases_for_day(&self, day: u32) -> Result<()> {
        let org = self.org;
        let changes: Vec<Entity> = org
            .cases
            .iter()
            .filter_map(|c| {
                if c.opened_day == day && day > 0 {
                    Some(case_entity(c, org, true))
                } else if c.closed_day == Some(day) {
                    Some(case_entity(c, org, false))
                } else {
                    None
                }
            })
            .collect();
        if changes.is_empty() {
            return Ok(());
        }
        self.upsert(&self.admins[0].1, changes, "case management: the day's assignments").await
    }

    async fn upsert(&self, token: &str, entities: Vec<Entity>, reason: &str) -> Result<()> {
        let mut policy = PolicyServiceClient::new(self.channel.clone());
        for chunk in entities.chunks(BATCH) {
            let request = BatchUpsertEntitiesRequest { entities: chunk.to_vec(), reason: reason.to_string() };
            policy.batch_upsert_entities(authed(request, token)?).await.with_context(|| format!("policy: {reason}"))?;
        }
        Ok(())
    }

    fn staff_entity(&self, s: usize) -> Entity {
        let org = self.org;
        let staff = &org.staff[s];
        let person = &org.people[staff.person];
        let keys = relationship_keys(
            self.indexer,
            &person.family_name,
            &person.address_lines,
            &person.postcode,
            &person.household,
        );
        let key =
            |kind: Relationship| keys.iter().find(|(k, _)| *k == kind).map(|(_, v)| v.to_vec()).unwrap_or_default();
        Entity {
            kind: Some(Kind::Staff(pb::Staff {
                name: staff.name(),
                team: format!("teams/{}", org.teams[staff.team].id),
                site: crate::names::SITES[staff.site].0.to_string(),
                roles: vec![staff.role.role_name().to_string()],
                clearances: Vec::new(),
                status: StaffStatus::Active as i32,
                surname_key: key(Relationship::Surname),
                address_key: key(Relationship::Address),
                household_key: key(Relationship::Household),
            })),
        }
    }

    /// Every person as a vault subject with one record.
    async fn subjects(&self) -> Result<()> {
        let org = self.org;
        stream::iter(0..org.people.len())
            .map(|p| self.subject(p))
            .buffer_unordered(self.concurrency)
            .try_collect::<()>()
            .await
    }

    async fn subject(&self, p: usize) -> Result<()> {
        let person = &self.org.people[p];
        let mut vault = VaultServiceClient::new(self.channel.clone());
        let subject = Subject {
            given_names: person.given_names.clone(),
            family_name: person.family_name.clone(),
            date_of_birth: person.date_of_birth.clone(),
            postcode: person.postcode.clone(),
            reference_number: person.reference_number.clone(),
            address_lines: person.address_lines.clone(),
            household: person.household.clone(),
            compartment: person.compartment.map(|c| c.id().to_string()).unwrap_or_default(),
            protected: person.compartment == Some(crate::org::Compartment::Protected),
            decoy: person.decoy,
            ..Default::default()
        };
        let request = CreateSubjectRequest { subject_id: person.id.clone(), subject: Some(subject) };
        vault
            .create_subject(authed(request, &self.ingest_token)?)
            .await
            .with_context(|| format!("vault: subject {}", person.id))?;
        let request =
            CreateRecordRequest { parent: person.name(), record_id: RECORD_ID.into(), record: Some(record(p)) };
        vault
            .create_record(authed(request, &self.ingest_token)?)
            .await
            .with_context(|| format!("vault: record of {}", person.id))?;
        Ok(())
    }
}

/// A tax record; field names are the policy's field tags.
fn record(p: usize) -> Record {
    let field = |name: &str, sensitivity: Sensitivity, value: Value| Field {
        name: name.into(),
        sensitivity: sensitivity as i32,
        value: Some(value),
    };
    let income = 18_000 + (p * 7_919) % 90_000;
    Record {
        kind: "tax-return".into(),
        fields: vec![
            field("income", Sensitivity::Confidential, Value::DecimalValue(format!("{income}.00"))),
            field("assets", Sensitivity::Confidential, Value::DecimalValue(format!("{}.00", income * 3))),
            field("employment", Sensitivity::Basic, Value::StringValue("employed".into())),
            field("contact", Sensitivity::Confidential, Value::StringValue(format!("+44 7700 {:06}", p % 1_000_000))),
            field("notes", Sensitivity::Confidential, Value::StringValue("return filed on time".into())),
        ],
        ..Default::default()
    }
}

fn case_entity(case: &Case, org: &Org, open: bool) -> Entity {
    let status = if open { CaseStatus::Open } else { CaseStatus::Closed };
    Entity {
        kind: Some(Kind::Case(pb::Case {
            name: case.name(),
            subjects: case.subjects.iter().map(|&p| org.people[p].name()).collect(),
            assigned_staff: vec![org.staff[case.staff].name()],
            assigned_teams: vec![format!("teams/{}", org.teams[case.team].id)],
            status: status as i32,
            purpose: purpose(case.purpose) as i32,
        })),
    }
}

/// The two administrators the loader acts as.
pub fn administrators(org: &Org) -> Result<[usize; 2]> {
    let admins: Vec<usize> = (0..org.staff.len()).filter(|&s| org.staff[s].role == StaffRole::Admin).collect();
    match admins.as_slice() {
        [a, b, ..] => Ok([*a, *b]),
        _ => bail!("the organization needs two administrators"),
    }
}
