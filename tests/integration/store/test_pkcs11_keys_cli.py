"""``[crypto] backend = pkcs11`` through the CLI (a subprocess) against a real SoftHSM2 token:
the KEKs are created, used, rotated and destroyed inside the token and never leave it."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.softhsm import REPO, SoftHsmToken, new_token

ERIKA = ("--name", "Erika Mustermann", "--mobile", "+49 151 11122233", "--email",
         "erika@example.org")
HANS = ("--name", "Hans Groß", "--mobile", "+49 160 5550102")
#: Eight worker threads wrap and unwrap data keys through two key rings of one process.
THREADS = """
import logging, sys, threading
logging.basicConfig(level=logging.INFO)
from callsec_ari.config_check import load_settings
from callsec_ari.store.crypto import Envelope
from callsec_ari.store.keyrings import open_keyring
settings = load_settings(sys.argv[1])
rings = [open_keyring(settings), open_keyring(settings)]
errors = []
def work(n):
    try:
        envelope = Envelope(rings[n % 2])
        for _ in range(50):
            key, wrapped = envelope.new_data_key()
            assert envelope.unwrap(key.key_id, wrapped.kek_version, wrapped.wrapped) == key
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print("errors", errors)
"""


class Cli:
    def __init__(self, tmp_path: Path, token: SoftHsmToken) -> None:
        self.tmp_path, self.token = tmp_path, token
        self.db = tmp_path / "callsec.db"
        self.keys = tmp_path / "keys"
        self.config = tmp_path / "callsec.conf"
        self.config.write_text(f"[database]\nurl = sqlite:///{self.db}\n"
                               f"[crypto]\nkeyring_dir = {self.keys}\n"
                               "[verification]\ndefault_region = DE\n", encoding="utf-8")

    def __call__(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("CALLSEC_")}
        full_env.update(self.token.env(**env))
        return subprocess.run([sys.executable, "-m", "callsec_ari", "-c", str(self.config),
                               *args], env=full_env, cwd=REPO, capture_output=True, text=True,
                              timeout=120)

    def ok(self, *args: str) -> str:
        result = self(*args)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def kek_versions_in_db(self) -> list[int]:
        with sqlite3.connect(self.db) as conn:
            return sorted(v for (v,) in conn.execute(
                "SELECT kek_version FROM keys WHERE NOT shredded"))


@pytest.fixture
def token(tmp_path: Path) -> SoftHsmToken:
    return new_token(tmp_path / "hsm")


@pytest.fixture
def cli(tmp_path: Path, token: SoftHsmToken) -> Cli:
    return Cli(tmp_path, token)


def test_keys_init_creates_the_kek_in_the_token_and_customer_data_reads_back(
        cli: Cli, token: SoftHsmToken) -> None:
    cli.ok("keys", "init")
    assert token.labels() == ["callsec-kek-0001"]
    # The KEK is in the token only; the HMAC keys stay in files.
    assert sorted(p.name for p in cli.keys.iterdir()) == ["audit-hmac.key", "blind-index.key"]
    ref = cli.ok("customers", "add", *ERIKA).strip()
    assert ref.startswith("C-")
    card = cli.ok("customers", "export", ref)
    assert "Erika Mustermann" in card and "erika@example.org" in card
    assert cli.kek_versions_in_db() == [1]
    assert cli("audit", "verify").returncode == 0


def test_rotate_creates_a_new_kek_in_the_token_and_rewraps_every_data_key(
        cli: Cli, token: SoftHsmToken) -> None:
    cli.ok("keys", "init")
    refs = [cli.ok("customers", "add", *who).strip() for who in (ERIKA, HANS)]
    assert cli.kek_versions_in_db() == [1, 1]
    assert "2 data keys re-wrapped" in cli.ok("keys", "rotate")
    assert token.labels() == ["callsec-kek-0001", "callsec-kek-0002"]
    assert cli.kek_versions_in_db() == [2, 2]
    assert "kek-0002: 2 data keys" in cli.ok("keys", "list")
    cli.ok("keys", "retire", "1")
    assert token.labels() == ["callsec-kek-0002"]
    assert "Hans Groß" in cli.ok("customers", "export", refs[1])
    assert "Erika Mustermann" in cli.ok("customers", "export", refs[0])
    assert cli("audit", "verify").returncode == 0


def test_the_token_keks_are_sensitive_and_never_extractable(
        cli: Cli, token: SoftHsmToken) -> None:
    cli.ok("keys", "init")
    cli.ok("keys", "rotate")
    objects = token.objects()
    assert len(objects) == 2
    for obj in objects:
        assert obj["token"] and obj["sensitive"] and not obj["extractable"], obj
        assert obj["value_error"] == "AttributeSensitive", obj  # CKA_VALUE cannot be read


def test_a_wrong_pin_exits_2_naming_the_key_never_the_pin(cli: Cli, token: SoftHsmToken
                                                          ) -> None:
    cli.ok("keys", "init")
    result = cli("customers", "list", CALLSEC_CRYPTO__PKCS11_PIN_FILE="",
                 CALLSEC_CRYPTO__PKCS11_PIN="918273")
    assert result.returncode == 2, result.stderr
    assert "[crypto] pkcs11_pin" in result.stderr and "refused the PIN" in result.stderr
    assert "918273" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_a_missing_token_or_module_exits_2_naming_the_key(cli: Cli) -> None:
    result = cli("keys", "init", CALLSEC_CRYPTO__PKCS11_TOKEN_LABEL="no-such-token")
    assert result.returncode == 2, result.stderr
    assert "[crypto] pkcs11_token_label" in result.stderr and "Traceback" not in result.stderr
    result = cli("keys", "init", CALLSEC_CRYPTO__PKCS11_MODULE="/nonexistent/libpkcs11.so")
    assert result.returncode == 2, result.stderr
    assert "[crypto] pkcs11_module" in result.stderr and "Traceback" not in result.stderr


def test_an_empty_token_is_refused_not_filled(cli: Cli, token: SoftHsmToken) -> None:
    """Only ``callsec keys init`` creates the first KEK; a command never does it in passing."""
    result = cli("customers", "add", *ERIKA)
    assert result.returncode == 2, result.stderr
    assert "keys init" in result.stderr and "Traceback" not in result.stderr
    assert token.labels() == []


def test_worker_threads_share_one_logged_in_session(cli: Cli) -> None:
    cli.ok("keys", "init")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLSEC_")}
    result = subprocess.run([sys.executable, "-c", THREADS, str(cli.config)],
                            env={**env, **cli.token.env()}, cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "errors []" in result.stdout
    assert result.stderr.count("opened a session on PKCS#11 token") == 1, result.stderr
