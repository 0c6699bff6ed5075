"""``[crypto] backend``: the file key ring by default; ``pkcs11`` needs its keys, named."""

from __future__ import annotations

from pathlib import Path

import pytest

from callsec_ari.config_check import load_settings
from callsec_ari.core.errors import ConfigError
from callsec_ari.store.crypto import Keyring
from callsec_ari.store.keyrings import open_keyring

PKCS11 = {"CALLSEC_CRYPTO__BACKEND": "pkcs11",
          "CALLSEC_CRYPTO__PKCS11_MODULE": "/usr/lib/softhsm/libsofthsm2.so",
          "CALLSEC_CRYPTO__PKCS11_TOKEN_LABEL": "callsec",
          "CALLSEC_CRYPTO__PKCS11_PIN": "1234"}


@pytest.fixture
def empty(tmp_path: Path) -> Path:
    path = tmp_path / "callsec.conf"
    path.write_text("", encoding="utf-8")
    return path


def test_the_file_key_ring_is_the_default(empty: Path, tmp_path: Path) -> None:
    settings = load_settings(empty, env={"CALLSEC_CRYPTO__KEYRING_DIR": str(tmp_path)})
    assert settings.crypto.backend == "file"
    ring = open_keyring(settings)
    assert isinstance(ring, Keyring) and ring.directory == tmp_path


@pytest.mark.parametrize("key", ["pkcs11_module", "pkcs11_token_label", "pkcs11_pin"])
def test_pkcs11_without_a_required_key_names_it(empty: Path, key: str) -> None:
    env = dict(PKCS11)
    env[f"CALLSEC_CRYPTO__{key.upper()}"] = ""
    with pytest.raises(ConfigError) as err:
        load_settings(empty, env=env)
    assert err.value.key == key and "1234" not in err.value.message


def test_an_unknown_backend_is_refused(empty: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(empty, env={"CALLSEC_CRYPTO__BACKEND": "vault"})
    assert err.value.key == "backend"


def test_an_inline_kek_cannot_be_combined_with_a_token(empty: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(empty, env={**PKCS11, "CALLSEC_CRYPTO__KEK": "A" * 44})
    assert err.value.key == "kek"


def test_the_pin_comes_from_a_file(empty: Path, tmp_path: Path) -> None:
    (tmp_path / "pin").write_text("8642\n", encoding="utf-8")
    env = {k: v for k, v in PKCS11.items() if k != "CALLSEC_CRYPTO__PKCS11_PIN"}
    settings = load_settings(empty, env={**env, "CALLSEC_CRYPTO__PKCS11_PIN_FILE":
                                        str(tmp_path / "pin")})
    assert settings.crypto.pkcs11_pin == "8642" and "8642" not in repr(settings.crypto)
