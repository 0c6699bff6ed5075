"""Errors of the capture feature (HTTP statuses for the API; ``error_id`` for the flow).

Messages and details name ids (call, capture, field kinds), never a digit a caller typed.
"""

from __future__ import annotations

from callsec_ari.core.errors import Conflict, NotFound, Unavailable


class CallNotConnected(Conflict):
    """A capture needs a ``connect`` call whose caller and agent are bridged right now."""

    error_id = "call_not_connected"


class CaptureRunning(Conflict):
    """The call already has a capture in progress."""

    error_id = "capture_running"


class CaptureNotFound(NotFound):
    error_id = "capture_not_found"


class RecordingMuteFailed(Unavailable):
    """A recording of the caller's channel could not be (un)muted: AMI down, login refused,
    the action refused. A capture never starts while its recordings may still be listening."""

    error_id = "recording_mute_failed"


class GatewayFailed(Unavailable):
    """The payment gateway did not take the card: unreachable, TLS failure, an error status
    or an answer without a token. Nothing of the card was kept."""

    error_id = "gateway_failed"
    status = 502


class MediaUnavailable(Unavailable):
    """A talk-through relay could not be opened or connected (no UDP port, no such relay)."""

    error_id = "media_unavailable"
