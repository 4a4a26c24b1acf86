//! The verified caller of a request, as every service sees it.
use std::{collections::BTreeSet, fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// What kind of principal a token names (`kind` claim).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalKind {
    Staff,
    Service,
    Subject,
}

/// A role from the design's identity table (`roles` claim).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Caseworker,
    TeamLead,
    Investigator,
    Auditor,
    PrivacyOfficer,
    Admin,
    Ingest,
    Service,
}

impl Role {
    pub const ALL: [Role; 8] = [
        Role::Caseworker,
        Role::TeamLead,
        Role::Investigator,
        Role::Auditor,
        Role::PrivacyOfficer,
        Role::Admin,
        Role::Ingest,
        Role::Service,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Caseworker => "caseworker",
            Role::TeamLead => "team_lead",
            Role::Investigator => "investigator",
            Role::Auditor => "auditor",
            Role::PrivacyOfficer => "privacy_officer",
            Role::Admin => "admin",
            Role::Ingest => "ingest",
            Role::Service => "service",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| format!("unknown role {s:?}"))
    }
}

/// A verified principal: the token's claims, typed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// `sub`: a staff id, a service name or a subject id.
    pub id: String,
    pub kind: PrincipalKind,
    pub roles: BTreeSet<Role>,
    /// Informational; the staff entity held by policy wins where they differ.
    pub team: Option<String>,
    pub site: Option<String>,
    /// `jti`, the token id that revocation names.
    pub token_id: String,
    /// `exp`, seconds since the epoch.
    pub expires_at: u64,
}

impl Principal {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// A service principal holding the `service` role (service-to-service calls).
    pub fn is_service(&self) -> bool {
        self.kind == PrincipalKind::Service && self.has_role(Role::Service)
    }
}
