"""This node in the registry (SQLite and PostgreSQL): the dispatcher's observer writes a call's
start, changes and end (no digit), a row this node left in an earlier life is removed, the
heartbeat keeps the node alive and reads the other
nodes' calls back, a clean stop is recorded, and /metrics carries the node label."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from prometheus_client import generate_latest

from callsec_ari.config.sections import ClusterSettings
from callsec_ari.core.commands import Command, Publish
from callsec_ari.core.events import CallStarted, Event, TimerExpired
from callsec_ari.core.ports import CallContext
from callsec_ari.runtime.bus import EventBus
from callsec_ari.runtime.cluster import ClusterNode, NodeRegistry, Observers
from callsec_ari.runtime.dispatcher import Dispatcher
from callsec_ari.runtime.executor import CallExecutor
from callsec_ari.runtime.metrics import CallMetrics
from callsec_ari.store.cluster import ClusterCall, ClusterStore
from callsec_ari.store.context import Store
from callsec_ari.store.models import utcnow
from tests.integration.web_env import HoldFlow

pytestmark = pytest.mark.asyncio


class EndingFlow(HoldFlow):
    """Bridged until a timer named ``hangup`` fires."""

    ended = False

    @property
    def done(self) -> bool:
        return self.ended

    def handle(self, event: Event) -> list[Command]:
        self.ended = isinstance(event, TimerExpired) and event.name == "hangup"
        return super().handle(event)


async def _until(check: object, seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not check():  # type: ignore[operator]
            await asyncio.sleep(0.02)


async def test_calls_reach_the_registry_and_the_node_heart_beats(store: Store) -> None:
    cluster_store = ClusterStore(store.db)
    settings = ClusterSettings(node_id="n1", heartbeat_seconds=0.1, dead_after_seconds=1.0)
    node = ClusterNode(cluster_store, settings, "callsec")
    registry = NodeRegistry("n1")
    registry.register(node)
    bus = EventBus()
    executor = CallExecutor()
    executor.register(Publish, bus.handle)
    dispatcher = Dispatcher(executor, observer=Observers(CallMetrics(registry), node))
    cluster_store.write_calls([ClusterCall("R-1", "n2", "connect", "bridged", "R-1")], [])
    cluster_store.write_calls([ClusterCall("OLD-1", "n1", "verify", "collecting", "OLD-1")], [],
                              utcnow() - timedelta(seconds=60))  # this node's last life
    cluster_store.heartbeat("n2", advertise_url="http://n2:8080", stasis_app="callsec",
                            started_at=node.started_at)
    async with asyncio.TaskGroup() as tg:
        runner = tg.create_task(dispatcher.run())
        beating = tg.create_task(node.run())
        await asyncio.sleep(0)
        call = dispatcher.start_call("C-1", EndingFlow("C-1"), CallStarted(flow="connect"),
                                     CallContext(channel_id="chan-1", flow="connect",
                                                 caller_masked="+49…78",
                                                 endpoints={"agent": "PJSIP/agent100"}))
        await _until(lambda: cluster_store.call("C-1") is not None)
        row = cluster_store.call("C-1")
        assert row is not None and (row.node_id, row.flow, row.state, row.channel_id,
                                    row.agent_endpoint) == \
            ("n1", "connect", "bridged", "chan-1", "PJSIP/agent100")
        call.context.customer_ref = "C-77"
        call.context.stage = "capturing"
        node.command_sent(call, Publish(topic="call", payload=(("stage", "capturing"),)), None,
                          0.0)
        await _until(lambda: (cluster_store.call("C-1") or row).state == "capturing")
        assert (cluster_store.call("C-1") or row).customer_ref == "C-77"
        await _until(lambda: node.remote_call("R-1") is not None)
        await _until(lambda: cluster_store.call("OLD-1") is None)  # stale: removed
        status = node.status()
        assert {n["node_id"]: (n["calls"], n["alive"]) for n in status["nodes"]} == \
            {"n1": (1, True), "n2": (1, True)}
        text = generate_latest(registry).decode()
        assert 'callsec_cluster_calls{node="n1",peer="n2"} 1.0' in text
        assert 'callsec_calls_started_total{flow="connect",node="n1"} 1.0' in text
        dispatcher.post("C-1", TimerExpired(name="hangup", at=0.0))
        await _until(lambda: cluster_store.call("C-1") is None)
        beating.cancel()
        dispatcher.stop()
    assert runner.done()
    n1 = cluster_store.node("n1")
    assert n1 is not None and n1.stopped_at is not None  # a clean stop is recorded
    dump = repr(cluster_store.calls())
    assert "+49" not in dump
