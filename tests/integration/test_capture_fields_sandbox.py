"""Field-level control on real SIP calls (issue #18): the caller mistypes the expiry (a valid
but wrong date), and the agent re-asks that one field over the HTTP API while the CVV is being
asked, or the caller presses ``*`` at the CVV prompt. The capture is not restarted: one stored
capture results, whose expiry is the corrected one, with one vault item per stored field (none
for the wrong expiry, none for the CVV). The agent's phone receives no DTMF."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from tests.harness.agent import AgentPhones
from tests.harness.carrier import Carrier
from tests.harness.sandbox import Sandbox
from tests.integration.capture_env import (
    LiveCall,
    Product,
    connected_call,
    expiry,
    rare_number,
    running_product,
    type_fields,
    visa,
)

pytestmark = pytest.mark.sandbox
CARD = ("card_number", "expiry", "cvv")


@pytest.fixture(scope="module")
async def product(sandbox: Sandbox) -> AsyncIterator[Product]:
    async with running_product("capture-fields") as running:
        yield running


def rows(product: Product, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{product.workdir / 'callsec.db'}?mode=ro", uri=True) as conn:
        return list(conn.execute(sql, args))


async def nth_stage(live: LiveCall, capture_id: str, stage: str, field: str,
                    n: int) -> dict[str, Any]:
    """The ``n``-th (1-based) ``stage`` event of ``field``."""
    def seen() -> list[dict[str, Any]]:
        return [e for e in live.sse.capture_events(capture_id)
                if e.get("stage") == stage and e.get("field") == field]
    await live.sse.wait(lambda _: len(seen()) >= n)
    return seen()[n - 1]


async def check_one_stored_capture(product: Product, live: LiveCall, capture_id: str,
                                   card: str, good: str) -> None:
    finished = await live.sse.wait_stage(capture_id, "finished")
    assert finished["result"] == "captured"
    assert finished["fields_valid"] == "card_number,expiry,cvv"
    assert finished["brand"] == "visa" and finished["last4"] == card[-4:]
    stored = await product.desk.wait_capture(capture_id, "captured")
    assert stored["fields"]["expiry"] == {"length": 4, "valid": True}
    assert set(stored["vault_refs"]) == {"card_number", "expiry"}
    assert rows(product, "SELECT capture_id FROM captures WHERE call_id = ?",
                live.call_id) == [(capture_id,)]
    vault = rows(product, "SELECT ref, kind FROM vault_items WHERE call_id = ?", live.call_id)
    # one item per stored field: the wrong expiry was never stored, the CVV never is
    assert sorted(vault) == sorted((ref, kind) for kind, ref in stored["vault_refs"].items())
    assert live.agent.dtmf == []
    log = product.proc.log_text()
    for value in (card, good):
        assert value not in log


async def test_agent_reasks_a_wrong_expiry_over_the_api_and_one_capture_is_stored(
        product: Product, carrier: Carrier, agents: AgentPhones, ari_a: aiohttp.ClientSession,
        register_secret: Callable[[str], None]) -> None:
    card, wrong, good, cvv = visa(), expiry(5), expiry(2), rare_number(3)
    register_secret(card)
    desk = product.desk
    async with connected_call(desk, carrier, agents, ari_a, product.sse_dir) as live:
        capture_id = await desk.request_capture(live.call_id, CARD)
        await type_fields(live, capture_id, [("card_number", card + "#"), ("expiry", wrong)])
        await nth_stage(live, capture_id, "field_started", "cvv", 1)
        status, body = await desk.call(
            "POST", f"/api/v1/calls/{live.call_id}/captures/{capture_id}/fields/expiry",
            {"action": "rerequest"})
        assert status == 202, body
        await nth_stage(live, capture_id, "field_requested", "expiry", 1)
        await nth_stage(live, capture_id, "field_started", "expiry", 2)
        await asyncio.sleep(0.4)
        await live.carrier.send_dtmf(good, between_ms=120, duration_ms=120)
        await nth_stage(live, capture_id, "field_started", "cvv", 2)
        await asyncio.sleep(0.4)
        await live.carrier.send_dtmf(cvv, between_ms=120, duration_ms=120)
        await check_one_stored_capture(product, live, capture_id, card, good)


async def test_caller_presses_star_at_the_cvv_prompt_to_reenter_the_expiry(
        product: Product, carrier: Carrier, agents: AgentPhones, ari_a: aiohttp.ClientSession,
        register_secret: Callable[[str], None]) -> None:
    card, wrong, good, cvv = visa(), expiry(5), expiry(2), rare_number(3)
    register_secret(card)
    desk = product.desk
    async with connected_call(desk, carrier, agents, ari_a, product.sse_dir) as live:
        capture_id = await desk.request_capture(live.call_id, CARD)
        await type_fields(live, capture_id, [("card_number", card + "#"), ("expiry", wrong)])
        await nth_stage(live, capture_id, "field_started", "cvv", 1)
        await asyncio.sleep(0.4)
        await live.carrier.send_dtmf("*", between_ms=120, duration_ms=120)
        await nth_stage(live, capture_id, "field_started", "expiry", 2)
        await asyncio.sleep(0.4)
        await live.carrier.send_dtmf(good, between_ms=120, duration_ms=120)
        await nth_stage(live, capture_id, "field_started", "cvv", 2)
        await asyncio.sleep(0.4)
        await live.carrier.send_dtmf(cvv, between_ms=120, duration_ms=120)
        await check_one_stored_capture(product, live, capture_id, card, good)


async def test_agent_reasks_the_expiry_after_the_capture_finished_and_it_is_replaced(
        product: Product, carrier: Carrier, agents: AgentPhones, ari_a: aiohttp.ClientSession,
        register_secret: Callable[[str], None]) -> None:
    card, wrong, good, cvv = visa(), expiry(5), expiry(2), rare_number(3)
    register_secret(card)
    desk = product.desk
    async with connected_call(desk, carrier, agents, ari_a, product.sse_dir) as live:
        capture_id = await desk.request_capture(live.call_id, CARD)
        await type_fields(live, capture_id, [("card_number", card + "#"), ("expiry", wrong),
                                             ("cvv", cvv)])
        await live.sse.wait_stage(capture_id, "finished")
        first = (await desk.wait_capture(capture_id, "captured"))["vault_refs"]
        await asyncio.sleep(4.0)  # "capture complete" + beep: the caller is back with the agent
        status, body = await desk.call(
            "POST", f"/api/v1/calls/{live.call_id}/captures/{capture_id}/fields/expiry",
            {"action": "rerequest"})
        assert status == 202, body
        await nth_stage(live, capture_id, "field_requested", "expiry", 1)
        await nth_stage(live, capture_id, "field_started", "expiry", 2)
        await asyncio.sleep(0.4)
        await live.carrier.send_dtmf(good, between_ms=120, duration_ms=120)
        finished = [e for e in live.sse.capture_events(capture_id)
                    if e.get("stage") == "finished"]
        async with asyncio.timeout(15):
            while len(finished) < 2:
                await asyncio.sleep(0.2)
                finished = [e for e in live.sse.capture_events(capture_id)
                            if e.get("stage") == "finished"]
        assert finished[-1]["result"] == "captured"
        assert finished[-1]["fields_valid"] == "card_number,expiry,cvv"
        stored = await desk.wait_capture(capture_id, "captured")
        assert stored["vault_refs"]["card_number"] == first["card_number"]
        assert stored["vault_refs"]["expiry"] != first["expiry"]
        await check_one_stored_capture(product, live, capture_id, card, good)
