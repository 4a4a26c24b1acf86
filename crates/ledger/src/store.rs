//! The ledger's storage, on SQLite (the embedded default) or PostgreSQL.
//!
//! One row per entry: its bytes exactly as hashed, and the stored hashes its
//! append completed (the leaf hash, then one node hash per trailing 1 bit of
//! its index: the layout of `quis_tlog::stored_hashes`). Every node hash of
//! the tree is thus stored once, in the row of the entry that completed it, so
//! a proof or a tile costs O(log n) primary-key reads and an append writes one
//! row per entry. Beside them: the signed checkpoints and the encrypted event
//! details, keyed by their entry's index and then the commitment's digest, so
//! that a batch's details too are appended at the right edge of their B-tree
//! (keyed by the digest alone, each detail dirtied a random page: about a page
//! written per event, which held SQLite appends to a quarter of today's rate).
//! One transaction per sequenced batch.
use std::{
    collections::{HashMap, HashSet},
    fmt::Write,
    str::FromStr,
    sync::Arc,
    time::Duration,
};

use quis_core::{
    db::{Db, insert_sql, statement_sizes},
    on_pool,
};
use quis_tlog::{HASH_SIZE, Hash};
use sqlx::{
    Connection, SqliteConnection,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous},
};
use tokio_util::sync::CancellationToken;

use crate::wal::{RESET_FRAMES, WalCheckpoints};

// `idx INTEGER PRIMARY KEY` makes the index SQLite's rowid: one B-tree,
// appended at its right edge (a `BIGINT PRIMARY KEY` would add a second index).
const SCHEMA_SQLITE: &str = "
CREATE TABLE IF NOT EXISTS ledger_state (id INTEGER PRIMARY KEY CHECK (id = 1), size BIGINT NOT NULL);
INSERT OR IGNORE INTO ledger_state (id, size) VALUES (1, 0);
CREATE TABLE IF NOT EXISTS ledger_entries (idx INTEGER PRIMARY KEY, hashes BLOB NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS ledger_checkpoints (
    size BIGINT PRIMARY KEY, note TEXT NOT NULL, witnessed BOOLEAN NOT NULL, created_at_ms BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS ledger_event_details (
    entry_idx BIGINT NOT NULL, digest BLOB NOT NULL, nonce BLOB NOT NULL, ciphertext BLOB NOT NULL,
    PRIMARY KEY (entry_idx, digest)) WITHOUT ROWID";

const SCHEMA_POSTGRES: &str = "
CREATE TABLE IF NOT EXISTS ledger_state (id INTEGER PRIMARY KEY CHECK (id = 1), size BIGINT NOT NULL);
INSERT INTO ledger_state (id, size) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
CREATE TABLE IF NOT EXISTS ledger_entries (idx BIGINT PRIMARY KEY, hashes BYTEA NOT NULL, data BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS ledger_checkpoints (
    size BIGINT PRIMARY KEY, note TEXT NOT NULL, witnessed BOOLEAN NOT NULL, created_at_ms BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS ledger_event_details (
    entry_idx BIGINT NOT NULL, digest BYTEA NOT NULL, nonce BYTEA NOT NULL, ciphertext BYTEA NOT NULL,
    PRIMARY KEY (entry_idx, digest))";

/// Details of a ledger made before they were keyed by entry: moved, once.
const MOVE_OLDER_DETAILS: [&str; 2] = [
    "INSERT INTO ledger_event_details (entry_idx, digest, nonce, ciphertext) \
     SELECT entry_idx, digest, nonce, ciphertext FROM ledger_details WHERE true ON CONFLICT DO NOTHING",
    "DROP TABLE ledger_details",
];

/// Indices per `IN (...)` lookup.
const KEYS_PER_LOOKUP: usize = 1000;

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

/// A stored detail, still encrypted: (nonce, ciphertext).
pub type SealedDetail = (Vec<u8>, Vec<u8>);

/// A row of `ledger_event_details`: entry index, digest, nonce, ciphertext.
type DetailRow = (i64, Vec<u8>, Vec<u8>, Vec<u8>);

/// A new entry's detail, ready to store.
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

/// Entries `old_size..` to append in one transaction.
pub struct NewEntries<'a> {
    pub old_size: u64,
    /// Each entry's bytes, exactly as hashed.
    pub data: &'a [&'a [u8]],
    /// The stored hashes of all the entries, concatenated in storage order
    /// (entry n contributes `stored_hash_len(n)` bytes).
    pub hashes: &'a [u8],
    /// Details with the index of the entry holding their commitment.
    pub details: &'a [(u64, NewDetail)],
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct LedgerStore {
    db: Db,
    /// SQLite: the sequencer's own connection, so that reads on the pool never
    /// wait behind a batch, and a batch never waits for a pooled connection.
    writer: Option<Arc<tokio::sync::Mutex<SqliteConnection>>>,
    /// SQLite: the WAL checkpoints, beside the writer (see [`crate::wal`]).
    wal: Option<Arc<WalCheckpoints>>,
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The number of bytes of stored hashes entry `n` holds.
pub fn stored_hash_len(n: u64) -> usize {
    HASH_SIZE * (1 + n.trailing_ones() as usize)
}

/// The entry whose row holds stored hash `index`, and the hash's position in that row.
fn row_of(index: u64) -> Option<(u64, usize)> {
    // Node (level, k) is completed by the append of the last leaf under it.
    let (level, k) = quis_tlog::split_stored_hash_index(index);
    let entry = k.checked_add(1)?.checked_mul(1u64.checked_shl(u32::from(level))?)? - 1;
    Some((entry, usize::from(level)))
}

impl LedgerStore {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with_wal_limit(url, RESET_FRAMES).await
    }

    /// [`Self::connect`], the writer finishing a WAL checkpoint past `reset_frames` pages.
    pub(crate) async fn connect_with_wal_limit(url: &str, reset_frames: i64) -> Result<Self, StoreError> {
        let db = Db::connect(url).await?;
        db.migrate(SCHEMA_SQLITE, SCHEMA_POSTGRES).await?;
        // A database made by an older ledger (entries and hashes in separate tables) is not read.
        let current = on_pool!(&db, pool => sqlx::query("SELECT idx, hashes, data FROM ledger_entries LIMIT 0").execute(pool).await.map(|_| ()));
        if current.is_err() {
            return Err(StoreError::Corrupt(
                "ledger_entries has an older layout (no hashes column): this ledger cannot read it".into(),
            ));
        }
        let older_details =
            on_pool!(&db, pool => sqlx::query("SELECT 1 FROM ledger_details LIMIT 0").execute(pool).await.map(|_| ()));
        if older_details.is_ok() {
            on_pool!(&db, pool => {
                let mut tx = pool.begin().await?;
                for statement in MOVE_OLDER_DETAILS {
                    sqlx::query(statement).execute(&mut *tx).await?;
                }
                tx.commit().await
            })?;
            tracing::info!("event details moved to the layout keyed by entry");
        }
        let (writer, wal) = match &db {
            Db::Sqlite(_) => {
                // As durable as the pool's connections: WAL with synchronous=FULL fsyncs the
                // WAL at every commit, so an acknowledged batch survives a crash or power loss
                // (NORMAL would only sync at checkpoints and could lose acknowledged entries).
                let options = SqliteConnectOptions::from_str(url)?
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(5));
                let wal = WalCheckpoints::new(options.clone(), reset_frames);
                let writer = options
                    // 64 MiB of page cache: the details' index takes random inserts.
                    .pragma("cache_size", "-65536")
                    // Checkpoints run beside the writer, not inside its commits.
                    .pragma("wal_autocheckpoint", "0");
                let writer = Arc::new(tokio::sync::Mutex::new(SqliteConnection::connect_with(&writer).await?));
                (Some(writer), Some(wal))
            }
            Db::Postgres(_) => (None, None),
        };
        Ok(Self { db, writer, wal })
    }

    /// Starts the SQLite WAL checkpointer (nothing on PostgreSQL), until `stop`.
    pub fn spawn_wal_checkpointer(&self, stop: CancellationToken) {
        if let Some(wal) = &self.wal {
            wal.spawn(stop);
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The number of entries durably stored.
    pub async fn size(&self) -> Result<u64, StoreError> {
        let (size,): (i64,) = on_pool!(&self.db, pool => sqlx::query_as("SELECT size FROM ledger_state WHERE id = 1").fetch_one(pool).await)?;
        Ok(size as u64)
    }

    /// Appends the entries with their stored hashes and details in one
    /// transaction. Fails, writing nothing, if the stored size is not `old_size`.
    pub async fn append(&self, new: &NewEntries<'_>) -> Result<(), StoreError> {
        let count = new.data.len() as u64;
        let mut rows_hashes = Vec::with_capacity(new.data.len());
        let mut at = 0;
        for n in new.old_size..new.old_size + count {
            let len = stored_hash_len(n);
            let h = new.hashes.get(at..at + len).ok_or_else(|| StoreError::Corrupt("too few stored hashes".into()))?;
            rows_hashes.push(h);
            at += len;
        }
        if at != new.hashes.len() {
            return Err(StoreError::Corrupt("too many stored hashes".into()));
        }
        macro_rules! claim_size {
            ($tx:expr) => {{
                let moved = sqlx::query("UPDATE ledger_state SET size = $1 WHERE id = 1 AND size = $2")
                    .bind(to_i64(new.old_size + count))
                    .bind(to_i64(new.old_size))
                    .execute(&mut *$tx)
                    .await?
                    .rows_affected();
                if moved != 1 {
                    let (found,): (i64,) =
                        sqlx::query_as("SELECT size FROM ledger_state WHERE id = 1").fetch_one(&mut *$tx).await?;
                    return Err(StoreError::Conflict { expected: new.old_size, found: found as u64 });
                }
            }};
        }
        match (&self.db, &self.writer) {
            (Db::Sqlite(_), Some(writer)) => {
                let mut conn = writer.lock().await;
                if let Some(wal) = &self.wal {
                    wal.before_batch(&mut conn).await;
                }
                let mut tx = conn.begin().await?;
                claim_size!(tx);
                let mut done = 0;
                for rows in statement_sizes(new.data.len()) {
                    let sql = insert_sql("INSERT INTO ledger_entries (idx, hashes, data) VALUES", 3, rows, "");
                    let mut q = sqlx::query(&sql);
                    for (i, (hashes, data)) in rows_hashes.iter().zip(new.data).enumerate().skip(done).take(rows) {
                        q = q.bind(to_i64(new.old_size + i as u64)).bind(*hashes).bind(*data);
                    }
                    q.execute(&mut *tx).await?;
                    done += rows;
                }
                let mut done = 0;
                for rows in statement_sizes(new.details.len()) {
                    let sql = insert_sql(
                        "INSERT INTO ledger_event_details (entry_idx, digest, nonce, ciphertext) VALUES",
                        4,
                        rows,
                        " ON CONFLICT (entry_idx, digest) DO NOTHING",
                    );
                    let mut q = sqlx::query(&sql);
                    for (idx, d) in &new.details[done..done + rows] {
                        q = q
                            .bind(to_i64(*idx))
                            .bind(d.digest.as_slice())
                            .bind(d.nonce.as_slice())
                            .bind(d.ciphertext.as_slice());
                    }
                    q.execute(&mut *tx).await?;
                    done += rows;
                }
                tx.commit().await?;
            }
            (Db::Postgres(pool), _) => {
                // One statement per table whatever the batch size: arrays unnested server-side.
                let mut tx = pool.begin().await?;
                claim_size!(tx);
                let idx: Vec<i64> = (new.old_size..new.old_size + count).map(to_i64).collect();
                sqlx::query(
                    "INSERT INTO ledger_entries (idx, hashes, data) \
                     SELECT * FROM UNNEST($1::BIGINT[], $2::BYTEA[], $3::BYTEA[])",
                )
                .bind(&idx)
                .bind(&rows_hashes)
                .bind(new.data)
                .execute(&mut *tx)
                .await?;
                if !new.details.is_empty() {
                    let digests: Vec<&[u8]> = new.details.iter().map(|(_, d)| d.digest.as_slice()).collect();
                    let entries: Vec<i64> = new.details.iter().map(|(i, _)| to_i64(*i)).collect();
                    let nonces: Vec<&[u8]> = new.details.iter().map(|(_, d)| d.nonce.as_slice()).collect();
                    let ciphertexts: Vec<&[u8]> = new.details.iter().map(|(_, d)| d.ciphertext.as_slice()).collect();
                    sqlx::query(
                        "INSERT INTO ledger_event_details (entry_idx, digest, nonce, ciphertext) \
                         SELECT * FROM UNNEST($1::BIGINT[], $2::BYTEA[], $3::BYTEA[], $4::BYTEA[]) \
                         ON CONFLICT (entry_idx, digest) DO NOTHING",
                    )
                    .bind(&entries)
                    .bind(&digests)
                    .bind(&nonces)
                    .bind(&ciphertexts)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
            }
            (Db::Sqlite(_), None) => return Err(StoreError::Corrupt("no writer connection".into())),
        }
        Ok(())
    }

    /// Stored hashes by stored-hash index.
    pub async fn read_hashes(&self, indexes: &[u64]) -> Result<HashMap<u64, Hash>, StoreError> {
        let mut rows: Vec<u64> = indexes.iter().filter_map(|&i| row_of(i)).map(|(entry, _)| entry).collect();
        rows.sort_unstable();
        rows.dedup();
        let mut blobs: HashMap<u64, Vec<u8>> = HashMap::with_capacity(rows.len());
        if let (Some(&first), Some(&last)) = (rows.first(), rows.last())
            && last - first < 2 * rows.len() as u64
        {
            // Mostly consecutive rows (a tile of leaf hashes): one range scan instead of a
            // primary-key lookup per row, the few rows in between read and dropped.
            let sql = "SELECT idx, hashes FROM ledger_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx";
            blobs.extend(self.rows_in(sql, first, last + 1).await?);
            rows.clear();
        }
        for chunk in rows.chunks(KEYS_PER_LOOKUP) {
            let mut sql = String::from("SELECT idx, hashes FROM ledger_entries WHERE idx IN (");
            for i in 1..=chunk.len() {
                let _ = write!(sql, "{}${i}", if i == 1 { "" } else { ", " });
            }
            sql.push(')');
            let found: Vec<(i64, Vec<u8>)> = on_pool!(&self.db, pool => {
                let mut q = sqlx::query_as(&sql);
                for idx in chunk {
                    q = q.bind(to_i64(*idx));
                }
                q.fetch_all(pool).await
            })?;
            blobs.extend(found.into_iter().map(|(i, h)| (i as u64, h)));
        }
        let mut out = HashMap::with_capacity(indexes.len());
        for &index in indexes {
            let Some((entry, level)) = row_of(index) else { continue };
            let Some(blob) = blobs.get(&entry) else { continue };
            if blob.len() != stored_hash_len(entry) {
                return Err(StoreError::Corrupt(format!("entry {entry} holds {} bytes of hashes", blob.len())));
            }
            let mut hash = [0u8; HASH_SIZE];
            hash.copy_from_slice(&blob[level * HASH_SIZE..(level + 1) * HASH_SIZE]);
            out.insert(index, hash);
        }
        Ok(out)
    }

    /// `(idx, column)` of the rows `[start, end)` by `sql`, a range scan with those two bounds.
    async fn rows_in(&self, sql: &'static str, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let rows: Vec<(i64, Vec<u8>)> = on_pool!(&self.db, pool => sqlx::query_as(sql)
            .bind(to_i64(start))
            .bind(to_i64(end))
            .fetch_all(pool)
            .await)?;
        Ok(rows.into_iter().map(|(i, v)| (i as u64, v)).collect())
    }

    /// Entries `[start, end)`, in order.
    pub async fn read_entries(&self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let sql = "SELECT idx, data FROM ledger_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx";
        let entries = self.rows_in(sql, start, end).await?;
        for (offset, (idx, _)) in entries.iter().enumerate() {
            if *idx != start + offset as u64 {
                return Err(StoreError::Corrupt(format!("entry {} is missing", start + offset as u64)));
            }
        }
        Ok(entries)
    }

    /// The encrypted detail behind commitment `digest` of entry `entry`.
    pub async fn read_detail(&self, entry: u64, digest: &[u8]) -> Result<Option<SealedDetail>, StoreError> {
        Ok(self.read_details(&[(entry, digest)]).await?.into_values().next())
    }

    /// The encrypted details behind commitments (entry, digest), by commitment; those
    /// without one are absent. One query per [`KEYS_PER_LOOKUP`] entries: the details
    /// of the entries named, of which the wanted are kept.
    pub async fn read_details(
        &self,
        wanted: &[(u64, &[u8])],
    ) -> Result<HashMap<(u64, Vec<u8>), SealedDetail>, StoreError> {
        let keep: HashSet<(u64, &[u8])> = wanted.iter().copied().collect();
        let mut entries: Vec<u64> = wanted.iter().map(|(entry, _)| *entry).collect();
        entries.sort_unstable();
        entries.dedup();
        let mut found = HashMap::with_capacity(wanted.len());
        for chunk in entries.chunks(KEYS_PER_LOOKUP) {
            let mut sql = String::from(
                "SELECT entry_idx, digest, nonce, ciphertext FROM ledger_event_details WHERE entry_idx IN (",
            );
            for i in 1..=chunk.len() {
                let _ = write!(sql, "{}${i}", if i == 1 { "" } else { ", " });
            }
            sql.push(')');
            let rows: Vec<DetailRow> = on_pool!(&self.db, pool => {
                let mut q = sqlx::query_as(&sql);
                for entry in chunk {
                    q = q.bind(to_i64(*entry));
                }
                q.fetch_all(pool).await
            })?;
            for (entry, digest, nonce, ciphertext) in rows {
                if keep.contains(&(entry as u64, digest.as_slice())) {
                    found.insert((entry as u64, digest), (nonce, ciphertext));
                }
            }
        }
        Ok(found)
    }

    /// Erases the detail behind commitment `digest` of entry `entry`; whether there was one.
    pub async fn erase_detail(&self, entry: u64, digest: &[u8]) -> Result<bool, StoreError> {
        let erased = on_pool!(&self.db, pool => sqlx::query(
            "DELETE FROM ledger_event_details WHERE entry_idx = $1 AND digest = $2"
        )
        .bind(to_i64(entry))
        .bind(digest)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(erased > 0)
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

/// The store's contract, run on both backends: every stored hash readable by
/// its stored-hash index, equal to the reference layout of `quis-tlog`;
/// appends all or nothing; details stored, read and erased.
#[cfg(test)]
mod tests {
    use quis_tlog::{HashReader, MemoryHashes};

    use super::*;
    use crate::sequencer::Frontier;

    async fn open(postgres: bool, dir: &std::path::Path) -> LedgerStore {
        LedgerStore::connect(&new_url(postgres, dir).await).await.expect("connect")
    }

    async fn new_url(postgres: bool, dir: &std::path::Path) -> String {
        if postgres {
            let name = format!("quis_test_{:032x}", rand::random::<u128>());
            let Db::Postgres(admin) = Db::connect("postgres://postgres@127.0.0.1:5432/postgres").await.expect("pg")
            else {
                unreachable!("a postgres URL")
            };
            sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await.expect("create database");
            format!("postgres://postgres@127.0.0.1:5432/{name}")
        } else {
            format!("sqlite://{}?mode=rwc", dir.join("ledger.db").display())
        }
    }

    /// A ledger whose details were keyed by digest alone keeps them in the new layout.
    async fn older_details_are_moved(postgres: bool) {
        let dir = tempfile::tempdir().expect("dir");
        let url = new_url(postgres, dir.path()).await;
        let older = Db::connect(&url).await.expect("db");
        let blob = if postgres { "BYTEA" } else { "BLOB" };
        let create = format!(
            "CREATE TABLE ledger_details (digest {blob} PRIMARY KEY, entry_idx BIGINT NOT NULL, nonce {blob} NOT NULL, ciphertext {blob} NOT NULL)"
        );
        on_pool!(&older, pool => sqlx::query(&create).execute(pool).await.map(|_| ())).expect("older table");
        on_pool!(&older, pool => sqlx::query("INSERT INTO ledger_details VALUES ($1, 7, $2, $3)")
            .bind(vec![1u8; 32]).bind(vec![2u8; 12]).bind(vec![3u8; 40]).execute(pool).await.map(|_| ()))
        .expect("older row");
        let store = LedgerStore::connect(&url).await.expect("connect");
        assert_eq!(store.read_detail(7, &[1; 32]).await.expect("read"), Some((vec![2; 12], vec![3; 40])));
        let gone =
            on_pool!(&older, pool => sqlx::query("SELECT 1 FROM ledger_details").execute(pool).await.map(|_| ()));
        assert!(gone.is_err(), "the older table is dropped");
        drop(store);
        LedgerStore::connect(&url).await.expect("connect again, nothing left to move");
    }

    #[tokio::test]
    async fn older_details_are_moved_on_sqlite() {
        older_details_are_moved(false).await;
    }

    #[tokio::test]
    async fn older_details_are_moved_on_postgres() {
        older_details_are_moved(true).await;
    }

    fn entry(n: u64) -> Vec<u8> {
        format!("entry {n} {}", "x".repeat((n % 300) as usize)).into_bytes()
    }

    /// Appends entries `size..size + count` (hashed through a frontier) with one detail each.
    async fn append(store: &LedgerStore, frontier: &mut Frontier, size: u64, count: u64) -> Result<(), StoreError> {
        let data: Vec<Vec<u8>> = (size..size + count).map(entry).collect();
        let mut hashes = Vec::new();
        for d in &data {
            frontier.push(quis_tlog::leaf_hash(d), &mut hashes);
        }
        let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let details: Vec<(u64, NewDetail)> = (size..size + count)
            .map(|n| {
                let digest: [u8; 32] = quis_tlog::leaf_hash(&n.to_be_bytes());
                (n, NewDetail { digest, nonce: [7; 12], ciphertext: n.to_be_bytes().to_vec() })
            })
            .collect();
        store.append(&NewEntries { old_size: size, data: &refs, hashes: &hashes, details: &details }).await
    }

    async fn contract(postgres: bool) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(postgres, dir.path()).await;
        let mut frontier = Frontier::load(&store, 0).await.expect("frontier");
        let mut size = 0;
        // Batch sizes that cross statement sizes, tile widths and subtree boundaries.
        for count in [1, 2, 5, 256, 1, 300, 999, 17, 1000] {
            append(&store, &mut frontier, size, count).await.expect("append");
            size += count;
        }
        assert_eq!(store.size().await.expect("size"), size);

        let reference = MemoryHashes::from_entries((0..size).map(entry)).expect("reference");
        let all: Vec<u64> = (0..quis_tlog::stored_hash_count(size)).collect();
        let stored = store.read_hashes(&all).await.expect("hashes");
        let want = reference.read_hashes(&all).expect("reference hashes");
        for (i, h) in all.iter().zip(want) {
            assert_eq!(stored.get(i), Some(&h), "stored hash {i}");
        }
        // Scattered rows are looked up one by one rather than scanned.
        let scattered: Vec<u64> = all.iter().copied().step_by(7).collect();
        let stored = store.read_hashes(&scattered).await.expect("scattered hashes");
        assert_eq!(stored.len(), scattered.len());
        for i in &scattered {
            assert_eq!(stored.get(i), reference.read_hashes(&[*i]).expect("reference").first(), "stored hash {i}");
        }
        assert!(store.read_hashes(&[quis_tlog::stored_hash_count(size)]).await.expect("read").is_empty());
        let entries = store.read_entries(10, 20).await.expect("entries");
        assert_eq!(entries, (10..20).map(|n| (n, entry(n))).collect::<Vec<_>>());

        // A frontier loaded from the store continues the same tree.
        let mut reloaded = Frontier::load(&store, size).await.expect("reload");
        append(&store, &mut reloaded, size, 3).await.expect("append after reload");
        size += 3;
        let reference = MemoryHashes::from_entries((0..size).map(entry)).expect("reference");
        let mut cache = Default::default();
        let root =
            crate::hashes::with_hashes(&store, &mut cache, |r| quis_tlog::tree_hash(size, r)).await.expect("root");
        assert_eq!(root, quis_tlog::tree_hash(size, &reference).expect("reference root"));

        // A writer that believes another size writes nothing.
        let mut stale = Frontier::load(&store, size - 3).await.expect("frontier");
        match append(&store, &mut stale, size - 3, 4).await {
            Err(StoreError::Conflict { expected, found }) => assert_eq!((expected, found), (size - 3, size)),
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert_eq!(store.size().await.expect("size"), size);
        assert!(store.read_entries(size, size + 1).await.expect("read").is_empty());

        // Details: read by entry and digest, erased once.
        let digest = quis_tlog::leaf_hash(&42u64.to_be_bytes());
        let detail = store.read_detail(42, &digest).await.expect("read").expect("detail");
        assert_eq!(detail, (vec![7; 12], 42u64.to_be_bytes().to_vec()));
        assert!(store.read_detail(41, &digest).await.expect("read").is_none(), "another entry's commitment");
        let other = quis_tlog::leaf_hash(&43u64.to_be_bytes());
        let many =
            store.read_details(&[(42, &digest), (43, &other), (41, &digest), (43, &digest)]).await.expect("read");
        assert_eq!(many.len(), 2, "the wanted commitments of each entry, no other: {:?}", many.keys());
        assert_eq!(many[&(43, other.to_vec())].1, 43u64.to_be_bytes().to_vec());
        assert!(store.erase_detail(42, &digest).await.expect("erase"));
        assert!(!store.erase_detail(42, &digest).await.expect("erase"));
        assert!(store.read_detail(42, &digest).await.expect("read").is_none());
    }

    #[tokio::test]
    async fn the_store_keeps_its_contract_on_sqlite() {
        contract(false).await;
    }

    #[tokio::test]
    async fn the_store_keeps_its_contract_on_postgres() {
        contract(true).await;
    }

    /// The WAL's frames and copied frames, seen by a checkpoint on a connection of its own.
    async fn wal_checkpoint(conn: &mut SqliteConnection) -> crate::wal::WalProgress {
        crate::wal::checkpoint(conn).await.expect("checkpoint")
    }

    #[tokio::test]
    async fn commits_leave_the_wal_to_the_checkpointer_which_starts_it_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("ledger.db").display());
        let store = LedgerStore::connect(&url).await.expect("connect");
        let wal = store.wal.clone().expect("SQLite has a checkpointer");
        let mut checkpointer = SqliteConnection::connect(&url).await.expect("checkpointer");
        let mut frontier = Frontier::load(&store, 0).await.expect("frontier");

        // 20,000 entries of ~300 bytes and their details: well past SQLite's default
        // auto-checkpoint of 1,000 pages, which the writer no longer runs.
        let mut size = 0;
        for _ in 0..40 {
            append(&store, &mut frontier, size, 500).await.expect("append");
            size += 500;
        }
        let before = wal_checkpoint(&mut checkpointer).await;
        assert!(before.frames > 1000, "the writer checkpointed itself: {before:?}");
        assert_eq!(before.copied, before.frames, "a checkpoint beside an idle writer copies the whole WAL");

        // The WAL was copied back whole: the next batch starts it over.
        append(&store, &mut frontier, size, 10).await.expect("append");
        size += 10;
        let after = wal_checkpoint(&mut checkpointer).await;
        assert!(after.frames < 100, "the WAL was not started over: {after:?}");
        assert_eq!(store.read_entries(0, size).await.expect("read").len() as u64, size);
        assert!(!wal.reset_wanted.load(std::sync::atomic::Ordering::Acquire));
    }

    #[tokio::test]
    async fn past_the_limit_the_writer_finishes_the_checkpoint_and_starts_the_wal_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("ledger.db").display());
        let store = LedgerStore::connect_with_wal_limit(&url, 50).await.expect("connect");
        let wal = store.wal.clone().expect("SQLite has a checkpointer");
        let mut checkpointer = SqliteConnection::connect(&url).await.expect("checkpointer");
        let mut frontier = Frontier::load(&store, 0).await.expect("frontier");
        append(&store, &mut frontier, 0, 500).await.expect("append");

        // A reader holding a snapshot keeps the next batch from being copied back, as a
        // batch committing during the checkpoint would: the checkpoint falls behind.
        let mut reader = SqliteConnection::connect(&url).await.expect("reader");
        let mut snapshot = reader.begin().await.expect("begin");
        let _: (i64,) =
            sqlx::query_as("SELECT count(*) FROM ledger_entries").fetch_one(&mut *snapshot).await.expect("read");
        append(&store, &mut frontier, 500, 500).await.expect("append");
        let behind = wal.run_once(&mut checkpointer).await.expect("checkpoint");
        assert!(behind.copied < behind.frames, "{behind:?}");
        assert!(wal.reset_wanted.load(std::sync::atomic::Ordering::Acquire), "past the limit: {behind:?}");
        snapshot.rollback().await.expect("end the snapshot");

        // The writer copies the rest before its next batch, which starts the WAL over.
        append(&store, &mut frontier, 1000, 10).await.expect("append");
        assert!(!wal.reset_wanted.load(std::sync::atomic::Ordering::Acquire));
        let after = wal_checkpoint(&mut checkpointer).await;
        assert!(after.frames < behind.frames / 4, "the WAL was not started over: {behind:?} then {after:?}");
        assert_eq!(store.read_entries(0, 1010).await.expect("read").len(), 1010);
    }

    #[test]
    fn every_stored_hash_maps_to_the_row_of_the_entry_that_completed_it() {
        let mut start = 0;
        for n in 0..5000u64 {
            for offset in 0..=n.trailing_ones() as usize {
                assert_eq!(row_of(start + offset as u64), Some((n, offset)));
            }
            start += (1 + n.trailing_ones()) as u64;
            assert_eq!(start, quis_tlog::stored_hash_count(n + 1));
        }
    }
}
