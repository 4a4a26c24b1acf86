"""Echo and identity through the gateway, and the Rust verifier agreeing with the Python one."""

import base64
import hashlib
import os
import subprocess
import uuid

import pytest

from quis_client import InvalidArgument, PermissionDenied

from conftest import env, wait_witnessed


def test_echo_all_call_shapes(token_client):
    c = token_client("QUIS_TOKEN_CASEWORKER")
    r = c.echo.echo("hello", b"\x00\x01")
    assert (r.message, r.payload, r.principal) == ("hello", b"\x00\x01", "alice")
    assert [m.sequence for m in c.echo.expand("x", 5)] == [0, 1, 2, 3, 4]
    total = c.echo.collect([b"ab", b"cde"])
    assert (total.message_count, total.total_bytes) == (2, 5)
    assert [(m.message, m.sequence) for m in c.echo.chat(["a", "b"])] == [("a", 0), ("b", 1)]


def test_identity_revocations_paginate(token_client):
    admin = token_client("QUIS_TOKEN_ADMIN")
    ids = [f"py-{uuid.uuid4().hex[:10]}" for _ in range(3)]
    for jti in ids:
        rev = admin.identity.revoke_token(jti, "python client test")
        assert rev.token_id == jti and rev.revoked_by == "adam"
    listed = [r.token_id for r in admin.identity.iter_revocations(page_size=1)]
    assert all(jti in listed for jti in ids)
    assert len(listed) == len(set(listed))


def test_identity_suspend_and_reinstate(token_client):
    admin = token_client("QUIS_TOKEN_ADMIN")
    who = f"py-{uuid.uuid4().hex[:10]}"
    assert admin.identity.suspend_principal(who, "python client test").principal == who
    assert admin.identity.reinstate_principal(who, "done").principal == who
    with pytest.raises(InvalidArgument) as e:
        admin.identity.suspend_principal("Not Valid!", "x")
    assert e.value.violation("principal") is not None
    with pytest.raises(PermissionDenied):
        token_client("QUIS_TOKEN_AUDITOR").identity.list_revocations()


def _rust_verify(state, full=True):
    args = [
        env("QUIS_BIN"),
        "verify",
        "--url",
        env("QUIS_TILES_URL"),
        "--log-key",
        env("QUIS_LOG_VKEY"),
        "--witness-key",
        env("QUIS_WITNESS_VKEY"),
        "--quorum",
        "1",
        "--state",
        str(state),
    ]
    if full:
        args += ["--full", "--token", env("QUIS_TOKEN_AUDITOR")]
    # The QUIS_* test variables would be read as quis configuration (QUIS_GATEWAY is a config section).
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("QUIS_")}
    return subprocess.run(args, capture_output=True, text=True, timeout=120, env=clean_env)


def test_rust_verifier_agrees_with_python(vault, auditor, verifier, tmp_path):
    """`quis verify` (Rust, quis-tlog) and this package's verifier accept the same checkpoint
    and the same consistency, and both refuse a forged history."""
    from quis_client.tlog import BadSignature, Checkpoint, ProofError

    from _events import access_events

    help_text = subprocess.run(
        [env("QUIS_BIN"), "verify", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("QUIS_")},
    )
    for flag in ("--url", "--log-key", "--witness-key", "--quorum", "--state", "--full", "--token"):
        assert flag in help_text.stdout

    old, old_resp = wait_witnessed(auditor, verifier, 1)
    events, details, _ = access_events(2)
    size = vault.ledger.append_events(events, details).tree_size
    new, _ = wait_witnessed(auditor, verifier, size)
    auditor.ledger.prove_consistency(old, new, verifier)

    # Rust, trusting the old checkpoint, proves consistency to the latest and recomputes the root.
    state = tmp_path / "state"
    state.write_text(old_resp.checkpoint)
    out = _rust_verify(state)
    assert out.returncode == 0, f"quis verify refused what the Python verifier accepts:\n{out.stderr}"
    assert f"consistent with trusted size {old.size}" in out.stdout
    # The note Rust accepted (it writes it to the state file) is accepted by Python, same tree.
    accepted = verifier.checkpoint(state.read_text())
    assert f"verified size {accepted.size} root {base64.b64encode(accepted.root).decode()}" in out.stdout
    assert accepted.size >= new.size

    # A forged trusted state (another root at the old size): Python refuses its signature and its
    # consistency with the log; Rust refuses the consistency.
    forged_root = base64.b64encode(hashlib.sha256(b"forged").digest()).decode()
    lines = old_resp.checkpoint.split("\n")
    lines[2] = forged_root
    forged_note = "\n".join(lines)
    with pytest.raises(BadSignature):
        verifier.checkpoint(forged_note)
    forged = Checkpoint(old.origin, old.size, base64.b64decode(forged_root))
    if old.size < accepted.size:
        with pytest.raises(ProofError):
            auditor.ledger.prove_consistency(forged, accepted, verifier)
    state.write_text(forged_note)
    bad = _rust_verify(state, full=False)
    assert bad.returncode != 0, f"quis verify accepted a forged history:\n{bad.stdout}"
