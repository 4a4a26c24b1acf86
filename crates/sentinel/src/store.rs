//! Sentinel's storage, on SQLite (the embedded default) or PostgreSQL: its
//! cursor in the ledger and the per-actor detection state, committed in the
//! same transaction as the alerts and reviews a batch produced (so a restart
//! resumes exactly: nothing missed, nothing alerted twice); alerts grouped
//! into incidents; the break-glass review queue; the last checkpoint the
//! integrity monitor verified.
use quis_core::{db::Db, on_pool};
use serde::{Deserialize, Serialize};

use crate::detect::{Evidence, MAX_EVIDENCE, NewAlert, Output};

const SCHEMA_SQLITE: &str = "
CREATE TABLE IF NOT EXISTS sentinel_state (id INTEGER PRIMARY KEY CHECK (id = 1), cursor BIGINT NOT NULL,
    accesses BIGINT NOT NULL, explained BIGINT NOT NULL);
INSERT OR IGNORE INTO sentinel_state (id, cursor, accesses, explained) VALUES (1, 0, 0, 0);
CREATE TABLE IF NOT EXISTS sentinel_actors (actor TEXT PRIMARY KEY, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sentinel_staff_days (actor TEXT NOT NULL, day BIGINT NOT NULL, PRIMARY KEY (actor, day));
CREATE TABLE IF NOT EXISTS sentinel_incidents (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
    actor TEXT NOT NULL, severity BIGINT NOT NULL, start_ms BIGINT NOT NULL, end_ms BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS sentinel_incidents_actor ON sentinel_incidents (actor, end_ms);
CREATE TABLE IF NOT EXISTS sentinel_alerts (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
    detection TEXT NOT NULL, severity BIGINT NOT NULL, explanation TEXT NOT NULL, evidence TEXT NOT NULL,
    actor TEXT NOT NULL, event_ms BIGINT NOT NULL, create_ms BIGINT NOT NULL, state BIGINT NOT NULL,
    incident TEXT NOT NULL, triage_note TEXT NOT NULL, triaged_by TEXT NOT NULL, triage_ms BIGINT NOT NULL,
    triage_index BIGINT NOT NULL, first_event_ms BIGINT NOT NULL DEFAULT 0, update_ms BIGINT NOT NULL DEFAULT 0,
    firings BIGINT NOT NULL DEFAULT 1);
CREATE INDEX IF NOT EXISTS sentinel_alerts_incident ON sentinel_alerts (incident);
CREATE INDEX IF NOT EXISTS sentinel_alerts_open ON sentinel_alerts (actor, detection, state, event_ms);
CREATE TABLE IF NOT EXISTS sentinel_reviews (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
    actor TEXT NOT NULL, grant_name TEXT NOT NULL, evidence TEXT NOT NULL, justified BIGINT NOT NULL,
    event_ms BIGINT NOT NULL, state BIGINT NOT NULL, note TEXT NOT NULL, reviewed_by TEXT NOT NULL,
    review_ms BIGINT NOT NULL, review_index BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS sentinel_integrity (id INTEGER PRIMARY KEY CHECK (id = 1), size BIGINT NOT NULL,
    root BLOB NOT NULL, note TEXT NOT NULL)";

const SCHEMA_POSTGRES: &str = "
CREATE TABLE IF NOT EXISTS sentinel_state (id INTEGER PRIMARY KEY CHECK (id = 1), cursor BIGINT NOT NULL,
    accesses BIGINT NOT NULL, explained BIGINT NOT NULL);
INSERT INTO sentinel_state (id, cursor, accesses, explained) VALUES (1, 0, 0, 0) ON CONFLICT (id) DO NOTHING;
CREATE TABLE IF NOT EXISTS sentinel_actors (actor TEXT PRIMARY KEY, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sentinel_staff_days (actor TEXT NOT NULL, day BIGINT NOT NULL, PRIMARY KEY (actor, day));
CREATE TABLE IF NOT EXISTS sentinel_incidents (seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE,
    actor TEXT NOT NULL, severity BIGINT NOT NULL, start_ms BIGINT NOT NULL, end_ms BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS sentinel_incidents_actor ON sentinel_incidents (actor, end_ms);
CREATE TABLE IF NOT EXISTS sentinel_alerts (seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE,
    detection TEXT NOT NULL, severity BIGINT NOT NULL, explanation TEXT NOT NULL, evidence TEXT NOT NULL,
    actor TEXT NOT NULL, event_ms BIGINT NOT NULL, create_ms BIGINT NOT NULL, state BIGINT NOT NULL,
    incident TEXT NOT NULL, triage_note TEXT NOT NULL, triaged_by TEXT NOT NULL, triage_ms BIGINT NOT NULL,
    triage_index BIGINT NOT NULL, first_event_ms BIGINT NOT NULL DEFAULT 0, update_ms BIGINT NOT NULL DEFAULT 0,
    firings BIGINT NOT NULL DEFAULT 1);
CREATE INDEX IF NOT EXISTS sentinel_alerts_incident ON sentinel_alerts (incident);
CREATE INDEX IF NOT EXISTS sentinel_alerts_open ON sentinel_alerts (actor, detection, state, event_ms);
CREATE TABLE IF NOT EXISTS sentinel_reviews (seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE,
    actor TEXT NOT NULL, grant_name TEXT NOT NULL, evidence TEXT NOT NULL, justified BIGINT NOT NULL,
    event_ms BIGINT NOT NULL, state BIGINT NOT NULL, note TEXT NOT NULL, reviewed_by TEXT NOT NULL,
    review_ms BIGINT NOT NULL, review_index BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS sentinel_integrity (id INTEGER PRIMARY KEY CHECK (id = 1), size BIGINT NOT NULL,
    root BYTEA NOT NULL, note TEXT NOT NULL)";

/// Columns added to `sentinel_alerts` after its first release (see [`SentinelStore::connect`]).
const ADDED_ALERT_COLUMNS: [(&str, &str); 3] = [
    ("first_event_ms", "BIGINT NOT NULL DEFAULT 0"),
    ("update_ms", "BIGINT NOT NULL DEFAULT 0"),
    ("firings", "BIGINT NOT NULL DEFAULT 1"),
];

/// Alert states, as stored (the `quis.sentinel.v1.AlertState` numbers).
pub const ALERT_OPEN: i64 = 1;
/// Review states, as stored (the `quis.sentinel.v1.ReviewState` numbers).
pub const REVIEW_PENDING: i64 = 1;

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
    #[error("the stored cursor is {found}, expected {expected}: another consumer shares this store")]
    CursorMoved { expected: u64, found: u64 },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

/// A stored alert.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertRow {
    pub seq: i64,
    pub id: String,
    pub detection: String,
    pub severity: i64,
    pub explanation: String,
    pub evidence: Vec<Evidence>,
    pub actor: String,
    /// Event time of the detection's last firing on this alert (of its last evidence entry).
    pub event_ms: i64,
    pub create_ms: i64,
    pub state: i64,
    pub incident: String,
    pub triage_note: String,
    pub triaged_by: String,
    pub triage_ms: i64,
    pub triage_index: i64,
    /// Event time of the detection's first firing on this alert.
    pub first_event_ms: i64,
    /// When the last firing joined it (its creation time if it fired once).
    pub update_ms: i64,
    /// How many times the detection fired into it (see [`SentinelStore::commit_batch`]).
    pub firings: i64,
}

/// A stored incident with its alerts' ids and detections.
#[derive(Clone, Debug, PartialEq)]
pub struct IncidentRow {
    pub id: String,
    pub actor: String,
    pub severity: i64,
    pub start_ms: i64,
    pub end_ms: i64,
    pub alerts: Vec<String>,
    pub detections: Vec<String>,
}

/// A stored review.
#[derive(Clone, Debug, PartialEq)]
pub struct ReviewRow {
    pub seq: i64,
    pub id: String,
    pub actor: String,
    pub grant: String,
    pub evidence: Evidence,
    pub justified: bool,
    pub event_ms: i64,
    pub state: i64,
    pub note: String,
    pub reviewed_by: String,
    pub review_ms: i64,
    pub review_index: i64,
}

/// What the consumer resumes from.
#[derive(Debug)]
pub struct Resume {
    pub cursor: u64,
    pub actors: Vec<(String, String)>,
}

/// The last checkpoint the integrity monitor verified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedCheckpoint {
    pub size: u64,
    pub root: [u8; 32],
    pub note: String,
}

/// Counters for the detection figures.
#[derive(Debug, Default)]
pub struct Stats {
    pub cursor: u64,
    pub alerts: u64,
    pub by_detection: Vec<(String, u64)>,
    pub staff_days: u64,
    pub accesses: u64,
    pub explained: u64,
    /// For every alert raised from events: from its last firing's event time to when that
    /// firing was stored, milliseconds, sorted.
    pub lags_ms: Vec<i64>,
}

/// Alert filters (all optional).
#[derive(Debug, Default)]
pub struct AlertFilter {
    pub detection: Option<String>,
    pub min_severity: Option<i64>,
    pub state: Option<i64>,
    pub actor: Option<String>,
    pub incident: Option<String>,
    /// Only alerts stored before (`before`) or after (`after`) this sequence number.
    pub before_seq: Option<i64>,
    pub after_seq: Option<i64>,
}

enum Param {
    Int(i64),
    Text(String),
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Milliseconds since the epoch, by the server's clock.
pub fn now_ms() -> i64 {
    quis_auth::revocation::now_ms()
}

/// A row of `sentinel_alerts` as read, before its evidence is decoded.
#[derive(sqlx::FromRow)]
struct AlertRecord {
    seq: i64,
    id: String,
    detection: String,
    severity: i64,
    explanation: String,
    evidence: String,
    actor: String,
    event_ms: i64,
    create_ms: i64,
    state: i64,
    incident: String,
    triage_note: String,
    triaged_by: String,
    triage_ms: i64,
    triage_index: i64,
    first_event_ms: i64,
    update_ms: i64,
    firings: i64,
}
const ALERT_COLUMNS: &str = "seq, id, detection, severity, explanation, evidence, actor, event_ms, create_ms, state, \
    incident, triage_note, triaged_by, triage_ms, triage_index, first_event_ms, update_ms, firings";

fn alert_row(r: AlertRecord) -> Result<AlertRow, StoreError> {
    Ok(AlertRow {
        seq: r.seq,
        id: r.id,
        detection: r.detection,
        severity: r.severity,
        explanation: r.explanation,
        evidence: serde_json::from_str(&r.evidence)?,
        actor: r.actor,
        event_ms: r.event_ms,
        create_ms: r.create_ms,
        state: r.state,
        incident: r.incident,
        triage_note: r.triage_note,
        triaged_by: r.triaged_by,
        triage_ms: r.triage_ms,
        triage_index: r.triage_index,
        first_event_ms: r.first_event_ms,
        update_ms: r.update_ms,
        firings: r.firings,
    })
}

type ReviewTuple = (i64, String, String, String, String, i64, i64, i64, String, String, i64, i64);
const REVIEW_COLUMNS: &str =
    "seq, id, actor, grant_name, evidence, justified, event_ms, state, note, reviewed_by, review_ms, review_index";

fn review_row(t: ReviewTuple) -> Result<ReviewRow, StoreError> {
    Ok(ReviewRow {
        seq: t.0,
        id: t.1,
        actor: t.2,
        grant: t.3,
        evidence: serde_json::from_str(&t.4)?,
        justified: t.5 != 0,
        event_ms: t.6,
        state: t.7,
        note: t.8,
        reviewed_by: t.9,
        review_ms: t.10,
        review_index: t.11,
    })
}

/// Runs `$body` in one transaction on whichever pool `$db` holds; `$tx` is the transaction.
macro_rules! in_tx {
    ($db:expr, $tx:ident => $body:expr) => {
        match $db {
            Db::Sqlite(pool) => {
                let mut $tx = pool.begin().await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
            Db::Postgres(pool) => {
                let mut $tx = pool.begin().await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
        }
    };
}

/// Inserts alerts inside a transaction, grouping each into its actor's incident. With a
/// merge window (`Some(ms)`), a detection firing on an actor whose alert for it is still
/// open and last fired at most that long before joins that alert instead (see
/// [`SentinelStore::commit_batch`]).
macro_rules! insert_alerts {
    ($tx:ident, $alerts:expr, $window_ms:expr, $merge_ms:expr, $now:expr) => {{
        let mut stored: Vec<AlertRow> = Vec::new();
        for a in $alerts {
            let a: &NewAlert = a;
            let severity = i64::from(a.severity.to_proto());
            let open: Option<AlertRecord> = match $merge_ms {
                Some(merge_ms) => {
                    sqlx::query_as(&format!(
                        "SELECT {ALERT_COLUMNS} FROM sentinel_alerts WHERE actor = $1 AND detection = $2 \
                         AND state = $3 AND event_ms >= $4 ORDER BY seq DESC LIMIT 1"
                    ))
                    .bind(&a.actor)
                    .bind(a.detection)
                    .bind(ALERT_OPEN)
                    .bind(a.event_time_ms.saturating_sub(merge_ms))
                    .fetch_optional(&mut *$tx)
                    .await?
                }
                None => None,
            };
            if let Some(open) = open {
                let mut row = alert_row(open)?;
                add_firing(&mut row, a, $now);
                sqlx::query(
                    "UPDATE sentinel_alerts SET severity = $1, explanation = $2, evidence = $3, event_ms = $4, \
                     update_ms = $5, firings = $6 WHERE id = $7",
                )
                .bind(row.severity)
                .bind(&row.explanation)
                .bind(serde_json::to_string(&row.evidence)?)
                .bind(row.event_ms)
                .bind(row.update_ms)
                .bind(row.firings)
                .bind(&row.id)
                .execute(&mut *$tx)
                .await?;
                sqlx::query(
                    "UPDATE sentinel_incidents SET end_ms = CASE WHEN end_ms > $1 THEN end_ms ELSE $1 END, \
                     severity = CASE WHEN severity > $2 THEN severity ELSE $2 END WHERE id = $3",
                )
                .bind(row.event_ms)
                .bind(row.severity)
                .bind(&row.incident)
                .execute(&mut *$tx)
                .await?;
                // A later firing in the same batch finds the updated row; report each alert once.
                stored.retain(|s| s.id != row.id);
                stored.push(row);
                continue;
            }
            let latest: Option<(String, i64, i64)> = sqlx::query_as(
                "SELECT id, end_ms, severity FROM sentinel_incidents WHERE actor = $1 ORDER BY end_ms DESC, seq DESC LIMIT 1",
            )
            .bind(&a.actor)
            .fetch_optional(&mut *$tx)
            .await?;
            let incident = match latest {
                Some((id, end_ms, sev)) if a.event_time_ms - end_ms <= $window_ms => {
                    sqlx::query("UPDATE sentinel_incidents SET end_ms = $1, severity = $2 WHERE id = $3")
                        .bind(end_ms.max(a.event_time_ms))
                        .bind(sev.max(severity))
                        .bind(&id)
                        .execute(&mut *$tx)
                        .await?;
                    id
                }
                _ => {
                    let id = uuid::Uuid::new_v4().to_string();
                    sqlx::query(
                        "INSERT INTO sentinel_incidents (id, actor, severity, start_ms, end_ms) VALUES ($1, $2, $3, $4, $4)",
                    )
                    .bind(&id)
                    .bind(&a.actor)
                    .bind(severity)
                    .bind(a.event_time_ms)
                    .execute(&mut *$tx)
                    .await?;
                    id
                }
            };
            let id = uuid::Uuid::new_v4().to_string();
            let (seq,): (i64,) = sqlx::query_as(
                "INSERT INTO sentinel_alerts (id, detection, severity, explanation, evidence, actor, event_ms, create_ms, \
                 state, incident, triage_note, triaged_by, triage_ms, triage_index, first_event_ms, update_ms, firings) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, '', '', 0, 0, $7, $8, 1) RETURNING seq",
            )
            .bind(&id)
            .bind(a.detection)
            .bind(severity)
            .bind(&a.explanation)
            .bind(serde_json::to_string(&a.evidence)?)
            .bind(&a.actor)
            .bind(a.event_time_ms)
            .bind($now)
            .bind(ALERT_OPEN)
            .bind(&incident)
            .fetch_one(&mut *$tx)
            .await?;
            stored.push(AlertRow {
                seq,
                id,
                detection: a.detection.to_string(),
                severity,
                explanation: a.explanation.clone(),
                evidence: a.evidence.clone(),
                actor: a.actor.clone(),
                event_ms: a.event_time_ms,
                create_ms: $now,
                state: ALERT_OPEN,
                incident,
                triage_note: String::new(),
                triaged_by: String::new(),
                triage_ms: 0,
                triage_index: 0,
                first_event_ms: a.event_time_ms,
                update_ms: $now,
                firings: 1,
            });
        }
        stored
    }};
}

/// Joins a new firing of an alert's detection to the alert: the highest severity, the
/// latest explanation, the evidence of both (the first and the latest entries when that
/// exceeds [`MAX_EVIDENCE`]).
fn add_firing(row: &mut AlertRow, a: &NewAlert, now_ms: i64) {
    row.severity = row.severity.max(i64::from(a.severity.to_proto()));
    row.explanation.clone_from(&a.explanation);
    let mut evidence: Vec<Evidence> = row.evidence.drain(..).chain(a.evidence.iter().cloned()).collect();
    evidence.sort_by_key(|e| e.index);
    evidence.dedup_by_key(|e| e.index);
    if evidence.len() > MAX_EVIDENCE {
        evidence.drain(MAX_EVIDENCE / 2..evidence.len() - (MAX_EVIDENCE - MAX_EVIDENCE / 2));
    }
    row.evidence = evidence;
    row.first_event_ms = row.first_event_ms.min(a.event_time_ms);
    row.event_ms = row.event_ms.max(a.event_time_ms);
    row.update_ms = now_ms;
    row.firings += 1;
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct SentinelStore {
    db: Db,
    incident_window_ms: i64,
    /// `None`: every firing is an alert of its own.
    alert_window_ms: Option<i64>,
}

impl SentinelStore {
    /// Opens the store: alerts on one actor less than `incident_window_secs` apart share an
    /// incident; a detection firing again on an actor within `alert_window_secs` of its open
    /// alert's last firing joins that alert (0: never).
    pub async fn connect(url: &str, incident_window_secs: u64, alert_window_secs: u64) -> Result<Self, StoreError> {
        let db = Db::connect(url).await?;
        db.migrate(SCHEMA_SQLITE, SCHEMA_POSTGRES).await?;
        let mut added = false;
        for (column, definition) in ADDED_ALERT_COLUMNS {
            added |= db.add_column_if_missing("sentinel_alerts", column, definition).await?;
        }
        if added {
            // Alerts stored before firings were counted fired once.
            on_pool!(&db, pool => sqlx::query(
                "UPDATE sentinel_alerts SET first_event_ms = event_ms, update_ms = create_ms WHERE first_event_ms = 0")
                .execute(pool).await.map(|_| ()))?;
        }
        Ok(Self {
            db,
            incident_window_ms: to_i64(incident_window_secs).saturating_mul(1000),
            alert_window_ms: (alert_window_secs > 0).then(|| to_i64(alert_window_secs).saturating_mul(1000)),
        })
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The cursor and the saved actor states.
    pub async fn resume(&self) -> Result<Resume, StoreError> {
        let (cursor,): (i64,) = on_pool!(&self.db, pool => sqlx::query_as("SELECT cursor FROM sentinel_state WHERE id = 1").fetch_one(pool).await)?;
        let actors: Vec<(String, String)> = on_pool!(&self.db, pool => sqlx::query_as("SELECT actor, state FROM sentinel_actors").fetch_all(pool).await)?;
        Ok(Resume { cursor: cursor as u64, actors })
    }

    /// The next ledger index the consumer will process.
    pub async fn cursor(&self) -> Result<u64, StoreError> {
        let (cursor,): (i64,) = on_pool!(&self.db, pool => sqlx::query_as("SELECT cursor FROM sentinel_state WHERE id = 1").fetch_one(pool).await)?;
        Ok(cursor as u64)
    }

    /// Commits a processed batch: moves the cursor from `from` to `to` (failing, writing
    /// nothing, if another consumer moved it), and stores the alerts, reviews, counters and
    /// actor states the batch produced. Returns the alerts stored or updated.
    ///
    /// A detection that fires again on an actor while its alert for that actor is open
    /// (untriaged) and last fired within the alert window adds a firing to that alert rather
    /// than raising another: one alert per episode of one kind of behaviour, which is what an
    /// analyst triages. Once the alert is triaged, the next firing is a new alert.
    pub async fn commit_batch(&self, from: u64, to: u64, out: &Output) -> Result<Vec<AlertRow>, StoreError> {
        let now = now_ms();
        let (window, merge) = (self.incident_window_ms, self.alert_window_ms);
        let stored = in_tx!(&self.db, tx => {
            let moved = sqlx::query(
                "UPDATE sentinel_state SET cursor = $1, accesses = accesses + $2, explained = explained + $3 \
                 WHERE id = 1 AND cursor = $4",
            )
            .bind(to_i64(to))
            .bind(to_i64(out.accesses))
            .bind(to_i64(out.explained))
            .bind(to_i64(from))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if moved != 1 {
                let (found,): (i64,) =
                    sqlx::query_as("SELECT cursor FROM sentinel_state WHERE id = 1").fetch_one(&mut *tx).await?;
                return Err(StoreError::CursorMoved { expected: from, found: found as u64 });
            }
            for (actor, state) in &out.changed {
                sqlx::query(
                    "INSERT INTO sentinel_actors (actor, state) VALUES ($1, $2) \
                     ON CONFLICT (actor) DO UPDATE SET state = excluded.state",
                )
                .bind(actor)
                .bind(state)
                .execute(&mut *tx)
                .await?;
            }
            for actor in &out.forgotten {
                sqlx::query("DELETE FROM sentinel_actors WHERE actor = $1").bind(actor).execute(&mut *tx).await?;
            }
            for (actor, day) in &out.staff_days {
                sqlx::query("INSERT INTO sentinel_staff_days (actor, day) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                    .bind(actor)
                    .bind(*day)
                    .execute(&mut *tx)
                    .await?;
            }
            for r in &out.reviews {
                sqlx::query(
                    "INSERT INTO sentinel_reviews (id, actor, grant_name, evidence, justified, event_ms, state, note, \
                     reviewed_by, review_ms, review_index) VALUES ($1, $2, $3, $4, $5, $6, $7, '', '', 0, 0)",
                )
                .bind(uuid::Uuid::new_v4().to_string())
                .bind(&r.actor)
                .bind(&r.grant)
                .bind(serde_json::to_string(&r.evidence)?)
                .bind(i64::from(r.justified))
                .bind(r.event_time_ms)
                .bind(REVIEW_PENDING)
                .execute(&mut *tx)
                .await?;
            }
            insert_alerts!(tx, &out.alerts, window, merge, now)
        });
        Ok(stored)
    }

    /// Stores alerts raised outside the tail (the integrity monitor's), each an alert of its own.
    pub async fn raise(&self, alerts: &[NewAlert]) -> Result<Vec<AlertRow>, StoreError> {
        let now = now_ms();
        let window = self.incident_window_ms;
        Ok(in_tx!(&self.db, tx => insert_alerts!(tx, alerts, window, None::<i64>, now)))
    }

    /// The last verified checkpoint.
    pub async fn verified_checkpoint(&self) -> Result<Option<VerifiedCheckpoint>, StoreError> {
        let row: Option<(i64, Vec<u8>, String)> = on_pool!(&self.db, pool => sqlx::query_as(
            "SELECT size, root, note FROM sentinel_integrity WHERE id = 1").fetch_optional(pool).await)?;
        row.map(|(size, root, note)| {
            let root = root.try_into().map_err(|_| StoreError::Corrupt("stored root is not 32 bytes".into()))?;
            Ok(VerifiedCheckpoint { size: size as u64, root, note })
        })
        .transpose()
    }

    /// Records a newly verified checkpoint.
    pub async fn save_verified_checkpoint(&self, c: &VerifiedCheckpoint) -> Result<(), StoreError> {
        on_pool!(&self.db, pool => sqlx::query(
            "INSERT INTO sentinel_integrity (id, size, root, note) VALUES (1, $1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET size = excluded.size, root = excluded.root, note = excluded.note")
            .bind(to_i64(c.size)).bind(c.root.as_slice()).bind(&c.note).execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Alerts matching `f`, newest first (oldest first with `after_seq`), at most `limit`.
    pub async fn alerts(&self, f: &AlertFilter, limit: i64) -> Result<Vec<AlertRow>, StoreError> {
        let mut clauses = Vec::new();
        let mut params = Vec::new();
        let mut add = |clause: &str, p: Param| {
            params.push(p);
            clauses.push(clause.replace('?', &format!("${}", params.len())));
        };
        if let Some(d) = &f.detection {
            add("detection = ?", Param::Text(d.clone()));
        }
        if let Some(s) = f.min_severity {
            add("severity >= ?", Param::Int(s));
        }
        if let Some(s) = f.state {
            add("state = ?", Param::Int(s));
        }
        if let Some(a) = &f.actor {
            add("actor = ?", Param::Text(a.clone()));
        }
        if let Some(i) = &f.incident {
            add("incident = ?", Param::Text(i.clone()));
        }
        if let Some(s) = f.before_seq {
            add("seq < ?", Param::Int(s));
        }
        if let Some(s) = f.after_seq {
            add("seq > ?", Param::Int(s));
        }
        let filter = if clauses.is_empty() { String::new() } else { format!("WHERE {}", clauses.join(" AND ")) };
        let order = if f.after_seq.is_some() { "ASC" } else { "DESC" };
        let sql = format!("SELECT {ALERT_COLUMNS} FROM sentinel_alerts {filter} ORDER BY seq {order} LIMIT {limit}");
        let rows: Vec<AlertRecord> = on_pool!(&self.db, pool => {
            let mut q = sqlx::query_as(&sql);
            for p in &params {
                q = match p { Param::Int(i) => q.bind(*i), Param::Text(t) => q.bind(t.clone()) };
            }
            q.fetch_all(pool).await
        })?;
        rows.into_iter().map(alert_row).collect()
    }

    pub async fn alert(&self, id: &str) -> Result<Option<AlertRow>, StoreError> {
        let sql = format!("SELECT {ALERT_COLUMNS} FROM sentinel_alerts WHERE id = $1");
        let row: Option<AlertRecord> =
            on_pool!(&self.db, pool => sqlx::query_as(&sql).bind(id).fetch_optional(pool).await)?;
        row.map(alert_row).transpose()
    }

    /// The sequence number of the latest alert (0 when there is none).
    pub async fn latest_alert_seq(&self) -> Result<i64, StoreError> {
        let (seq,): (Option<i64>,) =
            on_pool!(&self.db, pool => sqlx::query_as("SELECT MAX(seq) FROM sentinel_alerts").fetch_one(pool).await)?;
        Ok(seq.unwrap_or(0))
    }

    /// Records a triage decision (already appended to the ledger at `ledger_index`).
    pub async fn triage(
        &self,
        id: &str,
        state: i64,
        note: &str,
        by: &str,
        ledger_index: u64,
    ) -> Result<Option<AlertRow>, StoreError> {
        on_pool!(&self.db, pool => sqlx::query(
            "UPDATE sentinel_alerts SET state = $1, triage_note = $2, triaged_by = $3, triage_ms = $4, triage_index = $5 WHERE id = $6")
            .bind(state).bind(note).bind(by).bind(now_ms()).bind(to_i64(ledger_index)).bind(id).execute(pool).await.map(|_| ()))?;
        self.alert(id).await
    }

    /// Incidents, most recently active first, from `offset`.
    pub async fn incidents(
        &self,
        actor: Option<&str>,
        min_severity: Option<i64>,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<IncidentRow>, StoreError> {
        let sql = format!(
            "SELECT id FROM sentinel_incidents WHERE ($1 = '' OR actor = $1) AND severity >= $2 \
             ORDER BY end_ms DESC, seq DESC LIMIT {limit} OFFSET {offset}"
        );
        let ids: Vec<(String,)> = on_pool!(&self.db, pool => sqlx::query_as(&sql)
            .bind(actor.unwrap_or("")).bind(min_severity.unwrap_or(0)).fetch_all(pool).await)?;
        let mut out = Vec::with_capacity(ids.len());
        for (id,) in ids {
            if let Some(i) = self.incident(&id).await? {
                out.push(i);
            }
        }
        Ok(out)
    }

    pub async fn incident(&self, id: &str) -> Result<Option<IncidentRow>, StoreError> {
        let row: Option<(String, String, i64, i64, i64)> = on_pool!(&self.db, pool => sqlx::query_as(
            "SELECT id, actor, severity, start_ms, end_ms FROM sentinel_incidents WHERE id = $1").bind(id).fetch_optional(pool).await)?;
        let Some((id, actor, severity, start_ms, end_ms)) = row else { return Ok(None) };
        let alerts: Vec<(String, String)> = on_pool!(&self.db, pool => sqlx::query_as(
            "SELECT id, detection FROM sentinel_alerts WHERE incident = $1 ORDER BY seq").bind(&id).fetch_all(pool).await)?;
        let mut detections: Vec<String> = alerts.iter().map(|(_, d)| d.clone()).collect();
        detections.sort();
        detections.dedup();
        Ok(Some(IncidentRow {
            id,
            actor,
            severity,
            start_ms,
            end_ms,
            alerts: alerts.into_iter().map(|(a, _)| a).collect(),
            detections,
        }))
    }

    /// Reviews in queue order, after `after_seq`.
    pub async fn reviews(
        &self,
        state: Option<i64>,
        actor: Option<&str>,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<ReviewRow>, StoreError> {
        let sql = format!(
            "SELECT {REVIEW_COLUMNS} FROM sentinel_reviews WHERE ($1 = 0 OR state = $1) AND ($2 = '' OR actor = $2) \
             AND seq > $3 ORDER BY seq LIMIT {limit}"
        );
        let rows: Vec<ReviewTuple> = on_pool!(&self.db, pool => sqlx::query_as(&sql)
            .bind(state.unwrap_or(0)).bind(actor.unwrap_or("")).bind(after_seq).fetch_all(pool).await)?;
        rows.into_iter().map(review_row).collect()
    }

    pub async fn review(&self, id: &str) -> Result<Option<ReviewRow>, StoreError> {
        let sql = format!("SELECT {REVIEW_COLUMNS} FROM sentinel_reviews WHERE id = $1");
        let row: Option<ReviewTuple> =
            on_pool!(&self.db, pool => sqlx::query_as(&sql).bind(id).fetch_optional(pool).await)?;
        row.map(review_row).transpose()
    }

    /// Records a review's outcome (already appended to the ledger at `ledger_index`).
    pub async fn complete_review(
        &self,
        id: &str,
        state: i64,
        note: &str,
        by: &str,
        ledger_index: u64,
    ) -> Result<Option<ReviewRow>, StoreError> {
        on_pool!(&self.db, pool => sqlx::query(
            "UPDATE sentinel_reviews SET state = $1, note = $2, reviewed_by = $3, review_ms = $4, review_index = $5 WHERE id = $6")
            .bind(state).bind(note).bind(by).bind(now_ms()).bind(to_i64(ledger_index)).bind(id).execute(pool).await.map(|_| ()))?;
        self.review(id).await
    }

    /// The detection figures.
    pub async fn stats(&self) -> Result<Stats, StoreError> {
        let (cursor, accesses, explained): (i64, i64, i64) = on_pool!(&self.db, pool => sqlx::query_as(
            "SELECT cursor, accesses, explained FROM sentinel_state WHERE id = 1").fetch_one(pool).await)?;
        let (staff_days,): (i64,) = on_pool!(&self.db, pool => sqlx::query_as(
            "SELECT COUNT(*) FROM sentinel_staff_days").fetch_one(pool).await)?;
        let by: Vec<(String, i64)> = on_pool!(&self.db, pool => sqlx::query_as(
            "SELECT detection, COUNT(*) FROM sentinel_alerts GROUP BY detection ORDER BY detection").fetch_all(pool).await)?;
        let lags: Vec<(i64,)> = on_pool!(&self.db, pool => sqlx::query_as(
            "SELECT update_ms - event_ms FROM sentinel_alerts WHERE detection <> 'ledger-integrity' ORDER BY 1").fetch_all(pool).await)?;
        Ok(Stats {
            cursor: cursor as u64,
            alerts: by.iter().map(|(_, n)| *n as u64).sum(),
            by_detection: by.into_iter().map(|(d, n)| (d, n as u64)).collect(),
            staff_days: staff_days as u64,
            accesses: accesses as u64,
            explained: explained as u64,
            lags_ms: lags.into_iter().map(|(l,)| l).collect(),
        })
    }
}
