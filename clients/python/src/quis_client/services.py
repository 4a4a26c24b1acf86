"""Finds the generated gRPC code for any service under `quis.*`, so that services added to
proto/ later are callable after regeneration without touching this package."""

from __future__ import annotations

import importlib
from functools import cache
from pathlib import Path

from google.protobuf import descriptor_pool
from google.protobuf.descriptor import ServiceDescriptor


@cache
def _load_generated() -> tuple[str, ...]:
    """Imports every generated `quis.*_pb2_grpc` module (which registers its descriptors)."""
    try:
        import quis
    except ImportError as e:  # pragma: no cover - only without generated code
        raise ImportError("generated code missing: install the package, or run `python quis_codegen.py`") from e
    # The generated directories are namespace packages (no __init__.py), which pkgutil does not walk.
    names = sorted(
        {
            "quis." + ".".join(f.relative_to(root).with_suffix("").parts)
            for root in map(Path, quis.__path__)
            for f in root.rglob("*_pb2_grpc.py")
        }
    )
    for name in names:
        importlib.import_module(name)
    return tuple(names)


@cache
def service_names() -> tuple[str, ...]:
    """Full names of every generated Quis service, e.g. `quis.ledger.v1.LedgerService`."""
    pool = descriptor_pool.Default()
    out = []
    for module in _load_generated():
        file = pool.FindFileByName(module.removesuffix("_pb2_grpc").replace(".", "/") + ".proto")
        out.extend(s.full_name for s in file.services_by_name.values())
    return tuple(sorted(out))


def service_descriptor(full_name: str) -> ServiceDescriptor:
    _load_generated()
    try:
        return descriptor_pool.Default().FindServiceByName(full_name)
    except KeyError:
        raise KeyError(f"unknown service {full_name!r}; known: {', '.join(service_names())}") from None


def stub_class(full_name: str):
    """The generated `<Service>Stub` class of a service."""
    svc = service_descriptor(full_name)
    module = importlib.import_module(svc.file.name.removesuffix(".proto").replace("/", ".") + "_pb2_grpc")
    return getattr(module, f"{svc.name}Stub")


def message_class(descriptor):
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(descriptor)
