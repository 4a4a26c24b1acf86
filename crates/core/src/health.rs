//! Readiness: checks that a service can do its work (its store answers, the
//! services it depends on are reachable). Their result drives both
//! `grpc.health.v1` and the admin `/readyz`; shutdown turns both off first.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tonic_health::{ServingStatus, server::HealthReporter};

/// One readiness condition.
pub trait ReadinessCheck: Send + Sync {
    /// A short name for logs and `/readyz`, e.g. `store` or `upstream:ledger`.
    fn name(&self) -> &str;
    /// `Ok` when ready; `Err` with a reason otherwise.
    fn check(&self) -> BoxFuture<'_, Result<(), String>>;
}

/// The shared readiness state of a process.
#[derive(Clone, Debug, Default)]
pub struct Readiness {
    ready: Arc<AtomicBool>,
    draining: Arc<AtomicBool>,
    detail: Arc<std::sync::Mutex<String>>,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.draining.load(Ordering::Acquire)
    }

    pub fn detail(&self) -> String {
        self.detail.lock().map(|d| d.clone()).unwrap_or_default()
    }

    fn set(&self, ready: bool, detail: String) {
        self.ready.store(ready, Ordering::Release);
        if let Ok(mut d) = self.detail.lock() {
            *d = detail;
        }
    }

    /// Marks the process as draining: not ready from now on, whatever the checks say.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Release);
    }
}

/// Runs `checks` every `interval` and publishes the result under each of
/// `services` (and the empty name, the whole server) until `shutdown`, then
/// turns everything NOT_SERVING.
pub async fn drive(
    reporter: HealthReporter,
    services: Vec<String>,
    checks: Vec<Arc<dyn ReadinessCheck>>,
    readiness: Readiness,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut last = None;
    loop {
        let mut failures = Vec::new();
        for check in &checks {
            match tokio::time::timeout(interval.max(Duration::from_secs(1)), check.check()).await {
                Ok(Ok(())) => {}
                Ok(Err(reason)) => failures.push(format!("{}: {reason}", check.name())),
                Err(_) => failures.push(format!("{}: timed out", check.name())),
            }
        }
        let ready = failures.is_empty() && !shutdown.is_cancelled();
        if last != Some(ready) {
            if ready {
                tracing::info!("ready");
            } else {
                tracing::warn!(failures = %failures.join("; "), "not ready");
            }
            last = Some(ready);
        }
        readiness.set(ready, failures.join("; "));
        let status = if ready { ServingStatus::Serving } else { ServingStatus::NotServing };
        publish(&reporter, &services, status).await;
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
    }
    readiness.drain();
    publish(&reporter, &services, ServingStatus::NotServing).await;
}

async fn publish(reporter: &HealthReporter, services: &[String], status: ServingStatus) {
    reporter.set_service_status("", status).await;
    for s in services {
        reporter.set_service_status(s, status).await;
    }
}
