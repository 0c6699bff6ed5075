"""A throw-away SoftHSM2 token for the ``[crypto] backend = pkcs11`` tests.

:func:`new_token` initialises a token in its own directory (``SOFTHSM2_CONF`` points at a
``softhsm2.conf`` there); :meth:`SoftHsmToken.env` gives the environment a ``callsec`` process
needs to use it. :meth:`SoftHsmToken.objects` looks into the token from a separate process
(``python -m tests.harness.softhsm``): the PKCS#11 library reads ``SOFTHSM2_CONF`` once per
process, so the test process itself never loads it.

Without softhsm2 or python-pkcs11 the tests skip, except in CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)
LABEL = "callsec-test"
PIN = "1234"
SO_PIN = "5678"


def softhsm_module() -> str:
    """The SoftHSM2 PKCS#11 library; skips (fails in CI) when it or python-pkcs11 is absent."""
    missing = []
    module = next((m for m in MODULE_CANDIDATES if Path(m).is_file()), None)
    if module is None or shutil.which("softhsm2-util") is None:
        missing.append("softhsm2 (tools/install-deps.sh)")
    try:
        import pkcs11  # noqa: F401
    except ModuleNotFoundError:
        missing.append("python-pkcs11 (pip install -e '.[dev]')")
    if missing:
        message = "the PKCS#11 tests need " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message + " in CI")
        pytest.skip(message)
    assert module is not None
    return module


@dataclass(frozen=True)
class SoftHsmToken:
    directory: Path
    module: str
    label: str = LABEL
    pin: str = PIN

    @property
    def conf(self) -> Path:
        return self.directory / "softhsm2.conf"

    @property
    def pin_file(self) -> Path:
        return self.directory / "pin"

    def env(self, **overrides: str) -> dict[str, str]:
        """``CALLSEC_CRYPTO__*`` overrides selecting this token (the PIN from a file)."""
        env = {
            "SOFTHSM2_CONF": str(self.conf),
            "CALLSEC_CRYPTO__BACKEND": "pkcs11",
            "CALLSEC_CRYPTO__PKCS11_MODULE": self.module,
            "CALLSEC_CRYPTO__PKCS11_TOKEN_LABEL": self.label,
            "CALLSEC_CRYPTO__PKCS11_PIN_FILE": str(self.pin_file),
        }
        env.update(overrides)
        return env

    def objects(self) -> list[dict[str, Any]]:
        """The token's secret keys as the token reports them (a separate process)."""
        result = subprocess.run(
            [sys.executable, "-m", "tests.harness.softhsm", self.module, self.label, self.pin],
            env={**os.environ, "SOFTHSM2_CONF": str(self.conf)}, cwd=REPO,
            capture_output=True, text=True, timeout=60, check=True)
        objects: list[dict[str, Any]] = json.loads(result.stdout)
        return objects

    def labels(self) -> list[str]:
        return sorted(str(o["label"]) for o in self.objects())


def new_token(directory: Path, pin: str = PIN) -> SoftHsmToken:
    """Initialise a fresh token labelled ``callsec-test`` (user PIN ``pin``) in ``directory``."""
    module = softhsm_module()
    token = SoftHsmToken(directory, module, pin=pin)
    (directory / "tokens").mkdir(parents=True, exist_ok=True)
    token.conf.write_text(f"directories.tokendir = {directory / 'tokens'}\n"
                          "objectstore.backend = file\nlog.level = ERROR\n", encoding="utf-8")
    token.pin_file.write_text(pin + "\n", encoding="utf-8")
    token.pin_file.chmod(0o600)
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", LABEL, "--pin", pin,
                    "--so-pin", SO_PIN], env={**os.environ, "SOFTHSM2_CONF": str(token.conf)},
                   capture_output=True, text=True, timeout=60, check=True)
    return token


def _inspect(module: str, label: str, pin: str) -> list[dict[str, Any]]:
    import pkcs11
    from pkcs11 import Attribute, ObjectClass
    from pkcs11.exceptions import PKCS11Error

    out = []
    token = pkcs11.lib(module).get_token(token_label=label)
    with token.open(user_pin=pin) as session:
        for obj in session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY}):
            try:
                obj[Attribute.VALUE]
                value_error = ""
            except PKCS11Error as exc:
                value_error = type(exc).__name__
            out.append({"label": obj[Attribute.LABEL], "token": obj[Attribute.TOKEN],
                        "sensitive": obj[Attribute.SENSITIVE],
                        "extractable": obj[Attribute.EXTRACTABLE],
                        "value_error": value_error})
    return out


if __name__ == "__main__":
    print(json.dumps(_inspect(*sys.argv[1:4])))
