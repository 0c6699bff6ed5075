"""callsec killed with SIGKILL in the middle of a card entry, then started again, on real SIP
calls: the caller must not stay stranded in the capture bridge, the digits typed so far must not
survive anywhere, and the call must stay owned (a later hang-up still ends the agent's leg).

The call goes to 2100 (MixMonitor on the caller's channel, then
``Stasis(callsec,connect,PJSIP/agent100)``) with verification off
(``CALLSEC_POLICY_DEFAULT__REQUIRE_CODE=never``, from ``CAPTURE_ENV``).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from tests.harness.agent import AgentPhones
from tests.harness.carrier import Carrier, CarrierCall
from tests.harness.sandbox import Sandbox
from tests.integration.capture_checks import LogTail, find_leaks, sqlite_dump, tone_runs
from tests.integration.capture_env import (
    AGENT,
    Product,
    SseRecorder,
    a_channel,
    fresh_caller,
    running_product,
    send_tone,
    visa,
)

pytestmark = pytest.mark.sandbox


@pytest.fixture
async def product(sandbox: Sandbox) -> AsyncIterator[Product]:
    async with running_product("restart") as running:
        yield running


async def bridge(ari_a: aiohttp.ClientSession, bridge_id: str) -> dict[str, Any] | None:
    async with ari_a.get(f"/ari/bridges/{bridge_id}") as resp:
        return None if resp.status == 404 else dict(await resp.json())


async def destroy_leftovers(ari_a: aiohttp.ClientSession, call_id: str) -> None:
    """A failed run must not leave bridges behind: they keep app ``callsec`` registered in
    Asterisk, and the next module would wait for "another callsec" forever."""
    for prefix in ("callsec-capture-", "callsec-call-"):
        async with ari_a.delete(f"/ari/bridges/{prefix}{call_id}"):
            pass


async def wait_log(tail: LogTail, text: str, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while text.encode() not in tail.read():
            await asyncio.sleep(0.2)


def capture_row(product: Product, capture_id: str) -> dict[str, Any]:
    with sqlite3.connect(f"file:{product.workdir / 'callsec.db'}?mode=ro", uri=True) as db:
        db.row_factory = sqlite3.Row
        row = db.execute("SELECT * FROM captures WHERE capture_id = ?", (capture_id,)).fetchone()
        audit = [json.loads(r["details"]) for r in db.execute(
            "SELECT details FROM audit_log WHERE target = ? AND action = 'capture.finished'",
            (capture_id,))]
    assert row is not None, "the capture's start was never recorded"
    return {**dict(row), "audit": audit}


async def test_sigkill_mid_capture_then_restart_returns_the_caller_to_the_agent(
        product: Product, carrier: Carrier, agents: AgentPhones, ari_a: aiohttp.ClientSession,
        register_secret: Callable[[str], None]) -> None:
    typed = visa()[:8]
    register_secret(typed)
    caller = fresh_caller()
    before = agents.seen(AGENT)  # callsec dials the agent as it answers the caller
    call = await carrier.call("2100", caller_id=caller)
    await call.wait_up(timeout=15)
    await agents.wait_ringing(AGENT, timeout=20, known=before)
    agent_t0 = time.monotonic()
    call_id = str((await a_channel(ari_a, caller, "2100"))["id"])
    try:
        await restart_mid_capture(product, call, call_id, agent_t0, typed, agents, ari_a)
    finally:
        await destroy_leftovers(ari_a, call_id)


async def restart_mid_capture(product: Product, call: CarrierCall, call_id: str,
                              agent_t0: float, typed: str, agents: AgentPhones,
                              ari_a: aiohttp.ClientSession) -> None:
    desk, proc = product.desk, product.proc
    await desk.wait_state(call_id, "connected")
    sse = SseRecorder(desk, call_id, product.sse_dir / f"{call_id}.sse")
    reader = asyncio.create_task(sse.run())
    try:
        capture_id = await desk.request_capture(call_id, ["card_number", "expiry", "cvv"])
        await sse.wait_stage(capture_id, "field_started", field="card_number")
        await asyncio.sleep(0.4)
        await call.send_dtmf(typed, between_ms=100, duration_ms=100)
        await sse.wait(lambda e: e.get("stage") == "digit" and e.get("count") == len(typed))
    finally:
        reader.cancel()

    proc.kill()  # SIGKILL: no clean-up of any kind
    stranded = await bridge(ari_a, f"callsec-capture-{call_id}")
    assert stranded is not None and stranded["channels"] == [call_id]  # the stranded caller

    tail = LogTail(proc.log_file)
    await proc.start()
    await wait_log(tail, "adopting a call left by a previous callsec")
    async with asyncio.timeout(15):
        while await bridge(ari_a, f"callsec-capture-{call_id}") is not None:
            await asyncio.sleep(0.2)
    back = await bridge(ari_a, f"callsec-call-{call_id}")
    assert back is not None and sorted(back["channels"]) == sorted([call_id, f"{call_id}-agent"])
    await wait_log(tail, "recordings of the caller unmuted: 1")

    # "capture cancelled" + beep suspend the caller from the bridge for ~3 s, then they talk
    restored = time.monotonic()
    await asyncio.sleep(4.0)
    await send_tone(call)
    await asyncio.sleep(0.8)
    wav = await agents.finish_recording(AGENT, timeout=15)
    async with asyncio.timeout(5):
        while not wav.exists():
            await asyncio.sleep(0.1)
    runs = tone_runs(wav, 1000)
    assert any(start > restored - agent_t0 for start, _ in runs), runs  # caller -> agent again
    assert agents.latest(AGENT).dtmf == []

    # the capture is recorded as cancelled; the digits typed before the kill exist nowhere
    status, info = await desk.call("GET", f"/api/v1/captures/{capture_id}")
    assert status == 200 and info["state"] == "cancelled", info
    row = capture_row(product, capture_id)
    assert row["result"] == "cancelled" and row["finished_at"] is not None
    assert json.loads(row["vault_refs"]) == {} and json.loads(row["masked"]) == {}
    assert [a["reason"] for a in row["audit"]] == ["callsec_restart"]
    blobs = {"database": sqlite_dump(product.workdir / "callsec.db"),
             "callsec log": proc.log_file.read_bytes()}
    assert find_leaks([typed], blobs) == []

    # the adopted call is owned: the caller hanging up ends the agent's leg and the bridge
    await call.hangup()
    await agents.wait_hangup(AGENT, timeout=10)
    async with asyncio.timeout(10):
        while await bridge(ari_a, f"callsec-call-{call_id}") is not None:
            await asyncio.sleep(0.2)
    await wait_log(tail, "call finished")
