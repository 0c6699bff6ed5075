"""Build the SMS and e-mail deliveries the configuration names."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from callsec_ari.config import EmailSettings, Settings, SmsSettings
from callsec_ari.core.errors import ConfigError
from callsec_ari.verification.delivery.base import Delivery, Kind, LatencyCallback, LatencyStats
from callsec_ari.verification.delivery.http import HttpDelivery
from callsec_ari.verification.delivery.outbox import OutboxDelivery
from callsec_ari.verification.delivery.retry import RetryPolicy
from callsec_ari.verification.delivery.smtp import SmtpDelivery, SmtpServer
from callsec_ari.verification.delivery.twilio import TwilioDelivery

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deliveries:
    """The configured backends: ``.sms``, ``.email``, and their shared latency record."""

    sms: Delivery
    email: Delivery
    latency: LatencyStats = field(default_factory=LatencyStats)
    #: Names of the configured backends, e.g. ``{"sms": "outbox", "email": "smtp"}``.
    backends: dict[str, str] = field(default_factory=dict)

    def for_kind(self, kind: Kind) -> Delivery:
        return self.sms if kind == "sms" else self.email


def _resolve(base_dir: Path, path: Path) -> Path:
    return path if path.is_absolute() else base_dir / path


def _require(section: str, **values: str) -> None:
    for key, value in values.items():
        if not value:
            raise ConfigError("required by this backend", section=section, key=key)


def _sms(sms: SmsSettings, base_dir: Path, session: aiohttp.ClientSession | None,
         latency: LatencyStats) -> Delivery:
    policy = RetryPolicy(timeout_seconds=sms.timeout_seconds, retries=sms.retries,
                         budget_seconds=sms.budget_seconds)
    if sms.backend == "twilio":
        _require("sms", account_sid=sms.account_sid, auth_token=sms.auth_token,
                 sender=sms.sender)
        return TwilioDelivery(account_sid=sms.account_sid, auth_token=sms.auth_token,
                              sender=sms.sender, url=sms.url, policy=policy, session=session,
                              latency=latency)
    if sms.backend == "http":
        _require("sms", url=sms.url, hmac_key=sms.hmac_key)
        return HttpDelivery(url=sms.url, hmac_key=sms.hmac_key, policy=policy, session=session,
                            latency=latency)
    if sms.backend == "outbox":
        return OutboxDelivery(_resolve(base_dir, sms.outbox_dir), latency=latency)
    raise ConfigError("must be one of outbox, twilio, http", section="sms", key="backend")


def _email(email: EmailSettings, outbox_dir: Path, base_dir: Path,
           latency: LatencyStats) -> Delivery:
    if email.backend == "smtp":
        _require("email", host=email.host, sender=email.sender)
        server = SmtpServer(host=email.host, port=email.port, security=email.security,
                            username=email.username, password=email.password,
                            sender=email.sender)
        policy = RetryPolicy(timeout_seconds=email.timeout_seconds, retries=email.retries,
                             budget_seconds=email.budget_seconds)
        ca_file = None if email.ca_file is None else _resolve(base_dir, email.ca_file)
        return SmtpDelivery(server, policy=policy, ca_file=ca_file, latency=latency)
    if email.backend == "outbox":
        return OutboxDelivery(_resolve(base_dir, outbox_dir), latency=latency)
    raise ConfigError("must be one of outbox, smtp", section="email", key="backend")


def build_deliveries(
    settings: Settings,
    *,
    session: aiohttp.ClientSession | None = None,
    on_latency: LatencyCallback | None = None,
) -> Deliveries:
    """Deliveries per ``[sms] backend`` and ``[email] backend``.

    ``session``: a shared aiohttp session owned by the caller (the composition root); without
    one each HTTP send opens and closes its own. ``on_latency(backend, seconds, ok)`` is called
    after every attempt. E-mail written to the outbox goes to ``[sms] outbox_dir`` too.
    """
    latency = LatencyStats(callbacks=(on_latency,) if on_latency else ())
    sms = _sms(settings.sms, settings.base_dir, session, latency)
    email = _email(settings.email, settings.sms.outbox_dir, settings.base_dir, latency)
    backends = {"sms": settings.sms.backend, "email": settings.email.backend}
    if "outbox" in backends.values():
        logger.warning("code messages go to the development outbox %s: not for production",
                       _resolve(settings.base_dir, settings.sms.outbox_dir))
    return Deliveries(sms=sms, email=email, latency=latency, backends=backends)
