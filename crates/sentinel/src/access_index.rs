//! The check of the vault's per-subject access index against the ledger: a
//! sampled allowed access to a subject must be listed among that subject's
//! accesses, or the subject would never see it (an access hidden from "who has
//! looked at my record?"). The index is read through [`AccessIndex`]; today's
//! implementation reads the vault's store (`quis_vault::store::Store::accesses`,
//! `sentinel.vault_store_url`, read-only use). When the vault service exposes
//! its index over gRPC, implement [`AccessIndex`] on that client instead.
use futures::future::BoxFuture;

/// An access the ledger holds and the vault's index must list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessSample {
    pub index: u64,
    pub leaf_hash: [u8; 32],
    /// The subject, opened from the entry's commitment (kept in memory only).
    pub subject: String,
    /// The entry's sequencing time: the vault indexes after the ledger answered.
    pub time_ms: i64,
}

/// The vault's per-subject access index (the hook the integrity monitor checks through).
pub trait AccessIndex: Send + Sync {
    /// Whether the index lists ledger entry `index` among the accesses to `subject`.
    fn lists(&self, subject: &str, index: u64) -> BoxFuture<'_, Result<bool, String>>;
}

impl AccessIndex for quis_vault::store::Store {
    fn lists(&self, subject: &str, index: u64) -> BoxFuture<'_, Result<bool, String>> {
        let subject = subject.to_string();
        Box::pin(async move {
            // Visible or not yet: the index must hold it either way.
            let after = i64::try_from(index).map_err(|e| e.to_string())? - 1;
            let found = self.accesses(&subject, i64::MAX, after, 1).await.map_err(|e| e.to_string())?;
            Ok(found.first().is_some_and(|a| a.ledger_index == index))
        })
    }
}
