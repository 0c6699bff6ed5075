"""Outside review of #14 point 4: the per-caller limit cannot be split by number formatting.

The customer look-up finds a caller by their number in any notation (``+49151...``,
``0049151...``, ``0151...``: normalised to E.164), so the per-presented-number rate limit must
count those notations as one number, else a caller who can choose how their caller ID is
written gets the limit once per notation. Real SIP calls from B to A.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.harness.callsec_proc import CallsecProcess
from tests.harness.carrier import Carrier
from tests.harness.sandbox import AGI_PORT, Sandbox
from tests.integration.capture_env import running_callsec, workdir
from tests.integration.test_verification_sandbox import a_channel, wait_var

pytestmark = pytest.mark.sandbox
LOOKUPS = 2  # caller_rate_limit_per_hour in this module


@pytest.fixture(scope="module")
async def callsec(sandbox: Sandbox, register_secret) -> AsyncIterator[CallsecProcess]:  # type: ignore[no-untyped-def]
    async with running_callsec(workdir("caller-limit-formats"), {
            "CALLSEC_VERIFICATION__CALLER_RATE_LIMIT_PER_HOUR": str(LOOKUPS),
            "CALLSEC_AGI__PORT": str(AGI_PORT)}, register_secret) as proc:
        yield proc


async def test_caller_limit_counts_one_number_in_every_notation(
        callsec: CallsecProcess, carrier: Carrier, ari_a: aiohttp.ClientSession) -> None:
    national = f"0151{os.getpid() % 1000:03d}{4711:05d}"
    mobile = "+49" + national[1:]
    callsec.add_customer(name="Format Wechsler", mobile=mobile)
    notations = [mobile, "00" + mobile[1:], national]  # one number, three spellings
    for caller in notations[:LOOKUPS]:
        before = len(callsec.outbox_messages())
        call = await carrier.call("1000", caller_id=caller)
        await call.wait_up()
        assert (await callsec.wait_message(before + 1))["to"] == mobile  # found, code sent
        await call.hangup()
    before = len(callsec.outbox_messages())
    call = await carrier.call("1000", caller_id=notations[LOOKUPS])
    await call.wait_up()
    channel = await a_channel(ari_a, notations[LOOKUPS], "1000")
    assert await wait_var(ari_a, channel, "CALLSEC_RESULT", timeout=30) == "locked"
    assert len(callsec.outbox_messages()) == before  # over the caller's limit: no code
    await call.hangup()
