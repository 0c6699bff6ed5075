"""Event-loop stalls: measured, attributed, logged.

Everything callsec does for a call runs on one event loop, the talk-through relay's 20 ms frames
included: a loop that stops for 200 ms holds every relayed frame for 200 ms. :class:`LoopWatch`
wakes every ``interval`` seconds and measures how late it woke (the loop's lag); a lag above
``warn_after`` is logged once per stall with what the garbage collector did meanwhile (the
usual culprit in a long-running process with a big heap: a full collection walks every object)
and, on Linux, how the loop's thread spent that time (``/proc/thread-self/schedstat``): on a
CPU (callsec's own work, the loop was busy) or runnable but waiting for a CPU (the machine was
busy: Asterisk, other processes).

:func:`settle_heap` is called once callsec is up: it moves everything allocated while starting
(modules, ORM mappers, configuration) into the collector's permanent generation, so later full
collections walk only what calls allocate (``gc.freeze``, CPython 3.7+).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callsec_ari.logs import Figure

log = logging.getLogger(__name__)
SCHEDSTAT = Path("/proc/thread-self/schedstat")


def thread_times(path: Path = SCHEDSTAT) -> tuple[float, float] | None:
    """The calling thread's seconds on a CPU and seconds runnable but waiting for one (Linux
    schedstat: ``<on cpu ns> <waiting ns> <timeslices>``); None where the kernel has none."""
    try:
        on_cpu, waiting, _ = path.read_text().split()
        return int(on_cpu) / 1e9, int(waiting) / 1e9
    except (OSError, ValueError):
        return None


@dataclass
class GcTimes:
    """Seconds spent in collections of each generation since the last :meth:`take`."""

    seconds: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    longest: float = 0.0
    _started: float = 0.0

    def callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        spent = time.perf_counter() - self._started
        self.seconds[int(info.get("generation", 2))] += spent
        self.longest = max(self.longest, spent)

    def take(self) -> tuple[list[float], float]:
        taken = (self.seconds, self.longest)
        self.seconds, self.longest = [0.0, 0.0, 0.0], 0.0
        return taken


class LoopWatch:
    def __init__(self, *, interval: float = 0.05, warn_after: float = 0.1) -> None:
        self.interval = interval
        self.warn_after = warn_after
        self.max_lag = 0.0
        self.stalls = 0
        self.gc = GcTimes()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        gc.callbacks.append(self.gc.callback)
        try:
            while True:
                before, times = loop.time(), thread_times()
                await asyncio.sleep(self.interval)
                after = thread_times()
                self._measured(loop.time() - before - self.interval,
                               None if times is None or after is None else
                               (after[0] - times[0], after[1] - times[1]))
        finally:
            gc.callbacks.remove(self.gc.callback)

    def _measured(self, lag: float, spent: tuple[float, float] | None = None) -> None:
        """``spent``: the loop thread's (on a CPU, waiting for a CPU) seconds since the tick
        before, the sleep included."""
        self.max_lag = max(self.max_lag, lag)
        seconds, longest = self.gc.take()
        if lag < self.warn_after:
            return
        self.stalls += 1
        gc_ms, longest_ms = Figure(sum(seconds) * 1000), Figure(longest * 1000)
        if spent is None:
            log.warning("event loop stalled %s ms (garbage collection meanwhile: %s ms, longest "
                        "%s ms)", Figure(lag * 1000), gc_ms, longest_ms, extra={"call_id": "-"})
            return
        log.warning("event loop stalled %s ms (of the last %s ms: on a CPU %s ms, waiting for "
                    "one %s ms; garbage collection meanwhile: %s ms, longest %s ms)",
                    Figure(lag * 1000), Figure((lag + self.interval) * 1000),
                    Figure(spent[0] * 1000), Figure(spent[1] * 1000), gc_ms, longest_ms,
                    extra={"call_id": "-"})

    def snapshot(self) -> dict[str, float | int]:
        return {"max_lag_seconds": round(self.max_lag, 4), "stalls": self.stalls}


def settle_heap() -> None:
    """Start-up objects leave the collector's view (see the module doc)."""
    gc.collect()
    gc.freeze()
