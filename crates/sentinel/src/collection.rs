//! `bulk-collection`: a member of staff gathering records beyond their own
//! work, as someone about to leave does. Counted per day: distinct subjects
//! read on no case of their own (a team's case, a grant, a declared purpose,
//! or nothing at all) and the records asked for in exports, allowed or not;
//! compared with the actor's own daily mean and their team's mean per
//! member-day. Reads on one's own cases never count (busy days are work), and
//! a team lead reading a few of the team's cases stays far below the
//! threshold. It needs the entities: without them nothing tells one's own
//! cases apart, and it stays silent.
use std::collections::{HashSet, VecDeque};

use quis_proto::ledger::{Action, Decision};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    config::BulkCollectionConfig,
    detect::{MAX_EVIDENCE, Raise, Seen},
    event::{EnrichedAccess, Explanation},
};

/// What the detection remembers about one actor (saved inside its actor state).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CollectionState {
    day: i64,
    /// The actor did something on `day` (a day counts in the baselines even if nothing was gathered).
    active: bool,
    /// Distinct subjects read beyond their own cases today, by the first 8 bytes of a hash.
    subjects: HashSet<u64>,
    /// Records asked for in today's exports.
    exported: u64,
    evidence: Vec<Seen>,
    fired: bool,
    /// Records gathered on each of the last active days, oldest first.
    past_days: VecDeque<u32>,
}

impl CollectionState {
    fn today(&self) -> u64 {
        self.subjects.len() as u64 + self.exported
    }
}

/// The key of a subject read: its id when opened, else its commitment (then each read counts).
fn subject_key(e: &EnrichedAccess) -> Option<u64> {
    let digest = match &e.subject_id {
        Some(id) => Sha256::digest(id.as_bytes()).to_vec(),
        None => e.subject.clone()?,
    };
    Some(u64::from_be_bytes(digest.get(..8)?.try_into().ok()?))
}

/// What the event adds to the day's gathering: a subject read beyond one's cases, or an export.
enum Gathered {
    Subject(u64),
    Exported(u32),
}

fn gathered(e: &EnrichedAccess) -> Option<Gathered> {
    // Unknown: no entities to tell one's own cases apart.
    if e.actor_kind != "staff" || e.explanation == Explanation::Unknown {
        return None;
    }
    match e.action {
        Action::Export => Some(Gathered::Exported(e.result_count)),
        Action::Read if e.decision == Decision::Allow && e.explanation != Explanation::AssignedCase => {
            subject_key(e).map(Gathered::Subject)
        }
        _ => None,
    }
}

/// Runs the detection on one event of local day `day`; returns the actor's team if its
/// baseline changed (a day of the actor's closed).
pub fn run(
    cfg: &BulkCollectionConfig,
    s: &mut CollectionState,
    e: &EnrichedAccess,
    day: i64,
    teams: &mut std::collections::HashMap<String, crate::detect::TeamState>,
    alert: &mut Raise<'_>,
) -> Option<String> {
    let team = e.actor_entity.as_ref().map(|a| a.team.clone()).filter(|t| !t.is_empty());
    let mut changed_team = None;
    if day != s.day {
        if s.active {
            let count = u32::try_from(s.today()).unwrap_or(u32::MAX);
            s.past_days.push_back(count);
            while s.past_days.len() > cfg.baseline_days {
                s.past_days.pop_front();
            }
            if let Some(team) = &team {
                teams.entry(team.clone()).or_default().collected.add(s.day, count, cfg.baseline_days);
                changed_team = Some(team.clone());
            }
        }
        *s = CollectionState { day, past_days: std::mem::take(&mut s.past_days), ..Default::default() };
    }
    s.active = true;
    let Some(what) = gathered(e) else { return changed_team };
    if s.fired {
        return changed_team;
    }
    match what {
        Gathered::Subject(key) => {
            if s.subjects.len() >= cfg.max_day_subjects || !s.subjects.insert(key) {
                return changed_team;
            }
        }
        Gathered::Exported(n) => s.exported += u64::from(n),
    }
    if s.evidence.len() < MAX_EVIDENCE - 1 {
        s.evidence.push(Seen::of(e));
    }
    let n = s.today();
    let own = (s.past_days.len() >= cfg.min_baseline_days)
        .then(|| s.past_days.iter().map(|&d| f64::from(d)).sum::<f64>() / s.past_days.len() as f64);
    let team_mean = team
        .as_ref()
        .and_then(|t| teams.get(t))
        .map(|t| t.collected.mean())
        .filter(|(_, member_days)| cfg.team_factor > 0.0 && *member_days >= cfg.team_min_member_days as u64);
    let above_own = own.is_none_or(|m| n as f64 > cfg.factor * m);
    let above_team = team_mean.is_none_or(|(m, _)| n as f64 > cfg.team_factor * m);
    if n < cfg.min_records as u64 || !above_own || !above_team {
        return changed_team;
    }
    let mut evidence: Vec<_> =
        s.evidence.iter().map(|d| d.evidence("a record gathered beyond their own cases")).collect();
    if evidence.last().is_none_or(|l| l.index != e.index) {
        evidence.push(Seen::of(e).evidence("the record that crossed the threshold"));
    }
    let against_own = match own {
        Some(m) => format!("their usual {m:.1} a day over their last {} active days", s.past_days.len()),
        None => "no baseline of their own yet".to_string(),
    };
    let against_team = match team_mean {
        Some((m, member_days)) => format!("their team's {m:.1} per person a day over {member_days} person-days"),
        None => "no team baseline yet".to_string(),
    };
    alert(
        "bulk-collection",
        cfg.severity,
        format!(
            "{} gathered {n} records today beyond their own cases ({} subjects read on cases not theirs, {} asked \
             for in exports), against {against_own} and {against_team}.",
            e.actor,
            s.subjects.len(),
            s.exported
        ),
        evidence,
    );
    // One alert a day; the day stops counting.
    s.fired = true;
    changed_team
}
