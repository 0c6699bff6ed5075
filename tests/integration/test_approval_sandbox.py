"""Payment approval on real SIP calls: a customer calls 2100 (MixMonitor, verification by SMS
code, then ``Stasis(callsec,connect,PJSIP/agent100)``); the agent, logged in over the real HTTP
API, asks the caller to approve "49.90 EUR to ACME Energy". callsec sends the code with amount
and payee to the customer's mobile (the outbox), the caller types it on the keypad in the
capture bridge; the agent's phone (B) receives no DTMF; the signed record is stored.

A replayed code (the first approval's code typed for a second approval) and a late one
(``[approval] code_ttl_seconds`` short here) are refused; a changed amount gets a new code.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from callsec_ari.approval.record import record_key, verify_record
from callsec_ari.config_check import load_settings
from callsec_ari.store.keyrings import open_keyring
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
    fresh_caller,
    running_product,
)
from tests.integration.test_webhooks import Receiver, free_port, serving

pytestmark = pytest.mark.sandbox
TTL = 8
SECRET = "approval-webhook-secret-0123456789"
ENV = {
    "CALLSEC_POLICY_DEFAULT__REQUIRE_CODE": "always",
    "CALLSEC_VERIFICATION__COMPANY_NAME": "Musterbank",
    "CALLSEC_VERIFICATION__FIRST_DIGIT_TIMEOUT_SECONDS": "20",
    "CALLSEC_APPROVAL__CODE_TTL_SECONDS": str(TTL),
    "CALLSEC_APPROVAL__MAX_ATTEMPTS": "1",
}


@pytest.fixture(scope="module")
async def receiver(sandbox: Sandbox) -> AsyncIterator[Receiver]:
    async with serving(Receiver(free_port())) as running:
        yield running


@pytest.fixture(scope="module")
async def product(receiver: Receiver) -> AsyncIterator[Product]:
    async with running_product("approval", {**ENV, "CALLSEC_WEBHOOKS__URLS": receiver.url,
                                            "CALLSEC_WEBHOOKS__SECRET": SECRET}) as running:
        yield running


@asynccontextmanager
async def verified_call(product: Product, carrier: Carrier, agents: AgentPhones,
                        ari_a: aiohttp.ClientSession) -> AsyncIterator[LiveCall]:
    """A customer calls 2100 from their mobile, types the SMS code, is connected to agent100;
    the call's SSE stream is recorded while the block runs."""
    proc, desk = product.proc, product.desk
    mobile = fresh_caller()
    proc.add_customer(name="Paula Payer", mobile=mobile)
    sent, before = len(proc.outbox_messages()), agents.seen(AGENT)
    call = await carrier.call("2100", caller_id=mobile)
    await call.wait_up(timeout=15)
    code = code_from(await proc.wait_message(sent + 1))
    await asyncio.sleep(1.0)
    await call.send_dtmf(code + "#")
    agent = await agents.wait_ringing(AGENT, timeout=20, known=before)
    channel = await a_channel(ari_a, mobile, "2100")
    call_id = str(channel["id"])
    await desk.wait_state(call_id, "connected")
    sse = SseRecorder(desk, call_id, product.sse_dir / f"{call_id}.sse")
    async with asyncio.TaskGroup() as tg:
        reader = tg.create_task(sse.run())
        await sse.wait(lambda e: e.get("call_id") == call_id, timeout=5)
        live = LiveCall(mobile, call, agent, call_id, str(channel["name"]), sse, 0.0)
        try:
            yield live
        finally:
            await call.hangup()
            try:
                async with asyncio.timeout(10):
                    await reader
            except TimeoutError:
                reader.cancel()


async def ask(product: Product, live: LiveCall, amount: str,
              payee: str = "ACME Energy") -> tuple[str, dict[str, str]]:
    """The agent asks for an approval; the id and the message the customer got."""
    sent = len(product.proc.outbox_messages())
    status, data = await product.desk.call("POST", f"/api/v1/calls/{live.call_id}/approvals",
                                           {"amount": amount, "currency": "EUR",
                                            "payee": payee})
    assert status == 201, data
    message = await product.proc.wait_message(sent + 1)
    await live.sse.wait(lambda e: e.get("topic") == "approval" and
                        e.get("approval_id") == data["approval_id"] and
                        e.get("stage") == "started")
    await asyncio.sleep(0.5)  # the prompt starts; the first key interrupts it
    return str(data["approval_id"]), message


async def outcome(product: Product, approval_id: str, timeout: float = 20.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            status, data = await product.desk.call("GET", f"/api/v1/approvals/{approval_id}")
            assert status == 200, data
            if data["status"] != "pending":
                return dict(data)
            await asyncio.sleep(0.3)


def stored(product: Product, approval_id: str) -> dict[str, Any]:
    with sqlite3.connect(product.workdir / "callsec.db") as db:
        db.row_factory = sqlite3.Row
        row = db.execute("SELECT * FROM approvals WHERE approval_id = ?",
                         (approval_id,)).fetchone()
    return dict(row)


def record_verifies(product: Product, row: dict[str, Any]) -> bool:
    from datetime import datetime

    from callsec_ari.approval.service import _iso

    settings = load_settings(product.proc.config, env={**os.environ, **product.proc.env()})
    key = record_key(open_keyring(settings).audit_key())
    record = {k: row[k] for k in ("approval_id", "call_id", "customer_ref", "amount",
                                  "currency", "payee", "digest", "requested_by", "result")}
    record["reason"] = row["reason"] or ""
    for name in ("created_at", "decided_at"):
        record[name] = _iso(datetime.fromisoformat(row[name]))
    return verify_record(record, row["signature"], key)


async def test_approval_code_sent_with_amount_and_payee_typed_unheard_then_replay_refused(
        receiver: Receiver, product: Product, carrier: Carrier, agents: AgentPhones,
        ari_a: aiohttp.ClientSession, register_secret: Any) -> None:
    async with verified_call(product, carrier, agents, ari_a) as live:
        for bad in ({"amount": "1e3", "currency": "EUR", "payee": "ACME"},
                    {"amount": "10.00", "currency": "XXX", "payee": "ACME"},
                    {"amount": "10.00", "currency": "EUR", "payee": "ACME\nEvil"}):
            status, data = await product.desk.call(
                "POST", f"/api/v1/calls/{live.call_id}/approvals", bad)
            assert (status, data["error_id"]) == (422, "approval_terms_invalid"), data
        first, message = await ask(product, live, "49.90")
        status, data = await product.desk.call(  # one at a time
            "POST", f"/api/v1/calls/{live.call_id}/approvals",
            {"amount": "1.00", "currency": "EUR", "payee": "ACME"})
        assert (status, data["error_id"]) == (409, "approval_not_possible"), data
        assert message["to"] == live.caller and message["kind"] == "sms"
        for part in ("49.90 EUR", "ACME Energy", "Musterbank", "ref "):
            assert part in message["body"]
        code = code_from(message)
        register_secret(code)
        await live.carrier.send_dtmf(code)
        assert (await outcome(product, first))["status"] == "approved"
        status, _ = await product.desk.call("GET", "/api/v1/approvals/AP-0123456789abcdef")
        assert status == 404
        row = stored(product, first)
        assert (row["amount"], row["currency"], row["payee"]) == ("49.90", "EUR", "ACME Energy")
        assert row["result"] == "approved" and record_verifies(product, row)
        assert not live.agent.dtmf  # the agent's phone got no DTMF at all
        async with asyncio.timeout(15):  # the signed record reached the webhook receiver
            while not any(b["type"] == "approval.finished" and
                          b["data"].get("approval_id") == first for b in receiver.bodies()):
                await asyncio.sleep(0.2)
        hook = next(b["data"] for b in receiver.bodies()
                    if b["type"] == "approval.finished" and b["data"]["approval_id"] == first)
        assert (hook["result"], hook["amount"], hook["payee"], hook["signature"]) == (
            "approved", "49.90", "ACME Energy", row["signature"])
        assert all(code not in json.dumps(b) for b in receiver.bodies())

        # a second approval typed with the first one's code: refused
        second, message2 = await ask(product, live, "49.90")
        assert code_from(message2) != code
        await live.carrier.send_dtmf(code)
        assert (await outcome(product, second))["status"] == "failed"
        assert stored(product, second)["reason"] == "wrong_code"

        # a changed amount: a new message naming it, a new code, approved with that one
        third, message3 = await ask(product, live, "59.90")
        assert "59.90 EUR" in message3["body"]
        code3 = code_from(message3)
        assert code3 not in (code, code_from(message2))
        await live.carrier.send_dtmf(code3)
        assert (await outcome(product, third))["status"] == "approved"
        assert stored(product, third)["digest"] != stored(product, first)["digest"]
        assert not live.agent.dtmf
        assert code not in product.proc.log_text() and code3 not in product.proc.log_text()


async def test_a_late_approval_code_is_refused(
        product: Product, carrier: Carrier, agents: AgentPhones,
        ari_a: aiohttp.ClientSession) -> None:
    async with verified_call(product, carrier, agents, ari_a) as live:
        approval, message = await ask(product, live, "12.00")
        await asyncio.sleep(TTL + 1)
        await live.carrier.send_dtmf(code_from(message))
        assert (await outcome(product, approval))["status"] == "failed"
        row = stored(product, approval)
        assert row["reason"] == "expired" and record_verifies(product, row)
