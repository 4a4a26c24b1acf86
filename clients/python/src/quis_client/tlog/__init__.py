"""An independent verifier for Quis's ledger, written against the C2SP specifications.

It shares no code with Quis: signed notes and cosignatures (c2sp.org/signed-note,
tlog-cosignature), checkpoints (tlog-checkpoint), RFC 6962 hashes and proofs, and
tiles (tlog-tiles). Every check raises a `VerificationError` subclass on failure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .checkpoint import Checkpoint, verify_checkpoint
from .errors import (
    BadCosignature,
    BadSignature,
    MalformedCheckpoint,
    MalformedKey,
    MalformedNote,
    NoKnownSignature,
    ProofError,
    QuorumNotMet,
    TileError,
    VerificationError,
)
from .merkle import (
    leaf_hash,
    node_hash,
    root_from_inclusion_proof,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from .note import Note, VerifiedNote, VerifierKey, key_id, parse_keys, verify_note
from .tiles import (
    TileClient,
    TileHashReader,
    entries_path,
    index_path,
    parse_entry_bundle,
    root_from_entry_bundles,
    tile_path,
)

__all__ = [
    "BadCosignature",
    "BadSignature",
    "Checkpoint",
    "LogVerifier",
    "MalformedCheckpoint",
    "MalformedKey",
    "MalformedNote",
    "NoKnownSignature",
    "Note",
    "ProofError",
    "QuorumNotMet",
    "TileClient",
    "TileError",
    "TileHashReader",
    "VerificationError",
    "VerifiedNote",
    "VerifierKey",
    "entries_path",
    "index_path",
    "key_id",
    "leaf_hash",
    "node_hash",
    "parse_entry_bundle",
    "parse_keys",
    "root_from_entry_bundles",
    "root_from_inclusion_proof",
    "root_from_leaf_hashes",
    "tile_path",
    "verify_checkpoint",
    "verify_consistency",
    "verify_inclusion",
    "verify_note",
]


@dataclass
class LogVerifier:
    """What a client trusts about one log: its key(s), its witnesses and their quorum."""

    log_keys: Sequence[str | VerifierKey] | str
    witness_keys: Sequence[str | VerifierKey] | str = ()
    quorum: int = 0
    origin: str | None = None

    def __post_init__(self):
        self.log_keys = parse_keys(self.log_keys)
        self.witness_keys = parse_keys(self.witness_keys)
        if not self.log_keys:
            raise MalformedKey("at least one log key is needed")
        if self.quorum > len(self.witness_keys):
            raise ValueError(f"quorum {self.quorum} exceeds the {len(self.witness_keys)} witness keys")

    def checkpoint(self, note: str | bytes) -> Checkpoint:
        """Verifies a signed checkpoint (log signature, cosignature quorum, origin)."""
        return verify_checkpoint(note, self.log_keys, self.witness_keys, self.quorum, self.origin)

    @staticmethod
    def inclusion(entry: bytes, index: int, proof: Iterable[bytes], checkpoint: Checkpoint) -> None:
        """Checks that the exact stored `entry` bytes are leaf `index` of the checkpoint's tree."""
        verify_inclusion(index, checkpoint.size, leaf_hash(entry), list(proof), checkpoint.root)

    @staticmethod
    def consistency(old: Checkpoint, new: Checkpoint, proof: Iterable[bytes]) -> None:
        """Checks that the tree of `old` is a prefix of the tree of `new`."""
        verify_consistency(old.size, new.size, list(proof), old.root, new.root)
