//! SQLite's WAL checkpoints, kept out of the sequencer's commits.
//!
//! By default SQLite copies the WAL back into the database file (a checkpoint) inside
//! the commit that takes the WAL past 1,000 pages: one batch in every few hundred
//! waited for that copy and an fsync of the database, which made the acknowledgement
//! tail. The sequencer's connection runs with `wal_autocheckpoint=0`; this task
//! checkpoints (PASSIVE: it never blocks the writer or readers) on a connection of its
//! own, beside the writer.
//!
//! SQLite starts the WAL over only when a write transaction begins after a checkpoint
//! has copied all of it. Under continuous appends a checkpoint running beside the
//! writer never quite catches up, and the WAL would grow without bound. So once the
//! WAL holds more than [`RESET_FRAMES`] pages, the writer is asked to finish the
//! checkpoint itself before its next batch (little is left to copy by then), and that
//! batch starts the WAL over.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use sqlx::{Connection, SqliteConnection, sqlite::SqliteConnectOptions};
use tokio_util::sync::CancellationToken;

/// How often the checkpointer copies the WAL back into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// WAL pages past which the writer finishes a checkpoint itself (16 MiB of 4 KiB pages).
pub(crate) const RESET_FRAMES: i64 = 4096;

/// Frames in the WAL and frames of it copied into the database, after a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WalProgress {
    pub frames: i64,
    pub copied: i64,
}

/// One PASSIVE checkpoint on `conn`.
pub(crate) async fn checkpoint(conn: &mut SqliteConnection) -> Result<WalProgress, sqlx::Error> {
    let (_busy, frames, copied): (i64, i64, i64) =
        sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&mut *conn).await?;
    Ok(WalProgress { frames, copied })
}

/// What the checkpointer and the writer share.
#[derive(Debug)]
pub(crate) struct WalCheckpoints {
    /// Opens the checkpointer's connection (the writer's options: WAL, `synchronous=FULL`).
    options: SqliteConnectOptions,
    /// Set when the WAL should be started over: the writer checkpoints before its next batch.
    pub(crate) reset_wanted: AtomicBool,
    reset_frames: i64,
}

impl WalCheckpoints {
    pub(crate) fn new(options: SqliteConnectOptions, reset_frames: i64) -> Arc<Self> {
        Arc::new(Self { options, reset_wanted: AtomicBool::new(false), reset_frames })
    }

    /// A checkpoint by the checkpointer on `conn`; asks the writer to finish it when the
    /// WAL has grown past the limit (or when it failed: the writer's then keeps the WAL bounded).
    pub(crate) async fn run_once(&self, conn: &mut SqliteConnection) -> Result<WalProgress, sqlx::Error> {
        let progress = checkpoint(conn).await;
        if !matches!(progress, Ok(p) if p.frames <= self.reset_frames) {
            self.reset_wanted.store(true, Ordering::Release);
        }
        progress
    }

    /// Called by the writer before a batch: finishes the checkpoint if asked to.
    pub(crate) async fn before_batch(&self, writer: &mut SqliteConnection) {
        if self.reset_wanted.swap(false, Ordering::AcqRel)
            && let Err(e) = checkpoint(writer).await
        {
            tracing::warn!(error = %e, "WAL checkpoint by the writer failed; retried later");
        }
    }

    /// Checkpoints every [`CHECKPOINT_EVERY`] until `stop`.
    pub(crate) fn spawn(self: &Arc<Self>, stop: CancellationToken) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut conn: Option<SqliteConnection> = None;
            let mut ticker = tokio::time::interval(CHECKPOINT_EVERY);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = ticker.tick() => {}
                }
                if conn.is_none() {
                    match SqliteConnection::connect_with(&this.options).await {
                        Ok(c) => conn = Some(c),
                        Err(e) => {
                            tracing::warn!(error = %e, "WAL checkpointer cannot connect; the writer checkpoints");
                            this.reset_wanted.store(true, Ordering::Release);
                            continue;
                        }
                    }
                }
                let Some(c) = conn.as_mut() else { continue };
                if let Err(e) = this.run_once(c).await {
                    tracing::warn!(error = %e, "WAL checkpoint failed; the writer checkpoints");
                    conn = None;
                }
            }
        });
    }
}
