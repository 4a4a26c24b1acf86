"""Iterating every page of an AIP-158 `page_size` / `page_token` call."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message


def _items_field(response_descriptor) -> str:
    repeated = [f.name for f in response_descriptor.fields if f.is_repeated and f.type == FieldDescriptor.TYPE_MESSAGE]
    if len(repeated) != 1:
        raise TypeError(f"{response_descriptor.full_name}: name the items field (found {repeated})")
    return repeated[0]


def pages(call: Callable[[Message], Message], request: Message, max_pages: int | None = None) -> Iterator[Message]:
    """Calls `call` with `request`, then again with each `next_page_token`, yielding every response."""
    if "page_token" not in request.DESCRIPTOR.fields_by_name:
        raise TypeError(f"{request.DESCRIPTOR.full_name} has no page_token field")
    request = type(request).FromString(request.SerializeToString())
    seen = set()
    count = 0
    while True:
        response = call(request)
        yield response
        count += 1
        token = response.next_page_token
        if not token or (max_pages is not None and count >= max_pages):
            return
        if token in seen:  # a server that repeats a token would loop forever
            raise RuntimeError(f"{request.DESCRIPTOR.full_name}: page token repeated")
        seen.add(token)
        request.page_token = token


def paginate(call: Callable[[Message], Message], request: Message, items: str | None = None) -> Iterator:
    """Every item of every page: `items` is the repeated response field (found when there is one)."""
    field = None
    for response in pages(call, request):
        field = field or items or _items_field(response.DESCRIPTOR)
        yield from getattr(response, field)
