"""A pure DTMF digit collector: terminator, restart key, special keys, timeouts, de-duplication.

The collector never reads a clock and never schedules anything: the flow feeds it digits with
their timestamps and asks it which timeout to arm next (``timeout``). Collected digits are held
in a ``bytearray`` that :meth:`DigitCollector.wipe` overwrites.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

DTMF_KEYS = frozenset("0123456789*#ABCD")


@dataclass(frozen=True, kw_only=True)
class CollectorSpec:
    min_digits: int = 1
    max_digits: int = 20
    terminator: str = "#"
    #: Key that discards what was typed so far (``None``: no restart key).
    restart_key: str | None = "*"
    #: Keys reported to the flow as :attr:`Outcome.SPECIAL` (e.g. ``*`` = resend the code).
    special_keys: frozenset[str] = frozenset()
    #: Complete as soon as ``max_digits`` are in, without waiting for the terminator.
    auto_complete: bool = False
    first_digit_timeout: float = 10.0
    inter_digit_timeout: float = 5.0
    #: Two ENDs of the same digit closer than this are one key press (re-queued END frames).
    dedup_window: float = 0.06


class Outcome(Enum):
    PROGRESS = "progress"      # a digit was added
    COMPLETE = "complete"      # terminator (or auto-complete / inter-digit timeout) ended entry
    RESTARTED = "restarted"    # restart key: entry cleared
    SPECIAL = "special"        # a special key was pressed (``Result.key``)
    IGNORED = "ignored"        # duplicate END, or a key with no meaning here
    TIMEOUT = "timeout"        # nothing (or too little) typed before the timeout


@dataclass(frozen=True, kw_only=True)
class Result:
    outcome: Outcome
    count: int = 0
    key: str = ""
    value: str = field(default="", repr=False)


class DigitCollector:
    """Collects one entry. Create a new one (or :meth:`reset`) per prompt."""

    def __init__(self, spec: CollectorSpec) -> None:
        self.spec = spec
        self._buf = bytearray()
        self._last_key = ""
        self._last_at = float("-inf")
        self.done = False

    def __repr__(self) -> str:
        return f"DigitCollector(count={len(self._buf)}, done={self.done})"

    @property
    def count(self) -> int:
        return len(self._buf)

    @property
    def timeout(self) -> float:
        """Seconds to wait for the next key: first-digit before any digit, inter-digit after."""
        return self.spec.inter_digit_timeout if self._buf else self.spec.first_digit_timeout

    def feed(self, key: str, at: float) -> Result:
        if self.done or key not in DTMF_KEYS:
            return Result(outcome=Outcome.IGNORED, count=self.count)
        if key == self._last_key and at - self._last_at < self.spec.dedup_window:
            return Result(outcome=Outcome.IGNORED, count=self.count)
        self._last_key, self._last_at = key, at
        if key in self.spec.special_keys:
            return Result(outcome=Outcome.SPECIAL, key=key, count=self.count)
        if key == self.spec.restart_key:
            self.wipe()
            return Result(outcome=Outcome.RESTARTED)
        if key == self.spec.terminator:
            return self._complete()
        if not key.isdigit():
            return Result(outcome=Outcome.IGNORED, count=self.count)
        if len(self._buf) >= self.spec.max_digits:
            # One digit too many: finish so that validation reports "too long" at once.
            self._buf.append(ord(key))
            return self._complete()
        self._buf.append(ord(key))
        if self.spec.auto_complete and len(self._buf) >= self.spec.max_digits:
            return self._complete()
        return Result(outcome=Outcome.PROGRESS, count=self.count)

    def peek_prefix(self, count: int) -> str:
        """The first ``count`` digits (a card's IIN, which PCI DSS allows to display, for the
        brand). Nothing else of the entry leaves the collector before it completes."""
        return self._buf[:count].decode("ascii")

    def expire(self) -> Result:
        """The armed timeout passed: submit what is there if it is enough, else time out."""
        if self.done:
            return Result(outcome=Outcome.IGNORED, count=self.count)
        if len(self._buf) >= self.spec.min_digits:
            return self._complete()
        self.done = True
        return Result(outcome=Outcome.TIMEOUT, count=self.count)

    def _complete(self) -> Result:
        self.done = True
        value = self._buf.decode("ascii")
        return Result(outcome=Outcome.COMPLETE, count=len(self._buf), value=value)

    def wipe(self) -> None:
        for i in range(len(self._buf)):
            self._buf[i] = 0
        self._buf.clear()

    def reset(self) -> None:
        self.wipe()
        self.done = False
        self._last_key = ""
        self._last_at = float("-inf")
