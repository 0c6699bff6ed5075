"""The machine a benchmark ran on, and what a process costs (from ``/proc``, Linux only).

:class:`ProcWatch` samples one PID while a ramp runs: CPU seconds (``utime + stime`` of every
thread, ``/proc/<pid>/stat``) between :meth:`start` and :meth:`stop`, and the peak resident set
size seen by a sampler task (``VmRSS`` every ``interval`` s) next to the kernel's own high-water
mark (``VmHWM``, the peak over the process's life).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_times(pid: int, thread: int | None = None) -> tuple[float, float]:
    """User and system CPU seconds of ``pid`` so far (all its threads), or of one thread."""
    path = f"/proc/{pid}/task/{thread}/stat" if thread is not None else f"/proc/{pid}/stat"
    stat = Path(path).read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS  # utime, stime


def cpu_seconds(pid: int) -> float:
    return sum(cpu_times(pid))


def udp_counters() -> dict[str, int]:
    """The kernel's UDP counters (``/proc/net/snmp``): ``RcvbufErrors`` counts datagrams
    dropped because a socket's receive buffer was full (its reader was too slow)."""
    rows = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()
            if line.startswith("Udp:")]
    return dict(zip(rows[0][1:], map(int, rows[1][1:]), strict=True)) if len(rows) >= 2 else {}


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def system_cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine (all cores) from ``/proc/stat``."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLOCK_TICKS


@dataclass
class ProcWatch:
    pid: int
    interval: float = 0.25
    cpu_start: float = 0.0
    cpu_used: float = 0.0
    sys_start: float = 0.0
    sys_used: float = 0.0
    #: The main thread alone (callsec's event loop; its worker threads do the database work).
    main_start: float = 0.0
    main_used: float = 0.0
    peak_rss_kb: int = 0
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    def start(self, tg: asyncio.TaskGroup) -> None:
        with contextlib.suppress(OSError):
            user, system = cpu_times(self.pid)
            self.cpu_start, self.sys_start = user + system, system
            self.main_start = sum(cpu_times(self.pid, self.pid))
            self.peak_rss_kb = status_kb(self.pid, "VmRSS")
        self._task = tg.create_task(self._sample(), name=f"procwatch-{self.pid}")

    async def _sample(self) -> None:
        while True:
            with contextlib.suppress(OSError, ValueError):
                self.peak_rss_kb = max(self.peak_rss_kb, status_kb(self.pid, "VmRSS"))
            await asyncio.sleep(self.interval)

    def stop(self) -> None:
        """End the sampling; ``cpu_used`` stays 0 when the process is gone."""
        if self._task is not None:
            self._task.cancel()
        with contextlib.suppress(OSError):
            user, system = cpu_times(self.pid)
            self.cpu_used = user + system - self.cpu_start
            self.sys_used = system - self.sys_start
            self.main_used = sum(cpu_times(self.pid, self.pid)) - self.main_start

    def hwm_kb(self) -> int:
        return status_kb(self.pid, "VmHWM")


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _mem_total_gib() -> float:
    kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
              if line.startswith("MemTotal:"))
    return round(kb / 1024 / 1024, 1)


def asterisk_version(root: Path) -> str:
    try:
        out = subprocess.run(["chroot", str(root), "asterisk", "-V"], capture_output=True,
                             text=True, timeout=20, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.removeprefix("Asterisk ").strip() or "unknown"


def machine(asterisk_root: Path) -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "memory_gib": _mem_total_gib(),
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "asterisk": asterisk_version(asterisk_root),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def settle(below: float = 1.0, limit_s: float = 120.0) -> float:
    """Wait (at most ``limit_s``) until the 1-minute load average is under ``below``: on a shared
    2-core machine a step that starts while the previous one's processes still wind down
    measures them. Returns the load average it started with."""
    deadline = time.monotonic() + limit_s
    while os.getloadavg()[0] >= below and time.monotonic() < deadline:
        time.sleep(2.0)
    return os.getloadavg()[0]


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100)
    return ordered[int(rank) - 1]
