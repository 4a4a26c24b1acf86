"""quis-client: a Python client for the Quis suite, and an independent ledger verifier.

from quis_client import Client
from quis_client.tlog import LogVerifier

with Client("127.0.0.1:8443", token=lambda: current_jwt()) as quis:
    cp = quis.ledger.verified_checkpoint(LogVerifier(log_vkey, [witness_vkey], quorum=1))
"""

from .access import PURPOSES, apply_access, case_name
from .client import Client, Method, ServiceClient, Stream
from .errors import (
    ERRORS_BY_CODE,
    Aborted,
    AlreadyExists,
    Cancelled,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    Internal,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    QuisError,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    Unknown,
)

__all__ = [
    "ERRORS_BY_CODE",
    "PURPOSES",
    "Aborted",
    "AlreadyExists",
    "Cancelled",
    "Client",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "Internal",
    "InvalidArgument",
    "Method",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "QuisError",
    "ResourceExhausted",
    "ServiceClient",
    "Stream",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Unknown",
    "apply_access",
    "case_name",
]
