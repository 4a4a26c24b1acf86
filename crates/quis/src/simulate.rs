//! `quis simulate` and `quis demo`: the whole suite started in this process on
//! the embedded default, on a simulated clock only they can hand it, driven by
//! the simulator (`quis-simulate`) through the gateway.
use std::{path::PathBuf, time::Duration};

use anyhow::{Context, Result, bail};
use quis_auth::{
    PrincipalKind, Role, devkeys,
    mint::{TokenSigner, TokenSpec},
};
use quis_core::{Clock, QuisConfig, SimClock, keys::FileKeySource};
use quis_simulate::{Report, Simulation, Suite, org::OrgParams, plan::day_start_ms};
use tokio_util::sync::CancellationToken;

use crate::{suite, verify};

#[derive(clap::Args)]
pub struct SimulateArgs {
    /// Seed of everything generated and played.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Members of staff.
    #[arg(long, default_value_t = 500)]
    staff: usize,
    /// Subjects in the register (staff included).
    #[arg(long, default_value_t = 50_000)]
    subjects: usize,
    /// Working days played.
    #[arg(long, default_value_t = 5)]
    days: u32,
    /// Incidents planted in the played days, each on its own actor: every kind once from 8
    /// on, the rest of kinds the seed picks. The ledger tampering comes on top.
    #[arg(long, default_value_t = 12)]
    incidents: usize,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Where to write the JSON report.
    #[arg(long)]
    out: PathBuf,
    /// Stop sentinel and start it again once this day (from 0) has been played.
    #[arg(long)]
    restart_sentinel_after_day: Option<u32>,
}

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Seed of the demonstration's organization.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// A suite on a simulated clock, in a fresh data directory.
struct Started {
    config: QuisConfig,
    running: suite::Running,
    /// Sentinel, when started restartable.
    sentinel: Option<Restarter>,
    clock: SimClock,
    stop: CancellationToken,
    /// Removed at exit when the directory was made for this run.
    _temp: Option<tempfile::TempDir>,
}

/// Starts the suite for a simulation. `config` is the operator's (file,
/// environment): a simulated clock refuses it unless it is local and embedded.
async fn start(mut config: QuisConfig, data_dir_given: bool, restartable_sentinel: bool) -> Result<Started> {
    let temp = if data_dir_given {
        if config.data_dir.join("ledger.db").exists() {
            bail!("{} already holds a ledger: a simulation needs a fresh data directory", config.data_dir.display());
        }
        None
    } else {
        let dir = tempfile::Builder::new().prefix("quis-sim-").tempdir().context("temporary data directory")?;
        config.data_dir = dir.path().to_path_buf();
        Some(dir)
    };
    // Free ports on loopback, so that a simulation never meets a running suite.
    for listen in config.services.values_mut() {
        for addr in [&mut listen.listen, &mut listen.admin_listen] {
            if addr.ip().is_loopback() {
                addr.set_port(0);
            }
        }
    }
    devkeys::init(&config.data_dir).map_err(anyhow::Error::msg)?;
    let clock = SimClock::new(day_start_ms(0) - 7_200_000);
    config.clock = Clock::Simulated(clock.clone());
    let stop = CancellationToken::new();
    let mut running = suite::up_with(config.clone(), stop.clone(), restartable_sentinel).await?;
    wait_ready(running.admin_addr).await?;
    let sentinel = running.sentinel.take().map(|s| Restarter(tokio::sync::Mutex::new(s)));
    Ok(Started { config, running, sentinel, clock, stop, _temp: temp })
}

/// The suite's restartable sentinel, for the simulator.
struct Restarter(tokio::sync::Mutex<suite::RestartableSentinel>);

impl quis_simulate::SentinelRestarter for Restarter {
    fn restart(&self) -> futures::future::BoxFuture<'_, Result<()>> {
        Box::pin(async move { self.0.lock().await.restart().await })
    }
}

/// Waits until the gateway's `/readyz` answers 200 (policy has its pack, every upstream serves).
async fn wait_ready(admin: std::net::SocketAddr) -> Result<()> {
    let http = reqwest::Client::new();
    let url = format!("http://{admin}/readyz");
    for _ in 0..600 {
        if http.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the suite did not become ready within 60 s ({url})")
}

impl Started {
    async fn simulate(&self, simulation: &Simulation) -> Result<Report> {
        let suite = Suite {
            config: &self.config,
            gateway: self.running.listen_addr,
            clock: self.clock.clone(),
            sentinel_restarter: self.sentinel.as_ref().map(|r| r as &dyn quis_simulate::SentinelRestarter),
        };
        quis_simulate::run(simulation, &suite).await
    }

    async fn stop(self) {
        self.stop.cancel();
        let mut tasks = self.running.tasks;
        let sentinel = self.sentinel;
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            while tasks.join_next().await.is_some() {}
            if let Some(Restarter(sentinel)) = sentinel {
                sentinel.into_inner().join().await;
            }
        })
        .await;
    }
}

/// `quis simulate`.
pub async fn simulate(args: &SimulateArgs, mut config: QuisConfig, data_dir_given: bool) -> Result<()> {
    let simulation = Simulation {
        params: OrgParams { seed: args.seed, staff: args.staff, subjects: args.subjects, days: args.days },
        incidents: args.incidents,
        concurrency: args.concurrency.max(1),
        restart_sentinel_after_day: args.restart_sentinel_after_day,
    };
    // The simulator's progress; the services only when something is wrong.
    if config.log.level == "info" {
        config.log.level = "warn,quis_simulate=info".into();
    }
    let _telemetry = quis_core::telemetry::init("simulate", &config.log).map_err(anyhow::Error::msg)?;
    let started = start(config, data_dir_given, simulation.restart_sentinel_after_day.is_some()).await?;
    let report = started.simulate(&simulation).await;
    started.stop().await;
    let report = report?;
    let json = serde_json::to_string_pretty(&report)?;
    std::fs::write(&args.out, json).with_context(|| format!("writing {}", args.out.display()))?;
    println!("{}", summary(&report));
    println!("report: {}", args.out.display());
    Ok(())
}

/// `quis demo`: a small organization over a short week, then the incidents
/// found, the scores and the ledger verified.
pub async fn demo(args: &DemoArgs, config: QuisConfig, data_dir_given: bool) -> Result<()> {
    let simulation = Simulation {
        params: OrgParams { seed: args.seed, staff: 120, subjects: 3_000, days: 5 },
        incidents: 8,
        concurrency: 16,
        restart_sentinel_after_day: None,
    };
    println!("Starting the Quis suite on the embedded default, on a simulated clock...");
    let started = start(config, data_dir_given, false).await?;
    println!("Data directory: {}", started.config.data_dir.display());
    println!(
        "Simulating {} staff and {} subjects over {} working days, with planted misuse (takes a few minutes)...",
        simulation.params.staff, simulation.params.subjects, simulation.params.days
    );
    let report = started.simulate(&simulation).await;
    let verified = match &report {
        Ok(_) => Some(verify_ledger(&started).await),
        Err(_) => None,
    };
    started.stop().await;
    let report = report?;
    println!("\n{}", incidents_text(&report));
    println!("{}", summary(&report));
    match verified {
        Some(Ok(line)) => println!("\nLedger (quis verify --full): {line}"),
        Some(Err(e)) => println!(
            "\nLedger (quis verify --full): FAILED: {e:#}\n  This is the insider's tampering above: \
             the stored entries no longer hash to the signed, witnessed tree."
        ),
        None => {}
    }
    Ok(())
}

/// The ledger checked with `quis verify --full`'s logic, through the gateway.
async fn verify_ledger(started: &Started) -> Result<String> {
    let config = &started.config;
    let signer = TokenSigner::load(&FileKeySource::new(&config.data_dir), &config.auth.issuer, &config.auth.audience)?;
    let (token, _) = signer.mint(&TokenSpec::new("demo-auditor", PrincipalKind::Staff, &[Role::Auditor]))?;
    let args = verify::VerifyArgs::full(
        format!("http://{}", started.running.listen_addr),
        started.running.log_keys.clone(),
        started.running.witness_keys.clone(),
        config.data_dir.join("verify-state"),
        token,
    );
    verify::check(&args).await
}

fn incidents_text(report: &Report) -> String {
    let mut out = String::from("Planted incidents:\n");
    for o in &report.incidents {
        let status = if o.found { "FOUND " } else { "MISSED" };
        let actor = if o.incident.actor.is_empty() { "(database user)" } else { o.incident.actor.as_str() };
        out.push_str(&format!("  [{status}] {} by {actor}: {}\n", o.incident.kind.as_str(), o.incident.description));
        if let Some(explanation) = &o.explanation {
            out.push_str(&format!("           sentinel: {explanation}\n"));
            let lag = o.lag_secs.map(|l| format!(", {l:.0} s after it began (event time)")).unwrap_or_default();
            out.push_str(&format!(
                "           detections: {}; alerts: {}{lag}\n",
                o.detections.join(", "),
                o.alerts.join(" ")
            ));
        }
        let evidence: Vec<String> = o.incident.ledger_indices.iter().take(8).map(u64::to_string).collect();
        if !evidence.is_empty() {
            out.push_str(&format!("           ledger entries: {}\n", evidence.join(" ")));
        }
    }
    out
}

fn summary(report: &Report) -> String {
    let p = &report.played;
    let mut out = format!(
        "Played {} calls ({} refused) over {} staff-days.\n\
         Recall {:.2} ({} kinds), precision {:.2} ({} of {} alerts; {:.2} of incidents, {} of {}), \
         {:.1} alerts ({:.1} incidents) per 1,000 staff-days, {:.1}% of accesses explained.",
        p.calls,
        p.denied,
        p.staff_days,
        report.recall,
        report.recall_by_kind.len(),
        report.alert_precision,
        report.alerts_matched,
        report.alerts,
        report.incident_precision,
        report.sentinel_incidents_matched,
        report.sentinel_incidents,
        report.alerts_per_1000_staff_days,
        report.incidents_per_1000_staff_days,
        report.share_explained * 100.0,
    );
    if let Some(lag) = &report.detection_lag {
        out.push_str(&format!(
            "\nDetection lag (event time): median {:.0} s, max {:.0} s.",
            lag.p50_secs, lag.max_secs
        ));
    }
    if let Some(lag) = &p.wall_detection_lag {
        out.push_str(&format!(
            "\nDetection lag (wall clock, answer to alert on the stream, {} alerts): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms.",
            lag.alerts, lag.p50_ms, lag.p99_ms, lag.max_ms
        ));
    }
    match p.integrity_alert_wall_secs {
        Some(s) => out.push_str(&format!("\nLedger tampering raised within {s:.1} s (wall clock).")),
        None => out.push_str("\nLedger tampering: no integrity alert within the deadline."),
    }
    out
}
