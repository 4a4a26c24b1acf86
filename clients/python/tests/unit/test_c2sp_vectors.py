"""Every C2SP vector: keys, signed notes (valid accepted, invalid rejected for the stated reason), tiles."""

import base64
import json
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from quis_client.tlog import (
    BadCosignature,
    BadSignature,
    MalformedNote,
    NoKnownSignature,
    Note,
    VerifierKey,
    entries_path,
    index_path,
    key_id,
    leaf_hash,
    parse_entry_bundle,
    root_from_leaf_hashes,
    tile_path,
    verify_checkpoint,
)
from quis_client.tlog.note import cosigned_message
from quis_client.tlog.tiles import encode_entry_bundle, tile_width

from _vectors import vectors_dir

C2SP = vectors_dir() / "c2sp"
KEYS = json.loads((C2SP / "keys.json").read_text())
NOTES = json.loads((C2SP / "notes.json").read_text())
TILES = json.loads((C2SP / "tiles.json").read_text())

WHY = {
    "log signature does not verify": BadSignature,
    "no known log key signed": NoKnownSignature,
    "cosignature does not verify": BadCosignature,
    "malformed note": MalformedNote,
}


@pytest.mark.parametrize("k", KEYS["keys"], ids=[f"{k['name']}+{k['key_id_hex']}" for k in KEYS["keys"]])
def test_key(k):
    public = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(k["seed_hex"])).public_key().public_bytes_raw()
    assert public.hex() == k["public_hex"]
    assert f"{key_id(k['name'], k['type'], public):08x}" == k["key_id_hex"]
    vk = VerifierKey.parse(k["vkey"])
    assert (vk.name, vk.key_type, vk.public_key) == (k["name"], k["type"], public)
    assert vk.text() == k["vkey"]


def test_spec_example_key():
    vk = VerifierKey.parse(KEYS["spec_example_vkey"])
    assert (vk.name, f"{vk.key_id:08x}", vk.key_type) == ("example.com/foo", "530d903a", 1)


@pytest.mark.parametrize(
    "bad",
    [
        "example.com/foo+530d903b+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2",
        "example.com/foo+530d903a",
        "example.com/foo 530d903a AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        "+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
    ],
)
def test_malformed_keys_rejected(bad):
    from quis_client.tlog import MalformedKey

    with pytest.raises(MalformedKey):
        VerifierKey.parse(bad)


@pytest.mark.parametrize("v", NOTES, ids=[v["desc"] for v in NOTES])
def test_note(v):
    if not v["want_valid"]:
        with pytest.raises(WHY[v["why_invalid"]]):
            verify_checkpoint(v["note"], v["log_vkeys"], v["witness_vkeys"])
        return
    cp = verify_checkpoint(v["note"], v["log_vkeys"], v["witness_vkeys"])
    want = v["want"]
    assert cp.origin == want["origin"]
    assert cp.size == want["size"]
    assert base64.b64encode(cp.root).decode() == want["root_b64"]
    assert cp.cosigners == want["cosigners"]


def _seeds():
    return {(k["name"], int(k["key_id_hex"], 16)): (k["type"], bytes.fromhex(k["seed_hex"])) for k in KEYS["keys"]}


@pytest.mark.parametrize("v", [v for v in NOTES if v["want_valid"]], ids=lambda v: v["desc"])
def test_valid_notes_reproduced_from_seeds(v):
    """Ed25519 is deterministic: re-signing the text with the seeds gives the same note, byte for byte."""
    note = Note.parse(v["note"])
    seeds = _seeds()
    lines = []
    for sig in note.signatures:
        key_type, seed = seeds[(sig.name, sig.key_id)]
        priv = Ed25519PrivateKey.from_private_bytes(seed)
        if key_type == 1:
            body = priv.sign(note.text.encode())
        else:
            (ts,) = struct.unpack(">Q", sig.body[:8])
            body = sig.body[:8] + priv.sign(cosigned_message(note.text, ts))
        lines.append(f"\u2014 {sig.name} {base64.b64encode(sig.key_id.to_bytes(4, 'big') + body).decode()}\n")
    assert note.text + "\n" + "".join(lines) == v["note"]


def test_valid_tree_is_entry_0_to_999():
    root = root_from_leaf_hashes([leaf_hash(f"entry {i}".encode()) for i in range(1000)])
    assert base64.b64encode(root).decode() == NOTES[0]["want"]["root_b64"]


def test_quorum_is_enforced():
    from quis_client.tlog import QuorumNotMet

    two = NOTES[0]
    assert len(verify_checkpoint(two["note"], two["log_vkeys"], two["witness_vkeys"], quorum=2).cosigners) == 2
    one = NOTES[1]
    with pytest.raises(QuorumNotMet):
        verify_checkpoint(one["note"], one["log_vkeys"], one["witness_vkeys"], quorum=1)


def test_wrong_origin_rejected():
    from quis_client.tlog import MalformedCheckpoint

    v = NOTES[0]
    with pytest.raises(MalformedCheckpoint):
        verify_checkpoint(v["note"], v["log_vkeys"], v["witness_vkeys"], origin="other.example/log")


@pytest.mark.parametrize("t", TILES["tile_paths"], ids=lambda t: str(t["index"]))
def test_tile_index_path(t):
    assert index_path(t["index"]) == t["path"]
    assert tile_path(0, t["index"]) == f"tile/0/{t['path']}"
    assert entries_path(t["index"]) == f"tile/entries/{t['path']}"


@pytest.mark.parametrize("t", TILES["partial_examples"], ids=lambda t: t["path"])
def test_partial_tile_path(t):
    assert tile_path(t["level"], t["tile"], tile_width(t["tree_size"], t["level"], t["tile"])) == t["path"]


def test_entry_bundle():
    ex = TILES["entries_bundle_example"]
    entries = [base64.b64decode(e) for e in ex["entries_b64"]]
    bundle = base64.b64decode(ex["bundle_b64"])
    assert parse_entry_bundle(bundle) == entries
    assert encode_entry_bundle(entries) == bundle
