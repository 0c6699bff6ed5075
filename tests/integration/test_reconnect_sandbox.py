"""callsec survives Asterisk A going away: it logs the drop, reconnects with backoff, and
serves the next call without being restarted (the foundation's reconnect promise)."""

from __future__ import annotations

import asyncio
import subprocess

import aiohttp
import pytest

from tests.harness.callsec_proc import REPO, CallsecProcess
from tests.harness.carrier import Carrier
from tests.harness.sandbox import Sandbox
from tests.integration.test_verification_sandbox import a_channel, wait_var

pytestmark = pytest.mark.sandbox


def run_sandbox(*args: str) -> None:
    subprocess.run([str(REPO / "tools" / "sandbox.sh"), *args], check=True,
                   stdout=subprocess.DEVNULL, timeout=120)


async def probe_call(carrier: Carrier, ari_a: aiohttp.ClientSession, caller: str) -> str:
    call = await carrier.call("1100", caller_id=caller)
    await call.wait_up()
    channel = await a_channel(ari_a, caller, "1100")
    await asyncio.sleep(0.5)
    await call.send_dtmf("4711#")
    result = await wait_var(ari_a, channel, "CALLSEC_PROBE_RESULT")
    await call.hangup()
    return result


async def test_asterisk_restart_is_survived_and_next_call_served(
        sandbox: Sandbox, ari_a: aiohttp.ClientSession) -> None:
    proc = CallsecProcess(REPO / "var" / "test" / "reconnect")
    await proc.start()
    try:
        async with Carrier() as carrier:
            assert await probe_call(carrier, ari_a, "+4930111111") == "complete"
        await asyncio.to_thread(run_sandbox, "stop", "a")
        async with asyncio.timeout(20):
            while "events websocket down" not in proc.log_text():
                await asyncio.sleep(0.2)
        await asyncio.sleep(2.0)  # a few failed reconnect attempts, with backoff
        await asyncio.to_thread(run_sandbox, "up")
        async with asyncio.timeout(60):
            while "events websocket reconnected" not in proc.log_text():
                await asyncio.sleep(0.2)
        await proc.wait_registered(timeout=10)
        assert proc.proc is not None and proc.proc.poll() is None  # never restarted
        async with Carrier() as carrier:
            assert await probe_call(carrier, ari_a, "+4930222222") == "complete"
    finally:
        proc.stop()
