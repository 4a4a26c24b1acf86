"""Live tests: real calls through the gateway of a running suite (scripts/clients-test.sh).

Without QUIS_GATEWAY they are skipped; run-tests.sh fails if they are skipped while it is set.
"""

import os
import time

import pytest

from quis_client import Client
from quis_client.ledger import decode_entry
from quis_client.tlog import LogVerifier, TileClient

LIVE = bool(os.environ.get("QUIS_GATEWAY"))


def pytest_collection_modifyitems(config, items):
    if LIVE:
        return
    skip = pytest.mark.skip(reason="QUIS_GATEWAY is not set (run scripts/clients-test.sh python)")
    for item in items:
        if "/live/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(skip)


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set; scripts/clients-test.sh exports it")
    return value


@pytest.fixture(scope="session")
def gateway() -> str:
    return env("QUIS_GATEWAY")


def _client(gateway, token_var):
    return Client(gateway, token=env(token_var) if token_var else None)


def ledger_addr() -> str:
    """The ledger's own gRPC address, for appends.

    The gateway keeps AppendEvents off the public listener (`gateway.internal_methods`): only
    services append, over their own connection to the ledger, as the vault does. The live
    suite appends the way the vault would, with the vault's service token, and reads
    everything else through the gateway.
    """
    addr = os.environ.get("QUIS_LEDGER_ADDR")
    if not addr:
        pytest.fail(
            "QUIS_LEDGER_ADDR is not set: AppendEvents is internal on the gateway, so the live tests "
            "append on the ledger's own address (the `serving service=ledger addr=...` line of quis up)"
        )
    return addr


@pytest.fixture(scope="session")
def vault():
    """The vault's path to the ledger: the vault service token on the ledger's own address."""
    with Client(ledger_addr(), token=env("QUIS_TOKEN_VAULT")) as c:
        yield c


@pytest.fixture(scope="session")
def ledger_direct():
    """Clients on the ledger's own address for any QUIS_TOKEN_* role (appends are refused by the gateway)."""
    made = []

    def make(role_var):
        c = Client(ledger_addr(), token=env(role_var))
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture(scope="session")
def auditor(gateway):
    with _client(gateway, "QUIS_TOKEN_AUDITOR") as c:
        yield c


@pytest.fixture(scope="session")
def anonymous(gateway):
    with _client(gateway, None) as c:
        yield c


@pytest.fixture(scope="session")
def token_client(gateway):
    """A client for any QUIS_TOKEN_* role, closed at the end."""
    made = []

    def make(role_var):
        c = _client(gateway, role_var)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture(scope="session")
def verifier() -> LogVerifier:
    """Trusts the log key and the local witness, with a quorum of 1."""
    return LogVerifier(env("QUIS_LOG_VKEY"), env("QUIS_WITNESS_VKEY"), quorum=1, origin=env("QUIS_LOG_ORIGIN"))


@pytest.fixture(scope="session")
def tiles() -> TileClient:
    return TileClient(env("QUIS_TILES_URL"), token=env("QUIS_TOKEN_AUDITOR"))


def wait_witnessed(client: Client, verifier: LogVerifier, min_size: int, deadline_s: float = 30.0):
    """Polls until the latest checkpoint covers `min_size` and carries the witness quorum.

    After appends a checkpoint may be signed before the witness has cosigned it; that
    window is expected, so poll rather than fail on the first unwitnessed answer.
    """
    end = time.monotonic() + deadline_s
    while True:
        resp = client.ledger.get_checkpoint()
        if resp.tree_size >= min_size and resp.witnessed:
            return verifier.checkpoint(resp.checkpoint), resp
        if time.monotonic() > end:
            pytest.fail(f"no witnessed checkpoint of size >= {min_size} within {deadline_s}s (last: {resp})")
        time.sleep(0.1)


def proved_entry(auditor: Client, verifier: LogVerifier, index: int):
    """The ledger entry at `index`, read by an auditor and proved included (over its exact stored bytes)
    in a witnessed checkpoint verified here; returns (stored entry, decoded LedgerEntry)."""
    checkpoint, _ = wait_witnessed(auditor, verifier, index + 1)
    entry = next(auditor.ledger.iter_entries(index, index + 1))
    auditor.ledger.prove_inclusion(entry, verifier, checkpoint)
    return entry, decode_entry(entry.data)
