"""``make bench``: callsec measured side by side with a floor app on real calls, in one run.

1. Core: events per second through the sans-I/O flows (``bench/core_bench.py``).
2. Calls: ``callsec run`` (ARI app ``callsec-bench``, sandbox number 9100) and the floor
   (``bench/floor_app.py``, app ``callsec-floor``, number 9200) each take ramps of 50, 100, 250
   and 500 simultaneous Local-channel callers plus a few SIP callers from B, every caller
   verified by SMS and then asked for a card by its agent (``bench/driver.py``). Per ramp and
   app: completion, DTMF event -> next REST command latency (``CALLSEC_BENCH_TRACE``), CPU
   seconds (``/proc/<pid>/stat``), peak RSS; the Asterisk's and the driver's CPU for context.
3. Talk-through: ``N`` (default 100) talk-through captures open at once, voice both ways
   through callsec's DTMF filter (``bench/talkthrough.py``); runs before the ramps, once the
   machine's load average has settled.
   Then one call with both sides talking through a talk-through capture for five minutes
   (``--talk-delay``): the added one-way delay caller -> agent at the capture's start and at
   its end, measured in a recording, with the plain bridge's (the floor) beside it
   (``bench/talkthrough_delay.py``).
4. Store: vault stores/reveals per second and caller-ID look-ups at 1,000,000 customers, on
   SQLite and PostgreSQL (``bench/store_bench.py``).

Writes ``bench/results/latest.json`` and ``latest.md`` and the table in README.md.

    .venv/bin/python bench/run.py [--ramps 50,100,250,500] [--sip 4] [--customers 1000000]
        [--skip-store] [--skip-calls] [--no-readme] [--profile DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import cluster, core_bench, procstat, report, talkthrough, talkthrough_delay
from bench.calls import CallBench, callsec_targets

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "var" / "bench"
RESULTS = REPO / "bench" / "results"
ASTERISK_ROOT = Path(os.environ.get("CALLSEC_ASTERISK_ROOT", "/var/cache/callsec/asterisk-root"))


def store_bench(customers: int) -> dict[str, Any]:
    url = os.environ.get("CALLSEC_TEST_PG_URL") or subprocess.run(
        [str(REPO / "tools" / "pg.sh"), "start"], capture_output=True, text=True,
        check=False).stdout.strip()
    out = WORK / "store.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, str(REPO / "bench" / "store_bench.py"), str(out),
           "--customers", str(customers)]
    if url:
        cmd += ["--pg-url", url]
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip()[-1500:]}
    data: dict[str, Any] = json.loads(out.read_text())
    return {k: data[k] for k in ("sqlite", "postgresql") if k in data}


def _target(name: str, met: bool | None, measured: str) -> dict[str, Any]:
    return {"target": name, "met": met, "measured": measured}


def ramp_targets(ramps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """#17: every ramp measured against the floor in the same run."""
    if not ramps:
        return []

    def worst(key: str) -> tuple[float, int]:
        found = [(r["ratio"][key], r["size"]) for r in ramps
                 if r.get("ratio") and r["ratio"].get(key) is not None]
        return max(found) if found else (float("inf"), 0)

    out = []
    for key, limit, name in (("latency_p50", 2.0, "p50 DTMF event → next command ≤ 2 x the floor"),
                             ("latency_p99", 3.0, "p99 DTMF event → next command ≤ 3 x the floor"),
                             ("cpu_per_event", 1.5, "CPU per ARI event ≤ 1.5 x the floor")):
        ratio, size = worst(key)
        out.append(_target(f"{name} (every ramp)", ratio <= limit,
                           f"worst {ratio:.2f}x (at {size})"))
    top = max(ramps, key=lambda r: r["size"])
    cs = top["callsec"]
    out.append(_target("500 of 500 calls complete (2 cores, Asterisk on them)",
                       top["size"] >= 500 and cs["completed"] == cs["calls"],
                       f"{cs['completed']}/{cs['calls']} at {top['size']} (+SIP)"))
    return out


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    out = ramp_targets((results.get("calls") or {}).get("ramps") or [])
    tt = results.get("talk_through") or {}
    if tt and not tt.get("error"):
        out.append(talkthrough.target_row(tt, tt["captures"]))
    delay = results.get("talk_through_delay") or {}
    if delay and not delay.get("error") and "talk_seconds" in delay:  # a run that measured
        out.append(talkthrough_delay.target_row(delay))
    store = results.get("store") or {}
    for kind, figures in store.items():
        vault = figures.get("vault") if isinstance(figures, dict) else None
        if vault:
            writers = f", {vault['writers']} writers" if vault.get("writers") else ""
            out.append(_target(f"≥ 2,000 vault stores/s ({kind}{writers})",
                               vault["stores_per_s"] >= 2000,
                               f"{vault['stores_per_s']:,.0f}/s"))
        lookup = figures.get("caller_id_lookup") if isinstance(figures, dict) else None
        if lookup:
            out.append(_target(f"caller look-up p99 < 2 ms at 1,000,000 customers ({kind})",
                               lookup["p99_ms"] < 2.0 and lookup["customers"] >= 1_000_000,
                               f"p99 {lookup['p99_ms']:.2f} ms at {lookup['customers']:,}"))
    return out


async def run_calls(args: argparse.Namespace) -> dict[str, Any]:
    sizes = [int(x) for x in args.ramps.split(",") if x.strip()]
    async with CallBench(WORK, callsec_targets(WORK, REPO), customers=max(sizes) + args.sip,
                         sip=args.sip, profile=args.profile) as bench:
        for index, size in enumerate(sizes):
            await bench.ramp(size, callsec_first=index % 2 == 0)
        return bench.results()


def run_talk_through(captures: int) -> dict[str, Any]:
    load = procstat.settle()
    print(f"talk-through: {captures} captures open at once (load average {load:.2f}) ...",
          flush=True)
    try:
        # the configuration README recommends for scale: relays in the media worker process
        # under SCHED_RR (the bench runs as root on the sandbox machine)
        figures = asyncio.run(talkthrough.run(captures, 10.0, WORK / "talkthrough",
                                              media_worker="process", realtime=10))
    except (OSError, RuntimeError, TimeoutError) as exc:
        return {"error": str(exc)[:300]}
    return figures | {"load_average_at_start": round(load, 2)}


def run_talk_delay(seconds: float) -> dict[str, Any]:
    print(f"talk-through delay: one capture, both talking, {seconds:.0f} s ...", flush=True)
    try:
        return asyncio.run(talkthrough_delay.measure(seconds))
    except (OSError, RuntimeError, TimeoutError, AssertionError) as exc:
        return {"error": str(exc)[:300]}


def run_cluster(size: int) -> dict[str, Any]:
    try:
        return asyncio.run(cluster.run(size, WORK / "cluster", REPO))
    except (OSError, RuntimeError, TimeoutError, SQLAlchemyError) as exc:
        return {"error": str(exc)[:300]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ramps", default="50,100,250,500")
    parser.add_argument("--sip", type=int, default=4)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--core-calls", type=int, default=2000)
    parser.add_argument("--skip-store", action="store_true")
    parser.add_argument("--skip-calls", action="store_true")
    parser.add_argument("--talk-through", type=int, default=100, metavar="N",
                        help="concurrent talk-through captures (0: skip)")
    parser.add_argument("--talk-delay", type=float, default=300.0, metavar="SECONDS",
                        help="length of the talk-through delay capture (0: skip)")
    parser.add_argument("--cluster", type=int, default=100, metavar="N",
                        help="calls into one callsec node, then two, on PostgreSQL (0: skip)")
    parser.add_argument("--no-readme", action="store_true")
    parser.add_argument("--profile", type=Path, metavar="DIR", default=RESULTS,
                        help="py-spy profiles of callsec and the floor in the 250+ ramps "
                             "(DIR/profile-N[-floor].speedscope.json.gz; default: the "
                             "results), summed per part into latest.md")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    started = time.monotonic()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    results: dict[str, Any] = {
        "benchmark": "callsec-ari", "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": procstat.machine(ASTERISK_ROOT)}
    print("core: sans-I/O flows ...", flush=True)
    results["core"] = core_bench.run(args.core_calls)
    if args.talk_through:
        # before the ramps: 500 calls leave Asterisk busy tearing down for minutes, and a 40 ms
        # frame budget measures that backlog, not callsec
        results["talk_through"] = run_talk_through(args.talk_through)
    if args.talk_through and args.talk_delay:  # --talk-through 0 skips both
        results["talk_through_delay"] = run_talk_delay(args.talk_delay)
    if not args.skip_calls:
        results["calls"] = asyncio.run(run_calls(args))
    if args.cluster and not args.skip_calls:
        results["cluster"] = run_cluster(args.cluster)
    if not args.skip_store:
        print(f"store: vault and look-ups at {args.customers:,} customers ...", flush=True)
        results["store"] = store_bench(args.customers)
    results["targets"] = targets(results)
    results["seconds"] = round(time.monotonic() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(results, indent=2) + "\n", "utf-8")
    (args.out / "latest.md").write_text(report.markdown(results), "utf-8")
    if not args.no_readme and report.update_readme(REPO / "README.md", results):
        print("README.md: performance table updated", flush=True)
    print(report.markdown(results), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
