"""The product's dialplan wrappers (dialplan/extensions_callsec.conf) on real calls into A.

A's sandbox numbers 1010, 2010, 3010, 4010 call the wrappers with ``lang=de`` (2010 also with
``policy=default`` before it: every argument must reach callsec, not only the first two), and
the wrappers read the Stasis app and the FastAGI address from A's ``[globals]``. Asterisk A
logs every prompt it plays with its language (``Playing 'callsec/...' (language 'de')``): the
German prompts are the proof that ``lang=de`` arrived. 2020 calls ``callsec-connect`` without a
target: nobody is dialled (the old wrapper called agent100), the dialplan logs a warning and
sets CALLSEC_RESULT=error, CALLSEC_ERROR=no_target.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.harness.agent import AgentPhones
from tests.harness.callsec_proc import REPO, CallsecProcess
from tests.harness.carrier import Carrier
from tests.harness.sandbox import A, Sandbox
from tests.integration.test_verification_sandbox import _remove, a_var, wait_var

pytestmark = pytest.mark.sandbox
_numbers = itertools.count(700)


def fresh_caller() -> str:
    """A number on no account: callsec asks for the customer number (a German prompt)."""
    return f"+49301{os.getpid() % 1000:03d}{next(_numbers):05d}"


@pytest.fixture(scope="module")
async def callsec(sandbox: Sandbox) -> AsyncIterator[CallsecProcess]:
    workdir = REPO / "var" / "test" / "dialplan-wrappers"
    for path in (workdir / "callsec.db", workdir / "outbox"):
        _remove(path)
    proc = CallsecProcess(workdir)
    await proc.start()
    yield proc
    proc.stop()


async def caller_channel(ari_a: aiohttp.ClientSession, caller: str,
                         timeout: float = 10.0) -> dict[str, Any]:
    """A's channel of this caller (inside a Gosub its extension is ``s``, not the number)."""
    async with asyncio.timeout(timeout):
        while True:
            async with ari_a.get("/ari/channels") as resp:
                for channel in await resp.json():
                    if channel["caller"]["number"] == caller:
                        return dict(channel)
            await asyncio.sleep(0.1)


async def prompts_played(channel_name: str, since: int,
                         timeout: float = 15.0) -> list[tuple[str, str]]:
    """(prompt, language) of the callsec prompts A played to this channel, once there is one.

    Only the log written after byte ``since`` counts: channel names repeat once A restarts (the
    in-band tests restart it), and an older call's prompts would be taken for this one's."""
    # ARI: "<chan> Playing 'callsec/x.slin' (language 'de')"; AGI: "<chan> Playing
    # 'callsec/x.slin' (escape_digits=...) (sample_offset 0) (language 'de')"
    pattern = re.compile(rf"<{re.escape(channel_name)}> Playing '(callsec/[^'.]+)[^']*'"
                         r"[^\n]*? \(language '([^']*)'\)")
    async with asyncio.timeout(timeout):
        while True:
            with A.full_log.open("rb") as log:
                log.seek(since)
                found = pattern.findall(log.read().decode(errors="replace"))
            if found:
                return found
            await asyncio.sleep(0.2)


@pytest.mark.parametrize("exten", ["1010", "2010", "3010", "4010"])
async def test_lang_de_given_to_a_wrapper_reaches_callsec_and_the_caller_hears_german(
        callsec: CallsecProcess, carrier: Carrier, ari_a: aiohttp.ClientSession,
        exten: str) -> None:
    caller = fresh_caller()
    logged_before = A.full_log.stat().st_size if A.full_log.exists() else 0
    call = await carrier.call(exten, caller_id=caller)
    await call.wait_up()
    channel = await caller_channel(ari_a, caller)
    played = await prompts_played(channel["name"], logged_before)
    assert played and all(lang == "de" for _prompt, lang in played), played
    await call.hangup()


async def test_connect_wrapper_without_a_target_dials_nobody_and_says_why(
        carrier: Carrier, agents: AgentPhones, ari_a: aiohttp.ClientSession) -> None:
    messages = A.log_dir / "messages"
    logged_before = messages.stat().st_size if messages.exists() else 0
    seen_before = agents.seen("agent100")
    caller = fresh_caller()
    call = await carrier.call("2020", caller_id=caller)  # nothing answers it: no wait_up
    channel = await caller_channel(ari_a, caller)
    assert await wait_var(ari_a, channel["id"], "CALLSEC_ERROR") == "no_target"
    assert await a_var(ari_a, channel["id"], "CALLSEC_RESULT") == "error"
    await asyncio.sleep(2.0)  # time for a wrong dial to ring
    assert agents.seen("agent100") == seen_before
    with messages.open("rb") as log:
        log.seek(logged_before)
        assert b"callsec-connect: no agent target" in log.read()
    await call.hangup()
