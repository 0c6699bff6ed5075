"""FastAGI against real Asterisk with the real ``callsec run`` on 127.0.0.1:4573: carrier B
calls A's numbers 3000 (``AGI(agi://127.0.0.1:4573/verify)``) and 4000
(``AGI(agi://127.0.0.1:4573/capture?fields=card_number,expiry,cvv)``); both wait in the
dialplan afterwards, so the tests read the contract's channel variables over ARI.

- 3000 runs the real verification: the "phone" reads the SMS code from the outbox and types it.
- 4000 runs the self-service card capture (no agent): ``CALLSEC_CAPTURE_RESULT=captured`` and
  an opaque ``CALLSEC_CAPTURE_REF`` (the capture id, no digits of the card), the card in the
  vault, the CVV nowhere.
- A caller hanging up in the middle of an AGI flow ends it as ``hangup`` and leaves no AGI
  connection open. (A client leaving during the AGI header block is covered against the real
  server with a scripted client in ``test_agi_server.py``: Asterisk itself always sends the
  whole block.)
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest

from tests.harness.callsec_proc import CallsecProcess, code_from
from tests.harness.carrier import Carrier
from tests.harness.sandbox import AGI_PORT, Sandbox
from tests.integration.capture_checks import (
    find_leaks,
)
from tests.integration.capture_env import (
    a_channel,
    expiry,
    fresh_caller,
    rare_number,
    running_callsec,
    visa,
    workdir,
)
from tests.integration.test_verification_sandbox import a_var, wait_var

pytestmark = pytest.mark.sandbox
WORKDIR = workdir("agi")


@pytest.fixture(scope="module")
async def callsec(sandbox: Sandbox, register_secret: Callable[[str], None]
                  ) -> AsyncIterator[CallsecProcess]:
    async with running_callsec(WORKDIR, {
            "CALLSEC_AGI__PORT": str(AGI_PORT),
            "CALLSEC_VERIFICATION__FIRST_DIGIT_TIMEOUT_SECONDS": "8"}, register_secret) as proc:
        yield proc


def agi_connections() -> int:
    out = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{AGI_PORT} )"],
                         capture_output=True, text=True, check=False).stdout
    return len([line for line in out.splitlines() if line.strip()])


async def test_agi_verify_with_the_sms_code_sets_the_contract_variables(
        callsec: CallsecProcess, carrier: Carrier, ari_a: aiohttp.ClientSession) -> None:
    mobile = fresh_caller()
    ref = callsec.add_customer(name="Agi Verify", mobile=mobile)
    before = len(callsec.outbox_messages())
    call = await carrier.call("3000", caller_id=mobile)
    await call.wait_up(timeout=15)  # our ANSWER over AGI
    message = await callsec.wait_message(before + 1)
    assert message["to"] == mobile
    channel = str((await a_channel(ari_a, mobile, "3000"))["id"])
    await asyncio.sleep(1.0)  # "we have sent you a code" plays; a key interrupts it
    await call.send_dtmf(code_from(message) + "#")
    assert await wait_var(ari_a, channel, "CALLSEC_RESULT") == "verified"
    # SET VARIABLE goes out one variable at a time
    assert await wait_var(ari_a, channel, "CALLSEC_METHOD") == "sms"
    assert await wait_var(ari_a, channel, "CALLSEC_CUSTOMER") == ref
    assert await wait_var(ari_a, channel, "AGISTATUS") == "SUCCESS"  # the dialplan went on
    await call.hangup()
    assert mobile not in callsec.log_text()


async def test_agi_self_service_capture_sets_captured_and_an_opaque_reference(
        callsec: CallsecProcess, carrier: Carrier, ari_a: aiohttp.ClientSession,
        register_secret: Callable[[str], None]) -> None:
    card, exp, cvv = visa(), expiry(), rare_number(3)
    register_secret(card)
    caller = fresh_caller()
    call = await carrier.call("4000", caller_id=caller)
    await call.wait_up(timeout=15)
    channel = str((await a_channel(ari_a, caller, "4000"))["id"])
    for keys in (card + "#", exp, cvv):
        await asyncio.sleep(1.0)  # the field's prompt starts; the first key interrupts it
        await call.send_dtmf(keys)
    assert await wait_var(ari_a, channel, "CALLSEC_CAPTURE_RESULT") == "captured"
    capture_ref = await wait_var(ari_a, channel, "CALLSEC_CAPTURE_REF")
    assert re.fullmatch(r"CP-[0-9a-f]{16}", capture_ref), capture_ref
    assert card[-4:] not in capture_ref
    async with asyncio.timeout(20):  # "thank you", then back to the dialplan
        while await a_var(ari_a, channel, "AGISTATUS") != "SUCCESS":
            await asyncio.sleep(0.2)
    await call.hangup()
    with sqlite3.connect(f"file:{WORKDIR / 'callsec.db'}?mode=ro", uri=True) as db:
        result, refs = db.execute("SELECT result, vault_refs FROM captures WHERE capture_id = ?",
                                  (capture_ref,)).fetchone()
        dump = "\n".join(db.iterdump()).encode()
    assert result == "captured"
    assert set(json.loads(refs)) == {"card_number", "expiry"}  # the CVV is never stored
    blobs = {"callsec log": callsec.log_file.read_bytes(), "database": dump}
    assert find_leaks([card, cvv, exp + cvv], blobs) == []


async def test_caller_hanging_up_mid_agi_ends_the_flow_as_hangup(
        callsec: CallsecProcess, carrier: Carrier, ari_a: aiohttp.ClientSession) -> None:
    caller = fresh_caller()
    call = await carrier.call("4000", caller_id=caller)
    await call.wait_up(timeout=15)
    channel = str((await a_channel(ari_a, caller, "4000"))["id"])
    await asyncio.sleep(1.0)
    await call.send_dtmf("4111")
    await call.hangup()
    async with asyncio.timeout(15):
        while f"[agi-{channel}] call finished: hangup" not in callsec.log_text():
            await asyncio.sleep(0.2)
    async with asyncio.timeout(10):
        while agi_connections():
            await asyncio.sleep(0.2)
