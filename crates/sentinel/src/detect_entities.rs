//! The detections on enriched events (policy's entities and the opened
//! subject): honeytoken, restricted compartment, relationship, unexplained
//! access, suspended/terminated and dormant accounts, impossible travel,
//! service credentials used interactively, id walking and wide searches.
//! Each needs what enrichment found and stays silent without it.
//!
//! Subjects are remembered (so that one relationship raises one alert) as the
//! first 8 bytes of SHA-256 of their id: the saved state holds no ids, only
//! the numbers that end the ids of the last 64 subjects an actor opened (id
//! walking).
use std::collections::VecDeque;

use quis_proto::ledger::{Action, Decision};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    config::{DetectionsConfig, MAX_ID_WALK},
    detect::{ActorState, MAX_EVIDENCE, Raise, Seen},
    event::{EnrichedAccess, Explanation},
};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// What the entity detections remember about one actor (saved inside its [`ActorState`]).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct EntityState {
    /// (detection tag, subject tag) already alerted, most recent last.
    remembered: VecDeque<(u8, u64)>,
    unexplained: VecDeque<Seen>,
    status_quiet_until: i64,
    last_site: Option<(String, Seen)>,
    travel_quiet_until: i64,
    interactive_quiet_until: i64,
    /// The numbers ending the ids of the last subjects opened, oldest first (see [`id_walk`]). Named apart
    /// from the ordered walk kept before (`walk_last`, `walk`), which a saved state may still hold.
    walk_ids: VecDeque<(u64, Seen)>,
    wide: VecDeque<Seen>,
}

const TAG_DECOY: u8 = b'd';
const TAG_RESTRICTED: u8 = b'r';
const TAG_RELATED: u8 = b'k';

fn subject_tag(id: &str) -> u64 {
    let d = Sha256::digest(id.as_bytes());
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

impl EntityState {
    /// Whether (tag, subject) is new; remembers it, forgetting the oldest beyond `max`.
    fn first_time(&mut self, tag: u8, subject: &str, max: usize) -> bool {
        let key = (tag, subject_tag(subject));
        if self.remembered.contains(&key) {
            return false;
        }
        self.remembered.push_back(key);
        while self.remembered.len() > max {
            self.remembered.pop_front();
        }
        true
    }
}

fn action_name(e: &EnrichedAccess) -> String {
    e.action.as_str_name().trim_start_matches("ACTION_").to_lowercase().replace('_', " ")
}

/// Runs every entity detection on one event (before the actor's state records it).
pub fn run(c: &DetectionsConfig, s: &mut ActorState, e: &EnrichedAccess, alert: &mut Raise<'_>) {
    if c.honeytoken.enabled {
        honeytoken(c, &mut s.entity, e, alert);
    }
    if c.restricted_compartment.enabled {
        restricted_compartment(c, &mut s.entity, e, alert);
    }
    if c.relationship.enabled {
        relationship(c, &mut s.entity, e, alert);
    }
    if c.unexplained_access.enabled {
        unexplained_access(c, &mut s.entity, e, alert);
    }
    if c.credential_misuse.enabled {
        account_status(c, s, e, alert);
        impossible_travel(c, &mut s.entity, e, alert);
        interactive_service(c, &mut s.entity, e, alert);
    }
    if c.enumeration.enabled {
        id_walk(c, &mut s.entity, e, alert);
        wide_searches(c, &mut s.entity, e, alert);
    }
}

fn honeytoken(c: &DetectionsConfig, s: &mut EntityState, e: &EnrichedAccess, alert: &mut Raise<'_>) {
    let (Some(subject), Some(entity)) = (&e.subject_id, &e.subject_entity) else { return };
    if !entity.decoy || !s.first_time(TAG_DECOY, subject, c.relationship.max_remembered) {
        return;
    }
    let outcome = if e.decision == Decision::Deny { "tried to" } else { "did" };
    alert(
        "honeytoken",
        c.honeytoken.severity,
        format!(
            "{} {outcome} {} a decoy subject (ledger entry {}): no legitimate work ever touches it.",
            e.actor,
            action_name(e),
            e.index
        ),
        vec![Seen::of(e).evidence("access to a decoy subject")],
    );
}

fn restricted_compartment(c: &DetectionsConfig, s: &mut EntityState, e: &EnrichedAccess, alert: &mut Raise<'_>) {
    let Some(subject) = &e.subject_id else { return };
    if e.actor_kind != "staff" || !e.break_glass_grant.is_empty() || e.explanation == Explanation::Grant {
        return;
    }
    let mut compartments: Vec<&str> =
        e.subject_entity.iter().flat_map(|s| s.compartments.iter().map(String::as_str)).collect();
    if !e.compartment.is_empty() && !compartments.contains(&e.compartment.as_str()) {
        compartments.push(&e.compartment);
    }
    let cleared = |c: &str| e.actor_entity.as_ref().is_some_and(|a| a.clearances.iter().any(|k| k == c));
    let uncleared: Vec<&str> = compartments.into_iter().filter(|c| !cleared(c)).collect();
    if uncleared.is_empty() || !s.first_time(TAG_RESTRICTED, subject, c.relationship.max_remembered) {
        return;
    }
    let outcome = if e.decision == Decision::Deny { "tried to" } else { "did" };
    alert(
        "restricted-compartment",
        c.restricted_compartment.severity,
        format!(
            "{} {outcome} {} a subject in the restricted compartment {} (ledger entry {}) without clearance for it \
             or a break-glass grant.",
            e.actor,
            action_name(e),
            uncleared.join(", "),
            e.index
        ),
        vec![Seen::of(e).evidence("access to a restricted subject")],
    );
}

fn relationship(c: &DetectionsConfig, s: &mut EntityState, e: &EnrichedAccess, alert: &mut Raise<'_>) {
    let (Some(subject), Some(actor), Some(target)) = (&e.subject_id, &e.actor_entity, &e.subject_entity) else {
        return;
    };
    if target.decoy {
        return; // the honeytoken alert says it all
    }
    let same = |a: &Option<[u8; 32]>, b: &Option<[u8; 32]>| a.is_some() && a == b;
    let surname = same(&actor.surname, &target.surname);
    let address = same(&actor.address, &target.address);
    let household = same(&actor.household, &target.household);
    let colleague = target.compartments.iter().any(|c| c == "own-staff");
    let why = if surname && address {
        "their own record or a household member's: the same surname and address"
    } else if household {
        "a member of their household"
    } else if address {
        "someone at their own address"
    } else if surname && !e.explained() {
        "someone with their surname, and no assignment explains it"
    } else if colleague && !e.explained() {
        "a colleague's record, and no assignment explains it"
    } else {
        return;
    };
    if !s.first_time(TAG_RELATED, subject, c.relationship.max_remembered) {
        return;
    }
    alert(
        "relationship",
        c.relationship.severity,
        format!("{} looked at {why} (ledger entry {}).", e.actor, e.index),
        vec![Seen::of(e).evidence("access to a related subject")],
    );
}

fn unexplained_access(c: &DetectionsConfig, s: &mut EntityState, e: &EnrichedAccess, alert: &mut Raise<'_>) {
    let looks = matches!(
        e.action,
        Action::Read | Action::Search | Action::Export | Action::Update | Action::ReadHistory | Action::RecordAccess
    );
    if !looks || e.decision != Decision::Allow || e.explanation != Explanation::Nothing {
        return;
    }
    let cfg = &c.unexplained_access;
    let since = e.time_ms - (cfg.window_secs as i64) * 1000;
    s.unexplained.retain(|u| u.time_ms > since);
    s.unexplained.push_back(Seen::of(e));
    if s.unexplained.len() >= cfg.accesses {
        alert(
            "unexplained-access",
            cfg.severity,
            format!(
                "{} made {} accesses within {} hours that no open case, assignment, team, grant or declared purpose \
                 explains.",
                e.actor,
                s.unexplained.len(),
                cfg.window_secs.div_ceil(3600)
            ),
            s.unexplained.iter().take(MAX_EVIDENCE).map(|u| u.evidence("unexplained access")).collect(),
        );
        s.unexplained.clear();
    }
}

fn account_status(c: &DetectionsConfig, s: &mut ActorState, e: &EnrichedAccess, alert: &mut Raise<'_>) {
    use quis_proto::policy::StaffStatus;
    let cfg = &c.credential_misuse;
    if let Some(actor) = &e.actor_entity
        && matches!(actor.status, StaffStatus::Suspended | StaffStatus::Terminated)
        && e.time_ms >= s.entity.status_quiet_until
    {
        let status = if actor.status == StaffStatus::Terminated { "terminated" } else { "suspended" };
        alert(
            "credential-misuse",
            cfg.status_severity,
            format!("{}'s account is {status}, yet its credentials were used ({}).", e.actor, action_name(e)),
            vec![Seen::of(e).evidence(&format!("action by a {status} account"))],
        );
        s.entity.status_quiet_until = e.time_ms + HOUR_MS;
    }
    let silent = e.time_ms - s.last_seen_ms;
    if cfg.dormant_days > 0 && s.events > 0 && silent >= cfg.dormant_days as i64 * DAY_MS {
        alert(
            "credential-misuse",
            cfg.dormant_severity,
            format!("{}'s account acted again after {} days without any activity.", e.actor, silent / DAY_MS),
            vec![Seen::of(e).evidence("first action after a dormant period")],
        );
    }
}

/// Great-circle distance in kilometres (haversine).
fn distance_km(a: &crate::config::Site, b: &crate::config::Site) -> f64 {
    let (la1, la2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = la2 - la1;
    let dlon = (b.lon - a.lon).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().min(1.0).asin()
}

fn impossible_travel(c: &DetectionsConfig, s: &mut EntityState, e: &EnrichedAccess, alert: &mut Raise<'_>) {
    let cfg = &c.credential_misuse;
    let Some(here) = cfg.sites.get(&e.site) else { return };
    if let Some((site, seen)) = &s.last_site
        && *site != e.site
        && let Some(there) = cfg.sites.get(site)
        && e.time_ms >= s.travel_quiet_until
    {
        let km = distance_km(there, here);
        let hours = ((e.time_ms - seen.time_ms).max(1) as f64) / HOUR_MS as f64;
        if km / hours > cfg.max_speed_kmh {
            alert(
                "credential-misuse",
                cfg.severity,
                format!(
                    "{} acted at site {site} and then at site {} {:.0} minutes later, {km:.0} km apart: faster than \
                     {:.0} km/h, so not one person.",
                    e.actor,
                    e.site,
                    hours * 60.0,
                    cfg.max_speed_kmh
                ),
                vec![seen.evidence(&format!("at site {site}")), Seen::of(e).evidence(&format!("at site {}", e.site))],
            );
            s.travel_quiet_until = e.time_ms + HOUR_MS;
        }
    }
    s.last_site = Some((e.site.clone(), Seen::of(e)));
}

fn interactive_service(c: &DetectionsConfig, s: &mut EntityState, e: &EnrichedAccess, alert: &mut Raise<'_>) {
    let cfg = &c.credential_misuse;
    if e.actor_kind != "service" || e.time_ms < s.interactive_quiet_until {
        return;
    }
    let outside =
        !cfg.service_address_prefixes.is_empty() && !cfg.service_address_prefixes.iter().any(|p| e.host.starts_with(p));
    if e.device.is_empty() && !outside {
        return;
    }
    let from = if e.device.is_empty() { format!("address {}", e.host) } else { format!("device {}", e.device) };
    alert(
        "credential-misuse",
        cfg.severity,
        format!("The service credentials of {} were used interactively, from {from}.", e.actor),
        vec![Seen::of(e).evidence("service credentials used interactively")],
    );
    s.interactive_quiet_until = e.time_ms + HOUR_MS;
}

/// The number that ends a subject id (`s-000123` → 123), for id walking.
fn trailing_number(id: &str) -> Option<u64> {
    let digits = id.len() - id.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 || digits > 18 { None } else { id[id.len() - digits..].parse().ok() }
}

/// `id_walk` subjects with consecutive ids among the last [`MAX_ID_WALK`] distinct subjects the
/// actor opened, in any order and at any pace: requests sent in parallel reach the ledger in any
/// order, so a walk is a run of numbers, not a sequence.
fn id_walk(c: &DetectionsConfig, s: &mut EntityState, e: &EnrichedAccess, alert: &mut Raise<'_>) {
    let cfg = &c.enumeration;
    let Some(n) = e.subject_id.as_deref().and_then(trailing_number) else { return };
    if cfg.id_walk == 0 || e.actor_kind != "staff" {
        return;
    }
    // The same subject again is no step; it is remembered as the most recent.
    s.walk_ids.retain(|(m, _)| *m != n);
    if s.walk_ids.len() == MAX_ID_WALK {
        s.walk_ids.pop_front();
    }
    s.walk_ids.push_back((n, Seen::of(e)));
    let held = |m: u64| s.walk_ids.iter().any(|(k, _)| *k == m);
    let low = (0..n).rev().take_while(|&m| held(m)).last().unwrap_or(n);
    let high = (n + 1..).take_while(|&m| held(m)).last().unwrap_or(n);
    let run = (high - low + 1) as usize;
    if run < cfg.id_walk {
        return;
    }
    let mut steps: Vec<(u64, Seen)> = Vec::with_capacity(run);
    s.walk_ids.retain(|(m, w)| {
        let in_run = (low..=high).contains(m);
        if in_run {
            steps.push((*m, w.clone()));
        }
        !in_run
    });
    steps.sort_by_key(|(m, _)| *m);
    alert(
        "enumeration",
        cfg.severity,
        format!("{} opened {run} subjects with consecutive ids: walking the id space.", e.actor),
        steps.iter().take(MAX_EVIDENCE).map(|(_, w)| w.evidence("next id")).collect(),
    );
}

fn wide_searches(c: &DetectionsConfig, s: &mut EntityState, e: &EnrichedAccess, alert: &mut Raise<'_>) {
    let cfg = &c.enumeration;
    if cfg.wide_searches == 0 || e.action != Action::Search {
        return;
    }
    let wide_term =
        |t: &String| t.contains(['*', '%', '?']) || t.trim_matches(['*', '%', '?', ' ']).chars().count() < 3;
    if !(e.truncated || e.query_terms.iter().any(wide_term)) {
        return;
    }
    let since = e.time_ms - (cfg.window_secs as i64) * 1000;
    s.wide.retain(|w| w.time_ms > since);
    s.wide.push_back(Seen::of(e));
    if s.wide.len() >= cfg.wide_searches {
        alert(
            "enumeration",
            cfg.severity,
            format!(
                "{} ran {} wide searches (wildcards, very short terms or results cut at the limit) within {} minutes.",
                e.actor,
                s.wide.len(),
                cfg.window_secs.div_ceil(60)
            ),
            s.wide.iter().take(MAX_EVIDENCE).map(|w| w.evidence("wide search")).collect(),
        );
        s.wide.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_numbers_and_distances() {
        assert_eq!(trailing_number("s-000123"), Some(123));
        assert_eq!(trailing_number("s-abc"), None);
        let paris = crate::config::Site { lat: 48.8566, lon: 2.3522 };
        let london = crate::config::Site { lat: 51.5074, lon: -0.1278 };
        let km = distance_km(&paris, &london);
        assert!((340.0..350.0).contains(&km), "{km}");
    }
}
