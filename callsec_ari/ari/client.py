"""callsec's own ARI client: REST over aiohttp plus the events websocket with reconnects.

Why not a library: PyPI's ``ari`` is Python 2 only; aioari, asyncari and ari-client do not
recover from websocket drops and put the credentials, unencoded, into URLs. Here the REST calls
and the websocket authenticate with an ``Authorization: Basic`` header; the URLs carry no
credentials (the websocket URL carries only ``app`` and ``subscribeAll``) and no log line or
exception message carries a query value.

Usage::

    async with AriClient("http://127.0.0.1:18088", "callsec", password, ["callsec"]) as ari:
        async with contextlib.aclosing(ari.events()) as events:
            async for event in events:
                ...

:meth:`AriClient.events` yields :class:`Connected` first, then events in arrival order. On a drop
it yields :class:`Disconnected`, waits (exponential backoff with full jitter: the n-th wait after a
stable connection is uniform in ``[reconnect_min, min(reconnect_max, reconnect_min * 2**n)]``),
reconnects and yields ``Connected(reconnect=True)``. A first connect that fails is reported the same
way (``Disconnected``, then retries). 401/403 raises :class:`AriAuthError` and stops.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json as jsonlib
import logging
import random
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

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
from callsec_ari.ari.operations import AriOperations, Params
from callsec_ari.core.errors import ConfigError

__all__ = ["AriClient", "ReconnectBackoff"]

log = logging.getLogger(__name__)

_MAX_EXPONENT = 60
#: The user event callsec sends its own app when the events go quiet (``_receive``), and the
#: ARI type it arrives as; the adapter's event filter lets it through.
LIVENESS_EVENT = "callsec-liveness"
LIVENESS_TYPE = "ChannelUserevent"
#: REST connections per Asterisk. Asterisk serves at most ``sessionlimit`` (http.conf, default
#: 100) HTTP sessions for every client together, websockets included; a burst of calls must
#: queue here rather than open more and be refused ("HTTP session count exceeded").
MAX_CONNECTIONS = 16


class ReconnectBackoff:
    """Exponential backoff with full jitter, floored at ``minimum``."""

    def __init__(self, minimum: float, maximum: float, rng: random.Random) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self._rng = rng
        self._attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self.maximum, self.minimum * 2 ** min(self._attempt, _MAX_EXPONENT))
        self._attempt += 1
        return self._rng.uniform(self.minimum, ceiling)

    def reset(self) -> None:
        self._attempt = 0


def _query(params: Params | None) -> dict[str, str]:
    """Drop ``None``; booleans as ARI wants them (``true``/``false``)."""
    out: dict[str, str] = {}
    for key, value in (params or {}).items():
        if value is None:
            continue
        out[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out


def _app_names(apps: Sequence[str]) -> tuple[str, ...]:
    names = (apps,) if isinstance(apps, str) else tuple(apps)
    if not names or any(not app or "," in app for app in names):
        raise ConfigError("ARI needs one or more application names without commas",
                          section="ari", key="app")
    return names


def _endpoints(url: URL, apps: Sequence[str]) -> tuple[str, URL]:
    """``http://host:port`` (``/ari`` appended unless present) -> REST base, events URL."""
    if url.scheme not in ("http", "https") or not url.host or url.user or url.password:
        raise ConfigError("ARI URL must be http(s)://host:port, without credentials",
                          section="ari", key="urls")
    path = url.path.rstrip("/")
    rest = url.with_path(path if path.endswith("/ari") else f"{path}/ari").with_query(None)
    events = rest.with_scheme("wss" if url.scheme == "https" else "ws").joinpath("events")
    return (str(rest.with_fragment(None)),
            events.with_query({"app": ",".join(apps), "subscribeAll": "false"}))


def _basic_authorization(username: str, password: str) -> str:
    """RFC 7617 ``Basic`` credentials, UTF-8 (Asterisk compares the decoded bytes)."""
    if not username or ":" in username:
        raise ConfigError("ARI username must be non-empty and contain no ':'",
                          section="ari", key="username")
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def _connection_reason(exc: BaseException, timeout: float) -> str:
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


class AriClient(AriOperations):
    """One Asterisk server's ARI: REST calls (see :class:`AriOperations`) and its events."""

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        apps: Sequence[str],
        *,
        request_timeout: float = 5.0,
        reconnect_min: float = 0.5,
        reconnect_max: float = 30.0,
        name: str | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        session: aiohttp.ClientSession | None = None,
        heartbeat: float | None = 20.0,
        stable_after: float = 10.0,
        max_connections: int = MAX_CONNECTIONS,
        app_check: float | None = 5.0,
    ) -> None:
        if not 0 < reconnect_min <= reconnect_max or request_timeout <= 0:
            raise ValueError("need 0 < reconnect_min <= reconnect_max and request_timeout > 0")
        url = URL(base_url)
        self.apps = _app_names(apps)
        self._rest_base, self._ws_url = _endpoints(url, self.apps)
        self._authorization = _basic_authorization(username, password)
        self.name = name or f"{url.host}:{url.port}"
        self.request_timeout = request_timeout
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.heartbeat = heartbeat
        self.stable_after = stable_after
        self.app_check = app_check
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._session = session
        self._owns_session = session is None
        self.max_connections = max_connections
        # The bound is on Asterisk: connecting, then each wait for its answer. Time spent
        # queued for one of our own MAX_CONNECTIONS (a burst of calls) does not count: under
        # load a request that waited its turn must not fail the call it belongs to.
        self._timeout = aiohttp.ClientTimeout(total=None, connect=None,
                                              sock_connect=request_timeout,
                                              sock_read=request_timeout)
        self._header_values = {"Authorization": self._authorization, "Accept": "application/json"}
        self._websockets: set[aiohttp.ClientWebSocketResponse] = set()
        self._closed = False
        #: Successful websocket reconnects since construction (for metrics).
        self.reconnects = 0

    def __repr__(self) -> str:
        return f"AriClient(name={self.name!r}, apps={self.apps!r})"

    # -- lifecycle --------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_connections))
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        """Close open event websockets and, if this client created it, the HTTP session."""
        self._closed = True
        for ws in list(self._websockets):
            await ws.close()
        self._websockets.clear()
        if self._owns_session and self._session is not None:
            await self._session.close()

    def _open_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed or self._closed:
            raise RuntimeError("AriClient is not open: use 'async with AriClient(...)'")
        return self._session

    def _headers(self) -> dict[str, str]:
        return self._header_values

    # -- REST -------------------------------------------------------------------------------
    async def request(
        self, method: str, path: str, *, params: Params | None = None, json: Any = None
    ) -> Any:
        """One REST call: ``path`` below ``/ari`` (ids percent-encoded, no query string: query
        values go in ``params``). Returns the parsed JSON, or ``None`` for an empty answer."""
        session = self._open_session()
        if not path.startswith("/") or "?" in path or "#" in path:
            raise ValueError("ARI path must start with '/' and carry no query; use params")
        method = method.upper()
        try:
            async with session.request(
                method, URL(self._rest_base + path), params=_query(params),
                json=json, headers=self._header_values, allow_redirects=False,
                timeout=self._timeout,
            ) as response:
                status = response.status
                body = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = _connection_reason(exc, self.request_timeout)
            raise AriConnectionError(f"{self.name}: {method} {path}: {reason}", server=self.name,
                                     method=method, path=path) from None
        log.debug("ARI %s: %s %s -> %d", self.name, method, path, status)
        if status >= 400:
            raise error_for_status(status)(server=self.name, method=method, path=path,
                                           ari_status=status, ari_message=_error_message(body))
        if status == 204 or not body.strip():
            return None
        try:
            return jsonlib.loads(body)
        except ValueError:
            raise AriProtocolError(f"{self.name}: {method} {path}: answer is not JSON",
                                   server=self.name, method=method, path=path,
                                   ari_status=status) from None

    # -- events -----------------------------------------------------------------------------
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
            reason = _connection_reason(exc, self.request_timeout)
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
                message = await ws.receive(timeout=timeout)
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
            event = parse_event(jsonlib.loads(text))
        except ValueError:
            log.warning("ARI %s: skipped an events frame that is not JSON", self.name)
            return None
        except AriProtocolError as exc:
            log.warning("ARI %s: skipped a malformed events frame: %s", self.name, exc.message)
            return None
        log.debug("ARI %s: event %s", self.name, event.type)
        return event


def _is_probe(event: AriEvent) -> bool:
    return event.type == LIVENESS_TYPE and event.raw.get("eventname") == LIVENESS_EVENT


def _error_message(body: bytes) -> str | None:
    """The ``message`` field of Asterisk's JSON error body, if there is one."""
    try:
        data = jsonlib.loads(body)
    except ValueError:
        return None
    message = data.get("message") if isinstance(data, dict) else None
    return message if isinstance(message, str) else None
