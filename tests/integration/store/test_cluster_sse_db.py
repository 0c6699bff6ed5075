"""A desk connected to node n2 follows a call that node n1 runs (#16.3, PostgreSQL): the
stream opens with the call as the registry shows it, relays n1's masked progress events
(over LISTEN/NOTIFY: no typed digit reaches PostgreSQL or the desk) and ends once n1 has
finished the call."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from sqlalchemy import make_url

from callsec_ari.runtime.pgbus import PgBus
from callsec_ari.store.cluster import ClusterStore
from tests.integration.test_cluster_web import two_nodes
from tests.integration.test_web_api import read_events

pytestmark = pytest.mark.asyncio


async def test_a_desk_on_another_node_follows_the_call_masked(tmp_path: Path,
                                                              db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("the nodes' event bus is PostgreSQL's LISTEN/NOTIFY")
    async with two_nodes(tmp_path, db_url) as pair:
        url = make_url(db_url)
        n1_bus = PgBus(url, "n1", pair.one.bus)
        n2_bus = PgBus(url, "n2", pair.two_deps.bus)
        tasks = [asyncio.create_task(b.run()) for b in (n1_bus, n2_bus)]
        try:
            for bus in (n1_bus, n2_bus):
                await asyncio.wait_for(bus.listening.wait(), 10)
            resp = await pair.two.get("/api/v1/calls/C-100/events",
                                      headers=await pair.login("anna"))
            assert resp.status == 200
            (kind, snapshot), = await read_events(resp, 1)
            assert kind == "snapshot" and (snapshot["call_id"], snapshot["node"],
                                           snapshot["agent"]) == ("C-100", "n1", "agent100")
            await asyncio.sleep(0.3)  # n1's sender subscribed
            pair.one.bus.publish("C-102", "capture", {"field": "card_number", "count": 3})
            pair.one.bus.publish("C-100", "capture", {"field": "card_number", "count": 4,
                                                      "dots": "••••",
                                                      "note": "typed 4111111111111111"})
            pair.one.bus.publish("C-100", "capture", {"field": "card_number", "valid": True,
                                                      "brand": "visa", "last_digits": "1111"})
            events = await asyncio.wait_for(read_events(resp, 2), 10)
            assert [e[1]["call_id"] for e in events] == ["C-100", "C-100"]
            assert events[0][1]["dots"] == "••••" and "4111" not in json.dumps(events)
            assert events[1][1]["last_digits"] == "1111"
            call = pair.one.dispatcher.get("C-100")
            assert call is not None
            pair.clusters[0].call_finished(call, 0.0)  # n1 ends it: out of the registry
            async with asyncio.timeout(10):
                while ClusterStore(pair.one.store.db).call("C-100") is not None:
                    await asyncio.sleep(0.05)
            (kind, data), = await asyncio.wait_for(read_events(resp, 1), 10)
            assert (kind, data) == ("end", {"call_id": "C-100"})
            resp.close()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
