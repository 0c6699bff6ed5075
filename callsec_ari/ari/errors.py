"""Errors raised by the ARI client.

Every :class:`AriError` names the request that failed by method and *path* (resource ids
included, query string never: query values such as ``dtmf=``, ``value=`` or ``callerId=`` carry
digits and numbers that must not reach a message or a log line). ``ari_status`` is the HTTP
status Asterisk answered (``None`` when no answer came) and ``ari_message`` is the ``message``
field of Asterisk's JSON error body, passed through :func:`callsec_ari.logs.redact_text`.

The class attribute ``status`` is what *callsec's* web layer answers when such an error reaches
it (502: a backend misbehaved; 503 when it cannot be reached at all).
"""

from __future__ import annotations

from callsec_ari.core.errors import CallsecError, ErrorId
from callsec_ari.logs import redact_text

__all__ = [
    "AriAuthError",
    "AriBadRequest",
    "AriConflict",
    "AriConnectionError",
    "AriError",
    "AriNotFound",
    "AriProtocolError",
    "AriServerError",
    "AriUnprocessable",
    "error_for_status",
]

_MAX_ARI_MESSAGE = 200


class AriError(CallsecError):
    """Asterisk's REST interface refused or failed a request."""

    error_id = ErrorId.ARI_ERROR
    status = 502

    def __init__(
        self,
        message: str = "",
        *,
        server: str | None = None,
        method: str | None = None,
        path: str | None = None,
        ari_status: int | None = None,
        ari_message: str | None = None,
    ) -> None:
        safe_ari_message = (
            redact_text(ari_message[:_MAX_ARI_MESSAGE]) if ari_message else None
        )
        super().__init__(
            message or _describe(server, method, path, ari_status, safe_ari_message),
            details={
                "server": server,
                "method": method,
                "path": path,
                "ari_status": ari_status,
                "ari_message": safe_ari_message,
            },
        )
        self.server = server
        self.method = method
        self.path = path
        self.ari_status = ari_status
        self.ari_message = safe_ari_message


def _describe(
    server: str | None,
    method: str | None,
    path: str | None,
    ari_status: int | None,
    ari_message: str | None,
) -> str:
    where = f"{server}: " if server else ""
    request = f"{method} {path}" if method and path else "ARI request"
    answer = f" -> {ari_status}" if ari_status is not None else ""
    why = f": {ari_message}" if ari_message else ""
    return f"{where}{request}{answer}{why}"


class AriBadRequest(AriError):
    """400: a parameter was missing or invalid."""

    error_id = ErrorId.ARI_BAD_REQUEST


class AriAuthError(AriError):
    """401/403: wrong ARI user or password (or a read-only user). Never retried."""

    error_id = ErrorId.ARI_AUTH_FAILED


class AriNotFound(AriError):
    """404: the channel, bridge, playback or recording is gone (usually: the caller hung up)."""

    error_id = ErrorId.ARI_NOT_FOUND


class AriConflict(AriError):
    """409 (e.g. channel not in a Stasis application) or 412 (channel in the wrong state)."""

    error_id = ErrorId.ARI_CONFLICT


class AriUnprocessable(AriError):
    """422: the request referenced something that does not fit (e.g. channel not in bridge)."""

    error_id = ErrorId.ARI_UNPROCESSABLE


class AriServerError(AriError):
    """5xx: Asterisk failed internally."""

    error_id = ErrorId.ARI_SERVER_ERROR


class AriConnectionError(AriError):
    """Asterisk could not be reached: connection refused, timeout, websocket dropped."""

    error_id = ErrorId.ARI_UNAVAILABLE
    status = 503


class AriProtocolError(AriError):
    """Asterisk sent something that is not ARI: a frame without ``type``, a non-object JSON
    value, an event without the object its type requires, a non-JSON REST body."""

    error_id = ErrorId.ARI_PROTOCOL_ERROR


_BY_STATUS: dict[int, type[AriError]] = {
    400: AriBadRequest,
    401: AriAuthError,
    403: AriAuthError,
    404: AriNotFound,
    409: AriConflict,
    412: AriConflict,
    422: AriUnprocessable,
}


def error_for_status(ari_status: int) -> type[AriError]:
    """The exception class for an HTTP error status Asterisk answered."""
    if ari_status >= 500:
        return AriServerError
    return _BY_STATUS.get(ari_status, AriError)
