"""Two callsec nodes against one, on one PostgreSQL (issue #16): calls per second and latency.

The bench's call (SMS code, a Local agent, a card captured, the caller returned) goes through
A's 9600, where the product wrappers deal calls over ``CALLSEC_APP=callsec-node1&callsec-node2``
(``[callsec-node]`` in ``dialplan/extensions_callsec.conf``). First only node 1 runs (node 2's
app is not registered, so the dialplan skips it and node 1 takes every call), then both do;
same database, key ring, callers' pattern and arrival rate, in one run. Reported per mode:
calls completed, completed calls per second (first call placed to last call back with its
agent), DTMF -> next command latency over both nodes' traces, CPU per call summed over the
nodes, and how the ARI events were spread over the nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import create_engine, text

from bench import procstat
from bench.calls import (
    A,
    B,
    Target,
    _spawn,
    _stop,
    _wait_gone,
    _wait_idle,
    _wait_registered,
    create_customers,
    mobile,
    read_trace,
)
from bench.driver import AGENT_APP, CARRIER_APP, SIM_APP, Ari, BenchCall, Caller, LoadDriver

NUMBER = "9600"
APPS = ("callsec-node1", "callsec-node2")
DATABASE = "callsec_bench_cluster"
#: Calls placed per second: twice the ramps' rate, so the nodes have work to share.
RATE = 20.0


def pg_base() -> str:
    return os.environ.get("CALLSEC_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:55432")


def fresh_database() -> str:
    engine = create_engine(f"{pg_base()}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {DATABASE}"))
    engine.dispose()
    return f"{pg_base()}/{DATABASE}"


def node_targets(work: Path, repo: Path, db_url: str) -> list[Target]:
    shared = {**os.environ, "PYTHONPATH": str(repo), "CALLSEC_AGI__ENABLED": "no",
              "CALLSEC_DATABASE__URL": db_url,
              "CALLSEC_CRYPTO__KEYRING_DIR": str(work / "keys"),
              "CALLSEC_SMS__OUTBOX_DIR": str(work / "outbox"),
              "CALLSEC_LOGGING__LEVEL": os.environ.get("CALLSEC_BENCH_LOG_LEVEL", "INFO"),
              "CALLSEC_CLUSTER__SECRET": "bench-cluster-secret-0123456789"}
    config = str(repo / "config" / "callsec.conf")
    targets = []
    for index, app in enumerate(APPS, start=1):
        node = work / f"node{index}"
        port = 18080 + index
        env = {**shared, "CALLSEC_ARI__APP": app, "CALLSEC_WEB__PORT": str(port),
               "CALLSEC_CLUSTER__NODE_ID": f"bench-n{index}",
               "CALLSEC_CLUSTER__ADVERTISE_URL": f"http://127.0.0.1:{port}",
               "CALLSEC_LOGGING__FILE": str(node / "callsec.log"),
               "CALLSEC_STATUS__SOCKET": str(node / "callsec.ctl"),
               "CALLSEC_BENCH_TRACE": str(node / "trace.csv")}
        target = Target(f"node{index}", app, NUMBER, node, env=env,
                        cmd=[sys.executable, "-m", "callsec_ari", "-c", config, "run"])
        targets.append(target)
    return targets


async def one_mode(driver: LoadDriver, nodes: list[Target], callers: list[Caller],
                   outbox: Path) -> dict[str, Any]:
    watches = {n.name: procstat.ProcWatch(n.pid) for n in nodes}
    load = os.getloadavg()
    async with asyncio.TaskGroup() as tg:
        for watch in watches.values():
            watch.start(tg)
        calls = await driver.run_ramp(callers, NUMBER, outbox,
                                      seconds=60 + len(callers) * 0.1, rate=RATE)
        for node in nodes:
            await _wait_idle(driver.a, node.app, seconds=driver.hold + 60)
        for watch in watches.values():
            watch.stop()
    return figures(calls, nodes, watches, load)


def figures(calls: list[BenchCall], nodes: list[Target],
            watches: dict[str, procstat.ProcWatch],
            load: tuple[float, float, float]) -> dict[str, Any]:
    done = [c for c in calls if c.result == "completed"]
    latencies: list[float] = []
    events: dict[str, int] = {}
    for node in nodes:
        lat, ev = read_trace(node)
        latencies += lat.total
        events[node.name] = ev
    span = (max(c.marks["ended"] for c in done) - min(c.started for c in done)) if done else 0
    cpu = sum(w.cpu_used for w in watches.values())
    return {
        "nodes": len(nodes), "calls": len(calls), "completed": len(done),
        "completed_per_second": round(len(done) / span, 2) if span else None,
        "call_seconds_p50": _round(procstat.percentile(
            [c.marks["ended"] - c.started for c in done], 50)),
        "latency_ms": {"samples": len(latencies),
                       "p50": _round(procstat.percentile(latencies, 50)),
                       "p99": _round(procstat.percentile(latencies, 99))},
        "cpu_ms_per_call": round(cpu / len(calls) * 1000, 2) if calls else None,
        "events_per_node": events, "load_average_before": [round(x, 2) for x in load]}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def prepare(size: int, work: Path, repo: Path) -> tuple[list[Target], list[Caller]]:
    """A new database with ``2 * size`` customers (keys initialised), the two nodes."""
    (work / "outbox").mkdir(parents=True, exist_ok=True)
    nodes = node_targets(work, repo, fresh_database())
    for node in nodes:
        node.work.mkdir(parents=True, exist_ok=True)
    print(f"cluster: {2 * size} customers in PostgreSQL ...", flush=True)
    refs = create_customers(nodes[0], 2 * size)
    return nodes, [Caller(mobile(i), ref) for i, ref in enumerate(refs)]


async def run(size: int, work: Path, repo: Path) -> dict[str, Any]:
    """One ramp of ``size`` calls into one node, then into two; both results."""
    nodes, callers = await asyncio.to_thread(prepare, size, work, repo)
    out: dict[str, Any] = {"number": NUMBER, "rate_per_second": RATE}
    async with contextlib.AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=16)))
        a, b = Ari(A, session), Ari(B, session)
        await _wait_gone(a, [*APPS, SIM_APP, AGENT_APP])
        await _wait_gone(b, [CARRIER_APP])
        tg = await stack.enter_async_context(asyncio.TaskGroup())
        driver = LoadDriver(a, b, tg)
        readers = [tg.create_task(a.events(f"{SIM_APP},{AGENT_APP}", driver.on_a_event)),
                   tg.create_task(b.events(CARRIER_APP, driver.on_b_event))]
        stack.callback(lambda: [r.cancel() for r in readers])
        for count, batch in ((1, callers[:size]), (2, callers[size:])):
            for node in nodes[:count]:
                if node.proc is None:
                    node.proc = _spawn(node)
                    stack.callback(_stop, node.proc)
                    await _wait_registered(a, node)
            await asyncio.sleep(0.5 if count == 1 else 2.0)  # heart-beats seen by the other
            await driver.filter_events()
            print(f"cluster: {size} calls at {RATE:.0f}/s into {count} node(s) ...", flush=True)
            started = time.monotonic()
            result = await one_mode(driver, nodes[:count], batch, nodes[0].work.parent / "outbox")
            result["wall_s"] = round(time.monotonic() - started, 1)
            print(f"  {result['completed']}/{result['calls']} completed, "
                  f"{result['completed_per_second']} calls/s, p50/p99 "
                  f"{result['latency_ms']['p50']}/{result['latency_ms']['p99']} ms", flush=True)
            out["one_node" if count == 1 else "two_nodes"] = result
    return out
