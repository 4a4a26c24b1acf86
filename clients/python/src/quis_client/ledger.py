"""quis.ledger.v1.LedgerService, with the proofs checked by the independent verifier."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator

from quis.ledger.v1 import ledger_pb2 as pb

from .tlog import Checkpoint, LogVerifier, ProofError

SERVICE = "quis.ledger.v1.LedgerService"


def commitment(value: str, salt: bytes | None = None) -> tuple[pb.Commitment, pb.EventDetail]:
    """A commitment SHA-256(salt || value) to a personal value and the detail that opens it."""
    salt = os.urandom(32) if salt is None else salt
    digest = hashlib.sha256(salt + value.encode()).digest()
    return pb.Commitment(digest=digest), pb.EventDetail(salt=salt, value=value)


def decode_entry(data: bytes) -> pb.LedgerEntry:
    """Decodes stored entry bytes (for reading; proofs are always checked over the bytes themselves)."""
    return pb.LedgerEntry.FromString(data)


class LedgerClient:
    """Typed calls of the ledger. Keyword arguments `timeout` and `metadata` pass through to the call."""

    def __init__(self, client):
        self._svc = client.service(SERVICE)

    def append_events(self, events: Iterable[pb.Event], details: Iterable[pb.EventDetail] = (), **kw):
        """Appends events (service principals only); returns AppendEventsResponse (indices, tree_size)."""
        return self._svc.AppendEvents(pb.AppendEventsRequest(events=list(events), details=list(details)), **kw)

    def get_checkpoint(self, **kw) -> pb.GetCheckpointResponse:
        return self._svc.GetCheckpoint(pb.GetCheckpointRequest(), **kw)

    def get_entries(self, start_index: int, end_index: int, page_size: int = 0, page_token: str = "", **kw):
        """One page of entries [start_index, end_index)."""
        req = pb.GetEntriesRequest(
            start_index=start_index, end_index=end_index, page_size=page_size, page_token=page_token
        )
        return self._svc.GetEntries(req, **kw)

    def iter_entries(self, start_index: int, end_index: int, page_size: int = 0, **kw) -> Iterator[pb.StoredEntry]:
        """Every entry in [start_index, end_index), across pages."""
        req = pb.GetEntriesRequest(start_index=start_index, end_index=end_index, page_size=page_size)
        return self._svc.GetEntries.paginate(req, items="entries", **kw)

    def get_inclusion_proof(self, index: int, tree_size: int = 0, **kw) -> pb.GetInclusionProofResponse:
        return self._svc.GetInclusionProof(pb.GetInclusionProofRequest(index=index, tree_size=tree_size), **kw)

    def get_consistency_proof(self, from_size: int, to_size: int = 0, **kw) -> pb.GetConsistencyProofResponse:
        return self._svc.GetConsistencyProof(pb.GetConsistencyProofRequest(from_size=from_size, to_size=to_size), **kw)

    def tail_events(self, start_index: int = 0, **kw):
        """A stream of StoredEntry from `start_index` on, following new entries; `cancel()` to stop."""
        return self._svc.TailEvents(pb.TailEventsRequest(start_index=start_index), **kw).map(lambda r: r.entry)

    def get_event_detail(self, entry_index: int, digest: bytes, **kw) -> pb.GetEventDetailResponse:
        """The value behind commitment `digest` of the entry at `entry_index`."""
        req = pb.GetEventDetailRequest(entry_index=entry_index, digest=digest)
        return self._svc.GetEventDetail(req, **kw)

    def get_event_details(self, commitments: Iterable[tuple[int, bytes]], **kw) -> pb.GetEventDetailsResponse:
        """The values behind up to 1000 (entry index, digest) commitments; erased ones are left out."""
        pairs = list(commitments)
        req = pb.GetEventDetailsRequest(entry_indexes=[i for i, _ in pairs], digests=[d for _, d in pairs])
        return self._svc.GetEventDetails(req, **kw)

    def erase_event_detail(self, entry_index: int, digest: bytes, reason: str, **kw) -> pb.EraseEventDetailResponse:
        req = pb.EraseEventDetailRequest(entry_index=entry_index, digest=digest, reason=reason)
        return self._svc.EraseEventDetail(req, **kw)

    # Verified reads: nothing below trusts the server's word.

    def verified_checkpoint(self, verifier: LogVerifier, **kw) -> Checkpoint:
        """The latest checkpoint, its signature and cosignature quorum verified."""
        return verifier.checkpoint(self.get_checkpoint(**kw).checkpoint)

    def prove_inclusion(
        self, entry: pb.StoredEntry, verifier: LogVerifier, checkpoint: Checkpoint | None = None, **kw
    ) -> Checkpoint:
        """Checks that the exact stored bytes of `entry` are in the log and returns the checkpoint proved against.

        Without `checkpoint`, against the latest one, which comes with the proof and is verified
        here; with one (verified earlier, e.g. kept from a previous audit), against its tree.
        """
        proof = self.get_inclusion_proof(entry.index, checkpoint.size if checkpoint else 0, **kw)
        if checkpoint is None:
            checkpoint = verifier.checkpoint(proof.checkpoint)
        if proof.tree_size != checkpoint.size:
            raise ProofError(f"the proof is for tree size {proof.tree_size}, the checkpoint's is {checkpoint.size}")
        verifier.inclusion(entry.data, entry.index, proof.hashes, checkpoint)
        return checkpoint

    def prove_consistency(self, old: Checkpoint, new: Checkpoint, verifier: LogVerifier, **kw) -> None:
        """Checks that the tree of `old` is a prefix of the tree of `new` (both already verified)."""
        if old.size == new.size:
            verifier.consistency(old, new, [])
            return
        proof = self.get_consistency_proof(old.size, new.size, **kw)
        verifier.consistency(old, new, proof.hashes)
