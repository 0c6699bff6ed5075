"""``GET /api/v1/calls/{call_id}/events``: Server-Sent Events of one call's masked progress.

The stream opens with a ``snapshot`` of the call, then relays the call's bus events
(``verification``, ``call``, ``capture``: counts, dots, brand, last 4, valid/invalid, attempt;
capture events only with ``captures.view`` on the call), with a comment line as heartbeat.
It ends with an ``end`` event when the call is over, and quietly when the session has ended
(logout, expiry) or the server shuts down.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from callsec_ari.access.auth import Principal
from callsec_ari.access.errors import SessionInvalid
from callsec_ari.access.roles import Owner, Permission, allowed
from callsec_ari.runtime.bus import BusEvent
from callsec_ari.web.guard import SEE_CALL, Guarded, deps_of, visible_call
from callsec_ari.web.views import call_view, safe_payload

STREAMS = web.AppKey("callsec_sse_streams", set[asyncio.Queue[BusEvent]])
CLOSE_TOPIC = "__close__"
#: How often a quiet stream checks whether its call is still active.
POLL_SECONDS = 1.0


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
    call, owner, owners = await visible_call(request, principal, SEE_CALL,
                                             request.match_info["call_id"])
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "X-Accel-Buffering": "no"})
    with deps.bus.subscribe() as queue:
        request.app[STREAMS].add(queue)
        try:
            await response.prepare(request)
            await response.write(_frame("snapshot", call_view(call, owner, owners)))
            await _relay(request, response, queue, principal, owner)
        except ConnectionResetError:
            pass  # the browser went away
        finally:
            request.app[STREAMS].discard(queue)
    return response


async def _relay(request: web.Request, response: web.StreamResponse,
                 queue: asyncio.Queue[BusEvent], principal: Principal, owner: Owner) -> None:
    deps, call_id = deps_of(request), request.match_info["call_id"]
    loop = asyncio.get_running_loop()
    last_write = loop.time()
    while True:
        try:
            async with asyncio.timeout(POLL_SECONDS):
                event = await queue.get()
        except TimeoutError:
            if deps.calls.get(call_id) is None:
                await response.write(_frame("end", {"call_id": call_id}))
                return
            if loop.time() - last_write >= deps.sse_heartbeat_seconds:
                if not await _still_signed_in(request, principal):
                    return
                await response.write(b": keepalive\n\n")
                last_write = loop.time()
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
