"""gRPC failures as exceptions, one class per status code, carrying the decoded google.rpc details."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status


@dataclass(frozen=True)
class FieldViolation:
    """One google.rpc.BadRequest field violation: which field, and the rule it broke."""

    field: str
    description: str
    reason: str = ""


_DETAIL_TYPES = [
    error_details_pb2.ErrorInfo,
    error_details_pb2.BadRequest,
    error_details_pb2.RetryInfo,
    error_details_pb2.DebugInfo,
    error_details_pb2.QuotaFailure,
    error_details_pb2.PreconditionFailure,
    error_details_pb2.RequestInfo,
    error_details_pb2.ResourceInfo,
    error_details_pb2.Help,
    error_details_pb2.LocalizedMessage,
]


def _unpack(detail: any_pb2.Any):
    for cls in _DETAIL_TYPES:
        if detail.Is(cls.DESCRIPTOR):
            msg = cls()
            detail.Unpack(msg)
            return msg
    return detail


class QuisError(Exception):
    """A failed call. `code` is the gRPC status code; the google.rpc details are decoded:

    - `reason`, `domain`, `metadata` from ErrorInfo (e.g. `ROLE_REQUIRED`, `quis.ledger`),
    - `field_violations` from BadRequest,
    - `retry_delay` (seconds) from RetryInfo,
    - `details`: every detail message, decoded where the type is known.
    """

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, code: grpc.StatusCode | None = None, details=(), method: str = ""):
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.method = method
        self.details = list(details)
        self.error_info = next((d for d in self.details if isinstance(d, error_details_pb2.ErrorInfo)), None)
        self.reason = self.error_info.reason if self.error_info else ""
        self.domain = self.error_info.domain if self.error_info else ""
        self.metadata = dict(self.error_info.metadata) if self.error_info else {}
        self.field_violations = [
            FieldViolation(v.field, v.description, v.reason)
            for d in self.details
            if isinstance(d, error_details_pb2.BadRequest)
            for v in d.field_violations
        ]
        retry = next((d for d in self.details if isinstance(d, error_details_pb2.RetryInfo)), None)
        self.retry_delay = retry.retry_delay.ToTimedelta().total_seconds() if retry else None

    def violation(self, field: str) -> FieldViolation | None:
        """The violation naming `field`, if any."""
        return next((v for v in self.field_violations if v.field == field), None)

    def __str__(self):
        parts = [f"{self.code.name}: {self.message}"]
        if self.reason:
            parts.append(f"[{self.domain} {self.reason}]")
        parts.extend(f"{v.field}: {v.description}" for v in self.field_violations)
        if self.method:
            parts.append(f"({self.method})")
        return " ".join(parts)


def _subclass(name: str, code: grpc.StatusCode, doc: str) -> type[QuisError]:
    return type(name, (QuisError,), {"code": code, "__doc__": doc})


Cancelled = _subclass("Cancelled", grpc.StatusCode.CANCELLED, "The call was cancelled.")
Unknown = _subclass("Unknown", grpc.StatusCode.UNKNOWN, "An unknown error.")
InvalidArgument = _subclass(
    "InvalidArgument", grpc.StatusCode.INVALID_ARGUMENT, "A field broke a rule; see field_violations."
)
DeadlineExceeded = _subclass("DeadlineExceeded", grpc.StatusCode.DEADLINE_EXCEEDED, "The deadline passed.")
NotFound = _subclass("NotFound", grpc.StatusCode.NOT_FOUND, "The resource does not exist.")
AlreadyExists = _subclass("AlreadyExists", grpc.StatusCode.ALREADY_EXISTS, "The resource already exists.")
PermissionDenied = _subclass("PermissionDenied", grpc.StatusCode.PERMISSION_DENIED, "The caller may not do this.")
ResourceExhausted = _subclass(
    "ResourceExhausted", grpc.StatusCode.RESOURCE_EXHAUSTED, "A limit was hit; see retry_delay."
)
FailedPrecondition = _subclass(
    "FailedPrecondition", grpc.StatusCode.FAILED_PRECONDITION, "The system is not in a state for this."
)
Aborted = _subclass("Aborted", grpc.StatusCode.ABORTED, "The call was aborted (e.g. a conflict).")
OutOfRange = _subclass("OutOfRange", grpc.StatusCode.OUT_OF_RANGE, "An index or size is beyond the valid range.")
Unimplemented = _subclass("Unimplemented", grpc.StatusCode.UNIMPLEMENTED, "The method does not exist.")
Internal = _subclass("Internal", grpc.StatusCode.INTERNAL, "The server failed.")
Unavailable = _subclass("Unavailable", grpc.StatusCode.UNAVAILABLE, "The service is unavailable; retry later.")
DataLoss = _subclass("DataLoss", grpc.StatusCode.DATA_LOSS, "Data was lost or corrupted.")
Unauthenticated = _subclass("Unauthenticated", grpc.StatusCode.UNAUTHENTICATED, "No valid credentials.")

ERRORS_BY_CODE: dict[grpc.StatusCode, type[QuisError]] = {
    cls.code: cls
    for cls in (
        Cancelled,
        Unknown,
        InvalidArgument,
        DeadlineExceeded,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        ResourceExhausted,
        FailedPrecondition,
        Aborted,
        OutOfRange,
        Unimplemented,
        Internal,
        Unavailable,
        DataLoss,
        Unauthenticated,
    )
}


def from_status(status: status_pb2.Status, method: str = "") -> QuisError:
    """A QuisError from a google.rpc.Status."""
    code = next((c for c in grpc.StatusCode if c.value[0] == status.code), grpc.StatusCode.UNKNOWN)
    cls = ERRORS_BY_CODE.get(code, Unknown)
    return cls(status.message, code, [_unpack(d) for d in status.details], method)


def from_rpc_error(error: grpc.RpcError, method: str = "") -> QuisError:
    """A QuisError from a failed call, with the details from the `grpc-status-details-bin` trailer."""
    status = None
    try:
        status = rpc_status.from_call(error)
    except (ValueError, AttributeError):
        # A trailer that disagrees with the call's code or message is not trusted.
        status = None
    if status is not None:
        return from_status(status, method)
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    message = error.details() if hasattr(error, "details") else str(error)
    return ERRORS_BY_CODE.get(code, Unknown)(message or "", code, (), method)
