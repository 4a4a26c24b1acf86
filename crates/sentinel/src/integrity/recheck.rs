//! The re-check of stored entries. Sampling the tail proves an entry as it
//! was first served; an insider who rewrites or deletes a row afterwards is
//! caught only by reading it again. Every round, the monitor re-reads a few
//! tiles' worth of entries with `GetEntries` (what any reader is served now)
//! and checks them against the verified tree: with the log's tiles, each
//! entry's hash is compared with its hash tile, itself proved in the signed
//! tree by one inclusion proof; without them, each entry is proved by the
//! ledger's inclusion proofs. An entry the signed tree covers that the ledger
//! no longer has is a deletion.
//!
//! The cost is `recheck_entries_per_sec`. Entries that alerts cite as evidence
//! are what an insider covering their tracks rewrites first, so once there are
//! any, a third of each round goes to their tiles (newest first, the last
//! [`MAX_EVIDENCE_TILES`] kept). Of the rest, half returns to the newest
//! `recheck_recent_entries` (where fresh tracks are covered) and half sweeps
//! the whole log from its start, round after round.
use std::{
    collections::{BTreeSet, HashSet, VecDeque},
    ops::Range,
};

use quis_proto::ledger::{GetEntriesRequest, StoredEntry};
use quis_tlog::{
    Hash, HashReader, stored_hash_index,
    tile::{self, FULL_WIDTH, TileHashReader},
};
use tonic::Code;

use super::{Monitor, Problem};
use crate::{detect::Evidence, store::VerifiedCheckpoint};

const WIDTH: u64 = FULL_WIDTH as u64;
/// Most tiles of alert evidence kept for re-checking (the newest).
pub const MAX_EVIDENCE_TILES: usize = 4096;

/// Which tiles of entries to re-check next.
#[derive(Debug)]
pub struct Schedule {
    tiles_per_round: u64,
    recent_tiles: u64,
    /// The next tile of the sweep over the whole log, and of the recent range.
    sweep_next: u64,
    recent_next: u64,
    /// Tiles holding entries that alerts cite, oldest first, and how many evidence tiles
    /// have been re-checked (the position of the next one, counted from the newest).
    evidence: VecDeque<u64>,
    evidence_held: HashSet<u64>,
    evidence_next: usize,
    /// Thirds of a tile owed to the evidence share.
    evidence_credit: u64,
}

impl Schedule {
    /// `entries_per_sec` (0: none) spread over rounds of `interval_ms`.
    pub fn new(entries_per_sec: u64, recent_entries: u64, interval_ms: u64) -> Self {
        let per_round = entries_per_sec.saturating_mul(interval_ms) / 1000;
        let tiles_per_round = if entries_per_sec == 0 { 0 } else { per_round.div_ceil(WIDTH).max(1) };
        Self {
            tiles_per_round,
            recent_tiles: recent_entries.div_ceil(WIDTH).max(1),
            sweep_next: 0,
            recent_next: 0,
            evidence: VecDeque::new(),
            evidence_held: HashSet::new(),
            evidence_next: 0,
            evidence_credit: 0,
        }
    }

    /// Notes that an alert cites entry `index`: its tile joins the evidence share.
    pub fn note_evidence(&mut self, index: u64) {
        let tile = index / WIDTH;
        if self.evidence_held.insert(tile) {
            self.evidence.push_back(tile);
            if self.evidence.len() > MAX_EVIDENCE_TILES
                && let Some(oldest) = self.evidence.pop_front()
            {
                self.evidence_held.remove(&oldest);
            }
        }
    }

    /// The ranges of entries, one tile each, of the tree of `size` to re-check this round.
    pub fn next(&mut self, size: u64) -> Vec<Range<u64>> {
        let tiles = size.div_ceil(WIDTH);
        let mut chosen = BTreeSet::new();
        if tiles == 0 {
            return Vec::new();
        }
        // A third of the budget over the rounds, so that a budget of one or two tiles a round
        // still gives evidence a whole round now and then without starving the rest.
        self.evidence_credit = if self.evidence.is_empty() { 0 } else { self.evidence_credit + self.tiles_per_round };
        let evidence_share = self.evidence_credit / 3;
        self.evidence_credit -= evidence_share * 3;
        for _ in 0..evidence_share.min(self.evidence.len() as u64) {
            let position = self.evidence_next % self.evidence.len();
            let tile = self.evidence[self.evidence.len() - 1 - position];
            if tile < tiles {
                chosen.insert(tile);
            }
            self.evidence_next = position + 1;
        }
        let budget = self.tiles_per_round.saturating_sub(evidence_share);
        let recent_from = tiles.saturating_sub(self.recent_tiles);
        let recent_share = budget / 2;
        for _ in 0..recent_share.min(tiles - recent_from) {
            if !(recent_from..tiles).contains(&self.recent_next) {
                self.recent_next = recent_from;
            }
            chosen.insert(self.recent_next);
            self.recent_next += 1;
        }
        for _ in 0..(budget - recent_share).min(tiles) {
            if self.sweep_next >= tiles {
                self.sweep_next = 0;
            }
            chosen.insert(self.sweep_next);
            self.sweep_next += 1;
        }
        chosen.into_iter().map(|t| t * WIDTH..(t * WIDTH + WIDTH).min(size)).collect()
    }
}

impl Monitor {
    /// Re-reads this round's tiles of entries and checks them against `verified`.
    pub(super) async fn recheck(&mut self, verified: &VerifiedCheckpoint) -> Result<(), Problem> {
        let ranges = self.schedule.next(verified.size);
        // Entries first: a deleted row also breaks the hash tile that covers it.
        let mut leaves = Vec::with_capacity(ranges.len());
        for range in &ranges {
            let entries = self.read_entries(range.clone()).await?;
            leaves.push(entries.iter().map(|e| quis_tlog::leaf_hash(&e.data)).collect::<Vec<Hash>>());
        }
        let held = match &self.tiles {
            Some(tiles) => held_by_tiles(tiles, verified, &ranges).await?,
            None => {
                let mut held = Vec::with_capacity(ranges.len());
                for (range, leaves) in ranges.iter().zip(&leaves) {
                    held.push(self.proved_by_ledger(verified, range.start, leaves).await?);
                }
                held
            }
        };
        let source = if self.tiles.is_some() { "that the log's tiles prove in" } else { "in" };
        for ((range, leaves), held) in ranges.iter().zip(&leaves).zip(&held) {
            if let Some((i, leaf)) = leaves.iter().enumerate().find(|(i, leaf)| held[*i] != **leaf) {
                let index = range.start + i as u64;
                return Err(Problem::Integrity(
                    format!(
                        "Ledger entry {index} as the ledger serves it now is not the entry {source} the signed tree: \
                         its stored bytes were altered after it was appended."
                    ),
                    vec![Evidence { index, leaf_hash: *leaf, note: "entry as served now".into() }],
                ));
            }
        }
        Ok(())
    }

    /// Entries `range` as the ledger serves them now; a deletion if one the tree covers is missing.
    async fn read_entries(&self, range: Range<u64>) -> Result<Vec<StoredEntry>, Problem> {
        if let Some(entries) = self.complete(range.clone()).await? {
            return Ok(entries);
        }
        // A hole: the longest complete prefix ends at the first missing entry.
        let (mut complete, mut incomplete) = (range.start, range.end);
        while incomplete - complete > 1 {
            let mid = complete + (incomplete - complete) / 2;
            if self.complete(range.start..mid).await?.is_some() {
                complete = mid;
            } else {
                incomplete = mid;
            }
        }
        // A one-entry range has no hole to refuse: an empty answer is the entry gone.
        match self.entries(complete..complete + 1).await {
            Ok(e) if e.is_empty() => Err(Problem::Integrity(
                format!(
                    "Ledger entry {complete} is missing from the ledger's store although a signed checkpoint \
                     covers it: it was deleted."
                ),
                Vec::new(),
            )),
            Ok(_) => Err(Problem::Unreachable(format!("the ledger served entries {range:?} inconsistently"))),
            Err(e) => Err(Problem::unreachable(e)),
        }
    }

    /// Entries `range` if the ledger serves every one of them; `None` if it reports a hole
    /// (a short answer, or its store refusing a range with a gap).
    async fn complete(&self, range: Range<u64>) -> Result<Option<Vec<StoredEntry>>, Problem> {
        match self.entries(range.clone()).await {
            Ok(e) if e.iter().map(|e| e.index).eq(range.clone()) => Ok(Some(e)),
            Ok(_) => Ok(None),
            Err(s) if s.code() == Code::Internal => Ok(None),
            Err(s) => Err(Problem::unreachable(s)),
        }
    }

    async fn entries(&self, range: Range<u64>) -> Result<Vec<StoredEntry>, tonic::Status> {
        let mut client = self.link.client();
        let mut out = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = GetEntriesRequest {
                start_index: range.start,
                end_index: range.end,
                page_size: WIDTH as i32,
                page_token,
            };
            let page = client.get_entries(self.link.request(request)?).await?.into_inner();
            out.extend(page.entries);
            if page.next_page_token.is_empty() {
                return Ok(out);
            }
            page_token = page.next_page_token;
        }
    }

    /// Without tiles: the hashes the tree holds where the ledger's inclusion proofs of `leaves`
    /// verify, and none (a mismatch) where they do not.
    async fn proved_by_ledger(
        &self,
        verified: &VerifiedCheckpoint,
        start: u64,
        leaves: &[Hash],
    ) -> Result<Vec<Hash>, Problem> {
        let samples: Vec<crate::consumer::Sample> = leaves
            .iter()
            .enumerate()
            .map(|(i, leaf)| crate::consumer::Sample { index: start + i as u64, leaf_hash: *leaf })
            .collect();
        let proofs = self.proofs_from_ledger(verified.size, &samples).await?;
        Ok(samples
            .iter()
            .zip(proofs)
            .map(|(s, proof)| {
                let ok = quis_tlog::check_record(&proof, verified.size, &verified.root, s.index, &s.leaf_hash).is_ok();
                if ok { s.leaf_hash } else { [0; 32] }
            })
            .collect())
    }
}

/// For each range (one tile), its leaf hashes from the log's hash tile, once that tile is proved
/// in the signed tree: the inclusion proof of the range's first leaf, computed from the tiles,
/// hashes every other leaf of the tile in. The tiles of a round are fetched together.
async fn held_by_tiles(
    tiles: &quis_tlog::client::TileClient,
    verified: &VerifiedCheckpoint,
    ranges: &[Range<u64>],
) -> Result<Vec<Vec<Hash>>, Problem> {
    let size = verified.size;
    let cannot = |range: &Range<u64>, e: quis_tlog::TlogError| {
        Problem::integrity(format!("The log's tiles cannot prove entries {range:?}: {e}."))
    };
    let leaf_indexes = |range: &Range<u64>| range.clone().map(|i| stored_hash_index(0, i)).collect::<Vec<u64>>();
    let mut indexes = Vec::new();
    for range in ranges {
        indexes.extend(quis_tlog::record_proof_indexes(size, range.start).map_err(|e| cannot(range, e))?);
        indexes.extend(leaf_indexes(range));
    }
    let needed = tile::tiles_for_indexes(size, &indexes).map_err(|e| cannot(&(0..size), e))?;
    let fetched = tiles.hash_tiles(&needed).await.map_err(super::fetch_problem)?;
    let reader = TileHashReader::new(size, &fetched);
    ranges
        .iter()
        .map(|range| {
            let held = reader.read_hashes(&leaf_indexes(range)).map_err(|e| cannot(range, e))?;
            let proof = quis_tlog::prove_record(size, range.start, &reader).map_err(|e| cannot(range, e))?;
            quis_tlog::check_record(&proof, size, &verified.root, range.start, &held[0]).map_err(|_| {
                Problem::integrity(format!(
                    "The log's hash tile of entries {range:?} is not part of the signed tree: its stored hashes \
                     were altered."
                ))
            })?;
            Ok(held)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_the_budget_returns_to_the_recent_tiles_half_sweeps_the_log() {
        // 4 tiles a round over a log of 10 tiles (the last one partial), the recent range 3 tiles.
        let mut s = Schedule::new(1024, 768, 1000);
        let size = 9 * WIDTH + 10;
        let starts = |r: &[Range<u64>]| r.iter().map(|r| r.start / WIDTH).collect::<Vec<_>>();
        assert_eq!(starts(&s.next(size)), vec![0, 1, 7, 8]);
        let second = s.next(size);
        assert_eq!(starts(&second), vec![2, 3, 7, 9]);
        assert_eq!(second.last(), Some(&(9 * WIDTH..size)), "the last tile is partial");
        assert_eq!(starts(&s.next(size)), vec![4, 5, 8, 9]);
        assert_eq!(starts(&s.next(size)), vec![6, 7, 8]);
        assert_eq!(starts(&s.next(size)), vec![7, 8, 9]);
        assert_eq!(starts(&s.next(size)), vec![0, 1, 8, 9], "the sweep starts over");
        assert!(Schedule::new(0, 768, 1000).next(size).is_empty(), "0 disables");
        assert!(s.next(0).is_empty());
    }

    #[test]
    fn a_third_of_the_budget_goes_to_the_tiles_of_alert_evidence_newest_first() {
        // 6 tiles a round over a log of 20 tiles, the recent range 2 tiles.
        let mut s = Schedule::new(6 * WIDTH, 2 * WIDTH, 1000);
        let size = 20 * WIDTH;
        let starts = |r: &[Range<u64>]| r.iter().map(|r| r.start / WIDTH).collect::<Vec<_>>();
        for index in [3 * WIDTH + 5, 3 * WIDTH + 9, 11 * WIDTH, 5 * WIDTH + 1] {
            s.note_evidence(index);
        }
        // Evidence tiles 5 then 11 (newest first), recent 18 and 19, sweep 0 and 1.
        assert_eq!(starts(&s.next(size)), vec![0, 1, 5, 11, 18, 19]);
        // Then 3 (tile 3 was noted once), and round again to 5; the sweep goes on.
        assert_eq!(starts(&s.next(size)), vec![2, 3, 5, 18, 19]);
        assert_eq!(starts(&s.next(size)), vec![3, 4, 5, 11, 18, 19]);

        let mut s = Schedule::new(WIDTH, WIDTH, 1000);
        for tile in 0..(MAX_EVIDENCE_TILES as u64 + 10) {
            s.note_evidence(tile * WIDTH);
        }
        assert_eq!(s.evidence.len(), MAX_EVIDENCE_TILES, "bounded");
        assert_eq!(s.evidence.front(), Some(&10), "the oldest go first");

        // One tile a round: every third round is the evidence's, the others the recent range's
        // and the sweep's.
        let mut s = Schedule::new(WIDTH, WIDTH, 1000);
        s.note_evidence(7 * WIDTH);
        let rounds: Vec<Vec<u64>> = (0..6).map(|_| starts(&s.next(size))).collect();
        assert_eq!(rounds, [vec![0], vec![1], vec![7], vec![2], vec![3], vec![7]]);
    }
}
