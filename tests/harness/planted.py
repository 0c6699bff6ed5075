"""A second sandbox with planted digit leaks, for ``callsec doctor`` and AMI tests.

The shared sandbox stays clean (``callsec doctor`` must pass on it); this one runs from a copy of
its root (``CALLSEC_ASTERISK_ROOT_SEED``: a ``tar`` copy of about 500 MB, made once and cached)
on other ports, with ``CALLSEC_SANDBOX_PLANT_LEAKS=1`` (``config/sandbox/plant/a/*.conf``
appended to A's config). Nobody else listens to its ARI apps, so tests may register ``callsec``
there and place Local calls without disturbing sessions that use the shared sandbox.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.harness.sandbox import ASTERISK_ROOT, SANDBOX_SCRIPT, Instance

PLANTED_ROOT = os.environ.get("CALLSEC_PLANTED_ROOT", f"{ASTERISK_ROOT}-planted")
PLANTED_ENV = {
    "CALLSEC_ASTERISK_ROOT": PLANTED_ROOT,
    "CALLSEC_ASTERISK_ROOT_SEED": str(ASTERISK_ROOT),
    "CALLSEC_SANDBOX_PLANT_LEAKS": "1",
    "CALLSEC_SANDBOX_LINK_REPO": "0",
    "CALLSEC_SANDBOX_A_ARI_PORT": "28088",
    "CALLSEC_SANDBOX_A_AMI_PORT": "25038",
    "CALLSEC_SANDBOX_A_SIP_PORT": "25060",
    "CALLSEC_SANDBOX_B_ARI_PORT": "28089",
    "CALLSEC_SANDBOX_B_SIP_PORT": "25070",
    "CALLSEC_SANDBOX_A_RTP": "21000-21100",
    "CALLSEC_SANDBOX_B_RTP": "21200-21300",
    "CALLSEC_SANDBOX_AGI_PORT": "24573",
    "CALLSEC_SANDBOX_DTMF_MODE": "rfc4733",
}
#: The planted AMI user that reads every event class (``config/sandbox/plant/a/manager.conf``).
MONITOR_USER = ("monitor", "monitor")


@dataclass(frozen=True)
class Planted:
    a: Instance
    ami_port: int

    @property
    def callsec_env(self) -> dict[str, str]:
        """Environment that points ``callsec`` (shipped config) at this instance."""
        return {"CALLSEC_ARI__URLS": self.a.base_url, "CALLSEC_AMI__PORT": str(self.ami_port)}


def _script(command: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **PLANTED_ENV}
    return subprocess.run([str(SANDBOX_SCRIPT), command], capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)


def planted_sandbox() -> Iterator[Planted]:
    """Start (or reuse) the planted instance; stop it afterwards. Skips (fails under CI) when
    it cannot start."""
    result = _script("up", 900)
    if result.returncode != 0:
        reason = (result.stdout + result.stderr).strip()[-2000:]
        if os.environ.get("CI"):
            pytest.fail(f"planted-leak sandbox did not start:\n{reason}", pytrace=False)
        pytest.skip(f"planted-leak sandbox did not start:\n{reason}")
    a = Instance(name="a", ari_port=int(PLANTED_ENV["CALLSEC_SANDBOX_A_ARI_PORT"]),
                 username="callsec", password="callsec")
    try:
        yield Planted(a=a, ami_port=int(PLANTED_ENV["CALLSEC_SANDBOX_A_AMI_PORT"]))
    finally:
        _script("down", 120)
