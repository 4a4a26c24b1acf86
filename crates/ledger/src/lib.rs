//! `quis.ledger.v1.LedgerService`: the tamper-evident audit log of Quis.
//!
//! Services append typed events; the sequencer writes them in group-committed
//! batches into an RFC 6962 tree whose every node hash is stored; a signed
//! checkpoint (C2SP tlog-checkpoint) is made at a configurable interval;
//! inclusion and consistency proofs are served over gRPC and the tree as
//! c2sp.org/tlog-tiles over HTTP. Personal values enter only as salted
//! commitments; their values are stored beside the log, encrypted.
#![forbid(unsafe_code)]

mod error;
mod hashes;
mod sequencer;
mod service;
mod store;
mod tiles;
mod validate;
mod witnessing;

use std::{sync::Arc, time::Duration};

use quis_auth::TokenVerifier;
use quis_core::{
    QuisConfig,
    keys::{FileKeySource, KeySource},
};
use quis_proto::ledger::ledger_service_server::LedgerServiceServer;
use quis_runtime::{BuiltService, ServiceContext};
use quis_tlog::{checkpoint::Checkpoint, note::Signer};

pub use error::LedgerError;
pub use store::LedgerStore;

/// Key type of a log (signed-note) key.
const LOG_KEY_TYPE: u8 = 0x01;

/// The ledger's shared state.
pub struct Ledger {
    config: Arc<QuisConfig>,
    store: LedgerStore,
    sequencer: sequencer::Sequencer,
    verifier: Arc<TokenVerifier>,
    /// The current log key first, then the keys of a rotation in progress.
    signers: Vec<Signer>,
    /// AES-256-GCM under the details key, expanded once.
    details_cipher: aes_gcm::Aes256Gcm,
    witnesses: Vec<witnessing::Witness>,
    http: reqwest::Client,
    /// Set when a witness shows this log was rolled back: appends would fork it.
    halted: std::sync::OnceLock<String>,
    /// The latest stored checkpoint, kept in memory: proofs and tiles read it on every call.
    latest: std::sync::RwLock<Option<store::StoredCheckpoint>>,
}

impl Ledger {
    /// The verifier key of the log, `<origin>+<key id>+<base64>`, for auditors and witnesses.
    pub fn verifier_key(&self) -> String {
        self.signers.first().map(Signer::vkey).unwrap_or_default()
    }

    /// Stops appends for good: the operator must repair the log (docs/operations.md).
    fn halt(&self, why: String) {
        if self.halted.set(why.clone()).is_ok() {
            tracing::error!(reason = %why, "ledger halted: appends are refused until the log is repaired");
        }
    }

    /// The latest signed checkpoint (this process is the log's only writer).
    pub(crate) fn latest_checkpoint(&self) -> Option<store::StoredCheckpoint> {
        self.latest.read().ok().and_then(|l| l.clone())
    }

    /// Why appends are refused, if they are.
    pub fn halted(&self) -> Option<&str> {
        self.halted.get().map(String::as_str)
    }

    /// Signs a checkpoint of the durable tree if it grew since the last one,
    /// and has it cosigned; retries the cosigning of an unwitnessed one. With
    /// `resubmit`, the latest checkpoint goes to the witnesses even if it was
    /// witnessed (at start: a log restored from an old backup finds out here;
    /// later: fresh cosignature timestamps show auditors the log is live).
    async fn checkpoint_if_grown(&self, resubmit: bool) -> Result<(), String> {
        let size = *self.sequencer.size().borrow();
        let last = self.latest_checkpoint();
        // A re-cosigned checkpoint stays witnessed if its earlier cosignatures made the quorum.
        let was_witnessed = last.as_ref().is_some_and(|c| c.size >= size && c.witnessed);
        let note = match last {
            Some(c) if c.size >= size && (c.witnessed || self.witnesses.is_empty()) && !resubmit => return Ok(()),
            // Same tree, not yet witnessed: ask again (a witness may have been down).
            Some(c) if c.size >= size => c.note,
            _ => {
                let mut cache = Default::default();
                let root = hashes::with_hashes(&self.store, &mut cache, |r| quis_tlog::tree_hash(size, r))
                    .await
                    .map_err(|e| e.to_string())?;
                let checkpoint =
                    Checkpoint { origin: self.config.ledger.origin.clone(), size, root, extensions: Vec::new() };
                quis_tlog::checkpoint::sign(&checkpoint, &self.signers.iter().collect::<Vec<_>>())
                    .map_err(|e| e.to_string())?
            }
        };
        let body = note.split_once("\n\n").map(|(b, _)| format!("{b}\n")).ok_or("a signed note without body")?;
        let checkpoint = Checkpoint::parse(&body).map_err(|e| e.to_string())?;
        let (note, witnessed) = if self.witnesses.is_empty() {
            // Without witnesses a checkpoint is served but marked unwitnessed.
            (note, false)
        } else {
            let cosignatures = witnessing::collect(self, &note, &checkpoint).await;
            let witnessed = was_witnessed || cosignatures.len() >= self.config.ledger.witness_quorum;
            (quis_tlog::checkpoint::add_signatures(&note, &cosignatures).map_err(|e| e.to_string())?, witnessed)
        };
        self.store.save_checkpoint(checkpoint.size, &note, witnessed).await.map_err(|e| e.to_string())?;
        if let Ok(mut latest) = self.latest.write() {
            *latest = Some(store::StoredCheckpoint { size: checkpoint.size, note, witnessed });
        }
        Ok(())
    }

    fn spawn_checkpointer(self: &Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let ledger = Arc::clone(self);
        let every = Duration::from_millis(ledger.config.ledger.checkpoint_interval_ms);
        let refresh = Duration::from_secs(ledger.config.ledger.witness_refresh_secs);
        let mut last_refresh = tokio::time::Instant::now();
        tokio::spawn(async move {
            loop {
                let resubmit = !ledger.witnesses.is_empty() && !refresh.is_zero() && last_refresh.elapsed() >= refresh;
                if resubmit {
                    last_refresh = tokio::time::Instant::now();
                }
                if let Err(e) = ledger.checkpoint_if_grown(resubmit).await {
                    tracing::error!(error = %e, "signing a checkpoint failed");
                }
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(every) => {}
                }
            }
        });
    }
}

/// The log's signers from their key files (each created on first use): the
/// current key, then those of a rotation in progress. All sign as the origin.
fn log_signers(config: &QuisConfig) -> Result<Vec<Signer>, String> {
    let keys = FileKeySource::new(&config.data_dir);
    std::iter::once(&config.ledger.log_key)
        .chain(&config.ledger.additional_log_keys)
        .map(|path| {
            let seed = quis_core::keys::load_or_create_seed(&keys, &path.to_string_lossy())?;
            Signer::new(&config.ledger.origin, LOG_KEY_TYPE, seed).map_err(|e| e.to_string())
        })
        .collect()
}

/// The verifier keys of the log, current first, for witnesses and auditors
/// (creates the keys on first use).
pub fn log_verifier_keys(config: &QuisConfig) -> Result<Vec<String>, String> {
    Ok(log_signers(config)?.iter().map(Signer::vkey).collect())
}

/// Opens the store, loads (or creates) the keys, starts the sequencer and the
/// checkpointer, and returns the gRPC service and the tiles HTTP router.
pub async fn build(ctx: &ServiceContext) -> Result<(BuiltService, axum::Router, Arc<Ledger>), String> {
    let config = Arc::clone(&ctx.config);
    let keys = FileKeySource::new(&config.data_dir);
    let store = LedgerStore::connect(&config.store_url("ledger")).await.map_err(|e| format!("ledger store: {e}"))?;
    let size = store.size().await.map_err(|e| format!("ledger store: {e}"))?;
    if size > 0 {
        // A log that has entries keeps its keys: without any of its log keys a new one
        // would not be this log's (a rotation adds a key beside an existing one), and a
        // new details key would leave every stored detail unreadable.
        let log_keys: Vec<_> =
            std::iter::once(&config.ledger.log_key).chain(&config.ledger.additional_log_keys).collect();
        let missing = |p: &&std::path::PathBuf| !keys.exists(&p.to_string_lossy());
        if log_keys.iter().all(missing) || missing(&&config.ledger.details_key) {
            let absent: Vec<String> = log_keys
                .into_iter()
                .chain([&config.ledger.details_key])
                .filter(|p| missing(p))
                .map(|p| config.path(p).display().to_string())
                .collect();
            return Err(format!(
                "{} missing but the log holds {size} entries: restore the keys from backup",
                absent.join(", ")
            ));
        }
    }
    let signers = log_signers(&config)?;
    let details_key = quis_core::keys::load_or_create_seed(&keys, &config.ledger.details_key.to_string_lossy())?;
    let sequencer = sequencer::Sequencer::start(store.clone(), size, config.ledger.max_batch_entries);
    let witnesses = config
        .ledger
        .witnesses
        .iter()
        .map(|w| witnessing::Witness::new(&w.url, &w.vkey))
        .collect::<Result<Vec<_>, _>>()?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    let ledger = Arc::new(Ledger {
        config: Arc::clone(&config),
        store: store.clone(),
        sequencer,
        verifier: Arc::clone(&ctx.verifier),
        signers,
        details_cipher: <aes_gcm::Aes256Gcm as aes_gcm::KeyInit>::new(&details_key.into()),
        witnesses,
        http,
        halted: std::sync::OnceLock::new(),
        latest: std::sync::RwLock::new(store.latest_checkpoint().await.map_err(|e| format!("ledger store: {e}"))?),
    });
    if !ledger.witnesses.is_empty() {
        // Before the first append: are the witnesses ahead of us (a restore from an old backup)?
        if let Err(e) = ledger.checkpoint_if_grown(true).await {
            tracing::warn!(error = %e, "could not reach the witnesses at start");
        }
    }
    ledger.spawn_checkpointer(ctx.shutdown.clone());
    tracing::info!(size, vkey = %ledger.verifier_key(), "ledger open");
    let built = BuiltService {
        name: "ledger",
        grpc_names: vec!["quis.ledger.v1.LedgerService"],
        readiness: vec![store.db().readiness("store"), Arc::new(NotHalted(Arc::clone(&ledger)))],
        routes: tonic::service::Routes::new(
            LedgerServiceServer::new(service::LedgerApi(Arc::clone(&ledger)))
                .max_decoding_message_size(8 * 1024 * 1024),
        ),
    };
    Ok((built, tiles::router(Arc::clone(&ledger)), ledger))
}

/// Readiness: a halted ledger must not receive traffic.
struct NotHalted(Arc<Ledger>);

impl quis_core::health::ReadinessCheck for NotHalted {
    fn name(&self) -> &str {
        "ledger"
    }
    fn check(&self) -> futures::future::BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.0.halted().map_or(Ok(()), |why| Err(why.to_string())) })
    }
}
