"""Errors of the capture feature (HTTP statuses for the API; ``error_id`` for the flow).

Messages and details name ids (call, capture, field kinds), never a digit a caller typed.
"""

from __future__ import annotations

from callsec_ari.core.errors import Conflict, ErrorId, NotFound, Unavailable


class CallNotConnected(Conflict):
    """A capture needs a ``connect`` call whose caller and agent are bridged right now."""

    error_id = ErrorId.CALL_NOT_CONNECTED


class CaptureRunning(Conflict):
    """The call already has a capture in progress."""

    error_id = ErrorId.CAPTURE_RUNNING


class CaptureNotFound(NotFound):
    error_id = ErrorId.CAPTURE_NOT_FOUND


class RecordingMuteFailed(Unavailable):
    """A recording of the caller's channel could not be (un)muted: AMI down, login refused,
    the action refused. A capture never starts while its recordings may still be listening."""

    error_id = ErrorId.RECORDING_MUTE_FAILED


class GatewayFailed(Unavailable):
    """The payment gateway did not take the card: unreachable, TLS failure, an error status
    or an answer without a token. Nothing of the card was kept."""

    error_id = ErrorId.GATEWAY_FAILED
    status = 502


class MediaUnavailable(Unavailable):
    """A talk-through relay could not be opened or connected (no UDP port, no such relay)."""

    error_id = ErrorId.MEDIA_UNAVAILABLE
