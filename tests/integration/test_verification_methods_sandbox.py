"""The other verification paths on real SIP calls: an expired code is refused (and a new one
sent), e-mail through a real SMTP server on loopback (aiosmtpd), the authenticator app (TOTP,
nothing sent), and a German-language customer."""

from __future__ import annotations

import asyncio
import email
import itertools
import os
import re
import socket
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pyotp
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Message

from tests.harness.callsec_proc import CallsecProcess, code_from
from tests.harness.carrier import Carrier
from tests.harness.sandbox import A, Sandbox
from tests.integration.capture_env import running_callsec, workdir
from tests.integration.test_verification_sandbox import a_channel, a_var, wait_var

pytestmark = pytest.mark.sandbox
_numbers = itertools.count(500)
TTL = 6


def fresh_mobile() -> str:
    return f"+49152{os.getpid() % 1000:03d}{next(_numbers):05d}"


class Mailbox(Message):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[email.message.Message] = []

    def handle_message(self, message: email.message.Message) -> None:
        self.messages.append(message)


@pytest.fixture(scope="module")
def mailbox() -> Iterator[Mailbox]:
    handler = Mailbox()
    with socket.socket() as probe:  # a free loopback port (aiosmtpd checks readiness on it)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    handler.port = port  # type: ignore[attr-defined]
    yield handler
    controller.stop()


@pytest.fixture(scope="module")
async def callsec(sandbox: Sandbox, mailbox: Mailbox, register_secret) -> AsyncIterator[CallsecProcess]:  # type: ignore[no-untyped-def]
    async with running_callsec(workdir("verification-methods"), {
            "CALLSEC_VERIFICATION__CODE_TTL_SECONDS": str(TTL),
            "CALLSEC_EMAIL__BACKEND": "smtp", "CALLSEC_EMAIL__HOST": "127.0.0.1",
            "CALLSEC_EMAIL__PORT": str(mailbox.port),  # type: ignore[attr-defined]
            }, register_secret) as proc:
        yield proc


async def test_expired_code_is_refused_and_a_new_one_is_sent(
        callsec: CallsecProcess, carrier: Carrier, ari_a: aiohttp.ClientSession) -> None:
    mobile = fresh_mobile()
    callsec.add_customer(name="Late Typer", mobile=mobile)
    before = len(callsec.outbox_messages())
    call = await carrier.call("1000", caller_id=mobile)
    await call.wait_up()
    old = code_from(await callsec.wait_message(before + 1))
    channel = await a_channel(ari_a, mobile, "1000")
    await asyncio.sleep(TTL + 1)
    await call.send_dtmf(old + "#")
    new = code_from(await callsec.wait_message(before + 2, timeout=20))
    assert await a_var(ari_a, channel, "CALLSEC_RESULT") in (None, "")  # not verified by it
    await call.send_dtmf(new + "#")
    assert await wait_var(ari_a, channel, "CALLSEC_RESULT") == "verified"
    await call.hangup()


async def test_email_code_through_real_smtp_server(
        callsec: CallsecProcess, carrier: Carrier, mailbox: Mailbox,
        ari_a: aiohttp.ClientSession, register_secret) -> None:  # type: ignore[no-untyped-def]
    mobile = fresh_mobile()
    callsec.add_customer(name="Mail Reader", mobile=mobile, email="mail.reader@example.org",
                         method="email")
    before = len(mailbox.messages)
    call = await carrier.call("1000", caller_id=mobile)
    await call.wait_up()
    async with asyncio.timeout(15):
        while len(mailbox.messages) <= before:
            await asyncio.sleep(0.1)
    message = mailbox.messages[before]
    assert message["To"] == "mail.reader@example.org"
    body = message.get_payload(decode=True).decode()  # type: ignore[union-attr]
    code = re.findall(r"(?<![\d:])(\d{6})(?![\d:])", body)[0]
    register_secret(code)
    channel = await a_channel(ari_a, mobile, "1000")
    await asyncio.sleep(1.0)
    await call.send_dtmf(code + "#")
    assert await wait_var(ari_a, channel, "CALLSEC_RESULT") == "verified"
    assert await a_var(ari_a, channel, "CALLSEC_METHOD") == "email"
    await call.hangup()


async def test_authenticator_app_code_verifies_without_sending_anything(
        callsec: CallsecProcess, carrier: Carrier, ari_a: aiohttp.ClientSession) -> None:
    mobile = fresh_mobile()
    secret = pyotp.random_base32()
    result = callsec.cli("customers", "add", "--name", "App User", "--mobile", mobile,
                         "--method", "totp", "--totp-secret-stdin",
                         stdin=secret + "\n")
    assert result.returncode == 0, result.stderr
    before = len(callsec.outbox_messages())
    call = await carrier.call("1000", caller_id=mobile)
    await call.wait_up()
    channel = await a_channel(ari_a, mobile, "1000")
    await asyncio.sleep(2.0)
    await call.send_dtmf(pyotp.TOTP(secret).now() + "#")
    assert await wait_var(ari_a, channel, "CALLSEC_RESULT") == "verified"
    assert await a_var(ari_a, channel, "CALLSEC_METHOD") == "totp"
    assert len(callsec.outbox_messages()) == before  # nothing was sent
    await call.hangup()


async def test_german_customer_gets_german_message_and_verifies(
        callsec: CallsecProcess, carrier: Carrier, ari_a: aiohttp.ClientSession) -> None:
    mobile = fresh_mobile()
    callsec.add_customer(name="Jürgen Größe", mobile=mobile, lang="de")
    before = len(callsec.outbox_messages())
    call = await carrier.call("1000", caller_id=mobile)
    await call.wait_up()
    message = await callsec.wait_message(before + 1)
    assert "niemals" in message["body"]
    channel = await a_channel(ari_a, mobile, "1000")
    await asyncio.sleep(1.0)
    await call.send_dtmf(code_from(message) + "#")
    assert await wait_var(ari_a, channel, "CALLSEC_RESULT") == "verified"
    await call.hangup()
    # Asterisk A logged the prompts it played to this caller, in German
    assert "language 'de'" in A.full_log.read_text(errors="replace")
