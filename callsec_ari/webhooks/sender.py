"""One signed POST of one event to one URL, with retries (aiohttp; no state).

Retried (jittered exponential backoff, at most ``max_attempts`` tries within ``max_seconds``):
connection errors, timeouts, 5xx, 408 and 429. Any other non-2xx answer fails at once. The
retry loop is the one the SMS gateways use (:mod:`callsec_ari.verification.delivery.retry`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from callsec_ari.verification.delivery.base import DeliveryFailed, DeliveryReceipt
from callsec_ari.verification.delivery.retry import RetryPolicy, send_with_retry
from callsec_ari.webhooks.signing import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    signature,
)

BACKEND = "webhook"
RETRYABLE_4XX = frozenset({408, 429})


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    secret: bytes = b""

    def __repr__(self) -> str:
        return f"Target({self.url!r})"


@dataclass(frozen=True, slots=True, kw_only=True)
class Outgoing:
    event_id: str
    event_type: str
    call_id: str
    body: bytes


def _status_failure(status: int) -> DeliveryFailed:
    retryable = status >= 500 or status in RETRYABLE_4XX
    return DeliveryFailed("http_status", backend=BACKEND, http_status=status, retryable=retryable)


async def post_once(session: aiohttp.ClientSession, target: Target, item: Outgoing,
                    seconds: float, clock: Callable[[], float] = time.time) -> str:
    """One attempt; returns the HTTP status (as text) of a 2xx answer."""
    stamp = int(clock())
    headers = {"Content-Type": "application/json; charset=utf-8",
               "User-Agent": "callsec-webhooks/1",
               SIGNATURE_HEADER: signature(target.secret, stamp, item.body),
               EVENT_ID_HEADER: item.event_id, EVENT_TYPE_HEADER: item.event_type}
    try:
        async with session.post(target.url, data=item.body, headers=headers,
                                allow_redirects=False,
                                timeout=aiohttp.ClientTimeout(total=seconds)) as response:
            if not 200 <= response.status < 300:
                raise _status_failure(response.status)
            return str(response.status)
    except aiohttp.InvalidURL as exc:
        raise DeliveryFailed("refused", backend=BACKEND) from exc
    except aiohttp.ClientError as exc:
        if isinstance(exc, TimeoutError):
            raise
        raise DeliveryFailed("refused", backend=BACKEND, retryable=True) from exc


async def deliver(session: aiohttp.ClientSession, target: Target, item: Outgoing,
                  policy: RetryPolicy, clock: Callable[[], float] = time.time) -> DeliveryReceipt:
    """Every attempt ``policy`` allows; raises :class:`DeliveryFailed` after the last."""
    async def attempt(seconds: float) -> str:
        return await post_once(session, target, item, seconds, clock)
    return await send_with_retry(BACKEND, attempt, policy)
