//! Policy's entities as sentinel needs them (staff, teams, subjects, cases,
//! grants), held in memory and kept current from policy's entity change feed
//! (`ListEntityChanges`), read as the sentinel service principal. The view is
//! as large as the organization, not as the history. Relationship keys are
//! compared as they come (HMAC values): sentinel never sees names or addresses.
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use quis_auth::ServiceCredentials;
use quis_proto::policy::{
    self as pb, CaseStatus, Compartment, GrantKind, ListEntityChangesRequest, StaffStatus, entity::Kind as E,
    policy_service_client::PolicyServiceClient,
};
use tonic::{service::interceptor::InterceptedService, transport::Channel};

/// An HMAC-SHA256 relationship key.
pub type Key = [u8; 32];

/// Feed positions read per call.
const PAGE: i32 = 10_000;

fn key(bytes: &[u8]) -> Option<Key> {
    bytes.try_into().ok()
}

/// The id of `<collection>/{id}` (or of a bare id).
pub fn id_of(name: &str) -> &str {
    name.rsplit_once('/').map_or(name, |(_, id)| id)
}

fn compartment_name(c: i32) -> String {
    Compartment::try_from(c)
        .map(|c| c.as_str_name().trim_start_matches("COMPARTMENT_").to_lowercase().replace('_', "-"))
        .unwrap_or_else(|_| format!("compartment-{c}"))
}

/// A member of staff.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Staff {
    pub team: String,
    pub site: String,
    pub status: StaffStatus,
    pub team_lead: bool,
    /// Compartments cleared for, as names (`public-figure`, ...).
    pub clearances: Vec<String>,
    pub surname: Option<Key>,
    pub address: Option<Key>,
    pub household: Option<Key>,
}

/// A subject: compartments, decoy flag and relationship keys.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Subject {
    pub compartments: Vec<String>,
    pub decoy: bool,
    pub surname: Option<Key>,
    pub address: Option<Key>,
    pub household: Option<Key>,
}

/// A case: what it is about, who works it, whether it is open.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Case {
    pub subjects: HashSet<String>,
    pub staff: HashSet<String>,
    pub teams: HashSet<String>,
    pub open: bool,
}

/// A time-bound grant of one staff member on one subject.
#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    pub staff: String,
    pub subject: String,
    pub break_glass: bool,
    pub start_ms: i64,
    pub expire_ms: i64,
}

fn millis(t: Option<&prost_types::Timestamp>) -> i64 {
    t.map_or(0, |t| t.seconds.saturating_mul(1000).saturating_add(i64::from(t.nanos / 1_000_000)))
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct EntityView {
    pub staff: HashMap<String, Arc<Staff>>,
    /// Team → parent team.
    pub teams: HashMap<String, String>,
    pub subjects: HashMap<String, Arc<Subject>>,
    pub cases: HashMap<String, Arc<Case>>,
    pub grants: HashMap<String, Grant>,
    /// (staff, subject) → grant ids.
    grants_on: HashMap<(String, String), Vec<String>>,
    /// The entity version applied (policy's feed position).
    pub version: u64,
}

impl EntityView {
    /// Applies one change of the feed.
    pub fn apply(&mut self, change: pb::EntityChange) {
        self.version = self.version.max(change.version);
        match change.entity.and_then(|e| e.kind) {
            Some(kind) => self.upsert(kind),
            None => self.delete(&change.deleted),
        }
    }

    fn upsert(&mut self, kind: E) {
        match kind {
            E::Staff(s) => {
                let staff = Staff {
                    team: id_of(&s.team).to_string(),
                    site: s.site,
                    status: StaffStatus::try_from(s.status).unwrap_or(StaffStatus::Unspecified),
                    team_lead: s.roles.iter().any(|r| r == "team_lead"),
                    clearances: s.clearances.into_iter().map(compartment_name).collect(),
                    surname: key(&s.surname_key),
                    address: key(&s.address_key),
                    household: key(&s.household_key),
                };
                self.staff.insert(id_of(&s.name).to_string(), Arc::new(staff));
            }
            E::Team(t) => {
                self.teams.insert(id_of(&t.name).to_string(), id_of(&t.parent).to_string());
            }
            E::Subject(s) => {
                let subject = Subject {
                    compartments: s.compartments.into_iter().map(compartment_name).collect(),
                    decoy: s.decoy,
                    surname: key(&s.surname_key),
                    address: key(&s.address_key),
                    household: key(&s.household_key),
                };
                self.subjects.insert(id_of(&s.name).to_string(), Arc::new(subject));
            }
            E::Case(c) => {
                let case = Case {
                    subjects: c.subjects.iter().map(|s| id_of(s).to_string()).collect(),
                    staff: c.assigned_staff.iter().map(|s| id_of(s).to_string()).collect(),
                    teams: c.assigned_teams.iter().map(|t| id_of(t).to_string()).collect(),
                    open: c.status == CaseStatus::Open as i32,
                };
                self.cases.insert(id_of(&c.name).to_string(), Arc::new(case));
            }
            E::Grant(g) => {
                let id = id_of(&g.name).to_string();
                self.delete_grant(&id);
                let grant = Grant {
                    staff: id_of(&g.staff).to_string(),
                    subject: id_of(&g.subject).to_string(),
                    break_glass: g.kind == GrantKind::BreakGlass as i32,
                    start_ms: millis(g.start_time.as_ref()),
                    expire_ms: millis(g.expire_time.as_ref()),
                };
                self.grants_on.entry((grant.staff.clone(), grant.subject.clone())).or_default().push(id.clone());
                self.grants.insert(id, grant);
            }
            // Declared conflicts of interest are policy's to enforce.
            E::Conflict(_) => {}
        }
    }

    fn delete_grant(&mut self, id: &str) {
        if let Some(old) = self.grants.remove(id) {
            let pair = (old.staff, old.subject);
            if let Some(ids) = self.grants_on.get_mut(&pair) {
                ids.retain(|g| g != id);
                if ids.is_empty() {
                    self.grants_on.remove(&pair);
                }
            }
        }
    }

    fn delete(&mut self, name: &str) {
        let Some((collection, id)) = name.split_once('/') else { return };
        match collection {
            "staff" => drop(self.staff.remove(id)),
            "teams" => drop(self.teams.remove(id)),
            "subjects" => drop(self.subjects.remove(id)),
            "cases" => drop(self.cases.remove(id)),
            "grants" => self.delete_grant(id),
            _ => {}
        }
    }

    /// A grant of `staff` on `subject` in force at `time_ms`.
    pub fn grant_at(&self, staff: &str, subject: &str, time_ms: i64) -> Option<&Grant> {
        let ids = self.grants_on.get(&(staff.to_string(), subject.to_string()))?;
        ids.iter().filter_map(|id| self.grants.get(id)).find(|g| g.start_ms <= time_ms && time_ms < g.expire_ms)
    }

    /// Whether `team` is `ancestor` or sits (transitively) under it.
    pub fn team_within(&self, team: &str, ancestor: &str) -> bool {
        let mut current = team;
        // Bounded: a cycle in the parents cannot loop forever.
        for _ in 0..32 {
            if current == ancestor {
                return true;
            }
            match self.teams.get(current) {
                Some(parent) if !parent.is_empty() => current = parent,
                _ => return false,
            }
        }
        false
    }
}

/// Sentinel's read-only connection to policy.
#[derive(Clone, Debug)]
pub struct PolicyLink {
    client: PolicyServiceClient<InterceptedService<Channel, ServiceCredentials>>,
}

impl PolicyLink {
    /// A link to policy at `url`; connects on first use.
    pub fn connect(
        url: &str,
        credentials: ServiceCredentials,
        tls: Option<tonic::transport::ClientTlsConfig>,
    ) -> Result<Self, String> {
        let mut endpoint = Channel::from_shared(url.to_string())
            .map_err(|e| format!("sentinel.policy_url {url:?}: {e}"))?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(30))
            .tcp_nodelay(true);
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls).map_err(|e| format!("policy TLS: {e}"))?;
        }
        let client = PolicyServiceClient::with_interceptor(endpoint.connect_lazy(), credentials)
            .max_decoding_message_size(64 * 1024 * 1024);
        Ok(Self { client })
    }

    /// Applies every change after the view's version; returns how many were applied.
    pub async fn refresh(&self, view: &mut EntityView) -> Result<usize, tonic::Status> {
        let mut applied = 0;
        loop {
            let request = ListEntityChangesRequest { after_version: view.version, page_size: PAGE };
            let page = self.client.clone().list_entity_changes(request).await?.into_inner();
            applied += page.changes.len();
            for change in page.changes {
                view.apply(change);
            }
            view.version = view.version.max(page.next_after_version);
            if !page.more {
                return Ok(applied);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(version: u64, kind: E) -> pb::EntityChange {
        pb::EntityChange { version, entity: Some(pb::Entity { kind: Some(kind) }), deleted: String::new() }
    }

    #[test]
    fn the_view_follows_writes_and_deletions() {
        let mut view = EntityView::default();
        view.apply(change(
            1,
            E::Team(pb::Team { name: "teams/north".into(), site: "hq".into(), parent: String::new() }),
        ));
        view.apply(change(
            2,
            E::Team(pb::Team { name: "teams/n1".into(), site: "hq".into(), parent: "teams/north".into() }),
        ));
        view.apply(change(
            3,
            E::Grant(pb::Grant {
                name: "grants/g-1".into(),
                staff: "staff/alice".into(),
                subject: "subjects/s-1".into(),
                kind: GrantKind::BreakGlass as i32,
                start_time: Some(prost_types::Timestamp { seconds: 10, nanos: 0 }),
                expire_time: Some(prost_types::Timestamp { seconds: 20, nanos: 0 }),
                ..Default::default()
            }),
        ));
        assert!(view.team_within("n1", "north") && !view.team_within("north", "n1"));
        assert!(view.grant_at("alice", "s-1", 15_000).is_some_and(|g| g.break_glass));
        assert!(view.grant_at("alice", "s-1", 20_000).is_none(), "expired");
        view.apply(pb::EntityChange { version: 4, entity: None, deleted: "grants/g-1".into() });
        assert!(view.grant_at("alice", "s-1", 15_000).is_none());
        assert_eq!(view.version, 4);
    }
}
