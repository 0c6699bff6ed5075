#!/usr/bin/env python3
"""``make soak MINUTES=N``: calls run through ``callsec run`` continuously; does anything grow?

Callers are Local channels on the sandbox's Asterisk A dialling ``1000``
(``Stasis(callsec,verify)``), each a known customer verified by SMS code: the "phone" reads
the code from the outbox and keys it in. ``--callers`` of them call back to back until the time
is up. Every ``--interval`` seconds the soak pauses new calls until callsec has no call left
(``callsec_active_calls`` is 0), then samples callsec's resident memory (``VmRSS``), its open
file descriptors (``/proc/<pid>/fd``) and its asyncio task count (``callsec_asyncio_tasks`` on
``/metrics``): quiet moments, so every sample is comparable with the first.

A call counts as done when callsec has handed the caller back to the dialplan (``Wait``
after ``Stasis`` in the sandbox) with ``CALLSEC_RESULT=verified``.

Exit status: 0, or 1 when a series grew monotonically after the warm-up (every sample at
least the one before and the rise above its tolerance), when calls failed (more than 2 %),
or when no call completed. Results: a table on stdout and ``var/soak/soak.json``. Not part of CI.

Runs its own ``callsec run`` on the ARI app ``callsec`` (so it waits while another one runs)
with its own work directory (``var/soak``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import json
import os
import re
import secrets
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from tests.harness.callsec_proc import REPO, CallsecProcess
from tests.harness.local import LocalCaller
from tests.integration.capture_env import wait_no_other_callsec

CODE = re.compile(r"(?<![\d:])(\d{4,10})(?![\d:])")
#: How much a series may rise over the run and still count as flat.
TOLERANCE = {"rss_anon_kb": 4 * 1024, "fds": 2, "tasks": 2}


@dataclass
class Sample:
    seconds: float
    calls_ok: int
    calls_failed: int
    rss_kb: int
    #: The heap part of the RSS (``RssAnon``): the memory-mapped SQLite file's pages are
    #: file-backed and grow with the data, not with a leak.
    rss_anon_kb: int
    fds: int
    tasks: int
    #: What the descriptors are (socket, pipe, a file's name...): to tell a leak from a pool.
    fd_kinds: dict[str, int] = field(default_factory=dict)


@dataclass
class Verdict:
    grew: dict[str, bool] = field(default_factory=dict)
    failed_share: float = 0.0

    @property
    def ok(self) -> bool:
        return not any(self.grew.values()) and self.failed_share <= 0.02


def grows(values: Sequence[float], tolerance: float) -> bool:
    """Monotonic growth: each sample at least the one before, and the last more than
    ``tolerance`` above the first. (Three samples at least: two points are no trend.)"""
    if len(values) < 3:
        return False
    rising = all(later >= earlier for earlier, later in itertools.pairwise(values))
    return rising and values[-1] - values[0] > tolerance


def judge(samples: Sequence[Sample]) -> Verdict:
    """Growth is judged after the warm-up (the first third of the samples: pools of database
    connections, HTTP connections and worker threads fill up while the load starts)."""
    verdict = Verdict()
    steady = samples[len(samples) // 3:]
    for name, tolerance in TOLERANCE.items():
        verdict.grew[name] = grows([getattr(s, name) for s in steady], tolerance)
    if samples:
        last = samples[-1]
        total = last.calls_ok + last.calls_failed
        verdict.failed_share = last.calls_failed / total if total else 1.0
    return verdict


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_kinds(pid: int) -> dict[str, int]:
    kinds: collections.Counter[str] = collections.Counter()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            kinds[target.split(":", 1)[0] if ":" in target else Path(target).name] += 1
    return dict(sorted(kinds.items()))


def vcard_file(path: Path, mobiles: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cards = [f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:soak-{i}\r\nFN:Soak Caller {i}\r\n"
             f"TEL;TYPE=CELL:{mobile}\r\nEND:VCARD\r\n" for i, mobile in enumerate(mobiles)]
    path.write_text("".join(cards), encoding="utf-8")


class Soak:
    def __init__(self, proc: CallsecProcess, sim: LocalCaller, http: aiohttp.ClientSession,
                 metrics_token: str) -> None:
        self.proc, self.sim, self.http = proc, sim, http
        self.metrics_url = f"http://127.0.0.1:{proc.env()['CALLSEC_WEB__PORT']}/metrics"
        self.metrics_headers = {"Authorization": f"Bearer {metrics_token}"}
        self.ok = self.failed = 0
        self.failures: collections.Counter[str] = collections.Counter()
        self.in_flight = 0
        self.open = asyncio.Event()
        self.open.set()

    async def metric(self, name: str) -> int:
        async with self.http.get(self.metrics_url, headers=self.metrics_headers) as resp:
            text = await resp.text()
        found = re.search(rf"^{name} (\d+)(\.0)?$", text, re.M)
        if found is None:
            raise RuntimeError(f"/metrics has no {name}")
        return int(found.group(1))

    async def code_for(self, mobile: str, within: float = 15.0) -> str:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for path in sorted(self.proc.outbox.glob("*.json")):
                with contextlib.suppress(OSError, ValueError):
                    message = json.loads(path.read_text())
                    if message.get("to") == mobile:
                        path.unlink()
                        return str(CODE.findall(message["body"])[0])
            await asyncio.sleep(0.1)
        raise TimeoutError("no code message")

    async def one_call(self, mobile: str) -> str:
        """``verified``, another CALLSEC_RESULT, or where the call got stuck."""
        call = await self.sim.call("1000", caller_id=mobile)
        self.sim.calls.clear()  # the harness keeps every call otherwise
        stage = "no code message"
        try:
            code = await self.code_for(mobile)
            await asyncio.sleep(0.5)
            await call.send_dtmf(code + "#", between_ms=80, duration_ms=80)
            stage = "not back in the dialplan"
            async with asyncio.timeout(20):  # polling ARI: there is no event to wait for
                while await self.stasis_app(call.peer_id) != "Wait":  # noqa: ASYNC110
                    await asyncio.sleep(0.2)
            return await self.sim.client.channel(call.peer_id).get_var("CALLSEC_RESULT") or "-"
        except (TimeoutError, aiohttp.ClientError, IndexError) as exc:
            return f"{stage} ({type(exc).__name__})"
        finally:
            with contextlib.suppress(Exception):
                await call.hangup()

    async def stasis_app(self, channel_id: str) -> str:
        """The dialplan application the channel is in (``Stasis``, then ``Wait`` once callsec
        handed it back after the final prompt)."""
        channel = await self.sim.client.request("GET", f"/channels/{channel_id}")
        return str(channel["dialplan"]["app_name"])

    async def caller(self, mobiles: Sequence[str], deadline: float) -> None:
        turn = 0
        while time.monotonic() < deadline:
            await self.open.wait()
            if time.monotonic() >= deadline:
                return
            self.in_flight += 1
            try:
                outcome = await self.one_call(mobiles[turn % len(mobiles)])
            finally:
                self.in_flight -= 1
            turn += 1
            if outcome == "verified":
                self.ok += 1
            else:
                self.failed += 1
                self.failures[outcome] += 1

    async def quiet_sample(self, started: float) -> Sample:
        """Pause new calls, wait until callsec handles none, sample, resume."""
        self.open.clear()
        try:
            async with asyncio.timeout(60):
                while self.in_flight or await self.metric("callsec_active_calls"):  # noqa: ASYNC110
                    await asyncio.sleep(0.2)
            await asyncio.sleep(0.5)  # let finished calls' tasks unwind
            assert self.proc.proc is not None
            pid = self.proc.proc.pid
            return Sample(seconds=round(time.monotonic() - started, 1), calls_ok=self.ok,
                          calls_failed=self.failed, rss_kb=status_kb(pid, "VmRSS"),
                          rss_anon_kb=status_kb(pid, "RssAnon"), fds=open_fds(pid),
                          tasks=await self.metric("callsec_asyncio_tasks"), fd_kinds=fd_kinds(pid))
        finally:
            self.open.set()

    async def run(self, minutes: float, interval: float, callers: int,
                  mobiles: Sequence[str]) -> list[Sample]:
        started = time.monotonic()
        deadline = started + minutes * 60
        samples: list[Sample] = []
        async with asyncio.TaskGroup() as tg:
            for i in range(callers):
                tg.create_task(self.caller(mobiles[i::callers], deadline))
            while time.monotonic() < deadline:
                await asyncio.sleep(min(interval, max(0.0, deadline - time.monotonic())))
                samples.append(await self.quiet_sample(started))
                print(row(samples[-1]), flush=True)
        return samples


def row(s: Sample) -> str:
    return (f"| {s.seconds:7.0f} | {s.calls_ok:6d} | {s.calls_failed:6d} | "
            f"{s.rss_kb / 1024:8.1f} | {s.rss_anon_kb / 1024:9.1f} | {s.fds:4d} | {s.tasks:5d} |")


HEADER = ("|  t (s)  | calls  | failed | RSS (MB) | heap (MB) | fds  | tasks |\n"
          "|---------|--------|--------|----------|-----------|------|-------|")


async def soak(minutes: float, interval: float, callers: int, workdir: Path) -> int:
    for sub in ("callsec.db", "callsec.db-wal", "callsec.db-shm", "outbox", "log", "keys"):
        path = workdir / sub
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    token = secrets.token_urlsafe(24)
    proc = CallsecProcess(workdir, env_overrides={
        "CALLSEC_WEB__METRICS_TOKEN": token, "CALLSEC_AGI__ENABLED": "no",
        "CALLSEC_LOGGING__LEVEL": os.environ.get("SOAK_LOG_LEVEL", "INFO"),
        "CALLSEC_VERIFICATION__CALLER_RATE_LIMIT_PER_HOUR": "1000000"})
    mobiles = [f"+49157{os.getpid() % 1000:03d}{i:05d}" for i in range(callers * 4)]
    cards = workdir / "customers.vcf"
    vcard_file(cards, mobiles)
    await wait_no_other_callsec()
    proc.cli("db", "upgrade")
    imported = proc.cli("customers", "import", str(cards))
    if imported.returncode != 0:
        raise RuntimeError(f"customers import failed: {imported.stderr}")
    await proc.start()
    print(f"soak: {minutes:g} min, {callers} callers, a quiet sample every {interval:g} s")
    print(HEADER, flush=True)
    try:
        async with LocalCaller() as sim, aiohttp.ClientSession() as http:
            run = Soak(proc, sim, http, token)
            samples = await run.run(minutes, interval, callers, mobiles)
    finally:
        proc.stop()
    verdict = judge(samples)
    (workdir / "soak.json").write_text(json.dumps({
        "minutes": minutes, "callers": callers, "interval": interval,
        "samples": [asdict(s) for s in samples], "grew": verdict.grew,
        "failures": dict(run.failures), "failed_share": verdict.failed_share,
        "ok": verdict.ok}, indent=2))
    if samples:
        print(f"soak: descriptors first {samples[0].fd_kinds}, last {samples[-1].fd_kinds}")
    if run.failures:
        print(f"soak: failed calls by stage: {dict(run.failures)}")
    grew = [name for name, yes in verdict.grew.items() if yes] or ["nothing"]
    print(f"soak: grew: {', '.join(grew)}; failed calls {verdict.failed_share:.1%}; "
          f"{'OK' if verdict.ok else 'FAILED'}")
    return 0 if verdict.ok and samples and samples[-1].calls_ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=30.0,
                        help="seconds between quiet samples (default 30)")
    parser.add_argument("--callers", type=int, default=4, help="concurrent callers")
    parser.add_argument("--workdir", type=Path, default=REPO / "var" / "soak")
    args = parser.parse_args(argv)
    return asyncio.run(soak(args.minutes, args.interval, args.callers, args.workdir))


if __name__ == "__main__":
    raise SystemExit(main())
