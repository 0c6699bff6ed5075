"""The store's CLI commands through ``callsec_ari.cli.main`` with a temporary config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import update

from callsec_ari.cli import main
from callsec_ari.config import Settings
from callsec_ari.store.context import open_store
from callsec_ari.store.db import head_revision
from callsec_ari.store.models import AuditRow

CARDS = (
    "BEGIN:VCARD\nVERSION:3.0\nUID:cli-1\nFN:Grete Weiß\nN:Weiß;Grete;;;\n"
    "TEL;TYPE=CELL:+49 160 5550101\nEMAIL:grete@example.org\nEND:VCARD\n"
    "BEGIN:VCARD\nVERSION:3.0\nUID:cli-bad\nFN;=:\n x : y\nEND:VCARD\n"
    "BEGIN:VCARD\nVERSION:4.0\nUID:cli-2\nFN:Hans Groß\nTEL;TYPE=cell:tel:+491605550102\n"
    "END:VCARD\n"
)


def run(config: Path, *args: str) -> int:
    return main(["-c", str(config), *args])


def test_db_upgrade_then_add_and_export(config_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert run(config_path, "db", "upgrade") == 0
    assert f"revision {head_revision()}" in capsys.readouterr().out
    assert run(config_path, "customers", "add", "--name", "Erika Mustermann", "--mobile",
               "+49 151 11122233", "--email", "erika@example.org", "--lang", "de",
               "--customer-number", "55501234") == 0
    ref = capsys.readouterr().out.strip()
    assert ref.startswith("C-")
    assert run(config_path, "customers", "export", ref) == 0
    card = capsys.readouterr().out
    assert "VERSION:4.0" in card and "Erika Mustermann" in card
    [tel] = [line for line in card.splitlines() if line.startswith("TEL")]
    assert tel.endswith(":tel:+4915111122233")
    assert {"PREF=1", "TYPE=cell", "VALUE=uri"} <= set(tel.split(":")[0].split(";"))


def test_import_reports_the_bad_card_and_exits_1(config_path: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "cards.vcf"
    path.write_text(CARDS, encoding="utf-8")
    assert run(config_path, "customers", "import", str(path)) == 1
    out = capsys.readouterr()
    assert "3 cards: 2 created, 0 updated, 1 failed" in out.out
    assert "card 2 at line 9 (UID cli-bad)" in out.err
    assert run(config_path, "customers", "list") == 0
    assert len(capsys.readouterr().out.split()) == 2


def test_gdpr_export_erase_purge_and_audit(config_path: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    run(config_path, "customers", "add", "--name", "Grete Weiß", "--mobile", "+491605550101")
    ref = capsys.readouterr().out.strip()
    out_file = tmp_path / "export.json"
    assert run(config_path, "gdpr", "export", ref, "-o", str(out_file)) == 0
    assert out_file.stat().st_mode & 0o077 == 0
    document = json.loads(out_file.read_text(encoding="utf-8"))
    assert document["profile"]["name"]["full"] == "Grete Weiß"
    assert "BEGIN:VCARD" in document["vcard"]
    assert run(config_path, "gdpr", "erase", ref) == 0
    assert "1 data keys destroyed" in capsys.readouterr().out
    assert run(config_path, "customers", "export", ref) == 1
    assert "customer_erased" in capsys.readouterr().err
    assert run(config_path, "gdpr", "purge") == 0
    assert "verifications: 0 deleted" in capsys.readouterr().out
    assert run(config_path, "audit", "verify") == 0
    assert run(config_path, "audit", "tail") == 0
    actions = [json.loads(line)["action"] for line in capsys.readouterr().out.splitlines()
               if line.startswith("{")]
    assert actions == ["customer.create", "gdpr.export", "gdpr.erase", "gdpr.purge"]


def test_audit_verify_exits_1_naming_the_edited_entry(config_path: Path, settings: Settings,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("A B", "C D", "E F"):
        run(config_path, "customers", "add", "--name", name, "--mobile", "+491605550101")
    st = open_store(settings)
    try:
        with st.db.session() as s:
            s.execute(update(AuditRow).where(AuditRow.seq == 2).values(action="customer.read"))
    finally:
        st.close()
    capsys.readouterr()
    assert run(config_path, "audit", "verify") == 1
    assert "BROKEN at entry 2" in capsys.readouterr().err


def test_keys_rotate_and_retire(config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(config_path, "customers", "add", "--name", "Kim Lee", "--mobile", "+491605550101")
    ref = capsys.readouterr().out.strip()
    assert run(config_path, "keys", "rotate", "--retire", "1") == 0
    assert "KEK version 2: 1 data keys re-wrapped; retired version 1" in capsys.readouterr().out
    assert run(config_path, "keys", "list") == 0
    assert capsys.readouterr().out.strip() == "kek-0002: 1 data keys (current)"
    assert run(config_path, "customers", "export", ref) == 0
    assert "Kim Lee" in capsys.readouterr().out
    assert run(config_path, "keys", "retire", "1") == 1
    assert "KEK version 1 does not exist" in capsys.readouterr().err
    assert run(config_path, "keys", "rotate") == 0
    assert run(config_path, "keys", "retire", "2") == 0


def test_bad_database_url_is_a_configuration_error(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.conf"
    config.write_text(f"[database]\nurl = mysql://x\n[crypto]\nkeyring_dir = {tmp_path}/k\n")
    assert run(config, "db", "upgrade") == 2
    assert "[database] url" in capsys.readouterr().err
