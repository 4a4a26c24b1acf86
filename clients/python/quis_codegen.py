"""Generates the Python gRPC code for every `quis/**/*.proto` under the repository's `proto/`.

Run by the build (setup.py) into the wheel, and by hand for in-tree development:

    python quis_codegen.py            # writes src/quis/...
    python quis_codegen.py OUT_DIR    # writes OUT_DIR/quis/...

The generated modules keep the proto package layout (`quis.ledger.v1.ledger_pb2`), as
googleapis-common-protos does for `google.rpc`, so that imports between generated files
resolve without rewriting. New services under `proto/quis/` are picked up by the glob.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def proto_root() -> Path:
    """The repository's proto/ directory: `QUIS_PROTO_DIR`, else found relative to this package."""
    configured = os.environ.get("QUIS_PROTO_DIR")
    candidates = [Path(configured)] if configured else [HERE.parent.parent / "proto", HERE / "proto"]
    for c in candidates:
        if (c / "quis").is_dir():
            return c.resolve()
    raise SystemExit(
        f"quis proto/ directory not found (looked in {', '.join(map(str, candidates))}); set QUIS_PROTO_DIR"
    )


def proto_files(root: Path) -> list[str]:
    files = sorted(p.relative_to(root).as_posix() for p in (root / "quis").rglob("*.proto"))
    if not files:
        raise SystemExit(f"no .proto files under {root / 'quis'}")
    return files


def generate(out_dir: Path, root: Path | None = None) -> list[str]:
    """Generates `_pb2`, `_pb2_grpc` and `.pyi` files into out_dir; returns the proto files compiled."""
    from importlib.resources import files as resource_files

    from grpc_tools import protoc

    root = root or proto_root()
    protos = proto_files(root)
    out_dir.mkdir(parents=True, exist_ok=True)
    well_known = str(resource_files("grpc_tools") / "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{root}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"grpc_tools.protoc failed on {root}")
    return protos


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "src"
    for name in generate(target):
        print(f"generated {name} -> {target}")
