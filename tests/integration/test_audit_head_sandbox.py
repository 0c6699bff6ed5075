"""``callsec run`` exports the audit head to its log (at start, then every ``[logging]
audit_head_minutes``); the exported ``SEQ:HASH`` is what ``callsec audit verify --expect``
checks, and a database restored from an older copy fails that check (issue 14, point 7)."""

from __future__ import annotations

import asyncio
import re
import shutil
import time

import pytest

from tests.harness.callsec_proc import REPO, CallsecProcess
from tests.harness.sandbox import Sandbox

pytestmark = [pytest.mark.sandbox, pytest.mark.asyncio]
HEAD_LINE = re.compile(r"audit head (\d+:[0-9a-f]{64}) at ")


async def head_lines(proc: CallsecProcess, count: int, timeout: float = 20.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = HEAD_LINE.findall(proc.log_text()) if proc.log_file.exists() else []
        if len(found) >= count:
            return found
        await asyncio.sleep(0.2)
    raise TimeoutError(f"fewer than {count} audit head lines in the log")


async def test_callsec_run_logs_the_audit_head_and_verify_expect_catches_a_rollback(
        sandbox: Sandbox) -> None:
    workdir = REPO / "var" / "test" / "audit-head"
    shutil.rmtree(workdir, ignore_errors=True)
    proc = CallsecProcess(workdir, env_overrides={
        "CALLSEC_AGI__ENABLED": "no", "CALLSEC_WEB__ENABLED": "no",
        "CALLSEC_LOGGING__AUDIT_HEAD_MINUTES": "0.01"})  # every 0.6 s
    workdir.mkdir(parents=True)
    proc.add_customer(name="Rolf Backup", mobile="+4915755500001")
    shutil.copyfile(workdir / "callsec.db", workdir / "backup.db")
    proc.add_customer(name="Nora Neu", mobile="+4915755500002")
    await proc.start()
    try:
        found = await head_lines(proc, 2)  # one at start, one periodic
    finally:
        assert proc.stop() == 0
    exported = found[-1]
    assert proc.cli("audit", "verify", "--expect", exported).returncode == 0
    shutil.copyfile(workdir / "backup.db", workdir / "callsec.db")  # restore the older copy
    assert proc.cli("audit", "verify").returncode == 0  # consistent on its own ...
    done = proc.cli("audit", "verify", "--expect", exported)
    assert done.returncode == 1 and "rolled back" in done.stderr  # ... but not the exported head
