"""The generator compiles every proto under proto/quis, so a service added later needs no change here."""

import importlib.util
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _codegen():
    spec = importlib.util.spec_from_file_location("quis_codegen", ROOT / "quis_codegen.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_new_service_is_generated_and_callable(tmp_path):
    codegen = _codegen()
    protos = tmp_path / "proto"
    shutil.copytree(codegen.proto_root(), protos)
    probe = protos / "quis" / "probe" / "v1" / "probe.proto"
    probe.parent.mkdir(parents=True)
    probe.write_text(
        textwrap.dedent(
            """
            syntax = "proto3";
            package quis.probe.v1;
            import "quis/ledger/v1/ledger.proto";
            service ProbeService {
              rpc Check(CheckRequest) returns (CheckResponse);
            }
            message CheckRequest {
              quis.ledger.v1.Purpose purpose = 1;
              string case = 2;
            }
            message CheckResponse {}
            """
        )
    )
    out = tmp_path / "out"
    compiled = codegen.generate(out, protos)
    assert "quis/probe/v1/probe.proto" in compiled and "quis/ledger/v1/ledger.proto" in compiled
    # A fresh interpreter sees the new service next to the installed ones, and treats its
    # request (a top-level purpose) as an access call.
    script = textwrap.dedent(
        """
        import sys
        from quis_client import Client
        print(",".join(Client.services()))
        c = Client("127.0.0.1:1")
        m = c.service("quis.probe.v1.ProbeService").Check
        r = m.request(purpose="AUDIT", case="c-9")
        print(r.purpose, r.case)
        try:
            m.request()
        except ValueError:
            print("refused without purpose")
        """
    )
    env_path = f"{out}"
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
        check=True,
    )
    services, access, refused = result.stdout.splitlines()
    assert "quis.probe.v1.ProbeService" in services.split(",")
    assert "quis.ledger.v1.LedgerService" in services.split(",")
    assert access == "6 cases/c-9"
    assert refused == "refused without purpose"
