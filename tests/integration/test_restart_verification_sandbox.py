"""callsec killed with SIGKILL while a caller is in the middle of a verification, then started
again, on a real SIP call. The caller sits in Stasis in no bridge, so the bridge-based adoption
cannot find it; the restarted callsec must: apologise ("there was a technical problem, let us
start again"), start the verification from the beginning (a new code goes out), verify the
caller with it, and close the dead attempt's open record as ``error`` (reason ``interrupted``,
with an audit entry)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from tests.harness.callsec_proc import CallsecProcess, code_from
from tests.harness.carrier import Carrier
from tests.harness.sandbox import A, Sandbox
from tests.integration.capture_checks import LogTail, find_leaks
from tests.integration.capture_env import a_channel, running_callsec, workdir
from tests.integration.test_restart_sandbox import wait_log
from tests.integration.test_verification_sandbox import fresh_mobile, wait_var

pytestmark = pytest.mark.sandbox


@pytest.fixture
async def callsec(sandbox: Sandbox,
                  register_secret: Callable[[str], None]) -> AsyncIterator[CallsecProcess]:
    async with running_callsec(workdir("restart-verification"), {
            "CALLSEC_AGI__ENABLED": "no", "CALLSEC_VERIFICATION__FIRST_DIGIT_TIMEOUT_SECONDS": "15"},
            register_secret) as proc:
        yield proc


def rows(proc: CallsecProcess, call_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The call's verification records (oldest first) and its verification audit entries."""
    with sqlite3.connect(f"file:{proc.workdir / 'callsec.db'}?mode=ro", uri=True) as db:
        db.row_factory = sqlite3.Row
        records = [dict(r) for r in db.execute(
            "SELECT id, result, attempts, finished_at FROM verifications WHERE call_id = ? "
            "ORDER BY started_at", (call_id,))]
        audit = [json.loads(r["details"]) for r in db.execute(
            "SELECT details FROM audit_log WHERE target = ? AND action = 'verification.finished'"
            " ORDER BY seq", (call_id,))]
    return records, audit


async def test_sigkill_mid_verification_then_restart_starts_the_caller_over_and_verifies(
        callsec: CallsecProcess, carrier: Carrier, ari_a: aiohttp.ClientSession) -> None:
    mobile = fresh_mobile()
    callsec.add_customer(name="Abgestuerzt Neustart", mobile=mobile)
    before = len(callsec.outbox_messages())
    call = await carrier.call("1000", caller_id=mobile)
    await call.wait_up(timeout=15)
    first = code_from(await callsec.wait_message(before + 1))
    channel = await a_channel(ari_a, mobile, "1000")
    call_id = str(channel["id"])
    await asyncio.sleep(1.0)
    await call.send_dtmf(first[:2])  # half-typed when callsec dies

    callsec.kill()  # SIGKILL: no clean-up of any kind
    killed = time.monotonic()
    records, _ = rows(callsec, call_id)
    assert [(r["result"], r["finished_at"]) for r in records] == [(None, None)]  # open
    async with ari_a.get(f"/ari/channels/{call_id}") as resp:
        stranded = await resp.json()
    assert stranded["dialplan"]["app_name"] == "Stasis"  # still in Stasis, nobody listening
    assert stranded["dialplan"]["app_data"] == "callsec,verify"

    tail, asterisk = LogTail(callsec.log_file), LogTail(A.full_log)
    await callsec.start()
    started = time.monotonic()
    await wait_log(tail, "restarting flow verify")
    second = code_from(await callsec.wait_message(before + 2, timeout=20))  # a new attempt
    new_code_s = time.monotonic() - started
    async with asyncio.timeout(10):
        while b"callsec/verification-restarted" not in asterisk.read():
            await asyncio.sleep(0.2)
    assert f"<{channel['name']}> Playing 'callsec/verification-restarted".encode() in \
        asterisk.read()  # the caller heard the apology
    await asyncio.sleep(1.0)
    typed = time.monotonic()
    await call.send_dtmf(second + "#")
    assert await wait_var(ari_a, call_id, "CALLSEC_RESULT") == "verified"
    print("fault: SIGKILL mid-verification:", json.dumps({
        "restart_to_new_code_s": round(new_code_s, 2),
        "kill_to_new_code_s": round(time.monotonic() - killed, 2),
        "typed_to_verified_s": round(time.monotonic() - typed, 2)}))

    records, audit = rows(callsec, call_id)
    assert [(r["result"], r["attempts"]) for r in records] == [("error", 0), ("verified", 1)]
    assert all(r["finished_at"] is not None for r in records)
    assert [(a["verification_id"], a["result"], a.get("reason")) for a in audit] == [
        (records[0]["id"], "error", "interrupted"), (records[1]["id"], "verified", None)]
    assert "closed 1 verification record(s) a previous callsec left open" in callsec.log_text()
    await call.hangup()
    assert find_leaks([first, second, mobile], {"log": callsec.log_file.read_bytes()}) == []
