"""The events half of :class:`~callsec_ari.ari.client.AriClient`: the events websocket with
reconnects (exponential backoff with full jitter) and the liveness probe.

:meth:`AriEvents.events` yields :class:`Connected` first, then events in arrival order. On a drop
it yields :class:`Disconnected`, waits (the n-th wait after a stable connection is uniform in
``[reconnect_min, min(reconnect_max, reconnect_min * 2**n)]``), reconnects and yields
``Connected(reconnect=True)``. A first connect that fails is reported the same way
(``Disconnected``, then retries). 401/403 raises :class:`AriAuthError` and stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json as jsonlib
import logging
import random
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from callsec_ari.ari.errors import (
    AriAuthError,
    AriConnectionError,
    AriError,
    AriProtocolError,
    error_for_status,
)
from callsec_ari.ari.models import AriEvent, Connected, Disconnected, parse_event
from callsec_ari.ari.operations import Params
from callsec_ari.core.backoff import ReconnectBackoff

log = logging.getLogger("callsec_ari.ari.client")  # one logger for the whole client

#: The user event callsec sends its own app when the events go quiet (``_receive``), and the
#: ARI type it arrives as; the adapter's event filter lets it through.
LIVENESS_EVENT = "callsec-liveness"
LIVENESS_TYPE = "ChannelUserevent"

def connection_reason(exc: BaseException, timeout: float) -> str:
    """Why a connection failed, without any URL (aiohttp's texts may hold the query string)."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g}s"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect ({exc.os_error.strerror or type(exc.os_error).__name__})"
    return type(exc).__name__


@dataclass
class _Link:
    """State of one :meth:`AriClient.events` stream across its websocket connections."""

    connected_before: bool = False
    reported_down: bool = False
    drop_reason: str = ""
    uptime: float = 0.0


class AriEvents:
    """Mixin: the events websocket of :class:`~callsec_ari.ari.client.AriClient`."""

    name: str
    apps: tuple[str, ...]
    request_timeout: float
    reconnect_min: float
    reconnect_max: float
    heartbeat: float | None
    stable_after: float
    app_check: float | None
    reconnects: int
    _closed: bool
    _rng: random.Random
    _sleep: Callable[[float], Awaitable[None]]
    _ws_url: URL
    _websockets: set[aiohttp.ClientWebSocketResponse]
    #: REST requests go over the events websocket (Asterisk 22 ``RESTRequest``) while it is read
    rest_over_websocket: bool
    _rest_ws: aiohttp.ClientWebSocketResponse | None
    #: a websocket that left a REST call unanswered: HTTP until the next one
    _rest_ws_off: aiohttp.ClientWebSocketResponse | None
    _answers: dict[str, asyncio.Future[tuple[int, bytes]]]
    _request_ids: Iterator[int]

    def _open_session(self) -> aiohttp.ClientSession:
        raise NotImplementedError

    def _headers(self) -> dict[str, str]:
        raise NotImplementedError

    async def request(
        self, method: str, path: str, *, params: Params | None = None, json: Any = None
    ) -> Any:
        raise NotImplementedError

    async def events(self) -> AsyncGenerator[AriEvent, None]:
        """Events of this client's applications, strictly in arrival order, across reconnects.

        Close it with ``contextlib.aclosing`` (or cancel the consumer): the websocket is closed.
        """
        backoff = ReconnectBackoff(self.reconnect_min, self.reconnect_max, self._rng)
        link = _Link()
        while not self._closed:
            try:
                ws = await self._connect_events()
            except AriAuthError:
                raise
            except AriError as exc:
                reason = str(exc.details.get("reason") or exc.message)
            else:
                async with contextlib.aclosing(self._stream(ws, link)) as stream:
                    async for event in stream:
                        yield event
                if self._closed:
                    return
                if link.uptime >= self.stable_after:
                    backoff.reset()
                reason = link.drop_reason
            delay = backoff.next_delay()
            if self._report_down(link, reason, delay):
                yield Disconnected(server=self.name, reason=reason)
            await self._sleep(delay)

    async def _stream(self, ws: aiohttp.ClientWebSocketResponse,
                      link: _Link) -> AsyncGenerator[AriEvent, None]:
        """``Connected`` and the events of one websocket; closes it however it ends."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        reconnect, link.connected_before, link.reported_down = link.connected_before, True, False
        link.drop_reason = "closed"
        try:
            if reconnect:
                self.reconnects += 1
                log.info("ARI %s: events websocket reconnected", self.name)
            else:
                log.info("ARI %s: events websocket connected (apps %s)", self.name,
                         ",".join(self.apps))
            yield Connected(server=self.name, reconnect=reconnect)
            while isinstance(item := await self._receive(ws), AriEvent):
                yield item
            link.drop_reason = item
        finally:
            link.uptime = loop.time() - started
            self._fail_answers(link.drop_reason)
            self._websockets.discard(ws)
            await ws.close()

    def _report_down(self, link: _Link, reason: str, delay: float) -> bool:
        """One WARNING (and one ``Disconnected``) per outage; later failed attempts at INFO."""
        if link.reported_down:
            log.info("ARI %s: events websocket still down (%s); retrying in %.2fs",
                     self.name, reason, delay)
            return False
        link.reported_down = True
        log.warning("ARI %s: events websocket down (%s); reconnecting in %.2fs",
                    self.name, reason, delay)
        return True

    async def _connect_events(self) -> aiohttp.ClientWebSocketResponse:
        session = self._open_session()
        try:
            async with asyncio.timeout(self.request_timeout):
                ws = await session.ws_connect(
                    self._ws_url, headers=self._headers(), heartbeat=self.heartbeat,
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None,
                                                    ws_close=self.request_timeout))
        except aiohttp.WSServerHandshakeError as exc:
            error = self._handshake_error(exc.status)
            error.details["reason"] = f"handshake answered {exc.status}"
            raise error from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = connection_reason(exc, self.request_timeout)
            error = AriConnectionError(f"{self.name}: events websocket: {reason}",
                                       server=self.name, method="GET", path="/events")
            error.details["reason"] = reason
            raise error from None
        self._websockets.add(ws)
        return ws

    def _handshake_error(self, status: int) -> AriError:
        if status in (401, 403):
            return AriAuthError(
                f"{self.name}: ARI refused the credentials for the events websocket ({status});"
                " check the [ari] username and password and the user in Asterisk's ari.conf",
                server=self.name, method="GET", path="/events", ari_status=status)
        return error_for_status(status)(server=self.name, method="GET", path="/events",
                                        ari_status=status)

    async def _receive(self, ws: aiohttp.ClientWebSocketResponse) -> AriEvent | str:
        """The next event, or the reason the websocket ended (or must be dropped).

        When no event came for ``app_check`` seconds, callsec sends its app a user event
        (:data:`LIVENESS_EVENT`) and expects it back on this websocket within
        ``request_timeout``. Asterisk tears a closed websocket's app down on its own thread; when
        a websocket reconnected before that ran (a half-open TCP connection noticed late), or
        another client briefly took the name, the late teardown removes or deactivates the app
        under this open, silent websocket, and every ``Stasis(callsec,...)`` fails. A 404 (no
        such app) or an unanswered probe drops the websocket; the reconnect registers again.
        A probe that cannot be sent is no verdict: the heartbeat judges the link.
        """
        loop = asyncio.get_running_loop()
        probe_due: float | None = None
        while True:
            timeout = self.app_check if probe_due is None else max(probe_due - loop.time(), 0)
            try:
                self._rest_ws = ws if self.rest_over_websocket and ws is not self._rest_ws_off \
                    else None
                try:
                    message = await ws.receive(timeout=timeout)
                finally:
                    self._rest_ws = None
            except TimeoutError:
                if probe_due is not None:
                    return "Asterisk delivers no events to the app (liveness probe unanswered)"
                missing, sent = await self._probe()
                if missing:
                    return f"Asterisk no longer has app {','.join(missing)}"
                probe_due = loop.time() + self.request_timeout if sent else None
                continue
            if message.type is aiohttp.WSMsgType.TEXT:
                event = self._decode(message.data)
                if event is not None:
                    probe_due = None  # events arrive: the app is alive for us
                    if not _is_probe(event):
                        return event
            elif message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING,
                                  aiohttp.WSMsgType.CLOSED):
                return f"closed by server (code {ws.close_code})"
            elif message.type is aiohttp.WSMsgType.ERROR:
                return f"websocket error ({type(ws.exception()).__name__})"

    async def _probe(self) -> tuple[list[str], bool]:
        """Send each app the liveness event: (apps Asterisk does not have, all sent)."""
        missing, sent = [], True
        for app in self.apps:
            try:
                await self.request("POST", f"/events/user/{LIVENESS_EVENT}",
                                   params={"application": app})
            except AriError as exc:
                if exc.ari_status == 404:
                    missing.append(app)
                sent = False
        return missing, sent

    def _decode(self, text: str) -> AriEvent | None:
        try:
            data = jsonlib.loads(text)
            if isinstance(data, dict) and data.get("type") == "RESTResponse":
                self._answer(data)
                return None
            event = parse_event(data)
        except ValueError:
            log.warning("ARI %s: skipped an events frame that is not JSON", self.name)
            return None
        except AriProtocolError as exc:
            log.warning("ARI %s: skipped a malformed events frame: %s", self.name, exc.message)
            return None
        log.debug("ARI %s: event %s", self.name, event.type)
        return event


    # -- REST over the events websocket ---------------------------------------------------
    async def _ws_request(self, ws: aiohttp.ClientWebSocketResponse, method: str, path: str,
                          query: dict[str, str], json: Any) -> tuple[int, bytes]:
        """One REST call as a ``RESTRequest`` frame on the events websocket (Asterisk 22):
        no HTTP session, no connection pool; the answer comes back as a ``RESTResponse``
        frame that :meth:`_receive` hands to the waiting caller. (status, body)."""
        request_id = str(next(self._request_ids))
        frame: dict[str, Any] = {
            "type": "RESTRequest", "request_id": request_id, "method": method,
            "uri": path.lstrip("/"),
            "query_strings": [{"name": k, "value": v} for k, v in query.items()]}
        if json is not None:
            frame["content_type"] = "application/json"
            frame["message_body"] = jsonlib.dumps(json)
        answer: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self._answers[request_id] = answer
        try:
            await ws.send_str(jsonlib.dumps(frame))
            async with asyncio.timeout(self.request_timeout):
                return await answer
        except (aiohttp.ClientError, ConnectionError, TimeoutError) as exc:
            if isinstance(exc, TimeoutError):  # e.g. the app went inactive under the websocket
                self._rest_ws_off, self._rest_ws = ws, None
            raise self._lost(method, path, exc) from None
        finally:
            self._answers.pop(request_id, None)

    def _ws_busy(self) -> bool:
        """A REST call on the websocket waits for its answer: the next one goes over HTTP.

        Asterisk reads one websocket's ``RESTRequest`` frames and runs them one after the
        other on the session's thread (``res/ari/ari_websockets.c``), so a call that blocks
        there holds every call sent after it; HTTP runs each on its own thread. In ``make
        bench`` a ``StopPlayback`` ended in a 500 after seconds and all the calls queued
        behind it failed at the 5 s timeout (55 of 100 talk-through captures opened at 21:00;
        switching to HTTP after 1 s still lost 28 calls of the 100-call ramp at 21:24). One
        call at a time on the websocket: a blocked call delays no other call."""
        return bool(self._answers)

    def _lost(self, method: str, path: str, exc: BaseException) -> AriConnectionError:
        """A REST call that got no answer, without any URL or query value."""
        reason = connection_reason(exc, self.request_timeout)
        return AriConnectionError(f"{self.name}: {method} {path}: {reason}", server=self.name,
                                  method=method, path=path)

    def _answer(self, data: dict[str, Any]) -> None:
        answer = self._answers.pop(str(data.get("request_id")), None)
        if answer is None or answer.done():
            return  # its caller gave up (timeout) or the frame is not ours
        status = data.get("status_code")
        body = data.get("message_body")
        answer.set_result((status if isinstance(status, int) else 500,
                           body.encode() if isinstance(body, str) else b""))

    def _fail_answers(self, reason: str) -> None:
        """The websocket ended: REST calls waiting on it fail as a lost connection."""
        for answer in self._answers.values():
            if not answer.done():
                answer.set_exception(ConnectionError(reason))
        self._answers.clear()


def _is_probe(event: AriEvent) -> bool:
    return event.type == LIVENESS_TYPE and event.raw.get("eventname") == LIVENESS_EVENT
