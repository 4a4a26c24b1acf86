//! RFC 6962 Merkle trees: hashing, the stored-hash layout, proof construction and proof checking.
//!
//! Construction uses the layout of Go's `golang.org/x/mod/sumdb/tlog`: every node of the tree
//! is stored exactly once, at [`stored_hash_index`]`(level, n)`, in the order nodes become
//! complete. A log appends the hashes returned by [`stored_hashes`] for each record and never
//! rewrites anything, which suits an append-only table. Verification does not depend on that
//! layout: it follows RFC 9162 §2.1.3.2 and §2.1.4.2, whose bit arithmetic cannot overflow.

use sha2::{Digest, Sha256};

use crate::TlogError;

/// A SHA-256 Merkle tree hash.
pub type Hash = [u8; 32];

/// Length of a [`tyalias@Hash`] in bytes.
pub const HASH_SIZE: usize = 32;

/// The root of the empty tree: SHA-256 of the empty string (RFC 6962 §2.1).
pub const EMPTY_HASH: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae, 0x41,
    0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// The leaf hash of an entry: `SHA-256(0x00 || entry)`.
///
/// The 0x00 prefix keeps a leaf from ever being mistaken for an interior node (second preimage).
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(entry);
    h.finalize().into()
}

/// The hash of an interior node: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Reads stored hashes by their [`stored_hash_index`].
///
/// Implementations must return exactly one hash per requested index, in the same order, or an
/// error (for example [`TlogError::HashNotFound`]). Callers in this crate always ask in
/// increasing index order, which lets a database serve a request with one range scan.
pub trait HashReader {
    /// Returns the hashes stored at `indexes`.
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError>;
}

impl<T: HashReader + ?Sized> HashReader for &T {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
        (**self).read_hashes(indexes)
    }
}

/// Reads and checks that the reader kept its contract, so that the math below can index freely.
fn read_exact(reader: &impl HashReader, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
    if indexes.is_empty() {
        return Ok(Vec::new());
    }
    let hashes = reader.read_hashes(indexes)?;
    if hashes.len() != indexes.len() {
        return Err(TlogError::HashReaderMisbehaved { want: indexes.len(), got: hashes.len() });
    }
    Ok(hashes)
}

/// The position at which the hash of node `n` of tree level `level` is stored.
///
/// Level 0 holds the leaves. The node `(level, n)` covers records
/// `[n << level, (n + 1) << level)` and is stored right after the last of them becomes
/// available (Crosby and Wallach, "Efficient Data Structures for Tamper-Evident Logging", §3.3).
/// Coordinates beyond any tree that fits in a `u64` saturate to `u64::MAX`, which no store holds.
pub fn stored_hash_index(level: u8, n: u64) -> u64 {
    checked_stored_hash_index(level, n).unwrap_or(u64::MAX)
}

pub(crate) fn checked_stored_hash_index(level: u8, n: u64) -> Option<u64> {
    // Descend to the last leaf under the node: n' = ((n + 1) << level) - 1. It is stored at
    // n' + n'/2 + n'/4 + ... = 2n' - popcount(n'), and the node `level` slots after it.
    if level >= 64 {
        return None;
    }
    let next = n.checked_add(1)?;
    if next > (u64::MAX >> level) {
        return None;
    }
    let last = (next << level) - 1;
    last.checked_mul(2)?.checked_sub(u64::from(last.count_ones()))?.checked_add(u64::from(level))
}

/// The inverse of [`stored_hash_index`]: `(level, n)` of the node stored at `index`.
pub fn split_stored_hash_index(index: u64) -> (u8, u64) {
    // stored_hash_index(0, n) <= 2n, so the record that stored `index` is in
    // [index/2, index/2 + log2(index)]; walk forward to it.
    let mut n = index / 2;
    let mut index_n = stored_hash_index(0, n);
    loop {
        // Record n stores its leaf plus one node per trailing 1 bit of n.
        let next = index_n.checked_add(1 + u64::from(n.trailing_ones()));
        let Some(next) = next.filter(|&next| next <= index) else {
            break;
        };
        n += 1;
        index_n = next;
    }
    // index - index_n <= trailing_ones(n) <= 63, so this fits.
    let level = u8::try_from(index - index_n).unwrap_or(u8::MAX);
    (level, n.checked_shr(u32::from(level)).unwrap_or(0))
}

/// The number of hashes stored for a tree of `n` records.
pub fn stored_hash_count(n: u64) -> u64 {
    // The next record's leaf goes right after everything stored so far.
    stored_hash_index(0, n)
}

/// The hashes to store when appending record `n` whose leaf hash is `leaf`, in storage order
/// (the first goes to `stored_hash_index(0, n)`, the rest follow).
///
/// Reads up to log2(n) earlier hashes from `reader` to complete the subtrees record `n` closes.
pub fn stored_hashes(n: u64, leaf: &Hash, reader: &impl HashReader) -> Result<Vec<Hash>, TlogError> {
    // Each trailing 1 bit of n completes a subtree with its left sibling.
    let m = n.trailing_ones() as u8;
    let indexes: Vec<u64> = (0..m).rev().map(|i| stored_hash_index(i, (n >> i) - 1)).collect();
    let siblings = read_exact(reader, &indexes)?;
    let mut hashes = Vec::with_capacity(usize::from(m) + 1);
    let mut h = *leaf;
    hashes.push(h);
    for sibling in siblings.iter().rev() {
        h = node_hash(sibling, &h);
        hashes.push(h);
    }
    Ok(hashes)
}

/// The largest power of two that is at most `x` (`x >= 1`), with its log2.
fn pow2_at_most(x: u64) -> (u64, u8) {
    let level = 63 - x.leading_zeros() as u8;
    (1 << level, level)
}

/// The largest power of two strictly less than `x` (`x >= 2`): RFC 6962's split point.
fn split_point(x: u64) -> u64 {
    pow2_at_most(x - 1).0
}

/// Appends the indexes of the complete subtrees whose hashes make up MTH(D[lo:hi]).
fn sub_tree_index(mut lo: u64, hi: u64, need: &mut Vec<u64>) {
    while lo < hi {
        let (k, level) = pow2_at_most(hi - lo);
        need.push(stored_hash_index(level, lo >> level));
        lo += k;
    }
}

/// Computes MTH(D[lo:hi]) from the hashes requested by [`sub_tree_index`], returning the rest.
fn sub_tree_hash(mut lo: u64, hi: u64, hashes: &[Hash]) -> Result<(Hash, &[Hash]), TlogError> {
    let mut count = 0;
    while lo < hi {
        lo += pow2_at_most(hi - lo).0;
        count += 1;
    }
    if count == 0 || hashes.len() < count {
        return Err(internal("subtree needs more hashes than were read"));
    }
    let (mine, rest) = hashes.split_at(count);
    let mut h = mine[count - 1];
    for left in mine[..count - 1].iter().rev() {
        h = node_hash(left, &h);
    }
    Ok((h, rest))
}

fn internal(what: &str) -> TlogError {
    TlogError::StoredHashesInconsistent(format!("internal: {what}"))
}

/// The stored-hash indexes [`tree_hash`] reads for a tree of `n` records (at most 1 + log2 n).
pub fn tree_hash_indexes(n: u64) -> Vec<u64> {
    let mut need = Vec::new();
    sub_tree_index(0, n, &mut need);
    need
}

/// The root hash of the tree of the first `n` records.
pub fn tree_hash(n: u64, reader: &impl HashReader) -> Result<Hash, TlogError> {
    if n == 0 {
        return Ok(EMPTY_HASH);
    }
    let hashes = read_exact(reader, &tree_hash_indexes(n))?;
    let (h, rest) = sub_tree_hash(0, n, &hashes)?;
    if !rest.is_empty() {
        return Err(internal("tree hash read too many hashes"));
    }
    Ok(h)
}

fn leaf_proof_index(lo: u64, hi: u64, n: u64, need: &mut Vec<u64>) {
    if lo + 1 == hi {
        return;
    }
    let k = split_point(hi - lo);
    if n < lo + k {
        leaf_proof_index(lo, lo + k, n, need);
        sub_tree_index(lo + k, hi, need);
    } else {
        sub_tree_index(lo, lo + k, need);
        leaf_proof_index(lo + k, hi, n, need);
    }
}

fn leaf_proof(lo: u64, hi: u64, n: u64, hashes: &[Hash]) -> Result<(Vec<Hash>, &[Hash]), TlogError> {
    if lo + 1 == hi {
        // The verifier has the leaf itself.
        return Ok((Vec::new(), hashes));
    }
    let k = split_point(hi - lo);
    let (mut proof, sibling, rest) = if n < lo + k {
        let (proof, rest) = leaf_proof(lo, lo + k, n, hashes)?;
        let (sibling, rest) = sub_tree_hash(lo + k, hi, rest)?;
        (proof, sibling, rest)
    } else {
        let (sibling, rest) = sub_tree_hash(lo, lo + k, hashes)?;
        let (proof, rest) = leaf_proof(lo + k, hi, n, rest)?;
        (proof, sibling, rest)
    };
    proof.push(sibling);
    Ok((proof, rest))
}

/// The stored-hash indexes [`prove_record`] reads, in order (to fetch the tiles holding them).
pub fn record_proof_indexes(tree_size: u64, index: u64) -> Result<Vec<u64>, TlogError> {
    if index >= tree_size {
        return Err(TlogError::IndexOutOfRange { index, size: tree_size });
    }
    let mut need = Vec::new();
    leaf_proof_index(0, tree_size, index, &mut need);
    Ok(need)
}

/// The inclusion proof (RFC 9162 audit path, leaf to root) of record `index` in the tree of
/// `tree_size` records.
pub fn prove_record(tree_size: u64, index: u64, reader: &impl HashReader) -> Result<Vec<Hash>, TlogError> {
    let indexes = record_proof_indexes(tree_size, index)?;
    let hashes = read_exact(reader, &indexes)?;
    let (proof, rest) = leaf_proof(0, tree_size, index, &hashes)?;
    if !rest.is_empty() {
        return Err(internal("inclusion proof read too many hashes"));
    }
    Ok(proof)
}

fn tree_proof_index(lo: u64, hi: u64, n: u64, need: &mut Vec<u64>) {
    if n == hi {
        if lo != 0 {
            sub_tree_index(lo, hi, need);
        }
        return;
    }
    let k = split_point(hi - lo);
    if n <= lo + k {
        tree_proof_index(lo, lo + k, n, need);
        sub_tree_index(lo + k, hi, need);
    } else {
        sub_tree_index(lo, lo + k, need);
        tree_proof_index(lo + k, hi, n, need);
    }
}

fn tree_proof(lo: u64, hi: u64, n: u64, hashes: &[Hash]) -> Result<(Vec<Hash>, &[Hash]), TlogError> {
    if n == hi {
        if lo == 0 {
            // This subtree is the old tree itself, which the verifier knows.
            return Ok((Vec::new(), hashes));
        }
        let (h, rest) = sub_tree_hash(lo, hi, hashes)?;
        return Ok((vec![h], rest));
    }
    let k = split_point(hi - lo);
    let (mut proof, sibling, rest) = if n <= lo + k {
        let (proof, rest) = tree_proof(lo, lo + k, n, hashes)?;
        let (sibling, rest) = sub_tree_hash(lo + k, hi, rest)?;
        (proof, sibling, rest)
    } else {
        let (sibling, rest) = sub_tree_hash(lo, lo + k, hashes)?;
        let (proof, rest) = tree_proof(lo + k, hi, n, rest)?;
        (proof, sibling, rest)
    };
    proof.push(sibling);
    Ok((proof, rest))
}

/// The stored-hash indexes [`prove_tree`] reads, in order.
pub fn tree_proof_indexes(tree_size: u64, old_size: u64) -> Result<Vec<u64>, TlogError> {
    if old_size > tree_size {
        return Err(TlogError::InvalidTreeSizes { old_size, size: tree_size });
    }
    let mut need = Vec::new();
    if old_size > 0 && old_size < tree_size {
        tree_proof_index(0, tree_size, old_size, &mut need);
    }
    Ok(need)
}

/// The consistency proof (RFC 9162 §2.1.4) from the tree of `old_size` records to the tree of
/// `tree_size` records.
///
/// It is empty when the sizes are equal, and also when `old_size` is 0: every tree extends the
/// empty tree, and c2sp.org/tlog-witness requires an empty proof from size 0. (Checking such a
/// proof is meaningless, which is why [`check_tree`] refuses an old size of 0.)
pub fn prove_tree(tree_size: u64, old_size: u64, reader: &impl HashReader) -> Result<Vec<Hash>, TlogError> {
    let indexes = tree_proof_indexes(tree_size, old_size)?;
    if old_size == 0 || old_size == tree_size {
        return Ok(Vec::new());
    }
    let hashes = read_exact(reader, &indexes)?;
    let (proof, rest) = tree_proof(0, tree_size, old_size, &hashes)?;
    if !rest.is_empty() {
        return Err(internal("consistency proof read too many hashes"));
    }
    Ok(proof)
}

/// Checks that `proof` shows the record with leaf hash `leaf` at position `index` of the tree
/// of `tree_size` records whose root is `root` (RFC 9162 §2.1.3.2).
pub fn check_record(proof: &[Hash], tree_size: u64, root: &Hash, index: u64, leaf: &Hash) -> Result<(), TlogError> {
    if index >= tree_size {
        return Err(TlogError::IndexOutOfRange { index, size: tree_size });
    }
    let (mut f, mut s) = (index, tree_size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return Err(TlogError::InclusionProofInvalid);
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 || r != *root {
        return Err(TlogError::InclusionProofInvalid);
    }
    Ok(())
}

/// Checks that `proof` shows the tree of `tree_size` records with root `root` extends the tree
/// of `old_size` records with root `old_root` (RFC 9162 §2.1.4.2).
///
/// An old size of 0 is refused: the empty tree is a prefix of everything, so there is nothing
/// to check, and accepting it would let a caller believe it checked something.
pub fn check_tree(
    proof: &[Hash],
    tree_size: u64,
    root: &Hash,
    old_size: u64,
    old_root: &Hash,
) -> Result<(), TlogError> {
    if old_size == 0 || old_size > tree_size {
        return Err(TlogError::InvalidTreeSizes { old_size, size: tree_size });
    }
    if old_size == tree_size {
        if proof.is_empty() && root == old_root {
            return Ok(());
        }
        return Err(TlogError::ConsistencyProofInvalid);
    }
    let Some((first, rest)) = proof.split_first() else {
        return Err(TlogError::ConsistencyProofInvalid);
    };
    // When the old tree is a complete subtree its root is the implicit first path element.
    let (seed, path) = if old_size.is_power_of_two() { (old_root, proof) } else { (first, rest) };
    let (mut f, mut s) = (old_size - 1, tree_size - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*seed, *seed);
    for c in path {
        if s == 0 {
            return Err(TlogError::ConsistencyProofInvalid);
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 || fr != *old_root || sr != *root {
        return Err(TlogError::ConsistencyProofInvalid);
    }
    Ok(())
}

/// Stored hashes held in memory: for tests, and for `quis verify --full` rebuilding a tree
/// from its entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryHashes(pub Vec<Hash>);

impl MemoryHashes {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// A tree holding `entries` in order.
    pub fn from_entries<E: AsRef<[u8]>>(entries: impl IntoIterator<Item = E>) -> Result<Self, TlogError> {
        let mut hashes = Self::new();
        for entry in entries {
            hashes.append_record(entry.as_ref())?;
        }
        Ok(hashes)
    }

    /// The number of records held.
    pub fn tree_size(&self) -> Result<u64, TlogError> {
        let len = self.0.len() as u64;
        // A tree of n records holds exactly stored_hash_index(0, n) hashes.
        match split_stored_hash_index(len) {
            (0, n) => Ok(n),
            _ => Err(TlogError::StoredHashesInconsistent(format!("{len} hashes is not a whole number of records"))),
        }
    }

    /// Appends an entry; returns its record index.
    pub fn append_record(&mut self, entry: &[u8]) -> Result<u64, TlogError> {
        self.append_leaf_hash(&leaf_hash(entry))
    }

    /// Appends a record given its leaf hash; returns its record index.
    pub fn append_leaf_hash(&mut self, leaf: &Hash) -> Result<u64, TlogError> {
        let n = self.tree_size()?;
        let new = stored_hashes(n, leaf, self)?;
        self.0.extend(new);
        Ok(n)
    }
}

impl HashReader for MemoryHashes {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
        indexes
            .iter()
            .map(|&index| {
                usize::try_from(index)
                    .ok()
                    .and_then(|i| self.0.get(i))
                    .copied()
                    .ok_or(TlogError::HashNotFound { index })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_hash_index_matches_go_layout() {
        // Records 0..4 store: L0 | L1 N(1,0) | L2 | L3 N(1,1) N(2,0)
        assert_eq!(stored_hash_index(0, 0), 0);
        assert_eq!(stored_hash_index(0, 1), 1);
        assert_eq!(stored_hash_index(1, 0), 2);
        assert_eq!(stored_hash_index(0, 2), 3);
        assert_eq!(stored_hash_index(0, 3), 4);
        assert_eq!(stored_hash_index(1, 1), 5);
        assert_eq!(stored_hash_index(2, 0), 6);
        for index in 0..10_000 {
            let (level, n) = split_stored_hash_index(index);
            assert_eq!(stored_hash_index(level, n), index);
        }
        assert_eq!(stored_hash_count(4), 7);
        assert_eq!(stored_hash_index(64, 0), u64::MAX);
        assert_eq!(stored_hash_index(0, u64::MAX), u64::MAX);
        // Terminates and stays in range at the very top.
        let (level, _) = split_stored_hash_index(u64::MAX);
        assert!(level < 64);
    }

    #[test]
    fn empty_hash_is_sha256_of_nothing() {
        assert_eq!(EMPTY_HASH, <[u8; 32]>::from(Sha256::digest(b"")));
    }

    #[test]
    fn misbehaving_reader_is_an_error_not_a_panic() {
        struct Short;
        impl HashReader for Short {
            fn read_hashes(&self, _: &[u64]) -> Result<Vec<Hash>, TlogError> {
                Ok(vec![[0; 32]])
            }
        }
        assert_eq!(tree_hash(7, &Short), Err(TlogError::HashReaderMisbehaved { want: 3, got: 1 }));
        assert!(prove_record(7, 3, &Short).is_err());
    }

    #[test]
    fn memory_hashes_reject_partial_records() {
        let mut m = MemoryHashes::from_entries(["a", "b"]).unwrap_or_default();
        assert_eq!(m.tree_size(), Ok(2));
        m.0.pop();
        assert!(m.tree_size().is_err());
    }
}
