"""Where captured values go: the vault, or a payment gateway (cards) plus the vault (the rest),
or sealed to the merchant's public key (``sink = sealed``: :mod:`callsec_ari.capture.sealed`).

``[capture] sink = vault``: every field is encrypted into the vault (:class:`VaultSink`), except
the CVV, which is wiped and dropped (PCI DSS: a card security code is never stored).

``[capture] sink = gateway``: the card fields (number, expiry, CVV) are POSTed as JSON to
``[capture] gateway_url`` over HTTPS (mutual TLS with ``gateway_cert_file``/``gateway_key_file``),
signed like the HTTP SMS backend (``X-Callsec-Timestamp``, ``X-Callsec-Signature: sha256=<hex
HMAC-SHA256 over "<timestamp>." + body>`` keyed with ``gateway_hmac_key``); callsec keeps only the
returned ``token``, ``brand`` and ``last4``. IBANs, ids and postal codes go to the vault.

The request body::

    {"capture_id": "CP-...", "customer_ref": "C-..." | null,
     "card": {"card_number": "...", "expiry": "MMYY", "cvv": "..."}}

and a 2xx answer ``{"token": "...", "brand": "visa", "last4": "1111"}`` (brand and last 4
optional). One attempt per capture: a payment is not replayed; ``Idempotency-Key`` carries the
capture id for gateways that deduplicate.

Each :class:`~callsec_ari.core.digits.SensitiveDigits` holder is wiped as soon as its value
was handed over (the card holders while the request body is built, before it is sent); the
service wipes every holder again afterwards, errors included.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp

from callsec_ari.capture.errors import GatewayFailed
from callsec_ari.capture.fields import FieldKind, build_iban
from callsec_ari.config import CaptureSettings
from callsec_ari.core.digits import SensitiveDigits
from callsec_ari.core.errors import ConfigError
from callsec_ari.core.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from callsec_ari.store.vault import Vault

log = logging.getLogger(__name__)

#: Fields that make up card data (sent to the gateway when ``sink = gateway``).
CARD_FIELDS = frozenset({FieldKind.CARD_NUMBER.value, FieldKind.EXPIRY.value,
                         FieldKind.CVV.value})
CVV = FieldKind.CVV.value
MAX_ANSWER_BYTES = 16384
_LOOPBACK_NAMES = frozenset({"localhost"})


@dataclass(frozen=True, kw_only=True)
class CaptureValues:
    """One capture's values on their way to a sink (holders are wiped by the sink/service)."""

    capture_id: str
    call_id: str
    customer_ref: str | None
    values: tuple[tuple[str, SensitiveDigits], ...] = field(repr=False)


@dataclass(frozen=True, kw_only=True)
class SinkResult:
    #: field kind -> opaque vault ref (``V-...``)
    vault_refs: dict[str, str] = field(default_factory=dict)
    gateway_token: str | None = None
    brand: str | None = None
    last4: str | None = None
    #: ``sink = sealed``: field kind -> envelope sealed to the merchant's key (stored).
    sealed: dict[str, dict[str, object]] = field(default_factory=dict)
    #: ``sink = sealed``: fields sealed but held in memory for one hand-over (the CVV).
    sealed_once: list[str] = field(default_factory=list)

    @property
    def refs(self) -> tuple[tuple[str, str], ...]:
        """For ``CaptureStored.refs``: the vault refs, the token as ``("gateway", ...)``, each
        sealed field as ``("sealed", kind)``."""
        refs = tuple(sorted(self.vault_refs.items()))
        sealed = tuple(("sealed", kind) for kind in sorted({*self.sealed, *self.sealed_once}))
        return refs + ((("gateway", self.gateway_token),) if self.gateway_token else ()) + sealed


class Sink(Protocol):
    name: str

    async def store(self, capture: CaptureValues) -> SinkResult: ...


def wipe_all(values: Sequence[tuple[str, SensitiveDigits]]) -> None:
    for _kind, holder in values:
        holder.wipe()


class VaultSink:
    """Every field into the vault, under the customer's key (or the call's); CVV dropped."""

    name = "vault"

    def __init__(self, vault: Vault, iban_country: str) -> None:
        self.vault = vault
        self.iban_country = iban_country

    async def store(self, capture: CaptureValues) -> SinkResult:
        return await self.vault.db.offload(self.store_sync, capture)

    def store_sync(self, capture: CaptureValues) -> SinkResult:
        refs: dict[str, str] = {}
        try:
            for kind, holder in capture.values:
                if kind == CVV:
                    holder.wipe()
                    log.info("capture %s: CVV never stored (wiped)", capture.capture_id)
                    continue
                value = holder.reveal()
                if kind == FieldKind.IBAN.value:
                    value = build_iban(self.iban_country, value)
                refs[kind] = self.vault.put(
                    kind, value, customer_ref=capture.customer_ref,
                    call_id=capture.call_id)
                holder.wipe()
        finally:
            wipe_all(capture.values)
        return SinkResult(vault_refs=refs)


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def gateway_ssl_context(settings: CaptureSettings) -> ssl.SSLContext:
    """TLS towards the gateway: its CA (or the system's), our client certificate if set."""
    try:
        context = ssl.create_default_context(
            cafile=str(settings.gateway_ca_file) if settings.gateway_ca_file else None)
        if settings.gateway_cert_file is not None:
            context.load_cert_chain(str(settings.gateway_cert_file),
                                    str(settings.gateway_key_file or settings.gateway_cert_file))
    except (OSError, ssl.SSLError) as exc:
        key = "gateway_cert_file" if settings.gateway_ca_file is None else "gateway_ca_file"
        raise ConfigError(f"cannot load the TLS files: {exc.__class__.__name__}",
                          section="capture", key=key) from None
    return context


def check_gateway_settings(settings: CaptureSettings) -> None:
    """A gateway URL over HTTPS (plain HTTP only to a loopback test server) and a way to
    authenticate (HMAC key or client certificate)."""
    parts = urlsplit(settings.gateway_url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError("an https:// URL is required with sink = gateway",
                          section="capture", key="gateway_url")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigError("card data goes over HTTPS only (http:// is allowed for loopback "
                          "test servers)", section="capture", key="gateway_url")
    if not settings.gateway_hmac_key and settings.gateway_cert_file is None:
        raise ConfigError("set gateway_hmac_key or gateway_cert_file (mutual TLS)",
                          section="capture", key="gateway_hmac_key")
    if settings.gateway_key_file is not None and settings.gateway_cert_file is None:
        raise ConfigError("gateway_key_file needs gateway_cert_file", section="capture",
                          key="gateway_cert_file")


class GatewaySink:
    """Card fields to the payment gateway (token, brand, last 4 kept); the rest to the vault."""

    name = "gateway"

    def __init__(self, settings: CaptureSettings, vault_sink: VaultSink, *,
                 session: aiohttp.ClientSession | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        check_gateway_settings(settings)
        self.url = settings.gateway_url
        self._key = str(settings.gateway_hmac_key).encode("utf-8")
        self._ssl = gateway_ssl_context(settings) if self.url.startswith("https:") else None
        self._timeout = aiohttp.ClientTimeout(total=settings.gateway_timeout_seconds)
        self.vault_sink = vault_sink
        self._session = session
        self._clock = clock

    async def store(self, capture: CaptureValues) -> SinkResult:
        card = tuple((k, h) for k, h in capture.values if k in CARD_FIELDS)
        rest = tuple((k, h) for k, h in capture.values if k not in CARD_FIELDS)
        try:
            answer = await self._post(capture, card) if card else SinkResult()
            stored = await self.vault_sink.store(
                CaptureValues(capture_id=capture.capture_id, call_id=capture.call_id,
                              customer_ref=capture.customer_ref, values=rest)) \
                if rest else SinkResult()
        finally:
            wipe_all(capture.values)
        return SinkResult(vault_refs=stored.vault_refs, gateway_token=answer.gateway_token,
                          brand=answer.brand, last4=answer.last4)

    def body(self, capture: CaptureValues,
             card: Sequence[tuple[str, SensitiveDigits]]) -> bytes:
        """The JSON body; every card holder (CVV included) is wiped as its value is taken."""
        fields: dict[str, str] = {}
        for kind, holder in card:
            fields[kind] = holder.take()
        raw = json.dumps({"capture_id": capture.capture_id, "customer_ref": capture.customer_ref,
                          "card": fields}, separators=(",", ":")).encode("utf-8")
        fields.clear()
        return raw

    async def _post(self, capture: CaptureValues,
                    card: Sequence[tuple[str, SensitiveDigits]]) -> SinkResult:
        raw = self.body(capture, card)
        timestamp = str(int(self._clock()))
        headers = {"Content-Type": "application/json; charset=utf-8",
                   "Idempotency-Key": capture.capture_id, TIMESTAMP_HEADER: timestamp}
        if self._key:
            headers[SIGNATURE_HEADER] = sign(self._key, timestamp, raw)
        async with AsyncExitStack() as stack:
            session = self._session
            if session is None:
                session = await stack.enter_async_context(aiohttp.ClientSession())
            try:
                async with session.post(self.url, data=raw, headers=headers,
                                        ssl=self._ssl if self._ssl is not None else True,
                                        timeout=self._timeout, allow_redirects=False) as resp:
                    status = resp.status
                    answer = await resp.content.read(MAX_ANSWER_BYTES + 1)
            except TimeoutError:
                raise GatewayFailed("the payment gateway timed out",
                                    details={"reason": "timeout"}) from None
            except aiohttp.ClientError as exc:
                reason = "tls" if isinstance(exc, aiohttp.ClientSSLError) else "unreachable"
                raise GatewayFailed("the payment gateway cannot be reached",
                                    details={"reason": reason}) from None
        if not 200 <= status < 300:
            raise GatewayFailed("the payment gateway refused the card",
                                details={"reason": "http_status", "status": status})
        return parse_answer(answer)


def parse_answer(answer: bytes) -> SinkResult:
    """``{"token", "brand"?, "last4"?}`` -> a result; anything else is ``GatewayFailed``."""
    try:
        data: Any = json.loads(answer) if len(answer) <= MAX_ANSWER_BYTES else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        data = None
    if not isinstance(data, dict):
        raise GatewayFailed("the payment gateway answered garbage", details={"reason": "garbage"})
    token, brand, last4 = data.get("token"), data.get("brand"), data.get("last4")
    if not isinstance(token, str) or not 0 < len(token) <= 255:
        raise GatewayFailed("the payment gateway answered no token", details={"reason": "token"})
    if not (isinstance(brand, str) and 0 < len(brand) <= 32 and brand.isascii()):
        brand = None
    if not (isinstance(last4, str) and len(last4) == 4 and last4.isdigit()):
        last4 = None
    return SinkResult(gateway_token=token, brand=brand.lower() if brand else None, last4=last4)


def build_sink(settings: CaptureSettings, vault: Vault, *,
               session: aiohttp.ClientSession | None = None) -> Sink:
    vault_sink = VaultSink(vault, settings.iban_country)
    if settings.sink == "gateway":
        return GatewaySink(settings, vault_sink, session=session)
    if settings.sink == "sealed":
        from callsec_ari.capture.sealed import SealedSink, load_sealing_key

        return SealedSink(load_sealing_key(settings.sealed_public_key), settings.iban_country)
    return vault_sink
