"""Brute force through the real door (issue #14, point 4): real SIP calls from B to A.

Every wrong code counts towards the customer's lockout whatever the call's ending (hang-up,
timeout), the counts and the TOTP replay steps live in the database (they survive a restart of
``callsec run``), and code sends are limited per customer whichever number the calls come from.
Thresholds and timeouts are lowered in this module's config overrides to keep the calls short.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator

import aiohttp
import pyotp
import pytest

from tests.harness.callsec_proc import CallsecProcess, code_from
from tests.harness.carrier import Carrier, CarrierCall
from tests.harness.sandbox import AGI_PORT, Sandbox
from tests.integration.capture_env import running_callsec, wait_no_other_callsec, workdir
from tests.integration.test_verification_sandbox import a_channel, a_var, wait_var

pytestmark = pytest.mark.sandbox
_numbers = itertools.count(700)
WRONG_CODES = 6  # lockout_wrong_codes in this module
CUSTOMER_SENDS = 3  # customer_code_sends_per_hour in this module


def fresh_number(prefix: str = "+49151") -> str:
    return f"{prefix}{os.getpid() % 1000:03d}{next(_numbers):05d}"


@pytest.fixture(scope="module")
async def callsec(sandbox: Sandbox, register_secret) -> AsyncIterator[CallsecProcess]:  # type: ignore[no-untyped-def]
    async with running_callsec(workdir("verification-abuse"), {
            "CALLSEC_VERIFICATION__LOCKOUT_WRONG_CODES": str(WRONG_CODES),
            "CALLSEC_VERIFICATION__CUSTOMER_CODE_SENDS_PER_HOUR": str(CUSTOMER_SENDS),
            "CALLSEC_VERIFICATION__FIRST_DIGIT_TIMEOUT_SECONDS": "2",
            "CALLSEC_VERIFICATION__INTER_DIGIT_TIMEOUT_SECONDS": "2",
            "CALLSEC_AGI__PORT": str(AGI_PORT)}, register_secret) as proc:
        yield proc


async def restart(callsec: CallsecProcess) -> None:
    """Stop ``callsec run`` and start a new process on the same database."""
    callsec.stop()
    await wait_no_other_callsec(timeout=30.0)  # else the next call may reach neither
    await callsec.start()


def wrong_for(code: str) -> str:
    return str((int(code[0]) + 1) % 10) + code[1:]


async def code_call(callsec: CallsecProcess, carrier: Carrier, ari_a: aiohttp.ClientSession,
                    mobile: str, exten: str = "1000") -> tuple[CarrierCall, str, str]:
    """The customer with ``mobile`` calls ``exten`` from it (1000: ``Stasis(callsec,verify)``,
    3000: FastAGI ``verify``); callsec has sent the code."""
    before = len(callsec.outbox_messages())
    call = await carrier.call(exten, caller_id=mobile)
    await call.wait_up()
    code = code_from(await callsec.wait_message(before + 1))
    return call, code, await a_channel(ari_a, mobile, exten)


async def type_wrong(call: CarrierCall, code: str, times: int) -> None:
    for _ in range(times):
        await call.send_dtmf(wrong_for(code) + "#", between_ms=80, duration_ms=80)
        await asyncio.sleep(0.5)


async def wrong_codes_then_hangup(callsec: CallsecProcess, carrier: Carrier,
                                  ari_a: aiohttp.ClientSession, mobile: str, times: int,
                                  *, last: bool = False, exten: str = "1000") -> None:
    """``times`` wrong codes (fewer than a call allows), then the caller hangs up; ``last``:
    the last of them reaches the lockout, which ends this call ``locked`` at once."""
    call, code, channel = await code_call(callsec, carrier, ari_a, mobile, exten)
    await type_wrong(call, code, times)
    await asyncio.sleep(0.5)
    if last:
        assert await wait_var(ari_a, channel, "CALLSEC_RESULT") == "locked"
    else:
        assert not await a_var(ari_a, channel, "CALLSEC_RESULT")  # still collecting
    await call.hangup()
    await asyncio.sleep(0.5)


async def next_call_result(callsec: CallsecProcess, carrier: Carrier,
                           ari_a: aiohttp.ClientSession, caller: str) -> str:
    call = await carrier.call("1000", caller_id=caller)
    await call.wait_up()
    channel = await a_channel(ari_a, caller, "1000")
    result = await wait_var(ari_a, channel, "CALLSEC_RESULT", timeout=30)
    await call.hangup()
    return result


async def test_wrong_codes_then_hangup_or_timeout_count_towards_lockout(
        callsec: CallsecProcess, carrier: Carrier, ari_a: aiohttp.ClientSession) -> None:
    mobile = fresh_number()
    callsec.add_customer(name="Rate Rater", mobile=mobile)
    await wrong_codes_then_hangup(callsec, carrier, ari_a, mobile, 3)
    # two wrong codes, then the caller types nothing until the verification times out
    call, code, channel = await code_call(callsec, carrier, ari_a, mobile)
    await type_wrong(call, code, 2)
    assert await wait_var(ari_a, channel, "CALLSEC_RESULT", timeout=30) == "timeout"
    await call.hangup()
    await wrong_codes_then_hangup(callsec, carrier, ari_a, mobile, 1, last=True)  # 6 in all
    before = len(callsec.outbox_messages())
    assert await next_call_result(callsec, carrier, ari_a, mobile) == "locked"
    assert len(callsec.outbox_messages()) == before  # no code for a locked customer


async def test_wrong_code_count_survives_a_restart(
        callsec: CallsecProcess, carrier: Carrier, ari_a: aiohttp.ClientSession) -> None:
    mobile = fresh_number()
    callsec.add_customer(name="Neu Start", mobile=mobile)
    await wrong_codes_then_hangup(callsec, carrier, ari_a, mobile, 4)
    await restart(callsec)
    await wrong_codes_then_hangup(callsec, carrier, ari_a, mobile, 2, last=True)
    await restart(callsec)
    assert await next_call_result(callsec, carrier, ari_a, mobile) == "locked"


async def test_wrong_codes_through_fastagi_and_stasis_count_towards_one_lockout(
        callsec: CallsecProcess, carrier: Carrier, ari_a: aiohttp.ClientSession) -> None:
    mobile = fresh_number()
    callsec.add_customer(name="Zwei Tueren", mobile=mobile)
    await wrong_codes_then_hangup(callsec, carrier, ari_a, mobile, 4, exten="3000")  # FastAGI
    await wrong_codes_then_hangup(callsec, carrier, ari_a, mobile, 2, last=True)  # Stasis
    assert await next_call_result(callsec, carrier, ari_a, mobile) == "locked"


async def test_code_sends_are_limited_per_customer_across_presented_numbers(
        callsec: CallsecProcess, carrier: Carrier, ari_a: aiohttp.ClientSession) -> None:
    """The customer's own mobile, then landlines on no account that type the customer number:
    once the customer has had CUSTOMER_SENDS codes, the next landline gets none (limits per
    presented number alone would send one)."""
    mobile, number = fresh_number(), f"7{next(_numbers):07d}"
    callsec.add_customer(name="Viel Anrufer", mobile=mobile, customer_number=number)
    call, _, _ = await code_call(callsec, carrier, ari_a, mobile)
    await call.hangup()
    for sent in range(1, CUSTOMER_SENDS + 1):
        landline = fresh_number("+49301")
        before = len(callsec.outbox_messages())
        call = await carrier.call("1000", caller_id=landline)
        await call.wait_up()
        await asyncio.sleep(1.5)
        await call.send_dtmf(number + "#")
        channel = await a_channel(ari_a, landline, "1000")
        if sent < CUSTOMER_SENDS:
            assert (await callsec.wait_message(before + 1))["to"] == mobile
            await call.hangup()
            continue
        assert await wait_var(ari_a, channel, "CALLSEC_RESULT", timeout=30) == \
            "delivery_failed"
        assert len(callsec.outbox_messages()) == before
        await call.hangup()
    assert mobile not in callsec.log_text()


async def test_authenticator_code_is_refused_when_replayed_after_a_restart(
        callsec: CallsecProcess, carrier: Carrier, ari_a: aiohttp.ClientSession) -> None:
    mobile = fresh_number()
    secret = pyotp.random_base32()
    result = callsec.cli("customers", "add", "--name", "Replay Opfer", "--mobile", mobile,
                         "--method", "totp", "--totp-secret-stdin",
                         stdin=secret + "\n")
    assert result.returncode == 0, result.stderr
    totp = pyotp.TOTP(secret)
    call = await carrier.call("1000", caller_id=mobile)
    await call.wait_up()
    channel = await a_channel(ari_a, mobile, "1000")
    await asyncio.sleep(1.5)
    used = totp.now()
    await call.send_dtmf(used + "#")
    assert await wait_var(ari_a, channel, "CALLSEC_RESULT") == "verified"
    await call.hangup()
    await restart(callsec)
    assert totp.verify(used, valid_window=1)  # still a valid code: only the replay check stops it
    call = await carrier.call("1000", caller_id=mobile)
    await call.wait_up()
    channel = await a_channel(ari_a, mobile, "1000")
    await asyncio.sleep(1.5)
    await call.send_dtmf(used + "#")
    await asyncio.sleep(1.5)
    assert await a_var(ari_a, channel, "CALLSEC_RESULT") in (None, "")  # refused: asked again
    await call.hangup()
