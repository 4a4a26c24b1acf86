"""The ledger: append as the vault does (its service token, on the ledger's own address, since
the gateway keeps AppendEvents internal), read back through the gateway as auditor, and check
every proof with the independent verifier; tampered inputs are rejected."""

import hashlib
import threading

import pytest
from quis.ledger.v1 import ledger_pb2 as pb

from quis_client import InvalidArgument, NotFound, PermissionDenied
from quis_client.ledger import decode_entry
from quis_client.tlog import (
    BadSignature,
    Checkpoint,
    ProofError,
    TileClient,
    TileError,
    TileHashReader,
    leaf_hash,
    root_from_entry_bundles,
)

from _events import access_events
from conftest import wait_witnessed


@pytest.fixture(scope="module")
def appended(vault):
    """Three access events appended by the vault service principal."""
    events, details, subjects = access_events(3)
    resp = vault.ledger.append_events(events, details)
    assert len(resp.indices) == 3 and list(resp.indices) == sorted(resp.indices)
    assert resp.tree_size >= resp.indices[-1] + 1
    return events, details, subjects, resp


def test_append_and_read_back_as_auditor(auditor, appended):
    events, _, _, resp = appended
    start, end = resp.indices[0], resp.indices[-1] + 1
    # page_size=1 makes every entry its own page: the helper must follow the tokens.
    stored = list(auditor.ledger.iter_entries(start, end, page_size=1))
    assert [e.index for e in stored] == list(resp.indices)
    for want, got in zip(events, stored, strict=True):
        entry = decode_entry(got.data)
        assert entry.appended_by == "vault"
        assert entry.event == want
        assert entry.sequence_time.seconds > 0
    page = auditor.ledger.get_entries(start, end, page_size=2)
    assert len(page.entries) == 2 and page.next_page_token


def test_event_detail_opens_the_commitment(auditor, appended):
    events, _, subjects, resp = appended
    digest = events[0].access.subject.digest
    detail = auditor.ledger.get_event_detail(resp.indices[0], digest)
    assert detail.value == subjects[0]
    assert hashlib.sha256(detail.salt + detail.value.encode()).digest() == digest
    assert detail.entry_index == resp.indices[0]
    both = auditor.ledger.get_event_details([(resp.indices[0], digest), (resp.indices[1], digest)])
    assert [d.entry_index for d in both.details] == [resp.indices[0]], "a commitment is found in its own entry only"
    with pytest.raises(InvalidArgument) as e:
        auditor.service("quis.ledger.v1.LedgerService").GetEventDetail(pb.GetEventDetailRequest(digest=digest))
    assert [v.field for v in e.value.field_violations] == ["entry_index"]


def test_erased_detail_leaves_the_log_verifiable(auditor, token_client, verifier, appended):
    events, _, _, resp = appended
    digest, index = events[1].access.record.digest, resp.indices[1]
    privacy = token_client("QUIS_TOKEN_PRIVACY")
    with pytest.raises(PermissionDenied):
        auditor.ledger.erase_event_detail(index, digest, "erasure request er-1")
    assert privacy.ledger.erase_event_detail(index, digest, "erasure request er-1").entry_index == index
    with pytest.raises(NotFound) as e:
        auditor.ledger.get_event_detail(index, digest)
    assert (e.value.domain, e.value.reason) == ("quis.ledger", "DETAIL_NOT_FOUND")
    # Only the value is gone: the entry, with its commitment, still proves.
    wait_witnessed(auditor, verifier, resp.tree_size)
    (entry,) = auditor.ledger.get_entries(index, index + 1).entries
    assert decode_entry(entry.data).event.access.record.digest == digest
    auditor.ledger.prove_inclusion(entry, verifier)


def test_checkpoint_signed_and_witnessed(auditor, verifier, appended):
    cp, resp = wait_witnessed(auditor, verifier, appended[3].tree_size)
    assert cp.origin == verifier.origin
    assert cp.size == resp.tree_size
    witness_name = verifier.witness_keys[0].name
    assert witness_name in cp.cosigners and cp.cosigners[witness_name] > 1_700_000_000


def test_inclusion_of_each_appended_entry(auditor, verifier, appended):
    _, _, _, resp = appended
    wait_witnessed(auditor, verifier, resp.tree_size)
    stored = list(auditor.ledger.iter_entries(resp.indices[0], resp.indices[-1] + 1))
    for entry in stored:
        cp = auditor.ledger.prove_inclusion(entry, verifier)
        assert cp.size > entry.index
        assert auditor.ledger.prove_inclusion(entry, verifier, checkpoint=cp) is cp
        proof = auditor.ledger.get_inclusion_proof(entry.index, cp.size)
        # The leaf hash is over the exact stored bytes; re-encoding is never needed.
        verifier.inclusion(entry.data, entry.index, proof.hashes, cp)

        tampered_entry = bytes([entry.data[0] ^ 1]) + entry.data[1:]
        with pytest.raises(ProofError):
            verifier.inclusion(tampered_entry, entry.index, proof.hashes, cp)
        if proof.hashes:
            bad = [bytes([proof.hashes[0][0] ^ 0x80]) + proof.hashes[0][1:], *proof.hashes[1:]]
            with pytest.raises(ProofError):
                verifier.inclusion(entry.data, entry.index, bad, cp)
        other_root = Checkpoint(cp.origin, cp.size, hashlib.sha256(b"other").digest())
        with pytest.raises(ProofError):
            verifier.inclusion(entry.data, entry.index, proof.hashes, other_root)


def test_tampered_checkpoint_rejected(auditor, verifier, appended):
    note = auditor.ledger.get_checkpoint().checkpoint
    origin, size, rest = note.split("\n", 2)
    with pytest.raises(BadSignature):
        verifier.checkpoint(f"{origin}\n{int(size) + 1}\n{rest}")
    root_line, rest2 = rest.split("\n", 1)
    other_root = __import__("base64").b64encode(hashlib.sha256(root_line.encode()).digest()).decode()
    with pytest.raises(BadSignature):
        verifier.checkpoint(f"{origin}\n{size}\n{other_root}\n{rest2}")


def test_consistency_between_two_checkpoints(vault, auditor, verifier, appended):
    old, _ = wait_witnessed(auditor, verifier, appended[3].tree_size)
    events, details, _ = access_events(2)
    resp = vault.ledger.append_events(events, details)
    new, _ = wait_witnessed(auditor, verifier, resp.tree_size)
    assert new.size > old.size
    auditor.ledger.prove_consistency(old, new, verifier)
    proof = auditor.ledger.get_consistency_proof(old.size, new.size)
    assert proof.from_size == old.size and proof.to_size == new.size
    verifier.consistency(old, new, proof.hashes)
    with pytest.raises(ProofError):
        verifier.consistency(old, new, [bytes([proof.hashes[0][0] ^ 1]) + proof.hashes[0][1:], *proof.hashes[1:]])
    with pytest.raises(ProofError):
        verifier.consistency(new, old, proof.hashes)
    forged_old = Checkpoint(old.origin, old.size, hashlib.sha256(b"rewritten history").digest())
    with pytest.raises(ProofError):
        verifier.consistency(forged_old, new, proof.hashes)


def test_tiles_through_the_gateway_recompute_the_root(auditor, verifier, tiles, appended):
    wait_witnessed(auditor, verifier, appended[3].tree_size)
    cp = verifier.checkpoint(tiles.checkpoint())
    public = TileClient(tiles.base_url)  # hash tiles need no token
    assert TileHashReader(public, cp.size).root() == cp.root
    root, entries = root_from_entry_bundles(tiles, cp.size)
    assert root == cp.root and len(entries) == cp.size
    stored = list(auditor.ledger.iter_entries(0, cp.size))
    assert [e.data for e in stored] == entries
    reader = TileHashReader(public, cp.size)
    assert reader.leaf_hashes(0, cp.size) == [leaf_hash(e) for e in entries]


def test_entry_bundles_need_an_auditor_token(tiles, verifier, appended):
    cp = verifier.checkpoint(tiles.checkpoint())
    with pytest.raises(TileError, match="HTTP 401"):
        TileClient(tiles.base_url).entries(0, min(cp.size, 256))
    import os

    with pytest.raises(TileError, match="HTTP 403"):
        TileClient(tiles.base_url, token=os.environ["QUIS_TOKEN_CASEWORKER"]).entries(0, min(cp.size, 256))


def test_tail_replays_then_follows(vault, auditor, appended):
    _, _, _, resp = appended
    first = resp.indices[0]
    with auditor.ledger.tail_events(first, timeout=30) as stream:
        replay = [next(stream) for _ in range(3)]
        assert [e.index for e in replay] == list(resp.indices)
        assert [decode_entry(e.data).appended_by for e in replay] == ["vault"] * 3
        # A new append while tailing arrives on the same stream.
        events, details, _ = access_events(1, principal="bob")
        result = {}
        t = threading.Thread(target=lambda: result.update(r=vault.ledger.append_events(events, details)))
        t.start()
        t.join(30)
        new_index = result["r"].indices[0]
        while True:
            e = next(stream)
            if e.index == new_index:
                assert decode_entry(e.data).event == events[0]
                break
            assert e.index < new_index


def test_generic_service_proxy_and_method_path(auditor):
    svc = auditor.service("quis.ledger.v1.LedgerService")
    a = svc.GetCheckpoint()
    b = auditor.method("/quis.ledger.v1.LedgerService/GetCheckpoint")(pb.GetCheckpointRequest())
    assert a.tree_size <= b.tree_size and a.checkpoint.startswith(b.checkpoint.split("\n", 1)[0])
    assert "quis.ledger.v1.LedgerService" in auditor.services()
