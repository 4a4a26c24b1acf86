//! A check request as it arrives (names and strings, checked by the engine) and the
//! decision it gets.

use std::collections::BTreeSet;

use crate::model::{Id, Timestamp};
use crate::policy::AlertLevel;

/// Longest justification accepted, in characters.
pub const MAX_JUSTIFICATION_CHARS: usize = 2_000;
/// Longest device description accepted, in characters.
pub const MAX_DEVICE_CHARS: usize = 256;
/// Most record fields a request may name.
pub const MAX_FIELDS: usize = 64;

/// May `principal` do `action` on `resource`, in this context?
///
/// Names follow the design (AIP-122):
/// - `principal`: `staff/{id}`, `subjects/{id}` (a data subject) or `services/{name}`.
/// - `action`: `read`, `search`, `export`, `update`, `break_glass`, `record_access`,
///   `read_history`, `admin_entities`, `admin_policy`.
/// - `resource`: `subjects/{id}` or `subjects/{id}/records/{id}` for the per-subject actions;
///   `cases/{id}` (search within a case) or `subjects` (the whole register) for `search`;
///   `staff/{id}`, `teams/{id}`, `subjects/{id}`, `cases/{id}`, `conflicts/{id}`,
///   `grants/{id}` for `admin_entities`; `policy` for `admin_policy`.
/// - `fields`: the record field tags asked for (empty: all the purpose allows).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckRequest {
    pub principal: String,
    pub action: String,
    pub resource: String,
    pub fields: Vec<String>,
    pub context: RequestContext,
}

/// The request's context. `time` is the server's clock, never the caller's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestContext {
    /// A purpose code (`CASEWORK`, ...); `None` is denied by the pack, not refused.
    pub purpose: Option<String>,
    /// `cases/{id}`; when `None`, the engine looks for an open case linking principal and subject.
    pub case: Option<String>,
    /// Free text; blank counts as absent.
    pub justification: Option<String>,
    pub time: Timestamp,
    /// The peer IP address the gateway saw.
    pub source_address: Option<String>,
    pub device: Option<String>,
}

/// A request the engine refuses to decide: `field` names what is wrong
/// (`principal`, `resource`, `fields[2]`, `context.purpose`, ...).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {description}")]
pub struct RequestError {
    pub field: String,
    pub description: String,
}

impl RequestError {
    pub(crate) fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self { field: field.into(), description: description.into() }
    }
}

/// What the caller must do with an allowed access.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Obligations {
    /// Record field tags that may be returned: the union of the `@fields` of the permits
    /// that decided, narrowed to the fields asked for when some were named.
    pub fields: BTreeSet<String>,
    /// The highest `@alert` of the policies that decided.
    pub alert: AlertLevel,
    /// When the break-glass this access rides on (or starts) ends.
    pub break_glass_expires_at: Option<Timestamp>,
    /// When the data subject may see the access (a covert investigation's
    /// release date): the latest `@history_release` of the permits that decided.
    pub history_release_at: Option<Timestamp>,
}

/// The answer to a [`CheckRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// `@id`s of the policies that decided: the satisfied permits when allowed, the
    /// satisfied forbids when a forbid denied; empty for the default deny.
    pub determining_policies: Vec<String>,
    pub obligations: Obligations,
    /// What the caller may read; never reveals a restricted compartment or a decoy.
    pub public_reason: String,
    /// The whole story, for the ledger.
    pub full_reason: String,
    /// The case the decision was made on (named or found), if any.
    pub case: Option<Id>,
    /// The grant an allowed access runs under (a permit marked `@uses_grant` decided),
    /// for the ledger; on a denial, the grant the request was evaluated with, if any.
    pub grant: Option<Id>,
    /// [`crate::PolicySet::version`] of the set used.
    pub policy_version: String,
    /// [`crate::EntityIndex::version`] when the slice was read.
    pub entity_version: u64,
}
