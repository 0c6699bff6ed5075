"""This node in the cluster: its heartbeat, its calls in the registry, the others' calls.

:class:`ClusterNode` is a dispatcher observer: a call's start, each change of what the
registry shows (flow, state, agent endpoint, customer ref, capture id) and its end are queued
and written by one task in batches (one transaction per batch, off the caller's path; a
database outage keeps the batch for the next try). The same task's heartbeat refreshes this
node's row and reads the registry back, so the web layer lists the calls of every node and
knows each one's owner without a query per request (:meth:`remote_call`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.samples import Sample

from callsec_ari.config.sections import ClusterSettings
from callsec_ari.core.commands import Command
from callsec_ari.core.errors import CallsecError
from callsec_ari.core.ports import CallHandle
from callsec_ari.runtime.dispatcher import Observer
from callsec_ari.runtime.metrics import flow_of
from callsec_ari.store.cluster import ClusterCall, ClusterStore, Node
from callsec_ari.store.models import utcnow

log = logging.getLogger(__name__)
_NO_CALL = {"call_id": "-"}
#: After the first change, the registry writer waits this long for more before it writes:
#: one statement for the changes of many calls. Written at once, a ramp of 250 calls made
#: about four writes per call (``make bench``, #17); the listing on other nodes is this much
#: later, a heartbeat's age is not.
GATHER_SECONDS = 0.2
#: This node's stale registry rows are looked for at the first heartbeat and every this many.
STALE_CHECK_BEATS = 10


@dataclass(frozen=True, slots=True)
class Shown:
    """What the registry shows of a call (never a digit, code or number)."""

    flow: str
    state: str
    channel_id: str
    agent_endpoint: str | None
    customer_ref: str | None
    capture_id: str | None


def shown(call: CallHandle) -> Shown:
    ctx = call.context
    return Shown(flow=flow_of(call), state=str(ctx.stage or call.flow.state_name).lower()[:64],
                 channel_id=ctx.channel_id or call.call_id, agent_endpoint=ctx.agent_endpoint,
                 customer_ref=ctx.customer_ref, capture_id=ctx.capture)


class ClusterNode:
    """Heartbeat and call registry of this node (an :class:`Observer` of the dispatcher)."""

    def __init__(self, store: ClusterStore, settings: ClusterSettings, stasis_app: str) -> None:
        self.store = store
        self.settings = settings
        self.node_id = settings.node()
        self.stasis_app = stasis_app
        self.started_at = utcnow()
        #: call id -> what to write (None: finished); drained by :meth:`_write_loop`
        self._pending: dict[str, ClusterCall | None] = {}
        self._shown: dict[str, Shown] = {}
        self._started: dict[str, datetime] = {}
        self._wake = asyncio.Event()
        #: The registry as last read: other nodes' calls and every node.
        self._remote: dict[str, ClusterCall] = {}
        self.nodes: list[Node] = []
        self.read_at: datetime | None = None
        self._beats = 0

    # -- the dispatcher's observer --------------------------------------------------------
    def call_started(self, call: CallHandle) -> None:
        self._started[call.call_id] = utcnow()
        self._changed(call)

    def command_sent(self, call: CallHandle, command: Command, since_key: float | None,
                     now: float) -> None:
        self._changed(call)

    def call_finished(self, call: CallHandle, now: float) -> None:
        self._shown.pop(call.call_id, None)
        self._started.pop(call.call_id, None)
        self._pending[call.call_id] = None
        self._wake.set()

    def _changed(self, call: CallHandle) -> None:
        now = shown(call)
        if self._shown.get(call.call_id) == now:
            return
        self._shown[call.call_id] = now
        self._pending[call.call_id] = ClusterCall(
            call_id=call.call_id, node_id=self.node_id, flow=now.flow, state=now.state,
            channel_id=now.channel_id, agent_endpoint=now.agent_endpoint,
            customer_ref=now.customer_ref, capture_id=now.capture_id,
            started_at=self._started.get(call.call_id))
        self._wake.set()

    # -- what other nodes run -------------------------------------------------------------
    def remote_call(self, call_id: str) -> ClusterCall | None:
        """``call_id`` as last read from the registry, when another node owns it."""
        return self._remote.get(call_id)

    def remote_calls(self) -> list[ClusterCall]:
        return list(self._remote.values())

    def node(self, node_id: str) -> Node | None:
        return next((n for n in self.nodes if n.node_id == node_id), None)

    async def owner_of(self, call_id: str) -> ClusterCall | None:
        """The registry row of ``call_id`` if another node owns it (read now when the
        last read does not know it: a call that started since)."""
        known = self._remote.get(call_id)
        if known is not None:
            return known
        try:
            row = await asyncio.to_thread(self.store.call, call_id)
        except CallsecError:
            return None
        return row if row is not None and row.node_id != self.node_id else None

    async def capture_owner(self, capture_id: str) -> ClusterCall | None:
        try:
            row = await asyncio.to_thread(self.store.capture_owner, capture_id)
        except CallsecError:
            return None
        return row if row is not None and row.node_id != self.node_id else None

    # -- tasks ----------------------------------------------------------------------------
    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._write_loop(), name="cluster-registry")
            tg.create_task(self._heartbeat_loop(), name="cluster-heartbeat")

    async def _heartbeat_loop(self) -> None:
        try:
            while True:
                try:
                    await self.store.db.offload(self._beat)
                except CallsecError as exc:
                    log.warning("cluster heartbeat failed: %s", exc.error_id, extra=_NO_CALL)
                await asyncio.sleep(self.settings.heartbeat_seconds)
        finally:
            try:  # a clean stop: the others need not wait dead_after_seconds
                self.store.stopped(self.node_id)
            except CallsecError as exc:
                log.warning("cluster stop not recorded: %s", exc.error_id, extra=_NO_CALL)

    def _beat(self) -> None:
        self.store.heartbeat(self.node_id, advertise_url=self.settings.advertise_url,
                             stasis_app=self.stasis_app, started_at=self.started_at)
        self.nodes = self.store.nodes()
        self._remote = {c.call_id: c for c in self.store.calls(other_than=self.node_id)}
        self.read_at = now = utcnow()
        self._beats += 1
        if self._beats % STALE_CHECK_BEATS == 1:
            self._drop_stale(now)

    def _drop_stale(self, now: datetime) -> None:
        """Remove this node's rows of calls it no longer runs (left by its previous life, or
        adopted and not recovered). This node's own rows are not read at every beat: reading
        them all each second cost a 250-call ramp ~1 ms of CPU per call (``make bench``)."""
        grace = timedelta(seconds=3 * self.settings.dead_after_seconds)
        stale = [call_id for call_id in self.store.untouched(self.node_id, now - grace)
                 if call_id not in self._shown and call_id not in self._pending]
        if stale:
            log.info("%d call(s) this node no longer runs removed from the registry",
                     len(stale), extra=_NO_CALL)
            self.store.write_calls([], stale)

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(GATHER_SECONDS)
            self._wake.clear()
            batch, self._pending = self._pending, {}
            live = [c for c in batch.values() if c is not None]
            gone = [call_id for call_id, c in batch.items() if c is None]
            try:
                await self.store.db.offload(self.store.write_calls, live, gone)
            except CallsecError as exc:
                log.warning("call registry not written (%d calls): %s", len(batch),
                            exc.error_id, extra=_NO_CALL)
                self._pending = {**batch, **self._pending}  # newer news wins
                await asyncio.sleep(self.settings.heartbeat_seconds)
                self._wake.set()

    def counts(self) -> dict[str, int]:
        """Live calls per node, as last read (this node's own: now)."""
        counts: dict[str, int] = {self.node_id: len(self._shown)}
        for call in self._remote.values():
            counts[call.node_id] = counts.get(call.node_id, 0) + 1
        return counts

    def status(self) -> dict[str, Any]:
        """``callsec status``: every node, its heartbeat age, liveness and live calls."""
        now, counts = utcnow(), self.counts()
        return {"node_id": self.node_id, "advertise_url": self.settings.advertise_url,
                "read_at": self.read_at.isoformat() if self.read_at else None,
                "nodes": [{"node_id": n.node_id, "advertise_url": n.advertise_url,
                           "stasis_app": n.stasis_app,
                           "heartbeat_age_seconds": round((now - n.heartbeat_at)
                                                          .total_seconds(), 1),
                           "alive": n.alive(now, self.settings.dead_after_seconds),
                           "stopped": n.stopped_at is not None,
                           "calls": counts.get(n.node_id, 0)} for n in self.nodes]}

    def collect(self) -> Iterable[Metric]:
        """``callsec_cluster_*``: each node's heartbeat age and live calls, as last read."""
        now = utcnow()
        age = GaugeMetricFamily("callsec_cluster_heartbeat_age_seconds",
                                "Seconds since each node's last heartbeat", labels=["peer"])
        calls = GaugeMetricFamily("callsec_cluster_calls", "Live calls per owning node",
                                  labels=["peer"])
        counts = self.counts()
        for node in self.nodes:
            age.add_metric([node.node_id], (now - node.heartbeat_at).total_seconds())
        for node_id, count in sorted(counts.items()):
            calls.add_metric([node_id], count)
        return [age, calls]


class Observers:
    """Several dispatcher observers as one (metrics and the cluster registry)."""

    def __init__(self, *observers: Observer | None) -> None:
        self._observers = [o for o in observers if o is not None]

    def call_started(self, call: CallHandle) -> None:
        for observer in self._observers:
            observer.call_started(call)

    def command_sent(self, call: CallHandle, command: Command, since_key: float | None,
                     now: float) -> None:
        for observer in self._observers:
            observer.command_sent(call, command, since_key, now)

    def call_finished(self, call: CallHandle, now: float) -> None:
        for observer in self._observers:
            observer.call_finished(call, now)


class NodeRegistry(CollectorRegistry):
    """A metrics registry whose every sample carries ``node="<node id>"`` (one scrape
    config for all nodes; the series of two nodes never mix)."""

    def __init__(self, node_id: str) -> None:
        super().__init__()
        self.node_id = node_id

    def collect(self) -> Iterable[Metric]:
        for metric in super().collect():
            labelled = Metric(metric.name, metric.documentation, metric.type, metric.unit)
            labelled.samples = [Sample(s.name, {**s.labels, "node": self.node_id}, s.value,
                                       s.timestamp, s.exemplar) for s in metric.samples]
            yield labelled
