"""Webhook events from the flows' masked progress (``Publish`` commands), pure mapping.

The verification and capture flows already publish masked progress for the agent desk; the
application wraps the bus's ``Publish`` handler with :func:`tapped`, so every call's events
reach the notifier in the order the call's worker executes them. Only the keys listed in
:data:`KEEP` pass (a new key in a flow's progress never leaks into a webhook by accident).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence

from callsec_ari.core.commands import Publish
from callsec_ari.core.events import Event
from callsec_ari.core.ports import CallHandle
from callsec_ari.webhooks.port import WebhookNotifier

#: progress key -> webhook key; anything else is dropped
KEEP: Mapping[str, str] = {
    "capture_id": "capture_id", "field": "field", "valid": "valid", "count": "length",
    "brand": "brand", "last_digits": "last_digits", "last4": "last_digits",
    "result": "result", "reason": "reason", "reason_id": "reason", "method": "method",
    "mode": "mode", "fields": "fields", "attempt": "attempt", "requested_by": "requested_by",
    "fields_valid": "fields_valid", "fields_cancelled": "fields_cancelled",
    "fields_skipped": "fields_skipped", "fields_missing": "fields_missing",
}
#: the masked summary a finished capture carries
SUMMARY = ("brand", "last4", "fields_valid", "fields_cancelled", "fields_skipped",
           "fields_missing")

Handler = Callable[[CallHandle, Publish], Awaitable[Sequence[Event]]]


def _kept(payload: Mapping[str, object], *names: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in payload.items():
        if key in names and key in KEEP and isinstance(value, str | int | bool):
            out[KEEP[key]] = value
    return out


def event_for(topic: str, payload: Mapping[str, object]) -> tuple[str, dict[str, object]] | None:
    """The webhook event (type, masked body fields) a progress message stands for, if any."""
    stage = payload.get("stage")
    if topic == "verification" and stage == "finished":
        return "verification.finished", _kept(payload, "result", "method", "reason")
    if topic != "capture":
        return None
    if stage == "started":
        return "capture.started", _kept(payload, "capture_id", "mode")
    if stage == "field_done":
        return "capture.field_completed", _kept(
            payload, "capture_id", "field", "valid", "count", "brand", "last_digits", "attempt")
    if stage in ("field_cancelled", "field_skipped"):  # the agent's field-level control
        return f"capture.{stage}", _kept(payload, "capture_id", "field")
    if stage == "finished":
        body = _kept(payload, "capture_id", "result", "reason", *SUMMARY)
        kind = "capture.cancelled" if payload.get("result") == "cancelled" else "capture.finished"
        return kind, body
    if stage == "failed":  # the capture never started (recording could not be muted)
        return "capture.cancelled", {**_kept(payload, "capture_id", "reason"),
                                     "result": "cancelled"}
    return None


def tapped(handler: Handler, notifier: WebhookNotifier) -> Handler:
    """``handler`` (the bus's) that first hands the matching webhook event to ``notifier``."""
    async def handle(call: CallHandle, command: Publish) -> Sequence[Event]:
        found = event_for(command.topic, dict(command.payload))
        if found is not None:
            notifier.emit(found[0], call.call_id, found[1])
        return await handler(call, command)
    return handle
