"""HMAC-SHA256 signing in one place (pure): a key per purpose derived from a master key, hex MACs
and their constant-time checks, and the timestamped signature of the bodies callsec POSTs (SMS
gateway, payment gateway, webhooks) and receives (signed inbound SMS replies).

Timestamped: ``X-Callsec-Signature: sha256=<hex HMAC-SHA256 over "<timestamp>." + raw body>``
beside ``X-Callsec-Timestamp: <unix seconds>``; receivers check it with :func:`verify_signature`
(or the same three lines in their own language) and reject stale timestamps to stop replays.
"""

from __future__ import annotations

import hashlib
import hmac
import time

TIMESTAMP_HEADER = "X-Callsec-Timestamp"
SIGNATURE_HEADER = "X-Callsec-Signature"


def derive_key(key: bytes, label: bytes) -> bytes:
    """The key for one purpose (``label``), derived from ``key`` (e.g. the audit HMAC key)."""
    return hmac.new(key, label, hashlib.sha256).digest()


def mac_hex(key: bytes, message: bytes) -> str:
    """HMAC-SHA256 of ``message`` under ``key``, hex."""
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def mac_matches(key: bytes, message: bytes, signature: str) -> bool:
    """Whether ``signature`` is :func:`mac_hex` of ``message`` (constant time; False for junk)."""
    return hmac.compare_digest(mac_hex(key, message).encode("ascii"),
                               signature.encode("ascii", "replace"))


def sign(key: bytes, timestamp: str, raw_body: bytes) -> str:
    """The ``X-Callsec-Signature`` value: ``sha256=<hex>``."""
    return "sha256=" + mac_hex(key, timestamp.encode("ascii") + b"." + raw_body)


def verify_signature(
    key: bytes, timestamp: str, raw_body: bytes, signature: str, *,
    now: float | None = None, tolerance_seconds: float = 300.0,
) -> bool:
    """True when ``signature`` matches and ``timestamp`` is within ``tolerance_seconds``."""
    try:
        age = abs((time.time() if now is None else now) - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance_seconds and hmac.compare_digest(
        sign(key, timestamp, raw_body), signature
    )
