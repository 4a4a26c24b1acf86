//! `quis bench-policy`: the policy service with a realistic organization
//! (default 10,000 staff, 1,000,000 subjects, 200,000 open cases), measured
//! where it matters: bulk upsert of the organization (100,000 entities per
//! call, one transaction each), loading it at start, and `Check` over gRPC
//! through real sockets (closed loop, or open loop at `--rate`), with a ledger
//! recording every change.
//! Everything runs in this process on loopback, on a fresh data directory
//! (SQLite) or a PostgreSQL database.
use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use quis_auth::{
    PrincipalKind, Role,
    mint::{TokenSigner, TokenSpec},
};
use quis_core::{QuisConfig, health::Readiness, keys::FileKeySource};
use quis_proto::policy::{
    self as pb, BatchUpsertEntitiesRequest, CheckContext, CheckRequest, Entity, entity::Kind,
    policy_service_client::PolicyServiceClient,
};
use quis_runtime::ServiceContext;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{metadata::MetadataValue, transport::Channel};

use crate::bench_stages;

#[derive(clap::Args)]
pub struct BenchPolicyArgs {
    /// Staff members (in teams of 100).
    #[arg(long, default_value_t = 10_000)]
    staff: u64,
    /// Subjects (1% in a restricted compartment, 0.01% decoys).
    #[arg(long, default_value_t = 1_000_000)]
    subjects: u64,
    /// Open casework cases (each on 1 to 3 subjects, assigned to one staff member).
    #[arg(long, default_value_t = 200_000)]
    cases: u64,
    /// Entities per BatchUpsertEntities call.
    #[arg(long, default_value_t = 100_000)]
    batch: usize,
    /// A PostgreSQL URL for the store (a fresh database); default: SQLite in the data directory.
    #[arg(long)]
    store_url: Option<String>,
    /// Calls in flight at once (closed loop).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Open loop instead: start this many checks a second whatever the answers do, and time
    /// each from when it was due (so a stall counts against every call it delays).
    #[arg(long)]
    rate: Option<u64>,
    /// HTTP/2 connections shared by the workers.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Measured seconds of checks (after one second of warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Checks wait for the head of the change feed (policy.read_your_writes); `false` polls instead.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    read_your_writes: bool,
}

struct Org {
    staff: u64,
    subjects: u64,
    cases: u64,
}

fn staff_id(i: u64) -> String {
    format!("staff-{i:05}")
}

fn subject_id(i: u64) -> String {
    format!("subject-{i:07}")
}

fn key(tag: u8, i: u64) -> Vec<u8> {
    let mut k = vec![tag; 32];
    k[..8].copy_from_slice(&i.to_be_bytes());
    k
}

impl Org {
    /// The subjects of case `c`: 1 to 3, spread over the register.
    fn case_subjects(&self, c: u64) -> Vec<u64> {
        (0..1 + c % 3).map(|j| (c * 7 + j * 104_729) % self.subjects).collect()
    }

    fn case_staff(&self, c: u64) -> u64 {
        c % self.staff
    }

    /// Every entity, in an order that a feed would send: teams, staff, subjects, cases.
    fn entities(&self) -> impl Iterator<Item = Entity> + '_ {
        let teams = (0..self.staff.div_ceil(100)).map(|t| {
            Kind::Team(pb::Team {
                name: format!("teams/team-{t:03}"),
                site: format!("site-{}", t % 5),
                parent: String::new(),
            })
        });
        let staff = (0..self.staff).map(|i| {
            Kind::Staff(pb::Staff {
                name: format!("staff/{}", staff_id(i)),
                team: format!("teams/team-{:03}", i / 100),
                site: format!("site-{}", (i / 100) % 5),
                roles: vec!["caseworker".into()],
                clearances: if i % 50 == 0 { vec![pb::Compartment::PublicFigure as i32] } else { vec![] },
                status: pb::StaffStatus::Active as i32,
                surname_key: key(1, i),
                address_key: key(2, i),
                household_key: vec![],
            })
        });
        let subjects = (0..self.subjects).map(|i| {
            Kind::Subject(pb::Subject {
                name: format!("subjects/{}", subject_id(i)),
                compartments: if i % 100 == 99 { vec![pb::Compartment::PublicFigure as i32] } else { vec![] },
                decoy: i % 10_000 == 4_242,
                surname_key: key(3, i),
                address_key: key(4, i),
                household_key: vec![],
            })
        });
        let cases = (0..self.cases).map(|c| {
            Kind::Case(pb::Case {
                name: format!("cases/case-{c:07}"),
                subjects: self.case_subjects(c).into_iter().map(|s| format!("subjects/{}", subject_id(s))).collect(),
                assigned_staff: vec![format!("staff/{}", staff_id(self.case_staff(c)))],
                assigned_teams: vec![],
                status: pb::CaseStatus::Open as i32,
                purpose: pb::Purpose::Casework as i32,
            })
        });
        teams.chain(staff).chain(subjects).chain(cases).map(|k| Entity { kind: Some(k) })
    }

    /// Check `n`: 4 in 5 an assigned caseworker on a subject of their case (mostly allowed),
    /// 1 in 5 a caseworker on an unrelated subject (denied).
    fn check(&self, n: u64) -> CheckRequest {
        let c = n.wrapping_mul(2_654_435_761) % self.cases;
        let staff = self.case_staff(c);
        let (subject, case) = if n % 5 == 4 {
            ((c * 31 + 17) % self.subjects, String::new())
        } else {
            (self.case_subjects(c)[0], format!("cases/case-{c:07}"))
        };
        CheckRequest {
            principal: format!("staff/{}", staff_id(staff)),
            action: pb::Action::Read as i32,
            resource: format!("subjects/{}", subject_id(subject)),
            fields: vec![],
            context: Some(CheckContext {
                purpose: pb::Purpose::Casework as i32,
                case,
                source_address: "10.20.30.40".into(),
                device: "ws-0042".into(),
                ..Default::default()
            }),
        }
    }
}

async fn bind() -> Result<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let a = l.local_addr()?;
    Ok((l, a))
}

async fn context(config: &Arc<QuisConfig>, stop: &CancellationToken) -> Result<ServiceContext> {
    let verifier = quis_auth::TokenVerifier::from_config(config, stop.clone()).await.context("verifier")?;
    Ok(ServiceContext { config: Arc::clone(config), verifier, shutdown: stop.clone() })
}

/// Starts a policy replica; returns its address and how long building it (loading the store) took.
async fn start_policy(config: &Arc<QuisConfig>, stop: &CancellationToken) -> Result<(SocketAddr, Duration)> {
    let ctx = context(config, stop).await?;
    let started = Instant::now();
    let (built, _) = quis_policy::build(&ctx).await.map_err(anyhow::Error::msg)?;
    let loaded = started.elapsed();
    let (l, addr) = bind().await?;
    tokio::spawn(async move { quis_runtime::serve(&ctx, built, l, Readiness::default()).await });
    Ok((addr, loaded))
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

pub async fn run(args: &BenchPolicyArgs, data_dir: &std::path::Path) -> Result<()> {
    let org = Org { staff: args.staff.max(1), subjects: args.subjects.max(1), cases: args.cases.max(1) };
    quis_auth::devkeys::init(data_dir).map_err(anyhow::Error::msg)?;
    let mut config = QuisConfig { data_dir: data_dir.to_path_buf(), ..QuisConfig::default() };
    config.store.url = args.store_url.clone();
    config.policy.read_your_writes = args.read_your_writes;
    let stop = CancellationToken::new();
    let base = Arc::new(config.clone());
    let lctx = context(&base, &stop).await?;
    let (ledger, _, _) = quis_ledger::build(&lctx).await.map_err(anyhow::Error::msg)?;
    let (l, ledger_addr) = bind().await?;
    tokio::spawn(async move { quis_runtime::serve(&lctx, ledger, l, Readiness::default()).await });
    config.policy.ledger_url = Some(format!("http://{ledger_addr}"));
    let config = Arc::new(config);
    let signer = TokenSigner::load(&FileKeySource::new(data_dir), &config.auth.issuer, &config.auth.audience)?;
    let service = signer.mint(&TokenSpec::new("vault", PrincipalKind::Service, &[Role::Service]))?.0;
    let auth: MetadataValue<_> = format!("Bearer {service}").parse()?;
    let store = args.store_url.as_deref().unwrap_or("sqlite (data directory)");
    println!("store: {store}; read_your_writes: {}", args.read_your_writes);

    // Bulk upsert: the whole organization, `batch` entities per call.
    let (first, _) = start_policy(&config, &stop).await?;
    let mut client = PolicyServiceClient::new(Channel::from_shared(format!("http://{first}"))?.connect().await?)
        .max_encoding_message_size(usize::MAX)
        .max_decoding_message_size(64 << 20);
    let total_entities = org.staff.div_ceil(100) + org.staff + org.subjects + org.cases;
    let seeding = Instant::now();
    let mut entities = org.entities();
    let mut batches = Vec::new();
    loop {
        let chunk: Vec<Entity> = entities.by_ref().take(args.batch).collect();
        if chunk.is_empty() {
            break;
        }
        let n = chunk.len();
        let mut request = tonic::Request::new(BatchUpsertEntitiesRequest { entities: chunk, reason: "bench".into() });
        request.metadata_mut().insert("authorization", auth.clone());
        let started = Instant::now();
        let response = client.batch_upsert_entities(request).await.context("bulk upsert")?.into_inner();
        batches.push((n, started.elapsed(), response.changed));
    }
    let seeded = seeding.elapsed();
    let full: Vec<_> = batches.iter().filter(|(n, _, _)| *n == args.batch).map(|(_, d, _)| d.as_secs_f64()).collect();
    println!(
        "bulk upsert: {total_entities} entities in {} calls, {:.2} s ({:.0} entities/s); per {}-entity call: min {:.2} s, max {:.2} s",
        batches.len(),
        seeded.as_secs_f64(),
        total_entities as f64 / seeded.as_secs_f64(),
        args.batch,
        full.iter().copied().fold(f64::MAX, f64::min),
        full.iter().copied().fold(0.0, f64::max),
    );
    // The same batch again is a no-op (idempotent).
    let again: Vec<Entity> =
        org.entities().skip(total_entities as usize - args.batch.min(total_entities as usize)).collect();
    let mut request = tonic::Request::new(BatchUpsertEntitiesRequest { entities: again, reason: "bench".into() });
    request.metadata_mut().insert("authorization", auth.clone());
    let started = Instant::now();
    let response = client.batch_upsert_entities(request).await?.into_inner();
    println!(
        "repeat of the last batch: changed {}, unchanged {}, {:.2} s",
        response.changed,
        response.unchanged,
        started.elapsed().as_secs_f64()
    );

    // Load at start: a second replica reads the whole organization from the store.
    let (target, loaded) = start_policy(&config, &stop).await?;
    println!("load at start: {total_entities} entities in {:.2} s", loaded.as_secs_f64());

    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let metrics_before = quis_core::metrics::handle().render();
    let (calls, allowed, errors, elapsed, latency) = match args.rate {
        Some(rate) => {
            let (measured, from_send) = open_loop(args, rate, &org, target, &auth).await?;
            // The generator's timer wakes on millisecond ticks, after the calls fall due: the
            // latency from each call's actual send shows how much of the above is the server.
            println!(
                "open loop, latency from the actual send: p50 {} µs, p90 {} µs, p99 {} µs, max {} µs",
                from_send.value_at_quantile(0.5),
                from_send.value_at_quantile(0.9),
                from_send.value_at_quantile(0.99),
                from_send.max(),
            );
            measured
        }
        None => check_load(args, &org, target, &auth).await?,
    };
    let mode = match args.rate {
        Some(rate) => format!("open loop at {rate}/s"),
        None => format!("closed loop, {} in flight", args.concurrency),
    };
    println!(
        "Check over gRPC ({mode}): {} calls in {:.1} s = {:.0}/s, allowed {:.0}%, errors {errors}; latency p50 {} µs, p90 {} µs, p99 {} µs, max {} µs",
        calls,
        elapsed.as_secs_f64(),
        calls as f64 / elapsed.as_secs_f64(),
        100.0 * allowed as f64 / calls.max(1) as f64,
        latency.value_at_quantile(0.5),
        latency.value_at_quantile(0.9),
        latency.value_at_quantile(0.99),
        latency.max(),
    );
    // The checks as the policy service saw them, against the generator's figures above.
    let metrics_after = quis_core::metrics::handle().render();
    bench_stages::print(&metrics_before, &metrics_after, calls as f64 / 100.0);
    println!("loadavg before checks: {}", load_before.trim());
    println!("loadavg after checks:  {}", std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim());
    stop.cancel();
    Ok(())
}

async fn connect(args: &BenchPolicyArgs, target: SocketAddr) -> Result<Vec<Channel>> {
    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        channels.push(Channel::from_shared(format!("http://{target}"))?.tcp_nodelay(true).connect().await?);
    }
    Ok(channels)
}

/// Starts `rate` checks a second for one second of warm-up and `args.seconds` measured,
/// each on its own task; a call's latency runs from when it was due to its answer (and,
/// in the second histogram, from when it was sent).
async fn open_loop(
    args: &BenchPolicyArgs,
    rate: u64,
    org: &Org,
    target: SocketAddr,
    auth: &MetadataValue<tonic::metadata::Ascii>,
) -> Result<((u64, u64, u64, Duration, Histogram<u64>), Histogram<u64>)> {
    let channels = connect(args, target).await?;
    let requests: Arc<Vec<CheckRequest>> = Arc::new((0..100_000).map(|n| org.check(n)).collect());
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let warm_up = rate;
    let total = rate * (1 + args.seconds);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Option<(Duration, Duration, bool)>>();
    let started = tokio::time::Instant::now();
    for n in 0..total {
        let due = started + interval.mul_f64(n as f64);
        tokio::time::sleep_until(due).await;
        let mut client = PolicyServiceClient::new(channels[n as usize % channels.len()].clone());
        let mut request = tonic::Request::new(requests[n as usize % requests.len()].clone());
        request.metadata_mut().insert("authorization", auth.clone());
        let (tx, measured) = (tx.clone(), n >= warm_up);
        tokio::spawn(async move {
            let sent = Instant::now();
            let result = client.check(request).await;
            if measured {
                let _ = tx.send(result.ok().map(|d| (due.elapsed(), sent.elapsed(), d.into_inner().allowed)));
            }
        });
    }
    drop(tx);
    let (mut latency, mut from_send) = (histogram(), histogram());
    let (mut allowed, mut errors) = (0, 0);
    while let Some(answer) = rx.recv().await {
        match answer {
            Some((took, server, ok)) => {
                let _ = latency.record(took.as_micros().max(1) as u64);
                let _ = from_send.record(server.as_micros().max(1) as u64);
                allowed += u64::from(ok);
            }
            None => errors += 1,
        }
    }
    // Elapsed over the measured part, until its last answer.
    let elapsed = started.elapsed().saturating_sub(interval.mul_f64(warm_up as f64));
    Ok(((latency.len(), allowed, errors, elapsed, latency), from_send))
}

async fn check_load(
    args: &BenchPolicyArgs,
    org: &Org,
    target: SocketAddr,
    auth: &MetadataValue<tonic::metadata::Ascii>,
) -> Result<(u64, u64, u64, Duration, Histogram<u64>)> {
    let channels = connect(args, target).await?;
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let allowed = Arc::new(AtomicU64::new(0));
    let requests: Arc<Vec<CheckRequest>> = Arc::new((0..100_000).map(|n| org.check(n)).collect());
    let mut handles = Vec::new();
    for i in 0..args.concurrency.max(1) {
        let mut client = PolicyServiceClient::new(channels[i % channels.len()].clone());
        let (auth, measuring, stop, errors, allowed, requests) =
            (auth.clone(), measuring.clone(), stop.clone(), errors.clone(), allowed.clone(), requests.clone());
        handles.push(tokio::spawn(async move {
            let mut hist = histogram();
            let mut n = i * 7919;
            while !stop.load(Ordering::Relaxed) {
                n = (n + 1) % requests.len();
                let mut request = tonic::Request::new(requests[n].clone());
                request.metadata_mut().insert("authorization", auth.clone());
                let started = Instant::now();
                let result = client.check(request).await;
                if measuring.load(Ordering::Relaxed) {
                    match result {
                        Ok(d) => {
                            let _ = hist.record(started.elapsed().as_micros().max(1) as u64);
                            if d.into_inner().allowed {
                                allowed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            hist
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut latency = histogram();
    for h in handles {
        latency.add(h.await?)?;
    }
    Ok((latency.len(), allowed.load(Ordering::Relaxed), errors.load(Ordering::Relaxed), elapsed, latency))
}
