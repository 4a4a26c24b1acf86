"""The vault's export, external-record access and break-glass, and sentinel's break-glass review queue,
through the gateway: each answer, its ledger entry proved included here, and the exact google.rpc
details (domain, reason, and each field with its rule) that a bad call gets."""

import time
import uuid

import pytest
from google.protobuf import duration_pb2
from quis.ledger.v1 import ledger_pb2 as lpb
from quis.policy.v1 import policy_pb2 as ppb
from quis.sentinel.v1 import sentinel_pb2 as spb
from quis.vault.v1 import vault_pb2 as vpb

from quis_client import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from quis_client.tlog import leaf_hash
from quis_client.vault import field_value, fields_dict

from conftest import proved_entry

JUSTIFICATION = "patient unconscious at the front desk, next of kin unknown"
ID_RULE = "must be 1 to 64 characters of [a-z0-9-]"
SUBJECT_RULE = "must be subjects/{subject}, an id of [a-z0-9-]{1,64}"
FIELD_NAME_RULE = "must match [a-z][a-z0-9_]* and be at most 64 characters"


def violations(error) -> dict:
    """{field: rule} of an error's BadRequest details."""
    return {v.field: v.description for v in error.field_violations}


def invalid(error, domain: str) -> dict:
    assert (error.domain, error.reason) == (domain, "INVALID_ARGUMENT"), error
    return violations(error)


@pytest.fixture(scope="module")
def world(token_client):
    """Subjects with a tax return (income, notes and a `health_` field no permit names) and a letter;
    an open FRAUD_INVESTIGATION case over two of them assigned to tom (a team lead), an open
    CASEWORK case over another assigned to alice, and two subjects on no case (break-glass)."""
    suffix = uuid.uuid4().hex[:8]
    subjects = {key: f"py-{key}-{suffix}" for key in ("exp1", "exp2", "ext", "bg", "bg2")}
    ingest = token_client("QUIS_TOKEN_INGEST").vault
    for subject in subjects.values():
        ingest.create_subject(subject, given_names="Flo", family_name="Flowman", date_of_birth="1975-06-01")
        ingest.create_record(subject, "r1", "tax-return", [
            field_value("income_2024", "40100.00", vpb.SENSITIVITY_CONFIDENTIAL),
            field_value("notes", "asked for an instalment plan"),
            field_value("health_condition", "not for any tax purpose", vpb.SENSITIVITY_SPECIAL_CATEGORY),
        ])
        ingest.create_record(subject, "r2", "letter", {"notes": "reminder sent"})
    fraud_case, casework_case = f"cases/py-fraud-{suffix}", f"cases/py-work-{suffix}"
    staff = [("alice", "caseworker"), ("bob", "caseworker"), ("tom", "team_lead")]
    entities = [
        ppb.Entity(staff=ppb.Staff(name=f"staff/{who}", team="teams/north", site="hq", roles=[role],
                                   status=ppb.STAFF_STATUS_ACTIVE))
        for who, role in staff
    ] + [
        ppb.Entity(case=ppb.Case(
            name=fraud_case, subjects=[f"subjects/{subjects['exp1']}", f"subjects/{subjects['exp2']}"],
            assigned_staff=["staff/tom"], status=ppb.CASE_STATUS_OPEN, purpose=ppb.PURPOSE_FRAUD_INVESTIGATION,
        )),
        ppb.Entity(case=ppb.Case(
            name=casework_case, subjects=[f"subjects/{subjects['ext']}"], assigned_staff=["staff/alice"],
            status=ppb.CASE_STATUS_OPEN, purpose=ppb.PURPOSE_CASEWORK,
        )),
    ]
    token_client("QUIS_TOKEN_ADMIN").service("quis.policy.v1.PolicyService").BatchUpsertEntities(
        entities=entities, reason="python client live test: export, record access, break-glass"
    )
    return {**subjects, "fraud_case": fraud_case, "casework_case": casework_case}


# ExportRecords


def test_export_streams_minimized_records_with_one_receipt_proved_in_the_ledger(world, token_client, verifier):
    tom = token_client("QUIS_TOKEN_TEAM_LEAD")
    subjects = [world["exp1"], world["exp2"]]
    batches = list(tom.vault.export_records(
        subjects, purpose="FRAUD_INVESTIGATION", case=world["fraud_case"], kind="tax-return"
    ))
    records = [r for b in batches for r in b.records]
    assert sorted(r.name for r in records) == [f"subjects/{s}/records/r1" for s in sorted(subjects)]
    for r in records:  # the letters are not of the kind asked; no permit names the `health` tag
        assert sorted(fields_dict(r)) == ["income_2024", "notes"], fields_dict(r)
    receipts = {b.receipt.SerializeToString() for b in batches}
    assert len(receipts) == 1, "every message of the stream carries the same receipt"
    receipt = batches[0].receipt
    assert receipt.decision == lpb.DECISION_ALLOW and receipt.reason

    _, entry = proved_entry(token_client("QUIS_TOKEN_AUDITOR"), verifier, receipt.ledger_index)
    access = entry.event.access
    assert (access.action, access.decision, access.purpose) == (
        lpb.ACTION_EXPORT, lpb.DECISION_ALLOW, lpb.PURPOSE_FRAUD_INVESTIGATION
    )
    assert (access.actor.principal, access.case) == ("tom", world["fraud_case"])
    assert len(access.results) == 2, "one commitment per exported subject"

    narrowed = list(tom.vault.export_records(
        subjects, purpose="FRAUD_INVESTIGATION", case=world["fraud_case"], fields=["notes"]
    ))
    narrowed_records = [r for b in narrowed for r in b.records]
    assert len(narrowed_records) == 4  # both kinds this time
    assert all(list(fields_dict(r)) == ["notes"] for r in narrowed_records)
    assert narrowed[0].receipt.ledger_index > receipt.ledger_index


def test_export_outside_the_export_permit_is_denied_and_recorded(world, token_client):
    alice = token_client("QUIS_TOKEN_CASEWORKER")
    with pytest.raises(PermissionDenied) as e:
        list(alice.vault.export_records([world["ext"]], purpose="CASEWORK", case=world["casework_case"]))
    assert (e.value.domain, e.value.reason) == ("quis.vault", "ACCESS_DENIED") and e.value.message


def test_export_bad_requests_name_every_field_and_rule(world, token_client):
    svc = token_client("QUIS_TOKEN_TEAM_LEAD").service("quis.vault.v1.VaultService")
    dup = f"subjects/{world['exp1']}"
    with pytest.raises(InvalidArgument) as e:
        list(svc.ExportRecords(
            subjects=[dup, dup, "people/x"], kind="Tax Return", fields=["Notes"],
            context=vpb.AccessContext(purpose=lpb.PURPOSE_FRAUD_INVESTIGATION),
        ))
    assert invalid(e.value, "quis.vault") == {
        "subjects[1]": "is named twice",
        "subjects[2]": SUBJECT_RULE,
        "kind": ID_RULE,
        "context.case": "is required: the case the work belongs to, cases/{case}",
        "fields[0]": FIELD_NAME_RULE,
    }
    with pytest.raises(InvalidArgument) as e:
        list(svc.ExportRecords())
    assert invalid(e.value, "quis.vault") == {
        "subjects": "must hold 1 to 1000 subjects",
        "context.purpose": "is required: a known purpose of use",
    }


# RecordAccess


def test_record_access_answers_the_decision_and_ledger_index_never_data(world, token_client, verifier):
    alice = token_client("QUIS_TOKEN_CASEWORKER")
    reference = f"TC-{uuid.uuid4().hex[:10]}"
    resp = alice.vault.record_access(
        "tax-core", world["ext"], reference, kind="tax-return", purpose="CASEWORK", case=world["casework_case"],
        fields=["notes", "income_2024", "bank_iban"],
    )
    assert sorted(f.name for f, _ in resp.ListFields()) == ["allowed_fields", "receipt"]
    assert sorted(resp.allowed_fields) == ["income_2024", "notes"], "casework never allows bank fields"
    assert resp.receipt.decision == lpb.DECISION_ALLOW
    stored, entry = proved_entry(token_client("QUIS_TOKEN_AUDITOR"), verifier, resp.receipt.ledger_index)
    access = entry.event.access
    assert (access.action, access.decision, access.actor.principal) == (
        lpb.ACTION_RECORD_ACCESS, lpb.DECISION_ALLOW, "alice"
    )
    assert sorted(access.fields_returned) == ["income_2024", "notes"]
    assert access.HasField("record") and reference.encode() not in stored.data, "the reference is committed to"

    # A denial is an answer, not an error: the caller's own system enforces it.
    bob = token_client("QUIS_TOKEN_CASEWORKER_BOB")
    denied = bob.vault.record_access(
        "tax-core", world["ext"], reference, kind="tax-return", purpose="CASEWORK", case=world["casework_case"],
        fields=["notes"],
    )
    assert denied.receipt.decision == lpb.DECISION_DENY and list(denied.allowed_fields) == []
    assert denied.receipt.reason and denied.receipt.ledger_index > resp.receipt.ledger_index
    _, entry = proved_entry(token_client("QUIS_TOKEN_AUDITOR"), verifier, denied.receipt.ledger_index)
    assert (entry.event.access.decision, entry.event.access.actor.principal) == (lpb.DECISION_DENY, "bob")


def test_record_access_bad_request_names_every_field_and_rule(token_client):
    svc = token_client("QUIS_TOKEN_CASEWORKER").service("quis.vault.v1.VaultService")
    with pytest.raises(InvalidArgument) as e:
        svc.RecordAccess(record=vpb.ExternalRecord(reference="x" * 257), action=lpb.ACTION_SEARCH)
    assert invalid(e.value, "quis.vault") == {
        "record.system": ID_RULE,
        "record.subject": "is required: subjects/{subject}, an id of [a-z0-9-]{1,64}",
        "record.reference": "must be 1 to 256 printable characters",
        "record.kind": ID_RULE,
        "action": "must be ACTION_READ, ACTION_UPDATE or ACTION_EXPORT",
        "context.purpose": "is required: a known purpose of use",
    }


# Break-glass


def test_break_glass_opens_access_naming_the_grant_and_is_recorded_at_start_and_end(world, token_client, verifier):
    alice = token_client("QUIS_TOKEN_CASEWORKER")
    record = f"subjects/{world['bg']}/records/r1"

    def emergency_read():
        return alice.vault.get_record(record, purpose="EMERGENCY", justification=JUSTIFICATION)

    with pytest.raises(PermissionDenied) as e:
        emergency_read()
    assert e.value.reason == "ACCESS_DENIED", "no case and no grant: nothing allows this read yet"

    started = alice.vault.start_break_glass([world["bg"]], JUSTIFICATION, duration_s=600)
    grant = started.grant
    assert grant.name.startswith("grants/") and grant.grantee == "staff/alice"
    assert list(grant.subjects) == [f"subjects/{world['bg']}"] and not grant.ended
    assert grant.expire_time.seconds - grant.start_time.seconds == 600
    assert (started.receipt.decision, started.receipt.break_glass_grant) == (lpb.DECISION_ALLOW, grant.name)

    read = emergency_read()
    assert (read.receipt.decision, read.receipt.break_glass_grant) == (lpb.DECISION_ALLOW, grant.name)
    assert "health_condition" not in fields_dict(read.record) and "notes" in fields_dict(read.record)

    bob = token_client("QUIS_TOKEN_CASEWORKER_BOB")
    with pytest.raises(PermissionDenied) as e:
        bob.vault.end_break_glass(grant.name)
    assert (e.value.domain, e.value.reason) == ("quis.vault", "NOT_GRANTEE")

    ended = alice.vault.end_break_glass(grant.name)
    assert ended.grant.ended and ended.grant.name == grant.name
    assert ended.receipt.break_glass_grant == grant.name
    with pytest.raises(FailedPrecondition) as e:
        alice.vault.end_break_glass(grant.name)
    assert (e.value.domain, e.value.reason) == ("quis.vault", "ALREADY_ENDED")
    with pytest.raises(PermissionDenied) as e:
        emergency_read()
    assert e.value.reason == "ACCESS_DENIED", "the grant is gone from policy on the next check"

    auditor = token_client("QUIS_TOKEN_AUDITOR")
    steps = [
        (started.receipt.ledger_index, lpb.ACTION_BREAK_GLASS_START),
        (read.receipt.ledger_index, lpb.ACTION_READ),
        (ended.receipt.ledger_index, lpb.ACTION_BREAK_GLASS_END),
    ]
    for index, action in steps:
        _, entry = proved_entry(auditor, verifier, index)
        access = entry.event.access
        assert (access.action, access.break_glass_grant, access.purpose, access.actor.principal) == (
            action, grant.name, lpb.PURPOSE_EMERGENCY, "alice"
        ), index
    stored, start_entry = proved_entry(auditor, verifier, started.receipt.ledger_index)
    assert start_entry.event.access.HasField("justification"), "the justification is committed to"
    assert JUSTIFICATION.encode() not in stored.data


def test_break_glass_errors(world, token_client):
    with pytest.raises(PermissionDenied) as e:  # a service principal is nobody to grant an emergency to
        token_client("QUIS_TOKEN_INGEST").vault.start_break_glass([world["bg"]], JUSTIFICATION)
    assert (e.value.domain, e.value.reason) == ("quis.vault", "ROLE_REQUIRED")
    with pytest.raises(PermissionDenied) as e:  # staff that policy does not know: denied, and recorded
        token_client("QUIS_TOKEN_AUDITOR").vault.start_break_glass([world["bg"]], JUSTIFICATION)
    assert (e.value.domain, e.value.reason) == ("quis.vault", "ACCESS_DENIED")

    svc = token_client("QUIS_TOKEN_CASEWORKER").service("quis.vault.v1.VaultService")
    with pytest.raises(InvalidArgument) as e:  # a message, not fields: `case=` would be normalized by the client
        svc.StartBreakGlass(vpb.StartBreakGlassRequest(
            subjects=[f"subjects/{world['bg']}", f"subjects/{world['bg2']}"], justification="too short",
            duration=duration_pb2.Duration(seconds=30), case="c-1",
        ))
    assert invalid(e.value, "quis.vault") == {
        "subjects": "must hold exactly one subjects/{subject}, an id of [a-z0-9-]{1,64}",
        "justification": "must be 20 to 2000 characters",
        "duration": "must be 60 s to 43200 s",
        "case": "must be cases/{case} with an id of 1 to 64 characters of [a-z0-9-]",
    }
    with pytest.raises(InvalidArgument) as e:
        svc.EndBreakGlass(name="bg-123")
    assert invalid(e.value, "quis.vault") == {"name": "must be grants/{grant}"}
    with pytest.raises(NotFound) as e:
        svc.EndBreakGlass(name="grants/bg-0000000000000000")
    assert (e.value.domain, e.value.reason) == ("quis.vault", "NOT_FOUND")


# Sentinel's break-glass review queue


def wait_for_review(ines, actor: str, grant: str, deadline_s: float = 30.0) -> spb.Review:
    """The review sentinel queued for `grant`, once it has tailed the start from the ledger."""
    end = time.monotonic() + deadline_s
    while True:
        found = [r for r in ines.sentinel.iter_reviews(actor=actor, page_size=2) if r.grant == grant]
        if found:
            return found[0]
        if time.monotonic() > end:
            pytest.fail(f"no review of {grant} within {deadline_s}s")
        time.sleep(0.2)


def test_break_glass_start_queues_a_review_completed_once_and_recorded(world, token_client, verifier):
    bob = token_client("QUIS_TOKEN_CASEWORKER_BOB")
    started = bob.vault.start_break_glass([world["bg2"]], JUSTIFICATION, duration_s=300)
    grant = started.grant.name
    ines = token_client("QUIS_TOKEN_INVESTIGATOR")
    review = wait_for_review(ines, "bob", grant)
    assert review.name.startswith("reviews/") and review.state == spb.REVIEW_STATE_PENDING
    assert review.justified_at_start and review.evidence.index == started.receipt.ledger_index
    stored, _ = proved_entry(token_client("QUIS_TOKEN_AUDITOR"), verifier, review.evidence.index)
    assert review.evidence.leaf_hash == leaf_hash(stored.data), "evidence names the start's exact entry"
    auditor = token_client("QUIS_TOKEN_AUDITOR")
    assert review.name in [r.name for r in auditor.sentinel.iter_reviews(state="PENDING", actor="bob")]

    with pytest.raises(PermissionDenied) as e:  # auditors read the queue; only investigators decide
        auditor.sentinel.complete_review(review.name, "JUSTIFIED", "auditor tries")
    assert e.value.reason == "ROLE_REQUIRED"
    note = "the front desk confirmed the emergency"
    done = ines.sentinel.complete_review(review.name, "JUSTIFIED", note)
    assert (done.state, done.reviewed_by, done.note) == (spb.REVIEW_STATE_JUSTIFIED, "ines", note)
    assert done.review_ledger_index > started.receipt.ledger_index
    _, entry = proved_entry(auditor, verifier, done.review_ledger_index)
    triage = entry.event.triage
    assert (triage.target, triage.state, triage.actor.principal) == (review.name, "JUSTIFIED", "ines")
    assert entry.appended_by == "sentinel" and triage.HasField("note")
    with pytest.raises(FailedPrecondition) as e:
        ines.sentinel.complete_review(review.name, "UNJUSTIFIED", "second thoughts")
    assert (e.value.domain, e.value.reason) == ("quis.sentinel", "REVIEW_COMPLETED")
    assert review.name in [r.name for r in ines.sentinel.iter_reviews(state="JUSTIFIED", actor="bob")]
    bob.vault.end_break_glass(grant)


def test_review_queue_errors(token_client):
    with pytest.raises(PermissionDenied) as e:
        token_client("QUIS_TOKEN_CASEWORKER").sentinel.list_reviews()
    assert (e.value.domain, e.value.reason) == ("quis.auth", "ROLE_REQUIRED")
    svc = token_client("QUIS_TOKEN_INVESTIGATOR").service("quis.sentinel.v1.SentinelService")
    with pytest.raises(InvalidArgument) as e:
        svc.ListReviews(page_size=-1, page_token="x", state=99)
    assert invalid(e.value, "quis.sentinel") == {
        "page_size": "must be 0 to 1000",
        "page_token": "must be a next_page_token from a previous response",
        "state": "must be a known review state",
    }
    with pytest.raises(InvalidArgument) as e:
        svc.CompleteReview(name="r-1", outcome=spb.REVIEW_STATE_PENDING, note=" ")
    assert invalid(e.value, "quis.sentinel") == {
        "name": "must be reviews/{id} with an id of 1 to 64 characters of [a-z0-9-]",
        "outcome": "must be JUSTIFIED or UNJUSTIFIED",
        "note": "must be 1 to 2000 characters",
    }
    with pytest.raises(NotFound) as e:
        svc.CompleteReview(name="reviews/no-such-review", outcome=spb.REVIEW_STATE_JUSTIFIED, note="n/a")
    assert (e.value.domain, e.value.reason) == ("quis.sentinel", "NOT_FOUND")
