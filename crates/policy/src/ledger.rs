//! Recording administrative changes in the ledger, as the `policy` service
//! principal, before they take effect.
use std::time::Duration;

use quis_auth::{Principal, PrincipalKind, ServiceCredentials};
use quis_proto::ledger::{
    Actor, AdminEvent, AppendEventsRequest, Event, event::Kind, ledger_service_client::LedgerServiceClient,
};
use tonic::{service::interceptor::InterceptedService, transport::Channel};

use crate::error::PolicyError;

/// One administrative change, as the ledger records it.
#[derive(Clone, Debug)]
pub struct AdminChange<'a> {
    pub actor: &'a Principal,
    /// The RPC, e.g. `UpsertEntity`.
    pub operation: &'static str,
    /// The resource changed, e.g. `staff/alice` or `policySets/3`.
    pub resource: String,
    /// Hex SHA-256 of the new version of the resource (empty for a deletion).
    pub new_version: String,
    pub reason: &'a str,
    pub request_id: &'a str,
}

/// A ledger client that appends admin events.
#[derive(Clone, Debug)]
pub struct AdminLedger {
    client: LedgerServiceClient<InterceptedService<Channel, ServiceCredentials>>,
}

impl AdminLedger {
    /// A client for the ledger at `url`; connects on first use, so the ledger may start later.
    pub fn new(
        url: &str,
        credentials: ServiceCredentials,
        tls: Option<tonic::transport::ClientTlsConfig>,
    ) -> Result<Self, String> {
        let mut endpoint = Channel::from_shared(url.to_string())
            .map_err(|e| format!("policy.ledger_url {url:?}: {e}"))?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
            .tcp_nodelay(true);
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls).map_err(|e| format!("ledger TLS: {e}"))?;
        }
        Ok(Self { client: LedgerServiceClient::with_interceptor(endpoint.connect_lazy(), credentials) })
    }

    /// Appends the change and waits until the ledger holds it durably; returns its index.
    pub async fn record(&self, change: AdminChange<'_>) -> Result<u64, PolicyError> {
        let actor = change.actor;
        let event = AdminEvent {
            actor: Some(Actor {
                principal: actor.id.clone(),
                kind: match actor.kind {
                    PrincipalKind::Staff => "staff",
                    PrincipalKind::Service => "service",
                    PrincipalKind::Subject => "subject",
                }
                .into(),
                roles: actor.roles.iter().map(|r| r.as_str().to_string()).collect(),
                team: actor.team.clone().unwrap_or_default(),
                site: actor.site.clone().unwrap_or_default(),
                source_address: String::new(),
                device: String::new(),
                token_id: actor.token_id.clone(),
            }),
            operation: change.operation.into(),
            resource: change.resource,
            new_version: change.new_version,
            reason: change.reason.into(),
            request_id: change.request_id.into(),
        };
        let request = AppendEventsRequest { events: vec![Event { kind: Some(Kind::Admin(event)) }], details: vec![] };
        let response = self
            .client
            .clone()
            .append_events(request)
            .await
            .map_err(|s| PolicyError::LedgerUnavailable(format!("{:?}: {}", s.code(), s.message())))?;
        response
            .into_inner()
            .indices
            .first()
            .copied()
            .ok_or_else(|| PolicyError::LedgerUnavailable("the ledger returned no index".into()))
    }
}
