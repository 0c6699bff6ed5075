"""The callsec image, running in a container, takes a verified call from the sandbox.

``tools/container-check.sh`` (``make container-check``, a CI step after ``make test``) builds the
image with podman, runs ``db upgrade`` and ``keys init`` as one-shot containers on a state
volume, starts ``callsec run`` in a container on the host's network and then runs this module
with ``CALLSEC_CONTAINER`` (the running container's name), ``CALLSEC_CONTAINER_IMAGE`` and
``CALLSEC_CONTAINER_STATE`` (the state volume's host directory, where the "phone" reads the
outbox). Without them (e.g. in ``make integration``) every test here is skipped.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from tests.harness.callsec_proc import code_from
from tests.harness.carrier import Carrier
from tests.integration.test_verification_sandbox import a_channel, a_var, wait_var

CONTAINER = os.environ.get("CALLSEC_CONTAINER", "")
IMAGE = os.environ.get("CALLSEC_CONTAINER_IMAGE", "")
STATE = Path(os.environ.get("CALLSEC_CONTAINER_STATE", "/nonexistent"))
WEB = "http://127.0.0.1:8080"
pytestmark = [pytest.mark.sandbox,
              pytest.mark.skipif(not CONTAINER, reason="no running callsec container "
                                 "(make container-check sets CALLSEC_CONTAINER)")]
_numbers = itertools.count(1)


def in_container(*args: str) -> subprocess.CompletedProcess[str]:
    """A ``callsec`` command inside the running container (the image's entrypoint's config)."""
    return subprocess.run(["podman", "exec", CONTAINER, "callsec", "-c",
                           "/etc/callsec/callsec.conf", *args],
                          capture_output=True, text=True, timeout=60)


def outbox() -> list[Path]:
    return sorted((STATE / "var" / "outbox").glob("*.json"))


async def wait_code(before: int, timeout: float = 15.0) -> str:
    import json

    async with asyncio.timeout(timeout):
        while len(outbox()) <= before:
            await asyncio.sleep(0.1)
    return code_from(json.loads(outbox()[before].read_text()))


async def test_container_answers_healthz_and_its_healthcheck_passes() -> None:
    async with aiohttp.ClientSession() as session, session.get(f"{WEB}/healthz") as resp:
        assert resp.status == 200
    check = subprocess.run(["podman", "healthcheck", "run", CONTAINER],
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


async def test_caller_verified_by_sms_code_through_the_container(
        carrier: Carrier, ari_a: aiohttp.ClientSession,
        register_secret: Callable[[str], None]) -> None:
    mobile = f"+49152{os.getpid() % 1000:03d}{next(_numbers):05d}"
    added = in_container("customers", "add", "--name", "Container Kunde", "--mobile", mobile,
                         "--lang", "en", "--method", "sms")
    assert added.returncode == 0, added.stderr
    ref = added.stdout.strip().splitlines()[-1]
    before = len(outbox())
    call = await carrier.call("1000", caller_id=mobile)
    await call.wait_up()
    code = await wait_code(before)
    register_secret(code)
    channel = await a_channel(ari_a, mobile, "1000")
    await asyncio.sleep(1.0)  # the caller listens to "we have sent a code..." for a moment
    await call.send_dtmf(code + "#")
    assert await wait_var(ari_a, channel, "CALLSEC_RESULT") == "verified"
    assert await a_var(ari_a, channel, "CALLSEC_CUSTOMER") == ref
    await call.hangup()


@pytest.mark.skipif(not IMAGE, reason="CALLSEC_CONTAINER_IMAGE not set")
def test_image_refuses_to_run_on_a_fresh_volume_before_keys_init(tmp_path: Path) -> None:
    """A fresh state volume: ``run`` exits 2 and makes neither keys nor a database itself
    (keys are made only on purpose, by the one-shot ``callsec keys init``)."""
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, 10001, 10001)
    result = subprocess.run(
        ["podman", "run", "--rm", "--network=host", "--no-healthcheck", "-v", f"{state}:/var/lib/callsec",
         "-e", "CALLSEC_WEB__PORT=18099", "-e", "CALLSEC_AGI__PORT=14599",
         "-e", "CALLSEC_ARI__URLS=http://127.0.0.1:9", IMAGE, "run"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "keys init" in result.stderr
    assert list(state.rglob("*")) == []


def test_image_carries_the_assets_install_assets_copies() -> None:
    """The image's wheel was built by setup.py's hook (sox in the build stage): prompts in every
    native format and the dialplan are there for ``callsec install-assets``."""
    script = ("d=$(mktemp -d) && mkdir $d/s $d/d && "
              "callsec install-assets --sounds-dir $d/s --dialplan-dir $d/d >/dev/null && "
              "ls $d/s/en/callsec $d/d")
    result = subprocess.run(["podman", "exec", CONTAINER, "sh", "-c", script],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    names = result.stdout.split()
    assert "extensions_callsec.conf" in names
    for ext in ("ulaw", "alaw", "g722", "sln16"):
        assert any(name.endswith(f".{ext}") for name in names), ext
