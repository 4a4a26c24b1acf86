//! `quis.policy.v1.PolicyService`: authorization of each call, validation of
//! every field, and the administrative rules (no self-administration, two
//! administrators per policy-set version, the ledger before the store).
use std::{collections::HashSet, sync::Arc};

use prost::Message;
use quis_auth::{Principal, PrincipalKind, Role, TokenVerifier};
use quis_core::{FieldViolation, metrics::time_stage};
use quis_policy_engine::{PolicySet, model::EntityKind};
use quis_proto::policy::{self as pb, policy_service_server::PolicyService};
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};

use crate::{
    entities::{self, Checker},
    error::{PolicyError, invalid},
    ledger::{AdminChange, AdminLedger},
    live::Live,
    store::{EntityWrite, VersionRow, sha256_hex},
};

/// Most entities in one `BatchUpsertEntities`.
pub const MAX_BATCH: usize = 100_000;
/// Most checks in one `BatchCheck`.
pub const MAX_BATCH_CHECKS: usize = 100;

/// The service over one replica's live view.
#[derive(Clone)]
pub struct Policy {
    pub(crate) live: Arc<Live>,
    pub(crate) ledger: AdminLedger,
    pub(crate) verifier: Arc<TokenVerifier>,
    pub(crate) read_your_writes: bool,
    pub(crate) max_policy_set_bytes: usize,
    /// The check time: the system clock, or the simulator's.
    pub(crate) clock: quis_core::Clock,
    /// Service principals that read entities but never change them (`policy.read_only_services`).
    pub(crate) read_only_services: Arc<Vec<String>>,
}

fn request_id<T>(request: &Request<T>) -> String {
    request
        .metadata()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or_default()
        .to_string()
}

fn admin(principal: &Principal) -> Result<(), PolicyError> {
    if principal.has_role(Role::Admin) { Ok(()) } else { Err(PolicyError::NotAnAdmin) }
}

/// Entities are administered by administrators and by service principals (the
/// vault pushes subjects and break-glass grants, HR and case management feeds).
fn entity_reader(principal: &Principal) -> Result<(), PolicyError> {
    if principal.has_role(Role::Admin) || principal.is_service() { Ok(()) } else { Err(PolicyError::NotAnAdmin) }
}

/// Most feed positions one `ListEntityChanges` reads.
const MAX_CHANGES_PAGE: i64 = 10_000;

impl Policy {
    /// Who may change entities: every entity reader but the read-only services (sentinel).
    fn entity_admin(&self, principal: &Principal) -> Result<(), PolicyError> {
        entity_reader(principal)?;
        if principal.is_service() && self.read_only_services.contains(&principal.id) {
            return Err(PolicyError::NotAnAdmin);
        }
        Ok(())
    }
}

fn check_reason(field: &str, reason: &str, max: usize, required: bool) -> Result<(), PolicyError> {
    let n = reason.chars().count();
    if n > max || (required && reason.trim().is_empty()) {
        let rule =
            if required { format!("must be 1 to {max} characters") } else { format!("at most {max} characters") };
        return Err(invalid(field, rule));
    }
    Ok(())
}

fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: ms.div_euclid(1000), nanos: (ms.rem_euclid(1000) * 1_000_000) as i32 }
}

fn version_to_proto(row: &VersionRow, with_text: bool) -> pb::PolicySetVersion {
    let state = match row.state.as_str() {
        "proposed" => pb::PolicySetVersionState::Proposed,
        "active" => pb::PolicySetVersionState::Active,
        _ => pb::PolicySetVersionState::Superseded,
    };
    let policy_ids =
        if with_text { PolicySet::compile(&row.text).map(|s| policy_ids(&s)).unwrap_or_default() } else { Vec::new() };
    pb::PolicySetVersion {
        name: format!("policySets/{}", row.version),
        text: if with_text { row.text.clone() } else { String::new() },
        hash: row.hash.clone(),
        description: row.description.clone(),
        state: state as i32,
        proposed_by: row.proposed_by.clone(),
        create_time: Some(timestamp(row.created_at_ms)),
        approved_by: row.approved_by.clone().unwrap_or_default(),
        approve_time: row.approved_at_ms.map(timestamp),
        policy_ids,
    }
}

/// The `@id`s of a set's policies, as decisions report them.
pub fn policy_ids(set: &PolicySet) -> Vec<String> {
    set.cedar().policies().map(|p| p.annotation("id").map_or_else(|| p.id().to_string(), str::to_string)).collect()
}

fn parse_version(field: &str, name: &str) -> Result<i64, PolicyError> {
    name.strip_prefix("policySets/")
        .filter(|v| !v.is_empty() && v.len() <= 18 && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|v| *v > 0)
        .ok_or_else(|| invalid(field, "must be policySets/{version} with a positive decimal version"))
}

fn page_size(value: i32, default: i64, max: i64) -> Result<i64, PolicyError> {
    match value {
        0 => Ok(default),
        n if n > 0 && i64::from(n) <= max => Ok(i64::from(n)),
        _ => Err(invalid("page_size", format!("must be 0 to {max}"))),
    }
}

/// Compiles a policy set, reporting each problem as a violation naming the policy and position.
fn compile(text: &str, max_bytes: usize) -> Result<PolicySet, PolicyError> {
    if text.trim().is_empty() {
        return Err(invalid("text", "must hold at least one policy"));
    }
    if text.len() > max_bytes {
        return Err(invalid("text", format!("must be at most {max_bytes} bytes")));
    }
    PolicySet::compile(text).map_err(|errors| {
        PolicyError::Invalid(
            errors
                .iter()
                .map(|e| {
                    let at = match (&e.policy_id, e.line, e.column) {
                        (Some(id), Some(line), Some(col)) => format!("text[policy {id}, line {line}, column {col}]"),
                        (Some(id), _, _) => format!("text[policy {id}]"),
                        (None, Some(line), Some(col)) => format!("text[line {line}, column {col}]"),
                        _ => "text".to_string(),
                    };
                    FieldViolation::new(at, e.message.clone())
                })
                .collect(),
        )
    })
}

impl Policy {
    /// Checks and converts entities for writing: the rules of the caller and each entity.
    fn entity_writes(
        &self,
        actor: &Principal,
        field: &str,
        list: &[pb::Entity],
    ) -> Result<Vec<EntityWrite>, PolicyError> {
        let mut checker = Checker::default();
        let mut writes = Vec::with_capacity(list.len());
        let mut seen = HashSet::with_capacity(list.len());
        for (i, entity) in list.iter().enumerate() {
            let at = if list.len() == 1 && field == "entity" { field.to_string() } else { format!("{field}[{i}]") };
            let Some(model) = checker.entity(&at, entity) else { continue };
            if entities::names_staff(&model, &actor.id) && actor.kind == PrincipalKind::Staff {
                return Err(PolicyError::SelfAdministration(
                    "a change that names the caller (own staff record, case assignment, grant or conflict)",
                ));
            }
            // A parent chain that leads back to the team would make a cycle, which the index refuses.
            if let quis_policy_engine::model::Entity::Team(t) = &model
                && let Some(parent) = &t.parent
                && self.live.index.team_chain(parent).iter().any(|n| n.model.id == t.id)
            {
                checker
                    .violations
                    .push(FieldViolation::new(format!("{at}.team.parent"), "must not make a cycle of teams"));
                continue;
            }
            let kind = model.kind();
            if !seen.insert((kind, model.id().clone())) {
                checker.violations.push(FieldViolation::new(at, "names an entity already in this batch"));
                continue;
            }
            let mut stored = entity.clone();
            if let Some(pb::entity::Kind::Grant(g)) = &mut stored.kind {
                // Output only: who granted is the caller, never what the request says.
                g.granted_by = actor.id.clone();
            }
            writes.push(EntityWrite {
                kind: kind.as_str(),
                id: model.id().as_str().to_string(),
                body: stored.encode_to_vec(),
            });
        }
        if !checker.violations.is_empty() {
            return Err(PolicyError::Invalid(checker.violations));
        }
        Ok(writes)
    }

    /// Applies the feed up to the write this replica just made, so its own next
    /// check sees it even when checks do not wait for the feed.
    async fn settle(&self) {
        if let Err(e) = self.live.catch_up().await {
            tracing::warn!(error = %e, "catching up after a write failed; the syncer retries");
        }
    }
}

#[tonic::async_trait]
impl PolicyService for Policy {
    async fn check(&self, request: Request<pb::CheckRequest>) -> Result<Response<pb::CheckResponse>, Status> {
        let caller = quis_auth::principal(&request)?;
        let req = request.into_inner();
        self.prepare().await?;
        Ok(Response::new(time_stage("policy", "decide", || self.decide(&caller, "", &req))?))
    }

    async fn batch_check(
        &self,
        request: Request<pb::BatchCheckRequest>,
    ) -> Result<Response<pb::BatchCheckResponse>, Status> {
        let caller = quis_auth::principal(&request)?;
        let req = request.into_inner();
        if req.checks.is_empty() || req.checks.len() > MAX_BATCH_CHECKS {
            return Err(invalid("checks", format!("must hold 1 to {MAX_BATCH_CHECKS} checks")).into());
        }
        self.prepare().await?;
        let decisions = req
            .checks
            .iter()
            .enumerate()
            .map(|(i, check)| time_stage("policy", "decide", || self.decide(&caller, &format!("checks[{i}]."), check)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Response::new(pb::BatchCheckResponse { decisions }))
    }

    async fn validate_policy_set(
        &self,
        request: Request<pb::ValidatePolicySetRequest>,
    ) -> Result<Response<pb::ValidatePolicySetResponse>, Status> {
        let caller = quis_auth::principal(&request)?;
        admin(&caller)?;
        let req = request.into_inner();
        let set = compile(&req.text, self.max_policy_set_bytes)?;
        Ok(Response::new(pb::ValidatePolicySetResponse {
            hash: set.version().to_string(),
            policy_ids: policy_ids(&set),
        }))
    }

    async fn create_policy_set_version(
        &self,
        request: Request<pb::CreatePolicySetVersionRequest>,
    ) -> Result<Response<pb::CreatePolicySetVersionResponse>, Status> {
        let caller = quis_auth::principal(&request)?;
        admin(&caller)?;
        let request_id = request_id(&request);
        let req = request.into_inner();
        check_reason("description", &req.description, 1024, true)?;
        let set = compile(&req.text, self.max_policy_set_bytes)?;
        let hash = set.version().to_string();
        let row = self
            .live
            .store()
            .propose(&req.text, &hash, &req.description, &caller.id, async |version| {
                self.ledger
                    .record(AdminChange {
                        actor: &caller,
                        operation: "CreatePolicySetVersion",
                        resource: format!("policySets/{version}"),
                        new_version: hash.clone(),
                        reason: &req.description,
                        request_id: &request_id,
                    })
                    .await
                    .map(|_| ())
            })
            .await?;
        tracing::info!(actor = %caller.id, version = row.version, "policy set proposed");
        let mut version = version_to_proto(&row, true);
        version.policy_ids = policy_ids(&set);
        Ok(Response::new(pb::CreatePolicySetVersionResponse { version: Some(version) }))
    }

    async fn approve_policy_set_version(
        &self,
        request: Request<pb::ApprovePolicySetVersionRequest>,
    ) -> Result<Response<pb::ApprovePolicySetVersionResponse>, Status> {
        let caller = quis_auth::principal(&request)?;
        admin(&caller)?;
        let request_id = request_id(&request);
        let req = request.into_inner();
        let version = parse_version("name", &req.name)?;
        check_reason("reason", &req.reason, 512, false)?;
        let (row, _) = self
            .live
            .store()
            .approve(
                version,
                &caller.id,
                |row| {
                    if row.state != "proposed" {
                        return Err(PolicyError::NotProposed(format!("policySets/{}", row.version)));
                    }
                    if row.proposed_by == caller.id {
                        return Err(PolicyError::SelfApproval);
                    }
                    Ok(())
                },
                async |row, _| {
                    self.ledger
                        .record(AdminChange {
                            actor: &caller,
                            operation: "ApprovePolicySetVersion",
                            resource: format!("policySets/{}", row.version),
                            new_version: row.hash.clone(),
                            reason: &req.reason,
                            request_id: &request_id,
                        })
                        .await
                        .map(|_| ())
                },
            )
            .await?;
        self.settle().await;
        tracing::info!(actor = %caller.id, version, "policy set approved and in force");
        Ok(Response::new(pb::ApprovePolicySetVersionResponse { version: Some(version_to_proto(&row, true)) }))
    }

    async fn get_policy_set_version(
        &self,
        request: Request<pb::GetPolicySetVersionRequest>,
    ) -> Result<Response<pb::GetPolicySetVersionResponse>, Status> {
        let caller = quis_auth::principal(&request)?;
        admin(&caller)?;
        let req = request.into_inner();
        let store = self.live.store();
        let row = if req.name == "policySets/active" {
            store.active_version().await.map_err(PolicyError::from)?.ok_or(PolicyError::NoActivePolicy)?
        } else {
            let version = parse_version("name", &req.name)?;
            store
                .version(version)
                .await
                .map_err(PolicyError::from)?
                .ok_or_else(|| PolicyError::NotFound(req.name.clone()))?
        };
        Ok(Response::new(pb::GetPolicySetVersionResponse { version: Some(version_to_proto(&row, true)) }))
    }

    async fn list_policy_set_versions(
        &self,
        request: Request<pb::ListPolicySetVersionsRequest>,
    ) -> Result<Response<pb::ListPolicySetVersionsResponse>, Status> {
        let caller = quis_auth::principal(&request)?;
        admin(&caller)?;
        let req = request.into_inner();
        let size = page_size(req.page_size, 20, 100)?;
        let before = if req.page_token.is_empty() {
            0
        } else {
            req.page_token
                .parse::<i64>()
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| invalid("page_token", "must be a token from a previous response"))?
        };
        let rows = self.live.store().list_versions(before, size + 1).await.map_err(PolicyError::from)?;
        let more = rows.len() as i64 > size;
        let page: Vec<_> = rows.into_iter().take(size as usize).collect();
        let next_page_token = match (more, page.last()) {
            (true, Some(last)) => last.version.to_string(),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListPolicySetVersionsResponse {
            versions: page.iter().map(|r| version_to_proto(r, false)).collect(),
            next_page_token,
        }))
    }

    async fn upsert_entity(
        &self,
        request: Request<pb::UpsertEntityRequest>,
    ) -> Result<Response<pb::UpsertEntityResponse>, Status> {
        let caller = quis_auth::principal(&request)?;
        self.entity_admin(&caller)?;
        let request_id = request_id(&request);
        let req = request.into_inner();
        check_reason("reason", &req.reason, 512, false)?;
        let entity = req.entity.ok_or_else(|| invalid("entity", "is required"))?;
        let writes = self.entity_writes(&caller, "entity", std::slice::from_ref(&entity))?;
        let write = &writes[0];
        let resource = format!(
            "{}/{}",
            entities::collection(write.kind.parse().map_err(|_| PolicyError::Corrupt("kind".into()))?),
            write.id
        );
        let new_version = sha256_hex(&write.body);
        let outcome = self
            .live
            .store()
            .upsert(&writes, &caller.id, async |_| {
                self.ledger
                    .record(AdminChange {
                        actor: &caller,
                        operation: "UpsertEntity",
                        resource: resource.clone(),
                        new_version: new_version.clone(),
                        reason: &req.reason,
                        request_id: &request_id,
                    })
                    .await
                    .map(|_| ())
            })
            .await?;
        self.settle().await;
        let stored = pb::Entity::decode(write.body.as_slice()).unwrap_or(entity);
        Ok(Response::new(pb::UpsertEntityResponse {
            entity: Some(stored),
            entity_version: outcome.head.max(0) as u64,
            changed: outcome.changed > 0,
        }))
    }

    async fn batch_upsert_entities(
        &self,
        request: Request<pb::BatchUpsertEntitiesRequest>,
    ) -> Result<Response<pb::BatchUpsertEntitiesResponse>, Status> {
        let caller = quis_auth::principal(&request)?;
        self.entity_admin(&caller)?;
        let request_id = request_id(&request);
        let req = request.into_inner();
        check_reason("reason", &req.reason, 512, false)?;
        if req.entities.is_empty() || req.entities.len() > MAX_BATCH {
            return Err(invalid("entities", format!("must hold 1 to {MAX_BATCH} entities")).into());
        }
        let writes = self.entity_writes(&caller, "entities", &req.entities)?;
        // The batch's version: SHA-256 over each entity's name and content hash, in request order.
        let mut digest = Sha256::new();
        for w in &writes {
            digest.update(w.kind.as_bytes());
            digest.update(b"/");
            digest.update(w.id.as_bytes());
            digest.update(Sha256::digest(&w.body));
        }
        let new_version = hex::encode(digest.finalize());
        let outcome = self
            .live
            .store()
            .upsert(&writes, &caller.id, async |pending| {
                self.ledger
                    .record(AdminChange {
                        actor: &caller,
                        operation: "BatchUpsertEntities",
                        resource: format!("entities?changed={}", pending.changed),
                        new_version: new_version.clone(),
                        reason: &req.reason,
                        request_id: &request_id,
                    })
                    .await
                    .map(|_| ())
            })
            .await?;
        self.settle().await;
        tracing::info!(actor = %caller.id, changed = outcome.changed, unchanged = outcome.unchanged, "entities upserted");
        Ok(Response::new(pb::BatchUpsertEntitiesResponse {
            entity_version: outcome.head.max(0) as u64,
            changed: outcome.changed as u32,
            unchanged: outcome.unchanged as u32,
        }))
    }

    async fn delete_entity(
        &self,
        request: Request<pb::DeleteEntityRequest>,
    ) -> Result<Response<pb::DeleteEntityResponse>, Status> {
        let caller = quis_auth::principal(&request)?;
        self.entity_admin(&caller)?;
        let request_id = request_id(&request);
        let req = request.into_inner();
        check_reason("reason", &req.reason, 512, false)?;
        let (collection, _) = req.name.split_once('/').unwrap_or(("", ""));
        let kind: EntityKind = entities::kind_of_collection(collection).ok_or_else(|| {
            invalid("name", "must be staff/, teams/, subjects/, cases/, conflicts/ or grants/ followed by an id")
        })?;
        let mut checker = Checker::default();
        let id = checker.name("name", kind, &req.name).ok_or_else(|| PolicyError::Invalid(checker.violations))?;
        let store = self.live.store();
        // Deleting what names oneself (a conflict of interest, one's own record) would clear oneself.
        if let Some(body) = store.entity(kind.as_str(), id.as_str()).await.map_err(PolicyError::from)?
            && let Ok((_, model)) = entities::decode(&body)
            && caller.kind == PrincipalKind::Staff
            && entities::names_staff(&model, &caller.id)
        {
            return Err(PolicyError::SelfAdministration("a deletion that names the caller").into());
        }
        let head = store
            .delete(kind.as_str(), id.as_str(), &caller.id, async |_| {
                self.ledger
                    .record(AdminChange {
                        actor: &caller,
                        operation: "DeleteEntity",
                        resource: req.name.clone(),
                        new_version: String::new(),
                        reason: &req.reason,
                        request_id: &request_id,
                    })
                    .await
                    .map(|_| ())
            })
            .await?
            .ok_or_else(|| PolicyError::NotFound(req.name.clone()))?;
        self.settle().await;
        Ok(Response::new(pb::DeleteEntityResponse { entity_version: head.max(0) as u64 }))
    }

    async fn list_entities(
        &self,
        request: Request<pb::ListEntitiesRequest>,
    ) -> Result<Response<pb::ListEntitiesResponse>, Status> {
        let caller = quis_auth::principal(&request)?;
        entity_reader(&caller)?;
        let req = request.into_inner();
        let kind = entities::kind_of_type(req.r#type)
            .ok_or_else(|| invalid("type", "must be a known EntityType other than UNSPECIFIED"))?;
        let size = page_size(req.page_size, 100, 1000)?;
        if !req.page_token.is_empty() {
            Checker::default()
                .id("page_token", &req.page_token)
                .ok_or_else(|| invalid("page_token", "must be a token from a previous response"))?;
        }
        let rows = self
            .live
            .store()
            .list_entities(kind.as_str(), &req.page_token, size + 1)
            .await
            .map_err(PolicyError::from)?;
        let more = rows.len() as i64 > size;
        let mut entities = Vec::with_capacity(rows.len());
        let mut last = String::new();
        for (id, body) in rows.into_iter().take(size as usize) {
            entities.push(pb::Entity::decode(body.as_slice()).map_err(|e| PolicyError::Corrupt(e.to_string()))?);
            last = id;
        }
        Ok(Response::new(pb::ListEntitiesResponse {
            entities,
            next_page_token: if more { last } else { String::new() },
        }))
    }

    async fn list_entity_changes(
        &self,
        request: Request<pb::ListEntityChangesRequest>,
    ) -> Result<Response<pb::ListEntityChangesResponse>, Status> {
        let caller = quis_auth::principal(&request)?;
        if !caller.is_service() {
            return Err(PolicyError::NotAService.into());
        }
        let req = request.into_inner();
        let size = page_size(req.page_size, 1000, MAX_CHANGES_PAGE)?;
        let after = i64::try_from(req.after_version)
            .map_err(|_| invalid("after_version", "must be an entity version from this service"))?;
        let rows = self.live.store().changes_since(after, size + 1).await.map_err(PolicyError::from)?;
        let more = rows.len() as i64 > size;
        let mut next = after;
        let mut changes = Vec::new();
        for row in rows.into_iter().take(size as usize) {
            next = row.seq;
            let Some(kind) = row.kind.parse::<EntityKind>().ok() else { continue }; // a policy-set change
            let version = row.seq as u64;
            changes.push(match row.body {
                Some(body) => pb::EntityChange {
                    version,
                    entity: Some(pb::Entity::decode(body.as_slice()).map_err(|e| PolicyError::Corrupt(e.to_string()))?),
                    deleted: String::new(),
                },
                None => pb::EntityChange {
                    version,
                    entity: None,
                    deleted: format!("{}/{}", entities::collection(kind), row.id),
                },
            });
        }
        Ok(Response::new(pb::ListEntityChangesResponse { changes, next_after_version: next as u64, more }))
    }
}
