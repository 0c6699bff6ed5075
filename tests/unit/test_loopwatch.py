"""The event-loop stall watch: a late wake-up is logged once, with what the collector did."""

import logging
from pathlib import Path

import pytest

from callsec_ari.loopwatch import LoopWatch, thread_times


def test_a_stall_above_the_threshold_is_logged_with_the_collectors_share(
        caplog: pytest.LogCaptureFixture) -> None:
    watch = LoopWatch(interval=0.05, warn_after=0.1)
    watch.gc.callback("start", {"generation": 2})
    watch.gc.callback("stop", {"generation": 2})
    with caplog.at_level(logging.WARNING, logger="callsec_ari.loopwatch"):
        watch._measured(0.02)
        watch._measured(0.25)
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == \
        ["event loop stalled 250 ms"]
    assert watch.snapshot() == {"max_lag_seconds": 0.25, "stalls": 1}
    assert watch.gc.take() == ([0.0, 0.0, 0.0], 0.0)  # the collector's time was handed out


def test_collections_are_summed_per_generation() -> None:
    watch = LoopWatch()
    for generation in (0, 2, 2):
        watch.gc.callback("start", {"generation": generation})
        watch.gc.callback("stop", {"generation": generation})
    seconds, longest = watch.gc.take()
    assert seconds[1] == 0.0 and seconds[0] > 0.0 and seconds[2] > 0.0
    assert max(seconds) >= longest > 0.0  # the longest single collection, of any generation


def test_a_stall_says_how_much_of_it_the_loop_worked_and_how_much_it_waited_for_a_cpu(
        caplog: pytest.LogCaptureFixture) -> None:
    watch = LoopWatch(interval=0.05, warn_after=0.1)
    with caplog.at_level(logging.WARNING, logger="callsec_ari.loopwatch"):
        watch._measured(0.25, (0.04, 0.21))
    assert "of the last 300 ms: on a CPU 40 ms, waiting for one 210 ms" in caplog.text


def test_thread_times_read_this_threads_schedstat(tmp_path: Path) -> None:
    fake = tmp_path / "schedstat"
    fake.write_text("1500000000 250000000 42\n")
    assert thread_times(fake) == (1.5, 0.25)
    assert thread_times(tmp_path / "missing") is None
    fake.write_text("garbage\n")
    assert thread_times(fake) is None
    real = thread_times()
    if real is not None:  # Linux with schedstats: this thread has been on a CPU
        assert real[0] > 0 and real[1] >= 0
