"""The delivery interface: one outgoing message, its receipt, the failure type, latency record.

A message body carries a one-time code and its recipient is a phone number or an e-mail
address: none of the three ever appears in a ``repr``, a log line or an exception message.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from callsec_ari.core.errors import CallsecError, ErrorId, InvalidInput
from callsec_ari.core.masking import mask_recipient

Kind = Literal["sms", "email"]
Reason = Literal["timeout", "refused", "http_status", "garbage", "auth", "budget"]
REASONS: tuple[Reason, ...] = ("timeout", "refused", "http_status", "garbage", "auth", "budget")

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True, kw_only=True, repr=False)
class OutgoingMessage:
    """One code message. ``to`` is E.164 (``+4915112345678``) for ``sms``, an address for
    ``email``; ``subject`` is for e-mail only; ``call_ref`` is the short opaque call reference."""

    to: str
    body: str
    kind: Kind
    call_ref: str
    subject: str | None = None

    def __post_init__(self) -> None:
        if self.kind == "sms":
            if not _E164.match(self.to):
                raise InvalidInput("sms recipient is not an E.164 number")
        elif self.kind == "email":
            if not _EMAIL.match(self.to):
                raise InvalidInput("email recipient is not an e-mail address")
        else:
            raise InvalidInput("message kind must be sms or email")
        if not self.body:
            raise InvalidInput("message body is empty")

    def __repr__(self) -> str:
        subject = "None" if self.subject is None else f"<{len(self.subject)} chars>"
        return (
            f"OutgoingMessage(kind={self.kind!r}, to={mask_recipient(self.to)!r}, "
            f"body=<{len(self.body)} chars>, subject={subject}, call_ref={self.call_ref!r})"
        )

    __str__ = __repr__


@dataclass(frozen=True, kw_only=True)
class DeliveryReceipt:
    """What a gateway answered: its message id, how many attempts it took, seconds in total."""

    backend: str
    message_id: str
    attempts: int
    elapsed: float


class DeliveryFailed(CallsecError):
    """A message could not be delivered. ``reason`` is one of :data:`REASONS`; ``retryable``
    tells the retry loop whether another attempt may help (timeouts, 5xx, connection errors)."""

    error_id = ErrorId.DELIVERY_FAILED
    status = 502

    def __init__(
        self,
        reason: Reason,
        *,
        backend: str = "",
        attempts: int = 0,
        http_status: int | None = None,
        retryable: bool = False,
        elapsed: float | None = None,
    ) -> None:
        where = f" via {backend}" if backend else ""
        extra = f" (HTTP {http_status})" if http_status is not None else ""
        details: dict[str, object] = {"reason": reason, "backend": backend, "attempts": attempts}
        if http_status is not None:
            details["http_status"] = http_status
        if elapsed is not None:
            details["elapsed"] = round(elapsed, 3)
        super().__init__(f"delivery{where} failed: {reason}{extra}", details=details)
        self.reason: Reason = reason
        self.backend = backend
        self.attempts = attempts
        self.http_status = http_status
        self.retryable = retryable
        self.elapsed = elapsed


@runtime_checkable
class Delivery(Protocol):
    """Sends one message; returns a receipt or raises :class:`DeliveryFailed`. A caller waits at
    most the configured budget."""

    async def send(self, message: OutgoingMessage) -> DeliveryReceipt: ...


LatencyCallback = Callable[[str, float, bool], None]

#: Upper bounds (seconds) of the latency histogram buckets; the last is +Inf.
LATENCY_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, math.inf)


@dataclass
class LatencyHistogram:
    """Cumulative-ready bucket counts for one backend (Prometheus ``le`` semantics)."""

    counts: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))
    count: int = 0
    total: float = 0.0
    failures: int = 0

    def cumulative(self) -> list[tuple[float, int]]:
        running, out = 0, []
        for bound, n in zip(LATENCY_BUCKETS, self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


class LatencyStats:
    """Gateway latency per attempt: a histogram per backend, the last few observations, and
    optional callbacks ``on_latency(backend, seconds, ok)`` for metrics."""

    def __init__(self, *, keep: int = 100, callbacks: tuple[LatencyCallback, ...] = ()) -> None:
        self.last_latencies: deque[tuple[str, float, bool]] = deque(maxlen=keep)
        self.histograms: dict[str, LatencyHistogram] = {}
        self._callbacks = list(callbacks)

    def subscribe(self, callback: LatencyCallback) -> None:
        self._callbacks.append(callback)

    def observe(self, backend: str, seconds: float, ok: bool) -> None:
        self.last_latencies.append((backend, seconds, ok))
        hist = self.histograms.setdefault(backend, LatencyHistogram())
        hist.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        hist.count += 1
        hist.total += seconds
        if not ok:
            hist.failures += 1
        for callback in self._callbacks:
            callback(backend, seconds, ok)
