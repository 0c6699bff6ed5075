"""Errors raised by callsec's AMI layer.

Messages name the server (``host:port``) and the AMI action, never header values: a channel
variable, a DTMF event or a secret must not reach a message or a log line. ``ami_message`` is
Asterisk's ``Message:`` header, passed through :func:`callsec_ari.logs.redact_text`.
"""

from __future__ import annotations

from callsec_ari.core.errors import CallsecError, ErrorId
from callsec_ari.logs import redact_text

_MAX_AMI_MESSAGE = 200


class AmiError(CallsecError):
    """Asterisk's manager interface refused or failed a request."""

    error_id = ErrorId.AMI_ERROR
    status = 502

    def __init__(self, message: str = "", *, server: str | None = None,
                 action: str | None = None, ami_message: str | None = None) -> None:
        safe = redact_text(ami_message[:_MAX_AMI_MESSAGE]) if ami_message else None
        super().__init__(message, details={"server": server, "action": action,
                                           "ami_message": safe})
        self.server = server
        self.action = action
        self.ami_message = safe


class AmiConnectionError(AmiError):
    """No connection: refused, timed out, lost, or not connected yet."""

    error_id = ErrorId.AMI_UNREACHABLE
    status = 503


class AmiAuthError(AmiError):
    """Asterisk refused the ``[ami] username`` / ``password`` (or the ``permit`` ACL)."""

    error_id = ErrorId.AMI_AUTH_FAILED
    status = 503


class AmiActionError(AmiError):
    """An action answered ``Response: Error``."""

    error_id = ErrorId.AMI_ACTION_FAILED


class AmiPermissionError(AmiActionError):
    """The AMI user lacks the write class the action needs (``Permission denied``)."""

    error_id = ErrorId.AMI_PERMISSION_DENIED


class AmiNoSuchChannel(AmiActionError):
    """The channel named in the action does not exist (any more)."""

    error_id = ErrorId.AMI_NO_SUCH_CHANNEL
    status = 404


class AmiConfigNotFound(AmiActionError):
    """``GetConfig`` of a file Asterisk's config dir does not hold."""

    error_id = ErrorId.AMI_CONFIG_NOT_FOUND
    status = 404


def error_for_response(message: str, *, server: str, action: str) -> AmiActionError:
    """The :class:`AmiActionError` subclass for Asterisk's ``Message:`` of an error response."""
    lowered = message.strip().lower()
    cls: type[AmiActionError] = AmiActionError
    if lowered == "permission denied":
        cls = AmiPermissionError
    elif lowered == "no such channel":
        cls = AmiNoSuchChannel
    elif lowered == "config file not found":
        cls = AmiConfigNotFound
    return cls(f"AMI {server}: {action} failed: {redact_text(message[:_MAX_AMI_MESSAGE])}",
               server=server, action=action, ami_message=message)
