//! The policy store, on SQLite or PostgreSQL: the current entities, the
//! policy-set versions, and an append-only change feed that every replica
//! follows.
//!
//! Every write bumps the one-row `policy_head` first, inside its transaction:
//! that row lock makes writers take turns, so sequence numbers become visible
//! in order and a replica that has applied the feed up to the head it read has
//! seen every change committed before that read. A write calls its `gate` (the
//! ledger append) after staging and before committing: if the gate refuses,
//! the transaction rolls back and nothing is stored.
use futures::TryStreamExt;
use quis_core::{db::Db, on_pool};
use sha2::{Digest, Sha256};
use sqlx::QueryBuilder;

use crate::error::PolicyError;

const SCHEMA_SQLITE: &str = "
CREATE TABLE IF NOT EXISTS policy_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq BIGINT NOT NULL);
INSERT INTO policy_head (id, seq) VALUES (1, 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS policy_entities (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    body BLOB NOT NULL,
    hash BLOB NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE TABLE IF NOT EXISTS policy_changes (
    seq BIGINT PRIMARY KEY,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    body BLOB,
    actor TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS policy_versions (
    version INTEGER PRIMARY KEY AUTOINCREMENT,
    text TEXT NOT NULL,
    hash TEXT NOT NULL,
    description TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('proposed', 'active', 'superseded')),
    proposed_by TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    approved_by TEXT,
    approved_at_ms BIGINT
)";

const SCHEMA_POSTGRES: &str = "
CREATE TABLE IF NOT EXISTS policy_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq BIGINT NOT NULL);
INSERT INTO policy_head (id, seq) VALUES (1, 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS policy_entities (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    body BYTEA NOT NULL,
    hash BYTEA NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE TABLE IF NOT EXISTS policy_changes (
    seq BIGINT PRIMARY KEY,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    body BYTEA,
    actor TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS policy_versions (
    version BIGSERIAL PRIMARY KEY,
    text TEXT NOT NULL,
    hash TEXT NOT NULL,
    description TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('proposed', 'active', 'superseded')),
    proposed_by TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    approved_by TEXT,
    approved_at_ms BIGINT
)";

/// The feed's kind for the activation of a policy-set version (its id is the version number).
pub const POLICY_KIND: &str = "policy";

/// Rows per multi-row statement: 5 parameters each stays far below both engines' limits.
const CHUNK: usize = 1000;

/// An entity to write: its kind (`staff`, `teams`, ...), id, and encoded `quis.policy.v1.Entity`.
#[derive(Clone, Debug)]
pub struct EntityWrite {
    pub kind: &'static str,
    pub id: String,
    pub body: Vec<u8>,
}

/// A current entity as stored: its kind, id and encoded `quis.policy.v1.Entity`.
#[derive(Clone, Debug)]
pub struct StoredEntity {
    pub kind: String,
    pub id: String,
    pub body: Vec<u8>,
}

/// One change of the feed; `body` is `None` for a deletion or a policy activation.
#[derive(Clone, Debug)]
pub struct Change {
    pub seq: i64,
    pub kind: String,
    pub id: String,
    pub body: Option<Vec<u8>>,
}

/// What a staged write is about to do, shown to the gate before commit.
#[derive(Clone, Debug)]
pub struct Pending {
    /// The head of the feed once the write commits (the new entity version).
    pub head: i64,
    /// How many entities change.
    pub changed: usize,
}

/// The outcome of an upsert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upserted {
    /// The feed head after the write (unchanged when nothing changed).
    pub head: i64,
    pub changed: usize,
    pub unchanged: usize,
}

/// A stored policy-set version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionRow {
    pub version: i64,
    pub text: String,
    pub hash: String,
    pub description: String,
    pub state: String,
    pub proposed_by: String,
    pub created_at_ms: i64,
    pub approved_by: Option<String>,
    pub approved_at_ms: Option<i64>,
}

type VersionTuple = (i64, String, String, String, String, String, i64, Option<String>, Option<i64>);

fn version_row(t: VersionTuple) -> VersionRow {
    VersionRow {
        version: t.0,
        text: t.1,
        hash: t.2,
        description: t.3,
        state: t.4,
        proposed_by: t.5,
        created_at_ms: t.6,
        approved_by: t.7,
        approved_at_ms: t.8,
    }
}

const VERSION_COLUMNS: &str =
    "version, text, hash, description, state, proposed_by, created_at_ms, approved_by, approved_at_ms";

pub fn now_ms() -> i64 {
    quis_auth::revocation::now_ms()
}

/// Hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The store of one policy deployment, shared by all its replicas.
#[derive(Clone, Debug)]
pub struct Store {
    db: Db,
}

/// Runs the same transactional body on whichever engine `db` holds.
macro_rules! in_tx {
    ($db:expr, $tx:ident => $body:expr) => {
        match $db {
            Db::Sqlite(pool) => {
                let mut $tx = pool.begin().await?;
                $body
            }
            Db::Postgres(pool) => {
                let mut $tx = pool.begin().await?;
                $body
            }
        }
    };
}

impl Store {
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        let db = Db::connect(url).await?;
        db.migrate(SCHEMA_SQLITE, SCHEMA_POSTGRES).await?;
        Ok(Self { db })
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The head of the change feed: one indexed one-row read, the cost every check shares.
    pub async fn head(&self) -> Result<i64, sqlx::Error> {
        on_pool!(&self.db, pool => sqlx::query_scalar("SELECT seq FROM policy_head WHERE id = 1").fetch_one(pool).await)
    }

    /// Changes after `seq`, in order, at most `limit`.
    pub async fn changes_since(&self, seq: i64, limit: i64) -> Result<Vec<Change>, sqlx::Error> {
        let sql = "SELECT seq, kind, id, body FROM policy_changes WHERE seq > $1 ORDER BY seq LIMIT $2";
        let rows: Vec<(i64, String, String, Option<Vec<u8>>)> =
            on_pool!(&self.db, pool => sqlx::query_as(sql).bind(seq).bind(limit).fetch_all(pool).await)?;
        Ok(rows.into_iter().map(|(seq, kind, id, body)| Change { seq, kind, id, body }).collect())
    }

    /// Sends every current entity to `rows`, `chunk` at a time; returns how many.
    pub async fn load_entities(
        &self,
        chunk: usize,
        rows: tokio::sync::mpsc::Sender<Vec<StoredEntity>>,
    ) -> Result<u64, PolicyError> {
        let sql = "SELECT kind, id, body FROM policy_entities";
        let mut count = 0u64;
        let mut batch = Vec::with_capacity(chunk);
        let closed = || PolicyError::Corrupt("the entity loader stopped".into());
        on_pool!(&self.db, pool => {
            let mut stream = sqlx::query_as::<_, (String, String, Vec<u8>)>(sql).fetch(pool);
            while let Some((kind, id, body)) = stream.try_next().await? {
                batch.push(StoredEntity { kind, id, body });
                count += 1;
                if batch.len() >= chunk {
                    rows.send(std::mem::replace(&mut batch, Vec::with_capacity(chunk))).await.map_err(|_| closed())?;
                }
            }
        });
        if !batch.is_empty() {
            rows.send(batch).await.map_err(|_| closed())?;
        }
        Ok(count)
    }

    /// One page of entities of `kind` after `after_id`, ordered by id.
    pub async fn list_entities(
        &self,
        kind: &str,
        after_id: &str,
        limit: i64,
    ) -> Result<Vec<(String, Vec<u8>)>, sqlx::Error> {
        let sql = "SELECT id, body FROM policy_entities WHERE kind = $1 AND id > $2 ORDER BY id LIMIT $3";
        on_pool!(&self.db, pool => sqlx::query_as(sql).bind(kind).bind(after_id).bind(limit).fetch_all(pool).await)
    }

    /// One entity's body.
    pub async fn entity(&self, kind: &str, id: &str) -> Result<Option<Vec<u8>>, sqlx::Error> {
        let sql = "SELECT body FROM policy_entities WHERE kind = $1 AND id = $2";
        on_pool!(&self.db, pool => sqlx::query_scalar(sql).bind(kind).bind(id).fetch_optional(pool).await)
    }

    /// Creates or replaces entities (each `(kind, id)` at most once) in one
    /// transaction. Entities stored exactly as sent are left alone: repeating a
    /// batch changes nothing, records nothing and leaves the head where it is.
    pub async fn upsert(
        &self,
        entities: &[EntityWrite],
        actor: &str,
        gate: impl AsyncFnOnce(&Pending) -> Result<(), PolicyError>,
    ) -> Result<Upserted, PolicyError> {
        if entities.is_empty() {
            return Ok(Upserted { head: self.head().await?, changed: 0, unchanged: 0 });
        }
        let n = entities.len() as i64;
        let now = now_ms();
        in_tx!(&self.db, tx => {
            let end: i64 = sqlx::query_scalar("UPDATE policy_head SET seq = seq + $1 WHERE id = 1 RETURNING seq")
                .bind(n)
                .fetch_one(&mut *tx)
                .await?;
            let base = end - n;
            let mut changed: Vec<(i64, usize)> = Vec::new();
            for (c, chunk) in entities.chunks(CHUNK).enumerate() {
                let mut q = QueryBuilder::new("INSERT INTO policy_entities (kind, id, body, hash, seq) ");
                q.push_values(chunk.iter().enumerate(), |mut row, (i, e)| {
                    let seq = base + (c * CHUNK + i) as i64 + 1;
                    row.push_bind(e.kind)
                        .push_bind(e.id.as_str())
                        .push_bind(e.body.as_slice())
                        .push_bind(Sha256::digest(&e.body).to_vec())
                        .push_bind(seq);
                });
                q.push(
                    " ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body, hash = excluded.hash, \
                     seq = excluded.seq WHERE policy_entities.hash <> excluded.hash RETURNING seq",
                );
                let seqs: Vec<i64> = q.build_query_scalar().fetch_all(&mut *tx).await?;
                changed.extend(seqs.into_iter().map(|s| (s, (s - base - 1) as usize)));
            }
            if changed.is_empty() {
                tx.rollback().await?;
                return Ok(Upserted { head: self.head().await?, changed: 0, unchanged: entities.len() });
            }
            changed.sort_unstable();
            for chunk in changed.chunks(CHUNK) {
                let mut q = QueryBuilder::new("INSERT INTO policy_changes (seq, kind, id, body, actor, created_at_ms) ");
                q.push_values(chunk, |mut row, (seq, i)| {
                    let e = &entities[*i];
                    row.push_bind(*seq)
                        .push_bind(e.kind)
                        .push_bind(e.id.as_str())
                        .push_bind(Some(e.body.as_slice()))
                        .push_bind(actor)
                        .push_bind(now);
                });
                q.build().execute(&mut *tx).await?;
            }
            gate(&Pending { head: end, changed: changed.len() }).await?;
            tx.commit().await?;
            Ok(Upserted { head: end, changed: changed.len(), unchanged: entities.len() - changed.len() })
        })
    }

    /// Deletes an entity; `Ok(None)` if there was none.
    pub async fn delete(
        &self,
        kind: &'static str,
        id: &str,
        actor: &str,
        gate: impl AsyncFnOnce(&Pending) -> Result<(), PolicyError>,
    ) -> Result<Option<i64>, PolicyError> {
        in_tx!(&self.db, tx => {
            let head: i64 = sqlx::query_scalar("UPDATE policy_head SET seq = seq + 1 WHERE id = 1 RETURNING seq")
                .fetch_one(&mut *tx)
                .await?;
            let deleted = sqlx::query("DELETE FROM policy_entities WHERE kind = $1 AND id = $2")
                .bind(kind)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if deleted == 0 {
                tx.rollback().await?;
                return Ok(None);
            }
            sqlx::query("INSERT INTO policy_changes (seq, kind, id, body, actor, created_at_ms) VALUES ($1, $2, $3, NULL, $4, $5)")
                .bind(head)
                .bind(kind)
                .bind(id)
                .bind(actor)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
            gate(&Pending { head, changed: 1 }).await?;
            tx.commit().await?;
            Ok(Some(head))
        })
    }

    /// Stores a proposed policy-set version (not in force).
    pub async fn propose(
        &self,
        text: &str,
        hash: &str,
        description: &str,
        actor: &str,
        gate: impl AsyncFnOnce(i64) -> Result<(), PolicyError>,
    ) -> Result<VersionRow, PolicyError> {
        let sql = format!(
            "INSERT INTO policy_versions (text, hash, description, state, proposed_by, created_at_ms) \
             VALUES ($1, $2, $3, 'proposed', $4, $5) RETURNING {VERSION_COLUMNS}"
        );
        in_tx!(&self.db, tx => {
            let row: VersionTuple = sqlx::query_as(&sql)
                .bind(text)
                .bind(hash)
                .bind(description)
                .bind(actor)
                .bind(now_ms())
                .fetch_one(&mut *tx)
                .await?;
            gate(row.0).await?;
            tx.commit().await?;
            Ok(version_row(row))
        })
    }

    /// Makes a proposed version the active one (the previous one is superseded) and
    /// announces it on the feed. `approvable` decides on the stored proposal first.
    pub async fn approve(
        &self,
        version: i64,
        approver: &str,
        approvable: impl FnOnce(&VersionRow) -> Result<(), PolicyError>,
        gate: impl AsyncFnOnce(&VersionRow, i64) -> Result<(), PolicyError>,
    ) -> Result<(VersionRow, i64), PolicyError> {
        let select = format!("SELECT {VERSION_COLUMNS} FROM policy_versions WHERE version = $1");
        let now = now_ms();
        in_tx!(&self.db, tx => {
            // The head row lock also serializes approvals, so two cannot both find the same proposal.
            let head: i64 = sqlx::query_scalar("UPDATE policy_head SET seq = seq + 1 WHERE id = 1 RETURNING seq")
                .fetch_one(&mut *tx)
                .await?;
            let row: Option<VersionTuple> = sqlx::query_as(&select).bind(version).fetch_optional(&mut *tx).await?;
            let Some(row) = row.map(version_row) else { return Err(PolicyError::NotFound(format!("policySets/{version}"))) };
            approvable(&row)?;
            sqlx::query("UPDATE policy_versions SET state = 'superseded' WHERE state = 'active'")
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE policy_versions SET state = 'active', approved_by = $1, approved_at_ms = $2 WHERE version = $3")
                .bind(approver)
                .bind(now)
                .bind(version)
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO policy_changes (seq, kind, id, body, actor, created_at_ms) VALUES ($1, $2, $3, NULL, $4, $5)")
                .bind(head)
                .bind(POLICY_KIND)
                .bind(version.to_string())
                .bind(approver)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            let approved = VersionRow {
                state: "active".into(),
                approved_by: Some(approver.to_string()),
                approved_at_ms: Some(now),
                ..row
            };
            gate(&approved, head).await?;
            tx.commit().await?;
            Ok((approved, head))
        })
    }

    /// Installs `text` as an approved version if no version is active yet (the
    /// built-in default at first start); `Ok(None)` if one already was.
    pub async fn bootstrap(
        &self,
        text: &str,
        hash: &str,
        actor: &str,
        gate: impl AsyncFnOnce(i64) -> Result<(), PolicyError>,
    ) -> Result<Option<i64>, PolicyError> {
        let insert = "INSERT INTO policy_versions (text, hash, description, state, proposed_by, created_at_ms, approved_by, approved_at_ms) \
                      VALUES ($1, $2, 'built-in default policy pack', 'active', $3, $4, $3, $4) RETURNING version";
        let now = now_ms();
        in_tx!(&self.db, tx => {
            let head: i64 = sqlx::query_scalar("UPDATE policy_head SET seq = seq + 1 WHERE id = 1 RETURNING seq")
                .fetch_one(&mut *tx)
                .await?;
            let active: Option<i64> = sqlx::query_scalar("SELECT version FROM policy_versions WHERE state = 'active'")
                .fetch_optional(&mut *tx)
                .await?;
            if active.is_some() {
                tx.rollback().await?;
                return Ok(None);
            }
            let version: i64 =
                sqlx::query_scalar(insert).bind(text).bind(hash).bind(actor).bind(now).fetch_one(&mut *tx).await?;
            sqlx::query("INSERT INTO policy_changes (seq, kind, id, body, actor, created_at_ms) VALUES ($1, $2, $3, NULL, $4, $5)")
                .bind(head)
                .bind(POLICY_KIND)
                .bind(version.to_string())
                .bind(actor)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            gate(version).await?;
            tx.commit().await?;
            Ok(Some(version))
        })
    }

    /// One version.
    pub async fn version(&self, version: i64) -> Result<Option<VersionRow>, sqlx::Error> {
        let sql = format!("SELECT {VERSION_COLUMNS} FROM policy_versions WHERE version = $1");
        let row: Option<VersionTuple> =
            on_pool!(&self.db, pool => sqlx::query_as(&sql).bind(version).fetch_optional(pool).await)?;
        Ok(row.map(version_row))
    }

    /// The version in force, if any.
    pub async fn active_version(&self) -> Result<Option<VersionRow>, sqlx::Error> {
        let sql = format!("SELECT {VERSION_COLUMNS} FROM policy_versions WHERE state = 'active'");
        let row: Option<VersionTuple> = on_pool!(&self.db, pool => sqlx::query_as(&sql).fetch_optional(pool).await)?;
        Ok(row.map(version_row))
    }

    /// Versions below `before` (0: from the newest), newest first.
    pub async fn list_versions(&self, before: i64, limit: i64) -> Result<Vec<VersionRow>, sqlx::Error> {
        let before = if before <= 0 { i64::MAX } else { before };
        let sql =
            format!("SELECT {VERSION_COLUMNS} FROM policy_versions WHERE version < $1 ORDER BY version DESC LIMIT $2");
        let rows: Vec<VersionTuple> =
            on_pool!(&self.db, pool => sqlx::query_as(&sql).bind(before).bind(limit).fetch_all(pool).await)?;
        Ok(rows.into_iter().map(version_row).collect())
    }
}
