//! The `sentinel` section: where the ledger and policy are and how sentinel
//! authenticates to them, which keys the ledger must be signed by, and every
//! detection's thresholds and severity. Every setting has a default; unknown
//! keys are refused so that a typo never silently disables a detection, and
//! [`SentinelConfig::validate`] names the key it refuses. (The verifier keys'
//! syntax is checked by the sentinel service itself, which parses them.)
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How urgent an alert is; the numbers are those of `quis.sentinel.v1.Severity`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low = 1,
    Medium = 2,
    High = 3,
    Critical = 4,
}

impl Severity {
    /// The `quis.sentinel.v1.Severity` value.
    pub fn to_proto(self) -> i32 {
        self as i32
    }

    /// From a stored or requested value; `None` for unspecified or unknown.
    pub fn from_proto(v: i32) -> Option<Self> {
        [Severity::Low, Severity::Medium, Severity::High, Severity::Critical].into_iter().find(|s| *s as i32 == v)
    }
}

/// A setting that breaks a rule, named by its key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("configuration: `sentinel.{key}` {rule}")]
pub struct SentinelConfigError {
    pub key: String,
    pub rule: String,
}

fn invalid(key: &str, rule: &str) -> Result<(), SentinelConfigError> {
    Err(SentinelConfigError { key: key.to_string(), rule: rule.to_string() })
}

/// See the module documentation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SentinelConfig {
    /// The ledger's gRPC URL; unset means `http://<services.ledger.listen>` (`https://` when `tls.enabled`).
    pub ledger_url: Option<String>,
    /// Policy's gRPC URL, for the entities; unset means `http://<services.policy.listen>`.
    pub policy_url: Option<String>,
    /// A file holding this service's bearer token (for the ledger and policy), re-read when it
    /// changes; unset means a token minted in-process with the development signing key (`quis init`).
    pub token_file: Option<PathBuf>,
    /// The service principal (`sub`) of minted tokens; the ledger's `appenders` must list it for
    /// `triage` and its `reader_services` must list it.
    pub service_principal: String,
    /// The log's c2sp.org/tlog-tiles base URL (`/tile/…`): sampled entries are proved from its hash
    /// tiles, as any outside auditor would; unset means from the ledger's gRPC inclusion proofs.
    pub tiles_url: Option<String>,
    /// The vault's store (read only), to check its per-subject access index against the ledger;
    /// unset: not checked.
    pub vault_store_url: Option<String>,
    /// A sampled access is looked for in the vault's index once it is this old (the vault indexes
    /// after the ledger answered).
    pub access_index_grace_ms: u64,
    /// The ledger's verifier keys (`<origin>+<key id>+<base64>`); at least one must have signed each checkpoint.
    pub log_vkeys: Vec<String>,
    /// The witnesses' cosigner keys (type 0x04) sentinel trusts.
    pub witness_vkeys: Vec<String>,
    /// How many of those witnesses must have cosigned each checkpoint.
    pub witness_quorum: usize,
    /// How often the integrity monitor fetches the latest checkpoint.
    pub integrity_interval_ms: u64,
    /// One tailed entry in this many is checked against an inclusion proof (1 checks every entry).
    pub sample_every: u64,
    /// Stored entries re-read per second (in tiles of 256) and checked against the signed tree, so
    /// that a row rewritten or deleted after it was tailed is caught; 0 disables. Half of each
    /// round goes to the most recent `recheck_recent_entries`, half to a sweep over the whole log.
    pub recheck_entries_per_sec: u64,
    /// The newest entries the re-check returns to most often.
    pub recheck_recent_entries: u64,
    /// The tail standing still this long behind the verified tree raises a `ledger-integrity`
    /// alert (the ledger cannot serve an entry: deleted or corrupt rows).
    pub stall_alert_ms: u64,
    /// Most entries processed and committed in one transaction. Only entries that have already
    /// arrived join a batch, so a larger one adds no delay; it matters when sentinel is behind:
    /// on SQLite a commit took 36 ms for 500 entries and 57 ms for 5,000 (benches/pipeline.rs).
    pub batch_max: usize,
    /// First wait before reconnecting a broken tail; doubles up to `reconnect_max_ms`.
    pub reconnect_min_ms: u64,
    /// Longest wait before reconnecting.
    pub reconnect_max_ms: u64,
    /// Alerts on one actor less than this apart join the same incident.
    pub incident_window_secs: u64,
    /// A detection firing again on an actor less than this after the last firing of its
    /// still open (untriaged) alert joins that alert instead of raising another; 0 raises an
    /// alert for every firing. Three days, so that a weekend does not split an episode.
    pub alert_window_secs: u64,
    /// The detections.
    pub detections: DetectionsConfig,
}

impl Default for SentinelConfig {
    fn default() -> Self {
        Self {
            ledger_url: None,
            policy_url: None,
            token_file: None,
            service_principal: "sentinel".into(),
            tiles_url: None,
            vault_store_url: None,
            access_index_grace_ms: 5_000,
            log_vkeys: Vec::new(),
            witness_vkeys: Vec::new(),
            witness_quorum: 0,
            integrity_interval_ms: 1000,
            sample_every: 16,
            recheck_entries_per_sec: 8192,
            recheck_recent_entries: 16_384,
            stall_alert_ms: 30_000,
            batch_max: 5000,
            reconnect_min_ms: 100,
            reconnect_max_ms: 10_000,
            incident_window_secs: 24 * 3600,
            alert_window_secs: 72 * 3600,
            detections: DetectionsConfig::default(),
        }
    }
}

/// Every detection: those on the events alone, and those on policy's entities.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectionsConfig {
    pub unexplained_access: UnexplainedAccessConfig,
    pub restricted_compartment: RestrictedCompartmentConfig,
    pub relationship: RelationshipConfig,
    pub honeytoken: HoneytokenConfig,
    pub enumeration: EnumerationConfig,
    pub volume: VolumeConfig,
    pub off_hours: OffHoursConfig,
    pub bulk_export: BulkExportConfig,
    pub bulk_collection: BulkCollectionConfig,
    pub credential_misuse: CredentialMisuseConfig,
    pub break_glass_abuse: BreakGlassAbuseConfig,
    pub ledger_integrity: LedgerIntegrityConfig,
    /// Most actors whose behaviour is tracked; the least recently active is forgotten first.
    pub max_actors: usize,
}

impl Default for DetectionsConfig {
    fn default() -> Self {
        Self {
            unexplained_access: Default::default(),
            restricted_compartment: Default::default(),
            relationship: Default::default(),
            honeytoken: Default::default(),
            enumeration: Default::default(),
            volume: Default::default(),
            off_hours: Default::default(),
            bulk_export: Default::default(),
            bulk_collection: Default::default(),
            credential_misuse: Default::default(),
            break_glass_abuse: Default::default(),
            ledger_integrity: Default::default(),
            max_actors: 100_000,
        }
    }
}

/// `unexplained-access`: allowed accesses that no open case, assignment, team,
/// grant or declared purpose explains.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UnexplainedAccessConfig {
    pub enabled: bool,
    pub severity: Severity,
    /// Unexplained accesses by one actor within `window_secs` that raise the alert.
    pub accesses: usize,
    pub window_secs: u64,
    /// Purposes that explain an access without a case (lower-case names, e.g. `taxpayer_service`).
    pub explaining_purposes: Vec<String>,
}

impl Default for UnexplainedAccessConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            severity: Severity::Medium,
            accesses: 2,
            window_secs: 8 * 3600,
            explaining_purposes: vec!["taxpayer_service".into(), "audit".into()],
        }
    }
}

/// The purpose names `explaining_purposes` accepts.
pub const PURPOSE_NAMES: &[&str] =
    &["casework", "taxpayer_service", "compliance", "fraud_investigation", "legal", "audit", "emergency"];

/// `restricted-compartment`: an access or attempt on a subject in a restricted compartment by
/// an actor without clearance for it, outside a break-glass grant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RestrictedCompartmentConfig {
    pub enabled: bool,
    pub severity: Severity,
}

impl Default for RestrictedCompartmentConfig {
    fn default() -> Self {
        Self { enabled: true, severity: Severity::High }
    }
}

/// `relationship`: actor and subject share an address or household key (always), or a surname key
/// (only where nothing explains the access: common surnames on assigned cases are work); a colleague's
/// record (the `own-staff` compartment) read without explanation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelationshipConfig {
    pub enabled: bool,
    pub severity: Severity,
    /// Subjects remembered per actor so that one relationship raises one alert.
    pub max_remembered: usize,
}

impl Default for RelationshipConfig {
    fn default() -> Self {
        Self { enabled: true, severity: Severity::High, max_remembered: 64 }
    }
}

/// `honeytoken`: any touch of a decoy subject.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HoneytokenConfig {
    pub enabled: bool,
    pub severity: Severity,
}

impl Default for HoneytokenConfig {
    fn default() -> Self {
        Self { enabled: true, severity: Severity::Critical }
    }
}

/// The distinct subjects id walking remembers per actor (the most recent), and so the longest walk it
/// can see.
pub const MAX_ID_WALK: usize = 64;

/// `enumeration`: many denials by one actor in a short window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnumerationConfig {
    pub enabled: bool,
    pub severity: Severity,
    /// Denied attempts within `window_secs` that raise the alert.
    pub denials: usize,
    pub window_secs: u64,
    /// Subjects with consecutive ids (id walking), in any order among the last [`MAX_ID_WALK`] distinct
    /// subjects an actor opened, that raise the alert; 0 disables.
    pub id_walk: usize,
    /// Wide searches (a wildcard, a term under three characters, or a result cut at the limit)
    /// within `window_secs` that raise the alert; 0 disables.
    pub wide_searches: usize,
}

impl Default for EnumerationConfig {
    fn default() -> Self {
        Self { enabled: true, severity: Severity::High, denials: 10, window_secs: 600, id_walk: 5, wide_searches: 3 }
    }
}

/// `volume`: distinct subjects per day far above the actor's own baseline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VolumeConfig {
    pub enabled: bool,
    pub severity: Severity,
    /// Days of history kept for the baseline (the mean of the active days among them).
    pub baseline_days: usize,
    /// Active days needed before the baseline is trusted.
    pub min_baseline_days: usize,
    /// The alert fires above this multiple of the baseline...
    pub factor: f64,
    /// ...and above this many distinct subjects in the day, whatever the baseline.
    pub min_subjects: usize,
    /// The alert also fires above this multiple of the team's daily mean per member (0 disables)...
    pub team_factor: f64,
    /// ...once the team's mean rests on this many member-days.
    pub team_min_member_days: usize,
    /// Whether subjects of accesses an assignment explains count (busy days on assigned work are work).
    pub count_explained: bool,
    /// Most distinct subjects counted per actor and day (memory and saved state stay bounded).
    pub max_day_subjects: usize,
}

impl Default for VolumeConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            severity: Severity::High,
            baseline_days: 20,
            min_baseline_days: 3,
            factor: 3.0,
            min_subjects: 30,
            team_factor: 4.0,
            team_min_member_days: 10,
            count_explained: false,
            max_day_subjects: 5_000,
        }
    }
}

/// `off-hours`: activity in an hour in which the actor is rarely active.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OffHoursConfig {
    pub enabled: bool,
    pub severity: Severity,
    /// Events seen from the actor before its usual hours are trusted.
    pub min_history: u64,
    /// An hour (with its neighbours) holding less than this share of the actor's history is unusual.
    pub max_share: f64,
    /// The organization's offset from UTC, in minutes, for hours of the day.
    pub utc_offset_minutes: i32,
}

impl Default for OffHoursConfig {
    fn default() -> Self {
        Self { enabled: true, severity: Severity::Medium, min_history: 200, max_share: 0.01, utc_offset_minutes: 0 }
    }
}

/// `bulk-export`: an export or search returning far more than the actor's norm.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BulkExportConfig {
    pub enabled: bool,
    pub severity: Severity,
    /// Results in one export or search that always raise the alert.
    pub max_results: u32,
    /// Results above this multiple of the actor's mean also raise it...
    pub factor: f64,
    /// ...once the mean rests on this many exports and searches,
    pub min_history: u64,
    /// ...and the result count is at least this.
    pub min_results: u32,
}

impl Default for BulkExportConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            severity: Severity::High,
            max_results: 500,
            factor: 10.0,
            min_history: 20,
            min_results: 50,
        }
    }
}

/// `bulk-collection`: records gathered in a day beyond one's own cases (subjects read on cases not
/// assigned to oneself, and records asked for in exports, allowed or not), far above the actor's
/// own daily norm and their team's. Reads on one's own cases never count: busy days are work.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BulkCollectionConfig {
    pub enabled: bool,
    pub severity: Severity,
    /// Days of history kept for the actor's baseline (the mean of their active days among them)
    /// and, per team, for the team's mean per member-day.
    pub baseline_days: usize,
    /// Active days needed before the actor's own baseline is trusted.
    pub min_baseline_days: usize,
    /// The alert fires at or above this many records in a day...
    pub min_records: usize,
    /// ...when above this multiple of the actor's own daily mean (once trusted)...
    pub factor: f64,
    /// ...and above this multiple of the team's mean per member-day (once it rests on
    /// `team_min_member_days`; 0 disables the team comparison).
    pub team_factor: f64,
    pub team_min_member_days: usize,
    /// Most distinct subjects counted per actor and day (memory and saved state stay bounded).
    pub max_day_subjects: usize,
}

impl Default for BulkCollectionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            severity: Severity::High,
            baseline_days: 20,
            min_baseline_days: 2,
            min_records: 40,
            factor: 4.0,
            team_factor: 4.0,
            team_min_member_days: 10,
            max_day_subjects: 5_000,
        }
    }
}

/// `credential-misuse`: one principal from many hosts in a short window, or from a new host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CredentialMisuseConfig {
    pub enabled: bool,
    pub severity: Severity,
    /// Distinct source addresses or devices within `window_secs` that raise the alert.
    pub hosts: usize,
    pub window_secs: u64,
    /// Raise a (lower) alert on a host never seen for an actor with an established history.
    pub new_host: bool,
    pub new_host_severity: Severity,
    /// Events needed before an actor's known hosts are trusted.
    pub min_history: u64,
    /// Most hosts remembered per actor.
    pub max_known_hosts: usize,
    /// Any action by a suspended or terminated account raises an alert of this severity.
    pub status_severity: Severity,
    /// An account silent for this many days that acts again raises an alert (0 disables)...
    pub dormant_days: u64,
    /// ...of this severity.
    pub dormant_severity: Severity,
    /// Sites with coordinates, for impossible travel: `[detections.credential_misuse.sites.<site>]`.
    pub sites: std::collections::BTreeMap<String, Site>,
    /// Moving between two sites faster than this is impossible travel.
    pub max_speed_kmh: f64,
    /// Service principals' accesses from a device, or from an address outside these prefixes
    /// (e.g. `10.1.`; empty: any address) are interactive use of service credentials.
    pub service_address_prefixes: Vec<String>,
}

/// A site's position, in degrees.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    pub lat: f64,
    pub lon: f64,
}

impl Default for CredentialMisuseConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            severity: Severity::High,
            hosts: 3,
            window_secs: 900,
            new_host: true,
            new_host_severity: Severity::Low,
            min_history: 50,
            max_known_hosts: 16,
            status_severity: Severity::Critical,
            dormant_days: 30,
            dormant_severity: Severity::Medium,
            sites: Default::default(),
            max_speed_kmh: 900.0,
            service_address_prefixes: Vec::new(),
        }
    }
}

/// `break-glass-abuse`: repeated break-glass, or break-glass without justification.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakGlassAbuseConfig {
    pub enabled: bool,
    pub severity: Severity,
    /// Break-glass starts within `window_secs` that raise the alert.
    pub uses: usize,
    pub window_secs: u64,
}

impl Default for BreakGlassAbuseConfig {
    fn default() -> Self {
        Self { enabled: true, severity: Severity::High, uses: 3, window_secs: 7 * 24 * 3600 }
    }
}

/// `ledger-integrity`: always on; only its severity is configurable (critical by default).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerIntegrityConfig {
    pub severity: Severity,
}

impl Default for LedgerIntegrityConfig {
    fn default() -> Self {
        Self { severity: Severity::Critical }
    }
}

impl SentinelConfig {
    /// Refuses a configuration that cannot work, naming the key (relative to the section).
    pub fn validate(&self) -> Result<(), SentinelConfigError> {
        if self.service_principal.is_empty() {
            return invalid("service_principal", "must be set");
        }
        if self.witness_quorum > self.witness_vkeys.len() {
            return invalid("witness_quorum", "must not exceed the number of witness_vkeys");
        }
        if self.integrity_interval_ms < 10 {
            return invalid("integrity_interval_ms", "must be at least 10");
        }
        if self.sample_every == 0 {
            return invalid("sample_every", "must be at least 1");
        }
        if self.recheck_entries_per_sec > 1_000_000 {
            return invalid("recheck_entries_per_sec", "must be 0 (off) to 1000000");
        }
        if self.stall_alert_ms < 100 {
            return invalid("stall_alert_ms", "must be at least 100");
        }
        if self.batch_max == 0 || self.batch_max > 10_000 {
            return invalid("batch_max", "must be 1 to 10000");
        }
        if self.reconnect_min_ms == 0 || self.reconnect_max_ms < self.reconnect_min_ms {
            return invalid("reconnect_min_ms", "must be at least 1 and at most reconnect_max_ms");
        }
        if self.incident_window_secs == 0 {
            return invalid("incident_window_secs", "must be at least 1");
        }
        let d = &self.detections;
        if d.max_actors == 0 {
            return invalid("detections.max_actors", "must be at least 1");
        }
        let u = &d.unexplained_access;
        if u.accesses == 0 || u.window_secs == 0 {
            return invalid(
                "detections.unexplained_access.accesses",
                "must be at least 1, over a window_secs of at least 1",
            );
        }
        for (i, p) in u.explaining_purposes.iter().enumerate() {
            if !PURPOSE_NAMES.contains(&p.as_str()) {
                return invalid(
                    &format!("detections.unexplained_access.explaining_purposes[{i}]"),
                    &format!("must be one of {}", PURPOSE_NAMES.join(", ")),
                );
            }
        }
        if d.relationship.max_remembered == 0 {
            return invalid("detections.relationship.max_remembered", "must be at least 1");
        }
        if d.enumeration.id_walk == 1 || d.enumeration.id_walk > MAX_ID_WALK {
            return invalid(
                "detections.enumeration.id_walk",
                &format!("must be 0 (off) or between 2 and {MAX_ID_WALK}"),
            );
        }
        if !(d.volume.team_factor == 0.0 || (d.volume.team_factor.is_finite() && d.volume.team_factor >= 1.0)) {
            return invalid("detections.volume.team_factor", "must be 0 (off) or a number of at least 1");
        }
        if d.volume.max_day_subjects < d.volume.min_subjects.max(1) {
            return invalid("detections.volume.max_day_subjects", "must be at least min_subjects (and 1)");
        }
        let c = &d.credential_misuse;
        for (name, site) in &c.sites {
            if !(site.lat.is_finite() && (-90.0..=90.0).contains(&site.lat)) {
                return invalid(&format!("detections.credential_misuse.sites.{name}.lat"), "must be -90 to 90");
            }
            if !(site.lon.is_finite() && (-180.0..=180.0).contains(&site.lon)) {
                return invalid(&format!("detections.credential_misuse.sites.{name}.lon"), "must be -180 to 180");
            }
        }
        if !(c.max_speed_kmh.is_finite() && c.max_speed_kmh > 0.0) {
            return invalid("detections.credential_misuse.max_speed_kmh", "must be a positive number");
        }
        if d.enumeration.denials < 2 || d.enumeration.window_secs == 0 {
            return invalid("detections.enumeration.denials", "must be at least 2, over a window_secs of at least 1");
        }
        if d.volume.baseline_days == 0 || d.volume.min_baseline_days > d.volume.baseline_days {
            return invalid("detections.volume.min_baseline_days", "must not exceed baseline_days (at least 1)");
        }
        if !(d.volume.factor.is_finite() && d.volume.factor >= 1.0) {
            return invalid("detections.volume.factor", "must be a number of at least 1");
        }
        if !(d.off_hours.max_share.is_finite() && (0.0..1.0).contains(&d.off_hours.max_share)) {
            return invalid("detections.off_hours.max_share", "must be at least 0 and below 1");
        }
        if d.off_hours.utc_offset_minutes.abs() > 14 * 60 {
            return invalid("detections.off_hours.utc_offset_minutes", "must be within -840 to 840");
        }
        if !(d.bulk_export.factor.is_finite() && d.bulk_export.factor >= 1.0) {
            return invalid("detections.bulk_export.factor", "must be a number of at least 1");
        }
        let b = &d.bulk_collection;
        if b.baseline_days == 0 || b.min_baseline_days > b.baseline_days {
            return invalid(
                "detections.bulk_collection.min_baseline_days",
                "must not exceed baseline_days (at least 1)",
            );
        }
        if b.min_records == 0 {
            return invalid("detections.bulk_collection.min_records", "must be at least 1");
        }
        if !(b.factor.is_finite() && b.factor >= 1.0) {
            return invalid("detections.bulk_collection.factor", "must be a number of at least 1");
        }
        if !(b.team_factor == 0.0 || (b.team_factor.is_finite() && b.team_factor >= 1.0)) {
            return invalid("detections.bulk_collection.team_factor", "must be 0 (off) or a number of at least 1");
        }
        if b.max_day_subjects < b.min_records {
            return invalid("detections.bulk_collection.max_day_subjects", "must be at least min_records");
        }
        if d.credential_misuse.hosts < 2 || d.credential_misuse.window_secs == 0 {
            return invalid(
                "detections.credential_misuse.hosts",
                "must be at least 2, over a window_secs of at least 1",
            );
        }
        if d.credential_misuse.max_known_hosts == 0 {
            return invalid("detections.credential_misuse.max_known_hosts", "must be at least 1");
        }
        if d.break_glass_abuse.uses < 2 || d.break_glass_abuse.window_secs == 0 {
            return invalid(
                "detections.break_glass_abuse.uses",
                "must be at least 2, over a window_secs of at least 1",
            );
        }
        Ok(())
    }
}
