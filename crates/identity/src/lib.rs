//! `quis.identity.v1.IdentityService`: the administration side of the
//! revocation list that every service's token verifier reloads every second.
//! Only administrators call it, and none may suspend or reinstate themselves.
#![forbid(unsafe_code)]

use quis_auth::{
    Principal, Role,
    revocation::{RevocationEvent, RevocationStore, TargetKind, now_ms},
};
use quis_core::{
    ApiError, FieldViolation,
    db::is_transient,
    error::{STORE_BUSY_MESSAGE, STORE_RETRY_AFTER, to_status},
};
use quis_proto::identity::{
    ListRevocationsRequest, ListRevocationsResponse, ReinstatePrincipalRequest, ReinstatePrincipalResponse, Revocation,
    RevokeTokenRequest, RevokeTokenResponse, SuspendPrincipalRequest, SuspendPrincipalResponse,
    identity_service_server::{IdentityService, IdentityServiceServer},
    revocation::Target,
};
use quis_runtime::BuiltService;
use tonic::{Code, Request, Response, Status};

const DOMAIN: &str = "quis.identity";

/// Identity service errors.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("invalid request")]
    Invalid(Vec<FieldViolation>),
    #[error("administrators may not suspend or reinstate themselves")]
    SelfAction,
    #[error("principal {0} is not suspended")]
    NotSuspended(String),
    #[error("revocation store failed: {0}")]
    Store(#[from] sqlx::Error),
}

impl ApiError for IdentityError {
    fn code(&self) -> Code {
        match self {
            IdentityError::Invalid(_) => Code::InvalidArgument,
            IdentityError::SelfAction => Code::PermissionDenied,
            IdentityError::NotSuspended(_) => Code::NotFound,
            IdentityError::Store(e) if is_transient(e) => Code::Unavailable,
            IdentityError::Store(_) => Code::Internal,
        }
    }
    fn reason(&self) -> &'static str {
        match self {
            IdentityError::Invalid(_) => "INVALID_ARGUMENT",
            IdentityError::SelfAction => "SELF_ADMINISTRATION_FORBIDDEN",
            IdentityError::NotSuspended(_) => "NOT_SUSPENDED",
            IdentityError::Store(e) if is_transient(e) => "STORE_UNAVAILABLE",
            IdentityError::Store(_) => "STORE_FAILED",
        }
    }
    fn domain(&self) -> &'static str {
        DOMAIN
    }
    fn violations(&self) -> Vec<FieldViolation> {
        match self {
            IdentityError::Invalid(v) => v.clone(),
            _ => Vec::new(),
        }
    }
    fn retry_after(&self) -> Option<std::time::Duration> {
        (self.code() == Code::Unavailable).then_some(STORE_RETRY_AFTER)
    }
    fn public_message(&self) -> String {
        match self.code() {
            Code::Unavailable => STORE_BUSY_MESSAGE.to_string(),
            Code::Internal => "internal error".to_string(),
            _ => self.to_string(),
        }
    }
}

fn fail(e: IdentityError) -> Status {
    to_status(&e)
}

/// The service implementation over the shared revocation store.
#[derive(Debug, Clone)]
pub struct Identity {
    store: RevocationStore,
    /// The longest a token can live: a revocation without an expiry lasts this long.
    max_token_lifetime_ms: i64,
}

fn admin(principal: &Principal) -> Result<(), Status> {
    quis_auth::require_any_role(principal, &[Role::Admin])
}

fn check_reason(reason: &str, violations: &mut Vec<FieldViolation>) {
    if reason.trim().is_empty() || reason.chars().count() > 512 {
        violations.push(FieldViolation::new("reason", "must be 1 to 512 characters"));
    }
}

/// The rules of suspending and reinstating: an administrator, a valid principal
/// id and reason, and never oneself.
fn check_principal_action(actor: &Principal, principal: &str, reason: &str) -> Result<(), Status> {
    admin(actor)?;
    let mut violations = Vec::new();
    if let Err(v) = quis_core::error::check_id("principal", principal) {
        violations.push(v);
    }
    check_reason(reason, &mut violations);
    if !violations.is_empty() {
        return Err(fail(IdentityError::Invalid(violations)));
    }
    if principal == actor.id {
        return Err(fail(IdentityError::SelfAction));
    }
    Ok(())
}

fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: ms.div_euclid(1000), nanos: (ms.rem_euclid(1000) * 1_000_000) as i32 }
}

fn to_proto(e: &RevocationEvent) -> Revocation {
    Revocation {
        name: format!("revocations/{}", e.seq),
        target: Some(match e.kind {
            TargetKind::Token => Target::TokenId(e.target.clone()),
            TargetKind::Principal => Target::Principal(e.target.clone()),
        }),
        reason: e.reason.clone(),
        revoked_by: e.actor.clone(),
        create_time: Some(timestamp(e.created_at_ms)),
        expire_time: e.expires_at_ms.map(timestamp),
    }
}

#[tonic::async_trait]
impl IdentityService for Identity {
    async fn revoke_token(
        &self,
        request: Request<RevokeTokenRequest>,
    ) -> Result<Response<RevokeTokenResponse>, Status> {
        let actor = quis_auth::principal(&request)?;
        admin(&actor)?;
        let req = request.into_inner();
        let mut violations = Vec::new();
        if req.token_id.is_empty() || req.token_id.len() > 128 || !req.token_id.bytes().all(|b| b.is_ascii_graphic()) {
            violations.push(FieldViolation::new("token_id", "must be 1 to 128 printable ASCII characters"));
        }
        check_reason(&req.reason, &mut violations);
        let longest = now_ms() + self.max_token_lifetime_ms;
        let expires = match req.expire_time {
            // The token's own `exp`; keeping the entry longer is harmless, shorter would revive it.
            Some(t) if t.seconds * 1000 <= now_ms() || t.seconds > 4_102_444_800 => {
                violations.push(FieldViolation::new(
                    "expire_time",
                    "must be in the future (the token's exp) and before 2100",
                ));
                0
            }
            Some(t) => (t.seconds * 1000).max(now_ms()),
            None => longest,
        };
        if !violations.is_empty() {
            return Err(fail(IdentityError::Invalid(violations)));
        }
        let event = self
            .store
            .revoke_token(&req.token_id, &req.reason, &actor.id, expires)
            .await
            .map_err(|e| fail(e.into()))?;
        tracing::info!(actor = %actor.id, revocation = event.seq, "token revoked");
        Ok(Response::new(RevokeTokenResponse { revocation: Some(to_proto(&event)) }))
    }

    async fn suspend_principal(
        &self,
        request: Request<SuspendPrincipalRequest>,
    ) -> Result<Response<SuspendPrincipalResponse>, Status> {
        let actor = quis_auth::principal(&request)?;
        let req = request.into_inner();
        check_principal_action(&actor, &req.principal, &req.reason)?;
        let event = self.store.suspend(&req.principal, &req.reason, &actor.id).await.map_err(|e| fail(e.into()))?;
        tracing::info!(actor = %actor.id, principal = %req.principal, "principal suspended");
        Ok(Response::new(SuspendPrincipalResponse { revocation: Some(to_proto(&event)) }))
    }

    async fn reinstate_principal(
        &self,
        request: Request<ReinstatePrincipalRequest>,
    ) -> Result<Response<ReinstatePrincipalResponse>, Status> {
        let actor = quis_auth::principal(&request)?;
        let req = request.into_inner();
        check_principal_action(&actor, &req.principal, &req.reason)?;
        let ended = self
            .store
            .reinstate(&req.principal, &req.reason, &actor.id)
            .await
            .map_err(|e| fail(e.into()))?
            .ok_or_else(|| fail(IdentityError::NotSuspended(req.principal.clone())))?;
        tracing::info!(actor = %actor.id, principal = %req.principal, "principal reinstated");
        Ok(Response::new(ReinstatePrincipalResponse { revocation: Some(to_proto(&ended)) }))
    }

    async fn list_revocations(
        &self,
        request: Request<ListRevocationsRequest>,
    ) -> Result<Response<ListRevocationsResponse>, Status> {
        let actor = quis_auth::principal(&request)?;
        admin(&actor)?;
        let req = request.into_inner();
        let mut violations = Vec::new();
        let page_size = match req.page_size {
            0 => 100,
            n @ 1..=1000 => i64::from(n),
            _ => {
                violations.push(FieldViolation::new("page_size", "must be 0 to 1000"));
                0
            }
        };
        let after = if req.page_token.is_empty() {
            0
        } else {
            req.page_token.parse::<i64>().unwrap_or_else(|_| {
                violations.push(FieldViolation::new("page_token", "must be a token from a previous response"));
                0
            })
        };
        if !violations.is_empty() {
            return Err(fail(IdentityError::Invalid(violations)));
        }
        let events = self.store.list_active(after, page_size + 1).await.map_err(|e| fail(e.into()))?;
        let more = events.len() as i64 > page_size;
        let page: Vec<_> = events.into_iter().take(page_size as usize).collect();
        let next_page_token = match (more, page.last()) {
            (true, Some(last)) => last.seq.to_string(),
            _ => String::new(),
        };
        Ok(Response::new(ListRevocationsResponse { revocations: page.iter().map(to_proto).collect(), next_page_token }))
    }
}

/// The identity service on the revocation store at `url`, ready for the runtime.
pub async fn build(url: &str, max_token_lifetime_secs: u64) -> Result<BuiltService, sqlx::Error> {
    let store = RevocationStore::connect(url).await?;
    let max_token_lifetime_ms = i64::try_from(max_token_lifetime_secs.saturating_mul(1000)).unwrap_or(i64::MAX / 2);
    Ok(BuiltService {
        name: "identity",
        grpc_names: vec!["quis.identity.v1.IdentityService"],
        readiness: vec![store.db().readiness("store")],
        routes: tonic::service::Routes::new(IdentityServiceServer::new(Identity { store, max_token_lifetime_ms })),
    })
}
