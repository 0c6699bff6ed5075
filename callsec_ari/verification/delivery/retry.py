"""Per-attempt timeouts and a bounded retry budget shared by every network backend.

A caller waits at most ``budget_seconds`` in total: each attempt gets ``min(timeout_seconds,
time left)``; only timeouts, 5xx answers and connection errors are retried (never 4xx,
authentication failures or garbage answers, which a second attempt cannot fix and which may
already have sent the message).

Final reasons: the last attempt's reason, or ``budget`` when retries were left and the last
failure was retryable but no time remained for another attempt (or none could start at all).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from callsec_ari.verification.delivery.base import (
    DeliveryFailed,
    DeliveryReceipt,
    LatencyStats,
    Reason,
)

logger = logging.getLogger(__name__)

#: An attempt that cannot get at least this long is not started.
MIN_ATTEMPT_SECONDS = 0.05


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    timeout_seconds: float = 2.0
    #: Extra attempts after the first.
    retries: int = 1
    budget_seconds: float = 5.0
    #: First pause between attempts; doubles each time, never beyond the budget.
    backoff_seconds: float = 0.2
    #: Share of each pause drawn at random (0: none; 0.5: between half and all of it), so
    #: many senders retrying one receiver do not all come back at the same moment.
    jitter: float = 0.0
    #: No pause is longer than this (before jitter).
    max_backoff_seconds: float = float("inf")


#: One attempt, given the seconds it may take; returns the gateway's message id.
Attempt = Callable[[float], Awaitable[str]]


def _as_failure(exc: BaseException, backend: str) -> DeliveryFailed:
    if isinstance(exc, DeliveryFailed):
        return exc
    if isinstance(exc, TimeoutError):
        return DeliveryFailed("timeout", backend=backend, retryable=True)
    return DeliveryFailed("refused", backend=backend, retryable=True)


async def _one_attempt(attempt: Attempt, seconds: float) -> str:
    async with asyncio.timeout(seconds):
        return await attempt(seconds)


async def send_with_retry(
    backend: str, attempt: Attempt, policy: RetryPolicy, latency: LatencyStats | None = None
) -> DeliveryReceipt:
    """Run ``attempt`` (which returns the gateway's message id) under ``policy``."""
    start = time.monotonic()
    deadline = start + policy.budget_seconds
    last: DeliveryFailed | None = None
    attempts = 0
    for index in range(policy.retries + 1):
        remaining = deadline - time.monotonic()
        if remaining < MIN_ATTEMPT_SECONDS:
            break
        attempts += 1
        began = time.monotonic()
        try:
            message_id = await _one_attempt(attempt, min(policy.timeout_seconds, remaining))
        except (DeliveryFailed, TimeoutError, OSError) as exc:
            last = _as_failure(exc, backend)
            if latency is not None:
                latency.observe(backend, time.monotonic() - began, False)
            logger.info("delivery via %s attempt %d failed: %s", backend, attempts, last.reason)
            if not last.retryable:
                break
            if index < policy.retries:
                pause = min(policy.backoff_seconds * (2**index), policy.max_backoff_seconds)
                pause *= 1.0 - policy.jitter * random.random()  # jitter, not a secret
                await asyncio.sleep(max(0.0, min(pause, deadline - time.monotonic())))
            continue
        elapsed = time.monotonic() - start
        if latency is not None:
            latency.observe(backend, time.monotonic() - began, True)
        return DeliveryReceipt(
            backend=backend, message_id=message_id, attempts=attempts, elapsed=elapsed
        )
    raise _final(backend, last, attempts, policy, time.monotonic() - start) from last


def _final(
    backend: str, last: DeliveryFailed | None, attempts: int, policy: RetryPolicy, elapsed: float
) -> DeliveryFailed:
    reason: Reason
    if last is None:
        reason = "budget"
    elif last.retryable and last.reason != "timeout" and attempts <= policy.retries:
        reason = "budget"  # retries were left, time was not
    else:
        reason = last.reason
    return DeliveryFailed(
        reason,
        backend=backend,
        attempts=attempts,
        http_status=None if last is None else last.http_status,
        elapsed=elapsed,
    )
