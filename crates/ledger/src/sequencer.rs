//! The sequencer: concurrent appends queue here and are written in batches,
//! one transaction each (group commit). A batch's callers get their indices
//! only after the transaction has committed (durable: SQLite with synchronous
//! FULL, PostgreSQL's commit). The new tree size is then published to tailers
//! and to the checkpointer.
//!
//! Pipelined: while one batch commits, the appends arriving meanwhile are
//! hashed into the next one, which is handed to the store as soon as the
//! commit returns. The tree's right edge (the roots of its complete subtrees)
//! is kept in memory, so hashing reads nothing from the store.
use std::{future::Future, pin::Pin};

use quis_tlog::{HASH_SIZE, Hash};
use tokio::sync::{mpsc, oneshot, watch};

use crate::{
    hashes::{TreeError, with_hashes},
    store::{LedgerStore, NewDetail, NewEntries, StoreError},
};

/// One caller's entries (encoded `LedgerEntry`s) with their encrypted details,
/// each detail naming the position of its entry in `entries`.
pub struct Batch {
    pub entries: Vec<Vec<u8>>,
    pub details: Vec<(usize, NewDetail)>,
    /// The batch's indices and the tree size after the commit that made them durable.
    pub reply: oneshot::Sender<Result<(Vec<u64>, u64), String>>,
}

/// The handle callers append through.
#[derive(Clone)]
pub struct Sequencer {
    queue: mpsc::Sender<Batch>,
    size: watch::Receiver<u64>,
}

impl Sequencer {
    /// Starts the sequencing task over `store`, whose current size is `size`.
    pub fn start(store: LedgerStore, size: u64, max_batch_entries: usize) -> Self {
        let (queue, rx) = mpsc::channel(4096);
        let (size_tx, size_rx) = watch::channel(size);
        tokio::spawn(run(store, rx, size_tx, max_batch_entries.max(1)));
        Self { queue, size: size_rx }
    }

    /// Appends entries; resolves with their indices once they are durable.
    pub async fn append(
        &self,
        entries: Vec<Vec<u8>>,
        details: Vec<(usize, NewDetail)>,
    ) -> Result<(Vec<u64>, u64), String> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Batch { entries, details, reply })
            .await
            .map_err(|_| "the sequencer has stopped".to_string())?;
        answer.await.map_err(|_| "the sequencer has stopped".to_string())?
    }

    /// The durable tree size, updated after each commit.
    pub fn size(&self) -> watch::Receiver<u64> {
        self.size.clone()
    }
}

/// The right edge of a tree: the roots of its complete subtrees, largest
/// first (one per 1 bit of the size). Enough to compute the stored hashes of
/// every following entry.
pub struct Frontier {
    size: u64,
    roots: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the stored tree of `size` entries.
    pub async fn load(store: &LedgerStore, size: u64) -> Result<Self, TreeError> {
        let indexes = quis_tlog::tree_hash_indexes(size);
        let mut cache = Default::default();
        let roots = with_hashes(store, &mut cache, |r| quis_tlog::HashReader::read_hashes(r, &indexes)).await?;
        Ok(Self { size, roots })
    }

    /// Appends the entry with leaf hash `leaf` (entry number `self.size`) and
    /// writes the hashes to store for it to `out`, in storage order: the
    /// leaf, then the node each trailing 1 bit of its index completes.
    pub fn push(&mut self, leaf: Hash, out: &mut Vec<u8>) {
        let mut h = leaf;
        out.extend_from_slice(&h);
        for _ in 0..self.size.trailing_ones() {
            // A size with t trailing 1 bits has at least t roots; the smallest are last.
            let Some(left) = self.roots.pop() else { break };
            h = quis_tlog::node_hash(&left, &h);
            out.extend_from_slice(&h);
        }
        self.roots.push(h);
        self.size += 1;
    }
}

/// Appends gathered for the next transaction, hashed as they arrive.
#[derive(Default)]
struct Pending {
    batches: Vec<Batch>,
    entries: usize,
    /// The stored hashes of the entries, concatenated (see `NewEntries::hashes`).
    hashes: Vec<u8>,
}

type Commit = Pin<Box<dyn Future<Output = (Pending, u64, Result<(), StoreError>)> + Send>>;

/// Writes `pending` as entries `old_size..` in one transaction.
fn commit(store: LedgerStore, old_size: u64, mut pending: Pending) -> Commit {
    Box::pin(async move {
        let mut details = Vec::new();
        let mut data = Vec::with_capacity(pending.entries);
        let mut n = old_size;
        for b in &mut pending.batches {
            details.extend(std::mem::take(&mut b.details).into_iter().map(|(pos, d)| (n + pos as u64, d)));
            data.extend(b.entries.iter().map(Vec::as_slice));
            n += b.entries.len() as u64;
        }
        let new = NewEntries { old_size, data: &data, hashes: &pending.hashes, details: &details };
        let result = store.append(&new).await;
        drop(data);
        (pending, old_size, result)
    })
}

async fn run(store: LedgerStore, mut rx: mpsc::Receiver<Batch>, size_tx: watch::Sender<u64>, max_batch_entries: usize) {
    // The durable size, and the frontier after the commit in flight and the pending appends.
    let mut durable = *size_tx.borrow();
    let mut frontier: Option<Frontier> = None;
    let mut pending = Pending::default();
    let mut in_flight: Option<Commit> = None;
    let mut open = true;
    while open || in_flight.is_some() || !pending.batches.is_empty() {
        tokio::select! {
            biased;
            (done, old_size, result) = finished(&mut in_flight), if in_flight.is_some() => {
                in_flight = None;
                let new_size = old_size + done.entries as u64;
                match result {
                    Ok(()) => {
                        let mut next = old_size;
                        for b in done.batches {
                            let count = b.entries.len() as u64;
                            let _ = b.reply.send(Ok(((next..next + count).collect(), new_size)));
                            next += count;
                        }
                        durable = new_size;
                        size_tx.send_replace(durable);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "ledger batch failed; nothing of it was written");
                        for b in done.batches {
                            let _ = b.reply.send(Err("the ledger could not store the entries".into()));
                        }
                        // The store may hold another writer's entries: start again from what it holds,
                        // and hash the pending appends anew on that.
                        frontier = None;
                        if let Ok(stored) = store.size().await {
                            durable = stored;
                            size_tx.send_replace(durable);
                        }
                        let stale = std::mem::take(&mut pending);
                        for b in stale.batches {
                            absorb(&store, durable, &mut frontier, &mut pending, b).await;
                        }
                    }
                }
            }
            batch = rx.recv(), if open && pending.entries < max_batch_entries => match batch {
                // Without a frontier nothing is in flight or pending: the tree is the durable one.
                Some(b) => absorb(&store, durable, &mut frontier, &mut pending, b).await,
                None => open = false,
            },
        }
        if in_flight.is_none() && !pending.batches.is_empty() {
            in_flight = Some(commit(store.clone(), durable, std::mem::take(&mut pending)));
        }
    }
}

/// The commit in flight's outcome (only polled when there is one).
async fn finished(in_flight: &mut Option<Commit>) -> (Pending, u64, Result<(), StoreError>) {
    match in_flight {
        Some(commit) => commit.await,
        None => std::future::pending().await,
    }
}

/// Hashes `b` into `pending`, loading the frontier of the stored tree of
/// `size` entries first if there is none; a batch that cannot be hashed is failed.
async fn absorb(store: &LedgerStore, size: u64, frontier: &mut Option<Frontier>, pending: &mut Pending, b: Batch) {
    if frontier.is_none() {
        match Frontier::load(store, size).await {
            Ok(f) => *frontier = Some(f),
            Err(e) => {
                tracing::error!(error = %e, "reading the tree's right edge failed");
                let _ = b.reply.send(Err("the ledger could not store the entries".into()));
                return;
            }
        }
    }
    let Some(f) = frontier.as_mut() else { return };
    pending.hashes.reserve(b.entries.len() * 2 * HASH_SIZE);
    for data in &b.entries {
        f.push(quis_tlog::leaf_hash(data), &mut pending.hashes);
    }
    pending.entries += b.entries.len();
    pending.batches.push(b);
}

#[cfg(test)]
mod tests {
    use quis_tlog::{HashReader, MemoryHashes};

    use super::*;

    #[test]
    fn the_frontier_stores_the_hashes_of_the_reference_layout() {
        let mut reference = MemoryHashes::new();
        let mut frontier = Frontier { size: 0, roots: Vec::new() };
        for n in 0..3000u64 {
            let data = n.to_le_bytes();
            let first = quis_tlog::stored_hash_count(n);
            reference.append_record(&data).expect("append");
            let mut out = Vec::new();
            frontier.push(quis_tlog::leaf_hash(&data), &mut out);
            let want: Vec<u8> = reference
                .read_hashes(&(first..quis_tlog::stored_hash_count(n + 1)).collect::<Vec<_>>())
                .expect("reference")
                .concat();
            assert_eq!(out, want, "entry {n}");
            assert_eq!(frontier.roots.len(), (n + 1).count_ones() as usize);
        }
    }
}
