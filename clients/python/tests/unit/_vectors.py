"""Where the shared test vectors are: `$QUIS_TESTDATA`, else the repository's copy."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[4]


def vectors_dir() -> Path:
    d = Path(os.environ.get("QUIS_TESTDATA") or REPO / "crates" / "tlog" / "tests" / "vectors")
    if not ((d / "rfc6962").is_dir() and (d / "c2sp").is_dir()):
        raise FileNotFoundError(f"test vectors not found in {d} (set QUIS_TESTDATA)")
    return d
