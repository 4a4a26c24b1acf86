"""What bad calls get: precise google.rpc statuses, raised as QuisError subclasses."""

import base64
import json
import os
import time

import pytest
from quis.ledger.v1 import ledger_pb2 as pb

from quis_client import (
    Client,
    InvalidArgument,
    OutOfRange,
    PermissionDenied,
    QuisError,
    Unauthenticated,
    Unimplemented,
)

from _events import access_events


def test_no_token_is_unauthenticated(anonymous):
    with pytest.raises(Unauthenticated) as e:
        anonymous.ledger.get_entries(0, 1)
    assert e.value.reason == "TOKEN_MISSING" and e.value.domain == "quis.auth"


def test_garbage_token_is_unauthenticated(gateway):
    with Client(gateway, token="not.a.jwt") as c, pytest.raises(Unauthenticated) as e:
        c.echo.echo("hi")
    assert e.value.reason.startswith("TOKEN_")


def test_wrong_role_reading_entries_is_permission_denied(token_client):
    with pytest.raises(PermissionDenied) as e:
        token_client("QUIS_TOKEN_CASEWORKER").ledger.get_entries(0, 1)
    assert e.value.domain in ("quis.ledger", "quis.auth") and e.value.reason == "ROLE_REQUIRED"


def test_append_is_not_on_the_public_listener(token_client):
    events, details, _ = access_events(1)
    with pytest.raises(Unimplemented) as e:
        token_client("QUIS_TOKEN_VAULT").ledger.append_events(events, details)
    assert (e.value.domain, e.value.reason) == ("quis.gateway", "UNKNOWN_SERVICE")


def test_staff_may_not_append(ledger_direct):
    events, details, _ = access_events(1)
    with pytest.raises(PermissionDenied) as e:
        ledger_direct("QUIS_TOKEN_AUDITOR").ledger.append_events(events, details)
    assert (e.value.domain, e.value.reason) == ("quis.ledger", "SERVICE_REQUIRED")


def test_service_appends_only_its_event_kinds(ledger_direct):
    events, details, _ = access_events(1)
    with pytest.raises(PermissionDenied) as e:
        ledger_direct("QUIS_TOKEN_POLICY").ledger.append_events(events, details)
    assert (e.value.domain, e.value.reason) == ("quis.ledger", "EVENT_KIND_NOT_OWNED")


def test_bad_event_names_the_field(vault):
    events, details, _ = access_events(1)
    events[0].access.ClearField("actor")
    events[0].access.case = "not a case"
    with pytest.raises(InvalidArgument) as e:
        vault.ledger.append_events(events, details)
    err = e.value
    assert (err.domain, err.reason) == ("quis.ledger", "INVALID_ARGUMENT")
    assert err.violation("events[0].actor.principal") is not None
    assert "cases/" in err.violation("events[0].case").description


def test_bad_page_size_names_the_field(auditor):
    with pytest.raises(InvalidArgument) as e:
        auditor.ledger.get_entries(0, 1, page_size=5000)
    assert e.value.violation("page_size").description == "must be 0 to 1000"


def test_commitment_without_detail_is_invalid(vault):
    events, details, _ = access_events(1)
    with pytest.raises(InvalidArgument) as e:
        vault.ledger.append_events(events, details[1:])
    assert e.value.violation("events[0].subject") is not None


def test_beyond_the_tree_is_out_of_range(auditor):
    size = auditor.ledger.get_checkpoint().tree_size
    with pytest.raises(OutOfRange) as e:
        auditor.ledger.get_inclusion_proof(size + 10, 0)
    assert e.value.reason == "BEYOND_TREE"


def test_consistency_from_zero_is_invalid(auditor):
    with pytest.raises(InvalidArgument) as e:
        auditor.ledger.get_consistency_proof(0, 0)
    assert e.value.violation("from_size").description == "must be at least 1"


def test_expired_token_is_unauthenticated(gateway):
    token = os.environ["QUIS_TOKEN_EXPIRED"]
    payload = token.split(".")[1]
    exp = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"]
    # The suite allows some clock leeway past `exp`; poll until the token is refused.
    deadline = exp + 120
    with Client(gateway, token=token) as c:
        while True:
            try:
                c.echo.echo("still valid?")
            except Unauthenticated as e:
                assert e.reason == "TOKEN_EXPIRED"
                assert time.time() > exp
                return
            if time.time() > deadline:
                pytest.fail("a token expired for 2 minutes is still accepted")
            time.sleep(1)


def test_errors_are_quis_errors_with_details(auditor):
    with pytest.raises(QuisError) as e:
        auditor.ledger.get_event_detail(0, b"\x00" * 5)
    assert isinstance(e.value, InvalidArgument)
    assert e.value.code.name == "INVALID_ARGUMENT"
    assert "digest" in str(e.value)


def test_missing_purpose_refused_before_sending(auditor):
    # An access call without a purpose never leaves the client.
    from quis_client import apply_access

    event = pb.AccessEvent()
    with pytest.raises(ValueError):
        apply_access(event)
