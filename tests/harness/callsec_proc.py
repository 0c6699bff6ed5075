"""Runs the real product: ``callsec run`` as a subprocess with its own config in a temp dir.

Tests talk to it only through its doors (the sandbox Asterisk, the HTTP API, the CLI, the
outbox the "phone" reads) and read its log file afterwards (the leak scan reads it too).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[2]
A_ARI = os.environ.get("CALLSEC_SANDBOX_A_ARI_URL", "http://127.0.0.1:18088")


@dataclass
class CallsecProcess:
    workdir: Path
    env_overrides: Mapping[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    #: ``callsec keys init`` ran (keys are created only on purpose, never implicitly).
    keys_ready: bool = False
    #: The ARI app ``callsec run`` registers (``[ari] app``; a cluster node has its own).
    app: str = "callsec"

    @property
    def config(self) -> Path:
        return REPO / "config" / "callsec.conf"

    @property
    def outbox(self) -> Path:
        return self.workdir / "outbox"

    @property
    def log_file(self) -> Path:
        return self.workdir / "log" / "callsec.log"

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.workdir / 'callsec.db'}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "CALLSEC_DATABASE__URL": self.db_url,
            "CALLSEC_CRYPTO__KEYRING_DIR": str(self.workdir / "keys"),
            "CALLSEC_SMS__OUTBOX_DIR": str(self.outbox),
            "CALLSEC_LOGGING__FILE": str(self.log_file),
            "CALLSEC_LOGGING__LEVEL": "DEBUG",
            "CALLSEC_WEB__PORT": env.get("CALLSEC_TEST_WEB_PORT", "8080"),
        })
        env.update(self.env_overrides)
        return env

    def init_keys(self) -> subprocess.CompletedProcess[str]:
        """``callsec keys init`` (idempotent): creates the key ring and records it."""
        result = self.raw_cli("keys", "init")
        self.keys_ready = result.returncode == 0
        return result

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """A ``callsec`` command; the first one runs ``callsec keys init`` before it."""
        if not self.keys_ready and args[:2] != ("keys", "init"):
            self.init_keys()
        return self.raw_cli(*args, stdin=stdin)

    def raw_cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "callsec_ari", "-c", str(self.config), *args],
                              env=self.env(), cwd=REPO, capture_output=True, text=True,
                              input=stdin, timeout=120)

    def add_customer(self, *, name: str, mobile: str, email: str = "", lang: str = "en",
                     method: str = "sms", customer_number: str = "") -> str:
        args = ["customers", "add", "--name", name, "--mobile", mobile, "--lang", lang,
                "--method", method]
        if email:
            args += ["--email", email]
        if customer_number:
            args += ["--customer-number", customer_number]
        result = self.cli(*args)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip().splitlines()[-1]

    async def start(self, timeout: float = 30.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        upgrade = self.cli("db", "upgrade")
        assert upgrade.returncode == 0, upgrade.stderr
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "callsec_ari", "-c", str(self.config), "run"],
            env=self.env(), cwd=REPO, stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / "stderr.log", "ab"))
        await self.wait_registered(timeout)

    async def wait_registered(self, timeout: float = 30.0) -> None:
        """Until A's ARI shows :attr:`app` with a websocket (callsec is connected)."""
        deadline = time.monotonic() + timeout
        headers = {"Authorization": aiohttp.encode_basic_auth("callsec", "callsec")}
        async with aiohttp.ClientSession(headers=headers) as session:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"callsec run exited with {self.proc.returncode}: "
                                       f"{(self.workdir / 'stderr.log').read_text()[-2000:]}")
                try:
                    async with session.get(f"{A_ARI}/ari/applications/{self.app}") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await _sleep(0.2)
        raise TimeoutError("callsec did not connect to Asterisk A in time")

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=5)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def outbox_messages(self) -> list[dict[str, str]]:
        if not self.outbox.exists():
            return []
        return [json.loads(p.read_text()) for p in sorted(self.outbox.glob("*.json"))]

    async def wait_message(self, count: int = 1, timeout: float = 15.0) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            messages = self.outbox_messages()
            if len(messages) >= count:
                return messages[count - 1]
            await _sleep(0.1)
        raise TimeoutError(f"no message #{count} in the outbox")

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


def code_from(message: Mapping[str, str]) -> str:
    """The phone reads the code out of the SMS body (the only run of 4 to 10 digits in it)."""
    import re

    found = re.findall(r"(?<![\d:])(\d{4,10})(?![\d:])", message["body"])
    assert len(found) == 1, "expected exactly one code in the message"
    return str(found[0])
