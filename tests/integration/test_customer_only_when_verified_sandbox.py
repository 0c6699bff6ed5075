"""The customer is named to the dialplan and to the agent only when the caller is verified:
``CALLSEC_CUSTOMER`` stays empty after a failed verification, and a ``connect`` call that is
connected unverified (``connect_unverified = yes``) rings the agent without the customer in
its caller ID. Real SIP calls from B to A; wrong codes typed in RFC 4733."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.harness.agent import AgentPhones
from tests.harness.callsec_proc import REPO, CallsecProcess, code_from
from tests.harness.carrier import Carrier, CarrierCall
from tests.harness.sandbox import Sandbox
from tests.integration.test_verification_sandbox import a_channel, a_var

pytestmark = pytest.mark.sandbox
_numbers = itertools.count(500)
RESULT_TIMEOUT = 40.0


def fresh_mobile() -> str:
    return f"+49157{os.getpid() % 1000:03d}{next(_numbers):05d}"


@pytest.fixture(scope="module")
async def callsec(sandbox: Sandbox, register_secret) -> AsyncIterator[CallsecProcess]:  # type: ignore[no-untyped-def]
    workdir = REPO / "var" / "test" / "customer-when-verified"
    shutil.rmtree(workdir, ignore_errors=True)
    proc = CallsecProcess(workdir, env_overrides={
        "CALLSEC_POLICY_DEFAULT__CONNECT_UNVERIFIED": "yes", "CALLSEC_AGI__ENABLED": "no",
        "CALLSEC_VERIFICATION__FIRST_DIGIT_TIMEOUT_SECONDS": "8"})
    await proc.start()
    yield proc
    proc.stop()
    for message in proc.outbox_messages():
        register_secret(code_from(message))


async def wrong_codes(callsec: CallsecProcess, call: CarrierCall, before: int,
                      times: int = 5) -> None:
    """Wait for the code, then type a wrong one ``times`` times."""
    code = code_from(await callsec.wait_message(before + 1))
    wrong = "0" * len(code) if code != "0" * len(code) else "1" * len(code)
    await asyncio.sleep(1.0)
    for _ in range(times):
        await call.send_dtmf(wrong + "#", between_ms=80, duration_ms=80)
        await asyncio.sleep(0.4)


async def final_result(ari_a: aiohttp.ClientSession, channel: str) -> str:
    async with asyncio.timeout(RESULT_TIMEOUT):
        while True:
            value = await a_var(ari_a, channel, "CALLSEC_RESULT")
            if value:
                return value
            await asyncio.sleep(0.2)


async def test_a_failed_verification_leaves_callsec_customer_empty(
        callsec: CallsecProcess, carrier: Carrier, ari_a: aiohttp.ClientSession) -> None:
    mobile = fresh_mobile()
    ref = callsec.add_customer(name="Falsch Getippt", mobile=mobile)
    before = len(callsec.outbox_messages())
    call = await carrier.call("1000", caller_id=mobile)
    await call.wait_up()
    channel = await a_channel(ari_a, mobile, "1000")
    await wrong_codes(callsec, call, before)
    result = await final_result(ari_a, channel)
    assert result not in ("verified", "skipped"), result
    assert await a_var(ari_a, channel, "CALLSEC_CUSTOMER") == ""
    assert ref not in json_vars(await channel_vars(ari_a, channel))
    await call.hangup()


async def channel_vars(ari_a: aiohttp.ClientSession, channel: str) -> dict[str, Any]:
    names = ("CALLSEC_RESULT", "CALLSEC_METHOD", "CALLSEC_CUSTOMER")
    return {name: await a_var(ari_a, channel, name) for name in names}


def json_vars(values: dict[str, Any]) -> str:
    return " ".join(str(v) for v in values.values())


async def test_an_unverified_connect_rings_the_agent_without_the_customer_in_caller_id(
        callsec: CallsecProcess, carrier: Carrier, agents: AgentPhones,
        ari_a: aiohttp.ClientSession) -> None:
    mobile = fresh_mobile()
    ref = callsec.add_customer(name="Nicht Verifiziert", mobile=mobile)
    before = len(callsec.outbox_messages())
    seen = agents.seen("agent100")
    call = await carrier.call("2000", caller_id=mobile)
    await call.wait_up()
    channel = await a_channel(ari_a, mobile, "2000")
    await wrong_codes(callsec, call, before)
    agent = await agents.wait_ringing("agent100", timeout=RESULT_TIMEOUT, known=seen)
    assert (await a_var(ari_a, channel, "CALLSEC_RESULT")) not in ("verified", "skipped", None)
    on_b = await agents.client.request("GET", f"/channels/{agent.channel.id}")
    async with ari_a.get(f"/ari/channels/{channel}-agent") as resp:
        on_a = await resp.json() if resp.status == 200 else {}
    for shown in (on_b.get("caller", {}), on_a.get("caller", {})):
        assert ref not in f"{shown.get('name', '')} {shown.get('number', '')}", shown
    assert await a_var(ari_a, channel, "CALLSEC_CUSTOMER") == ""
    await call.hangup()
