//! One simulation from start to report: generate, load, play day by day,
//! let sentinel catch up, let the insider tamper, read the alerts, score.
use std::{net::SocketAddr, time::Duration};

use anyhow::{Context, Result, bail};
use quis_auth::Role;
use quis_core::{QuisConfig, SimClock, keys::FileKeySource};
use quis_vault::blind::BlindIndexer;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use zeroize::Zeroizing;

use crate::{
    client::{Gateway, Tokens},
    incidents::{self, Incident, IncidentKind},
    ingest::{Loader, administrators},
    names::SITES,
    org::{Org, OrgParams, StaffRole, TeamKind},
    plan::{self, Activity, day_start_ms},
    play::{Player, Tally},
    score::{self, Played, Report},
    sentinel::Sentinel,
    tamper,
};

/// How long sentinel may take to process everything played.
const CATCH_UP: Duration = Duration::from_secs(300);
/// How long the alert stream may trail the alert list once sentinel has caught up.
const WATCH_DRAIN: Duration = Duration::from_secs(10);
/// The integrity monitor must raise tampering within this (wall clock).
pub const INTEGRITY_DEADLINE: Duration = Duration::from_secs(10);
/// Independent random streams for the plan and the incidents, so that adding
/// an incident does not reshuffle the legitimate work.
const PLAN_STREAM: u64 = 0x706c_616e;
const INCIDENT_STREAM: u64 = 0x696e_6364;

/// What to simulate.
#[derive(Clone, Debug)]
pub struct Simulation {
    pub params: OrgParams,
    /// Incidents planted in the played days, on distinct actors (see [`incidents::plant`]);
    /// the ledger tampering comes on top.
    pub incidents: usize,
    /// Calls in flight at once.
    pub concurrency: usize,
    /// Restart sentinel once this day has been played (the figures must not change).
    pub restart_sentinel_after_day: Option<u32>,
}

/// Stops sentinel and starts it again, as an operator would.
pub trait SentinelRestarter: Sync {
    fn restart(&self) -> futures::future::BoxFuture<'_, Result<()>>;
}

/// The suite to drive: started in this process with `clock` (see `quis simulate`).
pub struct Suite<'a> {
    pub config: &'a QuisConfig,
    pub gateway: SocketAddr,
    pub clock: SimClock,
    /// Needed for [`Simulation::restart_sentinel_after_day`].
    pub sentinel_restarter: Option<&'a dyn SentinelRestarter>,
}

/// Runs the simulation against `suite` and scores it.
pub async fn run(sim: &Simulation, suite: &Suite<'_>) -> Result<Report> {
    let org = Org::generate(&sim.params);
    let mut activities = plan::legitimate(&org, &mut ChaCha20Rng::seed_from_u64(sim.params.seed ^ PLAN_STREAM));
    let (mut incidents, planted) =
        incidents::plant(&org, sim.incidents, &mut ChaCha20Rng::seed_from_u64(sim.params.seed ^ INCIDENT_STREAM));
    activities.extend(planted);
    activities.sort_by_key(|a| a.at_ms);
    tracing::info!(
        staff = org.staff.len(),
        subjects = org.people.len(),
        cases = org.cases.len(),
        activities = activities.len(),
        incidents = incidents.len(),
        "organization generated"
    );

    let tokens = Tokens::load(suite.config)?;
    let staff_tokens = org
        .staff
        .iter()
        .map(|s| {
            let role = match s.role {
                StaffRole::Caseworker => Role::Caseworker,
                StaffRole::TeamLead => Role::TeamLead,
                StaffRole::Investigator => Role::Investigator,
                StaffRole::Admin => Role::Admin,
            };
            tokens.staff(&s.id, role, &org.teams[s.team].id, SITES[s.site].0)
        })
        .collect::<Result<Vec<_>>>()?;
    let gateway = Gateway::new(suite.gateway);
    let [a, b] = administrators(&org)?;
    let indexer = org_indexer(suite.config)?;
    let loader = Loader {
        org: &org,
        channel: gateway.channel(org.staff[a].host)?,
        ingest_token: tokens.service("registry-feed", &[Role::Service, Role::Ingest])?,
        admins: [(a, staff_tokens[a].clone()), (b, staff_tokens[b].clone())],
        indexer: &indexer,
        concurrency: sim.concurrency,
    };
    suite.clock.set_ms(day_start_ms(0) - 3_600_000);
    loader.load().await.context("loading the organization")?;
    tracing::info!("organization loaded");

    let player = Player {
        org: &org,
        gateway: &gateway,
        tokens: &staff_tokens,
        clock: &suite.clock,
        concurrency: sim.concurrency,
    };
    let investigator = org
        .staff_where(StaffRole::Investigator, TeamKind::Investigations)
        .first()
        .copied()
        .context("the organization needs an investigator")?;
    let mut sentinel =
        Sentinel::new(gateway.channel(org.staff[investigator].host)?, staff_tokens[investigator].clone());
    let watch = sentinel.watch();
    let mut tally = Tally::default();
    for day in 0..sim.params.days {
        suite.clock.set_ms(day_start_ms(day) - 300_000);
        loader.cases_for_day(day).await.with_context(|| format!("day {day}: cases"))?;
        let today: Vec<Activity> = activities
            .iter()
            .filter(|a| (day_start_ms(day)..day_start_ms(day) + 86_400_000).contains(&a.at_ms))
            .cloned()
            .collect();
        let outcomes = player.play(day, &today, &mut tally).await;
        for (activity, outcome) in today.iter().zip(outcomes) {
            if let Some(i) = activity.incident {
                incidents[i].ledger_indices.extend(outcome.indices);
            }
        }
        tracing::info!(day, calls = tally.calls, denied = tally.denied, failed = tally.failed, "day played");
        if sim.restart_sentinel_after_day == Some(day) {
            let restarter = suite.sentinel_restarter.context("this suite cannot restart sentinel")?;
            restarter.restart().await.context("restarting sentinel")?;
            tracing::info!(day, "sentinel restarted");
        }
        // Sentinel enriches an event with the entities as they are when it processes it. The
        // simulated clock plays a day in seconds, so let it finish the day before the next day's
        // cases change them, as it would in real time; otherwise how far it lags (after a
        // restart, say) would decide which accesses a case explains.
        if let Some(last) = tally.max_index {
            sentinel.catch_up(last, CATCH_UP).await.with_context(|| format!("day {day}: sentinel catching up"))?;
        }
    }
    if tally.failed > 0 {
        bail!("{} calls failed; the first: {}", tally.failed, tally.first_failure.unwrap_or_default());
    }

    if let Some(last) = tally.max_index {
        sentinel.catch_up(last, CATCH_UP).await?;
    }
    let received = watch.finish(&sentinel.alerts("").await?, WATCH_DRAIN).await;
    let wall_detection_lag = score::wall_lag(&received, &tally.answered);
    let integrity_alert_wall_secs = insider(&org, &mut incidents, suite, &mut sentinel).await?;
    let stats = sentinel.stats().await?;
    let alerts = sentinel.alerts("").await?;
    let sentinel_incidents = sentinel.incidents().await?;
    let played = Played {
        seed: sim.params.seed,
        staff: org.staff.len(),
        subjects: org.people.len(),
        days: sim.params.days,
        staff_days: tally.staff_days.len() as u64,
        calls: tally.calls,
        denied: tally.denied,
        integrity_alert_wall_secs,
        wall_detection_lag,
    };
    let raised = score::Raised { alerts: &alerts, incidents: &sentinel_incidents };
    Ok(score::score(played, incidents, raised, stats.share_explained))
}

/// The insider covers the tracks of the first celebrity snooper (or of the
/// first incident with recorded entries): rewrites the actor of one entry and
/// deletes another, if there is one; returns how long the integrity
/// monitor took to alert (wall clock), if it did within the deadline.
async fn insider(
    org: &Org,
    incidents: &mut Vec<Incident>,
    suite: &Suite<'_>,
    sentinel: &mut Sentinel,
) -> Result<Option<f64>> {
    let recorded = |i: &&Incident| !i.ledger_indices.is_empty();
    let celebrity = incidents.iter().filter(recorded).find(|i| i.kind == IncidentKind::SnoopingCelebrity);
    let Some(target) = celebrity.or_else(|| incidents.iter().find(recorded)).cloned() else {
        return Ok(None);
    };
    let cover = org.staff.iter().map(|s| s.id.as_str()).find(|id| *id != target.actor).unwrap_or_default();
    let before = sentinel.integrity_alerts().await?;
    let now = suite.clock.now_ms();
    let rewrite = target.ledger_indices[0];
    let delete = target.ledger_indices.last().copied().filter(|&last| last != rewrite);
    tamper::cover_tracks(&suite.config.store_url("ledger"), rewrite, delete, &target.actor, cover).await?;
    incidents.push(Incident {
        kind: IncidentKind::LedgerTampering,
        actor: String::new(),
        start_ms: now,
        end_ms: now,
        ledger_indices: [Some(rewrite), delete].into_iter().flatten().collect(),
        description: format!(
            "a database user rewrote entry {rewrite} to name {cover} and deleted {}, hiding {}'s trail",
            delete.map_or("no other entry".to_string(), |d| format!("entry {d}")),
            target.actor
        ),
    });
    Ok(sentinel.integrity_alert(before, INTEGRITY_DEADLINE).await?.map(|d| d.as_secs_f64()))
}

/// The vault's blind indexer under the organization secret of the data
/// directory (the vault creates the secret when it first opens).
fn org_indexer(config: &QuisConfig) -> Result<BlindIndexer> {
    let path = &config.vault.keys.org_secret;
    let secret = quis_core::keys::load_or_create_seed(&FileKeySource::new(&config.data_dir), &path.to_string_lossy())
        .map_err(anyhow::Error::msg)?;
    Ok(BlindIndexer::new(Zeroizing::new(secret)))
}
