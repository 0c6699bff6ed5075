"""Bad input to the CLI ends in one clear line and the README's exit code, never a traceback,
through the real door (``python -m callsec_ari`` in a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from callsec_ari.config_check import load_settings
from callsec_ari.store.context import init_keys, open_store
from tests.integration.store.conftest import write_config


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    path = write_config(tmp_path, f"sqlite:///{tmp_path / 'callsec.db'}")
    init_keys(load_settings(path, env={}))
    return path


def callsec(conf: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLSEC_")}
    return subprocess.run([sys.executable, "-m", "callsec_ari", "-c", str(conf), *args],
                          env=env, capture_output=True, text=True, timeout=120)


def test_gdpr_export_to_an_unwritable_path_exits_1_and_audits_no_export(conf: Path) -> None:
    ref = callsec(conf, "customers", "add", "--name", "Erika Muster", "--mobile",
                  "+49 151 11122233").stdout.strip()
    result = callsec(conf, "gdpr", "export", ref, "-o", "/nonexistent/x")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "cannot write /nonexistent/x" in result.stderr
    result = callsec(conf, "customers", "export", ref, "-o", "/nonexistent/x")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    store = open_store(load_settings(conf, env={}))
    try:
        with store.db.session() as session:
            actions = [e.action for e in store.audit.for_target(ref, session=session)]
    finally:
        store.close()
    assert not [a for a in actions if "export" in a], actions


def test_db_upgrade_to_an_unknown_revision_exits_2_naming_it(conf: Path) -> None:
    result = callsec(conf, "db", "upgrade", "--revision", "bogus")
    assert result.returncode == 2
    assert "'bogus'" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("value", ["99999999999999999999", "-1", "x"])
def test_audit_tail_since_out_of_range_exits_2_naming_the_option(conf: Path,
                                                                  value: str) -> None:
    result = callsec(conf, "audit", "tail", "--since", value)
    assert result.returncode == 2
    assert "--since" in result.stderr and "Traceback" not in result.stderr
