//! The Quis policy engine: pure decision logic, no I/O.
//!
//! - [`model`]: the entities policy reasons about (staff, teams, subjects, cases,
//!   conflicts of interest, time-bound grants) and the closed enums of the design.
//! - [`policy`]: the Cedar schema and default pack ([`Pack`]), and compiled, validated
//!   policy sets ([`PolicySet`]) with the obligations their annotations carry.
//! - [`index`]: the in-memory [`EntityIndex`], updated by the change feed and read
//!   concurrently by checks, each of which takes only the slice it needs.
//! - [`engine`]: [`Engine::check`], the decision: Cedar decides, the engine adds
//!   obligations, the public and full reasons, and the versions decided on.
//!
//! ```
//! use quis_policy_engine::model::*;
//! use quis_policy_engine::{CheckRequest, Engine, EntityIndex, PolicySet, RequestContext};
//!
//! let policies = PolicySet::default();
//! let index = EntityIndex::new();
//! let id = |s: &str| Id::new(s).unwrap();
//! index.apply(EntityChange::Upsert(Entity::Team(Team { id: id("north"), site: id("leeds"), parent: None }))).unwrap();
//! index.apply(EntityChange::Upsert(Entity::Staff(Staff {
//!     id: id("alice"), team: id("north"), site: id("leeds"), roles: vec!["caseworker".into()],
//!     clearances: vec![], status: StaffStatus::Active,
//!     surname_key: None, address_key: None, household_key: None,
//! }))).unwrap();
//! index.apply(EntityChange::Upsert(Entity::Subject(Subject {
//!     id: id("s-1"), compartments: vec![], decoy: false,
//!     surname_key: None, address_key: None, household_key: None,
//! }))).unwrap();
//! index.apply(EntityChange::Upsert(Entity::Case(Case {
//!     id: id("c-1"), subjects: vec![id("s-1")], assigned_staff: vec![], assigned_teams: vec![id("north")],
//!     status: CaseStatus::Open, purpose: Purpose::TaxpayerService,
//! }))).unwrap();
//!
//! let request = CheckRequest {
//!     principal: "staff/alice".into(),
//!     action: "read".into(),
//!     resource: "subjects/s-1".into(),
//!     fields: vec![],
//!     context: RequestContext { purpose: Some("TAXPAYER_SERVICE".into()), time: 1_800_000_000, ..Default::default() },
//! };
//! let decision = Engine::check(&policies, &index, &request).unwrap();
//! assert!(decision.allowed);
//! assert_eq!(decision.determining_policies, ["case-read-taxpayer-service"]);
//! assert_eq!(decision.obligations.fields.iter().collect::<Vec<_>>(), ["contact", "identity"]);
//! ```
#![forbid(unsafe_code)]

pub mod engine;
pub mod index;
pub mod model;
mod partition;
pub mod policy;
pub mod request;

pub use engine::{Engine, ParsedRequest, PrincipalRef, ResourceRef};
pub use index::{EntityError, EntityIndex};
pub use partition::ContextKeys;
pub use policy::{AlertLevel, Pack, PolicyError, PolicyErrorKind, PolicySet};
pub use request::{CheckRequest, Decision, Obligations, RequestContext, RequestError};
