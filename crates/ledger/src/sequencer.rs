//! The sequencer: concurrent appends queue here and are written in batches,
//! one transaction each (group commit). A batch's callers get their indices
//! only after the transaction has committed (durable: SQLite with synchronous
//! FULL, PostgreSQL's commit). The new tree size is then published to tailers
//! and to the checkpointer.
use std::collections::HashMap;

use quis_tlog::Hash;
use tokio::sync::{mpsc, oneshot, watch};

use crate::{
    hashes::{TreeError, with_hashes},
    store::{LedgerStore, NewDetail},
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
        tokio::spawn(run(store, size, rx, size_tx, max_batch_entries.max(1)));
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

async fn run(
    store: LedgerStore,
    mut size: u64,
    mut rx: mpsc::Receiver<Batch>,
    size_tx: watch::Sender<u64>,
    max_batch_entries: usize,
) {
    // Hashes the next appends will read (the right edge of the tree), kept between batches.
    let mut cache: HashMap<u64, Hash> = HashMap::new();
    while let Some(first) = rx.recv().await {
        let mut batches = vec![first];
        let mut count = batches[0].entries.len();
        while count < max_batch_entries {
            match rx.try_recv() {
                Ok(b) => {
                    count += b.entries.len();
                    batches.push(b);
                }
                Err(_) => break,
            }
        }
        match write(&store, size, &mut batches, &mut cache).await {
            Ok(new_size) => {
                let mut next = size;
                for b in batches {
                    let indices = (next..next + b.entries.len() as u64).collect();
                    next += b.entries.len() as u64;
                    let _ = b.reply.send(Ok((indices, new_size)));
                }
                size = new_size;
                size_tx.send_replace(size);
            }
            Err(e) => {
                tracing::error!(error = %e, "ledger batch failed; nothing of it was written");
                // The store may hold another writer's entries: reload what we believe.
                cache.clear();
                if let Ok(stored) = store.size().await {
                    size = stored;
                    size_tx.send_replace(size);
                }
                for b in batches {
                    let _ = b.reply.send(Err("the ledger could not store the entries".into()));
                }
            }
        }
        if cache.len() > 65_536 {
            cache.clear();
        }
    }
}

async fn write(
    store: &LedgerStore,
    size: u64,
    batches: &mut [Batch],
    cache: &mut HashMap<u64, Hash>,
) -> Result<u64, TreeError> {
    let mut new_hashes = Vec::new();
    let mut details = Vec::new();
    let mut n = size;
    for b in batches.iter_mut() {
        for (pos, d) in std::mem::take(&mut b.details) {
            details.push((n + pos as u64, d));
        }
        for data in &b.entries {
            let leaf = quis_tlog::leaf_hash(data);
            let hashes = with_hashes(store, cache, |reader| quis_tlog::stored_hashes(n, &leaf, reader)).await?;
            let first = quis_tlog::stored_hash_count(n);
            for (i, h) in hashes.into_iter().enumerate() {
                let idx = first + i as u64;
                cache.insert(idx, h);
                new_hashes.push((idx, h));
            }
            n += 1;
        }
    }
    let entries: Vec<&[u8]> = batches.iter().flat_map(|b| b.entries.iter().map(Vec::as_slice)).collect();
    if let Err(e) = store.append(size, &entries, &new_hashes, &details).await {
        // Hashes computed for entries that were not stored must not be reused.
        for (idx, _) in &new_hashes {
            cache.remove(idx);
        }
        return Err(e.into());
    }
    Ok(n)
}
