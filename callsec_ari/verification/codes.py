"""One-time codes for out-of-band verification, and TOTP checks (pure: times are passed in).

Generation: :func:`new_code` draws from :func:`secrets.randbelow`, which is uniform over all
``10**digits`` codes. An HOTP value at a random counter (``pyotp``) would add a secret and a
counter to keep for nothing: HOTP's dynamic truncation ``mod 10**digits`` is, if anything,
slightly biased, and the code is never re-derived from a secret.

Storage: a code can be re-sent unchanged (the caller asks "send it again" while the first SMS is
late), so :class:`OneTimeCode` keeps the plaintext in process memory for the life of the
verification only (``repr`` hides it; :meth:`OneTimeCode.discard` drops it when the flow ends).
It is never written to the database, a log line or a channel variable; what is persisted is
the outcome (verified / failed, attempts), not the code or a hash of it (a hash of a 6-digit
code would be brute-forced in microseconds anyway).

Comparison uses :func:`hmac.compare_digest`.
"""

from __future__ import annotations

import binascii
import hmac
import secrets
from dataclasses import dataclass, field
from enum import StrEnum

import pyotp

from callsec_ari.core.errors import InvalidInput

MIN_CODE_DIGITS = 4
MAX_CODE_DIGITS = 10


class CheckResult(StrEnum):
    OK = "ok"
    WRONG = "wrong"
    EXPIRED = "expired"
    USED = "used"
    EXHAUSTED = "exhausted"


def new_code(digits: int = 6) -> str:
    """A uniformly random numeric code of ``digits`` (4..10) digits, leading zeros kept."""
    if not MIN_CODE_DIGITS <= digits <= MAX_CODE_DIGITS:
        raise ValueError("code length must be 4..10 digits")
    return f"{secrets.randbelow(10**digits):0{digits}d}"


@dataclass(slots=True, kw_only=True, eq=False)
class OneTimeCode:
    """The state of one code. ``sends`` counts deliveries including the first one.

    A code is good for one successful check, ``max_checks`` checks in all, ``max_sends``
    deliveries, and ``ttl`` seconds from ``created_at`` (it expires at ``created_at + ttl``).
    """

    code: str = field(repr=False)
    created_at: float
    ttl: float = 600.0
    max_checks: int = 5
    max_sends: int = 5
    checks: int = 0
    sends: int = 1
    used: bool = False

    def __post_init__(self) -> None:
        if not (self.code.isascii() and self.code.isdigit()):
            raise ValueError("a code is made of digits")
        if self.ttl <= 0 or self.max_checks < 1 or self.max_sends < 1:
            raise ValueError("ttl, max_checks and max_sends must be positive")

    @classmethod
    def issue(cls, now: float, *, digits: int = 6, ttl: float = 600.0, max_checks: int = 5,
              max_sends: int = 5) -> OneTimeCode:
        """A fresh random code, counted as sent once."""
        return cls(code=new_code(digits), created_at=now, ttl=ttl, max_checks=max_checks,
                   max_sends=max_sends)

    @property
    def expires_at(self) -> float:
        return self.created_at + self.ttl

    def is_expired(self, now: float) -> bool:
        return now >= self.expires_at

    @property
    def checks_left(self) -> int:
        return 0 if self.used else max(self.max_checks - self.checks, 0)

    def check(self, candidate: str, now: float) -> CheckResult:
        """Compare ``candidate``; a wrong candidate uses up one check (see :attr:`checks_left`).
        ``exhausted`` means no check was left, so nothing was compared."""
        if self.used:
            return CheckResult.USED
        if self.is_expired(now):
            return CheckResult.EXPIRED
        if self.checks >= self.max_checks:
            return CheckResult.EXHAUSTED
        self.checks += 1
        if hmac.compare_digest(candidate.encode(), self.code.encode()):
            self.used = True
            return CheckResult.OK
        return CheckResult.WRONG

    def resend(self, now: float) -> bool:
        """Allow delivering the same code again: False once used, expired, out of checks or
        out of sends; True counts the send."""
        if self.used or self.is_expired(now) or self.checks >= self.max_checks:
            return False
        if self.sends >= self.max_sends:
            return False
        self.sends += 1
        return True

    def discard(self) -> None:
        """End of the verification: drop the plaintext; every later check answers ``used``."""
        self.code = ""
        self.used = True


def new_totp_secret() -> str:
    """A fresh base32 secret for an authenticator app (160 bits)."""
    return pyotp.random_base32(length=32)


def match_totp(secret: str, candidate: str, now: float, *, valid_window: int = 1,
               after_step: int | None = None) -> int | None:
    """The TOTP time step ``candidate`` matches at ``now`` (± ``valid_window`` steps), or None.

    Steps at or before ``after_step`` never match: store the returned step after a success
    and pass it back next time, so a code cannot be replayed (RFC 6238, section 5.2).
    """
    try:
        totp = pyotp.TOTP(secret)
        totp.byte_secret()  # older pyotp checks the secret only here
    except (binascii.Error, ValueError):
        raise InvalidInput("the TOTP secret is not base32 of at least 112 bits") from None
    if len(candidate) != totp.digits or not (candidate.isascii() and candidate.isdigit()):
        return None
    current = int(now // totp.interval)
    matched: int | None = None
    for step in range(current - valid_window, current + valid_window + 1):
        if step < 0 or (after_step is not None and step <= after_step):
            continue
        expected: str = totp.generate_otp(step)
        if hmac.compare_digest(expected.encode(), candidate.encode()) and matched is None:
            matched = step
    return matched
