"""Where ``callsec`` finds its configuration without ``-c`` ($CALLSEC_CONFIG, /etc, ./config),
``--version``, and the CLI's last-resort error handler (through ``callsec_ari.cli.main``)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from callsec_ari import __version__, cli
from callsec_ari.config import discovery
from callsec_ari.config.discovery import find_config
from callsec_ari.core.errors import ConfigError

CONF = "[verification]\ndefault_region = DE\n"


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory and no /etc/callsec on this test's machine."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(discovery, "SYSTEM_CONFIG_PATH", tmp_path / "etc" / "callsec.conf")
    monkeypatch.delenv("CALLSEC_CONFIG", raising=False)
    return tmp_path


def test_dash_c_wins_over_everything(places: Path) -> None:
    assert find_config("x.conf", env={"CALLSEC_CONFIG": "y.conf"}) == Path("x.conf")


def test_callsec_config_then_etc_then_the_development_tree(places: Path) -> None:
    (places / "config").mkdir()
    (places / "config" / "callsec.conf").write_text(CONF)
    assert find_config(None, env={}) == Path("config/callsec.conf")
    (places / "etc").mkdir()
    (places / "etc" / "callsec.conf").write_text(CONF)
    assert find_config(None, env={}) == places / "etc" / "callsec.conf"
    (places / "mine.conf").write_text(CONF)
    assert find_config(None, env={"CALLSEC_CONFIG": "mine.conf"}) == Path("mine.conf")


def test_a_callsec_config_naming_a_missing_file_is_an_error_not_skipped(places: Path) -> None:
    (places / "config").mkdir()
    (places / "config" / "callsec.conf").write_text(CONF)
    with pytest.raises(ConfigError, match=r"CALLSEC_CONFIG=gone\.conf"):
        find_config(None, env={"CALLSEC_CONFIG": "gone.conf"})


def test_no_config_anywhere_exits_2_naming_the_places_tried(
        places: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-config"]) == 2
    err = capsys.readouterr().err
    assert "CALLSEC_CONFIG" in err and str(places / "etc" / "callsec.conf") in err
    assert "config/callsec.conf" in err and "Traceback" not in err


def test_check_config_without_c_reads_callsec_config(
        places: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    (places / "site.conf").write_text(CONF)
    monkeypatch.setenv("CALLSEC_CONFIG", str(places / "site.conf"))
    assert cli.main(["check-config"]) == 0
    assert f"ok: {places / 'site.conf'}" in capsys.readouterr().out


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"callsec {__version__}"


def _boom(args: argparse.Namespace, settings: object) -> int:
    raise RuntimeError("postgresql://callsec:hunter2@db/x card 4111111111111111")


def test_an_unexpected_error_is_one_line_exit_1_without_its_text(
        places: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    (places / "site.conf").write_text(CONF)
    monkeypatch.setattr(cli, "_cmd_check_config", _boom)
    monkeypatch.delenv(cli.TRACEBACK_ENV, raising=False)
    assert cli.main(["-c", str(places / "site.conf"), "check-config"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RuntimeError" in err
    assert "hunter2" not in err and "4111" not in err and "Traceback" not in err
    monkeypatch.setenv(cli.TRACEBACK_ENV, "1")
    assert cli.main(["-c", str(places / "site.conf"), "check-config"]) == 1
    assert "Traceback" in capsys.readouterr().err
