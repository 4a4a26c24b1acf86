"""The thin layer against a real gRPC server on a loopback socket (grpcio, serving the generated
EchoService and IdentityService), which answers with exactly the statuses under test; the
live tests do the same against the real suite."""

import time
from concurrent import futures

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from quis.echo.v1 import echo_pb2, echo_pb2_grpc
from quis.identity.v1 import identity_pb2, identity_pb2_grpc
from quis.ledger.v1 import ledger_pb2

from quis_client import (
    Client,
    DeadlineExceeded,
    InvalidArgument,
    PermissionDenied,
    QuisError,
    ResourceExhausted,
    Unavailable,
    apply_access,
    case_name,
)


def _any(msg):
    a = any_pb2.Any()
    a.Pack(msg)
    return a


def _abort(context, code, message, *details):
    context.abort_with_status(
        rpc_status.to_status(status_pb2.Status(code=code.value[0], message=message, details=[_any(d) for d in details]))
    )


class Echo(echo_pb2_grpc.EchoServiceServicer):
    def Echo(self, request, context):
        auth = dict(context.invocation_metadata()).get("authorization", "")
        if request.message == "bad":
            _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "invalid request",
                error_details_pb2.ErrorInfo(reason="INVALID_ARGUMENT", domain="quis.echo", metadata={"k": "v"}),
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field="message", description="must not be bad")
                    ]
                ),
            )
        if request.message == "slow-down":
            _abort(
                context,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "rate limited",
                error_details_pb2.ErrorInfo(reason="RATE_LIMITED", domain="quis.gateway"),
                error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=1, nanos=500_000_000)),
            )
        if request.message == "plain":
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "no details")
        if request.message == "sleep":
            time.sleep(1.0)
        return echo_pb2.EchoResponse(message=request.message, payload=request.payload, principal=auth)

    def Expand(self, request, context):
        for i in range(request.count):
            if i == 2 and request.message == "fail":
                _abort(context, grpc.StatusCode.UNAVAILABLE, "went away")
            yield echo_pb2.ExpandResponse(message=request.message, sequence=i)


class Identity(identity_pb2_grpc.IdentityServiceServicer):
    def __init__(self):
        self.revocations = [identity_pb2.Revocation(name=f"revocations/{i}", token_id=f"t{i}") for i in range(7)]

    def ListRevocations(self, request, context):
        if request.page_token == "loop":
            return identity_pb2.ListRevocationsResponse(next_page_token="loop")
        size = request.page_size or 100
        start = int(request.page_token or 0)
        page = self.revocations[start : start + size]
        nxt = str(start + size) if start + size < len(self.revocations) else ""
        return identity_pb2.ListRevocationsResponse(revocations=page, next_page_token=nxt)


@pytest.fixture(scope="module")
def server():
    s = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    echo_pb2_grpc.add_EchoServiceServicer_to_server(Echo(), s)
    identity_pb2_grpc.add_IdentityServiceServicer_to_server(Identity(), s)
    port = s.add_insecure_port("127.0.0.1:0")
    s.start()
    yield f"127.0.0.1:{port}"
    s.stop(None)


def test_static_and_refreshing_tokens(server):
    with Client(server, token="static") as c:
        assert c.echo.echo("hi").principal == "Bearer static"
    issued = iter(["first", "second"])
    with Client(server, token=lambda: next(issued)) as c:
        assert c.echo.echo("a").principal == "Bearer first"
        assert c.echo.echo("b").principal == "Bearer second"
    with Client(server) as c:
        assert c.echo.echo("a").principal == ""
        assert c.with_token("other").echo.echo("a").principal == "Bearer other"


def test_rich_error_details(server):
    with Client(server) as c, pytest.raises(InvalidArgument) as e:
        c.echo.echo("bad")
    err = e.value
    assert isinstance(err, QuisError) and err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.reason, err.domain, err.metadata) == ("INVALID_ARGUMENT", "quis.echo", {"k": "v"})
    assert err.violation("message").description == "must not be bad"
    assert err.method == "/quis.echo.v1.EchoService/Echo"
    assert "message: must not be bad" in str(err)


def test_retry_info(server):
    with Client(server) as c, pytest.raises(ResourceExhausted) as e:
        c.echo.echo("slow-down")
    assert e.value.retry_delay == 1.5 and e.value.reason == "RATE_LIMITED"


def test_error_without_details(server):
    with Client(server) as c, pytest.raises(PermissionDenied) as e:
        c.echo.echo("plain")
    assert e.value.message == "no details" and e.value.details == [] and e.value.reason == ""


def test_default_deadline(server):
    with Client(server, timeout=0.2) as c:
        with pytest.raises(DeadlineExceeded):
            c.echo.echo("sleep")
        assert c.echo.echo("sleep", timeout=5).message == "sleep"


def test_stream_error_mid_stream(server):
    with Client(server) as c:
        stream = c.echo.expand("fail", 5)
        got = []
        with pytest.raises(Unavailable):
            for m in stream:
                got.append(m.sequence)
        assert got == [0, 1]
        assert [m.sequence for m in c.echo.expand("ok", 3)] == [0, 1, 2]


def test_unreachable_is_unavailable():
    with Client("127.0.0.1:1", timeout=2) as c, pytest.raises(Unavailable):
        c.echo.echo("x")


def test_pagination_follows_tokens(server):
    with Client(server) as c:
        assert [r.token_id for r in c.identity.iter_revocations(page_size=3)] == [f"t{i}" for i in range(7)]
        pages = list(c.service("quis.identity.v1.IdentityService").ListRevocations.pages(page_size=3))
        assert [len(p.revocations) for p in pages] == [3, 3, 1]
        with pytest.raises(RuntimeError, match="repeated"):
            list(c.service("quis.identity.v1.IdentityService").ListRevocations.paginate(page_token="loop"))


def test_generic_method_by_path(server):
    with Client(server) as c:
        m = c.method("/quis.echo.v1.EchoService/Echo")
        assert m(message="by path").message == "by path"
        assert c.method("quis.echo.v1.EchoService.Echo")(echo_pb2.EchoRequest(message="x")).message == "x"
        with pytest.raises(AttributeError):
            _ = c.service("quis.echo.v1.EchoService").Nope
        with pytest.raises(KeyError):
            c.service("quis.nope.v1.NopeService")


def test_every_generated_service_is_known():
    assert set(Client.services()) >= {
        "quis.echo.v1.EchoService",
        "quis.identity.v1.IdentityService",
        "quis.ledger.v1.LedgerService",
    }


def test_plaintext_only_on_loopback():
    with pytest.raises(ValueError, match="plaintext"):
        Client("quis.example.org:443", tls=False)
    assert Client("quis.example.org:443").tls
    assert not Client("localhost:1").tls and not Client("[::1]:1").tls and not Client("127.0.0.2:1").tls
    assert Client("127.0.0.1:1", tls=True).tls


def test_purpose_and_case():
    e = apply_access(ledger_pb2.AccessEvent(), purpose="CASEWORK", case="c-1")
    assert (e.purpose, e.case) == (ledger_pb2.PURPOSE_CASEWORK, "cases/c-1")
    assert apply_access(ledger_pb2.AccessEvent(), purpose="purpose_audit").purpose == ledger_pb2.PURPOSE_AUDIT
    assert apply_access(ledger_pb2.AccessEvent(), purpose=4).purpose == ledger_pb2.PURPOSE_FRAUD_INVESTIGATION
    for bad in ("BROWSING", "UNSPECIFIED", 0, 99):
        with pytest.raises(ValueError):
            apply_access(ledger_pb2.AccessEvent(), purpose=bad)
    with pytest.raises(ValueError, match="access call"):
        apply_access(ledger_pb2.AccessEvent(case="cases/c-1"))
    with pytest.raises(TypeError):
        apply_access(echo_pb2.EchoRequest(), purpose="AUDIT")
    assert case_name("cases/abc-1") == "cases/abc-1"
    for bad in ("cases/", "Cases/x", "cases/a b", "x" * 65):
        with pytest.raises(ValueError):
            case_name(bad)
