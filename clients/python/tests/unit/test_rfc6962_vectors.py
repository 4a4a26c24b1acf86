"""Every RFC 6962 vector: wantErr ones rejected, the others accepted."""

import base64
import json

import pytest

from quis_client.tlog import ProofError, verify_consistency, verify_inclusion

from _vectors import vectors_dir


def _files(kind):
    files = sorted((vectors_dir() / "rfc6962" / kind).rglob("*.json"))
    assert files, f"no {kind} vectors"
    return files


def _ids(files):
    return [f"{f.parent.name}/{f.stem}" for f in files]


def _b64(v):
    return base64.b64decode(v) if v else b""


INCLUSION = _files("inclusion")
CONSISTENCY = _files("consistency")


@pytest.mark.parametrize("path", INCLUSION, ids=_ids(INCLUSION))
def test_inclusion_vector(path):
    v = json.loads(path.read_text())
    args = (v["leafIdx"], v["treeSize"], _b64(v["leafHash"]), [_b64(p) for p in v["proof"] or []], _b64(v["root"]))
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("path", CONSISTENCY, ids=_ids(CONSISTENCY))
def test_consistency_vector(path):
    v = json.loads(path.read_text())
    args = (v["size1"], v["size2"], [_b64(p) for p in v["proof"] or []], _b64(v["root1"]), _b64(v["root2"]))
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_vector_counts():
    # Both outcomes must be exercised, or a verifier that always answers the same would pass.
    outcomes = [json.loads(p.read_text())["wantErr"] for p in INCLUSION + CONSISTENCY]
    assert outcomes.count(True) > 50 and outcomes.count(False) > 10
