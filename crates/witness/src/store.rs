//! The witness's one piece of state, on SQLite (the embedded default) or PostgreSQL: for each
//! log, the size and root of the latest checkpoint it cosigned.
//!
//! Moving a log's state forward is a compare-and-swap in a single statement (`UPDATE … WHERE
//! size = old AND root = old`, or `INSERT … ON CONFLICT DO NOTHING` for a log seen for the first
//! time), whose affected-row count says whether this request won. A single statement is atomic
//! on both engines, and unlike a read-then-write transaction it needs no upgrade of a SQLite read
//! lock (which fails at once with `SQLITE_BUSY` under concurrent writers instead of waiting); on
//! PostgreSQL a concurrent update of the same row waits for the first to commit and then finds
//! its `WHERE` no longer true. The caller reads the state, decides, and on a lost race reads again.
use quis_core::{db::Db, on_pool};
use quis_tlog::{HASH_SIZE, Hash};

const SCHEMA_SQLITE: &str =
    "CREATE TABLE IF NOT EXISTS witness_logs (origin TEXT PRIMARY KEY, size BIGINT NOT NULL, root BLOB NOT NULL)";

const SCHEMA_POSTGRES: &str =
    "CREATE TABLE IF NOT EXISTS witness_logs (origin TEXT PRIMARY KEY, size BIGINT NOT NULL, root BYTEA NOT NULL)";

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
    #[error("stored state is corrupt: {0}")]
    Corrupt(String),
    #[error("tree size {0} does not fit the store (at most 2^63-1)")]
    TooLarge(u64),
}

/// The size and root of the latest checkpoint cosigned for a log.
pub type State = (u64, Hash);

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct WitnessStore {
    db: Db,
}

fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::TooLarge(v))
}

impl WitnessStore {
    /// Connects to `sqlite://…` or `postgres://…` and creates the table if needed.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let db = Db::connect(url).await?;
        db.migrate(SCHEMA_SQLITE, SCHEMA_POSTGRES).await?;
        Ok(Self { db })
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The latest cosigned state of `origin`, if any.
    pub async fn latest(&self, origin: &str) -> Result<Option<State>, StoreError> {
        let row: Option<(i64, Vec<u8>)> = on_pool!(&self.db, pool => sqlx::query_as(
            "SELECT size, root FROM witness_logs WHERE origin = $1"
        )
        .bind(origin)
        .fetch_optional(pool)
        .await)?;
        let Some((size, root)) = row else { return Ok(None) };
        let size = u64::try_from(size).map_err(|_| StoreError::Corrupt(format!("{origin}: negative size {size}")))?;
        let root: Hash = root
            .try_into()
            .map_err(|_| StoreError::Corrupt(format!("{origin}: root hash is not {HASH_SIZE} bytes")))?;
        Ok(Some((size, root)))
    }

    /// Moves `origin` from state `from` (`None`: never cosigned) to `to`, only if the stored state
    /// is still `from`. Returns whether it was (`false`: another request moved it first).
    pub async fn advance(&self, origin: &str, from: Option<State>, to: State) -> Result<bool, StoreError> {
        let (new_size, new_root) = (to_i64(to.0)?, to.1);
        let moved = match from {
            None => on_pool!(&self.db, pool => sqlx::query(
                "INSERT INTO witness_logs (origin, size, root) VALUES ($1, $2, $3) ON CONFLICT (origin) DO NOTHING"
            )
            .bind(origin)
            .bind(new_size)
            .bind(new_root.as_slice())
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?,
            Some((old_size, old_root)) => on_pool!(&self.db, pool => sqlx::query(
                "UPDATE witness_logs SET size = $1, root = $2 WHERE origin = $3 AND size = $4 AND root = $5"
            )
            .bind(new_size)
            .bind(new_root.as_slice())
            .bind(origin)
            .bind(to_i64(old_size)?)
            .bind(old_root.as_slice())
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?,
        };
        Ok(moved == 1)
    }
}
