"""``[capture] sink = sealed``: values sealed to the merchant's public key (HPKE for X25519 and
P-256, RSA-OAEP-256 + AES-256-GCM for RSA), opened only by the merchant's private key with the
shipped example (``examples/merchant_decrypt.py``, run as the merchant would: a subprocess);
config errors through ``callsec check-config`` (exit 2, naming the key)."""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519
from cryptography.x509.oid import NameOID

from callsec_ari.capture.sealed import OnceStore, SealedSink, load_sealing_key
from callsec_ari.capture.sinks import CaptureValues
from callsec_ari.core.digits import SensitiveDigits
from callsec_ari.core.errors import ConfigError
from tests.unit.test_check_config_cli import check_config

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "merchant_decrypt.py"
PAN, EXP, CVV = "4111111111111111", "1230", "737"


def _pem(key: Any) -> bytes:
    return bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))


def _public_pem(key: Any) -> bytes:
    return bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def _certificate(key: Any, *, days: int = 30) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "merchant")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=2))
            .not_valid_after(now + dt.timedelta(days=days)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


KEYS: dict[str, Callable[[], Any]] = {
    "x25519": x25519.X25519PrivateKey.generate,
    "p256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "rsa": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
}


@pytest.fixture(scope="module")
def merchant() -> ModuleType:
    spec = importlib.util.spec_from_file_location("merchant_decrypt", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def holder(value: str) -> SensitiveDigits:
    digits = SensitiveDigits(capacity=len(value))
    for ch in value:
        digits.append(ch)
    return digits


def _seal(public_file: Path, capture_id: str = "CP-test1") -> tuple[SealedSink, dict[str, Any]]:
    sink = SealedSink(load_sealing_key(public_file), "DE")
    values = tuple((k, holder(v)) for k, v in
                   (("card_number", PAN), ("expiry", EXP), ("cvv", CVV)))
    result = asyncio.run(sink.store(CaptureValues(
        capture_id=capture_id, call_id="c1", customer_ref=None, values=values)))
    assert all(holder.wiped for _, holder in values)
    return sink, {"capture_id": capture_id, "sealed": {**result.sealed,
                                                       **sink.once.take(capture_id)}}


def _decrypt(tmp_path: Path, private: bytes, document: dict[str, Any],
             ) -> subprocess.CompletedProcess[str]:
    (tmp_path / "priv.pem").write_bytes(private)
    (tmp_path / "sealed.json").write_text(json.dumps(document))
    return subprocess.run([sys.executable, str(EXAMPLE), "--key", str(tmp_path / "priv.pem"),
                           "--json", str(tmp_path / "sealed.json")],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("kind", sorted(KEYS))
@pytest.mark.parametrize("as_cert", [False, True])
def test_only_the_merchants_private_key_opens_the_sealed_card(
        tmp_path: Path, kind: str, as_cert: bool) -> None:
    if as_cert and kind == "x25519":
        pytest.skip("X25519 keys cannot sign their own certificate")
    key = KEYS[kind]()
    public = tmp_path / "merchant.crt"
    public.write_bytes(_certificate(key) if as_cert else _public_pem(key))
    _, document = _seal(public)
    assert PAN not in json.dumps(document)
    opened = _decrypt(tmp_path, _pem(key), document)
    assert opened.returncode == 0, opened.stderr
    assert json.loads(opened.stdout)["values"] == {"card_number": PAN, "expiry": EXP, "cvv": CVV}
    other = _decrypt(tmp_path, _pem(KEYS[kind]()), document)
    assert other.returncode == 1 and PAN not in other.stdout + other.stderr


def test_a_sealed_value_moved_to_another_field_or_capture_does_not_open(
        tmp_path: Path, merchant: ModuleType) -> None:
    key = x25519.X25519PrivateKey.generate()
    public = tmp_path / "merchant.pem"
    public.write_bytes(_public_pem(key))
    _, document = _seal(public)
    sealed = document["sealed"]
    assert merchant.open_value(key, "CP-test1", "card_number", sealed["card_number"]) == PAN
    with pytest.raises(merchant.CannotOpen):
        merchant.open_value(key, "CP-test1", "expiry", sealed["card_number"])
    with pytest.raises(merchant.CannotOpen):
        merchant.open_value(key, "CP-other", "card_number", sealed["card_number"])
    rsa_key = KEYS["rsa"]()
    public.write_bytes(_public_pem(rsa_key))
    _, document = _seal(public)
    with pytest.raises(merchant.CannotOpen):
        merchant.open_value(rsa_key, "CP-test1", "cvv", document["sealed"]["expiry"])


def test_the_cvv_is_handed_over_once_then_gone(tmp_path: Path) -> None:
    public = tmp_path / "merchant.pem"
    public.write_bytes(_public_pem(x25519.X25519PrivateKey.generate()))
    sink = SealedSink(load_sealing_key(public), "DE")
    result = asyncio.run(sink.store(CaptureValues(
        capture_id="CP-x", call_id="c1", customer_ref=None,
        values=(("card_number", holder(PAN)), ("cvv", holder(CVV))))))
    assert set(result.sealed) == {"card_number"} and result.sealed_once == ["cvv"]
    assert ("sealed", "cvv") in result.refs
    assert set(sink.once.take("CP-x")) == {"cvv"}
    assert sink.once.take("CP-x") == {}


def test_an_unclaimed_cvv_expires() -> None:
    now = [0.0]
    once = OnceStore(clock=lambda: now[0], ttl=10.0)
    once.put("CP-a", {"cvv": {"ct": "x"}})
    now[0] = 11.0
    assert once.take("CP-a") == {}


@pytest.mark.parametrize(("content", "why"), [
    (None, "cannot read"),
    (b"garbage", "not an X.509"),
    (b"ed25519", "unsupported key type"),
    (b"rsa1024", "unsupported key type"),
    (b"private", "private key"),
    (b"expired", "expired"),
])
def test_a_bad_merchant_key_is_a_config_error_naming_it(tmp_path: Path, content: bytes | None,
                                                         why: str) -> None:
    path = tmp_path / "merchant.pem"
    if content == b"ed25519":
        content = _public_pem(ed25519.Ed25519PrivateKey.generate())
    elif content == b"rsa1024":
        content = _public_pem(rsa.generate_private_key(public_exponent=65537, key_size=1024))
    elif content == b"private":
        content = _pem(x25519.X25519PrivateKey.generate())
    elif content == b"expired":
        content = _certificate(ec.generate_private_key(ec.SECP256R1()), days=-1)
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        load_sealing_key(path)
    assert err.value.key == "sealed_public_key" and why in str(err.value)


@pytest.mark.parametrize("key_file", ["", "/nonexistent/merchant.pem"])
def test_check_config_refuses_sealed_without_a_usable_key(key_file: str) -> None:
    env = {"CALLSEC_CAPTURE__SINK": "sealed"}
    if key_file:
        env["CALLSEC_CAPTURE__SEALED_PUBLIC_KEY"] = key_file
    result = check_config(env=env)
    assert result.returncode == 2 and "[capture] sealed_public_key: " in result.stderr


def test_check_config_accepts_a_merchant_certificate(tmp_path: Path) -> None:
    cert = tmp_path / "merchant.crt"
    cert.write_bytes(_certificate(ec.generate_private_key(ec.SECP256R1())))
    result = check_config(env={"CALLSEC_CAPTURE__SINK": "sealed",
                               "CALLSEC_CAPTURE__SEALED_PUBLIC_KEY": str(cert)})
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("refs", "stored_as"), [
    ((("card_number", "V-1"), ("sealed", "card_number"), ("sealed", "cvv")), "sealed"),
    ((("gateway", "tok_1"),), "token"),
    ((("iban", "V-2"),), "vault"),
    ((), None),
])
def test_the_desk_is_told_what_the_capture_was_stored_as(refs: tuple[tuple[str, str], ...],
                                                         stored_as: str | None) -> None:
    from callsec_ari.capture import protocol as cp
    from callsec_ari.core import commands as c
    from tests.unit.test_capture_steering import CVV as CODE
    from tests.unit.test_capture_steering import EXPIRY, connected, keys, start_capture

    flow = connected()
    start_capture(flow)
    keys(flow, PAN + "#")
    keys(flow, EXPIRY, at=20.0)
    keys(flow, CODE, at=30.0)
    back = flow.handle(cp.CaptureStored(capture_id="CP-1", refs=refs))
    finished = [dict(x.payload) for x in back
                if isinstance(x, c.Publish) and dict(x.payload).get("stage") == "finished"]
    assert finished and finished[0]["result"] == "captured"
    assert finished[0].get("stored_as") == stored_as
