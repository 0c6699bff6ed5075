"""The load driver: many callers, each verified by SMS and then asked for a card by its agent.

Callers are Local channels on A (cheap, for scale) and a few SIP calls from B (realism):

1. place the call: ``POST A/ari/channels?endpoint=Local/<number>@sandbox/n&app=bench-sim``
   (``;1`` is ours; DTMF sent on it arrives on ``;2``, the caller the app under test sees), or
   ``POST B/ari/channels?endpoint=PJSIP/<number>@pbx&app=bench-carrier`` (RFC 4733 over RTP);
2. the "phone" reads the code from the app's SMS outbox and keys it in (``<code>#``);
3. the agent rings in ``bench-agents`` (a Local channel ``<call id>-agent;2``): the driver
   subscribes to the caller channel and the call's bridge ``callsec-call-<call id>``, answers,
   and once both are bridged presses ``*1`` on the agent's keypad;
4. when the caller has left the agent's bridge (the capture started) the caller keys a card,
   number ``#``, expiry, CVV,
   as soon as the first prompt (``enter-card-number``) starts playing;
5. the call is complete when the caller is back in the agent's bridge after hearing
   ``capture-complete``; the driver hangs up.

Any other outcome, or no completion within the ramp's timeout, fails the call (with the stage
it reached). The driver only reads events and calls REST; it knows nothing of the app inside.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp

log = logging.getLogger("bench.driver")

SIM_APP, AGENT_APP, CARRIER_APP = "bench-sim", "bench-agents", "bench-carrier"
CODE = re.compile(r"(?<![\d:])(\d{4,10})(?![\d:])")
TEST_CARD = "4111111111111111"  # Visa test number (Luhn-valid, never issued)
THINK = (0.3, 1.0)  # seconds a caller or agent takes before pressing keys (uniform)
DTMF = {"between": 100, "duration": 100}


def card_keys(today: date | None = None) -> str:
    """What the caller keys during the capture: number ``#``, expiry MMYY (next year), CVV."""
    year = (today or date.today()).year + 1
    return f"{TEST_CARD}#12{year % 100:02d}123"


@dataclass(frozen=True)
class Caller:
    mobile: str
    #: The caller ID the app under test gives the agent's leg (customer ref, or the mobile).
    agent_caller_id: str
    sip: bool = False


@dataclass(eq=False)
class BenchCall:
    caller: Caller
    number: str
    ours: str = ""            # our channel: ;1 on A, or the carrier's channel on B
    call_id: str = ""         # the caller's channel on A: the app's call id
    agent: str = ""           # the agent's ;2 on A
    stage: str = "placing"
    result: str = ""
    media: str = ""
    bridged: set[str] = field(default_factory=set)
    started: float = 0.0
    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, stage: str) -> None:
        self.stage = stage
        self.marks[stage] = time.monotonic()


@dataclass(frozen=True, kw_only=True)
class Server:
    url: str
    user: str
    password: str

    @property
    def auth(self) -> str:
        return aiohttp.encode_basic_auth(self.user, self.password)


class Ari:
    """REST and one events websocket on one Asterisk (plain aiohttp)."""

    def __init__(self, server: Server, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session

    async def call(self, method: str, path: str, **params: Any) -> Any:
        query = {k: str(v) for k, v in params.items()}
        async with self.session.request(method, f"{self.server.url}/ari{path}", params=query,
                                        headers={"Authorization": self.server.auth}) as resp:
            body = await resp.read()
            if resp.status >= 300 and resp.status != 404:
                raise RuntimeError(f"{method} {path}: {resp.status} {body[:200]!r}")
            return json.loads(body) if body.strip() and resp.status < 300 else None

    async def call_json(self, method: str, path: str, body: Any) -> None:
        async with self.session.request(method, f"{self.server.url}/ari{path}", json=body,
                                        headers={"Authorization": self.server.auth}) as resp:
            if resp.status >= 300:
                raise RuntimeError(f"{method} {path}: {resp.status}")

    async def events(self, apps: str, handle: Callable[[dict[str, Any]], None]) -> None:
        """Hand every event of ``apps`` to ``handle``; reconnects (the sandbox is shared and
        may restart under us) until cancelled."""
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with self.session.ws_connect(
                        f"{self.server.url}/ari/events", headers={"Authorization": self.server.auth},
                        params={"app": apps, "subscribeAll": "false"}, heartbeat=20.0) as ws:
                    async for message in ws:
                        if message.type is aiohttp.WSMsgType.TEXT:
                            handle(json.loads(message.data))
            await asyncio.sleep(1.0)


class LoadDriver:
    """Drives ramps of calls against one app (``number`` routes to it in A's dialplan)."""

    def __init__(self, a: Ari, b: Ari | None, tg: asyncio.TaskGroup, *,
                 seed: int = 8) -> None:
        self.a, self.b, self.tg = a, b, tg
        self.seed = seed
        self.rng = random.Random(seed)
        #: Seconds a caller stays with the agent after the capture (set per ramp).
        self.hold = 0.0
        self.calls: dict[str, BenchCall] = {}       # by our channel id and by call id
        self.by_agent_id: dict[str, BenchCall] = {}  # by the agent leg's caller ID
        self.by_mobile: dict[str, BenchCall] = {}
        self.errors: list[str] = []
        self._pending, self._ended = 0, asyncio.Event()

    async def filter_events(self) -> None:
        """The driver's apps get only the events it reads (less work for Asterisk)."""
        wanted = {SIM_APP: ("StasisStart", "ChannelDestroyed", "ChannelEnteredBridge",
                            "ChannelLeftBridge", "PlaybackStarted"),
                  AGENT_APP: ("StasisStart",)}
        for app, types in wanted.items():
            await self.a.call_json("PUT", f"/applications/{app}/eventFilter",
                                   {"allowed": [{"type": t} for t in types]})
        if self.b is not None:
            await self.b.call_json("PUT", f"/applications/{CARRIER_APP}/eventFilter",
                                   {"allowed": [{"type": "StasisStart"},
                                                {"type": "ChannelDestroyed"}]})

    # -- events ---------------------------------------------------------------------------
    def on_a_event(self, ev: dict[str, Any]) -> None:
        kind, channel = ev.get("type"), ev.get("channel") or {}
        if kind == "StasisStart" and ev.get("application") == AGENT_APP:
            self._agent_rings(channel)
        elif kind == "StasisStart":
            self._answered(channel.get("id", ""))
        elif kind in ("ChannelEnteredBridge", "ChannelLeftBridge"):
            self._bridge(kind, ev["bridge"]["id"], channel.get("id", ""))
        elif kind == "PlaybackStarted":
            self._playback(ev["playback"])
        elif kind == "ChannelDestroyed":
            self._destroyed(channel.get("id", ""))

    def on_b_event(self, ev: dict[str, Any]) -> None:
        kind, channel = ev.get("type"), ev.get("channel") or {}
        if kind == "StasisStart":
            self._answered(channel.get("id", ""))
        elif kind == "ChannelDestroyed":
            self._destroyed(channel.get("id", ""))

    def _answered(self, channel_id: str) -> None:
        call = self.calls.get(channel_id)
        if call is not None and call.stage == "ringing":
            call.mark("answered")

    def _agent_rings(self, channel: dict[str, Any]) -> None:
        caller = channel.get("caller") or {}
        call = self.calls.get(str(channel.get("id", "")).rsplit("-agent", 1)[0]) or \
            self.by_agent_id.get(caller.get("number", "")) or \
            self.by_agent_id.get(caller.get("name", ""))
        if call is None or call.result:
            self.spawn(self.a.call("DELETE", f"/channels/{channel['id']}"))
            return
        call.agent = channel["id"]
        call.call_id = call.agent.rsplit("-agent", 1)[0]
        self.calls[call.call_id] = call
        call.mark("agent_ringing")
        self.spawn(self._answer_agent(call))

    async def _answer_agent(self, call: BenchCall) -> None:
        await self.a.call("POST", f"/applications/{SIM_APP}/subscription",
                          eventSource=f"channel:{call.call_id},bridge:callsec-call-{call.call_id}")
        await self.a.call("POST", f"/channels/{call.agent}/answer")

    def _bridge(self, kind: str, bridge_id: str, channel_id: str) -> None:
        if not bridge_id.startswith("callsec-call-"):
            return
        call = self.calls.get(bridge_id.removeprefix("callsec-call-"))
        if call is None or call.result:
            return
        if kind == "ChannelLeftBridge":
            call.bridged.discard(channel_id)
            if channel_id == call.call_id and call.stage == "capture_requested":
                call.mark("capturing")  # the caller keys once the first prompt plays
            return
        call.bridged.add(channel_id)
        if call.stage == "agent_ringing" and {call.call_id, call.agent.removesuffix(";2")} \
                <= call.bridged:
            call.mark("connected")
            self.spawn(self._press_capture(call))
        elif call.stage == "keying" and channel_id == call.call_id:
            call.mark("returned")
            self._maybe_done(call)

    def _playback(self, playback: dict[str, Any]) -> None:
        target = str(playback.get("target_uri", ""))
        media = str(playback.get("media_uri", ""))
        call = self.calls.get(target.removeprefix("channel:"))
        if call is None or call.result:
            return
        if call.stage == "capturing" and media.endswith("/enter-card-number"):
            call.mark("keying")
            self.spawn(self._keys(call, card_keys()))
        elif "/capture-" in media:
            call.media = media.rsplit("/", 1)[-1]
            self._maybe_done(call)

    def _maybe_done(self, call: BenchCall) -> None:
        """Back in the agent's bridge and told the result: the capture is over."""
        if call.stage == "returned" and call.media:
            ok = call.media == "capture-complete"
            self._finish(call, "completed" if ok else f"failed:{call.media}")

    def _destroyed(self, channel_id: str) -> None:
        call = self.calls.get(channel_id)
        if call is not None and channel_id == call.ours and not call.result:
            self._finish(call, f"failed:hung_up_at_{call.stage}")

    # -- actions ----------------------------------------------------------------------------
    def spawn(self, coro: Awaitable[Any]) -> None:
        self.tg.create_task(self._guard(coro))

    async def _guard(self, coro: Awaitable[Any]) -> None:
        try:
            await coro
        except (aiohttp.ClientError, RuntimeError, TimeoutError) as exc:
            self.errors.append(str(exc)[:200])

    def think(self) -> float:
        return self.rng.uniform(*THINK)

    async def _keys(self, call: BenchCall, keys: str) -> None:
        await asyncio.sleep(self.think())
        ari = self.b if call.caller.sip and self.b is not None else self.a
        await ari.call("POST", f"/channels/{call.ours}/dtmf", dtmf=keys, **DTMF)

    async def _press_capture(self, call: BenchCall) -> None:
        await asyncio.sleep(self.think())
        call.mark("capture_requested")
        await self.a.call("POST", f"/channels/{call.agent}/dtmf", dtmf="*1", **DTMF)

    def code_arrived(self, to: str, body: str) -> None:
        call = self.by_mobile.get(to)
        found = CODE.findall(body)
        if call is None or call.result or len(found) != 1:
            return
        call.mark("code_sent")
        self.spawn(self._keys(call, found[0] + "#"))

    def _finish(self, call: BenchCall, result: str, *, hang_up: bool = True) -> None:
        call.result = result
        call.marks["ended"] = time.monotonic()
        self._pending -= 1
        if self._pending <= 0:
            self._ended.set()
        if hang_up:
            self.spawn(self._hang_up(call))

    async def _hang_up(self, call: BenchCall) -> None:
        ari = self.b if call.caller.sip and self.b is not None else self.a
        await asyncio.sleep(self.hold if call.result == "completed" else 0.2)
        call.marks["hung_up"] = time.monotonic()
        await ari.call("DELETE", f"/channels/{call.ours}")

    # -- placing calls ----------------------------------------------------------------------
    async def place(self, call: BenchCall, limit: asyncio.Semaphore, at: float) -> None:
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        async with limit:
            call.started = time.monotonic()
            call.mark("ringing")
            try:
                await self._originate(call)
            except (aiohttp.ClientError, RuntimeError) as exc:
                self.errors.append(str(exc)[:200])
                self._finish(call, "failed:originate", hang_up=False)

    async def _originate(self, call: BenchCall) -> None:
        if call.caller.sip and self.b is not None:
            call.ours = f"bench-b-{uuid.uuid4().hex[:12]}"
            self.calls[call.ours] = call
            await self.b.call("POST", f"/channels/{call.ours}", app=CARRIER_APP,
                              endpoint=f"PJSIP/{call.number}@pbx", callerId=call.caller.mobile)
            return
        call.ours, call.call_id = (f"bench-l1-{uuid.uuid4().hex[:12]}",
                                   f"bench-l2-{uuid.uuid4().hex[:12]}")
        self.calls[call.ours] = self.calls[call.call_id] = call
        await self.a.call("POST", f"/channels/{call.ours}", app=SIM_APP, appArgs="local",
                          endpoint=f"Local/{call.number}@sandbox/n", formats="ulaw",
                          callerId=call.caller.mobile, otherChannelId=call.call_id)

    async def run_ramp(self, callers: list[Caller], number: str, outbox: Path,
                       seconds: float, rate: float) -> list[BenchCall]:
        """Place the calls at ``rate`` per second (20 originations in flight at most) and
        drive them; a call not complete ``seconds`` after the last was placed fails. Each
        completed caller stays with the agent until every call of the ramp has been placed
        (plus 3 s), so all of them are up at the same time."""
        calls = [BenchCall(caller=c, number=number) for c in callers]
        spread = len(calls) / rate
        self.hold = spread + 3.0
        self.rng.seed(self.seed)  # every app of a ramp gets the same think times
        self.calls.clear()
        self.by_agent_id = {c.caller.agent_caller_id: c for c in calls}
        self.by_mobile = {c.caller.mobile: c for c in calls}
        self._pending, self._ended = len(calls), asyncio.Event()
        limit = asyncio.Semaphore(20)
        watcher = self.tg.create_task(self._watch_outbox(outbox))
        try:
            start = time.monotonic()
            async with asyncio.TaskGroup() as placing:
                for index, call in enumerate(calls):
                    placing.create_task(self.place(call, limit, start + index / rate))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._ended.wait()
        finally:
            watcher.cancel()
        for call in calls:
            if not call.result:
                self._finish(call, f"failed:timeout_at_{call.stage}")
        return calls

    async def _watch_outbox(self, outbox: Path) -> None:
        while True:
            for to, body in await asyncio.to_thread(read_outbox, outbox):
                self.code_arrived(to, body)
            await asyncio.sleep(0.05)


def read_outbox(outbox: Path) -> list[tuple[str, str]]:
    """Messages now in ``outbox`` (``to``, ``body``); each file is removed once read."""
    messages = []
    with contextlib.suppress(FileNotFoundError):
        for entry in sorted(outbox.iterdir()):
            if entry.name.startswith(".") or entry.suffix != ".json":
                continue
            try:
                message = json.loads(entry.read_text())
            except (OSError, ValueError):
                continue  # being written: next round
            entry.unlink(missing_ok=True)
            messages.append((str(message.get("to", "")), str(message.get("body", ""))))
    return messages
