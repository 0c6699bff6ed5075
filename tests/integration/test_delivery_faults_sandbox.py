"""Code delivery failing on real calls: the SMS gateway (a local aiohttp server speaking the
signed-HTTP protocol of ``[sms] backend = http``) answers 500, hangs, answers garbage, drops the
connection or is merely slow; the SMTP server of an e-mail customer is down.

Whatever the peer does, the caller must not wait longer than the delivery budget
(``[sms] budget_seconds`` = 5 s: ``CALLSEC_RESULT=delivery_failed`` is set on the channel
before the goodbye prompt), must hear the prompt and go back to the dialplan, and the operator
finds a ``verification.delivery_failed`` audit entry naming the reason, never the number.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.harness.callsec_proc import REPO, CallsecProcess
from tests.harness.carrier import Carrier
from tests.harness.sandbox import Sandbox
from tests.integration.capture_env import wait_no_other_callsec
from tests.integration.test_verification_sandbox import a_channel, a_var, fresh_mobile, wait_var

pytestmark = pytest.mark.sandbox
BUDGET = 5.0
HMAC_KEY = "gateway-test-key-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Gateway:
    """An SMS gateway whose behaviour the test sets: ok, slow, 500, hang, garbage, reset."""

    mode: str = "ok"
    requests: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    port: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append((time.monotonic(), body))
        if self.mode == "500":
            return web.json_response({"error": "boom"}, status=500)
        if self.mode == "hang":
            await asyncio.sleep(3600)
        if self.mode == "garbage":
            return web.Response(text="<html>gateway maintenance</html>", status=200)
        if self.mode == "reset":
            assert request.transport is not None
            request.transport.abort()
            return web.Response()
        if self.mode == "slow":
            await asyncio.sleep(1.2)
        return web.json_response({"id": f"msg-{len(self.requests)}"})

    def code(self) -> str:
        found = re.findall(r"(?<![\d:])(\d{4,10})(?![\d:])", self.requests[-1][1]["body"])
        assert len(found) == 1
        return str(found[0])


@dataclass
class Faults:
    proc: CallsecProcess
    gateway: Gateway


@pytest.fixture(scope="module")
async def faults(sandbox: Sandbox) -> AsyncIterator[Faults]:
    gateway = Gateway()
    app = web.Application()
    app.router.add_post("/sms", gateway.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    gateway.port = free_port()
    await web.TCPSite(runner, "127.0.0.1", gateway.port).start()
    workdir = REPO / "var" / "test" / "delivery-faults"
    for name in ("callsec.db", "callsec.db-wal", "callsec.db-shm"):
        (workdir / name).unlink(missing_ok=True)
    shutil.rmtree(workdir / "keys", ignore_errors=True)
    proc = CallsecProcess(workdir, env_overrides={
        "CALLSEC_SMS__BACKEND": "http",
        "CALLSEC_SMS__URL": f"http://127.0.0.1:{gateway.port}/sms",
        "CALLSEC_SMS__HMAC_KEY": HMAC_KEY,
        "CALLSEC_EMAIL__BACKEND": "smtp",
        "CALLSEC_EMAIL__HOST": "127.0.0.1",
        "CALLSEC_EMAIL__PORT": str(free_port()),  # nothing listens there: the server is down
        "CALLSEC_AGI__ENABLED": "no",
        "CALLSEC_VERIFICATION__FIRST_DIGIT_TIMEOUT_SECONDS": "6",
    })
    await wait_no_other_callsec()
    await proc.start()
    try:
        yield Faults(proc, gateway)
    finally:
        proc.stop()
        await runner.cleanup()


def delivery_failures(proc: CallsecProcess, call_id: str) -> list[dict[str, Any]]:
    with sqlite3.connect(f"file:{proc.workdir / 'callsec.db'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT details FROM audit_log WHERE target = ? AND action = "
                          "'verification.delivery_failed'", (call_id,)).fetchall()
    return [json.loads(details) for (details,) in rows]


async def wait_dialplan(ari_a: aiohttp.ClientSession, channel: str, app: str,
                        timeout: float = 20.0) -> float:
    async with asyncio.timeout(timeout):
        while True:
            async with ari_a.get(f"/ari/channels/{channel}") as resp:
                if (await resp.json())["dialplan"]["app_name"] == app:
                    return time.monotonic()
            await asyncio.sleep(0.1)


async def failed_delivery(faults: Faults, carrier: Carrier, ari_a: aiohttp.ClientSession, *,
                          method: str = "sms") -> tuple[str, float, str]:
    """Call 1000 as a known customer; (call id, seconds from the call's answer to the
    result, masked mobile number) once ``CALLSEC_RESULT`` is set and the prompt has played."""
    mobile = fresh_mobile()
    faults.proc.add_customer(name="Fault Tester", mobile=mobile, method=method,
                             email="fault.tester@example.org")
    call = await carrier.call("1000", caller_id=mobile)
    await call.wait_up()
    up = time.monotonic()
    channel = await a_channel(ari_a, mobile, "1000")
    result = await wait_var(ari_a, channel, "CALLSEC_RESULT", timeout=BUDGET + 10)
    waited = time.monotonic() - up
    assert result == "delivery_failed"
    assert await a_var(ari_a, channel, "CALLSEC_METHOD") == method
    decided = time.monotonic()
    back = await wait_dialplan(ari_a, channel, "Wait")
    assert back - decided > 1.0  # "we could not send your code" + "goodbye" played first
    await call.hangup()
    return channel, waited, mobile


@pytest.mark.parametrize(("mode", "reason"), [
    ("500", "http_status"), ("hang", "timeout"), ("garbage", "garbage"), ("reset", "refused"),
])
async def test_sms_gateway_failure_ends_in_delivery_failed_within_the_budget(
        faults: Faults, carrier: Carrier, ari_a: aiohttp.ClientSession, mode: str,
        reason: str) -> None:
    faults.gateway.mode = mode
    before = len(faults.gateway.requests)
    channel, waited, mobile = await failed_delivery(faults, carrier, ari_a)
    attempts = faults.gateway.requests[before:]
    assert attempts, "callsec never reached the gateway"
    assert len(attempts) == (1 if mode == "garbage" else 2)  # garbage is never retried
    assert waited < BUDGET + 2.5, waited  # answer + welcome prompt + budget at most
    assert attempts[-1][0] - attempts[0][0] < BUDGET
    [entry] = delivery_failures(faults.proc, channel)
    assert entry == {"customer_ref": entry["customer_ref"], "method": "sms", "reason": reason}
    assert mobile not in faults.proc.log_text()


async def test_slow_sms_gateway_within_the_attempt_timeout_still_verifies(
        faults: Faults, carrier: Carrier, ari_a: aiohttp.ClientSession,
        register_secret: Callable[[str], None]) -> None:
    faults.gateway.mode = "slow"
    mobile = fresh_mobile()
    faults.proc.add_customer(name="Slow Gateway", mobile=mobile)
    before = len(faults.gateway.requests)
    call = await carrier.call("1000", caller_id=mobile)
    await call.wait_up()
    async with asyncio.timeout(15):
        while len(faults.gateway.requests) == before:
            await asyncio.sleep(0.1)
    request = faults.gateway.requests[-1][1]
    assert request["to"] == mobile and request["kind"] == "sms"
    channel = await a_channel(ari_a, mobile, "1000")
    await asyncio.sleep(2.0)  # the 1.2 s answer, then "we have sent a code..."
    code = faults.gateway.code()
    register_secret(code)  # the leak scan looks for it in every log and database
    await call.send_dtmf(code + "#")
    assert await wait_var(ari_a, channel, "CALLSEC_RESULT") == "verified"
    await call.hangup()


async def test_smtp_server_down_ends_an_email_customers_call_in_delivery_failed(
        faults: Faults, carrier: Carrier, ari_a: aiohttp.ClientSession) -> None:
    before = len(faults.gateway.requests)
    channel, waited, _ = await failed_delivery(faults, carrier, ari_a, method="email")
    assert len(faults.gateway.requests) == before  # the SMS gateway was not used
    assert waited < BUDGET + 2.5, waited
    [entry] = delivery_failures(faults.proc, channel)
    assert entry["method"] == "email" and entry["reason"] in ("refused", "budget")
    assert "fault.tester@example.org" not in faults.proc.log_text()
