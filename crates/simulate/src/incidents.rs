//! Planted misuse, labelled: who, what kind, when. Each kind plays what the
//! misuse looks like from the outside (the same calls a legitimate user makes,
//! for the wrong subjects, at the wrong time or from the wrong place); the
//! ledger indices of its events are filled in as it is played.
use std::net::Ipv4Addr;

use quis_proto::ledger::Purpose;
use rand::{Rng, seq::SliceRandom};
use rand_chacha::ChaCha20Rng;
use serde::Serialize;

use crate::{
    org::{CasePurpose, Compartment, Org, StaffRole, TeamKind},
    plan::{Activity, Op, Query, day_start_ms, in_shift},
};

/// The kinds of planted misuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IncidentKind {
    /// Browsing the records of people living at one's own address.
    SnoopingNeighbour,
    /// Browsing a public figure's or politician's record.
    SnoopingCelebrity,
    /// Looking up a colleague's record.
    ColleagueRecord,
    /// Reading and exporting everything within reach in the last days before leaving.
    BulkCollection,
    /// Someone else using a caseworker's token at night, from new hosts at several sites.
    StolenCredentials,
    /// Walking subject ids and over-broad searches, collecting denials.
    Enumeration,
    /// Repeated break-glass on people on no case, with thin justifications.
    BreakGlassAbuse,
    /// Touching a decoy (honeytoken) subject.
    DecoyTouched,
    /// An insider with database access rewriting and deleting ledger rows.
    LedgerTampering,
}

impl IncidentKind {
    /// Every kind planted in the ledger's events (tampering is planted after play).
    pub const PLAYED: [IncidentKind; 8] = [
        IncidentKind::SnoopingNeighbour,
        IncidentKind::SnoopingCelebrity,
        IncidentKind::ColleagueRecord,
        IncidentKind::BulkCollection,
        IncidentKind::StolenCredentials,
        IncidentKind::Enumeration,
        IncidentKind::BreakGlassAbuse,
        IncidentKind::DecoyTouched,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IncidentKind::SnoopingNeighbour => "snooping-neighbour",
            IncidentKind::SnoopingCelebrity => "snooping-celebrity",
            IncidentKind::ColleagueRecord => "colleague-record",
            IncidentKind::BulkCollection => "bulk-collection",
            IncidentKind::StolenCredentials => "stolen-credentials",
            IncidentKind::Enumeration => "enumeration",
            IncidentKind::BreakGlassAbuse => "break-glass-abuse",
            IncidentKind::DecoyTouched => "decoy-touched",
            IncidentKind::LedgerTampering => "ledger-tampering",
        }
    }
}

/// One planted incident: the label the scores are measured against.
#[derive(Clone, Debug, Serialize)]
pub struct Incident {
    pub kind: IncidentKind,
    /// The principal whose token was used (empty for ledger tampering: a database user).
    pub actor: String,
    /// Event time of its first and last events, milliseconds since the epoch.
    pub start_ms: i64,
    pub end_ms: i64,
    /// The ledger indices of its events (recorded as they are played).
    pub ledger_indices: Vec<u64>,
    /// What happened, for the report.
    pub description: String,
}

/// Plants `count` incidents on distinct actors, in the second half of the
/// simulated days (after baselines have formed): every played kind once per
/// round, in an order the seed shuffles, so that from 8 on every kind is there
/// and the last round's kinds are the seed's pick. Returns the labels and their
/// activities.
pub fn plant(org: &Org, count: usize, rng: &mut ChaCha20Rng) -> (Vec<Incident>, Vec<Activity>) {
    let mut planter = Planter { org, rng, incidents: Vec::new(), activities: Vec::new() };
    let mut caseworkers = org.staff_where(StaffRole::Caseworker, TeamKind::Casework);
    caseworkers.shuffle(planter.rng);
    let mut leads = org.staff_where(StaffRole::TeamLead, TeamKind::Casework);
    leads.shuffle(planter.rng);
    let mut caseworkers = caseworkers.into_iter();
    let mut leads = leads.into_iter();
    let mut kinds = Vec::with_capacity(count);
    while kinds.len() < count {
        let mut round = IncidentKind::PLAYED;
        round.shuffle(planter.rng);
        kinds.extend(round.into_iter().take(count - kinds.len()));
    }
    for kind in kinds {
        let actor = match kind {
            IncidentKind::BulkCollection => leads.next(),
            IncidentKind::SnoopingNeighbour => caseworkers.by_ref().find(|&s| !planter.neighbours(s).is_empty()),
            _ => caseworkers.next(),
        };
        if let Some(actor) = actor {
            planter.plant(kind, actor);
        }
    }
    (planter.incidents, planter.activities)
}

struct Planter<'a> {
    org: &'a Org,
    rng: &'a mut ChaCha20Rng,
    incidents: Vec<Incident>,
    activities: Vec<Activity>,
}

const MINUTE_MS: i64 = 60_000;

impl Planter<'_> {
    /// A day in the second half of the simulation.
    fn late_day(&mut self) -> u32 {
        let days = self.org.params.days.max(1);
        self.rng.gen_range(days / 2..days)
    }

    /// One of the actor's cases open on `day` (the cover misuse hides behind).
    fn own_case(&mut self, s: usize, day: u32) -> Option<usize> {
        let cases: Vec<usize> = (0..self.org.cases.len())
            .filter(|&c| self.org.cases[c].staff == s && self.org.cases[c].open_on(day))
            .collect();
        cases.choose(self.rng).copied()
    }

    /// People at the actor's address outside the actor's household.
    fn neighbours(&self, s: usize) -> Vec<usize> {
        let me = &self.org.people[self.org.staff[s].person];
        self.org.addresses[me.address]
            .residents
            .iter()
            .copied()
            .filter(|&p| self.org.people[p].household != me.household)
            .collect()
    }

    fn push(&mut self, incident: usize, actor: usize, host: Ipv4Addr, at_ms: i64, op: Op) {
        self.activities.push(Activity { at_ms, actor, host, op, incident: Some(incident) });
    }

    fn search_for(&self, p: usize, case: usize) -> Op {
        let person = &self.org.people[p];
        Op::Search {
            case,
            purpose: Purpose::Casework,
            query: Query {
                family_name: person.family_name.clone(),
                given_name: person.given_names.clone(),
                ..Default::default()
            },
        }
    }

    /// Plants one incident of `kind` by staff member `s`, unless the organization offers no occasion for it.
    fn plant(&mut self, kind: IncidentKind, s: usize) {
        let n = self.incidents.len();
        let Some(description) = self.activities_of(kind, s, n) else {
            self.activities.retain(|a| a.incident != Some(n));
            return;
        };
        let times = self.activities.iter().filter(|a| a.incident == Some(n)).map(|a| a.at_ms);
        let (start_ms, end_ms) = times.fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
        if start_ms > end_ms {
            return;
        }
        self.incidents.push(Incident {
            kind,
            actor: self.org.staff[s].id.clone(),
            start_ms,
            end_ms,
            ledger_indices: Vec::new(),
            description,
        });
    }

    /// Adds the activities of incident `n`; returns its description.
    fn activities_of(&mut self, kind: IncidentKind, s: usize, n: usize) -> Option<String> {
        let org = self.org;
        let day = self.late_day();
        let case = self.own_case(s, day)?;
        let host = org.staff[s].host;
        let at = in_shift(org, s, day, self.rng, 0);
        let description = match kind {
            IncidentKind::SnoopingNeighbour => {
                let neighbours = self.neighbours(s);
                for (i, &p) in neighbours.iter().take(4).enumerate() {
                    let t = at + i as i64 * 3 * MINUTE_MS;
                    self.push(n, s, host, t, self.search_for(p, case));
                    self.push(n, s, host, t + MINUTE_MS, Op::Read { subject: p, case, purpose: Purpose::Casework });
                }
                format!("looked up {} people living at their own address", neighbours.len().min(4))
            }
            IncidentKind::SnoopingCelebrity => {
                let famous: Vec<usize> = (0..org.people.len())
                    .filter(|&p| {
                        matches!(org.people[p].compartment, Some(Compartment::PublicFigure | Compartment::Politician))
                    })
                    .collect();
                let &p = famous.choose(self.rng)?;
                self.push(n, s, host, at, self.search_for(p, case));
                self.push(n, s, host, at + MINUTE_MS, Op::Read { subject: p, case, purpose: Purpose::Casework });
                self.push(n, s, host, at + 4 * MINUTE_MS, Op::Read { subject: p, case, purpose: Purpose::Casework });
                "looked up a public figure's record under an unrelated case".to_string()
            }
            IncidentKind::ColleagueRecord => {
                let team = &org.teams[org.staff[s].team].members;
                let &colleague = team.iter().filter(|&&c| c != s).collect::<Vec<_>>().choose(self.rng)?;
                let p = org.staff[*colleague].person;
                self.push(n, s, host, at, self.search_for(p, case));
                self.push(n, s, host, at + 2 * MINUTE_MS, Op::Read { subject: p, case, purpose: Purpose::Casework });
                format!("looked up their colleague {}'s record", org.staff[*colleague].id)
            }
            IncidentKind::BulkCollection => self.bulk_collection(n, s),
            IncidentKind::StolenCredentials => self.stolen_credentials(n, s, day),
            IncidentKind::Enumeration => {
                let first = self.rng.gen_range(1..org.people.len().saturating_sub(40).max(2));
                for i in 0..30 {
                    let subject_id = format!("s-{:06}", first + i);
                    self.push(
                        n,
                        s,
                        host,
                        at + i as i64 * 15_000,
                        Op::ReadId { subject_id, case, purpose: Purpose::Casework },
                    );
                }
                for (i, prefix) in ["A*", "B*", "S*"].into_iter().enumerate() {
                    let query = Query { family_name: prefix.into(), ..Default::default() };
                    self.push(
                        n,
                        s,
                        host,
                        at + (8 + i as i64) * MINUTE_MS,
                        Op::Search { case, purpose: Purpose::Casework, query },
                    );
                }
                "read 30 consecutive subject ids under one case and tried one-letter wildcard searches".to_string()
            }
            IncidentKind::BreakGlassAbuse => {
                let ordinary: Vec<usize> = (0..org.people.len()).filter(|&p| org.ordinary(p)).collect();
                for i in 0..3 {
                    let &subject = ordinary.choose(self.rng)?;
                    let justification = "need to check this one quickly, thanks".to_string();
                    self.push(
                        n,
                        s,
                        host,
                        at + i * 40 * MINUTE_MS,
                        Op::BreakGlass { subject, justification, end: false },
                    );
                }
                "three break-glass grants in one afternoon on people on no case, with a stock justification".to_string()
            }
            IncidentKind::DecoyTouched => {
                let decoys: Vec<usize> = (0..org.people.len()).filter(|&p| org.people[p].decoy).collect();
                let &p = decoys.choose(self.rng)?;
                self.push(n, s, host, at, self.search_for(p, case));
                self.push(n, s, host, at + MINUTE_MS, Op::Read { subject: p, case, purpose: Purpose::Casework });
                "searched for and opened a decoy subject".to_string()
            }
            IncidentKind::LedgerTampering => return None,
        };
        Some(description)
    }

    /// A team lead about to leave reads every subject of the team's open
    /// cases over the last two days and tries to export them.
    fn bulk_collection(&mut self, n: usize, s: usize) -> String {
        let org = self.org;
        let days = org.params.days.max(1);
        let team = org.staff[s].team;
        let host = org.staff[s].host;
        let mut read = 0;
        for day in days.saturating_sub(2)..days {
            let cases: Vec<usize> = (0..org.cases.len())
                .filter(|&c| {
                    let case = &org.cases[c];
                    case.team == team && case.open_on(day) && case.purpose == CasePurpose::Casework
                })
                .collect();
            let Some(&cover) = cases.first() else { continue };
            let mut subjects = Vec::new();
            for &c in &cases {
                for &subject in &org.cases[c].subjects {
                    let at = in_shift(org, s, day, self.rng, 0);
                    self.push(n, s, host, at, Op::Read { subject, case: c, purpose: Purpose::Casework });
                    subjects.push(subject);
                    read += 1;
                }
            }
            subjects.truncate(1000);
            let at = day_start_ms(day) + (i64::from(org.staff[s].shift.start_hour) + 7) * 60 * MINUTE_MS;
            self.push(n, s, host, at, Op::Export { subjects, case: cover, purpose: Purpose::Legal });
        }
        format!("read {read} subjects of the team's cases over the last days and tried to export them")
    }

    /// The victim's token, used between 01:00 and 03:30 from hosts at other sites.
    fn stolen_credentials(&mut self, n: usize, victim: usize, day: u32) -> String {
        let org = self.org;
        let sites = org.teams.iter().map(|t| t.site).max().unwrap_or(0) + 1;
        let own_site = org.staff[victim].site;
        let hosts: Vec<Ipv4Addr> = (0..4)
            .map(|i| {
                let site = (own_site + 1 + i) % sites;
                Ipv4Addr::new(127, 10 + site as u8, 250, self.rng.gen_range(1..=250))
            })
            .collect();
        let cases: Vec<usize> =
            (0..org.cases.len()).filter(|&c| org.cases[c].staff == victim && org.cases[c].open_on(day)).collect();
        let ordinary: Vec<usize> = (0..org.people.len()).filter(|&p| org.ordinary(p)).collect();
        let night = day_start_ms(day) + 60 * MINUTE_MS;
        for i in 0..24 {
            let at = night + i * 6 * MINUTE_MS + self.rng.gen_range(0..MINUTE_MS);
            let host = hosts[i as usize % hosts.len()];
            let Some(&case) = cases.choose(self.rng) else { break };
            let subject =
                if i % 3 == 0 { org.cases[case].subjects[0] } else { ordinary[self.rng.gen_range(0..ordinary.len())] };
            self.push(n, victim, host, at, self.search_for(subject, case));
            self.push(n, victim, host, at + 20_000, Op::Read { subject, case, purpose: Purpose::Casework });
        }
        format!("{}'s token used at night from {} hosts at other sites", org.staff[victim].id, hosts.len())
    }
}
