//! The ledger consumer: follows `TailEvents` from the persisted cursor,
//! decodes each entry from its stored bytes, enriches the accesses (policy's
//! entities, refreshed from policy's change feed whenever the ledger shows an
//! admin event, so an access is judged on the entities it was decided on; its
//! subject opened through the ledger's event details), runs the detections,
//! and commits the new cursor in the same transaction as what the batch
//! produced. After any failure it reloads its state from the store and
//! reconnects with a jittered exponential backoff, so that the store is the
//! only truth.
use std::time::Duration;

use futures::FutureExt;
use quis_proto::ledger::{Action, Decision, TailEventsRequest, event::Kind};
use rand::Rng;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::{
    access_index::AccessSample,
    config::SentinelConfig,
    detect::{Engine, Evidence, NewAlert},
    enrich,
    entities::{EntityView, PolicyLink},
    event::{self, EnrichedAccess},
    link::LedgerLink,
    store::{AlertRow, SentinelStore, StoreError, now_ms},
};

/// An entry received on the tail, to check against an inclusion proof.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    pub index: u64,
    pub leaf_hash: [u8; 32],
}

#[derive(Debug, thiserror::Error)]
enum FollowError {
    #[error("ledger: {0}")]
    Rpc(#[from] tonic::Status),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("the ledger ended the stream")]
    Ended,
    #[error("the ledger sent entry {got} where {expected} was due")]
    Gap { expected: u64, got: u64 },
}

/// Where the consumer reads from and what it feeds.
pub struct Links {
    pub ledger: LedgerLink,
    /// Policy, for the entities; without it the entity detections do not run.
    pub policy: Option<PolicyLink>,
    /// Entries to check against the verified tree.
    pub samples: mpsc::Sender<Sample>,
    /// Accesses to look for in the vault's access index, if it is checked.
    pub accesses: Option<mpsc::Sender<AccessSample>>,
}

/// See the module documentation.
pub struct Consumer {
    link: LedgerLink,
    store: SentinelStore,
    config: SentinelConfig,
    engine: Engine,
    cursor: u64,
    alerts: broadcast::Sender<AlertRow>,
    samples: mpsc::Sender<Sample>,
    /// The last gap reported, so that a persistent gap is reported once.
    gap_reported: Option<(u64, u64)>,
    policy: Option<PolicyLink>,
    accesses: Option<mpsc::Sender<AccessSample>>,
    entities: EntityView,
    /// An admin event was seen since the entities were last refreshed.
    entities_stale: bool,
    /// The entities were read at least once (before that, accesses are not judged on them).
    entities_loaded: bool,
}

impl Consumer {
    /// A consumer resuming from the store.
    pub async fn new(
        links: Links,
        store: SentinelStore,
        config: SentinelConfig,
        alerts: broadcast::Sender<AlertRow>,
    ) -> Result<Self, StoreError> {
        let engine = Engine::new(config.detections.clone());
        let mut consumer = Self {
            link: links.ledger,
            store,
            config,
            engine,
            cursor: 0,
            alerts,
            samples: links.samples,
            gap_reported: None,
            policy: links.policy,
            accesses: links.accesses,
            entities: EntityView::default(),
            entities_stale: true,
            entities_loaded: false,
        };
        consumer.reload().await?;
        Ok(consumer)
    }

    async fn reload(&mut self) -> Result<(), StoreError> {
        let resume = self.store.resume().await?;
        self.engine = Engine::restore(self.config.detections.clone(), resume.actors)?;
        self.cursor = resume.cursor;
        Ok(())
    }

    /// Follows the ledger until `stop`.
    pub async fn run(mut self, stop: CancellationToken) {
        let min = Duration::from_millis(self.config.reconnect_min_ms);
        let max = Duration::from_millis(self.config.reconnect_max_ms);
        let mut backoff = min;
        loop {
            match self.follow(&stop, &mut backoff, min).await {
                Ok(()) => return,
                Err(e) => tracing::warn!(error = %e, cursor = self.cursor, "ledger tail interrupted"),
            }
            // Whatever the batch did in memory, the store is the truth.
            if let Err(e) = self.reload().await {
                tracing::error!(error = %e, "reloading sentinel state failed");
            }
            let jitter = rand::thread_rng().gen_range(0..=backoff.as_millis() as u64 / 2);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff + Duration::from_millis(jitter)) => {}
            }
            backoff = (backoff * 2).min(max);
        }
    }

    async fn follow(
        &mut self,
        stop: &CancellationToken,
        backoff: &mut Duration,
        min: Duration,
    ) -> Result<(), FollowError> {
        let request = self.link.request(TailEventsRequest { start_index: self.cursor })?;
        let mut stream = self.link.client().tail_events(request).await?.into_inner();
        loop {
            let first = tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                m = stream.message() => m?.ok_or(FollowError::Ended)?,
            };
            *backoff = min;
            let mut batch = vec![first];
            let mut failure = None;
            // Whatever else has already arrived joins the batch: one transaction for many entries.
            while batch.len() < self.config.batch_max {
                match stream.message().now_or_never() {
                    Some(Ok(Some(m))) => batch.push(m),
                    Some(Ok(None)) => {
                        failure = Some(FollowError::Ended);
                        break;
                    }
                    Some(Err(e)) => {
                        failure = Some(e.into());
                        break;
                    }
                    None => break,
                }
            }
            let entries = batch.into_iter().filter_map(|m| m.entry).map(|e| (e.index, e.data)).collect();
            self.process(entries).await?;
            if let Some(e) = failure {
                return Err(e);
            }
        }
    }

    /// Processes entries (in the order received) and commits them with what they produced.
    async fn process(&mut self, entries: Vec<(u64, Vec<u8>)>) -> Result<(), FollowError> {
        let from = self.cursor;
        let mut next = from;
        let mut accesses = Vec::with_capacity(entries.len());
        // Accesses since the last admin event: enriched on the entities as they were then.
        let mut pending = Vec::new();
        let mut integrity = Vec::new();
        let mut gap = None;
        let severity = self.config.detections.ledger_integrity.severity;
        for (index, data) in entries {
            if index != next {
                gap = Some(FollowError::Gap { expected: next, got: index });
                if self.gap_reported != Some((next, index)) {
                    self.gap_reported = Some((next, index));
                    integrity.push(NewAlert {
                        detection: "ledger-integrity",
                        severity,
                        explanation: format!(
                            "The ledger's tail skipped from entry {next} to entry {index}: entries are missing or reordered."
                        ),
                        evidence: Vec::new(),
                        actor: "ledger".into(),
                        event_time_ms: now_ms(),
                    });
                }
                break;
            }
            match event::decode(index, &data) {
                Ok(observed) => {
                    if index % self.config.sample_every == 0 {
                        // A full queue drops the sample: the monitor checks what it can keep up with.
                        let _ = self.samples.try_send(Sample { index, leaf_hash: observed.leaf_hash });
                    }
                    if matches!(observed.event, Kind::Admin(_)) {
                        self.enrich(&mut pending).await?;
                        accesses.append(&mut pending);
                        self.entities_stale = true;
                    }
                    pending.extend(EnrichedAccess::from_observed(&observed));
                }
                Err(e) => integrity.push(NewAlert {
                    detection: "ledger-integrity",
                    severity,
                    explanation: format!(
                        "Ledger entry {index} is not a well-formed entry ({}); the ledger validates every entry it \
                         appends, so its stored bytes were altered.",
                        e.why
                    ),
                    evidence: vec![Evidence { index, leaf_hash: e.leaf_hash, note: "undecodable entry".into() }],
                    actor: "ledger".into(),
                    event_time_ms: now_ms(),
                }),
            }
            next = index + 1;
        }
        self.enrich(&mut pending).await?;
        accesses.append(&mut pending);
        let mut out = self.engine.process(&accesses);
        out.alerts.extend(integrity);
        if next > from || !out.alerts.is_empty() {
            let stored = self.store.commit_batch(from, next, &out).await?;
            self.cursor = next;
            for alert in stored {
                // No watcher is not an error.
                let _ = self.alerts.send(alert);
            }
        }
        match gap {
            Some(g) => Err(g),
            None => Ok(()),
        }
    }

    /// Sends a sampled allowed access to a known subject to be looked for in the vault's index.
    fn sample_for_access_index(&self, e: &EnrichedAccess) {
        let (Some(tx), Some(subject)) = (&self.accesses, &e.subject_id) else { return };
        let indexed = matches!(e.action, Action::Read | Action::Export | Action::Update | Action::RecordAccess);
        if indexed && e.decision == Decision::Allow && e.index.is_multiple_of(self.config.sample_every) {
            let sample =
                AccessSample { index: e.index, leaf_hash: e.leaf_hash, subject: subject.clone(), time_ms: e.time_ms };
            // A full queue drops the sample, as for the tree samples.
            let _ = tx.try_send(sample);
        }
    }

    /// Brings the entities up to date if an admin event was seen, opens the accesses'
    /// commitments and enriches them. Policy or the details being unreachable does not stop
    /// detection: the accesses are judged on the entities last read (or, before any, not on
    /// entities at all), and the refresh is tried again with the next accesses.
    async fn enrich(&mut self, accesses: &mut [EnrichedAccess]) -> Result<(), FollowError> {
        let Some(policy) = &self.policy else { return Ok(()) };
        if accesses.is_empty() {
            return Ok(());
        }
        if self.entities_stale {
            match policy.refresh(&mut self.entities).await {
                Ok(_) => (self.entities_stale, self.entities_loaded) = (false, true),
                Err(e) => tracing::warn!(code = ?e.code(), message = e.message(), "policy's entities not refreshed"),
            }
        }
        if !self.entities_loaded {
            return Ok(());
        }
        let details = enrich::open_details(&self.link, accesses).await?;
        let purposes = &self.config.detections.unexplained_access.explaining_purposes;
        for e in accesses.iter_mut() {
            enrich::enrich(&self.entities, &details, purposes, e);
            self.sample_for_access_index(e);
        }
        Ok(())
    }
}
