//! `quis bench-ledger`: load on a ledger's `AppendEvents` (closed loop at
//! peak, or open loop at a fixed rate for acknowledgement latency), the lag of
//! a `TailEvents` consumer, inclusion-proof latency, and, for comparison in
//! the same run, the same events inserted one per statement into a plain
//! PostgreSQL table (what teams do without a ledger).
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use prost::Message;
use quis_proto::ledger::{
    AccessEvent, Action, Actor, AppendEventsRequest, Commitment, Decision, Event, EventDetail, GetCheckpointRequest,
    GetInclusionProofRequest, LedgerEntry, Purpose, TailEventsRequest, event::Kind,
    ledger_service_client::LedgerServiceClient,
};
use sha2::{Digest, Sha256};
use tonic::transport::Channel;

#[derive(clap::Args)]
pub struct BenchLedgerArgs {
    /// The ledger's gRPC address, host:port.
    #[arg(long)]
    ledger: String,
    /// A service token of an appender of access events (`quis token --sub vault --role service --kind service`).
    #[arg(long)]
    token: String,
    /// An auditor token, for tail lag and proofs.
    #[arg(long)]
    auditor_token: Option<String>,
    /// Concurrent appenders.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Events per AppendEvents call.
    #[arg(long, default_value_t = 16)]
    events_per_call: usize,
    /// Measured seconds (after one second of warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Open loop: this many events per second in total instead of as many as possible.
    #[arg(long)]
    rate: Option<u64>,
    /// Fill: append exactly this many events as fast as possible, measured from the first call
    /// (instead of `--seconds` after a warm-up).
    #[arg(long)]
    fill: Option<u64>,
    /// Measure the lag of a TailEvents consumer during the run.
    #[arg(long)]
    tail: bool,
    /// After the run, this many inclusion proofs at random indices of the signed tree.
    #[arg(long, default_value_t = 0)]
    proofs: u64,
    /// Also insert the same events one per statement into a plain table in this PostgreSQL database.
    #[arg(long)]
    postgres_baseline: Option<String>,
}

/// An access event of about 300 bytes once wrapped and encoded, with its detail.
fn event(n: u64) -> (Event, EventDetail) {
    let salt = Sha256::digest(n.to_be_bytes())[..16].to_vec();
    let value = format!("subject-{n:012}");
    let digest = Sha256::new().chain_update(&salt).chain_update(value.as_bytes()).finalize().to_vec();
    let access = AccessEvent {
        actor: Some(Actor {
            principal: "caseworker-0042".into(),
            kind: "staff".into(),
            roles: vec!["caseworker".into()],
            team: "north".into(),
            site: "site-7".into(),
            source_address: "10.20.30.40".into(),
            device: "ws-0042".into(),
            token_id: "3f2a9c1e-8b7d-4e6f-a5c4-1d2e3f4a5b6c".into(),
        }),
        action: Action::Read as i32,
        subject: Some(Commitment { digest }),
        purpose: Purpose::Casework as i32,
        case: "cases/c-2026-000123".into(),
        decision: Decision::Allow as i32,
        determining_policies: vec!["casework-assigned".into()],
        policy_version: "9b1c0d7e4f3a2b6c".into(),
        fields_returned: vec!["identity".into(), "contact".into()],
        request_id: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".into(),
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        ..Default::default()
    };
    (Event { kind: Some(Kind::Access(access)) }, EventDetail { salt, value })
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds")
}

fn print_latency(name: &str, h: &Histogram<u64>) {
    println!(
        "{name:<28} n={:<9} p50={}µs p90={}µs p99={}µs max={}µs",
        h.len(),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.9),
        h.value_at_quantile(0.99),
        h.max()
    );
}

pub async fn run(args: &BenchLedgerArgs) -> Result<()> {
    let channel = Channel::from_shared(format!("http://{}", args.ledger))?.connect().await.context("ledger")?;
    let sample = LedgerEntry {
        sequence_time: Some(prost_types::Timestamp::default()),
        appended_by: "vault".into(),
        event: Some(event(0).0),
    };
    println!("event: {} bytes encoded as a ledger entry", sample.encoded_len());

    let stop = Arc::new(AtomicBool::new(false));
    let tail = match (&args.auditor_token, args.tail) {
        (Some(token), true) => Some(tokio::spawn(tail_lag(channel.clone(), token.clone(), Arc::clone(&stop)))),
        _ => None,
    };
    let (events, elapsed, latency) = append_load(args, &channel).await?;
    stop.store(true, Ordering::Relaxed);
    println!(
        "appends: {:.0} events/s ({} events in {:.1} s, {} per call, {} appenders{})",
        events as f64 / elapsed.as_secs_f64(),
        events,
        elapsed.as_secs_f64(),
        args.events_per_call,
        args.concurrency,
        args.rate.map(|r| format!(", open loop at {r} events/s")).unwrap_or_default()
    );
    print_latency("acknowledgement latency", &latency);
    if let Some(tail) = tail {
        print_latency("tail lag (sequenced→received)", &tail.await??);
    }
    if args.proofs > 0 {
        let token = args.auditor_token.as_deref().context("--proofs needs --auditor-token")?;
        proofs(&channel, token, args.proofs).await?;
    }
    if let Some(url) = &args.postgres_baseline {
        postgres_baseline(url, args).await?;
    }
    Ok(())
}

async fn append_load(args: &BenchLedgerArgs, channel: &Channel) -> Result<(u64, Duration, Histogram<u64>)> {
    let auth: tonic::metadata::MetadataValue<_> = format!("Bearer {}", args.token).parse()?;
    let measuring = Arc::new(AtomicBool::new(args.fill.is_some()));
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(0));
    let claimed = Arc::new(AtomicU64::new(0));
    let fill = args.fill;
    let sequence = Arc::new(AtomicU64::new(rand_start()));
    let per_call = args.events_per_call.clamp(1, 1000);
    let workers = args.concurrency.max(1);
    let interval = args.rate.map(|r| Duration::from_secs_f64((workers * per_call) as f64 / r.max(1) as f64));
    let mut handles = Vec::new();
    for i in 0..workers {
        let mut client = LedgerServiceClient::new(channel.clone());
        let (auth, measuring, stop, counter, sequence, claimed) =
            (auth.clone(), measuring.clone(), stop.clone(), counter.clone(), sequence.clone(), claimed.clone());
        handles.push(tokio::spawn(async move {
            let mut hist = histogram();
            // Open loop: workers are spread over one period, so calls arrive evenly, not in bursts.
            let mut next = Instant::now() + interval.map_or(Duration::ZERO, |p| p.mul_f64(i as f64 / workers as f64));
            while !stop.load(Ordering::Relaxed) {
                let per_call = match fill {
                    Some(total) => match total.checked_sub(claimed.fetch_add(per_call as u64, Ordering::Relaxed)) {
                        Some(left) if left > 0 => left.min(per_call as u64) as usize,
                        _ => break,
                    },
                    None => per_call,
                };
                if let Some(interval) = interval {
                    next += interval;
                    tokio::time::sleep_until(next.into()).await;
                }
                let first = sequence.fetch_add(per_call as u64, Ordering::Relaxed);
                let (events, details) = (first..first + per_call as u64).map(event).unzip();
                let mut req = tonic::Request::new(AppendEventsRequest { events, details });
                req.metadata_mut().insert("authorization", auth.clone());
                let started = if interval.is_some() { next.min(Instant::now()) } else { Instant::now() };
                let ok = client.append_events(req).await.is_ok();
                if ok && measuring.load(Ordering::Relaxed) {
                    let _ = hist.record(started.elapsed().as_micros().max(1) as u64);
                    counter.fetch_add(per_call as u64, Ordering::Relaxed);
                }
            }
            hist
        }));
    }
    let mut started = Instant::now();
    let mut elapsed = None;
    if fill.is_none() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        measuring.store(true, Ordering::Relaxed);
        started = Instant::now();
        tokio::time::sleep(Duration::from_secs(args.seconds)).await;
        measuring.store(false, Ordering::Relaxed);
        elapsed = Some(started.elapsed());
        stop.store(true, Ordering::Relaxed);
    }
    // A fill ends when its workers have appended every event.
    let mut latency = histogram();
    for h in handles {
        latency.add(h.await?)?;
    }
    Ok((counter.load(Ordering::Relaxed), elapsed.unwrap_or_else(|| started.elapsed()), latency))
}

/// Distinct commitments across runs on the same ledger, as real ones are (each has a fresh salt).
fn rand_start() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0) << 8
}

/// Follows the tail from the latest checkpoint and measures sequencing→receipt for
/// each entry sequenced since it started. The checkpoint may be behind the durable
/// size by an earlier run's last entries: their replay is no lag of this run's.
async fn tail_lag(channel: Channel, token: String, stop: Arc<AtomicBool>) -> Result<Histogram<u64>> {
    let since = SystemTime::now();
    let mut client = LedgerServiceClient::new(channel);
    let auth: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse()?;
    let mut req = tonic::Request::new(GetCheckpointRequest {});
    req.metadata_mut().insert("authorization", auth.clone());
    let start = client.get_checkpoint(req).await.map(|r| r.into_inner().tree_size).unwrap_or(0);
    let mut req = tonic::Request::new(TailEventsRequest { start_index: start });
    req.metadata_mut().insert("authorization", auth);
    let mut stream = client.tail_events(req).await?.into_inner();
    let mut lag = histogram();
    while !stop.load(Ordering::Relaxed) {
        let Ok(Ok(Some(item))) = tokio::time::timeout(Duration::from_secs(2), stream.message()).await else { break };
        let Some(entry) = item.entry else { continue };
        let Ok(decoded) = LedgerEntry::decode(entry.data.as_slice()) else { continue };
        if let Some(t) = decoded.sequence_time {
            let sequenced = SystemTime::UNIX_EPOCH + Duration::new(t.seconds as u64, t.nanos as u32);
            if sequenced < since {
                continue;
            }
            if let Ok(d) = SystemTime::now().duration_since(sequenced) {
                let _ = lag.record(d.as_micros().max(1) as u64);
            }
        }
    }
    Ok(lag)
}

async fn proofs(channel: &Channel, token: &str, count: u64) -> Result<()> {
    let auth: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse()?;
    let mut client = LedgerServiceClient::new(channel.clone());
    let mut req = tonic::Request::new(GetCheckpointRequest {});
    req.metadata_mut().insert("authorization", auth.clone());
    let size = client.get_checkpoint(req).await?.into_inner().tree_size;
    anyhow::ensure!(size > 0, "the signed tree is empty");
    let mut latency = histogram();
    let mut x = rand_start() | 1;
    for _ in 0..count {
        // xorshift: cheap, good enough to spread indices over the tree.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut req = tonic::Request::new(GetInclusionProofRequest { index: x % size, tree_size: size });
        req.metadata_mut().insert("authorization", auth.clone());
        let started = Instant::now();
        client.get_inclusion_proof(req).await?;
        let _ = latency.record(started.elapsed().as_micros().max(1) as u64);
    }
    print_latency(&format!("inclusion proof (size {size})"), &latency);
    Ok(())
}

/// The same events, one INSERT per event, autocommit, into a plain table.
async fn postgres_baseline(url: &str, args: &BenchLedgerArgs) -> Result<()> {
    let pool =
        sqlx::postgres::PgPoolOptions::new().max_connections(args.concurrency.min(64) as u32).connect(url).await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS baseline_events (id BIGSERIAL PRIMARY KEY, data BYTEA NOT NULL)")
        .execute(&pool)
        .await?;
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for w in 0..args.concurrency.max(1) {
        let (pool, stop, counter) = (pool.clone(), stop.clone(), counter.clone());
        handles.push(tokio::spawn(async move {
            let mut n = w as u64 * 1_000_000_000;
            while !stop.load(Ordering::Relaxed) {
                let data = event(n).0.encode_to_vec();
                n += 1;
                if sqlx::query("INSERT INTO baseline_events (data) VALUES ($1)").bind(data).execute(&pool).await.is_ok()
                {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = counter.load(Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let rows = counter.load(Ordering::Relaxed) - before;
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.await?;
    }
    println!(
        "postgres baseline: {:.0} rows/s (one INSERT per event, {} connections)",
        rows as f64 / elapsed.as_secs_f64(),
        args.concurrency.min(64)
    );
    Ok(())
}
