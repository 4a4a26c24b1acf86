//! The only way the service reaches decrypted data. Every read that answers a
//! caller takes the [`Recorded`] proof that the ledger holds the access, and
//! returns only the fields the decision allows. Ingest writes, and reads back
//! only to merge an update, never to answer.
use std::collections::BTreeSet;

use quis_vault::{
    AllowedFields, Field, IngestedSubject, RecordView, Sensitivity, SubjectInput, SubjectView, Vault, VaultError,
    names::{self, RecordName},
    store::{Store, StoredHead},
};

use crate::{audit::Recorded, coalesce::Coalescer};

/// Most record heads read in one statement.
const MAX_HEADS: usize = 64;

/// A record field's policy tag: its name up to the first `_` (`income_2024` → `income`).
pub fn field_tag(name: &str) -> &str {
    name.split('_').next().unwrap_or(name)
}

/// Which fields an allowed access may return: those whose tag the decision
/// allows, narrowed to the names asked for when some were.
#[derive(Clone, Debug)]
pub struct FieldFilter {
    pub tags: BTreeSet<String>,
    pub names: Option<BTreeSet<String>>,
}

impl FieldFilter {
    pub fn new(tags: &BTreeSet<String>, asked: &[String]) -> Self {
        let names = (!asked.is_empty()).then(|| asked.iter().cloned().collect());
        Self { tags: tags.clone(), names }
    }

    fn allows(&self, name: &str) -> bool {
        self.tags.contains(field_tag(name)) && self.names.as_ref().is_none_or(|n| n.contains(name))
    }

    /// What the ledger records as returned: the names asked for that may be returned, or the allowed tags.
    pub fn recorded(&self) -> Vec<String> {
        match &self.names {
            Some(names) => names.iter().filter(|n| self.allows(n)).cloned().collect(),
            None => self.tags.iter().cloned().collect(),
        }
    }
}

/// A record version as stored: encrypted until [`GuardedVault::open_record`].
pub struct SealedRecord {
    name: String,
    head: StoredHead,
}

impl SealedRecord {
    pub fn version(&self) -> i64 {
        self.head.version
    }
}

/// The vault behind the proof-taking API.
pub struct GuardedVault {
    vault: Vault,
    /// Head reads made while another is out share one statement: each statement is a
    /// round trip to a SQLite connection's thread and back, and those hand-offs, not the
    /// reads, were the cost (docs/benchmarks.md, "Vault").
    heads: Coalescer<String, Option<StoredHead>>,
}

fn everything() -> AllowedFields {
    AllowedFields::up_to(Sensitivity::Restricted)
}

impl GuardedVault {
    /// Starts the head-reading task on the current runtime.
    pub fn new(vault: Vault) -> Self {
        let store = vault.store().clone();
        let heads = Coalescer::start(MAX_HEADS, move |names: Vec<String>| {
            let store = store.clone();
            async move {
                match store.records(&names).await {
                    // The same record may be asked for twice in one group.
                    Ok(found) => names.iter().map(|name| found.get(name).cloned()).collect(),
                    // Unanswered, each read goes alone and gets its own error.
                    Err(_) => Vec::new(),
                }
            }
        });
        Self { vault, heads }
    }

    /// The store: metadata, the access index and break-glass rows; never plaintext.
    pub fn store(&self) -> &Store {
        self.vault.store()
    }

    /// A record's current version, sealed, read before the decision: the access
    /// records its version and answers exactly it, whatever is written meanwhile.
    pub async fn record_head(&self, name: &str) -> Result<Option<SealedRecord>, VaultError> {
        let head = match self.heads.call(name.to_string()).await {
            Some(head) => head,
            None => self.vault.store().record(name).await?,
        };
        Ok(head.map(|head| SealedRecord { name: name.to_string(), head }))
    }

    /// One record version, minimized, once its access is recorded.
    pub fn open_record(
        &self,
        _recorded: &Recorded,
        sealed: SealedRecord,
        filter: &FieldFilter,
    ) -> Result<RecordView, VaultError> {
        let mut view = self.vault.open_record(&sealed.name, sealed.head, &everything())?;
        view.fields.retain(|f| filter.allows(&f.name));
        Ok(view)
    }

    /// One record's current version, minimized, once its access is recorded.
    async fn read_record(
        &self,
        _recorded: &Recorded,
        name: &str,
        filter: &FieldFilter,
    ) -> Result<RecordView, VaultError> {
        let mut view = self.vault.get_record(name, &everything()).await?;
        view.fields.retain(|f| filter.allows(&f.name));
        Ok(view)
    }

    /// A subject's records (of `kind`, if set), minimized, once the export is recorded.
    pub async fn read_records_of(
        &self,
        recorded: &Recorded,
        subject_id: &str,
        kind: Option<&str>,
        filter: &FieldFilter,
    ) -> Result<Vec<RecordView>, VaultError> {
        let mut out = Vec::new();
        for name in self.vault.store().record_names(subject_id, kind).await? {
            out.push(self.read_record(recorded, &name, filter).await?);
        }
        Ok(out)
    }

    /// A subject's identifying data, minimized to the `identity` and `contact`
    /// tags allowed; compartment and protection are never answered.
    pub async fn read_subject(
        &self,
        _recorded: &Recorded,
        id: &str,
        tags: &BTreeSet<String>,
    ) -> Result<SubjectView, VaultError> {
        let mut view = self.vault.get_subject(id).await?;
        if !tags.contains("identity") {
            view.given_names.clear();
            view.family_name.clear();
            view.date_of_birth.clear();
            view.reference_number.clear();
        }
        if !tags.contains("contact") {
            view.postcode.clear();
            view.address_lines.clear();
            view.household.clear();
        }
        view.compartment.clear();
        view.protected = false;
        Ok(view)
    }

    /// The subjects matching a query, by blind index (nothing is decrypted).
    pub async fn search(&self, raw: &quis_vault::RawQuery) -> Result<quis_vault::SearchOutcome, VaultError> {
        self.vault.search(raw).await
    }

    pub async fn subject_exists(&self, id: &str) -> Result<bool, VaultError> {
        Ok(self.vault.store().subject(id).await?.is_some())
    }

    /// Creates or replaces a subject's identifying data.
    pub async fn ingest_subject(&self, id: &str, input: &SubjectInput) -> Result<IngestedSubject, VaultError> {
        self.vault.ingest_subject(id, input).await
    }

    /// Replaces the fields `apply` changes, keeping the others (and the decoy mark).
    pub async fn update_subject(
        &self,
        id: &str,
        apply: impl FnOnce(&mut SubjectInput),
    ) -> Result<IngestedSubject, VaultError> {
        let current = self.vault.get_subject(id).await?;
        let mut input = SubjectInput {
            given_names: current.given_names,
            family_name: current.family_name,
            date_of_birth: current.date_of_birth,
            postcode: current.postcode,
            reference_number: current.reference_number,
            address_lines: current.address_lines,
            household: current.household,
            compartment: current.compartment,
            protected: current.protected,
            decoy: false,
        };
        apply(&mut input);
        self.vault.ingest_subject(id, &input).await
    }

    /// Creates a record at version 1; refuses one that exists.
    pub async fn create_record(&self, name: &str, kind: &str, fields: Vec<Field>) -> Result<RecordView, VaultError> {
        self.vault.upsert_record(name, kind, fields, Some(0)).await.map_err(|e| match e {
            VaultError::VersionMismatch { name, .. } => VaultError::AlreadyExists(name),
            other => other,
        })
    }

    /// Writes a new version: `kind` if given, the `written` fields set, the `removed` ones dropped.
    pub async fn update_record(
        &self,
        name: &str,
        kind: Option<&str>,
        written: Vec<Field>,
        removed: &BTreeSet<String>,
        expected_version: Option<i64>,
    ) -> Result<RecordView, VaultError> {
        if RecordName::parse(name).is_none() {
            return Err(VaultError::invalid("record.name", names::ID_RULE));
        }
        let current = self.vault.get_record(name, &everything()).await?;
        if let Some(expected) = expected_version
            && expected != current.version
        {
            return Err(VaultError::VersionMismatch { name: name.into(), expected, found: current.version });
        }
        let written_names: BTreeSet<String> = written.iter().map(|f| f.name.clone()).collect();
        let mut fields: Vec<Field> = current
            .fields
            .into_iter()
            .filter(|f| !removed.contains(&f.name) && !written_names.contains(&f.name))
            .collect();
        fields.extend(written);
        let kind = kind.unwrap_or(&current.kind).to_string();
        let mut stored = self.vault.upsert_record(name, &kind, fields, Some(current.version)).await?;
        // The answer carries only what this request wrote.
        stored.fields.retain(|f| written_names.contains(&f.name));
        Ok(stored)
    }

    pub async fn key_usage(&self) -> Result<Vec<quis_vault::KeyUsage>, VaultError> {
        self.vault.key_usage().await
    }

    /// Loads the key files again (a new KEK becomes active), then re-wraps up to `batch` data keys.
    pub async fn rotate_keys(
        &self,
        keyring: quis_vault::keyring::Keyring,
        batch: usize,
    ) -> Result<quis_vault::RotationProgress, VaultError> {
        self.vault.replace_keyring(keyring).await?;
        self.vault.rotate_keys(batch).await
    }
}
