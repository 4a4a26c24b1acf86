//! `quis`: the one binary of the suite.
#![forbid(unsafe_code)]

mod bench;
mod bench_ledger;
mod bench_policy;
mod bench_stages;
mod bench_vault;
mod simulate;
mod suite;
mod verify;

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use figment::{Figment, providers::Serialized};
use quis_auth::{
    PrincipalKind, Role, devkeys,
    mint::{TokenSigner, TokenSpec},
};
use quis_core::{QuisConfig, keys::FileKeySource};

/// mimalloc: the gateway's per-call allocations cost a tenth of its CPU with the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "quis", version, about = "Quis: purpose-bound, audited access to sensitive personal records")]
struct Cli {
    /// TOML configuration file (then QUIS_* environment variables, then flags).
    #[arg(long, global = true, env = "QUIS_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory: keys, certificates and the embedded SQLite stores.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole suite in one process on loopback, with the gateway in front.
    Up {
        /// Gateway port on 127.0.0.1 (default: services.gateway.listen, 7400); 0 picks a free one.
        #[arg(long)]
        port: Option<u16>,
        /// Admin HTTP port on 127.0.0.1, for /livez, /readyz, /metrics (default: services.gateway.admin_listen, 7500); 0 picks a free one.
        #[arg(long)]
        admin_port: Option<u16>,
    },
    /// Run one service.
    Serve {
        /// gateway, identity, ledger, policy, vault, echo or witness.
        service: String,
    },
    /// Create the development CA, certificates, token-signing key and JWKS (existing files are kept).
    Init,
    /// Mint a development token with the data directory's signing key.
    Token {
        #[arg(long)]
        sub: String,
        /// Repeat for several roles: caseworker, team_lead, investigator, auditor, privacy_officer, admin, ingest, service.
        #[arg(long = "role")]
        roles: Vec<String>,
        #[arg(long, default_value = "staff", value_parser = ["staff", "service", "subject"])]
        kind: String,
        #[arg(long)]
        team: Option<String>,
        #[arg(long)]
        site: Option<String>,
        /// Lifetime, e.g. 90s, 30m, 1h, 2d.
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: Duration,
    },
    /// Load-test the gateway path with the echo service: direct and through the gateway.
    Bench(bench::BenchArgs),
    /// Load-test a ledger: durable appends, acknowledgement latency, tail lag, proofs, and a plain-table baseline.
    BenchLedger(bench_ledger::BenchLedgerArgs),
    /// Benchmark the policy service: bulk upsert and loading of an organization, Check over gRPC (in-process, on loopback).
    BenchPolicy(bench_policy::BenchPolicyArgs),
    /// Simulate an organization's working days with planted misuse through the suite, and score sentinel's detections (JSON report).
    Simulate(simulate::SimulateArgs),
    /// Start the suite in a temporary directory, simulate a short week and print what sentinel found.
    Demo(simulate::DemoArgs),
    /// Benchmark guarded GetRecord through the gateway on a pre-populated store (in-process suite, loopback), beside the gateway's trivial upstream.
    BenchVault(bench_vault::BenchVaultArgs),
    /// Audit the ledger: signatures, cosignatures, consistency with the last trusted checkpoint; --full: every entry.
    Verify(verify::VerifyArgs),
    /// Print the version.
    Version,
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().map_err(|_| format!("{s:?}: expected a number and a unit (s, m, h, d)"))?;
    let secs = match unit {
        "s" | "" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(format!("{s:?}: unit must be s, m, h or d")),
    };
    if secs == 0 {
        return Err("ttl must be positive".into());
    }
    Ok(Duration::from_secs(secs))
}

fn load_config(cli: &Cli, extra: Option<Figment>) -> Result<QuisConfig> {
    let mut overrides = Figment::new();
    if let Some(dir) = &cli.data_dir {
        overrides = overrides.merge(Serialized::default("data_dir", dir));
    }
    if let Some(extra) = extra {
        overrides = overrides.merge(extra);
    }
    Ok(QuisConfig::load(cli.config.as_deref(), Some(overrides))?)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Version => {
            println!("quis {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Init => {
            let config = load_config(&cli, None)?;
            let keys = devkeys::init(&config.data_dir).map_err(anyhow::Error::msg)?;
            for path in &keys.created {
                println!("created {}", path.display());
            }
            println!(
                "JWKS: {}\nsigning key: {}\nCA: {}",
                keys.jwks.display(),
                keys.signing_key.display(),
                keys.ca_cert.display()
            );
            Ok(())
        }
        Command::Token { sub, roles, kind, team, site, ttl } => {
            let config = load_config(&cli, None)?;
            let signer =
                TokenSigner::load(&FileKeySource::new(&config.data_dir), &config.auth.issuer, &config.auth.audience)
                    .with_context(|| {
                        format!("no signing key in {}: run `quis init` first", config.data_dir.display())
                    })?;
            let kind = match kind.as_str() {
                "service" => PrincipalKind::Service,
                "subject" => PrincipalKind::Subject,
                _ => PrincipalKind::Staff,
            };
            let roles =
                roles.iter().map(|r| r.parse::<Role>().map_err(anyhow::Error::msg)).collect::<Result<Vec<_>>>()?;
            let spec =
                TokenSpec { team: team.clone(), site: site.clone(), ttl: *ttl, ..TokenSpec::new(sub, kind, &roles) };
            let (token, _) = signer.mint(&spec)?;
            println!("{token}");
            Ok(())
        }
        Command::Bench(args) => bench::run(args).await,
        Command::BenchLedger(args) => bench_ledger::run(args).await,
        Command::BenchPolicy(args) => {
            let config = load_config(&cli, None)?;
            bench_policy::run(args, &config.data_dir).await
        }
        Command::BenchVault(args) => {
            // The suite runs in this process: its log settings apply, as under `quis up`
            // (`QUIS_LOG__LEVEL=sqlx::query=debug` lists every statement with its time).
            let config = load_config(&cli, None)?;
            let _telemetry = quis_core::telemetry::init("bench-vault", &config.log).map_err(anyhow::Error::msg)?;
            bench_vault::run(args, config).await
        }
        Command::Verify(args) => verify::run(args).await,
        Command::Simulate(args) => simulate::simulate(args, load_config(&cli, None)?, cli.data_dir.is_some()).await,
        Command::Demo(args) => simulate::demo(args, load_config(&cli, None)?, cli.data_dir.is_some()).await,
        Command::Up { port, admin_port } => {
            let mut flags = Figment::new();
            if let Some(port) = port {
                flags = flags.merge(Serialized::default("services.gateway.listen", format!("127.0.0.1:{port}")));
            }
            if let Some(port) = admin_port {
                flags = flags.merge(Serialized::default("services.gateway.admin_listen", format!("127.0.0.1:{port}")));
            }
            let config = load_config(&cli, Some(flags))?;
            let _telemetry = quis_core::telemetry::init("up", &config.log).map_err(anyhow::Error::msg)?;
            let keys = devkeys::init(&config.data_dir).map_err(anyhow::Error::msg)?;
            let stop = quis_core::shutdown::on_signals();
            let data_dir = config.data_dir.clone();
            let running = suite::up(config, stop).await?;
            println!("gateway listening on {}", running.listen_addr);
            println!("admin (/livez /readyz /metrics) on http://{}", running.admin_addr);
            for note in &running.notes {
                println!("{note}");
            }
            println!("data directory: {}", data_dir.display());
            println!("JWKS: {}", keys.jwks.display());
            println!("token signing key: {}", keys.signing_key.display());
            println!(
                "mint a token: quis --data-dir {} token --sub alice --role caseworker --team north --ttl 1h",
                data_dir.display()
            );
            wait(running).await
        }
        Command::Serve { service } => {
            let config = Arc::new(load_config(&cli, None)?);
            let _telemetry = quis_core::telemetry::init(service, &config.log).map_err(anyhow::Error::msg)?;
            let stop = quis_core::shutdown::on_signals();
            let running = suite::serve_one(service, config, stop).await?;
            println!("{service} listening on {}", running.listen_addr);
            println!("{service} admin on http://{}", running.admin_addr);
            for note in &running.notes {
                println!("{note}");
            }
            wait(running).await
        }
    }
}

/// Waits for every service task; the first failure stops the process.
async fn wait(mut running: suite::Running) -> Result<()> {
    while let Some(joined) = running.tasks.join_next().await {
        joined.context("service task panicked")??;
    }
    Ok(())
}
