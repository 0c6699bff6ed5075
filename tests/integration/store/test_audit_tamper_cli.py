"""Attacks on the audit trail through the real door: ``callsec`` as a subprocess against a
database the product wrote; the attacker edits the database directly (no audit key).

Truncation (delete the newest entries, move the head back), a forged head MAC, a stripped
head MAC, and a rollback to an older copy of the database (caught by ``verify --expect``
with a head exported earlier by ``callsec audit head``)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, delete, select, update

from callsec_ari.config import Settings
from callsec_ari.store.models import AuditHeadRow, AuditRow

ROOT = Path(__file__).resolve().parents[3]


def callsec(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "callsec_ari", "-c", str(config), *args],
                          capture_output=True, text=True, timeout=120, env=env, check=False)


def add_customers(config: Path, count: int) -> None:
    if not (config.parent / "keys").exists():
        callsec(config, "keys", "init")  # keys are made on purpose (issue 14, point 1)
    for n in range(count):
        done = callsec(config, "customers", "add", "--name", f"Kunde {n}",
                       "--mobile", f"+4916055501{n:02d}")
        assert done.returncode == 0, done.stderr


def tamper(settings: Settings, *statements: object) -> None:
    """What an attacker with write access to the database (but not the keyring) can do."""
    engine = create_engine(settings.database.url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(statement)  # type: ignore[call-overload]
    finally:
        engine.dispose()


def row_hash(settings: Settings, seq: int) -> str:
    engine = create_engine(settings.database.url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(select(AuditRow.hash).where(AuditRow.seq == seq))
                       .scalar_one())
    finally:
        engine.dispose()


def test_deleting_the_newest_entries_and_moving_the_head_back_is_named_truncation(
        config_path: Path, settings: Settings) -> None:
    add_customers(config_path, 4)
    assert callsec(config_path, "audit", "verify").returncode == 0
    survivor = row_hash(settings, 2)
    tamper(settings, delete(AuditRow).where(AuditRow.seq > 2),
           update(AuditHeadRow).where(AuditHeadRow.id == 1).values(seq=2, hash=survivor))
    done = callsec(config_path, "audit", "verify")
    assert done.returncode == 1, done.stdout
    assert "truncat" in done.stderr


def test_a_head_mac_forged_without_the_key_fails(config_path: Path,
                                                 settings: Settings) -> None:
    add_customers(config_path, 3)
    survivor = row_hash(settings, 1)
    guessed = hashlib.sha256(f"1:{survivor}".encode()).hexdigest()
    tamper(settings, delete(AuditRow).where(AuditRow.seq > 1),
           update(AuditHeadRow).where(AuditHeadRow.id == 1)
           .values(seq=1, hash=survivor, mac=guessed))
    done = callsec(config_path, "audit", "verify")
    assert done.returncode == 1
    assert "MAC" in done.stderr and "truncat" in done.stderr


def test_a_stripped_head_mac_fails_once_the_head_was_sealed(config_path: Path,
                                                            settings: Settings) -> None:
    add_customers(config_path, 3)
    survivor = row_hash(settings, 2)
    tamper(settings, delete(AuditRow).where(AuditRow.seq > 2),
           update(AuditHeadRow).where(AuditHeadRow.id == 1)
           .values(seq=2, hash=survivor, mac=None))
    # an upgraded database has no MAC until its first append: a forger pretends to be one
    done = callsec(config_path, "audit", "verify")
    assert done.returncode == 1
    assert "MAC" in done.stderr


def test_an_append_after_truncation_does_not_launder_the_forged_head(
        config_path: Path, settings: Settings) -> None:
    add_customers(config_path, 3)
    survivor = row_hash(settings, 1)
    tamper(settings, delete(AuditRow).where(AuditRow.seq > 1),
           update(AuditHeadRow).where(AuditHeadRow.id == 1).values(seq=1, hash=survivor))
    add_customers(config_path, 1)  # the product keeps working ...
    done = callsec(config_path, "audit", "verify")
    assert done.returncode == 1  # ... and the truncation stays on record
    assert "truncat" in done.stderr


def test_audit_head_exports_seq_and_hash_as_json(config_path: Path) -> None:
    add_customers(config_path, 2)
    done = callsec(config_path, "audit", "head", "--json")
    assert done.returncode == 0, done.stderr
    head = json.loads(done.stdout)
    assert head["seq"] == 2 and len(head["hash"]) == 64 and head["ts"]
    assert head["expect"] == f"2:{head['hash']}"
    plain = callsec(config_path, "audit", "head")
    assert plain.stdout.split()[0] == head["expect"]
    ok = callsec(config_path, "audit", "verify", "--expect", head["expect"])
    assert ok.returncode == 0, ok.stderr


def test_restoring_an_older_copy_of_the_database_fails_verify_expect(
        config_path: Path, settings: Settings, tmp_path: Path) -> None:
    if not settings.database.url.startswith("sqlite"):
        pytest.skip("a file copy of the database: SQLite")
    db_file = Path(settings.database.url.removeprefix("sqlite:///"))
    add_customers(config_path, 2)
    shutil.copyfile(db_file, tmp_path / "backup.db")
    add_customers(config_path, 2)
    exported = callsec(config_path, "audit", "head", "--json")
    expect_file = tmp_path / "heads.jsonl"
    expect_file.write_text(exported.stdout, encoding="utf-8")
    shutil.copyfile(tmp_path / "backup.db", db_file)  # the rollback
    assert callsec(config_path, "audit", "verify").returncode == 0  # consistent on its own
    head = json.loads(exported.stdout)
    done = callsec(config_path, "audit", "verify", "--expect", head["expect"])
    assert done.returncode == 1
    assert "rolled back" in done.stderr and f"entry {head['seq']}" in done.stderr
    from_file = callsec(config_path, "audit", "verify", "--expect-file", str(expect_file))
    assert from_file.returncode == 1 and "rolled back" in from_file.stderr


def test_verify_expect_with_a_replaced_chain_fails(config_path: Path,
                                                   settings: Settings) -> None:
    add_customers(config_path, 2)
    head = json.loads(callsec(config_path, "audit", "head", "--json").stdout)
    wrong = f"{head['seq']}:{'0' * 64}"
    done = callsec(config_path, "audit", "verify", "--expect", wrong)
    assert done.returncode == 1 and "differs" in done.stderr
    bad = callsec(config_path, "audit", "verify", "--expect", "two:xyz")
    assert bad.returncode == 2
