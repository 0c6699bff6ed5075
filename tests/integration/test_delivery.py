"""Code delivery against real peers on 127.0.0.1: an aiohttp server playing Twilio and a signed
HTTP gateway, aiosmtpd for SMTP (plain, STARTTLS, implicit TLS), and the file outbox."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import ssl
import stat
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from callsec_ari.config import EmailSettings, Secret, Settings, SmsSettings, VerificationSettings
from callsec_ari.core.errors import ConfigError, InvalidInput
from callsec_ari.verification.delivery import (
    DeliveryFailed,
    OutgoingMessage,
    RetryPolicy,
    build_deliveries,
)
from callsec_ari.verification.delivery.http import HttpDelivery
from callsec_ari.verification.delivery.outbox import OutboxDelivery
from callsec_ari.verification.delivery.smtp import SmtpDelivery, SmtpServer
from callsec_ari.verification.delivery.twilio import TwilioDelivery
from callsec_ari.verification.messages import call_reference, render_code_message

PHONE = "+4915112345678"
CODE = "482913"
SID = "AC0123456789abcdef"
TOKEN = "twilio-token"
HMAC_KEY = "gateway-shared-secret"
REF = call_reference("1736946420.42")
WHEN = datetime(2025, 1, 15, 13, 7, tzinfo=UTC)


def sms(lang: str = "en") -> OutgoingMessage:
    _, body = render_code_message(lang, "sms", CODE, REF, WHEN, VerificationSettings())
    return OutgoingMessage(to=PHONE, body=body, kind="sms", call_ref=REF)


def mail(to: str = "kunde@example.org") -> OutgoingMessage:
    subject, body = render_code_message("de", "email", CODE, REF, WHEN, VerificationSettings())
    return OutgoingMessage(to=to, body=body, kind="email", subject=subject, call_ref=REF)


def assert_no_secrets(text: str) -> None:
    assert CODE not in text and PHONE not in text and PHONE[3:] not in text
    assert "kunde@example.org" not in text


# --- an aiohttp peer playing both Twilio and the signed HTTP gateway ------------------------

@dataclass
class Gateway:
    url: str
    mode: str = "ok"  # ok | 500 | 400 | sleep | garbage | no-id
    requests: list[dict[str, Any]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def misbehave(self) -> web.Response | None:
        if self.mode == "500":
            return web.Response(status=500, text="upstream down")
        if self.mode == "400":
            return web.json_response({"message": "invalid number"}, status=400)
        if self.mode == "sleep":
            try:
                await asyncio.wait_for(self.release.wait(), 30)
            except TimeoutError:
                pass
            return web.Response(status=504)
        if self.mode == "garbage":
            return web.Response(status=200, text="<html>OK</html>", content_type="text/html")
        if self.mode == "no-id":
            return web.json_response({"status": "queued"}, status=202)
        return None


def _twilio_handler(gw: Gateway) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        expected = "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            gw.requests.append({"auth": "bad"})
            return web.json_response({"code": 20003, "message": "Authenticate"}, status=401)
        form = await request.post()
        gw.requests.append({"account": request.match_info["sid"], **{k: str(v) for k, v in form.items()}})
        bad = await gw.misbehave()
        if bad is not None:
            return bad
        if set(form) != {"To", "From", "Body"}:
            return web.json_response({"message": "bad form"}, status=400)
        return web.json_response({"sid": "SM" + "f" * 32, "status": "queued"}, status=201)
    return handler


def _hook_handler(gw: Gateway) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        timestamp = request.headers.get("X-Callsec-Timestamp", "")
        mac = hmac.new(HMAC_KEY.encode(), timestamp.encode() + b"." + raw, hashlib.sha256)
        signed = hmac.compare_digest(
            request.headers.get("X-Callsec-Signature", ""), "sha256=" + mac.hexdigest()
        )
        fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) < 60
        gw.requests.append({"signed": signed, "fresh": fresh, "json": json.loads(raw)})
        if not (signed and fresh):
            return web.json_response({"error": "bad signature"}, status=403)
        bad = await gw.misbehave()
        return bad if bad is not None else web.json_response({"id": "msg-0001"})
    return handler


@pytest_asyncio.fixture
async def gateway() -> AsyncIterator[Gateway]:
    gw = Gateway(url="")
    app = web.Application()
    app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", _twilio_handler(gw))
    app.router.add_post("/hook", _hook_handler(gw))
    runner = web.AppRunner(app, shutdown_timeout=1.0, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    gw.url = "http://127.0.0.1:{}".format(*runner.addresses[0][1:2])
    yield gw
    gw.release.set()
    await runner.cleanup()


def twilio(gw: Gateway, policy: RetryPolicy | None = None, token: str = TOKEN) -> TwilioDelivery:
    return TwilioDelivery(account_sid=SID, auth_token=Secret(token), sender="CallSec",
                          url=gw.url, policy=policy)


def hook(gw: Gateway, policy: RetryPolicy | None = None, key: str = HMAC_KEY) -> HttpDelivery:
    return HttpDelivery(url=gw.url + "/hook", hmac_key=Secret(key), policy=policy)


# --- Twilio -------------------------------------------------------------------------------

async def test_twilio_backend_posts_form_with_basic_auth_and_returns_sid(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    message = sms()
    with caplog.at_level(logging.DEBUG):
        receipt = await twilio(gateway).send(message)
    assert "twilio" in caplog.text
    assert_no_secrets(caplog.text)
    assert receipt.backend == "twilio" and receipt.message_id == "SM" + "f" * 32
    assert receipt.attempts == 1
    assert gateway.requests == [
        {"account": SID, "To": PHONE, "From": "CallSec", "Body": message.body}
    ]


async def test_twilio_wrong_token_fails_with_auth_and_is_not_retried(gateway: Gateway) -> None:
    policy = RetryPolicy(timeout_seconds=1, retries=3, budget_seconds=5)
    with pytest.raises(DeliveryFailed) as info:
        await twilio(gateway, policy, token="wrong").send(sms())
    assert info.value.reason == "auth" and info.value.attempts == 1
    assert len(gateway.requests) == 1
    assert_no_secrets(str(info.value) + repr(info.value.to_json()))


async def test_twilio_4xx_is_not_retried(gateway: Gateway) -> None:
    gateway.mode = "400"
    policy = RetryPolicy(timeout_seconds=1, retries=3, budget_seconds=5)
    with pytest.raises(DeliveryFailed) as info:
        await twilio(gateway, policy).send(sms())
    assert info.value.reason == "http_status" and info.value.http_status == 400
    assert len(gateway.requests) == 1


# --- the signed HTTP gateway ----------------------------------------------------------------

async def test_http_gateway_request_is_signed_with_hmac_over_timestamp_and_body(
    gateway: Gateway,
) -> None:
    message = sms("de")
    receipt = await hook(gateway).send(message)
    assert receipt.message_id == "msg-0001" and receipt.backend == "http"
    [request] = gateway.requests
    assert request["signed"] and request["fresh"]
    assert request["json"] == {"to": PHONE, "body": message.body, "kind": "sms", "call_ref": REF}


async def test_http_gateway_rejects_a_wrong_key_and_callsec_reports_auth(gateway: Gateway) -> None:
    with pytest.raises(DeliveryFailed) as info:
        await hook(gateway, key="not-the-key").send(sms())
    assert info.value.reason == "auth"
    assert gateway.requests[0]["signed"] is False


async def test_http_gateway_500_is_retried_then_fails_within_the_budget(gateway: Gateway) -> None:
    gateway.mode = "500"
    policy = RetryPolicy(timeout_seconds=1, retries=2, budget_seconds=3, backoff_seconds=0.1)
    began = time.monotonic()
    with pytest.raises(DeliveryFailed) as info:
        await hook(gateway, policy).send(sms())
    elapsed = time.monotonic() - began
    assert info.value.reason == "http_status" and info.value.http_status == 500
    assert info.value.attempts == 3 and len(gateway.requests) == 3
    assert elapsed <= policy.budget_seconds + 0.5
    assert_no_secrets(str(info.value))


async def test_endless_500s_stop_when_the_budget_is_spent(gateway: Gateway) -> None:
    gateway.mode = "500"
    policy = RetryPolicy(timeout_seconds=1, retries=1000, budget_seconds=1.0, backoff_seconds=0.1)
    began = time.monotonic()
    with pytest.raises(DeliveryFailed) as info:
        await twilio(gateway, policy).send(sms())
    elapsed = time.monotonic() - began
    assert info.value.reason == "budget"
    assert 2 <= info.value.attempts < 1000
    assert elapsed <= policy.budget_seconds + 0.5


async def test_slow_gateway_times_out_within_the_budget(gateway: Gateway) -> None:
    gateway.mode = "sleep"
    policy = RetryPolicy(timeout_seconds=0.7, retries=5, budget_seconds=2.0, backoff_seconds=0.1)
    began = time.monotonic()
    with pytest.raises(DeliveryFailed) as info:
        await hook(gateway, policy).send(sms())
    elapsed = time.monotonic() - began
    assert info.value.reason == "timeout"
    assert info.value.attempts >= 2
    assert elapsed <= policy.budget_seconds + 0.5


async def test_garbage_answer_is_delivery_failed_garbage_without_retry(gateway: Gateway) -> None:
    gateway.mode = "garbage"
    policy = RetryPolicy(timeout_seconds=1, retries=3, budget_seconds=5)
    with pytest.raises(DeliveryFailed) as info:
        await hook(gateway, policy).send(sms())
    assert info.value.reason == "garbage" and info.value.attempts == 1


async def test_json_answer_without_id_is_garbage(gateway: Gateway) -> None:
    gateway.mode = "no-id"
    with pytest.raises(DeliveryFailed) as info:
        await hook(gateway).send(sms())
    assert info.value.reason == "garbage"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_connection_refused_is_retried_then_reported_refused() -> None:
    delivery = HttpDelivery(
        url=f"http://127.0.0.1:{_closed_port()}/hook", hmac_key=Secret(HMAC_KEY),
        policy=RetryPolicy(timeout_seconds=1, retries=2, budget_seconds=3, backoff_seconds=0.05),
    )
    with pytest.raises(DeliveryFailed) as info:
        await delivery.send(sms())
    assert info.value.reason == "refused" and info.value.attempts == 3


async def test_latency_of_every_attempt_reaches_the_callback(gateway: Gateway) -> None:
    seen: list[tuple[str, float, bool]] = []
    settings = Settings(sms=SmsSettings(backend="twilio", url=gateway.url, account_sid=SID,
                                        auth_token=Secret(TOKEN), retries=2, budget_seconds=3))
    deliveries = build_deliveries(settings, on_latency=lambda *args: seen.append(args))
    assert isinstance(deliveries.sms, TwilioDelivery)
    await deliveries.sms.send(sms())
    gateway.mode = "500"
    with pytest.raises(DeliveryFailed):
        await deliveries.sms.send(sms())
    assert [(b, ok) for b, _, ok in seen] == [("twilio", True)] + [("twilio", False)] * 3
    assert all(0 < seconds < 2 for _, seconds, _ in seen)
    histogram = deliveries.latency.histograms["twilio"]
    assert histogram.count == 4 and histogram.failures == 3
    assert histogram.cumulative()[-1] == (float("inf"), 4)


# --- SMTP (aiosmtpd on loopback) -------------------------------------------------------------

class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append((list(envelope.rcpt_tos), parsed))
        return "250 OK"


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str,
                   auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (
        auth_data.login == b"callsec" and auth_data.password == b"s3cret"
    )
    return AuthResult(success=ok, handled=False)


@dataclass
class Tls:
    cert: Path
    server: ssl.SSLContext


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
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
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_path, key_path)
    return Tls(cert=cert_path, server=server)


@pytest.fixture
def smtp_peer() -> Iterator[Any]:
    started: list[Controller] = []

    def start(**kwargs: Any) -> tuple[Inbox, int]:
        inbox, port = Inbox(), _closed_port()
        controller = Controller(inbox, hostname="127.0.0.1", port=port, **kwargs)
        controller.start()
        started.append(controller)
        return inbox, port

    yield start
    for controller in started:
        controller.stop()


def _assert_code_mail(inbox: Inbox) -> None:
    [(rcpt, received)] = inbox.messages
    expected_subject, expected_body = mail().subject, mail().body
    assert rcpt == ["kunde@example.org"]
    assert received["Subject"] == expected_subject and "Bestätigungscode" in received["Subject"]
    assert received["From"] == "callsec@bank.example"
    assert received["X-Callsec-Call-Ref"] == REF
    assert received.get_content_charset() == "utf-8"
    assert received.get_content().replace("\r\n", "\n") == expected_body
    assert CODE not in str(received["Subject"])


def _smtp(port: int, **kwargs: Any) -> SmtpDelivery:
    server = SmtpServer(host="127.0.0.1", port=port, sender="callsec@bank.example",
                        **{k: v for k, v in kwargs.items() if k != "ca_file"})
    return SmtpDelivery(server, ca_file=kwargs.get("ca_file"),
                        policy=RetryPolicy(timeout_seconds=2, retries=1, budget_seconds=4))


async def test_smtp_plain_delivers_utf8_mail_with_subject(smtp_peer: Any) -> None:
    inbox, port = smtp_peer()
    receipt = await _smtp(port).send(mail())
    assert receipt.backend == "smtp" and receipt.message_id.endswith("@bank.example>")
    _assert_code_mail(inbox)


async def test_smtp_starttls_with_auth_delivers_over_a_verified_channel(
    smtp_peer: Any, tls: Tls
) -> None:
    inbox, port = smtp_peer(tls_context=tls.server, require_starttls=True,
                            authenticator=_authenticator, auth_require_tls=True)
    await _smtp(port, security="starttls", username="callsec", password=Secret("s3cret"),
                ca_file=tls.cert).send(mail())
    _assert_code_mail(inbox)


async def test_smtp_implicit_tls_delivers(smtp_peer: Any, tls: Tls) -> None:
    inbox, port = smtp_peer(ssl_context=tls.server)
    await _smtp(port, security="tls", ca_file=tls.cert).send(mail())
    _assert_code_mail(inbox)


async def test_smtp_untrusted_certificate_is_refused_without_retry(
    smtp_peer: Any, tls: Tls
) -> None:
    inbox, port = smtp_peer(tls_context=tls.server, require_starttls=True)
    with pytest.raises(DeliveryFailed) as info:
        await _smtp(port, security="starttls").send(mail())
    assert info.value.reason == "refused" and info.value.attempts == 1
    assert inbox.messages == []


async def test_smtp_wrong_password_fails_with_auth(smtp_peer: Any, tls: Tls) -> None:
    inbox, port = smtp_peer(tls_context=tls.server, require_starttls=True,
                            authenticator=_authenticator, auth_require_tls=True)
    with pytest.raises(DeliveryFailed) as info:
        await _smtp(port, security="starttls", username="callsec", password=Secret("nope"),
                    ca_file=tls.cert).send(mail())
    assert info.value.reason == "auth" and info.value.attempts == 1
    assert inbox.messages == []
    assert_no_secrets(str(info.value))


async def test_silent_smtp_server_times_out_within_the_budget() -> None:
    release = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()  # never sends a greeting
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    delivery = SmtpDelivery(SmtpServer(host="127.0.0.1", port=port),
                            policy=RetryPolicy(timeout_seconds=0.6, retries=3,
                                               budget_seconds=1.5, backoff_seconds=0.05))
    began = time.monotonic()
    try:
        with pytest.raises(DeliveryFailed) as info:
            await delivery.send(mail())
    finally:
        release.set()
        server.close()
        await server.wait_closed()
    assert info.value.reason == "timeout" and info.value.attempts >= 2
    assert time.monotonic() - began <= 1.5 + 0.5


async def test_smtp_server_down_is_refused_after_retries() -> None:
    with pytest.raises(DeliveryFailed) as info:
        await _smtp(_closed_port()).send(mail())
    assert info.value.reason == "refused" and info.value.attempts == 2


# --- the outbox -----------------------------------------------------------------------------

async def test_outbox_writes_one_private_json_file_per_message(tmp_path: Path) -> None:
    outbox = tmp_path / "var" / "outbox"
    delivery = OutboxDelivery(outbox)
    first = await delivery.send(sms())
    second = await delivery.send(mail())
    assert stat.S_IMODE(outbox.stat().st_mode) == 0o700
    files = sorted(outbox.iterdir())
    assert [f.name for f in files] == [first.message_id, second.message_id]
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = json.loads(files[0].read_text(encoding="utf-8"))
    assert set(text) == {"to", "body", "kind", "created", "call_ref"}
    assert text["to"] == PHONE and text["kind"] == "sms" and CODE in text["body"]
    assert datetime.fromisoformat(text["created"]).tzinfo is not None
    letter = json.loads(files[1].read_text(encoding="utf-8"))
    assert letter["kind"] == "email" and letter["subject"] == mail().subject
    assert "Bestätigungscode" in letter["subject"]


async def test_outbox_names_sort_in_creation_order_and_leave_no_temp_files(
    tmp_path: Path,
) -> None:
    delivery = OutboxDelivery(tmp_path)
    ids = [(await delivery.send(sms())).message_id for _ in range(20)]
    assert sorted(ids) == ids and len(set(ids)) == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ids


def test_default_settings_deliver_both_channels_to_the_outbox(tmp_path: Path) -> None:
    deliveries = build_deliveries(Settings(base_dir=tmp_path))
    assert isinstance(deliveries.sms, OutboxDelivery)
    assert isinstance(deliveries.email, OutboxDelivery)
    assert deliveries.sms.outbox_dir == tmp_path / "var" / "outbox"


def test_smtp_backend_is_built_from_the_email_section(tmp_path: Path) -> None:
    settings = Settings(email=EmailSettings(backend="smtp", host="127.0.0.1", port=2525,
                                            security="starttls"))
    deliveries = build_deliveries(settings)
    assert isinstance(deliveries.email, SmtpDelivery)
    assert deliveries.email.server.security == "starttls"


@pytest.mark.parametrize(
    ("sms_settings", "key"),
    [
        (SmsSettings(backend="http", url="http://127.0.0.1:9/hook"), "hmac_key"),
        (SmsSettings(backend="http", hmac_key=Secret("k")), "url"),
        (SmsSettings(backend="twilio", auth_token=Secret("t")), "account_sid"),
    ],
)
def test_missing_gateway_settings_are_config_errors_naming_the_key(
    sms_settings: SmsSettings, key: str
) -> None:
    with pytest.raises(ConfigError) as info:
        build_deliveries(Settings(sms=sms_settings))
    assert (info.value.section, info.value.key) == ("sms", key)


def test_outgoing_message_repr_masks_number_code_and_body() -> None:
    message = sms()
    for text in (repr(message), str(message), f"{message}", repr([message])):
        assert CODE not in text and PHONE not in text and message.body not in text
    assert "+49…78" in repr(message) and REF in repr(message)
    assert "example.org" in repr(mail()) and "kunde" not in repr(mail())


def test_outgoing_message_rejects_a_number_that_is_not_e164() -> None:
    with pytest.raises(InvalidInput) as info:
        OutgoingMessage(to="015112345678", body="x", kind="sms", call_ref=REF)
    assert "015112345678" not in str(info.value)
