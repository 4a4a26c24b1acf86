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

pub(crate) struct Outcome {
    pub calls: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latency: Histogram<u64>,
}

/// The header of [`row`].
pub(crate) fn header() -> String {
    format!(
        "{:<10} {:>10} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "target", "calls/s", "errors", "p50 µs", "p90 µs", "p99 µs", "max µs"
    )
}

/// One target's figures, as a table row.
pub(crate) fn row(name: &str, outcome: &Outcome) -> String {
    let h = &outcome.latency;
    format!(
        "{:<10} {:>10.0} {:>8} {:>9} {:>9} {:>9} {:>9}",
        name,
        outcome.rate(),
        outcome.errors,
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.9),
        h.value_at_quantile(0.99),
        h.max()
    )
}

impl Outcome {
    /// Successful calls per second.
    pub(crate) fn rate(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }
}

pub async fn run(args: &BenchArgs) -> Result<()> {
    println!("{}", header());
    for target in &args.targets {
        let (name, addr) = target.split_once('=').context("targets are name=host:port")?;
        let outcome = measure(args, addr).await.with_context(|| format!("target {name}"))?;
        println!("{}", row(name, &outcome));
    }
    Ok(())
}

async fn measure(args: &BenchArgs, addr: &str) -> Result<Outcome> {
    let auth: Option<MetadataValue<_>> = match &args.token {
        Some(t) => Some(format!("Bearer {t}").parse().context("token")?),
        None => None,
    };
    let payload = vec![0x5a_u8; args.payload];
    let load =
        Load { connections: args.connections, concurrency: args.concurrency, seconds: args.seconds, rate: args.rate };
    load.run(addr, move |channel| {
        let mut client = EchoServiceClient::new(channel);
        let (auth, payload) = (auth.clone(), payload.clone());
        async move {
            let mut req = tonic::Request::new(EchoRequest { message: "bench".into(), payload });
            if let Some(auth) = &auth {
                req.metadata_mut().insert("authorization", auth.clone());
            }
            client.echo(req).await.is_ok()
        }
    })
    .await
}

/// A load: connections shared by workers, each sending one call at a time
/// (closed loop) or at its share of `rate` (open loop), measured for `seconds`
/// after one second of warm-up.
pub(crate) struct Load {
    pub connections: usize,
    pub concurrency: usize,
    pub seconds: u64,
    pub rate: Option<u64>,
}

impl Load {
    /// Runs the load against `addr`; `call` makes one call on a channel and says whether it succeeded.
    pub(crate) async fn run<F, Fut>(&self, addr: &str, call: F) -> Result<Outcome>
    where
        F: Fn(Channel) -> Fut + Clone + Send + 'static,
        Fut: std::future::Future<Output = bool> + Send,
    {
        let mut channels = Vec::new();
        for _ in 0..self.connections.max(1) {
            channels.push(Channel::from_shared(format!("http://{addr}"))?.connect().await?);
        }
        let measuring = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let errors = Arc::new(AtomicU64::new(0));
        let workers = self.concurrency.max(1);
        // Open loop: each worker sends at rate/workers on its own schedule.
        let interval = self.rate.map(|r| Duration::from_secs_f64(workers as f64 / r.max(1) as f64));
        let mut handles = Vec::new();
        for i in 0..workers {
            let channel = channels[i % channels.len()].clone();
            let (call, measuring, stop, errors) = (call.clone(), measuring.clone(), stop.clone(), errors.clone());
            handles.push(tokio::spawn(async move {
                let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
                // Open loop: workers are spread over one period, so calls arrive evenly, not in bursts.
                let mut next =
                    Instant::now() + interval.map_or(Duration::ZERO, |p| p.mul_f64(i as f64 / workers as f64));
                while !stop.load(Ordering::Relaxed) {
                    if let Some(interval) = interval {
                        next += interval;
                        tokio::time::sleep_until(next.into()).await;
                    }
                    // Open loop measures from the scheduled time, so queueing counts as latency.
                    let started = if interval.is_some() { next.min(Instant::now()) } else { Instant::now() };
                    let ok = call(channel.clone()).await;
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
        tokio::time::sleep(Duration::from_secs(self.seconds)).await;
        measuring.store(false, Ordering::Relaxed);
        let elapsed = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
        for h in handles {
            latency.add(h.await?)?;
        }
        Ok(Outcome { calls: latency.len(), errors: errors.load(Ordering::Relaxed), elapsed, latency })
    }
}
