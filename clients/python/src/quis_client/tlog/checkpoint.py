"""Checkpoints (c2sp.org/tlog-checkpoint): origin, tree size, root hash, then extension lines."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from .errors import MalformedCheckpoint
from .note import VerifierKey, verify_note

_DECIMAL = re.compile(r"(0|[1-9][0-9]*)")


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()
    # Filled in by verify_checkpoint: witness name -> cosignature timestamp.
    cosigners: dict[str, int] = field(default_factory=dict)
    # The note text the signatures cover.
    text: str = ""

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        if not text.endswith("\n"):
            raise MalformedCheckpoint("the checkpoint text must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise MalformedCheckpoint("a checkpoint has an origin, a size and a root hash line")
        origin, size_line, root_line, *extensions = lines
        if not origin or not origin.isprintable():
            raise MalformedCheckpoint("empty or unprintable origin")
        if not _DECIMAL.fullmatch(size_line) or int(size_line) >= 1 << 64:
            raise MalformedCheckpoint(f"tree size {size_line!r} is not a decimal number")
        try:
            root = base64.b64decode(root_line.encode("ascii"), validate=True)
        except (ValueError, UnicodeEncodeError):
            raise MalformedCheckpoint("root hash is not base64") from None
        if len(root) != 32 or base64.b64encode(root).decode() != root_line:
            raise MalformedCheckpoint("root hash must be the canonical base64 of 32 bytes")
        if any(not e for e in extensions):
            raise MalformedCheckpoint("empty extension line")
        return cls(origin, int(size_line), root, tuple(extensions), text=text)


def verify_checkpoint(
    note: str | bytes,
    log_keys: Iterable[str | VerifierKey] | str,
    witness_keys: Iterable[str | VerifierKey] | str | None = None,
    quorum: int = 0,
    origin: str | None = None,
) -> Checkpoint:
    """Verifies a signed checkpoint note and returns the checkpoint with its verified cosigners.

    `origin` defaults to the log key's name (the C2SP convention); a checkpoint for any
    other origin is refused.
    """
    verified = verify_note(note, log_keys, witness_keys, quorum)
    cp = Checkpoint.parse(verified.text)
    expected = origin if origin is not None else verified.log_keys[0]
    if cp.origin != expected:
        raise MalformedCheckpoint(f"origin {cp.origin!r} is not the expected {expected!r}")
    return Checkpoint(cp.origin, cp.size, cp.root, cp.extensions, dict(verified.cosigners), cp.text)
