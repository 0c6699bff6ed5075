"""The operator's CLI through the real door (``python -m callsec_ari`` in a subprocess): only
``run`` and ``db upgrade`` migrate; secrets never come from arguments; vCard imports keep what
is usable and match cards without a UID (issue #19, item 1)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from callsec_ari.config_check import load_settings
from callsec_ari.store.context import init_keys
from callsec_ari.store.db import current_revision, head_revision, open_database
from tests.integration.store.conftest import write_config


def callsec(conf: Path, *args: str, stdin: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CALLSEC_")}
    clean.update(env or {})
    result = subprocess.run([sys.executable, "-m", "callsec_ari", "-c", str(conf), *args],
                            env=clean, capture_output=True, text=True, input=stdin,
                            timeout=120)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def revision(conf: Path) -> str | None:
    db = open_database(load_settings(conf, env={}), upgrade=False, create=False)
    try:
        return current_revision(db)
    finally:
        db.dispose()


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    path = write_config(tmp_path, f"sqlite:///{tmp_path / 'callsec.db'}")
    init_keys(load_settings(path, env={}))
    return path


@pytest.fixture
def old_conf(tmp_path: Path) -> Path:
    """A database one migration behind the newest (as after installing a newer callsec)."""
    path = write_config(tmp_path, f"sqlite:///{tmp_path / 'callsec.db'}")
    result = callsec(path, "db", "upgrade", "--revision", "0006")
    assert result.returncode == 0, result.stderr
    return path


@pytest.mark.parametrize("command", [
    ("customers", "list"), ("customers", "export", "CUST-X"), ("audit", "verify"),
    ("audit", "tail"), ("audit", "head"), ("gdpr", "export", "CUST-X"), ("keys", "list"),
    ("users", "list"), ("keys", "init"),
])
def test_read_only_commands_refuse_an_old_schema_and_leave_it_unmigrated(
        old_conf: Path, command: tuple[str, ...]) -> None:
    result = callsec(old_conf, *command)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert f"database is at revision 0006, callsec needs {head_revision()}" in result.stderr
    assert "callsec db upgrade" in result.stderr
    assert revision(old_conf) == "0006"


def test_db_upgrade_then_keys_init_then_commands_work(old_conf: Path) -> None:
    assert callsec(old_conf, "db", "upgrade").returncode == 0
    assert revision(old_conf) == head_revision()
    assert callsec(old_conf, "keys", "init").returncode == 0
    assert callsec(old_conf, "customers", "list").returncode == 0


def test_keys_init_sets_up_a_new_database(tmp_path: Path) -> None:
    path = write_config(tmp_path, f"sqlite:///{tmp_path / 'callsec.db'}")
    result = callsec(path, "keys", "init")
    assert result.returncode == 0, result.stderr
    assert revision(path) == head_revision()


def _add(conf: Path, *extra: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return callsec(conf, "customers", "add", "--name", "App User", "--mobile", "+49 151 22334455",
                   "--method", "totp", *extra, stdin=stdin)


def _stored_totp_secret(conf: Path, ref: str) -> str | None:
    from callsec_ari.store.context import open_store

    store = open_store(load_settings(conf, env={}), upgrade=False)
    try:
        return store.customers.get(ref).totp_secret
    finally:
        store.close()


def test_totp_secret_on_the_command_line_is_refused_without_echoing_it(conf: Path) -> None:
    result = _add(conf, "--totp-secret", "JBSWY3DPEHPK3PXPJBSWY3DP")
    assert result.returncode == 2
    assert "--totp-secret" in result.stderr and "JBSWY3DP" not in result.stderr
    assert "--totp-secret-stdin" in result.stderr


@pytest.mark.parametrize("bad", ["not base32 at all!!1", "JBSWY3DPEHPK3PX", "JBSWY3DP0HPK3PXP"])
def test_totp_secret_that_is_not_base32_or_too_short_exits_2_naming_the_option(
        conf: Path, bad: str) -> None:
    result = _add(conf, "--totp-secret-stdin", stdin=bad + "\n")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "--totp-secret-stdin: not a base32" in result.stderr and bad not in result.stderr
    assert callsec(conf, "customers", "list").stdout.strip() == ""


def test_totp_secret_from_stdin_or_a_file_is_stored_normalised(conf: Path,
                                                               tmp_path: Path) -> None:
    result = _add(conf, "--totp-secret-stdin", stdin="jbsw y3dp ehpk 3pxp\n")
    assert result.returncode == 0, result.stderr
    assert _stored_totp_secret(conf, result.stdout.strip()) == "JBSWY3DPEHPK3PXP"
    secret_file = tmp_path / "totp.txt"
    secret_file.write_text("KRSXG5CTMVRXEZLU====\n")
    result = _add(conf, "--totp-secret-file", str(secret_file))
    assert result.returncode == 0, result.stderr
    assert _stored_totp_secret(conf, result.stdout.strip()) == "KRSXG5CTMVRXEZLU"
    result = _add(conf, "--totp-secret-file", str(tmp_path / "missing"))
    assert result.returncode == 2 and "--totp-secret-file" in result.stderr


DRAMA = "+447700900123"  # UK drama range: looks like a mobile, is not a valid number


def _card(*lines: str) -> str:
    return "BEGIN:VCARD\r\nVERSION:4.0\r\n" + "".join(f"{line}\r\n" for line in lines) + \
        "END:VCARD\r\n"


def _import(conf: Path, tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "cards.vcf"
    path.write_text(text, encoding="utf-8")
    return callsec(conf, "customers", "import", str(path))


def _refs(conf: Path) -> list[str]:
    result = callsec(conf, "customers", "list")
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_a_card_whose_only_phone_is_invalid_is_kept_with_its_email_and_a_warning(
        conf: Path, tmp_path: Path) -> None:
    text = _card("FN:Ada Drama", f"TEL;TYPE=cell:{DRAMA}", "EMAIL:ada@example.org")
    result = _import(conf, tmp_path, text)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "1 created" in result.stdout and "0 failed" in result.stdout
    assert "warning: card 1 at line 1: TEL 1 is not a valid phone number" in result.stderr
    assert DRAMA not in result.stderr + result.stdout and "ada@" not in result.stderr
    (ref,) = _refs(conf)
    exported = callsec(conf, "customers", "export", ref).stdout
    assert "ada@example.org" in exported and "Ada Drama" in exported
    assert "7700900123" not in exported and "X-CALLSEC-METHOD:email" in exported


def test_an_invalid_phone_is_left_out_when_another_valid_number_is_there(
        conf: Path, tmp_path: Path) -> None:
    text = _card("FN:Bo Two", f"TEL;TYPE=cell:{DRAMA}", "TEL;TYPE=cell:+49 151 23456789")
    result = _import(conf, tmp_path, text)
    assert result.returncode == 0, result.stderr
    assert "TEL 1 is not a valid phone number" in result.stderr
    (ref,) = _refs(conf)
    assert "+4915123456789" in callsec(conf, "customers", "export", ref).stdout


def test_a_card_with_nothing_usable_is_still_rejected(conf: Path, tmp_path: Path) -> None:
    result = _import(conf, tmp_path, _card("FN:Cy Nothing", f"TEL;TYPE=cell:{DRAMA}"))
    assert result.returncode == 1
    assert "skipped card 1 at line 1: no valid phone number and no e-mail address" \
        in result.stderr
    assert _refs(conf) == []


def test_re_importing_cards_without_uid_matches_by_phone_or_email(
        conf: Path, tmp_path: Path) -> None:
    by_phone = _card("FN:Dee Phone", "TEL;TYPE=cell:+49 151 34567890")
    by_email = _card("FN:Eve Mail", "EMAIL:eve@example.org")
    assert _import(conf, tmp_path, by_phone + by_email).returncode == 0
    assert len(_refs(conf)) == 2
    renamed = _card("FN:Dee Phone-Renamed", "TEL;TYPE=cell:0151 34567890")
    moved = _card("FN:Eve Mail", "EMAIL:Eve@Example.org", "TEL;TYPE=cell:+49 151 45678901")
    result = _import(conf, tmp_path, renamed + moved)
    assert result.returncode == 0, result.stderr
    assert "0 created, 2 updated" in result.stdout
    refs = _refs(conf)
    assert len(refs) == 2
    exported = "".join(callsec(conf, "customers", "export", ref).stdout for ref in refs)
    assert "Dee Phone-Renamed" in exported and "+4915145678901" in exported
    both = _card("FN:Mix Up", "TEL;TYPE=cell:+49 151 34567890", "EMAIL:eve@example.org")
    result = _import(conf, tmp_path, both)
    assert result.returncode == 1 and "several customers" in result.stderr
    assert len(_refs(conf)) == 2
