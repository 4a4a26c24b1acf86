//! The vault's tables, on SQLite (the embedded default) or PostgreSQL.
//!
//! - `vault_subjects`: id, current profile version, times. Nothing else in the
//!   clear: the profile (names, date of birth, flags, decoy mark) is sealed.
//! - `vault_records`: name, subject, kind (in the clear: policy decides on it
//!   before decryption), current version, times.
//! - `vault_sealed`: every sealed version of a subject profile or record:
//!   nonce, ciphertext, wrapped data key and the KEK id that wraps it.
//! - `vault_search_index`: blind tokens → subject ids.
//! - `vault_relationship_keys`: per subject, the surname, address and household keys.
//! - `vault_access_index`: per subject, the ledger indices of accesses to it,
//!   when each becomes visible to the subject and the salt of the entry's
//!   commitment to the subject. Secondary: rebuilt from the ledger, never the
//!   source of truth. On SQLite it has a file of its own beside the vault's
//!   (`vault.db` → `vault-access-index.db`, see [`Store::open`]).
//! - `vault_break_glass`: break-glass grants started through the vault (the
//!   grant itself is held by policy; this is who may end it, and when).
//! - `vault_kek_checks`: per KEK id, a check value (an HMAC under the KEK), so
//!   that a KEK file replaced by another key is refused at start.
use std::collections::HashMap;

use quis_core::{
    db::{Db, insert_sql, statement_sizes},
    on_pool,
};

use crate::envelope::Sealed;

const SCHEMA_SQLITE: &str = "
CREATE TABLE IF NOT EXISTS vault_subjects (
    id TEXT PRIMARY KEY, version BIGINT NOT NULL, create_time_us BIGINT NOT NULL, update_time_us BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS vault_records (
    name TEXT PRIMARY KEY, subject_id TEXT NOT NULL REFERENCES vault_subjects (id), kind TEXT NOT NULL,
    version BIGINT NOT NULL, create_time_us BIGINT NOT NULL, update_time_us BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS vault_records_by_subject ON vault_records (subject_id, name);
CREATE TABLE IF NOT EXISTS vault_sealed (
    name TEXT NOT NULL, version BIGINT NOT NULL, nonce BLOB NOT NULL, ciphertext BLOB NOT NULL,
    wrapped_key BLOB NOT NULL, kek_id TEXT NOT NULL, PRIMARY KEY (name, version));
CREATE INDEX IF NOT EXISTS vault_sealed_by_kek ON vault_sealed (kek_id);
CREATE TABLE IF NOT EXISTS vault_search_index (
    token BLOB NOT NULL, subject_id TEXT NOT NULL, PRIMARY KEY (token, subject_id));
CREATE INDEX IF NOT EXISTS vault_search_index_by_subject ON vault_search_index (subject_id);
CREATE TABLE IF NOT EXISTS vault_relationship_keys (
    subject_id TEXT NOT NULL, kind TEXT NOT NULL, rkey BLOB NOT NULL, PRIMARY KEY (subject_id, kind));
CREATE TABLE IF NOT EXISTS vault_break_glass (
    id TEXT PRIMARY KEY, grantee TEXT NOT NULL, subject_id TEXT NOT NULL, start_us BIGINT NOT NULL,
    expire_us BIGINT NOT NULL, ended_us BIGINT);
CREATE TABLE IF NOT EXISTS vault_kek_checks (kek_id TEXT PRIMARY KEY, check_value BLOB NOT NULL)";

/// The access index's file on SQLite.
const ACCESS_INDEX_SQLITE: &str = "
CREATE TABLE IF NOT EXISTS vault_access_index (
    subject_id TEXT NOT NULL, ledger_index BIGINT NOT NULL, visible_from_us BIGINT NOT NULL, salt BLOB NOT NULL,
    PRIMARY KEY (subject_id, ledger_index))";

const SCHEMA_POSTGRES: &str = "
CREATE TABLE IF NOT EXISTS vault_subjects (
    id TEXT PRIMARY KEY, version BIGINT NOT NULL, create_time_us BIGINT NOT NULL, update_time_us BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS vault_records (
    name TEXT PRIMARY KEY, subject_id TEXT NOT NULL REFERENCES vault_subjects (id), kind TEXT NOT NULL,
    version BIGINT NOT NULL, create_time_us BIGINT NOT NULL, update_time_us BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS vault_records_by_subject ON vault_records (subject_id, name);
CREATE TABLE IF NOT EXISTS vault_sealed (
    name TEXT NOT NULL, version BIGINT NOT NULL, nonce BYTEA NOT NULL, ciphertext BYTEA NOT NULL,
    wrapped_key BYTEA NOT NULL, kek_id TEXT NOT NULL, PRIMARY KEY (name, version));
CREATE INDEX IF NOT EXISTS vault_sealed_by_kek ON vault_sealed (kek_id);
CREATE TABLE IF NOT EXISTS vault_search_index (
    token BYTEA NOT NULL, subject_id TEXT NOT NULL, PRIMARY KEY (token, subject_id));
CREATE INDEX IF NOT EXISTS vault_search_index_by_subject ON vault_search_index (subject_id);
CREATE TABLE IF NOT EXISTS vault_relationship_keys (
    subject_id TEXT NOT NULL, kind TEXT NOT NULL, rkey BYTEA NOT NULL, PRIMARY KEY (subject_id, kind));
CREATE TABLE IF NOT EXISTS vault_access_index (
    subject_id TEXT NOT NULL, ledger_index BIGINT NOT NULL, visible_from_us BIGINT NOT NULL, salt BYTEA NOT NULL,
    PRIMARY KEY (subject_id, ledger_index));
CREATE TABLE IF NOT EXISTS vault_break_glass (
    id TEXT PRIMARY KEY, grantee TEXT NOT NULL, subject_id TEXT NOT NULL, start_us BIGINT NOT NULL,
    expire_us BIGINT NOT NULL, ended_us BIGINT);
CREATE TABLE IF NOT EXISTS vault_kek_checks (kek_id TEXT PRIMARY KEY, check_value BYTEA NOT NULL)";

/// Rows per multi-row INSERT (SQLite allows 32,766 bound values per statement).
const ROWS_PER_STATEMENT: usize = 1000;

/// Why a write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The row was created or changed meanwhile; `found` is the version now stored (0: none).
    #[error("version conflict (found {found})")]
    Conflict { found: i64 },
    /// The parent subject does not exist.
    #[error("no such parent")]
    NoParent,
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
}

/// A new version of a subject profile, with the indexes computed from it.
pub struct SubjectWrite<'a> {
    pub id: &'a str,
    /// The version this one replaces (0: a new subject).
    pub previous: i64,
    pub sealed: &'a Sealed,
    pub tokens: &'a [[u8; 32]],
    pub relationship_keys: &'a [(&'static str, [u8; 32])],
    pub now_us: i64,
}

/// A new version of a record.
pub struct RecordWrite<'a> {
    pub name: &'a str,
    pub subject_id: &'a str,
    pub kind: &'a str,
    /// The version this one replaces (0: a new record).
    pub previous: i64,
    pub sealed: &'a Sealed,
    pub now_us: i64,
}

/// A stored head row with its current sealed version.
#[derive(Clone, Debug)]
pub struct StoredHead {
    pub version: i64,
    pub kind: String,
    pub create_time_us: i64,
    pub update_time_us: i64,
    pub sealed: Sealed,
}

/// A sealed row's key columns, for rotation.
#[derive(Clone, Debug)]
pub struct WrappedRow {
    pub name: String,
    pub version: i64,
    pub wrapped_key: Vec<u8>,
    pub kek_id: String,
}

/// One row of the access index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexedAccess {
    pub subject_id: String,
    pub ledger_index: u64,
    /// When the subject may see it (0: at once).
    pub visible_from_us: i64,
    /// The salt of the entry's commitment to the subject.
    pub salt: Vec<u8>,
}

/// A break-glass grant started through the vault.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct BreakGlassRow {
    pub id: String,
    pub grantee: String,
    pub subject_id: String,
    pub start_us: i64,
    pub expire_us: i64,
    pub ended_us: Option<i64>,
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct Store {
    db: Db,
    /// The access index's store: on SQLite a file of its own, on PostgreSQL `db`.
    access_index: Db,
}

type HeadRow = (i64, String, i64, i64, Vec<u8>, Vec<u8>, Vec<u8>, String);
/// A [`HeadRow`] after its record's name.
type NamedHeadRow = (String, i64, String, i64, i64, Vec<u8>, Vec<u8>, Vec<u8>, String);

fn head(row: HeadRow) -> StoredHead {
    let (version, kind, create_time_us, update_time_us, nonce, ciphertext, wrapped_key, kek_id) = row;
    StoredHead {
        version,
        kind,
        create_time_us,
        update_time_us,
        sealed: Sealed { nonce, ciphertext, wrapped_key, kek_id },
    }
}

/// Moves the access index rows of a store written before the index had a file
/// of its own, then drops the old table. A crash midway repeats the copy (rows
/// present are kept); a table another process has just dropped is no failure.
async fn move_access_index_rows(
    vault: &sqlx::SqlitePool,
    access_index: &sqlx::SqlitePool,
    vault_file: &std::path::Path,
) -> Result<(), sqlx::Error> {
    let old_table = async || -> Result<bool, sqlx::Error> {
        let (n,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'vault_access_index'")
                .fetch_one(vault)
                .await?;
        Ok(n > 0)
    };
    if !old_table().await? {
        return Ok(());
    }
    let mut conn = access_index.acquire().await?;
    sqlx::query("ATTACH DATABASE $1 AS previous").bind(vault_file.to_string_lossy()).execute(&mut *conn).await?;
    // `WHERE true`: SQLite's parser needs it between a SELECT and an upsert clause.
    let copied = sqlx::query(
        "INSERT INTO main.vault_access_index (subject_id, ledger_index, visible_from_us, salt)
         SELECT subject_id, ledger_index, visible_from_us, salt FROM previous.vault_access_index WHERE true
         ON CONFLICT (subject_id, ledger_index) DO NOTHING",
    )
    .execute(&mut *conn)
    .await;
    sqlx::query("DETACH DATABASE previous").execute(&mut *conn).await?;
    match copied {
        Ok(done) => {
            tracing::info!(rows = done.rows_affected(), "access index moved to a file of its own");
        }
        Err(_) if !old_table().await? => return Ok(()),
        Err(e) => return Err(e),
    }
    sqlx::query("DROP TABLE IF EXISTS vault_access_index").execute(vault).await?;
    Ok(())
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

fn placeholders(first: usize, rows: usize, per_row: usize) -> String {
    (0..rows)
        .map(|r| {
            let cols: Vec<String> = (0..per_row).map(|c| format!("${}", first + r * per_row + c)).collect();
            format!("({})", cols.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    /// Creates the tables if needed. On SQLite the access index goes to a file
    /// of its own beside the vault's (`<name>-access-index.db`): its group
    /// commits, one per group of guarded reads, would otherwise change the
    /// vault file's WAL, and SQLite empties the page cache of every connection
    /// that reads a file another one has written since its last read. Being
    /// rebuilt from the ledger, that file's commits are not fsynced
    /// ([`Db::connect_rebuildable`]).
    pub async fn open(db: Db) -> Result<Self, sqlx::Error> {
        db.migrate(SCHEMA_SQLITE, SCHEMA_POSTGRES).await?;
        let access_index = match &db {
            Db::Sqlite(pool) => {
                let vault_file = pool.connect_options().get_filename().to_path_buf();
                let stem = vault_file.file_stem().unwrap_or_default().to_string_lossy();
                let file = vault_file.with_file_name(format!("{stem}-access-index.db"));
                let access_index = Db::connect_rebuildable(&format!("sqlite://{}?mode=rwc", file.display())).await?;
                access_index.migrate(ACCESS_INDEX_SQLITE, "").await?;
                if let Db::Sqlite(target) = &access_index {
                    move_access_index_rows(pool, target, &vault_file).await?;
                }
                access_index
            }
            Db::Postgres(_) => db.clone(),
        };
        Ok(Self { db, access_index })
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Where the access index is kept: on SQLite a file of its own, on PostgreSQL [`Store::db`].
    pub fn access_index_db(&self) -> &Db {
        &self.access_index
    }

    /// SQLite write transactions take the write lock up front: a deferred one
    /// that reads first fails at once ("database is locked") when it tries to
    /// write while another writer holds the lock, instead of waiting.
    fn begin_statement(&self) -> &'static str {
        if self.db.is_postgres() { "BEGIN" } else { "BEGIN IMMEDIATE" }
    }

    /// The stored check value of every KEK seen so far.
    pub async fn kek_checks(&self) -> Result<Vec<(String, Vec<u8>)>, sqlx::Error> {
        on_pool!(&self.db, pool => sqlx::query_as(
            "SELECT kek_id, check_value FROM vault_kek_checks ORDER BY kek_id").fetch_all(pool).await)
    }

    /// Records a KEK's check value, unless one is already recorded.
    pub async fn add_kek_check(&self, kek_id: &str, check_value: &[u8]) -> Result<(), sqlx::Error> {
        on_pool!(&self.db, pool => sqlx::query(
            "INSERT INTO vault_kek_checks (kek_id, check_value) VALUES ($1, $2) ON CONFLICT (kek_id) DO NOTHING")
            .bind(kek_id).bind(check_value).execute(pool).await.map(|_| ()))
    }

    /// Writes a subject's new profile version and replaces its indexes, in one
    /// transaction; fails with `Conflict` if the stored version is not `previous`.
    pub async fn write_subject(&self, w: &SubjectWrite<'_>) -> Result<(), WriteError> {
        let name = crate::names::subject_name(w.id);
        let version = w.previous + 1;
        macro_rules! insert_sealed {
            ($tx:ident, $name:expr, $version:expr, $sealed:expr) => {
                sqlx::query(
                    "INSERT INTO vault_sealed (name, version, nonce, ciphertext, wrapped_key, kek_id)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind($name)
                .bind($version)
                .bind($sealed.nonce.as_slice())
                .bind($sealed.ciphertext.as_slice())
                .bind($sealed.wrapped_key.as_slice())
                .bind($sealed.kek_id.as_str())
                .execute(&mut *$tx)
                .await
                .map_err(|e| {
                    if is_unique_violation(&e) { WriteError::Conflict { found: $version } } else { e.into() }
                })?;
            };
        }
        macro_rules! write_tx {
            ($pool:expr) => {{
                let mut tx = $pool.begin_with(self.begin_statement()).await?;
                let moved = if w.previous == 0 {
                    sqlx::query(
                        "INSERT INTO vault_subjects (id, version, create_time_us, update_time_us) VALUES ($1, 1, $2, $2)
                         ON CONFLICT (id) DO NOTHING",
                    )
                    .bind(w.id)
                    .bind(w.now_us)
                    .execute(&mut *tx)
                    .await?
                } else {
                    sqlx::query("UPDATE vault_subjects SET version = $1, update_time_us = $2 WHERE id = $3 AND version = $4")
                        .bind(version)
                        .bind(w.now_us)
                        .bind(w.id)
                        .bind(w.previous)
                        .execute(&mut *tx)
                        .await?
                };
                if moved.rows_affected() != 1 {
                    let found: Option<(i64,)> = sqlx::query_as("SELECT version FROM vault_subjects WHERE id = $1")
                        .bind(w.id)
                        .fetch_optional(&mut *tx)
                        .await?;
                    return Err(WriteError::Conflict { found: found.map_or(0, |r| r.0) });
                }
                insert_sealed!(tx, &name, version, w.sealed);
                sqlx::query("DELETE FROM vault_search_index WHERE subject_id = $1").bind(w.id).execute(&mut *tx).await?;
                for chunk in w.tokens.chunks(ROWS_PER_STATEMENT) {
                    let sql = format!(
                        "INSERT INTO vault_search_index (token, subject_id) VALUES {}",
                        placeholders(1, chunk.len(), 2)
                    );
                    let mut q = sqlx::query(&sql);
                    for token in chunk {
                        q = q.bind(token.as_slice()).bind(w.id);
                    }
                    q.execute(&mut *tx).await?;
                }
                sqlx::query("DELETE FROM vault_relationship_keys WHERE subject_id = $1")
                    .bind(w.id)
                    .execute(&mut *tx)
                    .await?;
                for (kind, key) in w.relationship_keys {
                    sqlx::query("INSERT INTO vault_relationship_keys (subject_id, kind, rkey) VALUES ($1, $2, $3)")
                        .bind(w.id)
                        .bind(*kind)
                        .bind(key.as_slice())
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }};
        }
        on_pool!(&self.db, pool => write_tx!(pool))
    }

    /// A subject's current profile.
    pub async fn subject(&self, id: &str) -> Result<Option<StoredHead>, sqlx::Error> {
        let row: Option<HeadRow> = on_pool!(&self.db, pool => sqlx::query_as(
            "SELECT s.version, '', s.create_time_us, s.update_time_us, x.nonce, x.ciphertext, x.wrapped_key, x.kek_id
             FROM vault_subjects s JOIN vault_sealed x ON x.name = $1 AND x.version = s.version
             WHERE s.id = $2")
            .bind(crate::names::subject_name(id)).bind(id).fetch_optional(pool).await)?;
        Ok(row.map(head))
    }

    /// A subject's relationship keys, by kind.
    pub async fn relationship_keys(&self, id: &str) -> Result<Vec<(String, Vec<u8>)>, sqlx::Error> {
        on_pool!(&self.db, pool => sqlx::query_as(
            "SELECT kind, rkey FROM vault_relationship_keys WHERE subject_id = $1 ORDER BY kind")
            .bind(id).fetch_all(pool).await)
    }

    /// The current version of a record (0: none).
    pub async fn record_version(&self, name: &str) -> Result<i64, sqlx::Error> {
        let row: Option<(i64,)> = on_pool!(&self.db, pool => sqlx::query_as(
            "SELECT version FROM vault_records WHERE name = $1").bind(name).fetch_optional(pool).await)?;
        Ok(row.map_or(0, |r| r.0))
    }

    /// Writes a record's new version; fails with `Conflict` if the stored
    /// version is not `previous`, `NoParent` if the subject does not exist.
    pub async fn write_record(&self, w: &RecordWrite<'_>) -> Result<(), WriteError> {
        let version = w.previous + 1;
        macro_rules! write_tx {
            ($pool:expr) => {{
                let mut tx = $pool.begin_with(self.begin_statement()).await?;
                let parent: Option<(i64,)> = sqlx::query_as("SELECT version FROM vault_subjects WHERE id = $1")
                    .bind(w.subject_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                if parent.is_none() {
                    return Err(WriteError::NoParent);
                }
                let moved = if w.previous == 0 {
                    sqlx::query(
                        "INSERT INTO vault_records (name, subject_id, kind, version, create_time_us, update_time_us)
                         VALUES ($1, $2, $3, 1, $4, $4) ON CONFLICT (name) DO NOTHING",
                    )
                    .bind(w.name)
                    .bind(w.subject_id)
                    .bind(w.kind)
                    .bind(w.now_us)
                    .execute(&mut *tx)
                    .await?
                } else {
                    sqlx::query(
                        "UPDATE vault_records SET version = $1, kind = $2, update_time_us = $3 WHERE name = $4 AND version = $5",
                    )
                    .bind(version)
                    .bind(w.kind)
                    .bind(w.now_us)
                    .bind(w.name)
                    .bind(w.previous)
                    .execute(&mut *tx)
                    .await?
                };
                if moved.rows_affected() != 1 {
                    let found: Option<(i64,)> = sqlx::query_as("SELECT version FROM vault_records WHERE name = $1")
                        .bind(w.name)
                        .fetch_optional(&mut *tx)
                        .await?;
                    return Err(WriteError::Conflict { found: found.map_or(0, |r| r.0) });
                }
                sqlx::query(
                    "INSERT INTO vault_sealed (name, version, nonce, ciphertext, wrapped_key, kek_id)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(w.name)
                .bind(version)
                .bind(w.sealed.nonce.as_slice())
                .bind(w.sealed.ciphertext.as_slice())
                .bind(w.sealed.wrapped_key.as_slice())
                .bind(w.sealed.kek_id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(|e| if is_unique_violation(&e) { WriteError::Conflict { found: version } } else { e.into() })?;
                tx.commit().await?;
                Ok(())
            }};
        }
        on_pool!(&self.db, pool => write_tx!(pool))
    }

    /// A record's current version.
    pub async fn record(&self, name: &str) -> Result<Option<StoredHead>, sqlx::Error> {
        let row: Option<HeadRow> = on_pool!(&self.db, pool => sqlx::query_as(
            "SELECT r.version, r.kind, r.create_time_us, r.update_time_us, x.nonce, x.ciphertext, x.wrapped_key, x.kek_id
             FROM vault_records r JOIN vault_sealed x ON x.name = r.name AND x.version = r.version
             WHERE r.name = $1")
            .bind(name).fetch_optional(pool).await)?;
        Ok(row.map(head))
    }

    /// The current versions of the records `names`, by name; names without a record are
    /// left out. One statement whatever their number, so concurrent reads can share it.
    pub async fn records(&self, names: &[String]) -> Result<HashMap<String, StoredHead>, sqlx::Error> {
        const HEADS: &str = "SELECT r.name, r.version, r.kind, r.create_time_us, r.update_time_us, x.nonce, x.ciphertext, x.wrapped_key, x.kek_id
             FROM vault_records r JOIN vault_sealed x ON x.name = r.name AND x.version = r.version WHERE r.name";
        let rows: Vec<NamedHeadRow> = match &self.db {
            // The names travel as one JSON array: one prepared statement for any number of them.
            Db::Sqlite(pool) => {
                let list = serde_json::to_string(names).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
                sqlx::query_as(&format!("{HEADS} IN (SELECT value FROM json_each($1))"))
                    .bind(list)
                    .fetch_all(pool)
                    .await?
            }
            Db::Postgres(pool) => sqlx::query_as(&format!("{HEADS} = ANY($1)")).bind(names).fetch_all(pool).await?,
        };
        Ok(rows
            .into_iter()
            .map(|(name, version, kind, create, update, nonce, ciphertext, wrapped_key, kek_id)| {
                (name, head((version, kind, create, update, nonce, ciphertext, wrapped_key, kek_id)))
            })
            .collect())
    }

    /// The names of a subject's records, of `kind` if given, in order.
    pub async fn record_names(&self, subject_id: &str, kind: Option<&str>) -> Result<Vec<String>, sqlx::Error> {
        let rows: Vec<(String,)> = on_pool!(&self.db, pool => sqlx::query_as(
            "SELECT name FROM vault_records WHERE subject_id = $1 AND ($2 IS NULL OR kind = $2) ORDER BY name")
            .bind(subject_id).bind(kind).fetch_all(pool).await)?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// The subjects holding every one of `tokens`, by id, at most `limit`.
    pub async fn search(&self, tokens: &[[u8; 32]], limit: usize) -> Result<Vec<String>, sqlx::Error> {
        if tokens.is_empty() {
            return Ok(Vec::new());
        }
        let list: Vec<String> = (1..=tokens.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT subject_id FROM vault_search_index WHERE token IN ({}) GROUP BY subject_id
             HAVING COUNT(*) = ${} ORDER BY subject_id LIMIT ${}",
            list.join(", "),
            tokens.len() + 1,
            tokens.len() + 2
        );
        let rows: Vec<(String,)> = on_pool!(&self.db, pool => {
            let mut q = sqlx::query_as(&sql);
            for token in tokens {
                q = q.bind(token.as_slice());
            }
            q.bind(tokens.len() as i64).bind(i64::try_from(limit).unwrap_or(i64::MAX)).fetch_all(pool).await
        })?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// Up to `limit` sealed rows whose data key is not wrapped under `kek_id`.
    pub async fn wrapped_elsewhere(&self, kek_id: &str, limit: usize) -> Result<Vec<WrappedRow>, sqlx::Error> {
        let rows: Vec<(String, i64, Vec<u8>, String)> = on_pool!(&self.db, pool => sqlx::query_as(
            "SELECT name, version, wrapped_key, kek_id FROM vault_sealed WHERE kek_id <> $1 ORDER BY name, version LIMIT $2")
            .bind(kek_id).bind(i64::try_from(limit).unwrap_or(i64::MAX)).fetch_all(pool).await)?;
        Ok(rows
            .into_iter()
            .map(|(name, version, wrapped_key, kek_id)| WrappedRow { name, version, wrapped_key, kek_id })
            .collect())
    }

    /// Replaces wrapped keys in one transaction, each only if its row is still
    /// under the KEK it was read under; returns how many rows changed.
    pub async fn replace_wrapped(&self, updates: &[(WrappedRow, Vec<u8>, String)]) -> Result<u64, sqlx::Error> {
        macro_rules! write_tx {
            ($pool:expr) => {{
                let mut tx = $pool.begin_with(self.begin_statement()).await?;
                let mut changed = 0;
                for (row, wrapped_key, kek_id) in updates {
                    changed += sqlx::query(
                        "UPDATE vault_sealed SET wrapped_key = $1, kek_id = $2 WHERE name = $3 AND version = $4 AND kek_id = $5",
                    )
                    .bind(wrapped_key.as_slice())
                    .bind(kek_id.as_str())
                    .bind(row.name.as_str())
                    .bind(row.version)
                    .bind(row.kek_id.as_str())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                }
                tx.commit().await?;
                Ok(changed)
            }};
        }
        on_pool!(&self.db, pool => write_tx!(pool))
    }

    /// How many data keys each KEK wraps.
    pub async fn key_usage(&self) -> Result<Vec<(String, i64)>, sqlx::Error> {
        on_pool!(&self.db, pool => sqlx::query_as(
            "SELECT kek_id, COUNT(*) FROM vault_sealed GROUP BY kek_id ORDER BY kek_id").fetch_all(pool).await)
    }

    /// Adds an access to a subject's access index (idempotent).
    pub async fn add_access(&self, access: &IndexedAccess) -> Result<(), sqlx::Error> {
        self.add_accesses(std::slice::from_ref(access)).await.map(|_| ())
    }

    /// Indexes several accesses in one transaction (each row at most once);
    /// returns how many rows were not there before. On SQLite in multi-row
    /// statements: each statement is a hop to sqlx's connection thread, and
    /// this runs once per group of guarded reads.
    pub async fn add_accesses(&self, accesses: &[IndexedAccess]) -> Result<u64, sqlx::Error> {
        let mut indexes = Vec::with_capacity(accesses.len());
        for access in accesses {
            indexes.push(i64::try_from(access.ledger_index).map_err(|e| sqlx::Error::Encode(Box::new(e)))?);
        }
        let mut inserted = 0;
        match &self.access_index {
            Db::Sqlite(pool) => {
                let mut tx = pool.begin_with(self.begin_statement()).await?;
                let mut done = 0;
                for rows in statement_sizes(accesses.len()) {
                    let sql = insert_sql(
                        "INSERT INTO vault_access_index (subject_id, ledger_index, visible_from_us, salt) VALUES",
                        4,
                        rows,
                        " ON CONFLICT (subject_id, ledger_index) DO NOTHING",
                    );
                    let mut q = sqlx::query(&sql);
                    for (access, index) in accesses.iter().zip(&indexes).skip(done).take(rows) {
                        q = q.bind(&access.subject_id).bind(index).bind(access.visible_from_us).bind(&access.salt);
                    }
                    inserted += q.execute(&mut *tx).await?.rows_affected();
                    done += rows;
                }
                tx.commit().await?;
            }
            Db::Postgres(pool) => {
                let mut tx = pool.begin_with(self.begin_statement()).await?;
                for (access, index) in accesses.iter().zip(&indexes) {
                    let result = sqlx::query(
                        "INSERT INTO vault_access_index (subject_id, ledger_index, visible_from_us, salt) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (subject_id, ledger_index) DO NOTHING",
                    )
                    .bind(&access.subject_id)
                    .bind(index)
                    .bind(access.visible_from_us)
                    .bind(access.salt.as_slice())
                    .execute(&mut *tx)
                    .await?;
                    inserted += result.rows_affected();
                }
                tx.commit().await?;
            }
        }
        Ok(inserted)
    }

    /// The accesses to a subject visible at `now_us`, above ledger index
    /// `after` (exclusive, -1 for the start), at most `limit`, in order.
    pub async fn accesses(
        &self,
        subject_id: &str,
        now_us: i64,
        after: i64,
        limit: usize,
    ) -> Result<Vec<IndexedAccess>, sqlx::Error> {
        let rows: Vec<(i64, i64, Vec<u8>)> = on_pool!(&self.access_index, pool => sqlx::query_as(
            "SELECT ledger_index, visible_from_us, salt FROM vault_access_index
             WHERE subject_id = $1 AND visible_from_us <= $2 AND ledger_index > $3 ORDER BY ledger_index LIMIT $4")
            .bind(subject_id).bind(now_us).bind(after).bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(pool).await)?;
        Ok(rows
            .into_iter()
            .map(|(index, visible_from_us, salt)| IndexedAccess {
                subject_id: subject_id.to_string(),
                ledger_index: index as u64,
                visible_from_us,
                salt,
            })
            .collect())
    }

    /// Empties the access index, before a rebuild from the ledger.
    pub async fn clear_access_index(&self) -> Result<(), sqlx::Error> {
        on_pool!(&self.access_index, pool => sqlx::query("DELETE FROM vault_access_index").execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Records a break-glass grant's start.
    pub async fn add_break_glass(&self, row: &BreakGlassRow) -> Result<(), sqlx::Error> {
        on_pool!(&self.db, pool => sqlx::query(
            "INSERT INTO vault_break_glass (id, grantee, subject_id, start_us, expire_us, ended_us)
             VALUES ($1, $2, $3, $4, $5, NULL)")
            .bind(&row.id).bind(&row.grantee).bind(&row.subject_id).bind(row.start_us).bind(row.expire_us)
            .execute(pool).await.map(|_| ()))
    }

    /// A break-glass grant by id.
    pub async fn break_glass(&self, id: &str) -> Result<Option<BreakGlassRow>, sqlx::Error> {
        on_pool!(&self.db, pool => sqlx::query_as(
            "SELECT id, grantee, subject_id, start_us, expire_us, ended_us FROM vault_break_glass WHERE id = $1")
            .bind(id).fetch_optional(pool).await)
    }

    /// Marks a grant ended at `now_us`, unless it already was; whether it changed.
    pub async fn end_break_glass(&self, id: &str, now_us: i64) -> Result<bool, sqlx::Error> {
        let changed = on_pool!(&self.db, pool => sqlx::query(
            "UPDATE vault_break_glass SET ended_us = $1 WHERE id = $2 AND ended_us IS NULL")
            .bind(now_us).bind(id).execute(pool).await.map(|done| done.rows_affected()))?;
        Ok(changed == 1)
    }
}
