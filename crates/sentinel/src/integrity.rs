//! The integrity monitor: for each new checkpoint, checks the log's signature,
//! the witness quorum (with the configured witness keys, not the ledger's own
//! `witnessed` flag) and consistency with the last checkpoint it verified
//! (kept in the store, so a rollback or a fork across restarts is caught);
//! then checks entries received on the tail against the verified tree: proved
//! from the log's public hash tiles (`sentinel.tiles_url`, what any outside
//! auditor sees) or else from the ledger's gRPC inclusion proofs; and
//! re-reads stored entries, a few tiles a round, to catch rows rewritten or
//! deleted after they were tailed ([`recheck`]). Any failure is a
//! `ledger-integrity` alert, raised once per distinct failure, and the
//! verified state does not move past it. A tile or entry that a signed
//! checkpoint covers and the log does not serve is a failure, not an outage.
//! A tail that stands still behind the verified tree (the ledger cannot serve
//! an entry, e.g. a deleted row) is a failure too.
use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use quis_proto::ledger::{GetCheckpointRequest, GetConsistencyProofRequest, GetInclusionProofRequest};
use quis_tlog::{
    checkpoint,
    client::TileClient,
    note::Verifier,
    tile::{self, TileHashReader},
};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use crate::{
    access_index::{AccessIndex, AccessSample},
    config::{SentinelConfig, Severity},
    consumer::Sample,
    detect::{Evidence, NewAlert},
    link::LedgerLink,
    store::{AlertRow, SentinelStore, VerifiedCheckpoint, now_ms},
};

mod recheck;

/// Most received entries waiting for a checkpoint that covers them.
const MAX_PENDING_SAMPLES: usize = 4096;

/// Distinct failures remembered so that each raises one alert (the oldest is forgotten first).
const MAX_REPORTED: usize = 256;
/// The newest alerts whose evidence is read from the store at start.
const EVIDENCE_ALERTS_AT_START: i64 = 4096;

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
    /// The failures already alerted, most recent last.
    reported: VecDeque<String>,
    alerts: broadcast::Sender<AlertRow>,
    stall_after: Duration,
    /// The consumer's cursor when last seen behind the verified tree, and since when.
    progress: Option<(u64, Instant)>,
    stall_reported: Option<u64>,
    /// The log's tiles, when sampled entries are proved from them.
    tiles: Option<TileClient>,
    /// The vault's access index and the sampled accesses to look for in it.
    access_index: Option<(Arc<dyn AccessIndex>, mpsc::Receiver<AccessSample>)>,
    pending_accesses: Vec<AccessSample>,
    access_grace_ms: i64,
    /// Which stored entries to re-read next.
    schedule: recheck::Schedule,
    /// Every alert stored from now on, for the entries it cites (see [`recheck`]), and
    /// whether those of the alerts stored before this start have been read.
    raised: broadcast::Receiver<AlertRow>,
    evidence_loaded: bool,
}

impl Monitor {
    pub fn new(
        link: LedgerLink,
        store: SentinelStore,
        config: &SentinelConfig,
        samples: mpsc::Receiver<Sample>,
        alerts: broadcast::Sender<AlertRow>,
        access_index: Option<(Arc<dyn AccessIndex>, mpsc::Receiver<AccessSample>)>,
    ) -> Result<Self, String> {
        let parse = |keys: &[String]| {
            keys.iter().map(|k| Verifier::from_vkey(k).map_err(|e| format!("{k}: {e}"))).collect::<Result<Vec<_>, _>>()
        };
        let log = parse(&config.log_vkeys)?;
        let tiles = match &config.tiles_url {
            Some(url) => Some(TileClient::new(url, None).map_err(|e| format!("sentinel.tiles_url: {e}"))?),
            None => None,
        };
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
            reported: VecDeque::new(),
            stall_after: Duration::from_millis(config.stall_alert_ms),
            progress: None,
            stall_reported: None,
            tiles,
            access_index,
            pending_accesses: Vec::new(),
            access_grace_ms: config.access_index_grace_ms as i64,
            schedule: recheck::Schedule::new(
                config.recheck_entries_per_sec,
                config.recheck_recent_entries,
                config.integrity_interval_ms,
            ),
            raised: alerts.subscribe(),
            evidence_loaded: false,
            alerts,
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
                self.drain_accesses();
            }
        }
    }

    fn queue(&mut self, s: Sample) {
        if self.pending.len() < MAX_PENDING_SAMPLES {
            self.pending.push(s);
        }
    }

    fn drain_accesses(&mut self) {
        let Some((_, rx)) = &mut self.access_index else { return };
        while let Ok(a) = rx.try_recv() {
            if self.pending_accesses.len() < MAX_PENDING_SAMPLES {
                self.pending_accesses.push(a);
            }
        }
    }

    /// Looks for the sampled accesses old enough in the vault's index.
    async fn check_access_index(&mut self, verified_size: u64) -> Result<(), Problem> {
        self.drain_accesses();
        let Some((index, _)) = &self.access_index else { return Ok(()) };
        let ripe = now_ms() - self.access_grace_ms;
        let (due, later): (Vec<AccessSample>, Vec<AccessSample>) =
            self.pending_accesses.drain(..).partition(|a| a.time_ms <= ripe && a.index < verified_size);
        self.pending_accesses = later;
        for (i, a) in due.iter().enumerate() {
            match index.lists(&a.subject, a.index).await {
                Ok(true) => {}
                Ok(false) => {
                    return Err(Problem::Integrity(
                        format!(
                            "The vault's access index does not list ledger entry {}, an access to its subject: the \
                             subject's access history hides it.",
                            a.index
                        ),
                        vec![Evidence { index: a.index, leaf_hash: a.leaf_hash, note: "unindexed access".into() }],
                    ));
                }
                Err(why) => {
                    self.pending_accesses.extend_from_slice(&due[i..]);
                    return Err(Problem::Unreachable(format!("the vault's access index: {why}")));
                }
            }
        }
        Ok(())
    }

    /// One round: the latest checkpoint, the tail's progress, then the queued samples, the
    /// vault's index and stored entries re-read.
    pub async fn check_once(&mut self) -> Outcome {
        while let Ok(s) = self.samples.try_recv() {
            self.queue(s);
        }
        let verified = match self.check_checkpoint().await {
            Ok(v) => v,
            Err(p) => return self.report(p).await,
        };
        // Checked whatever the entries show: a deleted row both fails the re-check and stops the tail.
        let stalled = self.check_progress(verified.size).await;
        if let Err(p) = self.check_entries(&verified).await {
            return self.report(p).await;
        }
        match stalled {
            Some(why) => Outcome::Failed(why),
            None => Outcome::Verified(verified.size),
        }
    }

    /// The entries' checks against the verified tree.
    async fn check_entries(&mut self, verified: &VerifiedCheckpoint) -> Result<(), Problem> {
        self.check_samples(verified).await?;
        self.check_access_index(verified.size).await?;
        self.note_evidence().await;
        self.recheck(verified).await
    }

    /// Gives the re-check the entries that alerts cite: those of the alerts stored before
    /// this start once, then those of each alert as it is stored.
    async fn note_evidence(&mut self) {
        if !self.evidence_loaded {
            match self.store.alerts(&crate::store::AlertFilter::default(), EVIDENCE_ALERTS_AT_START).await {
                Ok(stored) => {
                    // Newest first from the store; noted oldest first, so the newest are re-checked first.
                    for alert in stored.iter().rev() {
                        alert.evidence.iter().for_each(|e| self.schedule.note_evidence(e.index));
                    }
                    self.evidence_loaded = true;
                }
                Err(e) => tracing::warn!(error = %e, "alerts' evidence unreadable; the re-check sweeps without it"),
            }
        }
        loop {
            match self.raised.try_recv() {
                Ok(alert) => alert.evidence.iter().for_each(|e| self.schedule.note_evidence(e.index)),
                // Missed alerts are in the store: read them all again next round.
                Err(broadcast::error::TryRecvError::Lagged(_)) => self.evidence_loaded = false,
                Err(_) => break,
            }
        }
    }

    /// Alerts an integrity failure once (however often it is found again).
    async fn report(&mut self, problem: Problem) -> Outcome {
        match problem {
            Problem::Unreachable(why) => Outcome::Unreachable(why),
            Problem::Integrity(why, evidence) => {
                if !self.reported.contains(&why) {
                    self.raise(&why, evidence).await;
                    self.reported.push_back(why.clone());
                    if self.reported.len() > MAX_REPORTED {
                        self.reported.pop_front();
                    }
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
            // Every tree extends the empty one (and the ledger refuses a proof from size 0).
            if cp.size > prev.size && prev.size > 0 {
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
        let proofs = match &self.tiles {
            Some(tiles) => proofs_from_tiles(tiles, verified.size, &due).await,
            None => self.proofs_from_ledger(verified.size, &due).await,
        };
        let proofs = match proofs {
            Ok(p) => p,
            Err(Problem::Unreachable(why)) => {
                // Not checked yet: try again next round.
                self.pending.extend_from_slice(&due);
                return Err(Problem::Unreachable(why));
            }
            Err(p) => return Err(p),
        };
        let source = if self.tiles.is_some() { "that the log's tiles prove in" } else { "of" };
        for (s, proof) in due.iter().zip(proofs) {
            if quis_tlog::check_record(&proof, verified.size, &verified.root, s.index, &s.leaf_hash).is_err() {
                return Err(Problem::Integrity(
                    format!(
                        "Ledger entry {} as served on the tail is not the entry {source} the signed tree of {} \
                         entries: its stored bytes were altered.",
                        s.index, verified.size
                    ),
                    vec![Evidence { index: s.index, leaf_hash: s.leaf_hash, note: "entry as received".into() }],
                ));
            }
        }
        Ok(())
    }

    async fn proofs_from_ledger(&self, size: u64, due: &[Sample]) -> Result<Vec<Vec<quis_tlog::Hash>>, Problem> {
        let mut client = self.link.client();
        let mut proofs = Vec::with_capacity(due.len());
        for s in due {
            let request = GetInclusionProofRequest { index: s.index, tree_size: size };
            let proof = client
                .get_inclusion_proof(self.link.request(request).map_err(Problem::unreachable)?)
                .await
                .map_err(Problem::unreachable)?
                .into_inner();
            proofs.push(to_hashes(&proof.hashes).ok_or_else(|| {
                Problem::integrity(format!("The inclusion proof of entry {} is malformed.", s.index))
            })?);
        }
        Ok(proofs)
    }
}

/// The inclusion proofs of the sampled entries in the tree of `size`, computed from the log's hash
/// tiles (each tile fetched once per round). A tile that is missing or malformed cannot prove an
/// entry: an integrity failure.
async fn proofs_from_tiles(
    tiles: &TileClient,
    size: u64,
    due: &[Sample],
) -> Result<Vec<Vec<quis_tlog::Hash>>, Problem> {
    let cannot = |index: u64, e: quis_tlog::TlogError| {
        Problem::integrity(format!("The log's tiles cannot prove entry {index} in the tree of {size} entries: {e}."))
    };
    let mut indexes = Vec::new();
    for s in due {
        indexes.extend(quis_tlog::record_proof_indexes(size, s.index).map_err(|e| cannot(s.index, e))?);
    }
    let needed = tile::tiles_for_indexes(size, &indexes).map_err(|e| cannot(0, e))?;
    let fetched = tiles.hash_tiles(&needed).await.map_err(fetch_problem)?;
    let reader = TileHashReader::new(size, &fetched);
    due.iter().map(|s| quis_tlog::prove_record(size, s.index, &reader).map_err(|e| cannot(s.index, e))).collect()
}

/// A tile the signed checkpoint covers that the log does not serve is an integrity failure;
/// anything else that stops a fetch is an outage.
fn fetch_problem(e: quis_tlog::client::FetchError) -> Problem {
    if e.is_missing() {
        Problem::integrity(format!(
            "The log does not serve a tile that a signed checkpoint covers ({e}): its hashes were removed."
        ))
    } else {
        Problem::Unreachable(e.to_string())
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
