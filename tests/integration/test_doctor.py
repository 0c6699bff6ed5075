"""``callsec doctor`` against real Asterisk 22: clean on the shared sandbox with the shipped
config, the planted leaks reported on the planted-leak instance (``config/sandbox/plant/a``),
``--json`` shape and exit codes; and DTMF events seen on callsec's own AMI connection."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from callsec_ari.config_check import load_settings
from callsec_ari.doctor import Severity, exit_code, run_checks
from callsec_ari.doctor.gather import gather
from tests.harness.ari import AriClient, is_event
from tests.harness.local import LocalCaller
from tests.harness.planted import MONITOR_USER, Planted, planted_sandbox
from tests.harness.sandbox import REPO_ROOT, Sandbox

pytestmark = pytest.mark.sandbox

SHIPPED_CONFIG = REPO_ROOT / "config" / "callsec.conf"
PLANTED_IDS = {"pjsip-direct-media", "pjsip-trunk-dtmf-mode", "logger-dtmf", "cel-dtmf",
               "ami-user-reads-dtmf"}


@pytest.fixture(scope="session")
def planted(sandbox: Sandbox) -> Iterator[Planted]:
    yield from planted_sandbox()


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLSEC_ARI__",
                                                                      "CALLSEC_AMI__"))}
    return {**env, **extra}


def doctor(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "callsec_ari", "-c", str(SHIPPED_CONFIG), "doctor", *args],
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT, env=env or _clean_env(),
        check=False)


def _findings(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    parsed = json.loads(result.stdout)
    assert isinstance(parsed, list)
    return parsed


def test_shared_sandbox_with_the_shipped_config_is_clean(sandbox: Sandbox) -> None:
    result = doctor("--json")
    findings = _findings(result)
    assert result.returncode == 0, findings
    assert {f["severity"] for f in findings} <= {"info"}


def test_text_report_of_the_clean_sandbox_says_clean(sandbox: Sandbox) -> None:
    result = doctor()
    assert result.returncode == 0
    assert "clean: no finding of severity warning or higher" in result.stdout


def test_planted_leaks_are_reported_with_where_and_exit_1(planted: Planted) -> None:
    result = doctor("--json", env=_clean_env(**planted.callsec_env))
    findings = _findings(result)
    assert result.returncode == 1
    by_id = {f["id"]: f for f in findings}
    assert PLANTED_IDS <= set(by_id)
    assert "agent190" in by_id["pjsip-direct-media"]["where"]
    assert "agent100" not in by_id["pjsip-direct-media"]["where"]
    assert "carrier2" in by_id["pjsip-trunk-dtmf-mode"]["where"]
    assert "pstn" not in by_id["pjsip-trunk-dtmf-mode"]["where"]  # pstn is auto
    assert "dtmf.log" in by_id["logger-dtmf"]["where"]
    assert "monitor" in by_id["ami-user-reads-dtmf"]["where"]
    assert "callsec" not in by_id["ami-user-reads-dtmf"]["where"]


def test_json_findings_have_exactly_the_documented_keys(planted: Planted) -> None:
    findings = _findings(doctor("--json", env=_clean_env(**planted.callsec_env)))
    assert findings
    for finding in findings:
        assert set(finding) == {"id", "severity", "what", "where", "fix"}
        assert finding["severity"] in {"info", "warning", "critical"}
        assert all(isinstance(v, str) and v for v in finding.values())
    severities = [Severity[f["severity"].upper()] for f in findings]
    assert severities == sorted(severities, reverse=True)  # most severe first


def test_text_report_gives_what_where_and_fix_for_each_finding(planted: Planted) -> None:
    result = doctor(env=_clean_env(**planted.callsec_env))
    assert result.returncode == 1
    for finding_id in PLANTED_IDS:
        block = result.stdout.split(finding_id, 1)[1]
        assert "what:" in block and "where:" in block and "fix:" in block
    assert "finding(s) where digits can leak" in result.stdout


def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def test_unreachable_asterisk_is_reported_and_exits_1() -> None:
    port = _closed_port()
    result = doctor("--json", env=_clean_env(CALLSEC_ARI__URLS=f"http://127.0.0.1:{port}",
                                             CALLSEC_AMI__PORT=port))
    assert result.returncode == 1
    assert {"ari-unreachable", "ami-unreachable"} <= {f["id"] for f in _findings(result)}


@pytest.mark.parametrize("args", [["--ari-url", "ftp://127.0.0.1:1"], ["--listen", "-1"]])
def test_usage_errors_exit_2(args: list[str]) -> None:
    assert doctor(*args).returncode == 2


def test_configuration_error_exits_2_naming_the_key(tmp_path: Any) -> None:
    bad = tmp_path / "callsec.conf"
    bad.write_text("[ami]\nport = not-a-port\n")
    result = subprocess.run([sys.executable, "-m", "callsec_ari", "-c", str(bad), "doctor"],
                            capture_output=True, text=True, timeout=60, cwd=REPO_ROOT,
                            env=_clean_env(), check=False)
    assert result.returncode == 2
    assert "[ami] port" in result.stderr


async def test_dtmf_events_on_callsecs_own_ami_connection_are_critical(
    planted: Planted,
) -> None:
    """Run as the planted user that reads everything while a live call carries digits."""
    env = {**planted.callsec_env, "CALLSEC_AMI__USERNAME": MONITOR_USER[0],
           "CALLSEC_AMI__PASSWORD": MONITOR_USER[1]}
    settings = load_settings(SHIPPED_CONFIG, env=env)

    async def call_with_digits() -> None:
        async with AriClient(planted.a, ["callsec"]) as app, LocalCaller(planted.a) as caller:
            call = await caller.call("1100")
            await app.wait_event(lambda e: is_event(e, "StasisStart", call.peer_id),
                                 timeout=10, what="StasisStart ;2")
            await app.channel(call.peer_id).answer()
            await call.wait_up(timeout=10)
            await call.send_dtmf("7#", between_ms=80, duration_ms=100)
            await call.hangup()

    async with asyncio.TaskGroup() as tg:
        facts_task = tg.create_task(gather(settings, ari_url=planted.a.base_url, listen=4))
        await asyncio.sleep(0.5)
        tg.create_task(call_with_digits())
    findings = run_checks(facts_task.result())
    observed = [f for f in findings if f.id == "ami-dtmf-events-observed"]
    assert observed and observed[0].severity is Severity.CRITICAL
    assert "DTMFEnd" in observed[0].what
    assert exit_code(findings) == 1
