"""FastAGI trusts only Asterisk (#14 point 5): attacks through the real door.

A running ``callsec run`` (``[agi] allowed_peers = 127.0.0.1``: the sandbox Asterisk connects
from there) gets raw TCP FastAGI clients that speak the AGI environment protocol like Asterisk
does, answer every command and type digits, but are not Asterisk:

- a forged session claiming a customer's caller ID with an ``agi_uniqueid`` Asterisk does not
  know: no code is sent (the SMS outbox stays empty), the session is closed, an
  ``agi.session_refused`` audit row says why;
- a forged self-service capture: no vault item, no capture row;
- a forged session naming a real channel on A (its id and name) with another caller ID, and
  one with that channel's own caller ID while the channel runs no AGI: both refused;
- a peer outside ``allowed_peers`` (127.0.0.2; loopback is all of 127/8) is closed before it
  sent a byte, and a flood of such connections writes a bounded number of audit rows.

The real AGI calls (3000 verify, 4000 capture) go through the same check in
``test_agi_sandbox.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from callsec_ari.agi.protocol import parse_args
from tests.harness.callsec_proc import CallsecProcess
from tests.harness.local import LocalCaller
from tests.harness.sandbox import AGI_PORT, Sandbox
from tests.integration.capture_env import (
    expiry,
    fresh_caller,
    rare_number,
    running_callsec,
    visa,
    workdir,
)

pytestmark = pytest.mark.sandbox
WORKDIR = workdir("agi-trust")


@pytest.fixture(scope="module")
async def callsec(sandbox: Sandbox, register_secret: Callable[[str], None]
                  ) -> AsyncIterator[CallsecProcess]:
    async with running_callsec(WORKDIR, {
            "CALLSEC_AGI__PORT": str(AGI_PORT),
            "CALLSEC_AGI__ALLOWED_PEERS": "127.0.0.1",
            "CALLSEC_VERIFICATION__FIRST_DIGIT_TIMEOUT_SECONDS": "8"}, register_secret) as proc:
        yield proc


# --- a FastAGI client that is not Asterisk -----------------------------------------------------

def environment(*, script: str, uniqueid: str, channel: str, callerid: str) -> bytes:
    lines = [
        "agi_network: yes", f"agi_network_script: {script}",
        f"agi_request: agi://127.0.0.1:{AGI_PORT}/{script}", f"agi_channel: {channel}",
        "agi_language: en", "agi_type: PJSIP", f"agi_uniqueid: {uniqueid}",
        "agi_version: 22.0.0", f"agi_callerid: {callerid}", "agi_calleridname: Forged",
        "agi_callingpres: 0", "agi_context: sandbox", "agi_extension: 3000",
        "agi_priority: 2", "agi_enhanced: 0.0", "agi_accountcode: ",
        "agi_threadid: 140000000000001",
    ]
    return ("\n".join(lines) + "\n\n").encode()


class ForgedSession:
    """Plays Asterisk's end: every command succeeds; ``keys`` are typed one per
    ``WAIT FOR DIGIT`` once a prompt was played. :attr:`commands` is what callsec sent."""

    def __init__(self, keys: str = "") -> None:
        self.keys = list(keys)
        self.commands: list[list[str]] = []
        self.closed_after: float | None = None

    async def run(self, head: bytes, *, source: str = "127.0.0.1", limit: float = 12.0) -> None:
        """Connect from ``source``, send ``head``, answer until callsec closes (or ``limit``)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", AGI_PORT,
                                                       local_addr=(source, 0))
        started = time.monotonic()
        try:
            with contextlib.suppress(ConnectionError):
                writer.write(head)
                await writer.drain()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(limit):
                    await self._answer(reader, writer)
                    self.closed_after = time.monotonic() - started
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        prompted = False
        while True:
            try:
                raw = await reader.readline()
            except ConnectionError:
                return
            if not raw:
                return
            argv = parse_args(raw.decode())
            self.commands.append(argv)
            if argv[:3] == ["WAIT", "FOR", "DIGIT"]:
                if prompted and self.keys:
                    await asyncio.sleep(0.1)  # a repeated key within 60 ms is one key
                    reply = f"200 result={ord(self.keys.pop(0))}"
                else:
                    await asyncio.sleep(0.05)
                    reply = "200 result=0"
            elif argv[:2] == ["STREAM", "FILE"]:
                prompted = True
                reply = "200 result=0 endpos=8000"
            elif argv[:2] == ["GET", "VARIABLE"] or argv == ["ANSWER"]:
                reply = "200 result=0"
            else:
                reply = "200 result=1"
            try:
                writer.write((reply + "\n").encode())
                await writer.drain()
            except ConnectionError:
                return


def audit_rows(action: str) -> list[dict[str, Any]]:
    with contextlib.closing(sqlite3.connect(f"file:{WORKDIR / 'callsec.db'}?mode=ro",
                                            uri=True)) as db:
        rows = db.execute("SELECT target, details FROM audit_log WHERE action = ? ORDER BY seq",
                          (action,)).fetchall()
    return [{"target": target, **json.loads(details)} for target, details in rows]


def count(table: str) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{WORKDIR / 'callsec.db'}?mode=ro",
                                            uri=True)) as db:
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.1)


# --- (1) forged sessions with a uniqueid Asterisk does not know --------------------------------

async def test_forged_session_claiming_a_customers_caller_id_sends_no_code(
        callsec: CallsecProcess) -> None:
    mobile = fresh_caller()
    callsec.add_customer(name="Forged Target", mobile=mobile)
    before = len(callsec.outbox_messages())
    forged = ForgedSession()
    await forged.run(environment(script="verify", uniqueid="1718000000.4242",
                                 channel="PJSIP/carrier-00004242", callerid=mobile))
    await asyncio.sleep(1.0)  # a code send would have reached the outbox by now
    assert len(callsec.outbox_messages()) == before
    assert forged.closed_after is not None and forged.closed_after < 3.0  # closed, not served
    assert forged.commands == []  # not even ANSWER
    await eventually(lambda: any(row["target"] == "agi-1718000000.4242"
                                 for row in audit_rows("agi.session_refused")))
    row = next(r for r in audit_rows("agi.session_refused")
               if r["target"] == "agi-1718000000.4242")
    assert row["reason"] == "no_such_channel"
    assert row["peer"] == "127.0.0.1"
    assert mobile not in json.dumps(audit_rows("agi.session_refused"))
    assert mobile not in callsec.log_text()


async def test_forged_self_service_capture_writes_no_vault_item(
        callsec: CallsecProcess, register_secret: Callable[[str], None]) -> None:
    card, exp, cvv = visa(), expiry(), rare_number(3)
    register_secret(card)
    vault_before, captures_before = count("vault_items"), count("captures")
    forged = ForgedSession(keys=card + "#" + exp + cvv)
    await forged.run(environment(script="capture?fields=card_number,expiry,cvv",
                                 uniqueid="1718000000.4343", channel="PJSIP/carrier-00004343",
                                 callerid=fresh_caller()))
    assert count("vault_items") == vault_before
    assert count("captures") == captures_before
    assert forged.closed_after is not None and forged.closed_after < 3.0
    assert [argv for argv in forged.commands if argv[:2] == ["SET", "VARIABLE"]] == []
    await eventually(lambda: any(row["target"] == "agi-1718000000.4343"
                                 for row in audit_rows("agi.session_refused")))


# --- (2) forged sessions naming a real channel on A --------------------------------------------

async def real_channel(ari_a: aiohttp.ClientSession, channel_id: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            async with ari_a.get(f"/ari/channels/{channel_id}") as resp:
                if resp.status == 200:
                    return dict(await resp.json())
            await asyncio.sleep(0.1)


async def test_forged_session_naming_a_real_channel_with_another_caller_id_is_refused(
        callsec: CallsecProcess, local_caller: LocalCaller,
        ari_a: aiohttp.ClientSession) -> None:
    mobile = fresh_caller()
    callsec.add_customer(name="Forged Real Channel", mobile=mobile)
    stranger = fresh_caller()
    call = await local_caller.call("1000", caller_id=stranger)  # a real call, no customer
    channel = await real_channel(ari_a, call.peer_id)
    before = len(callsec.outbox_messages())
    for claimed, reason in ((mobile, "caller_id_mismatch"), (stranger, "not_in_agi")):
        forged = ForgedSession()
        await forged.run(environment(script="verify", uniqueid=call.peer_id,
                                     channel=channel["name"], callerid=claimed))
        assert len(callsec.outbox_messages()) == before
        assert forged.closed_after is not None and forged.closed_after < 3.0
        assert forged.commands == []
        await eventually(lambda r=reason: any(
            row["target"] == f"agi-{call.peer_id}" and row["reason"] == r
            for row in audit_rows("agi.session_refused")))
    await asyncio.sleep(1.0)
    assert len(callsec.outbox_messages()) == before
    log = callsec.log_text()
    assert mobile not in log and stranger not in log


# --- (3) peers outside allowed_peers -----------------------------------------------------------

def connect_from(source: str, *, send: bytes = b"") -> tuple[bytes, float]:
    """A blocking client bound to ``source``: what it read until EOF and how long that took."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", AGI_PORT), timeout=5.0,
                                  source_address=(source, 0)) as sock:
        received = b""
        with contextlib.suppress(ConnectionError):
            if send:
                sock.sendall(send)
            while chunk := sock.recv(4096):
                received += chunk
    return received, time.monotonic() - started


async def test_peer_outside_allowed_peers_is_closed_before_it_sends_the_environment(
        callsec: CallsecProcess) -> None:
    # nothing sent: an AGI server would wait for the environment (5 s); callsec closes at once
    received, took = await asyncio.to_thread(connect_from, "127.0.0.2")
    assert received == b"" and took < 1.0
    mobile = fresh_caller()
    callsec.add_customer(name="Peer Target", mobile=mobile)
    before = len(callsec.outbox_messages())
    forged = ForgedSession()
    await forged.run(environment(script="verify", uniqueid="1718000000.4444",
                                 channel="PJSIP/carrier-00004444", callerid=mobile),
                     source="127.0.0.2")
    assert forged.commands == []
    await eventually(lambda: any(row["target"] == "127.0.0.2"
                                 for row in audit_rows("agi.peer_refused")))
    assert len(callsec.outbox_messages()) == before
    # no session was even looked at: the uniqueid never reaches the audit or the log
    assert not any(row["target"] == "agi-1718000000.4444"
                   for row in audit_rows("agi.session_refused"))
    assert "1718000000.4444" not in callsec.log_text()


async def test_a_flood_of_refused_connections_writes_a_bounded_audit(
        callsec: CallsecProcess) -> None:
    for _ in range(300):
        received, _took = await asyncio.to_thread(connect_from, "127.0.0.3")
        assert received == b""
    await asyncio.sleep(1.0)
    rows = [row for row in audit_rows("agi.peer_refused") if row["target"] == "127.0.0.3"]
    assert 1 <= len(rows) <= 5, rows  # the rest is counted, written once the minute ends
