#!/usr/bin/env python3
"""Record real ARI events from the sandbox into ``tests/fixtures/ari/<scenario>.jsonl``.

Listens on A's app ``callsec`` (so ``callsec run`` must NOT be connected), places a real SIP
call from the carrier (instance B) to a number on A (default 1100, ``Stasis(callsec,probe)``),
plays one scenario on A's channel and writes every event A sent, one JSON object per line:

- ``dtmf_call``: answer, the carrier sends ``1234#`` (RFC 4733), the carrier hangs up.
- ``playback``: answer, play ``sound:beep`` to the caller, the carrier hangs up.
- ``bridge``: answer, create a ``mixing,dtmf_events`` bridge, add and remove the channel,
  destroy the bridge, the carrier hangs up.
- ``hangup_by_app``: answer, then A's app hangs the channel up (``DELETE /channels/{id}``).

When the far end hangs up, the app gets ``ChannelHangupRequest`` and ``StasisEnd`` but no
``ChannelDestroyed`` (it is no longer subscribed once the channel left Stasis).

Usage: ``.venv/bin/python tools/record_ari_events.py [--scenario all] [--number 1100]``
(the sandbox must be up: ``tools/sandbox.sh up``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.harness.ari import AriClient, Channel, Event, is_event, new_id  # noqa: E402
from tests.harness.carrier import Carrier, CarrierCall  # noqa: E402
from tests.harness.sandbox import DEFAULT_CALLER_ID, A, B  # noqa: E402

APP = "callsec"
Scenario = Callable[[AriClient, Channel, CarrierCall], Awaitable[None]]


async def dtmf_call(a: AriClient, channel: Channel, call: CarrierCall) -> None:
    await call.send_dtmf(DIGITS)
    await a.wait_events(lambda e: is_event(e, "ChannelDtmfReceived", channel.id), len(DIGITS))


async def playback(a: AriClient, channel: Channel, call: CarrierCall) -> None:
    await channel.play("sound:beep", wait=True)


async def bridge(a: AriClient, channel: Channel, call: CarrierCall) -> None:
    bridge_id = new_id("rec-bridge")
    await a.request("POST", f"/bridges/{bridge_id}", params={"type": "mixing,dtmf_events"})
    await a.request("POST", f"/applications/{APP}/subscription",
                    params={"eventSource": f"bridge:{bridge_id}"})
    await a.request("POST", f"/bridges/{bridge_id}/addChannel", params={"channel": channel.id})
    await a.wait_event(lambda e: is_event(e, "ChannelEnteredBridge", channel.id))
    await a.request("POST", f"/bridges/{bridge_id}/removeChannel", params={"channel": channel.id})
    await a.wait_event(lambda e: is_event(e, "ChannelLeftBridge", channel.id))
    await a.request("DELETE", f"/bridges/{bridge_id}")
    await a.wait_event(lambda e: e.get("type") == "BridgeDestroyed"
                       and e["bridge"]["id"] == bridge_id)


async def hangup_by_app(a: AriClient, channel: Channel, call: CarrierCall) -> None:
    await channel.hangup()
    await call.wait_hangup()


SCENARIOS: dict[str, Scenario] = {
    "dtmf_call": dtmf_call, "playback": playback, "bridge": bridge,
    "hangup_by_app": hangup_by_app,
}
DIGITS = "1234#"


async def record(a: AriClient, carrier: Carrier, name: str, number: str, out_dir: Path) -> Path:
    since = len(a.events)
    call = await carrier.call(number, caller_id=DEFAULT_CALLER_ID)
    start = await a.wait_event(
        lambda e: e.get("type") == "StasisStart" and e["channel"]["name"].startswith("PJSIP/pstn-"),
        since=since, what="StasisStart on A")
    channel = a.channel(start["channel"]["id"])
    await channel.answer()
    await call.wait_up()
    await SCENARIOS[name](a, channel, call)
    await call.hangup()  # no-op (404) when the scenario hung up already
    await channel.wait_hangup()
    await asyncio.sleep(0.5)  # let trailing events (ChannelDestroyed, ...) arrive
    events = [_clean(e) for e in a.events[since:]]
    path = _write(out_dir / f"{name}.jsonl", events)
    print(f"{path}: {len(events)} events: " + " ".join(str(e["type"]) for e in events))
    return path


def _write(path: Path, events: list[Event]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in events))
    return path


def _clean(event: Event) -> Event:
    return {k: v for k, v in event.items() if not k.startswith("_")}


async def _app_connected() -> bool:
    async with AriClient(A, [f"probe-{new_id('rec')}"]) as a:
        return await a.request("GET", f"/applications/{APP}", allow=(404,)) is not None


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=["all", *SCENARIOS], default="all")
    parser.add_argument("--number", default="1100", help="number on A (default 1100)")
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures" / "ari")
    args = parser.parse_args()
    if not (A.ari_answers() and B.ari_answers()):
        print("the sandbox is not running: tools/sandbox.sh up", file=sys.stderr)
        return 1
    if await _app_connected():
        print(f"ARI app '{APP}' is already connected on A: stop callsec first", file=sys.stderr)
        return 1
    async with AriClient(A, [APP]) as a, Carrier(B) as carrier:
        for name in SCENARIOS if args.scenario == "all" else [args.scenario]:
            await record(a, carrier, name, args.number, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
