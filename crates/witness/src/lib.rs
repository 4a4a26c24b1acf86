//! The Quis witness: c2sp.org/tlog-witness over plain HTTP.
//!
//! A witness is run by someone other than the log's operator. For each log it is configured
//! for (`witness.logs`: origin → the log's verifier keys) it remembers the size and root of the
//! latest checkpoint it cosigned, and cosigns a new checkpoint only if the log signed it and a
//! consistency proof leads to it from that remembered one. So it never cosigns two different
//! roots for one size, nor a tree smaller than one it cosigned, across restarts: a log that
//! forks or rolls back gets no more cosignatures, and clients requiring them notice.
//!
//! Requests need no token: the log's signature on the checkpoint is the authentication.
//!
//! - `POST /add-checkpoint`: the request of c2sp.org/tlog-witness; 200 with the cosignature
//!   line, 400 (malformed, or old size above the checkpoint's), 403 (not signed by a known key
//!   of the log), 404 (unknown log), 409 (`text/x.tlog.size`: the old size is not the latest
//!   cosigned size, or a different root at that size), 422 (bad consistency proof).
//! - `GET /` and `GET /vkey`: the witness's verifier key.
#![forbid(unsafe_code)]

mod error;
mod store;

use std::{collections::BTreeMap, future::IntoFuture, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State},
    http::{StatusCode, header::CONTENT_TYPE},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use quis_core::{
    QuisConfig,
    health::{Readiness, ReadinessCheck},
    keys::FileKeySource,
};
use quis_tlog::{
    EMPTY_HASH, Hash,
    checkpoint::{self, Checkpoint},
    note::{KEY_TYPE_COSIGNATURE_V1, KEY_TYPE_ED25519, Note, Signer, Verifier},
    witness::{AddCheckpoint, encode_conflict, encode_response},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::WitnessError;
pub use store::{StoreError, WitnessStore};

/// Largest `add-checkpoint` body accepted: a full 63-line proof and a checkpoint with a hundred
/// signature lines take under 16 KiB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Content type of a 409 response body.
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// Compare-and-swap attempts before answering 503. A lost race means another request moved the
/// state forward, after which this one is decided without writing, so two suffice in practice.
const MAX_ATTEMPTS: usize = 4;

/// The witness: its cosigning key, the logs it knows and its store. Cheap to clone.
#[derive(Clone)]
pub struct Witness {
    inner: Arc<Inner>,
}

struct Inner {
    signer: Signer,
    logs: BTreeMap<String, Vec<Verifier>>,
    store: WitnessStore,
}

impl std::fmt::Debug for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witness")
            .field("vkey", &self.inner.signer.vkey())
            .field("logs", &self.inner.logs.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// An HTTP answer: status, content type and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: String,
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        (self.status, [(CONTENT_TYPE, self.content_type)], self.body).into_response()
    }
}

impl From<Result<String, WitnessError>> for Reply {
    fn from(result: Result<String, WitnessError>) -> Self {
        let text = "text/plain; charset=utf-8";
        match result {
            Ok(cosignatures) => Reply { status: StatusCode::OK, content_type: text, body: cosignatures },
            Err(e) => {
                let status = e.status();
                let (content_type, body) = match (&e, e.latest_size()) {
                    (_, Some(size)) if status == StatusCode::CONFLICT => (SIZE_CONTENT_TYPE, encode_conflict(size)),
                    // Internal failures are logged, not shown.
                    (WitnessError::Store(_), _) => (text, "witness store unavailable\n".to_string()),
                    (WitnessError::Cosign(_), _) => (text, "internal error\n".to_string()),
                    _ => (text, format!("{}\n", e.to_string().replace(['\n', '\r'], " "))),
                };
                Reply { status, content_type, body }
            }
        }
    }
}

/// Parses `witness.logs`: every origin non-empty, every key a valid log (type 0x01) verifier key.
fn parse_logs(logs: &BTreeMap<String, Vec<String>>) -> Result<BTreeMap<String, Vec<Verifier>>, String> {
    let mut out = BTreeMap::new();
    for (origin, vkeys) in logs {
        if origin.is_empty() || origin.contains(char::is_control) {
            return Err(format!("witness.logs: invalid origin {origin:?}"));
        }
        if vkeys.is_empty() {
            return Err(format!("witness.logs.{origin:?}: needs at least one verifier key"));
        }
        let mut verifiers = Vec::with_capacity(vkeys.len());
        for vkey in vkeys {
            let v = Verifier::from_vkey(vkey).map_err(|e| format!("witness.logs.{origin:?}: {vkey}: {e}"))?;
            if v.key_type() != KEY_TYPE_ED25519 {
                return Err(format!("witness.logs.{origin:?}: {vkey}: not a log key (type 0x{:02x})", v.key_type()));
            }
            verifiers.push(v);
        }
        out.insert(origin.clone(), verifiers);
    }
    Ok(out)
}

fn now_unix_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

impl Witness {
    /// A witness from its key, its known logs (origin → log verifiers) and its store.
    pub fn new(signer: Signer, logs: BTreeMap<String, Vec<Verifier>>, store: WitnessStore) -> Result<Self, String> {
        if signer.key_type() != KEY_TYPE_COSIGNATURE_V1 {
            return Err(format!("the witness key must have type 0x04, not 0x{:02x}", signer.key_type()));
        }
        Ok(Self { inner: Arc::new(Inner { signer, logs, store }) })
    }

    /// The witness's verifier key, `<name>+<key id>+<base64(0x04 || public key)>`, for the
    /// logs' `ledger.witnesses` and for anyone checking cosignatures.
    pub fn verifier_key(&self) -> String {
        self.inner.signer.vkey()
    }

    /// The witness's verifier.
    pub fn verifier(&self) -> Verifier {
        self.inner.signer.verifier()
    }

    /// A readiness check: the store answers.
    pub fn readiness(&self) -> Arc<dyn ReadinessCheck> {
        self.inner.store.db().readiness("store")
    }

    /// The size and root of the latest checkpoint cosigned for `origin`, if any.
    pub async fn latest(&self, origin: &str) -> Result<Option<(u64, Hash)>, WitnessError> {
        Ok(self.inner.store.latest(origin).await?)
    }

    /// Handles an `add-checkpoint` body. Never panics, whatever the bytes.
    pub async fn handle(&self, body: &[u8]) -> Reply {
        let result = self.add_checkpoint(body).await;
        match &result {
            Ok(_) => {}
            Err(e @ (WitnessError::Store(_) | WitnessError::Cosign(_) | WitnessError::Busy)) => {
                tracing::error!(error = %e, "add-checkpoint failed");
            }
            Err(e) => tracing::debug!(error = %e, "add-checkpoint refused"),
        }
        let reply = Reply::from(result);
        metrics::counter!("quis_witness_add_checkpoint_total", "code" => reply.status.as_u16().to_string())
            .increment(1);
        reply
    }

    /// Checks an `add-checkpoint` request and, if it passes, records the checkpoint as the
    /// latest for its log and returns the cosignature lines (the 200 body).
    pub async fn add_checkpoint(&self, body: &[u8]) -> Result<String, WitnessError> {
        let request = AddCheckpoint::parse(body).map_err(|e| WitnessError::Malformed(e.to_string()))?;
        let note = Note::parse(&request.note).map_err(|e| WitnessError::Malformed(e.to_string()))?;
        let cp = Checkpoint::parse(&note.text).map_err(|e| WitnessError::Malformed(e.to_string()))?;
        let Some(log_keys) = self.inner.logs.get(&cp.origin) else {
            return Err(WitnessError::UnknownLog(cp.origin));
        };
        checkpoint::open(&request.note, log_keys, &[])
            .map_err(|source| WitnessError::NotSigned { origin: cp.origin.clone(), source })?;
        // From here on the log signed what it sent: refusals may be evidence of misbehaviour.
        if request.old_size > cp.size {
            tracing::warn!(
                origin = %cp.origin,
                old_size = request.old_size,
                size = cp.size,
                "old size above the checkpoint size"
            );
            return Err(WitnessError::OldSizeTooLarge { old_size: request.old_size, size: cp.size });
        }
        if i64::try_from(cp.size).is_err() {
            return Err(WitnessError::Malformed(format!("tree size {} exceeds 2^63-1", cp.size)));
        }
        for _ in 0..MAX_ATTEMPTS {
            let stored = self.inner.store.latest(&cp.origin).await?;
            let (latest, latest_root) = stored.unwrap_or((0, EMPTY_HASH));
            if request.old_size != latest {
                if cp.size < latest {
                    tracing::warn!(
                        origin = %cp.origin,
                        size = cp.size,
                        latest,
                        "log-signed checkpoint smaller than the latest cosigned one"
                    );
                }
                return Err(WitnessError::StaleOldSize { old_size: request.old_size, latest });
            }
            if cp.size == latest {
                if cp.root != latest_root {
                    tracing::error!(
                        origin = %cp.origin,
                        size = cp.size,
                        note = %request.note,
                        "FORK: the log signed a second checkpoint of an already cosigned size with another root"
                    );
                    return Err(WitnessError::Fork { size: cp.size });
                }
                if !request.proof.is_empty() {
                    return Err(WitnessError::BadProof { old_size: latest, size: cp.size });
                }
            } else if latest > 0
                && let Err(e) = quis_tlog::check_tree(&request.proof, cp.size, &cp.root, latest, &latest_root)
            {
                tracing::warn!(
                    origin = %cp.origin,
                    old_size = latest,
                    size = cp.size,
                    error = %e,
                    note = %request.note,
                    "log-signed checkpoint not proven consistent with the latest cosigned one"
                );
                return Err(WitnessError::BadProof { old_size: latest, size: cp.size });
            }
            // From an old size of 0 the proof is empty (checked by the parser): every tree
            // extends the empty one.
            let cosignature =
                checkpoint::cosign(&note.text, &self.inner.signer, now_unix_secs()).map_err(WitnessError::Cosign)?;
            if self.inner.store.advance(&cp.origin, stored, (cp.size, cp.root)).await? {
                tracing::info!(origin = %cp.origin, old_size = latest, size = cp.size, "cosigned");
                return Ok(encode_response(&[cosignature]));
            }
            // Another request moved the state first: decide again against the new state.
        }
        Err(WitnessError::Busy)
    }
}

async fn add_checkpoint(State(witness): State<Witness>, body: Bytes) -> Reply {
    witness.handle(&body).await
}

async fn vkey(State(witness): State<Witness>) -> String {
    format!("{}\n", witness.verifier_key())
}

/// The witness's HTTP routes.
pub fn router(witness: Witness) -> Router {
    Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .route("/", get(vkey))
        .route("/vkey", get(vkey))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(witness)
}

/// Loads (or creates, mode 0600) the cosigning key `witness.key`, opens the store
/// `config.store_url("witness")` and returns the HTTP router with the witness.
pub async fn build(config: &QuisConfig) -> Result<(Router, Witness), String> {
    let keys = FileKeySource::new(&config.data_dir);
    let seed = quis_core::keys::load_or_create_seed(&keys, &config.witness.key.to_string_lossy())?;
    let signer =
        Signer::new(&config.witness.name, KEY_TYPE_COSIGNATURE_V1, seed).map_err(|e| format!("witness.name: {e}"))?;
    let logs = parse_logs(&config.witness.logs)?;
    let store = WitnessStore::connect(&config.store_url("witness")).await.map_err(|e| format!("witness store: {e}"))?;
    let witness = Witness::new(signer, logs, store)?;
    if witness.inner.logs.is_empty() {
        tracing::warn!("witness.logs is empty: every checkpoint will be refused as from an unknown log");
    }
    let origins: Vec<&String> = witness.inner.logs.keys().collect();
    tracing::info!(vkey = %witness.verifier_key(), logs = ?origins, "witness open");
    Ok((router(witness.clone()), witness))
}

/// Serves `router` on `listener` until `stop`, then lets open requests finish for up to `grace`.
/// Drives `readiness` (the admin `/readyz`) from the witness's store.
pub async fn serve(
    router: Router,
    witness: &Witness,
    listener: TcpListener,
    readiness: Readiness,
    grace: Duration,
    stop: CancellationToken,
) -> std::io::Result<()> {
    // The witness has no gRPC health service; the reporter only feeds the shared driver.
    let (reporter, _) = tonic_health::server::health_reporter();
    quis_core::health::spawn_drive(
        reporter,
        Vec::new(),
        vec![witness.readiness()],
        readiness,
        Duration::from_secs(1),
        stop.clone(),
    )
    .await;
    let addr = listener.local_addr()?;
    tracing::info!(service = "witness", %addr, "serving");
    let shutdown = stop.clone();
    let server = axum::serve(listener, router).with_graceful_shutdown(async move { shutdown.cancelled().await });
    let mut server = std::pin::pin!(server.into_future());
    tokio::select! {
        result = &mut server => return result,
        _ = stop.cancelled() => {}
    }
    match tokio::time::timeout(grace, server).await {
        Ok(result) => result?,
        Err(_) => tracing::warn!(service = "witness", "grace period over; closing the remaining requests"),
    }
    tracing::info!(service = "witness", "stopped");
    Ok(())
}
