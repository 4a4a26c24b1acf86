//! The simulated organization, generated from a seed: sites, teams, staff with
//! roles, shifts and workstations, a population of subjects in households and
//! addresses (staff among them, in the own-staff compartment), public figures,
//! politicians, protected persons and decoys, and the cases that tie staff to
//! subjects, opened and closed over the simulated days.
use std::net::Ipv4Addr;

use rand::{Rng, SeedableRng, distributions::WeightedIndex, prelude::Distribution, seq::SliceRandom};
use rand_chacha::ChaCha20Rng;
use serde::Serialize;

use crate::names::{GIVEN_NAMES, SITES, STREETS, SURNAMES, zipf_weights};

/// What to generate.
#[derive(Clone, Debug, Serialize)]
pub struct OrgParams {
    pub seed: u64,
    pub staff: usize,
    pub subjects: usize,
    pub days: u32,
}

/// A restricted compartment a subject sits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compartment {
    PublicFigure,
    Politician,
    OwnStaff,
    Protected,
}

impl Compartment {
    /// The vault's compartment id.
    pub fn id(self) -> &'static str {
        match self {
            Compartment::PublicFigure => "public-figure",
            Compartment::Politician => "politician",
            Compartment::OwnStaff => "own-staff",
            Compartment::Protected => "protected-person",
        }
    }
}

/// A person records are about.
#[derive(Clone, Debug)]
pub struct Person {
    pub id: String,
    pub given_names: String,
    pub family_name: String,
    pub date_of_birth: String,
    pub postcode: String,
    pub reference_number: String,
    pub address_lines: Vec<String>,
    pub household: String,
    /// Index into [`Org::addresses`]: several households may share one (a building).
    pub address: usize,
    pub compartment: Option<Compartment>,
    pub decoy: bool,
}

impl Person {
    /// `subjects/{id}`.
    pub fn name(&self) -> String {
        format!("subjects/{}", self.id)
    }

    /// The one record every subject has.
    pub fn record_name(&self) -> String {
        format!("subjects/{}/records/{RECORD_ID}", self.id)
    }
}

/// Every subject has one record with this id.
pub const RECORD_ID: &str = "tax-2025";

#[derive(Clone, Debug)]
pub struct Address {
    pub lines: Vec<String>,
    pub postcode: String,
    pub site: usize,
    /// The people living there, all households together.
    pub residents: Vec<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TeamKind {
    Casework,
    Service,
    NightService,
    Investigations,
    Administration,
}

#[derive(Clone, Debug)]
pub struct Team {
    pub id: String,
    pub site: usize,
    pub kind: TeamKind,
    pub members: Vec<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StaffRole {
    Caseworker,
    TeamLead,
    Investigator,
    Admin,
}

impl StaffRole {
    pub fn role_name(self) -> &'static str {
        match self {
            StaffRole::Caseworker => "caseworker",
            StaffRole::TeamLead => "team_lead",
            StaffRole::Investigator => "investigator",
            StaffRole::Admin => "admin",
        }
    }
}

/// Working hours: from `start_hour` for `hours` (a night shift wraps past midnight).
#[derive(Clone, Copy, Debug)]
pub struct Shift {
    pub start_hour: u32,
    pub hours: u32,
}

#[derive(Clone, Debug)]
pub struct Staff {
    pub id: String,
    pub team: usize,
    pub site: usize,
    pub role: StaffRole,
    /// The staff member as a subject (own-staff compartment).
    pub person: usize,
    /// Their workstation's address, as the gateway sees it.
    pub host: Ipv4Addr,
    pub shift: Shift,
    /// Sometimes stays late.
    pub overtime: bool,
}

impl Staff {
    /// `staff/{id}`.
    pub fn name(&self) -> String {
        format!("staff/{}", self.id)
    }
}

/// The purposes cases are opened for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CasePurpose {
    Casework,
    TaxpayerService,
    FraudInvestigation,
}

#[derive(Clone, Debug)]
pub struct Case {
    pub id: String,
    pub subjects: Vec<usize>,
    pub staff: usize,
    pub team: usize,
    pub purpose: CasePurpose,
    /// The day it opens (pushed before that day's work); 0 for the initial backlog.
    pub opened_day: u32,
    /// The day it is closed (before that day's work), if within the simulation.
    pub closed_day: Option<u32>,
}

impl Case {
    /// `cases/{id}`.
    pub fn name(&self) -> String {
        format!("cases/{}", self.id)
    }

    pub fn open_on(&self, day: u32) -> bool {
        self.opened_day <= day && self.closed_day.is_none_or(|c| c > day)
    }
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct Org {
    pub params: OrgParams,
    pub teams: Vec<Team>,
    pub staff: Vec<Staff>,
    pub people: Vec<Person>,
    pub addresses: Vec<Address>,
    pub cases: Vec<Case>,
}

/// Shares of the population in each compartment, and decoys.
const PUBLIC_FIGURES_PER_10K: usize = 20;
const POLITICIANS_PER_10K: usize = 10;
const PROTECTED_PER_10K: usize = 5;
const DECOYS_PER_10K: usize = 10;
/// Open cases each caseworker starts with, and new ones per day.
const INITIAL_CASES: std::ops::RangeInclusive<usize> = 6..=10;
const NEW_CASES_PER_DAY: std::ops::RangeInclusive<usize> = 0..=2;
/// Service calls per service staff member per day (each a contact case).
const CALLS_PER_DAY: std::ops::RangeInclusive<usize> = 8..=14;
const TEAM_SIZE: usize = 12;
/// Chance that a caseworker's day brings a transferred backlog of this many cases.
const BUSY_DAY_CHANCE: f64 = 0.05;
const BUSY_DAY_CASES: usize = 6;

impl Org {
    /// The organization of `params`; the same seed always gives the same organization.
    pub fn generate(params: &OrgParams) -> Org {
        let mut rng = ChaCha20Rng::seed_from_u64(params.seed);
        let mut org = Org {
            params: params.clone(),
            teams: Vec::new(),
            staff: Vec::new(),
            people: Vec::new(),
            addresses: Vec::new(),
            cases: Vec::new(),
        };
        let mut people = PersonGen::new();
        org.roster(&mut rng, &mut people);
        org.population(&mut rng, &mut people);
        org.shuffle_ids(&mut rng);
        org.open_cases(&mut rng);
        org
    }

    fn roster(&mut self, rng: &mut ChaCha20Rng, people: &mut PersonGen) {
        let n = self.params.staff.max(20);
        let admins = (n / 150).max(2);
        let investigators = (n / 40).max(2);
        let mut roles: Vec<(TeamKind, StaffRole)> = Vec::with_capacity(n);
        roles.extend(std::iter::repeat_n((TeamKind::Administration, StaffRole::Admin), admins));
        roles.extend(std::iter::repeat_n((TeamKind::Investigations, StaffRole::Investigator), investigators));
        let rest = n - admins - investigators;
        let night = (rest / 20).max(3);
        let service = rest / 3;
        roles.extend(std::iter::repeat_n((TeamKind::NightService, StaffRole::Caseworker), night));
        roles.extend(std::iter::repeat_n((TeamKind::Service, StaffRole::Caseworker), service - night.min(service)));
        roles.extend(std::iter::repeat_n((TeamKind::Casework, StaffRole::Caseworker), n - roles.len()));

        let sites = SITES.len().min(n / 40).max(2);
        let mut current: Option<(TeamKind, usize)> = None;
        for (i, (kind, role)) in roles.into_iter().enumerate() {
            let full = |t: &Team| t.members.len() >= TEAM_SIZE && !matches!(kind, TeamKind::Administration);
            let team = match current {
                Some((k, t)) if k == kind && !full(&self.teams[t]) => t,
                _ => {
                    let site = self.teams.len() % sites;
                    let ordinal = self.teams.iter().filter(|t| t.kind == kind).count() + 1;
                    let label = match kind {
                        TeamKind::Casework => "casework",
                        TeamKind::Service => "service",
                        TeamKind::NightService => "night-service",
                        TeamKind::Investigations => "investigations",
                        TeamKind::Administration => "administration",
                    };
                    self.teams.push(Team {
                        id: format!("{label}-{}-{ordinal}", SITES[site].0),
                        site,
                        kind,
                        members: Vec::new(),
                    });
                    self.teams.len() - 1
                }
            };
            current = Some((kind, team));
            // The first member of a casework or service team leads it.
            let role = if self.teams[team].members.is_empty()
                && matches!(kind, TeamKind::Casework | TeamKind::Service | TeamKind::NightService)
            {
                StaffRole::TeamLead
            } else {
                role
            };
            let site = self.teams[team].site;
            let shift = match kind {
                TeamKind::NightService => Shift { start_hour: 22, hours: 8 },
                _ => Shift { start_hour: rng.gen_range(7..=9), hours: 8 },
            };
            let person = self.household_with_staff(rng, people, site);
            self.teams[team].members.push(i);
            self.staff.push(Staff {
                id: format!("emp-{:04}", i + 1),
                team,
                site,
                role,
                person,
                host: Ipv4Addr::new(127, 10 + site as u8, (i / 250) as u8, (i % 250) as u8 + 1),
                shift,
                overtime: rng.gen_bool(0.15),
            });
        }
    }

    /// A staff member's home: their household, sometimes sharing a building
    /// with other households; returns the staff member's own person.
    fn household_with_staff(&mut self, rng: &mut ChaCha20Rng, people: &mut PersonGen, site: usize) -> usize {
        let address = self.new_address(rng, site);
        let size = household_size(rng);
        let staff_person = self.household(rng, people, address, Some(Compartment::OwnStaff), size);
        if rng.gen_bool(0.6) {
            for _ in 0..rng.gen_range(1..=3) {
                let size = household_size(rng);
                self.household(rng, people, address, None, size);
            }
        }
        staff_person
    }

    fn population(&mut self, rng: &mut ChaCha20Rng, people: &mut PersonGen) {
        let target = self.params.subjects.max(self.people.len() + 100);
        let sites = self.teams.iter().map(|t| t.site).max().unwrap_or(0) + 1;
        while self.people.len() < target {
            let site = rng.gen_range(0..sites);
            let address = self.new_address(rng, site);
            let households = if rng.gen_bool(0.1) { rng.gen_range(2..=4) } else { 1 };
            for _ in 0..households {
                let size = household_size(rng);
                self.household(rng, people, address, None, size);
            }
        }
        let per_10k = |n: usize| (target * n / 10_000).max(2);
        let staff_people: std::collections::HashSet<usize> = self.staff.iter().map(|s| s.person).collect();
        let mut candidates: Vec<usize> = (0..self.people.len()).filter(|p| !staff_people.contains(p)).collect();
        candidates.shuffle(rng);
        let mut take = candidates.into_iter();
        for (compartment, n) in [
            (Compartment::PublicFigure, PUBLIC_FIGURES_PER_10K),
            (Compartment::Politician, POLITICIANS_PER_10K),
            (Compartment::Protected, PROTECTED_PER_10K),
        ] {
            for p in take.by_ref().take(per_10k(n)) {
                self.people[p].compartment = Some(compartment);
            }
        }
        // Decoys live alone at addresses of their own, indistinguishable from anyone else.
        for _ in 0..per_10k(DECOYS_PER_10K) {
            let site = rng.gen_range(0..sites);
            let address = self.new_address(rng, site);
            let p = self.household(rng, people, address, None, 1);
            self.people[p].decoy = true;
        }
    }

    fn new_address(&mut self, rng: &mut ChaCha20Rng, site: usize) -> usize {
        let (_, town, area) = SITES[site];
        let street = STREETS[rng.gen_range(0..STREETS.len())];
        let letters = [b'A' + rng.gen_range(0..26u8), b'A' + rng.gen_range(0..26u8)];
        self.addresses.push(Address {
            lines: vec![format!("{} {street}", rng.gen_range(1..=220)), town.to_string()],
            postcode: format!(
                "{area}{} {}{}",
                rng.gen_range(1..=30),
                rng.gen_range(1..=9),
                String::from_utf8_lossy(&letters)
            ),
            site,
            residents: Vec::new(),
        });
        self.addresses.len() - 1
    }

    /// A household of `size` people at `address`, the first in compartment `first`; returns its first member.
    fn household(
        &mut self,
        rng: &mut ChaCha20Rng,
        people: &mut PersonGen,
        address: usize,
        first: Option<Compartment>,
        size: usize,
    ) -> usize {
        people.households += 1;
        let household = format!("h-{:06}", people.households);
        let family = people.surname(rng);
        let start = self.people.len();
        for m in 0..size {
            let family_name = if m > 0 && rng.gen_bool(0.15) { people.surname(rng) } else { family.clone() };
            let adult = m < 2;
            let year = if adult { rng.gen_range(1945..=2000) } else { rng.gen_range(2005..=2020) };
            let id = format!("s-{:06}", self.people.len() + 1);
            let address_ref = &self.addresses[address];
            self.people.push(Person {
                reference_number: format!("TX{:08}", people.reference(rng)),
                given_names: GIVEN_NAMES[rng.gen_range(0..GIVEN_NAMES.len())].to_string(),
                family_name,
                date_of_birth: format!("{year}-{:02}-{:02}", rng.gen_range(1..=12), rng.gen_range(1..=28)),
                postcode: address_ref.postcode.clone(),
                address_lines: address_ref.lines.clone(),
                household: household.clone(),
                address,
                compartment: if m == 0 { first } else { None },
                decoy: false,
                id,
            });
            self.addresses[address].residents.push(self.people.len() - 1);
        }
        start
    }

    /// Subject ids in no particular order, as a register's are: household
    /// members and neighbours do not get consecutive ids.
    fn shuffle_ids(&mut self, rng: &mut ChaCha20Rng) {
        let mut numbers: Vec<usize> = (1..=self.people.len()).collect();
        numbers.shuffle(rng);
        for (person, n) in self.people.iter_mut().zip(numbers) {
            person.id = format!("s-{n:06}");
        }
    }

    /// Whether a person is ordinary casework material: no compartment, no decoy.
    pub fn ordinary(&self, p: usize) -> bool {
        self.people[p].compartment.is_none() && !self.people[p].decoy
    }

    /// The initial backlog and the cases opened (and closed) over the days.
    fn open_cases(&mut self, rng: &mut ChaCha20Rng) {
        for s in 0..self.staff.len() {
            // Work about someone at one's own address goes to a colleague.
            let home = self.people[self.staff[s].person].address;
            let ordinary: Vec<usize> =
                (0..self.people.len()).filter(|&p| self.ordinary(p) && self.people[p].address != home).collect();
            let (role, kind) = (self.staff[s].role, self.teams[self.staff[s].team].kind);
            match (role, kind) {
                (StaffRole::Admin, _) => {}
                (StaffRole::Investigator, _) => {
                    for _ in 0..rng.gen_range(3..=5) {
                        let subjects = (0..rng.gen_range(2..=6)).map(|_| *pick(rng, &ordinary)).collect();
                        self.add_case(s, subjects, CasePurpose::FraudInvestigation, 0, None);
                    }
                }
                (_, TeamKind::Service | TeamKind::NightService) => {
                    for day in 0..self.params.days {
                        for _ in 0..rng.gen_range(CALLS_PER_DAY) {
                            let caller = *pick(rng, &ordinary);
                            self.add_case(s, vec![caller], CasePurpose::TaxpayerService, day, Some(day + 1));
                        }
                    }
                }
                _ => {
                    for _ in 0..rng.gen_range(INITIAL_CASES) {
                        let subjects = self.household_of(*pick(rng, &ordinary), rng);
                        let closed = rng.gen_bool(0.2).then(|| rng.gen_range(1..=self.params.days.max(1)));
                        self.add_case(s, subjects, CasePurpose::Casework, 0, closed);
                    }
                    for day in 1..self.params.days {
                        // A busy day: a colleague's backlog moves over, all of it worked that day.
                        let busy = if rng.gen_bool(BUSY_DAY_CHANCE) { BUSY_DAY_CASES } else { 0 };
                        for _ in 0..rng.gen_range(NEW_CASES_PER_DAY) + busy {
                            let subjects = self.household_of(*pick(rng, &ordinary), rng);
                            self.add_case(s, subjects, CasePurpose::Casework, day, None);
                        }
                    }
                }
            }
        }
    }

    /// A case's subjects: a person and, sometimes, the rest of their household.
    fn household_of(&self, p: usize, rng: &mut ChaCha20Rng) -> Vec<usize> {
        if !rng.gen_bool(0.4) {
            return vec![p];
        }
        let household = &self.people[p].household;
        self.addresses[self.people[p].address]
            .residents
            .iter()
            .copied()
            .filter(|&q| &self.people[q].household == household && self.ordinary(q))
            .collect()
    }

    /// Adds a case assigned to staff member `s` and their team; returns its index.
    pub fn add_case(
        &mut self,
        s: usize,
        subjects: Vec<usize>,
        purpose: CasePurpose,
        opened_day: u32,
        closed_day: Option<u32>,
    ) -> usize {
        let mut subjects = subjects;
        subjects.sort_unstable();
        subjects.dedup();
        self.cases.push(Case {
            id: format!("c-{:06}", self.cases.len() + 1),
            subjects,
            staff: s,
            team: self.staff[s].team,
            purpose,
            opened_day,
            closed_day,
        });
        self.cases.len() - 1
    }

    /// Staff members with this role and team kind.
    pub fn staff_where(&self, role: StaffRole, kind: TeamKind) -> Vec<usize> {
        (0..self.staff.len())
            .filter(|&s| self.staff[s].role == role && self.teams[self.staff[s].team].kind == kind)
            .collect()
    }
}

/// One to four people, mostly two or three.
fn household_size(rng: &mut ChaCha20Rng) -> usize {
    *[1, 1, 2, 2, 2, 3, 3, 4].choose(rng).unwrap_or(&1)
}

fn pick<'a, T>(rng: &mut ChaCha20Rng, items: &'a [T]) -> &'a T {
    &items[rng.gen_range(0..items.len())]
}

/// Counters and the surname distribution, shared by every generated person.
struct PersonGen {
    surnames: WeightedIndex<f64>,
    households: usize,
    references: std::collections::HashSet<u32>,
}

impl PersonGen {
    fn new() -> Self {
        // The weights are positive and finite: the index always builds.
        let surnames = WeightedIndex::new(zipf_weights(SURNAMES.len())).unwrap_or_else(|_| unreachable!());
        Self { surnames, households: 0, references: Default::default() }
    }

    fn surname(&self, rng: &mut ChaCha20Rng) -> String {
        SURNAMES[self.surnames.sample(rng)].to_string()
    }

    /// A reference number no one else has.
    fn reference(&mut self, rng: &mut ChaCha20Rng) -> u32 {
        loop {
            let n = rng.gen_range(10_000_000..100_000_000);
            if self.references.insert(n) {
                return n;
            }
        }
    }
}
