//! Runs the pure tree algorithms of `quis-tlog` (which read hashes through a
//! synchronous `HashReader`) over the asynchronous store: the reader serves
//! hashes from a map and notes the ones it lacks; they are fetched in one
//! query and the algorithm runs again. Proofs touch O(log n) hashes, so this
//! settles in one or two rounds.
use std::{cell::RefCell, collections::HashMap};

use quis_tlog::{Hash, HashReader, TlogError};

use crate::store::{LedgerStore, StoreError};

/// A [`HashReader`] over loaded hashes that records the ones it lacks.
pub struct MapReader<'a> {
    known: &'a HashMap<u64, Hash>,
    missing: RefCell<Vec<u64>>,
}

impl HashReader for MapReader<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
        let mut out = Vec::with_capacity(indexes.len());
        for idx in indexes {
            match self.known.get(idx) {
                Some(h) => out.push(*h),
                None => self.missing.borrow_mut().push(*idx),
            }
        }
        if self.missing.borrow().is_empty() {
            Ok(out)
        } else {
            Err(TlogError::Malformed("hashes not loaded yet".into()))
        }
    }
}

/// Why a tree computation failed.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tlog(#[from] TlogError),
}

/// Runs `f` with every hash it needs loaded into `cache` from the store.
pub async fn with_hashes<T>(
    store: &LedgerStore,
    cache: &mut HashMap<u64, Hash>,
    f: impl for<'a> Fn(&MapReader<'a>) -> Result<T, TlogError>,
) -> Result<T, TreeError> {
    // Each round loads at least one missing hash; the tree is at most 64 levels deep.
    for _ in 0..64 {
        let reader = MapReader { known: cache, missing: RefCell::new(Vec::new()) };
        let result = f(&reader);
        let missing = reader.missing.into_inner();
        match result {
            Ok(value) => return Ok(value),
            Err(e) if missing.is_empty() => return Err(e.into()),
            Err(_) => {
                let fetched = store.read_hashes(&missing).await?;
                if let Some(idx) = missing.iter().find(|i| !fetched.contains_key(i)) {
                    return Err(StoreError::Corrupt(format!("stored hash {idx} is missing")).into());
                }
                cache.extend(fetched);
            }
        }
    }
    Err(StoreError::Corrupt("hash lookups did not settle".into()).into())
}
