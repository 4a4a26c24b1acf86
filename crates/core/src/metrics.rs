//! Prometheus metrics: one recorder per process, rendered on the admin port,
//! and a tower layer that counts gRPC calls by service, method and code.
use std::{
    collections::HashSet,
    future::Future,
    sync::OnceLock,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tower::{Layer, Service};

use crate::grpc_body::{GrpcOutcome, ObservedBody};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Upper bounds of every histogram's buckets, in seconds: fine between 1 and 50 ms,
/// where the tail of a guarded call lies.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process's Prometheus recorder, installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let handle =
            PrometheusBuilder::new().set_buckets(BUCKETS).map(|b| b.install_recorder()).and_then(|r| r).unwrap_or_else(
                |_| {
                    // Another recorder is already installed (a test harness): render an empty one.
                    PrometheusBuilder::new().build_recorder().handle()
                },
            );
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                }
            })
            .ok();
        handle
    })
}

/// Counts and times every gRPC call: `quis_grpc_requests_total` and
/// `quis_grpc_request_duration_seconds`, labelled by service, method and code.
#[derive(Clone, Debug)]
pub struct GrpcMetricsLayer {
    server: &'static str,
    known: &'static HashSet<String>,
}

impl GrpcMetricsLayer {
    /// `known` lists the method paths that get a label of their own; every other path counts as `other`.
    pub fn new(server: &'static str, known: &'static HashSet<String>) -> Self {
        let _ = handle();
        Self { server, known }
    }
}

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner, server: self.server, known: self.known }
    }
}

/// See [`GrpcMetricsLayer`].
#[derive(Clone, Debug)]
pub struct GrpcMetrics<S> {
    inner: S,
    server: &'static str,
    known: &'static HashSet<String>,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for GrpcMetrics<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: http_body::Body,
{
    type Response = http::Response<ObservedBody<ResBody>>;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let path = if self.known.contains(req.uri().path()) { req.uri().path().to_string() } else { OTHER.to_string() };
        let server = self.server;
        let started = Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let response = fut.await?;
            Ok(ObservedBody::wrap(response, move |outcome: GrpcOutcome| {
                record_call(server, &path, outcome.code_name(), started.elapsed());
            }))
        })
    }
}

/// The label path of calls to methods the suite does not serve.
pub const OTHER: &str = "/other/other";

/// Records one finished gRPC call; `path` must come from a bounded set (a known method or [`OTHER`]).
pub fn record_call(server: &'static str, path: &str, code: &'static str, elapsed: Duration) {
    let (service, method) = split_path(path);
    let labels = [
        ("server", server.to_string()),
        ("service", service.to_string()),
        ("method", method.to_string()),
        ("code", code.to_string()),
    ];
    metrics::counter!("quis_grpc_requests_total", &labels).increment(1);
    metrics::histogram!("quis_grpc_request_duration_seconds", &labels).record(elapsed.as_secs_f64());
}

/// Runs `work` and records how long it took as one stage of a call:
/// `quis_stage_seconds{service, stage}`.
pub fn time_stage<T>(service: &'static str, stage: &'static str, work: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = work();
    record_stage(service, stage, started.elapsed());
    out
}

/// [`time_stage`] for a future: its time until ready, waiting for a shared group or a
/// store included.
pub async fn time_stage_async<T>(service: &'static str, stage: &'static str, work: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let out = work.await;
    record_stage(service, stage, started.elapsed());
    out
}

fn record_stage(service: &'static str, stage: &'static str, elapsed: Duration) {
    metrics::histogram!("quis_stage_seconds", "service" => service, "stage" => stage).record(elapsed.as_secs_f64());
}

/// `/pkg.Service/Method` → (`pkg.Service`, `Method`); anything else is bucketed as `other`
/// so that arbitrary paths cannot grow the label set.
pub fn split_path(path: &str) -> (&str, &str) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    match (parts.next(), parts.next()) {
        (Some(s), Some(m))
            if !s.is_empty() && !m.is_empty() && !m.contains('/') && s.len() <= 128 && m.len() <= 128 =>
        {
            (s, m)
        }
        _ => ("other", "other"),
    }
}
