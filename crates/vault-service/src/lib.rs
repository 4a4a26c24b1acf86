//! `quis.vault.v1.VaultService`: the enforcement point of Quis. Every read,
//! search and export is checked with policy and recorded in the ledger, and
//! only then decrypted and answered, minimized to the fields the decision
//! allows, with the ledger index as receipt. Policy or the ledger unreachable
//! means `UNAVAILABLE` and no data (fail closed). The records themselves, their
//! encryption and blind indexes are `quis-vault`'s.
#![forbid(unsafe_code)]

mod audit;
mod break_glass;
mod coalesce;
mod convert;
pub mod error;
mod guarded;
mod history;
mod index_writer;
mod ingest;
mod keys;
mod links;
mod reads;
mod service;

use std::sync::Arc;

use quis_auth::ServiceCredentials;
use quis_core::QuisConfig;
use quis_proto::vault::vault_service_server::VaultServiceServer;
use quis_runtime::{BuiltService, ServiceContext};
use quis_vault::{Vault, VaultConfig};

pub use audit::commit;
pub use error::ServiceError;
pub use guarded::field_tag;
use service::{Inner, VaultApi};

/// The library's settings from the `vault` section.
pub fn library_config(config: &QuisConfig) -> VaultConfig {
    let settings = &config.vault;
    VaultConfig {
        keys: settings.keys.clone(),
        max_search_results: settings.max_search_results,
        max_record_bytes: settings.max_record_bytes,
    }
}

/// The vault service for the runtime.
pub async fn build(ctx: &ServiceContext) -> Result<BuiltService, String> {
    let config = &ctx.config;
    let settings = &config.vault;
    let credentials =
        ServiceCredentials::configured(config, "vault", settings.token_file.as_deref(), &settings.service_principal)?;
    let tls = if config.tls.enabled {
        Some(quis_core::tls::TlsMaterial::load(config).map_err(|e| e.to_string())?.tonic_client())
    } else {
        None
    };
    let policy = links::PolicyLink::new(
        &config.service_url(settings.policy_url.as_deref(), "policy").map_err(|e| e.to_string())?,
        credentials.clone(),
        tls.clone(),
    )?;
    let ledger = links::LedgerLink::new(
        &config.service_url(settings.ledger_url.as_deref(), "ledger").map_err(|e| e.to_string())?,
        credentials,
        tls,
    )?;
    let db = quis_core::db::Db::connect(&config.store_url("vault")).await.map_err(|e| format!("vault store: {e}"))?;
    let vault = Vault::open(db, &config.data_dir, library_config(config)).await.map_err(|e| format!("vault: {e}"))?;
    let store = vault.store().clone();
    let inner = Arc::new(Inner {
        vault: guarded::GuardedVault::new(vault),
        policy,
        audit: audit::Audit { ledger, index: index_writer::IndexWriter::start(store.clone()) },
        data_dir: config.data_dir.clone(),
        keys: settings.keys.clone(),
        history_accessor: settings.history_accessor,
        service_principal: settings.service_principal.clone(),
        clock: config.clock.clone(),
    });
    let server = VaultServiceServer::new(VaultApi(inner))
        .max_decoding_message_size(settings.max_message_bytes)
        .max_encoding_message_size(settings.max_message_bytes);
    Ok(BuiltService {
        name: "vault",
        grpc_names: vec!["quis.vault.v1.VaultService"],
        readiness: vec![store.db().readiness("store")],
        routes: tonic::service::Routes::new(server),
    })
}
