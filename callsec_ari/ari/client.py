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

:meth:`AriClient.events` (reconnects, liveness probe) is :mod:`callsec_ari.ari.events`.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json as jsonlib
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Self

import aiohttp
from yarl import URL

from callsec_ari.ari.errors import (
    AriProtocolError,
    error_for_status,
)
from callsec_ari.ari.events import AriEvents
from callsec_ari.ari.operations import AriOperations, Params
from callsec_ari.core.errors import ConfigError

__all__ = ["AriClient"]

log = logging.getLogger(__name__)

#: REST connections per Asterisk. Asterisk serves at most ``sessionlimit`` (http.conf, default
#: 100) HTTP sessions for every client together, websockets included; a burst of calls must
#: queue here rather than open more and be refused ("HTTP session count exceeded").
MAX_CONNECTIONS = 16


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


class AriClient(AriEvents, AriOperations):
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
        rest_over_websocket: bool = False,
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
        self.rest_over_websocket = rest_over_websocket
        self._rest_ws: aiohttp.ClientWebSocketResponse | None = None
        self._rest_ws_off: aiohttp.ClientWebSocketResponse | None = None
        self._answers: dict[str, asyncio.Future[tuple[int, bytes]]] = {}
        self._request_ids = itertools.count(1)
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
    async def _http_request(self, session: aiohttp.ClientSession, method: str, path: str,
                            params: Params | None, json: Any) -> tuple[int, bytes]:
        try:
            async with session.request(
                method, URL(self._rest_base + path), params=_query(params),
                json=json, headers=self._header_values, allow_redirects=False,
                timeout=self._timeout,
            ) as response:
                return response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._lost(method, path, exc) from None

    async def request(
        self, method: str, path: str, *, params: Params | None = None, json: Any = None
    ) -> Any:
        """One REST call: ``path`` below ``/ari`` (ids percent-encoded, no query string: query
        values go in ``params``). Returns the parsed JSON, or ``None`` for an empty answer.

        With ``rest_over_websocket``, a call made while the events websocket is read goes over
        it (Asterisk 22 ``RESTRequest``), one at a time; otherwise, for ids that need
        percent-encoding and while another call waits on the websocket, over the HTTP pool."""
        session = self._open_session()
        if not path.startswith("/") or "?" in path or "#" in path:
            raise ValueError("ARI path must start with '/' and carry no query; use params")
        method = method.upper()
        ws = self._rest_ws
        if ws is not None and "%" not in path and not self._ws_busy():
            status, body = await self._ws_request(ws, method, path, _query(params), json)
        else:
            status, body = await self._http_request(session, method, path, params, json)
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


def _error_message(body: bytes) -> str | None:
    """The ``message`` field of Asterisk's JSON error body, if there is one."""
    try:
        data = jsonlib.loads(body)
    except ValueError:
        return None
    message = data.get("message") if isinstance(data, dict) else None
    return message if isinstance(message, str) else None
