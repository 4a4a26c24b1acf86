//! In-process decisions with the default pack over an organization of 10,000 staff,
//! 1,000,000 subjects and 200,000 open cases:
//!
//! - `load`: time to apply the whole organization to an empty index (one thread);
//! - `engine_check`: `Engine::check`, request checking and slice building included;
//! - `bare_is_authorized`: `cedar_policy::Authorizer::is_authorized` on the same requests
//!   with their slices prebuilt, over the whole pack;
//! - `bare_is_authorized_per_action`: the same over the per-action split;
//! - `bare_is_authorized_per_request`: the same over the per-(action, purpose, context) split the
//!   engine uses (`PolicySet::for_request`): the engine's own Cedar work, so the ratio
//!   against it is the cost of everything else (request, slice, obligations, reasons).
//!
//! A summary at the end times both loops back to back in the same run and prints the
//! ratio. `QUIS_BENCH_SUBJECTS` etc. shrink the organization for a quick run;
//! `QUIS_BENCH_REQUESTS` (10,000) and `QUIS_BENCH_ROUNDS` (10) shrink the summary, e.g.
//! to count instructions per decision under callgrind: each loop of the summary is its
//! own function (`engine_loop`, `bare_whole_loop`, ...), so its inclusive cost divided by the
//! decisions it made is the cost of one.

use std::hint::black_box;
use std::str::FromStr;
use std::time::{Duration, Instant};

use cedar_policy::{Authorizer, Entities, Request};
use criterion::{Criterion, Throughput};
use quis_policy_engine::model::*;
use quis_policy_engine::{CheckRequest, ContextKeys, Engine, EntityIndex, PolicySet, RequestContext};

/// The allocator of the `quis` binary, so that allocation costs what it costs in the service.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const T0: Timestamp = 1_799_999_200;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A tiny deterministic generator (xorshift), so every run builds the same organization.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 10_000 < percent * 100
    }
}

fn id(s: String) -> Id {
    Id::new(s).unwrap()
}

struct Org {
    entities: Vec<Entity>,
    staff: usize,
    subjects: usize,
    cases: Vec<Case>,
    staff_team: Vec<usize>,
}

fn organization() -> Org {
    let staff_n = env("QUIS_BENCH_STAFF", 10_000);
    let subjects_n = env("QUIS_BENCH_SUBJECTS", 1_000_000);
    let cases_n = env("QUIS_BENCH_CASES", 200_000);
    let teams_n = (staff_n / 50).max(1);
    let regions = (teams_n / 10).max(1);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut entities = Vec::with_capacity(staff_n + subjects_n + cases_n + teams_n + 4_000);

    entities.push(Entity::Team(Team { id: id("hq".into()), site: id("hq".into()), parent: None }));
    for r in 0..regions {
        entities.push(Entity::Team(Team {
            id: id(format!("region-{r}")),
            site: id(format!("site-{r}")),
            parent: Some(id("hq".into())),
        }));
    }
    for t in 0..teams_n {
        entities.push(Entity::Team(Team {
            id: id(format!("team-{t}")),
            site: id(format!("site-{}", t % regions)),
            parent: Some(id(format!("region-{}", t % regions))),
        }));
    }
    let compartments = Compartment::ALL;
    let mut staff_team = Vec::with_capacity(staff_n);
    for s in 0..staff_n {
        let team = s % teams_n;
        staff_team.push(team);
        let role = match s % 20 {
            0 => "team_lead",
            1 => "investigator",
            _ => "caseworker",
        };
        let clearances = if rng.chance(5) { vec![compartments[rng.below(4)]] } else { vec![] };
        let status = if rng.chance(1) { StaffStatus::Suspended } else { StaffStatus::Active };
        entities.push(Entity::Staff(Staff {
            id: id(format!("staff-{s}")),
            team: id(format!("team-{team}")),
            site: id(format!("site-{}", team % regions)),
            roles: vec![role.to_string()],
            clearances,
            status,
            surname_key: Some([(s % 251) as u8; 32]),
            address_key: Some([(s % 241) as u8; 32]),
            household_key: None,
        }));
    }
    for u in 0..subjects_n {
        let compartments = if rng.chance(2) { vec![compartments[rng.below(4)]] } else { vec![] };
        entities.push(Entity::Subject(Subject {
            id: id(format!("subject-{u}")),
            compartments,
            decoy: (u + 1).is_multiple_of(10_000),
            surname_key: Some([(u % 253) as u8; 32]),
            address_key: Some([(u % 239) as u8; 32]),
            household_key: None,
        }));
    }
    let purposes =
        [Purpose::Casework, Purpose::TaxpayerService, Purpose::Compliance, Purpose::FraudInvestigation, Purpose::Legal];
    let mut cases = Vec::with_capacity(cases_n);
    for c in 0..cases_n {
        let subjects = (0..1 + rng.below(3)).map(|_| id(format!("subject-{}", rng.below(subjects_n)))).collect();
        let owner = rng.below(staff_n);
        let by_team = rng.chance(30);
        let case = Case {
            id: id(format!("case-{c}")),
            subjects,
            assigned_staff: if by_team { vec![] } else { vec![id(format!("staff-{owner}"))] },
            assigned_teams: if by_team { vec![id(format!("team-{}", staff_team[owner]))] } else { vec![] },
            status: CaseStatus::Open,
            purpose: purposes[rng.below(purposes.len())],
        };
        cases.push(case.clone());
        entities.push(Entity::Case(case));
    }
    for k in 0..staff_n / 10 {
        entities.push(Entity::Conflict(Conflict {
            id: id(format!("conflict-{k}")),
            staff: id(format!("staff-{}", rng.below(staff_n))),
            subject: id(format!("subject-{}", rng.below(subjects_n))),
        }));
    }
    for g in 0..staff_n / 5 {
        let kind = if g % 4 == 0 { GrantKind::BreakGlass } else { GrantKind::Temporary };
        entities.push(Entity::Grant(Grant {
            id: id(format!("grant-{g}")),
            staff: id(format!("staff-{}", rng.below(staff_n))),
            subject: id(format!("subject-{}", rng.below(subjects_n))),
            kind,
            purposes: if kind == GrantKind::BreakGlass { vec![Purpose::Emergency] } else { vec![Purpose::Audit] },
            justification: "benchmark".into(),
            starts_at: T0 - 3_600,
            expires_at: T0 + 3_600,
            granted_by: id("staff-0".into()),
        }));
    }
    Org { entities, staff: staff_n, subjects: subjects_n, cases, staff_team }
}

/// A realistic mix: 70% legitimate reads through an assigned case (named in half of
/// them), 10% searches within a case, 20% reads of a random subject (mostly denied).
fn requests(org: &Org, n: usize) -> Vec<CheckRequest> {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    (0..n)
        .map(|i| {
            let roll = rng.below(100);
            let case = &org.cases[rng.below(org.cases.len())];
            let staff = match (case.assigned_staff.first(), case.assigned_teams.first()) {
                (Some(s), _) => s.to_string(),
                (None, Some(t)) => {
                    let team: usize = t.as_str().trim_start_matches("team-").parse().unwrap();
                    let member =
                        (0..org.staff).map(|s| (s + i) % org.staff).find(|&s| org.staff_team[s] == team).unwrap();
                    format!("staff-{member}")
                }
                (None, None) => unreachable!(),
            };
            let mut context =
                RequestContext { purpose: Some(case.purpose.as_str().into()), time: T0, ..RequestContext::default() };
            let (action, resource) = if roll < 70 {
                if roll.is_multiple_of(2) {
                    context.case = Some(format!("cases/{}", case.id));
                }
                ("read", format!("subjects/{}", case.subjects[0]))
            } else if roll < 80 {
                ("search", format!("cases/{}", case.id))
            } else {
                ("read", format!("subjects/subject-{}", rng.below(org.subjects)))
            };
            context.source_address = Some("10.20.30.40".into());
            CheckRequest {
                principal: format!("staff/{staff}"),
                action: action.into(),
                resource,
                fields: vec!["identity".into(), "contact".into()],
                context,
            }
        })
        .collect()
}

/// A request's Cedar inputs, with the action and purpose that select its split.
struct Prebuilt {
    request: Request,
    entities: Entities,
    action: Action,
    purpose: Option<Purpose>,
    keys: ContextKeys,
}

impl Prebuilt {
    fn split<'a>(&self, policies: &'a PolicySet, by_purpose: bool) -> &'a cedar_policy::PolicySet {
        if by_purpose {
            policies.for_request(self.action, self.purpose, self.keys)
        } else {
            policies.for_action(self.action)
        }
    }
}

struct Fixture {
    policies: PolicySet,
    index: EntityIndex,
    requests: Vec<CheckRequest>,
    prebuilt: Vec<Prebuilt>,
    load: Duration,
    entities: usize,
}

fn fixture() -> Fixture {
    let org = organization();
    let entities = org.entities.len();
    let requests = requests(&org, env("QUIS_BENCH_REQUESTS", 10_000));
    let index = EntityIndex::new();
    let started = Instant::now();
    for e in org.entities {
        index.apply(EntityChange::Upsert(e)).unwrap();
    }
    let load = started.elapsed();
    let policies = PolicySet::default();
    let prebuilt = requests
        .iter()
        .map(|r| {
            let (request, entities) =
                Engine::cedar_inputs(&index, r).unwrap().expect("benchmark principals and subjects exist");
            Prebuilt {
                keys: ContextKeys::of(&request),
                request,
                entities,
                action: Action::from_str(&r.action).unwrap(),
                purpose: r.context.purpose.as_deref().map(|p| Purpose::from_str(p).unwrap()),
            }
        })
        .collect();
    Fixture { policies, index, requests, prebuilt, load, entities }
}

fn decisions(c: &mut Criterion, f: &Fixture) {
    let mut group = c.benchmark_group("decisions");
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    group.bench_function("engine_check", |b| {
        b.iter(|| {
            i = (i + 1) % f.requests.len();
            black_box(Engine::check(&f.policies, &f.index, &f.requests[i]).unwrap())
        })
    });
    let authorizer = Authorizer::new();
    let mut i = 0;
    group.bench_function("bare_is_authorized", |b| {
        b.iter(|| {
            i = (i + 1) % f.prebuilt.len();
            let p = &f.prebuilt[i];
            black_box(authorizer.is_authorized(&p.request, f.policies.cedar(), &p.entities))
        })
    });
    for (name, by_purpose) in [("bare_is_authorized_per_action", false), ("bare_is_authorized_per_request", true)] {
        let mut i = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % f.prebuilt.len();
                let p = &f.prebuilt[i];
                black_box(authorizer.is_authorized(&p.request, p.split(&f.policies, by_purpose), &p.entities))
            })
        });
    }
    group.finish();
}

/// One pass of `Engine::check` over all requests; the number allowed.
#[inline(never)]
fn engine_loop(f: &Fixture) -> usize {
    f.requests.iter().map(|r| usize::from(black_box(Engine::check(&f.policies, &f.index, r).unwrap()).allowed)).sum()
}

/// One pass of bare `is_authorized` over the prebuilt requests, with the policies `pick` gives.
#[inline(always)]
fn bare_loop<'a>(f: &'a Fixture, authorizer: &Authorizer, pick: impl Fn(&'a Prebuilt) -> &'a cedar_policy::PolicySet) {
    for p in &f.prebuilt {
        black_box(authorizer.is_authorized(&p.request, pick(p), &p.entities));
    }
}

#[inline(never)]
fn bare_whole_loop(f: &Fixture, authorizer: &Authorizer) {
    bare_loop(f, authorizer, |_| f.policies.cedar())
}

#[inline(never)]
fn bare_action_loop(f: &Fixture, authorizer: &Authorizer) {
    bare_loop(f, authorizer, |p| p.split(&f.policies, false))
}

#[inline(never)]
fn bare_request_loop(f: &Fixture, authorizer: &Authorizer) {
    bare_loop(f, authorizer, |p| p.split(&f.policies, true))
}

/// Times `rounds` passes over all requests through each path, alternating, and prints
/// decisions/s on one core and the ratio.
fn summary(f: &Fixture) {
    let authorizer = Authorizer::new();
    let rounds = env("QUIS_BENCH_ROUNDS", 10);
    let mut times = [Duration::ZERO; 4];
    let mut allowed = 0usize;
    for _ in 0..rounds {
        let t = Instant::now();
        allowed += engine_loop(f);
        times[0] += t.elapsed();
        let bare_loops: [fn(&Fixture, &Authorizer); 3] = [bare_whole_loop, bare_action_loop, bare_request_loop];
        for (time, bare_loop) in times[1..].iter_mut().zip(bare_loops) {
            let t = Instant::now();
            bare_loop(f, &authorizer);
            *time += t.elapsed();
        }
    }
    let [engine, bare, bare_action, bare_request] = times;
    let n = (rounds * f.requests.len()) as f64;
    let rate = |d: Duration| n / d.as_secs_f64();
    println!(
        "organization: {} entities loaded in {:.2} s ({:.0} entities/s)",
        f.entities,
        f.load.as_secs_f64(),
        f.entities as f64 / f.load.as_secs_f64()
    );
    println!("requests: {} x {rounds} rounds, {:.1}% allowed", f.requests.len(), 100.0 * allowed as f64 / n);
    println!(
        "Engine::check (slices included):        {:>9.0} decisions/s on one core ({:.2} us each)",
        rate(engine),
        engine.as_secs_f64() * 1e6 / n
    );
    println!(
        "bare is_authorized, whole pack:         {:>9.0} decisions/s on one core ({:.2} us each)",
        rate(bare),
        bare.as_secs_f64() * 1e6 / n
    );
    for (what, d) in [("per-action split:  ", bare_action), ("per-request split: ", bare_request)] {
        println!(
            "bare is_authorized, {what}    {:>9.0} decisions/s on one core ({:.2} us each)",
            rate(d),
            d.as_secs_f64() * 1e6 / n
        );
    }
    println!("ratio engine / bare (whole pack):        {:.2}", rate(engine) / rate(bare));
    println!("ratio engine / bare (per-action split):  {:.2}", rate(engine) / rate(bare_action));
    println!("ratio engine / bare (per-request split): {:.2}", rate(engine) / rate(bare_request));
}

fn main() {
    let f = fixture();
    let mut c = Criterion::default().configure_from_args();
    decisions(&mut c, &f);
    c.final_summary();
    summary(&f);
}
