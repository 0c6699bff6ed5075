"""The event body and its signature (pure).

Body: UTF-8 JSON ``{"id", "type", "call_id", "created", "data"}``; ``id`` is the idempotency
key (also the ``Callsec-Event-Id`` header): a retried or re-sent event keeps it.

Signature: ``Callsec-Signature: t=<unix seconds>,v1=<hex>`` where ``hex`` is HMAC-SHA256 under
the URL's secret over ``"<t>." + raw body`` (the same MAC as the signed SMS gateway's, see
:mod:`callsec_ari.core.signing`). Each attempt is signed with a fresh ``t``;
receivers reject a ``t`` outside their replay window (:data:`REPLAY_WINDOW_SECONDS`) and
ignore an ``id`` they have processed already.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from collections.abc import Mapping

from callsec_ari.core.signing import sign

SIGNATURE_HEADER = "Callsec-Signature"
EVENT_ID_HEADER = "Callsec-Event-Id"
EVENT_TYPE_HEADER = "Callsec-Event-Type"
#: What receivers should accept (documented; callsec signs each attempt afresh).
REPLAY_WINDOW_SECONDS = 300


def new_event_id() -> str:
    return "EV-" + secrets.token_hex(12)


def event_body(event_id: str, event_type: str, call_id: str, data: Mapping[str, object],
               created: float) -> bytes:
    return json.dumps({"id": event_id, "type": event_type, "call_id": call_id,
                       "created": int(created), "data": dict(data)},
                      ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


def signature(secret: bytes, timestamp: int, raw_body: bytes) -> str:
    """The ``Callsec-Signature`` header value."""
    digest = sign(secret, str(timestamp), raw_body).removeprefix("sha256=")
    return f"t={timestamp},v1={digest}"


def verify(secret: bytes, header: str, raw_body: bytes, *, now: float | None = None,
           tolerance_seconds: float = REPLAY_WINDOW_SECONDS) -> bool:
    """A receiver's check: the header parses, ``t`` is within the window, a ``v1`` matches."""
    try:
        parts = [p.split("=", 1) for p in header.split(",")]
        stamp = int(next(v for k, v in parts if k.strip() == "t"))
    except (ValueError, StopIteration):
        return False
    if abs((time.time() if now is None else now) - stamp) > tolerance_seconds:
        return False
    expected = signature(secret, stamp, raw_body).split("v1=", 1)[1]
    return any(k.strip() == "v1" and hmac.compare_digest(v.strip(), expected)
               for k, v in parts)
