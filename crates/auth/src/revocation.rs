//! The revocation list every service shares.
//!
//! Administrators append events (revoke a token id, suspend or reinstate a
//! principal) to one append-only table in the shared store; every service
//! reloads new events every `auth.revocation_poll_ms` and refuses revoked
//! tokens and suspended principals, cached tokens included. If the list cannot
//! be reloaded for `auth.revocation_max_staleness_secs`, every token is
//! refused: a service that cannot know about revocations fails closed.
use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use arc_swap::ArcSwap;
use quis_core::{db::Db, on_pool};
use tokio_util::sync::CancellationToken;

use crate::{error::AuthError, principal::Principal};

const SCHEMA_SQLITE: &str = "
CREATE TABLE IF NOT EXISTS revocation_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    action TEXT NOT NULL CHECK (action IN ('revoke', 'reinstate')),
    target_kind TEXT NOT NULL CHECK (target_kind IN ('token', 'principal')),
    target TEXT NOT NULL,
    reason TEXT NOT NULL,
    actor TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT
);
CREATE INDEX IF NOT EXISTS revocation_events_target ON revocation_events (target_kind, target, seq)";

const SCHEMA_POSTGRES: &str = "
CREATE TABLE IF NOT EXISTS revocation_events (
    seq BIGSERIAL PRIMARY KEY,
    action TEXT NOT NULL CHECK (action IN ('revoke', 'reinstate')),
    target_kind TEXT NOT NULL CHECK (target_kind IN ('token', 'principal')),
    target TEXT NOT NULL,
    reason TEXT NOT NULL,
    actor TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT
);
CREATE INDEX IF NOT EXISTS revocation_events_target ON revocation_events (target_kind, target, seq)";

/// What an event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetKind {
    Token,
    Principal,
}

impl TargetKind {
    fn as_str(self) -> &'static str {
        match self {
            TargetKind::Token => "token",
            TargetKind::Principal => "principal",
        }
    }
}

/// One row of the append-only revocation log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevocationEvent {
    pub seq: i64,
    pub reinstate: bool,
    pub kind: TargetKind,
    pub target: String,
    pub reason: String,
    pub actor: String,
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
}

type Row = (i64, String, String, String, String, String, i64, Option<i64>);

fn from_row(r: Row) -> RevocationEvent {
    RevocationEvent {
        seq: r.0,
        reinstate: r.1 == "reinstate",
        kind: if r.2 == "token" { TargetKind::Token } else { TargetKind::Principal },
        target: r.3,
        reason: r.4,
        actor: r.5,
        created_at_ms: r.6,
        expires_at_ms: r.7,
    }
}

const COLUMNS: &str = "seq, action, target_kind, target, reason, actor, created_at_ms, expires_at_ms";

/// The revocation log in the shared store.
#[derive(Clone, Debug)]
pub struct RevocationStore {
    db: Db,
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl RevocationStore {
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        let db = Db::connect(url).await?;
        db.migrate(SCHEMA_SQLITE, SCHEMA_POSTGRES).await?;
        Ok(Self { db })
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    async fn append(
        &self,
        reinstate: bool,
        kind: TargetKind,
        target: &str,
        reason: &str,
        actor: &str,
        expires_at_ms: Option<i64>,
    ) -> Result<RevocationEvent, sqlx::Error> {
        let sql = format!(
            "INSERT INTO revocation_events (action, target_kind, target, reason, actor, created_at_ms, expires_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
        );
        let action = if reinstate { "reinstate" } else { "revoke" };
        let now = now_ms();
        let row: Row = match &self.db {
            Db::Sqlite(pool) => {
                sqlx::query_as(&sql)
                    .bind(action)
                    .bind(kind.as_str())
                    .bind(target)
                    .bind(reason)
                    .bind(actor)
                    .bind(now)
                    .bind(expires_at_ms)
                    .fetch_one(pool)
                    .await?
            }
            Db::Postgres(pool) => {
                // Readers advance a cursor over `seq`, so rows must become visible in `seq`
                // order: writers take turns (revocations are rare), and a sequence number
                // is never committed behind one a reader has already passed.
                let mut tx = pool.begin().await?;
                sqlx::query("LOCK TABLE revocation_events IN SHARE ROW EXCLUSIVE MODE").execute(&mut *tx).await?;
                let row = sqlx::query_as(&sql)
                    .bind(action)
                    .bind(kind.as_str())
                    .bind(target)
                    .bind(reason)
                    .bind(actor)
                    .bind(now)
                    .bind(expires_at_ms)
                    .fetch_one(&mut *tx)
                    .await?;
                tx.commit().await?;
                row
            }
        };
        Ok(from_row(row))
    }

    /// Revokes a token id until `expires_at_ms`.
    pub async fn revoke_token(
        &self,
        jti: &str,
        reason: &str,
        actor: &str,
        expires_at_ms: i64,
    ) -> Result<RevocationEvent, sqlx::Error> {
        self.append(false, TargetKind::Token, jti, reason, actor, Some(expires_at_ms)).await
    }

    /// Suspends a principal until reinstated.
    pub async fn suspend(&self, principal: &str, reason: &str, actor: &str) -> Result<RevocationEvent, sqlx::Error> {
        self.append(false, TargetKind::Principal, principal, reason, actor, None).await
    }

    /// Ends a principal's suspension; returns the suspension that ended, or `None` if there was none.
    pub async fn reinstate(
        &self,
        principal: &str,
        reason: &str,
        actor: &str,
    ) -> Result<Option<RevocationEvent>, sqlx::Error> {
        let Some(active) = self.active_suspension(principal).await? else { return Ok(None) };
        self.append(true, TargetKind::Principal, principal, reason, actor, None).await?;
        Ok(Some(active))
    }

    async fn active_suspension(&self, principal: &str) -> Result<Option<RevocationEvent>, sqlx::Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM revocation_events r WHERE target_kind = 'principal' AND target = $1 AND action = 'revoke' \
             AND NOT EXISTS (SELECT 1 FROM revocation_events x WHERE x.target_kind = r.target_kind AND x.target = r.target \
             AND x.action = 'reinstate' AND x.seq > r.seq) ORDER BY seq DESC LIMIT 1"
        );
        let row: Option<Row> =
            on_pool!(&self.db, pool => sqlx::query_as(&sql).bind(principal).fetch_optional(pool).await)?;
        Ok(row.map(from_row))
    }

    /// Events after `seq`, in order, at most `limit`.
    pub async fn events_since(&self, seq: i64, limit: i64) -> Result<Vec<RevocationEvent>, sqlx::Error> {
        let sql = format!("SELECT {COLUMNS} FROM revocation_events WHERE seq > $1 ORDER BY seq LIMIT $2");
        let rows: Vec<Row> =
            on_pool!(&self.db, pool => sqlx::query_as(&sql).bind(seq).bind(limit).fetch_all(pool).await)?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// Revocations in force (not reinstated, not past their expiry) after `seq`, oldest first.
    pub async fn list_active(&self, after_seq: i64, limit: i64) -> Result<Vec<RevocationEvent>, sqlx::Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM revocation_events r WHERE action = 'revoke' AND seq > $1 \
             AND (expires_at_ms IS NULL OR expires_at_ms > $2) \
             AND NOT EXISTS (SELECT 1 FROM revocation_events x WHERE x.target_kind = r.target_kind AND x.target = r.target \
             AND x.action = 'reinstate' AND x.seq > r.seq) ORDER BY seq LIMIT $3"
        );
        let rows: Vec<Row> = on_pool!(&self.db, pool => sqlx::query_as(&sql).bind(after_seq).bind(now_ms()).bind(limit).fetch_all(pool).await)?;
        Ok(rows.into_iter().map(from_row).collect())
    }
}

#[derive(Clone, Debug, Default)]
struct Snapshot {
    /// Revoked token ids and when their revocation stops mattering.
    tokens: HashMap<String, i64>,
    principals: HashSet<String>,
    cursor: i64,
}

/// The in-memory copy of the revocation list that a service checks on every call.
#[derive(Debug)]
pub struct RevocationList {
    snapshot: ArcSwap<Snapshot>,
    refreshed_at_ms: AtomicU64,
    max_staleness: Duration,
}

impl RevocationList {
    pub fn new(max_staleness: Duration) -> Self {
        Self { snapshot: ArcSwap::default(), refreshed_at_ms: AtomicU64::new(0), max_staleness }
    }

    /// Refuses revoked tokens, suspended principals, and everything while the list is stale.
    pub fn check(&self, principal: &Principal) -> Result<(), AuthError> {
        if !self.is_fresh() {
            return Err(AuthError::RevocationListStale);
        }
        let snapshot = self.snapshot.load();
        if snapshot.principals.contains(&principal.id) {
            return Err(AuthError::Suspended);
        }
        if snapshot.tokens.contains_key(&principal.token_id) {
            return Err(AuthError::Revoked);
        }
        Ok(())
    }

    /// Applies the events added since the last refresh.
    pub async fn refresh(&self, store: &RevocationStore) -> Result<(), sqlx::Error> {
        let mut next = (**self.snapshot.load()).clone();
        loop {
            let events = store.events_since(next.cursor, 10_000).await?;
            let done = events.len() < 10_000;
            for e in events {
                next.cursor = e.seq;
                match (e.kind, e.reinstate) {
                    (TargetKind::Token, false) => {
                        next.tokens.insert(e.target, e.expires_at_ms.unwrap_or(i64::MAX));
                    }
                    (TargetKind::Token, true) => {
                        next.tokens.remove(&e.target);
                    }
                    (TargetKind::Principal, false) => {
                        next.principals.insert(e.target);
                    }
                    (TargetKind::Principal, true) => {
                        next.principals.remove(&e.target);
                    }
                }
            }
            if done {
                break;
            }
        }
        // A revocation is kept until the token it names has expired (plus the clock
        // skew verification tolerates); after that verification refuses the token anyway.
        let now = now_ms();
        next.tokens.retain(|_, expires| *expires > now - 600_000);
        self.snapshot.store(Arc::new(next));
        self.refreshed_at_ms.store(now as u64, Ordering::Release);
        Ok(())
    }

    /// Whether the list was reloaded recently enough for verification to proceed.
    pub fn is_fresh(&self) -> bool {
        let age = now_ms().saturating_sub(self.refreshed_at_ms.load(Ordering::Acquire) as i64);
        age <= self.max_staleness.as_millis() as i64
    }

    /// A readiness check: a process whose revocation list is stale refuses every
    /// token, so it must not receive traffic either.
    pub fn readiness(self: &Arc<Self>) -> Arc<dyn quis_core::health::ReadinessCheck> {
        Arc::new(Fresh(Arc::clone(self)))
    }

    /// Reloads every `interval` until `stop`.
    pub fn spawn_refresher(self: &Arc<Self>, store: RevocationStore, interval: Duration, stop: CancellationToken) {
        let list = Arc::clone(self);
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                match list.refresh(&store).await {
                    Ok(()) if failing => {
                        tracing::info!("revocation list reachable again");
                        failing = false;
                    }
                    Ok(()) => {}
                    Err(e) if !failing => {
                        tracing::warn!(error = %e, "revocation list refresh failed; tokens are refused once it is stale");
                        failing = true;
                    }
                    Err(_) => {}
                }
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(interval) => {}
                }
            }
        });
    }
}

struct Fresh(Arc<RevocationList>);

impl quis_core::health::ReadinessCheck for Fresh {
    fn name(&self) -> &str {
        "revocation-list"
    }
    fn check(&self) -> futures::future::BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { if self.0.is_fresh() { Ok(()) } else { Err("stale: tokens are refused".into()) } })
    }
}
