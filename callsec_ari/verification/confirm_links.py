"""Confirm without typing (pure: no I/O): one-time link tokens, message lines, SMS replies and
the Twilio request signature.

A link is ``<[web] public_url>/confirm/<token>``; the token is 32 random bytes (256 bits,
URL-safe base64), stored only as its SHA-256 (:mod:`callsec_ari.store.confirmations`). A reply
``YES`` / ``JA`` confirms, ``NO`` / ``NEIN`` says "this is not me" (case, spaces and a trailing
full stop or exclamation mark do not matter); anything else is no answer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from callsec_ari.core.errors import ConfigError

if TYPE_CHECKING:
    from callsec_ari.config import Settings

LINK_PATH = "/confirm/"
TWILIO_PATH = "/inbound/sms/twilio"
HTTP_PATH = "/inbound/sms/http"
TOKEN_BYTES = 32
YES = frozenset({"yes", "y", "ja", "j"})
NO = frozenset({"no", "n", "nein"})

_LINES = {
    "en": {"link": "Confirm, or tell us it is not you: {link}",
           "reply": "Reply YES to confirm, NO if this is not you."},
    "de": {"link": "Bestätigen oder melden, dass Sie es nicht sind: {link}",
           "reply": "Antworten Sie JA zum Bestätigen, NEIN wenn Sie es nicht sind."},
}


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def well_formed_token(token: str) -> bool:
    return 40 <= len(token) <= 64 and all(ch.isascii() and (ch.isalnum() or ch in "-_")
                                          for ch in token)


def link_for(public_url: str, token: str) -> str:
    return public_url.rstrip("/") + LINK_PATH + token


def message_lines(language: str, *, link: str = "", reply: bool = False) -> str:
    """The lines added to the code message (en/de by the customer's language)."""
    texts = _LINES.get(language[:2].lower(), _LINES["en"])
    lines = [texts["link"].format(link=link)] if link else []
    if reply:
        lines.append(texts["reply"])
    return " ".join(lines)


def parse_reply(body: str) -> bool | None:
    """True (confirm), False (not me) or None (not an answer)."""
    word = body.strip().rstrip(".!").strip().casefold()
    return True if word in YES else False if word in NO else None


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """Twilio's ``X-Twilio-Signature``: base64 HMAC-SHA1 (key: the auth token) of the full URL
    followed by every POST parameter as name + value, sorted by name (then value)."""
    data = url + "".join(k + v for k, v in sorted(params))
    mac = hmac.new(auth_token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def twilio_signature_ok(auth_token: str, url: str, params: Iterable[tuple[str, str]],
                        signature: str) -> bool:
    if not auth_token or not signature:
        return False
    expected = twilio_signature(auth_token, url, params)
    return hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8", "replace"))


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_public_url(settings: Settings) -> None:
    """``[web] public_url``: absolute ``https://`` (``http://`` on loopback only), no query or
    fragment; required when a policy offers the link."""
    url = settings.web.public_url
    if not url:
        if any("link" in p.methods for p in settings.policies.values()):
            raise ConfigError("required when a policy lists the link method", section="web",
                              key="public_url")
        return
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError("must be an absolute https:// URL", section="web", key="public_url")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise ConfigError("must use https:// (http:// only for a loopback host)",
                          section="web", key="public_url")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError("must not carry a query, fragment or user info", section="web",
                          key="public_url")
