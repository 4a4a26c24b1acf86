//! The detection engine. Here, the detections on the events themselves:
//! enumeration (denials), volume against the actor's own and the team's
//! baseline, off-hours against the actor's usual hours, bulk export, bulk
//! collection beyond one's own cases ([`crate::collection`]),
//! credential misuse (many hosts, new host), break-glass (a review item for
//! every use; an alert for abuse); those on policy's entities are in
//! [`crate::detect_entities`].
//!
//! Per-actor and per-team state is small and bounded by configuration
//! (windows hold at most their threshold, known hosts, remembered subjects,
//! a day's subjects and tracked actors are capped); the states a batch
//! changed are returned so the store can save them in the same transaction as
//! the cursor and the alerts, which makes a restart exact.
use std::collections::{HashMap, HashSet, VecDeque};

use quis_proto::ledger::{Action, Decision};
use serde::{Deserialize, Serialize};

use crate::{
    collection,
    config::{DetectionsConfig, Severity},
    detect_entities,
    event::EnrichedAccess,
};

/// Saved team states are keyed `team:<id>` beside the actors (staff ids cannot contain `:`).
const TEAM_PREFIX: &str = "team:";

/// Most evidence entries kept on one alert (the first ones and the one that fired).
pub const MAX_EVIDENCE: usize = 20;

const HOUR_MS: i64 = 3_600_000;
const DAY_SECS: i64 = 86_400;

/// Hashes as hex in saved state and stored evidence (a JSON array of 32 numbers is three times larger).
mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(h))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let bytes = hex::decode(text).map_err(D::Error::custom)?;
        bytes.try_into().map_err(|_| D::Error::custom("a hash is 32 bytes"))
    }
}

/// One ledger entry an alert rests on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub index: u64,
    #[serde(with = "hex32")]
    pub leaf_hash: [u8; 32],
    pub note: String,
}

/// An alert to store.
#[derive(Clone, Debug, PartialEq)]
pub struct NewAlert {
    pub detection: &'static str,
    pub severity: Severity,
    pub explanation: String,
    pub evidence: Vec<Evidence>,
    pub actor: String,
    pub event_time_ms: i64,
}

/// A break-glass use waiting for review.
#[derive(Clone, Debug, PartialEq)]
pub struct NewReview {
    pub actor: String,
    pub grant: String,
    pub evidence: Evidence,
    pub justified: bool,
    pub event_time_ms: i64,
}

/// What processing a batch produced.
#[derive(Debug, Default)]
pub struct Output {
    pub alerts: Vec<NewAlert>,
    pub reviews: Vec<NewReview>,
    /// (staff id, day number) pairs seen, for alerts per staff-day.
    pub staff_days: HashSet<(String, i64)>,
    /// Allowed accesses seen.
    pub accesses: u64,
    /// Of which something explains (see [`EnrichedAccess::explained`]).
    pub explained: u64,
    /// Actors whose state changed, serialized, to save.
    pub changed: Vec<(String, String)>,
    /// Actors forgotten to keep the state bounded, to delete.
    pub forgotten: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Seen {
    pub(crate) time_ms: i64,
    index: u64,
    #[serde(with = "hex32")]
    leaf_hash: [u8; 32],
}

impl Seen {
    pub(crate) fn of(e: &EnrichedAccess) -> Self {
        Seen { time_ms: e.time_ms, index: e.index, leaf_hash: e.leaf_hash }
    }
    pub(crate) fn evidence(&self, note: &str) -> Evidence {
        Evidence { index: self.index, leaf_hash: self.leaf_hash, note: note.to_string() }
    }
}

/// What sentinel remembers about one actor.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ActorState {
    pub(crate) last_seen_ms: i64,
    pub(crate) events: u64,
    denials: VecDeque<Seen>,
    day: i64,
    /// The first 8 bytes of each distinct subject commitment today: SHA-256 outputs, so
    /// enough to count distinct subjects, at a quarter of the memory and saved state.
    day_subjects: HashSet<u64>,
    day_evidence: Vec<Seen>,
    day_fired: bool,
    past_days: VecDeque<u32>,
    hours: Vec<u64>,
    off_hours_quiet_until: i64,
    results_n: u64,
    results_mean: f64,
    recent_hosts: VecDeque<(String, Seen)>,
    known_hosts: VecDeque<String>,
    hosts_quiet_until: i64,
    break_glass: VecDeque<Seen>,
    #[serde(flatten)]
    pub(crate) entity: detect_entities::EntityState,
    collection: collection::CollectionState,
}

/// Daily totals over a team: (day, member-days, total summed over them), oldest first.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DailyTotals(VecDeque<(i64, u32, u64)>);

impl DailyTotals {
    /// Adds one member's `amount` on `day`, keeping the last `keep` days.
    pub(crate) fn add(&mut self, day: i64, amount: u32, keep: usize) {
        match self.0.iter_mut().find(|(d, _, _)| *d == day) {
            Some(entry) => {
                entry.1 += 1;
                entry.2 += u64::from(amount);
            }
            None => self.0.push_back((day, 1, u64::from(amount))),
        }
        self.0.make_contiguous().sort_by_key(|(d, _, _)| *d);
        while self.0.len() > keep {
            self.0.pop_front();
        }
    }

    /// The mean per member-day, and how many member-days it rests on.
    pub(crate) fn mean(&self) -> (f64, u64) {
        let member_days: u64 = self.0.iter().map(|(_, m, _)| u64::from(*m)).sum();
        let total: u64 = self.0.iter().map(|(_, _, s)| *s).sum();
        if member_days == 0 { (0.0, 0) } else { (total as f64 / member_days as f64, member_days) }
    }
}

/// A team's baselines: distinct subjects per member-day (volume), records gathered beyond
/// one's own cases per member-day (bulk collection).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TeamState {
    days: DailyTotals,
    pub(crate) collected: DailyTotals,
}

/// The detection engine. See the module documentation.
pub struct Engine {
    config: DetectionsConfig,
    actors: HashMap<String, ActorState>,
    teams: HashMap<String, TeamState>,
}

/// Local day number and hour of the day of a time.
fn day_and_hour(time_ms: i64, offset_minutes: i32) -> (i64, usize) {
    let secs = time_ms.div_euclid(1000) + i64::from(offset_minutes) * 60;
    (secs.div_euclid(DAY_SECS), (secs.rem_euclid(DAY_SECS) / 3600) as usize)
}

fn describe(e: &EnrichedAccess) -> String {
    let decision = if e.decision == Decision::Deny { "denied" } else { "allowed" };
    let action = e.action.as_str_name().trim_start_matches("ACTION_").to_lowercase().replace('_', " ");
    format!("{decision} {action}")
}

impl Engine {
    /// An engine with no history.
    pub fn new(config: DetectionsConfig) -> Self {
        Self { config, actors: HashMap::new(), teams: HashMap::new() }
    }

    /// An engine with the actor and team states saved by earlier batches.
    pub fn restore(config: DetectionsConfig, saved: Vec<(String, String)>) -> Result<Self, serde_json::Error> {
        let mut engine = Self::new(config);
        for (key, json) in saved {
            match key.strip_prefix(TEAM_PREFIX) {
                Some(team) => engine.teams.insert(team.to_string(), serde_json::from_str(&json)?).map(drop),
                None => engine.actors.insert(key, serde_json::from_str(&json)?).map(drop),
            };
        }
        Ok(engine)
    }

    /// Runs every detection on a batch of access events, in ledger order.
    pub fn process(&mut self, events: &[EnrichedAccess]) -> Output {
        let mut out = Output::default();
        let mut changed = HashSet::new();
        let mut changed_teams = HashSet::new();
        for e in events {
            if e.actor.is_empty() {
                continue;
            }
            if !self.actors.contains_key(&e.actor) && self.actors.len() >= self.config.max_actors {
                // Forget the least recently active actor: memory is bounded by configuration.
                if let Some(oldest) = self.actors.iter().min_by_key(|(_, s)| s.last_seen_ms).map(|(a, _)| a.clone()) {
                    self.actors.remove(&oldest);
                    changed.remove(&oldest);
                    out.forgotten.push(oldest);
                }
            }
            let state = self.actors.entry(e.actor.clone()).or_default();
            if state.hours.len() != 24 {
                state.hours = vec![0; 24];
            }
            let (day, hour) = day_and_hour(e.time_ms, self.config.off_hours.utc_offset_minutes);
            if e.actor_kind == "staff" {
                out.staff_days.insert((e.actor.clone(), day));
            }
            if e.decision == Decision::Allow && e.actor_kind == "staff" {
                out.accesses += 1;
                if e.explained() {
                    out.explained += 1;
                }
            }
            let c = &self.config;
            let mut alert =
                |detection: &'static str, severity: Severity, explanation: String, evidence: Vec<Evidence>| {
                    out.alerts.push(NewAlert {
                        detection,
                        severity,
                        explanation,
                        evidence,
                        actor: e.actor.clone(),
                        event_time_ms: e.time_ms,
                    });
                };
            detect_entities::run(c, state, e, &mut alert);
            if c.enumeration.enabled {
                enumeration(c, state, e, &mut alert);
            }
            if c.volume.enabled
                && let Some(team) = volume(c, state, e, day, &mut self.teams, &mut alert)
            {
                changed_teams.insert(team);
            }
            if c.off_hours.enabled {
                off_hours(c, state, e, hour, &mut alert);
            }
            if c.bulk_export.enabled {
                bulk_export(c, state, e, &mut alert);
            }
            if c.bulk_collection.enabled
                && let Some(team) =
                    collection::run(&c.bulk_collection, &mut state.collection, e, day, &mut self.teams, &mut alert)
            {
                changed_teams.insert(team);
            }
            if c.credential_misuse.enabled {
                credential_misuse(c, state, e, &mut alert);
            }
            if e.action == Action::BreakGlassStart && e.decision == Decision::Allow {
                out.reviews.push(NewReview {
                    actor: e.actor.clone(),
                    grant: e.break_glass_grant.clone(),
                    evidence: Seen::of(e).evidence("break-glass start"),
                    justified: e.has_justification,
                    event_time_ms: e.time_ms,
                });
                if c.break_glass_abuse.enabled {
                    break_glass_abuse(c, state, e, &mut alert);
                }
            }
            state.events += 1;
            state.hours[hour] += 1;
            state.last_seen_ms = state.last_seen_ms.max(e.time_ms);
            changed.insert(e.actor.clone());
        }
        for actor in changed {
            if let Some(state) = self.actors.get(&actor) {
                // The state holds only numbers, strings and byte arrays: serializing cannot fail.
                out.changed.push((actor, serde_json::to_string(state).unwrap_or_default()));
            }
        }
        for team in changed_teams {
            if let Some(state) = self.teams.get(&team) {
                out.changed.push((format!("{TEAM_PREFIX}{team}"), serde_json::to_string(state).unwrap_or_default()));
            }
        }
        out
    }
}

pub(crate) type Raise<'a> = dyn FnMut(&'static str, Severity, String, Vec<Evidence>) + 'a;

fn enumeration(c: &DetectionsConfig, s: &mut ActorState, e: &EnrichedAccess, alert: &mut Raise<'_>) {
    if e.decision != Decision::Deny {
        return;
    }
    let cfg = &c.enumeration;
    let since = e.time_ms - (cfg.window_secs as i64) * 1000;
    s.denials.retain(|d| d.time_ms > since);
    s.denials.push_back(Seen::of(e));
    if s.denials.len() >= cfg.denials {
        let evidence: Vec<Evidence> =
            s.denials.iter().take(MAX_EVIDENCE).map(|d| d.evidence("denied attempt")).collect();
        alert(
            "enumeration",
            cfg.severity,
            format!(
                "{} was denied {} times within {} minutes: probing for records they may not see.",
                e.actor,
                s.denials.len(),
                cfg.window_secs.div_ceil(60)
            ),
            evidence,
        );
        s.denials.clear();
    }
}

/// Returns the team whose baseline this event's day rollover changed.
fn volume(
    c: &DetectionsConfig,
    s: &mut ActorState,
    e: &EnrichedAccess,
    day: i64,
    teams: &mut HashMap<String, TeamState>,
    alert: &mut Raise<'_>,
) -> Option<String> {
    let cfg = &c.volume;
    let team = e.actor_entity.as_ref().map(|a| a.team.clone()).filter(|t| !t.is_empty());
    let mut changed_team = None;
    if day != s.day {
        if !s.day_subjects.is_empty() {
            let count = s.day_subjects.len() as u32;
            s.past_days.push_back(count);
            while s.past_days.len() > cfg.baseline_days {
                s.past_days.pop_front();
            }
            if let Some(team) = &team {
                teams.entry(team.clone()).or_default().days.add(s.day, count, cfg.baseline_days);
                changed_team = team.clone().into();
            }
        }
        s.day = day;
        s.day_subjects.clear();
        s.day_evidence.clear();
        s.day_fired = false;
    }
    let subject = e.subject.as_deref().and_then(|d| d.get(..8)).and_then(|d| <[u8; 8]>::try_from(d).ok())?;
    let subject = u64::from_be_bytes(subject);
    // Busy days on assigned work are work: by default only what no assignment explains counts.
    let counted = cfg.count_explained || !e.assigned();
    if e.decision != Decision::Allow || s.day_fired || !counted || s.day_subjects.len() >= cfg.max_day_subjects {
        return changed_team;
    }
    let baseline = if s.past_days.is_empty() {
        0.0
    } else {
        s.past_days.iter().map(|&d| f64::from(d)).sum::<f64>() / s.past_days.len() as f64
    };
    if s.day_subjects.insert(subject) && s.day_evidence.len() < MAX_EVIDENCE - 1 {
        s.day_evidence.push(Seen::of(e));
    }
    let n = s.day_subjects.len() as f64;
    let floor = cfg.min_subjects as f64;
    let own = s.past_days.len() >= cfg.min_baseline_days && n > (cfg.factor * baseline).max(floor);
    let (team_mean, member_days) = team.as_ref().and_then(|t| teams.get(t)).map_or((0.0, 0), |t| t.days.mean());
    let above_team = cfg.team_factor > 0.0
        && member_days >= cfg.team_min_member_days as u64
        && n > (cfg.team_factor * team_mean).max(floor);
    if own || above_team {
        let mut evidence: Vec<Evidence> =
            s.day_evidence.iter().map(|d| d.evidence("access to a distinct subject")).collect();
        if evidence.last().is_none_or(|l| l.index != e.index) {
            evidence.push(Seen::of(e).evidence("access that crossed the threshold"));
        }
        let against = if own {
            format!("a usual {baseline:.0} a day over their last {} active days", s.past_days.len())
        } else {
            format!("their team's usual {team_mean:.0} per person a day over {member_days} person-days")
        };
        let what =
            if cfg.count_explained { "distinct subjects" } else { "distinct subjects that no assignment explains" };
        alert("volume", cfg.severity, format!("{} accessed {n} {what} today, against {against}.", e.actor), evidence);
        // One alert a day; the day's set stops growing (it is bounded by the threshold).
        s.day_fired = true;
    }
    changed_team
}

fn off_hours(c: &DetectionsConfig, s: &mut ActorState, e: &EnrichedAccess, hour: usize, alert: &mut Raise<'_>) {
    let cfg = &c.off_hours;
    if s.events < cfg.min_history || e.time_ms < s.off_hours_quiet_until {
        return;
    }
    let around = s.hours[(hour + 23) % 24] + s.hours[hour] + s.hours[(hour + 1) % 24];
    let share = around as f64 / s.events as f64;
    if share < cfg.max_share {
        alert(
            "off-hours",
            cfg.severity,
            format!(
                "{} was active at {hour:02}:00, an hour in which they did {:.1}% of their {} recorded actions.",
                e.actor,
                share * 100.0,
                s.events
            ),
            vec![Seen::of(e).evidence(&format!("{} at an unusual hour", describe(e)))],
        );
        // One alert per unusual hour, not one per action in it.
        s.off_hours_quiet_until = e.time_ms + HOUR_MS;
    }
}

fn bulk_export(c: &DetectionsConfig, s: &mut ActorState, e: &EnrichedAccess, alert: &mut Raise<'_>) {
    if !matches!(e.action, Action::Export | Action::Search) || e.decision != Decision::Allow {
        return;
    }
    let cfg = &c.bulk_export;
    let n = e.result_count;
    let above_norm =
        s.results_n >= cfg.min_history && n >= cfg.min_results && f64::from(n) > cfg.factor * s.results_mean.max(1.0);
    if n >= cfg.max_results || above_norm {
        alert(
            "bulk-export",
            cfg.severity,
            format!(
                "{} received {n} results in one {}, against a usual {:.0} over {} exports and searches.",
                e.actor,
                describe(e).trim_start_matches("allowed "),
                s.results_mean,
                s.results_n
            ),
            vec![Seen::of(e).evidence(&describe(e))],
        );
    }
    // A running mean whose weight is capped, so that it follows a changing norm.
    s.results_n = (s.results_n + 1).min(1000);
    s.results_mean += (f64::from(n) - s.results_mean) / s.results_n as f64;
}

fn credential_misuse(c: &DetectionsConfig, s: &mut ActorState, e: &EnrichedAccess, alert: &mut Raise<'_>) {
    if e.host.is_empty() {
        return;
    }
    let cfg = &c.credential_misuse;
    let since = e.time_ms - (cfg.window_secs as i64) * 1000;
    s.recent_hosts.retain(|(h, seen)| seen.time_ms > since && *h != e.host);
    s.recent_hosts.push_back((e.host.clone(), Seen::of(e)));
    // The latest `hosts` distinct hosts are all the alert needs: a flood of hosts stays bounded.
    while s.recent_hosts.len() > cfg.hosts {
        s.recent_hosts.pop_front();
    }
    if s.recent_hosts.len() >= cfg.hosts && e.time_ms >= s.hosts_quiet_until {
        let hosts: Vec<&str> = s.recent_hosts.iter().map(|(h, _)| h.as_str()).collect();
        alert(
            "credential-misuse",
            cfg.severity,
            format!(
                "{}'s credentials were used from {} different hosts within {} minutes ({}).",
                e.actor,
                hosts.len(),
                cfg.window_secs.div_ceil(60),
                hosts.join(", ")
            ),
            s.recent_hosts
                .iter()
                .take(MAX_EVIDENCE)
                .map(|(h, seen)| seen.evidence(&format!("used from {h}")))
                .collect(),
        );
        s.hosts_quiet_until = e.time_ms + (cfg.window_secs as i64) * 1000;
    }
    match s.known_hosts.iter().position(|h| *h == e.host) {
        Some(i) => {
            // Most recently used last: the least recently used host is forgotten first.
            if let Some(h) = s.known_hosts.remove(i) {
                s.known_hosts.push_back(h);
            }
        }
        None => {
            if cfg.new_host && s.events >= cfg.min_history {
                alert(
                    "credential-misuse",
                    cfg.new_host_severity,
                    format!(
                        "{} acted from {}, a host not among the {} they used over their last {} actions.",
                        e.actor,
                        e.host,
                        s.known_hosts.len(),
                        s.events
                    ),
                    vec![Seen::of(e).evidence(&format!("{} from a new host", describe(e)))],
                );
            }
            s.known_hosts.push_back(e.host.clone());
            while s.known_hosts.len() > cfg.max_known_hosts {
                s.known_hosts.pop_front();
            }
        }
    }
}

fn break_glass_abuse(c: &DetectionsConfig, s: &mut ActorState, e: &EnrichedAccess, alert: &mut Raise<'_>) {
    let cfg = &c.break_glass_abuse;
    if !e.has_justification {
        alert(
            "break-glass-abuse",
            cfg.severity,
            format!("{} started a break-glass access without a justification.", e.actor),
            vec![Seen::of(e).evidence("break-glass start without justification")],
        );
    }
    let since = e.time_ms - (cfg.window_secs as i64) * 1000;
    s.break_glass.retain(|b| b.time_ms > since);
    s.break_glass.push_back(Seen::of(e));
    if s.break_glass.len() >= cfg.uses {
        alert(
            "break-glass-abuse",
            cfg.severity,
            format!(
                "{} started break-glass access {} times within {} days: emergency access has become routine.",
                e.actor,
                s.break_glass.len(),
                cfg.window_secs.div_ceil(DAY_SECS as u64)
            ),
            s.break_glass.iter().take(MAX_EVIDENCE).map(|b| b.evidence("break-glass start")).collect(),
        );
        s.break_glass.clear();
    }
}
