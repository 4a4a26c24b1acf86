//! The two store backends every persistent service supports: SQLite (the
//! embedded default, a file in the data directory) and PostgreSQL.
//!
//! Queries are written once with `$1`-style placeholders, which both engines
//! accept, and run on either pool through [`on_pool!`](crate::on_pool).
use std::{str::FromStr, time::Duration};

use futures::future::BoxFuture;
use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

use crate::health::ReadinessCheck;

/// A connection pool on one of the supported engines.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// Rows per multi-row INSERT on SQLite, the largest of the power-of-two
/// statement sizes a batch is cut into, so that a handful of prepared
/// statements serve every batch (SQLite allows 32,766 bound values).
pub const SQLITE_ROWS_PER_STATEMENT: usize = 256;

/// SQLite's `INSERT INTO <table> (<columns>) VALUES (?, ..), ..` for `rows` rows.
///
/// Anonymous `?` parameters, not `$n`: sqlx resolves each named parameter
/// with `sqlite3_bind_parameter_name`, a linear scan, which made binding a
/// statement quadratic in its parameters (13% of the ledger's CPU at 768).
pub fn insert_sql(prefix: &str, columns: usize, rows: usize, suffix: &str) -> String {
    let row = format!("({})", vec!["?"; columns].join(", "));
    let mut sql = String::with_capacity(prefix.len() + rows * (row.len() + 2) + suffix.len());
    sql.push_str(prefix);
    for r in 0..rows {
        sql.push_str(if r == 0 { " " } else { ", " });
        sql.push_str(&row);
    }
    sql.push_str(suffix);
    sql
}

/// Cuts `len` rows into statements of at most [`SQLITE_ROWS_PER_STATEMENT`]
/// rows whose sizes are powers of two: at most nine distinct statements,
/// each prepared once per connection and reused from sqlx's statement cache.
pub fn statement_sizes(mut len: usize) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if len == 0 {
            return None;
        }
        let rows = if len >= SQLITE_ROWS_PER_STATEMENT { SQLITE_ROWS_PER_STATEMENT } else { 1 << len.ilog2() };
        len -= rows;
        Some(rows)
    })
}

/// Runs the same expression on whichever pool `db` holds: `on_pool!(db, pool => query.fetch_all(pool))`.
#[macro_export]
macro_rules! on_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite($pool) => $body,
            $crate::db::Db::Postgres($pool) => $body,
        }
    };
}

impl Db {
    /// Connects to `sqlite://path?mode=rwc` or `postgres://…`.
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        // FULL sync makes an acknowledged write durable.
        Self::connect_with(url, SqliteSynchronous::Full).await
    }

    /// Connects like [`Db::connect`], for data rebuilt from elsewhere (a secondary
    /// index): on SQLite a commit is not fsynced (`synchronous=NORMAL` in WAL mode),
    /// so a power loss may take back the last commits, never corrupt the file; a
    /// crash of the process loses nothing. PostgreSQL is unchanged.
    pub async fn connect_rebuildable(url: &str) -> Result<Self, sqlx::Error> {
        Self::connect_with(url, SqliteSynchronous::Normal).await
    }

    async fn connect_with(url: &str, synchronous: SqliteSynchronous) -> Result<Self, sqlx::Error> {
        if url.starts_with("sqlite:") {
            // WAL lets several processes share the file.
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(synchronous)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true);
            // A pooled SQLite connection is a file handle on a thread of its own: there is no peer
            // that can hang up, so sqlx's ping before each use is only a second hop to that thread.
            let pool =
                SqlitePoolOptions::new().max_connections(4).test_before_acquire(false).connect_with(options).await?;
            Ok(Db::Sqlite(pool))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let options = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(3))
                .connect_with(options)
                .await?;
            Ok(Db::Postgres(pool))
        } else {
            Err(sqlx::Error::Configuration("store URL must start with sqlite: or postgres:".into()))
        }
    }

    /// Whether this is the PostgreSQL backend.
    pub fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }

    /// Runs a schema script (statements separated by `;`) for the current engine.
    pub async fn migrate(&self, sqlite: &str, postgres: &str) -> Result<(), sqlx::Error> {
        let script = if self.is_postgres() { postgres } else { sqlite };
        for statement in script.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            on_pool!(self, pool => sqlx::query(statement).execute(pool).await.map(|_| ()))?;
        }
        Ok(())
    }

    /// Adds `column` (with its SQL `definition`, e.g. `BIGINT NOT NULL DEFAULT 0`) to a table
    /// created before the column existed; returns whether it was added. `table`, `column` and
    /// `definition` are the schema's own constants, never outside input.
    pub async fn add_column_if_missing(
        &self,
        table: &str,
        column: &str,
        definition: &str,
    ) -> Result<bool, sqlx::Error> {
        let (present,): (i64,) = match self {
            Db::Sqlite(pool) => {
                sqlx::query_as("SELECT COUNT(*) FROM pragma_table_info($1) WHERE name = $2")
                    .bind(table)
                    .bind(column)
                    .fetch_one(pool)
                    .await?
            }
            Db::Postgres(pool) => {
                sqlx::query_as(
                    "SELECT COUNT(*) FROM information_schema.columns \
                     WHERE table_schema = current_schema() AND table_name = $1 AND column_name = $2",
                )
                .bind(table)
                .bind(column)
                .fetch_one(pool)
                .await?
            }
        };
        if present > 0 {
            return Ok(false);
        }
        let statement = format!("ALTER TABLE {table} ADD COLUMN {column} {definition}");
        on_pool!(self, pool => sqlx::query(&statement).execute(pool).await.map(|_| ()))?;
        Ok(true)
    }

    /// A readiness check that the store answers a trivial query.
    pub fn readiness(&self, name: &'static str) -> std::sync::Arc<dyn ReadinessCheck> {
        std::sync::Arc::new(DbReady { db: self.clone(), name })
    }
}

/// Whether a store error is worth retrying as it is: the store could not be reached, or it
/// refused the statement for now (SQLite busy or locked past the busy timeout; PostgreSQL's
/// serialization failures, deadlocks, lock timeouts, shutdowns and connection errors), so services
/// answer `UNAVAILABLE` and clients retry; anything else is a fault.
pub fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        sqlx::Error::Database(d) => {
            let code = d.code().unwrap_or_default();
            if d.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // The primary result code is the low byte of an extended one (SQLITE_BUSY_SNAPSHOT is 517).
                matches!(code.parse::<i32>().map(|c| c & 0xff), Ok(5 | 6))
            } else {
                code.starts_with("08") || matches!(&*code, "40001" | "40P01" | "55P03" | "57P01" | "57P03" | "53300")
            }
        }
        _ => false,
    }
}

struct DbReady {
    db: Db,
    name: &'static str,
}

impl ReadinessCheck for DbReady {
    fn name(&self) -> &str {
        self.name
    }
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            on_pool!(&self.db, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_column_is_added_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display())).await.unwrap();
        db.migrate("CREATE TABLE t (a BIGINT NOT NULL); INSERT INTO t (a) VALUES (7)", "").await.unwrap();
        assert!(db.add_column_if_missing("t", "b", "BIGINT NOT NULL DEFAULT 1").await.unwrap());
        assert!(!db.add_column_if_missing("t", "b", "BIGINT NOT NULL DEFAULT 1").await.unwrap());
        let Db::Sqlite(pool) = &db else { unreachable!() };
        assert!(!pool.options().get_test_before_acquire(), "no ping hop before each statement");
        let row: (i64, i64) = sqlx::query_as("SELECT a, b FROM t").fetch_one(pool).await.unwrap();
        assert_eq!(row, (7, 1));
    }

    /// A write the lock holder keeps waiting past the busy timeout (SQLite), or past a lock
    /// timeout (PostgreSQL), is transient; a broken statement is not.
    #[tokio::test]
    async fn a_locked_store_is_transient_a_bad_statement_is_not() {
        use sqlx::{Connection, Executor};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let db = Db::connect(&format!("sqlite://{}?mode=rwc", path.display())).await.unwrap();
        db.migrate("CREATE TABLE t (a BIGINT NOT NULL)", "").await.unwrap();
        let mut holder = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
        holder.execute("BEGIN IMMEDIATE").await.unwrap();
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .unwrap()
            .busy_timeout(Duration::from_millis(50));
        let mut waiter = sqlx::SqliteConnection::connect_with(&options).await.unwrap();
        let busy = waiter.execute("INSERT INTO t (a) VALUES (1)").await.expect_err("the file is locked");
        assert!(is_transient(&busy), "{busy}");
        let broken = waiter.execute("INSERT INTO missing (a) VALUES (1)").await.expect_err("no such table");
        assert!(!is_transient(&broken), "{broken}");

        let url = "postgres://postgres@127.0.0.1:5432/test";
        let mut holder = sqlx::PgConnection::connect(url).await.unwrap();
        let mut waiter = sqlx::PgConnection::connect(url).await.unwrap();
        let table = format!("quis_transient_{}", std::process::id());
        holder.execute(&*format!("CREATE TABLE {table} (a BIGINT)")).await.unwrap();
        holder.execute("BEGIN").await.unwrap();
        holder.execute(&*format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")).await.unwrap();
        waiter.execute("SET lock_timeout = '50ms'").await.unwrap();
        let locked = waiter.execute(&*format!("INSERT INTO {table} (a) VALUES (1)")).await.expect_err("locked");
        assert!(is_transient(&locked), "{locked}");
        holder.execute("ROLLBACK").await.unwrap();
        holder.execute(&*format!("DROP TABLE {table}")).await.unwrap();
        let broken = waiter.execute("SELECT * FROM quis_no_such_table").await.expect_err("no such table");
        assert!(!is_transient(&broken), "{broken}");
    }

    #[test]
    fn batches_are_cut_into_a_few_statement_sizes() {
        for len in [0, 1, 2, 3, 255, 256, 257, 1000, 8192, 8191] {
            let sizes: Vec<usize> = statement_sizes(len).collect();
            assert_eq!(sizes.iter().sum::<usize>(), len);
            assert!(sizes.iter().all(|s| s.is_power_of_two() && *s <= SQLITE_ROWS_PER_STATEMENT), "{len}: {sizes:?}");
        }
        assert_eq!(
            insert_sql("INSERT INTO t (a, b) VALUES", 2, 2, " ON CONFLICT DO NOTHING"),
            "INSERT INTO t (a, b) VALUES (?, ?), (?, ?) ON CONFLICT DO NOTHING"
        );
    }
}
