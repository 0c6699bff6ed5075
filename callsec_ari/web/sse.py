"""``GET /api/v1/calls/{call_id}/events``: Server-Sent Events of one call's masked progress.

The stream opens with a ``snapshot`` of the call, then relays the call's bus events
(``verification``, ``call``, ``capture``: counts, dots, brand, last 4, valid/invalid, attempt;
capture events only with ``captures.view`` on the call), with a comment line as heartbeat.
A call another node runs streams the same way: its snapshot from the call registry, its events
as the owner published them, relayed over PostgreSQL ``NOTIFY`` (``runtime/pgbus.py``).
It ends with an ``end`` event when the call is over, and quietly when the session has ended
(logout, ``callsec users disable`` in another process, expiry) or the server shuts down.

Both are checked every :data:`CHECK_SECONDS` whether the stream is quiet or busy (another
call's events keep a stream's queue busy without being relayed), so a stream never outlives
its session by more than about a second. The session look-up is shared by all the streams of
one session (:class:`SessionChecks`): one query per session per interval, not per stream.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from weakref import WeakKeyDictionary

from aiohttp import web

from callsec_ari.access.auth import Principal
from callsec_ari.access.errors import SessionInvalid
from callsec_ari.access.roles import Owner, Permission, allowed
from callsec_ari.runtime.bus import BusEvent, safe_payload
from callsec_ari.web.customer import verified_customer
from callsec_ari.web.guard import SEE_CALL, Guarded, deps_of, visible_anywhere
from callsec_ari.web.views import call_view, remote_call_view

STREAMS = web.AppKey("callsec_sse_streams", set[asyncio.Queue[BusEvent]])
CLOSE_TOPIC = "__close__"
#: How often an open stream checks that its session is still valid and its call still active.
CHECK_SECONDS = 0.4


class SessionChecks:
    """Is a session still valid? At most one look-up per session per :data:`CHECK_SECONDS`,
    shared by every open stream of that session (a desk opens one stream per call)."""

    def __init__(self) -> None:
        #: token -> (loop time of the look-up, still signed in), while a stream is open.
        self._checked: dict[str, tuple[float, bool]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._open: Counter[str] = Counter()

    @contextmanager
    def watching(self, token: str) -> Iterator[None]:
        self._open[token] += 1
        try:
            yield
        finally:
            self._open[token] -= 1
            if self._open[token] <= 0:
                del self._open[token]
                self._checked.pop(token, None)
                self._locks.pop(token, None)

    async def signed_in(self, request: web.Request, principal: Principal) -> bool:
        token, loop = principal.token, asyncio.get_running_loop()
        async with self._locks.setdefault(token, asyncio.Lock()):
            checked = self._checked.get(token)
            if checked is None or loop.time() - checked[0] >= CHECK_SECONDS:
                checked = (loop.time(), await _still_signed_in(request, principal))
                self._checked[token] = checked
            return checked[1]


_SESSIONS: WeakKeyDictionary[web.Application, SessionChecks] = WeakKeyDictionary()


def session_checks(app: web.Application) -> SessionChecks:
    """The application's :class:`SessionChecks` (made on first use)."""
    checks = _SESSIONS.get(app)
    if checks is None:
        checks = _SESSIONS[app] = SessionChecks()
    return checks


def _frame(event: str, data: dict[str, Any], event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n" \
        .encode()


def close_streams(app: web.Application) -> None:
    """Ask every open stream to finish (on shutdown)."""
    streams: set[asyncio.Queue[BusEvent]] = app[STREAMS]
    for queue in list(streams):
        if queue.full():
            queue.get_nowait()
        queue.put_nowait(BusEvent(seq=0, call_id="", topic=CLOSE_TOPIC, payload={}))


async def on_shutdown(app: web.Application) -> None:
    close_streams(app)


def _visible(event: BusEvent, principal: Principal, owner: Owner) -> bool:
    if event.topic == "capture":
        return allowed(principal.user.subject, Permission.CAPTURES_VIEW, owner)
    return True


async def _still_signed_in(request: web.Request, principal: Principal) -> bool:
    try:
        await asyncio.to_thread(deps_of(request).auth.authenticate, principal.token)
    except SessionInvalid:
        return False
    return True


async def events(request: web.Request, principal: Principal) -> web.StreamResponse:
    deps = deps_of(request)
    call, remote, owner, owners = await visible_anywhere(request, principal, SEE_CALL,
                                                         request.match_info["call_id"])
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "X-Accel-Buffering": "no"})
    with deps.bus.subscribe() as queue, session_checks(request.app).watching(principal.token):
        request.app[STREAMS].add(queue)
        try:
            await response.prepare(request)
            if call is not None:
                snapshot = call_view(call, owner, owners)
                snapshot["customer"] = await verified_customer(deps.customer_names, principal,
                                                               call, owner)
            else:  # another node runs it: its events come over the PostgreSQL bus
                assert remote is not None
                snapshot = remote_call_view(remote, owner, owners)
            await response.write(_frame("snapshot", snapshot))
            await _relay(request, response, queue, principal, owner)
        except ConnectionResetError:
            pass  # the browser went away
        finally:
            request.app[STREAMS].discard(queue)
    return response


async def _next_event(queue: asyncio.Queue[BusEvent], seconds: float) -> BusEvent | None:
    try:
        async with asyncio.timeout(seconds):
            return await queue.get()
    except TimeoutError:
        return None


async def _relay(request: web.Request, response: web.StreamResponse,
                 queue: asyncio.Queue[BusEvent], principal: Principal, owner: Owner) -> None:
    deps, call_id = deps_of(request), request.match_info["call_id"]
    loop = asyncio.get_running_loop()
    last_write = loop.time()
    next_check = last_write + CHECK_SECONDS
    while True:
        event = await _next_event(queue, max(0.0, next_check - loop.time()))
        if loop.time() >= next_check:  # on time, however busy the bus is
            if not await session_checks(request.app).signed_in(request, principal):
                return
            if deps.calls.get(call_id) is None and (
                    deps.cluster is None or await deps.cluster.owner_of(call_id) is None):
                await response.write(_frame("end", {"call_id": call_id}))
                return
            if loop.time() - last_write >= deps.sse_heartbeat_seconds:
                await response.write(b": keepalive\n\n")
                last_write = loop.time()
            next_check = loop.time() + CHECK_SECONDS
        if event is None:
            continue
        if event.topic == CLOSE_TOPIC:
            return
        if event.call_id != call_id or not _visible(event, principal, owner):
            continue
        data = {"seq": event.seq, "call_id": event.call_id, "topic": event.topic,
                "ts": event.ts, **safe_payload(event.payload)}
        await response.write(_frame(event.topic, data, event.seq))
        last_write = loop.time()


GUARDED: dict[tuple[str, str], Guarded] = {
    ("GET", "/api/v1/calls/{call_id}/events"): events,
}
