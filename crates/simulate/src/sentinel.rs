//! Reading sentinel's results through the gateway with an investigator's token.
use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use quis_proto::sentinel::{
    Alert, GetDetectionStatsRequest, GetDetectionStatsResponse, Incident, ListAlertsRequest, ListIncidentsRequest,
    WatchAlertsRequest, sentinel_service_client::SentinelServiceClient,
};
use tonic::transport::Channel;

use crate::client::authed;

const INTEGRITY_DETECTION: &str = "ledger-integrity";
const POLL: Duration = Duration::from_millis(200);

pub struct Sentinel {
    client: SentinelServiceClient<Channel>,
    token: String,
}

impl Sentinel {
    pub fn new(channel: Channel, token: String) -> Self {
        Self { client: SentinelServiceClient::new(channel), token }
    }

    pub async fn stats(&mut self) -> Result<GetDetectionStatsResponse> {
        Ok(self.client.get_detection_stats(authed(GetDetectionStatsRequest {}, &self.token)?).await?.into_inner())
    }

    /// Waits until sentinel has processed the ledger up to and including `index` (sentinel being
    /// unreachable for a while, e.g. restarting, is waited out too).
    pub async fn catch_up(&mut self, index: u64, timeout: Duration) -> Result<GetDetectionStatsResponse> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.stats().await {
                Ok(stats) if stats.cursor > index => return Ok(stats),
                Ok(stats) => format!("at ledger index {}", stats.cursor),
                Err(e) => format!("unreachable ({e:#})"),
            };
            if Instant::now() > deadline {
                bail!("sentinel is {last} after {timeout:?}, short of {index}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Every alert, of one detection if given.
    pub async fn alerts(&mut self, detection_id: &str) -> Result<Vec<Alert>> {
        let mut alerts = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = ListAlertsRequest {
                page_size: 1000,
                page_token: page_token.clone(),
                detection_id: detection_id.to_string(),
                ..Default::default()
            };
            let page = self.client.list_alerts(authed(request, &self.token)?).await?.into_inner();
            alerts.extend(page.alerts);
            if page.next_page_token.is_empty() {
                return Ok(alerts);
            }
            page_token = page.next_page_token;
        }
    }

    /// Every incident sentinel grouped its alerts into.
    pub async fn incidents(&mut self) -> Result<Vec<Incident>> {
        let mut incidents = Vec::new();
        let mut page_token = String::new();
        loop {
            let request =
                ListIncidentsRequest { page_size: 1000, page_token: page_token.clone(), ..Default::default() };
            let page = self.client.list_incidents(authed(request, &self.token)?).await?.into_inner();
            incidents.extend(page.incidents);
            if page.next_page_token.is_empty() {
                return Ok(incidents);
            }
            page_token = page.next_page_token;
        }
    }

    /// Waits for a `ledger-integrity` alert beyond the `before` already raised; returns the wait.
    pub async fn integrity_alert(&mut self, before: usize, timeout: Duration) -> Result<Option<Duration>> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if self.alerts(INTEGRITY_DETECTION).await?.len() > before {
                return Ok(Some(started.elapsed()));
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(None)
    }

    /// Follows the alert stream from now on, noting when each alert arrives (see [`AlertWatch`]).
    pub fn watch(&self) -> AlertWatch {
        let received: Arc<Mutex<Vec<(Alert, Instant)>>> = Arc::default();
        let (mut client, token, sink) = (self.client.clone(), self.token.clone(), received.clone());
        let task = tokio::spawn(async move {
            // The alert the stream resumes after when it breaks (sentinel restarting).
            let mut after = String::new();
            loop {
                let request = WatchAlertsRequest { after: after.clone(), ..Default::default() };
                if let Ok(request) = authed(request, &token)
                    && let Ok(response) = client.watch_alerts(request).await
                {
                    let mut stream = response.into_inner();
                    while let Ok(Some(message)) = stream.message().await {
                        if let Some(alert) = message.alert {
                            after.clone_from(&alert.name);
                            sink.lock().unwrap_or_else(|p| p.into_inner()).push((alert, Instant::now()));
                        }
                    }
                }
                tokio::time::sleep(POLL).await;
            }
        });
        AlertWatch { received, task }
    }

    /// How many `ledger-integrity` alerts there are now.
    pub async fn integrity_alerts(&mut self) -> Result<usize> {
        Ok(self.alerts(INTEGRITY_DETECTION).await?.len())
    }
}

/// Alerts as a client watching the stream receives them, with the instant each arrived:
/// with the instant each ledger entry was acknowledged to its caller, the wall-clock
/// detection lag.
pub struct AlertWatch {
    received: Arc<Mutex<Vec<(Alert, Instant)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl AlertWatch {
    /// Waits until every alert of `expected` (by name) has arrived, or `timeout`; stops
    /// watching and returns what arrived.
    pub async fn finish(self, expected: &[Alert], timeout: Duration) -> Vec<(Alert, Instant)> {
        let deadline = Instant::now() + timeout;
        loop {
            let complete = {
                let received = self.received.lock().unwrap_or_else(|p| p.into_inner());
                let names: std::collections::HashSet<&str> = received.iter().map(|(a, _)| a.name.as_str()).collect();
                expected.iter().all(|a| names.contains(a.name.as_str()))
            };
            if complete || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        self.task.abort();
        std::mem::take(&mut *self.received.lock().unwrap_or_else(|p| p.into_inner()))
    }
}
