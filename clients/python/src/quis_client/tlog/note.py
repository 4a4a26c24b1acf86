"""Signed notes (c2sp.org/signed-note) with Ed25519 signatures and cosignatures.

- Verifier keys as text: `<name>+<8 hex digits key id>+<base64(type || 32-byte public key)>`.
- Key id: the first 4 bytes of SHA-256(name || 0x0A || type || public key).
- Type 0x01: an Ed25519 signature over the note text (a log key).
- Type 0x04: a c2sp.org/tlog-cosignature/v1 (a witness key): the signature line carries
  key id || 8-byte big-endian timestamp || Ed25519 signature over
  `cosignature/v1\\ntime <timestamp>\\n<note text>`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .errors import BadCosignature, BadSignature, MalformedKey, MalformedNote, NoKnownSignature, QuorumNotMet

TYPE_ED25519 = 0x01
TYPE_COSIGNATURE_V1 = 0x04
SIGNATURE_PREFIX = "\u2014 "  # em dash and a space
MAX_SIGNATURES = 100


def key_id(name: str, key_type: int, public_key: bytes) -> int:
    """The 4-byte key id of a named key, as a big-endian integer."""
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([key_type]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def _valid_key_name(name: str) -> bool:
    return bool(name) and not any(c.isspace() or c == "+" for c in name) and name.isprintable()


def _b64decode(text: str) -> bytes:
    """Strict standard base64: the alphabet and padding only."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as e:
        raise ValueError(f"not base64: {e}") from None
    return raw


@dataclass(frozen=True)
class VerifierKey:
    """A named public key that checks one kind of signature line."""

    name: str
    key_id: int
    key_type: int
    public_key: bytes

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        parts = text.strip().split("+", 2)  # the base64 part may itself hold '+'
        if len(parts) != 3:
            raise MalformedKey("a verifier key is <name>+<hex key id>+<base64 key>")
        name, hex_id, b64 = parts
        if not _valid_key_name(name):
            raise MalformedKey(f"invalid key name {name!r}")
        if len(hex_id) != 8 or any(c not in "0123456789abcdef" for c in hex_id):
            raise MalformedKey("the key id must be 8 lowercase hex digits")
        try:
            raw = _b64decode(b64)
        except ValueError as e:
            raise MalformedKey(str(e)) from None
        if len(raw) != 33:
            raise MalformedKey(f"the key must be a type byte and 32 bytes, got {len(raw)} bytes")
        key_type, public_key = raw[0], raw[1:]
        if key_type not in (TYPE_ED25519, TYPE_COSIGNATURE_V1):
            raise MalformedKey(f"unsupported key type 0x{key_type:02x}")
        kid = int(hex_id, 16)
        if key_id(name, key_type, public_key) != kid:
            raise MalformedKey(f"key id {hex_id} does not match the key")
        return cls(name, kid, key_type, public_key)

    def text(self) -> str:
        b64 = base64.b64encode(bytes([self.key_type]) + self.public_key).decode()
        return f"{self.name}+{self.key_id:08x}+{b64}"

    def _verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
            return True
        except InvalidSignature:
            return False


def parse_keys(keys: Iterable[str | VerifierKey] | str | None) -> list[VerifierKey]:
    """Verifier keys from key objects, texts, or one space-separated text."""
    if keys is None:
        return []
    if isinstance(keys, str):
        keys = keys.split()
    return [k if isinstance(k, VerifierKey) else VerifierKey.parse(k) for k in keys]


@dataclass(frozen=True)
class Signature:
    """One signature line: the key's name, its id and the bytes after the id."""

    name: str
    key_id: int
    body: bytes


@dataclass(frozen=True)
class Note:
    """A parsed (not yet verified) signed note."""

    text: str
    signatures: tuple[Signature, ...]

    @classmethod
    def parse(cls, message: str | bytes) -> Note:
        if isinstance(message, bytes):
            try:
                message = message.decode("utf-8")
            except UnicodeDecodeError:
                raise MalformedNote("not UTF-8") from None
        if any((ord(c) < 0x20 and c != "\n") or c in "\x7f\ufeff" for c in message):
            raise MalformedNote("control characters other than newline")
        split = message.rfind("\n\n")
        if split < 0:
            raise MalformedNote("no blank line between the text and the signatures")
        text, sig_block = message[: split + 1], message[split + 2 :]
        if not sig_block.endswith("\n"):
            raise MalformedNote("the signatures must end with a newline")
        lines = sig_block[:-1].split("\n")
        if len(lines) > MAX_SIGNATURES:
            raise MalformedNote("too many signatures")
        sigs = []
        for line in lines:
            if not line.startswith(SIGNATURE_PREFIX):
                raise MalformedNote("a signature line must start with an em dash and a space")
            name, sep, b64 = line[len(SIGNATURE_PREFIX) :].partition(" ")
            if not sep or not _valid_key_name(name) or " " in b64:
                raise MalformedNote("a signature line is `\u2014 <name> <base64>`")
            try:
                raw = _b64decode(b64)
            except ValueError as e:
                raise MalformedNote(str(e)) from None
            if len(raw) < 5:
                raise MalformedNote("a signature must hold a key id and a signature")
            sigs.append(Signature(name, int.from_bytes(raw[:4], "big"), raw[4:]))
        return cls(text, tuple(sigs))


@dataclass(frozen=True)
class VerifiedNote:
    """A note whose log signature verified, with the witnesses whose cosignatures verified."""

    text: str
    log_keys: tuple[str, ...]
    cosigners: dict[str, int] = field(default_factory=dict)  # witness name -> timestamp (unix seconds)


def cosigned_message(text: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n{text}".encode()


def verify_note(
    message: str | bytes | Note,
    log_keys: Iterable[str | VerifierKey] | str,
    witness_keys: Iterable[str | VerifierKey] | str | None = None,
    quorum: int = 0,
) -> VerifiedNote:
    """Verifies a signed note.

    At least one of `log_keys` must have signed; every line from a known key (log or
    witness) must verify; lines from unknown keys are ignored, as the spec requires; at
    least `quorum` distinct witnesses among `witness_keys` must have cosigned.
    """
    note = message if isinstance(message, Note) else Note.parse(message)
    logs = parse_keys(log_keys)
    witnesses = parse_keys(witness_keys)
    if any(k.key_type != TYPE_ED25519 for k in logs):
        raise MalformedKey("log keys must be Ed25519 keys (type 0x01)")
    if any(k.key_type != TYPE_COSIGNATURE_V1 for k in witnesses):
        raise MalformedKey("witness keys must be cosignature/v1 keys (type 0x04)")
    known = {(k.name, k.key_id): k for k in [*logs, *witnesses]}
    text_bytes = note.text.encode()
    signed_by: list[str] = []
    cosigners: dict[str, int] = {}
    for sig in note.signatures:
        key = known.get((sig.name, sig.key_id))
        if key is None:
            continue
        if key.key_type == TYPE_ED25519:
            if len(sig.body) != 64 or not key._verify(text_bytes, sig.body):
                raise BadSignature(f"log signature by {key.name} does not verify")
            signed_by.append(key.name)
        else:
            if len(sig.body) != 8 + 64:
                raise BadCosignature(f"cosignature by {key.name} has the wrong length")
            (timestamp,) = struct.unpack(">Q", sig.body[:8])
            if not key._verify(cosigned_message(note.text, timestamp), sig.body[8:]):
                raise BadCosignature(f"cosignature by {key.name} does not verify")
            cosigners[key.name] = timestamp
    if not signed_by:
        raise NoKnownSignature("no known log key signed the note")
    if len(cosigners) < quorum:
        raise QuorumNotMet(f"{len(cosigners)} of the known witnesses cosigned, the quorum is {quorum}")
    return VerifiedNote(note.text, tuple(signed_by), cosigners)
