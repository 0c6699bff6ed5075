"""Core throughput: events per second through the sans-I/O flows alone (no I/O, no asyncio).

One call is the bench call of the sandbox ramps, as the flows see it: ``connect`` (verification
by SMS code, then the agent) with a card capture the agent requests from the keypad. The events
have the shapes the adapter and the services produce; a small reactor answers the service
commands the way the services would (customer found, code delivered, recording muted, capture
stored), plays back the final prompt's ``PlaybackFinished`` and otherwise feeds the keys a
caller and an agent press. Timed: building the flow, every ``handle`` call and the reactor.

    .venv/bin/python bench/core_bench.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import deque
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from callsec_ari.capture import protocol as cp
from callsec_ari.config_check import load_settings
from callsec_ari.core import commands as c
from callsec_ari.core import events as e
from callsec_ari.flows import FlowRegistry
from callsec_ari.verification import protocol as p

CUSTOMER = p.CustomerView(ref="C-BENCH", language="en", preferred_method="sms", has_mobile=True,
                          mobile_tail="78")
CODE = "246810"
CARD_KEYS = f"4111111111111111#12{(date.today().year + 1) % 100:02d}123"


def _answers(command: c.Command, now: float) -> list[e.Event]:
    """What the services (or Asterisk) answer to ``command``."""
    if isinstance(command, p.LookupCustomer):
        return [p.CustomerResult(customer=CUSTOMER, at=now)]
    if isinstance(command, p.DeliverCode):
        return [p.CodeDelivered(method=command.method, at=now)]
    if isinstance(command, p.CountCheck):
        return [p.CheckCounted(locked=False, at=now)]
    if isinstance(command, cp.MuteRecording):
        return [cp.RecordingMuted(mute=command.mute, at=now)]
    if isinstance(command, cp.StoreCapture):
        for _kind, holder in command.values:
            holder.wipe()
        return [cp.CaptureStored(capture_id=command.capture_id, at=now)]
    if isinstance(command, c.Play) and command.media == ("sound:callsec/verified",):
        return [e.PlaybackFinished(playback_id=command.playback_id, at=now)]
    if isinstance(command, c.DialLeg):
        return [e.LegAnswered(leg=command.leg, at=now)]
    return []


def _keys(keys: str, leg: str, start: float) -> list[e.Event]:
    return [e.DtmfReceived(digit=k, leg=leg, duration_ms=100, at=start + 0.2 * i)
            for i, k in enumerate(keys)]


def one_call(registry: FlowRegistry, index: int) -> tuple[int, int]:
    """Run one call through the flows; (events handled, commands produced)."""
    call_id = f"bench-{index}"
    started = e.CallStarted(flow="connect", args=("Local/agent@bench-agents/n",),
                            caller_number="+4915170000001", at=0.0)
    flow = registry.connect(call_id, started)
    flow.verification._new_code = lambda digits: CODE  # type: ignore[attr-defined]
    script = deque([*_keys(CODE + "#", "caller", 1.0), *_keys("*1", "agent", 10.0),
                    *_keys(CARD_KEYS, "caller", 12.0), e.CallerHungUp(at=30.0)])
    queue: deque[e.Event] = deque([started])
    events = commands = 0
    while queue or script:
        event = queue.popleft() if queue else script.popleft()
        if isinstance(event, e.DtmfReceived) and event.leg == "caller" and \
                event.at >= 12.0 and flow.capture is None:  # type: ignore[attr-defined]
            break  # the capture never started: the script is out of step with the flow
        out = flow.handle(event)
        events += 1
        commands += len(out)
        for command in out:
            queue.extend(_answers(command, event.at))
    assert flow.done, f"call {call_id} ended in state {flow.state_name}"
    return events, commands


def run(calls: int) -> dict[str, Any]:
    registry = FlowRegistry(load_settings(None, env={}))
    one_call(registry, -1)  # warm-up (imports, caches)
    events = commands = 0
    started = time.perf_counter()
    for index in range(calls):
        got_events, got_commands = one_call(registry, index)
        events += got_events
        commands += got_commands
    elapsed = time.perf_counter() - started
    return {"calls": calls, "events": events, "commands": commands,
            "seconds": round(elapsed, 3), "events_per_s": round(events / elapsed),
            "calls_per_s": round(calls / elapsed, 1),
            "us_per_event": round(elapsed / events * 1e6, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    print(json.dumps(run(parser.parse_args().calls), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
