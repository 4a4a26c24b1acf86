//! The working days: what each member of staff does, when and from where.
//! Legitimate work only here (casework on assigned cases, service calls,
//! team leads reading their team's cases, investigations, night shifts,
//! overtime, busy days, the occasional justified break-glass); planted misuse
//! is added by [`crate::incidents`].
use std::net::Ipv4Addr;

use quis_proto::ledger::Purpose;
use rand::{Rng, seq::SliceRandom};
use rand_chacha::ChaCha20Rng;

use crate::org::{CasePurpose, Org, StaffRole, TeamKind};

/// Monday 2 March 2026, 00:00 UTC: the first simulated day.
pub const START_MS: i64 = 1_772_409_600_000;
const DAY_MS: i64 = 86_400_000;
const MINUTE_MS: i64 = 60_000;
const LAST_START_MINUTE: i64 = 23 * 60 + 30;

/// Midnight UTC of working day `day` (weekends skipped).
pub fn day_start_ms(day: u32) -> i64 {
    let calendar = i64::from(day) + 2 * i64::from(day / 5);
    START_MS + calendar * DAY_MS
}

/// What a search matches on (the terms of `quis.vault.v1.SubjectQuery`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    pub family_name: String,
    pub given_name: String,
    pub date_of_birth: String,
    pub reference_number: String,
}

/// One call to the vault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// SearchSubjects within a case.
    Search { case: usize, purpose: Purpose, query: Query },
    /// GetRecord of a subject's record, citing a case.
    Read { subject: usize, case: usize, purpose: Purpose },
    /// GetRecord of a subject id that may not exist (enumeration), citing a case.
    ReadId { subject_id: String, case: usize, purpose: Purpose },
    /// ExportRecords of several subjects, citing a case.
    Export { subjects: Vec<usize>, case: usize, purpose: Purpose },
    /// StartBreakGlass on a subject, then a read under the grant; `end` ends it after.
    BreakGlass { subject: usize, justification: String, end: bool },
}

/// One thing a member of staff (or someone holding their token) does.
#[derive(Clone, Debug)]
pub struct Activity {
    pub at_ms: i64,
    /// Index into [`Org::staff`]: whose token is used.
    pub actor: usize,
    /// The source address the gateway sees.
    pub host: Ipv4Addr,
    pub op: Op,
    /// The planted incident it belongs to, if any.
    pub incident: Option<usize>,
}

/// The purpose a case serves, as a vault purpose.
pub fn purpose(p: CasePurpose) -> Purpose {
    match p {
        CasePurpose::Casework => Purpose::Casework,
        CasePurpose::TaxpayerService => Purpose::TaxpayerService,
        CasePurpose::FraudInvestigation => Purpose::FraudInvestigation,
    }
}

/// A time within staff member `s`'s shift on `day` (with overtime, if they stay late).
pub fn in_shift(org: &Org, s: usize, day: u32, rng: &mut ChaCha20Rng, overtime_minutes: i64) -> i64 {
    let shift = org.staff[s].shift;
    let minute = i64::from(shift.start_hour) * 60 + rng.gen_range(0..i64::from(shift.hours) * 60 + overtime_minutes);
    // Nothing starts in the last half hour of the day, so that what follows stays on the same day.
    let minute = minute.rem_euclid(24 * 60).min(LAST_START_MINUTE);
    day_start_ms(day) + minute * MINUTE_MS + rng.gen_range(0..MINUTE_MS)
}

/// Legitimate activities of every working day, sorted by time.
pub fn legitimate(org: &Org, rng: &mut ChaCha20Rng) -> Vec<Activity> {
    let mut out = Vec::new();
    for day in 0..org.params.days {
        for s in 0..org.staff.len() {
            staff_day(org, s, day, rng, &mut out);
        }
    }
    justified_break_glass(org, rng, &mut out);
    out.sort_by_key(|a| a.at_ms);
    out
}

fn staff_day(org: &Org, s: usize, day: u32, rng: &mut ChaCha20Rng, out: &mut Vec<Activity>) {
    let staff = &org.staff[s];
    let kind = org.teams[staff.team].kind;
    if staff.role == StaffRole::Admin {
        return;
    }
    let overtime = if staff.overtime && rng.gen_bool(0.4) { rng.gen_range(60..=150) } else { 0 };
    let mine: Vec<usize> =
        (0..org.cases.len()).filter(|&c| org.cases[c].staff == s && org.cases[c].open_on(day)).collect();
    let worked: Vec<usize> = match kind {
        // Every call of the day is worked.
        TeamKind::Service | TeamKind::NightService => {
            mine.iter().copied().filter(|&c| org.cases[c].opened_day == day).collect()
        }
        _ => {
            // New cases (a busy day brings many) and a few of the backlog.
            let mut worked: Vec<usize> =
                mine.iter().copied().filter(|&c| org.cases[c].opened_day == day && day > 0).collect();
            let mut backlog: Vec<usize> = mine.iter().copied().filter(|c| !worked.contains(c)).collect();
            backlog.shuffle(rng);
            worked.extend(backlog.into_iter().take(rng.gen_range(3..=5)));
            worked
        }
    };
    for c in worked {
        let case = &org.cases[c];
        let at = in_shift(org, s, day, rng, overtime);
        let first = &org.people[case.subjects[0]];
        let query = match case.purpose {
            // A caller gives their reference number.
            CasePurpose::TaxpayerService => {
                Query { reference_number: first.reference_number.clone(), ..Default::default() }
            }
            _ => Query {
                family_name: first.family_name.clone(),
                date_of_birth: first.date_of_birth.clone(),
                ..Default::default()
            },
        };
        let purpose = purpose(case.purpose);
        out.push(Activity {
            at_ms: at,
            actor: s,
            host: staff.host,
            op: Op::Search { case: c, purpose, query },
            incident: None,
        });
        for (i, &subject) in case.subjects.iter().enumerate() {
            let at = at + (i as i64 + 1) * rng.gen_range(MINUTE_MS..5 * MINUTE_MS);
            out.push(Activity {
                at_ms: at,
                actor: s,
                host: staff.host,
                op: Op::Read { subject, case: c, purpose },
                incident: None,
            });
        }
    }
    if staff.role == StaffRole::TeamLead {
        team_lead_review(org, s, day, rng, out);
    }
}

/// A team lead reads a few of their team members' open cases (the team assignment covers them).
fn team_lead_review(org: &Org, s: usize, day: u32, rng: &mut ChaCha20Rng, out: &mut Vec<Activity>) {
    let team = org.staff[s].team;
    let mut cases: Vec<usize> = (0..org.cases.len())
        .filter(|&c| {
            let case = &org.cases[c];
            case.team == team && case.staff != s && case.open_on(day) && case.purpose == CasePurpose::Casework
        })
        .collect();
    cases.shuffle(rng);
    for c in cases.into_iter().take(rng.gen_range(2..=4)) {
        let subject = org.cases[c].subjects[0];
        out.push(Activity {
            at_ms: in_shift(org, s, day, rng, 0),
            actor: s,
            host: org.staff[s].host,
            op: Op::Read { subject, case: c, purpose: Purpose::Casework },
            incident: None,
        });
    }
}

/// Now and then a caseworker meets an emergency about someone on none of
/// their cases: break-glass with a real justification, one read, ended.
fn justified_break_glass(org: &Org, rng: &mut ChaCha20Rng, out: &mut Vec<Activity>) {
    let caseworkers = org.staff_where(StaffRole::Caseworker, TeamKind::Casework);
    let ordinary: Vec<usize> = (0..org.people.len()).filter(|&p| org.ordinary(p)).collect();
    if caseworkers.is_empty() || ordinary.is_empty() {
        return;
    }
    for _ in 0..(org.staff.len() / 200).max(1) {
        let s = caseworkers[rng.gen_range(0..caseworkers.len())];
        let day = rng.gen_range(0..org.params.days.max(1));
        let subject = ordinary[rng.gen_range(0..ordinary.len())];
        out.push(Activity {
            at_ms: in_shift(org, s, day, rng, 0),
            actor: s,
            host: org.staff[s].host,
            op: Op::BreakGlass {
                subject,
                justification: "Caller reported an immediate risk of eviction; the duty manager asked for the \
                                account status to stop an enforcement visit today."
                    .into(),
                end: true,
            },
            incident: None,
        });
    }
}
