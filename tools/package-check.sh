#!/usr/bin/env bash
# make package-check: the sdist and the wheel contain everything an operator needs.
# Builds the sdist and, from it, the wheel (python -m build), installs the wheel (not the source
# tree) with constraints.txt into a fresh venv outside the repository, and runs
# tests/integration/test_installed_wheel.py against that install: install-assets, --version,
# check-config, db upgrade, keys init with the config in an /etc-like temp dir (CALLSEC_CONFIG),
# then `callsec run` from the venv takes one verified call from the sandbox.
# Needs the sandbox (make sandbox-up) and the dev venv (the test harness runs from it).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${PACKAGE_CHECK_DIR:-/tmp/callsec-package-check}
python=${PYTHON:-python3}
rm -rf "$out"
mkdir -p "$out"
step() { echo "package-check: $*"; }

step "building sdist and wheel into $out/dist"
.venv/bin/python -m build --no-isolation --outdir "$out/dist" . >"$out/build.log" 2>&1 \
    || { tail -40 "$out/build.log"; exit 1; }
wheel=$(echo "$out"/dist/callsec_ari-*.whl)
sdist=$(echo "$out"/dist/callsec_ari-*.tar.gz)
ls -l "$wheel" "$sdist"

step "installing the wheel into a fresh venv $out/venv with the sdist's constraints.txt"
tar -xzf "$sdist" -C "$out" --strip-components=1 --wildcards '*/constraints.txt'
cmp "$out/constraints.txt" constraints.txt
"$python" -m venv "$out/venv"
"$out/venv/bin/pip" install -q --upgrade pip
"$out/venv/bin/pip" install -q -c "$out/constraints.txt" "$wheel"
"$out/venv/bin/pip" check

step "running the installed callsec against the sandbox"
CALLSEC_INSTALLED="$out/venv/bin/callsec" \
    tools/run-tier.sh package tests/integration/test_installed_wheel.py -q -p no:cacheprovider \
    --basetemp "$out/pytest"
