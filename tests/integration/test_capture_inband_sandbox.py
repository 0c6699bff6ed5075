"""The capture leak checks again with in-band DTMF: both sandbox instances are switched to
``dtmf_mode = inband`` for this module (``CALLSEC_SANDBOX_DTMF_MODE=inband tools/sandbox.sh up``
restarts them) and back to RFC 4733 at the end.

In-band digits are audio: A's DSP detects them (callsec gets ``ChannelDtmfReceived``) but they
are also sound on the caller's leg. The caller sits alone in its capture bridge meanwhile, so
the agent's phone must receive neither DTMF events nor tone energy, and the MixMonitor of the
caller's channel (muted over AMI) must hold no key tone either.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator

import aiohttp
import pytest

from tests.harness.agent import AgentPhones
from tests.harness.carrier import Carrier
from tests.harness.sandbox import SANDBOX_SCRIPT, A, B, Sandbox, dtmf_mode
from tests.integration.capture_checks import (
    LogTail,
    asterisk_logs,
    channel_variables,
    dtmf_hits,
    find_leaks,
    loud_seconds,
    sqlite_dump,
    tone_runs,
)
from tests.integration.capture_env import (
    Product,
    connected_call,
    expiry,
    rare_number,
    running_product,
    send_tone,
    type_fields,
    visa,
)

pytestmark = pytest.mark.sandbox
# In-band key tones: long enough for A's detector (it reported 89-140 ms here).
TONE_MS = 160


def _sandbox_up(mode: str) -> None:
    env = {**os.environ, "CALLSEC_SANDBOX_DTMF_MODE": mode}
    env.pop("CALLSEC_SANDBOX_B_DTMF_MODE", None)
    result = subprocess.run([str(SANDBOX_SCRIPT), "up"], env=env, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert A.ari_answers() and B.ari_answers()


@pytest.fixture(scope="module")
def inband(sandbox: Sandbox) -> Iterator[Sandbox]:
    _sandbox_up("inband")
    assert dtmf_mode(A) == "inband" and dtmf_mode(B) == "inband"
    try:
        yield sandbox
    finally:
        _sandbox_up("rfc4733")


@pytest.fixture(scope="module")
async def product(inband: Sandbox) -> AsyncIterator[Product]:
    async with running_product("capture-inband") as running:
        yield running


async def test_inband_card_capture_reaches_neither_the_agent_nor_the_recording(
        product: Product, carrier: Carrier, agents: AgentPhones, ari_a: aiohttp.ClientSession,
        register_secret: Callable[[str], None]) -> None:
    card, exp, cvv = visa(), expiry(), rare_number(3)
    register_secret(card)
    tails = [LogTail(p) for p in asterisk_logs()]
    desk = product.desk
    async with connected_call(desk, carrier, agents, ari_a, product.sse_dir) as live:
        await live.carrier.keep_media_flowing()
        await asyncio.sleep(1.0)
        pre, _ = await send_tone(live.carrier)
        await live.carrier.keep_media_flowing()
        capture_id = await desk.request_capture(live.call_id, ("card_number", "expiry", "cvv"))
        await live.sse.wait_stage(capture_id, "started")
        started = live.mark("started")
        await type_fields(live, capture_id, [("card_number", card + "#"), ("expiry", exp),
                                             ("cvv", cvv)],
                          between_ms=TONE_MS, duration_ms=TONE_MS)
        finished_event = await live.sse.wait_stage(capture_id, "finished", timeout=30)
        finished = live.mark("finished")
        variables = channel_variables(live.channel_name)
        await asyncio.sleep(4.0)  # "capture complete" + beep
        post, _ = await send_tone(live.carrier)
        await live.carrier.keep_media_flowing()
        await asyncio.sleep(0.8)
        wav = await agents.finish_recording("agent100", timeout=15)
    async with asyncio.timeout(15):
        while not live.mixmonitor.exists():
            await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)

    assert finished_event["result"] == "captured", live.sse.capture_events(capture_id)
    assert finished_event["last4"] == card[-4:]
    assert live.agent.dtmf == []
    # the agent's audio: the tones before and after arrived, no key tone anywhere
    runs = tone_runs(wav, 1000)
    assert any(abs(s - (pre - live.agent_t0)) < 1.0 for s, _ in runs), runs
    assert any(abs(s - (post - live.agent_t0)) < 1.0 for s, _ in runs), runs
    assert dtmf_hits(wav) == []
    window = (started - live.agent_t0, finished - live.agent_t0)
    assert window[1] - window[0] > 5.0
    # the MixMonitor of the caller's channel: no key tone, silence while muted
    assert dtmf_hits(live.mixmonitor) == []
    mix_runs = tone_runs(live.mixmonitor, 1000)
    assert len(mix_runs) == 2, mix_runs
    assert loud_seconds(live.mixmonitor, mix_runs[0][1] + 0.2, mix_runs[1][0] - 3.6) < 0.1
    # nothing of the card anywhere
    blobs = {f"asterisk {t.path.parent.parent.name}/{t.path.name}": t.read() for t in tails}
    blobs.update({"callsec log": product.proc.log_file.read_bytes(),
                  "database": sqlite_dump(product.workdir / "callsec.db"),
                  "sse": live.sse.path.read_bytes(), "channel variables": variables})
    assert b"Variables" in variables
    assert find_leaks([card, cvv, exp + cvv, card[:-4]], blobs) == []
    stored = await desk.wait_capture(capture_id, "captured")
    assert set(stored["vault_refs"]) == {"card_number", "expiry"}
