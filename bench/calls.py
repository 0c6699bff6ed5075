"""The call ramps: the apps under test as subprocesses, the driver, and the per-ramp figures.

Both apps run for the whole bench beside whatever else uses the sandbox: ``callsec run`` with
its own ARI app name (``callsec-bench``), database, keyring, outbox, log and web port, FastAGI
off (4573 belongs to the tests' callsec); the floor on ``callsec-floor``. Per ramp each app
gets the same callers (same numbers, same keys, same timing); the one measured is the only one
with calls, the other idles (it costs nothing measurable).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp

from bench import procstat, profile_summary
from bench.driver import AGENT_APP, CARRIER_APP, SIM_APP, Ari, BenchCall, Caller, LoadDriver, Server

A = Server(url=os.environ.get("CALLSEC_SANDBOX_A_ARI_URL", "http://127.0.0.1:18088"),
           user="callsec", password="callsec")
B = Server(url=os.environ.get("CALLSEC_SANDBOX_B_ARI_URL", "http://127.0.0.1:18089"),
           user="carrier", password="carrier")
#: Calls placed per second in a ramp (500 calls: 50 s): a busy contact center's peak, for
#: one PBX; each caller then stays until all are up, so a ramp of N has N calls up at once.
ARRIVALS = 10.0
#: Ramps this large get a py-spy profile of callsec (``bench/run.py --profile DIR``).
PROFILE_FROM = 250
SCENARIO = ("Each caller: the app answers, finds the customer by caller ID and sends an SMS code "
            "(outbox); the caller keys `<code>#`; the app connects an agent (a Local channel "
            "answered by the driver); the agent keys `*1`; the caller keys card number `#`, "
            "expiry and CVV in a capture bridge; the app stores the card and returns the caller "
            "to the agent. Keys are 100 ms tones 100 ms apart after 0.3-1 s of thinking; a call "
            "counts as completed when the caller is back with the agent after hearing "
            "`capture-complete`, and stays on the line until every call of the ramp is up. "
            f"Calls arrive at {ARRIVALS:.0f} per second (500 in 50 s).")


class SandboxRestarted(RuntimeError):
    """Asterisk A restarted during a ramp (other sessions share the sandbox)."""


@dataclass(eq=False)
class Target:
    name: str
    app: str
    number: str
    work: Path
    cmd: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    offset: int = 0
    events: int = 0
    callers: list[Caller] = field(default_factory=list)

    @property
    def outbox(self) -> Path:
        return self.work / "outbox"

    @property
    def trace(self) -> Path:
        return self.work / "trace.csv"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


def callsec_targets(work: Path, repo: Path) -> list[Target]:
    cs, fl = work / "callsec", work / "floor"
    env = {**os.environ, "PYTHONPATH": str(repo),
           "CALLSEC_ARI__APP": "callsec-bench", "CALLSEC_AGI__ENABLED": "no",
           "CALLSEC_WEB__PORT": os.environ.get("CALLSEC_BENCH_WEB_PORT", "18080"),
           "CALLSEC_DATABASE__URL": f"sqlite:///{cs / 'callsec.db'}",
           "CALLSEC_CRYPTO__KEYRING_DIR": str(cs / "keys"),
           "CALLSEC_SMS__OUTBOX_DIR": str(cs / "outbox"),
           "CALLSEC_LOGGING__FILE": str(cs / "callsec.log"),
           "CALLSEC_LOGGING__LEVEL": os.environ.get("CALLSEC_BENCH_LOG_LEVEL", "INFO"),
           "CALLSEC_BENCH_TRACE": str(cs / "trace.csv")}
    config = str(repo / "config" / "callsec.conf")
    return [
        Target("callsec", "callsec-bench", "9100", cs, env=env,
               cmd=[sys.executable, "-m", "callsec_ari", "-c", config, "run"]),
        Target("floor", "callsec-floor", "9200", fl, env={**os.environ, "PYTHONPATH": str(repo)},
               cmd=[sys.executable, str(repo / "bench" / "floor_app.py"), "--app",
                    "callsec-floor", "--outbox", str(fl / "outbox"), "--trace",
                    str(fl / "trace.csv")]),
    ]


def mobile(index: int) -> str:
    return f"+49151{70_000_000 + index:08d}"  # German mobile range, one per caller


def create_customers(target: Target, count: int) -> list[str]:
    """Customers with one mobile each, in callsec's own database; their refs."""
    from callsec_ari.config_check import load_settings
    from callsec_ari.store.context import init_keys, open_store
    from callsec_ari.store.customers import CustomerData, Name, Phone

    config = Path(target.cmd[target.cmd.index("-c") + 1])
    settings = load_settings(config, env=target.env)
    init_keys(settings)  # `callsec keys init`: keys are created only on purpose
    store = open_store(settings)
    try:
        return [store.customers.create(CustomerData(
            name=Name(f"Bench Caller {i}"), phones=(Phone(mobile(i), receives_codes=True),))).ref
            for i in range(count)]
    finally:
        store.close()


class CallBench:
    def __init__(self, work: Path, targets: list[Target], *, customers: int, sip: int,
                 profile: Path | None = None) -> None:
        self.work, self.targets, self.customers, self.sip = work, targets, customers, sip
        self.profile = profile  # py-spy speedscope profiles of callsec, one per ramp
        self.ramps: list[dict[str, Any]] = []
        self.asterisk_pid = _asterisk_pid()
        self._stack = contextlib.AsyncExitStack()
        self.driver: LoadDriver | None = None

    async def __aenter__(self) -> Self:
        callsec, floor = self.targets
        for target in self.targets:
            target.work.mkdir(parents=True, exist_ok=True)
        print(f"calls: {self.customers} customers in callsec's database ...", flush=True)
        refs = await asyncio.to_thread(create_customers, callsec, self.customers)
        callsec.callers = [Caller(mobile(i), ref) for i, ref in enumerate(refs)]
        floor.callers = [Caller(mobile(i), mobile(i)) for i in range(self.customers)]
        session = await self._stack.enter_async_context(aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=16)))
        a, b = Ari(A, session), Ari(B, session)
        # the talk-through step used these app names a moment ago
        await _wait_gone(a, [t.app for t in self.targets] + [SIM_APP, AGENT_APP])
        await _wait_gone(b, [CARRIER_APP])
        for target in self.targets:
            target.proc = _spawn(target)
            self._stack.callback(_stop, target.proc)
        for target in self.targets:
            await _wait_registered(a, target)
        tg = await self._stack.enter_async_context(asyncio.TaskGroup())
        self.driver = LoadDriver(a, b, tg)
        readers = [tg.create_task(a.events(f"{SIM_APP},{AGENT_APP}", self.driver.on_a_event)),
                   tg.create_task(b.events(CARRIER_APP, self.driver.on_b_event))]
        self._stack.callback(lambda: [r.cancel() for r in readers])
        await asyncio.sleep(0.5)  # the driver's websockets are up
        await self.driver.filter_events()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._stack.__aexit__(exc_type, exc, tb)

    def _callers(self, target: Target, size: int) -> list[Caller]:
        local = target.callers[:size]
        sip = [Caller(c.mobile, c.agent_caller_id, sip=True)
               for c in target.callers[size:size + self.sip]]
        return [*sip, *local]

    async def ramp(self, size: int, *, callsec_first: bool) -> None:
        result: dict[str, Any] = {"size": size}
        for target in (self.targets if callsec_first else self.targets[::-1]):
            print(f"calls: {size} + {self.sip} SIP callers into {target.name} ...", flush=True)
            for attempt in range(3):
                try:
                    result[target.name] = await self._one(target, size)
                    result[target.name]["retries"] = attempt
                    break
                except SandboxRestarted:
                    print("  the sandbox Asterisk restarted during the ramp (shared machine):"
                          " waiting for it, then again", flush=True)
                    await self._recover()
            else:
                raise SandboxRestarted("the sandbox kept restarting; no figures for this ramp")
            r = result[target.name]
            print(f"  {r['completed']}/{r['calls']} completed, p50/p99 "
                  f"{r['latency_ms']['p50']}/{r['latency_ms']['p99']} ms, "
                  f"{r['cpu_ms_per_call']} ms CPU per call", flush=True)
        cs, fl = result["callsec"], result["floor"]
        result["ratio"] = {
            "cpu_per_call": _ratio(cs["cpu_ms_per_call"], fl["cpu_ms_per_call"]),
            "cpu_per_event": _ratio(cs["cpu_us_per_event"], fl["cpu_us_per_event"]),
            "latency_p50": _ratio(cs["latency_ms"]["p50"], fl["latency_ms"]["p50"]),
            "latency_p99": _ratio(cs["latency_ms"]["p99"], fl["latency_ms"]["p99"])}
        self.ramps.append(result)

    async def _one(self, target: Target, size: int) -> dict[str, Any]:
        assert self.driver is not None
        callers = self._callers(target, size)
        watches = {"app": procstat.ProcWatch(target.pid),
                   "driver": procstat.ProcWatch(os.getpid())}
        if self.asterisk_pid:
            watches["asterisk"] = procstat.ProcWatch(self.asterisk_pid)
        self.asterisk_pid = _asterisk_pid()
        busy0, wall0, load = procstat.system_cpu_seconds(), time.monotonic(), os.getloadavg()
        spy = self._py_spy(target, size)
        async with asyncio.TaskGroup() as tg:
            for watch in watches.values():
                watch.start(tg)
            calls = await self.driver.run_ramp(callers, target.number, target.outbox,
                                               seconds=60 + size * 0.1, rate=ARRIVALS)
            await _wait_idle(self.driver.a, target.app, seconds=self.driver.hold + 60)
            for watch in watches.values():
                watch.stop()
        profile: Path | None = None
        if spy is not None:
            spy[0].send_signal(signal.SIGINT)  # py-spy writes its profile on SIGINT
            await asyncio.to_thread(spy[0].wait, 60)
            profile = await asyncio.to_thread(_gzip, spy[1])
        if _asterisk_pid() != self.asterisk_pid:
            read_trace(target)  # skip this attempt's lines
            raise SandboxRestarted
        wall = time.monotonic() - wall0
        busy = (procstat.system_cpu_seconds() - busy0) / (wall * (os.cpu_count() or 1))
        latencies, events = read_trace(target)
        figures = _figures(calls, latencies, events, watches, wall, busy, load)
        if profile is not None:
            figures["profile"] = profile_summary.summarize(profile, figures["cpu_ms_per_call"])
        return figures

    def _py_spy(self, target: Target,
                size: int) -> tuple[subprocess.Popen[bytes], Path] | None:
        """py-spy sampling the app (callsec or the floor) in a ramp of ``PROFILE_FROM`` calls
        or more (``--profile DIR``; speedscope JSON, gzipped once the ramp ends; the floor's
        is ``profile-N-floor``)."""
        spy = Path(sys.executable).with_name("py-spy")
        if self.profile is None or size < PROFILE_FROM or not spy.exists():
            return None
        self.profile.mkdir(parents=True, exist_ok=True)
        suffix = "" if target.name == "callsec" else f"-{target.name}"
        out = self.profile / f"profile-{size}{suffix}.speedscope.json"
        with (self.work / "py-spy.log").open("ab") as log:
            return subprocess.Popen(
                [str(spy), "record", "--pid", str(target.pid), "--rate", "100", "--nonblocking",
                 "--format", "speedscope", "-o", str(out)], stdout=log, stderr=log), out

    async def _recover(self) -> None:
        assert self.driver is not None
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, RuntimeError, TimeoutError):
                for target in self.targets:
                    await _wait_registered(self.driver.a, target, seconds=30)
                await asyncio.sleep(2.0)  # the driver's own websockets reconnect too
                return
            await asyncio.sleep(1.0)
        raise SandboxRestarted("the sandbox did not come back within 5 minutes")

    def results(self) -> dict[str, Any]:
        callsec = self.targets[0]
        out: dict[str, Any] = {"scenario": SCENARIO, "ramps": self.ramps, "notes": []}
        if callsec.proc is not None and callsec.proc.poll() is None:
            out["callsec_peak_rss_mib_lifetime"] = round(
                procstat.status_kb(callsec.pid, "VmHWM") / 1024, 1)
        log = callsec.work / "callsec.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        out["callsec_log"] = {"lines": text.count("\n"), "errors": text.count(" ERROR "),
                              "warnings": text.count(" WARNING "),
                              "tracebacks": text.count("Traceback")}
        if self.driver is not None and self.driver.errors:
            out["driver_errors"] = Counter(e[:80] for e in self.driver.errors).most_common(5)
        return out


@dataclass
class Latencies:
    """DTMF -> command (ms) of one ramp, and its two parts: until the app had read the event,
    and from then until the command left."""

    total: list[float] = field(default_factory=list)
    read: list[float] = field(default_factory=list)
    handled: list[float] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        def part(values: list[float]) -> dict[str, float | None]:
            return {"p50": _round(procstat.percentile(values, 50), 2),
                    "p99": _round(procstat.percentile(values, 99), 2)}
        return {"samples": len(self.total), **part(self.total),
                "max": _round(max(self.total, default=None), 2),
                "read": part(self.read), "handled": part(self.handled)}


def read_trace(target: Target) -> tuple[Latencies, int]:
    """New DTMF -> command latencies (ms) in the target's trace and its new ARI events."""
    latencies = Latencies()
    before = target.events
    with contextlib.suppress(FileNotFoundError), target.trace.open() as f:
        f.seek(target.offset)
        for line in f:
            kind, first, second, *rest = line.strip().split(",")
            if kind == "d":
                latencies.total.append((float(second) - float(first)) * 1000)
                if len(rest) > 1:
                    latencies.read.append((float(rest[1]) - float(first)) * 1000)
                    latencies.handled.append((float(second) - float(rest[1])) * 1000)
            else:
                target.events = int(first)
        target.offset = f.tell()
    return latencies, target.events - before


def _figures(calls: list[BenchCall], latencies: Latencies, events: int,
             watches: dict[str, procstat.ProcWatch], wall: float, busy: float,
             load: tuple[float, float, float]) -> dict[str, Any]:
    done = [c for c in calls if c.result == "completed"]
    sip = [c for c in calls if c.caller.sip]
    cpu = watches["app"].cpu_used
    durations = [c.marks["ended"] - c.started for c in done]
    return {
        "calls": len(calls), "sip": len(sip), "completed": len(done),
        "sip_completed": sum(1 for c in sip if c.result == "completed"),
        "completion_rate": round(len(done) / len(calls), 4),
        "failures": dict(Counter(c.result for c in calls if c.result != "completed")),
        "peak_concurrent": _peak(calls),
        "call_seconds_p50": _round(procstat.percentile(durations, 50), 2),
        "latency_ms": latencies.figures(),
        "events": events, "cpu_s": round(cpu, 2),
        "cpu_system_s": round(watches["app"].sys_used, 2),
        "cpu_ms_per_call": round(cpu / len(calls) * 1000, 2),
        "cpu_ms_per_call_event_loop": round(watches["app"].main_used / len(calls) * 1000, 2),
        "cpu_us_per_event": round(cpu / events * 1e6, 1) if events else None,
        "peak_rss_mib": round(watches["app"].peak_rss_kb / 1024, 1),
        "asterisk_cpu_s": round(watches["asterisk"].cpu_used, 2) if "asterisk" in watches
        else None,
        "driver_cpu_s": round(watches["driver"].cpu_used, 2),
        "wall_s": round(wall, 1), "machine_busy": round(busy, 3),
        "load_average_before": [round(x, 2) for x in load],
    }


def _peak(calls: list[BenchCall]) -> int:
    edges = sorted([(c.started, 1) for c in calls if c.started] +
                   [(c.marks.get("hung_up", c.marks.get("ended", c.started)), -1)
                    for c in calls if c.started],
                   key=lambda e: (e[0], e[1]))
    peak = now = 0
    for _, step in edges:
        now += step
        peak = max(peak, now)
    return peak


def _gzip(path: Path) -> Path | None:
    """``profile-N.speedscope.json`` -> ``.json.gz`` (speedscope.app opens it gunzipped)."""
    if not path.exists():
        return None
    out = path.with_name(path.name + ".gz")
    with path.open("rb") as src, gzip.open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
    path.unlink()
    return out


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def _asterisk_pid() -> int | None:
    root = Path(os.environ.get("CALLSEC_ASTERISK_ROOT", "/var/cache/callsec/asterisk-root"))
    for path in (root / "srv/callsec/a/sandbox.pid", root / "srv/callsec/a/run/asterisk.pid"):
        with contextlib.suppress(OSError, ValueError):
            return int(path.read_text().strip())
    return None


async def _wait_registered(a: Ari, target: Target, seconds: float = 60.0) -> None:
    """Until A's ARI lists the app with a websocket (the app is connected)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if target.proc is not None and target.proc.poll() is not None:
            err = (target.work / "stderr.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{target.name} exited with {target.proc.returncode}: {err}")
        with contextlib.suppress(aiohttp.ClientError, RuntimeError):
            if await a.call("GET", f"/applications/{target.app}") is not None \
                    and _says_connected(target):
                return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{target.name} did not connect to Asterisk A in {seconds:.0f} s")


def _says_connected(target: Target) -> bool:
    """callsec logs its websocket up. Asterisk still lists an app a stopped process left
    while that app holds channels (inactive: "Stasis app 'callsec-bench' not active"), so the
    listing alone let a ramp start before the new callsec was there."""
    if target.name != "callsec":
        return True
    log = target.work / "callsec.log"
    return log.exists() and "events websocket connected" in log.read_text(errors="replace")


async def _wait_gone(ari: Ari, apps: Sequence[str], seconds: float = 15.0) -> None:
    """Until Asterisk no longer lists ``apps`` (bounded). Asterisk tears a closed websocket's
    app down on its own thread; a new websocket for the same name registered before that ran
    loses its registration to the late teardown ("Stasis app doesn't exist"), so a step that
    reuses the names of the previous one waits for them to be gone first."""
    deadline = time.monotonic() + seconds
    for app in apps:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, RuntimeError):
                if await ari.call("GET", f"/applications/{app}") is None:
                    break
            await asyncio.sleep(0.2)


async def _wait_idle(a: Ari, app: str, seconds: float = 60.0) -> None:
    """Until the app under test and the driver hold no channels or bridges any more."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        busy = 0
        try:
            for name in (app, SIM_APP, AGENT_APP):
                info = await a.call("GET", f"/applications/{name}") or {}
                busy += len(info.get("channel_ids", [])) + len(info.get("bridge_ids", []))
        except (aiohttp.ClientError, RuntimeError):
            busy = 1  # Asterisk busy or restarting: ask again
        if not busy:
            return
        await asyncio.sleep(0.5)


def _spawn(target: Target) -> subprocess.Popen[bytes]:
    with (target.work / "stderr.log").open("ab") as log:
        return subprocess.Popen(target.cmd, env=target.env, stdout=log, stderr=log)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
