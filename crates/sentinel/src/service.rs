//! The gRPC service over the alert store: reads for investigators and
//! auditors, triage for investigators, every triage appended to the ledger
//! (as the `sentinel` service, naming the investigator) before it is stored.
use std::{collections::HashMap, pin::Pin, sync::Arc};

use futures::Stream;
use quis_auth::{Principal, PrincipalKind, Role};
use quis_core::FieldViolation;
use quis_proto::{
    ledger::{Actor, AppendEventsRequest, Commitment, Event, EventDetail, TriageEvent, event::Kind},
    sentinel::{
        Alert, AlertState, CompleteReviewRequest, CompleteReviewResponse, Detection, Evidence as PbEvidence,
        GetAlertRequest, GetAlertResponse, GetDetectionStatsRequest, GetDetectionStatsResponse, GetIncidentRequest,
        GetIncidentResponse, Incident, ListAlertsRequest, ListAlertsResponse, ListDetectionsRequest,
        ListDetectionsResponse, ListIncidentsRequest, ListIncidentsResponse, ListReviewsRequest, ListReviewsResponse,
        Review, ReviewState, Severity as PbSeverity, TriageAction, TriageAlertRequest, TriageAlertResponse,
        WatchAlertsRequest, WatchAlertsResponse, sentinel_service_server::SentinelService,
    },
};
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;
use tonic::{Request, Response, Status};

use crate::{
    config::{SentinelConfig, Severity},
    detect::Evidence,
    error::SentinelError,
    link::LedgerLink,
    store::{AlertFilter, AlertRow, IncidentRow, ReviewRow, SentinelStore},
};

const DEFAULT_PAGE: i64 = 100;
const MAX_NOTE_CHARS: usize = 2000;

/// Every detection id this build knows (those needing entities run once policy enriches events).
const DETECTION_IDS: &[&str] = &[
    "unexplained-access",
    "restricted-compartment",
    "relationship",
    "volume",
    "off-hours",
    "enumeration",
    "bulk-export",
    "bulk-collection",
    "credential-misuse",
    "break-glass-abuse",
    "honeytoken",
    "ledger-integrity",
];

pub struct SentinelApi {
    pub store: SentinelStore,
    pub alerts: broadcast::Sender<AlertRow>,
    pub link: LedgerLink,
    pub config: Arc<SentinelConfig>,
}

fn may_read<T>(request: &Request<T>) -> Result<(), Status> {
    let principal = quis_auth::principal(request)?;
    quis_auth::require_any_role(&principal, &[Role::Investigator, Role::Auditor])
}

fn timestamp(ms: i64) -> Option<prost_types::Timestamp> {
    (ms > 0).then(|| prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    })
}

fn evidence(e: &Evidence) -> PbEvidence {
    PbEvidence { index: e.index, leaf_hash: e.leaf_hash.to_vec(), note: e.note.clone() }
}

fn alert(a: AlertRow) -> Alert {
    Alert {
        name: format!("alerts/{}", a.id),
        detection_id: a.detection,
        severity: a.severity as i32,
        explanation: a.explanation,
        evidence: a.evidence.iter().map(evidence).collect(),
        actor: a.actor,
        event_time: timestamp(a.event_ms),
        create_time: timestamp(a.create_ms),
        state: a.state as i32,
        incident: format!("incidents/{}", a.incident),
        triage_note: a.triage_note,
        triaged_by: a.triaged_by,
        triage_time: timestamp(a.triage_ms),
        triage_ledger_index: a.triage_index as u64,
        first_event_time: timestamp(a.first_event_ms),
        firings: u32::try_from(a.firings).unwrap_or(u32::MAX),
        update_time: timestamp(a.update_ms),
    }
}

fn incident(i: IncidentRow) -> Incident {
    let summary = format!("{} alert(s) on {}: {}", i.alerts.len(), i.actor, i.detections.join(", "));
    Incident {
        name: format!("incidents/{}", i.id),
        actor: i.actor,
        severity: i.severity as i32,
        alerts: i.alerts.into_iter().map(|a| format!("alerts/{a}")).collect(),
        detection_ids: i.detections,
        start_time: timestamp(i.start_ms),
        end_time: timestamp(i.end_ms),
        summary,
    }
}

fn review(r: ReviewRow) -> Review {
    Review {
        name: format!("reviews/{}", r.id),
        actor: r.actor,
        grant: r.grant,
        evidence: Some(evidence(&r.evidence)),
        justified_at_start: r.justified,
        event_time: timestamp(r.event_ms),
        state: r.state as i32,
        note: r.note,
        reviewed_by: r.reviewed_by,
        review_time: timestamp(r.review_ms),
        review_ledger_index: r.review_index as u64,
    }
}

/// Collects field violations.
#[derive(Default)]
struct Check(Vec<FieldViolation>);

impl Check {
    fn fail(&mut self, field: &str, rule: &str) {
        self.0.push(FieldViolation::new(field, rule));
    }
    fn page_size(&mut self, size: i32) -> i64 {
        if !(0..=1000).contains(&size) {
            self.fail("page_size", "must be 0 to 1000");
        }
        if size == 0 { DEFAULT_PAGE } else { i64::from(size) }
    }
    fn page_token(&mut self, token: &str) -> Option<i64> {
        if token.is_empty() {
            return None;
        }
        match token.parse::<i64>() {
            Ok(v) if v >= 0 => Some(v),
            _ => {
                self.fail("page_token", "must be a next_page_token from a previous response");
                None
            }
        }
    }
    /// The id of `<collection>/{id}`.
    fn name(&mut self, field: &str, name: &str, collection: &str) -> String {
        let id = name.strip_prefix(collection).and_then(|r| r.strip_prefix('/')).unwrap_or("");
        if quis_core::error::check_id(field, id).is_err() {
            self.fail(field, &format!("must be {collection}/{{id}} with an id of 1 to 64 characters of [a-z0-9-]"));
        }
        id.to_string()
    }
    fn severity(&mut self, field: &str, v: i32) -> Option<i64> {
        match PbSeverity::try_from(v) {
            Ok(PbSeverity::Unspecified) => None,
            Ok(_) => Some(i64::from(v)),
            Err(_) => {
                self.fail(field, "must be a known severity");
                None
            }
        }
    }
    fn actor(&mut self, field: &str, v: &str) -> Option<String> {
        if v.is_empty() {
            return None;
        }
        if v.len() > 128 || v.chars().any(char::is_control) {
            self.fail(field, "must be at most 128 characters, without control characters");
        }
        Some(v.to_string())
    }
    fn note(&mut self, v: &str) {
        if v.trim().is_empty() || v.chars().count() > MAX_NOTE_CHARS {
            self.fail("note", "must be 1 to 2000 characters");
        } else if v.len() > quis_proto::MAX_DETAIL_VALUE_BYTES {
            self.fail("note", &format!("must be {}", quis_proto::detail_value_bytes_rule()));
        }
    }
    fn done(self) -> Result<(), SentinelError> {
        if self.0.is_empty() { Ok(()) } else { Err(SentinelError::Invalid(self.0)) }
    }
}

fn percentile(sorted: &[i64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64
}

impl SentinelApi {
    /// Appends the triage of `target` to the ledger; answers with its index.
    async fn record_triage(
        &self,
        p: &Principal,
        target: String,
        state: &str,
        note: &str,
    ) -> Result<u64, SentinelError> {
        let mut salt = vec![0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let digest = Sha256::new().chain_update(&salt).chain_update(note.as_bytes()).finalize().to_vec();
        let event = TriageEvent {
            actor: Some(Actor {
                principal: p.id.clone(),
                kind: match p.kind {
                    PrincipalKind::Staff => "staff",
                    PrincipalKind::Service => "service",
                    PrincipalKind::Subject => "subject",
                }
                .into(),
                roles: p.roles.iter().map(|r| r.as_str().to_string()).collect(),
                team: p.team.clone().unwrap_or_default(),
                site: p.site.clone().unwrap_or_default(),
                token_id: p.token_id.clone(),
                ..Default::default()
            }),
            target,
            state: state.to_string(),
            note: Some(Commitment { digest }),
            request_id: uuid::Uuid::new_v4().to_string(),
        };
        let request = AppendEventsRequest {
            events: vec![Event { kind: Some(Kind::Triage(event)) }],
            details: vec![EventDetail { salt, value: note.to_string() }],
        };
        let request = self.link.request(request).map_err(|_| SentinelError::LedgerUnavailable)?;
        let response = self.link.client().append_events(request).await.map_err(|e| {
            tracing::error!(code = ?e.code(), message = e.message(), "appending a triage event failed");
            SentinelError::LedgerUnavailable
        })?;
        response.into_inner().indices.first().copied().ok_or(SentinelError::LedgerUnavailable)
    }

    fn detections(&self) -> Vec<Detection> {
        let d = &self.config.detections;
        let entry =
            |id: &str, description: &str, severity: Severity, enabled: bool, thresholds: &[(&str, String)]| Detection {
                id: id.into(),
                description: description.into(),
                severity: severity.to_proto(),
                enabled,
                thresholds: thresholds.iter().map(|(k, v)| ((*k).to_string(), v.clone())).collect::<HashMap<_, _>>(),
            };
        let u = &d.unexplained_access;
        vec![
            entry(
                "unexplained-access",
                "Allowed accesses that no open case, assignment, team, grant or declared purpose explains.",
                u.severity,
                u.enabled,
                &[
                    ("accesses", u.accesses.to_string()),
                    ("window_secs", u.window_secs.to_string()),
                    ("explaining_purposes", u.explaining_purposes.join(",")),
                ],
            ),
            entry(
                "restricted-compartment",
                "An access or attempt on a restricted subject without clearance or break-glass.",
                d.restricted_compartment.severity,
                d.restricted_compartment.enabled,
                &[],
            ),
            entry(
                "relationship",
                "Actor and subject share an address or household, or a surname or a workplace with nothing \
                 explaining the access.",
                d.relationship.severity,
                d.relationship.enabled,
                &[("max_remembered", d.relationship.max_remembered.to_string())],
            ),
            entry("honeytoken", "Any touch of a decoy subject.", d.honeytoken.severity, d.honeytoken.enabled, &[]),
            entry(
                "enumeration",
                "Many denied attempts, id walking or wide searches by one actor in a short window.",
                d.enumeration.severity,
                d.enumeration.enabled,
                &[
                    ("denials", d.enumeration.denials.to_string()),
                    ("window_secs", d.enumeration.window_secs.to_string()),
                    ("id_walk", d.enumeration.id_walk.to_string()),
                    ("wide_searches", d.enumeration.wide_searches.to_string()),
                ],
            ),
            entry(
                "volume",
                "Distinct subjects per day far above the actor's own or the team's baseline.",
                d.volume.severity,
                d.volume.enabled,
                &[
                    ("baseline_days", d.volume.baseline_days.to_string()),
                    ("min_baseline_days", d.volume.min_baseline_days.to_string()),
                    ("factor", d.volume.factor.to_string()),
                    ("min_subjects", d.volume.min_subjects.to_string()),
                    ("team_factor", d.volume.team_factor.to_string()),
                    ("team_min_member_days", d.volume.team_min_member_days.to_string()),
                    ("count_explained", d.volume.count_explained.to_string()),
                ],
            ),
            entry(
                "off-hours",
                "Activity in an hour in which the actor is rarely active.",
                d.off_hours.severity,
                d.off_hours.enabled,
                &[
                    ("min_history", d.off_hours.min_history.to_string()),
                    ("max_share", d.off_hours.max_share.to_string()),
                    ("utc_offset_minutes", d.off_hours.utc_offset_minutes.to_string()),
                ],
            ),
            entry(
                "bulk-export",
                "An export or search returning far more results than the actor's norm.",
                d.bulk_export.severity,
                d.bulk_export.enabled,
                &[
                    ("max_results", d.bulk_export.max_results.to_string()),
                    ("factor", d.bulk_export.factor.to_string()),
                    ("min_history", d.bulk_export.min_history.to_string()),
                    ("min_results", d.bulk_export.min_results.to_string()),
                ],
            ),
            entry(
                "bulk-collection",
                "Records gathered in a day beyond one's own cases (reads on cases not theirs, records asked for in \
                 exports), far above the actor's own and their team's daily norm.",
                d.bulk_collection.severity,
                d.bulk_collection.enabled,
                &[
                    ("baseline_days", d.bulk_collection.baseline_days.to_string()),
                    ("min_baseline_days", d.bulk_collection.min_baseline_days.to_string()),
                    ("min_records", d.bulk_collection.min_records.to_string()),
                    ("factor", d.bulk_collection.factor.to_string()),
                    ("team_factor", d.bulk_collection.team_factor.to_string()),
                    ("team_min_member_days", d.bulk_collection.team_min_member_days.to_string()),
                    ("max_day_subjects", d.bulk_collection.max_day_subjects.to_string()),
                ],
            ),
            entry(
                "credential-misuse",
                "One principal from many hosts in a short window, a new host, impossible travel, a suspended, \
                 terminated or dormant account, or service credentials used interactively.",
                d.credential_misuse.severity,
                d.credential_misuse.enabled,
                &[
                    ("hosts", d.credential_misuse.hosts.to_string()),
                    ("window_secs", d.credential_misuse.window_secs.to_string()),
                    ("new_host", d.credential_misuse.new_host.to_string()),
                    ("min_history", d.credential_misuse.min_history.to_string()),
                    ("dormant_days", d.credential_misuse.dormant_days.to_string()),
                    ("max_speed_kmh", d.credential_misuse.max_speed_kmh.to_string()),
                    ("sites", d.credential_misuse.sites.len().to_string()),
                ],
            ),
            entry(
                "break-glass-abuse",
                "Break-glass used repeatedly or without justification.",
                d.break_glass_abuse.severity,
                d.break_glass_abuse.enabled,
                &[
                    ("uses", d.break_glass_abuse.uses.to_string()),
                    ("window_secs", d.break_glass_abuse.window_secs.to_string()),
                ],
            ),
            entry(
                "ledger-integrity",
                "Inconsistent or unwitnessed checkpoints, gaps, altered entries.",
                d.ledger_integrity.severity,
                true,
                &[
                    ("witness_quorum", self.config.witness_quorum.to_string()),
                    ("sample_every", self.config.sample_every.to_string()),
                ],
            ),
        ]
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchAlertsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl SentinelService for SentinelApi {
    async fn list_alerts(&self, request: Request<ListAlertsRequest>) -> Result<Response<ListAlertsResponse>, Status> {
        may_read(&request)?;
        let req = request.into_inner();
        let mut c = Check::default();
        let limit = c.page_size(req.page_size);
        let before = c.page_token(&req.page_token);
        if !req.detection_id.is_empty() && !DETECTION_IDS.contains(&req.detection_id.as_str()) {
            c.fail("detection_id", "must be a known detection id (see ListDetections)");
        }
        let state = match AlertState::try_from(req.state) {
            Ok(AlertState::Unspecified) => None,
            Ok(s) => Some(s as i64),
            Err(_) => {
                c.fail("state", "must be a known alert state");
                None
            }
        };
        let filter = AlertFilter {
            detection: (!req.detection_id.is_empty()).then(|| req.detection_id.clone()),
            min_severity: c.severity("min_severity", req.min_severity),
            state,
            actor: c.actor("actor", &req.actor),
            incident: (!req.incident.is_empty()).then(|| c.name("incident", &req.incident, "incidents")),
            before_seq: before,
            after_seq: None,
        };
        c.done()?;
        let rows = self.store.alerts(&filter, limit + 1).await.map_err(SentinelError::from)?;
        let more = rows.len() as i64 > limit;
        let rows: Vec<AlertRow> = rows.into_iter().take(limit as usize).collect();
        let next_page_token =
            if more { rows.last().map(|a| a.seq.to_string()).unwrap_or_default() } else { String::new() };
        Ok(Response::new(ListAlertsResponse { alerts: rows.into_iter().map(alert).collect(), next_page_token }))
    }

    async fn get_alert(&self, request: Request<GetAlertRequest>) -> Result<Response<GetAlertResponse>, Status> {
        may_read(&request)?;
        let req = request.into_inner();
        let mut c = Check::default();
        let id = c.name("name", &req.name, "alerts");
        c.done()?;
        let row = self.store.alert(&id).await.map_err(SentinelError::from)?.ok_or(SentinelError::NotFound(req.name))?;
        Ok(Response::new(GetAlertResponse { alert: Some(alert(row)) }))
    }

    async fn list_incidents(
        &self,
        request: Request<ListIncidentsRequest>,
    ) -> Result<Response<ListIncidentsResponse>, Status> {
        may_read(&request)?;
        let req = request.into_inner();
        let mut c = Check::default();
        let limit = c.page_size(req.page_size);
        let offset = c.page_token(&req.page_token).unwrap_or(0);
        let actor = c.actor("actor", &req.actor);
        let min_severity = c.severity("min_severity", req.min_severity);
        c.done()?;
        let rows = self
            .store
            .incidents(actor.as_deref(), min_severity, offset, limit + 1)
            .await
            .map_err(SentinelError::from)?;
        let more = rows.len() as i64 > limit;
        let next_page_token = if more { (offset + limit).to_string() } else { String::new() };
        Ok(Response::new(ListIncidentsResponse {
            incidents: rows.into_iter().take(limit as usize).map(incident).collect(),
            next_page_token,
        }))
    }

    async fn get_incident(
        &self,
        request: Request<GetIncidentRequest>,
    ) -> Result<Response<GetIncidentResponse>, Status> {
        may_read(&request)?;
        let req = request.into_inner();
        let mut c = Check::default();
        let id = c.name("name", &req.name, "incidents");
        c.done()?;
        let row =
            self.store.incident(&id).await.map_err(SentinelError::from)?.ok_or(SentinelError::NotFound(req.name))?;
        Ok(Response::new(GetIncidentResponse { incident: Some(incident(row)) }))
    }

    type WatchAlertsStream = WatchStream;

    async fn watch_alerts(&self, request: Request<WatchAlertsRequest>) -> Result<Response<WatchStream>, Status> {
        may_read(&request)?;
        let req = request.into_inner();
        let mut c = Check::default();
        let after = (!req.after.is_empty()).then(|| c.name("after", &req.after, "alerts"));
        let min_severity = c.severity("min_severity", req.min_severity).unwrap_or(0);
        c.done()?;
        // Subscribe before reading the backlog, so that nothing falls between the two.
        let mut live = self.alerts.subscribe();
        let mut last = match after {
            Some(id) => {
                self.store.alert(&id).await.map_err(SentinelError::from)?.ok_or(SentinelError::NotFound(req.after))?.seq
            }
            None => self.store.latest_alert_seq().await.map_err(SentinelError::from)?,
        };
        let store = self.store.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let send = |a: AlertRow| {
                let tx = tx.clone();
                async move {
                    if a.severity < min_severity {
                        return true;
                    }
                    tx.send(Ok(WatchAlertsResponse { alert: Some(alert(a)) })).await.is_ok()
                }
            };
            loop {
                let filter = AlertFilter { after_seq: Some(last), ..Default::default() };
                let backlog = match store.alerts(&filter, DEFAULT_PAGE).await {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = tx.send(Err(SentinelError::from(e).into())).await;
                        return;
                    }
                };
                if backlog.is_empty() {
                    break;
                }
                for a in backlog {
                    last = a.seq;
                    if !send(a).await {
                        return;
                    }
                }
            }
            loop {
                tokio::select! {
                    _ = tx.closed() => return,
                    next = live.recv() => match next {
                        Ok(a) if a.seq > last || a.firings > 1 => {
                            // A new alert, or a new firing joining one already sent.
                            last = last.max(a.seq);
                            if !send(a).await {
                                return;
                            }
                        }
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            let _ = tx.send(Err(SentinelError::WatchLagged.into())).await;
                            return;
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn triage_alert(
        &self,
        request: Request<TriageAlertRequest>,
    ) -> Result<Response<TriageAlertResponse>, Status> {
        let principal = quis_auth::principal(&request)?;
        quis_auth::require_any_role(&principal, &[Role::Investigator])?;
        let req = request.into_inner();
        let mut c = Check::default();
        let id = c.name("name", &req.name, "alerts");
        let (state, word) = match TriageAction::try_from(req.action) {
            Ok(TriageAction::Acknowledge) => (AlertState::Acknowledged, "ACKNOWLEDGED"),
            Ok(TriageAction::Resolve) => (AlertState::Resolved, "RESOLVED"),
            Ok(TriageAction::FalsePositive) => (AlertState::FalsePositive, "FALSE_POSITIVE"),
            _ => {
                c.fail("action", "must be ACKNOWLEDGE, RESOLVE or FALSE_POSITIVE");
                (AlertState::Unspecified, "")
            }
        };
        c.note(&req.note);
        c.done()?;
        let current = self
            .store
            .alert(&id)
            .await
            .map_err(SentinelError::from)?
            .ok_or(SentinelError::NotFound(req.name.clone()))?;
        if current.state == AlertState::Resolved as i64 || current.state == AlertState::FalsePositive as i64 {
            return Err(SentinelError::AlertClosed(req.name).into());
        }
        // Recorded in the ledger first: a triage nobody can see is not a triage.
        let index = self.record_triage(&principal, req.name.clone(), word, &req.note).await?;
        let row = self
            .store
            .triage(&id, state as i64, &req.note, &principal.id, index)
            .await
            .map_err(SentinelError::from)?
            .ok_or(SentinelError::NotFound(req.name))?;
        tracing::info!(alert = %row.id, by = %principal.id, state = word, ledger_index = index, "alert triaged");
        Ok(Response::new(TriageAlertResponse { alert: Some(alert(row)) }))
    }

    async fn list_reviews(
        &self,
        request: Request<ListReviewsRequest>,
    ) -> Result<Response<ListReviewsResponse>, Status> {
        may_read(&request)?;
        let req = request.into_inner();
        let mut c = Check::default();
        let limit = c.page_size(req.page_size);
        let after = c.page_token(&req.page_token).unwrap_or(0);
        let state = match ReviewState::try_from(req.state) {
            Ok(ReviewState::Unspecified) => None,
            Ok(s) => Some(s as i64),
            Err(_) => {
                c.fail("state", "must be a known review state");
                None
            }
        };
        let actor = c.actor("actor", &req.actor);
        c.done()?;
        let rows = self.store.reviews(state, actor.as_deref(), after, limit + 1).await.map_err(SentinelError::from)?;
        let more = rows.len() as i64 > limit;
        let rows: Vec<ReviewRow> = rows.into_iter().take(limit as usize).collect();
        let next_page_token =
            if more { rows.last().map(|r| r.seq.to_string()).unwrap_or_default() } else { String::new() };
        Ok(Response::new(ListReviewsResponse { reviews: rows.into_iter().map(review).collect(), next_page_token }))
    }

    async fn complete_review(
        &self,
        request: Request<CompleteReviewRequest>,
    ) -> Result<Response<CompleteReviewResponse>, Status> {
        let principal = quis_auth::principal(&request)?;
        quis_auth::require_any_role(&principal, &[Role::Investigator])?;
        let req = request.into_inner();
        let mut c = Check::default();
        let id = c.name("name", &req.name, "reviews");
        let word = match ReviewState::try_from(req.outcome) {
            Ok(ReviewState::Justified) => "JUSTIFIED",
            Ok(ReviewState::Unjustified) => "UNJUSTIFIED",
            _ => {
                c.fail("outcome", "must be JUSTIFIED or UNJUSTIFIED");
                ""
            }
        };
        c.note(&req.note);
        c.done()?;
        let current = self
            .store
            .review(&id)
            .await
            .map_err(SentinelError::from)?
            .ok_or(SentinelError::NotFound(req.name.clone()))?;
        if current.state != ReviewState::Pending as i64 {
            return Err(SentinelError::ReviewCompleted(req.name).into());
        }
        let index = self.record_triage(&principal, req.name.clone(), word, &req.note).await?;
        let row = self
            .store
            .complete_review(&id, i64::from(req.outcome), &req.note, &principal.id, index)
            .await
            .map_err(SentinelError::from)?
            .ok_or(SentinelError::NotFound(req.name))?;
        Ok(Response::new(CompleteReviewResponse { review: Some(review(row)) }))
    }

    async fn get_detection_stats(
        &self,
        request: Request<GetDetectionStatsRequest>,
    ) -> Result<Response<GetDetectionStatsResponse>, Status> {
        may_read(&request)?;
        let s = self.store.stats().await.map_err(SentinelError::from)?;
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        Ok(Response::new(GetDetectionStatsResponse {
            alerts: s.alerts,
            staff_days: s.staff_days,
            alerts_per_1000_staff_days: ratio(s.alerts * 1000, s.staff_days),
            accesses: s.accesses,
            explained_accesses: s.explained,
            share_explained: ratio(s.explained, s.accesses),
            cursor: s.cursor,
            lag_p50_ms: percentile(&s.lags_ms, 0.5),
            lag_p99_ms: percentile(&s.lags_ms, 0.99),
            alerts_by_detection: s.by_detection.into_iter().collect(),
        }))
    }

    async fn list_detections(
        &self,
        request: Request<ListDetectionsRequest>,
    ) -> Result<Response<ListDetectionsResponse>, Status> {
        may_read(&request)?;
        Ok(Response::new(ListDetectionsResponse { detections: self.detections() }))
    }
}
