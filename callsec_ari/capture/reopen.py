"""Re-opening a just-finished capture for one field (issue #18, a re-request after the end).

The flow re-opens it (``CaptureSteering.reopen``: the caller is steered into the capture bridge
again, recordings muted again, the same capture id); this module is the service's part: which
capture may be re-opened, and storing its new value in place of the old one, so one capture
record and one vault item per field remain. Only ``[capture] sink = vault`` captures can be
re-opened: a gateway token or a sealed envelope covers the card as a whole, which callsec can
no longer rebuild (409 ``capture_not_reopenable``).
"""

from __future__ import annotations

from callsec_ari.capture.errors import CaptureNotFound
from callsec_ari.capture.steering import CaptureSteering, hosted
from callsec_ari.core.errors import Conflict, ErrorId, InvalidInput
from callsec_ari.core.ports import CallHandle

#: The sinks whose stored values are per field (a field can be replaced on its own).
REOPENABLE_SINKS = frozenset({"vault"})


class CaptureNotReopenable(Conflict):
    """The finished capture cannot take one field again (its sink stores the card whole)."""

    error_id = ErrorId.CAPTURE_NOT_REOPENABLE


def finished_capture(call: CallHandle, capture_id: str) -> CaptureSteering | None:
    """The call's just-finished, stored capture ``capture_id`` (connected call, no other
    capture running), or None."""
    hosting, capture = hosted(call.flow)
    if not hosting or capture is None or capture.capture_id != capture_id \
            or capture.stage != "done" or capture.result != "captured":
        return None
    return capture


def check_control(call: CallHandle, running: CaptureSteering | None, capture_id: str,
                  field: str, action: str, sink_name: str) -> None:
    """Refuse a field control the call's capture cannot take: no such capture running (nor
    just finished, for a re-request: it is re-opened), a field not in it, a skip of a field
    that is not optional, a re-open of a capture its sink stores whole."""
    if running is None or running.capture_id != capture_id:
        running = finished_capture(call, capture_id) if action == "rerequest" else None
        if running is None:
            raise CaptureNotFound("no such capture running on this call", details={
                "call_id": call.call_id, "capture_id": capture_id})
        check_reopenable(sink_name, capture_id)
    fields = running.request.reopen_fields or running.request.fields
    if field not in fields:
        raise InvalidInput("field: not in this capture", details={
            "field": "field", "allowed": list(fields)})
    if action == "skip" and field not in running.request.optional:
        raise InvalidInput("field: not optional in this capture", details={
            "field": "field", "allowed": list(running.request.optional)})


def check_reopenable(sink_name: str, capture_id: str) -> None:
    if sink_name not in REOPENABLE_SINKS:
        raise CaptureNotReopenable("only vault captures can be re-opened for a field", details={
            "capture_id": capture_id, "sink": sink_name})
