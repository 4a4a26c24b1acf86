//! What a replica decides on: the active policy set and the in-memory entity
//! index, kept up to date from the store's change feed.
//!
//! "A change takes effect on the next check" is kept literally: each check
//! waits for a read of the feed's head that *started after the check arrived*,
//! and for the changes up to that head to be applied. Concurrent checks share
//! one such read (single flight): a round first lets the tasks that are ready
//! run (their checks join it), notes how many checks have arrived, reads the
//! head (one indexed one-row `SELECT`), applies what is missing, and releases
//! every check it covers. A check therefore costs at most two rounds of
//! waiting, and the store sees one cheap query per round, not per check.
use std::sync::{
    Arc,
    atomic::{AtomicI64, AtomicU64, Ordering},
};

use arc_swap::ArcSwap;
use quis_policy_engine::{EntityIndex, PolicySet, model::EntityChange};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::{
    entities,
    error::PolicyError,
    store::{Change, POLICY_KIND, Store, StoredEntity},
};

/// The policy set in force and the stored version it came from.
pub struct ActivePolicy {
    pub set: PolicySet,
    pub version: i64,
}

/// Changes fetched per query while catching up.
const PAGE: i64 = 10_000;
/// Entities handed to a loading worker at a time.
const LOAD_CHUNK: usize = 4_096;
/// Threads decoding entities and building their Cedar form at start, while the store streams them.
const LOAD_WORKERS: usize = 2;

/// Every stored entity in a new index: (index, entities read, entities unusable).
async fn load_index(store: &Store) -> Result<(EntityIndex, u64, u64), PolicyError> {
    let index = Arc::new(EntityIndex::new());
    let (rows, chunks) = tokio::sync::mpsc::channel::<Vec<StoredEntity>>(2 * LOAD_WORKERS);
    let chunks = Arc::new(std::sync::Mutex::new(chunks));
    let workers: Vec<_> = (0..LOAD_WORKERS)
        .map(|_| {
            let (index, chunks) = (Arc::clone(&index), Arc::clone(&chunks));
            tokio::task::spawn_blocking(move || {
                let mut bad = 0u64;
                loop {
                    let next = chunks.lock().map(|mut c| c.blocking_recv()).unwrap_or(None);
                    let Some(chunk) = next else { return bad };
                    for row in chunk {
                        let applied = entities::decode(&row.body).and_then(|(_, entity)| {
                            index.apply(EntityChange::Upsert(entity)).map_err(|e| e.to_string())
                        });
                        if let Err(e) = applied {
                            // Only this service writes the table; an unusable row is skipped, loudly.
                            bad += 1;
                            tracing::error!(kind = row.kind, id = row.id, error = %e, "stored entity is unusable; skipped");
                        }
                    }
                }
            })
        })
        .collect();
    let count = store.load_entities(LOAD_CHUNK, rows).await;
    let mut bad = 0;
    for worker in workers {
        bad += worker.await.map_err(|e| PolicyError::Corrupt(format!("an entity loader failed: {e}")))?;
    }
    let count = count?;
    let index =
        Arc::try_unwrap(index).map_err(|_| PolicyError::Corrupt("the entity loaders still hold the index".into()))?;
    Ok((index, count, bad))
}

#[derive(Clone, Copy, Debug, Default)]
struct Round {
    /// Every check with a ticket up to this one is covered by the round.
    covered: u64,
    ok: bool,
}

/// The replica's view of the store.
pub struct Live {
    store: Store,
    pub index: EntityIndex,
    policy: ArcSwap<Option<Arc<ActivePolicy>>>,
    /// The feed position applied to `index` and `policy`: the entity version of decisions.
    applied: AtomicI64,
    arrivals: AtomicU64,
    wake: Notify,
    rounds: watch::Sender<Round>,
    /// Serializes catching up (the syncer's rounds and writes' own catch-up).
    apply_lock: tokio::sync::Mutex<()>,
}

impl Live {
    /// Loads every entity and the active policy set from the store.
    pub async fn load(store: Store) -> Result<Arc<Self>, PolicyError> {
        let started = std::time::Instant::now();
        let head = store.head().await?;
        let (index, count, bad) = load_index(&store).await?;
        let live = Arc::new(Self {
            store,
            index,
            policy: ArcSwap::from_pointee(None),
            applied: AtomicI64::new(head),
            arrivals: AtomicU64::new(0),
            wake: Notify::new(),
            rounds: watch::Sender::new(Round::default()),
            apply_lock: tokio::sync::Mutex::new(()),
        });
        if let Some(active) = live.store.active_version().await? {
            live.activate(active.version).await?;
        }
        live.catch_up().await?;
        tracing::info!(
            entities = count,
            unreadable = bad,
            head,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "policy entities loaded"
        );
        Ok(live)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The active policy set, if one is approved.
    pub fn policy(&self) -> Option<Arc<ActivePolicy>> {
        (**self.policy.load()).clone()
    }

    /// The feed position decisions are made on.
    pub fn entity_version(&self) -> i64 {
        self.applied.load(Ordering::Acquire)
    }

    /// Waits until every change committed before this call is applied.
    pub async fn fresh(&self) -> Result<(), PolicyError> {
        let ticket = self.arrivals.fetch_add(1, Ordering::AcqRel) + 1;
        let mut rounds = self.rounds.subscribe();
        self.wake.notify_one();
        let round = *rounds
            .wait_for(|r| r.covered >= ticket)
            .await
            .map_err(|_| PolicyError::StoreUnavailable("the change feed stopped".into()))?;
        if round.ok { Ok(()) } else { Err(PolicyError::StoreUnavailable("the change feed could not be read".into())) }
    }

    /// Runs the rounds until `stop`; with nothing waiting, polls every `idle`.
    pub fn spawn_syncer(self: &Arc<Self>, idle: std::time::Duration, stop: CancellationToken) {
        let live = Arc::clone(self);
        tokio::spawn(async move {
            let mut covered = 0u64;
            let mut failing = false;
            loop {
                if live.arrivals.load(Ordering::Acquire) == covered {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = live.wake.notified() => continue,
                        _ = tokio::time::sleep(idle) => {}
                    }
                }
                // Let the tasks that are ready run first: the checks they bring share this round.
                tokio::task::yield_now().await;
                // Read before the head read below starts: every check up to `target` arrived before it.
                let target = live.arrivals.load(Ordering::Acquire);
                let result = live.catch_up().await;
                match &result {
                    Err(e) if !failing => {
                        tracing::warn!(error = %e, "change feed unreadable; checks fail closed");
                        failing = true;
                    }
                    Ok(()) if failing => {
                        tracing::info!("change feed readable again");
                        failing = false;
                    }
                    _ => {}
                }
                covered = target;
                live.rounds.send_replace(Round { covered, ok: result.is_ok() });
            }
            // Release waiting checks: they fail closed.
            live.rounds.send_replace(Round { covered: u64::MAX, ok: false });
        });
    }

    /// Reads the head and applies every change up to it.
    pub async fn catch_up(&self) -> Result<(), PolicyError> {
        let head = self.store.head().await?;
        if head <= self.applied.load(Ordering::Acquire) {
            return Ok(());
        }
        let _guard = self.apply_lock.lock().await;
        let mut applied = self.applied.load(Ordering::Acquire);
        while applied < head {
            let changes = self.store.changes_since(applied, PAGE).await?;
            let done = (changes.len() as i64) < PAGE;
            for change in changes {
                let seq = change.seq;
                self.apply(change).await?;
                applied = seq;
                self.applied.store(applied, Ordering::Release);
            }
            if done {
                break;
            }
        }
        // Sequence numbers of unchanged rows in a batch are never used: the head may be past the last change.
        self.applied.fetch_max(head, Ordering::AcqRel);
        Ok(())
    }

    async fn apply(&self, change: Change) -> Result<(), PolicyError> {
        if change.kind == POLICY_KIND {
            let version =
                change.id.parse().map_err(|_| PolicyError::Corrupt(format!("policy change {}", change.id)))?;
            return self.activate(version).await;
        }
        let applied = match change.body {
            Some(body) => entities::decode(&body)
                .and_then(|(_, entity)| self.index.apply(EntityChange::Upsert(entity)).map_err(|e| e.to_string())),
            None => match (change.kind.parse(), quis_policy_engine::model::Id::new(change.id.as_str())) {
                (Ok(kind), Ok(id)) => self.index.apply(EntityChange::Delete(kind, id)).map_err(|e| e.to_string()),
                _ => Err("unreadable deletion".to_string()),
            },
        };
        if let Err(e) = applied {
            tracing::error!(seq = change.seq, error = %e, "stored change is unusable; skipped");
        }
        Ok(())
    }

    async fn activate(&self, version: i64) -> Result<(), PolicyError> {
        let row = self
            .store
            .version(version)
            .await?
            .ok_or_else(|| PolicyError::Corrupt(format!("policySets/{version} is announced but missing")))?;
        // Only validated sets are stored; a set that no longer compiles (a newer schema) keeps the previous one.
        match PolicySet::compile(&row.text) {
            Ok(set) => {
                self.policy.store(Arc::new(Some(Arc::new(ActivePolicy { set, version }))));
                tracing::info!(version, hash = %row.hash, "policy set in force");
            }
            Err(errors) => {
                tracing::error!(
                    version,
                    errors = errors.len(),
                    "approved policy set does not compile; keeping the previous one"
                )
            }
        }
        Ok(())
    }
}
