//! `quis.sentinel.v1.SentinelService`: detection over the ledger.
//!
//! Sentinel tails the ledger from a persisted cursor ([`consumer`]), decodes
//! each entry from the bytes the ledger hashed, runs the detections that need
//! only the events ([`detect`]) and stores alerts, incidents and the
//! break-glass review queue ([`store`]) in the same transaction as the cursor.
//! The integrity monitor ([`integrity`]) verifies every new checkpoint (log
//! signature, witness quorum, consistency) and samples tailed entries against
//! inclusion proofs. The gRPC service ([`service`]) lets investigators and
//! auditors read and triage; triage is recorded in the ledger.
#![forbid(unsafe_code)]

pub mod access_index;
pub mod collection;
pub mod config;
pub mod consumer;
pub mod detect;
pub mod detect_entities;
pub mod enrich;
pub mod entities;
mod error;
pub mod event;
pub mod integrity;
pub mod link;
mod service;
pub mod store;

use std::sync::Arc;

use quis_proto::sentinel::sentinel_service_server::SentinelServiceServer;
use quis_runtime::{BuiltService, ServiceContext};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

pub use config::{SentinelConfig, SentinelConfigError, Severity};
pub use entities::PolicyLink;
pub use error::SentinelError;
pub use link::LedgerLink;
pub use store::SentinelStore;

/// Alerts buffered for slow watchers before they are told to resume.
const WATCH_BUFFER: usize = 1024;

/// The sentinel service of the suite's configuration: its store
/// (`store_url("sentinel")`), its link to the ledger (`sentinel.ledger_url`,
/// `sentinel.token_file`), and the `sentinel` section; runs until the context shuts down.
pub async fn build(ctx: &ServiceContext) -> Result<BuiltService, String> {
    let config = &ctx.config;
    let s = &config.sentinel;
    let credentials =
        quis_auth::ServiceCredentials::configured(config, "sentinel", s.token_file.as_deref(), &s.service_principal)?;
    let tls = if config.tls.enabled {
        Some(quis_core::tls::TlsMaterial::load(config).map_err(|e| e.to_string())?.tonic_client())
    } else {
        None
    };
    let ledger_url = config.service_url(s.ledger_url.as_deref(), "ledger").map_err(|e| e.to_string())?;
    let link = LedgerLink::connect(&ledger_url, credentials.clone(), tls.clone())?;
    let policy_url = config.service_url(s.policy_url.as_deref(), "policy").map_err(|e| e.to_string())?;
    let policy = PolicyLink::connect(&policy_url, credentials, tls)?;
    build_with(s.clone(), &config.store_url("sentinel"), link, Some(policy), ctx.shutdown.clone()).await
}

/// Validates the configuration, opens the store, starts the consumer and the
/// integrity monitor (until `stop`), and returns the gRPC service. Without
/// `policy`, only the detections on the events themselves run.
pub async fn build_with(
    config: SentinelConfig,
    store_url: &str,
    link: LedgerLink,
    policy: Option<PolicyLink>,
    stop: CancellationToken,
) -> Result<BuiltService, String> {
    config::validate(&config).map_err(|e| e.to_string())?;
    let store = SentinelStore::connect(store_url, config.incident_window_secs, config.alert_window_secs)
        .await
        .map_err(|e| format!("sentinel store: {e}"))?;
    let (alerts, _) = broadcast::channel(WATCH_BUFFER);
    let (samples_tx, samples_rx) = mpsc::channel(1024);
    let (access_index, accesses_tx) = match &config.vault_store_url {
        Some(url) => {
            let db = quis_core::db::Db::connect(url).await.map_err(|e| format!("sentinel.vault_store_url: {e}"))?;
            let vault = quis_vault::store::Store::open(db).await.map_err(|e| format!("the vault's store: {e}"))?;
            let (tx, rx) = mpsc::channel(1024);
            (Some((Arc::new(vault) as Arc<dyn access_index::AccessIndex>, rx)), Some(tx))
        }
        None => (None, None),
    };
    let monitor =
        integrity::Monitor::new(link.clone(), store.clone(), &config, samples_rx, alerts.clone(), access_index)?;
    let links = consumer::Links { ledger: link.clone(), policy, samples: samples_tx, accesses: accesses_tx };
    let consumer = consumer::Consumer::new(links, store.clone(), config.clone(), alerts.clone())
        .await
        .map_err(|e| format!("sentinel store: {e}"))?;
    tokio::spawn(monitor.run(stop.clone()));
    tokio::spawn(consumer.run(stop));
    let api = service::SentinelApi { store: store.clone(), alerts, link, config: Arc::new(config) };
    Ok(BuiltService {
        name: "sentinel",
        grpc_names: vec!["quis.sentinel.v1.SentinelService"],
        readiness: vec![store.db().readiness("store")],
        routes: tonic::service::Routes::new(SentinelServiceServer::new(api)),
    })
}
