"""Hostile JSON against the real ``callsec run`` (its HTTP API on the configured port): a
body nested 100,000 levels deep is refused as invalid input (422), never a 500, and the
server's log holds no traceback for it."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator

import aiohttp
import pyotp
import pytest

from tests.harness.callsec_proc import REPO, CallsecProcess
from tests.harness.sandbox import Sandbox

pytestmark = pytest.mark.sandbox

DEPTH = 100_000
PASSWORD = "correct horse battery staple"
NESTED = {
    "array": "[" * DEPTH + "]" * DEPTH,
    "object": '{"a":' * DEPTH + "1" + "}" * DEPTH,
    "unclosed": "[" * DEPTH,
}


@pytest.fixture(scope="module")
async def callsec(sandbox: Sandbox) -> AsyncIterator[CallsecProcess]:
    workdir = REPO / "var" / "test" / "hostile-json"
    shutil.rmtree(workdir, ignore_errors=True)
    proc = CallsecProcess(workdir, env_overrides={"CALLSEC_WEB__MAX_BODY_BYTES": "1000000",
                                                  "CALLSEC_AGI__ENABLED": "no"})
    await proc.start()
    yield proc
    proc.stop()


def base(proc: CallsecProcess) -> str:
    return f"http://127.0.0.1:{proc.env()['CALLSEC_WEB__PORT']}"


async def post(proc: CallsecProcess, path: str, body: str,
               headers: dict[str, str] | None = None) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as session, session.post(
            base(proc) + path, data=body.encode(),
            headers={"Content-Type": "application/json", **(headers or {})}) as resp:
        return resp.status, dict(await resp.json())


def assert_no_traceback(proc: CallsecProcess) -> None:
    text = proc.log_text()
    assert "Traceback" not in text and "RecursionError" not in text and " crashed" not in text


@pytest.mark.parametrize("shape", sorted(NESTED))
async def test_deeply_nested_json_at_login_gets_422_and_no_traceback(
        callsec: CallsecProcess, shape: str) -> None:
    status, body = await post(callsec, "/api/v1/login", NESTED[shape])
    assert (status, body["error_id"]) == (422, "invalid_input"), body
    assert_no_traceback(callsec)


async def test_deeply_nested_json_from_a_signed_in_user_gets_422(
        callsec: CallsecProcess) -> None:
    added = callsec.cli("users", "add", "sven", "--role", "supervisor", "--team", "blue",
                        "--password-stdin", stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    uri = next(line for line in added.stdout.splitlines() if line.startswith("otpauth://"))
    otp = pyotp.TOTP(pyotp.parse_uri(uri).secret).now()
    status, login = await post(callsec, "/api/v1/login", '{"username": "sven", "password": "'
                               + PASSWORD + '", "otp": "' + otp + '"}')
    assert status == 200, login
    headers = {"Authorization": f"Bearer {login['token']}"}
    status, body = await post(callsec, "/api/v1/captures/CAP-1/reveal", NESTED["array"],
                              headers)
    assert (status, body["error_id"]) == (422, "invalid_input"), body
    assert_no_traceback(callsec)
