//! The integrity monitor: for each new checkpoint, checks the log's signature,
//! the witness quorum (with the configured witness keys, not the ledger's own
//! `witnessed` flag) and consistency with the last checkpoint it verified
//! (kept in the store, so a rollback or a fork across restarts is caught);
//! then checks entries received on the tail against inclusion proofs of the
//! verified tree. Any failure is a `ledger-integrity` alert, raised once per
//! distinct failure, and the verified state does not move past it. A tail
//! that stands still behind the verified tree (the ledger cannot serve an
//! entry, e.g. a deleted row) is a failure too.
use std::time::{Duration, Instant};

use quis_proto::ledger::{GetCheckpointRequest, GetConsistencyProofRequest, GetInclusionProofRequest};
use quis_tlog::{checkpoint, note::Verifier};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::{
    config::{SentinelConfig, Severity},
    consumer::Sample,
    detect::{Evidence, NewAlert},
    link::LedgerLink,
    store::{AlertRow, SentinelStore, VerifiedCheckpoint, now_ms},
};

/// Most received entries waiting for a checkpoint that covers them.
const MAX_PENDING_SAMPLES: usize = 4096;

/// What one check found.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Everything checked; the verified tree size.
    Verified(u64),
    /// The ledger could not be asked (not an integrity failure).
    Unreachable(String),
    /// An integrity failure, alerted.
    Failed(String),
}

/// See the module documentation.
pub struct Monitor {
    link: LedgerLink,
    store: SentinelStore,
    log: Vec<Verifier>,
    witnesses: Vec<Verifier>,
    quorum: usize,
    interval: Duration,
    severity: Severity,
    samples: mpsc::Receiver<Sample>,
    pending: Vec<Sample>,
    last_failure: Option<String>,
    alerts: broadcast::Sender<AlertRow>,
    stall_after: Duration,
    /// The consumer's cursor when last seen behind the verified tree, and since when.
    progress: Option<(u64, Instant)>,
    stall_reported: Option<u64>,
}

impl Monitor {
    pub fn new(
        link: LedgerLink,
        store: SentinelStore,
        config: &SentinelConfig,
        samples: mpsc::Receiver<Sample>,
        alerts: broadcast::Sender<AlertRow>,
    ) -> Result<Self, String> {
        let parse = |keys: &[String]| {
            keys.iter().map(|k| Verifier::from_vkey(k).map_err(|e| format!("{k}: {e}"))).collect::<Result<Vec<_>, _>>()
        };
        let log = parse(&config.log_vkeys)?;
        if log.is_empty() {
            return Err("sentinel needs the ledger's verifier key (log_vkeys)".into());
        }
        Ok(Self {
            link,
            store,
            log,
            witnesses: parse(&config.witness_vkeys)?,
            quorum: config.witness_quorum,
            interval: Duration::from_millis(config.integrity_interval_ms),
            severity: config.detections.ledger_integrity.severity,
            samples,
            pending: Vec::new(),
            last_failure: None,
            alerts,
            stall_after: Duration::from_millis(config.stall_alert_ms),
            progress: None,
            stall_reported: None,
        })
    }

    /// Checks at the configured interval until `stop`.
    pub async fn run(mut self, stop: CancellationToken) {
        loop {
            if let Outcome::Unreachable(why) = self.check_once().await {
                tracing::warn!(error = %why, "integrity monitor could not reach the ledger");
            }
            let sleep = tokio::time::sleep(self.interval);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = &mut sleep => break,
                    Some(s) = self.samples.recv() => self.queue(s),
                }
            }
        }
    }

    fn queue(&mut self, s: Sample) {
        if self.pending.len() < MAX_PENDING_SAMPLES {
            self.pending.push(s);
        }
    }

    /// One round: the latest checkpoint, then the queued samples.
    pub async fn check_once(&mut self) -> Outcome {
        while let Ok(s) = self.samples.try_recv() {
            self.queue(s);
        }
        let outcome = match self.check_checkpoint().await {
            Ok(verified) => self.check_samples(&verified).await.map(|()| verified.size),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(size) => {
                self.last_failure = None;
                match self.check_progress(size).await {
                    Some(why) => Outcome::Failed(why),
                    None => Outcome::Verified(size),
                }
            }
            Err(Problem::Unreachable(why)) => Outcome::Unreachable(why),
            Err(Problem::Integrity(why, evidence)) => {
                if self.last_failure.as_deref() != Some(why.as_str()) {
                    self.raise(&why, evidence).await;
                    self.last_failure = Some(why.clone());
                }
                Outcome::Failed(why)
            }
        }
    }

    /// Whether the consumer's cursor stood still behind `size` for too long; alerts once per position.
    async fn check_progress(&mut self, size: u64) -> Option<String> {
        let cursor = match self.store.cursor().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "reading sentinel's cursor failed");
                return None;
            }
        };
        if cursor >= size {
            self.progress = None;
            return None;
        }
        match self.progress {
            Some((seen, since)) if seen == cursor => {
                if since.elapsed() < self.stall_after || self.stall_reported == Some(cursor) {
                    return None;
                }
                let why = format!(
                    "Sentinel's tail has been stuck at entry {cursor} for {} s while the signed tree holds {size} \
                     entries: the ledger cannot serve that entry (a deleted or corrupt row).",
                    since.elapsed().as_secs()
                );
                self.raise(&why, Vec::new()).await;
                self.stall_reported = Some(cursor);
                Some(why)
            }
            _ => {
                self.progress = Some((cursor, Instant::now()));
                None
            }
        }
    }

    async fn raise(&self, why: &str, evidence: Vec<Evidence>) {
        let alert = NewAlert {
            detection: "ledger-integrity",
            severity: self.severity,
            explanation: why.to_string(),
            evidence,
            actor: "ledger".into(),
            event_time_ms: now_ms(),
        };
        tracing::error!(problem = %why, "ledger integrity failure");
        match self.store.raise(&[alert]).await {
            Ok(stored) => {
                for a in stored {
                    let _ = self.alerts.send(a);
                }
            }
            Err(e) => tracing::error!(error = %e, "storing a ledger-integrity alert failed"),
        }
    }

    async fn check_checkpoint(&mut self) -> Result<VerifiedCheckpoint, Problem> {
        let mut client = self.link.client();
        let note = client
            .get_checkpoint(self.link.request(GetCheckpointRequest {}).map_err(Problem::unreachable)?)
            .await
            .map_err(Problem::unreachable)?
            .into_inner()
            .checkpoint;
        let opened = checkpoint::open(&note, &self.log, &self.witnesses).map_err(|e| {
            Problem::integrity(format!("The ledger's latest checkpoint does not verify under its key: {e}."))
        })?;
        let cp = opened.checkpoint;
        if opened.cosigners.len() < self.quorum {
            return Err(Problem::integrity(format!(
                "The checkpoint of size {} is cosigned by {} of the {} witnesses required: nobody independent has \
                 confirmed that this log is the one everyone else sees.",
                cp.size,
                opened.cosigners.len(),
                self.quorum
            )));
        }
        let new = VerifiedCheckpoint { size: cp.size, root: cp.root, note };
        let previous = self.store.verified_checkpoint().await.map_err(|e| Problem::Unreachable(e.to_string()))?;
        if let Some(prev) = &previous {
            if cp.size < prev.size {
                return Err(Problem::integrity(format!(
                    "The ledger went back from {} entries to {}: its history was rolled back.",
                    prev.size, cp.size
                )));
            }
            if cp.size == prev.size && cp.root != prev.root {
                return Err(Problem::integrity(format!(
                    "The ledger signed two different trees of {} entries: its history was forked.",
                    cp.size
                )));
            }
            if cp.size > prev.size {
                let proof = client
                    .get_consistency_proof(
                        self.link
                            .request(GetConsistencyProofRequest { from_size: prev.size, to_size: cp.size })
                            .map_err(Problem::unreachable)?,
                    )
                    .await
                    .map_err(Problem::unreachable)?
                    .into_inner();
                let hashes = to_hashes(&proof.hashes).ok_or_else(|| {
                    Problem::integrity(format!("The consistency proof from {} to {} is malformed.", prev.size, cp.size))
                })?;
                quis_tlog::check_tree(&hashes, cp.size, &cp.root, prev.size, &prev.root).map_err(|_| {
                    Problem::integrity(format!(
                        "The ledger's tree of {} entries does not extend the tree of {} entries it signed before: \
                         entries were rewritten or removed.",
                        cp.size, prev.size
                    ))
                })?;
            }
        }
        if previous.as_ref() != Some(&new) {
            self.store.save_verified_checkpoint(&new).await.map_err(|e| Problem::Unreachable(e.to_string()))?;
        }
        Ok(new)
    }

    async fn check_samples(&mut self, verified: &VerifiedCheckpoint) -> Result<(), Problem> {
        let (due, later): (Vec<Sample>, Vec<Sample>) = self.pending.drain(..).partition(|s| s.index < verified.size);
        self.pending = later;
        let mut client = self.link.client();
        for (i, s) in due.iter().enumerate() {
            let request = GetInclusionProofRequest { index: s.index, tree_size: verified.size };
            let proof =
                match client.get_inclusion_proof(self.link.request(request).map_err(Problem::unreachable)?).await {
                    Ok(p) => p.into_inner(),
                    Err(e) => {
                        // Not checked yet: try again next round.
                        self.pending.extend_from_slice(&due[i..]);
                        return Err(Problem::unreachable(e));
                    }
                };
            let ok = to_hashes(&proof.hashes).is_some_and(|h| {
                quis_tlog::check_record(&h, verified.size, &verified.root, s.index, &s.leaf_hash).is_ok()
            });
            if !ok {
                return Err(Problem::Integrity(
                    format!(
                        "Ledger entry {} as served on the tail is not the entry the signed tree of {} entries \
                         commits to: its stored bytes were altered.",
                        s.index, verified.size
                    ),
                    vec![Evidence { index: s.index, leaf_hash: s.leaf_hash, note: "entry as received".into() }],
                ));
            }
        }
        Ok(())
    }
}

enum Problem {
    Unreachable(String),
    Integrity(String, Vec<Evidence>),
}

impl Problem {
    fn unreachable(e: tonic::Status) -> Self {
        Problem::Unreachable(format!("{}: {}", e.code(), e.message()))
    }
    fn integrity(why: String) -> Self {
        Problem::Integrity(why, Vec::new())
    }
}

fn to_hashes(raw: &[Vec<u8>]) -> Option<Vec<quis_tlog::Hash>> {
    raw.iter().map(|h| <[u8; 32]>::try_from(h.as_slice()).ok()).collect()
}
