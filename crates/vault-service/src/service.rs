//! `quis.vault.v1.VaultService`: the shared state and the gRPC trait, each
//! method handing over to its module (`ingest`, `reads`, `break_glass`,
//! `history`, `keys`).
use std::{future::Future, path::PathBuf, pin::Pin, sync::Arc};

use futures::Stream;
use quis_auth::{Principal, PrincipalKind, Role};
use quis_core::vault::{HistoryAccessor, VaultKeyConfig};
use quis_proto::{
    policy as pb,
    vault::{self as v, vault_service_server::VaultService},
};
use tonic::{Request, Response, Status};

use crate::{
    audit::{Audit, Caller},
    convert::Context,
    error::ServiceError,
    guarded::GuardedVault,
    links::{Decision, PolicyLink},
};

/// What the handlers share.
pub struct Inner {
    pub(crate) vault: GuardedVault,
    pub(crate) policy: PolicyLink,
    pub(crate) audit: Audit,
    pub(crate) data_dir: PathBuf,
    pub(crate) keys: VaultKeyConfig,
    pub(crate) history_accessor: HistoryAccessor,
    /// The vault's own principal id: entries it appended are its own.
    pub(crate) service_principal: String,
    /// "Now" for break-glass grants: the system clock, or the simulator's.
    pub(crate) clock: quis_core::Clock,
}

/// The verified caller of one request, with where it came from.
pub struct CallerInfo {
    pub principal: Arc<Principal>,
    pub source_address: String,
    pub request_id: String,
}

impl CallerInfo {
    pub fn of<T>(request: &Request<T>) -> Result<Self, Status> {
        let principal = quis_auth::principal(request)?;
        let header = |name: &str| {
            request
                .metadata()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .filter(|v| v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
                .map(str::to_string)
        };
        // The gateway's forwarded address only when its token vouches for it (quis_auth::layer).
        let source_address = quis_auth::source_address(request).map(|a| a.to_string()).unwrap_or_default();
        Ok(Self { principal, source_address, request_id: header("x-request-id").unwrap_or_default() })
    }

    pub fn audit(&self) -> Caller<'_> {
        Caller {
            principal: &self.principal,
            source_address: self.source_address.clone(),
            request_id: self.request_id.clone(),
        }
    }

    /// The caller as policy names principals.
    pub fn policy_name(&self) -> String {
        let p = &self.principal;
        match p.kind {
            PrincipalKind::Staff => format!("staff/{}", p.id),
            PrincipalKind::Subject => format!("subjects/{}", p.id),
            PrincipalKind::Service => format!("services/{}", p.id),
        }
    }

    pub fn require(&self, role: Role) -> Result<(), ServiceError> {
        if self.principal.has_role(role) { Ok(()) } else { Err(ServiceError::RoleRequired(role.as_str())) }
    }
}

impl Inner {
    /// The check policy decides for this caller.
    pub fn check_request(
        caller: &CallerInfo,
        action: pb::Action,
        resource: &str,
        fields: Vec<String>,
        ctx: &Context,
    ) -> pb::CheckRequest {
        pb::CheckRequest {
            principal: caller.policy_name(),
            action: action as i32,
            resource: resource.to_string(),
            fields,
            context: Some(ctx.check_context(&caller.source_address)),
        }
    }

    pub async fn check(&self, request: pb::CheckRequest) -> Result<Decision, ServiceError> {
        timed("policy_check", self.policy.check(request)).await
    }
}

/// Awaits `work` as a stage of a vault call (`quis_stage_seconds{service="vault", stage}`):
/// where a guarded read's time goes.
pub(crate) async fn timed<T>(stage: &'static str, work: impl Future<Output = T>) -> T {
    quis_core::metrics::time_stage_async("vault", stage, work).await
}

/// The service over the shared state.
#[derive(Clone)]
pub struct VaultApi(pub Arc<Inner>);

pub(crate) type ExportStream = Pin<Box<dyn Stream<Item = Result<v::ExportRecordsResponse, Status>> + Send>>;

fn answer<T>(result: Result<T, ServiceError>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl VaultService for VaultApi {
    async fn create_subject(
        &self,
        request: Request<v::CreateSubjectRequest>,
    ) -> Result<Response<v::CreateSubjectResponse>, Status> {
        let caller = CallerInfo::of(&request)?;
        answer(self.0.create_subject(&caller, request.into_inner()).await)
    }

    async fn update_subject(
        &self,
        request: Request<v::UpdateSubjectRequest>,
    ) -> Result<Response<v::UpdateSubjectResponse>, Status> {
        let caller = CallerInfo::of(&request)?;
        answer(self.0.update_subject(&caller, request.into_inner()).await)
    }

    async fn create_record(
        &self,
        request: Request<v::CreateRecordRequest>,
    ) -> Result<Response<v::CreateRecordResponse>, Status> {
        let caller = CallerInfo::of(&request)?;
        answer(self.0.create_record(&caller, request.into_inner()).await)
    }

    async fn update_record(
        &self,
        request: Request<v::UpdateRecordRequest>,
    ) -> Result<Response<v::UpdateRecordResponse>, Status> {
        let caller = CallerInfo::of(&request)?;
        answer(self.0.update_record(&caller, request.into_inner()).await)
    }

    async fn get_record(
        &self,
        request: Request<v::GetRecordRequest>,
    ) -> Result<Response<v::GetRecordResponse>, Status> {
        let caller = CallerInfo::of(&request)?;
        answer(self.0.get_record(&caller, request.into_inner()).await)
    }

    async fn search_subjects(
        &self,
        request: Request<v::SearchSubjectsRequest>,
    ) -> Result<Response<v::SearchSubjectsResponse>, Status> {
        let caller = CallerInfo::of(&request)?;
        answer(self.0.search_subjects(&caller, request.into_inner()).await)
    }

    type ExportRecordsStream = ExportStream;

    async fn export_records(
        &self,
        request: Request<v::ExportRecordsRequest>,
    ) -> Result<Response<Self::ExportRecordsStream>, Status> {
        let caller = CallerInfo::of(&request)?;
        let stream = Arc::clone(&self.0).export_records(&caller, request.into_inner()).await?;
        Ok(Response::new(stream))
    }

    async fn record_access(
        &self,
        request: Request<v::RecordAccessRequest>,
    ) -> Result<Response<v::RecordAccessResponse>, Status> {
        let caller = CallerInfo::of(&request)?;
        answer(self.0.record_access(&caller, request.into_inner()).await)
    }

    async fn start_break_glass(
        &self,
        request: Request<v::StartBreakGlassRequest>,
    ) -> Result<Response<v::StartBreakGlassResponse>, Status> {
        let caller = CallerInfo::of(&request)?;
        answer(self.0.start_break_glass(&caller, request.into_inner()).await)
    }

    async fn end_break_glass(
        &self,
        request: Request<v::EndBreakGlassRequest>,
    ) -> Result<Response<v::EndBreakGlassResponse>, Status> {
        let caller = CallerInfo::of(&request)?;
        answer(self.0.end_break_glass(&caller, request.into_inner()).await)
    }

    async fn get_access_history(
        &self,
        request: Request<v::GetAccessHistoryRequest>,
    ) -> Result<Response<v::GetAccessHistoryResponse>, Status> {
        let caller = CallerInfo::of(&request)?;
        answer(self.0.get_access_history(&caller, request.into_inner()).await)
    }

    async fn list_encryption_keys(
        &self,
        request: Request<v::ListEncryptionKeysRequest>,
    ) -> Result<Response<v::ListEncryptionKeysResponse>, Status> {
        let caller = CallerInfo::of(&request)?;
        answer(self.0.list_encryption_keys(&caller, request.into_inner()).await)
    }

    async fn rotate_keys(
        &self,
        request: Request<v::RotateKeysRequest>,
    ) -> Result<Response<v::RotateKeysResponse>, Status> {
        let caller = CallerInfo::of(&request)?;
        answer(self.0.rotate_keys(&caller, request.into_inner()).await)
    }

    async fn rebuild_access_index(
        &self,
        request: Request<v::RebuildAccessIndexRequest>,
    ) -> Result<Response<v::RebuildAccessIndexResponse>, Status> {
        let caller = CallerInfo::of(&request)?;
        answer(self.0.rebuild_access_index(&caller, request.into_inner()).await)
    }
}
