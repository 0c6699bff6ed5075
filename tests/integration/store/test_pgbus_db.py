"""The nodes' event bus over PostgreSQL LISTEN/NOTIFY: an event published on one node's bus
reaches the other node's bus (and a desk stream there), once, marked with its origin; what
travels through PostgreSQL is masked (no digit run a caller could have typed)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator

import psycopg
import pytest
from sqlalchemy import make_url

from callsec_ari.runtime.bus import EventBus
from callsec_ari.runtime.pgbus import CHANNEL, PgBus, conninfo

pytestmark = pytest.mark.asyncio
PAN = "4111111111111111"


@pytest.fixture
async def pg(db_url: str) -> AsyncIterator[str]:
    if not db_url.startswith("postgresql"):
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    yield db_url


async def _started(*buses: PgBus) -> list[asyncio.Task[None]]:
    tasks = [asyncio.create_task(b.run()) for b in buses]
    for bus in buses:
        await asyncio.wait_for(bus.listening.wait(), 10)
    return tasks


async def test_events_reach_the_other_node_masked_and_once(pg: str) -> None:
    url = make_url(pg)
    one, two = EventBus(), EventBus()
    n1, n2 = PgBus(url, "n1", one), PgBus(url, "n2", two)
    tasks = await _started(n1, n2)
    raw: list[str] = []
    async with await psycopg.AsyncConnection.connect(conninfo(url), autocommit=True) as spy:
        await spy.execute(f"LISTEN {CHANNEL}")
        try:
            with two.subscribe() as on_two, one.subscribe() as on_one:
                await asyncio.sleep(0.2)  # the senders subscribed before the first event
                one.publish("C-1", "capture", {"stage": "collecting", "entered": 7,
                                               "note": f"typed {PAN}", "last_digits": "1111",
                                               "brand": "visa", "nested": {"pan": PAN}})
                got = await asyncio.wait_for(on_two.get(), 5)
                assert (got.call_id, got.topic, got.origin) == ("C-1", "capture", "n1")
                assert got.payload == {"stage": "collecting", "entered": 7,
                                       "note": "typed <redacted>", "last_digits": "1111",
                                       "brand": "visa"}
                assert (await on_one.get()).origin == ""  # its own, published once
                await asyncio.sleep(0.3)
                assert on_one.empty() and on_two.empty()  # not echoed back, not sent twice
                async for notify in spy.notifies(timeout=1.0):
                    raw.append(notify.payload)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    assert len(raw) == 1 and json.loads(raw[0])["node"] == "n1"
    payload = json.loads(raw[0])["payload"]
    assert PAN not in raw[0] and "411111" not in raw[0]
    assert not re.search(r"\d", json.dumps({k: v for k, v in payload.items()
                                            if k not in ("entered", "last_digits")}))
    assert n1.sent == 1 and n2.received == 1 and one.counters and not two.counters


async def test_a_lost_listener_connection_is_opened_again(pg: str) -> None:
    url = make_url(pg)
    one, two = EventBus(), EventBus()
    n1, n2 = PgBus(url, "n1", one, retry_seconds=0.1), PgBus(url, "n2", two,
                                                              retry_seconds=0.1)
    tasks = await _started(n1, n2)
    try:
        async with await psycopg.AsyncConnection.connect(conninfo(url),
                                                         autocommit=True) as admin:
            await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                " WHERE query LIKE 'LISTEN%%' AND pid <> pg_backend_pid()")
        await asyncio.sleep(0.5)
        await asyncio.wait_for(n2.listening.wait(), 10)
        with two.subscribe() as on_two:
            for _ in range(50):
                one.publish("C-2", "call", {"stage": "verified"})
                try:
                    got = await asyncio.wait_for(on_two.get(), 0.3)
                    break
                except TimeoutError:
                    continue
            assert got.call_id == "C-2" and got.origin == "n1"
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
