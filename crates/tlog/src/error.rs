//! The one error type of the crate.
//!
//! Variants name precisely what is wrong, because `quis verify` prints them to the
//! person checking the log and the witness maps them to HTTP status codes.

use thiserror::Error;

/// Everything that can go wrong while building, parsing or verifying the ledger's formats.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TlogError {
    /// An inclusion proof does not lead from the leaf to the root it claims.
    #[error("inclusion proof is invalid")]
    InclusionProofInvalid,
    /// A consistency proof does not connect the old root to the new one.
    #[error("consistency proof is invalid")]
    ConsistencyProofInvalid,
    /// A record index (or old tree size) lies outside the tree it is checked against.
    #[error("index {index} is out of range for a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    /// A consistency check was asked between sizes that admit none (old size 0, or old > new).
    #[error("no consistency proof exists from tree size {old_size} to tree size {size}")]
    InvalidTreeSizes { old_size: u64, size: u64 },
    /// A hash the computation needs is not available from the hash reader.
    #[error("stored hash {index} is not available")]
    HashNotFound { index: u64 },
    /// A hash reader broke its contract (returned a different number of hashes than asked).
    #[error("hash reader returned {got} hashes for {want} indexes")]
    HashReaderMisbehaved { want: usize, got: usize },
    /// The stored hashes do not describe a whole number of records.
    #[error("stored hashes are inconsistent: {0}")]
    StoredHashesInconsistent(String),
    /// A tile needed to answer a read is missing from the fetched set.
    #[error("tile {path} is needed but was not fetched")]
    TileMissing { path: String },
    /// A fetched tile has the wrong length for its path.
    #[error("tile {path} holds {len} bytes, expected {want}")]
    TileSizeInvalid { path: String, len: usize, want: usize },
    /// A tile lies beyond any tree whose size fits in a `u64`.
    #[error("tile {path} lies beyond any possible tree")]
    TileOutOfRange { path: String },
    /// A tile path is not one of the canonical forms of c2sp.org/tlog-tiles.
    #[error("malformed tile path {0:?}")]
    MalformedTilePath(String),
    /// An entry cannot be put in an entry bundle (length prefix is a u16).
    #[error("entry of {len} bytes is too large for an entry bundle (max 65535)")]
    EntryTooLarge { len: usize },
    /// An entry bundle does not decode.
    #[error("malformed entry bundle: {0}")]
    MalformedBundle(String),
    /// A signed note violates c2sp.org/signed-note.
    #[error("malformed note: {0}")]
    MalformedNote(String),
    /// A note's text is not a c2sp.org/tlog-checkpoint body.
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(String),
    /// A verifier key string (`name+keyid+base64`) is malformed.
    #[error("malformed verifier key: {0}")]
    MalformedVerifierKey(String),
    /// A key name is empty or holds a space or a plus sign.
    #[error("invalid key name {0:?}")]
    InvalidKeyName(String),
    /// A key type byte this crate does not implement (only 0x01 and 0x04 are).
    #[error("unsupported key type 0x{0:02x}")]
    UnsupportedKeyType(u8),
    /// A key was used for the wrong kind of signature.
    #[error("key {key} has type 0x{got:02x}, expected 0x{expected:02x}")]
    WrongKeyType { key: String, expected: u8, got: u8 },
    /// A signature by a known key does not verify: the whole note is rejected.
    #[error("signature by {key} does not verify")]
    BadSignature { key: String },
    /// No signature by any of the trusted log keys is on the note.
    #[error("no signature by a known log key")]
    NoLogSignature,
    /// A witness `add-checkpoint` request or response is malformed.
    #[error("malformed witness message: {0}")]
    MalformedWitnessMessage(String),
    /// Any other malformed input.
    #[error("malformed input: {0}")]
    Malformed(String),
}
