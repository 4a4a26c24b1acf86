"""quis.vault.v1.VaultService: guarded reads with purpose and case on every access call, ingest,
break-glass, and a subject's access history with every proof checked by the independent verifier."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from google.protobuf import duration_pb2
from quis.ledger.v1 import ledger_pb2 as lpb
from quis.vault.v1 import vault_pb2 as pb

from .access import PURPOSES, case_name
from .tlog import Checkpoint, LogVerifier, ProofError

SERVICE = "quis.vault.v1.VaultService"


def purpose_value(purpose) -> int:
    """A quis.ledger.v1.Purpose from `CASEWORK`, `PURPOSE_CASEWORK` or its number."""
    if isinstance(purpose, int):
        if purpose not in lpb.Purpose.values() or purpose == 0:
            raise ValueError(f"{purpose} is not a quis.ledger.v1.Purpose value")
        return purpose
    name = str(purpose).upper()
    for candidate in (name, "PURPOSE_" + name):
        if candidate in lpb.Purpose.keys() and candidate != "PURPOSE_UNSPECIFIED":
            return lpb.Purpose.Value(candidate)
    raise ValueError(f"unknown purpose {purpose!r}; one of {', '.join(PURPOSES)}")


def access_context(purpose, case: str | None = None, justification: str = "") -> pb.AccessContext:
    """The purpose (required) and case of an access call."""
    if purpose is None:
        raise ValueError(f"an access call needs a purpose ({', '.join(PURPOSES)})")
    return pb.AccessContext(
        purpose=purpose_value(purpose), case=case_name(case) if case else "", justification=justification
    )


def subject_name(subject: str) -> str:
    return subject if subject.startswith("subjects/") else f"subjects/{subject}"


def field_value(name: str, value, sensitivity: int = pb.SENSITIVITY_BASIC) -> pb.Field:
    """A record field from a Python value (str, bool, int, bytes)."""
    f = pb.Field(name=name, sensitivity=sensitivity)
    if isinstance(value, bool):
        f.bool_value = value
    elif isinstance(value, int):
        f.int_value = value
    elif isinstance(value, bytes):
        f.bytes_value = value
    else:
        f.string_value = str(value)
    return f


def fields_dict(record: pb.Record) -> dict:
    """A record's fields as {name: value}."""
    out = {}
    for f in record.fields:
        which = f.WhichOneof("value")
        out[f.name] = getattr(f, which) if which else None
    return out


@dataclass(frozen=True)
class VerifiedHistory:
    """A subject's access history whose every item was proved against `checkpoint`."""

    checkpoint: Checkpoint
    items: list


def verify_access_history(
    response: pb.GetAccessHistoryResponse, subject: str, verifier: LogVerifier
) -> VerifiedHistory:
    """Checks a GetAccessHistory page without trusting the vault.

    The checkpoint's signature and witness quorum; for each item, its entry bytes (as stored,
    never re-encoded) hashed as an RFC 6962 leaf and proved included at its index in that tree;
    and the subject's commitment `SHA-256(salt || subject name)` found in the entry's access event
    (as the subject or among a search's results). Raises a VerificationError on any mismatch.
    """
    name = subject_name(subject)
    checkpoint = verifier.checkpoint(response.checkpoint)
    if response.tree_size and response.tree_size != checkpoint.size:
        raise ProofError(f"response tree size {response.tree_size} differs from its checkpoint's {checkpoint.size}")
    for item in response.items:
        verifier.inclusion(item.entry, item.ledger_index, list(item.inclusion_proof), checkpoint)
        entry = lpb.LedgerEntry.FromString(item.entry)
        if entry.event.WhichOneof("kind") != "access":
            raise ProofError(f"entry {item.ledger_index} is not an access event")
        access = entry.event.access
        digest = hashlib.sha256(item.subject_salt + name.encode()).digest()
        if not any(c.digest == digest for c in [access.subject, *access.results]):
            raise ProofError(f"entry {item.ledger_index} does not commit to {name} with the given salt")
        if (access.action, access.decision) != (item.action, item.decision):
            raise ProofError(f"entry {item.ledger_index} says another action or decision than the item")
    return VerifiedHistory(checkpoint, list(response.items))


class VaultClient:
    """Typed calls of the vault. Access calls take `purpose` (required) and `case`; keyword
    arguments `timeout` and `metadata` pass through to the call."""

    def __init__(self, client):
        self._svc = client.service(SERVICE)

    # Ingest (the `ingest` role).

    def create_subject(self, subject_id: str, subject: pb.Subject | None = None, **fields) -> pb.Subject:
        subject = subject if subject is not None else pb.Subject(**{k: v for k, v in fields.items() if k not in ("timeout", "metadata")})
        kw = {k: fields[k] for k in ("timeout", "metadata") if k in fields}
        return self._svc.CreateSubject(pb.CreateSubjectRequest(subject_id=subject_id, subject=subject), **kw).subject

    def create_record(
        self, subject: str, record_id: str, kind: str, fields: dict | Iterable[pb.Field], **kw
    ) -> pb.Record:
        """A record under a subject; `fields` as Field messages or {name: value} (BASIC sensitivity)."""
        if isinstance(fields, dict):
            fields = [field_value(n, v) for n, v in fields.items()]
        record = pb.Record(kind=kind, fields=list(fields))
        req = pb.CreateRecordRequest(parent=subject_name(subject), record_id=record_id, record=record)
        return self._svc.CreateRecord(req, **kw).record

    def update_record(self, record: pb.Record, paths: Iterable[str], expected_version: int = 0, **kw) -> pb.Record:
        req = pb.UpdateRecordRequest(record=record, expected_version=expected_version)
        req.update_mask.paths.extend(paths)
        return self._svc.UpdateRecord(req, **kw).record

    # Guarded access: purpose is required on every call.

    def get_record(
        self, name: str, *, purpose, case: str | None = None, fields: Iterable[str] = (), justification: str = "", **kw
    ) -> pb.GetRecordResponse:
        """A record minimized to what the purpose allows, with its audit receipt (ledger index)."""
        req = pb.GetRecordRequest(name=name, context=access_context(purpose, case, justification), fields=list(fields))
        return self._svc.GetRecord(req, **kw)

    def search_subjects(
        self, *, purpose, case: str | None = None, page_size: int = 0, page_token: str = "", justification: str = "",
        **query,
    ) -> pb.SearchSubjectsResponse:
        """One page of subjects matching the query (family_name, given_name, date_of_birth, postcode,
        reference_number)."""
        kw = {k: query.pop(k) for k in ("timeout", "metadata") if k in query}
        req = pb.SearchSubjectsRequest(
            query=pb.SubjectQuery(**query),
            context=access_context(purpose, case, justification),
            page_size=page_size,
            page_token=page_token,
        )
        return self._svc.SearchSubjects(req, **kw)

    def export_records(
        self, subjects: Iterable[str], *, purpose, case: str | None = None, kind: str = "", fields: Iterable[str] = (),
        justification: str = "", **kw,
    ):
        """A stream of ExportRecordsResponse batches (records and the receipt)."""
        req = pb.ExportRecordsRequest(
            subjects=[subject_name(s) for s in subjects],
            kind=kind,
            context=access_context(purpose, case, justification),
            fields=list(fields),
        )
        return self._svc.ExportRecords(req, **kw)

    def record_access(
        self, system: str, subject: str, reference: str, *, action=lpb.ACTION_READ, purpose, case: str | None = None,
        kind: str = "", fields: Iterable[str] = (), justification: str = "", **kw,
    ) -> pb.RecordAccessResponse:
        """Asks policy and records an access to a record held by another system (allowed fields back)."""
        req = pb.RecordAccessRequest(
            record=pb.ExternalRecord(system=system, subject=subject_name(subject), reference=reference, kind=kind),
            action=action,
            context=access_context(purpose, case, justification),
            fields=list(fields),
        )
        return self._svc.RecordAccess(req, **kw)

    # Break-glass.

    def start_break_glass(
        self, subjects: Iterable[str], justification: str, duration_s: int = 3600, case: str | None = None, **kw
    ) -> pb.StartBreakGlassResponse:
        req = pb.StartBreakGlassRequest(
            subjects=[subject_name(s) for s in subjects],
            justification=justification,
            duration=duration_pb2.Duration(seconds=duration_s),
            case=case_name(case) if case else "",
        )
        return self._svc.StartBreakGlass(req, **kw)

    def end_break_glass(self, name: str, **kw) -> pb.EndBreakGlassResponse:
        return self._svc.EndBreakGlass(pb.EndBreakGlassRequest(name=name), **kw)

    # Access history.

    def get_access_history(
        self, subject: str, *, page_size: int = 0, page_token: str = "", purpose=None, case: str | None = None, **kw
    ) -> pb.GetAccessHistoryResponse:
        """One page of who accessed a subject. A subject asks for their own without a purpose;
        staff (privacy officers) give one (e.g. AUDIT)."""
        req = pb.GetAccessHistoryRequest(parent=subject_name(subject), page_size=page_size, page_token=page_token)
        if purpose is not None:
            req.context.CopyFrom(access_context(purpose, case))
        return self._svc.GetAccessHistory(req, **kw)

    def iter_access_history(self, subject: str, *, page_size: int = 0, **kwargs) -> Iterator[pb.GetAccessHistoryResponse]:
        """Every page of a subject's access history (each page with its own checkpoint and proofs)."""
        token = ""
        while True:
            page = self.get_access_history(subject, page_size=page_size, page_token=token, **kwargs)
            yield page
            token = page.next_page_token
            if not token:
                return

    def verified_access_history(self, subject: str, verifier: LogVerifier, **kwargs) -> list:
        """Every item of a subject's access history, each page's proofs checked (raises if any fails)."""
        items = []
        for page in self.iter_access_history(subject, **kwargs):
            items.extend(verify_access_history(page, subject, verifier).items)
        return items

    # Keys (admin).

    def list_encryption_keys(self, **kw):
        return self._svc.ListEncryptionKeys.paginate(pb.ListEncryptionKeysRequest(), items="keys", **kw)

    def rotate_keys(self, batch_size: int = 0, **kw) -> pb.RotateKeysResponse:
        return self._svc.RotateKeys(pb.RotateKeysRequest(batch_size=batch_size), **kw)

    # The access index (admin).

    def rebuild_access_index(self, batch_size: int = 0, **kw) -> tuple[int, int]:
        """Rebuilds the whole access index from the ledger, range after range up to the latest
        checkpoint; returns (accesses indexed, rows that were missing and are restored)."""
        start, indexed, restored = 0, 0, 0
        while True:
            req = pb.RebuildAccessIndexRequest(start_index=start, batch_size=batch_size)
            done = self._svc.RebuildAccessIndex(req, **kw)
            start, indexed, restored = done.next_index, indexed + done.indexed, restored + done.restored
            if start == done.tree_size:
                return indexed, restored
