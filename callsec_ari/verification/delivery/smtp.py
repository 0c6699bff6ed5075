"""E-mail over SMTP: standard library ``smtplib`` in a worker thread.

Why not aiosmtplib: one message per verification is a light load, ``smtplib`` is maintained
with CPython, supports ``none`` / ``starttls`` / ``tls`` and AUTH, and adds no dependency. Its
one drawback, a blocking socket that ``asyncio`` cannot cancel, is bounded here: the thread gets
a deadline (the attempt's time allowance) and re-arms the socket timeout to the time left
before every SMTP step, so an abandoned attempt's thread ends by that deadline too.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from callsec_ari.config import Secret
from callsec_ari.core.masking import mask_recipient
from callsec_ari.verification.delivery.base import (
    DeliveryFailed,
    DeliveryReceipt,
    LatencyStats,
    OutgoingMessage,
)
from callsec_ari.verification.delivery.retry import RetryPolicy, send_with_retry

logger = logging.getLogger(__name__)

BACKEND = "smtp"
_NO_PASSWORD = Secret("")


@dataclass(frozen=True, kw_only=True)
class SmtpServer:
    host: str = "127.0.0.1"
    port: int = 25
    #: ``none`` | ``starttls`` | ``tls``
    security: str = "none"
    username: str = ""
    password: Secret = _NO_PASSWORD
    sender: str = "callsec@localhost"


def build_email(message: OutgoingMessage, sender: str) -> EmailMessage:
    """The RFC 5322 message: UTF-8 body (quoted-printable, 7-bit safe), encoded subject."""
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = message.to
    mail["Subject"] = message.subject or ""
    mail["Date"] = formatdate(usegmt=True)
    domain = sender.rsplit("@", 1)[1] if "@" in sender else "localhost"
    mail["Message-ID"] = make_msgid(domain=domain)
    mail["X-Callsec-Call-Ref"] = message.call_ref
    mail.set_content(message.body, charset="utf-8", cte="quoted-printable")
    return mail


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def left(self) -> float:
        remaining = self.at - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("smtp attempt ran out of time")
        return remaining

    def arm(self, client: smtplib.SMTP) -> None:
        if client.sock is not None:
            client.sock.settimeout(self.left())


def _failure(exc: smtplib.SMTPException) -> DeliveryFailed:
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return DeliveryFailed("auth", backend=BACKEND)
    if isinstance(exc, smtplib.SMTPServerDisconnected | smtplib.SMTPConnectError):
        return DeliveryFailed("refused", backend=BACKEND, retryable=True)
    code = getattr(exc, "smtp_code", None)
    temporary = isinstance(code, int) and 400 <= code < 500
    return DeliveryFailed("refused", backend=BACKEND, retryable=temporary)


def _converse(client: smtplib.SMTP, server: SmtpServer, context: ssl.SSLContext,
              mail: EmailMessage, deadline: _Deadline) -> None:
    deadline.arm(client)
    client.ehlo()
    if server.security == "starttls":
        deadline.arm(client)
        client.starttls(context=context)
        deadline.arm(client)
        client.ehlo()
    if server.username:
        deadline.arm(client)
        client.login(server.username, str(server.password))
    deadline.arm(client)
    client.send_message(mail)


def _send_blocking(server: SmtpServer, context: ssl.SSLContext, mail: EmailMessage,
                   seconds: float) -> None:
    deadline = _Deadline(seconds)
    client: smtplib.SMTP
    try:
        if server.security == "tls":
            client = smtplib.SMTP_SSL(server.host, server.port, timeout=deadline.left(),
                                      context=context)
        else:
            client = smtplib.SMTP(server.host, server.port, timeout=deadline.left())
    except smtplib.SMTPException as exc:
        raise _failure(exc) from exc
    except ssl.SSLError as exc:
        raise DeliveryFailed("refused", backend=BACKEND) from exc
    try:
        _converse(client, server, context, mail, deadline)
    except smtplib.SMTPException as exc:
        raise _failure(exc) from exc
    except ssl.SSLError as exc:  # certificate or protocol failure: retrying will not help
        raise DeliveryFailed("refused", backend=BACKEND) from exc
    finally:
        _close(client)


def _close(client: smtplib.SMTP) -> None:
    try:
        if client.sock is not None:
            client.sock.settimeout(0.5)
            client.quit()
    except (OSError, smtplib.SMTPException):
        pass  # the message is sent (or failed) already; QUIT is a courtesy
    finally:
        client.close()


class SmtpDelivery:
    backend = BACKEND

    def __init__(
        self,
        server: SmtpServer,
        *,
        policy: RetryPolicy | None = None,
        ca_file: Path | None = None,
        ssl_context: ssl.SSLContext | None = None,
        latency: LatencyStats | None = None,
    ) -> None:
        self.server = server
        self._policy = policy or RetryPolicy(timeout_seconds=3.0)
        self._context = ssl_context or ssl.create_default_context(
            cafile=str(ca_file) if ca_file is not None else None
        )
        self._latency = latency

    async def send(self, message: OutgoingMessage) -> DeliveryReceipt:
        if message.kind != "email":
            raise DeliveryFailed("refused", backend=self.backend)
        mail = build_email(message, self.server.sender)

        async def attempt(seconds: float) -> str:
            await asyncio.to_thread(_send_blocking, self.server, self._context, mail, seconds)
            return str(mail["Message-ID"])

        receipt = await send_with_retry(self.backend, attempt, self._policy, self._latency)
        logger.info("e-mail to %s accepted by %s:%d after %d attempt(s) (call ref %s)",
                    mask_recipient(message.to), self.server.host, self.server.port,
                    receipt.attempts, message.call_ref)
        return receipt
