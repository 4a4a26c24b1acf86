//! `quis.policy.v1.PolicyService`: purpose-bound access decisions with the
//! Cedar engine of `quis-policy-engine`, over entities and two-administrator
//! policy-set versions held in SQLite or PostgreSQL. Every change is appended
//! to the ledger as an admin event before it takes effect, and takes effect on
//! the next check on every replica.
#![forbid(unsafe_code)]

pub mod check;
pub mod entities;
pub mod error;
pub mod ledger;
pub mod live;
pub mod service;
pub mod store;

use std::{sync::Arc, time::Duration};

use futures::future::BoxFuture;
use quis_auth::{Principal, PrincipalKind, Role, ServiceCredentials};
use quis_core::{QuisConfig, health::ReadinessCheck};
use quis_policy_engine::PolicySet;
use quis_proto::policy::policy_service_server::PolicyServiceServer;
use quis_runtime::{BuiltService, ServiceContext};

pub use error::PolicyError;
pub use live::Live;
pub use service::Policy;
pub use store::Store;

/// The service's credentials towards the ledger: a token file, or (the embedded
/// default) tokens minted with the development signing key.
pub fn credentials(config: &QuisConfig) -> Result<ServiceCredentials, String> {
    ServiceCredentials::configured(
        config,
        "policy",
        config.policy.token_file.as_deref(),
        &config.policy.service_principal,
    )
}

/// The ledger URL: `policy.ledger_url`, or the ledger's configured listener.
pub fn ledger_url(config: &QuisConfig) -> Result<String, String> {
    config.service_url(config.policy.ledger_url.as_deref(), "ledger").map_err(|e| e.to_string())
}

/// The service principal the policy service acts as when it installs the built-in pack.
fn itself(config: &QuisConfig) -> Principal {
    Principal {
        id: config.policy.service_principal.clone(),
        kind: PrincipalKind::Service,
        roles: [Role::Service].into_iter().collect(),
        team: None,
        site: None,
        token_id: String::new(),
        expires_at: 0,
    }
}

/// Installs the built-in default pack as the first approved version, once, recorded in
/// the ledger first; retried until it succeeds (checks fail closed until then).
async fn bootstrap(live: Arc<Live>, ledger: ledger::AdminLedger, actor: Principal) {
    let pack = PolicySet::default();
    let mut delay = Duration::from_millis(100);
    loop {
        let hash = pack.version().to_string();
        let result = live
            .store()
            .bootstrap(pack.text(), &hash, &actor.id, async |version| {
                ledger
                    .record(ledger::AdminChange {
                        actor: &actor,
                        operation: "ApprovePolicySetVersion",
                        resource: format!("policySets/{version}"),
                        new_version: hash.clone(),
                        reason: "built-in default policy pack",
                        request_id: "",
                    })
                    .await
                    .map(|_| ())
            })
            .await;
        match result {
            Ok(_) => match live.catch_up().await {
                Ok(()) => return,
                Err(e) => tracing::warn!(error = %e, "catching up after installing the default pack"),
            },
            Err(e) => tracing::warn!(error = %e, "cannot install the default policy pack yet; checks fail closed"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

struct PolicyInForce(Arc<Live>);

impl ReadinessCheck for PolicyInForce {
    fn name(&self) -> &str {
        "policy-set"
    }
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { if self.0.policy().is_some() { Ok(()) } else { Err("no policy set in force".into()) } })
    }
}

/// The policy service for the runtime, and its live view (for tests and benchmarks).
pub async fn build(ctx: &ServiceContext) -> Result<(BuiltService, Arc<Live>), String> {
    let config = &ctx.config;
    let credentials = credentials(config)?;
    let tls = if config.tls.enabled {
        Some(quis_core::tls::TlsMaterial::load(config).map_err(|e| e.to_string())?.tonic_client())
    } else {
        None
    };
    let ledger = ledger::AdminLedger::new(&ledger_url(config)?, credentials, tls)?;
    let store = Store::connect(&config.store_url("policy")).await.map_err(|e| format!("policy store: {e}"))?;
    let live = Live::load(store.clone()).await.map_err(|e| format!("policy store: {e}"))?;
    if live.policy().is_none() {
        tokio::spawn(bootstrap(Arc::clone(&live), ledger.clone(), itself(config)));
    }
    live.spawn_syncer(Duration::from_millis(config.policy.poll_interval_ms), ctx.shutdown.clone());
    let service = Policy {
        live: Arc::clone(&live),
        ledger,
        verifier: Arc::clone(&ctx.verifier),
        read_your_writes: config.policy.read_your_writes,
        max_policy_set_bytes: config.policy.max_policy_set_bytes,
        clock: config.clock.clone(),
        read_only_services: Arc::new(config.policy.read_only_services.clone()),
    };
    let server = PolicyServiceServer::new(service)
        .max_decoding_message_size(config.policy.max_message_bytes)
        .max_encoding_message_size(config.policy.max_message_bytes);
    Ok((
        BuiltService {
            name: "policy",
            grpc_names: vec!["quis.policy.v1.PolicyService"],
            readiness: vec![store.db().readiness("store"), Arc::new(PolicyInForce(Arc::clone(&live)))],
            routes: tonic::service::Routes::new(server),
        },
        live,
    ))
}
