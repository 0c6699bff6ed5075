"""A dead node's calls, taken over by a survivor with the restart recovery (#16.4).

Every callsec node runs its calls in its own Stasis app (``[ari] app``: ``callsec-node1``,
``callsec-node2``, ...; the dialplan deals new calls to the apps in turn and skips an app whose
node is down, see ``dialplan/extensions_callsec.conf``). When a node dies its ARI websocket
closes, but its callers stay in Stasis of its app and its bridges stay up: exactly what a
restarted callsec finds (:mod:`~callsec_ari.ari.recovery`, :mod:`~callsec_ari.ari.stranded`).

So a survivor takes over by *being* the restarted node: once the node has not heart-beaten for
``[cluster] dead_after_seconds`` and Asterisk still holds channels in its app, the first alive
node by node id (the same choice on every node, no vote) moves the dead node's registry rows to
itself (:meth:`~callsec_ari.store.cluster.ClusterStore.adopt`) and registers the dead node's app
on each of its Asterisk servers with one more websocket (:class:`AppLease`). The ordinary
restart recovery then runs on it: a call in a capture goes back to its agent with the capture
cancelled and nothing stored, a caller in verification hears the apology and starts again.

The lease ends when the calls it adopted have all ended, when the dead node heart-beats again
(a restarted node registers its app itself) or when Asterisk drops the websocket; it is never
reconnected, so a survivor and a restarted node do not take the app from each other in turns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence

from callsec_ari.ari import models as m
from callsec_ari.ari.adapter import AriAdapter, FlowFactory
from callsec_ari.ari.client import AriClient
from callsec_ari.ari.errors import AriNotFound
from callsec_ari.ari.operations import segment
from callsec_ari.config.sections import AriSettings
from callsec_ari.core.errors import CallsecError
from callsec_ari.core.ports import CallHandle
from callsec_ari.runtime.dispatcher import Dispatcher
from callsec_ari.store.cluster import ClusterStore, Node
from callsec_ari.store.models import utcnow

log = logging.getLogger(__name__)

def choose(nodes: Sequence[Node], *, me: str, own_apps: Collection[str], held: Collection[str],
           now_alive: Callable[[Node], bool]) -> list[Node]:
    """Pure: the dead nodes this node takes over -- none unless it is the first alive node by
    node id; never its own app or an app it already holds."""
    alive = sorted(node.node_id for node in nodes if now_alive(node))
    if not alive or alive[0] != me:
        return []
    return [node for node in nodes if not now_alive(node) and node.node_id != me
            and node.stasis_app and node.stasis_app not in own_apps
            and node.stasis_app not in held]


async def app_has_channels(client: AriClient, app: str) -> bool:
    """Asterisk still holds channels in ``app`` (a dead node's calls)."""
    try:
        listing = await client.request("GET", f"/applications/{segment(app)}")
    except AriNotFound:
        return False
    return isinstance(listing, Mapping) and bool(listing.get("channel_ids"))


class Takeover:
    """Watches the heartbeats and leases the apps of dead nodes (one task per lease)."""

    def __init__(self, cluster: ClusterStore, *, me: str, own_app: str, every: float,
                 dead_after: float, clients: Sequence[AriClient],
                 lease: Callable[[Node], Awaitable[None]]) -> None:
        self.cluster = cluster
        self.me = me
        self.own_app = own_app
        self.every = every
        self.dead_after = dead_after
        self.clients = clients
        self.lease = lease
        self.held: set[str] = set()

    def alive(self, node: Node) -> bool:
        return node.alive(utcnow(), self.dead_after)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            while True:
                await asyncio.sleep(self.every)
                try:
                    found = await self.candidates()
                except CallsecError as exc:  # AriError, DatabaseUnavailable
                    log.warning("cluster: cannot look for dead nodes: %s", exc.error_id,
                                extra={"call_id": "-"})
                    continue
                for node in found:
                    self.held.add(node.stasis_app)
                    tg.create_task(self._lease(node), name=f"takeover-{node.node_id}")

    async def candidates(self) -> list[Node]:
        nodes = await asyncio.to_thread(self.cluster.nodes)
        chosen = choose(nodes, me=self.me, own_apps={self.own_app}, held=self.held,
                        now_alive=self.alive)
        out: list[Node] = []
        for node in chosen:
            if any([await app_has_channels(c, node.stasis_app) for c in self.clients]):
                out.append(node)
        return out

    async def _lease(self, node: Node) -> None:
        try:
            calls = await asyncio.to_thread(self.cluster.adopt, node.node_id, self.me)
            log.warning("cluster: node %s stopped heart-beating; taking over its app %s "
                        "(%d registered call(s))", node.node_id, node.stasis_app, len(calls),
                        extra={"call_id": "-"})
            await self.lease(node)
        finally:
            self.held.discard(node.stasis_app)

    def node_back(self, node_id: str) -> Callable[[], Awaitable[bool]]:
        """An async check: the node heart-beats again."""
        async def back() -> bool:
            found = await asyncio.to_thread(self.cluster.node, node_id)
            return found is not None and self.alive(found)
        return back


async def hold_app(client: AriClient, adapter: AriAdapter, *,
                   released: Callable[[], Awaitable[bool]], every: float) -> None:
    """Run ``adapter`` on ``client`` (a websocket for the dead node's app) until its calls
    have ended or ``released()``; a dropped websocket ends the lease (no reconnect)."""
    recovered = asyncio.Event()

    async def events() -> None:
        async for event in client.events():
            if isinstance(event, m.Disconnected):
                return
            await adapter.on_event(event)
            if isinstance(event, m.Connected):
                recovered.set()

    async with asyncio.TaskGroup() as tg:
        runner = tg.create_task(events(), name=f"lease-{client.name}")
        while not runner.done():
            await asyncio.sleep(every)
            if recovered.is_set() and (not adapter.channels or await released()):
                break
        runner.cancel()
    log.warning("cluster: lease of %s ended", ",".join(client.apps), extra={"call_id": "-"})


async def lease_app(ari: AriSettings, node: Node, *, dispatcher: Dispatcher,
                    flows: Mapping[str, FlowFactory], hooks: list[Callable[[CallHandle], None]],
                    released: Callable[[], Awaitable[bool]], every: float) -> None:
    """Register ``node``'s app on each of this node's Asterisk servers and hold it
    (:func:`hold_app`) with an :class:`AriAdapter` that shares this node's dispatcher."""
    async def one(index: int, url: str) -> None:
        server = f"asterisk{index + 1}-{node.stasis_app}"
        async with AriClient(url, ari.username, ari.password, [node.stasis_app], name=server,
                             request_timeout=ari.request_timeout_seconds,
                             reconnect_min=ari.reconnect_min_seconds,
                             reconnect_max=ari.reconnect_max_seconds,
                             app_check=ari.app_check_seconds) as client:
            if not await app_has_channels(client, node.stasis_app):
                return
            adapter = AriAdapter(client, dispatcher, flows, server=server, app=node.stasis_app)
            hooks.append(adapter.forget)
            try:
                await hold_app(client, adapter, released=released, every=every)
            finally:
                hooks.remove(adapter.forget)

    async with asyncio.TaskGroup() as tg:
        for index, url in enumerate(ari.urls):
            tg.create_task(one(index, url), name=f"lease-{node.node_id}-{index + 1}")
