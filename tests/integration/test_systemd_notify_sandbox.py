"""``callsec run`` as a systemd ``Type=notify`` service, through the real process: READY=1 once
ARI is connected and the HTTP API listens, WATCHDOG=1 at half of ``$WATCHDOG_USEC``, SIGHUP
reopens a log file logrotate moved, STOPPING=1 on SIGTERM. The notify socket is the test's own
(what systemd would bind). Binds 8080: run under ``flock /tmp/callsec-sandbox.lock``."""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import time
from pathlib import Path

import aiohttp
import pytest

from tests.harness.callsec_proc import REPO, CallsecProcess
from tests.harness.sandbox import Sandbox

pytestmark = [pytest.mark.sandbox, pytest.mark.asyncio]


async def next_state(sock: socket.socket, wanted: str, timeout: float = 20.0) -> list[str]:
    """Datagrams until one holds ``wanted`` (each datagram: newline-separated assignments)."""
    loop = asyncio.get_running_loop()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, 4096), deadline - time.monotonic())
        except TimeoutError:
            break
        seen += data.decode().splitlines()
        if wanted in seen:
            return seen
    raise TimeoutError(f"no {wanted} (got {seen})")


async def wait_for_file(path: Path, text: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in (content := path.read_text(errors="replace")):
            return content
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{text!r} not in {path}")


async def test_run_notifies_ready_then_watchdog_reopens_logs_on_sighup_and_says_stopping(
        sandbox: Sandbox) -> None:
    workdir = REPO / "var" / "test" / "systemd-notify"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    notify_path = workdir / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(notify_path))
        sock.setblocking(False)
        proc = CallsecProcess(workdir, env_overrides={
            "CALLSEC_AGI__ENABLED": "no", "NOTIFY_SOCKET": str(notify_path),
            "WATCHDOG_USEC": "1000000"})  # a ping every 0.5 s
        await proc.start()
        try:
            seen = await next_state(sock, "READY=1")
            async with aiohttp.ClientSession() as http:  # READY means the HTTP API listens
                async with http.get("http://127.0.0.1:8080/healthz") as resp:
                    assert resp.status == 200
            assert "WATCHDOG=1" in seen or await next_state(sock, "WATCHDOG=1")
            await next_state(sock, "WATCHDOG=1", timeout=3.0)  # and it keeps pinging
            proc.log_file.rename(proc.log_file.with_name("callsec.log.1"))  # logrotate
            assert proc.proc is not None
            proc.proc.send_signal(signal.SIGHUP)
            await wait_for_file(proc.log_file, "SIGHUP: 1 log file(s) reopened")
            assert proc.proc.poll() is None  # SIGHUP does not stop it
        finally:
            assert proc.stop() == 0
        assert "STOPPING=1" in await next_state(sock, "STOPPING=1", timeout=5.0)
