//! The per-subject access index, written in groups and off the read's path.
//! SQLite has one writer: with one transaction per access, concurrent reads
//! queued for its lock (busy waits and one fsync each), which capped guarded
//! reads near a thousand a second; so accesses share transactions, as the
//! ledger's appends do. A read only queues its rows (waiting while the queue is
//! full): the index is secondary, rebuilt from the ledger, and a history read
//! first waits for what this replica has queued ([`IndexWriter::flush`]).
//! Waiting for each commit put a store's write stall into the read's latency
//! (docs/benchmarks.md, "Vault").
use quis_vault::store::{IndexedAccess, Store};

use crate::coalesce::Coalescer;

/// Most accesses in one transaction, and most queued.
const MAX_GROUP: usize = 256;

/// The handle of the writing task; cheap to clone.
#[derive(Clone, Debug)]
pub struct IndexWriter {
    writes: Coalescer<Vec<IndexedAccess>, Result<(), String>>,
}

impl IndexWriter {
    /// Starts the writing task on the current runtime: one transaction at a time.
    pub fn start(store: Store) -> Self {
        let writes = Coalescer::start(MAX_GROUP, move |accesses: Vec<Vec<IndexedAccess>>| {
            let store = store.clone();
            async move {
                let n = accesses.len();
                let rows: Vec<IndexedAccess> = accesses.into_iter().flatten().collect();
                if rows.is_empty() {
                    return vec![Ok(()); n];
                }
                let result = crate::service::timed("access_index_commit", store.add_accesses(&rows))
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string());
                if let Err(e) = &result {
                    let (first, last) = (rows[0].ledger_index, rows[rows.len() - 1].ledger_index);
                    tracing::warn!(first, last, error = %e, "access index not written; a rebuild from the ledger restores it");
                }
                vec![result; n]
            }
        });
        Self { writes }
    }

    /// Queues `rows` for the next transaction; waits only while the queue is full.
    pub async fn add(&self, rows: Vec<IndexedAccess>) -> Result<(), String> {
        if rows.is_empty() || self.writes.submit(rows).await {
            Ok(())
        } else {
            Err("the access index writer has stopped".to_string())
        }
    }

    /// Waits until every row this replica queued before the call is committed
    /// (or its failure logged).
    pub async fn flush(&self) -> Result<(), String> {
        self.writes.call(Vec::new()).await.unwrap_or_else(|| Err("the access index writer has stopped".to_string()))
    }
}

#[cfg(test)]
mod tests {
    use quis_core::db::Db;

    use super::*;

    fn access(subject: &str, ledger_index: u64) -> IndexedAccess {
        IndexedAccess { subject_id: subject.into(), ledger_index, visible_from_us: 0, salt: vec![7; 16] }
    }

    #[tokio::test]
    async fn a_flush_returns_once_every_row_queued_before_it_is_committed() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("vault.db").display());
        let store = Store::open(Db::connect(&url).await.expect("db")).await.expect("store");
        let writer = IndexWriter::start(store.clone());
        for i in 0..600 {
            writer.add(vec![access("s-1", i), access("s-2", i)]).await.expect("queued");
        }
        writer.flush().await.expect("flushed");
        let listed = store.accesses("s-1", 0, -1, 1_000).await.expect("list");
        assert_eq!(listed.iter().map(|a| a.ledger_index).collect::<Vec<_>>(), (0..600).collect::<Vec<_>>());
        assert_eq!(store.accesses("s-2", 0, -1, 1_000).await.expect("list").len(), 600);
        // A row already indexed (a rebuild raced the writer) is kept, not doubled, and fails nothing.
        writer.add(vec![access("s-1", 5)]).await.expect("queued");
        writer.flush().await.expect("flushed");
        assert_eq!(store.accesses("s-1", 0, -1, 1_000).await.expect("list").len(), 600);
    }
}
