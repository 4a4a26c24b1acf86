//! The entity model shared by the engine and the policy service (which mirrors it in
//! `quis.policy.v1`). Values here are already valid: ids are checked by [`Id::new`], enums
//! are closed. Relationship keys are HMAC-SHA256 values computed by the vault or HR feed
//! under the organization's secret: never names or addresses.

use std::fmt;
use std::str::FromStr;

/// Seconds since the Unix epoch, UTC.
pub type Timestamp = i64;

/// HMAC-SHA256 of a normalized surname, address or household (see DESIGN.md).
pub type RelationshipKey = [u8; 32];

/// Longest id accepted (AIP-122 style ids of the design).
pub const MAX_ID_LEN: usize = 64;

/// An entity id: 1–64 characters of `[a-z0-9-]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(String);

/// Why a string is not an [`Id`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {MAX_ID_LEN} characters")]
    TooLong,
    #[error("must contain only a-z, 0-9 and '-'")]
    BadCharacter,
}

impl Id {
    pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
        let value = value.into();
        if value.is_empty() {
            return Err(IdError::Empty);
        }
        if value.len() > MAX_ID_LEN {
            return Err(IdError::TooLong);
        }
        if !value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return Err(IdError::BadCharacter);
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Id {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl AsRef<str> for Id {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Defines a closed enum with its canonical UPPER_SNAKE_CASE (or lower-case) names, used
/// both in Cedar (as strings) and on the wire.
macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownName { kind: stringify!($name) }),
                }
            }
        }
    };
}

/// A name that is not one of an enum's values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a known {kind}")]
pub struct UnknownName {
    pub kind: &'static str,
}

named_enum!(
    /// Purpose of use, as `quis.ledger.v1.Purpose` (HL7 PurposeOfUse-like).
    Purpose {
        Casework => "CASEWORK",
        TaxpayerService => "TAXPAYER_SERVICE",
        Compliance => "COMPLIANCE",
        FraudInvestigation => "FRAUD_INVESTIGATION",
        Legal => "LEGAL",
        Audit => "AUDIT",
        Emergency => "EMERGENCY",
    }
);

named_enum!(
    /// A restricted compartment: access needs a clearance for it (or an active break-glass).
    Compartment {
        PublicFigure => "PUBLIC_FIGURE",
        Politician => "POLITICIAN",
        OwnStaff => "OWN_STAFF",
        Protected => "PROTECTED",
    }
);

named_enum!(
    /// Employment status; only `Active` staff may do anything.
    StaffStatus {
        Active => "ACTIVE",
        Suspended => "SUSPENDED",
        Terminated => "TERMINATED",
    }
);

named_enum!(
    CaseStatus {
        Open => "OPEN",
        Closed => "CLOSED",
    }
);

named_enum!(
    GrantKind {
        BreakGlass => "BREAK_GLASS",
        Temporary => "TEMPORARY",
    }
);

named_enum!(
    /// What a principal asks to do.
    Action {
        Read => "read",
        Search => "search",
        Export => "export",
        Update => "update",
        BreakGlass => "break_glass",
        RecordAccess => "record_access",
        ReadHistory => "read_history",
        AdminEntities => "admin_entities",
        AdminPolicy => "admin_policy",
    }
);

named_enum!(
    /// The kinds of entity the index holds (the `kind` of a delete).
    EntityKind {
        Staff => "staff",
        Team => "team",
        Subject => "subject",
        Case => "case",
        Conflict => "conflict",
        Grant => "grant",
    }
);

/// A staff member (from HR). Role names are 1–64 characters of `[a-z0-9_]`
/// (`caseworker`, `team_lead`, ...; checked when the index applies the change).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Staff {
    pub id: Id,
    pub team: Id,
    pub site: Id,
    pub roles: Vec<String>,
    pub clearances: Vec<Compartment>,
    pub status: StaffStatus,
    pub surname_key: Option<RelationshipKey>,
    pub address_key: Option<RelationshipKey>,
    pub household_key: Option<RelationshipKey>,
}

/// A team; teams nest (a member of a team is a member of its parent teams).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Team {
    pub id: Id,
    pub site: Id,
    pub parent: Option<Id>,
}

/// The decision-relevant attributes of a data subject, pushed by the vault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    pub id: Id,
    pub compartments: Vec<Compartment>,
    pub decoy: bool,
    pub surname_key: Option<RelationshipKey>,
    pub address_key: Option<RelationshipKey>,
    pub household_key: Option<RelationshipKey>,
}

/// A unit of legitimate work about some subjects, assigned to staff and/or teams.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    pub id: Id,
    pub subjects: Vec<Id>,
    pub assigned_staff: Vec<Id>,
    pub assigned_teams: Vec<Id>,
    pub status: CaseStatus,
    pub purpose: Purpose,
}

/// A declared conflict of interest between a staff member and a subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub id: Id,
    pub staff: Id,
    pub subject: Id,
}

/// A time-bound grant of access to one subject; an active break-glass is one of these.
/// Active when `starts_at <= time < expires_at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub id: Id,
    pub staff: Id,
    pub subject: Id,
    pub kind: GrantKind,
    pub purposes: Vec<Purpose>,
    pub justification: String,
    pub starts_at: Timestamp,
    pub expires_at: Timestamp,
    pub granted_by: Id,
}

impl Grant {
    pub fn is_active_at(&self, time: Timestamp) -> bool {
        self.starts_at <= time && time < self.expires_at
    }
}

/// Any entity the index holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entity {
    Staff(Staff),
    Team(Team),
    Subject(Subject),
    Case(Case),
    Conflict(Conflict),
    Grant(Grant),
}

impl Entity {
    pub fn kind(&self) -> EntityKind {
        match self {
            Entity::Staff(_) => EntityKind::Staff,
            Entity::Team(_) => EntityKind::Team,
            Entity::Subject(_) => EntityKind::Subject,
            Entity::Case(_) => EntityKind::Case,
            Entity::Conflict(_) => EntityKind::Conflict,
            Entity::Grant(_) => EntityKind::Grant,
        }
    }

    pub fn id(&self) -> &Id {
        match self {
            Entity::Staff(e) => &e.id,
            Entity::Team(e) => &e.id,
            Entity::Subject(e) => &e.id,
            Entity::Case(e) => &e.id,
            Entity::Conflict(e) => &e.id,
            Entity::Grant(e) => &e.id,
        }
    }
}

/// One change from the store's change feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntityChange {
    Upsert(Entity),
    Delete(EntityKind, Id),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_design_syntax() {
        assert!(Id::new("alice-01").is_ok());
        assert_eq!(Id::new(""), Err(IdError::Empty));
        assert_eq!(Id::new("a".repeat(65)), Err(IdError::TooLong));
        assert!(Id::new("a".repeat(64)).is_ok());
        assert_eq!(Id::new("Alice"), Err(IdError::BadCharacter));
        assert_eq!(Id::new("a/b"), Err(IdError::BadCharacter));
        assert_eq!(Id::new("é"), Err(IdError::BadCharacter));
    }

    #[test]
    fn enum_names_round_trip() {
        for p in Purpose::ALL {
            assert_eq!(p.as_str().parse::<Purpose>(), Ok(*p));
        }
        for a in Action::ALL {
            assert_eq!(a.as_str().parse::<Action>(), Ok(*a));
        }
        assert!("casework".parse::<Purpose>().is_err());
        assert!("person".parse::<EntityKind>().is_err());
    }
}
