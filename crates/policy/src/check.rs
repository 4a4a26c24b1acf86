//! `Check`: who may ask about whom, every field of the request checked, then
//! the engine decides on this replica's fresh view.
use std::collections::BTreeSet;

use quis_auth::{AuthError, Principal, PrincipalKind};
use quis_core::{FieldViolation, metrics::time_stage_async};
use quis_policy_engine::{CheckRequest, Engine, RequestContext, policy::AlertLevel};
use quis_proto::policy as pb;

use crate::{
    entities,
    error::{PolicyError, invalid},
    service::Policy,
};

/// How far a caller's `context.time` may be from the server's clock.
const MAX_CLOCK_SKEW_SECS: i64 = 300;
const MAX_JUSTIFICATION_CHARS: usize = quis_policy_engine::request::MAX_JUSTIFICATION_CHARS;
const MAX_DEVICE_CHARS: usize = quis_policy_engine::request::MAX_DEVICE_CHARS;
const MAX_FIELDS: usize = quis_policy_engine::request::MAX_FIELDS;

/// The resource name of the caller as a principal.
fn own_name(caller: &Principal) -> String {
    match caller.kind {
        PrincipalKind::Staff => format!("staff/{}", caller.id),
        PrincipalKind::Subject => format!("subjects/{}", caller.id),
        PrincipalKind::Service => format!("services/{}", caller.id),
    }
}

fn action_name(action: i32) -> Option<&'static str> {
    Some(match pb::Action::try_from(action).ok()? {
        pb::Action::Read => "read",
        pb::Action::Search => "search",
        pb::Action::Export => "export",
        pb::Action::Update => "update",
        pb::Action::BreakGlass => "break_glass",
        pb::Action::RecordAccess => "record_access",
        pb::Action::ReadHistory => "read_history",
        pb::Action::AdminEntities => "admin_entities",
        pb::Action::AdminPolicy => "admin_policy",
        pb::Action::Unspecified => return None,
    })
}

fn alert(level: AlertLevel) -> pb::AlertLevel {
    match level {
        AlertLevel::None => pb::AlertLevel::Unspecified,
        AlertLevel::Low => pb::AlertLevel::Low,
        AlertLevel::High => pb::AlertLevel::High,
        AlertLevel::Critical => pb::AlertLevel::Critical,
    }
}

fn optional(s: &str) -> Option<String> {
    if s.is_empty() { None } else { Some(s.to_string()) }
}

/// Checks what the service can check without the entities; the engine checks the rest.
/// `now_ms` is the server's clock, which decides the check time.
fn request(prefix: &str, principal: String, req: &pb::CheckRequest, now_ms: i64) -> Result<CheckRequest, PolicyError> {
    let mut violations = Vec::new();
    let mut bad = |field: &str, rule: String| violations.push(FieldViolation::new(format!("{prefix}{field}"), rule));
    let action = action_name(req.action);
    if action.is_none() {
        bad("action", "must be a known Action other than UNSPECIFIED".into());
    }
    if req.resource.is_empty() || req.resource.len() > 200 {
        bad("resource", "must be a resource name of at most 200 characters".into());
    }
    if req.fields.len() > MAX_FIELDS {
        bad("fields", format!("at most {MAX_FIELDS}"));
    }
    for (i, f) in req.fields.iter().enumerate() {
        let ok = !f.is_empty()
            && f.len() <= 64
            && f.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !ok {
            bad(&format!("fields[{i}]"), "must be 1 to 64 characters of [a-z0-9_-]".into());
        }
    }
    let context = req.context.clone().unwrap_or_default();
    let purpose = match (entities::purpose(context.purpose), context.purpose) {
        (Some(p), _) => Some(p.as_str().to_string()),
        // No purpose is a question the pack answers (deny), not a malformed request.
        (None, 0) => None,
        (None, _) => {
            bad("context.purpose", "must be a known Purpose or unset".into());
            None
        }
    };
    if !context.case.is_empty()
        && entities::Checker::default()
            .name("case", quis_policy_engine::model::EntityKind::Case, &context.case)
            .is_none()
    {
        bad("context.case", "must be cases/{case} with an id of 1 to 64 characters of [a-z0-9-], or empty".into());
    }
    if context.justification.chars().count() > MAX_JUSTIFICATION_CHARS {
        bad("context.justification", format!("at most {MAX_JUSTIFICATION_CHARS} characters"));
    }
    let now = now_ms.div_euclid(1000);
    if let Some(t) = &context.time
        && ((t.seconds - now).abs() > MAX_CLOCK_SKEW_SECS || !(0..1_000_000_000).contains(&t.nanos))
    {
        bad("context.time", format!("must be unset or within {MAX_CLOCK_SKEW_SECS} s of the server's clock"));
    }
    if !context.source_address.is_empty() && context.source_address.parse::<std::net::IpAddr>().is_err() {
        bad("context.source_address", "must be an IP address or empty".into());
    }
    if context.device.chars().count() > MAX_DEVICE_CHARS || context.device.chars().any(char::is_control) {
        bad("context.device", format!("at most {MAX_DEVICE_CHARS} characters, no control characters"));
    }
    if !violations.is_empty() {
        return Err(PolicyError::Invalid(violations));
    }
    Ok(CheckRequest {
        principal,
        action: action.unwrap_or_default().to_string(),
        resource: req.resource.clone(),
        fields: req.fields.clone(),
        context: RequestContext {
            purpose,
            case: optional(&context.case),
            justification: optional(context.justification.trim()),
            // The server's clock decides, never the caller's.
            time: now,
            source_address: optional(&context.source_address),
            device: optional(&context.device),
        },
    })
}

impl Policy {
    /// Waits, when configured, for every change committed before this call.
    /// Timed as `quis_stage_seconds{service="policy", stage="fresh"}`.
    pub(crate) async fn prepare(&self) -> Result<(), PolicyError> {
        if self.read_your_writes { time_stage_async("policy", "fresh", self.live.fresh()).await } else { Ok(()) }
    }
    /// Decides one check for `caller`; `prefix` prefixes field paths (`checks[3].`).
    pub(crate) fn decide(
        &self,
        caller: &Principal,
        prefix: &str,
        req: &pb::CheckRequest,
    ) -> Result<pb::CheckResponse, PolicyError> {
        let own = own_name(caller);
        let principal = if req.principal.is_empty() { own.clone() } else { req.principal.clone() };
        if principal != own && !caller.is_service() {
            return Err(PolicyError::NotAService);
        }
        if principal.len() > 200 {
            return Err(invalid(format!("{prefix}principal"), "must be staff/{id}, subjects/{id} or services/{id}"));
        }
        let request = request(prefix, principal, req, self.clock.now_ms())?;
        let active = self.live.policy().ok_or(PolicyError::NoActivePolicy)?;
        let entity_version = self.live.entity_version().max(0) as u64;
        // A principal suspended in identity's revocation list is denied whatever the entities say.
        if let Some(sub) = request.principal.split_once('/').map(|(_, id)| id)
            && let Err(e) = self.verifier.revocations().check(&Principal {
                id: sub.to_string(),
                kind: PrincipalKind::Staff,
                roles: BTreeSet::new(),
                team: None,
                site: None,
                token_id: String::new(),
                expires_at: 0,
            })
        {
            return match e {
                AuthError::Suspended => Ok(pb::CheckResponse {
                    allowed: false,
                    public_reason: "your account is suspended".into(),
                    full_reason: if caller.is_service() {
                        format!("{} is suspended in the identity revocation list", request.principal)
                    } else {
                        String::new()
                    },
                    policy_version: active.set.version().to_string(),
                    entity_version,
                    ..Default::default()
                }),
                _ => Err(PolicyError::StoreUnavailable("the revocation list is stale".into())),
            };
        }
        let decision = Engine::check(&active.set, &self.live.index, &request)
            .map_err(|e| invalid(format!("{prefix}{}", e.field), e.description))?;
        let break_glass = decision.obligations.break_glass_expires_at.is_some();
        Ok(pb::CheckResponse {
            allowed: decision.allowed,
            determining_policies: decision.determining_policies,
            obligations: Some(pb::Obligations {
                fields: decision.obligations.fields.into_iter().collect(),
                alert: alert(decision.obligations.alert) as i32,
                break_glass_expire_time: decision
                    .obligations
                    .break_glass_expires_at
                    .map(|s| prost_types::Timestamp { seconds: s, nanos: 0 }),
                history_release_time: decision
                    .obligations
                    .history_release_at
                    .map(|s| prost_types::Timestamp { seconds: s, nanos: 0 }),
            }),
            public_reason: decision.public_reason,
            // The full reason may name a restricted compartment or a decoy: only for the enforcing service.
            full_reason: if caller.is_service() { decision.full_reason } else { String::new() },
            policy_version: decision.policy_version,
            entity_version,
            break_glass_grant: decision
                .grant
                .filter(|_| break_glass)
                .map(|g| format!("grants/{g}"))
                .unwrap_or_default(),
        })
    }
}
