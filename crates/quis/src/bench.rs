//! `quis bench`: a closed-loop (peak) or open-loop (fixed rate) load of
//! unary `quis.echo.v1.EchoService/Echo` calls against one or more targets in
//! the same run, e.g. the echo service directly, through the gateway, and
//! through another proxy, so that their figures compare side by side.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use quis_proto::echo::{EchoRequest, echo_service_client::EchoServiceClient};
use tonic::{metadata::MetadataValue, transport::Channel};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Targets as name=host:port, e.g. direct=127.0.0.1:7409 gateway=127.0.0.1:7400.
    #[arg(required = true)]
    targets: Vec<String>,
    /// Bearer token sent with every call.
    #[arg(long, env = "QUIS_TOKEN")]
    token: Option<String>,
    /// Calls in flight at once (closed loop).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// HTTP/2 connections per target, shared by the workers.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Measured seconds per target (after one second of warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Open loop: send this many calls per second instead of as many as possible.
    #[arg(long)]
    rate: Option<u64>,
    /// Payload bytes per call.
    #[arg(long, default_value_t = 64)]
    payload: usize,
}

struct Outcome {
    calls: u64,
    errors: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
}

pub async fn run(args: &BenchArgs) -> Result<()> {
    println!(
        "{:<10} {:>10} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "target", "calls/s", "errors", "p50 µs", "p90 µs", "p99 µs", "max µs"
    );
    for target in &args.targets {
        let (name, addr) = target.split_once('=').context("targets are name=host:port")?;
        let outcome = measure(args, addr).await.with_context(|| format!("target {name}"))?;
        let rate = outcome.calls as f64 / outcome.elapsed.as_secs_f64();
        let h = &outcome.latency;
        println!(
            "{:<10} {:>10.0} {:>8} {:>9} {:>9} {:>9} {:>9}",
            name,
            rate,
            outcome.errors,
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.9),
            h.value_at_quantile(0.99),
            h.max()
        );
    }
    Ok(())
}

async fn measure(args: &BenchArgs, addr: &str) -> Result<Outcome> {
    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        channels.push(Channel::from_shared(format!("http://{addr}"))?.connect().await?);
    }
    let auth: Option<MetadataValue<_>> = match &args.token {
        Some(t) => Some(format!("Bearer {t}").parse().context("token")?),
        None => None,
    };
    let payload = vec![0x5a_u8; args.payload];
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let workers = args.concurrency.max(1);
    // Open loop: each worker sends at rate/workers on its own schedule.
    let interval = args.rate.map(|r| Duration::from_secs_f64(workers as f64 / r.max(1) as f64));
    let mut handles = Vec::new();
    for i in 0..workers {
        let mut client = EchoServiceClient::new(channels[i % channels.len()].clone());
        let (auth, payload, measuring, stop, errors) =
            (auth.clone(), payload.clone(), measuring.clone(), stop.clone(), errors.clone());
        handles.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
            // Open loop: workers are spread over one period, so calls arrive evenly, not in bursts.
            let mut next = Instant::now() + interval.map_or(Duration::ZERO, |p| p.mul_f64(i as f64 / workers as f64));
            while !stop.load(Ordering::Relaxed) {
                if let Some(interval) = interval {
                    next += interval;
                    tokio::time::sleep_until(next.into()).await;
                }
                let mut req = tonic::Request::new(EchoRequest { message: "bench".into(), payload: payload.clone() });
                if let Some(auth) = &auth {
                    req.metadata_mut().insert("authorization", auth.clone());
                }
                // Open loop measures from the scheduled time, so queueing counts as latency.
                let started = if interval.is_some() { next.min(Instant::now()) } else { Instant::now() };
                let ok = client.echo(req).await.is_ok();
                if measuring.load(Ordering::Relaxed) {
                    if ok {
                        let _ = hist.record(started.elapsed().as_micros().max(1) as u64);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
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
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for h in handles {
        latency.add(h.await?)?;
    }
    Ok(Outcome { calls: latency.len(), errors: errors.load(Ordering::Relaxed), elapsed, latency })
}
