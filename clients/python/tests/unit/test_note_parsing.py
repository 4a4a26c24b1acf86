"""Signed-note and checkpoint inputs beyond the vectors: each malformed shape is refused."""

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from quis_client.tlog import (
    BadSignature,
    Checkpoint,
    MalformedCheckpoint,
    MalformedKey,
    MalformedNote,
    Note,
    VerifierKey,
    key_id,
    verify_checkpoint,
    verify_note,
)

from _vectors import vectors_dir

VALID = json.loads((vectors_dir() / "c2sp" / "notes.json").read_text())[0]
SIG_LINE = VALID["note"].split("\n\n", 1)[1].split("\n")[0]


def _note(text, *lines):
    return text + "\n" + "".join(line + "\n" for line in lines)


TEXT = "quis.example/audit\n1000\nNGxrnLicS3b6ydyyDNqG46AcCldBfBOQKOrNRTj96Vs=\n"


@pytest.mark.parametrize(
    "message",
    [
        TEXT + "\n" + SIG_LINE,  # signatures do not end with a newline
        TEXT + "\n",  # a blank line but no signature
        TEXT + "\n" + SIG_LINE.replace(" ", "  ", 1) + "\n",  # two spaces after the dash
        TEXT + "\n" + SIG_LINE + "\n\n",  # a blank line among the signatures
        TEXT + "\n" + SIG_LINE[:-4] + "!!!=" + "\n",  # not base64
        TEXT + "\n" + "\u2014 quis.example/audit AAAA\n",  # too short to hold a key id and a signature
        TEXT.replace("1000", "10\t00") + "\n" + SIG_LINE + "\n",  # a control character
        b"\xff" + (TEXT + "\n" + SIG_LINE + "\n").encode(),  # not UTF-8
        TEXT + "\n" + "\n".join([SIG_LINE] * 101) + "\n",  # too many signatures
    ],
)
def test_malformed_notes(message):
    with pytest.raises(MalformedNote):
        Note.parse(message)


@pytest.mark.parametrize(
    "text",
    [
        "quis.example/audit\n1000\n",  # no root
        "quis.example/audit\n01000\nNGxrnLicS3b6ydyyDNqG46AcCldBfBOQKOrNRTj96Vs=\n",  # leading zero
        "quis.example/audit\n-1\nNGxrnLicS3b6ydyyDNqG46AcCldBfBOQKOrNRTj96Vs=\n",
        "quis.example/audit\n18446744073709551616\nNGxrnLicS3b6ydyyDNqG46AcCldBfBOQKOrNRTj96Vs=\n",  # 2**64
        "quis.example/audit\n1000\nNGxrnLicS3b6ydyyDNqG46AcCldBfBOQKOrNRTj96Vs\n",  # unpadded
        "quis.example/audit\n1000\nNGxrnLicS3b6ydyyDNqG46AcCldBfBOQKOrNRTj96\n",  # 30 bytes
        "\n1000\nNGxrnLicS3b6ydyyDNqG46AcCldBfBOQKOrNRTj96Vs=\n",  # empty origin
        "quis.example/audit\n1000\nNGxrnLicS3b6ydyyDNqG46AcCldBfBOQKOrNRTj96Vs=\n\n",  # empty extension
        "quis.example/audit\n1000\nNGxrnLicS3b6ydyyDNqG46AcCldBfBOQKOrNRTj96Vs=",  # no final newline
    ],
)
def test_malformed_checkpoints(text):
    with pytest.raises(MalformedCheckpoint):
        Checkpoint.parse(text)


def test_checkpoint_signed_by_a_fresh_key_round_trips():
    priv = Ed25519PrivateKey.generate()
    public = priv.public_key().public_bytes_raw()
    name = "test.example/log"
    vkey = VerifierKey(name, key_id(name, 1, public), 1, public)
    text = f"{name}\n5\n{base64.b64encode(bytes(32)).decode()}\nextra\n"
    sig = base64.b64encode(vkey.key_id.to_bytes(4, "big") + priv.sign(text.encode())).decode()
    cp = verify_checkpoint(_note(text, f"\u2014 {name} {sig}"), [vkey.text()])
    assert (cp.origin, cp.size, cp.root, cp.extensions) == (name, 5, bytes(32), ("extra",))
    with pytest.raises(BadSignature):
        verify_checkpoint(_note(text.replace("5", "6", 1), f"\u2014 {name} {sig}"), [vkey.text()])


def test_key_roles_are_not_interchangeable():
    log_key, witness_key = VALID["log_vkeys"][0], VALID["witness_vkeys"][0]
    with pytest.raises(MalformedKey):
        verify_note(VALID["note"], [witness_key])
    with pytest.raises(MalformedKey):
        verify_note(VALID["note"], [log_key], [log_key])
