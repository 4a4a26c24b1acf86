//! The in-memory entity index: every entity the store holds, each with its Cedar entity
//! built once when it changes, plus the reverse links a slice needs (the cases of a
//! subject, the conflicts and grants of a staff member).
//!
//! Reads are concurrent and cheap (sharded maps, `Arc` values); writes come from one
//! change feed and are serialized by a writer lock so reverse links stay consistent.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use cedar_policy::{EntityId, EntityTypeName, EntityUid, RestrictedExpression};
use dashmap::DashMap;

use crate::model::{Case, Conflict, Entity, EntityChange, EntityKind, Grant, Id, Staff, Subject, Team};

/// Deepest team nesting followed when building a slice.
pub const MAX_TEAM_DEPTH: usize = 32;
/// Most roles a staff member may hold.
const MAX_ROLES: usize = 64;
/// Most members of one list of a case (subjects, staff or teams) or purposes of a grant.
pub const MAX_LIST_LEN: usize = 10_000;
/// Most staff members whose Cedar entities (with their teams) are kept built; past it the
/// cache starts again empty.
const PRINCIPALS_KEPT: usize = 100_000;

/// Why a change was refused; the index is unchanged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EntityError {
    #[error("{field}: {description}")]
    Invalid { field: String, description: String },
    #[error("team: setting the parent of team {0} would make a cycle")]
    TeamCycle(Id),
    #[error("version: {given} is below the index version {current}")]
    StaleVersion { given: u64, current: u64 },
}

fn invalid(field: impl Into<String>, description: impl Into<String>) -> EntityError {
    EntityError::Invalid { field: field.into(), description: description.into() }
}

impl Borrow<str> for Id {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

/// A model entity with its Cedar form.
#[derive(Debug)]
pub struct Node<T> {
    pub model: T,
    pub cedar: cedar_policy::Entity,
}

/// Cedar entity type names of the schema.
pub(crate) struct Types {
    pub staff: EntityTypeName,
    pub team: EntityTypeName,
    pub subject: EntityTypeName,
    pub service: EntityTypeName,
    pub case: EntityTypeName,
    pub conflict: EntityTypeName,
    pub grant: EntityTypeName,
    pub register: EntityTypeName,
    pub policy_store: EntityTypeName,
}

pub(crate) static TYPES: LazyLock<Types> = LazyLock::new(|| {
    // Constant names declared in the schema.
    let name = |n: &str| EntityTypeName::from_str(n).expect("valid Cedar type name");
    Types {
        staff: name("Quis::Staff"),
        team: name("Quis::Team"),
        subject: name("Quis::Subject"),
        service: name("Quis::Service"),
        case: name("Quis::Case"),
        conflict: name("Quis::Conflict"),
        grant: name("Quis::Grant"),
        register: name("Quis::Register"),
        policy_store: name("Quis::PolicyStore"),
    }
});

pub(crate) fn uid(kind: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(kind.clone(), EntityId::new(id))
}

fn uid_expr(kind: &EntityTypeName, id: &str) -> RestrictedExpression {
    RestrictedExpression::new_entity_uid(uid(kind, id))
}

fn strings<'a>(values: impl IntoIterator<Item = &'a str>) -> RestrictedExpression {
    RestrictedExpression::new_set(values.into_iter().map(|v| RestrictedExpression::new_string(v.to_string())))
}

fn entity(
    uid: EntityUid,
    attrs: Vec<(&str, RestrictedExpression)>,
    parents: HashSet<EntityUid>,
) -> Result<cedar_policy::Entity, EntityError> {
    cedar_policy::Entity::new(uid, attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(), parents)
        .map_err(|e| invalid("entity", e.to_string()))
}

fn is_role(role: &str) -> bool {
    (1..=64).contains(&role.len()) && role.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn check_len<T>(field: &str, list: &[T]) -> Result<(), EntityError> {
    if list.len() > MAX_LIST_LEN {
        return Err(invalid(field, format!("at most {MAX_LIST_LEN} entries")));
    }
    Ok(())
}

fn staff_node(s: Staff) -> Result<Node<Staff>, EntityError> {
    if s.roles.len() > MAX_ROLES {
        return Err(invalid("staff.roles", format!("at most {MAX_ROLES} roles")));
    }
    if let Some(i) = s.roles.iter().position(|r| !is_role(r)) {
        return Err(invalid(format!("staff.roles[{i}]"), "must be 1-64 characters of a-z, 0-9 and '_'"));
    }
    let t = &*TYPES;
    let cedar = entity(
        uid(&t.staff, s.id.as_str()),
        vec![
            ("site", RestrictedExpression::new_string(s.site.to_string())),
            ("roles", strings(s.roles.iter().map(String::as_str))),
            ("clearances", strings(s.clearances.iter().map(|c| c.as_str()))),
            ("status", RestrictedExpression::new_string(s.status.as_str().to_string())),
        ],
        HashSet::from([uid(&t.team, s.team.as_str())]),
    )?;
    Ok(Node { model: s, cedar })
}

fn team_node(team: Team) -> Result<Node<Team>, EntityError> {
    let t = &*TYPES;
    let parents = team.parent.iter().map(|p| uid(&t.team, p.as_str())).collect();
    let cedar = entity(
        uid(&t.team, team.id.as_str()),
        vec![("site", RestrictedExpression::new_string(team.site.to_string()))],
        parents,
    )?;
    Ok(Node { model: team, cedar })
}

fn subject_node(s: Subject) -> Result<Node<Subject>, EntityError> {
    let t = &*TYPES;
    let cedar = entity(
        uid(&t.subject, s.id.as_str()),
        vec![
            ("compartments", strings(s.compartments.iter().map(|c| c.as_str()))),
            ("decoy", RestrictedExpression::new_bool(s.decoy)),
        ],
        HashSet::new(),
    )?;
    Ok(Node { model: s, cedar })
}

fn case_node(c: Case) -> Result<Node<Case>, EntityError> {
    check_len("case.subjects", &c.subjects)?;
    check_len("case.assigned_staff", &c.assigned_staff)?;
    check_len("case.assigned_teams", &c.assigned_teams)?;
    let t = &*TYPES;
    let refs = |kind: &EntityTypeName, ids: &[Id]| {
        RestrictedExpression::new_set(ids.iter().map(|id| uid_expr(kind, id.as_str())))
    };
    let cedar = entity(
        uid(&t.case, c.id.as_str()),
        vec![
            ("subjects", refs(&t.subject, &c.subjects)),
            ("assigned_staff", refs(&t.staff, &c.assigned_staff)),
            ("assigned_teams", refs(&t.team, &c.assigned_teams)),
            ("status", RestrictedExpression::new_string(c.status.as_str().to_string())),
            ("purpose", RestrictedExpression::new_string(c.purpose.as_str().to_string())),
        ],
        HashSet::new(),
    )?;
    Ok(Node { model: c, cedar })
}

fn conflict_node(c: Conflict) -> Result<Node<Conflict>, EntityError> {
    let t = &*TYPES;
    let cedar = entity(
        uid(&t.conflict, c.id.as_str()),
        vec![("staff", uid_expr(&t.staff, c.staff.as_str())), ("subject", uid_expr(&t.subject, c.subject.as_str()))],
        HashSet::new(),
    )?;
    Ok(Node { model: c, cedar })
}

fn grant_node(g: Grant) -> Result<Node<Grant>, EntityError> {
    if g.expires_at <= g.starts_at {
        return Err(invalid("grant.expires_at", "must be after starts_at"));
    }
    if g.justification.trim().is_empty() {
        return Err(invalid("grant.justification", "a grant needs a justification"));
    }
    if g.purposes.is_empty() {
        return Err(invalid("grant.purposes", "a grant needs at least one purpose"));
    }
    check_len("grant.purposes", &g.purposes)?;
    let t = &*TYPES;
    let cedar = entity(
        uid(&t.grant, g.id.as_str()),
        vec![
            ("staff", uid_expr(&t.staff, g.staff.as_str())),
            ("subject", uid_expr(&t.subject, g.subject.as_str())),
            ("kind", RestrictedExpression::new_string(g.kind.as_str().to_string())),
            ("purposes", strings(g.purposes.iter().map(|p| p.as_str()))),
            ("starts_at", RestrictedExpression::new_long(g.starts_at)),
            ("expires_at", RestrictedExpression::new_long(g.expires_at)),
        ],
        HashSet::new(),
    )?;
    Ok(Node { model: g, cedar })
}

/// A staff member, the teams above them, and the Cedar entities of all of them with the
/// transitive closure of the team hierarchy already computed: the part of a slice that
/// depends on the principal alone, built once and reused by every check they make.
#[derive(Debug)]
pub struct StaffPrincipal {
    pub staff: Arc<Node<Staff>>,
    /// Their team and the teams above it, nearest first.
    pub teams: Vec<Arc<Node<Team>>>,
    pub entities: cedar_policy::Entities,
    /// The team generation it was built at: any team change makes it stale.
    team_generation: u64,
}

/// An entity with its Cedar form, built before the writer lock is taken (so that
/// changes applied from several threads build their entities in parallel).
enum Built {
    Staff(Node<Staff>),
    Team(Node<Team>),
    Subject(Node<Subject>),
    Case(Node<Case>),
    Conflict(Node<Conflict>),
    Grant(Node<Grant>),
}

/// A change checked and ready to apply.
enum Prepared {
    // Boxed: a built entity is several hundred bytes, a deletion a few dozen.
    Upsert(Box<Built>),
    Delete(EntityKind, Id),
}

fn prepare(change: EntityChange) -> Result<Prepared, EntityError> {
    Ok(match change {
        EntityChange::Upsert(entity) => Prepared::Upsert(Box::new(match entity {
            Entity::Staff(s) => Built::Staff(staff_node(s)?),
            Entity::Team(t) => Built::Team(team_node(t)?),
            Entity::Subject(s) => Built::Subject(subject_node(s)?),
            Entity::Case(c) => Built::Case(case_node(c)?),
            Entity::Conflict(c) => Built::Conflict(conflict_node(c)?),
            Entity::Grant(g) => Built::Grant(grant_node(g)?),
        })),
        EntityChange::Delete(kind, id) => Prepared::Delete(kind, id),
    })
}

/// All entities, indexed for per-request slices. Shared by reference (`Arc<EntityIndex>`)
/// between the change feed (writer) and any number of concurrent checks (readers).
#[derive(Default)]
pub struct EntityIndex {
    staff: DashMap<Id, Arc<Node<Staff>>>,
    teams: DashMap<Id, Arc<Node<Team>>>,
    subjects: DashMap<Id, Arc<Node<Subject>>>,
    cases: DashMap<Id, Arc<Node<Case>>>,
    conflicts: DashMap<Id, Arc<Node<Conflict>>>,
    grants: DashMap<Id, Arc<Node<Grant>>>,
    /// subject id -> ids of the cases listing it.
    cases_by_subject: DashMap<Id, Vec<Id>>,
    /// staff id -> ids of the conflicts they declared.
    conflicts_by_staff: DashMap<Id, Vec<Id>>,
    /// staff id -> ids of the grants they hold.
    grants_by_staff: DashMap<Id, Vec<Id>>,
    /// staff id -> their built principal part of a slice (see [`StaffPrincipal`]).
    principals: DashMap<Id, Arc<StaffPrincipal>>,
    /// Counts team changes, so a kept principal built over an older hierarchy is rebuilt.
    team_generation: AtomicU64,
    version: AtomicU64,
    writer: Mutex<()>,
}

impl std::fmt::Debug for EntityIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntityIndex")
            .field("version", &self.version())
            .field("staff", &self.staff.len())
            .field("teams", &self.teams.len())
            .field("subjects", &self.subjects.len())
            .field("cases", &self.cases.len())
            .field("conflicts", &self.conflicts.len())
            .field("grants", &self.grants.len())
            .finish()
    }
}

fn link(map: &DashMap<Id, Vec<Id>>, key: &Id, value: &Id) {
    let mut list = map.entry(key.clone()).or_default();
    if !list.contains(value) {
        list.push(value.clone());
    }
}

fn unlink(map: &DashMap<Id, Vec<Id>>, key: &Id, value: &Id) {
    let now_empty = match map.get_mut(key) {
        Some(mut list) => {
            list.retain(|v| v != value);
            list.is_empty()
        }
        None => false,
    };
    if now_empty {
        map.remove_if(key, |_, list| list.is_empty());
    }
}

impl EntityIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one change and returns the new version (the previous one plus one).
    pub fn apply(&self, change: EntityChange) -> Result<u64, EntityError> {
        let change = prepare(change)?;
        let _writer = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.apply_locked(change)?;
        Ok(self.version.fetch_add(1, Ordering::AcqRel) + 1)
    }

    /// Applies a change and sets the version to `version` (a store's change-feed sequence
    /// number, so replicas report the same version); `version` must not go backwards.
    pub fn apply_versioned(&self, change: EntityChange, version: u64) -> Result<u64, EntityError> {
        let change = prepare(change)?;
        let _writer = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let current = self.version.load(Ordering::Acquire);
        if version < current {
            return Err(EntityError::StaleVersion { given: version, current });
        }
        self.apply_locked(change)?;
        self.version.store(version, Ordering::Release);
        Ok(version)
    }

    /// Number of changes applied (or the last version given to [`Self::apply_versioned`]).
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    fn apply_locked(&self, change: Prepared) -> Result<(), EntityError> {
        match change {
            Prepared::Upsert(node) => self.upsert(*node),
            Prepared::Delete(kind, id) => {
                self.delete(kind, &id);
                Ok(())
            }
        }
    }

    fn upsert(&self, node: Built) -> Result<(), EntityError> {
        match node {
            Built::Staff(node) => {
                let id = node.model.id.clone();
                self.staff.insert(id.clone(), Arc::new(node));
                self.principals.remove(&id);
            }
            Built::Team(node) => {
                let team = &node.model;
                if team.parent.as_ref().is_some_and(|parent| self.reaches(parent, &team.id)) {
                    return Err(EntityError::TeamCycle(node.model.id));
                }
                self.teams.insert(node.model.id.clone(), Arc::new(node));
                self.team_generation.fetch_add(1, Ordering::AcqRel);
            }
            Built::Subject(node) => {
                self.subjects.insert(node.model.id.clone(), Arc::new(node));
            }
            Built::Case(node) => {
                let node = Arc::new(node);
                let id = node.model.id.clone();
                if let Some(old) = self.cases.insert(id.clone(), node.clone()) {
                    for s in &old.model.subjects {
                        unlink(&self.cases_by_subject, s, &id);
                    }
                }
                for s in &node.model.subjects {
                    link(&self.cases_by_subject, s, &id);
                }
            }
            Built::Conflict(node) => {
                let node = Arc::new(node);
                let id = node.model.id.clone();
                if let Some(old) = self.conflicts.insert(id.clone(), node.clone()) {
                    unlink(&self.conflicts_by_staff, &old.model.staff, &id);
                }
                link(&self.conflicts_by_staff, &node.model.staff, &id);
            }
            Built::Grant(node) => {
                let node = Arc::new(node);
                let id = node.model.id.clone();
                if let Some(old) = self.grants.insert(id.clone(), node.clone()) {
                    unlink(&self.grants_by_staff, &old.model.staff, &id);
                }
                link(&self.grants_by_staff, &node.model.staff, &id);
            }
        }
        Ok(())
    }

    fn delete(&self, kind: EntityKind, id: &Id) {
        match kind {
            EntityKind::Staff => {
                self.staff.remove(id);
                self.principals.remove(id);
            }
            EntityKind::Team => {
                self.teams.remove(id);
                self.team_generation.fetch_add(1, Ordering::AcqRel);
            }
            EntityKind::Subject => {
                self.subjects.remove(id);
            }
            EntityKind::Case => {
                if let Some((_, old)) = self.cases.remove(id) {
                    for s in &old.model.subjects {
                        unlink(&self.cases_by_subject, s, id);
                    }
                }
            }
            EntityKind::Conflict => {
                if let Some((_, old)) = self.conflicts.remove(id) {
                    unlink(&self.conflicts_by_staff, &old.model.staff, id);
                }
            }
            EntityKind::Grant => {
                if let Some((_, old)) = self.grants.remove(id) {
                    unlink(&self.grants_by_staff, &old.model.staff, id);
                }
            }
        }
    }

    /// Whether following parents from `from` reaches `target` (or `from` is `target`).
    fn reaches(&self, from: &Id, target: &Id) -> bool {
        let mut current = Some(from.clone());
        for _ in 0..=MAX_TEAM_DEPTH {
            match current {
                Some(id) if id == *target => return true,
                Some(id) => current = self.teams.get(&id).and_then(|t| t.model.parent.clone()),
                None => return false,
            }
        }
        // Deeper than any slice follows: refuse rather than risk a cycle.
        true
    }

    pub fn staff(&self, id: &str) -> Option<Arc<Node<Staff>>> {
        self.staff.get(id).map(|n| n.clone())
    }

    pub fn team(&self, id: &str) -> Option<Arc<Node<Team>>> {
        self.teams.get(id).map(|n| n.clone())
    }

    pub fn subject(&self, id: &str) -> Option<Arc<Node<Subject>>> {
        self.subjects.get(id).map(|n| n.clone())
    }

    pub fn case(&self, id: &str) -> Option<Arc<Node<Case>>> {
        self.cases.get(id).map(|n| n.clone())
    }

    pub fn conflict(&self, id: &str) -> Option<Arc<Node<Conflict>>> {
        self.conflicts.get(id).map(|n| n.clone())
    }

    pub fn grant(&self, id: &str) -> Option<Arc<Node<Grant>>> {
        self.grants.get(id).map(|n| n.clone())
    }

    /// The team and the teams above it, nearest first (at most [`MAX_TEAM_DEPTH`]).
    pub fn team_chain(&self, team: &Id) -> Vec<Arc<Node<Team>>> {
        let mut chain: Vec<Arc<Node<Team>>> = Vec::new();
        let mut next = self.team(team.as_str());
        while let Some(node) = next {
            if chain.len() >= MAX_TEAM_DEPTH {
                break;
            }
            next = node.model.parent.as_ref().and_then(|p| self.team(p.as_str()));
            chain.push(node);
        }
        chain
    }

    /// Staff member `id` with their teams and Cedar entities, kept from an earlier check
    /// unless the staff member or any team changed since; `None` for unknown staff.
    /// A kept principal is only used while its staff node is the one in the index and no
    /// team changed, so a suspension or a move takes effect on the next check.
    pub fn staff_principal(&self, id: &str) -> Option<Result<Arc<StaffPrincipal>, String>> {
        let staff = self.staff(id)?;
        let generation = self.team_generation.load(Ordering::Acquire);
        if let Some(kept) = self.principals.get(id)
            && Arc::ptr_eq(&kept.staff, &staff)
            && kept.team_generation == generation
        {
            return Some(Ok(kept.clone()));
        }
        let teams = self.team_chain(&staff.model.team);
        let cedar = std::iter::once(staff.cedar.clone()).chain(teams.iter().map(|t| t.cedar.clone()));
        let entities = match cedar_policy::Entities::from_entities(cedar, None) {
            Ok(entities) => entities,
            Err(e) => return Some(Err(e.to_string())),
        };
        let built = Arc::new(StaffPrincipal { staff: staff.clone(), teams, entities, team_generation: generation });
        if self.principals.len() >= PRINCIPALS_KEPT {
            self.principals.clear();
        }
        self.principals.insert(staff.model.id.clone(), built.clone());
        Some(Ok(built))
    }

    /// The cases listing `subject`.
    pub fn cases_of_subject(&self, subject: &str) -> Vec<Arc<Node<Case>>> {
        let ids = self.cases_by_subject.get(subject).map(|l| l.clone()).unwrap_or_default();
        ids.iter().filter_map(|id| self.case(id.as_str())).collect()
    }

    /// The conflicts `staff` declared with `subject`.
    pub fn conflicts_between(&self, staff: &str, subject: &str) -> Vec<Arc<Node<Conflict>>> {
        let ids = self.conflicts_by_staff.get(staff).map(|l| l.clone()).unwrap_or_default();
        ids.iter().filter_map(|id| self.conflict(id.as_str())).filter(|c| c.model.subject.as_str() == subject).collect()
    }

    /// The grants `staff` holds on `subject`.
    pub fn grants_between(&self, staff: &str, subject: &str) -> Vec<Arc<Node<Grant>>> {
        let ids = self.grants_by_staff.get(staff).map(|l| l.clone()).unwrap_or_default();
        ids.iter().filter_map(|id| self.grant(id.as_str())).filter(|g| g.model.subject.as_str() == subject).collect()
    }

    /// How many entities of `kind` the index holds.
    pub fn count(&self, kind: EntityKind) -> usize {
        match kind {
            EntityKind::Staff => self.staff.len(),
            EntityKind::Team => self.teams.len(),
            EntityKind::Subject => self.subjects.len(),
            EntityKind::Case => self.cases.len(),
            EntityKind::Conflict => self.conflicts.len(),
            EntityKind::Grant => self.grants.len(),
        }
    }
}
