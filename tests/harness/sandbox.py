"""Where the real-Asterisk sandbox lives and how to make sure it runs.

Instance A is the PBX under test, instance B the carrier and the agents' phones
(``tools/sandbox.sh``). Ports and credentials come from the environment with the
defaults of CONTRACT.md, the same variables ``tools/sandbox.sh`` reads.
"""

from __future__ import annotations

import base64
import os
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SANDBOX_SCRIPT = REPO_ROOT / "tools" / "sandbox.sh"
ASTERISK_ROOT = Path(os.environ.get("CALLSEC_ASTERISK_ROOT", "/var/cache/callsec/asterisk-root"))
SANDBOX_DIR = ASTERISK_ROOT / "srv" / "callsec"


def _port(name: str, default: int) -> int:
    return int(os.environ.get(name, str(default)))


A_ARI_PORT = _port("CALLSEC_SANDBOX_A_ARI_PORT", 18088)
A_AMI_PORT = _port("CALLSEC_SANDBOX_A_AMI_PORT", 15038)
A_SIP_PORT = _port("CALLSEC_SANDBOX_A_SIP_PORT", 15060)
B_ARI_PORT = _port("CALLSEC_SANDBOX_B_ARI_PORT", 18089)
B_SIP_PORT = _port("CALLSEC_SANDBOX_B_SIP_PORT", 15070)
AGI_PORT = _port("CALLSEC_SANDBOX_AGI_PORT", 4573)

A_ARI_USER, A_ARI_PASSWORD = "callsec", "callsec"
B_ARI_USER, B_ARI_PASSWORD = "carrier", "carrier"
A_AMI_USER, A_AMI_SECRET = "callsec", "callsec"

#: Caller ID the carrier uses when a test names none (a test number, not a real one).
DEFAULT_CALLER_ID = "+4915112345678"
#: The agents' phones: endpoints on A, answered on B in app ``agents``.
AGENT_ENDPOINTS = tuple(f"agent{n}" for n in range(100, 110))


class SandboxUnavailable(RuntimeError):
    """The sandbox is not running and ``tools/sandbox.sh up`` could not start it."""


@dataclass(frozen=True, kw_only=True)
class Instance:
    """One Asterisk of the sandbox, as the harness reaches it over ARI and the file system."""

    name: str
    ari_port: int
    username: str
    password: str

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.ari_port}"

    @property
    def directory(self) -> Path:
        return SANDBOX_DIR / self.name

    @property
    def log_dir(self) -> Path:
        return self.directory / "log"

    @property
    def spool_dir(self) -> Path:
        return self.directory / "spool"

    @property
    def recording_dir(self) -> Path:
        """Where ``POST /channels/{id}/record`` writes ``<name>.<format>``."""
        return self.spool_dir / "recording"

    @property
    def monitor_dir(self) -> Path:
        """Where MixMonitor writes relative file names."""
        return self.spool_dir / "monitor"

    @property
    def full_log(self) -> Path:
        return self.log_dir / "full"

    @property
    def basic_auth(self) -> str:
        """The ``Authorization`` header value for ARI."""
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return f"Basic {token}"

    def ari_answers(self, timeout: float = 2.0) -> bool:
        """True when ``GET /ari/asterisk/info`` answers 200 (plain urllib, no event loop)."""
        request = urllib.request.Request(
            f"{self.base_url}/ari/asterisk/info", headers={"Authorization": self.basic_auth}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False


A = Instance(name="a", ari_port=A_ARI_PORT, username=A_ARI_USER, password=A_ARI_PASSWORD)
B = Instance(name="b", ari_port=B_ARI_PORT, username=B_ARI_USER, password=B_ARI_PASSWORD)


@dataclass(frozen=True, kw_only=True)
class Sandbox:
    a: Instance = A
    b: Instance = B


def dtmf_mode(instance: Instance) -> str:
    """The ``dtmf_mode`` the running instance's trunk was rendered with (``rfc4733``, ...).

    ``CALLSEC_SANDBOX_DTMF_MODE=inband tools/sandbox.sh up`` restarts the sandbox in-band.
    """
    pjsip = instance.directory / "etc" / "pjsip.conf"
    for line in pjsip.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "dtmf_mode":
            return value.strip()
    raise LookupError(f"no dtmf_mode in {pjsip}")


def sandbox_running() -> bool:
    return A.ari_answers() and B.ari_answers()


def start_sandbox(timeout: float = 900.0) -> None:
    """Run ``tools/sandbox.sh up``; raise :class:`SandboxUnavailable` with its output on failure."""
    try:
        result = subprocess.run(
            [str(SANDBOX_SCRIPT), "up"], capture_output=True, text=True, timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxUnavailable(f"tools/sandbox.sh up failed: {exc}") from exc
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-3000:]
        raise SandboxUnavailable(f"tools/sandbox.sh up exited {result.returncode}:\n{output}")
    if not sandbox_running():
        raise SandboxUnavailable("tools/sandbox.sh up succeeded but ARI does not answer")


def ensure_sandbox() -> Sandbox:
    """Return the running sandbox, starting it when needed.

    When it cannot start: fail under CI (``CI`` set), otherwise skip the test with the reason.
    """
    if not sandbox_running():
        try:
            start_sandbox()
        except SandboxUnavailable as exc:
            if os.environ.get("CI"):
                pytest.fail(f"Asterisk sandbox unavailable: {exc}", pytrace=False)
            pytest.skip(f"Asterisk sandbox unavailable: {exc}")
    return Sandbox()
