"""Building real access events, with commitments and the details that open them."""

import uuid

from quis.ledger.v1 import ledger_pb2 as pb

from quis_client.ledger import commitment


def access_events(n: int, principal: str = "alice", purpose=pb.PURPOSE_CASEWORK, case: str = "cases/c-1"):
    """n allowed reads by `principal` of distinct subjects/records; returns (events, details, subject values)."""
    events, details, subjects = [], [], []
    for _ in range(n):
        subject_value = f"subject-{uuid.uuid4().hex[:12]}"
        subject, subject_detail = commitment(subject_value)
        record, record_detail = commitment(f"record-{uuid.uuid4().hex[:12]}")
        events.append(
            pb.Event(
                access=pb.AccessEvent(
                    actor=pb.Actor(principal=principal, kind="staff", roles=["caseworker"], team="north", site="hq"),
                    action=pb.ACTION_READ,
                    subject=subject,
                    record=record,
                    purpose=purpose,
                    case=case,
                    decision=pb.DECISION_ALLOW,
                    determining_policies=["casework-assigned"],
                    fields_returned=["name", "address"],
                    request_id=str(uuid.uuid4()),
                )
            )
        )
        details += [subject_detail, record_detail]
        subjects.append(subject_value)
    return events, details, subjects
