"""The aiohttp application: HTTP API under ``/api/v1``, the agent desk at ``/``.

:func:`build_web_app` is the factory; :class:`WebServer` runs it (``AppRunner`` +
``TCPSite``) inside the application's TaskGroup and cleans up when cancelled.
Errors are JSON ``{"error_id", "message", "details"}`` (the :mod:`core.errors` tree, plus
aiohttp's own 404/405/413); bodies above ``[web] max_body_bytes`` get 413.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from callsec_ari.access.auth import Auth
from callsec_ari.access.errors import TooManyAttempts
from callsec_ari.access.roles import revealable_kinds
from callsec_ari.access.users import UserStore
from callsec_ari.config import Settings
from callsec_ari.core.errors import CallsecError
from callsec_ari.core.ports import CallDirectory
from callsec_ari.runtime.bus import EventBus
from callsec_ari.store.context import Store
from callsec_ari.verification.delivery.base import LatencyStats
from callsec_ari.web import approvals, captures, metrics, routes, sse
from callsec_ari.web.cluster import forwarding
from callsec_ari.web.customer import NameCache
from callsec_ari.web.deps import AriLink, CaptureService, WebDeps
from callsec_ari.web.guard import DEPS, Handler, register
from callsec_ari.web.security import security_headers

log = logging.getLogger(__name__)

HTTP_ERROR_IDS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                  405: "method_not_allowed", 413: "payload_too_large",
                  415: "unsupported_media_type"}


def error_response(status: int, error_id: str, message: str,
                   details: dict[str, Any] | None = None) -> web.Response:
    return web.json_response({"error_id": error_id, "message": message,
                              "details": details or {}}, status=status)


def _from_callsec(exc: CallsecError) -> web.Response:
    response = web.json_response(exc.to_json(), status=exc.status)
    if isinstance(exc, TooManyAttempts):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def _body_limit(max_bytes: int) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        length = request.content_length
        if length is not None and length > max_bytes:
            return error_response(413, "payload_too_large",
                                  f"the body exceeds {max_bytes} bytes",
                                  {"max_body_bytes": max_bytes})
        return await handler(request)
    return middleware


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except CallsecError as exc:
        if exc.status >= 500:
            log.warning("%s %s failed: %s", request.method, request.path, exc.error_id,
                        extra={"call_id": "-"})
        return _from_callsec(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error_id = HTTP_ERROR_IDS.get(exc.status, "http_error")
        return error_response(exc.status, error_id, exc.reason)
    except Exception:  # the last resort: a JSON 500, never a traceback to the client
        log.exception("%s %s crashed", request.method, request.path, extra={"call_id": "-"})
        return error_response(500, "internal_error", "internal error")


async def _desk(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(request.app[DEPS].static_dir / "index.html")


def build_web_app(deps: WebDeps) -> web.Application:
    revealable_kinds(deps.web.reveal_kinds)  # a bad [web] reveal_kinds fails at start-up
    app = web.Application(client_max_size=deps.web.max_body_bytes,
                          middlewares=[errors, _body_limit(deps.web.max_body_bytes),
                                       forwarding(lambda r: r.app[DEPS].forwarder)])
    app[DEPS] = deps
    app[sse.STREAMS] = set()
    app.on_response_prepare.append(security_headers(deps.web.secure_cookies))
    app.on_shutdown.append(sse.on_shutdown)
    register(app, {**routes.GUARDED, **captures.GUARDED, **approvals.GUARDED,
                   **sse.GUARDED},
             {**routes.OWN, **metrics.OWN})
    app.router.add_get("/", _desk)
    app.router.add_static("/static/", deps.static_dir, show_index=False,
                          follow_symlinks=False)
    return app


class WebServer:
    """Serves the app on ``host:port`` until cancelled (``port=0``: any free port)."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.started = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        for address in self._runner.addresses:
            if isinstance(address, tuple):
                self.port = int(address[1])
                break
        self.started.set()
        log.info("HTTP API and agent desk on http://%s:%s/", self.host, self.port,
                 extra={"call_id": "-"})

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def serve(self) -> None:
        """Start, then wait until cancelled; always cleans up."""
        try:
            await self.start()
            await asyncio.Event().wait()
        finally:
            await self.stop()


def build_web_server(settings: Settings, store: Store, *, calls: CallDirectory,
                     bus: EventBus, ari: Sequence[AriLink] = (),
                     latency: LatencyStats | None = None,
                     captures: CaptureService | None = None,
                     registry: CollectorRegistry | None = None) -> tuple[WebServer, WebDeps]:
    """Wire the web layer from the store (users, sessions, audit) and the runtime."""
    users = UserStore(store.db, store.keys, store.audit,
                      issuer=settings.verification.company_name)
    auth = Auth(store.db, users, store.audit, settings.web,
                remote_key=store.keyring.blind_index_key())
    deps = WebDeps(web=settings.web, auth=auth, users=users, audit=store.audit, db=store.db,
                   calls=calls, bus=bus, ari=ari, latency=latency, captures=captures,
                   registry=registry,
                   customer_names=NameCache(lambda ref: store.customers.get(ref).name.full))
    return WebServer(build_web_app(deps), settings.web.host, settings.web.port), deps
