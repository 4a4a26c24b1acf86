//! The ledger's storage, on SQLite (the embedded default) or PostgreSQL:
//! entries exactly as hashed, every node hash of the tree stored once (so a
//! proof or a tile costs O(log n) reads), the signed checkpoints, and the
//! encrypted event details. One transaction per sequenced batch.
use std::collections::HashMap;

use quis_core::{db::Db, on_pool};
use quis_tlog::Hash;

const SCHEMA_SQLITE: &str = "
CREATE TABLE IF NOT EXISTS ledger_state (id INTEGER PRIMARY KEY CHECK (id = 1), size BIGINT NOT NULL);
INSERT OR IGNORE INTO ledger_state (id, size) VALUES (1, 0);
CREATE TABLE IF NOT EXISTS ledger_entries (idx BIGINT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS ledger_hashes (idx BIGINT PRIMARY KEY, hash BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS ledger_checkpoints (
    size BIGINT PRIMARY KEY, note TEXT NOT NULL, witnessed BOOLEAN NOT NULL, created_at_ms BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS ledger_details (
    digest BLOB PRIMARY KEY, entry_idx BIGINT NOT NULL, nonce BLOB NOT NULL, ciphertext BLOB NOT NULL)";

const SCHEMA_POSTGRES: &str = "
CREATE TABLE IF NOT EXISTS ledger_state (id INTEGER PRIMARY KEY CHECK (id = 1), size BIGINT NOT NULL);
INSERT INTO ledger_state (id, size) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
CREATE TABLE IF NOT EXISTS ledger_entries (idx BIGINT PRIMARY KEY, data BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS ledger_hashes (idx BIGINT PRIMARY KEY, hash BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS ledger_checkpoints (
    size BIGINT PRIMARY KEY, note TEXT NOT NULL, witnessed BOOLEAN NOT NULL, created_at_ms BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS ledger_details (
    digest BYTEA PRIMARY KEY, entry_idx BIGINT NOT NULL, nonce BYTEA NOT NULL, ciphertext BYTEA NOT NULL)";

/// Rows per multi-row INSERT (SQLite allows 32,766 bound values per statement).
const ROWS_PER_STATEMENT: usize = 1000;

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
    #[error("the stored tree size is {found}, expected {expected}: another sequencer wrote to this log")]
    Conflict { expected: u64, found: u64 },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// A new entry with its details, ready to store.
pub struct NewDetail {
    pub digest: [u8; 32],
    pub nonce: [u8; 12],
    pub ciphertext: Vec<u8>,
}

/// A stored checkpoint.
#[derive(Clone, Debug)]
pub struct StoredCheckpoint {
    pub size: u64,
    pub note: String,
    pub witnessed: bool,
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct LedgerStore {
    db: Db,
}

fn placeholders(from: usize, count: usize, per_row: usize) -> String {
    (0..count)
        .map(|r| {
            let cols: Vec<String> = (0..per_row).map(|c| format!("${}", from + r * per_row + c)).collect();
            format!("({})", cols.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl LedgerStore {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let db = Db::connect(url).await?;
        db.migrate(SCHEMA_SQLITE, SCHEMA_POSTGRES).await?;
        Ok(Self { db })
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The number of entries durably stored.
    pub async fn size(&self) -> Result<u64, StoreError> {
        let (size,): (i64,) = on_pool!(&self.db, pool => sqlx::query_as("SELECT size FROM ledger_state WHERE id = 1").fetch_one(pool).await)?;
        Ok(size as u64)
    }

    /// Appends entries `old_size..` with their new stored hashes and details in
    /// one transaction. Fails, writing nothing, if the stored size is not `old_size`.
    pub async fn append(
        &self,
        old_size: u64,
        entries: &[&[u8]],
        hashes: &[(u64, Hash)],
        details: &[(u64, NewDetail)],
    ) -> Result<(), StoreError> {
        let new_size = old_size + entries.len() as u64;
        macro_rules! write_batch {
            ($pool:expr) => {{
                let mut tx = $pool.begin().await?;
                let moved = sqlx::query("UPDATE ledger_state SET size = $1 WHERE id = 1 AND size = $2")
                    .bind(to_i64(new_size))
                    .bind(to_i64(old_size))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if moved != 1 {
                    let (found,): (i64,) =
                        sqlx::query_as("SELECT size FROM ledger_state WHERE id = 1").fetch_one(&mut *tx).await?;
                    return Err(StoreError::Conflict { expected: old_size, found: found as u64 });
                }
                for (chunk_no, chunk) in entries.chunks(ROWS_PER_STATEMENT).enumerate() {
                    let sql = format!(
                        "INSERT INTO ledger_entries (idx, data) VALUES {}",
                        placeholders(1, chunk.len(), 2)
                    );
                    let mut q = sqlx::query(&sql);
                    for (i, data) in chunk.iter().enumerate() {
                        let idx = old_size + (chunk_no * ROWS_PER_STATEMENT + i) as u64;
                        q = q.bind(to_i64(idx)).bind(*data);
                    }
                    q.execute(&mut *tx).await?;
                }
                for chunk in hashes.chunks(ROWS_PER_STATEMENT) {
                    let sql = format!(
                        "INSERT INTO ledger_hashes (idx, hash) VALUES {}",
                        placeholders(1, chunk.len(), 2)
                    );
                    let mut q = sqlx::query(&sql);
                    for (idx, hash) in chunk {
                        q = q.bind(to_i64(*idx)).bind(hash.as_slice());
                    }
                    q.execute(&mut *tx).await?;
                }
                for chunk in details.chunks(ROWS_PER_STATEMENT / 2) {
                    let sql = format!(
                        "INSERT INTO ledger_details (digest, entry_idx, nonce, ciphertext) VALUES {} ON CONFLICT (digest) DO NOTHING",
                        placeholders(1, chunk.len(), 4)
                    );
                    let mut q = sqlx::query(&sql);
                    for (idx, d) in chunk {
                        q = q.bind(d.digest.as_slice()).bind(to_i64(*idx)).bind(d.nonce.as_slice()).bind(d.ciphertext.as_slice());
                    }
                    q.execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }};
        }
        match &self.db {
            Db::Sqlite(pool) => write_batch!(pool),
            Db::Postgres(pool) => write_batch!(pool),
        }
    }

    /// Stored hashes by stored-hash index.
    pub async fn read_hashes(&self, indexes: &[u64]) -> Result<HashMap<u64, Hash>, StoreError> {
        let mut out = HashMap::with_capacity(indexes.len());
        for chunk in indexes.chunks(ROWS_PER_STATEMENT) {
            let list: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!("SELECT idx, hash FROM ledger_hashes WHERE idx IN ({})", list.join(", "));
            let rows: Vec<(i64, Vec<u8>)> = on_pool!(&self.db, pool => {
                let mut q = sqlx::query_as(&sql);
                for idx in chunk {
                    q = q.bind(to_i64(*idx));
                }
                q.fetch_all(pool).await
            })?;
            for (idx, hash) in rows {
                let hash: Hash =
                    hash.try_into().map_err(|_| StoreError::Corrupt(format!("hash {idx} is not 32 bytes")))?;
                out.insert(idx as u64, hash);
            }
        }
        Ok(out)
    }

    /// Entries `[start, end)`, in order.
    pub async fn read_entries(&self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let rows: Vec<(i64, Vec<u8>)> = on_pool!(&self.db, pool => sqlx::query_as(
            "SELECT idx, data FROM ledger_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx"
        )
        .bind(to_i64(start))
        .bind(to_i64(end))
        .fetch_all(pool)
        .await)?;
        let entries: Vec<(u64, Vec<u8>)> = rows.into_iter().map(|(i, d)| (i as u64, d)).collect();
        for (offset, (idx, _)) in entries.iter().enumerate() {
            if *idx != start + offset as u64 {
                return Err(StoreError::Corrupt(format!("entry {} is missing", start + offset as u64)));
            }
        }
        Ok(entries)
    }

    /// The encrypted detail behind a commitment: (entry index, nonce, ciphertext).
    pub async fn read_detail(&self, digest: &[u8]) -> Result<Option<(u64, Vec<u8>, Vec<u8>)>, StoreError> {
        let row: Option<(i64, Vec<u8>, Vec<u8>)> = on_pool!(&self.db, pool => sqlx::query_as(
            "SELECT entry_idx, nonce, ciphertext FROM ledger_details WHERE digest = $1"
        )
        .bind(digest)
        .fetch_optional(pool)
        .await)?;
        Ok(row.map(|(i, n, c)| (i as u64, n, c)))
    }

    /// Erases the detail behind a commitment; returns its entry index, or `None` if there was none.
    pub async fn erase_detail(&self, digest: &[u8]) -> Result<Option<u64>, StoreError> {
        let row: Option<(i64,)> = on_pool!(&self.db, pool => sqlx::query_as(
            "DELETE FROM ledger_details WHERE digest = $1 RETURNING entry_idx"
        )
        .bind(digest)
        .fetch_optional(pool)
        .await)?;
        Ok(row.map(|(i,)| i as u64))
    }

    /// Stores a signed checkpoint (the latest one wins on reads).
    pub async fn save_checkpoint(&self, size: u64, note: &str, witnessed: bool) -> Result<(), StoreError> {
        let sql = if self.db.is_postgres() {
            "INSERT INTO ledger_checkpoints (size, note, witnessed, created_at_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (size) DO UPDATE SET note = EXCLUDED.note, witnessed = EXCLUDED.witnessed"
        } else {
            "INSERT INTO ledger_checkpoints (size, note, witnessed, created_at_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (size) DO UPDATE SET note = excluded.note, witnessed = excluded.witnessed"
        };
        let now = quis_auth::revocation::now_ms();
        on_pool!(&self.db, pool => sqlx::query(sql)
            .bind(to_i64(size))
            .bind(note)
            .bind(witnessed)
            .bind(now)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// The checkpoint of the largest tree.
    pub async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        let row: Option<(i64, String, bool)> = on_pool!(&self.db, pool => sqlx::query_as(
            "SELECT size, note, witnessed FROM ledger_checkpoints ORDER BY size DESC LIMIT 1"
        )
        .fetch_optional(pool)
        .await)?;
        Ok(row.map(|(size, note, witnessed)| StoredCheckpoint { size: size as u64, note, witnessed }))
    }
}
