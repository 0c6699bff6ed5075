"""Out-of-band verification on real SIP calls: B (carrier) calls A, where `callsec run` answers.

The carrier's "phone" reads the code from the outbox and types it in RFC 4733; the test reads
the contract's channel variables on A over ARI while the dialplan waits after Stasis().
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import NamedTuple

import aiohttp
import pytest

from tests.harness.agent import AgentPhones
from tests.harness.callsec_proc import CallsecProcess, code_from
from tests.harness.carrier import Carrier, CarrierCall
from tests.harness.sandbox import Sandbox
from tests.integration.capture_env import running_callsec, workdir

pytestmark = pytest.mark.sandbox
_numbers = itertools.count(100)


def fresh_mobile() -> str:
    """A distinct valid German mobile number per test (the blind index is per number)."""
    return f"+49151{os.getpid() % 1000:03d}{next(_numbers):05d}"


@pytest.fixture(scope="module")
async def callsec(sandbox: Sandbox, register_secret) -> AsyncIterator[CallsecProcess]:  # type: ignore[no-untyped-def]
    async with running_callsec(workdir("verification"), {
            "CALLSEC_VERIFICATION__FIRST_DIGIT_TIMEOUT_SECONDS": "6"}, register_secret) as proc:
        yield proc  # every code the suite used goes to the leak scan


def _remove(path: Path) -> None:
    import shutil

    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


async def a_channel(ari_a: aiohttp.ClientSession, caller_id: str, exten: str,
                    timeout: float = 10.0) -> str:
    """The id of A's channel for this caller (the one in the sandbox dialplan at ``exten``)."""
    async with asyncio.timeout(timeout):
        while True:
            async with ari_a.get("/ari/channels") as resp:
                for channel in await resp.json():
                    if channel["caller"]["number"] == caller_id and \
                            channel["dialplan"]["exten"] == exten:
                        return str(channel["id"])
            await asyncio.sleep(0.1)


async def a_var(ari_a: aiohttp.ClientSession, channel_id: str, name: str) -> str | None:
    async with ari_a.get(f"/ari/channels/{channel_id}/variable", params={"variable": name}) as r:
        return str((await r.json())["value"]) if r.status == 200 else None


async def wait_var(ari_a: aiohttp.ClientSession, channel_id: str, name: str,
                   timeout: float = 30.0) -> str:
    async with asyncio.timeout(timeout):
        while True:
            value = await a_var(ari_a, channel_id, name)
            if value:
                return value
            await asyncio.sleep(0.2)


class CodeCall(NamedTuple):
    call: CarrierCall
    code: str
    channel: str


async def call_for_a_code(callsec: CallsecProcess, carrier: Carrier,
                          ari_a: aiohttp.ClientSession, name: str) -> CodeCall:
    """A new customer ``name`` calls 1000 from their mobile; callsec has sent them the code.
    The call, the code and A's channel id."""
    mobile = fresh_mobile()
    callsec.add_customer(name=name, mobile=mobile)
    before = len(callsec.outbox_messages())
    call = await carrier.call("1000", caller_id=mobile)
    await call.wait_up()
    code = code_from(await callsec.wait_message(before + 1))
    return CodeCall(call, code, await a_channel(ari_a, mobile, "1000"))


async def test_caller_verified_by_sms_code_typed_on_keypad(
        callsec: CallsecProcess, carrier: Carrier, ari_a: aiohttp.ClientSession) -> None:
    mobile = fresh_mobile()
    ref = callsec.add_customer(name="Erika Mustermann", mobile=mobile)
    before = len(callsec.outbox_messages())
    call = await carrier.call("1000", caller_id=mobile)
    await call.wait_up()
    message = await callsec.wait_message(before + 1)
    assert message["to"] == mobile and message["kind"] == "sms"
    assert "never ask" in message["body"]
    code = code_from(message)
    channel = await a_channel(ari_a, mobile, "1000")
    await asyncio.sleep(1.0)  # the caller listens to "we have sent a code..." for a moment
    await call.send_dtmf(code + "#")
    assert await wait_var(ari_a, channel, "CALLSEC_RESULT") == "verified"
    assert await a_var(ari_a, channel, "CALLSEC_METHOD") == "sms"
    assert await a_var(ari_a, channel, "CALLSEC_CUSTOMER") == ref
    await call.hangup()
    assert code not in callsec.log_text()
    assert mobile not in callsec.log_text()


async def playing(ari_a: aiohttp.ClientSession, playback_id: str, prefixes: tuple[str, ...],
                  timeout: float = 15.0) -> str:
    """Until Asterisk's playback ``playback_id`` is at a media item starting with one of
    ``prefixes``; that item."""
    async with asyncio.timeout(timeout):
        while True:
            async with ari_a.get(f"/ari/playbacks/{playback_id}") as resp:
                media = str((await resp.json()).get("media_uri", "")) if resp.ok else ""
            if media.startswith(prefixes):
                return media
            await asyncio.sleep(0.02)


async def test_a_caller_typing_while_the_number_tail_is_read_is_answered_at_once(
        callsec: CallsecProcess, carrier: Carrier, ari_a: aiohttp.ClientSession) -> None:
    """A caller who has the SMS already types while the prompt still reads "... ending in
    0 7": the first key cuts the prompt and the result follows the last key. (With the tail
    as ``digits:``, which Asterisk cannot stop, the rest of the prompt played on and every
    channel command, the result included, waited for it: ~4 s.)"""
    call, code, channel = await call_for_a_code(callsec, carrier, ari_a, "Schnell Tipper")
    # v1: welcome; v2: "we sent a code to your number ending in", the tail, "enter the code"
    await playing(ari_a, f"{channel}-v2", ("sound:digits/", "digits:"))
    typed = asyncio.get_running_loop().time()
    await call.send_dtmf(code + "#")
    assert await wait_var(ari_a, channel, "CALLSEC_RESULT") == "verified"
    took = asyncio.get_running_loop().time() - typed
    assert took < 3.0, f"result {took:.1f} s after the caller started typing"
    await call.hangup()


async def test_five_wrong_codes_lock_the_caller(
        callsec: CallsecProcess, carrier: Carrier, ari_a: aiohttp.ClientSession) -> None:
    call, code, channel = await call_for_a_code(callsec, carrier, ari_a, "Max Muster")
    wrong = "0" * len(code) if code != "0" * len(code) else "1" * len(code)
    for _ in range(5):
        await call.send_dtmf(wrong + "#", between_ms=80, duration_ms=80)
        await asyncio.sleep(0.3)
    assert await wait_var(ari_a, channel, "CALLSEC_RESULT", timeout=30) == "locked"
    await call.hangup()


async def test_resend_sends_the_same_code(
        callsec: CallsecProcess, carrier: Carrier, ari_a: aiohttp.ClientSession) -> None:
    mobile = fresh_mobile()
    callsec.add_customer(name="Resend Tester", mobile=mobile)
    before = len(callsec.outbox_messages())
    call = await carrier.call("1000", caller_id=mobile)
    await call.wait_up()
    first = code_from(await callsec.wait_message(before + 1))
    await call.send_dtmf("*")
    second = code_from(await callsec.wait_message(before + 2))
    assert first == second
    channel = await a_channel(ari_a, mobile, "1000")
    await call.send_dtmf(second + "#")
    assert await wait_var(ari_a, channel, "CALLSEC_RESULT") == "verified"
    await call.hangup()


async def test_unknown_caller_enters_customer_number_then_verifies(
        callsec: CallsecProcess, carrier: Carrier, ari_a: aiohttp.ClientSession) -> None:
    mobile = fresh_mobile()
    number = f"7{next(_numbers):07d}"
    callsec.add_customer(name="Unbekannt Anrufer", mobile=mobile, customer_number=number)
    withheld = "+493012345678"  # a landline that is on no account
    before = len(callsec.outbox_messages())
    call = await carrier.call("1000", caller_id=withheld)
    await call.wait_up()
    await asyncio.sleep(1.5)
    await call.send_dtmf(number + "#")
    message = await callsec.wait_message(before + 1)
    assert message["to"] == mobile  # the code goes to the number on the account, not the caller
    channel = await a_channel(ari_a, withheld, "1000")
    await call.send_dtmf(code_from(message) + "#")
    assert await wait_var(ari_a, channel, "CALLSEC_RESULT") == "verified"
    await call.hangup()


async def test_hangup_mid_flow_leaves_no_call_behind(
        callsec: CallsecProcess, carrier: Carrier) -> None:
    mobile = fresh_mobile()
    callsec.add_customer(name="Hang Up", mobile=mobile)
    before = len(callsec.outbox_messages())
    call = await carrier.call("1000", caller_id=mobile)
    await call.wait_up()
    await callsec.wait_message(before + 1)
    await call.send_dtmf("12")
    await call.hangup()
    async with asyncio.timeout(10):
        while "call finished: hangup" not in callsec.log_text():
            await asyncio.sleep(0.2)


async def test_connect_rings_the_agent_only_after_verification(
        callsec: CallsecProcess, carrier: Carrier, agents: AgentPhones,
        ari_a: aiohttp.ClientSession) -> None:
    mobile = fresh_mobile()
    callsec.add_customer(name="Connect Me", mobile=mobile)
    before = len(callsec.outbox_messages())
    call = await carrier.call("2000", caller_id=mobile)
    await call.wait_up()
    code = code_from(await callsec.wait_message(before + 1))
    await asyncio.sleep(2.0)
    with pytest.raises(LookupError):
        agents.latest("agent100")  # nobody rang while the caller was unverified
    await call.send_dtmf(code + "#")
    agent = await agents.wait_ringing("agent100", timeout=20)
    assert agent is not None
    assert not agent.dtmf  # the code typed before connect never reached the agent's phone
    await call.hangup()
    await agents.wait_hangup("agent100", timeout=10)
