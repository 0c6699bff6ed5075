"""PostgreSQL stopped while callsec serves real calls (its own throwaway cluster, on a port of
its own, so the suite's shared ``tools/pg.sh`` cluster is never touched).

- The database is down when a verification needs it (customer look-up): the caller hears
  "verification failed, goodbye", gets ``CALLSEC_RESULT=failed`` and goes back to the dialplan.
- The database goes down after the code was sent: the code check needs no database, the caller
  is verified; the result cannot be written then (callsec says so in its log), and once
  PostgreSQL is back callsec writes it, with its audit entry, without a restart.
- Once PostgreSQL is back, callsec serves (and records) the next call without a restart.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import create_engine, text

from tests.harness.callsec_proc import REPO, CallsecProcess, code_from
from tests.harness.carrier import Carrier
from tests.harness.sandbox import Sandbox
from tests.integration.capture_env import wait_no_other_callsec
from tests.integration.test_delivery_faults_sandbox import wait_dialplan
from tests.integration.test_verification_sandbox import (
    a_channel,
    call_for_a_code,
    fresh_mobile,
    wait_var,
)

pytestmark = [pytest.mark.sandbox, pytest.mark.postgres]
PORT = os.environ.get("CALLSEC_FAULTS_PG_PORT", "55499")
BASE = Path(f"/tmp/callsec-pg-faults-{PORT}")
PG_ENV = {**os.environ, "CALLSEC_PG_PORT": PORT, "CALLSEC_PG_DIR": str(BASE)}


def pg_sh(command: str) -> str:
    done = subprocess.run([str(REPO / "tools" / "pg.sh"), command], env=PG_ENV, check=True,
                          capture_output=True, text=True, timeout=600)
    return done.stdout.strip()


def pg_halt() -> None:
    """Stop the server but keep its data (``pg.sh stop`` would delete the cluster)."""
    pg_ctl = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))[-1]
    subprocess.run(["runuser", "-u", "postgres", "--", pg_ctl, "-D", str(BASE / "data"),
                    "-m", "fast", "-w", "stop"], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    url = pg_sh("start")
    try:
        yield url
    finally:
        pg_sh("stop")


@pytest.fixture(scope="module")
async def callsec(sandbox: Sandbox, pg_url: str,
                  register_secret: Callable[[str], None]) -> AsyncIterator[CallsecProcess]:
    engine = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:  # a fresh schema for every run
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    workdir = REPO / "var" / "test" / "database-faults"
    for sub in ("outbox", "keys"):
        shutil.rmtree(workdir / sub, ignore_errors=True)
    proc = CallsecProcess(workdir, env_overrides={
        "CALLSEC_DATABASE__URL": pg_url, "CALLSEC_AGI__ENABLED": "no",
        "CALLSEC_VERIFICATION__FIRST_DIGIT_TIMEOUT_SECONDS": "6"})
    await wait_no_other_callsec()
    await proc.start()
    try:
        yield proc
    finally:
        proc.stop()
        for message in proc.outbox_messages():  # every code goes to the leak scan
            register_secret(code_from(message))


def verifications(pg_url: str, call_id: str) -> list[str]:
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            return [str(r) for (r,) in conn.execute(text(
                "SELECT result FROM verifications WHERE call_id = :c"), {"c": call_id})]
    finally:
        engine.dispose()


async def verified_call(callsec: CallsecProcess, carrier: Carrier,
                        ari_a: aiohttp.ClientSession, mobile: str) -> str:
    before = len(callsec.outbox_messages())
    call = await carrier.call("1000", caller_id=mobile)
    await call.wait_up()
    code = code_from(await callsec.wait_message(before + 1))
    channel = await a_channel(ari_a, mobile, "1000")
    await asyncio.sleep(1.0)
    await call.send_dtmf(code + "#")
    assert await wait_var(ari_a, channel, "CALLSEC_RESULT") == "verified"
    await call.hangup()
    return channel


async def test_database_down_during_lookup_fails_with_a_prompt_then_recovers(
        callsec: CallsecProcess, carrier: Carrier, ari_a: aiohttp.ClientSession,
        pg_url: str) -> None:
    mobile, later = fresh_mobile(), fresh_mobile()
    callsec.add_customer(name="Datenbank Weg", mobile=mobile)
    callsec.add_customer(name="Datenbank Wieder", mobile=later)
    await verified_call(callsec, carrier, ari_a, later)  # the pool holds live connections
    await asyncio.to_thread(pg_halt)
    try:
        call = await carrier.call("1000", caller_id=mobile)
        await call.wait_up()
        up = time.monotonic()
        channel = await a_channel(ari_a, mobile, "1000")
        assert await wait_var(ari_a, channel, "CALLSEC_RESULT", timeout=15) == "failed"
        decided = time.monotonic()
        assert decided - up < 8.0
        back = await wait_dialplan(ari_a, channel, "Wait")
        assert back - decided > 1.0  # "verification failed" + "goodbye" played first
        await call.hangup()
        assert "database_unavailable" in callsec.log_text()
    finally:
        await asyncio.to_thread(pg_sh, "start")
    channel = await verified_call(callsec, carrier, ari_a, later)  # no restart needed
    async with asyncio.timeout(10):
        while verifications(pg_url, channel) != ["verified"]:
            await asyncio.sleep(0.3)
    assert callsec.proc is not None and callsec.proc.poll() is None


def audit_details(pg_url: str, call_id: str) -> list[str]:
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            return [str(r) for (r,) in conn.execute(text(
                "SELECT details FROM audit_log WHERE target = :c AND "
                "action = 'verification.finished'"), {"c": call_id})]
    finally:
        engine.dispose()


async def test_database_down_after_the_code_was_sent_verifies_and_records_the_result_later(
        callsec: CallsecProcess, carrier: Carrier, ari_a: aiohttp.ClientSession,
        pg_url: str) -> None:
    call, code, channel = await call_for_a_code(callsec, carrier, ari_a, "Halb Weg")
    await asyncio.to_thread(pg_halt)
    try:
        await call.send_dtmf(code + "#")
        assert await wait_var(ari_a, channel, "CALLSEC_RESULT") == "verified"
        await wait_dialplan(ari_a, channel, "Wait")
        await call.hangup()
        async with asyncio.timeout(10):
            while "verification result verified could not be recorded" not in \
                    callsec.log_text():
                await asyncio.sleep(0.2)
        finished = time.time()
        await asyncio.sleep(3.0)  # a retry or two while the database is still down
    finally:
        await asyncio.to_thread(pg_sh, "start")
    async with asyncio.timeout(20):  # retried every 5 s
        while verifications(pg_url, channel) != ["verified"]:
            await asyncio.sleep(0.5)
    assert "verification result recorded late" in callsec.log_text()
    details = audit_details(pg_url, channel)
    assert len(details) == 1 and '"recorded_late":true' in details[0].replace(" ", "")
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            at = conn.execute(text("SELECT finished_at FROM verifications WHERE call_id = :c"),
                              {"c": channel}).scalar_one()
    finally:
        engine.dispose()
    # the time the call finished, not the time the database took it
    assert at.replace(tzinfo=at.tzinfo or UTC).timestamp() < finished
