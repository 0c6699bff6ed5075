"""Code delivery: the :class:`Delivery` interface and its backends (outbox, Twilio, signed
HTTP, SMTP), with per-attempt timeouts and a bounded retry budget."""

from callsec_ari.verification.delivery.base import (
    REASONS,
    Delivery,
    DeliveryFailed,
    DeliveryReceipt,
    Kind,
    LatencyCallback,
    LatencyStats,
    OutgoingMessage,
    Reason,
)
from callsec_ari.verification.delivery.factory import Deliveries, build_deliveries
from callsec_ari.verification.delivery.retry import RetryPolicy, send_with_retry

__all__ = [
    "REASONS",
    "Deliveries",
    "Delivery",
    "DeliveryFailed",
    "DeliveryReceipt",
    "Kind",
    "LatencyCallback",
    "LatencyStats",
    "OutgoingMessage",
    "Reason",
    "RetryPolicy",
    "build_deliveries",
    "send_with_retry",
]
