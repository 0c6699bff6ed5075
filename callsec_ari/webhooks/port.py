"""The port other slices call to raise a webhook event (no I/O here).

``emit`` never blocks and never raises: the event is queued for the delivery task (a full
queue writes it to the dead letters at once). The payload must be masked already: ids,
results, methods, counts, brands, last digits; never a code, PAN, phone number or name.
Values must be JSON scalars (str, int, float, bool, None) or lists/dicts of them. Call it on
the event loop (from a worker thread: ``loop.call_soon_threadsafe(notifier.emit, ...)``).
The application's notifier is ``Application.webhooks``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

#: The event types callsec sends (``type`` in the body). Others may be added by new slices;
#: receivers should ignore types they do not know.
EVENT_TYPES: tuple[str, ...] = (
    "verification.finished",
    "verification.denied",
    "capture.started",
    "capture.field_completed",
    "capture.field_cancelled",
    "capture.field_skipped",
    "capture.finished",
    "capture.cancelled",
    "approval.requested",
    "approval.finished",
)


class WebhookNotifier(Protocol):
    def emit(self, event_type: str, call_id: str, payload: Mapping[str, object]) -> None:
        """Queue one event of ``call_id`` for every configured URL (in order per call)."""


class NullNotifier:
    """No ``[webhooks] urls``: events go nowhere."""

    def emit(self, event_type: str, call_id: str, payload: Mapping[str, object]) -> None:
        return None
