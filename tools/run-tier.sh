#!/usr/bin/env bash
# Runs one pytest tier (with $TIER_PYTHON, default .venv/bin/python); a tier that collects no test (pytest exit 5) is a failure, not a pass.
set -uo pipefail
tier=$1; shift
"${TIER_PYTHON:-.venv/bin/python}" -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "run-tier: the $tier tier collected no test" >&2
    exit 1
fi
exit "$rc"
