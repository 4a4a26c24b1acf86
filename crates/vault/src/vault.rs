//! The library API the vault service calls: ingest, minimized reads, blind
//! search with the too-broad rules, and key rotation. Nothing here asks policy
//! or writes to the ledger: the service does both before it calls a read.
use std::{
    path::Path,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use arc_swap::ArcSwap;
use prost::Message;
use quis_core::{FieldViolation, db::Db};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{
    blind::{self, BlindIndexer, Relationship, Term, Token},
    envelope::{self, Binding},
    error::VaultError,
    keyring::{KeyConfig, Keyring, KeyringError, load_org_secret},
    model::{AllowedFields, Field, FieldValue, RecordBody, Sensitivity, SubjectProfile},
    names::{self, ID_RULE, RecordName},
    normalize,
    query::{RawQuery, SearchQuery},
    store::{RecordWrite, Store, StoredHead, SubjectWrite, WriteError},
};

/// The vault's settings.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct VaultConfig {
    pub keys: KeyConfig,
    /// Searches return at most this many subjects; more are cut and reported as truncated.
    pub max_search_results: usize,
    /// Largest encoded record body, in bytes.
    pub max_record_bytes: usize,
}

impl Default for VaultConfig {
    fn default() -> Self {
        Self { keys: KeyConfig::default(), max_search_results: 50, max_record_bytes: 1 << 20 }
    }
}

/// Most fields in a record.
pub const MAX_FIELDS: usize = 256;
/// Largest text or bytes value, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Most address lines.
pub const MAX_ADDRESS_LINES: usize = 8;

/// A subject's identifying data as ingested.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubjectInput {
    pub given_names: String,
    pub family_name: String,
    /// `YYYY-MM-DD`, or empty.
    pub date_of_birth: String,
    pub postcode: String,
    pub reference_number: String,
    pub address_lines: Vec<String>,
    pub household: String,
    /// A restricted compartment id, or empty.
    pub compartment: String,
    pub protected: bool,
    pub decoy: bool,
}

/// A subject as answered: never says whether it is a decoy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubjectView {
    pub name: String,
    pub given_names: String,
    pub family_name: String,
    pub date_of_birth: String,
    pub postcode: String,
    pub reference_number: String,
    pub address_lines: Vec<String>,
    pub household: String,
    pub compartment: String,
    pub protected: bool,
    pub version: i64,
    pub create_time_us: i64,
    pub update_time_us: i64,
}

/// What ingest hands to policy (over the service's authenticated channel,
/// never to the caller): the flags decisions need and the relationship keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyPush {
    pub subject: String,
    pub compartment: String,
    pub protected: bool,
    pub decoy: bool,
    pub relationship_keys: Vec<(Relationship, Token)>,
}

/// The outcome of an ingest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestedSubject {
    pub subject: SubjectView,
    pub policy: PolicyPush,
}

/// A record as answered, with only the allowed fields.
#[derive(Clone, PartialEq)]
pub struct RecordView {
    pub name: String,
    pub kind: String,
    pub version: i64,
    pub fields: Vec<Field>,
    pub create_time_us: i64,
    pub update_time_us: i64,
}

impl std::fmt::Debug for RecordView {
    // Field values are personal data: never in a log line or a panic message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordView")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("version", &self.version)
            .field("fields", &self.fields.iter().map(|x| x.name.as_str()).collect::<Vec<_>>())
            .finish()
    }
}

/// The candidates of a search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchOutcome {
    /// `subjects/{subject}`, by id.
    pub subjects: Vec<String>,
    /// Whether more subjects matched than the limit: the list was cut.
    pub truncated: bool,
    /// The normalized terms searched, for the access event's commitments.
    pub terms: Vec<(Term, String)>,
}

/// Progress of a key rotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotationProgress {
    pub active_kek: String,
    pub rewrapped: u64,
    pub remaining: u64,
}

/// One KEK's use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyUsage {
    pub kek_id: String,
    pub active: bool,
    /// Whether the key is loaded (a key in use but not loaded makes records unreadable).
    pub loaded: bool,
    pub wrapped_data_keys: i64,
}

/// See the module documentation.
pub struct Vault {
    store: Store,
    keyring: ArcSwap<Keyring>,
    indexer: BlindIndexer,
    config: VaultConfig,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").field("keyring", &self.keyring.load()).finish_non_exhaustive()
    }
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

impl Vault {
    /// Opens the vault on `db`, with its keys from `data_dir`.
    pub async fn open(db: Db, data_dir: &Path, config: VaultConfig) -> Result<Self, VaultError> {
        let store = Store::open(db).await?;
        let new_vault = store.key_usage().await?.is_empty() && store.kek_checks().await?.is_empty();
        let keyring = Keyring::load(data_dir, &config.keys, new_vault)?;
        let secret = load_org_secret(data_dir, &config.keys, &keyring)?;
        // Fail closed at start rather than on the first read of an old record.
        verify_keyring(&store, &keyring).await?;
        Ok(Self::new(store, keyring, BlindIndexer::new(secret), config))
    }

    /// A vault from its parts.
    pub fn new(store: Store, keyring: Keyring, indexer: BlindIndexer, config: VaultConfig) -> Self {
        Self { store, keyring: ArcSwap::from_pointee(keyring), indexer, config }
    }

    /// The store, for the access index.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Swaps in a new keyring (e.g. with a new active KEK) while serving. Refused
    /// if it lacks a KEK that still wraps a data key: that would make records unreadable.
    pub async fn replace_keyring(&self, keyring: Keyring) -> Result<(), VaultError> {
        verify_keyring(&self.store, &keyring).await.map_err(|e| match e {
            VaultError::Keys(k) => VaultError::invalid("keyring", k.to_string()),
            other => other,
        })?;
        self.keyring.store(Arc::new(keyring));
        Ok(())
    }

    /// Creates or replaces a subject's identifying data, reindexes it and
    /// returns what policy needs. `decoy` is sealed with the profile and never answered.
    pub async fn ingest_subject(&self, id: &str, input: &SubjectInput) -> Result<IngestedSubject, VaultError> {
        let indexed = validate_subject(id, input)?;
        let mut profile = SubjectProfile {
            given_names: input.given_names.trim().to_string(),
            family_name: input.family_name.trim().to_string(),
            date_of_birth: indexed.date_of_birth.clone().unwrap_or_default(),
            postcode: input.postcode.trim().to_string(),
            reference_number: input.reference_number.trim().to_string(),
            address_lines: input.address_lines.iter().map(|l| l.trim().to_string()).collect(),
            household: input.household.trim().to_string(),
            compartment: input.compartment.clone(),
            marks: 0,
        };
        let tokens = self.subject_tokens(&indexed);
        let relationship_keys = blind::relationship_keys(
            &self.indexer,
            &profile.family_name,
            &profile.address_lines,
            &profile.postcode,
            &profile.household,
        );
        let stored_keys: Vec<(&'static str, Token)> = relationship_keys.iter().map(|(k, t)| (k.as_str(), *t)).collect();
        let name = names::subject_name(id);
        // The decoy mark is set once, at creation: a replacement keeps it, so
        // that ingest can neither unmask a decoy nor learn whether one is.
        let (previous, decoy) = match self.load_profile(id).await? {
            Some((version, current)) => (version, current.decoy()),
            None => (0, input.decoy),
        };
        profile.set_marks(input.protected, decoy);
        let version = previous + 1;
        let plain = Zeroizing::new(profile.encode_to_vec());
        let sealed = envelope::seal(&self.keyring.load(), Binding { name: &name, version }, &plain)
            .map_err(|cause| VaultError::Sealed { name: name.clone(), cause })?;
        let now = now_us();
        let write = SubjectWrite {
            id,
            previous,
            sealed: &sealed,
            tokens: &tokens,
            relationship_keys: &stored_keys,
            now_us: now,
        };
        self.store.write_subject(&write).await.map_err(|e| write_error(e, &name, previous))?;
        let subject = self.get_subject(id).await?;
        let policy = PolicyPush {
            subject: name,
            compartment: profile.compartment.clone(),
            protected: input.protected,
            decoy,
            relationship_keys,
        };
        Ok(IngestedSubject { subject, policy })
    }

    fn subject_tokens(&self, indexed: &IndexedSubject) -> Vec<Token> {
        let mut tokens = self.indexer.name_tokens(Term::FamilyName, Term::FamilyNamePrefix, &indexed.family_name);
        tokens.extend(self.indexer.name_tokens(Term::GivenName, Term::GivenNamePrefix, &indexed.given_names));
        for (term, value) in [
            (Term::DateOfBirth, &indexed.date_of_birth),
            (Term::Postcode, &indexed.postcode),
            (Term::ReferenceNumber, &indexed.reference_number),
        ] {
            if let Some(value) = value {
                tokens.push(self.indexer.token(term, value));
            }
        }
        tokens.sort_unstable();
        tokens.dedup();
        tokens
    }

    /// A subject's identifying data (the service minimizes it per decision).
    pub async fn get_subject(&self, id: &str) -> Result<SubjectView, VaultError> {
        if !names::is_valid_id(id) {
            return Err(VaultError::invalid("name", ID_RULE));
        }
        let name = names::subject_name(id);
        let head = self.store.subject(id).await?.ok_or_else(|| VaultError::NotFound(name.clone()))?;
        let profile = self.open_profile(&name, &head)?;
        Ok(SubjectView {
            protected: profile.protected(),
            name,
            given_names: profile.given_names,
            family_name: profile.family_name,
            date_of_birth: profile.date_of_birth,
            postcode: profile.postcode,
            reference_number: profile.reference_number,
            address_lines: profile.address_lines,
            household: profile.household,
            compartment: profile.compartment,
            version: head.version,
            create_time_us: head.create_time_us,
            update_time_us: head.update_time_us,
        })
    }

    /// A subject's current profile version and profile, if it exists.
    async fn load_profile(&self, id: &str) -> Result<Option<(i64, SubjectProfile)>, VaultError> {
        let Some(head) = self.store.subject(id).await? else { return Ok(None) };
        let profile = self.open_profile(&names::subject_name(id), &head)?;
        Ok(Some((head.version, profile)))
    }

    fn open_profile(&self, name: &str, head: &StoredHead) -> Result<SubjectProfile, VaultError> {
        let integrity = |cause| VaultError::Sealed { name: name.to_string(), cause };
        let plain = envelope::open(&self.keyring.load(), Binding { name, version: head.version }, &head.sealed)
            .map_err(integrity)?;
        SubjectProfile::decode(plain.as_slice()).map_err(|_| integrity(envelope::EnvelopeError::Integrity))
    }

    /// Writes a new version of a record (creating it at version 1) under a
    /// fresh data key. With `expected_version`, refuses if another version is current.
    pub async fn upsert_record(
        &self,
        name: &str,
        kind: &str,
        fields: Vec<Field>,
        expected_version: Option<i64>,
    ) -> Result<RecordView, VaultError> {
        let parsed = RecordName::parse(name).ok_or_else(|| {
            VaultError::invalid("record.name", "must be subjects/{subject}/records/{record}, ids of [a-z0-9-]{1,64}")
        })?;
        let body = RecordBody { fields, kind: kind.to_string() };
        validate_record(kind, &body, self.config.max_record_bytes)?;
        let previous = self.store.record_version(name).await?;
        if let Some(expected) = expected_version
            && expected != previous
        {
            return Err(VaultError::VersionMismatch { name: name.to_string(), expected, found: previous });
        }
        let version = previous + 1;
        let plain = Zeroizing::new(body.encode_to_vec());
        let sealed = envelope::seal(&self.keyring.load(), Binding { name, version }, &plain)
            .map_err(|cause| VaultError::Sealed { name: name.to_string(), cause })?;
        let write =
            RecordWrite { name, subject_id: &parsed.subject, kind, previous, sealed: &sealed, now_us: now_us() };
        self.store.write_record(&write).await.map_err(|e| match e {
            WriteError::NoParent => VaultError::NotFound(parsed.parent()),
            other => write_error(other, name, previous),
        })?;
        self.get_record(name, &AllowedFields::up_to(Sensitivity::Restricted)).await
    }

    /// Reads a record's current version with only the `allowed` fields. The
    /// whole body is opened in memory (one data key per version) and the rest
    /// dropped and zeroized before anything is returned.
    pub async fn get_record(&self, name: &str, allowed: &AllowedFields) -> Result<RecordView, VaultError> {
        if RecordName::parse(name).is_none() {
            return Err(VaultError::invalid(
                "name",
                "must be subjects/{subject}/records/{record}, ids of [a-z0-9-]{1,64}",
            ));
        }
        let head = self.store.record(name).await?.ok_or_else(|| VaultError::NotFound(name.to_string()))?;
        self.open_record(name, head, allowed)
    }

    /// Decrypts a record version read earlier with `store().record(name)`: the
    /// caller decides on that exact version, whatever was written since.
    pub fn open_record(&self, name: &str, head: StoredHead, allowed: &AllowedFields) -> Result<RecordView, VaultError> {
        let plain = envelope::open(&self.keyring.load(), Binding { name, version: head.version }, &head.sealed)
            .map_err(|cause| VaultError::Sealed { name: name.to_string(), cause })?;
        let body = RecordBody::decode(plain.as_slice())
            .ok()
            .filter(|body| body.kind == head.kind)
            .ok_or_else(|| VaultError::Sealed { name: name.to_string(), cause: envelope::EnvelopeError::Integrity })?;
        Ok(RecordView {
            name: name.to_string(),
            kind: head.kind,
            version: head.version,
            fields: body.fields.into_iter().filter(|f| allowed.allows(f)).collect(),
            create_time_us: head.create_time_us,
            update_time_us: head.update_time_us,
        })
    }

    /// Finds the subjects matching every term of `raw`. Too-broad queries are
    /// refused (`QueryTooBroad`); more matches than the limit are cut and
    /// reported as `truncated`.
    pub async fn search(&self, raw: &RawQuery) -> Result<SearchOutcome, VaultError> {
        let query = SearchQuery::parse(raw)?;
        let mut tokens: Vec<Token> = query.terms.iter().map(|(term, value)| self.indexer.token(*term, value)).collect();
        tokens.sort_unstable();
        tokens.dedup();
        let limit = self.config.max_search_results;
        let mut ids = self.store.search(&tokens, limit.saturating_add(1)).await?;
        let truncated = ids.len() > limit;
        ids.truncate(limit);
        Ok(SearchOutcome {
            subjects: ids.iter().map(|id| names::subject_name(id)).collect(),
            truncated,
            terms: query.terms,
        })
    }

    /// Re-wraps up to `batch` data keys that are not under the active KEK.
    /// Readers are never blocked: each row changes atomically from one valid
    /// (wrapped key, KEK id) pair to another.
    pub async fn rotate_keys(&self, batch: usize) -> Result<RotationProgress, VaultError> {
        let keyring = self.keyring.load_full();
        let active = keyring.active().0.to_string();
        let rows = self.store.wrapped_elsewhere(&active, batch).await?;
        let mut updates = Vec::with_capacity(rows.len());
        for row in rows {
            let at = Binding { name: &row.name, version: row.version };
            let (wrapped, kek_id) = envelope::rewrap(&keyring, at, &row.kek_id, &row.wrapped_key)
                .map_err(|cause| VaultError::Sealed { name: row.name.clone(), cause })?;
            updates.push((row, wrapped, kek_id));
        }
        let rewrapped = self.store.replace_wrapped(&updates).await?;
        let remaining = self
            .store
            .key_usage()
            .await?
            .into_iter()
            .filter(|(id, _)| *id != active)
            .map(|(_, n)| u64::try_from(n).unwrap_or(0))
            .sum();
        Ok(RotationProgress { active_kek: active, rewrapped, remaining })
    }

    /// Every KEK loaded or in use, with how many data keys it wraps.
    pub async fn key_usage(&self) -> Result<Vec<KeyUsage>, VaultError> {
        let keyring = self.keyring.load();
        let active = keyring.active().0;
        let used = self.store.key_usage().await?;
        let mut ids: Vec<String> = keyring.ids().map(str::to_string).chain(used.iter().map(|u| u.0.clone())).collect();
        ids.sort();
        ids.dedup();
        Ok(ids
            .into_iter()
            .map(|id| KeyUsage {
                active: id == active,
                loaded: keyring.get(&id).is_some(),
                wrapped_data_keys: used.iter().find(|u| u.0 == id).map_or(0, |u| u.1),
                kek_id: id,
            })
            .collect())
    }

    /// A subject's relationship keys, by kind, as stored at ingest.
    pub async fn relationship_keys(&self, id: &str) -> Result<Vec<(String, Vec<u8>)>, VaultError> {
        Ok(self.store.relationship_keys(id).await?)
    }
}

/// Checks that `keyring` holds every KEK still in use, each the same key as
/// when first used, and records the check values of KEKs seen for the first time.
async fn verify_keyring(store: &Store, keyring: &Keyring) -> Result<(), VaultError> {
    for (kek_id, count) in store.key_usage().await? {
        if count > 0 && keyring.get(&kek_id).is_none() {
            return Err(KeyringError::InUseMissing { kek_id, count }.into());
        }
    }
    let known = store.kek_checks().await?;
    for id in keyring.ids() {
        let Some(check) = keyring.check_value(id) else { continue };
        match known.iter().find(|(k, _)| k == id) {
            Some((_, stored)) if stored.as_slice() != check.as_slice() => {
                return Err(KeyringError::WrongKey(id.to_string()).into());
            }
            Some(_) => {}
            None => store.add_kek_check(id, &check).await?,
        }
    }
    Ok(())
}

fn write_error(e: WriteError, name: &str, previous: i64) -> VaultError {
    match e {
        WriteError::Conflict { found } => {
            VaultError::VersionMismatch { name: name.to_string(), expected: previous, found }
        }
        WriteError::NoParent => VaultError::NotFound(name.to_string()),
        WriteError::Sql(e) => VaultError::Store(e),
    }
}

/// A subject's normalized, indexable values.
struct IndexedSubject {
    given_names: String,
    family_name: String,
    date_of_birth: Option<String>,
    postcode: Option<String>,
    reference_number: Option<String>,
}

fn validate_subject(id: &str, s: &SubjectInput) -> Result<IndexedSubject, VaultError> {
    let mut violations = Vec::new();
    let mut check = |field: &str, result: Result<String, normalize::NormalizeError>| match result {
        Ok(v) => Some(v),
        Err(e) => {
            violations.push(FieldViolation::new(format!("subject.{field}"), e.to_string()));
            None
        }
    };
    let given_names = check("given_names", normalize::name(&s.given_names));
    let family_name = check("family_name", normalize::name(&s.family_name));
    let optional = |raw: &str, f: fn(&str) -> Result<String, normalize::NormalizeError>| {
        if raw.trim().is_empty() { Ok(None) } else { f(raw).map(Some) }
    };
    let date_of_birth = optional(&s.date_of_birth, normalize::date_of_birth);
    let postcode = optional(&s.postcode, normalize::postcode);
    let reference_number = optional(&s.reference_number, normalize::reference_number);
    let household = optional(&s.household, normalize::reference_number);
    let mut optionals = Vec::new();
    for (field, result) in [
        ("date_of_birth", date_of_birth),
        ("postcode", postcode),
        ("reference_number", reference_number),
        ("household", household),
    ] {
        match result {
            Ok(v) => optionals.push(v),
            Err(e) => {
                violations.push(FieldViolation::new(format!("subject.{field}"), e.to_string()));
                optionals.push(None);
            }
        }
    }
    if !names::is_valid_id(id) {
        violations.push(FieldViolation::new("subject_id", ID_RULE));
    }
    if s.address_lines.len() > MAX_ADDRESS_LINES {
        violations.push(FieldViolation::new("subject.address_lines", format!("at most {MAX_ADDRESS_LINES} lines")));
    }
    for (i, line) in s.address_lines.iter().enumerate() {
        if line.chars().count() > normalize::MAX_NAME_CHARS {
            violations.push(FieldViolation::new(format!("subject.address_lines[{i}]"), "at most 200 characters"));
        }
    }
    if !s.address_lines.is_empty()
        && let Err(e) = normalize::address(&s.address_lines)
    {
        violations.push(FieldViolation::new("subject.address_lines", e.to_string()));
    }
    if !s.compartment.is_empty() && !names::is_valid_id(&s.compartment) {
        violations.push(FieldViolation::new("subject.compartment", "must be empty or 1 to 64 characters of [a-z0-9-]"));
    }
    match (given_names, family_name) {
        (Some(given_names), Some(family_name)) if violations.is_empty() => {
            let mut optionals = optionals.into_iter();
            Ok(IndexedSubject {
                given_names,
                family_name,
                date_of_birth: optionals.next().flatten(),
                postcode: optionals.next().flatten(),
                reference_number: optionals.next().flatten(),
            })
        }
        _ => Err(VaultError::InvalidArgument(violations)),
    }
}

fn validate_record(kind: &str, body: &RecordBody, max_bytes: usize) -> Result<(), VaultError> {
    let mut violations = Vec::new();
    if !names::is_valid_id(kind) {
        violations.push(FieldViolation::new("record.kind", ID_RULE));
    }
    if body.fields.is_empty() || body.fields.len() > MAX_FIELDS {
        violations.push(FieldViolation::new("record.fields", format!("must hold 1 to {MAX_FIELDS} fields")));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, field) in body.fields.iter().enumerate() {
        let path = |what: &str| format!("record.fields[{i}].{what}");
        if !is_field_name(&field.name) {
            violations
                .push(FieldViolation::new(path("name"), "must match [a-z][a-z0-9_]* and be at most 64 characters"));
        } else if !seen.insert(field.name.as_str()) {
            violations.push(FieldViolation::new(path("name"), "must be unique in the record"));
        }
        match Sensitivity::try_from(field.sensitivity) {
            Ok(Sensitivity::Unspecified) | Err(_) => {
                violations.push(FieldViolation::new(path("sensitivity"), "must be set to a known sensitivity"));
            }
            Ok(_) => {}
        }
        if let Some(rule) = value_rule(field.value.as_ref()) {
            violations.push(FieldViolation::new(path("value"), rule));
        }
    }
    if violations.is_empty() && body.encoded_len() > max_bytes {
        violations.push(FieldViolation::new("record.fields", format!("must encode to at most {max_bytes} bytes")));
    }
    if violations.is_empty() { Ok(()) } else { Err(VaultError::InvalidArgument(violations)) }
}

fn is_field_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 64
        && bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The rule a value breaks, if any.
fn value_rule(value: Option<&FieldValue>) -> Option<&'static str> {
    let Some(value) = value else { return Some("is required") };
    match value {
        FieldValue::String(s) if s.len() > MAX_VALUE_BYTES => Some("text must be at most 64 KiB"),
        FieldValue::Bytes(b) if b.len() > MAX_VALUE_BYTES => Some("bytes must be at most 64 KiB"),
        FieldValue::Decimal(d) if !is_decimal(d) => {
            Some("decimal must be digits with an optional sign and fraction, at most 64 characters")
        }
        FieldValue::Date(d) if !is_date(d) => Some("date must be a calendar date YYYY-MM-DD"),
        FieldValue::Timestamp(t) if !(0..1_000_000_000).contains(&t.nanos) => {
            Some("timestamp nanos must be 0 to 999999999")
        }
        _ => None,
    }
}

fn is_decimal(d: &str) -> bool {
    let digits = d.strip_prefix('-').unwrap_or(d);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, "0"));
    d.len() <= 64
        && !int.is_empty()
        && !frac.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
}

fn is_date(d: &str) -> bool {
    // Record dates may precede 1850 (birth dates are checked more strictly); the calendar check is shared.
    let shifted = d.get(..4).and_then(|y| y.parse::<u32>().ok()).map(|y| format!("{:04}{}", 2000 + y % 400, &d[4..]));
    d.len() == 10 && shifted.is_some_and(|s| normalize::date_of_birth(&s).is_ok())
}
