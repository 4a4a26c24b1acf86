"""Purpose of use and case reference for access calls.

Every call that reads personal data must say why (a purpose code) and, for casework, for
which case. A request message that has a top-level `purpose` field is an access call: the
client refuses to send it without a purpose. The purpose is given by its short code
(`CASEWORK`), its full enum name (`PURPOSE_CASEWORK`) or number; the case as `cases/{id}`
or the bare id.
"""

from __future__ import annotations

import re

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

PURPOSES = ("CASEWORK", "TAXPAYER_SERVICE", "COMPLIANCE", "FRAUD_INVESTIGATION", "LEGAL", "AUDIT", "EMERGENCY")
_ID = re.compile(r"[a-z0-9-]{1,64}")


def case_name(case: str) -> str:
    """`cases/{case}` from a case resource name or a bare id; ids are 1-64 of [a-z0-9-]."""
    case_id = case.removeprefix("cases/")
    if not _ID.fullmatch(case_id):
        raise ValueError(f"case {case!r} is not cases/{{id}} with an id of 1 to 64 characters of [a-z0-9-]")
    return f"cases/{case_id}"


def _enum_value(field: FieldDescriptor, purpose) -> int:
    enum = field.enum_type
    if isinstance(purpose, int):
        if purpose not in enum.values_by_number:
            raise ValueError(f"{purpose} is not a {enum.full_name} value")
        return purpose
    name = str(purpose).upper()
    prefix = enum.values[0].name.removesuffix("UNSPECIFIED")  # e.g. PURPOSE_
    for candidate in (name, prefix + name):
        value = enum.values_by_name.get(candidate)
        if value is not None and value.number != 0:
            return value.number
    raise ValueError(f"unknown purpose {purpose!r}; one of {', '.join(PURPOSES)}")


def is_access_request(request: Message) -> bool:
    return "purpose" in request.DESCRIPTOR.fields_by_name


def apply_access(request: Message, purpose=None, case: str | None = None) -> Message:
    """Sets `purpose` and `case` on a request (in place) and checks an access call carries a purpose."""
    fields = request.DESCRIPTOR.fields_by_name
    if purpose is not None:
        field = fields.get("purpose")
        if field is None:
            raise TypeError(f"{request.DESCRIPTOR.full_name} has no purpose field")
        if field.type == FieldDescriptor.TYPE_ENUM:
            request.purpose = _enum_value(field, purpose)
        else:
            request.purpose = str(purpose)
    if case is not None:
        if "case" not in fields:
            raise TypeError(f"{request.DESCRIPTOR.full_name} has no case field")
        request.case = case_name(case)
    if "purpose" in fields and not request.purpose:
        raise ValueError(f"{request.DESCRIPTOR.full_name} is an access call: give a purpose ({', '.join(PURPOSES)})")
    return request
