"""The vault and sentinel through the gateway: a world set up like the Rust e2e tests (a case in
policy through an admin token, a subject and record through the ingest token), then guarded calls,
an access history whose every proof is checked here, and a decoy touch watched as an alert."""

import os
import uuid

import pytest
from quis.policy.v1 import policy_pb2 as ppb
from quis.vault.v1 import vault_pb2 as vpb

from quis_client import Client, InvalidArgument, PermissionDenied
from quis_client.ledger import decode_entry
from quis_client.tlog import VerificationError
from quis_client.vault import fields_dict, field_value, verify_access_history

from conftest import env, wait_witnessed

SUBJECT = os.environ.get("QUIS_SUBJECT_PY", "cl-py-s1")


@pytest.fixture(scope="module")
def world(token_client):
    """Case `cases/<id>` on SUBJECT assigned to alice (casework); the subject with record r1; a decoy."""
    suffix = uuid.uuid4().hex[:8]
    case_id = f"py-case-{suffix}"
    decoy = f"py-decoy-{suffix}"
    ingest = token_client("QUIS_TOKEN_INGEST").vault
    ingest.create_subject(SUBJECT, given_names="Ann", family_name="Pyman", date_of_birth="1980-02-29",
                          postcode="SW1A 1AA", reference_number="AB 12 34 56 C")
    fields = [
        field_value("income_2024", "54321.00", vpb.SENSITIVITY_CONFIDENTIAL),
        field_value("bank_iban", "GB82WEST12345698765432", vpb.SENSITIVITY_RESTRICTED),
        field_value("notes", "called about a refund", vpb.SENSITIVITY_BASIC),
    ]
    record = ingest.create_record(SUBJECT, "r1", "tax-return", fields)
    ingest.create_subject(decoy, given_names="Dora", family_name="Pyman", decoy=True)
    ingest.create_record(decoy, "r1", "tax-return", {"notes": "decoy"})
    admin = token_client("QUIS_TOKEN_ADMIN")
    case = ppb.Case(
        name=f"cases/{case_id}", subjects=[f"subjects/{SUBJECT}", f"subjects/{decoy}"],
        assigned_staff=["staff/alice"], status=ppb.CASE_STATUS_OPEN, purpose=ppb.PURPOSE_CASEWORK,
    )
    admin.service("quis.policy.v1.PolicyService").BatchUpsertEntities(
        entities=[
            ppb.Entity(staff=ppb.Staff(name=f"staff/{who}", team="teams/north", site="hq", roles=["caseworker"],
                                       status=ppb.STAFF_STATUS_ACTIVE))
            for who in ("alice", "bob")
        ] + [ppb.Entity(case=case)],
        reason="python client live test",
    )
    return {"decoy_subject": decoy, "case": f"cases/{case_id}", "record": record.name, "decoy": f"subjects/{decoy}/records/r1"}


def test_guarded_read_allowed_minimized_and_recorded(world, token_client, verifier):
    alice = token_client("QUIS_TOKEN_CASEWORKER")
    resp = alice.vault.get_record(world["record"], purpose="CASEWORK", case=world["case"])
    fields = fields_dict(resp.record)
    assert "notes" in fields and "bank_iban" not in fields, "casework never sees restricted bank fields"
    narrowed = alice.vault.get_record(world["record"], purpose="CASEWORK", case=world["case"], fields=["notes"])
    assert list(fields_dict(narrowed.record)) == ["notes"]
    assert resp.receipt.decision == 1  # DECISION_ALLOW
    # The receipt's index is an entry of the ledger: the auditor reads it and it is proved included.
    auditor = token_client("QUIS_TOKEN_AUDITOR")
    index = resp.receipt.ledger_index
    checkpoint, _ = wait_witnessed(auditor, verifier, index + 1)
    entry = next(auditor.ledger.iter_entries(index, index + 1))
    auditor.ledger.prove_inclusion(entry, verifier, checkpoint)
    access = decode_entry(entry.data).event.access
    assert access.actor.principal == "alice" and access.case == world["case"]


def test_guarded_read_denied_with_reason(world, token_client):
    bob = Client(env("QUIS_GATEWAY"), token=env("QUIS_TOKEN_CASEWORKER_BOB"))
    with bob, pytest.raises(PermissionDenied) as e:
        bob.vault.get_record(world["record"], purpose="CASEWORK", case=world["case"])
    assert e.value.reason == "ACCESS_DENIED"
    assert e.value.message  # a readable reason
    assert int(e.value.metadata["ledger_index"]) > 0  # the entry that recorded the refusal


def test_search_finds_the_subject(world, token_client):
    alice = token_client("QUIS_TOKEN_CASEWORKER")
    found = alice.vault.search_subjects(purpose="CASEWORK", case=world["case"], family_name="Pyman")
    assert f"subjects/{SUBJECT}" in [m.name for m in found.matches]
    assert found.receipt.ledger_index > 0


def test_missing_purpose_is_invalid_argument_naming_the_field(world, token_client):
    alice = token_client("QUIS_TOKEN_CASEWORKER")
    with pytest.raises(ValueError):
        alice.vault.get_record(world["record"], purpose=None)  # the client refuses before sending
    raw = vpb.GetRecordRequest(name=world["record"])  # the server refuses too
    with pytest.raises(InvalidArgument) as e:
        alice.service("quis.vault.v1.VaultService").GetRecord(raw)
    assert any("purpose" in v.field for v in e.value.field_violations), e.value.field_violations


def test_access_history_with_every_proof_verified(world, token_client, verifier):
    alice = token_client("QUIS_TOKEN_CASEWORKER")
    read = alice.vault.get_record(world["record"], purpose="CASEWORK", case=world["case"]).receipt.ledger_index
    me = token_client("QUIS_TOKEN_SUBJECT_PY")
    import time

    end = time.monotonic() + 20
    while True:
        items = me.vault.verified_access_history(SUBJECT, verifier, page_size=2)
        if read in [i.ledger_index for i in items] or time.monotonic() > end:
            break
        time.sleep(0.2)
    assert read in [i.ledger_index for i in items]
    assert all(i.entry and i.subject_salt for i in items)
    page = me.vault.get_access_history(SUBJECT, page_size=100)
    verify_access_history(page, SUBJECT, verifier)
    # A tampered proof, entry or salt is refused.
    for tamper in ("proof", "entry", "salt"):
        bad = vpb.GetAccessHistoryResponse.FromString(page.SerializeToString())
        item = bad.items[0]
        if tamper == "proof":
            if not item.inclusion_proof:
                continue
            item.inclusion_proof[0] = bytes(32)
        elif tamper == "entry":
            item.entry = item.entry[:-1] + bytes([item.entry[-1] ^ 1])
        else:
            item.subject_salt = bytes(len(item.subject_salt))
        with pytest.raises(VerificationError):
            verify_access_history(bad, SUBJECT, verifier)
    with pytest.raises(VerificationError):
        verify_access_history(page, "subjects/someone-else", verifier)


def test_access_index_rebuild_is_for_admins_and_finds_nothing_missing(world, token_client, verifier):
    alice = token_client("QUIS_TOKEN_CASEWORKER")
    read = alice.vault.get_record(world["record"], purpose="CASEWORK", case=world["case"]).receipt.ledger_index
    wait_witnessed(token_client("QUIS_TOKEN_AUDITOR"), verifier, read + 1)  # the rebuild stops at the checkpoint
    admin = token_client("QUIS_TOKEN_ADMIN")
    indexed, restored = admin.vault.rebuild_access_index(batch_size=500)
    assert indexed > 0 and restored == 0, (indexed, restored)
    with pytest.raises(PermissionDenied) as e:
        alice.vault.rebuild_access_index()
    assert e.value.reason == "ROLE_REQUIRED"
    with pytest.raises(InvalidArgument) as e:
        admin.service("quis.vault.v1.VaultService").RebuildAccessIndex(vpb.RebuildAccessIndexRequest(batch_size=-1))
    assert [v.field for v in e.value.field_violations] == ["batch_size"]


def test_subject_cannot_read_another_subjects_history(world, token_client):
    me = token_client("QUIS_TOKEN_SUBJECT_PY")
    with pytest.raises(PermissionDenied) as e:
        # Outside their own history a purpose is required (else INVALID_ARGUMENT); given one, refused.
        me.vault.get_access_history(world["decoy_subject"], purpose="AUDIT")
    assert e.value.reason == "ACCESS_DENIED"


def test_decoy_touch_is_watched_as_an_alert(world, token_client):
    ines = token_client("QUIS_TOKEN_INVESTIGATOR")
    alice = token_client("QUIS_TOKEN_CASEWORKER")
    last = [a.name for a in ines.sentinel.iter_alerts(page_size=50)]
    import threading

    result = {}

    def watch():
        try:
            result["alert"] = ines.sentinel.wait_for_alert(
                lambda a: a.detection_id == "honeytoken" and a.actor == "alice", timeout=30
            )
        except Exception as e:  # reported below
            result["error"] = e

    t = threading.Thread(target=watch)
    t.start()
    import time

    time.sleep(0.5)
    try:
        alice.vault.get_record(world["decoy"], purpose="CASEWORK", case=world["case"])
    except PermissionDenied:
        pass  # denied or not, touching a decoy is the signal
    t.join(40)
    assert "alert" in result, result.get("error")
    alert = result["alert"]
    assert alert.severity == 4 and alert.evidence  # CRITICAL, with ledger indices
    assert ines.sentinel.get_alert(alert.name).name == alert.name
    assert alert.name in [a.name for a in ines.sentinel.iter_alerts(page_size=2, detection_id="honeytoken")]
    del last
    triaged = ines.sentinel.triage_alert(alert.name, "ACKNOWLEDGE", "python client live test")
    assert triaged.state == 2 and triaged.triaged_by == "ines"
    list(ines.sentinel.iter_incidents(page_size=10))
