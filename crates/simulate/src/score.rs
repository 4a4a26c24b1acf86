//! Scoring: sentinel's alerts and incidents matched against the planted incidents.
//!
//! An alert (one episode of one detection on one actor: its repeated firings
//! join it) belongs to a planted incident when it is about the incident's
//! actor and either rests on one of the incident's ledger entries or its
//! firings (event time) meet the span from the incident's first event to an
//! hour after its last; a `ledger-integrity` alert belongs to the
//! ledger-tampering incident. Sentinel groups related alerts on one actor into
//! an incident: a sentinel incident belongs to a planted one when one of its
//! alerts does. Recall is per kind (a planted incident is found when at least
//! one alert belongs to it). The figures: `alert_precision` (the share of
//! alerts that belong to a planted incident) and `alerts_per_1000_staff_days`,
//! and the same over sentinel's incidents (`incident_precision`,
//! `incidents_per_1000_staff_days`). Lag is event time from an incident's
//! first event to its first alert's first firing (for the tampering,
//! wall-clock time to the integrity alert, in `played`).
use std::collections::BTreeMap;

use quis_proto::sentinel::{Alert, Incident as SentinelIncident};
use serde::Serialize;

use crate::incidents::{Incident, IncidentKind};

/// How long after an incident's last event an alert on the same actor still belongs to it.
const MATCH_SLACK_MS: i64 = 3_600_000;
const INTEGRITY_DETECTION: &str = "ledger-integrity";

/// What was simulated, for the report's header.
#[derive(Clone, Debug, Serialize)]
pub struct Played {
    pub seed: u64,
    pub staff: usize,
    pub subjects: usize,
    pub days: u32,
    /// Distinct (staff member, day) pairs with activity.
    pub staff_days: u64,
    /// Vault calls made, and how many were denied or refused.
    pub calls: u64,
    pub denied: u64,
    /// Wall-clock seconds from the ledger rows being rewritten to the integrity alert, if it came.
    pub integrity_alert_wall_secs: Option<f64>,
    /// Wall-clock time from the answer to the call that wrote an alert's last evidence entry
    /// to the alert's arrival on the alert stream, over the alerts on played calls.
    pub wall_detection_lag: Option<WallLag>,
}

/// Wall-clock detection lag, in milliseconds.
#[derive(Clone, Debug, Serialize)]
pub struct WallLag {
    pub alerts: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The wall-clock lag of each `received` alert whose last evidence entry was written by a
/// call answered at `answered[index]` (an alert can arrive before its caller has the
/// answer: that counts as no lag).
pub fn wall_lag(
    received: &[(Alert, std::time::Instant)],
    answered: &std::collections::HashMap<u64, std::time::Instant>,
) -> Option<WallLag> {
    let mut lags: Vec<f64> = received
        .iter()
        .filter(|(a, _)| a.detection_id != INTEGRITY_DETECTION)
        .filter_map(|(a, at)| {
            let last = a.evidence.iter().map(|e| e.index).max()?;
            Some(at.saturating_duration_since(*answered.get(&last)?).as_secs_f64() * 1000.0)
        })
        .collect();
    if lags.is_empty() {
        return None;
    }
    lags.sort_by(f64::total_cmp);
    let at = |q: f64| lags[((lags.len() as f64 * q).ceil() as usize).clamp(1, lags.len()) - 1];
    Some(WallLag { alerts: lags.len(), p50_ms: at(0.5), p99_ms: at(0.99), max_ms: lags[lags.len() - 1] })
}

#[derive(Clone, Debug, Serialize)]
pub struct IncidentOutcome {
    #[serde(flatten)]
    pub incident: Incident,
    pub found: bool,
    /// The detections whose alerts belong to it.
    pub detections: Vec<String>,
    pub alerts: Vec<String>,
    /// Event time from its first event to its first alert, in seconds.
    pub lag_secs: Option<f64>,
    /// The first alert's explanation.
    pub explanation: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct KindRecall {
    pub planted: usize,
    pub found: usize,
    pub recall: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Lag {
    pub p50_secs: f64,
    pub max_secs: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct UnmatchedAlert {
    pub name: String,
    pub detection_id: String,
    pub actor: String,
    pub explanation: String,
}

/// A sentinel incident that belongs to no planted incident.
#[derive(Clone, Debug, Serialize)]
pub struct UnmatchedIncident {
    pub name: String,
    pub actor: String,
    pub detections: Vec<String>,
    pub alerts: usize,
}

/// The JSON report of `quis simulate`.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub played: Played,
    pub recall_by_kind: BTreeMap<IncidentKind, KindRecall>,
    pub recall: f64,
    /// Sentinel's incidents (grouped alerts, what an analyst triages), and those that belong to a
    /// planted incident.
    pub sentinel_incidents: usize,
    pub sentinel_incidents_matched: usize,
    /// Share of sentinel's incidents that belong to a planted incident (1 when there are none).
    pub incident_precision: f64,
    pub incidents_per_1000_staff_days: f64,
    pub alerts: usize,
    pub alerts_matched: usize,
    /// Share of alerts that belong to a planted incident (1 when there are no alerts).
    pub alert_precision: f64,
    pub alerts_per_1000_staff_days: f64,
    /// Sentinel's share of allowed accesses explained by a case, assignment, team or purpose.
    pub share_explained: f64,
    pub detection_lag: Option<Lag>,
    pub incidents: Vec<IncidentOutcome>,
    pub unmatched_incidents: Vec<UnmatchedIncident>,
    pub unmatched_alerts: Vec<UnmatchedAlert>,
}

fn ms(t: Option<&prost_types::Timestamp>) -> i64 {
    t.map_or(0, |t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
}

/// Event time of the alert's first firing (an alert gathers the repeated firings of its
/// detection on its actor).
fn first_event_ms(alert: &Alert) -> i64 {
    match ms(alert.first_event_time.as_ref()) {
        0 => ms(alert.event_time.as_ref()),
        first => first,
    }
}

/// Whether `alert` belongs to `incident`.
pub fn belongs(alert: &Alert, incident: &Incident) -> bool {
    if incident.kind == IncidentKind::LedgerTampering {
        return alert.detection_id == INTEGRITY_DETECTION;
    }
    if alert.actor != incident.actor || alert.detection_id == INTEGRITY_DETECTION {
        return false;
    }
    let on_evidence = alert.evidence.iter().any(|e| incident.ledger_indices.contains(&e.index));
    // The alert's firings span [first, last]; it belongs when that span meets the incident's.
    let (first, last) = (first_event_ms(alert), ms(alert.event_time.as_ref()));
    on_evidence || (first <= incident.end_ms + MATCH_SLACK_MS && last >= incident.start_ms)
}

/// What sentinel raised: its alerts and the incidents it grouped them into.
pub struct Raised<'a> {
    pub alerts: &'a [Alert],
    pub incidents: &'a [SentinelIncident],
}

/// Scores what sentinel `raised` against the planted `incidents`.
pub fn score(played: Played, incidents: Vec<Incident>, raised: Raised<'_>, share_explained: f64) -> Report {
    let alerts = raised.alerts;
    let mut matched = vec![false; alerts.len()];
    let mut outcomes = Vec::with_capacity(incidents.len());
    for incident in incidents {
        let mut mine: Vec<(usize, &Alert)> = alerts.iter().enumerate().filter(|(_, a)| belongs(a, &incident)).collect();
        mine.sort_by_key(|(_, a)| first_event_ms(a));
        for (i, _) in &mine {
            matched[*i] = true;
        }
        let mut detections: Vec<String> = mine.iter().map(|(_, a)| a.detection_id.clone()).collect();
        detections.sort();
        detections.dedup();
        let first = mine.first().map(|(_, a)| *a);
        outcomes.push(IncidentOutcome {
            found: first.is_some(),
            // The integrity monitor stamps its alerts with the wall clock: the tampering's delay is
            // `played.integrity_alert_wall_secs`, not an event-time lag.
            lag_secs: first
                .filter(|_| incident.kind != IncidentKind::LedgerTampering)
                .map(|a| (first_event_ms(a) - incident.start_ms).max(0) as f64 / 1000.0),
            explanation: first.map(|a| a.explanation.clone()),
            alerts: mine.iter().map(|(_, a)| a.name.clone()).collect(),
            detections,
            incident,
        });
    }
    let mut recall_by_kind: BTreeMap<IncidentKind, KindRecall> = BTreeMap::new();
    for o in &outcomes {
        let k = recall_by_kind.entry(o.incident.kind).or_default();
        k.planted += 1;
        k.found += usize::from(o.found);
    }
    for k in recall_by_kind.values_mut() {
        k.recall = ratio(k.found, k.planted, 1.0);
    }
    let found = outcomes.iter().filter(|o| o.found).count();
    let alerts_matched = matched.iter().filter(|m| **m).count();
    let mut lags: Vec<f64> = outcomes.iter().filter_map(|o| o.lag_secs).collect();
    lags.sort_by(f64::total_cmp);
    let detection_lag =
        (!lags.is_empty()).then(|| Lag { p50_secs: lags[lags.len() / 2], max_secs: lags[lags.len() - 1] });
    let matched_names: std::collections::HashSet<&str> =
        alerts.iter().zip(&matched).filter(|(_, m)| **m).map(|(a, _)| a.name.as_str()).collect();
    let (sentinel_matched, unmatched_incidents): (Vec<&SentinelIncident>, Vec<&SentinelIncident>) =
        raised.incidents.iter().partition(|i| i.alerts.iter().any(|a| matched_names.contains(a.as_str())));
    let unmatched_incidents = unmatched_incidents
        .into_iter()
        .map(|i| UnmatchedIncident {
            name: i.name.clone(),
            actor: i.actor.clone(),
            detections: i.detection_ids.clone(),
            alerts: i.alerts.len(),
        })
        .collect();
    let staff_days = played.staff_days as usize;
    let unmatched_alerts = alerts
        .iter()
        .zip(&matched)
        .filter(|(_, m)| !**m)
        .map(|(a, _)| UnmatchedAlert {
            name: a.name.clone(),
            detection_id: a.detection_id.clone(),
            actor: a.actor.clone(),
            explanation: a.explanation.clone(),
        })
        .collect();
    Report {
        recall: ratio(found, outcomes.len(), 1.0),
        sentinel_incidents: raised.incidents.len(),
        sentinel_incidents_matched: sentinel_matched.len(),
        incident_precision: ratio(sentinel_matched.len(), raised.incidents.len(), 1.0),
        incidents_per_1000_staff_days: ratio(raised.incidents.len() * 1000, staff_days, 0.0),
        alerts: alerts.len(),
        alerts_matched,
        alert_precision: ratio(alerts_matched, alerts.len(), 1.0),
        alerts_per_1000_staff_days: ratio(alerts.len() * 1000, staff_days, 0.0),
        share_explained,
        detection_lag,
        recall_by_kind,
        incidents: outcomes,
        unmatched_incidents,
        unmatched_alerts,
        played,
    }
}

fn ratio(n: usize, d: usize, empty: f64) -> f64 {
    if d == 0 { empty } else { n as f64 / d as f64 }
}
