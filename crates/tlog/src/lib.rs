//! The ledger's formats, as pure functions: no I/O, no async, no clock.
//!
//! Used by the ledger service (to build trees, tiles and checkpoints), the witness (to
//! check consistency and cosign), `quis verify` and sentinel (to check everything), and
//! the tests. Everything follows the C2SP specifications and RFC 6962 / RFC 9162 exactly,
//! so that existing transparency-log tools and public witnesses can check the log:
//!
//! - Merkle tree ([`leaf_hash`], [`node_hash`], proofs): RFC 6962 §2.1, verified with the
//!   RFC 9162 §2.1.3.2 / §2.1.4.2 algorithms; hashes are stored in the "stored hash"
//!   layout of Go's `golang.org/x/mod/sumdb/tlog`, so a store appends
//!   [`stored_hashes`] per record and any proof is a handful of indexed reads.
//! - [`note`]: c2sp.org/signed-note, with Ed25519 keys of type 0x01 (log) and 0x04
//!   (c2sp.org/tlog-cosignature `cosignature/v1` witness keys).
//! - [`checkpoint`]: c2sp.org/tlog-checkpoint, signing, cosigning and opening notes.
//! - [`tile`]: c2sp.org/tlog-tiles paths, tile contents and entry bundles.
//! - [`witness`]: the c2sp.org/tlog-witness `add-checkpoint` messages.
//!
//! # Example
//!
//! ```
//! use quis_tlog::checkpoint::{self, Checkpoint};
//! use quis_tlog::note::{KEY_TYPE_COSIGNATURE_V1, KEY_TYPE_ED25519, Signer};
//! use quis_tlog::{MemoryHashes, check_record, leaf_hash, prove_record, tree_hash};
//!
//! # fn main() -> Result<(), quis_tlog::TlogError> {
//! let tree = MemoryHashes::from_entries(["a", "b", "c"])?;
//! let root = tree_hash(3, &tree)?;
//! let proof = prove_record(3, 1, &tree)?;
//! check_record(&proof, 3, &root, 1, &leaf_hash(b"b"))?;
//!
//! let log = Signer::new("quis.example/audit", KEY_TYPE_ED25519, [1; 32])?;
//! let witness = Signer::new("witness.example", KEY_TYPE_COSIGNATURE_V1, [2; 32])?;
//! let cp = Checkpoint { origin: "quis.example/audit".into(), size: 3, root, extensions: vec![] };
//! let note = checkpoint::sign(&cp, &[&log])?;
//! let cosig = checkpoint::cosign(&cp.body(), &witness, 1_764_100_000)?;
//! let note = checkpoint::add_signatures(&note, &[cosig])?;
//! let verified = checkpoint::open(&note, &[log.verifier()], &[witness.verifier()])?;
//! assert_eq!(verified.cosigners, vec![("witness.example".to_string(), 1_764_100_000)]);
//! # Ok(())
//! # }
//! ```
//!
//! # Why not Cloudflare's `tlog_tiles` / `signed_note` crates
//!
//! Both (0.2.0, the latest on crates.io) were evaluated against the project's vectors and
//! the C2SP texts, and not used:
//!
//! - `signed_note` only implements key type 0x01: its verifier rejects the witnesses'
//!   type-0x04 verifier keys (`unknown verifier algorithm`) and it has no notion of
//!   `cosignature/v1` timestamps, so the cosignature half — most of what the witness and
//!   `quis verify` need — would have to be written here anyway.
//! - `tlog_tiles` implements the Go *sumdb* tile layout (`tile/<H>/<L>/<N>`, `tile/<H>/data/…`),
//!   not c2sp.org/tlog-tiles (`tile/<L>/<N>`, `tile/entries/<N>`): it rejects every tile
//!   path in `tiles.json`, has no entry bundles, and `Tile::from_path("tile/8/0/000.p/0")`
//!   panics (an assertion in `Tile::new`), which is not acceptable for a parser of
//!   requests. Its tree code asserts on a misbehaving hash reader instead of returning an
//!   error, and its `Hash` newtype differs from the `[u8; 32]` the rest of Quis uses.
//! - Both pull in `base64` 0.21 and `thiserror` 1 next to the workspace's 0.22 and 2.
//!
//! What is reused is the design: the stored-hash layout and the proof construction are
//! those of Go's `sumdb/tlog` (which both crates port), and verification is the RFC 9162
//! algorithm; the vectors in `tests/vectors` decide.
#![forbid(unsafe_code)]

mod error;
mod tree;

pub mod checkpoint;
#[cfg(feature = "client")]
pub mod client;
pub mod note;
pub mod tile;
pub mod witness;

pub use error::TlogError;
pub use tree::{
    EMPTY_HASH, HASH_SIZE, Hash, HashReader, MemoryHashes, check_record, check_tree, leaf_hash, node_hash,
    prove_record, prove_tree, record_proof_indexes, split_stored_hash_index, stored_hash_count, stored_hash_index,
    stored_hashes, tree_hash, tree_hash_indexes, tree_proof_indexes,
};
