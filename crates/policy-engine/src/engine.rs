//! Deciding a [`CheckRequest`]: check the request, cut the entity slice it needs out of the
//! index, let Cedar decide, then read obligations and reasons from the deciding policies.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock};

use cedar_policy::{Authorizer, Context, Effect, Entities, EntityUid, PolicyId, Request, RestrictedExpression};
use dashmap::DashMap;

use crate::index::{EntityIndex, Node, StaffPrincipal, TYPES, uid};
use crate::model::{
    Action, Case, CaseStatus, Conflict, EntityKind, Grant, GrantKind, Id, Purpose, Staff, Subject, Team,
};
use crate::partition::ContextKeys;
use crate::policy::{AlertLevel, BreakGlassRule, PolicySet, action_uid, is_field_tag};
use crate::request::{
    CheckRequest, Decision, MAX_DEVICE_CHARS, MAX_FIELDS, MAX_JUSTIFICATION_CHARS, Obligations, RequestError,
};

/// What a caller reads when the reason must stay vague.
pub const NOT_AUTHORIZED: &str = "you are not authorized to access this subject for this purpose";
/// What a caller reads when no open case explains the access (and for unknown subjects,
/// so the answer does not tell which subjects exist).
pub const NO_CASE: &str = "no open case assigned to you for this subject";

static AUTHORIZER: LazyLock<Authorizer> = LazyLock::new(Authorizer::new);

/// Who asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrincipalRef {
    Staff(Id),
    Subject(Id),
    Service(Id),
}

/// What is asked about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResourceRef {
    Subject {
        subject: Id,
        record: Option<Id>,
    },
    /// `search` within a case.
    Case(Id),
    /// `search` across the whole register.
    Register,
    /// `admin_entities` on one entity.
    Entity(EntityKind, Id),
    /// `admin_policy`.
    PolicyStore,
}

/// A [`CheckRequest`] whose every part has been checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedRequest {
    pub principal: PrincipalRef,
    pub action: Action,
    pub resource: ResourceRef,
    pub fields: BTreeSet<String>,
    pub purpose: Option<Purpose>,
    pub case: Option<Id>,
    pub justification: Option<String>,
    pub time: i64,
    pub source_address: Option<IpAddr>,
    pub device: Option<String>,
}

/// The policy decision point.
#[derive(Clone, Copy, Debug, Default)]
pub struct Engine;

/// The entities one request needs, cut from the index.
#[derive(Default)]
struct Slice {
    /// A staff principal with their teams, and their Cedar entities built beforehand.
    principal: Option<Arc<StaffPrincipal>>,
    subject: Option<Arc<Node<Subject>>>,
    /// The case named by the caller, found for them, or searched in.
    case: Option<Arc<Node<Case>>>,
    named_case_missing: bool,
    grant: Option<Arc<Node<Grant>>>,
    conflict: Option<Arc<Node<Conflict>>>,
}

impl Engine {
    /// Decides `request` with `policies` over the entities of `index`. A malformed request
    /// is refused with the field at fault; everything else gets a decision (unknown
    /// principals and subjects are denied, evaluation errors deny: fail closed).
    pub fn check(policies: &PolicySet, index: &EntityIndex, request: &CheckRequest) -> Result<Decision, RequestError> {
        let parsed = parse(request)?;
        Ok(Self::decide(policies, index, &parsed))
    }

    /// The Cedar request and entity slice the engine evaluates for `request`; `None` when
    /// its principal or subject is unknown (denied without asking Cedar). For tests and
    /// benchmarks that compare with bare Cedar.
    pub fn cedar_inputs(
        index: &EntityIndex,
        request: &CheckRequest,
    ) -> Result<Option<(Request, Entities)>, RequestError> {
        let parsed = parse(request)?;
        let Ok(slice) = build_slice(index, &parsed) else { return Ok(None) };
        Ok(cedar_parts(&parsed, &slice).ok().map(|(request, entities, _)| (request, entities)))
    }

    /// Decides an already checked request.
    pub fn decide(policies: &PolicySet, index: &EntityIndex, req: &ParsedRequest) -> Decision {
        let entity_version = index.version();
        let deny = |public: &str, full: String| Decision {
            allowed: false,
            determining_policies: Vec::new(),
            obligations: Obligations::default(),
            public_reason: public.to_string(),
            full_reason: full,
            case: None,
            grant: None,
            policy_version: policies.version().to_string(),
            entity_version,
        };

        let slice = match build_slice(index, req) {
            Ok(slice) => slice,
            Err(Unknown::Principal) => {
                return deny(
                    "you are not known to the policy service",
                    format!("denied: unknown principal {}", principal_name(&req.principal)),
                );
            }
            Err(Unknown::Subject) => {
                return deny(NO_CASE, "denied: unknown subject".into());
            }
            Err(Unknown::Entities(e)) => {
                return deny(NOT_AUTHORIZED, format!("denied: the entity slice could not be built: {e}"));
            }
        };

        let (cedar_request, entities, keys) = match cedar_parts(req, &slice) {
            Ok(parts) => parts,
            Err(e) => return deny(NOT_AUTHORIZED, format!("denied: the entity slice could not be built: {e}")),
        };
        let response =
            AUTHORIZER.is_authorized(&cedar_request, policies.for_request(req.action, req.purpose, keys), &entities);

        let mut decided: Vec<(&PolicyId, usize)> =
            response.diagnostics().reason().map(|id| (id, policies.meta(id).map_or(usize::MAX, |m| m.order))).collect();
        decided.sort_by_key(|(_, order)| *order);
        let decided: Vec<&PolicyId> = decided.into_iter().map(|(id, _)| id).collect();

        // Cedar skips a policy whose evaluation errors; a skipped forbid must not let an
        // access through.
        let failed_forbids: Vec<String> = response
            .diagnostics()
            .errors()
            .map(|e| match e {
                cedar_policy::AuthorizationError::PolicyEvaluationError(e) => e.policy_id(),
            })
            .filter(|id| policies.meta(id).is_none_or(|m| m.effect == Effect::Forbid))
            .map(ToString::to_string)
            .collect();

        let case = slice.case.as_ref().map(|c| c.model.id.clone());
        let grant = slice.grant.as_ref().map(|g| g.model.id.clone());
        let context_note = context_note(req, &slice);
        let mut obligations = Obligations::default();
        for id in &decided {
            if let Some(m) = policies.meta(id) {
                obligations.alert = obligations.alert.max(m.alert);
            }
        }
        let ids: Vec<String> = decided.iter().map(ToString::to_string).collect();

        let allowed = response.decision() == cedar_policy::Decision::Allow && failed_forbids.is_empty();
        if !failed_forbids.is_empty() {
            return Decision {
                obligations: Obligations { alert: obligations.alert.max(AlertLevel::Low), ..Obligations::default() },
                case,
                grant,
                ..deny(
                    NOT_AUTHORIZED,
                    format!(
                        "denied: forbid policies failed to evaluate ({}); {context_note}",
                        failed_forbids.join(", ")
                    ),
                )
            };
        }

        if allowed {
            let mut fields = BTreeSet::new();
            for id in &decided {
                if let Some(m) = policies.meta(id) {
                    fields.extend(m.fields.iter().cloned());
                    match m.break_glass {
                        Some(BreakGlassRule::Grant) => {
                            obligations.break_glass_expires_at = slice
                                .grant
                                .as_ref()
                                .filter(|g| g.model.kind == GrantKind::BreakGlass)
                                .map(|g| g.model.expires_at);
                        }
                        Some(BreakGlassRule::StartFor(seconds)) => {
                            obligations.break_glass_expires_at = Some(req.time.saturating_add(seconds));
                        }
                        None => {}
                    }
                    if let Some(delay) = m.history_release {
                        let release = req.time.saturating_add(delay);
                        obligations.history_release_at = obligations.history_release_at.max(Some(release));
                    }
                }
            }
            if !req.fields.is_empty() {
                fields.retain(|f| req.fields.contains(f));
            }
            let uses_grant = decided.iter().any(|id| policies.meta(id).is_some_and(|m| m.uses_grant));
            obligations.fields = fields;
            let reasons: Vec<&str> = decided.iter().filter_map(|id| policies.meta(id)?.reason.as_deref()).collect();
            let public = reasons.first().copied().unwrap_or("allowed").to_string();
            return Decision {
                allowed: true,
                determining_policies: ids.clone(),
                obligations,
                public_reason: public,
                full_reason: format!("allowed by {}: {}; {context_note}", ids.join(", "), reasons.join("; ")),
                case,
                grant: grant.filter(|_| uses_grant),
                policy_version: policies.version().to_string(),
                entity_version,
            };
        }

        let full;
        let public;
        if decided.is_empty() {
            let why = diagnose(req, &slice);
            public = why.public;
            full = format!("denied (no policy permits): {}; {context_note}", why.full);
        } else {
            let reasons: Vec<&str> = decided.iter().filter_map(|id| policies.meta(id)?.reason.as_deref()).collect();
            full = format!("denied by {}: {}; {context_note}", ids.join(", "), reasons.join("; "));
            // The first visible reason; hidden forbids (restricted compartment, decoy) leave
            // the caller the reason they would have had without them.
            public = decided
                .iter()
                .find_map(|id| policies.meta(id)?.public_reason.clone())
                .unwrap_or_else(|| diagnose(req, &slice).public);
        }
        Decision {
            allowed: false,
            determining_policies: ids,
            obligations: Obligations { alert: obligations.alert, ..Obligations::default() },
            public_reason: public,
            full_reason: full,
            case,
            grant,
            policy_version: policies.version().to_string(),
            entity_version,
        }
    }
}

impl Slice {
    fn staff(&self) -> Option<&Arc<Node<Staff>>> {
        self.principal.as_ref().map(|p| &p.staff)
    }

    fn teams(&self) -> &[Arc<Node<Team>>] {
        self.principal.as_ref().map_or(&[], |p| &p.teams)
    }
}

enum Unknown {
    Principal,
    Subject,
    /// The principal's entities could not be built (Cedar refused them).
    Entities(String),
}

fn principal_name(p: &PrincipalRef) -> String {
    match p {
        PrincipalRef::Staff(id) => format!("staff/{id}"),
        PrincipalRef::Subject(id) => format!("subjects/{id}"),
        PrincipalRef::Service(id) => format!("services/{id}"),
    }
}

fn context_note(req: &ParsedRequest, slice: &Slice) -> String {
    let mut note = format!("{} {}", principal_name(&req.principal), req.action);
    match &req.resource {
        ResourceRef::Subject { subject, record: Some(r) } => note.push_str(&format!(" subjects/{subject}/records/{r}")),
        ResourceRef::Subject { subject, record: None } => note.push_str(&format!(" subjects/{subject}")),
        ResourceRef::Case(id) => note.push_str(&format!(" cases/{id}")),
        ResourceRef::Register => note.push_str(" subjects"),
        ResourceRef::Entity(kind, id) => note.push_str(&format!(" {kind} {id}")),
        ResourceRef::PolicyStore => note.push_str(" policy"),
    }
    match req.purpose {
        Some(p) => note.push_str(&format!(", purpose {p}")),
        None => note.push_str(", no purpose"),
    }
    if let Some(c) = &slice.case {
        let how = if req.case.is_some() { "named" } else { "found" };
        note.push_str(&format!(", case {} ({how})", c.model.id));
    } else if let Some(c) = &req.case {
        note.push_str(&format!(", case {c} (named, not found)"));
    }
    if let Some(g) = &slice.grant {
        note.push_str(&format!(", grant {} ({})", g.model.id, g.model.kind));
    }
    if let Some(c) = &slice.conflict {
        note.push_str(&format!(", conflict {}", c.model.id));
    }
    if let Some(s) = &slice.subject {
        if !s.model.compartments.is_empty() {
            let names: Vec<&str> = s.model.compartments.iter().map(|c| c.as_str()).collect();
            note.push_str(&format!(", subject compartments {}", names.join("+")));
        }
        if s.model.decoy {
            note.push_str(", subject is a decoy");
        }
    }
    note
}

// ------------------------------------------------------------------- parsing

fn parse(r: &CheckRequest) -> Result<ParsedRequest, RequestError> {
    let principal = parse_principal(&r.principal)?;
    let action: Action = r.action.parse().map_err(|_| {
        let names: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
        RequestError::new("action", format!("must be one of {}", names.join(", ")))
    })?;
    let resource = parse_resource(action, &r.resource)?;
    if let (PrincipalRef::Subject(_), false) = (&principal, action == Action::ReadHistory) {
        return Err(RequestError::new("principal", format!("a data subject may not ask for {action}")));
    }
    if r.fields.len() > MAX_FIELDS {
        return Err(RequestError::new("fields", format!("at most {MAX_FIELDS} fields")));
    }
    let mut fields = BTreeSet::new();
    for (i, f) in r.fields.iter().enumerate() {
        if !is_field_tag(f) {
            return Err(RequestError::new(format!("fields[{i}]"), "must be 1-32 characters of a-z, 0-9 and '_'"));
        }
        fields.insert(f.clone());
    }
    let c = &r.context;
    let purpose = match &c.purpose {
        None => None,
        Some(p) => Some(p.parse::<Purpose>().map_err(|_| {
            let names: Vec<&str> = Purpose::ALL.iter().map(|p| p.as_str()).collect();
            RequestError::new("context.purpose", format!("must be one of {}", names.join(", ")))
        })?),
    };
    let case = match &c.case {
        None => None,
        Some(name) => Some(parse_name(name, "cases/", "context.case")?),
    };
    let justification = match &c.justification {
        Some(j) if j.chars().count() > MAX_JUSTIFICATION_CHARS => {
            return Err(RequestError::new(
                "context.justification",
                format!("at most {MAX_JUSTIFICATION_CHARS} characters"),
            ));
        }
        Some(j) if j.chars().any(|ch| ch.is_control() && ch != '\n') => {
            return Err(RequestError::new("context.justification", "must not contain control characters"));
        }
        Some(j) if !j.trim().is_empty() => Some(j.trim().to_string()),
        _ => None,
    };
    if c.time < 0 {
        return Err(RequestError::new("context.time", "must not be before 1970"));
    }
    let source_address = match &c.source_address {
        None => None,
        Some(a) => Some(
            a.parse::<IpAddr>()
                .or_else(|_| a.parse::<SocketAddr>().map(|s| s.ip()))
                .map_err(|_| RequestError::new("context.source_address", "must be an IP address"))?,
        ),
    };
    let device = match &c.device {
        None => None,
        Some(d) if d.chars().count() > MAX_DEVICE_CHARS || d.chars().any(char::is_control) => {
            return Err(RequestError::new(
                "context.device",
                format!("at most {MAX_DEVICE_CHARS} printable characters"),
            ));
        }
        Some(d) => Some(d.clone()),
    };
    Ok(ParsedRequest {
        principal,
        action,
        resource,
        fields,
        purpose,
        case,
        justification,
        time: c.time,
        source_address,
        device,
    })
}

fn parse_id(text: &str, field: &str) -> Result<Id, RequestError> {
    Id::new(text).map_err(|e| RequestError::new(field, format!("id {e}")))
}

/// `prefix{id}` (prefix includes the slash).
fn parse_name(name: &str, prefix: &str, field: &str) -> Result<Id, RequestError> {
    let Some(id) = name.strip_prefix(prefix) else {
        return Err(RequestError::new(field, format!("must be {prefix}{{id}}")));
    };
    parse_id(id, field)
}

fn parse_principal(name: &str) -> Result<PrincipalRef, RequestError> {
    let (kind, id) = name
        .split_once('/')
        .ok_or_else(|| RequestError::new("principal", "must be staff/{id}, subjects/{id} or services/{name}"))?;
    match kind {
        "staff" => Ok(PrincipalRef::Staff(parse_id(id, "principal")?)),
        "subjects" => Ok(PrincipalRef::Subject(parse_id(id, "principal")?)),
        "services" => Ok(PrincipalRef::Service(parse_id(id, "principal")?)),
        _ => Err(RequestError::new(
            "principal",
            format!("unknown principal type {kind:?}: must be staff, subjects or services"),
        )),
    }
}

fn parse_resource(action: Action, name: &str) -> Result<ResourceRef, RequestError> {
    let parts: Vec<&str> = name.split('/').collect();
    let field = "resource";
    let subject_resource = || match parts.as_slice() {
        ["subjects", s] => Ok(ResourceRef::Subject { subject: parse_id(s, field)?, record: None }),
        ["subjects", s, "records", r] => {
            Ok(ResourceRef::Subject { subject: parse_id(s, field)?, record: Some(parse_id(r, field)?) })
        }
        _ => Err(RequestError::new(
            field,
            format!("{action} applies to subjects/{{subject}} or subjects/{{subject}}/records/{{record}}"),
        )),
    };
    match action {
        Action::Read
        | Action::Export
        | Action::Update
        | Action::BreakGlass
        | Action::RecordAccess
        | Action::ReadHistory => subject_resource(),
        Action::Search => match parts.as_slice() {
            ["subjects"] => Ok(ResourceRef::Register),
            ["cases", c] => Ok(ResourceRef::Case(parse_id(c, field)?)),
            _ => Err(RequestError::new(field, "search applies to subjects (the register) or cases/{case}")),
        },
        Action::AdminEntities => {
            let [kind, id] = parts.as_slice() else {
                return Err(RequestError::new(field, "admin_entities applies to {kind}/{id}"));
            };
            let kind = match *kind {
                "staff" => EntityKind::Staff,
                "teams" => EntityKind::Team,
                "subjects" => EntityKind::Subject,
                "cases" => EntityKind::Case,
                "conflicts" => EntityKind::Conflict,
                "grants" => EntityKind::Grant,
                other => {
                    return Err(RequestError::new(
                        field,
                        format!(
                            "unknown entity type {other:?}: must be staff, teams, subjects, cases, conflicts or grants"
                        ),
                    ));
                }
            };
            Ok(ResourceRef::Entity(kind, parse_id(id, field)?))
        }
        Action::AdminPolicy => match parts.as_slice() {
            ["policy"] => Ok(ResourceRef::PolicyStore),
            _ => Err(RequestError::new(field, "admin_policy applies to policy")),
        },
    }
}

// ------------------------------------------------------------------- slices

fn build_slice(index: &EntityIndex, req: &ParsedRequest) -> Result<Slice, Unknown> {
    let mut slice = Slice::default();
    let staff_id = match &req.principal {
        PrincipalRef::Staff(id) => {
            let principal = index.staff_principal(id.as_str()).ok_or(Unknown::Principal)?;
            slice.principal = Some(principal.map_err(Unknown::Entities)?);
            Some(id)
        }
        PrincipalRef::Subject(id) => {
            slice.subject = Some(index.subject(id.as_str()).ok_or(Unknown::Principal)?);
            None
        }
        PrincipalRef::Service(_) => None,
    };

    match &req.resource {
        ResourceRef::Subject { subject, .. } => {
            let node = index.subject(subject.as_str()).ok_or(Unknown::Subject)?;
            if slice.subject.as_ref().is_some_and(|s| s.model.id != node.model.id) {
                // A data subject asking about someone else: no slice beyond the two of them
                // is needed, and the principal's entity stays out of it.
                slice.subject = Some(node);
                return Ok(slice);
            }
            slice.subject = Some(node);
            let Some(staff_id) = staff_id else { return Ok(slice) };
            let team_ids: Vec<&Id> = slice.teams().iter().map(|t| &t.model.id).collect();
            slice.case = match &req.case {
                Some(named) => {
                    let case = index.case(named.as_str());
                    slice.named_case_missing = case.is_none();
                    case
                }
                None => find_case(index, staff_id, &team_ids, subject, req.purpose),
            };
            slice.grant = pick_grant(index.grants_between(staff_id.as_str(), subject.as_str()), req);
            slice.conflict = index.conflicts_between(staff_id.as_str(), subject.as_str()).into_iter().next();
        }
        ResourceRef::Case(id) => {
            slice.case = index.case(id.as_str());
            slice.named_case_missing = slice.case.is_none();
        }
        ResourceRef::Register | ResourceRef::Entity(..) | ResourceRef::PolicyStore => {}
    }
    Ok(slice)
}

fn is_assigned(case: &Case, staff: &Id, teams: &[&Id]) -> bool {
    case.assigned_staff.contains(staff) || case.assigned_teams.iter().any(|t| teams.contains(&t))
}

/// The case that best explains the access when the caller named none: an open case about
/// the subject assigned to the principal or one of their teams, for the purpose declared;
/// failing that, any such open case (so the reason can say the purpose differs).
fn find_case(
    index: &EntityIndex,
    staff: &Id,
    teams: &[&Id],
    subject: &Id,
    purpose: Option<Purpose>,
) -> Option<Arc<Node<Case>>> {
    let mut best: Option<(u8, Arc<Node<Case>>)> = None;
    for case in index.cases_of_subject(subject.as_str()) {
        if !is_assigned(&case.model, staff, teams) {
            continue;
        }
        let open = case.model.status == CaseStatus::Open;
        let rank = match (open, Some(case.model.purpose) == purpose) {
            (true, true) => 3,
            (true, false) => 2,
            (false, true) => 1,
            (false, false) => 0,
        };
        // Ties go to the smallest id, so the choice does not depend on map order.
        let better = match &best {
            None => true,
            Some((r, b)) => rank > *r || (rank == *r && case.model.id < b.model.id),
        };
        if better {
            best = Some((rank, case));
        }
    }
    best.map(|(_, c)| c)
}

/// The grant that matters for this request: an active one matching the purpose (a
/// break-glass for EMERGENCY), then any active one, then the one that ended last.
fn pick_grant(grants: Vec<Arc<Node<Grant>>>, req: &ParsedRequest) -> Option<Arc<Node<Grant>>> {
    let wanted_kind =
        if req.purpose == Some(Purpose::Emergency) { GrantKind::BreakGlass } else { GrantKind::Temporary };
    grants.into_iter().max_by_key(|g| {
        let m = &g.model;
        let active = m.is_active_at(req.time);
        let fits = active && m.kind == wanted_kind && req.purpose.is_some_and(|p| m.purposes.contains(&p));
        (fits, active, m.expires_at, std::cmp::Reverse(m.id.clone()))
    })
}

/// Most source addresses whose Cedar `ip(..)` expression is kept.
const IP_EXPRESSIONS_KEPT: usize = 4_096;

/// Cedar's `ip("<address>")` for `ip`. `RestrictedExpression::new_ip` parses the name `ip`
/// with Cedar's full parser on every call (about a sixth of a decision), so the
/// expressions of recently seen addresses are kept; each depends on its address alone.
fn ip_expression(ip: IpAddr) -> RestrictedExpression {
    static KEPT: LazyLock<DashMap<IpAddr, RestrictedExpression>> = LazyLock::new(DashMap::new);
    if let Some(expression) = KEPT.get(&ip) {
        return expression.clone();
    }
    let expression = RestrictedExpression::new_ip(ip.to_string());
    if KEPT.len() >= IP_EXPRESSIONS_KEPT {
        KEPT.clear();
    }
    KEPT.insert(ip, expression.clone());
    expression
}

/// The Cedar request and entities of `req` over `slice`, and the optional context
/// attributes the request carries (which select its split of the policy set).
fn cedar_parts(req: &ParsedRequest, slice: &Slice) -> Result<(Request, Entities, ContextKeys), String> {
    let t = &*TYPES;
    let principal = match &req.principal {
        PrincipalRef::Staff(id) => uid(&t.staff, id.as_str()),
        PrincipalRef::Subject(id) => uid(&t.subject, id.as_str()),
        PrincipalRef::Service(id) => uid(&t.service, id.as_str()),
    };
    let resource: EntityUid = match &req.resource {
        ResourceRef::Subject { subject, .. } => uid(&t.subject, subject.as_str()),
        ResourceRef::Case(id) => uid(&t.case, id.as_str()),
        ResourceRef::Register => uid(&t.register, "subjects"),
        ResourceRef::Entity(kind, id) => {
            let ty = match kind {
                EntityKind::Staff => &t.staff,
                EntityKind::Team => &t.team,
                EntityKind::Subject => &t.subject,
                EntityKind::Case => &t.case,
                EntityKind::Conflict => &t.conflict,
                EntityKind::Grant => &t.grant,
            };
            uid(ty, id.as_str())
        }
        ResourceRef::PolicyStore => uid(&t.policy_store, "policy"),
    };

    let mut context: Vec<(String, RestrictedExpression)> = Vec::with_capacity(8);
    context.push(("time".into(), RestrictedExpression::new_long(req.time)));
    if let Some(p) = req.purpose {
        context.push(("purpose".into(), RestrictedExpression::new_string(p.as_str().into())));
    }
    if let Some(j) = &req.justification {
        context.push(("justification".into(), RestrictedExpression::new_string(j.clone())));
    }
    // A search's case is its resource, not context.
    if let (false, Some(c)) = (matches!(req.resource, ResourceRef::Case(_)), &slice.case) {
        context.push(("case".into(), RestrictedExpression::new_entity_uid(c.cedar.uid())));
    }
    if let Some(g) = &slice.grant {
        context.push(("grant".into(), RestrictedExpression::new_entity_uid(g.cedar.uid())));
    }
    if let Some(c) = &slice.conflict {
        context.push(("conflict".into(), RestrictedExpression::new_entity_uid(c.cedar.uid())));
    }
    if let Some(ip) = req.source_address {
        context.push(("source_address".into(), ip_expression(ip)));
    }
    if let Some(d) = &req.device {
        context.push(("device".into(), RestrictedExpression::new_string(d.clone())));
    }
    let keys = context.iter().fold(ContextKeys::default(), |keys, (name, _)| keys.with(name));
    let context = Context::from_pairs(context).map_err(|e| e.to_string())?;
    let request =
        Request::new(principal, action_uid(req.action), resource, context, None).map_err(|e| e.to_string())?;

    // No entity appears twice: each part of a slice has its own type and the index refuses
    // team cycles. Were one repeated, Cedar would refuse the slice and the check deny.
    // The principal's part comes built with its team closure; the rest has no parents, so
    // adding it leaves that closure as it is.
    let rest = (slice.subject.iter().map(|s| &s.cedar))
        .chain(slice.case.iter().map(|c| &c.cedar))
        .chain(slice.grant.iter().map(|g| &g.cedar))
        .chain(slice.conflict.iter().map(|c| &c.cedar))
        .cloned();
    let entities = match &slice.principal {
        Some(principal) => principal.entities.clone().add_entities(rest, None),
        None => Entities::from_entities(rest, None),
    }
    .map_err(|e| e.to_string())?;
    Ok((request, entities, keys))
}

// ------------------------------------------------------------------- reasons

struct Why {
    public: String,
    full: String,
}

fn why(public: &str, full: impl Into<String>) -> Why {
    Why { public: public.to_string(), full: full.into() }
}

fn same(text: impl Into<String>) -> Why {
    let text = text.into();
    Why { public: text.clone(), full: text }
}

/// Explains a denial that no forbid determined, from the slice, in the terms of the
/// default pack. It never mentions compartments or decoys.
fn diagnose(req: &ParsedRequest, slice: &Slice) -> Why {
    let roles: &[String] = slice.staff().map_or(&[], |s| &s.model.roles);
    let has = |r: &str| roles.iter().any(|x| x == r);
    if matches!(req.action, Action::AdminEntities | Action::AdminPolicy) {
        return match req.principal {
            PrincipalRef::Staff(_) if has("admin") => why(NOT_AUTHORIZED, "no policy permits this administration"),
            _ => same("administration needs the admin role"),
        };
    }
    let Some(purpose) = req.purpose else { return same("a purpose is required") };
    match (&req.principal, req.action) {
        (PrincipalRef::Service(_), _) => same("services may not access records as principals"),
        (PrincipalRef::Subject(_), _) => same("you may read only your own access history"),
        (PrincipalRef::Staff(_), Action::ReadHistory) => {
            if has("privacy_officer") && matches!(purpose, Purpose::Audit | Purpose::Legal) {
                why(NOT_AUTHORIZED, "no policy permits this history read")
            } else {
                same("only privacy officers may read a subject's access history, for an AUDIT or LEGAL purpose")
            }
        }
        (PrincipalRef::Staff(_), Action::BreakGlass) => {
            if req.justification.is_none() {
                same("break-glass needs a justification")
            } else if purpose != Purpose::Emergency {
                same("break-glass needs the EMERGENCY purpose")
            } else if !(has("caseworker") || has("team_lead") || has("investigator")) {
                same("your role may not start a break-glass")
            } else {
                why(NOT_AUTHORIZED, "no policy permits this break-glass")
            }
        }
        (PrincipalRef::Staff(_), Action::Search) => match &req.resource {
            ResourceRef::Register if has("investigator") && purpose == Purpose::FraudInvestigation => {
                why(NOT_AUTHORIZED, "no policy permits this search")
            }
            ResourceRef::Register => {
                same("only investigators may search the whole register, for a FRAUD_INVESTIGATION purpose")
            }
            _ => case_problem(slice, purpose, true)
                .unwrap_or_else(|| why(NOT_AUTHORIZED, "no policy permits this search")),
        },
        (PrincipalRef::Staff(_), action) => {
            if purpose == Purpose::Emergency {
                return match &slice.grant {
                    Some(g) if g.model.kind == GrantKind::BreakGlass && g.model.expires_at <= req.time => {
                        same("your break-glass for this subject has expired")
                    }
                    Some(g) if g.model.kind == GrantKind::BreakGlass && g.model.is_active_at(req.time) => {
                        why(NOT_AUTHORIZED, "the break-glass grant does not cover this action or purpose")
                    }
                    _ => same("the EMERGENCY purpose needs an active break-glass for this subject"),
                };
            }
            if action == Action::Export && !matches!(purpose, Purpose::Legal | Purpose::FraudInvestigation) {
                return same("export needs a LEGAL or FRAUD_INVESTIGATION purpose");
            }
            if action == Action::Update && purpose != Purpose::Casework {
                return same("updates need the CASEWORK purpose");
            }
            // An active temporary grant for this purpose stands in for a case (the pack's
            // temporary-grant permit): without it the access was allowed, so the missing case
            // is not the reason, and saying so would reveal what else denied it.
            let granted = slice.grant.as_ref().is_some_and(|g| {
                g.model.kind == GrantKind::Temporary
                    && g.model.is_active_at(req.time)
                    && g.model.purposes.contains(&purpose)
            });
            if granted && matches!(action, Action::Read | Action::RecordAccess) {
                return why(NOT_AUTHORIZED, "no policy permits this access under the temporary grant");
            }
            if let Some(problem) = case_problem(slice, purpose, false) {
                return problem;
            }
            if action == Action::Export && !(has("team_lead") || has("investigator")) {
                return same("your role does not allow exports");
            }
            if action == Action::Update && !(has("caseworker") || has("team_lead")) {
                return same("your role does not allow updates");
            }
            why(NOT_AUTHORIZED, "no policy permits this access")
        }
    }
}

/// What is wrong with the slice's case for this request, if anything.
fn case_problem(slice: &Slice, purpose: Purpose, searching: bool) -> Option<Why> {
    let Some(case) = &slice.case else {
        return Some(if slice.named_case_missing { same("the case named does not exist") } else { same(NO_CASE) });
    };
    let c = &case.model;
    if c.status != CaseStatus::Open {
        return Some(same(format!("case {} is closed", c.id)));
    }
    let staff = slice.staff()?;
    let teams: Vec<&Id> = slice.teams().iter().map(|t| &t.model.id).collect();
    if !is_assigned(c, &staff.model.id, &teams) {
        return Some(same(format!("case {} is not assigned to you or your team", c.id)));
    }
    if !searching {
        let subject = slice.subject.as_ref()?;
        if !c.subjects.contains(&subject.model.id) {
            return Some(same(format!("this subject is not part of case {}", c.id)));
        }
    }
    if c.purpose != purpose {
        return Some(same(format!("case {} was opened for {}, not {purpose}", c.id, c.purpose)));
    }
    None
}
