"""TLS to the gateway: a second `quis up` with TLS on (the development PKI from `quis init`),
started from QUIS_BIN for this module only."""

import os
import queue
import subprocess
import threading
import time

import pytest

from quis_client import Client, QuisError, Unavailable
from quis_client.tlog import LogVerifier, TileClient, TileError

from conftest import env


def _clean_env(**extra):
    # quis reads QUIS_* as configuration: pass none of the test's variables.
    return {**{k: v for k, v in os.environ.items() if not k.startswith("QUIS_")}, **extra}


def _read_until(proc, prefixes, deadline_s=60.0):
    """The stdout lines of `quis up` starting with each prefix, read until all are seen."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    found, end = {}, time.monotonic() + deadline_s
    while len(found) < len(prefixes):
        if time.monotonic() > end or proc.poll() is not None:
            pytest.fail(f"quis up with TLS did not start (exit {proc.poll()}), saw {found}")
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        for p in prefixes:
            if line.startswith(p):
                found[p] = line[len(p) :].strip()
    return found


@pytest.fixture(scope="module")
def tls_suite(tmp_path_factory):
    quis = env("QUIS_BIN")
    data = tmp_path_factory.mktemp("quis-py-tls") / "data"
    subprocess.run([quis, "--data-dir", str(data), "init"], env=_clean_env(), check=True, capture_output=True)
    token = subprocess.run(
        [quis, "--data-dir", str(data), "token", "--sub", "tess", "--role", "caseworker", "--ttl", "10m"],
        env=_clean_env(),
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    proc = subprocess.Popen(
        [quis, "--data-dir", str(data), "up", "--port", "0", "--admin-port", "0"],
        env=_clean_env(QUIS_TLS__ENABLED="true"),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        seen = _read_until(proc, ["gateway listening on ", "log verifier key: ", "witness verifier key: "])
        yield {
            "address": seen["gateway listening on "],
            "token": token,
            "ca": str(data / "pki" / "ca.crt"),
            "log_vkey": seen["log verifier key: "],
            "witness_vkey": seen["witness verifier key: "],
        }
    finally:
        proc.terminate()
        proc.wait(30)


def test_call_over_tls_with_the_suites_ca(tls_suite):
    with Client(tls_suite["address"], token=tls_suite["token"], tls=True, ca_file=tls_suite["ca"]) as c:
        r = c.echo.echo("over tls")
        assert (r.message, r.principal) == ("over tls", "tess")


def test_untrusted_server_certificate_refused(tls_suite):
    with Client(tls_suite["address"], token=tls_suite["token"], tls=True, timeout=5) as c:
        with pytest.raises(Unavailable):
            c.echo.echo("x")


def test_plaintext_to_the_tls_listener_fails(tls_suite):
    with Client(tls_suite["address"], token=tls_suite["token"], timeout=5) as c:
        with pytest.raises(QuisError):
            c.echo.echo("x")


def test_checkpoint_over_https(tls_suite):
    verifier = LogVerifier(tls_suite["log_vkey"], tls_suite["witness_vkey"], quorum=1)
    url = f"https://{tls_suite['address']}"
    deadline = time.monotonic() + 30
    while True:
        try:
            cp = verifier.checkpoint(TileClient(url, ca_file=tls_suite["ca"]).checkpoint())
            break
        except TileError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)  # the first checkpoint is signed just after start
    assert cp.size == 0 and cp.cosigners
    with pytest.raises(TileError):
        TileClient(url).checkpoint()  # system roots do not trust the development CA
