//! The per-subject access index, written in groups. SQLite has one writer: with
//! one transaction per access, concurrent reads queued for its lock (busy waits
//! and one fsync each), which capped guarded reads near a thousand a second.
//! Each access still waits until its rows are committed, but the accesses that
//! arrive meanwhile share one transaction, as the ledger's appends do.
use quis_vault::store::{IndexedAccess, Store};

use crate::coalesce::Coalescer;

/// Most accesses in one transaction.
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
                let result = store.add_accesses(&rows).await.map(|_| ()).map_err(|e| e.to_string());
                vec![result; n]
            }
        });
        Self { writes }
    }

    /// Indexes `rows`, returning once they are committed.
    pub async fn add(&self, rows: Vec<IndexedAccess>) -> Result<(), String> {
        if rows.is_empty() {
            return Ok(());
        }
        self.writes.call(rows).await.unwrap_or_else(|| Err("the access index writer has stopped".to_string()))
    }
}
