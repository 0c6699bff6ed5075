"""Errors of staff access. Messages never say which half of a login was wrong."""

from __future__ import annotations

from callsec_ari.core.errors import CallsecError, ErrorId, Forbidden, Unauthorized, Unavailable


class InvalidCredentials(Unauthorized):
    """Unknown user, disabled user, wrong password or wrong code: one answer for all."""

    error_id = ErrorId.INVALID_CREDENTIALS

    def __init__(self) -> None:
        super().__init__("invalid username, password or code")


class TooManyAttempts(CallsecError):
    """Refused before any password or code was checked; ``Retry-After`` says when to retry."""

    status = 429

    def __init__(self, what: str, retry_after: int) -> None:
        super().__init__(f"{what}; try again in {retry_after} seconds",
                         details={"retry_after_seconds": retry_after})
        self.retry_after = retry_after


class LoginDelayed(TooManyAttempts):
    """The account (known or not: the same answer) waits after repeated failures."""

    error_id = ErrorId.LOGIN_DELAYED

    def __init__(self, retry_after: int) -> None:
        super().__init__("too many failed attempts for this account", retry_after)


class RateLimited(TooManyAttempts):
    error_id = ErrorId.RATE_LIMITED

    def __init__(self, retry_after: int) -> None:
        super().__init__("too many failed attempts from this address", retry_after)


class SessionInvalid(Unauthorized):
    """No session, an unknown, expired or logged-out token, or a disabled user."""

    error_id = ErrorId.SESSION_INVALID


class CsrfFailed(Forbidden):
    error_id = ErrorId.CSRF_FAILED


class MfaRequired(Unauthorized):
    """A fresh TOTP code is required for this action."""

    error_id = ErrorId.MFA_REQUIRED


class MfaFailed(Forbidden):
    """The fresh TOTP code was wrong or already used."""

    error_id = ErrorId.MFA_FAILED


class CaptureUnavailable(Unavailable):
    error_id = ErrorId.CAPTURE_UNAVAILABLE

    def __init__(self) -> None:
        super().__init__("secure capture is not available in this deployment")
