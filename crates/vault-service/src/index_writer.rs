//! The per-subject access index, written in groups. SQLite has one writer: with
//! one transaction per access, concurrent reads queued for its lock (busy waits
//! and one fsync each), which capped guarded reads near a thousand a second.
//! Each access still waits until its rows are committed, but the accesses that
//! arrive meanwhile share one transaction, as the ledger's appends do.
use quis_vault::store::{IndexedAccess, Store};
use tokio::sync::{mpsc, oneshot};

/// Most rows in one transaction.
const MAX_GROUP_ROWS: usize = 1000;

type Job = (Vec<IndexedAccess>, oneshot::Sender<Result<(), String>>);

/// The handle of the writing task; cheap to clone.
#[derive(Clone, Debug)]
pub struct IndexWriter {
    jobs: mpsc::Sender<Job>,
}

impl IndexWriter {
    /// Starts the writing task on the current runtime.
    pub fn start(store: Store) -> Self {
        let (jobs, mut queue) = mpsc::channel::<Job>(MAX_GROUP_ROWS);
        tokio::spawn(async move {
            while let Some(first) = queue.recv().await {
                let (mut rows, mut replies) = (first.0, vec![first.1]);
                while rows.len() < MAX_GROUP_ROWS
                    && let Ok((more, reply)) = queue.try_recv()
                {
                    rows.extend(more);
                    replies.push(reply);
                }
                let result = store.add_accesses(&rows).await.map(|_| ()).map_err(|e| e.to_string());
                for reply in replies {
                    let _ = reply.send(result.clone());
                }
            }
        });
        Self { jobs }
    }

    /// Indexes `rows`, returning once they are committed.
    pub async fn add(&self, rows: Vec<IndexedAccess>) -> Result<(), String> {
        if rows.is_empty() {
            return Ok(());
        }
        let stopped = || "the access index writer has stopped".to_string();
        let (reply, done) = oneshot::channel();
        self.jobs.send((rows, reply)).await.map_err(|_| stopped())?;
        done.await.map_err(|_| stopped())?
    }
}
