"""Signed webhooks from a real call: carrier B calls A's 2100 from a customer's mobile, the
caller types the SMS code (RFC 4733), the real ``callsec run`` connects agent100, the agent asks
for the card over the HTTP API and the caller types it. A loopback receiver in the test gets
``verification.finished``, ``capture.started``, ``capture.field_completed`` and
``capture.finished`` in that order, each signed with the configured secret, and no body holds
the card number, the CVV, the code or the caller's number. A second receiver (its own secret)
is down during the call (connection refused) and gets the same events, in order, once it
comes back.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from callsec_ari.webhooks.signing import verify
from tests.harness.agent import AgentPhones
from tests.harness.callsec_proc import code_from
from tests.harness.carrier import Carrier
from tests.harness.sandbox import Sandbox
from tests.integration.capture_env import (
    AGENT,
    LiveCall,
    Product,
    SseRecorder,
    a_channel,
    expiry,
    fresh_caller,
    rare_number,
    running_product,
    type_fields,
    visa,
)
from tests.integration.test_webhooks import Receiver, free_port, serving

pytestmark = pytest.mark.sandbox
SECRET = "sandbox-webhook-secret-0123456789"
SECRET_DOWN = "second-receiver-secret-abcdefgh"


@pytest.fixture(scope="module")
async def receiver(sandbox: Sandbox) -> AsyncIterator[Receiver]:
    async with serving(Receiver(free_port())) as running:
        yield running


@pytest.fixture(scope="module")
def down() -> Receiver:
    """Not listening until a test serves it."""
    return Receiver(free_port())


@pytest.fixture(scope="module")
async def product(receiver: Receiver, down: Receiver) -> AsyncIterator[Product]:
    async with running_product("webhooks", env={
            "CALLSEC_POLICY_DEFAULT__REQUIRE_CODE": "always",
            "CALLSEC_WEBHOOKS__URLS": f"{receiver.url},{down.url}",
            "CALLSEC_WEBHOOKS__SECRETS": f"{SECRET},{SECRET_DOWN}",
            "CALLSEC_WEBHOOKS__TIMEOUT_SECONDS": "2",
            "CALLSEC_WEBHOOKS__BACKOFF_SECONDS": "0.5",
            "CALLSEC_WEBHOOKS__MAX_BACKOFF_SECONDS": "2",
            "CALLSEC_WEBHOOKS__MAX_ATTEMPTS": "100"}) as running:
        yield running


async def wait_types(receiver: Receiver, call_id: str, last: str,
                     timeout: float = 20.0) -> list[dict[str, Any]]:
    async with asyncio.timeout(timeout):
        while True:
            bodies = [b for b in receiver.bodies() if b["call_id"] == call_id]
            if any(b["type"] == last for b in bodies):
                return bodies
            await asyncio.sleep(0.2)


async def test_a_verified_call_with_a_capture_sends_signed_events_in_order(
        product: Product, receiver: Receiver, down: Receiver, carrier: Carrier,
        agents: AgentPhones,
        ari_a: aiohttp.ClientSession, register_secret: Callable[[str], None]) -> None:
    card, exp, cvv = visa(), expiry(), rare_number(4)
    register_secret(card)
    mobile = fresh_caller()
    product.proc.add_customer(name="Hook Tester", mobile=mobile)
    before_messages = len(product.proc.outbox_messages())
    before_agent = agents.seen(AGENT)
    call = await carrier.call("2100", caller_id=mobile)
    await call.wait_up(timeout=15)
    code = code_from(await product.proc.wait_message(before_messages + 1))
    register_secret(code)
    await asyncio.sleep(1.0)  # "we have sent a code ..." starts
    await call.send_dtmf(code + "#")
    agent = await agents.wait_ringing(AGENT, timeout=20, known=before_agent)
    channel = await a_channel(ari_a, mobile, "2100")
    call_id = str(channel["id"])
    desk = product.desk
    await desk.wait_state(call_id, "connected")
    sse = SseRecorder(desk, call_id, product.sse_dir / f"{call_id}.sse")
    async with asyncio.TaskGroup() as tg:
        reader = tg.create_task(sse.run())
        await sse.wait(lambda e: e.get("call_id") == call_id, timeout=5)
        live = LiveCall(mobile, call, agent, call_id, str(channel["name"]), sse,
                        time.monotonic())
        capture_id = await desk.request_capture(call_id, ("card_number", "expiry", "cvv"))
        await type_fields(live, capture_id, [("card_number", card + "#"), ("expiry", exp),
                                             ("cvv", cvv)])
        await sse.wait_stage(capture_id, "finished", result="captured")
        bodies = await wait_types(receiver, call_id, "capture.finished")
        await call.hangup()
        async with asyncio.timeout(10):
            await reader

    types = [b["type"] for b in bodies]
    assert types == ["verification.finished", "capture.started", "capture.field_completed",
                     "capture.field_completed", "capture.field_completed", "capture.finished"]
    assert bodies[0]["data"]["result"] == "verified"
    assert bodies[-1]["data"]["result"] == "captured"
    assert bodies[-1]["data"]["last_digits"] == card[-4:]
    mine = [(h, raw) for h, raw in receiver.seen if json.loads(raw)["call_id"] == call_id]
    assert all(verify(SECRET.encode(), h["Callsec-Signature"], raw) for h, raw in mine)
    assert len({h["Callsec-Event-Id"] for h, _ in mine}) == len(mine)
    for _, raw in mine:
        for value in (card, cvv, code, mobile, mobile.lstrip("+")):
            assert value.encode() not in raw

    # the second receiver was down (connection refused) all along: it comes back
    assert down.seen == []
    async with serving(down):
        late = await wait_types(down, call_id, "capture.finished", timeout=30)
    assert [b["type"] for b in late] == types
    assert [b["id"] for b in late] == [json.loads(raw)["id"] for _, raw in mine]
    assert all(verify(SECRET_DOWN.encode(), h["Callsec-Signature"], raw) for h, raw in down.seen)
    assert not any(verify(SECRET.encode(), h["Callsec-Signature"], raw) for h, raw in down.seen)
