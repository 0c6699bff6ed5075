"""Brute-force rules (pure; times are passed in as seconds, e.g. ``time.time()``) and the port
the verification slice keeps its counts behind.

:class:`LockoutPolicy` is a function of the failure times alone (here: the customer's wrong code
checks), so the store keeps the failures and asks it. Rate limits (:class:`Bucket`) count
events per subject in fixed windows and judge them as a sliding window (see
:func:`~callsec_ari.store.abuse.sliding_count`). The counts live in the database
behind :class:`AbuseStore` (see :mod:`callsec_ari.store.abuse`): every node sees the same
counts, and a restart forgets none of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from callsec_ari.config.sections import VerificationSettings
from callsec_ari.core.errors import ConfigError, InvalidInput
from callsec_ari.store.abuse import Bucket, Taken
from callsec_ari.store.blind import normalise_phone

#: The subject of every caller whose number is withheld, anonymous or unusable: they share
#: one bucket (they are not exempt).
WITHHELD = "caller:withheld"


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    """``failures`` failures less than ``window`` seconds apart (first to last) lock for
    ``lockout`` seconds from the last of them.

    The window slides: once a lock has run out, failures still inside the window count, so one
    more failure right after a lock locks again until the window has moved past them.
    """

    failures: int = 3
    window: float = 3600.0
    lockout: float = 900.0

    def __post_init__(self) -> None:
        if self.failures < 1 or self.window <= 0 or self.lockout <= 0:
            raise ValueError("failures, window and lockout must be positive")

    @property
    def horizon(self) -> float:
        """Only failures in ``(now - horizon, now]`` can matter: a store may query just those."""
        return self.window + self.lockout

    def locked_until(self, failure_times: Iterable[float], now: float) -> float | None:
        """When the lock running at ``now`` ends, or None. Failures after ``now`` are ignored."""
        times = sorted(t for t in failure_times if t <= now)
        span = self.failures - 1
        for index in range(len(times) - 1, span - 1, -1):
            if times[index] - times[index - span] < self.window:
                until = times[index] + self.lockout
                return until if until > now else None
        return None

    def is_locked(self, failure_times: Iterable[float], now: float) -> bool:
        return self.locked_until(failure_times, now) is not None


def check_limit_settings(v: VerificationSettings) -> None:
    """``ConfigError`` naming the first lockout or rate-limit key out of range."""
    for key in ("lockout_wrong_codes", "lockout_failures", "lockout_window_seconds",
                "lockout_seconds", "caller_rate_limit_per_hour"):
        if getattr(v, key) < 1:
            raise ConfigError("must be at least 1", section="verification", key=key)
    for key in ("customer_code_sends_per_hour", "caller_code_sends_per_hour",
                "customer_code_checks_per_hour", "caller_code_checks_per_hour"):
        if getattr(v, key) < 0:
            raise ConfigError("must be 0 (no limit) or more", section="verification", key=key)


def customer_subject(ref: str) -> str:
    return f"customer:{ref}"


def caller_subject(number: str, region: str = "DE") -> str:
    """The presented number's subject; a withheld or anonymous number gets :data:`WITHHELD`.

    A valid number is counted in its E.164 form (as the customer look-up finds it), so
    ``+49151...``, ``0049151...`` and ``0151...`` are one caller, not three buckets; any other
    is counted by its ASCII digits."""
    try:
        return f"caller:{normalise_phone(number, region)}"
    except InvalidInput:
        pass
    digits = "".join(ch for ch in number if ch in "0123456789")
    return f"caller:#{digits}" if len(digits) >= 3 else WITHHELD


class AbuseStore(Protocol):
    """Counts shared by every node (blocking: call from a worker thread). Subjects are
    ``customer:<ref>`` / ``caller:<number>`` names; the store keys rows by a keyed hash."""

    def take(self, buckets: Sequence[Bucket], now: float, *, failures_of: str = "",
             failed: bool = False, since: float = 0.0) -> Taken:
        """In one transaction: count one event in every bucket (limit 0: none); with
        ``failures_of``, record a failure of that subject if ``failed``, and return its
        failures since ``since``."""
        ...

    def failures(self, subject: str, since: float) -> list[float]: ...

    def last_totp_step(self, subject: str) -> int | None: ...

    def claim_totp_step(self, subject: str, step: int) -> bool:
        """Store ``step`` unless it is not later than the stored one (then False: a replay)."""
        ...
