#!/usr/bin/env bash
# Installs quis-client (generating its gRPC code from ../../proto) with its test extras into a
# virtualenv outside the clone, then runs pytest: the unit tests always, the live tests when
# QUIS_GATEWAY is set (scripts/clients-test.sh sets it and the other QUIS_* variables). With
# QUIS_GATEWAY set, a skipped or missing live test fails the run.
set -euo pipefail
cd "$(dirname "$0")"
venv="${QUIS_PY_VENV:-/var/tmp/quis-py-venv}"
python="${QUIS_PYTHON:-$(command -v python3.11 || command -v python3)}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
# The build runs in this venv (no isolation) so that the generated code matches the installed runtime.
"${pip[@]}" install -q "setuptools>=77" wheel "grpcio-tools>=1.66"
"${pip[@]}" install -q --no-build-isolation ".[test]"
rm -rf build

report=$(mktemp -d)
trap 'rm -rf "$report"' EXIT
status=0
# Run from the tests' parent with the source tree off sys.path: the installed package is tested.
"$venv/bin/python" -m pytest -p no:cacheprovider -ra --junitxml="$report/junit.xml" tests "$@" || status=$?

if [ -n "${QUIS_GATEWAY:-}" ]; then
    "$venv/bin/python" - "$report/junit.xml" <<'PY' || status=1
import sys
import xml.etree.ElementTree as ET

cases = [c for c in ET.parse(sys.argv[1]).iter("testcase") if ".live." in c.get("classname", "") + "."]
skipped = [c.get("name") for c in cases if c.find("skipped") is not None]
if not cases:
    sys.exit("QUIS_GATEWAY is set but no live test ran")
if skipped:
    sys.exit(f"QUIS_GATEWAY is set but {len(skipped)} live tests were skipped: {', '.join(skipped)}")
print(f"live tests: {len(cases)} ran, none skipped")
PY
fi
exit "$status"
