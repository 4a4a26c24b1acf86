//! `quis.policy.v1` entities ↔ the engine's model: every field checked, with
//! the field path in each violation (`entities[3].case.subjects[0]`).
use quis_core::FieldViolation;
use quis_policy_engine::model::{self as m, EntityKind, Id};
use quis_proto::policy as pb;

/// The collection of a resource name for each kind (`staff/{id}`, `teams/{id}`, ...).
pub fn collection(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::Staff => "staff",
        EntityKind::Team => "teams",
        EntityKind::Subject => "subjects",
        EntityKind::Case => "cases",
        EntityKind::Conflict => "conflicts",
        EntityKind::Grant => "grants",
    }
}

/// The kind a resource name's collection names.
pub fn kind_of_collection(collection: &str) -> Option<EntityKind> {
    EntityKind::ALL.iter().copied().find(|k| self::collection(*k) == collection)
}

/// The kind an `EntityType` names.
pub fn kind_of_type(t: i32) -> Option<EntityKind> {
    Some(match pb::EntityType::try_from(t).ok()? {
        pb::EntityType::Staff => EntityKind::Staff,
        pb::EntityType::Team => EntityKind::Team,
        pb::EntityType::Subject => EntityKind::Subject,
        pb::EntityType::Case => EntityKind::Case,
        pb::EntityType::Conflict => EntityKind::Conflict,
        pb::EntityType::Grant => EntityKind::Grant,
        pb::EntityType::Unspecified => return None,
    })
}

/// Collects violations while converting.
#[derive(Default)]
pub struct Checker {
    pub violations: Vec<FieldViolation>,
}

const MAX_ROLES: usize = 16;
const MAX_CASE_SUBJECTS: usize = 1000;
const MAX_CASE_STAFF: usize = 1000;
const MAX_CASE_TEAMS: usize = 100;
const MAX_GRANT_SECS: i64 = 30 * 24 * 3600;

impl Checker {
    fn bad(&mut self, field: impl Into<String>, rule: impl Into<String>) {
        self.violations.push(FieldViolation::new(field, rule));
    }

    /// A bare id.
    pub fn id(&mut self, field: &str, value: &str) -> Option<Id> {
        match Id::new(value) {
            Ok(id) => Some(id),
            Err(_) => {
                self.bad(field, "must be 1 to 64 characters of [a-z0-9-]");
                None
            }
        }
    }

    /// A resource name `{collection}/{id}` of a given kind.
    pub fn name(&mut self, field: &str, kind: EntityKind, value: &str) -> Option<Id> {
        let prefix = collection(kind);
        match value.strip_prefix(prefix).and_then(|r| r.strip_prefix('/')).map(Id::new) {
            Some(Ok(id)) => Some(id),
            _ => {
                self.bad(field, format!("must be {prefix}/{{id}} with an id of 1 to 64 characters of [a-z0-9-]"));
                None
            }
        }
    }

    fn optional_name(&mut self, field: &str, kind: EntityKind, value: &str) -> Option<Option<Id>> {
        if value.is_empty() { Some(None) } else { self.name(field, kind, value).map(Some) }
    }

    fn names(&mut self, field: &str, kind: EntityKind, values: &[String], max: usize) -> Option<Vec<Id>> {
        if values.len() > max {
            self.bad(field, format!("at most {max}"));
            return None;
        }
        let mut out = Vec::with_capacity(values.len());
        let mut ok = true;
        for (i, v) in values.iter().enumerate() {
            match self.name(&format!("{field}[{i}]"), kind, v) {
                Some(id) if !out.contains(&id) => out.push(id),
                Some(_) => {
                    self.bad(format!("{field}[{i}]"), "must not repeat");
                    ok = false;
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn key(&mut self, field: &str, bytes: &[u8], required: bool) -> Option<Option<[u8; 32]>> {
        match (bytes.len(), required) {
            (0, false) => Some(None),
            (32, _) => bytes.try_into().ok().map(Some),
            _ => {
                let rule = if required { "must be 32 bytes (HMAC-SHA256)" } else { "must be empty or 32 bytes" };
                self.bad(field, rule);
                None
            }
        }
    }

    fn compartments(&mut self, field: &str, values: &[i32]) -> Option<Vec<m::Compartment>> {
        let mut out = Vec::new();
        let mut ok = true;
        for (i, v) in values.iter().enumerate() {
            match compartment(*v) {
                Some(c) if !out.contains(&c) => out.push(c),
                Some(_) => {
                    self.bad(format!("{field}[{i}]"), "must not repeat");
                    ok = false;
                }
                None => {
                    self.bad(format!("{field}[{i}]"), "must be a known Compartment");
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    pub fn purpose(&mut self, field: &str, value: i32, required: bool) -> Option<Option<m::Purpose>> {
        match (purpose(value), value) {
            (Some(p), _) => Some(Some(p)),
            (None, 0) if !required => Some(None),
            _ => {
                self.bad(field, if required { "must be a known Purpose" } else { "must be a known Purpose or unset" });
                None
            }
        }
    }

    /// Converts one `Entity`, reporting violations under `field`.
    pub fn entity(&mut self, field: &str, entity: &pb::Entity) -> Option<m::Entity> {
        use pb::entity::Kind;
        match &entity.kind {
            None => {
                self.bad(format!("{field}.kind"), "must be one of staff, team, subject, case, conflict, grant");
                None
            }
            Some(Kind::Staff(s)) => self.staff(&format!("{field}.staff"), s).map(m::Entity::Staff),
            Some(Kind::Team(t)) => self.team(&format!("{field}.team"), t).map(m::Entity::Team),
            Some(Kind::Subject(s)) => self.subject(&format!("{field}.subject"), s).map(m::Entity::Subject),
            Some(Kind::Case(c)) => self.case(&format!("{field}.case"), c).map(m::Entity::Case),
            Some(Kind::Conflict(c)) => self.conflict(&format!("{field}.conflict"), c).map(m::Entity::Conflict),
            Some(Kind::Grant(g)) => self.grant(&format!("{field}.grant"), g).map(m::Entity::Grant),
        }
    }

    fn staff(&mut self, f: &str, s: &pb::Staff) -> Option<m::Staff> {
        let id = self.name(&format!("{f}.name"), EntityKind::Staff, &s.name);
        let team = self.name(&format!("{f}.team"), EntityKind::Team, &s.team);
        let site = self.id(&format!("{f}.site"), &s.site);
        let mut roles_ok = s.roles.len() <= MAX_ROLES;
        if !roles_ok {
            self.bad(format!("{f}.roles"), format!("at most {MAX_ROLES}"));
        }
        for (i, r) in s.roles.iter().enumerate() {
            let ok = !r.is_empty()
                && r.len() <= 64
                && r.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !ok {
                self.bad(format!("{f}.roles[{i}]"), "must be 1 to 64 characters of [a-z0-9_]");
                roles_ok = false;
            }
        }
        let clearances = self.compartments(&format!("{f}.clearances"), &s.clearances);
        let status = match pb::StaffStatus::try_from(s.status) {
            Ok(pb::StaffStatus::Active) => Some(m::StaffStatus::Active),
            Ok(pb::StaffStatus::Suspended) => Some(m::StaffStatus::Suspended),
            Ok(pb::StaffStatus::Terminated) => Some(m::StaffStatus::Terminated),
            _ => {
                self.bad(format!("{f}.status"), "must be ACTIVE, SUSPENDED or TERMINATED");
                None
            }
        };
        let surname_key = self.key(&format!("{f}.surname_key"), &s.surname_key, false);
        let address_key = self.key(&format!("{f}.address_key"), &s.address_key, false);
        let household_key = self.key(&format!("{f}.household_key"), &s.household_key, false);
        Some(m::Staff {
            id: id?,
            team: team?,
            site: site?,
            roles: roles_ok.then(|| s.roles.clone())?,
            clearances: clearances?,
            status: status?,
            surname_key: surname_key?,
            address_key: address_key?,
            household_key: household_key?,
        })
    }

    fn team(&mut self, f: &str, t: &pb::Team) -> Option<m::Team> {
        let id = self.name(&format!("{f}.name"), EntityKind::Team, &t.name);
        let site = self.id(&format!("{f}.site"), &t.site);
        let parent = self.optional_name(&format!("{f}.parent"), EntityKind::Team, &t.parent);
        if parent.as_ref().and_then(|p| p.as_ref()).is_some() && parent.as_ref().and_then(|p| p.as_ref()) == id.as_ref()
        {
            self.bad(format!("{f}.parent"), "must not be the team itself");
            return None;
        }
        Some(m::Team { id: id?, site: site?, parent: parent? })
    }

    fn subject(&mut self, f: &str, s: &pb::Subject) -> Option<m::Subject> {
        let id = self.name(&format!("{f}.name"), EntityKind::Subject, &s.name);
        let compartments = self.compartments(&format!("{f}.compartments"), &s.compartments);
        let surname_key = self.key(&format!("{f}.surname_key"), &s.surname_key, false);
        let address_key = self.key(&format!("{f}.address_key"), &s.address_key, false);
        let household_key = self.key(&format!("{f}.household_key"), &s.household_key, false);
        Some(m::Subject {
            id: id?,
            compartments: compartments?,
            decoy: s.decoy,
            surname_key: surname_key?,
            address_key: address_key?,
            household_key: household_key?,
        })
    }

    fn case(&mut self, f: &str, c: &pb::Case) -> Option<m::Case> {
        let id = self.name(&format!("{f}.name"), EntityKind::Case, &c.name);
        if c.subjects.is_empty() {
            self.bad(format!("{f}.subjects"), "must name at least one subject");
        }
        let subjects = self.names(&format!("{f}.subjects"), EntityKind::Subject, &c.subjects, MAX_CASE_SUBJECTS);
        let staff = self.names(&format!("{f}.assigned_staff"), EntityKind::Staff, &c.assigned_staff, MAX_CASE_STAFF);
        let teams = self.names(&format!("{f}.assigned_teams"), EntityKind::Team, &c.assigned_teams, MAX_CASE_TEAMS);
        let status = match pb::CaseStatus::try_from(c.status) {
            Ok(pb::CaseStatus::Open) => Some(m::CaseStatus::Open),
            Ok(pb::CaseStatus::Closed) => Some(m::CaseStatus::Closed),
            _ => {
                self.bad(format!("{f}.status"), "must be OPEN or CLOSED");
                None
            }
        };
        let purpose = self.purpose(&format!("{f}.purpose"), c.purpose, true);
        if c.subjects.is_empty() {
            return None;
        }
        Some(m::Case {
            id: id?,
            subjects: subjects?,
            assigned_staff: staff?,
            assigned_teams: teams?,
            status: status?,
            purpose: purpose??,
        })
    }

    fn conflict(&mut self, f: &str, c: &pb::Conflict) -> Option<m::Conflict> {
        let id = self.name(&format!("{f}.name"), EntityKind::Conflict, &c.name);
        let staff = self.name(&format!("{f}.staff"), EntityKind::Staff, &c.staff);
        let subject = self.name(&format!("{f}.subject"), EntityKind::Subject, &c.subject);
        Some(m::Conflict { id: id?, staff: staff?, subject: subject? })
    }

    fn grant(&mut self, f: &str, g: &pb::Grant) -> Option<m::Grant> {
        let id = self.name(&format!("{f}.name"), EntityKind::Grant, &g.name);
        let staff = self.name(&format!("{f}.staff"), EntityKind::Staff, &g.staff);
        let subject = self.name(&format!("{f}.subject"), EntityKind::Subject, &g.subject);
        let kind = match pb::GrantKind::try_from(g.kind) {
            Ok(pb::GrantKind::BreakGlass) => Some(m::GrantKind::BreakGlass),
            Ok(pb::GrantKind::Temporary) => Some(m::GrantKind::Temporary),
            _ => {
                self.bad(format!("{f}.kind"), "must be BREAK_GLASS or TEMPORARY");
                None
            }
        };
        let mut purposes = Vec::new();
        let mut purposes_ok = !g.purposes.is_empty();
        if g.purposes.is_empty() {
            self.bad(format!("{f}.purposes"), "must name at least one purpose");
        }
        for (i, p) in g.purposes.iter().enumerate() {
            match self.purpose(&format!("{f}.purposes[{i}]"), *p, true) {
                Some(Some(p)) if !purposes.contains(&p) => purposes.push(p),
                Some(_) => {
                    self.bad(format!("{f}.purposes[{i}]"), "must not repeat");
                    purposes_ok = false;
                }
                None => purposes_ok = false,
            }
        }
        let justification_ok = !g.justification.trim().is_empty() && g.justification.chars().count() <= 1024;
        if !justification_ok {
            self.bad(format!("{f}.justification"), "must be 1 to 1024 characters");
        }
        let starts = self.time(&format!("{f}.start_time"), g.start_time.as_ref());
        let expires = self.time(&format!("{f}.expire_time"), g.expire_time.as_ref());
        if let (Some(s), Some(e)) = (starts, expires)
            && (e <= s || e - s > MAX_GRANT_SECS)
        {
            self.bad(format!("{f}.expire_time"), "must be after start_time and at most 30 days later");
            return None;
        }
        // `granted_by` is output only: the caller's identity is filled in by the service.
        Some(m::Grant {
            id: id?,
            staff: staff?,
            subject: subject?,
            kind: kind?,
            purposes: purposes_ok.then_some(purposes)?,
            justification: justification_ok.then(|| g.justification.clone())?,
            starts_at: starts?,
            expires_at: expires?,
            granted_by: Id::new("pending").ok()?,
        })
    }

    /// A required timestamp between 2000 and 2100, whole seconds.
    pub fn time(&mut self, field: &str, t: Option<&prost_types::Timestamp>) -> Option<i64> {
        match t {
            Some(t) if (946_684_800..4_102_444_800).contains(&t.seconds) && (0..1_000_000_000).contains(&t.nanos) => {
                Some(t.seconds)
            }
            Some(_) => {
                self.bad(field, "must be between 2000 and 2100");
                None
            }
            None => {
                self.bad(field, "is required");
                None
            }
        }
    }
}

pub fn purpose(v: i32) -> Option<m::Purpose> {
    Some(match pb::Purpose::try_from(v).ok()? {
        pb::Purpose::Casework => m::Purpose::Casework,
        pb::Purpose::TaxpayerService => m::Purpose::TaxpayerService,
        pb::Purpose::Compliance => m::Purpose::Compliance,
        pb::Purpose::FraudInvestigation => m::Purpose::FraudInvestigation,
        pb::Purpose::Legal => m::Purpose::Legal,
        pb::Purpose::Audit => m::Purpose::Audit,
        pb::Purpose::Emergency => m::Purpose::Emergency,
        pb::Purpose::Unspecified => return None,
    })
}

fn compartment(v: i32) -> Option<m::Compartment> {
    Some(match pb::Compartment::try_from(v).ok()? {
        pb::Compartment::PublicFigure => m::Compartment::PublicFigure,
        pb::Compartment::Politician => m::Compartment::Politician,
        pb::Compartment::OwnStaff => m::Compartment::OwnStaff,
        pb::Compartment::Protected => m::Compartment::Protected,
        pb::Compartment::Unspecified => return None,
    })
}

/// Who an entity change names, for the self-administration rule: the staff it
/// is about or assigns, or that a grant or conflict is for.
pub fn names_staff(entity: &m::Entity, staff: &str) -> bool {
    match entity {
        m::Entity::Staff(s) => s.id.as_str() == staff,
        m::Entity::Case(c) => c.assigned_staff.iter().any(|s| s.as_str() == staff),
        m::Entity::Conflict(c) => c.staff.as_str() == staff,
        m::Entity::Grant(g) => g.staff.as_str() == staff,
        m::Entity::Team(_) | m::Entity::Subject(_) => false,
    }
}

/// Decodes a stored entity (the encoded `quis.policy.v1.Entity` the service wrote).
pub fn decode(body: &[u8]) -> Result<(pb::Entity, m::Entity), String> {
    use prost::Message;
    let entity = pb::Entity::decode(body).map_err(|e| e.to_string())?;
    let mut checker = Checker::default();
    let mut model = checker.entity("entity", &entity).ok_or_else(|| format!("{:?}", checker.violations))?;
    // The stored grant carries its real `granted_by`, which validation of input leaves aside.
    if let (m::Entity::Grant(g), Some(pb::entity::Kind::Grant(stored))) = (&mut model, &entity.kind) {
        g.granted_by = Id::new(stored.granted_by.as_str()).map_err(|e| format!("granted_by: {e}"))?;
    }
    Ok((entity, model))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(subjects: Vec<&str>, staff: Vec<&str>) -> pb::Entity {
        pb::Entity {
            kind: Some(pb::entity::Kind::Case(pb::Case {
                name: "cases/c-1".into(),
                subjects: subjects.into_iter().map(String::from).collect(),
                assigned_staff: staff.into_iter().map(String::from).collect(),
                assigned_teams: vec![],
                status: pb::CaseStatus::Open as i32,
                purpose: pb::Purpose::Casework as i32,
            })),
        }
    }

    #[test]
    fn a_valid_case_converts() {
        let mut c = Checker::default();
        let e = c.entity("entity", &case(vec!["subjects/s-1"], vec!["staff/alice"])).expect("valid");
        assert!(names_staff(&e, "alice"));
        assert!(!names_staff(&e, "bob"));
    }

    #[test]
    fn violations_name_the_field() {
        let mut c = Checker::default();
        assert!(
            c.entity("entities[2]", &case(vec!["subject/s-1", "subjects/S"], vec!["staff/a", "staff/a"])).is_none()
        );
        let fields: Vec<_> = c.violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            ["entities[2].case.subjects[0]", "entities[2].case.subjects[1]", "entities[2].case.assigned_staff[1]"]
        );
        let mut c = Checker::default();
        assert!(c.entity("entity", &pb::Entity { kind: None }).is_none());
        assert_eq!(c.violations[0].field, "entity.kind");
    }

    #[test]
    fn relationship_keys_are_32_bytes() {
        let mut c = Checker::default();
        let subject = |key: Vec<u8>| pb::Entity {
            kind: Some(pb::entity::Kind::Subject(pb::Subject {
                name: "subjects/s-1".into(),
                surname_key: key,
                ..Default::default()
            })),
        };
        assert!(c.entity("e", &subject(vec![7; 32])).is_some());
        assert!(c.entity("e", &subject(b"Smith".to_vec())).is_none());
        assert_eq!(c.violations[0].field, "e.subject.surname_key");
    }
}
