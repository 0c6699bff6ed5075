"""Key custody through the real door (``callsec`` as a subprocess): a wrong or missing key ring
is refused (exit 2, naming the key and the fingerprint expected), never silently replaced; keys
are created only by ``callsec keys init``; relative config paths follow the config file."""

from __future__ import annotations

import base64
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from callsec_ari.store.custody import Recorded, recorded
from callsec_ari.store.db import open_url
from tests.integration.store.conftest import write_config

REPO = Path(__file__).resolve().parents[3]
ERIKA = ("--name", "Erika Mustermann", "--mobile", "+49 151 11122233")
HANS = ("--name", "Hans Groß", "--mobile", "+49 160 5550102")


def callsec(config: Path, *args: str, env: Mapping[str, str] | None = None,
            cwd: Path = REPO, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CALLSEC_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "callsec_ari", "-c", str(config), *args],
                          env=full_env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def ok(config: Path, *args: str, **kw: object) -> str:
    result = callsec(config, *args, **kw)  # type: ignore[arg-type]
    assert result.returncode == 0, result.stderr
    return result.stdout


def fingerprints(db_url: str) -> list[Recorded]:
    db = open_url(db_url, upgrade_schema=False)
    try:
        return recorded(db)
    finally:
        db.dispose()


def expected(db_url: str, name: str, version: int = 0) -> str:
    [row] = [r for r in fingerprints(db_url) if (r.name, r.version) == (name, version)]
    return row.fingerprint


@pytest.fixture
def live(tmp_path: Path, db_url: str) -> tuple[Path, str]:
    """A database with one customer, set up with ``callsec keys init``."""
    config = write_config(tmp_path, db_url)
    out = ok(config, "keys", "init")
    assert "created blind-index.key, audit-hmac.key, KEK version 1" in out
    ok(config, "customers", "add", *ERIKA)
    return config, db_url


def test_another_keyring_dir_is_refused_naming_each_key_and_creates_nothing(
        live: tuple[Path, str], tmp_path: Path) -> None:
    config, db_url = live
    before = fingerprints(db_url)
    other = {"CALLSEC_CRYPTO__KEYRING_DIR": str(tmp_path / "fresh")}
    for command in (("customers", "list"), ("customers", "add", *HANS), ("keys", "init"),
                    ("audit", "verify")):
        result = callsec(config, *command, env=other)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        for what, name, version in (("KEK version 1", "kek", 1),
                                    ("blind-index key", "blind-index", 0),
                                    ("audit key", "audit", 0)):
            assert f"{what} (expected fingerprint {expected(db_url, name, version)}) is " \
                   "missing from the key ring" in result.stderr, result.stderr
        assert result.stdout == ""
    assert not (tmp_path / "fresh").exists()
    assert fingerprints(db_url) == before
    assert len(ok(config, "customers", "list").split()) == 1  # nothing was added


def test_a_key_ring_whose_kek_was_replaced_is_refused(live: tuple[Path, str],
                                                      tmp_path: Path) -> None:
    config, db_url = live
    kek = tmp_path / "keys" / "kek-0001.key"
    kek.unlink()
    kek.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    result = callsec(config, "customers", "list")
    assert result.returncode == 2
    assert f"KEK version 1 (expected fingerprint {expected(db_url, 'kek', 1)}) differs" \
        in result.stderr
    assert "blind-index key" not in result.stderr  # only the key that differs is named


def test_audit_verify_with_another_audit_key_is_a_key_mismatch_not_a_tamper_alarm(
        live: tuple[Path, str], tmp_path: Path) -> None:
    config, db_url = live
    audit_key = tmp_path / "keys" / "audit-hmac.key"
    original = audit_key.read_text()
    audit_key.unlink()
    audit_key.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    result = callsec(config, "audit", "verify")
    assert result.returncode == 2
    assert f"audit key (expected fingerprint {expected(db_url, 'audit')}) differs" \
        in result.stderr
    assert "BROKEN" not in result.stderr + result.stdout
    audit_key.unlink()
    audit_key.write_text(original)
    assert "audit log ok" in ok(config, "audit", "verify")


def test_callsec_run_refuses_a_wrong_key_ring_before_connecting(live: tuple[Path, str],
                                                                tmp_path: Path) -> None:
    config, _ = live
    env = {"CALLSEC_CRYPTO__KEYRING_DIR": str(tmp_path / "fresh"),
           "CALLSEC_ARI__URLS": "http://127.0.0.1:9", "CALLSEC_WEB__ENABLED": "no",
           "CALLSEC_AGI__ENABLED": "no", "CALLSEC_AMI__ENABLED": "no"}
    try:
        result = callsec(config, "run", env=env, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("callsec run started with a key ring the database does not know")
    assert result.returncode == 2
    assert "KEK version 1 (expected fingerprint" in result.stderr
    assert not (tmp_path / "fresh").exists()


def test_a_fresh_database_without_keys_says_run_keys_init_and_creates_no_key(
        tmp_path: Path, db_url: str) -> None:
    config = write_config(tmp_path, db_url)
    result = callsec(config, "customers", "add", *ERIKA)
    assert result.returncode == 2
    assert "callsec keys init" in result.stderr
    assert not (tmp_path / "keys").exists()
    assert not (tmp_path / "callsec.db").exists()  # SQLite: no fresh database either


def test_keys_init_is_idempotent_and_refuses_a_database_expecting_other_keys(
        live: tuple[Path, str], tmp_path: Path) -> None:
    config, _ = live
    files = {p.name: p.read_bytes() for p in (tmp_path / "keys").iterdir()}
    assert oct((tmp_path / "keys").stat().st_mode & 0o777) == "0o700"
    assert "matches the database" in ok(config, "keys", "init")
    assert {p.name: p.read_bytes() for p in (tmp_path / "keys").iterdir()} == files
    actions = [json.loads(line)["action"] for line in ok(config, "audit", "tail").splitlines()]
    assert actions == ["keys.init", "customer.create"]  # audited once, when keys were made
    (tmp_path / "keys" / "blind-index.key").unlink()
    result = callsec(config, "keys", "init")
    assert result.returncode == 2 and "blind-index key (expected fingerprint" in result.stderr
    assert not (tmp_path / "keys" / "blind-index.key").exists()  # never replaced


def test_config_still_setting_create_missing_keys_is_a_clear_error(tmp_path: Path) -> None:
    text = write_config(tmp_path, f"sqlite:///{tmp_path / 'x.db'}").read_text()
    path = tmp_path / "old.conf"
    path.write_text(text.replace("[crypto]\n", "[crypto]\ncreate_missing_keys = yes\n", 1))
    result = callsec(path, "customers", "list")
    assert result.returncode == 2
    assert "[crypto] create_missing_keys" in result.stderr
    assert "callsec keys init" in result.stderr


def test_shipped_config_finds_the_same_database_from_another_working_directory(
        tmp_path: Path) -> None:
    """config/callsec.conf's relative paths follow the file, not the process's cwd."""
    root = tmp_path / "checkout"
    (root / "config").mkdir(parents=True)
    config = root / "config" / "callsec.conf"
    shutil.copy(REPO / "config" / "callsec.conf", config)
    ok(config, "keys", "init", cwd=root)
    ref = ok(config, "customers", "add", *ERIKA, cwd=root).strip()
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    assert ok(config, "customers", "list", cwd=elsewhere).split() == [ref]
    assert (root / "var" / "callsec.db").exists() and (root / "var" / "keys").is_dir()
    assert not (elsewhere / "var").exists() and not (tmp_path / "somewhere" / "var").exists()


def sqlite_backup(src: Path, dst: Path) -> None:
    with sqlite3.connect(src) as source, sqlite3.connect(dst) as target:
        source.backup(target)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_erased_customer_in_an_old_backup_is_unreadable_after_rotation_retiring_old_keks(
        tmp_path: Path, db_url: str) -> None:
    config = write_config(tmp_path, db_url)
    ok(config, "keys", "init")
    erased = ok(config, "customers", "add", *ERIKA).strip()
    kept = ok(config, "customers", "add", *HANS).strip()
    backup = tmp_path / "backup.db"
    sqlite_backup(tmp_path / "callsec.db", backup)
    at_backup = {"CALLSEC_DATABASE__URL": f"sqlite:///{backup}"}
    assert "Erika" in ok(config, "customers", "export", erased, env=at_backup)
    ok(config, "gdpr", "erase", erased)
    assert "Erika" in ok(config, "customers", "export", erased, env=at_backup)  # the gap
    assert "retired version" not in ok(config, "keys", "rotate", "--retire-older-than", "30")
    out = ok(config, "keys", "rotate", "--retire-older-than", "0")
    assert "KEK version 3: 1 data keys re-wrapped; retired version 1, 2" in out
    assert ok(config, "keys", "list").strip() == "kek-0003: 1 data keys (current)"
    from_backup = callsec(config, "customers", "export", erased, env=at_backup)
    assert from_backup.returncode != 0
    assert "KEK version 1" in from_backup.stderr and "retired" in from_backup.stderr
    assert "Erika" not in from_backup.stdout + from_backup.stderr
    assert "Hans Groß" in ok(config, "customers", "export", kept)
    retired = {r.version: r.retired_at for r in fingerprints(db_url) if r.name == "kek"}
    assert retired[1] is not None and retired[2] is not None and retired[3] is None


def test_rotate_retire_older_than_keeps_young_keks_and_records_retirement(
        live: tuple[Path, str], tmp_path: Path) -> None:
    config, db_url = live
    ref = ok(config, "customers", "list").strip()
    assert ok(config, "keys", "rotate", "--retire-older-than", "1").strip() == \
        "KEK version 2: 1 data keys re-wrapped"  # version 1 is minutes old: kept
    assert ok(config, "keys", "rotate", "--retire-older-than", "0").strip() == \
        "KEK version 3: 1 data keys re-wrapped; retired version 1, 2"
    assert sorted(p.name for p in (tmp_path / "keys").glob("kek-*")) == ["kek-0003.key"]
    assert {(r.version, r.retired_at is not None) for r in fingerprints(db_url)
            if r.name == "kek"} == {(1, True), (2, True), (3, False)}
    assert "Erika Mustermann" in ok(config, "customers", "export", ref)
    assert "audit log ok" in ok(config, "audit", "verify")
    result = callsec(config, "keys", "rotate", "--retire-older-than", "-1")
    assert result.returncode == 2 and "must be 0 or more days" in result.stderr
