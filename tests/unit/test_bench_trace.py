"""The opt-in benchmark trace (CALLSEC_BENCH_TRACE): off by default, times only."""

from __future__ import annotations

from pathlib import Path

import pytest

from callsec_ari.core.events import DtmfReceived, PlaybackFinished
from callsec_ari.runtime import trace as t
from callsec_ari.runtime.trace import BenchTrace


def test_trace_is_off_unless_the_environment_names_a_file(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(t.ENV, raising=False)
    assert BenchTrace.from_env() is None


def test_first_command_after_a_digit_is_traced_once_without_the_digit(tmp_path: Path) -> None:
    trace = BenchTrace(str(tmp_path / "trace.csv"))
    digit = DtmfReceived(digit="7", at=1.0, leg="caller")
    trace.stamp(digit, 1796000000.125)
    trace.sent(digit, "StopPlayback")
    trace.sent(digit, "Play")  # a second command for the same digit: no second sample
    trace.close()
    lines = (tmp_path / "trace.csv").read_text().splitlines()
    samples = [line for line in lines if line.startswith("d,")]
    assert len(samples) == 1
    kind, event_ts, sent_ts, command, read_ts = samples[0].split(",")
    assert (kind, event_ts, command) == ("d", "1796000000.125000", "StopPlayback")
    assert float(event_ts) < float(read_ts) <= float(sent_ts)  # read splits the wait
    assert "7" not in samples[0].replace("1796000000.125000", "").replace(
        sent_ts, "").replace(read_ts, "")


def test_commands_caused_by_other_events_leave_no_sample(tmp_path: Path) -> None:
    trace = BenchTrace(str(tmp_path / "trace.csv"))
    digit = DtmfReceived(digit="1", at=1.0)
    trace.stamp(digit, 100.0)
    trace.sent(PlaybackFinished(playback_id="p1", at=2.0), "Play")
    trace.sent(None, "Play")
    trace.close()
    assert not [line for line in (tmp_path / "trace.csv").read_text().splitlines()
                if line.startswith("d,")]


def test_event_counts_are_written_periodically_and_at_close(tmp_path: Path) -> None:
    trace = BenchTrace(str(tmp_path / "trace.csv"))
    for _ in range(t.COUNT_EVERY + 3):
        trace.event()
    trace.close()
    counts = [int(line.split(",")[1]) for line in (tmp_path / "trace.csv").read_text()
              .splitlines() if line.startswith("n,")]
    assert counts == [t.COUNT_EVERY, t.COUNT_EVERY + 3]


def test_digits_that_never_cause_a_command_do_not_pile_up(tmp_path: Path) -> None:
    trace = BenchTrace(str(tmp_path / "trace.csv"))
    for i in range(t.MAX_PENDING + 10):
        trace.stamp(DtmfReceived(digit="5", at=float(i)), float(i))
    assert len(trace._pending) == t.MAX_PENDING
    trace.close()
