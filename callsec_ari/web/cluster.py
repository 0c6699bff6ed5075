"""Any node serves every call: a command for a call another node owns is forwarded to it.

A call this node does not run but the registry names another, live node as the owner of is
checked here first (sign-in, role, and the call's agent from the registry: a call the user may
not see answers 404 as if it did not exist); then the guard raises :class:`ForwardTo` and the
middleware sends the request (method, path, query, body and the user's own credentials: bearer
token or session cookie with its CSRF header) to the owner's ``[cluster] advertise_url``; the
owner's status and JSON come back unchanged. The owner checks everything again, as for a
request of its own. A route by capture id is forwarded before any check when the capture runs
on another node (a reveal's fresh TOTP code is then used once, by the owner).

The hop is signed with the nodes' shared key (``[cluster] secret``): ``Callsec-Node: <from>``
and ``Callsec-Node-Signature: t=<unix>,n=<nonce>,v1=<HMAC-SHA256 hex>`` over the time, nonce,
sender, receiver, method, path with query and the body's SHA-256. The receiver refuses a
request with a bad or missing MAC, for another node, older than :data:`WINDOW_SECONDS` or
whose nonce it has seen (a replay), with 401 ``node_request_refused``; a signed request is
never forwarded again. The live events of a call (``.../events``) are not forwarded: they come
to every node over the PostgreSQL bus (``runtime/pgbus.py``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import aiohttp
from aiohttp import web
from yarl import URL

from callsec_ari.core.errors import CallsecError, ErrorId
from callsec_ari.core.signing import mac_hex
from callsec_ari.store.cluster import ClusterCall, Node
from callsec_ari.store.models import utcnow

log = logging.getLogger(__name__)
NODE_HEADER = "Callsec-Node"
SIGNATURE_HEADER = "Callsec-Node-Signature"
#: A signed node request older (or newer) than this is refused.
WINDOW_SECONDS = 30.0
#: Request headers passed on to the owner (the user's credentials and the body's type).
PASSED_HEADERS = ("Authorization", "Cookie", "X-CSRF-Token", "Content-Type", "Accept")
_TIMEOUT = aiohttp.ClientTimeout(total=15.0)
#: Set on a request another node signed and forwarded (it is answered here): a
#: ``web.RequestKey`` where aiohttp has it (3.12+), a plain key on the older ones setup.cfg allows.
_REQUEST_KEY = getattr(web, "RequestKey", None)
FORWARDED: Any = (_REQUEST_KEY("callsec_node_forwarded", bool) if _REQUEST_KEY is not None
                  else "callsec_node_forwarded")


class NodeRequestRefused(CallsecError):
    error_id = ErrorId.NODE_REQUEST_REFUSED
    status = 401


class NodeUnavailable(CallsecError):
    error_id = ErrorId.NODE_UNAVAILABLE
    status = 503


class ClusterView(Protocol):
    """What the web layer knows of the other nodes (``runtime.cluster.ClusterNode``)."""

    node_id: str

    def remote_calls(self) -> list[ClusterCall]: ...

    def node(self, node_id: str) -> Node | None: ...

    async def owner_of(self, call_id: str) -> ClusterCall | None: ...

    async def capture_owner(self, capture_id: str) -> ClusterCall | None: ...


def _mac(secret: bytes, stamp: str, nonce: str, sender: str, receiver: str, method: str,
         path: str, body: bytes) -> str:
    message = "\n".join((stamp, nonce, sender, receiver, method.upper(), path,
                         hashlib.sha256(body).hexdigest()))
    return mac_hex(secret, message.encode())


class NodeAuth:
    """Signs this node's requests to another and checks the requests of others."""

    def __init__(self, secret: bytes, node_id: str, *,
                 window: float = WINDOW_SECONDS) -> None:
        self.secret = secret
        self.node_id = node_id
        self.window = window
        self._seen: dict[str, float] = {}  # nonce -> when it may be forgotten

    def sign(self, receiver: str, method: str, path: str, body: bytes,
             now: float | None = None) -> dict[str, str]:
        stamp, nonce = str(int(time.time() if now is None else now)), secrets.token_hex(16)
        mac = _mac(self.secret, stamp, nonce, self.node_id, receiver, method, path, body)
        return {NODE_HEADER: self.node_id, SIGNATURE_HEADER: f"t={stamp},n={nonce},v1={mac}"}

    def check(self, headers: Mapping[str, str], method: str, path: str, body: bytes,
              now: float | None = None) -> str:
        """The sending node's id; :class:`NodeRequestRefused` unless the MAC, time and nonce
        check out."""
        now = time.time() if now is None else now
        sender = str(headers.get(NODE_HEADER, ""))
        try:
            parts = dict(p.split("=", 1) for p in str(headers.get(SIGNATURE_HEADER, ""))
                         .split(","))
            stamp, nonce, given = parts["t"], parts["n"], parts["v1"]
            at = int(stamp)
        except (KeyError, ValueError):
            raise NodeRequestRefused("node request not signed") from None
        expected = _mac(self.secret, stamp, nonce, sender, self.node_id, method, path, body)
        if not self.secret or not sender or not hmac.compare_digest(given, expected):
            raise NodeRequestRefused("node request signature does not match")
        if abs(now - at) > self.window:
            raise NodeRequestRefused("node request too old")
        self._seen = {n: until for n, until in self._seen.items() if until > now}
        if nonce in self._seen:
            raise NodeRequestRefused("node request replayed")
        self._seen[nonce] = now + 2 * self.window
        return sender


class Forwarder:
    """Finds the owner of a request's call and forwards the request to it."""

    def __init__(self, cluster: ClusterView, auth: NodeAuth, *, dead_after: float) -> None:
        self.cluster = cluster
        self.auth = auth
        self.dead_after = dead_after
        self._session: aiohttp.ClientSession | None = None

    def live_node(self, row: ClusterCall) -> Node:
        """The node that owns ``row``; :class:`NodeUnavailable` when it is not alive (its calls
        are about to be adopted by a survivor)."""
        node = self.cluster.node(row.node_id)
        if node is None or not node.alive(utcnow(), self.dead_after):
            raise NodeUnavailable("the node running this call is not reachable",
                                  details={"node": row.node_id})
        return node

    async def capture_node(self, request: web.Request) -> Node | None:
        """For a route by capture id only: the node running that capture, if another."""
        info = request.match_info
        if "capture_id" not in info or "call_id" in info:
            return None
        row = await self.cluster.capture_owner(info["capture_id"])
        return None if row is None else self.live_node(row)

    async def forward(self, request: web.Request, node: Node) -> web.Response:
        if not self.auth.secret:
            raise NodeUnavailable("another node runs this call; forwarding needs [cluster]"
                                  " secret", details={"node": node.node_id})
        body, path = await request.read(), request.raw_path
        headers = {h: request.headers[h] for h in PASSED_HEADERS if h in request.headers}
        headers.update(self.auth.sign(node.node_id, request.method, path, body))
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=_TIMEOUT)
        url = URL(node.advertise_url.rstrip("/") + path, encoded=True)
        try:
            async with self._session.request(request.method, url, data=body or None,
                                             headers=headers, allow_redirects=False) as resp:
                payload = await resp.read()
                content_type = resp.headers.get("Content-Type", "application/json")
                status = resp.status
        except (aiohttp.ClientError, TimeoutError):
            log.warning("forwarding %s %s to node %s failed", request.method, request.path,
                        node.node_id, extra={"call_id": request.match_info.get("call_id", "-")})
            raise NodeUnavailable("the node running this call is not reachable",
                                  details={"node": node.node_id}) from None
        log.info("%s %s forwarded to node %s: %d", request.method, request.path, node.node_id,
                 status, extra={"call_id": request.match_info.get("call_id", "-")})
        response = web.Response(status=status, body=payload)
        response.headers["Content-Type"] = content_type
        response.headers[NODE_HEADER] = node.node_id
        return response

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ForwardTo(Exception):
    """Raised by the guard once the user may use a call that ``row.node_id`` runs."""

    def __init__(self, row: ClusterCall) -> None:
        super().__init__(row.call_id)
        self.row = row


def forwarding(get_forwarder: Callable[[web.Request], Forwarder | None]) -> Any:
    """The middleware (``get_forwarder(request)``: the app's :class:`Forwarder` or None)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        forwarder = get_forwarder(request)
        if forwarder is None:
            return await handler(request)
        if NODE_HEADER in request.headers or SIGNATURE_HEADER in request.headers:
            body = await request.read()
            try:
                sender = forwarder.auth.check(request.headers, request.method,
                                              request.raw_path, body)
            except NodeRequestRefused as exc:
                log.warning("node request %s %s refused: %s", request.method, request.path,
                            exc.message, extra={"call_id": "-"})
                raise
            log.debug("node request from %s", sender, extra={"call_id": "-"})
            request[FORWARDED] = True
            return await handler(request)  # answered here, never forwarded again
        node = await forwarder.capture_node(request)
        if node is not None:
            return await forwarder.forward(request, node)
        try:
            return await handler(request)
        except ForwardTo as exc:
            return await forwarder.forward(request, forwarder.live_node(exc.row))

    return middleware
