"""``callsec check-config`` runs every validator the commands run (issue #19): each value a
command would reject later exits 2 here, naming the key and never echoing the value. Through
the real door: ``python -m callsec_ari`` with ``CALLSEC_<SECTION>__<KEY>`` overrides."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "config" / "callsec.conf"


def check_config(*extra: str, env: dict[str, str] | None = None,
                 conf: Path = SHIPPED) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CALLSEC_")}
    clean.update(env or {})
    result = subprocess.run([sys.executable, "-m", "callsec_ari", "-c", str(conf),
                             "check-config", *extra], env=clean, capture_output=True,
                            text=True, timeout=60, cwd=REPO)
    assert "Traceback" not in result.stderr, result.stderr
    return result


SHORT_KEY = base64.b64encode(b"k" * 16).decode()
PKCS11 = {"CALLSEC_CRYPTO__BACKEND": "pkcs11", "CALLSEC_CRYPTO__PKCS11_MODULE": "/nonexistent.so",
          "CALLSEC_CRYPTO__PKCS11_TOKEN_LABEL": "callsec", "CALLSEC_CRYPTO__PKCS11_PIN": "1234"}


@pytest.mark.parametrize(("env", "named"), [
    ({"CALLSEC_DATABASE__URL": "garbage"}, "[database] url: "),
    ({"CALLSEC_DATABASE__URL": "mysql://u@db/callsec"}, "[database] url: "),
    ({"CALLSEC_DATABASE__URL": "postgresql+asyncpg://u@db/callsec"}, "[database] url: "),
    ({"CALLSEC_DATABASE__URL": "sqlite+nosuchdriver:///x.db"}, "[database] url: "),
    ({"CALLSEC_CRYPTO__KEK": "not base64 at all!"}, "[crypto] kek: "),
    ({"CALLSEC_CRYPTO__KEK": SHORT_KEY}, "[crypto] kek: "),
    ({"CALLSEC_CRYPTO__BLIND_INDEX_KEY": SHORT_KEY}, "[crypto] blind_index_key: "),
    (PKCS11, "[crypto] "),
    ({"CALLSEC_SMS__BACKEND": "twilio"}, "[sms] account_sid: "),
    ({"CALLSEC_SMS__BACKEND": "twilio", "CALLSEC_SMS__ACCOUNT_SID": "AC1"},
     "[sms] auth_token: "),
    ({"CALLSEC_SMS__BACKEND": "http"}, "[sms] url: "),
    ({"CALLSEC_SMS__BACKEND": "http", "CALLSEC_SMS__URL": "https://sms.example"},
     "[sms] hmac_key: "),
    ({"CALLSEC_EMAIL__BACKEND": "smtp", "CALLSEC_EMAIL__HOST": ""}, "[email] host: "),
    ({"CALLSEC_POLICY_DEFAULT__METHODS": "sms,fax"}, "[policy:default] methods: "),
    ({"CALLSEC_POLICY_DEFAULT__METHODS": ""}, "[policy:default] methods: "),
    ({"CALLSEC_VERIFICATION__DEFAULT_REGION": "XX"}, "[verification] default_region: "),
    ({"CALLSEC_ARI__USERNAME": "a:b"}, "[ari] username: "),
    ({"CALLSEC_ARI__URLS": "http://user:pw@127.0.0.1:18088"}, "[ari] urls: "),
    ({"CALLSEC_ARI__APP": "a,b"}, "[ari] app: "),
    ({"CALLSEC_CAPTURE__SINK": "gateway"}, "[capture] gateway_url: "),
    ({"CALLSEC_CAPTURE__SINK": "gateway", "CALLSEC_CAPTURE__GATEWAY_URL": "http://pay.example"},
     "[capture] gateway_url: "),
    ({"CALLSEC_CAPTURE__IBAN_COUNTRY": "ZZ"}, "[capture] iban_country: "),
])
def test_check_config_exits_2_naming_a_value_a_command_would_reject(
        env: dict[str, str], named: str) -> None:
    result = check_config(env=env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert named in result.stderr
    assert "ok:" not in result.stdout
    for secret in (SHORT_KEY, "not base64 at all!", "1234", ":pw@"):
        if secret in env.values() or any(secret in v for v in env.values()):
            assert secret not in result.stderr


def test_check_config_says_ok_for_the_shipped_configuration() -> None:
    result = check_config()
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: ")


def test_check_config_does_not_create_a_missing_database_without_connect(
        tmp_path: Path) -> None:
    db = tmp_path / "callsec.db"
    result = check_config(env={"CALLSEC_DATABASE__URL": f"sqlite:///{db}"})
    assert result.returncode == 0, result.stderr
    assert not db.exists()


def test_check_config_connect_refuses_a_missing_database_naming_the_key(
        tmp_path: Path) -> None:
    db = tmp_path / "callsec.db"
    result = check_config("--connect", env={"CALLSEC_DATABASE__URL": f"sqlite:///{db}"})
    assert result.returncode == 2
    assert "[database] url: " in result.stderr
    assert not db.exists()


def test_check_config_connect_checks_schema_and_key_ring(tmp_path: Path) -> None:
    env = {"CALLSEC_DATABASE__URL": f"sqlite:///{tmp_path / 'callsec.db'}",
           "CALLSEC_CRYPTO__KEYRING_DIR": str(tmp_path / "keys")}
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CALLSEC_")}
    for args in (("db", "upgrade"), ("keys", "init")):
        subprocess.run([sys.executable, "-m", "callsec_ari", "-c", str(SHIPPED), *args],
                       env={**clean, **env}, check=True, capture_output=True, cwd=REPO)
    result = check_config("--connect", env=env)
    assert result.returncode == 0, result.stderr
    assert "database and key ring checked" in result.stdout
    (tmp_path / "keys" / "blind-index.key").unlink()
    result = check_config("--connect", env=env)
    assert result.returncode == 2, (result.stdout, result.stderr)
