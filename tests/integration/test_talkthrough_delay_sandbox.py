"""The talk-through's added one-way delay does not grow over a capture (#17): a real call, both
sides talking, a 30 s talk-through capture nobody types in; the delay caller -> agent measured
in B's wall-clock faithful recording at the capture's start and at its end, each minus the
plain bridge's (``bench/talkthrough_delay.py``, which ``make bench`` runs for five minutes)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from bench.talkthrough_delay import TARGET_MS, measure
from tests.harness.sandbox import Sandbox

pytestmark = pytest.mark.sandbox


async def test_added_delay_stays_within_60_ms_over_a_30_s_capture(sandbox: Sandbox) -> None:
    result = await measure(30.0, name="talkthrough-delay-test")
    path = Path(__file__).resolve().parents[2] / "var" / "test" / "talkthrough-results.txt"
    with path.open("a", encoding="utf-8") as out:
        out.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} delay-30s {json.dumps(result)}\n")
    assert result["floor_lag_ms"] is not None, result
    assert result["added_start_ms"] is not None and result["added_end_ms"] is not None, result
    assert result["added_start_ms"] <= TARGET_MS, result
    assert result["added_end_ms"] <= TARGET_MS, result
