//! Submitting checkpoints to witnesses (c2sp.org/tlog-witness). Each witness
//! cosigns a checkpoint only if it is consistent with the last one it cosigned
//! for this log, so a ledger that was rolled back or forked gets no more
//! cosignatures. The ledger remembers each witness's size and answers a 409
//! (the witness knows another size) by proving consistency from that size.
use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use quis_tlog::{
    checkpoint::Checkpoint,
    note::{Signature, Verifier},
    witness::{AddCheckpoint, parse_conflict, parse_response},
};

use crate::{Ledger, hashes::with_hashes};

/// Why a witness gave no cosignature.
#[derive(Debug, thiserror::Error)]
pub enum CosignError {
    /// The witness has cosigned a larger tree than this log now holds: the log
    /// was rolled back (restored from an old backup) or forked.
    #[error(
        "witness {witness} has cosigned a tree of size {witness_size}, larger than this log's {log_size}: \
         the log was rolled back (restored from a backup older than its last witnessed checkpoint) or forked; \
         appends are refused: see docs/operations.md, \"Backup and restore\""
    )]
    RolledBack { witness: String, witness_size: u64, log_size: u64 },
    #[error("{0}")]
    Failed(String),
}

/// One configured witness.
pub struct Witness {
    url: String,
    verifier: Verifier,
    /// The tree size this witness last cosigned for us, as far as we know.
    known_size: AtomicU64,
}

impl Witness {
    pub fn new(url: &str, vkey: &str) -> Result<Self, String> {
        let verifier = Verifier::from_vkey(vkey).map_err(|e| format!("ledger.witnesses: {vkey}: {e}"))?;
        Ok(Self { url: url.trim_end_matches('/').to_string(), verifier, known_size: AtomicU64::new(0) })
    }

    /// Asks the witness to cosign `note` (a checkpoint of `cp`); returns its cosignature.
    pub async fn cosign(
        &self,
        ledger: &Ledger,
        http: &reqwest::Client,
        note: &str,
        cp: &Checkpoint,
    ) -> Result<Signature, CosignError> {
        // Two rounds: a 409 tells us the witness's size, and the second request proves from it.
        for _ in 0..2 {
            let old = self.known_size.load(Ordering::Acquire);
            if old > cp.size {
                return Err(CosignError::RolledBack {
                    witness: self.verifier.name().to_string(),
                    witness_size: old,
                    log_size: cp.size,
                });
            }
            let proof = if old == 0 || old == cp.size {
                Vec::new()
            } else {
                let mut cache = Default::default();
                with_hashes(&ledger.store, &mut cache, |r| quis_tlog::prove_tree(cp.size, old, r))
                    .await
                    .map_err(|e| CosignError::Failed(e.to_string()))?
            };
            let body = AddCheckpoint { old_size: old, proof, note: note.to_string() }.encode();
            let response = http
                .post(format!("{}/add-checkpoint", self.url))
                .body(body)
                .send()
                .await
                .map_err(|e| self.failed(e))?;
            let status = response.status();
            let text = response.text().await.map_err(|e| self.failed(e))?;
            match status.as_u16() {
                200 => {
                    let signature = parse_response(&text)
                        .map_err(|e| self.failed(e))?
                        .into_iter()
                        .find(|s| s.key_id == self.verifier.key_id() && s.name == self.verifier.name())
                        .ok_or_else(|| self.failed("answered without its cosignature"))?;
                    // Check it before publishing it.
                    let body = cp.body();
                    self.verifier.verify(&body, &signature).map_err(|e| self.failed(e))?;
                    self.known_size.store(cp.size, Ordering::Release);
                    return Ok(signature);
                }
                409 => {
                    let size = parse_conflict(&text).map_err(|e| self.failed(e))?;
                    self.known_size.store(size, Ordering::Release);
                }
                code => return Err(self.failed(format!("refused the checkpoint ({code}): {}", text.trim()))),
            }
        }
        Err(self.failed("kept answering 409"))
    }

    fn failed(&self, why: impl std::fmt::Display) -> CosignError {
        CosignError::Failed(format!("witness {}: {why}", self.verifier.name()))
    }
}

/// Collects cosignatures from every witness, concurrently, each bounded in
/// time. A witness that reports a rollback stops the log (see [`Ledger::halt`]).
pub async fn collect(ledger: &Ledger, note: &str, cp: &Checkpoint) -> Vec<Signature> {
    let http = &ledger.http;
    let requests = ledger.witnesses.iter().map(|w| async move {
        match tokio::time::timeout(Duration::from_secs(5), w.cosign(ledger, http, note, cp)).await {
            Ok(Ok(sig)) => Some(sig),
            Ok(Err(e @ CosignError::RolledBack { .. })) => {
                ledger.halt(e.to_string());
                None
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "no cosignature");
                None
            }
            Err(_) => {
                tracing::warn!(witness = %w.verifier.name(), "witness timed out");
                None
            }
        }
    });
    futures::future::join_all(requests).await.into_iter().flatten().collect()
}
