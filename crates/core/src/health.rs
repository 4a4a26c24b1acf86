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

/// Sets the whole server (the empty service name) NOT_SERVING, then spawns a task that runs
/// `checks` every `interval` and publishes the result under each of `services` (and the empty
/// name) until `shutdown`, then turns everything NOT_SERVING. Await it before the server answers.
pub async fn spawn_drive(
    reporter: HealthReporter,
    services: Vec<String>,
    checks: Vec<Arc<dyn ReadinessCheck>>,
    readiness: Readiness,
    interval: Duration,
    shutdown: CancellationToken,
) {
    not_serving_until_checked(&reporter).await;
    tokio::spawn(async move {
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
    });
}

/// tonic-health starts the empty service name SERVING, so a caller polling health
/// at start could see a server serving whose readiness was never checked.
async fn not_serving_until_checked(reporter: &HealthReporter) {
    reporter.set_service_status("", ServingStatus::NotServing).await;
}

async fn publish(reporter: &HealthReporter, services: &[String], status: ServingStatus) {
    reporter.set_service_status("", status).await;
    for s in services {
        reporter.set_service_status(s, status).await;
    }
}

#[cfg(test)]
mod tests {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus as Answer, health_client::HealthClient,
    };

    use super::*;

    /// Ready once opened.
    struct Gate(Arc<AtomicBool>);

    impl ReadinessCheck for Gate {
        fn name(&self) -> &str {
            "gate"
        }
        fn check(&self) -> BoxFuture<'_, Result<(), String>> {
            let open = self.0.load(Ordering::Acquire);
            Box::pin(async move { if open { Ok(()) } else { Err("closed".into()) } })
        }
    }

    /// Over real gRPC: the whole server is NOT_SERVING from its first answer until a
    /// round of checks finds it ready (tonic-health alone would answer SERVING at once).
    #[tokio::test]
    async fn the_server_is_not_serving_until_a_round_finds_it_ready() {
        let (reporter, service) = tonic_health::server::health_reporter();
        not_serving_until_checked(&reporter).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        tokio::spawn(tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming));
        let channel = tonic::transport::Channel::from_shared(format!("http://{addr}")).expect("uri");
        let mut client = HealthClient::new(channel.connect().await.expect("connect"));
        let mut status = async || client.check(HealthCheckRequest::default()).await.expect("check").into_inner().status;
        assert_eq!(status().await, Answer::NotServing as i32, "before any round");

        let open = Arc::new(AtomicBool::new(false));
        let (readiness, stop) = (Readiness::default(), CancellationToken::new());
        let checks: Vec<Arc<dyn ReadinessCheck>> = vec![Arc::new(Gate(Arc::clone(&open)))];
        spawn_drive(reporter, Vec::new(), checks, readiness.clone(), Duration::from_millis(20), stop.clone()).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(status().await, Answer::NotServing as i32, "rounds that fail");
        assert!(!readiness.is_ready());

        open.store(true, Ordering::Release);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while status().await != Answer::Serving as i32 {
            assert!(tokio::time::Instant::now() < deadline, "never SERVING once ready");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(readiness.is_ready(), "SERVING only once /readyz says ready");
        stop.cancel();
    }
}
