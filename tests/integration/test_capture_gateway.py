"""The payment-gateway sink against a real aiohttp HTTPS server on loopback, with a real
SQLite store: the HMAC signature checks out, the CVV reaches the gateway and nothing else
(never the vault, the records or the audit trail), only token / brand / last 4 are kept, mutual
TLS works, and every digit holder is wiped, on errors too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
import sqlite3
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select

from callsec_ari.capture import protocol as cp
from callsec_ari.capture.errors import GatewayFailed
from callsec_ari.capture.service import CaptureFeature
from callsec_ari.capture.sinks import CaptureValues, GatewaySink, VaultSink, build_sink
from callsec_ari.config import CaptureSettings, Secret
from callsec_ari.config_check import load_settings
from callsec_ari.core.digits import SensitiveDigits
from callsec_ari.core.errors import ConfigError
from callsec_ari.core.ports import CallHandle
from callsec_ari.core.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from callsec_ari.logs import call_logger
from callsec_ari.probe.flow import ProbeFlow
from callsec_ari.runtime.dispatcher import Dispatcher
from callsec_ari.runtime.executor import CallExecutor
from callsec_ari.store.context import Store, init_keys, open_store
from callsec_ari.store.models import VaultItemRow

KEY = "gateway-shared-secret"
CARD, EXPIRY, CVV = "4539578763621486", "1230", "8642"
IBAN_DIGITS = "89370400440532013000"


def holder(value: str) -> SensitiveDigits:
    digits = SensitiveDigits(capacity=len(value))
    for ch in value:
        digits.append(ch)
    return digits


def values(*kinds: str) -> tuple[tuple[str, SensitiveDigits], ...]:
    clear = {"card_number": CARD, "expiry": EXPIRY, "cvv": CVV, "iban": IBAN_DIGITS}
    return tuple((kind, holder(clear[kind])) for kind in kinds)


# --- TLS material -------------------------------------------------------------------------------

@dataclass
class Pem:
    cert: Path
    key: Path


def self_signed(folder: Path, name: str) -> Pem:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = Pem(folder / f"{name}.pem", folder / f"{name}.key")
    pem.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return pem


@dataclass
class Tls:
    server: Pem
    client: Pem


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    folder = tmp_path_factory.mktemp("gateway-tls")
    return Tls(server=self_signed(folder, "gateway"), client=self_signed(folder, "callsec"))


# --- the gateway ------------------------------------------------------------------------------

@dataclass
class Gateway:
    url: str
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    answer: tuple[int, Any] = (201, {"token": "tok_live_abc123", "brand": "VISA",
                                     "last4": CARD[-4:]})


@asynccontextmanager
async def _serve(gateway: Gateway, context: ssl.SSLContext) -> AsyncIterator[Gateway]:
    async def pay(request: web.Request) -> web.Response:
        gateway.requests.append((dict(request.headers), await request.read()))
        status, body = gateway.answer
        if isinstance(body, bytes):
            return web.Response(status=status, body=body)
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_post("/pay", pay)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    gateway.url = f"https://127.0.0.1:{port}/pay"
    try:
        yield gateway
    finally:
        await runner.cleanup()


def _server_context(tls: Tls, *, client_cert: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.server.cert, tls.server.key)
    if client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(tls.client.cert)
    return context


@pytest.fixture
async def gateway(tls: Tls) -> AsyncIterator[Gateway]:
    async with _serve(Gateway(url=""), _server_context(tls, client_cert=False)) as served:
        yield served


@pytest.fixture
async def mtls_gateway(tls: Tls) -> AsyncIterator[Gateway]:
    async with _serve(Gateway(url=""), _server_context(tls, client_cert=True)) as served:
        yield served


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    config = tmp_path / "callsec.conf"
    config.write_text(f"[database]\nurl = sqlite:///{tmp_path / 'callsec.db'}\n"
                      f"[crypto]\nkeyring_dir = {tmp_path / 'keys'}\n", encoding="utf-8")
    settings = load_settings(config, env={})
    init_keys(settings)  # keys are created only on purpose
    opened = open_store(settings)
    yield opened
    opened.close()


def settings_for(url: str, tls: Tls, **extra: Any) -> CaptureSettings:
    base = CaptureSettings(sink="gateway", gateway_url=url, gateway_hmac_key=Secret(KEY),
                           gateway_ca_file=tls.server.cert, gateway_timeout_seconds=5.0)
    return replace(base, **extra)


def database_text(store: Store) -> bytes:
    path = Path(store.db.engine.url.database or "")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        dump = "\n".join(conn.iterdump()).encode()
    return dump + b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def whole(value: str) -> re.Pattern[bytes]:
    return re.compile(rb"(?<![0-9A-Za-z])" + value.encode() + rb"(?![0-9A-Za-z])")


def capture(kinds: tuple[tuple[str, SensitiveDigits], ...]) -> CaptureValues:
    return CaptureValues(capture_id="CP-0123456789abcdef", call_id="call-1", customer_ref=None,
                         values=kinds)


# --- tests ------------------------------------------------------------------------------------

async def test_card_goes_to_the_gateway_signed_and_only_the_token_brand_and_last4_stay(
        gateway: Gateway, tls: Tls, store: Store) -> None:
    sink = GatewaySink(settings_for(gateway.url, tls), VaultSink(store.vault, "DE"))
    holders = values("card_number", "expiry", "cvv", "iban")
    result = await sink.store(capture(holders))

    (headers, raw), = gateway.requests
    assert verify_signature(KEY.encode(), headers[TIMESTAMP_HEADER], raw,
                            headers[SIGNATURE_HEADER])
    assert headers["Idempotency-Key"] == "CP-0123456789abcdef"
    body = json.loads(raw)
    assert body["card"] == {"card_number": CARD, "expiry": EXPIRY, "cvv": CVV}  # CVV sent
    assert "iban" not in raw.decode()
    assert (result.gateway_token, result.brand, result.last4) == \
        ("tok_live_abc123", "visa", CARD[-4:])
    assert list(result.vault_refs) == ["iban"]  # IBANs always go to the vault
    assert all(h.wiped for _, h in holders)
    assert store.vault.reveal(result.vault_refs["iban"], actor="test", reason="check",
                              allowed=lambda _k: True) == "DE" + IBAN_DIGITS
    stored = database_text(store)
    for secret in (CARD, CVV):
        assert not whole(secret).search(stored)


async def test_service_records_the_token_and_masked_card_but_never_the_cvv(
        gateway: Gateway, tls: Tls, store: Store) -> None:
    dispatcher = Dispatcher(CallExecutor())
    feature = CaptureFeature(store, dispatcher, build_sink(settings_for(gateway.url, tls),
                                                          store.vault))
    call = CallHandle(call_id="call-7", flow=ProbeFlow("call-7"),
                      log=call_logger(logging.getLogger("test"), "call-7"))
    holders = values("card_number", "expiry", "cvv")
    masked = (("card_number", (("length", 16), ("valid", True), ("brand", "visa"),
                               ("last4", CARD[-4:]))),
              ("expiry", (("length", 4), ("valid", True))), ("cvv", (("length", 4),
                                                                    ("valid", True))))
    events = await feature.store_capture(call, cp.StoreCapture(
        capture_id="CP-00000000000000aa", customer_ref="", values=holders, masked=masked,
        fields=("card_number", "expiry", "cvv"), requested_by="user:anna"))
    assert events[0].refs == (("gateway", "tok_live_abc123"),)  # type: ignore[attr-defined]
    assert all(h.wiped for _, h in holders)
    info = await feature.get("CP-00000000000000aa")
    assert info.state == "captured"
    assert info.masked["gateway_token"] == "tok_live_abc123"
    assert info.masked["fields"]["card_number"]["last4"] == CARD[-4:]
    assert info.masked["vault_refs"] == {}
    actions = [e.action for e in store.audit.tail()]
    assert actions[-1] == "capture.finished"
    stored = database_text(store)
    for secret in (CARD, CVV, EXPIRY + CVV):
        assert not whole(secret).search(stored)


async def test_mutual_tls_without_hmac_key(mtls_gateway: Gateway, tls: Tls,
                                           store: Store) -> None:
    settings = settings_for(mtls_gateway.url, tls, gateway_hmac_key=Secret(""),
                            gateway_cert_file=tls.client.cert, gateway_key_file=tls.client.key)
    sink = GatewaySink(settings, VaultSink(store.vault, "DE"))
    result = await sink.store(capture(values("card_number", "cvv")))
    assert result.gateway_token == "tok_live_abc123"
    (headers, _raw), = mtls_gateway.requests
    assert SIGNATURE_HEADER not in headers


async def test_no_client_certificate_no_card(mtls_gateway: Gateway, tls: Tls,
                                             store: Store) -> None:
    sink = GatewaySink(settings_for(mtls_gateway.url, tls), VaultSink(store.vault, "DE"))
    holders = values("card_number", "cvv", "iban")
    with pytest.raises(GatewayFailed) as failed:
        await sink.store(capture(holders))
    assert failed.value.details["reason"] in ("tls", "unreachable")
    assert all(h.wiped for _, h in holders)
    assert mtls_gateway.requests == []


@pytest.mark.parametrize("answer", [(402, {"error": "declined"}), (200, b"not json"),
                                    (200, {"brand": "visa"})])
async def test_a_refusal_or_garbage_stores_nothing_and_wipes_everything(
        gateway: Gateway, tls: Tls, store: Store, answer: tuple[int, Any]) -> None:
    gateway.answer = answer
    sink = GatewaySink(settings_for(gateway.url, tls), VaultSink(store.vault, "DE"))
    holders = values("card_number", "expiry", "cvv", "iban")
    with pytest.raises(GatewayFailed):
        await sink.store(capture(holders))
    assert all(h.wiped for _, h in holders)
    assert not whole(IBAN_DIGITS).search(database_text(store))  # the vault got nothing
    with store.db.session() as s:
        assert s.scalar(select(func.count()).select_from(VaultItemRow)) == 0


async def test_an_unreachable_gateway_fails_fast(tls: Tls, store: Store) -> None:
    sink = GatewaySink(settings_for("https://127.0.0.1:9/pay", tls), VaultSink(store.vault, "DE"))
    holders = values("card_number", "cvv")
    async with asyncio.timeout(10):
        with pytest.raises(GatewayFailed):
            await sink.store(capture(holders))
    assert all(h.wiped for _, h in holders)


def test_card_data_never_goes_over_plain_http_to_a_remote_host(tls: Tls, store: Store) -> None:
    with pytest.raises(ConfigError) as refused:
        GatewaySink(settings_for("http://pay.example/api", tls), VaultSink(store.vault, "DE"))
    assert refused.value.key == "gateway_url"
    with pytest.raises(ConfigError):
        GatewaySink(settings_for("https://pay.example/api", tls, gateway_hmac_key=Secret("")),
                    VaultSink(store.vault, "DE"))


def test_the_vault_sink_drops_the_cvv(store: Store) -> None:
    sink = VaultSink(store.vault, "DE")
    holders = values("card_number", "cvv")
    result = sink.store_sync(capture(holders))
    assert list(result.vault_refs) == ["card_number"]
    assert all(h.wiped for _, h in holders)
    assert not whole(CVV).search(database_text(store))
