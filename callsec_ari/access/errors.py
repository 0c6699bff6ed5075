"""Errors of staff access. Messages never say which half of a login was wrong."""

from __future__ import annotations

from callsec_ari.core.errors import CallsecError, Forbidden, Unauthorized, Unavailable


class InvalidCredentials(Unauthorized):
    """Unknown user, disabled user, wrong password or wrong code: one answer for all."""

    error_id = "invalid_credentials"

    def __init__(self) -> None:
        super().__init__("invalid username, password or code")


class AccountLocked(CallsecError):
    error_id = "account_locked"
    status = 423

    def __init__(self, retry_after: int) -> None:
        super().__init__("too many failed attempts; the account is locked",
                         details={"retry_after_seconds": retry_after})
        self.retry_after = retry_after


class RateLimited(CallsecError):
    error_id = "rate_limited"
    status = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__("too many failed attempts from this address",
                         details={"retry_after_seconds": retry_after})
        self.retry_after = retry_after


class SessionInvalid(Unauthorized):
    """No session, an unknown, expired or logged-out token, or a disabled user."""

    error_id = "session_invalid"


class CsrfFailed(Forbidden):
    error_id = "csrf_failed"


class MfaRequired(Unauthorized):
    """A fresh TOTP code is required for this action."""

    error_id = "mfa_required"


class MfaFailed(Forbidden):
    """The fresh TOTP code was wrong or already used."""

    error_id = "mfa_failed"


class CaptureUnavailable(Unavailable):
    error_id = "capture_unavailable"

    def __init__(self) -> None:
        super().__init__("secure capture is not available in this deployment")
