"""The floor: the least an ARI app must do for the benchmark's call, in raw aiohttp.

It receives the same events as ``callsec run`` (ARI app ``callsec-floor``, reached by the bench
number 9200; the same event filter) and makes the same REST calls in the same order, with the same playback, bridge and
channel ids, but with no logic behind them: no customer look-up, no code check, no validation,
no encryption, no database, no audit, no logging, no dispatcher. The SMS is a file in the
outbox like callsec's outbox backend writes (the bench "phone" reads it); the code is random
and any code is accepted. It does not mute recordings over AMI (callsec does, when the caller
has a MixMonitor; the bench callers have none, so callsec's AMI actions answer "no MixMonitor").

    python bench/floor_app.py --app callsec-floor --outbox DIR [--trace FILE]

``--trace`` writes the same lines as callsec's ``CALLSEC_BENCH_TRACE``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from callsec_ari.ari.adapter import EVENT_TYPES  # the same events callsec asks Asterisk for
from callsec_ari.ari.client import MAX_CONNECTIONS

#: Keys that end each capture field: the card number needs ``#``; expiry 4 and CVV 3 digits.
FIELDS = (("enter-card-number", 0), ("enter-expiry", 4), ("enter-cvv", 3))


@dataclass(eq=False)
class Call:
    cid: str
    number: str
    dial: str
    stage: str = "code"
    keys: int = 0
    prompts: list[str] = field(default_factory=list)
    field_index: int = 0
    agent_keys: str = ""
    loop: int = 0
    capture: str = ""


#: In the task handling a DTMF event: Asterisk's timestamp of it and when the floor read it,
#: until a REST call leaves.
_dtmf_ts: ContextVar[tuple[float, float] | None] = ContextVar("dtmf_ts", default=None)


class Trace:
    def __init__(self, path: str | None) -> None:
        self.file = open(path, "a", buffering=1, encoding="ascii") if path else None
        self.events = 0

    def event(self) -> None:
        self.events += 1
        if self.file is not None and self.events % 64 == 0:
            self.file.write(f"n,{self.events},{time.time():.6f}\n")

    def sent(self, what: str) -> None:
        stamp = _dtmf_ts.get()
        if self.file is not None and stamp is not None:
            self.file.write(f"d,{stamp[0]:.6f},{time.time():.6f},{what},{stamp[1]:.6f}\n")
            _dtmf_ts.set(None)


class Floor:
    """Each call's events are handled in arrival order (a lock per call), calls concurrently:
    the same concurrency model as callsec's dispatcher."""

    def __init__(self, base: str, auth: str, app: str, outbox: Path, trace: Trace,
                 session: aiohttp.ClientSession, tg: asyncio.TaskGroup) -> None:
        self.base, self.app, self.outbox, self.trace = base + "/ari", app, outbox, trace
        self.headers = {"Authorization": auth}
        self.session, self.tg = session, tg
        self.calls: dict[str, Call] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.captures: dict[str, str] = {}  # capture id -> call id

    async def rest(self, method: str, path: str, json: Any = None, **params: Any) -> None:
        self.trace.sent(f"{method} {path.split('/')[1]}")
        async with self.session.request(method, self.base + path, headers=self.headers,
                                        params={k: str(v) for k, v in params.items()},
                                        json=json) as r:
            await r.read()

    async def play(self, channel: str, pid: str, *media: str) -> None:
        await self.rest("POST", f"/channels/{channel}/play", lang="en", playbackId=pid,
                        media=",".join(media))

    # -- events ---------------------------------------------------------------------------
    def on_event(self, ev: dict[str, Any]) -> None:
        self.trace.event()
        key = self.call_key(ev)
        if key is not None:
            lock = self.locks.setdefault(key, asyncio.Lock())
            self.tg.create_task(self.handle(lock, ev, time.time()))

    def call_key(self, ev: dict[str, Any]) -> str | None:
        kind, channel = ev["type"], ev.get("channel") or {}
        if kind == "StasisStart":
            args = ev.get("args") or []
            return str(args[1]) if args[:1] == ["leg"] else str(channel["id"])
        if kind in ("ChannelDtmfReceived", "StasisEnd", "ChannelHangupRequest"):
            return str(channel["id"]).removesuffix("-agent")
        if kind == "PlaybackFinished":
            pid = str(ev["playback"]["id"])
            if pid.startswith("CP-"):
                return self.captures.get(pid[:19])  # "CP-" + 16 hex digits
            return pid.rpartition("-")[0]
        return None

    async def handle(self, lock: asyncio.Lock, ev: dict[str, Any], read_at: float) -> None:
        async with lock:
            with contextlib.suppress(aiohttp.ClientError):  # Asterisk went away mid-call
                await self.dispatch(ev, read_at)

    async def dispatch(self, ev: dict[str, Any], read_at: float) -> None:
        kind, channel = ev["type"], ev.get("channel") or {}
        if kind == "StasisStart":
            await self.stasis_start(channel, ev.get("args") or [])
        elif kind == "ChannelDtmfReceived":
            _dtmf_ts.set((datetime.fromisoformat(ev["timestamp"]).timestamp(), read_at))
            await self.dtmf(channel["id"], ev["digit"])
        elif kind == "PlaybackFinished":
            await self.played(ev["playback"]["id"])
        else:
            await self.gone(channel["id"])

    async def stasis_start(self, channel: dict[str, Any], args: list[str]) -> None:
        if args[:1] == ["leg"]:
            call = self.calls.get(args[1])
            if call is not None:
                call.stage = "connected"
                await self.rest("DELETE", f"/channels/{call.cid}/moh")
                for leg in (call.cid, f"{call.cid}-agent"):
                    await self.rest("POST", f"/bridges/callsec-call-{call.cid}/addChannel",
                                    channel=leg, absorbDTMF="true", mute="false")
            return
        call = Call(cid=channel["id"], number=channel["caller"]["number"], dial=args[1])
        self.calls[call.cid] = call
        await self.rest("POST", f"/channels/{call.cid}/answer")
        await self.prompt(call, f"{call.cid}-v1", "sound:callsec/welcome")
        self.sms(call)
        await self.prompt(call, f"{call.cid}-v2", "sound:callsec/code-sent-sms",
                          f"digits:{call.number[-2:]}", "sound:callsec/enter-code")

    async def prompt(self, call: Call, pid: str, *media: str) -> None:
        call.prompts.append(pid)
        await self.play(call.cid, pid, *media)

    def sms(self, call: Call) -> None:
        now = datetime.now(UTC)
        body = f"Your code is {secrets.randbelow(10**6):06d}. We never ask for it."
        data = json.dumps({"to": call.number, "body": body, "kind": "sms",
                           "created": now.isoformat(), "call_ref": call.cid[-8:]}).encode()
        name = f"{now:%Y%m%dT%H%M%S%f}Z-{secrets.token_hex(4)}.json"
        tmp = self.outbox / f".{name}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, self.outbox / name)

    async def barge_in(self, call: Call) -> None:
        for pid in call.prompts:
            await self.rest("DELETE", f"/playbacks/{pid}")
        call.prompts.clear()

    async def dtmf(self, channel_id: str, digit: str) -> None:
        if channel_id.endswith("-agent"):
            call = self.calls.get(channel_id.removesuffix("-agent"))
            if call is not None and call.stage == "connected":
                call.agent_keys = (call.agent_keys + digit)[-2:]
                if call.agent_keys == "*1":
                    await self.start_capture(call)
            return
        call = self.calls.get(channel_id)
        if call is None:
            return
        call.keys += 1
        if call.stage == "code":
            if call.keys == 1:
                await self.barge_in(call)
            if digit == "#":
                call.stage = "verified"
                for name, value in (("CALLSEC_RESULT", "verified"), ("CALLSEC_METHOD", "sms"),
                                    ("CALLSEC_CUSTOMER", "C-FLOOR")):
                    await self.rest("POST", f"/channels/{call.cid}/variable", variable=name,
                                    value=value)
                await self.prompt(call, f"{call.cid}-v3", "sound:callsec/verified")
        elif call.stage == "capturing":
            await self.capture_key(call, digit)

    async def start_capture(self, call: Call) -> None:
        call.stage, call.keys, call.field_index = "capturing", 0, 0
        call.capture = f"CP-{secrets.token_hex(8)}"
        self.captures[call.capture] = call.cid
        bridge = f"callsec-capture-{call.cid}"
        await self.rest("POST", f"/bridges/callsec-call-{call.cid}/removeChannel",
                        channel=call.cid)
        await self.rest("POST", "/bridges", type="mixing,dtmf_events", bridgeId=bridge,
                        name=bridge)
        await self.rest("POST", f"/bridges/{bridge}/addChannel", channel=call.cid,
                        absorbDTMF="true", mute="false")
        await self.agent_loop(call)
        await self.field_prompt(call)

    async def agent_loop(self, call: Call) -> None:
        call.loop += 1
        await self.play(f"{call.cid}-agent", f"{call.capture}-loop{call.loop}",
                        "sound:callsec/customer-entering-details")

    async def field_prompt(self, call: Call) -> None:
        name = FIELDS[call.field_index][0]
        await self.prompt(call, f"{call.capture}-p{call.field_index + 1}", f"sound:callsec/{name}")

    async def capture_key(self, call: Call, digit: str) -> None:
        if call.keys == 1:
            await self.barge_in(call)
        length = FIELDS[call.field_index][1]
        if not ((length == 0 and digit == "#") or (length and call.keys == length)):
            return
        call.keys = 0
        call.field_index += 1
        if call.field_index < len(FIELDS):
            await self.field_prompt(call)
            return
        call.stage = "connected"
        bridge = f"callsec-capture-{call.cid}"
        await self.rest("DELETE", f"/playbacks/{call.capture}-loop{call.loop}")
        await self.rest("POST", f"/bridges/{bridge}/removeChannel", channel=call.cid)
        await self.rest("POST", f"/bridges/callsec-call-{call.cid}/addChannel",
                        channel=call.cid, absorbDTMF="true", mute="false")
        await self.rest("DELETE", f"/bridges/{bridge}")
        await self.play(call.cid, f"{call.capture}-back", "sound:callsec/capture-complete",
                        "sound:beep")
        await self.play(f"{call.cid}-agent", f"{call.capture}-beep", "sound:beep")

    async def played(self, playback_id: str) -> None:
        cid, _, tail = playback_id.rpartition("-")
        call = self.calls.get(cid) or self.calls.get(self.captures.get(playback_id[:19], ""))
        if call is not None and playback_id in call.prompts:
            call.prompts.remove(playback_id)  # finished: nothing to stop at barge-in
        call = self.calls.get(cid)
        if call is not None and tail == "v3" and call.stage == "verified":
            call.stage = "dialling"
            await self.rest("POST", f"/channels/{cid}/moh")
            await self.rest("POST", "/bridges", type="mixing,dtmf_events",
                            bridgeId=f"callsec-call-{cid}", name=f"callsec-call-{cid}")
            await self.rest("POST", "/channels", endpoint=call.dial, app=self.app,
                            appArgs=f"leg,{cid},agent", callerId=call.number, timeout=30,
                            channelId=f"{cid}-agent", originator=cid)
            return
        call = self.calls.get(self.captures.get(playback_id[:19], ""))
        if call is not None and call.stage == "capturing" and \
                playback_id == f"{call.capture}-loop{call.loop}":
            await self.agent_loop(call)  # the agent's "customer is entering details" loop

    async def gone(self, channel_id: str) -> None:
        call = self.calls.pop(channel_id, None)
        if call is None:
            return
        self.captures.pop(call.capture, None)
        self.locks.pop(call.cid, None)
        if call.stage == "capturing":
            await self.rest("DELETE", f"/bridges/callsec-capture-{call.cid}")
        await self.rest("DELETE", f"/channels/{call.cid}-agent")
        await self.rest("DELETE", f"/bridges/callsec-call-{call.cid}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:18088")
    parser.add_argument("--user", default="callsec")
    parser.add_argument("--password", default="callsec")
    parser.add_argument("--app", default="callsec-floor")
    parser.add_argument("--outbox", type=Path, required=True)
    parser.add_argument("--trace")
    args = parser.parse_args()
    args.outbox.mkdir(parents=True, exist_ok=True)
    auth = aiohttp.encode_basic_auth(args.user, args.password)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    connector = aiohttp.TCPConnector(limit=MAX_CONNECTIONS)  # as callsec: Asterisk's sessionlimit
    async with aiohttp.ClientSession(connector=connector) as session, \
            asyncio.TaskGroup() as tg:
        floor = Floor(args.url, auth, args.app, args.outbox, Trace(args.trace), session, tg)

        async def read() -> None:  # reconnects: the sandbox is shared and may restart
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.ws_connect(
                            f"{args.url}/ari/events", headers={"Authorization": auth},
                            params={"app": args.app, "subscribeAll": "false"},
                            heartbeat=20.0) as ws:
                        await floor.rest("PUT", f"/applications/{args.app}/eventFilter",
                                         json={"allowed": [{"type": t} for t in EVENT_TYPES]})
                        async for message in ws:
                            if message.type is aiohttp.WSMsgType.TEXT:
                                floor.on_event(json.loads(message.data))
                await asyncio.sleep(1.0)

        reader = tg.create_task(read())
        await stop.wait()
        reader.cancel()


if __name__ == "__main__":
    asyncio.run(main())
