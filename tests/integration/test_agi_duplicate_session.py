"""Outside review of #14 point 5: a second FastAGI session for a channel whose real AGI session
callsec is already running (the same ``agi_uniqueid``, channel name and caller ID, all of which
check out against Asterisk) is refused before anything is sent to it, and audited like every
other refused session. Real call on A's 3000 (FastAGI verify), forged socket from loopback."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.harness.callsec_proc import CallsecProcess
from tests.harness.local import LocalCaller
from tests.integration.capture_env import fresh_caller
from tests.integration.test_agi_trust import (
    ForgedSession,
    audit_rows,
    environment,
    eventually,
    real_channel,
)
from tests.integration.test_agi_trust import callsec as callsec

pytestmark = pytest.mark.sandbox


async def test_a_second_session_for_a_channel_in_a_live_agi_session_is_refused_and_audited(
        callsec: CallsecProcess, local_caller: LocalCaller,
        ari_a: aiohttp.ClientSession) -> None:
    mobile = fresh_caller()
    callsec.add_customer(name="Doppelte Sitzung", mobile=mobile)
    before = len(callsec.outbox_messages())
    call = await local_caller.call("3000", caller_id=mobile)  # the real FastAGI session
    await callsec.wait_message(before + 1)  # the real flow runs and sent the code
    channel = await real_channel(ari_a, call.peer_id)
    assert channel["dialplan"]["app_name"].lower() == "agi"
    forged = ForgedSession(keys="000000#")
    await forged.run(environment(script="verify", uniqueid=call.peer_id,
                                 channel=channel["name"], callerid=mobile), limit=5.0)
    assert forged.commands == []  # not a single command for the second session
    await eventually(lambda: any(
        row["target"] == f"agi-{call.peer_id}" and row["reason"] == "duplicate_session"
        for row in audit_rows("agi.session_refused")))
    await asyncio.sleep(0.5)
    assert len(callsec.outbox_messages()) == before + 1
