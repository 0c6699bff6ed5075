"""Talk-through added delay over a long capture, measured in a recording (sandbox).

One real call (carrier B -> A's 2100 -> callsec -> agent100 on B): both sides "talk" all the
time (each whispers its own known voice signal into what its phone sends, as the talk-through
sandbox tests do), and B records what both phones receive in a wall-clock faithful monitor
(a softmix bridge of two snoops). First ``--floor`` seconds in the plain bridge: the direct
path, the floor. Then the agent opens a talk-through capture and nobody types for ``--talk``
seconds (300 in ``make bench``: five minutes), the caller's voice crossing callsec's relay
all along; then the capture is cancelled.

The delay caller -> agent is the lag of the caller's voice in the monitor (normalised
cross-correlation of 0.5 s windows against the known signal, median of the windows that
correlate): over the floor period (the floor), over the first ``--span`` seconds of the
capture after its prompt (start) and over its last ``--span`` seconds (end). Added one-way
delay = lag - floor lag; the target is <= 60 ms at the start and at the end.

    .venv/bin/python bench/talkthrough_delay.py [--talk 300] [--worker process] [--json PATH]

Needs the sandbox and ``flock /tmp/callsec-sandbox.lock`` (it runs ``callsec run``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.harness.agent import AgentPhones
from tests.harness.carrier import Carrier
from tests.harness.sandbox import ensure_sandbox
from tests.integration.capture_env import connected_call, running_product, workdir
from tests.integration.talkthrough_checks import (
    Monitor,
    Whisper,
    correlation_over,
    write_reference,
)

TARGET_MS = 60.0
PROMPT_SECONDS = 3.7  # sound:callsec/enter-card-number, played into the capture bridge
MIN_CORRELATION = 0.3  # the monitor mixes both voices: each explains about half its energy
WINDOW = 0.5


def lag_ms(rows: list[tuple[float, float, float]]) -> float | None:
    good = [lag for _, corr, lag in rows if corr > MIN_CORRELATION]
    return round(statistics.median(good) * 1000.0, 1) if good else None


async def measure(talk: float, *, floor: float = 5.0, span: float = 5.0,
                  worker: str = "process", name: str = "talkthrough-delay") -> dict[str, Any]:
    """One long talk-through capture; the delays (ms) at its start and end and the floor."""
    sandbox = ensure_sandbox()
    limit = str(talk + 120.0)
    env = {"CALLSEC_CAPTURE__FIRST_DIGIT_TIMEOUT_SECONDS": limit,
           "CALLSEC_CAPTURE__CAPTURE_TIMEOUT_SECONDS": limit,
           "CALLSEC_CAPTURE__MEDIA_WORKER": worker}
    seconds = floor + PROMPT_SECONDS + talk + 30.0
    ref = write_reference("tt-delay-caller", seconds, seed=31)
    write_reference("tt-delay-agent", seconds, seed=32)
    headers = {"Authorization": sandbox.a.basic_auth}
    shutil.rmtree(workdir(name), ignore_errors=True)  # nothing of an earlier run
    async with running_product(name, env) as product, Carrier(sandbox.b) as carrier, \
            AgentPhones(sandbox.b) as agents, aiohttp.ClientSession(
                base_url=sandbox.a.base_url, headers=headers,
                timeout=aiohttp.ClientTimeout(total=10)) as ari_a, \
            connected_call(product.desk, carrier, agents, ari_a, product.sse_dir) as live:
        monitor = Monitor(agents.client, f"tt-delay-monitor-{live.call_id}")
        caller_voice = Whisper(carrier.client, live.carrier.id)
        agent_voice = Whisper(agents.client, live.agent.channel.id)
        wav = await monitor.start(live.agent.channel.id, live.carrier.id)
        t0 = live.mark("monitor")
        await caller_voice.start("tt-delay-caller")
        await agent_voice.start("tt-delay-agent")
        voice = live.mark("voice")
        await asyncio.sleep(floor)
        status, data = await product.desk.call(
            "POST", f"/api/v1/calls/{live.call_id}/captures",
            {"fields": ["card_number"], "mode": "talk_through"})
        assert status == 201, (status, data)
        capture_id = str(data["capture_id"])
        await live.sse.wait_stage(capture_id, "started", timeout=10)
        started = live.mark("started")
        await asyncio.sleep(PROMPT_SECONDS + talk)
        ended = live.mark("ended")
        status, _ = await product.desk.call(
            "DELETE", f"/api/v1/calls/{live.call_id}/captures/{capture_id}")
        await live.sse.wait_stage(capture_id, "finished", timeout=15)
        stored = await product.desk.wait_capture(capture_id, "cancelled")
        await caller_voice.stop()
        await agent_voice.stop()
        await monitor.stop()
    for _ in range(100):  # B writes the WAV header when the recording is stopped
        if wav.exists():
            break
        await asyncio.sleep(0.1)
    at = {"voice": voice - t0, "started": started - t0, "ended": ended - t0}
    through = at["started"] + PROMPT_SECONDS + 0.3
    floor_rows = correlation_over(wav, ref, at["voice"] + 1.0, at["started"] - 0.3,
                                  window=WINDOW)
    start_rows = correlation_over(wav, ref, through, through + span, window=WINDOW)
    end_rows = correlation_over(wav, ref, at["ended"] - span, at["ended"] - 0.1, window=WINDOW)
    series = correlation_over(wav, ref, through, at["ended"] - 0.1, window=WINDOW)
    floor_ms, start_ms, end_ms = lag_ms(floor_rows), lag_ms(start_rows), lag_ms(end_rows)

    def added(lag: float | None) -> float | None:
        return None if lag is None or floor_ms is None else round(lag - floor_ms, 1)

    every = max(1, int(10.0 / WINDOW))  # one figure per 10 s of capture
    evidence = (stored.get("media_evidence") or {}).get("evidence") or {}
    return {"talk_seconds": talk, "worker": worker, "floor_lag_ms": floor_ms,
            "relay": {k: evidence.get(k) for k in (
                "frames_relayed", "agent_frames_relayed", "packets_dropped", "max_hold_ms")},
            "start_lag_ms": start_ms, "end_lag_ms": end_ms,
            "added_start_ms": added(start_ms), "added_end_ms": added(end_ms),
            "target_ms": TARGET_MS,
            "added_series_ms": [added(lag_ms(series[i:i + every]))
                                for i in range(0, len(series), every)]}


def target_row(fig: dict[str, Any]) -> dict[str, Any]:
    start, end = fig.get("added_start_ms"), fig.get("added_end_ms")
    met = start is not None and end is not None and start <= TARGET_MS and end <= TARGET_MS
    minutes = fig["talk_seconds"] / 60.0
    return {"target": f"talk-through added one-way delay ≤ {TARGET_MS:.0f} ms at the start "
                      f"and after {minutes:g} min, both talking", "met": met,
            "measured": f"{start} ms at the start, {end} ms at the end (lag "
                        f"{fig.get('start_lag_ms')} / {fig.get('end_lag_ms')} ms; floor, "
                        f"plain bridge: {fig.get('floor_lag_ms')} ms; {fig.get('worker')} "
                        "media worker)"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--talk", type=float, default=300.0, help="capture seconds")
    parser.add_argument("--worker", choices=("inline", "process"), default="process")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = asyncio.run(measure(args.talk, worker=args.worker))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
