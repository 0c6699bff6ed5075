"""``callsec run`` with its KEKs in a PKCS#11 token (SoftHSM2): a real verified call on the
sandbox, so the token path is wired into the running product, not only into the CLI."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.harness.callsec_proc import REPO, CallsecProcess, code_from
from tests.harness.carrier import Carrier
from tests.harness.sandbox import Sandbox
from tests.harness.softhsm import SoftHsmToken, new_token
from tests.integration.test_verification_sandbox import a_channel, a_var, fresh_mobile, wait_var

pytestmark = pytest.mark.sandbox
PIN = "73915846"  # distinctive, so the log check below cannot match by chance


@pytest.fixture(scope="module")
def token() -> SoftHsmToken:
    workdir = REPO / "var" / "test" / "pkcs11"
    shutil.rmtree(workdir, ignore_errors=True)
    return new_token(workdir / "hsm", pin=PIN)


@pytest.fixture(scope="module")
async def callsec(sandbox: Sandbox, token: SoftHsmToken, register_secret  # type: ignore[no-untyped-def]
                  ) -> AsyncIterator[CallsecProcess]:
    proc = CallsecProcess(REPO / "var" / "test" / "pkcs11", env_overrides=token.env())
    proc.workdir.mkdir(parents=True, exist_ok=True)
    init = proc.cli("keys", "init")
    assert init.returncode == 0, init.stderr
    await proc.start()
    yield proc
    proc.stop()
    for message in proc.outbox_messages():
        register_secret(code_from(message))


async def test_a_caller_is_verified_while_the_keks_live_in_the_token(
        callsec: CallsecProcess, token: SoftHsmToken, carrier: Carrier,
        ari_a: aiohttp.ClientSession) -> None:
    mobile = fresh_mobile()
    ref = callsec.add_customer(name="Hanna Hsm", mobile=mobile)
    before = len(callsec.outbox_messages())
    call = await carrier.call("1000", caller_id=mobile)
    await call.wait_up()
    code = code_from(await callsec.wait_message(before + 1))
    channel = await a_channel(ari_a, mobile, "1000")
    await asyncio.sleep(1.0)
    await call.send_dtmf(code + "#")
    assert await wait_var(ari_a, channel, "CALLSEC_RESULT") == "verified"
    assert await a_var(ari_a, channel, "CALLSEC_CUSTOMER") == ref
    await call.hangup()
    # Every data key (the customer's, the call's) is wrapped by the token's KEK version 1;
    # the key ring directory holds no KEK file.
    assert token.labels() == ["callsec-kek-0001"]
    assert not list((callsec.workdir / "keys").glob("kek-*"))
    with sqlite3.connect(callsec.workdir / "callsec.db") as conn:
        versions = {v for (v,) in conn.execute("SELECT kek_version FROM keys")}
    assert versions == {1}
    log = callsec.log_text()
    assert "opened a session on PKCS#11 token callsec-test" in log
    assert PIN not in log
